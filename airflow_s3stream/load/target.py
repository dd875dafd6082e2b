"""The table a load writes to: its quoted name and its columns, read from the catalog.

Every identifier reaches SQL as ``psycopg.sql.Identifier``; a table name is ``table`` or
``schema.table`` (a name that itself contains a dot is passed as a ``(schema, table)`` pair).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_s3stream.errors import ConfigurationError, RowRejectedError, TableNotFoundError

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

__all__ = ["TargetTable", "check_columns", "split_table_name"]


def split_table_name(table: str | Sequence[str]) -> tuple[str, ...]:
    """``"staging.orders"`` -> ``("staging", "orders")``; ``"orders"`` -> ``("orders",)``.

    :raises ConfigurationError: empty, or more than schema and table.
    """
    parts = tuple(table.split(".")) if isinstance(table, str) else tuple(table)
    if not parts or len(parts) > 2 or not all(isinstance(p, str) and p for p in parts):
        raise ConfigurationError(f"table {table!r} must be 'table' or 'schema.table'")
    return parts


@dataclass(frozen=True)
class TargetTable:
    """A table: its name parts, its columns in table order and their types (``pg_type.typname``)."""

    parts: tuple[str, ...]
    columns: tuple[str, ...]
    types: tuple[str, ...] = ()

    def types_of(self, names: Sequence[str]) -> list[str]:
        """The type names of the columns ``names`` (each a column of the table)."""
        by_name = dict(zip(self.columns, self.types, strict=True))
        return [by_name[n] for n in names]

    @property
    def ident(self) -> sql.Identifier:
        from psycopg import sql

        return sql.Identifier(*self.parts)

    @property
    def label(self) -> str:
        return ".".join(self.parts)

    @classmethod
    def read(cls, conn: psycopg.Connection[Any], parts: tuple[str, ...]) -> TargetTable:
        """Look the table up (its columns, in order) in the connection's current transaction, if any.

        ``to_regclass`` answers NULL for a table that does not exist (or that the search path does
        not reach), so a missing table leaves the transaction as it was.

        :raises TableNotFoundError: no such table, or no such schema; the message names it.
        """
        from psycopg import sql

        quoted = sql.Identifier(*parts).as_string(conn)
        found = conn.execute("SELECT to_regclass(%s)::oid", (quoted,)).fetchone()
        if found is None or found[0] is None:
            raise TableNotFoundError(_not_found(conn, parts))
        rows = conn.execute(
            "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (found[0],),
        ).fetchall()
        return cls(parts, tuple(str(r[0]) for r in rows), tuple(str(r[1]) for r in rows))


def _not_found(conn: psycopg.Connection[Any], parts: tuple[str, ...]) -> str:
    """``table s.t does not exist``, or ``table s.t: schema 's' does not exist`` when that is why."""
    from psycopg import sql

    label = ".".join(parts)
    if len(parts) == 2:
        schema = conn.execute("SELECT to_regnamespace(%s)::oid", (sql.Identifier(parts[0]).as_string(conn),)).fetchone()
        if schema is None or schema[0] is None:
            return f"table {label}: schema {parts[0]!r} does not exist"
    return f"table {label} does not exist"


def check_columns(table: TargetTable, names: Sequence[str], where: str) -> None:
    """Raise :class:`RowRejectedError` naming ``where`` (the file or parameter) unless every one of
    ``names`` is a column of ``table`` and none repeats."""
    unknown = [n for n in names if n not in table.columns]
    if unknown:
        raise RowRejectedError(
            f"{where}: {', '.join(repr(n) for n in unknown)} not a column of table {table.label} "
            f"(columns: {', '.join(table.columns)})"
        )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise RowRejectedError(f"{where}: column {name!r} appears twice")
        seen.add(name)
