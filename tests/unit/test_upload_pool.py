"""The bounded part pool: at most N parts in flight, the first failure stops the rest (threads, no server)."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_s3stream.errors import ConcurrentUploadError, UploadInterruptedError
from airflow_s3stream.s3.multipart.config import PartRange
from airflow_s3stream.s3.multipart.part_record import PartRecord
from airflow_s3stream.upload.pool import PartPool

PARTS = [PartRange(n, (n - 1) * 10, 10) for n in range(1, 13)]


def stored(part: PartRange) -> PartRecord:
    return PartRecord(part.number, part.length, f'"e{part.number}"', "c==")


def test_every_part_is_sent_once_and_its_record_returned_by_number() -> None:
    sent: list[int] = []
    after: list[int] = []

    def send(part: PartRange) -> PartRecord:
        sent.append(part.number)
        return stored(part)

    records = PartPool(3, "s3://b/k").run(PARTS, send, after=lambda r: after.append(r.number))
    assert sorted(records) == sorted(sent) == sorted(after) == [p.number for p in PARTS]
    assert records[5] == stored(PARTS[4])


def test_no_more_than_workers_parts_are_in_flight() -> None:
    lock, running, peak = threading.Lock(), [0], [0]

    def send(part: PartRange) -> PartRecord:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return stored(part)

    PartPool(3, "s3://b/k").run(PARTS, send)
    assert peak[0] <= 3


def test_the_first_failure_is_raised_and_later_parts_do_not_start() -> None:
    sent: list[int] = []

    def send(part: PartRange) -> PartRecord:
        sent.append(part.number)
        if part.number == 2:
            raise OSError("part 2 of s3://b/k: connection reset")
        return stored(part)

    with pytest.raises(OSError, match="part 2"):
        PartPool(1, "s3://b/k").run(PARTS, send)
    assert sent == [1, 2]


def test_a_stopped_pool_sends_nothing_and_says_so() -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(UploadInterruptedError, match="s3://b/k stopped before part 1"):
        PartPool(2, "s3://b/k", stop).run(PARTS, stored)


def test_a_check_before_each_part_can_stop_the_upload() -> None:
    sent: list[int] = []

    def before() -> None:
        if len(sent) == 2:
            raise ConcurrentUploadError("another try took s3://b/k over")

    def send(part: PartRange) -> PartRecord:
        sent.append(part.number)
        return stored(part)

    with pytest.raises(ConcurrentUploadError):
        PartPool(1, "s3://b/k").run(PARTS, send, before=before)
    assert sent == [1, 2]


def test_a_pool_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        PartPool(0, "s3://b/k")
