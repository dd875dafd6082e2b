"""The staged commit: files written as multipart uploads left open, then published all at once or not at all.

Like Hadoop's S3A committers, a writer in staged mode (``MultipartWriter(stage=True)``) uploads
every part of its file but does not complete it: nothing is visible yet, and the previous output
under the same keys stays exactly as it was. When every file is staged, :func:`commit` runs a
:class:`CommitPlan` in this order:

1. write the *commit state* (JSON, below) beside the index, so a killed worker's next try can
   finish what this one started;
2. complete every upload, up to ``max_concurrency`` at once (:func:`~.completion.complete_and_verify`:
   a lost Complete answer is settled by reading the object back, so completing twice is harmless);
3. delete ``plan.delete`` (stale objects of an earlier, larger run);
4. write the index (the export's ``_manifest.json``) LAST, each ``files`` entry given its object's
   ``etag`` and ``checksum``, so a reader that trusts the index finds every file it lists;
5. delete the commit state.

Steps 2-4 are the *commit window* (``CommitOutcome.commit_ms``): only there can a reader see new
files beside the old index. A failure before step 1 leaves the old output untouched; the caller
aborts every staged upload (:func:`abort_staged`). From step 2 on the commit only rolls forward: a
failure leaves the state, and the next try calls :func:`finish_recorded_commit` before anything
else, which completes what remains (idempotently), deletes, writes the index and drops the state;
if an upload cannot be completed any more (aborted by a lifecycle rule, replaced), it aborts the
rest, drops the state and lets the new try overwrite everything.

Commit state (``version`` 1), a few hundred bytes per file::

    {"version": 1, "bucket": "b", "index_key": "exp/day/_manifest.json", "index": {... "files": [{"key": ...}]},
     "delete": ["exp/day/part-00004.csv"],
     "uploads": [{"key": "exp/day/part-00000.csv", "upload_id": "...", "algorithm": "CRC32C",
                  "checksum_type": "COMPOSITE", "parts": [[1, 5242880, "\\"etag\\"", "crc-b64", "md5-hex"], ...]}]}

A file smaller than one part is staged as a one-part upload (the last part may be any size, the
empty file a 0-byte part: S3 and moto accept it), so every staged file is published the same way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from airflow_s3stream.errors import ChecksumMismatchError, UploadError
from airflow_s3stream.s3.multipart.completion import complete_and_verify, confirm_completed
from airflow_s3stream.s3.multipart.config import CHECKSUM_MD5, MultipartConfig
from airflow_s3stream.s3.multipart.result import UploadResult
from airflow_s3stream.s3.multipart.session import PartRecord, UploadSession
from airflow_s3stream.s3.objects import delete_keys, get_object_bytes, put_object

__all__ = [
    "COMMIT_STATE_VERSION",
    "CommitOutcome",
    "CommitPlan",
    "StagedUpload",
    "abort_staged",
    "check_staged",
    "commit",
    "finish_recorded_commit",
    "index_entry",
]

log = logging.getLogger("airflow_s3stream.s3.multipart")

COMMIT_STATE_VERSION = 1


@dataclass(frozen=True)
class StagedUpload:
    """A file uploaded but not completed: what completing (or aborting) it needs, and nothing more."""

    bucket: str
    key: str
    upload_id: str
    algorithm: str
    checksum_type: str
    parts: tuple[PartRecord, ...]

    @property
    def size(self) -> int:
        """Bytes of the file (all parts)."""
        return sum(p.size for p in self.parts)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def session(self, client: Any, config: MultipartConfig) -> UploadSession:
        """An :class:`UploadSession` on this upload, with the algorithm and checksum type it was created with."""
        if self.algorithm == CHECKSUM_MD5:
            config = dataclasses.replace(config, checksum_algorithm=CHECKSUM_MD5, checksum_type=None)
        else:
            config = dataclasses.replace(config, checksum_algorithm=self.algorithm, checksum_type=self.checksum_type)
        return UploadSession(client, self.bucket, self.key, config, upload_id=self.upload_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "upload_id": self.upload_id,
            "algorithm": self.algorithm,
            "checksum_type": self.checksum_type,
            "parts": [[p.number, p.size, p.etag, p.checksum, p.md5] for p in self.parts],
        }

    @classmethod
    def from_dict(cls, bucket: str, data: dict[str, Any]) -> StagedUpload:
        parts = tuple(PartRecord(int(n), int(s), str(e), str(c), str(m)) for n, s, e, c, m in data["parts"])
        return cls(bucket, data["key"], data["upload_id"], data["algorithm"], data["checksum_type"], parts)


@dataclass(frozen=True)
class CommitPlan:
    """Everything one commit does: complete ``uploads``, delete ``delete``, write ``index`` at ``index_key``.

    ``index`` is a JSON document whose ``files`` entries (dicts with a ``key``) are given the
    ``etag`` and ``checksum`` of their completed object (:func:`index_entry`) before it is written.
    """

    bucket: str
    uploads: tuple[StagedUpload, ...]
    delete: tuple[str, ...] = ()
    index_key: str | None = None
    index: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "version": COMMIT_STATE_VERSION,
                "bucket": self.bucket,
                "index_key": self.index_key,
                "index": self.index,
                "delete": list(self.delete),
                "uploads": [u.to_dict() for u in self.uploads],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> CommitPlan:
        data = json.loads(raw)
        if data.get("version") != COMMIT_STATE_VERSION:
            raise ValueError(f"commit state version {data.get('version')!r} is not {COMMIT_STATE_VERSION}")
        bucket = str(data["bucket"])
        uploads = tuple(StagedUpload.from_dict(bucket, u) for u in data["uploads"])
        return cls(bucket, uploads, tuple(data["delete"]), data.get("index_key"), data.get("index"))


@dataclass
class CommitOutcome:
    """What a commit published: the completed objects by key, what it deleted, and its window in ms."""

    results: dict[str, UploadResult]
    deleted: list[str] = field(default_factory=list)
    commit_ms: float = 0.0


def index_entry(result: UploadResult | dict[str, Any]) -> dict[str, Any]:
    """The ``etag`` and ``checksum`` fields an index (manifest) lists for one completed object."""
    data = result.to_dict() if isinstance(result, UploadResult) else result
    return {
        "etag": data.get("etag"),
        "checksum": {
            "algorithm": data.get("checksum_algorithm"),
            "type": data.get("checksum_type"),
            "value": data.get("checksum"),
            "etag": data.get("etag"),
        },
    }


def commit(client: Any, plan: CommitPlan, config: MultipartConfig, *, state_key: str | None = None) -> CommitOutcome:
    """Publish ``plan``: state (when ``state_key``), Complete all, delete, index last, drop the state.

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


