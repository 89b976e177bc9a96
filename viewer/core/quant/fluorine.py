"""¹⁹F cell counting (PRODUCT.md §3; Ahrens et al. 2005, Srinivas et al. 2007).

The body has no natural fluorine, so ¹⁹F signal above noise comes from labelled cells (and the
reference tube). Steps, all on the ¹⁹F image's own grid:

1. Noise σ of the magnitude image: from the ``background`` region, σ = mean / √(π/2)
   (Rayleigh mean); without one, from the image's median, σ = median / √(2 ln 2) (Rayleigh
   median), valid because most of a ¹⁹F image is signal-free.
2. Rician noise-bias correction: S_c = √max(S² − σ², 0).
3. Detection: S_c > detection_snr · σ, in face-connected clusters of ≥ min_cluster_voxels.
4. Calibration: S̄_ref = mean S_c in the ``reference`` region; a reference voxel holds
   F_vox = reference_fluorine_mM · 1e-3 mol/L · N_A · V[L] fluorine atoms.
5. Cells in a region = Σ over its detected voxels of S_c / S̄_ref · F_vox / atoms per cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from viewer.core.io.study import Calibration
from viewer.core.spaces import map_labels_to_grid
from viewer.core.volume import Volume

AVOGADRO = 6.02214076e23

#: Voxels sharing a face are neighbours. Diagonal (26-) connectivity would let pairs of
#: noise voxels touching at a corner pass the cluster-size test far more often.
CLUSTER_STRUCTURE = ndimage.generate_binary_structure(3, 1)


def clusters_touching(above: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The seeds plus every face-connected cluster of ``above`` that touches them.

    The drawn reference region is usually a core inside the tube; this grows it to the whole
    tube (the brightest ¹⁹F object, which holds no cells).
    """
    components, _ = ndimage.label(above, structure=CLUSTER_STRUCTURE)
    touching = np.unique(components[seeds & (components > 0)])
    return np.isin(components, touching[touching > 0]) | seeds


@dataclass(frozen=True)
class FluorineMeasures:
    """One region's ¹⁹F result; ``cells`` is None when counts cannot be calibrated."""

    signal_sum: float
    detected_voxels: int
    cells: float | None
    below_detection: bool
    nan_voxels: int = 0


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
        self._nan_voxels = int((~finite).sum())
        data = np.where(finite, data, np.float32(0))
        mapped = map_labels_to_grid(self.labels, self.fluorine) if self.labels is not None else None
        background = self._labels_named("background")
        reference = self._labels_named("reference")
        background_mask = np.isin(mapped, background) & finite if mapped is not None and background else None
        if background_mask is not None and background_mask.any():
            self.sigma = float(data[background_mask].mean()) / math.sqrt(math.pi / 2)
            self.sigma_source = "background region (Rayleigh mean)"
        else:
            self.sigma = float(np.median(data[finite])) / math.sqrt(2 * math.log(2)) if finite.any() else 0.0
            self.sigma_source = "whole-image median (Rayleigh), no background region"
            self.notes.append("¹⁹F noise σ estimated from the whole image's median: no 'background' region")
        self.corrected = np.sqrt(np.maximum(data.astype(np.float64) ** 2 - self.sigma**2, 0.0)).astype(np.float32)
        self.detected = self._detect(self.corrected)

        self.reference_signal: float | None = None
        reference_mask = np.isin(mapped, reference) & finite if mapped is not None and reference else None
        if reference_mask is not None and reference_mask.any():
            self.reference_signal = float(self.corrected[reference_mask].mean())
        else:
            self.notes.append("¹⁹F cell counts not computed: no 'reference' region on the ¹⁹F image (signal sums only)")
        self._calibration_components = self._components_touching(
            np.isin(mapped, background + reference) if mapped is not None else None
        )

    # -- calibration ----------------------------------------------------------------------------
    def _labels_named(self, name: str) -> list[int]:
        return [label for label, n in self.region_names.items() if n == name]

    def _detect(self, corrected: np.ndarray) -> np.ndarray:
        above = corrected > self.calibration.detection_snr * self.sigma
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
        """Cells per unit of corrected signal: F_vox / S̄_ref / atoms per cell."""
        atoms = self.atoms_per_reference_voxel
        per_cell = self.calibration.fluorine_atoms_per_cell
        if atoms is None or per_cell is None or not self.reference_signal:
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
        if per_signal is None:
            return None
        return self.calibration.detection_snr * self.sigma * per_signal / self.fluorine.voxel_volume_mm3

    # -- per region -------------------------------------------------------------------------------
    def measure(self, box: tuple[slice, slice, slice], mask: np.ndarray) -> FluorineMeasures:
        """Counts for the region voxels ``mask`` within ``box`` of the ¹⁹F grid."""
        detected = self.detected[box] & mask
        signal = float(self.corrected[box][detected].sum(dtype=np.float64))
        per_signal = self.cells_per_signal
        cells = signal * per_signal if per_signal is not None else None
        nan_voxels = int((~np.isfinite(np.asarray(self.fluorine.data)[box]) & mask).sum())
        return FluorineMeasures(signal, int(detected.sum()), cells, not bool(detected.any()), nan_voxels)

    def total_cells(self) -> float | None:
        """All ¹⁹F-counted cells of the image, outside the reference tube and background."""
        per_signal = self.cells_per_signal
        if per_signal is None:
            return None
        counted = self.detected & ~self._calibration_components
        return float(self.corrected[counted].sum(dtype=np.float64)) * per_signal
