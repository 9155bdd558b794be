"""Personal API tokens in runtime.tokens, on a real database (SQLite and PostgreSQL): only a
hash is kept, a token proves its person until it is revoked or expires, scopes are checked,
and creating and revoking are audit events that never hold the secret."""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import timedelta

import pytest
from sqlalchemy import event, text

from runtime import audit, tokens
from runtime.errors import BadRequest, ScopeMissing, Unauthenticated
from runtime.store import migrate
from runtime.store.database import Database
from runtime.store.job_store import utcnow

ADMIN = "carol (cli:carol)"


@pytest.fixture
async def db(db_url: str):
    database = Database(db_url)
    await migrate.upgrade(database)
    yield database
    await database.close()


async def make(
    db: Database, scopes: list[str] | None = None, **overrides: object
) -> tuple[str, tokens.TokenInfo]:
    options = {"person": "bob", "expires_in": None, "created_by": ADMIN, "max_days": 90}
    return await tokens.create_token(db, scopes=scopes or [], **{**options, **overrides})


async def token_events(db: Database) -> list[audit.AuditEvent]:
    return [e for e in await audit.events_for(db) if e.kind.startswith("token.")]


async def table_text(db: Database, table: str) -> str:
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
    return "\n".join(" ".join(str(value) for value in row) for row in rows)


async def test_a_new_token_authenticates_as_its_person(db):
    secret, info = await make(db, ["submit"])

    assert re.fullmatch(r"tok_[0-9a-f]{8}", info.id) and info.short == info.id
    assert secret.startswith(f"acp_{info.id[4:]}_") and len(secret) > 40
    found = await tokens.authenticate(db, secret)
    assert (found.id, found.person, found.created_by) == (info.id, "bob", ADMIN)
    assert found.scopes == ["read", "submit"], "read is always included"
    assert found.created_at.tzinfo is not None and found.expires_at is not None
    assert found.expires_at - found.created_at == timedelta(days=90), "no lifetime: max_days"


async def test_only_the_hash_of_the_secret_is_stored_or_recorded(db):
    secret, info = await make(db, ["approve"])
    await tokens.authenticate(db, secret)
    await tokens.revoke_token(db, info.id, by=ADMIN)

    stored = await table_text(db, "api_tokens")
    assert info.id in stored and hashlib.sha256(secret.encode()).hexdigest() in stored
    random_part = secret.rsplit("_", 1)[1]
    recorded = await table_text(db, "audit_events")
    assert "token.created" in recorded and "token.revoked" in recorded
    for where in (stored, recorded):
        assert secret not in where and random_part not in where
    if db.sqlite_path is not None:  # nor anywhere in the file (or its write-ahead log)
        for path in db.sqlite_path.parent.glob(f"{db.sqlite_path.name}*"):
            assert random_part.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    "forge",
    [
        lambda s: s[:-2] + ("xx" if not s.endswith("xx") else "yy"),  # wrong secret, right id
        lambda s: s + "a",
        lambda s: s.replace("acp_", "acq_", 1),
        lambda s: "acp_" + s.split("_")[1],  # no secret part
        lambda s: "acp_0000000_" + s.rsplit("_", 1)[1],  # a 7-character id
        lambda s: "acp_00000000_" + s.rsplit("_", 1)[1],  # an id no token has
        lambda s: "Bearer " + s,
        lambda s: "",
    ],
    ids=["wrong", "longer", "prefix", "no-secret", "short-id", "unknown-id", "bearer", "empty"],
)
async def test_a_wrong_malformed_or_unknown_secret_is_refused(db, forge):
    secret, _ = await make(db)
    with pytest.raises(Unauthenticated) as refused:
        await tokens.authenticate(db, forge(secret))
    assert refused.value.message == "the API token is not valid"
    assert "acp token create" in (refused.value.hint or "")


async def test_a_revoked_token_is_refused_saying_when(db):
    secret, info = await make(db)
    revoked = await tokens.revoke_token(db, info.id, by=ADMIN)
    assert revoked.revoked_at is not None

    with pytest.raises(Unauthenticated) as refused:
        await tokens.authenticate(db, secret)
    assert f"{info.id} was revoked at {revoked.revoked_at:%Y-%m-%d %H:%M} UTC" in str(refused.value)
    assert "acp token create" in (refused.value.hint or "")


async def test_revoking_twice_is_not_an_error_and_records_one_event(db):
    _, info = await make(db)
    first, second = await asyncio.gather(
        tokens.revoke_token(db, info.id, by=ADMIN), tokens.revoke_token(db, info.id, by="bob")
    )
    again = await tokens.revoke_token(db, info.id, by=ADMIN)

    assert first.revoked_at == second.revoked_at == again.revoked_at is not None
    assert [e.kind for e in await token_events(db)] == ["token.created", "token.revoked"]


