"""The report's time course as a vector drawing, without matplotlib (issue 19).

The figure is checked on the printed page, as a reader sees it: poppler renders the PDF
(pdftoppm, 100 dpi) and extracts its words with their boxes (pdftotext -bbox). The axes are
found in the pixels (the spines are the longest dark lines under the heading, the ticks the
dark marks just outside them), each tick is paired with the number printed next to it, and a
marker for a known value must sit where linear interpolation between the ticks puts it, in
the region's colour. The values are those of a small synthetic study written here (and, for
the demo, those `viewer stats` computes; its colours read from the figure's own legend).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from viewer.core.display import print_color
from viewer.core.quant.stats import RegionStats, TimepointStats
from viewer.core.regions import LabelEntry, LabelTable
from viewer.core.report.content import Chart, PdfInfo, Report, Table
from viewer.core.report.figures import drawn_strings, time_course_drawing
from viewer.core.report.pdf import report_pdf_bytes

ROOT = Path(__file__).resolve().parents[2]
DPI = 100
HEADING = "Time course of live and dead cells"
CAPTION = "Time course of live (solid, circles) and dead (dashed, triangles) cells."
#: The synthetic study: days, and per region its colour and live and dead cells (NaN: not drawn that day).
DAYS = (2.0, 9.0, 30.0)
REGIONS = {
    "graft core": ((220, 40, 40), (30000.0, 12000.0, 4000.0), (1000.0, 6000.0, 9000.0)),
    "host rim": ((40, 80, 220), (8000.0, np.nan, 21000.0), (3000.0, np.nan, 15000.0)),
}


@dataclass(frozen=True)
class Word:
    text: str
    x0: float  # pixels at DPI, y downwards (as pdftotext and the PNG count)
    y0: float
    x1: float
    y1: float

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2


def _words(pdf: Path, page: int) -> list[Word]:
    assert shutil.which("pdftotext"), "pdftotext missing: `make test` installs poppler-utils"
    xml = subprocess.run(["pdftotext", "-f", str(page), "-l", str(page), "-bbox", str(pdf), "-"], check=True,
                         capture_output=True, text=True).stdout
    scale = DPI / 72
    return [Word(text.replace("&amp;", "&"), *(float(v) * scale for v in box))
            for *box, text in re.findall(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>',
                                         xml)]


def _page_text(pdf: Path, page: int) -> str:
    text = subprocess.run(["pdftotext", "-f", str(page), "-l", str(page), str(pdf), "-"], check=True,
                          capture_output=True, text=True).stdout
    return re.sub(r"\s+", " ", text)


def _pixels(pdf: Path, page: int, folder: Path) -> np.ndarray:
    subprocess.run(["pdftoppm", "-r", str(DPI), "-png", "-f", str(page), "-l", str(page), "-singlefile", str(pdf),
                    str(folder / "page")], check=True)
    return np.asarray(Image.open(folder / "page.png").convert("RGB"), dtype=int)


def _figure_page(pdf: Path) -> int:
    pages = int(re.search(r"Pages:\s+(\d+)", subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True,
                                                               check=True).stdout).group(1))
    return next(p for p in range(1, pages + 1) if HEADING in _page_text(pdf, p))


def _runs(line: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a 1-D array."""
    padded = np.r_[False, line, False].astype(int)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2], edges[1::2]))


@dataclass(frozen=True)
class Axes:
    """The plot as found on the page: spines (pixel column of the y axis, row of the x axis)
    and (value, pixel) of every tick paired with the number printed at it."""

    spine_x: int
    spine_y: int
    x_ticks: list[tuple[float, float]]
    y_ticks: list[tuple[float, float]]

    def at(self, day: float, value: float) -> tuple[float, float]:
        """Pixel (column, row) of ``value`` cells at ``day``: linear between the ticks."""
        return _interpolate(self.x_ticks, day), _interpolate(self.y_ticks, value)


def _interpolate(ticks: list[tuple[float, float]], value: float) -> float:
    values, pixels = np.array(ticks).T
    i = int(np.clip(np.searchsorted(values, value) - 1, 0, len(values) - 2))  # the two ticks around it (or last two)
    return float(pixels[i] + (value - values[i]) / (values[i + 1] - values[i]) * (pixels[i + 1] - pixels[i]))


def _number(text: str) -> float | None:
    return float(text.replace(",", "")) if re.fullmatch(r"\d[\d,]*(\.\d+)?", text) else None


