"""Reading a job's artifacts for its evidence, and the console URL that serves one.

An artifact may be gone (deleted from the store), too big to show inline, not UTF-8 or not
the format its name says: each is a `Note` a reviewer reads, never an exception on the page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from runtime.jobs import ArtifactRef, JobRecord

SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_INLINE_BYTES = 20_000_000  # an artifact read to be shown on the page, at most


class ArtifactReader(Protocol):
    def read(self, sha256: str) -> bytes: ...


def artifact_url(sha256: str, *, download: str | None = None) -> str:
    """/artifacts/<sha256>, and ?download=<filename> to have the browser save it as that."""
    if not SHA256.match(sha256 or ""):
        raise ValueError(f"{sha256!r} is not a sha256 of an artifact")
    url = f"/artifacts/{sha256}"
    return f"{url}?download={quote(download, safe='')}" if download else url


@dataclass(frozen=True)
class Note:
    """Why an artifact cannot be shown, for the reviewer; with the artifact when it has one."""

    message: str
    name: str = ""
    sha256: str = ""
    present: bool = True  # still in the store: the note links to it

    @property
    def downloadable(self) -> bool:
        return self.present and bool(SHA256.match(self.sha256))


def named(job: JobRecord, name: str) -> ArtifactRef | None:
    """The job's latest artifact of that name."""
    return next((a for a in reversed(job.artifacts) if a.name == name), None)


def by_sha(job: JobRecord) -> dict[str, ArtifactRef]:
    return {a.sha256: a for a in job.artifacts}


def read_bytes(
    store: ArtifactReader, sha256: str, name: str = "", size: int | None = None
) -> bytes | Note:
    if not SHA256.match(sha256 or ""):
        return Note(f"{name or 'the artifact'} has no valid content hash ({sha256[:80]!r})", name)
    if size is not None and size > MAX_INLINE_BYTES:
        return Note(
            f"{name or sha256[:12]} is {size / 1_000_000:.1f} MB, too big to show here; "
            "download it instead",
            name,
            sha256,
        )
    try:
        return store.read(sha256)
    except FileNotFoundError:
        return Note(
            f"{name or sha256[:12]} is missing from the artifact store", name, sha256, False
        )
    except Exception as error:  # any reader: what went wrong, in words, not a broken page
        return Note(
            f"{name or sha256[:12]} could not be read from the artifact store "
            f"({type(error).__name__})",
            name,
            sha256,
            False,
        )


def read_text(
    store: ArtifactReader, sha256: str, name: str = "", size: int | None = None
) -> str | Note:
    data = read_bytes(store, sha256, name, size)
    if isinstance(data, Note):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        return Note(
            f"{name or sha256[:12]} is not UTF-8 text (byte {error.start}); download it to "
            "look at it",
            name,
            sha256,
        )


def read_ref(store: ArtifactReader, ref: ArtifactRef) -> str | Note:
    return read_text(store, ref.sha256, ref.name, ref.size)
