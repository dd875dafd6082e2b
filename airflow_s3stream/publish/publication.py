"""The one call each caller makes: :func:`publish` staged files with their manifest, or :func:`abandon` them.

A :class:`Publication` names what becomes visible together: the staged uploads, the manifest
written after them, where the commit is recorded while it runs (``state_key``), and the prefix
the publication owns (``owned_prefix``). Both calls first finish a commit a killed earlier try
recorded at ``state_key`` (such a commit only rolls forward: some of its files may already be
visible), and both abort the uploads killed tries left open under ``owned_prefix``, so every try
leaves the prefix holding one whole export and no open upload:

* :func:`publish` checks uploads staged by other tasks are still open (``staged_elsewhere``), asks
  ``stale`` which objects of an earlier run to delete, then runs the staged commit (:mod:`.commit`);
* :func:`abandon` aborts the publication's uploads and deletes the objects a failed run completed:
  the previous output stays exactly as it was.

Users: the export (one task, :mod:`airflow_s3stream.export.engine`), the job of mapped tasks
(:mod:`airflow_s3stream.export.job`) and the BagIt packager (one staged ZIP, no manifest).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_s3stream.errors import DestinationError
from airflow_s3stream.progress import plural
from airflow_s3stream.publish.commit import CommitOutcome, check_staged, commit, finish_recorded_commit
from airflow_s3stream.publish.state import CommitPlan
from airflow_s3stream.s3.multipart.cleanup import abort_stale_uploads, abort_upload
from airflow_s3stream.s3.multipart.config import MultipartConfig
from airflow_s3stream.s3.multipart.staged import StagedUpload, abort_staged
from airflow_s3stream.s3.objects import delete_keys

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["Abandoned", "Publication", "abandon", "publish"]

log = logging.getLogger("airflow_s3stream.publish")


@dataclass(frozen=True)
class Publication:
    """What one publication makes visible together, and what it owns.

    :param bucket: the bucket of every upload and key.
    :param uploads: the staged files (published in this order).
    :param manifest_key: where the manifest goes, written after every file; ``None``: no manifest.
    :param manifest: the manifest document (:func:`~airflow_s3stream.publish.manifest.build_manifest`).
    :param state_key: where the commit is recorded while it runs; ``None``: not recorded (a failed
        commit then aborts what is still open).
    :param owned_prefix: uploads open under it, other than ``uploads``, are leftovers of killed
        tries and are aborted; ``None``: the publication owns no prefix.
    :param staged_elsewhere: the uploads were staged by other tasks: check each is still open first.
    """

    bucket: str
    uploads: tuple[StagedUpload, ...] = ()
    manifest_key: str | None = None
    manifest: dict[str, Any] | None = None
    state_key: str | None = None
    owned_prefix: str | None = None
    staged_elsewhere: bool = False


@dataclass
class Abandoned:
    """What :func:`abandon` did: the keys of the uploads aborted, the objects deleted, and whether a
    commit a killed try had recorded was finished first."""

    aborted: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    finished_commit: bool = False


def publish(
    client: S3Client,
    publication: Publication,
    config: MultipartConfig,
    *,
    stale: Callable[[], Iterable[str]] | None = None,
) -> CommitOutcome:
    """Publish ``publication`` whole: its files, then its manifest (see the module docstring).

    :param stale: called once the recorded commit of a killed try is finished: the keys of an
        earlier run's objects to delete in the commit.
    :raises UploadError: an upload staged elsewhere is gone (nothing is published; every upload of
        the publication is aborted), or a step of the commit failed (with ``state_key`` the next
        try finishes it; without, the uploads still open are aborted).
    """
    if publication.state_key is not None:
        finish_recorded_commit(client, publication.bucket, publication.state_key, config)
    try:
        if publication.staged_elsewhere:
            check_staged(client, publication.uploads, config)
        delete = tuple(stale()) if stale is not None else ()
    except BaseException:
        abort_staged(client, publication.uploads, config)  # nothing published: the old output stays
        raise
    plan = CommitPlan(publication.bucket, publication.uploads, delete, publication.manifest_key, publication.manifest)
    outcome = commit(client, plan, config, state_key=publication.state_key)
    if publication.owned_prefix is not None:
        keep = {u.upload_id for u in publication.uploads}
        leftovers = [u for u in _open_uploads(client, publication, config) or () if u[1] not in keep]
        if leftovers:
            log.warning(
                "aborting %s left open under s3://%s/%s by killed tries",
                plural(len(leftovers), "upload"),
                publication.bucket,
                publication.owned_prefix,
            )
        _abort(client, publication.bucket, leftovers, config)
    return outcome


def abandon(
    client: S3Client, publication: Publication, config: MultipartConfig, *, completed: Sequence[str] = ()
) -> Abandoned:
    """Publish nothing of ``publication``: abort its uploads still open, and every other upload open
    under ``owned_prefix`` (killed tries); delete ``completed`` (objects this run completed itself).

    A commit recorded at ``state_key`` is finished first: it only rolls forward. Without
    permission to list uploads (or without ``owned_prefix``), every upload of the publication is
    aborted instead (one already completed answers ``NoSuchUpload``, which is not an error). Never
    raises for an upload that cannot be aborted (it is logged, and left to the lifecycle rule).
    """
    done = Abandoned()
    if publication.state_key is not None:
        recorded = finish_recorded_commit(client, publication.bucket, publication.state_key, config)
        done.finished_commit = recorded is not None
    listed = _open_uploads(client, publication, config)
    targets = sorted(listed) if listed is not None else [(u.key, u.upload_id) for u in publication.uploads]
    if targets:
        log.warning(
            "aborting %s in s3://%s/%s: the previous output stays as it was",
            plural(len(targets), "staged upload"),
            publication.bucket,
            publication.owned_prefix or "",
        )
    _abort(client, publication.bucket, targets, config)
    done.aborted = sorted({key for key, _ in targets})
    if completed:
        log.warning("deleting %s this run completed", plural(len(completed), "object"))
        delete_keys(client, publication.bucket, list(completed), config.retry)
        done.deleted = list(completed)
    return done


def _open_uploads(client: S3Client, publication: Publication, config: MultipartConfig) -> set[tuple[str, str]] | None:
    """``(key, upload_id)`` of every upload open under the owned prefix; ``None`` without an owned
    prefix, or (with a warning) when the credentials may not list uploads."""
    if publication.owned_prefix is None:
        return None
    where = f"s3://{publication.bucket}/{publication.owned_prefix}"
    try:
        listed = abort_stale_uploads(
            client,
            publication.bucket,
            publication.owned_prefix,
            older_than=timedelta(0),
            dry_run=True,
            retry=config.retry,
        )
    except DestinationError as exc:
        log.warning("could not list the uploads open under %s: %s", where, exc)
        return None
    return {(u.key, u.upload_id) for u in listed}


def _abort(client: S3Client, bucket: str, uploads: Iterable[tuple[str, str]], config: MultipartConfig) -> None:
    for key, upload_id in uploads:
        abort_upload(client, bucket, key, upload_id, config.retry)
