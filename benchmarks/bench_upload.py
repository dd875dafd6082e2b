"""Upload benchmark: one table, one run, one 1 GB file, every method in its own subprocess.

    .venv/bin/python -m benchmarks.bench_upload [--size-mb 1024] [--repeat 2] [--stores moto,rgw]

Rows: boto3 ``upload_file`` with its defaults, the sequential 10 MB ``upload_part`` recipe,
smart_open's writer, this engine (file source) at a few concurrency / part-size settings and
without the per-part MD5 check, this engine's streaming ``MultipartWriter`` fed 1 MiB writes, both
engines on a quarter-size file (peak RSS must not grow with the data), and a kill -9 at about
half way followed by a resume. Each measurement runs in a fresh child process; peak RSS is that
child's own ``VmHWM`` (``ru_maxrss`` would include the parent's). The rows are run in
``--repeat`` interleaved rounds and the best throughput is kept, so a burst of load from elsewhere
does not decide a ratio. Every row runs on each S3 store in turn (``--stores``: moto, a mock, and
Ceph RGW, a real S3 implementation; one ``env`` column instead when ``S3STREAM_S3_ENDPOINT`` is
set), each with a fresh bucket; every child reaches the store with its endpoint and key pair, and
one table shows the stores side by side, the ratios (x upload_file, x smart_open) within each
store's run. A row that fails on a store shows its error there.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/bench_upload.py`, as `make bench` runs it

from benchmarks.stores import Column, add_store_argument, print_side_by_side, ratio_notes, run_on_stores, service_env  # noqa: E402
from tests.support.devservices import S3Service  # noqa: E402

MiB = 1024 * 1024
BUCKET = "bench-upload"


def _client(s3: S3Service, pool: int = 16, production: bool = False) -> Any:
    """A client with botocore's defaults, or (``production``) configured as the package's hook
    configures its own: botocore's retries off, the engine's retry policy the only one."""
    if production:
        return s3.client(max_pool_connections=pool)
    return s3.client(retries={"mode": "legacy"}, max_pool_connections=pool)


# -- what each child process runs ------------------------------------------------------------


def run_method(method: str, s3: S3Service, path: str, key: str, opts: dict[str, Any]) -> dict[str, Any]:
    engine = method in ("engine", "engine_resume", "writer")
    client = _client(s3, pool=max(16, opts.get("concurrency", 0) + 2), production=engine)
    size = os.path.getsize(path)
    started = time.monotonic()
    extra: dict[str, Any] = {}
    if method == "upload_file":
        client.upload_file(path, BUCKET, key)
    elif method == "recipe10mb":
        upload = client.create_multipart_upload(Bucket=BUCKET, Key=key)
        parts = []
        with open(path, "rb") as f:
            number = 1
            while chunk := f.read(10 * 1000 * 1000):
                r = client.upload_part(
                    Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=chunk
                )
                parts.append({"PartNumber": number, "ETag": r["ETag"]})
                number += 1
        client.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )
    elif method == "smart_open":
        import smart_open

        with (
            open(path, "rb") as src,
            smart_open.open(f"s3://{BUCKET}/{key}", "wb", transport_params={"client": client}) as dst,
        ):
            while chunk := src.read(MiB):
                dst.write(chunk)
    elif method in ("engine", "engine_resume"):
        from airflow_s3stream.s3.multipart import MultipartConfig
        from airflow_s3stream.upload.uploader import DEFAULT_STATE_LEASE, ResumableUploader

        config = MultipartConfig(
            part_size=opts["part_mib"] * MiB,
            max_concurrency=opts["concurrency"],
            verify_part_etag=opts.get("md5", True),
        )
        lease = float(opts.get("lease", DEFAULT_STATE_LEASE))
        result = ResumableUploader(client, BUCKET, key, config=config, state_lease=lease).upload_file(path)
        extra = {"parts": result.parts, "uploaded_parts": result.uploaded_parts, "resumed_parts": result.resumed_parts}
    elif method == "writer":
        from airflow_s3stream.s3.multipart import MultipartConfig, MultipartWriter

        config = MultipartConfig(part_size=opts["part_mib"] * MiB, max_concurrency=opts["concurrency"])
        with open(path, "rb") as src, MultipartWriter(client, BUCKET, key, config=config) as w:
            while chunk := src.read(MiB):
                w.write(chunk)
        assert w.result is not None
        extra = {"parts": w.result.parts, "uploaded_parts": w.result.parts}
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.monotonic() - started
    head = client.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentLength"] == size, (head["ContentLength"], size)
    return {"seconds": seconds, **extra}


# -- the parent: one child per row -----------------------------------------------------------


def _spawn(
    method: str, s3: S3Service, path: str, key: str, opts: dict[str, Any], *, errors: Any
) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "benchmarks.bench_upload", "--child", method, path, key, json.dumps(opts)]
    env = {**os.environ, **service_env(s3)}  # the child's devservices.start_s3() is this store
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors, env=env, text=True)


def _reap(proc: subprocess.Popen[str], errors: Any) -> tuple[int, dict[str, Any], int, str]:
    """Wait for ``proc``; returns (exit status, its JSON line or {}, its peak RSS in KiB, the last
    line of its stderr: the exception, when it failed)."""
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.wait()
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    measured = json.loads(lines[-1]) if lines else {}
    errors.seek(0)
    text = errors.read()
    if proc.returncode not in (0, -signal.SIGKILL):
        print(text[-3000:], file=sys.stderr)
    last = [ln.strip() for ln in text.splitlines() if ln.strip()][-1:] or [f"exit status {proc.returncode}"]
    return proc.returncode, measured, int(measured.pop("peak_kib", 0)), last[0][:300]


def measure(method: str, s3: S3Service, path: str, key: str, **opts: Any) -> dict[str, Any]:
    """One row in a fresh child: its figures, or ``{"error": ...}`` naming why it failed."""
    with tempfile.TemporaryFile("w+") as errors:
        code, data, rss_kib, last = _reap(_spawn(method, s3, path, key, opts, errors=errors), errors)
    if code != 0:
        return {"error": last}
    size = os.path.getsize(path)
    return {"mb_s": size / 1e6 / data["seconds"], "rss_mib": rss_kib / 1024, **data}


def kill_and_resume(s3: S3Service, path: str, key: str, concurrency: int, part_mib: int) -> dict[str, Any]:
    """Kill -9 the engine at about half way, then resume; count parts stored and sent."""
    client = _client(s3)
    size = os.path.getsize(path)
    total = -(-size // (part_mib * MiB))
    # A killed try cannot release its resume state: the next one waits for its lease (a short one
    # here; in Airflow the retry_delay, 5 minutes by default, outlasts the default 120 s lease).
    lease = 3.0
    opts = {"concurrency": concurrency, "part_mib": part_mib, "lease": lease}
    with tempfile.TemporaryFile("w+") as errors:
        proc = _spawn("engine", s3, path, key, opts, errors=errors)
        stored = 0
        while proc.poll() is None:
            uploads = client.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", [])
            if uploads:
                listed = client.list_parts(Bucket=BUCKET, Key=key, UploadId=uploads[0]["UploadId"], MaxParts=10000)
                stored = len(listed.get("Parts", []))
                if stored >= total // 2:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.05)
        code, _, _, last = _reap(proc, errors)
    if code != -signal.SIGKILL:
        return {"error": f"the first run was not killed (exit status {code}): {last}"}
    uploads = client.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", [])
    if not uploads:
        return {"error": "the killed run left no multipart upload to resume"}
    listed = client.list_parts(Bucket=BUCKET, Key=key, UploadId=uploads[0]["UploadId"], MaxParts=10000)
    stored = len(listed.get("Parts", []))
    time.sleep(lease + 0.5)
    row = measure("engine_resume", s3, path, key, concurrency=concurrency, part_mib=part_mib, lease=lease)
    row.pop("mb_s", None)  # the file's size over a run that sent only the missing parts: no throughput
    row.update(total_parts=total, stored_at_kill=stored, missing_at_kill=total - stored)
    return row


def _make_file(path: str, size: int) -> None:
    block = os.urandom(8 * MiB)
    with open(path, "wb") as f:
        written = 0
        while written < size:
            n = min(len(block), size - written)
            f.write(block[:n] if written % (64 * MiB) else os.urandom(n))
            written += n


ROWS: list[tuple[str, str, str, dict[str, Any]]] = [
    # label, method, file ("big" or "quarter"), options
    ("boto3 upload_file (defaults: 10 threads, 8 MiB)", "upload_file", "big", {}),
    ("sequential 10 MB upload_part recipe", "recipe10mb", "big", {}),
    ("smart_open writer (defaults)", "smart_open", "big", {}),
    ("engine file, concurrency 4, 16 MiB", "engine", "big", {"concurrency": 4, "part_mib": 16}),
    ("engine file, concurrency 8, 16 MiB (before the budget)", "engine", "big", {"concurrency": 8, "part_mib": 16}),
    ("engine file, concurrency 7, 8 MiB (128 MiB budget)", "engine", "big", {"concurrency": 7, "part_mib": 8}),
    ("engine file, concurrency 16, 8 MiB", "engine", "big", {"concurrency": 16, "part_mib": 8}),
    ("engine file, c 8, 16 MiB, no part MD5 check", "engine", "big", {"concurrency": 8, "part_mib": 16, "md5": False}),
    ("engine file, c 8, 16 MiB, 1/4 size", "engine", "quarter", {"concurrency": 8, "part_mib": 16}),
    ("engine MultipartWriter, c 8, 16 MiB", "writer", "big", {"concurrency": 8, "part_mib": 16}),
    ("engine MultipartWriter, c 8, 16 MiB, 1/4 size", "writer", "quarter", {"concurrency": 8, "part_mib": 16}),
    ("engine MultipartWriter, c 7, 8 MiB (budget)", "writer", "big", {"concurrency": 7, "part_mib": 8}),
]


RESUME_LABEL = "engine kill -9 at ~half, then resume (c 8, 16 MiB)"
BEFORE_BUDGET = "engine file, concurrency 8, 16 MiB (before the budget)"
AT_BUDGET = "engine file, concurrency 7, 8 MiB (128 MiB budget)"
COLUMNS = [
    Column("seconds", "seconds", lambda v: f"{v:.1f}", 7),
    Column("MB/s", "mb_s", lambda v: f"{v:.1f}", 6),
    Column("x upload_file", "x_upload_file", lambda v: f"{v:.2f}", 13),
    Column("x smart_open", "x_smart_open", lambda v: f"{v:.2f}", 12),
    Column("peak RSS MiB", "rss_mib", lambda v: f"{v:.0f}", 12),
    Column("UploadParts", "uploaded_parts", str, 11),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds over all rows; best MB/s is kept (default 2)")
    add_store_argument(parser)
    args = parser.parse_args()
    size = args.size_mb * MiB
    workdir = tempfile.mkdtemp(prefix="bench-upload-")
    files = {"big": os.path.join(workdir, "big.bin"), "quarter": os.path.join(workdir, "quarter.bin")}
    _make_file(files["big"], size)
    _make_file(files["quarter"], size // 4)
    try:
        results = run_on_stores(args, lambda _store, s3: _run_rows(s3, files, args.repeat))
    finally:
        for path in files.values():
            os.unlink(path)
        os.rmdir(workdir)
    _print_table(results, size, args.repeat)


def _run_rows(s3: S3Service, files: dict[str, str], repeat: int) -> dict[str, dict[str, Any]]:
    """Every row on ``s3`` (a fresh bucket), ``repeat`` interleaved rounds (best MB/s kept), then
    the kill -9 and resume: ``{label: row}``, each ratio against this store's baselines."""
    client = _client(s3)
    client.create_bucket(Bucket=BUCKET)
    best: dict[str, dict[str, Any]] = {}
    for round_ in range(repeat):  # interleaved rounds: load changes hit every row alike
        # each round starts at another row, so no row always runs first against a fresh server
        shift = round_ * len(ROWS) // max(1, repeat)
        for label, method, which, opts in ROWS[shift:] + ROWS[:shift]:
            result = measure(method, s3, files[which], "obj", **opts)
            client.delete_object(Bucket=BUCKET, Key="obj")  # keep the endpoint's memory flat
            _abort_uploads(client)  # a failed row leaves none behind for the next
            kept = best.get(label)
            if result.get("error"):
                best.setdefault(label, result)
                print(f"  round {round_ + 1}: {label}: {result['error']}", file=sys.stderr)
                continue
            if kept is None or kept.get("error") or result["mb_s"] > kept["mb_s"]:
                result["rss_mib"] = max(result["rss_mib"], kept.get("rss_mib", 0) if kept else 0)
                best[label] = result
            else:
                kept["rss_mib"] = max(kept["rss_mib"], result["rss_mib"])
            print(f"  round {round_ + 1}: {label}: {result['mb_s']:.1f} MB/s", file=sys.stderr)
    rows = {label: best[label] for label, *_ in ROWS}
    rows[RESUME_LABEL] = kill_and_resume(s3, files["big"], "obj", concurrency=8, part_mib=16)
    _abort_uploads(client)
    base, smart = rows[ROWS[0][0]].get("mb_s"), rows[ROWS[2][0]].get("mb_s")
    for label, *_ in ROWS:
        row = rows[label]
        if "mb_s" in row:
            row["x_upload_file"] = row["mb_s"] / base if base else None
            row["x_smart_open"] = row["mb_s"] / smart if smart else None
    return rows


