"""Headless fused-slice rendering: the same fusion the window shows, written to PNG.

Two layers of work, kept apart so the window can reuse the first:

* :func:`fuse_plane` samples every layer on a display plane (from its own grid, through
  world space) and composites them into one RGB image with region outlines. The window shows
  exactly this image; ``viewer render`` and the PDF report use it too (FSLeyes' habit of one
  model driving both the window and the offscreen renderer).
* :func:`render_view` decorates a fused plane for a file — orientation letters, a scale bar,
  colour bars with units, a region legend and a title — with matplotlib's Agg canvas (no
  display, no Qt, and a font that has ¹⁹F, ³, µ and ≥).

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
    rgb = np.zeros((*shape, 3), dtype=np.float32)
    for index, layer in enumerate(layers):
        sampled = samples.get(index)
        if sampled is None or not layer.display.visible:
            continue
        if layer.volume.role == "regions":
            _draw_regions(rgb, sampled.values, layer)
            continue
        lut = colormap_rgb_float(layer.display.colormap)
        if index == 0:
            rgb = np.take(lut, apply_window(sampled.values, layer.display.levels), axis=0)
            if not sampled.inside.all():
                rgb[~sampled.inside] = 0
            continue
        shown = shown_mask(sampled.values, sampled.inside, layer.display)
        if shown.any():
            colors = np.take(lut, apply_window(sampled.values[shown], layer.display.levels), axis=0)
            blend_into(rgb, shown, colors, layer.display.opacity)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def fuse_plane(layers: Sequence[Layer], plane: Plane) -> FusedPlane:
    """Sample and composite every visible layer on ``plane`` (what a view shows)."""
    samples = sample_layers(layers, plane)
    return FusedPlane(plane, composite_layers(layers, samples, plane.shape), samples)


def labels_shown(fused: FusedPlane) -> set[int]:
    """The region labels visible in a fused plane (label maps are sampled as integers)."""
    shown: set[int] = set()
    for sampled in fused.samples.values():
        if sampled.values.dtype.kind in "iu":
            shown |= {int(v) for v in np.unique(sampled.values) if v != 0}
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
    values = np.unique(labels[present])
    palette = np.array([layer.table.color(int(v)) for v in values], dtype=np.float32)
    opacity = layer.display.opacity
    blend_into(rgb, fill, palette[np.searchsorted(values, labels[fill])], REGION_FILL_OPACITY * opacity)
    blend_into(rgb, edge, palette[np.searchsorted(values, labels[edge])], opacity)


# -- decorated output ----------------------------------------------------------------------------

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
    figure = render_figure(layers, orientation, world_point, radiological, title, image_pixels)
    output = Path(output)
    with atomic_path(output, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=100, facecolor=figure.get_facecolor())
    return output


def render_figure(
    layers: Sequence[Layer],
    orientation: str,
    world_point: np.ndarray,
    radiological: bool = True,
    title: str = "",
    image_pixels: int = RENDER_IMAGE_PIXELS,
):
    """A matplotlib Figure (Agg, no pyplot state) of one decorated view."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

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

    dpi = 100
    rows, cols = plane.shape
    image_height_in = rows / dpi
    legend_rows = _legend_labels(region_layers[0], fused) if region_layers else []
    # one column beside the image: the region legend on top, the colour bars side by side
    # below it (PRODUCT.md §5: the screen space goes to the image)
    column_in = max(BAR_SPACING_IN * len(colorbar_layers), LEGEND_WIDTH_IN if region_layers else 0.0)
    width_in = cols / dpi + 0.4 + column_in
    height_in = image_height_in + 0.7
    figure = Figure(figsize=(width_in, height_in), dpi=dpi, facecolor="black")
    FigureCanvasAgg(figure)
    image_ax = figure.add_axes((0.2 / width_in, 0.2 / height_in, cols / dpi / width_in, image_height_in / height_in))
    image_ax.imshow(fused.rgb, interpolation="nearest", origin="upper")
    image_ax.set_axis_off()
    _draw_scale_bar(image_ax, plane, letters=_draw_letters(image_ax, plane))
    position = np.asarray(world_point, dtype=float)
    heading = title or anatomy.name
    slice_text = f"slice {coarse.slice_index + 1}/{anatomy.shape[coarse.normal_axis]}" if coarse.slice_index is not None else ""
    figure.text(
        0.2 / width_in, 1 - 0.12 / height_in,
        f"{heading} · {orientation} · {slice_text} · ({position[0]:.1f}, {position[1]:.1f}, {position[2]:.1f}) mm"
        + ("" if radiological else " · neurological"),
        color="white", fontsize=9, va="top", ha="left",
    )
    left = (0.2 + cols / dpi + 0.25) / width_in
    legend_bottom_in = height_in - 0.5
    if region_layers:
        legend_bottom_in = _draw_region_legend(figure, region_layers[0], fused, legend_rows, left, height_in)
    bars_bottom_in = 0.2 + 0.05 * image_height_in
    bars_top_in = min(0.2 + 0.8 * image_height_in, legend_bottom_in - 0.45)  # room for the bar's title
    bar_height_in = max(bars_top_in - bars_bottom_in, 1.0)
    for layer in colorbar_layers:
        _draw_colorbar(figure, layer, left, width_in, height_in, bars_bottom_in, bar_height_in)
        left += BAR_SPACING_IN / width_in
    return figure


