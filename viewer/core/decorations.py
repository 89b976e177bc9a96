"""A drawing surface for decorated views: pasted images, antialiased text, boxes and lines.

``viewer render`` and the report's key images draw their decorations (orientation letters,
scale bars, colour bars with units, region legends, titles) here, with Pillow's FreeType
rasteriser, instead of on a matplotlib figure: importing matplotlib cost ≈0.57 s of a ≈2 s
``viewer render`` (issue 19), Pillow's drawing modules ≈0.03 s. The font is DejaVu Sans, the
files matplotlib ships (found without importing matplotlib) and the PDF report embeds, so the
words in the pictures are the words on the page, and the widths :mod:`viewer.core.figure_text`
measures here hold for the report's pages, which embed the same font.

Conventions: positions are inches from the canvas's top-left corner, y downwards; text sizes and
line widths are points (1/72 in), as printed; the canvas turns both into pixels with its dpi.
Text is laid out as matplotlib lays it out (a line is as tall as "lp" at least; lines
``linespacing`` apart; "baseline" is the last line's), so a layout measured before drawing
(``figure_text``) is the layout drawn. Every text drawn is recorded with the box it covers (its
layout box joined with the pixels its glyphs actually reached, and the box behind it if any) and
the group it belongs to (a view, a colour bar), so a layout can be checked after drawing and
every word in the picture listed (the report's leak check cannot read pixels).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

from viewer.core.errors import ViewerError
from viewer.core.io.png import write_rgb_png

#: Colours: a name or "#rrggbb" (Pillow's ImageColor), or an (r, g, b) of 0–255 integers.
Color = str | tuple[int, int, int]

#: The font files of each style (DejaVu Sans, as matplotlib ships it and the PDF report embeds).
FONT_FILES = {"normal": "DejaVuSans.ttf", "bold": "DejaVuSans-Bold.ttf", "italic": "DejaVuSans-Oblique.ttf"}
#: Layout is measured on the font's outlines at this size (pixels per em) and scaled: metrics of
#: the hinted small sizes are whole pixels, too coarse to lay out a 6-point label.
MEASURE_PX = 512.0
#: matplotlib's dash pattern for "--" (on, off, in line widths), so a threshold mark looks as before.
DASH = (3.7, 1.6)
#: Glyphs are rasterised at this many times their size and averaged down: FreeType's hinting
#: (which Pillow does not let one turn off) rounds each advance to whole pixels, so at 7 points a
#: word came out unevenly spaced ("Tm ax"); supersampled, spacing follows the outlines, as
#: matplotlib's text did (it hints at 8 times the horizontal resolution).
SUPERSAMPLE = 4
#: Line spacing of multi-line text, in font sizes of the "lp" line height (matplotlib's default).
LINESPACING = 1.2
#: Kerning as matplotlib kerns, but no ligatures (matplotlib draws none: "ff" stays two glyphs,
#: the same width the time course's layout measured). Only the Raqm layout engine takes OpenType
#: features; without it Pillow kerns nothing and widths come out a little wider, never narrower.
NO_LIGATURES = ["-liga", "-clig"]


#: What a line shows in place of a control character (C0, C1, DEL), a line or paragraph separator
#: or a bidirectional control: "�". A region named "core\n\x1b[31mred" stays one legend line
#: (Raqm refuses to lay out some controls at all), and "\u202e" cannot reverse the words after it
#: in a picture (matplotlib applied no bidirectional reordering either).
REPLACEMENT = "\ufffd"
_UNPRINTABLE = {c: REPLACEMENT for c in (*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, 0x061C, 0x200E, 0x200F,
                                         *range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def printable(text: str) -> str:
    """``text`` as one drawable line: every control character, line break and bidirectional
    control replaced by :data:`REPLACEMENT` (what a figure shows for a name that holds them)."""
    return text.translate(_UNPRINTABLE)


@lru_cache(maxsize=1)
def font_folder() -> Path:
    """The folder of the DejaVu Sans files: matplotlib's ``mpl-data/fonts/ttf``, located through
    the import system without importing matplotlib (its import alone is most of a render's cost)."""
    spec = importlib.util.find_spec("matplotlib")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location) / "mpl-data" / "fonts" / "ttf"
        if (folder / FONT_FILES["normal"]).is_file():
            return folder
    raise ViewerError("DejaVu Sans not found: the figures need the fonts in matplotlib's mpl-data/fonts/ttf "
                      f"(searched {', '.join(locations) or 'no matplotlib installation'})")


