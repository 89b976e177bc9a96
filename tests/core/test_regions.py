"""Editable label maps: bounding-box diffs, undo/redo, locks, table edits."""

from __future__ import annotations

import numpy as np

from viewer.core.regions import EditableLabels, LabelEntry, LabelTable
from viewer.core.volume import Volume


def _labels(shape=(40, 40, 20)):
    data = np.zeros(shape, np.uint8)
    data[5:10, 5:10, 5:10] = 1
    return EditableLabels(Volume.from_array(data, np.eye(4), role="regions"), LabelTable.from_names({1: "core", 2: "penumbra"}))


def test_edit_stores_only_the_changed_box_and_undo_redo_round_trip():
    edits = _labels()
    original = edits.data.copy()
    box = (slice(0, 40), slice(0, 40), slice(0, 20))
    mask = np.zeros((40, 40, 20), bool)
    mask[20:23, 20:24, 10:11] = True
    edit = edits.paint_mask("brush", box, mask, 2)
    assert edit.box == (slice(20, 23), slice(20, 24), slice(10, 11))
    assert edit.nbytes == 2 * 12
    painted = edits.data.copy()
    edits.undo()
    np.testing.assert_array_equal(edits.data, original)
    edits.redo()
    np.testing.assert_array_equal(edits.data, painted)


def test_locked_labels_are_not_overwritten_and_no_op_is_not_recorded():
    edits = _labels()
    edits.set_table("lock core", edits.table.with_entry(LabelEntry(1, "core", (230, 40, 40), locked=True)))
    box = (slice(0, 12), slice(0, 12), slice(0, 12))
    edits.paint_mask("paint over core", box, np.ones((12, 12, 12), bool), 2)
    assert (edits.data[5:10, 5:10, 5:10] == 1).all()
    assert (edits.data[0:5, 0:5, 0:5] == 2).all()
    before = len(edits.history())
    assert edits.paint_mask("again", box, np.ones((12, 12, 12), bool), 2) is None
    assert len(edits.history()) == before


def test_delete_label_and_undo_restores_voxels_and_table():
    edits = _labels()
    edits.delete_label(1)
    assert not (edits.data == 1).any() and edits.table.get(1) is None
    edits.undo()
    assert (edits.data[5:10, 5:10, 5:10] == 1).all() and edits.table.name(1) == "core"


def test_listeners_hear_labels_and_box_and_memmap_is_never_written(tmp_path):
    from viewer.core.io.nifti import load_nifti, save_nifti

    data = np.zeros((10, 10, 10), np.uint8)
    data[2:4, 2:4, 2:4] = 1
    save_nifti(data, tmp_path / "r.nii", np.eye(4))
    volume = load_nifti(tmp_path / "r.nii", role="regions")
    edits = EditableLabels(volume, LabelTable.from_names({1: "core"}))
    heard = []
    edits.add_listener(lambda labels, box: heard.append((labels, box)))
    mask = np.zeros((10, 10, 10), bool)
    mask[2:4, 2:4, 2:4] = True
    edits.paint_mask("erase", (slice(0, 10),) * 3, mask, 0)
    assert heard[-1][0] == {1}
    assert np.asarray(load_nifti(tmp_path / "r.nii").data)[3, 3, 3] == 1  # the file is untouched


def test_history_is_bounded():
    edits = _labels()
    edits.max_undo = 5
    for index in range(8):
        mask = np.zeros((40, 40, 20), bool)
        mask[index, 0, 0] = True
        edits.paint_mask(f"dot {index}", (slice(0, 40), slice(0, 40), slice(0, 20)), mask, 2)
    assert len(edits.history()) == 5 and edits.history()[0] == "dot 3"


def test_squash_merges_a_live_stroke_into_one_undo_step():
    edits = _labels()
    original = edits.data.copy()
    for index in range(4):
        mask = np.zeros((40, 40, 20), bool)
        mask[10 + index * 3: 14 + index * 3, 20:24, 5] = True
        edits.paint_mask("segment", (slice(0, 40), slice(0, 40), slice(0, 20)), mask, 2)
    painted = edits.data.copy()
    merged = edits.squash(4, "brush stroke")
    assert edits.history()[-1] == "brush stroke" and len(edits.history()) == 1
    assert merged.box == (slice(10, 23), slice(20, 24), slice(5, 6))
    edits.undo()
    np.testing.assert_array_equal(edits.data, original)
    edits.redo()
    np.testing.assert_array_equal(edits.data, painted)
