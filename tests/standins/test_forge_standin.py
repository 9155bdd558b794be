"""The forge stand-in answers like GitHub's and GitLab's APIs, and merges really merge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.standins.forge_standin import ForgeStandin, git, make_bare_repo, quoted_project

TOKEN = "forge-token-31c9"
GH = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/vnd.github+json"}
GL = {"PRIVATE-TOKEN": TOKEN}


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    return make_bare_repo(tmp_path)


@asynccontextmanager
async def github(
    bare: Path, headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[ForgeStandin, httpx.AsyncClient]]:
    """The stand-in over ``bare`` as acme/widgets, and a client for its GitHub API."""
    async with (
        ForgeStandin(token=TOKEN, repos={"acme/widgets": bare}) as forge,
        httpx.AsyncClient(base_url=forge.api_url, headers=headers, timeout=10) as client,
    ):
        yield forge, client


def pr_payload(head: str = "feature") -> dict[str, str]:
    return {"title": "Add the feature", "head": head, "base": "main", "body": "Please."}


async def test_github_refuses_requests_without_the_token(bare: Path) -> None:
    async with github(bare) as (forge, client):
        none = await client.post("/repos/acme/widgets/pulls", json=pr_payload())
        wrong = await client.post(
            "/repos/acme/widgets/pulls",
            json=pr_payload(),
            headers={"Authorization": "Bearer nope"},
        )
        as_token = await client.get(
            "/repos/acme/widgets/pulls/1", headers={"Authorization": f"token {TOKEN}"}
        )
    assert none.status_code == 401 and none.json()["message"] == "Requires authentication"
    assert wrong.status_code == 401 and wrong.json()["message"] == "Bad credentials"
    assert as_token.status_code == 404  # the token is taken; there is no #1 yet
    assert forge.pulls == []
    assert forge.requests[1].headers["Authorization"] == "Bearer nope"


async def test_github_creates_a_pull_request_and_rejects_an_unknown_head(bare: Path) -> None:
    async with github(bare, GH) as (forge, client):
        created = await client.post("/repos/acme/widgets/pulls", json=pr_payload())
        unknown = await client.post("/repos/acme/widgets/pulls", json=pr_payload("nope"))
        again = await client.post("/repos/acme/widgets/pulls", json=pr_payload())
        no_project = await client.post("/repos/acme/gadgets/pulls", json=pr_payload())
        listing = await client.get("/repos/acme/widgets/pulls")
        read = await client.get("/repos/acme/widgets/pulls/1")
    assert created.status_code == 201
    pr = created.json()
    assert pr["number"] == 1 and pr["state"] == "open" and pr["merged"] is False
    assert pr["head"]["ref"] == "feature" and pr["base"]["ref"] == "main"
    assert pr["head"]["sha"] == git("--git-dir", str(bare), "rev-parse", "feature")
    assert pr["html_url"].endswith("/acme/widgets/pull/1")
    assert unknown.status_code == 422
    assert unknown.json()["message"] == "Validation Failed"
    assert unknown.json()["errors"] == [
        {"resource": "PullRequest", "field": "head", "code": "invalid"}
    ]
    assert again.status_code == 422
    assert "already exists" in again.json()["errors"][0]["message"]
    assert no_project.status_code == 404 and no_project.json()["message"] == "Not Found"
    assert listing.status_code == 404
    assert read.json() == pr
    assert [p.number for p in forge.pulls] == [1]
    assert forge.requests_to("POST")[0].json == pr_payload()


async def test_github_merge_really_merges_head_into_base(bare: Path, tmp_path: Path) -> None:
    before = git("--git-dir", str(bare), "rev-parse", "main")
    head = git("--git-dir", str(bare), "rev-parse", "feature")
    async with github(bare, GH) as (_forge, client):
        await client.post("/repos/acme/widgets/pulls", json=pr_payload())
        merged = await client.put("/repos/acme/widgets/pulls/1/merge", json={"sha": head})
        twice = await client.put("/repos/acme/widgets/pulls/1/merge", json={})
        read = (await client.get("/repos/acme/widgets/pulls/1")).json()
    assert merged.status_code == 200 and merged.json()["merged"] is True
    sha = merged.json()["sha"]
    assert twice.status_code == 405
    assert read["merged"] is True and read["state"] == "closed" and read["merged_at"]
    assert read["merge_commit_sha"] == sha
    assert git("--git-dir", str(bare), "rev-parse", "main") == sha
    parents = git("--git-dir", str(bare), "rev-parse", f"{sha}^1", f"{sha}^2").split()
    assert parents == [before, head]
    clone = tmp_path / "check"
    git("clone", "-q", "-b", "main", str(bare), str(clone))
    assert (clone / "feature.txt").read_text() == "a feature\n"
    assert (clone / "main.txt").read_text() == "main moved on\n"


async def test_github_merge_refuses_a_moved_head_and_a_conflict(tmp_path: Path) -> None:
    bare = make_bare_repo(tmp_path, conflicting=True)
    before = git("--git-dir", str(bare), "rev-parse", "main")
    async with github(bare, GH) as (forge, client):
        await client.post("/repos/acme/widgets/pulls", json=pr_payload())
        moved = await client.put("/repos/acme/widgets/pulls/1/merge", json={"sha": before})
        conflict = await client.put("/repos/acme/widgets/pulls/1/merge", json={})
    assert moved.status_code == 409
    assert conflict.status_code == 405
    assert conflict.json()["message"] == "Pull Request is not mergeable"
    assert git("--git-dir", str(bare), "rev-parse", "main") == before
    assert forge.pull(1).state == "open"


async def test_github_close_and_reopen(bare: Path) -> None:
    async with github(bare, GH) as (forge, client):
        await client.post("/repos/acme/widgets/pulls", json=pr_payload())
        closed = await client.patch("/repos/acme/widgets/pulls/1", json={"state": "closed"})
        merge = await client.put("/repos/acme/widgets/pulls/1/merge", json={})
        reopened = await client.patch("/repos/acme/widgets/pulls/1", json={"state": "open"})
    assert closed.json()["state"] == "closed" and closed.json()["merged"] is False
    assert merge.status_code == 405
    assert reopened.json()["state"] == "open"
    assert forge.pull(1).events == ["opened", "closed", "reopened"]


async def test_gitlab_merge_requests_by_path_and_by_id(bare: Path) -> None:
    async with ForgeStandin(token=TOKEN, repos={"acme/widgets": bare}) as forge:
        by_path = f"/projects/{quoted_project('acme/widgets')}/merge_requests"
        by_id = f"/projects/{forge.project_ids['acme/widgets']}/merge_requests"
        payload = {
            "source_branch": "feature",
            "target_branch": "main",
            "title": "Add the feature",
            "description": "Please.",
        }
        async with httpx.AsyncClient(base_url=forge.gitlab_api_url, timeout=10) as client:
            refused = await client.post(by_path, json=payload)
            created = await client.post(by_path, json=payload, headers=GL)
            duplicate = await client.post(by_path, json=payload, headers=GL)
            missing = await client.post(
                by_path, json={**payload, "source_branch": "nope"}, headers=GL
            )
            bearer = await client.get(f"{by_id}/1", headers={"Authorization": f"Bearer {TOKEN}"})
            no_project = await client.get("/projects/acme%2Fgadgets/merge_requests/1", headers=GL)
            merged = await client.put(f"{by_id}/1/merge", json={}, headers=GL)
            closed_after = await client.put(f"{by_id}/1", json={"state_event": "close"}, headers=GL)
    assert refused.status_code == 401 and refused.json() == {"message": "401 Unauthorized"}
    assert created.status_code == 201
    mr = created.json()
    assert mr["iid"] == 1 and mr["state"] == "opened" and mr["source_branch"] == "feature"
    assert duplicate.status_code == 409
    assert missing.status_code == 422
    assert missing.json()["message"] == ['Source branch "nope" does not exist']
    assert bearer.status_code == 200 and bearer.json()["iid"] == 1
    assert no_project.status_code == 404
    assert no_project.json()["message"] == "404 Project Not Found"
    assert merged.status_code == 200 and merged.json()["state"] == "merged"
    assert merged.json()["merge_commit_sha"] == git("--git-dir", str(bare), "rev-parse", "main")
    assert closed_after.json()["state"] == "merged"


async def test_the_merge_helper_merges_like_the_button(bare: Path) -> None:
    async with github(bare, GH) as (forge, client):
        await client.post("/repos/acme/widgets/pulls", json=pr_payload())
        sha = await forge.merge(1)
        read = (await client.get("/repos/acme/widgets/pulls/1")).json()
    assert read["merged"] is True and read["merge_commit_sha"] == sha
    assert git("--git-dir", str(bare), "rev-parse", "main") == sha
    assert git("--git-dir", str(bare), "merge-base", "--is-ancestor", "feature", "main") == ""
