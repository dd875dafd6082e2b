"""The decisions of a resumable upload, without a server: the lease, the checksum a resumed upload
keeps, whether a vanished upload had every part stored, and what a failed try leaves behind."""

from __future__ import annotations

import pytest

from airflow_s3stream.errors import (
    ChecksumMismatchError,
    ConcurrentUploadError,
    SourceChangedError,
    TransientError,
    UploadInterruptedError,
)
from airflow_s3stream.s3.multipart.part_record import PartRecord
from airflow_s3stream.units import MiB
from airflow_s3stream.upload.lease import LEASE_WAIT_GRACE, Lease, LeaseWait, Verdict
from airflow_s3stream.upload.plan import PartPlan
from airflow_s3stream.upload.resume import (
    AfterFailure,
    ResumeState,
    SourceFingerprint,
    after_failure,
    decide_resume,
    describes,
    resumable_checksum,
)

PART = 5 * MiB
SOURCE = SourceFingerprint("file", "/data/x.bin", 2 * PART, "1700000000000000000", "00ff")
ME, OTHER = "host-b/2/bbbb", "host-a/1/aaaa"


def state(algorithm: str = "CRC32C", checksum_type: str = "COMPOSITE", **kw: object) -> ResumeState:
    parts = {n: PartRecord(n, PART, f'"e{n}"', f"c{n}==", f"m{n}") for n in (1, 2)}
    return ResumeState("b", "k", "u1", SOURCE, PART, algorithm, checksum_type, parts, **kw)  # type: ignore[arg-type]


# -- the lease ----------------------------------------------------------------------------------


def test_a_live_owner_holds_the_state_within_its_lease_only() -> None:
    lease = Lease(OTHER, 60.0)
    assert lease.held_against(ME, age=59.0)
    assert not lease.held_against(ME, age=60.0)  # gone: its lease ran out without a write
    assert not lease.held_against(OTHER, age=1.0)  # a try is never held off by itself
    assert not Lease("", 60.0).held_against(ME, age=1.0)  # released on purpose: free at once


def test_the_heartbeat_is_a_quarter_lease_and_the_poll_is_bounded() -> None:
    assert Lease(ME, 60.0).heartbeat == 15.0
    assert Lease(ME, 0.0).heartbeat is None
    assert Lease(OTHER, 60.0).poll == 2.0
    assert Lease(OTHER, 1.0).poll == 0.2
    assert Lease(OTHER, 16.0).poll == 1.0


def test_a_waiter_sleeps_a_poll_or_until_the_lease_ends() -> None:
    lease = Lease(OTHER, 60.0)
    assert lease.sleep_before_next_read(age=10.0) == 2.0
    assert lease.sleep_before_next_read(age=59.5) == 0.5
    assert lease.sleep_before_next_read(age=70.0) == 0.1


def test_the_wait_is_bounded_by_the_rest_of_the_lease() -> None:
    wait = LeaseWait(Lease(OTHER, 60.0), age=20.0)
    assert wait.longest_needed == 40.0
    assert wait.limit == 40.0 + 2 * 2.0 + LEASE_WAIT_GRACE


def test_a_killed_owner_is_waited_out_and_its_upload_taken_over() -> None:
    wait = LeaseWait(Lease(OTHER, 60.0), age=10.0)
    verdicts = [
        wait.judge(Lease(OTHER, 60.0), me=ME, age=age, rewritten=False, elapsed=age - 10.0) for age in (30, 59, 61)
    ]
    assert verdicts == [Verdict.WAIT, Verdict.WAIT, Verdict.TAKE_OVER]


def test_a_live_owner_that_writes_again_is_refused() -> None:
    wait = LeaseWait(Lease(OTHER, 60.0), age=10.0)
    assert wait.judge(Lease(OTHER, 60.0), me=ME, age=0.5, rewritten=True, elapsed=5.0) is Verdict.REFUSE


def test_a_state_deleted_during_the_wait_means_its_owner_is_alive() -> None:
    wait = LeaseWait(Lease(OTHER, 60.0), age=10.0)
    assert wait.judge(None, me=ME, age=10.0, rewritten=False, elapsed=1.0, deleted=True) is Verdict.REFUSE


def test_a_state_released_or_unreadable_during_the_wait_is_taken_over() -> None:
    wait = LeaseWait(Lease(OTHER, 60.0), age=10.0)
    assert wait.judge(Lease("", 60.0), me=ME, age=0.5, rewritten=True, elapsed=1.0) is Verdict.TAKE_OVER
    assert wait.judge(None, me=ME, age=0.5, rewritten=True, elapsed=1.0) is Verdict.TAKE_OVER


