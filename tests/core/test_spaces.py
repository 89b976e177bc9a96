"""Geometry: display planes, plane sampling and label mapping on rotated/flipped/anisotropic grids."""

from __future__ import annotations

import numpy as np
import pytest

from tests.core.phantoms import (
    MARKER_WORLD,
    blob_function,
    centered_affine,
    grid_variants,
    linear_function,
    rotation,
    voxelise,
    world_grid,
)
from viewer.core.spaces import (
    display_plane,
    map_labels_to_grid,
    same_grid,
    sample_plane,
    sample_point,
)
from viewer.core.volume import Volume


@pytest.fixture(autouse=True, params=["numpy", "compiled"])
def plane_sampler(request, monkeypatch):
    """Every test here runs with both implementations of plane sampling: numpy (one-shot
    commands, the window before its kernels load) and the compiled kernels."""
    from viewer.core import plane_kernels

    monkeypatch.setattr(plane_kernels, "kernels_ready", lambda: request.param == "compiled")
    return request.param


def _anatomy(flips=(False, False, False), rotate=None, spacing=(1.0, 1.0, 1.0), shape=(64, 72, 56)) -> Volume:
    return voxelise(blob_function, shape, centered_affine(shape, spacing, (0, 0, 0), rotate=rotate, flips=flips))


# -- display planes ----------------------------------------------------------------------------

@pytest.mark.parametrize("flips", [(False, False, False), (True, True, False), (True, False, True)])
def test_axial_radiological_letters_and_marker_side(flips):
    anatomy = _anatomy(flips=flips)
    plane = display_plane(anatomy, "axial", MARKER_WORLD, radiological=True)
    assert plane.edge_letters() == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    image = sample_plane(anatomy, plane).values
    row, col = np.unravel_index(np.nanargmax(image), image.shape)
    # The marker is on the patient's right (x = +18) and anterior: radiological shows it on
    # the left half of the screen and in the upper half.
    assert col < image.shape[1] / 2
    assert row < image.shape[0] / 2
    expected = plane.world_to_pixel(MARKER_WORLD)
    assert abs(row - expected[0]) <= 0.5 and abs(col - expected[1]) <= 0.5


def test_neurological_mirrors_radiological_exactly():
    anatomy = _anatomy()
    radiological = sample_plane(anatomy, display_plane(anatomy, "coronal", MARKER_WORLD, True)).values
    neurological = sample_plane(anatomy, display_plane(anatomy, "coronal", MARKER_WORLD, False)).values
    np.testing.assert_array_equal(radiological[:, ::-1], neurological)
    plane = display_plane(anatomy, "coronal", MARKER_WORLD, False)
    assert plane.edge_letters() == {"left": "L", "right": "R", "top": "S", "bottom": "I"}


def test_sagittal_shows_anterior_left_superior_top():
    anatomy = _anatomy(flips=(False, True, True))
    plane = display_plane(anatomy, "sagittal", MARKER_WORLD)
    assert plane.edge_letters() == {"left": "A", "right": "P", "top": "S", "bottom": "I"}


