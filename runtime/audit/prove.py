"""Inclusion proofs: that a job's events are in the log a signed checkpoint vouches for.

The bundle holds the checkpoint, the public key and, per event, its stored fields (so its hash
is recomputed, not trusted), its leaf index and its RFC 6962 audit path. scripts/
verify_audit_proof.py checks one with nothing but Python and `cryptography`. Reads only.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from runtime.audit.checkpoints import checkpoint_dirs, open_checkpoints, read_checkpoints
from runtime.audit.merkle import Tree, event_leaves
from runtime.audit.note import Verifier, load_signer
from runtime.errors import AcpError, AuditChainBroken
from runtime.store import audit_store

if TYPE_CHECKING:
    from runtime.audit.checkpoints import Checkpointer
    from runtime.policy.schema import AuditCheckpoints
    from runtime.settings import Settings
    from runtime.store.database import Database

# What the bundle carries of each event: every stored field its chain hash is computed over.
EVENT_FIELDS = ("seq", "ts", "job_id", "kind", "actor", "artifacts", "data", "prev_hash", "hash")


async def prove_job(
    db: Database,
    settings: Settings,
    job_id: int,
    checkpointer: Checkpointer | None = None,
    *,
    spec: AuditCheckpoints | None = None,
) -> dict[str, Any]:
    """Inclusion proofs of every event of the job against the newest signed checkpoint, as
    one JSON-serialisable bundle. The service passes its `checkpointer`, which first signs the
    events appended since its last checkpoint; without one (an offline copy) the seqs of the
    events newer than the newest checkpoint are listed under "newer", with no proof."""
    from runtime.jobs import format_job_id

    if checkpointer is not None:
        await checkpointer.checkpoint_now()
    signer = load_signer(settings)
    if signer is None:
        raise AcpError(
            "no audit signing key: no checkpoint can vouch for the events",
            hint="the service makes its key at its first start",
        )
    files = await asyncio.to_thread(read_checkpoints, checkpoint_dirs(settings, spec))
    signed = open_checkpoints(files, Verifier(signer.vkey))
    if not signed:
        raise AcpError("no signed checkpoint yet", hint="the service signs one within seconds")
    checkpoint = signed[-1].checkpoint
    rows = await audit_store.event_rows(db, job_id)
    if not rows:
        raise AcpError(f"{format_job_id(job_id)} has no events")
    tree = Tree(await _leaves(db, checkpoint.size))
    if tree.size < checkpoint.size or tree.root(checkpoint.size) != checkpoint.root:
        raise AuditChainBroken(
            f"the log no longer extends {signed[-1].where}: no proof can be made against it",
            hint="`acp audit verify` says what changed",
        )
    events, newer = [], [row["seq"] for row in rows if row["seq"] > checkpoint.size]
    for row in rows[: len(rows) - len(newer)]:
        index = row["seq"] - 1
        proof = tree.inclusion_proof(index, checkpoint.size)
        events.append(
            {**{k: row[k] for k in EVENT_FIELDS}, "index": index, "proof": [p.hex() for p in proof]}
        )
    # Events newer than the checkpoint are named, never silently left out.
    return {"checkpoint": checkpoint.text, "key": signer.vkey, "events": events, "newer": newer}


async def _leaves(db: Database, size: int) -> list[bytes]:
    """The first `size` leaf hashes of the log (fewer if it is shorter)."""
    leaves: list[bytes] = []
    while len(leaves) < size and (hashes := await audit_store.hashes_after(db, len(leaves))):
        leaves += event_leaves(hashes[: size - len(leaves)])
    return leaves
