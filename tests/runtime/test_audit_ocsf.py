"""`acp audit export --format ocsf`: every event an OCSF API Activity a SIEM can ingest, with
the authenticated identity on each (validated by the py-ocsf-models schema)."""

from __future__ import annotations

import json

from py_ocsf_models.events.base_event import BaseEvent

from runtime.audit import AuditEvent
from runtime.audit.ocsf import ocsf_lines

ACTORS = {
    "alice via cli socket uid 1000": ("alice", "cli socket uid 1000"),
    "bob via token tok_3f2a9c1b": ("bob", "token tok_3f2a9c1b"),
    "alice via slack signature U0ALICE001": ("alice", "slack signature U0ALICE001"),
    "carol (cli:carol)": ("carol", "cli carol (asserted)"),
    "worker:ab12cd": (None, "the service itself"),
}


def event(seq: int, kind: str, actor: str, data: dict | None = None) -> AuditEvent:
    return AuditEvent(seq=seq, ts="2026-12-02T10:00:00.123456+00:00", job_id=7, kind=kind,
                      actor=actor, data=data or {}, artifacts=["ab" * 32], prev_hash="0" * 64,
                      hash="f" * 64)  # fmt: skip


def test_every_event_is_valid_ocsf_with_who_and_how():
    events = [event(i, "approval.granted", a) for i, a in enumerate(ACTORS, 1)]
    events.append(event(9, "approve.refused", "alice via cli socket uid 1000",
                        {"message": "four-eyes", "path": "x-\\udcff", "é": "ü"}))  # fmt: skip
    lines = list(ocsf_lines(events, product_version="0.1.0"))
    assert len(lines) == len(events)
    for line, (actor, (person, auth)) in zip(lines, ACTORS.items(), strict=False):
        record = json.loads(line)
        BaseEvent.model_validate(record)
        assert record["class_uid"] == 6003 and record["type_uid"] == 600303
        assert record["time"] == 1796205600123  # 2026-12-02T10:00:00.123Z in ms
        assert record["unmapped"]["actor"] == actor and record["unmapped"]["auth"] == auth
        if person:
            assert record["actor"]["user"]["name"] == person
        assert record["metadata"]["correlation_uid"] == "J-7"
        assert record["status"] == "Success"
    refused = json.loads(lines[-1])
    BaseEvent.model_validate(refused)
    assert refused["status_id"] == 2 and refused["status"] == "Failure"
    assert refused["unmapped"]["data"]["é"] == "ü"
