"""Verify one ZIP or zipped BagIt bag in S3, triggered from the UI with a form.

``schedule=None``: the DAG runs when someone presses *Trigger* in the Airflow UI. Its ``params``
are ``Param`` objects with JSON-schema types, enums and descriptions, so the trigger form shows
real fields (a text box for the key, a drop-down for the mode, a switch for the report):

* ``bucket`` / ``key``: the archive, ``s3://bucket/key``.
* ``mode``: ``auto`` (BagIt when a ``bagit.txt`` is found), ``zip`` (structure + CRC-32 of every
  member) or ``bagit`` (also every manifest digest, Payload-Oxum and completeness).
* ``write_report``: also store the JSON report beside the archive as ``<key>.verification.json``.
* ``extract_member``: optionally copy one member of the archive, once it verified, to
  ``<key>.extracted/<member>``; streamed, never the whole archive.

The archive is read with HTTP range requests in one sequential pass; the worker never holds it.
The report (valid, members checked, errors, warnings, requests...) is the ``verify`` task's XCom
and, with ``write_report``, an object in S3. An invalid archive fails the ``verify`` task.

Trigger from the CLI with the same form values::

    airflow dags trigger s3stream_verify_archive --conf '{"key": "bags/b1.zip", "mode": "bagit"}'

Connection: ``aws_default`` (``endpoint_url`` in its extra for an S3-compatible server). The default
bucket comes from ``S3STREAM_BUCKET`` (``s3stream`` in the docker stack).
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from airflow_s3stream.operators import S3ZipVerifyOperator

DEFAULT_BUCKET = os.environ.get("S3STREAM_BUCKET", "s3stream")
REPORT_SUFFIX = ".verification.json"
EXTRACT_SUFFIX = ".extracted/"


@dag(
    dag_id="s3stream_verify_archive",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    tags=["s3stream", "verify"],
    doc_md=__doc__,
    params={
        "bucket": Param(
            DEFAULT_BUCKET,
            type="string",
            minLength=3,
            maxLength=63,
            title="Bucket",
            description="S3 bucket that holds the archive.",
        ),
        "key": Param(
            "archives/sample-bag.zip",
            type="string",
            minLength=1,
            title="Key",
            description="Key of the ZIP or zipped BagIt bag, e.g. bags/2024/accession-17.zip.",
        ),
        "mode": Param(
            "auto",
            type="string",
            enum=["auto", "zip", "bagit"],
            title="Mode",
            description="zip: structure and CRC-32; bagit: also manifests, Payload-Oxum and completeness; "
            "auto: bagit when a bagit.txt is found.",
        ),
        "write_report": Param(
            True,
            type="boolean",
            title="Write report",
            description=f"Also store the JSON report as <key>{REPORT_SUFFIX} in the same bucket.",
        ),
        "extract_member": Param(
            None,
            type=["null", "string"],
            title="Extract one member (optional)",
            description=f"Path of a member inside the archive to copy to <key>{EXTRACT_SUFFIX}<member> "
            "after a successful verification. Leave empty to extract nothing.",
        ),
    },
    render_template_as_native_obj=False,
)
def s3stream_verify_archive() -> None:
    verify = S3ZipVerifyOperator(
        task_id="verify",
        s3_bucket="{{ params.bucket }}",
        s3_key="{{ params.key }}",
        mode="{{ params.mode }}",
        # An empty report_key writes no report.
        report_key=f"{{{{ params.key ~ '{REPORT_SUFFIX}' if params.write_report else '' }}}}",
        prefetch_blocks=2,
    )

    @task
    def extract_member(report: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Stream one member of the verified archive to ``<key>.extracted/<member>``."""
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_s3stream.archive.extract import extract_members
        from airflow_s3stream.hooks.s3 import S3StreamHook

        assert params is not None
        member = params.get("extract_member")
        if not member:
            raise AirflowSkipException("no member asked for")
        client = S3StreamHook().get_s3_client()
        bucket, key = params["bucket"], params["key"]
        (extracted,) = extract_members(client, bucket, key, bucket, dest_prefix=key + EXTRACT_SUFFIX, members=[member])
        print(f"{report['source']} is valid; extracted {member} ({extracted.size} bytes) to {extracted.key}")
        return extracted.to_dict()

    extract_member(verify.output)  # type: ignore[arg-type]  # an XComArg: the report, resolved at run time


s3stream_verify_archive()
