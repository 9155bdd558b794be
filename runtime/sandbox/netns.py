"""Run a program in a network namespace of its own whose only way out is the egress proxy.

Used as Chromium's executable. It forks a forwarder that stays in the host's network, then
makes the namespace (inside a new user namespace; a bare one as root where those are off),
brings its loopback up, listens on PORT on every address of that loopback and hands the
listening socket to the forwarder, which relays each connection to the egress proxy's Unix
socket, first naming the address the program connected to (its door), or with --door the one
door it was given whatever address was dialled (a job's shell cannot pick another job's door).
Then it execs the program with its arguments and inherited descriptors (Playwright's pipes,
fds 3 and 4; the sandbox runner's start marker).

It must never exec the program when the namespace could not be made, and never give the
namespace any interface but loopback. Standard library only: it runs as a script, before
anything else is imported, on every browser launch.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs tens of ms on every command
if TYPE_CHECKING:
    from pathlib import Path

# Nothing else at the top: this runs before every sandboxed command with a network route, and
# each module imported here is paid for on each of them (pathlib, shlex and contextlib cost
# several ms together); the forwarder imports what it needs once it runs.

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
DOOR_PREFIX = b"ACP-EGRESS-DOOR "  # as runtime.sandbox.egress.FORWARDED_PREFIX
EXIT_NO_NAMESPACE = 97
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_PR_SET_PDEATHSIG = 1
_CHUNK = 65_536


class NamespaceUnavailable(OSError):
    """Raised when neither a network namespace nor a user+network namespace can be made."""


def enter_network_namespace() -> str:
    """Move this process into a fresh network namespace; returns how ("user" or "root").

    A user namespace first, even as root: inside it the program holds no capability over
    the host's namespaces, so it cannot setns() back into the host's network. A bare network
    namespace (root only) is the fallback where user namespaces are disabled."""
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
        # The same user inside as outside, so the files this user made stay this user's.
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
        _loopback_up()
        return "user"
    first = ctypes.get_errno()
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NamespaceUnavailable(
            err,
            "cannot create a network namespace: "
            f"unshare(CLONE_NEWUSER|CLONE_NEWNET): {os.strerror(first)}; "
            f"unshare(CLONE_NEWNET): {os.strerror(err)}",
        )
    _loopback_up()
    return "root"


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sh14x", b"lo", 0)
        flags = struct.unpack("16sh14x", fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sh14x", b"lo", flags | _IFF_UP))


def interfaces() -> list[str]:
    """The network interfaces this process can see (its namespace's)."""
    return sorted(name for _, name in socket.if_nameindex())


# --- the forwarder (host side) ---------------------------------------------------------


def _forwarder(
    channel: socket.socket, proxy_socket: str, parent: int, door: str | None = None
) -> None:
    """Wait for the listening socket from inside the namespace, then relay connections.

    It dies with the program (PR_SET_PDEATHSIG) and holds none of the program's inherited
    descriptors, so Playwright sees its pipes close when the browser exits."""
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, 9)
    if os.getppid() != parent:
        os._exit(0)
    keep = channel.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 16)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    try:
        _, fds, _, _ = socket.recv_fds(channel, 16, 1)
    except OSError:
        os._exit(0)
    channel.close()
    if not fds:
        os._exit(0)  # the namespace was not made; the program is not started either
    listener = socket.socket(fileno=fds[0])
    import asyncio  # only here: the program's own start does not wait for it

    asyncio.run(_serve(listener, proxy_socket, door))


async def _serve(listener: socket.socket, proxy_socket: str, fixed_door: str | None) -> None:
    import asyncio
    import contextlib

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(_CHUNK):
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        door = fixed_door or writer.get_extra_info("sockname")[0]
        try:
            async with asyncio.timeout(10):
                up_reader, up_writer = await asyncio.open_unix_connection(proxy_socket)
        except (OSError, TimeoutError):
            writer.close()
            return
        up_writer.transport.set_write_buffer_limits(high=_CHUNK)
        writer.transport.set_write_buffer_limits(high=_CHUNK)
        try:
            up_writer.write(DOOR_PREFIX + door.encode() + b"\r\n")
            # The proxy holds the deadlines; when it closes its side, both close here.
            upload = asyncio.ensure_future(pipe(reader, up_writer))
            await pipe(up_reader, writer)
            upload.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await upload
        finally:
            up_writer.close()
            writer.close()

    server = await asyncio.start_server(relay, sock=listener, limit=_CHUNK)
    async with server:
        await server.serve_forever()