def test_a_wait_past_its_limit_is_refused_when_the_server_clock_stands_still() -> None:
    wait = LeaseWait(Lease(OTHER, 60.0), age=10.0)
    assert wait.judge(Lease(OTHER, 60.0), me=ME, age=10.0, rewritten=False, elapsed=wait.limit - 1) is Verdict.WAIT
    assert wait.judge(Lease(OTHER, 60.0), me=ME, age=10.0, rewritten=False, elapsed=wait.limit + 1) is Verdict.REFUSE


def test_a_resume_state_names_its_holder() -> None:
    held = state(owner=OTHER, lease=60.0)
    assert held.holder == Lease(OTHER, 60.0)
    assert held.held_by_other(ME, 5.0) and not held.held_by_other(OTHER, 5.0)


# -- the checksum a resumed upload keeps --------------------------------------------------------


def unasked() -> str:
    raise AssertionError("the current algorithm must not be asked for (it may probe the endpoint)")


@pytest.mark.parametrize("recorded", ["CRC32C", "MD5"])
def test_auto_continues_with_the_algorithm_the_earlier_try_chose(recorded: str) -> None:
    expected = (recorded, "COMPOSITE")
    assert resumable_checksum(state(recorded), auto=True, current=unasked, checksum_type="COMPOSITE") == expected


def test_an_explicit_algorithm_is_the_one_this_try_uses() -> None:
    chosen = resumable_checksum(state("CRC32C"), auto=False, current=lambda: "CRC64NVME", checksum_type="FULL_OBJECT")
    assert chosen == ("CRC64NVME", "FULL_OBJECT")


def test_an_md5_upload_is_composite_whatever_the_configured_type() -> None:
    chosen = resumable_checksum(state("CRC32C"), auto=False, current=lambda: "MD5", checksum_type="FULL_OBJECT")
    assert chosen == ("MD5", "COMPOSITE")


# -- a vanished upload: did the earlier try store every part? --------------------------------------


def described(st: ResumeState, **kw: object) -> list[PartRecord] | None:
    args: dict[str, object] = {"bucket": "b", "key": "k", "source": SOURCE, "checksum": lambda: ("CRC32C", "COMPOSITE")}
    args.update(kw)
    return describes(st, PartPlan.of(2 * PART, PART), **args)  # type: ignore[arg-type]


def test_a_state_of_this_upload_with_every_part_gives_their_records() -> None:
    assert [r.number for r in described(state()) or []] == [1, 2]


def test_a_state_of_another_destination_or_source_is_not_this_upload() -> None:
    changed = SourceFingerprint("file", "/data/x.bin", 2 * PART, "1700000000000000001", "00ff")
    assert described(state(), key="other", checksum=unasked) is None
    assert described(state(), source=changed, checksum=unasked) is None


def test_a_state_with_other_checksum_settings_or_a_part_missing_is_not_complete() -> None:
    assert described(state(), checksum=lambda: ("MD5", "COMPOSITE")) is None
    partial = state()
    del partial.parts[2]
    assert described(partial) is None


# -- resume: only the missing parts are sent ----------------------------------------------------


def test_resume_sends_only_the_parts_it_cannot_trust() -> None:
    listed = {n: {"PartNumber": n, "ETag": f'"e{n}"', "Size": PART} for n in (1, 2)}
    listed[2]["ETag"] = '"replaced"'
    decision = decide_resume(
        state(),
        bucket="b",
        key="k",
        source=SOURCE,
        part_size=PART,
        checksum_algorithm="CRC32C",
        checksum_type="COMPOSITE",
        listed=listed,
    )
    assert decision.resume
    assert [p.number for p in PartPlan.of(2 * PART, PART).missing(decision.trusted)] == [2]


# -- what a failed try leaves behind --------------------------------------------------------------


def test_a_transient_failure_keeps_the_upload_for_the_next_try() -> None:
    for exc in (TransientError("5xx"), UploadInterruptedError("killed")):
        assert after_failure(exc, resumable=True, taken_over=False, keep_for_retry=True) is AfterFailure.KEEP


def test_a_failure_retrying_cannot_fix_aborts_the_upload() -> None:
    for exc in (ChecksumMismatchError("crc"), SourceChangedError("edited"), RuntimeError("bug")):
        assert after_failure(exc, resumable=True, taken_over=False, keep_for_retry=True) is AfterFailure.ABORT


def test_a_last_try_or_an_upload_without_resume_aborts_even_a_transient_failure() -> None:
    transient = TransientError("5xx")
    assert after_failure(transient, resumable=True, taken_over=False, keep_for_retry=False) is AfterFailure.ABORT
    assert after_failure(transient, resumable=False, taken_over=False, keep_for_retry=True) is AfterFailure.ABORT


def test_an_upload_another_try_took_over_is_left_alone() -> None:
    assert after_failure(RuntimeError("x"), resumable=True, taken_over=True, keep_for_retry=True) is AfterFailure.LEAVE
    busy = ConcurrentUploadError("held")
    assert after_failure(busy, resumable=True, taken_over=False, keep_for_retry=False) is AfterFailure.LEAVE