#: Orientation letters: their colour, and their inset from the image's edge (points, beyond the
#: dark box behind each letter): a letter never leaves its image, so neighbouring images' letters
#: cannot meet however narrow the gap between them.
LETTER_COLOR = "#ffd24d"
LETTER_INSET_PT = 2.5
LETTER_BOX_PAD = 0.18  # of the font size, around the glyph


def _draw_letters(ax, plane: Plane, fontsize: float = 13) -> list:
    """The four orientation letters inside the image's edges, each on a dark box (readable on
    bright anatomy or overlays); returns the Text artists."""
    letters = plane.edge_letters()
    inset = LETTER_INSET_PT + LETTER_BOX_PAD * fontsize
    box = {"boxstyle": f"square,pad={LETTER_BOX_PAD}", "facecolor": "black", "alpha": 0.6, "edgecolor": "none"}
    places = {  # edge: (anchor in axes fraction, offset in points, ha, va)
        "left": ((0.0, 0.5), (inset, 0), "left", "center"),
        "right": ((1.0, 0.5), (-inset, 0), "right", "center"),
        "top": ((0.5, 1.0), (0, -inset), "center", "top"),
        "bottom": ((0.5, 0.0), (0, inset), "center", "bottom"),
    }
    drawn = []
    for edge, (anchor, offset, ha, va) in places.items():
        drawn.append(ax.annotate(
            letters[edge], xy=anchor, xycoords="axes fraction", xytext=offset, textcoords="offset points",
            ha=ha, va=va, color=LETTER_COLOR, fontsize=fontsize, fontweight="bold", bbox=box, annotation_clip=False,
        ))
    return drawn


def text_extent(text, renderer):
    """A drawn text's box in display pixels, with the box behind it if it has one."""
    from matplotlib.transforms import Bbox

    box = text.get_window_extent(renderer)
    patch = text.get_bbox_patch()
    if patch is None:
        return box
    text.update_bbox_position_size(renderer)
    return Bbox.union([box, patch.get_window_extent(renderer)])


def _axes_size_in(ax) -> tuple[float, float]:
    position = ax.get_position()
    return position.width * ax.figure.get_figwidth(), position.height * ax.figure.get_figheight()


