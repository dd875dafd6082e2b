"""How many times one logical S3 request is sent under injected 503s, per retry configuration.

    .venv/bin/python -m benchmarks.bench_retry_sends

The measurement behind the package's one retry layer (``airflow_s3stream/s3/client.py``). A
recording proxy (``tests/support/s3proxy.py``) sits in front of a moto server and answers 503
``SlowDown`` to the request under test. For each configuration of botocore's own retries and the
package's :class:`~airflow_s3stream.s3.retry.RetryPolicy` it counts the sends that reached the
proxy for one logical UploadPart and one logical CompleteMultipartUpload:

* a storm: every send answered 503 (how many sends before the error, and how long);
* a burst: the first 3 sends answered 503, then the server answers (does the call succeed).

Production runs the last row: botocore's retries off, the policy's 6 attempts.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

from airflow_s3stream.s3.retry import RetryPolicy, s3_call
from tests.support import devservices
from tests.support.s3proxy import S3Proxy, S3Request, Status

BUCKET = "bench-retry-sends"

CONFIGURATIONS: list[tuple[str, dict[str, Any] | None, int]] = [
    # (label, botocore retries (None: botocore's default, legacy mode), RetryPolicy.max_attempts)
    ("botocore default (legacy) + policy 6 (before)", None, 6),
    ("botocore standard + policy 6", {"mode": "standard"}, 6),
    ("botocore adaptive + policy 6", {"mode": "adaptive"}, 6),
    ("botocore standard only (policy 1)", {"mode": "standard"}, 1),
    ("botocore off + policy 6 (the package)", {"total_max_attempts": 1, "mode": "standard"}, 6),
]


def _client(proxy: S3Proxy, s3: devservices.S3Service, retries: dict[str, Any] | None) -> Any:
    via_proxy = dataclasses.replace(s3, endpoint_url=proxy.endpoint_url, _handle=None)
    client = via_proxy.client(**({"retries": retries} if retries is not None else {"retries": {"mode": "legacy"}}))
    return client


def _slow_down(op: str, request: S3Request) -> Status | None:
    return Status(503, "SlowDown") if request.op == op else None


def _logical_requests(client: Any, policy: RetryPolicy) -> dict[str, Any]:
    """Run one UploadPart and one CompleteMultipartUpload through the policy; what each did."""
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key="k")["UploadId"]
    outcome: dict[str, Any] = {}
    for op, call in (
        (
            "UploadPart",
            lambda: client.upload_part(Bucket=BUCKET, Key="k", UploadId=upload_id, PartNumber=1, Body=b"x" * 1024),
        ),
        (
            "CompleteMultipartUpload",
            lambda: client.complete_multipart_upload(
                Bucket=BUCKET,
                Key="k",
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": outcome.get("etag", '"x"')}]},
            ),
        ),
    ):
        started = time.monotonic()
        try:
            response = s3_call(policy, call, f"{op} s3://{BUCKET}/k")
            outcome[op] = ("ok", time.monotonic() - started)
            if op == "UploadPart":
                outcome["etag"] = response["ETag"]
        except Exception as exc:
            outcome[op] = (type(exc).__name__, time.monotonic() - started)
    return outcome


def measure(
    s3: devservices.S3Service, retries: dict[str, Any] | None, attempts: int, burst: int | None
) -> dict[str, Any]:
    """Sends per logical request with every send (``burst`` None) or the first ``burst`` answered 503."""
    policy = RetryPolicy(max_attempts=attempts)
    with S3Proxy(s3.endpoint_url) as proxy:
        client = _client(proxy, s3, retries)
        for op in ("UploadPart", "CompleteMultipartUpload"):
            proxy.add_fault(functools.partial(_slow_down, op), times=burst)
        outcome = _logical_requests(client, policy)
        return {op: (proxy.count(op), *outcome[op]) for op in ("UploadPart", "CompleteMultipartUpload")}


def main() -> None:
    s3 = devservices.start_s3()
    try:
        s3.client().create_bucket(Bucket=BUCKET)
        rows = []
        for label, retries, attempts in CONFIGURATIONS:
            storm = measure(s3, retries, attempts, None)
            burst = measure(s3, retries, attempts, 3)
            rows.append((label, storm, burst))
    finally:
        s3.stop()
    print("Sends per logical request under injected 503 SlowDown (recording proxy in front of moto); one run")
    header = (
        f"{'configuration':<46} {'storm: UploadPart sends':>23} {'Complete sends':>14} {'give-up s':>9}"
        f" {'3x503 burst: UploadPart':>23} {'Complete':>9}"
    )
    print(header)
    print("-" * len(header))
    for label, storm, burst in rows:
        up_sends, _, up_seconds = storm["UploadPart"]
        co_sends, _, co_seconds = storm["CompleteMultipartUpload"]
        print(
            f"{label:<46} {up_sends:>23} {co_sends:>14} {up_seconds + co_seconds:>9.1f}"
            f" {burst['UploadPart'][1]:>23} {burst['CompleteMultipartUpload'][1]:>9}"
        )
    print("storm: every send answered 503 (the error raised is a TransientError naming the object);")
    print("burst: the first 3 sends of each request answered 503, then the server answered.")


if __name__ == "__main__":
    main()
