"""Manifest paths stay inside the study folder (PRODUCT.md §2).

An absolute path, a ``..`` that climbs above the manifest folder, or a symlink that leads out
of it is refused with one line naming the manifest, the entry and the reason; a study copied
from elsewhere must not make the tools read, or print into a report, files outside it.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w

from tests.core.study_builders import write_small_study
from viewer.cli import main
from viewer.core.errors import ViewerError
from viewer.core.io.labels import save_label_map, update_manifest_regions
from viewer.core.io.study import load_study, load_timepoint, write_manifest
from viewer.core.regions import EditableLabels, LabelTable
from viewer.core.volume import Volume


@pytest.fixture
def study(tmp_path) -> Path:
    """A small study in ``tmp_path/s`` and an outside NIfTI ``tmp_path/outside.nii.gz``."""
    manifest = write_small_study(tmp_path / "s")
    shutil.copyfile(tmp_path / "s" / "f19.nii.gz", tmp_path / "outside.nii.gz")
    return manifest


def _rewrite(manifest: Path, change: dict[str, Any] | None = None, models: list[dict[str, str]] | None = None) -> Path:
    """The manifest with the first timepoint's keys changed (no validation: that is under test)."""
    raw = tomllib.loads(manifest.read_text(encoding="utf-8"))
    raw["timepoint"][0].update(change or {})
    if models is not None:
        raw["model"] = models
    manifest.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return manifest


def _refused(manifest: Path) -> str:
    with pytest.raises(ViewerError) as info:
        load_study(manifest)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{manifest}: ")
    return message


# -- refused ---------------------------------------------------------------------------------

def test_absolute_path_outside_refused(study):
    message = _refused(_rewrite(study, {"fluorine": "/etc/passwd"}))
    assert message == (f"{study}: [[timepoint]] 'day 7' fluorine: /etc/passwd is an absolute path; "
                       "image paths must be relative to the study folder")


def test_absolute_path_even_to_a_file_inside_refused(study):
    """The same study copied elsewhere would silently read the original's file."""
    inside = str((study.parent / "f19.nii.gz").resolve())
    assert "is an absolute path" in _refused(_rewrite(study, {"fluorine": inside}))


@pytest.mark.parametrize("value", ["../outside.nii.gz", "sub/../../outside.nii.gz", "./../outside.nii.gz", ".."])
def test_climbing_out_refused_whether_or_not_the_file_exists(study, value):
    message = _refused(_rewrite(study, {"fluorine": value}))
    assert f"fluorine: {value} climbs out of the study folder (..); image paths must stay inside it" in message


def test_symlinked_file_leading_outside_refused(study, tmp_path):
    (study.parent / "f19-link.nii.gz").symlink_to(tmp_path / "outside.nii.gz")
    message = _refused(_rewrite(study, {"fluorine": "f19-link.nii.gz"}))
    assert f"leads outside the study folder (a link to {(tmp_path / 'outside.nii.gz').resolve()})" in message


def test_symlinked_folder_leading_outside_refused(study, tmp_path):
    (study.parent / "data").symlink_to(tmp_path, target_is_directory=True)
    assert "leads outside the study folder" in _refused(_rewrite(study, {"fluorine": "data/outside.nii.gz"}))


def test_dotdot_through_a_symlinked_folder_refused(study, tmp_path):
    """``link/..`` is the link target's parent for the OS, not the study: the resolved path decides."""
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    shutil.copyfile(tmp_path / "outside.nii.gz", tmp_path / "elsewhere" / "f19.nii.gz")
    (study.parent / "link").symlink_to(tmp_path / "elsewhere" / "deep", target_is_directory=True)
    assert "leads outside the study folder" in _refused(_rewrite(study, {"fluorine": "link/../f19.nii.gz"}))


def test_dicom_folder_holding_a_link_outside_refused(study, tmp_path):
    folder = study.parent / "petdcm" / "series1"
    folder.mkdir(parents=True)
    (folder / "IM0001").symlink_to(tmp_path / "outside.nii.gz")
    raw = tomllib.loads(study.read_text(encoding="utf-8"))
    raw["timepoint"][0].pop("pet_units")
    study.write_text(tomli_w.dumps(raw), encoding="utf-8")
    message = _refused(_rewrite(study, {"pet": "petdcm"}))
    assert "pet: petdcm: series1/IM0001 in it is a link to" in message and "outside the study folder" in message


