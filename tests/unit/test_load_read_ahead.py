"""ReadAhead: a producer in a thread, a bounded queue ahead of the consumer, failures handed over."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator

import pytest

from airflow_s3stream.load.byte_stream import ReadAhead


def test_a_stream_arrives_in_chunks_in_order() -> None:
    data = bytes(range(256)) * 40
    with ReadAhead(io.BytesIO(data), depth=2, chunk_size=1000) as ahead:
        chunks = list(ahead)
    assert b"".join(chunks) == data and max(len(c) for c in chunks) == 1000


def test_the_producer_stays_at_most_depth_items_ahead() -> None:
    made: list[int] = []

    def items() -> Iterator[int]:
        for i in range(100):
            made.append(i)
            yield i

    with ReadAhead(items(), depth=3) as ahead:
        it = iter(ahead)
        assert next(it) == 0
        time.sleep(0.3)  # let the producer run as far as the queue allows
        assert len(made) <= 1 + 3 + 1  # taken, queued, and the one waiting to be queued
        assert list(it) == list(range(1, 100))


def test_a_producer_error_is_raised_in_the_consumer_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("decoding row group 3 failed")

    got: list[int] = []
    with ReadAhead(items(), depth=4) as ahead, pytest.raises(OSError, match="row group 3"):
        for item in ahead:
            got.append(item)
    assert got == [1, 2]


def test_a_consumer_that_stops_early_stops_the_producer_and_closes_it() -> None:
    closed = threading.Event()

    def items() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    ahead = ReadAhead(items(), depth=2)
    assert next(iter(ahead)) == 0
    ahead.close()  # as when the COPY failed: returns once the thread is gone
    assert closed.is_set() and not ahead._thread.is_alive()
