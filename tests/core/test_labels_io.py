"""Saving/loading label maps with their table, rewriting the manifest, CSV export."""

from __future__ import annotations

import json
import os
import tomllib

import nibabel as nib
import numpy as np
import pytest

from tests.core.study_builders import write_small_study
from viewer.core.errors import ViewerError
from viewer.core.io import labels as labels_io
from viewer.core.io.labels import (
    export_region_table_csv,
    label_table_path,
    load_label_map,
    save_label_map,
    update_manifest_regions,
)
from viewer.core.io.study import load_study, load_timepoint
from viewer.core.regions import EditableLabels, LabelEntry, LabelTable
from viewer.core.volume import Volume

AFFINE = np.array([[-0.8, 0.1, 0.0, 40.0], [0.0, 1.2, 0.0, -30.0], [0.05, 0.0, 2.5, -10.0], [0, 0, 0, 1]])


def _editable(dtype=np.uint8, shape=(20, 18, 12)) -> EditableLabels:
    data = np.zeros(shape, dtype)
    data[2:6, 3:7, 1:4] = 1
    data[10:14, 8:12, 5:9] = 7
    table = LabelTable(
        (
            LabelEntry(1, "core", (230, 40, 40), locked=True),
            LabelEntry(7, "injection site ü", (12, 34, 56), locked=False),
            LabelEntry(9, "empty region", (1, 2, 3), locked=False),
        )
    )
    return EditableLabels(Volume.from_array(data, AFFINE, role="regions"), table)


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("dtype,suffix", [(np.uint8, ".nii.gz"), (np.int16, ".nii"), (np.int32, ".nii.gz"), (np.uint16, ".nii")])
def test_round_trip_keeps_voxels_dtype_affine_and_table(tmp_path, dtype, suffix):
    editable = _editable(dtype)
    editable.paint_mask("brush", (slice(0, 5), slice(0, 5), slice(0, 5)), np.ones((5, 5, 5), bool), 9, respect_locks=True)
    assert editable.dirty
    path = save_label_map(editable, tmp_path / f"regions{suffix}")
    assert not editable.dirty
    assert _files(tmp_path) == sorted([f"regions{suffix}", "regions.labels.json"])

    volume, table = load_label_map(path)
    assert volume.role == "regions"
    assert volume.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(volume.data, editable.data)
    np.testing.assert_allclose(volume.voxel_to_world, AFFINE, atol=1e-5)
    assert table == editable.table
    assert table.get(1).locked and not table.get(7).locked
    assert table.get(7).name == "injection site ü" and table.get(7).color == (12, 34, 56)

    document = json.loads(label_table_path(path).read_text(encoding="utf-8"))
    assert document["format"] == "cell-therapy-viewer label table" and document["version"] == 1
    assert document["labels"][0] == {"label": 1, "name": "core", "color": [230, 40, 40], "locked": True}
    header = nib.load(str(path)).header
    assert int(header["sform_code"]) == 1 and int(header["qform_code"]) == 1
    assert header.get_intent()[0] == "label"


def test_label_table_path_names():
    assert label_table_path("/a/b/regions.nii.gz").name == "regions.labels.json"
    assert label_table_path("/a/b/day7.regions.nii").name == "day7.regions.labels.json"


def test_missing_json_gives_table_of_labels_present(tmp_path):
    editable = _editable(np.int16)
    path = save_label_map(editable, tmp_path / "r.nii.gz")
    label_table_path(path).unlink()
    _, table = load_label_map(path)
    assert table.names == {1: "label 1", 7: "label 7"}
    _, table = load_label_map(path, fallback_names={7: "core", 3: "unused"})
    assert table.names == {1: "label 1", 7: "core"}
    assert not table.locked


