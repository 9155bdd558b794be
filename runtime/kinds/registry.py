"""The one table of job kinds every layer asks: intake, policy, engine, worker and the doors.

The built-in kinds register on first use; another package adds its own with `register`, or (for
a deployment) with ACP_KINDS="module:Attr,..." naming JobKind classes or instances, so every
process of the service (serve, worker, the `acp` command) has it. Registering imports nothing
heavy: a kind imports its run code when a job of it runs. (Not package entry points: scanning
every installed distribution's metadata costs about 80 ms at each `acp` start.)
"""

from __future__ import annotations

import importlib
import os

from runtime.errors import UnknownJobType
from runtime.jobs import JobType, register_pending
from runtime.kinds.base import JobKind

BUILT_IN = (
    "runtime.kinds.code.kind:CodeKind",
    "runtime.kinds.sql.kind:SqlKind",
    "runtime.kinds.browser.kind:BrowserKind",
    "runtime.kinds.doc.kind:DocKind",
    "runtime.kinds.routine.kind:RoutineKind",
    "runtime.kinds.policy.kind:PolicyKind",
)

_kinds: dict[JobType, JobKind] = {}
_loaded = False


def register(kind: JobKind | type[JobKind]) -> JobKind:
    """Add a kind (an instance, or a class made with no arguments). A second kind under a
    name already taken is refused; the same class again is a no-op."""
    _load_built_ins()
    return _add(kind)


def _add(kind: JobKind | type[JobKind]) -> JobKind:
    instance = kind() if isinstance(kind, type) else kind
    name = JobType(instance.job_type)
    existing = _kinds.get(name)
    if existing is not None:
        if type(existing) is type(instance):
            return existing
        raise ValueError(f"a job kind named '{name}' is already registered ({existing!r})")
    taken = {alias: k.job_type for k in _kinds.values() for alias in (k.job_type, *k.aliases)}
    for alias in (name, *instance.aliases):
        if alias in taken:
            raise ValueError(f"'{alias}' already names the {taken[alias]} kind")
    register_pending(*instance.pending_models)
    _kinds[name] = instance
    return instance


def unregister(name: str) -> None:
    """Remove a kind (tests that define their own). Its stored jobs stay readable."""
    _kinds.pop(JobType(name), None)


def _load_built_ins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for path in BUILT_IN:
        module, _, attr = path.partition(":")
        _add(getattr(importlib.import_module(module), attr))
    for path in filter(None, (p.strip() for p in os.environ.get("ACP_KINDS", "").split(","))):
        module, _, attr = path.partition(":")
        try:
            _add(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError) as error:
            raise UnknownJobType(
                f"ACP_KINDS names {path!r}, which cannot be loaded: {error}",
                hint="ACP_KINDS is a comma-separated list of module:JobKindClass",
            ) from None


def kinds() -> list[JobKind]:
    _load_built_ins()
    return list(_kinds.values())


def names() -> list[str]:
    return [str(kind.job_type) for kind in kinds()]


def known(name: str) -> bool:
    _load_built_ins()
    try:
        return JobType(name) in _kinds
    except ValueError:
        return False


def kind_for(job_type: str) -> JobKind:
    """The kind of a job type; UnknownJobType (naming the kinds there are) for another."""
    _load_built_ins()
    try:
        found = _kinds.get(JobType(job_type))
    except ValueError:
        found = None
    if found is None:
        raise UnknownJobType(
            f"this service has no '{job_type}' job kind",
            hint=f"job kinds: {', '.join(names())}",
        )
    return found


def by_alias(word: str) -> JobKind | None:
    """The kind a request's first word names (`browse`, `docs`, ...)."""
    word = word.lower()
    return next((k for k in kinds() if word == k.job_type or word in k.aliases), None)


def aliases() -> dict[str, JobType]:
    return {alias: k.job_type for k in kinds() for alias in (k.job_type, *k.aliases)}


def for_section(section: str) -> list[JobKind]:
    """The kinds whose targets are the policy's targets.<section>."""
    return [k for k in kinds() if k.target_section == section]


def sections() -> dict[str, type | None]:
    """Every target section a kind reads, with the model a kind brings for a new one."""
    found: dict[str, type | None] = {}
    for kind in kinds():
        if kind.target_section and found.get(kind.target_section) is None:
            found[kind.target_section] = kind.target_model
    return found
