"""Browser jobs end to end: request -> policy -> real Chromium on a local admin app -> review.

The admin app counts what reaches it, so "executed exactly once" and "never reached the
server" are the server's own numbers. The off-list site counts too, and must see nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from runtime.engine import Engine
from runtime.jobs import JobRecord, JobState
from runtime.kinds.browser import live
from runtime.settings import Settings
from runtime.tools.browser import close_shared_browser
from runtime.worker import Worker
from tests.conftest import BUNDLED_POLICY
from tests.standins import admin_site

PNG = b"\x89PNG\r\n\x1a\n"
PASSWORD = "hunter2-Adm1n pass&=!"


def write_policy(folder: Path, base: str, *, gate: bool = True, model: dict | None = None) -> Path:
    policy = yaml.safe_load((BUNDLED_POLICY / "default.yml").read_text())
    policy["roles"]["engineer"]["grants"].append(
        {"id": "engineer.browser.admin", "job_types": ["browser"], "targets": ["admin"],
         "tools": ["browser"]}
    )  # fmt: skip
    if gate:
        policy["approvals"].append(
            {"id": "admin.mutations", "job_types": ["browser"], "targets": ["admin"],
             "actions": ["mutate"], "approvers": {"roles": ["demo-approver"]},
             "four_eyes": True, "expires_after": "1h"}
        )  # fmt: skip
    policy["targets"]["sites"] = {
        "admin": {
            "domains": ["127.0.0.1"],
            "base_url": base,
            "credentials": {"admin-password": "ADMIN_PASSWORD"},
            "description": "the test's admin app",
        }
    }
    if model:
        policy["models"]["routes"].insert(0, model)
    policy["limits"]["browser_step_timeout_s"] = 5
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "default.yml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return folder


@dataclass
class World:
    engine: Engine
    admin: admin_site.Site
    offlist: admin_site.Site

    async def submit(self, steps: str, person: str = "alice") -> JobRecord:
        job = await self.engine.submit(f"browse admin: {steps}", self.engine.actor("cli", person))
        assert job.state is JobState.queued, (job.state, job.decision)
        return await self.settle(job.id)

    async def settle(self, job_id: int) -> JobRecord:
        worker = Worker(self.engine)
        while await worker.run_once():
            pass
        await worker.sweep_kinds()
        return await self.engine.get(job_id)

    async def approve(self, job: JobRecord, person: str = "bob") -> JobRecord:
        await self.engine.approve(job.id, self.engine.actor("cli", person))
        return await self.settle(job.id)

    async def reject(self, job: JobRecord, person: str = "bob") -> JobRecord:
        await self.engine.reject(job.id, self.engine.actor("cli", person), "not today")
        return await self.settle(job.id)

    async def kinds(self, job: JobRecord, kind: str) -> list:
        return [e for e in await self.engine.events(job.id) if e.kind == kind]

    def artifact(self, job: JobRecord, name: str) -> bytes:
        ref = next(a for a in reversed(job.artifacts) if a.name == name)
        return self.engine.artifacts.read(ref.sha256)


async def open_world(
    tmp_path: Path, database_url: str | None = None, **policy
) -> AsyncIterator[World]:
    admin, offlist = await admin_site.start()
    settings = Settings.from_env(
        {
            "ACP_HOME": str(tmp_path / "home"),
            "ACP_DATABASE_URL": database_url or f"sqlite+aiosqlite:///{tmp_path}/acp.db",
            "ACP_POLICY_DIR": str(write_policy(tmp_path / "policy", admin.base, **policy)),
        }
    )
    engine = await Engine.open(settings)
    try:
        yield World(engine, admin, offlist)
    finally:
        await live.close_all()
        # The shared browser belongs to this test's event loop: closed here, or its Chromium
        # and Playwright driver would outlive the loop until the test run ends.
        await close_shared_browser()
        await engine.close()
        await admin.stop()
        await offlist.stop()


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    monkeypatch.setenv("ADMIN_PASSWORD", PASSWORD)
    async for w in open_world(tmp_path):
        yield w


def names(job: JobRecord) -> list[str]:
    return [a.name for a in job.artifacts]


# --- read-only ---------------------------------------------------------------------------


async def test_read_only_inspection_runs_without_a_pause(world: World) -> None:
    job = await world.submit("check user 42 `goto /users/42` `expect #status active` `screenshot`")
    assert job.state is JobState.succeeded, job.result
    assert job.approvals == []
    assert [n for n in names(job) if n.endswith(".png")] == [
        "step-01-goto.png",
        "step-02-expect.png",
        "step-03-screenshot.png",
    ]
    assert world.artifact(job, "step-01-goto.png").startswith(PNG)
    steps = await world.kinds(job, "browser.step")
    assert [(e.data["action"], e.data["ok"]) for e in steps] == [
        ("goto", True), ("expect", True), ("screenshot", True)
    ]  # fmt: skip
    assert steps[0].data["url"] == world.admin.base + "/users/42"
    with zipfile.ZipFile(world.engine.artifacts.path_for(
        next(a.sha256 for a in job.artifacts if a.name == "trace.zip")
    )) as z:  # fmt: skip
        assert z.testzip() is None
        entries = z.namelist()
        assert {"trace.trace", "trace.network"} <= set(entries)
        assert any(n.startswith("resources/") for n in entries)
        assert b"/users/42" in z.read("trace.trace")
    assert sum(world.admin.mutations.values()) == 0
    assert world.offlist.requests == []
    assert (await world.engine.verify_audit()).artifacts_checked == 4  # raises if broken


async def test_a_failing_assertion_fails_the_job_with_the_step_and_its_evidence(world) -> None:
    job = await world.submit("`goto /users/42` `expect #status disabled`")
    assert job.state is JobState.failed
    assert "step 2 `expect '#status' disabled` failed" in job.result["reason"]
    assert "shows 'active'" in job.result["reason"]
    assert "trace.zip" in names(job) and "step-02-expect.png" in names(job)


# --- mutations: paused, approved, executed exactly once -----------------------------------


async def test_disable_form_pauses_then_runs_once_after_approval(world: World) -> None:
    job = await world.submit(
        "disable user 42 `goto /users/42` `click #go` `expect #status disabled`"
    )
    assert job.state is JobState.awaiting_approval, job.result
    pending = job.pending_action
    assert pending.action == "mutate" and pending.kind == "click"
    assert "Disable user" in pending.description
    assert "submits a POST form to " + world.admin.base + "/users/42/disable" in (
        pending.description
    )
    assert world.artifact(job, "pending-1.png").startswith(PNG)
    assert pending.screenshot_sha256 in [a.sha256 for a in job.artifacts]
    with zipfile.ZipFile(world.engine.artifacts.path_for(pending.trace_sha256)) as z:
        assert "trace.trace" in z.namelist()  # the trace so far, for the approver
    await asyncio.sleep(0.3)
    assert world.admin.mutations == {}

    with pytest.raises(Exception, match=r"four-eyes|requester"):
        await world.engine.approve(job.id, world.engine.actor("cli", "alice"))
    job = await world.approve(job)
    assert job.state is JobState.succeeded, job.result
    assert world.admin.mutations == {"POST /users/42/disable": 1}
    assert world.admin.disabled == {42}
    [sent] = await world.kinds(job, "browser.mutation_sent")
    assert sent.data["approved_by"] == "bob"
    assert sent.data["requests"] == [
        {"url": world.admin.base + "/users/42/disable", "method": "POST"}
    ]
    assert {"trace-1.zip", "trace-2.zip"} <= set(names(job))
    assert "1 approved mutation(s) sent" in job.result["reason"]


async def test_pause_and_approval_on_postgresql(tmp_path, pg_url, monkeypatch) -> None:
    async for world in open_world(tmp_path, pg_url):
        job = await world.submit("`goto /users/41/notes` `click #archive` `expect #saved archived`")
        assert job.state is JobState.awaiting_approval
        assert world.admin.mutations == {}
        job = await world.approve(job)
        assert job.state is JobState.succeeded, job.result
        assert world.admin.mutations == {"POST /api/users/41/archive": 1}
        assert (await world.engine.verify_audit()).events > 10


async def test_delete_behind_a_confirm_is_approved_once_and_the_confirm_accepted(world) -> None:
    job = await world.submit("delete user 43 `goto /users/43` `click #delete`")
    assert job.state is JobState.awaiting_approval
    assert "Delete user" in job.pending_action.description
    assert world.admin.mutations == {}
    job = await world.approve(job)
    assert job.state is JobState.succeeded, job.result
    assert world.admin.mutations == {"POST /users/43/delete": 1}
    [sent] = await world.kinds(job, "browser.mutation_sent")
    assert sent.data["dialogs"] == [
        {"type": "confirm", "message": "Delete user 43?", "accepted": "True"}
    ]


async def test_fetch_post_is_held_unsent_then_released_once(world: World) -> None:
    job = await world.submit(
        "archive notes `goto /users/41/notes` `click #archive` `expect #saved archived`"
    )
    assert job.state is JobState.awaiting_approval, job.result
    pending = job.pending_action
    assert pending.kind == "request"
    assert f"POST {world.admin.base}/api/users/41/archive" in pending.description
    assert pending.binding["requests"][0]["body_bytes"] == len('{"why":"done"}')
    await asyncio.sleep(0.3)
    assert world.admin.mutations == {}
    job = await world.approve(job)
    assert job.state is JobState.succeeded, job.result
    assert world.admin.mutations == {"POST /api/users/41/archive": 1}
    assert world.admin.archived == {41}


# --- a page that posts by itself: a pause, never a hang ------------------------------------

SELF_POSTING = {
    "load": "`goto /users/8/auto` `expect #flash flags`",
    "timer": "`goto /users/8/auto-later` `expect #flash flags`",
    "redirect-then-refresh": "`goto /sso/8` `expect #flash flags`",
    "timer-during-a-wait": "`goto /users/8/auto-later` `wait 1500` `expect #flash flags`",
    "at-the-last-step": "`goto /users/8/auto`",
}


async def settle_within(world: World, job_id: int, seconds: float = 60) -> JobRecord:
    """A wedged worker fails the test instead of hanging it."""
    return await asyncio.wait_for(world.settle(job_id), seconds)


@pytest.mark.parametrize("steps", list(SELF_POSTING.values()), ids=list(SELF_POSTING))
async def test_a_form_the_page_posts_by_itself_pauses_and_approval_sends_it_once(
    world: World, steps: str
) -> None:
    job = await world.engine.submit(f"browse admin: {steps}", world.engine.actor("cli", "alice"))
    after = await world.engine.submit(
        "browse admin: `goto /users/42` `expect #status active`", world.engine.actor("cli", "alice")
    )
    job = await settle_within(world, job.id)
    assert job.state is JobState.awaiting_approval, job.result
    pending = job.pending_action
    assert pending.kind == "request"
    assert f"POST {world.admin.base}/users/8/flags" in pending.description
    assert world.artifact(job, "pending-1.png").startswith(PNG)
    assert (await world.engine.get(after.id)).state is JobState.succeeded  # not held up
    await asyncio.sleep(0.3)
    assert world.admin.mutations == {}

    job = await asyncio.wait_for(world.approve(job), 60)
    assert job.state is JobState.succeeded, job.result
    assert world.admin.mutations == {"POST /users/8/flags": 1}
    [sent] = await world.kinds(job, "browser.mutation_sent")
    assert sent.data["requests"] == [{"url": world.admin.base + "/users/8/flags", "method": "POST"}]
    assert live.live_jobs() == []


async def test_a_form_the_page_posts_by_itself_is_dropped_on_reject(world: World) -> None:
    job = await world.submit(SELF_POSTING["load"])
    assert job.state is JobState.awaiting_approval, job.result
    job = await asyncio.wait_for(world.reject(job), 60)
    assert job.state is JobState.rejected
    await asyncio.sleep(0.3)
    assert world.admin.mutations == {}
    assert live.live_jobs() == []


async def test_a_fetch_loop_sends_exactly_the_approved_requests(world: World) -> None:
    job = await world.submit("`goto /users/8/flag-loop` `wait 400` `expect #flash looping`")
    assert job.state is JobState.awaiting_approval, job.result
    approved = len(job.pending_action.binding["requests"])
    assert approved >= 1
    await asyncio.sleep(0.5)  # the loop goes on trying meanwhile; all of it held
    assert world.admin.mutations == {}
    job = await asyncio.wait_for(world.approve(job), 60)
    # What the loop tried after the approval is held again, for a fresh decision.
    assert job.state is JobState.awaiting_approval, job.result
    assert world.admin.mutations == {"POST /api/users/8/flags": approved}
    job = await asyncio.wait_for(world.reject(job), 60)
    assert job.state is JobState.rejected
    await asyncio.sleep(0.5)
    assert world.admin.mutations == {"POST /api/users/8/flags": approved}
    assert live.live_jobs() == []


async def test_a_cancelled_job_closes_its_browser_context(world: World) -> None:
    """The worker's deadline cancels a job that takes too long: its context goes with it."""
    from runtime.tools.browser import shared_browser

    job = await world.engine.submit(
        "browse admin: `goto /users/42` `wait 20000`", world.engine.actor("cli", "alice")
    )
    worker = Worker(world.engine)
    claimed = await worker.claim()
    assert claimed is not None and claimed.id == job.id
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(world.engine.run_pass(world.engine.context(claimed, worker.id)), 4)
    assert live.live_jobs() == []
    assert (await shared_browser()).contexts == []


