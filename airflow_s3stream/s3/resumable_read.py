"""A byte range read through a body that can be opened at any offset, resumed where it was cut.

A streamed GET may be reset, time out or end early halfway through its body. Fetching the range
again from its start would cost its bytes twice; :class:`ResumableRead` instead opens a new body at
the byte the old one stopped at. Every read goes through the one retry loop,
:meth:`~airflow_s3stream.s3.retry.RetryPolicy.call`: opening, reading and re-opening are one
attempt, so a byte is asked for at most ``max_attempts`` times and each resume is paid from the
task's retry budget. Errors that are not worth retrying (a 412 after the object was replaced, a
missing key) propagate at once, as the opener raised them.

    read = policy.resumable_read(lambda at: source.open_range(at, end), start, end, "s3://b/k")
    read.readinto(view)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from airflow_s3stream.units import KiB

if TYPE_CHECKING:
    from airflow_s3stream.s3.retry import RetryPolicy

__all__ = ["READ_CHUNK", "RangeOpener", "RangeStream", "ResumableRead"]

# Bytes pulled from a body per read() call: pieces this small stay in the heap and are reused
# (the reader's STREAM_CHUNK, in reader_config.py, is this constant).
READ_CHUNK = 64 * KiB


class RangeStream(Protocol):
    """A readable HTTP body (or file slice): ``read(n)`` returns b"" at its end."""

    def read(self, size: int = ..., /) -> bytes: ...

    def close(self) -> None: ...


RangeOpener = Callable[[int], RangeStream]  # offset -> a body from that byte to the range's end


class ResumableRead:
    """Bytes ``start..end - 1`` read through bodies ``open_at(offset)`` opens, each body cut mid-way
    resumed at :attr:`position` (module docstring). Not thread-safe: one reader at a time.

    :param on_resume: called each time a body that had delivered bytes is replaced by a new one.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        open_at: RangeOpener,
        start: int,
        end: int,
        what: str,
        *,
        on_resume: Callable[[], None] | None = None,
    ) -> None:
        if not 0 <= start <= end:
            raise ValueError(f"{what}: not a byte range: {start}..{end}")
        self.policy = policy
        self.position = start  # the next byte a read returns
        self.end = end  # exclusive
        self.what = what
        self.resumed = 0  # bodies cut after delivering bytes and opened again at the byte they stopped at
        self._open_at = open_at
        self._on_resume = on_resume
        self._body: RangeStream | None = None
        self._delivered = False  # the open body has returned bytes

    def open(self) -> None:
        """Open the body at :attr:`position` now (retried), if none is open: the wait for an answer
        is then not part of the next read (a caller timing its reads leaves it out)."""
        if self._body is None and self.position < self.end:
            self._body = self.policy.call(lambda: self._open_at(self.position), what=self.what)
            self._delivered = False

    def read(self, size: int = READ_CHUNK) -> bytes:
        """Up to ``size`` bytes at :attr:`position` (b"" only at the end of the range).

        :raises TransientError: the body kept failing for ``max_attempts`` tries, or the retry
            budget is spent.
        """
        want = min(size, self.end - self.position)
        if want <= 0:
            return b""
        data = self.policy.call(
            lambda: self._read_once(want), what=f"{self.what} at byte {self.position}", on_retry=self._drop_cut_body
        )
        self.position += len(data)
        return data

    def readinto(self, view: memoryview, chunk: int = READ_CHUNK) -> int:
        """Fill all of ``view`` (at most the bytes left in the range) ``chunk`` bytes per read;
        returns how many bytes were written."""
        want = min(len(view), self.end - self.position)
        got = 0
        while got < want:
            data = self.read(min(chunk, want - got))
            view[got : got + len(data)] = data
            got += len(data)
        return got

    def close(self) -> None:
        """Close the open body, if any (a later read opens a new one at :attr:`position`)."""
        body, self._body = self._body, None
        if body is not None:
            with contextlib.suppress(Exception):  # closing a half-read body may complain; nothing to save
                body.close()

    def _read_once(self, want: int) -> bytes:
        if self._body is None:
            self._body = self._open_at(self.position)
            self._delivered = False
        data = self._body.read(want)
        if not data:
            raise ConnectionError(f"{self.what}: body ended early at byte {self.position}")
        self._delivered = True
        return data

    def _drop_cut_body(self, attempt: int, exc: BaseException) -> None:
        """Between tries: the failed body is closed; the next try opens one at :attr:`position`."""
        if self._body is not None and self._delivered:
            self.resumed += 1
            if self._on_resume is not None:
                self._on_resume()
        self.close()
