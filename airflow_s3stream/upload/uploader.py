"""Resumable parallel uploads of known-size sources: a local file, or an S3 object copied server side.

    uploader = ResumableUploader(client, "bucket", "data/big.bin", config=MultipartConfig(max_concurrency=8))
    result = uploader.upload_file("/data/big.bin")      # or uploader.copy_object("s3://src/obj")

Parts run in a pool of ``max_concurrency`` threads. Each acknowledged part is recorded in the
resume state object (see :mod:`.resume`); a later run for the same destination and unchanged
source continues the same multipart upload and sends only the parts it cannot trust. On a failure
that retrying cannot fix the upload is aborted and the state deleted; on a transient failure or
:meth:`ResumableUploader.stop` (with ``keep_for_retry``) both are kept, and released, for the next try.

Every part is in the state before CompleteMultipartUpload is sent. So a try that finds its
recorded upload gone (a worker killed while Complete was in flight, or a Complete whose answer was
lost) first checks whether the destination already is the object the state predicts, and if so
succeeds without sending anything. Each try has an owner token; a try never resumes, aborts or
overwrites what a live other try holds (:class:`~airflow_s3stream.errors.ConcurrentUploadError`,
see :mod:`.state_store`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

from airflow_s3stream.errors import (
    ConcurrentUploadError,
    ConfigurationError,
    SourceChangedError,
    TransientError,
    UploadError,
    UploadInterruptedError,
)
from airflow_s3stream.progress import Progress
from airflow_s3stream.s3.multipart.checksums import PartDigest, PartHasher
from airflow_s3stream.s3.multipart.completion import Finished, complete_and_verify, confirm_completed, put_and_verify
from airflow_s3stream.s3.multipart.config import (
    AUTO_PREFERRED_ALGORITHM,
    CHECKSUM_MD5,
    MultipartConfig,
    PartRange,
    PartSizer,
    plan_parts,
)
from airflow_s3stream.s3.multipart.result import UploadResult
from airflow_s3stream.s3.multipart.session import PartRecord, UploadSession
from airflow_s3stream.s3.objects import S3Object
from airflow_s3stream.upload.local_file import LocalFile
from airflow_s3stream.upload.resume import (
    DEFAULT_STATE_PREFIX,
    ResumeState,
    SourceFingerprint,
    decide_resume,
    state_key,
)
from airflow_s3stream.upload.state_store import Checkpointer, StateStore, StoredState

__all__ = ["DEFAULT_STATE_LEASE", "ResumableUploader"]

log = logging.getLogger("airflow_s3stream.upload")

# Seconds after a try's last state write that another try may take the state over. A live try
# rewrites it every quarter of this (15 s), so only a try that is gone (killed, partitioned) loses
# it; a retry that starts right after a killed worker waits at most this long, then takes over.
DEFAULT_STATE_LEASE = 60.0

SendPart = Callable[[UploadSession, PartRange], PartRecord]
# a part the server lists but the state does not record: its record if it holds our bytes, else None
RecoverPart = Callable[[UploadSession, PartRange, dict[str, Any]], "PartRecord | None"]


class ResumableUploader:
    """Upload one known-size source to ``s3://bucket/key``, resuming an earlier try if possible.

    :param resume: look for and keep resume state; ``False`` always starts fresh and aborts on
        any failure.
    :param keep_for_retry: on a transient failure or :meth:`stop`, keep the upload and its state
        for the next try (only with ``resume``). Set ``False`` when no retry will follow.
    :param state_prefix: where resume state objects live in the destination bucket.
    :param compute_sha256: also report the SHA-256 of a local file (one extra sequential read).
    :param state_lease: seconds after this try's last state write (it writes at least every
        quarter of it) that another try may treat this one as gone and take the state over. A try
        that stops on purpose releases the state at once; a try that finds the state of one that
        was killed waits for the rest of that try's lease, then takes the upload over.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        *,
        config: MultipartConfig | None = None,
        resume: bool = True,
        keep_for_retry: bool = True,
        state_prefix: str = DEFAULT_STATE_PREFIX,
        extra_args: dict[str, Any] | None = None,
        compute_sha256: bool = False,
        state_lease: float = DEFAULT_STATE_LEASE,
    ) -> None:
        if not state_lease > 0:
            raise ConfigurationError(f"state_lease must be a positive number of seconds, got {state_lease!r}")
        self.client = client
        self.bucket = bucket
        self.key = key
        self.config = config or MultipartConfig()
        self.resume = resume
        self.keep_for_retry = keep_for_retry
        self.extra_args = dict(extra_args or {})
        self.compute_sha256 = compute_sha256
        self.state_lease = float(state_lease)
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"  # this try, in errors and logs
        self.store = StateStore(client, bucket, state_key(key, state_prefix), self.config.retry, destination=self.uri)
        self._stop = threading.Event()

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def stop(self) -> None:
        """Stop starting parts (for ``on_kill``); the running call raises UploadInterruptedError."""
        self._stop.set()

    # -- sources ----------------------------------------------------------------------------

    def upload_file(self, path: str) -> UploadResult:
        """Upload local file ``path``; parts are read by range in parallel (``os.pread``)."""
        started = time.monotonic()
        with LocalFile(path) as source:
            sizer = PartSizer(source.size, self.config.part_size)
            sha = _Sha256Thread(path) if self.compute_sha256 else None
            if source.size < sizer.base:  # one PutObject (the empty object included)
                session = UploadSession(self.client, self.bucket, self.key, self.config, extra_args=self.extra_args)
                data = source.read(0, source.size)
                finished = put_and_verify(session, data, _digest(session, data))
                source.check_unchanged()
                return finished.result(session, sizer.base, started, sha256=sha.join() if sha else None)

            def send(session: UploadSession, part: PartRange) -> PartRecord:
                digest = source.digest(part.offset, part.length, session.algorithm, session.md5_up_front)
                return session.upload_part(part.number, lambda: source.body(part.offset, part.length), digest)

            def recover(session: UploadSession, part: PartRange, listed: dict[str, Any]) -> PartRecord | None:
                return source.stored_part(part.number, part.offset, part.length, session.algorithm, listed)

            result = self._run(
                source.fingerprint(),
                source.size,
                sizer.base,
                send,
                check_unchanged=source.check_unchanged,
                started=started,
                recover=recover,
            )
            if sha is not None:
                return _with(result, sha256=sha.join())
            return result

    def copy_object(self, source_uri: str) -> UploadResult:
        """Copy ``s3://bucket/key`` (same endpoint and client) with UploadPartCopy, no bytes local."""
        started = time.monotonic()
        source = S3Object.head(self.client, source_uri, self.config.retry)
        sizer = PartSizer(source.size, self.config.part_size)
        if source.size == 0:
            session = UploadSession(self.client, self.bucket, self.key, self.config, extra_args=self.extra_args)
            finished = put_and_verify(session, b"", _digest(session, b""))
            return finished.result(session, sizer.base, started, copied=True)

        def check_unchanged() -> None:
            # S3 enforces CopySourceIfMatch per part; servers that ignore it are caught here.
            now = S3Object.head(self.client, source_uri, self.config.retry)
            if (now.etag, now.size) != (source.etag, source.size):
                raise SourceChangedError(
                    f"source {source.uri} was replaced during the copy (ETag {source.etag} -> {now.etag})"
                )

        def send(session: UploadSession, part: PartRange) -> PartRecord:
            last = part.offset + part.length - 1
            try:
                return session.copy_part(part.number, source.copy_source(), part.offset, last, source.etag)
            except UploadError:
                # A replaced source can be refused for its new size (Ceph RGW: 416 InvalidRange)
                # before its ETag (S3: 412): name the cause when it is the source.
                check_unchanged()
                raise

        return _with(
            self._run(
                SourceFingerprint.of_object(source),
                source.size,
                sizer.base,
                send,
                check_unchanged=check_unchanged,
                started=started,
            ),
            copied=True,
        )

    # -- the resumable loop -----------------------------------------------------------------

    def _new_state(self, session: UploadSession, fingerprint: SourceFingerprint, part_size: int) -> ResumeState:
        return ResumeState(
            bucket=self.bucket,
            key=self.key,
            upload_id=str(session.upload_id),
            source=fingerprint,
            part_size=part_size,
            checksum_algorithm=session.algorithm,
            checksum_type=session.checksum_type,
            owner=self.owner,
            lease=self.state_lease,
        )

    def _finished_earlier(
        self, state: ResumeState, fingerprint: SourceFingerprint, plan: list[PartRange]
    ) -> tuple[UploadSession, Finished] | None:
        """The recorded upload is gone: is the destination already the object it would have made?

        Only when the state describes this very upload (same destination, source and settings)
        and records every planned part; the object is then judged by :func:`confirm_completed`.
        ``None`` when it is not (or cannot be told): the caller starts fresh. Whoever owns the
        state does not matter here: this only reads, and the state is then deleted only if unchanged.
        """
        session = UploadSession(self.client, self.bucket, self.key, self.config, upload_id=state.upload_id)
        same = (state.bucket, state.key, state.source) == (self.bucket, self.key, fingerprint) and (
            state.checksum_algorithm,
            state.checksum_type,
        ) == (_resumable_algorithm(session, state), _resumable_type(session, state))
        records = [state.parts.get(p.number) for p in plan]
        if not same or any(r is None or r.size != p.length for r, p in zip(records, plan, strict=True)):
            return None
        session.algorithm = state.checksum_algorithm  # what the recorded upload used
        because = f"recorded upload {state.upload_id} of {self.uri} no longer exists"
        try:
            return session, confirm_completed(session, [r for r in records if r is not None], because=because)
        except UploadError as exc:
            log.warning("%s; starting fresh", exc)
            return None

    def _open(
        self,
        stored: StoredState | None,
        listed: dict[int, dict[str, Any]] | None,
        fingerprint: SourceFingerprint,
        part_size: int,
    ) -> tuple[UploadSession, ResumeState, int]:
        """Continue the recorded upload if it can be trusted, else start one; this try owns the
        state afterwards. Returns the session, the state and the number of reused parts."""
        session = UploadSession(self.client, self.bucket, self.key, self.config, extra_args=self.extra_args)
        old = stored.state if stored is not None else None
        if stored is not None and old is not None:
            if old.held_by_other(self.owner, stored.age):
                raise self.store.busy(old.owner, stored.age, old.lease)
            decision = decide_resume(
                old,
                bucket=self.bucket,
                key=self.key,
                source=fingerprint,
                part_size=part_size,
                checksum_algorithm=_resumable_algorithm(session, old),
                checksum_type=_resumable_type(session, old),
                listed=listed,
            )
            # Ours before anything is sent or aborted: a try that read it at the same moment gets 412.
            claimed = dataclasses.replace(old, owner=self.owner, lease=self.state_lease)
            if decision.resume:
                claimed.parts = dict(decision.trusted)
                self.store.create(claimed.to_json(), replacing=stored.etag)
                log.info("resuming upload %s of %s: %s", old.upload_id, self.uri, decision.reason)
                session.upload_id = old.upload_id
                session.algorithm = old.checksum_algorithm  # the upload's own, whatever auto would pick now
                return session, claimed, len(decision.trusted)
            log.warning("not resuming %s: %s; starting fresh", self.uri, decision.reason)
            self.store.create(claimed.to_json(), replacing=stored.etag)
            if decision.abort_old:
                UploadSession(self.client, self.bucket, self.key, self.config, upload_id=old.upload_id).abort()
        try:
            session.create()
        except BaseException:
            if old is not None:
                self.store.delete()  # our claim on an upload that is gone: nothing left to resume
            raise
        state = self._new_state(session, fingerprint, part_size)
        session.on_restart = functools.partial(_follow_restart, state)
        if self.resume:
            try:  # before any part, so a kill right now is resumable
                if old is not None:
                    self.store.save(state.to_json())
                else:
                    self.store.create(state.to_json(), replacing=stored.etag if stored is not None else None)
            except BaseException:
                session.abort()  # nobody else knows this upload
                raise
        return session, state, 0

    def _run(
        self,
        fingerprint: SourceFingerprint,
        size: int,
        part_size: int,
        send: SendPart,
        *,
        check_unchanged: Callable[[], None] | None,
        started: float,
        recover: RecoverPart | None = None,
    ) -> UploadResult:
        plan = plan_parts(size, part_size)
        stored: StoredState | None = None
        listed: dict[int, dict[str, Any]] | None = None
        while self.resume:
            stored, listed = self.store.load(), None
            if stored is not None and stored.state is not None:
                recorded = UploadSession(
                    self.client, self.bucket, self.key, self.config, upload_id=stored.state.upload_id
                )
                listed = recorded.list_parts()  # None: gone; a refusal raises (it says nothing about the upload)
                if listed is None:
                    log.info("recorded upload %s of %s no longer exists", stored.state.upload_id, self.uri)
                    earlier = self._finished_earlier(stored.state, fingerprint, plan)
                    if earlier is not None:
                        self.store.delete(stored.etag)
                        done_session, done = earlier
                        return done.result(done_session, part_size, started, resumed_parts=len(plan), uploaded_parts=0)
            if stored is None:
                break
            waited = self.store.outwait(stored, self.owner)  # a killed worker's lease runs out here
            if not waited.rewritten_since(stored):
                stored = waited  # nobody holds it (any more): this try may take it over
                break
            # released while this try waited: look again
        session, state, reused = self._open(stored, listed, fingerprint, part_size)
        if stored is not None and stored.state is not None and session.upload_id == stored.state.upload_id:
            reused += _recover_listed(session, state, plan, listed, recover)  # resumed: listed is this upload's
        missing = [p for p in plan if p.number not in state.parts]
        checkpointer = Checkpointer(self.store, state) if self.resume else None
        progress = Progress(self.uri, sum(p.length for p in missing), self.config.progress_interval)
        log.info(
            "uploading %s: %d bytes in %d parts of %d bytes, %d to send, %d in parallel",
            self.uri,
            size,
            len(plan),
            part_size,
            len(missing),
            self.config.max_concurrency,
        )
        try:
            records = dict(state.parts)
            records.update(self._send_all(session, missing, send, checkpointer, progress))
            if check_unchanged is not None:
                check_unchanged()
            if checkpointer is not None:
                checkpointer.sync()  # every part recorded: a try killed during Complete can tell it completed
            finished: Finished = complete_and_verify(session, list(records.values()))
        except BaseException as exc:
            self._after_failure(exc, session, checkpointer)
            raise
        if checkpointer is not None:
            checkpointer.close()
            self.store.delete()
        progress.finish()
        return finished.result(session, part_size, started, resumed_parts=reused, uploaded_parts=len(missing))

    def _after_failure(self, exc: BaseException, session: UploadSession, checkpointer: Checkpointer | None) -> None:
        """Keep and release the upload for the next try, or abort it; leave it alone if it is no longer ours."""
        if checkpointer is None:
            session.abort()
            return
        if isinstance(exc, ConcurrentUploadError) or checkpointer.lost is not None:
            checkpointer.close()
            log.error("another try has taken over upload %s of %s; leaving it to that try", session.upload_id, self.uri)
            return
        if self.keep_for_retry and isinstance(exc, TransientError):
            checkpointer.release()
            log.warning("keeping upload %s of %s for the next try (%s)", session.upload_id, self.uri, exc)
            return
        checkpointer.close()
        session.abort()
        self.store.delete()

    def _send_all(
        self,
        session: UploadSession,
        parts: list[PartRange],
        send: SendPart,
        checkpointer: Checkpointer | None,
        progress: Progress,
    ) -> dict[int, PartRecord]:
        done: dict[int, PartRecord] = {}
        failed = threading.Event()

        def job(part: PartRange) -> PartRecord:
            if self._stop.is_set() or failed.is_set():
                raise UploadInterruptedError(f"upload of {self.uri} stopped before part {part.number}")
            if checkpointer is not None:
                checkpointer.check()  # another try took over: send nothing more
            try:
                record = send(session, part)
            except BaseException:
                failed.set()
                raise
            if checkpointer is not None:
                checkpointer.record(record)
            progress.add(record.size)
            return record

        with ThreadPoolExecutor(self.config.max_concurrency, thread_name_prefix="s3stream-part") as pool:
            futures = [pool.submit(job, part) for part in parts]
            wait(futures, return_when=FIRST_EXCEPTION)
            if any(f.done() and f.exception() for f in futures):
                failed.set()  # parts not yet started are skipped
            wait(futures)
        errors = [f.exception() for f in futures if f.exception() is not None]
        real = [e for e in errors if not isinstance(e, UploadInterruptedError)]
        if real or errors:
            raise (real or errors)[0]  # type: ignore[misc]
        for future in futures:
            record = future.result()
            done[record.number] = record
        return done


