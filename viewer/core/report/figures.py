"""Report figures besides the key images: the time course of live and dead cells.

A reportlab vector drawing (points, y upwards from the bottom left corner) that the PDF places
as it is: its lines stay sharp at any zoom and its words are text a reader can search and copy.
Building it needs no matplotlib, whose import alone was ≈0.45 s of a ≈2.1 s report (issue 19).
The style is the window's time-course plot: one colour per region (the region's colour,
darkened for paper), live cells solid with circles, dead cells dashed with triangles, x at the
study's own days. Text is DejaVu Sans, the font the PDF embeds (¹⁹F, µ and ≥ have glyphs).

Every string drawn (axis titles, ticks, legend entries) passes through one ``text`` function,
so a de-identified report scrubs the words inside the picture as it scrubs its text: a
timepoint label that is a calendar date becomes "day N", a region named after the patient
loses the name. The x axis shows days after transplantation, never calendar dates.
:func:`drawn_strings` reads every string back from the drawing itself, for the leak check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from reportlab.graphics.shapes import Circle, Drawing, Group, Line, Polygon, PolyLine, String
from reportlab.lib.colors import Color, HexColor, black
from reportlab.pdfbase.pdfmetrics import stringWidth

from viewer.core.decorations import printable
from viewer.core.display import print_color
from viewer.core.figure_text import elide
from viewer.core.quant.stats import (
    StudyStats,
    TimepointStats,
    course_positions,
    course_values,
    region_label_of,
    time_course,
)
from viewer.core.regions import LabelTable
from viewer.core.render import _nice_ticks  # matplotlib's default tick choice, as the colour bars use it
from viewer.core.report.pdf import FONT, FONT_ITALIC, register_fonts


def _same(text: str) -> str:
    return text


#: Printed size (points): 7 × 2.9 inches; taller when the region legend goes below the plot.
WIDTH_PT, HEIGHT_PT = 7.0 * 72, 2.9 * 72
#: The plot's box: its bottom and height as shares of HEIGHT_PT, the least left margin and the
#: column right of it that holds the legends (points); the data's margin inside the box (share
#: of the data's span, matplotlib's default).
AXES_BOTTOM, AXES_HEIGHT, LEFT_PT, RIGHT_COLUMN_PT, DATA_MARGIN = 0.17, 0.76, 0.7 * 72, 1.96 * 72, 0.05
#: Font sizes (points): tick labels, axis titles, legend entries and the legend's title.
TICK_PT, AXIS_TITLE_PT, LEGEND_PT, LEGEND_TITLE_PT = 7.0, 8.0, 7.0, 7.5
#: Axis furniture (points): tick length, tick to its label, tick labels to the axis title, the
#: line widths of the axes' spines and ticks and of the grid, the least gap to the figure's edge.
TICK_LEN_PT, TICK_PAD_PT, TITLE_PAD_PT, SPINE_PT, GRID_PT, EDGE_PT = 3.5, 3.5, 4.0, 0.8, 0.5, 2.0
#: Legend, in its font sizes: a line handle's length, the gap from it to the name, between
#: columns, and the rows' pitch; the gap between the plot and the legend (points); the rows a
#: legend below the plot may take before the remaining regions are counted ("+N more").
HANDLE_EM, HANDLE_GAP_EM, COLUMN_GAP_EM, ROW_EM, LEGEND_GAP_PT, LEGEND_MAX_ROWS = 2.0, 0.8, 1.6, 1.5, 6.0, 8
#: DejaVu Sans in font sizes: the top of digits and capitals and of letters above the baseline,
#: and the depth of descenders; a line's middle sits MIDDLE_EM above its baseline.
DIGIT_EM, ASCENT_EM, DESCENT_EM, MIDDLE_EM = 0.73, 0.76, 0.24, 0.365
GRID = HexColor("#dddddd")
GREY = HexColor("#444444")  # the line-style legend's handles and the "+N more" note


def _circle(x: float, y: float, size: float, color: Color) -> Circle:
    """A filled circle ``size`` points across, edged in its colour (matplotlib's "o")."""
    return Circle(x, y, size / 2, fillColor=color, strokeColor=color, strokeWidth=1.0)


def _triangle(x: float, y: float, size: float, color: Color) -> Polygon:
    """An upward triangle ``size`` points wide and tall around (x, y), edged (matplotlib's "^")."""
    h = size / 2
    return Polygon([x, y + h, x - h, y - h, x + h, y - h], fillColor=color, strokeColor=color, strokeWidth=1.0,
                   strokeLineJoin=0)


class _Stroke(NamedTuple):
    """How one measure's line is drawn: width and dash pattern (points), marker and its size."""

    width: float
    dash: tuple[float, ...] | None
    marker: Callable[[float, float, float, Color], object]
    marker_pt: float


#: Live cells solid with circles; dead cells dashed (matplotlib's "--": 3.7 on, 1.6 off, in line
#: widths) with triangles.
LIVE = _Stroke(1.6, None, _circle, 4.0)
DEAD = _Stroke(1.2, (3.7 * 1.2, 1.6 * 1.2), _triangle, 3.5)


def _width(text: str, size: float, font: str = FONT) -> float:
    """Printed width (points) of ``text`` in the embedded font: what the PDF draws, to the point."""
    return stringWidth(printable(text), font, size)


def _string(x: float, y: float, text: str, size: float, anchor: str = "start", font: str = FONT,
            color: Color = black) -> String:
    """One line of text with its baseline at ``y`` (points), control characters shown as "�"."""
    return String(x, y, printable(text), fontName=font, fontSize=size, textAnchor=anchor, fillColor=color)


@dataclass(frozen=True)
class _Series:
    """One region's two lines: its name as drawn, its colour, one value per timepoint (NaN: none)."""

    name: str
    color: Color
    live: np.ndarray
    dead: np.ndarray


@dataclass(frozen=True)
class _Axes:
    """The plot's box (points from the drawing's bottom left) and the data ranges it spans."""

    x0: float
    y0: float
    width: float
    height: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    @property
    def x1(self) -> float:
        return self.x0 + self.width

    @property
    def y1(self) -> float:
        return self.y0 + self.height

    def px(self, value: float) -> float:
        low, high = self.x_range
        return self.x0 + (value - low) / (high - low) * self.width

    def py(self, value: float) -> float:
        low, high = self.y_range
        return self.y0 + (value - low) / (high - low) * self.height


@dataclass(frozen=True)
class _Placement:
    """Where the region legend goes: beside the plot while every name fits there whole, else
    below it in as many columns as the names allow (the figure grows to hold them)."""

    names: list[str]  # one per series, as drawn ("start…end" only if wider than the legend itself)
    below: bool
    axes_right_pt: float  # the room right of the plot (the legends' column)
    height_pt: float
    axes_bottom_pt: float
    columns: int = 1
    legend_top_pt: float = 0.0
    listed: int = 0  # series named in the legend; the others are counted under it


def time_course_drawing(timepoints: Sequence[TimepointStats], text: Callable[[str], str] = _same,
                        tables: Sequence[LabelTable] = (), width_pt: float = WIDTH_PT,
                        height_pt: float = HEIGHT_PT) -> Drawing | None:
    """Live (solid) and dead (dashed) cells per region against days, or None with nothing to plot.

    ``text`` maps every string drawn — region names in the legend, timepoint labels on the x
    axis when days are not given, titles — to what is shown (the report passes its
    de-identifying scrubber). Regions without any cell number (reference, background) are left
    out. Each region is drawn in its colour of the first of ``tables`` (the timepoints' label
    tables) that names it, as in the window. The drawing is ``width_pt`` wide and ``height_pt``
    tall, or taller when the region legend must go below the plot.
    """
    register_fonts()
    series = _series(timepoints, text, tables)
    if not series:
        return None
    x, with_days = course_positions(timepoints)
    ticks = sorted(set(x))
    tick_labels = [f"{v:g}" for v in ticks] if with_days else [text(t.label) for t in timepoints]
    axes_h = AXES_HEIGHT * height_pt
    y_top = _y_top(series)
    y_ticks = _nice_ticks(0.0, y_top, int(np.clip(axes_h // (2 * TICK_PT), 1, 9)))
    y_labels = _count_labels(y_ticks)
    left = max(LEFT_PT, _left_margin(y_labels))
    placement = _legend_placement([s.name for s in series], text, left, width_pt, height_pt)
    axes = _Axes(left, placement.axes_bottom_pt, width_pt - left - placement.axes_right_pt, axes_h,
                 _x_range(ticks), (0.0, y_top))
    drawing = Drawing(width_pt, placement.height_pt, initialFontName=FONT, initialFontSize=TICK_PT)  # no Helvetica
    _draw_grid(drawing, axes, ticks, y_ticks)
    for item in series:
        _draw_line(drawing, axes, x, item.live, item.color, LIVE)
        _draw_line(drawing, axes, x, item.dead, item.color, DEAD)
    _draw_spines(drawing, axes)
    _draw_x_ticks(drawing, axes, ticks, tick_labels, width_pt)
    _draw_y_ticks(drawing, axes, y_ticks, y_labels)
    x_title = text("days after transplantation" if with_days else "timepoint (days not given)")
    _draw_axis_titles(drawing, axes, x_title, text("cells"), max(_width(label, TICK_PT) for label in y_labels))
    _draw_region_legend(drawing, axes, series, placement, text)
    _draw_style_legend(drawing, axes, text)
    return drawing


def drawn_strings(drawing: Drawing) -> tuple[str, ...]:
    """Every non-empty string ``drawing`` shows, read from its shapes (groups searched through):
    what a reader sees, for the report's leak check."""
    found: list[str] = []

    def walk(shape) -> None:
        if isinstance(shape, String):
            if shape.text.strip():
                found.append(shape.text)
        for child in getattr(shape, "contents", ()):
            walk(child)

    walk(drawing)
    return tuple(found)


# -- the data ----------------------------------------------------------------------------------------

def _series(timepoints: Sequence[TimepointStats], text: Callable[[str], str],
            tables: Sequence[LabelTable]) -> list[_Series]:
    """Each region with any cell number, in the study's order of names, named as shown."""
    if not timepoints:
        return []
    series = []
    for name in time_course(StudyStats("", list(timepoints), []), "live_cells"):
        live, dead = course_values(timepoints, name, "live_cells"), course_values(timepoints, name, "dead_cells")
        if np.isnan(live).all() and np.isnan(dead).all():
            continue
        label = region_label_of(timepoints, name)
        owner = next((table for table in tables if table.label_of(name) is not None), LabelTable())
        series.append(_Series(text(name), Color(*print_color(owner.color_of_name(name, label))), live, dead))
    return series


def _y_top(series: Sequence[_Series]) -> float:
    """The y axis' top (cells): the largest value and a margin of DATA_MARGIN of it (the axis
    starts at 0, as matplotlib's autoscaling did with the bottom pinned to 0); 1 for only zeros."""
    values = np.concatenate([np.r_[s.live, s.dead] for s in series])
    largest = float(np.nanmax(values))
    return largest * (1 + DATA_MARGIN) if largest > 0 else 1.0


def _x_range(ticks: Sequence[float]) -> tuple[float, float]:
    """The x axis' span: the days with DATA_MARGIN of their span either side; ±1 around one day."""
    low, high = ticks[0], ticks[-1]
    if high == low:
        return low - 1.0, high + 1.0
    margin = DATA_MARGIN * (high - low)
    return low - margin, high + margin


def _count_labels(values: Sequence[float]) -> list[str]:
    """Tick labels of cell counts with thousands separators ("50,000"), as many decimals as the
    step needs when it is below one cell."""
    step = abs(values[1] - values[0]) if len(values) > 1 else 1.0
    decimals = 0 if step >= 1 else min(6, int(np.ceil(-np.log10(step) - 1e-9)))
    return [f"{0.0 if v == 0 else v:,.{decimals}f}" for v in values]  # no "-0" from a tick at -0.0


def _left_margin(y_labels: Sequence[str]) -> float:
    """The room (points) left of the plot for the y tick labels and the rotated y axis title."""
    labels = max(_width(label, TICK_PT) for label in y_labels)
    return EDGE_PT + (ASCENT_EM + DESCENT_EM) * AXIS_TITLE_PT + TITLE_PAD_PT + labels + TICK_PAD_PT + TICK_LEN_PT


# -- the legend's place -----------------------------------------------------------------------------

def _entry_pt(name: str) -> float:
    """Width (points) of a legend entry: the line handle, the gap and the name."""
    return (HANDLE_EM + HANDLE_GAP_EM) * LEGEND_PT + _width(name, LEGEND_PT)


def _legend_placement(names: list[str], text: Callable[[str], str], left_pt: float, width_pt: float,
                      height_pt: float) -> _Placement:
    """Measure the legend before drawing: no name is cut by the figure's edge, and the region
    legend never runs into the line-style legend."""
    axes_h = AXES_HEIGHT * height_pt
    row = ROW_EM * LEGEND_PT
    beside = RIGHT_COLUMN_PT - LEGEND_GAP_PT - EDGE_PT
    style_rows = 2 * row + 0.15 * 72
    if (all(_entry_pt(name) <= beside for name in names) and _width(text("regions"), LEGEND_TITLE_PT) <= beside
            and (len(names) + 1) * row + style_rows + 0.15 * 72 <= axes_h):
        return _Placement(list(names), False, RIGHT_COLUMN_PT, height_pt, AXES_BOTTOM * height_pt, listed=len(names))
    # below the plot, across the page; the line styles ("live cells", "dead cells") stay beside it
    style = max(_entry_pt(text("live cells")), _entry_pt(text("dead cells"))) + LEGEND_GAP_PT + EDGE_PT
    full = width_pt - left_pt - EDGE_PT
    shown = [elide(name, lambda s: _entry_pt(s) <= full) for name in names]
    gap = COLUMN_GAP_EM * LEGEND_PT
    columns = max(1, int((full + gap) // (max(_entry_pt(name) for name in shown) + gap)))
    listed = min(len(shown), LEGEND_MAX_ROWS * columns)
    rows = -(-listed // columns)
    legend = (rows + 1) * row + 0.1 * 72 + (row if listed < len(shown) else 0.0)  # title, rows, "+N more"
    labels = 0.45 * 72  # tick labels and the x axis' title under the plot
    total = legend + labels + axes_h + (1 - AXES_BOTTOM - AXES_HEIGHT) * height_pt
    return _Placement(shown, True, style, total, legend + labels, columns, legend, listed)


# -- drawing ------------------------------------------------------------------------------------------

def _draw_grid(drawing: Drawing, axes: _Axes, x_ticks: Sequence[float], y_ticks: Sequence[float]) -> None:
    """Light lines at every tick, under the data."""
    for value in x_ticks:
        x = axes.px(value)
        drawing.add(Line(x, axes.y0, x, axes.y1, strokeColor=GRID, strokeWidth=GRID_PT))
    for value in y_ticks:
        y = axes.py(value)
        drawing.add(Line(axes.x0, y, axes.x1, y, strokeColor=GRID, strokeWidth=GRID_PT))


def _draw_line(drawing: Drawing, axes: _Axes, x: Sequence[float], values: np.ndarray, color: Color,
               stroke: _Stroke) -> None:
    """A polyline through the values with a marker at each; a missing value (NaN) breaks it."""
    points = [(axes.px(xv), axes.py(v)) for xv, v in zip(x, values)]
    runs: list[list[tuple[float, float]]] = [[]]
    for point, value in zip(points, values):
        if np.isfinite(value):
            runs[-1].append(point)
        elif runs[-1]:
            runs.append([])
    for run in runs:
        if len(run) > 1:
            drawing.add(PolyLine([c for point in run for c in point], strokeColor=color, strokeWidth=stroke.width,
                                 strokeDashArray=list(stroke.dash) if stroke.dash else None, strokeLineJoin=1))
    for run in runs:
        for px, py in run:
            drawing.add(stroke.marker(px, py, stroke.marker_pt, color))


def _draw_spines(drawing: Drawing, axes: _Axes) -> None:
    """The left and bottom edges of the plot (the top and right ones are left open)."""
    drawing.add(Line(axes.x0, axes.y0, axes.x0, axes.y1, strokeColor=black, strokeWidth=SPINE_PT))
    drawing.add(Line(axes.x0, axes.y0, axes.x1, axes.y0, strokeColor=black, strokeWidth=SPINE_PT))


def _draw_x_ticks(drawing: Drawing, axes: _Axes, ticks: Sequence[float], labels: Sequence[str],
                  width_pt: float) -> None:
    """A tick at every timepoint, labelled under it: a label is shortened ("start…end") to the
    room between its neighbours and the figure's edges, and one that would still touch the
    label before it (two close days) is left out, its tick kept."""
    top = axes.y0 - TICK_LEN_PT - TICK_PAD_PT
    positions = [axes.px(value) for value in ticks]
    right_of_previous = -np.inf
    for index, (x, label) in enumerate(zip(positions, labels)):
        drawing.add(Line(x, axes.y0, x, axes.y0 - TICK_LEN_PT, strokeColor=black, strokeWidth=SPINE_PT))
        neighbours = [abs(x - other) for other in positions[max(0, index - 1):index + 2] if other != x]
        room = min([*neighbours, 2 * (x - EDGE_PT), 2 * (width_pt - EDGE_PT - x)]) - 2 * EDGE_PT
        shown = elide(label, lambda s: _width(s, TICK_PT) <= room)
        half = _width(shown, TICK_PT) / 2
        if x - half < right_of_previous + EDGE_PT:
            continue
        drawing.add(_string(x, top - DIGIT_EM * TICK_PT, shown, TICK_PT, anchor="middle"))
        right_of_previous = x + half


def _draw_y_ticks(drawing: Drawing, axes: _Axes, ticks: Sequence[float], labels: Sequence[str]) -> None:
    """Ticks left of the y axis, each label's middle level with its tick."""
    for value, label in zip(ticks, labels):
        y = axes.py(value)
        drawing.add(Line(axes.x0 - TICK_LEN_PT, y, axes.x0, y, strokeColor=black, strokeWidth=SPINE_PT))
        drawing.add(_string(axes.x0 - TICK_LEN_PT - TICK_PAD_PT, y - MIDDLE_EM * TICK_PT, label, TICK_PT, anchor="end"))


def _draw_axis_titles(drawing: Drawing, axes: _Axes, x_title: str, y_title: str, y_labels_pt: float) -> None:
    """The x title centred under the tick labels; the y title turned to read upwards, centred
    left of the y tick labels."""
    x_top = axes.y0 - TICK_LEN_PT - TICK_PAD_PT - (DIGIT_EM + DESCENT_EM) * TICK_PT - TITLE_PAD_PT
    drawing.add(_string((axes.x0 + axes.x1) / 2, x_top - ASCENT_EM * AXIS_TITLE_PT, x_title, AXIS_TITLE_PT,
                        anchor="middle"))
    baseline_x = axes.x0 - TICK_LEN_PT - TICK_PAD_PT - y_labels_pt - TITLE_PAD_PT - DESCENT_EM * AXIS_TITLE_PT
    turned = Group(_string(0, 0, y_title, AXIS_TITLE_PT, anchor="middle"),
                   transform=(0, 1, -1, 0, baseline_x, (axes.y0 + axes.y1) / 2))
    drawing.add(turned)


def _draw_entry(drawing: Drawing, x: float, y: float, name: str, color: Color, stroke: _Stroke) -> None:
    """A legend entry whose middle is at ``y``: a short line with its marker, then the name."""
    handle = HANDLE_EM * LEGEND_PT
    drawing.add(Line(x, y, x + handle, y, strokeColor=color, strokeWidth=stroke.width,
                     strokeDashArray=list(stroke.dash) if stroke.dash else None))
    drawing.add(stroke.marker(x + handle / 2, y, stroke.marker_pt, color))
    drawing.add(_string(x + handle + HANDLE_GAP_EM * LEGEND_PT, y - MIDDLE_EM * LEGEND_PT, name, LEGEND_PT))


def _draw_region_legend(drawing: Drawing, axes: _Axes, series: Sequence[_Series], placement: _Placement,
                        text: Callable[[str], str]) -> None:
    """"regions" and one entry per region (live cells' style, the region's colour): beside the
    plot from its top, or below it in columns (filled top to bottom, then left to right) with
    the regions that did not fit counted under them."""
    row = ROW_EM * LEGEND_PT
    if placement.below:
        x0, top, rows = axes.x0, placement.legend_top_pt, -(-placement.listed // placement.columns)
        pitch = max(_entry_pt(name) for name in placement.names[:placement.listed]) + COLUMN_GAP_EM * LEGEND_PT
    else:
        x0, top, rows, pitch = axes.x1 + LEGEND_GAP_PT, axes.y1, max(1, placement.listed), 0.0
    drawing.add(_string(x0, top - row / 2 - MIDDLE_EM * LEGEND_TITLE_PT, text("regions"), LEGEND_TITLE_PT))
    for index in range(placement.listed):
        column, line = divmod(index, rows)
        _draw_entry(drawing, x0 + column * pitch, top - row * (line + 1.5), placement.names[index],
                    series[index].color, LIVE)
    more = len(series) - placement.listed
    if more:
        drawing.add(_string(x0, 0.05 * 72 + DESCENT_EM * LEGEND_PT, f"+{more} more regions", LEGEND_PT,
                            font=FONT_ITALIC, color=GREY))


def _draw_style_legend(drawing: Drawing, axes: _Axes, text: Callable[[str], str]) -> None:
    """"live cells" (solid, circle) over "dead cells" (dashed, triangle), in grey, right of the
    plot at its bottom."""
    row = ROW_EM * LEGEND_PT
    x = axes.x1 + LEGEND_GAP_PT
    _draw_entry(drawing, x, axes.y0 + 1.5 * row, text("live cells"), GREY, LIVE)
    _draw_entry(drawing, x, axes.y0 + 0.5 * row, text("dead cells"), GREY, DEAD)
