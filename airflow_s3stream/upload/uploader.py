"""Resumable parallel uploads of known-size sources: a local file, or an S3 object copied server side.

    uploader = ResumableUploader(client, "bucket", "data/big.bin", config=MultipartConfig(max_concurrency=8))
    result = uploader.upload_file("/data/big.bin")      # or uploader.copy_object("s3://src/obj")

This is the thin loop that carries out the decisions of the pure modules beside it: the part plan
(:mod:`.plan`), whether to resume and which parts to trust (:mod:`.resume`), the lease of another
try (:mod:`.lease`), what a failed try leaves behind (:func:`~.resume.after_failure`). Which upload
this try continues or starts is :class:`~.claim.UploadClaim`'s to find. Parts run in a
:class:`~.pool.PartPool` of ``max_concurrency`` threads. Each acknowledged part is recorded in the
resume state (:mod:`.checkpointer`); a later run for the same destination and unchanged source
continues the same multipart upload and sends only the parts it cannot trust. On a failure that
retrying cannot fix the upload is aborted and the state deleted; on a transient failure or
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
import logging
import os
import secrets
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.progress import Progress, plural
from airflow_s3stream.s3.multipart.checksums import PartDigest, PartHasher
from airflow_s3stream.s3.multipart.completion import Finished, complete_and_verify, put_and_verify
from airflow_s3stream.s3.multipart.config import MultipartConfig, PartRange, PartSizer
from airflow_s3stream.s3.multipart.part_record import PartRecord
from airflow_s3stream.s3.multipart.result import UploadResult
from airflow_s3stream.s3.multipart.session import UploadSession
from airflow_s3stream.upload.checkpointer import Checkpointer
from airflow_s3stream.upload.claim import UploadClaim
from airflow_s3stream.upload.copy import ObjectCopy
from airflow_s3stream.upload.local_file import FileSha256, LocalFile
from airflow_s3stream.upload.plan import PartPlan, fits_one_put
from airflow_s3stream.upload.pool import PartPool
from airflow_s3stream.upload.resume import (
    DEFAULT_STATE_PREFIX,
    AfterFailure,
    after_failure,
    state_key,
)
from airflow_s3stream.upload.sources import PartSource
from airflow_s3stream.upload.state_store import StateStore

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["DEFAULT_STATE_LEASE", "ResumableUploader"]

log = logging.getLogger("airflow_s3stream.upload")

# Seconds after a try's last state write that another try may take the state over. A live try
# rewrites it every quarter of this (15 s), so only a try that is gone (killed, partitioned) loses
# it; a retry that starts right after a killed worker waits at most this long, then takes over.
DEFAULT_STATE_LEASE = 60.0


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
        client: S3Client,
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
        self.claim = UploadClaim(
            client,
            bucket,
            key,
            self.config,
            self.store,
            owner=self.owner,
            lease=self.state_lease,
            resume=resume,
            extra_args=self.extra_args,
        )
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
            part_size = PartSizer(source.size, self.config.part_size).base
            sha = FileSha256(path) if self.compute_sha256 else None
            if fits_one_put(source.size, part_size):  # one PutObject (the empty object included)
                session = self.claim.session()
                data = source.read(0, source.size)
                finished = put_and_verify(session, data, _digest(session, data))
                source.check_unchanged()
                return finished.result(session, part_size, started, sha256=sha.join() if sha else None)
            result = self._run(source, part_size, started)
            if sha is not None:
                return dataclasses.replace(result, sha256=sha.join())
            return result

    def copy_object(self, source_uri: str) -> UploadResult:
        """Copy ``s3://bucket/key`` (same endpoint and client) with UploadPartCopy, no bytes local."""
        started = time.monotonic()
        source = ObjectCopy(self.client, source_uri, self.config.retry)
        part_size = PartSizer(source.size, self.config.part_size).base
        if source.size == 0:
            session = self.claim.session()
            finished = put_and_verify(session, b"", _digest(session, b""))
            return finished.result(session, part_size, started, copied=True)
        result = self._run(source, part_size, started)
        return dataclasses.replace(result, copied=True)

    # -- the resumable loop -----------------------------------------------------------------

    def _run(self, source: PartSource, part_size: int, started: float) -> UploadResult:
        plan = PartPlan.of(source.size, part_size)
        fingerprint = source.fingerprint()
        stored, listed, done = self.claim.find(fingerprint, plan, started)
        if done is not None:
            return done
        session, state, reused = self.claim.open(stored, listed, fingerprint, plan.part_size)
        if stored is not None and stored.state is not None and session.upload_id == stored.state.upload_id:
            reused += self.claim.adopt_listed(session, state, plan, listed, source)  # resumed: listed is this upload's
        missing = plan.missing(state.parts)
        checkpointer = Checkpointer(self.store, state) if self.resume else None
        progress = Progress(self.uri, plan.bytes_in(missing), self.config.progress_interval)
        log.info(
            "uploading %s: %s in %s of %s, %d to send, %d in parallel",
            self.uri,
            plural(plan.size, "byte"),
            plural(len(plan), "part"),
            plural(plan.part_size, "byte"),
            len(missing),
            self.config.max_concurrency,
        )
        try:
            records = dict(state.parts)
            records.update(self._send_all(session, missing, source, checkpointer, progress))
            source.check_unchanged()
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
        return finished.result(session, plan.part_size, started, resumed_parts=reused, uploaded_parts=len(missing))

    def _after_failure(self, exc: BaseException, session: UploadSession, checkpointer: Checkpointer | None) -> None:
        """Keep and release the upload for the next try, or abort it; leave it alone if it is no longer ours."""
        action = after_failure(
            exc,
            resumable=checkpointer is not None,
            taken_over=checkpointer is not None and checkpointer.lost is not None,
            keep_for_retry=self.keep_for_retry,
        )
        if checkpointer is None:
            session.abort()
            return
        if action is AfterFailure.LEAVE:
            checkpointer.close()
            log.error("another try has taken over upload %s of %s; leaving it to that try", session.upload_id, self.uri)
        elif action is AfterFailure.KEEP:
            checkpointer.release()
            log.warning("keeping upload %s of %s for the next try (%s)", session.upload_id, self.uri, exc)
        else:
            checkpointer.close()
            session.abort()
            self.store.delete()

    def _send_all(
        self,
        session: UploadSession,
        parts: list[PartRange],
        source: PartSource,
        checkpointer: Checkpointer | None,
        progress: Progress,
    ) -> dict[int, PartRecord]:
        def stored(record: PartRecord) -> None:
            if checkpointer is not None:
                checkpointer.record(record)
            progress.add(record.size)

        pool = PartPool(self.config.max_concurrency, self.uri, self._stop)
        return pool.run(
            parts,
            functools.partial(source.send, session),
            before=checkpointer.check if checkpointer is not None else None,  # taken over: send nothing more
            after=stored,
        )


def _digest(session: UploadSession, data: bytes) -> PartDigest:
    return PartHasher.of(session.algorithm, session.wants_md5 or session.config.verify_part_etag is not False, data)
