"""Which upload this try continues: the one an earlier try left for the destination, or a new one.

:class:`UploadClaim` reads the resume state an earlier try left, lists its upload's parts, and
waits out the lease of a holder that may be gone (:mod:`.lease`). It then makes the state this
try's: it continues the recorded upload when :func:`~.resume.decide_resume` trusts it, and
otherwise starts a new upload (aborting the old one when the source changed). A recorded upload
that is gone may have completed (a worker killed during CompleteMultipartUpload): if the
destination is the object the state predicts, that try's result is this one's.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import TYPE_CHECKING, Any

from airflow_s3stream.errors import UploadError
from airflow_s3stream.progress import plural
from airflow_s3stream.s3.multipart.completion import Finished, confirm_completed
from airflow_s3stream.s3.multipart.config import MultipartConfig
from airflow_s3stream.s3.multipart.result import UploadResult
from airflow_s3stream.s3.multipart.session import UploadSession
from airflow_s3stream.upload.plan import PartPlan
from airflow_s3stream.upload.resume import (
    ResumeState,
    SourceFingerprint,
    decide_resume,
    describes,
    resumable_checksum,
)
from airflow_s3stream.upload.sources import PartSource
from airflow_s3stream.upload.state_store import StateStore, StoredState

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["Listed", "UploadClaim"]

log = logging.getLogger("airflow_s3stream.upload")

Listed = dict[int, dict[str, Any]]  # ListParts of an upload, by part number


class UploadClaim:
    """The upload to ``s3://bucket/key`` this try (``owner``, holding a lease of ``lease`` seconds)
    continues or starts, with its resume state in ``store`` (only when ``resume``)."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        config: MultipartConfig,
        store: StateStore,
        *,
        owner: str,
        lease: float,
        resume: bool,
        extra_args: dict[str, Any],
    ) -> None:
        self.client, self.bucket, self.key, self.config, self.store = client, bucket, key, config, store
        self.owner, self.state_lease, self.resume, self.extra_args = owner, lease, resume, extra_args

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def session(self, upload_id: str | None = None) -> UploadSession:
        """A session for a new upload (with ``extra_args``), or for the recorded ``upload_id``."""
        if upload_id is not None:
            return UploadSession(self.client, self.bucket, self.key, self.config, upload_id=upload_id)
        return UploadSession(self.client, self.bucket, self.key, self.config, extra_args=self.extra_args)

    def _checksum(self, session: UploadSession, state: ResumeState) -> tuple[str, str]:
        """The checksum algorithm and type ``state``'s upload may be continued with."""
        return resumable_checksum(
            state, auto=session.auto, current=lambda: session.algorithm, checksum_type=self.config.checksum_type
        )

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
        self, state: ResumeState, fingerprint: SourceFingerprint, plan: PartPlan
    ) -> tuple[UploadSession, Finished] | None:
        """The recorded upload is gone: is the destination already the object it would have made?

        Only when the state describes this very upload and records every planned part
        (:func:`~.resume.describes`); the object is then judged by :func:`confirm_completed`.
        ``None`` when it is not (or cannot be told): the caller starts fresh. The state is then
        deleted only if unchanged.
        """
        session = self.session(state.upload_id)
        records = describes(
            state,
            plan,
            bucket=self.bucket,
            key=self.key,
            source=fingerprint,
            checksum=lambda: self._checksum(session, state),
        )
        if records is None:
            return None
        session.algorithm = state.checksum_algorithm  # what the recorded upload used
        because = f"recorded upload {state.upload_id} of {self.uri} no longer exists"
        try:
            return session, confirm_completed(session, records, because=because)
        except UploadError as exc:
            log.warning("%s; starting fresh", exc)
            return None

    def find(
        self, fingerprint: SourceFingerprint, plan: PartPlan, started: float
    ) -> tuple[StoredState | None, Listed | None, UploadResult | None]:
        """Read the state an earlier try left, and list its upload's parts; wait out the lease of
        a try that may be gone. Returns the state this try may take over (``None``: there is none),
        the parts listed, and the result when the recorded upload had already completed."""
        stored: StoredState | None = None
        listed: Listed | None = None
        while self.resume:
            stored, listed = self.store.load(), None
            if stored is not None and stored.state is not None:
                # None: the upload is gone; a refusal raises (it says nothing about the upload)
                listed = self.session(stored.state.upload_id).list_parts()
                if listed is None:
                    log.info("recorded upload %s of %s no longer exists", stored.state.upload_id, self.uri)
                    earlier = self._finished_earlier(stored.state, fingerprint, plan)
                    if earlier is not None:
                        self.store.delete(stored.etag)
                        done_session, done = earlier
                        result = done.result(
                            done_session, plan.part_size, started, resumed_parts=len(plan), uploaded_parts=0
                        )
                        return stored, listed, result
            if stored is None:
                break
            waited = self.store.outwait(stored, self.owner)  # a killed worker's lease runs out here
            if not waited.rewritten_since(stored):
                return waited, listed, None  # nobody holds it (any more): this try may take it over
            # released while this try waited: look again
        return stored, listed, None

    def open(
        self,
        stored: StoredState | None,
        listed: Listed | None,
        fingerprint: SourceFingerprint,
        part_size: int,
    ) -> tuple[UploadSession, ResumeState, int]:
        """Continue the recorded upload if it can be trusted, else start one; this try owns the
        state afterwards. Returns the session, the state and the number of reused parts."""
        session = self.session()
        old = stored.state if stored is not None else None
        if stored is not None and old is not None:
            if old.held_by_other(self.owner, stored.age):
                raise self.store.busy(old.owner, stored.age, old.lease)
            algorithm, checksum_type = self._checksum(session, old)
            decision = decide_resume(
                old,
                bucket=self.bucket,
                key=self.key,
                source=fingerprint,
                part_size=part_size,
                checksum_algorithm=algorithm,
                checksum_type=checksum_type,
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
                self.session(old.upload_id).abort()
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

    def adopt_listed(
        self,
        session: UploadSession,
        state: ResumeState,
        plan: PartPlan,
        listed: Listed | None,
        source: PartSource,
    ) -> int:
        """Adopt parts of the resumed upload that the server lists and the state does not record (they
        were acknowledged after the last state write) when the source proves they hold its bytes.
        Returns how many were adopted; the others are sent again."""
        if not listed:
            return 0
        adopted = 0
        for part in plan.recoverable(state.parts, listed):
            record = source.recover(session, part, listed[part.number])
            if record is not None:
                state.parts[part.number] = record
                adopted += 1
        if adopted:
            log.info(
                "%s: %s the server holds %s the source; not sent again",
                session.uri,
                plural(adopted, "part"),
                "matches" if adopted == 1 else "match",
            )
        return adopted


def _follow_restart(state: ResumeState, session: UploadSession) -> None:
    """``auto`` replaced the upload by an MD5 one before any part: the state follows it."""
    state.upload_id = str(session.upload_id)
    state.checksum_algorithm = session.algorithm
    state.checksum_type = session.checksum_type
