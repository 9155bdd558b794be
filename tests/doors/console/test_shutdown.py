"""A service with open event streams (the API's /stream, a console page's live updates) stops
promptly on SIGTERM: the streams end, they do not hold the listeners' shutdown (aiohttp waits
60 s for a request in flight by default; `acp serve` took over two minutes to stop)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx

from tests.doors.console.rig import ConsoleRig
from tests.doors.console.test_security import signed_in


async def test_open_streams_do_not_hold_the_service_at_sigterm(tmp_path: Path):
    rig = ConsoleRig(tmp_path)
    await asyncio.to_thread(rig.service.start)
    import re

    rig.url = re.search(r"^  console  : (http://\S+)", rig.service.output(), re.M).group(1)
    socket = Path(rig.env["ACP_HOME"]) / "acp.sock"
    console, _ = signed_in(rig, "bob")
    api = httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), base_url="http://acp")
    with (
        api.stream("GET", "/api/v1/stream", timeout=None) as api_stream,
        console.stream("GET", "/live", timeout=None) as live,
    ):
        assert api_stream.status_code == 200 and live.status_code == 200
        assert live.headers["content-type"].startswith("text/event-stream")
        proc = rig.service.proc
        assert proc is not None
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 60)
        took = time.monotonic() - started
    rig.service.stop()  # already stopped: closes its log
    assert proc.returncode == 0, rig.service.output()
    assert took < 15, f"the service took {took:.1f} s to stop with two streams open"
    assert "acp service stopped" in rig.service.output()
