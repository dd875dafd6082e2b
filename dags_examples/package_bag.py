"""Package an S3 prefix into a zipped BagIt bag in S3, verify it, and write the report beside it.

``schedule=None``: trigger it from the UI (a form) or the CLI. Three tasks:

1. ``package``: :class:`~airflow_s3stream.operators.S3ToBagItZipOperator` streams every object
   under ``source_prefix`` once into a ZIP64 stream (``bagit.txt``, ``data/...``, ``bag-info.txt``
   with Payload-Oxum and Bagging-Date, manifests, tagmanifests), computing the manifest digests on
   the same bytes, through a staged multipart upload: the bag appears at ``bag_key`` only once it
   is complete, and a failed run leaves any earlier bag there untouched. No local disk.
2. ``verify``: :class:`~airflow_s3stream.operators.S3ZipVerifyOperator` re-reads the published bag
   with ranged GETs and checks every CRC-32, manifest digest, Payload-Oxum and completeness.
3. the report goes to ``<bag_key>.verification.json``; both results are the tasks' XComs.

Runs out of the box: by default the prefix is ``samples/sample-bag/`` in ``S3STREAM_BUCKET``;
when that prefix is empty, ``seed_sample`` first writes a few sample files there (a README, a CSV,
a binary, a file with a unicode name, an empty file), so a fresh stack has something to package.

    airflow dags trigger s3stream_package_bag \
        --conf '{"source_prefix": "incoming/acc-42/", "bag_key": "bags/acc-42.zip"}'

Connection: ``aws_default`` (``endpoint_url`` in its extra for an S3-compatible server).
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from airflow_s3stream.operators import S3ToBagItZipOperator, S3ZipVerifyOperator

DEFAULT_BUCKET = os.environ.get("S3STREAM_BUCKET", "s3stream")
SAMPLE_PREFIX = "samples/sample-bag/"
SAMPLE_FILES = {
    "README.txt": b"A sample payload packaged by the s3stream_package_bag example DAG.\n",
    "tables/orders.csv": b"id,amount\n" + b"".join(b"%d,%d.%02d\n" % (i, i * 7, i % 100) for i in range(1, 2001)),
    "images/noise.bin": bytes((i * 7919) % 251 for i in range(200_000)),
    "notes/r\u00e9sum\u00e9 \u00e9t\u00e9.txt": "\u00e9t\u00e9 2024\n".encode(),
    "empty.txt": b"",
}
REPORT_SUFFIX = ".verification.json"


@dag(
    dag_id="s3stream_package_bag",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # two runs packaging the same bag_key at once would race to publish it
    tags=["s3stream", "bagit", "package"],
    doc_md=__doc__,
    params={
        "bucket": Param(
            DEFAULT_BUCKET,
            type="string",
            minLength=3,
            maxLength=63,
            title="Bucket",
            description="Bucket that holds the source objects; the bag is written to it too.",
        ),
        "source_prefix": Param(
            SAMPLE_PREFIX,
            type="string",
            title="Source prefix",
            description="Every object under this prefix becomes data/<path relative to the prefix>.",
        ),
        "bag_key": Param(
            "bags/sample-bag.zip",
            type="string",
            minLength=1,
            title="Bag key",
            description="Where the zipped bag is written (same bucket); the bag's directory is its file name.",
        ),
        "source_organization": Param(
            "Example Archive", type="string", title="Source-Organization", description="A bag-info.txt field."
        ),
    },
)
def s3stream_package_bag() -> None:
    @task
    def seed_sample(params: dict[str, Any] | None = None) -> int:
        """Write the sample files when the default prefix is used and empty (so the DAG runs out of the box)."""
        from airflow_s3stream.hooks.s3 import S3StreamHook

        assert params is not None
        if params["source_prefix"] != SAMPLE_PREFIX:
            return 0
        client = S3StreamHook().get_s3_client()
        listed = client.list_objects_v2(Bucket=params["bucket"], Prefix=SAMPLE_PREFIX, MaxKeys=1)
        if listed.get("KeyCount", 0):
            return 0
        for name, body in SAMPLE_FILES.items():
            client.put_object(Bucket=params["bucket"], Key=SAMPLE_PREFIX + name, Body=body)
        return len(SAMPLE_FILES)

    package = S3ToBagItZipOperator(
        task_id="package",
        source_bucket="{{ params.bucket }}",
        source_prefix="{{ params.source_prefix }}",
        s3_bucket="{{ params.bucket }}",
        s3_key="{{ params.bag_key }}",
        checksums=["sha256", "sha512"],
        bag_info={"Source-Organization": "{{ params.source_organization }}", "External-Identifier": "{{ run_id }}"},
    )
    verify = S3ZipVerifyOperator(
        task_id="verify",
        s3_bucket="{{ params.bucket }}",
        s3_key="{{ params.bag_key }}",
        mode="bagit",
        report_key=f"{{{{ params.bag_key }}}}{REPORT_SUFFIX}",
    )
    seed_sample() >> package >> verify


s3stream_package_bag()
