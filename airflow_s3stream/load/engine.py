"""The load: S3 files COPYed into a Postgres table in one transaction, per mode, or not at all.

``load_into_postgres`` takes a psycopg 3 connection and a boto3 S3 client (no Airflow here):

1. check the table exists (else ``TableNotFoundError``), then resolve every source (object, prefix,
   manifest, ZIP member) and check manifest-listed files (size, ETag, checksum) before the
   transaction starts: a missing key fails here;
2. in ONE transaction: look the table up, prepare the mode (``replace``: TRUNCATE, or a new table
   for the swap; ``upsert``: a temporary staging table; ``replace_interval``: DELETE the rows the
   bound ``interval_filter`` matches, per source, after taking the table's advisory lock so that
   two loads replacing the same interval take turns), COPY each file, reconcile the row counts with
   the manifest, then finish the mode (``upsert``: ``INSERT ... ON CONFLICT DO UPDATE``; swap:
   drop the old table and rename the new one);
3. commit. Any failure on the way (a rejected row, a lost connection, an S3 error, a count
   mismatch) rolls the whole transaction back: the table is as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_s3stream.errors import ConfigurationError, RowRejectedError
from airflow_s3stream.load.buffers import LoadBuffers
from airflow_s3stream.load.byte_stream import DEFAULT_READ_AHEAD
from airflow_s3stream.load.file_copy import CopyRun, LoadedFile, ParquetReading, load_source
from airflow_s3stream.load.modes import delete_interval, prepare, swap, upsert
from airflow_s3stream.load.options import LoadOptions
from airflow_s3stream.load.sources import SourceSpec, resolve_source
from airflow_s3stream.load.target import TargetTable, check_columns, split_table_name
from airflow_s3stream.pg_errors import load_error
from airflow_s3stream.progress import MB, Progress, ProgressSnapshot
from airflow_s3stream.resources import TaskResources
from airflow_s3stream.s3.arrow_fs import ArrowS3Settings
from airflow_s3stream.s3.reader import ReaderConfig
from airflow_s3stream.s3.retry import RetryPolicy

if TYPE_CHECKING:
    import psycopg
    from mypy_boto3_s3.client import S3Client

__all__ = ["LoadResult", "LoadStep", "LoadedFile", "load_into_postgres"]

PARQUET_COPY_FORMATS = ("auto", "csv")


@dataclass(frozen=True)
class LoadStep:
    """One source and, for ``replace_interval``, the parameters bound into ``interval_filter``."""

    source: SourceSpec
    parameters: Mapping[str, Any] | Sequence[Any] | None = None


@dataclass
class LoadResult:
    """What a load did. ``to_dict()`` is the operator's XCom value."""

    table: str
    mode: str
    files: list[LoadedFile]
    rows: int
    bytes: int
    seconds: float
    deleted_rows: int = 0
    manifests: list[str] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        return round(self.bytes / MB / self.seconds, 2) if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "files": [f.to_dict() for f in self.files],
            "rows": self.rows,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "mb_per_s": self.mb_per_s,
            "mode": self.mode,
            "deleted_rows": self.deleted_rows,
        }


