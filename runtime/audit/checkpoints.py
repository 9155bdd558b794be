"""Signed checkpoints of the audit log, written outside the database, and the check that the log
still extends them.

The service's Checkpointer keeps the log's Merkle frontier in memory and, every N events or
T seconds when anything was appended (policy: audit.checkpoints), signs the tree size and root
(runtime.audit.note) and writes the checkpoint to ACP_HOME/checkpoints and to every witness: a
directory (another disk) or an HTTP endpoint. Someone with write access to the database cannot
sign, so a rewritten, truncated or forked log no longer extends the checkpoints already out.
Never writes the database; never half-writes a checkpoint file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.audit.merkle import Frontier, consistency_proof_from, event_leaves, verify_consistency
from runtime.audit.note import Checkpoint, Signer, Verifier, load_signer
from runtime.errors import AcpError, AuditChainBroken
from runtime.store import audit_store

if TYPE_CHECKING:
    from runtime.policy.schema import AuditCheckpoints
    from runtime.settings import Settings
    from runtime.store.database import Database

log = logging.getLogger("acp.audit")

# Deadlines: a witness that hangs, a disk that stalls or a slow page read never holds the loop.
WITNESS_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
LATEST = "latest"


def checkpoint_dirs(settings: Settings, spec: AuditCheckpoints | None) -> list[Path]:
    """ACP_HOME/checkpoints, then every directory witness of the policy."""
    dirs = [settings.checkpoints_dir]
    if spec is not None:
        dirs += [Path(w.directory).expanduser() for w in spec.witnesses if w.directory]
    return dirs


# --- reading and opening ---------------------------------------------------------------


def read_checkpoints(dirs: Sequence[Path]) -> list[tuple[Path, str]]:
    """Every checkpoint file (`<size>.txt`, and `latest`) in these directories, smallest tree
    first; a directory that does not exist (yet) holds none."""
    found = []
    for directory in dirs:
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            if path.suffix == ".txt" and path.stem.isdigit():
                found.append((0, int(path.stem), str(path), path))
            elif path.name == LATEST:  # after the numbered files, so errors name those
                found.append((1, 0, str(path), path))
    return [(path, path.read_text(encoding="utf-8")) for *_, path in sorted(found)]


@dataclass(frozen=True)
class Signed:
    """One checkpoint the log's key signed, and every file that holds it."""

    checkpoint: Checkpoint
    paths: tuple[Path, ...]

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def where(self) -> str:
        return f"checkpoint {self.paths[0]}"


def open_checkpoints(files: Sequence[tuple[Path, str]], verifier: Verifier) -> list[Signed]:
    """Check each file's signature, origin and name; one Signed per tree size, smallest first.
    Two validly signed checkpoints of one size with different roots are a fork."""
    by_size: dict[int, Signed] = {}
    opened: dict[str, Checkpoint] = {}  # a witness's copy is the same text: verify it once
    for path, text in files:
        checkpoint = opened.get(text) or verifier.open(text, f"checkpoint {path}")
        opened[text] = checkpoint
        if checkpoint.origin != verifier.name:
            raise AuditChainBroken(
                f"checkpoint {path} is for another log ({checkpoint.origin}, not "
                f"{verifier.name}): it was replaced",
                hint="compare it with the copies the witnesses hold",
            )
        if path.name != LATEST and int(path.stem) != checkpoint.size:
            raise AuditChainBroken(
                f"checkpoint {path} holds a checkpoint of {checkpoint.size} events, not "
                f"{path.stem}: it was replaced",
                hint="compare it with the copies the witnesses hold",
            )
        seen = by_size.get(checkpoint.size)
        if seen is None:
            by_size[checkpoint.size] = Signed(checkpoint, (path,))
        elif seen.checkpoint.root != checkpoint.root:
            raise AuditChainBroken(
                f"the log forked: checkpoints {seen.paths[0]} and {path} are both signed with "
                f"the log's key for its first {checkpoint.size} events, with different roots",
                hint="the key signed two histories: find out where the other one came from; "
                "the witnesses' copies show which one they saw",
            )
        else:
            by_size[checkpoint.size] = Signed(seen.checkpoint, (*seen.paths, path))
    return [by_size[size] for size in sorted(by_size)]


