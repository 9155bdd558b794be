"""The service API as a console or a script sees it: JSON refusals with the runtime's words,
a stream of job changes, cancel, and a service that will not start on a rewritten log."""

from __future__ import annotations

import asyncio
import json

from tests.support.acp_process import Service, acp
from tests.support.api import api_for

FIX = 'code demo: run `sed -i "s/teh/the/" README.md`'


async def http(path: str, socket_path: str, method: str = "GET", body: dict | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:  # fmt: skip
    reader, writer = await asyncio.open_unix_connection(socket_path)
    payload = json.dumps(body).encode() if body is not None else b""
    lines = [f"{method} /api/v1{path} HTTP/1.1", "Host: acp", "Connection: close",
             f"Content-Length: {len(payload)}", "Content-Type: application/json"]  # fmt: skip
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    found = {}
    for line in head.decode().split("\r\n")[1:]:
        name, _, value = line.partition(":")
        found[name.strip().lower()] = value.strip()
    return status, found, rest


async def test_refusals_are_json_with_the_runtimes_words(engine):
    async with api_for(engine) as api:
        socket_path = str(api.socket_path)
        status, headers, body = await http("/jobs/J-99", socket_path,
                                           headers={"X-Acp-As": "alice"})  # fmt: skip
        error = json.loads(body)
        assert status == 404 and headers["x-acp-error"] == "1"
        assert error["error"] == "UnknownJob" and error["message"] == "no job J-99"
        status, _, body = await http("/jobs", socket_path, "POST", {"request": ""},
                                     headers={"X-Acp-As": "alice"})  # fmt: skip
        assert status == 400 and "the request is empty" in json.loads(body)["message"]
        status, _, body = await http("/jobs", socket_path, "POST", {"nope": 1},
                                     headers={"X-Acp-As": "alice"})  # fmt: skip
        assert status == 400 and "needs 'request'" in json.loads(body)["message"]
        status, _, body = await http("/health", socket_path)
        health = json.loads(body)
        assert status == 200 and health["ok"] and health["policy_hash"] == engine.loaded.sha256
        status, _, body = await http("/tokens", socket_path, "POST", {"scopes": ["root"]},
                                     headers={"X-Acp-As": "alice"})  # fmt: skip
        assert status == 400 and "no token scope 'root'" in json.loads(body)["message"]


async def test_the_stream_tells_a_console_what_changed(engine):
    async with api_for(engine) as api:
        reader, writer = await asyncio.open_unix_connection(str(api.socket_path))
        writer.write(b"GET /api/v1/stream HTTP/1.1\r\nHost: acp\r\nX-Acp-As: alice\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert b"200" in head.split(b"\r\n")[0] and b"text/event-stream" in head
        job = await engine.submit(FIX, engine.actor("cli", "alice"))
        seen: list[dict] = []
        while len(seen) < 2:
            line = await asyncio.wait_for(reader.readline(), 10)
            if line.startswith(b"data:") or b"data:" in line:
                seen.append(json.loads(line.split(b"data:", 1)[1]))
        writer.close()
    assert seen[0]["job"] == job.job_id and seen[0]["kind"] == "job.received"
    assert seen[1]["state"] == "queued"


async def test_cancel_is_the_requesters_or_an_approvers(engine):
    async with api_for(engine) as api:
        env = {**engine_env(engine), "ACP_SOCKET": str(api.socket_path)}
        job = await engine.submit("code demo: run `true`", engine.actor("cli", "alice"))
        carol = await asyncio.to_thread(acp, env, "cancel", job.job_id, "--as", "carol")
        assert carol.returncode == 6 and "only its requester (alice)" in carol.stderr
        done = await asyncio.to_thread(acp, env, "cancel", job.job_id, "--as", "alice",
                                       "--reason", "wrong repo")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "cancelled by alice" in done.stderr
        again = await asyncio.to_thread(acp, env, "cancel", job.job_id, "--as", "alice")
        assert again.returncode == 0 and "nothing changed" in again.stderr
    record = await engine.get(job.id)
    assert record.state.value == "cancelled" and "wrong repo" in record.result["reason"]
    kinds = [e.kind for e in await engine.events(job.id)]
    assert "job.cancelled" in kinds and "cancel.refused" in kinds


def engine_env(engine) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACP_", "SLACK_"))}
    settings = engine.settings
    env.update(ACP_HOME=str(settings.home), ACP_DATABASE_URL=settings.database_url,
               ACP_POLICY_DIR=str(settings.policy_dir))  # fmt: skip
    return env


def test_the_service_refuses_a_database_that_no_longer_extends_its_checkpoints(acp_env):
    import sqlite3
    from pathlib import Path

    if not acp_env["ACP_DATABASE_URL"].startswith("sqlite"):
        return  # the rewrite itself is tested on both backends in tests/runtime
    service = Service(acp_env).start()
    try:
        assert acp(acp_env, "submit", "--as", "alice", "--no-wait", FIX).returncode == 0
        assert acp(acp_env, "audit", "prove", "J-1").returncode == 0  # signs a checkpoint
    finally:
        service.stop()
    path = Path(acp_env["ACP_DATABASE_URL"].split("///", 1)[1])
    from runtime.audit import GENESIS, event_hash

    with sqlite3.connect(path) as conn:  # the attacker: a forged actor, the chain recomputed
        conn.execute("DROP TRIGGER audit_events_no_update")
        rows = conn.execute("SELECT seq, ts, job_id, kind, actor, artifacts, data "
                            "FROM audit_events ORDER BY seq").fetchall()  # fmt: skip
        prev = GENESIS
        for seq, ts, job_id, kind, actor, arts, data in rows:
            actor = "mallory" if seq == 1 else actor
            digest = event_hash(prev, seq, ts, job_id, kind, actor, arts, data)
            conn.execute("UPDATE audit_events SET actor = ?, prev_hash = ?, hash = ? "
                         "WHERE seq = ?", (actor, prev, digest, seq))  # fmt: skip
            prev = digest
    assert acp(acp_env, "audit", "verify").returncode == 12, "offline verify names it too"
    refused = Service(acp_env)
    try:
        refused.start()
        raise AssertionError("the service started on a rewritten log")
    except RuntimeError as error:
        assert "no longer extends checkpoint" in str(error)
