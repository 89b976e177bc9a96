"""The demo's sessions lie in their own scanner spaces (PRODUCT.md §9, issue 16): its later
timepoints and its PETs are written with affines moved by known rigid transforms, the truth
in ``truth.json``. Shipped registered by the product's own registration, it recovers those
transforms; written unregistered, its carried regions measure the wrong tissue until
``viewer register`` runs — both shown here.

The truths are independent of the registration code: the transforms are the generator's
design (checked against the files' own affines with nibabel), and the cell numbers and SUV
means are the generator's designed values.
"""

from __future__ import annotations

import json
import tomllib

import nibabel as nib
import numpy as np
import pytest

from viewer.core.analysis import compute_study_stats
from viewer.core.demo import TRUTH_NAME, write_demo_study
from viewer.core.io.study import load_study, write_manifest
from viewer.core.study_registration import target_errors
from viewer.cli import main

slow = pytest.mark.slow  # writes an unregistered demo and registers it (~25 s)
#: points across the brain (MNI mm) where registration errors are measured
BRAIN_POINTS = np.array([[x, y, z] for x in (-55, 0, 55) for y in (-90, -18, 55) for z in (-35, 18, 70)], float)


def _truth(manifest) -> dict:
    return json.loads((manifest.parent / TRUTH_NAME).read_text(encoding="utf-8"))


def _by_label(truth: dict) -> dict[str, dict]:
    return {t["label"]: t for t in truth["timepoints"]}


def _stats(manifest) -> dict[str, dict[str, dict]]:
    """Per timepoint, per region name, the numbers `viewer stats` prints."""
    stats = compute_study_stats(load_study(manifest))
    return {tp["label"]: {r["name"]: r for r in tp["regions"]} for tp in json.loads(stats.to_json())["timepoints"]}


def _worst_errors(stats: dict, truth: dict) -> tuple[float, float]:
    """Largest relative error of the ¹⁹F cell count and of the mean SUV over the regions
    holding cells (the lesion, the injection site) and the contralateral white matter."""
    cells = suv = 0.0
    for label, regions in _by_label(truth).items():
        for region in regions["regions"]:
            row = stats[label][region["name"]]
            if region["total_cells"]:
                cells = max(cells, abs(row["fluorine_cells"] / region["total_cells"] - 1))
            if region["suv_mean"] is not None and region["name"] not in ("reference", "background"):
                suv = max(suv, abs(row["suv_mean"] / region["suv_mean"] - 1))
    return cells, suv


def test_the_files_lie_in_their_sessions_scanner_spaces(demo_manifest):
    """The later anatomies are day 1's voxels with the affine moved by the inverse of the
    true transform, read by nibabel (not by the code under test)."""
    truth = _by_label(_truth(demo_manifest))
    root = demo_manifest.parent
    day1 = nib.load(root / "anat" / "t1.nii")
    for label, folder in (("day 7", "day7"), ("day 21", "day21")):
        moved = nib.load(root / folder / "t1.nii")
        np.testing.assert_array_equal(np.asarray(moved.dataobj), np.asarray(day1.dataobj))
        expected = np.linalg.inv(truth[label]["transform"]) @ day1.affine
        np.testing.assert_allclose(moved.affine, expected, atol=1e-4)
        assert np.abs(truth[label]["transform"][0][3]) + np.abs(truth[label]["transform"][2][3]) > 5  # several mm
    for label in ("day 1", "day 21"):
        pet = nib.load(root / truth[label]["label"].replace(" ", "") / "pet.nii.gz")
        grid = np.array(_truth(demo_manifest)["geometry"]["grids"]["pet"]["affine"])
        expected = np.linalg.inv(truth[label]["image_transforms"]["pet"]) @ np.linalg.inv(truth[label]["transform"]) @ grid
        np.testing.assert_allclose(pet.affine, expected, atol=1e-4)


def test_the_shipped_demo_is_registered_to_the_true_transforms(demo_manifest):
    """The demo as `viewer demo` writes it: every transform in its manifest was found by the
    registration; target errors across the brain ≤ 1 mm (same modality) and ≤ 2 mm (PET to MR)."""
    truth = _by_label(_truth(demo_manifest))
    study = load_study(demo_manifest)
    for timepoint in study.timepoints:
        true = truth[timepoint.label]
        if timepoint.label == "day 1":
            assert timepoint.transform is None  # the reference space
        else:
            assert target_errors(timepoint.transform, np.array(true["transform"]), BRAIN_POINTS).max() <= 1.0
        found = timepoint.world_from_image("pet")
        assert target_errors(found, np.array(true["image_transforms"]["pet"]), BRAIN_POINTS).max() <= 2.0


@slow
def test_unregistered_numbers_are_wrong_and_viewer_register_makes_them_right(tmp_path, capsys):
    # the ideal noise profile: what is measured here is the registration, so the counts must
    # not also carry a scanner's noise (whose intervals test_stats.py checks on the default demo)
    manifest = write_demo_study(tmp_path / "study", registered=False, noise="ideal")
    truth = _truth(manifest)
    before = (tmp_path / "study" / "study.toml").read_text(encoding="utf-8")
    assert "transform" not in before

    cells_off, suv_off = _worst_errors(_stats(manifest), truth)
    assert cells_off > 0.5 and suv_off > 0.05  # the carried regions sit in the wrong tissue

    assert main(["register", str(manifest)]) == 0
    assert main(["register", str(manifest), "--image", "pet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 + 3 and all("written" in line and "NOT" not in line for line in printed)
    for label in ("day 7", "day 21"):  # the rotation printed is the true one (its angle, degrees)
        line = next(line for line in printed if line.startswith(f"{label}: "))
        printed_degrees = float(line.split("rotation ")[1].split("°")[0])
        rotation = np.array(_by_label(truth)[label]["transform"])[:3, :3]
        assert printed_degrees == pytest.approx(np.degrees(np.arccos((np.trace(rotation) - 1) / 2)), abs=0.1)

    cells_off, suv_off = _worst_errors(_stats(manifest), truth)
    assert cells_off <= 0.03  # the quantification tolerance of PRODUCT.md §3 for cells
    assert suv_off <= 0.03  # as for the registered demo (test_stats): SUV noise is 5 % per voxel

    # What the registration contributes, apart from noise: the numbers with the true
    # transforms written by hand, against those with the transforms it found.
    registered = _stats(manifest)
    raw = tomllib.loads((tmp_path / "study" / "study.toml").read_text(encoding="utf-8"))
    for table in raw["timepoint"]:
        true = _by_label(truth)[table["label"]]
        if table["label"] != "day 1":
            table["transform"] = true["transform"]
        table["image_transforms"] = dict(true["image_transforms"])
    write_manifest(raw, tmp_path / "study" / "study.toml")
    with_truth = _stats(manifest)
    for label, regions in with_truth.items():
        for name, row in regions.items():
            if row.get("fluorine_cells"):
                assert registered[label][name]["fluorine_cells"] == pytest.approx(row["fluorine_cells"], rel=0.03)
            if row.get("suv_mean") is not None:
                assert registered[label][name]["suv_mean"] == pytest.approx(row["suv_mean"], rel=0.01), (label, name)
