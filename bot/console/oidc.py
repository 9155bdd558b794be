"""OpenID Connect sign-in for the web console: the authorization code flow with PKCE, and the
checks an ID token must pass before the console believes who someone is.

It must never log, return or put in an error message a client secret, a code or a token; every
failure a person can see is a ``SignInRefused`` with one plain sentence.

Which library does what, and why:

- **httpx, directly**, for every HTTP call (discovery, JWKS, the code exchange): one client, one
  exception tree and a hard deadline around each call. authlib's ``AsyncOAuth2Client`` is not
  used: in authlib 1.9 it runs on ``httpx2`` whenever that happens to be installed (here it
  arrives with ``openai``) and on httpx, with a deprecation warning, otherwise, so the errors
  it raises would depend on what else is installed; it also keeps the last token on the client
  object, which is the wrong shape for a client shared by everyone signing in.
- **authlib's OAuth 2 pieces** for the wire formats: ``prepare_grant_uri`` (the authorization
  URL), ``create_s256_code_challenge`` (PKCE, RFC 7636) and ``prepare_token_request`` (the code
  exchange body).
- **joserfc** (authlib's successor to ``authlib.jose``) for the ID token: the JWKS as a
  ``KeySet``, the JWS signature checked with an allow-list of algorithms, and
  ``JWTClaimsRegistry`` for exp/iat/nbf with leeway. Issuer, audience, azp and nonce are
  compared here, so each refusal can say which check failed.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import Key, KeySet
from pydantic import BaseModel, ConfigDict, ValidationError

from runtime.errors import AcpError, BadRequest

log = logging.getLogger(__name__)

SCOPE = "openid email profile"
ALLOWED_ALGORITHMS = ("RS256", "ES256")
_KEY_TYPE_FOR_ALGORITHM = {"RS256": "RSA", "ES256": "EC"}
LEEWAY_S = 60
DISCOVERY_TTL_S = 3600.0  # how long a discovery document is trusted before it is fetched again
PENDING_MAX_AGE_S = 600  # a sign-in left half-way for longer than this must start again
SLACK_ISSUER = "https://slack.com"
SLACK_USER_ID = "https://slack.com/user_id"
SLACK_TEAM_ID = "https://slack.com/team_id"
_PENDING_KEYS = ("state", "nonce", "code_verifier", "provider", "redirect_uri", "started_at")
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


# --- what the console configures and receives ---------------------------------------------------


@dataclass(frozen=True)
class Provider:
    """One identity provider the console offers a sign-in button for."""

    name: str  # url-safe key: "oidc" or "slack"
    label: str  # the button's text
    issuer: str  # discovery lives at {issuer}/.well-known/openid-configuration
    client_id: str
    client_secret: str = field(repr=False)  # never logged, never in a message
    slack: bool = False  # Slack's OIDC: the person is found by their Slack user id
    # Slack only: the one workspace allowed to sign in (Slack signs in members of any
    # workspace otherwise); sent as ``team`` to pre-select it, and checked in the ID token.
    slack_team_id: str | None = None


class SignInRefused(AcpError):
    """Raised when a sign-in cannot complete; ``message`` is safe to show the person."""


@dataclass(frozen=True)
class Started:
    """Where to send the browser, and what the callback must be checked against."""

    url: str  # the IdP's authorization endpoint, with every parameter
    pending: dict[str, Any]  # state, nonce, code_verifier, provider, redirect_uri, started_at


@dataclass(frozen=True)
class Claims:
    """Who signed in, as the verified ID token says."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    slack_user_id: str | None  # only from a Slack provider's token
    slack_team_id: str | None


# --- configuration -----------------------------------------------------------------------------


def providers_from_env(env: Mapping[str, str]) -> list[Provider]:
    """The providers the environment configures: a generic OIDC one and/or Slack.

    A provider configured half-way is an error naming the missing variable, not a silently
    missing button.
    """
    providers: list[Provider] = []
    generic = _generic_from_env(env)
    if generic is not None:
        providers.append(generic)
    slack = _slack_from_env(env)
    if slack is not None:
        providers.append(slack)
    return providers


