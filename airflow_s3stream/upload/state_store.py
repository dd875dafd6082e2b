"""Keeps the resume state object in S3 up to date while parts complete, with one owner at a time.

:class:`StateStore` reads, writes and deletes the JSON object; :class:`Checkpointer` writes the
latest snapshot from one background thread when parts were recorded since the last write (at most
once per :data:`CHECKPOINT_INTERVAL`), and at least every quarter of the owner's lease even when
nothing changed (the heartbeat that tells other tries this one is alive). Writes coalesce (a large
state is not rewritten once per part). Parts a killed worker had stored but not yet written down
are adopted by the next try when ListParts shows their ETag equal to the MD5 of its own bytes;
where ETags are opaque (SSE-KMS) they are sent again.

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
and this try takes the upload over and sends only what is missing.

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from airflow_s3stream.errors import ConcurrentUploadError
from airflow_s3stream.s3.classify import classify, raise_error
from airflow_s3stream.s3.conditional import if_match_args, if_match_form, learn_refused_match, same_etag
from airflow_s3stream.s3.multipart.session import PartRecord
from airflow_s3stream.s3.retry import RetryPolicy
from airflow_s3stream.upload.resume import ResumeState

__all__ = ["CHECKPOINT_INTERVAL", "Checkpointer", "StateStore", "StoredState"]

log = logging.getLogger("airflow_s3stream.upload")

# seconds between two background state writes: parts acknowledged meanwhile are not lost to a kill,
# a resumed try adopts them from ListParts when their ETag is the MD5 of our bytes (uploader.py)
CHECKPOINT_INTERVAL = 1.0


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


def _age(response: dict[str, Any]) -> float:
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

    def __init__(self, client: Any, bucket: str, key: str, retry: RetryPolicy, destination: str = "") -> None:
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
        state again or deletes it: it is alive. Waits at most the rest of the lease plus one poll.
        """
        state = stored.state
        if state is None or not state.held_by_other(owner, stored.age):
            return stored
        poll = min(2.0, max(0.2, state.lease / 16))
        deadline = time.monotonic() + state.lease - stored.age + 2 * poll + 5.0
        log.warning(
            "%s: resume state %s is held by %s, last written %.0f s ago (lease %.0f s); waiting up to %.0f s: "
            "a live try rewrites it, a try that is gone (a killed worker) does not, and this one then takes over",
            self.destination,
            self.uri,
            state.owner,
            stored.age,
            state.lease,
            state.lease - stored.age,
        )
        started, current = time.monotonic(), stored
        while True:
            sleep(min(poll, max(0.1, state.lease - current.age)))
            again = self.load()
            if again is None:  # only a live try deletes it: the holder finished or gave up meanwhile
                raise self.busy(state.owner, current.age, state.lease)
            if again.state is None:
                return again
            if again.rewritten_since(current) and again.state.held_by_other(owner, again.age):
                raise self.busy(again.state.owner, again.age, again.state.lease)
            if not again.state.held_by_other(owner, again.age):
                log.warning(
                    "%s: %s did not renew its resume state in %.0f s: it is gone; this try takes the upload over",
                    self.destination,
                    state.owner or "the earlier try",
                    again.age,
                )
                return again
            if time.monotonic() > deadline:  # the server's clock does not advance: do not wait forever
                raise self.busy(again.state.owner, again.age, again.state.lease)
            current = again
            log.debug("still waiting for %s (%.0f s so far)", self.uri, time.monotonic() - started)

    def delete(self, etag: str | None = None) -> None:
        """Delete the state if it is still the version ``etag`` (default: this try's last write),
        so a state another try has taken over stays. The state is read first, since some stores
        (Ceph RGW) ignore ``If-Match`` on DELETE. Failures are logged, not raised (it is only a hint)."""
        condition = etag or self._etag
        extra: dict[str, str] = {}
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


class Checkpointer:
    """Records finished parts in ``state`` and writes it to ``store`` in the background: when
    parts were recorded, and every quarter of ``state.lease`` seconds regardless (the heartbeat).

    Once another try has taken the state over, it stops writing and :meth:`check` raises
    :class:`ConcurrentUploadError`: this try must then stop and leave the upload alone.
    """

    def __init__(self, store: StateStore, state: ResumeState, min_interval: float = CHECKPOINT_INTERVAL) -> None:
        self.store = store
        self.state = state
        self.heartbeat = state.lease / 4 if state.lease > 0 else None
        self.min_interval = min_interval
        self._closed = threading.Event()
        self._lock = threading.Lock()  # guards state.parts
        self._write_lock = threading.Lock()  # a snapshot is written before any later one
        self._dirty = threading.Event()
        self._stopping = False
        self.error: BaseException | None = None
        self.lost: ConcurrentUploadError | None = None
        self._thread = threading.Thread(target=self._run, name="s3stream-checkpoint", daemon=True)
        self._thread.start()

    def record(self, part: PartRecord) -> None:
        with self._lock:
            self.state.parts[part.number] = part
        self._dirty.set()

    def snapshot(self) -> bytes:
        with self._lock:
            return self.state.to_json()

    def _write(self) -> None:
        with self._write_lock:
            self.store.save(self.snapshot())

    def _run(self) -> None:
        while True:
            self._dirty.wait(self.heartbeat)
            self._dirty.clear()
            if self._stopping:
                return
            try:
                self._write()
            except ConcurrentUploadError as exc:
                self.lost = exc
                log.error("%s", exc)
                return
            except Exception as exc:  # keep uploading; the next write (or sync) tries again
                self.error = exc
                log.warning("could not write resume state %s: %s", self.store.uri, exc)
            # parts acknowledged meanwhile share the next write (each write costs the server a PUT)
            self._closed.wait(self.min_interval)

    def check(self) -> None:
        """Raise :class:`ConcurrentUploadError` if another try has taken the state over."""
        if self.lost is not None:
            raise self.lost

    def sync(self) -> None:
        """Write the latest state now (the background writer keeps running); raises what the write raises."""
        self.check()
        self._write()

    def release(self) -> None:
        """Stop the background writer and write the latest state without an owner, so the next
        try continues at once. Failures are logged: the caller is already failing."""
        self.close()
        if self.lost is not None:
            return
        with self._lock:
            self.state.owner = ""
        try:
            self._write()
        except Exception as exc:
            log.warning("could not release resume state %s (the next try waits for its lease): %s", self.store.uri, exc)

    def close(self) -> None:
        """Stop the background writer (waits for a write in progress)."""
        self._stopping = True
        self._closed.set()
        self._dirty.set()
        self._thread.join()
