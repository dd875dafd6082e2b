"""Conditional writes (``If-Match``) on stores that get them wrong: what each endpoint accepts.

S3 compares a PutObject's ``If-Match`` with the object's ETag as HTTP defines it: the quoted
entity tag (``"5d41...592"``), which is what every S3 answer carries. Ceph RGW 16 compares the
header with its stored, unquoted ETag, so the quoted value our own last write returned is refused
with 412 (and the unquoted one accepted). A store may also refuse both, or ignore the header.

A writer that meets a 412 reads the object back. When it is still exactly the version the
condition named, the store refused a matching ``If-Match``: :func:`learn_refused_match` records,
once per endpoint for the rest of the process, the next form to try, and logs it once:

* ``quoted`` (S3's behaviour, the default) -> ``unquoted`` (RGW 16);
* ``unquoted`` refused too -> ``none``: the store has no usable ``If-Match``, and writes go
  without it. That is the documented behaviour for stores without conditional writes
  (:mod:`~airflow_s3stream.upload.state_store`): the lease keeps a later try away from a
  live one, and only two tries that read the state at the same moment can both proceed.

``If-None-Match: *`` (create only if absent) is not affected and always sent.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Literal

from airflow_s3stream.s3.checksum_headers import endpoint_of

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["IfMatchForm", "if_match_args", "if_match_form", "learn_refused_match", "same_etag"]

log = logging.getLogger("airflow_s3stream.s3")

IfMatchForm = Literal["quoted", "unquoted", "none"]
_NEXT: dict[IfMatchForm, IfMatchForm] = {"quoted": "unquoted", "unquoted": "none", "none": "none"}
_FORMS: dict[str, IfMatchForm] = {}  # endpoint URL -> the form it was found to accept, this process
_LOCK = threading.Lock()


def if_match_form(client: S3Client) -> IfMatchForm:
    """The ``If-Match`` form ``client``'s endpoint accepts (``quoted`` until found otherwise)."""
    with _LOCK:
        return _FORMS.get(endpoint_of(client), "quoted")


def if_match_args(etag: str, form: IfMatchForm) -> dict[str, str]:
    """The PutObject/DeleteObject keyword arguments that make a write conditional on ``etag``."""
    if form == "none":
        return {}
    bare = etag.strip('"')
    return {"IfMatch": f'"{bare}"' if form == "quoted" else bare}


def same_etag(a: str, b: str) -> bool:
    """Whether two ETags name the same version, quoted or not."""
    return a.strip('"') == b.strip('"')


def learn_refused_match(client: S3Client, refused: IfMatchForm, what: str) -> IfMatchForm:
    """Record that ``client``'s endpoint answered 412 to an ``If-Match`` in form ``refused`` that
    matched the stored version; returns the form to try next (logged once per endpoint and form)."""
    endpoint = endpoint_of(client)
    with _LOCK:
        current = _FORMS.get(endpoint, "quoted")
        if current != refused:  # another writer learned it meanwhile
            return current
        following = _FORMS[endpoint] = _NEXT[refused]
    if following == "unquoted":
        log.warning(
            "%s: the store at %s refuses a matching If-Match in the quoted form S3 uses (Ceph RGW 16 "
            "does); sending ETags unquoted to it from now on in this process",
            what,
            endpoint or "the default endpoint",
        )
    else:
        log.warning(
            "%s: the store at %s refuses a matching If-Match in every form; writing without it from now "
            "on in this process, as on stores without conditional writes (the resume state's lease "
            "still keeps later tries away from a live one)",
            what,
            endpoint or "the default endpoint",
        )
    return following
