"""Member digests (CRC-32 and the manifest algorithms) computed beside the reading thread, in bounded memory.

The verifier streams members in archive order on one thread (reading, inflating); their digests
(the *lanes* of a member) are shared between that thread and ``threads`` workers: hashlib and
the CRC-32 release the GIL on buffers of a few KiB and more, so two cores hash at once. Each
lane stays on one thread, which sees the member's chunks in order; the lanes of each new member go
to the threads with the least work given so far (:func:`assign_lanes`, pure arithmetic), the
reading thread counting its own reading and inflating (``CALLER_COST``). A lane the reading thread
keeps is hashed as each chunk goes by, while the chunk is still in the core's cache, and costs no
hand-over; on a machine whose other cores are busy (a store on the same host) that is most of the
gain.

Memory: chunks are handed to a worker joined in batches (one buffer and one GIL hand-over per
``BATCH_BYTES``: a hashing thread that takes the GIL back after every 64 KiB chunk waits behind
the reading thread's Python far longer than it hashes), and at most ``max_pending`` bytes of them
wait for a worker; beyond that the producer waits for the oldest batch. Members come back in the
order they were submitted (:meth:`DigestPipeline.ready`), so a report lists its findings in
archive order whatever the timing. Members smaller than ``INLINE_BELOW`` are hashed on the
calling thread: a hand-over costs more than hashing them.

    with DigestPipeline(threads=2) as pipeline:
        member = pipeline.begin(["crc32", "sha256"], size_hint=entry.file_size, token=entry)
        for chunk in chunks:
            member.update(chunk)
        pipeline.submit(member)
        for done in pipeline.ready():
            done.token, done.hexdigests()
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from airflow_s3stream.archive.zip.codec import crc32
from airflow_s3stream.units import KiB, MiB

__all__ = [
    "BATCH_BYTES",
    "CALLER_COST",
    "DEFAULT_MAX_PENDING",
    "INLINE_BELOW",
    "LANE_COST",
    "Crc32",
    "DigestPipeline",
    "MemberDigests",
    "assign_lanes",
]

DEFAULT_MAX_PENDING = 8 * MiB  # bytes of chunks waiting for a worker (a sixteenth of the default budget)
BATCH_BYTES = 2 * MiB  # chunks joined and handed to a worker at once (one GIL hand-over per 2 MiB, not per chunk)
INLINE_BELOW = 16 * KiB  # members smaller than this are hashed on the calling thread
MAX_PENDING_MEMBERS = 4096  # members waiting for their digests (a million tiny ones must not pile up)
# Relative CPU cost per byte (sha256 = 1), measured on the 2-core dev machine (SHA-NI): CRC-32
# 1.8 GB/s, sha256 1.4 GB/s, sha512 0.46 GB/s. Only the proportions matter: they balance the workers.
LANE_COST = {"crc32": 0.8, "md5": 2.0, "sha1": 0.9, "sha224": 1.0, "sha256": 1.0, "sha384": 3.0, "sha512": 3.0}
# The reading thread's own work per byte on the same scale: reading and inflating a 223 MB bag
# took 0.23 s there against 0.15 s for its sha256.
CALLER_COST = 1.5


class Hasher(Protocol):
    @property
    def name(self) -> str: ...

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class Crc32:
    """CRC-32 (ZIP's) with the interface of a hashlib object; :attr:`value` is the integer."""

    name = "crc32"

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes, /) -> None:
        self.value = crc32(data, self.value)

    def hexdigest(self) -> str:
        return f"{self.value:08x}"


def _hasher(algorithm: str) -> Hasher:
    return Crc32() if algorithm == "crc32" else hashlib.new(algorithm)


def assign_lanes(costs: Sequence[float], loads: list[float]) -> list[int]:
    """The worker of each lane: costliest lane first, each to the worker with the least load.

    ``costs`` are the lanes' costs for this member (cost per byte x bytes); ``loads`` holds each
    worker's total so far and is updated in place. Ties go to the lowest index, so the
    assignment is deterministic.
    """
    workers = [0] * len(costs)
    for lane in sorted(range(len(costs)), key=lambda i: -costs[i]):
        worker = min(range(len(loads)), key=loads.__getitem__)
        workers[lane] = worker
        loads[worker] += costs[lane]
    return workers


def _feed(hashers: list[Hasher], batch: bytes) -> None:
    for hasher in hashers:
        hasher.update(batch)


