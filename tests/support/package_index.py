"""A private Python package index for tests: real wheels, served on 127.0.0.1 (PEP 503).

``build_wheel`` writes a pure-Python wheel from source text; ``wheel_from_installed`` repacks
a distribution that is installed (for the running interpreter, or on a given path) into a
wheel pip accepts; ``PackageIndex`` serves wheels as a "simple" index over HTTP and records
every path asked for, so a test can install a project with ``pip --index-url`` and no
internet, and prove which index was used.
"""

from __future__ import annotations

import base64
import csv
import email
import hashlib
import html
import importlib.metadata
import io
import json
import re
import threading
import zipfile
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

# Where Debian keeps the packages of its own python3 (python3-wheel, python3-setuptools).
SYSTEM_DIST_PACKAGES = "/usr/lib/python3/dist-packages"

# A fixed time stamp for the archive members, so the same input gives the same wheel.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
_GENERATOR = "tests.support.package_index"
# Files of an installed .dist-info that describe that installation, not the distribution.
_INSTALL_ONLY = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json", "WHEEL"}
_BINARY_SUFFIXES = (".so", ".pyd", ".dll", ".dylib")


class NotPureError(ValueError):
    """The distribution has compiled parts; only pure-Python wheels can be repacked."""


def normalize(name: str) -> str:
    """A project name as PEP 503 spells it in index URLs: ``Foo_Bar.baz`` -> ``foo-bar-baz``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _wheel_name(name: str) -> str:
    """A project name as it appears in a wheel's file and .dist-info names (PEP 427)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _digest(data: bytes) -> str:
    raw = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _write_wheel(
    directory: Path, name: str, version: str, files: dict[str, bytes], metadata: bytes, tag: str
) -> Path:
    """Write ``files`` (archive path -> content) plus a .dist-info with METADATA, WHEEL, RECORD."""
    dist_info = f"{_wheel_name(name)}-{version}.dist-info"
    members = dict(files)
    members[f"{dist_info}/METADATA"] = metadata
    members[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: {_GENERATOR}\nRoot-Is-Purelib: true\nTag: {tag}\n"
    ).encode()
    record_path = f"{dist_info}/RECORD"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, data in members.items():
        writer.writerow([path, _digest(data), len(data)])
    writer.writerow([record_path, "", ""])
    members[record_path] = record.getvalue().encode()

    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{_wheel_name(name)}-{version}-{tag}.whl"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        # The .dist-info last, as the wheel format recommends.
        for path in sorted(members, key=lambda p: (p.startswith(dist_info), p)):
            info = zipfile.ZipInfo(path, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, members[path])
    return target


def build_wheel(
    directory: Path,
    name: str,
    version: str,
    modules: dict[str, str],
    requires: Sequence[str] = (),
) -> Path:
    """Write ``{name}-{version}-py3-none-any.whl`` into ``directory``; return its path.

    ``modules`` maps a path inside the wheel to its source text: ``"pkg/__init__.py"``,
    ``"pkg/util.py"``; a key without ``.py`` is a dotted module name (``"pkg.util"``).
    ``requires`` become the ``Requires-Dist`` lines of METADATA (PEP 508 strings).
    """
    files: dict[str, bytes] = {}
    for key, source in modules.items():
        path = key if key.endswith(".py") else key.replace(".", "/") + ".py"
        if PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts:
            raise ValueError(f"module path {key!r} must be relative and stay inside the wheel")
        files[path] = source.encode()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {Requirement(r)}" for r in requires]
    metadata = ("\n".join(lines) + "\n").encode()
    return _write_wheel(directory, name, version, files, metadata, "py3-none-any")


def _find_distribution(
    dist_name: str, path: Sequence[str] | None
) -> importlib.metadata.Distribution:
    if path is None:
        return importlib.metadata.distribution(dist_name)
    for dist in importlib.metadata.distributions(name=dist_name, path=list(path)):
        return dist
    raise importlib.metadata.PackageNotFoundError(dist_name)


def _metadata_dir(dist: importlib.metadata.Distribution) -> Path | None:
    located = getattr(dist, "_path", None)  # PathDistribution: its .dist-info/.egg-info
    return Path(located) if located is not None else None


def _installed_files(dist: importlib.metadata.Distribution) -> list[PurePosixPath]:
    """The distribution's files relative to its site directory (its RECORD, or a best guess)."""
    if dist.files is not None:
        return [PurePosixPath(str(f)) for f in dist.files]
    # An .egg-info without installed-files.txt (as Debian installs python3-wheel): take the
    # top-level packages and modules it names and everything below them.
    site = Path(dist.locate_file(""))
    found: list[PurePosixPath] = []
    for top in (dist.read_text("top_level.txt") or "").split():
        if (site / top).is_dir():
            found += [
                PurePosixPath(p.relative_to(site).as_posix()) for p in (site / top).rglob("*")
            ]
        elif (site / f"{top}.py").is_file():
            found.append(PurePosixPath(f"{top}.py"))
    if not found:
        raise ValueError(f"{dist.metadata['Name']}: no file list and no top_level.txt to go on")
    return found


