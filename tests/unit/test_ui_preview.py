"""The preview's decoding and its byte budget, on files in memory (CSV, JSON Lines, Parquet)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from airflow_s3stream.ui.preview import BudgetExceededError, PreviewBudget, parquet_rows, text_rows
from airflow_s3stream.units import KiB, MiB


class CountingFile(io.RawIOBase):
    """A seekable file over bytes that counts what is read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.inner = io.BytesIO(data)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.inner.seek(offset, whence)

    def tell(self) -> int:
        return self.inner.tell()

    def readinto(self, b: Any) -> int:
        n = self.inner.readinto(b)
        self.bytes_read += n
        return n


def _csv(rows: int) -> bytes:
    return ("id,name\n" + "".join(f"{i},name {i}\n" for i in range(rows))).encode()


def test_csv_shows_the_header_and_the_first_rows_and_knows_there_are_more() -> None:
    columns, rows, complete = text_rows(io.BytesIO(_csv(100)), "csv", None, PreviewBudget(max_rows=5))
    assert columns == ["id", "name"]
    assert rows == [[str(i), f"name {i}"] for i in range(5)]
    assert complete is False


def test_a_small_file_is_shown_whole_and_said_to_be_complete() -> None:
    _, rows, complete = text_rows(io.BytesIO(_csv(3)), "csv", None, PreviewBudget(max_rows=5))
    assert len(rows) == 3 and complete is True


def test_csv_settings_from_the_manifest_are_used_delimiter_and_no_header() -> None:
    data = b"1;a\n2;b\n"
    columns, rows, _ = text_rows(io.BytesIO(data), "csv", None, PreviewBudget(), {"delimiter": ";", "header": False})
    assert columns == ["column 1", "column 2"]
    assert rows == [["1", "a"], ["2", "b"]]


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_compressed_file_is_decompressed_incrementally_reading_only_its_first_blocks(compression: str) -> None:
    raw = (
        "id,name\n" + "".join(f"{i},{hashlib.sha256(str(i).encode()).hexdigest()}\n" for i in range(100_000))
    ).encode()
    packed = gzip.compress(raw) if compression == "gzip" else zstandard.ZstdCompressor().compress(raw)
    source = CountingFile(packed)
    _, rows, complete = text_rows(io.BufferedReader(source, 16 * KiB), "csv", compression, PreviewBudget(max_rows=10))
    assert rows[9][0] == "9" and complete is False
    assert len(packed) > 2 * MiB
    assert source.bytes_read < 300 * KiB


def test_json_lines_become_columns_in_first_seen_order_and_odd_lines_do_not_fail() -> None:
    lines = [json.dumps({"id": 1, "tags": ["a"]}), json.dumps({"id": 2, "extra": None}), "not json", "[1, 2]"]
    columns, rows, complete = text_rows(io.BytesIO("\n".join(lines).encode() + b"\n"), "jsonl", None, PreviewBudget())
    assert columns == ["id", "tags", "extra", "(not JSON)", "value"]
    assert rows[0][:2] == ["1", '["a"]']
    assert rows[2][3] == "not json"
    assert complete is True


def test_a_line_longer_than_the_text_budget_stops_the_preview_instead_of_growing() -> None:
    data = b"id,blob\n1," + b"x" * (3 * MiB) + b"\n2,y\n"
    source = CountingFile(data)
    budget = PreviewBudget(max_text=256 * KiB)
    _, rows, complete = text_rows(io.BufferedReader(source, 16 * KiB), "csv", None, budget)
    assert complete is False
    assert source.bytes_read < 300 * KiB
    assert all(len(v) <= budget.max_cell for r in rows for v in r)


def _parquet(rows: int, row_group_size: int) -> bytes:
    table = pa.table(
        {"id": pa.array(range(rows), pa.int64()), "payload": pa.array([f"{i:08d}" * 64 for i in range(rows)])}
    )
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=row_group_size, compression="none")
    return out.getvalue()


def test_parquet_reads_the_footer_and_the_first_row_group_only() -> None:
    data = _parquet(40_000, 2_000)  # ~20 row groups of ~1 MB
    source = CountingFile(data)
    columns, rows, complete, note = parquet_rows(source, PreviewBudget(max_rows=5, max_fetch=4 * MiB))
    assert columns == ["id", "payload"] and note == ""
    assert [r[0] for r in rows] == ["0", "1", "2", "3", "4"]
    assert complete is False
    assert source.bytes_read < len(data) / 5


def test_parquet_leaves_out_columns_that_do_not_fit_and_says_which() -> None:
    data = _parquet(20_000, 20_000)  # one row group: id ~160 KB, payload ~10 MB
    source = CountingFile(data)
    columns, rows, _, note = parquet_rows(source, PreviewBudget(max_rows=3, max_fetch=1 * MiB))
    assert columns == ["id"] and rows == [["0"], ["1"], ["2"]]
    assert "payload" in note
    assert source.bytes_read < 1 * MiB


def test_parquet_refuses_when_not_even_the_first_column_fits_naming_the_file() -> None:
    table = pa.table({"payload": pa.array(["x" * 1000 + str(i) for i in range(2_000)])})
    out = io.BytesIO()
    pq.write_table(table, out, compression="none")
    with pytest.raises(BudgetExceededError, match=r"s3://b/k\.parquet: the first row group"):
        parquet_rows(io.BytesIO(out.getvalue()), PreviewBudget(max_fetch=512 * KiB), name="s3://b/k.parquet")


def test_a_budget_too_small_for_one_block_is_refused() -> None:
    with pytest.raises(ValueError, match="max_fetch"):
        PreviewBudget(max_fetch=64 * KiB)
