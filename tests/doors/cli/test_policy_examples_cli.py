"""`acp policy test` and `acp policy explain` as a person runs them: real `acp` subprocesses on
the bundled policy and on copies of it in tmp_path (and, for explain, a real `acp serve`)."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from runtime.policy import load_policy
from tests.support.acp_process import Service, acp, service_env

BUNDLED = Path(__file__).resolve().parents[3] / "policies"
MARK = "# <-- here"
CAROL_CODES = "code demo: run `ls`"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No service runs: its own home and SQLite file, the bundled policy."""
    return service_env(tmp_path, ACP_POLICY_DIR=str(BUNDLED))


@pytest.fixture
def broken(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the bundled policy with one more file whose second example fails."""
    folder = tmp_path / "policy"
    shutil.copytree(BUNDLED, folder)
    extra = folder / "zz-extra.yml"
    extra.write_text(
        textwrap.dedent(f"""\
        expect:
          - as: carol
            request: 'sql payments-replica: select 1'
            rules: [analyst.sql.replica]
          - as: carol  {MARK}
            request: 'code demo: run `make test`'
            effect: allow
        """)
    )
    return folder, extra


def marked_line(path: Path) -> int:
    lines = path.read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if MARK in line)


def rows(stdout: str) -> list[list[str]]:
    """The table's example rows, split on runs of two spaces."""
    out = []
    for line in stdout.splitlines():
        cells = [c for c in line.strip().split("  ") if c.strip()]
        if cells and cells[0].strip().isdigit():
            out.append([c.strip() for c in cells])
    return out


def test_policy_test_on_the_bundled_policy_shows_every_example_ok(env) -> None:
    ran = acp(env, "policy", "test")

    assert ran.returncode == 0, ran.stderr
    examples = load_policy(BUNDLED).policy.expect
    table = rows(ran.stdout)
    assert [r[0] for r in table] == [str(n) for n in range(1, len(examples) + 1)]
    assert {r[-1] for r in table} == {"ok"}
    assert any(r[1] == "carol" and r[2] == CAROL_CODES and r[3] == "deny" for r in table)
    assert "coverage: every grant and approval rule is exercised by an example" in ran.stdout
    assert f"{len(examples)} of {len(examples)} examples ok; all pass" in ran.stdout


def test_policy_test_on_a_broken_copy_fails_naming_the_example_file_and_line(env, broken) -> None:
    folder, extra = broken

    ran = acp(env, "policy", "test", "--policy", str(folder))

    assert ran.returncode == 1, ran.stdout + ran.stderr
    failing = [r for r in rows(ran.stdout) if r[-1] == "FAIL"]
    assert len(failing) == 1 and failing[0][1:4] == ["carol", "code demo: run `make test`", "allow"]
    assert "- expected allow, got deny (carol has no grant for code jobs on 'demo'" in ran.stdout
    assert f"at {extra}:{marked_line(extra)}" in ran.stdout
    assert "1 FAILED" in ran.stdout

    as_json = acp(env, "policy", "test", "--policy", str(folder), "--json")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["failed"] == 1 and report["passed"] == len(report["examples"]) - 1
    [bad] = [e for e in report["examples"] if not e["passed"]]
    assert (bad["file"], bad["line"]) == (str(extra), marked_line(extra))
    assert report["coverage"] == {"uncovered_grants": [], "uncovered_approval_rules": []}


def test_a_broken_copy_is_refused_where_the_policy_is_loaded(env, broken) -> None:
    folder, extra = broken

    env = {**env, "ACP_POLICY_DIR": str(folder)}
    checked = acp(env, "policy", "check", "--as", "alice", "sql payments-replica: select 1")

    assert checked.returncode != 0
    assert f"{extra}:{marked_line(extra)}: example " in checked.stderr
    assert "acp policy test" in checked.stderr


def test_policy_test_lists_what_no_example_covers(env, tmp_path: Path) -> None:
    folder = tmp_path / "bare"
    folder.mkdir()
    # The bundled policy without its examples file.
    (folder / "default.yml").write_text((BUNDLED / "default.yml").read_text())

    ran = acp(env, "policy", "test", "--policy", str(folder))

    assert ran.returncode == 0, ran.stderr
    assert "0 examples" in ran.stdout
    assert "grants         : engineer.code.demo, engineer.sql.replica" in ran.stdout
    assert "approval rules : demo.merge.review, reports.publish.review" in ran.stdout


def test_policy_explain_under_files_shows_the_skipped_grants_and_the_deny(env) -> None:
    ran = acp(env, "policy", "explain", "--policy", str(BUNDLED), "--as", "carol", CAROL_CODES)

    assert ran.returncode == 0, ran.stderr
    out = ran.stdout
    assert "as carol (roles: analyst)" in out
    grant = next(line for line in out.splitlines() if "analyst.sql.replica" in line)
    assert grant.split()[0] == "skipped"
    assert "other job type: it grants sql, this is code" in grant
    assert "target 'demo' does not match its targets [payments-replica]" in grant
    assert any(line.split()[:2] == ["denies", "grants.none"] for line in out.splitlines())
    assert "decision: deny (by grants.none)" in out
    assert "reason      : carol has no grant for code jobs on 'demo' (roles: analyst)" in out
    assert f"explained under {BUNDLED}" in out


def test_policy_explain_without_a_service_falls_back_to_the_files(env) -> None:
    ran = acp(env, "policy", "explain", "--as", "mallory", "--json", CAROL_CODES)

    assert ran.returncode == 0, ran.stderr
    explained = json.loads(ran.stdout)
    assert explained["known"] is False
    assert explained["decision"]["effect"] == "deny"
    assert explained["decided_by"] == "people.unknown"
    assert len(explained["policy_hash"]) == 64

    text = acp(env, "policy", "explain", "--as", "alice", "doc reports: write up the week")
    assert "decision: needs_clarification (by clarification.direct_mode)" in text.stdout
    assert "explained from the policy files: the service is not running" in text.stdout


def test_policy_explain_asks_the_running_service(env) -> None:
    service = Service(env).start()
    try:
        ran = acp(env, "policy", "explain", "--as", "alice", "code demo: run `make test`")
        as_json = acp(env, "policy", "explain", "--as", "carol", "--json", CAROL_CODES)
    finally:
        service.stop()

    assert ran.returncode == 0, ran.stderr
    assert "as alice (roles: engineer)" in ran.stdout
    assert "decision: allow" in ran.stdout
    assert "approval    : merge by bob (rule demo.merge.review, four-eyes)" in ran.stdout
    assert "explained by the service, under the policy in force" in ran.stdout
    explained = json.loads(as_json.stdout)
    assert explained["person"] == "carol" and explained["decided_by"] == "grants.none"
    assert explained["policy_hash"] == load_policy(BUNDLED).sha256
