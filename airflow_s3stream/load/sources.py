"""What to load: one object, every part under a prefix, an export's manifest, or a ZIP member.

:func:`resolve_source` turns a :class:`SourceSpec` into the list of :class:`LoadFile` to read, in
order, checking each against what the manifest lists before a byte of data is read:

* a key ending in ``_manifest.json``, or a key that is not an object but has
  ``<key>/_manifest.json``: exactly the listed files. Each is HEADed (asking for its stored
  checksum only when the listed algorithm is a CRC and the store takes ``ChecksumMode``: the
  endpoint's :class:`~airflow_s3stream.s3.checksum_plan.ChecksumPlan`): its size must equal the
  listed ``bytes``, its ETag the listed ``etag`` (the reader then pins every
  GET to it with ``If-Match``), and its stored checksum the listed one when both exist;
* an existing object: that object (``zip_member``: that member of the ZIP object);
* otherwise the prefix ``<key>/``: every object in key order, except names starting with ``_`` or
  ``.`` (the manifest, a commit state, ``_SUCCESS`` markers) and zero-byte "directory" keys.

Every S3 call goes through :mod:`airflow_s3stream.s3` (retried, errors naming the object).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_s3stream.errors import ChecksumMismatchError, ObjectChangedError, SourceError
from airflow_s3stream.publish.manifest import MANIFEST_NAME, Manifest, ManifestFile, parse_manifest
from airflow_s3stream.s3.checksum_plan import ChecksumPlan
from airflow_s3stream.s3.objects import head_object, list_keys
from airflow_s3stream.s3.reader import RangedReader, ReaderConfig, S3ObjectSource
from airflow_s3stream.s3.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["MAX_MANIFEST_BYTES", "LoadFile", "ResolvedSource", "SourceSpec", "resolve_source"]

MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # a manifest larger than this is not read into memory


@dataclass(frozen=True)
class SourceSpec:
    """Where the data is: ``s3://bucket/key`` (object, prefix or manifest), optionally a ZIP member."""

    bucket: str
    key: str
    zip_member: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class LoadFile:
    """One object to read, with what it must be (from a manifest) when known."""

    bucket: str
    key: str
    size: int
    etag: str | None = None
    rows: int | None = None  # rows the manifest lists for it
    zip_member: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def describe(self) -> str:
        """``s3://b/k`` or ``s3://b/archive.zip member data/x.csv``: how errors name it."""
        return f"{self.uri} member {self.zip_member}" if self.zip_member else self.uri


@dataclass(frozen=True)
class ResolvedSource:
    """The files to load, in order, and the manifest they came from (if any)."""

    spec: SourceSpec
    files: tuple[LoadFile, ...]
    manifest: Manifest | None = None
    kind: str = "object"  # object | prefix | manifest | zip_member
    skipped: tuple[str, ...] = field(default=())


def _read_small(client: S3Client, bucket: str, key: str, retry: RetryPolicy) -> bytes:
    with RangedReader(S3ObjectSource(client, bucket, key), ReaderConfig(retry=retry)) as reader:
        if reader.size > MAX_MANIFEST_BYTES:
            raise SourceError(f"manifest s3://{bucket}/{key}: {reader.size} bytes is larger than {MAX_MANIFEST_BYTES}")
        return reader.read()


def _stored_checksum(head: dict[str, Any], algorithm: str) -> str | None:
    """What the store reports for ``algorithm``: an ``MD5`` upload's checksum is its ETag (the MD5,
    or ``md5(part MD5s)-N``); a CRC is the ``Checksum*`` HeadObject gives with ``ChecksumMode``."""
    if algorithm.upper() == "MD5":
        etag = str(head.get("ETag") or "").strip('"')
        return etag or None
    value = head.get(f"Checksum{algorithm.upper()}")
    return str(value) if value else None


