"""The resume state object in S3: read, written and deleted with one owner at a time.

:class:`StateStore` reads, writes and deletes the JSON object; the
:class:`~airflow_s3stream.upload.checkpointer.Checkpointer` keeps it up to date while parts complete.

Ownership rests on conditional writes. A try creates its state with ``If-None-Match: *`` (or
``If-Match`` with the ETag of the released or stale state it read and takes over), and every later
write carries ``If-Match`` with the ETag of its own previous write. A 412 means another try wrote
in between, unless our own earlier attempt landed and only its answer was lost: the state is then
read back, and if it holds exactly the bytes we sent, it is ours and the write succeeded.
Otherwise :class:`~airflow_s3stream.errors.ConcurrentUploadError` names the other owner, and this
try stops without touching the state or the upload. A state's age is the server's clock (its
``Date``) against the state's ``Last-Modified``, so workers' clocks do not matter (to a second).

A try that finds the state held by another try within its lease does not give up at once: the
holder may be a worker that was killed (a retry can start seconds later, whatever Airflow's
``retry_delay``). :meth:`StateStore.outwait` watches the state for at most the rest of the lease:
a live holder rewrites it at least every quarter lease, and this try then stops with
:class:`~airflow_s3stream.errors.ConcurrentUploadError`; a holder that never writes again is gone,
and this try takes the upload over and sends only what is missing. What to do at each read of the held
state is decided by :class:`~airflow_s3stream.upload.lease.LeaseWait`; this module only reads.

Stores that get ``If-Match`` wrong (Ceph RGW 16 compares it unquoted) are found out at the first
412 that names the very version the store holds, once per endpoint (:mod:`~airflow_s3stream.s3.conditional`):
never "another try" when the other try is this one. A store that ignores ``If-Match`` on DELETE
(RGW does) is why :meth:`StateStore.delete` reads the state before deleting it.

Limits: on a store without usable conditional writes, the lease still keeps a later try away from
a live one, but two tries that read the state at the same moment can both proceed, each overwriting
the other's state; the object is still completed only once, and the other try's completion is then
settled by the object (:func:`~airflow_s3stream.s3.multipart.completion.confirm_completed`). A
store that refuses the headers outright (501) fails the write: use ``resume=False`` there.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from airflow_s3stream.errors import ConcurrentUploadError
from airflow_s3stream.s3.classify import classify, raise_error
from airflow_s3stream.s3.conditional import if_match_args, if_match_form, learn_refused_match, same_etag
from airflow_s3stream.s3.retry import RetryPolicy
from airflow_s3stream.upload.lease import LeaseWait, Verdict
from airflow_s3stream.upload.resume import ResumeState

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["StateStore", "StoredState"]

log = logging.getLogger("airflow_s3stream.upload")


@dataclass(frozen=True)
class StoredState:
    """The state object as read: parsed (``None`` when unreadable), its ETag, its age in seconds
    since it was last written, by the server's clock, and its ``Last-Modified`` as the server gave it."""

    state: ResumeState | None
    etag: str
    age: float
    modified: str = ""

    def rewritten_since(self, earlier: StoredState) -> bool:
        """Whether the object was written again after ``earlier`` was read."""
        return not same_etag(self.etag, earlier.etag) or self.modified != earlier.modified


@dataclass(frozen=True)
class _Read:
    raw: bytes
    etag: str
    age: float
    modified: str


def _age(response: Mapping[str, Any]) -> float:
    """Seconds between the object's Last-Modified and the server's Date (local time if absent)."""
    modified = response.get("LastModified")
    if not isinstance(modified, datetime):
        return 0.0
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        now = parsedate_to_datetime(date) if date else datetime.now(timezone.utc)
    except (TypeError, ValueError):
        now = datetime.now(timezone.utc)
    return max(0.0, (now - modified).total_seconds())


