"""What the test services tell other processes: an S3 endpoint described in one JSON line."""

from __future__ import annotations

import json

from tests.support.devservices import S3Service


def test_an_s3_endpoint_survives_its_json_line_with_its_store_and_tls_but_not_its_handle() -> None:
    owned = S3Service(
        "http://127.0.0.1:7480", "key", "secret", "us-east-1", "rgw", _handle=object(),
        tls_endpoint_url="https://127.0.0.1:7443", ca_bundle="/tmp/ca.pem",
    )  # fmt: skip

    line = owned.to_json()
    seen = S3Service.from_json(line)

    assert "\n" not in line and "_handle" not in json.loads(line)
    assert seen == S3Service(
        "http://127.0.0.1:7480", "key", "secret", "us-east-1", "rgw",
        tls_endpoint_url="https://127.0.0.1:7443", ca_bundle="/tmp/ca.pem",
    )  # fmt: skip
