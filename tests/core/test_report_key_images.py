"""The report's pictures never cut, drop or overlap a word (issue 15).

Every figure the report embeds (the key images of a timepoint, the time course) is caught as
the report builds it and measured as drawn — the key images from their canvas's record of every
text (its layout box joined with the pixels its glyphs inked), the time course (a vector drawing)
from the words poppler extracts from it as a PDF: each drawn text's box lies inside
the figure, no two touch, the letters stay inside their view and apart from the neighbouring
view's, and every region is named in the legend — whole, or shortened to "start…end" only when
even a row of its own is too narrow, or counted in an explicit "+N more".
"""

from __future__ import annotations

import dataclasses
import html
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from reportlab.graphics import renderPDF

from viewer.core.display import default_display
from viewer.core.io.study import load_study
from viewer.core.regions import LabelTable
from viewer.core.figure_text import ELLIPSIS, elide, is_elided_from, text_width_in
from viewer.core.decorations import Canvas
from viewer.core.render import Layer, render_key_images
from viewer.core.report import ReportOptions, build_report, content, inputs_from_study
from viewer.core.report.content import Chart
from viewer.core.volume import Volume

#: Least distance between two views' orientation letters (mm on the printed figure).
LETTERS_APART_MM = 2.0
LONG = " of the right periventricular lesion, reader two"  # every name 30+ characters
HUGE = "region " + "with a very long free-text description typed by a reader " * 3 + "end"


def _assert_readable(figure, case: str) -> list[str]:
    """No text outside the figure or touching another; letters inside their view and apart from
    the next view's; colour bars clear of each other and of other bars' words. Returns the texts."""
    if isinstance(figure, Chart):
        return _assert_chart_readable(figure, case)
    return _assert_canvas_readable(figure, case)


def _assert_chart_readable(chart: Chart, case: str) -> list[str]:
    """:func:`_assert_readable` for a vector figure (the time course): the drawing alone as a
    PDF page of its size, its words as poppler extracts them (pdftotext -bbox): every word on
    the page, no two touching, every string the figure says it draws found there. Returns the
    strings."""
    with tempfile.TemporaryDirectory() as folder:
        pdf = Path(folder) / "figure.pdf"
        renderPDF.drawToFile(chart.drawing, str(pdf))
        xml = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], check=True, capture_output=True, text=True).stdout
    width, height = chart.drawing.width, chart.drawing.height
    pattern = r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>'
    words = [(html.unescape(text), tuple(float(v) for v in box)) for *box, text in re.findall(pattern, xml)]
    for text, (x0, y0, x1, y1) in words:
        assert x0 >= -0.5 and y0 >= -0.5 and x1 <= width + 0.5 and y1 <= height + 0.5, \
            f"{case}: {text!r} is cut by the figure's edge ({(x0, y0, x1, y1)} in {width}×{height})"
    for i, (a, box_a) in enumerate(words):
        for b, box_b in words[i + 1:]:
            apart = box_a[2] <= box_b[0] or box_b[2] <= box_a[0] or box_a[3] <= box_b[1] or box_b[3] <= box_a[1]
            assert apart, f"{case}: {a!r} {box_a} and {b!r} {box_b} overlap"
    extracted = " ".join(text for text, _ in words)
    for drawn in chart.texts:
        assert " ".join(drawn.split()) in extracted, f"{case}: {drawn!r} is not on the page"
    return list(chart.texts)