class _Sha256Thread:
    """SHA-256 of a file, computed by one sequential reader thread alongside the upload."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.value = ""
        self._thread = threading.Thread(target=self._run, name="s3stream-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        digest = hashlib.sha256()
        with open(self.path, "rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        self.value = digest.hexdigest()

    def join(self) -> str:
        self._thread.join()
        return self.value


def _recover_listed(
    session: UploadSession,
    state: ResumeState,
    plan: list[PartRange],
    listed: dict[int, dict[str, Any]] | None,
    recover: RecoverPart | None,
) -> int:
    """Adopt parts of the resumed upload that the server lists and the state does not record (they
    were acknowledged after the last state write) when ``recover`` proves they hold our bytes.
    Returns how many were adopted; the others are sent again."""
    if recover is None or not listed:
        return 0
    adopted = 0
    for part in plan:
        if part.number in state.parts or part.number not in listed:
            continue
        record = recover(session, part, listed[part.number])
        if record is not None:
            state.parts[part.number] = record
            adopted += 1
    if adopted:
        log.info("%s: %d part(s) the server holds match the source; not sent again", session.uri, adopted)
    return adopted


def _digest(session: UploadSession, data: bytes) -> PartDigest:
    return PartHasher.of(session.algorithm, session.wants_md5 or session.config.verify_part_etag is not False, data)


def _resumable_algorithm(session: UploadSession, state: ResumeState) -> str:
    """The algorithm an earlier try may have used: ``auto`` continues with whichever it chose."""
    if session.auto and state.checksum_algorithm in (AUTO_PREFERRED_ALGORITHM, CHECKSUM_MD5):
        return state.checksum_algorithm
    return session.algorithm


def _resumable_type(session: UploadSession, state: ResumeState) -> str:
    """The checksum type that goes with :func:`_resumable_algorithm` (an MD5 upload is composite)."""
    return "COMPOSITE" if _resumable_algorithm(session, state) == CHECKSUM_MD5 else str(session.config.checksum_type)


def _follow_restart(state: ResumeState, session: UploadSession) -> None:
    """``auto`` replaced the upload by an MD5 one before any part: the state follows it."""
    state.upload_id = str(session.upload_id)
    state.checksum_algorithm = session.algorithm
    state.checksum_type = session.checksum_type


def _with(result: UploadResult, **changes: Any) -> UploadResult:
    return dataclasses.replace(result, **changes)
