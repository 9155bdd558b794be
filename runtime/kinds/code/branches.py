"""Job branches in the service's mirrors: removed once their job has ended without publishing
them (rejected, expired, cancelled, failed), so no acp/J-n is left behind.

It must never remove the branch of a job that can still publish it (awaiting approval,
approved, running).
"""

from __future__ import annotations

import contextlib
import logging

from runtime.errors import AcpError
from runtime.jobs import TERMINAL_STATES, parse_job_id
from runtime.kinds.base import Housekeeping
from runtime.sandbox import mirror as mirrors
from runtime.sandbox import worktree as wt

log = logging.getLogger(__name__)


async def sweep_job_branches(house: Housekeeping) -> int:
    """Delete the branches of ended jobs in every mirror; how many went."""
    root = house.settings.home / "mirrors"
    if not root.is_dir():
        return 0
    removed = 0
    for mirror in sorted(root.glob("*.git")):
        try:
            names = await mirrors.branches(mirror, wt.BRANCH_PREFIX)
        except AcpError:
            continue
        for name in names:
            job_name = name.removeprefix(wt.BRANCH_PREFIX)
            if "-" not in job_name or job_name.count("-") > 1:
                continue  # not acp/J-n (a replay's branch is removed by the replay)
            with contextlib.suppress(AcpError, ValueError):
                job = await house.job(parse_job_id(job_name))
                if job.state in TERMINAL_STATES and await mirrors.delete_branch(mirror, name):
                    removed += 1
                    log.info("removed %s of ended job %s", name, job.job_id)
    return removed
