"""``PostgresToS3StreamOperator``: a templated Postgres query streamed to S3 at COPY speed.

Thin by design: arguments are validated in ``__init__`` (DAG parse time), connections come from
:class:`~airflow_s3stream.hooks.postgres.PostgresStreamHook` and
:class:`~airflow_s3stream.hooks.s3.S3StreamHook`, and the work is
:func:`airflow_s3stream.export.export_query`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_s3stream.budget import DEFAULT_MEMORY_BUDGET
from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.export import ExportOptions, export_query
from airflow_s3stream.hooks.postgres import PostgresStreamHook
from airflow_s3stream.hooks.s3_connection import S3Connection
from airflow_s3stream.operators.assets import annotate_outlets
from airflow_s3stream.operators.failures import named_failures, standing_alone
from airflow_s3stream.operators.links import S3ObjectLink
from airflow_s3stream.progress import ProgressSnapshot, plural
from airflow_s3stream.resources import TaskResources
from airflow_s3stream.s3.multipart import MultipartConfig

__all__ = ["PostgresToS3StreamOperator"]


class PostgresToS3StreamOperator(BaseOperator):
    """Run ``sql`` on Postgres and stream the result to S3 as CSV, JSON Lines or Parquet.

    :param sql: the query (templated; a path ending in ``.sql`` is read as a template file).
    :param s3_bucket: destination bucket (templated).
    :param s3_key: object key (templated), e.g. ``exports/{{ ds }}/orders``; the suffix
        (``.csv``, ``.jsonl.gz``, ``.parquet`` ...) is appended when missing. With splitting it is a
        prefix: ``<s3_key>/part-00000.csv`` ... and ``<s3_key>/_manifest.json``. The parts are
        staged and published together once the query has finished; a failed run leaves the
        previous export under the prefix as it was (see :mod:`airflow_s3stream.publish`).
    :param parameters: query parameters (templated) for ``%s`` / ``%(name)s`` placeholders. ``COPY``
        cannot take server-side parameters, so psycopg binds them on the client: it quotes and
        escapes each value and merges it into the statement text sent to Postgres. That is safe
        against SQL injection, but the values are visible in ``pg_stat_activity`` and in server
        logs: do not pass secrets as parameters. With parameters a literal ``%`` is written ``%%``;
        with none (``None``, ``{}``, ``[]``) it is ``%``.
    :param postgres_conn_id: Airflow ``postgres`` connection.
    :param aws_conn_id: Airflow ``aws`` connection (endpoint, region, role from its extra).
    :param file_format: ``csv`` (default), ``jsonl`` or ``parquet``.
    :param compression: ``None`` (default), ``gzip`` or ``zstd``; for Parquet the column codec.
    :param compression_level: codec level (gzip 1-9, zstd -7..22); default the codec's own.
    :param delimiter: CSV delimiter (``,``).
    :param header: CSV header line in every file (``True``).
    :param null_string: CSV representation of NULL (``""``, as ``psql``'s ``\\copy``).
    :param max_bytes_per_file: split into parts of about this many stored bytes (``None``).
    :param max_rows_per_file: split into parts of at most this many rows (``None``).
    :param empty_result: ``write_empty_file`` (default: header-only CSV / schema-only Parquet), ``skip``
        (publish nothing) or ``fail`` (no rows fails the task without retry, naming the query and its
        parameters, e.g. the interval; checked at DAG parse time).
    :param write_manifest: write ``_manifest.json`` last (files, rows, bytes, checksums, query, columns).
    :param memory_budget: bytes the task's buffers may take (default 128 MiB, at least 32 MiB):
        part size and parts in flight (half of it: 8 MiB parts, 7 in flight), the Parquet row group
        (a sixteenth of Arrow data, rows from the measured row width) and the zstd state (an eighth) are derived
        from it (:mod:`airflow_s3stream.resources`). Explicit knobs below win.
    :param part_size: multipart part size in bytes (``None``: from ``memory_budget``; at least 5 MiB).
    :param max_concurrency: parts uploading at once (``None``: from ``memory_budget``). Memory is
        about ``(max_concurrency + 1) x part_size`` whatever the row count.
    :param parquet_row_group_rows: rows per Parquet row group (``None``: from ``memory_budget``).
    :param checksum_algorithm: ``auto`` (default: CRC32C, or ``Content-MD5`` where the store refuses
        additional checksum headers), ``CRC32C``, ``CRC32``, ``CRC64NVME`` or ``MD5`` (``Content-MD5``
        only, for S3-compatible stores without additional checksums).
    :param progress_interval: seconds between progress lines in the task log.
    :param max_attempts: tries per S3 request (throttling, 5xx, resets, timeouts); ``None`` = the
        connection's ``config_kwargs.retries``, else 6. botocore's own retries are off.
    :param stage_only: one task of a job (mapped partitions): stage every file and publish nothing;
        :class:`~airflow_s3stream.operators.S3StreamCommitOperator` publishes the files of all the
        job's tasks under one manifest, :class:`~airflow_s3stream.operators.S3StreamAbortOperator`
        aborts them. ``write_manifest`` and ``outlets`` belong to the commit then.

    Returns (XCom) ``{"bucket", "files": [{"key", "rows", "bytes"}], "rows", "bytes", "seconds",
    "mb_per_s", "manifest_key", "commit_ms"}``; with ``stage_only`` each file also carries its
    ``staged`` upload (a few hundred bytes) and the result its ``description`` (format, columns).
    Each Asset in ``outlets`` gets the event extra ``{"bucket", "key", "manifest_key", "rows", "bytes"}``.

    Fails without retry (``AirflowFailException``) when Postgres rejects the query or S3 refuses
    for good; raises ``ExportConnectionError`` / ``TransientError`` (Airflow retries) when Postgres
    cannot be reached or S3 keeps failing. Messages name ``s3://s3_bucket/s3_key`` and the query
    or the connection (:mod:`~airflow_s3stream.operators.failures`).
    """

    template_fields: Sequence[str] = ("sql", "s3_bucket", "s3_key", "parameters")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers: ClassVar[dict[str, str]] = {"sql": "sql", "parameters": "json"}
    ui_color = "#c9e4f6"
    operator_extra_links = (S3ObjectLink(),)
    s3_link_is_prefix = True  # the key gets a suffix, or is a prefix of parts: link to the listing

    def __init__(
        self,
        *,
        sql: str,
        s3_bucket: str,
        s3_key: str,
        parameters: Mapping[str, Any] | Sequence[Any] | None = None,
        postgres_conn_id: str = "postgres_default",
        aws_conn_id: str | None = "aws_default",
        file_format: str = "csv",
        compression: str | None = None,
        compression_level: int | None = None,
        delimiter: str = ",",
        header: bool = True,
        null_string: str = "",
        max_bytes_per_file: int | None = None,
        max_rows_per_file: int | None = None,
        empty_result: str = "write_empty_file",
        write_manifest: bool = False,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        part_size: int | None = None,
        max_concurrency: int | None = None,
        parquet_row_group_rows: int | None = None,
        checksum_algorithm: str = "auto",
        progress_interval: float = 5.0,
        max_attempts: int | None = None,
        stage_only: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not sql or not s3_bucket or not s3_key:
            raise ConfigurationError(f"{self.task_id}: sql, s3_bucket and s3_key are required")
        if stage_only and write_manifest:
            raise ConfigurationError(
                f"{self.task_id}: stage_only=True publishes nothing; the job's S3StreamCommitOperator writes "
                "the manifest (write_manifest must be False)"
            )
        if stage_only and kwargs.get("outlets"):
            raise ConfigurationError(
                f"{self.task_id}: stage_only=True publishes nothing, so it has no asset to update: "
                "give the outlets to the job's S3StreamCommitOperator"
            )
        self.stage_only = stage_only
        try:
            self.task_resources = TaskResources.for_export(
                memory_budget, part_size=part_size, max_concurrency=max_concurrency, max_attempts=max_attempts
            )
            self.options = ExportOptions(
                file_format=file_format,
                compression=compression,
                compression_level=compression_level,
                delimiter=delimiter,
                header=header,
                null_string=null_string,
                max_bytes_per_file=max_bytes_per_file,
                max_rows_per_file=max_rows_per_file,
                empty_result=empty_result,
                write_manifest=write_manifest,
                parquet_row_group_rows=parquet_row_group_rows,
                resources=self.task_resources,
            ).validate()
            self.upload_config = MultipartConfig(
                part_size=self.task_resources.parts.part_size,
                max_concurrency=self.task_resources.parts.in_flight,
                checksum_algorithm=checksum_algorithm,
                progress_interval=progress_interval,
            )
        except ConfigurationError as exc:
            raise standing_alone(ConfigurationError(f"{self.task_id}: {exc}"), exc) from None
        self.sql, self.s3_bucket, self.s3_key, self.parameters = sql, s3_bucket, s3_key, parameters
        self.postgres_conn_id, self.aws_conn_id = postgres_conn_id, aws_conn_id
        self.progress_interval = progress_interval
        self.max_attempts = max_attempts
        self._conn: Any = None  # the psycopg connection while execute() runs, for on_kill

    def _log_progress(self, progress: ProgressSnapshot) -> None:
        self.log.info("%s", progress.describe())

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage (when installed): the tables the SQL reads in, the S3 key (prefix) out."""
        from airflow_s3stream.operators.lineage import export_lineage

        return export_lineage(self.sql, self.postgres_conn_id, self.s3_bucket, self.s3_key)

    def on_kill(self) -> None:
        """Cancel the running query; the export then aborts its uploads, leaving nothing behind."""
        conn = self._conn
        if conn is not None:
            conn.cancel_safe()

    def execute(self, context: Any) -> dict[str, Any]:
        with named_failures(f"s3://{self.s3_bucket}/{self.s3_key}"):
            s3 = S3Connection.open(self.aws_conn_id, self.task_resources)
            client = s3.client
            upload_config = dataclasses.replace(self.upload_config, retry=s3.retry)
            conn = self._conn = PostgresStreamHook(postgres_conn_id=self.postgres_conn_id).get_psycopg_connection()
            try:
                result = export_query(
                    conn,
                    client,
                    sql=self.sql,
                    parameters=self.parameters,
                    bucket=self.s3_bucket,
                    key=self.s3_key,
                    options=self.options,
                    upload_config=upload_config,
                    on_progress=self._log_progress,
                    progress_interval=self.progress_interval,
                    stage_only=self.stage_only,
                )
            finally:
                self._conn = None
                conn.close()
        for file in result.files:
            verb = "staged" if self.stage_only else "wrote"
            self.log.info(
                "%s s3://%s/%s: %s, %s",
                verb,
                result.bucket,
                file.key,
                plural(file.rows, "row"),
                plural(file.bytes, "byte"),
            )
        if not self.stage_only:
            key = self.s3_key if self.options.split or not result.files else result.files[0].key
            annotate_outlets(
                context,
                self.outlets,
                {
                    "bucket": result.bucket,
                    "key": key,
                    "manifest_key": result.manifest_key,
                    "rows": result.rows,
                    "bytes": result.bytes,
                },
            )
        return {**result.to_dict(), "aws_conn_id": self.aws_conn_id}  # the provider view reads S3 through it
