"""BagIt (RFC 8493 and 0.97) validation of a bag streamed out of a ZIP, without a directory.

``tagfiles`` parses bagit.txt, bag-info.txt, manifests and fetch.txt from bytes; ``validation``
locates the bag in the archive and checks what the streaming pass hashed.
"""

from __future__ import annotations

from airflow_s3stream.archive.bagit.tagfiles import (
    BagDeclaration,
    FetchEntry,
    Manifest,
    ManifestEntry,
    TagFileError,
    decode_path,
    parse_bag_info,
    parse_bagit_txt,
    parse_fetch,
    parse_manifest,
    parse_payload_oxum,
)
from airflow_s3stream.archive.bagit.validation import SUPPORTED_ALGORITHMS, BagCheck, BagLayout, BagResult

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "BagCheck",
    "BagDeclaration",
    "BagLayout",
    "BagResult",
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
