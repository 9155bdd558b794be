"""Make the schema-upgrade fixtures: databases written by release 0.1.0 (commit d180665).

    .venv/bin/python scripts/make_upgrade_fixture.py [--out tests/fixtures/db-0.1.0]

The working tree is changing (versioned migrations are being introduced), so the fixtures are
made by the code of the release itself: `git archive d180665` is unpacked into a temporary
directory and a child Python process (this file, `--generate`) runs there with
PYTHONPATH=<checkout>:<checkout>/tests, so `runtime`, `bot` and the test helpers it imports
(pgserver, admin_site, model_standin) are the release's, never the working tree's.

The child drives the old Engine and Worker in-process, as the release's own tests do, against
real services on 127.0.0.1 only: a throwaway PostgreSQL (tests/pgserver.py) holding both the
SQL jobs' "replica" and the PostgreSQL run's database, the admin site (tests/admin_site.py) for
the browser job, and the model stand-in (tests/model_standin.py) reached through litellm. The
same scenario runs twice, once on SQLite and once on PostgreSQL, and each run leaves jobs in
every persistent state and of every kind. What the old code reads back (every job, the audit
chain, the routines) is written next to the databases for the upgrade test to compare.

Before anything is written to --out, the child checks its own output with the old code: the
SQLite home is unpacked and read back, the dump is restored into a fresh PostgreSQL database
(same rows in every table, same sequence values) and read back, and both must equal what was
recorded, with the audit chain verified. Nothing is left running: the engines, the shared
browser, the sites and the PostgreSQL server are stopped, and the temporary directory goes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COMMIT = "d180665"
RELEASE = "0.1.0"
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "db-0.1.0"
PYTHON = ROOT / ".venv" / "bin" / "python"

# Fixed values the child's environment carries; the runtime redacts them from every record.
MODEL_KEY_ENV = "ACP_TEST_MODEL_KEY"
MODEL_KEY = "sk-fixture-standin-0-1-0"
ADMIN_PASSWORD = "fixture-Adm1n-pass"
DSN_ENV = "PAYMENTS_REPLICA_DSN"
REPLICA_DB = "payments"
REPLICA_ROLE = "fixture_reader"
REPLICA_PASSWORD = "fixture-reader-pw"
ENGINE_DB = "acp"
MODEL = "gpt-4o-mini"  # the stand-in's name for it; litellm's local cost map prices it

REPLICA_SCHEMA = f"""
CREATE TABLE orders (id serial PRIMARY KEY, status text NOT NULL, amount numeric NOT NULL,
                     email text NOT NULL);
INSERT INTO orders (status, amount, email)
  SELECT (ARRAY['paid','refunded','pending'])[1 + i % 3], i, 'user' || i || '@example.com'
  FROM generate_series(1, 300) AS i;
