"""Volume-rendering transfer functions derived from an image's intensity distribution (numpy only).

The 3D view ray-casts the anatomy; what it shows is decided by two functions of the voxel value:
an opacity (per voxel length) and a colour. Both are built here from *landmarks* of the image's
intensity distribution, so the same presets work for a T1 MRI (background 0, tissue 0–255 or
0–4000), for an MRI with a noisy background and for a CT in Hounsfield units (air −1000, padding
−3024, bone > 300) without a number written for one image.

Landmarks (:class:`IntensityLandmarks`), all from one strided sample of the volume
(:func:`intensity_sample`, ≤ ``MAX_SAMPLES`` voxels, never a full copy of a memory-mapped file):

* ``background`` — the ceiling of the air/background class (:func:`background_threshold`):
  a spike of voxels at the image minimum (zero fill, CT padding) is always background; then, if
  what is left has a dark class (peak in the lowest quarter of the range, ≥ 5 % of the voxels)
  followed by a deep valley of the smoothed histogram (≤ 25 % of the peaks on either side: air
  in a CT, Rician noise in an MRI), the ceiling is the bottom of the lowest such valley. A
  skull-stripped T1 with an exact zero background has none (its grey/white-matter dip is
  shallow, and grey matter is not dark): its ceiling is the zero fill;
* ``tissue_low``, ``tissue``, ``top`` — the 5th, 50th and 99.5th percentiles of the voxels above
  the background: the darkest tissue (CSF, fat), the typical tissue (grey matter, brain in a CT)
  and the brightest that matters (white matter, cortical bone), robust to a few hot voxels;
* ``bright`` — the start of the bright class (white matter in a T1, bone in a CT): the first
  value above the Otsu threshold of the voxels above the background, at least half-way from
  ``tissue`` to ``top``.

Presets (:data:`PRESETS`) map these landmarks to control points; the UI scales the opacity with
a slider and may move the background ceiling (:func:`landmarks` takes it as an override).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Most voxels read for the landmarks: a regular 3-D stride of a 512×512×300 int16 memmap
#: (stride 5) reads ≈ 0.64 M voxels in ≈ 20–30 ms and allocates ≈ 11 MB, not the 157 MB image.
MAX_SAMPLES = 1_000_000
#: Histogram bins for Otsu and the valley search.
HISTOGRAM_BINS = 256
#: A value holding more than this fraction of the sample at the image minimum is fill/padding.
PADDING_FRACTION = 0.01
#: A background class is accepted when the histogram valley between it and the tissue is at most
#: this fraction of the smaller of the two peaks (air/tissue and noise/tissue valleys are
#: ≈ 0–5 %, the grey/white-matter dip of a T1 is ≈ 60 %).
VALLEY_DEPTH = 0.25
#: The background holds at least this fraction of the voxels (air around a head: ≥ 10 %).
MIN_BACKGROUND_FRACTION = 0.05
#: The background is dark: its histogram peak lies in this lowest fraction of the value range
#: (air, noise: ≈ 1–5 %; the grey matter of a skull-stripped T1 once its zero fill is set
#: aside: ≈ 65 %, so a strong grey/white-matter dip never makes the grey matter "background").
DARK_FRACTION = 0.25

#: Opacity (per voxel length) of the typical tissue in the "tissue" preset: through ≈ 10 voxels
#: of cortex ≈ 80 % opaque, so the brain's surface shows with its gyri and sulci.
TISSUE_OPACITY = 0.15
#: Opacity of the brightest tissue (bone, white matter) in the "tissue" preset.
BRIGHT_OPACITY = 0.4


@dataclass(frozen=True)
class IntensityLandmarks:
    """Where the background ends and the tissue classes lie, in the image's own units."""

    minimum: float
    background: float
    tissue_low: float
    tissue: float
    bright: float
    top: float
    maximum: float


