"""Default levels from strided samples (issue 19): nothing whole-volume is copied, and the
explicit-levels rule holds (a one-voxel ¹⁹F hotspot reaches the top of the colormap)."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from viewer.core.display import default_display, finite_range, level_sample
from viewer.core.volume import Volume

AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])


def _fortran_memmap(tmp_path, values: np.ndarray) -> np.ndarray:
    """``values`` as a read-only Fortran-ordered memory map, like nibabel's of a .nii file."""
    path = tmp_path / "volume.raw"
    np.asfortranarray(values).ravel(order="F").tofile(path)
    return np.memmap(path, dtype=values.dtype, mode="r", shape=values.shape, order="F")


def test_a_single_hot_voxel_sets_the_top_of_the_fluorine_levels(tmp_path):
    rng = np.random.default_rng(1)
    shape = (160, 150, 140)  # 3.4 M voxels: sampled with a step of 2 per axis
    magnitude = np.hypot(rng.standard_normal(shape), rng.standard_normal(shape)).astype(np.float32) * 40.0
    magnitude[101, 77, 33] = 5000.0  # odd indices: not in the strided sample
    data = _fortran_memmap(tmp_path, magnitude)
    display = default_display(Volume(data, AFFINE, "fluorine"))
    assert display.levels[1] == 5000.0
    sigma = 40.0  # Rayleigh: the threshold is 3.5 σ, σ from the sample's median
    assert display.levels[0] == pytest.approx(3.5 * sigma, rel=0.01)


def test_levels_match_the_whole_volume_percentiles(tmp_path):
    """Against numpy's percentiles of every voxel (an independent computation) on a smooth
    anatomy-like volume with a NaN rim."""
    rng = np.random.default_rng(2)
    shape = (200, 180, 120)
    grid = np.indices(shape, sparse=True)
    head = sum(((g - n / 2) / (n / 2.5)) ** 2 for g, n in zip(grid, shape)) < 1
    values = np.where(head, 300 + 100 * rng.standard_normal(shape), 5 * rng.random(shape)).astype(np.float32)
    values[:3] = np.nan
    volume = Volume(_fortran_memmap(tmp_path, values), AFFINE, "anatomical")
    low, high = default_display(volume).levels
    finite = values[np.isfinite(values)]
    true_low, true_high = np.percentile(finite, [0.5, 99.5])
    spread = true_high - true_low
    assert abs(low - true_low) < 0.01 * spread and abs(high - true_high) < 0.01 * spread


def test_choosing_levels_copies_only_the_sample(tmp_path):
    """A 150 MB Fortran-ordered int16 memory map: the levels' peak allocation stays far below
    the volume's size (reshaping it to 1-D copied all of it)."""
    shape = (512, 512, 300)
    values = np.zeros(shape, np.int16)
    values[100:400, 100:400, 50:250] = 900
    data = _fortran_memmap(tmp_path, values)
    tracemalloc.start()
    display = default_display(Volume(data, AFFINE, "anatomical"))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert display.levels[1] == 900.0
    assert peak < 0.1 * values.nbytes, f"{peak / 1e6:.0f} MB allocated for a {values.nbytes / 1e6:.0f} MB volume"


def test_finite_range_and_sample_honour_the_exclusion_and_non_finite_values():
    data = np.arange(4 * 5 * 6, dtype=np.float64).reshape(4, 5, 6)
    data[0, 0, 0] = np.nan
    data[3, 4, 5] = np.inf
    exclude = np.zeros(data.shape, bool)
    exclude[3] = True
    assert finite_range(data) == (1.0, 118.0)
    assert finite_range(data, exclude) == (1.0, float(data[2].max()))
    assert finite_range(np.full((2, 2, 2), np.nan)) is None
    assert finite_range(np.asfortranarray(data)) == (1.0, 118.0)
    sample = level_sample(data, exclude, max_samples=30)
    step = math.ceil((data.size / 30) ** (1 / 3))
    expected = data[::step, ::step, ::step][~exclude[::step, ::step, ::step]]
    np.testing.assert_array_equal(np.sort(sample), np.sort(expected[np.isfinite(expected)]))
    assert finite_range(np.array([[[3, 9], [-2, 4]]], np.int16)) == (-2.0, 9.0)


def test_a_volume_of_nothing_finite_gets_the_neutral_display():
    display = default_display(Volume(np.full((3, 3, 3), np.nan, np.float32), AFFINE, "pet"))
    assert display.levels == (0.0, 1.0)