def _generic_from_env(env: Mapping[str, str]) -> Provider | None:
    names = ("ACP_OIDC_ISSUER", "ACP_OIDC_CLIENT_ID", "ACP_OIDC_CLIENT_SECRET")
    values = {name: env.get(name, "").strip() for name in names}
    if not any(values.values()):
        return None
    _require_all(values, "the OIDC sign-in")
    issuer = _checked_issuer(values["ACP_OIDC_ISSUER"], "ACP_OIDC_ISSUER")
    label = env.get("ACP_OIDC_LABEL", "").strip() or f"Sign in with {urlsplit(issuer).hostname}"
    return Provider(
        name="oidc",
        label=label,
        issuer=issuer,
        client_id=values["ACP_OIDC_CLIENT_ID"],
        client_secret=values["ACP_OIDC_CLIENT_SECRET"],
    )


def _slack_from_env(env: Mapping[str, str]) -> Provider | None:
    names = ("ACP_SLACK_OIDC_CLIENT_ID", "ACP_SLACK_OIDC_CLIENT_SECRET")
    values = {name: env.get(name, "").strip() for name in names}
    if not any(values.values()):
        return None
    _require_all(values, "Sign in with Slack")
    issuer_env = env.get("ACP_SLACK_OIDC_ISSUER", "").strip() or SLACK_ISSUER
    return Provider(
        name="slack",
        label="Sign in with Slack",
        issuer=_checked_issuer(issuer_env, "ACP_SLACK_OIDC_ISSUER"),
        client_id=values["ACP_SLACK_OIDC_CLIENT_ID"],
        client_secret=values["ACP_SLACK_OIDC_CLIENT_SECRET"],
        slack=True,
        slack_team_id=env.get("ACP_SLACK_OIDC_TEAM_ID", "").strip() or None,
    )


def _require_all(values: dict[str, str], what: str) -> None:
    """Refuse a provider with some of its variables set and others not (values not shown)."""
    missing = [name for name, value in values.items() if not value]
    if missing:
        present = [name for name, value in values.items() if value]
        raise BadRequest(
            f"{what} is half configured: {' and '.join(present)} "
            f"{'is' if len(present) == 1 else 'are'} set but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not",
            hint=f"set {' and '.join(missing)}, or unset {' and '.join(present)}",
        )


def _checked_issuer(issuer: str, variable: str) -> str:
    """An issuer must be https (plain http only on this machine, for a local IdP)."""
    parts = urlsplit(issuer)
    secure = parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS
    )
    if not secure or not parts.hostname or parts.query or parts.fragment:
        raise BadRequest(
            f"{variable} must be an https URL (the IdP's issuer), not {issuer!r}",
            hint=f"set {variable} to the issuer URL your IdP shows, e.g. https://example.okta.com",
        )
    return issuer


# --- the discovery document ---------------------------------------------------------------------


class _Metadata(BaseModel):
    """The parts of an OpenID Provider's discovery document the code flow needs."""

    model_config = ConfigDict(extra="ignore")

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None = None
    # RFC 8414 / OIDC Discovery: an absent list means client_secret_basic only.
    token_endpoint_auth_methods_supported: list[str] = ["client_secret_basic"]


@dataclass
class _Known:
    """What has been learnt about one provider, and when."""

    metadata: _Metadata
    fetched_at: float
    keys: KeySet | None = None


# --- the flow ----------------------------------------------------------------------------------


