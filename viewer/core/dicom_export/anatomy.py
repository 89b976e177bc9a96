"""The anatomical series a timepoint's Segmentation references (PRODUCT.md §8).

A DICOM Segmentation must reference the images it segments, frame by frame. Three cases:

- the anatomy is a classic single-frame DICOM series, or one enhanced multi-frame file, and
  the export keeps identities: the SEG references those very instances (already in the
  hospital's PACS), and nothing of the anatomy is written;
- the anatomy is NIfTI (no instances to reference), a Siemens MOSAIC or several multi-frame
  files (frames that are not one image each), or the export is de-identified (the original
  instances carry the patient's identity): the anatomy is first written as a new DICOM MR
  series, from the values as loaded, in the file's own scanner space (never resampled), and the
  SEG references that series, which is exported beside it;
- either way the frames' geometry (origin, directions, spacing, LPS mm) comes from the headers
  the SEG will reference, so the labels are sampled exactly where each frame lies.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from viewer.core.errors import ViewerError
from viewer.core.io.dicom_frames import Frame, frames_of_file
from viewer.core.io.dicom_scan import image_series
from viewer.core.io.dicom_write import FileNaming, SeriesTags, StudyTags, write_exam_series
from viewer.core.volume import Volume

#: The day a de-identified study's dates count from (PS3.15 "Retain Longitudinal Temporal
#: Information with Modified Dates": day N after transplantation is written as this + N days).
DEIDENTIFIED_DAY0 = date(1900, 1, 1)
#: Prefix of UIDs that are derived from content (the same anatomy gives the same UIDs).
UID_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's root, as generate_uid uses
#: SeriesNumber of a derived anatomy series.
ANATOMY_SERIES_NUMBER = 901


@dataclass(frozen=True)
class Identity:
    """Who and which visit the exported objects belong to (Patient and General Study modules).

    Attributes:
        patient_name, patient_id, birth_date, sex: as DICOM writes them ("" when unknown).
        study_uid: StudyInstanceUID of the timepoint's study.
        start: StudyDate/StudyTime (None: unknown, written empty).
        study_id, accession_number, description: StudyID, AccessionNumber, StudyDescription.
        deidentified: the values are pseudonyms and shifted dates (PS3.15).
    """

    patient_name: str
    patient_id: str
    birth_date: date | None
    sex: str
    study_uid: str
    start: datetime | None
    study_id: str = ""
    accession_number: str = ""
    description: str = ""
    deidentified: bool = False


@dataclass(frozen=True)
class AnatomySeries:
    """The instances a Segmentation references and where each frame lies.

    Attributes:
        datasets: the source images' headers, in the order highdicom receives them.
        frames: every frame in the order of the SEG's pixel array (one per single-frame
            image, or the frames of the one multi-frame image), with LPS geometry.
        written: files written for the export (a derived series), empty when the SEG
            references the original instances.
    """

    datasets: list[Dataset]
    frames: list[Frame]
    written: list[Path]


def deterministic_uid(*parts: str) -> str:
    """A UID derived from ``parts`` (the same inputs always give the same UID)."""
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=list(parts))


def file_digest(path: Path) -> str:
    """SHA-256 of a file (or of the sorted files of a folder): what a derived series' UIDs
    are drawn from, so a second export of an unchanged anatomy gives the same series."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def original_series(volume: Volume) -> tuple[list[Dataset], list[Frame]] | None:
    """The anatomy's own DICOM instances when a SEG can reference them frame by frame, else
    None (NIfTI, MOSAIC, several multi-frame files)."""
    if volume.meta.get("format") != "dicom" or volume.source is None:
        return None
    where = Path(volume.source)
    found = [s for s in image_series([where]) if s.uid == volume.meta.get("series_uid")]
    if len(found) != 1:
        raise ViewerError(f"{where}: the anatomical series {volume.meta.get('series_uid')} is no longer there "
                          "to be referenced; open the study again")
    files = found[0].images_only().files
    frames_by_file = [frames_of_file(where, path, ds) for path, ds in files]
    if any(frame.tile is not None for frames in frames_by_file for frame in frames):
        return None  # MOSAIC: one stored image holds many slices
    if len(files) > 1 and any(len(frames) > 1 for frames in frames_by_file):
        return None  # several multi-frame files
    datasets = [dcmread(path, stop_before_pixels=True) for path, _ in files]
    return datasets, [frame for frames in frames_by_file for frame in frames]


def source_identity(dataset: Dataset) -> Identity:
    """The identity of a DICOM anatomy: its own Patient and General Study values."""
    def text(keyword: str) -> str:
        return str(dataset.get(keyword, "") or "").strip()

    return Identity(
        patient_name=text("PatientName"), patient_id=text("PatientID"),
        birth_date=_dicom_date(text("PatientBirthDate")), sex=text("PatientSex"),
        study_uid=text("StudyInstanceUID") or generate_uid(),
        start=_dicom_datetime(text("StudyDate"), text("StudyTime")),
        study_id=text("StudyID"), accession_number=text("AccessionNumber"), description=text("StudyDescription"),
    )


