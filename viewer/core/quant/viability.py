"""Viability from dual contrast (PRODUCT.md §3).

Gadolinium loaded into the cells stays quenched while they live and is released when they
die, raising R1 (ΔR1 = r1 · [Gd]); iron (SPIO) marks where labelled cells are (ΔR2* = r2* ·
[Fe]). Sums run over all region voxels *without clipping each voxel*, so zero-mean noise
cancels instead of biasing the total upward; only the final sum is floored at 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from viewer.core.volume import Volume

#: Molar mass of iron (g/mol), to turn SPIO iron moles into grams per cell.
IRON_G_PER_MOL = 55.845


@dataclass(frozen=True)
class MapSum:
    """Σ of a map's finite voxels over a region, with the voxel counts behind it."""

    total: float
    voxels: int
    nan_voxels: int
    voxel_volume_l: float


def region_sum(volume: Volume, box: tuple[slice, slice, slice], mask: np.ndarray) -> MapSum:
    """Sum of the finite voxels of ``volume`` under ``mask`` (within ``box`` of its grid)."""
    values = np.asarray(volume.data[box], dtype=np.float64)[mask]
    finite = np.isfinite(values)
    return MapSum(float(values[finite].sum()), int(finite.sum()), int((~finite).sum()), volume.voxel_volume_mm3 * 1e-6)


def released_gd_mol(delta_r1: MapSum, r1_per_mM_s: float) -> float:
    """Released gadolinium (mol) = max(Σ ΔR1, 0) / r1 · 1e-3 · V[L] (ΔR1 in 1/s, r1 in 1/(mM·s))."""
    return max(delta_r1.total, 0.0) / r1_per_mM_s * 1e-3 * delta_r1.voxel_volume_l


def dead_cells_from_gd(gd_mol: float, gd_fmol_per_cell: float) -> float:
    """Dead cells = released Gd / Gd per cell (fmol → mol)."""
    return gd_mol / (gd_fmol_per_cell * 1e-15)


def cells_from_spio(delta_r2star: MapSum, r2star_per_mM_s: float, fe_pg_per_cell: float) -> float:
    """All labelled cells from iron: max(Σ ΔR2*, 0) / r2* · 1e-3 · V[L] mol Fe → g → cells."""
    iron_mol = max(delta_r2star.total, 0.0) / r2star_per_mM_s * 1e-3 * delta_r2star.voxel_volume_l
    return iron_mol * IRON_G_PER_MOL / (fe_pg_per_cell * 1e-12)


@dataclass(frozen=True)
class Viability:
    """Live/dead split of a region.

    ``dead_exceeds_total``: the Gd-implied dead count is above the total (¹⁹F or SPIO) count —
    the two measurements contradict each other (a Gd calibration, a ΔR1 baseline or the ¹⁹F
    reference is off), so no split is given; the caller says so in a note.
    """

    live_cells: float | None
    dead_fraction: float | None
    rejection_alert: bool | None
    dead_exceeds_total: bool = False


def viability(total_cells: float | None, dead_cells: float | None, alert_fraction: float) -> Viability:
    """live = total − dead; dead fraction = dead / total; alert at the threshold.

    Dead cells above a positive total are not capped to a plausible split (live 0, fraction 1):
    live cells and the dead fraction are None and ``dead_exceeds_total`` is set; the alert is
    raised, since the dead share is at least the threshold whichever count is wrong. A total of
    0 (nothing detected) gives no fraction and 0 live cells, as before.
    """
    if total_cells is None or dead_cells is None:
        return Viability(None, None, None)
    if total_cells <= 0:
        return Viability(0.0, None, None)
    if dead_cells > total_cells:
        return Viability(None, None, True, dead_exceeds_total=True)
    fraction = dead_cells / total_cells
    return Viability(total_cells - dead_cells, fraction, fraction >= alert_fraction)
