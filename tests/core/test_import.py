"""`viewer import` (PRODUCT.md §8 "Exam import"): exams built here, imported, and read back.

The main exam is what a PACS export or a CD gives: one patient, two study dates a week apart,
files renamed to random names without extensions in nested folders shared by several series,
part of it on a "CD" with a DICOMDIR, and the series a radiologist meets — a localizer, two T1
candidates, an unrelated T2 FLAIR, ¹⁹F (ImagedNucleus "19F"), sodium ("23NA", the CS
spelling), PET with SUV tags, an ADC map, and a structured report without pixels.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from viewer.cli import main
from viewer.core.errors import ViewerError
from viewer.core.importer import (
    IMPORT_ROLES,
    SeriesFacts,
    format_table,
    guess_role,
    manifest_text,
    plan_import,
    scan_exam,
    write_study,
)
from viewer.core.importer.roles import normalise_nucleus
from viewer.core.io.dicom_scan import ScanCancelled
from viewer.core.io.dicom_write import PetTags, write_dicom_series
from viewer.core.io.nifti import save_nifti
from viewer.core.io.study import STUDY_KEYS, load_study, load_timepoint
from viewer.core.volume import Volume

PATIENT = {"name": "Doe^Jane", "id": "MRN-0042", "birth": "19700102", "sex": "F"}
DAY_A, DAY_B = "20260302", "20260309"


# -- builders -----------------------------------------------------------------------------------
def grid(shape, spacing, offset=(0.0, 0.0, 0.0)) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = offset
    return affine


def volume(shape, spacing, seed=0, scale=100.0) -> Volume:
    rng = np.random.default_rng(seed)
    data = (rng.random(shape) * scale + 1.0).astype(np.float32)
    return Volume.from_array(data, grid(shape, spacing, (-8.0, -8.0, -6.0)))


def edit_series(files, **tags) -> None:
    """Set tags on every file (pydicom), e.g. ImagedNucleus, SeriesNumber, StudyInstanceUID."""
    for path in files:
        ds = pydicom.dcmread(path)
        for keyword, value in tags.items():
            setattr(ds, keyword, value)
        ds.save_as(path)


def write_series(work: Path, name: str, vol: Volume, study: dict, number: int, description: str,
                 modality="MR", pet=None, **tags) -> list[Path]:
    files = write_dicom_series(vol, work / name, modality=modality, series_description=description, pet=pet,
                               patient_name=study.get("patient", PATIENT["name"]),
                               patient_id=study.get("patient_id", PATIENT["id"]), study_date=study["date"],
                               shuffle_seed=number)
    edit_series(files, SeriesNumber=number, StudyInstanceUID=study["uid"], StudyID=study["id"],
                PatientBirthDate=PATIENT["birth"], PatientSex=PATIENT["sex"], **tags)
    return files


def write_sr(path: Path, study: dict) -> None:
    """A Basic Text SR: a series without pixel data."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyInstanceUID = study["uid"]
    ds.StudyDate, ds.StudyID, ds.SeriesNumber = study["date"], study["id"], 99
    ds.PatientName, ds.PatientID = PATIENT["name"], PATIENT["id"]
    ds.SeriesDescription = "Radiology report"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def scatter(files, target: Path, rng: np.random.Generator) -> None:
    """Move files to random names without extension in a few shared nested folders."""
    folders = [target / "A" / "1", target / "A" / "2" / "deep", target / "B"]
    for path in files:
        folder = folders[int(rng.integers(len(folders)))]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.move(path, folder / f"{int(rng.integers(1 << 40)):x}")


def on_cd(files, cd: Path) -> None:
    """A DICOMDIR file set (the layout of a CD export)."""
    fileset = FileSet()
    for path in files:
        fileset.add(path)
    fileset.write(cd)


def pet_tags(day: str) -> PetTags:
    when = datetime.strptime(day, "%Y%m%d")
    return PetTags(weight_kg=70.0, dose_bq=3.7e8, injection=when.replace(hour=10), series=when.replace(hour=11),
                   sex="F")


