"""One worker's pass over a browser job: the session it drives, the steps it has taken, and
what it leaves on the chain (a screenshot and an event per step, the trace parts).

Direct mode (direct.py) and model mode (model.py) take steps through the job's toolbox
(tools.py), whose tools take them here (`Run.take`); a pause
(pause.py) and an ending (endings.py) read what the pass has recorded here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runtime.errors import AcpError, UnknownTarget
from runtime.jobs import ArtifactRef, JobRecord
from runtime.kinds.base import JobContext
from runtime.kinds.browser import live
from runtime.kinds.browser.progress import BrowserProgress
from runtime.kinds.browser.steps import BrowserStep
from runtime.secrets import redact
from runtime.tools.browser import BrowserGrant, BrowserSession

if TYPE_CHECKING:
    from runtime.policy import SiteTarget
    from runtime.toolbox import Toolbox


@dataclass
class Run:
    """One worker's pass over a job: where it is, what it has left on the chain."""

    ctx: JobContext
    site: SiteTarget
    session: BrowserSession
    secrets: dict[str, str]
    artifacts: list[ArtifactRef] = field(default_factory=list)
    done: list[str] = field(default_factory=list)  # step lines taken, in order
    recorded: int = 0  # session.steps already logged
    segment: int = 1  # trace part number
    mutations: int = 0
    landed: list[str] = field(default_factory=list)  # the URL after each step taken
    _toolbox: Toolbox | None = None

    @property
    def job(self) -> JobRecord:
        return self.ctx.job

    @property
    def toolbox(self) -> Toolbox:
        """The job's tools over this pass's browser (runtime.kinds.browser.tools): every step,
        a person's or the model's, is authorized against the grant there."""
        if self._toolbox is None:
            self._toolbox = self.ctx.toolbox(self)
        return self._toolbox

    @classmethod
    async def start(cls, ctx: JobContext, site: SiteTarget, secrets: dict[str, str]) -> Run:
        """A fresh, governed browser context for the job, closed when the pass ends unless
        the job pauses on it."""
        job = ctx.job
        grant = BrowserGrant(domains=site.domains, allow_downloads=site.allow_downloads)
        session = await BrowserSession.start(
            grant,
            trace_dir=ctx.settings.home / "browser" / job.job_id,
            step_timeout_s=ctx.limits.browser_step_timeout_s,
        )
        live.opened(session)
        await ctx.recorder.log(
            "browser.session_started",
            {"site": job.spec.target, "domains": site.domains, "start_url": site.start_url(),
             "downloads": site.allow_downloads, "credentials": sorted(secrets)},
        )  # fmt: skip
        return cls(ctx, site, session, secrets, artifacts=list(job.artifacts))

    def took(self, line: str) -> None:
        self.done.append(line)
        self.landed.append(self.session.page.url)

    def progress(self) -> BrowserProgress:
        """The job's progress as the pass leaves it: what it kept before, and the steps."""
        before = BrowserProgress.of(self.job)
        return before.model_copy(
            update={"done": self.done, "landed": self.landed, "mutations": self.mutations}
        )

    async def take(self, step: BrowserStep) -> None:
        """One step in the session (MutationPending when it would change data)."""
        session, args = self.session, step.args
        if step.verb == "goto":
            await session.goto(site_url(self.site, args[0]))
        elif step.verb == "click":
            await session.click(args[0])
        elif step.verb == "fill" and step.secret is not None:
            await session.fill_secret(args[0], self.secrets[step.secret])
        elif step.verb == "fill":
            await session.fill(args[0], args[1])
        elif step.verb == "select":
            await session.select(args[0], args[1])
        elif step.verb == "wait":
            await session.wait(float(args[0]) if args[0].isdigit() else args[0])
        elif step.verb == "expect":
            await session.expect(args[0], args[1] if len(args) > 1 else None)
        else:
            await session.screenshot()

    async def record(self) -> None:
        """Log each step the session took since the last call, with its screenshot."""
        session, recorder = self.session, self.ctx.recorder

        def clean(text: str) -> str:
            return redact(session.scrub(text))

        for result in session.steps[self.recorded :]:
            shot = session.screenshot_bytes.pop(result.screenshot_sha256 or "", None)
            refs: tuple[str, ...] = ()
            if shot is not None:
                ref = recorder.put(
                    f"step-{result.index + 1:02d}-{result.action}.png", shot, "image/png"
                )
                self.artifacts.append(ref)
                refs = (ref.sha256,)
            await recorder.log(
                "browser.step",
                {"index": result.index + 1, "action": result.action,
                 "target": clean(result.target or "")[:500], "url": clean(result.url)[:500],
                 "ok": result.ok, "detail": clean(result.detail)[:1000]},
                artifacts=refs,
            )  # fmt: skip
        self.recorded = len(session.steps)
        for refusal in session.refused:
            if refusal.get("logged"):
                continue
            refusal["logged"] = True
            await recorder.log(
                "tool.refused",
                {"tool": "browser", "kind": refusal["kind"], "url": clean(refusal["url"])[:500],
                 "reason": refusal["reason"]},
            )  # fmt: skip

    async def save_trace(self, *, final: bool) -> ArtifactRef:
        """The trace since the last part (all of it when the session ends), on the chain."""
        name = f"trace-{self.segment}.zip"
        if final and self.segment == 1:
            name = "trace.zip"
        path = await (self.session.stop(name) if final else self.session.save_trace(name))
        ref = self.ctx.recorder.put(name, path.read_bytes(), "application/zip")
        path.unlink(missing_ok=True)
        self.artifacts.append(ref)
        self.segment += 1
        await self.ctx.recorder.log(
            "artifact.created",
            {"name": name, "kind": "playwright-trace", "open_with": "playwright show-trace"},
            artifacts=(ref.sha256,),
        )
        return ref


def site_of(ctx: JobContext) -> SiteTarget:
    """The job's site, as the policy has it now."""
    if ctx.target is None:
        raise UnknownTarget(
            f"the site '{ctx.job.spec.target}' is no longer in the policy",
            hint="the policy's targets.sites lists the sites browser jobs may visit",
        )
    return ctx.target


def site_url(site: SiteTarget, where: str) -> str:
    if "://" in where or where.startswith(("data:", "javascript:", "about:", "blob:")):
        return where  # the session refuses what the grant does not allow
    return site.start_url() + "/" + where.lstrip("/")


def secrets_for(site: SiteTarget, name: str, steps: list[BrowserStep]) -> dict[str, str]:
    """The credential values the steps fill, read from the environment the policy names."""
    values: dict[str, str] = {}
    for step in steps:
        secret = step.secret
        if secret is None or secret in values:
            continue
        env = site.credentials.get(secret)
        if env is None:
            known = ", ".join(sorted(site.credentials)) or "none"
            raise AcpError(
                f"site '{name}' has no credential named '{secret}' (known: {known})",
                hint="the policy's targets.sites.<site>.credentials lists them",
            )
        value = os.environ.get(env)
        if not value:
            raise AcpError(
                f"the credential '{secret}' for '{name}' is not set: the service needs the "
                f"environment variable {env}"
            )
        values[secret] = value
    return values