@dataclass(frozen=True)
class TransferFunction:
    """Control points of a colour and an opacity function, piecewise linear between them.

    Attributes:
        colour: (value, r, g, b) points, r, g, b in 0–1, values increasing.
        opacity: (value, opacity per voxel length) points, values increasing.
        shade: whether to light the rendering (the intensity gradient as normal); off for
            see-through presets, where it only adds gradient noise (and costs ≈ 3× on a CPU).
    """

    colour: tuple[tuple[float, float, float, float], ...]
    opacity: tuple[tuple[float, float], ...]
    shade: bool = True

    def opacity_at(self, values: np.ndarray | float) -> np.ndarray:
        """The opacity at ``values`` (clamped to the end points, as VTK does)."""
        points = np.asarray(self.opacity, dtype=float)
        return np.interp(np.asarray(values, dtype=float), points[:, 0], points[:, 1])

    def colour_at(self, values: np.ndarray | float) -> np.ndarray:
        """The RGB (…, 3) colour at ``values``."""
        points = np.asarray(self.colour, dtype=float)
        values = np.asarray(values, dtype=float)
        return np.stack([np.interp(values, points[:, 0], points[:, c]) for c in (1, 2, 3)], axis=-1)


# -- the sample --------------------------------------------------------------------------------

def sample_stride(shape: tuple[int, ...], max_samples: int = MAX_SAMPLES) -> int:
    """The per-axis stride that reads at most ≈ ``max_samples`` voxels of a volume."""
    return max(1, int(np.ceil((float(np.prod(shape)) / max_samples) ** (1.0 / max(len(shape), 1)))))


def intensity_sample(data: np.ndarray, max_samples: int = MAX_SAMPLES) -> np.ndarray:
    """Finite values of a regular strided sample of ``data``, sorted (float64).

    Basic slicing ``data[::s, ::s, ::s]`` is a view: a memory-mapped file is read only at the
    sampled voxels, and ``ravel(order="K")`` copies just the sample whatever the array's order.
    """
    stride = sample_stride(np.shape(data), max_samples)
    view = data[(slice(None, None, stride),) * np.ndim(data)]
    values = np.asarray(view).ravel(order="K").astype(np.float64)
    values = values[np.isfinite(values)]
    values.sort()
    return values


# -- thresholds ----------------------------------------------------------------------------------

def _histogram(values: np.ndarray, bins: int = HISTOGRAM_BINS) -> tuple[np.ndarray, np.ndarray]:
    low, high = float(values[0]), float(values[-1])
    if high <= low:
        high = low + 1.0
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    return counts.astype(np.float64), edges


def otsu_threshold(values: np.ndarray, bins: int = HISTOGRAM_BINS) -> float:
    """Otsu's threshold of sorted ``values``: the split maximising the between-class variance."""
    if values.size == 0:
        return 0.0
    counts, edges = _histogram(values, bins)
    return float(edges[_otsu_bin(counts)])


def _otsu_bin(counts: np.ndarray) -> int:
    """Index of the first bin of the upper class (1 … bins − 1)."""
    centres = np.arange(counts.size, dtype=np.float64)
    weight = np.cumsum(counts)
    total = weight[-1]
    if total <= 0:
        return counts.size // 2
    cumulative_mean = np.cumsum(counts * centres)
    w0 = weight[:-1]
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        mean0 = cumulative_mean[:-1] / w0
        mean1 = (cumulative_mean[-1] - cumulative_mean[:-1]) / w1
        between = w0 * w1 * (mean0 - mean1) ** 2
    between = np.nan_to_num(between, nan=-1.0)
    return int(np.argmax(between)) + 1


