"""The store matrix's Ceph RGW: what `make test-stores` says when its packages are missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.rgw import CEPH_PACKAGES, missing_binaries

ROOT = Path(__file__).resolve().parents[2]


def test_missing_ceph_packages_are_named_with_the_command_that_installs_them(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no ceph binary on this PATH
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.rgw", "--check"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert f"missing: {', '.join(sorted(CEPH_PACKAGES))}" in proc.stderr
    assert f"apt-get install -y {' '.join(CEPH_PACKAGES)}" in proc.stderr


def test_a_package_is_missing_exactly_when_one_of_its_binaries_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for binary in ("ceph-mon", "ceph-osd", "radosgw", "ceph", "monmaptool"):  # radosgw-admin absent
        path = tmp_path / binary
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert missing_binaries() == ["ceph-common"]
