"""The load of one file: read from S3, decode, COPY into the load's destination, count its rows.

The engine (:mod:`~airflow_s3stream.load.engine`) opens the transaction and a :class:`CopyRun`;
:func:`load_source` then COPYs each file of a source: CSV and JSON Lines through the read-ahead,
Parquet natively from S3 through pyarrow (its ETag checked around the read), or spooled to a
temporary file (ZIP members, or when asked). Row counts are checked against the manifest's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_s3stream.budget import compact_arrow_memory
from airflow_s3stream.errors import RowRejectedError
from airflow_s3stream.load.buffers import LoadBuffers
from airflow_s3stream.load.byte_stream import ReadAhead, open_file
from airflow_s3stream.load.copy_in import CsvDialect, copy_csv, copy_jsonl, copy_parquet, read_header
from airflow_s3stream.load.formats import format_from_suffix
from airflow_s3stream.load.options import LoadOptions
from airflow_s3stream.load.parquet_input import (
    ParquetInput,
    check_unchanged,
    native_error,
    open_s3_parquet,
    spool,
)
from airflow_s3stream.load.sources import LoadFile, ResolvedSource
from airflow_s3stream.load.target import TargetTable, check_columns
from airflow_s3stream.progress import Progress
from airflow_s3stream.publish.manifest import Manifest
from airflow_s3stream.s3.arrow_fs import ArrowS3Settings
from airflow_s3stream.s3.reader import ReaderConfig
from airflow_s3stream.s3.retry import RetryPolicy

if TYPE_CHECKING:
    import psycopg
    from mypy_boto3_s3.client import S3Client
    from psycopg import sql

__all__ = ["CopyRun", "LoadedFile", "ParquetReading", "load_source"]


@dataclass(frozen=True)
class LoadedFile:
    """One file loaded: its key (and ZIP member), rows added and stored bytes."""

    key: str
    rows: int
    bytes: int
    member: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"key": self.key, "rows": self.rows, "bytes": self.bytes}
        if self.member:
            data["member"] = self.member
        return data


@dataclass
class ParquetReading:
    """How Parquet files are read: natively from S3 (default) or spooled to ``spool_dir``."""

    settings: ArrowS3Settings | None
    spool_dir: str | None
    buffers: LoadBuffers
    retry: RetryPolicy
    copy_format: str = "auto"  # auto: binary COPY when exact (arrow_binary), else csv; csv: always csv
    _filesystem: Any = None

    def filesystem(self, client: S3Client) -> Any:
        """The load's one ``pyarrow.fs.S3FileSystem``, made on first use."""
        if self._filesystem is None:
            compact_arrow_memory()
            settings = self.settings or ArrowS3Settings.from_client(client, self.retry.max_attempts)
            self._filesystem = settings.filesystem()
        return self._filesystem

    def close(self) -> None:
        self._filesystem = None  # dropped before interpreter exit finalizes pyarrow's S3 layer


@dataclass
class CopyRun:
    """The state of one load while it runs."""

    conn: psycopg.Connection[Any]
    client: S3Client
    options: LoadOptions
    target: TargetTable
    dest: sql.Composable  # where the COPYs go: the table, the swap's new table or the upsert stage
    reader_config: ReaderConfig | None
    read_ahead: int
    progress: Progress
    parquet: ParquetReading
    loaded_columns: list[str] = field(default_factory=list)
    files: list[LoadedFile] = field(default_factory=list)
    rows: int = 0
    stored: int = 0
    on_bytes: Callable[[int], None] = field(default=lambda _: None)  # the current file's progress

    def note_columns(self, columns: Sequence[str]) -> None:
        self.loaded_columns.extend(c for c in columns if c not in self.loaded_columns)


def _file_format(options: LoadOptions, manifest: Manifest | None, file: LoadFile) -> str:
    if options.file_format != "auto":
        return options.file_format
    if manifest is not None and manifest.file_format:
        return manifest.file_format
    return format_from_suffix(file.zip_member or file.key)


def _compression(options: LoadOptions, manifest: Manifest | None, file_format: str) -> str | None:
    if file_format == "parquet":
        return None  # a Parquet file compresses its own columns
    if options.compression != "auto":
        return options.compression
    if manifest is not None and manifest.version is not None:
        return manifest.compression  # version 1 says it outright (null: none)
    return "auto"


def _dialect(options: LoadOptions, manifest: Manifest | None) -> CsvDialect:
    listed = manifest.csv if manifest is not None and manifest.csv else {}
    return CsvDialect(
        delimiter=str(listed.get("delimiter", options.delimiter)),
        header=bool(listed.get("header", options.header)),
        null_string=str(listed.get("null_string", options.null_string)),
        quote=options.quote,
        encoding=options.encoding,
    )