# --- mutations rejected: nothing reaches the server ---------------------------------------


@pytest.mark.parametrize(
    "steps",
    ["`goto /users/42` `click #go`", "`goto /users/43` `click #delete`",
     "`goto /users/41/notes` `click #archive`"],
    ids=["form", "confirm", "fetch"],
)  # fmt: skip
async def test_rejected_mutation_never_reaches_the_server(world: World, steps: str) -> None:
    job = await world.submit(steps)
    assert job.state is JobState.awaiting_approval
    job = await world.reject(job)
    assert job.state is JobState.rejected
    [closed] = await world.kinds(job, "browser.session_closed")
    assert closed.data["sent"] is False
    await asyncio.sleep(0.3)
    assert world.admin.mutations == {}
    assert live.live_jobs() == []


# --- escapes off the list -------------------------------------------------------------------


@pytest.mark.parametrize(
    "steps, blocked",
    [("`goto /` `click #off`", "/elsewhere"), ("`goto /go-away`", "/landing"),
     ("`goto http://localhost:1/x`", "localhost")],
    ids=["link", "redirect", "goto"],
)  # fmt: skip
async def test_off_list_navigation_fails_the_job_and_reaches_nothing(world, steps, blocked) -> None:
    job = await world.submit(steps)
    assert job.state is JobState.failed
    assert "not in the job's browser grant" in job.result["reason"]
    refused = await world.kinds(job, "tool.refused")
    assert any(blocked in e.data["url"] for e in refused)
    assert world.offlist.requests == []
    assert "trace.zip" in names(job)


