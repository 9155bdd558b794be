"""The policy: YAML files under policies/ as typed data, and the pure functions that decide.

`decide()` and `decide_approval()` never do I/O and never raise for a refusal: they return a
Decision with human-readable reasons and the ids of the rules they used. Deny by default.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runtime.errors import PolicyFileError
from runtime.jobs import MUTATING_TYPES, TYPE_TOOLS, JobType, Origin

Door = Literal["cli", "slack", "console"]
Sensitivity = Literal["public", "internal", "confidential", "restricted"]

# --- the policy file's schema ----------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Identities(_Strict):
    cli: list[str] = Field(default_factory=list)
    slack: list[str] = Field(default_factory=list)
    console: list[str] = Field(default_factory=list)


class Person(_Strict):
    display_name: str | None = None
    team: str | None = None
    roles: list[str] = Field(default_factory=list)
    identities: Identities = Field(default_factory=Identities)


class Grant(_Strict):
    id: str
    job_types: list[JobType]
    targets: list[str] = Field(description="target names; '*' and shell globs allowed")
    tools: list[str] = Field(default_factory=list)


class Role(_Strict):
    description: str = ""
    grants: list[Grant] = Field(default_factory=list)


class ApproverSet(_Strict):
    people: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)


class ApprovalRule(_Strict):
    id: str
    job_types: list[JobType] = Field(default_factory=list, description="empty: every type")
    targets: list[str] = Field(default_factory=lambda: ["*"])
    actions: list[str]
    approvers: ApproverSet
    four_eyes: bool = True
    expires_after: str | None = Field(None, description="e.g. 30m, 72h, 7d; empty: never")
    high_risk: bool = False

    @field_validator("expires_after")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class ClarificationRules(_Strict):
    confidence_threshold: float = Field(0.75, ge=0.0, le=1.0)


class ModelEndpoint(_Strict):
    """One model a route may call, with the base URL and key that go to it and to no other."""

    model: str = Field(description="a litellm model string")
    api_base: str | None = Field(None, description="the provider's URL, if not its default")
    api_key_env: str | None = Field(
        None, description="NAME of the environment variable holding its key; never the key"
    )


class ModelRoute(_Strict):
    id: str
    job_types: list[JobType] = Field(default_factory=list, description="empty: every type")
    risk: list[Literal["low", "medium", "high"]] = Field(default_factory=list)
    origins: list[Origin] = Field(default_factory=list)
    sensitivity: list[Sensitivity] = Field(
        default_factory=list, description="data sensitivity of the target; empty: any"
    )
    model: str = Field(description="'direct' (no model) or a litellm model string")
    fallbacks: list[str | ModelEndpoint] = Field(
        default_factory=list,
        description="tried in order on rate limits and provider errors. A bare model string of "
        "the route's own provider is called with the route's api_base and key; of another "
        "provider, with that provider's defaults (never the route's key). Write "
        "{model, api_base, api_key_env} to give a fallback credentials of its own.",
    )
    api_base: str | None = Field(None, description="the provider's URL, if not its default")
    api_key_env: str | None = Field(
        None, description="NAME of the environment variable holding the key; never the key"
    )


class Budgets(_Strict):
    per_job_usd: float | None = Field(None, ge=0)
    per_team_usd: float | None = Field(None, ge=0, description="per team and UTC day")


class Models(_Strict):
    routes: list[ModelRoute] = Field(default_factory=list)
    budgets: Budgets = Field(default_factory=Budgets)

    def route(self, rule_id: str | None) -> ModelRoute | None:
        return next((r for r in self.routes if r.id == rule_id), None)


class RepoTarget(_Strict):
    path: str = Field(description="local path; {ACP_HOME} is replaced by the service's home")
    base_branch: str = "main"
    publish: Literal["merge", "push"] = "merge"
    remote: str | None = None
    remote_branch: str | None = None
    sample: str | None = Field(None, description="bundled sample to create the repo from")
    production: bool = False
    sensitivity: Sensitivity = "internal"
    description: str = ""


class DatabaseTarget(_Strict):
    dsn_env: str = Field(description="NAME of the environment variable holding the DSN")
    statement_timeout_ms: int = Field(5_000, gt=0)
    lock_timeout_ms: int = Field(1_000, gt=0)
    idle_in_transaction_timeout_ms: int = Field(10_000, gt=0)
    row_cap: int = Field(1_000, gt=0)
    allow_explain_analyze: bool = False
    mask_columns: list[str] = Field(default_factory=list, description="shown as *** everywhere")
    primary_for_diagnostics: bool = Field(
        False, description="allow a primary whose role can write (read-only transaction still)"
    )
    production: bool = False
    sensitivity: Sensitivity = "internal"
    description: str = ""


class SiteTarget(_Strict):
    domains: list[str] = Field(
        min_length=1, description="hosts the browser may reach: exact or '*.example.com'"
    )
    base_url: str | None = Field(
        None, description="where relative goto steps start; default: https:// and the first domain"
    )
    credentials: dict[str, str] = Field(
        default_factory=dict,
        description="secret name (as steps use it: secret:NAME) -> NAME of the environment "
        "variable holding it; the runtime fills it, the model never sees it",
    )
    allow_downloads: bool = False
    production: bool = False
    sensitivity: Sensitivity = "internal"
    description: str = ""

    def start_url(self) -> str:
        return (self.base_url or f"https://{self.domains[0].removeprefix('*.')}").rstrip("/")


class Targets(_Strict):
    repos: dict[str, RepoTarget] = Field(default_factory=dict)
    databases: dict[str, DatabaseTarget] = Field(default_factory=dict)
    sites: dict[str, SiteTarget] = Field(default_factory=dict)


class Limits(_Strict):
    max_request_chars: int = 8_000
    command_timeout_s: float = 300.0
    output_cap_bytes: int = 256_000
    agent_max_steps: int = Field(30, ge=1)
    agent_time_limit_s: float = Field(900.0, gt=0)
    browser_step_timeout_s: float = Field(15.0, gt=0, description="per browser step")
    job_time_limit_s: float = Field(
        3600.0,
        gt=0,
        description="wall clock for one worker pass over a job (run, resume or publish); past "
        "it the pass is cancelled, the job fails with the reason and the worker goes on",
    )
    doc_max_bytes: int = Field(
        20 * 1024 * 1024,
        gt=0,
        description="documents larger than this are not reviewed or published",
    )


class UnattendedApprovals(_Strict):
    """What happens when a routine's job reaches an approval gate and nobody decides."""

    expires_after: str = Field("24h", description="how long a routine's gate waits (30m, 24h)")
    on_expiry: Literal["reject", "escalate"] = "reject"
    escalate_to: list[str] = Field(
        default_factory=list, description="people asked once more, for as long again"
    )

    @field_validator("expires_after")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


