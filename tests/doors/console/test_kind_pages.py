"""Each kind's evidence on its job page, in a real browser, from jobs a real service ran: a
browser job's pause shown with its outlined screenshot and approved from the console; a SQL
job's result table and plan; a doc job's workbook cell changes with formulas as formulas."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from openpyxl import Workbook
from playwright.async_api import expect

from tests.conftest import BUNDLED_POLICY
from tests.doors.console.rig import ConsoleRig, job_id_of, shot
from tests.kinds.browser.test_browser_jobs import PASSWORD as ADMIN_PASSWORD
from tests.kinds.doc.test_doc_jobs import make_repo
from tests.kinds.sql.test_sql_jobs import PASSWORD, SCHEMA
from tests.standins import admin_site


def policy_for(folder: Path, reports: Path, site: str) -> Path:
    """The bundled policy, plus: the test's docs repo (doc jobs may run commands), the test's
    admin site as a browser target with a gate on changes."""
    policy = yaml.safe_load((BUNDLED_POLICY / "default.yml").read_text())
    policy["targets"]["repos"]["reports"] = {
        "path": str(reports), "base_branch": "main", "publish": "merge",
        "description": "the test's docs repo",
    }  # fmt: skip
    for grant in policy["roles"]["engineer"]["grants"]:
        if grant["id"] == "engineer.doc.reports":
            grant["tools"] = ["fs.read", "fs.write", "docs", "shell"]
    policy["roles"]["engineer"]["grants"].append(
        {"id": "engineer.browser.admin", "job_types": ["browser"], "targets": ["admin"],
         "tools": ["browser"]}
    )  # fmt: skip
    policy["approvals"].append(
        {"id": "admin.mutations", "job_types": ["browser"], "targets": ["admin"],
         "actions": ["mutate"], "approvers": {"roles": ["demo-approver"]},
         "four_eyes": True, "expires_after": "1h"}
    )  # fmt: skip
    policy["targets"]["sites"] = {
        "admin": {"domains": ["127.0.0.1"], "base_url": site,
                  "credentials": {"admin-password": "ADMIN_PASSWORD"},
                  "description": "the test's admin app"},
    }  # fmt: skip
    policy["limits"]["browser_step_timeout_s"] = 10
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "default.yml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return folder


def second_budget(repo: Path) -> None:
    """budget-v2.xlsx beside budget.xlsx: payments q2 changed, a total formula changed."""
    book = Workbook()
    sheet = book.active
    sheet.title = "Budget"
    for row in [("team", "q1", "q2"), ("payments", 40, 45), ("ledger", 10, 12), ("infra", 7, 9)]:
        sheet.append(row)
    sheet["D2"] = "=SUM(B2:C2)"
    book.save(repo / "budget-v2.xlsx")
    import subprocess

    for args in (["add", "-A"], ["commit", "-qm", "budget v2"]):
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                        *args], check=True, capture_output=True)  # fmt: skip


@pytest.fixture
async def world(tmp_path: Path, pg_server):
    name = "pay_console"
    role = "reader_console"
    pg_server.create_database(name)
    for statement in SCHEMA.format(role=role, password=PASSWORD).split(";"):
        if statement.strip():
            pg_server.psql(statement, database=name)
    dsn = f"postgresql://{role}:{PASSWORD}@127.0.0.1:{pg_server.port}/{name}"
    reports = make_repo(tmp_path / "reports")
    second_budget(reports)
    admin, offlist = await admin_site.start()
    policy = policy_for(tmp_path / "policy", reports, admin.base)
    rig = ConsoleRig(tmp_path, ACP_POLICY_DIR=str(policy), PAYMENTS_REPLICA_DSN=dsn,
                     ADMIN_PASSWORD=ADMIN_PASSWORD)  # fmt: skip
    await rig.start()
    try:
        yield rig, admin
    finally:
        await rig.stop()
        await admin.runner.cleanup()
        await offlist.runner.cleanup()
        pg_server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        pg_server.psql(f"DROP ROLE IF EXISTS {role}")


async def test_a_browser_pause_shown_outlined_and_approved_from_the_console(world):
    rig, _ = world
    request = "browse admin: delete user 43 `goto /users/43` `click #delete`"
    job = job_id_of(rig.acp("submit", "--as", "alice", "--no-wait", request))
    await rig.wait_state(job, {"awaiting_approval"})
    _, bob = await rig.page_for("bob")
    await bob.goto(f"{rig.url}/jobs/{job}")
    gallery = bob.locator("#evidence img")
    assert await gallery.count() >= 2, "the steps' screenshots"
    for img in await gallery.all():  # every screenshot loads (served by the console, CSP-clean)
        assert await img.evaluate("i => i.complete && i.naturalWidth > 0")
    await expect(bob.locator("#evidence")).to_contain_text("#delete")
    await expect(bob.locator("#evidence")).to_contain_text("playwright show-trace")
    await shot(bob, "browser-pause")
    await bob.click("button[name=approve]")
    await expect(bob.locator("#panel")).to_have_attribute("data-state", "succeeded",
                                                          timeout=60_000)  # fmt: skip
    shown = json.loads(rig.acp("show", job, "--json"))
    assert shown["approvals"][-1]["decided_by"] == "bob"


async def test_a_sql_jobs_result_table_and_plan(world):
    rig, _ = world
    job = job_id_of(rig.acp("submit", "--as", "carol", "--no-wait",
                            "sql payments-replica: SELECT status, count(*) FROM orders "
                            "GROUP BY 1 ORDER BY 1"))  # fmt: skip
    await rig.wait_state(job, {"succeeded"})
    _, carol = await rig.page_for("carol")
    await carol.goto(f"{rig.url}/jobs/{job}")
    evidence = carol.locator("#evidence")
    table = evidence.locator("table").filter(has_text="status")
    await expect(table.first).to_contain_text("refunded")
    await expect(table.first).to_contain_text("100")
    await expect(evidence).to_contain_text("SELECT status, count(*) FROM orders")
    await expect(evidence).to_contain_text("Aggregate")
    await expect(evidence.locator(".ev-costliest .ev-plan-label").first).to_have_text(
        "Seq Scan on orders"
    )
    # a read-only query published nothing: the page offers nothing to roll back.
    await expect(carol.locator("#panel")).to_have_attribute("data-state", "succeeded")
    await expect(carol.locator("button[name=rollback]")).to_have_count(0)
    await shot(carol, "sql-job")


async def test_a_doc_jobs_cell_changes_with_formulas(world):
    rig, _ = world
    request = "doc reports: next quarter's budget run `cp budget-v2.xlsx budget.xlsx`"
    job = job_id_of(rig.acp("submit", "--as", "alice", "--no-wait", request))
    await rig.wait_state(job, {"awaiting_approval"})
    _, bob = await rig.page_for("bob")
    await bob.goto(f"{rig.url}/jobs/{job}")
    evidence = bob.locator("#evidence")
    await expect(evidence).to_contain_text("Budget")
    await expect(evidence).to_contain_text("C2")
    await expect(evidence).to_contain_text("=B2+C2")
    await expect(evidence).to_contain_text("=SUM(B2:C2)")
    await shot(bob, "doc-cells")
    await bob.click("button[name=approve]")
    await expect(bob.locator("#panel")).to_have_attribute("data-state", "succeeded",
                                                          timeout=60_000)  # fmt: skip


async def test_a_code_jobs_diff_unified_and_side_by_side(world):
    rig, _ = world
    request = 'code demo: run `sed -i "s/teh/the/" README.md`'
    job = job_id_of(rig.acp("submit", "--as", "alice", "--no-wait", request))
    await rig.wait_state(job, {"awaiting_approval"})
    _, bob = await rig.page_for("bob")
    await bob.goto(f"{rig.url}/jobs/{job}")
    change = bob.locator("#ev-change")
    await expect(change.locator(".ev-files")).to_contain_text("README.md")
    await expect(change.locator("tr.ev-del").first).to_contain_text("teh")
    await expect(change.locator("tr.ev-add").first).to_contain_text("the")
    await bob.click("text=side by side")
    await expect(bob).to_have_url(re.compile(r"diff=split"))
    row = change.locator("table.ev-split tr.ev-row").filter(has=bob.locator("td.ev-del"))
    await expect(row.first.locator("td.ev-del")).to_contain_text("teh")
    await expect(row.first.locator("td.ev-add")).to_contain_text("the")
    await shot(bob, "code-diff-split")
