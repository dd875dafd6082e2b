"""Part sizing, checksum arithmetic and the post-completion verification policy (pure, no server)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os

import pytest
from awscrt import checksums as crt

from airflow_s3stream.errors import ChecksumMismatchError, ConfigurationError
from airflow_s3stream.s3.limits import S3_MAX_PART_SIZE, S3_MAX_PARTS, S3_MIN_PART_SIZE
from airflow_s3stream.s3.multipart import (
    MultipartConfig,
    PartSizer,
    plan_parts,
    validate_part_size,
)
from airflow_s3stream.s3.multipart.checksums import (
    combine_full_object,
    composite_checksum,
    crc_of,
    encode_checksum,
    looks_like_md5,
    multipart_etag,
)
from airflow_s3stream.s3.multipart.config import GiB, MiB
from airflow_s3stream.s3.multipart.verify import ExpectedObject, verify_object


@pytest.mark.parametrize("bad", [S3_MIN_PART_SIZE - 1, S3_MAX_PART_SIZE + 1, 0, "8MB", 5.5 * MiB, True])
def test_part_size_outside_s3_limits_is_rejected_naming_the_parameter(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="part_size"):
        validate_part_size(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="part_size"):
        MultipartConfig(part_size=bad)  # type: ignore[arg-type]


def test_config_defaults_and_checksum_types() -> None:
    cfg = MultipartConfig()
    assert (cfg.checksum_algorithm, cfg.checksum_type, cfg.full_object) == ("auto", "COMPOSITE", False)
    nvme = MultipartConfig(checksum_algorithm="crc64nvme")
    assert (nvme.checksum_algorithm, nvme.checksum_type) == ("CRC64NVME", "FULL_OBJECT")
    with pytest.raises(ConfigurationError, match="COMPOSITE"):
        MultipartConfig(checksum_algorithm="CRC64NVME", checksum_type="COMPOSITE")
    with pytest.raises(ConfigurationError, match="checksum_algorithm"):
        MultipartConfig(checksum_algorithm="SHA256")
    with pytest.raises(ConfigurationError, match="max_concurrency"):
        MultipartConfig(max_concurrency=0)


def test_known_size_keeps_the_part_size_when_it_fits() -> None:
    assert PartSizer(1 * GiB, 8 * MiB).base == 8 * MiB


def test_known_size_raises_the_part_size_to_stay_within_10000_parts() -> None:
    size = 200 * GiB
    sizer = PartSizer(size, 5 * MiB)
    assert sizer.base % MiB == 0
    assert sizer.base * S3_MAX_PARTS >= size
    assert (sizer.base - MiB) * S3_MAX_PARTS < size
    assert len(plan_parts(size, sizer.base)) <= S3_MAX_PARTS


def test_size_beyond_what_s3_can_hold_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="do not fit"):
        PartSizer(S3_MAX_PARTS * S3_MAX_PART_SIZE + 1)


def test_unknown_size_grows_parts_so_10000_are_never_exceeded() -> None:
    sizer = PartSizer(None, 8 * MiB)
    sizes = [sizer.size_of(n) for n in range(1, S3_MAX_PARTS + 1)]
    assert sizes[0] == sizes[999] == 8 * MiB
    assert sizes[1000] == 16 * MiB
    assert all(s <= S3_MAX_PART_SIZE for s in sizes)
    assert sizes == sorted(sizes)
    assert sum(sizes) > 5 * 1024 * GiB  # more than 5 TiB fits
    with pytest.raises(ConfigurationError, match="10000"):
        sizer.size_of(S3_MAX_PARTS + 1)


def test_plan_parts_covers_every_byte_once_with_a_short_last_part() -> None:
    plan = plan_parts(23 * MiB + 7, 5 * MiB)
    assert [p.number for p in plan] == [1, 2, 3, 4, 5]
    assert [p.length for p in plan] == [5 * MiB] * 4 + [3 * MiB + 7]
    assert all(a.offset + a.length == b.offset for a, b in itertools.pairwise(plan))
    assert plan_parts(0, 5 * MiB) == [(1, 0, 0)]


def test_combined_part_crcs_equal_the_crc_of_the_whole() -> None:
    a, b, c = os.urandom(1000), os.urandom(5000), os.urandom(3)
    for algorithm, fn in (("CRC32C", crt.crc32c), ("CRC64NVME", crt.crc64nvme), ("CRC32", crt.crc32)):
        parts = [(crc_of(algorithm, x), len(x)) for x in (a, b, c)]
        assert combine_full_object(algorithm, parts) == fn(a + b + c)


def test_composite_checksum_is_crc_of_part_digests_with_part_count() -> None:
    crcs = [crt.crc32c(b"one"), crt.crc32c(b"two")]
    joined = b"".join(x.to_bytes(4, "big") for x in crcs)
    expected = base64.b64encode(crt.crc32c(joined).to_bytes(4, "big")).decode()
    assert composite_checksum("CRC32C", crcs) == f"{expected}-2"


def test_multipart_etag_is_md5_of_part_md5s() -> None:
    md5s = [hashlib.md5(b"x").hexdigest(), hashlib.md5(b"y").hexdigest()]
    expected = hashlib.md5(hashlib.md5(b"x").digest() + hashlib.md5(b"y").digest()).hexdigest()
    assert multipart_etag(md5s) == f"{expected}-2"
    assert looks_like_md5('"' + md5s[0] + '"')
    assert not looks_like_md5(f'"{expected}-2"')
    assert not looks_like_md5("opaque-kms-etag")


def _expected(**kw: object) -> ExpectedObject:
    base: dict[str, object] = {
        "uri": "s3://b/k",
        "size": 10,
        "algorithm": "CRC32C",
        "checksum": "abcd-2",
        "full_object": False,
        "parts": 2,
        "etag": "0" * 32 + "-2",
    }
    base.update(kw)
    return ExpectedObject(**base)  # type: ignore[arg-type]


def test_verify_accepts_matching_composite_checksum_and_etag() -> None:
    head = {"ContentLength": 10, "ChecksumCRC32C": "abcd-2", "ETag": '"' + "0" * 32 + '-2"'}
    assert verify_object(head, _expected()) == ["size", "checksum", "etag"]


def test_verify_rejects_wrong_size_checksum_or_etag_naming_the_object() -> None:
    with pytest.raises(ChecksumMismatchError, match="s3://b/k: size mismatch"):
        verify_object({"ContentLength": 9}, _expected())
    with pytest.raises(ChecksumMismatchError, match="CRC32C mismatch"):
        verify_object({"ContentLength": 10, "ChecksumCRC32C": "zzzz-2"}, _expected())
    with pytest.raises(ChecksumMismatchError, match="ETag mismatch"):
        verify_object({"ContentLength": 10, "ETag": '"' + "1" * 32 + '-2"'}, _expected())
    with pytest.raises(ChecksumMismatchError, match="CRC64NVME mismatch"):
        verify_object(
            {"ContentLength": 10, "ChecksumCRC64NVME": "other"},
            _expected(algorithm="CRC64NVME", checksum="mine", full_object=True),
        )


def test_verify_skips_only_what_the_server_cannot_vouch_for() -> None:
    # a composite value without the -N suffix is not S3's composite checksum (moto): unverifiable
    # an opaque ETag (SSE-KMS) is unverifiable
    head = {"ContentLength": 10, "ChecksumCRC32C": "Cb7uZw==", "ETag": '"opaque"'}
    assert verify_object(head, _expected()) == ["size"]


def test_encode_checksum_is_big_endian_base64() -> None:
    assert encode_checksum("CRC32C", 1) == base64.b64encode(b"\x00\x00\x00\x01").decode()


def test_part_md5_is_computed_until_the_server_echoes_our_checksum() -> None:
    from airflow_s3stream.s3.multipart.checksums import PartDigest
    from airflow_s3stream.s3.multipart.session import UploadSession

    session = UploadSession(
        None,  # type: ignore[arg-type]  # no call reaches a client here
        "b",
        "k",
        MultipartConfig(checksum_algorithm="CRC32C"),
    )
    assert session.wants_md5
    digest = PartDigest(3, crt.crc32c(b"abc"), hashlib.md5(b"abc").hexdigest())
    sent = encode_checksum("CRC32C", digest.crc)
    assert session.mismatch({"ETag": f'"{digest.md5}"'}, digest, sent, "CRC32C") is None
    assert session.wants_md5  # moto: no echo, keep checking MD5s
    assert "MD5 mismatch" in str(session.mismatch({"ETag": '"' + "0" * 32 + '"'}, digest, sent, "CRC32C"))
    assert session.mismatch({"ETag": '"x"', "ChecksumCRC32C": sent}, digest, sent, "CRC32C") is None
    assert not session.wants_md5  # S3 echoed (and so checked) our CRC: MD5s are redundant now
    assert "CRC32C mismatch" in str(session.mismatch({"ChecksumCRC32C": "AAAAAA=="}, digest, sent, "CRC32C"))
    never = MultipartConfig(checksum_algorithm="CRC32C", verify_part_etag=False)
    assert (
        UploadSession(
            None,  # type: ignore[arg-type]  # no call reaches a client here
            "b",
            "k",
            never,
        ).wants_md5
        is False
    )
    with pytest.raises(ConfigurationError, match="verify_part_etag"):
        MultipartConfig(verify_part_etag="sometimes")
