"""The pictures of a doc job's review: for each changed sheet of a workbook its changed region,
and for a Word document the pages that hold its changes, before and after, the changed cells
and paragraphs highlighted.

At most MAX_PICTURES a job. A picture that cannot be made is a note saying why, never an
error: the review goes on without it.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from runtime.kinds.doc.picture.marking import (
    MAX_COLUMNS,
    MAX_ROWS,
    SheetRegion,
    Side,
    mark_document,
    mark_workbook,
    regions,
    rgb,
)
from runtime.kinds.doc.picture.raster import read_ppm
from runtime.kinds.doc.picture.soffice import MAX_PAGES as PRINTED_PAGES
from runtime.kinds.doc.picture.soffice import Drawing, NotDrawn, draw

if TYPE_CHECKING:
    from runtime.kinds.doc.diff.model import Review

MAX_PICTURES = 16  # a job's, before and after counted apart
MAX_PAGES = 3  # a Word document's pages pictured per side
# A page's longer side in pixels, whatever its paper (a document may set any size): a sheet's
# region is one page scaled to fit, drawn finer (letter at 144 dpi), then cut to its cells; a
# Word page about 100 dpi.
SHEET_PIXELS = 1584
PAGE_PIXELS = 1100
MARKED_PIXELS = 200  # a page with fewer highlighted pixels holds no change
SIDES: tuple[Side, Side] = ("before", "after")


@dataclass
class Picture:
    """One PNG: its file name, and what it shows in a sentence."""

    name: str
    png: bytes
    caption: str


@dataclass
class Pictures:
    pictures: list[Picture] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not pictured, and why


@dataclass
class _Planned:
    rank: int  # the document's place in the review
    path: str
    side: Side
    drawing: Drawing
    regions: list[SheetRegion] = field(default_factory=list)  # a workbook's, in print order
    order: dict[str, int] = field(default_factory=dict)  # sheet -> its place in the diff
    limit: int = MAX_PAGES  # a Word document's pages pictured at most


async def render_pictures(changed: list[tuple[Review, bytes | None, bytes | None]]) -> Pictures:
    """The pictures of every reviewed workbook and Word document, from (review, old bytes,
    new bytes); notes for what could not be pictured."""
    out = Pictures()
    planned: list[_Planned] = []
    room, left_out = MAX_PICTURES, 0
    for rank, (review, old, new) in enumerate(changed):
        if review.format not in ("xlsx", "docx") or review.diff is None:
            continue
        for side, data in zip(SIDES, (old, new), strict=True):
            if data is None:
                continue
            try:
                plan, wanted = await asyncio.to_thread(_plan, rank, review, side, data, room)
            except Exception as error:  # a file openpyxl or python-docx cannot rewrite
                out.notes.append(
                    f"{review.path} ({side}): not pictured ({type(error).__name__}: "
                    f"{str(error)[:120]})"
                )
                continue
            taken = len(plan.regions) if review.format == "xlsx" else min(wanted, room)
            left_out += wanted - taken
            if taken:
                plan.limit = min(MAX_PAGES, room)
                planned.append(plan)
                room -= taken if review.format == "xlsx" else plan.limit
    if left_out > 0:
        out.notes.append(
            f"{left_out} more changed sheet(s) or page(s) not pictured (at most {MAX_PICTURES} "
            "pictures a job)"
        )
    if not planned:
        return out
    try:
        await draw([p.drawing for p in planned])
    except NotDrawn as why:
        out.notes.insert(0, f"not rendered ({why.reason})")
        return out
    made: list[tuple[tuple[int, int, int], Picture]] = []
    for plan in planned:
        try:
            shown = (_sheets if plan.regions else _pages)(plan, out.notes)
        except ValueError as error:  # a page that is not the image pdftoppm writes
            out.notes.append(f"{plan.path} ({plan.side}): not pictured ({error})")
            continue
        side = SIDES.index(plan.side)
        made += [((plan.rank, place, side), picture) for place, picture in shown]
    names: set[str] = set()
    for _, picture in sorted(made, key=lambda item: item[0]):
        picture.name = _unique(picture.name, names)
        out.pictures.append(picture)
    return out


def _plan(rank: int, review: Review, side: Side, data: bytes, room: int) -> tuple[_Planned, int]:
    """A marked copy of one side of a document, and how many pictures it wants (a Word
    document: 1 when the diff's changes were found in it, else 0)."""
    name = PurePosixPath(review.path).name
    if review.format == "docx":
        marked, count = mark_document(data, review.diff, side)  # type: ignore[arg-type]
        return _Planned(rank, review.path, side, Drawing(name, marked, PAGE_PIXELS)), int(count > 0)
    sheets = review.diff.sheets  # type: ignore[union-attr]
    found = [(place, region) for place, sheet in enumerate(sheets)
             for region in regions([sheet], side)]  # fmt: skip
    kept = found[: max(room, 0)]
    plan = _Planned(rank, review.path, side, Drawing(name, b"", SHEET_PIXELS))
    if kept:
        plan.drawing.data, printed = mark_workbook(data, [r for _, r in kept], side)
        by_name = {region.sheet: (place, region) for place, region in kept}
        plan.regions = [by_name[sheet][1] for sheet in printed if sheet in by_name]
        plan.order = {sheet: by_name[sheet][0] for sheet in printed if sheet in by_name}
    return plan, len(found)


def _sheets(plan: _Planned, notes: list[str]) -> list[tuple[int, Picture]]:
    pages = plan.drawing.pages
    if len(pages) != len(plan.regions):
        notes.append(
            f"{plan.path} ({plan.side}): LibreOffice printed {len(pages)} page(s) for "
            f"{len(plan.regions)} sheet(s); not pictured"
        )
        return []
    out = []
    for region, page in zip(plan.regions, pages, strict=True):
        image = read_ppm(page).cropped()
        caption = (
            f"{plan.path}, sheet {region.sheet}, {plan.side}: {region.shown}, the cells that "
            f"changed highlighted"
        )
        if region.cut_from:
            caption += f" (cut to {MAX_ROWS} rows x {MAX_COLUMNS} columns of {region.cut_from}"
            hidden = f"; {region.left_out:,} changed cell(s) not shown" if region.left_out else ""
            caption += hidden + ")"
        name = f"{_slug(PurePosixPath(plan.path).stem)}-{_slug(region.sheet)}-{plan.side}.png"
        out.append((plan.order[region.sheet], Picture(name, image.png(), caption)))
    return out


def _pages(plan: _Planned, notes: list[str]) -> list[tuple[int, Picture]]:
    pages = plan.drawing.pages
    if not pages:
        notes.append(f"{plan.path} ({plan.side}): LibreOffice printed no page; not pictured")
        return []
    colour = rgb(plan.side)
    out = []
    for number, page in enumerate(pages, start=1):
        image = read_ppm(page)
        if image.count(colour) < MARKED_PIXELS:
            continue
        if len(out) == plan.limit:
            notes.append(
                f"{plan.path} ({plan.side}): more pages hold changes; the first {plan.limit} "
                "are pictured"
            )
            break
        total = f"{len(pages)}+" if len(pages) >= PRINTED_PAGES else str(len(pages))
        caption = f"{plan.path}, page {number} of {total}, {plan.side}: the changes highlighted"
        name = f"{_slug(PurePosixPath(plan.path).stem)}-page{number}-{plan.side}.png"
        out.append((number, Picture(name, image.cropped().png(), caption)))
    if not out:
        notes.append(f"{plan.path} ({plan.side}): no printed page shows the change")
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.")[:40] or "sheet"


def _unique(name: str, taken: set[str]) -> str:
    stem, n = name.removesuffix(".png"), 2
    while name in taken:
        name = f"{stem}-{n}.png"
        n += 1
    taken.add(name)
    return name