async def test_off_list_iframe_is_blocked_and_the_page_still_inspected(world: World) -> None:
    job = await world.submit('`goto /framed` `expect h1 "Status board"`')
    assert job.state is JobState.succeeded, job.result
    [refused] = await world.kinds(job, "tool.refused")
    assert refused.data["url"].endswith("/board") and "localhost" in refused.data["url"]
    assert world.offlist.requests == []


async def test_websocket_to_an_off_list_host_is_refused_and_an_allowed_one_works(world) -> None:
    job = await world.submit('`goto /live` `expect #own "echo: hi"` `expect #offsock closed`')
    assert job.state is JobState.succeeded, job.result
    [refused] = await world.kinds(job, "tool.refused")
    assert refused.data["kind"] == "websocket" and refused.data["url"].startswith("ws://localhost")
    assert world.offlist.requests == []


async def test_forbidden_scheme_refused(world: World) -> None:
    job = await world.submit("`goto javascript:alert(1)`")
    assert job.state is JobState.failed
    assert "scheme javascript: is not allowed" in job.result["reason"]


# --- approvals bound to the page ------------------------------------------------------------


async def test_page_changed_under_the_approval_gets_a_fresh_checkpoint(world: World) -> None:
    job = await world.submit("`goto /users/42` `click #go`")
    first = job.pending_action
    world.admin.form_target = 43  # the site now points the form at another user
    await live.close_all()  # and the paused browser is gone (a restart)
    job = await world.approve(job)
    assert job.state is JobState.awaiting_approval, job.result
    assert job.pending_action.binding != first.binding
    assert "/users/43/disable" in job.pending_action.description
    assert await world.kinds(job, "approval.invalidated")
    assert world.admin.mutations == {}
    job = await world.approve(job)
    assert job.state is JobState.succeeded
    assert world.admin.mutations == {"POST /users/43/disable": 1}


