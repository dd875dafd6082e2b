"""A throwaway single-node Ceph cluster with the RADOS Gateway: a real S3 implementation for the tests.

moto is a mock: it accepts wrong additional checksums, reads a whole object for every ranged GET
and answers Complete with a proper ETag. Ceph's RGW is a store people run, and it differs from AWS
exactly where this package's promises depend on the store (conditional writes, Complete's ETag,
which checksums it checks, errors after an abort). So the store matrix runs the S3 tests here too.

What starts, from Debian's packages (``ceph-mon ceph-osd radosgw ceph-common``), in a temporary
directory, on loopback, with no systemd and no ``ceph-mgr``:

* one monitor, ``auth none`` between the daemons with ``ms mon client mode = crc`` (radosgw
  otherwise waits 300 s for a secure session), ``paxos propose interval = 0.05`` (each pool RGW
  creates costs over a second otherwise);
* one OSD on bluestore over a sparse file (memstore would keep every byte in the OSD's RAM);
* radosgw with a plain and a TLS frontend (a self-signed certificate made here), then a user
  with a known key pair (``radosgw-admin user create``).

Every daemon runs in the foreground (``-f``) in a session of its own, with its pid kept, and
:meth:`RgwCluster.stop` stops them one at a time: radosgw, the OSD, then the monitor. A small
reaper process stops them too if the process that started them dies first (a killed test run).
Admin socket paths stay under the 108 characters a Unix socket path may have.

    cluster = RgwCluster.start()
    client = boto3.client("s3", endpoint_url=cluster.endpoint_url, ...)
    cluster.stop()

``python -m tests.support.rgw`` serves one until Ctrl-C, printing its endpoint; ``--check`` only
says whether the packages are installed, and how to install them (``make test-stores`` runs it).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CEPH_PACKAGES", "RgwCluster", "RgwUnavailableError", "missing_binaries", "self_signed_certificate"]

CEPH_PACKAGES = ("ceph-mon", "ceph-osd", "radosgw", "ceph-common")
# the binaries each package brings that the cluster runs
_BINARIES = {
    "ceph-mon": "ceph-mon",
    "ceph-osd": "ceph-osd",
    "radosgw": "radosgw",
    "ceph": "ceph-common",
    "radosgw-admin": "ceph-common",
    "monmaptool": "ceph-mon",  # ceph-base, which ceph-mon depends on
}
ACCESS_KEY_ID = "s3streamtest"
SECRET_ACCESS_KEY = "s3streamtestsecret"  # a throwaway cluster's key
OSD_FILE_SIZE = 32 * 1024**3  # bytes: a sparse file, only what is written takes disk
START_TIMEOUT = 60.0  # seconds for the whole cluster to answer S3
UNIX_SOCKET_PATH_MAX = 107  # characters, sun_path without its NUL


# Stops the daemons when the process that started them dies without stopping them (a killed pytest,
# a timeout): argv is that process's pid and the cluster's directory, whose ``pids`` file lists the
# daemons' process groups. It exits by itself once the directory is gone (a normal stop).
_REAPER = """
import os, shutil, signal, sys, time
parent, root = int(sys.argv[1]), sys.argv[2]
while os.path.isdir(root):
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        break
    time.sleep(1)
else:
    sys.exit(0)
try:
    groups = [int(pid) for pid in open(os.path.join(root, "pids")).read().split()]
except OSError:
    groups = []
for sig, pause in ((signal.SIGTERM, 5), (signal.SIGKILL, 1)):
    for group in reversed(groups):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            pass
    time.sleep(pause)
shutil.rmtree(root, ignore_errors=True)
"""


class RgwUnavailableError(RuntimeError):
    """The Ceph packages are missing, or the cluster did not come up (the message says which)."""


def missing_binaries() -> list[str]:
    """The Debian packages whose binaries are not on ``PATH`` (empty when all are there)."""
    return sorted({package for binary, package in _BINARIES.items() if shutil.which(binary) is None})


def install_hint() -> str:
    """What to run when :func:`missing_binaries` is not empty."""
    return f"apt-get update && apt-get install -y {' '.join(CEPH_PACKAGES)}"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for ``127.0.0.1`` and ``localhost`` and its key, made with ``cryptography``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "s3stream-test-rgw")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "rgw.crt", directory / "rgw.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@dataclass(frozen=True)
class _Ports:
    mon: int
    http: int
    https: int


def _config(root: Path, fsid: str, ports: _Ports, cert: Path, key: Path) -> str:
    frontends = (
        f"beast endpoint=127.0.0.1:{ports.http} ssl_endpoint=127.0.0.1:{ports.https} "
        f"ssl_certificate={cert} ssl_private_key={key}"
    )
    return f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{ports.mon}
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
ms mon client mode = crc
paxos propose interval = 0.05
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 0
mon osd nearfull ratio = .97
mon osd backfillfull ratio = .98
mon osd full ratio = .99
run dir = {root}/run
admin socket = {root}/run/$name.asok
log file = {root}/log/$name.log
pid file =
mon data = {root}/mon/$id
osd data = {root}/osd/$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = {OSD_FILE_SIZE}
bluestore fsck on mount = false
bluestore cache autotune = false
bluestore cache size = 67108864
osd memory target = 939524096
osd max object name len = 460
osd max object namespace len = 64
[client.rgw]
rgw frontends = {frontends}
rgw enable usage log = false
rgw thread pool size = 64
"""


