"""A stand-in for an OpenID Provider (Okta, Keycloak, Slack): a real HTTP server on 127.0.0.1
speaking the authorization code flow with PKCE, for tests and for a browser to click through.

It signs with its own keys, written out here with ``cryptography`` (not with the library the
console verifies with), so a bug shared by signer and verifier cannot hide. It never checks
anything less strictly than a real IdP does.

::

    async with OidcStandIn() as idp:
        idp.sign_in_as("alice", email="alice@example.com", name="Alice")
        provider = Provider("oidc", "Sign in", idp.issuer, idp.client_id, idp.client_secret)

Endpoints (``issuer`` is ``http://127.0.0.1:PORT``, which is also ``base_url``):

- ``GET /.well-known/openid-configuration``: the discovery document.
- ``GET /jwks``: the public signing keys (RSA for RS256, P-256 for ES256), each with a kid.
- ``GET|POST /authorize``: checks client_id and redirect_uri (a bad one is a 400 page, never a
  redirect), then response_type=code, scope containing ``openid`` and a PKCE S256 challenge
  (these are redirected back as ``error=...``). Then, when ``sign_in_as`` chose someone, it
  redirects (302) straight to ``redirect_uri?code=...&state=...&iss=...``; otherwise it shows a
  login page (see below).
- ``POST /token``: client authentication (``client_secret_basic`` or ``client_secret_post``, as
  ``auth_methods`` allows; both at once is refused), ``grant_type=authorization_code``, a code
  that is known, unexpired (60 s) and unused (single use), the same client and redirect_uri,
  and a ``code_verifier`` whose S256 hash is the stored challenge. Answers
  ``{access_token, token_type, expires_in, scope, id_token}``; errors are RFC 6749 JSON
  (400 ``invalid_grant`` / ``invalid_request`` / ``unsupported_grant_type``, 401
  ``invalid_client``).
- ``GET /userinfo``: the signed-in person's claims for a bearer access token.

The login page (for a browser, e.g. Playwright): a ``<form method="post">`` that carries the
authorization request in hidden fields and has one button per user added with ``add_user``:
``<button name="sub" value="SUB">Sign in as NAME</button>`` (NAME is the name, else email, else
sub), plus ``<button name="cancel" value="1">Cancel</button>``, which redirects back with
``error=access_denied``. Click ``text=Sign in as Alice`` or ``button[value=alice]``.

Slack mode (``OidcStandIn(slack=True)``) copies Slack's OpenID shape: its paths
(``/openid/connect/authorize``, ``/api/openid.connect.token``, ``/openid/connect/keys``,
``/api/openid.connect.userInfo``), ``"ok": true`` in token answers, errors as HTTP 200
``{"ok": false, "error": "invalid_code"}``, no ``iss`` in the callback, and the claims
``https://slack.com/user_id`` (the sub by default), ``https://slack.com/team_id`` and
``https://slack.com/team_name``.

Knobs: ``misbehave(*faults)`` makes every later token bad in the named ways until ``behave()``
(see ``FAULTS``); ``refuse_next(error, description)`` makes the next authorization redirect
back with an error; ``rotate_key()`` publishes a new signing key and signs with it;
``latency_s`` delays every answer. ``requests`` records every request (endpoint name, method,
path, query, form, headers as sent).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import html
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args
from urllib.parse import unquote, urlencode, urlsplit

from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

Algorithm = Literal["RS256", "ES256"]
Fault = Literal[
    "other_key",  # signed by a key the IdP does not publish, under the published kid
    "unknown_kid",  # signed by an unpublished key, under a kid the JWKS does not have
    "alg_none",  # header alg "none", empty signature
    "hs256_public_key",  # HS256 keyed with the published public key's PEM (key confusion)
    "wrong_audience",  # aud is another client
    "extra_audience",  # aud is [client_id, another client] and there is no azp
    "wrong_issuer",  # iss is another issuer
    "expired",  # exp ten minutes ago (beyond any leeway)
    "not_yet_valid",  # nbf in ten minutes
    "issued_in_future",  # iat in ten minutes
    "wrong_nonce",  # a nonce that is not the one in the authorization request
    "no_nonce",  # no nonce claim
    "no_id_token",  # the token answer has no id_token
    "discovery_wrong_issuer",  # the discovery document names another issuer
]
FAULTS: frozenset[str] = frozenset(get_args(Fault))
CODE_TTL_S = 60
ANOTHER_CLIENT = "another-client"
ANOTHER_ISSUER = "https://idp.attacker.example"


@dataclass(frozen=True)
class User:
    """Someone who can sign in at the stand-in."""

    sub: str
    email: str | None = None
    name: str | None = None
    email_verified: bool = True
    slack_user_id: str | None = None  # slack mode; the sub when None
    slack_team_id: str | None = None  # slack mode; the stand-in's team_id when None
    extra_claims: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Recorded:
    """One request the stand-in received."""

    endpoint: str  # "discovery", "jwks", "authorize", "token", "userinfo"
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]  # as sent, Authorization included
    at: float  # time.monotonic() when read
    status: int = 0  # what was answered


@dataclass
class _Grant:
    """An issued authorization code and the request it answers."""

    client_id: str
    redirect_uri: str
    user: User
    scope: str
    nonce: str | None
    code_challenge: str | None
    issued_at: float
    used: bool = False


class _SigningKey:
    """A private signing key with its kid, and its public JWK."""

    def __init__(self, alg: Algorithm, kid: str, *, material: str | None = None) -> None:
        self.alg = alg
        self.kid = kid
        self.private: Any = _private_key(alg, material or kid)

    def sign(self, data: bytes) -> bytes:
        if self.alg == "RS256":
            return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # JWS wants raw r||s (RFC 7518)

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def public_jwk(self) -> dict[str, str]:
        common = {"kid": self.kid, "use": "sig", "alg": self.alg}
        numbers = self.private.public_key().public_numbers()
        if self.alg == "RS256":
            return {"kty": "RSA", "n": _b64_int(numbers.n), "e": _b64_int(numbers.e), **common}
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
            **common,
        }


class _Refusal(Exception):
    """An OAuth error answer from the token endpoint."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


