"""Member digests on worker threads: the lane plan, exact digests in archive order, bounded memory,
and a damaged member still named by the verifier whichever thread hashed it."""

from __future__ import annotations

import hashlib
import io
import os
import random
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from airflow_s3stream.archive.digests import BATCH_BYTES, INLINE_BELOW, DigestPipeline, assign_lanes
from airflow_s3stream.archive.verify import VerifyConfig, verify_archive
from tests.support.bags import edit_zip, make_bag, zip_dir
from tests.support.local_sources import LocalFileSource

KiB, MiB = 1024, 1024 * 1024


def test_lanes_go_costliest_first_to_the_least_loaded_worker() -> None:
    loads = [0.0, 0.0]
    # crc32, sha256, sha512 of one member: sha512 alone on one worker, the other two on the other
    assert assign_lanes([0.8, 1.0, 3.0], loads) == [1, 1, 0]
    assert loads == [3.0, 1.8]
    # the next member's sha512 goes to the worker that has less
    assert assign_lanes([0.8, 1.0, 3.0], loads) == [0, 0, 1]
    assert loads == [4.8, 4.8]


def test_one_worker_takes_every_lane() -> None:
    assert assign_lanes([1.0, 2.0, 3.0], [0.0]) == [0, 0, 0]


def test_the_reading_thread_keeps_its_share_of_the_lanes() -> None:
    """With one worker, the costly sha512 goes to it, and the reading thread, which also reads and
    inflates, hashes sha256 and CRC-32 as the chunks go by; a small member stays on the reading thread."""
    lanes = ["crc32", "sha256", "sha512"]
    with DigestPipeline(1) as pipeline:
        assert pipeline.begin(lanes, size_hint=MiB).inline == ["crc32", "sha256"]
        assert pipeline.begin(lanes, size_hint=INLINE_BELOW - 1).inline == lanes
    with DigestPipeline(0) as pipeline:
        assert pipeline.begin(lanes, size_hint=MiB).inline == lanes


def _members(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    sizes = [0, 1, INLINE_BELOW - 1, INLINE_BELOW, BATCH_BYTES - 1, BATCH_BYTES + 1, 3 * MiB + 17]
    sizes += [rng.randrange(1, 300 * KiB) for _ in range(40)]
    return [rng.randbytes(n) for n in sizes]


def _chunks(data: bytes, size: int = 64 * KiB) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("threads", [0, 1, 2, 4])
def test_digests_are_exact_and_come_back_in_submission_order(threads: int) -> None:
    members = _members(threads)
    algorithms = ["crc32", "md5", "sha256", "sha512"]
    seen: list[int] = []
    with DigestPipeline(threads, max_pending=1 * MiB) as pipeline:
        for index, data in enumerate(members):
            member = pipeline.begin(algorithms, size_hint=len(data), token=index)
            for chunk in _chunks(data):
                member.update(chunk)
                assert pipeline.queued_bytes <= 1 * MiB
            pipeline.submit(member)
            for done in pipeline.ready():
                seen.append(done.token)
                _assert_digests(done.hexdigests(), members[done.token])
        for done in pipeline.drain():
            seen.append(done.token)
            _assert_digests(done.hexdigests(), members[done.token])
    assert seen == list(range(len(members)))


def _assert_digests(got: dict[str, str], data: bytes) -> None:
    assert got["crc32"] == f"{zlib.crc32(data):08x}"
    for alg in ("md5", "sha256", "sha512"):
        assert got[alg] == hashlib.new(alg, data).hexdigest(), alg


def test_a_worker_error_reaches_the_caller() -> None:
    with DigestPipeline(2) as pipeline:
        member = pipeline.begin(["sha256"], size_hint=MiB)
        member.update("not bytes")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="Strings must be encoded"):
            pipeline.submit(member)
            list(pipeline.drain())


# --- the verifier names a damaged member whichever thread hashed it ----------------------------

