"""How a layer is shown: colormap, levels, visible range, opacity — kept apart from the data.

A :class:`Volume` does not know its colormap (3D Slicer's data/display split). Defaults
follow PRODUCT.md §5: hot for ¹⁹F with zero transparent, a PET scale for PET, cool for SPIO,
green for Gd, sequential for sodium. Levels are *explicit* and computed from the whole volume
(never auto-levels on a slice, which sub-sample and miss a single hot ¹⁹F voxel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Mapping

import numpy as np

from viewer.core.volume import Volume

#: Colormap names every layer can use (LUTs of 256 RGBA entries, uint8).
COLORMAPS: tuple[str, ...] = ("gray", "hot", "pet", "cool", "green", "sodium", "adc", "tmax", "labels")

#: Default colormap per role.
ROLE_COLORMAP: Mapping[str, str] = {
    "anatomical": "gray",
    "fluorine": "hot",
    "pet": "pet",
    "spio": "cool",
    "gd": "green",
    "sodium": "sodium",
    "adc": "adc",
    "tmax": "tmax",
    "regions": "labels",
    "other": "pet",
}

#: Default opacity per role (anatomy is the opaque base).
ROLE_OPACITY: Mapping[str, float] = {
    "anatomical": 1.0,
    "fluorine": 0.9,
    "pet": 0.4,
    "spio": 0.7,
    "gd": 0.7,
    "sodium": 0.45,
    "adc": 0.5,
    "tmax": 0.45,
    "regions": 0.9,
    "other": 0.5,
}

#: Default visible windows tied to the physiology of PRODUCT.md §3: only abnormal values show.
#: ADC below 620·10⁻⁶ mm²/s (core), Tmax above 6 s (hypoperfused), TSC 50–100 mM (penumbra
#: and core, not CSF).
ROLE_VISIBLE_RANGE: Mapping[str, tuple[float, float]] = {
    "adc": (100.0, 620.0),
    "tmax": (6.0, np.inf),
    "sodium": (50.0, 100.0),  # penumbra and core; CSF (≈ 140 mM) stays hidden
}

#: Colour (RGB 0-255) of reserved region names; other labels take PALETTE colours.
REGION_COLORS: Mapping[str, tuple[int, int, int]] = {
    "core": (230, 40, 40),
    "penumbra": (255, 200, 0),
    "injection site": (0, 220, 255),
    "reference": (255, 255, 255),
    "background": (150, 150, 150),
}

PALETTE: tuple[tuple[int, int, int], ...] = (
    (80, 200, 80), (200, 100, 255), (255, 120, 180), (120, 160, 255), (255, 160, 60), (160, 255, 200),
)


@dataclass(frozen=True)
class DisplayProps:
    """Display state of one layer.

    Attributes:
        colormap: one of :data:`COLORMAPS`.
        levels: (low, high) mapped to the first and last LUT entry, in the layer's units.
        visible_range: values outside (low, high) are transparent (e.g. ¹⁹F below noise).
        opacity: 0–1.
        visible: shown or hidden.
    """

    colormap: str = "gray"
    levels: tuple[float, float] = (0.0, 1.0)
    visible_range: tuple[float, float] = (-np.inf, np.inf)
    opacity: float = 1.0
    visible: bool = True

    def with_(self, **changes) -> "DisplayProps":
        return replace(self, **changes)


def robust_noise_sigma(data: np.ndarray, max_samples: int = 2_000_000) -> float:
    """Noise σ of a mostly-zero-mean map from the median absolute deviation (σ = 1.4826·MAD).

    Used only for display thresholds; quantification estimates noise its own way (§3).
    A deterministic stride subsample bounds the cost on large volumes.
    """
    flat = np.asarray(data).reshape(-1)
    stride = max(1, flat.size // max_samples)
    sample = flat[::stride].astype(np.float64)
    sample = sample[np.isfinite(sample) & (sample != 0)]
    if sample.size == 0:
        return 0.0
    median = np.median(sample)
    return float(1.4826 * np.median(np.abs(sample - median)))


#: At most this many voxels (a strided sample) choose a layer's levels and noise; the extremes
#: are the whole volume's, so a single hot voxel still reaches the top of the colormap.
LEVEL_SAMPLES = 2_000_000
#: Voxels per slab when the whole volume is scanned for its extremes.
SLAB_VOXELS = 4_000_000


def level_sample(data: np.ndarray, exclude: np.ndarray | None = None, max_samples: int = LEVEL_SAMPLES) -> np.ndarray:
    """The finite values of every s-th voxel along each axis (s the smallest step that keeps
    at most ``max_samples``), outside ``exclude``, as a 1-D array.

    Only the sample is copied, whatever the array's memory order: reshaping a Fortran-ordered
    memory map to 1-D copied all of it in C order (1.8–2.3 s for a 150 MB anatomy).
    """
    data = np.asarray(data)
    if data.ndim == 0:
        data = data.reshape(1)
    step = max(1, math.ceil((data.size / max_samples) ** (1.0 / data.ndim)))
    index = (slice(None, None, step),) * data.ndim
    sample = np.asarray(data[index])
    keep = np.isfinite(sample) if np.issubdtype(sample.dtype, np.floating) else np.ones(sample.shape, bool)
    if exclude is not None:
        keep &= ~np.asarray(exclude)[index]
    return sample[keep]


def finite_range(data: np.ndarray, exclude: np.ndarray | None = None) -> tuple[float, float] | None:
    """The smallest and largest finite value of the whole array outside ``exclude`` (None when
    there is none), read slab by slab along the array's slowest axis: no whole-volume
    temporary, and no voxel skipped (a one-voxel ¹⁹F hotspot sets the top level)."""
    data = np.asarray(data)
    if data.ndim == 0:
        data = data.reshape(1)
    axis = data.ndim - 1 if data.flags.f_contiguous and not data.flags.c_contiguous else 0
    per_slab = max(1, data.size // max(data.shape[axis], 1))
    chunk = max(1, SLAB_VOXELS // per_slab)
    floating = np.issubdtype(data.dtype, np.floating)
    low, high = math.inf, -math.inf
    for start in range(0, data.shape[axis], chunk):
        index = tuple(slice(start, start + chunk) if a == axis else slice(None) for a in range(data.ndim))
        part = np.asarray(data[index])
        keep = np.isfinite(part) if floating else None
        if exclude is not None:
            outside = ~np.asarray(exclude)[index]
            keep = outside if keep is None else keep & outside
        if keep is None:
            low, high = min(low, float(part.min())), max(high, float(part.max()))
        elif keep.any():
            low = min(low, float(part.min(where=keep, initial=np.inf)))
            high = max(high, float(part.max(where=keep, initial=-np.inf)))
    return None if low > high else (low, high)


def default_display(volume: Volume, exclude: np.ndarray | None = None) -> DisplayProps:
    """Default display of a layer from its role: levels from a strided sample of its voxels
    (:func:`level_sample`), the top of the ¹⁹F, SPIO and Gd ranges from the whole volume's
    largest value (:func:`finite_range`).

    Args:
        exclude: optional boolean mask on the volume's grid of voxels to ignore when choosing
            levels (the ¹⁹F reference tube is far brighter than cells and would wash them out).
    """
    role = volume.role
    data = np.asarray(volume.data)
    if exclude is not None and exclude.shape != data.shape:
        exclude = None
    colormap = ROLE_COLORMAP[role]
    opacity = ROLE_OPACITY[role]
    extremes = finite_range(data, exclude) if data.size else None
    if extremes is None:
        return DisplayProps(colormap, (0.0, 1.0), (-np.inf, np.inf), opacity)
    largest = extremes[1]
    if role == "regions":
        return DisplayProps(colormap, (0.0, float(max(1, largest))), (0.5, np.inf), opacity)
    sample = level_sample(data, exclude)
    if sample.size == 0:  # every sampled voxel excluded or not finite: the extremes still are
        sample = np.asarray(extremes, dtype=np.float64)
    if role == "anatomical":
        low, high = np.percentile(sample, [0.5, 99.5])
        return DisplayProps(colormap, (float(low), float(max(high, low + 1e-6))), (-np.inf, np.inf), opacity)
    if role == "fluorine":
        # Magnitude noise is Rayleigh: median = σ·√(2 ln 2). Show from 3.5σ (the detection
        # threshold of §3) up to the brightest voxel, so a single hot voxel reaches the top.
        # A masked reconstruction is mostly exact zeros (no noise there): σ comes from the
        # voxels that hold signal, and the zeros are never shown (else the whole field of
        # view would be drawn at the bottom of the colormap).
        nonzero = sample[sample != 0]
        basis = nonzero if nonzero.size and nonzero.size < 0.5 * sample.size else sample
        sigma = float(np.median(np.abs(basis))) / np.sqrt(2 * np.log(2))
        low = 3.5 * sigma
        if low <= 0:
            positive = sample[sample > 0]
            low = float(positive.min()) * 0.5 if positive.size else (0.5 * largest if largest > 0 else 1.0)
        return DisplayProps(colormap, (low, max(largest, low + 1e-6)), (low, np.inf), opacity)
    if role in ("spio", "gd"):
        sigma = robust_noise_sigma(sample)
        low = 3.0 * sigma
        high = max(float(np.percentile(sample, 99.99)), largest * 0.5, low + 1e-6)
        return DisplayProps(colormap, (low, high), (low, np.inf), opacity)
    if role == "pet":
        high = float(np.percentile(sample, 99.9))
        # Uptake from 30 % of the top level shows; lower background uptake leaves anatomy clear.
        return DisplayProps(colormap, (0.0, max(high, 1e-6)), (0.3 * high, np.inf), opacity)
    visible = ROLE_VISIBLE_RANGE.get(role, (-np.inf, np.inf))
    low, high = np.percentile(sample, [1.0, 99.5])
    if role == "adc":
        low, high = 0.0, 1000.0
    return DisplayProps(colormap, (float(low), float(max(high, low + 1e-6))), visible, opacity)


# -- colormaps -----------------------------------------------------------------------------------

def _ramp(points: list[tuple[float, tuple[int, int, int]]]) -> np.ndarray:
    """256×4 uint8 LUT interpolated between (position 0–1, RGB) control points."""
    x = np.linspace(0.0, 1.0, 256)
    positions = [p for p, _ in points]
    lut = np.empty((256, 4), dtype=np.uint8)
    for channel in range(3):
        lut[:, channel] = np.round(np.interp(x, positions, [c[channel] for _, c in points])).astype(np.uint8)
    lut[:, 3] = 255
    return lut


@lru_cache(maxsize=None)
def colormap_lut(name: str) -> np.ndarray:
    """The 256×4 uint8 RGBA lookup table of a colormap (read-only)."""
    ramps = {
        "gray": [(0.0, (0, 0, 0)), (1.0, (255, 255, 255))],
        "hot": [(0.0, (90, 0, 0)), (0.35, (255, 30, 0)), (0.7, (255, 200, 0)), (1.0, (255, 255, 255))],
        # A "hot metal"-like PET scale, dark blue → purple → red → yellow → white.
        "pet": [(0.0, (0, 0, 60)), (0.2, (80, 0, 160)), (0.45, (220, 0, 80)), (0.7, (255, 140, 0)), (0.9, (255, 240, 80)), (1.0, (255, 255, 255))],
        "cool": [(0.0, (0, 255, 255)), (1.0, (255, 0, 255))],
        "green": [(0.0, (0, 70, 0)), (0.6, (0, 220, 40)), (1.0, (200, 255, 200))],
        # Sequential (viridis-like) for sodium concentration.
        "sodium": [(0.0, (68, 1, 84)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)), (0.75, (94, 201, 98)), (1.0, (253, 231, 37))],
        "adc": [(0.0, (255, 255, 255)), (0.5, (120, 120, 255)), (1.0, (0, 0, 120))],
        "tmax": [(0.0, (0, 0, 255)), (0.33, (0, 255, 255)), (0.66, (255, 255, 0)), (1.0, (255, 0, 0))],
        "labels": [(0.0, (0, 0, 0)), (1.0, (255, 255, 255))],
    }
    if name not in ramps:
        raise ValueError(f"unknown colormap {name!r}; expected one of {', '.join(COLORMAPS)}")
    lut = _ramp(ramps[name])
    lut.setflags(write=False)
    return lut


@lru_cache(maxsize=None)
def colormap_rgb_float(name: str) -> np.ndarray:
    """The colormap's RGB as a 256×3 float32 table (for compositing in float)."""
    table = colormap_lut(name)[:, :3].astype(np.float32)
    table.setflags(write=False)
    return table