CREATE ROLE {REPLICA_ROLE} LOGIN PASSWORD '{REPLICA_PASSWORD}';
GRANT SELECT ON ALL TABLES IN SCHEMA public TO {REPLICA_ROLE};
"""


# --- the parent: check out the release, run the generator there, install the output ------------


def parent(args: argparse.Namespace) -> int:
    commit = git("rev-parse", "--verify", f"{args.commit}^{{commit}}").strip()
    out = Path(args.out).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="acp-fixture-"))
    try:
        checkout = tmp / f"acp-{RELEASE}"
        checkout.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", commit],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(checkout)], input=archive, check=True)
        staging = tmp / "out"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ACP_", "SLACK_", "OPENAI_", "PG", "PYTHON"))
            and k not in (MODEL_KEY_ENV, DSN_ENV, "ADMIN_PASSWORD")
        }
        env.update(
            PYTHONPATH=f"{checkout}:{checkout / 'tests'}",
            PYTHONDONTWRITEBYTECODE="1",
            PYTHONUNBUFFERED="1",
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            ADMIN_PASSWORD=ADMIN_PASSWORD,
            **{MODEL_KEY_ENV: MODEL_KEY},
        )
        command = [
            str(args.python),
            "-P",  # the script's own folder (the working tree) is not put on sys.path
            str(Path(__file__).resolve()),
            "--generate",
            "--checkout",
            str(checkout),
            "--commit-full",
            commit,
            "--work",
            str(tmp / "work"),
            "--out",
            str(staging),
            "--command-line",
            args.command_line,
        ]
        print(f"generating with the code of {commit[:12]} in {checkout}", flush=True)
        subprocess.run(command, cwd=checkout, env=env, check=True, timeout=args.timeout)
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, out)
        for path in sorted(out.rglob("*")):
            if path.is_file():
                print(f"{path.stat().st_size:>9}  {path}")
        return 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout


# --- the child: runs inside the 0.1.0 checkout ----------------------------------------------


def child(args: argparse.Namespace) -> int:
    import asyncio

    checkout = Path(args.checkout).resolve()
    import runtime  # the release's, from PYTHONPATH

    where = Path(runtime.__file__).resolve()
    if checkout not in where.parents:
        raise SystemExit(f"runtime was imported from {where}, not from the checkout {checkout}")
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True)
    out.mkdir(parents=True)
    asyncio.run(Generator(checkout, work, out, args.commit_full, args.command_line).run())
    return 0


class Generator:
    def __init__(self, checkout: Path, work: Path, out: Path, commit: str, command: str):
        self.checkout, self.work, self.out = checkout, work, out
        self.commit, self.command = commit, command
        self.pg: Any = None
        self.runs: dict[str, dict[str, Any]] = {}

    async def run(self) -> None:
        import admin_site
        from model_standin import ModelStandIn
        from pgserver import PostgresServer

        self.pg = PostgresServer().start()
        admin = offlist = None
        try:
            self.pg.create_database(REPLICA_DB)
            for statement in REPLICA_SCHEMA.split(";"):
                if statement.strip():
                    self.pg.psql(statement, database=REPLICA_DB)
            os.environ[DSN_ENV] = (
                f"postgresql://{REPLICA_ROLE}:{REPLICA_PASSWORD}@127.0.0.1:{self.pg.port}/"
                f"{REPLICA_DB}"
            )
            admin, offlist = await admin_site.start()
            async with ModelStandIn(api_key=MODEL_KEY) as standin:
                policy = self.write_policy(self.out / "policy", admin.base, standin.base_url)
                for backend in ("sqlite", "postgresql"):
                    self.runs[backend] = await self.make(backend, policy, standin)
            self.check_same_scenario()
            self.write_readme()
        finally:
            from runtime.tools.browser import close_shared_browser

            await close_shared_browser()
            for site in (admin, offlist):
                if site is not None:
                    await site.stop()
            self.pg.stop()

    # --- the policy ---------------------------------------------------------------------

    def write_policy(self, folder: Path, admin_base: str, model_base: str) -> Path:
        """The bundled policy plus what the scenario needs that it lacks: the admin site for
        browser jobs, and a second copy of the demo sample (`demo-model`, sensitivity public)
        whose code jobs a model route sends to the stand-in, so `demo` keeps direct mode."""
        import yaml

        policy = yaml.safe_load((self.checkout / "policies" / "default.yml").read_text())
        grants = policy["roles"]["engineer"]["grants"]
        grants.append(
            {"id": "engineer.code.demo-model", "job_types": ["code"], "targets": ["demo-model"],
             "tools": ["fs.read", "fs.write", "shell", "git.diff"]}
        )  # fmt: skip
        grants.append(
            {"id": "engineer.browser.admin", "job_types": ["browser"], "targets": ["admin"],
             "tools": ["browser"]}
        )  # fmt: skip
        policy["approvals"].append(
            {"id": "demo-model.merge.review", "job_types": ["code"], "targets": ["demo-model"],
             "actions": ["merge"], "approvers": {"roles": ["demo-approver"]}, "four_eyes": True,
             "expires_after": "72h"}
        )  # fmt: skip
        policy["approvals"].append(
            {"id": "admin.mutations", "job_types": ["browser"], "targets": ["admin"],
             "actions": ["mutate"], "approvers": {"roles": ["demo-approver"]},
             "four_eyes": True, "expires_after": "1h"}
        )  # fmt: skip
        policy["models"]["routes"].insert(
            0,
            {"id": "models.code.standin", "job_types": ["code"], "sensitivity": ["public"],
             "model": f"openai/{MODEL}", "api_base": model_base, "api_key_env": MODEL_KEY_ENV},
        )  # fmt: skip
        policy["targets"]["repos"]["demo-model"] = {
            "path": "{ACP_HOME}/repos/demo-model", "base_branch": "main", "publish": "merge",
            "sample": "demo", "sensitivity": "public",
            "description": "The demo sample again; its code jobs run with a model.",
        }  # fmt: skip
        policy["targets"]["sites"] = {
            "admin": {
                "domains": ["127.0.0.1"],
                "base_url": admin_base,
                "credentials": {"admin-password": "ADMIN_PASSWORD"},
                "description": "tests/admin_site.py, served while the fixture was made",
            }
        }
        policy["limits"]["browser_step_timeout_s"] = 10
        folder.mkdir(parents=True, exist_ok=True)
        header = (
            "# The bundled policy of release 0.1.0 (policies/default.yml at "
            f"{self.commit[:12]}),\n# plus the admin site, the demo-model target and its "
            "model route, as written by\n# scripts/make_upgrade_fixture.py. The URLs were "
            "live only while the fixture was made.\n"
        )
        (folder / "default.yml").write_text(header + yaml.safe_dump(policy, sort_keys=False))
        return folder

    # --- one backend ----------------------------------------------------------------------

    async def make(self, backend: str, policy: Path, standin: Any) -> dict[str, Any]:
        from runtime import browser_jobs
        from runtime.engine import Engine
        from runtime.settings import Settings
        from runtime.tools.browser import close_shared_browser

        home = self.work / f"{backend}-home"
        env = {"ACP_HOME": str(home), "ACP_POLICY_DIR": str(policy)}
        if backend == "postgresql":
            env["ACP_DATABASE_URL"] = self.pg.create_database(ENGINE_DB)
        print(f"[{backend}] populating {home}", flush=True)
        engine = await Engine.open(Settings.from_env(env))
        try:
            scenario = Scenario(engine, standin)
            await scenario.play()
            expected = await snapshot(engine)
        finally:
            await browser_jobs.close_all()
            await close_shared_browser()
            await engine.close()
        expected = {
            "release": RELEASE,
            "commit": self.commit,
            "backend": backend,
            "scenario": scenario.notes,
            **expected,
        }
        self.package(backend, home)
        await self.check(backend, expected)
        (self.out / f"{backend}-expected.json").write_text(json.dumps(expected, indent=1) + "\n")
        print(
            f"[{backend}] {len(expected['jobs'])} jobs, {expected['audit']['events']} events",
            flush=True,
        )
        return expected

    def package(self, backend: str, home: Path) -> None:
        """The home as the upgrade test needs it: no transient directories, one database file
        (SQLite, checkpointed) or none (PostgreSQL: the dump beside it)."""
        import sqlite3

        for transient in ("worktrees", "browser"):
            shutil.rmtree(home / transient, ignore_errors=True)
        if backend == "sqlite":
            db = home / "acp.db"
            conn = sqlite3.connect(db)
            try:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if busy:
                    raise RuntimeError("the WAL checkpoint was blocked: a connection is open")
            finally:
                conn.close()
            left = [p.name for p in home.iterdir() if p.name.startswith("acp.db-")]
            if left:
                raise RuntimeError(f"SQLite left {left} next to acp.db")
        else:
            dump = self.work / "postgresql.sql"
            pg_tool(
                self.pg,
                "pg_dump",
                "--no-owner",
                "--no-privileges",
                "--format=plain",
                "-d",
                ENGINE_DB,
                "-f",
                str(dump),
            )
            gzip_file(dump, self.out / "postgresql.sql.gz")
        tar_home(home, self.out / f"{backend}-home.tar.gz")

    async def check(self, backend: str, expected: dict[str, Any]) -> None:
        """Open what was written, as a test would, with the old code: it must read back the same,
        with none of the variables the jobs needed to run (the DSN, the keys) set."""
        from runtime.engine import Engine
        from runtime.settings import Settings

        root = self.work / f"check-{backend}"
        root.mkdir()
        with tarfile.open(self.out / f"{backend}-home.tar.gz") as tar:
            tar.extractall(root, filter="tar")
        env = {"ACP_HOME": str(root / "home"), "ACP_POLICY_DIR": str(self.out / "policy")}
        if backend == "postgresql":
            env["ACP_DATABASE_URL"] = self.restore("acp_restored")
            same_rows(self.pg, ENGINE_DB, "acp_restored")
        hidden = {k: os.environ.pop(k) for k in (DSN_ENV, MODEL_KEY_ENV, "ADMIN_PASSWORD")}
        try:
            engine = await Engine.open(Settings.from_env(env))
            try:
                again = await snapshot(engine)
            finally:
                await engine.close()
        finally:
            os.environ.update(hidden)
        for key, value in again.items():
            if expected[key] != value:
                raise RuntimeError(f"[{backend}] {key} reads back differently from the fixture")
        if backend == "postgresql":
            self.pg.drop_database("acp_restored")
        shutil.rmtree(root)

    def restore(self, name: str) -> str:
        url = self.pg.create_database(name)
        dump = self.work / "restore.sql"
        with gzip.open(self.out / "postgresql.sql.gz", "rb") as src, dump.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        pg_tool(self.pg, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", name, "-f", str(dump))
        dump.unlink()
        return url

    def check_same_scenario(self) -> None:
        tables = {
            backend: [(j["id"], j["spec"]["job_type"], j["state"]) for j in run["jobs"]]
            for backend, run in self.runs.items()
        }
        if tables["sqlite"] != tables["postgresql"]:
            raise RuntimeError(f"the two backends made different jobs: {tables}")

    # --- the README -------------------------------------------------------------------------

    def write_readme(self) -> None:
        run = self.runs["sqlite"]
        pg_run = self.runs["postgresql"]
        rows = "\n".join(
            f"| {job['id']} | J-{job['id']} | {job['spec']['job_type']} | {job['state']} | "
            f"{job['spec']['requester']} | {job['spec']['origin']} | "
            f"{run['scenario'].get(str(job['id']), '')} |"
            for job in run["jobs"]
        )
        routines = "\n".join(
            f"| {r['id']} | R-{r['id']} | {r['owner']} | {r['schedule']['expression']} | "
            f"{r['state']} | J-{r['created_by_job']} | `` {r['request']} `` |"
            for r in run["routines"]
        )
        text = README.format(
            release=RELEASE,
            commit=self.commit,
            command=self.command,
            jobs=rows,
            routines=routines,
            states=", ".join(run["states"]),
            kinds=", ".join(run["kinds"]),
            sqlite_events=run["audit"]["events"],
            pg_events=pg_run["audit"]["events"],
            refusals="\n".join(
                f"- #{r['seq']} `{r['kind']}`"
                + (f" ({r['job']})" if r["job"] else ", no job")
                + f": {r['error']}: {r['message']}"
                for r in run["refusals"]
            ),
            replica=REPLICA_DB,
            awaiting=", ".join(f"J-{i}" for i in run["jobs_by_state"]["awaiting_approval"]),
            running=", ".join(f"J-{i}" for i in run["jobs_by_state"]["running"]),
            policy_hash=run["policy_hash"],
            model=MODEL,
            dsn_env=DSN_ENV,
            model_key_env=MODEL_KEY_ENV,
        )
        (self.out / "README.md").write_text(text)


class Scenario:
    """The jobs, in order. Each step asserts where the job got to, so a change of behaviour
    in the release's code (or its environment) stops the generation instead of silently
    making different fixtures."""

    def __init__(self, engine: Any, standin: Any) -> None:
        self.engine = engine
        self.standin = standin
        self.notes: dict[str, str] = {}
        self.alice, self.bob, self.carol = (
            engine.actor("cli", p) for p in ("alice", "bob", "carol")
        )

    async def settle(self, job_id: int) -> Any:
        from runtime import browser_jobs
        from runtime.worker import Worker

        worker = Worker(self.engine)
        while await worker.run_once():
            pass
        await browser_jobs.sweep(self.engine)
        return await self.engine.get(job_id)

    def expect(self, job: Any, state: str, how: str | None = None) -> Any:
        if job.state.value != state:
            raise RuntimeError(
                f"{job.job_id} is {job.state.value}, expected {state}: "
                f"{json.dumps(job.result, default=str)[:2000]}"
            )
        if how is not None:
            self.notes[str(job.id)] = how
        return job

    async def refused(self, error: type, call: Any) -> None:
        try:
            await call
        except error:
            return
        raise RuntimeError(f"expected {error.__name__}")

    async def play(self) -> None:
        await self.code_jobs()
        await self.sql_jobs()
        await self.doc_and_browser_jobs()
        await self.routines()
        await self.model_jobs()
        await self.run_scheduler()
        await self.left_pending()

    async def code_jobs(self) -> None:
        from runtime import outbox
        from runtime.errors import ApprovalRefused, BadRequest, PolicyDenied
        from runtime.jobs import Origin

        engine, alice, bob, carol = self.engine, self.alice, self.bob, self.carol
        fix = 'code demo: run `sed -i "s/teh/the/" README.md`'
        job = await engine.submit(fix, alice)
        job = self.expect(await self.settle(job.id), "awaiting_approval")
        await self.refused(ApprovalRefused, engine.approve(job.id, alice))  # four eyes
        await engine.approve(job.id, bob)
        job = self.expect(await self.settle(job.id), "succeeded")
        await self.refused(PolicyDenied, engine.rollback(job.id, carol))
        job = await engine.rollback(job.id, alice)
        self.expect(
            job,
            "rolled_back",
            "direct-mode fix on the bundled `demo` sample; alice's "
            "own approval refused (four eyes, approve.refused), bob approved, merged; "
            "carol's rollback refused (rollback.refused); alice rolled it back",
        )

        slack = engine.actor("slack", "U0ALICE001")
        text = 'code demo: run `echo "Reviewed." >> README.md`'
        door = {"door": "slack", "channel": "C0FIXTURE1", "user": "U0ALICE001"}
        key = "slack:fixture-trigger-0001"
        job = await engine.submit(text, slack, Origin.slack, request_key=key, reply_to=door)
        again = await engine.submit(text, slack, Origin.slack, request_key=key, reply_to=door)
        assert again.id == job.id, "one request key, one job"
        job = self.expect(await self.settle(job.id), "awaiting_approval")
        await outbox.remember_thread(
            engine.db, job.id, "slack", {"channel": "C0FIXTURE1", "ts": "1764633600.000100"}
        )
        job = await engine.reject(job.id, bob, "not needed this week")
        self.expect(
            job,
            "rejected",
            "submitted from Slack (request_key, reply_to: outbox rows, "
            "the first marked delivered; a door thread), sent twice (one job), "
            "rejected by bob with a reason",
        )
        [first, *_] = await outbox.pending(engine.db, "slack")
        await outbox.mark_delivered(engine.db, first.id)

        job = await engine.submit("code demo: run `echo ok`", alice)
        self.expect(
            await self.settle(job.id),
            "succeeded",
            "a step that changes no file: succeeded, nothing to publish",
        )

        job = await engine.submit("code demo: run `ls no-such-file`", alice)
        self.expect(
            await self.settle(job.id),
            "failed",
            "a step that exits non-zero: failed, with its command log",
        )

        job = await engine.submit("code demo: run `true`", carol)
        self.expect(job, "denied", "carol (analyst) has no code grant: denied by the policy")

        job = await engine.submit("fix teh typo in the readme", alice)
        self.expect(job, "needs_clarification")
        job = self.expect(await engine.answer(job.id, alice, "demo"), "needs_clarification")
        job = await engine.answer(job.id, alice, 'sed -i "s/teh/the/" README.md')
        self.expect(job, "queued")
        self.expect(
            await self.settle(job.id),
            "awaiting_approval",
            "no target: asked which (answered `demo`), then which command (answered "
            "with a sed), ran, waits for bob's approval of its merge",
        )

        job = await engine.submit("please look into the slow dashboard", alice)
        self.expect(
            job,
            "needs_clarification",
            "a low-confidence guess and no target: asks what kind of job it is; never answered",
        )

        await self.refused(BadRequest, engine.submit("", alice))
        await self.refused(BadRequest, engine.submit("cod demo: run `true`", alice))

    async def sql_jobs(self) -> None:
        from runtime.errors import SqlWriteRefused

        engine, carol = self.engine, self.carol
        text = "sql payments-replica: SELECT status, count(*) FROM orders GROUP BY 1 ORDER BY 1"
        job = await engine.submit(text, carol)
        self.expect(
            await self.settle(job.id),
            "succeeded",
            "read-only SELECT on the replica: result.txt, result.csv, plan.json",
        )

        job = await engine.submit(
            "sql payments-replica: tables with the most sequential scans", carol
        )
        self.expect(
            await self.settle(job.id), "succeeded", "a standard diagnostic, run without a model"
        )

        await self.refused(
            SqlWriteRefused, engine.submit("sql payments-replica: DELETE FROM orders", carol)
        )

        job = await engine.submit("sql payments-replica: how are the orders doing", carol)
        self.expect(job, "needs_clarification")
        await self.refused(SqlWriteRefused, engine.answer(job.id, carol, "DELETE FROM orders"))
        job = await engine.answer(job.id, carol, "SELECT count(*) AS n FROM orders")
        self.expect(job, "queued")
        self.expect(
            await self.settle(job.id),
            "succeeded",
            "vague: asked for a statement; a DELETE answer refused (answer.refused), "
            "then answered with a SELECT, ran",
        )

        job = await engine.submit("sql payments-replica: SELECT * FROM no_such_table", carol)
        self.expect(
            await self.settle(job.id),
            "failed",
            "a SELECT of a table that does not exist: failed with the server's error",
        )

    async def doc_and_browser_jobs(self) -> None:
        engine, alice, bob = self.engine, self.alice, self.bob
        text = (
            "doc reports: weekly incident summary "
            "`template templates/weekly.md.j2 out/weekly.xlsx incidents.csv`"
        )
        job = await engine.submit(text, alice)
        job = self.expect(await self.settle(job.id), "awaiting_approval")
        await engine.approve(job.id, bob)
        self.expect(
            await self.settle(job.id),
            "succeeded",
            "the bundled `reports` sample's weekly template rendered to a workbook; "
            "document diff and preview reviewed, bob approved, merged",
        )

        text = "browse admin: check user 42 `goto /users/42` `expect #status active` `screenshot`"
        job = await engine.submit(text, alice)
        self.expect(job, "queued")
        self.expect(
            await self.settle(job.id),
            "succeeded",
            "read-only browser steps on tests/admin_site.py: screenshots and a trace",
        )

    async def routines(self) -> None:
        from runtime import routines

        engine, alice, bob, carol = self.engine, self.alice, self.bob, self.carol
        text = (
            'schedule "0 9 * * MON" sql payments-replica: '
            "SELECT status, count(*) FROM orders GROUP BY 1 ORDER BY 1"
        )
        job = await engine.submit(text, carol)
        job = self.expect(await self.settle(job.id), "awaiting_approval")
        await engine.approve(job.id, bob)
        job = self.expect(
            await self.settle(job.id),
            "succeeded",
            "carol proposed routine R-1 (weekly SQL), bob approved, created",
        )
        [first] = [r for r in await routines.routines(engine) if r.created_by_job == job.id]
        assert first.state == "active", first
        fired = await routines.run_now(engine, first.id, carol)
        self.expect(fired, "queued")
        self.expect(
            await self.settle(fired.id),
            "succeeded",
            "R-1 fired by `run now` (a manual firing, origin schedule), ran",
        )

        job = await engine.submit('schedule "0 6 * * *" code demo: run `echo ok`', alice)
        job = self.expect(await self.settle(job.id), "awaiting_approval")
        await engine.approve(job.id, bob)
        job = self.expect(
            await self.settle(job.id),
            "succeeded",
            "alice proposed routine R-2 (daily code), bob approved; then paused",
        )
        [second] = [r for r in await routines.routines(engine) if r.created_by_job == job.id]
        await routines.set_state(engine, second.id, alice, "paused")

        text = 'schedule "30 8 * * *" sql payments-replica: tables with the most sequential scans'
        job = await engine.submit(text, carol)
        self.expect(
            await self.settle(job.id),
            "awaiting_approval",
            "a routine proposal nobody has approved yet",
        )

    async def model_jobs(self) -> None:
        from model_standin import call, say

        from runtime.settings import SAMPLES_DIR

        engine, alice, bob = self.engine, self.alice, self.bob
        fixed = (SAMPLES_DIR / "demo" / "README.md").read_text().replace("teh", "the")
        self.standin.script(
            MODEL,
            call("read_file", path="README.md"),
            call("write_file", path="README.md", content=fixed),
            call("run", command="python3 -m unittest discover -s tests"),
            say("Fixed the typo in README.md; the tests pass."),
        )
        job = await engine.submit("code demo-model: fix the typo in the README", alice)
        self.expect(job, "queued")
        job = self.expect(await self.settle(job.id), "awaiting_approval")
        assert job.model.calls == 4 and job.model.cost_usd > 0, job.model
        await engine.approve(job.id, bob)
        self.expect(
            await self.settle(job.id),
            "succeeded",
            f"a model ({MODEL} on the stand-in, via litellm) read, wrote and tested; "
            "4 model calls with cost, request/response artifacts; bob approved, merged",
        )

        self.standin.script(MODEL, call("ask", question="Which test should be clearer?"))
        job = await engine.submit("code demo-model: make the tests clearer", alice)
        self.expect(await self.settle(job.id), "needs_clarification")
        self.standin.script(MODEL, say("test_mean is already clear; nothing to change."))
        job = await engine.answer(job.id, alice, "test_mean")
        self.expect(job, "queued")
        self.expect(
            await self.settle(job.id),
            "succeeded",
            "the model asked a question (clarification by the model), alice answered, "
            "the model finished without a change",
        )
        if self.standin.pending(MODEL):
            raise RuntimeError("the model stand-in has scripted replies left")

    async def run_scheduler(self) -> None:
        """A short run of the scheduler: APScheduler's job table and the lease row exist in
        the database as they do in a deployment (nothing is due, so nothing fires)."""
        import asyncio

        from runtime.routines import RoutineScheduler

        scheduler = RoutineScheduler(self.engine, tick_s=0.2, instance="fixture-scheduler")
        stop = asyncio.Event()
        task = asyncio.create_task(scheduler.run(stop))
        await asyncio.sleep(1.5)
        stop.set()
        await task

    async def left_pending(self) -> None:
        """Jobs left where a worker would pick them up: no worker runs after this."""
        from runtime.jobs import JobState
        from runtime.worker import Worker

        engine, alice, bob = self.engine, self.alice, self.bob
        approved = await engine.submit("code demo: run `echo approved > approved.txt`", alice)
        approved = self.expect(await self.settle(approved.id), "awaiting_approval")

        job = await engine.submit("code demo: run `echo interrupted > interrupted.txt`", alice)
        worker = Worker(engine)
        await worker.register()  # and never unregisters: its process is gone, as after a crash
        claimed = await worker.claim()
        assert claimed is not None and claimed.id == job.id, claimed
        self.expect(
            claimed,
            "running",
            "claimed by a registered worker that never ran it (phase execute, no "
            "checkout yet); the worker's row stays, as after a crash",
        )

        await engine.approve(approved.id, bob)
        self.expect(
            await engine.get(approved.id),
            "approved",
            "bob approved its merge; no worker has published it yet",
        )

        job = await engine.submit("code demo: run `echo later > later.txt`", alice)
        self.expect(job, "queued", "queued; no worker has claimed it")

        job = await engine.submit("code demo: run `echo never > never.txt`", alice)
        self.expect(job, "queued")
        reason = "cancelled by the requester before it ran"

        async def cancel(conn: Any, fresh: Any) -> Any:
            # 0.1.0 has no cancel command: the state and its transition exist, so the job is
            # cancelled through the engine's own transition (state and audit event together).
            return await engine.transition(
                conn, fresh, JobState.cancelled, actor=alice.label, kind="job.cancelled",
                data={"reason": reason}, result={**fresh.result, "reason": reason},
            )  # fmt: skip

        job = await engine.locked(job.id, cancel)
        self.expect(
            job,
            "cancelled",
            "queued, then cancelled with engine.transition (0.1.0 "
            "has no cancel command; see Monkeypatching below)",
        )


def as_released(job: Any) -> dict[str, Any]:
    """A job record in the shape release 0.1.0 dumped it. Later code reads the same row into
    typed fields: the worker's phase (kept inside `result` in the row) and the pending action
    (a kind's model, stored as the fields that were set); folded back, the two must be equal."""
    dumped = job.model_dump(mode="json")
    if "phase" in dumped:  # this code: the phase is a field, stored in the row's result
        phase = dumped.pop("phase")
        if phase is not None:
            dumped["result"] = {**dumped["result"], "phase": phase}
    pending = getattr(job, "pending_action", None)
    if hasattr(pending, "canonical"):  # this code: the pending action is a kind's model
        dumped["pending_action"] = pending.canonical()
    return dumped


async def snapshot(engine: Any) -> dict[str, Any]:
    """What the old code reads back: the comparison the upgrade test makes."""
    from sqlalchemy import inspect, text

    from runtime import routines

    try:
        from runtime.store import outbox
    except ImportError:  # the release's code (--generate) has it at runtime/outbox.py
        from runtime import outbox  # type: ignore[no-redef]

    listed = await engine.jobs(limit=100_000)
    ids = sorted(job.id for job in listed)
    jobs = [as_released(await engine.get(i)) for i in ids]
    if sorted((as_released(j) for j in listed), key=lambda j: j["id"]) != jobs:
        raise RuntimeError("the job list and engine.get disagree")
    events = await engine.events()
    report = await engine.verify_audit()
    if report.events != len(events) or (events and report.head != events[-1].hash):
        raise RuntimeError(f"verify_audit disagrees with the events read: {report}")
    found = await routines.routines(engine, include_deleted=True)
    firings = {
        r.routine_id: [f.model_dump(mode="json") for f in await routines.history(engine, r.id)]
        for r in found
    }
    refusals = [
        {"seq": e.seq, "kind": e.kind, "job": e.data.get("job"), "error": e.data.get("error"),
         "message": e.data.get("message")}
        for e in events
        if e.kind.endswith(".refused")
    ]  # fmt: skip
    async with engine.db.engine.connect() as conn:
        tables = sorted(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        rows = {
            t: (await conn.execute(text(f'SELECT count(*) FROM "{t}"'))).scalar() for t in tables
        }
    threads = {}
    for job_id in ids:
        address = await outbox.thread_of(engine.db, job_id, "slack")
        if address is not None:
            threads[str(job_id)] = address
    by_state: dict[str, list[int]] = {}
    for job in jobs:
        by_state.setdefault(job["state"], []).append(job["id"])
    return {
        "policy_hash": engine.loaded.sha256,
        "jobs": jobs,
        "jobs_by_state": by_state,
        "states": sorted(by_state),
        "kinds": sorted({job["spec"]["job_type"] for job in jobs}),
        "audit": {
            "events": len(events),
            "last_hash": events[-1].hash if events else None,
            "last_seq": events[-1].seq if events else None,
            "verify": {"ok": True, **report.model_dump(mode="json")},
        },
        "refusals": refusals,
        "events": [
            {"seq": e.seq, "kind": e.kind, "job_id": e.job_id, "actor": e.actor, "hash": e.hash}
            for e in events
        ],
        "routines": [r.model_dump(mode="json") for r in found],
        "firings": firings,
        "outbox_pending": {
            "slack": [i.model_dump(mode="json") for i in await outbox.pending(engine.db, "slack")]
        },
        "door_threads": {"slack": threads},
        "table_rows": rows,
    }


# --- files and tools --------------------------------------------------------------------------


def tar_home(home: Path, dest: Path) -> None:
    """home/ as `home/...` in a gzip'd tar: sorted, owner-less, no timestamp in the gzip."""
    with (
        dest.open("wb") as raw,
        gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in [home, *sorted(home.rglob("*"))]:
            name = "home" if path == home else f"home/{path.relative_to(home)}"
            info = tar.gettarinfo(str(path), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def gzip_file(src: Path, dest: Path) -> None:
    with (
        src.open("rb") as raw,
        dest.open("wb") as out,
        gzip.GzipFile(filename="", fileobj=out, mode="wb", mtime=0, compresslevel=9) as gz,
    ):
        shutil.copyfileobj(raw, gz)


def pg_tool(pg: Any, tool: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    command = [str(pg.bin_dir / tool), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres"]
    done = subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{tool} {shlex.join(args)} failed: {done.stdout}{done.stderr}")
    return done.stdout


def same_rows(pg: Any, original: str, restored: str) -> None:
    """Every table and sequence of the restored dump holds what the original database holds."""

    def psql(database: str, sql: str) -> str:
        return pg_tool(
            pg, "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql
        )

    listing = (
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
        "AND table_type = 'BASE TABLE' ORDER BY 1"
    )
    tables = psql(original, listing).split()
    if psql(restored, listing).split() != tables:
        raise RuntimeError("the restored dump has other tables")
    for table in tables:
        query = f'COPY (SELECT * FROM public."{table}" AS t ORDER BY t::text) TO STDOUT'
        if psql(original, query) != psql(restored, query):
            raise RuntimeError(f"table {table} differs after restoring the dump")
    sequences = psql(
        original, "SELECT sequence_name FROM information_schema.sequences ORDER BY 1"
    ).split()
    for sequence in sequences:
        query = f'SELECT last_value, is_called FROM public."{sequence}"'
        if psql(original, query) != psql(restored, query):
            raise RuntimeError(f"sequence {sequence} differs after restoring the dump")


README = """\
# Databases written by release {release}

Fixtures for the schema-upgrade test: the state of an `acp` deployment made by the code of
release {release}, before versioned migrations existed (the schema came from
`Base.metadata.create_all`). An upgrade test opens them with the new code, migrates them, and
compares what it reads with what the old code read (`*-expected.json`).

- commit: `{commit}`
- made by (from the repository root):

      {command}

`scripts/make_upgrade_fixture.py` unpacks `git archive <commit>` into a temporary directory
and runs itself there as a child process
(`PYTHONPATH=<checkout>:<checkout>/tests`, cwd the checkout, `python -P`, the project's
`.venv/bin/python`, `LITELLM_LOCAL_MODEL_COST_MAP=True`), so every line of `runtime/`, `bot/`
and the test helpers that ran is the release's. The child drives the old `Engine` and `Worker`
in-process, as the release's tests do, with real services on 127.0.0.1 only: a throwaway
PostgreSQL 15 (`tests/pgserver.py`) holding the SQL jobs' replica (database `{replica}`, a table
`orders` of 300 rows, a read-only role) and the PostgreSQL run's own database, the admin site
(`tests/admin_site.py`), and the model stand-in (`tests/model_standin.py`, `{model}`) reached
through litellm. The same scenario runs on SQLite, then on PostgreSQL; the job ids, kinds and
states are the same on both (checked). Rerunning it makes the same jobs; hashes, timestamps,
commit ids of the sample repositories, ports and worker ids differ.

Before writing here, the generator reads its own output back with the old code, with none of
the jobs' variables (DSN, keys, password) set: the SQLite home unpacked, and the dump restored
into a fresh database (every table's rows and every sequence compared with the original first).
Both must equal `*-expected.json`, with `engine.verify_audit()` passing.

## Files

- `sqlite-home.tar.gz`: `home/`, the ACP_HOME of the SQLite run: `acp.db` (WAL checkpointed
  with `PRAGMA wal_checkpoint(TRUNCATE)`, no `-wal`/`-shm`), `artifacts/` (content-addressed;
  `acp audit verify` checks them), `repos/` (the sample repositories `demo`, `demo-model` and
  `reports`, with the job branches, merges and the revert that the records name).
- `postgresql.sql.gz`: `pg_dump --no-owner --no-privileges` (plain SQL, PostgreSQL 15) of the
  PostgreSQL run's database.
- `postgresql-home.tar.gz`: `home/`, that run's ACP_HOME, without a database.
- `sqlite-expected.json`, `postgresql-expected.json`: what the old code read back (below).
- `policy/default.yml`: the policy both runs used, its hash in every job's `policy_hash`:
  `{policy_hash}`.

Transient directories were dropped from the homes: `worktrees/` (empty: every finished run
removed its worktree, and the running job never made one) and `browser/` (the live trace
directory; the trace and screenshots are artifacts).

## Opening them

SQLite:

    mkdir "$TMP/sqlite" && tar -xzf tests/fixtures/db-0.1.0/sqlite-home.tar.gz -C "$TMP/sqlite"
    ACP_HOME=$TMP/sqlite/home
    ACP_POLICY_DIR=<repo>/tests/fixtures/db-0.1.0/policy
    # ACP_DATABASE_URL unset (the default, sqlite+aiosqlite:///$ACP_HOME/acp.db), or exactly that

PostgreSQL:

    # a fresh, empty database on a throwaway server: tests/pgserver.py, pg.create_database(NAME)
    gunzip -c tests/fixtures/db-0.1.0/postgresql.sql.gz > "$TMP/dump.sql"
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p PORT -U postgres -d NAME -f "$TMP/dump.sql"
    mkdir "$TMP/pg" && tar -xzf tests/fixtures/db-0.1.0/postgresql-home.tar.gz -C "$TMP/pg"
    ACP_HOME=$TMP/pg/home
    ACP_POLICY_DIR=<repo>/tests/fixtures/db-0.1.0/policy
    ACP_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:PORT/NAME

Restore the dump with psql (it is plain SQL with `COPY ... FROM stdin` blocks, and pg_dump
15.14+ brackets it in `\\restrict`/`\\unrestrict`, which only psql 15.14+ understands; an older
psql needs those two lines removed). The SQLite database is in WAL mode, as 0.1.0 leaves it
(it sets `journal_mode=WAL` on every connection); everything is in `acp.db` itself.

Nothing else is needed to read the jobs or verify the chain. To run jobs on them afterwards:
`{dsn_env}` (a DSN of a replica with an `orders` table: SQL jobs), `ADMIN_PASSWORD` and
a live admin site at the policy's `base_url` (browser jobs), `{model_key_env}` and a stand-in
at the route's `api_base` (code jobs on `demo-model`). The URLs in the policy were live
only while the fixture was made, so a test that runs such jobs writes its own policy with its
own URLs (the policy hash in the records then differs from the one the jobs were decided
under, as after any policy change). Keep `ACP_HOME` a directory of its own: the repos' paths are
`{{ACP_HOME}}/repos/...`.

Time moves on after the fixture was made: the open approval gates ({awaiting}) expire 72 h
after they were requested, and the running job's worker is long gone. A test that starts a
worker loop (`Worker.run`: recovery, `expire_overdue`) before comparing will see {running}
failed as interrupted and those gates expired; compare first, or call only what reads.

## What is in `*-expected.json`

- `jobs`: every job as `JobRecord.model_dump(mode="json")` from `engine.get(id)`, by id (the list
  API, `engine.jobs()`, returned the same records); `jobs_by_state`, `states`, `kinds`.
- `audit`: the number of events, the last event's seq and hash, and `engine.verify_audit()`
  (`ok`, events, head, artifacts_checked); `events`: seq, kind, job, actor and hash of each;
  `refusals`: each `*.refused` event (seq, kind, job, error, message).
- `routines`: `routines.routines(engine, include_deleted=True)`; `firings`: `routines.history()`
  of each; `outbox_pending`: `outbox.pending(db, "slack")`; `door_threads`: `outbox.thread_of()`.
- `table_rows`: the row count of every table (APScheduler's `apscheduler_jobs` included: the
  scheduler ran for 1.5 s, so its table and the `leases` row exist as in a deployment).
- `scenario`: how each job got to its state (the table below); `policy_hash`, `commit`.

## The jobs

- states present: {states}
- kinds present: {kinds}
- audit events: {sqlite_events} (SQLite), {pg_events} (PostgreSQL)

Refusals on the record (`*.refused` events; a refused request makes no job):

{refusals}

| id | job | kind | state | requester | origin | how it got there |
| --- | --- | --- | --- | --- | --- | --- |
{jobs}

People are the bundled policy's: alice (engineer), bob (engineer and approver), carol (analyst).
Direct mode everywhere except `demo-model`, whose code jobs the route `models.code.standin`
sends to the model.

Routines:

| id | routine | owner | schedule | state | made by | request |
| --- | --- | --- | --- | --- | --- | --- |
{routines}

## Monkeypatching

None of the release's code was changed or patched. One job needed more than its public API:
0.1.0 has a `cancelled` state (and `queued -> cancelled` in its `TRANSITIONS`) but no command
that cancels, so the cancelled job was moved there with the old engine's own
`Engine.locked(job, body)` + `Engine.transition(..., JobState.cancelled, kind="job.cancelled")`,
which writes the state and its audit event in one transaction as every transition does. The
running job was claimed with `Worker.register()` + `Worker.claim()` and never processed.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="where the fixtures go")
    parser.add_argument("--commit", default=COMMIT, help="the release commit (d180665)")
    parser.add_argument("--python", default=str(PYTHON), help="the interpreter for the child")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for the child")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkout", help=argparse.SUPPRESS)
    parser.add_argument("--commit-full", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--command-line", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate:
        return child(args)
    if args.command_line is None:
        shown = [".venv/bin/python", "scripts/make_upgrade_fixture.py", *(argv or sys.argv[1:])]
        args.command_line = shlex.join(shown)
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
