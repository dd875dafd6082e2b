"""The staged commit: staged files published all at once or not at all.

Like Hadoop's S3A committers, every file is first *staged* (its multipart upload left open:
nothing is visible yet, and the previous output under the same keys stays exactly as it was).
:func:`commit` then runs a :class:`~.state.CommitPlan` in this order:

1. write the commit state (:mod:`.state`) beside the manifest, so a killed worker's next try can
   finish what this one started;
2. complete every upload, up to ``max_concurrency`` at once (``complete_and_verify``:
   a lost Complete answer is settled by reading the object back, so completing twice is harmless);
3. delete ``plan.delete`` (stale objects of an earlier, larger run);
4. write the manifest LAST, each ``files`` entry given its object's ``etag`` and ``checksum``, so a
   reader that trusts the manifest finds every file it lists;
5. delete the commit state.

Steps 2-4 are the *commit window* (``CommitOutcome.commit_ms``): only there can a reader see new
files beside the old manifest. A failure before step 1 aborts every staged upload: the old output
is untouched. From step 2 on the commit only rolls forward: a failure leaves the state, and the
next try calls :func:`finish_recorded_commit` first, which completes what remains (idempotently),
deletes, writes the manifest and drops the state; if an upload cannot be completed any more
(aborted by a lifecycle rule, replaced), it aborts the rest, drops the state and lets the new try
overwrite everything. Callers use :mod:`.publication`, which puts these steps in order.

A file smaller than one part is staged as a one-part upload (the last part may be any size, the
empty file a 0-byte part: S3 and moto accept it), so every staged file is published the same way.
"""

from __future__ import annotations

import logging
import posixpath
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow_s3stream.errors import ChecksumMismatchError, UploadError
from airflow_s3stream.progress import plural
from airflow_s3stream.publish.manifest import encode_manifest, with_published
from airflow_s3stream.publish.state import CommitPlan
from airflow_s3stream.s3.multipart.completion import complete_and_verify, confirm_completed
from airflow_s3stream.s3.multipart.config import MultipartConfig
from airflow_s3stream.s3.multipart.result import UploadResult
from airflow_s3stream.s3.multipart.staged import StagedUpload, abort_staged
from airflow_s3stream.s3.objects import delete_keys, get_object_bytes, put_object

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["CommitOutcome", "check_staged", "commit", "finish_recorded_commit"]

log = logging.getLogger("airflow_s3stream.publish")


@dataclass
class CommitOutcome:
    """What a commit published: the completed objects by key, what it deleted, and its window in ms."""

    results: dict[str, UploadResult]
    deleted: list[str] = field(default_factory=list)
    commit_ms: float = 0.0


def commit(
    client: S3Client, plan: CommitPlan, config: MultipartConfig, *, state_key: str | None = None
) -> CommitOutcome:
    """Publish ``plan``: state (when ``state_key``), Complete all, delete, manifest last, drop the state.

    :raises UploadError: (or another package error) a step failed. When the state could not be
        written, every upload is aborted (nothing was published). After that, the uploads are left
        as they are and the state lets :func:`finish_recorded_commit` finish the commit on the next
        try. Without ``state_key``, a failure aborts the uploads still open.
    """
    if state_key is not None:
        try:
            put_object(client, plan.bucket, state_key, plan.to_json(), config.retry, ContentType="application/json")
        except BaseException:
            abort_staged(client, plan.uploads, config)  # nothing published yet: the old output stays
            raise
    try:
        outcome = _publish(client, plan, config)
    except BaseException:
        if state_key is None:
            abort_staged(client, plan.uploads, config)  # no state to finish from: abort what is still open
        else:
            log.error("commit interrupted; s3://%s/%s lets the next try finish it", plan.bucket, state_key)
        raise
    if state_key is not None:
        _drop_state(client, plan.bucket, state_key, config)
    return outcome


