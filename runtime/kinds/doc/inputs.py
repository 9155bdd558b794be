"""A doc job's inputs: the files attached to its request, placed at inputs/<name> in the job's
worktree before any step runs, and listed for the model and the reviewer.

The bytes placed are the ones on the chain (input.attached, by sha256), checked again when
read back. The placed files are git-ignored by name (inputs/.gitignore): an input is part of
the change only where a step writes it into the repository (a new file a step writes in inputs/
is). Never changes a file the repository has.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from runtime.doc_formats import DocumentError, size_text
from runtime.jobs import INPUT_PREFIX, ContextItem
from runtime.kinds.base import Failed, JobContext, Recorder

FOLDER = "inputs"
IGNORE = "# acp: the job's input files; part of its change only where a step copies them\n"


def context_item(attached: list[dict[str, Any]]) -> ContextItem:
    """What the model is told of its inputs: where they are and what they were read as."""
    lines = [
        "Files attached to the request, placed in the worktree before the job started "
        "(read them with read_document; they are not part of the change unless you write "
        "them elsewhere):"
    ]
    lines += [f"- {_line(data)}" for data in attached]
    return ContextItem(
        name="inputs.txt",
        source="files attached to the request",
        text="\n".join(lines),
        facts={"files": len(attached), "names": [f"{FOLDER}/{d['name']}" for d in attached]},
    )


async def attached(recorder: Recorder) -> list[dict[str, Any]]:
    """The input.attached events' data: every input as the runtime read it at submission."""
    return [e.data for e in await recorder.events() if e.kind == "input.attached"]


def review_section(inputs: list[dict[str, Any]]) -> str:
    """The inputs, first in a doc job's review: name, sha256 prefix, size, what they were."""
    if not inputs:
        return ""
    lines = [f"Inputs (attached to the request, at {FOLDER}/ in the worktree; not part of the "
             "change unless a step wrote them elsewhere):"]  # fmt: skip
    lines += [f"  {_line(data)}" for data in inputs]
    return "\n".join(lines) + "\n"


def summaries(inputs: list[dict[str, Any]]) -> list[str]:
    """One line per input for the pending change, beside the documents it made."""
    return [f"input {_line(data)}" for data in inputs]


def _line(data: dict[str, Any]) -> str:
    size = data["bytes"]
    shown = f"{size} bytes" if size < 10_000 else size_text(size)
    return (
        f"{FOLDER}/{data['name']}: {data.get('read_as_text', '')}, {shown}, "
        f"sha256 {data['sha256'][:12]}, {data.get('source', '')}"
    )


async def prepared(ctx: JobContext) -> JobContext | Failed:
    """`ctx` with a toolbox factory that first places the job's inputs in the worktree (the
    one point where the worktree exists and no step has run, for a run and for a replay); or
    Failed, nothing run, when an input's bytes are not the ones on the chain."""
    files: list[tuple[str, bytes]] = []
    for ref in ctx.job.artifacts:
        if not ref.name.startswith(INPUT_PREFIX):
            continue
        name = ref.name.removeprefix(INPUT_PREFIX)
        try:
            data = ctx.recorder.read(ref.sha256)
        except FileNotFoundError:
            return Failed(reason=f"input {name} is missing from the artifact store; nothing ran")
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            return Failed(
                reason=f"input {name} was changed after it was recorded (sha256 "
                f"{ref.sha256[:12]} on the chain); nothing ran"
            )
        files.append((name, data))
    if not files:
        return ctx
    make_toolbox = ctx.toolbox_fn

    def toolbox_with_inputs(job_ctx: JobContext, workspace: Any, **options: Any) -> Any:
        place(Path(workspace.path), files)
        return make_toolbox(job_ctx, workspace, **options)

    return dataclasses.replace(ctx, toolbox_fn=toolbox_with_inputs)


def place(root: Path, files: list[tuple[str, bytes]]) -> None:
    """Write the inputs at root/inputs/<name>, git-ignored; DocumentError (the job fails, and
    nothing ran) rather than replace anything the checkout has there."""
    folder = root / FOLDER
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise DocumentError(
            f"the repository has a file {FOLDER}, where attached files are placed; nothing ran",
            hint=f"rename {FOLDER} in the repository, or ask without attached files",
        )
    ignore = folder / ".gitignore"
    if ignore.exists() or ignore.is_symlink():
        raise DocumentError(
            f"the repository has its own {FOLDER}/.gitignore, so attached files placed there "
            "would become part of the change; nothing ran",
            hint=f"remove {FOLDER}/.gitignore from the repository, or ask without attached files",
        )
    for name, _ in files:
        path = folder / name
        if path.exists() or path.is_symlink():
            raise DocumentError(
                f"the repository already has {FOLDER}/{name}, where the attached {name} would "
                "be placed; nothing ran",
                hint="rename the file you attach, and ask again",
            )
    folder.mkdir(exist_ok=True)
    # input_name() made the names plain (letters, digits, ._-): no pattern characters in them.
    ignore.write_text(IGNORE + "".join(f"/{name}\n" for name in [".gitignore", *dict(files)]))
    for name, data in files:
        (folder / name).write_bytes(data)