@pytest.mark.parametrize(
    "text,needle",
    [
        ("{not json", "malformed"),
        ('{"format": "something else", "version": 1, "labels": []}', "not a label table"),
        ('{"format": "cell-therapy-viewer label table", "version": 1, "labels": [{"label": 1, "name": "a", "color": [1, 2], "locked": false}]}', "color"),
        ('{"format": "cell-therapy-viewer label table", "version": 1, "labels": [{"label": 0, "name": "a", "color": [1, 2, 3], "locked": false}]}', "positive"),
        ('{"format": "cell-therapy-viewer label table", "version": 1, "labels": [{"label": 1, "name": "", "color": [1, 2, 3]}]}', "name"),
        ('{"format": "cell-therapy-viewer label table", "version": 9, "labels": []}', "newer"),
    ],
)
def test_malformed_json_is_a_viewer_error_naming_the_file(tmp_path, text, needle):
    path = save_label_map(_editable(), tmp_path / "r.nii.gz")
    label_table_path(path).write_text(text, encoding="utf-8")
    with pytest.raises(ViewerError) as info:
        load_label_map(path)
    assert "r.labels.json" in str(info.value) and needle in str(info.value)


def test_float_and_negative_maps(tmp_path):
    from viewer.core.io.nifti import save_nifti

    data = np.zeros((4, 4, 4), np.float32)
    data[1, 1, 1] = 3
    save_nifti(data, tmp_path / "f.nii", np.eye(4))
    volume, table = load_label_map(tmp_path / "f.nii")
    assert volume.dtype == np.int32 and table.names == {3: "label 3"}
    data[0, 0, 0] = 0.5
    save_nifti(data, tmp_path / "g.nii", np.eye(4))
    with pytest.raises(ViewerError, match="whole numbers"):
        load_label_map(tmp_path / "g.nii")
    save_nifti(-np.ones((4, 4, 4), np.int16), tmp_path / "n.nii", np.eye(4))
    with pytest.raises(ViewerError, match="negative"):
        load_label_map(tmp_path / "n.nii")


def test_refuses_non_nifti_path(tmp_path):
    with pytest.raises(ViewerError, match=".nii"):
        save_label_map(_editable(), tmp_path / "r.png")


def test_failure_on_second_rename_keeps_previous_pair_and_leaves_no_temporaries(tmp_path, monkeypatch):
    editable = _editable()
    path = save_label_map(editable, tmp_path / "r.nii.gz")
    old_nii = path.read_bytes()
    old_json = label_table_path(path).read_bytes()

    editable.paint_mask("brush", (slice(0, 20), slice(0, 18), slice(0, 12)), np.ones((20, 18, 12), bool), 9)
    editable.rename(7, "renamed")
    real_replace = os.replace
    calls = []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(labels_io.os, "replace", flaky)
    with pytest.raises(ViewerError, match="r.nii.gz"):
        save_label_map(editable, path)
    monkeypatch.setattr(labels_io.os, "replace", real_replace)

    assert path.read_bytes() == old_nii
    assert label_table_path(path).read_bytes() == old_json
    assert _files(tmp_path) == ["r.labels.json", "r.nii.gz"]
    assert editable.dirty  # not saved


def test_failure_on_second_rename_without_previous_files_leaves_nothing(tmp_path, monkeypatch):
    real_replace = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(5, "I/O error")
        return real_replace(src, dst)

    monkeypatch.setattr(labels_io.os, "replace", flaky)
    with pytest.raises(ViewerError):
        save_label_map(_editable(), tmp_path / "new.nii")
    assert _files(tmp_path) == []


