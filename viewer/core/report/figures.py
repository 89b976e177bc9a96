"""Report figures besides the key images: the time course of live and dead cells.

Drawn with matplotlib's Agg canvas (no display, no pyplot state) in the same style as the
window's time-course plot: one colour per region (the region's colour), live cells solid with
circles, dead cells dashed with triangles, x at the study's own days.

Every string drawn (axis titles, ticks, legend entries) passes through one ``text`` function,
so a de-identified report scrubs the words inside the picture as it scrubs its text: a
timepoint label that is a calendar date becomes "day N", a region named after the patient
loses the name. The x axis shows days after transplantation, never calendar dates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from viewer.core.display import print_color
from viewer.core.quant.stats import (
    TimepointStats,
    course_positions,
    course_values,
    region_label_of,
    time_course,
)
from viewer.core.regions import LabelTable


def _same(text: str) -> str:
    return text


#: The time course's legend: font (points), a line handle's length and the gaps (in font sizes, as
#: matplotlib's legend takes them), the plot's margins (inches) and the rows a legend below the plot
#: may take before the remaining regions are counted.
LEGEND_PT = 7.0
HANDLE_EM, HANDLE_GAP_EM, COLUMN_GAP_EM, ROW_EM = 2.0, 0.8, 1.6, 1.5
LEFT_IN, RIGHT_COLUMN_IN, LEGEND_MAX_ROWS = 0.7, 1.96, 8


@dataclass
class _Placement:
    """Where the time course's region legend goes: beside the plot while every name fits there
    whole, else below it in as many columns as the names allow (the figure grows to hold them)."""

    names: list[str]  # one per series, as drawn ("start…end" only if wider than the legend itself)
    below: bool
    axes: tuple[float, float, float, float]  # figure fractions
    height_in: float
    columns: int = 1
    legend_top: float = 0.0  # figure fraction
    listed: int = 0  # series named in the legend; the others are counted under it


def _entry_in(name: str) -> float:
    from viewer.core.figure_text import text_width_in

    return (HANDLE_EM + HANDLE_GAP_EM) * LEGEND_PT / 72 + text_width_in(name, LEGEND_PT)


def _legend_placement(names: list[str], text: Callable[[str], str], width_in: float, height_in: float) -> _Placement:
    """Measure the legend before drawing: no name is cut by the figure's edge, and the region
    legend never runs into the line-style legend."""
    from viewer.core.figure_text import elide, text_width_in

    axes_h_in = 0.76 * height_in
    row_in = ROW_EM * LEGEND_PT / 72
    beside_in = RIGHT_COLUMN_IN - 0.05
    style_rows_in = 2 * row_in + 0.15
    if (all(_entry_in(name) <= beside_in for name in names) and text_width_in(text("regions"), 7.5) <= beside_in
            and (len(names) + 1) * row_in + style_rows_in + 0.15 <= axes_h_in):
        axes = (LEFT_IN / width_in, 0.17, 1 - (LEFT_IN + RIGHT_COLUMN_IN) / width_in, 0.76)
        return _Placement(list(names), False, axes, height_in, listed=len(names))
    # below the plot, across the page; the line styles ("live cells", "dead cells") stay beside it
    style_in = max(_entry_in(text("live cells")), _entry_in(text("dead cells"))) + 0.3
    full_in = width_in - LEFT_IN - 0.05
    shown = [elide(name, lambda s: _entry_in(s) <= full_in) for name in names]
    gap_in = COLUMN_GAP_EM * LEGEND_PT / 72
    columns = max(1, int((full_in + gap_in) // (max(_entry_in(name) for name in shown) + gap_in)))
    listed = min(len(shown), LEGEND_MAX_ROWS * columns)
    rows = -(-listed // columns)
    legend_in = (rows + 1) * row_in + 0.1 + (row_in if listed < len(shown) else 0.0)  # title, rows, "+N more"
    labels_in = 0.45  # tick labels and the x axis' title under the plot
    total_in = legend_in + labels_in + axes_h_in + 0.07 * height_in
    axes = (LEFT_IN / width_in, (legend_in + labels_in) / total_in, 1 - (LEFT_IN + style_in) / width_in,
            axes_h_in / total_in)
    return _Placement(shown, True, axes, total_in, columns, legend_in / total_in, listed)


def time_course_figure(timepoints: Sequence[TimepointStats], text: Callable[[str], str] = _same, width_in: float = 7.0,
                       height_in: float = 2.9, dpi: int = 150, tables: Sequence[LabelTable] = ()):
    """Live (solid) and dead (dashed) cells per region against days, or None with nothing to plot.

    ``text`` maps every string drawn — region names in the legend, timepoint labels on the x
    axis when days are not given, titles — to what is shown (the report passes its
    de-identifying scrubber). Regions without any cell number (reference, background) are left
    out. Each region is drawn in its colour of the first of ``tables`` (the timepoints' label
    tables) that names it, as in the window. Returns a matplotlib Figure.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    from viewer.core.quant.stats import StudyStats

    if not timepoints:
        return None
    x, with_days = course_positions(timepoints)
    names = time_course(StudyStats("", list(timepoints), []), "live_cells")
    series = []
    for name in names:
        live, dead = course_values(timepoints, name, "live_cells"), course_values(timepoints, name, "dead_cells")
        if not (np.isnan(live).all() and np.isnan(dead).all()):
            series.append((name, live, dead))
    if not series:
        return None
    entries = [text(name) for name, _, _ in series]
    layout = _legend_placement(entries, text, width_in, height_in)
    figure = Figure(figsize=(width_in, layout.height_in), dpi=dpi, facecolor="white")
    FigureCanvasAgg(figure)
    ax = figure.add_axes(layout.axes)
    for (name, live, dead), shown in zip(series, layout.names):
        label = region_label_of(timepoints, name)
        owner = next((table for table in tables if table.label_of(name) is not None), LabelTable())
        color = print_color(owner.color_of_name(name, label))
        ax.plot(x, live, color=color, linewidth=1.6, marker="o", markersize=4, label=shown)
        ax.plot(x, dead, color=color, linewidth=1.2, linestyle="--", marker="^", markersize=3.5)
    ax.set_xlabel(text("days after transplantation" if with_days else "timepoint (days not given)"), fontsize=8)
    ax.set_ylabel(text("cells"), fontsize=8)
    ax.set_xticks(sorted(set(x)))
    ax.set_xticklabels([f"{v:g}" for v in sorted(set(x))] if with_days else [text(t.label) for t in timepoints])
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.tick_params(labelsize=7)
    ax.set_ylim(bottom=0)
    ax.grid(True, color="#dddddd", linewidth=0.5)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    handles, labels = ax.get_legend_handles_labels()
    style = [Line2D([], [], color="#444444", linewidth=1.6, marker="o", markersize=4, label=text("live cells")),
             Line2D([], [], color="#444444", linewidth=1.2, linestyle="--", marker="^", markersize=3.5, label=text("dead cells"))]
    common = {"fontsize": LEGEND_PT, "frameon": False, "borderaxespad": 0.0, "borderpad": 0.0}
    if layout.below:
        figure.legend(handles[:layout.listed], labels[:layout.listed], loc="upper left", ncol=layout.columns,
                      bbox_to_anchor=(LEFT_IN / width_in, layout.legend_top), title=text("regions"), title_fontsize=7.5,
                      alignment="left", columnspacing=COLUMN_GAP_EM, **common)
        if layout.listed < len(handles):
            figure.text(LEFT_IN / width_in, 0.05 / layout.height_in, f"+{len(handles) - layout.listed} more regions",
                        fontsize=LEGEND_PT, fontstyle="italic", color="#444444", va="bottom", ha="left")
    else:
        ax.add_artist(ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), title=text("regions"), title_fontsize=7.5,
                                alignment="left", **common))
    ax.legend(handles=style, loc="lower left", bbox_to_anchor=(1.02, 0.0), **common)
    return figure
