"""Window/level presets of the anatomy (PRODUCT.md §5 "numeric window/level and presets").

CT is in Hounsfield units, so its presets are the fixed windows every reading room knows
(brain W 80 / L 40, stroke W 40 / L 40, subdural W 250 / L 80, soft tissue W 400 / L 40,
bone W 2800 / L 600, lung W 1500 / L −600). MR intensities have no unit and change with every
scanner and sequence, so its presets come from the image itself: percentiles of the tissue
(the voxels above an Otsu threshold of a strided sample, the background air left out) instead
of fixed numbers. Sampling is strided and never copies a whole (memory-mapped) volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from viewer.core.volume import Volume

#: Voxels sampled for the MR presets (a strided sample keeps single bright voxels' share).
MAX_SAMPLES = 1_000_000

#: (name, window width HU, level HU) of the usual CT windows.
CT_WINDOWS: tuple[tuple[str, float, float], ...] = (
    ("Brain", 80.0, 40.0),
    ("Stroke", 40.0, 40.0),
    ("Subdural", 250.0, 80.0),
    ("Soft tissue", 400.0, 40.0),
    ("Bone", 2800.0, 600.0),
    ("Lung", 1500.0, -600.0),
)


@dataclass(frozen=True)
class WindowPreset:
    """A named display range of the anatomy: ``levels`` (low, high) in its units."""

    name: str
    levels: tuple[float, float]

    @property
    def width(self) -> float:
        return self.levels[1] - self.levels[0]

    @property
    def center(self) -> float:
        return (self.levels[0] + self.levels[1]) / 2.0


def strided_sample(volume: Volume, max_samples: int = MAX_SAMPLES) -> np.ndarray:
    """Finite values of an evenly strided sub-grid (float64), at most about ``max_samples``."""
    data = volume.data
    stride = max(1, int(np.ceil((data.size / max_samples) ** (1.0 / 3.0))))
    sample = np.asarray(data[::stride, ::stride, ::stride]).ravel(order="K").astype(np.float64)
    return sample[np.isfinite(sample)]


def looks_like_ct(volume: Volume, sample: np.ndarray | None = None) -> bool:
    """True for CT: the modality says so, or the units are HU, or the values span air
    (≈ −1000 HU) to tissue, as no MR magnitude image does."""
    modality = str(volume.meta.get("modality", "")).upper()
    if modality:
        return modality == "CT"
    if volume.units.strip().upper() == "HU":
        return True
    sample = strided_sample(volume) if sample is None else sample
    if sample.size == 0:
        return False
    low, high = np.percentile(sample, [1.0, 99.0])
    return bool(low <= -500.0 and -1100.0 <= sample.min() and high >= 0.0)


def anatomy_presets(volume: Volume) -> list[WindowPreset]:
    """The presets that suit ``volume``: CT windows in HU, or MR windows from its tissue."""
    sample = strided_sample(volume)
    if sample.size == 0:
        return []
    if looks_like_ct(volume, sample):
        return [WindowPreset(name, (level - width / 2.0, level + width / 2.0)) for name, width, level in CT_WINDOWS]
    return mr_presets(sample)


def mr_presets(sample: np.ndarray) -> list[WindowPreset]:
    """MR windows from a sample of finite values:

    * "Tissue": 1–99.5 % of the tissue voxels (the head fills the grey scale, air is black);
    * "High contrast": 10–95 % of the tissue (grey and white matter pulled apart);
    * "Bright structures": 50–99.9 % of the tissue (enhancement, fat, vessels);
    * "Full range": minimum to maximum.
    """
    from skimage.filters import threshold_otsu

    low_all, high_all = float(sample.min()), float(sample.max())
    if not high_all > low_all:
        return [WindowPreset("Full range", (low_all, low_all + 1.0))]
    threshold = float(threshold_otsu(sample))
    tissue = sample[sample > threshold]
    if tissue.size < 100:
        tissue = sample
    presets = []
    for name, (a, b) in (("Tissue", (1.0, 99.5)), ("High contrast", (10.0, 95.0)),
                         ("Bright structures", (50.0, 99.9))):
        low, high = (float(v) for v in np.percentile(tissue, [a, b]))
        if high > low:
            presets.append(WindowPreset(name, (low, high)))
    presets.append(WindowPreset("Full range", (low_all, high_all)))
    return presets
