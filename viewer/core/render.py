"""Headless fused-slice rendering: the same fusion the window shows, written to PNG.

Two layers of work, kept apart so the window can reuse the first:

* :func:`fuse_plane` samples every layer on a display plane (from its own grid, through
  world space) and composites them into one RGB image with region outlines. The window shows
  exactly this image; ``viewer render`` and the PDF report use it too (FSLeyes' habit of one
  model driving both the window and the offscreen renderer).
* :func:`render_view` decorates a fused plane for a file — orientation letters, a scale bar,
  colour bars with units, a region legend and a title — on a :class:`~viewer.core.decorations.Canvas`
  (Pillow: no display, no Qt, no matplotlib, whose import alone was a quarter of ``viewer
  render``; DejaVu Sans, a font that has ¹⁹F, ³, µ and ≥). The report's key images
  (:func:`render_key_images`) are drawn the same way, with the same letters, scale bars and
  colour bars: one way of drawing decorations.

The report's key images take a ``text`` function that every word drawn into them passes
through (title, view names, colour-bar titles, region legend): a de-identified report scrubs
the words inside its pictures as it scrubs its text, and :func:`drawn_texts` lists them
afterwards so the report's final check can read them (pixels cannot be searched).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from viewer.core.decorations import Box, Canvas, DrawnText, printable
from viewer.core.display import (
    DisplayProps,
    apply_window,
    blend_into,
    colormap_lut,
    colormap_rgb_float,
    print_color,
    shown_mask,
)
from viewer.core.figure_text import (
    KEY_LEGEND_PT,
    SWATCH_GAP_IN,
    SWATCH_IN,
    LegendLayout,
    elide,
    legend_layout,
    text_width_in,
)
from viewer.core.io.atomic import atomic_path
from viewer.core.regions import LabelTable
from viewer.core.spaces import Plane, PlaneImage, display_plane, sample_plane
from viewer.core.volume import ROLE_QUANTITY, Volume

#: Longest side, in pixels, of the image area of a rendered view.
RENDER_IMAGE_PIXELS = 560
#: Opacity of a region's fill relative to its outline (the outline carries the region).
REGION_FILL_OPACITY = 0.18
#: Width (inches at 100 dpi) given to each colour bar and to the region legend.
BAR_SPACING_IN = 1.05
LEGEND_WIDTH_IN = 1.75



@dataclass
class Layer:
    """A volume with its display state (and, for a label map, its label table: the names and
    colours every view, legend and report draws, the one the user edits)."""

    volume: Volume
    display: DisplayProps
    table: LabelTable = field(default_factory=LabelTable)

    @property
    def region_names(self) -> dict[int, str]:
        return self.table.names

    @property
    def title(self) -> str:
        quantity = ROLE_QUANTITY[self.volume.role]
        return f"{quantity}\n({self.volume.units})" if self.volume.units else quantity


@dataclass
class FusedPlane:
    """The composited RGB image of a plane and the samples it was made from."""

    plane: Plane
    rgb: np.ndarray
    samples: dict[int, PlaneImage]


def refine_plane(plane: Plane, pixel_mm: float) -> Plane:
    """The same field of view with square pixels of ``pixel_mm`` (for crisp, undistorted output).

    Pixel centres are placed so the refined grid covers exactly the original pixels' extent.
    """
    rows_mm = plane.shape[0] * plane.row_step_mm
    cols_mm = plane.shape[1] * plane.col_step_mm
    rows = max(1, int(round(rows_mm / pixel_mm)))
    cols = max(1, int(round(cols_mm / pixel_mm)))
    row_dir = plane.pixel_to_world[:3, 0] / plane.row_step_mm
    col_dir = plane.pixel_to_world[:3, 1] / plane.col_step_mm
    new_row_step = row_dir * (rows_mm / rows)
    new_col_step = col_dir * (cols_mm / cols)
    corner = plane.pixel_to_world[:3, 3] - 0.5 * plane.pixel_to_world[:3, 0] - 0.5 * plane.pixel_to_world[:3, 1]
    matrix = plane.pixel_to_world.copy()
    matrix[:3, 0] = new_row_step
    matrix[:3, 1] = new_col_step
    matrix[:3, 3] = corner + 0.5 * new_row_step + 0.5 * new_col_step
    return Plane(matrix, (rows, cols), plane.orientation, plane.normal_axis, plane.slice_index)


def sample_layers(layers: Sequence[Layer], plane: Plane) -> dict[int, PlaneImage]:
    """Sample every visible layer on ``plane`` (nearest for label maps), keyed by layer index.

    Separate from compositing so a display change (window/level, opacity, colormap) can
    recomposite cached samples without sampling again.
    """
    samples: dict[int, PlaneImage] = {}
    for index, layer in enumerate(layers):
        if layer.display.visible:
            nearest = layer.volume.role == "regions"
            samples[index] = sample_plane(layer.volume, plane, "nearest" if nearest else "linear")
    return samples


def composite_layers(layers: Sequence[Layer], samples: dict[int, PlaneImage], shape: tuple[int, int]) -> np.ndarray:
    """Composite sampled layers, first to last: anatomy, overlays, region outlines (RGB uint8).

    The first layer is the opaque base (grey anatomy). Each overlay blends its colour with its
    opacity into the pixels it shows (inside its field of view, finite, within its visible
    range); other pixels are not touched. Label maps are drawn as outlines in their region
    colours over a faint fill, so the anatomy under a region stays readable.
    """
    rgb = _base_rgb(layers, samples, shape)
    for index, layer in enumerate(layers):
        sampled = samples.get(index)
        if sampled is None or not layer.display.visible or (index == 0 and layer.volume.role != "regions"):
            continue  # not shown, or the base
        if layer.volume.role == "regions":
            _draw_regions(rgb, sampled.values, layer)
            continue
        _blend_overlay(rgb, sampled, layer, colormap_rgb_float(layer.display.colormap))
    return _rounded_uint8(rgb)


def _base_rgb(layers: Sequence[Layer], samples: dict[int, PlaneImage], shape: tuple[int, int]) -> np.ndarray:
    """The first layer's colours (float32, black outside its field of view), or black when it is
    hidden or a label map: the scratch image the other layers blend into (no zeroed image that
    the base would replace at once)."""
    first, sampled = (layers[0], samples.get(0)) if layers else (None, None)
    if first is None or sampled is None or not first.display.visible or first.volume.role == "regions":
        return np.zeros((*shape, 3), dtype=np.float32)
    rgb = np.take(colormap_rgb_float(first.display.colormap), apply_window(sampled.values, first.display.levels), axis=0)
    if not sampled.inside.all():
        rgb[~sampled.inside] = 0
    return rgb


#: Share of a plane's pixels from which an overlay is blended over the whole image at once
#: rather than gathered and scattered pixel by pixel (a PET map covering 85 % of a 512×512
#: plane: 9 ms gathered, 2 ms whole; about even at a fifth); the same float32 arithmetic either way.
DENSE_BLEND_SHARE = 0.2


def _blend_overlay(rgb: np.ndarray, sampled: PlaneImage, layer: Layer, lut: np.ndarray) -> None:
    """Blend one overlay's colours with its opacity into the pixels it shows (float32 ``rgb``,
    in place): :func:`blend_into` on those pixels when they are few, otherwise the same
    ``current + (colour − current) · opacity`` over the whole plane with an opacity of 0
    where the layer does not show (``x + 0·d`` is ``x`` exactly: colours are finite)."""
    shown = shown_mask(sampled.values, sampled.inside, layer.display)
    count = np.count_nonzero(shown)
    opacity = layer.display.opacity
    if count == 0 or opacity <= 0:
        return
    if count < DENSE_BLEND_SHARE * shown.size:
        colors = np.take(lut, apply_window(sampled.values[shown], layer.display.levels), axis=0)
        blend_into(rgb, shown, colors, opacity)
        return
    step = np.take(lut, apply_window(sampled.values, layer.display.levels), axis=0)
    np.subtract(step, rgb, out=step)
    # opacity where shown, 0 elsewhere: a hidden pixel gains exactly ±0 (cheaper than a masked copy)
    np.multiply(step, np.where(shown, np.float32(opacity), np.float32(0.0))[..., None], out=step)
    np.add(rgb, step, out=rgb)


def _rounded_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float32 RGB rounded half up into 0–255 uint8 (``rgb`` is scratch: rounded in place,
    without the two full-size temporaries of ``np.clip(rgb + 0.5, 0, 255)``)."""
    np.add(rgb, np.float32(0.5), out=rgb)
    np.clip(rgb, 0, 255, out=rgb)
    return rgb.astype(np.uint8)