def _find_axes(rgb: np.ndarray, words: list[Word]) -> Axes:
    """The spines are the longest dark vertical and horizontal lines between the heading and
    the caption; ticks are the dark marks 2 px outside them, each paired with the nearest number."""
    heading = min((w for w in words if w.text == "Time"), key=lambda w: w.y0)  # the heading's first word, above
    caption = max((w for w in words if w.text == "Time"), key=lambda w: w.y0)  # the caption's, below
    top, bottom = int(heading.y1) + 2, int(caption.y0) - 2
    dark = rgb[top:bottom].max(axis=2) < 90
    spine_x = int(np.argmax([max((b - a for a, b in _runs(dark[:, c])), default=0) for c in range(dark.shape[1])]))
    spine_y = int(np.argmax([max((b - a for a, b in _runs(dark[r])), default=0) for r in range(dark.shape[0])]))
    rows = [top + (a + b - 1) / 2 for a, b in _runs(dark[:, spine_x - 3])]
    columns = [(a + b - 1) / 2 for a, b in _runs(dark[spine_y + 3])]
    spine_y += top
    numbers = [(w, _number(w.text)) for w in words if _number(w.text) is not None and top < w.y0 < bottom]
    y_labels = [(v, w.centre[1]) for w, v in numbers if abs(w.x1 - spine_x) < 15]
    x_labels = [(v, w.centre[0]) for w, v in numbers if 0 < w.y0 - spine_y < 15]

    def pair(labels, marks):
        assert labels and marks, (labels, marks)
        paired = []
        for value, where in labels:
            mark = min(marks, key=lambda m: abs(m - where))
            assert abs(mark - where) < 4, f"no tick at the label {value:g} ({where:.1f} px; ticks at {marks})"
            paired.append((value, mark))
        return sorted(paired)

    return Axes(spine_x, spine_y, pair(x_labels, columns), pair(y_labels, rows))


def _colour_near(rgb: np.ndarray, at: tuple[float, float], colour: np.ndarray, radius: int = 1) -> float:
    """The least difference (largest channel, 0–255) between ``colour`` and a pixel within ``radius`` of ``at``."""
    column, row = int(round(at[0])), int(round(at[1]))
    patch = rgb[row - radius:row + radius + 1, column - radius:column + radius + 1]
    return float(np.abs(patch - colour).max(axis=2).min())


def _synthetic_timepoints(with_days: bool = True) -> tuple[list[TimepointStats], LabelTable]:
    timepoints = []
    for index, day in enumerate(DAYS):
        regions = []
        for label, (name, (_, live, dead)) in enumerate(REGIONS.items(), start=1):
            if np.isfinite(live[index]):
                regions.append(RegionStats({"label": label, "name": name, "live_cells": live[index],
                                            "dead_cells": dead[index]}))
        timepoints.append(TimepointStats(f"session {'abc'[index]}", day if with_days else None, None, regions, []))
    table = LabelTable(tuple(LabelEntry(label, name, colour)
                             for label, (name, (colour, _, _)) in enumerate(REGIONS.items(), start=1)))
    return timepoints, table


def _report_of(chart: Chart) -> Report:
    """A report holding only the time course (laid out by the report's own PDF writer)."""
    info = PdfInfo("time course", "tests", "a figure", (), invariant=True)
    return Report("A time course", (("Study", "synthetic"),), False, Table(("timepoint",), (("first",),)), (), chart,
                  (), (("Live cells", "cells alive"),), (), "footer", info)


def _synthetic_pdf(tmp_path: Path, with_days: bool = True) -> Path:
    timepoints, table = _synthetic_timepoints(with_days)
    drawing = time_course_drawing(timepoints, tables=[table])
    pdf = tmp_path / "course.pdf"
    pdf.write_bytes(report_pdf_bytes(_report_of(Chart(drawing, CAPTION, drawn_strings(drawing)))))
    return pdf


def test_markers_and_lines_sit_at_their_values_between_the_ticks(tmp_path):
    pdf = _synthetic_pdf(tmp_path)
    page = _figure_page(pdf)
    words, rgb = _words(pdf, page), _pixels(pdf, page, tmp_path)
    axes = _find_axes(rgb, words)
    # the x ticks are the study's days; the y axis starts at 0 and its ticks are round: the
    # smallest step of 1, 2, 2.5 or 5 × 10ⁿ cutting 0–31,500 (the largest value and 5 %) into at most 9 parts
    assert [v for v, _ in axes.x_ticks] == list(DAYS)
    assert [v for v, _ in axes.y_ticks] == [0, 5000, 10000, 15000, 20000, 25000, 30000]
    assert axes.y_ticks[0][1] == pytest.approx(axes.spine_y, abs=1.5)  # 0 is on the x axis
    steps = np.diff([p for _, p in axes.y_ticks])
    assert np.allclose(steps, steps.mean(), atol=1.5)  # evenly spaced, as equal steps are
    for name, (colour, live, dead) in REGIONS.items():
        expected = np.array(print_color(colour)) * 255
        for day, value in [*zip(DAYS, live), *zip(DAYS, dead)]:
            if np.isfinite(value):
                assert _colour_near(rgb, axes.at(day, value), expected) < 40, f"{name}: no marker at day {day:g}, {value:g}"
    # a line joins the days, and a day without a value breaks it
    core = np.array(print_color(REGIONS["graft core"][0])) * 255
    assert _colour_near(rgb, axes.at(5.5, 21000), core) < 40
    rim = np.array(print_color(REGIONS["host rim"][0])) * 255
    assert _colour_near(rgb, axes.at(16, 14500), rim, radius=3) > 100, "host rim's line runs across the missing day"
    assert _colour_near(rgb, axes.at(16, 5000), rim, radius=3) > 100, "nor does its dead cells' line"