@dataclass
class RgwCluster:
    """A running cluster: its S3 endpoints, credentials and daemons. :meth:`stop` ends it."""

    root: Path
    endpoint_url: str
    tls_endpoint_url: str
    ca_bundle: str
    access_key_id: str = ACCESS_KEY_ID
    secret_access_key: str = SECRET_ACCESS_KEY
    region: str = "us-east-1"
    _daemons: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    @classmethod
    def start(cls, root: str | None = None) -> RgwCluster:
        """Start a cluster in ``root`` (default: a new temporary directory, removed by :meth:`stop`).

        Raises :class:`RgwUnavailableError` naming the missing packages and the command that installs
        them, or saying which daemon did not come up (with the end of its log).
        """
        missing = missing_binaries()
        if missing:
            raise RgwUnavailableError(
                f"Ceph RGW needs the Debian packages {', '.join(missing)}, which are not installed; "
                f"install them with: {install_hint()}"
            )
        base = Path(root) if root else Path(tempfile.mkdtemp(prefix="s3s-ceph-", dir="/tmp"))
        for sub in ("run", "log", "mon/a", "osd/0"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        if len(f"{base}/run/client.rgw.asok") > UNIX_SOCKET_PATH_MAX:
            raise RgwUnavailableError(f"{base}: too long for the admin sockets (Unix socket paths < 108 chars)")
        subprocess.Popen(
            [sys.executable, "-c", _REAPER, str(os.getpid()), str(base)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        cert, key = self_signed_certificate(base)
        ports = _Ports(mon=_free_port(), http=_free_port(), https=_free_port())
        fsid = str(uuid.uuid4())
        (base / "ceph.conf").write_text(_config(base, fsid, ports, cert, key))
        cluster = cls(
            root=base,
            endpoint_url=f"http://127.0.0.1:{ports.http}",
            tls_endpoint_url=f"https://127.0.0.1:{ports.https}",
            ca_bundle=str(cert),
        )
        try:
            cluster._bootstrap(fsid, ports.mon)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @property
    def conf(self) -> Path:
        return self.root / "ceph.conf"

    def _run(self, *argv: str, timeout: float = 30.0) -> str:
        """Run a Ceph tool against this cluster; its stdout, or :class:`RgwUnavailableError` with its output."""
        try:
            proc = subprocess.run(
                [argv[0], "-c", str(self.conf), *argv[1:]],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RgwUnavailableError(f"{' '.join(argv)} did not finish in {timeout:.0f} s{self._logs()}") from exc
        if proc.returncode != 0:
            raise RgwUnavailableError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return proc.stdout

    def _daemon(self, name: str, *argv: str) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")  # noqa: SIM115 - the daemon keeps it
        with log:
            proc = subprocess.Popen(
                [argv[0], "-c", str(self.conf), "-f", *argv[1:]],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal stops us, and we stop them in order
            )
        self._daemons.append((name, proc))
        with open(self.root / "pids", "a", encoding="ascii") as pids:
            pids.write(f"{proc.pid}\n")

    def _bootstrap(self, fsid: str, mon_port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        monmap = self.root / "monmap"
        self._run(
            "monmaptool",
            "--create",
            "--clobber",
            "--addv",
            "a",
            f"[v2:127.0.0.1:{mon_port}]",
            "--fsid",
            fsid,
            str(monmap),
        )
        self._run("ceph-mon", "--mkfs", "-i", "a", "--monmap", str(monmap))
        self._daemon("mon", "ceph-mon", "-i", "a")
        osd_uuid = str(uuid.uuid4())
        osd_id = self._run("ceph", "--connect-timeout", "20", "osd", "new", osd_uuid).strip()
        self._run("ceph-osd", "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid, timeout=60)
        self._daemon("osd", "ceph-osd", "-i", osd_id)
        self._daemon("rgw", "radosgw", "-n", "client.rgw")
        self._wait_for_s3(deadline)
        self._run(
            "radosgw-admin",
            "user",
            "create",
            "--uid",
            "s3stream",
            "--display-name",
            "s3stream tests",
            "--access-key",
            self.access_key_id,
            "--secret",
            self.secret_access_key,
        )

    def _wait_for_s3(self, deadline: float) -> None:
        while True:
            for name, proc in self._daemons:
                if proc.poll() is not None:
                    raise RgwUnavailableError(f"ceph {name} exited with {proc.returncode}{self._logs()}")
            try:
                with urllib.request.urlopen(self.endpoint_url, timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # an S3 error answer: the gateway is serving
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RgwUnavailableError(
                    f"radosgw did not answer on {self.endpoint_url} in {START_TIMEOUT:.0f} s{self._logs()}"
                )
            time.sleep(0.1)

    def _logs(self) -> str:
        lines = []
        for path in sorted((self.root / "log").glob("*")):
            with contextlib.suppress(OSError):
                tail = path.read_text(errors="replace").splitlines()[-15:]
                lines.append(f"\n--- {path.name}\n" + "\n".join(tail))
        return "".join(lines)

    def pids(self) -> list[int]:
        return [proc.pid for _, proc in self._daemons if proc.poll() is None]

    def stop(self, remove: bool = True) -> None:
        """Stop radosgw, then the OSD, then the monitor (SIGTERM, SIGKILL after 10 s each); remove
        the directory unless ``remove`` is false. Safe to call twice."""
        for _name, proc in reversed(self._daemons):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        self._daemons.clear()
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv[1:] == ["--check"]:
        missing = missing_binaries()
        if missing:
            print(
                f"error: the store matrix runs Ceph RGW, from the Debian packages {', '.join(CEPH_PACKAGES)}; "
                f"missing: {', '.join(missing)}. Install them with:\n    {install_hint()}",
                file=sys.stderr,
            )
            return 1
        return 0
    try:
        cluster = RgwCluster.start()
    except RgwUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(cluster.endpoint_url, flush=True)
    stopping = False

    def on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while not stopping:
            time.sleep(0.2)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
