"""Benchmark: packaging an S3 prefix into a zipped BagIt bag in S3, two ways, in one run and one table.

    .venv/bin/python benchmarks/bench_bag_package.py [--files 1500] [--mb 230] [--stores moto,rgw]

1. the conventional recipe: download the prefix (boto3 ``download_file`` per object), bagit-python
   ``make_bag`` (sha256 + sha512), ``zip -r``, ``upload_file``;
2. ``S3ToBagItZipOperator`` (this package): one streamed pass, no disk.

Both rows run on each S3 store in turn (``--stores``: moto, a mock, and Ceph RGW, a real S3
implementation; one ``env`` column instead when ``S3STREAM_S3_ENDPOINT`` is set), each store with
a fresh bucket holding the same payload, and one table shows the stores side by side. Every row
runs in a fresh child process that reaches the store with its endpoint and key pair: seconds are
its wall time, peak RSS its own ``VmHWM`` (and that above the same imports' idle baseline), local
disk the bytes in its private temporary directory at its peak. A row that fails on a store shows
its error there.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.stores import (  # noqa: E402
    Column,
    add_store_argument,
    airflow_child_env,
    client_kwargs,
    print_side_by_side,
    ratio_notes,
    run_on_stores,
)
from tests.support.devservices import S3Service  # noqa: E402

MiB = 1024**2
BUCKET = "bench-bag-package"
PREFIX = "incoming/acc-1/"
CHILD_PRELUDE = textwrap.dedent(
    """
    import json, os, sys, time, threading
    from tests.support.memory import peak_rss_kib
    import boto3
    from airflow_s3stream.operators import S3ToBagItZipOperator
    args = json.loads(sys.argv[1])
    idle = peak_rss_kib() * 1024
    peak_disk = [0]
    def disk_used(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    def watch_disk():
        while True:
            peak_disk[0] = max(peak_disk[0], disk_used(os.environ["TMPDIR"]))
            time.sleep(0.2)
    threading.Thread(target=watch_disk, daemon=True).start()
    def done(**extra):
        peak = peak_rss_kib() * 1024
        print(json.dumps({"peak_rss": peak, "idle": idle, "disk": peak_disk[0], **extra}))
    """
)
CHILDREN = {
    "conventional": textwrap.dedent(
        """
        import bagit, logging, subprocess
        logging.disable(logging.CRITICAL)
        t = time.monotonic()
        c = boto3.client("s3", **args["client"])
        tmp = os.environ["TMPDIR"]
        bag = os.path.join(tmp, "acc-1")
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=args["bucket"], Prefix=args["prefix"]):
            for obj in page.get("Contents", []):
                local = os.path.join(bag, obj["Key"][len(args["prefix"]):])
                os.makedirs(os.path.dirname(local), exist_ok=True)
                c.download_file(args["bucket"], obj["Key"], local)
        bagit.make_bag(bag, {"Source-Organization": "bench"}, checksums=["sha256", "sha512"])
        subprocess.run(["zip", "-q", "-r", "acc-1.zip", "acc-1"], cwd=tmp, check=True)
        c.upload_file(os.path.join(tmp, "acc-1.zip"), args["bucket"], "bags/conventional.zip")
        peak_disk[0] = max(peak_disk[0], disk_used(tmp))
        done(seconds=time.monotonic() - t, zip_bytes=os.path.getsize(os.path.join(tmp, "acc-1.zip")))
        """
    ),
    "operator": textwrap.dedent(
        """
        t = time.monotonic()
        op = S3ToBagItZipOperator(task_id="bench", source_bucket=args["bucket"], source_prefix=args["prefix"],
                                  s3_bucket=args["bucket"], s3_key="bags/acc-1.zip", aws_conn_id="aws_bench",
                                  checksums=["sha256", "sha512"], bag_info={"Source-Organization": "bench"})
        r = op.execute({})
        done(seconds=time.monotonic() - t, zip_bytes=r["zip_bytes"], files=r["files"])
        """
    ),
}


def build_prefix(client: Any, files: int, total: int) -> int:
    """Upload ``files`` objects of mixed sizes totalling about ``total`` bytes; returns the bytes."""
    rng = random.Random(3)
    weights = [rng.uniform(0.2, 1.8) for _ in range(files)]
    scale = total / sum(weights)
    bodies = []
    for i, w in enumerate(weights):
        size = int(w * scale)
        text = (b"%08d lorem ipsum dolor sit amet\n" % i) * (size // 10 // 32)
        bodies.append((f"{PREFIX}series{i % 12:02d}/item{i:05d}.dat", rng.randbytes(size - len(text)) + text))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kb: client.put_object(Bucket=BUCKET, Key=kb[0], Body=kb[1]), bodies))
    return sum(len(b) for _, b in bodies)


ROWS = (
    ("download + bagit make_bag + zip -r + upload_file", "conventional"),
    ("S3ToBagItZipOperator (this)", "operator"),
)
COLUMNS = [
    Column("seconds", "seconds", lambda v: f"{v:.2f}", 7),
    Column("MB/s", "mb_s", lambda v: f"{v:.1f}", 5),
    Column("peak RSS MiB", "peak_rss_mib", lambda v: f"{v:.1f}", 12),
    Column("above idle", "above_idle_mib", lambda v: f"{v:.1f}", 10),
    Column("disk MB", "disk_mb", lambda v: f"{v:.1f}", 7),
    Column("ZIP MB", "zip_mb", lambda v: f"{v:.1f}", 6),
]


def _run_child(kind: str, args: dict[str, Any], env: dict[str, str], work: Path) -> dict[str, Any]:
    """One row in a fresh child with a private TMPDIR; its figures, or ``{"error": ...}``."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=work))
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD_PRELUDE + CHILDREN[kind], json.dumps(args)],
            env={**env, "TMPDIR": str(tmp)}, cwd=tmp, capture_output=True, text=True, check=False,
        )  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if out.returncode != 0:
        print(f"{kind} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
        last = [ln for ln in out.stderr.splitlines() if ln.strip()][-1:] or [f"exit status {out.returncode}"]
        return {"error": last[0].strip()[:300]}
    r: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return r


def _measure_store(s3: S3Service, opts: argparse.Namespace, work: Path) -> dict[str, dict[str, Any]]:
    """Both rows on ``s3``: a fresh bucket, the payload uploaded, then each row in its child."""
    import boto3

    client = boto3.client("s3", **client_kwargs(s3))  # type: ignore[call-overload]
    client.create_bucket(Bucket=BUCKET)
    payload = build_prefix(client, opts.files, int(opts.mb * 1e6))
    env = airflow_child_env(s3, work / "airflow-home")
    rows: dict[str, dict[str, Any]] = {}
    for label, kind in ROWS:
        r = _run_child(kind, {"bucket": BUCKET, "prefix": PREFIX, "client": client_kwargs(s3)}, env, work)
        print(f"  {label}: {r}", file=sys.stderr)
        if not r.get("error"):
            r.update(
                mb_s=payload / 1e6 / r["seconds"],
                peak_rss_mib=r["peak_rss"] / MiB,
                above_idle_mib=(r["peak_rss"] - r["idle"]) / MiB,
                disk_mb=r["disk"] / 1e6,
                zip_mb=r["zip_bytes"] / 1e6,
            )
        rows[label] = {**r, "payload": payload}
    return rows


def _ratios(rows: dict[str, dict[str, Any]]) -> dict[str, str]:
    conventional, ours = (rows.get(label, {}) for label, _ in ROWS)
    shown = {}
    if "seconds" in conventional and "seconds" in ours:
        shown["speed-up: conventional seconds / operator seconds"] = f"{conventional['seconds'] / ours['seconds']:.2f}x"
    if "disk" in ours:
        shown["local disk of this operator"] = f"{ours['disk']} bytes"
    return shown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1500)
    parser.add_argument("--mb", type=float, default=230, help="payload size, MB")
    add_store_argument(parser)
    opts = parser.parse_args()
    if shutil.which("zip") is None:
        raise SystemExit("Info-ZIP `zip` is needed for the conventional row (apt-get install zip)")
    work = Path(tempfile.mkdtemp(prefix="bench-bag-package-"))
    try:
        results = run_on_stores(opts, lambda _store, s3: _measure_store(s3, opts, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    payload = next((r["payload"] for rows in results.values() for r in rows.values() if "payload" in r), 0)
    targets = {"speed-up: conventional seconds / operator seconds": "(target > 1x)",
               "local disk of this operator": "(target 0)"}  # fmt: skip
    print_side_by_side(
        f"Package {opts.files} files, {payload / 1e6:.1f} MB under an S3 prefix into a zipped BagIt bag in S3 "
        "(peak RSS: each child's VmHWM; above idle: above the same imports' baseline; disk: its TMPDIR at peak)",
        results,
        COLUMNS,
        label_width=48,
        notes=ratio_notes("in this run:", {store: _ratios(rows) for store, rows in results.items()}, targets),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