class Oidc:
    """Starts and finishes OpenID Connect sign-ins against the configured providers."""

    def __init__(self, providers: list[Provider], *, timeout: float = 10.0) -> None:
        names = [p.name for p in providers]
        if len(set(names)) != len(names):
            raise ValueError(f"provider names must be unique, got {names}")
        self._providers = {p.name: p for p in providers}
        self._timeout = timeout
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._known: dict[str, _Known] = {}
        self._locks: dict[str, asyncio.Lock] = {name: asyncio.Lock() for name in names}

    @property
    def providers(self) -> list[Provider]:
        """The providers, in the order they were configured (the order of the buttons)."""
        return list(self._providers.values())

    def provider(self, name: str) -> Provider:
        """The provider called ``name``; an unknown name is a refused sign-in."""
        try:
            return self._providers[name]
        except KeyError:
            raise SignInRefused(f"there is no sign-in provider called {name[:40]!r}") from None

    async def start(self, name: str, redirect_uri: str) -> Started:
        """Begin a sign-in: the authorization URL (PKCE S256, fresh state and nonce) and what
        the callback will be checked against."""
        provider = self.provider(name)
        metadata = (await self._discover(provider)).metadata
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        code_verifier = secrets.token_urlsafe(64)  # 86 characters: RFC 7636 allows 43-128
        extra = {"team": provider.slack_team_id} if provider.slack else {}
        url = prepare_grant_uri(
            metadata.authorization_endpoint,
            client_id=provider.client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=SCOPE,
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(code_verifier),
            code_challenge_method="S256",
            **extra,
        )
        pending = {
            "state": state,
            "nonce": nonce,
            "code_verifier": code_verifier,
            "provider": provider.name,
            "redirect_uri": redirect_uri,
            "started_at": int(time.time()),
        }
        return Started(url=url, pending=pending)

    async def finish(self, pending: Mapping[str, Any], query: Mapping[str, str]) -> Claims:
        """Complete a sign-in from the callback's query: check it, exchange the code and verify
        the ID token. Every failure is a ``SignInRefused`` that carries no secret."""
        provider = self._pending_provider(pending)
        try:
            return await self._finish(provider, pending, query)
        except SignInRefused as refused:
            # Defence in depth: whatever an IdP echoed back, the secret never reaches a page.
            raise SignInRefused(_scrub(refused.message, provider.client_secret)) from None

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()

    async def __aenter__(self) -> Oidc:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- finishing ---------------------------------------------------------------------------

    def _pending_provider(self, pending: Mapping[str, Any]) -> Provider:
        """The provider a pending sign-in belongs to, if the pending record is whole and fresh."""
        if not all(isinstance(pending.get(key), str | int) for key in _PENDING_KEYS):
            raise SignInRefused("this sign-in was not started here: start again")
        if time.time() - float(pending["started_at"]) > PENDING_MAX_AGE_S:
            raise SignInRefused("the sign-in took too long: start again")
        return self.provider(str(pending["provider"]))

    async def _finish(
        self, provider: Provider, pending: Mapping[str, Any], query: Mapping[str, str]
    ) -> Claims:
        host = _host(provider.issuer)
        state_matches = _same(query.get("state", ""), str(pending["state"]))
        if query.get("error"):
            raise SignInRefused(_idp_error_sentence(host, query, state_matches))
        if not state_matches:
            raise SignInRefused("the sign-in's state does not match: start again")
        # RFC 9207: an IdP that names itself in the callback must name the expected issuer.
        if "iss" in query and query["iss"] != provider.issuer:
            raise SignInRefused("the sign-in answer came from another issuer: start again")
        code = query.get("code", "")
        if not code:
            raise SignInRefused(f"the sign-in provider {host} sent no code: start again")
        known = await self._discover(provider)
        tokens = await self._exchange(provider, known.metadata, code, pending)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise SignInRefused(f"the sign-in provider {host} returned no ID token")
        claims = await self._verified_claims(provider, id_token)
        _check_claims(provider, claims, str(pending["nonce"]))
        if "email" not in claims and not provider.slack:
            claims = await self._with_userinfo(known.metadata, tokens, claims)
        return _claims_of(provider, claims)

    async def _with_userinfo(
        self, metadata: _Metadata, tokens: dict[str, Any], claims: dict[str, Any]
    ) -> dict[str, Any]:
        """The email and name from the UserInfo endpoint, for an IdP that keeps the scopes'
        claims out of the ID token (OIDC Core 5.4; node-oidc-provider does by default). The
        answer counts only for the ID token's own subject (OIDC Core 5.3.2)."""
        access = tokens.get("access_token")
        if not metadata.userinfo_endpoint or not isinstance(access, str) or not access:
            return claims
        host = _host(metadata.userinfo_endpoint)
        response = await self._call(
            "GET", metadata.userinfo_endpoint,
            headers={"Authorization": f"Bearer {access}", "Accept": "application/json"},
        )  # fmt: skip
        info = _json_object(response)
        if response.status_code != 200 or info is None:
            raise SignInRefused(
                f"the sign-in provider {host} answered the UserInfo request with "
                f"HTTP {response.status_code}"
            )
        if info.get("sub") != claims.get("sub"):
            raise SignInRefused("the UserInfo answer is about someone else (sub): start again")
        merged = dict(claims)
        for name in ("email", "email_verified", "name"):
            if name in info and name not in merged:
                merged[name] = info[name]
        return merged

    async def _exchange(
        self, provider: Provider, metadata: _Metadata, code: str, pending: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Trade the code (and the PKCE verifier) for tokens at the token endpoint."""
        host = _host(metadata.token_endpoint)
        body = prepare_token_request(
            "authorization_code",
            redirect_uri=str(pending["redirect_uri"]),
            code=code,
            code_verifier=str(pending["code_verifier"]),
        )
        headers = {"Accept": "application/json"}
        method = _client_auth_method(metadata, host)
        if method == "client_secret_basic":
            headers["Authorization"] = _basic_credentials(provider)
        else:
            body += "&" + _form_pairs(
                {"client_id": provider.client_id, "client_secret": provider.client_secret}
            )
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        response = await self._call("POST", metadata.token_endpoint, content=body, headers=headers)
        answer = _json_object(response)
        # Slack answers errors with HTTP 200 and {"ok": false, "error": ...}.
        if answer is not None and (answer.get("error") or answer.get("ok") is False):
            raise SignInRefused(_token_error_sentence(host, answer))
        if response.status_code != 200 or answer is None:
            raise SignInRefused(
                f"the sign-in provider {host} answered the code exchange with "
                f"HTTP {response.status_code}"
            )
        return answer

    async def _verified_claims(self, provider: Provider, id_token: str) -> dict[str, Any]:
        """The ID token's claims, once its algorithm and signature are checked."""
        try:
            header = jws.extract_compact(id_token.encode("ascii")).headers()
        except (JoseError, ValueError, UnicodeError):
            raise SignInRefused("the ID token is malformed") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise SignInRefused("the ID token is not signed (alg none)")
        if alg not in ALLOWED_ALGORITHMS:
            raise SignInRefused(
                f"the ID token's signing algorithm {_printable(alg, 20)} is not "
                f"allowed ({', '.join(ALLOWED_ALGORITHMS)} are)"
            )
        kid = header.get("kid")
        key = _key_for(await self._keys(provider), kid, alg)
        if key is None:
            # The IdP may have rotated its keys since they were fetched: fetch them once more.
            key = _key_for(await self._keys(provider, refresh=True), kid, alg)
        if key is None:
            raise SignInRefused(
                "the ID token's signature does not verify: the IdP publishes no key for it"
            )
        try:
            token = jwt.decode(id_token, key, algorithms=[alg])
        except (BadSignatureError, JoseError, ValueError):
            raise SignInRefused("the ID token's signature does not verify") from None
        return dict(token.claims)

    # --- what is fetched, with deadlines ---------------------------------------------------------

    async def _discover(self, provider: Provider) -> _Known:
        """The provider's discovery document, fetched once and kept for DISCOVERY_TTL_S."""
        async with self._locks[provider.name]:
            known = self._known.get(provider.name)
            if known is not None and time.monotonic() - known.fetched_at < DISCOVERY_TTL_S:
                return known
            url = provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
            metadata = _parse_metadata(provider, await self._get_json(url, "discovery document"))
            known = _Known(metadata=metadata, fetched_at=time.monotonic())
            self._known[provider.name] = known
            return known

    async def _keys(self, provider: Provider, *, refresh: bool = False) -> KeySet:
        """The provider's signing keys (its JWKS), cached until an unknown key id appears."""
        known = await self._discover(provider)
        async with self._locks[provider.name]:
            if known.keys is None or refresh:
                document = await self._get_json(known.metadata.jwks_uri, "signing keys")
                try:
                    known.keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
                except (JoseError, ValueError, KeyError, TypeError):
                    raise SignInRefused(
                        f"the sign-in provider {_host(known.metadata.jwks_uri)} publishes no "
                        "usable signing keys"
                    ) from None
            return known.keys

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        response = await self._call("GET", url, headers={"Accept": "application/json"})
        document = _json_object(response)
        if response.status_code != 200 or document is None:
            raise SignInRefused(
                f"the sign-in provider {_host(url)} answered HTTP {response.status_code} "
                f"for its {what}"
            )
        return document

    async def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One HTTP call under one deadline; network trouble names the host, nothing more."""
        host = _host(url)
        try:
            async with asyncio.timeout(self._timeout):
                return await self._http.request(method, url, **kwargs)
        except (TimeoutError, httpx.TimeoutException):
            raise SignInRefused(
                f"the sign-in provider {host} did not answer within {self._timeout:g} s"
            ) from None
        except httpx.HTTPError as error:
            log.warning("oidc: %s %s failed: %s", method, host, type(error).__name__)
            raise SignInRefused(f"the sign-in provider {host} cannot be reached") from None


# --- checks ------------------------------------------------------------------------------------


def _parse_metadata(provider: Provider, document: dict[str, Any]) -> _Metadata:
    """Validate a discovery document: it must name our issuer and use safe endpoints."""
    host = _host(provider.issuer)
    try:
        metadata = _Metadata.model_validate(document)
    except ValidationError:
        raise SignInRefused(
            f"the sign-in provider {host} has an incomplete discovery document"
        ) from None
    if metadata.issuer != provider.issuer:
        raise SignInRefused(
            f"the sign-in provider {host}'s discovery document names another issuer"
        )
    endpoints = (metadata.authorization_endpoint, metadata.token_endpoint, metadata.jwks_uri)
    if not all(_secure_url(url, provider.issuer) for url in endpoints):
        raise SignInRefused(f"the sign-in provider {host} has an endpoint that is not https")
    return metadata


def _secure_url(url: str, issuer: str) -> bool:
    """https, or plain http only when the issuer itself is a local http IdP."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return (
        parts.scheme == "http"
        and urlsplit(issuer).scheme == "http"
        and (parts.hostname in _LOOPBACK_HOSTS)
    )


