"""`viewer export-dicom` (issue 18, PRODUCT.md §8 "Results in DICOM").

Every object is checked by tools that are not the exporter: dicom3tools' ``dciodvfy`` for
conformance (no "Error" line), highdicom's reader for the SEG (its voxels placed through the
SEG's own frame geometry, compared with the region map read by nibabel and mapped by the
test's own nearest-neighbour code), the SR's content tree walked with pydicom against
`viewer stats` (the concept codes are spelled out here, so a changed vocabulary fails), and
pypdf for the encapsulated report.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from viewer.cli import main

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: (concept code, derivation code or None) → the §3 key, spelled out independently of the exporter.
SR_KEYS = {
    ("118565006", None): "volume_ml",
    ("F19CELLS", None): "fluorine_cells",
    ("F19CELLSLO", None): "fluorine_cells_ci95_low",
    ("F19CELLSHI", None): "fluorine_cells_ci95_high",
    ("F19DENSITY", None): "cells_per_mm3",
    ("DEADCELLS", None): "dead_cells",
    ("LIVECELLS", None): "live_cells",
    ("DEADFRAC", None): "dead_fraction",
    ("126400", "56851009"): "suv_max",
    ("126400", "373098007"): "suv_mean",
    ("126400", "126031"): "suv_peak",
    ("126032", None): "mtv_ml",
    ("126033", None): "tlg",
    ("TSC", "373098007"): "sodium_mean_mM",
    ("HOMING", None): "homing_fraction",
}
UNITS = {"volume_ml": "mL", "mtv_ml": "mL", "suv_max": "{SUVbw}g/ml", "suv_mean": "{SUVbw}g/ml",
         "suv_peak": "{SUVbw}g/ml", "tlg": "{SUVbw}g", "sodium_mean_mM": "mmol/L", "cells_per_mm3": "{cells}/mm3",
         "fluorine_cells": "{cells}", "fluorine_cells_ci95_low": "{cells}", "fluorine_cells_ci95_high": "{cells}",
         "dead_cells": "{cells}", "live_cells": "{cells}", "dead_fraction": "1", "homing_fraction": "1"}


def dciodvfy_errors(path: Path) -> list[str]:
    """dicom3tools' verdict on one object: its "Error" lines (warnings are allowed)."""
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, timeout=120)
    done.stdout, done.stderr = (stream.decode("utf-8", "replace") for stream in (done.stdout, done.stderr))
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


def stats_of(study: Path, label: str, tmp_path: Path) -> dict:
    out = tmp_path / f"stats-{label}.json"
    assert main(["stats", str(study), "--timepoint", label, "-o", str(out)]) == 0
    (timepoint,) = json.loads(out.read_text())["timepoints"]
    return timepoint


def seg_labels_on_grid(seg_path: Path, grid_affine: np.ndarray, grid_shape: tuple[int, int, int]) -> np.ndarray:
    """The SEG's regions (as label values, from each segment's tracking ID "label N") on a
    RAS voxel grid, placed through the SEG's own geometry as highdicom reads it."""
    import highdicom as hd

    seg = hd.seg.segread(seg_path)
    label_of = {int(s.SegmentNumber): int(str(s.TrackingID).split()[-1]) for s in seg.SegmentSequence}
    volume = seg.get_volume(combine_segments=True, relabel=False)
    array = np.asarray(volume.array)
    index = np.indices(array.shape).reshape(3, -1)
    homogeneous = np.vstack([index, np.ones(index.shape[1])])
    ijk = np.linalg.inv(grid_affine) @ LPS_TO_RAS @ volume.affine @ homogeneous
    assert np.abs(ijk[:3] - np.rint(ijk[:3])).max() < 1e-3, "SEG pixel centres fall between anatomy voxels"
    ijk = np.rint(ijk[:3]).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.array(grid_shape)[:, None]), axis=0)
    values = array.reshape(-1)
    assert not values[~inside].any(), "the SEG has segment pixels outside the anatomy"
    out = np.zeros(grid_shape, dtype=np.int32)
    numbers = values[inside]
    lookup = np.zeros(max(label_of) + 1, dtype=np.int32)
    for number, label in label_of.items():
        lookup[number] = label
    out[ijk[0, inside], ijk[1, inside], ijk[2, inside]] = lookup[numbers]
    return out