@lru_cache(maxsize=64)
def font(size_px: float, style: str = "normal") -> ImageFont.FreeTypeFont:
    """DejaVu Sans (``style`` "normal", "bold" or "italic") at ``size_px`` pixels per em."""
    return ImageFont.truetype(str(font_folder() / FONT_FILES[style]), size_px)


def _features(face: ImageFont.FreeTypeFont) -> list[str] | None:
    return NO_LIGATURES if face.layout_engine == ImageFont.Layout.RAQM else None


@lru_cache(maxsize=8192)
def _outline_box(line: str, style: str) -> tuple[float, float, float, float]:
    """Ink box of one line at :data:`MEASURE_PX` (x0, top, x1, bottom; from the pen's origin on
    the baseline, y downwards)."""
    face = font(MEASURE_PX, style)
    return tuple(float(v) for v in face.getbbox(line, anchor="ls", features=_features(face)))


def line_metrics(line: str, size_px: float, style: str = "normal") -> tuple[float, float, float, float]:
    """Width, height, descent (pixels; matplotlib's w, h, d: h counts the descent) and left
    bearing of one line at ``size_px``, at least as tall as "lp" (the font's ascender and
    descender). The line is measured as drawn: :func:`printable`."""
    scale = size_px / MEASURE_PX
    _, lp_top, _, lp_bottom = _outline_box("lp", style)
    line = printable(line)
    if line:
        x0, top, x1, bottom = _outline_box(line, style)
    else:
        x0 = top = x1 = bottom = 0.0
    height = max(bottom - min(top, 0.0), lp_bottom - lp_top)
    descent = max(bottom, lp_bottom, 0.0)
    return (x1 - x0) * scale, height * scale, descent * scale, x0 * scale


def text_width_pt(text: str, size_pt: float, style: str = "normal") -> float:
    """Width (points) of one line of ``text`` at ``size_pt`` points, from the font's outlines."""
    return line_metrics(text, size_pt, style)[0]


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle in canvas pixels (x right, y down; x1 > x0, y1 > y0)."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def overlaps(self, other: Box) -> bool:
        """Whether the insides meet (boxes that only touch do not overlap)."""
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1

    def union(self, other: Box) -> Box:
        return Box(min(self.x0, other.x0), min(self.y0, other.y0), max(self.x1, other.x1), max(self.y1, other.y1))

    def contains(self, other: Box, slack: float = 0.0) -> bool:
        return (self.x0 - slack <= other.x0 and other.x1 <= self.x1 + slack
                and self.y0 - slack <= other.y0 and other.y1 <= self.y1 + slack)

    def padded(self, pad: float) -> Box:
        return Box(self.x0 - pad, self.y0 - pad, self.x1 + pad, self.y1 + pad)

    def snapped(self, line_px: float) -> Box:
        """The corners on the pixel grid (:func:`snap`) for an outline ``line_px`` wide."""
        return Box(snap(self.x0, line_px), snap(self.y0, line_px), snap(self.x1, line_px), snap(self.y1, line_px))


@dataclass(frozen=True)
class DrawnText:
    """A text as drawn: its string, the pixels it covers, what it is and what it belongs to."""

    text: str
    box: Box  # layout box ∪ the glyphs' pixels ∪ the box behind it
    kind: str  # "letter", "scale", "title", "caption", "legend", "tick", "bar title", ...
    group: str  # the view or colour bar it belongs to ("" for the canvas itself)


@dataclass(frozen=True)
class TextLayout:
    """Where the lines of a text go (pixels): its box, and each line's pen origin on its baseline."""

    box: Box
    lines: tuple[tuple[str, float, float], ...]  # (line, x of the pen, y of the baseline)


def layout_text(text: str, x_px: float, y_px: float, size_px: float, style: str = "normal", ha: str = "left",
                va: str = "baseline", linespacing: float = LINESPACING) -> TextLayout:
    """Lay ``text`` out as matplotlib does, anchored at (``x_px``, ``y_px``) by ``ha`` ("left",
    "center", "right") and ``va`` ("top", "center", "bottom", "baseline": the last line's,
    "center_baseline": halfway up a one-line label's ascent, as axis tick labels sit). Lines
    are split at "\\n" and each made :func:`printable`."""
    lines = [printable(line) for line in text.split("\n")]
    _, lp_h, lp_d, _ = line_metrics("lp", size_px, style)
    min_dy = (lp_h - lp_d) * linespacing
    metrics = [line_metrics(line, size_px, style) for line in lines]
    ys, y = [], 0.0
    baseline = 0.0
    descent = 0.0
    for i, (_, h, d, _) in enumerate(metrics):  # y upwards from the box's top, as matplotlib counts
        baseline = (h - d) - y
        y = -(h - d) if i == 0 else y - max(min_dy, (h - d) * linespacing)
        ys.append(y)
        y -= d
        descent = d
    width = max(m[0] for m in metrics)
    height = -(ys[-1] - descent)
    left = x_px - {"left": 0.0, "center": width / 2, "right": width}[ha]
    offsets = {"top": 0.0, "center": height / 2, "bottom": height, "baseline": height - descent,
               "center_baseline": baseline / 2}
    top = y_px - offsets[va]
    placed = []
    for line, (w, _, _, bearing), line_y in zip(lines, metrics, ys):
        line_left = left + {"left": 0.0, "center": (width - w) / 2, "right": width - w}[ha]
        placed.append((line, line_left - bearing, top - line_y))
    return TextLayout(Box(left, top, left + width, top + height), tuple(placed))


