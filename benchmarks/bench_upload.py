"""Upload benchmark: one table, one run, one 1 GB file, every method in its own subprocess.

    .venv/bin/python -m benchmarks.bench_upload [--size-mb 1024] [--quick]

Rows: boto3 ``upload_file`` with its defaults, the sequential 10 MB ``upload_part`` recipe,
smart_open's writer, this engine (file source) at a few concurrency / part-size settings, this
engine's streaming ``MultipartWriter`` fed 1 MiB writes, the engine on a quarter-size file (peak
RSS must not grow with the data), and a kill -9 at about half way followed by a resume. Each row
runs in a fresh child process; peak RSS is that child's ``ru_maxrss`` from ``os.wait4``. The S3
endpoint runs in its own process (``python -m airflow_s3stream.devservices s3``) unless
``S3STREAM_S3_ENDPOINT`` is set. Ratios are computed within this one run (the machine is noisy).
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
from typing import Any

MiB = 1024 * 1024
BUCKET = "bench-upload"


def _client(endpoint: str, pool: int = 16) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=os.environ.get("S3STREAM_S3_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("S3STREAM_S3_SECRET_ACCESS_KEY", "testing"),
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=pool),
    )


# -- what each child process runs ------------------------------------------------------------


def run_method(method: str, endpoint: str, path: str, key: str, opts: dict[str, Any]) -> dict[str, Any]:
    client = _client(endpoint, pool=max(16, opts.get("concurrency", 0) + 2))
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
        from airflow_s3stream.multipart import MultipartConfig
        from airflow_s3stream.multipart.uploader import ResumableUploader

        config = MultipartConfig(
            part_size=opts["part_mib"] * MiB,
            max_concurrency=opts["concurrency"],
            verify_part_etag=opts.get("md5", True),
        )
        result = ResumableUploader(client, BUCKET, key, config=config).upload_file(path)
        extra = {"parts": result.parts, "uploaded_parts": result.uploaded_parts, "resumed_parts": result.resumed_parts}
    elif method == "writer":
        from airflow_s3stream.multipart import MultipartConfig, MultipartWriter

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


def _spawn(method: str, endpoint: str, path: str, key: str, opts: dict[str, Any]) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "benchmarks.bench_upload", "--child", method, endpoint, path, key, json.dumps(opts)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


def _reap(proc: subprocess.Popen[str]) -> tuple[int, dict[str, Any], int]:
    """Wait for ``proc``; returns (exit status, its JSON line or {}, its peak RSS in KiB)."""
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    return proc.returncode, (json.loads(lines[-1]) if lines else {}), usage.ru_maxrss


def measure(method: str, endpoint: str, path: str, key: str, **opts: Any) -> dict[str, Any]:
    code, data, rss_kib = _reap(_spawn(method, endpoint, path, key, opts))
    if code != 0:
        raise SystemExit(f"{method} {opts} failed with exit code {code}")
    size = os.path.getsize(path)
    return {"mb_s": size / 1e6 / data["seconds"], "rss_mib": rss_kib / 1024, **data}


def kill_and_resume(endpoint: str, path: str, key: str, concurrency: int, part_mib: int) -> dict[str, Any]:
    """Kill -9 the engine at about half way, then resume; count parts stored and sent."""
    client = _client(endpoint)
    size = os.path.getsize(path)
    total = -(-size // (part_mib * MiB))
    proc = _spawn("engine", endpoint, path, key, {"concurrency": concurrency, "part_mib": part_mib})
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
    _reap(proc)
    uploads = client.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", [])
    listed = client.list_parts(Bucket=BUCKET, Key=key, UploadId=uploads[0]["UploadId"], MaxParts=10000)
    stored = len(listed.get("Parts", []))
    row = measure("engine_resume", endpoint, path, key, concurrency=concurrency, part_mib=part_mib)
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


def _endpoint() -> tuple[str, subprocess.Popen[str] | None]:
    if os.environ.get("S3STREAM_S3_ENDPOINT"):
        return os.environ["S3STREAM_S3_ENDPOINT"], None
    server = subprocess.Popen(
        [sys.executable, "-m", "airflow_s3stream.devservices", "s3"], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    return server.stdout.readline().strip(), server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--quick", action="store_true", help="fewer engine settings")
    args = parser.parse_args()
    endpoint, server = _endpoint()
    client = _client(endpoint)
    client.create_bucket(Bucket=BUCKET)
    workdir = tempfile.mkdtemp(prefix="bench-upload-")
    big, small = os.path.join(workdir, "big.bin"), os.path.join(workdir, "quarter.bin")
    size = args.size_mb * MiB
    _make_file(big, size)
    _make_file(small, size // 4)
    rows: list[tuple[str, dict[str, Any]]] = []

    def row(label: str, result: dict[str, Any]) -> None:
        rows.append((label, result))
        client.delete_object(Bucket=BUCKET, Key="obj")  # keep the endpoint's memory flat
        print(f"  done: {label}: {result['mb_s']:.1f} MB/s, {result['rss_mib']:.0f} MiB", file=sys.stderr)

    try:
        row("boto3 upload_file (defaults: 10 threads, 8 MiB)", measure("upload_file", endpoint, big, "obj"))
        row("sequential 10 MB upload_part recipe", measure("recipe10mb", endpoint, big, "obj"))
        row("smart_open writer (defaults)", measure("smart_open", endpoint, big, "obj"))
        settings = [(8, 8), (8, 16)] if args.quick else [(1, 16), (4, 16), (8, 8), (8, 16), (16, 8)]
        for concurrency, part_mib in settings:
            label = f"engine file, concurrency {concurrency}, {part_mib} MiB parts"
            row(label, measure("engine", endpoint, big, "obj", concurrency=concurrency, part_mib=part_mib))
        row(
            "engine file, concurrency 8, 16 MiB, 1/4 size",
            measure("engine", endpoint, small, "obj", concurrency=8, part_mib=16),
        )
        row(
            "engine MultipartWriter, concurrency 8, 16 MiB",
            measure("writer", endpoint, big, "obj", concurrency=8, part_mib=16),
        )
        resumed = kill_and_resume(endpoint, big, "obj", concurrency=8, part_mib=16)
        row("engine kill -9 at ~half, then resume (c=8, 16 MiB)", resumed)
    finally:
        for p in (big, small):
            os.unlink(p)
        if server is not None:
            server.terminate()
    _print_table(rows, size, resumed)


def _print_table(rows: list[tuple[str, dict[str, Any]]], size: int, resumed: dict[str, Any]) -> None:
    base = rows[0][1]
    smart = next(r for label, r in rows if label.startswith("smart_open"))
    print(f"\nUpload of a {size / MiB:.0f} MiB file to a local S3 endpoint (moto in its own process), one run")
    header = (
        f"{'method':<52} {'MB/s':>7} {'x upload_file':>13} {'x smart_open':>12} {'peak RSS MiB':>12} {'parts sent':>10}"
    )
    print(header)
    print("-" * len(header))
    for label, r in rows:
        sent = r.get("uploaded_parts", "")
        print(
            f"{label:<52} {r['mb_s']:>7.1f} {r['mb_s'] / base['mb_s']:>13.2f} {r['mb_s'] / smart['mb_s']:>12.2f} "
            f"{r['rss_mib']:>12.0f} {sent!s:>10}"
        )
    print(
        f"\nresume: {resumed['total_parts']} parts in all, {resumed['stored_at_kill']} stored when killed, "
        f"{resumed['missing_at_kill']} missing; the resumed run sent {resumed['uploaded_parts']} parts and reused "
        f"{resumed['resumed_parts']} (bound: missing + max_concurrency = {resumed['missing_at_kill'] + 8})"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        method, endpoint, path, key, opts = sys.argv[2:7]
        print(json.dumps(run_method(method, endpoint, path, key, json.loads(opts))), flush=True)
    else:
        main()
