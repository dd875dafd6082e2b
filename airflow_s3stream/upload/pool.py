"""The bounded part pool: sends the parts of one upload from at most ``workers`` threads.

Parts start in order. The first failure, or a stop from outside (a task being killed), keeps the
parts not yet started from starting; the pool then waits for the parts in flight and raises the
first real failure (a part that was merely not started raises :class:`UploadInterruptedError`
only when nothing else failed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from airflow_s3stream.errors import UploadInterruptedError
from airflow_s3stream.s3.multipart.config import PartRange
from airflow_s3stream.s3.multipart.part_record import PartRecord

__all__ = ["PartPool"]

THREAD_NAME_PREFIX = "s3stream-part"


class PartPool:
    """Runs ``send`` for each part in at most ``workers`` threads, for the upload to ``uri``.

    :param stop: once set, no further part starts (the running call raises
        :class:`UploadInterruptedError`).
    """

    def __init__(self, workers: int, uri: str, stop: threading.Event | None = None) -> None:
        if workers < 1:
            raise ValueError(f"a part pool needs at least one worker, got {workers}")
        self.workers = workers
        self.uri = uri
        self.stop = stop or threading.Event()

    def run(
        self,
        parts: Sequence[PartRange],
        send: Callable[[PartRange], PartRecord],
        *,
        before: Callable[[], None] | None = None,
        after: Callable[[PartRecord], None] | None = None,
    ) -> dict[int, PartRecord]:
        """Send every part; return their records by part number.

        ``before`` runs before each part is sent (it may raise to send nothing more), ``after``
        with each part's record once it is stored. Raises the first failure of any part.
        """
        failed = threading.Event()

        def job(part: PartRange) -> PartRecord:
            if self.stop.is_set() or failed.is_set():
                raise UploadInterruptedError(f"upload of {self.uri} stopped before part {part.number}")
            if before is not None:
                before()
            try:
                record = send(part)
            except BaseException:
                failed.set()
                raise
            if after is not None:
                after(record)
            return record

        with ThreadPoolExecutor(self.workers, thread_name_prefix=THREAD_NAME_PREFIX) as pool:
            futures = [pool.submit(job, part) for part in parts]
            wait(futures, return_when=FIRST_EXCEPTION)
            if any(f.done() and f.exception() for f in futures):
                failed.set()  # parts not yet started are skipped
            wait(futures)
        errors = [e for e in (f.exception() for f in futures) if e is not None]
        real = [e for e in errors if not isinstance(e, UploadInterruptedError)]
        if errors:
            raise (real or errors)[0]
        records = [f.result() for f in futures]
        return {record.number: record for record in records}
