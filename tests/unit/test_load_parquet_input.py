"""ParquetInput: whole row groups when they fit, column chunks in pieces otherwise; same batches either way."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_s3stream.load.parquet_input import ParquetInput

ROWS, GROUP = 3_000, 1_000


def write(path: Path) -> str:
    table = pa.table({"id": pa.array(range(ROWS), pa.int64()), "name": [f"name-{i:06d}" for i in range(ROWS)]})
    pq.write_table(table, path, row_group_size=GROUP)
    return str(path)


def test_largest_row_group_counts_the_stored_bytes_of_the_loaded_columns_only(tmp_path: Path) -> None:
    with ParquetInput(write(tmp_path / "f.parquet")) as parquet:
        both, ids = parquet.largest_row_group(["id", "name"]), parquet.largest_row_group(["id"])
        metadata = pq.read_metadata(tmp_path / "f.parquet")
    stored = [sum(metadata.row_group(i).column(j).total_compressed_size for j in range(2)) for i in range(3)]
    assert 0 < ids < both == max(stored)


def test_row_groups_are_read_whole_only_within_the_limit(tmp_path: Path) -> None:
    path = write(tmp_path / "f.parquet")
    with ParquetInput(path, row_group_read=0) as never, ParquetInput(path, row_group_read=1 << 20) as fits:
        assert not never.reads_row_groups_whole(["id", "name"]) and fits.reads_row_groups_whole(["id", "name"])
        limit = fits.largest_row_group(["id", "name"]) - 1
    with ParquetInput(path, row_group_read=limit) as too_small:
        assert not too_small.reads_row_groups_whole(["id", "name"])


def test_both_ways_give_the_same_rows_in_order_and_count_them(tmp_path: Path) -> None:
    path = write(tmp_path / "f.parquet")
    results = []
    for limit in (0, 1 << 20):
        with ParquetInput(path, buffer_size=4096, row_group_read=limit) as parquet:
            batches = list(parquet.batches(["name", "id"], batch_rows=400))
            results.append(pa.Table.from_batches(batches))
            assert parquet.rows_read == ROWS and max(b.num_rows for b in batches) == 400
    assert results[0].equals(results[1]) and results[0].column("id").to_pylist() == list(range(ROWS))
