"""How a connection id that no secrets backend defines is found and named (hooks/connections.py)."""

from __future__ import annotations

import json

import pytest

from airflow_s3stream.errors import ConfigurationError, InvalidInputError
from airflow_s3stream.hooks import S3StreamHook
from airflow_s3stream.hooks.connections import require_connection, undefined_connection


def test_the_message_names_the_parameter_and_the_id_first_and_where_to_define_it() -> None:
    error = undefined_connection("source_aws_conn_id", "aws_prod")
    assert isinstance(error, InvalidInputError)  # retrying cannot define a connection
    assert str(error).startswith("source_aws_conn_id 'aws_prod' is not defined: ")
    assert "AIRFLOW_CONN_AWS_PROD" in str(error)


def test_no_id_means_the_default_credential_chain_and_is_not_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = S3StreamHook(aws_conn_id=None)
    monkeypatch.setattr(hook, "get_connection", lambda conn_id: pytest.fail(f"looked up {conn_id!r}"))
    require_connection(hook, "aws_conn_id", None)
    require_connection(hook, "aws_conn_id", "")


def test_an_environment_connection_is_defined_and_an_unknown_id_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AWS_ONLY_IN_ENV", json.dumps({"conn_type": "aws"}))
    monkeypatch.delenv("AIRFLOW_CONN_AWS_NOWHERE", raising=False)
    hook = S3StreamHook(aws_conn_id=None)
    require_connection(hook, "aws_conn_id", "aws_only_in_env")
    with pytest.raises(ConfigurationError, match=r"^aws_conn_id 'aws_nowhere' is not defined"):
        require_connection(hook, "aws_conn_id", "aws_nowhere")


def test_a_hook_checks_its_connection_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AWS_ONCE", json.dumps({"conn_type": "aws"}))
    hook = S3StreamHook(aws_conn_id="aws_once")
    hook.check_connection()
    monkeypatch.delenv("AIRFLOW_CONN_AWS_ONCE")
    hook.check_connection()  # not looked up again
    with pytest.raises(ConfigurationError, match=r"^aws_conn_id 'aws_once' is not defined"):
        S3StreamHook(aws_conn_id="aws_once").check_connection()
