"""Benchmark: verifying a zipped BagIt bag in S3, four ways, in one run and one table.

    .venv/bin/python benchmarks/bench_zip_verify.py [--quick]
    .venv/bin/python benchmarks/bench_zip_verify.py --latency [--latency-mb 4600] [--latency-ms 30] [--mb-per-s 40]
    .venv/bin/python benchmarks/bench_zip_verify.py --memory [--entries 10000,250000,1000000]

``--latency``: parallel ranged reads at real-S3 latency, which moto cannot show (it reads the whole
object for every ranged GET). A ZIP of ``--latency-mb`` MB of payload (about 44% of it once
deflated: the default makes a ~2 GB archive) is verified through
:class:`tests.support.latency.LatencySource` (a local file behind ``--latency-ms`` per request and
``--mb-per-s`` per connection): one streamed GET vs N fixed parallel GETs (2, 4, 8, 16) vs the
adaptive default. ``--memory``: peak RSS above the idle operator imports for archives of
``--entries`` 1-byte members (and one hostile archive whose entries all point at one member).

Builds a ~250 MB bag of ~1,500 files (bagit-python, zipped by zipfile), a ~10 MB bag for the
one-GET-per-read recipe, and a >4 GiB zipped bag (sparse zeros, on local disk: the test S3
endpoint, moto, loads a whole object into memory on every GET). The S3 endpoint runs in its
own process (``python -m tests.support.devservices s3``, or ``S3STREAM_S3_ENDPOINT``) behind
the recording proxy of the test suite, which counts GETs and the bytes their ranges cover at the
server. Every row runs in a fresh child process: seconds are its wall time, peak RSS its own
``VmHWM``, local disk the bytes left in its private temporary directory at its peak.
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
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import devservices  # noqa: E402
from tests.support.bags import SparseZeroWriter, write_many_member_zip  # noqa: E402
from tests.support.devservices import DEFAULT_REGION, MOTO_CREDENTIALS  # noqa: E402
from tests.support.s3proxy import S3Proxy  # noqa: E402

KiB, MiB, GiB = 1024, 1024**2, 1024**3
BUCKET = "bench-zip-verify"
# Shared by the child scripts: the imports of the operator row, so "idle" is a fair baseline.
OPERATOR_IMPORTS = "import boto3\nfrom airflow_s3stream.operators import S3ZipVerifyOperator\n"
CHILD_PRELUDE = textwrap.dedent(
    """
    import json, os, sys, time
    from tests.support.memory import peak_rss_kib
    args = json.loads(sys.argv[1])
    def disk_used(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    def done(**extra):
        peak = peak_rss_kib() * 1024
        print(json.dumps({"peak_rss": peak, **extra}))
    """
)
CHILDREN = {
    "idle": OPERATOR_IMPORTS + "done(seconds=0.0, disk=0)\n",
    "conventional": textwrap.dedent(
        """
        import boto3, bagit, zipfile, logging
        logging.disable(logging.CRITICAL)
        t = time.monotonic()
        c = boto3.client("s3", **args["client"])
        tmp = os.environ["TMPDIR"]
        local = os.path.join(tmp, "archive.zip")
        c.download_file(args["bucket"], args["key"], local)
        with zipfile.ZipFile(local) as zf:
            zf.extractall(os.path.join(tmp, "x"))
        disk = disk_used(tmp)
        top = os.listdir(os.path.join(tmp, "x"))
        bag = bagit.Bag(os.path.join(tmp, "x", top[0]))
        bag.validate(processes=1)
        done(seconds=time.monotonic() - t, disk=disk, valid=True)
        """
    ),
    "s3fs": textwrap.dedent(
        """
        import s3fs, zipfile
        t = time.monotonic()
        c = args["client"]
        fs = s3fs.S3FileSystem(key=c["aws_access_key_id"], secret=c["aws_secret_access_key"],
                               client_kwargs={"endpoint_url": c["endpoint_url"], "region_name": c["region_name"]})
        with fs.open(f"{args['bucket']}/{args['key']}", "rb") as f:
            bad = zipfile.ZipFile(f).testzip()
        done(seconds=time.monotonic() - t, disk=disk_used(os.environ["TMPDIR"]), valid=bad is None)
        """
    ),
    "recipe": textwrap.dedent(
        """
        import io, boto3, zipfile
        class S3RangeFile(io.RawIOBase):  # the classic recipe: one ranged GET per read()
            def __init__(self, client, bucket, key):
                self.c, self.b, self.k, self.pos = client, bucket, key, 0
                self.size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
            def readable(self): return True
            def seekable(self): return True
            def tell(self): return self.pos
            def seek(self, off, whence=0):
                self.pos = {0: 0, 1: self.pos, 2: self.size}[whence] + off
                return self.pos
            def read(self, n=-1):
                end = self.size if n is None or n < 0 else min(self.size, self.pos + n)
                if end <= self.pos:
                    return b""
                r = self.c.get_object(Bucket=self.b, Key=self.k, Range=f"bytes={self.pos}-{end - 1}")
                data = r["Body"].read()
                self.pos += len(data)
                return data
        t = time.monotonic()
        c = boto3.client("s3", **args["client"])
        bad = zipfile.ZipFile(S3RangeFile(c, args["bucket"], args["key"])).testzip()
        done(seconds=time.monotonic() - t, disk=disk_used(os.environ["TMPDIR"]), valid=bad is None)
        """
    ),
    "operator": OPERATOR_IMPORTS
    + textwrap.dedent(
        """
        t = time.monotonic()
        op = S3ZipVerifyOperator(task_id="bench", s3_bucket=args["bucket"], s3_key=args["key"],
                                 aws_conn_id="aws_bench", mode=args.get("mode", "auto"))
        r = op.execute({})
        done(seconds=time.monotonic() - t, disk=disk_used(os.environ["TMPDIR"]), valid=r["valid"],
             mode=r["mode"], payload_files=r["payload_files"], reported_requests=r["requests"])
        """
    ),
    "listing": OPERATOR_IMPORTS
    + textwrap.dedent(
        """
        from airflow_s3stream.s3.reader import RangedReader, S3ObjectSource
        from airflow_s3stream.archive.zip import ZipArchive
        t = time.monotonic()
        c = boto3.client("s3", **args["client"])
        with RangedReader(S3ObjectSource(c, args["bucket"], args["key"])) as reader:
            n = len(ZipArchive.open(reader, reader.size).entries)
        done(seconds=time.monotonic() - t, disk=0, valid=n > 0, members=n)
        """
    ),
    "latency": OPERATOR_IMPORTS
    + textwrap.dedent(
        """
        from airflow_s3stream.archive.verify import VerifyConfig, verify_archive
        from airflow_s3stream.s3.reader import ReaderConfig
        from tests.support.latency import LatencySource
        idle = peak_rss_kib() * 1024
        source = LatencySource(args["path"], latency=args["latency"], bandwidth=args["bandwidth"])
        t = time.monotonic()
        reader = ReaderConfig(prefetch_blocks=args["streams"], max_streams=args.get("max_streams") or 6)
        r = verify_archive(source, VerifyConfig(mode="zip", reader=reader))
        done(seconds=time.monotonic() - t, disk=0, valid=r.valid, idle=idle, gets=source.requests,
             connections=source.max_concurrent, bytes_read=r.bytes_read)
        """
    ),
    "entries": OPERATOR_IMPORTS
    + textwrap.dedent(
        """
        from airflow_s3stream.archive.verify import VerifyConfig, verify_archive
        from airflow_s3stream.s3.reader import LocalFileSource
        idle = peak_rss_kib() * 1024
        t = time.monotonic()
        r = verify_archive(LocalFileSource(args["path"]), VerifyConfig(mode="auto"))
        done(seconds=time.monotonic() - t, disk=0, valid=r.valid, idle=idle, members=r.members_total,
             errors=r.errors.total)
        """
    ),
    "local_zipfile": textwrap.dedent(
        """
        import zipfile
        t = time.monotonic()
        bad = zipfile.ZipFile(args["path"]).testzip()
        done(seconds=time.monotonic() - t, disk=disk_used(os.environ["TMPDIR"]), valid=bad is None)
        """
    ),
    "local_core": OPERATOR_IMPORTS
    + textwrap.dedent(
        """
        from airflow_s3stream.archive.verify import VerifyConfig, verify_archive
        from airflow_s3stream.s3.reader import LocalFileSource
        t = time.monotonic()
        r = verify_archive(LocalFileSource(args["path"]), VerifyConfig(mode="bagit"))
        done(seconds=time.monotonic() - t, disk=disk_used(os.environ["TMPDIR"]), valid=r.valid,
             reported_requests=r.requests, bytes_read=r.bytes_read, payload_files=r.payload_files)
        """
    ),
}


# --- data ---------------------------------------------------------------------------------------


def build_bag(root: Path, files: int, total: int, seed: int) -> Path:
    """A bag of ``files`` random files totalling about ``total`` bytes, made by bagit-python."""
    import bagit

    rng = random.Random(seed)
    bag = root / f"bag{seed}"
    weights = [rng.uniform(0.2, 1.8) for _ in range(files)]
    scale = total / sum(weights)
    for i, w in enumerate(weights):
        path = bag / f"series{i % 12:02d}" / f"item{i:05d}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        # mostly incompressible (images, already-compressed data) with a text-like tail, so that
        # the archive stays near the payload size as in the 228 MB / 1,504-file bag
        size = int(w * scale)
        text = (b"%08d lorem ipsum dolor sit amet\n" % i) * (size // 10 // 32)
        path.write_bytes(os.urandom(size - len(text)) + text)
    bagit.make_bag(str(bag), {"Source-Organization": "bench"}, checksums=["sha256", "sha512"])
    return bag


def zip_bag(bag: Path, out: Path) -> int:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(p for p in bag.rglob("*") if p.is_file()):
            zf.write(path, path.relative_to(bag.parent).as_posix())
    return out.stat().st_size


def build_huge_bag_zip(root: Path, zeros: int) -> Path:
    """A zipped bag over 4 GiB whose big payload file is zeros: sparse on disk, built without writing them."""
    import bagit

    bag = root / "hugebag"
    (bag / "notes").mkdir(parents=True)
    (bag / "notes" / "readme.txt").write_bytes(b"a sparse payload over 4 GiB\n")
    with open(bag / "zeros.bin", "wb") as f:
        f.truncate(zeros)  # sparse: bagit-python hashes it without it occupying disk
    bagit.make_bag(str(bag), {"Source-Organization": "bench"}, checksums=["sha256"])
    out = root / "huge.zip"
    block = bytes(MiB)
    with SparseZeroWriter(out) as sink, zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(p for p in bag.rglob("*") if p.is_file()):
            arcname = path.relative_to(root).as_posix()
            if path.name == "zeros.bin":
                with zf.open(arcname, "w", force_zip64=True) as member:
                    for _ in range(zeros // MiB):
                        member.write(block)
            else:
                zf.write(path, arcname)
    shutil.rmtree(bag)
    return out


# --- running rows -------------------------------------------------------------------------------


def range_bytes(header: str | None, size: int) -> int:
    """Bytes a GET with this Range header asks for (what the server sends back)."""
    if not header:
        return size
    spec = header.split("=", 1)[1]
    first, _, last = spec.partition("-")
    if not first:
        return min(int(last), size)
    end = min(int(last), size - 1) if last else size - 1
    return max(0, end - int(first) + 1)


def run_child(kind: str, args: dict[str, Any], env: dict[str, str], work: Path) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=work))
    child_env = {**env, "TMPDIR": str(tmp)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD_PRELUDE + CHILDREN[kind], json.dumps(args)],
        env=child_env,
        cwd=tmp,
        capture_output=True,
        text=True,
        check=False,
    )
    shutil.rmtree(tmp, ignore_errors=True)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def build_latency_archive(path: Path, total: int) -> int:
    """A ZIP of ``total`` bytes in 8 MiB deflate-level-1 members of half-compressible data."""
    rng = random.Random(5)
    member = 8 * MiB
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for i in range(max(1, total // member)):
            text = (b"%08d lorem ipsum dolor sit amet\n" % i) * (member // 2 // 32)
            zf.writestr(f"part{i:05d}.bin", rng.randbytes(member - len(text)) + text)
    return path.stat().st_size


def latency_table(opts: argparse.Namespace) -> int:
    """Single streamed GET vs N fixed parallel GETs vs adaptive, through the latency source."""
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    try:
        path = work / "latency.zip"
        size = build_latency_archive(path, int(opts.latency_mb * 1e6))
        print(f"archive: {size / 1e6:.0f} MB; {opts.latency_ms} ms per request, {opts.mb_per_s} MB/s per connection",
              file=sys.stderr)  # fmt: skip
        base = {"path": str(path), "latency": opts.latency_ms / 1000, "bandwidth": opts.mb_per_s * 1e6}
        rows = []
        for label, streams, ceiling in (
            [("single streamed GET", 0, None)]
            + [(f"fixed N={n}", n, None) for n in (2, 4, 6, 8, 16)]
            + [
                ("adaptive, up to 16 (memory_budget 320 MiB)", None, 16),
                ("adaptive (default: up to 6, 128 MiB)", None, 6),
            ]
        ):
            r = run_child("latency", {**base, "streams": streams, "max_streams": ceiling}, env, work)
            r["mb_s"] = size / 1e6 / r["seconds"]
            rows.append((label, r))
            print(f"  {label}: {r}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"| reader ({opts.latency_ms:g} ms/request, {opts.mb_per_s:g} MB/s/connection) | seconds | MB/s | GETs | "
          "max connections | peak RSS above idle MiB | valid |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for label, r in rows:
        print(f"| {label} | {r['seconds']:.2f} | {r['mb_s']:.1f} | {r['gets']} | {r['connections']} | "
              f"{(r['peak_rss'] - r['idle']) / MiB:.1f} | {'yes' if r['valid'] else 'NO'} |")  # fmt: skip
    single = rows[0][1]["mb_s"]
    best = max(r["mb_s"] for label, r in rows if label.startswith("fixed"))
    wide, adaptive = rows[-2][1]["mb_s"], rows[-1][1]["mb_s"]
    within = max(r["mb_s"] for label, r in rows if label in ("fixed N=2", "fixed N=4", "fixed N=6"))
    print()
    print(f"adaptive (default) vs single stream:     {adaptive / single:.2f}x (target >= 3x)")
    print(f"adaptive up to 16 vs best fixed N:       {wide / best:.0%} (target >= 90%)")
    print(f"adaptive (default) vs best fixed N <= 6: {adaptive / within:.0%} (the fixed N within its ceiling)")
    return 0


def memory_table(opts: argparse.Namespace) -> int:
    """Peak RSS above the idle operator imports, by entry count (and one hostile archive)."""
    work = Path(tempfile.mkdtemp(prefix="bench-entries-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    rows = []
    try:
        counts = [int(c) for c in opts.entries.split(",")]
        for count, shared in [(c, False) for c in counts] + [(counts[-1], True)]:
            path = work / f"{count}-{shared}.zip"
            size = write_many_member_zip(path, count, shared=shared)
            r = run_child("entries", {"path": str(path)}, env, work)
            path.unlink()
            label = f"{count:,} entries" + (" all pointing at one member (hostile)" if shared else " of 1 byte")
            rows.append((label, size, r))
            print(f"  {label}: {r}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| archive | MB | seconds | peak RSS above idle MiB | valid | errors |")
    print("|---|---|---|---|---|---|")
    for label, size, r in rows:
        print(f"| {label} | {size / 1e6:.1f} | {r['seconds']:.1f} | {(r['peak_rss'] - r['idle']) / MiB:.1f} | "
              f"{'yes' if r['valid'] else 'no'} | {r['errors']:,} |")  # fmt: skip
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data (a smoke run, not the benchmark)")
    parser.add_argument("--latency", action="store_true", help="the parallel-read table through the latency source")
    parser.add_argument(
        "--latency-mb", type=float, default=4600, help="payload for --latency, MB (the ZIP is ~44%%: 4600 -> ~2 GB)"
    )
    parser.add_argument("--latency-ms", type=float, default=30, help="delay before the first byte of a request, ms")
    parser.add_argument("--mb-per-s", type=float, default=40, help="bandwidth of one connection, MB/s")
    parser.add_argument("--memory", action="store_true", help="the peak-RSS-by-entry-count table")
    parser.add_argument("--entries", default="10000,250000,1000000", help="entry counts for --memory")
    opts = parser.parse_args()
    if opts.latency:
        return latency_table(opts)
    if opts.memory:
        return memory_table(opts)
    big_files, big_total = (150, 25 * MiB) if opts.quick else (1500, 250 * 1000 * 1000)  # the issue's ~250 MB
    huge_zeros = 64 * MiB if opts.quick else 4 * GiB + 128 * MiB

    work = Path(tempfile.mkdtemp(prefix="bench-zip-verify-"))
    services = contextlib.ExitStack()
    endpoint = services.enter_context(devservices.s3_endpoint_process()).endpoint_url
    try:
        import boto3
        from botocore.config import Config

        key_id = os.environ.get("S3STREAM_S3_ACCESS_KEY_ID", MOTO_CREDENTIALS[0])
        secret = os.environ.get("S3STREAM_S3_SECRET_ACCESS_KEY", MOTO_CREDENTIALS[1])
        region = os.environ.get("S3STREAM_S3_REGION", DEFAULT_REGION)
        direct = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            region_name=region,
            config=Config(s3={"addressing_style": "path"}),
        )
        direct.create_bucket(Bucket=BUCKET)
        print("building data ...", file=sys.stderr)
        sizes = {}
        for name, files, total, seed in (("bag250.zip", big_files, big_total, 1), ("bag10.zip", 150, 10 * MiB, 2)):
            bag = build_bag(work, files, total, seed)
            sizes[name] = zip_bag(bag, work / name)
            shutil.rmtree(bag)
            direct.upload_file(str(work / name), BUCKET, name)
            (work / name).unlink()
        huge = build_huge_bag_zip(work, huge_zeros)
        sizes["huge.zip"] = huge.stat().st_size

        with S3Proxy(endpoint) as proxy:
            client_args = {
                "endpoint_url": proxy.endpoint_url,
                "aws_access_key_id": key_id,
                "aws_secret_access_key": secret,
                "region_name": region,
            }
            conn = {
                "conn_type": "aws",
                "login": key_id,
                "password": secret,
                "extra": {"endpoint_url": proxy.endpoint_url, "region_name": region},
            }
            env = {
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "AIRFLOW_CONN_AWS_BENCH": json.dumps(conn),
                "AIRFLOW_HOME": str(work / "airflow-home"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AWS_EC2_METADATA_DISABLED": "true",
            }
            rows: list[tuple[str, str, dict[str, Any]]] = []

            def row(label: str, archive: str, kind: str, **extra: Any) -> dict[str, Any]:
                proxy.clear()
                args = {"bucket": BUCKET, "key": archive, "client": client_args, **extra}
                result = run_child(kind, args, env, work)
                gets = [r for r in proxy.requests if r.op == "GetObject"]
                result["gets"] = len(gets)
                result["other"] = len(proxy.requests) - len(gets)
                result["fetched"] = sum(range_bytes(r.headers.get("range"), sizes.get(archive, 0)) for r in gets)
                rows.append((label, archive, result))
                print(f"  {label} [{archive}]: {result}", file=sys.stderr)
                return result

            idle = row("idle interpreter, operator imports", "-", "idle")
            row("download + zipfile extract + bagit validate", "bag250.zip", "conventional")
            row("s3fs 0.4.2 + zipfile.testzip (CRC only)", "bag250.zip", "s3fs")
            row("S3ZipVerifyOperator: listing only (core)", "bag250.zip", "listing")
            ours = row("S3ZipVerifyOperator (this), bagit", "bag250.zip", "operator", mode="bagit")
            row("one-GET-per-read recipe + testzip (CRC only)", "bag10.zip", "recipe")
            row("S3ZipVerifyOperator (this), bagit", "bag10.zip", "operator", mode="bagit")
            row("zipfile.testzip on local file (CRC only)", "huge.zip", "local_zipfile", path=str(huge))
            ours_huge = row("this core, LocalFileSource, bagit", "huge.zip", "local_core", path=str(huge))
            ours_huge["gets"], ours_huge["fetched"] = ours_huge["reported_requests"], ours_huge["bytes_read"]
    finally:
        services.close()
        shutil.rmtree(work, ignore_errors=True)

    print_table(rows, sizes, idle, ours, ours_huge)
    return 0


def print_table(
    rows: list[tuple[str, str, dict[str, Any]]],
    sizes: dict[str, int],
    idle: dict[str, Any],
    ours: dict[str, Any],
    ours_huge: dict[str, Any],
) -> None:
    conventional = next(r for label, _, r in rows if label.startswith("download"))
    listing = next(r for label, _, r in rows if "listing" in label)
    print()
    print("S3ZipVerifyOperator benchmark (one run; moto endpoint in its own process; GETs counted at the server)")
    print(
        f"archives: bag250.zip {sizes['bag250.zip'] / 1e6:.0f} MB, bag10.zip {sizes['bag10.zip'] / 1e6:.1f} MB "
        f"(S3); huge.zip {sizes['huge.zip'] / GiB:.2f} GiB (local-file source: moto loads whole objects per GET)"
    )
    header = (
        f"| {'method':<46} | {'archive':<10} | {'seconds':>8} | {'GETs':>5} | {'other req':>9} | "
        f"{'bytes fetched':>14} | {'peak RSS MiB':>12} | {'local disk MB':>13} | valid |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for label, archive, r in rows:
        valid = "-" if "valid" not in r else ("yes" if r["valid"] else "NO")
        fetched = "-" if archive == "-" else f"{r['fetched']:,}"
        print(
            f"| {label:<46} | {archive:<10} | {r['seconds']:>8.2f} | {r['gets']:>5} | {r['other']:>9} | "
            f"{fetched:>14} | {r['peak_rss'] / MiB:>12.1f} | {r['disk'] / 1e6:>13.1f} | {valid:<5} |"
        )
    bound = sizes["bag250.zip"] / (8 * MiB) + 4
    speedup = conventional["seconds"] / ours["seconds"]
    above_idle = (ours["peak_rss"] - idle["peak_rss"]) / MiB
    rss_ratio = max(ours["peak_rss"], ours_huge["peak_rss"]) / min(ours["peak_rss"], ours_huge["peak_rss"])
    print()
    print("targets (issue 4)                                   measured")
    print(f"  listing <= 2 requests                             {listing['gets'] + listing['other']}")
    print(f"  bagit verification GETs <= size/8MiB + 4 = {bound:.1f}   {ours['gets']}")
    print(f"  >= 1.5x faster than download+extract+validate     {speedup:.2f}x")
    print(f"  zero bytes written to local disk                  {ours['disk']} bytes")
    print(f"  peak RSS < 128 MiB above idle (same imports)      {above_idle:+.1f} MiB")
    print(
        f"  peak RSS 250 MB vs >4 GiB archive within 1.25x    {rss_ratio:.2f}x "
        f"({ours['peak_rss'] / MiB:.1f} vs {ours_huge['peak_rss'] / MiB:.1f} MiB)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
