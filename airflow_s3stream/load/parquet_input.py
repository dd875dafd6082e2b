"""A Parquet file from S3 as Arrow record batches, read through pyarrow's own native file.

pyarrow 26 can abort the interpreter at exit ("terminate called without an active exception",
exit code 134) after reading Parquet from a *Python* file object (``io.BytesIO``, an open file,
an S3 stream): its reader threads still hold the Python file when the interpreter finalizes.
Reading by path does not. So a Parquet file is first streamed from S3 (through the package's
``RangedReader``, ETag-pinned) into a temporary local file, then opened with ``pyarrow.OSFile``, a
native file: pyarrow never touches a Python object for I/O. Parquet needs its footer before any
row group anyway, so nothing is lost by not overlapping this read with the COPY.

Memory stays bounded: one row group's column chunks plus ``batch_rows`` rows at a time; the
spool costs disk (the file's size) in ``tempfile.gettempdir()`` and is removed at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

__all__ = ["DEFAULT_BATCH_ROWS", "ParquetInput", "spool"]

DEFAULT_BATCH_ROWS = 64 * 1024  # rows per Arrow batch (one COPY write each)
_SPOOL_CHUNK = 1024 * 1024  # bytes per copy step into the temporary file


@contextlib.contextmanager
def spool(stream: BinaryIO, directory: str | None = None) -> Iterator[str]:
    """Copy ``stream`` into a temporary file; yields its path, removes it afterwards."""
    fd, path = tempfile.mkstemp(prefix="s3stream-load-", suffix=".parquet", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(stream, out, _SPOOL_CHUNK)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class ParquetInput:
    """A local Parquet file opened as a native ``pyarrow.OSFile``: its schema and its batches."""

    def __init__(self, path: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._native = pa.OSFile(path, "rb")
        self._file = pq.ParquetFile(self._native, pre_buffer=False)

    @property
    def column_names(self) -> list[str]:
        return list(self._file.schema_arrow.names)

    @property
    def num_rows(self) -> int:
        return int(self._file.metadata.num_rows)

    def batches(self, columns: Sequence[str], batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[Any]:
        """Record batches of ``columns`` (in that order), ``batch_rows`` rows at most each."""
        return self._file.iter_batches(batch_size=batch_rows, columns=list(columns), use_threads=False)

    def close(self) -> None:
        self._file.close()
        self._native.close()

    def __enter__(self) -> ParquetInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
