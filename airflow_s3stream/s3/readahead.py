"""Parallel ranged read-ahead for :class:`~airflow_s3stream.s3.reader.RangedReader`, and how many streams to use.

Against real S3 one connection delivers tens of MB/s after tens of ms to the first byte, so a
sequential pass is latency- and bandwidth-bound long before the verifier's CPU is. :class:`ReadAhead`
keeps up to N ranged GETs of ``block_size`` bytes in flight ahead of the reader, hands the blocks
back strictly in order, and so bounds memory by (N + 1) x ``block_size`` (N in flight or waiting,
one being consumed). Block buffers are reused (:class:`BlockBuffers`): a fresh large buffer costs a
page fault per 4 KiB page every time it is allocated, a reused one nothing.

:class:`StreamController` chooses N the way TCP slow start probes a link: begin with the single
streamed GET (the cheapest: one request per pass); once the reader waits on it for a quarter of
the time or more (``PROBE_FROM_STREAM``: less could not pay for the switch), switch to N = 2
block GETs and double N (the last step up to ``max_streams`` only) while each step raises the
throughput the reader sees by at least ``GAIN`` and the reader still waits on I/O (when it
does not, the verifier's CPU is the bottleneck and more streams would only cost memory). The first
step that does not pay is undone and N stays there. The controller is pure arithmetic over
(bytes, seconds) observations, so it is tested without any I/O.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

__all__ = ["GAIN", "PROBE_FROM_STREAM", "BlockBuffers", "ReadAhead", "StreamController"]

GAIN = 1.2  # a doubling of N must raise throughput by 20% for the probe to go on
KEEP = 1.1  # the last doubling is kept (and the probe stops) if it still raised throughput by 10%
IO_BOUND = 0.10  # the reader waited on I/O for at least this share of the window: more streams may help
# Leaving the single streamed GET needs more: parallel GETs can at best remove the waiting (a
# ceiling of 1 / (1 - share): 1.33x at 25%), and they cost CPU of their own (thread hand-overs,
# copies into block buffers). A store on the same host kept the reader waiting 14-18% of the time
# because the host's CPUs were busy, not because of latency, and N = 2 was 15-30% slower there;
# real S3 (30 ms to the first byte, 40 MB/s per connection) keeps it waiting most of the time.
PROBE_FROM_STREAM = 0.25
STREAMED_PROBE_BLOCKS = 4  # blocks read through the streamed GET before a decision (one may have been read ahead)


@dataclass
class StreamController:
    """How many parallel block GETs to keep in flight: 0 means the single streamed GET.

    :param max_streams: the ceiling N never exceeds.
    :param fixed: a fixed N (0 = always the streamed GET); ``None`` = adaptive.
    """

    max_streams: int = 16
    fixed: int | None = None
    clock: Callable[[], float] = time.monotonic
    streams: int = field(init=False)
    settled: bool = field(init=False, default=False)
    history: list[tuple[int, float]] = field(init=False, default_factory=list)  # (N, MB/s) per window
    _window_bytes: int = field(init=False, default=0)
    _window_wait: float = field(init=False, default=0.0)
    _window_blocks: int = field(init=False, default=0)
    _window_start: float | None = field(init=False, default=None)
    _warmup: int = field(init=False, default=0)  # blocks to skip before measuring a new N
    _previous: float = field(init=False, default=0.0)  # throughput of the last kept N, bytes/s
    _previous_streams: int = field(init=False, default=0)  # the last kept N (0: the streamed GET)

    def __post_init__(self) -> None:
        if self.fixed is not None:
            self.streams, self.settled = self.fixed, True
        else:
            self.streams = 0

    @property
    def adaptive(self) -> bool:
        return self.fixed is None

    def window_blocks(self) -> int:
        """Blocks one measurement spans at the current N: the pipeline filled, plus two."""
        return STREAMED_PROBE_BLOCKS if self.streams == 0 else max(4, self.streams + 2)

    def start(self) -> None:
        """Mark the start of a measurement window (the first block of a sequential run)."""
        if self._window_start is None:
            self._window_start = self.clock()

    def observe(self, nbytes: int, waited: float) -> None:
        """The reader consumed a block of ``nbytes`` after waiting ``waited`` seconds for its bytes."""
        if self.settled:
            return
        if self._warmup > 0:  # the pipeline of a new N is still filling: not representative
            self._warmup -= 1
            return
        if self._window_start is None:
            self._window_start = self.clock() - waited
        self._window_bytes += nbytes
        self._window_wait += waited
        self._window_blocks += 1
        if self._window_blocks >= self.window_blocks():
            self._decide()

    def restart(self) -> None:
        """A seek broke the sequential run: the window in progress measures nothing useful."""
        self._window_bytes, self._window_wait, self._window_blocks, self._window_start = 0, 0.0, 0, None

    def _decide(self) -> None:
        assert self._window_start is not None
        elapsed = max(1e-9, self.clock() - self._window_start)
        throughput = self._window_bytes / elapsed
        io_share = self._window_wait / elapsed
        self.history.append((self.streams, round(throughput / 1e6, 1)))
        self.restart()
        if self.streams == 0:
            if io_share >= PROBE_FROM_STREAM:
                self._previous, self._previous_streams = throughput, 0
                self._set(2)
            return  # CPU-bound on one stream: keep measuring, the archive may change character
        if throughput < self._previous * GAIN:
            if throughput < self._previous * KEEP:  # the last step did not pay for its memory: undo it
                self.streams = self._previous_streams
            self.settled = True
            return
        self._previous, self._previous_streams = throughput, self.streams
        following = min(self.streams * 2, self.max_streams)  # the last step may be less than a doubling
        if io_share < IO_BOUND or following == self.streams:
            self.settled = True  # the verifier's CPU is the limit now, or the ceiling is reached
            return
        self._set(following)

    def _set(self, streams: int) -> None:
        self.streams = streams
        self._warmup = streams // 2  # blocks fetched at the old N are still arriving


class BlockBuffers:
    """Block buffers handed back once read and handed out again for the next block.

    :func:`~airflow_s3stream.budget.release_large_buffers` makes every buffer of a MiB or more a
    mapping of its own, returned to the OS when freed; allocating one afresh for each 8 MiB block
    then costs 2,048 page faults, which on a 2-core VM made a pass over an archive spend more CPU
    in the kernel than in CRC-32. Reused, a buffer is faulted in once. At most ``keep`` free
    buffers of ``size`` bytes are kept; a smaller one (the last block of an object) is not.
    """

    def __init__(self, size: int, keep: int) -> None:
        self.size, self.keep = size, keep
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> bytearray:
        """A buffer of at least ``nbytes`` bytes (a free one when there is one)."""
        with self._lock:
            if self._free and nbytes <= self.size:
                return self._free.pop()
        return bytearray(nbytes)

    def give(self, buffer: object) -> None:
        """Hand ``buffer`` back; nothing may read it afterwards."""
        if isinstance(buffer, bytearray) and len(buffer) == self.size:
            with self._lock:
                if len(self._free) < self.keep:
                    self._free.append(buffer)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


class ReadAhead:
    """Blocks of ``block_size`` bytes of ``[0, end)`` fetched by up to N threads, in order.

    The blocks follow each other from the ``start`` of a sequential run: ``start``,
    ``start + block_size``, ...; a seek starts a new run.

    :param fetch: ``fetch(start) -> memoryview`` of the block at ``start`` (runs on a worker
        thread; it does its own retries and resumes).
    """

    def __init__(self, fetch: Callable[[int], memoryview], block_size: int, end: int, max_streams: int) -> None:
        self._fetch, self.block_size, self.end = fetch, block_size, end
        self._pool = ThreadPoolExecutor(max(1, max_streams), thread_name_prefix="ranged-readahead")
        self._pending: deque[tuple[int, Future[memoryview]]] = deque()

    def take(self, start: int, streams: int) -> tuple[memoryview, float]:
        """The block at ``start`` and the seconds spent waiting for it.

        Blocks queued before ``start`` are dropped; a ``start`` behind the queue restarts it. After
        the call, up to ``streams`` blocks after ``start`` are in flight or waiting (while waiting,
        ``streams`` GETs run, the awaited one included).
        """
        while self._pending and self._pending[0][0] != start:
            if self._pending[0][0] > start:
                self.cancel()
                break
            skipped = self._pending.popleft()[1]
            if not skipped.cancel():
                wait([skipped])
        if not self._pending:
            self._pending.append((start, self._pool.submit(self._fetch, start)))
        self._top_up(streams)
        _, future = self._pending.popleft()
        started = time.monotonic()
        try:
            data = future.result()
        except BaseException:
            self.cancel()
            raise
        waited = time.monotonic() - started
        self._top_up(streams)
        return data, waited

    def holds(self, start: int) -> bool:
        """True when the next block queued (fetched or in flight) starts at ``start``."""
        return bool(self._pending) and self._pending[0][0] == start

    def _top_up(self, depth: int) -> None:
        nxt = self._pending[-1][0] + self.block_size if self._pending else None
        while nxt is not None and len(self._pending) < depth and nxt < self.end:
            self._pending.append((nxt, self._pool.submit(self._fetch, nxt)))
            nxt += self.block_size

    def cancel(self) -> None:
        """Drop every queued block. Those already running are waited for and discarded, so the
        blocks held never exceed the window (N in flight), even across restarts."""
        running = []
        while self._pending:
            future = self._pending.popleft()[1]
            if not future.cancel():
                running.append(future)
        wait(running)

    def close(self) -> None:
        self.cancel()
        self._pool.shutdown(wait=True)
