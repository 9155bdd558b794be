"""The policy files' schema: pydantic models for the YAML under policies/ (people, roles and
their grants, approval rules, clarification, model routes and budgets, targets, limits,
routines), and the duration format (30m, 72h, 7d) they use.

Models only: never reads a file and never decides a request. Unknown fields are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from runtime.jobs import JobType, Origin

Door = Literal["cli", "slack", "console"]
Sensitivity = Literal["public", "internal", "confidential", "restricted"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Identities(_Strict):
    cli: list[str] = Field(default_factory=list)
    slack: list[str] = Field(default_factory=list)
    console: list[str] = Field(default_factory=list)


class Person(_Strict):
    display_name: str | None = None
    email: str | None = Field(None, description="the author of the commits this person asks for")
    team: str | None = None
    roles: list[str] = Field(default_factory=list)
    identities: Identities = Field(default_factory=Identities)
    service: bool = Field(
        False,
        description="a service identity (CI, a routine's runner): authenticates only with an "
        "API token, never at the terminal or in Slack",
    )


def _known_kinds(values: list[JobType]) -> list[JobType]:
    from runtime.kinds import registry

    unknown = [v for v in values if not registry.known(v)]
    if unknown:
        raise ValueError(
            f"unknown job type {', '.join(map(str, unknown))} (job types: "
            f"{', '.join(registry.names())})"
        )
    return values


KindNames = Annotated[list[JobType], AfterValidator(_known_kinds)]


class Grant(_Strict):
    id: str
    job_types: KindNames
    targets: list[str] = Field(description="target names; '*' and shell globs allowed")
    tools: list[str] = Field(default_factory=list)
    network: list[str] = Field(
        default_factory=list,
        description="hosts the job's commands may reach through the egress proxy: 'host' "
        "(ports 80 and 443), 'host:port', '*.example.com'; empty: no network at all",
    )
    credentials: dict[str, str] = Field(
        default_factory=dict,
        description="host -> NAME of the environment variable whose value the egress proxy "
        "sends to that host as its Authorization header; the job never sees the value",
    )

    @model_validator(mode="after")
    def _credential_hosts_granted(self) -> Grant:
        from runtime.sandbox.scope import HostScope

        scope = HostScope(self.network)
        ungranted = [h for h in self.credentials if not scope.allows_host(h)]
        if ungranted:
            raise ValueError(
                f"grant {self.id}: credentials for {', '.join(ungranted)}, which its network "
                "list does not grant"
            )
        return self


class Role(_Strict):
    description: str = ""
    grants: list[Grant] = Field(default_factory=list)


class ApproverSet(_Strict):
    people: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)


class ApprovalRule(_Strict):
    id: str
    job_types: KindNames = Field(default_factory=list, description="empty: every type")
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
    job_types: KindNames = Field(default_factory=list, description="empty: every type")
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


class ForgeSpec(_Strict):
    """Where a pull_request target opens its pull requests (GitHub) or merge requests (GitLab)."""

    kind: Literal["github", "gitlab"]
    api_url: str = Field(
        description="the REST API's base: https://api.github.com, https://gitlab.example.com/api/v4"
    )
    project: str = Field(description="owner/repo on GitHub; the numeric id or group/name on GitLab")
    token_env: str = Field(
        description="NAME of the environment variable holding the API token; never the token"
    )


class EnvironmentSpec(_Strict):
    """A target's toolchain: built once per key in a sandbox of its own, mounted read-only at
    /env into every job's sandbox of the target."""

    setup: list[str] = Field(
        min_length=1,
        description="bash commands run in order in /repo (the base commit) with /env writable, "
        "e.g. python3 -m venv /env && /env/bin/pip install -e '.[test]'",
    )
    key_files: list[str] = Field(
        default_factory=list,
        description="repository files whose content keys the cache (lockfiles, pyproject.toml)",
    )
    hosts: list[str] = Field(
        default_factory=list, description="hosts setup may reach (package registries)"
    )
    credentials: dict[str, str] = Field(
        default_factory=dict, description="host -> NAME of the variable with its token"
    )
    timeout_s: float = Field(1200.0, gt=0, description="for all setup commands together")


class RepoTarget(_Strict):
    url: str | None = Field(
        None,
        description="the repository: file://, ssh://, https:// or a local path (a bare "
        "repository or a checkout); {ACP_HOME} is replaced by the service's home",
    )
    path: str | None = Field(None, description="older spelling of url for a local repository")
    base_branch: str = "main"
    publish: Literal["merge", "push", "pull_request"] = "merge"
    remote_branch: str | None = Field(
        None, description="push mode: the branch pushed to (default: the job's acp/J-n)"
    )
    forge: ForgeSpec | None = Field(None, description="pull_request mode: where PRs are opened")
    push_token_env: str | None = Field(
        None,
        description="NAME of the variable with the token an https:// remote takes for fetches "
        "and pushes (sent as a header, never in the URL); default: the forge's token",
    )
    environment: EnvironmentSpec | None = None
    sample: str | None = Field(None, description="bundled sample to create the repo from")
    production: bool = False
    sensitivity: Sensitivity = "internal"
    description: str = ""

    @model_validator(mode="after")
    def _where_and_how(self) -> RepoTarget:
        if (self.url is None) == (self.path is None):
            raise ValueError("a repository target needs url (or the older path), and only one")
        if self.publish == "pull_request" and self.forge is None:
            raise ValueError(
                "publish: pull_request needs forge: {kind: github|gitlab, api_url, project, "
                "token_env}"
            )
        return self

    @property
    def location(self) -> str:
        """The repository's URL or path as written ({ACP_HOME} not yet replaced)."""
        return self.url or self.path or ""

    @property
    def token_env(self) -> str | None:
        """The variable holding the token for fetches and pushes over https, if any."""
        return self.push_token_env or (self.forge.token_env if self.forge else None)


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


