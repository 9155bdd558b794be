"""The console's listener: ACP_CONSOLE_LISTEN (default 127.0.0.1:8080, ACP_CONSOLE_PORT for the
port alone; "" turns it off), in the service process beside the API and the Slack door."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from runtime.errors import AcpError

if TYPE_CHECKING:
    from runtime.engine import Engine

SHUTDOWN_S = 2.0  # open live pages are ended by the hub; nothing else runs long


class ConsoleListener:
    def __init__(self, runner: web.AppRunner, url: str, console) -> None:
        self.runner, self.url, self.console = runner, url, console
        self._hub, self._oidc = console.hub, console.oidc

    @property
    def sign_in(self) -> str:
        """How people sign in, for the service's start-up lines."""
        ways = [p.label for p in self._oidc.providers] if self._oidc else []
        if self.console.demo_sign_in():
            ways.append("local demo sign-in (no IdP configured; the policy allows impersonation)")
        return "; ".join(ways) or "nothing configured: set ACP_OIDC_ISSUER (see README)"

    async def close(self) -> None:
        await self._hub.close()
        await self.runner.cleanup()
        if self._oidc is not None:
            await self._oidc.close()


async def start_console(engine: Engine) -> ConsoleListener | None:
    from bot.console.app import Console, build_app
    from bot.console.live import LiveHub
    from bot.console.session import Signer

    listen = engine.settings.console_listen
    if not listen:
        return None
    import os

    oidc = None
    if any(k.startswith(("ACP_OIDC_", "ACP_SLACK_OIDC_")) for k in os.environ):
        from bot.console.oidc import Oidc, providers_from_env  # authlib only when configured

        providers = providers_from_env(os.environ)
        oidc = Oidc(providers) if providers else None
    hub = LiveHub(engine.db)
    console = Console(engine, Signer.for_home(engine.settings.home), oidc, hub, "")
    runner = web.AppRunner(build_app(console), access_log=None, handle_signals=False,
                           shutdown_timeout=SHUTDOWN_S)  # fmt: skip
    await runner.setup()
    host, _, port = listen.rpartition(":")
    try:
        site = web.TCPSite(runner, host or "127.0.0.1", int(port))
        await site.start()
    except (OSError, ValueError) as error:
        await runner.cleanup()
        raise AcpError(
            f"the console cannot listen on {listen}: {error}",
            hint="set ACP_CONSOLE_PORT (or ACP_CONSOLE_LISTEN=host:port) to a free port, or "
            "ACP_CONSOLE_LISTEN='' to run without the console",
        ) from None
    bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
    url = f"http://{bound[0]}:{bound[1]}"
    console.base_url = (engine.settings.console_url or url).rstrip("/")
    return ConsoleListener(runner, url, console)
