"""The SQL the export sends, and how Postgres failures become the package's errors.

The user's query is embedded verbatim (as ``psycopg.sql.SQL``, cut after its last token by
:func:`strip_query`). ``COPY`` cannot take server-side parameters, so ``parameters`` are bound by
psycopg on the client, for the describe step and ``COPY`` alike: the driver quotes and escapes
each value and merges it into the statement text it sends. That is safe against SQL injection,
but the values are part of the SQL the server sees: visible in ``pg_stat_activity.query`` and in
server logs (``log_statement``, ``log_min_duration_statement``, errors). Empty parameters count
as none (:func:`bound_parameters`). Every option value is a ``psycopg.sql.Literal``.

Error classes (``run_guarded``), decided by :mod:`airflow_s3stream.pg_errors`: a lost connection, a
terminated backend, an admin shutdown, a serialisation failure or lack of resources is
:class:`~airflow_s3stream.errors.ExportConnectionError` (retryable); anything else Postgres rejects
(syntax, missing relation, bad cast, division by zero) is :class:`~airflow_s3stream.errors.QueryError`
(retrying cannot help). Both carry Postgres's own message and name the query.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from airflow_s3stream.errors import ExportError
from airflow_s3stream.pg_errors import query_error

if TYPE_CHECKING:
    from psycopg.abc import Params
    from psycopg.sql import SQL, Composed

__all__ = [
    "bound_parameters",
    "copy_statement",
    "embedded",
    "jsonl_copy_statement",
    "query_label",
    "run_guarded",
    "strip_query",
    "subquery",
]

T = TypeVar("T")

# JSON from row_to_json never contains these raw bytes (control characters are \u-escaped), so a
# CSV COPY with them as quote and delimiter passes every JSON document through unchanged.
_JSON_QUOTE = "\x01"
_JSON_DELIMITER = "\x02"
# The opening delimiter of a dollar-quoted string: $$ or $tag$ (a tag never starts with a digit: $1).
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")


def strip_query(sql: str) -> str:
    """``sql`` cut after its last token: no trailing blanks, semicolons or comments.

    The query is embedded inside ``(...)``, where a trailing ``-- comment`` would swallow the
    closing bracket and a trailing ``;`` is a syntax error. A small scanner skips string literals
    (``'...'``, ``E'...'``, ``"..."``, ``$tag$...$tag$``) and comments (``--``, nested ``/* */``)
    to find the last token; it does not parse SQL. When the text ends inside an unterminated
    literal or comment, only blanks and semicolons are stripped and Postgres reports the error.
    """
    text = sql.strip()
    end = _last_token_end(text)
    if end is None:
        while text.endswith(";"):
            text = text[:-1].rstrip()
        return text
    return text[:end]


def _last_token_end(text: str) -> int | None:
    """Index just after the last character of ``text`` outside comments that is neither a blank
    nor ``;``; ``None`` when a literal or comment is not terminated."""
    end, i, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            newline = text.find("\n", i)
            i = n if newline < 0 else newline + 1
            continue
        if c == "/" and text.startswith("/*", i):
            i = _block_comment_end(text, i)
            if i < 0:
                return None
            continue
        if c in "'\"":
            escapes = c == "'" and i > 0 and text[i - 1] in "eE" and not _is_identifier_char(text, i - 2)
            i = _quoted_end(text, i, escapes)
        elif c == "$" and not _is_identifier_char(text, i - 1) and (tag := _DOLLAR_TAG.match(text, i)):
            close = text.find(tag.group(), tag.end())
            i = -1 if close < 0 else close + len(tag.group())
        else:
            i += 1
            if c.isspace() or c == ";":
                continue
        if i < 0:
            return None
        end = i
    return end


def _is_identifier_char(text: str, i: int) -> bool:
    return i >= 0 and (text[i].isalnum() or text[i] in "_$")


def _quoted_end(text: str, start: int, backslash_escapes: bool) -> int:
    """Index after the literal opened at ``start`` (a doubled quote is part of it); -1 if open."""
    quote, i = text[start], start + 1
    while i < len(text):
        if backslash_escapes and text[i] == "\\":
            i += 2
        elif text[i] != quote:
            i += 1
        elif text.startswith(quote * 2, i):
            i += 2
        else:
            return i + 1
    return -1


def _block_comment_end(text: str, start: int) -> int:
    """Index after the (nestable) ``/* */`` comment opened at ``start``; -1 if it is not closed."""
    depth, i = 0, start
    while i < len(text):
        if text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return -1


def bound_parameters(parameters: Params | None) -> Params | None:
    """``parameters`` as the export hands them to psycopg: ``None`` when there are none.

    psycopg reads ``%`` as a placeholder in ``execute`` whenever parameters are given, even ``{}``,
    but in ``COPY`` only when they are non-empty. Every statement of an export goes through here,
    so one rule holds for all of them: with no (or empty) parameters ``%`` is a literal ``%``;
    with parameters a literal ``%`` is written ``%%`` and placeholders are ``%s`` / ``%(name)s``.
    """
    return parameters if parameters else None


def embedded(sql: str) -> SQL:
    """``(<sql>)`` as a composable, the one way the user's query enters a statement.

    The newline before the bracket keeps it out of a ``--`` comment even when
    :func:`strip_query` had to fall back on an unterminated literal or comment.
    """
    from psycopg import sql as pgsql

    return pgsql.SQL("(" + strip_query(sql) + "\n)")  # type: ignore[arg-type]


def subquery(sql: str, *, limit_zero: bool = False, select: str = "*") -> Composed:
    """``SELECT <select> FROM (<sql>) AS _s3stream_q`` as a composable."""
    from psycopg import sql as pgsql

    stmt = pgsql.SQL("SELECT " + select + " FROM {} AS _s3stream_q").format(embedded(sql))  # type: ignore[arg-type]
    if limit_zero:
        stmt = pgsql.Composed([stmt, pgsql.SQL(" LIMIT 0")])
    return stmt


def copy_statement(sql: str, *, delimiter: str = ",", header: bool = True, null_string: str = "") -> Composed:
    """``COPY (<sql>) TO STDOUT`` in CSV with the given options."""
    from psycopg import sql as pgsql

    return pgsql.SQL("COPY {} TO STDOUT (FORMAT csv, HEADER {}, DELIMITER {}, NULL {})").format(
        embedded(sql),
        pgsql.SQL("true" if header else "false"),
        pgsql.Literal(delimiter),
        pgsql.Literal(null_string),
    )


def jsonl_copy_statement(sql: str) -> Composed:
    """COPY producing one ``row_to_json`` document per line, bytes unchanged by COPY escaping."""
    from psycopg import sql as pgsql

    return pgsql.SQL("COPY ({}) TO STDOUT (FORMAT csv, QUOTE {}, DELIMITER {})").format(
        subquery(sql, select="row_to_json(_s3stream_q)"),
        pgsql.Literal(_JSON_QUOTE),
        pgsql.Literal(_JSON_DELIMITER),
    )


def query_label(sql: str) -> str:
    """``query 'SELECT ...'``: the query's first line that is not a ``--`` comment (80 characters
    at most), how error messages name the query."""
    lines = [line.strip() for line in strip_query(sql).splitlines()]
    first = next((line for line in lines if line and not line.startswith("--")), lines[0] if lines else "")
    return f"query {first[:80]!r}"


def classify(exc: Exception, sql: str) -> ExportError:
    """The package error for a psycopg error raised while running ``sql``
    (:func:`~airflow_s3stream.pg_errors.query_error` naming the query)."""
    return query_error(exc, query_label(sql))


def run_guarded(fn: Callable[[], T], sql: str) -> T:
    """Run ``fn``; translate psycopg errors into QueryError / ExportConnectionError."""
    import psycopg

    try:
        return fn()
    except psycopg.Error as exc:
        raise classify(exc, sql) from exc