def test_title_axis_titles_and_legend_are_text_on_the_page(tmp_path):
    pdf = _synthetic_pdf(tmp_path)
    text = _page_text(pdf, _figure_page(pdf))
    for expected in (HEADING, "days after transplantation", "cells", "regions", "graft core", "host rim",
                     "live cells", "dead cells", "30,000"):
        assert expected in text, expected
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    rows = fonts.splitlines()[2:]
    assert rows and all("DejaVuSans" in row and " yes " in row for row in rows), fonts  # embedded DejaVu only


def test_without_days_the_timepoints_are_named_in_order(tmp_path):
    pdf = _synthetic_pdf(tmp_path, with_days=False)
    page = _figure_page(pdf)
    words = _words(pdf, page)
    assert "timepoint (days not given)" in _page_text(pdf, page)
    sessions = sorted((w for w in words if w.text in "abc" and len(w.text) == 1), key=lambda w: w.x0)
    assert [w.text for w in sessions] == ["a", "b", "c"]
    gaps = np.diff([w.centre[0] for w in sessions])
    assert gaps[0] == pytest.approx(gaps[1], abs=1.0)  # equally spaced: an order, not days


def test_demo_report_plots_the_numbers_of_viewer_stats(demo_manifest, tmp_path):
    """Every marker of the demo's report that no other marker crowds sits at its value of
    `viewer stats`, in the colour the figure's legend gives its region."""
    import json

    from viewer.core.analysis import compute_study_stats
    from viewer.core.io.study import load_study

    stats = json.loads(compute_study_stats(load_study(demo_manifest)).to_json())
    out = tmp_path / "demo.pdf"
    result = subprocess.run([sys.executable, "-m", "viewer", "report", str(demo_manifest), "-o", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    page = _figure_page(out)
    words, rgb, text = _words(out, page), _pixels(out, page, tmp_path), _page_text(out, page)
    for expected in (HEADING, "days after transplantation", "cells", "regions", "live cells", "dead cells"):
        assert expected in text, expected
    axes = _find_axes(rgb, words)
    assert [v for v, _ in axes.x_ticks] == [t["day"] for t in stats["timepoints"]]
    markers = []
    for region in {r["name"] for t in stats["timepoints"] for r in t["regions"]
                   if r.get("live_cells") is not None}:
        assert region in text, region
        first = next(w for w in words if w.text == region.split()[0] and w.x0 > axes.spine_x + 100)
        # the legend's handle: a marker 1.8 em (7 pt) left of the name, level with its middle
        colour = rgb[int(round(first.centre[1])), int(round(first.x0 - 1.8 * 7 * DPI / 72))]
        for timepoint in stats["timepoints"]:
            values = next((r for r in timepoint["regions"] if r["name"] == region), {})
            for key in ("live_cells", "dead_cells"):
                if values.get(key) is not None:
                    markers.append((region, colour, axes.at(timepoint["day"], values[key])))
    checked = 0
    for region, colour, at in markers:
        crowded = any(other != region and np.hypot(at[0] - o[0], at[1] - o[1]) < 7 for other, _, o in markers)
        if not crowded:
            assert _colour_near(rgb, at, colour) < 40, f"{region}: no marker at {at}"
            checked += 1
    assert checked >= 6, f"only {checked} of {len(markers)} markers stand apart"  # most crowd near 0 cells


CHILD = """
import contextlib, io, runpy, sys
sys.argv = ["viewer", *sys.argv[1:]]
with contextlib.redirect_stdout(io.StringIO()):
    try:
        runpy.run_module("viewer", run_name="__main__")
    except SystemExit as exit:
        code = exit.code
print(code)
print(" ".join(sorted(sys.modules)))
"""


def test_viewer_report_imports_no_matplotlib(demo_manifest, tmp_path):
    out = tmp_path / "report.pdf"
    result = subprocess.run([sys.executable, "-c", CHILD, "report", str(demo_manifest), "-o", str(out)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    code, modules = result.stdout.strip().splitlines()[-2:]
    assert code in ("0", "None") and out.is_file(), result.stderr
    loaded = set(modules.split())
    assert {"reportlab", "viewer.core.report.figures"} <= loaded  # the check sees the report being made
    assert not [name for name in loaded if name.split(".")[0] == "matplotlib"]
