"""Local files behind the package's source interfaces, for tests and benchmarks only.

:class:`LocalFileSource` is a :class:`~airflow_s3stream.s3.reader.ByteSource` over a local file,
for archives too large for the test S3 endpoint (moto keeps objects in memory);
:func:`local_payload` yields the payload files of a local directory for
:func:`~airflow_s3stream.archive.package.package_bag`. Neither ships in the wheel.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from airflow_s3stream.archive.package import PayloadFile
from airflow_s3stream.errors import SourceError
from airflow_s3stream.s3.reader import RangeStream, Tail
from airflow_s3stream.units import MiB

__all__ = ["LocalFileSource", "local_payload"]

READ_CHUNK = 1 * MiB  # bytes per chunk of a payload file


class LocalFileSource:
    """A local file behind the :class:`~airflow_s3stream.s3.reader.ByteSource` interface.

    A missing file raises :class:`~airflow_s3stream.errors.SourceError` naming it, as a missing key does.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def describe(self) -> str:
        return f"file://{self.path}"

    def open_tail(self, n: int) -> Tail:
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(max(0, size - n))
                return Tail(size=size, data=f.read())
        except FileNotFoundError as exc:
            raise SourceError(f"{self.describe()}: no such file") from exc

    def open_range(self, start: int, end: int) -> RangeStream:
        f = open(self.path, "rb")  # noqa: SIM115 - closed by the reader
        f.seek(start)
        return _Bounded(f, end - start)


class _Bounded(io.RawIOBase):
    """At most ``limit`` bytes of ``raw``; closes ``raw`` when closed."""

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self._raw, self._left = raw, limit

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self._left if size < 0 else min(size, self._left)
        data = self._raw.read(n)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._raw.close()
        super().close()


def local_payload(root: str | os.PathLike[str], chunk: int = READ_CHUNK) -> Iterator[PayloadFile]:
    """Payload files for every regular file under ``root``, in sorted path order, read ``chunk`` bytes at a time."""
    base = Path(root)
    paths = sorted(p for p in base.rglob("*") if p.is_file())

    def read(path: Path) -> Iterator[bytes]:
        with open(path, "rb") as f:
            while data := f.read(chunk):
                yield data

    for path in paths:
        opener = functools.partial(read, path)
        yield PayloadFile(path.relative_to(base).as_posix(), f"file://{path}", opener, path.stat().st_size)