def _assert_canvas_readable(canvas: Canvas, case: str) -> list[str]:
    """:func:`_assert_readable` for a figure drawn on a canvas (the key images): the same checks
    on the boxes the canvas recorded (y downwards), a view being its image's rectangle and a
    colour bar its ramp's, with its ticks and words around it."""
    width, height = canvas.size
    texts = [t for t in canvas.texts if t.text.strip()]
    for text in texts:
        box = text.box
        assert box.x0 >= -0.5 and box.y0 >= -0.5 and box.x1 <= width + 0.5 and box.y1 <= height + 0.5, \
            f"{case}: {text.text!r} is cut by the figure's edge ({box} in {width}×{height})"
    for i, a in enumerate(texts):
        for b in texts[i + 1:]:
            assert not a.box.overlaps(b.box), f"{case}: {a.text!r} and {b.text!r} overlap"
    letters = [t for t in texts if t.kind == "letter"]
    assert len(letters) == 12, f"{case}: four letters in each of three views, not {len(letters)}"
    apart_px = LETTERS_APART_MM / 25.4 * canvas.dpi
    for text in letters:
        assert canvas.areas[text.group].contains(text.box), f"{case}: letter {text.text!r} leaves its view"
    for i, a in enumerate(letters):
        for b in letters[i + 1:]:
            if a.group != b.group:
                gap = max(b.box.x0 - a.box.x1, a.box.x0 - b.box.x1, b.box.y0 - a.box.y1, a.box.y0 - b.box.y1)
                assert gap >= apart_px, f"{case}: letters {a.text!r} and {b.text!r} of two views {gap:.1f} px apart"
    bars = sorted(group for group in canvas.areas if group.startswith("bar "))
    for i, bar in enumerate(bars):
        outline = canvas.areas[bar]
        for other in bars[i + 1:]:
            assert not canvas.extent(bar).overlaps(canvas.extent(other)), f"{case}: colour bars overlap"
        for text in texts:
            if text.group != bar and text.group in bars:
                assert not outline.overlaps(text.box), f"{case}: {text.text!r} runs into another colour bar"
    return [t.text for t in texts]


def _assert_named(names, drawn: list[str], case: str) -> None:
    """Every name is drawn whole, or as "start…end" of itself (never silently dropped); names
    short enough for a row are never shortened."""
    more = [t for t in drawn if t.startswith("+") and "more" in t]
    for name in names:
        shown = [t for t in drawn if is_elided_from(t, name)]
        if more and not shown:
            continue  # counted below
        assert shown, f"{case}: region {name!r} is missing from {drawn}"
        if len(name) <= 40:
            assert name in shown, f"{case}: {name!r} shortened to {shown} though it fits a row"
        else:
            head, _, tail = next(t for t in shown).partition(ELLIPSIS)
            assert len(head) >= 10 and (tail or head == shown[0]), f"{case}: {shown[0]!r} keeps too little of {name!r}"
    if more:  # "+N more regions": the listed and the counted make every region
        counted = int(more[0].split()[0].lstrip("+"))
        listed = sum(any(is_elided_from(t, name) for t in drawn) for name in names)
        assert listed + counted == len(set(names)), f"{case}: {listed} listed + {counted} counted != {len(set(names))}"


# -- the figures as the report makes them -----------------------------------------------------------

