"""Study ▸ Adjust registration in the window: keys and buttons move the shown timepoint in the
reference space, undo and redo walk back and forth, Save writes the manifest, and unsaved
nudges are asked about before the window closes."""

from __future__ import annotations

import tomllib

import numpy as np
from PySide6 import QtCore, QtWidgets

from tests.core.test_transforms import MOVED, _write_study
from tests.ui.conftest import open_window

CORNER = np.array([0.0, 0.0, 0.0, 1.0])


def _anatomy_corner(win) -> np.ndarray:
    day7 = win.scene.study.timepoint("day 7")
    return (win.scene.volumes_of(day7)["anatomical"].voxel_to_world @ CORNER)[:3]


def _window(qtbot, settings, tmp_path):
    manifest = _write_study(tmp_path / "s", transform=True)
    win = open_window(qtbot, settings, manifest)
    win.scene.set_timepoint(1)
    return manifest, win


def test_keys_move_the_timepoint_undo_redo_and_save(qtbot, settings, tmp_path):
    manifest, win = _window(qtbot, settings, tmp_path)
    before_text = manifest.read_text()
    start = _anatomy_corner(win)
    dialog = win.start_nudge()
    assert dialog is not None and dialog.target.label == "day 7" and dialog.target.role is None
    assert [dialog.target_combo.itemText(i) for i in range(dialog.target_combo.count())] == [
        "day 7 against day 1", "day 7 pet against day 7's anatomy"]
    dialog.move_step.setCurrentIndex(dialog.move_step.findData(2.0))
    for key in (QtCore.Qt.Key.Key_Right, QtCore.Qt.Key.Key_Right, QtCore.Qt.Key.Key_PageDown):
        qtbot.keyClick(dialog, key)
    np.testing.assert_allclose(_anatomy_corner(win) - start, [4.0, 0.0, -2.0], atol=1e-9)
    assert win.isWindowModified() and "not saved" in dialog.state_label.text()
    assert manifest.read_text() == before_text

    dialog.undo()
    np.testing.assert_allclose(_anatomy_corner(win) - start, [4.0, 0.0, 0.0], atol=1e-9)
    dialog.redo()
    np.testing.assert_allclose(_anatomy_corner(win) - start, [4.0, 0.0, -2.0], atol=1e-9)

    qtbot.keyClick(dialog, QtCore.Qt.Key.Key_Up, QtCore.Qt.KeyboardModifier.ControlModifier)  # turn about y
    turned = win.scene.study.timepoint("day 7").transform @ np.linalg.inv(MOVED)
    cosine = (np.trace(turned[:3, :3]) - 1) / 2
    assert abs(np.degrees(np.arccos(cosine)) - 0.5) < 1e-6  # one step of the default 0.5°
    assert abs(turned[1, 0]) < 1e-12 and abs(turned[1, 2]) < 1e-12  # about y: y stays

    assert dialog.save()
    written = np.array(tomllib.loads(manifest.read_text())["timepoint"][1]["transform"])
    np.testing.assert_allclose(written, win.scene.study.timepoint("day 7").transform, atol=1e-12)
    assert not win.isWindowModified() and "not saved" not in dialog.state_label.text()


def test_a_pet_nudge_moves_only_the_pet(qtbot, settings, tmp_path):
    manifest, win = _window(qtbot, settings, tmp_path)
    dialog = win.start_nudge()
    dialog.target_combo.setCurrentIndex(1)
    dialog._target_chosen(1)
    assert dialog.target.role == "pet"
    day7 = win.scene.study.timepoint("day 7")
    pet_before = win.scene.volumes_of(day7)["pet"].voxel_to_world @ CORNER
    anatomy_before = _anatomy_corner(win)
    dialog.buttons[("translate", 1, 1)].click()  # +1 mm along y
    pet_after = win.scene.volumes_of(win.scene.study.timepoint("day 7"))["pet"].voxel_to_world @ CORNER
    np.testing.assert_allclose(pet_after[:3] - pet_before[:3], [0.0, 1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(_anatomy_corner(win), anatomy_before)
    assert dialog.save()
    assert "pet" in tomllib.loads(manifest.read_text())["timepoint"][1]["image_transforms"]


def test_closing_with_an_unsaved_nudge_asks_and_discard_goes_back(qtbot, settings, tmp_path):
    manifest, win = _window(qtbot, settings, tmp_path)
    before_text = manifest.read_text()
    dialog = win.start_nudge()
    dialog.nudge("translate", 0, 1)
    asked = []
    win.ask_unsaved_registration = lambda what: asked.append(what) or QtWidgets.QMessageBox.StandardButton.Cancel
    win.close()
    assert asked == ["day 7 against day 1"] and win.isVisible()  # Cancel: the window stays
    win.ask_unsaved_registration = lambda what: QtWidgets.QMessageBox.StandardButton.Discard
    assert win.close()
    assert manifest.read_text() == before_text
    np.testing.assert_allclose(win.scene.study.timepoint("day 7").transform, MOVED)


def test_the_reference_timepoint_has_nothing_to_move_but_its_images(qtbot, settings, tmp_path):
    _manifest, win = _window(qtbot, settings, tmp_path)
    win.scene.set_timepoint(0)
    dialog = win.start_nudge()
    assert [dialog.target_combo.itemText(i) for i in range(dialog.target_combo.count())] == [
        "day 1 pet against day 1's anatomy"]
    dialog.nudge("rotate", 2, 1)
    assert win.scene.study.timepoint("day 1").world_from_image("pet") is not None
    win.scene.set_timepoint(1)  # the unsaved one stays chosen while another timepoint is shown
    assert dialog.target.label == "day 1" and dialog.dirty
    dialog.revert()
    assert not dialog.dirty and win.scene.study.timepoint("day 1").world_from_image("pet") is None
