"""Scanning what a user points at into an :class:`~viewer.core.importer.entries.Exam`.

Why these rules:
- DICOM files are found and grouped by :func:`viewer.core.io.dicom_scan.scan_series` (any
  file names, nested folders, a DICOMDIR followed through its records), the same rules the
  series loader uses, so a series that imports is a series that opens. NIfTI files are split
  off by name first and described by :mod:`.bids`.
- Each series is given its tag-based proposal (:func:`viewer.core.importer.roles.guess_role`);
  then every series with pixels is checked, from its headers only, to be one volume
  (:func:`viewer.core.io.dicom.series_geometry`) and, for PET, to give an SUV
  (:func:`viewer.core.io.pet_suv.suv_conversion`). A series that fails keeps its candidate
  role but is skipped with the reader's own reason, so a missing slice or a MOSAIC file the
  reader cannot place yet is shown in the table instead of failing the whole import or
  producing a study that does not open.
- A damaged or truncated DICOM file is one skipped row ("unreadable: …"), not the end of the
  scan: one bad file on a CD must not stop the rest; its series shows the gap it leaves.
- Nothing is written and no pixel is decoded: scanning costs about one
  ``dcmread(stop_before_pixels=True)`` per file.
"""

from __future__ import annotations

import math
import os
from datetime import date
from pathlib import Path
from typing import Callable, Iterable

from viewer.core.errors import ViewerError
from viewer.core.importer.bids import nifti_entries
from viewer.core.importer.entries import Exam, PatientFacts, SeriesEntry, VolumeGeometry
from viewer.core.importer.roles import RoleGuess, SeriesFacts, guess_role
from viewer.core.io.dicom_scan import (
    DICOMDIR_NAME,
    DicomSeries,
    ScanCancelled,
    candidate_files,
    scan_series,
    tag_text,
)
from viewer.core.io.nifti import is_nifti_path

#: ``progress(stage, done, total)``: stage is "scanning" (files), "checking" (series) or
#: "copying" (files); called often, so it must be cheap.
ImportProgress = Callable[[str, int, int], None]
#: Returns True when the user asked to stop; the running step raises ScanCancelled.
CancelCheck = Callable[[], bool]


def scan_exam(
    paths: Iterable[str | Path],
    progress: ImportProgress | None = None,
    should_cancel: CancelCheck | None = None,
) -> Exam:
    """Every series under ``paths`` with its proposed role or skip reason.

    Raises:
        ViewerError: a path does not exist, or nothing under the paths is DICOM or NIfTI
            (the message names the paths and how many files were seen).
        ScanCancelled: ``should_cancel`` returned True.
    """
    sources = tuple(Path(p) for p in paths)
    if not sources:
        raise ViewerError("no exam folder given")
    files = candidate_files(sources)
    niftis = [f for f in files if is_nifti_path(f)]
    # a DICOMDIR found in a folder is not followed again: the files it lists lie below it
    others = [f for f in files if not is_nifti_path(f) and f.name.upper() != DICOMDIR_NAME]
    scan_progress = None if progress is None else (lambda done, total: progress("scanning", done, total))
    damaged: list[SeriesEntry] = []
    on_damaged = lambda path, message: damaged.append(damaged_entry(path, message))  # noqa: E731
    series = scan_series(others, scan_progress, should_cancel, on_damaged) if others else []
    entries = [*_dicom_entries(series, progress, should_cancel), *nifti_entries(niftis), *damaged]
    where = ", ".join(str(p) for p in sources)
    if not entries:
        raise ViewerError(f"{where}: no DICOM files nor NIfTI images found ({len(files)} files looked at)")
    return Exam(sources, tuple(sorted(entries, key=_table_order)), len(files))


def _dicom_entries(series: list[DicomSeries], progress: ImportProgress | None,
                   should_cancel: CancelCheck | None) -> list[SeriesEntry]:
    entries = []
    for done, one in enumerate(series, start=1):
        if should_cancel is not None and should_cancel():
            raise ScanCancelled("scan cancelled")
        entries.append(dicom_entry(one))
        if progress is not None:
            progress("checking", done, len(series))
    return entries


def dicom_entry(series: DicomSeries) -> SeriesEntry:
    """The entry of one scanned DICOM series: facts, proposal, grid and problems."""
    images = series.images_only() if series.has_pixels else series
    folder = series_folder(images)
    facts = dicom_facts(series)
    guess = guess_role(facts)
    geometry, problem = (None, "")
    cut_short = series.images_without_pixels() if series.has_pixels else []
    if cut_short:
        problem = (f"{cut_short[0].name} holds no pixel data although the other files do (cut short?); "
                   "the series would be read without it")
    elif series.has_pixels:
        geometry, problem = _geometry(folder, images)
        if not problem and guess.role == "pet":
            problem = _suv_problem(folder, images)
    candidate = guess.role
    if candidate is not None and problem:
        rule = "geometry" if geometry is None else "suv"
        guess = RoleGuess(None, problem, rule, guess.tier, guess.t1_weighted)
    return SeriesEntry(
        entry_id=series.uid, source="dicom", patient=dicom_patient(series), date=_da(series.study_date),
        session="", study_uid=series.study_uid, series_number=_int(series.text("SeriesNumber")),
        modality=series.modality, nucleus=series.nucleus, description=series.description,
        n_files=series.n_files, n_images=images.n_images if series.has_pixels else 0, folder=folder,
        files=tuple(path for path, _ in images.files), geometry=geometry, guess=guess, candidate=candidate,
        problem=problem if candidate is not None else "", has_pixels=series.has_pixels,
        derived=facts.image_type[:1] == ("DERIVED",),
    )


