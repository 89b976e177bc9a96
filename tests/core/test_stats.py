"""`viewer stats`: the demo study against its truth.json, the output schema, and edge cases."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from tests.core.quant_phantoms import BALLS, CALIBRATION, REGION_NAMES, fluorine_image, gd_image, region_labels, spio_image, study
from viewer.cli import main
from viewer.core.io.study import Timepoint, load_study
from viewer.core.quant.measures import REGION_KEYS, REGION_MEASURES, TIMEPOINT_KEYS
from viewer.core.analysis import compute_study_stats
from viewer.core.quant.stats import TimepointQuantifier, time_course
from viewer.core.volume import Volume


@pytest.fixture(scope="module")
def demo(demo_manifest):
    truth = json.loads((demo_manifest.parent / "truth.json").read_text())
    return compute_study_stats(load_study(demo_manifest)), truth


def _cell_regions(truth_timepoint):
    return [r for r in truth_timepoint["regions"] if r["total_cells"]]


def test_demo_counts_match_truth_in_every_timepoint(demo):
    """Tolerances (issue #3): ¹⁹F counts within 3 %, dead fraction within 0.02 absolute,
    live cells within 3 % + 0.02 of the total, volumes exact."""
    stats, truth = demo
    assert [t.label for t in stats.timepoints] == [t["label"] for t in truth["timepoints"]]
    for computed, expected in zip(stats.timepoints, truth["timepoints"]):
        for region in expected["regions"]:
            row = computed.region(region["name"]).values
            assert row["volume_ml"] == pytest.approx(region["volume_ml"], rel=1e-9)
        for region in _cell_regions(expected):
            row = computed.region(region["name"]).values
            where = f"{expected['label']} {region['name']}"
            assert row["fluorine_cells"] == pytest.approx(region["total_cells"], rel=0.03), where
            assert row["dead_fraction"] == pytest.approx(region["dead_fraction"], abs=0.02), where
            assert row["live_cells"] == pytest.approx(region["live_cells"], abs=0.05 * region["total_cells"]), where
            assert row["cells_per_mm3"] == pytest.approx(row["fluorine_cells"] / (row["volume_ml"] * 1000), rel=1e-12)
            if abs(region["dead_fraction"] - 0.2) > 0.02:
                assert row["rejection_alert"] == (region["dead_fraction"] >= 0.2), where


def test_demo_detection_limit_sodium_and_pet_match_truth(demo):
    """Detection limit within 5 % (σ is estimated); TSC within 1 mM and SUVmean within 3 % of the
    noise-free design means (noise 2–3 mM and 5 % averaged over the region's voxels)."""
    stats, truth = demo
    for computed, expected in zip(stats.timepoints, truth["timepoints"]):
        assert computed.detection_limit_cells_per_mm3 == pytest.approx(expected["detection_limit_cells_per_mm3"], rel=0.05)
        for region in expected["regions"]:
            row = computed.region(region["name"]).values
            if region.get("sodium_mean_mM") is not None:
                assert row["sodium_mean_mM"] == pytest.approx(region["sodium_mean_mM"], abs=1.0), region["name"]
            if region.get("suv_mean") is not None:
                assert row["suv_mean"] == pytest.approx(region["suv_mean"], rel=0.03), region["name"]


def test_demo_homing_matches_truth(demo):
    stats, truth = demo
    for computed, expected in zip(stats.timepoints, truth["homing"]):
        for place in ("penumbra", "core", "elsewhere"):
            assert computed.homing[place] == pytest.approx(expected[place], abs=0.02), (expected["label"], place)
        penumbra = computed.region("penumbra").values["homing_fraction"]
        assert penumbra == pytest.approx(computed.homing["penumbra"], abs=1e-12)


def test_demo_calibration_regions_hold_no_cells_and_time_course_matches_names(demo):
    stats, truth = demo
    for timepoint in stats.timepoints:
        for name in ("reference", "background"):
            assert timepoint.region(name).values["fluorine_cells"] is None
    course = time_course(stats, "live_cells")
    assert [day for day, _ in course["penumbra"]] == [1.0, 7.0, 21.0]
    expected = [next(r for r in t["regions"] if r["name"] == "penumbra")["live_cells"] for t in truth["timepoints"]]
    for (_, value), truth_value in zip(course["penumbra"], expected):
        assert value == pytest.approx(truth_value, rel=0.05)


def test_json_schema_is_exactly_the_product_schema(demo):
    stats, _ = demo
    document = json.loads(stats.to_json())
    assert set(document) == {"study", "timepoints", "notes"}
    for timepoint in document["timepoints"]:
        assert set(timepoint) == set(TIMEPOINT_KEYS) | {"regions"}
        for region in timepoint["regions"]:
            assert list(region) == list(REGION_KEYS)
    assert all(isinstance(note, str) for note in document["notes"])
    assert any("DEFUSE-3" in note for note in document["notes"])
    # the demo study lists the demonstration model: its notice is in the notes and its
    # predictions in the penumbra rows
    assert any("not for clinical decisions" in note for note in document["notes"])
    penumbra = next(r for r in document["timepoints"][1]["regions"] if r["name"] == "penumbra")
    assert penumbra["prediction"][0]["demonstration"] is True and 0 <= penumbra["prediction"][0]["value"] <= 1


def test_cli_json_and_csv_and_timepoint_filter(demo_manifest, capsys):
    assert main(["stats", str(demo_manifest), "--timepoint", "day 7"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [t["label"] for t in document["timepoints"]] == ["day 7"]
    assert main(["stats", str(demo_manifest), "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["timepoint_label", "timepoint_day", "detection_limit_cells_per_mm3", *REGION_KEYS]
    assert len(rows) == 1 + 3 * 6
    assert main(["stats", str(demo_manifest), "--timepoint", "day 99"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_cli_output_file_is_written_atomically(demo_manifest, tmp_path, capsys):
    target = tmp_path / "stats.json"
    assert main(["stats", str(demo_manifest), "--timepoint", "day 1", "-o", str(target)]) == 0
    assert json.loads(target.read_text())["study"] == "demo-001"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.json"]


def test_every_region_key_is_declared_with_units_and_description():
    assert [m.key for m in REGION_MEASURES] == list(REGION_KEYS)
    for measure in REGION_MEASURES:
        assert measure.name and measure.description.endswith(".")
    assert next(m for m in REGION_MEASURES if m.key == "suv_peak").title == "SUVpeak (SUV)"


# -- edge cases on the quantification phantom ------------------------------------------------------

def _quantifier(volumes, names=REGION_NAMES, calibration=CALIBRATION):
    timepoint = Timepoint("day 7", 7.0, {}, names)
    return TimepointQuantifier(study(timepoint, calibration), timepoint, volumes)


@pytest.fixture(scope="module")
def phantom():
    fluorine, _ = fluorine_image(sigma=1.0)
    return {"anatomical": region_labels(), "regions": region_labels(), "fluorine": fluorine, "gd": gd_image({3: 9000.0}, sigma=0.0)}


def test_region_outside_an_overlay_is_null_with_note_not_zero(phantom):
    labels = np.array(phantom["regions"].data)
    labels[:6, :6, :6] = 7  # a corner region, far outside the small PET below
    regions = Volume.from_array(labels, phantom["regions"].voxel_to_world, role="regions")
    pet_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    pet_affine[:3, 3] = (-10, -10, -10)
    pet = Volume.from_array(np.full((10, 10, 10), 3.0, np.float32), pet_affine, role="pet")
    stats = _quantifier({**phantom, "regions": regions, "pet": pet}, {**REGION_NAMES, 7: "corner"}).compute()
    corner = stats.region("corner").values
    assert corner["suv_mean"] is None and corner["suv_max"] is None
    assert any("'corner' lies outside the PET field of view" in n for n in stats.notes)


def test_empty_named_region_reports_zero_volume_and_nulls(phantom):
    stats = _quantifier(phantom).compute()
    empty = stats.region("empty").values
    assert empty["volume_ml"] == 0 and empty["fluorine_cells"] is None
    assert any("'empty' has no voxels" in n for n in stats.notes)


def test_unnamed_label_is_called_label_n_and_edge_region_is_measured(phantom):
    labels = np.array(phantom["regions"].data)
    labels[0:4, 40:50, 20:30] = 9  # touches the image edge (i = 0)
    regions = Volume.from_array(labels, phantom["regions"].voxel_to_world, role="regions")
    stats = _quantifier({**phantom, "regions": regions}).compute()
    edge = stats.region("label 9")
    assert edge is not None and edge.values["volume_ml"] == pytest.approx(4 * 10 * 10 / 1000)


def test_nan_voxels_inside_an_overlay_are_ignored(phantom):
    gd = phantom["gd"]
    clean = _quantifier(phantom).compute().region("injection site").values["dead_cells"]
    data = np.array(gd.data)
    data[0:3, 0:3, 0:3] = np.nan  # outside the cells, inside nothing that holds Gd
    nan_gd = Volume.from_array(data, gd.voxel_to_world, role="gd")
    with_nan = _quantifier({**phantom, "gd": nan_gd}).compute().region("injection site").values["dead_cells"]
    assert with_nan == pytest.approx(clean, rel=1e-9)
    assert clean == pytest.approx(9000, rel=0.01)


def test_missing_calibration_gives_null_and_note(phantom):
    import dataclasses

    calibration = dataclasses.replace(CALIBRATION, gd_fmol_per_cell=None, fluorine_atoms_per_cell=None)
    stats = _quantifier(phantom, calibration=calibration).compute()
    row = stats.region("injection site").values
    assert row["fluorine_cells"] is None and row["dead_cells"] is None
    assert any("gd_fmol_per_cell" in n for n in stats.notes)
    assert any("fluorine_atoms_per_cell" in n for n in stats.notes)


def test_region_recompute_after_edit_sees_the_change(phantom):
    labels = np.array(phantom["regions"].data)
    regions = Volume.from_array(labels, phantom["regions"].voxel_to_world, role="regions")
    quantifier = _quantifier({**phantom, "regions": regions})
    before = quantifier.region(3).values
    labels[labels == 3] = 0  # erase the injection site entirely
    quantifier.labels_changed(3)
    after = quantifier.region(3).values
    assert before["fluorine_cells"] > 30_000 and after["volume_ml"] == 0 and after["fluorine_cells"] is None


def test_without_fluorine_total_cells_come_from_spio_iron(phantom):
    """No ¹⁹F: total cells from ΔR2* (iron per cell), so live/dead still split. Tolerance 1 %."""
    volumes = {k: v for k, v in phantom.items() if k != "fluorine"}
    volumes["spio"] = spio_image()
    stats = _quantifier(volumes).compute()
    row = stats.region("injection site").values
    injection = next(b for b in BALLS if b.region == 3)
    assert row["fluorine_cells"] is None
    assert row["dead_cells"] == pytest.approx(9000, rel=0.01)
    assert row["live_cells"] == pytest.approx(injection.cells - 9000, rel=0.01)
    assert row["dead_fraction"] == pytest.approx(9000 / injection.cells, abs=0.005)
    assert stats.region("injection site").details["total_cells_source"] == "SPIO"
    assert any("no ¹⁹F image" in n for n in stats.notes)


def test_recompute_after_an_edit_matches_a_full_compute(phantom):
    labels = np.array(phantom["regions"].data)
    regions = Volume.from_array(labels, phantom["regions"].voxel_to_world, role="regions")
    quantifier = _quantifier({**phantom, "regions": regions})
    stats = quantifier.compute()
    moved = (labels == 1)
    labels[moved] = 2  # merge the core into the penumbra
    quantifier.labels_changed(1)
    quantifier.labels_changed(2)
    updated = quantifier.recompute(stats, {1, 2})
    full = quantifier.compute()
    for region in full.regions:
        assert updated.region(region.name).values == region.values
    assert updated.region("core").values["volume_ml"] == 0