def _abort_uploads(client: Any) -> None:
    for upload in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
        client.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])


def _ratios(rows: dict[str, dict[str, Any]]) -> dict[str, str]:
    """One store's notes: the budget against the defaults before it, and what the resume sent."""
    shown = {}
    before, budget, resumed = rows[BEFORE_BUDGET], rows[AT_BUDGET], rows[RESUME_LABEL]
    if "mb_s" in before and "mb_s" in budget:
        shown["128 MiB budget (c 7, 8 MiB) / before it (c 8, 16 MiB), MB/s (peak RSS)"] = (
            f"{budget['mb_s'] / before['mb_s']:.2f}x ({budget['rss_mib']:.0f} vs {before['rss_mib']:.0f} MiB)"
        )
    if "uploaded_parts" in resumed:
        bound = resumed["missing_at_kill"] + 8
        shown["resume: parts in all / stored at the kill / missing"] = (
            f"{resumed['total_parts']} / {resumed['stored_at_kill']} / {resumed['missing_at_kill']}"
        )
        shown["resume: parts sent / reused by the resumed run"] = (
            f"{resumed['uploaded_parts']} / {resumed['resumed_parts']}"
        )
        shown["resume: sent <= missing + max_concurrency"] = (
            f"{'met' if resumed['uploaded_parts'] <= bound else 'NOT met'} (<= {bound})"
        )
    return shown