def load_into_postgres(
    conn: psycopg.Connection[Any],
    client: S3Client,
    *,
    table: str | Sequence[str],
    steps: Sequence[LoadStep],
    options: LoadOptions,
    reader_config: ReaderConfig | None = None,
    read_ahead: int = DEFAULT_READ_AHEAD,
    on_progress: Callable[[ProgressSnapshot], None] | None = None,
    progress_interval: float = 5.0,
    arrow_s3: ArrowS3Settings | None = None,
    parquet_spool_dir: str | None = None,
    buffers: LoadBuffers | None = None,
    parquet_copy: str = "auto",
) -> LoadResult:
    """Load every step's source into ``table`` in one transaction (see the module docstring).

    :param conn: psycopg 3 connection, idle (not inside a transaction); left open.
    :param steps: the sources, in load order; with ``replace_interval`` each step's parameters
        are bound into ``options.interval_filter`` for that step's DELETE.
    :param reader_config: the S3 reader's block size, prefetch and retry policy.
    :param read_ahead: decoded 1 MiB chunks read ahead of the COPY (memory: about this many MiB),
        when ``buffers`` is not given.
    :param arrow_s3: how pyarrow reaches S3 for Parquet (default: the settings of ``client``).
    :param parquet_spool_dir: read Parquet by spooling each file to a temporary file in this
        directory instead of natively from S3 (ZIP members are always spooled, to the default
        temporary directory when this is ``None``).
    :param buffers: the read-ahead depth, the Parquet batch size and column-chunk read size
        (default: the default memory budget's, with ``reader_config``'s block size and ``read_ahead``).
    :param parquet_copy: ``auto``: binary COPY for a Parquet file whose every column has an exact
        binary form for its target column (:mod:`~airflow_s3stream.load.arrow_binary`), else CSV;
        ``csv``: always CSV.
    :raises SourceError, ChecksumMismatchError, ObjectChangedError: a source is missing or is not
        what its manifest lists (before the transaction starts).
    :raises TableNotFoundError: ``table`` (or its schema) does not exist; raised before any source
        is read.
    :raises RowRejectedError: Postgres rejected a row (naming the key, line and column), a column
        does not exist, or the row counts differ from the manifest's. Nothing committed.
    :raises LoadConnectionError: the connection was lost mid-load (retryable). Nothing committed.
    :raises TransientError: S3 kept failing (retryable). Nothing committed.
    """
    import psycopg

    options.validate()
    if not steps:
        raise RowRejectedError(f"table {table}: nothing to load (no source given)")
    started = time.monotonic()
    parts = split_table_name(table)
    label = ".".join(parts)
    try:
        with conn.transaction():  # the table first: a missing one fails before any source is read
            TargetTable.read(conn, parts)
    except psycopg.Error as exc:
        raise load_error(exc, f"table {label}: load") from exc
    retry = reader_config.retry if reader_config is not None else RetryPolicy()
    resolved = [resolve_source(client, step.source, retry) for step in steps]
    if buffers is None:
        block_size = reader_config.block_size if reader_config is not None else ReaderConfig().block_size
        buffers = TaskResources.for_load(block_size=block_size, read_ahead=read_ahead).load
    if parquet_copy not in PARQUET_COPY_FORMATS:
        raise ConfigurationError(f"parquet_copy {parquet_copy!r} is not one of {', '.join(PARQUET_COPY_FORMATS)}")
    parquet = ParquetReading(arrow_s3, parquet_spool_dir, buffers, retry, parquet_copy)
    progress = Progress(f"load into {label}", interval=progress_interval, report=on_progress, count_rows=True)
    deleted = 0
    try:
        with conn.transaction():
            target = TargetTable.read(conn, parts)
            for name in ("columns", "conflict_columns"):
                names = getattr(options, name)
                if names:
                    check_columns(target, names, name)
            dest = prepare(conn, options, target)
            run = CopyRun(conn, client, options, target, dest, reader_config, buffers.read_ahead, progress, parquet)
            for step, source in zip(steps, resolved, strict=True):
                if options.mode == "replace_interval":
                    deleted += delete_interval(conn, target, options, step.parameters)
                load_source(run, source)
            if options.mode == "upsert":
                upsert(conn, target, options, run.loaded_columns, dest)
            elif options.mode == "replace" and options.replace_via == "swap":
                swap(conn, target)
    except psycopg.Error as exc:  # outside a COPY: the DELETE, the upsert, the swap, the COMMIT
        raise load_error(exc, f"table {label}: load") from exc
    finally:
        parquet.close()
    progress.finish()
    return LoadResult(
        table=label,
        mode=options.mode,
        files=run.files,
        rows=run.rows,
        bytes=run.stored,
        seconds=time.monotonic() - started,
        deleted_rows=deleted,
        manifests=[f"s3://{r.spec.bucket}/{r.manifest.key}" for r in resolved if r.manifest is not None],
    )
