"""Quantification phantoms whose truth is known by construction.

Cells are uniform balls in world space; a ¹⁹F voxel's signal is proportional to the fluorine
it contains, integrated by supersampling (so partial volume at ball edges is right); the
reference tube holds a known fluorine concentration. Regions live on a separate 1 mm grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tests.core.phantoms import centered_affine, rotation, world_grid
from viewer.core.io.study import Calibration, Study, Timepoint
from viewer.core.quant.fluorine import AVOGADRO
from viewer.core.volume import Volume

CALIBRATION = Calibration(
    fluorine_atoms_per_cell=1.0e12, reference_fluorine_mM=20.0, detection_snr=3.5, min_cluster_voxels=3,
    gd_r1_per_mM_s=4.0, gd_fmol_per_cell=10.0, dead_fraction_alert=0.2, fe_pg_per_cell=15.0, spio_r2star_per_mM_s=100.0,
)

REGION_NAMES = {1: "core", 2: "penumbra", 3: "injection site", 4: "reference", 5: "background", 6: "empty"}


@dataclass(frozen=True)
class Ball:
    center: tuple[float, float, float]
    radius_mm: float
    cells: float
    region: int


BALLS = (
    Ball((-14.0, 6.0, 2.0), 5.0, 40_000, 3),
    Ball((10.0, -4.0, -3.0), 4.0, 12_000, 2),
    Ball((10.0, 10.0, 6.0), 3.5, 5_000, 1),
)
TUBE_CENTER = np.array([-30.0, -25.0, 0.0])
TUBE_RADIUS_MM = 5.0
BACKGROUND_BOX = (np.array([20.0, -34.0, -10.0]), np.array([34.0, -22.0, 10.0]))


def _inside_ball(xyz: np.ndarray, ball: Ball) -> np.ndarray:
    return np.linalg.norm(xyz - np.array(ball.center), axis=-1) <= ball.radius_mm


def _inside_tube(xyz: np.ndarray, radius: float = TUBE_RADIUS_MM, half_length_mm: float = 15.0) -> np.ndarray:
    radial = np.linalg.norm(xyz[..., :2] - TUBE_CENTER[:2], axis=-1)
    return (radial <= radius) & (np.abs(xyz[..., 2] - TUBE_CENTER[2]) <= half_length_mm)


def region_labels() -> Volume:
    """1 mm label map: a shell region around each ball, the tube core, a background box."""
    shape = (90, 90, 50)
    affine = centered_affine(shape, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    xyz = world_grid(shape, affine)
    labels = np.zeros(shape, np.int16)
    for ball in BALLS:
        labels[np.linalg.norm(xyz - np.array(ball.center), axis=-1) <= ball.radius_mm + 5.0] = ball.region
    # the reference region is the tube's core, 2.5 mm from its wall and ends: full voxels only
    labels[_inside_tube(xyz, radius=TUBE_RADIUS_MM - 2.5, half_length_mm=12.5)] = 4
    low, high = BACKGROUND_BOX
    labels[np.all((xyz >= low) & (xyz <= high), axis=-1)] = 5
    return Volume.from_array(labels, affine, role="regions")


def supersampled_fraction(shape, affine, inside, factor: int = 3) -> np.ndarray:
    """Fraction of each voxel inside a world-space predicate (factor³ sub-samples)."""
    offsets = (np.arange(factor) + 0.5) / factor - 0.5
    total = np.zeros(shape, np.float64)
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"), axis=-1)
    for dx in offsets:
        for dy in offsets:
            for dz in offsets:
                points = (ijk + np.array([dx, dy, dz])) @ affine[:3, :3].T + affine[:3, 3]
                total += inside(points)
    return total / factor**3


def fluorine_image(sigma: float = 1.0, reference_signal: float = 20_000.0, seed: int = 0, tube: bool = True) -> tuple[Volume, float]:
    """2 mm ¹⁹F grid rotated about two axes: cell balls + reference tube + Rician noise.

    Returns the volume and F_vox (fluorine atoms of a full reference voxel).
    """
    shape = (44, 44, 26)
    affine = centered_affine(shape, (2.0, 2.0, 2.0), (-2.0, -2.0, 0.0), rotate=rotation("z", 14) @ rotation("x", 9))
    voxel_l = 8.0e-6
    atoms_per_ref_voxel = CALIBRATION.reference_fluorine_mM * 1e-3 * AVOGADRO * voxel_l
    signal = np.zeros(shape)
    if tube:
        signal += reference_signal * supersampled_fraction(shape, affine, _inside_tube)
    for ball in BALLS:
        density = ball.cells / (4 / 3 * np.pi * ball.radius_mm**3)  # cells per mm³
        atoms_full_voxel = density * 8.0 * CALIBRATION.fluorine_atoms_per_cell
        fraction = supersampled_fraction(shape, affine, lambda p, b=ball: _inside_ball(p, b))
        signal += reference_signal * atoms_full_voxel / atoms_per_ref_voxel * fraction
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, sigma, (2, *shape))
    magnitude = np.hypot(signal + noise[0], noise[1]).astype(np.float32)
    return Volume.from_array(magnitude, affine, role="fluorine"), atoms_per_ref_voxel


def _relaxation_map(mol_by_region: dict[int, float], relaxivity_per_mM_s: float, role: str, sigma: float, seed: int) -> Volume:
    """ΔR on a third grid (1.5 mm, rotated about y): each ball's agent spread uniformly over it."""
    shape = (60, 60, 36)
    affine = centered_affine(shape, (1.5, 1.5, 1.5), (-1.0, 0.5, 0.0), rotate=rotation("y", -12))
    voxel_l = 1.5**3 * 1e-6
    values = np.zeros(shape)
    for ball in BALLS:
        fraction = supersampled_fraction(shape, affine, lambda p, b=ball: _inside_ball(p, b))
        per_voxel_mol = mol_by_region.get(ball.region, 0.0) * fraction / fraction.sum()
        values += relaxivity_per_mM_s * per_voxel_mol / voxel_l * 1e3  # ΔR = relaxivity · mM
    values += np.random.default_rng(seed).normal(0.0, sigma, shape)
    return Volume.from_array(values.astype(np.float32), affine, role=role)


def gd_image(dead_by_region: dict[int, float], sigma: float = 0.0, seed: int = 1) -> Volume:
    """ΔR1 (1/s): Gd released by the dead cells of each ball."""
    mol = {region: dead * CALIBRATION.gd_fmol_per_cell * 1e-15 for region, dead in dead_by_region.items()}
    return _relaxation_map(mol, CALIBRATION.gd_r1_per_mM_s, "gd", sigma, seed)


def spio_image(sigma: float = 0.0, seed: int = 2) -> Volume:
    """ΔR2* (1/s): the iron of every cell of each ball (fe_pg_per_cell, 55.845 g/mol)."""
    mol = {ball.region: ball.cells * CALIBRATION.fe_pg_per_cell * 1e-12 / 55.845 for ball in BALLS}
    return _relaxation_map(mol, CALIBRATION.spio_r2star_per_mM_s, "spio", sigma, seed)


def study(timepoint: Timepoint | None = None, calibration: Calibration = CALIBRATION) -> Study:
    timepoint = timepoint or Timepoint("day 7", 7.0, {}, REGION_NAMES)
    return Study("phantom", None, {"id": "phantom"}, calibration, (timepoint,))