def _print_table(results: dict[str, dict[str, dict[str, Any]]], size: int, repeat: int) -> None:
    targets = {
        "128 MiB budget (c 7, 8 MiB) / before it (c 8, 16 MiB), MB/s (peak RSS)": "(target >= 0.90)",
        "resume: parts in all / stored at the kill / missing": "",
        "resume: parts sent / reused by the resumed run": "",
        "resume: sent <= missing + max_concurrency": "(target: met)",
    }
    print_side_by_side(
        f"Upload of a {size / MiB:.0f} MiB file (1/4 size rows: {size / 4 / MiB:.0f} MiB); best MB/s of {repeat} "
        "interleaved rounds, peak RSS (each child's VmHWM) the highest seen; x upload_file, x smart_open: "
        "against that store's rows",
        results,
        COLUMNS,
        label_width=55,
        notes=ratio_notes("in this run:", {store: _ratios(rows) for store, rows in results.items()}, targets),
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        method, path, key, opts = sys.argv[2:6]
        from tests.support.devservices import start_s3
        from tests.support.memory import peak_rss_kib

        measured = run_method(method, start_s3(), path, key, json.loads(opts))  # the store of S3STREAM_S3_*
        print(json.dumps({**measured, "peak_kib": peak_rss_kib()}), flush=True)
    else:
        main()
