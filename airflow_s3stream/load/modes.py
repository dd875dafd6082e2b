"""The load's modes in SQL: how each prepares the table and how it finishes, inside the one transaction.

``append`` COPYs into the table itself. ``replace`` TRUNCATEs it, or (``replace_via="swap"``) COPYs
into a new table made ``LIKE`` it and swaps the two at the end. ``upsert`` COPYs into a temporary
stage and merges it with ``INSERT ... ON CONFLICT DO UPDATE``. ``replace_interval`` takes the
table's advisory lock, then DELETEs the rows the bound ``interval_filter`` matches before each source.
Every identifier reaches SQL as ``psycopg.sql.Identifier``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

    from airflow_s3stream.load.options import LoadOptions
    from airflow_s3stream.load.target import TargetTable

__all__ = ["INTERVAL_LOCK_PREFIX", "SWAP_SUFFIX", "UPSERT_STAGE", "delete_interval", "prepare", "swap", "upsert"]

SWAP_SUFFIX = "__s3stream_new"  # the new table of replace_via="swap" while it loads
UPSERT_STAGE = "_s3stream_upsert"  # the temporary table an upsert COPYs into
INTERVAL_LOCK_PREFIX = "airflow_s3stream.load:"  # + the table's oid: the advisory lock replace_interval holds


def delete_interval(
    conn: psycopg.Connection[Any],
    target: TargetTable,
    options: LoadOptions,
    parameters: Mapping[str, Any] | Sequence[Any] | None,
) -> int:
    """``replace_interval``: DELETE the rows ``options.interval_filter`` matches with ``parameters``
    bound; returns how many."""
    from psycopg import sql

    condition = sql.SQL(options.interval_filter or "")  # type: ignore[arg-type]  # the DAG author's SQL
    statement = sql.SQL("DELETE FROM {} WHERE ({})").format(target.ident, condition)
    return max(conn.execute(statement, parameters or None).rowcount, 0)


def upsert(
    conn: psycopg.Connection[Any],
    target: TargetTable,
    options: LoadOptions,
    loaded_columns: Sequence[str],
    stage: sql.Composable,
) -> None:
    """``upsert``: move the staged rows into the table, ``INSERT ... ON CONFLICT DO UPDATE`` the
    ``loaded_columns`` (all the table's when empty) on ``options.conflict_columns``."""
    from psycopg import sql

    columns = list(loaded_columns) or list(target.columns)
    conflict = list(options.conflict_columns or ())
    updates = [c for c in columns if c not in conflict]
    action = (
        sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates)
        )
        if updates
        else sql.SQL("DO NOTHING")
    )
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    conn.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
            target.ident, cols, cols, stage, sql.SQL(", ").join(sql.Identifier(c) for c in conflict), action
        )
    )


def prepare(conn: psycopg.Connection[Any], options: LoadOptions, target: TargetTable) -> sql.Composable:
    """Set the mode up inside the load's transaction; returns where the COPYs go."""
    from psycopg import sql

    if options.mode == "replace" and options.replace_via == "truncate":
        conn.execute(sql.SQL("TRUNCATE {}").format(target.ident))
    elif options.mode == "replace":
        new = sql.Identifier(*target.parts[:-1], target.parts[-1] + SWAP_SUFFIX)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(new))
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(new, target.ident))
        return new
    elif options.mode == "upsert":
        stage = sql.Identifier(UPSERT_STAGE)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(stage))
        conn.execute(
            sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(stage, target.ident)
        )
        return stage
    elif options.mode == "replace_interval":
        # Two loads replacing the same interval at once (a re-export while the first load runs)
        # would each DELETE under a snapshot without the other's rows and both COPY: the rows
        # would be there twice. Loads into one table take turns here; readers are not blocked.
        conn.execute(
            sql.SQL("SELECT pg_advisory_xact_lock(hashtextextended({} || {}::regclass::oid::text, 0))").format(
                sql.Literal(INTERVAL_LOCK_PREFIX), sql.Literal(target.ident.as_string(conn))
            )
        )
    return target.ident


def swap(conn: psycopg.Connection[Any], target: TargetTable) -> None:
    """``replace_via="swap"``: drop the old table and give the new one its name."""
    from psycopg import sql

    new = sql.Identifier(*target.parts[:-1], target.parts[-1] + SWAP_SUFFIX)
    conn.execute(sql.SQL("DROP TABLE {}").format(target.ident))
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(new, sql.Identifier(target.parts[-1])))
