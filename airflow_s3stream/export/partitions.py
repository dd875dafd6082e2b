"""Key-range partitions of a table, for exports fanned out over mapped tasks (one range per task)."""

from __future__ import annotations

import itertools

__all__ = ["split_key_range"]


def split_key_range(lowest: int | None, highest: int | None, partitions: int) -> list[tuple[int, int]]:
    """``partitions`` contiguous half-open ranges ``[start, end)`` covering ``[lowest, highest]`` once.

    An empty table (``None`` bounds) gives one empty range ``(0, 0)``, so the export still writes a
    file. Never more ranges than keys; range sizes differ by at most one key.
    """
    if lowest is None or highest is None:
        return [(0, 0)]
    span = highest - lowest + 1
    count = max(1, min(partitions, span))
    bounds = [lowest + span * i // count for i in range(count + 1)]
    return list(itertools.pairwise(bounds))
