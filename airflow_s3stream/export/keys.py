"""Where an export's objects go: the object key, numbered part keys, the manifest key, stale parts.

Pure functions over strings, so the naming rules are tested without a server:

* one file: ``s3_key`` is the object key; the format/compression suffix is appended when it is
  missing (``exports/day`` -> ``exports/day.csv.gz``, ``x.csv`` -> ``x.csv.gz``);
* split: ``s3_key`` is a prefix owned by the export: ``<prefix>/part-00000.csv.gz``, ... and
  ``<prefix>/_manifest.json``. A re-run removes ``part-NNNNN*`` objects under the prefix that it did
  not write (leftovers of an earlier, larger run). ``<prefix>/_commit.json`` exists only while an
  export commits its staged parts (:mod:`airflow_s3stream.publish`).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable

from airflow_s3stream.publish.manifest import MANIFEST_NAME

__all__ = [
    "COMMIT_STATE_NAME",
    "PART_DIGITS",
    "commit_state_key",
    "manifest_key",
    "part_key",
    "single_key",
    "stale_part_keys",
]

COMMIT_STATE_NAME = "_commit.json"
PART_DIGITS = 5  # part-00000 ... part-99999


def single_key(key: str, suffix: str) -> str:
    """The object key of an unsplit export: ``key`` with ``suffix`` completed if missing."""
    if key.endswith(suffix):
        return key
    base_ext = suffix.split(".")[1] if suffix.count(".") > 1 else None
    if base_ext is not None and key.endswith("." + base_ext):
        return key + suffix[len(base_ext) + 1 :]
    return key + suffix


def part_key(prefix: str, index: int, suffix: str) -> str:
    """``<prefix>/part-00042<suffix>`` for part ``index`` (0-based)."""
    return f"{prefix.rstrip('/')}/part-{index:0{PART_DIGITS}d}{suffix}"


def manifest_key(key: str, split: bool) -> str:
    """The manifest's key: inside the prefix when split, beside the object otherwise."""
    if split:
        return f"{key.rstrip('/')}/{MANIFEST_NAME}"
    directory = posixpath.dirname(key)
    return f"{directory}/{MANIFEST_NAME}" if directory else MANIFEST_NAME


def commit_state_key(prefix: str) -> str:
    """``<prefix>/_commit.json``: the state of a split export's commit while it runs."""
    return f"{prefix.rstrip('/')}/{COMMIT_STATE_NAME}"


def stale_part_keys(prefix: str, existing: Iterable[str], written: Iterable[str]) -> list[str]:
    """Keys of ``existing`` objects that are parts under ``prefix`` but not among ``written``."""
    pattern = re.compile(re.escape(prefix.rstrip("/") + "/") + rf"part-\d{{{PART_DIGITS}}}(\.[A-Za-z0-9.]+)?$")
    keep = set(written)
    return sorted(k for k in existing if pattern.match(k) and k not in keep)
