"""Inclusion proofs: that a job's events are in the log a signed checkpoint vouches for.

The bundle holds the checkpoint, the public key and, per event, its stored fields (so its hash
is recomputed, not trusted), its leaf index and its audit path. scripts/verify_audit_proof.py
checks one with nothing but Python and `cryptography`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.audit.merkle import event_leaf, inclusion_proof
from runtime.audit.note import Verifier, load_signer, read_checkpoints
from runtime.errors import AcpError
from runtime.store import audit_store

if TYPE_CHECKING:
    from runtime.audit.checkpoints import Checkpointer
    from runtime.settings import Settings
    from runtime.store.database import Database


async def prove_job(
    db: Database, settings: Settings, job_id: int, checkpointer: Checkpointer | None = None
) -> dict[str, Any]:
    """Proofs of every event of the job against the newest checkpoint; the service signs a
    fresh one first (`checkpointer`), an auditor's copy uses the newest it has."""
    import asyncio

    from runtime.audit.checkpoints import checkpoint_dirs
    from runtime.jobs import format_job_id

    if checkpointer is not None:
        await checkpointer.checkpoint_now()
    signer = load_signer(settings)
    if signer is None:
        raise AcpError("no audit signing key: no checkpoint can vouch for the events",
                       hint="the service makes its key at its first start")  # fmt: skip
    found = await asyncio.to_thread(read_checkpoints, checkpoint_dirs(settings, None))
    if not found:
        raise AcpError("no signed checkpoint yet", hint="the service signs one within seconds")
    path, text = found[-1]
    checkpoint = Verifier(signer.vkey).open(text, str(path))
    events = [e for e in await audit_store.event_rows(db, job_id)]
    if not events:
        raise AcpError(f"{format_job_id(job_id)} has no events")
    leaves: list[bytes] = []
    while hashes := await audit_store.hashes_after(db, len(leaves)):
        leaves.extend(event_leaf(h) for h in hashes)
        if len(leaves) >= checkpoint.size:
            break
    out = []
    for row in events:
        index = row["seq"] - 1
        if index >= checkpoint.size:
            continue  # appended after the checkpoint: the next one covers it
        proof = inclusion_proof(leaves, index, checkpoint.size)
        out.append({
            **{k: row[k] for k in ("seq", "ts", "job_id", "kind", "actor", "artifacts", "data",
                                   "prev_hash", "hash")},
            "index": index, "proof": [p.hex() for p in proof],
        })  # fmt: skip
    return {"checkpoint": checkpoint.text, "key": signer.vkey, "events": out}
