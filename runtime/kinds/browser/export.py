"""A browser job's path as a plain Playwright test, to run in CI instead of through an agent.

The script repeats the steps the job took, in order, asserting after each one the URL the job
landed on, plus every `expect` step as a Playwright assertion. It runs with plain Python or
under pytest. Credentials are read from the environment variables the policy names (never
written into the script); BASE_URL points it at another instance of the site.
"""

from __future__ import annotations

from runtime.errors import InvalidTransition
from runtime.jobs import JobRecord, JobState, JobType
from runtime.kinds.browser.progress import BrowserProgress
from runtime.kinds.browser.steps import parse_step
from runtime.policy import SiteTarget
from runtime.tools.browser import CHROMIUM_ARGS

HEADER = '''"""Playwright test exported from {job_id} by `acp export-test` (agent-control-plane).

Request: {request}
Site: {site} (recorded at {start})
{mutations}
Run it:  python {filename}    or    pytest {filename}
Against another instance:  BASE_URL=https://staging.example.com python {filename}
Chromium: Playwright's own browser, or the one at $ACP_CHROMIUM (default /usr/bin/chromium).
"""

import os

from playwright.sync_api import expect, sync_playwright

BASE_URL = os.environ.get("BASE_URL", {start!r}).rstrip("/")
CHROMIUM_ARGS = {args!r}


def _executable():
    path = os.environ.get("ACP_CHROMIUM", "/usr/bin/chromium")
    return path if os.path.exists(path) else None


def _url(path):
    return BASE_URL + path


'''

FOOTER = """

def {test_name}():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_executable(), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.set_default_timeout(15_000)
            page = context.new_page()
            page.on("dialog", lambda dialog: dialog.accept())  # approved in {job_id}
            run_path(page)
        finally:
            browser.close()


if __name__ == "__main__":
    {test_name}()
    print("{job_id} path: passed")
"""


def _py(value: str) -> str:
    return repr(value)


def _where(site: SiteTarget, url: str) -> str:
    """A recorded URL as code: relative to BASE_URL when it is on the site's base."""
    base = site.start_url()
    if url == base or url.startswith(base + "/") or url.startswith(base + "?"):
        return f"_url({_py(url[len(base) :])})"
    return _py(url)


def export_test(job: JobRecord, site: SiteTarget) -> str:
    """The script for a succeeded browser job (a pure function of the record and the site)."""
    if job.spec.job_type is not JobType.browser:
        raise InvalidTransition(
            f"{job.job_id} is a {job.spec.job_type.value} job; only browser jobs export a test"
        )
    if job.state is not JobState.succeeded:
        raise InvalidTransition(
            f"{job.job_id} is {job.state.value}; only a browser job that succeeded has a path "
            "worth repeating",
            hint="run the path to the end (approving its actions), then export it",
        )
    progress = BrowserProgress.of(job)
    done, landed = progress.done, progress.landed
    body = ["def run_path(page):"]
    for index, line in enumerate(done):
        step = parse_step(line)
        args = step.args
        body.append(f"    # step {index + 1}: {line}")
        if step.verb == "goto":
            target = args[0] if "://" in args[0] else site.start_url() + "/" + args[0].lstrip("/")
            body.append(f"    page.goto({_where(site, target)})")
        elif step.verb == "click":
            body.append(f"    page.locator({_py(args[0])}).first.click()")
        elif step.verb == "fill" and step.secret is not None:
            env = site.credentials.get(step.secret, step.secret.upper().replace("-", "_"))
            body.append(f"    page.locator({_py(args[0])}).first.fill(os.environ[{_py(env)}])")
        elif step.verb == "fill":
            body.append(f"    page.locator({_py(args[0])}).first.fill({_py(args[1])})")
        elif step.verb == "select":
            body.append(f"    page.locator({_py(args[0])}).first.select_option({_py(args[1])})")
        elif step.verb == "wait":
            if args[0].isdigit():
                body.append(f"    page.wait_for_timeout({int(args[0])})")
            else:
                body.append(f"    page.wait_for_selector({_py(args[0])})")
        elif step.verb == "expect":
            locator = f"page.locator({_py(args[0])}).first"
            if len(args) > 1:
                body.append(f"    expect({locator}).to_contain_text({_py(args[1])})")
            else:
                body.append(f"    expect({locator}).to_be_visible()")
        else:
            body.append("    page.screenshot()")
        if index < len(landed):
            body.append(f"    expect(page).to_have_url({_where(site, landed[index])})")
    if not done:
        body.append("    pass")
    mutations = [
        e for e in job.approvals if e.decision == "approved" and e.action == "mutate"
    ]  # fmt: skip
    note = (
        f"It performs the {len(mutations)} mutation(s) approved in {job.job_id} "
        "(approved by " + ", ".join(sorted({m.decided_by or "?" for m in mutations})) + "): "
        "run it against a test instance.\n"
        if mutations
        else "It only reads: the job made no change.\n"
    )
    filename = default_filename(job)
    header = HEADER.format(
        job_id=job.job_id,
        request=job.prompt.replace('"""', "'''").replace("\\", "\\\\")[:300],
        site=job.spec.target,
        start=site.start_url(),
        mutations=note,
        filename=filename,
        args=CHROMIUM_ARGS,
    )
    footer = FOOTER.format(test_name=filename.removesuffix(".py"), job_id=job.job_id)
    return header + "\n".join(body) + "\n" + footer


def default_filename(job: JobRecord) -> str:
    return f"test_{job.job_id.lower().replace('-', '_')}.py"
