"""Study transforms (PRODUCT.md §9): composition, the manifest's rules, and a timepoint scanned
in another position measured through its transform. The moved images are voxelised from an
analytic object at the moved grid's world points, so the truth needs no registration code."""

from __future__ import annotations

import tomllib

import nibabel as nib
import numpy as np
import pytest

from tests.core.phantoms import MARKER_WORLD, blob_function, centered_affine, rotation, world_grid
from viewer.core.errors import ViewerError
from viewer.core.io.nifti import save_nifti
from viewer.core.io.study import load_study, write_manifest
from viewer.core.scene import Scene
from viewer.core.spaces import sample_point
from viewer.core.transforms import (
    TransformError,
    as_list,
    as_transform,
    compose,
    file_affine,
    rigid,
    rotation_degrees,
    translation_mm,
)

#: day 7's world → the reference world: the patient lay 12° rotated and ~12 mm shifted
MOVED = rigid((8.0, -5.0, 12.0), (6.0, -9.0, 4.0), center=(10.0, 0.0, 5.0))


def test_a_rotation_about_a_point_keeps_that_point_and_round_trips():
    center = np.array([50.0, 20.0, -10.0, 1.0])
    spin = rigid((0.0, 0.0, 30.0), center=center[:3])
    assert np.allclose(spin @ center, center, atol=1e-9)
    assert rotation_degrees(spin) == pytest.approx(30.0)
    away = np.array([60.0, 20.0, -10.0, 1.0])
    assert np.allclose((spin @ away)[:3], center[:3] + 10 * np.array([np.cos(np.pi / 6), np.sin(np.pi / 6), 0.0]))
    points = np.random.default_rng(0).uniform(-150, 150, (100, 3))
    homogeneous = np.c_[points, np.ones(100)]
    back = (np.linalg.inv(MOVED) @ (MOVED @ homogeneous.T)).T[:, :3]
    assert np.max(np.abs(back - points)) < 1e-6
    assert translation_mm(rigid(translation=(3.0, 4.0, 0.0))) == pytest.approx(5.0)


def test_composition_order_applies_the_image_transform_first():
    timepoint = rigid(translation=(10.0, 0.0, 0.0))
    image = rigid((0.0, 0.0, 90.0))
    point = np.array([1.0, 0.0, 0.0, 1.0])
    # image first (1,0,0) → (0,1,0), then the timepoint's shift → (10,1,0)
    assert np.allclose(compose(timepoint, image) @ point, [10.0, 1.0, 0.0, 1.0])
    assert np.allclose(compose(None, None), np.eye(4))


def test_a_flipped_grid_is_saved_back_in_its_own_space():
    flipped = centered_affine((20, 22, 18), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), flips=(True, False, True))
    placed = MOVED @ flipped
    assert np.allclose(file_affine(placed, MOVED), flipped, atol=1e-9)
    assert np.allclose(file_affine(flipped, None), flipped)


