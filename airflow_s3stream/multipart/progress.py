"""Thread-safe progress of one upload, logged every few seconds: parts, bytes, MB/s, ETA."""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["Progress"]

log = logging.getLogger("airflow_s3stream.multipart")

MB = 1_000_000  # decimal megabyte, the unit of the MB/s figures


class Progress:
    """Counts finished parts and bytes; logs at most once per ``interval`` seconds.

    :param label: what is uploading, e.g. ``s3://bucket/key`` (never a presigned URL).
    :param total_bytes: size when known (gives a percentage and an ETA).
    """

    def __init__(self, label: str, total_bytes: int | None, interval: float) -> None:
        self.label = label
        self.total_bytes = total_bytes
        self.interval = interval
        self.started = time.monotonic()
        self.parts = 0
        self.bytes = 0
        self._last_log = self.started
        self._lock = threading.Lock()

    def add(self, nbytes: int) -> None:
        """One more part of ``nbytes`` is stored; log if ``interval`` has passed."""
        with self._lock:
            self.parts += 1
            self.bytes += nbytes
            now = time.monotonic()
            if now - self._last_log < self.interval:
                return
            self._last_log = now
            line = self.describe(now)
        log.info("%s", line)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def describe(self, now: float | None = None) -> str:
        """One progress line: ``s3://b/k: 12 parts, 192.0 MB of 1000.0 MB (19%), 85.3 MB/s, ETA 9 s``."""
        elapsed = max(1e-9, (now if now is not None else time.monotonic()) - self.started)
        rate = self.bytes / elapsed
        text = f"{self.label}: {self.parts} parts, {self.bytes / MB:.1f} MB"
        if self.total_bytes:
            pct = 100 * self.bytes / self.total_bytes
            text += f" of {self.total_bytes / MB:.1f} MB ({pct:.0f}%)"
        text += f", {rate / MB:.1f} MB/s"
        if self.total_bytes and rate > 0:
            text += f", ETA {max(0.0, (self.total_bytes - self.bytes) / rate):.0f} s"
        return text
