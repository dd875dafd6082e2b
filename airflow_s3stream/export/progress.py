"""Rate-limited progress of a running export: rows, bytes, MB/s every few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ExportProgress", "ProgressReporter"]


@dataclass(frozen=True)
class ExportProgress:
    """A snapshot: data rows read, bytes stored so far, seconds since the export started."""

    rows: int
    bytes: int
    seconds: float
    done: bool = False

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        state = "done" if self.done else "exporting"
        mb = self.bytes / 1e6
        return f"{state}: {self.rows:,} rows, {mb:,.1f} MB, {self.mb_per_s:.1f} MB/s, {self.seconds:.1f} s"


class ProgressReporter:
    """Calls ``callback`` at most every ``interval`` seconds (``update``), and once at ``finish``."""

    def __init__(
        self, callback: Callable[[ExportProgress], None] | None, interval: float, started: float | None = None
    ) -> None:
        self._callback = callback
        self._interval = interval
        self._started = time.monotonic() if started is None else started
        self._last = self._started

    def update(self, rows: int, nbytes: int) -> None:
        if self._callback is None:
            return
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._callback(ExportProgress(rows, nbytes, now - self._started))

    def finish(self, rows: int, nbytes: int) -> None:
        if self._callback is not None:
            self._callback(ExportProgress(rows, nbytes, time.monotonic() - self._started, done=True))
