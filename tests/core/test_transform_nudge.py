"""Nudging a registration by hand (PRODUCT.md §9): the motion the reader asks for is the motion
the image makes in the reference space, undo and redo walk the states, and the scene places
every open image anew, measures again, and saves into the manifest only when asked.

The expected positions are worked out by hand (a translation adds its vector; a rotation about
a centre keeps the centre and turns a point by the angle), not with the code under test."""

from __future__ import annotations

import math
import tomllib

import numpy as np
import pytest

from tests.core.test_transforms import MOVED, _write_study
from viewer.core.edit_tools import brush_stroke
from viewer.core.errors import ViewerError
from viewer.core.io.study import load_study
from viewer.core.scene import Scene
from viewer.core.transform_nudge import NudgeHistory, Step, nudged
from viewer.core.transforms import rigid


def _moved(matrix, point):
    return np.asarray(matrix)[:3, :3] @ point + np.asarray(matrix)[:3, 3]


def test_a_translation_of_an_image_inside_a_rotated_timepoint_moves_it_by_the_step_on_screen():
    outer = rigid((10.0, -20.0, 30.0), (5.0, 6.0, -7.0), center=(3.0, 4.0, 5.0))  # the timepoint's transform
    inner = rigid((2.0, 0.0, -3.0), (1.0, -2.0, 4.0))  # the PET's transform to the day's MR
    point = np.array([12.0, -30.0, 44.0])  # a PET world point
    before = _moved(outer @ inner, point)
    after = _moved(outer @ nudged(inner, outer, Step("translate", 0, 2.5).matrix((0, 0, 0))), point)
    np.testing.assert_allclose(after - before, [2.5, 0.0, 0.0], atol=1e-9)


def test_a_rotation_turns_about_the_centre_by_the_angle():
    centre = np.array([0.0, -18.0, 18.0])
    step = Step("rotate", 2, 90.0).matrix(centre)  # 90° about z (superior): +x goes to +y
    np.testing.assert_allclose(_moved(step, centre), centre, atol=1e-9)
    np.testing.assert_allclose(_moved(step, centre + [10.0, 0.0, 3.0]), centre + [0.0, 10.0, 3.0], atol=1e-9)
    small = Step("rotate", 0, 1.5).matrix(centre)
    cosine = (np.trace(small[:3, :3]) - 1) / 2
    assert math.degrees(math.acos(cosine)) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        Step("scale", 0, 1.0)
    with pytest.raises(ValueError):
        Step("rotate", 3, 1.0)


def test_history_undo_redo_revert_and_saved():
    history = NudgeHistory(None)
    assert not history.dirty and not history.can_undo
    one = history.push(rigid(translation=(1, 0, 0)), "move +1 mm along x")
    two = history.push(rigid(translation=(2, 0, 0)), "move +1 mm along x")
    assert history.dirty and history.undo_name == "move +1 mm along x"
    np.testing.assert_array_equal(history.undo(), one)
    np.testing.assert_array_equal(history.redo(), two)
    history.undo()
    history.push(rigid(translation=(1, 5, 0)), "move +5 mm along y")  # drops the redo branch
    assert not history.can_redo
    history.mark_saved()
    assert not history.dirty
    history.push(rigid(translation=(9, 9, 9)), "x")
    np.testing.assert_array_equal(history.revert(), rigid(translation=(1, 5, 0)))
    assert not history.dirty and history.can_undo  # the revert is one more undoable step
    np.testing.assert_array_equal(history.undo(), rigid(translation=(9, 9, 9)))


def test_the_scene_places_the_timepoint_anew_measures_again_and_saves_when_asked(tmp_path):
    manifest = _write_study(tmp_path / "s", transform=True)
    text_before = manifest.read_text()
    scene = Scene(load_study(manifest))
    day7 = scene.study.timepoint("day 7")
    anatomy = scene.volumes_of(day7)["anatomical"]
    right = scene.stats(day7).region("core").values["suv_mean"]
    corner = np.array([0.0, 0.0, 0.0, 1.0])

    shifted = rigid(translation=(0.0, 0.0, 6.0)) @ MOVED  # 6 mm wrong along z
    scene.set_transform("day 7", shifted)
    moved = scene.volumes_of(scene.study.timepoint("day 7"))["anatomical"]
    np.testing.assert_allclose((moved.voxel_to_world @ corner)[:3] - (anatomy.voxel_to_world @ corner)[:3],
                               [0.0, 0.0, 6.0], atol=1e-9)
    assert moved.data is anatomy.data  # nothing reloaded or resampled
    wrong = scene.stats(scene.study.timepoint("day 7")).region("core").values["suv_mean"]
    assert abs(wrong - right) > 0.05 * right  # measured again, in the wrong tissue now
    assert manifest.read_text() == text_before  # nothing written yet

    scene.set_transform("day 7", MOVED)
    again = scene.stats(scene.study.timepoint("day 7")).region("core").values["suv_mean"]
    assert again == pytest.approx(right, rel=1e-9)

    scene.set_transform("day 7", shifted)
    scene.save_transform("day 7")
    written = tomllib.loads(manifest.read_text())["timepoint"][1]["transform"]
    np.testing.assert_allclose(written, shifted, atol=1e-12)
    reopened = load_study(manifest).timepoint("day 7")
    np.testing.assert_allclose(reopened.transform, shifted, atol=1e-12)


