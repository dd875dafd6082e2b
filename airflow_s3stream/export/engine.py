"""The export: a Postgres query streamed into S3 objects, completed or not at all.

``export_query`` takes a psycopg 3 connection and a boto3 S3 client (no Airflow here) and runs:

1. HeadBucket: a missing bucket or refused credentials fail before the query runs;
   every S3 call here goes through :mod:`airflow_s3stream.s3.objects` (retried, errors named);
2. describe the query (``LIMIT 0``): SQL errors fail here, before any object is opened;
3. split exports with a manifest: delete the old ``_manifest.json`` first, so no reader trusts
   a manifest while its parts are being replaced;
4. stream ``COPY`` into one object, or numbered parts, through the multipart writer (uploads
   overlap reading; memory is about ``(max_concurrency + 1) x part_size``);
5. on error: abort the open upload and delete the parts this run completed, then re-raise;
6. on success: delete stale ``part-NNNNN`` objects of an earlier, larger run, then write the
   manifest last.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_s3stream.export.columns import Column, describe_query
from airflow_s3stream.export.copy_stream import arrow_batches, copy_rows
from airflow_s3stream.export.keys import manifest_key, part_key, single_key, stale_part_keys
from airflow_s3stream.export.options import ExportOptions
from airflow_s3stream.export.query import copy_statement, jsonl_copy_statement
from airflow_s3stream.export.writers import ExportedFile, ObjectOpener, PartSequence, write_parquet, write_text
from airflow_s3stream.progress import Progress, ProgressSnapshot
from airflow_s3stream.s3.multipart import MultipartConfig, MultipartWriter
from airflow_s3stream.s3.objects import check_bucket, delete_keys, list_keys, put_object

if TYPE_CHECKING:
    import psycopg
    from mypy_boto3_s3 import S3Client
    from psycopg.abc import Params

__all__ = ["ExportResult", "export_query", "multipart_opener"]

log = logging.getLogger("airflow_s3stream.export")


@dataclass
class ExportResult:
    """What an export wrote. ``to_dict()`` is the operator's XCom value."""

    bucket: str
    files: list[ExportedFile]
    rows: int
    bytes: int
    seconds: float
    columns: list[Column] = field(default_factory=list)
    manifest_key: str | None = None
    deleted_stale: list[str] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        return round(self.bytes / 1e6 / self.seconds, 2) if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "files": [f.to_dict() for f in self.files],
            "rows": self.rows,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "mb_per_s": self.mb_per_s,
            "manifest_key": self.manifest_key,
        }


def multipart_opener(
    client: S3Client, bucket: str, content_type: str, config: MultipartConfig | None = None
) -> Callable[[str], contextlib.AbstractContextManager[Any]]:
    """Opener that writes each key through the package's parallel :class:`MultipartWriter`."""

    def open_object(key: str) -> contextlib.AbstractContextManager[Any]:
        return MultipartWriter(
            client, bucket, key, config=config, extra_args={"ContentType": content_type}, report_progress=False
        )

    return open_object


