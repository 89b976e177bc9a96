"""Registration check views (PRODUCT.md §9): two anatomies on one plane, combined so a reader
sees whether they line up — a checkerboard (edges must run on across the tiles), a blend with
a slider, or flicker (the window alternates the two).

Both images are sampled on the same display plane from their own grids (each placed in the
reference space by its transforms), windowed with the anatomy's levels, and combined here as
grey RGB: no Qt, the same pixels the window shows.
"""

from __future__ import annotations

import numpy as np

from viewer.core.display import DisplayProps, apply_window
from viewer.core.spaces import Plane, sample_plane
from viewer.core.volume import Volume

CHECK_MODES: tuple[str, ...] = ("side by side", "checkerboard", "blend", "flicker")
#: Checkerboard tile (mm): about a gyrus, so a misalignment of 1-2 mm shows at the tile edges.
TILE_MM = 12.0


def grey(volume: Volume, plane: Plane, props: DisplayProps) -> np.ndarray:
    """One anatomy on ``plane`` as 0-1 grey (outside its field of view: 0)."""
    sampled = sample_plane(volume, plane)
    values = apply_window(sampled.values, props.levels).astype(np.float32) / 255.0
    return np.where(sampled.inside, values, 0.0).astype(np.float32)


def checkerboard(a: np.ndarray, b: np.ndarray, plane: Plane, tile_mm: float = TILE_MM) -> np.ndarray:
    """Tiles of ``tile_mm`` alternating ``a`` and ``b`` (same shape), as uint8 RGB."""
    rows = (np.arange(a.shape[0]) * plane.row_step_mm // tile_mm).astype(int)
    cols = (np.arange(a.shape[1]) * plane.col_step_mm // tile_mm).astype(int)
    take_a = (rows[:, None] + cols[None, :]) % 2 == 0
    return _rgb(np.where(take_a, a, b))


def blend(a: np.ndarray, b: np.ndarray, weight_a: float) -> np.ndarray:
    """``weight_a`` of ``a`` and the rest of ``b`` (0-1), as uint8 RGB."""
    weight = float(np.clip(weight_a, 0.0, 1.0))
    return _rgb(weight * a + (1.0 - weight) * b)


def _rgb(values: np.ndarray) -> np.ndarray:
    grey8 = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(grey8[..., None], 3, axis=2)
