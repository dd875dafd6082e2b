"""The SQL the export sends, and how Postgres failures become the package's errors.

The user's query is embedded verbatim (as ``psycopg.sql.SQL``) and its ``parameters`` are bound by
psycopg's client-side binding, the only binding ``COPY`` supports: values are quoted by the
driver, never formatted into the text by us. Every option value is a ``psycopg.sql.Literal``.

Error classes (``run_guarded``): a lost connection, a terminated backend, an admin shutdown, a
serialisation failure or lack of resources is :class:`ExportConnectionError` (retryable); anything
else Postgres rejects (syntax, missing relation, bad cast, division by zero) is
:class:`QueryError` (retrying cannot help). Both carry Postgres's own message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from airflow_s3stream.errors import ExportConnectionError, QueryError

__all__ = ["copy_statement", "jsonl_copy_statement", "run_guarded", "strip_query", "subquery"]

T = TypeVar("T")

# SQLSTATE classes that say "the server or the link failed", not "the query is wrong"
# (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")
# JSON from row_to_json never contains these raw bytes (control characters are \u-escaped), so a
# CSV COPY with them as quote and delimiter passes every JSON document through unchanged.
_JSON_QUOTE = "\x01"
_JSON_DELIMITER = "\x02"


def strip_query(sql: str) -> str:
    """``sql`` without surrounding blanks and trailing semicolons (it is embedded in a subquery)."""
    text = sql.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    return text


def subquery(sql: str, *, limit_zero: bool = False, select: str = "*") -> Any:
    """``SELECT <select> FROM (<sql>) AS _s3stream_q`` as a composable."""
    from psycopg import sql as pgsql

    stmt = pgsql.SQL("SELECT " + select + " FROM ({}) AS _s3stream_q").format(pgsql.SQL(strip_query(sql)))  # type: ignore[arg-type]
    if limit_zero:
        stmt = pgsql.Composed([stmt, pgsql.SQL(" LIMIT 0")])
    return stmt


def copy_statement(sql: str, *, delimiter: str = ",", header: bool = True, null_string: str = "") -> Any:
    """``COPY (<sql>) TO STDOUT`` in CSV with the given options."""
    from psycopg import sql as pgsql

    return pgsql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER {}, DELIMITER {}, NULL {})").format(
        pgsql.SQL(strip_query(sql)),  # type: ignore[arg-type]
        pgsql.SQL("true" if header else "false"),
        pgsql.Literal(delimiter),
        pgsql.Literal(null_string),
    )


def jsonl_copy_statement(sql: str) -> Any:
    """COPY producing one ``row_to_json`` document per line, bytes unchanged by COPY escaping."""
    from psycopg import sql as pgsql

    return pgsql.SQL("COPY ({}) TO STDOUT (FORMAT csv, QUOTE {}, DELIMITER {})").format(
        subquery(sql, select="row_to_json(_s3stream_q)"),
        pgsql.Literal(_JSON_QUOTE),
        pgsql.Literal(_JSON_DELIMITER),
    )


def classify(exc: Exception, sql: str) -> Exception:
    """The package error for a psycopg error raised while running ``sql``."""
    import psycopg

    sqlstate = getattr(exc, "sqlstate", None) or ""
    first_line = strip_query(sql).splitlines()[0] if sql.strip() else ""
    where = f"query {first_line[:80]!r}"
    if isinstance(exc, psycopg.OperationalError) or sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES:
        return ExportConnectionError(f"{where}: Postgres connection failed: {str(exc).strip()}")
    return QueryError(f"{where}: Postgres error {sqlstate or ''}: {str(exc).strip()}".replace("  ", " "))


def run_guarded(fn: Callable[[], T], sql: str) -> T:
    """Run ``fn``; translate psycopg errors into QueryError / ExportConnectionError."""
    import psycopg

    try:
        return fn()
    except psycopg.Error as exc:
        raise classify(exc, sql) from exc
