"""A stand-in for GitHub's and GitLab's pull request APIs: real HTTP on 127.0.0.1, real git behind.

Each project is backed by a bare repository on disk; branches are checked there with git, and
a merge really merges head into base in it. It never touches a repository it was not given::

    async with ForgeStandin(token="t", repos={"acme/widgets": bare}) as forge:
        spec = ForgeSpec(kind="github", api_url=forge.api_url, project="acme/widgets", ...)
        ...
        await forge.merge(1)  # as if someone pressed "Merge" on the forge

GitHub (``forge.api_url``), with ``Authorization: Bearer T`` or ``token T``:

- ``POST /repos/{o}/{r}/pulls`` ``{title, head, base, body}`` → 201 with the pull request;
  422 ``Validation Failed`` (GitHub's ``errors[]``) when head or base is not a branch, head has
  no commits base lacks, or an open pull request for head already exists.
- ``GET /repos/{o}/{r}/pulls/{n}``; ``PATCH`` it with ``{"state": "closed"|"open"}``, title, body.
- ``PUT /repos/{o}/{r}/pulls/{n}/merge`` ``{merge_method?, sha?, commit_title?}`` → 200
  ``{sha, merged, message}``; 405 when not mergeable (closed, merged, conflicts); 409 when
  ``sha`` is not head's tip.

GitLab (``forge.gitlab_api_url``, ending ``/api/v4``), with ``PRIVATE-TOKEN: T`` or Bearer; the
project is its URL-encoded path or its numeric id (``forge.project_ids``):

- ``POST /projects/{id}/merge_requests`` ``{source_branch, target_branch, title, description}``
  → 201; 422 when a branch does not exist, 409 when an open merge request has that source.
- ``GET``/``PUT /projects/{id}/merge_requests/{iid}`` (``{"state_event": "close"|"reopen"}``).
- ``PUT /projects/{id}/merge_requests/{iid}/merge`` → 200 with the merge request; 405 when it
  is not open, 406 when it does not merge cleanly.

A missing or wrong token answers 401 with each forge's body; an unknown project or number, a
list (paginated) route and any other route answer 404 JSON. ``requests`` records every request
(headers as sent) and ``pulls`` holds every pull request, numbered per project.

``make_bare_repo(tmp_path)`` builds the repository most tests want (main, and a feature branch
that merges cleanly, or with ``conflicting=True`` one that does not).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from aiohttp import web

GIT_DEADLINE_S = 30.0
DOCS = "https://docs.github.com/rest"
MERGER = ("Forge Standin", "forge@standin.invalid")


@dataclass
class Recorded:
    """One request the stand-in received."""

    method: str
    path: str  # as sent, percent-encoding kept, without the query
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    status: int = 0


@dataclass
class Pull:
    """A pull request (GitHub) / merge request (GitLab), as the stand-in keeps it."""

    project: str
    number: int
    title: str
    body: str
    head: str
    base: str
    state: str = "open"  # open | closed | merged
    id: int = 0
    head_sha: str = ""
    merge_commit_sha: str | None = None
    created_at: str = ""
    closed_at: str | None = None
    merged_at: str | None = None
    events: list[str] = field(default_factory=list)


class _Answer(Exception):
    """Raised inside a handler to answer with ``status`` and a JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class GitFailed(Exception):
    def __init__(self, args: tuple[str, ...], code: int, stderr: str) -> None:
        super().__init__(f"git {' '.join(args)} exited {code}: {stderr.strip()}")
        self.code = code
        self.stderr = stderr


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ForgeStandin:
    """GitHub's and GitLab's pull request APIs on 127.0.0.1, each project a bare repository."""

    def __init__(self, *, token: str, repos: dict[str, Path], owner_login: str = "acp-bot") -> None:
        self.token = token
        self.repos = {name: Path(path) for name, path in repos.items()}
        self.project_ids = {name: n for n, name in enumerate(self.repos, start=1)}
        self.owner_login = owner_login
        self.api_url = ""
        self.gitlab_api_url = ""
        self.root_url = ""
        self.requests: list[Recorded] = []
        self.pulls: list[Pull] = []
        self._ids = itertools.count(1000)
        self._lock = asyncio.Lock()  # one change to the pulls or the repositories at a time
        self._runner: web.AppRunner | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> ForgeStandin:
        app = web.Application(client_max_size=16 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.root_url = f"http://127.0.0.1:{port}"
        self.api_url = f"{self.root_url}/github"
        self.gitlab_api_url = f"{self.root_url}/gitlab/api/v4"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ForgeStandin:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- for tests ------------------------------------------------------------------------------

    def pull(self, number: int, project: str | None = None) -> Pull:
        """The pull request ``number`` of ``project`` (the only project, when not named)."""
        name = project or self._only_project()
        for pull in self.pulls:
            if pull.project == name and pull.number == number:
                return pull
        raise KeyError(f"no pull request #{number} in {name}")

    async def merge(self, number: int, project: str | None = None, *, method: str = "merge") -> str:
        """Merge pull request ``number`` as the forge's merge button does; the merge commit."""
        async with self._lock:
            return await self._merge(self.pull(number, project), method, None, None)

    def requests_to(self, method: str, path_contains: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and path_contains in r.path]

    def _only_project(self) -> str:
        if len(self.repos) != 1:
            raise ValueError("name the project: the stand-in has several")
        return next(iter(self.repos))

    # --- dispatch -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        raw_path = request.raw_path.split("?", 1)[0]
        body: Any = None
        text = await request.text() if request.can_read_body else ""
        recorded = Recorded(
            method=request.method,
            path=raw_path,
            query=dict(parse_qsl(request.query_string)),
            headers=dict(request.headers),
            json=None,
        )
        self.requests.append(recorded)
        segments = [unquote(s) for s in raw_path.strip("/").split("/")]
        try:
            if text:
                try:
                    body = json.loads(text)
                except ValueError:
                    raise self._bad_json(segments) from None
                if not isinstance(body, dict):
                    raise self._bad_json(segments)
                recorded.json = body
            if segments[:1] == ["github"]:
                status, answer = await self._github(
                    request.method, segments[1:], body or {}, request.headers
                )
            elif segments[:3] == ["gitlab", "api", "v4"]:
                status, answer = await self._gitlab(
                    request.method, segments[3:], body or {}, request.headers
                )
            else:
                raise _Answer(404, {"message": "Not Found", "documentation_url": DOCS})
        except _Answer as answered:
            status, answer = answered.status, answered.body
        recorded.status = status
        return web.json_response(answer, status=status)

    @staticmethod
    def _bad_json(segments: list[str]) -> _Answer:
        if segments[:1] == ["gitlab"]:
            return _Answer(400, {"error": "400 Bad request - body is not valid JSON"})
        return _Answer(400, {"message": "Problems parsing JSON", "documentation_url": DOCS})

    def _token_ok(self, presented: str) -> bool:
        return bool(presented) and hmac.compare_digest(presented.encode(), self.token.encode())

    # --- GitHub ---------------------------------------------------------------------------------

    async def _github(
        self, method: str, path: list[str], body: dict[str, Any], headers: Mapping[str, str]
    ) -> tuple[int, dict[str, Any]]:
        auth = headers.get("Authorization", "")
        scheme, _, presented = auth.partition(" ")
        if not auth:
            raise _Answer(401, {"message": "Requires authentication", "documentation_url": DOCS})
        if scheme.lower() not in ("bearer", "token") or not self._token_ok(presented.strip()):
            raise _Answer(401, {"message": "Bad credentials", "documentation_url": DOCS})
        not_found = _Answer(404, {"message": "Not Found", "documentation_url": DOCS})
        if len(path) < 4 or path[0] != "repos" or path[3] != "pulls":
            raise not_found
        project = f"{path[1]}/{path[2]}"
        if project not in self.repos:
            raise not_found
        rest = path[4:]
        async with self._lock:
            if not rest and method == "POST":
                pull = await self._github_create(project, body)
                return 201, await self._github_view(pull)
            if len(rest) >= 1 and rest[0].isdigit():
                pull = self._find(project, int(rest[0]), not_found)
                if len(rest) == 1 and method == "GET":
                    return 200, await self._github_view(pull)
                if len(rest) == 1 and method == "PATCH":
                    await self._github_update(pull, body)
                    return 200, await self._github_view(pull)
                if rest[1:] == ["merge"] and method == "PUT":
                    return 200, await self._github_merge(pull, body)
        raise not_found

    async def _github_create(self, project: str, body: dict[str, Any]) -> Pull:
        missing = [k for k in ("head", "base") if not isinstance(body.get(k), str) or not body[k]]
        if missing or not isinstance(body.get("title"), str):
            fields = missing or ["title"]
            raise _validation(
                [{"resource": "PullRequest", "field": f, "code": "missing_field"} for f in fields]
            )
        head = body["head"].split(":", 1)[1] if ":" in body["head"] else body["head"]
        base = body["base"]
        repo = self.repos[project]
        errors = []
        if await self._tip(repo, base) is None:
            errors.append({"resource": "PullRequest", "field": "base", "code": "invalid"})
        head_sha = await self._tip(repo, head)
        if head_sha is None:
            errors.append({"resource": "PullRequest", "field": "head", "code": "invalid"})
        if errors:
            raise _validation(errors)
        if self._open_for(project, head, base):
            message = f"A pull request already exists for {project.split('/')[0]}:{head}."
            raise _validation([{"resource": "PullRequest", "code": "custom", "message": message}])
        if await self._is_ancestor(repo, head, base):
            message = f"No commits between {base} and {head}"
            raise _validation([{"resource": "PullRequest", "code": "custom", "message": message}])
        return self._add(project, body["title"], body.get("body") or "", head, base, head_sha)

    async def _github_update(self, pull: Pull, body: dict[str, Any]) -> None:
        state = body.get("state")
        if state not in (None, "open", "closed"):
            raise _validation([{"resource": "PullRequest", "field": "state", "code": "invalid"}])
        if isinstance(body.get("title"), str):
            pull.title = body["title"]
        if isinstance(body.get("body"), str):
            pull.body = body["body"]
        if pull.state == "merged":
            if state == "open":
                raise _validation(
                    [
                        {
                            "resource": "PullRequest",
                            "code": "custom",
                            "message": "state cannot be "
                            "changed. The pull request cannot be reopened.",
                        }
                    ]
                )
            return
        if state == "closed" and pull.state == "open":
            pull.state, pull.closed_at = "closed", _now()
            pull.events.append("closed")
        elif state == "open" and pull.state == "closed":
            pull.state, pull.closed_at = "open", None
            pull.events.append("reopened")

    async def _github_merge(self, pull: Pull, body: dict[str, Any]) -> dict[str, Any]:
        method = body.get("merge_method", "merge")
        if method not in ("merge", "squash"):
            raise _validation(
                [{"resource": "PullRequest", "field": "merge_method", "code": "invalid"}]
            )
        if pull.state != "open":
            raise _Answer(
                405, {"message": "Pull Request is not mergeable", "documentation_url": DOCS}
            )
        try:
            sha = await self._merge(pull, method, body.get("sha"), body.get("commit_title"))
        except _Moved:
            raise _Answer(
                409,
                {
                    "message": "Head branch was modified. Review and try the merge again.",
                    "documentation_url": DOCS,
                },
            ) from None
        except _Conflict:
            raise _Answer(
                405, {"message": "Pull Request is not mergeable", "documentation_url": DOCS}
            ) from None
        return {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}

    async def _github_view(self, pull: Pull) -> dict[str, Any]:
        repo = self.repos[pull.project]
        owner = pull.project.split("/")[0]
        head_sha = await self._tip(repo, pull.head) or pull.head_sha
        base_sha = await self._tip(repo, pull.base) or ""
        html = f"https://github.com/{pull.project}/pull/{pull.number}"
        return {
            "id": pull.id,
            "number": pull.number,
            "url": f"{self.api_url}/repos/{pull.project}/pulls/{pull.number}",
            "html_url": html,
            "state": "open" if pull.state == "open" else "closed",
            "title": pull.title,
            "body": pull.body,
            "user": {"login": self.owner_login},
            "head": {"ref": pull.head, "sha": head_sha, "label": f"{owner}:{pull.head}"},
            "base": {"ref": pull.base, "sha": base_sha, "label": f"{owner}:{pull.base}"},
            "merged": pull.state == "merged",
            "merged_at": pull.merged_at,
            "closed_at": pull.closed_at,
            "created_at": pull.created_at,
            # GitHub names a test merge commit while a pull request is open; only after the
            # merge is it the real one. The stand-in has no test merges, so it answers null.
            "merge_commit_sha": pull.merge_commit_sha,
            "mergeable": None if pull.state != "open" else True,
        }

    # --- GitLab ---------------------------------------------------------------------------------

    async def _gitlab(
        self, method: str, path: list[str], body: dict[str, Any], headers: Mapping[str, str]
    ) -> tuple[int, dict[str, Any]]:
        presented = headers.get("PRIVATE-TOKEN", "")
        if not presented:
            scheme, _, bearer = headers.get("Authorization", "").partition(" ")
            presented = bearer.strip() if scheme.lower() == "bearer" else ""
        if not self._token_ok(presented):
            raise _Answer(401, {"message": "401 Unauthorized"})
        if len(path) < 2 or path[0] != "projects":
            raise _Answer(404, {"error": "404 Not Found"})
        project = self._gitlab_project(path[1])
        if project is None:
            raise _Answer(404, {"message": "404 Project Not Found"})
        rest = path[2:]
        not_found = _Answer(404, {"message": "404 Not found"})
        if rest[:1] != ["merge_requests"]:
            raise _Answer(404, {"error": "404 Not Found"})
        rest = rest[1:]
        async with self._lock:
            if not rest and method == "POST":
                pull = await self._gitlab_create(project, body)
                return 201, await self._gitlab_view(pull)
            if rest and rest[0].isdigit():
                pull = self._find(project, int(rest[0]), not_found)
                if len(rest) == 1 and method == "GET":
                    return 200, await self._gitlab_view(pull)
                if len(rest) == 1 and method == "PUT":
                    self._gitlab_update(pull, body)
                    return 200, await self._gitlab_view(pull)
                if rest[1:] == ["merge"] and method == "PUT":
                    await self._gitlab_merge(pull, body)
                    return 200, await self._gitlab_view(pull)
        raise _Answer(404, {"error": "404 Not Found"})

    def _gitlab_project(self, ident: str) -> str | None:
        if ident.isdigit():
            return next((n for n, i in self.project_ids.items() if i == int(ident)), None)
        return ident if ident in self.repos else None

    async def _gitlab_create(self, project: str, body: dict[str, Any]) -> Pull:
        for key in ("source_branch", "target_branch", "title"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise _Answer(400, {"error": f"{key} is missing"})
        head, base = body["source_branch"], body["target_branch"]
        repo = self.repos[project]
        problems = []
        head_sha = await self._tip(repo, head)
        if head_sha is None:
            problems.append(f'Source branch "{head}" does not exist')
        if await self._tip(repo, base) is None:
            problems.append(f'Target branch "{base}" does not exist')
        if problems:
            raise _Answer(422, {"message": problems})
        if head == base:
            raise _Answer(
                422, {"message": ["You can't use same project/branch for source and target"]}
            )
        existing = self._open_for(project, head, base)
        if existing:
            raise _Answer(
                409,
                {
                    "message": [
                        "Another open merge request already exists for "
                        f"this source branch: !{existing.number}"
                    ]
                },
            )
        title, description = body["title"], body.get("description") or ""
        return self._add(project, title, description, head, base, head_sha)

    def _gitlab_update(self, pull: Pull, body: dict[str, Any]) -> None:
        event = body.get("state_event")
        if event not in (None, "close", "reopen"):
            raise _Answer(400, {"error": "state_event does not have a valid value"})
        if isinstance(body.get("title"), str):
            pull.title = body["title"]
        if isinstance(body.get("description"), str):
            pull.body = body["description"]
        if event == "close" and pull.state == "open":
            pull.state, pull.closed_at = "closed", _now()
            pull.events.append("closed")
        elif event == "reopen" and pull.state == "closed":
            pull.state, pull.closed_at = "open", None
            pull.events.append("reopened")

    async def _gitlab_merge(self, pull: Pull, body: dict[str, Any]) -> None:
        if pull.state != "open":
            raise _Answer(405, {"message": "405 Method Not Allowed"})
        method = "squash" if body.get("squash") else "merge"
        try:
            await self._merge(pull, method, body.get("sha"), body.get("merge_commit_message"))
        except _Moved:
            raise _Answer(409, {"message": "SHA does not match HEAD of source branch"}) from None
        except _Conflict:
            raise _Answer(406, {"message": "Branch cannot be merged"}) from None

    async def _gitlab_view(self, pull: Pull) -> dict[str, Any]:
        repo = self.repos[pull.project]
        head_sha = await self._tip(repo, pull.head) or pull.head_sha
        return {
            "id": pull.id,
            "iid": pull.number,
            "project_id": self.project_ids[pull.project],
            "title": pull.title,
            "description": pull.body,
            "state": {"open": "opened"}.get(pull.state, pull.state),
            "source_branch": pull.head,
            "target_branch": pull.base,
            "web_url": f"https://gitlab.example.com/{pull.project}/-/merge_requests/{pull.number}",
            "sha": head_sha,
            "merge_commit_sha": pull.merge_commit_sha,
            "squash_commit_sha": None,
            "merged_at": pull.merged_at,
            "closed_at": pull.closed_at,
            "created_at": pull.created_at,
            "author": {"username": self.owner_login},
        }

    # --- pulls ----------------------------------------------------------------------------------

    def _find(self, project: str, number: int, not_found: _Answer) -> Pull:
        for pull in self.pulls:
            if pull.project == project and pull.number == number:
                return pull
        raise not_found

    def _open_for(self, project: str, head: str, base: str) -> Pull | None:
        return next(
            (
                p
                for p in self.pulls
                if p.project == project and p.head == head and p.base == base and p.state == "open"
            ),
            None,
        )

    def _add(self, project: str, title: str, body: str, head: str, base: str, sha: str) -> Pull:
        number = 1 + max((p.number for p in self.pulls if p.project == project), default=0)
        pull = Pull(
            project=project,
            number=number,
            title=title,
            body=body,
            head=head,
            base=base,
            id=next(self._ids),
            head_sha=sha,
            created_at=_now(),
            events=["opened"],
        )
        self.pulls.append(pull)
        return pull

    # --- git ------------------------------------------------------------------------------------

    async def _merge(
        self, pull: Pull, method: str, expected_sha: str | None, title: str | None
    ) -> str:
        """Merge head into base in the bare repository (merge-tree, commit-tree, update-ref)."""
        if pull.state != "open":
            raise ValueError(f"#{pull.number} is {pull.state}, not open")
        repo = self.repos[pull.project]
        head = await self._tip(repo, pull.head)
        base = await self._tip(repo, pull.base)
        if head is None or base is None:
            raise _Conflict()
        if expected_sha and expected_sha != head:
            raise _Moved()
        try:
            tree = (await _git(repo, "merge-tree", "--write-tree", base, head)).split()[0]
        except GitFailed as failed:
            if failed.code == 1:
                raise _Conflict() from None
            raise
        message = title or (
            f"Merge pull request #{pull.number} from {pull.project.split('/')[0]}/{pull.head}"
        )
        message += f"\n\n{pull.title}\n"
        parents = ["-p", base] if method == "squash" else ["-p", base, "-p", head]
        commit = (await _git(repo, "commit-tree", tree, *parents, "-m", message)).strip()
        await _git(repo, "update-ref", f"refs/heads/{pull.base}", commit, base)
        pull.state, pull.merge_commit_sha = "merged", commit
        pull.merged_at = pull.closed_at = _now()
        pull.head_sha = head
        pull.events.append("merged")
        return commit

    async def _tip(self, repo: Path, branch: str) -> str | None:
        try:
            out = await _git(
                repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"
            )
        except GitFailed:
            return None
        return out.strip() or None

    async def _is_ancestor(self, repo: Path, head: str, base: str) -> bool:
        try:
            await _git(
                repo, "merge-base", "--is-ancestor", f"refs/heads/{head}", f"refs/heads/{base}"
            )
        except GitFailed as failed:
            if failed.code == 1:
                return False
            raise
        return True


class _Conflict(Exception):
    """Head does not merge cleanly into base."""


class _Moved(Exception):
    """Head's tip is not the sha the merge request named."""


def _validation(errors: list[dict[str, Any]]) -> _Answer:
    return _Answer(
        422, {"message": "Validation Failed", "errors": errors, "documentation_url": DOCS}
    )


async def _git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` with a deadline; its stdout, or GitFailed."""
    env = {
        **os.environ,
        "GIT_DIR": str(repo),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": MERGER[0],
        "GIT_AUTHOR_EMAIL": MERGER[1],
        "GIT_COMMITTER_NAME": MERGER[0],
        "GIT_COMMITTER_EMAIL": MERGER[1],
        "GIT_TERMINAL_PROMPT": "0",
    }
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), GIT_DEADLINE_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise GitFailed(args, -9, f"no answer within {GIT_DEADLINE_S:g} s") from None
    if proc.returncode != 0:
        raise GitFailed(args, proc.returncode or 0, err.decode(errors="replace"))
    return out.decode()


# --- for building test repositories --------------------------------------------------------


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git as a test does (no user or system config); its stdout, stripped."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd or Path.cwd()),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "Tester",
        "GIT_AUTHOR_EMAIL": "tester@example.invalid",
        "GIT_COMMITTER_NAME": "Tester",
        "GIT_COMMITTER_EMAIL": "tester@example.invalid",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def make_bare_repo(tmp_path: Path, *, conflicting: bool = False) -> Path:
    """A bare repository at ``tmp_path / "widgets.git"``: main has README and then main.txt;
    feature, branched before main.txt, adds feature.txt (or, when conflicting, rewrites README
    as main also does)."""
    seed = tmp_path / "seed"
    git("init", "-q", "-b", "main", str(seed))
    (seed / "README.md").write_text("widgets\n")
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "first", cwd=seed)
    git("checkout", "-q", "-b", "feature", cwd=seed)
    if conflicting:
        (seed / "README.md").write_text("feature's widgets\n")
    else:
        (seed / "feature.txt").write_text("a feature\n")
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "the feature", cwd=seed)
    git("checkout", "-q", "main", cwd=seed)
    (seed / ("README.md" if conflicting else "main.txt")).write_text("main moved on\n")
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "main moves", cwd=seed)
    bare = tmp_path / "widgets.git"
    git("clone", "-q", "--bare", str(seed), str(bare))
    return bare


def quoted_project(project: str) -> str:
    """A project path as GitLab's URLs carry it (``acme%2Fwidgets``)."""
    return quote(project, safe="")
