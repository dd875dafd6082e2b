"""Streaming BagIt validation of zipped bags made by bagit-python (local-file source, no server)."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest

from airflow_s3stream.archive.report import VerificationReport
from airflow_s3stream.archive.verify import VerifyConfig, verify_archive
from airflow_s3stream.errors import BagError
from tests.support.bags import edit_zip, make_bag, zip_bytes, zip_dir
from tests.support.local_sources import LocalFileSource

FILES = {
    "a.txt": b"alpha\n" * 1000,
    "sub/b.bin": os.urandom(70_000),
    "sub/deeper/c.csv": b"x,y\n1,2\n",
    "with space.txt": b"spaced",
}


@pytest.fixture
def bag_zip(tmp_path: Path) -> bytes:
    return zip_dir(make_bag(tmp_path, FILES))


def _verify(tmp_path: Path, data: bytes, mode: str = "auto") -> VerificationReport:
    path = tmp_path / f"archive-{hashlib.md5(data).hexdigest()}.zip"
    path.write_bytes(data)
    return verify_archive(LocalFileSource(path), VerifyConfig(mode=mode))


def _read(data: bytes, name: str) -> bytes:
    return zipfile.ZipFile(io.BytesIO(data)).read(name)


def _errors(report: VerificationReport) -> list[str]:
    return [str(e) for e in report.errors]


def test_valid_bag_in_a_top_level_directory(tmp_path: Path, bag_zip: bytes) -> None:
    report = _verify(tmp_path, bag_zip)
    assert report.valid, _errors(report)
    assert (report.mode, report.bag_root, report.bagit_version) == (
        "bagit",
        "bag/",
        "0.97",
    )  # bagit-python 1.8 writes 0.97
    assert report.payload_files == len(FILES)
    assert report.payload_bytes == sum(len(v) for v in FILES.values())
    assert report.algorithms == ["sha256", "sha512"]
    assert report.members_checked == report.members_total == len(FILES) + 6  # + 6 tag files


def test_valid_bag_at_the_archive_root(tmp_path: Path) -> None:
    data = zip_dir(make_bag(tmp_path, FILES, checksums=["md5"]), top=False)
    report = _verify(tmp_path, data, mode="bagit")
    assert report.valid, _errors(report)
    assert report.bag_root == "" and report.algorithms == ["md5"]


def test_auto_mode_checks_a_plain_zip_as_zip(tmp_path: Path) -> None:
    report = _verify(tmp_path, zip_bytes({"a": b"1", "b/c": b"2"}))
    assert report.valid and report.mode == "zip" and report.payload_files == 2


def test_bagit_mode_without_bagit_txt_says_so(tmp_path: Path, bag_zip: bytes) -> None:
    with pytest.raises(BagError, match=r"no bagit\.txt"):
        _verify(tmp_path, edit_zip(bag_zip, {"bag/bagit.txt": None}), mode="bagit")


def test_zip_mode_ignores_the_bag(tmp_path: Path, bag_zip: bytes) -> None:
    tampered = edit_zip(bag_zip, {"bag/data/a.txt": b"changed"})
    report = _verify(tmp_path, tampered, mode="zip")
    assert report.valid and report.mode == "zip" and report.algorithms == []


def test_changed_payload_file_fails_every_manifest_naming_it(tmp_path: Path, bag_zip: bytes) -> None:
    report = _verify(tmp_path, edit_zip(bag_zip, {"bag/data/a.txt": b"changed"}))
    errors = _errors(report)
    assert any(e.startswith("bag/data/a.txt: sha256 mismatch (manifest ") for e in errors), errors
    assert any(e.startswith("bag/data/a.txt: sha512 mismatch") for e in errors)
    assert any(e.startswith("bag/bag-info.txt: Payload-Oxum") for e in errors)


def test_payload_file_missing_from_the_manifest(tmp_path: Path, bag_zip: bytes) -> None:
    report = _verify(tmp_path, edit_zip(bag_zip, {"bag/data/extra.txt": b"new"}))
    assert "bag/data/extra.txt: payload file not listed in manifest-sha256.txt" in _errors(report)


def test_listed_file_missing_from_the_archive(tmp_path: Path, bag_zip: bytes) -> None:
    report = _verify(tmp_path, edit_zip(bag_zip, {"bag/data/sub/b.bin": None}))
    assert "bag/data/sub/b.bin: listed in manifest-sha256.txt but not in the archive" in _errors(report)


def _with_manifest(bag_zip: bytes, extra: bytes, replace: bool = False) -> bytes:
    name = "bag/manifest-sha256.txt"
    body = extra if replace else _read(bag_zip, name) + extra
    # keep the tag manifests out of the way: these tests are about the payload manifest
    return edit_zip(bag_zip, {name: body, "bag/tagmanifest-sha256.txt": None, "bag/tagmanifest-sha512.txt": None})


def test_bad_manifest_line_names_the_manifest_and_line(tmp_path: Path, bag_zip: bytes) -> None:
    manifest = _read(bag_zip, "bag/manifest-sha256.txt")
    lines = manifest.count(b"\n")
    report = _verify(tmp_path, _with_manifest(bag_zip, b"not-a-valid-line\n"))
    assert f"bag/manifest-sha256.txt: line {lines + 1}: expected '<digest> <path>'" in "\n".join(_errors(report))


def test_same_file_twice_with_same_digest_is_a_warning(tmp_path: Path, bag_zip: bytes) -> None:
    first = _read(bag_zip, "bag/manifest-sha256.txt").splitlines(keepends=True)[0]
    report = _verify(tmp_path, _with_manifest(bag_zip, first))
    assert report.valid, _errors(report)
    assert any("listed twice with the same digest" in str(w) for w in report.warnings)


def test_same_file_twice_with_different_digests_is_an_error(tmp_path: Path, bag_zip: bytes) -> None:
    first = _read(bag_zip, "bag/manifest-sha256.txt").splitlines()[0]
    path = first.split(None, 1)[1]
    report = _verify(tmp_path, _with_manifest(bag_zip, b"0" * 64 + b"  " + path + b"\n"))
    assert any("listed twice with different digests" in e for e in _errors(report))


def test_star_markers_dot_slash_and_percent_encoding_are_accepted(tmp_path: Path) -> None:
    bag = make_bag(tmp_path, {"100%.txt": b"percent", "plain.txt": b"p"}, checksums=["sha256"])
    data = zip_dir(bag)
    lines = [
        f"{hashlib.sha256(b'percent').hexdigest()} *data/100%25.txt".encode(),
        f"{hashlib.sha256(b'p').hexdigest()}  ./data/plain.txt".encode(),
    ]
    report = _verify(tmp_path, _with_manifest(data, b"\n".join(lines) + b"\n", replace=True))
    assert report.valid, _errors(report)
    assert any("md5sum-style '*' marker" in str(w) for w in report.warnings)


def test_out_of_scope_manifest_path_is_an_error(tmp_path: Path, bag_zip: bytes) -> None:
    report = _verify(tmp_path, _with_manifest(bag_zip, b"0" * 64 + b"  ../etc/passwd\n"))
    assert any("'../etc/passwd' is out of scope" in e for e in _errors(report))


def test_byte_order_mark_in_bagit_txt_is_an_error(tmp_path: Path, bag_zip: bytes) -> None:
    decl = _read(bag_zip, "bag/bagit.txt")
    report = _verify(tmp_path, edit_zip(bag_zip, {"bag/bagit.txt": b"\xef\xbb\xbf" + decl}))
    assert any(e.startswith("bag/bagit.txt: starts with a byte-order mark") for e in _errors(report))


def test_corrupted_manifest_member_is_one_error_not_a_cascade(tmp_path: Path) -> None:
    data = bytearray(zip_dir(make_bag(tmp_path, FILES), method=zipfile.ZIP_STORED))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("bag/manifest-sha256.txt")
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + 5] ^= 0x01
    errors = _errors(_verify(tmp_path, bytes(data)))
    assert len(errors) == 1 and errors[0].startswith("bag/manifest-sha256.txt: CRC-32 mismatch"), errors


def test_unknown_tag_file_encoding_is_an_error(tmp_path: Path, bag_zip: bytes) -> None:
    data = edit_zip(bag_zip, {"bag/bagit.txt": b"BagIt-Version: 1.0\nTag-File-Character-Encoding: KLINGON-8\n"})
    assert "bag/bagit.txt: unknown Tag-File-Character-Encoding 'KLINGON-8'" in _errors(_verify(tmp_path, data))


def test_tag_manifest_catches_a_changed_tag_file(tmp_path: Path, bag_zip: bytes) -> None:
    info = _read(bag_zip, "bag/bag-info.txt") + b"Contact-Name: someone else\n"
    report = _verify(tmp_path, edit_zip(bag_zip, {"bag/bag-info.txt": info}))
    assert any(e.startswith("bag/bag-info.txt: sha256 mismatch") for e in _errors(report))


def _holey(tmp_path: Path, fetch: bytes, drop: bool = True) -> bytes:
    bag = make_bag(tmp_path, {"here.txt": b"here", "remote.txt": b"remote!"}, checksums=["sha256"])
    changes: dict[str, bytes | None] = {"bag/fetch.txt": fetch, "bag/tagmanifest-sha256.txt": None}
    if drop:
        changes["bag/data/remote.txt"] = None
    return edit_zip(zip_dir(bag), changes)


def test_holey_bag_is_reported_incomplete_and_nothing_is_fetched(tmp_path: Path) -> None:
    data = _holey(tmp_path, b"https://example.org/remote.txt 7 data/remote.txt\n")
    report = _verify(tmp_path, data)
    assert not report.valid and report.fetch_entries == 1 and report.payload_files == 1
    assert _errors(report) == [
        "bag/data/remote.txt: listed in fetch.txt (https://example.org/remote.txt) but not in the archive: "
        "the bag is holey, so incomplete until it is fetched (reported, not fetched)"
    ]


def test_fetch_entry_whose_file_is_present_is_only_a_warning(tmp_path: Path) -> None:
    data = _holey(tmp_path, b"https://example.org/remote.txt 7 data/remote.txt\n", drop=False)
    report = _verify(tmp_path, data)
    assert report.valid, _errors(report)
    assert any("the file is present (not fetched)" in str(w) for w in report.warnings)


def test_fetch_entries_with_bad_urls_or_paths_are_errors(tmp_path: Path) -> None:
    data = _holey(tmp_path, b"not-a-url 7 data/remote.txt\nhttps://example.org/x - ../escape\n", drop=False)
    errors = _errors(_verify(tmp_path, data))
    assert "bag/fetch.txt: malformed URL 'not-a-url' for data/remote.txt" in errors
    assert "bag/fetch.txt: path '../escape' is out of scope (not under data/)" in errors


def test_names_differing_only_by_case_are_warned(tmp_path: Path) -> None:
    bag = make_bag(tmp_path, {"Readme.txt": b"1", "README.txt": b"2"}, checksums=["md5"])
    report = _verify(tmp_path, zip_dir(bag))
    assert report.valid
    assert any("only by case" in str(w) for w in report.warnings)


def test_rfc_8493_version_10_bags_are_accepted(tmp_path: Path, bag_zip: bytes) -> None:
    data = edit_zip(bag_zip, {"bag/bagit.txt": b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"})
    data = edit_zip(data, {"bag/tagmanifest-sha256.txt": None, "bag/tagmanifest-sha512.txt": None})
    report = _verify(tmp_path, data)
    assert report.valid, _errors(report)
    assert report.bagit_version == "1.0"


def test_report_dict_is_json_serialisable_and_names_members(tmp_path: Path, bag_zip: bytes) -> None:
    import json

    report = _verify(tmp_path, edit_zip(bag_zip, {"bag/data/a.txt": b"changed"}))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["valid"] is False and data["error_count"] == len(report.errors)
    assert any(e["member"] == "bag/data/a.txt" and "sha256 mismatch" in e["reason"] for e in data["errors"])
    assert data["requests"] >= 1 and data["bytes_read"] == len(edit_zip(bag_zip, {"bag/data/a.txt": b"changed"}))