class MemberDigests:
    """The digests of one member while it streams; ``token`` is the caller's (e.g. the ZIP entry)."""

    def __init__(
        self, pipeline: DigestPipeline, algorithms: Sequence[str], token: Any, workers: list[int] | None
    ) -> None:
        self.token = token
        self.algorithms = list(algorithms)
        self._hashers = [_hasher(alg) for alg in self.algorithms]
        self._pipeline = pipeline
        # the lanes hashed by the calling thread as chunks go by, and the hashers each worker owns
        self._inline: list[Hasher] = []
        self._lanes: dict[int, list[Hasher]] = {}
        for hasher, worker in zip(self._hashers, workers or [0] * len(self._hashers), strict=True):
            if worker == 0:
                self._inline.append(hasher)
            else:
                self._lanes.setdefault(worker - 1, []).append(hasher)
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._last: list[Future[None]] = []  # the member's last batch on each of its workers

    def update(self, chunk: bytes) -> None:
        """Feed the next chunk of the member (kept until it is joined into a worker's batch)."""
        for hasher in self._inline:
            hasher.update(chunk)
        if not self._lanes:
            return
        self._batch.append(chunk)
        self._batch_bytes += len(chunk)
        if self._batch_bytes >= BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        batch = self._batch[0] if len(self._batch) == 1 else b"".join(self._batch)
        nbytes = self._batch_bytes
        self._batch, self._batch_bytes = [], 0
        self._last = self._pipeline._dispatch(self._lanes, batch, nbytes)

    @property
    def inline(self) -> list[str]:
        """The algorithms hashed on the calling thread."""
        return [h.name for h in self._inline]

    @property
    def done(self) -> bool:
        return all(f.done() for f in self._last)

    def wait(self) -> None:
        """Wait until every digest is complete; re-raises what a worker raised."""
        for future in self._last:
            future.result()

    def hexdigests(self) -> dict[str, str]:
        """``{algorithm: hex digest}``; call once :attr:`done` (or after :meth:`wait`)."""
        return {alg: h.hexdigest() for alg, h in zip(self.algorithms, self._hashers, strict=True)}

    def value(self, algorithm: str) -> Any:
        """The raw result of one lane: the integer for ``crc32``, else the hex digest."""
        hasher = self._hashers[self.algorithms.index(algorithm)]
        return hasher.value if isinstance(hasher, Crc32) else hasher.hexdigest()


class DigestPipeline:
    """Worker threads computing member digests, handed back in submission order (see the module docstring).

    :param threads: worker threads; 0 hashes everything on the calling thread.
    :param max_pending: bytes of chunks that may wait for a worker.
    """

    def __init__(self, threads: int, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        if threads < 0 or max_pending < 1:
            raise ValueError(f"threads must be >= 0 and max_pending >= 1, got {threads}, {max_pending}")
        self.max_pending = max_pending
        self._workers = [ThreadPoolExecutor(1, thread_name_prefix=f"digest-{i}") for i in range(threads)]
        self._loads = [0.0] * (threads + 1)  # [the calling thread, worker 0, worker 1, ...]
        self._queued: deque[tuple[list[Future[None]], int]] = deque()  # batches not yet hashed, with their bytes
        self._queued_bytes = 0
        self._members: deque[MemberDigests] = deque()  # submitted, in order

    def __enter__(self) -> DigestPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def queued_bytes(self) -> int:
        """Bytes of chunks handed to the workers and not yet hashed (at most ``max_pending``)."""
        return self._queued_bytes

    def begin(self, algorithms: Sequence[str], size_hint: int, token: Any = None) -> MemberDigests:
        """Start a member needing ``algorithms`` (``crc32`` or hashlib names) of about ``size_hint`` bytes."""
        workers = None  # every lane on the calling thread
        if self._workers and algorithms and size_hint >= INLINE_BELOW:
            self._loads[0] += CALLER_COST * size_hint
            costs = [LANE_COST.get(alg, 1.0) * size_hint for alg in algorithms]
            workers = assign_lanes(costs, self._loads)
        return MemberDigests(self, algorithms, token, workers)

    def submit(self, member: MemberDigests) -> None:
        """The member has streamed (or failed part-way); its digests finish behind, on the workers."""
        member._flush()
        self._members.append(member)
        if len(self._members) > MAX_PENDING_MEMBERS:
            self._members[0].wait()

    def ready(self) -> Iterator[MemberDigests]:
        """The submitted members whose digests are complete, oldest first, up to the first that is not."""
        while self._members and self._members[0].done:
            member = self._members.popleft()
            member.wait()  # re-raises a worker's exception
            yield member

    def drain(self) -> Iterator[MemberDigests]:
        """Every submitted member, oldest first, waiting for each."""
        while self._members:
            member = self._members.popleft()
            member.wait()
            yield member

    def close(self) -> None:
        """Stop the workers; queued work is dropped."""
        for worker in self._workers:
            worker.shutdown(wait=True, cancel_futures=True)
        self._members.clear()
        self._queued.clear()

    def _dispatch(self, lanes: dict[int, list[Hasher]], batch: bytes, nbytes: int) -> list[Future[None]]:
        futures = [self._workers[w].submit(_feed, hashers, batch) for w, hashers in lanes.items()]
        self._queued.append((futures, nbytes))
        self._queued_bytes += nbytes
        while self._queued and (self._queued_bytes > self.max_pending or all(f.done() for f in self._queued[0][0])):
            done, size = self._queued.popleft()
            for future in done:
                future.result()
            self._queued_bytes -= size
        return futures
