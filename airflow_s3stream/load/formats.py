"""Which format and compression a file is in: from the manifest, the key's suffix or its magic bytes.

Pure functions over strings and bytes. The suffixes are the export's (``.csv``, ``.jsonl``,
``.parquet``, then ``.gz`` / ``.zst``) plus the common spellings (``.ndjson``, ``.tsv`` is not
guessed: its delimiter would be a guess too).
"""

from __future__ import annotations

from airflow_s3stream.errors import ConfigurationError

__all__ = ["GZIP_MAGIC", "ZSTD_MAGIC", "compression_from_magic", "compression_from_suffix", "format_from_suffix"]

GZIP_MAGIC = b"\x1f\x8b"  # RFC 1952
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # RFC 8878 frame magic, little endian 0xFD2FB528

_COMPRESSION_SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_FORMAT_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def compression_from_suffix(key: str) -> str | None:
    """``gzip`` / ``zstd`` when ``key`` ends with a compression suffix, else ``None``."""
    lower = key.lower()
    return next((codec for suffix, codec in _COMPRESSION_SUFFIXES.items() if lower.endswith(suffix)), None)


def compression_from_magic(head: bytes) -> str | None:
    """``gzip`` / ``zstd`` when ``head`` (the file's first bytes) starts with that codec's magic."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


def format_from_suffix(key: str) -> str:
    """``csv`` / ``jsonl`` / ``parquet`` from ``key``'s suffix (after any compression suffix).

    :raises ConfigurationError: the suffix says nothing; the message names the key and asks for
        ``file_format``.
    """
    lower = key.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if lower.endswith(suffix):
            lower = lower[: -len(suffix)]
            break
    for suffix, file_format in _FORMAT_SUFFIXES.items():
        if lower.endswith(suffix):
            return file_format
    raise ConfigurationError(
        f"{key}: cannot tell the file format from the name; pass file_format='csv', 'jsonl' or 'parquet'"
    )
