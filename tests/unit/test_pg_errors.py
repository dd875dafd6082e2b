"""One classification of Postgres failures for the export and the load (airflow_s3stream.pg_errors)."""

from __future__ import annotations

import psycopg
import pytest

from airflow_s3stream.errors import ExportConnectionError, LoadConnectionError, QueryError, RowRejectedError
from airflow_s3stream.pg_errors import is_connection_failure, load_error, query_error

SERVER_OR_LINK = [
    psycopg.OperationalError("server closed the connection unexpectedly"),
    psycopg.errors.AdminShutdown("terminating connection due to administrator command"),  # 57P01
    psycopg.errors.SerializationFailure("could not serialize access"),  # 40001
    psycopg.errors.OutOfMemory("out of memory"),  # 53200
    psycopg.errors.QueryCanceled("canceling statement due to user request"),  # 57014
]
REJECTED = [
    psycopg.errors.UndefinedTable('relation "orders" does not exist'),  # 42P01
    psycopg.errors.InvalidTextRepresentation('invalid input syntax for type integer: "abc"'),  # 22P02
    psycopg.errors.DivisionByZero("division by zero"),  # 22012
]


@pytest.mark.parametrize("exc", SERVER_OR_LINK, ids=lambda e: type(e).__name__)
def test_a_server_or_link_failure_is_retryable_for_the_export_and_the_load_alike(exc: psycopg.Error) -> None:
    assert is_connection_failure(exc)
    assert isinstance(query_error(exc, "query 'SELECT 1'"), ExportConnectionError)
    assert isinstance(load_error(exc, "s3://b/k.csv"), LoadConnectionError)


@pytest.mark.parametrize("exc", REJECTED, ids=lambda e: type(e).__name__)
def test_a_rejected_query_or_row_is_final_for_the_export_and_the_load_alike(exc: psycopg.Error) -> None:
    assert not is_connection_failure(exc)
    assert isinstance(query_error(exc, "query 'SELECT 1'"), QueryError)
    assert isinstance(load_error(exc, "s3://b/k.csv"), RowRejectedError)


def test_query_error_names_the_query_the_sqlstate_and_postgres_message() -> None:
    error = query_error(psycopg.errors.DivisionByZero("division by zero"), "query 'SELECT 1/0'")
    assert str(error) == "query 'SELECT 1/0': Postgres error 22012: division by zero"
