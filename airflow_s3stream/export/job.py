"""The job commit: the files staged by many tasks (mapped partitions) published under one manifest.

Each task of the job runs :func:`~airflow_s3stream.export.engine.export_query` with ``stage_only``
and returns its staged files (XCom, a few hundred bytes per file). Then one of two things happens:

* :func:`commit_job`, once every task has staged, publishes them all as one export under
  ``<prefix>/`` with :func:`airflow_s3stream.publish.publish`: finish a commit an earlier try
  recorded, check every staged upload is still open, then the staged commit (commit state,
  Complete all, delete the files the replaced manifest listed that this export does not write,
  the manifest LAST), and finally abort uploads left open under the prefix by killed tries;
* :func:`abort_job`, when a task failed: :func:`airflow_s3stream.publish.abandon` aborts every
  staged upload (and every other upload open under the prefix), so the previous export stays
  exactly as it was.

The job owns ``<prefix>/``: every staged key must lie under it, the manifest is
``<prefix>/_manifest.json`` and the commit state ``<prefix>/_commit.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_s3stream.errors import ConfigurationError, SourceError
from airflow_s3stream.export.keys import commit_state_key, manifest_key
from airflow_s3stream.publish import Publication, abandon, publish
from airflow_s3stream.publish.manifest import build_manifest, parse_manifest
from airflow_s3stream.s3.multipart import MultipartConfig
from airflow_s3stream.s3.multipart.staged import StagedUpload
from airflow_s3stream.s3.objects import get_object_bytes

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["JobAbort", "JobCommit", "StagedFile", "abort_job", "commit_job", "staged_files"]

log = logging.getLogger("airflow_s3stream.export")

DESCRIPTION_FIELDS = ("file_format", "compression", "csv", "columns")  # must agree across the job's tasks


@dataclass(frozen=True)
class StagedFile:
    """One file a task staged: its manifest entry and its open upload."""

    key: str
    rows: int
    bytes: int
    upload: StagedUpload


@dataclass
class JobCommit:
    """What :func:`commit_job` published. ``to_dict()`` is the commit operator's XCom value."""

    bucket: str
    manifest_key: str
    files: list[dict[str, Any]]
    rows: int
    bytes: int
    deleted_stale: list[str] = field(default_factory=list)
    commit_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "manifest_key": self.manifest_key,
            "files": self.files,
            "rows": self.rows,
            "bytes": self.bytes,
            "deleted_stale": self.deleted_stale,
            "commit_ms": self.commit_ms,
        }


@dataclass
class JobAbort:
    """What :func:`abort_job` did: staged uploads aborted, and whether a recorded commit was finished."""

    aborted: list[str] = field(default_factory=list)  # keys
    finished_commit: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"aborted": self.aborted, "finished_commit": self.finished_commit}


def staged_files(results: Iterable[Mapping[str, Any] | None], bucket: str, prefix: str) -> list[StagedFile]:
    """The staged files of the job's task results (XCom values of ``stage_only`` exports), in order.

    :raises ConfigurationError: a result is not a staged export, names another bucket, or a key
        lies outside ``prefix`` or is staged twice (two tasks wrote the same key).
    """
    base = prefix.rstrip("/") + "/"
    files: list[StagedFile] = []
    seen: set[str] = set()
    for result in results:
        if result is None:  # a task that returned nothing (skipped its work) stages nothing
            continue
        if not result.get("staged"):
            raise ConfigurationError(
                "a result given to the job commit is not a staged export: set stage_only=True on the export tasks"
            )
        if result.get("bucket") != bucket:
            raise ConfigurationError(
                f"a task staged into s3://{result.get('bucket')}/, the commit is for s3://{bucket}/"
            )
        for entry in result.get("files", []):
            key = str(entry["key"])
            if not key.startswith(base):
                raise ConfigurationError(f"s3://{bucket}/{key} is outside the job's prefix s3://{bucket}/{base}")
            if key in seen:
                raise ConfigurationError(f"s3://{bucket}/{key} was staged by two tasks: give each task its own key")
            if entry.get("staged") is None:
                raise ConfigurationError(f"s3://{bucket}/{key} was not staged")
            seen.add(key)
            upload = StagedUpload.from_dict(bucket, entry["staged"])
            files.append(StagedFile(key, int(entry["rows"]), int(entry["bytes"]), upload))
    return files


