"""The reader's measurements in the PDF report (issue #15: "measurements listed, deletable,
included in the report").

A sphere around the demo's injection-site graft and a ruler of known length are reported on
every timepoint; the PDF's text is read back with pypdf and checked against numbers computed
here independently: the anatomy voxels whose centres lie in the sphere (nibabel + numpy on the
anatomy file) and the cells the demo put there (``truth.json``). ``viewer report`` takes the
measurements from the study's workspace, leaves them out with ``--no-measurements``, writes
the report without them when the workspace is unusable, and scrubs their names when
de-identifying.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pypdf import PdfReader

from viewer.cli import main
from viewer.core.io.study import load_study
from viewer.core.measurements import Ruler, SphereROI
from viewer.core.report import ReportOptions, report_from_study
from viewer.core.report.deidentify import REMOVED
from viewer.core.workspace import WORKSPACE_NAME, Workspace, write_workspace

#: The sphere's radius (mm) and its centre's offset from the graft's true centre: off the
#: anatomy grid's symmetry, so no voxel centre lies on the sphere's surface (checked below).
RADIUS_MM = 6.2
OFFSET_MM = (0.13, 0.07, -0.09)
#: A ruler 13 mm long (3-4-12 along x, y, z).
RULER = Ruler([10.0, -20.0, 15.0], [13.0, -16.0, 27.0], "ruler 13")
RULER_TEXT = "length 13.0 mm, from (10.0, -20.0, 15.0) to (13.0, -16.0, 27.0) mm"
#: A number as the report prints it: 181.7, 1,303, -4.047, 7.724e-04.
NUMBER = r"-?[\d,]+(?:\.\d+)?(?:e[-+]\d+)?"
ANATOMY_ROW = re.compile(rf"anatomy \(a\.u\.\) ({NUMBER}) ± ({NUMBER}) ({NUMBER}) ({NUMBER}) ([\d,]+) ")
FLUORINE_ROW = re.compile(rf"¹⁹F signal \(a\.u\.\) ({NUMBER}) ± ({NUMBER}) ({NUMBER}) ({NUMBER}) ([\d,]+) ([\d,]+) "
                          r"\(([\d,]+)–([\d,]+)\)")


def _text(pdf: Path) -> str:
    """The PDF's text, line breaks as spaces (table cells wrap)."""
    return re.sub(r"\s+", " ", "\n".join(page.extract_text() for page in PdfReader(pdf).pages))


def _value(printed: str) -> float:
    return float(printed.replace(",", ""))


def _half_unit(printed: str) -> float:
    """Half a unit of the printed number's last digit (how far a correct rounding can be off)."""
    mantissa, _, exponent = printed.replace(",", "").partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 0.5 * 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def _sphere_voxels(image_path: Path, centre: np.ndarray, radius: float,
                   world_from_file: np.ndarray | None = None) -> np.ndarray:
    """Values of the voxels of a NIfTI image whose centres lie within ``radius`` of ``centre``
    (world mm by the file's own affine, moved into the reference space by the timepoint's
    transform from the manifest), found here without the viewer's code."""
    image = nib.load(str(image_path))
    data = np.asarray(image.dataobj)
    affine = image.affine if world_from_file is None else np.asarray(world_from_file) @ image.affine
    inverse = np.linalg.inv(affine)
    corners = centre + radius * np.array(list(itertools.product((-1.0, 1.0), repeat=3)))
    ijk = corners @ inverse[:3, :3].T + inverse[:3, 3]
    low = np.maximum(np.floor(ijk.min(axis=0)).astype(int) - 1, 0)
    high = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 2, data.shape[:3])
    grid = np.stack(np.meshgrid(*(np.arange(a, b) for a, b in zip(low, high)), indexing="ij"), axis=-1)
    world = grid @ affine[:3, :3].T + affine[:3, 3]
    squared = np.sum((world - centre) ** 2, axis=-1)
    assert not np.any(np.isclose(squared, radius**2, rtol=1e-6)), "a voxel centre on the sphere's surface"
    box = data[tuple(slice(a, b) for a, b in zip(low, high))]
    return box[squared <= radius**2].astype(np.float64)


@pytest.fixture(scope="module")
def truth(demo_manifest):
    return json.loads((demo_manifest.parent / "truth.json").read_text())


