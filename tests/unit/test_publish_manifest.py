"""The manifest's one writer and one reader keep today's format byte for byte, and name what is wrong.

``data/export_manifest_v1.json`` is a manifest as the export wrote it before the publish core
existed (``export/manifest.py`` and the commit's ``index_entry``, ``json.dumps(indent=2)``), for
two staged files published with CRC32C checksums and a query holding a non-ASCII character.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_s3stream.errors import SourceError
from airflow_s3stream.publish.manifest import (
    MANIFEST_NAME,
    MANIFEST_VERSION,
    build_manifest,
    csv_settings,
    encode_manifest,
    parse_manifest,
    with_published,
)
from airflow_s3stream.s3.multipart.result import UploadResult

WRITTEN_BEFORE = (Path(__file__).parent / "data" / "export_manifest_v1.json").read_bytes().removesuffix(b"\n")
KEY = "exp/day/_manifest.json"
FILES: list[dict[str, Any]] = [
    {"key": "exp/day/part-00000.csv.gz", "rows": 6000, "bytes": 6291456},
    {"key": "exp/day/part-00001.csv.gz", "rows": 17, "bytes": 512},
]
PUBLISHED = {
    "exp/day/part-00000.csv.gz": UploadResult(
        "b", FILES[0]["key"], 6291456, 2, 5242880, '"9b2cf535f27731c974343645a3985328-2"', "CRC32C", "COMPOSITE",
        "yZRlqg==-2", 0.1,
    ),
    "exp/day/part-00001.csv.gz": UploadResult(
        "b", FILES[1]["key"], 512, 1, 512, '"0f343b0931126a20f133d67c2b018a3b-1"', "CRC32C", "COMPOSITE",
        "AAAAAA==-1", 0.1,
    ),
}  # fmt: skip


def test_the_writer_writes_todays_manifest_byte_for_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "strftime", lambda fmt, t: "2026-12-05T11:30:00Z")
    document = build_manifest(
        file_format="csv",
        compression="gzip",
        csv=csv_settings("csv", delimiter=";", header=True, null_string="\\N"),
        query="SELECT id, name FROM t WHERE d = 'é'",
        columns=[{"name": "id", "type": "int8"}, {"name": "name", "type": "text"}],
        files=FILES,
        seconds=2.50049,
    )
    assert encode_manifest(with_published(document, PUBLISHED)) == WRITTEN_BEFORE


def test_a_manifest_written_before_reads_and_writes_back_byte_for_byte() -> None:
    manifest = parse_manifest(WRITTEN_BEFORE, "b", KEY)
    assert encode_manifest(manifest.document) == WRITTEN_BEFORE
    assert (manifest.version, manifest.file_format, manifest.compression, manifest.rows) == (1, "csv", "gzip", 6017)
    assert manifest.csv == {"delimiter": ";", "header": True, "null_string": "\\N"}
    first = manifest.files[0]
    assert (first.key, first.rows, first.bytes, first.etag) == (
        "exp/day/part-00000.csv.gz",
        6000,
        6291456,
        '"9b2cf535f27731c974343645a3985328-2"',
    )
    assert (first.checksum_algorithm, first.checksum_value) == ("CRC32C", "yZRlqg==-2")


def test_only_published_files_get_an_etag_and_checksum() -> None:
    document = build_manifest(
        file_format="parquet", compression=None, csv=None, query=None, columns=[], files=FILES, seconds=0.0
    )
    published = with_published(document, {FILES[1]["key"]: PUBLISHED[FILES[1]["key"]]})
    assert published["files"][0] == FILES[0]
    assert published["files"][1]["checksum"]["value"] == "AAAAAA==-1"
    assert document["files"] == FILES  # the document given is left as it was
    assert (published["rows"], published["bytes"], published["version"]) == (6017, 6291968, MANIFEST_VERSION)
    assert csv_settings("parquet", delimiter=",", header=True, null_string="") is None
    assert MANIFEST_NAME == "_manifest.json"


def _with(**changes: object) -> bytes:
    document = json.loads(WRITTEN_BEFORE)
    document.update(changes)
    return json.dumps(document).encode()


def _with_file(**changes: object) -> bytes:
    document = json.loads(WRITTEN_BEFORE)
    document["files"][0].update(changes)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff{", "not valid JSON"),
        (_with(version="1"), "version must be a positive integer, got '1'"),
        (_with(version=2), "version 2 is newer than this package reads"),
        (_with(files={"key": "a"}), "no 'files' list"),
        (_with(format=["csv"]), r"format must be a string, got \['csv'\]"),
        (_with(compression=9), "compression must be a string, got 9"),
        (_with(csv=";"), "csv must be an object, got ';'"),
        (_with(rows=-5), "rows must be a non-negative integer, got -5"),
        (_with_file(key=""), r"files\[0\] has no key"),
        (_with_file(bytes="6291456"), "bytes of exp/day/part-00000.csv.gz must be a non-negative integer"),
        (_with_file(rows=True), "rows of exp/day/part-00000.csv.gz must be a non-negative integer, got True"),
        (_with_file(etag=123), "etag of exp/day/part-00000.csv.gz must be a string, got 123"),
        (_with_file(checksum="crc"), "checksum of exp/day/part-00000.csv.gz must be an object, got 'crc'"),
        (
            _with_file(checksum={"algorithm": "CRC32C", "value": 7}),
            "checksum.value of exp/day/part-00000.csv.gz must be a string, got 7",
        ),
    ],
)
def test_a_malformed_manifest_is_refused_naming_its_key_and_the_field(body: bytes, message: str) -> None:
    with pytest.raises(SourceError, match=r"^manifest s3://b/exp/day/_manifest\.json: " + message):
        parse_manifest(body, "b", KEY)