def damaged_entry(path: Path, message: str) -> SeriesEntry:
    """A file that is DICOM but cannot be read (damaged, truncated): one skipped row, so one
    bad file on a CD does not stop the import of the rest — its series then shows what the
    missing file costs it (a gap in the slices)."""
    reason = message.removeprefix(f"{path}: ")
    return SeriesEntry(
        entry_id=f"damaged:{path}", source="dicom", patient=PatientFacts(), date=None, session="",
        study_uid="", series_number=None, modality="", nucleus="", description=f"unreadable file {path.name}",
        n_files=1, n_images=0, folder=path.parent, files=(path,), geometry=None,
        guess=RoleGuess(None, f"unreadable: {reason}", "damaged"), has_pixels=False,
    )


def dicom_facts(series: DicomSeries) -> SeriesFacts:
    """The tags the role rules read, from the series' first image file."""
    images = series.images_only() if series.has_pixels else series
    ds = images.first
    corrected = ds.get("CorrectedImage")
    return SeriesFacts(
        modality=series.modality, nucleus=series.nucleus, description=series.description,
        image_type=images.image_type, sop_class_uid=tag_text(ds, "SOPClassUID"),
        photometric=tag_text(ds, "PhotometricInterpretation").upper() or "MONOCHROME2",
        samples_per_pixel=_int(tag_text(ds, "SamplesPerPixel")) or 1, has_pixels=series.has_pixels,
        has_geometry_tags=("ImagePositionPatient" in ds and "ImageOrientationPatient" in ds)
        or "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds,
        scanning_sequence=tuple(v for v in tag_text(ds, "ScanningSequence").upper().split("\\") if v),
        repetition_time_ms=_float(tag_text(ds, "RepetitionTime")),
        echo_time_ms=_float(tag_text(ds, "EchoTime")),
        inversion_time_ms=_float(tag_text(ds, "InversionTime")),
        flip_angle_deg=_float(tag_text(ds, "FlipAngle")),
        corrected_image=None if corrected is None else tuple(v for v in tag_text(ds, "CorrectedImage").upper().split("\\") if v),
    )


def dicom_patient(series: DicomSeries) -> PatientFacts:
    """PatientName, PatientID, PatientBirthDate and PatientSex of the series."""
    sex = tag_text(series.first, "PatientSex").upper()
    return PatientFacts(
        name=series.text("PatientName"), patient_id=series.text("PatientID"),
        birth_date=_da(series.text("PatientBirthDate")), sex=sex if sex in ("M", "F", "O") else "",
    )


def series_folder(series: DicomSeries) -> Path:
    """The deepest folder holding every file of the series (what messages name)."""
    parents = {str(path.parent) for path, _ in series.files}
    if len(parents) == 1:
        return Path(parents.pop())
    return Path(os.path.commonpath(sorted(parents)))


def _geometry(folder: Path, series: DicomSeries) -> tuple[VolumeGeometry | None, str]:
    from viewer.core.io.dicom import series_geometry

    try:
        grid = series_geometry(folder, series)
    except ViewerError as exc:
        return None, "cannot be placed as one volume: " + _without_prefix(str(exc), folder)
    return VolumeGeometry(tuple(int(n) for n in grid.shape), tuple(float(v) for v in grid.spacing_mm)), ""  # type: ignore[arg-type]


def _suv_problem(folder: Path, series: DicomSeries) -> str:
    from viewer.core.io.pet_suv import suv_conversion

    try:
        suv_conversion([ds for _, ds in series.files], folder)
    except ViewerError as exc:
        return "SUV cannot be computed: " + _without_prefix(str(exc), folder)
    return ""


def _without_prefix(message: str, folder: Path) -> str:
    """The reader names the folder first; the table row already says which series it is."""
    return message.removeprefix(f"{folder}: ")


def _table_order(entry: SeriesEntry) -> tuple:
    return (entry.patient.key, entry.date or date.max, entry.session, entry.study_uid,
            entry.series_number if entry.series_number is not None else 1 << 30, entry.description, entry.entry_id)


def _da(text: str) -> date | None:
    """A DICOM DA (YYYYMMDD) as a date, None when empty or malformed."""
    text = text.strip().replace("-", "").replace(".", "")
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _int(text: str) -> int | None:
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return None


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


__all__ = ["CancelCheck", "ImportProgress", "dicom_entry", "dicom_facts", "dicom_patient",
           "scan_exam", "series_folder"]
