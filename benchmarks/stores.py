"""Run a benchmark on each S3 store and print its rows side by side: moto | RGW.

moto is a mock (every ranged GET reads the whole object, no checksum is checked); Ceph RGW is a
real S3 implementation (:mod:`tests.support.rgw`). A figure that differs between the two
describes the store, not the package, and the side-by-side table shows which is which.

    parser = argparse.ArgumentParser()
    add_store_argument(parser)
    args = parser.parse_args()
    results = run_on_stores(args, measure)  # measure(store, s3) -> {row label: {column: value}}
    print_side_by_side("Upload of 1 GiB", results, COLUMNS)

A child process reaches the same store with :func:`service_env` (then ``devservices.start_s3()``)
or :func:`client_kwargs`: RGW's key pair is not moto's. A row whose measurement failed carries
``{"error": text}`` and is printed as the error, not a figure; a row that was not run carries
``{"skipped": text}`` (e.g. a peer whose extra is not installed) and shows that text.

Every measurement runs in a child process of its own, and each store in a process of its own
(:func:`~tests.support.devservices.s3_endpoint_process`), so it never shares a GIL with what is
measured; on a 2-core machine it still shares the cores, which is why ratios are quoted from one
run, never across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import devservices
from tests.support.devservices import STORES, S3Service

__all__ = [
    "Column",
    "add_store_argument",
    "airflow_child_env",
    "client_kwargs",
    "print_side_by_side",
    "ratio_notes",
    "run_on_stores",
    "selected_stores",
    "service_env",
]

Rows = dict[str, dict[str, Any]]  # {row label: {column key: value}}


@dataclass(frozen=True)
class Column:
    """One measured figure of a row: its header, its width and how a value is shown."""

    header: str
    key: str
    fmt: Callable[[Any], str] = str
    width: int = 8

    def show(self, row: dict[str, Any]) -> str:
        value = row.get(self.key)
        text = "" if value is None or value == "" else self.fmt(value)
        return f"{text:>{self.width}}"


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    """``--stores moto,rgw`` (the default: both, in that order)."""
    parser.add_argument(
        "--stores",
        default=",".join(STORES),
        help=f"comma-separated S3 stores to run on, side by side (default: {','.join(STORES)})",
    )


def selected_stores(args: argparse.Namespace) -> list[str]:
    """The stores ``--stores`` names, checked against :data:`~tests.support.devservices.STORES`."""
    names = [name.strip() for name in str(args.stores).split(",") if name.strip()]
    unknown = [name for name in names if name not in STORES]
    if unknown or not names:
        raise SystemExit(f"--stores: unknown store(s) {unknown or names}; choose from {', '.join(STORES)}")
    return names


def run_on_stores(args: argparse.Namespace, measure: Callable[[str, S3Service], Rows]) -> dict[str, Rows]:
    """``measure(store, s3)`` on each ``--stores`` store in turn, each started for it and stopped
    before the next starts: ``{store: rows}``. With ``S3STREAM_S3_ENDPOINT`` set it runs once, as
    ``env``. A store that does not start, or whose ``measure`` raises, gets one row naming why, and
    the other stores still run."""
    names = ["env"] if os.environ.get("S3STREAM_S3_ENDPOINT") else selected_stores(args)
    results: dict[str, Rows] = {}
    for name in names:
        print(f"-- {name}", file=sys.stderr, flush=True)
        with contextlib.ExitStack() as stack:
            try:  # a process of its own: its CPU never shares a GIL with the measuring process
                s3 = stack.enter_context(devservices.s3_endpoint_process(None if name == "env" else name))
            except Exception as exc:  # the store, not a row, failed: say so in its column
                results[name] = {"(the store did not start)": {"error": f"{type(exc).__name__}: {exc}"}}
                continue
            try:
                results[name] = measure(name, s3)
            except Exception as exc:  # keep the other stores' rows: print this one's failure in its column
                traceback.print_exc()
                results[name] = {"(the run failed)": {"error": f"{type(exc).__name__}: {exc}"}}
    return results


def service_env(s3: S3Service) -> dict[str, str]:
    """The ``S3STREAM_S3_*`` variables with which :func:`~tests.support.devservices.start_s3` in a
    child process returns ``s3``'s endpoint, key pair and region."""
    return {
        "S3STREAM_S3_ENDPOINT": s3.endpoint_url,
        "S3STREAM_S3_ACCESS_KEY_ID": s3.access_key_id,
        "S3STREAM_S3_SECRET_ACCESS_KEY": s3.secret_access_key,
        "S3STREAM_S3_REGION": s3.region,
    }