class ExtendsCheck:
    """Fed the log's leaf hashes in order, checks the log extends each signed checkpoint: its
    root at each checkpoint's size, and an RFC 6962 consistency proof (built from the log)
    between each checkpoint and the one before it. `finish` raises naming the first checkpoint
    the log no longer extends: rewritten, truncated, or forked."""

    def __init__(self, signed: Sequence[Signed]) -> None:
        self.signed = list(signed)
        self.frontier = Frontier()
        self.checked = 0
        self._next = 0
        self._prev: Signed | None = None
        self._before = Frontier()  # the frontier at the previous checkpoint
        self._tail = Frontier()  # the compact range from there on
        self._matched = 0  # the size of the last checkpoint the log matched
        self._rewritten: tuple[Signed, int] | None = None
        self._fork: tuple[Signed, Signed] | None = None
        self._reach()

    @property
    def wanted(self) -> int:
        """How many more leaves the check needs (none past the largest checkpoint)."""
        return (self.signed[-1].size - self.frontier.end) if self.signed else 0

    def feed(self, leaves: Sequence[bytes]) -> None:
        start, count = 0, len(leaves)
        while start < count and self._next < len(self.signed):
            take = min(count - start, self.signed[self._next].size - self.frontier.end)
            chunk = leaves if (start, take) == (0, count) else leaves[start : start + take]
            self.frontier.extend(chunk, self._tail)
            start += take
            self._reach()

    def _reach(self) -> None:
        while self._next < len(self.signed) and self.signed[self._next].size == self.frontier.end:
            signed = self.signed[self._next]
            self._next += 1
            size, claimed = signed.size, signed.checkpoint.root
            consistent = True
            if self._prev is not None:
                proof = consistency_proof_from(self._before, self._tail)
                before = self._prev.checkpoint.root
                consistent = verify_consistency(self._prev.size, size, before, claimed, proof)
            if self.frontier.root() != claimed:
                if self._rewritten is None:
                    self._rewritten = (signed, self._matched)
            else:
                if not consistent and self._fork is None and self._prev is not None:
                    self._fork = (self._prev, signed)
                self._matched = size
                self.checked += 1
            self._prev, self._before, self._tail = signed, self.frontier.copy(), Frontier(size)

    def finish(self, events: int) -> None:
        """Raise for the first checkpoint the log (of `events` events) no longer extends."""
        if self._fork is not None:
            old, new = self._fork
            raise AuditChainBroken(
                f"the log forked: {old.where} ({old.size} events) and {new.where} ({new.size} "
                "events) are both signed with the log's key, but the second does not extend "
                "the first (their consistency proof fails); the log is the second one's, so its "
                f"first {old.size} events are not the ones the first checkpoint signed",
                hint="the key signed two histories: find out where the first one came from; "
                "the witnesses' copies show which one they saw",
            )
        if self._rewritten is not None:
            signed, matched = self._rewritten
            raise AuditChainBroken(
                f"the log no longer extends {signed.where}: its first {signed.size} events are "
                f"not the ones that were signed (the log was rewritten: an event from "
                f"#{matched + 1} to #{signed.size} was changed and the hashes after it "
                "recomputed)",
                hint="restore the database from a backup the checkpoints verify",
            )
        if self._next < len(self.signed):
            signed = self.signed[self._next]
            raise AuditChainBroken(
                f"the log no longer extends {signed.where}: it signed {signed.size} events and "
                f"the log has {events} (events #{events + 1} to #{signed.size} were removed "
                "from its end)",
                seq=events + 1,
                hint="restore the database from a backup the checkpoints verify",
            )

    @property
    def latest(self) -> int | None:
        return self.signed[-1].size if self.signed else None


# --- the log's leaves ------------------------------------------------------------------


