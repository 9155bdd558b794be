"""The OIDC stand-in speaks the protocol: driven here by plain httpx, as an IdP is, and its ID
tokens checked with joserfc against its published keys (not with the console's code)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.standins.oidc_standin import OidcStandIn

REDIRECT_URI = "http://127.0.0.1:8765/auth/callback"


@pytest.fixture
async def idp() -> AsyncIterator[OidcStandIn]:
    async with OidcStandIn() as standin:
        standin.sign_in_as("alice", email="alice@example.com", name="Alice")
        yield standin


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(follow_redirects=False, timeout=5) as client:
        yield client


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _authorize_params(idp: OidcStandIn, challenge: str, **overrides: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": idp.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid email profile",
        "state": "state-123",
        "nonce": "nonce-456",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return {**params, **overrides}


def _callback(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def _code(idp: OidcStandIn, http: httpx.AsyncClient, challenge: str) -> str:
    url = idp.discovery()["authorization_endpoint"]
    return _callback(await http.get(url, params=_authorize_params(idp, challenge)))["code"]


async def _redeem(
    idp: OidcStandIn, http: httpx.AsyncClient, code: str, verifier: str
) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        "client_id": idp.client_id,
        "client_secret": idp.client_secret,
    }
    return await http.post(idp.discovery()["token_endpoint"], data=form)


async def test_discovery_names_its_own_base_url_as_issuer_and_every_endpoint(
    idp: OidcStandIn, http: httpx.AsyncClient
) -> None:
    doc = (await http.get(f"{idp.issuer}/.well-known/openid-configuration")).json()
    assert doc["issuer"] == idp.base_url
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
        assert doc[name].startswith(idp.base_url + "/")
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert set(doc["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }
    keys = (await http.get(doc["jwks_uri"])).json()["keys"]
    assert [(k["kty"], k["kid"], k["alg"]) for k in keys] == [("RSA", "standin-1", "RS256")]
    assert "d" not in keys[0]  # the private part is never published


async def test_code_flow_issues_an_id_token_signed_by_the_published_key(
    idp: OidcStandIn, http: httpx.AsyncClient
) -> None:
    verifier, challenge = _pkce()
    url = idp.discovery()["authorization_endpoint"]
    callback = _callback(await http.get(url, params=_authorize_params(idp, challenge)))
    assert callback["state"] == "state-123"
    assert callback["iss"] == idp.issuer  # RFC 9207

    answer = await _redeem(idp, http, callback["code"], verifier)

    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    assert tokens["token_type"] == "Bearer"
    keys = KeySet.import_key_set((await http.get(idp.discovery()["jwks_uri"])).json())
    claims = jwt.decode(tokens["id_token"], keys, algorithms=["RS256"]).claims
    assert claims["iss"] == idp.issuer
    assert claims["aud"] == idp.client_id
    assert claims["sub"] == "alice"
    assert claims["nonce"] == "nonce-456"
    assert claims["email"] == "alice@example.com"
    assert claims["email_verified"] is True
    assert claims["exp"] > claims["iat"]
    info = await http.get(
        idp.discovery()["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert info.json() == {
        "sub": "alice",
        "email": "alice@example.com",
        "email_verified": True,
        "name": "Alice",
    }


async def test_token_endpoint_refuses_a_wrong_pkce_verifier(
    idp: OidcStandIn, http: httpx.AsyncClient
) -> None:
    _, challenge = _pkce()
    code = await _code(idp, http, challenge)

    answer = await _redeem(idp, http, code, secrets.token_urlsafe(48))

    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"
    assert "PKCE" in answer.json()["error_description"]


async def test_a_code_can_be_redeemed_once_only(idp: OidcStandIn, http: httpx.AsyncClient) -> None:
    verifier, challenge = _pkce()
    code = await _code(idp, http, challenge)

    first = await _redeem(idp, http, code, verifier)
    second = await _redeem(idp, http, code, verifier)

    assert first.status_code == 200
    assert second.status_code == 400
    assert second.json() == {
        "error": "invalid_grant",
        "error_description": "The code has already been used.",
    }


async def test_token_endpoint_checks_the_client_secret_and_the_redirect_uri(
    idp: OidcStandIn, http: httpx.AsyncClient
) -> None:
    verifier, challenge = _pkce()
    url = idp.discovery()["token_endpoint"]
    form = {"grant_type": "authorization_code", "redirect_uri": REDIRECT_URI}

    code = await _code(idp, http, challenge)
    wrong_secret = await http.post(
        url, data={**form, "code": code, "code_verifier": verifier}, auth=(idp.client_id, "nope")
    )
    code = await _code(idp, http, challenge)
    wrong_redirect = await http.post(
        url,
        data={**form, "code": code, "code_verifier": verifier, "redirect_uri": REDIRECT_URI + "x"},
        auth=(idp.client_id, idp.client_secret),
    )

    assert wrong_secret.status_code == 401
    assert wrong_secret.json()["error"] == "invalid_client"
    assert wrong_redirect.status_code == 400
    assert wrong_redirect.json()["error"] == "invalid_grant"


async def test_basic_credentials_are_form_encoded_as_rfc_6749_says(
    idp: OidcStandIn, http: httpx.AsyncClient
) -> None:
    assert "+" in idp.client_secret and "/" in idp.client_secret  # needs encoding
    verifier, challenge = _pkce()
    code = await _code(idp, http, challenge)
    pair = f"{idp.client_id}:{idp.client_secret.replace('+', '%2B').replace('/', '%2F')}"
    pair = pair.replace("=", "%3D")
    basic = "Basic " + base64.b64encode(pair.encode()).decode()
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}

    answer = await http.post(
        idp.discovery()["token_endpoint"],
        data={**form, "code_verifier": verifier},
        headers={"Authorization": basic},
    )

    assert answer.status_code == 200, answer.text


async def test_authorize_never_redirects_to_an_unregistered_uri_or_for_an_unknown_client(
    http: httpx.AsyncClient,
) -> None:
    async with OidcStandIn(redirect_uris=(REDIRECT_URI,)) as idp:
        idp.sign_in_as("alice")
        url = idp.discovery()["authorization_endpoint"]
        _, challenge = _pkce()
        elsewhere = await http.get(
            url, params=_authorize_params(idp, challenge, redirect_uri="https://evil.example/")
        )
        unknown = await http.get(url, params=_authorize_params(idp, challenge, client_id="x"))

    assert elsewhere.status_code == 400 and "location" not in elsewhere.headers
    assert unknown.status_code == 400 and "location" not in unknown.headers


async def test_authorize_redirects_protocol_errors_back_with_the_state(
    idp: OidcStandIn, http: httpx.AsyncClient
) -> None:
    url = idp.discovery()["authorization_endpoint"]
    _, challenge = _pkce()

    implicit = _callback(
        await http.get(url, params=_authorize_params(idp, challenge, response_type="token"))
    )
    no_pkce = _callback(
        await http.get(url, params=_authorize_params(idp, challenge, code_challenge=""))
    )
    plain = _callback(
        await http.get(url, params=_authorize_params(idp, challenge, code_challenge_method="plain"))
    )
    idp.refuse_next("access_denied", "Alice said no.")
    refused = _callback(await http.get(url, params=_authorize_params(idp, challenge)))

    assert implicit["error"] == "unsupported_response_type"
    assert no_pkce["error"] == plain["error"] == "invalid_request"
    assert refused == {
        "error": "access_denied",
        "error_description": "Alice said no.",
        "state": "state-123",
    }
    assert all("code" not in c for c in (implicit, no_pkce, plain, refused))


async def test_login_page_lists_the_users_and_its_form_signs_the_chosen_one_in(
    idp: OidcStandIn, http: httpx.AsyncClient
) -> None:
    idp.use_login_page()
    idp.add_user("bob", email="bob@example.com", name="Bob")
    verifier, challenge = _pkce()
    url = idp.discovery()["authorization_endpoint"]

    page = await http.get(url, params=_authorize_params(idp, challenge))
    assert page.status_code == 200
    assert '<button type="submit" name="sub" value="bob">Sign in as Bob</button>' in page.text
    assert "Sign in as Alice" in page.text
    # What a browser submits: the hidden fields plus the clicked button's name and value.
    submitted = {**_authorize_params(idp, challenge), "sub": "bob"}
    callback = _callback(await http.post(url, data=submitted))
    cancelled = _callback(
        await http.post(url, data={**_authorize_params(idp, challenge), "cancel": "1"})
    )
    token = (await _redeem(idp, http, callback["code"], verifier)).json()["id_token"]

    assert _unverified_claims(token)["sub"] == "bob"
    assert cancelled["error"] == "access_denied"


async def test_requests_are_recorded_with_their_headers_and_form(
    idp: OidcStandIn, http: httpx.AsyncClient
) -> None:
    verifier, challenge = _pkce()
    code = await _code(idp, http, challenge)
    await _redeem(idp, http, code, verifier)

    (token_request,) = idp.requests_to("token")
    assert token_request.form["code_verifier"] == verifier
    assert token_request.status == 200
    assert idp.requests_to("authorize")[0].query["code_challenge"] == challenge


async def test_slack_mode_has_slacks_paths_claims_and_error_shape(
    http: httpx.AsyncClient,
) -> None:
    async with OidcStandIn(slack=True, team_id="T0ACME") as idp:
        idp.sign_in_as("U0ALICE", email="alice@acme.example", name="Alice")
        doc = (await http.get(f"{idp.issuer}/.well-known/openid-configuration")).json()
        verifier, challenge = _pkce()
        callback = _callback(
            await http.get(doc["authorization_endpoint"], params=_authorize_params(idp, challenge))
        )
        ok = await _redeem(idp, http, callback["code"], verifier)
        again = await _redeem(idp, http, callback["code"], verifier)

    assert doc["token_endpoint"].endswith("/api/openid.connect.token")
    assert "iss" not in callback
    assert ok.json()["ok"] is True
    claims = _unverified_claims(ok.json()["id_token"])
    assert claims["https://slack.com/user_id"] == "U0ALICE"
    assert claims["https://slack.com/team_id"] == "T0ACME"
    assert again.status_code == 200
    assert again.json() == {"ok": False, "error": "invalid_code"}


async def test_faults_make_the_token_bad_in_the_named_way(
    idp: OidcStandIn, http: httpx.AsyncClient
) -> None:
    user = idp.users["alice"]
    idp.misbehave("alg_none", "expired", "wrong_audience")
    header = json.loads(_segment(idp.id_token(user, nonce="n"), 0))
    claims = _unverified_claims(idp.id_token(user, nonce="n"))
    idp.behave()

    assert header["alg"] == "none"
    assert claims["exp"] < time.time() - 60
    assert claims["aud"] == "another-client"
    with pytest.raises(ValueError, match="unknown faults"):
        idp.misbehave("sloppy")


def _segment(token: str, index: int) -> bytes:
    part = token.split(".")[index]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _unverified_claims(token: str) -> dict:
    return json.loads(_segment(token, 1))