def build_exam(root: Path) -> Path:
    """The main exam (module docstring); returns its folder."""
    work, exam = root / "work", root / "exam"
    rng = np.random.default_rng(3)
    a = {"date": DAY_A, "uid": generate_uid(), "id": "1"}
    b = {"date": DAY_B, "uid": generate_uid(), "id": "2"}
    day_a = [
        *write_series(work, "scout", volume((16, 16, 3), (1, 1, 5)), a, 1, "localizer",
                      ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"]),
        *write_series(work, "mprage", volume((16, 16, 12), (1, 1, 1)), a, 5, "T1 MPRAGE"),
        *write_series(work, "t1se", volume((16, 16, 4), (1, 1, 3)), a, 7, "T1 SE"),
        *write_series(work, "flair", volume((16, 16, 12), (1, 1, 1)), a, 8, "T2 FLAIR"),
        *write_series(work, "f19", volume((8, 8, 6), (2, 2, 2)), a, 10, "CSI fluorine", ImagedNucleus="19F"),
        *write_series(work, "na23", volume((8, 8, 6), (2, 2, 2)), a, 11, "sodium UTE", ImagedNucleus="23NA"),
        *write_series(work, "pet", volume((8, 8, 6), (2, 2, 2), scale=5.0), a, 20, "PET AC", pet=pet_tags(DAY_A)),
        *write_series(work, "adc", volume((8, 8, 6), (2, 2, 2), scale=2000.0), a, 12, "ep2d_diff_ADC"),
    ]
    write_sr(work / "sr" / "report", a)
    scatter([*day_a, work / "sr" / "report"], exam, rng)
    day_b = [
        *write_series(work, "mprage_b", volume((16, 16, 12), (1, 1, 1), seed=1), b, 5, "T1 MPRAGE"),
        *write_series(work, "f19_b", volume((8, 8, 6), (2, 2, 2), seed=1), b, 10, "CSI fluorine",
                      ImagedNucleus="19f"),
    ]
    on_cd(day_b, exam / "CD")
    shutil.rmtree(work)
    return exam


def write_bids(root: Path, *, with_sessions_tsv: bool) -> Path:
    """sub-01 with ses-1 (T1w, 19F by its nuc entity, PET in Bq/mL) and ses-2 (T1w)."""
    subject = root / "bids" / "sub-01"
    for ses in ("1", "2"):
        anat = subject / f"ses-{ses}" / "anat"
        anat.mkdir(parents=True)
        save_nifti(volume((12, 12, 10), (1, 1, 1), seed=int(ses)), anat / f"sub-01_ses-{ses}_T1w.nii.gz")
    anat = subject / "ses-1" / "anat"
    save_nifti(volume((6, 6, 5), (2, 2, 2)), anat / "sub-01_ses-1_nuc-19F_T1w.nii.gz")
    pet = subject / "ses-1" / "pet"
    pet.mkdir()
    save_nifti(volume((6, 6, 5), (2, 2, 2), scale=1e4), pet / "sub-01_ses-1_pet.nii.gz")
    (pet / "sub-01_ses-1_pet.json").write_text(json.dumps({
        "Units": "Bq/mL", "InjectedRadioactivity": 370, "InjectedRadioactivityUnits": "MBq", "BodyWeight": 70,
        "ImageDecayCorrected": True, "ImageDecayCorrectionTime": 0, "InjectionStart": 0,
    }))
    (root / "bids" / "participants.tsv").write_text("participant_id\tsex\nsub-01\tF\n")
    (subject / "ses-2" / "anat" / "sub-01_ses-2_bold.nii.gz").write_bytes(b"")  # not a volume: listed, skipped
    if with_sessions_tsv:
        (subject / "sub-01_sessions.tsv").write_text(
            "session_id\tacq_time\nses-1\t2026-03-02T10:00:00\nses-2\t2026-03-16T09:30:00\n")
    return root / "bids"


def run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_clean_failure(code: int, err: str, out: Path, *words: str) -> str:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], lines[0]
    assert not out.exists(), f"left behind: {list(out.iterdir())}"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "temporary folder left"
    return lines[0]


