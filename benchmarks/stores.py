"""Run a benchmark on each S3 store and print its rows side by side: moto | RGW.

moto is a mock (every ranged GET reads the whole object, no checksum is checked); Ceph RGW is a
real S3 implementation (:mod:`tests.support.rgw`). A figure that differs between the two
describes the store, not the package, and the side-by-side table shows which is which.

    parser = argparse.ArgumentParser()
    add_store_argument(parser)
    results = {}
    for store in stores(args):
        with devservices.s3_endpoint_process(store.name) as s3:
            results[store.name] = measure(s3)          # {row label: {column: value}}
    print_side_by_side("Upload of 1 GiB", results, COLUMNS)

Each store's endpoint runs in a process of its own (``python -m tests.support.devservices s3
<store>``), so its CPU never shares a GIL with what is measured; on a 2-core machine it still
shares the cores, which is why ratios are quoted from one run, never across runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tests.support.devservices import STORES

__all__ = ["Column", "add_store_argument", "print_side_by_side", "selected_stores"]


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


def print_side_by_side(
    title: str,
    results: dict[str, dict[str, dict[str, Any]]],
    columns: Sequence[Column],
    *,
    label_width: int = 46,
    notes: Sequence[str] = (),
) -> None:
    """Print one table: a row per label (in first-seen order), each store's ``columns`` beside the
    other's. ``results`` is ``{store: {row label: {column key: value}}}``; a row a store did not
    run is left blank there."""
    stores = list(results)
    labels: list[str] = []
    for rows in results.values():
        labels.extend(label for label in rows if label not in labels)
    block = sum(c.width + 1 for c in columns) - 1
    print(f"\n{title}")
    print(f"{'':<{label_width}} | " + " | ".join(f"{store:^{block}}" for store in stores))
    print(f"{'':<{label_width}} | " + " | ".join(" ".join(f"{c.header:>{c.width}}" for c in columns) for _ in stores))
    print("-" * (label_width + (block + 3) * len(stores)))
    for label in labels:
        cells = [" ".join(c.show(results[store].get(label, {})) for c in columns) for store in stores]
        print(f"{label:<{label_width}} | " + " | ".join(cells))
    for note in notes:
        print(note)
