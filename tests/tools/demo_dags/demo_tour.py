"""``make demo``'s second DAG: every other operator, on the data the first DAG exported.

Run by :mod:`tests.tools.demo` with ``airflow dags test s3stream_demo_tour`` (this folder as the dags folder);
not an example to copy (those are in ``dags_examples/``). The demo passes, in the environment:
``S3STREAM_BUCKET``, ``S3STREAM_DEMO_MANIFEST`` (the CSV export's ``_manifest.json``),
``S3STREAM_DEMO_LOAD_TABLE`` (an empty copy of the exported table), ``S3STREAM_DEMO_UPLOAD_FILE``
(a generated local file). Tasks, each one operator:

* ``load_back``: :class:`S3ToPostgresStreamOperator` loads the export back through its manifest;
* ``package``: :class:`S3ToBagItZipOperator` packages ``samples/sample-bag/`` into
  ``archives/sample-bag.zip`` (what the verify DAG checks by default);
* ``tamper``: a copy of it with one payload byte changed, ``archives/sample-bag-tampered.zip``
  (the demo then verifies both through the example verify DAG, ``s3stream_verify_archive``);
* ``upload``: :class:`S3MultipartUploadOperator` uploads the generated file in parts.
"""

from __future__ import annotations

import os
import struct
import zipfile

import pendulum
from airflow.sdk import dag, task

from airflow_s3stream.operators import (
    S3MultipartUploadOperator,
    S3ToBagItZipOperator,
    S3ToPostgresStreamOperator,
)

BUCKET = os.environ.get("S3STREAM_BUCKET", "s3stream")
SAMPLE_PREFIX = "samples/sample-bag/"
BAG_KEY = "archives/sample-bag.zip"
TAMPERED_KEY = "archives/sample-bag-tampered.zip"
TAMPERED_MEMBER = "images/noise.bin"  # relative to the bag's data/ directory
MiB = 1024 * 1024
LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # ZIP local file header, 30 bytes


@dag(dag_id="s3stream_demo_tour", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
def s3stream_demo_tour() -> None:
    S3ToPostgresStreamOperator(
        task_id="load_back",
        s3_bucket=BUCKET,
        s3_key=os.environ.get("S3STREAM_DEMO_MANIFEST", "exports/orders/2023-12-31/csv/_manifest.json"),
        table=os.environ.get("S3STREAM_DEMO_LOAD_TABLE", "public.demo_orders_loaded"),
        mode="replace",
    )
    package = S3ToBagItZipOperator(
        task_id="package",
        source_bucket=BUCKET,
        source_prefix=SAMPLE_PREFIX,
        s3_bucket=BUCKET,
        s3_key=BAG_KEY,
        checksums=["sha256"],
        bag_info={"Source-Organization": "make demo"},
    )

    @task
    def tamper() -> str:
        """Copy the bag with one byte of one payload member changed (its CRC-32 and digest no longer match)."""
        import io

        from airflow_s3stream.hooks.s3 import S3StreamHook

        client = S3StreamHook().get_s3_client()
        body = bytearray(client.get_object(Bucket=BUCKET, Key=BAG_KEY)["Body"].read())
        archive = zipfile.ZipFile(io.BytesIO(bytes(body)))
        info = next(i for i in archive.infolist() if i.filename.endswith("/data/" + TAMPERED_MEMBER))
        fields = LOCAL_HEADER.unpack_from(body, info.header_offset)
        data_start = info.header_offset + LOCAL_HEADER.size + fields[-2] + fields[-1]
        body[data_start + info.compress_size // 2] ^= 0xFF
        client.put_object(Bucket=BUCKET, Key=TAMPERED_KEY, Body=bytes(body))
        return info.filename

    package >> tamper()

    S3MultipartUploadOperator(
        task_id="upload",
        source=os.environ.get("S3STREAM_DEMO_UPLOAD_FILE", "/dev/null"),
        s3_bucket=BUCKET,
        s3_key="uploads/demo-upload.bin",
        part_size=8 * MiB,
        max_concurrency=4,
        resume=True,
    )


s3stream_demo_tour()
