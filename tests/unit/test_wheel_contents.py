"""The built wheel ships the package and its metadata, and nothing from the tests or the tools."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCES = (".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")
TEST_ONLY_NAMES = (b"LocalFileSource", b"local_payload")  # tests/support/local_sources.py


@pytest.mark.slow
def test_the_wheel_holds_only_the_package(tmp_path: Path) -> None:
    source = tmp_path / "checkout"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    out = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(source)],
        check=True,
        timeout=600,
    )
    (wheel,) = out.glob("airflow_s3stream-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        tops = {name.split("/", 1)[0] for name in names}
        assert tops == {"airflow_s3stream", wheel.name.split("-py")[0] + ".dist-info"}, sorted(tops)
        assert "airflow_s3stream/s3/reader.py" in names
        shipped = [(name, zf.read(name)) for name in names if name.endswith(".py")]
    assert not [name for name, text in shipped if any(word in text for word in TEST_ONLY_NAMES)]
