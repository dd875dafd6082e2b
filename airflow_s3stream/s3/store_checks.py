"""What an S3 endpoint really checks of the checksums a request carries: probed once, remembered per process.

S3-compatible stores differ, and most do not say so. AWS S3 refuses a wrong ``x-amz-checksum-*``
value (400 ``BadDigest``) and a wrong ``Content-MD5``. Ceph RGW 16 ignores additional checksum
headers entirely (a wrong CRC32C is stored with 200) but refuses a wrong ``Content-MD5``. moto
checks neither on UploadPart. Backblaze B2 and some MinIO / RGW / OBS versions refuse the header
itself (400 ``InvalidArgument``, boto/boto3#4392). Sending a CRC32C to a store that ignores it
protects nothing, so ``checksum_algorithm="auto"`` must know which kind of store it talks to.

:func:`store_checks` finds out with at most one *probe* per endpoint URL and question per process,
run at the first upload I/O of an :class:`~airflow_s3stream.s3.multipart.session.UploadSession`
(never at DAG parse time): a tiny PutObject of :data:`PROBE_BODY` to a fresh key under
:data:`PROBE_PREFIX` in the destination bucket with a deliberately wrong CRC32C (does the store
check additional checksums?) and/or one with a deliberately wrong ``Content-MD5`` and no additional
checksum header (does it check ``Content-MD5``?). Only what the session needs is asked: ``auto``
asks the first, and the second only where CRC32C is not checked; ``MD5`` the second; ``CRC32C``
the first; ``CRC32``/``CRC64NVME`` nothing (they are claimed only when the server echoes them).
Each answer becomes a :data:`Verdict`
(:func:`verdict_of_probe`): refused as corrupt (``checked``), stored (``ignored``; the probe
object is deleted again), header refused (``refused``), or anything else (``unknown``: no
permission to write or delete the probe key, retries exhausted). No permission is logged once and
claims nothing; the upload then behaves as it did without the probe.

The memo here is the only one: a store refusing checksum headers at any request
(:func:`remember_refusal`, from the multipart session or :mod:`~airflow_s3stream.s3.objects`)
is recorded in the same :class:`StoreChecks`. The pure decisions on it are
:func:`choose_algorithm` (what ``auto`` sends) and :func:`checked_by_store` (what an upload's
result may claim the store checked).
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from awscrt import checksums as crt

from airflow_s3stream.s3.checksum_headers import content_md5, endpoint_of, without_checksum_headers
from airflow_s3stream.s3.classify import S3Failure, classify
from airflow_s3stream.s3.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = [
    "PROBED_ALGORITHM",
    "PROBE_BODY",
    "PROBE_PREFIX",
    "StoreChecks",
    "Verdict",
    "checked_by_store",
    "choose_algorithm",
    "forget_endpoint",
    "known_checks",
    "questions_for",
    "refuses_checksum_headers",
    "remember_checks",
    "remember_refusal",
    "store_checks",
    "verdict_of_probe",
]

log = logging.getLogger("airflow_s3stream.s3")

Verdict = Literal["checked", "ignored", "refused", "unknown"]
# The payload's SHA-256 in the signature did not match the bytes received: the body was damaged on
# the way, whatever the store does with the probe's deliberately wrong checksum.
BODY_DAMAGED_CODES = frozenset({"XAmzContentSHA256Mismatch"})

PROBED_ALGORITHM = "CRC32C"  # the additional checksum the probe sends wrong (and what auto prefers)
PROBE_PREFIX = ".s3stream-probe/"  # probe objects live (for a moment) under this prefix of the bucket
PROBE_BODY = b"airflow-s3stream checksum probe\n"
CONTENT_MD5 = "Content-MD5"  # how checked_by_store names the MD5 check

_MD5_ALGORITHM = "MD5"
_AUTO = "auto"


@dataclass(frozen=True)
class StoreChecks:
    """What one endpoint does with a wrong checksum, as far as this process knows.

    ``additional``: a wrong ``x-amz-checksum-crc32c`` on PutObject. ``content_md5``: a wrong
    ``Content-MD5`` on PutObject. ``None``: not asked yet (it is asked at most once; ``unknown``
    is a final answer, such as no permission to probe).
    """

    additional: Verdict | None = None
    content_md5: Verdict | None = None

    def describe(self) -> str:
        asked = (self.additional or "not probed", self.content_md5 or "not probed")
        return f"additional checksums {asked[0]}, Content-MD5 {asked[1]}"


def verdict_of_probe(failure: S3Failure | None) -> Verdict:
    """The verdict of one probe PutObject sent with a wrong checksum: ``failure`` is its
    classification, ``None`` when the store answered 200 (stored the object). Pure."""
    if failure is None:
        return "ignored"
    if failure.code in BODY_DAMAGED_CODES:
        return "unknown"  # the body itself arrived damaged (it no longer matched its signature): nothing learnt
    if failure.kind == "checksum":
        return "checked"
    if failure.checksum_headers_refused:
        return "refused"
    return "unknown"


def choose_algorithm(configured: str, checks: StoreChecks) -> str:
    """The algorithm a new upload sends: an explicit one unchanged; ``auto`` CRC32C where the store
    checks it or nothing is known, else MD5 (``Content-MD5``: a store refusing or ignoring the
    additional checksum). Pure."""
    if configured != _AUTO:
        return configured
    if checks.additional in ("ignored", "refused"):
        return _MD5_ALGORITHM
    return PROBED_ALGORITHM


def checked_by_store(algorithm: str, checks: StoreChecks, *, echoed: bool = False) -> list[str]:
    """What the store is known to have checked of an upload sent with ``algorithm``: ``["Content-MD5"]``
    for MD5 on a store that refuses a wrong one, ``[algorithm]`` for the CRC the probe found
    checked (CRC32C) or that the server echoed back (``echoed``), else ``[]``. Pure."""
    if algorithm == _MD5_ALGORITHM:
        return [CONTENT_MD5] if checks.content_md5 == "checked" else []
    if echoed or (algorithm == PROBED_ALGORITHM and checks.additional == "checked"):
        return [algorithm]
    return []


_KNOWN: dict[str, StoreChecks] = {}  # endpoint URL -> what it checks, for this process
_PROBING: dict[str, threading.Lock] = {}  # one probe at a time per endpoint; the others wait for it
_LOCK = threading.Lock()


def known_checks(client: S3Client) -> StoreChecks:
    """What is known of ``client``'s endpoint, without sending anything."""
    with _LOCK:
        return _KNOWN.get(endpoint_of(client), StoreChecks())