@pytest.mark.parametrize("value, fragment", [
    ([[1, 0, 0], [0, 1, 0], [0, 0, 1]], "4×4"),
    ("identity", "4×4"),
    ([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, float("nan")], [0, 0, 0, 1]], "NaN"),
    ([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0.1, 1]], "last row"),
    ([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "singular"),
    ([[-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "mirrors"),
    ([[True, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "4×4"),
])
def test_bad_matrices_are_refused_in_one_line(value, fragment):
    with pytest.raises(TransformError) as error:
        as_transform(value)
    assert fragment in str(error.value) and "\n" not in str(error.value)


# -- a study whose second session lay elsewhere --------------------------------------------------

def _write_study(root, *, transform: bool, regions_from: bool = True, extra: dict | None = None):
    """day 1: the reference; day 7: the same object scanned on a rotated 1.5 mm grid in a
    position moved by MOVED (its voxels hold the object at MOVED · their world points)."""
    root.mkdir(parents=True, exist_ok=True)

    def pet(xyz):
        return (blob_function(xyz) / 50.0).astype(np.float32)

    for label, shape, spacing, rotate in (("day1", (60, 64, 48), 1.0, None), ("day7", (44, 46, 36), 1.5,
                                                                              rotation("z", 20) @ rotation("x", -8))):
        affine = centered_affine(shape, (spacing,) * 3, (2.0, -3.0, 1.0), rotate=rotate)
        world = world_grid(shape, affine)
        if label == "day7":
            world = world @ MOVED[:3, :3].T + MOVED[:3, 3]  # where each voxel lies in the reference
        save_nifti(blob_function(world).astype(np.float32), root / f"{label}_t1.nii.gz", affine)
        save_nifti(pet(world), root / f"{label}_pet.nii.gz", affine)
        if label == "day1":
            distance = np.linalg.norm(world - MARKER_WORLD, axis=-1)
            labels = np.where(distance < 6, 1, np.where(distance < 10, 2, 0)).astype(np.int16)
            save_nifti(labels, root / "day1_regions.nii.gz", affine)
    day7 = {"label": "day 7", "day": 7, "anatomical": "day7_t1.nii.gz", "pet": "day7_pet.nii.gz", "pet_units": "SUV"}
    if transform:
        day7["transform"] = as_list(MOVED)
    if regions_from:
        day7["regions_from"] = "day 1"
    day7.update(extra or {})
    manifest = {"study": {"id": "moved-001"},
                "timepoint": [{"label": "day 1", "day": 1, "anatomical": "day1_t1.nii.gz", "pet": "day1_pet.nii.gz",
                               "pet_units": "SUV", "regions": "day1_regions.nii.gz",
                               "region_names": {1: "core", 2: "penumbra"}}, day7]}
    return write_manifest(manifest, root / "study.toml")


def _suv_means(manifest, label):
    scene = Scene(load_study(manifest))
    stats = scene.stats(scene.study.timepoint(label))
    return {region.name: region.values["suv_mean"] for region in stats.regions}


def test_regions_carried_through_the_transform_measure_the_same_tissue(tmp_path):
    registered = _write_study(tmp_path / "registered", transform=True)
    truth = _suv_means(registered, "day 1")
    carried = _suv_means(registered, "day 7")
    for name in ("core", "penumbra"):
        assert carried[name] == pytest.approx(truth[name], rel=0.01), name
    unregistered = _write_study(tmp_path / "unregistered", transform=False)
    wrong = _suv_means(unregistered, "day 7")
    assert abs(wrong["core"] - truth["core"]) > 0.2 * truth["core"], "the moved session must mislead unregistered"


def test_the_moved_anatomy_reads_the_object_at_reference_points(tmp_path):
    manifest = _write_study(tmp_path / "s", transform=True)
    scene = Scene(load_study(manifest))
    day7 = scene.volumes_of(scene.study.timepoint("day 7"))["anatomical"]
    for point in (MARKER_WORLD, MARKER_WORLD + (4.0, -3.0, 2.0), np.array([-10.0, 5.0, -4.0])):
        # trilinear on a 1.5 mm grid of a 4 mm-wide blob: ≤ 6 % at its peak; unmoved, ~100 % off
        assert sample_point(day7, point) == pytest.approx(float(blob_function(point[None])[0]), rel=0.06, abs=1.0)
    assert np.allclose(day7.meta["world_from_file"], MOVED)


def test_a_saved_map_of_a_moved_timepoint_is_written_in_its_own_space(tmp_path):
    manifest = _write_study(tmp_path / "s", transform=True)
    scene = Scene(load_study(manifest))
    scene.set_timepoint(1)
    editable = scene.editable()
    assert editable.labels.shape == scene.volumes["anatomical"].shape  # carried onto day 7's grid
    from viewer.core.edit_tools import brush_stroke

    brush_stroke(editable, [scene.cursor], 2.0, 3, plane=scene.plane("axial"))
    saved = scene.save_regions()
    written = nib.load(saved.map_path)
    day7_file = nib.load(tmp_path / "s" / "day7_t1.nii.gz")
    assert np.allclose(written.affine, day7_file.affine, atol=1e-5)  # the session's scanner space
    table = tomllib.loads(manifest.read_text())["timepoint"][1]
    assert "regions_from" not in table and table["regions"].startswith("regions/")
    reopened = Scene(load_study(manifest))
    again = reopened.volumes_of(reopened.study.timepoint("day 7"))["regions"]
    assert np.allclose(again.voxel_to_world, editable.labels.voxel_to_world, atol=1e-5)  # back where it was drawn


@pytest.mark.parametrize("extra, fragment", [
    ({"transform": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]}, "4×4"),
    ({"transform": [[-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}, "mirrors"),
    ({"image_transforms": {"sodium": as_list(np.eye(4))}}, "no 'sodium' image"),
    ({"image_transforms": {"anatomical": as_list(np.eye(4))}}, "anatomy defines"),
    ({"image_transforms": [1, 2]}, "image_transforms"),
    ({"regions_from": "day 99"}, "no timepoint 'day 99'"),
    ({"regions_from": "day 7"}, "itself"),
    ({"regions_from": "day 1", "region_names": {1: "x"}}, "cannot both"),
])
def test_bad_transforms_in_a_manifest_are_one_error_and_write_nothing(tmp_path, extra, fragment):
    with pytest.raises(ViewerError) as error:
        _write_study(tmp_path / "s", transform=True, extra=extra)
    assert fragment in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "s" / "study.toml").exists()