async def _leaves_after(db: Database, after: int) -> list[bytes]:
    """The leaf hashes of the next page of events after the first `after`."""
    hashes = await asyncio.wait_for(audit_store.hashes_after(db, after), READ_TIMEOUT_S)
    return event_leaves(hashes)


async def _check_log(db: Database, check: ExtendsCheck, *, whole: bool = False) -> int:
    """Feed the log's leaves to `check`; with `whole`, the events past the largest checkpoint
    go on into check.frontier too (the Checkpointer keeps that tree). Returns the events read:
    the log's length when it ends before the largest checkpoint."""
    frontier = check.frontier
    while leaves := await _leaves_after(db, frontier.end):
        wanted = check.wanted
        if wanted:
            check.feed(leaves[:wanted])
            leaves = leaves[wanted:]
        if leaves:
            if not whole:
                return frontier.end + len(leaves)
            frontier.extend(leaves)
    return frontier.end


def _verifier(settings: Settings, signer: Signer | None, found: list) -> Verifier | None:
    if signer is not None:
        return Verifier(signer.vkey)
    if found:
        raise AuditChainBroken(
            f"checkpoints exist but the signing key {settings.audit_key_file} is gone",
            hint="restore the key (or set ACP_AUDIT_SIGNING_KEY); a new key cannot vouch for "
            "the old log",
        )
    return None


async def check_extends(settings: Settings, db: Database, spec: AuditCheckpoints | None) -> int:
    """At the service's start: raise AuditChainBroken naming the first checkpoint (file and
    size) the database no longer extends, so the service refuses a rewritten log. Returns how
    many signed checkpoints the log extends."""
    files = await asyncio.to_thread(read_checkpoints, checkpoint_dirs(settings, spec))
    verifier = _verifier(settings, load_signer(settings), files)
    if verifier is None:
        return 0
    check = ExtendsCheck(open_checkpoints(files, verifier))
    check.finish(await _check_log(db, check))
    return check.checked