def _publish(client: S3Client, plan: CommitPlan, config: MultipartConfig) -> CommitOutcome:
    started = time.monotonic()
    results: dict[str, UploadResult] = {}
    if plan.uploads:
        # In parallel (up to max_concurrency): the commit window is one Complete + HeadObject long,
        # not one per file. Every Complete runs to its end; the first failure is raised after.
        workers = min(config.max_concurrency, len(plan.uploads))
        with ThreadPoolExecutor(workers, thread_name_prefix="s3stream-commit") as pool:
            futures = [pool.submit(_complete, client, staged, config, started) for staged in plan.uploads]
            wait(futures)
        for future in futures:
            result = future.result()  # raises the first failure, in plan order
            results[result.key] = result
    if plan.delete:
        log.info(
            "deleting %s of an earlier run: %s",
            plural(len(plan.delete), "stale object"),
            ", ".join(plan.delete[:5]),
        )
        delete_keys(client, plan.bucket, list(plan.delete), config.retry)
    if plan.manifest_key is not None and plan.manifest is not None:
        body = encode_manifest(with_published(plan.manifest, results))
        put_object(client, plan.bucket, plan.manifest_key, body, config.retry, ContentType="application/json")
    commit_ms = round((time.monotonic() - started) * 1000, 1)
    keys = [u.key for u in plan.uploads] + ([plan.manifest_key] if plan.manifest_key else [])
    log.info(
        "committed %s under s3://%s/%s in %.1f ms (first Complete to manifest written)",
        plural(len(plan.uploads), "file"),
        plan.bucket,
        _common_folder(keys),
        commit_ms,
    )
    return CommitOutcome(results, list(plan.delete), commit_ms)


def _complete(client: S3Client, staged: StagedUpload, config: MultipartConfig, started: float) -> UploadResult:
    session = staged.session(client, config)
    finished = complete_and_verify(session, list(staged.parts))
    part_size = staged.parts[0].size if staged.parts else 0
    return finished.result(session, part_size, started, uploaded_parts=len(staged.parts))


def check_staged(client: S3Client, uploads: Sequence[StagedUpload], config: MultipartConfig) -> None:
    """Before a commit of uploads staged by other tasks: every upload is still open (ListParts), or
    was already completed into the object its parts make (a commit that ran before). Up to
    ``max_concurrency`` checks at once; nothing is changed.

    :raises UploadError: naming every key whose upload is gone (aborted by a cleanup, expired by a
        lifecycle rule) and not completed as staged: committing would publish a partial export.
    """

    def check(staged: StagedUpload) -> str | None:
        session = staged.session(client, config)
        if session.list_parts() is not None:
            return None
        try:
            confirm_completed(session, list(staged.parts), because=f"staged upload {staged.upload_id} is gone")
        except UploadError as exc:
            return str(exc)
        return None

    if not uploads:
        return
    with ThreadPoolExecutor(min(config.max_concurrency, len(uploads)), thread_name_prefix="s3stream-check") as pool:
        problems = [p for p in pool.map(check, uploads) if p is not None]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UploadError(
            f"{len(problems)} of {plural(len(uploads), 'staged file')} can no longer be committed: "
            + "; ".join(problems[:3])
            + more
            + ". Re-run the tasks that staged them (clear the export tasks and everything downstream)."
        )


def finish_recorded_commit(
    client: S3Client, bucket: str, state_key: str, config: MultipartConfig
) -> CommitOutcome | None:
    """Finish the commit a killed try recorded at ``state_key``; ``None`` when there is none.

    Completing is idempotent, so the uploads the killed try had completed are only confirmed.
    When an upload cannot be completed any more (aborted, expired, replaced: :class:`UploadError`
    or :class:`ChecksumMismatchError`), the recorded commit is given up: its remaining uploads are
    aborted and the state deleted, and the caller's own publication replaces whatever it left. An
    unreadable state is deleted with a warning.
    """
    raw = get_object_bytes(
        client, bucket, state_key, config.retry, what=f"reading commit state s3://{bucket}/{state_key}"
    )
    if raw is None:
        return None
    try:
        plan = CommitPlan.from_json(raw)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("deleting unreadable commit state s3://%s/%s: %s", bucket, state_key, exc)
        _drop_state(client, bucket, state_key, config)
        return None
    log.warning(
        "s3://%s/%s: an earlier try was killed during its commit of %s; finishing it first",
        bucket,
        state_key,
        plural(len(plan.uploads), "file"),
    )
    try:
        outcome = _publish(client, plan, config)
    except (UploadError, ChecksumMismatchError) as exc:
        log.error("giving up the recorded commit s3://%s/%s: %s", bucket, state_key, exc)
        abort_staged(client, plan.uploads, config)
        _drop_state(client, bucket, state_key, config)
        return None
    _drop_state(client, bucket, state_key, config)
    return outcome


def _drop_state(client: S3Client, bucket: str, state_key: str, config: MultipartConfig) -> None:
    delete_keys(client, bucket, [state_key], config.retry)


def _common_folder(keys: list[str]) -> str:
    """The longest ``folder/`` every key lies under ('' for none): what a commit's log line names."""
    common = posixpath.commonprefix(keys) if keys else ""
    return common[: common.rfind("/") + 1]