@pytest.fixture(scope="module")
def exam(tmp_path_factory) -> Path:
    return build_exam(tmp_path_factory.mktemp("exam"))


# -- the main exam ------------------------------------------------------------------------------
def test_import_writes_a_study_with_roles_days_and_patient(exam, tmp_path, capsys):
    out = tmp_path / "study"
    code, stdout, stderr = run(["import", exam, "-o", out], capsys)
    assert code == 0, stderr
    assert stderr == "", "a successful import prints nothing on stderr (no warnings, no bar off a terminal)"

    study = load_study(out)
    assert study.id == "study"
    assert study.info["patient"] == "Doe^Jane"
    assert study.info["patient_id"] == "MRN-0042"
    assert str(study.info["birth_date"]) == "1970-01-02"
    assert study.info["sex"] == "F"
    if "day0" in STUDY_KEYS:
        assert str(study.info["day0"]) == "2026-03-02"
    assert [(tp.label, tp.day) for tp in study.timepoints] == [("day 0", 0.0), ("day 7", 7.0)]
    first, second = study.timepoints
    assert set(first.images) == {"anatomical", "fluorine", "sodium", "pet", "adc"}
    assert set(second.images) == {"anatomical", "fluorine"}
    assert first.images["anatomical"] == (out / "day-0" / "t1").resolve()
    assert first.images["pet"] == (out / "day-0" / "pet").resolve()

    volumes = load_timepoint(study, first)
    assert volumes["anatomical"].shape == (16, 16, 12)
    assert volumes["anatomical"].meta["description"] == "T1 MPRAGE"
    assert volumes["pet"].units == "SUV"
    assert volumes["sodium"].meta["description"] == "sodium UTE"
    assert load_timepoint(study, second)["fluorine"].shape == (8, 8, 6)

    rows = {line.split("  ")[0] for line in stdout.splitlines()}
    assert "patient" in rows
    assert "second T1 candidate: kept series 5 (T1 MPRAGE, 1 mm) over series 7 (T1 SE, 1×1×3 mm) — rule: smallest " \
           "voxel volume" in stdout
    assert "second anatomy candidate: kept series 5 (T1 MPRAGE, 1 mm) over series 8 (T2 FLAIR, 1 mm) — rule: " \
           "T1-weighted" in stdout
    assert "localizer" in stdout and "no pixel data (SR: structured report)" in stdout
    assert "wrote " in stdout


