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

from airflow_s3stream.budget import MemoryBudget, compact_arrow_memory
from airflow_s3stream.errors import ConfigurationError, RowRejectedError
from airflow_s3stream.load.buffers import LoadBuffers
from airflow_s3stream.load.byte_stream import DEFAULT_READ_AHEAD, ReadAhead, open_file
from airflow_s3stream.load.copy_in import CsvDialect, copy_csv, copy_jsonl, copy_parquet, read_header
from airflow_s3stream.load.formats import format_from_suffix
from airflow_s3stream.load.manifest import Manifest
from airflow_s3stream.load.options import LoadOptions
from airflow_s3stream.load.parquet_input import (
    ParquetInput,
    check_unchanged,
    native_error,
    open_s3_parquet,
    spool,
)
from airflow_s3stream.load.sources import LoadFile, ResolvedSource, SourceSpec, resolve_source
from airflow_s3stream.load.target import TargetTable, check_columns, split_table_name
from airflow_s3stream.pg_errors import load_error
from airflow_s3stream.progress import MB, Progress, ProgressSnapshot
from airflow_s3stream.s3.arrow_fs import ArrowS3Settings
from airflow_s3stream.s3.reader import ReaderConfig
from airflow_s3stream.s3.retry import RetryPolicy

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

__all__ = ["LoadResult", "LoadStep", "LoadedFile", "load_into_postgres"]

SWAP_SUFFIX = "__s3stream_new"  # the new table of replace_via="swap" while it loads
_UPSERT_STAGE = "_s3stream_upsert"
PARQUET_COPY_FORMATS = ("auto", "csv")
INTERVAL_LOCK_PREFIX = "airflow_s3stream.load:"  # + the table's oid: the advisory lock replace_interval holds


@dataclass(frozen=True)
class LoadStep:
    """One source and, for ``replace_interval``, the parameters bound into ``interval_filter``."""

    source: SourceSpec
    parameters: Mapping[str, Any] | Sequence[Any] | None = None


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


@dataclass
class _ParquetReading:
    """How Parquet files are read: natively from S3 (default) or spooled to ``spool_dir``."""

    settings: ArrowS3Settings | None
    spool_dir: str | None
    buffers: LoadBuffers
    retry: RetryPolicy
    copy_format: str = "auto"  # auto: binary COPY when exact (arrow_binary), else csv; csv: always csv
    _filesystem: Any = None

    def filesystem(self, client: Any) -> Any:
        """The load's one ``pyarrow.fs.S3FileSystem``, made on first use."""
        if self._filesystem is None:
            compact_arrow_memory()
            settings = self.settings or ArrowS3Settings.from_client(client, self.retry.max_attempts)
            self._filesystem = settings.filesystem()
        return self._filesystem

    def close(self) -> None:
        self._filesystem = None  # dropped before interpreter exit finalizes pyarrow's S3 layer


@dataclass
class _Run:
    """The state of one load while it runs."""

    conn: psycopg.Connection[Any]
    client: Any
    options: LoadOptions
    target: TargetTable
    dest: sql.Composable  # where the COPYs go: the table, the swap's new table or the upsert stage
    reader_config: ReaderConfig | None
    read_ahead: int
    progress: Progress
    parquet: _ParquetReading
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


def _load_text(run: _Run, file: LoadFile, file_format: str, manifest: Manifest | None, stream: Any) -> int:
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


def _copy_parquet(run: _Run, file: LoadFile, parquet: ParquetInput) -> int:
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


def _parquet_input(run: _Run, source: Any) -> ParquetInput:
    buffers = run.parquet.buffers
    return ParquetInput(source, buffers.parquet_read_size, buffers.parquet_row_group_read)


def _load_parquet_spooled(run: _Run, file: LoadFile, stream: Any) -> int:
    compact_arrow_memory()
    with spool(stream, run.parquet.spool_dir) as path, _parquet_input(run, path) as parquet:
        return _copy_parquet(run, file, parquet)


def _load_parquet_native(run: _Run, file: LoadFile) -> tuple[int, int]:
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


def _read_file(run: _Run, file: LoadFile, manifest: Manifest | None) -> tuple[int, int]:
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


def _load_file(run: _Run, file: LoadFile, manifest: Manifest | None) -> LoadedFile:
    rows, size = _read_file(run, file, manifest)
    if file.rows is not None and rows != file.rows:
        raise RowRejectedError(f"{file.describe()}: loaded {rows} rows, the manifest lists {file.rows}")
    run.rows += rows
    run.stored += size
    run.progress.set(run.rows, run.stored)
    loaded = LoadedFile(file.key, rows, size, file.zip_member)
    run.files.append(loaded)
    return loaded