def remember_checks(client: S3Client, checks: StoreChecks) -> None:
    """Record ``checks`` for ``client``'s endpoint (what a probe found; tests seed it this way)."""
    with _LOCK:
        _KNOWN[endpoint_of(client)] = checks


def forget_endpoint(client: S3Client) -> None:
    """Drop what is known of ``client``'s endpoint: the next upload probes it again."""
    with _LOCK:
        _KNOWN.pop(endpoint_of(client), None)


def refuses_checksum_headers(client: S3Client) -> bool:
    """True once a request to ``client``'s endpoint was refused for an additional checksum header."""
    return known_checks(client).additional == "refused"


def remember_refusal(client: S3Client, what: str, failure: S3Failure) -> None:
    """Record that ``client``'s endpoint refuses checksum headers; warn the first time only.

    ``what`` names the request that was refused (``"part 1 of s3://b/k"``), ``failure`` is its
    classification (``failure.checksum_headers_refused`` is true).
    """
    endpoint = endpoint_of(client)
    with _LOCK:
        known = _KNOWN.get(endpoint, StoreChecks())
        first = known.additional != "refused"
        _KNOWN[endpoint] = replace(known, additional="refused")
    if first:
        log.warning(
            "%s: the store at %s refuses additional checksum headers (%s); sending Content-MD5 instead "
            "for this and every later request to it in this process",
            what,
            endpoint or "the default endpoint",
            failure.describe(),
        )


def questions_for(algorithm: str, checks: StoreChecks) -> tuple[bool, bool]:
    """Which probes an upload with ``algorithm`` still needs: (additional, Content-MD5). Pure."""
    if algorithm == _AUTO:
        crc_checked = checks.additional == "checked"
        return checks.additional is None, checks.content_md5 is None and not crc_checked
    if algorithm == _MD5_ALGORITHM:
        return False, checks.content_md5 is None
    return checks.additional is None and algorithm == PROBED_ALGORITHM, False


