"""The parts of one known-size upload: their numbers and byte ranges, and which are done or missing. Pure.

A :class:`PartPlan` is made from the source's size and the part size (S3's 10,000-part arithmetic
is :class:`~airflow_s3stream.s3.multipart.config.PartSizer`'s); the parts a resume state records
and the parts the store lists then say what is left to send, what may be recovered from the store,
and whether an earlier try had every part stored.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_s3stream.s3.multipart.config import PartRange, plan_parts
from airflow_s3stream.s3.multipart.part_record import PartRecord

__all__ = ["PartPlan", "fits_one_put"]


def fits_one_put(size: int, part_size: int) -> bool:
    """True when ``size`` bytes go in one PutObject rather than a multipart upload: less than one
    part (the empty source included)."""
    return size < part_size


@dataclass(frozen=True)
class PartPlan:
    """``size`` bytes in parts of ``part_size`` bytes (the last one shorter), numbered from 1."""

    size: int
    part_size: int
    parts: tuple[PartRange, ...]

    @classmethod
    def of(cls, size: int, part_size: int) -> PartPlan:
        """The plan for ``size`` bytes (at least one part, an empty source too); raises
        :class:`~airflow_s3stream.errors.ConfigurationError` when it needs more than 10,000 parts."""
        return cls(size, part_size, tuple(plan_parts(size, part_size)))

    def __len__(self) -> int:
        return len(self.parts)

    def __iter__(self) -> Iterator[PartRange]:
        return iter(self.parts)

    @property
    def numbers(self) -> list[int]:
        return [part.number for part in self.parts]

    def missing(self, done: Collection[int]) -> list[PartRange]:
        """The parts whose numbers are not in ``done``, in order: what is left to send."""
        return [part for part in self.parts if part.number not in done]

    def recoverable(self, recorded: Collection[int], listed: Mapping[int, Any] | None) -> list[PartRange]:
        """Parts the store lists (``listed``, by part number) that ``recorded`` does not: acknowledged
        after the last state write. They are kept if they prove to hold the source's bytes."""
        if not listed:
            return []
        return [part for part in self.parts if part.number not in recorded and part.number in listed]

    def all_recorded(self, records: Mapping[int, PartRecord]) -> list[PartRecord] | None:
        """The records of every part, in order, when ``records`` has each one with its planned
        length; ``None`` when any is absent or of another size."""
        found = [records.get(part.number) for part in self.parts]
        if any(r is None or r.size != p.length for r, p in zip(found, self.parts, strict=True)):
            return None
        return [r for r in found if r is not None]

    @staticmethod
    def bytes_in(parts: Iterable[PartRange]) -> int:
        """Total length of ``parts``, in bytes."""
        return sum(part.length for part in parts)
