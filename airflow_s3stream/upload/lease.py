"""The resume state's lease: who holds an upload, and what a try that finds it held must do. Pure.

A try that holds the resume state rewrites it at least every quarter of its lease (the
heartbeat). Another try that finds the state held, written less than a lease ago, may not resume,
abort or overwrite it: the holder may be alive. But the holder may also be a worker that was
killed a second ago (a retry can start at once, whatever Airflow's ``retry_delay``). So the
finder watches the state for at most the rest of the lease (:class:`LeaseWait`): a holder that
writes again is alive, and the finder is refused; a holder that lets its lease run out is gone,
and the finder takes the upload over. A state released on purpose (no owner) is free at once.

Ages are the server's clock (its ``Date`` against the state's ``Last-Modified``), so the workers'
clocks do not matter; the wait is still bounded by the local monotonic clock, in case the server's
clock does not advance.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["LEASE_WAIT_GRACE", "Lease", "LeaseWait", "Verdict"]

LEASE_WAIT_GRACE = 5.0  # seconds a wait may run past the lease's end before the holder counts as live
POLL_MIN, POLL_MAX = 0.2, 2.0  # seconds between two reads of a held state, whatever the lease
SLEEP_MIN = 0.1  # seconds: the shortest sleep between two reads


class Verdict(enum.Enum):
    """What a try does with a resume state held by another try."""

    WAIT = "wait"  # the holder may be gone: read the state again after a sleep
    TAKE_OVER = "take over"  # the holder is gone, or released the state: this try continues the upload
    REFUSE = "refuse"  # the holder is alive (it wrote again, or deleted the state): leave everything alone


@dataclass(frozen=True)
class Lease:
    """The holder of a resume state: its ``owner`` token (``''``: released) and its lease in ``seconds``."""

    owner: str
    seconds: float

    def held_against(self, me: str, age: float) -> bool:
        """True when a try other than ``me`` holds the state and wrote it ``age`` seconds ago, within
        the lease: that try may be alive, so ``me`` must not resume, abort or overwrite its upload."""
        return bool(self.owner) and self.owner != me and age < self.seconds

    @property
    def heartbeat(self) -> float | None:
        """Seconds between two writes of a live holder (a quarter lease); ``None`` without a lease."""
        return self.seconds / 4 if self.seconds > 0 else None

    @property
    def poll(self) -> float:
        """Seconds between two reads by a try that waits for this lease: 1/16 of it, within 0.2..2 s."""
        return min(POLL_MAX, max(POLL_MIN, self.seconds / 16))

    def sleep_before_next_read(self, age: float) -> float:
        """Seconds to sleep before reading the state again, when it was last written ``age`` s ago:
        a poll, or less when the lease ends sooner (never under 0.1 s)."""
        return min(self.poll, max(SLEEP_MIN, self.seconds - age))


@dataclass(frozen=True)
class LeaseWait:
    """One wait for ``held``, the lease of a state first read ``age`` seconds after its last write.

    :attr:`limit` bounds the wait in seconds (local monotonic clock): the rest of the lease, two
    polls and :data:`LEASE_WAIT_GRACE`. Past it the holder counts as live, and the waiter is refused.
    """

    held: Lease
    age: float

    @property
    def limit(self) -> float:
        return self.held.seconds - self.age + 2 * self.held.poll + LEASE_WAIT_GRACE

    @property
    def longest_needed(self) -> float:
        """Seconds until the lease runs out by the server's clock (what the waiter expects to wait)."""
        return self.held.seconds - self.age

    def judge(
        self, seen: Lease | None, *, me: str, age: float, rewritten: bool, elapsed: float, deleted: bool = False
    ) -> Verdict:
        """The verdict on a read of the state during the wait.

        :param seen: the lease the state names now; ``None`` when it can no longer be parsed (it
            can then be replaced: take it over).
        :param deleted: the state is gone. Only a live try deletes it (the holder finished or gave
            up meanwhile): refused.
        :param age: seconds since the state was last written, by the server's clock.
        :param rewritten: whether it was written again since the previous read.
        :param elapsed: seconds this wait has lasted, by the local clock.
        """
        if deleted:
            return Verdict.REFUSE
        if seen is None:
            return Verdict.TAKE_OVER
        if rewritten and seen.held_against(me, age):
            return Verdict.REFUSE  # the holder (or another try) wrote it: alive
        if not seen.held_against(me, age):
            return Verdict.TAKE_OVER  # the lease ran out without a write, or the state was released
        if elapsed > self.limit:
            return Verdict.REFUSE  # the server's clock does not advance: do not wait forever
        return Verdict.WAIT
