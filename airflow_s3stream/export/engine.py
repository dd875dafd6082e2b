"""The export: a Postgres query streamed into S3 objects, published whole or not at all.

``export_query`` takes a psycopg 3 connection and a boto3 S3 client (no Airflow here) and runs:

1. HeadBucket: a missing bucket or refused credentials fail before the query runs;
   every S3 call here goes through :mod:`airflow_s3stream.s3` (retried, errors named);
2. describe the query (``LIMIT 0``): SQL errors fail here, before any object is opened;
3. stream ``COPY`` into one object, or numbered parts, through the multipart writer (uploads
   overlap reading; memory is about ``(max_concurrency + 1) x part_size``). Split: every part is
   *staged*, a multipart upload left open when its file closes, so nothing under the prefix
   changes yet (the old parts and the old manifest stay as they were);
4. on error: :func:`airflow_s3stream.publish.abandon`: abort the open upload and every staged
   one (a single object completed by a custom opener is deleted), then re-raise; the previous
   export is untouched;
5. on success, split: :func:`airflow_s3stream.publish.publish`: finish the commit a killed
   earlier try recorded in ``<prefix>/_commit.json`` (its export is published whole), then the
   staged commit (commit state, every Complete, stale ``part-NNNNN`` objects of an earlier, larger
   run deleted, the manifest LAST, the state dropped), then abort the uploads killed tries left
   open under ``<prefix>/part-``. The window from the first Complete to the manifest is
   ``commit_ms``. Single object: the manifest (if asked) after it.

With ``stage_only`` (one task of a job of mapped tasks) step 5 is left to the job: every file,
split or not, is staged and returned (:attr:`ExportResult.staged`); :mod:`airflow_s3stream.export.job`
commits the files of all tasks under one manifest, or aborts them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_s3stream.budget import compact_arrow_memory
from airflow_s3stream.errors import ConfigurationError, InvalidInputError
from airflow_s3stream.export.columns import Column, describe_query
from airflow_s3stream.export.copy_stream import arrow_batches, copy_rows
from airflow_s3stream.export.keys import commit_state_key, manifest_key, part_key, single_key, stale_part_keys
from airflow_s3stream.export.options import ExportOptions
from airflow_s3stream.export.query import copy_statement, jsonl_copy_statement
from airflow_s3stream.export.writers import ExportedFile, ObjectOpener, PartSequence, write_parquet, write_text
from airflow_s3stream.progress import Progress, ProgressSnapshot
from airflow_s3stream.publish import Publication, abandon, publish
from airflow_s3stream.publish.manifest import build_manifest, csv_settings, index_entry
from airflow_s3stream.s3.multipart import MultipartConfig, MultipartWriter
from airflow_s3stream.s3.objects import check_bucket, list_keys

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
    commit_ms: float | None = None  # split: first Complete to manifest written, milliseconds
    description: dict[str, Any] = field(default_factory=dict)  # the manifest's format, columns, query ...
    staged: bool = False  # stage_only: every file is an open upload, for the job's commit

    @property
    def mb_per_s(self) -> float:
        return round(self.bytes / 1e6 / self.seconds, 2) if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The XCom value; a staged export adds, per file, what committing it needs (``staged``),
        and the manifest fields the job's commit writes (``description``)."""
        result: dict[str, Any] = {
            "bucket": self.bucket,
            "files": [f.to_dict() for f in self.files],
            "rows": self.rows,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "mb_per_s": self.mb_per_s,
            "manifest_key": self.manifest_key,
            "commit_ms": self.commit_ms,
        }
        if self.staged:
            for entry, f in zip(result["files"], self.files, strict=True):
                entry["staged"] = f.staged.to_dict() if f.staged is not None else None
            result["staged"] = True
            result["description"] = self.description
        return result


def multipart_opener(
    client: S3Client, bucket: str, content_type: str, config: MultipartConfig | None = None, *, stage: bool = False
) -> Callable[[str], contextlib.AbstractContextManager[Any]]:
    """Opener that writes each key through the package's parallel :class:`MultipartWriter`
    (``stage``: each upload is left open for the export's commit)."""

    def open_object(key: str) -> contextlib.AbstractContextManager[Any]:
        return MultipartWriter(
            client,
            bucket,
            key,
            config=config,
            extra_args={"ContentType": content_type},
            report_progress=False,
            stage=stage,
        )

    return open_object


def _description(sql: str, options: ExportOptions, columns: list[Column]) -> dict[str, Any]:
    """The manifest's fields that describe the files (all but ``files``, totals and times)."""
    return {
        "file_format": options.file_format,
        "compression": options.compression,
        "csv": csv_settings(
            options.file_format, delimiter=options.delimiter, header=options.header, null_string=options.null_string
        ),
        "query": sql,
        "columns": [{"name": c.name, "type": c.type_name} for c in columns],
    }