@pytest.mark.parametrize("orientation", ["axial", "coronal", "sagittal"])
def test_flipped_and_permuted_storage_gives_identical_pixels(orientation):
    """An LPS-stored and an axis-permuted copy of the same grid display identically."""
    ras = _anatomy()
    data = np.asarray(ras.data)
    lps_affine = ras.voxel_to_world @ np.array([[-1, 0, 0, 63], [0, -1, 0, 71], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    lps = Volume.from_array(data[::-1, ::-1, :].copy(), lps_affine)
    perm = [2, 0, 1]
    permuted_affine = np.eye(4)
    permuted_affine[:3, :3] = ras.voxel_to_world[:3, :3][:, perm]
    permuted_affine[:3, 3] = ras.voxel_to_world[:3, 3]
    permuted = Volume.from_array(np.transpose(data, perm).copy(), permuted_affine)
    point = MARKER_WORLD + 0.2  # not halfway between two voxel centres, where rounding could go either way
    reference = sample_plane(ras, display_plane(ras, orientation, point)).values
    for copy in (lps, permuted):
        image = sample_plane(copy, display_plane(copy, orientation, point)).values
        np.testing.assert_array_equal(image, reference)


def test_oblique_anatomy_keeps_screen_directions():
    anatomy = _anatomy(rotate=rotation("z", 20.0) @ rotation("y", 10.0))
    plane = display_plane(anatomy, "axial", MARKER_WORLD)
    assert plane.edge_letters() == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    image = sample_plane(anatomy, plane).values
    row, col = np.unravel_index(np.nanargmax(image), image.shape)
    expected = plane.world_to_pixel(MARKER_WORLD)
    # the plane is the nearest voxel slice, so the marker is at most half a voxel off-plane
    assert abs(expected[2]) <= 0.5 * anatomy.spacing_mm.max() + 1e-9
    assert np.hypot(row - expected[0], col - expected[1]) <= 1.0


def test_anisotropic_plane_steps_are_the_voxel_sizes():
    anatomy = _anatomy(spacing=(0.7, 0.9, 3.0), shape=(90, 80, 20))
    axial = display_plane(anatomy, "axial", (0, 0, 0))
    assert axial.col_step_mm == pytest.approx(0.7) and axial.row_step_mm == pytest.approx(0.9)
    coronal = display_plane(anatomy, "coronal", (0, 0, 0))
    assert coronal.row_step_mm == pytest.approx(3.0) and coronal.shape == (20, 90)


def test_plane_position_clamps_to_grid():
    anatomy = _anatomy()
    plane = display_plane(anatomy, "axial", (0, 0, 10_000.0))
    assert plane.slice_index == anatomy.shape[2] - 1


# -- sampling overlays on other grids ------------------------------------------------------------

@pytest.mark.parametrize("variant", list(grid_variants()))
@pytest.mark.parametrize("orientation", ["axial", "coronal", "sagittal"])
def test_marker_lands_at_known_pixel_in_every_copy(variant, orientation):
    anatomy = _anatomy()
    shape, affine = grid_variants()[variant]
    overlay = voxelise(blob_function, shape, affine, role="fluorine")
    plane = display_plane(anatomy, orientation, MARKER_WORLD)
    image = sample_plane(overlay, plane).values
    row, col = np.unravel_index(np.nanargmax(image), image.shape)
    expected_row, expected_col, off_plane = plane.world_to_pixel(MARKER_WORLD)
    assert abs(off_plane) < 0.5 + 1e-9
    # tolerance: one display pixel (the marker's peak is sampled on the overlay's own grid)
    assert abs(row - expected_row) <= 1.0 and abs(col - expected_col) <= 1.0, (variant, row, col)


@pytest.mark.parametrize("variant", list(grid_variants()))
def test_linear_field_is_reproduced_exactly(variant):
    """Trilinear interpolation (and the in-plane fill) is exact for a linear field."""
    anatomy = _anatomy()
    shape, affine = grid_variants()[variant]
    overlay = voxelise(linear_function, shape, affine, role="spio", dtype=np.float64)
    for orientation in ("axial", "coronal", "sagittal"):
        plane = display_plane(anatomy, orientation, (2.0, -3.0, 4.0))
        sampled = sample_plane(overlay, plane)
        rows, cols = np.meshgrid(np.arange(plane.shape[0]), np.arange(plane.shape[1]), indexing="ij")
        world = plane.pixel_to_world_points(rows, cols)
        voxel = overlay.world_to_voxel_points(world.reshape(-1, 3)).reshape(*plane.shape, 3)
        interior = np.all((voxel >= 0) & (voxel <= np.array(shape) - 1), axis=-1)
        assert interior.sum() > 100
        truth = linear_function(world)
        # float32 output: 1e-5 relative of values up to ~300
        np.testing.assert_allclose(sampled.values[interior], truth[interior], atol=5e-3)


def test_smooth_field_matches_truth_on_rotated_grid():
    anatomy = _anatomy(spacing=(0.5, 0.5, 0.5), shape=(128, 144, 112))
    shape, affine = grid_variants()["rotated_two_axes"]
    overlay = voxelise(blob_function, shape, affine, role="pet")
    plane = display_plane(anatomy, "axial", MARKER_WORLD)
    sampled = sample_plane(overlay, plane).values
    rows, cols = np.meshgrid(np.arange(plane.shape[0]), np.arange(plane.shape[1]), indexing="ij")
    truth = blob_function(plane.pixel_to_world_points(rows, cols))
    ok = np.isfinite(sampled)
    # trilinear interpolation error of a 4 mm Gaussian on a 1.3 mm grid: ≤ 6 % of its 400 peak
    assert np.abs(sampled[ok] - truth[ok]).max() < 0.06 * 400


def test_field_of_view_mask_matches_voxel_extent():
    anatomy = _anatomy()
    small_shape = (20, 20, 20)
    affine = centered_affine(small_shape, (1.5, 1.5, 1.5), (10, 5, 0), rotate=rotation("z", 30))
    overlay = voxelise(blob_function, small_shape, affine, role="gd")
    plane = display_plane(anatomy, "axial", (10, 5, 0))
    sampled = sample_plane(overlay, plane)
    rows, cols = np.meshgrid(np.arange(plane.shape[0]), np.arange(plane.shape[1]), indexing="ij")
    voxel = overlay.world_to_voxel_points(plane.pixel_to_world_points(rows, cols).reshape(-1, 3)).reshape(*plane.shape, 3)
    expected = np.all((voxel >= -0.5) & (voxel <= np.array(small_shape) - 0.5), axis=-1)
    np.testing.assert_array_equal(sampled.inside, expected)
    assert np.all(np.isnan(sampled.values[~sampled.inside]))
    assert np.all(np.isfinite(sampled.values[sampled.inside]))


def test_nearest_keeps_label_values_and_dtype():
    anatomy = _anatomy()
    shape, affine = grid_variants()["rotated_two_axes"]
    world = world_grid(shape, affine)
    labels = np.where(np.linalg.norm(world - MARKER_WORLD, axis=-1) < 6, 3, 0).astype(np.int32)
    label_volume = Volume.from_array(labels, affine, role="regions")
    plane = display_plane(anatomy, "axial", MARKER_WORLD)
    image = sample_plane(label_volume, plane, "nearest").values
    assert image.dtype == np.int32
    assert set(np.unique(image)) == {0, 3}
    row, col, _ = plane.world_to_pixel(MARKER_WORLD)
    assert image[int(round(row)), int(round(col))] == 3


def test_sample_point_is_exact_trilinear_and_none_outside():
    shape, affine = grid_variants()["rotated_two_axes"]
    overlay = voxelise(linear_function, shape, affine, dtype=np.float64)
    point = np.array([3.3, -4.1, 2.2])
    assert sample_point(overlay, point) == pytest.approx(float(linear_function(point)), abs=1e-9)
    assert sample_point(overlay, (500.0, 0.0, 0.0)) is None


# -- label maps onto other grids ---------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["rotated_two_axes", "anisotropic", "flipped_lps"])
def test_labels_map_onto_native_grid_through_world(variant):
    label_shape = (80, 80, 80)
    label_affine = centered_affine(label_shape, (1, 1, 1), (0, 0, 0))
    label_world = world_grid(label_shape, label_affine)
    radius = 9.0
    labels = np.where(np.linalg.norm(label_world - MARKER_WORLD, axis=-1) <= radius, 2, 0).astype(np.int16)
    label_volume = Volume.from_array(labels, label_affine, role="regions")
    shape, affine = grid_variants()[variant]
    target = Volume.from_array(np.zeros(shape, np.float32), affine, role="fluorine")
    mapped = map_labels_to_grid(label_volume, target)
    distance = np.linalg.norm(world_grid(shape, affine) - MARKER_WORLD, axis=-1)
    # Nearest neighbour is exact away from the boundary; within one label voxel of it either is fine.
    assert np.all(mapped[distance < radius - 1.0] == 2)
    assert np.all(mapped[distance > radius + 1.0] == 0)
    assert mapped.dtype == np.int32


def test_same_grid_short_circuits_and_outside_is_zero():
    shape, affine = grid_variants()["plain_1mm"]
    labels = np.zeros(shape, np.int16)
    labels[5:9, 5:9, 5:9] = 4
    volume = Volume.from_array(labels, affine, role="regions")
    target = Volume.from_array(np.zeros(shape, np.float32), affine.copy(), role="pet")
    assert same_grid(volume, target)
    np.testing.assert_array_equal(map_labels_to_grid(volume, target), labels)
    far = Volume.from_array(np.zeros((10, 10, 10), np.float32), centered_affine((10, 10, 10), (1, 1, 1), (500, 0, 0)), role="pet")
    assert not map_labels_to_grid(volume, far).any()


@pytest.mark.parametrize("variant", ["rotated_two_axes", "anisotropic", "shifted_flipped_z", "flipped_lps"])
@pytest.mark.parametrize("orientation", ["axial", "coronal", "sagittal"])
def test_sampling_is_exact_trilinear_at_every_pixel(variant, orientation):
    """Random voxels (no smoothness to hide errors): every pixel equals scipy's trilinear value."""
    from scipy import ndimage

    anatomy = _anatomy(spacing=(0.6, 0.6, 0.6), shape=(100, 110, 90))
    shape, affine = grid_variants()[variant]
    data = np.random.default_rng(5).random(shape).astype(np.float32)
    overlay = Volume.from_array(data, affine, role="gd")
    plane = display_plane(anatomy, orientation, (1.3, -2.2, 0.7))
    sampled = sample_plane(overlay, plane)
    rows, cols = np.meshgrid(np.arange(plane.shape[0]), np.arange(plane.shape[1]), indexing="ij")
    voxel = overlay.world_to_voxel_points(plane.pixel_to_world_points(rows, cols).reshape(-1, 3))
    reference = ndimage.map_coordinates(data, voxel.T, order=1, mode="nearest", prefilter=False).reshape(plane.shape)
    inside = sampled.inside
    assert inside.sum() > 1000
    np.testing.assert_allclose(sampled.values[inside], reference[inside], atol=2e-5)
    labels = Volume.from_array((data * 5).astype(np.int16), affine, role="regions")
    nearest = sample_plane(labels, plane, "nearest").values
    expected = (data * 5).astype(np.int16)[tuple(np.clip(np.rint(voxel), 0, np.array(shape) - 1).astype(int).T)].reshape(plane.shape)
    # at an exact half-voxel tie either neighbour is right; compare everywhere else
    tie = np.any(np.abs(np.abs(voxel - np.floor(voxel)) - 0.5) < 1e-4, axis=1).reshape(plane.shape)
    np.testing.assert_array_equal(nearest[inside & ~tie], expected[inside & ~tie])


def test_memory_mapped_oblique_overlay_samples_like_in_memory(tmp_path):
    from viewer.core.io.nifti import load_nifti, save_nifti

    anatomy = _anatomy()
    shape, affine = grid_variants()["rotated_two_axes"]
    data = np.random.default_rng(2).random(shape).astype(np.float32)
    save_nifti(data, tmp_path / "overlay.nii", affine)
    mapped = load_nifti(tmp_path / "overlay.nii", role="pet")
    assert mapped.is_memory_mapped
    plane = display_plane(anatomy, "coronal", MARKER_WORLD)
    # the NIfTI header stores the affine in float32, hence the 1e-5 tolerance
    np.testing.assert_allclose(
        sample_plane(mapped, plane).values, sample_plane(Volume.from_array(data, affine, role="pet"), plane).values, atol=1e-5
    )


def test_region_mask_on_grid_matches_full_mapping():
    from viewer.core.spaces import region_mask_on_grid

    label_shape = (60, 60, 60)
    label_affine = centered_affine(label_shape, (1, 1, 1), (0, 0, 0))
    distance = np.linalg.norm(world_grid(label_shape, label_affine) - MARKER_WORLD, axis=-1)
    labels = np.where(distance < 7, 2, np.where(distance < 12, 1, 0)).astype(np.int16)
    label_volume = Volume.from_array(labels, label_affine, role="regions")
    shape, affine = grid_variants()["rotated_two_axes"]
    target = Volume.from_array(np.zeros(shape, np.float32), affine, role="fluorine")
    full = map_labels_to_grid(label_volume, target)
    for label in (1, 2):
        box, mask = region_mask_on_grid(label_volume, label, target)
        expected = np.zeros(shape, bool)
        expected[box] = mask
        np.testing.assert_array_equal(expected, full == label)
    assert region_mask_on_grid(label_volume, 9, target) is None


def test_resample_to_grid_reproduces_linear_field():
    from viewer.core.spaces import resample_to_grid

    shape, affine = grid_variants()["rotated_two_axes"]
    source = voxelise(linear_function, shape, affine, role="adc", dtype=np.float64)
    target_shape = (20, 22, 18)
    target_affine = centered_affine(target_shape, (1.5, 1.5, 2.0), (1, 2, 3))
    target = Volume.from_array(np.zeros(target_shape, np.uint8), target_affine)
    values = resample_to_grid(source, target)
    np.testing.assert_allclose(values, linear_function(world_grid(target_shape, target_affine)), atol=5e-3)


@pytest.mark.parametrize("chunk", [1 << 20, 35 * 47 * 4 + 1])
def test_compiled_and_numpy_label_lookups_agree(chunk, monkeypatch):
    """The window's compiled lookup and the command line's numpy lookup give identical labels,
    whether the numpy lookup does the box in one pass or in passes of a few slices."""
    from viewer.core import spaces
    from viewer.core.plane_kernels import lookup_labels

    label_shape = (50, 50, 50)
    label_affine = centered_affine(label_shape, (1, 1, 1), (0, 0, 0))
    labels = (np.random.default_rng(1).random(label_shape) * 4).astype(np.uint8)
    label_volume = Volume.from_array(labels, label_affine, role="regions")
    shape, affine = grid_variants()["rotated_two_axes"]
    target = Volume.from_array(np.zeros(shape, np.float32), affine)
    box = (slice(5, 40), slice(3, 50), slice(0, 33))
    to_labels = label_volume.world_to_voxel @ target.voxel_to_world
    compiled = lookup_labels(labels, to_labels, (5, 3, 0), (35, 47, 33))
    import sys

    monkeypatch.setattr(spaces, "LOOKUP_CHUNK_VOXELS", chunk)
    saved = sys.modules.pop("numba")
    try:
        numpy_result = spaces._lookup_labels(label_volume, target, box)
    finally:
        sys.modules["numba"] = saved
    np.testing.assert_array_equal(compiled, numpy_result)


@pytest.mark.parametrize("offset", [0, 3, 70_000])
def test_label_boxes_are_the_tight_boxes_of_every_label(offset):
    """The boxes after cropping to the labelled part equal each label's argwhere bounds (an
    independent computation), for labels touching the map's faces, a single-voxel label, a
    negative value (not a label) and label values above the dense limit (``offset``)."""
    from viewer.core.spaces import label_boxes

    rng = np.random.default_rng(5)
    data = np.zeros((40, 37, 31), np.int32)
    data[10:20, 5:9, 12:30] = 1 + offset
    data[0, 0, 0] = 2 + offset  # a corner of the map
    data[39, 36, 30] = 2 + offset  # the opposite corner: label 2's box is the whole map
    data[25, 17, 3] = 7 + offset  # one voxel
    data[rng.integers(0, 40, 50), rng.integers(0, 37, 50), rng.integers(0, 31, 50)] = 9 + offset
    data[5, 30, 20] = -4  # not a label
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    boxes = label_boxes(Volume(data, affine, "regions"))
    expected = {}
    for value in np.unique(data[data > 0]):
        where = np.argwhere(data == value)
        expected[int(value)] = tuple(slice(int(a), int(b) + 1) for a, b in zip(where.min(0), where.max(0)))
    assert boxes == expected
    inner = np.zeros_like(data)
    inner[12:14, 20:22, 7:9] = 3
    assert label_boxes(Volume(inner, affine, "regions")) == {3: (slice(12, 14), slice(20, 22), slice(7, 9))}
    assert label_boxes(Volume(np.zeros((4, 4, 4), np.int32), affine, "regions")) == {}


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.int16])
def test_sample_point_agrees_with_scipys_trilinear_interpolation(dtype):
    """The cursor readout against scipy.ndimage.map_coordinates (order 1, edges repeated), an
    independent trilinear implementation, at random points of a rotated grid, its edge
    half-voxels included; nearest against rounding the voxel coordinate."""
    from scipy import ndimage

    rng = np.random.default_rng(8)
    shape = (7, 9, 5)
    data = rng.integers(0, 200, shape).astype(dtype)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    affine = np.eye(4)
    affine[:3, :3] = q * 1.7
    affine[:3, 3] = (3.0, -2.0, 5.0)
    volume = Volume.from_array(data, affine, role="fluorine")
    for _ in range(400):
        ijk = rng.uniform(-0.5, np.array(shape) - 0.5)
        world = affine[:3, :3] @ ijk + affine[:3, 3]
        expected = ndimage.map_coordinates(data.astype(np.float64), ijk[:, None], order=1, mode="nearest")[0]
        assert sample_point(volume, world) == pytest.approx(expected, abs=1e-9)
        nearest = data[tuple(np.clip(np.rint(ijk).astype(int), 0, np.array(shape) - 1))]
        assert sample_point(volume, world, "nearest") == float(nearest)
    outside = affine[:3, :3] @ np.array([-0.6, 2.0, 2.0]) + affine[:3, 3]
    assert sample_point(volume, outside) is None
    assert sample_point(volume, np.array([np.nan, 0.0, 0.0])) is None
