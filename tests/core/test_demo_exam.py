"""The demo's DICOM exam (``viewer demo --dicom``): what an importer and a PACS will see.

Checked with pydicom, nibabel, dcm2niix and dciodvfy only — never with our own reader — so a
bug shared by our writer and reader cannot hide. The demo is written once per module through
the command line (about 12 s; the CLI test reuses that run).

Quantisation tolerance (dcm2niix comparison): the writer stores 16-bit integers with a
per-slice RescaleSlope = max|slice| / 65534 (uint16) or / 32766 (int16), so a value moves by
at most half a slope ≤ max|volume| / (2 · 65534) for non-negative images, plus float32
rounding (relative 2⁻²³).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
import tomllib
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from viewer.cli import main

slow = pytest.mark.slow  # the module writes the demo study with its exam once (~12 s)
WORLD_TOLERANCE_MM = 1e-3
#: Expected series per study: role → (Modality, ImagedNucleus or None for PET).
EXPECTED_SERIES = {
    "localizer": ("MR", "1H"), "anatomical": ("MR", "1H"), "fluorine": ("MR", "19F"), "pet": ("PT", None),
    "adc": ("MR", "1H"), "tmax": ("MR", "1H"), "sodium": ("MR", "23Na"), "spio": ("MR", "1H"), "gd": ("MR", "1H"),
}


@dataclass(frozen=True)
class Demo:
    root: Path
    exit_code: int
    stdout: str


@dataclass(frozen=True)
class Series:
    folder: Path
    files: list[Path]
    headers: list[pydicom.Dataset]

    @property
    def first(self) -> pydicom.Dataset:
        return self.headers[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Demo:
    root = tmp_path_factory.mktemp("demo_exam") / "study"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["demo", "--out", str(root), "--dicom"])
    return Demo(root, code, out.getvalue())


@pytest.fixture(scope="module")
def manifest(demo) -> dict:
    return tomllib.loads((demo.root / "study.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def series(demo) -> list[Series]:
    """Every series folder of the exam with its files' headers (pixels not read)."""
    found = []
    for folder in sorted({path.parent for path in (demo.root / "exam").rglob("*") if path.is_file()
                          and path.name != "README.txt"}):
        files = sorted(path for path in folder.iterdir() if path.is_file())
        found.append(Series(folder, files, [pydicom.dcmread(path, stop_before_pixels=True) for path in files]))
    return found


def role_of(ds: pydicom.Dataset) -> str:
    """The role a tag-reading importer would give a series (independent of the demo's code)."""
    image_type = [str(value).upper() for value in ds.ImageType]
    description = str(ds.SeriesDescription)
    if "LOCALIZER" in image_type:
        return "localizer"
    if ds.Modality == "PT":
        return "pet"
    nucleus = str(ds.get("ImagedNucleus", "")).upper()
    if nucleus in ("19F", "23NA"):
        return {"19F": "fluorine", "23NA": "sodium"}[nucleus]
    if "ADC" in image_type:
        return "adc"
    if "TMAX" in image_type:
        return "tmax"
    if description.startswith("dR2*"):
        return "spio"
    if description.startswith("dR1"):
        return "gd"
    return "anatomical"


def by_study(series: list[Series]) -> dict[str, dict[str, Series]]:
    """StudyInstanceUID → role → series (each role once per study)."""
    studies: dict[str, dict[str, Series]] = defaultdict(dict)
    for one in series:
        role = role_of(one.first)
        assert role not in studies[one.first.StudyInstanceUID], (one.folder, role)
        studies[one.first.StudyInstanceUID][role] = one
    return dict(studies)


def day0(manifest: dict) -> date:
    value = manifest["study"]["day0"]
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def timepoint_of_study(manifest: dict, study: dict[str, Series]) -> dict:
    """The manifest timepoint whose day0 + day is the study's StudyDate."""
    study_date = str(study["anatomical"].first.StudyDate)
    matches = [tp for tp in manifest["timepoint"]
               if (day0(manifest) + timedelta(days=tp["day"])).strftime("%Y%m%d") == study_date]
    assert len(matches) == 1, study_date
    return matches[0]


