"""Rulers and ROIs against truths computed apart from the code under test: index-space masks
written directly with numpy, analytic volumes, and nibabel's own affine arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest
from nibabel.affines import apply_affine

from viewer.core.measurements import (
    EllipseROI,
    FluorineCalibration,
    Measurements,
    Ruler,
    SphereROI,
    from_dict,
    outline_in_plane,
    roi_statistics,
)
from viewer.core.spaces import display_plane
from viewer.core.volume import Volume

SPACING = (0.8, 1.2, 2.5)


def _volume(data: np.ndarray, role: str = "anatomical", spacing=SPACING, origin=(-20.0, -30.0, -10.0), units="a.u."):
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return Volume.from_array(data, affine, role=role, units=units)


def _ramp(shape=(60, 50, 16)) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.normal(100.0, 15.0, shape).astype(np.float32)


def test_ellipse_in_an_axial_slice_is_numpy_on_that_slice():
    data = _ramp()
    volume = _volume(data)
    k, ci, cj = 7, 30, 22
    center = apply_affine(volume.voxel_to_world, [ci, cj, k])
    plane = display_plane(volume, "axial", center)
    a, b = 9.0, 6.0  # mm along the view's horizontal (world x) and vertical (world y)
    roi = EllipseROI.in_plane(plane, center, center + np.array([a, b, 0.0]))
    assert roi.radii_mm == pytest.approx((a, b))
    i, j = np.meshgrid(np.arange(data.shape[0]), np.arange(data.shape[1]), indexing="ij")
    truth = ((i - ci) * SPACING[0] / a) ** 2 + ((j - cj) * SPACING[1] / b) ** 2 <= 1.0
    expected = data[:, :, k][truth].astype(np.float64)
    (stats,) = roi_statistics(roi, [volume])
    assert stats.voxels == expected.size
    assert stats.volume_mm3 == pytest.approx(expected.size * np.prod(SPACING))
    assert stats.mean == pytest.approx(expected.mean(), rel=1e-9)
    assert stats.std == pytest.approx(expected.std(), rel=1e-9)
    assert stats.maximum == pytest.approx(expected.max()) and stats.minimum == pytest.approx(expected.min())
    # the voxels' area is the ellipse's within the discretisation
    assert stats.voxels * SPACING[0] * SPACING[1] == pytest.approx(roi.area_mm2, rel=0.08)


def test_sphere_is_every_voxel_centre_within_the_radius_on_an_oblique_grid():
    data = _ramp((40, 40, 30))
    rotation = np.array([[math.cos(0.4), -math.sin(0.4), 0], [math.sin(0.4), math.cos(0.4), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.1, 0.9, 1.7])
    affine[:3, 3] = (5.0, -12.0, 3.0)
    volume = Volume.from_array(data, affine, role="pet", units="SUV")
    center, radius = np.array([8.0, 2.0, 20.0]), 11.0
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in data.shape), indexing="ij"), -1).reshape(-1, 3)
    inside = np.linalg.norm(apply_affine(affine, ijk) - center, axis=1) <= radius
    expected = data.reshape(-1)[inside].astype(np.float64)  # C order: the same order as ijk
    (stats,) = roi_statistics(SphereROI(center, radius), [volume])
    assert stats.voxels == inside.sum() > 0
    assert stats.mean == pytest.approx(expected.mean(), rel=1e-9)
    assert stats.units == "SUV" and stats.quantity
    voxel_mm3 = abs(np.linalg.det(affine[:3, :3]))
    assert stats.voxels * voxel_mm3 == pytest.approx(SphereROI(center, radius).volume_ml * 1000, rel=0.05)


def test_a_sphere_cut_by_the_grid_edge_counts_only_the_voxels_that_exist():
    data = np.ones((20, 20, 20), np.float32)
    volume = _volume(data, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    (stats,) = roi_statistics(SphereROI([0.0, 10.0, 10.0], 5.0), [volume])
    i, j, k = np.meshgrid(*(np.arange(20),) * 3, indexing="ij")
    assert stats.voxels == int(((i - 0) ** 2 + (j - 10) ** 2 + (k - 10) ** 2 <= 25).sum())
    (outside,) = roi_statistics(SphereROI([-50.0, 10.0, 10.0], 5.0), [volume])
    assert outside.voxels == 0 and outside.mean is None


def test_non_finite_voxels_are_counted_and_left_out():
    data = np.full((20, 20, 5), 4.0, np.float32)
    data[10, 10, 2] = np.nan
    data[11, 10, 2] = np.inf
    volume = _volume(data, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    plane = display_plane(volume, "axial", [10.0, 10.0, 2.0])
    roi = EllipseROI.in_plane(plane, [10.0, 10.0, 2.0], [13.0, 13.0, 2.0])
    (stats,) = roi_statistics(roi, [volume])
    assert stats.nonfinite == 2
    assert stats.mean == 4.0 and stats.std == 0.0
    assert stats.voxels == 29  # disk of radius 3 voxels: 29 centres


def test_each_layer_on_its_own_grid_and_labels_by_name():
    anatomy = _volume(np.zeros((40, 40, 12), np.float32), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    coarse = np.zeros((20, 20, 6), np.float32)
    coarse[8:12, 8:12, 2:4] = 50.0
    pet = _volume(coarse, role="pet", spacing=(2.0, 2.0, 2.0), origin=(0.5, 0.5, 0.5), units="SUV")
    labels = np.zeros((40, 40, 12), np.uint8)
    labels[15:25, 15:25, 4:8] = 2
    regions = _volume(labels, role="regions", spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    sphere = SphereROI([20.0, 20.0, 6.0], 4.0)
    stats = roi_statistics(sphere, [anatomy, pet, regions], region_names={2: "core"})
    assert [s.role for s in stats] == ["anatomical", "pet", "regions"]
    assert stats[1].volume_mm3 == pytest.approx(stats[1].voxels * 8.0)
    assert stats[1].maximum == 50.0
    # the label map's voxels inside the sphere that are in region 2: counted with numpy
    i, j, k = np.meshgrid(*(np.arange(n) for n in labels.shape), indexing="ij")
    ball = (i - 20) ** 2 + (j - 20) ** 2 + (k - 6) ** 2 <= 16
    assert stats[2].regions == {"core": int((ball & (labels == 2)).sum())}


def test_fluorine_cells_count_the_detected_voxels_with_the_rician_correction():
    signal = np.full((30, 30, 6), 2.0, np.float32)  # noise level everywhere
    signal[12:16, 12:16, 2:4] = 40.0  # a graft
    detected = signal > 10.0
    fluorine = _volume(signal, role="fluorine", spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    sigma, per_signal = 2.0, 1000.0
    (stats,) = roi_statistics(SphereROI([14.0, 14.0, 3.0], 6.0), [fluorine],
                              FluorineCalibration(sigma, per_signal, detected))
    graft_voxels = 4 * 4 * 2
    assert stats.cells == pytest.approx(graft_voxels * math.sqrt(40.0**2 - sigma**2) * per_signal)
    (uncalibrated,) = roi_statistics(SphereROI([14.0, 14.0, 3.0], 6.0), [fluorine])
    assert uncalibrated.cells is None


def test_outlines_follow_the_slice():
    volume = _volume(np.zeros((40, 40, 40), np.float32), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    sphere = SphereROI([20.0, 20.0, 20.0], 10.0)
    cut = outline_in_plane(sphere, display_plane(volume, "axial", [20.0, 20.0, 26.0]))
    assert cut is not None
    assert np.allclose(np.linalg.norm(cut - [20.0, 20.0, 26.0], axis=1), 8.0)  # √(10² − 6²)
    assert outline_in_plane(sphere, display_plane(volume, "axial", [20.0, 20.0, 31.0])) is None
    plane = display_plane(volume, "coronal", [20.0, 20.0, 20.0])
    ruler = Ruler(plane.pixel_to_world_points(np.array([3.0]), np.array([4.0]))[0],
                  plane.pixel_to_world_points(np.array([30.0]), np.array([25.0]))[0])
    assert outline_in_plane(ruler, plane) is not None
    assert outline_in_plane(ruler, display_plane(volume, "coronal", [20.0, 21.0, 20.0])) is None
    ellipse = EllipseROI.in_plane(plane, [20.0, 20.0, 20.0], [25.0, 20.0, 23.0])
    assert outline_in_plane(ellipse, plane) is not None
    assert outline_in_plane(ellipse, display_plane(volume, "axial", [20.0, 20.0, 20.0])) is None


def test_ruler_length_is_the_euclidean_distance():
    assert Ruler([0, 0, 0], [30, 40, 0]).length_mm == 50.0


@pytest.mark.parametrize("bad", [
    {"kind": "ruler", "start_mm": [0, 0], "end_mm": [1, 1, 1]},
    {"kind": "ruler", "start_mm": [0, 0, float("nan")], "end_mm": [1, 1, 1]},
    {"kind": "sphere", "center_mm": [0, 0, 0], "radius_mm": -1},
    {"kind": "sphere", "center_mm": [0, 0, 0], "radius_mm": "big"},
    {"kind": "ellipse", "center_mm": [0, 0, 0], "axis_u": [1, 0, 0], "axis_v": [2, 0, 0], "radii_mm": [1, 1]},
    {"kind": "ellipse", "center_mm": [0, 0, 0], "axis_u": [1, 0, 0], "axis_v": [0, 1, 0], "radii_mm": [1]},
    {"kind": "ellipse", "center_mm": [0, 0, 0]},
    {"kind": "polygon"},
    {"kind": "ruler", "name": 5, "start_mm": [0, 0, 0], "end_mm": [1, 1, 1]},
    "ruler",
])
def test_hostile_measurements_are_refused_with_one_line(bad):
    with pytest.raises(ValueError) as error:
        from_dict(bad)
    assert "\n" not in str(error.value)


def test_round_trip_and_names():
    changes = []
    items = Measurements(lambda: changes.append(1))
    first = items.add(Ruler([0, 0, 0], [1, 0, 0]))
    second = items.add(SphereROI([0, 0, 0], 3.0, name="M1"))  # a taken name is renamed
    assert (first.name, second.name) == ("M1", "M2")
    restored = [from_dict(m.to_dict()) for m in items]
    assert [m.to_dict() for m in restored] == [m.to_dict() for m in items]
    items.remove("M1")
    assert items.names() == ["M2"] and len(changes) == 3
    items.replace_all(restored)
    assert items.names() == ["M1", "M2"]
    assert items.add(Ruler([0, 0, 0], [0, 1, 0])).name == "M3"
