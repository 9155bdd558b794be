"""The console's OpenID Connect sign-in, end to end against the OIDC stand-in over real HTTP:
start() gives the authorization URL, a browser-like client follows it to the callback, and
finish() either returns who signed in or refuses with a sentence that carries no secret."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bot.console.oidc import (
    Claims,
    Oidc,
    Provider,
    SignInRefused,
    Started,
    providers_from_env,
)
from runtime.errors import BadRequest
from tests.standins.oidc_standin import OidcStandIn

REDIRECT_URI = "http://127.0.0.1:8765/auth/callback"


def _provider(idp: OidcStandIn, **overrides: object) -> Provider:
    fields: dict = {
        "name": "oidc",
        "label": "Sign in with the stand-in",
        "issuer": idp.issuer,
        "client_id": idp.client_id,
        "client_secret": idp.client_secret,
        "slack": idp.slack,
    }
    return Provider(**{**fields, **overrides})


@pytest.fixture
async def idp() -> AsyncIterator[OidcStandIn]:
    async with OidcStandIn() as standin:
        standin.sign_in_as("alice", email="alice@example.com", name="Alice")
        yield standin


@pytest.fixture
async def oidc(idp: OidcStandIn) -> AsyncIterator[Oidc]:
    async with Oidc([_provider(idp)], timeout=2.0) as client:
        yield client


async def _follow(started: Started) -> dict[str, str]:
    """What a browser does: open the authorization URL and land on the callback."""
    async with httpx.AsyncClient(follow_redirects=False, timeout=5) as browser:
        response = await browser.get(started.url)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def _sign_in(oidc: Oidc, name: str = "oidc") -> Claims:
    started = await oidc.start(name, REDIRECT_URI)
    return await oidc.finish(started.pending, await _follow(started))


async def _refusal(oidc: Oidc, idp: OidcStandIn, name: str = "oidc") -> str:
    """The sentence a refused sign-in shows, checked to carry no secret, code or token."""
    with pytest.raises(SignInRefused) as refused:
        await _sign_in(oidc, name)
    message = refused.value.message
    assert idp.client_secret not in message
    for rec in idp.requests_to("token"):
        assert rec.form["code"] not in message
    return message


# --- signing in --------------------------------------------------------------------------------


async def test_sign_in_returns_the_verified_claims_of_who_signed_in(
    oidc: Oidc, idp: OidcStandIn
) -> None:
    claims = await _sign_in(oidc)

    assert claims == Claims(
        issuer=idp.issuer,
        subject="alice",
        email="alice@example.com",
        email_verified=True,
        name="Alice",
        slack_user_id=None,
        slack_team_id=None,
    )


async def test_start_sends_pkce_s256_state_nonce_and_the_openid_scopes(
    oidc: Oidc, idp: OidcStandIn
) -> None:
    started = await oidc.start("oidc", REDIRECT_URI)
    query = {k: v[0] for k, v in parse_qs(urlsplit(started.url).query).items()}

    assert started.url.startswith(idp.discovery()["authorization_endpoint"] + "?")
    assert query["response_type"] == "code"
    assert query["scope"] == "openid email profile"
    assert query["code_challenge_method"] == "S256"
    assert query["state"] == started.pending["state"]
    assert query["nonce"] == started.pending["nonce"]
    assert started.pending["code_verifier"] not in started.url
    assert idp.client_secret not in started.url
    assert set(started.pending) == {
        "state",
        "nonce",
        "code_verifier",
        "provider",
        "redirect_uri",
        "started_at",
    }
    other = await oidc.start("oidc", REDIRECT_URI)
    assert other.pending["state"] != started.pending["state"]
    assert other.pending["nonce"] != started.pending["nonce"]


async def test_the_code_exchange_proves_the_pkce_verifier_and_uses_basic_auth(
    oidc: Oidc, idp: OidcStandIn
) -> None:
    started = await oidc.start("oidc", REDIRECT_URI)
    await oidc.finish(started.pending, await _follow(started))

    (token,) = idp.requests_to("token")
    assert token.status == 200
    assert token.form["code_verifier"] == started.pending["code_verifier"]
    assert token.form["redirect_uri"] == REDIRECT_URI
    assert token.headers["Authorization"].startswith("Basic ")
    assert "client_secret" not in token.form


async def test_client_secret_post_is_used_when_the_idp_offers_only_that() -> None:
    async with OidcStandIn(auth_methods=("client_secret_post",)) as idp:
        idp.sign_in_as("alice")
        async with Oidc([_provider(idp)]) as oidc:
            claims = await _sign_in(oidc)
        (token,) = idp.requests_to("token")

    assert claims.subject == "alice"
    assert "Authorization" not in token.headers
    assert token.form["client_secret"] == idp.client_secret


async def test_discovery_is_fetched_once_and_the_jwks_once_across_sign_ins(
    oidc: Oidc, idp: OidcStandIn
) -> None:
    await _sign_in(oidc)
    await _sign_in(oidc)

    assert len(idp.requests_to("discovery")) == 1
    assert len(idp.requests_to("jwks")) == 1


async def test_a_rotated_signing_key_is_picked_up_by_refetching_the_jwks(
    oidc: Oidc, idp: OidcStandIn
) -> None:
    await _sign_in(oidc)
    idp.rotate_key()

    claims = await _sign_in(oidc)

    assert claims.subject == "alice"
    assert len(idp.requests_to("jwks")) == 2


async def test_es256_id_tokens_are_accepted() -> None:
    async with OidcStandIn(alg="ES256") as idp:
        idp.sign_in_as("alice", email="alice@example.com")
        async with Oidc([_provider(idp)]) as oidc:
            claims = await _sign_in(oidc)

    assert claims.email == "alice@example.com"


async def test_email_verified_false_is_reported_as_unverified(oidc: Oidc, idp: OidcStandIn) -> None:
    idp.sign_in_as("mallory", email="ceo@example.com", email_verified=False)

    claims = await _sign_in(oidc)

    assert (claims.email, claims.email_verified) == ("ceo@example.com", False)


# --- Slack ------------------------------------------------------------------------------------


async def test_slack_sign_in_carries_the_slack_user_and_team() -> None:
    async with OidcStandIn(slack=True, team_id="T0ACME") as idp:
        idp.sign_in_as("U0ALICE", email="alice@acme.example", name="Alice")
        env = {
            "ACP_SLACK_OIDC_CLIENT_ID": idp.client_id,
            "ACP_SLACK_OIDC_CLIENT_SECRET": idp.client_secret,
            "ACP_SLACK_OIDC_ISSUER": idp.issuer,
        }
        async with Oidc(providers_from_env(env)) as oidc:
            claims = await _sign_in(oidc, "slack")

    assert claims.slack_user_id == "U0ALICE"
    assert claims.slack_team_id == "T0ACME"
    assert claims.email == "alice@acme.example"


async def test_slack_sign_in_from_another_workspace_is_refused() -> None:
    async with OidcStandIn(slack=True, team_id="T0OTHER") as idp:
        idp.sign_in_as("U0EVE")
        provider = _provider(idp, name="slack", slack_team_id="T0ACME")
        async with Oidc([provider]) as oidc:
            started = await oidc.start("slack", REDIRECT_URI)
            assert "team=T0ACME" in started.url
            message = await _refusal(oidc, idp, "slack")

    assert message == "that Slack workspace may not sign in here"


async def test_slack_refusals_in_slacks_ok_false_shape_are_refused() -> None:
    async with OidcStandIn(slack=True) as slack:
        slack.sign_in_as("U0ALICE")
        async with Oidc([_provider(slack, name="slack")]) as oidc:
            started = await oidc.start("slack", REDIRECT_URI)
            callback = await _follow(started)
            await oidc.finish(started.pending, callback)
            with pytest.raises(SignInRefused) as refused:
                await oidc.finish(started.pending, callback)  # the code again

    assert refused.value.message == (
        f"the sign-in provider {_host(slack)} refused the code exchange (invalid_code)"
    )


async def test_a_generic_idp_cannot_claim_a_slack_identity(oidc: Oidc, idp: OidcStandIn) -> None:
    idp.sign_in_as("eve", extra_claims={"https://slack.com/user_id": "U0ADMIN"})

    claims = await _sign_in(oidc)

    assert claims.slack_user_id is None


# --- refusals of a bad ID token ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "sentence"),
    [
        ("other_key", "the ID token's signature does not verify"),
        (
            "unknown_kid",
            "the ID token's signature does not verify: the IdP publishes no key for it",
        ),
        ("alg_none", "the ID token is not signed (alg none)"),
        (
            "hs256_public_key",
            "the ID token's signing algorithm HS256 is not allowed (RS256, ES256 are)",
        ),
        ("wrong_audience", "the ID token is for another application (aud)"),
        ("extra_audience", "the ID token was issued to another application (azp)"),
        ("wrong_issuer", "the ID token is from another issuer (iss)"),
        ("expired", "the ID token has expired"),
        ("not_yet_valid", "the ID token is not valid yet (nbf): check this server's clock"),
        (
            "issued_in_future",
            "the ID token was issued in the future (iat): check this server's clock",
        ),
        ("wrong_nonce", "the ID token's nonce does not match this sign-in: start again"),
        ("no_nonce", "the ID token's nonce does not match this sign-in: start again"),
    ],
)
async def test_a_bad_id_token_is_refused_with_its_sentence(
    oidc: Oidc, idp: OidcStandIn, fault: str, sentence: str
) -> None:
    idp.misbehave(fault)

    assert await _refusal(oidc, idp) == sentence


async def test_an_unknown_key_id_refetches_the_jwks_once_only(oidc: Oidc, idp: OidcStandIn) -> None:
    idp.misbehave("unknown_kid")

    await _refusal(oidc, idp)

    assert len(idp.requests_to("jwks")) == 2


async def test_a_token_answer_without_an_id_token_is_refused(oidc: Oidc, idp: OidcStandIn) -> None:
    idp.misbehave("no_id_token")

    assert await _refusal(oidc, idp) == f"the sign-in provider {_host(idp)} returned no ID token"


async def test_a_discovery_document_naming_another_issuer_is_refused(idp: OidcStandIn) -> None:
    idp.misbehave("discovery_wrong_issuer")
    async with Oidc([_provider(idp)]) as oidc:
        with pytest.raises(SignInRefused) as refused:
            await oidc.start("oidc", REDIRECT_URI)

    assert refused.value.message == (
        f"the sign-in provider {_host(idp)}'s discovery document names another issuer"
    )


# --- refusals of the callback -------------------------------------------------------------------


async def test_a_callback_with_another_state_is_refused(oidc: Oidc, idp: OidcStandIn) -> None:
    started = await oidc.start("oidc", REDIRECT_URI)
    callback = await _follow(started)

    with pytest.raises(SignInRefused) as refused:
        await oidc.finish(started.pending, {**callback, "state": "forged"})

    assert refused.value.message == "the sign-in's state does not match: start again"
    assert idp.requests_to("token") == []  # the code was never spent


async def test_a_callback_naming_another_issuer_is_refused(oidc: Oidc) -> None:
    started = await oidc.start("oidc", REDIRECT_URI)
    callback = await _follow(started)

    with pytest.raises(SignInRefused) as refused:
        await oidc.finish(started.pending, {**callback, "iss": "https://idp.attacker.example"})

    assert refused.value.message == "the sign-in answer came from another issuer: start again"


async def test_the_idps_error_is_shown_with_its_description(oidc: Oidc, idp: OidcStandIn) -> None:
    idp.refuse_next("access_denied", "Alice is not assigned to this application.")

    message = await _refusal(oidc, idp)

    assert message == (
        f"the sign-in provider {_host(idp)} refused the sign-in (access_denied): "
        "Alice is not assigned to this application."
    )


async def test_a_forged_error_callback_does_not_show_its_description(oidc: Oidc) -> None:
    started = await oidc.start("oidc", REDIRECT_URI)
    forged = {"error": "access_denied", "error_description": "Call +1 555 0100 to unlock."}

    with pytest.raises(SignInRefused) as refused:
        await oidc.finish(started.pending, forged)

    assert "555" not in refused.value.message
    assert "(access_denied)" in refused.value.message


async def test_a_reused_callback_is_refused_by_the_idp(oidc: Oidc, idp: OidcStandIn) -> None:
    started = await oidc.start("oidc", REDIRECT_URI)
    callback = await _follow(started)
    await oidc.finish(started.pending, callback)

    with pytest.raises(SignInRefused) as refused:
        await oidc.finish(started.pending, callback)

    assert refused.value.message == (
        f"the sign-in provider {_host(idp)} refused the code exchange (invalid_grant): "
        "The code has already been used."
    )


async def test_a_wrong_client_secret_is_refused_without_showing_it(idp: OidcStandIn) -> None:
    wrong = "sk-wrong-secret-never-shown"
    async with Oidc([_provider(idp, client_secret=wrong)]) as oidc:
        started = await oidc.start("oidc", REDIRECT_URI)
        with pytest.raises(SignInRefused) as refused:
            await oidc.finish(started.pending, await _follow(started))

    assert "(invalid_client)" in refused.value.message
    assert wrong not in refused.value.message
    assert wrong not in repr(_provider(idp, client_secret=wrong))


async def test_a_stale_or_foreign_pending_sign_in_is_refused(oidc: Oidc) -> None:
    started = await oidc.start("oidc", REDIRECT_URI)
    callback = await _follow(started)
    stale = {**started.pending, "started_at": int(time.time()) - 3600}

    with pytest.raises(SignInRefused) as too_old:
        await oidc.finish(stale, callback)
    with pytest.raises(SignInRefused) as foreign:
        await oidc.finish({}, callback)

    assert too_old.value.message == "the sign-in took too long: start again"
    assert foreign.value.message == "this sign-in was not started here: start again"


async def test_an_unknown_provider_name_is_refused(oidc: Oidc) -> None:
    with pytest.raises(SignInRefused, match="there is no sign-in provider called 'okta'"):
        await oidc.start("okta", REDIRECT_URI)


# --- the IdP out of reach -----------------------------------------------------------------------


async def test_an_unreachable_idp_is_refused_naming_its_host() -> None:
    port = _closed_port()
    provider = Provider("oidc", "Sign in", f"http://127.0.0.1:{port}", "acp", "sk-never-shown")
    async with Oidc([provider], timeout=2.0) as oidc:
        with pytest.raises(SignInRefused) as refused:
            await oidc.start("oidc", REDIRECT_URI)

    assert refused.value.message == f"the sign-in provider 127.0.0.1:{port} cannot be reached"


async def test_an_idp_that_goes_away_before_the_code_exchange_is_refused(
    oidc: Oidc, idp: OidcStandIn
) -> None:
    started = await oidc.start("oidc", REDIRECT_URI)
    callback = await _follow(started)
    await idp.stop()

    with pytest.raises(SignInRefused) as refused:
        await oidc.finish(started.pending, callback)

    assert refused.value.message == f"the sign-in provider {_host(idp)} cannot be reached"
    assert idp.client_secret not in refused.value.message


async def test_a_slow_idp_is_refused_at_the_deadline() -> None:
    async with OidcStandIn(latency_s=1.0) as idp, Oidc([_provider(idp)], timeout=0.2) as oidc:
        began = time.monotonic()
        with pytest.raises(SignInRefused) as refused:
            await oidc.start("oidc", REDIRECT_URI)
        took = time.monotonic() - began

    assert refused.value.message == f"the sign-in provider {_host(idp)} did not answer within 0.2 s"
    assert took < 0.9


# --- configuration ----------------------------------------------------------------------------


def test_providers_from_env_reads_the_generic_and_slack_providers() -> None:
    env = {
        "ACP_OIDC_ISSUER": "https://acme.okta.com",
        "ACP_OIDC_CLIENT_ID": "console",
        "ACP_OIDC_CLIENT_SECRET": "sk-okta",
        "ACP_SLACK_OIDC_CLIENT_ID": "123.456",
        "ACP_SLACK_OIDC_CLIENT_SECRET": "sk-slack",
    }

    okta, slack = providers_from_env(env)

    assert (okta.name, okta.label, okta.issuer, okta.slack) == (
        "oidc",
        "Sign in with acme.okta.com",
        "https://acme.okta.com",
        False,
    )
    assert (slack.name, slack.label, slack.issuer, slack.slack) == (
        "slack",
        "Sign in with Slack",
        "https://slack.com",
        True,
    )
    assert providers_from_env({**env, "ACP_OIDC_LABEL": "Sign in with Okta"})[0].label == (
        "Sign in with Okta"
    )
    assert providers_from_env({}) == []


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"ACP_OIDC_ISSUER": "https://acme.okta.com"}, "ACP_OIDC_CLIENT_ID"),
        (
            {"ACP_OIDC_ISSUER": "https://acme.okta.com", "ACP_OIDC_CLIENT_ID": "console"},
            "ACP_OIDC_CLIENT_SECRET",
        ),
        (
            {"ACP_OIDC_CLIENT_ID": "console", "ACP_OIDC_CLIENT_SECRET": "sk-never-echoed"},
            "ACP_OIDC_ISSUER",
        ),
        ({"ACP_SLACK_OIDC_CLIENT_ID": "123.456"}, "ACP_SLACK_OIDC_CLIENT_SECRET"),
        ({"ACP_SLACK_OIDC_CLIENT_SECRET": "sk-never-echoed"}, "ACP_SLACK_OIDC_CLIENT_ID"),
    ],
)
def test_a_half_configured_provider_names_the_missing_variable(
    env: dict[str, str], missing: str
) -> None:
    with pytest.raises(BadRequest) as error:
        providers_from_env(env)

    assert missing in error.value.message
    assert error.value.hint is not None and missing in error.value.hint
    assert "sk-never-echoed" not in error.value.render()


def test_a_plain_http_issuer_elsewhere_than_this_machine_is_refused() -> None:
    env = {
        "ACP_OIDC_ISSUER": "http://acme.okta.com",
        "ACP_OIDC_CLIENT_ID": "console",
        "ACP_OIDC_CLIENT_SECRET": "sk-okta",
    }

    with pytest.raises(BadRequest, match="ACP_OIDC_ISSUER must be an https URL"):
        providers_from_env(env)


def _host(idp: OidcStandIn) -> str:
    return urlsplit(idp.issuer).netloc


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- claims from UserInfo ----------------------------------------------------------------------


async def test_an_idp_that_keeps_the_email_out_of_the_id_token_is_asked_userinfo(
    oidc: Oidc, idp: OidcStandIn
) -> None:
    # node-oidc-provider (a certified OP) does this by default: scope claims via UserInfo.
    idp.profile_in_id_token = False
    claims = await _sign_in(oidc)
    assert (claims.subject, claims.email, claims.email_verified) == (
        "alice",
        "alice@example.com",
        True,
    )
    (call,) = idp.requests_to("userinfo")
    assert call.headers["Authorization"].startswith("Bearer ")


async def test_a_userinfo_answer_about_someone_else_is_refused(
    oidc: Oidc, idp: OidcStandIn
) -> None:
    idp.profile_in_id_token = False
    idp.userinfo_sub = "mallory"
    message = await _refusal(oidc, idp)
    assert "someone else" in message


async def test_an_id_token_with_the_email_needs_no_userinfo(oidc: Oidc, idp: OidcStandIn) -> None:
    await _sign_in(oidc)
    assert idp.requests_to("userinfo") == []
