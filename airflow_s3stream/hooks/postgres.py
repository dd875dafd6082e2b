"""Postgres side of the provider: a ``postgres`` connection turned into a psycopg 3 connection.

Host, port, credentials, SSL options and the rest come from Airflow's own ``PostgresHook``; the
core needs psycopg 3 (for ``COPY ... TO STDOUT`` streaming and binary loaders), so this hook
insists on it instead of silently handing out a psycopg2 connection.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.postgres.hooks.postgres import PostgresHook

from airflow_s3stream.errors import ConfigurationError

__all__ = ["PostgresStreamHook"]


class PostgresStreamHook(PostgresHook):
    """``PostgresHook`` that guarantees a psycopg 3 connection."""

    hook_name = "Postgres (S3 Stream)"

    def get_psycopg_connection(self) -> Any:
        """A new psycopg 3 connection for the connection ``postgres_conn_id`` names."""
        import psycopg

        conn = self.get_conn()
        if not isinstance(conn, psycopg.Connection):
            conn.close()
            raise ConfigurationError(
                f"connection {self.get_conn_id()!r}: airflow-s3stream needs psycopg 3 "
                "(install psycopg[binary]>=3.2 and SQLAlchemy 2), got a psycopg2 connection"
            )
        return conn