def manifest_identity(info: Mapping[str, Any], study_id: str, label: str, day: float | None, anatomy_digest: str) -> Identity:
    """The identity of a NIfTI timepoint: the manifest's patient; the study date from day 0 and
    the timepoint's day when both are known; a Study UID drawn from the study, the timepoint
    and the anatomy's bytes (a second export lands in the same study)."""
    start = None
    day0 = _manifest_date(info.get("day0"))
    if day0 is not None and day is not None:
        start = datetime.combine(day0 + timedelta(days=float(day)), datetime.min.time())
    return Identity(
        patient_name=str(info.get("patient") or ""), patient_id=str(info.get("patient_id") or ""),
        birth_date=_manifest_date(info.get("birth_date")), sex=_sex(info.get("sex")),
        study_uid=deterministic_uid("study", study_id, label, anatomy_digest), start=start,
        study_id=study_id[:16], description=f"{study_id} · {label}"[:64],
    )


def deidentified_identity(pseudonym: str, day: float | None) -> Identity:
    """PS3.15 Basic Profile values: the pseudonym as patient name and ID, no birth date or sex,
    a new random Study UID, the date shifted to :data:`DEIDENTIFIED_DAY0` + day."""
    start = None
    if day is not None:
        start = datetime.combine(DEIDENTIFIED_DAY0 + timedelta(days=round(float(day))), datetime.min.time())
    return Identity(patient_name=pseudonym, patient_id=pseudonym, birth_date=None, sex="", study_uid=generate_uid(),
                    start=start, deidentified=True)


def write_derived_series(volume: Volume, folder: Path, identity: Identity, series_uid: str,
                         frame_of_reference_uid: str, description: str) -> AnatomySeries:
    """Write the anatomy as a new MR series in its file's own space and read its headers back."""
    file_volume = _in_file_space(volume)
    start = identity.start or datetime(1900, 1, 1)
    tags = StudyTags(
        study_uid=identity.study_uid, frame_of_reference_uid=frame_of_reference_uid, start=start,
        study_id=identity.study_id, accession_number=identity.accession_number, description=identity.description,
        patient_name=identity.patient_name, patient_id=identity.patient_id, birth_date=identity.birth_date,
        sex=identity.sex, manufacturer="cell-therapy-viewer", model_name="export-dicom",
    )
    series = SeriesTags(number=ANATOMY_SERIES_NUMBER, modality="MR", description=description[:64],
                        image_type=("DERIVED", "SECONDARY", "OTHER"), series_uid=series_uid)
    try:
        files = write_exam_series(file_volume, folder, tags, series, naming=FileNaming(prefix="IM", digits=5))
    except ValueError as exc:
        raise ViewerError(f"{volume.source or volume.name}: the anatomy cannot be written as DICOM ({exc})") from None
    if identity.start is None:
        for path in files:  # unknown date: the study dates are written empty (type 2)
            _blank_dates(path)
    datasets = [dcmread(path, stop_before_pixels=True) for path in files]
    frames = [frame for path, ds in zip(files, datasets) for frame in frames_of_file(folder, path, ds)]
    return AnatomySeries(datasets, frames, files)


def _blank_dates(path: Path) -> None:
    ds = dcmread(path)
    for keyword in ("StudyDate", "StudyTime", "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime",
                    "ContentDate", "ContentTime"):
        if keyword in ds:
            setattr(ds, keyword, "")
    if "PatientAge" in ds:
        ds.PatientAge = ""
    ds.save_as(path, enforce_file_format=True)


def _in_file_space(volume: Volume) -> Volume:
    """The volume with its file's own voxel→world (undoing the study registration's placement)."""
    world_from_file = volume.meta.get("world_from_file")
    if world_from_file is None:
        return volume
    affine = np.linalg.inv(np.asarray(world_from_file, dtype=np.float64)) @ volume.voxel_to_world
    return Volume(volume.data, affine, volume.role, volume.units, volume.name, volume.source, dict(volume.meta))


def _sex(value: Any) -> str:
    text = str(value or "").strip().upper()
    return text if text in ("M", "F", "O") else ""


def _manifest_date(value: Any) -> date | None:
    """A manifest date (a TOML date, or the ISO text the manifest reader normalises it to)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _dicom_date(text: str) -> date | None:
    try:
        return datetime.strptime(text[:8], "%Y%m%d").date() if len(text) >= 8 else None
    except ValueError:
        return None


def _dicom_datetime(day: str, time: str) -> datetime | None:
    when = _dicom_date(day)
    if when is None:
        return None
    digits = "".join(c for c in time.split(".")[0] if c.isdigit())[:6].ljust(6, "0")
    try:
        clock = datetime.strptime(digits, "%H%M%S").time()
    except ValueError:
        clock = datetime.min.time()
    return datetime.combine(when, clock)