def test_an_image_transform_moves_only_that_image(tmp_path):
    manifest = _write_study(tmp_path / "s", transform=True)
    scene = Scene(load_study(manifest))
    volumes = scene.volumes_of(scene.study.timepoint("day 7"))
    anatomy, pet = volumes["anatomical"].voxel_to_world.copy(), volumes["pet"].voxel_to_world.copy()
    inner, outer = scene.transform_of("day 7", "pet")
    assert inner is None and np.allclose(outer, MOVED)
    scene.set_transform("day 7", nudged(inner, outer, Step("translate", 1, -3.0).matrix((0, 0, 0))), role="pet")
    volumes = scene.volumes_of(scene.study.timepoint("day 7"))
    np.testing.assert_allclose(volumes["anatomical"].voxel_to_world, anatomy)
    np.testing.assert_allclose(volumes["pet"].voxel_to_world[:3, 3] - pet[:3, 3], [0.0, -3.0, 0.0], atol=1e-9)
    scene.save_transform("day 7", "pet")
    table = tomllib.loads(manifest.read_text())["timepoint"][1]
    assert "pet" in table["image_transforms"] and "transform" in table
    scene.set_transform("day 7", None, role="pet")  # back to the identity: the entry goes
    scene.save_transform("day 7", "pet")
    assert "image_transforms" not in tomllib.loads(manifest.read_text())["timepoint"][1]


@pytest.mark.parametrize("label, matrix, role, fragment", [
    ("day 1", rigid(translation=(1, 0, 0)), None, "reference space"),
    ("day 7", np.diag([-1.0, 1.0, 1.0, 1.0]), None, "mirrors"),
    ("day 7", np.zeros((4, 4)), None, "last row"),
    ("day 7", rigid(), "anatomical", "no image"),
    ("day 7", rigid(), "sodium", "no image"),
])
def test_bad_requests_are_one_error_and_change_nothing(tmp_path, label, matrix, role, fragment):
    manifest = _write_study(tmp_path / "s", transform=True)
    scene = Scene(load_study(manifest))
    before = scene.volumes_of(scene.study.timepoint("day 7"))["anatomical"].voxel_to_world.copy()
    with pytest.raises(ViewerError, match=fragment):
        scene.set_transform(label, matrix, role=role)
    np.testing.assert_array_equal(scene.volumes_of(scene.study.timepoint("day 7"))["anatomical"].voxel_to_world, before)
    np.testing.assert_allclose(scene.study.timepoint("day 7").transform, MOVED)


def test_unsaved_region_edits_come_before_a_change_of_registration(tmp_path):
    manifest = _write_study(tmp_path / "s", transform=True)
    scene = Scene(load_study(manifest))
    scene.set_timepoint(1)
    brush_stroke(scene.editable(), [scene.cursor], 2.0, 1, plane=scene.plane("axial"))
    with pytest.raises(ViewerError, match="save or undo the region edits"):
        scene.set_transform("day 7", rigid(translation=(1, 0, 0)) @ MOVED)
    np.testing.assert_allclose(scene.study.timepoint("day 7").transform, MOVED)


def test_a_manifest_changed_on_disk_is_not_overwritten(tmp_path):
    manifest = _write_study(tmp_path / "s", transform=True)
    scene = Scene(load_study(manifest))
    scene.set_transform("day 7", rigid(translation=(1, 0, 0)) @ MOVED)
    manifest.write_text(manifest.read_text() + "\n# edited elsewhere\n")
    changed = manifest.read_text()
    with pytest.raises(ViewerError, match="changed"):
        scene.save_transform("day 7")
    assert manifest.read_text() == changed


def test_an_unedited_carried_map_measures_what_viewer_stats_does(tmp_path):
    """Carried onto the anatomy for editing, the map still measures as loaded until a voxel
    is edited (the window and `viewer stats` print the same numbers)."""
    from viewer.core.analysis import compute_study_stats

    manifest = _write_study(tmp_path / "s", transform=True)  # day 7 on another grid than day 1's map
    scene = Scene(load_study(manifest))
    scene.set_timepoint(1)
    scene.editable()  # carried onto day 7's anatomy
    assert scene.unedited_regions(scene.timepoint) is not None
    window = scene.stats(scene.timepoint).as_dict()
    headless = compute_study_stats(load_study(manifest), "day 7").timepoints[0].as_dict()
    assert window == headless
    brush_stroke(scene.editable(), [scene.cursor], 2.0, 1, plane=scene.plane("axial"))
    assert scene.unedited_regions(scene.timepoint) is None


def test_a_saved_carried_map_moves_with_its_timepoint(tmp_path):
    manifest = _write_study(tmp_path / "s", transform=True)
    scene = Scene(load_study(manifest))
    scene.set_timepoint(1)
    brush_stroke(scene.editable(), [scene.cursor], 2.0, 1, plane=scene.plane("axial"))
    scene.save_regions()
    assert scene.study.timepoint("day 7").regions_from is None  # the map is day 7's own now
    before = scene.volumes_of(scene.timepoint)["regions"].voxel_to_world.copy()
    step = rigid(translation=(0.0, 2.0, 0.0))
    scene.set_transform("day 7", step @ MOVED)
    after = scene.volumes_of(scene.study.timepoint("day 7"))["regions"].voxel_to_world
    np.testing.assert_allclose(after, step @ before, atol=1e-9)  # moved once, with its anatomy
    anatomy = scene.volumes_of(scene.study.timepoint("day 7"))["anatomical"].voxel_to_world
    np.testing.assert_allclose(after, anatomy, atol=1e-9)
