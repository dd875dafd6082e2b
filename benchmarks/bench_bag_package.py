"""Benchmark: packaging an S3 prefix into a zipped BagIt bag in S3, two ways, in one run and one table.

    .venv/bin/python benchmarks/bench_bag_package.py [--files 1500] [--mb 230]

1. the conventional recipe: download the prefix (boto3 ``download_file`` per object), bagit-python
   ``make_bag`` (sha256 + sha512), ``zip -r``, ``upload_file``;
2. ``S3ToBagItZipOperator`` (this package): one streamed pass, no disk.

The S3 endpoint is the test suite's (moto in its own process, or ``S3STREAM_S3_ENDPOINT``). Every row
runs in a fresh child process: seconds are its wall time, peak RSS its own ``VmHWM`` (above the
same imports' idle baseline), local disk the bytes in its private temporary directory at its peak.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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

from tests.support import devservices  # noqa: E402
from tests.support.devservices import DEFAULT_REGION, MOTO_CREDENTIALS  # noqa: E402

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1500)
    parser.add_argument("--mb", type=float, default=230, help="payload size, MB")
    opts = parser.parse_args()
    if shutil.which("zip") is None:
        raise SystemExit("Info-ZIP `zip` is needed for the conventional row (apt-get install zip)")
    work = Path(tempfile.mkdtemp(prefix="bench-bag-package-"))
    services = contextlib.ExitStack()
    endpoint = services.enter_context(devservices.s3_endpoint_process()).endpoint_url
    try:
        import boto3

        key_id = os.environ.get("S3STREAM_S3_ACCESS_KEY_ID", MOTO_CREDENTIALS[0])
        secret = os.environ.get("S3STREAM_S3_SECRET_ACCESS_KEY", MOTO_CREDENTIALS[1])
        region = os.environ.get("S3STREAM_S3_REGION", DEFAULT_REGION)
        client_args = {
            "endpoint_url": endpoint,
            "aws_access_key_id": key_id,
            "aws_secret_access_key": secret,
            "region_name": region,
        }
        client = boto3.client("s3", **client_args)  # type: ignore[call-overload]
        client.create_bucket(Bucket=BUCKET)
        payload = build_prefix(client, opts.files, int(opts.mb * 1e6))
        conn = {"conn_type": "aws", "login": key_id, "password": secret,
                "extra": {"endpoint_url": endpoint, "region_name": region}}  # fmt: skip
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "AIRFLOW_CONN_AWS_BENCH": json.dumps(conn),
            "AIRFLOW_HOME": str(work / "airflow-home"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
        rows = []
        for label, kind in (("download + bagit make_bag + zip -r + upload_file", "conventional"),
                            ("S3ToBagItZipOperator (this)", "operator")):  # fmt: skip
            tmp = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=work))
            args = {"bucket": BUCKET, "prefix": PREFIX, "client": client_args}
            out = subprocess.run(
                [sys.executable, "-c", CHILD_PRELUDE + CHILDREN[kind], json.dumps(args)],
                env={**env, "TMPDIR": str(tmp)}, cwd=tmp, capture_output=True, text=True, check=False,
            )  # fmt: skip
            shutil.rmtree(tmp, ignore_errors=True)
            if out.returncode != 0:
                raise RuntimeError(f"{kind} failed:\n{out.stderr[-3000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((label, r))
            print(f"  {label}: {r}", file=sys.stderr)
    finally:
        services.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"payload: {opts.files} files, {payload / 1e6:.1f} MB")
    print("| method | seconds | MB/s | peak RSS above idle MiB | local disk MB | ZIP MB |")
    print("|---|---|---|---|---|---|")
    for label, r in rows:
        above = (r["peak_rss"] - r["idle"]) / MiB
        print(f"| {label} | {r['seconds']:.2f} | {payload / 1e6 / r['seconds']:.1f} | {above:.1f} | "
              f"{r['disk'] / 1e6:.1f} | {r['zip_bytes'] / 1e6:.1f} |")  # fmt: skip
    conventional, ours = rows[0][1], rows[1][1]
    print()
    print(f"speed-up: {conventional['seconds'] / ours['seconds']:.2f}x (target > 1x); "
          f"local disk of this operator: {ours['disk']} bytes (target 0)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
