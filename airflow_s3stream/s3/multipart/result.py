"""The small, JSON-able summary of a finished upload (what operators push to XCom)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["UploadResult"]


@dataclass(frozen=True)
class UploadResult:
    """A finished, verified upload.

    ``parts`` is 0 for an object stored with one PutObject. ``checksum_algorithm`` is the one used
    (``auto`` resolved to ``CRC32C`` or ``MD5``). ``checksum`` is the object's checksum as S3 reports
    it (composite values end in ``-N``); for ``MD5`` it is the expected ETag (``md5-N`` or the MD5).
    ``verified`` lists what was compared after completion (``size``, ``checksum``, ``etag``; see
    :mod:`.verify`). ``resumed_parts`` counts parts a previous try had stored and this one reused.
    """

    bucket: str
    key: str
    size: int
    parts: int
    part_size: int
    etag: str
    checksum_algorithm: str
    checksum_type: str
    checksum: str
    seconds: float
    resumed_parts: int = 0
    uploaded_parts: int = 0
    copied: bool = False
    verified: list[str] = field(default_factory=list)
    version_id: str | None = None
    sha256: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def mb_per_s(self) -> float:
        """Throughput in decimal MB per second over the whole call."""
        return round(self.size / 1e6 / self.seconds, 2) if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (XCom), including ``mb_per_s``."""
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["mb_per_s"] = self.mb_per_s
        return data
