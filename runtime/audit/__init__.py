"""The hash-chained audit log: append, verify, export; and the content-addressed artifact store.

Each event's hash is SHA-256 over the previous hash and the event's stored fields, so any
edit, deletion or reordering breaks the chain at a nameable event. Never UPDATE or DELETE here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from runtime.audit.merkle import event_leaves
from runtime.errors import AcpError, AuditChainBroken
from runtime.jobs import ArtifactRef
from runtime.secrets import redactor
from runtime.store import audit_store
from runtime.store.database import Database
from runtime.untrusted import escape_json_text, escape_text

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from runtime.audit.checkpoints import ExtendsCheck
    from runtime.policy.schema import AuditCheckpoints
    from runtime.settings import Settings

GENESIS = "0" * 64


def canonical_json(data: Any) -> str:
    """The stored form of an event's data. Untrusted text in it (a model's tool arguments, a
    file name) may hold lone surrogates that UTF-8 cannot carry; they are written as visible
    \\udXXX text, so the attempt is still recorded and its hash still verifies."""
    return escape_json_text(
        json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    )


def event_hash(
    prev_hash: str,
    seq: int,
    ts: str,
    job_id: int | None,
    kind: str,
    actor: str,
    artifacts: str,
    data: str,
) -> str:
    job = "" if job_id is None else job_id
    line = f"{prev_hash}\n{seq}\n{ts}\n{job}\n{kind}\n{actor}\n{artifacts}\n"
    return hashlib.sha256(line.encode() + data.encode()).hexdigest()


@dataclass(frozen=True)
class NewEvent:
    kind: str
    actor: str
    job_id: int | None = None
    data: dict[str, Any] | None = None
    artifacts: Sequence[str] = ()


class AuditEvent(BaseModel):
    seq: int
    ts: str
    job_id: int | None
    kind: str
    actor: str
    data: dict[str, Any]
    artifacts: list[str]
    prev_hash: str
    hash: str


class VerifyReport(BaseModel):
    events: int
    head: str
    artifacts_checked: int
    checkpoints_checked: int | None = None  # None: no key to check checkpoints with
    latest_checkpoint: int | None = None


async def append(conn: AsyncConnection, db: Database, event: NewEvent) -> AuditEvent:
    """Append one event inside the caller's transaction (so it commits with the state change)."""
    return (await append_many(conn, db, [event]))[0]


