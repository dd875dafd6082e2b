"""Where payload files come from: S3 objects, under a prefix or listed.

Each yields :class:`~airflow_s3stream.archive.package.PayloadFile` records for
:func:`~airflow_s3stream.archive.package.package_bag`. S3 objects are read through the package's
one reader (:class:`~airflow_s3stream.s3.reader.RangedReader`: pinned by ``If-Match``, resumed
mid-body, retried), and the next ``prefetch_objects`` objects are opened ahead on worker threads:
opening fetches an object's last ``tail_size`` bytes, i.e. the whole object when it is small, so
a prefix of many small files is not paid for one round trip at a time. Memory: about
``prefetch_objects x tail_size`` plus one reader's window.
"""

from __future__ import annotations

import contextlib
import functools
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from airflow_s3stream.archive.package import PayloadFile
from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.s3.objects import list_objects
from airflow_s3stream.s3.reader import RangedReader, ReaderConfig, S3ObjectSource
from airflow_s3stream.s3.retry import RetryPolicy
from airflow_s3stream.units import MiB

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["DEFAULT_PREFETCH_OBJECTS", "relative_path", "s3_payload"]

DEFAULT_PREFETCH_OBJECTS = 16  # objects opened ahead: 16 x 1 MiB tails at most
READ_CHUNK = 1 * MiB


def relative_path(key: str, prefix: str) -> str:
    """The payload path of ``key`` under ``prefix`` (taken as a directory: ``src`` means ``src/``)."""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if not key.startswith(prefix):
        raise ConfigurationError(f"key {key!r} does not lie under the source prefix {prefix!r}")
    return key[len(prefix) :]


def _open_future(future: Future[RangedReader]) -> Iterator[bytes]:
    return _iter_reader(future.result())


def _iter_reader(reader: RangedReader) -> Iterator[bytes]:
    with reader:
        while chunk := reader.read(READ_CHUNK):
            yield chunk


def s3_payload(
    client: S3Client,
    bucket: str,
    *,
    prefix: str = "",
    keys: Sequence[str] | None = None,
    reader_config: ReaderConfig | None = None,
    retry: RetryPolicy | None = None,
    prefetch_objects: int = DEFAULT_PREFETCH_OBJECTS,
) -> Iterator[PayloadFile]:
    """Payload files for the objects under ``prefix`` (folder markers ending in ``/`` skipped), or
    for ``keys`` (each must lie under ``prefix``), in that order.

    The objects are opened ``prefetch_objects`` ahead; each :class:`PayloadFile`'s ``chunks`` must be
    consumed in order, as :func:`package_bag` does.
    """
    config = reader_config or ReaderConfig(prefetch_blocks=0)
    retry = retry or config.retry
    if keys is not None:
        listing: Iterable[tuple[str, int | None]] = ((k, None) for k in keys)
    else:
        listing = ((k, s) for k, s in list_objects(client, bucket, prefix, retry) if not k.endswith("/"))

    def open_one(key: str) -> RangedReader:
        return RangedReader(S3ObjectSource(client, bucket, key), config)

    with ThreadPoolExecutor(max(1, prefetch_objects), thread_name_prefix="bag-source") as pool:
        ahead: deque[tuple[str, int | None, Future[RangedReader]]] = deque()
        items = iter(listing)
        exhausted = False
        try:
            while True:
                while not exhausted and len(ahead) < max(1, prefetch_objects):
                    nxt = next(items, None)
                    if nxt is None:
                        exhausted = True
                        break
                    key, size = nxt
                    relative_path(key, prefix)  # refuse a listed key outside the prefix before reading it
                    ahead.append((key, size, pool.submit(open_one, key)))
                if not ahead:
                    return
                key, size, future = ahead.popleft()
                opener = functools.partial(_open_future, future)
                yield PayloadFile(relative_path(key, prefix), f"s3://{bucket}/{key}", opener, size)
        finally:
            for _, _, pending in ahead:
                if not pending.cancel():
                    with contextlib.suppress(Exception):  # an object never read: nothing to report
                        pending.result().close()
