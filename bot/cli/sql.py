"""`acp sql diagnostics`: the standard SQL diagnostics, what each shows and the words that pick
it. Local and read-only: it lists the catalog (runtime.tools.sql_diagnostics) and never
connects to a database or the service.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from bot.cli.render import print_json


def add_parser(sub: Any) -> None:
    sql = sub.add_parser("sql", help="SQL jobs: the standard diagnostics they can run")
    s_sub = sql.add_subparsers(dest="sql_command", required=True, metavar="SUBCOMMAND")
    p = s_sub.add_parser(
        "diagnostics",
        help="list each standard diagnostic: name, what it shows, the phrases that select it",
    )
    p.add_argument("--json", action="store_true", help="print JSON")


def cmd_sql(args: argparse.Namespace) -> int:
    from runtime.tools.sql_diagnostics import DIAGNOSTICS, STATEMENT_WORDS

    if args.json:
        print_json(
            [
                {"name": name, "shows": d.description, "phrases": list(d.keywords)}
                for name, d in DIAGNOSTICS.items()
            ]
        )
        return 0
    statement_words = ", ".join(f"'{word}'" for word in STATEMENT_WORDS)
    print(_fill(f"Statement words (pick the statement lists; alone, by total time): "
                f"{statement_words}", "", "  "))  # fmt: skip
    for name, diagnostic in DIAGNOSTICS.items():
        own = [word for word in diagnostic.keywords if word not in STATEMENT_WORDS]
        phrases = ", ".join(f"'{word}'" for word in own)
        if len(own) < len(diagnostic.keywords):
            phrases += ", each alone or with a statement word"
        print(f"\n{name}")
        print(_fill(diagnostic.description, "  ", "  "))
        print(_fill(f"phrases: {phrases}", "  ", "    "))
    print(
        "\nAsk in words, e.g. acp submit 'sql payments-replica: top 10 slowest queries'. The "
        "diagnostic with\nthe most of its phrases in the request runs (a tie: the one listed "
        "first); a number is the row limit\n(default 10, at most 100)."
    )
    return 0


def _fill(text: str, first: str, rest: str) -> str:
    return textwrap.fill(text, 96, initial_indent=first, subsequent_indent=rest)
