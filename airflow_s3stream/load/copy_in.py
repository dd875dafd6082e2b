"""``COPY ... FROM STDIN`` of one file into one table: CSV as it is, JSON Lines by key, Parquet as CSV.

Each function runs inside the caller's transaction and returns the rows it added. A Postgres
error becomes :func:`~airflow_s3stream.pg_errors.load_error` naming the file, the line (or
row) and the column. Nothing here commits.

* CSV: the bytes go to ``COPY (FORMAT csv)`` unchanged; the line numbers Postgres reports are the
  file's (the header is line 1).
* JSON Lines: the lines are COPYed into a temporary ``jsonb`` table (a line that is not JSON fails
  there, with its number), keys are checked against the table's columns, then one
  ``INSERT ... SELECT`` casts every value with ``jsonb_populate_record`` (Postgres's own casts:
  arrays, json, bytea, intervals ...). A value Postgres cannot cast is located afterwards (line and
  key) in the failed savepoint's place.
* Parquet: each Arrow batch becomes binary COPY data (:mod:`~airflow_s3stream.load.arrow_binary`)
  or CSV (:mod:`~airflow_s3stream.load.arrow_text`); row ``N`` is the file's ``N``-th row. The
  batches are read, decoded and encoded in a thread, ``read_ahead`` of them ahead of the COPY, so
  S3, pyarrow and Postgres work at once.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_s3stream.errors import RowRejectedError
from airflow_s3stream.load.byte_stream import ReadAhead
from airflow_s3stream.pg_errors import is_connection_failure, load_error

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

__all__ = ["CsvDialect", "copy_csv", "copy_jsonl", "copy_parquet", "read_header"]

MAX_HEADER_BYTES = 1024 * 1024  # a first line longer than this is not a header
_JSONL_STAGE = "_s3stream_jsonl"
# JSON text never contains these raw bytes (control characters are escaped), so a CSV COPY with
# them as quote and delimiter passes each line through unchanged (the export uses the same pair).
_JSON_QUOTE, _JSON_DELIMITER = "\x01", "\x02"

OnBytes = Callable[[int], None]


@dataclass(frozen=True)
class CsvDialect:
    """The CSV options COPY is given (the export's defaults)."""

    delimiter: str = ","
    header: bool = True
    null_string: str = ""
    quote: str = '"'
    encoding: str = "UTF8"

    @property
    def python_encoding(self) -> str:
        """The codec Python decodes the header with (Postgres's ``UTF8`` is ``utf-8``)."""
        name = self.encoding.replace("_", "").lower()
        aliases = {"utf8": "utf-8", "sqlascii": "ascii", "win1252": "cp1252", "latin1": "latin-1"}
        name = aliases.get(name, name)
        try:
            return codecs.lookup(name).name
        except LookupError:
            return "utf-8"


def read_header(chunks: Iterable[bytes], dialect: CsvDialect, where: str) -> tuple[list[str], Iterator[bytes]]:
    """The column names in the first line, and the chunks again (the header still in them)."""
    it = iter(chunks)
    seen: list[bytes] = []
    size = 0
    for chunk in it:
        seen.append(chunk)
        size += len(chunk)
        if b"\n" in chunk or size > MAX_HEADER_BYTES:
            break
    data = b"".join(seen)
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not line:
        raise RowRejectedError(f"{where}: line 1: expected a header line of column names, found an empty line")
    text = line.decode(dialect.python_encoding, errors="replace")
    names = next(csv.reader([text], delimiter=dialect.delimiter, quotechar=dialect.quote))

    def again() -> Iterator[bytes]:
        yield data
        yield from it

    return names, again()


def _copy(conn: psycopg.Connection[Any], statement: sql.Composed, chunks: Iterable[Any], on_bytes: OnBytes) -> int:
    with conn.cursor() as cur:
        with cur.copy(statement) as copy:
            for chunk in chunks:
                copy.write(chunk)
                on_bytes(len(chunk))
        return max(cur.rowcount, 0)


def _column_list(columns: Sequence[str]) -> sql.Composable:
    from psycopg import sql

    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def copy_csv(
    conn: psycopg.Connection[Any],
    dest: sql.Composable,
    columns: Sequence[str],
    chunks: Iterable[bytes],
    *,
    dialect: CsvDialect,
    where: str,
    on_bytes: OnBytes,
) -> int:
    """COPY the CSV ``chunks`` into ``dest (columns)``; returns the rows COPY added."""
    import psycopg
    from psycopg import sql

    statement = sql.SQL(
        "COPY {} ({}) FROM STDIN (FORMAT csv, HEADER {}, DELIMITER {}, NULL {}, QUOTE {}, ENCODING {})"
    ).format(
        dest,
        _column_list(columns),
        sql.SQL("true" if dialect.header else "false"),
        sql.Literal(dialect.delimiter),
        sql.Literal(dialect.null_string),
        sql.Literal(dialect.quote),
        sql.Literal(dialect.encoding),
    )
    try:
        return _copy(conn, statement, chunks, on_bytes)
    except psycopg.Error as exc:
        raise load_error(exc, where) from exc


def copy_parquet(
    conn: psycopg.Connection[Any],
    dest: sql.Composable,
    columns: Sequence[str],
    batches: Iterable[Any],
    *,
    where: str,
    on_bytes: OnBytes,
    binary_schema: Any = None,
    read_ahead: int = 0,
) -> int:
    """COPY Arrow ``batches`` (holding ``columns`` in order) into ``dest``; returns the rows added.

    :param binary_schema: the Arrow schema of :func:`~airflow_s3stream.load.arrow_binary.binary_schema`:
        binary COPY; ``None``: CSV (every type the export writes).
    :param read_ahead: encoded batches a thread makes ahead of the COPY (0: no thread; reading,
        encoding and the COPY take turns).
        An error there (S3, decoding, encoding) fails the COPY with that error, unchanged; the
        thread has stopped when this returns or raises.
    """
    import psycopg
    from psycopg import sql

    if binary_schema is not None:
        from airflow_s3stream.load.arrow_binary import BinaryEncoder

        encoder = BinaryEncoder(binary_schema)
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(dest, _column_list(columns))

        def buffers() -> Iterator[Any]:
            yield encoder.header()
            for batch in batches:
                if batch.num_rows:
                    yield encoder.encode(batch)
            yield encoder.trailer()

    else:
        from airflow_s3stream.load.arrow_text import batch_to_csv

        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(dest, _column_list(columns))

        def buffers() -> Iterator[Any]:
            for batch in batches:
                if batch.num_rows:
                    yield memoryview(batch_to_csv(batch))

    try:
        if read_ahead <= 0:
            return _copy(conn, statement, buffers(), on_bytes)
        with ReadAhead(buffers(), depth=read_ahead) as ahead:
            return _copy(conn, statement, ahead, on_bytes)
    except psycopg.Error as exc:
        raise load_error(exc, where, unit="row") from exc


def copy_jsonl(
    conn: psycopg.Connection[Any],
    dest: sql.Composable,
    columns: Sequence[str],
    table_columns: Sequence[str],
    chunks: Iterable[bytes],
    *,
    where: str,
    encoding: str,
    ignore_unknown_keys: bool,
    on_bytes: OnBytes,
) -> int:
    """Load JSON Lines ``chunks`` into ``dest``: key ``k`` goes to column ``k`` (see the module docstring).

    Keys that are not columns of the table fail the load (naming the line and key) unless
    ``ignore_unknown_keys``; keys of table columns outside ``columns`` are not loaded; a column
    without a key in a line gets NULL. Blank lines are skipped.
    """
    import psycopg
    from psycopg import sql

    stage = sql.Identifier(_JSONL_STAGE)
    try:
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} "
                "(line bigint GENERATED ALWAYS AS IDENTITY, doc jsonb) ON COMMIT DROP"
            ).format(stage)
        )
        conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(stage))
        statement = sql.SQL("COPY {} (doc) FROM STDIN (FORMAT csv, QUOTE {}, DELIMITER {}, ENCODING {})").format(
            stage, sql.Literal(_JSON_QUOTE), sql.Literal(_JSON_DELIMITER), sql.Literal(encoding)
        )
        _copy(conn, statement, chunks, on_bytes)
        _check_keys(conn, stage, table_columns, where, ignore_unknown_keys)
    except psycopg.Error as exc:
        raise load_error(exc, where) from exc
    insert = sql.SQL(
        "INSERT INTO {dest} ({cols}) SELECT {picked} FROM {stage} AS s "
        "CROSS JOIN LATERAL jsonb_populate_record(NULL::{dest}, s.doc) AS r WHERE s.doc IS NOT NULL ORDER BY s.line"
    ).format(
        dest=dest,
        cols=_column_list(columns),
        picked=sql.SQL(", ").join(sql.Identifier("r", c) for c in columns),
        stage=stage,
    )
    try:
        with conn.transaction():  # a savepoint, so a failed cast can be located afterwards
            return max(conn.execute(insert).rowcount, 0)
    except psycopg.Error as exc:
        if is_connection_failure(exc):
            raise load_error(exc, where) from exc
        raise _locate_cast_failure(conn, dest, stage, columns, where=where, exc=exc) from exc