def test_a_real_process_prints_no_warning_lines(exam, tmp_path):
    """Outside pytest's warning capture: what a user's terminal would show on stderr."""
    import subprocess
    import sys

    out = tmp_path / "study"
    done = subprocess.run([sys.executable, "-m", "viewer", "import", str(exam), "-o", str(out)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "default"},
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert load_study(out).timepoints


def test_every_series_is_listed_with_its_fate(exam):
    plan = plan_import(scan_exam([exam]))
    fate = {(e.series_number, e.date): plan.decision(e.entry_id) for e in plan.exam.entries}
    assert len(plan.exam.entries) == 11
    a, b = date(2026, 3, 2), date(2026, 3, 9)
    assert fate[(5, a)].role == "anatomical" and fate[(5, a)].timepoint == "day 0"
    assert fate[(7, a)].role is None and "second T1 candidate" in fate[(7, a)].reason
    assert fate[(8, a)].role is None
    assert fate[(1, a)].role is None and "localizer" in fate[(1, a)].reason
    assert fate[(10, a)].role == "fluorine" and fate[(11, a)].role == "sodium"
    assert fate[(20, a)].role == "pet" and fate[(12, a)].role == "adc"
    assert fate[(99, a)].role is None and "no pixel data" in fate[(99, a)].reason
    assert fate[(5, b)].role == "anatomical" and fate[(5, b)].timepoint == "day 7"
    assert fate[(10, b)].role == "fluorine"
    table = format_table(plan)
    assert len(table.splitlines()) >= 1 + 11


def test_day0_option_sets_days_and_labels(exam, tmp_path, capsys):
    out = tmp_path / "study"
    code, _, stderr = run(["import", exam, "-o", out, "--day0", "2026-02-28"], capsys)
    assert code == 0, stderr
    study = load_study(out)
    assert [(tp.label, tp.day) for tp in study.timepoints] == [("day 2", 2.0), ("day 9", 9.0)]
    assert (out / "day-2" / "t1").is_dir() and (out / "day-9" / "f19").is_dir()
    if "day0" in STUDY_KEYS:
        assert str(study.info["day0"]) == "2026-02-28"


def test_days_before_day0_are_negative(exam):
    plan = plan_import(scan_exam([exam]), day0=date(2026, 3, 5))
    assert [(tp.label, tp.day, tp.folder) for tp in plan.timepoints] == [("day -3", -3, "day-minus-3"),
                                                                         ("day 4", 4, "day-4")]


def test_undated_exam_is_one_timepoint_without_day(tmp_path):
    study = {"date": DAY_A, "uid": generate_uid(), "id": "1"}
    undated = {"StudyDate": "", "SeriesDate": "", "AcquisitionDate": "", "ContentDate": ""}  # a de-identified export
    write_series(tmp_path / "exam", "t1", volume((16, 16, 6), (1, 1, 1)), study, 3, "T1 MPRAGE", **undated)
    write_series(tmp_path / "exam", "f19", volume((8, 8, 4), (2, 2, 2)), study, 4, "F19", ImagedNucleus="19F",
                 **undated)
    plan = plan_import(scan_exam([tmp_path / "exam"]))
    assert [(tp.label, tp.day) for tp in plan.timepoints] == [("undated", None)]
    study_read = load_study(write_study(plan, tmp_path / "study"))
    assert study_read.timepoints[0].day is None and "day0" not in study_read.info
    assert set(study_read.timepoints[0].images) == {"anatomical", "fluorine"}


def test_dry_run_prints_table_and_manifest_and_writes_nothing(exam, tmp_path, capsys):
    out = tmp_path / "study"
    code, stdout, stderr = run(["import", exam, "-o", out, "--dry-run"], capsys)
    assert code == 0, stderr
    assert stderr == ""
    assert not out.exists()
    assert not list(tmp_path.iterdir())
    assert "[[timepoint]]" in stdout and 'label = "day 7"' in stdout and 'anatomical = "day-0/t1"' in stdout
    assert 'patient_id = "MRN-0042"' in stdout


def test_dicomdir_given_as_the_path(exam):
    entries = scan_exam([exam / "CD" / "DICOMDIR"]).entries
    assert [(e.series_number, e.role) for e in entries] == [(5, "anatomical"), (10, "fluorine")]


def test_link_places_the_same_files(exam, tmp_path, capsys):
    out = tmp_path / "linked"
    code, _, stderr = run(["import", exam, "-o", out, "--link"], capsys)
    assert code == 0, stderr
    copied = sorted((out / "day-0" / "t1").iterdir())
    assert len(copied) == 12
    sources = {os.stat(p).st_ino for e in scan_exam([exam]).entries for p in e.files}
    assert all(os.stat(p).st_ino in sources for p in copied), "files are hard links to the exam's"
    assert load_timepoint(load_study(out), load_study(out).timepoints[0])["anatomical"].shape == (16, 16, 12)


def test_user_override_picks_another_series_and_is_listed(exam, tmp_path):
    scanned = scan_exam([exam])
    t1se = next(e for e in scanned.entries if e.series_number == 7)
    mprage = next(e for e in scanned.entries if e.series_number == 5 and e.date == date(2026, 3, 2))
    sodium = next(e for e in scanned.entries if e.series_number == 11)
    plan = plan_import(scanned, {t1se.entry_id: "anatomical", sodium.entry_id: None})
    assert plan.decision(t1se.entry_id).role == "anatomical" and plan.decision(t1se.entry_id).by_user
    assert "rule: chosen by the user" in plan.decision(mprage.entry_id).reason
    assert plan.decision(sodium.entry_id).reason == "skipped by the user"
    manifest = write_study(plan, tmp_path / "s")
    study = load_study(manifest)
    assert "sodium" not in study.timepoints[0].images
    assert load_timepoint(study, study.timepoints[0])["anatomical"].shape == (16, 16, 4)


def test_override_onto_an_unusable_series_refuses_the_plan(exam):
    scanned = scan_exam([exam])
    report = next(e for e in scanned.entries if e.modality == "SR")
    plan = plan_import(scanned, {report.entry_id: "anatomical"})
    assert not plan.writable and "cannot be the anatomical image: no pixel data" in plan.problem
    with pytest.raises(ValueError):
        plan_import(scanned, {report.entry_id: "regions"})


def test_cancel_stops_scan_and_write_leaving_nothing(exam, tmp_path):
    with pytest.raises(ScanCancelled):
        scan_exam([exam], should_cancel=lambda: True)
    plan = plan_import(scan_exam([exam]))
    calls = []

    def cancel_after_some() -> bool:
        calls.append(1)
        return len(calls) > 5

    with pytest.raises(ScanCancelled):
        write_study(plan, tmp_path / "s", should_cancel=cancel_after_some)
    assert not list(tmp_path.iterdir())


def test_progress_reports_every_stage(exam, tmp_path):
    seen: dict[str, tuple[int, int]] = {}
    plan = plan_import(scan_exam([exam], progress=lambda stage, done, total: seen.__setitem__(stage, (done, total))))
    write_study(plan, tmp_path / "s", progress=lambda stage, done, total: seen.__setitem__(stage, (done, total)))
    assert seen["scanning"] == (74, 74)  # 56 files of day 0 + 18 on the CD (its DICOMDIR is not an image)
    assert seen["checking"] == (11, 11)
    assert seen["copying"] == (54, 54)  # day 0: T1 12 + 19F, 23Na, PET, ADC 6 each; day 7: T1 12 + 19F 6


def test_progress_bar_draws_on_a_terminal_and_clears_its_line():
    import io

    from viewer.cli import _TerminalProgress

    stream = io.StringIO()
    bar = _TerminalProgress(stream)
    bar("scanning", 1, 4)
    bar("scanning", 2, 4)  # within 0.1 s of the first: not redrawn
    bar("scanning", 4, 4)  # the last step is always drawn
    bar.close()
    text = stream.getvalue()
    assert text.count("scanning") == 2 and "4/4" in text and text.endswith("\r\033[K")
    assert "\n" not in text


def test_role_option_on_the_command_line(exam, tmp_path, capsys):
    out = tmp_path / "study"
    code, stdout, err = run(["import", exam, "-o", out, "--role", "11=skip", "--dry-run"], capsys)
    assert code == 0, err
    assert "skipped by the user" in stdout and "sodium =" not in stdout
    code, _, err = run(["import", exam, "-o", out, "--role", "5=anatomical"], capsys)
    assert_clean_failure(code, err, out, "2 series have SeriesNumber 5")


def test_existing_folder_is_refused_unless_overwrite(exam, tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = run(["import", exam, "-o", out], capsys)
    assert code == 2 and "exists and is not empty" in err and (out / "notes.txt").exists()
    code, _, err = run(["import", exam, "-o", out, "--overwrite"], capsys)
    assert code == 0, err
    assert not (out / "notes.txt").exists() and load_study(out).timepoints


def test_output_inside_the_exam_is_refused(exam, capsys):
    code, _, err = run(["import", exam, "-o", exam / "study"], capsys)
    assert_clean_failure(code, err, exam / "study", "inside the scanned folder")


# -- BIDS ---------------------------------------------------------------------------------------
def test_bids_sessions_with_dates(tmp_path, capsys):
    bids = write_bids(tmp_path, with_sessions_tsv=True)
    out = tmp_path / "study"
    code, stdout, stderr = run(["import", bids, "-o", out], capsys)
    assert code == 0, stderr
    assert stderr == ""
    study = load_study(out)
    assert [(tp.label, tp.day) for tp in study.timepoints] == [("day 0", 0.0), ("day 14", 14.0)]
    assert study.info["patient_id"] == "sub-01" and study.info["sex"] == "F"
    first = study.timepoints[0]
    assert first.images["anatomical"] == (out / "day-0" / "t1.nii.gz").resolve()
    assert set(first.images) == {"anatomical", "fluorine", "pet"}
    assert first.pet_units == "Bq/mL" and first.pet_dose.dose_bq == pytest.approx(3.7e8)
    volumes = load_timepoint(study, first)
    assert volumes["pet"].units == "SUV" and volumes["fluorine"].shape == (6, 6, 5)
    assert "BIDS suffix 'bold' has no role" in stdout or "not a readable NIfTI" in stdout


def test_bids_sessions_without_dates_follow_session_order(tmp_path, capsys):
    bids = write_bids(tmp_path, with_sessions_tsv=False)
    plan = plan_import(scan_exam([bids]))
    assert plan.writable, plan.problem
    assert [(tp.label, tp.day) for tp in plan.timepoints] == [("ses-1", None), ("ses-2", None)]
    study = load_study(write_study(plan, tmp_path / "study"))
    assert [tp.label for tp in study.timepoints] == ["ses-1", "ses-2"]
    assert study.timepoints[1].images["anatomical"].name == "t1.nii.gz"


def test_bids_scans_tsv_dates_a_file_and_undated_files_are_then_skipped(tmp_path):
    bids = write_bids(tmp_path, with_sessions_tsv=False)
    (bids / "sub-01" / "ses-2" / "sub-01_ses-2_scans.tsv").write_text(
        "filename\tacq_time\nanat/sub-01_ses-2_T1w.nii.gz\t2026-04-01T08:00:00\n")
    plan = plan_import(scan_exam([bids]))
    assert [(tp.label, tp.day) for tp in plan.timepoints] == [("day 0", 0)]
    assert plan.timepoints[0].date == date(2026, 4, 1)
    undated = next(e for e in plan.exam.entries if e.files[0].name == "sub-01_ses-1_T1w.nii.gz")
    assert plan.decision(undated.entry_id).reason.startswith("no study date")


# -- bad input ----------------------------------------------------------------------------------
def test_nothing_importable_is_refused(tmp_path, capsys):
    work = tmp_path / "exam"
    study = {"date": DAY_A, "uid": generate_uid(), "id": "1"}
    write_sr(work / "report", study)
    write_series(tmp_path / "w", "scout", volume((16, 16, 3), (1, 1, 5)), study, 1, "survey")
    shutil.move(tmp_path / "w" / "scout", work / "scout")
    out = tmp_path / "study"
    code, _, err = run(["import", work, "-o", out], capsys)
    assert_clean_failure(code, err, out, str(work), "nothing to import")


def test_folder_of_non_dicom_files_is_refused(tmp_path, capsys):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "README").write_text("not an image")
    (folder / "data.bin").write_bytes(os.urandom(2048))
    out = tmp_path / "study"
    code, _, err = run(["import", folder, "-o", out], capsys)
    assert_clean_failure(code, err, out, str(folder), "no DICOM files")


def test_missing_slice_of_the_only_t1_is_refused_with_the_readers_reason(tmp_path, capsys):
    study = {"date": DAY_A, "uid": generate_uid(), "id": "1"}
    files = write_series(tmp_path / "exam", "t1", volume((16, 16, 9), (1, 1, 1)), study, 3, "T1 MPRAGE")
    by_position = sorted(files, key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]))
    by_position[4].unlink()
    out = tmp_path / "study"
    code, _, err = run(["import", tmp_path / "exam", "-o", out], capsys)
    line = assert_clean_failure(code, err, out, str(tmp_path / "exam"), "slice spacing is not uniform")
    assert "series 3 (T1 MPRAGE)" in line