def region_color(label: int, name: str) -> tuple[int, int, int]:
    """Colour of a region: fixed for reserved names, from the palette otherwise."""
    if name in REGION_COLORS:
        return REGION_COLORS[name]
    return PALETTE[(int(label) - 1) % len(PALETTE)]


#: Highest luminance (0–1) of a region colour drawn on white paper.
PRINT_MAX_LUMINANCE = 0.62


def print_color(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """A region colour (0–255) darkened enough to read on white paper, same hue (0–1 floats).

    White and pale regions (the reference tube) would vanish on a printed page.
    """
    color = np.asarray(rgb, dtype=float) / 255.0
    luminance = float(color @ np.array([0.299, 0.587, 0.114]))
    if luminance > PRINT_MAX_LUMINANCE:
        color = color * (PRINT_MAX_LUMINANCE / luminance)
    return (float(color[0]), float(color[1]), float(color[2]))


# -- applying a display to a sampled plane --------------------------------------------------------

def apply_window(values: np.ndarray, levels: tuple[float, float]) -> np.ndarray:
    """Map values to LUT indices 0–255 with explicit levels (uint8, NaN → 0)."""
    low, high = float(levels[0]), float(levels[1])
    scale = 255.0 / (high - low) if high > low else 0.0
    scaled = (np.asarray(values, dtype=np.float32) - np.float32(low)) * np.float32(scale)
    np.fmax(scaled, 0.0, out=scaled)  # fmax also turns NaN into 0
    np.minimum(scaled, 255.0, out=scaled)
    return scaled.astype(np.uint8)


def shown_mask(values: np.ndarray, inside: np.ndarray, props: DisplayProps) -> np.ndarray:
    """Pixels a layer colours: inside its field of view, finite, and within ``visible_range``."""
    as_float = np.asarray(values, dtype=np.float32)
    low, high = props.visible_range
    shown = inside & np.isfinite(as_float)
    if np.isfinite(low):
        shown &= as_float >= low
    if np.isfinite(high):
        shown &= as_float <= high
    return shown


def blend_into(rgb: np.ndarray, mask: np.ndarray, colors: np.ndarray, alpha: float) -> None:
    """Alpha-blend ``colors`` (N×3, one per True pixel of ``mask``) into float32 ``rgb`` in place.

    Only the covered pixels are touched, so a sparse overlay (a few ¹⁹F hotspots) costs
    almost nothing however large the view is.
    """
    if alpha <= 0:
        return
    index = np.flatnonzero(mask)
    if index.size == 0:
        return
    flat = rgb.reshape(-1, 3)
    current = flat[index]
    flat[index] = current + (colors.astype(np.float32, copy=False) - current) * np.float32(alpha)