def _check_pure(dist: importlib.metadata.Distribution, name: str) -> None:
    wheel_text = dist.read_text("WHEEL")
    if wheel_text:
        wheel = email.message_from_string(wheel_text)
        tags = wheel.get_all("Tag") or []
        pure = wheel.get("Root-Is-Purelib", "true").strip().lower() == "true"
        if not pure or any(not t.endswith("-none-any") for t in tags):
            raise NotPureError(
                f"{name} was installed from a platform wheel (Tag: {', '.join(tags)}; "
                f"Root-Is-Purelib: {wheel.get('Root-Is-Purelib')}); only pure-Python "
                "distributions can be repacked"
            )
    direct_url = dist.read_text("direct_url.json")
    if direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"):
        raise ValueError(f"{name} is an editable install; there is nothing to repack")


def _egg_info_metadata(pkg_info: str, requires: Sequence[str]) -> bytes:
    """An egg-info's PKG-INFO as dist-info METADATA: requires.txt as Requires-Dist lines.

    Edited as text, so the UTF-8 in it stays as it is (an email round trip would encode it).
    """
    head, sep, body = pkg_info.partition("\n\n")
    lines: list[str] = []
    skipping = False
    for line in head.splitlines():
        if line[:1] in (" ", "\t"):  # a continuation of the previous field
            if not skipping:
                lines.append(line)
            continue
        key = line.partition(":")[0].strip().lower()
        skipping = key == "requires-dist"
        if key == "metadata-version":
            line = "Metadata-Version: 2.1"
        if not skipping:
            lines.append(line)
    lines += [f"Requires-Dist: {r}" for r in requires]
    return ("\n".join(lines) + "\n" + (("\n" + body) if sep else "")).encode()


def wheel_from_installed(
    directory: Path, dist_name: str, *, path: Sequence[str] | None = None
) -> Path:
    """Repack the installed distribution ``dist_name`` into a py3-none-any wheel in ``directory``.

    ``path`` is where to look (a list of site directories); by default the running
    interpreter's ``sys.path``. Bytecode and files outside the site directory (console
    scripts: pip writes them again from entry_points.txt) are left out; RECORD and WHEEL are
    written afresh. Raises ``NotPureError`` for a distribution with compiled parts.
    """
    dist = _find_distribution(dist_name, path)
    name, version = dist.metadata["Name"], dist.version
    _check_pure(dist, name)
    meta_dir = _metadata_dir(dist)
    site = Path(dist.locate_file(""))

    files: dict[str, bytes] = {}
    extra_meta: dict[str, bytes] = {}
    for rel in _installed_files(dist):
        if rel.is_absolute() or ".." in rel.parts or "__pycache__" in rel.parts:
            continue
        if rel.suffix in (".pyc", ".pyo"):
            continue
        source = site / rel
        if not source.is_file():
            continue
        if rel.name.endswith(_BINARY_SUFFIXES) or ".cpython-" in rel.name:
            raise NotPureError(f"{name} has a compiled file, {rel}; it cannot go in a pure wheel")
        if meta_dir is not None and (site / rel).parent == meta_dir:
            if meta_dir.suffix == ".dist-info" and rel.name not in _INSTALL_ONLY:
                extra_meta[rel.name] = source.read_bytes()
            continue
        if rel.parts[0].endswith((".dist-info", ".egg-info")):
            continue
        files[rel.as_posix()] = source.read_bytes()

    if meta_dir is not None and meta_dir.suffix == ".egg-info":
        metadata = _egg_info_metadata(dist.read_text("PKG-INFO") or "", dist.requires or [])
        for keep in ("entry_points.txt", "top_level.txt"):
            text = dist.read_text(keep)
            if text is not None:
                extra_meta[keep] = text.encode()
    else:
        metadata = extra_meta.pop("METADATA")

    dist_info = f"{_wheel_name(name)}-{version}.dist-info"
    for meta_name, data in extra_meta.items():
        files[f"{dist_info}/{meta_name}"] = data
    return _write_wheel(directory, name, version, files, metadata, "py3-none-any")