def _smooth(counts: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    radius = int(np.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    return np.convolve(np.pad(counts, radius, mode="edge"), kernel, mode="valid")


def background_threshold(values: np.ndarray) -> float:
    """The ceiling of the background (air) class of sorted ``values``: see the module docstring.

    Returns the image minimum when there is no separate dark class (all voxels are tissue, or
    the background is a zero fill only): then only the fill is transparent.
    """
    if values.size == 0:
        return 0.0
    minimum = float(values[0])
    at_minimum = int(np.searchsorted(values, minimum, side="right"))
    padded = at_minimum > PADDING_FRACTION * values.size
    rest = values[at_minimum:] if padded else values
    if rest.size < 100 or rest[-1] <= rest[0]:
        return minimum
    # The top 0.1 % (a few hot voxels, metal) would squeeze the classes into a few bins.
    rest = rest[: max(int(np.ceil(0.999 * rest.size)), 2)]
    counts, edges = _histogram(rest)
    valley = _first_deep_valley(_smooth(counts), counts)
    if valley is None:
        return minimum
    ceiling = float(edges[valley + 1])
    if padded:
        # Beside a fill, a *constant* dark class is a (synthetic) tissue, not air: air and
        # background noise always spread over a range of values.
        dark = rest[: int(np.searchsorted(rest, ceiling, side="right"))]
        if np.quantile(dark, 0.9) <= np.quantile(dark, 0.1):
            return minimum
    return ceiling


def _first_deep_valley(smooth: np.ndarray, counts: np.ndarray) -> int | None:
    """The lowest bin that is a deep valley of the smoothed histogram, with a real class below.

    A valley is a local minimum (the first bin of a flat bottom) at most ``VALLEY_DEPTH`` of
    the highest peaks on either side; below it lie at least ``MIN_BACKGROUND_FRACTION`` of the
    voxels (a few stray dark voxels are not a background), and the highest peak below it is
    dark (``DARK_FRACTION``).
    """
    total = counts.sum()
    below = np.cumsum(counts)
    left_peak = np.maximum.accumulate(smooth)
    right_peak = np.maximum.accumulate(smooth[::-1])[::-1]
    for v in range(1, smooth.size - 1):
        if not (smooth[v] < smooth[v - 1] and smooth[v] <= smooth[v + 1]):
            continue
        if below[v] < MIN_BACKGROUND_FRACTION * total:
            continue
        if smooth[v] <= VALLEY_DEPTH * min(left_peak[v], right_peak[v]):
            dark_peak = int(np.argmax(smooth[:v]))
            return v if dark_peak < DARK_FRACTION * smooth.size else None
    return None


def landmarks(values: np.ndarray, background: float | None = None) -> IntensityLandmarks:
    """The landmarks of sorted sample ``values`` (:func:`intensity_sample`).

    Args:
        background: a ceiling chosen by the user (threshold slider); else :func:`background_threshold`.
    """
    if values.size == 0:
        return IntensityLandmarks(0.0, 0.0, 0.5, 0.5, 0.75, 1.0, 1.0)
    minimum, maximum = float(values[0]), float(values[-1])
    ceiling = background_threshold(values) if background is None else float(background)
    above = values[np.searchsorted(values, ceiling, side="right"):]
    if above.size < 10:  # nothing above the ceiling: spread the ramp over the image's range
        span = max(maximum - ceiling, 1e-6)
        return IntensityLandmarks(minimum, ceiling, ceiling + 0.25 * span, ceiling + 0.5 * span,
                                  ceiling + 0.75 * span, ceiling + span, maximum)
    tissue_low, tissue, top = (float(v) for v in np.quantile(above, (0.05, 0.5, 0.995)))
    # Otsu's split may fall anywhere in an empty gap: take the first voxel value at or above it
    # (the bright class starts at least half-way from the typical tissue to the top, as Otsu's
    # split of a T1's brain falls near its median, between grey and white matter).
    split = otsu_threshold(above)
    first_bright = float(above[min(int(np.searchsorted(above, split)), above.size - 1)])
    bright = float(np.clip(first_bright, tissue + 0.5 * (top - tissue), top))
    # strictly increasing, so control points never collapse
    eps = max(1e-6, 1e-6 * abs(top - ceiling))
    tissue_low = max(tissue_low, ceiling + eps)
    tissue = max(tissue, tissue_low + eps)
    bright = max(bright, tissue + eps)
    top = max(top, bright + eps)
    return IntensityLandmarks(minimum, ceiling, tissue_low, tissue, bright, top, maximum)


def volume_landmarks(data: np.ndarray, max_samples: int = MAX_SAMPLES) -> IntensityLandmarks:
    """:func:`landmarks` of a strided sample of a volume."""
    return landmarks(intensity_sample(data, max_samples))


# -- presets -----------------------------------------------------------------------------------

#: Preset keys and their labels, in menu order.
PRESETS: dict[str, str] = {
    "tissue": "Tissue",
    "surface": "Outer surface",
    "bright": "Bright (WM / bone)",
    "xray": "See-through",
}
DEFAULT_PRESET = "tissue"


def _grey(value: float, level: float) -> tuple[float, float, float, float]:
    return (value, level, level, level)


def transfer_function(marks: IntensityLandmarks, preset: str = DEFAULT_PRESET,
                      opacity_scale: float = 1.0) -> TransferFunction:
    """The colour and opacity functions of a preset (see :data:`PRESETS`).

    Every preset has opacity 0 up to the background ceiling. ``opacity_scale`` multiplies the
    opacity (the view's slider), clipped to 1.

    * ``tissue`` — grey ramp from dark at the darkest tissue to white at the top; the darkest
      tissue faint, the typical tissue moderate (``TISSUE_OPACITY``), bright structures more
      opaque (``BRIGHT_OPACITY``): the brain's or the skin's surface, shaded;
    * ``surface`` — opaque from just above the background: the outer envelope (skin, or the
      brain of a skull-stripped image), uniform light grey;
    * ``bright`` — only the bright class (white matter in a T1, bone in a CT), opaque;
    * ``xray`` — a faint linear ramp over the whole tissue range: everything see-through.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown transfer-function preset {preset!r}; expected one of {', '.join(PRESETS)}")
    b, low, mid, bright, top = marks.background, marks.tissue_low, marks.tissue, marks.bright, marks.top
    if preset == "tissue":
        colour = (_grey(b, 0.15), _grey(low, 0.45), _grey(mid, 0.8), _grey(top, 1.0))
        opacity = ((b, 0.0), (low, 0.3 * TISSUE_OPACITY), (mid, TISSUE_OPACITY),
                   (bright, 0.5 * (TISSUE_OPACITY + BRIGHT_OPACITY)), (top, BRIGHT_OPACITY))
    elif preset == "surface":
        # a ramp over the partial-volume edge rather than a step: a step shows the sampling's
        # terraces ("wood grain") on the shaded surface
        edge = b + 0.15 * (low - b)
        colour = (_grey(b, 0.6), _grey(low, 0.85), _grey(top, 0.95))
        opacity = ((b, 0.0), (edge, 0.0), (low, 0.45), (top, 0.7))
    elif preset == "bright":
        start = mid + 0.5 * (bright - mid)
        colour = (_grey(start, 0.55), _grey(bright, 0.8), _grey(top, 1.0))
        opacity = ((b, 0.0), (start, 0.0), (bright, 0.35), (top, 0.8))
    else:  # xray
        colour = (_grey(b, 0.0), _grey(top, 1.0))
        opacity = ((b, 0.0), (low, 0.001), (top, 0.008))
    shade = preset != "xray"
    scale = max(float(opacity_scale), 0.0)
    opacity = tuple((float(v), float(min(a * scale, 1.0))) for v, a in _increasing(opacity))
    colour = tuple((float(v), float(r), float(g), float(bl)) for v, r, g, bl in _increasing(colour))
    return TransferFunction(colour=colour, opacity=opacity, shade=shade)


def _increasing(points):
    """Drop points whose value does not exceed the previous one (degenerate landmarks)."""
    kept = []
    for point in points:
        if not kept or point[0] > kept[-1][0]:
            kept.append(point)
    return kept