def _load_source(run: _Run, resolved: ResolvedSource) -> None:
    rows = sum(_load_file(run, file, resolved.manifest).rows for file in resolved.files)
    manifest = resolved.manifest
    if manifest is not None and manifest.rows is not None and rows != manifest.rows:
        raise RowRejectedError(
            f"manifest s3://{resolved.spec.bucket}/{manifest.key}: loaded {rows} rows, the manifest lists "
            f"{manifest.rows}; nothing was committed"
        )


def _delete_interval(run: _Run, parameters: Mapping[str, Any] | Sequence[Any] | None) -> int:
    from psycopg import sql

    condition = sql.SQL(run.options.interval_filter or "")  # type: ignore[arg-type]  # the DAG author's SQL
    statement = sql.SQL("DELETE FROM {} WHERE ({})").format(run.target.ident, condition)
    return max(run.conn.execute(statement, parameters or None).rowcount, 0)


def _upsert(run: _Run, stage: sql.Composable) -> None:
    from psycopg import sql

    columns = run.loaded_columns or list(run.target.columns)
    conflict = list(run.options.conflict_columns or ())
    updates = [c for c in columns if c not in conflict]
    action = (
        sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates)
        )
        if updates
        else sql.SQL("DO NOTHING")
    )
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    run.conn.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
            run.target.ident, cols, cols, stage, sql.SQL(", ").join(sql.Identifier(c) for c in conflict), action
        )
    )


def _prepare(conn: psycopg.Connection[Any], options: LoadOptions, target: TargetTable) -> sql.Composable:
    """Set the mode up; returns where the COPYs go."""
    from psycopg import sql

    if options.mode == "replace" and options.replace_via == "truncate":
        conn.execute(sql.SQL("TRUNCATE {}").format(target.ident))
    elif options.mode == "replace":
        new = sql.Identifier(*target.parts[:-1], target.parts[-1] + SWAP_SUFFIX)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(new))
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(new, target.ident))
        return new
    elif options.mode == "upsert":
        stage = sql.Identifier(_UPSERT_STAGE)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(stage))
        conn.execute(
            sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(stage, target.ident)
        )
        return stage
    elif options.mode == "replace_interval":
        # Two loads replacing the same interval at once (a re-export while the first load runs)
        # would each DELETE under a snapshot without the other's rows and both COPY: the rows
        # would be there twice. Loads into one table take turns here; readers are not blocked.
        conn.execute(
            sql.SQL("SELECT pg_advisory_xact_lock(hashtextextended({} || {}::regclass::oid::text, 0))").format(
                sql.Literal(INTERVAL_LOCK_PREFIX), sql.Literal(target.ident.as_string(conn))
            )
        )
    return target.ident


def _swap(conn: psycopg.Connection[Any], target: TargetTable) -> None:
    from psycopg import sql

    new = sql.Identifier(*target.parts[:-1], target.parts[-1] + SWAP_SUFFIX)
    conn.execute(sql.SQL("DROP TABLE {}").format(target.ident))
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(new, sql.Identifier(target.parts[-1])))


def load_into_postgres(
    conn: psycopg.Connection[Any],
    client: Any,
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
        buffers = LoadBuffers.from_budget(MemoryBudget(), block_size=block_size, read_ahead=read_ahead)
    if parquet_copy not in PARQUET_COPY_FORMATS:
        raise ConfigurationError(f"parquet_copy {parquet_copy!r} is not one of {', '.join(PARQUET_COPY_FORMATS)}")
    parquet = _ParquetReading(arrow_s3, parquet_spool_dir, buffers, retry, parquet_copy)
    progress = Progress(f"load into {label}", interval=progress_interval, report=on_progress, count_rows=True)
    deleted = 0
    try:
        with conn.transaction():
            target = TargetTable.read(conn, parts)
            for name in ("columns", "conflict_columns"):
                names = getattr(options, name)
                if names:
                    check_columns(target, names, name)
            dest = _prepare(conn, options, target)
            run = _Run(conn, client, options, target, dest, reader_config, buffers.read_ahead, progress, parquet)
            for step, source in zip(steps, resolved, strict=True):
                if options.mode == "replace_interval":
                    deleted += _delete_interval(run, step.parameters)
                _load_source(run, source)
            if options.mode == "upsert":
                _upsert(run, dest)
            elif options.mode == "replace" and options.replace_via == "swap":
                _swap(conn, target)
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
