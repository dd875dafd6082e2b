"""Postgres as a stream: COPY rows for CSV / JSON Lines, Arrow record batches for Parquet.

Both come from ``COPY (query) TO STDOUT`` on the caller's psycopg 3 connection, so the server
does the formatting and Python touches each row at most once (to count it). ``copy_rows`` yields
one row per item (libpq hands COPY data over row by row; a header is the first row);
``arrow_batches`` feeds the same stream to Arrow's C++ CSV parser and yields typed batches.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

from airflow_s3stream.errors import QueryError
from airflow_s3stream.export.query import bound_parameters, classify, embedded, query_label, run_guarded

if TYPE_CHECKING:
    import psycopg
    from psycopg.abc import Buffer, Params, Query

__all__ = ["CopyReader", "arrow_batches", "copy_rows"]

ARROW_BLOCK_SIZE = 1 * 1024 * 1024  # bytes of CSV per Arrow parse block (Arrow's own default)
_PARQUET_SESSION = (  # output forms the Arrow parser reads exactly, set on the export's own session
    "SELECT set_config('DateStyle', 'ISO, YMD', false), set_config('extra_float_digits', '3', false)"
)


def copy_rows(
    conn: psycopg.Connection[Any], statement: Query, parameters: Params | None, sql: str
) -> Generator[Buffer, None, None]:
    """Rows of ``COPY ... TO STDOUT``; psycopg errors become QueryError / ExportConnectionError."""
    import psycopg

    try:
        with conn.cursor() as cur, cur.copy(statement, bound_parameters(parameters)) as copy:
            yield from _buffered_rows(conn, copy)
    except psycopg.Error as exc:
        raise classify(exc, sql) from exc


def _buffered_rows(conn: psycopg.Connection[Any], copy: psycopg.Copy) -> Iterator[Buffer]:
    """The rows of an open ``COPY TO`` block, taking those libpq already holds without waiting.

    psycopg's own iterator runs a generator and a wait per row (about 2 us); here every row libpq
    has buffered costs one non-blocking ``PQgetCopyData`` call, which measured ~35% less CPU per
    row. Only when nothing is buffered does psycopg's ``read()`` wait for the socket (GIL released).
    When the server ends the COPY (done or failed) the final result is fetched exactly as
    psycopg's ``copy_from`` does. This leans on two private names of psycopg 3
    (``generators._fetch_many``, ``Copy._finished``); without them it falls back to psycopg's
    iterator.
    """
    import psycopg
    from psycopg import generators, pq

    fetch_many = getattr(generators, "_fetch_many", None)
    if fetch_many is None or not hasattr(copy, "_finished"):
        yield from copy
        return
    pgconn = conn.pgconn
    get_copy_data = pgconn.get_copy_data
    while True:
        nbytes, data = get_copy_data(1)
        if nbytes > 0:
            yield data
        elif nbytes == 0:  # nothing buffered: let psycopg wait for the next row
            row = copy.read()
            if not row:
                return
            yield row
        else:  # -1: the COPY ended; its final result says whether it succeeded
            results = conn.wait(fetch_many(pgconn))
            copy._finished = True
            if results[-1].status != pq.ExecStatus.COMMAND_OK:
                raise psycopg.errors.error_from_result(results[-1], encoding=conn.info.encoding)
            return


class CopyReader(io.RawIOBase):
    """A readable binary file over an iterator of byte chunks (what Arrow's reader pulls from)."""

    def __init__(self, chunks: Iterator[Buffer]) -> None:
        super().__init__()
        self._chunks = chunks
        self._buffer = memoryview(b"")
        self._pos = 0
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            if self._pos >= len(self._buffer):
                # Copied into one bytearray, not collected as a list: each row is a GC-tracked
                # memoryview, and thousands alive at once make the collector scan the whole heap.
                pending = bytearray()
                want = len(b)
                for chunk in self._chunks:
                    pending += chunk
                    if len(pending) >= want:
                        break
                if not pending:
                    return 0
                self._buffer = memoryview(pending)
                self._pos = 0
        except BaseException as exc:  # re-raised by arrow_batches with its own type, not Arrow's
            self.error = exc
            raise
        n = min(len(b), len(self._buffer) - self._pos)
        b[:n] = self._buffer[self._pos : self._pos + n]
        self._pos += n
        return n


def arrow_batches(
    conn: psycopg.Connection[Any], sql: str, parameters: Params | None, mapped: list[Any], schema: Any
) -> Generator[Any, None, None]:
    """Typed Arrow record batches of ``sql`` per the column mapping ``mapped``."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    from psycopg import sql as pgsql

    from airflow_s3stream.export.arrow_types import convert_batch, csv_convert_options, projection_sql

    run_guarded(lambda: conn.execute(_PARQUET_SESSION), sql)
    parameters = bound_parameters(parameters)
    # Column names are user data inside this template: escape format braces, and % when psycopg binds.
    projection = projection_sql(mapped).replace("{", "{{").replace("}", "}}")
    if parameters is not None:
        projection = projection.replace("%", "%%")
    select = "COPY (SELECT " + projection + " FROM {} AS _s3stream_q) TO STDOUT (FORMAT csv)"
    statement = pgsql.SQL(select).format(embedded(sql))  # type: ignore[arg-type]
    names = [alias for m in mapped for alias, _, _ in m.parsed]
    types = {alias: dtype for m in mapped for alias, _, dtype in m.parsed}
    parse, convert = csv_convert_options()
    rows = copy_rows(conn, statement, parameters, sql)
    first = next(rows, None)
    if first is None:  # no rows: Arrow's reader would refuse an empty stream
        return
    reader = CopyReader(itertools.chain([first], rows))
    try:
        batches = pcsv.open_csv(
            reader,
            read_options=pcsv.ReadOptions(column_names=names, block_size=ARROW_BLOCK_SIZE),
            parse_options=pcsv.ParseOptions(**parse),
            convert_options=pcsv.ConvertOptions(column_types=types, **convert),
        )
        for batch in batches:
            yield convert_batch(mapped, batch, schema)
    except pa.ArrowInvalid as exc:
        if reader.error is not None:
            raise reader.error from None
        raise QueryError(f"{query_label(sql)}: result cannot be read as Arrow: {exc}") from exc
    except Exception:
        if reader.error is not None:
            raise reader.error from None
        raise
    finally:
        reader.close()