def store_checks(client: S3Client, bucket: str, retry: RetryPolicy, algorithm: str = _AUTO) -> StoreChecks:
    """What ``client``'s endpoint checks, probing in ``bucket`` what an upload with ``algorithm``
    needs to know and this process has not asked yet (module docstring).

    Concurrent callers for one endpoint wait for a single probe. Never raises: a probe that cannot
    tell says ``unknown``. A missing bucket is not remembered (the upload itself reports it, and
    another bucket may exist); every other answer is, for the rest of the process.
    """
    endpoint = endpoint_of(client)
    with _LOCK:
        known = _KNOWN.get(endpoint, StoreChecks())
        if not any(questions_for(algorithm, known)):
            return known
        gate = _PROBING.setdefault(endpoint, threading.Lock())
    with gate:
        with _LOCK:
            known = _KNOWN.get(endpoint, StoreChecks())
        if not any(questions_for(algorithm, known)):
            return known
        found = _probe(client, bucket, retry, algorithm, known)
        with _LOCK:
            now = _KNOWN.get(endpoint, StoreChecks())  # a refusal may have been recorded meanwhile
            additional = "refused" if now.additional == "refused" else found.additional
            checks = StoreChecks(additional, found.content_md5 or now.content_md5)
            _KNOWN[endpoint] = checks
    if checks != known:
        log.info(
            "the store at %s: %s (probed in s3://%s/%s)",
            endpoint or "the default endpoint",
            checks.describe(),
            bucket,
            PROBE_PREFIX,
        )
    return checks


def _probe(client: S3Client, bucket: str, retry: RetryPolicy, algorithm: str, known: StoreChecks) -> StoreChecks:
    """Send the probes ``algorithm`` still needs; returns ``known`` with their verdicts."""
    key = f"{PROBE_PREFIX}{secrets.token_hex(8)}"
    wrong_crc = base64.b64encode(((crt.crc32c(PROBE_BODY, 0) ^ 1) & 0xFFFFFFFF).to_bytes(4, "big")).decode("ascii")
    wrong_md5 = content_md5(PROBE_BODY + b"!")
    checks = known
    failures: list[S3Failure] = []
    stored = False
    if questions_for(algorithm, checks)[0]:
        failure = _put(client, bucket, key, retry, ChecksumCRC32C=wrong_crc)
        checks = replace(checks, additional=verdict_of_probe(failure))
        if failure is not None and checks.additional == "refused":
            remember_refusal(client, f"probing s3://{bucket}/{key}", failure)  # warns once, like an upload would
        failures += [failure] if failure is not None else []
        stored = stored or failure is None
    if questions_for(algorithm, checks)[1] and not any(f.access_denied or f.not_found for f in failures):
        failure = _put(client, bucket, key, retry, without_headers=True, ContentMD5=wrong_md5)
        verdict = verdict_of_probe(failure)
        checks = replace(checks, content_md5="unknown" if verdict == "refused" else verdict)  # we sent no such header
        failures += [failure] if failure is not None else []
        stored = stored or failure is None
    if stored:
        _delete(client, bucket, key, retry)
    if any(f.not_found for f in failures):
        return known  # no such bucket: nothing learnt, ask again with another
    denied = [f for f in failures if f.access_denied]
    if denied:
        log.warning(
            "s3://%s/%s: no permission to probe which checksums the store at %s checks (%s); "
            "uploads to it claim no store-side check, and auto sends CRC32C",
            bucket,
            key,
            endpoint_of(client) or "the default endpoint",
            denied[0].describe(),
        )
        return StoreChecks(checks.additional or "unknown", "unknown")
    return checks


def _put(
    client: S3Client, bucket: str, key: str, retry: RetryPolicy, *, without_headers: bool = False, **checksum: Any
) -> S3Failure | None:
    """PutObject the probe body with ``checksum``; None when stored, else the classified failure.

    The wrong checksum is the point of the probe: its refusal is the answer, never sent again."""

    def send() -> S3Failure | None:
        try:
            client.put_object(Bucket=bucket, Key=key, Body=PROBE_BODY, **checksum)
        except Exception as exc:
            failure = classify(exc)
            if failure.kind != "checksum" or failure.code in BODY_DAMAGED_CODES:
                raise  # a damaged body is no answer to the probe's question: sent again, if the budget allows
            return failure
        return None

    try:
        if without_headers:
            with without_checksum_headers(client):
                return retry.call(send, what=f"probing s3://{bucket}/{key}")
        return retry.call(send, what=f"probing s3://{bucket}/{key}")
    except Exception as exc:
        return classify(exc)


def _delete(client: S3Client, bucket: str, key: str, retry: RetryPolicy) -> None:
    """Delete the probe object the store accepted; a failure only leaves its few bytes behind (logged)."""
    what = f"deleting probe s3://{bucket}/{key}"
    try:
        retry.call(lambda: client.delete_object(Bucket=bucket, Key=key), what=what)
    except Exception as exc:
        log.warning("%s: %s; it stays (%d bytes)", what, classify(exc).describe(), len(PROBE_BODY))