class OidcStandIn:
    """An OpenID Provider on 127.0.0.1: discovery, JWKS, authorize, token, userinfo."""

    def __init__(
        self,
        *,
        client_id: str = "acp-console",
        client_secret: str | None = None,
        redirect_uris: tuple[str, ...] = (),  # empty: any http URI on 127.0.0.1/localhost
        auth_methods: tuple[str, ...] = ("client_secret_basic", "client_secret_post"),
        alg: Algorithm = "RS256",
        slack: bool = False,
        team_id: str = "T0STANDIN",
        team_name: str = "Stand-in Workspace",
        latency_s: float = 0.0,
    ) -> None:
        self.client_id = client_id
        # Characters that need form-encoding, so Basic credentials are checked as RFC 6749 says.
        self.client_secret = client_secret or f"s3cret+{secrets.token_urlsafe(12)}/x=y"
        self.redirect_uris = redirect_uris
        self.auth_methods = auth_methods
        self.alg: Algorithm = alg
        self.slack = slack
        self.team_id = team_id
        self.team_name = team_name
        self.latency_s = latency_s
        # False: the ID token carries no email or name, only UserInfo does (OIDC Core 5.4:
        # what node-oidc-provider, a certified OpenID Provider, does by default).
        self.profile_in_id_token = True
        self.userinfo_sub: str | None = None  # a UserInfo answer about someone else

        self.issuer = ""  # "http://127.0.0.1:PORT" once started
        self.base_url = ""
        self.users: dict[str, User] = {}
        self.auto_user: str | None = None  # who /authorize signs in without a login page
        self.faults: set[str] = set()
        self.requests: list[Recorded] = []
        self.keys: list[_SigningKey] = [_SigningKey(alg, "standin-1")]
        self._grants: dict[str, _Grant] = {}
        self._access_tokens: dict[str, User] = {}
        self._refuse_next: tuple[str, str] | None = None
        self._runner: web.AppRunner | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> OidcStandIn:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._handle_discovery)
        app.router.add_get(self.paths["jwks"], self._handle_jwks)
        app.router.add_route("GET", self.paths["authorize"], self._handle_authorize)
        app.router.add_route("POST", self.paths["authorize"], self._handle_authorize)
        app.router.add_post(self.paths["token"], self._handle_token)
        app.router.add_route("*", self.paths["userinfo"], self._handle_userinfo)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.issuer = self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> OidcStandIn:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- knobs -------------------------------------------------------------------------------

    @property
    def paths(self) -> dict[str, str]:
        """Endpoint name -> path (Slack's paths in slack mode)."""
        if self.slack:
            return {
                "authorize": "/openid/connect/authorize",
                "token": "/api/openid.connect.token",
                "jwks": "/openid/connect/keys",
                "userinfo": "/api/openid.connect.userInfo",
            }
        return {
            "authorize": "/authorize",
            "token": "/token",
            "jwks": "/jwks",
            "userinfo": "/userinfo",
        }

    def add_user(self, sub: str, **details: Any) -> User:
        """Someone the login page offers (``details``: User's fields)."""
        user = User(sub=sub, **details)
        self.users[sub] = user
        return user

    def sign_in_as(self, sub: str, **details: Any) -> User:
        """Add ``sub`` and make every later authorization sign them in with no login page."""
        user = self.add_user(sub, **details)
        self.auto_user = sub
        return user

    def use_login_page(self) -> None:
        """Show the login page again instead of signing someone in automatically."""
        self.auto_user = None

    def misbehave(self, *faults: str) -> None:
        """Make every later token bad in these ways (``FAULTS``) until ``behave()``."""
        unknown = set(faults) - FAULTS
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {sorted(FAULTS)}")
        self.faults.update(faults)

    def behave(self) -> None:
        self.faults.clear()

    def refuse_next(self, error: str = "access_denied", description: str = "") -> None:
        """The next authorization request redirects back with ``error`` (and its description)."""
        self._refuse_next = (error, description)

    def rotate_key(self) -> _SigningKey:
        """Publish a new signing key (the old one stays published) and sign with it from now."""
        key = _SigningKey(self.alg, f"standin-{len(self.keys) + 1}")
        self.keys.append(key)
        return key

    def requests_to(self, endpoint: str) -> list[Recorded]:
        return [r for r in self.requests if r.endpoint == endpoint]

    # --- discovery and keys ------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        issuer = ANOTHER_ISSUER if "discovery_wrong_issuer" in self.faults else self.issuer
        return {
            "issuer": issuer,
            "authorization_endpoint": self.base_url + self.paths["authorize"],
            "token_endpoint": self.base_url + self.paths["token"],
            "userinfo_endpoint": self.base_url + self.paths["userinfo"],
            "jwks_uri": self.base_url + self.paths["jwks"],
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "scopes_supported": ["openid", "email", "profile"],
            "id_token_signing_alg_values_supported": [self.alg],
            "token_endpoint_auth_methods_supported": list(self.auth_methods),
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "nonce",
                "email",
                "email_verified",
                "name",
            ],
            "authorization_response_iss_parameter_supported": not self.slack,
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self.keys]}

    async def _handle_discovery(self, request: web.Request) -> web.Response:
        rec = await self._record(request, "discovery")
        return self._json(rec, self.discovery())

    async def _handle_jwks(self, request: web.Request) -> web.Response:
        rec = await self._record(request, "jwks")
        return self._json(rec, self.jwks())

    # --- authorization -----------------------------------------------------------------------

    async def _handle_authorize(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request, "authorize")
        params = rec.form if request.method == "POST" else rec.query
        if params.get("client_id") != self.client_id:
            return self._page(rec, 400, "Unknown client", "client_id is not a registered client.")
        redirect_uri = params.get("redirect_uri", "")
        if not self._redirect_allowed(redirect_uri):
            return self._page(rec, 400, "Bad redirect_uri", "redirect_uri is not registered.")
        state = params.get("state")
        problem = self._authorization_problem(params)
        if problem is not None:
            return self._redirect(
                rec,
                redirect_uri,
                {"error": problem[0], "error_description": problem[1], "state": state},
            )
        if self._refuse_next is not None:
            error, description = self._refuse_next
            self._refuse_next = None
            return self._redirect(
                rec,
                redirect_uri,
                {"error": error, "error_description": description or None, "state": state},
            )
        if request.method == "POST" and params.get("cancel"):
            return self._redirect(
                rec,
                redirect_uri,
                {
                    "error": "access_denied",
                    "error_description": "The person declined.",
                    "state": state,
                },
            )
        sub = params.get("sub") if request.method == "POST" else self.auto_user
        if sub is None:
            return self._login_page(rec, params)
        user = self.users.get(sub)
        if user is None:
            return self._page(rec, 400, "Unknown user", "No such user at this stand-in.")
        code = self._issue_code(params, user)
        return self._redirect(
            rec,
            redirect_uri,
            {"code": code, "state": state, "iss": None if self.slack else self.issuer},
        )

    def _redirect_allowed(self, uri: str) -> bool:
        if self.redirect_uris:
            return uri in self.redirect_uris
        parts = urlsplit(uri)
        return parts.scheme in ("http", "https") and parts.hostname in ("127.0.0.1", "localhost")

    def _authorization_problem(self, params: Mapping[str, str]) -> tuple[str, str] | None:
        """What makes an authorization request unacceptable, as (error, description)."""
        if params.get("response_type") != "code":
            return "unsupported_response_type", "Only response_type=code is supported."
        if "openid" not in params.get("scope", "").split():
            return "invalid_scope", "The scope must include openid."
        if not params.get("code_challenge"):
            return "invalid_request", "PKCE is required: send code_challenge."
        if params.get("code_challenge_method") != "S256":
            return "invalid_request", "code_challenge_method must be S256."
        return None

    def _issue_code(self, params: Mapping[str, str], user: User) -> str:
        code = secrets.token_urlsafe(24)
        self._grants[code] = _Grant(
            client_id=params["client_id"],
            redirect_uri=params["redirect_uri"],
            user=user,
            scope=params.get("scope", ""),
            nonce=params.get("nonce"),
            code_challenge=params.get("code_challenge"),
            issued_at=time.monotonic(),
        )
        return code

    def _login_page(self, rec: Recorded, params: Mapping[str, str]) -> web.Response:
        carried = (
            "client_id",
            "redirect_uri",
            "response_type",
            "scope",
            "state",
            "nonce",
            "code_challenge",
            "code_challenge_method",
            "team",
        )
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(params[name])}">'
            for name in carried
            if name in params
        )
        buttons = "".join(
            f'<p><button type="submit" name="sub" value="{html.escape(user.sub)}">'
            f"Sign in as {html.escape(user.name or user.email or user.sub)}</button></p>"
            for user in self.users.values()
        )
        body = (
            '<!doctype html><html><head><meta charset="utf-8"><title>Stand-in IdP</title>'
            "</head><body><h1>Sign in to the stand-in IdP</h1>"
            f'<form method="post" action="{self.paths["authorize"]}">{hidden}{buttons}'
            '<p><button type="submit" name="cancel" value="1">Cancel</button></p>'
            "</form></body></html>"
        )
        rec.status = 200
        return web.Response(text=body, content_type="text/html")

    # --- tokens ------------------------------------------------------------------------------

    async def _handle_token(self, request: web.Request) -> web.Response:
        rec = await self._record(request, "token")
        try:
            client_id = self._authenticated_client(rec)
            grant = self._redeemed_grant(rec.form, client_id)
        except _Refusal as refusal:
            return self._token_error(rec, refusal)
        access_token = secrets.token_urlsafe(24)
        self._access_tokens[access_token] = grant.user
        answer: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": grant.scope,
        }
        if "no_id_token" not in self.faults:
            answer["id_token"] = self.id_token(grant.user, nonce=grant.nonce)
        if self.slack:
            answer = {"ok": True, **answer}
        return self._json(rec, answer, headers={"Cache-Control": "no-store"})

    def _authenticated_client(self, rec: Recorded) -> str:
        """The client's id, once its secret is checked by the one method it used."""
        basic = rec.headers.get("Authorization", "")
        posted = "client_secret" in rec.form
        if basic and posted:
            raise _Refusal(400, "invalid_request", "Use one client authentication method.")
        if basic.startswith("Basic "):
            method = "client_secret_basic"
            try:
                pair = base64.b64decode(basic.removeprefix("Basic "), validate=True).decode()
                raw_id, _, raw_secret = pair.partition(":")
            except ValueError:
                raise _Refusal(401, "invalid_client", "Malformed Basic credentials.") from None
            client_id, secret = unquote(raw_id), unquote(raw_secret)
        elif posted:
            method = "client_secret_post"
            client_id, secret = rec.form.get("client_id", ""), rec.form["client_secret"]
        else:
            raise _Refusal(401, "invalid_client", "Client authentication is required.")
        if method not in self.auth_methods:
            raise _Refusal(401, "invalid_client", f"{method} is not accepted here.")
        known = hmac.compare_digest(client_id.encode(), self.client_id.encode())
        if not (known and hmac.compare_digest(secret.encode(), self.client_secret.encode())):
            raise _Refusal(401, "invalid_client", "Client authentication failed.")
        return client_id

    def _redeemed_grant(self, form: Mapping[str, str], client_id: str) -> _Grant:
        """The grant for the form's code: used up now, whether or not the rest checks out."""
        if form.get("grant_type") != "authorization_code":
            raise _Refusal(400, "unsupported_grant_type", "Only authorization_code is supported.")
        grant = self._grants.get(form.get("code", ""))
        if grant is None:
            raise _Refusal(400, "invalid_grant", "The code is unknown.")
        if grant.used:
            raise _Refusal(400, "invalid_grant", "The code has already been used.")
        grant.used = True
        if time.monotonic() - grant.issued_at > CODE_TTL_S:
            raise _Refusal(400, "invalid_grant", "The code has expired.")
        if grant.client_id != client_id:
            raise _Refusal(400, "invalid_grant", "The code was issued to another client.")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise _Refusal(400, "invalid_grant", "redirect_uri does not match the request.")
        verifier = form.get("code_verifier", "")
        if grant.code_challenge is not None and _s256(verifier) != grant.code_challenge:
            raise _Refusal(400, "invalid_grant", "PKCE verification failed.")
        return grant

    def _token_error(self, rec: Recorded, refusal: _Refusal) -> web.Response:
        if self.slack:  # Slack's Web API style: HTTP 200, ok false, its own error names
            names = {"invalid_grant": "invalid_code", "invalid_client": "bad_client_secret"}
            body = {"ok": False, "error": names.get(refusal.error, refusal.error)}
            return self._json(rec, body)
        headers = {"Cache-Control": "no-store"}
        if refusal.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="standin"'
        body = {"error": refusal.error, "error_description": refusal.description}
        return self._json(rec, body, status=refusal.status, headers=headers)

    def claims_for(self, user: User, *, nonce: str | None) -> dict[str, Any]:
        """The ID token's claims for ``user``, with the faults applied."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.sub,
            "aud": self.client_id,
            "exp": now + 300,
            "iat": now,
            "auth_time": now,
            "email_verified": user.email_verified,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if user.email is not None:
            claims["email"] = user.email
        if user.name is not None:
            claims["name"] = user.name
        if self.slack:
            claims["https://slack.com/user_id"] = user.slack_user_id or user.sub
            claims["https://slack.com/team_id"] = user.slack_team_id or self.team_id
            claims["https://slack.com/team_name"] = self.team_name
        claims.update(user.extra_claims)
        return self._apply_claim_faults(claims, now)

    def _apply_claim_faults(self, claims: dict[str, Any], now: int) -> dict[str, Any]:
        faults = self.faults
        if "wrong_audience" in faults:
            claims["aud"] = ANOTHER_CLIENT
        if "extra_audience" in faults:
            claims["aud"] = [self.client_id, ANOTHER_CLIENT]
        if "wrong_issuer" in faults:
            claims["iss"] = ANOTHER_ISSUER
        if "expired" in faults:
            claims["iat"], claims["exp"] = now - 1200, now - 600
        if "not_yet_valid" in faults:
            claims["nbf"] = now + 600
        if "issued_in_future" in faults:
            claims["iat"], claims["exp"] = now + 600, now + 1200
        if "wrong_nonce" in faults:
            claims["nonce"] = secrets.token_urlsafe(32)
        if "no_nonce" in faults:
            claims.pop("nonce", None)
        return claims

    def id_token(self, user: User, *, nonce: str | None) -> str:
        """A compact JWS ID token for ``user``, signed as the faults say."""
        claims = self.claims_for(user, nonce=nonce)
        if not self.profile_in_id_token:
            for name in ("email", "email_verified", "name"):
                claims.pop(name, None)
        key = self.keys[-1]
        if "alg_none" in self.faults:
            return _compact({"alg": "none", "typ": "JWT"}, claims, lambda _: b"")
        if "hs256_public_key" in self.faults:
            secret = key.public_pem()
            return _compact(
                {"alg": "HS256", "typ": "JWT", "kid": key.kid},
                claims,
                lambda data: hmac.new(secret, data, hashlib.sha256).digest(),
            )
        if "other_key" in self.faults or "unknown_kid" in self.faults:
            kid = "standin-unpublished" if "unknown_kid" in self.faults else key.kid
            key = _SigningKey(self.alg, kid, material="unpublished")
        return _compact({"alg": key.alg, "typ": "JWT", "kid": key.kid}, claims, key.sign)

    # --- userinfo ----------------------------------------------------------------------------

    async def _handle_userinfo(self, request: web.Request) -> web.Response:
        rec = await self._record(request, "userinfo")
        token = rec.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        user = self._access_tokens.get(token)
        if user is None:
            return self._json(
                rec,
                {"error": "invalid_token"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        claims = self.claims_for(user, nonce=None)
        for name in ("iss", "aud", "exp", "iat", "auth_time", "nbf"):
            claims.pop(name, None)
        if self.userinfo_sub is not None:
            claims["sub"] = self.userinfo_sub
        return self._json(rec, {"ok": True, **claims} if self.slack else claims)

    # --- plumbing ----------------------------------------------------------------------------

    async def _record(self, request: web.Request, endpoint: str) -> Recorded:
        form: dict[str, str] = {}
        if request.method == "POST":
            form = {k: str(v) for k, v in (await request.post()).items()}
        rec = Recorded(
            endpoint=endpoint,
            method=request.method,
            path=request.path,
            query=dict(request.query),
            form=form,
            headers=dict(request.headers),
            at=time.monotonic(),
        )
        self.requests.append(rec)
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        return rec

    def _json(
        self,
        rec: Recorded,
        body: dict[str, Any],
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        rec.status = status
        return web.json_response(body, status=status, headers=headers)

    def _redirect(self, rec: Recorded, uri: str, params: dict[str, str | None]) -> web.Response:
        query = urlencode({k: v for k, v in params.items() if v is not None})
        rec.status = 302
        separator = "&" if urlsplit(uri).query else "?"
        return web.Response(status=302, headers={"Location": f"{uri}{separator}{query}"})

    def _page(self, rec: Recorded, status: int, title: str, text: str) -> web.Response:
        rec.status = status
        body = (
            f"<!doctype html><html><head><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
        )
        return web.Response(status=status, text=body, content_type="text/html")


@functools.cache
def _private_key(alg: Algorithm, material: str) -> Any:
    """One private key per (alg, material) for the whole process: RSA generation costs about 0.1 s,
    and stand-ins never share an issuer, so reusing key material across them proves nothing
    wrong."""
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64_int(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _s256(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode("ascii", "replace")).digest())


def _compact(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A JWS compact serialization: header.payload.signature, each base64url."""
    signing_input = (
        _b64(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64(json.dumps(claims, separators=(",", ":")).encode())
    )
    return signing_input + "." + _b64(sign(signing_input.encode("ascii")))