def _check_keys(
    conn: psycopg.Connection[Any], stage: sql.Identifier, table_columns: Sequence[str], where: str, ignore: bool
) -> None:
    from psycopg import sql

    row = conn.execute(
        sql.SQL(
            "SELECT line, jsonb_typeof(doc) FROM {} WHERE doc IS NOT NULL AND jsonb_typeof(doc) <> 'object' "
            "ORDER BY line LIMIT 1"
        ).format(stage)
    ).fetchone()
    if row is not None:
        raise RowRejectedError(f"{where}: line {row[0]}: expected a JSON object, got a JSON {row[1]}")
    if ignore:
        return
    row = conn.execute(
        sql.SQL(
            "SELECT s.line, k FROM {} AS s CROSS JOIN LATERAL jsonb_object_keys(s.doc) AS k "
            "WHERE s.doc IS NOT NULL AND k <> ALL(%s) ORDER BY s.line LIMIT 1"
        ).format(stage),
        (list(table_columns),),
    ).fetchone()
    if row is not None:
        raise RowRejectedError(
            f"{where}: line {row[0]}: key {row[1]!r} is not a column of the table "
            "(pass ignore_unknown_keys=True to skip such keys)"
        )


def _fails(conn: psycopg.Connection[Any], query: sql.Composed, params: Sequence[Any]) -> bool:
    """Run ``query`` in a savepoint; True when Postgres rejects it (a lost connection still raises)."""
    import psycopg

    try:
        with conn.transaction():
            conn.execute(query, params).fetchall()
    except psycopg.Error as exc:
        if is_connection_failure(exc):
            raise
        return True
    return False


