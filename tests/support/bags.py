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
    "write_many_member_zip",
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


def write_many_member_zip(path: Path, count: int, *, shared: bool = False) -> int:
    """Write a ZIP64 archive of ``count`` stored 1-byte members straight to ``path``; returns its size.

    Built record by record (no zipfile: a million ``ZipInfo`` objects would take minutes). With
    ``shared`` there is one local header and every directory entry points at it: the hostile
    archive whose entries all overlap one member.
    """
    import struct
    import zlib

    crc = zlib.crc32(b"x")
    local = struct.Struct("<4s2B4HL2L2H")
    central = struct.Struct("<4s4B4HL2L5H2L")
    offsets: list[int] = []
    pos = 0
    with open(path, "wb") as f:
        batch: list[bytes] = []
        for i in range(1 if shared else count):
            name = b"d%04d/m%07d.txt" % (i // 1000, i)
            batch.append(local.pack(b"PK\x03\x04", 20, 0, 0, 0, 0, 0x21, crc, 1, 1, len(name), 0) + name + b"x")
            offsets.append(pos)
            pos += local.size + len(name) + 1
            if len(batch) >= 65536:
                f.write(b"".join(batch))
                batch.clear()
        f.write(b"".join(batch))
        batch.clear()
        cd_start = pos
        for i in range(count):
            name = b"d%04d/m%07d.txt" % (i // 1000, i)
            offset = offsets[0] if shared else offsets[i]
            batch.append(
                central.pack(b"PK\x01\x02", 20, 3, 20, 0, 0, 0, 0, 0x21, crc, 1, 1, len(name), 0, 0, 0, 0, 0, offset)
                + name
            )
            pos += central.size + len(name)
            if len(batch) >= 65536:
                f.write(b"".join(batch))
                batch.clear()
        f.write(b"".join(batch))
        cd_size = pos - cd_start
        zip64_eocd = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, cd_size, cd_start)
        locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, pos, 1)
        eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
        f.write(zip64_eocd + locator + eocd)
        return pos + len(zip64_eocd) + len(locator) + len(eocd)
