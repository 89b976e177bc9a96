"""95 % intervals of ¹⁹F cell counts (PRODUCT.md §3 "Uncertainty and honest limits", issue 17;
the method and its measured coverage: docs/fluorine_intervals.md).

The §3 count is the calibrated sum of the detected voxels' corrected signal. Its interval is of
the *true* count, so it accounts for:

1. the signal lost under the threshold and at cluster edges, with the voxels' own noise: each
   detected cluster's whole signal and its standard error come from a fitted graft model
   (:mod:`viewer.core.quant.fluorine_graft_fit`); a region holding part of a cluster takes
   that part's share (by detected signal). Clusters are independent: their errors add in
   quadrature. The fit's delta-method error is widened by SE_INFLATION, measured by
   simulation (the delta method ignores the fit's non-linearity and covered 80–97 % instead
   of 95 %);
2. the reference mean S̄_ref: its standard error from the reference voxels' spread;
3. σ itself: its standard error from the number of noise voxels it was estimated from, times
   SIGMA_SENSITIVITY, the largest |d log count / d log σ| measured on the coverage phantom
   (0.003–0.27: σ moves the threshold, the Rician correction and S̄_ref, which partly cancel);

2 and 3 scale every count of the image alike and add to 1 in quadrature as relative errors.
A region with nothing detected gets [0, high], high a 95 % upper bound on its signal that holds
however the cells are spread: Σ M² − 2nσ² estimates Σ A² without bias over the region's n
voxels (E[M²] = A² + 2σ² for a Rician magnitude), its upper 95 % bound follows from
Var(M²) = 4σ²A² + 4σ⁴, and Σ A ≤ √(n Σ A²) (Cauchy–Schwarz, tight for signal spread evenly);
never more than every voxel at the threshold.

4. A graft too small to count: voxels above the threshold in a group smaller than
   ``min_cluster_voxels`` are not counted (§3: lone noise voxels look like that), but a group
   of two or more is rarely noise (two face-neighbours both above 3.5 σ: about one pair per
   10⁵ noise voxels) and often a small graft whose faint voxels fell under the threshold. Such
   a group is fitted like a cluster and its upper 95 % bound (or, when the fit is not
   believed, the Cauchy–Schwarz bound over its neighbourhood) is added to the upper end of
   its region's interval, never to the centre or the lower end.

A region with detected clusters may still hold cells spread thinly below the threshold away
from them, with no two neighbouring voxels above it: they are not in its interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage

from viewer.core.quant.clusters import CLUSTER_STRUCTURE
from viewer.core.quant.fluorine_graft_fit import NEIGHBOURHOOD_VOXELS, fit_graft

Z95 = 1.959963984540054
#: Factor on the fit's delta-method standard error (calibrated by simulation, module notes).
SE_INFLATION = 1.3
#: |d log count / d log σ| assumed for the σ term (module notes, point 3).
SIGMA_SENSITIVITY = 0.3
#: A fit whose graft holds less than this share of the detected signal, or more than its
#: inverse (2×), is not believed: the cluster keeps its detected signal, ± FALLBACK_RSD.
FIT_PLAUSIBLE = 0.5
FALLBACK_RSD = 0.5
#: Room around a cluster for its fit, voxels (the neighbourhood plus a graft larger than seen).
FIT_MARGIN_VOXELS = NEIGHBOURHOOD_VOXELS + 3
#: Smallest group of above-threshold voxels, too small to count, taken as a possible graft (module notes, point 4).
CANDIDATE_MIN_VOXELS = 2
#: A candidate's fit is believed up to this multiple of its detected signal (a pair of voxels
#: is most of a small graft's signal only when the graft sits on a voxel's centre).
CANDIDATE_PLAUSIBLE_RATIO = 4.0


@dataclass(frozen=True)
class CountInterval:
    """Per detected cluster of one ¹⁹F image: its label map and correction quantiles."""

    labels: np.ndarray  # counted clusters 1..n on the ¹⁹F grid, 0 elsewhere
    corrected: np.ndarray  # the noise-corrected signal on the ¹⁹F grid (the quantifier's array)
    factors: np.ndarray  # (n + 1, 2): row k = cluster k's (whole / detected signal, standard error / detected)
    calibration_rsd: float  # relative standard error shared by every count (S̄_ref, σ)
    magnitude: np.ndarray  # the ¹⁹F magnitudes (non-finite set to 0)
    sigma: float
    threshold_signal: float  # detection_snr · σ

    fits_failed: int = 0  # clusters whose fit was not believed (they keep their detected signal)
    #: groups of above-threshold voxels too small to count, 1..m on the ¹⁹F grid (point 4)
    candidates: np.ndarray | None = None
    candidate_boxes: tuple = ()  # candidate k's bounding box (slices) at k − 1
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)  # ¹⁹F voxel size per axis, mm
    #: candidate k → its upper 95 % bound on its signal per unit of its corrected signal, fitted
    #: when a region or ROI first holds it (most lie in air, where nothing asks)
    _candidate_upper: dict[int, float] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, quantifier: Any) -> CountInterval:
        """The state of a prepared :class:`~viewer.core.quant.fluorine.FluorineQuantifier`."""
        sigma = float(quantifier.sigma)
        calibration = quantifier.calibration
        labels, count = ndimage.label(quantifier.counted, structure=CLUSTER_STRUCTURE)
        corrected = quantifier.corrected
        factors = np.ones((count + 1, 2))
        spacing = tuple(float(v) for v in np.linalg.norm(quantifier.fluorine.voxel_to_world[:3, :3], axis=0))
        failed = 0
        # a neighbouring cluster is not this graft's edge
        for index, _box, _cluster, detected, fit in _fits(labels, corrected, sigma, spacing, labels > 0):
            ratio = fit.signal / detected if detected > 0 else 0.0
            if fit.converged and FIT_PLAUSIBLE <= ratio <= 1 / FIT_PLAUSIBLE:
                factors[index] = (ratio, SE_INFLATION * fit.standard_error / detected)
            else:
                failed += 1
                factors[index] = (1.0, FALLBACK_RSD)
        rsd = math.hypot(quantifier.reference_relative_sd, SIGMA_SENSITIVITY * quantifier.sigma_relative_sd)
        threshold = float(calibration.detection_snr) * sigma
        candidates = _candidate_groups(quantifier, threshold)
        boxes = tuple(ndimage.find_objects(candidates)) if candidates is not None else ()
        return cls(labels, corrected, factors, rsd, quantifier.magnitude, sigma, threshold, failed, candidates,
                   boxes, spacing)  # type: ignore[arg-type]

    def _undetected_bound(self, box, mask: np.ndarray, finite_voxels: int) -> float:
        """95 % upper bound on the signal of a region with nothing detected (module notes)."""
        return spread_signal_bound(self.magnitude[box][mask], self.sigma, finite_voxels, self.threshold_signal)

    def candidates_in(self, box: tuple[slice, slice, slice], mask: np.ndarray) -> tuple[int, float]:
        """(how many, upper bound on their signal in a.u.) of the too-small groups in a region
        (point 4); a group split between regions adds its share by voxel signal."""
        if self.candidates is None:
            return 0, 0.0
        labels = self.candidates[box][mask]
        inside = labels > 0
        if not inside.any():
            return 0, 0.0
        groups, where = np.unique(labels[inside], return_inverse=True)
        share = np.bincount(where, weights=self.corrected[box][mask][inside].astype(np.float64))
        upper = np.array([self._candidate_bound(int(group)) for group in groups])
        return int(groups.size), float(np.sum(upper * share))

    def _candidate_bound(self, index: int) -> float:
        """Candidate ``index``'s upper 95 % bound per unit of its corrected signal: the fit's
        upper end, or the spread-signal bound over its neighbourhood when the fit is not
        believed (module notes, point 4); fitted once."""
        known = self._candidate_upper.get(index)
        if known is not None:
            return known
        assert self.candidates is not None
        box, group, detected, fit = _fit_group(self.candidates, index, self.candidate_boxes[index - 1], self.corrected,
                                               self.sigma, self.spacing, self.labels > 0)
        counted = self.labels[box] > 0
        if fit.converged and FIT_PLAUSIBLE <= fit.signal / detected <= CANDIDATE_PLAUSIBLE_RATIO:
            bound = fit.signal + Z95 * SE_INFLATION * fit.standard_error  # σ units
        else:
            around = ndimage.binary_dilation(group, CLUSTER_STRUCTURE, iterations=NEIGHBOURHOOD_VOXELS) & ~counted
            bound = spread_signal_bound(self.magnitude[box][around], self.sigma, int(around.sum()),
                                        self.threshold_signal) / self.sigma
        self._candidate_upper[index] = bound / detected
        return self._candidate_upper[index]

    def region(self, box: tuple[slice, slice, slice], mask: np.ndarray, finite_voxels: int,
               cells_per_signal: float) -> RegionInterval:
        """The interval of the region voxels ``mask`` within ``box``, in cells (see
        :class:`RegionInterval`)."""
        labels = self.labels[box][mask]
        inside = labels > 0
        groups, possible = self.candidates_in(box, mask)
        if not inside.any():
            high = max(self._undetected_bound(box, mask, finite_voxels), possible)
            return RegionInterval(0.0, 0.0, high * cells_per_signal, groups, possible * cells_per_signal)
        clusters, where = np.unique(labels[inside], return_inverse=True)
        share = np.bincount(where, weights=self.corrected[box][mask][inside].astype(np.float64))
        central = float(np.sum(share * self.factors[clusters, 0]))
        spread = float(np.sqrt(np.sum((share * self.factors[clusters, 1]) ** 2)))
        half = Z95 * math.hypot(spread, self.calibration_rsd * central)
        lower, upper = max(central - half, 0.0), central + half + possible * (1.0 + Z95 * self.calibration_rsd)
        return RegionInterval(lower * cells_per_signal, central * cells_per_signal, upper * cells_per_signal,
                              groups, possible * cells_per_signal)


class RegionInterval(NamedTuple):
    """One region's 95 % interval, in cells: ``central`` is the count corrected for the lost
    signal (the clusters' fitted wholes); ``possible_grafts`` groups too small to count (point
    4) may hold up to ``possible_graft_cells``, which ``high`` includes."""

    low: float
    central: float
    high: float
    possible_grafts: int
    possible_graft_cells: float


def spread_signal_bound(magnitudes: np.ndarray, sigma: float, finite_voxels: int, threshold_signal: float) -> float:
    """95 % upper bound (a.u.) on the summed signal of voxels however it is spread over them
    (module notes, a region with nothing detected): Σ M² − 2nσ² is unbiased for Σ A², Var(M²) = 4σ²A² + 4σ⁴, and
    Σ A ≤ √(n Σ A²); never more than every voxel at the threshold. NaN voxels must be 0 in
    ``magnitudes`` and not counted in ``finite_voxels``."""
    n = max(finite_voxels, 0)
    if n == 0:
        return 0.0
    excess = magnitudes.astype(np.float64) ** 2 - 2.0 * sigma**2
    variance = float(np.sum(4.0 * sigma**4 + 4.0 * sigma**2 * np.maximum(excess, 0.0)))
    upper_squares = max(float(excess.sum()) + Z95 * math.sqrt(variance), 0.0)
    return min(math.sqrt(n * upper_squares), n * threshold_signal)


def _fits(labels: np.ndarray, corrected: np.ndarray, sigma: float, spacing: tuple[float, float, float],
          excluded: np.ndarray):
    """Fit a graft to each labelled group: yields (label, box, the group's voxels in the box,
    its detected signal in σ units, its :class:`GraftFit`)."""
    for index, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is not None:
            yield (index, *_fit_group(labels, index, where, corrected, sigma, spacing, excluded))


def _fit_group(labels: np.ndarray, index: int, where: tuple[slice, ...], corrected: np.ndarray, sigma: float,
               spacing: tuple[float, float, float], excluded: np.ndarray):
    """(box, the group's voxels in the box, its detected signal in σ units, its
    :class:`GraftFit`) for label ``index`` whose bounding box is ``where``; ``excluded`` voxels
    (other clusters) are left out of the fit, except the group's own."""
    box = tuple(slice(max(s.start - FIT_MARGIN_VOXELS, 0), s.stop + FIT_MARGIN_VOXELS) for s in where)
    group = labels[box] == index
    snr = corrected[box] / sigma
    others = excluded[box] & ~group
    return box, group, float(snr[group].sum()), fit_graft(snr, group, spacing, others)  # type: ignore[arg-type]


def _candidate_groups(quantifier: Any, threshold: float) -> np.ndarray | None:
    """Groups of above-threshold voxels too small to count (module notes, point 4), labelled
    1..m on the ¹⁹F grid; None when there are none or clusters of two already count."""
    if int(quantifier.calibration.min_cluster_voxels) <= CANDIDATE_MIN_VOXELS:
        return None
    above = (quantifier.corrected > threshold) & ~quantifier.detected
    groups, count = ndimage.label(above, structure=CLUSTER_STRUCTURE)
    if count == 0:
        return None
    sizes = np.bincount(groups.ravel(), minlength=count + 1)
    keep = sizes >= CANDIDATE_MIN_VOXELS
    keep[0] = False
    if not keep.any():
        return None
    renumber = np.zeros(count + 1, dtype=np.int32)
    renumber[keep] = np.arange(1, int(keep.sum()) + 1)
    return renumber[groups]
