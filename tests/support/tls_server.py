"""A local HTTPS server that records what clients send: the TLS side of a store, without the store.

moto serves plain HTTP only, so tests that need TLS where the store matrix has none (moto) use this:
a ``ThreadingHTTPServer`` on 127.0.0.1 behind a certificate made for it (SAN ``127.0.0.1``), that
answers every request ``200`` with an ``ETag`` and records its method, path, headers and body.
It stores nothing and forwards nothing: it shows what reached the wire, and how a client treats a
certificate it was (or was not) told to trust.

    with TlsRecorder() as server:
        client = boto3.client("s3", endpoint_url=server.endpoint_url, verify=server.ca_bundle, ...)
        client.put_object(Bucket="b", Key="k", Body=b"x")
        assert server.requests[0].headers["content-length"] == "1"
"""

from __future__ import annotations

import hashlib
import ssl
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.rgw import self_signed_certificate

__all__ = ["RecordedRequest", "TlsRecorder"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as it arrived: header names lower-cased, the body as sent (chunk framing included)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        data = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return data
            data += self.rfile.read(size)
            self.rfile.readline()

    def _answer(self) -> None:
        body = self._body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        with self.server.lock:
            self.server.log.append(RecordedRequest(self.command, self.path, headers, body))
        self.send_response(200)
        self.send_header("ETag", f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _answer  # noqa: N815 - http.server names


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    lock: threading.Lock
    log: list[RecordedRequest]


class TlsRecorder:
    """An HTTPS endpoint on 127.0.0.1 with its own self-signed certificate (:attr:`ca_bundle`)."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="s3s-tls-")
        cert, key = self_signed_certificate(Path(self._dir.name))
        self.ca_bundle = str(cert)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.lock = threading.Lock()
        self._server.log = []
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"https://{host!s}:{port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._server.lock:
            return list(self._server.log)

    def __enter__(self) -> TlsRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._dir.cleanup()