def slice_normal_lps(ds: pydicom.Dataset) -> np.ndarray:
    orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
    return np.cross(orientation[:3], orientation[3:])


# -- command line and layout ----------------------------------------------------------------------

@slow
def test_cli_writes_the_exam_beside_the_nifti_study(demo):
    assert demo.exit_code == 0
    assert (demo.root / "study.toml").is_file()
    assert (demo.root / "exam").is_dir()
    assert demo.stdout.splitlines() == [str(demo.root / "study.toml"), str(demo.root / "exam")]
    readme = (demo.root / "exam" / "README.txt").read_text(encoding="utf-8")
    assert "SIMULATED" in readme and "viewer import" in readme
    assert not [p for p in demo.root.parent.iterdir() if p.name.startswith(".")]  # no temporary left


@slow
def test_every_file_is_a_part10_file_with_a_unique_instance(series):
    sop_uids = set()
    for one in series:
        for path, ds in zip(one.files, one.headers):
            with open(path, "rb") as handle:
                assert handle.read(132)[128:] == b"DICM", path
            meta = ds.file_meta
            assert meta.TransferSyntaxUID and meta.MediaStorageSOPClassUID == ds.SOPClassUID, path
            assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID, path
            sop_uids.add(ds.SOPInstanceUID)
    assert len(sop_uids) == sum(len(one.files) for one in series)


@slow
def test_files_are_named_like_a_pacs_export_and_shuffled(series, demo):
    for one in series:
        assert one.folder.parent.parent == demo.root / "exam"
        assert one.folder.name == str(one.first.SeriesNumber)
        assert one.folder.parent.name == str(one.first.StudyID)
        expected_suffix = ".dcm" if one.first.Modality == "PT" else ""
        assert {path.suffix for path in one.files} == {expected_suffix}, one.folder
    anatomy = next(one for one in series if role_of(one.first) == "anatomical")
    position = [float(slice_normal_lps(ds) @ np.array([float(v) for v in ds.ImagePositionPatient]))
                for ds in anatomy.headers]
    by_name = [int(ds.InstanceNumber) for ds in anatomy.headers]
    assert by_name != sorted(by_name)
    assert position != sorted(position) and position != sorted(position, reverse=True)


# -- studies, dates, patient ----------------------------------------------------------------------

@slow
def test_one_study_per_timepoint_dated_day0_plus_day(series, manifest):
    studies = by_study(series)
    assert len(studies) == len(manifest["timepoint"])
    dates = set()
    frames = set()
    for study in studies.values():
        timepoint = timepoint_of_study(manifest, study)
        headers = [ds for one in study.values() for ds in one.headers]
        study_date = (day0(manifest) + timedelta(days=timepoint["day"])).strftime("%Y%m%d")
        dates.add(study_date)
        for key in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
            assert {str(ds.get(key)) for ds in headers} == {study_date}, key
        for key in ("StudyTime", "StudyDescription", "AccessionNumber", "StudyID", "FrameOfReferenceUID"):
            values = {str(ds.get(key, "")) for ds in headers}
            assert len(values) == 1 and values != {""}, key
        study_time = str(headers[0].StudyTime)
        assert all(str(ds.SeriesTime) >= study_time and str(ds.AcquisitionTime) >= str(ds.SeriesTime)
                   for ds in headers)
        numbers = [int(one.first.SeriesNumber) for one in study.values()]
        assert len(set(numbers)) == len(numbers)
        assert all(len({ds.SeriesInstanceUID for ds in one.headers}) == 1 for one in study.values())
        frames.add(headers[0].FrameOfReferenceUID)
    assert len(dates) == len(frames) == len(studies)