def fuse_plane(layers: Sequence[Layer], plane: Plane) -> FusedPlane:
    """Sample and composite every visible layer on ``plane`` (what a view shows)."""
    samples = sample_layers(layers, plane)
    return FusedPlane(plane, composite_layers(layers, samples, plane.shape), samples)


def labels_shown(fused: FusedPlane) -> set[int]:
    """The region labels visible in a fused plane (label maps are sampled as integers)."""
    shown: set[int] = set()
    for sampled in fused.samples.values():
        if sampled.values.dtype.kind in "iu":
            shown |= {int(v) for v in _distinct_sorted(sampled.values) if v != 0}
    return shown


def _draw_regions(rgb: np.ndarray, labels: np.ndarray, layer: Layer) -> None:
    """Faint fill plus a solid 1-pixel outline for every label, blended into ``rgb`` in place.

    A pixel is on the outline when a 4-neighbour has a different label (or lies outside).
    """
    present = labels > 0
    if not present.any():
        return
    edge = np.zeros(labels.shape, dtype=bool)
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[[0, -1], :] = True
    edge[:, [0, -1]] = True
    edge &= present
    fill = present & ~edge
    # a palette per label present in this slice (indexed by rank), not up to the largest
    # label value: a label of 2e9 must not allocate a 2e9-entry table
    values = _distinct_sorted(labels[present])
    palette = np.array([layer.table.color(int(v)) for v in values], dtype=np.float32)
    opacity = layer.display.opacity
    blend_into(rgb, fill, palette[np.searchsorted(values, labels[fill])], REGION_FILL_OPACITY * opacity)
    blend_into(rgb, edge, palette[np.searchsorted(values, labels[edge])], opacity)