@pytest.fixture(scope="module")
def graft(truth):
    """A sphere around the injection site's graft (the first cell ball of the first timepoint)."""
    ball = truth["timepoints"][0]["cell_balls"][0]
    assert ball["region"] == "injection site"
    return SphereROI(np.add(ball["centre_mm"], OFFSET_MM), RADIUS_MM, "graft sphere")


@pytest.fixture(scope="module")
def measured_report(demo_manifest, graft, tmp_path_factory):
    """The demo's report (every timepoint) with the graft sphere and the ruler."""
    out = tmp_path_factory.mktemp("measured") / "measured.pdf"
    report_from_study(demo_manifest, out, ReportOptions(measurements=(graft, RULER)))
    return out


@pytest.fixture(scope="module")
def study_copy(demo_manifest, tmp_path_factory):
    """A private copy of the demo study, to hold a workspace."""
    target = tmp_path_factory.mktemp("measured study") / "study"
    shutil.copytree(demo_manifest.parent, target)
    (target / WORKSPACE_NAME).unlink(missing_ok=True)
    return target / "study.toml"


def _report(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- content ----------------------------------------------------------------------------------

def test_every_timepoint_lists_the_sphere_and_the_ruler_after_its_regions(measured_report, truth):
    text = _text(measured_report)
    sections = re.split(r"Day \d+ after transplantation", text)[1:]  # the headings (the time course says "days after")
    assert len(sections) == len(truth["timepoints"]) == 3
    volume_ml = 4.0 / 3.0 * math.pi * RADIUS_MM**3 / 1000.0
    for section in sections:
        for expected in ("Measurements Measurement Layer (units) Mean ± SD Min Max Voxels ¹⁹F cells",
                         f"graft sphere — sphere radius {RADIUS_MM:.1f} mm, {volume_ml:.3f} mL",
                         "regions inside: injection site", "ruler 13 — ruler", RULER_TEXT):
            assert expected in section, expected
        # the report's structure: key images, summary, regions, core/penumbra, measurements, predictions
        assert section.index("Core and penumbra") < section.index("Measurements Measurement") < section.index("Predictions")
    assert ("2 measurements placed by the reader (rulers and regions of interest, in world millimetres) are listed "
            "in every timepoint's section") in text


def test_sphere_anatomy_statistics_equal_numpy_on_the_anatomy_file(measured_report, demo_manifest, graft):
    timepoints = load_study(demo_manifest).timepoints
    rows = ANATOMY_ROW.findall(_text(measured_report))
    assert len(rows) == 3, rows  # one per timepoint, each on its own session's anatomy
    for timepoint, (mean, std, low, high, voxels) in zip(timepoints, rows):
        values = _sphere_voxels(timepoint.images["anatomical"], graft.center, graft.radius_mm, timepoint.transform)
        assert values.size > 500
        assert abs(_value(mean) - values.mean()) <= _half_unit(mean), (mean, values.mean())
        assert abs(_value(std) - values.std()) <= _half_unit(std), (std, values.std())
        assert _value(low) == values.min() and _value(high) == values.max()
        assert _value(voxels) == values.size


def test_sphere_counts_the_grafts_cells_with_an_interval_holding_the_truth(measured_report, truth, graft):
    """At the demo's scanner noise the sphere's §3 count (detected voxels only) is low by the
    graft's faint edge; the 95 % interval printed beside it holds the cells the demo put there."""
    rows = FLUORINE_ROW.findall(_text(measured_report))
    assert len(rows) == 3, rows
    for timepoint, row in zip(truth["timepoints"], rows):
        inside = [b for b in timepoint["cell_balls"]
                  if np.linalg.norm(np.subtract(b["centre_mm"], graft.center)) < graft.radius_mm]
        for ball in timepoint["cell_balls"]:  # the others are far from the sphere (no spill-over)
            if ball not in inside:
                distance = np.linalg.norm(np.subtract(ball["centre_mm"], graft.center))
                assert distance > graft.radius_mm + ball["radius_mm"] + 4.0, (timepoint["label"], ball)
        expected = sum(b["cells"] for b in inside)
        cells, low, high = _value(row[5]), _value(row[6]), _value(row[7])
        assert expected > 0 and low <= expected <= high, (timepoint["label"], low, high, expected)
        assert cells <= 1.05 * expected, (timepoint["label"], cells, expected)


def test_no_measurement_table_without_measurements(demo_manifest, tmp_path):
    out = tmp_path / "plain.pdf"
    report_from_study(demo_manifest, out, ReportOptions(), "day 1")
    text = _text(out)
    assert "Measurement" not in text and "placed by the reader" not in text


# -- viewer report and the workspace ---------------------------------------------------------------

def test_command_line_reports_the_workspace_measurements(study_copy, graft, tmp_path, capsys):
    write_workspace(study_copy, Workspace(timepoint="day 7", measurements=(graft, RULER)))
    out = tmp_path / "with.pdf"
    code, stdout, err = _report(["report", study_copy, "-o", out, "--timepoint", "day 1"], capsys)
    assert code == 0 and err == "", err
    assert stdout.strip() == str(out)
    text = _text(out)
    assert "graft sphere — sphere" in text and RULER_TEXT in text
    (row,) = FLUORINE_ROW.findall(text)
    assert _value(row[6]) <= 58000 <= _value(row[7])  # day 1's injection-site graft

    out = tmp_path / "without.pdf"
    code, _, err = _report(["report", study_copy, "-o", out, "--timepoint", "day 1", "--no-measurements"], capsys)
    assert code == 0 and err == "", err
    text = _text(out)
    assert "Measurement" not in text and "graft sphere" not in text and "ruler 13" not in text
    assert "Day 1 after transplantation" in text


def test_the_flag_is_documented_in_the_report_help(capsys):
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    help_text = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert "--no-measurements" in help_text and "workspace" in help_text


@pytest.mark.parametrize("hostile", ["malformed JSON", "bad measurement", "a folder"])
def test_an_unusable_workspace_gives_a_report_without_measurements(study_copy, tmp_path, capsys, hostile):
    workspace = study_copy.with_name(WORKSPACE_NAME)
    workspace.unlink(missing_ok=True)
    if hostile == "malformed JSON":
        workspace.write_text('{"format": "cell-therapy-viewer-workspace", "version": 1, "measurements": [{')
    elif hostile == "bad measurement":
        workspace.write_text(json.dumps({"format": "cell-therapy-viewer-workspace", "version": 1, "measurements": [
            {"kind": "sphere", "name": "ok", "center_mm": [0, 0, 0], "radius_mm": -1}]}))
    else:
        workspace.mkdir()
    try:
        out = tmp_path / "report.pdf"
        code, stdout, err = _report(["report", study_copy, "-o", out, "--timepoint", "day 1"], capsys)
        assert code == 0, err
        assert stdout.strip() == str(out)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("note: ") and "no measurements" in lines[0], err
        assert "error" not in err and "Traceback" not in err
        text = _text(out)
        assert "Measurement" not in text and "Day 1 after transplantation" in text
    finally:
        if workspace.is_dir():
            workspace.rmdir()
        else:
            workspace.unlink(missing_ok=True)


def test_deidentified_report_scrubs_measurement_names(study_copy, graft, tmp_path, capsys):
    study = load_study(study_copy)
    family, given = study.info["patient"].split("^")
    sphere = SphereROI(graft.center, graft.radius_mm, f"{family} graft")
    ruler = Ruler(RULER.start, RULER.end, f"{given} {family} ruler")
    write_workspace(study_copy, Workspace(measurements=(sphere, ruler)))
    try:
        out = tmp_path / "shared.pdf"
        code, _, err = _report(["report", study_copy, "-o", out, "--timepoint", "day 1", "--deidentify"], capsys)
        assert code == 0, err
        text = _text(out)
        metadata = " ".join(str(v) for v in PdfReader(out).metadata.values())
        for name in (family, given):
            assert name.lower() not in text.lower() and name not in metadata, name
        assert f"{REMOVED} graft — sphere" in text and f"{REMOVED} ruler — ruler" in text
        assert RULER_TEXT in text  # positions in mm are not identifiers and stay
        (row,) = FLUORINE_ROW.findall(text)  # the numbers are the same as identified
        assert _value(row[6]) <= 58000 <= _value(row[7])
    finally:
        study_copy.with_name(WORKSPACE_NAME).unlink(missing_ok=True)
