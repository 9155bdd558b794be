"""One job's recorder: its events on the hash-chained log and its artifacts in the store.

What a kind, a tool or a model client writes about a job goes through here; none of them
touches the job's state. Events a door should hear about (a tool ran, a mutation was sent)
are queued for the requester's door in the same transaction as the event.
"""

from __future__ import annotations

from typing import Any

from runtime import audit
from runtime.audit import ArtifactStore, AuditEvent, NewEvent
from runtime.jobs import ArtifactRef, ModelUse
from runtime.store import job_store, outbox
from runtime.store.database import Database

# Events that are not state changes but that the requester's door should still hear about.
NOTIFY_KINDS = frozenset(
    {
        "tool.shell",
        "tool.refused",
        "approval.invalidated",
        "browser.mutation_sent",
        "browser.session_closed",
    }
)


async def log_event(
    db: Database,
    job_id: int | None,
    kind: str,
    actor: str,
    data: dict[str, Any] | None = None,
    artifacts: tuple[str, ...] = (),
) -> AuditEvent:
    """An audit event that does not change a job's state (a tool call, an artifact)."""
    async with db.begin() as conn:
        event = await audit.append(conn, db, NewEvent(kind, actor, job_id, data, artifacts))
        if job_id is not None and kind in NOTIFY_KINDS:
            reply_to = await job_store.reply_to_of(conn, job_id)
            if reply_to:
                await outbox.enqueue(conn, reply_to["door"], job_id, kind, {"seq": event.seq})
        return event


class JobRecorder:
    """Implements runtime.kinds.base.Recorder over the database and the artifact store.

    With keeps=False (a replay) events are not written; artifacts can still be read.
    """

    def __init__(
        self, db: Database, artifacts: ArtifactStore, job_id: int, actor: str, *, keeps=True
    ):
        self.db = db
        self.artifacts = artifacts
        self.job_id = job_id
        self.actor = actor
        self.keeps = keeps

    def as_actor(self, actor: str) -> JobRecorder:
        return JobRecorder(self.db, self.artifacts, self.job_id, actor, keeps=self.keeps)

    async def log(
        self, kind: str, data: dict[str, Any] | None = None, artifacts: tuple[str, ...] = ()
    ) -> None:
        if self.keeps:
            await log_event(self.db, self.job_id, kind, self.actor, data, artifacts)

    def put(self, name: str, data: bytes, media_type: str = "text/plain") -> ArtifactRef:
        return self.artifacts.put(name, data, media_type)

    def read(self, sha256: str) -> bytes:
        return self.artifacts.read(sha256)

    async def events(self) -> list[AuditEvent]:
        return await audit.events_for(self.db, self.job_id)

    async def model_call(
        self, data: dict[str, Any], artifacts: tuple[str, ...], usage: ModelUse
    ) -> None:
        """A model call's event and the job's new usage totals, in one transaction."""
        if not self.keeps:
            return
        async with self.db.begin() as conn:
            await audit.append(
                conn, self.db, NewEvent("model.call", self.actor, self.job_id, data, artifacts)
            )
            await job_store.save_model_use(conn, self.job_id, usage.model_dump(mode="json"))

    async def team_spend_today(self, team: str | None) -> float:
        start = job_store.utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
        async with self.db.engine.connect() as conn:
            return await job_store.team_spend_since(conn, team, start, excluding=self.job_id)