def _locate_cast_failure(
    conn: psycopg.Connection[Any],
    dest: sql.Composable,
    stage: sql.Identifier,
    columns: Sequence[str],
    *,
    where: str,
    exc: Exception,
) -> RowRejectedError:
    """The error for a failed INSERT, naming the first line (by bisection) and key that do not cast.

    When no single value fails to cast (a constraint failed instead), Postgres's message alone."""
    from psycopg import sql

    generic = load_error(exc, where)
    span = sql.SQL(
        "SELECT count(*) FROM {stage} AS s CROSS JOIN LATERAL jsonb_populate_record(NULL::{dest}, s.doc) AS r "
        "WHERE s.doc IS NOT NULL AND s.line BETWEEN %s AND %s"
    ).format(stage=stage, dest=dest)
    row = conn.execute(sql.SQL("SELECT min(line), max(line) FROM {}").format(stage)).fetchone()
    if row is None or row[0] is None:
        return RowRejectedError(str(generic))
    lo, hi = int(row[0]), int(row[1])
    if not _fails(conn, span, (lo, hi)):
        return RowRejectedError(str(generic))
    while lo < hi:
        mid = (lo + hi) // 2
        if _fails(conn, span, (lo, mid)):
            hi = mid
        else:
            lo = mid + 1
    one = sql.SQL(
        "SELECT jsonb_populate_record(NULL::{dest}, jsonb_build_object(%s::text, s.doc -> %s::text)) "
        "FROM {stage} AS s WHERE s.line = %s"
    ).format(stage=stage, dest=dest)
    column = next((c for c in columns if _fails(conn, one, (c, c, lo))), None)
    primary = getattr(getattr(exc, "diag", None), "message_primary", None) or str(exc).strip()
    text = f"{where}: line {lo}" + (f", key {column}" if column else "") + f": {primary}"
    return RowRejectedError(text)