def _draw_scale_bar(ax, plane: Plane, fontsize: float = 8, letters: Sequence = ()) -> str:
    """A bar of a round length (10/20/50 mm) about a fifth of the image wide, at the lower left,
    its length written above it from its left end (never beyond the image's edge).

    ``letters`` are the orientation letters already drawn: in a view too small for the bar
    beside them, it moves right of the left letter or above the bottom one, the first place
    where it touches none. Returns "" when the bar and its length are drawn; in a view with no
    room for the length, what the view's caption must say instead ("bar 20 mm" when the
    bar alone fits, else the field of view in mm).
    """
    from matplotlib.transforms import Bbox

    rows, cols = plane.shape
    width_mm, height_mm = cols * plane.col_step_mm, rows * plane.row_step_mm
    length_mm = next((v for v in (100, 50, 20, 10, 5, 2, 1) if v <= width_mm / 5), 1)
    length_px = length_mm / plane.col_step_mm
    width_in, height_in = _axes_size_in(ax)
    label = f"{length_mm} mm"
    bar_in = length_px / cols * width_in

    dpi = ax.figure.dpi
    renderer = ax.figure.canvas.get_renderer()
    origin = ax.get_window_extent(renderer)
    taken = []  # letter boxes in axes inches, with a margin
    for letter in letters:
        box = text_extent(letter, renderer)
        taken.append(Bbox.from_extents((box.x0 - origin.x0) / dpi - 0.03, (box.y0 - origin.y0) / dpi - 0.03,
                                       (box.x1 - origin.x0) / dpi + 0.03, (box.y1 - origin.y0) / dpi + 0.03))
    base_x, base_y = 0.06, 0.04 + 0.04 * height_in
    beside = sorted({base_x, *(box.x1 + 0.02 for box in taken)})
    above = sorted({base_y, *(box.y1 + 0.02 for box in taken)})

    def place(box_w_in: float, box_h_in: float) -> tuple[float, float] | None:
        for y in above:
            for x in beside:
                box = Bbox.from_extents(x, y, x + box_w_in, y + box_h_in)
                if box.x1 <= width_in - 0.02 and box.y1 <= height_in - 0.02 and not any(box.overlaps(t) for t in taken):
                    return x, y
        return None

    labelled = place(max(bar_in, text_width_in(label, fontsize)), 0.03 + 1.2 * fontsize / 72)
    spot = labelled or place(bar_in, 0.03)
    if spot is None:
        return f"{width_mm:.0f} × {height_mm:.0f} mm"
    x0, y0 = spot[0] / width_in * cols, rows * (1 - spot[1] / height_in)
    ax.plot([x0, x0 + length_px], [y0, y0], color="white", linewidth=2.5, solid_capstyle="butt")
    if labelled is None:
        return f"bar {label}"
    ax.text(x0, y0 - (0.03 / height_in) * rows, label, color="white", fontsize=fontsize, ha="left", va="bottom")
    return ""


def _draw_colorbar(figure, layer: Layer, left: float, width_in: float, height_in: float, bottom_in: float,
                   bar_height_in: float) -> None:
    ax = figure.add_axes((left, bottom_in / height_in, 0.22 / width_in, bar_height_in / height_in))
    _colorbar_into(ax, layer, horizontal=False, color="white")


#: Most regions the legend of a rendered view lists by name; the others are counted.
LEGEND_MAX_ROWS = 12


def _fit_inside(figure, text, prefix: str, name: str) -> None:
    """Shorten a legend entry to "start…end" (:func:`elide`) until it ends inside the figure
    (the report's tables print the whole name; a legend must not run off the PNG)."""
    renderer = figure.canvas.get_renderer()
    limit = figure.bbox.width - 2

    def fits(shown: str) -> bool:
        text.set_text(prefix + shown)
        return text.get_window_extent(renderer).x1 <= limit

    text.set_text(prefix + elide(name, fits))


def _legend_labels(layer: Layer, fused: FusedPlane) -> list[int]:
    """The labels a view's legend lists: those in the view first, then the table's others."""
    present = labels_shown(fused)
    return sorted(present) + sorted(set(layer.region_names) - present)