@slow
def test_patient_and_site_tags(series, manifest):
    info = manifest["study"]
    birth = info["birth_date"]
    birth = (birth if isinstance(birth, date) else date.fromisoformat(str(birth))).strftime("%Y%m%d")
    for one in series:
        for ds in one.headers:
            assert str(ds.PatientName) == info["patient"]
            assert ds.PatientID == info["patient_id"]
            assert ds.PatientBirthDate == birth
            assert ds.PatientSex == info["sex"]
            assert ds.InstitutionName and ds.ReferringPhysicianName and ds.OperatorsName and ds.Manufacturer


# -- series ---------------------------------------------------------------------------------------

@slow
def test_each_study_holds_the_expected_series_with_their_nucleus(series, manifest):
    for study in by_study(series).values():
        timepoint = timepoint_of_study(manifest, study)
        expected = {role for role in EXPECTED_SERIES if role == "localizer" or role in timepoint}
        assert set(study) == expected  # and no region map (those will be DICOM SEG)
        for role, one in study.items():
            modality, nucleus = EXPECTED_SERIES[role]
            assert one.first.Modality == modality, role
            if nucleus is not None:
                assert one.first.ImagedNucleus == nucleus and float(one.first.MagneticFieldStrength) > 0, role
        t1 = study["anatomical"].first
        assert list(t1.ImageType) == ["ORIGINAL", "PRIMARY", "M", "ND"]
        assert "IR" in t1.ScanningSequence and float(t1.InversionTime) > 0
        assert float(t1.RepetitionTime) > float(t1.InversionTime) > 10 * float(t1.EchoTime)  # T1-weighted
        assert list(study["adc"].first.ImageType)[:4] == ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]
        assert study["tmax"].first.SeriesDescription == "Tmax"
        assert "SPIO" in study["spio"].first.SeriesDescription and "1/s" in study["spio"].first.SeriesDescription
        assert "Gd" in study["gd"].first.SeriesDescription and "1/s" in study["gd"].first.SeriesDescription
        pet = study["pet"].first
        assert pet.Units == "BQML" and "ATTN" in pet.CorrectedImage and "DECY" in pet.CorrectedImage
        assert float(pet.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose) > 0
        assert float(pet.PatientWeight) > 0


@slow
def test_localizer_has_three_small_planes_of_different_orientation(series):
    for one in series:
        if role_of(one.first) != "localizer":
            continue
        assert len(one.headers) == 3
        normals = np.array([slice_normal_lps(ds) for ds in one.headers])
        np.testing.assert_allclose(np.abs(normals @ normals.T), np.eye(3), atol=1e-6)
        assert all(int(ds.Rows) <= 256 and int(ds.Columns) <= 256 for ds in one.headers)


@slow
def test_files_per_series_equal_the_slices_of_the_grid(series, manifest, demo):
    """The reference NIfTI axis parallel to the DICOM slice normal has one slice per file."""
    for study in by_study(series).values():
        timepoint = timepoint_of_study(manifest, study)
        for role, one in study.items():
            if role == "localizer":
                continue
            reference = demo.root / timepoint[role]
            if reference.is_dir():  # the day-7 PET of the NIfTI study is a DICOM series itself
                assert len(one.files) == len([p for p in reference.iterdir() if p.is_file()])
                continue
            image = nib.load(reference)
            axes = image.affine[:3, :3] / np.linalg.norm(image.affine[:3, :3], axis=0)
            normal_ras = slice_normal_lps(one.first) * np.array([-1.0, -1.0, 1.0])
            axis = int(np.argmax(np.abs(normal_ras @ axes)))
            assert len(one.files) == image.shape[axis], (role, timepoint["label"])


@slow
def test_maps_that_can_be_negative_are_stored_signed(series):
    for one in series:
        if role_of(one.first) == "gd":
            assert int(one.first.PixelRepresentation) == 1
            stored = np.concatenate([pydicom.dcmread(path).pixel_array.ravel() for path in one.files[::8]])
            assert stored.min() < 0 < stored.max()


# -- independent conversion: dcm2niix -------------------------------------------------------------