def _load_text(run: CopyRun, file: LoadFile, file_format: str, manifest: Manifest | None, stream: Any) -> int:
    options, where = run.options, file.describe()
    on_bytes = run.on_bytes
    with ReadAhead(stream, depth=run.read_ahead) as ahead:
        if file_format == "jsonl":
            columns = list(options.columns or run.target.columns)
            run.note_columns(columns)
            return copy_jsonl(
                run.conn,
                run.dest,
                columns,
                run.target.columns,
                ahead,
                where=where,
                encoding=options.encoding,
                ignore_unknown_keys=options.ignore_unknown_keys,
                on_bytes=on_bytes,
            )
        dialect = _dialect(options, manifest)
        chunks: Any = ahead
        if dialect.header:
            names, chunks = read_header(ahead, dialect, where)
            if options.columns is not None and names != list(options.columns):
                raise RowRejectedError(
                    f"{where}: the header's columns {names} differ from columns {list(options.columns)}"
                )
            columns = names
            check_columns(run.target, columns, f"{where}: header")
        else:
            columns = list(options.columns or run.target.columns)
        run.note_columns(columns)
        return copy_csv(run.conn, run.dest, columns, chunks, dialect=dialect, where=where, on_bytes=on_bytes)


def _copy_parquet(run: CopyRun, file: LoadFile, parquet: ParquetInput) -> int:
    where = file.describe()
    columns = list(run.options.columns or parquet.column_names)
    missing = [c for c in columns if c not in parquet.column_names]
    if missing:
        raise RowRejectedError(f"{where}: columns {missing} are not in the Parquet file")
    check_columns(run.target, columns, f"{where}: Parquet schema")
    run.note_columns(columns)
    batches = parquet.batches(columns, run.parquet.buffers.parquet_batch_rows(parquet.bytes_per_row))
    binary = None
    if run.parquet.copy_format == "auto":
        from airflow_s3stream.load.arrow_binary import binary_schema

        binary = binary_schema(parquet.schema, columns, run.target.types_of(columns))
    return copy_parquet(
        run.conn,
        run.dest,
        columns,
        batches,
        where=where,
        on_bytes=run.on_bytes,
        binary_schema=binary,
        read_ahead=run.parquet.buffers.parquet_read_ahead,
    )


def _parquet_input(run: CopyRun, source: Any) -> ParquetInput:
    buffers = run.parquet.buffers
    return ParquetInput(source, buffers.parquet_read_size, buffers.parquet_row_group_read)


def _load_parquet_spooled(run: CopyRun, file: LoadFile, stream: Any) -> int:
    compact_arrow_memory()
    with spool(stream, run.parquet.spool_dir) as path, _parquet_input(run, path) as parquet:
        return _copy_parquet(run, file, parquet)


def _load_parquet_native(run: CopyRun, file: LoadFile) -> tuple[int, int]:
    """(rows, stored bytes) of ``file`` read on pyarrow's S3 filesystem, its ETag checked around the read."""
    base = run.stored
    with open_s3_parquet(run.parquet.filesystem(run.client), file) as (native, etag):
        size = int(native.size())
        try:
            with _parquet_input(run, native) as parquet:
                total = max(parquet.num_rows, 1)

                def on_bytes(_: int) -> None:  # column chunks are read out of order: report by rows
                    run.progress.set(run.rows, base + min(size, size * parquet.rows_read // total))

                run.on_bytes = on_bytes
                rows = _copy_parquet(run, file, parquet)
        except (OSError, ValueError) as exc:  # pyarrow's I/O and decoding errors; psycopg's are neither
            # Bytes of two versions do not decode: a replacement mid-read is the likelier cause.
            check_unchanged(run.client, file, etag, run.parquet.retry)
            raise native_error(exc, file) from exc
    check_unchanged(run.client, file, etag, run.parquet.retry)
    return rows, size


def _read_file(run: CopyRun, file: LoadFile, manifest: Manifest | None) -> tuple[int, int]:
    """(rows, stored bytes) of one file COPYed into ``run.dest``."""
    file_format = _file_format(run.options, manifest, file)
    if file_format == "parquet" and not file.zip_member and run.parquet.spool_dir is None:
        return _load_parquet_native(run, file)
    compression = _compression(run.options, manifest, file_format)
    with open_file(run.client, file, compression, run.reader_config) as opened:
        base = run.stored

        def on_bytes(_: int) -> None:
            run.progress.set(run.rows, base + opened.stored_bytes_read)

        run.on_bytes = on_bytes
        if file_format == "parquet":
            rows = _load_parquet_spooled(run, file, opened.stream)
        else:
            rows = _load_text(run, file, file_format, manifest, opened.stream)
        return rows, opened.size


def _load_file(run: CopyRun, file: LoadFile, manifest: Manifest | None) -> LoadedFile:
    rows, size = _read_file(run, file, manifest)
    if file.rows is not None and rows != file.rows:
        raise RowRejectedError(f"{file.describe()}: loaded {rows} rows, the manifest lists {file.rows}")
    run.rows += rows
    run.stored += size
    run.progress.set(run.rows, run.stored)
    loaded = LoadedFile(file.key, rows, size, file.zip_member)
    run.files.append(loaded)
    return loaded


def load_source(run: CopyRun, resolved: ResolvedSource) -> None:
    """COPY every file of ``resolved`` into ``run.dest``, checking each file's and the manifest's
    row counts.

    :raises RowRejectedError: Postgres rejected a row, or a count differs from the manifest's.
    """
    rows = sum(_load_file(run, file, resolved.manifest).rows for file in resolved.files)
    manifest = resolved.manifest
    if manifest is not None and manifest.rows is not None and rows != manifest.rows:
        raise RowRejectedError(
            f"manifest s3://{resolved.spec.bucket}/{manifest.key}: loaded {rows} rows, the manifest lists "
            f"{manifest.rows}; nothing was committed"
        )