class DeclaredRoutine(_Strict):
    """A routine declared in the policy (reviewed like any policy change)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][\w.\-]*$")
    owner: str
    schedule: str = Field(description="cron (5 fields) or 'every 15m'")
    timezone: str = "UTC"
    request: str
    misfire: Literal["skip", "run_once"] = "skip"
    slack_channel: str | None = None


class Routines(_Strict):
    require_approval: bool = Field(
        True, description="creating or deleting a routine stops at an approval gate"
    )
    timezone: str = "UTC"
    misfire_grace_s: int = Field(
        60, ge=1, description="seconds; a run later than this is a misfire (skip or run once)"
    )
    unattended: UnattendedApprovals = Field(default_factory=UnattendedApprovals)
    declared: list[DeclaredRoutine] = Field(default_factory=list)


class Policy(_Strict):
    version: int = 1
    people: dict[str, Person] = Field(default_factory=dict)
    roles: dict[str, Role] = Field(default_factory=dict)
    approvals: list[ApprovalRule] = Field(default_factory=list)
    clarification: ClarificationRules = Field(default_factory=ClarificationRules)
    models: Models = Field(default_factory=Models)
    targets: Targets = Field(default_factory=Targets)
    limits: Limits = Field(default_factory=Limits)
    routines: Routines = Field(default_factory=Routines)

    def targets_for(self, job_type: JobType) -> dict[str, Any]:
        if job_type in (JobType.code, JobType.doc):
            return dict(self.targets.repos)
        if job_type is JobType.sql:
            return dict(self.targets.databases)
        if job_type is JobType.browser:
            return dict(self.targets.sites)
        return {
            **self.targets.repos,
            **self.targets.databases,
            **self.targets.sites,
        }

    def all_target_names(self) -> list[str]:
        return sorted({*self.targets.repos, *self.targets.databases, *self.targets.sites})

    def person_for(self, door: Door, identity: str) -> str | None:
        """The person a door's identity (terminal user, Slack user id) belongs to."""
        if identity in self.people and door == "cli":
            return identity
        for name, person in self.people.items():
            if identity in getattr(person.identities, door):
                return name
        return None

    def approvers_for(self, rule: ApprovalRule) -> list[str]:
        names = set(rule.approvers.people)
        for name, person in self.people.items():
            if set(person.roles) & set(rule.approvers.roles):
                names.add(name)
        return sorted(names)


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    sha256: str
    files: tuple[Path, ...]
    lines: dict[tuple[Any, ...], tuple[str, int]] = field(default_factory=dict, compare=False)


