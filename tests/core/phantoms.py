"""Geometry phantoms: one continuous world-space object voxelised on many different grids.

FSLeyes' habit: geometry is tested with rotated, flipped, shifted and anisotropic copies of
one image. Here the "image" is an analytic function of world mm, so every copy is exact at its
own voxel centres and the truth at any world point is known.
"""

from __future__ import annotations

import numpy as np

from viewer.core.volume import Volume


def rotation(axis: str, degrees: float) -> np.ndarray:
    """4×4 rotation about a world axis."""
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    m = np.eye(4)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def grid_affine(spacing, origin, rotate: np.ndarray | None = None, flips=(False, False, False), shape=None) -> np.ndarray:
    """voxel→world with given spacing (mm), world position of voxel 0, rotation and axis flips."""
    affine = np.diag([*spacing, 1.0]).astype(float)
    for axis, flip in enumerate(flips):
        if flip:
            affine[:3, axis] *= -1
    if rotate is not None:
        affine[:3, :3] = rotate[:3, :3] @ affine[:3, :3]
    affine[:3, 3] = origin
    return affine


def centered_affine(shape, spacing, center_world, rotate=None, flips=(False, False, False)) -> np.ndarray:
    """Affine of a grid of ``shape`` whose centre sits at ``center_world``."""
    affine = grid_affine(spacing, (0, 0, 0), rotate, flips)
    center_vox = (np.array(shape) - 1) / 2.0
    affine[:3, 3] = np.asarray(center_world, float) - affine[:3, :3] @ center_vox
    return affine


def world_grid(shape, affine) -> np.ndarray:
    """World mm of every voxel centre, shape (*shape, 3)."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


#: The asymmetric marker: a bright blob in the patient's right-anterior-superior octant, away
#: from the centre, so flips and transposes move it visibly.
MARKER_WORLD = np.array([18.0, 12.0, 9.0])


def blob_function(xyz: np.ndarray) -> np.ndarray:
    """Smooth phantom: broad background blob + narrow bright marker at MARKER_WORLD."""
    background = 100.0 * np.exp(-np.sum((xyz - np.array([-5.0, 0.0, 0.0])) ** 2, axis=-1) / (2 * 25.0**2))
    marker = 400.0 * np.exp(-np.sum((xyz - MARKER_WORLD) ** 2, axis=-1) / (2 * 4.0**2))
    return background + marker


def linear_function(xyz: np.ndarray) -> np.ndarray:
    """A linear field: trilinear interpolation reproduces it exactly."""
    return 3.0 * xyz[..., 0] - 2.0 * xyz[..., 1] + 0.5 * xyz[..., 2] + 10.0


def voxelise(function, shape, affine, role="anatomical", dtype=np.float32) -> Volume:
    """Sample ``function`` at every voxel centre of a grid."""
    return Volume.from_array(function(world_grid(shape, affine)).astype(dtype), affine, role=role)


def grid_variants(center=(0.0, 0.0, 0.0)) -> dict[str, tuple[tuple[int, int, int], np.ndarray]]:
    """Shapes and affines of the copies: plain, flipped, rotated about two axes, anisotropic, shifted."""
    rot = rotation("z", 17.0) @ rotation("x", -11.0)
    return {
        "plain_1mm": ((80, 80, 80), centered_affine((80, 80, 80), (1, 1, 1), center)),
        "flipped_lps": ((80, 80, 80), centered_affine((80, 80, 80), (1, 1, 1), center, flips=(True, True, False))),
        "rotated_two_axes": ((60, 60, 60), centered_affine((60, 60, 60), (1.3, 1.3, 1.3), center, rotate=rot)),
        "anisotropic": ((100, 70, 30), centered_affine((100, 70, 30), (0.8, 1.1, 2.6), center)),
        "shifted_flipped_z": ((70, 70, 70), centered_affine((70, 70, 70), (1.2, 1.2, 1.2), np.add(center, (3.3, -2.1, 1.7)), flips=(False, False, True))),
    }
