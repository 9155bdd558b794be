"""The console's sessions: a signed cookie that names who signed in, how, and until when.

The cookie holds no secret and nothing the browser may change: its payload is signed with a
key that never leaves the service (ACP_HOME/console/session.key, 0600, made at first start; or
ACP_CONSOLE_SECRET), and every request checks the signature and the expiry before anything
else. The person is found again from the policy on every request, so someone removed from the
policy is signed out by the next reload, whatever their cookie says.

CSRF: each session has its own token (an HMAC of the session id), sent back by every form
and every htmx request; a POST without it, or from another site, is refused (bot.console.app).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runtime.private_files import create_once

COOKIE = "acp_session"
SIGNIN_COOKIE = "acp_signin"  # the OIDC sign-in under way: state, nonce, PKCE verifier
SESSION_SECONDS = 8 * 3600
SIGNIN_SECONDS = 600


@dataclass(frozen=True)
class Session:
    """Who signed in: what the sign-in proved (`logins`, most specific first, or a Slack user
    id), how (`how`, for the record), and when it ends."""

    logins: list[str]
    how: str
    slack_user_id: str | None = None
    demo_person: str | None = None  # the local demo sign-in: a person picked, not proved
    sid: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    issued: int = field(default_factory=lambda: int(time.time()))
    expires: int = field(default_factory=lambda: int(time.time()) + SESSION_SECONDS)


class Signer:
    """Signs and checks the console's cookies with one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the console's session key must be at least 32 bytes")
        self._key = key

    @classmethod
    def for_home(cls, home: Path, env: dict[str, str] | None = None) -> Signer:
        env = dict(os.environ) if env is None else env
        if env.get("ACP_CONSOLE_SECRET"):
            return cls(hashlib.sha256(env["ACP_CONSOLE_SECRET"].encode()).digest())
        path = home / "console" / "session.key"
        try:
            return cls(path.read_bytes())
        except FileNotFoundError:
            pass
        # Two services starting in one ACP_HOME at once agree on one key (runtime.private_files).
        return cls(create_once(path, secrets.token_bytes(32)))

    def _mac(self, purpose: str, payload: bytes) -> str:
        digest = hmac.new(self._key, purpose.encode() + b"\0" + payload, hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()

    def sign(self, purpose: str, data: dict[str, Any]) -> str:
        payload = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode())
        body = payload.rstrip(b"=")
        return f"{body.decode()}.{self._mac(purpose, body)}"

    def unsign(self, purpose: str, text: str | None) -> dict[str, Any] | None:
        """The data of a value this signer made for `purpose`; None for anything else."""
        if not text or "." not in text:
            return None
        body, _, mac = text.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(purpose, body.encode())):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    # --- sessions ------------------------------------------------------------------------

    def session_cookie(self, session: Session) -> str:
        return self.sign("session", asdict(session))

    def session(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie carries, if it is ours and has not expired."""
        data = self.unsign("session", cookie)
        if data is None:
            return None
        try:
            session = Session(**data)
        except TypeError:
            return None
        if session.expires <= (time.time() if now is None else now):
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        return self._mac("csrf", session.sid.encode())

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token(session))
