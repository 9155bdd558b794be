"""A tool, declared once: its name, the grant it needs, its schema and how it runs.

    @tool("fs.read", grant="fs.read", model_name="read_file")
    async def read_file(use: ToolUse, path: str) -> str:
        '''Read a text file of the repository.

        Args:
            path: relative path
        '''

The schema a model sees comes from the signature (the parameters after `use`, their types
and defaults) and the docstring (its first paragraph, and one `name: text` line per parameter
under `Args:`). Every call, from direct-mode steps or a model, goes through the job's Toolbox
(runtime.toolbox), which authorizes it against the grant and records it or its refusal.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object",
               list: "array"}  # fmt: skip


class ToolPaused(Exception):
    """A tool's call cannot finish until a person decides (a browser mutation held for
    approval). It passes the Toolbox unrecorded as a failure; the agent loop stops on it,
    handing back the call it paused on and `reason` (what the tool held)."""

    def __init__(self, reason: Any) -> None:
        super().__init__(str(reason))
        self.reason = reason


@dataclass(frozen=True)
class Tool:
    name: str  # the runtime's name; its calls are the audit events `tool.<name>`
    grant: str  # the entry of the job's grant it needs
    run: Callable[..., Awaitable[Any]]
    description: str
    parameters: dict[str, Any]
    model_name: str | None = None  # what a model calls it; None: not offered to models
    text: Callable[[Any], str] = str  # what a model is told of its result
    # A tool with its own guard (the browser's route interception) records what the guard
    # refused, with the URL and why; the Toolbox then records only its own grant refusals.
    records_refusals: bool = False
    fields: dict[str, type] = field(default_factory=dict)

    def schema(self) -> dict[str, Any]:
        """The OpenAI-style function declaration a model gets."""
        return {
            "type": "function",
            "function": {
                "name": self.model_name or self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def arguments(self, given: dict[str, Any]) -> dict[str, Any]:
        """A model's arguments for this tool: the declared ones, as their types (a missing
        string is empty, so the tool refuses it with its own reason)."""
        out: dict[str, Any] = {}
        for name, kind in self.fields.items():
            if name not in given:
                if name in self.parameters.get("required", []) and kind is str:
                    out[name] = ""
                continue
            value = given[name]
            if kind is str and not isinstance(value, str):
                value = "" if value is None else str(value)
            out[name] = value
        return out


def tool(
    name: str,
    *,
    grant: str,
    model_name: str | None = None,
    text: Callable[[Any], str] = str,
    records_refusals: bool = False,
) -> Callable[[Callable[..., Awaitable[Any]]], Tool]:
    """Declare an async function `fn(use, **params)` as a tool (see the module docstring)."""

    def declare(fn: Callable[..., Awaitable[Any]]) -> Tool:
        description, docs = _docstring(fn.__doc__ or "")
        params = list(inspect.signature(fn).parameters.values())[1:]  # after `use`
        properties: dict[str, Any] = {}
        fields: dict[str, type] = {}
        required = []
        for param in params:
            base = _annotation_type(param.annotation)
            fields[param.name] = base
            properties[param.name] = {
                "type": _JSON_TYPES.get(base, "string"),
                "description": docs.get(param.name, param.name),
            }
            if param.default is inspect.Parameter.empty:
                required.append(param.name)
        return Tool(
            name=name,
            grant=grant,
            run=fn,
            description=description,
            parameters={"type": "object", "properties": properties, "required": required},
            model_name=model_name,
            text=text,
            records_refusals=records_refusals,
            fields=fields,
        )

    return declare


_NAMED = {t.__name__: t for t in _JSON_TYPES}


def _annotation_type(annotation: Any) -> type:
    """The JSON-able type of a parameter's annotation (a string under postponed evaluation);
    `object` for a union or anything else, whose value is passed on as the model sent it."""
    if isinstance(annotation, type):
        return annotation if annotation in _JSON_TYPES else object
    text = str(annotation).strip()
    if "|" in text or text.startswith(("Optional", "Union")):
        return object
    return _NAMED.get(text.split("[", 1)[0], object)


def _docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph, and `name: text` lines under `Args:`."""
    text = inspect.cleandoc(doc)
    head = text.partition("\n\n")[0]
    params: dict[str, str] = {}
    if "Args:" in text:
        block = text.split("Args:", 1)[1]
        for line in block.splitlines():
            match = re.match(r"\s+(\w+):\s*(.+)", line)
            if match:
                params[match.group(1)] = match.group(2).strip()
            elif line.strip() and not line.startswith(" "):
                break
    return " ".join(head.split()), params


def ask_tool() -> dict[str, Any]:
    """`ask`: the model's way to stop and ask the requester; the agent loop handles it."""
    return {
        "type": "function",
        "function": {
            "name": "ask",
            "description": "Ask the requester one clarifying question and stop.",
            "parameters": {
                "type": "object",
                "properties": {"question": {"type": "string", "description": "the question"}},
                "required": ["question"],
            },
        },
    }
