"""Who is calling the service API: the kernel's word on the Unix socket, a token's over HTTP.

A request on the socket is the peer process's uid (SO_PEERCRED), which runtime.identity maps
to a person; an `Authorization: Bearer` token, on either listener, is checked by
runtime.tokens and limits the call to the token's scopes. A request over TCP without a token
is refused: there the network says nothing about who is calling.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from runtime.errors import Unauthenticated

if TYPE_CHECKING:
    from aiohttp import web

    from runtime.engine import Engine
    from runtime.identity import Actor
    from runtime.tokens import TokenInfo

_PEERCRED = struct.Struct("3i")  # pid, uid, gid


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: the person it acts as, and its token when it used one."""

    actor: Actor
    token: TokenInfo | None = None

    def require(self, scope: str) -> None:
        """A token caller needs the action's scope; a socket caller has all of them (the
        policy still decides what the person may do)."""
        if self.token is not None:
            from runtime.tokens import require_scope

            require_scope(self.token, scope)


def peer_uid(request: web.Request) -> int | None:
    """The uid of the process at the other end of a Unix socket; None over TCP."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    return _PEERCRED.unpack(creds)[1]


async def caller(engine: Engine, request: web.Request, scope: str) -> Caller:
    """Authenticate the request and check it may do `scope`; `?as=` / body "as" is the
    `--as` the person typed (runtime.identity decides whether it counts)."""
    from runtime.identity import socket_actor, token_actor

    as_user = unquote(request.headers.get("X-Acp-As", "")) or None
    header = request.headers.get("Authorization", "")
    if header:
        kind, _, secret = header.partition(" ")
        if kind.lower() != "bearer" or not secret.strip():
            raise Unauthenticated(
                "the Authorization header is not a bearer token",
                hint="send `Authorization: Bearer <token>` (ACP_TOKEN for the acp command)",
            )
        from runtime.tokens import authenticate

        token = await authenticate(engine.db, secret.strip())
        found = Caller(token_actor(engine.policy, token, as_user), token)
    else:
        uid = peer_uid(request)
        if uid is None:
            raise Unauthenticated(
                "this listener needs an API token",
                hint="create one with `acp token create` on the service's machine and send it "
                "as `Authorization: Bearer <token>` (set ACP_TOKEN for the acp command)",
            )
        found = Caller(socket_actor(engine.policy, uid, as_user, reading=scope == "read"))
    found.require(scope)
    return found
