"""Signed checkpoints of the audit log, written outside the database.

The service's Checkpointer keeps the log's Merkle frontier in memory and, every N events or
T seconds when anything was appended (policy: audit.checkpoints), signs the tree size and root
(runtime.audit.note) and writes the checkpoint to ACP_HOME/checkpoints and to every witness: a
directory (another disk) or an HTTP endpoint. Someone with write access to the database cannot
sign, so a rewritten, truncated or forked log no longer extends the checkpoints already out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.audit.merkle import Frontier, event_leaf
from runtime.audit.note import Checkpoint, Signer, Verifier, load_signer, read_checkpoints
from runtime.errors import AuditChainBroken
from runtime.store import audit_store

if TYPE_CHECKING:
    from runtime.policy.schema import AuditCheckpoints
    from runtime.settings import Settings
    from runtime.store.database import Database

log = logging.getLogger("acp.audit")
WITNESS_TIMEOUT_S = 5.0


def checkpoint_dirs(settings: Settings, spec: AuditCheckpoints | None) -> list[Path]:
    dirs = [settings.checkpoints_dir]
    if spec is not None:
        dirs += [Path(w.directory).expanduser() for w in spec.witnesses if w.directory]
    return dirs


def _write(directory: Path, size: int, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in (f"{size}.txt", "latest"):
        tmp = directory / f".{name}.tmp{os.getpid()}"
        tmp.write_text(text)
        os.replace(tmp, directory / name)


class Checkpointer:
    """Signs checkpoints of the growing log; one per service."""

    def __init__(self, settings: Settings, db: Database, spec: AuditCheckpoints) -> None:
        self.settings, self.db, self.spec = settings, db, spec
        signer = load_signer(settings, create=True)
        assert signer is not None
        self.signer: Signer = signer
        self.frontier = Frontier()
        self.signed = 0
        self.latest: Checkpoint | None = None
        self._lock = asyncio.Lock()

    async def _catch_up(self) -> None:
        while hashes := await audit_store.hashes_after(self.db, self.frontier.size):
            for digest in hashes:
                self.frontier.append(event_leaf(digest))

    async def checkpoint_now(self) -> Checkpoint | None:
        """Sign the log as it is now (nothing when nothing was appended since the last)."""
        async with self._lock:
            await self._catch_up()
            size = self.frontier.size
            if size == 0 or size == self.signed:
                return self.latest
            text = self.signer.checkpoint(size, self.frontier.root())
            for directory in checkpoint_dirs(self.settings, self.spec):
                try:
                    await asyncio.to_thread(_write, directory, size, text)
                except OSError as error:
                    log.error("checkpoint %d not written to %s: %s", size, directory, error)
            await self._post(text)
            self.signed = size
            self.latest = Checkpoint(self.signer.name, size, self.frontier.root(), text)
            return self.latest

    async def _post(self, text: str) -> None:
        urls = [w.http for w in self.spec.witnesses if w.http]
        if not urls:
            return
        import httpx

        async with httpx.AsyncClient(timeout=WITNESS_TIMEOUT_S, trust_env=False) as client:
            for url in urls:
                try:
                    response = await client.post(
                        url, content=text, headers={"Content-Type": "text/plain"}
                    )
                    response.raise_for_status()
                except httpx.HTTPError as error:  # retried with the next checkpoint
                    log.warning("witness %s did not take the checkpoint: %s", url, error)

    async def run(self, stop: asyncio.Event) -> None:
        await self.checkpoint_now()
        last = time.monotonic()
        tick = min(1.0, self.spec.every_seconds)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick)
            try:
                head = await audit_store.last_seq(self.db)
                due = head - self.signed >= self.spec.every_events or (
                    head > self.signed and time.monotonic() - last >= self.spec.every_seconds
                )
                if due or (stop.is_set() and head > self.signed):
                    await asyncio.wait_for(self.checkpoint_now(), 60)
                    last = time.monotonic()
            except Exception:  # never let the checkpointer die: the next tick retries
                log.exception("checkpoint failed")


def check_against(
    checkpoints: list[tuple[Path, str]], verifier: Verifier, roots: dict[int, bytes], events: int
) -> tuple[int, int | None]:
    """Check each checkpoint's signature and that the log extends it (`roots`: the log's root
    at each checkpoint size, `events`: its size). Raises naming the first that fails; returns
    (how many were checked, the largest tree size signed)."""
    opened = [(path, verifier.open(text, str(path))) for path, text in checkpoints]
    by_size: dict[int, tuple[Path, Checkpoint]] = {}
    for path, cp in opened:
        seen = by_size.get(cp.size)
        if seen is not None and seen[1].root != cp.root:
            raise AuditChainBroken(
                f"checkpoints {seen[0]} and {path} both sign a log of {cp.size} events with "
                "different roots: the log forked",
                hint="one of them is not this log's; compare with the witnesses' copies",
            )
        by_size[cp.size] = (path, cp)
    for size in sorted(by_size):
        path, cp = by_size[size]
        if size > events:
            raise AuditChainBroken(
                f"the log no longer extends checkpoint {path}: it signed {size} events and "
                f"the log has {events} (events were removed from its end)",
                seq=events + 1,
            )
        if roots.get(size) != cp.root:
            raise AuditChainBroken(
                f"the log no longer extends checkpoint {path}: its first {size} events are not "
                "the ones that were signed (the log was rewritten)",
                hint="an event at or before #{size} was changed and the chain recomputed",
                seq=size,
            )
    return len(opened), (max(by_size) if by_size else None)


async def check_extends(settings: Settings, db: Database, spec: AuditCheckpoints) -> int:
    """At the service's start: refuse a database that no longer extends its checkpoints.
    Returns how many checkpoints were checked."""
    found = await asyncio.to_thread(read_checkpoints, checkpoint_dirs(settings, spec))
    if not found:
        return 0
    signer = load_signer(settings)
    if signer is None:
        raise AuditChainBroken(
            f"checkpoints exist but the signing key {settings.audit_key_file} is gone",
            hint="restore the key (or set ACP_AUDIT_SIGNING_KEY); a new key cannot vouch for "
            "the old log",
        )
    verifier = Verifier(signer.vkey)
    sizes = {verifier.open(text, str(path)).size for path, text in found}
    frontier, roots = Frontier(), {}
    while hashes := await audit_store.hashes_after(db, frontier.size):
        for digest in hashes:
            frontier.append(event_leaf(digest))
            if frontier.size in sizes:
                roots[frontier.size] = frontier.root()
    checked, _ = check_against(found, verifier, roots, frontier.size)
    return checked