def airflow_child_env(s3: S3Service, home: Path, conn_id: str = "aws_bench") -> dict[str, str]:
    """The environment of a child process that runs an operator on ``s3``: ``os.environ``, the
    repository on ``PYTHONPATH``, an ``aws`` connection ``conn_id`` to the store (its endpoint, key
    pair and region) and a throwaway ``AIRFLOW_HOME`` at ``home``."""
    conn = {
        "conn_type": "aws",
        "login": s3.access_key_id,
        "password": s3.secret_access_key,
        "extra": {"endpoint_url": s3.endpoint_url, "region_name": s3.region},
    }
    return {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def client_kwargs(s3: S3Service) -> dict[str, str]:
    """``boto3.client("s3", **client_kwargs(s3))``: ``s3``'s endpoint, key pair and region."""
    return {
        "endpoint_url": s3.endpoint_url,
        "aws_access_key_id": s3.access_key_id,
        "aws_secret_access_key": s3.secret_access_key,
        "region_name": s3.region,
    }


def ratio_notes(title: str, ratios: dict[str, dict[str, str]], targets: dict[str, str]) -> list[str]:
    """Lines for :func:`print_side_by_side`'s ``notes``: one per ratio, each store's value side by
    side, then its target. ``ratios`` is ``{store: {ratio label: shown value}}``; a value a store
    could not compute is shown as ``n/a``."""
    stores = list(ratios)
    width = max([12, *(len(v) for values in ratios.values() for v in values.values())])
    label_width = max([len(title), *(len(label) + 2 for label in targets)])
    lines = ["", f"{title:<{label_width}} " + " ".join(f"{store:>{width}}" for store in stores)]
    for label, target in targets.items():
        values = " ".join(f"{ratios[store].get(label, 'n/a'):>{width}}" for store in stores)
        lines.append(f"  {label:<{label_width - 2}} {values}  {target}")
    return lines


def print_side_by_side(
    title: str,
    results: dict[str, dict[str, dict[str, Any]]],
    columns: Sequence[Column],
    *,
    label_width: int = 46,
    notes: Sequence[str] = (),
    shared: Sequence[Column] = (),
) -> None:
    """Print one table: a row per label (in first-seen order), each store's ``columns`` beside the
    other's. ``results`` is ``{store: {row label: {column key: value}}}``; a row a store did not
    run is left blank there. ``shared`` columns (the same in every store, such as a row count) are
    printed once, before the stores'. A row ``{"error": text}`` shows the error in its store's
    cells; the full texts follow the table."""
    stores = list(results)
    labels: list[str] = []
    for rows in results.values():
        labels.extend(label for label in rows if label not in labels)
    block = sum(c.width + 1 for c in columns) - 1
    lead = label_width + sum(c.width + 1 for c in shared)
    print(f"\n{title}")
    print(f"{'':<{lead}} | " + " | ".join(f"{store:^{block}}" for store in stores))
    shared_head = "".join(f" {c.header:>{c.width}}" for c in shared)
    heads = " ".join(f"{c.header:>{c.width}}" for c in columns)
    print(f"{'':<{label_width}}{shared_head} | " + " | ".join(heads for _ in stores))
    print("-" * (lead + (block + 3) * len(stores)))
    errors: list[str] = []
    for label in labels:
        first = next(results[store][label] for store in stores if label in results[store])
        cells = []
        for store in stores:
            row = results[store].get(label, {})
            if row.get("error"):
                errors.append(f"{store}, {label}: {row['error']}")
                cells.append(f"{'error: ' + str(row['error']):<{block}}"[:block])
            elif row.get("skipped"):  # not run, and why (e.g. a peer whose extra is not installed)
                cells.append(f"{row['skipped']:<{block}}"[:block])
            else:
                cells.append(" ".join(c.show(row) for c in columns))
        lead_cells = "".join(" " + c.show(first) for c in shared)
        print(f"{label:<{label_width}}{lead_cells} | " + " | ".join(cells))
    for note in notes:
        print(note)
    if errors:
        print("\nerrors:")
        for error in errors:
            print(f"  {error}")