def _publish(client: Any, plan: CommitPlan, config: MultipartConfig) -> CommitOutcome:
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
        log.info("deleting %d stale object(s) of an earlier run: %s", len(plan.delete), ", ".join(plan.delete[:5]))
        delete_keys(client, plan.bucket, list(plan.delete), config.retry)
    if plan.index_key is not None and plan.index is not None:
        document = dict(plan.index)
        document["files"] = [
            {**entry, **(index_entry(results[entry["key"]]) if entry.get("key") in results else {})}
            for entry in plan.index.get("files", [])
        ]
        body = json.dumps(document, indent=2).encode()
        put_object(client, plan.bucket, plan.index_key, body, config.retry, ContentType="application/json")
    commit_ms = round((time.monotonic() - started) * 1000, 1)
    log.info(
        "committed %d file(s) under s3://%s/ in %.1f ms (first Complete to index written)",
        len(plan.uploads),
        plan.bucket,
        commit_ms,
    )
    return CommitOutcome(results, list(plan.delete), commit_ms)


def _complete(client: Any, staged: StagedUpload, config: MultipartConfig, started: float) -> UploadResult:
    session = staged.session(client, config)
    finished = complete_and_verify(session, list(staged.parts))
    part_size = staged.parts[0].size if staged.parts else 0
    return finished.result(session, part_size, started, uploaded_parts=len(staged.parts))


def check_staged(client: Any, uploads: Sequence[StagedUpload], config: MultipartConfig) -> None:
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
            f"{len(problems)} of {len(uploads)} staged file(s) can no longer be committed: "
            + "; ".join(problems[:3])
            + more
            + ". Re-run the tasks that staged them (clear the export tasks and everything downstream)."
        )


def abort_staged(client: Any, uploads: Sequence[StagedUpload], config: MultipartConfig) -> None:
    """Abort every staged upload. Never raises: what cannot be aborted is logged (and left to the
    bucket's lifecycle rule or :func:`~.cleanup.abort_stale_uploads`)."""
    for staged in uploads:
        staged.session(client, config).abort()


def finish_recorded_commit(client: Any, bucket: str, state_key: str, config: MultipartConfig) -> CommitOutcome | None:
    """Finish the commit a killed try recorded at ``state_key``; ``None`` when there is none.

    Completing is idempotent, so the uploads the killed try had completed are only confirmed.
    When an upload cannot be completed any more (aborted, expired, replaced: :class:`UploadError`
    or :class:`ChecksumMismatchError`), the recorded commit is given up: its remaining uploads are
    aborted and the state deleted, and the caller's own export replaces whatever it left. An
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
        "s3://%s/%s: an earlier try was killed during its commit of %d file(s); finishing it first",
        bucket,
        state_key,
        len(plan.uploads),
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


def _drop_state(client: Any, bucket: str, state_key: str, config: MultipartConfig) -> None:
    delete_keys(client, bucket, [state_key], config.retry)
