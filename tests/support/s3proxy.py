"""A recording, fault-injecting HTTP proxy in front of a real S3 endpoint.

Tests point their boto3 client at ``proxy.endpoint_url`` instead of the S3 endpoint. The proxy
forwards every request unchanged (the Host header too, so SigV4 signatures still verify
upstream), records it as an :class:`S3Request` with its S3 operation name, and applies the
first matching fault rule, if any. This is how tests count requests "at the server" and prove
retries and checksum checks against faults we inject, rather than trusting moto to refuse.

    with S3Proxy(s3.endpoint_url) as proxy:
        proxy.add_fault(lambda r: Status(503, "SlowDown") if r.op == "UploadPart" else None, times=2)
        ...
        assert proxy.count("UploadPart") == 3

Besides answering instead of the server (:class:`Status`, :class:`Reset`), a fault can act after
the server did: :class:`DropResponse` forwards and then resets the client's connection (the
response to a request the server carried out is lost), :class:`Hold` forwards and keeps the
answer back until the test releases it (a client can be killed while its request is "in flight").
:func:`completed_uploads_gone` answers requests for an upload the server already completed with
S3's ``NoSuchUpload``, as S3 does (moto instead repeats the earlier success).
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "Corrupt",
    "Delay",
    "DropResponse",
    "Fault",
    "Hold",
    "NoSuchUpload",
    "Reset",
    "S3Proxy",
    "S3Request",
    "Status",
    "Truncate",
    "completed_uploads_gone",
    "upload_gone",
]

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
_OWN_HEADERS = {"date", "server"}  # send_response() writes its own; the server's would be a second copy


@dataclass
class S3Request:
    """One request as the proxy saw it. ``status`` is filled in once it is answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body_len: int
    status: int | None = None
    fault: str | None = None

    @property
    def key(self) -> str:
        """The object key (path without the bucket), percent-decoded; '' for bucket requests."""
        parts = urllib.parse.unquote(self.path).lstrip("/").split("/", 1)
        return parts[1] if len(parts) > 1 else ""

    @property
    def op(self) -> str:
        """The S3 API operation this request is (path-style addressing)."""
        q, m, h = self.query, self.method, self.headers
        on_object = bool(self.key)
        if "uploadId" in q:
            if m == "PUT":
                return "UploadPartCopy" if "x-amz-copy-source" in h else "UploadPart"
            return {"POST": "CompleteMultipartUpload", "DELETE": "AbortMultipartUpload", "GET": "ListParts"}.get(
                m, "Unknown"
            )
        if "uploads" in q:
            return "CreateMultipartUpload" if on_object else "ListMultipartUploads"
        if on_object:
            if m == "PUT":
                return "CopyObject" if "x-amz-copy-source" in h else "PutObject"
            if "attributes" in q:
                return "GetObjectAttributes"
            return {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(m, "Unknown")
        if m == "GET":
            return "ListObjects" if q.get("list-type") != "2" else "ListObjectsV2"
        if m == "POST" and "delete" in q:
            return "DeleteObjects"
        return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(m, "Unknown")


class Fault:
    """Base class of what a fault rule can return."""


@dataclass
class Status(Fault):
    """Answer with an S3-style XML error instead of forwarding."""

    code: int
    error: str = "InternalError"
    message: str = "injected by S3Proxy"

    def body(self) -> bytes:
        return (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{self.error}</Code>'
            f"<Message>{self.message}</Message><RequestId>proxy</RequestId></Error>"
        ).encode()


@dataclass
class Reset(Fault):
    """Close the connection without answering (a connection reset to the client)."""


@dataclass
class Corrupt(Fault):
    """Flip one byte of the request body (``offset`` into the body), then forward it."""

    offset: int = 0


@dataclass
class Delay(Fault):
    """Wait ``seconds`` and then forward normally."""

    seconds: float


@dataclass
class Truncate(Fault):
    """Forward, send the server's headers and the first ``after`` bytes of its body, then reset:
    a body cut mid-way, as a dropped connection to S3 looks to the client."""

    after: int = 0


@dataclass
class DropResponse(Fault):
    """Forward the request, let the server act, then reset the client's connection unanswered.

    What a connection reset (or a worker killed) after the server carried out a request looks
    like to the client: the request's effect is there, its answer never arrives.
    """


@dataclass
class Hold(Fault):
    """Forward the request, then keep the server's answer back until :meth:`release`.

    :attr:`reached` is set once the server has acted and the answer is held, so a test can kill
    the client at exactly that moment. An answer held longer than ``timeout`` seconds is sent
    anyway (a forgotten hold must not hang the proxy); one whose client is gone is dropped.
    """

    timeout: float = 120.0
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        """Send the held answer (to a client that may no longer be there)."""
        self.released.set()


@dataclass
class NoSuchUpload(Status):
    """Answer as S3 does for an upload id it no longer knows (aborted, or completed earlier)."""

    code: int = 404
    error: str = "NoSuchUpload"

    def body(self) -> bytes:
        return (
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchUpload</Code>'
            b"<Message>The specified upload does not exist. The upload ID may be invalid, or the upload "
            b"may have been aborted or completed.</Message><RequestId>proxy</RequestId></Error>"
        )


FaultRule = Callable[[S3Request], "Fault | None"]


def upload_gone(upload_id: str) -> FaultRule:
    """A rule answering every request for ``upload_id`` with :class:`NoSuchUpload`."""
    return lambda r: NoSuchUpload() if r.query.get("uploadId") == upload_id else None


def completed_uploads_gone(proxy: S3Proxy) -> FaultRule:
    """A rule answering :class:`NoSuchUpload` for any upload whose CompleteMultipartUpload the
    server already carried out (status 200 upstream, even if the answer was then dropped or held).

    S3 may answer a retried CompleteMultipartUpload this way once the first one succeeded; moto
    answers it with the earlier success again, so tests that need S3's behaviour add this rule.
    """

    def rule(request: S3Request) -> Fault | None:
        upload_id = request.query.get("uploadId")
        if upload_id is None:
            return None
        for seen in proxy.requests:
            if seen is request or seen.op != "CompleteMultipartUpload" or seen.query.get("uploadId") != upload_id:
                continue
            if seen.status == 200:
                return NoSuchUpload()
        return None

    return rule


@dataclass
class _Rule:
    rule: FaultRule
    times: int | None  # None: unlimited


@dataclass
class _State:
    upstream: urllib.parse.SplitResult
    log: list[S3Request] = field(default_factory=list)
    rules: list[_Rule] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)  # released when the proxy stops
    # re-entrant: a rule may read the log (completed_uploads_gone) while rules are matched under it
    lock: threading.RLock = field(default_factory=threading.RLock)

    def match(self, req: S3Request) -> Fault | None:
        with self.lock:
            for entry in self.rules:
                if entry.times == 0:
                    continue
                fault = entry.rule(req)
                if fault is not None:
                    if entry.times is not None:
                        entry.times -= 1
                    return fault
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        state = self.server.state
        split = urllib.parse.urlsplit(self.path)
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        req = S3Request(self.command, split.path, query, headers, len(body))
        with state.lock:
            state.log.append(req)
        fault = state.match(req)
        req.fault = type(fault).__name__ if fault else None
        if isinstance(fault, Reset):
            self._reset()
            return
        if isinstance(fault, Status):
            payload = fault.body()
            req.status = fault.code
            self.send_response(fault.code)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            return
        if isinstance(fault, Delay):
            threading.Event().wait(fault.seconds)
        if isinstance(fault, Corrupt) and body:
            pos = min(fault.offset, len(body) - 1)
            body = body[:pos] + bytes([body[pos] ^ 0xFF]) + body[pos + 1 :]
        if isinstance(fault, Truncate):
            self._forward_truncated(req, body, fault.after)
            return
        self._forward(req, body, fault if isinstance(fault, (DropResponse, Hold)) else None)

    def _forward_truncated(self, req: S3Request, body: bytes, after: int) -> None:
        up = self.server.state.upstream
        conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port or 80, timeout=300)
        out_headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        out_headers["Content-Length"] = str(len(body))
        try:
            conn.request(self.command, self.path, body=body, headers=out_headers)
            resp = conn.getresponse()
            req.status = resp.status
            data = resp.read()
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP_BY_HOP | _OWN_HEADERS:
                    self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data[:after])
            self.wfile.flush()
            self._reset()
        finally:
            conn.close()

    def _reset(self) -> None:
        """Close the client's connection with an RST, without answering."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        finally:
            self.connection.close()

    def _forward(self, req: S3Request, body: bytes, after: DropResponse | Hold | None = None) -> None:
        up = self.server.state.upstream
        conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port or 80, timeout=300)
        out_headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        out_headers["Content-Length"] = str(len(body))
        try:
            conn.request(self.command, self.path, body=body, headers=out_headers)
            resp = conn.getresponse()
            req.status = resp.status
            if after is not None:
                held = resp.read()  # the server has acted: its whole answer is here
                if isinstance(after, DropResponse):
                    self._reset()
                    return
                with self.server.state.lock:
                    self.server.state.holds.append(after)
                after.reached.set()
                after.released.wait(after.timeout)
                self._send_buffered(resp, held)
                return
            self.send_response(resp.status, resp.reason)
            length = resp.getheader("Content-Length")
            for k, v in resp.getheaders():
                if k.lower() not in _HOP_BY_HOP | _OWN_HEADERS and k.lower() != "content-length":
                    self.send_header(k, v)
            if length is not None:
                self.send_header("Content-Length", length)
                self.end_headers()
                while chunk := resp.read(1 << 20):
                    self.wfile.write(chunk)
            else:
                data = resp.read()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
        finally:
            conn.close()

    def _send_buffered(self, resp: http.client.HTTPResponse, data: bytes) -> None:
        try:
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP_BY_HOP | _OWN_HEADERS and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except OSError:  # the client was killed while its answer was held
            self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815 - http.server names


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: _State


class S3Proxy:
    """Forward to ``upstream`` (an ``http://host:port`` S3 endpoint), recording and injecting faults."""

    def __init__(self, upstream: str) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = _State(upstream=urllib.parse.urlsplit(upstream))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[S3Request]:
        with self._server.state.lock:
            return list(self._server.state.log)

    def count(self, op: str | None = None) -> int:
        """How many requests of operation ``op`` (all requests when None) were received."""
        return sum(1 for r in self.requests if op is None or r.op == op)

    def clear(self) -> None:
        with self._server.state.lock:
            self._server.state.log.clear()

    def add_fault(self, rule: FaultRule, times: int | None = None) -> None:
        """Apply ``rule`` to each request; it fires at most ``times`` times (unlimited when None)."""
        with self._server.state.lock:
            self._server.state.rules.append(_Rule(rule, times))

    def clear_faults(self) -> None:
        with self._server.state.lock:
            self._server.state.rules.clear()

    def start(self) -> S3Proxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._server.state.lock:
            for hold in self._server.state.holds:
                hold.release()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> S3Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