def test_a_series_the_reader_cannot_place_is_skipped_not_fatal(tmp_path, capsys):
    """Two echoes at the same positions (a multi-echo ¹⁹F series), and a MOSAIC file, which
    the reader may not place yet: listed with the reader's reason, the rest is imported."""
    study = {"date": DAY_A, "uid": generate_uid(), "id": "1"}
    work = tmp_path / "exam"
    write_series(work, "t1", volume((16, 16, 6), (1, 1, 1)), study, 3, "T1 MPRAGE")
    uid = generate_uid()
    for echo in ("e1", "e2"):
        files = write_echo(work / echo, uid, study)
        edit_series(files, SeriesNumber=4, StudyInstanceUID=study["uid"], StudyID="1", ImagedNucleus="19F")
    write_series(work, "mosaic", volume((8, 8, 4), (2, 2, 2)), study, 5, "ep2d mosaic",
                 ImageType=["ORIGINAL", "PRIMARY", "M", "MOSAIC"])
    plan = plan_import(scan_exam([work]))
    echoes = next(e for e in plan.exam.entries if e.series_number == 4)
    assert echoes.candidate == "fluorine" and echoes.role is None and echoes.n_files == 8
    assert plan.decision(echoes.entry_id).reason.startswith("cannot be placed as one volume: slices")
    assert "same position" in plan.decision(echoes.entry_id).reason
    mosaic = next(e for e in plan.exam.entries if e.series_number == 5)
    assert mosaic.role is None or mosaic.geometry is not None, plan.decision(mosaic.entry_id).reason
    assert plan.writable and plan.timepoints[0].image("anatomical") is not None
    assert plan.timepoints[0].image("fluorine") is None
    out = tmp_path / "study"
    code, _, err = run(["import", work, "-o", out, "--role", "4=fluorine"], capsys)
    assert_clean_failure(code, err, out, "series 4 (F19 multi-echo) cannot be the fluorine image", "same position")