def _manifest(description: dict[str, Any], files: list[ExportedFile], *, seconds: float) -> dict[str, Any]:
    """The manifest document; a staged file's ``etag`` and ``checksum`` are added by the commit."""
    listed = [{**f.to_dict(), **(index_entry(f.upload) if f.upload else {})} for f in files]
    return build_manifest(**description, files=listed, seconds=seconds)


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
    stage_only: bool = False,
) -> ExportResult:
    """Stream ``sql`` (with ``parameters`` bound by psycopg on the client) to ``s3://bucket/key`` per ``options``.

    :param conn: psycopg 3 connection; the export runs on it and leaves it open.
    :param client: boto3 S3 client.
    :param open_object: key -> writable context manager; defaults to :func:`multipart_opener`.
    :param upload_config: ``MultipartConfig`` for the default opener.
    :param on_progress: called at most every ``progress_interval`` seconds and once at the end.
    :param stage_only: stage every file (split or not) and publish nothing: no commit, no manifest
        (``options.write_manifest`` must be off); the job's commit publishes the files.
    :raises DestinationError: bucket missing or not accessible (before the query runs).
    :raises QueryError: Postgres rejected the query, or a value cannot be represented (nothing written).
    :raises ExportConnectionError: the connection was lost mid-export (nothing left half-written).
    :raises InvalidInputError: no rows and ``options.empty_result == "fail"`` (nothing written).
    """
    options.validate()
    if stage_only and options.write_manifest:
        raise ConfigurationError("stage_only: the job's commit writes the manifest; write_manifest must be off")
    started = time.monotonic()
    config = upload_config or MultipartConfig()
    check_bucket(client, bucket, config.retry)
    prefix = key.rstrip("/")
    columns = describe_query(conn, sql, parameters)
    stage = options.split or stage_only
    opener = open_object or multipart_opener(client, bucket, options.content_type, config, stage=stage)
    if options.split:
        parts = PartSequence(opener, lambda i: part_key(prefix, i, options.suffix))
    else:
        target = single_key(key, options.suffix)
        parts = PartSequence(opener, lambda i: target)
    manifest = manifest_key(key, options.split) if options.write_manifest else None
    progress = Progress(
        f"export to s3://{bucket}/{key}",
        interval=progress_interval,
        report=on_progress,
        count_rows=True,
        started=started,
    )
    try:
        if options.file_format == "parquet":
            compact_arrow_memory()  # before pyarrow's first import: it picks Arrow's C++ pool
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
        if rows == 0 and options.empty_result == "fail":
            raise InvalidInputError(_empty_result_message(sql, parameters))
        description = _description(sql, options, columns)
        document = None
        if manifest is not None:
            document = _manifest(description, parts.files, seconds=time.monotonic() - started)
    except BaseException as exc:
        parts.abort(exc)
        try:
            _abandon(client, bucket, prefix, parts.files, config, owned=options.split and not stage_only)
        except Exception as cleanup:  # the export's own error is the one to raise; the next try cleans up
            log.error("export failed (%s), and giving up its files failed too: %s", exc, cleanup)
        raise
    stale: list[str] = []
    commit_ms: float | None = None
    if not stage_only and (options.split or document is not None):  # stage_only: the job's commit publishes
        publication = Publication(
            bucket,
            tuple(f.staged for f in parts.files if f.staged is not None),
            manifest,
            document,
            state_key=commit_state_key(prefix) if options.split else None,
            owned_prefix=prefix + "/part-" if options.split else None,
        )

        def stale_parts() -> list[str]:  # listed once a commit a killed try recorded is finished
            listed = list_keys(client, bucket, prefix + "/part-", config.retry)
            return stale_part_keys(prefix, listed, [f.key for f in parts.files])

        outcome = publish(client, publication, config, stale=stale_parts if options.split else None)
        for f in parts.files:
            if f.key in outcome.results:
                f.upload = outcome.results[f.key].to_dict()
        commit_ms = outcome.commit_ms if options.split else None
        stale = outcome.deleted
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
        commit_ms=commit_ms,
        description=description,
        staged=stage_only,
    )


def _abandon(
    client: S3Client, bucket: str, prefix: str, files: list[ExportedFile], config: MultipartConfig, *, owned: bool
) -> None:
    """Before the commit: abort the staged uploads (and, for a split export, every upload open under
    ``<prefix>/part-``); delete objects a (custom) opener completed."""
    staged = tuple(f.staged for f in files if f.staged is not None)
    publication = Publication(
        bucket,
        staged,
        state_key=commit_state_key(prefix) if owned else None,
        owned_prefix=prefix + "/part-" if owned else None,
    )
    log.warning("export failed; publishing nothing: the previous export stays as it was")
    abandon(client, publication, config, completed=[f.key for f in files if f.staged is None])


def _empty_result_message(sql: str, parameters: Any) -> str:
    """The ``empty_result="fail"`` error: the query (on one line, shortened) and its parameters (the interval)."""
    query = " ".join(sql.split())
    if len(query) > 300:
        query = query[:297] + "..."
    bound = f" with parameters {parameters!r}" if parameters else ""
    return f"the query returned no rows (empty_result='fail'): {query}{bound}"
