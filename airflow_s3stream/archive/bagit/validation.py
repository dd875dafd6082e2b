"""Streaming BagIt validation: the bag's layout in a ZIP, and the checks once members are hashed.

The caller streams every member once. Before a member streams, :meth:`BagCheck.algorithms_for`
says which digests to compute (all payload-manifest algorithms for payload files, all
tagmanifest algorithms for tag files) and :meth:`BagCheck.keeps_content` whether its bytes are
needed (the small tag files). :meth:`BagCheck.finish` then checks the declaration, Payload-Oxum,
every manifest line and completeness, and returns findings. No I/O here.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field

from airflow_s3stream.archive.bagit.tagfiles import (
    BagDeclaration,
    FetchEntry,
    Manifest,
    TagFileError,
    parse_bag_info,
    parse_bagit_txt,
    parse_fetch,
    parse_manifest,
    parse_payload_oxum,
)
from airflow_s3stream.archive.report import Finding, Findings

__all__ = ["SUPPORTED_ALGORITHMS", "BagCheck", "BagLayout", "BagResult"]

SUPPORTED_ALGORITHMS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")  # hashlib names used by BagIt
_MANIFEST = re.compile(r"^(tag)?manifest-([a-z0-9]+)\.txt$")
KEPT_TAG_FILES = ("bagit.txt", "bag-info.txt", "fetch.txt")


@dataclass(frozen=True)
class BagLayout:
    """Where the bag sits in the archive: at the root, or in a single top-level directory."""

    root: str  # "" or "name/"

    @classmethod
    def find(cls, names: Iterable[str]) -> BagLayout | None:
        """The layout if ``bagit.txt`` is at the root or in the only top-level directory, else None.

        One pass over ``names`` (an iterator is fine), keeping at most two top-level names.
        """
        tops: set[str] = set()
        declarations: set[str] = set()
        for name in names:
            if name == "bagit.txt":
                return cls("")
            if not name:
                continue
            top, _, rest = name.partition("/")
            if len(tops) < 2:
                tops.add(top)
            if rest == "bagit.txt":
                declarations.add(top)
        if len(tops) == 1:
            top = next(iter(tops))
            if top in declarations:
                return cls(top + "/")
        return None

    def relative(self, name: str) -> str | None:
        """``name`` relative to the bag root, or None when it lies outside the bag."""
        return name[len(self.root) :] if name.startswith(self.root) else None


@dataclass
class BagResult:
    declaration: BagDeclaration | None
    payload_files: int
    payload_bytes: int
    algorithms: list[str]
    fetch: list[FetchEntry]
    errors: list[Finding]
    warnings: list[Finding]


@dataclass
class _Seen:
    size: int
    digests: dict[str, str]


@dataclass
class BagCheck:
    """Collects what the streaming pass saw and checks it against the bag's tag files."""

    layout: BagLayout
    member_names: list[str]
    payload_algorithms: list[str] = field(default_factory=list)
    tag_algorithms: list[str] = field(default_factory=list)
    errors: list[Finding] = field(default_factory=Findings)
    warnings: list[Finding] = field(default_factory=Findings)
    _seen: dict[str, _Seen] = field(default_factory=dict)
    _failed: set[str] = field(default_factory=set)
    _content: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.member_names:
            rel = self.layout.relative(name)
            match = _MANIFEST.match(rel or "")
            if not match:
                continue
            alg = match[2]
            if alg not in SUPPORTED_ALGORITHMS:
                self.errors.append(Finding(name, f"unsupported checksum algorithm {alg!r}"))
                continue
            (self.tag_algorithms if match[1] else self.payload_algorithms).append(alg)
        if not self.payload_algorithms:
            self.errors.append(Finding(self.layout.root + "manifest-<alg>.txt", "the bag has no payload manifest"))

    def _is_payload(self, rel: str) -> bool:
        return rel.startswith("data/")

    def algorithms_for(self, name: str) -> list[str]:
        """Digests to compute while ``name`` streams."""
        rel = self.layout.relative(name)
        if rel is None or name.endswith("/"):
            return []
        return list(self.payload_algorithms if self._is_payload(rel) else self.tag_algorithms)

    def keeps_content(self, name: str) -> bool:
        """True for the tag files whose bytes :meth:`finish` parses."""
        rel = self.layout.relative(name)
        return rel is not None and (rel in KEPT_TAG_FILES or bool(_MANIFEST.match(rel)))

    def record(self, name: str, size: int, digests: dict[str, str], content: bytes | None = None) -> None:
        """A member streamed completely and passed its CRC-32 check."""
        rel = self.layout.relative(name)
        if rel is None:
            self.errors.append(Finding(name, f"lies outside the bag directory {self.layout.root!r}"))
            return
        self._seen[rel] = _Seen(size, digests)
        if content is not None:
            self._content[rel] = content

    def record_failure(self, name: str) -> None:
        """A member could not be streamed (its error is reported by the ZIP layer)."""
        rel = self.layout.relative(name)
        if rel is not None:
            self._failed.add(rel)

    # --- the checks -----------------------------------------------------------------------
    def _err(self, rel: str, reason: str) -> None:
        self.errors.append(Finding(self.layout.root + rel, reason))

    def _warn(self, rel: str, reason: str) -> None:
        self.warnings.append(Finding(self.layout.root + rel, reason))

    def finish(self) -> BagResult:
        """Run every BagIt check on what was recorded; returns the findings."""
        declaration = self._check_declaration()
        encoding = declaration.encoding if declaration else "utf-8"
        payload = {rel: s for rel, s in self._seen.items() if self._is_payload(rel)}
        fetch = self._read_fetch(encoding)
        fetch_paths = {f.path for f in fetch}
        self._check_oxum(encoding, payload, fetch)
        self._check_fetch(fetch, payload)
        for alg in self.payload_algorithms:
            listed = self._check_manifest(f"manifest-{alg}.txt", alg, encoding, payload, fetch_paths, payload=True)
            for rel in sorted(set(payload) - listed):
                self._err(rel, f"payload file not listed in manifest-{alg}.txt")
        tags = {rel: s for rel, s in self._seen.items() if not self._is_payload(rel)}
        for alg in self.tag_algorithms:
            self._check_manifest(f"tagmanifest-{alg}.txt", alg, encoding, tags, set(), payload=False)
        self._check_names(payload)
        return BagResult(
            declaration,
            len(payload),
            sum(s.size for s in payload.values()),
            sorted(set(self.payload_algorithms) | set(self.tag_algorithms)),
            fetch,
            self.errors,
            self.warnings,
        )

    def _check_declaration(self) -> BagDeclaration | None:
        data = self._content.get("bagit.txt")
        if data is None:
            self._err("bagit.txt", "missing or unreadable")
            return None
        try:
            declaration = parse_bagit_txt(data)
        except TagFileError as exc:
            self._err("bagit.txt", str(exc).removeprefix("bagit.txt").lstrip(": "))
            return None
        try:
            codecs.lookup(declaration.encoding)
        except LookupError:
            self._err("bagit.txt", f"unknown Tag-File-Character-Encoding {declaration.encoding!r}")
            return None
        if declaration.version not in ((0, 97), (1, 0)):
            self._warn("bagit.txt", f"BagIt-Version {declaration.version[0]}.{declaration.version[1]} is not 0.97/1.0")
        return declaration

    def _read_fetch(self, encoding: str) -> list[FetchEntry]:
        data = self._content.get("fetch.txt")
        if data is None:
            return []
        try:
            entries = parse_fetch(data, encoding)
        except (TagFileError, UnicodeDecodeError) as exc:
            self._err("fetch.txt", str(exc))
            return []
        return entries

    def _check_fetch(self, fetch: list[FetchEntry], payload: dict[str, _Seen]) -> None:
        """Report every fetch.txt entry; one whose file is absent makes the bag incomplete.

        RFC 8493 section 3: a complete bag has every file of every payload manifest present, and
        a holey bag's files are not present until fetched, so it is reported, never fetched.
        """
        for entry in fetch:
            url = urllib.parse.urlsplit(entry.url)
            if not ((url.scheme and url.netloc) or url.scheme == "file"):
                self._err("fetch.txt", f"malformed URL {entry.url!r} for {entry.path}")
            if not entry.path.startswith("data/") or ".." in entry.path.split("/"):
                self._err("fetch.txt", f"path {entry.path!r} is out of scope (not under data/)")
            elif entry.path not in payload:
                self._err(
                    entry.path,
                    f"listed in fetch.txt ({entry.url}) but not in the archive: "
                    "the bag is holey, so incomplete until it is fetched (reported, not fetched)",
                )
            elif entry.length is not None and entry.length != payload[entry.path].size:
                self._err(
                    entry.path, f"fetch.txt says {entry.length} bytes, the archive holds {payload[entry.path].size}"
                )
            else:
                self._warn("fetch.txt", f"lists {entry.path} at {entry.url}; the file is present (not fetched)")

    def _check_oxum(self, encoding: str, payload: dict[str, _Seen], fetch: list[FetchEntry]) -> None:
        data = self._content.get("bag-info.txt")
        if data is None:
            return
        try:
            oxums = parse_bag_info(data, encoding).get("Payload-Oxum", [])
            if not oxums:
                return
            octets, files = parse_payload_oxum(oxums[0])
        except TagFileError as exc:
            self._err("bag-info.txt", str(exc).removeprefix("bag-info.txt").lstrip(": "))
            return
        # A holey bag's Oxum counts the files still to be fetched (RFC 8493 section 2.2.2).
        absent = {f.path: f.length or 0 for f in fetch if f.path not in payload}
        have_octets = sum(s.size for s in payload.values()) + sum(absent.values())
        have_files = len(payload) + len(absent)
        if (octets, files) != (have_octets, have_files):
            self._err(
                "bag-info.txt",
                f"Payload-Oxum {octets}.{files} does not match the payload streamed ({have_octets}.{have_files})",
            )

    def _check_manifest(
        self, name: str, alg: str, encoding: str, files: dict[str, _Seen], fetch_paths: set[str], *, payload: bool
    ) -> set[str]:
        """Check every line of one manifest; returns the paths it lists."""
        data = self._content.get(name)
        if data is None:  # failed its CRC (reported by the ZIP layer) or too large to hold
            if name not in self._failed:
                self._err(name, "larger than max_tag_file_bytes: not checked")
            return set(files)  # do not also report every file as unlisted
        try:
            manifest: Manifest = parse_manifest(data, name, alg, encoding)
        except (TagFileError, UnicodeDecodeError) as exc:
            self._err(name, str(exc).removeprefix(name).lstrip(": "))
            return set(files)
        for warning in manifest.warnings:
            self._warn(name, warning.removeprefix(name).lstrip(" "))
        nfc = {unicodedata.normalize("NFC", rel): rel for rel in files}
        listed: dict[str, str] = {}
        covered: set[str] = set()
        for entry in manifest.entries:
            path = entry.path
            where = f"{name} line {entry.line}"
            if path.startswith("/") or ".." in path.split("/") or (payload != path.startswith("data/")):
                self._err(name, f"line {entry.line}: path {path!r} is out of scope for this manifest")
                continue
            if path in listed:
                if listed[path] == entry.digest:
                    self._warn(name, f"line {entry.line}: {path} listed twice with the same digest")
                else:
                    self._err(name, f"line {entry.line}: {path} listed twice with different digests")
                continue
            listed[path] = entry.digest
            actual = path if path in files else nfc.get(unicodedata.normalize("NFC", path))
            if actual is not None and actual != path:
                self._warn(actual, f"{where} names it in a different Unicode normalization")
            if actual is None:
                if path in self._failed or path in fetch_paths:
                    continue
                self._err(path, f"listed in {name} but not in the archive")
                continue
            covered.add(actual)
            got = files[actual].digests.get(alg)
            if got is not None and got != entry.digest:
                self._err(actual, f"{alg} mismatch (manifest {entry.digest}, computed {got})")
        return covered | (self._failed & set(files))

    def _check_names(self, payload: dict[str, _Seen]) -> None:
        folded: dict[str, str] = {}
        for rel in sorted(payload):
            key = unicodedata.normalize("NFC", rel).casefold()
            if key in folded:
                self._warn(rel, f"differs from {folded[key]} only by case or Unicode normalization")
            else:
                folded[key] = rel
