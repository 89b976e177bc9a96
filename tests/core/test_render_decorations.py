"""`viewer render`'s decorations drawn with Pillow instead of matplotlib (issue 19).

The PNG keeps the fused slice's pixels exactly (only the letters, the scale bar and their boxes
are drawn over it), names every word it draws (letters, scale, title, legend, colour bars with
their units and ticks), draws them antialiased in DejaVu Sans so that tesseract reads them back,
and finds the font without importing matplotlib. The widths the layouts are measured with stay
those of matplotlib's text, with which the key images' layout numbers were chosen.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from viewer.core.decorations import Canvas, font_folder
from viewer.core.figure_text import MEASURE_SLACK, text_width_in
from viewer.core.io.labels import saved_label_table
from viewer.core.io.study import load_study, load_timepoint
from viewer.core.layers import build_layers, default_focus
from viewer.core.protocols import default_protocol, protocol
from viewer.core.render import (
    RENDER_DPI,
    RENDER_IMAGE_PIXELS,
    Layer,
    _axis_labels,
    _nice_ticks,
    drawn_texts,
    fuse_plane,
    refine_plane,
    render_figure,
    render_view,
)
from viewer.core.spaces import display_plane

ROOT = Path(__file__).resolve().parents[2]


def _demo_view(demo_manifest, protocol_name: str | None = None, view: str = "axial"):
    study = load_study(demo_manifest)
    timepoint = study.timepoints[0]
    volumes = load_timepoint(study, timepoint)
    table = saved_label_table(timepoint)
    chosen = protocol(protocol_name) if protocol_name else default_protocol(volumes)
    layers = build_layers(volumes, table, protocol=chosen)
    return layers, default_focus(volumes, table.names), view


def _fused(layers, point, view):
    """The fused plane exactly as render_figure makes it."""
    coarse = display_plane(layers[0].volume, view, point, True)
    extent_mm = max(coarse.shape[0] * coarse.row_step_mm, coarse.shape[1] * coarse.col_step_mm)
    return fuse_plane(layers, refine_plane(coarse, extent_mm / RENDER_IMAGE_PIXELS))


@pytest.mark.parametrize("view", ["axial", "coronal", "sagittal"])
def test_the_png_keeps_the_fused_pixels_and_draws_only_decorations_over_them(demo_manifest, tmp_path, view):
    layers, point, view = _demo_view(demo_manifest, view=view)
    out = render_view(layers, view, point, tmp_path / "view.png")
    png = np.asarray(Image.open(out))
    canvas = render_figure(layers, view, point)
    assert png.shape == (*canvas.size[::-1], 3) and np.array_equal(png, canvas.pixels())  # the PNG is the canvas
    fused = _fused(layers, point, view)
    rows, cols = fused.rgb.shape[:2]
    # the image 0.2 in from the left, 0.5 in from the top, one plane pixel per PNG pixel
    image = canvas.areas["view"]
    assert (image.x0, image.y0, image.width, image.height) == (20, 50, cols, rows)
    assert canvas.size == (int((cols / RENDER_DPI + 0.4 + 1.75) * RENDER_DPI), rows + 70)  # legend column 1.75 in
    # every text, box and line drawn over the image: its letters and scale bar only (the colour
    # bars' tick labels are right of each bar, off the image and its letters)
    for text in canvas.texts:
        if text.kind == "tick":
            assert text.box.x0 >= image.x1 + 10, f"tick label {text.text!r} reaches the image"
    drawn_over = np.zeros((rows, cols), bool)
    for _, box in canvas.marks:
        drawn_over[max(0, int(box.y0) - 50):max(0, int(np.ceil(box.y1)) - 50),
                   max(0, int(box.x0) - 20):max(0, int(np.ceil(box.x1)) - 20)] = True
    inside = png[50:50 + rows, 20:20 + cols]
    same = np.all(inside == fused.rgb, axis=-1)
    assert same[~drawn_over].all(), f"{(~same & ~drawn_over).sum()} image pixels changed outside the decorations"
    assert 0 < drawn_over.mean() < 0.03  # letters and the scale bar: edges, not the image


def test_every_word_drawn_is_listed_and_the_colour_bar_has_its_units_and_ticks(demo_manifest):
    layers, point, view = _demo_view(demo_manifest, "all")
    canvas = render_figure(layers, view, point, title="demo · day 1")
    texts = drawn_texts(canvas)
    plane = _fused(layers, point, view).plane
    letters = [t.text for t in canvas.texts if t.kind == "letter"]
    assert sorted(letters) == sorted(plane.edge_letters().values())
    assert any(t.endswith(" mm") and t[:-3].isdigit() for t in texts), "the scale bar's length"
    title = next(t.text for t in canvas.texts if t.kind == "title")
    assert title.startswith("demo · day 1 · axial · slice ") and title.endswith(" mm")
    table = layers[-1].table if layers[-1].volume.role == "regions" else next(l.table for l in layers if l.volume.role == "regions")
    for name in table.names.values():
        assert any(t[2:] == name for t in texts if t[:2] in ("■ ", "□ ")), f"legend misses {name!r}"
    overlays = [layer for layer in layers[1:] if layer.display.visible and layer.volume.role != "regions"]
    bars = sorted((g for g in canvas.areas if g.startswith("bar ")), key=lambda g: int(g.split()[1]))
    assert len(bars) == len(overlays) >= 5
    for bar, layer in zip(bars, overlays):
        words = [t for t in canvas.texts if t.group == bar]
        assert [t.text for t in words if t.kind == "bar title"] == [layer.title]  # quantity and (units)
        ticks = [float(t.text.replace("−", "-")) for t in words if t.kind == "tick"]
        low, high = layer.display.levels
        assert len(ticks) >= 3 and all(low - 1e-9 * abs(high) <= v <= high + 1e-9 * abs(high) for v in ticks)
        ramp = canvas.areas[bar]
        for tick in (t for t in words if t.kind == "tick"):  # right of the bar, between its ends
            assert tick.box.x0 >= ramp.x1 and ramp.y0 - 6 <= (tick.box.y0 + tick.box.y1) / 2 <= ramp.y1 + 6
    boxes = [(t.group, t.box) for t in canvas.texts if t.group.startswith("bar ")]
    for n, (group, box) in enumerate(boxes):  # no bar's words overlap another bar's
        for other, other_box in boxes[n + 1:]:
            if other != group:
                assert box.x1 <= other_box.x0 or other_box.x1 <= box.x0 or box.y1 <= other_box.y0 \
                    or other_box.y1 <= box.y0, (group, other)


def test_text_is_antialiased_and_legible(demo_manifest, tmp_path):
    """Glyph edges are blended (not 1-bit), and tesseract reads the title, the legend and a
    colour bar back from the PNG (3× enlarged, dark on light)."""
    assert shutil.which("tesseract"), "`make test` installs tesseract-ocr"
    layers, point, view = _demo_view(demo_manifest)
    canvas = render_figure(layers, view, point, title="demo-001 · day 1")
    pixels = canvas.pixels()
    title = next(t for t in canvas.texts if t.kind == "title").box
    grey = pixels[int(title.y0):int(title.y1), int(title.x0):int(title.x1)].max(axis=-1)
    inked = grey[grey > 0]
    assert inked.size > 200 and (inked < 200).mean() > 0.25, "text edges should be antialiased"

    def read(box) -> str:
        picture = Image.fromarray(pixels).convert("L").crop((int(box.x0) - 4, int(box.y0) - 4, int(box.x1) + 4,
                                                             int(box.y1) + 4))
        picture = ImageOps.invert(picture).resize((picture.width * 3, picture.height * 3), Image.Resampling.LANCZOS)
        path = tmp_path / "crop.png"
        picture.save(path)
        return subprocess.run(["tesseract", str(path), "-", "--psm", "6"], check=True, capture_output=True,
                              text=True).stdout

    title_text = read(title)
    assert "demo-001" in title_text and "axial" in title_text and "slice" in title_text, title_text
    legend = read(canvas.extent("legend"))
    for word in ("regions", "penumbra", "injection site", "reference", "background", "contralateral white matter"):
        assert word in legend, (word, legend)
    bar = read(canvas.extent("bar 0"))
    assert "signal" in bar and "(a.u.)" in bar and "800" in bar, bar


def test_letters_sit_inside_the_view_on_a_dark_box(demo_manifest):
    layers, point, view = _demo_view(demo_manifest, view="coronal")
    canvas = render_figure(layers, view, point)
    image = canvas.areas["view"]
    fused = _fused(layers, point, view)
    pixels = canvas.pixels().astype(int)
    for letter in (t for t in canvas.texts if t.kind == "letter"):
        assert image.contains(letter.box)
        inset = min(letter.box.x0 - image.x0, image.x1 - letter.box.x1, letter.box.y0 - image.y0, image.y1 - letter.box.y1)
        assert 2 <= inset <= 6, f"{letter.text}: {inset:.1f} px from the image's edge"
        # the box behind the letter darkens the image to 40 % where no glyph is
        x, y = int(letter.box.x0) + 1, int(letter.box.y0) + 1
        under = fused.rgb[y - 50, x - 20].astype(int)
        assert np.all(np.abs(pixels[y, x] - np.rint(0.4 * under)) <= 1), (letter.text, pixels[y, x], under)


def test_colour_bar_ticks_are_round_and_written_as_matplotlib_wrote_them():
    assert _nice_ticks(140.0, 1350.0, 9) == [200.0, 400.0, 600.0, 800.0, 1000.0, 1200.0]
    assert _nice_ticks(0.0, 100.0, 9) == [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
    assert _axis_labels(_nice_ticks(3.75, 23.4, 9)) == ["5.0", "7.5", "10.0", "12.5", "15.0", "17.5", "20.0", "22.5"]
    assert _axis_labels(_nice_ticks(7.5e-5, 1.22e-4, 9)) == ["0.00008", "0.00009", "0.00010", "0.00011", "0.00012"]
    assert _axis_labels(_nice_ticks(-2.0, 2.0, 4)) == ["−2", "−1", "0", "1", "2"]
    assert _axis_labels(_nice_ticks(0.0, 3e6, 3)) == ["0e+00", "1e+06", "2e+06", "3e+06"]
    assert len(_nice_ticks(1.0, 1.3, 1)) >= 2  # a short range still gets two ticks
    assert _nice_ticks(5.0, 5.0, 9) == [5.0]


def test_font_is_matplotlibs_dejavu_found_without_importing_matplotlib():
    assert (font_folder() / "DejaVuSans.ttf").is_file() and (font_folder() / "DejaVuSans-Bold.ttf").is_file()
    child = ("import sys; from viewer.core.decorations import font_folder, font; font(12.0, 'italic'); "
             "print(font_folder()); print('matplotlib' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    folder, imported = result.stdout.split()
    assert Path(folder) == font_folder() and imported == "False"


def test_widths_are_matplotlibs_so_the_layouts_hold():
    """figure_text measures with Pillow now; the key images' layouts were chosen with
    matplotlib's widths: they agree with matplotlib's own text metrics (same font, same kerning)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    measure = TextToPath()
    for text in ("regions", "contralateral white matter", "¹⁹F signal (a.u.)", "ADC (10⁻⁶ mm²/s)", "days after transplantation",
                 "AVAWAY To", "office staff", "+12 more regions", "lesion 02.01.1950"):
        for size, bold in ((7.0, False), (7.5, True), (8.5, False)):
            properties = FontProperties(size=size, weight="bold" if bold else "normal")
            theirs = measure.get_text_width_height_descent(text, properties, ismath=False)[0] / 72.0
            ours = text_width_in(text, size, bold) / MEASURE_SLACK
            assert ours == pytest.approx(theirs, rel=0.012), (text, size, bold)