def _paint_regions(item, extra: dict[int, str]):
    """``item`` with cubes of new labels 7, 8, ... around its ¹⁹F hotspot (in the three views)."""
    from viewer.core.layers import default_focus

    regions = item.volumes["regions"]
    data = np.array(regions.data, copy=True)
    centre = np.rint(np.linalg.inv(regions.voxel_to_world) @ np.r_[default_focus(item.volumes, item.table.names), 1])
    centre = centre[:3].astype(int)
    spots = [(-30, 0, 0), (30, 0, 0), (0, -30, 0), (0, 30, 0), (0, 0, -30), (0, 0, 30)]
    spots += [(-50 + 9 * (n % 12), -50 + 9 * (n // 12), 0) for n in range(len(extra))]  # an axial grid
    for label, offset in zip(sorted(extra), spots):
        box = tuple(slice(max(0, c - 3), c + 3) for c in centre + np.array(offset))
        data[box] = np.where(data[box] == 0, label, data[box])
    volumes = dict(item.volumes, regions=Volume.from_array(data, regions.voxel_to_world, role="regions"))
    core = item.stats.regions[0]  # the new regions' numbers (for the time course): copies of the first's
    stats = dataclasses.replace(item.stats, regions=item.stats.regions + [
        dataclasses.replace(core, values=dict(core.values, label=label, name=name)) for label, name in extra.items()])
    table = item.table
    for label, name in extra.items():
        table = table.with_entry(LabelTable.from_names({label: name}).entries[0])
    return dataclasses.replace(item, volumes=volumes, table=table, stats=stats)


def _renamed(item, rename):
    stats = dataclasses.replace(item.stats, regions=[dataclasses.replace(r, values=dict(r.values, name=rename(r.name)))
                                                     for r in item.stats.regions])
    return dataclasses.replace(item, table=item.table.renamed(rename), stats=stats)


CASES = {
    "demo": (ReportOptions(), lambda item: item),
    "all protocol": (ReportOptions(protocol="all"), lambda item: item),
    "long names": (ReportOptions(), lambda item: _renamed(item, lambda n: n + LONG if n != "penumbra" else HUGE)),
    "10 regions": (ReportOptions(), lambda item: _paint_regions(item, {
        7: "hippocampus left", 8: "hippocampus right", 9: "thalamus", 10: "cortex ribbon sample"})),
    "60 regions": (ReportOptions(), lambda item: _paint_regions(item, {
        label: f"atlas region {label:02d} {'left' if label % 2 else 'right'}" for label in range(7, 61)})),
    "de-identified": (ReportOptions(deidentify=True), lambda item: item),
}


@pytest.fixture(scope="module")
def reported_figures(demo_manifest):
    """The figures of a one-timepoint report per case (the key images' canvas, the time
    course's vector drawing), with the regions they show."""
    study = load_study(demo_manifest)
    made = {}
    original = content._figure
    for case, (options, change) in CASES.items():
        inputs, models = inputs_from_study(study, "day 7")
        inputs = [change(item) for item in inputs]
        caught = []

        def spy(figure, caption, caught=caught):
            caught.append((caption, figure))
            return original(figure, caption)

        content._figure = spy
        try:
            report = build_report(study, inputs, models, options)
        finally:
            content._figure = original
        figures = {caption.split()[0]: figure for caption, figure in caught}
        made[case] = (dict(figures, Time=report.time_course), inputs[0])
    return made


@pytest.mark.parametrize("case", list(CASES))
def test_key_images_keep_every_word_whole_apart_and_inside(reported_figures, case):
    figures, item = reported_figures[case]
    drawn = _assert_readable(figures["Key"], case)
    _assert_named(set(item.table.names.values()), drawn, case)  # the demo's region names are no identifiers
    if case == "60 regions":
        assert any(t.startswith("+") and t.endswith("more regions") for t in drawn), "a full legend says how many it left out"
    else:
        assert not any(t.endswith("more regions") for t in drawn), f"{case}: every region fits the legend"
    if case == "long names":
        assert any(ELLIPSIS in t for t in drawn), "the huge name is shortened (start…end), not cut"


@pytest.mark.parametrize("case", ["demo", "long names", "10 regions", "60 regions"])
def test_time_course_legend_keeps_every_region(reported_figures, case):
    figures, item = reported_figures[case]
    drawn = _assert_readable(figures["Time"], case)
    plotted = [r.name for r in item.stats.regions
               if any(np.isfinite(r.values.get(k) if r.values.get(k) is not None else np.nan) for k in ("live_cells", "dead_cells"))]
    _assert_named(plotted, drawn, f"time course, {case}")


def test_key_images_of_a_flat_volume_keep_letters_and_scale_bar_apart():
    """A slab 40 voxels thick: the coronal and sagittal views are wide and low, the axial one
    narrow; letters, scale bars and view names still do not meet."""
    shape = (160, 200, 40)
    grid = np.indices(shape, dtype=np.float32)
    centre = (np.array(shape, dtype=np.float32) / 2)[:, None, None, None]
    anatomy_data = 100.0 * np.exp(-np.sum(((grid - centre) / centre) ** 2, axis=0))
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = -np.array(shape) / 2
    anatomy = Volume.from_array(anatomy_data.astype(np.float32), affine, role="anatomical", units="a.u.")
    labels = np.zeros(shape, np.int32)
    labels[70:90, 90:110, 15:25] = 1
    regions = Volume.from_array(labels, affine, role="regions")
    table = LabelTable.from_names({1: "a lesion with a name long enough to need a row" + LONG})
    layers = [Layer(anatomy, default_display(anatomy)), Layer(regions, default_display(regions), table)]
    figure = render_key_images(layers, np.zeros(3), title="flat phantom · a title " + "that is far too long " * 8)
    drawn = _assert_readable(figure, "flat volume")
    _assert_named(table.names.values(), drawn, "flat volume")
    assert any(t.startswith("flat phantom · a title") and ELLIPSIS in t for t in drawn), "the long title is shortened"


def test_elide_keeps_the_start_and_the_end():
    name = "contralateral white matter, mirrored region, reader two"

    def fits(shown: str) -> bool:
        return text_width_in(shown, 7) <= 1.5

    short = elide(name, fits)
    assert fits(short) and short != name and ELLIPSIS in short
    head, _, tail = short.partition(ELLIPSIS)
    assert name.startswith(head) and name.endswith(tail) and len(head) > len(tail) > 0
    assert is_elided_from(short, name) and not is_elided_from(short, "another region")
    assert elide("core", fits) == "core"
