"""Scene: the window's model, driven without a window."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.core.io.study import load_study
from viewer.core.scene import Scene


@pytest.fixture(scope="module")
def scene(demo_manifest):
    return Scene(load_study(demo_manifest))


def test_opens_on_the_strongest_hotspot_with_anatomy_first(scene):
    roles = [layer.volume.role for layer in scene.layers()]
    assert roles[0] == "anatomical" and roles[-1] == "regions" and "fluorine" in roles
    assert scene.readout()[-1][1] == "injection site"


def test_cursor_steps_by_whole_voxels_and_clamps(scene):
    start = scene.cursor.copy()
    events = []
    scene.events.connect("cursor", lambda: events.append(1))
    scene.step_slice("axial", 3)
    assert scene.cursor[2] == pytest.approx(np.rint(start[2] + 72) - 72 + 3, abs=1e-6)  # 1 mm grid at integer + origin
    scene.set_cursor((0.0, 0.0, 10_000.0))
    assert scene.cursor[2] <= scene.anatomy.world_bounds()[1][2]
    assert len(events) == 2
    scene.set_cursor(start)


def test_display_is_kept_per_role_across_timepoints(scene):
    scene.set_display("pet", opacity=0.25)
    scene.set_timepoint(2)
    assert scene.timepoint.label == "day 21"
    assert scene.display["pet"].opacity == 0.25
    assert next(l for l in scene.layers() if l.volume.role == "pet").display.opacity == 0.25
    scene.set_timepoint(0)
    with pytest.raises(IndexError):
        scene.set_timepoint(7)


def test_layer_order_and_batched_events(scene):
    seen = []
    scene.events.connect("order", lambda: seen.append("order"))
    with scene.events.batch():
        scene.move_layer("fluorine", -2)
        scene.move_layer("fluorine", +1)
    assert seen == ["order"]
    roles = [layer.volume.role for layer in scene.layers()]
    assert roles[0] == "anatomical"
    scene.move_layer("anatomical", 3)
    assert [layer.volume.role for layer in scene.layers()][0] == "anatomical"


def test_readout_has_every_layer_in_its_units(scene):
    rows = {name: (value, units) for name, value, units in scene.readout()}
    assert rows["PET"][1] == "SUV" and rows["ΔR1"][1] == "1/s" and rows["TSC"][1] == "mM"
    scene.quantifier()
    rows = {name: (value, units) for name, value, units in scene.readout()}
    assert rows["¹⁹F cells"][1] == "cells/voxel" and float(rows["¹⁹F cells"][0]) > 0
    outside = {name: value for name, value, _ in scene.readout((500.0, 0.0, 0.0))}
    assert outside["PET"] == "outside"


def test_planes_follow_the_convention(scene):
    assert scene.plane("axial").edge_letters()["left"] == "R"
    scene.set_radiological(False)
    assert scene.plane("axial").edge_letters()["left"] == "L"
    scene.set_radiological(True)


def test_editing_regions_updates_numbers_and_emits_events(demo_manifest):
    scene = Scene(load_study(demo_manifest))
    before = scene.stats().region("penumbra").values["volume_ml"]
    editable = scene.editable()
    heard = []
    scene.events.connect("regions", lambda **info: heard.append(info))
    data = editable.data
    box = tuple(slice(0, n) for n in data.shape)
    erase = data == editable.table.label_of("penumbra")
    editable.paint_mask("erase penumbra", box, erase, 0)
    assert heard and 2 in heard[-1]["labels"]
    assert scene.quantifier().region(2).values["volume_ml"] == 0
    editable.undo()
    assert scene.quantifier().region(2).values["volume_ml"] == pytest.approx(before)
    editable.rename(2, "tissue at risk")
    assert scene.stats().region("tissue at risk") is not None
    assert any(layer.region_names.get(2) == "tissue at risk" for layer in scene.layers())


def test_saved_colours_and_locks_come_back_when_the_study_is_reopened(demo_manifest, tmp_path):
    import shutil

    from viewer.core.io.labels import save_label_map, update_manifest_regions
    from viewer.core.regions import LabelEntry

    study_folder = tmp_path / "study"
    shutil.copytree(demo_manifest.parent, study_folder)
    scene = Scene(load_study(study_folder / "study.toml"))
    editable = scene.editable()
    editable.set_table("recolour and lock", editable.table.with_entry(LabelEntry(1, "core", (10, 20, 30), locked=True)))
    target = study_folder / "regions" / "day-1-regions.nii.gz"
    save_label_map(editable, target)
    update_manifest_regions(study_folder / "study.toml", "day 1", "regions/day-1-regions.nii.gz", editable.table)
    reopened = Scene(load_study(study_folder / "study.toml")).editable()
    entry = reopened.table.get(1)
    assert entry.color == (10, 20, 30) and entry.locked


def test_regions_from_another_grid_keep_labels_above_uint16(tmp_path):
    """Mapped onto the anatomical grid for editing, a label of 70,000 must not wrap (it was
    cast to uint16: 70,000 became 4,464)."""
    import nibabel as nib

    from tests.core.study_builders import write_small_study
    from viewer.core.io.nifti import save_nifti

    manifest = write_small_study(tmp_path / "s")
    anatomy = nib.load(str(tmp_path / "s" / "t1.nii"))
    coarse = anatomy.affine.copy()
    coarse[:3, :3] *= 2.0  # another grid: 2 mm
    labels = np.zeros((30, 32, 24), np.int32)
    labels[10:20, 10:20, 8:16] = 70_000
    save_nifti(labels, tmp_path / "s" / "regions.nii.gz", coarse)
    scene = Scene(load_study(manifest))
    edited = scene.editable()
    assert int(np.asarray(edited.data).max()) == 70_000


def test_batched_region_events_with_boxes_are_emitted_once_each():
    """An edit's event carries its box (slices, unhashable before Python 3.12): batching it
    raised TypeError; identical events merge, different boxes do not."""
    from viewer.core.events import Events

    events, heard = Events(), []
    events.connect("regions", lambda **info: heard.append(info))
    box = (slice(0, 4), slice(2, 6), slice(1, 3))
    with events.batch():
        events.emit("regions", timepoint="day 7", labels=frozenset({1}), box=box)
        events.emit("regions", timepoint="day 7", labels=frozenset({1}), box=box)
        events.emit("regions", timepoint="day 7", labels=frozenset({2}), box=(slice(5, 9),) * 3)
        assert heard == []
    assert [info["labels"] for info in heard] == [frozenset({1}), frozenset({2})]
    assert heard[0]["box"] == box
