"""Text in figures laid out before anything is drawn: printed widths, names shortened to
"start…end" when they cannot fit, and the region legend flowed into rows (the key images of
the report, ``viewer render`` and the time-course figure use these, so no text is cut, dropped
or drawn over other text).

Widths come from the outlines of DejaVu Sans, the font every figure is drawn in (Pillow's
FreeType, :mod:`viewer.core.decorations`: the same files, and the same kerning, as matplotlib
used, so the widths hold for the key images Pillow draws and for the report's vector time
course), without drawing and without importing matplotlib: a layout is chosen first, then drawn once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from viewer.core.decorations import text_width_pt

#: Measured widths are scaled by this before a layout uses them: hinted glyphs (Pillow's or
#: matplotlib's Agg renderer) may come out a little wider than the font's outline metrics.
MEASURE_SLACK = 1.04
#: What a name shortened to fit keeps between its start and its end.
ELLIPSIS = "…"


@lru_cache(maxsize=4096)
def text_width_in(text: str, size: float, bold: bool = False) -> float:
    """Printed width (inches) of one line of ``text`` at ``size`` points (DejaVu Sans, as drawn),
    with :data:`MEASURE_SLACK`."""
    return text_width_pt(text, size, "bold" if bold else "normal") / 72.0 * MEASURE_SLACK


def elide(name: str, fits: Callable[[str], bool]) -> str:
    """``name`` if it fits, else the longest "start…end" that does (two thirds of the kept
    characters from the start, the end from a word's start, so a reader still tells
    "lesion, reader one" from "…two")."""
    if fits(name) or len(name) <= 2:
        return name

    def shortened(keep: int) -> str:
        head = max(1, -(-2 * keep // 3))
        tail = name[len(name) - (keep - head):] if keep > head else ""
        if tail and name[len(name) - len(tail) - 1] != " " and " " in tail.strip():
            tail = tail.split(" ", 1)[1]  # the end from a word's start ("…lesion", not "…ar lesion")
        return name[:head].rstrip() + ELLIPSIS + tail.lstrip()

    low, high = 1, len(name) - 1  # shortened(low) is the floor even if it does not fit
    while low < high:
        middle = (low + high + 1) // 2
        if fits(shortened(middle)):
            low = middle
        else:
            high = middle - 1
    return shortened(low)


def is_elided_from(shown: str, name: str) -> bool:
    """Whether ``shown`` is ``name`` or a "start…end" shortening of it (how tests read legends)."""
    if shown == name:
        return True
    if ELLIPSIS not in shown:
        return False
    head, _, tail = shown.partition(ELLIPSIS)
    return bool(head) and name.startswith(head) and name.endswith(tail) and len(head) + len(tail) < len(name)


#: Region legend of the key images: font (points), the most rows it takes (regions beyond
#: those rows are counted, "+N more", the views' own first), swatch and spacing (inches).
KEY_LEGEND_PT = 7.0
KEY_LEGEND_MAX_ROWS = 6
SWATCH_IN, SWATCH_GAP_IN, ENTRY_GAP_IN = 0.09, 0.04, 0.22


@dataclass
class LegendEntry:
    """One region of the key images' legend, placed."""

    label: int
    name: str  # as drawn: scrubbed, and shortened with "…" only if it fits no row on its own
    x_in: float  # from the legend's left edge (after its "regions:" heading)


@dataclass
class LegendLayout:
    """The legend's rows, and the count of the regions left out when not all fit."""

    rows: list[list[LegendEntry]]
    more: str = ""  # "+N more" after the last entry when not every region fits
    more_x_in: float = 0.0


def _entry_width_in(name: str) -> float:
    return SWATCH_IN + SWATCH_GAP_IN + text_width_in(name, KEY_LEGEND_PT)


def legend_layout(names: dict[int, str], present: set[int], width_in: float,
                  max_rows: int = KEY_LEGEND_MAX_ROWS) -> LegendLayout:
    """Flow region entries (swatch + name) into rows ``width_in`` wide, in label order.

    Every region gets an entry while ``max_rows`` hold them; a name is shortened ("start…end")
    only when it is wider than a whole row. With more regions than the rows hold, those shown
    in the views come first and the rest are counted in a final "+N more".
    """
    labels = sorted(names)
    fitted = {label: elide(names[label], lambda s: _entry_width_in(s) <= width_in) for label in labels}

    def flow(chosen: list[int], more: str) -> LegendLayout | None:
        rows: list[list[LegendEntry]] = [[]]
        x = 0.0
        for label in chosen:
            w = _entry_width_in(fitted[label])
            if rows[-1] and x + w > width_in:
                rows.append([])
                x = 0.0
            rows[-1].append(LegendEntry(label, fitted[label], x))
            x += w + ENTRY_GAP_IN
        more_x = x
        if more and rows[-1] and x + text_width_in(more, KEY_LEGEND_PT) > width_in:
            rows.append([])
            more_x = 0.0
        if len(rows) > max_rows:
            return None
        return LegendLayout(rows, more, more_x)

    everything = flow(labels, "")
    if everything is not None:
        return everything
    order = sorted(set(labels) & present) + sorted(set(labels) - present)
    low, high = 0, len(order) - 1  # the most entries that fit with "+N more"
    while low < high:
        middle = (low + high + 1) // 2
        if flow(sorted(order[:middle]), f"+{len(order) - middle} more regions") is not None:
            low = middle
        else:
            high = middle - 1
    return flow(sorted(order[:low]), f"+{len(order) - low} more regions") or LegendLayout([[]], f"+{len(order)} more regions")