class Targets(BaseModel):
    """The targets jobs work on, one section per kind of target. A job kind that brings a
    section of its own (runtime.kinds: `target_section` and `target_model`) has it validated
    here; a section no kind reads is refused."""

    model_config = ConfigDict(extra="allow")

    repos: dict[str, RepoTarget] = Field(default_factory=dict)
    databases: dict[str, DatabaseTarget] = Field(default_factory=dict)
    sites: dict[str, SiteTarget] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _kind_sections(self) -> Targets:
        from runtime.kinds import registry

        sections = registry.sections()
        for name, entries in list((self.model_extra or {}).items()):
            model = sections.get(name)
            if model is None:
                known = ", ".join(sorted({"repos", "databases", "sites", *sections}))
                raise ValueError(f"no job kind reads targets.{name} (target sections: {known})")
            if not isinstance(entries, dict):
                raise ValueError(f"targets.{name} must map target names to their settings")
            self.model_extra[name] = {
                key: value if isinstance(value, model) else model.model_validate(value)
                for key, value in entries.items()
            }
        return self

    def section(self, name: str) -> Mapping[str, Any]:
        """A section's targets by name: a read-only view (no copy; decide() reads it often)."""
        if name in ("repos", "databases", "sites"):
            return MappingProxyType(getattr(self, name))
        return MappingProxyType((self.model_extra or {}).get(name, {}))

    def sections(self) -> list[str]:
        return ["repos", "databases", "sites", *(self.model_extra or {})]


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


class Authentication(_Strict):
    """How the service API's doors may be used beyond their own proof of identity."""

    impersonation: bool = Field(
        False,
        description="honour `acp ... --as NAME` from any caller at the terminal socket: for "
        "local demos only; anywhere else it is refused and the kernel's uid decides who acts",
    )
    token_max_days: int = Field(90, ge=1, description="the longest an API token may live")
    token_admin_roles: list[str] = Field(
        default_factory=list,
        description="roles whose members may create and revoke tokens for other people and "
        "for service identities (everyone may manage their own)",
    )


class SlackChannelRule(_Strict):
    """Where in Slack requests of some kinds and targets may be made (and routines report)."""

    id: str
    job_types: KindNames = Field(default_factory=list, description="empty: every type")
    targets: list[str] = Field(default_factory=lambda: ["*"])
    channels: list[str] = Field(
        min_length=1,
        description="Slack channel ids (C0123ABCD, G0123ABCD) where they may be asked, and "
        "'dm' for direct messages to the app",
    )
    only_slack: bool = Field(
        False, description="also refuse these requests from every other door (the terminal)"
    )

    @field_validator("channels")
    @classmethod
    def _channel_ids(cls, value: list[str]) -> list[str]:
        bad = [c for c in value if c != "dm" and not re.fullmatch(r"[CGD][A-Z0-9]{4,}", c)]
        if bad:
            raise ValueError(
                f"'{bad[0]}' is not a Slack channel id (like C0123ABCD; a channel's name can "
                "change, its id does not: channel details -> About -> Channel ID) nor 'dm'"
            )
        return value


class SlackDoor(_Strict):
    """What the Slack door may take from a conversation into a job, and where it may be asked."""

    thread_context_messages: int = Field(
        20, ge=0, le=1000, description="at most this many thread messages above a mention"
    )
    thread_context_bytes: int = Field(
        16_000, ge=0, le=1_000_000, description="and at most this many bytes of them (UTF-8)"
    )
    files_per_request: int = Field(
        5,
        ge=0,
        le=20,
        description="at most this many attached files become a doc job's inputs: the request's "
        "own (more is refused), then the newest of the thread above it; each is checked against "
        "limits.doc_max_bytes",
    )
    channels: list[SlackChannelRule] = Field(
        default_factory=list,
        description="requests a rule covers may be made in Slack only in its channels; "
        "requests no rule covers, anywhere",
    )


class Witness(_Strict):
    """One place outside the database that receives every signed checkpoint."""

    directory: str | None = Field(None, description="a directory (another disk, a mount)")
    http: str | None = Field(None, description="an HTTP endpoint the checkpoint is POSTed to")

    @model_validator(mode="after")
    def _exactly_one(self) -> Witness:
        named = [k for k in ("directory", "http") if getattr(self, k)]
        if len(named) != 1:
            raise ValueError("a witness is exactly one of: directory, http")
        return self


