"""Benchmark: verifying a zipped BagIt bag in S3 against the download route, on moto and on RGW.

    .venv/bin/python benchmarks/bench_zip_verify.py [--quick] [--rounds 3] [--stores moto,rgw]
    .venv/bin/python benchmarks/bench_zip_verify.py --latency [--latency-mb 4600] [--latency-ms 30] [--mb-per-s 40]
    .venv/bin/python benchmarks/bench_zip_verify.py --memory [--entries 10000,250000,1000000]

The default table builds a ~223 MB zipped bag of 1,500 files (bagit-python, sha256 + sha512,
zipped by zipfile; ``--quick``: 25 MiB, 150 files), uploads it to each S3 store of ``--stores`` in
turn (moto, a mock that reads the whole object for every ranged GET, and Ceph RGW, a real S3
implementation where a ranged GET costs its own bytes; one ``env`` column instead when
``S3STREAM_S3_ENDPOINT`` is set) and prints the stores side by side: the download route
(``download_file`` + ``zipfile`` extract + bagit-python ``validate``), ``S3ZipVerifyOperator`` with
its defaults, and the core with one setting changed (one streamed GET; four parallel GETs; digests
computed inline). Every row runs in a fresh child process talking to the store directly: seconds
are its wall time, peak RSS its own ``VmHWM`` and that above its imports, GETs the GetObject
requests its client sent (botocore's ``before-send`` event; the operator's reader counts its own),
local disk the bytes in its private temporary directory at its peak.

``--latency``: parallel ranged reads at real-S3 latency, through
:class:`tests.support.latency.LatencySource` (a local file behind ``--latency-ms`` per request and
``--mb-per-s`` per connection), no store: one streamed GET vs N fixed parallel GETs vs the adaptive
default, on a ZIP of ``--latency-mb`` MB of payload (about 44% once deflated: ~2 GB by default).
``--memory``: peak RSS above the idle operator imports for archives of ``--entries`` 1-byte members
(and one hostile archive whose entries all point at one member), from a local file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import zipfile
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
from tests.support.bags import write_many_member_zip  # noqa: E402
from tests.support.devservices import S3Service  # noqa: E402

KiB, MiB, GiB = 1024, 1024**2, 1024**3
BUCKET = "bench-zip-verify"
KEY = "bag250.zip"
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
    def counted_client(single_attempt=False):
        import boto3
        from botocore.config import Config
        config = Config(s3={"addressing_style": "path"})
        if single_attempt:  # as the package's hook builds it: the reader retries, botocore does not
            from airflow_s3stream.s3.client import single_attempt_config
            config = single_attempt_config(config)
        client = boto3.client("s3", **args["client"], config=config)
        gets = [0]
        def count(**_):
            gets[0] += 1
        client.meta.events.register("before-send.s3.GetObject", count)
        return client, gets
    """
)
CHILDREN = {
    "idle": OPERATOR_IMPORTS + "done(seconds=0.0, disk=0, idle=peak_rss_kib() * 1024)\n",
    "conventional": textwrap.dedent(
        """
        import boto3, bagit, zipfile, logging
        logging.disable(logging.CRITICAL)
        idle = peak_rss_kib() * 1024
        t = time.monotonic()
        c, gets = counted_client()
        tmp = os.environ["TMPDIR"]
        local = os.path.join(tmp, "archive.zip")
        c.download_file(args["bucket"], args["key"], local)
        with zipfile.ZipFile(local) as zf:
            zf.extractall(os.path.join(tmp, "x"))
        disk = disk_used(tmp)
        top = os.listdir(os.path.join(tmp, "x"))
        bag = bagit.Bag(os.path.join(tmp, "x", top[0]))
        bag.validate(processes=1)
        done(seconds=time.monotonic() - t, disk=disk, valid=True, idle=idle, gets=gets[0])
        """
    ),
    "operator": OPERATOR_IMPORTS
    + textwrap.dedent(
        """
        idle = peak_rss_kib() * 1024
        t = time.monotonic()
        op = S3ZipVerifyOperator(task_id="bench", s3_bucket=args["bucket"], s3_key=args["key"],
                                 aws_conn_id="aws_bench", mode="bagit")
        r = op.execute({})
        done(seconds=time.monotonic() - t, disk=disk_used(os.environ["TMPDIR"]), valid=r["valid"], idle=idle,
             gets=r["requests"], payload_files=r["payload_files"])
        """
    ),
    "core": OPERATOR_IMPORTS
    + textwrap.dedent(
        """
        from airflow_s3stream.archive.verify import VerifyConfig, verify_archive
        from airflow_s3stream.s3.reader import ReaderConfig, S3ObjectSource
        idle = peak_rss_kib() * 1024
        t = time.monotonic()
        c, gets = counted_client(single_attempt=True)
        reader = ReaderConfig(**args["reader"])
        config = VerifyConfig(mode="bagit", reader=reader, **args["verify"])
        r = verify_archive(S3ObjectSource(c, args["bucket"], args["key"]), config)
        done(seconds=time.monotonic() - t, disk=disk_used(os.environ["TMPDIR"]), valid=r.valid, idle=idle,
             gets=gets[0])
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
        from tests.support.local_sources import LocalFileSource
        idle = peak_rss_kib() * 1024
        t = time.monotonic()
        r = verify_archive(LocalFileSource(args["path"]), VerifyConfig(mode="auto"))
        done(seconds=time.monotonic() - t, disk=0, valid=r.valid, idle=idle, members=r.members_total,
             errors=r.errors.total)
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


# --- running rows -------------------------------------------------------------------------------


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


STORE_ROWS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("idle interpreter, operator imports", "idle", {}),
    ("download + zipfile extract + bagit validate", "conventional", {}),
    ("S3ZipVerifyOperator (this), defaults", "operator", {}),
    ("  core, one streamed GET (prefetch_blocks=0)", "core", {"reader": {"prefetch_blocks": 0}}),
    ("  core, 4 parallel GETs (prefetch_blocks=4)", "core", {"reader": {"prefetch_blocks": 4}}),
    ("  core, digests inline (hash_threads=0)", "core", {"verify": {"hash_threads": 0}}),
    ("  core, two digest workers (hash_threads=2)", "core", {"verify": {"hash_threads": 2}}),
)
STORE_COLUMNS = [
    Column("seconds", "seconds", lambda v: f"{v:.2f}", 7),
    Column("MB/s", "mb_s", lambda v: f"{v:.0f}", 5),
    Column("peak RSS MiB", "peak_rss_mib", lambda v: f"{v:.0f}", 12),
    Column("above imports", "above_mib", lambda v: f"{v:.0f}", 13),
    Column("GETs", "gets", str, 5),
    Column("disk MB", "disk_mb", lambda v: f"{v:.0f}", 7),
    Column("valid", "valid", lambda v: "yes" if v else "NO", 5),
]
VERIFY_LABEL, DOWNLOAD_LABEL = STORE_ROWS[2][0], STORE_ROWS[1][0]


def measure_store(s3: S3Service, archive: Path, work: Path, rounds: int = 1) -> dict[str, dict[str, Any]]:
    """Every row of :data:`STORE_ROWS` against ``s3``: the archive uploaded to a fresh bucket, then
    each row in a child process of its own, in ``rounds`` interleaved rounds (row 1, row 2, ...,
    then again): a row's seconds are its median, its peak RSS the highest seen, so one slow moment
    of a noisy machine does not decide a ratio."""
    import boto3

    client = boto3.client("s3", **client_kwargs(s3))  # type: ignore[call-overload]
    client.create_bucket(Bucket=BUCKET)
    client.upload_file(str(archive), BUCKET, KEY)
    size = archive.stat().st_size
    env = airflow_child_env(s3, work / "airflow-home")
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in STORE_ROWS}
    try:
        for round_no in range(1, rounds + 1):
            for label, kind, settings in STORE_ROWS:
                args = {
                    "bucket": BUCKET,
                    "key": KEY,
                    "client": client_kwargs(s3),
                    "reader": {},
                    "verify": {},
                    **settings,
                }
                try:
                    r = run_child(kind, args, env, work)
                except RuntimeError as exc:
                    r = {"error": str(exc).splitlines()[-1][:300]}
                print(f"  round {round_no}, {label.strip()}: {r}", file=sys.stderr)
                runs[label].append(r)
    finally:
        client.delete_object(Bucket=BUCKET, Key=KEY)
        client.delete_bucket(Bucket=BUCKET)
    rows: dict[str, dict[str, Any]] = {}
    for label, kind, _ in STORE_ROWS:
        done = [r for r in runs[label] if "seconds" in r]
        if len(done) < len(runs[label]):  # a row that failed once shows its error
            rows[label] = {**next(r for r in runs[label] if "seconds" not in r), "size": size}
            continue
        r = dict(done[0])
        r["seconds"] = statistics.median(x["seconds"] for x in done)
        r["peak_rss"] = max(x["peak_rss"] for x in done)
        r["peak_rss_mib"] = r["peak_rss"] / MiB
        r["above_mib"] = (r["peak_rss"] - r["idle"]) / MiB
        r["disk_mb"] = max(x["disk"] for x in done) / 1e6
        if kind != "idle":
            r["mb_s"] = size / 1e6 / r["seconds"]
        else:
            r.pop("seconds")
        rows[label] = {**r, "size": size}
    return rows


def store_ratios(rows: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The figures the issue sets targets for, from one store's rows."""
    verify, download = rows.get(VERIFY_LABEL, {}), rows.get(DOWNLOAD_LABEL, {})
    shown: dict[str, str] = {}
    if "seconds" in verify and "seconds" in download:
        shown["verify vs download route (x faster)"] = f"{download['seconds'] / verify['seconds']:.2f}x"
    if "gets" in verify:
        bound = math.ceil(verify["size"] / (8 * MiB)) + 4
        shown["verify GETs vs ceil(size / 8 MiB) + 4"] = f"{verify['gets']} <= {bound}"
    if "above_mib" in verify:
        shown["verify peak RSS above imports"] = f"{verify['above_mib']:.0f} MiB"
    return shown


def store_table(opts: argparse.Namespace) -> int:
    """The default table: the download route against this package's verify, on each store."""
    files, total = (150, 25 * MiB) if opts.quick else (1500, 250 * 1000 * 1000)  # the issue's ~231 MB bag
    work = Path(tempfile.mkdtemp(prefix="bench-zip-verify-"))
    try:
        print("building the bag ...", file=sys.stderr)
        bag = build_bag(work, files, total, seed=1)
        archive = work / KEY
        size = zip_bag(bag, archive)
        shutil.rmtree(bag)
        results = run_on_stores(opts, lambda _store, s3: measure_store(s3, archive, work, opts.rounds))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    targets = {
        "verify vs download route (x faster)": "(target on RGW: >= 2x)",
        "verify GETs vs ceil(size / 8 MiB) + 4": "(target: within)",
        "verify peak RSS above imports": "(target: < 128 MiB, the default memory_budget)",
    }
    print_side_by_side(
        f"Verify a zipped BagIt bag in S3: {size / 1e6:.0f} MB, {files} payload files, sha256 + sha512 "
        f"(each row a child process, median seconds of {opts.rounds} interleaved rounds; peak RSS its VmHWM, the "
        "highest; GETs as its client sent them)",
        results,
        STORE_COLUMNS,
        label_width=46,
        notes=ratio_notes("in this run:", {store: store_ratios(rows) for store, rows in results.items()}, targets),
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data (a smoke run, not the benchmark)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the store rows (median seconds)")
    parser.add_argument("--latency", action="store_true", help="the parallel-read table through the latency source")
    parser.add_argument(
        "--latency-mb", type=float, default=4600, help="payload for --latency, MB (the ZIP is ~44%%: 4600 -> ~2 GB)"
    )
    parser.add_argument("--latency-ms", type=float, default=30, help="delay before the first byte of a request, ms")
    parser.add_argument("--mb-per-s", type=float, default=40, help="bandwidth of one connection, MB/s")
    parser.add_argument("--memory", action="store_true", help="the peak-RSS-by-entry-count table")
    parser.add_argument("--entries", default="10000,250000,1000000", help="entry counts for --memory")
    add_store_argument(parser)
    opts = parser.parse_args()
    if opts.latency:
        return latency_table(opts)
    if opts.memory:
        return memory_table(opts)
    return store_table(opts)


if __name__ == "__main__":
    raise SystemExit(main())