def _client_auth_method(metadata: _Metadata, host: str) -> str:
    """client_secret_basic (the default) when offered, else client_secret_post."""
    offered = metadata.token_endpoint_auth_methods_supported
    for method in ("client_secret_basic", "client_secret_post"):
        if method in offered:
            return method
    raise SignInRefused(
        f"the sign-in provider {host} accepts no client authentication this console supports "
        "(client_secret_basic, client_secret_post)"
    )


def _basic_credentials(provider: Provider) -> str:
    """HTTP Basic credentials, each part form-encoded first as RFC 6749 §2.3.1 requires."""
    pair = f"{quote(provider.client_id, safe='')}:{quote(provider.client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def _form_pairs(values: dict[str, str]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in values.items())


def _key_for(keys: KeySet, kid: Any, alg: str) -> Key | None:
    """The published signing key a token names (by kid; the only one when it names none)."""
    candidates = [
        key
        for key in keys
        if key.key_type == _KEY_TYPE_FOR_ALGORITHM[alg]
        and key.get("use") in (None, "sig")
        and key.get("alg") in (None, alg)
    ]
    if kid is None:
        return candidates[0] if len(candidates) == 1 else None
    return next((key for key in candidates if key.kid == kid), None)


def _check_claims(provider: Provider, claims: dict[str, Any], nonce: str) -> None:
    """The ID token checks of OpenID Connect Core §3.1.3.7, each with its own sentence."""
    if claims.get("iss") != provider.issuer:
        raise SignInRefused("the ID token is from another issuer (iss)")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or provider.client_id not in audiences:
        raise SignInRefused("the ID token is for another application (aud)")
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != provider.client_id:
        raise SignInRefused("the ID token was issued to another application (azp)")
    _check_times(claims)
    token_nonce = claims.get("nonce")
    if not isinstance(token_nonce, str) or not _same(token_nonce, nonce):
        raise SignInRefused("the ID token's nonce does not match this sign-in: start again")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise SignInRefused("the ID token names nobody (sub)")
    if provider.slack:
        _check_slack(provider, claims)


