"""PostgreSQL's EXPLAIN (FORMAT JSON) as a tree a reviewer reads: each node's type, relation,
costs and rows (and, when the plan was analyzed, actual time, rows and loops), with the
costliest node marked; as text (plan_text) for `acp show` and Slack, and as nodes the console
draws. Pure: no database, no door.

"Costliest" is by the node's own share: its total minus its children's totals (actual time
times loops when analyzed, the planner's cost otherwise), so a Sort above a slow Seq Scan does
not win for carrying the scan's cost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_NODES = 2_000  # a plan past this is shown to here, saying so


@dataclass
class Node:
    label: str  # "Seq Scan on orders", "Index Scan using idx on t"
    details: list[str]  # "cost 0.00..16.30", "rows 630", "actual 0.01..0.20 ms × 1"
    extras: list[tuple[str, str]]  # ("Filter", "(status = 'paid')"), ("Sort Key", "status")
    own: float  # the node's own cost (or actual ms)
    children: list[Node] = field(default_factory=list)
    costliest: bool = False
    node_id: int = 0


@dataclass
class Plan:
    root: Node
    analyzed: bool
    measure: str  # "cost" or "ms"
    costliest: Node
    planning_ms: float | None = None
    execution_ms: float | None = None
    cut: bool = False


_EXTRAS = (
    "Filter", "Index Cond", "Recheck Cond", "Hash Cond", "Merge Cond", "Join Filter",
    "Sort Key", "Group Key", "Output", "Rows Removed by Filter", "Heap Fetches",
    "Sort Method", "Workers Planned", "Workers Launched", "Strategy",
)  # fmt: skip


def _label(node: dict[str, Any]) -> str:
    kind = str(node.get("Node Type") or "node")
    if (node.get("Join Type") and "Join" in kind) or kind == "Nested Loop":
        kind = f"{node.get('Join Type', '')} {kind}".strip()
    if node.get("Index Name"):
        kind += f" using {node['Index Name']}"
    if node.get("Relation Name"):
        relation = str(node["Relation Name"])
        alias = node.get("Alias")
        kind += f" on {relation}" + (f" {alias}" if alias and alias != relation else "")
    elif node.get("CTE Name"):
        kind += f" on {node['CTE Name']}"
    elif node.get("Function Name"):
        kind += f" on {node['Function Name']}"
    return kind


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _extra(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _build(raw: dict[str, Any], analyzed: bool, counter: list[int]) -> Node:
    counter[0] += 1
    details = [f"cost {_number(raw.get('Startup Cost')):.2f}..{_number(raw.get('Total Cost')):.2f}",
               f"rows {int(_number(raw.get('Plan Rows'))):,}",
               f"width {int(_number(raw.get('Plan Width')))}"]  # fmt: skip
    if analyzed and "Actual Total Time" in raw:
        loops = int(_number(raw.get("Actual Loops")) or 1)
        details.append(
            f"actual {_number(raw.get('Actual Startup Time')):.3f}.."
            f"{_number(raw.get('Actual Total Time')):.3f} ms, "
            f"rows {int(_number(raw.get('Actual Rows'))):,} × {loops} "
            f"loop{'s' if loops != 1 else ''}"
        )
    extras = [(key, _extra(raw[key])) for key in _EXTRAS if key in raw and raw[key] not in ("", [])]
    node = Node(_label(raw), details, extras, 0.0, node_id=counter[0])
    for child in raw.get("Plans") or []:
        if counter[0] >= MAX_NODES:
            break
        if isinstance(child, dict):
            node.children.append(_build(child, analyzed, counter))
    below = sum(_total(c, analyzed) for c in raw.get("Plans") or [] if isinstance(c, dict))
    node.own = max(0.0, _total(raw, analyzed) - below)
    return node


def _total(raw: dict[str, Any], analyzed: bool) -> float:
    if analyzed and "Actual Total Time" in raw:
        return _number(raw.get("Actual Total Time")) * (_number(raw.get("Actual Loops")) or 1)
    return _number(raw.get("Total Cost"))


def _walk(node: Node) -> list[Node]:
    out = [node]
    for child in node.children:
        out.extend(_walk(child))
    return out


def read_plan(text: str) -> Plan:
    """The plan of EXPLAIN (FORMAT JSON)'s output; ValueError when it is not one."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON (line {error.lineno}): {error.msg}") from error
    top = data[0] if isinstance(data, list) and data else data
    if not isinstance(top, dict) or not isinstance(top.get("Plan"), dict):
        raise ValueError("not an EXPLAIN (FORMAT JSON) plan: no Plan object")
    raw = top["Plan"]
    analyzed = "Actual Total Time" in raw
    counter = [0]
    root = _build(raw, analyzed, counter)
    costliest = max(_walk(root), key=lambda n: n.own)
    costliest.costliest = True
    return Plan(
        root=root,
        analyzed=analyzed,
        measure="ms" if analyzed else "cost",
        costliest=costliest,
        planning_ms=_number(top["Planning Time"]) if "Planning Time" in top else None,
        execution_ms=_number(top["Execution Time"]) if "Execution Time" in top else None,
        cut=counter[0] >= MAX_NODES,
    )


def plan_text(plan: Plan) -> str:
    """The plan as an indented tree, one node a line with its details under it, the
    costliest node marked with its share of the whole plan's cost (or time)."""
    nodes = _walk(plan.root)
    whole = sum(node.own for node in nodes) or 1.0
    share = round(100 * plan.costliest.own / whole)
    what = "time" if plan.analyzed else "cost"
    lines = [
        "Plan: "
        + ("actual time × loops" if plan.analyzed else "the planner's estimated cost")
        + "; a node's own share is its total less its children's"
    ]

    def emit(node: Node, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        mark = f"  ◀ costliest: {share}% of {what}" if node.costliest else ""
        lines.append(f"{prefix}{branch}{node.label}  ({', '.join(node.details)}){mark}")
        below = prefix + ("" if top else ("   " if last else "│  "))
        for key, value in node.extras:
            lines.append(f"{below}{'│  ' if node.children else '   '}{key}: {value}")
        for i, child in enumerate(node.children):
            emit(child, below, i == len(node.children) - 1, False)

    emit(plan.root, "", True, True)
    if plan.planning_ms is not None:
        lines.append(f"Planning time: {plan.planning_ms:.3f} ms")
    if plan.execution_ms is not None:
        lines.append(f"Execution time: {plan.execution_ms:.3f} ms")
    if plan.cut:
        lines.append(f"(the plan has more than {MAX_NODES} nodes; the first {MAX_NODES} shown)")
    return "\n".join(lines) + "\n"
