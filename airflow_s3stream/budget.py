"""The memory budget: one number per task, from which every buffer size is derived.

A task of ours should add no more than about :data:`DEFAULT_MEMORY_BUDGET` to its worker, whatever
the data size. Rather than a pile of knobs, each operator takes ``memory_budget`` (bytes) and sizes
its buffers from it; an explicit knob (``part_size``, ``max_concurrency``, ...) still wins.

How the budget is shared (the rest is headroom for Python, pyarrow and botocore themselves):

* **part buffers**, half: ``(parts in flight + 1) x part size`` (the one being filled and those
  uploading); 128 MiB -> 8 MiB parts, 7 in flight;
* **a Parquet row group**, a sixteenth of Arrow data (8 MiB at 128 MiB): while a group is
  written, Arrow's writer holds several times that again (dictionaries, the buffered pages of each
  column chunk, encoders), outside Arrow's memory pool. Smaller groups save little more and make
  readers fetch more, smaller column chunks. The rows per group follow from the
  measured width of a row in Arrow memory (wide rows, fewer rows), between 1,024 and 1,048,576;
* **read-ahead**, half of it for readers: ``blocks x block size``;
* **the compressor**, an eighth: zstd's window, hash and chain tables are shrunk (a smaller
  window, a little less ratio) when a high level would need more; gzip needs 256 KiB at most.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.units import MiB

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "MIN_MEMORY_BUDGET",
    "MemoryBudget",
    "compact_arrow_memory",
    "release_large_buffers",
]

DEFAULT_MEMORY_BUDGET = 128 * MiB  # bytes a task may add to its worker (an idle Airflow 3 worker takes ~300 MiB)
MIN_MEMORY_BUDGET = 32 * MiB  # below this the fixed costs (two 5 MiB parts, Arrow blocks) do not fit
S3_MIN_PART_SIZE = 5 * MiB  # S3 limit: every part but the last
MAX_BUDGET_PART_SIZE = 16 * MiB  # larger parts stop helping throughput; more of them in flight does
MAX_BUDGET_CONCURRENCY = 16  # parts in flight: more than this only queues on the connection pool
MIN_ROW_GROUP_ROWS = 1024
MAX_ROW_GROUP_ROWS = 1024 * 1024


@dataclass(frozen=True)
class MemoryBudget:
    """``total`` bytes for one task's buffers (see the module docstring for the shares)."""

    total: int = DEFAULT_MEMORY_BUDGET

    def __post_init__(self) -> None:
        if isinstance(self.total, bool) or not isinstance(self.total, int):
            raise ConfigurationError(f"memory_budget must be an integer number of bytes, got {self.total!r}")
        if self.total < MIN_MEMORY_BUDGET:
            raise ConfigurationError(
                f"memory_budget={self.total} bytes is below the minimum {MIN_MEMORY_BUDGET} (32 MiB)"
            )

    def parts(self, part_size: int | None = None, max_concurrency: int | None = None) -> tuple[int, int]:
        """``(part_size, max_concurrency)`` within half the budget; an explicit value is kept as given."""
        share = self.total // 2
        if part_size is None:
            fitting = share // 8 if max_concurrency is None else share // (max_concurrency + 1)
            part_size = min(MAX_BUDGET_PART_SIZE, max(S3_MIN_PART_SIZE, fitting // MiB * MiB))
        if max_concurrency is None:
            max_concurrency = min(MAX_BUDGET_CONCURRENCY, max(1, share // part_size - 1))
        return part_size, max_concurrency

    @property
    def row_group_bytes(self) -> int:
        """Bytes of Arrow data one Parquet row group may hold (the writer needs several times this)."""
        return self.total // 16

    def row_group_rows(self, bytes_per_row: float) -> int:
        """Rows per Parquet row group for rows of ``bytes_per_row`` (measured in Arrow memory)."""
        rows = int(self.row_group_bytes / max(bytes_per_row, 1.0))
        return min(MAX_ROW_GROUP_ROWS, max(MIN_ROW_GROUP_ROWS, rows))

    def read_ahead(self, block_size: int) -> int:
        """Blocks of ``block_size`` bytes a reader may hold ahead of the consumer (at least 1)."""
        return max(1, (self.total // 2) // block_size)

    @property
    def compressor_bytes(self) -> int:
        """Bytes a streaming compressor's state may take."""
        return self.total // 8

    @property
    def digest_queue_bytes(self) -> int:
        """Bytes of inflated data that may wait for the verifier's digest threads."""
        return self.total // 16


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
