"""Byte sources that behave like a distant S3, for tests and benchmarks (not shipped in the wheel).

:class:`LatencySource` serves a local file through the reader's
:class:`~airflow_s3stream.s3.reader.ByteSource` interface with a fixed delay before the first byte
of every request and a bandwidth cap per connection (each open range is one connection), so
parallel ranged reads can be measured honestly: moto cannot show them, because it reads the whole
object for every ranged GET. Delays are ``time.sleep``, which releases the GIL, so N streams
really overlap as N connections to S3 would.

:class:`FlakySource` wraps any source and injects the faults S3 shows: a connection reset before
the answer, a body cut mid-way, and a 412 (the object replaced) from some request on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from airflow_s3stream.errors import ObjectChangedError
from airflow_s3stream.s3.reader import ByteSource, RangeStream, Tail
from tests.support.local_sources import LocalFileSource

__all__ = ["FlakySource", "LatencySource", "Throttled"]


class Throttled:
    """A body that delivers at most ``bandwidth`` bytes/s from the moment it was opened."""

    def __init__(self, inner: RangeStream, bandwidth: float) -> None:
        self._inner, self._bandwidth = inner, bandwidth
        self._opened = time.monotonic()
        self._sent = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._inner.read(size)
        self._sent += len(data)
        due = self._opened + self._sent / self._bandwidth
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return data

    def close(self) -> None:
        self._inner.close()


class LatencySource:
    """A local file as if it were an S3 object ``latency`` seconds and ``bandwidth`` bytes/s per connection away.

    :param latency: seconds before the first byte of every request (S3: 20-50 ms far from the bucket).
    :param bandwidth: bytes/s one connection delivers (S3: roughly 50-100 MB/s).
    """

    def __init__(self, path: str, latency: float = 0.030, bandwidth: float = 40e6) -> None:
        self._file = LocalFileSource(path)
        self.latency, self.bandwidth = latency, bandwidth
        self._lock = threading.Lock()
        self.requests = 0
        self.max_concurrent = 0
        self._open = 0

    def describe(self) -> str:
        return f"latency({self.latency * 1000:.0f} ms, {self.bandwidth / 1e6:.0f} MB/s)+{self._file.describe()}"

    def _request(self) -> None:
        with self._lock:
            self.requests += 1
        time.sleep(self.latency)

    def open_tail(self, n: int) -> Tail:
        self._request()
        tail = self._file.open_tail(n)
        time.sleep(len(tail.data) / self.bandwidth)
        return Tail(tail.size, tail.data, etag='"local"')

    def open_range(self, start: int, end: int) -> RangeStream:
        self._request()
        return _Counted(self, Throttled(self._file.open_range(start, end), self.bandwidth))


class _Counted:
    """Tracks how many bodies of a :class:`LatencySource` are open at once (its connections)."""

    def __init__(self, source: LatencySource, inner: RangeStream) -> None:
        self._source, self._inner, self._closed = source, inner, False
        with source._lock:
            source._open += 1
            source.max_concurrent = max(source.max_concurrent, source._open)

    def read(self, size: int = -1, /) -> bytes:
        return self._inner.read(size)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with self._source._lock:
                self._source._open -= 1
        self._inner.close()


class _Cut:
    """A body that raises a connection reset after ``after`` bytes."""

    def __init__(self, inner: RangeStream, after: int) -> None:
        self._inner, self._left = inner, after

    def read(self, size: int = -1, /) -> bytes:
        if self._left <= 0:
            raise ConnectionResetError("injected: connection reset mid-body")
        data = self._inner.read(size if size >= 0 and size <= self._left else self._left)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._inner.close()


class FlakySource:
    """``inner`` with faults chosen per range request (numbered from 1, the opening tail excluded).

    :param fault: ``fault(n)`` -> ``"reset"`` (no answer), ``"cut"`` (the body stops after
        ``cut_after`` bytes), ``"412"`` (the object was replaced) or ``None``.
    """

    def __init__(self, inner: ByteSource, fault: Callable[[int], str | None], cut_after: int = 100_000) -> None:
        self._inner, self._fault, self.cut_after = inner, fault, cut_after
        self._lock = threading.Lock()
        self.requests = 0
        self.injected: list[tuple[int, str]] = []

    def describe(self) -> str:
        return self._inner.describe()

    def open_tail(self, n: int) -> Tail:
        return self._inner.open_tail(n)

    def open_range(self, start: int, end: int) -> RangeStream:
        with self._lock:
            self.requests += 1
            number = self.requests
        kind = self._fault(number)
        if kind is not None:
            with self._lock:
                self.injected.append((number, kind))
        if kind == "reset":
            raise ConnectionResetError("injected: connection reset before the answer")
        if kind == "412":
            raise ObjectChangedError(f"{self.describe()}: the object was replaced while being read (injected 412)")
        body = self._inner.open_range(start, end)
        return _Cut(body, self.cut_after) if kind == "cut" else body