# --- the program's side ----------------------------------------------------------------


def run(
    port: int,
    proxy_socket: str,
    command: list[str],
    report: str | None = None,
    door: str | None = None,
) -> int:
    """Fork the forwarder, enter the namespace, hand over the listener, exec command;
    report (a file) gets how the namespace was made ("root" or "user"); door, when given,
    is named for every connection."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    parent = os.getpid()
    if os.fork() == 0:
        ours.close()
        try:
            _forwarder(theirs, proxy_socket, parent, door)
        finally:
            os._exit(0)
    theirs.close()
    try:
        how = enter_network_namespace()
    except NamespaceUnavailable as e:
        print(f"acp netns: {e.strerror}; the program is not started", file=sys.stderr)
        return EXIT_NO_NAMESPACE
    if interfaces() != ["lo"]:
        print(f"acp netns: the namespace has {interfaces()}, not only lo", file=sys.stderr)
        return EXIT_NO_NAMESPACE
    if report:
        with open(report, "w") as out:
            out.write(how)
    # Every loopback address: each client's door is an address of its own.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("0.0.0.0", port))
    except OSError as e:
        print(f"acp netns: cannot listen on port {port}: {e}", file=sys.stderr)
        return 1
    listener.listen(512)
    socket.send_fds(ours, [b"L"], [listener.fileno()])
    listener.close()
    ours.close()
    os.execv(command[0], command)
    return 127  # pragma: no cover - execv does not return


def wrapper_script(
    program: str, *, port: int, proxy_socket: Path, directory: Path, python: str | None = None
) -> Path:
    """Write an executable that runs program in a namespace whose port PORT leads to
    proxy_socket (for Playwright's executable_path); it leaves directory/namespace saying
    how the namespace was made."""
    import shlex
    from pathlib import Path

    args = [
        python or sys.executable,
        "-I",
        "-S",
        str(Path(__file__).resolve()),
        "--port",
        str(port),
        "--proxy-socket",
        str(proxy_socket),
        "--report",
        str(directory / "namespace"),
        "--",
        program,
    ]
    path = directory / "chromium-in-netns"
    path.write_text(f'#!/bin/sh\nexec {shlex.join(args)} "$@"\n')
    path.chmod(0o700)
    return path


def main(argv: list[str]) -> int:
    if argv[:1] == ["--probe"]:
        try:
            how = enter_network_namespace()
        except NamespaceUnavailable as e:
            print(e.strerror, file=sys.stderr)
            return EXIT_NO_NAMESPACE
        print(f"{how} {' '.join(interfaces())}")
        return 0
    try:
        split = argv.index("--")
        options, command = argv[:split], argv[split + 1 :]
        port = int(options[options.index("--port") + 1])
        proxy_socket = options[options.index("--proxy-socket") + 1]
        report = options[options.index("--report") + 1] if "--report" in options else None
        door = options[options.index("--door") + 1] if "--door" in options else None
        if not command or (door is not None and not _is_loopback(door)):
            raise ValueError
    except (ValueError, IndexError):
        print(
            "usage: netns.py --port P --proxy-socket PATH [--report FILE] [--door 127.X.Y.Z] "
            "-- PROGRAM [ARGS...]",
            file=sys.stderr,
        )
        return 2
    return run(port, proxy_socket, command, report, door)


def _is_loopback(address: str) -> bool:
    parts = address.split(".")
    return (
        len(parts) == 4 and parts[0] == "127" and all(p.isdigit() and int(p) < 256 for p in parts)
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