def carried_labels(regions: nib.Nifti1Image, region_world_from_file: np.ndarray, anatomy: nib.Nifti1Image,
                   anatomy_world_from_file: np.ndarray) -> np.ndarray:
    """The region map's labels at every anatomy voxel centre, nearest neighbour through the
    reference world (the test's own mapping: nibabel affines and the manifest's transforms)."""
    data = np.asarray(regions.dataobj).astype(np.int32)
    shape = anatomy.shape[:3]
    index = np.indices(shape).reshape(3, -1)
    homogeneous = np.vstack([index, np.ones(index.shape[1])])
    to_regions = np.linalg.inv(region_world_from_file @ regions.affine) @ anatomy_world_from_file @ anatomy.affine
    ijk = np.rint((to_regions @ homogeneous)[:3]).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.array(data.shape)[:, None]), axis=0)
    out = np.zeros(index.shape[1], dtype=np.int32)
    out[inside] = data[ijk[0, inside], ijk[1, inside], ijk[2, inside]]
    return out.reshape(shape)


def sr_groups(path: Path) -> dict[str, dict]:
    """Per region (tracking identifier): its measurements keyed by §3 key, its units, its
    flags and the segment number it references, read from the SR content tree."""
    ds = pydicom.dcmread(path)
    groups: dict[str, dict] = {}

    def items(node, concept):
        return [i for i in node.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == concept]

    (imaging,) = items(ds, "126010")  # Imaging Measurements
    for group in imaging.ContentSequence:
        tracking = [i.TextValue for i in group.ContentSequence
                    if i.ConceptNameCodeSequence[0].CodeValue == "112039"]  # Tracking Identifier
        entry = {"values": {}, "units": {}, "flags": {}, "segment": None, "predictions": []}
        for item in group.ContentSequence:
            code = item.ConceptNameCodeSequence[0].CodeValue
            if item.ValueType == "NUM":
                derivation = [m.ConceptCodeSequence[0].CodeValue for m in getattr(item, "ContentSequence", [])
                              if m.ConceptNameCodeSequence[0].CodeValue == "121401"]
                measured = item.MeasuredValueSequence[0]
                value = float(measured.get("FloatingPointValue", measured.NumericValue))
                if code == "F19DETLIM":
                    entry["values"]["detection_limit_cells_per_mm3"] = value
                    continue
                if code.startswith("PREDICT"):
                    entry["predictions"].append((code, value))
                    continue
                key = SR_KEYS[(code, derivation[0] if derivation else None)]
                entry["values"][key] = value
                entry["units"][key] = measured.MeasurementUnitsCodeSequence[0].CodeValue
            elif item.ValueType == "CODE" and code in ("BELOWDET", "REJECTION"):
                entry["flags"][code] = item.ConceptCodeSequence[0].CodeValue == "373066001"
            elif item.ValueType == "IMAGE" and code == "121191":  # Referenced Segment
                entry["segment"] = int(item.ReferencedSOPSequence[0].ReferencedSegmentNumber)
        groups[tracking[0]] = entry
    return groups


@pytest.fixture(scope="module")
def nifti_export(demo_manifest, tmp_path_factory):
    """The demo study (NIfTI) exported whole."""
    out = tmp_path_factory.mktemp("export") / "dicom"
    assert main(["export-dicom", str(demo_manifest), "-o", str(out)]) == 0
    return demo_manifest, out


