"""Writes the resume state while parts complete: coalesced snapshots, and the lease's heartbeat.

A :class:`Checkpointer` records each acknowledged part in the state and writes the latest snapshot
from one background thread when parts were recorded since the last write (at most once per
:data:`CHECKPOINT_INTERVAL`), and at least every quarter of the owner's lease even when nothing
changed (the heartbeat that tells other tries this one is alive, :mod:`.lease`). Writes coalesce
(a large state is not rewritten once per part). Parts a killed worker had stored but not yet
written down are adopted by the next try when ListParts shows their ETag equal to the MD5 of its
own bytes; where ETags are opaque (SSE-KMS) they are sent again.
"""

from __future__ import annotations

import logging
import threading

from airflow_s3stream.errors import ConcurrentUploadError
from airflow_s3stream.s3.multipart.part_record import PartRecord
from airflow_s3stream.upload.resume import ResumeState
from airflow_s3stream.upload.state_store import StateStore

__all__ = ["CHECKPOINT_INTERVAL", "Checkpointer"]

log = logging.getLogger("airflow_s3stream.upload")

# seconds between two background state writes: parts acknowledged meanwhile are not lost to a kill,
# a resumed try adopts them from ListParts when their ETag is the MD5 of our bytes (uploader.py)
CHECKPOINT_INTERVAL = 1.0


class Checkpointer:
    """Records finished parts in ``state`` and writes it to ``store`` in the background: when
    parts were recorded, and every quarter of ``state.lease`` seconds regardless (the heartbeat).

    Once another try has taken the state over, it stops writing and :meth:`check` raises
    :class:`ConcurrentUploadError`: this try must then stop and leave the upload alone.
    """

    def __init__(self, store: StateStore, state: ResumeState, min_interval: float = CHECKPOINT_INTERVAL) -> None:
        self.store = store
        self.state = state
        self.heartbeat = state.holder.heartbeat
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
