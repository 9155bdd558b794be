"""A simulation report (runtime.policy.simulate) as text: the header, jobs per change and rule,
then each change with its first jobs. What `acp policy simulate` prints and what a policy job
keeps as its simulation.txt. Pure: formats a report's JSON form.
"""

from __future__ import annotations

from typing import Any

SHOWN_JOBS = 20
KIND_WORDS = {
    "effect": "effect",
    "approval_added": "gate added",
    "approval_removed": "gate removed",
    "approvers": "approvers",
    "model": "model route",
    "tools": "tools",
    "network": "network",
}


def render(report: dict[str, Any]) -> str:
    """The report as text: header, counts per change and rule, then each change's jobs."""
    since_at = str(report.get("since_at") or "")[:16].replace("T", " ")
    window = f"since {since_at} UTC ({report.get('since')})" if since_at else "ever"
    lines = [
        f"proposed policy {report['proposed_hash'][:12]} against {report['in_force_hash'][:12]}"
        f" in force, on the jobs recorded {window}",
        f"  jobs considered : {report['jobs_considered']:,}",
        f"  changed         : {report['jobs_changed']:,}",
        f"  not re-decided  : {report['jobs_skipped']:,} (not decided from a request: "
        "routine changes, policy changes)",
    ]
    changes = report.get("changes") or []
    if not changes:
        lines.append("no recorded job would be decided differently (nothing was run or changed)")
        return "\n".join(lines)
    counts = report.get("counts") or []
    rule_width = max([len("rule"), *(len(c["rule"]) for c in counts)])
    lines += ["", f"  {'change':<13} {'rule':<{rule_width}} {'jobs':>8}"]
    for count in counts:
        kind = KIND_WORDS.get(count["kind"], count["kind"])
        lines.append(f"  {kind:<13} {count['rule']:<{rule_width}} {count['jobs']:>8,}")
    for change in changes:
        jobs = change["jobs"]
        kind = KIND_WORDS.get(change["kind"], change["kind"])
        many = "job" if len(jobs) == 1 else "jobs"
        lines += ["", f"{kind}: {change['detail']} (rule {change['rule']}): {len(jobs):,} {many}"]
        shown = ", ".join(jobs[:SHOWN_JOBS])
        more = f" +{len(jobs) - SHOWN_JOBS:,} more" if len(jobs) > SHOWN_JOBS else ""
        lines.append(f"  {shown}{more}")
    lines += ["", "nothing was run or changed; `acp policy simulate --json` gives every job id"]
    return "\n".join(lines)
