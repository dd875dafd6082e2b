"""The part plan of a known-size upload: ranges, and which parts are missing or recoverable (pure, no server)."""

from __future__ import annotations

import pytest

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.s3.multipart.config import PartRange
from airflow_s3stream.s3.multipart.part_record import PartRecord
from airflow_s3stream.units import MiB
from airflow_s3stream.upload.plan import PartPlan, fits_one_put

PART = 5 * MiB


def record(number: int, size: int = PART) -> PartRecord:
    return PartRecord(number, size, f'"e{number}"', f"c{number}==", f"m{number}")


def test_plan_numbers_parts_from_one_with_a_shorter_last_part() -> None:
    plan = PartPlan.of(2 * PART + 3, PART)
    assert list(plan) == [PartRange(1, 0, PART), PartRange(2, PART, PART), PartRange(3, 2 * PART, 3)]
    assert len(plan) == 3 and plan.numbers == [1, 2, 3]
    assert PartPlan.bytes_in(plan) == plan.size == 2 * PART + 3


def test_a_size_that_is_a_multiple_of_the_part_size_has_no_empty_last_part() -> None:
    assert [p.length for p in PartPlan.of(3 * PART, PART)] == [PART, PART, PART]


def test_an_empty_source_is_one_empty_part() -> None:
    assert list(PartPlan.of(0, PART)) == [PartRange(1, 0, 0)]


def test_a_plan_of_more_than_10000_parts_is_refused() -> None:
    assert len(PartPlan.of(10_000 * PART, PART)) == 10_000
    with pytest.raises(ConfigurationError, match="10001 parts"):
        PartPlan.of(10_000 * PART + 1, PART)


def test_missing_parts_are_the_ones_not_done_in_part_order() -> None:
    plan = PartPlan.of(5 * PART, PART)
    assert [p.number for p in plan.missing({4, 1, 2})] == [3, 5]
    assert plan.missing({1, 2, 3, 4, 5}) == []
    assert plan.missing(set()) == list(plan)


def test_resume_sends_only_the_bytes_of_the_missing_parts() -> None:
    plan = PartPlan.of(3 * PART + 7, PART)
    assert PartPlan.bytes_in(plan.missing({1, 2})) == PART + 7


def test_recoverable_parts_are_listed_by_the_store_but_not_recorded() -> None:
    plan = PartPlan.of(4 * PART, PART)
    listed = {n: {"PartNumber": n} for n in (1, 2, 3, 9)}  # 9: not a part of this plan
    assert [p.number for p in plan.recoverable({1}, listed)] == [2, 3]


def test_nothing_is_recoverable_when_the_store_lists_nothing() -> None:
    plan = PartPlan.of(2 * PART, PART)
    assert plan.recoverable(set(), None) == []
    assert plan.recoverable(set(), {}) == []


def test_all_recorded_gives_every_record_in_part_order() -> None:
    plan = PartPlan.of(2 * PART + 1, PART)
    records = {3: record(3, 1), 1: record(1), 2: record(2)}
    assert plan.all_recorded(records) == [record(1), record(2), record(3, 1)]


def test_all_recorded_is_none_when_a_part_is_absent_or_of_another_size() -> None:
    plan = PartPlan.of(2 * PART + 1, PART)
    assert plan.all_recorded({1: record(1), 2: record(2)}) is None
    assert plan.all_recorded({1: record(1), 2: record(2), 3: record(3, 2)}) is None


def test_less_than_one_part_goes_in_one_put() -> None:
    assert fits_one_put(0, PART) and fits_one_put(PART - 1, PART)
    assert not fits_one_put(PART, PART)