def _check_listed(
    client: S3Client, bucket: str, listed: ManifestFile, manifest_key: str, retry: RetryPolicy
) -> LoadFile:
    uri = f"s3://{bucket}/{listed.key}"
    plan = ChecksumPlan.known(client, listed.checksum_algorithm.upper()) if listed.checksum_algorithm else None
    ask = plan.ask_args() if plan is not None and listed.checksum_value else {}
    head = head_object(client, bucket, listed.key, retry, reading=True, **ask)
    if head is None:
        raise SourceError(f"{uri}: listed in manifest {manifest_key} but does not exist")
    size = int(head["ContentLength"])
    if listed.bytes is not None and size != listed.bytes:
        raise ChecksumMismatchError(f"{uri}: {size} bytes stored, manifest {manifest_key} lists {listed.bytes}")
    etag = str(head.get("ETag") or "") or None
    if listed.etag and etag and listed.etag.strip('"') != etag.strip('"'):
        raise ObjectChangedError(
            f"{uri}: ETag {etag} differs from {listed.etag} in manifest {manifest_key} (replaced since the export)"
        )
    if listed.checksum_algorithm and listed.checksum_value:
        stored = _stored_checksum(head, listed.checksum_algorithm)
        if stored is not None and stored != listed.checksum_value:
            raise ChecksumMismatchError(
                f"{uri}: {listed.checksum_algorithm} {stored} differs from {listed.checksum_value} "
                f"in manifest {manifest_key}"
            )
    return LoadFile(bucket, listed.key, size, listed.etag or etag, listed.rows)


def _from_manifest(client: S3Client, bucket: str, key: str, retry: RetryPolicy) -> ResolvedSource:
    manifest = parse_manifest(_read_small(client, bucket, key, retry), bucket, key)
    files = tuple(_check_listed(client, bucket, f, key, retry) for f in manifest.files)
    return ResolvedSource(SourceSpec(bucket, key), files, manifest, "manifest")


def _skipped_name(key: str, prefix: str) -> bool:
    name = posixpath.basename(key)
    return key.endswith("/") or not name or name.startswith(("_", "."))


def resolve_source(client: S3Client, spec: SourceSpec, retry: RetryPolicy | None = None) -> ResolvedSource:
    """The files ``spec`` names, checked against their manifest (see the module docstring).

    :raises SourceError: nothing at the key or under the prefix, a listed file missing, a bad manifest.
    :raises ChecksumMismatchError: a listed file's size or checksum differs from the manifest's.
    :raises ObjectChangedError: a listed file's ETag differs (replaced after the export).
    """
    retry = retry or RetryPolicy()
    bucket, key = spec.bucket, spec.key
    if posixpath.basename(key) == MANIFEST_NAME:
        if spec.zip_member:
            raise SourceError(f"{spec.uri}: zip_member cannot be read from a manifest")
        return _from_manifest(client, bucket, key, retry)
    head = head_object(client, bucket, key, retry, reading=True) if not key.endswith("/") else None
    if head is not None:
        size, etag = int(head["ContentLength"]), str(head.get("ETag") or "") or None
        kind = "zip_member" if spec.zip_member else "object"
        return ResolvedSource(spec, (LoadFile(bucket, key, size, etag, zip_member=spec.zip_member),), None, kind)
    if spec.zip_member:
        raise SourceError(f"{spec.uri}: no such ZIP object")
    prefix = key.rstrip("/") + "/"
    manifest_key = prefix + MANIFEST_NAME
    if head_object(client, bucket, manifest_key, retry, reading=True) is not None:
        return _from_manifest(client, bucket, manifest_key, retry)
    files: list[LoadFile] = []
    skipped: list[str] = []
    for listed_key in list_keys(client, bucket, prefix, retry):
        if _skipped_name(listed_key, prefix):
            skipped.append(listed_key)
            continue
        files.append(LoadFile(bucket, listed_key, -1))  # size and ETag come from the reader's opening GET
    if not files:
        raise SourceError(f"{spec.uri}: no such object, and no objects under the prefix {prefix}")
    return ResolvedSource(spec, tuple(files), None, "prefix", tuple(skipped))
