"""BagIt tag files parsed from bytes (RFC 8493 and the 0.97 draft): pure functions, no I/O.

``bagit.txt`` is parsed strictly (exactly two lines, no byte-order mark); ``bag-info.txt`` goes
through bagit-python's own RFC 2822-style tag parser; manifest and ``fetch.txt`` lines become
:class:`ManifestEntry` / :class:`FetchEntry` records with percent-decoded paths.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

__all__ = [
    "BagDeclaration",
    "FetchEntry",
    "Manifest",
    "ManifestEntry",
    "TagFileError",
    "decode_path",
    "parse_bag_info",
    "parse_bagit_txt",
    "parse_fetch",
    "parse_manifest",
    "parse_payload_oxum",
]

UTF8_BOM = b"\xef\xbb\xbf"
_DECLARATION = (
    re.compile(r"^BagIt-Version: (\d+)\.(\d+)$"),
    re.compile(r"^Tag-File-Character-Encoding: (\S+)$"),
)
_PERCENT = re.compile(r"%(0A|0D|25)", re.IGNORECASE)
_PERCENT_MAP = {"0a": "\n", "0d": "\r", "25": "%"}
_OXUM = re.compile(r"^(\d+)\.(\d+)$")


class TagFileError(ValueError):
    """A tag file line that cannot be parsed; the message names the file and the line."""


@dataclass(frozen=True)
class BagDeclaration:
    """What ``bagit.txt`` declares."""

    version: tuple[int, int]
    encoding: str


@dataclass(frozen=True)
class ManifestEntry:
    digest: str  # lower-case hex
    path: str  # decoded, relative to the bag root, without a leading "./"
    line: int


@dataclass
class Manifest:
    """One ``manifest-<alg>.txt`` or ``tagmanifest-<alg>.txt``: entries plus parse warnings."""

    name: str
    algorithm: str
    entries: list[ManifestEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FetchEntry:
    url: str
    length: int | None  # "-" means unknown
    path: str


def parse_bagit_txt(data: bytes, name: str = "bagit.txt") -> BagDeclaration:
    """Parse the bag declaration strictly (RFC 8493 section 2.1.1).

    :raises TagFileError: byte-order mark, not two lines, or a line that is not the expected one.
    """
    if data.startswith(UTF8_BOM):
        raise TagFileError(f"{name}: starts with a byte-order mark, which the BagIt specification forbids")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TagFileError(f"{name}: not UTF-8 ({exc})") from exc
    lines = text.splitlines()
    while lines and lines[-1] == "":
        lines.pop()
    if len(lines) != 2:
        raise TagFileError(f"{name}: must have exactly 2 lines (version and encoding), found {len(lines)}")
    version = _DECLARATION[0].match(lines[0])
    encoding = _DECLARATION[1].match(lines[1])
    if not version:
        raise TagFileError(f"{name} line 1: expected 'BagIt-Version: M.N', got {lines[0]!r}")
    if not encoding:
        raise TagFileError(f"{name} line 2: expected 'Tag-File-Character-Encoding: ENC', got {lines[1]!r}")
    return BagDeclaration((int(version[1]), int(version[2])), encoding[1])


def parse_bag_info(data: bytes, encoding: str = "utf-8", name: str = "bag-info.txt") -> dict[str, list[str]]:
    """Tags of ``bag-info.txt`` (folded lines joined), each name mapped to all its values.

    Reuses bagit-python's tag parser. :raises TagFileError: a line that is not ``Name: value``.
    """
    import bagit

    stream = io.StringIO(data.decode(encoding, errors="replace").lstrip("\ufeff"))
    stream.name = name  # type: ignore[misc]  # bagit names the file in its messages
    tags: dict[str, list[str]] = {}
    try:
        for key, value in bagit._parse_tags(stream):
            tags.setdefault(key, []).append(value)
    except bagit.BagValidationError as exc:
        raise TagFileError(str(exc)) from exc
    return tags


def parse_payload_oxum(value: str) -> tuple[int, int]:
    """``Payload-Oxum: octets.streamcount`` -> (bytes, files). :raises TagFileError: malformed."""
    match = _OXUM.match(value.strip())
    if not match:
        raise TagFileError(f"bag-info.txt: malformed Payload-Oxum {value!r} (expected 'octets.streamcount')")
    return int(match[1]), int(match[2])


def decode_path(path: str) -> str:
    """Undo BagIt's percent-encoding (``%0A``, ``%0D``, ``%25``) and drop a leading ``./``."""
    path = _PERCENT.sub(lambda m: _PERCENT_MAP[m[1].lower()], path)
    return path[2:] if path.startswith("./") else path


def parse_manifest(data: bytes, name: str, algorithm: str, encoding: str = "utf-8") -> Manifest:
    """Parse ``<digest> <path>`` lines (md5sum-style ``*`` markers accepted with a warning).

    :raises TagFileError: a line without a path, or a digest that is not hexadecimal.
    """
    manifest = Manifest(name, algorithm)
    text = data.decode(encoding, errors="strict").lstrip("\ufeff")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or not parts[1].strip():
            raise TagFileError(f"{name} line {number}: expected '<digest> <path>', got {line!r}")
        digest, path = parts
        if not re.fullmatch(r"[0-9a-fA-F]+", digest):
            raise TagFileError(f"{name} line {number}: {digest!r} is not a hexadecimal digest")
        if path.startswith("*"):
            manifest.warnings.append(f"{name} line {number}: md5sum-style '*' marker before {path[1:]!r}")
            path = path[1:]
        manifest.entries.append(ManifestEntry(digest.lower(), decode_path(path), number))
    return manifest


def parse_fetch(data: bytes, encoding: str = "utf-8", name: str = "fetch.txt") -> list[FetchEntry]:
    """``url length path`` lines of ``fetch.txt``. :raises TagFileError: malformed line."""
    entries: list[FetchEntry] = []
    for number, line in enumerate(data.decode(encoding).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(None, 2)
        if len(parts) != 3 or not (parts[1] == "-" or parts[1].isdigit()):
            raise TagFileError(f"{name} line {number}: expected '<url> <length|-> <path>', got {line!r}")
        length = None if parts[1] == "-" else int(parts[1])
        entries.append(FetchEntry(parts[0], length, decode_path(parts[2])))
    return entries