def test_every_exported_object_passes_dciodvfy(nifti_export):
    _, out = nifti_export
    objects = sorted(out.glob("*/*.dcm"))
    assert [p.name for p in objects] == ["measurements.dcm", "report.dcm", "segmentation.dcm"] * 3
    anatomy = sorted(out.glob("day-1/anatomy/*.dcm"))
    for path in objects + [anatomy[0], anatomy[len(anatomy) // 2], anatomy[-1]]:
        assert dciodvfy_errors(path) == [], path


def test_the_objects_of_a_timepoint_share_its_study_and_reference_its_anatomy(nifti_export):
    _, out = nifti_export
    study_uids = set()
    for folder in sorted(p for p in out.iterdir()):
        anatomy = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted((folder / "anatomy").glob("*.dcm"))]
        seg = pydicom.dcmread(folder / "segmentation.dcm", stop_before_pixels=True)
        sr = pydicom.dcmread(folder / "measurements.dcm")
        pdf = pydicom.dcmread(folder / "report.dcm")
        uids = {str(ds.StudyInstanceUID) for ds in [*anatomy, seg, sr, pdf]}
        assert len(uids) == 1, folder.name
        study_uids |= uids
        assert {str(ds.PatientID) for ds in [*anatomy, seg, sr, pdf]} == {"DEMO-0001"}
        (series,) = seg.ReferencedSeriesSequence
        assert series.SeriesInstanceUID == anatomy[0].SeriesInstanceUID
        referenced = {i.ReferencedSOPInstanceUID for i in series.ReferencedInstanceSequence}
        assert referenced == {str(ds.SOPInstanceUID) for ds in anatomy}
        assert pdf.MIMETypeOfEncapsulatedDocument == "application/pdf"
        length = int(pdf.EncapsulatedDocumentLength)
        assert bytes(pdf.EncapsulatedDocument[:5]) == b"%PDF-" and len(pdf.EncapsulatedDocument) - length in (0, 1)
        assert pdf.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1"
    assert len(study_uids) == 3


def test_seg_read_back_equals_the_regions_voxel_for_voxel(nifti_export):
    """Day 1 has its own region map on the anatomy; days 7 and 21 carry day 1's regions
    through the registration onto their own anatomy (``regions_from``)."""
    manifest, out = nifti_export
    raw = tomllib.loads(manifest.read_text())
    root = manifest.parent
    day1 = raw["timepoint"][0]
    regions = nib.load(root / day1["regions"])
    for index, folder in ((0, "day-1"), (1, "day-7"), (2, "day-21")):
        timepoint = raw["timepoint"][index]
        anatomy = nib.load(root / timepoint["anatomical"])
        transform = np.array(timepoint.get("transform", np.eye(4)), dtype=float)
        expected = carried_labels(regions, np.eye(4), anatomy, transform)
        got = seg_labels_on_grid(out / folder / "segmentation.dcm", anatomy.affine, anatomy.shape[:3])
        assert expected.any()
        assert np.array_equal(got, expected), f"{folder}: {int((got != expected).sum())} voxels differ"


def test_sr_measurements_equal_viewer_stats(nifti_export, tmp_path):
    manifest, out = nifti_export
    for label, folder in (("day 1", "day-1"), ("day 7", "day-7"), ("day 21", "day-21")):
        stats = stats_of(manifest, label, tmp_path)
        groups = sr_groups(out / folder / "measurements.dcm")
        seg = pydicom.dcmread(out / folder / "segmentation.dcm", stop_before_pixels=True)
        segment_names = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
        names = [r["name"] for r in stats["regions"]]
        assert set(groups) == set(names) | {"timepoint"}
        assert groups["timepoint"]["values"] == {
            "detection_limit_cells_per_mm3": pytest.approx(stats["detection_limit_cells_per_mm3"], rel=1e-12)}
        for region in stats["regions"]:
            group = groups[region["name"]]
            assert segment_names[group["segment"]] == region["name"]
            expected = {key: region[key] for key in UNITS if region.get(key) is not None}
            assert set(group["values"]) == set(expected), region["name"]
            for key, value in expected.items():
                assert group["values"][key] == pytest.approx(value, rel=1e-12, abs=1e-12), (label, region["name"], key)
                assert group["units"][key] == UNITS[key]
            for code, key in (("BELOWDET", "below_detection"), ("REJECTION", "rejection_alert")):
                if region[key] is None:
                    assert code not in group["flags"]
                else:
                    assert group["flags"][code] is region[key]
            values = [p["value"] for p in region["prediction"] or () if p["value"] is not None]
            assert [v for c, v in group["predictions"] if c == "PREDICTION"] == pytest.approx(values)


def test_the_encapsulated_report_is_the_timepoints_pdf(nifti_export):
    from io import BytesIO

    from pypdf import PdfReader

    _, out = nifti_export
    pdf = pydicom.dcmread(out / "day-7" / "report.dcm")
    reader = PdfReader(BytesIO(bytes(pdf.EncapsulatedDocument)[: int(pdf.EncapsulatedDocumentLength)]))
    text = " ".join(page.extract_text() for page in reader.pages)
    assert "demo-001" in text and "day 7" in text and "day 21" not in text
    assert pdf.BurnedInAnnotation == "YES"  # the identified report shows the patient


# -- sources that are DICOM --------------------------------------------------------------------
@pytest.fixture(scope="module")
def dicom_study(tmp_path_factory):
    """The demo's DICOM exam imported, with the demo's day-1 regions added to its first
    timepoint (the exam's day-1 anatomy is the demo's anatomy on the same grid)."""
    from viewer.core.io.study import write_manifest

    base = tmp_path_factory.mktemp("dicom-source")
    demo = base / "demo"
    assert main(["demo", "--out", str(demo), "--dicom"]) == 0
    study = base / "imported"
    assert main(["import", str(demo / "exam"), "-o", str(study)]) == 0
    raw = tomllib.loads((study / "study.toml").read_text())
    first = raw["timepoint"][0]
    folder = Path(first["anatomical"]).parent
    shutil.copy(demo / "day1" / "regions.nii.gz", study / folder / "regions.nii.gz")
    first["regions"] = f"{folder}/regions.nii.gz"
    first["region_names"] = tomllib.loads((demo / "study.toml").read_text())["timepoint"][0]["region_names"]
    write_manifest(raw, study / "study.toml")
    return demo, study, first["label"]


def test_dicom_sources_keep_their_study_and_are_referenced_not_copied(dicom_study, tmp_path):
    demo, study, label = dicom_study
    out = tmp_path / "export"
    assert main(["export-dicom", str(study), "-o", str(out), "--timepoint", label]) == 0
    (folder,) = list(out.iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["measurements.dcm", "report.dcm", "segmentation.dcm"]
    raw = tomllib.loads((study / "study.toml").read_text())
    anatomy_files = sorted((study / raw["timepoint"][0]["anatomical"]).glob("*"))
    source = [pydicom.dcmread(p, stop_before_pixels=True) for p in anatomy_files]
    seg = pydicom.dcmread(folder / "segmentation.dcm")
    for path in folder.iterdir():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.StudyInstanceUID == source[0].StudyInstanceUID
        assert ds.PatientName == source[0].PatientName and ds.PatientID == source[0].PatientID
        assert dciodvfy_errors(path) == [], path.name
    referenced = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {str(ds.SOPInstanceUID) for ds in source}
    # the regions on the source anatomy's grid, that grid as nibabel's reference reader places
    # the original files (dcm2niix is the independent reference for the reader elsewhere)
    regions = nib.load(demo / "day1" / "regions.nii.gz")
    anatomy = nib.load(demo / "anat" / "t1.nii")
    got = seg_labels_on_grid(folder / "segmentation.dcm", anatomy.affine, anatomy.shape[:3])
    expected = carried_labels(regions, np.eye(4), anatomy, np.eye(4))
    assert np.array_equal(got, expected), int((got != expected).sum())


def test_deidentified_export_holds_no_identifier(dicom_study, tmp_path):
    demo, study, label = dicom_study
    out = tmp_path / "anonymous"
    assert main(["export-dicom", str(study), "-o", str(out), "--timepoint", label, "--deidentify"]) == 0
    raw = tomllib.loads((study / "study.toml").read_text())
    source = pydicom.dcmread(next((study / raw["timepoint"][0]["anatomical"]).glob("*")), stop_before_pixels=True)
    secrets = ["Mustermann", "Erika", "DEMO-0001", "19610412", str(source.StudyDate), str(source.StudyInstanceUID),
               str(source.SeriesInstanceUID), str(source.FrameOfReferenceUID)]
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert any(p.parent.name == "anatomy" for p in files)  # the anatomy is written anew
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, (path.name, secret[:3])
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.PatientIdentityRemoved == "YES"
        assert "113100" in {i.CodeValue for i in ds.DeidentificationMethodCodeSequence}
        assert ds.StudyDate == "19000101"  # day 0 of the imported study, PS3.15 modified dates
        assert ds.get("PatientBirthDate", "") == "" and ds.get("PatientSex", "") == ""
        for element in ds.iterall():
            if element.VR == "DA" and element.value:
                assert str(element.value).startswith("1900"), (path.name, element.keyword)
    for path in [out / label.replace(" ", "-") / "segmentation.dcm", out / label.replace(" ", "-") / "report.dcm",
                 out / label.replace(" ", "-") / "measurements.dcm"]:
        assert dciodvfy_errors(path) == [], path.name
    pdf = pydicom.dcmread(out / label.replace(" ", "-") / "report.dcm")
    assert pdf.BurnedInAnnotation == "NO"
    from io import BytesIO

    from pypdf import PdfReader

    text = " ".join(p.extract_text() for p in PdfReader(BytesIO(bytes(pdf.EncapsulatedDocument))).pages)
    assert "Mustermann" not in text and "DEMO-0001" not in text


# -- faults ----------------------------------------------------------------------------------
def test_an_existing_folder_is_refused_and_left_alone(demo_manifest, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert main(["export-dicom", str(demo_manifest), "-o", str(out), "--timepoint", "day 1"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "not an empty folder" in error[0]
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_an_unknown_timepoint_writes_nothing(demo_manifest, tmp_path, capsys):
    out = tmp_path / "none"
    assert main(["export-dicom", str(demo_manifest), "-o", str(out), "--timepoint", "day 99"]) == 2
    assert "no timepoint 'day 99'" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_failure_halfway_leaves_no_folder(demo_manifest, tmp_path, monkeypatch, capsys):
    """The second timepoint fails after the first was written: nothing stays at DIR."""
    from viewer.core.dicom_export import export as export_module

    real = export_module._export_timepoint
    calls = []

    def failing(exporter, item, models, root):
        calls.append(item.timepoint.label)
        if len(calls) == 2:
            raise export_module.ViewerError("simulated failure at the second timepoint")
        return real(exporter, item, models, root)

    monkeypatch.setattr(export_module, "_export_timepoint", failing)
    out = tmp_path / "half"
    assert main(["export-dicom", str(demo_manifest), "-o", str(out)]) == 2
    assert "simulated failure" in capsys.readouterr().err
    assert calls == ["day 1", "day 7"]
    assert list(tmp_path.iterdir()) == []


def test_the_final_check_finds_identifiers_in_text_not_inside_numbers():
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from viewer.core.dicom_export.deidentify import check_clean
    from viewer.core.errors import ViewerError

    secrets = ["Mustermann", "20260303", "093000", "DEMO-0001"]
    clean = Dataset()
    clean.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.120260303093000"  # the digits inside a new UID
    clean.ImagePositionPatient = ["-20260303.5", "0", "1"]  # a different, longer number
    clean.SeriesDescription = "Regions (cell-therapy-viewer)"
    check_clean("clean.dcm", clean, secrets, {"1.2.3.4"})
    nested = Dataset()
    nested.ReferencedSOPInstanceUID = "1.2.3.4"
    for keyword, value in (("InstitutionName", "Clinic of Dr MUSTERMANN"), ("StudyDate", "20260303"),
                           ("ContentTime", "093000"), ("OtherPatientIDs", ["X1", "DEMO-0001"])):
        leaky = Dataset()
        item = Dataset()
        setattr(item, keyword, value)
        leaky.ContentSequence = Sequence([item])
        with pytest.raises(ViewerError, match=keyword):
            check_clean("leaky.dcm", leaky, secrets)
    holder = Dataset()
    holder.ReferencedSeriesSequence = Sequence([nested])
    with pytest.raises(ViewerError, match="ReferencedSOPInstanceUID"):
        check_clean("uid.dcm", holder, secrets, {"1.2.3.4"})
