"""Packaging payload files into a zipped BagIt bag (RFC 8493), in one forward pass, no disk.

    result = package_bag(files, sink, PackageConfig(bag_name="accession-42", checksums=("sha256",)))

``files`` is any iterable of :class:`PayloadFile` (S3 objects, local files: see
:mod:`~airflow_s3stream.archive.sources`); ``sink`` anything with ``write`` (normally a staged
:class:`~airflow_s3stream.s3.multipart.MultipartWriter`). The archive is written by
:class:`~airflow_s3stream.archive.zip.writer.ZipStreamWriter` in this order:

1. ``<bag>/bagit.txt`` (static, so a streaming reader meets the declaration first);
2. every payload file as ``<bag>/data/<path>``, each streamed once; CRC-32 and every requested
   digest are computed on the same bytes as they pass;
3. ``bag-info.txt`` (user fields, ``Bagging-Date``, ``Payload-Oxum``, ``Bag-Software-Agent``),
   ``manifest-<alg>.txt`` per algorithm, then ``tagmanifest-<alg>.txt`` over the tag files.

Payload paths are checked as the verifier checks member names: one that would be unsafe to
extract (absolute, ``..``, backslash, empty or ``.`` component, control character) is an error
naming its source, never silently renamed. Manifest paths are percent-encoded so that RFC 8493
readers and bagit-python both decode them (:func:`encode_manifest_path`). Memory: the manifests
(about 100 bytes per file per algorithm), one path per file for the collision check, and the
writer's compact directory; file contents pass through in chunks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_s3stream.archive.zip.records import unsafe_name_reason
from airflow_s3stream.archive.zip.writer import METHOD_DEFLATE, METHOD_STORED, Sink, ZipStreamWriter
from airflow_s3stream.errors import ArchiveError, ConfigurationError

__all__ = [
    "COMPRESSIONS",
    "PACKAGE_ALGORITHMS",
    "PackageConfig",
    "PackageResult",
    "PayloadFile",
    "encode_manifest_path",
    "package_bag",
    "payload_path_problem",
    "validate_bag_info",
]

PACKAGE_ALGORITHMS = ("sha256", "sha512")  # what the packager writes manifests for
COMPRESSIONS = {"deflate": METHOD_DEFLATE, "store": METHOD_STORED}
COMPUTED_TAGS = ("Payload-Oxum",)  # always computed; a user value would be a lie
_LABEL = re.compile(r"^[^:\s][^:\r\n]*[^:\s]$|^[^:\s]$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class PayloadFile:
    """One payload file: its path under ``data/``, where it comes from, and how to read it.

    :param path: relative to ``data/``, ``/``-separated.
    :param source: names the file in errors (``s3://bucket/key``, ``file:///...``).
    :param chunks: called once; returns the file's bytes in chunks.
    :param size: the size the listing reported, if any: a different number of bytes read is an error
        (the object changed between listing and reading).
    """

    path: str
    source: str
    chunks: Callable[[], Iterable[bytes]]
    size: int | None = None


@dataclass(frozen=True)
class PackageConfig:
    """What bag to make.

    :param bag_name: the bag's directory inside the ZIP (the ZIP unpacks into ``bag_name/``).
    :param checksums: manifest algorithms, from :data:`PACKAGE_ALGORITHMS`.
    :param bag_info: ``bag-info.txt`` fields (a value or a list of values each); ``Payload-Oxum``
        is computed and may not be given; ``Bagging-Date`` defaults to today (UTC).
    :param compression: ``deflate`` or ``store``.
    :param level: zlib level for deflate (1 fastest .. 9 smallest).
    """

    bag_name: str
    checksums: tuple[str, ...] = ("sha256",)
    bag_info: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    compression: str = "deflate"
    level: int = 6
    software_agent: str = "airflow-s3stream"

    def __post_init__(self) -> None:
        if not self.checksums:
            raise ConfigurationError("checksums: give at least one of " + ", ".join(PACKAGE_ALGORITHMS))
        bad = [c for c in self.checksums if c not in PACKAGE_ALGORITHMS]
        if bad or len(set(self.checksums)) != len(self.checksums):
            raise ConfigurationError(
                f"checksums must be distinct values among {', '.join(PACKAGE_ALGORITHMS)}, got {list(self.checksums)}"
            )
        if self.compression not in COMPRESSIONS:
            raise ConfigurationError(f"compression must be 'deflate' or 'store', got {self.compression!r}")
        if not 1 <= self.level <= 9:
            raise ConfigurationError(f"level must be within 1..9, got {self.level}")
        reason = payload_path_problem(self.bag_name) if self.bag_name else "is empty"
        if reason or "/" in self.bag_name:
            raise ConfigurationError(f"bag_name {self.bag_name!r} {reason or 'contains a /'}")
        validate_bag_info(self.bag_info)


@dataclass
class PackageResult:
    """What :func:`package_bag` wrote."""

    bag_name: str
    files: int = 0
    payload_bytes: int = 0
    zip_bytes: int = 0
    manifests: dict[str, str] = field(default_factory=dict)  # algorithm -> member name in the ZIP
    tag_files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def oxum(self) -> str:
        return f"{self.payload_bytes}.{self.files}"


def validate_bag_info(fields: Mapping[str, Any]) -> None:
    """Check ``bag-info.txt`` fields: labels without ``:`` or surrounding space, values without CR/LF.

    :raises ConfigurationError: naming the field at fault.
    """
    if not isinstance(fields, Mapping):
        raise ConfigurationError(f"bag_info must be a mapping of label to value(s), got {type(fields).__name__}")
    for label, value in fields.items():
        if not isinstance(label, str) or not _LABEL.match(label):
            raise ConfigurationError(f"bag_info label {label!r} must be non-empty text without ':' or edge spaces")
        if label in COMPUTED_TAGS:
            raise ConfigurationError(f"bag_info {label!r} is computed by the packager and cannot be given")
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, Sequence) or not all(isinstance(v, str) for v in values):
            raise ConfigurationError(f"bag_info {label!r}: value must be text or a list of text, got {value!r}")
        for v in values:
            if "\n" in v or "\r" in v:
                raise ConfigurationError(f"bag_info {label!r}: value must be one line, got {v!r}")


def payload_path_problem(path: str) -> str | None:
    """Why ``path`` (relative to ``data/``) cannot be a payload file's name, or None.

    The checks the verifier makes on member names (:func:`unsafe_name_reason`), plus what would
    change the name when unzipped: empty or ``.`` components, control characters, a trailing ``/``.
    """
    if not path:
        return "is empty"
    reason = unsafe_name_reason(path)
    if reason:
        return reason
    if _CONTROL.search(path):
        return "contains a control character"
    parts = path.split("/")
    if any(p == "" for p in parts):
        return "has an empty path component ('//' or a trailing '/')"
    if any(p == "." for p in parts):
        return "contains a '.' component"
    return None


_ENCODED = re.compile(r"%(?=0[ad]|25)", re.IGNORECASE)


def encode_manifest_path(path: str) -> str:
    """Percent-encode a manifest path so that every BagIt reader decodes it to ``path``.

    CR and LF always (RFC 8493 section 2.1.3). A ``%`` only where it starts ``%0A``, ``%0D`` or
    ``%25``: those are the only sequences an RFC 8493 reader decodes, so a lone ``%`` (``100% done``)
    reads back the same unencoded, and bagit-python, which decodes only ``%0A``/``%0D``, then
    agrees with it. (Fully encoding every ``%``, as the RFC words it, makes bagit-python 1.9 report
    such files as missing.)
    """
    return _ENCODED.sub("%25", path).replace("\r", "%0D").replace("\n", "%0A")


def _bag_info_text(fields: Mapping[str, str | Sequence[str]], oxum: str, agent: str) -> bytes:
    lines: list[str] = []
    given = dict(fields)
    given.setdefault("Bagging-Date", dt.datetime.now(dt.timezone.utc).date().isoformat())
    given["Payload-Oxum"] = oxum
    given.setdefault("Bag-Software-Agent", agent)
    for label, value in given.items():
        for v in [value] if isinstance(value, str) else value:
            lines.append(f"{label}: {v}\n")
    return "".join(lines).encode("utf-8")


def _checked(files: Iterable[PayloadFile]) -> Iterator[PayloadFile]:
    """``files`` with their paths checked, and exact or case/normalization duplicates refused."""
    seen: dict[int, str] = {}
    for item in files:
        reason = payload_path_problem(item.path)
        if reason:
            raise ArchiveError(f"{item.source}: payload path data/{item.path} {reason}; refusing to package it")
        folded = hash(unicodedata.normalize("NFC", item.path).casefold())
        other = seen.get(folded)
        if (
            other is not None
            and unicodedata.normalize("NFC", other).casefold() == unicodedata.normalize("NFC", item.path).casefold()
        ):
            raise ArchiveError(
                f"{item.source}: payload path data/{item.path} collides with data/{other} "
                "(same name up to case or Unicode normalization; they would overwrite each other when unzipped)"
            )
        seen[folded] = item.path
        yield item


def package_bag(files: Iterable[PayloadFile], sink: Sink, config: PackageConfig) -> PackageResult:
    """Write a zipped bag of ``files`` into ``sink`` (see the module docstring); returns what was written.

    :raises ArchiveError: an unsafe or colliding payload path, or a file whose size differs from
        its listing (each names the file's source).
    """
    started = time.monotonic()
    root = config.bag_name + "/"
    method = COMPRESSIONS[config.compression]
    result = PackageResult(config.bag_name)
    manifests = {alg: bytearray() for alg in config.checksums}
    tag_digests: list[tuple[str, bytes]] = []
    writer = ZipStreamWriter(sink, method=method, level=config.level)

    def tag(name: str, data: bytes) -> None:
        writer.add_bytes(root + name, data)
        tag_digests.append((name, data))
        result.tag_files.append(root + name)

    tag("bagit.txt", b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    for item in _checked(files):
        hashers = [hashlib.new(alg) for alg in config.checksums]

        def observe(chunk: bytes, hashers: list[Any] = hashers) -> None:
            for hasher in hashers:
                hasher.update(chunk)

        written = writer.add(root + "data/" + item.path, item.chunks(), observe=observe)
        if item.size is not None and written.size != item.size:
            raise ArchiveError(
                f"{item.source}: read {written.size} bytes but the listing said {item.size} "
                "(the object changed while the bag was being made)"
            )
        line_path = encode_manifest_path("data/" + item.path)
        for alg, hasher in zip(config.checksums, hashers, strict=True):
            manifests[alg] += f"{hasher.hexdigest()}  {line_path}\n".encode()
        result.files += 1
        result.payload_bytes += written.size
    tag("bag-info.txt", _bag_info_text(config.bag_info, result.oxum, config.software_agent))
    for alg in config.checksums:
        name = f"manifest-{alg}.txt"
        tag(name, bytes(manifests[alg]))
        result.manifests[alg] = root + name
        manifests[alg] = bytearray()
    for alg in config.checksums:
        lines = "".join(f"{hashlib.new(alg, data).hexdigest()}  {name}\n" for name, data in tag_digests)
        writer.add_bytes(root + f"tagmanifest-{alg}.txt", lines.encode())
        result.tag_files.append(root + f"tagmanifest-{alg}.txt")
    result.zip_bytes = writer.close()
    result.seconds = time.monotonic() - started
    return result
