"""Fan-out: verify every ZIP archive under an S3 prefix, one mapped task per archive.

Dynamic task mapping (``.partial().expand()``) turns the listing into N ``verify`` task
instances. Airflow's executor spreads them: with the CeleryExecutor or the KubernetesExecutor
each archive is verified on whichever worker is free, in parallel up to ``max_active_tis_per_dag``,
each in the same small, constant amount of memory. There is no scheduler of ours.

Tasks:

* ``list_archives``: the keys under ``prefix`` ending in ``suffix`` (default ``.zip``).
* ``verify`` (mapped): :class:`~airflow_s3stream.operators.S3ZipVerifyOperator` per key, with
  ``fail_on_invalid=False`` so that every archive gets checked and reported.
* ``summarize``: writes ``<prefix>_verification-summary.json`` (every report, plus the list of
  invalid archives) and fails, naming them, if any archive is invalid.

Params (trigger form): ``bucket``, ``prefix``, ``suffix``, ``mode`` (``auto``/``zip``/``bagit``).
Connection: ``aws_default``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from airflow_s3stream.operators import S3ZipVerifyOperator

DEFAULT_BUCKET = os.environ.get("S3STREAM_BUCKET", "s3stream")
SUMMARY_SUFFIX = "_verification-summary.json"


@dag(
    dag_id="s3stream_verify_prefix",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["s3stream", "verify", "fan-out"],
    doc_md=__doc__,
    params={
        "bucket": Param(DEFAULT_BUCKET, type="string", minLength=3, title="Bucket", description="Bucket to scan."),
        "prefix": Param(
            "archives/",
            type="string",
            title="Key prefix",
            description="Key prefix; every archive below it is verified.",
        ),
        "suffix": Param(
            ".zip", type="string", title="Key suffix", description="Only keys ending with this are archives."
        ),
        "mode": Param(
            "auto",
            type="string",
            enum=["auto", "zip", "bagit"],
            title="Mode",
            description="zip: structure and CRC-32; bagit: also manifests; auto: bagit when bagit.txt is found.",
        ),
    },
)
def s3stream_verify_prefix() -> None:
    @task
    def list_archives(params: dict[str, Any] | None = None) -> list[str]:
        """Every key under the prefix that ends with the suffix, in key order."""
        from airflow_s3stream.hooks.s3 import S3StreamHook

        assert params is not None
        keys = S3StreamHook().list_keys(bucket_name=params["bucket"], prefix=params["prefix"])
        archives = sorted(key for key in keys if key.endswith(params["suffix"]))
        print(f"{len(archives)} archives under s3://{params['bucket']}/{params['prefix']}")
        return archives

    verify = S3ZipVerifyOperator.partial(
        task_id="verify",
        s3_bucket="{{ params.bucket }}",
        mode="{{ params.mode }}",
        fail_on_invalid=False,
        max_active_tis_per_dag=4,
    ).expand(s3_key=list_archives())

    @task
    def summarize(reports: list[dict[str, Any]], params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One summary object for the whole prefix; fail naming every invalid archive."""
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_s3stream.hooks.s3 import S3StreamHook

        assert params is not None
        reports = list(reports)
        invalid = [report["source"] for report in reports if not report["valid"]]
        summary = {"archives": len(reports), "invalid": invalid, "reports": reports}
        key = f"{params['prefix'].rstrip('/')}{SUMMARY_SUFFIX}"
        S3StreamHook().get_s3_client().put_object(
            Bucket=params["bucket"], Key=key, Body=json.dumps(summary, indent=2).encode()
        )
        if invalid:
            raise AirflowFailException(f"{len(invalid)} of {len(reports)} archives invalid: {', '.join(invalid)}")
        return {"archives": len(reports), "summary_key": key}

    summarize(verify.output)  # type: ignore[arg-type]  # an XComArg: the mapped reports, resolved at run time


s3stream_verify_prefix()