def _draw_region_legend(figure, layer: Layer, fused: FusedPlane, labels: list[int], left: float,
                        height_in: float) -> float:
    """Region names in their colours (filled: in this view); returns the legend's bottom (in)."""
    present = labels_shown(fused)
    y_in = height_in - 0.5
    figure.text(left, y_in / height_in, "regions", color="white", fontsize=8, fontweight="bold", va="top")
    shown = labels[:LEGEND_MAX_ROWS]
    for label in sorted(shown):
        y_in -= 0.2
        name = layer.region_names.get(label, f"label {label}")
        color = np.array(layer.table.color(label)) / 255.0
        marker = "■" if label in present else "□"
        text = figure.text(left, y_in / height_in, f"{marker} {name}", color=color, fontsize=8, va="top")
        _fit_inside(figure, text, f"{marker} ", name)
    if len(labels) > len(shown):
        y_in -= 0.2
        figure.text(left, y_in / height_in, f"+ {len(labels) - len(shown)} more", color="white", fontsize=8, va="top")
    return y_in - 0.2


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
):
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
    another. Returns a matplotlib Figure (Agg canvas, no pyplot state).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

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
    title_text = elide(text(title), lambda s: text_width_in(s, 8.5) <= width_in - 0.02)
    bar_titles = [elide(text(layer.title.replace("\n", " ")), lambda s: text_width_in(s, BAR_TITLE_PT) <= width_in - 0.2)
                  for layer in colorbar_layers]
    bars_per_row = _bars_per_row(bar_titles, [_bar_ticks(layer) for layer in colorbar_layers], width_in)
    bar_rows = -(-len(colorbar_layers) // bars_per_row)
    legend = None
    legend_h_in = 0.0
    if region_layers:
        layer = region_layers[0]
        indent_in = text_width_in(text("regions:"), KEY_LEGEND_PT, bold=True) + 0.1
        names = {label: text(layer.region_names.get(label, f"label {label}")) for label in set(layer.region_names) | present}
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

    def draw(extra: dict[str, str]):
        view_captions, caption_lines = captions(extra)
        title_h_in, label_h_in, bar_h_in = 0.22, 0.06 + 0.12 * caption_lines, 0.62
        height_in = title_h_in + image_h_in + label_h_in + bar_rows * bar_h_in + legend_h_in
        figure = Figure(figsize=(width_in, height_in), dpi=dpi, facecolor="white")
        FigureCanvasAgg(figure)
        figure.text(0.0, 1.0, title_text, fontsize=8.5, va="top", ha="left", color="black")
        left_in = 0.0
        bottom_in = height_in - title_h_in - image_h_in
        missing = {}
        for view in ORTHO_VIEWS:
            plane_in = aspects[view] * image_h_in
            ax = figure.add_axes((left_in / width_in, bottom_in / height_in, plane_in / width_in, image_h_in / height_in))
            ax.imshow(fused_views[view].rgb, interpolation="nearest", origin="upper", aspect="auto")
            ax.set_axis_off()
            # letters shrink in a small view (a fifth of its shorter side at most)
            letter_pt = float(np.clip(72 * min(plane_in, image_h_in) / 5, 6.0, KEY_LETTER_PT))
            letters = _draw_letters(ax, planes[view], fontsize=letter_pt)
            missing[view] = _draw_scale_bar(ax, planes[view], fontsize=min(KEY_SCALE_PT, letter_pt), letters=letters)
            figure.text((left_in + plane_in / 2) / width_in, (bottom_in - 0.03) / height_in, view_captions[view],
                        fontsize=7, ha="center", va="top", color="black", linespacing=1.15)
            left_in += plane_in + gap_in
        top_in = height_in - title_h_in - image_h_in - label_h_in
        bar_w_in = width_in / bars_per_row
        for n, (layer, bar_title) in enumerate(zip(colorbar_layers, bar_titles)):
            row, column = divmod(n, bars_per_row)
            row_top = top_in - row * bar_h_in
            ax = figure.add_axes(((column * bar_w_in + 0.05) / width_in, (row_top - 0.42) / height_in,
                                  (bar_w_in - 0.22) / width_in, 0.11 / height_in))
            _colorbar_into(ax, layer, horizontal=True, color="black", text=text, title=bar_title)
        if legend is not None:
            _draw_key_legend(figure, region_layers[0], present, legend, legend_h_in, width_in, text)
        return figure, missing

    figure, missing = draw({})
    if any(missing.values()):  # a view too small for its scale bar's length: its caption says it
        figure, _ = draw(missing)
    return figure


def _draw_key_legend(figure, layer: Layer, present: set[int], legend: LegendLayout, legend_h_in: float,
                     width_in: float, text: Callable[[str], str]) -> None:
    """Region names after a swatch in the region's colour: filled when the region is in one of
    the views, hollow otherwise. Swatch edges are darkened so white regions show."""
    from matplotlib.patches import Rectangle

    height_in = figure.get_figheight()
    heading = text("regions:")
    indent_in = text_width_in(heading, KEY_LEGEND_PT, bold=True) + 0.1

    def y_of(row: int) -> float:
        return (legend_h_in - 0.035 - KEY_LEGEND_ROW_IN * (row + 0.5)) / height_in

    figure.text(0.0, y_of(0), heading, fontsize=KEY_LEGEND_PT, va="center", ha="left", color="black", fontweight="bold")
    for row, entries in enumerate(legend.rows):
        y = y_of(row)
        for entry in entries:
            x_in = indent_in + entry.x_in
            rgb = layer.table.color(entry.label)
            figure.add_artist(Rectangle(
                (x_in / width_in, y - SWATCH_IN / 2 / height_in), SWATCH_IN / width_in, SWATCH_IN / height_in,
                transform=figure.transFigure, facecolor=np.array(rgb) / 255.0 if entry.label in present else "none",
                edgecolor=print_color(rgb), linewidth=0.8,
            ))
            figure.text((x_in + SWATCH_IN + SWATCH_GAP_IN) / width_in, y, entry.name, fontsize=KEY_LEGEND_PT,
                        va="center", ha="left", color="black")
    if legend.more:
        figure.text((indent_in + legend.more_x_in) / width_in, y_of(len(legend.rows) - 1), legend.more,
                    fontsize=KEY_LEGEND_PT, va="center", ha="left", color="#444444", fontstyle="italic")


def figure_pixels(figure) -> np.ndarray:
    """A figure drawn at its own dpi as RGB pixels (rows, cols, 3) uint8.

    Reports embed the pixels directly: encoding a PNG only for the PDF writer to decode it
    again cost about 0.2 s per figure.
    """
    figure.canvas.draw()
    return np.ascontiguousarray(np.asarray(figure.canvas.buffer_rgba())[..., :3])


def drawn_texts(figure) -> tuple[str, ...]:
    """Every non-empty visible string a drawn figure shows: figure and axes texts, titles, tick
    labels, legend entries (what a reader sees in the pixels, for the report's leak check)."""
    from matplotlib.text import Text

    return tuple(artist.get_text() for artist in figure.findobj(Text)
                 if artist.get_visible() and artist.get_text().strip())


def _colorbar_into(ax, layer: Layer, horizontal: bool, color: str, text: Callable[[str], str] = _same,
                   title: str | None = None) -> None:
    """Draw ``layer``'s colour bar (its LUT across its levels, titled with quantity and units,
    or with ``title``: the key images pass it measured and, if it must be, shortened)."""
    lut = colormap_lut(layer.display.colormap)[:, :3]
    low, high = layer.display.levels
    if horizontal:
        ax.imshow(lut[None, :, :], aspect="auto", extent=(low, high, 0, 1))
        ax.set_yticks([])
        ax.set_xticks([low, high])  # a printed bar is narrow: its two ends say the range
        labels = ax.set_xticklabels([_tick(v, high - low) for v in (low, high)])
        labels[0].set_horizontalalignment("left")  # end labels inside the bar's width: none is clipped
        labels[-1].set_horizontalalignment("right")
        ax.set_title(text(layer.title.replace("\n", " ")) if title is None else title, color=color,
                     fontsize=BAR_TITLE_PT, pad=2, loc="left")
    else:
        ax.imshow(lut[::-1, None, :], aspect="auto", extent=(0, 1, low, high))
        ax.set_xticks([])
        ax.set_title(text(layer.title), color=color, fontsize=7.5, pad=4, loc="left")
    if horizontal:
        ax.tick_params(colors=color, labelsize=BAR_TICK_PT, length=2, pad=1)
    else:
        ax.tick_params(colors=color, labelsize=7)
    for spine in ax.spines.values():
        spine.set_color(color)
        if horizontal:
            spine.set_linewidth(0.5)
    visible_low = layer.display.visible_range[0]
    if np.isfinite(visible_low) and low < visible_low < high:
        if horizontal:
            ax.axvline(visible_low, color="black", linewidth=0.8, linestyle="--")
        else:
            ax.axhline(visible_low, color="white", linewidth=1.0, linestyle="--")


def _tick(value: float, span: float) -> str:
    """A colour-bar tick label with as many decimals as the bar's span needs (3 significant)."""
    decimals = max(0, 2 - int(np.floor(np.log10(span)))) if span > 0 else 2
    text = f"{value:,.{decimals}f}"
    return "0" if float(value) != 0 and abs(value) < 0.5 * 10.0 ** -decimals else text