def test_canvas_draws_in_inches_and_points():
    canvas = Canvas(2.0, 1.0, 150, background="white")
    assert canvas.size == (300, 150) and canvas.get_size_inches() == (2.0, 1.0)
    drawn = canvas.text(0.1, 0.1, "top left\nsecond line", size_pt=10, va="top", kind="caption", group="g")
    assert drawn.box.x0 == pytest.approx(15, abs=1.5) and drawn.box.y0 == pytest.approx(15, abs=1.5)
    one_line = canvas.measure("top left", 10)
    assert drawn.box.height > 1.9 * one_line.height  # two lines, 1.2 line heights apart
    right = canvas.text(1.9, 0.9, "right", size_pt=8, ha="right", va="bottom", group="g")
    assert right.box.x1 == pytest.approx(285, abs=1.5) and right.box.y1 == pytest.approx(135, abs=1.5)
    assert canvas.extent("g").contains(drawn.box) and canvas.extent("g").contains(right.box)
    pixels = canvas.pixels()
    assert pixels[int(drawn.box.y0):int(drawn.box.y1), int(drawn.box.x0):int(drawn.box.x1)].min() < 60  # black ink
    assert (pixels[:10] == 255).all()  # the margin above stays white


def test_control_characters_in_a_name_stay_one_visible_line(demo_manifest):
    """A region named with a line break, an escape sequence and a bidirectional override (a
    hostile manifest) is one legend line in both pictures, the controls shown as "�": Raqm
    would refuse to lay some of them out, and an override would reverse the words after it."""
    from viewer.core.decorations import REPLACEMENT
    from viewer.core.render import render_key_images

    layers, point, view = _demo_view(demo_manifest)
    hostile = {"core": "core\n\x1b[31mred", "penumbra": "\u202epenumbra"}
    layers = [layer if layer.volume.role != "regions" else
              Layer(layer.volume, layer.display, layer.table.renamed(lambda n: hostile.get(n, n))) for layer in layers]
    for canvas in (render_figure(layers, view, point), render_key_images(layers, point)):
        legend = [t.text for t in canvas.texts if t.group == "legend"]
        assert any(t.endswith(f"core{REPLACEMENT}{REPLACEMENT}[31mred") for t in legend), legend
        assert any(t.endswith(f"{REPLACEMENT}penumbra") for t in legend), legend
        assert not any("\n" in t or "\x1b" in t or "\u202e" in t for t in legend)
        rows = [t.box for t in canvas.texts if t.group == "legend"]
        assert all(not a.overlaps(b) for i, a in enumerate(rows) for b in rows[i + 1:])


@pytest.mark.parametrize("height_px", [1, 31, 32, 33, 70])
def test_canvas_bytes_are_every_value_rounded_half_to_even_and_clipped(height_px):
    """Canvas.pixels converts a band of rows at a time; every band, the last partial one too,
    gives numpy's rounding (half to even) clipped to 0-255, including values outside it."""
    canvas = Canvas(0.37, height_px / 100.0, 100)
    rng = np.random.default_rng(height_px)
    values = rng.uniform(-20.0, 280.0, canvas._pixels.shape).astype(np.float32)
    values.flat[::7] = np.floor(values.flat[::7]) + 0.5  # exact halves
    canvas._pixels[...] = values
    expected = np.clip(np.rint(values.astype(np.float64)), 0, 255).astype(np.uint8)
    pixels = canvas.pixels()
    assert pixels.dtype == np.uint8 and pixels.shape == values.shape
    assert np.array_equal(pixels, expected)
