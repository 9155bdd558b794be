"""The audit log as OCSF (Open Cybersecurity Schema Framework 1.1) events, for a SIEM.

Every event is an API Activity (class 6003, category 6 Application Activity): something an
actor asked of the control plane's API, with its outcome. activity_id follows the verb (create
for received/created/submitted, update for approvals and state changes, delete for revoke and
rollback, other for the rest), type_uid = class_uid * 100 + activity_id. A refusal
(`*.refused`, a denial) has status Failure. The actor's person is actor.user.name; how the door
authenticated them (`cli socket uid 1000`, `token tok_3f2a9c1b`, `slack signature U0…`) is
`unmapped.auth`, beside the original actor string. Our own fields
(job, data, artifacts, hashes) are under `unmapped`, so nothing is dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

CLASS_UID, CATEGORY_UID, OCSF_VERSION = 6003, 6, "1.1.0"
_CREATE = ("received", "created", "submitted", "requested", "queued")
_DELETE = ("revoked", "rolled_back", "deleted", "cancelled")
_OLD = re.compile(r"^(?P<person>[^()]+) \((?P<door>[a-z]+):(?P<identity>.*)\)$")


def parse_actor(actor: str) -> dict[str, str | None]:
    """`alice via cli socket uid 1000` / `alice (cli:alice)` / `worker:ab12` / `scheduler`."""
    person, sep, how = actor.partition(" via ")
    if sep:
        return {"person": person, "auth": how, "kind": "person"}
    old = _OLD.match(actor)
    if old:
        return {"person": old["person"], "auth": f"{old['door']} {old['identity']} (asserted)",
                "kind": "person"}  # fmt: skip
    return {"person": None, "auth": "the service itself", "kind": "system"}


def _activity(kind: str) -> tuple[int, str]:
    verb = kind.rsplit(".", 1)[-1]
    if verb in _CREATE:
        return 1, "Create"
    if verb in _DELETE:
        return 4, "Delete"
    if verb in ("granted", "rejected", "answered", "merged", "started", "succeeded", "failed"):
        return 3, "Update"
    return 99, "Other"


def to_ocsf(event: Any, *, product_version: str) -> dict[str, Any]:
    who = parse_actor(event.actor)
    activity_id, activity = _activity(event.kind)
    refused = event.kind.endswith((".refused", ".denied")) or event.data.get("to") == "denied"
    when = datetime.fromisoformat(event.ts)
    actor: dict[str, Any] = {"app_name": "agent-control-plane"}
    if who["person"]:
        actor["user"] = {"name": who["person"], "type": "User", "type_id": 1}
    else:
        actor["user"] = {"name": event.actor, "type": "System", "type_id": 3}
    return {
        "class_uid": CLASS_UID,
        "class_name": "API Activity",
        "category_uid": CATEGORY_UID,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": activity,
        "type_uid": CLASS_UID * 100 + activity_id,
        "time": int(when.timestamp() * 1000),
        "severity_id": 3 if refused else 1,
        "severity": "Medium" if refused else "Informational",
        "status_id": 2 if refused else 1,
        "status": "Failure" if refused else "Success",
        "message": event.data.get("message") or event.data.get("reason") or event.kind,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": str(event.seq),
            "correlation_uid": f"J-{event.job_id}" if event.job_id is not None else None,
            "original_time": event.ts,
            "product": {
                "name": "agent-control-plane",
                "vendor_name": "agent-control-plane",
                "version": product_version,
            },
        },
        "actor": actor,
        "api": {"operation": event.kind},
        "unmapped": {
            "actor": event.actor,
            "auth": who["auth"],
            "job": f"J-{event.job_id}" if event.job_id is not None else None,
            "data": event.data,
            "artifacts": list(event.artifacts),
            "prev_hash": event.prev_hash,
            "hash": event.hash,
        },
    }


def ocsf_lines(events: Iterable[Any], product_version: str) -> Iterator[str]:
    for event in events:
        yield json.dumps(to_ocsf(event, product_version=product_version), ensure_ascii=False)