async def test_approval_after_a_restart_retakes_the_steps_and_acts_once(world: World) -> None:
    job = await world.submit("`goto /users` `goto /users/42` `click #go` `expect #status disabled`")
    assert job.state is JobState.awaiting_approval
    await live.close_all()
    job = await world.approve(job)
    assert job.state is JobState.succeeded, job.result
    assert world.admin.mutations == {"POST /users/42/disable": 1}
    assert await world.kinds(job, "browser.session_restored")


async def test_without_an_approval_rule_a_mutation_fails_and_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async for world in open_world(tmp_path, gate=False):
        job = await world.submit("`goto /users/41/notes` `click #archive`")
        assert job.state is JobState.failed
        assert "no approval rule in the policy covers browser mutations" in job.result["reason"]
        await asyncio.sleep(0.3)
        assert world.admin.mutations == {}


# --- credentials ----------------------------------------------------------------------------


async def test_credential_filled_by_the_runtime_never_recorded(world: World) -> None:
    job = await world.submit("`goto /login` `fill #pw secret:admin-password` `click #signin`")
    assert job.state is JobState.awaiting_approval
    job = await world.approve(job)
    assert job.state is JobState.succeeded, job.result
    assert world.admin.logins == [{"user": "ops", "password": PASSWORD}]
    for path, data in stored_files(Path(world.engine.settings.home)):
        assert PASSWORD.encode() not in data, path
        assert b"hunter2" not in data, path
    assert PASSWORD not in str(job.model_dump())