class AuditCheckpoints(_Strict):
    every_events: int = Field(1000, ge=1, description="sign a checkpoint after this many events")
    every_seconds: float = Field(
        30, gt=0, description="or after this long, when anything was appended"
    )
    witnesses: list[Witness] = Field(default_factory=list)


class AuditSpec(_Strict):
    checkpoints: AuditCheckpoints = Field(default_factory=AuditCheckpoints)


class PolicyExample(_Strict):
    """One example the policy must decide as written (`expect:`), run at every load: a policy
    whose examples fail is refused. Like a test beside the rules it checks."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    as_: str = Field(alias="as", description="the person who asks")
    request: str | None = Field(
        None, description="the request as typed, e.g. 'code demo: run `make test`'"
    )
    job_type: JobType | None = Field(
        None,
        description="instead of a request: a job of this type (one no request names, e.g. "
        "policy), on `target`, decided with its steps explicit",
    )
    target: str | None = Field(None, description="with job_type: the job's target")
    origin: Origin = Origin.cli
    effect: Literal["allow", "deny", "needs_clarification"] | None = Field(
        None, description="the decision's effect (default: allow when approvals are named)"
    )
    approvals: list[str] | None = Field(
        None, description="the approval rule ids that gate it, exactly (empty: none)"
    )
    approvers: dict[str, list[str]] | None = Field(
        None, description="approval rule id -> the people who may approve it, exactly"
    )
    rules: list[str] = Field(
        default_factory=list, description="rule ids the decision must use (grants, routes)"
    )
    model: str | None = Field(None, description="the model route's model ('direct', a model)")
    note: str = ""

    @model_validator(mode="after")
    def _says_something(self) -> PolicyExample:
        if (self.request is None) == (self.job_type is None):
            raise ValueError("an example needs a request, or a job_type and target, not both")
        if self.job_type is not None:
            _known_kinds([self.job_type])
            if self.target is None:
                raise ValueError("an example with job_type needs its target")
        elif self.target is not None:
            raise ValueError("an example's target goes with job_type; a request names its own")
        said = (self.effect, self.approvals, self.approvers, self.model)
        if all(v is None for v in said) and not self.rules:
            raise ValueError(
                "an example needs what to expect: effect, approvals, approvers, rules or model"
            )
        return self

    @property
    def expected_effect(self) -> str:
        return self.effect or "allow"


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
    authentication: Authentication = Field(default_factory=Authentication)
    audit: AuditSpec = Field(default_factory=AuditSpec)
    slack: SlackDoor = Field(default_factory=SlackDoor)
    expect: list[PolicyExample] = Field(
        default_factory=list, description="examples the policy must decide as written"
    )
    # Indexes built on first use (identities, approvers, merged targets): a Policy is never
    # changed after it is loaded, so they stay true for its life.
    _cache: dict[Any, Any] = PrivateAttr(default_factory=dict)

    def targets_for(self, job_type: JobType | str) -> Mapping[str, Any]:
        """The targets a job of this kind may name: its kind's section of the policy (a kind
        with no section of its own, e.g. routines, names the targets of any section)."""
        from runtime.kinds import registry

        section = registry.kind_for(job_type).target_section
        if section is not None:
            return self.targets.section(section)
        found = self._cache.get("all_targets")
        if found is None:
            found = self._cache["all_targets"] = MappingProxyType({
                name: target
                for each in self.targets.sections()
                for name, target in self.targets.section(each).items()
            })  # fmt: skip
        return found

    def targets_in(self, section: str) -> Mapping[str, Any]:
        return self.targets.section(section)

    def all_target_names(self) -> list[str]:
        return sorted({name for s in self.targets.sections() for name in self.targets.section(s)})

    def person_for(self, door: Door, identity: str) -> str | None:
        """The person a door's identity (terminal user, Slack user id) belongs to."""
        if identity in self.people and door == "cli":
            return identity
        index = self._cache.get(("identities", door))
        if index is None:
            index = {}
            for name, person in self.people.items():
                for each in getattr(person.identities, door):
                    index.setdefault(each, name)
            self._cache[("identities", door)] = index
        return index.get(identity)

    def approvers_for(self, rule: ApprovalRule) -> list[str]:
        """The people who may approve under `rule`: named, or holding one of its roles."""
        key = ("approvers", id(rule))
        found = self._cache.get(key)
        if found is None:
            members = self._role_members()
            names = set(rule.approvers.people)
            for role in rule.approvers.roles:
                names.update(members.get(role, ()))
            found = self._cache[key] = sorted(names)
        return list(found)

    def _role_members(self) -> dict[str, list[str]]:
        members = self._cache.get("role_members")
        if members is None:
            members = {}
            for name, person in self.people.items():
                for role in person.roles:
                    members.setdefault(role, []).append(name)
            self._cache["role_members"] = members
        return members


def parse_duration(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text)
    if not match:
        raise ValueError(f"'{text}' is not a duration like 30m, 72h or 7d")
    amount, unit = int(match.group(1)), match.group(2)
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: amount})
