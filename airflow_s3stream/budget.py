"""The memory budget: one number per task (its default and its check), and what keeps it true.

A task of ours should add no more than about :data:`DEFAULT_MEMORY_BUDGET` to its worker, whatever
the data size. Rather than a pile of knobs, each operator takes ``memory_budget`` (bytes);
:class:`~airflow_s3stream.resources.TaskResources` turns it into every buffer size (the shares
are listed there), and an explicit knob (``part_size``, ``max_concurrency``, ...) still wins.

This module checks the number (:func:`check_memory_budget`, at DAG parse time) and sets the
process-wide allocator behaviour the budget's arithmetic relies on (:func:`release_large_buffers`,
:func:`compact_arrow_memory`).
"""

from __future__ import annotations

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.units import MiB

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "MIN_MEMORY_BUDGET",
    "check_memory_budget",
    "compact_arrow_memory",
    "release_large_buffers",
    "rows_within",
]

DEFAULT_MEMORY_BUDGET = 128 * MiB  # bytes a task may add to its worker (an idle Airflow 3 worker takes ~300 MiB)
MIN_MEMORY_BUDGET = 32 * MiB  # bytes; below this the fixed costs (two 5 MiB parts, Arrow blocks) do not fit


def check_memory_budget(memory_budget: object) -> int:
    """Return ``memory_budget`` if it is an integer number of bytes, at least :data:`MIN_MEMORY_BUDGET`.

    :raises ConfigurationError: naming ``memory_budget`` and the value at fault.
    """
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, int):
        raise ConfigurationError(f"memory_budget must be an integer number of bytes, got {memory_budget!r}")
    if memory_budget < MIN_MEMORY_BUDGET:
        raise ConfigurationError(
            f"memory_budget={memory_budget} bytes is below the minimum {MIN_MEMORY_BUDGET} (32 MiB)"
        )
    return memory_budget


def rows_within(share: int, bytes_per_row: float, low: int, high: int) -> int:
    """Rows of ``bytes_per_row`` bytes (in Arrow memory) that fit in ``share`` bytes, kept within ``low..high``."""
    return min(high, max(low, int(share / max(bytes_per_row, 1.0))))


M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter number (malloc.h)
LARGE_BUFFER = 1 * MiB  # allocations this large each get their own mapping, returned to the OS when freed
_large_buffers_released = False


def release_large_buffers() -> None:
    """Make every buffer of a MiB or more its own memory mapping, returned to the OS when freed.

    glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which
    8 MiB part and read-ahead buffers come from per-thread heaps that keep what was freed: with 6
    read-ahead threads that tripled the reader's memory (24 MiB per stream instead of 8). Fixing
    the threshold at :data:`LARGE_BUFFER` (``mallopt(M_MMAP_THRESHOLD)``, the same as setting
    ``MALLOC_MMAP_THRESHOLD_``) keeps the budget's arithmetic true. Process-wide and idempotent;
    a no-op where the C library is not glibc, or when the user set ``MALLOC_MMAP_THRESHOLD_``.
    """
    global _large_buffers_released  # noqa: PLW0603 - one process-wide setting, applied once
    if _large_buffers_released:
        return
    _large_buffers_released = True
    import ctypes
    import ctypes.util
    import os

    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(M_MMAP_THRESHOLD, LARGE_BUFFER)
    except (OSError, AttributeError):
        return


def compact_arrow_memory() -> None:
    """Keep Arrow's freed memory from lingering in the task process (call before Arrow work).

    Arrow's default pool in the wheels, mimalloc, keeps freed batches resident (35-50 MiB more peak
    RSS over a 1M-row export or load). While pyarrow is not imported yet, jemalloc is chosen
    before it is (``ARROW_DEFAULT_MEMORY_POOL``, which this process and its children keep), so
    Arrow's C++ allocations use it too; once imported, jemalloc becomes the default pool from
    Python. Either way its decay is set to 0: freed pages go back at once. A pool the user chose
    through the variable, or a build without jemalloc, is left alone.
    """
    import os
    import sys

    chosen = os.environ.get("ARROW_DEFAULT_MEMORY_POOL")
    if chosen:
        return
    if "pyarrow" not in sys.modules:
        os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "jemalloc"  # a build without it warns and keeps its own
    import pyarrow as pa

    try:
        if pa.default_memory_pool().backend_name != "jemalloc":
            pa.set_memory_pool(pa.jemalloc_memory_pool())
        pa.jemalloc_set_decay_ms(0)
    except (NotImplementedError, pa.ArrowNotImplementedError):
        return
