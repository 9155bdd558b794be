"""`acp env build TARGET` and `acp env show TARGET`: a repository target's environment (its
toolchain), built by its setup commands and cached by key, for operators and engineers.

Building runs the policy's setup commands for the target's current base commit (fetched
first) in their own sandbox, exactly as a job would; showing reads what is cached. The setup
log goes into the artifact store, so `show` names it by hash.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.engine import Engine


def add_parser(sub: Any) -> None:
    env = sub.add_parser(
        "env", help="a repository target's environment (toolchain): build it, show it"
    )
    env_sub = env.add_subparsers(dest="env_command", required=True, metavar="SUBCOMMAND")
    p = env_sub.add_parser("build", help="build the environment for the base branch's tip now")
    p.add_argument("target", help="a repository target that declares environment:")
    p.add_argument("--force", action="store_true", help="build again even if the key is cached")
    p.add_argument("--json", action="store_true")
    p = env_sub.add_parser("show", help="key, size, age and setup log of the cached builds")
    p.add_argument("target")
    p.add_argument("--log", action="store_true", help="print the newest build's setup log")
    p.add_argument("--json", action="store_true")


def _target(engine: Engine, name: str):
    from runtime.errors import BadRequest

    repos = engine.policy.targets.repos
    if name not in repos:
        raise BadRequest(
            f"'{name}' is not a repository target",
            hint=f"repository targets: {', '.join(sorted(repos)) or 'none'}",
        )
    target = repos[name]
    if target.environment is None:
        raise BadRequest(
            f"target {name} declares no environment",
            hint="add environment: {setup: [...], key_files: [...], hosts: [...]} to it "
            "in the policy (see the README, 'Give a repository its toolchain')",
        )
    return target


async def cmd_env(engine: Engine, args: argparse.Namespace) -> int:
    from runtime.kinds.code import environment

    target = _target(engine, args.target)
    if args.env_command == "build":
        from runtime.kinds.code.repo import fetched
        from runtime.sandbox.egress_route import close_shared_proxy

        mirror, tip = await fetched(engine.settings, args.target, target)
        try:
            info, built = await environment.ensure(
                engine.settings, args.target, target, mirror, tip, force=args.force
            )
        finally:
            await close_shared_proxy()
        _print([info], engine, args, built=built)
        return 0
    found = environment.builds(engine.settings, args.target)
    if not found:
        print(f"{args.target}: no environment built yet; `acp env build {args.target}`")
        return 1
    if args.log:
        print(found[0].setup_log.read_text(errors="replace"), end="")
        return 0
    _print(found, engine, args, built=None)
    return 0


def _print(infos: list, engine: Engine, args: argparse.Namespace, *, built: bool | None) -> None:
    rows = []
    for info in infos:
        log = engine.artifacts.put("setup.log", info.setup_log.read_bytes())
        rows.append({**info.model_dump(mode="json"), "age_s": round(info.age_s), "log": log.sha256})
    if args.json:
        print(json.dumps(rows if built is None else rows[0], indent=2))
        return
    for row in rows:
        what = {True: "built", False: "cached", None: "build"}[built]
        print(
            f"{row['target']} {what} {row['key'][:16]}: {_size(row['size_bytes'])} in "
            f"{row['files']} files, from {row['commit'][:12]}, {_age(row['age_s'])} old "
            f"(setup took {row['duration_s']:.1f}s)"
        )
        print(f"  at   {row['path']} (mounted read-only at /env in jobs)")
        print(f"  log  {row['setup_log']} (artifact sha256 {row['log'][:12]})")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"
