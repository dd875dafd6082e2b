"""``S3ToPostgresStreamOperator``: S3 files COPYed into a Postgres table, in one transaction.

Thin by design: arguments are validated in ``__init__`` (DAG parse time), connections come from
:class:`~airflow_s3stream.hooks.postgres.PostgresStreamHook` and
:class:`~airflow_s3stream.hooks.s3.S3StreamHook`, and the work is
:func:`airflow_s3stream.load.load_into_postgres`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_s3stream.budget import DEFAULT_MEMORY_BUDGET
from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.hooks.postgres import PostgresStreamHook
from airflow_s3stream.hooks.s3_connection import S3Connection
from airflow_s3stream.load import LoadOptions, LoadStep, SourceSpec, load_into_postgres
from airflow_s3stream.load.target import split_table_name
from airflow_s3stream.operators.failures import named_failures, standing_alone
from airflow_s3stream.operators.links import S3ObjectLink
from airflow_s3stream.progress import ProgressSnapshot, plural
from airflow_s3stream.resources import TaskResources
from airflow_s3stream.s3.reader import ReaderConfig

__all__ = ["S3ToPostgresStreamOperator", "asset_event_steps"]

# Bound into interval_filter per asset event: the data interval of the run that produced it.
SOURCE_START, SOURCE_END = "source_interval_start", "source_interval_end"


def _event_interval(event: Any) -> dict[str, Any]:
    """``{source_interval_start, source_interval_end}`` of the run that emitted ``event``, if known."""
    try:
        run = event.source_dag_run
    except Exception:  # the producing run may be gone; the filter's own parameters still apply
        return {}
    start = getattr(run, "data_interval_start", None) if run is not None else None
    end = getattr(run, "data_interval_end", None) if run is not None else None
    return {SOURCE_START: start, SOURCE_END: end} if start is not None and end is not None else {}


def asset_event_steps(
    triggering_asset_events: Mapping[Any, Sequence[Any]], parameters: Mapping[str, Any] | None
) -> list[LoadStep]:
    """One :class:`LoadStep` per triggering asset event whose extra names what was published.

    The export sets ``extra = {"bucket", "key", "manifest_key", "rows", "bytes"}``; the manifest is
    preferred (sizes, checksums and row counts are then checked), else the key. Events are taken in
    the order they happened, each source once. Each step's parameters are ``parameters`` plus
    ``source_interval_start`` / ``source_interval_end``: the data interval of the producing run.
    """
    seen: set[tuple[str, str]] = set()
    found: list[tuple[Any, LoadStep]] = []
    for asset in triggering_asset_events:
        for event in triggering_asset_events[asset]:
            extra = getattr(event, "extra", None) or {}
            bucket, key = extra.get("bucket"), extra.get("manifest_key") or extra.get("key")
            if not bucket or not key or (bucket, key) in seen:
                continue
            seen.add((bucket, key))
            params = {**(parameters or {}), **_event_interval(event)}
            found.append((getattr(event, "timestamp", None), LoadStep(SourceSpec(str(bucket), str(key)), params)))
    found.sort(key=lambda pair: (pair[0] is None, pair[0] or 0))
    return [step for _, step in found]


class S3ToPostgresStreamOperator(BaseOperator):
    """Load CSV, JSON Lines or Parquet from S3 into a Postgres table at COPY speed, atomically.

    :param table: target table, ``table`` or ``schema.table`` (templated).
    :param s3_bucket: source bucket (templated).
    :param s3_key: (templated) an object; a prefix (every object under ``<key>/`` in key order,
        except names starting with ``_`` or ``.``); an export's ``_manifest.json`` (or a prefix holding
        one): exactly the listed files, each checked against its listed size, ETag and checksum,
        and the total row count reconciled with the manifest's.
    :param zip_member: load this member of the ZIP object ``s3_key`` (CRC-32 checked) (templated).
    :param source_from_asset_event: take the sources from the triggering asset events instead of
        ``s3_bucket``/``s3_key``: each event's extra ``bucket`` and ``manifest_key`` (else ``key``),
        as the export operator publishes them. ``interval_filter`` may then use
        ``%(source_interval_start)s`` / ``%(source_interval_end)s``: the producing run's data interval.
    :param mode: ``append`` (default), ``replace``, ``replace_interval`` or ``upsert``.
    :param interval_filter: ``replace_interval``: the SQL condition of the rows a run replaces, with
        ``%(name)s`` placeholders bound from ``parameters`` (templated).
    :param parameters: values bound into ``interval_filter`` (templated).
    :param conflict_columns: ``upsert``: the unique key of ``ON CONFLICT``.
    :param replace_via: ``replace``: ``truncate`` (default) or ``swap`` (load a new table, then drop
        the old one and rename the new one in the same transaction).
    :param columns: target columns in file order (default: the CSV header, the Parquet schema, the
        JSON keys; every table column for CSV without header).
    :param file_format: ``auto`` (default: the manifest, else the suffix), ``csv``, ``jsonl``, ``parquet``.
    :param compression: ``auto`` (default: manifest, suffix, magic bytes), ``None``, ``gzip``, ``zstd``.
    :param delimiter: CSV delimiter (``,``). :param header: CSV header line (``True``).
    :param null_string: CSV NULL (``""``). :param quote: CSV quote (``"``).
    :param encoding: the files' encoding, as Postgres names it (``UTF8``).
    :param ignore_unknown_keys: JSON Lines: skip keys that are not columns instead of failing.
    :param postgres_conn_id: Airflow ``postgres`` connection. :param aws_conn_id: Airflow ``aws`` connection.
    :param memory_budget: bytes the task's buffers may take (default 128 MiB, at least 32 MiB); the
        sizes below that are ``None`` follow from it (:mod:`airflow_s3stream.resources`): a
        quarter for the S3 reader's window, a quarter for the decoded chunks queued ahead of the
        COPY; for Parquet, a 128th for each column-chunk read and for one Arrow batch. Explicit
        knobs win.
    :param block_size: bytes per S3 ranged read and per Parquet column-chunk read (``None``: from
        the budget, 8 MiB for CSV and JSON Lines, 1 MiB for Parquet at 128 MiB).
    :param prefetch_blocks: parallel block GETs kept ahead (0: one streamed GET per file).
    :param read_ahead: decoded 1 MiB chunks queued ahead of the COPY (``None``: from the budget,
        16 at 128 MiB). Memory is about ``block_size x (prefetch_blocks + 2) + read_ahead MiB`` for
        CSV and JSON Lines.
    :param parquet_batch_rows: rows per Arrow batch (``None``: a 128th of the budget in Arrow
        bytes, from the row width in the file's metadata, 1,024 to 65,536 rows).
    :param parquet_spool_dir: read Parquet by first copying each file into a temporary file in
        this directory instead of natively from S3 with ``pyarrow.fs.S3FileSystem`` (the default:
        no local disk). ZIP members that are Parquet are always spooled (to this directory, else
        the system's temporary directory).
    :param parquet_copy: ``auto`` (default): binary COPY for a Parquet file whose every loaded
        column has an exact binary form for its target column (ints no wider, floats, bool, text,
        bytea, date, timestamps to us, decimals into numeric), else CSV; ``csv``: always CSV.
    :param progress_interval: seconds between progress lines. :param max_attempts: tries per S3
        request (``None``: the connection's ``config_kwargs.retries``, else 6).

    Returns (XCom) ``{"table", "files": [{"key", "rows", "bytes"}], "rows", "bytes", "seconds",
    "mb_per_s", "mode", "deleted_rows"}``. Bad data, a missing source or table and a row-count
    mismatch fail without retry (``AirflowFailException``); a lost connection or S3 that keeps
    failing raises a retryable error. Either way nothing is committed.
    """

    template_fields: Sequence[str] = (
        "s3_bucket",
        "s3_key",
        "zip_member",
        "table",
        "interval_filter",
        "parameters",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"parameters": "json", "interval_filter": "sql"}
    ui_color = "#c6e8d8"
    operator_extra_links = (S3ObjectLink(),)

    def __init__(
        self,
        *,
        table: str,
        s3_bucket: str | None = None,
        s3_key: str | None = None,
        zip_member: str | None = None,
        source_from_asset_event: bool = False,
        mode: str = "append",
        interval_filter: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        conflict_columns: Sequence[str] | None = None,
        replace_via: str = "truncate",
        columns: Sequence[str] | None = None,
        file_format: str = "auto",
        compression: str | None = "auto",
        delimiter: str = ",",
        header: bool = True,
        null_string: str = "",
        quote: str = '"',
        encoding: str = "UTF8",
        ignore_unknown_keys: bool = False,
        postgres_conn_id: str = "postgres_default",
        aws_conn_id: str | None = "aws_default",
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        block_size: int | None = None,
        prefetch_blocks: int = 0,
        read_ahead: int | None = None,
        parquet_batch_rows: int | None = None,
        parquet_spool_dir: str | None = None,
        parquet_copy: str = "auto",
        progress_interval: float = 5.0,
        max_attempts: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        try:
            if not table:
                raise ConfigurationError("table is required")
            if "{{" not in table:
                split_table_name(table)
            if source_from_asset_event and (s3_bucket or s3_key or zip_member):
                raise ConfigurationError(
                    "source_from_asset_event takes the source from the event: drop s3_bucket/s3_key"
                )
            if not source_from_asset_event and (not s3_bucket or not s3_key):
                raise ConfigurationError("s3_bucket and s3_key are required (or source_from_asset_event=True)")
            if parquet_copy not in ("auto", "csv"):
                raise ConfigurationError(f"parquet_copy {parquet_copy!r} is not one of auto, csv")
            self.task_resources = TaskResources.for_load(
                memory_budget,
                prefetch_blocks=prefetch_blocks,
                block_size=block_size,
                read_ahead=read_ahead,
                batch_rows=parquet_batch_rows,
                max_attempts=max_attempts,
            )
            self.buffers = self.task_resources.load
            self.options = LoadOptions.of(
                mode=mode,
                file_format=file_format,
                compression=compression,
                columns=columns,
                delimiter=delimiter,
                header=header,
                null_string=null_string,
                quote=quote,
                encoding=encoding,
                ignore_unknown_keys=ignore_unknown_keys,
                conflict_columns=conflict_columns,
                interval_filter=interval_filter,
                replace_via=replace_via,
            )
            window = self.task_resources.reader
            self.reader_config = ReaderConfig(block_size=window.block_size, prefetch_blocks=window.prefetch_blocks)
        except (ConfigurationError, ValueError) as exc:
            raise standing_alone(ConfigurationError(f"{self.task_id}: {exc}"), exc) from None
        self.table, self.s3_bucket, self.s3_key, self.zip_member = table, s3_bucket, s3_key, zip_member
        self.interval_filter, self.parameters = interval_filter, parameters
        self.source_from_asset_event = source_from_asset_event
        self.postgres_conn_id, self.aws_conn_id = postgres_conn_id, aws_conn_id
        self.memory_budget, self.parquet_spool_dir, self.parquet_copy = memory_budget, parquet_spool_dir, parquet_copy
        self.progress_interval, self.max_attempts = progress_interval, max_attempts
        self._conn: Any = None  # the psycopg connection while execute() runs, for on_kill

    @property
    def s3_link_is_prefix(self) -> bool:
        """The link lists a prefix unless the key names one object."""
        return not (self.s3_key or "").rsplit("/", 1)[-1].count(".")

    def _log_progress(self, progress: ProgressSnapshot) -> None:
        self.log.info("%s", progress.describe())

    def _steps(self, context: Any) -> list[LoadStep]:
        if not self.source_from_asset_event:
            spec = SourceSpec(str(self.s3_bucket), str(self.s3_key), self.zip_member or None)
            return [LoadStep(spec, self.parameters)]
        events = context.get("triggering_asset_events") if hasattr(context, "get") else None
        steps = asset_event_steps(events or {}, self.parameters)
        if not steps:
            raise AirflowFailException(
                f"{self.task_id}: source_from_asset_event=True, but no triggering asset event carries "
                "extra 'bucket' and 'manifest_key' or 'key'"
            )
        return steps

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage (when installed): the S3 object (prefix) in, the table out."""
        from airflow.sdk import BaseHook

        from airflow_s3stream.operators.lineage import DatasetName, operator_lineage, s3_dataset

        conn = BaseHook.get_connection(self.postgres_conn_id)
        parts = split_table_name(self.table)
        name = ".".join((conn.schema or "postgres", *(parts if len(parts) == 2 else ("public", *parts))))
        output = DatasetName(namespace=f"postgres://{conn.host or 'localhost'}:{conn.port or 5432}", name=name)
        inputs = [s3_dataset(self.s3_bucket, self.s3_key)] if self.s3_bucket and self.s3_key else []
        return operator_lineage(inputs, [output])

    def on_kill(self) -> None:
        """Cancel the running COPY; the transaction rolls back, the table stays as it was."""
        conn = self._conn
        if conn is not None:
            conn.cancel_safe()

    def execute(self, context: Any) -> dict[str, Any]:
        steps = self._steps(context)
        where = steps[0].source.uri if len(steps) == 1 else f"{len(steps)} sources into {self.table}"
        with named_failures(where, reading=True):
            try:
                options = dataclasses.replace(self.options, interval_filter=self.interval_filter).validate()
                split_table_name(self.table)
            except ConfigurationError as exc:
                raise standing_alone(ConfigurationError(f"{self.task_id}: {exc}"), exc) from None
            s3 = S3Connection.open(self.aws_conn_id, self.task_resources)
            client = s3.client
            reader = dataclasses.replace(self.reader_config, retry=s3.retry)
            conn = self._conn = PostgresStreamHook(postgres_conn_id=self.postgres_conn_id).get_psycopg_connection()
            try:
                result = load_into_postgres(
                    conn,
                    client,
                    table=self.table,
                    steps=steps,
                    options=options,
                    reader_config=reader,
                    buffers=self.buffers,
                    on_progress=self._log_progress,
                    progress_interval=self.progress_interval,
                    arrow_s3=s3.hook.arrow_s3_settings(self.max_attempts),
                    parquet_spool_dir=self.parquet_spool_dir,
                    parquet_copy=self.parquet_copy,
                )
            finally:
                self._conn = None
                conn.close()
        for file in result.files:
            self.log.info("loaded %s: %s, %s", file.key, plural(file.rows, "row"), plural(file.bytes, "byte"))
        return {**result.to_dict(), "aws_conn_id": self.aws_conn_id}  # the provider view reads S3 through it