# --- loading, with file and line in every error ----------------------------

_MERGED_MAPPINGS = ("people", "roles", "targets", "clarification", "models", "limits", "routines")


def load_policy(directory: Path) -> LoadedPolicy:
    """Read every *.yml / *.yaml in `directory`; a malformed file fails with file and line."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PolicyFileError(
            f"policy directory {directory} does not exist",
            hint="set ACP_POLICY_DIR to a folder of policy YAML files",
        )
    files = sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])
    if not files:
        raise PolicyFileError(f"no policy files (*.yml) in {directory}")
    digest = hashlib.sha256()
    merged: dict[str, Any] = {}
    lines: dict[tuple[Any, ...], tuple[str, int]] = {}
    owner: dict[tuple[str, ...], str] = {}
    for path in files:
        raw = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + raw + b"\0")
        data, file_lines = _parse_yaml(path, raw)
        _validate_fragment(path, data, file_lines)
        _merge(path, data, merged, owner, file_lines)
        for key, where in file_lines.items():
            if key and key[0] == "approvals" and len(key) > 1 and isinstance(key[1], int):
                offset = len(merged.get("approvals", [])) - len(data.get("approvals", []))
                lines[("approvals", key[1] + offset, *key[2:])] = where
            else:
                lines.setdefault(key, where)
    try:
        policy = Policy.model_validate(merged)
    except ValidationError as exc:
        raise _validation_error(exc, lines, default=str(files[0])) from None
    loaded = LoadedPolicy(policy=policy, sha256=digest.hexdigest(), files=tuple(files), lines=lines)
    _check_references(loaded)
    return loaded


def _parse_yaml(
    path: Path, raw: bytes
) -> tuple[dict[str, Any], dict[tuple[Any, ...], tuple[str, int]]]:
    try:
        text = raw.decode("utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except UnicodeDecodeError as exc:
        raise PolicyFileError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise PolicyFileError(f"{path}:{line}: YAML syntax error: {exc.problem}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise PolicyFileError(f"{path}:1: a policy file must be a mapping of sections")
    file_lines: dict[tuple[Any, ...], tuple[str, int]] = {}
    _walk_lines(node, (), str(path), file_lines)
    return data, file_lines


def _walk_lines(node: yaml.Node, key: tuple[Any, ...], path: str, out: dict) -> None:
    out[key] = (path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k_node, v_node in node.value:
            out[(*key, k_node.value)] = (path, k_node.start_mark.line + 1)
            _walk_lines(v_node, (*key, k_node.value), path, out)
            out[(*key, k_node.value)] = (path, k_node.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk_lines(item, (*key, index), path, out)


def _validate_fragment(path: Path, data: dict[str, Any], lines: dict) -> None:
    unknown = [k for k in data if k not in Policy.model_fields]
    if unknown:
        line = lines.get((unknown[0],), (str(path), 1))[1]
        known = ", ".join(Policy.model_fields)
        raise PolicyFileError(
            f"{path}:{line}: unknown section '{unknown[0]}'", hint=f"sections are: {known}"
        )
    try:
        Policy.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, lines, default=str(path)) from None


def _validation_error(exc: ValidationError, lines: dict, *, default: str) -> PolicyFileError:
    first = exc.errors()[0]
    loc = tuple(first["loc"])
    where = None
    for cut in range(len(loc), -1, -1):
        where = lines.get(loc[:cut])
        if where:
            break
    file, line = where or (default, 1)
    dotted = ".".join(str(p) for p in loc)
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = f"unknown field '{loc[-1]}'"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return PolicyFileError(f"{file}:{line}: {dotted}: {message}{more}")


def _merge(
    path: Path, data: dict[str, Any], merged: dict[str, Any], owner: dict, lines: dict
) -> None:
    for section, value in data.items():
        if section == "approvals":
            merged.setdefault("approvals", []).extend(value or [])
        elif section in _MERGED_MAPPINGS and isinstance(value, dict):
            into = merged.setdefault(section, {})
            for key, item in value.items():
                if section == "targets" and isinstance(item, dict):
                    bucket = into.setdefault(key, {})
                    for name, target in item.items():
                        _claim(owner, (section, key, name), path, lines)
                        bucket[name] = target
                else:
                    _claim(owner, (section, key), path, lines)
                    into[key] = item
        else:
            _claim(owner, (section,), path, lines)
            merged[section] = value


def _claim(owner: dict, key: tuple[str, ...], path: Path, lines: dict) -> None:
    if key in owner and owner[key] != str(path):
        dotted = ".".join(key)
        line = lines.get(key, (str(path), 1))[1]
        raise PolicyFileError(f"{path}:{line}: '{dotted}' is also defined in {owner[key]}")
    owner[key] = str(path)


def _check_references(loaded: LoadedPolicy) -> None:
    policy = loaded.policy

    def fail(key: tuple[Any, ...], message: str) -> PolicyFileError:
        for cut in range(len(key), -1, -1):
            if key[:cut] in loaded.lines:
                file, line = loaded.lines[key[:cut]]
                return PolicyFileError(f"{file}:{line}: {message}")
        return PolicyFileError(message)

    seen: dict[tuple[str, str], str] = {}
    for name, person in policy.people.items():
        for index, role in enumerate(person.roles):
            if role not in policy.roles:
                raise fail(
                    ("people", name, "roles", index), f"person '{name}' has unknown role '{role}'"
                )
        for door in ("cli", "slack", "console"):
            for identity in getattr(person.identities, door):
                if (door, identity) in seen:
                    raise fail(
                        ("people", name, "identities", door),
                        f"{door} identity '{identity}' belongs to both '{seen[(door, identity)]}' "
                        f"and '{name}'",
                    )
                seen[(door, identity)] = name
    grant_ids: set[str] = set()
    for role_name, role in policy.roles.items():
        for index, grant in enumerate(role.grants):
            if grant.id in grant_ids:
                raise fail(
                    ("roles", role_name, "grants", index), f"duplicate grant id '{grant.id}'"
                )
            grant_ids.add(grant.id)
    for index, rule in enumerate(policy.approvals):
        for person in rule.approvers.people:
            if person not in policy.people:
                raise fail(
                    ("approvals", index, "approvers", "people"),
                    f"approval rule '{rule.id}' names unknown person '{person}'",
                )
        for role in rule.approvers.roles:
            if role not in policy.roles:
                raise fail(
                    ("approvals", index, "approvers", "roles"),
                    f"approval rule '{rule.id}' names unknown role '{role}'",
                )

    for name, site in policy.targets.sites.items():
        if site.base_url is not None:
            parts = urlsplit(site.base_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise fail(
                    ("targets", "sites", name, "base_url"),
                    f"site '{name}': base_url '{site.base_url}' is not an http(s) URL",
                )
            if not any(fnmatch.fnmatchcase(parts.hostname, d) for d in site.domains):
                raise fail(
                    ("targets", "sites", name, "base_url"),
                    f"site '{name}': base_url host '{parts.hostname}' is not in its domains "
                    f"({', '.join(site.domains)})",
                )
        for secret, env in site.credentials.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
                raise fail(
                    ("targets", "sites", name, "credentials", secret),
                    f"site '{name}': credential '{secret}' must name an environment variable "
                    f"(e.g. ADMIN_PASSWORD), not hold a value",
                )


def parse_duration(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text)
    if not match:
        raise ValueError(f"'{text}' is not a duration like 30m, 72h or 7d")
    amount, unit = int(match.group(1)), match.group(2)
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: amount})


# --- deciding ----------------------------------------------------------------


class RequestFacts(BaseModel):
    """What the policy needs to know about a request; built by the engine from a JobSpec."""

    person: str | None
    job_type: JobType | None
    target: str | None
    tools: list[str] = Field(default_factory=list)
    origin: Origin = Origin.cli
    confidence: float = 1.0
    has_explicit_steps: bool = True


class ApprovalGate(BaseModel):
    action: str
    rule_id: str
    approvers: list[str]
    four_eyes: bool
    expires_after_s: float | None = None
    high_risk: bool = False


class Decision(BaseModel):
    effect: Literal["allow", "deny", "needs_clarification"]
    reasons: list[str] = Field(default_factory=list)
    rule_ids: list[str] = Field(default_factory=list)
    tools_granted: list[str] = Field(default_factory=list)
    approvals: list[ApprovalGate] = Field(default_factory=list)
    model: str | None = None
    model_rule: str | None = None
    risk: Literal["low", "medium", "high"] | None = None
    clarify_field: Literal["job_type", "target", "commands"] | None = None
    question: str | None = None
    options: list[str] = Field(default_factory=list)

    @property
    def approval_required_for(self) -> list[str]:
        return [gate.action for gate in self.approvals]


def _matches(name: str | None, patterns: Iterable[str]) -> bool:
    return name is not None and any(fnmatch.fnmatchcase(name, p) for p in patterns)


def risk_of(
    policy: Policy, job_type: JobType, target: str | None
) -> Literal["low", "medium", "high"]:
    target_def = policy.targets_for(job_type).get(target or "")
    production = bool(getattr(target_def, "production", False))
    if job_type not in MUTATING_TYPES:
        return "medium" if production else "low"
    return "high" if production else "medium"


def decide(policy: Policy, facts: RequestFacts) -> Decision:
    """Who may do what where, which actions need approval, which model runs. Pure."""
    if facts.person is None or facts.person not in policy.people:
        return Decision(
            effect="deny",
            reasons=["the requester is not a person in the policy"],
            rule_ids=["people.unknown"],
        )
    person = policy.people[facts.person]
    threshold = policy.clarification.confidence_threshold
    if facts.job_type is None or (facts.confidence < threshold and facts.target is None):
        return Decision(
            effect="needs_clarification",
            reasons=[f"the request's type is unclear (confidence {facts.confidence:.2f})"],
            rule_ids=["clarification.confidence"],
            clarify_field="job_type",
            question="What kind of job is this?",
            options=[t.value for t in JobType if t is not JobType.schedule],
        )
    granted_targets = _granted_targets(policy, person, facts.job_type)
    if facts.target is None:
        mutating = facts.job_type in MUTATING_TYPES
        rule = "clarification.mutating_without_target" if mutating else "clarification.no_target"
        return Decision(
            effect="needs_clarification",
            reasons=[f"a {facts.job_type.value} job needs a target and none was named"],
            rule_ids=[rule],
            clarify_field="target",
            question=f"Which target should this {facts.job_type.value} job work on?",
            options=granted_targets,
        )
    if facts.confidence < threshold:
        return Decision(
            effect="needs_clarification",
            reasons=[
                f"the request was understood with confidence {facts.confidence:.2f}, "
                f"below the policy's threshold {threshold:.2f}"
            ],
            rule_ids=["clarification.confidence"],
            clarify_field="job_type",
            question=f"Is this a {facts.job_type.value} job on {facts.target}?",
            options=[t.value for t in JobType if t is not JobType.schedule],
        )
    if facts.target not in policy.targets_for(facts.job_type):
        return Decision(
            effect="deny",
            reasons=[f"'{facts.target}' is not a {facts.job_type.value} target in the policy"],
            rule_ids=["targets.unknown"],
        )
    grants = [
        grant
        for role in person.roles
        for grant in policy.roles[role].grants
        if facts.job_type in grant.job_types and _matches(facts.target, grant.targets)
    ]
    if not grants:
        roles = ", ".join(person.roles) or "none"
        return Decision(
            effect="deny",
            reasons=[
                f"{facts.person} has no grant for {facts.job_type.value} jobs on "
                f"'{facts.target}' (roles: {roles})"
            ],
            rule_ids=["grants.none"],
        )
    allowed_tools = sorted({tool for grant in grants for tool in grant.tools})
    wanted = facts.tools or list(TYPE_TOOLS[facts.job_type])
    missing = [tool for tool in wanted if tool not in allowed_tools]
    rule_ids = [grant.id for grant in grants]
    if facts.tools and missing:
        return Decision(
            effect="deny",
            reasons=[f"tools not granted to {facts.person} here: {', '.join(missing)}"],
            rule_ids=[*rule_ids, "grants.tool"],
        )
    tools_granted = [tool for tool in wanted if tool in allowed_tools]
    risk = risk_of(policy, facts.job_type, facts.target)
    sensitivity = getattr(policy.targets_for(facts.job_type).get(facts.target), "sensitivity", None)
    route = next(
        (
            r
            for r in policy.models.routes
            if (not r.job_types or facts.job_type in r.job_types)
            and (not r.risk or risk in r.risk)
            and (not r.origins or facts.origin in r.origins)
            and (not r.sensitivity or sensitivity in r.sensitivity)
        ),
        None,
    )
    model = route.model if route else "direct"
    reasons = [f"{facts.person} may run {facts.job_type.value} jobs on '{facts.target}'"]
    if model == "direct" and not facts.has_explicit_steps:
        return Decision(
            effect="needs_clarification",
            reasons=[*reasons, "no model is routed for this job, so it runs only explicit steps"],
            rule_ids=[*rule_ids, route.id if route else "models.none", "clarification.direct_mode"],
            tools_granted=tools_granted,
            clarify_field="commands",
            question="No model runs this job, so it needs explicit steps. "
            + _STEP_QUESTION.get(facts.job_type, "Which command should it run?"),
            options=[],
            model=model,
            model_rule=route.id if route else None,
            risk=risk,
        )
    gates, gate_rules, gate_reasons = approval_gates(policy, facts.job_type, facts.target)
    rule_ids += gate_rules
    reasons += gate_reasons
    if route:
        rule_ids.append(route.id)
    return Decision(
        effect="allow",
        reasons=reasons,
        rule_ids=rule_ids,
        tools_granted=tools_granted,
        approvals=gates,
        model=model,
        model_rule=route.id if route else None,
        risk=risk,
    )


_STEP_QUESTION = {
    JobType.browser: "Which steps should it take? For example: "
    "`goto /users/42` `click #disable` `screenshot`",
    JobType.doc: "Which steps should it take? For example: "
    "`template templates/weekly.md.j2 out/weekly.xlsx incidents.csv`",
    JobType.sql: "Which read-only statement should it run, or which standard diagnostic? "
    "For example: `SELECT status, count(*) FROM orders GROUP BY 1` or 'top 10 slowest queries'",
}


def approval_gates(
    policy: Policy, job_type: JobType, target: str | None
) -> tuple[list[ApprovalGate], list[str], list[str]]:
    """The approval gates the policy puts on this job type and target, with why."""
    gates: list[ApprovalGate] = []
    rule_ids: list[str] = []
    reasons: list[str] = []
    for rule in policy.approvals:
        if rule.job_types and job_type not in rule.job_types:
            continue
        if not _matches(target, rule.targets):
            continue
        for action in rule.actions:
            if any(g.action == action for g in gates):
                continue
            expires = (
                parse_duration(rule.expires_after).total_seconds() if rule.expires_after else None
            )
            gates.append(
                ApprovalGate(
                    action=action,
                    rule_id=rule.id,
                    approvers=policy.approvers_for(rule),
                    four_eyes=rule.four_eyes,
                    expires_after_s=expires,
                    high_risk=rule.high_risk,
                )
            )
        rule_ids.append(rule.id)
        reasons.append(f"{', '.join(rule.actions)} needs approval ({rule.id})")
    return gates, rule_ids, reasons


def decide_routine(policy: Policy, facts: RequestFacts) -> Decision:
    """May this person schedule this request? Only if they may run it now, as themselves; the
    routine's own gates (create, delete) come from approval rules for `schedule` jobs. Pure."""
    inner = decide(policy, facts)
    if inner.effect != "allow":
        return inner.model_copy(
            update={"reasons": [f"the scheduled request: {r}" for r in inner.reasons]}
        )
    gates, _, _ = approval_gates(policy, JobType.schedule, facts.target)
    gates = [g for g in gates if g.action == "create"]  # change and delete gate later jobs
    kind = facts.job_type.value if facts.job_type else "?"
    return Decision(
        effect="allow",
        reasons=[
            f"{facts.person} may run {kind} jobs on '{facts.target}', so may schedule them",
            *(f"creating the routine needs approval ({g.rule_id})" for g in gates),
        ],
        rule_ids=[*inner.rule_ids, *(g.rule_id for g in gates)],
        tools_granted=["scheduler"],
        approvals=gates,
        model="direct",
        risk=inner.risk,
    )


