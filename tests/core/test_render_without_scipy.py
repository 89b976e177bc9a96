"""The ¹⁹F calibration mask and the default focus without scipy.ndimage (issue 19: its import
is ≈0.13 s of a ``viewer render`` that needs neither labelling nor filtering otherwise). Both
are checked against scipy.ndimage itself, an independent implementation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from viewer.core.layers import box_mean_3
from viewer.core.quant import clusters
from viewer.core.quant.clusters import CLUSTER_STRUCTURE, clusters_touching


def _by_labelling(above: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    components, _ = ndimage.label(above, structure=ndimage.generate_binary_structure(3, 1))
    touching = np.unique(components[seeds & (components > 0)])
    return np.isin(components, touching[touching > 0]) | seeds


def test_the_written_out_structure_is_scipys_face_connectivity():
    assert np.array_equal(CLUSTER_STRUCTURE, ndimage.generate_binary_structure(3, 1))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("work", [clusters.GROWTH_WORK, 0])
def test_grown_clusters_equal_scipys_labelling(seed, work, monkeypatch):
    """Random fields near the percolation threshold (long, branching clusters), seeds in and
    out of them; with no growth budget the scipy fallback runs instead."""
    monkeypatch.setattr(clusters, "GROWTH_WORK", work)
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(5, 40, 3))
    above = rng.random(shape) < rng.uniform(0.1, 0.35)
    seeds = np.zeros(shape, bool)
    for _ in range(int(rng.integers(1, 4))):
        corner = [int(rng.integers(0, n)) for n in shape]
        seeds[tuple(slice(c, c + 3) for c in corner)] = True
    assert np.array_equal(clusters_touching(above, seeds), _by_labelling(above, seeds))


def test_a_seed_outside_the_clusters_grows_nothing():
    above = np.zeros((9, 9, 9), bool)
    above[4, 4, 5:] = True  # a rod beside the seed, not under it
    seeds = np.zeros_like(above)
    seeds[4, 4, 4] = True
    assert np.array_equal(clusters_touching(above, seeds), seeds)
    assert np.array_equal(clusters_touching(above, seeds), _by_labelling(above, seeds))


def test_a_snake_longer_than_the_budget_falls_back_to_labelling():
    """A one-voxel-wide serpentine through the whole volume: growing it needs hundreds of steps."""
    above = np.zeros((21, 21, 3), bool)
    for row in range(0, 21, 2):
        above[row, :, 1] = True
        above[row + 1 if row + 1 < 21 else row, (20 if (row // 2) % 2 == 0 else 0), 1] = True
    seeds = np.zeros_like(above)
    seeds[0, 0, 1] = True
    expected = _by_labelling(above, seeds)
    assert expected.sum() > 200
    assert np.array_equal(clusters_touching(above, seeds), expected)


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 5, 1), (17, 9, 12)])
def test_box_mean_equals_scipys_uniform_filter(shape):
    data = np.random.default_rng(1).normal(size=shape).astype(np.float32) * 100
    expected = ndimage.uniform_filter(data.astype(np.float64), size=3)
    assert np.allclose(box_mean_3(data), expected, rtol=1e-12, atol=1e-9)
