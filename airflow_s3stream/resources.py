"""One task's resources: its memory budget turned into sizes, its connection pool and its retries.

Each operator builds one :class:`TaskResources` in ``__init__`` (so a wrong ``memory_budget`` or
knob fails when the DAG is parsed), with the constructor for its kind of task, and hands the
sizes to its core; :class:`~airflow_s3stream.hooks.s3_connection.S3Connection` turns it into a
client and a retry policy in ``execute``. Nothing else divides the budget. An explicit knob
(``part_size``, ``max_concurrency``, ``block_size``, ...) always wins over the share.

The shares of the budget (the rest is headroom for Python, pyarrow and botocore themselves):

* **part buffers** (upload, export, package), half: ``(parts in flight + 1) x part size`` (the
  one being filled and those uploading); 128 MiB -> 8 MiB parts, 7 in flight;
* **a Parquet row group** (export), a sixteenth of Arrow data (8 MiB at 128 MiB): while a group
  is written, Arrow's writer holds several times that again (dictionaries, the buffered pages of
  each column chunk, encoders), outside Arrow's memory pool. The rows per group follow from the
  measured width of a row in Arrow memory, between 1,024 and 1,048,576;
* **the compressor** (export), an eighth: zstd's tables are shrunk when a high level would need
  more; gzip needs 256 KiB at most;
* **read-ahead** (verify), half: ``(streams + 2) x block size``; 128 MiB -> up to 6 streams of
  8 MiB blocks; and a sixteenth for inflated bytes waiting for the digest threads;
* **the load** (:class:`~airflow_s3stream.load.buffers.LoadBuffers`): a quarter for the S3
  reader's window ``block_size x (prefetch_blocks + 2)`` (8 MiB blocks at 128 MiB), a quarter for
  the decoded 1 MiB chunks queued ahead of the COPY (16 at 128 MiB). For Parquet, an eighth is
  the largest row group read whole (one coalesced GET), a 128th each column-chunk read and each
  Arrow batch, with 4 batches encoded ahead of the COPY.

The connection pool is one rule, :func:`pool_connections`: the requests a task runs in parallel
plus :data:`SPARE_CONNECTIONS`, and never fewer than botocore's own 10. The retry policy is
``max_attempts`` when given, else the connection's ``config_kwargs.retries``, else 6 attempts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from airflow_s3stream.budget import DEFAULT_MEMORY_BUDGET, check_memory_budget, rows_within
from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.s3.limits import S3_MIN_PART_SIZE
from airflow_s3stream.s3.multipart.config import (
    DEFAULT_MAX_CONCURRENCY,
    validate_max_concurrency,
    validate_part_size,
)
from airflow_s3stream.s3.reader import DEFAULT_BLOCK_SIZE, DEFAULT_MAX_STREAMS
from airflow_s3stream.s3.retry import RetryPolicy
from airflow_s3stream.units import KiB, MiB

if TYPE_CHECKING:
    from airflow_s3stream.load.buffers import LoadBuffers

__all__ = [
    "MIN_POOL_CONNECTIONS",
    "SPARE_CONNECTIONS",
    "PartBuffers",
    "ReaderWindow",
    "TaskResources",
    "pool_connections",
]

# Parts (upload, export, package): half of the budget.
MAX_BUDGET_PART_SIZE = 16 * MiB  # bytes; larger parts stop helping throughput, more of them in flight does
MAX_BUDGET_PARTS_IN_FLIGHT = 16  # more than this only queues on the connection pool
# Parquet row groups (export): a sixteenth of the budget in Arrow bytes.
MIN_ROW_GROUP_ROWS, MAX_ROW_GROUP_ROWS = 1024, 1024 * 1024
# Read-ahead (verify): half of the budget.
MIN_READ_STREAMS, MAX_READ_STREAMS = 2, 64  # the reader's adaptive ceiling accepts 2..64 parallel GETs
# The load: a quarter for the reader's window, a quarter for decoded chunks.
MAX_LOAD_BLOCK_SIZE = 8 * MiB  # bytes; larger ranged GETs stop helping throughput
MIN_LOAD_BLOCK_SIZE = 1 * MiB  # bytes
LOAD_CHUNK_SIZE = 1 * MiB  # bytes per decoded chunk queued ahead of the COPY
MIN_READ_AHEAD, MAX_READ_AHEAD = 2, 16  # decoded chunks queued: more than 16 only queues, it is not faster
MIN_PARQUET_READ = 256 * KiB  # bytes per ranged read of a Parquet column chunk
# The connection pool.
MIN_POOL_CONNECTIONS = 10  # botocore's own default pool
SPARE_CONNECTIONS = 4  # beside the parallel requests: the caller's own (create, complete, list, state writes)


def pool_connections(parallel_requests: int) -> int:
    """HTTP connections a client needs for ``parallel_requests`` at once: the one rule of the package.

    urllib3 opens a fresh connection (a new TLS handshake) for each request past the pool and
    throws it away afterwards, so the pool holds every parallel request plus
    :data:`SPARE_CONNECTIONS`, and at least :data:`MIN_POOL_CONNECTIONS`.
    """
    return max(MIN_POOL_CONNECTIONS, parallel_requests + SPARE_CONNECTIONS)


@dataclass(frozen=True)
class PartBuffers:
    """The parts of a multipart upload held in memory.

    :param part_size: bytes per part (5 MiB .. 5 GiB; checked by the multipart config).
    :param in_flight: parts uploading at once, beside the one being filled.
    """

    part_size: int
    in_flight: int

    @property
    def held_bytes(self) -> int:
        """Bytes held at most: the part being filled and those uploading."""
        return (self.in_flight + 1) * self.part_size


@dataclass(frozen=True)
class ReaderWindow:
    """A ranged reader's window (:class:`~airflow_s3stream.s3.reader.ReaderConfig` takes these).

    :param block_size: bytes per block and per parallel GET.
    :param prefetch_blocks: GETs kept in flight (``None``: adaptive up to ``max_streams``; ``0``:
        one streamed GET).
    :param max_streams: the adaptive ceiling of parallel GETs.
    """

    block_size: int
    prefetch_blocks: int | None
    max_streams: int

    @property
    def streams(self) -> int:
        """Parallel GETs the reader may run (what the connection pool must serve)."""
        return self.prefetch_blocks or self.max_streams

    @property
    def held_bytes(self) -> int:
        """Bytes the window holds at most: the blocks in flight, the one read and the one consumed."""
        return (self.streams + 2) * self.block_size


@dataclass(frozen=True)
class TaskResources:
    """What one task may use: sizes from ``memory_budget``, its connection pools and its retries.

    Build it with the constructor for the task's kind (:meth:`for_upload`, :meth:`for_export`,
    :meth:`for_commit`, :meth:`for_package`, :meth:`for_verify`, :meth:`for_load`); a size the
    kind does not use is absent, and asking for it raises ``LookupError``.

    :param memory_budget: bytes the task's buffers may take (checked: an integer, at least 32 MiB).
    :param pool_connections: HTTP connections of the task's client (:func:`pool_connections`).
    :param source_pool_connections: those of a client reading the sources through another
        connection (``source_aws_conn_id``).
    :param max_attempts: tries per S3 request when given; ``None``: the connection's, else 6.
    """

    memory_budget: int
    pool_connections: int
    source_pool_connections: int = MIN_POOL_CONNECTIONS
    max_attempts: int | None = None
    part_buffers: PartBuffers | None = None
    window: ReaderWindow | None = None
    row_group_bytes: int = 0  # Arrow bytes one Parquet row group may hold (export)
    compressor_bytes: int = 0  # bytes a streaming compressor's state may take (export)
    digest_queue_bytes: int = 0  # inflated bytes waiting for the verifier's digest threads
    load_buffers: LoadBuffers | None = None

    def __post_init__(self) -> None:
        check_memory_budget(self.memory_budget)
        if self.max_attempts is not None:
            _check_positive("max_attempts", self.max_attempts)

    @property
    def parts(self) -> PartBuffers:
        """Part size and parts in flight (upload, export, package)."""
        return _present(self.part_buffers, "parts")

    @property
    def reader(self) -> ReaderWindow:
        """The ranged reader's window (verify, load)."""
        return _present(self.window, "reader window")

    @property
    def load(self) -> LoadBuffers:
        """The load's buffers."""
        return _present(self.load_buffers, "load buffers")

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy before the connection is known (``max_attempts``, else the default);
        :class:`~airflow_s3stream.hooks.s3_connection.S3Connection` gives the connection's."""
        return RetryPolicy(max_attempts=self.max_attempts) if self.max_attempts else RetryPolicy()

    def row_group_rows(self, bytes_per_row: float) -> int:
        """Rows per Parquet row group for rows of ``bytes_per_row`` (measured in Arrow memory)."""
        if not self.row_group_bytes:
            raise LookupError("these task resources have no Parquet row group (build them with for_export)")
        return rows_within(self.row_group_bytes, bytes_per_row, MIN_ROW_GROUP_ROWS, MAX_ROW_GROUP_ROWS)

    @classmethod
    def for_upload(
        cls,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        *,
        part_size: int | None = None,
        max_concurrency: int | None = None,
        max_attempts: int | None = None,
    ) -> TaskResources:
        """An upload: parts from half the budget; a source read through another connection is one stream.

        :raises ConfigurationError: a budget or knob out of range.
        """
        parts = _parts(memory_budget, part_size, max_concurrency)
        return cls(
            memory_budget=memory_budget,
            pool_connections=pool_connections(parts.in_flight),
            source_pool_connections=pool_connections(1),
            max_attempts=max_attempts,
            part_buffers=parts,
        )

    @classmethod
    def for_export(
        cls,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        *,
        part_size: int | None = None,
        max_concurrency: int | None = None,
        max_attempts: int | None = None,
    ) -> TaskResources:
        """An export: an upload's parts, a sixteenth for a Parquet row group, an eighth for the compressor.

        :raises ConfigurationError: a budget or knob out of range.
        """
        upload = cls.for_upload(
            memory_budget, part_size=part_size, max_concurrency=max_concurrency, max_attempts=max_attempts
        )
        return dataclasses.replace(upload, row_group_bytes=memory_budget // 16, compressor_bytes=memory_budget // 8)

    @classmethod
    def for_commit(
        cls, *, max_concurrency: int = DEFAULT_MAX_CONCURRENCY, max_attempts: int | None = None
    ) -> TaskResources:
        """A job's commit: no buffers, ``max_concurrency`` completes (and checks) at once.

        :raises ConfigurationError: a knob out of range.
        """
        validate_max_concurrency(max_concurrency)
        return cls(
            memory_budget=DEFAULT_MEMORY_BUDGET,
            pool_connections=pool_connections(max_concurrency),
            max_attempts=max_attempts,
        )

    @classmethod
    def for_package(
        cls,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        *,
        part_size: int | None = None,
        max_concurrency: int | None = None,
        prefetch_objects: int,
        separate_source: bool = False,
        max_attempts: int | None = None,
    ) -> TaskResources:
        """A bag: the ZIP's parts from half the budget, ``prefetch_objects`` sources opened ahead,
        through the destination's client unless ``separate_source``.

        :raises ConfigurationError: a budget or knob out of range.
        """
        _check_positive("prefetch_objects", prefetch_objects)
        parts = _parts(memory_budget, part_size, max_concurrency)
        reads = 0 if separate_source else prefetch_objects
        return cls(
            memory_budget=memory_budget,
            pool_connections=pool_connections(parts.in_flight + reads),
            source_pool_connections=pool_connections(prefetch_objects),
            max_attempts=max_attempts,
            part_buffers=parts,
        )

    @classmethod
    def for_verify(
        cls,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        prefetch_blocks: int | None = None,
        max_streams: int | None = None,
        max_attempts: int | None = None,
    ) -> TaskResources:
        """A verification: as many read streams as half the budget holds (2..64), a sixteenth for
        inflated bytes waiting for the digest threads.

        :raises ConfigurationError: a budget or knob out of range.
        """
        check_memory_budget(memory_budget)
        _check_positive("block_size", block_size)
        if max_streams is None:
            fitting = (memory_budget // 2) // block_size - 2
            max_streams = min(MAX_READ_STREAMS, max(MIN_READ_STREAMS, fitting))
        window = ReaderWindow(block_size=block_size, prefetch_blocks=prefetch_blocks, max_streams=max_streams)
        return cls(
            memory_budget=memory_budget,
            pool_connections=pool_connections(window.streams),
            max_attempts=max_attempts,
            window=window,
            digest_queue_bytes=memory_budget // 16,
        )

    @classmethod
    def for_load(
        cls,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        *,
        block_size: int | None = None,
        prefetch_blocks: int = 0,
        read_ahead: int | None = None,
        batch_rows: int | None = None,
        max_attempts: int | None = None,
    ) -> TaskResources:
        """A load: a quarter of the budget for the reader's window, a quarter for decoded chunks,
        the Parquet reads and batches (see the module docstring). ``block_size`` given is also the
        Parquet column-chunk read size.

        :raises ConfigurationError: a budget or knob out of range.
        """
        from airflow_s3stream.load.buffers import LoadBuffers  # the load's record; the load imports this module

        check_memory_budget(memory_budget)
        for name, value in (("block_size", block_size), ("read_ahead", read_ahead), ("batch_rows", batch_rows)):
            if value is not None:
                _check_positive(name, value)
        quarter = memory_budget // 4
        parquet_read_size = block_size or max(MIN_PARQUET_READ, memory_budget // 128)
        if block_size is None:
            fitting = quarter // (prefetch_blocks + 2) // MiB * MiB
            block_size = min(MAX_LOAD_BLOCK_SIZE, max(MIN_LOAD_BLOCK_SIZE, fitting))
        if read_ahead is None:
            read_ahead = min(MAX_READ_AHEAD, max(MIN_READ_AHEAD, quarter // LOAD_CHUNK_SIZE))
        buffers = LoadBuffers(
            block_size=block_size,
            read_ahead=read_ahead,
            batch_bytes=memory_budget // 128,
            batch_rows=batch_rows,
            parquet_read_size=parquet_read_size,
            parquet_row_group_read=memory_budget // 8,
        )
        window = ReaderWindow(block_size=block_size, prefetch_blocks=prefetch_blocks, max_streams=DEFAULT_MAX_STREAMS)
        return cls(
            memory_budget=memory_budget,
            pool_connections=pool_connections(window.streams),
            max_attempts=max_attempts,
            window=window,
            load_buffers=buffers,
        )


def _parts(memory_budget: int, part_size: int | None, max_concurrency: int | None) -> PartBuffers:
    """``(part size, parts in flight)`` within half the budget; an explicit value is kept as given."""
    check_memory_budget(memory_budget)
    if part_size is not None:
        validate_part_size(part_size)
    if max_concurrency is not None:
        validate_max_concurrency(max_concurrency)
    share = memory_budget // 2
    if part_size is None:
        fitting = share // 8 if max_concurrency is None else share // (max_concurrency + 1)
        part_size = min(MAX_BUDGET_PART_SIZE, max(S3_MIN_PART_SIZE, fitting // MiB * MiB))
    if max_concurrency is None:
        max_concurrency = min(MAX_BUDGET_PARTS_IN_FLIGHT, max(1, share // part_size - 1))
    return PartBuffers(part_size=part_size, in_flight=max_concurrency)


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")


T = TypeVar("T")


def _present(value: T | None, what: str) -> T:
    if value is None:
        raise LookupError(f"these task resources have no {what} (built for another kind of task)")
    return value