class StateStore:
    """The resume state object ``s3://bucket/key`` (JSON) of the upload to ``destination``."""

    def __init__(self, client: S3Client, bucket: str, key: str, retry: RetryPolicy, destination: str = "") -> None:
        self.client, self.bucket, self.key, self.retry = client, bucket, key, retry
        self.uri = f"s3://{bucket}/{key}"
        self.destination = destination or self.uri
        self._etag: str | None = None  # ETag of this try's last write: the If-Match of the next one
        self._lock = threading.Lock()  # writes go one at a time, each naming the one before

    def load(self) -> StoredState | None:
        """The stored state, or ``None`` if there is none. An unparseable one is logged and
        returned with ``state=None`` (so it can be replaced by its ETag)."""
        found = self._get()
        if found is None:
            return None
        try:
            state: ResumeState | None = ResumeState.from_json(found.raw)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable resume state %s: %s", self.uri, exc)
            state = None
        return StoredState(state, found.etag, found.age, found.modified)

    def _get(self) -> _Read | None:
        what = f"reading resume state {self.uri}"

        def read() -> _Read:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key)
            modified = response.get("LastModified")
            return _Read(bytes(response["Body"].read()), str(response["ETag"]), _age(response), str(modified or ""))

        try:
            return self.retry.call(read, what=what)
        except Exception as exc:
            if classify(exc).not_found:
                return None
            raise_error(exc, what)

    def busy(self, owner: str, age: float, lease: float) -> ConcurrentUploadError:
        """The error for a state held by the live try ``owner`` (written ``age`` s ago, lease ``lease`` s)."""
        return ConcurrentUploadError(
            f"{self.destination}: another try is uploading it (resume state {self.uri} held by {owner or 'unknown'}, "
            f"written {age:.0f} s ago, lease {lease:.0f} s); this try leaves the state and the upload alone, "
            "retry later"
        )

    def create(self, data: bytes, replacing: str | None) -> None:
        """Write the state this try starts with: in place of the version with ETag ``replacing``
        (a released, stale or unreadable state it read), or where none exists (``None``).

        Raises :class:`ConcurrentUploadError` when another try wrote first.
        """
        with self._lock:
            self._put(data, replacing)

    def save(self, data: bytes) -> None:
        """Rewrite this try's state (``If-Match`` its last write); :class:`ConcurrentUploadError`
        when another try has taken it over meanwhile."""
        with self._lock:
            assert self._etag is not None, "create() first"
            self._put(data, self._etag)

    def _put(self, data: bytes, match: str | None) -> None:
        """PutObject ``data`` if the state is still version ``match`` (``None``: if there is none)."""
        what = f"writing resume state {self.uri}"
        while True:
            form = if_match_form(self.client)
            condition = {"IfNoneMatch": "*"} if match is None else if_match_args(match, form)
            try:
                response = self.retry.call(
                    lambda condition=condition: self.client.put_object(  # type: ignore[misc]
                        Bucket=self.bucket, Key=self.key, Body=data, ContentType="application/json", **condition
                    ),
                    what=what,
                )
            except Exception as exc:
                failure = classify(exc)
                # 404 to an If-Match: the state we wrote is gone, deleted by a try that took it over.
                if not (failure.precondition_failed or (failure.not_found and match is not None)):
                    raise_error(exc, what)
                current = self._get()
                if current is None:
                    raise ConcurrentUploadError(
                        f"{self.destination}: resume state {self.uri} was deleted meanwhile (another try finished "
                        "or gave up this upload); this try stops and leaves the upload alone"
                    ) from exc
                if current.raw == data:  # a retry after a lost answer met our own write
                    log.info("%s: an earlier attempt had landed (its answer was lost)", what)
                    self._etag = current.etag
                    return
                if match is not None and form != "none" and same_etag(current.etag, match):
                    learn_refused_match(self.client, form, what)  # 412 to the very version stored: the store's bug
                    continue
                owner, lease = _holder(current.raw)
                raise self.busy(owner, current.age, lease) from exc
            self._etag = str(response["ETag"])
            return

    def outwait(self, stored: StoredState, owner: str, *, sleep: Callable[[float], None] = time.sleep) -> StoredState:
        """Wait while the live-looking try that holds ``stored`` may be gone: until its lease has run
        out by the server's clock without a write (returns the state as read then, for this try to
        take over), or the state was released meanwhile (returns it).

        Raises :class:`ConcurrentUploadError` as soon as the holder (or any other try) writes the
        state again or deletes it: it is alive. Waits at most :attr:`LeaseWait.limit` seconds.
        """
        state = stored.state
        if state is None or not state.held_by_other(owner, stored.age):
            return stored
        held = state.holder
        wait = LeaseWait(held, stored.age)
        log.warning(
            "%s: resume state %s is held by %s, last written %.0f s ago (lease %.0f s); waiting up to %.0f s: "
            "a live try rewrites it, a try that is gone (a killed worker) does not, and this one then takes over",
            self.destination,
            self.uri,
            state.owner,
            stored.age,
            state.lease,
            wait.longest_needed,
        )
        started, current = time.monotonic(), stored
        while True:
            sleep(held.sleep_before_next_read(current.age))
            again = self.load()
            seen = again.state if again is not None else None
            verdict = wait.judge(
                seen.holder if seen is not None else None,
                me=owner,
                age=again.age if again is not None else current.age,
                rewritten=again is not None and again.rewritten_since(current),
                elapsed=time.monotonic() - started,
                deleted=again is None,
            )
            if verdict is Verdict.REFUSE:
                if again is None or seen is None:
                    raise self.busy(state.owner, current.age, state.lease)
                raise self.busy(seen.owner, again.age, seen.lease)
            assert again is not None  # a deleted state is refused
            if verdict is Verdict.TAKE_OVER:
                if seen is not None:
                    log.warning(
                        "%s: %s did not renew its resume state in %.0f s: it is gone; this try takes the upload over",
                        self.destination,
                        state.owner or "the earlier try",
                        again.age,
                    )
                return again
            current = again
            log.debug("still waiting for %s (%.0f s so far)", self.uri, time.monotonic() - started)

    def delete(self, etag: str | None = None) -> None:
        """Delete the state if it is still the version ``etag`` (default: this try's last write),
        so a state another try has taken over stays. The state is read first, since some stores
        (Ceph RGW) ignore ``If-Match`` on DELETE. Failures are logged, not raised (it is only a hint)."""
        condition = etag or self._etag
        extra: dict[str, Any] = {}  # If-Match, when the state has a version to name
        if condition:
            try:
                current = self._get()
            except Exception as exc:
                log.warning("could not read resume state %s before deleting it: %s", self.uri, exc)
                return
            if current is None:
                return
            if not same_etag(current.etag, condition):
                log.info("left resume state %s alone: another try has rewritten it", self.uri)
                return
            extra = if_match_args(condition, if_match_form(self.client))
        try:
            self.retry.call(
                lambda: self.client.delete_object(Bucket=self.bucket, Key=self.key, **extra),
                what=f"deleting resume state {self.uri}",
            )
        except Exception as exc:
            failure = classify(exc)
            if failure.not_found:
                return
            if failure.precondition_failed:
                log.info("left resume state %s alone: another try has rewritten it", self.uri)
                return
            log.warning("could not delete resume state %s: %s", self.uri, exc)


def _holder(raw: bytes) -> tuple[str, float]:
    """``(owner, lease)`` recorded in a state's bytes, as far as they can be read."""
    try:
        data = json.loads(raw)
        return str(data.get("owner") or ""), float(data.get("lease") or 0.0)
    except (ValueError, TypeError, AttributeError):
        return "", 0.0
