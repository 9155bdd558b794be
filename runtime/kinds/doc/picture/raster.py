"""Pages as pixels: a PPM page (what pdftoppm writes) read, cut to what is printed on it and
written as a PNG, and the pixels of a highlight colour counted. Standard library only.

It must never read an image larger than MAX_PIXELS, and never trust a header it was handed:
the pages come from documents a model wrote.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAX_PIXELS = 40_000_000  # a page at most (A0 at 150 dpi is 35 M)
PAD = 12  # white pixels kept around what is printed
_WHITE = 0xFF


@dataclass(frozen=True)
class Raster:
    """An 8-bit RGB image, rows top to bottom."""

    width: int
    height: int
    rows: list[bytes]

    def cropped(self, pad: int = PAD) -> Raster:
        """Cut to the box of non-white pixels plus `pad`; an all-white page stays as it is."""
        stride = self.width * 3
        top = next((y for y, row in enumerate(self.rows) if row.count(_WHITE) != stride), None)
        if top is None:
            return self
        bottom = next(
            y for y in range(self.height - 1, -1, -1) if self.rows[y].count(_WHITE) != stride
        )
        left, right = self.width, 0
        for row in self.rows[top : bottom + 1]:
            lead = len(row) - len(row.lstrip(b"\xff"))
            if lead == stride:
                continue
            left = min(left, lead // 3)
            right = max(right, (len(row.rstrip(b"\xff")) + 2) // 3)
        x0, x1 = max(left - pad, 0), min(right + pad, self.width)
        y0, y1 = max(top - pad, 0), min(bottom + 1 + pad, self.height)
        return Raster(x1 - x0, y1 - y0, [row[x0 * 3 : x1 * 3] for row in self.rows[y0:y1]])

    def count(self, rgb: tuple[int, int, int]) -> int:
        """Pixels of exactly this colour (a fill's inside is exact; only its edges blend)."""
        needle = bytes(rgb)
        total = 0
        for row in self.rows:
            at = row.find(needle)
            while at != -1:
                if at % 3 == 0:
                    total += 1
                    at = row.find(needle, at + 3)
                else:
                    at = row.find(needle, at + 1)
        return total

    def png(self) -> bytes:
        """The image as a PNG (no filter: pages are mostly white rows, which deflate well)."""
        raw = b"".join(b"\x00" + row for row in self.rows)
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw, 6))
            + _chunk(b"IEND", b"")
        )


def read_ppm(data: bytes) -> Raster:
    """A binary PPM (P6, maxval 255); ValueError for anything else or an oversized one."""
    fields: list[bytes] = []
    at = 0
    while len(fields) < 4:
        while at < len(data) and data[at : at + 1].isspace():
            at += 1
        if data[at : at + 1] == b"#":
            at = data.index(b"\n", at) + 1
            continue
        end = at
        while end < len(data) and not data[end : end + 1].isspace():
            end += 1
        if end == at:
            raise ValueError("a PPM header is cut short")
        fields.append(data[at:end])
        at = end
    magic, width_text, height_text, maxval = fields
    if magic != b"P6" or maxval != b"255":
        raise ValueError("not an 8-bit binary PPM")
    width, height = int(width_text), int(height_text)
    if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
        raise ValueError(f"a {width}x{height} page is not drawn")
    at += 1  # the one whitespace byte after maxval
    stride = width * 3
    if len(data) - at < stride * height:
        raise ValueError("a PPM page is cut short")
    rows = [data[at + y * stride : at + (y + 1) * stride] for y in range(height)]
    return Raster(width, height, rows)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
