"""Upload a large file to S3 as a parallel, checksummed multipart upload that survives a lost worker.

``S3MultipartUploadOperator`` sends parts in parallel in bounded memory, each with an additional
checksum that S3 checks, and compares the whole-object checksum after completion. Resume is on:
if the worker dies (OOM kill, node drained, spot instance reclaimed) the next *try* of the task,
which ``retries`` makes Airflow schedule, finds the in-progress upload for the same source and
destination and sends only the missing parts. A source that changed in between is detected and
the upload starts fresh; nothing half-written is ever published.

Tasks:

* ``upload``: the multipart upload, ``retries=3`` with exponential back-off.
* ``record_upload``: what to do with the XCom result. It checks the stored object against the
  result (size) and writes a small JSON sidecar ``<key>.upload.json`` with the checksum, ETag,
  part count, throughput and how many parts were resumed, for downstream consumers and audits.

Params: ``source`` (a local path or a URI smart_open reads: ``file://``, ``https://``,
``s3://other-bucket/key``...), ``bucket``, ``key``. The default source is this DAG file, so a bare
``airflow dags test s3stream_upload`` has something to upload. Connection: ``aws_default``.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from airflow_s3stream.operators import S3MultipartUploadOperator

DEFAULT_BUCKET = os.environ.get("S3STREAM_BUCKET", "s3stream")
SIDECAR_SUFFIX = ".upload.json"
MiB = 1024 * 1024


@dag(
    dag_id="s3stream_upload",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # two runs uploading one key would each resume the other's upload
    tags=["s3stream", "upload"],
    doc_md=__doc__,
    params={
        "source": Param(
            os.path.abspath(__file__),
            type="string",
            minLength=1,
            title="Source",
            description="Local path (on the worker) or URI (file://, https://, s3://...) of the file to upload.",
        ),
        "bucket": Param(DEFAULT_BUCKET, type="string", minLength=3, title="Bucket", description="Destination bucket."),
        "key": Param(
            "uploads/upload_resumable.py",
            type="string",
            minLength=1,
            title="Key",
            description="Destination key; a retried run resumes the upload of this key.",
        ),
    },
)
def s3stream_upload() -> None:
    upload = S3MultipartUploadOperator(
        task_id="upload",
        source="{{ params.source }}",
        s3_bucket="{{ params.bucket }}",
        s3_key="{{ params.key }}",
        part_size=16 * MiB,
        max_concurrency=8,
        resume=True,
        retries=3,
        retry_delay=timedelta(seconds=30),
        retry_exponential_backoff=True,
    )

    @task
    def record_upload(result: dict[str, Any]) -> dict[str, Any]:
        """Check the stored size against the result and write the ``.upload.json`` sidecar."""
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_s3stream.hooks.s3 import S3StreamHook

        client = S3StreamHook().get_s3_client()
        stored = client.head_object(Bucket=result["bucket"], Key=result["key"])
        if stored["ContentLength"] != result["size"]:
            raise AirflowFailException(
                f"s3://{result['bucket']}/{result['key']}: stored {stored['ContentLength']} bytes, "
                f"uploaded {result['size']}"
            )
        sidecar = {
            name: result.get(name)
            for name in (
                "size",
                "parts",
                "part_size",
                "checksum_algorithm",
                "checksum_type",
                "checksum",
                "etag",
                "mb_per_s",
                "resumed_parts",
            )
        }
        sidecar_key = result["key"] + SIDECAR_SUFFIX
        client.put_object(Bucket=result["bucket"], Key=sidecar_key, Body=json.dumps(sidecar, indent=2).encode())
        print(
            f"s3://{result['bucket']}/{result['key']}: {result['size']} bytes in {result['parts']} parts "
            f"({result.get('resumed_parts', 0)} resumed) at {result.get('mb_per_s')} MB/s"
        )
        return {"sidecar_key": sidecar_key, **sidecar}

    record_upload(upload.output)  # type: ignore[arg-type]  # an XComArg: the upload result, at run time


s3stream_upload()