@pytest.mark.parametrize("key", ["onnx", "card"])
@pytest.mark.parametrize("where", ["../model", "/abs/model"])
def test_model_file_outside_refused(study, tmp_path, key, where):
    (study.parent / "models").mkdir()
    for name in ("m.onnx", "m.json"):
        (study.parent / "models" / name).write_bytes(b"{}")
        (tmp_path / name).write_bytes(b"{}")
    entry = {"onnx": "models/m.onnx", "card": "models/m.json"}
    entry[key] = f"{where}.{'onnx' if key == 'onnx' else 'json'}"
    message = _refused(_rewrite(study, models=[entry]))
    assert f"[[model]] 1 {key}: {entry[key]}" in message and "model paths must" in message


def test_model_card_linked_outside_refused(study, tmp_path):
    (study.parent / "models").mkdir()
    (study.parent / "models" / "m.onnx").write_bytes(b"onnx")
    (tmp_path / "card.json").write_text("{}")
    (study.parent / "models" / "m.json").symlink_to(tmp_path / "card.json")
    message = _refused(_rewrite(study, models=[{"onnx": "models/m.onnx", "card": "models/m.json"}]))
    assert "[[model]] 1 card: models/m.json leads outside the study folder" in message


def test_command_line_refuses_with_one_error_line_and_reads_nothing(study, tmp_path, capsys):
    _rewrite(study, {"regions": "../outside.nii.gz"})
    out = tmp_path / "stats.json"
    assert main(["stats", str(study), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "climbs out of the study folder" in err
    assert not out.exists()


def test_write_manifest_refuses_an_outside_path_before_writing(study):
    before = study.read_bytes()
    raw = tomllib.loads(before.decode("utf-8"))
    raw["timepoint"][0]["fluorine"] = "../outside.nii.gz"
    with pytest.raises(ViewerError, match="climbs out"):
        write_manifest(raw, study)
    assert study.read_bytes() == before


def test_regions_saved_outside_the_study_are_not_put_in_the_manifest(study, tmp_path):
    labels = Volume.from_array(np.zeros((4, 4, 4), np.uint8), np.eye(4), role="regions")
    saved = save_label_map(EditableLabels(labels, LabelTable.from_names({1: "core"})), tmp_path / "r.nii.gz")
    before = study.read_bytes()
    with pytest.raises(ViewerError, match="climbs out"):
        update_manifest_regions(study, "day 7", saved, LabelTable.from_names({1: "core"}))
    assert study.read_bytes() == before


# -- accepted --------------------------------------------------------------------------------

def test_nested_relative_paths_load(study):
    nested = study.parent / "day7" / "mr" / "f19"
    nested.mkdir(parents=True)
    shutil.move(study.parent / "f19.nii.gz", nested / "f19.nii.gz")
    loaded = load_study(_rewrite(study, {"fluorine": "day7/mr/f19/f19.nii.gz"}))
    timepoint = loaded.timepoints[0]
    assert timepoint.images["fluorine"] == (nested / "f19.nii.gz").resolve()
    assert load_timepoint(loaded, timepoint)["fluorine"].shape == (30, 30, 24)


def test_dotdot_that_stays_inside_is_fine(study):
    (study.parent / "sub").mkdir()
    loaded = load_study(_rewrite(study, {"fluorine": "sub/../f19.nii.gz"}))
    assert loaded.timepoints[0].images["fluorine"] == (study.parent / "f19.nii.gz").resolve()


def test_symlink_to_another_place_inside_the_study_is_fine(study):
    (study.parent / "day7").mkdir()
    (study.parent / "day7" / "f19.nii.gz").symlink_to(study.parent / "f19.nii.gz")
    loaded = load_study(_rewrite(study, {"fluorine": "day7/f19.nii.gz"}))
    assert loaded.timepoints[0].images["fluorine"] == (study.parent / "f19.nii.gz").resolve()


def test_study_opened_through_a_symlinked_folder_is_fine(study, tmp_path):
    """The study folder itself may be reached through a link: containment uses its real path."""
    (tmp_path / "link-to-study").symlink_to(study.parent, target_is_directory=True)
    loaded = load_study(tmp_path / "link-to-study" / "study.toml")
    assert loaded.timepoints[0].images["anatomical"] == (study.parent / "t1.nii").resolve()


def test_model_files_inside_the_study_are_fine(study):
    (study.parent / "models").mkdir()
    (study.parent / "models" / "m.onnx").write_bytes(b"onnx")
    (study.parent / "models" / "m.json").write_text("{}")
    loaded = load_study(_rewrite(study, models=[{"onnx": "models/m.onnx", "card": "models/m.json"}]))
    assert loaded.models[0].card == (study.parent / "models" / "m.json").resolve()
