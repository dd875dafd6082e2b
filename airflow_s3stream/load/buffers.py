"""The load's buffer sizes: one plain record, sized by :meth:`TaskResources.for_load
<airflow_s3stream.resources.TaskResources.for_load>` from the task's memory budget.

A batch's COPY text, the text conversions and the allocator's slack take about six times the
Arrow batch (measured: 1M rows of 56 bytes peak 11 MiB higher at 32k rows per batch than at
16k), and pyarrow itself with its S3 layer takes ~75 MiB of the budget as code and tables,
whatever the data: hence the small Parquet shares there.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_s3stream.budget import rows_within

__all__ = ["MAX_BATCH_ROWS", "MIN_BATCH_ROWS", "PARQUET_READ_AHEAD", "LoadBuffers"]

MIN_BATCH_ROWS, MAX_BATCH_ROWS = 1024, 64 * 1024  # rows per Arrow batch (one COPY write)
PARQUET_READ_AHEAD = 4  # encoded batches queued ahead of the COPY: a 32nd of the budget in 128ths


@dataclass(frozen=True)
class LoadBuffers:
    """Buffer sizes for one load (:meth:`TaskResources.for_load
    <airflow_s3stream.resources.TaskResources.for_load>` builds them).

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
    batch_rows: int | None
    parquet_read_size: int
    parquet_row_group_read: int
    parquet_read_ahead: int = PARQUET_READ_AHEAD

    def parquet_batch_rows(self, bytes_per_row: float) -> int:
        """Rows per Arrow batch for rows of ``bytes_per_row`` (uncompressed, from the file's metadata)."""
        if self.batch_rows is not None:
            return self.batch_rows
        return rows_within(self.batch_bytes, bytes_per_row, MIN_BATCH_ROWS, MAX_BATCH_ROWS)