def _manifest(
    sql: str, options: ExportOptions, columns: list[Column], files: list[ExportedFile], *, rows: int, seconds: float
) -> bytes:
    body = {
        "format": options.file_format,
        "compression": options.compression,
        "query": sql,
        "columns": [{"name": c.name, "type": c.type_name} for c in columns],
        "files": [{**f.to_dict(), **({"checksum": _checksum(f.upload)} if f.upload else {})} for f in files],
        "rows": rows,
        "bytes": sum(f.bytes for f in files),
        "seconds": round(seconds, 3),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return json.dumps(body, indent=2).encode()


def _checksum(upload: dict[str, Any]) -> dict[str, Any]:
    return {
        "algorithm": upload.get("checksum_algorithm"),
        "type": upload.get("checksum_type"),
        "value": upload.get("checksum"),
        "etag": upload.get("etag"),
    }


def export_query(
    conn: psycopg.Connection[Any],
    client: S3Client,
    *,
    sql: str,
    bucket: str,
    key: str,
    options: ExportOptions,
    parameters: Params | None = None,
    open_object: ObjectOpener | None = None,
    upload_config: MultipartConfig | None = None,
    on_progress: Callable[[ProgressSnapshot], None] | None = None,
    progress_interval: float = 5.0,
) -> ExportResult:
    """Stream ``sql`` (with ``parameters`` bound by psycopg on the client) to ``s3://bucket/key`` per ``options``.

    :param conn: psycopg 3 connection; the export runs on it and leaves it open.
    :param client: boto3 S3 client.
    :param open_object: key -> writable context manager; defaults to :func:`multipart_opener`.
    :param upload_config: ``MultipartConfig`` for the default opener.
    :param on_progress: called at most every ``progress_interval`` seconds and once at the end.
    :raises DestinationError: bucket missing or not accessible (before the query runs).
    :raises QueryError: Postgres rejected the query, or a value cannot be represented (nothing written).
    :raises ExportConnectionError: the connection was lost mid-export (nothing left half-written).
    """
    options.validate()
    started = time.monotonic()
    config = upload_config or MultipartConfig()
    retry = config.retry
    check_bucket(client, bucket, retry)
    columns = describe_query(conn, sql, parameters)
    opener = open_object or multipart_opener(client, bucket, options.content_type, config)
    if options.split:
        prefix = key.rstrip("/")
        parts = PartSequence(opener, lambda i: part_key(prefix, i, options.suffix))
    else:
        target = single_key(key, options.suffix)
        parts = PartSequence(opener, lambda i: target)
    manifest = manifest_key(key, options.split) if options.write_manifest else None
    if manifest is not None and options.split:
        delete_keys(client, bucket, [manifest], retry)
    progress = Progress(
        f"export to s3://{bucket}/{key}",
        interval=progress_interval,
        report=on_progress,
        count_rows=True,
        started=started,
    )
    try:
        if options.file_format == "parquet":
            from airflow_s3stream.export.arrow_types import arrow_columns, arrow_schema

            mapped = arrow_columns(columns)
            schema = arrow_schema(mapped)
            with contextlib.closing(arrow_batches(conn, sql, parameters, mapped, schema)) as batches:
                rows = write_parquet(batches, schema, parts, options, progress=progress.set)
        else:
            if options.file_format == "csv":
                statement = copy_statement(
                    sql, delimiter=options.delimiter, header=options.header, null_string=options.null_string
                )
            else:
                statement = jsonl_copy_statement(sql)
            has_header = options.file_format == "csv" and options.header
            with contextlib.closing(copy_rows(conn, statement, parameters, sql)) as copied:
                rows = write_text(copied, parts, options, has_header=has_header, progress=progress.set)
    except BaseException as exc:
        parts.abort(exc)
        written = [f.key for f in parts.files]
        if written:
            log.warning("export failed; deleting %d part(s) this run completed", len(written))
            delete_keys(client, bucket, written, retry)
        raise
    stale: list[str] = []
    if options.split:
        listed = list_keys(client, bucket, prefix + "/part-", retry)
        stale = stale_part_keys(prefix, listed, [f.key for f in parts.files])
        if stale:
            log.info("deleting %d stale part(s) of an earlier run under %s/", len(stale), prefix)
            delete_keys(client, bucket, stale, retry)
    if manifest is not None:
        body = _manifest(sql, options, columns, parts.files, rows=rows, seconds=time.monotonic() - started)
        put_object(client, bucket, manifest, body, retry, ContentType="application/json")
    seconds = time.monotonic() - started
    progress.set(rows, sum(f.bytes for f in parts.files))
    progress.finish()
    return ExportResult(
        bucket=bucket,
        files=parts.files,
        rows=rows,
        bytes=sum(f.bytes for f in parts.files),
        seconds=seconds,
        columns=columns,
        manifest_key=manifest,
        deleted_stale=stale,
    )
