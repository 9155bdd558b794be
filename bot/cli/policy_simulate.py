"""`acp policy simulate --policy DIR [--since 30d] [--json]`: a proposed policy folder tried on
the jobs the service recorded (runtime.policy.simulate decides, in the service). This module
reads the folder, sends its files and prints the report; it runs nothing and opens no database.

Printed: the two policies and how many jobs were considered, changed and not decided again; a
table of jobs per change and rule; then each change with its jobs (the first few). `--json`
prints the report as the service sent it. The exit status is 0 whatever would change.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from bot.cli.render import print_json
from runtime.policy.simulate_text import render

if TYPE_CHECKING:
    from bot.cli.client import ServiceClient


def read_folder(name: str) -> tuple[Path, dict[str, str]]:
    """The folder, and its policy files (*.yml, *.yaml) by name, as text."""
    from runtime.errors import PolicyFileError
    from runtime.policy.load import policy_files

    folder = Path(name).expanduser()
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise PolicyFileError(
            f"the proposed policy folder {folder} {what}",
            hint="--policy names a folder of policy files (*.yml), e.g. a copy of policies/",
        )
    files = {}
    for path in policy_files(folder):
        try:
            files[path.name] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise PolicyFileError(f"{path}: not UTF-8 text ({error.reason})") from None
        except OSError as error:
            raise PolicyFileError(f"{path}: cannot be read ({error.strerror})") from None
    if not files:
        raise PolicyFileError(
            f"no policy files (*.yml) in {folder}", hint="--policy names a folder of *.yml files"
        )
    return folder, files


async def cmd_policy_simulate(client: ServiceClient, args: argparse.Namespace) -> int:
    folder, files = read_folder(args.policy)
    body = {"files": files, "since": args.since, "where": str(folder)}
    report = await client.call("POST", "/policy/simulate", body)
    if args.json:
        print_json(report)
    else:
        print(render(report))  # the same text a policy job's simulation.txt holds
    return 0
