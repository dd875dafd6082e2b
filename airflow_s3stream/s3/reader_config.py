"""The knobs, the statistics and the source interface of :class:`~airflow_s3stream.s3.reader.RangedReader`.

:class:`ReaderConfig` holds the block size, the tail fetched at open, the read-ahead choice and the
retry policy, with documented defaults; :class:`ByteSource` is what the reader reads from (an S3
object, or a local file in tests and benchmarks) and :class:`Tail` what its opening request returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from airflow_s3stream.s3.readahead import StreamController
from airflow_s3stream.s3.resumable_read import READ_CHUNK, RangeStream
from airflow_s3stream.s3.retry import RetryPolicy
from airflow_s3stream.units import KiB, MiB

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_TAIL_SIZE",
    "SKIP_FORWARD_LIMIT",
    "STREAM_CHUNK",
    "ByteSource",
    "ReaderConfig",
    "ReaderStats",
    "Tail",
]

DEFAULT_BLOCK_SIZE = 8 * MiB  # the GET budget is "archive size / 8 MiB + 4"
DEFAULT_TAIL_SIZE = 1 * MiB  # EOCD + ZIP64 records + ~10,000 central-directory entries
DEFAULT_MAX_STREAMS = 6  # adaptive ceiling: (6 + 2) x 8 MiB = 64 MiB, half the default 128 MiB task budget
# Bytes pulled from an HTTP body per read() call. Under release_large_buffers() (budget.py) a
# transient allocation of a MiB is a fresh mapping and page-faulted on every call, and one above
# 128 KiB is trimmed from the heap when freed: 64 KiB pieces stay in the heap and are reused.
STREAM_CHUNK = READ_CHUNK
SKIP_FORWARD_LIMIT = 8 * MiB  # a forward seek this short reads and drops bytes instead of a new GET


@dataclass(frozen=True)
class ReaderConfig:
    """Knobs of :class:`RangedReader`, with documented defaults.

    :param block_size: bytes per window block and per parallel GET (bytes).
    :param tail_size: bytes fetched by the suffix-range GET at open.
    :param prefetch_blocks: block GETs kept in flight ahead of the read position: ``None``
        (default) chooses adaptively between the streamed GET and up to ``max_streams`` parallel
        GETs; ``0`` is one streamed GET per sequential run (the cheapest against a near endpoint);
        ``N`` keeps N parallel GETs in flight.
    :param max_streams: the adaptive ceiling of parallel GETs.
    :param retry: policy for each GET and for resuming a body cut mid-way.
    """

    block_size: int = DEFAULT_BLOCK_SIZE
    tail_size: int = DEFAULT_TAIL_SIZE
    prefetch_blocks: int | None = None
    max_streams: int = DEFAULT_MAX_STREAMS
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if self.block_size < 64 * KiB:
            raise ValueError(f"block_size must be at least 64 KiB, got {self.block_size}")
        if self.tail_size < 1 * KiB:
            raise ValueError(f"tail_size must be at least 1 KiB, got {self.tail_size}")
        if self.prefetch_blocks is not None and not 0 <= self.prefetch_blocks <= 64:
            raise ValueError(f"prefetch_blocks must be None (adaptive) or within 0..64, got {self.prefetch_blocks}")
        if not 2 <= self.max_streams <= 64:
            raise ValueError(f"max_streams must be within 2..64, got {self.max_streams}")

    def controller(self) -> StreamController:
        """A fresh :class:`StreamController` for one reader."""
        if self.prefetch_blocks is None:
            return StreamController(max_streams=self.max_streams)
        return StreamController(max_streams=max(self.prefetch_blocks, 2), fixed=self.prefetch_blocks)


@dataclass
class ReaderStats:
    """What the reader cost: requests sent and body bytes received."""

    requests: int = 0
    bytes_fetched: int = 0
    resumed: int = 0  # bodies cut mid-way and resumed from the byte they stopped at
    streams: list[tuple[int, float]] = field(default_factory=list)  # adaptive windows: (N, MB/s)


@dataclass(frozen=True)
class Tail:
    """The answer to the opening suffix-range request."""

    size: int  # total object size, bytes
    data: bytes  # the last len(data) bytes of the object
    etag: str | None = None
    version_id: str | None = None


class ByteSource(Protocol):
    """Where the bytes come from: an S3 object or a local file. ``describe()`` names it in errors."""

    def describe(self) -> str: ...

    def open_tail(self, n: int) -> Tail: ...

    def open_range(self, start: int, end: int) -> RangeStream:
        """A readable stream of bytes ``start``..``end - 1`` (end exclusive)."""
        ...