TILDE_PASSWORD = "Adm1n~pass word&=!"


async def test_no_file_holds_the_credential_while_the_job_is_paused_or_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Playwright writes its trace as it records (input values, request bodies); the
    browser's temporary files and the service's home must not hold the value in any form,
    while the paused session is live and after it closed."""
    from runtime.tools.browser import close_shared_browser
    from tests.kinds.browser.test_browser_tool import encoded_forms

    # The browser launched next writes its files here (short: Chromium puts a socket in it).
    temp = Path(tempfile.mkdtemp(prefix="acp-"))
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("ADMIN_PASSWORD", TILDE_PASSWORD)
    await close_shared_browser()
    forms = encoded_forms(TILDE_PASSWORD)

    def holding(root: Path) -> list[tuple[Path, str]]:
        return [(path, form) for path, data in stored_files(root) for form in forms
                if form.encode() in data]  # fmt: skip

    async for world in open_world(tmp_path):
        home = Path(world.engine.settings.home)
        job = await world.submit("`goto /login` `fill #pw secret:admin-password` `click #signin`")
        assert job.state is JobState.awaiting_approval, job.result
        assert live.live_jobs() == [job.id]  # the session, the value in its page
        assert found(temp, "playwright-artifacts-*"), "the browser's files are not in TMPDIR"
        assert holding(temp) == [] and holding(home) == []
        job = await world.approve(job)
        assert job.state is JobState.succeeded, job.result
        assert world.admin.logins == [{"user": "ops", "password": TILDE_PASSWORD}]
        assert holding(temp) == [] and holding(home) == []
        assert not found(home, "**/.playwright")  # the trace's live files went with it
        await close_shared_browser()
    shutil.rmtree(temp, ignore_errors=True)


def found(root: Path, pattern: str) -> list[Path]:
    return list(root.glob(pattern))


def stored_files(home: Path) -> list[tuple[Path, bytes]]:
    """Every file under the service's home, zips (traces) unpacked."""
    found = []
    for path in [p for p in home.rglob("*") if p.is_file()]:
        try:
            data = path.read_bytes()
        except OSError:  # gone meanwhile (a browser's own temporary file)
            continue
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                data = b"".join(z.read(n) for n in z.namelist())
        found.append((path, data))
    return found


async def test_unknown_or_unset_credential_is_a_clear_failure(world, monkeypatch) -> None:
    job = await world.submit("`goto /login` `fill #pw secret:root-password`")
    assert job.state is JobState.failed
    assert "no credential named 'root-password' (known: admin-password)" in job.result["reason"]
    monkeypatch.delenv("ADMIN_PASSWORD")
    job = await world.submit("`goto /login` `fill #pw secret:admin-password`")
    assert job.state is JobState.failed
    assert "environment variable ADMIN_PASSWORD" in job.result["reason"]
    assert os.environ.get("ADMIN_PASSWORD") is None


