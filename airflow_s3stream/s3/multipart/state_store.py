"""Keeps the resume state object in S3 up to date while parts complete.

:class:`StateStore` reads, writes and deletes the JSON object; :class:`Checkpointer` writes the
latest snapshot from one background thread whenever parts were recorded since the last write, so
writes coalesce (a large state is not rewritten once per part) and a killed worker loses at most
the parts acknowledged during the last write, which the next try simply sends again.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from airflow_s3stream.s3.classify import classify, to_error
from airflow_s3stream.s3.multipart.resume import ResumeState
from airflow_s3stream.s3.multipart.session import PartRecord
from airflow_s3stream.s3.retry import RetryPolicy

__all__ = ["Checkpointer", "StateStore"]

log = logging.getLogger("airflow_s3stream.s3.multipart")


class StateStore:
    """The resume state object ``s3://bucket/key`` (JSON)."""

    def __init__(self, client: Any, bucket: str, key: str, retry: RetryPolicy) -> None:
        self.client, self.bucket, self.key, self.retry = client, bucket, key, retry
        self.uri = f"s3://{bucket}/{key}"

    def load(self) -> ResumeState | None:
        """The stored state, or ``None`` if there is none or it cannot be parsed (logged)."""
        try:
            raw = self.retry.call(self._read, what=f"reading resume state {self.uri}")
        except Exception as exc:
            if classify(exc).not_found:
                return None
            raise to_error(exc, f"reading resume state {self.uri}") from exc
        try:
            return ResumeState.from_json(raw)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable resume state %s: %s", self.uri, exc)
            return None

    def _read(self) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=self.key)["Body"].read())

    def save(self, state_json: bytes) -> None:
        self.retry.call(
            lambda: self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=state_json, ContentType="application/json"
            ),
            what=f"writing resume state {self.uri}",
        )

    def delete(self) -> None:
        """Delete the state object; failures are logged, not raised (it is only a hint)."""
        try:
            self.retry.call(
                lambda: self.client.delete_object(Bucket=self.bucket, Key=self.key),
                what=f"deleting resume state {self.uri}",
            )
        except Exception as exc:
            log.warning("could not delete resume state %s: %s", self.uri, exc)


class Checkpointer:
    """Records finished parts in ``state`` and writes it to ``store`` in the background."""

    def __init__(self, store: StateStore, state: ResumeState) -> None:
        self.store = store
        self.state = state
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stopping = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="s3stream-checkpoint", daemon=True)
        self._thread.start()

    def record(self, part: PartRecord) -> None:
        with self._lock:
            self.state.parts[part.number] = part
        self._dirty.set()

    def snapshot(self) -> bytes:
        with self._lock:
            return self.state.to_json()

    def _run(self) -> None:
        while True:
            self._dirty.wait()
            self._dirty.clear()
            if self._stopping:
                return
            try:
                self.store.save(self.snapshot())
            except Exception as exc:  # keep uploading; the final flush reports it
                self.error = exc
                log.warning("could not write resume state %s: %s", self.store.uri, exc)

    def flush(self) -> None:
        """Stop the background writer and write the latest state synchronously."""
        self.close()
        self.store.save(self.snapshot())

    def close(self) -> None:
        """Stop the background writer (waits for a write in progress)."""
        self._stopping = True
        self._dirty.set()
        self._thread.join()