async def test_an_expired_token_is_refused_saying_when(db):
    secret, info = await make(db, expires_in=timedelta(seconds=1))
    assert (await tokens.authenticate(db, secret)).id == info.id
    await asyncio.sleep(1.1)

    with pytest.raises(Unauthenticated) as refused:
        await tokens.authenticate(db, secret)
    assert f"{info.id} expired at {info.expires_at:%Y-%m-%d %H:%M:%S} UTC" in str(refused.value)
    assert "acp token create" in (refused.value.hint or "")


async def test_a_scope_the_token_lacks_is_refused_naming_both(db):
    secret, _ = await make(db, ["submit", "cancel"])
    info = await tokens.authenticate(db, secret)

    for granted in ("read", "submit", "cancel"):
        tokens.require_scope(info, granted)
    with pytest.raises(ScopeMissing) as refused:
        tokens.require_scope(info, "approve")
    assert "may not approve" in refused.value.message
    assert "read, submit, cancel" in refused.value.message


async def test_an_unknown_scope_is_refused_listing_the_scopes(db):
    with pytest.raises(BadRequest) as refused:
        await make(db, ["submit", "deploy"])
    assert "'deploy'" in refused.value.message
    assert all(scope in (refused.value.hint or "") for scope in tokens.SCOPES)
    assert await tokens.list_tokens(db) == [] and await token_events(db) == []


@pytest.mark.parametrize(
    "lifetime", [timedelta(days=30, seconds=1), timedelta(0), timedelta(hours=-1)]
)
async def test_a_lifetime_beyond_max_days_or_not_positive_is_refused(db, lifetime):
    with pytest.raises(BadRequest):
        await make(db, expires_in=lifetime, max_days=30)
    _, info = await make(db, expires_in=timedelta(days=30), max_days=30)
    assert info.expires_at == info.created_at + timedelta(days=30)


async def test_last_used_is_written_at_most_once_a_minute(db, monkeypatch):
    secret, info = await make(db)
    assert info.last_used_at is None
    updates: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("UPDATE API_TOKENS"):
            updates.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    first = await tokens.authenticate(db, secret)
    for _ in range(20):
        burst = await tokens.authenticate(db, secret)
    assert first.last_used_at is not None and burst.last_used_at == first.last_used_at
    assert len(updates) == 1, "a burst of calls writes last_used_at once"
    assert (await tokens.get_token(db, info.id)).last_used_at == first.last_used_at

    later = utcnow() + timedelta(minutes=1, seconds=1)
    monkeypatch.setattr(tokens, "utcnow", lambda: later)
    await tokens.authenticate(db, secret)
    assert len(updates) == 2
    assert (await tokens.get_token(db, info.id)).last_used_at == later


async def test_a_burst_of_concurrent_calls_writes_last_used_once(db):
    secret, info = await make(db)
    written: list[int] = []

    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("UPDATE API_TOKENS"):
            written.append(cursor.rowcount)

    event.listen(db.engine.sync_engine, "after_cursor_execute", count)
    seen = await asyncio.gather(*(tokens.authenticate(db, secret) for _ in range(8)))
    assert sum(written) == 1, "one call of the burst changed the row"
    stored = (await tokens.get_token(db, info.id)).last_used_at
    assert stored in {s.last_used_at for s in seen}


async def test_creating_and_revoking_are_recorded_with_their_actor(db, tmp_path):
    _, info = await make(db, ["approve"], expires_in=timedelta(days=7))
    await tokens.revoke_token(db, info.id, by="bob (cli:bob)")

    created, revoked = await token_events(db)
    assert (created.kind, created.actor) == ("token.created", ADMIN)
    assert created.data == {
        "token": info.id, "person": "bob", "scopes": ["read", "approve"],
        "expires_at": info.expires_at.isoformat(),
    }  # fmt: skip
    assert (revoked.kind, revoked.actor) == ("token.revoked", "bob (cli:bob)")
    assert revoked.data == {"token": info.id, "person": "bob"}
    assert created.job_id is None and revoked.job_id is None
    report = await audit.verify(db, audit.ArtifactStore(tmp_path / "artifacts"))
    assert report.events == 2, "the two events are links of the verified chain"


async def test_tokens_are_listed_by_person_and_unknown_ids_refused(db):
    _, bobs = await make(db)
    _, alices = await make(db, person="alice")

    assert [t.id for t in await tokens.list_tokens(db)] == [bobs.id, alices.id]
    assert [t.id for t in await tokens.list_tokens(db, "alice")] == [alices.id]
    assert (await tokens.get_token(db, bobs.id)).person == "bob"
    for unknown in (tokens.get_token(db, "tok_00000000"), tokens.revoke_token(db, "tok_x", by="x")):
        with pytest.raises(BadRequest):
            await unknown


def test_lifetimes_are_read_from_short_text():
    assert tokens.parse_expiry("30d") == timedelta(days=30)
    assert tokens.parse_expiry("12h") == timedelta(hours=12)
    assert tokens.parse_expiry("90m") == timedelta(minutes=90)
    for bad in ("", "30", "d", "1w", "1.5d", "-3d", "thirty days"):
        with pytest.raises(BadRequest) as refused:
            tokens.parse_expiry(bad)
        assert "30d" in refused.value.message + (refused.value.hint or "")