#: Rows of the canvas converted to bytes at once (:meth:`Canvas.pixels`): ~165 kB of float32.
PIXEL_BAND_ROWS = 32


class Canvas:
    """An RGB picture ``width_in`` × ``height_in`` at ``dpi``, drawn on in inches and points.

    Pixel size is ``int(width_in·dpi)`` × ``int(height_in·dpi)`` (as matplotlib's Agg canvas
    sized a figure). Pasted images keep their pixels exactly; text, boxes and lines are blended
    with antialiased (fractional) coverage.
    """

    def __init__(self, width_in: float, height_in: float, dpi: float, background: Color = "black") -> None:
        self.width_in, self.height_in, self.dpi = float(width_in), float(height_in), float(dpi)
        self.size = (int(self.width_in * self.dpi), int(self.height_in * self.dpi))  # (width, height) px
        self._pixels = np.empty((self.size[1], self.size[0], 3), dtype=np.float32)
        self._pixels[:] = _rgb(background)
        self.texts: list[DrawnText] = []
        self.areas: dict[str, Box] = {}  # a group's own rectangle: a view's image, a colour bar's ramp
        self.marks: list[tuple[str, Box]] = []  # (group, box) of every text, box and line drawn over an image
        self._extents: dict[str, Box] = {}  # everything drawn for a group

    # -- units ----------------------------------------------------------------------------------

    def px(self, inches: float) -> float:
        return inches * self.dpi

    def pt(self, points: float) -> float:
        """Points to pixels at this canvas's dpi."""
        return points * self.dpi / 72.0

    def get_size_inches(self) -> tuple[float, float]:
        """(width, height) in inches: the printed size (named as matplotlib's Figure names it, so
        the report embeds a canvas and a matplotlib figure alike)."""
        return self.width_in, self.height_in

    def extent(self, group: str) -> Box | None:
        """Everything drawn for ``group`` (its image, outline, ticks, words), or None."""
        return self._extents.get(group)

    def _note(self, group: str, box: Box, mark: bool = True) -> None:
        if mark:
            self.marks.append((group, box))
        if group:
            previous = self._extents.get(group)
            self._extents[group] = box if previous is None else previous.union(box)

    # -- drawing --------------------------------------------------------------------------------

    def image(self, rgb: np.ndarray, left_in: float, top_in: float, width_in: float, height_in: float,
              group: str = "", smooth: bool = False) -> Box:
        """Paste an (rows, cols, 3) uint8 image into the box (inches). The box is snapped to whole
        pixels; an image of the box's pixel size is pasted unchanged, any other is resampled
        (nearest neighbour, or with ``smooth`` an antialiased filter: a colour ramp)."""
        x0, y0 = round(self.px(left_in)), round(self.px(top_in))
        x1, y1 = round(self.px(left_in + width_in)), round(self.px(top_in + height_in))
        width, height = max(1, x1 - x0), max(1, y1 - y0)
        pixels = np.ascontiguousarray(rgb, dtype=np.uint8)
        if pixels.shape[:2] != (height, width):
            picture = Image.fromarray(pixels, "RGB")
            pixels = np.asarray(picture.resize((width, height), Image.Resampling.BILINEAR if smooth
                                               else Image.Resampling.NEAREST, reducing_gap=None))
        box = Box(float(x0), float(y0), float(x0 + width), float(y0 + height))
        cx0, cy0 = max(0, x0), max(0, y0)
        cx1, cy1 = min(self.size[0], x0 + width), min(self.size[1], y0 + height)
        if cx1 > cx0 and cy1 > cy0:
            self._pixels[cy0:cy1, cx0:cx1] = pixels[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
        if group:
            self.areas.setdefault(group, box)
        self._note(group, box, mark=False)
        return box

    def fill(self, box: Box, color: Color, alpha: float = 1.0, group: str = "") -> None:
        """Fill a rectangle (pixels, fractional edges drawn with partial coverage)."""
        x0, y0 = max(0.0, box.x0), max(0.0, box.y0)
        x1, y1 = min(float(self.size[0]), box.x1), min(float(self.size[1]), box.y1)
        if x1 <= x0 or y1 <= y0:
            return
        cols = _coverage(x0, x1)
        rows = _coverage(y0, y1)
        c0, r0 = math.floor(x0), math.floor(y0)
        self._blend(c0, r0, np.outer(rows, cols) * alpha, _rgb(color))
        self._note(group, box)

    def rect(self, box: Box, fill: Color | None = None, outline: Color | None = None, line_pt: float = 0.0,
             group: str = "", alpha: float = 1.0) -> None:
        """A rectangle (pixels) filled and/or outlined with a line of ``line_pt`` points centred on
        its edges (as matplotlib strokes a patch or an axes' spines), its corners snapped to the
        pixel grid as matplotlib snaps them (:func:`snap`), so a thin outline stays crisp."""
        width_px = self.pt(line_pt) if outline is not None else 0.0
        box = box.snapped(width_px)
        if fill is not None:
            self.fill(box, fill, alpha, group=group)
        if outline is not None and line_pt > 0:
            half = width_px / 2
            self.fill(Box(box.x0 - half, box.y0 - half, box.x1 + half, box.y0 + half), outline, group=group)
            self.fill(Box(box.x0 - half, box.y1 - half, box.x1 + half, box.y1 + half), outline, group=group)
            self.fill(Box(box.x0 - half, box.y0 + half, box.x0 + half, box.y1 - half), outline, group=group)
            self.fill(Box(box.x1 - half, box.y0 + half, box.x1 + half, box.y1 - half), outline, group=group)

    def segment(self, x0: float, y0: float, x1: float, y1: float, color: Color, line_pt: float,
                dashed: bool = False, group: str = "") -> None:
        """A horizontal or vertical line (pixels) ``line_pt`` points wide with butt ends, its ends
        snapped to the pixel grid (:func:`snap`); ``dashed`` draws matplotlib's "--" pattern
        (scaled by the width) from its start."""
        width_px = self.pt(line_pt)
        x0, y0, x1, y1 = (snap(v, width_px) for v in (x0, y0, x1, y1))
        half = width_px / 2
        horizontal = abs(y1 - y0) <= abs(x1 - x0)
        start, end = (min(x0, x1), max(x0, x1)) if horizontal else (min(y0, y1), max(y0, y1))
        pieces = [(start, end)]
        if dashed:
            on, off = (self.pt(line_pt * v) for v in DASH)
            pieces, at = [], start
            while at < end:
                pieces.append((at, min(end, at + on)))
                at += on + off
        for a, b in pieces:
            if horizontal:
                self.fill(Box(a, y0 - half, b, y0 + half), color, group=group)
            else:
                self.fill(Box(x0 - half, a, x0 + half, b), color, group=group)

    def text(self, x_in: float, y_in: float, text: str, size_pt: float = 10.0, color: Color = "black",
             ha: str = "left", va: str = "baseline", style: str = "normal", linespacing: float = LINESPACING,
             background: tuple[float, Color, float] | None = None, kind: str = "text", group: str = "") -> DrawnText:
        """Draw ``text`` (lines split at "\\n") anchored at (``x_in``, ``y_in``) inches by ``ha``
        and ``va`` (see :func:`layout_text`). ``background`` is (pad in points, colour, opacity)
        of a box drawn behind it. Returns the text as recorded (:attr:`texts`)."""
        size_px = self.pt(size_pt)
        layout = layout_text(text, self.px(x_in), self.px(y_in), size_px, style, ha, va, linespacing)
        box = layout.box
        if background is not None:
            pad, fill, alpha = background
            box = box.padded(self.pt(pad)).snapped(0.0)
            self.rect(box, fill=fill, alpha=alpha, group=group)
        rgb = _rgb(color)
        for line, pen_x, baseline_y in layout.lines:
            if line.strip():
                inked = self._glyphs(line, size_px, style, pen_x, baseline_y, rgb)
                if inked is not None:
                    box = box.union(inked)
        drawn = DrawnText(text, box, kind, group)
        self.texts.append(drawn)
        self._note(group, box)
        return drawn

    def measure(self, text: str, size_pt: float, style: str = "normal", linespacing: float = LINESPACING) -> Box:
        """The layout box (pixels, anchored at the top-left corner) ``text`` would take."""
        return layout_text(text, 0.0, 0.0, self.pt(size_pt), style, "left", "top", linespacing).box

    def pixels(self) -> np.ndarray:
        """The picture as (rows, cols, 3) uint8: each value rounded half to even and clipped to
        0-255. A band of rows at a time: the whole 688×630 canvas' float32 temporaries (5 MB
        each) were fresh memory for the system to fault in, 6 ms of a render; the bands reuse
        the same few hundred kB."""
        rows = self._pixels.shape[0]
        out = np.empty(self._pixels.shape, dtype=np.uint8)
        scratch = np.empty((PIXEL_BAND_ROWS, *self._pixels.shape[1:]), dtype=np.float32)
        for start in range(0, rows, PIXEL_BAND_ROWS):
            stop = min(rows, start + PIXEL_BAND_ROWS)
            band = scratch[: stop - start]
            np.rint(self._pixels[start:stop], out=band)
            np.clip(band, 0, 255, out=band)
            out[start:stop] = band  # whole numbers in 0-255: the cast is exact
        return out

    def save_png(self, path: str | Path) -> None:
        """The picture as an RGB PNG file (:mod:`viewer.core.io.png`: one filter for every row,
        deflated by ISA-L, no image plugins to import)."""
        write_rgb_png(path, self.pixels())

    # -- internals ------------------------------------------------------------------------------

    def _glyphs(self, line: str, size_px: float, style: str, pen_x: float, baseline_y: float,
                rgb: np.ndarray) -> Box | None:
        """Rasterise one line at :data:`SUPERSAMPLE` times its size, average it down to coverage
        at its fractional position, blend it in; returns the box of the pixels it inked."""
        k = SUPERSAMPLE
        face = font(size_px * k, style)
        features = _features(face)
        bx0, by0, bx1, by1 = face.getbbox(line, anchor="ls", features=features)
        left, top = math.floor(pen_x + bx0 / k) - 1, math.floor(baseline_y + by0 / k) - 1
        width, height = math.ceil(pen_x + bx1 / k) - left + 1, math.ceil(baseline_y + by1 / k) - top + 1
        mask = Image.new("L", (width * k, height * k), 0)
        ImageDraw.Draw(mask).text(((pen_x - left) * k, (baseline_y - top) * k), line, fill=255, font=face,
                                  anchor="ls", features=features)
        coverage = np.asarray(mask.resize((width, height), Image.Resampling.BOX), dtype=np.float32) / 255.0
        inked_rows, inked_cols = np.nonzero(coverage)
        if inked_rows.size == 0:
            return None
        self._blend(left, top, coverage, rgb)
        return Box(float(left + inked_cols.min()), float(top + inked_rows.min()),
                   float(left + inked_cols.max() + 1), float(top + inked_rows.max() + 1))

    def _blend(self, left: int, top: int, coverage: np.ndarray, rgb: np.ndarray) -> None:
        """Blend ``rgb`` into the pixels from (``left``, ``top``) by ``coverage`` (0–1), clipped."""
        rows, cols = coverage.shape
        x0, y0 = max(0, left), max(0, top)
        x1, y1 = min(self.size[0], left + cols), min(self.size[1], top + rows)
        if x1 <= x0 or y1 <= y0:
            return
        weight = coverage[y0 - top:y1 - top, x0 - left:x1 - left, None]
        region = self._pixels[y0:y1, x0:x1]
        region += (rgb - region) * weight


def snap(value: float, line_px: float) -> float:
    """A coordinate (pixels) moved to the pixel grid as matplotlib's Agg renderer snaps the
    vertices of straight lines and boxes: to a pixel's centre for a line an odd number of pixels
    wide, to a pixel's edge for an even one (and for a fill), so edges fall on whole pixels."""
    return math.floor(value + 0.5) + (0.5 if round(line_px) % 2 else 0.0)


def _coverage(start: float, end: float) -> np.ndarray:
    """How much of each whole pixel from floor(start) the span [start, end) covers (0–1)."""
    first, last = math.floor(start), math.ceil(end)
    edges = np.arange(first, last + 1, dtype=np.float64)
    return np.clip(np.minimum(edges[1:], end) - np.maximum(edges[:-1], start), 0.0, 1.0).astype(np.float32)


def _rgb(color: Color) -> np.ndarray:
    if isinstance(color, str):
        return np.array(ImageColor.getrgb(color)[:3], dtype=np.float32)
    return np.array(color[:3], dtype=np.float32)
