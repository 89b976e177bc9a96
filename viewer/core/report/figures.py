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
    figure = Figure(figsize=(width_in, height_in), dpi=dpi, facecolor="white")
    FigureCanvasAgg(figure)
    ax = figure.add_axes((0.1, 0.17, 0.62, 0.76))
    for name, live, dead in series:
        label = region_label_of(timepoints, name)
        owner = next((table for table in tables if table.label_of(name) is not None), LabelTable())
        color = print_color(owner.color_of_name(name, label))
        ax.plot(x, live, color=color, linewidth=1.6, marker="o", markersize=4, label=text(name))
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
    region_legend = ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False, title=text("regions"),
                              title_fontsize=7.5)
    ax.add_artist(region_legend)
    style = [Line2D([], [], color="#444444", linewidth=1.6, marker="o", markersize=4, label=text("live cells")),
             Line2D([], [], color="#444444", linewidth=1.2, linestyle="--", marker="^", markersize=3.5, label=text("dead cells"))]
    ax.legend(handles=style, loc="lower left", bbox_to_anchor=(1.02, 0.0), fontsize=7, frameon=False)
    return figure
