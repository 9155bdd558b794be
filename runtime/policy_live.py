"""The policy in force while the service runs: loaded, validated completely and swapped in
atomically, or refused with the file, line and reason while the old one stays in force.

Every policy put in force is stored by its hash (the artifact of its files has the same
sha256) and recorded in policy_loads with when, from where and by whom, in one transaction
with its `policy.loaded` event. The newest row is the policy in force for every process: the
service records loads; a worker process follows the row and reads that version's files back
from the artifact store, so the API and the workers never act under two policies unawares.

One operation (a submission, a worker's pass over a job) pins the version it started under
(`pinned`), so a reload in the middle of it never mixes two policies in one decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import pwd
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from runtime import audit
from runtime.audit import ArtifactStore, NewEvent
from runtime.errors import AcpError, PolicyFileError
from runtime.policy import LoadedPolicy, load_bundle, load_policy
from runtime.policy.load import policy_files
from runtime.store import policy_store
from runtime.store.job_store import utcnow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from runtime.settings import Settings
    from runtime.store.database import Database

log = logging.getLogger("acp.policy")
RELOAD_TIMEOUT_S = 60.0  # a reload that cannot finish is refused; the old policy serves on

# (owner id, the policy one operation acts under); see PolicyInForce.pinned.
_PINNED: contextvars.ContextVar[tuple[int, LoadedPolicy] | None] = contextvars.ContextVar(
    "acp_policy_pinned", default=None
)


@dataclass(frozen=True)
class InForce:
    """The policy in force, since when, and how it came to be."""

    loaded: LoadedPolicy
    since: datetime
    source: str  # startup, filesystem, sighup, reload, job J-n, follow
    actor: str
    load_id: int | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "policy_hash": self.loaded.sha256,
            "since": self.since.isoformat(),
            "source": self.source,
            "actor": self.actor,
            "files": [p.name for p in self.loaded.files],
            "load_id": self.load_id,
        }


@dataclass(frozen=True)
class ReloadResult:
    changed: bool
    in_force: InForce
    previous: str | None = None
    error: PolicyFileError | None = None


class PolicyInForce:
    """Holds the policy in force for one process; reloads it (the service) or follows the
    database's record of it (a worker)."""

    def __init__(
        self, settings: Settings, db: Database, artifacts: ArtifactStore, loaded: LoadedPolicy
    ) -> None:
        self.settings = settings
        self.db = db
        self.artifacts = artifacts
        self.current = InForce(loaded, utcnow(), "startup", "acp")
        self._versions: dict[str, LoadedPolicy] = {loaded.sha256: loaded}
        self._lock: asyncio.Lock | None = None
        self._refused: str | None = None  # the folder digest last refused (not refused twice)
        self.listeners: list[Any] = []  # called with (old, new) after a swap

    # --- which policy an operation acts under ------------------------------------------

    @property
    def loaded(self) -> LoadedPolicy:
        pinned = _PINNED.get()
        if pinned is not None and pinned[0] == id(self):
            return pinned[1]
        return self.current.loaded

    @contextlib.contextmanager
    def pinned(self, loaded: LoadedPolicy | None = None) -> Iterator[LoadedPolicy]:
        """Within this block (and the tasks it starts) `loaded` is the policy, whatever is
        reloaded meanwhile. Already pinned: the outer pin stands."""
        outer = _PINNED.get()
        if outer is not None and outer[0] == id(self) and loaded is None:
            yield outer[1]
            return
        chosen = loaded or self.current.loaded
        token = _PINNED.set((id(self), chosen))
        try:
            yield chosen
        finally:
            _PINNED.reset(token)

    def version(self, policy_hash: str) -> LoadedPolicy | None:
        """A policy this service had in force, by its hash, from the artifact store."""
        found = self._versions.get(policy_hash)
        if found is not None:
            return found
        try:
            data = self.artifacts.read(policy_hash)
        except OSError:
            return None
        found = load_bundle(data, self.settings.policy_dir, examples=False)
        if found.sha256 != policy_hash:
            return None
        self._versions[policy_hash] = found
        return found

    # --- loading -----------------------------------------------------------------------

    def _guard(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def start(self, *, record: bool, actor: str = "acp") -> None:
        """At process start: the service records the policy it loaded if it is not the one in
        force already; a worker adopts the one in force (what the service last loaded)."""
        async with self.db.engine.connect() as conn:
            row = await policy_store.in_force(conn)
        if record:
            if row is None or row["policy_hash"] != self.current.loaded.sha256:
                await self.put_in_force(self.current.loaded, "startup", actor)
            else:
                self.current = InForce(
                    self.current.loaded, row["loaded_at"], row["source"], row["actor"], row["id"]
                )
            return
        await self.follow()

    async def put_in_force(
        self,
        loaded: LoadedPolicy,
        source: str,
        actor: str,
        *,
        job_id: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> InForce:
        """Store, record and swap in a validated policy."""
        previous = self.current.loaded.sha256
        load_id, now = await record_load(
            self.db, self.artifacts, loaded, source, actor, previous, job_id=job_id, detail=detail
        )
        self._swap(InForce(loaded, now, source, actor, load_id))
        return self.current

    def _swap(self, new: InForce) -> None:
        old = self.current
        self._versions[new.loaded.sha256] = new.loaded
        self.current = new  # one assignment: every door sees the new version at once
        if old.loaded.sha256 != new.loaded.sha256:
            log.info(
                "policy %s in force (was %s; %s by %s)",
                new.loaded.sha256[:12], old.loaded.sha256[:12], new.source, new.actor,
            )  # fmt: skip
            for listener in list(self.listeners):
                try:
                    listener(old, new)
                except Exception:  # a listener's bug must not undo the swap
                    log.exception("policy listener failed")

    async def reload(self, source: str, actor: str) -> ReloadResult:
        """Read the policy folder again: put it in force, or refuse it (the old one stays),
        recording either way. Never raises for a bad policy: the result carries the error."""
        async with self._guard():
            previous = self.current.loaded.sha256
            try:
                async with asyncio.timeout(RELOAD_TIMEOUT_S):
                    loaded = await asyncio.to_thread(load_policy, self.settings.policy_dir)
                    await self._prepare(loaded)
            except TimeoutError:
                late = PolicyFileError(
                    f"reading and checking {self.settings.policy_dir} took over "
                    f"{RELOAD_TIMEOUT_S:g} s (a stuck disk, a sample repository that will not "
                    "clone); the policy in force stays",
                    hint="`acp policy reload` tries again",
                )
                await self._refuse(late, source, actor)
                return ReloadResult(False, self.current, previous, late)
            except PolicyFileError as error:
                await self._refuse(error, source, actor)
                return ReloadResult(False, self.current, previous, error)
            except AcpError as error:
                wrapped = PolicyFileError(error.message, hint=error.hint)
                await self._refuse(wrapped, source, actor)
                return ReloadResult(False, self.current, previous, wrapped)
            self._refused = None
            if loaded.sha256 == previous:
                return ReloadResult(False, self.current, previous)
            if source == "filesystem":
                actor = _file_authors(loaded) or actor
            await self.put_in_force(loaded, source, actor)
            return ReloadResult(True, self.current, previous)

    async def _prepare(self, loaded: LoadedPolicy) -> None:
        """What a new policy needs before it serves: its bundled sample repositories."""
        from runtime.kinds.code.repo import ensure_repo

        for target in loaded.policy.targets.repos.values():
            if target.sample:
                await ensure_repo(self.settings, target)

    async def _refuse(self, error: PolicyFileError, source: str, actor: str) -> None:
        key = f"{source}:{error.message}"
        if source == "filesystem" and key == self._refused:
            return  # the same broken folder, seen again: said once
        self._refused = key
        log.warning("policy reload refused (%s): %s", source, error.message)
        async with self.db.begin() as conn:
            await audit.append(
                conn,
                self.db,
                NewEvent(
                    "policy.reload_refused",
                    actor,
                    None,
                    {
                        "source": source,
                        "error": error.message,
                        "hint": error.hint,
                        "in_force": self.current.loaded.sha256,
                    },
                ),
            )

    async def follow(self, conn: AsyncConnection | None = None) -> bool:
        """Adopt the policy the database says is in force (a worker, or the service after a
        policy job wrote it). True when it changed."""
        if conn is None:
            async with self.db.engine.connect() as c:
                row = await policy_store.in_force(c)
        else:
            row = await policy_store.in_force(conn)
        if row is None or row["id"] == self.current.load_id:
            return False
        if row["policy_hash"] == self.current.loaded.sha256:
            self.current = InForce(
                self.current.loaded, row["loaded_at"], row["source"], row["actor"], row["id"]
            )
            return False
        loaded = self.version(row["policy_hash"])
        if loaded is None:
            log.error("policy %s is in force but its files are not in the artifact store",
                      row["policy_hash"][:12])  # fmt: skip
            return False
        self._swap(InForce(loaded, row["loaded_at"], row["source"], row["actor"], row["id"]))
        return True

    def folder_state(self) -> tuple[tuple[str, int, int], ...]:
        """What the watcher compares: each policy file's name, size and mtime."""
        out = []
        for path in policy_files(self.settings.policy_dir):
            with contextlib.suppress(OSError):
                st = path.stat()
                out.append((path.name, st.st_size, st.st_mtime_ns))
        return tuple(out)


async def in_force_policy(settings: Settings, db: Database) -> LoadedPolicy | None:
    """The policy the database records in force, read back from the artifact store; None when
    no policy was recorded (or its files are not in the store)."""
    async with db.engine.connect() as conn:
        row = await policy_store.in_force(conn)
    if row is None:
        return None
    try:
        data = ArtifactStore(settings.artifacts_dir).read(row["policy_hash"])
    except OSError:
        return None
    loaded = load_bundle(data, settings.policy_dir, examples=False)
    return loaded if loaded.sha256 == row["policy_hash"] else None


async def record_load(
    db: Database,
    artifacts: ArtifactStore,
    loaded: LoadedPolicy,
    source: str,
    actor: str,
    previous: str | None,
    *,
    job_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> tuple[int, datetime]:
    """Store a validated policy's files by its hash and record it in force, with its
    `policy.loaded` event, in one transaction. Every process follows the newest record."""
    ref = artifacts.put("policy.bundle", loaded.bundle(), "application/octet-stream")
    assert ref.sha256 == loaded.sha256
    now = utcnow()
    files = [p.name for p in loaded.files]
    row = {"policy_hash": loaded.sha256, "loaded_at": now, "source": source, "actor": actor,
           "files": files, "job_id": job_id}  # fmt: skip
    data = {
        "policy_hash": loaded.sha256,
        "previous": previous if previous != loaded.sha256 else None,
        "source": source,
        "changed_by": actor,
        "files": files,
        **(detail or {}),
    }
    async with db.begin() as conn:
        load_id = await policy_store.record_load(conn, row)
        await audit.append(conn, db, NewEvent("policy.loaded", actor, job_id, data, (ref.sha256,)))
    return load_id, now


def _file_authors(loaded: LoadedPolicy) -> str | None:
    """Who wrote the policy files, as far as the filesystem says (their owners)."""
    names = set()
    for path in loaded.files:
        with contextlib.suppress(OSError, KeyError):
            names.add(pwd.getpwuid(os.stat(path).st_uid).pw_name)
    if not names:
        return None
    return f"{', '.join(sorted(names))} (owner of the policy files)"


class PolicyWatcher:
    """Watches the policy folder (and the database's record, for a policy job's load) and
    reloads on change: a new policy in force within about `interval` seconds of the last
    write to its files; a half-written file is waited out (the folder must hold still for one
    interval), and a broken one is refused once."""

    def __init__(self, policies: PolicyInForce, *, interval: float = 0.5) -> None:
        self.policies = policies
        self.interval = interval
        self.wake = asyncio.Event()
        self.requested: list[tuple[str, str]] = []

    def request(self, source: str, actor: str) -> None:
        """Reload soon (SIGHUP); `acp policy reload` calls PolicyInForce.reload directly."""
        self.requested.append((source, actor))
        self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        # Unknown at first: the folder is read once (a no-op when it holds the policy in force),
        # so an edit made while the service was starting is not missed.
        seen: tuple | None = None
        pending: tuple | None = None
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.interval)
            self.wake.clear()
            try:
                while self.requested:
                    source, actor = self.requested.pop(0)
                    await self.policies.reload(source, actor)
                    seen = self.policies.folder_state()
                await self.policies.follow()
                state = self.policies.folder_state()
                if state == seen:
                    pending = None
                    continue
                if state != pending:  # still being written: wait for it to hold still
                    pending = state
                    continue
                seen, pending = state, None
                await self.policies.reload("filesystem", "filesystem")
            except Exception:  # the watcher must outlive any one bad reload
                log.exception("policy watcher")
