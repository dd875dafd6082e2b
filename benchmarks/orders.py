"""The table the export and load benchmarks move: one definition, so their MB/s compare."""

from __future__ import annotations

__all__ = ["orders_table_sql"]


def orders_table_sql(name: str, rows: int) -> str:
    """SQL that (re)creates the unlogged table ``name`` with ``rows`` orders (about 131 bytes of CSV each)."""
    return f"""
DROP TABLE IF EXISTS {name};
CREATE UNLOGGED TABLE {name} AS
SELECT g::int8 AS id,
       md5(g::text) AS customer,
       (g % 100000 * 1.37)::numeric(12, 2) AS amount,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS created_at,
       (ARRAY['new', 'paid', 'shipped', 'returned'])[1 + g % 4] AS status,
       'note, "quoted" ' || md5((g * 7)::text) AS note
FROM generate_series(1, {int(rows)}) g;
ANALYZE {name};
"""
