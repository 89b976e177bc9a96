"""The numpy plane sampler gives the compiled kernels' bits (issue 19: one-shot commands and the
window's first frames use numpy, later slice steps the kernels; a view must not change when the
kernels finish loading). The analytic checks of both are in test_spaces.py, which runs every test
with each implementation."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.core import plane_kernels


def _random_plane(rng: np.random.Generator, seed: int) -> np.ndarray:
    """A rotated, scaled, shifted pixel→voxel matrix (QR of a random matrix gives the rotation)."""
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    m = np.eye(4)
    m[:3, :3] = q * rng.uniform(0.3, 2.0)
    m[:3, 3] = rng.uniform(-5, 30, 3)
    return m


CASES = [(dtype, order, seed) for seed, (dtype, order) in enumerate(
    (d, o) for d in (np.float32, np.float64, np.uint8, np.int16, np.uint16, np.int32) for o in ("C", "F"))]


@pytest.mark.parametrize("dtype,order,seed", CASES)
def test_numpy_sampling_gives_the_kernels_bits(dtype, order, seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, 30, 3))
    data = np.asarray(rng.integers(0, 200, shape), dtype=dtype, order=order)
    interpolations = ("linear",) if np.issubdtype(dtype, np.floating) else ("linear", "nearest")
    for trial in range(6):
        matrix = _random_plane(rng, seed)
        plane = (int(rng.integers(1, 50)), int(rng.integers(1, 50)))
        for interpolation in interpolations:
            ours, ours_inside = plane_kernels.sample_on_plane_numpy(data, matrix, plane, interpolation)
            kernel, kernel_inside = plane_kernels.sample_on_plane_compiled(data, matrix, plane, interpolation)
            assert ours.dtype == kernel.dtype
            assert np.array_equal(ours_inside, kernel_inside)
            assert ours.tobytes() == kernel.tobytes(), (interpolation, trial)


@pytest.mark.parametrize("layout", ["reversed", "every_other", "single_voxel_axes"])
def test_numpy_sampling_of_strided_and_degenerate_grids(layout):
    rng = np.random.default_rng(7)
    data = rng.normal(size=(9, 8, 12)).astype(np.float32)
    if layout == "reversed":
        data = data[::-1, :, ::-1]
    elif layout == "every_other":
        data = data[::2, 1:, ::3]
    else:
        data = data[:1, :, :1]
    for _ in range(5):
        matrix = _random_plane(rng, 0)
        ours, inside = plane_kernels.sample_on_plane_numpy(data, matrix, (17, 23), "linear")
        kernel, kernel_inside = plane_kernels.sample_on_plane_compiled(np.ascontiguousarray(data), matrix, (17, 23), "linear")
        assert np.array_equal(inside, kernel_inside)
        assert ours.tobytes() == kernel.tobytes()


def test_a_linear_field_is_reproduced_at_every_inside_pixel():
    """Trilinear interpolation of a linear function is the function itself (away from the
    clamped half-voxel border): an analytic truth for the numpy path alone."""
    shape = (20, 24, 18)
    i, j, k = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    data = np.asfortranarray((2.0 * i - 3.0 * j + 0.5 * k + 7.0).astype(np.float64))
    rng = np.random.default_rng(3)
    matrix = _random_plane(rng, 0) / 1.0
    matrix[:3, 3] = (5.0, 6.0, 4.0)
    values, inside = plane_kernels.sample_on_plane_numpy(data, matrix, (40, 40), "linear")
    r, c = np.meshgrid(np.arange(40.0), np.arange(40.0), indexing="ij")
    x, y, z = (matrix[a, 0] * r + matrix[a, 1] * c + matrix[a, 3] for a in range(3))
    strictly = inside & (x >= 0) & (y >= 0) & (z >= 0) & (x <= 19) & (y <= 23) & (z <= 17)
    assert strictly.sum() > 100
    truth = 2.0 * x - 3.0 * y + 0.5 * z + 7.0
    assert np.abs(values[strictly] - truth[strictly]).max() < 1e-4 * np.abs(truth).max()
    assert np.isnan(values[~inside]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.int16, np.float64])
def test_planes_along_the_grid_are_blended_axis_by_axis_with_the_kernels_bits(dtype):
    """A plane whose rows and columns each follow one voxel axis (any of the six assignments,
    flipped, scaled, and planes whose columns follow no axis) takes the axis-by-axis path, whose
    bits must still be the kernel's."""
    rng = np.random.default_rng(11)
    cases = 0
    for order in ("C", "F"):
        for trial in range(24):
            shape = tuple(int(n) for n in rng.integers(1, 25, 3))
            data = np.asarray(rng.integers(0, 200, shape), dtype=dtype, order=order)
            axes = rng.permutation(3)
            matrix = np.zeros((4, 4))
            matrix[3, 3] = 1.0
            matrix[axes[0], 0] = rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 2.0)
            if trial % 6:
                matrix[axes[1], 1] = rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 2.0)
            matrix[:3, 3] = rng.uniform(-5, 30, 3)
            plane = (int(rng.integers(1, 40)), int(rng.integers(1, 40)))
            assert plane_kernels._axis_coordinates(matrix, *plane) is not None
            for interpolation in ("linear",) if np.issubdtype(dtype, np.floating) else ("linear", "nearest"):
                ours, ours_inside = plane_kernels.sample_on_plane_numpy(data, matrix, plane, interpolation)
                kernel, kernel_inside = plane_kernels.sample_on_plane_compiled(np.ascontiguousarray(data), matrix,
                                                                              plane, interpolation)
                assert np.array_equal(ours_inside, kernel_inside)
                assert ours.dtype == kernel.dtype and ours.tobytes() == kernel.tobytes(), (order, trial)
                cases += 1
    assert cases >= 48


def test_an_oblique_plane_does_not_take_the_axis_by_axis_path():
    matrix = _random_plane(np.random.default_rng(4), 0)
    assert plane_kernels._axis_coordinates(matrix, 10, 10) is None
    tilted = np.eye(4)
    tilted[0, 1] = 1e-12  # the smallest tilt: the columns move along two axes
    assert plane_kernels._axis_coordinates(tilted, 10, 10) is None


@pytest.mark.parametrize("block_pixels", [1, 7, 64, 10**6])
def test_oblique_planes_sampled_in_blocks_of_rows_keep_the_kernels_bits(block_pixels, monkeypatch):
    """An oblique plane is sampled a block of rows at a time (issue 19: few, reused temporaries
    instead of whole-plane ones); blocks of one row, a few rows, a partial last block or the
    whole plane must all give the kernel's bits (and a 1-pixel block budget still a whole row)."""
    monkeypatch.setattr(plane_kernels, "BLOCK_PIXELS", block_pixels)
    rng = np.random.default_rng(21)
    for dtype in (np.float32, np.int16, np.uint8):
        data = np.asarray(rng.integers(0, 300, (23, 19, 17)), dtype=dtype, order="F")
        for trial in range(4):
            matrix = _random_plane(rng, trial)
            plane = (int(rng.integers(30, 70)), int(rng.integers(5, 40)))
            for interpolation in ("linear", "nearest"):
                ours, ours_inside = plane_kernels.sample_on_plane_numpy(data, matrix, plane, interpolation)
                kernel, kernel_inside = plane_kernels.sample_on_plane_compiled(data, matrix, plane, interpolation)
                assert np.array_equal(ours_inside, kernel_inside)
                assert ours.dtype == kernel.dtype and ours.tobytes() == kernel.tobytes(), (dtype, trial, interpolation)
