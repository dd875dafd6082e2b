"""The If-Match form each endpoint accepts, learned once (pure: no server)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import boto3
import pytest

from airflow_s3stream.s3.conditional import if_match_args, if_match_form, learn_refused_match, same_etag

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client


def client(endpoint: str) -> S3Client:
    """A real client for ``endpoint``; these functions only read its endpoint, so no request is sent."""
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )


def test_if_match_is_quoted_as_s3_quotes_etags_until_the_store_refuses_it() -> None:
    assert if_match_args('"abc"', "quoted") == {"IfMatch": '"abc"'}
    assert if_match_args("abc", "quoted") == {"IfMatch": '"abc"'}
    assert if_match_args('"abc"', "unquoted") == {"IfMatch": "abc"}
    assert if_match_args('"abc"', "none") == {}
    assert same_etag('"abc"', "abc") and not same_etag('"abc"', '"abd"')


def test_a_refused_match_is_learned_once_per_endpoint_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    rgw, aws = client("http://rgw.test:1"), client("http://aws.test:2")
    assert if_match_form(rgw) == "quoted"
    with caplog.at_level(logging.WARNING, logger="airflow_s3stream"):
        assert learn_refused_match(rgw, "quoted", "writing s3://b/state") == "unquoted"
        assert learn_refused_match(rgw, "quoted", "writing s3://b/state") == "unquoted"  # another writer's 412
    assert if_match_form(rgw) == "unquoted" and if_match_form(aws) == "quoted"
    assert [r.getMessage() for r in caplog.records if "quoted form" in r.getMessage()] == [
        "writing s3://b/state: the store at http://rgw.test:1 refuses a matching If-Match in the quoted form S3 "
        "uses (Ceph RGW 16 does); sending ETags unquoted to it from now on in this process"
    ]


def test_a_store_refusing_every_form_is_written_without_if_match() -> None:
    odd = client("http://odd.test:3")
    assert learn_refused_match(odd, "quoted", "w") == "unquoted"
    assert learn_refused_match(odd, "unquoted", "w") == "none"
    assert if_match_form(odd) == "none" and if_match_args('"e"', if_match_form(odd)) == {}
