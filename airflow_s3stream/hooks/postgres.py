"""Postgres side of the provider: a ``postgres`` connection turned into a psycopg 3 connection.

Host, port, credentials, SSL options and the rest come from Airflow's own ``PostgresHook``; the
core needs psycopg 3 (for ``COPY ... TO STDOUT`` streaming and binary loaders), so this hook
insists on it instead of silently handing out a psycopg2 connection. A connection that cannot be
opened fails with the package's error naming the Airflow connection, host and port, never the
password. A connection id that does not exist fails naming ``postgres_conn_id`` and the id
(:mod:`~airflow_s3stream.hooks.connections`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.postgres.hooks.postgres import PostgresHook
from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_s3stream.errors import ConfigurationError, ExportConnectionError
from airflow_s3stream.hooks.connections import undefined_connection

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresStreamHook"]

POSTGRES_DEFAULT_PORT = 5432  # libpq's default when the connection names none


class PostgresStreamHook(PostgresHook):
    """``PostgresHook`` that guarantees a psycopg 3 connection."""

    hook_name = "Postgres (S3 Stream)"

    def get_psycopg_connection(self) -> psycopg.Connection[Any]:
        """A new psycopg 3 connection for the connection ``postgres_conn_id`` names.

        :raises ExportConnectionError: Postgres cannot be reached or refused the connection
            (retryable); the message names the connection id, host and port.
        :raises ConfigurationError: ``postgres_conn_id`` names no connection, the connection has
            an option libpq does not know, or the installed driver is psycopg2.
        """
        import psycopg

        try:
            self.connection  # noqa: B018  # looked up once here, then cached by the hook
        except AirflowNotFoundException as exc:
            raise undefined_connection(self.conn_name_attr, self.get_conn_id()) from exc
        try:
            conn = self.get_conn()
        except psycopg.OperationalError as exc:
            raise ExportConnectionError(f"{self._describe()}: cannot connect: {self._redact(exc)}") from exc
        except psycopg.Error as exc:
            raise ConfigurationError(f"{self._describe()}: {self._redact(exc)}") from exc
        if not isinstance(conn, psycopg.Connection):
            conn.close()
            raise ConfigurationError(
                f"connection {self.get_conn_id()!r}: airflow-s3stream needs psycopg 3 "
                "(install psycopg[binary]>=3.2 and SQLAlchemy 2), got a psycopg2 connection"
            )
        return conn

    def _describe(self) -> str:
        """``Postgres connection 'id' (user@host:port/database)``: no password."""
        conn = self.connection
        database = self.database or conn.schema
        user = f"{conn.login}@" if conn.login else ""
        where = f"{user}{conn.host or 'localhost'}:{conn.port or POSTGRES_DEFAULT_PORT}"
        return f"Postgres connection {self.get_conn_id()!r} ({where}{'/' + database if database else ''})"

    def _redact(self, exc: Exception) -> str:
        """The driver's message on one line, the password masked should it ever appear in it."""
        text = " ".join(str(exc).split())
        password = self.connection.password
        return text.replace(password, "***") if password else text