def _description(results: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The manifest fields the tasks agree on; ``query`` is ``None`` when their queries differ."""
    descriptions = [dict(r.get("description") or {}) for r in results if r is not None]
    if not descriptions:
        return {"file_format": None, "compression": None, "csv": None, "query": None, "columns": []}
    first = descriptions[0]
    for other in descriptions[1:]:
        for name in DESCRIPTION_FIELDS:
            if other.get(name) != first.get(name):
                raise ConfigurationError(
                    f"the job's tasks disagree on {name} ({first.get(name)!r} vs {other.get(name)!r}): "
                    "one manifest can only describe files of one format and one set of columns"
                )
    queries = {d.get("query") for d in descriptions}
    return {
        **{name: first.get(name) for name in DESCRIPTION_FIELDS},
        "query": first.get("query") if len(queries) == 1 else None,
    }


def commit_job(
    client: S3Client,
    *,
    bucket: str,
    prefix: str,
    results: Iterable[Mapping[str, Any] | None],
    config: MultipartConfig,
) -> JobCommit:
    """Publish the staged files of ``results`` as one export under ``<prefix>/`` (see the module docstring).

    :raises ConfigurationError: the results cannot make one export (see :func:`staged_files`).
    :raises UploadError: a staged upload is gone (nothing is published; every other staged upload
        is aborted), or a step of the commit failed (the commit state lets the next try finish it).
    """
    listed = [r for r in results if r is not None]
    base = prefix.rstrip("/")
    state = commit_state_key(base)
    index_key = manifest_key(base, split=True)
    files = staged_files(listed, bucket, base)
    description = _description(listed)
    written = {f.key for f in files}
    seconds = max((float(r.get("seconds", 0.0)) for r in listed), default=0.0)
    document = build_manifest(
        **description,
        files=[{"key": f.key, "rows": f.rows, "bytes": f.bytes} for f in files],
        seconds=seconds,
    )
    publication = Publication(
        bucket,
        tuple(f.upload for f in files),
        index_key,
        document,
        state_key=state,
        owned_prefix=base + "/",
        staged_elsewhere=True,
    )

    def replaced_files() -> list[str]:  # read once a commit a killed try recorded is finished
        previous = _previous_files(client, bucket, index_key, config)
        return [k for k in previous if k not in written and k.startswith(base + "/") and k not in (index_key, state)]

    outcome = publish(client, publication, config, stale=replaced_files)
    entries = [
        {"key": f.key, "rows": f.rows, "bytes": f.bytes, "etag": outcome.results[f.key].etag}
        for f in files
        if f.key in outcome.results
    ]
    return JobCommit(
        bucket=bucket,
        manifest_key=index_key,
        files=entries,
        rows=sum(f.rows for f in files),
        bytes=sum(f.bytes for f in files),
        deleted_stale=outcome.deleted,
        commit_ms=outcome.commit_ms,
    )


def abort_job(
    client: S3Client,
    *,
    bucket: str,
    prefix: str,
    results: Iterable[Mapping[str, Any] | None],
    config: MultipartConfig,
) -> JobAbort:
    """Abort what the job staged: the uploads of ``results`` (the tasks that succeeded) still open,
    and every other upload open under ``<prefix>/`` (tasks killed while staging). Never publishes the job.

    A commit that had started (its state at ``<prefix>/_commit.json``) is finished first: it only
    rolls forward, since some of its files may already be visible. After a successful commit nothing
    is open, so nothing is aborted (one ListMultipartUploads call). Without permission to list
    uploads, every upload of ``results`` is aborted (a completed one answers ``NoSuchUpload``).
    """
    base = prefix.rstrip("/")
    staged = tuple(f.upload for f in staged_files([r for r in results if r is not None], bucket, base))
    publication = Publication(bucket, staged, state_key=commit_state_key(base), owned_prefix=base + "/")
    done = abandon(client, publication, config)
    return JobAbort(aborted=done.aborted, finished_commit=done.finished_commit)


def _previous_files(client: S3Client, bucket: str, index_key: str, config: MultipartConfig) -> list[str]:
    """The keys the manifest being replaced lists (none when there is none, or it cannot be read)."""
    raw = get_object_bytes(
        client, bucket, index_key, config.retry, what=f"reading the current manifest s3://{bucket}/{index_key}"
    )
    if raw is None:
        return []
    try:
        return [f.key for f in parse_manifest(raw, bucket, index_key).files]
    except SourceError as exc:
        log.warning("%s: no stale files are deleted", exc)
        return []