async def append_many(
    conn: AsyncConnection, db: Database, events: Sequence[NewEvent]
) -> list[AuditEvent]:
    # Serialises appenders so two transactions never both extend the same head.
    await audit_store.lock_chain(conn, db)
    head = await audit_store.chain_head(conn)
    seq, prev = head if head else (0, GENESIS)
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    rows, out = [], []
    scrub = redactor()  # scan the environment for secret values once per batch
    for event in events:
        seq += 1
        data = scrub(canonical_json(event.data or {}))
        artifacts = " ".join(event.artifacts)
        kind, actor = escape_text(event.kind), escape_text(event.actor)
        digest = event_hash(prev, seq, ts, event.job_id, kind, actor, artifacts, data)
        rows.append(
            {
                "seq": seq,
                "ts": ts,
                "job_id": event.job_id,
                "kind": kind,
                "actor": actor,
                "data": data,
                "artifacts": artifacts,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    await audit_store.insert_events(conn, rows)
    for row in rows:
        out.append(
            AuditEvent(
                **{
                    **row,
                    "data": json.loads(row["data"]),
                    "artifacts": list(filter(None, row["artifacts"].split(" "))),
                }
            )
        )
    return out


# The chain's rows in seq order, a page at a time (bench/audit_rate.py reads them this way too).
_rows = audit_store.chain_rows


class _ChainWalker:
    """Checks rows in seq order and remembers where it is; the same for every backend. With an
    ExtendsCheck it also feeds the rows' leaf hashes to the Merkle tree, up to the largest
    signed checkpoint."""

    def __init__(self, artifacts: ArtifactStore | None, check: ExtendsCheck | None = None) -> None:
        self.artifacts, self.extends = artifacts, check
        self.expected_seq, self.prev, self.count, self.checked = 1, GENESIS, 0, 0

    def feed(self, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        digests = [row[8] for row in rows]
        if self._intact(rows, digests):
            if self.artifacts is not None:
                for row in [row for row in rows if row[5]]:
                    self._check_artifacts(row[0], row[3], row[5])
        else:
            self._walk(rows)  # one event at a time, to name the first bad one
        self.expected_seq += len(rows)
        self.count += len(rows)
        self.prev = digests[-1]
        if self.extends is not None and (wanted := self.extends.wanted):
            self.extends.feed(event_leaves(digests[:wanted]))

    def _intact(self, rows: Sequence[Sequence[Any]], digests: list[str]) -> bool:
        """The whole page at once (list comprehensions, no per-row branches): seqs without a
        gap, each prev_hash the hash before it, each hash recomputed from the fields."""
        first = rows[0][0]
        if first != self.expected_seq or rows[-1][0] != first + len(rows) - 1:
            return False  # seq is the primary key, so sorted and unique: no gap in between
        if [row[7] for row in rows] != [self.prev, *digests[:-1]]:
            return False
        sha256 = hashlib.sha256
        # The same line event_hash() builds, in one f-string per row (short names keep it one).
        computed = [
            sha256(
                f"{p}\n{s}\n{t}\n{'' if j is None else j}\n{k}\n{a}\n{r}\n{d}".encode()
            ).hexdigest()
            for s, t, j, k, a, r, d, p, _ in rows
        ]
        return computed == digests

    def _walk(self, rows: Sequence[Sequence[Any]]) -> None:
        expected_seq, prev = self.expected_seq, self.prev
        sha256 = hashlib.sha256
        for seq, ts, job_id, kind, actor, arts, data, prev_hash, digest in rows:
            if seq != expected_seq:
                raise AuditChainBroken(
                    f"event #{expected_seq} is missing: the log jumps from #{expected_seq - 1} "
                    f"to #{seq}",
                    seq=expected_seq,
                )
            if prev_hash != prev:
                raise AuditChainBroken(
                    f"event #{seq} does not follow event #{seq - 1}: its link to the previous "
                    "hash is broken (deleted, inserted or reordered)",
                    seq=seq,
                )
            job = "" if job_id is None else job_id
            line = f"{prev}\n{seq}\n{ts}\n{job}\n{kind}\n{actor}\n{arts}\n"
            if sha256(line.encode() + data.encode()).hexdigest() != digest:
                raise AuditChainBroken(
                    f"event #{seq} ({kind}) was altered: its content no longer matches its hash",
                    seq=seq,
                )
            if arts and self.artifacts is not None:
                self._check_artifacts(seq, kind, arts)
            prev, expected_seq = digest, expected_seq + 1

    def _check_artifacts(self, seq: int, kind: str, arts: str) -> None:
        assert self.artifacts is not None
        for ref in arts.split(" "):
            problem = self.artifacts.check(ref)
            if problem:
                raise AuditChainBroken(
                    f"artifact {ref[:12]}… referenced by event #{seq} ({kind}) {problem}",
                    seq=seq,
                )
            self.checked += 1

    def report(self) -> VerifyReport:
        return VerifyReport(events=self.count, head=self.prev, artifacts_checked=self.checked)


def _verify_sqlite(path: Path, walker: _ChainWalker) -> None:
    """One SELECT on a plain sqlite3 connection, in a worker thread.

    One statement is one read transaction: a consistent WAL snapshot that takes no write lock,
    so appenders keep going while it runs; and no per-page thread hops or Row objects.
    """
    with contextlib.closing(audit_store.sqlite_chain_rows(path)) as pages:
        for rows in pages:
            walker.feed(rows)


async def verify(
    db: Database,
    artifacts: ArtifactStore | None,
    *,
    settings: Settings | None = None,
    checkpoint_dirs: Sequence[Path] = (),
    public_key: str | None = None,
    spec: AuditCheckpoints | None = None,
) -> VerifyReport:
    """Walk the chain from the first event and check the log extends every signed checkpoint
    it can read: ACP_HOME/checkpoints and the directory witnesses (from `settings` and `spec`)
    and `checkpoint_dirs`, with `public_key` (a verifier key), else the service's own key.
    Raise AuditChainBroken naming the first bad event, or the first checkpoint the log no
    longer extends. An auditor passes a copy of the database, the checkpoint directories and
    the public key, and no settings; `artifacts` None skips the artifact files."""
    from runtime.audit import checkpoints
    from runtime.audit.note import Verifier, load_signer

    for directory in checkpoint_dirs:
        if not directory.is_dir():
            raise AcpError(f"no checkpoint directory {directory}")
    dirs = [*(checkpoints.checkpoint_dirs(settings, spec) if settings else []), *checkpoint_dirs]
    files = await asyncio.to_thread(checkpoints.read_checkpoints, dirs)
    verifier = None
    if public_key:
        verifier = Verifier(public_key)
    elif settings is not None and (signer := load_signer(settings)) is not None:
        verifier = Verifier(signer.vkey)
    if verifier is None and files:
        raise AuditChainBroken(
            f"{len(files)} checkpoints found but no public key to check them with",
            hint="pass --key (`acp audit key` on the service prints it)",
        )
    check = None
    if verifier is not None:
        check = checkpoints.ExtendsCheck(checkpoints.open_checkpoints(files, verifier))
    walker = _ChainWalker(artifacts, check)
    if db.sqlite_path is not None:
        await asyncio.to_thread(_verify_sqlite, db.sqlite_path, walker)
    else:
        async for rows in _rows(db):
            walker.feed(rows)
    report = walker.report()
    if check is None:
        return report
    check.finish(report.events)
    return report.model_copy(
        update={"checkpoints_checked": check.checked, "latest_checkpoint": check.latest}
    )


async def events_for(db: Database, job_id: int | None = None) -> list[AuditEvent]:
    rows = await audit_store.event_rows(db, job_id)
    return [
        AuditEvent(
            **{
                **row,
                "data": json.loads(row["data"]),
                "artifacts": [a for a in row["artifacts"].split(" ") if a],
            }
        )
        for row in rows
    ]


class ArtifactStore:
    """Files stored by content hash under ACP_HOME/artifacts; events reference the hash."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:]

    def put(self, name: str, content: bytes, media_type: str = "text/plain") -> ArtifactRef:
        digest = hashlib.sha256(content).hexdigest()
        path = self.path_for(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(content)
            os.chmod(tmp, 0o444)
            os.replace(tmp, path)
        return ArtifactRef(name=name, sha256=digest, size=len(content), media_type=media_type)

    def read(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()

    def check(self, sha256: str) -> str | None:
        path = self.path_for(sha256)
        if not path.exists():
            return "is missing from the artifact store"
        if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
            return "was changed after it was recorded"
        return None


async def search_events(
    db: Database, *, since: datetime | None = None, until: datetime | None = None, **where: Any
) -> list[AuditEvent]:
    """The newest events matching a search (runtime.store.audit_store.search_rows)."""
    rows = await audit_store.search_rows(
        db,
        since=since.isoformat() if since else None,
        until=until.isoformat() if until else None,
        **where,
    )
    return [
        AuditEvent(**{**row, "data": json.loads(row["data"]),
                      "artifacts": [a for a in row["artifacts"].split(" ") if a]})
        for row in rows
    ]  # fmt: skip


async def event_at(db: Database, seq: int) -> AuditEvent | None:
    row = await audit_store.event_row(db, seq)
    if row is None:
        return None
    return AuditEvent(
        **{
            **row,
            "data": json.loads(row["data"]),
            "artifacts": [a for a in row["artifacts"].split(" ") if a],
        }
    )