def write_echo(folder: Path, series_uid: str, study: dict) -> list[Path]:
    return write_dicom_series(volume((8, 8, 4), (2, 2, 2)), folder, series_description="F19 multi-echo",
                              patient_name=PATIENT["name"], patient_id=PATIENT["id"], study_date=study["date"],
                              series_uid=series_uid)


def test_several_patients_are_refused_unless_one_is_chosen(exam, tmp_path, capsys):
    other = tmp_path / "other"
    study = {"date": DAY_A, "uid": generate_uid(), "id": "9", "patient": "Roe^Richard", "patient_id": "MRN-7"}
    write_series(other, "t1", volume((16, 16, 6), (1, 1, 1)), study, 2, "T1 MPRAGE")
    out = tmp_path / "study"
    code, _, err = run(["import", exam, other, "-o", out], capsys)
    assert_clean_failure(code, err, out, "2 patients", "MRN-0042", "MRN-7", "--patient")
    code, stdout, err = run(["import", exam, other, "-o", out, "--patient", "MRN-7"], capsys)
    assert code == 0, err
    study_read = load_study(out)
    assert study_read.info["patient_id"] == "MRN-7" and len(study_read.timepoints) == 1
    assert "other patient (MRN-0042 (Doe^Jane))" in stdout


def test_bad_day0_is_one_error_line(exam, tmp_path, capsys):
    out = tmp_path / "study"
    code, _, err = run(["import", exam, "-o", out, "--day0", "02/03/2026"], capsys)
    assert_clean_failure(code, err, out, "--day0")