# --- the path as a Playwright test, and the artifacts from the terminal -----------------------


async def run(*argv: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


def cli_env(world: World) -> dict[str, str]:
    settings = world.engine.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACP_", "SLACK_"))}
    env.update(
        ACP_HOME=str(settings.home),
        ACP_DATABASE_URL=settings.database_url,
        ACP_POLICY_DIR=str(settings.policy_dir),
        PYTHONPATH=str(ROOT),
    )
    return env


ROOT = Path(__file__).resolve().parents[3]
ACP = [sys.executable, "-m", "bot.cli"]


async def test_exported_test_repeats_the_path_green_on_a_fresh_app(
    world, tmp_path, api_thread
) -> None:
    job = await world.submit(
        "disable user 42 `goto /users` `goto /users/42` `click #go` `expect #status disabled`"
    )
    job = await world.approve(job)
    assert job.state is JobState.succeeded
    env = api_thread(cli_env(world))
    code, out = await run(*ACP, "export-test", job.job_id, "-o", "path_test.py", env=env,
                          cwd=tmp_path)  # fmt: skip
    assert code == 0, out
    script = (tmp_path / "path_test.py").read_text()
    assert "expect(page.locator('#status').first).to_contain_text('disabled')" in script
    assert "to_have_url(_url('/users/42'))" in script
    assert "1 mutation(s) approved in " + job.job_id in script

    fresh, offlist = await admin_site.start()  # a new instance of the site, nothing disabled
    try:
        code, out = await run(sys.executable, "path_test.py", env={**env, "BASE_URL": fresh.base},
                              cwd=tmp_path)  # fmt: skip
        assert code == 0, out
        assert "path: passed" in out
        assert fresh.mutations == {"POST /users/42/disable": 1}
        # Run again on the same instance: user 42 is disabled already, the path still holds.
        code, out = await run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "path_test.py", env={**env, "BASE_URL": fresh.base},
                              cwd=tmp_path)  # fmt: skip
        assert code == 0, out
        assert "1 passed" in out
    finally:
        await fresh.stop()
        await offlist.stop()
    code, out = await run(*ACP, "export-test", job.job_id, "-o", "path_test.py", env=env,
                          cwd=tmp_path)  # fmt: skip
    assert code != 0 and "exists" in out and "--force" in out


async def test_exported_assertions_fail_when_the_site_differs(world, tmp_path, api_thread) -> None:
    job = await world.submit("`goto /users/42` `expect #status active`")
    assert job.state is JobState.succeeded
    env = api_thread(cli_env(world))
    code, out = await run(*ACP, "export-test", job.job_id, "-o", "t.py", env=env, cwd=tmp_path)
    assert code == 0, out
    world.admin.disabled.add(42)
    code, out = await run(sys.executable, "t.py", env=env, cwd=tmp_path)
    assert code != 0
    assert "to_contain_text" in out or "Locator expected to contain text" in out


async def test_export_refuses_a_job_that_did_not_succeed_and_show_lists_steps(
    world, tmp_path, api_thread
):
    job = await world.submit("`goto /users/42` `click #go`")
    assert job.state is JobState.awaiting_approval
    env = api_thread(cli_env(world))
    code, out = await run(*ACP, "export-test", job.job_id, env=env, cwd=tmp_path)
    assert code != 0 and "only a browser job that succeeded" in out
    code, out = await run(*ACP, "show", job.job_id, env=env, cwd=tmp_path)
    assert code == 0, out
    assert "pending     : click 'Disable user'" in out
    base = world.admin.base
    assert f"ok goto {base}/users/42 @ {base}/users/42" in out
    code, out = await run(*ACP, "artifact", job.job_id, "trace-1.zip", "-o", "t.zip", env=env,
                          cwd=tmp_path)  # fmt: skip
    assert code == 0, out
    with zipfile.ZipFile(tmp_path / "t.zip") as z:
        assert "trace.trace" in z.namelist()
    code, out = await run(*ACP, "artifact", job.job_id, "nope.png", env=env, cwd=tmp_path)
    assert code != 0 and "has no artifact 'nope.png'" in out and "pending-1.png" in out