def decide_routine_management(
    policy: Policy, *, person: str, owner: str, verb: str, routine: str
) -> Decision:
    """May `person` pause, resume, run now, change or delete a routine? Its owner and the
    approvers of `schedule` jobs may. Pure."""
    managers = {owner} | {
        name
        for rule in policy.approvals
        if JobType.schedule in rule.job_types
        for name in policy.approvers_for(rule)
    }
    if person in managers:
        return Decision(
            effect="allow",
            reasons=[f"{person} may {verb} {routine}"],
            rule_ids=["routines.owner_or_approver"],
        )
    return Decision(
        effect="deny",
        reasons=[
            f"{person} may not {verb} {routine}; its owner ({owner}) and the approvers of "
            "routines may"
        ],
        rule_ids=["routines.not_allowed"],
    )


def _granted_targets(policy: Policy, person: Person, job_type: JobType) -> list[str]:
    names = policy.targets_for(job_type)
    patterns = [
        p
        for role in person.roles
        for grant in policy.roles[role].grants
        if job_type in grant.job_types
        for p in grant.targets
    ]
    return sorted(name for name in names if _matches(name, patterns))


def decide_approval(
    policy: Policy,
    *,
    approver: str | None,
    requester: str,
    rule_id: str,
    expires_at: datetime | None,
    now: datetime,
    four_eyes: bool,
    escalated_to: list[str] | None = None,
) -> Decision:
    """May `approver` decide this gate now? Re-reads approvers from the current policy (an
    escalated routine gate: the people it was escalated to, still in the policy). Pure."""
    if approver is None or approver not in policy.people:
        return Decision(
            effect="deny",
            reasons=["you are not a person in the policy"],
            rule_ids=["people.unknown"],
        )
    if expires_at is not None and now >= expires_at:
        return Decision(
            effect="deny",
            reasons=[f"the approval request expired at {expires_at:%Y-%m-%d %H:%M} UTC"],
            rule_ids=["approval.expired"],
        )
    rule = next((r for r in policy.approvals if r.id == rule_id), None)
    if escalated_to is not None and not (four_eyes and approver == requester):
        if approver in escalated_to:
            return Decision(
                effect="allow",
                reasons=[f"{approver} was named to decide this routine's unattended approval"],
                rule_ids=[rule_id],
            )
        return Decision(
            effect="deny",
            reasons=[
                f"{approver} is not among the people this approval was escalated to "
                f"({', '.join(escalated_to)})"
            ],
            rule_ids=[rule_id, "approval.not_approver"],
        )
    if four_eyes and approver == requester:
        return Decision(
            effect="deny",
            reasons=[f"{approver} requested this job and may not approve it (four-eyes)"],
            rule_ids=[rule_id, "approval.four_eyes"],
        )
    if rule is None:
        return Decision(
            effect="deny",
            reasons=[f"approval rule '{rule_id}' is no longer in the policy; nobody may approve"],
            rule_ids=[rule_id, "approval.rule_gone"],
        )
    approvers = policy.approvers_for(rule)
    if approver not in approvers:
        who = ", ".join(approvers) or "nobody (no person holds an approver role of this rule)"
        return Decision(
            effect="deny",
            reasons=[f"{approver} is not an approver under rule '{rule_id}'; approvers: {who}"],
            rule_ids=[rule_id, "approval.not_approver"],
        )
    return Decision(
        effect="allow", reasons=[f"{approver} is an approver under '{rule_id}'"], rule_ids=[rule_id]
    )
