"""Parsing BagIt tag files from bytes: bagit.txt, bag-info.txt, manifests, fetch.txt."""

from __future__ import annotations

import pytest

from airflow_s3stream.archive.bagit import (
    TagFileError,
    decode_path,
    parse_bag_info,
    parse_bagit_txt,
    parse_fetch,
    parse_manifest,
    parse_payload_oxum,
)


def test_declaration_gives_version_and_encoding() -> None:
    decl = parse_bagit_txt(b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    assert decl.version == (1, 0) and decl.encoding == "UTF-8"


def test_declaration_with_byte_order_mark_is_an_error() -> None:
    with pytest.raises(TagFileError, match="byte-order mark"):
        parse_bagit_txt(b"\xef\xbb\xbfBagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"BagIt-Version: 1.0\n", "exactly 2 lines"),
        (b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\nExtra: x\n", "exactly 2 lines"),
        (b"Tag-File-Character-Encoding: UTF-8\nBagIt-Version: 1.0\n", "line 1"),
        (b"BagIt-Version: 1.0\nEncoding: UTF-8\n", "line 2"),
    ],
)
def test_declaration_must_be_exactly_the_two_lines(text: bytes, reason: str) -> None:
    with pytest.raises(TagFileError, match=reason):
        parse_bagit_txt(text)


def test_bag_info_folded_lines_and_repeated_tags() -> None:
    tags = parse_bag_info(b"Payload-Oxum: 10.2\nExternal-Description: one\n  two\nContact-Name: a\nContact-Name: b\n")
    assert tags["Payload-Oxum"] == ["10.2"]
    assert tags["External-Description"] == ["one  two"]  # folded, as bagit-python joins it
    assert tags["Contact-Name"] == ["a", "b"]


def test_bag_info_line_without_colon_is_an_error() -> None:
    with pytest.raises(TagFileError, match="invalid tag"):
        parse_bag_info(b"Payload-Oxum: 1.1\nthis is not a tag\n")


def test_payload_oxum_parses_and_rejects_garbage() -> None:
    assert parse_payload_oxum(" 123.4 ") == (123, 4)
    with pytest.raises(TagFileError, match="malformed Payload-Oxum"):
        parse_payload_oxum("123")


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("data/a%0Ab", "data/a\nb"),
        ("data/a%0d%0Ab", "data/a\r\nb"),
        ("data/100%25", "data/100%"),
        ("./data/x", "data/x"),
    ],
)
def test_paths_are_percent_decoded(encoded: str, decoded: str) -> None:
    assert decode_path(encoded) == decoded


def test_manifest_lines_with_spaces_star_markers_and_upper_case_digests() -> None:
    manifest = parse_manifest(b"ABCD  data/with space.txt\nef01 *data/star\n\n", "manifest-md5.txt", "md5")
    assert [(e.digest, e.path, e.line) for e in manifest.entries] == [
        ("abcd", "data/with space.txt", 1),
        ("ef01", "data/star", 2),
    ]
    assert manifest.warnings == ["manifest-md5.txt line 2: md5sum-style '*' marker before 'data/star'"]


@pytest.mark.parametrize("line", [b"justonefield", b"zzzz data/x"])
def test_bad_manifest_line_names_file_and_line(line: bytes) -> None:
    with pytest.raises(TagFileError, match=r"manifest-sha256\.txt line 2"):
        parse_manifest(b"00 data/a\n" + line + b"\n", "manifest-sha256.txt", "sha256")


def test_fetch_lines() -> None:
    entries = parse_fetch(b"https://example.org/a 12 data/a\nhttps://example.org/b - data/b%25\n")
    assert [(e.url, e.length, e.path) for e in entries] == [
        ("https://example.org/a", 12, "data/a"),
        ("https://example.org/b", None, "data/b%"),
    ]
    with pytest.raises(TagFileError, match=r"fetch\.txt line 1"):
        parse_fetch(b"https://example.org/a twelve data/a\n")
