"""The package's clients make one attempt per call; a client that retries on its own is named once."""

from __future__ import annotations

import logging
from typing import Any

import boto3
import pytest
from botocore.config import Config

from airflow_s3stream.s3.client import configured_max_attempts, single_attempt_config, warn_if_retrying


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
