"""The four modes, the sources (prefix, ZIP member) and asset-event sources, over real services."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_s3stream.operators import S3ToPostgresStreamOperator


@pytest.fixture
def schema(pg_conn: Any) -> str:
    pg_conn.execute(
        "CREATE TABLE orders (id int PRIMARY KEY, created_at timestamptz NOT NULL, amount numeric(10, 2), note text)"
    )
    pg_conn.execute(
        "INSERT INTO orders VALUES (1, '2024-01-01 10:00+00', 1, 'day1'), (2, '2024-01-02 10:00+00', 2, 'day2'), "
        "(3, '2024-01-03 10:00+00', 3, 'day3')"
    )
    return str(pg_conn.execute("SELECT current_schema()").fetchone()[0])


def rows(conn: Any, schema: str) -> list[tuple[Any, ...]]:
    return [
        (r[0], r[1].isoformat(), float(r[2]) if r[2] is not None else None, r[3])
        for r in conn.execute(
            f"SELECT id, created_at AT TIME ZONE 'UTC', amount, note FROM {schema}.orders ORDER BY id"
        )
    ]


def put(s3_client: Any, bucket: str, key: str, body: bytes) -> None:
    s3_client.put_object(Bucket=bucket, Key=key, Body=body)


DAY2 = b"id,created_at,amount,note\n20,2024-01-02 01:00:00+00,20.5,new-a\n21,2024-01-02 23:00:00+00,21.5,new-b\n"


def load(bucket: str, key: str | None, schema: str, **kwargs: Any) -> dict[str, Any]:
    context = kwargs.pop("context", {})
    op = S3ToPostgresStreamOperator(task_id="load", s3_bucket=bucket, s3_key=key, table=f"{schema}.orders", **kwargs)
    return op.execute(context)


def replace_day(bucket: str, schema: str, key: str = "day2.csv") -> dict[str, Any]:
    return load(
        bucket,
        key,
        schema,
        mode="replace_interval",
        interval_filter="created_at >= %(start)s AND created_at < %(end)s",
        parameters={"start": "2024-01-02T00:00:00+00:00", "end": "2024-01-03T00:00:00+00:00"},
    )


def test_replace_interval_replaces_only_the_interval_and_a_rerun_gives_the_same_table(
    pg_conn: Any, schema: str, bucket: str, s3_client: Any
) -> None:
    put(s3_client, bucket, "day2.csv", DAY2)
    first = replace_day(bucket, schema)
    assert first["deleted_rows"] == 1 and first["rows"] == 2 and first["mode"] == "replace_interval"
    after_first = rows(pg_conn, schema)
    assert [r[0] for r in after_first] == [1, 3, 20, 21]
    second = replace_day(bucket, schema)
    assert second["deleted_rows"] == 2
    assert rows(pg_conn, schema) == after_first


def test_replace_interval_binds_parameters_it_never_splices_them(
    pg_conn: Any, schema: str, bucket: str, s3_client: Any
) -> None:
    put(s3_client, bucket, "day2.csv", DAY2)
    result = load(
        bucket,
        "day2.csv",
        schema,
        mode="replace_interval",
        interval_filter="note = %(note)s",
        parameters={"note": "day1' OR 'x' = 'x"},
    )
    assert result["deleted_rows"] == 0  # an injection would have deleted every row
    assert [r[0] for r in rows(pg_conn, schema)] == [1, 2, 3, 20, 21]


def test_upsert_updates_existing_keys_and_inserts_new_ones(
    pg_conn: Any, schema: str, bucket: str, s3_client: Any
) -> None:
    put(
        s3_client,
        bucket,
        "u.csv",
        b"id,created_at,amount,note\n2,2024-01-02 10:00:00+00,99.5,updated\n7,2024-01-07 00:00:00+00,7,new\n",
    )
    result = load(bucket, "u.csv", schema, mode="upsert", conflict_columns=["id"])
    assert result["rows"] == 2
    got = rows(pg_conn, schema)
    assert [r[0] for r in got] == [1, 2, 3, 7]
    assert got[1][2:] == (99.5, "updated") and got[3][3] == "new" and got[0][3] == "day1"


def test_upsert_with_a_column_subset_leaves_the_other_columns_alone(
    pg_conn: Any, schema: str, bucket: str, s3_client: Any
) -> None:
    put(s3_client, bucket, "u.csv", b"id,created_at,amount\n2,2024-01-02 10:00:00+00,50\n")
    load(bucket, "u.csv", schema, mode="upsert", conflict_columns=["id"])
    assert rows(pg_conn, schema)[1][2:] == (50.0, "day2")


@pytest.mark.parametrize("replace_via", ["truncate", "swap"])
def test_replace_empties_the_table_and_loads(
    pg_conn: Any, schema: str, bucket: str, s3_client: Any, replace_via: str
) -> None:
    put(s3_client, bucket, "day2.csv", DAY2)
    result = load(bucket, "day2.csv", schema, mode="replace", replace_via=replace_via)
    assert result["rows"] == 2
    assert [r[0] for r in rows(pg_conn, schema)] == [20, 21]
    # the swapped-in table keeps the primary key
    indexes = pg_conn.execute(f"SELECT count(*) FROM pg_indexes WHERE schemaname = '{schema}' AND tablename = 'orders'")
    assert indexes.fetchone()[0] == 1


def test_replace_via_swap_that_fails_keeps_the_old_table(
    pg_conn: Any, schema: str, bucket: str, s3_client: Any
) -> None:
    put(s3_client, bucket, "bad.csv", b"id,created_at,amount,note\n5,not-a-time,1,x\n")
    with pytest.raises(Exception, match="line 2, column created_at"):
        load(bucket, "bad.csv", schema, mode="replace", replace_via="swap")
    assert [r[0] for r in rows(pg_conn, schema)] == [1, 2, 3]
    left = pg_conn.execute(f"SELECT count(*) FROM pg_tables WHERE schemaname = '{schema}'").fetchone()[0]
    assert left == 1  # no half-loaded new table left behind


def test_prefix_loads_every_part_in_key_order_skipping_markers(
    pg_conn: Any, schema: str, bucket: str, s3_client: Any
) -> None:
    header = b"id,created_at,amount,note\n"
    put(s3_client, bucket, "pfx/part-2.csv", header + b"12,2024-02-01 00:00:00+00,1,b\n")
    put(s3_client, bucket, "pfx/part-1.csv", header + b"11,2024-02-01 00:00:00+00,1,a\n")
    put(s3_client, bucket, "pfx/_SUCCESS", b"")
    result = load(bucket, "pfx", schema)
    assert [f["key"] for f in result["files"]] == ["pfx/part-1.csv", "pfx/part-2.csv"]
    assert result["rows"] == 2


def test_zip_member_is_loaded_and_its_crc_checked(pg_conn: Any, schema: str, bucket: str, s3_client: Any) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bag/data/readme.txt", "not this one")
        archive.writestr("bag/data/orders.csv", DAY2)
    put(s3_client, bucket, "bag.zip", buf.getvalue())
    result = load(bucket, "bag.zip", schema, zip_member="bag/data/orders.csv")
    assert result["rows"] == 2 and result["files"][0]["member"] == "bag/data/orders.csv"
    # flip one byte of a stored member's data: the CRC check must fail the load and roll it back
    plain = io.BytesIO()
    with zipfile.ZipFile(plain, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("orders.csv", DAY2.replace(b"20,", b"30,").replace(b"21,", b"31,"))
    corrupt = bytearray(plain.getvalue())
    corrupt[corrupt.index(b"new-a")] = ord("N")
    put(s3_client, bucket, "bad.zip", bytes(corrupt))
    with pytest.raises(Exception, match=r"member orders\.csv: CRC-32 mismatch"):
        load(bucket, "bad.zip", schema, zip_member="orders.csv")
    assert [r[0] for r in rows(pg_conn, schema)] == [1, 2, 3, 20, 21]


def _event(bucket: str, key: str, start: dt.datetime, when: int) -> Any:
    run = SimpleNamespace(data_interval_start=start, data_interval_end=start + dt.timedelta(days=1))
    return SimpleNamespace(
        extra={"bucket": bucket, "key": key, "rows": 2, "bytes": 1},
        source_dag_run=run,
        timestamp=dt.datetime(2024, 5, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=when),
    )


def test_asset_events_each_replace_their_own_interval(pg_conn: Any, schema: str, bucket: str, s3_client: Any) -> None:
    put(s3_client, bucket, "d2.csv", DAY2)
    put(s3_client, bucket, "d3.csv", b"id,created_at,amount,note\n30,2024-01-03 05:00:00+00,3,new-c\n")
    day2 = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    events = {
        "orders_asset": [_event(bucket, "d3.csv", day2 + dt.timedelta(days=1), 2), _event(bucket, "d2.csv", day2, 1)]
    }
    op = S3ToPostgresStreamOperator(
        task_id="load",
        table=f"{schema}.orders",
        source_from_asset_event=True,
        mode="replace_interval",
        interval_filter="created_at >= %(source_interval_start)s AND created_at < %(source_interval_end)s",
    )
    result = op.execute({"triggering_asset_events": events})
    assert [f["key"] for f in result["files"]] == ["d2.csv", "d3.csv"]  # in event order
    assert result["deleted_rows"] == 2 and result["rows"] == 3
    assert [r[0] for r in rows(pg_conn, schema)] == [1, 20, 21, 30]


def test_two_loads_replacing_the_same_interval_at_once_take_turns(
    pg_conn: Any, pg_uri: str, schema: str, bucket: str, s3_client: Any
) -> None:
    """A re-export loaded while the first load of the day is still open must not double the day."""
    import threading
    import time

    import psycopg

    from airflow_s3stream.hooks.s3 import S3StreamHook
    from airflow_s3stream.load import LoadOptions, LoadStep, SourceSpec, load_into_postgres

    put(s3_client, bucket, "day2.csv", DAY2)
    options = LoadOptions(mode="replace_interval", interval_filter="created_at >= %(start)s AND created_at < %(end)s")
    day = {"start": "2024-01-02T00:00:00+00:00", "end": "2024-01-03T00:00:00+00:00"}
    first = psycopg.connect(pg_uri)
    try:
        first.execute("SELECT 1")  # an open transaction: the load's becomes a savepoint, uncommitted
        load_into_postgres(
            first,
            S3StreamHook().get_s3_client(),
            table=f"{schema}.orders",
            steps=[LoadStep(SourceSpec(bucket, "day2.csv"), day)],
            options=options,
        )
        outcome: dict[str, Any] = {}
        second = threading.Thread(target=lambda: outcome.setdefault("result", replace_day(bucket, schema)))
        second.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the second load waits for the first's lock
            waiting = pg_conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory' "
                "AND query LIKE '%pg_advisory_xact_lock%'"
            ).fetchone()[0]
            if waiting:
                break
            time.sleep(0.1)
        assert waiting, "the second load did not wait for the first"
        first.commit()
    finally:
        first.close()
    second.join(timeout=60)
    assert outcome["result"]["deleted_rows"] == 2  # it saw the first load's rows and replaced them
    assert [r[0] for r in rows(pg_conn, schema)] == [1, 3, 20, 21]
