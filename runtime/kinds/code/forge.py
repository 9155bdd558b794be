"""Opening, reading and closing pull requests on GitHub and merge requests on GitLab.

Every call has a deadline and every failure becomes an AcpError a person can act on. The token
must never appear in an error message, a log line or an exception's repr or cause.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from runtime.errors import AcpError
from runtime.policy.schema import ForgeSpec

DEADLINE_S = 15.0  # for a whole call: connect, send, answer
GITHUB_API_VERSION = "2022-11-28"
_MAX_DETAIL = 300
_NAMES = {"github": "GitHub", "gitlab": "GitLab"}


# --- errors ------------------------------------------------------------------------------------
#
# ForgeError
#  ├── ForgeTokenMissing    the token's environment variable is not set
#  ├── ForgeTokenRefused    401/403: the forge would not take the token
#  ├── ForgeNotFound        404: no such project (or pull request)
#  ├── ForgeRejected        400/409/422: the forge refused the request, with its reason
#  └── ForgeUnreachable     no answer within the deadline, or an answer that is not the API's


class ForgeError(AcpError):
    """Raised when a call to a forge (GitHub, GitLab) fails."""


class ForgeTokenMissing(ForgeError):
    """Raised when the environment variable a forge's token_env names is unset or empty."""


class ForgeTokenRefused(ForgeError):
    """Raised when the forge answers 401 or 403 to the token."""


class ForgeNotFound(ForgeError):
    """Raised when the forge answers 404: the project (or the pull request) does not exist,
    or the token may not see it."""


class ForgeRejected(ForgeError):
    """Raised when the forge refuses the request itself (400, 409, 422) and says why."""


class ForgeUnreachable(ForgeError):
    """Raised when the forge does not answer within the deadline, or answers something that is
    not its API (a 5xx, a body that is not JSON)."""


# --- the pull request --------------------------------------------------------------------------


class PullRequest(BaseModel):
    """A pull request (GitHub) or merge request (GitLab), as much of it as the runtime uses.

    ``merge_commit`` is set only once it is merged (GitHub names a test merge commit for open
    pull requests; that is not it)."""

    number: int
    url: str
    state: Literal["open", "closed", "merged"]
    head: str
    base: str
    merge_commit: str | None = None


def token_for(spec: ForgeSpec) -> str:
    """The forge token from the environment variable ``spec.token_env`` names."""
    token = os.environ.get(spec.token_env, "")
    if not token:
        raise ForgeTokenMissing(
            f"the {_NAMES[spec.kind]} token for {spec.project} is not set: "
            f"${spec.token_env} is empty",
            hint=f"set {spec.token_env} in the control plane's environment",
        )
    return token


async def open_pull_request(
    spec: ForgeSpec,
    token: str,
    *,
    head: str,
    base: str,
    title: str,
    body: str,
) -> PullRequest:
    """Open a pull request from branch ``head`` onto ``base``."""
    if spec.kind == "github":
        payload: dict[str, Any] = {"title": title, "head": head, "base": base, "body": body}
    else:
        payload = {
            "source_branch": head,
            "target_branch": base,
            "title": title,
            "description": body,
        }
    answer = await _call(spec, token, "POST", None, payload, "open a pull request")
    return _pull_request(spec, answer)


async def get_pull_request(spec: ForgeSpec, token: str, number: int) -> PullRequest:
    """The pull request ``number`` as it is now."""
    answer = await _call(spec, token, "GET", number, None, f"read #{number}")
    return _pull_request(spec, answer)


async def close_pull_request(spec: ForgeSpec, token: str, number: int) -> PullRequest:
    """Close pull request ``number`` without merging it."""
    if spec.kind == "github":
        method, payload = "PATCH", {"state": "closed"}
    else:
        method, payload = "PUT", {"state_event": "close"}
    answer = await _call(spec, token, method, number, payload, f"close #{number}")
    return _pull_request(spec, answer)


# --- the wire ----------------------------------------------------------------------------------


def _url(spec: ForgeSpec, number: int | None) -> str:
    api = spec.api_url.rstrip("/")
    if spec.kind == "github":
        owner, sep, repo = spec.project.strip("/").partition("/")
        if not sep or not owner or not repo or "/" in repo:
            raise ForgeError(
                f"the GitHub project {spec.project!r} is not owner/repo",
                hint="name the repository as owner/repo in the policy's forge.project",
            )
        url = f"{api}/repos/{quote(owner, safe='')}/{quote(repo, safe='')}/pulls"
    else:
        url = f"{api}/projects/{quote(spec.project.strip('/'), safe='')}/merge_requests"
    return url if number is None else f"{url}/{int(number)}"


def _headers(spec: ForgeSpec, token: str) -> dict[str, str]:
    if spec.kind == "github":
        return {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": GITHUB_API_VERSION,
        }
    return {"PRIVATE-TOKEN": token, "Accept": "application/json"}


