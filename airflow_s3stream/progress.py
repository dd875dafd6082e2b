"""The package's one progress reporter: counts what a transfer moved and reports it every few seconds.

Uploads count parts and bytes (``add``); an export sets rows and stored bytes (``set``). Either way
:class:`Progress` hands a :class:`ProgressSnapshot` to its ``report`` callable at most once per
``interval`` seconds, and once more at :meth:`Progress.finish`. The default ``report`` logs one line.

    progress = Progress("s3://b/k", total_bytes=10**9, interval=5.0)
    progress.add(16 * 2**20)    # thread-safe: one more part of 16 MiB stored
    progress.finish()           # "s3://b/k done: 64 parts, 1000.0 MB of 1000.0 MB (100%), 85.3 MB/s"
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MB", "Progress", "ProgressSnapshot", "log_progress", "plural"]

log = logging.getLogger("airflow_s3stream")

MB = 1_000_000  # decimal megabyte, the unit of every MB and MB/s figure


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``count`` and ``noun`` for log lines: ``1 part``, ``0 parts``, ``1,500 rows`` (``nouns``
    when the plural is not ``noun + "s"``)."""
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"


@dataclass(frozen=True)
class ProgressSnapshot:
    """What had moved ``seconds`` after the start. ``rows``/``parts`` are ``None`` when not counted."""

    label: str
    bytes: int
    seconds: float
    rows: int | None = None
    parts: int | None = None
    total_bytes: int | None = None
    done: bool = False

    @property
    def mb_per_s(self) -> float:
        return self.bytes / MB / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        """``s3://b/k: 12 parts, 192.0 MB of 1000.0 MB (19%), 85.3 MB/s, ETA 9 s`` (``done:`` at the end)."""
        text = f"{self.label} done:" if self.done else f"{self.label}:"
        if self.rows is not None:
            text += f" {plural(self.rows, 'row')},"
        if self.parts is not None:
            text += f" {plural(self.parts, 'part')},"
        text += f" {self.bytes / MB:,.1f} MB"
        if self.total_bytes:
            text += f" of {self.total_bytes / MB:,.1f} MB ({100 * self.bytes / self.total_bytes:.0f}%)"
        text += f", {self.mb_per_s:.1f} MB/s"
        rate = self.bytes / self.seconds if self.seconds > 0 else 0.0
        if self.total_bytes and rate > 0 and not self.done:
            text += f", ETA {max(0.0, (self.total_bytes - self.bytes) / rate):.0f} s"
        if self.done:
            text += f", {self.seconds:.1f} s"
        return text


def log_progress(snapshot: ProgressSnapshot) -> None:
    """The default report: one INFO line on the ``airflow_s3stream`` logger."""
    log.info("%s", snapshot.describe())


class Progress:
    """Thread-safe counters of one transfer, reported at most every ``interval`` seconds.

    :param label: what is moving, e.g. ``s3://bucket/key`` (never a presigned URL).
    :param total_bytes: the size when known: adds a percentage and an ETA.
    :param interval: seconds between two reports.
    :param report: receives each snapshot; the default logs its ``describe()`` line.
    :param count_rows: snapshots carry ``rows`` (an export) instead of ``parts`` (an upload).
    """

    def __init__(
        self,
        label: str,
        total_bytes: int | None = None,
        interval: float = 5.0,
        *,
        report: Callable[[ProgressSnapshot], None] | None = log_progress,
        count_rows: bool = False,
        started: float | None = None,
    ) -> None:
        self.label = label
        self.total_bytes = total_bytes
        self.interval = interval
        self.started = time.monotonic() if started is None else started
        self.parts = 0
        self.rows = 0
        self.bytes = 0
        self._report = report
        self._count_rows = count_rows
        self._last = self.started
        self._lock = threading.Lock()

    def add(self, nbytes: int, parts: int = 1) -> None:
        """``parts`` more parts holding ``nbytes`` are stored."""
        with self._lock:
            self.parts += parts
            self.bytes += nbytes
            snapshot = self._due()
        if snapshot is not None and self._report is not None:
            self._report(snapshot)

    def set(self, rows: int, nbytes: int) -> None:
        """``rows`` rows read and ``nbytes`` bytes stored so far (absolute values)."""
        with self._lock:
            self.rows, self.bytes = rows, nbytes
            snapshot = self._due()
        if snapshot is not None and self._report is not None:
            self._report(snapshot)

    def _due(self) -> ProgressSnapshot | None:
        now = time.monotonic()
        if self._report is None or now - self._last < self.interval:
            return None
        self._last = now
        return self._snapshot(now)

    def _snapshot(self, now: float, done: bool = False) -> ProgressSnapshot:
        return ProgressSnapshot(
            label=self.label,
            bytes=self.bytes,
            seconds=max(1e-9, now - self.started),
            rows=self.rows if self._count_rows else None,
            parts=None if self._count_rows else self.parts,
            total_bytes=self.total_bytes,
            done=done,
        )

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def describe(self, now: float | None = None) -> str:
        """The current progress line (``now`` defaults to the monotonic clock)."""
        with self._lock:
            return self._snapshot(time.monotonic() if now is None else now).describe()

    def finish(self) -> ProgressSnapshot:
        """Report the final snapshot once (``done``), whatever the interval; returns it."""
        with self._lock:
            snapshot = self._snapshot(time.monotonic(), done=True)
        if self._report is not None:
            self._report(snapshot)
        return snapshot
