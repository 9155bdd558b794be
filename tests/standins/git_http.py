"""A real git smart-HTTP server on 127.0.0.1: ``git http-backend`` run as CGI, behind a token.

It serves every bare repository under one directory, clone and push alike, to whoever presents
the token (``Authorization: Bearer T``, or Basic with any user and password T). It never serves
a path outside that directory and never hands the token to git::

    with GitHttpServer(root, token="t") as server:
        url = server.url_for("widgets.git")   # http://127.0.0.1:PORT/widgets.git
        git -c http.extraHeader="Authorization: Bearer t" clone URL
        git clone http://x-access-token:t@127.0.0.1:PORT/widgets.git  # Basic, after a 401

Without the token (or with another) it answers 401 with ``WWW-Authenticate: Basic`` as hosted
forges do; git then retries with credentials from the URL, if it has any. Bodies are streamed
both ways (chunked requests too: git chunks pushes above ``http.postBuffer``); socket reads
time out after ``io_timeout_s`` and a backend still running after ``deadline_s`` is killed.

``requests`` records every request (method, path, query, status, the Authorization header as
sent); ``authorizations`` lists the Authorization headers seen; ``backend_errors`` keeps what
git http-backend wrote to stderr.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote

BLOCK = 64 * 1024
MAX_HEADER_LINE = 8 * 1024


@dataclass
class GitRequest:
    """One request the server received."""

    method: str
    path: str
    query: str
    authorization: str | None
    chunked: bool = False  # the body came with Transfer-Encoding: chunked
    status: int = 0


class GitHttpServer:
    """Bare repositories under ``root`` over git's smart HTTP protocol, for holders of ``token``."""

    def __init__(
        self,
        root: Path,
        token: str,
        *,
        io_timeout_s: float = 30.0,
        deadline_s: float = 120.0,
    ) -> None:
        self.root = Path(root).resolve()
        self.token = token
        self.io_timeout_s = io_timeout_s
        self.deadline_s = deadline_s
        self.requests: list[GitRequest] = []
        self.backend_errors: list[str] = []
        self.url = ""
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._backend = _find_http_backend()

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> GitHttpServer:
        handler = type("_BoundHandler", (_Handler,), {"owner": self, "timeout": self.io_timeout_s})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        self._thread = threading.Thread(target=httpd.serve_forever, name="git-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            running = list(self._running)
        for proc in running:
            proc.kill()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._httpd = None

    def __enter__(self) -> GitHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- for tests ------------------------------------------------------------------------------

    def url_for(self, name: str) -> str:
        """The clone URL of the repository ``root / name``."""
        return f"{self.url}/{name.strip('/')}"

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def authorizations(self) -> list[str]:
        with self._lock:
            return [r.authorization for r in self.requests if r.authorization is not None]

    def token_accepted(self, authorization: str | None) -> bool:
        """Whether an Authorization header carries the token (Bearer, or Basic's password)."""
        if not authorization or not self.token:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer":
            presented = credentials
        elif scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            presented = decoded.partition(":")[2]
        else:
            return False
        return hmac.compare_digest(presented.encode(), self.token.encode())

    # --- used by the handler --------------------------------------------------------------------

    def _record(self, request: GitRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _track(self, proc: subprocess.Popen[bytes], running: bool) -> None:
        with self._lock:
            if running:
                self._running.add(proc)
            else:
                self._running.discard(proc)

    def _environment(self, handler: _Handler, path: str, query: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            # Pushes: http-backend enables receive-pack for an authenticated REMOTE_USER, and
            # the config makes it explicit whatever the repository's own config says.
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.receivepack",
            "GIT_CONFIG_VALUE_0": "true",
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": handler.request_version,
            "SERVER_SOFTWARE": "acp-git-http-standin",
            "REQUEST_METHOD": handler.command,
            "PATH_INFO": unquote(path),
            "QUERY_STRING": query,
            "REMOTE_ADDR": handler.client_address[0],
            "REMOTE_USER": "git",
            "AUTH_TYPE": "token",
        }
        headers = handler.headers
        if headers.get("Content-Type"):
            env["CONTENT_TYPE"] = headers["Content-Type"]
        if headers.get("Content-Length") and not _is_chunked(handler):
            env["CONTENT_LENGTH"] = headers["Content-Length"].strip()
        for name, value in headers.items():
            key = name.upper().replace("-", "_")
            if key in ("AUTHORIZATION", "CONTENT_TYPE", "CONTENT_LENGTH", "PROXY_AUTHORIZATION"):
                continue  # the token stays here; the others are CGI variables above
            env[f"HTTP_{key}"] = value
        return env


class _Handler(BaseHTTPRequestHandler):
    owner: GitHttpServer
    protocol_version = "HTTP/1.1"
    server_version = "acp-git-http-standin"

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: ``requests`` holds what a test needs."""

    def _serve(self) -> None:
        owner = self.owner
        path, _, query = self.path.partition("?")
        authorization = self.headers.get("Authorization")
        record = GitRequest(self.command, path, query, authorization, _is_chunked(self))
        owner._record(record)
        if not owner.token_accepted(authorization):
            record.status = 401
            self._refuse()
            return
        if ".." in unquote(path).split("/"):
            record.status = 404
            self._plain(404, b"Not Found\n")
            return
        record.status = self._run_backend(path, query)

    def _refuse(self) -> None:
        body = b"Authentication required\n"
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        # The request's body (if any) was not read: this connection cannot carry another.
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _run_backend(self, path: str, query: str) -> int:
        owner = self.owner
        proc = subprocess.Popen(
            [owner._backend, "http-backend"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=owner._environment(self, path, query),
            cwd=owner.root,
        )
        owner._track(proc, True)
        watchdog = threading.Timer(owner.deadline_s, proc.kill)
        watchdog.daemon = True
        watchdog.start()
        feeder = threading.Thread(target=self._feed, args=(proc,), daemon=True)
        feeder.start()
        drain = threading.Thread(target=self._keep_stderr, args=(proc,), daemon=True)
        drain.start()
        try:
            assert proc.stdout is not None
            status, headers = _cgi_headers(proc.stdout)
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while block := proc.stdout.read1(BLOCK):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return status
        except (BrokenPipeError, ConnectionError, TimeoutError, ValueError) as exc:
            owner.backend_errors.append(f"{self.command} {path}: {type(exc).__name__}: {exc}")
            self.close_connection = True
            return 502
        finally:
            feeder.join(timeout=owner.io_timeout_s)
            if feeder.is_alive():
                self.close_connection = True  # the body was not read to its end
            try:
                proc.wait(timeout=owner.io_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            watchdog.cancel()
            drain.join(timeout=owner.io_timeout_s)
            owner._track(proc, False)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()

    def _feed(self, proc: subprocess.Popen[bytes]) -> None:
        """Stream the request body into the backend, de-chunking it if it came chunked."""
        assert proc.stdin is not None
        try:
            blocks = _chunks(self.rfile) if _is_chunked(self) else _sized(self.rfile, self)
            for block in blocks:
                proc.stdin.write(block)
            proc.stdin.close()
        except (BrokenPipeError, ConnectionError, TimeoutError, ValueError, OSError) as exc:
            self.owner.backend_errors.append(f"reading the request body: {type(exc).__name__}")
            self.close_connection = True
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def _keep_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        text = proc.stderr.read().decode(errors="replace").strip()
        if text:
            self.owner.backend_errors.append(text)


def _is_chunked(handler: BaseHTTPRequestHandler) -> bool:
    return "chunked" in handler.headers.get("Transfer-Encoding", "").lower()


def _sized(rfile: BinaryIO, handler: BaseHTTPRequestHandler) -> Iterator[bytes]:
    remaining = int(handler.headers.get("Content-Length") or 0)
    while remaining > 0:
        block = rfile.read(min(BLOCK, remaining))
        if not block:
            raise ConnectionError("the client closed before the end of its body")
        remaining -= len(block)
        yield block


def _chunks(rfile: BinaryIO) -> Iterator[bytes]:
    while True:
        line = rfile.readline(MAX_HEADER_LINE)
        if not line:
            raise ConnectionError("the client closed inside a chunked body")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while rfile.readline(MAX_HEADER_LINE) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return
        remaining = size
        while remaining > 0:
            block = rfile.read(min(BLOCK, remaining))
            if not block:
                raise ConnectionError("the client closed inside a chunk")
            remaining -= len(block)
            yield block
        rfile.readline(MAX_HEADER_LINE)  # the CRLF after the chunk


def _cgi_headers(stdout: BinaryIO) -> tuple[int, list[tuple[str, str]]]:
    status = 200
    headers: list[tuple[str, str]] = []
    while True:
        line = stdout.readline(MAX_HEADER_LINE)
        if not line:
            raise ValueError("git http-backend ended before its headers")
        line = line.rstrip(b"\r\n")
        if not line:
            return status, headers
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name.lower() not in ("content-length", "transfer-encoding", "connection"):
            headers.append((name, value))


def _find_http_backend() -> str:
    git = shutil.which("git")
    if git is None:
        raise RuntimeError("git is not installed")
    return git
