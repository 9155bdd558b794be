"""The `acp` command's way to the service: HTTP/1.1 over the Unix socket under ACP_HOME (the
kernel tells the service who we are), or to ACP_URL with the API token in ACP_TOKEN.

Deliberately small (asyncio streams, no HTTP library): `acp` starts in well under half a
second and never opens the database. Refusals come back as the runtime's own errors
(bot.api.wire), so a person sees the same message and exit code as before.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from bot.api.wire import PREFIX, error_from
from runtime.errors import ServiceUnavailable

if TYPE_CHECKING:
    from runtime.jobs import JobRecord

CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 600.0  # a replay re-runs a job; anything else answers in milliseconds


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class ServiceClient:
    """The service API, as the commands use it: jobs in, JobRecords out."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        from runtime.settings import Settings

        env = dict(os.environ if environ is None else environ)
        self.url = env.get("ACP_URL") or None
        self.token = env.get("ACP_TOKEN") or None
        self.as_user: str | None = env.get("ACP_USER") or None
        settings = Settings.from_env(env)
        self.socket_path: Path = settings.socket_path
        self._artifacts: dict[str, bytes] = {}
        self.artifacts = _Artifacts(self._artifacts)

    @property
    def where(self) -> str:
        return self.url or f"the socket {self.socket_path}"

    # --- the wire ----------------------------------------------------------------------

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        try:
            if self.url:
                parts = urlsplit(self.url)
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    raise ServiceUnavailable(
                        f"ACP_URL {self.url!r} is not an http(s) URL",
                        hint="e.g. ACP_URL=https://acp.internal.example.com",
                    )
                tls = ssl.create_default_context() if parts.scheme == "https" else None
                port = parts.port or (443 if tls else 80)
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(parts.hostname, port, ssl=tls), CONNECT_TIMEOUT_S
                )
                return reader, writer, parts.netloc
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.socket_path)), CONNECT_TIMEOUT_S
            )
            return reader, writer, "acp"
        except (FileNotFoundError, ConnectionRefusedError):
            raise ServiceUnavailable(
                f"the acp service is not running (nothing answers at {self.where})",
                hint="start it with `acp serve` in another terminal, or set ACP_URL (and "
                "ACP_TOKEN) to reach one elsewhere",
            ) from None
        except PermissionError:
            raise ServiceUnavailable(
                f"cannot reach {self.where}: permission denied",
                hint="the socket's directory must be reachable by you (ACP_HOME mode 0711), or "
                "set ACP_SOCKET / ACP_URL",
            ) from None
        except (OSError, TimeoutError) as error:
            raise ServiceUnavailable(f"cannot reach the acp service at {self.where}: {error}",
                                     hint="is `acp serve` running?") from None  # fmt: skip

    async def request(
        self, method: str, path: str, body: Any = None, *, query: dict[str, Any] | None = None
    ) -> Response:
        reader, writer, host = await self._open()
        try:
            return await asyncio.wait_for(
                self._exchange(reader, writer, host, method, path, body, query),
                REQUEST_TIMEOUT_S,
            )
        except TimeoutError:
            raise ServiceUnavailable(
                f"the acp service did not answer {method} {path} within {REQUEST_TIMEOUT_S:.0f}s"
            ) from None
        except (ConnectionError, asyncio.IncompleteReadError) as error:
            raise ServiceUnavailable(f"the acp service closed the connection: {error}") from None
        finally:
            writer.close()

    async def _exchange(self, reader, writer, host, method, path, body, query) -> Response:
        target = PREFIX + path
        if query:
            target += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        payload = b"" if body is None else json.dumps(body).encode()
        headers = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close",
                   "Accept: application/json", f"Content-Length: {len(payload)}"]  # fmt: skip
        if payload:
            headers.append("Content-Type: application/json")
        if self.token:
            headers.append(f"Authorization: Bearer {self.token}")
        if self.as_user:
            headers.append(f"X-Acp-As: {quote(self.as_user, safe='')}")
        writer.write(("\r\n".join(headers) + "\r\n\r\n").encode() + payload)
        await writer.drain()
        status_line = (await reader.readline()).decode("latin-1")
        try:
            status = int(status_line.split(" ", 2)[1])
        except (IndexError, ValueError):
            raise ServiceUnavailable(f"{self.where} does not speak HTTP: {status_line[:60]!r}",
                                     hint="is it the acp service?") from None  # fmt: skip
        found: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            found[name.strip().lower()] = value.strip()
        if found.get("transfer-encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    break
                data += await reader.readexactly(size)
                await reader.readline()
            raw = bytes(data)
        elif "content-length" in found:
            raw = await reader.readexactly(int(found["content-length"]))
        else:
            raw = await reader.read()
        response = Response(status, found, raw)
        if found.get("x-acp-error"):
            raise error_from(response.json())
        if status >= 400:
            raise ServiceUnavailable(f"the service answered {status} to {method} {path}")
        return response

    async def call(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        return (await self.request(method, path, body, query=query or None)).json()

    # --- what the commands call --------------------------------------------------------

    async def submit(self, text: str) -> JobRecord:
        return _job(await self.call("POST", "/jobs", {"request": text}))

    async def get(self, job: int | str) -> JobRecord:
        return _job(await self.call("GET", f"/jobs/{_jid(job)}"))

    async def jobs(self, *, mine: bool = False, states: str | None = None,
                   limit: int = 50) -> list[JobRecord]:  # fmt: skip
        found = await self.call("GET", "/jobs", mine="1" if mine else None, state=states,
                                limit=str(limit))  # fmt: skip
        return [_job(j) for j in found]

    async def events(self, job: int | str) -> list[SimpleNamespace]:
        """A job's audit events (seq, ts, kind, actor, data, artifacts, hashes)."""
        found = await self.call("GET", f"/jobs/{_jid(job)}/events")
        return [SimpleNamespace(**event) for event in found]

    async def act(self, job: int | str, verb: str, **body: Any) -> tuple[JobRecord, str]:
        """approve / reject / answer / cancel / rollback: the job after, and who acted."""
        response = await self.request("POST", f"/jobs/{_jid(job)}/{verb}", body)
        return _job(response.json()), response.headers.get("x-acp-actor", "")

    async def live_workers(self) -> int:
        return int((await self.call("GET", "/health"))["live_workers"])

    async def artifact(self, sha256: str) -> bytes:
        if sha256 not in self._artifacts:
            self._artifacts[sha256] = (await self.request("GET", f"/artifacts/{sha256}")).body
        return self._artifacts[sha256]

    async def prefetch(self, job: JobRecord) -> None:
        """Fetch what rendering the job reads (its diff, its result table) before rendering."""
        from runtime.kinds import registry

        kind = registry.kind_for(job.spec.job_type)
        shown = kind.evidence(job) if job.state.value == "awaiting_approval" else kind.results(job)
        for digest in shown.read:
            await self.artifact(digest)


class _Artifacts:
    """What render_job reads artifacts through: those ServiceClient.prefetch fetched."""

    def __init__(self, cache: dict[str, bytes]) -> None:
        self._cache = cache

    def read(self, sha256: str) -> bytes:
        return self._cache[sha256]


def _jid(job: int | str) -> str:
    return f"J-{job}" if isinstance(job, int) else quote(job, safe="")


def _job(data: dict[str, Any]) -> JobRecord:
    from runtime.jobs import JobRecord
    from runtime.kinds import registry

    registry.kinds()  # each kind registers the model of its pending action (a code change…)
    return JobRecord.model_validate(data)
