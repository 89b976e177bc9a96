"""File ▸ Add image in the window: the overlay appears in the layers, the views and the
readout; a role already there is replaced only when the reader agrees; Shift + drop adds."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from PySide6 import QtCore, QtGui

from tests.ui.conftest import open_window


def _overlay(path, anatomy, value):
    """An image on the anatomy's own grid holding ``value`` everywhere."""
    nib.save(nib.Nifti1Image(np.full(anatomy.shape, value, np.float32), anatomy.voxel_to_world), path)
    return path


def test_an_added_image_is_shown_read_out_and_saved_on_request(qtbot, settings, study_copy, tmp_path):
    win = open_window(qtbot, settings, study_copy)
    path = _overlay(tmp_path / "t2map.nii.gz", win.scene.anatomy, 77.0)
    win.ask_overlay = lambda p: ("other", "ms", False)
    drawn = []
    win.frame_drawn.connect(drawn.append)
    assert win.add_overlay(path)
    assert "other" in win.layer_panel.listed_roles() and win.layer_panel.selected_role() == "other"
    qtbot.waitUntil(lambda: len(drawn) >= 3, timeout=10_000)
    assert ("other image", "77", "ms") in win.scene.readout()
    assert "77" in win.readout.text() and "ms" in win.readout.text()
    assert win.save_added_action.isEnabled()
    win.save_added_action.trigger()
    assert not win.save_added_action.isEnabled()
    assert "other_units" in study_copy.read_text()


def test_replacing_asks_first(qtbot, settings, study_copy, tmp_path):
    win = open_window(qtbot, settings, study_copy)
    before = win.scene.volumes["pet"]
    path = _overlay(tmp_path / "pet.nii.gz", win.scene.anatomy, 3.0)
    win.ask_overlay = lambda p: ("pet", "", False)
    asked = []
    win.ask_replace = lambda message: asked.append(message) or False
    assert not win.add_overlay(path)
    assert asked and "replace" in asked[0] and win.scene.volumes["pet"] is before
    win.ask_replace = lambda message: True
    assert win.add_overlay(path)
    assert win.scene.volumes["pet"] is not before and win.scene.display["pet"].visible


def test_a_bad_image_is_one_error_and_the_study_stays(qtbot, settings, study_copy, tmp_path):
    win = open_window(qtbot, settings, study_copy)
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"nonsense")
    win.ask_overlay = lambda p: ("other", "", True)
    text = study_copy.read_text()
    assert not win.add_overlay(bad)
    assert win.last_error and "\n" not in win.last_error
    assert "other" not in win.scene.volumes and study_copy.read_text() == text


def test_shift_drop_adds_and_a_plain_drop_opens(qtbot, settings, study_copy, tmp_path):
    win = open_window(qtbot, settings, study_copy)
    path = _overlay(tmp_path / "adc_map.nii.gz", win.scene.anatomy, 500.0)
    offered = []
    win.ask_overlay = lambda p: offered.append(p) or None  # cancelled
    data = QtCore.QMimeData()
    data.setUrls([QtCore.QUrl.fromLocalFile(str(path))])
    drop = QtGui.QDropEvent(QtCore.QPointF(10, 10), QtCore.Qt.DropAction.CopyAction, data,
                            QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.ShiftModifier)
    win.dropEvent(drop)
    assert offered == [path]
    study = win.scene.study
    assert win.scene.study is study  # the study was not replaced


def test_the_role_is_guessed_from_the_file_name():
    from pathlib import Path

    from viewer.ui.window_adding import guess_role

    assert guess_role(Path("sub-01_pet_suv.nii.gz")) == "pet"
    assert guess_role(Path("ADC.nii")) == "adc"
    assert guess_role(Path("t2map.nii.gz")) == "other"
