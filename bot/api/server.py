"""The service API's listeners: the Unix socket (mode 0666: anyone on the machine may connect,
the kernel tells us who they are) and, when ACP_API_LISTEN is set (the default is
127.0.0.1:8780; "" turns it off), HTTP where only API tokens count."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from runtime.errors import AcpError

if TYPE_CHECKING:
    from runtime.engine import Engine


SHUTDOWN_S = 5.0


class ApiListeners:
    """Both listeners over one aiohttp application; `close()` removes the socket file."""

    def __init__(self, runner: web.AppRunner, socket_path: Path, url: str | None) -> None:
        self.runner = runner
        self.socket_path = socket_path
        self.url = url

    async def close(self) -> None:
        self.runner.app["api"].stopping.set()  # open event streams end now
        await self.runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()


async def start_api(engine: Engine) -> ApiListeners:
    from bot.api.routes import build_app

    settings = engine.settings
    path = settings.socket_path
    _claim_socket(path)
    # A request in flight at shutdown gets SHUTDOWN_S to finish (aiohttp's default is 60 s).
    runner = web.AppRunner(
        build_app(engine), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_S
    )
    await runner.setup()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        os.chmod(path, 0o666)  # who may act is decided per request from the peer's uid
        await web.SockSite(runner, sock).start()
        url = None
        if settings.api_listen:
            host, _, port = settings.api_listen.rpartition(":")
            try:
                site = web.TCPSite(runner, host or "127.0.0.1", int(port))
                await site.start()
            except (OSError, ValueError) as error:
                raise AcpError(
                    f"the service API cannot listen on {settings.api_listen}: {error}",
                    hint="set ACP_API_LISTEN to a free host:port, or to '' to serve only the "
                    "Unix socket",
                ) from None
            bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
            url = f"http://{bound[0]}:{bound[1]}"
    except BaseException:
        await runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise
    return ApiListeners(runner, path, url)


def _claim_socket(path: Path) -> None:
    """Take over a socket file a dead service left; refuse if a live service answers on it."""
    if not path.exists():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody listens: a leftover of a service that was killed
        return
    finally:
        probe.close()
    raise AcpError(
        f"another acp service is already running on {path}",
        hint="stop it first, or give this one its own ACP_HOME (or ACP_SOCKET)",
    )