# --- with a model: it drives the same tools from the accessibility tree ----------------------


MODEL = "gpt-4o-mini"
KEY_ENV = "ACP_TEST_MODEL_KEY"


@pytest.fixture
async def model_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from tests.standins.model_standin import ModelStandIn

    key = "sk-browser-test-key"
    monkeypatch.setenv(KEY_ENV, key)
    monkeypatch.setenv("ADMIN_PASSWORD", PASSWORD)
    async with ModelStandIn(api_key=key) as standin:
        route = {
            "id": "models.browser.standin",
            "job_types": ["browser"],
            "model": f"openai/{MODEL}",
            "api_base": standin.base_url,
            "api_key_env": KEY_ENV,
        }
        async for world in open_world(tmp_path, model=route):
            yield world, standin


async def test_model_drives_the_browser_from_the_tree_and_its_mutation_waits(model_world):
    from tests.standins.model_standin import call, say

    world, standin = model_world
    standin.script(
        MODEL,
        call("goto", url="/login"),
        call("fill_secret", selector="#pw", name="admin-password"),
        call("goto", url="/users/42"),
        call("click", selector='role=button[name="Disable user"]'),
        say("User 42 is disabled."),
    )
    job = await world.engine.submit(
        "browse admin: disable user 42", world.engine.actor("cli", "alice")
    )
    assert job.state is JobState.queued, job.decision
    job = await world.settle(job.id)
    assert job.state is JobState.awaiting_approval, job.result
    assert job.pending_action.step == "click 'role=button[name=\"Disable user\"]'"
    assert world.admin.mutations == {}
    job = await world.approve(job)
    assert job.state is JobState.succeeded, job.result
    assert world.admin.mutations == {"POST /users/42/disable": 1}
    assert "User 42 is disabled." in job.result["reason"]

    sent = standin.requests_for(MODEL)
    assert len(sent) == 5
    first = sent[0].messages
    assert first[-1]["role"] == "user" and "url: " + world.admin.base in first[-1]["content"]
    after_goto = sent[3].messages[-1]["content"]
    assert 'button "Disable user"' in after_goto  # the accessibility tree, not HTML
    assert sent[4].messages[-1]["content"].startswith("approved and done.")
    assert "disabled" in sent[4].messages[-1]["content"]
    for request in sent:
        assert PASSWORD not in str(request.body)
    done = job.result["browser"]["done"]
    assert done[:3] == ["goto /", "goto /login", "fill '#pw' secret:admin-password"]


async def test_model_selector_off_the_grant_is_refused_and_the_model_told(model_world):
    from tests.standins.model_standin import call, say

    world, standin = model_world
    standin.script(
        MODEL,
        call("goto", url=world.offlist.base + "/steal"),
        say("I could not open that page."),
    )
    job = await world.engine.submit(
        "browse admin: open the partner portal", world.engine.actor("cli", "alice")
    )
    job = await world.settle(job.id)
    assert job.state is JobState.succeeded, job.result
    told = standin.requests_for(MODEL)[1].messages[-1]["content"]
    assert told.startswith("refused navigation") and "not in the job's browser grant" in told
    assert world.offlist.requests == []


async def test_model_job_approved_after_a_restart_goes_on_with_its_conversation(model_world):
    from tests.standins.model_standin import call, say

    world, standin = model_world
    standin.script(
        MODEL,
        call("goto", url="/users/42"),
        call("click", selector="#go"),
        say("Done: user 42 disabled."),
    )
    job = await world.engine.submit(
        "browse admin: disable user 42", world.engine.actor("cli", "alice")
    )
    job = await world.settle(job.id)
    assert job.state is JobState.awaiting_approval, job.result
    await live.close_all()  # the service restarted while the job waited
    job = await world.approve(job)
    assert job.state is JobState.succeeded, job.result
    assert world.admin.mutations == {"POST /users/42/disable": 1}
    assert await world.kinds(job, "browser.session_restored")
    last = standin.requests_for(MODEL)[-1].messages
    assert last[0]["role"] == "system" and "disable user 42" in last[1]["content"]
    assert last[-1]["content"].startswith("approved and done.")
