"""The package's clients make one attempt per call; a client that retries on its own is named once.
Over TLS, botocore's own checksum of a small body travels in a header, and a certificate the
connection does not trust is named with the connection (a local HTTPS server shows the wire)."""

from __future__ import annotations

import base64
import io
import logging
import zlib
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.s3.client import (
    checksum_in_header,
    configured_max_attempts,
    explain_connection_failures,
    single_attempt_config,
    warn_if_retrying,
)
from airflow_s3stream.s3.retry import RetryPolicy
from tests.support.tls_server import TlsRecorder


def _client(config: Config | None = None) -> object:
    return boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        region_name="us-east-1",
        config=config,
    )


def test_single_attempt_config_keeps_the_connections_settings_and_turns_retries_off() -> None:
    base = Config(
        request_checksum_calculation="when_required",
        s3={"addressing_style": "path"},
        retries={"mode": "adaptive", "max_attempts": 9},
    )
    config = single_attempt_config(base, max_pool_connections=24)
    settings: Any = config  # botocore's Config sets its options as attributes at run time
    assert settings.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert settings.max_pool_connections == 24
    assert settings.request_checksum_calculation == "when_required"
    assert settings.s3 == {"addressing_style": "path"}
    assert configured_max_attempts(base) == 10  # max_attempts counts retries: one more try in all
    assert configured_max_attempts(Config(retries={"total_max_attempts": 4})) == 4
    assert configured_max_attempts(Config()) is None


def test_a_client_that_retries_on_its_own_is_named_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="airflow_s3stream.s3")
    retrying = _client()
    warn_if_retrying(retrying)
    warn_if_retrying(retrying)
    assert len([r for r in caplog.records if "retries on its own" in r.getMessage()]) == 1
    caplog.clear()
    warn_if_retrying(_client(single_attempt_config()))
    assert caplog.records == []


# --- TLS endpoints: where botocore's own checksum goes, and errors that name the connection ------


def _tls_client(server: TlsRecorder, verify: str | None = None, **config: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id="k",
        aws_secret_access_key="s",
        region_name="us-east-1",
        verify=verify or server.ca_bundle,
        config=single_attempt_config(Config(s3={"addressing_style": "path"}, **config)),
    )


def test_botocores_crc_of_an_in_memory_body_goes_in_a_header_over_tls_and_streams_keep_the_trailer() -> None:
    body = b'{"manifest": 1}'
    with TlsRecorder() as server:
        plain = _tls_client(server)
        plain.put_object(Bucket="b", Key="plain", Body=body)
        client = _tls_client(server)
        checksum_in_header(client)
        checksum_in_header(client)  # idempotent: one handler
        client.put_object(Bucket="b", Key="bytes", Body=body)
        client.put_object(Bucket="b", Key="stream", Body=_Unseekable(body))
        sent = {r.path.rsplit("/", 1)[1]: r for r in server.requests}
    # botocore's default over https: an aws-chunked body with a trailer and no Content-Length
    assert sent["plain"].headers["x-amz-trailer"] == "x-amz-checksum-crc32"
    assert "content-length" not in sent["plain"].headers
    # the same CRC32 of the same bytes, now a header beside a Content-Length
    moved = sent["bytes"].headers
    assert "x-amz-trailer" not in moved and "aws-chunked" not in moved.get("content-encoding", "")
    assert moved["content-length"] == str(len(body)) and sent["bytes"].body == body
    assert moved["x-amz-checksum-crc32"] == base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    # a body botocore cannot read twice is left as botocore sends it
    assert sent["stream"].headers["x-amz-trailer"] == "x-amz-checksum-crc32"


def test_an_untrusted_certificate_names_the_connection_and_verify_and_is_not_retried(tmp_path: Path) -> None:
    from tests.support.rgw import self_signed_certificate

    other_ca, _ = self_signed_certificate(tmp_path)
    with TlsRecorder() as server:
        client = _tls_client(server, verify=str(other_ca))
        explain_connection_failures(client, "AWS connection 'aws_tls'", str(other_ca))
        calls = []

        def put() -> Any:
            calls.append(1)
            return client.put_object(Bucket="b", Key="k", Body=b"x")

        with pytest.raises(ConfigurationError) as raised:
            RetryPolicy(max_attempts=4, base_delay=0).call(put, what="PutObject s3://b/k")
        assert server.requests == []
    message = str(raised.value)
    assert message.startswith(f"AWS connection 'aws_tls' ({server.endpoint_url}): the store's TLS certificate")
    assert 'set the connection extra "verify"' in message and str(other_ca) in message
    assert len(calls) == 1  # a certificate does not become trusted by asking again


class _Unseekable(io.RawIOBase):
    """A body that can be read once, like a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), len(self._data))
        buffer[:n], self._data = self._data[:n], self._data[n:]
        return n
