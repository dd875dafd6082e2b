"""Result columns of a query, described by Postgres before any data moves.

``describe_query`` runs ``SELECT * FROM (<query>) LIMIT 0`` with the same client-side parameter
binding ``COPY`` uses (:func:`~airflow_s3stream.export.query.bound_parameters`), so a bad query
fails here, before an object is opened, with Postgres's own message. The :class:`Column` list
feeds the manifest and the Parquet type mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_s3stream.export.query import bound_parameters, run_guarded, subquery

if TYPE_CHECKING:
    import psycopg
    from psycopg.abc import Params

__all__ = ["Column", "describe_query"]


@dataclass(frozen=True)
class Column:
    """One result column as Postgres reports it.

    :param name: column name.
    :param oid: type OID (``pg_type.oid``).
    :param type_name: Postgres's display name, e.g. ``numeric(12,2)``, ``timestamp with time zone``.
    :param precision: numeric precision / fractional-second digits, when declared.
    :param scale: numeric scale, when declared.
    :param element_oid: for arrays, the element type's OID; else ``None``.
    """

    name: str
    oid: int
    type_name: str
    precision: int | None = None
    scale: int | None = None
    element_oid: int | None = None


def _element_oid(conn: psycopg.Connection[Any], oid: int) -> int | None:
    from psycopg.postgres import types

    info = types.get(oid)
    if info is not None:
        return int(info.oid) if info.array_oid == oid else None
    row = conn.execute("SELECT typelem FROM pg_type WHERE oid = %s AND typcategory = 'A'", (oid,)).fetchone()
    return int(row[0]) if row and row[0] else None


def describe_query(conn: psycopg.Connection[Any], sql: str, parameters: Params | None = None) -> list[Column]:
    """The columns ``sql`` returns; raises QueryError / ExportConnectionError like the export does."""
    from psycopg import ClientCursor

    parameters = bound_parameters(parameters)

    def describe() -> list[Column]:
        with ClientCursor(conn) as cur:
            cur.execute(subquery(sql, limit_zero=True), parameters)
            description = cur.description or []
        return [
            Column(
                name=d.name,
                oid=int(d.type_code),
                type_name=d.type_display,
                precision=d.precision,
                scale=d.scale,
                element_oid=_element_oid(conn, int(d.type_code)),
            )
            for d in description
        ]

    return run_guarded(describe, sql)