def _check_times(claims: dict[str, Any]) -> None:
    registry = jwt.JWTClaimsRegistry(
        leeway=LEEWAY_S, exp={"essential": True}, iat={"essential": True}
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise SignInRefused("the ID token has expired") from None
    except MissingClaimError as error:
        raise SignInRefused(f"the ID token lacks its {error.claim} claim") from None
    except ClaimError as error:
        sentences = {
            "nbf": "the ID token is not valid yet (nbf): check this server's clock",
            "iat": "the ID token was issued in the future (iat): check this server's clock",
        }
        raise SignInRefused(
            sentences.get(error.claim, f"the ID token's {error.claim} claim is invalid")
        ) from None


def _check_slack(provider: Provider, claims: dict[str, Any]) -> None:
    """A Slack token must name the Slack user, and the allowed workspace when one is set."""
    if not isinstance(claims.get(SLACK_USER_ID), str):
        raise SignInRefused("the Slack ID token names no Slack user")
    if provider.slack_team_id is not None and claims.get(SLACK_TEAM_ID) != provider.slack_team_id:
        raise SignInRefused("that Slack workspace may not sign in here")


def _claims_of(provider: Provider, claims: dict[str, Any]) -> Claims:
    email = claims.get("email")
    name = claims.get("name")
    verified = claims.get("email_verified")
    slack_user = claims.get(SLACK_USER_ID) if provider.slack else None
    slack_team = claims.get(SLACK_TEAM_ID) if provider.slack else None
    return Claims(
        issuer=str(claims["iss"]),
        subject=str(claims["sub"]),
        email=email if isinstance(email, str) and email else None,
        # Some IdPs send the string "true"; anything else is unverified.
        email_verified=verified is True or verified == "true",
        name=name if isinstance(name, str) and name else None,
        slack_user_id=slack_user if isinstance(slack_user, str) else None,
        slack_team_id=slack_team if isinstance(slack_team, str) else None,
    )


# --- words -------------------------------------------------------------------------------------


def _idp_error_sentence(host: str, query: Mapping[str, str], state_matches: bool) -> str:
    """The IdP's refusal in a sentence. Its description is shown only when the state matches:
    otherwise anyone could craft a callback link that puts their words on our page."""
    code = re.sub(r"[^a-z_]", "", query.get("error", "").lower())[:40] or "error"
    sentence = f"the sign-in provider {host} refused the sign-in ({code})"
    description = _printable(query.get("error_description", ""), 200)
    if state_matches and description:
        sentence += f": {description}"
    return sentence


def _token_error_sentence(host: str, answer: dict[str, Any]) -> str:
    code = re.sub(r"[^a-z_]", "", str(answer.get("error", "")).lower())[:40] or "error"
    sentence = f"the sign-in provider {host} refused the code exchange ({code})"
    description = _printable(str(answer.get("error_description") or ""), 200)
    return f"{sentence}: {description}" if description else sentence


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        document = response.json()
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _host(url: str) -> str:
    return urlsplit(url).netloc or url[:60]


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison, so a guess learns nothing from how long a refusal takes."""
    return hmac.compare_digest(given.encode(), expected.encode())


def _printable(text: str, limit: int) -> str:
    """Text from elsewhere, made one short printable line."""
    line = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _scrub(message: str, secret: str) -> str:
    return message.replace(secret, "[secret]") if secret else message
