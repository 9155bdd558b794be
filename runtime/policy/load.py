"""Loading the policy: every *.yml / *.yaml in a directory, merged into one Policy, with the
sha256 of the files and the file and line of every key.

A malformed file, a key defined in two files or a reference to an unknown person, role or host
fails here, as a PolicyFileError naming file and line. Never decides a request.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import ValidationError

from runtime.errors import PolicyFileError
from runtime.policy.schema import Policy


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    sha256: str
    files: tuple[Path, ...]
    lines: Mapping[tuple[Any, ...], tuple[str, int]] = field(default_factory=dict, compare=False)
    # Each file's name and bytes, in load order: what the hash is over, and what is stored.
    sources: tuple[tuple[str, bytes], ...] = field(default=(), compare=False, repr=False)

    def bundle(self) -> bytes:
        """The policy as one artifact: each file's name and bytes, NUL-separated. Its sha256
        is the policy's hash, so the artifact store holds every version under its hash."""
        return b"".join(name.encode() + b"\0" + raw + b"\0" for name, raw in self.sources)


_LISTS = ("approvals", "expect")  # sections whose items several files may add to
_MERGED_MAPPINGS = (
    "people",
    "roles",
    "targets",
    "clarification",
    "models",
    "limits",
    "routines",
    "slack",
)


