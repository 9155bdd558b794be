"""`acp token create | list | revoke`: personal API tokens for the HTTP door (ACP_URL).

A token is shown once, when it is made; the service keeps only its hash. Who may make one for
whom is runtime.identity's to say.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.cli.render import print_json

if TYPE_CHECKING:
    from bot.cli.client import ServiceClient


def add_parser(sub: Any) -> None:
    token = sub.add_parser("token", help="personal API tokens for the HTTP API (ACP_URL)")
    t_sub = token.add_subparsers(dest="token_command", required=True, metavar="SUBCOMMAND")
    p = t_sub.add_parser("create", help="make a token (shown once)")
    p.add_argument("--for", dest="person", help="whose (default: you; others need a token admin)")
    p.add_argument("--scopes", default="read",
                   help="comma-separated: read, submit, answer, approve, cancel, rollback, "
                   "routines, tokens (read is always included)")  # fmt: skip
    p.add_argument("--expires", help="lifetime, e.g. 30d, 12h (default and most: the policy's "
                   "authentication.token_max_days)")  # fmt: skip
    p.add_argument("--json", action="store_true")
    p = t_sub.add_parser("list", help="tokens with their scopes, expiry and last use")
    p.add_argument("--for", dest="person", help="only this person's")
    p.add_argument("--json", action="store_true")
    p = t_sub.add_parser("revoke", help="stop a token working, now")
    p.add_argument("token", help="token id, e.g. tok_3f2a9c1b")
    for command in t_sub.choices.values():
        command.add_argument("--as", dest="as_user", metavar="USER",
                             help="act as this person: honoured only where the policy allows "
                             "impersonation")  # fmt: skip


def _when(value: str | None) -> str:
    return f"{datetime.fromisoformat(value):%Y-%m-%d %H:%M} UTC" if value else "-"


async def cmd_token(client: ServiceClient, args: argparse.Namespace) -> int:
    sub = args.token_command
    if sub == "create":
        scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
        made = await client.call("POST", "/tokens", {"for": args.person, "scopes": scopes,
                                                     "expires": args.expires})  # fmt: skip
        if args.json:
            print_json(made)
            return 0
        info = made["token"]
        print(made["secret"])
        print(
            f"{info['id']} for {info['person']}: scopes {', '.join(info['scopes'])}, expires "
            f"{_when(info['expires_at'])}. Shown once — keep it in a secret store; use it as "
            "ACP_TOKEN with ACP_URL.",
            file=sys.stderr,
        )
        return 0
    if sub == "list":
        query = {"for": args.person} if args.person else {}
        listed = await client.call("GET", "/tokens", **query)
        if args.json:
            print_json(listed)
            return 0
        if not listed:
            print("no tokens — make one with: acp token create --scopes submit")
        for t in listed:
            state = (
                f"revoked {_when(t['revoked_at'])}" if t["revoked_at"]
                else f"expires {_when(t['expires_at'])}"
            )  # fmt: skip
            print(f"{t['id']}  {t['person']:<10} {','.join(t['scopes']):<28} {state:<28} "
                  f"last used {_when(t['last_used_at'])}")  # fmt: skip
        return 0
    done = await client.call("DELETE", f"/tokens/{args.token}")
    print(f"{done['token']['id']} revoked (of {done['token']['person']})")
    return 0
