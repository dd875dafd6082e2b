"""Build BagIt bags and ZIP archives of them for the ZIP/BagIt verification tests.

Bags are made by bagit-python; archives by Python's zipfile (seekable, or streamed to a
non-seekable pipe so that members carry data descriptors) or by the Info-ZIP ``zip`` command.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import bagit

__all__ = [
    "NonSeekable",
    "SparseZeroWriter",
    "edit_zip",
    "make_bag",
    "zip_bytes",
    "zip_dir",
    "zip_dir_infozip",
    "zip_dir_streamed",
]


def make_bag(
    root: Path, files: Mapping[str, bytes], checksums: Iterable[str] = ("sha256", "sha512"), name: str = "bag"
) -> Path:
    """A bag directory ``root/name`` holding ``files`` (paths relative to data/), made by bagit-python."""
    bag_dir = root / name
    for rel, content in files.items():
        path = bag_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    bag_dir.mkdir(parents=True, exist_ok=True)
    bagit.make_bag(str(bag_dir), {"Source-Organization": "airflow-s3stream tests"}, checksums=list(checksums))
    return bag_dir


def _walk(directory: Path, top: bool) -> list[tuple[Path, str]]:
    base = directory.parent if top else directory
    return sorted((p, p.relative_to(base).as_posix()) for p in directory.rglob("*") if p.is_file())


def zip_dir(directory: Path, method: int = zipfile.ZIP_DEFLATED, top: bool = True) -> bytes:
    """``directory`` zipped by zipfile into memory, under its own name when ``top``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for path, arcname in _walk(directory, top):
            zf.write(path, arcname)
    return buf.getvalue()


class NonSeekable(io.RawIOBase):
    """A write-only, non-seekable sink (like a pipe): zipfile then writes data descriptors."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.buf += b
        return len(b)

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        raise OSError("not seekable")


def zip_dir_streamed(directory: Path, top: bool = True) -> bytes:
    """``directory`` zipped by zipfile into a non-seekable stream: every member has flag 0x08."""
    sink = NonSeekable()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, arcname in _walk(directory, top):
            with zf.open(arcname, "w") as member:
                member.write(path.read_bytes())
    return bytes(sink.buf)


def zip_dir_infozip(directory: Path, out: Path, streamed: bool = False) -> bytes:
    """``directory`` zipped by Info-ZIP ``zip -r`` (``-fd``: force data descriptors when ``streamed``)."""
    if shutil.which("zip") is None:
        raise RuntimeError("Info-ZIP `zip` is not on the PATH; install it (Debian/Ubuntu: apt-get install zip)")
    if out.exists():
        out.unlink()
    args = ["zip", "-q", "-r", "-X"] + (["-fd"] if streamed else []) + [str(out), directory.name]
    subprocess.run(args, cwd=directory.parent, check=True)
    return out.read_bytes()


def zip_bytes(members: Mapping[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A ZIP in memory holding ``members`` (name -> content)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


def edit_zip(archive: bytes, changes: Mapping[str, bytes | None]) -> bytes:
    """A copy of ``archive`` with members replaced, added (name -> bytes) or removed (name -> None)."""
    src = zipfile.ZipFile(io.BytesIO(archive))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename not in changes:
                dst.writestr(info, src.read(info))
            elif changes[info.filename] is not None:
                dst.writestr(info, changes[info.filename] or b"")
        for name, content in changes.items():
            if content is not None and name not in src.namelist():
                dst.writestr(name, content)
    return buf.getvalue()


class SparseZeroWriter(io.RawIOBase):
    """A seekable file writer that turns all-zero blocks into holes (sparse files for >4 GiB ZIPs)."""

    ZERO = bytes(1 << 20)

    def __init__(self, path: Path) -> None:
        self._f = open(path, "w+b")  # noqa: SIM115 - closed in close()
        self._end = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        n = len(b)
        if n == len(self.ZERO) and b == self.ZERO:
            self._f.seek(n, os.SEEK_CUR)
        else:
            self._f.write(b)
        self._end = max(self._end, self._f.tell())
        return n

    def read(self, size: int = -1) -> bytes:
        return self._f.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def flush(self) -> None:
        if not self._f.closed:
            self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.truncate(self._end)
            self._f.close()
        super().close()