def test_failure_while_writing_leaves_previous_files_and_no_temporaries(tmp_path, monkeypatch):
    editable = _editable()
    path = save_label_map(editable, tmp_path / "r.nii")
    old_nii, old_json = path.read_bytes(), label_table_path(path).read_bytes()
    editable.rename(1, "other")

    def broken_write(handle, img, compressed):
        handle.write(b"half a NIfTI")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(labels_io, "_write_nifti", broken_write)
    with pytest.raises(ViewerError, match="No space left"):
        save_label_map(editable, path)
    assert path.read_bytes() == old_nii and label_table_path(path).read_bytes() == old_json
    assert _files(tmp_path) == ["r.labels.json", "r.nii"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions and a non-root user")
def test_read_only_folder_is_a_viewer_error_and_keeps_files(tmp_path):
    editable = _editable()
    folder = tmp_path / "ro"
    path = save_label_map(editable, folder / "r.nii.gz")
    before = {name: (folder / name).read_bytes() for name in _files(folder)}
    editable.rename(1, "x")
    folder.chmod(0o555)
    try:
        with pytest.raises(ViewerError, match="r.nii.gz|r.labels.json"):
            save_label_map(editable, path)
    finally:
        folder.chmod(0o755)
    assert {name: (folder / name).read_bytes() for name in _files(folder)} == before


def _study_with_two_timepoints(root):
    manifest = write_small_study(root)
    text = manifest.read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    second = dict(raw["timepoint"][0], label="day 14", day=14)
    raw["timepoint"].append(second)
    raw["model"] = []
    raw["study"]["therapy"] = "UC-MSC"
    raw["calibration"]["detection_snr"] = 4.0
    from viewer.core.io.study import write_manifest

    return write_manifest(raw, manifest)


@pytest.mark.parametrize("all_sharing", [False, True])
def test_manifest_rewrite_points_at_new_map_and_keeps_everything_else(tmp_path, all_sharing):
    manifest = _study_with_two_timepoints(tmp_path)
    before = tomllib.loads(manifest.read_text(encoding="utf-8"))
    study = load_study(manifest)
    volumes = load_timepoint(study, study.timepoint("day 7"))
    editable = EditableLabels(volumes["regions"], LabelTable.from_names(dict(study.timepoint("day 7").region_names)))
    editable.paint_mask("new region", (slice(0, 3), slice(0, 3), slice(0, 3)), np.ones((3, 3, 3), bool), 5)
    table = editable.table.with_entry(LabelEntry(5, "injection site", (1, 2, 3)))
    table = table.with_entry(LabelEntry(2, "rim", (4, 5, 6)))
    editable.set_table("names", table)
    saved = save_label_map(editable, tmp_path / "edited" / "regions_v2.nii.gz")

    update_manifest_regions(manifest, "day 7", saved, editable.table, all_sharing=all_sharing)
    after = tomllib.loads(manifest.read_text(encoding="utf-8"))

    assert after["study"] == before["study"]
    assert after["calibration"] == before["calibration"]
    assert list(after) == list(before)
    day7, day14 = after["timepoint"]
    assert day7["regions"] == "edited/regions_v2.nii.gz"
    assert day7["region_names"] == {"1": "core", "2": "rim", "5": "injection site"}
    for key in before["timepoint"][0]:
        if key not in ("regions", "region_names"):
            assert day7[key] == before["timepoint"][0][key]
    if all_sharing:
        assert day14["regions"] == day7["regions"] and day14["region_names"] == day7["region_names"]
    else:
        assert day14 == before["timepoint"][1]

    study = load_study(manifest)
    tp = study.timepoint("day 7")
    assert tp.images["regions"] == saved.resolve()
    assert dict(tp.region_names) == {1: "core", 2: "rim", 5: "injection site"}
    assert study.calibration.detection_snr == 4.0 and study.info["therapy"] == "UC-MSC"
    volumes = load_timepoint(study, tp)
    np.testing.assert_array_equal(volumes["regions"].data, editable.data)
    assert list(tmp_path.glob(".study.toml*")) == []


def test_manifest_rewrite_accepts_relative_path_and_unknown_timepoint_is_an_error(tmp_path):
    manifest = write_small_study(tmp_path)
    editable = EditableLabels(load_label_map(tmp_path / "regions.nii.gz")[0], LabelTable.from_names({1: "core"}))
    save_label_map(editable, tmp_path / "r2.nii")
    update_manifest_regions(tmp_path, "day 7", "r2.nii", LabelTable())
    raw = tomllib.loads(manifest.read_text(encoding="utf-8"))
    assert raw["timepoint"][0]["regions"] == "r2.nii" and "region_names" not in raw["timepoint"][0]
    with pytest.raises(ViewerError, match="day 99"):
        update_manifest_regions(manifest, "day 99", "r2.nii", LabelTable())


def test_manifest_rewrite_refuses_missing_map_and_keeps_old_manifest(tmp_path):
    manifest = write_small_study(tmp_path)
    old = manifest.read_bytes()
    with pytest.raises(ViewerError, match="nowhere.nii"):
        update_manifest_regions(manifest, "day 7", "nowhere.nii", LabelTable.from_names({1: "core"}))
    assert manifest.read_bytes() == old


def test_export_csv_atomic(tmp_path):
    text = "region,volume_ml\ncore,1.5\nü,2\n"
    path = export_region_table_csv(text, tmp_path / "out" / "stats.csv")
    assert path.read_text(encoding="utf-8") == text
    assert _files(tmp_path / "out") == ["stats.csv"]