BIG = {f"series{i % 3}/item{i}.bin": os.urandom(700 * KiB + i) for i in range(6)} | {"small.txt": b"tiny\n"}


def _verify(tmp_path: Path, data: bytes, threads: int, mode: str = "bagit") -> list[str]:
    path = tmp_path / f"{hashlib.md5(data).hexdigest()}.zip"
    path.write_bytes(data)
    report = verify_archive(LocalFileSource(path), VerifyConfig(mode=mode, hash_threads=threads))
    return [str(e) for e in report.errors]


def _data_offset(data: bytes, name: str) -> int:
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    nlen, xlen = struct.unpack_from("<2H", data, info.header_offset + 26)
    return info.header_offset + 30 + nlen + xlen


@pytest.mark.parametrize("threads", [0, 2])
def test_a_flipped_byte_in_a_large_member_is_a_crc_error_naming_it(tmp_path: Path, threads: int) -> None:
    data = bytearray(zip_dir(make_bag(tmp_path, BIG), method=zipfile.ZIP_STORED))
    data[_data_offset(bytes(data), "bag/data/series1/item4.bin") + 600 * KiB] ^= 0x40
    errors = _verify(tmp_path, bytes(data), threads)
    assert errors[0].startswith("bag/data/series1/item4.bin: CRC-32 mismatch (expected "), errors
    assert [e.split(" ")[0] for e in errors[1:]] == ["bag/bag-info.txt:"], errors  # Payload-Oxum: a file short


@pytest.mark.parametrize("threads", [0, 2])
def test_a_replaced_large_member_fails_both_manifests_naming_it(tmp_path: Path, threads: int) -> None:
    original = zip_dir(make_bag(tmp_path, BIG))
    tampered = edit_zip(original, {"bag/data/series2/item5.bin": os.urandom(700 * KiB + 5)})
    errors = _verify(tmp_path, tampered, threads)
    assert sorted(e.split(" (")[0] for e in errors) == [
        "bag/data/series2/item5.bin: sha256 mismatch",
        "bag/data/series2/item5.bin: sha512 mismatch",
    ], errors


def test_findings_are_in_archive_order_whatever_the_threads(tmp_path: Path) -> None:
    data = bytearray(zip_dir(make_bag(tmp_path, BIG), method=zipfile.ZIP_STORED))
    for name in ("bag/data/series0/item0.bin", "bag/data/series2/item2.bin", "bag/data/series0/item3.bin"):
        data[_data_offset(bytes(data), name) + 100] ^= 0x01
    inline, threaded = _verify(tmp_path, bytes(data), 0), _verify(tmp_path, bytes(data), 4)
    assert inline == threaded, (inline, threaded)
    assert [e.split(":")[0] for e in inline] == [
        "bag/data/series0/item0.bin",
        "bag/data/series0/item3.bin",
        "bag/data/series2/item2.bin",
        "bag/bag-info.txt",
    ]


def test_a_bad_crc_is_reported_before_a_bad_data_descriptor_of_the_same_member(tmp_path: Path) -> None:
    """The order the sequential check had: the data's CRC-32 first, then the descriptor."""
    payload = os.urandom(200 * KiB)
    unseekable = _streamed_zip({"d.bin": payload})
    data = bytearray(unseekable)
    start = _data_offset(bytes(data), "d.bin")
    data[start + 10] ^= 0x01  # the data
    descriptor = start + len(payload) + 4  # after the PK\x07\x08 signature: the CRC-32
    data[descriptor] ^= 0x01
    for threads in (0, 2):
        errors = _verify(tmp_path, bytes(data), threads, mode="zip")
        assert [e.split(" (")[0] for e in errors] == ["d.bin: CRC-32 mismatch"], errors


def _streamed_zip(members: dict[str, bytes]) -> bytes:
    from tests.support.bags import NonSeekable

    sink = NonSeekable()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as zf:
        for name, content in members.items():
            with zf.open(name, "w") as member:
                member.write(content)
    return bytes(sink.buf)
