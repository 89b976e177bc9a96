"""¹⁹F cell counting (PRODUCT.md §3; Ahrens et al. 2005, Srinivas et al. 2007).

The body has no natural fluorine, so ¹⁹F signal above noise comes from labelled cells (and the
reference tube). Steps, all on the ¹⁹F image's own grid:

1. Noise σ of the magnitude image: from the ``background`` region, σ = mean / √(π/2)
   (Rayleigh mean); without one, from the median of the voxels outside every region (the
   whole image when too few lie outside), σ = median / √(2 ln 2) (Rayleigh median), valid
   because most of a ¹⁹F image is signal-free. Zero-padded reconstructions (issue 13) hold
   exact zeros that are not noise samples: when more than :data:`ZERO_PADDING_FRACTION` of a
   sample is exactly 0, the zeros are left out (and the note says how many). A background
   region that is all zeros falls back to the image estimate; when no estimate is > 0, σ is
   None and counts, detection and the detection limit are not computed (a note says why) —
   σ = 0 would make every non-zero voxel "detected" and count noise as cells.
2. Rician noise-bias correction: S_c = √max(S² − σ², 0).
3. Detection: S_c > detection_snr · σ, in face-connected clusters of ≥ min_cluster_voxels.
4. Calibration: S̄_ref = mean S_c in the ``reference`` region; a reference voxel holds
   F_vox = reference_fluorine_mM · 1e-3 mol/L · N_A · V[L] fluorine atoms.
5. Cells in a region = Σ over its detected voxels of S_c / S̄_ref · F_vox / atoms per cell.

NaN/inf voxels are missing data: left out of σ, S̄_ref, detection and every sum, and counted
(:attr:`FluorineQuantifier.nonfinite_voxels`, :attr:`FluorineMeasures.nan_voxels`) so that the
output says how many were left out, never dropping them silently. A region whose ¹⁹F voxels
are all non-finite has no count (None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from viewer.core.io.study import Calibration
from viewer.core.quant.clusters import CLUSTER_STRUCTURE, clusters_touching
from viewer.core.spaces import map_labels_to_grid
from viewer.core.volume import Volume

AVOGADRO = 6.02214076e23

#: A noise sample with more than this share of voxels exactly 0 is taken as zero-padded and
#: its zeros are left out. A magnitude image's noise is exactly 0 with probability 0 in float
#: data, and for integer data rounds to 0 in < 12 % of voxels when σ ≥ 1 count.
ZERO_PADDING_FRACTION = 0.25

#: Fewest voxels outside the regions for the no-background σ estimate to use only them.
MIN_NOISE_VOXELS = 100

@dataclass(frozen=True)
class NoiseEstimate:
    """σ of the ¹⁹F magnitude noise (signal units), where it came from, any caveat, and the
    relative standard error of σ from the number of noise voxels it used."""

    sigma: float | None
    source: str
    notes: tuple[str, ...] = ()
    relative_sd: float = 0.0


#: Relative standard error × √n of σ from n Rayleigh samples: by their mean √(4/π − 1), by
#: their median 1 / (2 ln 2) (asymptotic variance of a sample median).
RAYLEIGH_MEAN_RSE = math.sqrt(4 / math.pi - 1)
RAYLEIGH_MEDIAN_RSE = 1 / (2 * math.log(2))


def without_padding(values: np.ndarray) -> tuple[np.ndarray, int]:
    """``values`` without their exact zeros when these exceed :data:`ZERO_PADDING_FRACTION`
    (zero padding, not noise), and how many zeros were left out."""
    zeros = int(np.count_nonzero(values == 0))
    if values.size and zeros > ZERO_PADDING_FRACTION * values.size:
        return values[values != 0], zeros
    return values, 0


def rayleigh_sigma_from_mean(values: np.ndarray) -> float:
    """σ from the mean of Rayleigh-distributed magnitudes: mean / √(π/2)."""
    return float(values.mean(dtype=np.float64)) / math.sqrt(math.pi / 2) if values.size else 0.0


def rayleigh_sigma_from_median(values: np.ndarray) -> float:
    """σ from the median of Rayleigh-distributed magnitudes: median / √(2 ln 2)."""
    return float(np.median(values)) / math.sqrt(2 * math.log(2)) if values.size else 0.0


def _padding_note(where: str, zeros: int) -> tuple[str, ...]:
    if not zeros:
        return ()
    note = (f"¹⁹F noise: {zeros} voxels of {where} are exactly 0 (zero-padded reconstruction) and were left out "
            "of the σ estimate")
    return (note,)


def estimate_noise(data: np.ndarray, finite: np.ndarray, background: np.ndarray | None,
                   outside_regions: np.ndarray | None) -> NoiseEstimate:
    """σ by the rule of the module docstring (step 1).

    Args:
        data: the ¹⁹F magnitudes (non-finite voxels already set to 0).
        finite: where the image is finite.
        background: the ``background`` region on the ¹⁹F grid (None without one).
        outside_regions: voxels outside every region (None without a label map).
    """
    notes: list[str] = []
    if background is not None and background.any():
        sample, zeros = without_padding(data[background & finite])
        sigma = rayleigh_sigma_from_mean(sample)
        if sigma > 0:
            return NoiseEstimate(sigma, "background region (Rayleigh mean)", _padding_note("the 'background' region", zeros),
                                 RAYLEIGH_MEAN_RSE / math.sqrt(sample.size))
        notes.append("¹⁹F noise: the 'background' region is all 0 on the ¹⁹F image (zero-padded?): σ estimated "
                     "from the image instead")
    else:
        notes.append("¹⁹F noise σ estimated from the image's median: no 'background' region on the ¹⁹F image")
    use_outside = outside_regions is not None and np.count_nonzero(outside_regions & finite) >= MIN_NOISE_VOXELS
    where = "the voxels outside the regions" if use_outside else "the whole image"
    sample, zeros = without_padding(data[(outside_regions & finite) if use_outside else finite])
    sigma = rayleigh_sigma_from_median(sample)
    if sigma > 0:
        return NoiseEstimate(sigma, f"median of {where} (Rayleigh), no usable background region",
                             (*notes, *_padding_note(where, zeros)), RAYLEIGH_MEDIAN_RSE / math.sqrt(sample.size))
    notes.append("¹⁹F cell counts not computed: the noise σ cannot be estimated (the 'background' region and "
                 f"{where} hold no non-zero voxel); detection and the detection limit need σ > 0")
    return NoiseEstimate(None, "no estimate (no non-zero noise voxels)", tuple(notes))


@dataclass(frozen=True)
class FluorineMeasures:
    """One region's ¹⁹F result; ``cells`` is None when counts cannot be calibrated (no
    reference or calibration), σ could not be estimated, or every voxel is NaN/inf.

    ``nan_voxels``: region voxels on the ¹⁹F grid that are NaN/inf (left out); ``voxels``:
    all region voxels on that grid.
    """

    signal_sum: float
    detected_voxels: int
    cells: float | None
    below_detection: bool | None
    nan_voxels: int = 0
    voxels: int = 0
    #: 95 % interval of the true cell count (:mod:`viewer.core.quant.fluorine_interval`)
    cells_ci95: tuple[float, float] | None = None
    #: the count corrected for the signal lost under the threshold (the interval's centre)
    corrected_cells: float | None = None
    #: groups of above-threshold voxels too small to count, and the cells they may hold at
    #: most (in the interval's upper end; :mod:`viewer.core.quant.fluorine_interval` point 4)
    possible_grafts: int = 0
    possible_graft_cells: float = 0.0


@dataclass
class FluorineQuantifier:
    """Per-timepoint ¹⁹F state computed once; :meth:`measure` is cheap per region.

    Args:
        fluorine: the magnitude ¹⁹F image.
        labels: the region label map (any grid) or None.
        region_names: label → name.
        calibration: the study calibration.
    """

    fluorine: Volume
    labels: Volume | None
    region_names: dict[int, str]
    calibration: Calibration
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        data = np.asarray(self.fluorine.data, dtype=np.float32)
        finite = np.isfinite(data)
        #: NaN/inf voxels of the whole ¹⁹F image (left out of everything)
        self.nonfinite_voxels = int(finite.size - np.count_nonzero(finite))
        if self.nonfinite_voxels:  # only then a copy: the quantifier (its magnitudes) lasts the session
            self.notes.append(f"¹⁹F image: {self.nonfinite_voxels} NaN/inf voxels are missing data, left out of the "
                              "noise, the calibration and every count")
            data = np.where(finite, data, np.float32(0))
        mapped = map_labels_to_grid(self.labels, self.fluorine) if self.labels is not None else None
        background = self._labels_named("background")
        reference = self._labels_named("reference")
        background_mask = np.isin(mapped, background) if mapped is not None and background else None
        noise = estimate_noise(data, finite, background_mask, (mapped == 0) if mapped is not None else None)
        self.sigma: float | None = noise.sigma
        self.sigma_relative_sd = noise.relative_sd
        self.sigma_source = noise.source
        self.notes.extend(noise.notes)
        sigma = self.sigma or 0.0
        # √max(m² − σ², 0) in float64, computed in one buffer: the same numbers as the plain
        # expression, with one float64 copy of the image alive at a time instead of two
        wide = data.astype(np.float64)
        np.square(wide, out=wide)
        wide -= sigma**2
        np.maximum(wide, 0.0, out=wide)
        np.sqrt(wide, out=wide)
        self.corrected = wide.astype(np.float32)
        del wide
        self.magnitude = data
        self.detected = self._detect(self.corrected) if self.sigma is not None else np.zeros(data.shape, bool)

        self.reference_signal: float | None = None
        reference_mask = np.isin(mapped, reference) if mapped is not None and reference else None
        self.reference_relative_sd = 0.0
        if reference_mask is not None and (reference_mask & finite).any():
            reference_values = self.corrected[reference_mask & finite].astype(np.float64)
            self.reference_signal = float(reference_values.mean())
            if reference_values.size > 1 and self.reference_signal > 0:  # standard error of the mean
                self.reference_relative_sd = float(reference_values.std(ddof=1) / math.sqrt(reference_values.size)
                                                   / self.reference_signal)
            missing = int(np.count_nonzero(reference_mask & ~finite))
            if missing:
                self.notes.append(f"¹⁹F reference: {missing} NaN/inf voxels of the 'reference' region left out of "
                                  "the reference signal")
        elif reference_mask is not None and reference_mask.any():
            self.notes.append("¹⁹F cell counts not computed: every ¹⁹F voxel of the 'reference' region is NaN/inf")
        else:
            self.notes.append("¹⁹F cell counts not computed: no 'reference' region on the ¹⁹F image (signal sums only)")
        self._calibration_components = self._components_touching(
            np.isin(mapped, background + reference) if mapped is not None else None
        )

    # -- calibration ----------------------------------------------------------------------------
    def _labels_named(self, name: str) -> list[int]:
        return [label for label, n in self.region_names.items() if n == name]

    def _detect(self, corrected: np.ndarray) -> np.ndarray:
        assert self.sigma is not None and self.sigma > 0
        above = corrected > self.calibration.detection_snr * self.sigma
        from scipy import ndimage

        components, count = ndimage.label(above, structure=CLUSTER_STRUCTURE)
        if count == 0:
            return above
        sizes = np.bincount(components.ravel())
        keep = sizes >= self.calibration.min_cluster_voxels
        keep[0] = False
        return keep[components]

    def _components_touching(self, mask: np.ndarray | None) -> np.ndarray:
        """Detected clusters that touch a calibration region (the whole tube, not just its core)."""
        if mask is None or not mask.any():
            return np.zeros(self.detected.shape, dtype=bool)
        return clusters_touching(self.detected, mask)

    @property
    def voxel_volume_l(self) -> float:
        return self.fluorine.voxel_volume_mm3 * 1e-6

    @property
    def atoms_per_reference_voxel(self) -> float | None:
        """F_vox: fluorine atoms in one voxel of the reference tube."""
        if self.calibration.reference_fluorine_mM is None:
            return None
        return self.calibration.reference_fluorine_mM * 1e-3 * AVOGADRO * self.voxel_volume_l

    @property
    def cells_per_signal(self) -> float | None:
        """Cells per unit of corrected signal: F_vox / S̄_ref / atoms per cell (None without σ,
        since S̄_ref is only meaningful after the noise-bias correction)."""
        atoms = self.atoms_per_reference_voxel
        per_cell = self.calibration.fluorine_atoms_per_cell
        if atoms is None or per_cell is None or not self.reference_signal or self.sigma is None:
            return None
        return atoms / self.reference_signal / per_cell

    @property
    def missing_calibration(self) -> list[str]:
        """Manifest keys the count needs but the study lacks."""
        keys = ("fluorine_atoms_per_cell", "reference_fluorine_mM")
        return [k for k in keys if getattr(self.calibration, k) is None]

    @property
    def detection_limit_cells_per_mm3(self) -> float | None:
        """Smallest detectable density: detection_snr·σ / S̄_ref · F_vox / atoms per cell / V[mm³]."""
        per_signal = self.cells_per_signal
        if per_signal is None or self.sigma is None:
            return None
        return self.calibration.detection_snr * self.sigma * per_signal / self.fluorine.voxel_volume_mm3

    # -- per region -------------------------------------------------------------------------------
    def measure(self, box: tuple[slice, slice, slice], mask: np.ndarray) -> FluorineMeasures:
        """Counts for the region voxels ``mask`` within ``box`` of the ¹⁹F grid.

        Without σ the signal sum is the uncorrected signal of the region's finite voxels and
        neither cells nor ``below_detection`` are given.
        """
        voxels = int(np.count_nonzero(mask))
        nan_voxels = int(np.count_nonzero(~np.isfinite(np.asarray(self.fluorine.data[box])) & mask))
        if self.sigma is None:
            return FluorineMeasures(float(self.corrected[box][mask].sum(dtype=np.float64)), 0, None, None,
                                    nan_voxels, voxels)
        detected = self.detected[box] & mask
        signal = float(self.corrected[box][detected].sum(dtype=np.float64))
        if nan_voxels >= voxels:  # nothing was measured: neither a count nor "below detection"
            return FluorineMeasures(0.0, 0, None, None, nan_voxels, voxels)
        per_signal = self.cells_per_signal
        cells = signal * per_signal if per_signal is not None else None
        if per_signal is None:
            return FluorineMeasures(signal, int(detected.sum()), cells, not bool(detected.any()), nan_voxels, voxels)
        found = self.interval.region(box, mask, voxels - nan_voxels, per_signal)
        return FluorineMeasures(signal, int(detected.sum()), cells, not bool(detected.any()), nan_voxels, voxels,
                                (found.low, found.high), found.central, found.possible_grafts,
                                found.possible_graft_cells)

    @property
    def interval(self):
        """The count intervals' per-cluster state, made on first use (detection must exist)."""
        made = self.__dict__.get("_interval")
        if made is None:
            from viewer.core.quant.fluorine_interval import CountInterval

            made = self.__dict__["_interval"] = CountInterval.of(self)
            if made.fits_failed:
                self.notes.append(f"¹⁹F intervals: the graft model did not fit {made.fits_failed} detected cluster(s); "
                                  "they keep their detected signal, ± 50 % in the interval")
        return made

    @property
    def counted(self) -> np.ndarray:
        """The voxels whose signal counts as cells: detected, outside the reference tube and
        the background (and the signal connected to them), on the ¹⁹F grid."""
        return self.detected & ~self._calibration_components

    def total_cells(self) -> float | None:
        """All ¹⁹F-counted cells of the image, outside the reference tube and background."""
        per_signal = self.cells_per_signal
        if per_signal is None:
            return None
        counted = self.counted
        return float(self.corrected[counted].sum(dtype=np.float64)) * per_signal
