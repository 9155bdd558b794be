"""A doc job's direct-mode template steps: `template TEMPLATE OUTPUT [DATA.csv ...]`."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.toolbox import Toolbox


def is_template(command: str) -> bool:
    return command.split()[:1] == ["template"]


async def template_step(toolbox: Toolbox, command: str) -> dict[str, Any]:
    """`template TEMPLATE OUTPUT [DATA.csv ...]` through the job's toolbox (grant: docs)."""
    words = shlex.split(command)
    return await toolbox.call("docs.template", template=words[1], output=words[2], data=words[3:])
