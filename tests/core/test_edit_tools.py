"""Annotation tools: brush/eraser, stroke, polygon, threshold paint, flood fill, fill-between-slices,
core/penumbra proposal — on anisotropic and oblique grids, as bounding-box edits."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from tests.core.phantoms import centered_affine, rotation
from viewer.core.edit_tools import (
    apply_proposal,
    brush,
    brush_stroke,
    flood_fill,
    interpolate_slices,
    polygon_fill,
    slice_slab,
    threshold_paint,
    threshold_stroke,
)
from viewer.core.quant.perfusion import propose_core_penumbra
from viewer.core.regions import EditableLabels, LabelTable
from viewer.core.spaces import display_plane
from viewer.core.volume import Volume

CENTER = np.array([12.0, -30.0, 25.0])
ANISO = (0.7, 0.9, 1.5)
OBLIQUE = rotation("z", 25.0) @ rotation("x", 35.0)


def _edits(shape=(64, 64, 40), spacing=ANISO, rotate=None, dtype=np.uint8, names=None, data=None) -> EditableLabels:
    affine = centered_affine(shape, spacing, CENTER, rotate)
    volume = Volume.from_array(np.zeros(shape, dtype) if data is None else data, affine, role="regions")
    return EditableLabels(volume, LabelTable.from_names(names or {1: "core", 2: "penumbra", 3: "injection site"}))


def _centres(volume: Volume, mask: np.ndarray, box=None) -> np.ndarray:
    ijk = np.argwhere(mask)
    if box is not None:
        ijk = ijk + np.array([s.start for s in box])
    return volume.voxel_to_world_points(ijk)


# -- brush ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("rotate", [None, OBLIQUE], ids=["anisotropic", "oblique"])
def test_sphere_brush_volume_matches_the_ball(rotate):
    edits = _edits(rotate=rotate)
    edit = brush(edits, CENTER, 10.0, 1, sphere=True)
    painted = edits.data == 1
    volume_mm3 = painted.sum() * edits.labels.voxel_volume_mm3
    assert volume_mm3 == pytest.approx(4 / 3 * np.pi * 10.0**3, rel=0.02)
    # inclusion rule: every painted voxel centre within 10 mm, every voxel within 10 mm painted
    all_ijk = np.argwhere(np.ones(edits.data.shape, bool))
    distance = np.linalg.norm(edits.labels.voxel_to_world_points(all_ijk) - CENTER, axis=1).reshape(edits.data.shape)
    np.testing.assert_array_equal(painted, distance <= 10.0)
    # history holds the box (before + after), compressed: never more than the raw box
    assert edit is not None and 0 < edit.nbytes <= 2 * painted[edit.box].size


@pytest.mark.parametrize("rotate", [None, OBLIQUE], ids=["anisotropic", "oblique"])
def test_disk_brush_area_and_only_the_current_slice(rotate):
    edits = _edits(rotate=rotate)
    plane = display_plane(edits.labels, "axial", CENTER)
    point = CENTER + 0.3 * plane.pixel_to_world[:3, 0]  # not on a voxel centre
    edit = brush(edits, point, 10.0, 2, plane=plane)
    painted = edits.data == 2
    axis = plane.normal_axis
    touched = np.flatnonzero(painted.any(axis=tuple(a for a in range(3) if a != axis)))
    assert touched.tolist() == [plane.slice_index]
    assert edit.box[axis] == slice(plane.slice_index, plane.slice_index + 1)
    pixel_area = plane.row_step_mm * plane.col_step_mm
    assert painted.sum() * pixel_area == pytest.approx(np.pi * 10.0**2, rel=0.03)
    # in-plane distance rule
    centres = _centres(edits.labels, painted)
    assert np.all(np.linalg.norm(slice_slab(edits.labels, plane).project(centres) - slice_slab(edits.labels, plane).project(point), axis=1) <= 10.0)


def test_disk_on_a_plane_of_another_grid_paints_one_voxel_per_column():
    anatomy = Volume.from_array(np.zeros((80, 80, 50), np.float32), centered_affine((80, 80, 50), (0.5, 0.5, 1.0), CENTER))
    edits = _edits(spacing=(1.1, 1.3, 1.7), rotate=rotation("y", 20.0))
    plane = display_plane(anatomy, "coronal", CENTER)
    brush(edits, CENTER, 8.0, 1, plane=plane)
    painted = edits.data == 1
    slab = slice_slab(edits.labels, plane)
    assert painted.sum(axis=slab.axis).max() == 1  # a single voxel thick along the normal axis
    centres = _centres(edits.labels, painted)
    height = (centres - slab.origin) @ slab.normal
    assert np.all(np.abs(height) <= 0.5 * abs(slab.step_mm) + 1e-9)
    # area: columns along the dominant axis are |step| / voxel volume per mm² of plane
    area = painted.sum() * edits.labels.voxel_volume_mm3 / abs(slab.step_mm)
    assert area == pytest.approx(np.pi * 8.0**2, rel=0.05)


def test_erase_restores_zero_and_keeps_voxels_outside_the_eraser():
    edits = _edits()
    plane = display_plane(edits.labels, "coronal", CENTER)
    brush(edits, CENTER, 6.0, 2, plane=plane)
    brush(edits, CENTER, 6.0, 0, plane=plane)
    assert not edits.data.any()
    brush(edits, CENTER, 6.0, 1, sphere=True)
    brush(edits, CENTER + [8, 0, 0], 4.0, 3, sphere=True)
    brush(edits, CENTER, 6.0, 0, sphere=True)
    assert not (edits.data == 1).any()
    assert (edits.data == 3).sum() > 0  # outside the eraser: kept


def test_a_stroke_is_one_undo_step():
    edits = _edits()
    plane = display_plane(edits.labels, "axial", CENTER)
    points = [CENTER + [dx, 0.5 * dx, 0] for dx in np.linspace(-15, 15, 12)]
    before = len(edits.history())
    edit = brush_stroke(edits, points, 3.0, 1, plane=plane)
    assert edit is not None and len(edits.history()) == before + 1
    painted = edits.data == 1
    # the stroke is a connected band covering every sample and the segments between them
    assert ndimage.label(painted)[1] == 1
    assert painted.sum() * plane.row_step_mm * plane.col_step_mm == pytest.approx(
        np.pi * 9 + 6 * np.hypot(30, 15), rel=0.05)  # capsule: disk + 2r × length
    edits.undo()
    assert not edits.data.any()


def test_a_stroke_between_two_points_outside_the_grid_still_crosses_it():
    edits = _edits()
    plane = display_plane(edits.labels, "axial", CENTER)
    right = plane.pixel_to_world[:3, 1] / plane.col_step_mm
    edit = brush_stroke(edits, [CENTER - 200 * right, CENTER + 200 * right], 2.0, 1, plane=plane)
    assert edit is not None and (edits.data == 1).any()


def test_sphere_stroke_memory_is_the_box_not_the_map():
    edits = _edits(shape=(160, 120, 80), spacing=(1.0, 1.0, 1.0))
    start = CENTER.copy()
    points = [start, start + [10, 0, 0], start + [20, 0, 0]]
    edit = brush_stroke(edits, points, 20.0, 1, sphere=True)
    box_voxels = int(np.prod([s.stop - s.start for s in edit.box]))
    assert 0 < edit.nbytes <= 2 * box_voxels * edits.data.itemsize  # compressed box diff
    # the capsule's box: 20 + 20 + 20 mm long, 40 mm across; the grid's centre (the stroke's
    # start) lies between voxel centres, so 60 × 40 × 40 voxel centres are within reach
    assert box_voxels == 60 * 40 * 40
    assert edit.nbytes < 0.15 * edits.data.nbytes
    edits.undo()
    assert not edits.data.any()


def test_locked_labels_survive_the_brush():
    from viewer.core.regions import LabelEntry

    edits = _edits()
    brush(edits, CENTER, 4.0, 3, sphere=True)
    edits.set_table("lock", edits.table.with_entry(LabelEntry(3, "injection site", (0, 0, 0), locked=True)))
    n3 = (edits.data == 3).sum()
    brush(edits, CENTER, 8.0, 1, sphere=True)
    assert (edits.data == 3).sum() == n3


def test_label_too_large_for_the_map_is_refused():
    with pytest.raises(ValueError):
        brush(_edits(), CENTER, 3.0, 300, sphere=True)
    with pytest.raises(ValueError):
        brush(_edits(), CENTER, 3.0, 1)  # a 2-D brush without a plane


# -- polygon -----------------------------------------------------------------------------------------

def test_polygon_square_fills_exactly_the_expected_voxels():
    edits = _edits(spacing=(0.5, 0.5, 2.0))
    plane = display_plane(edits.labels, "axial", CENTER)
    k = plane.slice_index
    corners = np.array([[10, 10, k], [10, 20, k], [20, 20, k], [20, 10, k]], float)
    edit = polygon_fill(edits, plane, edits.labels.voxel_to_world_points(corners), 1)
    painted = edits.data == 1
    assert painted.sum() == 11 * 11  # voxel centres inside or on the boundary
    assert painted[10:21, 10:21, k].all() and edit.box == (slice(10, 21), slice(10, 21), slice(k, k + 1))
    # half-voxel corners: exactly 10 × 10
    edits.undo()
    polygon_fill(edits, plane, edits.labels.voxel_to_world_points(corners + [[-0.5, -0.5, 0], [-0.5, -0.5, 0], [-0.5, -0.5, 0], [-0.5, -0.5, 0]]), 2)
    assert (edits.data == 2).sum() == 100 and (edits.data[10:20, 10:20, k] == 2).all()


def test_polygon_triangle_area():
    edits = _edits(shape=(120, 120, 20), spacing=(0.5, 0.5, 2.0))
    plane = display_plane(edits.labels, "axial", CENTER)
    right, down = plane.pixel_to_world[:3, 1] / plane.col_step_mm, plane.pixel_to_world[:3, 0] / plane.row_step_mm
    base = CENTER - 20 * right - 20 * down
    triangle = [base + 3.3 * right + 4.1 * down, base + 40.7 * right + 10.2 * down, base + 15.4 * right + 37.9 * down]
    polygon_fill(edits, plane, triangle, 1)
    (a, b), (c, d) = (triangle[1] - triangle[0]) @ np.c_[right, down], (triangle[2] - triangle[0]) @ np.c_[right, down]
    area = 0.5 * abs(a * d - b * c)
    assert (edits.data == 1).sum() * 0.25 == pytest.approx(area, rel=0.05)


def test_polygon_on_a_plane_of_another_grid():
    anatomy = Volume.from_array(np.zeros((100, 100, 40), np.float32), centered_affine((100, 100, 40), (0.4, 0.4, 1.0), CENTER))
    edits = _edits(spacing=(0.8, 0.9, 1.2), rotate=rotation("x", 15.0))
    plane = display_plane(anatomy, "axial", CENTER)
    side = 20.0
    right, down = plane.pixel_to_world[:3, 1] / plane.col_step_mm, plane.pixel_to_world[:3, 0] / plane.row_step_mm
    turn = np.deg2rad(20.0)  # turned in the plane so its edges do not run along the voxel rows
    u, v = np.cos(turn) * right + np.sin(turn) * down, -np.sin(turn) * right + np.cos(turn) * down
    square = [CENTER + su * side / 2 * u + sv * side / 2 * v for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    polygon_fill(edits, plane, square, 1)
    painted = edits.data == 1
    slab = slice_slab(edits.labels, plane)
    assert painted.sum(axis=slab.axis).max() == 1
    area = painted.sum() * edits.labels.voxel_volume_mm3 / abs(slab.step_mm)
    assert area == pytest.approx(side * side, rel=0.05)


# -- threshold paint -------------------------------------------------------------------------------

def _field(xyz: np.ndarray) -> np.ndarray:
    """A linear world field (trilinear interpolation reproduces it exactly)."""
    return 2.0 * (xyz[..., 0] - CENTER[0]) - 1.0 * (xyz[..., 1] - CENTER[1]) + 0.5 * (xyz[..., 2] - CENTER[2])


def _field_image() -> Volume:
    shape = (70, 70, 60)
    affine = centered_affine(shape, (0.8, 1.0, 1.1), CENTER + [1.0, -2.0, 0.5], rotation("z", 40.0) @ rotation("y", -20.0))
    image = Volume.from_array(np.zeros(shape, np.float32), affine, role="gd")
    ijk = np.argwhere(np.ones(shape, bool))
    image._data = _field(image.voxel_to_world_points(ijk)).reshape(shape).astype(np.float32)
    return image


@pytest.mark.parametrize("sphere", [True, False], ids=["sphere", "disk"])
def test_threshold_paint_only_where_the_image_is_in_range(sphere):
    edits = _edits()
    image = _field_image()
    plane = display_plane(edits.labels, "axial", CENTER)
    low, high = -4.0, 6.0
    threshold_paint(edits, CENTER, 9.0, 1, image, low, high, plane=plane, sphere=sphere)
    painted = edits.data == 1
    assert painted.any()
    values = _field(_centres(edits.labels, painted))
    assert values.min() >= low - 1e-3 and values.max() <= high + 1e-3
    # and every brush voxel with the field clearly in range is painted
    brush_only = _edits()
    brush(brush_only, CENTER, 9.0, 1, plane=plane, sphere=sphere)
    under = brush_only.data == 1
    values_all = _field(_centres(edits.labels, under))
    clearly = (values_all > low + 1e-3) & (values_all < high - 1e-3)
    expected = np.zeros_like(under)
    expected[tuple(np.argwhere(under)[clearly].T)] = True
    assert np.all(painted[expected])
    assert not painted[~under].any()


def test_threshold_stroke_is_one_edit():
    edits = _edits()
    plane = display_plane(edits.labels, "axial", CENTER)
    edit = threshold_stroke(edits, [CENTER, CENTER + [5, 5, 0]], 4.0, 1, _field_image(), -100, 100, plane=plane)
    assert edit is not None and len(edits.history()) == 1


# -- flood fill ---------------------------------------------------------------------------------------

def _two_blobs(edits: EditableLabels) -> tuple[Volume, np.ndarray, np.ndarray]:
    ijk = np.argwhere(np.ones(edits.data.shape, bool))
    world = edits.labels.voxel_to_world_points(ijk).reshape(*edits.data.shape, 3)
    a = np.linalg.norm(world - (CENTER - [10, 0, 0]), axis=-1) <= 6.0
    b = np.linalg.norm(world - (CENTER + [10, 0, 0]), axis=-1) <= 6.0
    image = Volume.from_array(np.where(a | b, 100.0, 5.0).astype(np.float32), edits.labels.voxel_to_world, role="gd")
    return image, a, b


def test_flood_fill_fills_only_the_seeded_blob():
    edits = _edits()
    image, a, _ = _two_blobs(edits)
    edit = flood_fill(edits, CENTER - [10, 0, 0], 1, image, 50, 200)
    np.testing.assert_array_equal(edits.data == 1, a)
    assert edit is not None and len(edits.history()) == 1
    assert flood_fill(edits, CENTER, 2, image, 50, 200) is None  # seed in background: out of range
    assert flood_fill(edits, CENTER + [500, 0, 0], 2, image, 0, 200) is None  # outside the grid


def test_flood_fill_is_bounded_by_max_radius():
    edits = _edits()
    image = Volume.from_array(np.full(edits.data.shape, 10.0, np.float32), edits.labels.voxel_to_world, role="gd")
    flood_fill(edits, CENTER, 1, image, 0, 20, max_radius_mm=5.0)
    painted = edits.data == 1
    seed = np.rint(edits.labels.world_to_voxel_points(CENTER))
    distance = np.linalg.norm(_centres(edits.labels, painted) - edits.labels.voxel_to_world_points(seed), axis=1)
    assert distance.max() <= 5.0
    assert painted.sum() * edits.labels.voxel_volume_mm3 == pytest.approx(4 / 3 * np.pi * 125, rel=0.08)


def test_unbounded_flood_fill_follows_a_structure_longer_than_its_first_box():
    shape = (220, 16, 16)
    edits = _edits(shape=shape, spacing=(1.0, 1.0, 1.0))
    values = np.zeros(shape, np.float32)
    values[5:215, 6:10, 6:10] = 1.0  # a 210 mm tube; the first box reaches ±32 mm
    values[:, 0, 0] = 1.0  # another structure, not connected
    image = Volume.from_array(values, edits.labels.voxel_to_world, role="gd")
    flood_fill(edits, edits.labels.voxel_to_world_points(np.array([8.0, 7.0, 7.0])), 1, image, 0.5, 2.0)
    np.testing.assert_array_equal(edits.data == 1, np.pad(np.ones((210, 4, 4), bool), ((5, 5), (6, 6), (6, 6))))


def test_flood_fill_with_an_image_on_another_grid():
    edits = _edits(rotate=OBLIQUE)
    image = _field_image()
    flood_fill(edits, CENTER, 1, image, -3.0, 3.0, max_radius_mm=8.0)
    painted = edits.data == 1
    values = _field(_centres(edits.labels, painted))
    assert painted.sum() > 100 and values.min() >= -3.0 - 1e-3 and values.max() <= 3.0 + 1e-3


# -- fill between slices -------------------------------------------------------------------------

def test_interpolation_rebuilds_a_sphere_from_every_fifth_slice():
    # Linear blending of signed distances interpolates the radius linearly between drawn
    # slices, which cuts the sphere's curvature: the loss scales as (gap / radius)²
    # (≈ 3 % here at 5 mm gaps and r = 20.4 mm; ≈ 10 % at r = 10.4 mm).
    shape = (52, 52, 50)
    radius = 20.4
    kc = shape[2] // 2
    center = np.array([(shape[0] - 1) / 2, (shape[1] - 1) / 2, kc])
    full = np.linalg.norm(np.argwhere(np.ones(shape, bool)) - center, axis=1).reshape(shape) <= radius
    drawn = list(range(kc - 20, kc + 21, 5))
    data = np.zeros(shape, np.uint8)
    for k in drawn:
        data[:, :, k] = np.where(full[:, :, k], 1, 0)
    # another region already drawn on a gap slice, inside the sphere
    data[24:27, 24:27, kc + 2] = 3
    edits = _edits(shape=shape, spacing=(1.0, 1.0, 1.0), data=data)
    edit = interpolate_slices(edits, 1, axis=2)
    assert edit is not None and len(edits.history()) == 1
    result = edits.data == 1
    assert result.sum() + 9 == pytest.approx(full.sum(), rel=0.05)
    assert (edits.data[24:27, 24:27, kc + 2] == 3).all()
    rho = np.hypot(*(np.argwhere(np.ones(shape[:2], bool)) - center[:2]).T).reshape(shape[:2])
    for k in range(drawn[0], drawn[-1] + 1):
        if k in drawn:
            np.testing.assert_array_equal(result[:, :, k], full[:, :, k])
            continue
        disk = result[:, :, k] | (edits.data[:, :, k] == 3)
        assert disk.any() and ndimage.label(disk)[1] == 1
        assert (ndimage.binary_fill_holes(disk) == disk).all()
        # a filled disk about the axis: every voxel within (farthest painted one − 1 voxel)
        assert disk[rho <= rho[disk].max() - 1.0].all()
    edits.undo()
    assert not (edits.data[:, :, kc + 1] == 1).any()


def test_interpolation_on_anisotropic_grid_and_nothing_to_do():
    data = np.zeros((40, 40, 30), np.uint8)
    data[10:20, 10:20, 5] = 1  # 5 mm square
    data[5:25, 5:25, 9] = 1  # 10 mm square, concentric
    edits = _edits(shape=(40, 40, 30), spacing=(0.5, 0.5, 3.0), data=data)
    assert interpolate_slices(edits, 1, axis=0) is None  # drawn on consecutive slices along 0
    edit = interpolate_slices(edits, 1, axis=2)
    assert edit is not None and edit.box[2] == slice(6, 9)
    for k in range(6, 9):
        side_vox = 10 + 10 * (k - 5) / 4  # the side grows linearly
        area = (edits.data[:, :, k] == 1).sum()
        assert (side_vox - 1.5) ** 2 <= area <= (side_vox + 1.5) ** 2
    assert interpolate_slices(edits, 2, axis=2) is None  # label absent


# -- core/penumbra proposal -----------------------------------------------------------------------------

def test_apply_proposal_writes_core_and_penumbra_and_keeps_other_labels():
    shape = (40, 40, 24)
    edits = _edits(shape=shape, spacing=(1.0, 1.0, 2.0), names={3: "injection site"})
    target = edits.labels
    ijk = np.argwhere(np.ones(shape, bool))
    world = target.voxel_to_world_points(ijk).reshape(*shape, 3)
    r = np.linalg.norm(world - CENTER, axis=-1)
    adc = Volume.from_array(np.where(r < 6, 400.0, 800.0).astype(np.float32), target.voxel_to_world, role="adc")
    tmax = Volume.from_array(np.where(r < 12, 9.0, 1.0).astype(np.float32), target.voxel_to_world, role="tmax")
    proposal = propose_core_penumbra(target, adc=adc, tmax=tmax, sodium=None)
    assert (proposal.labels == 1).any() and (proposal.labels == 2).any()

    data = np.zeros(shape, np.uint8)
    c = np.rint(target.world_to_voxel_points(CENTER)).astype(int)
    data[c[0] - 1:c[0] + 2, c[1] - 1:c[1] + 2, c[2]] = 3  # injection site inside the core
    data[0:3, 0:3, 0:2] = 1  # an old core voxel block far away: replaced
    original = data.copy()
    edits = EditableLabels(Volume.from_array(data, target.voxel_to_world, role="regions"),
                           LabelTable.from_names({3: "injection site"}))

    edit = apply_proposal(edits, proposal, core_label=1, penumbra_label=2)
    assert edit is not None
    assert edits.table.name(1) == "core" and edits.table.name(2) == "penumbra" and edits.table.name(3) == "injection site"
    out = edits.data
    site = original == 3
    assert (out[site] == 3).all()
    np.testing.assert_array_equal(out == 1, (proposal.labels == 1) & ~site)
    np.testing.assert_array_equal(out == 2, (proposal.labels == 2) & ~site)
    assert not out[0:3, 0:3, 0:2].any()
    assert edit.nbytes < edits.data.nbytes  # a box, not the map
    edits.undo()
    np.testing.assert_array_equal(edits.data, original)
    edits.undo()  # the table entries were a separate, earlier step
    assert edits.table.get(1) is None


def test_apply_proposal_on_another_grid_is_refused():
    edits = _edits(shape=(20, 20, 10))
    other = Volume.from_array(np.zeros((20, 20, 10), np.float32), np.eye(4), role="adc")
    proposal = propose_core_penumbra(other, adc=other, tmax=other, sodium=None)
    with pytest.raises(ValueError):
        apply_proposal(edits, proposal, 1, 2)


# -- performance -------------------------------------------------------------------------------

def test_sphere_brush_speed_on_a_large_map(capsys):
    shape = (512, 512, 300)
    results = []
    for spacing in ((0.5, 0.5, 1.0), (1.0, 1.0, 1.0)):
        volume = Volume.from_array(np.zeros(shape, np.uint8), centered_affine(shape, spacing, CENTER), role="regions")
        edits = EditableLabels(volume, LabelTable.from_names({1: "core"}))
        brush(edits, CENTER - [30, 0, 0], 20.0, 1, sphere=True)  # warm-up
        paint, undo = [], []
        for n in range(7):
            t0 = time.perf_counter()
            edit = brush(edits, CENTER + [0, 6.0 * (n - 3), 0], 20.0, 1 + n % 2, sphere=True)
            paint.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            edits.undo()
            undo.append(time.perf_counter() - t0)
        box = [s.stop - s.start for s in edit.box]
        results.append((spacing, box, edit.nbytes, 1e3 * np.median(paint), 1e3 * np.median(undo)))
    with capsys.disabled():
        for spacing, box, nbytes, paint_ms, undo_ms in results:
            print(f"\n20 mm sphere brush, 512×512×300 uint8, spacing {spacing} mm: box {box}, "
                  f"edit {nbytes / 1e3:.0f} kB, paint {paint_ms:.1f} ms, undo {undo_ms:.2f} ms")
    assert max(r[3] for r in results) < 200  # target ≤ 20 ms; loose bound against busy CI machines