# -- role rules ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("facts", "role", "words"), [
    (SeriesFacts(modality="MR", nucleus="23NA", description="sodium"), "sodium", "23NA"),
    (SeriesFacts(modality="MR", nucleus="19f"), "fluorine", "19f"),
    (SeriesFacts(modality="MR", nucleus="31P"), None, "31P"),
    (SeriesFacts(modality="MR", description="T1 MPRAGE post Gd"), "anatomical", "T1-weighted"),
    (SeriesFacts(modality="MR", description="ax", scanning_sequence=("GR", "IR"), inversion_time_ms=900.0),
     "anatomical", "inversion recovery"),
    (SeriesFacts(modality="MR", description="T2 TSE", scanning_sequence=("SE",), repetition_time_ms=500.0,
                 echo_time_ms=10.0), "anatomical", "not T1-weighted"),
    (SeriesFacts(modality="MR", description="ΔR2* map"), "spio", "ΔR2*"),
    (SeriesFacts(modality="MR", description="SPIO dR2star"), "spio", "ΔR2*"),
    (SeriesFacts(modality="MR", description="R2star"), None, "absolute"),
    (SeriesFacts(modality="MR", description="delta R1 (Gd release)"), "gd", "ΔR1"),
    (SeriesFacts(modality="MR", description="T1 map"), None, "absolute"),
    (SeriesFacts(modality="MR", image_type=("DERIVED", "PRIMARY", "ADC")), "adc", "ImageType ADC"),
    (SeriesFacts(modality="MR", description="eADC"), None, "diffusion"),
    (SeriesFacts(modality="CT", description="Tmax (s)"), "tmax", "Tmax"),
    (SeriesFacts(modality="MR", description="CBF"), None, "perfusion"),
    (SeriesFacts(modality="MR", description="3-plane SCOUT"), None, "localizer"),
    (SeriesFacts(modality="OT", sop_class_uid="1.2.840.10008.5.1.4.1.1.7", has_geometry_tags=False),
     None, "secondary capture"),
    (SeriesFacts(modality="CT", description="Dose Report", sop_class_uid="1.2.840.10008.5.1.4.1.1.7"),
     None, "screen capture"),
    (SeriesFacts(modality="PT", photometric="RGB", samples_per_pixel=3), None, "colour"),
    (SeriesFacts(modality="PT", corrected_image=("DECY", "SCAT")), None, "ATTN"),
    (SeriesFacts(modality="PT", description="MIP"), None, "projection"),
    (SeriesFacts(modality="PT", corrected_image=("ATTN", "DECY")), "pet", "PT"),
    (SeriesFacts(modality="CT", description="CT 3mm"), "anatomical", "CT"),
    (SeriesFacts(modality="US"), None, "modality US"),
    (SeriesFacts(modality="SR", has_pixels=False), None, "no pixel data"),
    (SeriesFacts(modality="MR", bids_suffix="T1w"), "anatomical", "BIDS suffix T1w"),
    (SeriesFacts(modality="MR", bids_suffix="bold"), None, "BIDS suffix 'bold'"),
])
def test_role_rules(facts, role, words):
    guess = guess_role(facts)
    assert guess.role == role, guess
    assert words in guess.reason, guess.reason


