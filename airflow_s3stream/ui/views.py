"""HTML pages for our operators' results: pure functions from plain data to escaped HTML.

Each operator's ``return_value`` XCom gets a page of its own kind (:func:`result_kind`); a result
whose shape is unknown (another operator, an older version) is shown as a key/value table, never
refused. Everything that comes from a result, a manifest or an object is escaped here.
"""

from __future__ import annotations

import html
import json
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "OPERATOR_KINDS",
    "RunRow",
    "TaskRef",
    "page",
    "render_error",
    "render_preview",
    "render_result",
    "render_runs",
    "result_kind",
    "verdict_of",
]

# Operator class name (TaskInstance.operator) -> the kind of page its result gets.
OPERATOR_KINDS: dict[str, str] = {
    "S3ZipVerifyOperator": "verification",
    "PostgresToS3StreamOperator": "export",
    "S3StreamCommitOperator": "commit",
    "S3StreamAbortOperator": "abort",
    "S3MultipartUploadOperator": "upload",
    "S3ToPostgresStreamOperator": "load",
    "S3ToBagItZipOperator": "package",
}

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.2rem;color:#1a202c;font-size:14px}
h1{font-size:1.3rem;margin:0 0 .6rem}h2{font-size:1.05rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;margin:.3rem 0}
td,th{border:1px solid #cbd5e0;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#edf2f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{display:inline-block;padding:.2rem .7rem;border-radius:4px;font-weight:600;color:#fff}
.ok{background:#2f855a}.bad{background:#c53030}.neutral{background:#4a5568}
code,.mono{font-family:ui-monospace,Menlo,monospace;font-size:12.5px}.muted{color:#718096}
.refused{padding:1rem;border:1px solid #c53030;background:#fff5f5}
form.filters{margin:.5rem 0}form.filters input,form.filters select{margin-right:.5rem}
"""


@dataclass(frozen=True)
class TaskRef:
    """Which task instance a page is about (for links back to it)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    def query(self, **extra: str | int) -> str:
        """The URL query naming this task instance (run ids may hold ``/``: never in a path)."""
        params: dict[str, str | int] = {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "map_index": self.map_index,
            **extra,
        }
        return urllib.parse.urlencode(params)


@dataclass(frozen=True)
class RunRow:
    """One task instance of our operators in the list of recent runs."""

    ref: TaskRef
    operator: str
    state: str | None
    start_date: str | None
    verdict: str


def e(value: Any) -> str:
    """``value`` as escaped HTML text (``None`` as an empty string)."""
    return "" if value is None else html.escape(str(value), quote=True)


def page(title: str, body: str) -> str:
    """A whole HTML document around ``body`` (already escaped HTML)."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{e(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{e(title)}</h1>{body}</body></html>"
    )


def render_error(status: int, message: str) -> str:
    """The page of a refused or failed request: the status and a message, nothing of the DAG."""
    return page(f"{status}", f"<div class='refused'>{e(message)}</div>")


def result_kind(operator: str | None, result: Any) -> str:
    """The kind of page for ``result``: from the operator's class name, else from the result's shape."""
    if operator in OPERATOR_KINDS:
        kind = OPERATOR_KINDS[operator]
        return kind if isinstance(result, Mapping) else "unknown"
    if not isinstance(result, Mapping):
        return "unknown"
    keys = set(result)
    if {"valid", "errors", "members_checked"} <= keys:
        return "verification"
    if {"parts", "checksum_algorithm"} <= keys:
        return "upload"
    if {"table", "mode", "files"} <= keys:
        return "load"
    if {"bag_name", "oxum"} <= keys:
        return "package"
    if {"files", "manifest_key"} <= keys:
        return "export"
    return "unknown"


def verdict_of(operator: str | None, result: Any) -> str:
    """A one-word summary for the list of runs: ``valid``/``invalid``, ``N rows``, ``N parts``..."""
    kind = result_kind(operator, result)
    if result is None:
        return ""
    if kind == "verification":
        if result.get("valid"):
            return "valid"
        count = _int(result.get("error_count", len(_list(result.get("errors")))))
        return f"invalid ({count:,} error{'' if count == 1 else 's'})"
    if kind in ("export", "commit", "load"):
        return f"{_fmt_int(result.get('rows'))} rows"
    if kind == "upload":
        return f"{_fmt_int(result.get('size'))} bytes"
    if kind == "package":
        verification = result.get("verification")
        if isinstance(verification, Mapping):
            return "packaged, verifies" if verification.get("valid") else "packaged, does NOT verify"
        return f"{_fmt_int(result.get('files'))} files"
    if kind == "abort":
        return f"{len(_list(result.get('aborted')))} aborted"
    return ""


# --- small pieces ---------------------------------------------------------------------------


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _fmt_int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else e(value)


def _cell(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"<td class='num'>{_fmt_int(value)}</td>"
    if isinstance(value, Mapping | list | tuple):
        return f"<td><code>{e(json.dumps(value, default=str, sort_keys=True))}</code></td>"
    return f"<td>{e(value)}</td>"


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, raw: Sequence[bool] = ()) -> str:
    """A table; a column whose ``raw`` flag is set holds HTML already escaped by the caller."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers) if any(headers) else ""
    body = []
    for row in rows:
        cells = [f"<td>{value}</td>" if i < len(raw) and raw[i] else _cell(value) for i, value in enumerate(row)]
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        body = [f"<tr><td colspan='{len(headers)}' class='muted'>none</td></tr>"]
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f"<table>{thead}<tbody>{''.join(body)}</tbody></table>"


def _facts(result: Mapping[str, Any], keys: Sequence[tuple[str, str]]) -> str:
    """A two-column table of the ``keys`` present in ``result`` (label, key)."""
    rows = [(label, result[key]) for label, key in keys if key in result]
    return _table(["", ""], rows)


def _key_values(value: Any) -> str:
    """Anything as a readable table: a mapping by key, else its JSON."""
    if isinstance(value, Mapping):
        return _table(["key", "value"], sorted(((str(k), v) for k, v in value.items()), key=lambda kv: kv[0]))
    return f"<pre class='mono'>{e(json.dumps(value, indent=2, default=str))}</pre>"


def _verdict(ok: bool | None, text: str) -> str:
    css = "neutral" if ok is None else ("ok" if ok else "bad")
    return f"<p><span class='verdict {css}'>{e(text)}</span></p>"


def _preview_link(ref: TaskRef | None, bucket: Any, key: Any) -> str:
    if ref is None or not key:
        return e(key)
    query = ref.query(key=str(key))
    return f"<a class='mono' href='preview?{e(query)}'>{e(key)}</a>"


# --- the pages of each kind -----------------------------------------------------------------


def _render_verification(result: Mapping[str, Any]) -> str:
    valid = bool(result.get("valid"))
    errors = [f for f in _list(result.get("errors")) if isinstance(f, Mapping)]
    warnings = [f for f in _list(result.get("warnings")) if isinstance(f, Mapping)]
    error_count = _int(result.get("error_count", len(errors)))
    text = "VALID" if valid else f"INVALID: {error_count:,} error{'s' if error_count != 1 else ''}"
    parts = [
        _verdict(valid, text),
        f"<p class='mono'>{e(result.get('source'))}</p>",
        "<h2>Errors</h2>",
        _table(["member", "reason"], [(f.get("member") or "(archive)", f.get("reason")) for f in errors]),
    ]
    if error_count > len(errors):
        parts.append(f"<p class='muted'>and {error_count - len(errors):,} more not kept in the report</p>")
    parts.append("<h2>Counts</h2>")
    parts.append(
        _facts(
            result,
            [
                ("checked as", "mode"),
                ("members checked", "members_checked"),
                ("members in the archive", "members_total"),
                ("payload files", "payload_files"),
                ("payload bytes", "payload_bytes"),
                ("archive bytes", "archive_bytes"),
                ("uncompressed bytes", "uncompressed_bytes"),
                ("digest algorithms", "algorithms"),
                ("bag root", "bag_root"),
                ("BagIt version", "bagit_version"),
                ("fetch.txt entries", "fetch_entries"),
                ("bytes read", "bytes_read"),
                ("requests", "requests"),
                ("seconds", "seconds"),
            ],
        )
    )
    if warnings:
        parts.append("<h2>Warnings</h2>")
        parts.append(
            _table(["member", "reason"], [(f.get("member") or "(archive)", f.get("reason")) for f in warnings])
        )
    return "".join(parts)


def _checksum_text(entry: Mapping[str, Any]) -> str:
    checksum = entry.get("checksum")
    if isinstance(checksum, Mapping):
        algorithm, value = checksum.get("algorithm"), checksum.get("value")
        kind = checksum.get("type")
        return f"{algorithm} {kind or ''} {value}".replace("  ", " ").strip()
    return "" if checksum is None else str(checksum)


def _render_files(result: Mapping[str, Any], manifest: Mapping[str, Any] | None, ref: TaskRef | None) -> str:
    """The files of an export or a commit: the manifest's entries when it was read, else the XCom's."""
    bucket = result.get("bucket")
    source = manifest if isinstance(manifest, Mapping) else result
    files = [f for f in _list(source.get("files")) if isinstance(f, Mapping)]
    rows = [
        (
            _preview_link(ref, bucket, f.get("key")),
            f.get("rows"),
            f.get("bytes"),
            e(_checksum_text(f)),
            e(f.get("etag")),
        )
        for f in files
    ]
    return _table(["key", "rows", "bytes", "checksum", "ETag"], rows, raw=(True, False, False, True, True))


def _render_manifest(manifest: Mapping[str, Any] | None, manifest_key: Any, error: str | None) -> str:
    parts = [f"<h2>Manifest</h2><p class='mono'>{e(manifest_key) or 'none'}</p>"]
    if error:
        parts.append(f"<p class='refused'>{e(error)}</p>")
    if isinstance(manifest, Mapping):
        shown = {k: v for k, v in manifest.items() if k != "files"}
        parts.append(_key_values(shown))
    return "".join(parts)


def _export_location(result: Mapping[str, Any]) -> str:
    """The key (or prefix) an export wrote: the result's ``key``, else its manifest's folder, else its one file."""
    if result.get("key"):
        return str(result["key"])
    manifest_key = str(result.get("manifest_key") or "")
    if "/" in manifest_key:
        return manifest_key.rsplit("/", 1)[0] + "/"
    files = _list(result.get("files"))
    return str(files[0].get("key", "")) if len(files) == 1 and isinstance(files[0], Mapping) else manifest_key


def _render_export(
    result: Mapping[str, Any], manifest: Mapping[str, Any] | None, manifest_error: str | None, ref: TaskRef | None
) -> str:
    staged = bool(result.get("staged"))
    rows = _fmt_int(result.get("rows"))
    parts = [
        _verdict(None, f"staged: {rows} rows, published by the job's commit")
        if staged
        else _verdict(True, f"published: {rows} rows"),
        f"<p class='mono'>s3://{e(result.get('bucket'))}/{e(_export_location(result))}</p>",
        _facts(
            result,
            [
                ("rows", "rows"),
                ("bytes", "bytes"),
                ("seconds", "seconds"),
                ("MB/s", "mb_per_s"),
                ("commit (ms)", "commit_ms"),
                ("stale files deleted", "deleted_stale"),
            ],
        ),
        "<h2>Files</h2>",
        _render_files(result, manifest, ref),
    ]
    if not staged:
        parts.append(_render_manifest(manifest, result.get("manifest_key"), manifest_error))
    return "".join(parts)


def _render_upload(result: Mapping[str, Any]) -> str:
    parts_total = _int(result.get("parts"))
    reused = _int(result.get("resumed_parts"))
    sent = _int(result.get("uploaded_parts", parts_total - reused))
    how = "one PUT" if parts_total == 0 else f"{parts_total:,} part{'s' if parts_total != 1 else ''}"
    checked = _list(result.get("checked_by_store"))
    verified = _list(result.get("verified"))
    rows: list[tuple[str, Any]] = [
        ("object", f"s3://{result.get('bucket')}/{result.get('key')}"),
        ("source", result.get("source")),
        ("size (bytes)", result.get("size")),
        ("stored as", how),
        ("parts sent by this try", sent if parts_total else "-"),
        ("parts reused from an earlier try", reused if parts_total else "-"),
        ("part size (bytes)", result.get("part_size")),
        (
            "checksum we computed",
            f"{result.get('checksum_algorithm')} {result.get('checksum_type')} {result.get('checksum')}",
        ),
        (
            "checksum the store reports",
            "not asked" if result.get("store_checksum") is None else result.get("store_checksum") or "none",
        ),
        ("checked by the store on receipt", ", ".join(map(str, checked)) or "nothing known"),
        ("compared by us after completion", ", ".join(map(str, verified)) or "nothing"),
        ("ETag", result.get("etag")),
        ("SHA-256", result.get("sha256")),
        ("server-side copy", result.get("copied")),
        ("stale uploads aborted", result.get("stale_uploads_aborted")),
        ("seconds", result.get("seconds")),
        ("MB/s", result.get("mb_per_s")),
    ]
    ok = bool(verified)
    return _verdict(ok, "uploaded and verified" if ok else "uploaded, nothing verified") + _table(
        ["", ""], [r for r in rows if r[1] is not None]
    )


def _render_load(result: Mapping[str, Any]) -> str:
    files = [f for f in _list(result.get("files")) if isinstance(f, Mapping)]
    return "".join(
        [
            _verdict(True, f"loaded {_fmt_int(result.get('rows'))} rows into {result.get('table')}"),
            _facts(
                result,
                [
                    ("table", "table"),
                    ("mode", "mode"),
                    ("rows", "rows"),
                    ("bytes", "bytes"),
                    ("rows deleted first", "deleted_rows"),
                    ("seconds", "seconds"),
                    ("MB/s", "mb_per_s"),
                ],
            ),
            "<h2>Rows per file</h2>",
            _table(
                ["key", "member", "rows", "bytes"],
                [(f.get("key"), f.get("member", ""), f.get("rows"), f.get("bytes")) for f in files],
            ),
        ]
    )


def _render_package(result: Mapping[str, Any]) -> str:
    verification = result.get("verification")
    parts = [
        _facts(
            result,
            [
                ("bag", "bag_name"),
                ("payload files", "files"),
                ("payload bytes", "payload_bytes"),
                ("ZIP bytes", "zip_bytes"),
                ("Payload-Oxum", "oxum"),
                ("manifests", "manifests"),
                ("ETag", "etag"),
                ("seconds", "seconds"),
                ("MB/s", "mb_per_s"),
            ],
        )
    ]
    head = _verdict(None, f"packaged s3://{result.get('bucket')}/{result.get('key')}")
    if isinstance(verification, Mapping):
        ok = bool(verification.get("valid"))
        head += _verdict(ok, "the bag verifies" if ok else "the bag does NOT verify")
        errors = [str(x) for x in _list(verification.get("errors"))]
        if errors:
            parts.append("<h2>Verification errors</h2>" + _table(["error"], [(x,) for x in errors]))
    return head + "".join(parts)


def render_result(
    result: Any,
    *,
    operator: str | None,
    ref: TaskRef | None = None,
    manifest: Mapping[str, Any] | None = None,
    manifest_error: str | None = None,
) -> str:
    """The HTML body for one task's result (its ``return_value`` XCom).

    ``manifest`` is the export's ``_manifest.json`` document when it could be read (the files'
    checksums live there); ``manifest_error`` says why it could not. Never raises on an odd shape:
    what it cannot place is shown as a key/value table.
    """
    if result is None:
        return "<p class='muted'>This task pushed no result (not run yet, or failed before it had one).</p>"
    kind = result_kind(operator, result)
    try:
        if kind == "verification":
            body = _render_verification(result)
        elif kind in ("export", "commit"):
            body = _render_export(result, manifest, manifest_error, ref)
        elif kind == "upload":
            body = _render_upload(result)
        elif kind == "load":
            body = _render_load(result)
        elif kind == "package":
            body = _render_package(result)
        else:
            body = ""
    except (AttributeError, TypeError, ValueError, KeyError):  # an old or foreign shape
        body = ""
    return body + "<h2>Everything the task returned</h2>" + _key_values(result)


def render_preview(key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], note: str) -> str:
    """The first rows of an exported file as a table, with how they were read."""
    return f"<p class='mono'>{e(key)}</p><p class='muted'>{e(note)}</p>" + _table(list(columns), rows)


def render_runs(rows: Sequence[RunRow], *, dag_id: str = "", state: str = "", dag_ids: Sequence[str] = ()) -> str:
    """The list of recent runs of our operators, with a filter form (by DAG and state)."""
    dag_options = "".join(
        f"<option value='{e(d)}'{' selected' if d == dag_id else ''}>{e(d or 'any DAG')}</option>"
        for d in ["", *dag_ids]
    )
    state_options = "".join(
        f"<option value='{e(s)}'{' selected' if s == state else ''}>{e(s or 'any state')}</option>"
        for s in ("", "success", "failed", "running", "queued", "up_for_retry", "skipped")
    )
    form = (
        "<form class='filters' method='get'>"
        f"<label>DAG <select name='dag_id'>{dag_options}</select></label>"
        f"<label>state <select name='state'>{state_options}</select></label>"
        "<button type='submit'>filter</button></form>"
    )
    table_rows = [
        (
            f"<a href='ti?{e(r.ref.query())}'>{e(r.ref.task_id)}"
            f"{'' if r.ref.map_index < 0 else f'[{r.ref.map_index}]'}</a>",
            e(r.ref.dag_id),
            e(r.ref.run_id),
            e(r.operator),
            e(r.state),
            e(r.verdict),
            e(r.start_date),
        )
        for r in rows
    ]
    return form + _table(["task", "DAG", "run", "operator", "state", "verdict", "started"], table_rows, raw=(True,) * 7)
