"""Personal API tokens: what an HTTP caller proves who it is with.

A token is `acp_<id>_<secret>`: its id names the row, the rest is 256 random bits of which
only the SHA-256 is kept (a fast hash is right for random secrets; there is nothing to guess).
It has a person, scopes (what kinds of action it may ask for; the policy still decides whether
that person may) and an expiry; it can be revoked. Creating and revoking are audit events; the
secret is shown once, to its creator, and never stored, logged or recorded.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from pydantic import BaseModel

from runtime import audit
from runtime.errors import BadRequest, ScopeMissing, Unauthenticated
from runtime.policy.schema import parse_duration
from runtime.store import token_store
from runtime.store.database import Database
from runtime.store.job_store import utcnow

SCOPES: tuple[str, ...] = (
    "read", "submit", "answer", "approve", "cancel", "rollback", "routines", "tokens",
)  # fmt: skip
USED_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per token
_PREFIX = "acp_"


class TokenInfo(BaseModel):
    """What may be shown of a token: never its secret."""

    id: str
    person: str
    scopes: list[str]
    created_by: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def short(self) -> str:
        return self.id


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_expiry(text: str) -> timedelta:
    """'30d', '12h', '90m', '45s' as a lifetime (the policy's durations, any case)."""
    try:
        return parse_duration(text.lower())
    except ValueError:
        raise BadRequest(f"'{text}' is not a token lifetime", hint="e.g. 30d, 12h, 90m") from None


async def create_token(
    db: Database,
    *,
    person: str,
    scopes: list[str],
    expires_in: timedelta | None,
    created_by: str,
    max_days: int,
) -> tuple[str, TokenInfo]:
    """A new token for `person`: (the secret, shown once; what may be shown of it)."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise BadRequest(
            f"no token scope {', '.join(repr(s) for s in unknown)}",
            hint=f"scopes: {', '.join(SCOPES)}",
        )
    longest = timedelta(days=max_days)
    lifetime = longest if expires_in is None else expires_in
    if lifetime <= timedelta(0):
        raise BadRequest("a token's lifetime must be positive")
    if lifetime > longest:
        raise BadRequest(
            f"a token may live at most {max_days} days",
            hint="authentication.token_max_days in the policy",
        )
    token_id = f"tok_{secrets.token_hex(4)}"
    secret = f"{_PREFIX}{token_id[4:]}_{secrets.token_urlsafe(32)}"
    now = utcnow()
    info = TokenInfo(
        id=token_id, person=person, scopes=sorted({"read", *scopes}, key=SCOPES.index),
        created_by=created_by, created_at=now, expires_at=now + lifetime,
    )  # fmt: skip
    async with db.begin() as conn:
        await token_store.insert_token(
            conn, {**info.model_dump(), "secret_sha256": _digest(secret)}
        )
        await audit.append(conn, db, audit.NewEvent("token.created", created_by, None, {
            "token": token_id, "person": person, "scopes": info.scopes,
            "expires_at": info.expires_at.isoformat() if info.expires_at else None,
        }))  # fmt: skip
    return secret, info


async def authenticate(db: Database, secret: str) -> TokenInfo:
    """The token this secret is, if it is valid now; Unauthenticated saying why not."""
    invalid = Unauthenticated(
        "the API token is not valid",
        hint="check ACP_TOKEN, or create a new one with `acp token create`",
    )
    body = secret[len(_PREFIX) :] if secret.startswith(_PREFIX) else ""
    short, _, rest = body.partition("_")
    if len(short) != 8 or not rest:
        raise invalid
    row = await token_store.load_token(db, f"tok_{short}")
    if row is None or not hmac.compare_digest(row["secret_sha256"], _digest(secret)):
        raise invalid
    info = TokenInfo(**{k: v for k, v in row.items() if k != "secret_sha256"})
    now = utcnow()
    if info.revoked_at is not None:
        raise Unauthenticated(
            f"the API token {info.id} was revoked at {info.revoked_at:%Y-%m-%d %H:%M} UTC",
            hint="create a new one with `acp token create`",
        )
    if info.expires_at is not None and info.expires_at <= now:
        raise Unauthenticated(
            f"the API token {info.id} expired at {info.expires_at:%Y-%m-%d %H:%M:%S} UTC",
            hint="create a new one with `acp token create`",
        )
    # Checked here so a burst mostly reads; the store's condition settles concurrent calls.
    if info.last_used_at is None or now - info.last_used_at >= USED_EVERY:
        await token_store.mark_used(db, info.id, now, stale_before=now - USED_EVERY)
        info = info.model_copy(update={"last_used_at": now})
    return info


def require_scope(info: TokenInfo, scope: str) -> None:
    if scope not in info.scopes:
        raise ScopeMissing(
            f"the API token {info.id} may not {scope}: its scopes are {', '.join(info.scopes)}",
            hint=f"create a token with --scopes {scope} (its person's rights still apply)",
        )


async def get_token(db: Database, token_id: str) -> TokenInfo:
    row = await token_store.load_token(db, token_id)
    if row is None:
        raise BadRequest(f"no API token {token_id}", hint="`acp token list` lists them")
    return TokenInfo(**{k: v for k, v in row.items() if k != "secret_sha256"})


async def revoke_token(db: Database, token_id: str, *, by: str) -> TokenInfo:
    """Stop the token working now; revoking one already revoked changes nothing."""
    info = await get_token(db, token_id)
    if info.revoked_at is not None:
        return info
    async with db.begin() as conn:
        # Only the revocation that changed the row is recorded: two at once make one event.
        if await token_store.revoke(conn, token_id, utcnow()):
            await audit.append(conn, db, audit.NewEvent(
                "token.revoked", by, None, {"token": token_id, "person": info.person}
            ))  # fmt: skip
    return await get_token(db, token_id)


async def list_tokens(db: Database, person: str | None = None) -> list[TokenInfo]:
    rows = await token_store.list_tokens(db, person)
    return [TokenInfo(**{k: v for k, v in r.items() if k != "secret_sha256"}) for r in rows]
