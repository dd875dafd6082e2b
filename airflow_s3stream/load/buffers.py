"""The load's buffer sizes, derived from the task's memory budget (explicit knobs win).

:class:`~airflow_s3stream.budget.MemoryBudget` gives readers half of the budget. The load splits
that half in two:

* a quarter of the budget for the S3 reader's window, ``block_size x (prefetch_blocks + 2)``
  (the block being read, the one being consumed, those prefetched): 128 MiB -> 8 MiB blocks;
* a quarter for the decoded 1 MiB chunks queued ahead of the COPY: 128 MiB -> 16 chunks (more
  than :data:`MAX_READ_AHEAD` only queues, it does not go faster).

Parquet needs neither. pyarrow reads a row group whose loaded columns store at most
``parquet_row_group_read`` bytes (an eighth of the budget, 16 MiB at 128 MiB: the export's row
groups hold a sixteenth of the budget in Arrow bytes, less once compressed) whole, one coalesced
ranged GET per row group; a larger row group is read column chunk by column chunk in pieces of
``parquet_read_size`` (a 128th of the budget, 1 MiB at 128 MiB; the AWS SDK holds each GET's body
once more while Arrow copies it). It decodes Arrow batches of a 128th of the budget in Arrow
bytes, ``batch_rows`` following from the row width the file's metadata records, and a thread
encodes them for COPY up to ``parquet_read_ahead`` batches ahead of it (4: a 32nd of the budget,
whatever its size). A batch's COPY text, the text conversions and the allocator's slack take
about six times the batch (measured: 1M rows of 56 bytes peak 11 MiB higher at 32k rows per batch
than at 16k), and pyarrow itself with its S3 layer takes ~75 MiB of the budget as code and
tables, whatever the data.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_s3stream.budget import MemoryBudget
from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.units import MiB

__all__ = ["MAX_BATCH_ROWS", "MAX_READ_AHEAD", "MIN_BATCH_ROWS", "PARQUET_READ_AHEAD", "LoadBuffers"]

MAX_BLOCK_SIZE = 8 * MiB  # larger ranged GETs stop helping throughput
MIN_BLOCK_SIZE = 1 * MiB
MIN_READ_AHEAD, MAX_READ_AHEAD = 2, 16  # decoded 1 MiB chunks queued ahead of the COPY
MIN_BATCH_ROWS, MAX_BATCH_ROWS = 1024, 64 * 1024  # rows per Arrow batch (one COPY write)
MIN_PARQUET_READ = 256 * 1024  # bytes per ranged read of a column chunk
PARQUET_READ_AHEAD = 4  # encoded batches queued ahead of the COPY: a 32nd of the budget in 128ths


def _positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class LoadBuffers:
    """Buffer sizes for one load. Build with :meth:`from_budget`.

    :param block_size: bytes per S3 ranged read (and per Parquet column-chunk read).
    :param read_ahead: decoded 1 MiB chunks queued ahead of the COPY.
    :param batch_bytes: Arrow bytes one Parquet batch may hold (sets ``batch_rows`` per file).
    :param batch_rows: rows per Parquet batch when given explicitly, else ``None``.
    :param parquet_read_size: bytes per read of a Parquet column chunk from S3, when its row group
        is not read whole.
    :param parquet_row_group_read: a row group whose loaded columns store at most this many bytes
        is read whole, in one coalesced ranged GET (0: never).
    :param parquet_read_ahead: Parquet batches decoded and encoded ahead of the COPY, in a thread.
    """

    block_size: int
    read_ahead: int
    batch_bytes: int
    batch_rows: int | None = None
    parquet_read_size: int = MiB
    parquet_row_group_read: int = 16 * MiB
    parquet_read_ahead: int = PARQUET_READ_AHEAD

    @classmethod
    def from_budget(
        cls,
        budget: MemoryBudget,
        *,
        prefetch_blocks: int = 0,
        block_size: int | None = None,
        read_ahead: int | None = None,
        batch_rows: int | None = None,
        chunk_size: int = MiB,
    ) -> LoadBuffers:
        """The sizes for ``budget``; each of ``block_size`` (the Parquet read size too), ``read_ahead``
        and ``batch_rows`` given wins.

        :raises ConfigurationError: a knob that is not a positive integer.
        """
        for name, value in (("block_size", block_size), ("read_ahead", read_ahead), ("batch_rows", batch_rows)):
            _positive(name, value)
        quarter = budget.total // 4
        parquet_read_size = block_size or max(MIN_PARQUET_READ, budget.total // 128)
        if block_size is None:
            fitting = quarter // (prefetch_blocks + 2) // MiB * MiB
            block_size = min(MAX_BLOCK_SIZE, max(MIN_BLOCK_SIZE, fitting))
        if read_ahead is None:
            read_ahead = min(MAX_READ_AHEAD, max(MIN_READ_AHEAD, quarter // chunk_size))
        return cls(
            block_size=block_size,
            read_ahead=read_ahead,
            batch_bytes=budget.total // 128,
            batch_rows=batch_rows,
            parquet_read_size=parquet_read_size,
            parquet_row_group_read=budget.total // 8,
        )

    def parquet_batch_rows(self, bytes_per_row: float) -> int:
        """Rows per Arrow batch for rows of ``bytes_per_row`` (uncompressed, from the file's metadata)."""
        if self.batch_rows is not None:
            return self.batch_rows
        rows = int(self.batch_bytes / max(bytes_per_row, 1.0))
        return min(MAX_BATCH_ROWS, max(MIN_BATCH_ROWS, rows))
