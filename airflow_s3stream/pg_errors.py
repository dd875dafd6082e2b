"""How a Postgres failure becomes the package's error: the one classification of SQLSTATEs.

:func:`is_connection_failure` decides for the export and the load alike: a lost connection, a
terminated backend, an admin shutdown, a serialisation failure or lack of resources is the server
or the link failing (retryable), anything else is Postgres rejecting the query or the data.

* The export: :func:`query_error` gives :class:`ExportConnectionError` (retryable) or
  :class:`QueryError` (syntax, missing relation, bad cast), naming the query.
* The load: ``COPY`` reports where it stopped in the error's context (``COPY orders, line 7,
  column amount: "abc"``); :func:`load_error` puts the S3 object first, then the line (the row,
  for Parquet) and the column, then Postgres's own message, as :class:`LoadConnectionError`
  (retryable: nothing was committed) or :class:`RowRejectedError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_s3stream.errors import (
    ExportConnectionError,
    ExportError,
    LoadConnectionError,
    LoadError,
    QueryError,
    RowRejectedError,
)

__all__ = [
    "TRANSIENT_SQLSTATE_CLASSES",
    "CopyPosition",
    "copy_position",
    "is_connection_failure",
    "load_error",
    "query_error",
]

# SQLSTATE classes that say "the server or the link failed", not "the query or the data is wrong"
# (https://www.postgresql.org/docs/current/errcodes-appendix.html): connection exception,
# transaction rollback (serialisation failure, deadlock), insufficient resources, operator
# intervention (admin shutdown, query canceled), system error.
TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")
# The COPY's own context line; nested contexts (e.g. "JSON data, line 1: ...") come before it.
_CONTEXT = re.compile(r"^COPY .*?, line (?P<line>\d+)(?:, column (?P<column>[^:]+?))?(?::|$)", re.MULTILINE)


@dataclass(frozen=True)
class CopyPosition:
    """Where a COPY stopped: the line (1-based, the header counts) and the column when known."""

    line: int
    column: str | None


def copy_position(context: str | None) -> CopyPosition | None:
    """Parse ``COPY t, line 7, column amount: "abc"`` (the error's ``diag.context``)."""
    if not context:
        return None
    matches = list(_CONTEXT.finditer(context))
    if not matches:
        return None
    match = matches[-1]
    column = match.group("column")
    return CopyPosition(int(match.group("line")), column.strip() if column else None)


def is_connection_failure(exc: BaseException) -> bool:
    """The connection or the server failed (retryable), as opposed to the data being rejected."""
    import psycopg

    sqlstate = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, psycopg.OperationalError) or sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES


def query_error(exc: BaseException, where: str) -> ExportError:
    """The package error for psycopg's ``exc`` raised while running the query ``where`` names
    (``query 'SELECT ...'``), Postgres's message and SQLSTATE included."""
    if is_connection_failure(exc):
        return ExportConnectionError(f"{where}: Postgres connection failed: {str(exc).strip()}")
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return QueryError(f"{where}: Postgres error {sqlstate}: {str(exc).strip()}".replace("  ", " "))


def load_error(exc: BaseException, where: str, *, unit: str = "line", line_offset: int = 0) -> LoadError:
    """The package error for psycopg's ``exc`` raised while loading ``where`` (an ``s3://`` object).

    :param unit: what the COPY's line number counts in this file (``line``; ``row`` for Parquet).
    :param line_offset: added to the COPY's line number (lines of the file not sent to COPY).
    """
    diag = getattr(exc, "diag", None)
    primary = (getattr(diag, "message_primary", None) or str(exc)).strip()
    sqlstate = getattr(exc, "sqlstate", None)
    if is_connection_failure(exc):
        return LoadConnectionError(
            f"{where}: Postgres connection failed mid-load, nothing was committed: {' '.join(str(exc).split())}"
        )
    position = copy_position(getattr(diag, "context", None))
    text = where
    if position is not None:
        text += f": {unit} {position.line + line_offset}"
        if position.column:
            text += f", column {position.column}"
    detail = getattr(diag, "message_detail", None)
    text += f": {primary}" + (f" ({detail})" if detail else "") + (f" [SQLSTATE {sqlstate}]" if sqlstate else "")
    return RowRejectedError(text)