def _requirement_closure(
    roots: Sequence[str], path: Sequence[str] | None
) -> list[importlib.metadata.Distribution]:
    """The installed distributions ``roots`` need to run here (their extras left out)."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    queue = list(roots)
    while queue:
        requirement = Requirement(queue.pop(0))
        key = canonicalize_name(requirement.name)
        if key in seen:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        try:
            dist = _find_distribution(requirement.name, path)
        except importlib.metadata.PackageNotFoundError:
            if path is None:
                dist = _find_distribution(requirement.name, [SYSTEM_DIST_PACKAGES])
            else:
                raise
        seen[key] = dist
        queue += dist.requires or []
    return list(seen.values())


def test_toolchain_wheels(directory: Path) -> list[Path]:
    """Wheels of pytest and what it needs, plus what ``pip install -e .`` needs to build.

    Everything is repacked from what is installed for the running interpreter; what is not
    found there is taken from Debian's ``/usr/lib/python3/dist-packages``. Setuptools older
    than 70.1 asks for ``wheel`` to build any wheel, editable ones included (PEP 660), so
    ``wheel`` is added then.
    """
    roots = ["pytest", "setuptools"]
    setuptools = _requirement_closure(["setuptools"], None)[0]
    if Version(setuptools.version) < Version("70.1"):
        roots.append("wheel")
    wheels = []
    for dist in _requirement_closure(roots, None):
        here = str(Path(dist.locate_file("")))
        wheels.append(wheel_from_installed(directory, dist.metadata["Name"], path=[here]))
    return wheels


# A helper whose name starts with "test_": pytest must not collect it where it is imported.
test_toolchain_wheels.__test__ = False  # type: ignore[attr-defined]
toolchain_wheels = test_toolchain_wheels


class PackageIndex:
    """A PEP 503 "simple" index of ``wheels`` on http://127.0.0.1:PORT/simple/.

    The port is bound at construction; requests are answered once ``start()`` (or ``with``)
    has run. ``requests`` lists every path asked for, in order.
    """

    def __init__(self, wheels: Sequence[Path]) -> None:
        self._files: dict[str, Path] = {}
        self._hashes: dict[str, str] = {}
        self._projects: dict[str, list[str]] = {}
        for wheel in wheels:
            wheel = Path(wheel)
            if wheel.name in self._files:
                raise ValueError(f"two files named {wheel.name}")
            self._files[wheel.name] = wheel
            self._hashes[wheel.name] = hashlib.sha256(wheel.read_bytes()).hexdigest()
            self._projects.setdefault(normalize(wheel.name.split("-")[0]), []).append(wheel.name)
        self._lock = threading.Lock()
        self._requests: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/simple/"

    @property
    def requests(self) -> list[str]:
        with self._lock:
            return list(self._requests)

    def requested_projects(self) -> set[str]:
        """The normalized project names whose /simple/<name>/ page was asked for."""
        found = set()
        for path in self.requests:
            parts = [p for p in path.split("/") if p]
            if len(parts) == 2 and parts[0] == "simple":
                found.add(parts[1])
        return found

    def start(self) -> PackageIndex:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name=f"package-index {self.url}", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> PackageIndex:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- answering ------------------------------------------------------------------------

    def _record(self, path: str) -> None:
        with self._lock:
            self._requests.append(path)

    def _page(self, title: str, links: list[tuple[str, str]]) -> bytes:
        anchors = "\n".join(
            f'    <a href="{html.escape(href)}">{html.escape(text)}</a><br>' for href, text in links
        )
        return (
            "<!DOCTYPE html>\n<html>\n  <head>\n"
            '    <meta name="pypi:repository-version" content="1.0">\n'
            f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
            f"{anchors}\n  </body>\n</html>\n"
        ).encode()

    def _answer(self, path: str) -> tuple[int, str, bytes, dict[str, str]]:
        """(status, content type, body, extra headers) for a GET of ``path``."""
        parts = [p for p in path.split("/") if p]
        html_type = "text/html; charset=utf-8"
        if parts == ["simple"]:
            if not path.endswith("/"):
                return HTTPStatus.MOVED_PERMANENTLY, html_type, b"", {"Location": "/simple/"}
            links = [(f"/simple/{p}/", p) for p in sorted(self._projects)]
            return HTTPStatus.OK, html_type, self._page("Simple index", links), {}
        if len(parts) == 2 and parts[0] == "simple":
            project = parts[1]
            if project not in self._projects:
                return HTTPStatus.NOT_FOUND, html_type, b"not found\n", {}
            if not path.endswith("/"):
                location = f"/simple/{project}/"
                return HTTPStatus.MOVED_PERMANENTLY, html_type, b"", {"Location": location}
            links = [
                (f"/files/{f}#sha256={self._hashes[f]}", f) for f in sorted(self._projects[project])
            ]
            return HTTPStatus.OK, html_type, self._page(f"Links for {project}", links), {}
        if len(parts) == 2 and parts[0] == "files" and parts[1] in self._files:
            data = self._files[parts[1]].read_bytes()
            return HTTPStatus.OK, "application/octet-stream", data, {}
        return HTTPStatus.NOT_FOUND, html_type, b"not found\n", {}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        index = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _respond(self, send_body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                index._record(path)
                status, content_type, body, headers = index._answer(path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._respond(send_body=True)

            def do_HEAD(self) -> None:
                self._respond(send_body=False)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the index keeps its own list of requests

        return Handler


__all__ = [
    "SYSTEM_DIST_PACKAGES",
    "NotPureError",
    "PackageIndex",
    "build_wheel",
    "normalize",
    "test_toolchain_wheels",
    "toolchain_wheels",
    "wheel_from_installed",
]
