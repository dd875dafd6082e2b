"""The preview on real S3 (moto's server, or RGW): the first rows of large exported files, read
with bounded ranged GETs counted at the server by the recording proxy, never the whole object."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_s3stream.errors import SourceError
from airflow_s3stream.hooks.s3 import S3StreamHook
from airflow_s3stream.ui.preview import PreviewBudget, preview_object
from airflow_s3stream.units import MiB
from tests.support.s3proxy import S3Proxy

RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def _ranged_gets(proxy: S3Proxy, key: str) -> list[tuple[str, str]]:
    """The Range headers of the GETs of ``key``, each as (first, last); both ends must be bounded."""
    spans = []
    for request in proxy.requests:
        if request.method == "GET" and request.key == key:
            match = RANGE.fullmatch(request.headers.get("range", ""))
            assert match, f"a GET of {key} without a Range header: {request.headers}"
            spans.append((match.group(1), match.group(2)))
    return spans


def _bytes_asked(spans: list[tuple[str, str]]) -> int:
    total = 0
    for first, last in spans:
        total += int(last) if first == "" else int(last) - int(first) + 1  # suffix range: "-N"
    return total


def _noise_csv(rows: int) -> bytes:
    lines = "".join(f"{i},{hashlib.sha256(str(i).encode()).hexdigest()}\n" for i in range(rows))
    return ("id,digest\n" + lines).encode()


@pytest.fixture
def proxied_client(proxy_aws_conn: Callable[..., str]) -> Any:
    return S3StreamHook(aws_conn_id=proxy_aws_conn("aws_preview")).get_s3_client()


def test_a_large_gzip_csv_is_previewed_from_its_first_blocks_only(
    proxied_client: Any, s3_client: Any, s3_proxy: S3Proxy, bucket: str
) -> None:
    body = gzip.compress(_noise_csv(250_000), compresslevel=1)  # ~9 MB compressed
    s3_client.put_object(Bucket=bucket, Key="exp/part-00000.csv.gz", Body=body)
    s3_proxy.clear()
    budget = PreviewBudget(max_rows=10)

    shown = preview_object(proxied_client, bucket, "exp/part-00000.csv.gz", budget=budget)

    assert shown.columns == ["id", "digest"]
    assert [r[0] for r in shown.rows] == [str(i) for i in range(10)]
    assert shown.compression == "gzip" and not shown.complete
    spans = _ranged_gets(s3_proxy, "exp/part-00000.csv.gz")
    asked = _bytes_asked(spans)
    assert len(spans) == shown.requests <= 4
    assert asked <= budget.max_fetch < len(body) / 4, f"asked for {asked} of {len(body)} bytes"
    assert shown.bytes_fetched <= asked


def test_a_large_parquet_file_is_previewed_from_its_footer_and_first_row_group(
    proxied_client: Any, s3_client: Any, s3_proxy: S3Proxy, bucket: str
) -> None:
    table = pa.table({"id": pa.array(range(60_000), pa.int64()), "note": [f"row {i:08d} " * 20 for i in range(60_000)]})
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=5_000, compression="none")
    s3_client.put_object(Bucket=bucket, Key="exp/part-00000.parquet", Body=out.getvalue())
    s3_proxy.clear()

    shown = preview_object(proxied_client, bucket, "exp/part-00000.parquet", budget=PreviewBudget(max_rows=5))

    assert shown.columns == ["id", "note"]
    assert [r[0] for r in shown.rows] == ["0", "1", "2", "3", "4"]
    asked = _bytes_asked(_ranged_gets(s3_proxy, "exp/part-00000.parquet"))
    assert asked <= 2 * MiB < out.tell() / 5, f"asked for {asked} of {out.tell()} bytes"


def test_json_lines_zstd_named_by_the_manifest_are_previewed(
    proxied_client: Any, s3_client: Any, s3_proxy: S3Proxy, bucket: str
) -> None:
    import zstandard

    lines = b"".join(b'{"id": %d, "name": "n%d"}\n' % (i, i) for i in range(1000))
    s3_client.put_object(Bucket=bucket, Key="exp/data", Body=zstandard.ZstdCompressor().compress(lines))

    shown = preview_object(proxied_client, bucket, "exp/data", file_format="jsonl", compression="zstd")

    assert shown.columns == ["id", "name"]
    assert shown.rows[2] == ["2", "n2"]


def test_a_missing_object_is_named(proxied_client: Any, bucket: str) -> None:
    with pytest.raises(SourceError, match=f"s3://{bucket}/exp/gone.csv"):
        preview_object(proxied_client, bucket, "exp/gone.csv")