def _dcm2niix() -> str | None:
    beside = Path(sys.executable).parent / "dcm2niix"
    return str(beside) if beside.exists() else shutil.which("dcm2niix")


@slow
@pytest.mark.parametrize("role", ["anatomical", "fluorine"])
def test_dcm2niix_gives_the_nifti_of_the_same_role(series, manifest, demo, tmp_path, role):
    """Same world coordinates of the corner voxels and same values at the same world points."""
    tool = _dcm2niix()
    if tool is None:
        pytest.skip("dcm2niix is not installed")
    study = next(s for s in by_study(series).values() if timepoint_of_study(manifest, s)["day"] == 7)
    run = subprocess.run([tool, "-z", "n", "-o", str(tmp_path), str(study[role].folder)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    (converted,) = tmp_path.glob("*.nii")
    ours = nib.load(converted)
    reference = nib.load(demo.root / timepoint_of_study(manifest, study)[role])
    assert sorted(ours.shape[:3]) == sorted(reference.shape)  # possibly permuted or flipped

    def corners(image: nib.Nifti1Image) -> np.ndarray:
        ijk = np.array([[i, j, k] for i in (0, image.shape[0] - 1) for j in (0, image.shape[1] - 1)
                        for k in (0, image.shape[2] - 1)], dtype=float)
        return np.array(sorted(map(tuple, np.round(nib.affines.apply_affine(image.affine, ijk), 6))))

    np.testing.assert_allclose(corners(ours), corners(reference), atol=WORLD_TOLERANCE_MM)

    # Every converted voxel centre is a reference voxel centre; compare the values there.
    to_reference = np.linalg.inv(reference.affine) @ ours.affine
    ijk = np.indices(ours.shape[:3]).reshape(3, -1).T
    mapped = nib.affines.apply_affine(to_reference, ijk)
    index = np.rint(mapped).astype(int)
    assert np.abs(mapped - index).max() < 1e-3
    ours_values = np.asarray(ours.get_fdata(dtype=np.float64)).reshape(ours.shape[:3])[tuple(ijk.T)]
    reference_data = np.asarray(reference.get_fdata(dtype=np.float64))
    reference_values = reference_data[tuple(index.T)]
    peak = float(np.abs(reference_data).max())
    levels = 65534 if reference_data.min() >= 0 else 32766  # uint16 or int16 storage
    tolerance = 0.5 * peak / levels + peak * 2.0**-23
    assert np.abs(ours_values - reference_values).max() <= tolerance


# -- dicom3tools ----------------------------------------------------------------------------------

@slow
def test_dciodvfy_finds_no_error_in_any_series(series):
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    for one in series:
        run = subprocess.run([tool, str(one.files[0])], capture_output=True, text=True, timeout=60)
        errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
        assert not errors, (one.folder, errors)


# -- the writer's tag rules -----------------------------------------------------------------------

def test_contradicting_tags_are_refused(tmp_path):
    from datetime import datetime

    from viewer.core.io.dicom_write import MrTags, PetTags, SeriesTags, StudyTags, write_exam_series
    from viewer.core.volume import Volume

    volume = Volume.from_array(np.ones((4, 3, 2), np.float32), np.eye(4))
    start = datetime(2026, 3, 9, 9, 44)
    study = StudyTags(study_uid=generate_uid(), frame_of_reference_uid=generate_uid(), start=start, sex="F")
    pet = PetTags(weight_kg=68.0, dose_bq=2.5e8, injection=start, series=start, sex="M")
    with pytest.raises(ValueError, match="sex"):
        write_exam_series(volume, tmp_path / "a", study, SeriesTags(pet=pet))
    with pytest.raises(ValueError, match="PetTags"):
        write_exam_series(volume, tmp_path / "b", study, SeriesTags(modality="PT"))
    with pytest.raises(ValueError, match="inversion"):
        write_exam_series(volume, tmp_path / "c", study, SeriesTags(mr=MrTags(scanning_sequence=("GR", "IR"))))
    assert list(tmp_path.iterdir()) == []