def load_policy(directory: Path, *, examples: bool = True) -> LoadedPolicy:
    """Read every *.yml / *.yaml in `directory`; a malformed file fails with file and line, and
    so does a failing example (`expect:`) unless `examples` is False."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PolicyFileError(
            f"policy directory {directory} does not exist",
            hint="set ACP_POLICY_DIR to a folder of policy YAML files",
        )
    files = policy_files(directory)
    if not files:
        raise PolicyFileError(f"no policy files (*.yml) in {directory}")
    sources = []
    for path in files:
        try:
            sources.append((path.name, path.read_bytes()))
        except OSError as error:
            raise PolicyFileError(f"{path}: cannot be read: {error.strerror}") from None
    return load_sources(sources, directory, examples=examples)


def policy_files(directory: Path) -> list[Path]:
    return sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])


def load_bundle(data: bytes, where: Path | str, *, examples: bool = False) -> LoadedPolicy:
    """A stored policy (LoadedPolicy.bundle) back as a LoadedPolicy; its errors name `where`."""
    parts = data.split(b"\0")
    if len(parts) % 2 != 1 or parts[-1] != b"":
        raise PolicyFileError(f"{where}: not a stored policy bundle")
    sources = [(parts[i].decode(), parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
    return load_sources(sources, Path(where), examples=examples)


def load_sources(
    sources: list[tuple[str, bytes]], directory: Path, *, examples: bool = True
) -> LoadedPolicy:
    """Files given as (name, bytes), merged into one Policy with its hash; errors name
    directory/name and the line."""
    if not sources:
        raise PolicyFileError(f"no policy files (*.yml) in {directory}")
    for name, _ in sources:
        if "/" in name or name.startswith(".") or not name.endswith((".yml", ".yaml")):
            raise PolicyFileError(f"'{name}' is not a policy file name (name.yml, no folders)")
    digest = hashlib.sha256()
    merged: dict[str, Any] = {}
    # File and line of every key: found only when an error needs them (a second, C-speed
    # parse), so a valid policy of 2,000 people loads without walking 100,000 YAML nodes.
    lines = _Lines(sources, Path(directory))
    owner: dict[tuple[str, ...], str] = {}
    files = []
    for name, raw in sources:
        path = Path(directory) / name
        files.append(path)
        digest.update(name.encode() + b"\0" + raw + b"\0")
        data = _parse_yaml(path, raw)
        here = _Lines([(name, raw)], Path(directory))  # this file's own lines, if needed
        _validate_fragment(path, data, here, alone=len(sources) == 1)
        _merge(path, data, merged, owner, here)
    try:
        policy = Policy.model_validate(merged)
    except ValidationError as exc:
        raise _validation_error(exc, lines, default=str(files[0])) from None
    loaded = LoadedPolicy(
        policy=policy,
        sha256=digest.hexdigest(),
        files=tuple(files),
        lines=lines,
        sources=tuple(sources),
    )
    _check_references(loaded)
    if examples and policy.expect:
        from runtime.policy.examples import check_examples

        check_examples(loaded)
    return loaded


def _parse_yaml(path: Path, raw: bytes) -> dict[str, Any]:
    """One file's sections. A file parsed before (same name and bytes) is not parsed again: a
    reload after an edit to one file of a large policy parses only that file. (The data is
    never changed after parsing: merging and validation only read it.)"""
    key = (path.name, hashlib.sha256(raw).digest())
    found = _PARSED.get(key)
    if found is None:
        found = _parse_fresh(path, raw)
        _PARSED[key] = found
        while len(_PARSED) > _PARSED_MAX:
            _VALID.pop(id(_PARSED.pop(next(iter(_PARSED)))), None)
    return found


_PARSED: dict[tuple[str, bytes], dict[str, Any]] = {}
_PARSED_MAX = 64


def _parse_fresh(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        loader = _LOADER(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except UnicodeDecodeError as exc:
        raise PolicyFileError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise PolicyFileError(f"{path}:{line}: YAML syntax error: {exc.problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PolicyFileError(f"{path}:1: a policy file must be a mapping of sections")
    return data


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it


class _Lines(Mapping):
    """key path (as in the merged policy: ("approvals", 3, "id")) -> (file, line), computed
    from the sources on first use."""

    def __init__(self, sources: list[tuple[str, bytes]], directory: Path) -> None:
        self._sources = sources
        self._directory = directory
        self._found: dict[tuple[Any, ...], tuple[str, int]] | None = None

    def _all(self) -> dict[tuple[Any, ...], tuple[str, int]]:
        if self._found is None:
            self._found = _lines_of(self._sources, self._directory)
        return self._found

    def __getitem__(self, key: tuple[Any, ...]) -> tuple[str, int]:
        return self._all()[key]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def _lines_of(
    sources: list[tuple[str, bytes]], directory: Path
) -> dict[tuple[Any, ...], tuple[str, int]]:
    lines: dict[tuple[Any, ...], tuple[str, int]] = {}
    counts: dict[str, int] = {}  # items of each list section in the files before this one
    for name, raw in sources:
        try:
            node = yaml.compose(raw.decode("utf-8"), Loader=_LOADER)
        except (UnicodeDecodeError, yaml.YAMLError):
            continue
        if node is None:
            continue
        file_lines: dict[tuple[Any, ...], tuple[str, int]] = {}
        _walk_lines(node, (), str(directory / name), file_lines)
        for key, where in file_lines.items():
            if key and key[0] in _LISTS and len(key) > 1 and isinstance(key[1], int):
                lines[(key[0], key[1] + counts.get(key[0], 0), *key[2:])] = where
            else:
                lines.setdefault(key, where)
        if isinstance(node, yaml.MappingNode):
            for k_node, v_node in node.value:
                if k_node.value in _LISTS and isinstance(v_node, yaml.SequenceNode):
                    counts[k_node.value] = counts.get(k_node.value, 0) + len(v_node.value)
    return lines


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


def _validate_fragment(path: Path, data: dict[str, Any], lines: Mapping, *, alone: bool) -> None:
    unknown = [k for k in data if k not in Policy.model_fields]
    if unknown:
        line = lines.get((unknown[0],), (str(path), 1))[1]
        known = ", ".join(Policy.model_fields)
        raise PolicyFileError(
            f"{path}:{line}: unknown section '{unknown[0]}'", hint=f"sections are: {known}"
        )
    if alone or id(data) in _VALID:
        return  # the merged policy is this file (validated below), or these bytes passed before
    try:
        Policy.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, lines, default=str(path)) from None
    _VALID[id(data)] = data  # keeps the parsed data alive, so its id stays its own


# Parsed files whose sections passed validation on their own, by id of the cached data.
_VALID: dict[int, dict[str, Any]] = {}


def _validation_error(exc: ValidationError, lines: Mapping, *, default: str) -> PolicyFileError:
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
        if section in ("approvals", "expect"):
            merged.setdefault(section, []).extend(value or [])
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


def _claim(owner: dict, key: tuple[str, ...], path: Path, lines: Mapping) -> None:
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

    if policy.slack.channels:
        _check_routine_channels(loaded, fail)


def _check_routine_channels(loaded: LoadedPolicy, fail: Any) -> None:
    """A declared routine reports only to a channel its request may be asked in."""
    from runtime.errors import AcpError
    from runtime.intake import parse_request
    from runtime.jobs import Origin
    from runtime.policy.decide import RequestFacts, channel_refusal

    policy = loaded.policy
    for index, routine in enumerate(policy.routines.declared):
        if not routine.slack_channel:
            continue
        try:
            parsed = parse_request(routine.request, policy)
        except AcpError:
            continue  # its firings are refused with the reason; nothing to say about channels
        facts = RequestFacts(person=routine.owner, job_type=parsed.job_type, target=parsed.target,
                             origin=Origin.schedule, channel=routine.slack_channel)  # fmt: skip
        refused = channel_refusal(policy, facts)
        if refused is not None:
            raise fail(
                ("routines", "declared", index, "slack_channel"),
                f"routine '{routine.name}' reports to {routine.slack_channel}: "
                f"{refused.reasons[0]}",
            )