# --- writing ---------------------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    """The whole file or nothing, even across a crash: a temp file, synced, renamed over."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_checkpoint(directory: Path, size: int, text: str) -> None:
    """`<size>.txt`, then `latest`, each written whole; the directory synced after."""
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomic(directory / f"{size}.txt", text)
    _write_atomic(directory / LATEST, text)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Checkpointer:
    """Signs checkpoints of the growing log and hands them to the witnesses; one per service.

    `open()` builds the frontier from the whole log and refuses (AuditChainBroken) a log that
    no longer extends the checkpoints already signed, so the service never signs a fork; then
    the frontier is fed only the new events. `run()` opens if needed.
    """

    def __init__(self, settings: Settings, db: Database, spec: AuditCheckpoints) -> None:
        self.settings, self.db, self.spec = settings, db, spec
        signer = load_signer(settings, create=True)
        if signer is None:  # pragma: no cover - create=True always returns one
            raise AcpError("no audit signing key")
        self.signer: Signer = signer
        self.frontier = Frontier()
        self.latest: Checkpoint | None = None
        self._signed = 0
        self._opened = False
        self._behind: set[str] = set()  # witnesses that missed the latest checkpoint
        self._lock = asyncio.Lock()

    @property
    def signed(self) -> int:
        """The size of the newest tree this checkpointer signed or found signed."""
        return self._signed

    async def open(self) -> int:
        """Build the tree from the log; raise if the log no longer extends its checkpoints.
        Returns how many checkpoints it extends."""
        async with self._lock:
            return await self._open()

    async def _open(self) -> int:
        files = await asyncio.to_thread(read_checkpoints, checkpoint_dirs(self.settings, self.spec))
        signed = open_checkpoints(files, Verifier(self.signer.vkey))
        check = ExtendsCheck(signed)
        check.finish(await _check_log(self.db, check, whole=True))
        self.frontier, self._opened = check.frontier, True
        if signed:
            self.latest, self._signed = signed[-1].checkpoint, signed[-1].size
        return check.checked

    async def _catch_up(self) -> None:
        head = await asyncio.wait_for(audit_store.last_seq(self.db), READ_TIMEOUT_S)
        while leaves := await _leaves_after(self.db, self.frontier.end):
            self.frontier.extend(leaves)
        if self.frontier.end < head:
            raise AuditChainBroken(
                f"the log has {self.frontier.end} events up to #{head}: one was deleted; "
                "no checkpoint is signed over it",
                hint="`acp audit verify` names the missing event",
            )

    async def checkpoint_now(self) -> Checkpoint | None:
        """Sign the log as it is now and hand the checkpoint out; the latest one when nothing
        was appended since (None while the log is empty)."""
        async with self._lock:
            if not self._opened:
                await self._open()
            await self._catch_up()
            size = self.frontier.end
            if size > self._signed:
                root = self.frontier.root()
                text = self.signer.checkpoint(size, root)
                self.latest, self._signed = Checkpoint(self.signer.name, size, root, text), size
                self._behind = set(self._destinations())
            if self.latest is not None and self._behind:
                await self._publish(self.latest)
            return self.latest

    def _destinations(self) -> list[str]:
        dirs = [str(d) for d in checkpoint_dirs(self.settings, self.spec)]
        return dirs + [w.http for w in self.spec.witnesses if w.http]

    async def _publish(self, checkpoint: Checkpoint) -> None:
        """Write to every directory and POST to every HTTP witness still behind; a failure is
        logged and retried with the next checkpoint (or the next tick)."""
        urls = [d for d in self._behind if d.startswith(("http://", "https://"))]
        for directory in sorted(self._behind - set(urls)):
            try:
                await asyncio.wait_for(
                    asyncio.to_thread(
                        write_checkpoint, Path(directory), checkpoint.size, checkpoint.text
                    ),
                    WRITE_TIMEOUT_S,
                )
                self._behind.discard(directory)
            except (OSError, TimeoutError) as error:
                log.error("checkpoint %d not written to %s: %s", checkpoint.size, directory, error)
        if urls:
            await self._post(checkpoint, urls)

    async def _post(self, checkpoint: Checkpoint, urls: list[str]) -> None:
        import httpx

        timeout = httpx.Timeout(WITNESS_TIMEOUT_S)
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            for url in urls:
                try:
                    response = await asyncio.wait_for(
                        client.post(
                            url,
                            content=checkpoint.text.encode(),
                            headers={"Content-Type": "text/plain; charset=utf-8"},
                        ),
                        WITNESS_TIMEOUT_S,
                    )
                    response.raise_for_status()
                    self._behind.discard(url)
                except (httpx.HTTPError, TimeoutError) as error:
                    log.warning(
                        "witness %s did not take checkpoint %d: %s", url, checkpoint.size, error
                    )

    def _due(self, last_signed: float) -> bool:
        new = self.frontier.end - self._signed
        if new >= self.spec.every_events:
            return True
        return new > 0 and time.monotonic() - last_signed >= self.spec.every_seconds

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: catch up with the log every tick, sign when due, retry witnesses that
        missed one; sign the rest when stopped. Raises AuditChainBroken at once if the log no
        longer extends its checkpoints; any later failure is logged and the next tick retries."""
        if not self._opened:
            await self.open()
        tick = min(1.0, self.spec.every_seconds)
        last_signed, last_error = time.monotonic(), ""
        while True:
            stopping = stop.is_set()
            try:
                async with self._lock:
                    await self._catch_up()
                    due = self._due(last_signed) or (stopping and self.frontier.end > self._signed)
                if due or self._behind:
                    await asyncio.wait_for(self.checkpoint_now(), READ_TIMEOUT_S)
                    if due:
                        last_signed = time.monotonic()
                last_error = ""
            except Exception as error:  # the loop outlives any one failure: the next tick retries
                if str(error) != last_error:  # once per distinct failure, not every tick
                    log.error("no checkpoint signed: %s", error, exc_info=True)
                last_error = str(error)
            if stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick)