def _distinct_sorted(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` for integer labels, without ``np.unique`` (its first call imports
    numpy.ma, ≈10 ms of a render): a count per value for 8- and 16-bit labels, a sort otherwise."""
    if values.dtype.kind in "ub" and values.dtype.itemsize <= 2:
        return np.flatnonzero(np.bincount(values.ravel())).astype(values.dtype)
    ordered = np.sort(values, axis=None)
    if ordered.size == 0:
        return ordered
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


# -- decorated output ----------------------------------------------------------------------------

#: Pixels per inch of ``viewer render``'s PNG (an image pixel is a PNG pixel).
RENDER_DPI = 100


@dataclass(frozen=True)
class _View:
    """A fused plane's box on a canvas (inches from the top left) and its grid: a plane pixel's
    centre is the centre of its share of the box."""

    canvas: Canvas
    plane: Plane
    left_in: float
    top_in: float
    width_in: float
    height_in: float
    group: str

    def draw(self, rgb: np.ndarray) -> Box:
        return self.canvas.image(rgb, self.left_in, self.top_in, self.width_in, self.height_in, group=self.group)

    def at(self, col: float, row: float) -> tuple[float, float]:
        """Canvas inches of a plane position (columns, rows; pixel centres at whole numbers)."""
        rows, cols = self.plane.shape
        return (self.left_in + (col + 0.5) / cols * self.width_in, self.top_in + (row + 0.5) / rows * self.height_in)

    def from_bottom_in(self, box: Box) -> Box:
        """A canvas box (pixels) in this view's inches, from its lower-left corner, y upwards
        (how the scale bar looks for room)."""
        dpi = self.canvas.dpi
        bottom_in = self.top_in + self.height_in
        return Box(box.x0 / dpi - self.left_in, bottom_in - box.y1 / dpi, box.x1 / dpi - self.left_in,
                   bottom_in - box.y0 / dpi)


def render_view(
    layers: Sequence[Layer],
    orientation: str,
    world_point: np.ndarray,
    output: str | Path,
    radiological: bool = True,
    title: str = "",
    image_pixels: int = RENDER_IMAGE_PIXELS,
) -> Path:
    """Render one orthogonal view through ``world_point`` to a PNG file (atomic write).

    The plane follows the first layer's (anatomical) grid; every other layer is sampled on
    it from its own grid. Returns the written path.
    """
    canvas = render_figure(layers, orientation, world_point, radiological, title, image_pixels)
    output = Path(output)
    with atomic_path(output, suffix=".png") as tmp:
        canvas.save_png(tmp)
    return output


def render_figure(
    layers: Sequence[Layer],
    orientation: str,
    world_point: np.ndarray,
    radiological: bool = True,
    title: str = "",
    image_pixels: int = RENDER_IMAGE_PIXELS,
) -> Canvas:
    """One decorated view on a black canvas at :data:`RENDER_DPI`: the fused plane (its longest
    side ``image_pixels``, one plane pixel a canvas pixel) 0.2 in from the left and 0.5 in from
    the top, its title above it, and one column to its right: the region legend on top, the
    overlays' colour bars side by side below it (PRODUCT.md §5: the screen space goes to the
    image). Groups on the canvas: "view" (the image, its letters and scale bar), "title",
    "legend", and "bar 0", "bar 1", … (each colour bar with its ticks and title)."""
    anatomy = layers[0].volume
    coarse = display_plane(anatomy, orientation, world_point, radiological)
    extent_mm = max(coarse.shape[0] * coarse.row_step_mm, coarse.shape[1] * coarse.col_step_mm)
    plane = refine_plane(coarse, extent_mm / image_pixels)
    fused = fuse_plane(layers, plane)
    colorbar_layers = [
        layer for i, layer in enumerate(layers)
        if i > 0 and layer.display.visible and layer.volume.role != "regions" and i in fused.samples
    ]
    region_layers = [layer for layer in layers if layer.volume.role == "regions" and layer.display.visible]

    dpi = RENDER_DPI
    rows, cols = plane.shape
    image_height_in = rows / dpi
    legend_rows = _legend_labels(region_layers[0], fused) if region_layers else []
    column_in = max(BAR_SPACING_IN * len(colorbar_layers), LEGEND_WIDTH_IN if region_layers else 0.0)
    width_in = cols / dpi + 0.4 + column_in
    height_in = image_height_in + 0.7
    canvas = Canvas(width_in, height_in, dpi, background="black")
    view = _View(canvas, plane, 0.2, height_in - 0.2 - image_height_in, cols / dpi, image_height_in, "view")
    view.draw(fused.rgb)
    _draw_scale_bar(view, letters=_draw_letters(view))
    position = np.asarray(world_point, dtype=float)
    heading = printable(title or anatomy.name)  # one line, whatever the study id holds
    slice_text = f"slice {coarse.slice_index + 1}/{anatomy.shape[coarse.normal_axis]}" if coarse.slice_index is not None else ""
    canvas.text(
        0.2, 0.12,
        f"{heading} · {orientation} · {slice_text} · ({position[0]:.1f}, {position[1]:.1f}, {position[2]:.1f}) mm"
        + ("" if radiological else " · neurological"),
        size_pt=9, color="white", va="top", ha="left", kind="title", group="title",
    )
    left_in = 0.2 + cols / dpi + 0.25
    legend_bottom_in = height_in - 0.5  # from the canvas's bottom
    if region_layers:
        legend_bottom_in = height_in - _draw_region_legend(canvas, region_layers[0], fused, legend_rows, left_in)
    bars_bottom_in = 0.2 + 0.05 * image_height_in
    bars_top_in = min(0.2 + 0.8 * image_height_in, legend_bottom_in - 0.45)  # room for the bar's title
    bar_height_in = max(bars_top_in - bars_bottom_in, 1.0)
    for n, layer in enumerate(colorbar_layers):
        _draw_colorbar(canvas, layer, (left_in, height_in - bars_bottom_in - bar_height_in, 0.22, bar_height_in),
                       horizontal=False, color="white", group=f"bar {n}")
        left_in += BAR_SPACING_IN
    return canvas


#: Orientation letters: their colour, and their inset from the image's edge (points, beyond the
#: dark box behind each letter): a letter never leaves its image, so neighbouring images' letters
#: cannot meet however narrow the gap between them.
LETTER_COLOR = "#ffd24d"
LETTER_INSET_PT = 2.5
LETTER_BOX_PAD = 0.18  # of the font size, around the glyph
LETTER_BOX_OPACITY = 0.6


def _draw_letters(view: _View, fontsize: float = 13) -> list[DrawnText]:
    """The four orientation letters inside the image's edges (bold, ``fontsize`` points), each on
    a dark box (readable on bright anatomy or overlays); returns them as drawn."""
    letters = view.plane.edge_letters()
    inset_in = (LETTER_INSET_PT + LETTER_BOX_PAD * fontsize) / 72
    middle_x, middle_y = view.left_in + view.width_in / 2, view.top_in + view.height_in / 2
    places = {  # edge: (x, y in inches, ha, va)
        "left": (view.left_in + inset_in, middle_y, "left", "center"),
        "right": (view.left_in + view.width_in - inset_in, middle_y, "right", "center"),
        "top": (middle_x, view.top_in + inset_in, "center", "top"),
        "bottom": (middle_x, view.top_in + view.height_in - inset_in, "center", "bottom"),
    }
    return [
        view.canvas.text(x, y, letters[edge], size_pt=fontsize, color=LETTER_COLOR, ha=ha, va=va, style="bold",
                         background=(LETTER_BOX_PAD * fontsize, "black", LETTER_BOX_OPACITY), kind="letter",
                         group=view.group)
        for edge, (x, y, ha, va) in places.items()
    ]


def _draw_scale_bar(view: _View, fontsize: float = 8, letters: Sequence[DrawnText] = ()) -> str:
    """A bar of a round length (10/20/50 mm) about a fifth of the image wide, at the lower left,
    its length written above it from its left end (never beyond the image's edge).

    ``letters`` are the orientation letters already drawn: in a view too small for the bar
    beside them, it moves right of the left letter or above the bottom one, the first place
    where it touches none. Returns "" when the bar and its length are drawn; in a view with no
    room for the length, what the view's caption must say instead ("bar 20 mm" when the
    bar alone fits, else the field of view in mm).
    """
    plane = view.plane
    rows, cols = plane.shape
    width_mm, height_mm = cols * plane.col_step_mm, rows * plane.row_step_mm
    length_mm = next((v for v in (100, 50, 20, 10, 5, 2, 1) if v <= width_mm / 5), 1)
    length_px = length_mm / plane.col_step_mm
    width_in, height_in = view.width_in, view.height_in
    label = f"{length_mm} mm"
    bar_in = length_px / cols * width_in

    taken = [view.from_bottom_in(letter.box).padded(0.03) for letter in letters]  # view inches, y up
    base_x, base_y = 0.06, 0.04 + 0.04 * height_in
    beside = sorted({base_x, *(box.x1 + 0.02 for box in taken)})
    above = sorted({base_y, *(box.y1 + 0.02 for box in taken)})

    def place(box_w_in: float, box_h_in: float) -> tuple[float, float] | None:
        for y in above:
            for x in beside:
                box = Box(x, y, x + box_w_in, y + box_h_in)
                if box.x1 <= width_in - 0.02 and box.y1 <= height_in - 0.02 and not any(box.overlaps(t) for t in taken):
                    return x, y
        return None

    labelled = place(max(bar_in, text_width_in(label, fontsize)), 0.03 + 1.2 * fontsize / 72)
    spot = labelled or place(bar_in, 0.03)
    if spot is None:
        return f"{width_mm:.0f} × {height_mm:.0f} mm"
    x0, y0 = spot[0] / width_in * cols, rows * (1 - spot[1] / height_in)  # plane pixels
    canvas = view.canvas
    (start_x, bar_y), (end_x, _) = view.at(x0, y0), view.at(x0 + length_px, y0)
    canvas.segment(canvas.px(start_x), canvas.px(bar_y), canvas.px(end_x), canvas.px(bar_y), "white", 2.5,
                   group=view.group)
    if labelled is None:
        return f"bar {label}"
    label_x, label_y = view.at(x0, y0 - (0.03 / height_in) * rows)
    canvas.text(label_x, label_y, label, size_pt=fontsize, color="white", ha="left", va="bottom", kind="scale",
                group=view.group)
    return ""


#: Most regions the legend of a rendered view lists by name; the others are counted.
LEGEND_MAX_ROWS = 12
#: Font size (points) of the rendered view's region legend, and its row pitch (inches).
VIEW_LEGEND_PT, VIEW_LEGEND_ROW_IN = 8.0, 0.2


def _fit_inside(canvas: Canvas, left_in: float, prefix: str, name: str, size_pt: float) -> str:
    """A legend entry's name shortened to "start…end" (:func:`elide`) until the entry ends inside
    the canvas (the report's tables print the whole name; a legend must not run off the PNG)."""
    limit = canvas.size[0] - 2
    start = canvas.px(left_in)
    return elide(name, lambda shown: start + canvas.measure(prefix + shown, size_pt).x1 <= limit)


def _legend_labels(layer: Layer, fused: FusedPlane) -> list[int]:
    """The labels a view's legend lists: those in the view first, then the table's others."""
    present = labels_shown(fused)
    return sorted(present) + sorted(set(layer.region_names) - present)


def _draw_region_legend(canvas: Canvas, layer: Layer, fused: FusedPlane, labels: list[int], left_in: float) -> float:
    """Region names in their colours (a filled square: in this view), from 0.5 in below the
    canvas's top; returns the legend's bottom (inches from the top)."""
    present = labels_shown(fused)
    y_in = 0.5
    canvas.text(left_in, y_in, "regions", size_pt=VIEW_LEGEND_PT, color="white", style="bold", va="top",
                kind="legend", group="legend")
    shown = labels[:LEGEND_MAX_ROWS]
    for label in sorted(shown):
        y_in += VIEW_LEGEND_ROW_IN
        name = printable(layer.region_names.get(label, f"label {label}"))  # one line per region
        marker = "■" if label in present else "□"
        fitted = _fit_inside(canvas, left_in, f"{marker} ", name, VIEW_LEGEND_PT)
        canvas.text(left_in, y_in, f"{marker} {fitted}", size_pt=VIEW_LEGEND_PT, color=layer.table.color(label),
                    va="top", kind="legend", group="legend")
    if len(labels) > len(shown):
        y_in += VIEW_LEGEND_ROW_IN
        canvas.text(left_in, y_in, f"+ {len(labels) - len(shown)} more", size_pt=VIEW_LEGEND_PT, color="white",
                    va="top", kind="legend", group="legend")
    return y_in + VIEW_LEGEND_ROW_IN


# -- key images: three orthogonal views in one figure (reports) ----------------------------------

#: The three orthogonal views, in the order a radiologist reads them.
ORTHO_VIEWS: tuple[str, ...] = ("axial", "coronal", "sagittal")
#: Space between neighbouring views (inches, ≈ 3.6 mm), their orientation letters (points).
KEY_GAP_IN = 0.14
KEY_LETTER_PT = 10.0
KEY_SCALE_PT = 6.5
#: Height of one row of the key images' region legend (inches).
KEY_LEGEND_ROW_IN = 0.17
#: Colour bars below the views: title and tick fonts (points), most bars on a row.
BAR_TITLE_PT, BAR_TICK_PT, MOST_BARS_PER_ROW = 6.5, 6.0, 7


def _same(text: str) -> str:
    return text


def _bar_ticks(layer: Layer) -> tuple[str, str]:
    low, high = layer.display.levels
    return _tick(low, high - low), _tick(high, high - low)


def _bars_per_row(titles: Sequence[str], ticks: Sequence[tuple[str, str]], width_in: float) -> int:
    """As many bars on a row as their titles and end labels fit side by side (5 to 7 as a rule)."""
    if not titles:
        return 1
    need = max(
        max(text_width_in(title, BAR_TITLE_PT) + 0.1,
            text_width_in(low, BAR_TICK_PT) + text_width_in(high, BAR_TICK_PT) + 0.05 + 0.22)
        for title, (low, high) in zip(titles, ticks)
    )
    per_row = max(5, min(MOST_BARS_PER_ROW, len(titles)))
    while per_row > 1 and width_in / per_row < need:
        per_row -= 1
    return per_row


def render_key_images(
    layers: Sequence[Layer],
    world_point: np.ndarray,
    radiological: bool = True,
    title: str = "",
    width_in: float = 7.0,
    dpi: int = 150,
    text: Callable[[str], str] = _same,
) -> Canvas:
    """The three orthogonal views through ``world_point`` side by side, for a printed page.

    Same fusion as the window and ``viewer render`` (:func:`fuse_plane`), on a white page:
    the views share one height and keep their physical aspect ratio (mm), each with
    orientation letters (inside the view, on a dark box), a scale bar and its slice number;
    below them one horizontal colour bar with units per visible overlay, then the region legend
    (as many rows as the regions need, up to :data:`KEY_LEGEND_MAX_ROWS`). ``width_in`` is the
    printed width (inches) and ``dpi`` the image resolution, so a view's pixels are
    ``width_in·dpi`` wide in total. ``text`` maps every word drawn (title, view and slice names,
    colour-bar titles, region names) to what is shown: the report passes its de-identifying
    scrubber. The layout is measured before drawing: no text leaves the figure or touches
    another. Returns the drawn canvas: groups "view axial", "view coronal", "view sagittal"
    (each image with its letters and scale bar), "bar 0", "bar 1", … (each colour bar with its
    ticks and title), "title", "captions" and "legend".
    """
    anatomy = layers[0].volume
    point = np.asarray(world_point, dtype=float)
    coarse = {view: display_plane(anatomy, view, point, radiological) for view in ORTHO_VIEWS}
    aspects = {
        view: (plane.shape[1] * plane.col_step_mm) / (plane.shape[0] * plane.row_step_mm) for view, plane in coarse.items()
    }
    gap_in = KEY_GAP_IN
    image_h_in = (width_in - gap_in * (len(ORTHO_VIEWS) - 1)) / sum(aspects.values())
    colorbar_layers = [
        layer for i, layer in enumerate(layers) if i > 0 and layer.display.visible and layer.volume.role != "regions"
    ]
    region_layers = [layer for layer in layers if layer.volume.role == "regions" and layer.display.visible]

    # fuse first: the legend lists the regions the views show
    planes, fused_views, present = {}, {}, set()
    for view in ORTHO_VIEWS:
        plane = refine_plane(coarse[view], coarse[view].shape[0] * coarse[view].row_step_mm / max(1, round(image_h_in * dpi)))
        planes[view], fused_views[view] = plane, fuse_plane(layers, plane)
        present |= labels_shown(fused_views[view])

    # words and their places, measured
    title_text = elide(printable(text(title)), lambda s: text_width_in(s, 8.5) <= width_in - 0.02)
    bar_titles = [elide(text(layer.title.replace("\n", " ")), lambda s: text_width_in(s, BAR_TITLE_PT) <= width_in - 0.2)
                  for layer in colorbar_layers]
    bars_per_row = _bars_per_row(bar_titles, [_bar_ticks(layer) for layer in colorbar_layers], width_in)
    bar_rows = -(-len(colorbar_layers) // bars_per_row)
    legend = None
    legend_h_in = 0.0
    if region_layers:
        layer = region_layers[0]
        indent_in = text_width_in(text("regions:"), KEY_LEGEND_PT, bold=True) + 0.1
        names = {label: printable(text(layer.region_names.get(label, f"label {label}")))  # one line per region
                 for label in set(layer.region_names) | present}
        legend = legend_layout(names, present, width_in - indent_in - 0.03)
        legend_h_in = KEY_LEGEND_ROW_IN * len(legend.rows) + 0.07

    def captions(extra: dict[str, str]) -> tuple[dict[str, str], int]:
        """Each view's caption (name, slice, and what its scale bar could not show) on one line,
        or one part a line under a narrow view (each shortened only if it must be)."""
        shown, lines = {}, 1
        for view in ORTHO_VIEWS:
            index = coarse[view].slice_index
            depth = anatomy.shape[coarse[view].normal_axis]
            room = aspects[view] * image_h_in + gap_in - 0.06
            words = [text(view)] + ([text(f"slice {index + 1}/{depth}")] if index is not None else [])
            words += [extra[view]] if extra.get(view) else []
            one_line = " · ".join(words)
            if text_width_in(one_line, 7) <= room:
                shown[view] = one_line
            else:
                shown[view] = "\n".join(elide(w, lambda s, room=room: text_width_in(s, 7) <= room) for w in words)
                lines = max(lines, len(words))
        return shown, lines

    def draw(extra: dict[str, str]) -> tuple[Canvas, dict[str, str]]:
        view_captions, caption_lines = captions(extra)
        title_h_in, label_h_in, bar_h_in = 0.22, 0.06 + 0.12 * caption_lines, 0.62
        height_in = title_h_in + image_h_in + label_h_in + bar_rows * bar_h_in + legend_h_in
        canvas = Canvas(width_in, height_in, dpi, background="white")
        canvas.text(0.0, 0.0, title_text, size_pt=8.5, va="top", ha="left", color="black", kind="title", group="title")
        left_in = 0.0
        missing = {}
        for view in ORTHO_VIEWS:
            plane_in = aspects[view] * image_h_in
            placed = _View(canvas, planes[view], left_in, title_h_in, plane_in, image_h_in, f"view {view}")
            placed.draw(fused_views[view].rgb)
            # letters shrink in a small view (a fifth of its shorter side at most)
            letter_pt = float(np.clip(72 * min(plane_in, image_h_in) / 5, 6.0, KEY_LETTER_PT))
            letters = _draw_letters(placed, fontsize=letter_pt)
            missing[view] = _draw_scale_bar(placed, fontsize=min(KEY_SCALE_PT, letter_pt), letters=letters)
            canvas.text(left_in + plane_in / 2, title_h_in + image_h_in + 0.03, view_captions[view], size_pt=7,
                        ha="center", va="top", color="black", linespacing=1.15, kind="caption", group="captions")
            left_in += plane_in + gap_in
        top_in = title_h_in + image_h_in + label_h_in
        bar_w_in = width_in / bars_per_row
        for n, (layer, bar_title) in enumerate(zip(colorbar_layers, bar_titles)):
            row, column = divmod(n, bars_per_row)
            box = (column * bar_w_in + 0.05, top_in + row * bar_h_in + 0.31, bar_w_in - 0.22, 0.11)
            _draw_colorbar(canvas, layer, box, horizontal=True, color="black", group=f"bar {n}", text=text,
                           title=bar_title)
        if legend is not None:
            _draw_key_legend(canvas, region_layers[0], present, legend, legend_h_in, text)
        return canvas, missing

    canvas, missing = draw({})
    if any(missing.values()):  # a view too small for its scale bar's length: its caption says it
        canvas, _ = draw(missing)
    return canvas


def _draw_key_legend(canvas: Canvas, layer: Layer, present: set[int], legend: LegendLayout, legend_h_in: float,
                     text: Callable[[str], str]) -> None:
    """Region names after a swatch in the region's colour: filled when the region is in one of
    the views, hollow otherwise. Swatch edges are darkened so white regions show."""
    heading = text("regions:")
    indent_in = text_width_in(heading, KEY_LEGEND_PT, bold=True) + 0.1
    top_in = canvas.height_in - legend_h_in

    def y_of(row: int) -> float:
        return top_in + 0.035 + KEY_LEGEND_ROW_IN * (row + 0.5)

    canvas.text(0.0, y_of(0), heading, size_pt=KEY_LEGEND_PT, va="center", ha="left", color="black", style="bold",
                kind="legend", group="legend")
    for row, entries in enumerate(legend.rows):
        y = y_of(row)
        for entry in entries:
            x_in = indent_in + entry.x_in
            rgb = layer.table.color(entry.label)
            swatch = Box(canvas.px(x_in), canvas.px(y - SWATCH_IN / 2), canvas.px(x_in + SWATCH_IN), canvas.px(y + SWATCH_IN / 2))
            canvas.rect(swatch, fill=rgb if entry.label in present else None, outline=_rgb255(print_color(rgb)),
                        line_pt=0.8, group="legend")
            canvas.text(x_in + SWATCH_IN + SWATCH_GAP_IN, y, entry.name, size_pt=KEY_LEGEND_PT, va="center", ha="left",
                        color="black", kind="legend", group="legend")
    if legend.more:
        canvas.text(indent_in + legend.more_x_in, y_of(len(legend.rows) - 1), legend.more, size_pt=KEY_LEGEND_PT,
                    va="center", ha="left", color="#444444", style="italic", kind="legend", group="legend")


def _rgb255(color: tuple[float, float, float]) -> tuple[int, int, int]:
    """A 0–1 colour (:func:`print_color`) as 0–255 integers."""
    return tuple(int(round(255 * float(v))) for v in color[:3])


def figure_pixels(figure: Canvas) -> np.ndarray:
    """A drawn canvas (the key images) as RGB pixels (rows, cols, 3) uint8.

    Reports embed the pixels directly: encoding a PNG only for the PDF writer to decode it
    again cost about 0.2 s per figure.
    """
    return figure.pixels()


def drawn_texts(figure: Canvas) -> tuple[str, ...]:
    """Every non-empty string a drawn canvas shows (what a reader sees in the pixels, for the
    report's leak check)."""
    return tuple(drawn.text for drawn in figure.texts if drawn.text.strip())


#: Colour bars, as matplotlib drew them before (points): spine width, tick length, width and
#: gap to its label, for the tall bar of a rendered view and the short one of the key images.
VERTICAL_BAR = {"spine": 0.8, "tick": 3.5, "tick_width": 0.8, "pad": 3.5, "labels": 7.0, "title": 7.5, "title_pad": 4.0}
HORIZONTAL_BAR = {"spine": 0.5, "tick": 2.0, "tick_width": 0.8, "pad": 1.0, "labels": BAR_TICK_PT,
                  "title": BAR_TITLE_PT, "title_pad": 2.0}


def _draw_colorbar(canvas: Canvas, layer: Layer, box_in: tuple[float, float, float, float], horizontal: bool,
                   color: str, group: str, text: Callable[[str], str] = _same, title: str | None = None) -> None:
    """Draw ``layer``'s colour bar in ``box_in`` (left, top, width, height; inches): its LUT
    across its levels, outlined, titled above its left end with quantity and units (or with
    ``title``: the key images pass it measured and, if it must be, shortened), a dashed mark at
    the display threshold. A tall bar (a rendered view's) has round-valued ticks on its right; a
    short horizontal one (the key images') has its two ends labelled, the labels inside its width."""
    style = HORIZONTAL_BAR if horizontal else VERTICAL_BAR
    lut = colormap_lut(layer.display.colormap)[:, :3]
    low, high = layer.display.levels
    span = high - low
    left, top, width, height = box_in
    ramp = canvas.image(lut[None, :, :] if horizontal else lut[::-1, None, :], left, top, width, height, group=group,
                        smooth=True)
    canvas.rect(ramp, outline=color, line_pt=style["spine"], group=group)
    tick_px = canvas.pt(style["tick"])
    label_gap_in = (style["tick"] + style["pad"]) / 72
    if horizontal:
        for value, label, ha in ((low, _tick(low, span), "left"), (high, _tick(high, span), "right")):
            x = ramp.x0 if value == low else ramp.x1
            canvas.segment(x, ramp.y1, x, ramp.y1 + tick_px, color, style["tick_width"], group=group)
            canvas.text(x / canvas.dpi, ramp.y1 / canvas.dpi + label_gap_in, label, size_pt=style["labels"], color=color,
                        ha=ha, va="top", kind="tick", group=group)
        heading = text(layer.title.replace("\n", " ")) if title is None else title
    else:
        length_pt = height * 72
        values = _nice_ticks(low, high, int(np.clip(length_pt // (2 * style["labels"]), 1, 9)))
        for value, label in zip(values, _axis_labels(values)):
            y = ramp.y1 - (value - low) / span * ramp.height if span > 0 else ramp.y1
            # on the bar's right: on its left the labels of the first bar reached into the image's
            # margin and touched its right orientation letter ("L1000")
            canvas.segment(ramp.x1, y, ramp.x1 + tick_px, y, color, style["tick_width"], group=group)
            canvas.text(ramp.x1 / canvas.dpi + label_gap_in, y / canvas.dpi, label, size_pt=style["labels"],
                        color=color, ha="left", va="center_baseline", kind="tick", group=group)
        heading = text(layer.title)
    canvas.text(left, top - style["title_pad"] / 72, heading, size_pt=style["title"], color=color, ha="left",
                va="baseline", kind="bar title", group=group)
    visible_low = layer.display.visible_range[0]
    if np.isfinite(visible_low) and low < visible_low < high:
        if horizontal:
            x = ramp.x0 + (visible_low - low) / span * ramp.width
            canvas.segment(x, ramp.y0, x, ramp.y1, "black", 0.8, dashed=True, group=group)
        else:
            y = ramp.y1 - (visible_low - low) / span * ramp.height
            canvas.segment(ramp.x0, y, ramp.x1, y, "white", 1.0, dashed=True, group=group)


def _nice_ticks(low: float, high: float, bins: int) -> list[float]:
    """Round tick values inside [low, high]: multiples of the smallest step of 1, 2, 2.5 or 5
    times a power of ten that cuts the range into at most ``bins`` parts (matplotlib's default
    axis ticks), at least two of them where a smaller step allows."""
    if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        return [float(low)] if np.isfinite(low) else []
    raw = (high - low) / max(1, bins)
    scale = 10.0 ** np.floor(np.log10(raw))
    steps = [m * scale for m in (0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0)]
    first = next(i for i, step in enumerate(steps) if step >= raw * (1 - 1e-9))
    ticks: list[float] = []
    for step in reversed(steps[:first + 1]):
        tolerance = step * 1e-9
        start, stop = np.ceil((low - tolerance) / step), np.floor((high + tolerance) / step)
        ticks = [float(k * step) for k in np.arange(start, stop + 1)]
        if len(ticks) >= 2:
            break
    return ticks


def _axis_labels(values: Sequence[float]) -> list[str]:
    """Tick labels as matplotlib's default axis formatter writes them: as many decimals as the
    step between ticks needs, one for all; "−" for minus; mantissa and exponent ("1.5e+06") when
    the largest tick is 10⁶ or more or below 10⁻⁴."""
    if not values:
        return []
    step = abs(values[1] - values[0]) if len(values) > 1 else abs(values[0]) or 1.0
    largest = max(abs(v) for v in values)
    scientific = largest >= 1e6 or 0 < largest < 1e-4
    exponent = int(np.floor(np.log10(largest))) if scientific else 0
    unit = step / 10.0 ** exponent
    decimals = next((d for d in range(0, 12) if abs(unit * 10 ** d - round(unit * 10 ** d)) < 1e-6 * unit * 10 ** d), 12)
    labels = []
    for value in values:
        label = f"{value:.{decimals}e}" if scientific else f"{value:.{decimals}f}"
        if float(label) == 0:
            label = label.lstrip("-")  # no "−0.0" from a tick that is zero but for rounding
        labels.append(label.replace("-", "−"))
    return labels


def _tick(value: float, span: float) -> str:
    """A colour-bar tick label with as many decimals as the bar's span needs (3 significant)."""
    decimals = max(0, 2 - int(np.floor(np.log10(span)))) if span > 0 else 2
    text = f"{value:,.{decimals}f}"
    return "0" if float(value) != 0 and abs(value) < 0.5 * 10.0 ** -decimals else text