def test_nucleus_spellings_compare_without_case():
    assert {normalise_nucleus(n) for n in ("23NA", "23Na", "na23", " 23na ")} == {"23NA"}
    assert {normalise_nucleus(n) for n in ("19F", "19f", "F19")} == {"19F"}
    assert set(IMPORT_ROLES) == {"anatomical", "fluorine", "spio", "gd", "pet", "sodium", "adc", "tmax"}


def test_manifest_text_validates_when_written(exam, tmp_path):
    plan = plan_import(scan_exam([exam]))
    text = manifest_text(plan, "demo-001")
    assert 'id = "demo-001"' in text
    with pytest.raises(ViewerError):
        plan_import(scan_exam([exam]), patient="nobody").require_writable()


def test_an_unreadable_file_is_one_skipped_row_not_the_end_of_the_import(tmp_path, capsys):
    """A CD with one damaged file (a DICOM preamble, then garbage) and one file cut short in
    its compressed pixel data: both listed as unreadable, the rest imported."""
    study = {"date": DAY_A, "uid": generate_uid(), "id": "1"}
    work = tmp_path / "exam"
    write_series(work, "t1", volume((16, 16, 6), (1, 1, 1)), study, 3, "T1 MPRAGE")
    (work / "broken").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + b"\x07" * 64)
    from tests.core.real_files import PYDICOM_DATA, real_file

    shutil.copy(real_file(PYDICOM_DATA, "emri_small_jpeg_2k_lossless_too_short.dcm"), work / "cut")
    out = tmp_path / "study"
    code, stdout, err = run(["import", work, "-o", out], capsys)
    assert code == 0 and err == ""
    rows = [line for line in stdout.splitlines() if "unreadable" in line]
    assert len(rows) == 2 and any("truncated" in row for row in rows), stdout
    assert load_study(out / "study.toml").timepoints[0].has("anatomical")
