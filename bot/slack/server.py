"""Serving the Slack app: HTTP mode (aiohttp, Slack signs each request) or Socket Mode.

HTTP mode listens on ACP_HOST:ACP_PORT (default 127.0.0.1:3000) at /slack/events; put it
behind your TLS proxy. Socket Mode needs no public URL: it is used when SLACK_APP_TOKEN is set.
"""

from __future__ import annotations

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from runtime.errors import AcpError

EVENTS_PATH = "/slack/events"


def web_app(app: AsyncApp) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        bolt_request = await to_bolt_request(request)
        bolt_response = await app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    application = web.Application()
    application.router.add_post(EVENTS_PATH, handle)
    application.router.add_get("/healthz", health)
    return application


async def start_http(app: AsyncApp, host: str, port: int) -> web.AppRunner:
    # Slack's requests are acked within 3 s; none needs aiohttp's default 60 s at shutdown.
    runner = web.AppRunner(web_app(app), access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def start_socket_mode(app: AsyncApp, app_token: str):
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
    from slack_sdk.errors import SlackApiError

    # The SDK retries a refused connection forever; a bad token must stop the service instead.
    try:
        await app.client.apps_connections_open(app_token=app_token)
    except SlackApiError as error:
        reason = error.response.get("error", "refused")
        raise AcpError(
            f"Slack refused SLACK_APP_TOKEN for Socket Mode: {reason}",
            hint="use the app-level token (xapp-…) with connections:write from the app's "
            "Basic Information page",
        ) from None
    handler = AsyncSocketModeHandler(app, app_token)
    await handler.connect_async()
    return handler
