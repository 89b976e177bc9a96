"""Spatial transforms between a study's world spaces (PRODUCT.md §9).

The study's *reference space* is the world space (RAS mm) of its first timepoint's anatomy. A
timepoint's ``transform`` maps that timepoint's world to the reference world; an image's
``image_transforms.ROLE`` maps that image's world to its timepoint's world (a PET/CT to the
day's MR). Loading composes them into every volume's voxel→world matrix:

    reference ← timepoint ← image ← voxel:   T_timepoint · T_image · A_file

so every later step — display, cursor, quantification, carried regions, the 3D view, render,
report — works in the reference space with exact per-pixel sampling (a rigid or affine map of
an affine grid is another affine grid: nothing is resampled). Files keep their own affines:
what is saved goes back through the inverse (:func:`file_affine`).

Transforms are 4×4 affine matrices: the last row is (0, 0, 0, 1), the 3×3 part invertible and
not mirroring (a registration between sessions never flips a patient; a flip in a manifest is
a typing error that would silently swap left and right).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: How far from (0, 0, 0, 1) the last row may be (rounding in a written manifest).
LAST_ROW_TOLERANCE = 1e-9
#: Smallest |det| of the linear part: a scale below 1 % per axis is no registration.
MIN_DETERMINANT = 1e-6


class TransformError(ValueError):
    """A matrix that cannot be a study transform (the message is one line)."""


def as_transform(value: Any, where: str = "transform") -> np.ndarray:
    """A validated 4×4 float64 affine transform from nested lists (a manifest's TOML array).

    Raises:
        TransformError: not 4×4 finite numbers, a last row other than (0, 0, 0, 1), a
            singular or mirroring linear part.
    """
    try:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) and not isinstance(value, np.ndarray):
            raise TypeError
        if any(isinstance(v, bool) for row in value for v in row):
            raise TypeError
        matrix = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TransformError(f"{where} must be a 4×4 array of numbers (four rows of four)") from None
    if matrix.shape != (4, 4):
        raise TransformError(f"{where} must be a 4×4 array of numbers, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise TransformError(f"{where} holds a NaN or infinite number")
    if np.max(np.abs(matrix[3] - (0.0, 0.0, 0.0, 1.0))) > LAST_ROW_TOLERANCE:
        raise TransformError(f"{where}: the last row must be [0, 0, 0, 1] (an affine transform)")
    determinant = float(np.linalg.det(matrix[:3, :3]))
    if abs(determinant) < MIN_DETERMINANT:
        raise TransformError(f"{where} is singular (its 3×3 part has determinant {determinant:.3g})")
    if determinant < 0:
        raise TransformError(f"{where} mirrors the image (negative determinant): left and right would swap")
    matrix[3] = (0.0, 0.0, 0.0, 1.0)
    return matrix


def as_list(matrix: np.ndarray) -> list[list[float]]:
    """A transform as the manifest writes it (four rows of four plain floats)."""
    return [[float(v) for v in row] for row in np.asarray(matrix, dtype=np.float64)]


def compose(*matrices: np.ndarray | None) -> np.ndarray:
    """The product of transforms applied right to left (None is the identity)."""
    result = np.eye(4)
    for matrix in matrices:
        if matrix is not None:
            result = result @ np.asarray(matrix, dtype=np.float64)
    return result


def is_identity(matrix: np.ndarray | None, tolerance: float = 1e-12) -> bool:
    return matrix is None or bool(np.max(np.abs(np.asarray(matrix) - np.eye(4))) <= tolerance)


def rotation_degrees(matrix: np.ndarray) -> float:
    """Angle (degrees) of the rotation closest to the linear part (polar decomposition)."""
    u, _, vt = np.linalg.svd(np.asarray(matrix, dtype=np.float64)[:3, :3])
    rotation = u @ vt
    cosine = (np.trace(rotation) - 1.0) / 2.0
    return math.degrees(math.acos(max(-1.0, min(1.0, cosine))))


def translation_mm(matrix: np.ndarray) -> float:
    """Length (mm) of the translation part."""
    return float(np.linalg.norm(np.asarray(matrix, dtype=np.float64)[:3, 3]))


def rigid(rotation_deg: Sequence[float] = (0.0, 0.0, 0.0), translation: Sequence[float] = (0.0, 0.0, 0.0),
          center: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """A rigid transform: rotations about x, then y, then z (degrees, applied in that order)
    about ``center`` (mm), then ``translation`` (mm). For phantoms, the demo and tests."""
    rx, ry, rz = (math.radians(a) for a in rotation_deg)
    x = np.array([[1, 0, 0], [0, math.cos(rx), -math.sin(rx)], [0, math.sin(rx), math.cos(rx)]])
    y = np.array([[math.cos(ry), 0, math.sin(ry)], [0, 1, 0], [-math.sin(ry), 0, math.cos(ry)]])
    z = np.array([[math.cos(rz), -math.sin(rz), 0], [math.sin(rz), math.cos(rz), 0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = z @ y @ x
    c = np.asarray(center, dtype=np.float64)
    matrix[:3, 3] = c - matrix[:3, :3] @ c + np.asarray(translation, dtype=np.float64)
    return matrix


def file_affine(voxel_to_world: np.ndarray, world_from_file: np.ndarray | None) -> np.ndarray:
    """The voxel→world matrix a file holds, for a volume placed in the reference space by
    ``world_from_file`` (what a save writes back: the file stays in its own scanner space)."""
    if world_from_file is None:
        return np.asarray(voxel_to_world, dtype=np.float64)
    return np.linalg.inv(np.asarray(world_from_file, dtype=np.float64)) @ np.asarray(voxel_to_world, dtype=np.float64)
