"""A failed task's log shows the verdict once, first, standing alone.

The operator's error is rendered by Airflow's own structlog processors, as the task runner's
``log.exception("Task failed with exception")`` renders it: JSON (the task log file the UI reads,
one entry per exception of the chain) and the console. Before, a missing key gave three chained
exceptions (``AirflowFailException`` <- ``SourceError`` <- botocore's ``ClientError``), each with its
frames and each repeating the same message.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from airflow.sdk._shared.logging.structlog import structlog_processors
from airflow.sdk.exceptions import AirflowFailException

from airflow_s3stream.errors import SourceError, TransientError
from airflow_s3stream.operators import S3ZipVerifyOperator
from tests.support.s3proxy import S3Proxy, S3Request, Status


def _task_log(error: BaseException, *, json_output: bool) -> str:
    """What Airflow's task runner logs for ``error``, rendered by Airflow's processors."""
    shared, renderer, _ = structlog_processors(json_output=json_output, colors=False)
    out = io.StringIO()
    log = structlog.wrap_logger(structlog.PrintLogger(out), processors=[*shared, renderer])
    log.error("Task failed with exception", exc_info=error)  # log.exception() in the handler, as the runner does
    return out.getvalue()


def _failure(run: Callable[[], object]) -> BaseException:
    with pytest.raises(BaseException) as caught:
        run()
    return caught.value


def _assert_the_verdict_stands_alone(error: BaseException, verdict: str) -> None:
    (record,) = [json.loads(line) for line in _task_log(error, json_output=True).splitlines()]
    (only,) = record["exception"]  # one exception: no chained ones repeating the message
    assert only["exc_value"].startswith(verdict)
    assert not [f for f in only["frames"] if "botocore" in f["filename"]]  # the ClientError's frames are gone
    console = _task_log(error, json_output=False)
    lines = [line for line in console.splitlines() if line.strip(" ^~")]  # Python's carets are no lines said
    assert sum(verdict in line for line in lines) == 1, console
    assert len(lines) == len(set(lines)), console  # no line said twice
    assert "The above exception was the direct cause" not in console
    assert "During handling of the above exception" not in console


def test_a_missing_key_fails_the_task_with_one_standing_verdict_line(bucket: str) -> None:
    verify = S3ZipVerifyOperator(task_id="verify", s3_bucket=bucket, s3_key="in/missing.zip")
    error = _failure(lambda: verify.execute({}))
    assert isinstance(error, AirflowFailException)
    _assert_the_verdict_stands_alone(error, f"s3://{bucket}/in/missing.zip")
    assert "no such key" in str(error)
    assert isinstance(error.s3stream_cause, SourceError)  # type: ignore[attr-defined]  # kept for code that wants it


def test_a_store_that_stays_unavailable_fails_the_try_with_one_standing_verdict_line(
    bucket: str, s3_client: Any, proxy_aws_conn: Callable[..., str], s3_proxy: S3Proxy
) -> None:
    s3_client.put_object(Bucket=bucket, Key="in/a.zip", Body=b"PK\x05\x06" + bytes(18))

    def slow_down(r: S3Request) -> Status | None:
        return Status(503, "SlowDown") if r.op in {"GetObject", "HeadObject"} else None

    s3_proxy.add_fault(slow_down)
    verify = S3ZipVerifyOperator(
        task_id="verify", s3_bucket=bucket, s3_key="in/a.zip", aws_conn_id=proxy_aws_conn(), max_attempts=2
    )
    error = _failure(lambda: verify.execute({}))
    assert isinstance(error, TransientError)  # Airflow retries the task
    _assert_the_verdict_stands_alone(error, f"s3://{bucket}/in/a.zip")
