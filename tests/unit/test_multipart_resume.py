"""The resume decision, the state format, source classification and part bodies (pure, no server)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from airflow_s3stream.errors import SourceChangedError, SourceError
from airflow_s3stream.progress import Progress
from airflow_s3stream.s3.multipart.bodies import BufferBody, FileRange, hashing_raw, part_body
from airflow_s3stream.s3.multipart.part_record import PartRecord
from airflow_s3stream.upload.local_file import FileSha256, LocalFile
from airflow_s3stream.upload.resume import ResumeState, SourceFingerprint, decide_resume, state_key
from airflow_s3stream.upload.sources import classify_source, redact_uri

SOURCE = SourceFingerprint("file", "/data/x.bin", 30, "1700000000000000000", "00ff")
MiB = 1024 * 1024


def state(**kw: Any) -> ResumeState:
    base: dict[str, Any] = {
        "bucket": "b",
        "key": "k",
        "upload_id": "u1",
        "source": SOURCE,
        "part_size": 5 * MiB,
        "checksum_algorithm": "CRC32C",
        "checksum_type": "COMPOSITE",
        "parts": {
            1: PartRecord(1, 10, '"e1"', "c1==", "m1"),
            2: PartRecord(2, 10, '"e2"', "c2==", "m2"),
            3: PartRecord(3, 10, '"e3"', "c3==", "m3"),
        },
    }
    base.update(kw)
    return ResumeState(**base)


def listed(*numbers: int, **override: dict[str, Any]) -> dict[int, dict[str, Any]]:
    parts = {n: {"PartNumber": n, "ETag": f'"e{n}"', "Size": 10} for n in numbers}
    for name, values in override.items():
        parts[int(name[1:])].update(values)
    return parts


def decide(st: ResumeState | None, lst: dict[int, dict[str, Any]] | None, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "bucket": "b",
        "key": "k",
        "source": SOURCE,
        "part_size": 5 * MiB,
        "checksum_algorithm": "CRC32C",
        "checksum_type": "COMPOSITE",
    }
    args.update(kw)
    return decide_resume(st, listed=lst, **args)


def test_resume_reuses_only_parts_recorded_and_still_listed_identically() -> None:
    decision = decide(state(), listed(1, 2, 4, p2={"ETag": '"other"'}))
    assert decision.resume
    assert sorted(decision.trusted) == [1]  # 2: ETag differs; 3: not listed; 4: not recorded


def test_part_with_a_different_size_or_server_checksum_is_not_trusted() -> None:
    decision = decide(state(), listed(1, 2, 3, p1={"Size": 9}, p3={"ChecksumCRC32C": "zz=="}))
    assert sorted(decision.trusted) == [2]


def test_part_without_a_recorded_checksum_is_not_trusted() -> None:
    st = state(parts={1: PartRecord(1, 10, '"e1"', "", "")})
    assert decide(st, listed(1)).trusted == {}


def test_changed_source_starts_fresh_and_aborts_the_old_upload() -> None:
    changed = SourceFingerprint("file", "/data/x.bin", 30, "1700000000000000000", "ffff")
    decision = decide(state(), listed(1, 2, 3), source=changed)
    assert (decision.resume, decision.abort_old) == (False, True)
    assert "source changed" in decision.reason and "sample" in decision.reason


def test_other_part_size_or_checksum_settings_start_fresh() -> None:
    assert not decide(state(), listed(1), part_size=8 * MiB).resume
    assert not decide(state(), listed(1), checksum_algorithm="CRC64NVME", checksum_type="FULL_OBJECT").resume


def test_no_state_or_vanished_upload_starts_fresh_without_abort() -> None:
    assert decide(None, None).resume is False
    gone = decide(state(), None)
    assert (gone.resume, gone.abort_old) == (False, False)
    assert "no longer exists" in gone.reason


def test_state_round_trips_through_json_and_rejects_other_versions() -> None:
    st = state()
    again = ResumeState.from_json(st.to_json())
    assert again == st
    with pytest.raises(ValueError, match="version"):
        ResumeState.from_json(st.to_json().replace(b'"version":1', b'"version":99'))
    assert state_key("a/b.bin") == ".s3stream-resume/a/b.bin.json"


@pytest.mark.parametrize(
    ("source", "kind", "location"),
    [
        ("/data/x.bin", "file", "/data/x.bin"),
        ("relative/x.bin", "file", "relative/x.bin"),
        ("file:///data/a%20b.bin", "file", "/data/a b.bin"),
        ("s3://bucket/key/x", "s3copy", "s3://bucket/key/x"),
        ("s3a://bucket/x", "s3copy", "s3://bucket/x"),
        ("https://host/x?sig=1", "uri", "https://host/x?sig=1"),
        ("gs://bucket/x", "uri", "gs://bucket/x"),
    ],
)
def test_sources_are_classified_by_scheme(source: str, kind: str, location: str) -> None:
    assert classify_source(source) == (kind, location)


def test_s3_source_through_another_connection_is_streamed() -> None:
    assert classify_source("s3://other/x", s3_same_endpoint=False).kind == "uri"
    with pytest.raises(SourceError, match="path or URI"):
        classify_source("  ")


def test_redact_uri_drops_credentials_query_and_fragment() -> None:
    assert redact_uri("https://user:pw@host:8443/p/x.bin?X-Amz-Signature=abc#frag") == "https://host:8443/p/x.bin?…"
    assert redact_uri("sftp://u:secret@h/x") == "sftp://h/x"
    assert redact_uri("/local/path") == "/local/path"


def test_buffer_body_reads_seeks_and_never_copies_the_source_buffer() -> None:
    data = bytearray(os.urandom(100))
    body = BufferBody(data)
    assert body.read(10) == bytes(data[:10])
    out = bytearray(200)
    assert body.readinto(out) == 90 and out[:90] == data[10:]
    assert body.read() == b""
    body.seek(0)
    assert body.read() == bytes(data) and len(body) == 100


def test_state_records_its_owner_and_reads_states_written_before_owners_existed() -> None:
    st = state(owner="host/1/ab", lease=120.0)
    assert ResumeState.from_json(st.to_json()) == st
    legacy = json.loads(state().to_json())
    del legacy["owner"], legacy["lease"]
    old = ResumeState.from_json(json.dumps(legacy).encode())
    assert (old.owner, old.lease) == ("", 0.0)
    assert not old.held_by_other("me", age=0.0)  # nobody holds it: any try may continue it


def test_a_state_is_held_by_its_live_owner_only_within_the_lease() -> None:
    st = state(owner="host/1/ab", lease=120.0)
    assert st.held_by_other("host/2/cd", age=119.0)
    assert not st.held_by_other("host/2/cd", age=121.0)  # its owner stopped renewing it: gone
    assert not st.held_by_other("host/1/ab", age=0.0)  # our own
    assert not state(owner="", lease=120.0).held_by_other("host/2/cd", age=0.0)  # released


def test_file_range_reads_only_its_range_and_detects_a_shrunk_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = os.urandom(1000)
    path.write_bytes(data)
    with LocalFile(str(path)) as source:
        body = source.body(100, 300)
        assert body.read(50) + body.read() == data[100:400]
        body.seek(0)
        buf = bytearray(1000)
        assert body.readinto(buf) == 300 and bytes(buf[:300]) == data[100:400]
        assert source.digest(100, 300, "CRC32C", True).md5 == hashlib.md5(data[100:400]).hexdigest()
        with open(path, "r+b") as f:
            f.truncate(200)
        with pytest.raises(SourceChangedError):
            FileRange(source.fd, 100, 300).read()


def test_file_range_readinto_never_returns_a_short_read(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(1000))
    with LocalFile(str(path)) as source:
        raw = FileRange(source.fd, 100, 300, str(path))
        with open(path, "r+b") as f:
            f.truncate(200)  # the file ends 200 bytes before the range does
        with pytest.raises(SourceChangedError, match=rf"source file {path} shrank"):
            raw.readinto(bytearray(300))
        with pytest.raises(SourceChangedError, match=rf"source file {path} shrank"):
            source.body(100, 300).read()


def test_fingerprint_changes_with_content_of_the_same_size(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a" * 300_000)
    with LocalFile(str(path)) as source:
        before = source.fingerprint()
    path.write_bytes(b"a" * 299_999 + b"b")
    with LocalFile(str(path)) as source:
        assert source.fingerprint().sample != before.sample


def test_progress_line_has_parts_bytes_rate_and_eta() -> None:
    progress = Progress("s3://b/k", 100_000_000, interval=3600)
    progress.add(25_000_000)
    line = progress.describe(progress.started + 1.0)
    assert line == "s3://b/k: 1 part, 25.0 MB of 100.0 MB (25%), 25.0 MB/s, ETA 3 s"


def test_a_part_body_hashes_its_first_full_pass_once(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        for raw in (BufferBody(bytearray(data)), FileRange(fd, 0, len(data), str(path))):
            body = part_body(raw)
            assert hashing_raw(body) is raw
            raw.hash_md5()
            while body.read(4096):  # a signer's pass, 4 KiB at a time
                pass
            body.seek(0)  # then the send
            assert body.read() == data
            assert raw.md5_hexdigest() == hashlib.md5(data).hexdigest()  # kept, not hashed twice
            raw.hash_md5()
            body.seek(0)
            body.read(10)  # a pass that stopped early says nothing
            assert raw.md5_hexdigest() == ""
            raw.seek(5)
            raw.read()  # nor does one that did not start at byte 0
            assert raw.md5_hexdigest() == ""
    finally:
        os.close(fd)
    assert hashing_raw(b"bytes") is None


def test_file_sha256_is_the_digest_of_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = os.urandom(3 * 1024 * 1024 + 5)
    path.write_bytes(data)
    assert FileSha256(str(path)).join() == hashlib.sha256(data).hexdigest()
