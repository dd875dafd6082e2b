"""The "S3 object" extra link: AWS console for AWS, a configured console template or nothing elsewhere."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
from airflow.sdk import BaseOperator

from airflow_s3stream.get_provider_info import get_provider_info
from airflow_s3stream.operators.links import S3ObjectLink, s3_object_url


class _WritesObject(BaseOperator):
    template_fields = ("s3_bucket", "s3_key")
    operator_extra_links = (S3ObjectLink(),)

    def __init__(self, *, s3_bucket: str, s3_key: str, aws_conn_id: str = "aws_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.aws_conn_id = aws_conn_id


def test_aws_object_link_opens_the_console_object_view_in_the_region() -> None:
    url = s3_object_url("my-bucket", "exports/2024-01-01/part 0.csv", region="eu-west-1")
    parsed = urllib.parse.urlsplit(url)
    assert (parsed.scheme, parsed.netloc, parsed.path) == ("https", "console.aws.amazon.com", "/s3/object/my-bucket")
    query = urllib.parse.parse_qs(parsed.query)
    assert query["region"] == ["eu-west-1"]
    assert query["prefix"] == ["exports/2024-01-01/part 0.csv"]


def test_aws_regional_endpoint_still_counts_as_aws() -> None:
    url = s3_object_url("b", "k", endpoint_url="https://s3.eu-west-1.amazonaws.com", region="eu-west-1")
    assert url.startswith("https://console.aws.amazon.com/s3/object/b?")


def test_prefix_link_lists_the_prefix_in_the_bucket_view() -> None:
    url = s3_object_url("b", "exports/2024-01-01/", region="us-east-1", prefix=True)
    assert url.startswith("https://console.aws.amazon.com/s3/buckets/b?")
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["prefix"] == ["exports/2024-01-01/"]


def test_custom_endpoint_link_fills_the_console_template_with_the_key_quoted() -> None:
    template = "http://seaweedfs:8888/buckets/{bucket}/{key}"
    url = s3_object_url("archives", "/bags/a b#1.zip", endpoint_url="http://seaweedfs:8333/", console_url=template)
    assert url == "http://seaweedfs:8888/buckets/archives/bags/a%20b%231.zip"
    listing = s3_object_url(
        "archives", "exports/day=1", endpoint_url="http://seaweedfs:8333", prefix=True, console_url=template
    )
    assert listing == "http://seaweedfs:8888/buckets/archives/exports/day%3D1/"
    assert "?" not in url + listing


def test_custom_endpoint_without_a_console_template_has_no_link_rather_than_a_403() -> None:
    assert s3_object_url("archives", "bags/a.zip", endpoint_url="http://seaweedfs:8333") == ""
    assert s3_object_url("archives", "exports/", endpoint_url="http://minio:9000", prefix=True) == ""


def test_a_console_template_with_a_query_string_or_unknown_fields_gives_no_link() -> None:
    for template in ("http://minio:9001/browser/{bucket}?path={key}", "http://x/{bucket}/{key}/{region}"):
        assert s3_object_url("b", "k", endpoint_url="http://minio:9000", console_url=template) == "", template


@pytest.mark.parametrize("configured", [True, False])
def test_link_on_a_custom_endpoint_is_present_only_when_configured_and_never_presigned(
    monkeypatch: pytest.MonkeyPatch, configured: bool
) -> None:
    extra: dict[str, str] = {"endpoint_url": "http://seaweedfs:8333", "region_name": "us-east-1"}
    if configured:
        extra["s3stream_console_url"] = "http://seaweedfs:8888/buckets/{bucket}/{key}"
    conn = {"conn_type": "aws", "login": "AKIDEXAMPLE", "password": "secret-example", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_S3STREAM_SEAWEED", json.dumps(conn))
    op = _WritesObject(task_id="t", s3_bucket="bkt", s3_key="dir/a.zip", aws_conn_id="s3stream_seaweed")
    url = S3ObjectLink().get_link(op, ti_key=None)
    if configured:
        assert url == "http://seaweedfs:8888/buckets/bkt/dir/a.zip"
    else:
        assert url == ""
    assert "?" not in url and "Signature" not in url and "AKIDEXAMPLE" not in url


def test_link_reads_the_operators_bucket_key_and_connection_endpoint(airflow_connections: dict[str, str]) -> None:
    endpoint = json.loads(airflow_connections["AIRFLOW_CONN_AWS_DEFAULT"])["extra"]["endpoint_url"]
    op = _WritesObject(task_id="t", s3_bucket="bkt", s3_key="dir/report.json")
    assert S3ObjectLink().get_link(op, ti_key=None) == f"{endpoint}/bkt/dir/report.json"


def test_link_uses_the_aws_console_for_a_connection_without_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_S3STREAM_AWS_REAL",
        json.dumps({"conn_type": "aws", "extra": {"region_name": "ap-southeast-2"}}),
    )
    op = _WritesObject(task_id="t", s3_bucket="bkt", s3_key="k.zip", aws_conn_id="s3stream_aws_real")
    url = S3ObjectLink().get_link(op, ti_key=None)
    assert url.startswith("https://console.aws.amazon.com/s3/object/bkt?region=ap-southeast-2")


def test_link_is_empty_when_the_operator_has_no_object() -> None:
    op = _WritesObject(task_id="t", s3_bucket="", s3_key="k")
    assert S3ObjectLink().get_link(op, ti_key=None) == ""


def test_provider_info_registers_the_link_and_lists_importable_hooks_and_operators() -> None:
    import importlib

    info = get_provider_info()
    for path in info["extra-links"]:
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name) is S3ObjectLink
    for group in ("hooks", "operators"):
        for entry in info[group]:
            for module in entry["python-modules"]:
                importlib.import_module(module)


def test_every_operator_offers_the_link_and_the_export_links_to_its_prefix_listing(
    airflow_connections: dict[str, str],
) -> None:
    from airflow_s3stream.operators import (
        PostgresToS3StreamOperator,
        S3MultipartUploadOperator,
        S3ZipVerifyOperator,
    )

    endpoint = json.loads(airflow_connections["AIRFLOW_CONN_AWS_DEFAULT"])["extra"]["endpoint_url"]
    export = PostgresToS3StreamOperator(task_id="e", sql="SELECT 1", s3_bucket="b", s3_key="exp/day=1/orders")
    upload = S3MultipartUploadOperator(task_id="u", source="/tmp/x", s3_bucket="b", s3_key="up/x.bin")
    verify = S3ZipVerifyOperator(task_id="v", s3_bucket="b", s3_key="a.zip")
    for op in (export, upload, verify):
        assert [link.name for link in op.operator_extra_links] == ["S3 object"], op.task_id
    link = S3ObjectLink()
    assert link.get_link(export, ti_key=None) == f"{endpoint}/b/exp/day%3D1/orders/"
    assert link.get_link(upload, ti_key=None) == f"{endpoint}/b/up/x.bin"
    assert link.get_link(verify, ti_key=None) == f"{endpoint}/b/a.zip"


def test_airflow_discovers_the_link_through_the_provider_entry_point() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-s3stream" in manager.providers
    assert "airflow_s3stream.operators.links.S3ObjectLink" in manager.extra_links_class_names