async def _call(
    spec: ForgeSpec,
    token: str,
    method: str,
    number: int | None,
    payload: dict[str, Any] | None,
    doing: str,
) -> dict[str, Any]:
    url = _url(spec, number)
    deadline = DEADLINE_S
    where = f"{_NAMES[spec.kind]} at {url}"
    if not token.isascii() or not token.isprintable() or token != token.strip():
        raise ForgeTokenRefused(
            f"the token in ${spec.token_env} cannot be sent: it has spaces, line breaks or "
            "characters outside ASCII",
            hint=f"set {spec.token_env} to the token alone",
        )
    # Exceptions are raised after the except block, without a cause: httpx's exception holds
    # the request, and the request holds the token.
    failure: str | None = None
    try:
        async with (
            asyncio.timeout(deadline),
            httpx.AsyncClient(timeout=httpx.Timeout(deadline), follow_redirects=False) as client,
        ):
            headers = _headers(spec, token)
            response = await client.request(method, url, headers=headers, json=payload)
    except (TimeoutError, httpx.TimeoutException):
        failure = f"no answer within {deadline:g} s"
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        failure = f"{type(exc).__name__}: {_scrub(str(exc), token) or 'connection failed'}"
    if failure is not None:
        raise ForgeUnreachable(
            f"could not {doing} on {where}: {failure}",
            hint=f"check that {spec.api_url} is the forge's API and reachable from here",
        )
    return _answer(spec, token, response, number, doing, url)


def _answer(
    spec: ForgeSpec,
    token: str,
    response: httpx.Response,
    number: int | None,
    doing: str,
    url: str,
) -> dict[str, Any]:
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    detail = _scrub(_reason(body), token)
    if status in (401, 403):
        raise ForgeTokenRefused(
            f"{_NAMES[spec.kind]} refused the token in ${spec.token_env} ({status}"
            f"{': ' + detail if detail else ''}) trying to {doing} in {spec.project}",
            hint=f"check that ${spec.token_env} holds a live token that may write {spec.project}",
        )
    if status == 404:
        name = _NAMES[spec.kind]
        if number is None or "project" in detail.lower():
            what = f"no project {spec.project}"
        else:
            pull = {"github": f"pull request #{number}", "gitlab": f"merge request !{number}"}[
                spec.kind
            ]
            what = f"no {pull} in {spec.project}, or no project {spec.project}"
        raise ForgeNotFound(
            f"{name} has {what} that this token may see (404 at {url})",
            hint=f"check forge.project ({spec.project}) and that ${spec.token_env} may read it",
        )
    if status in (400, 405, 409, 422):
        raise ForgeRejected(
            f"{_NAMES[spec.kind]} would not {doing} in {spec.project} ({status}): "
            f"{detail or 'no reason given'}",
        )
    if not 200 <= status < 300 or not isinstance(body, dict):
        shown = detail or _scrub(response.text[:_MAX_DETAIL], token).strip() or "empty body"
        raise ForgeUnreachable(
            f"{_NAMES[spec.kind]} answered {status} trying to {doing} in {spec.project}: {shown}",
            hint=f"check that {spec.api_url} is the forge's API; try again if it was a 5xx",
        )
    return body


def _reason(body: Any) -> str:
    """What the forge said went wrong: GitHub's message and errors[], GitLab's message/error."""
    if not isinstance(body, dict):
        return ""
    parts: list[str] = []
    message = body.get("message", body.get("error"))
    if isinstance(message, list):
        parts.extend(str(m) for m in message)
    elif isinstance(message, dict):  # GitLab: {"source_branch": ["is invalid"]}
        parts.extend(f"{field} {'; '.join(map(str, v))}" for field, v in message.items())
    elif message:
        parts.append(str(message))
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            text = error.get("message") or " ".join(
                str(error[k]) for k in ("resource", "field", "code") if error.get(k)
            )
        else:
            text = str(error)
        if text:
            parts.append(text)
    return "; ".join(parts)[:_MAX_DETAIL]


def _scrub(text: str, token: str) -> str:
    return text.replace(token, "[token]") if token else text


def _pull_request(spec: ForgeSpec, body: dict[str, Any]) -> PullRequest:
    try:
        if spec.kind == "github":
            merged = bool(body.get("merged")) or bool(body.get("merged_at"))
            state = "merged" if merged else body["state"]
            return PullRequest(
                number=body["number"],
                url=body["html_url"],
                state=state,
                head=body["head"]["ref"],
                base=body["base"]["ref"],
                merge_commit=body.get("merge_commit_sha") if merged else None,
            )
        raw_state = body["state"]
        state = {"opened": "open", "locked": "open"}.get(raw_state, raw_state)
        merge_commit = body.get("merge_commit_sha") or body.get("squash_commit_sha")
        return PullRequest(
            number=body["iid"],
            url=body["web_url"],
            state=state,
            head=body["source_branch"],
            base=body["target_branch"],
            merge_commit=merge_commit if state == "merged" else None,
        )
    except (KeyError, TypeError, ValidationError) as exc:
        raise ForgeUnreachable(
            f"{_NAMES[spec.kind]} answered a pull request this client cannot read "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:_MAX_DETAIL]})",
            hint=f"check that {spec.api_url} is the {_NAMES[spec.kind]} REST API",
        ) from None
