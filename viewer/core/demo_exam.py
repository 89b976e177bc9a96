"""The demo study as a DICOM exam (``viewer demo --dicom``), so ``viewer import`` can be tried.

The written NIfTI study is read back (manifest and images) and written as a PACS export of a
3 T PET/MR: one DICOM study per timepoint dated day 0 + day, one series per image with the
tags a scanner writes (nucleus, ImageType, sequence timing, PET SUV tags), a localizer to be
skipped, shuffled file names without extension. Converting the study rather than simulating
anew keeps the exam and the manifest on the same values (to 16-bit storage). Region maps are
left out (DICOM SEG's job).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import generate_uid

from viewer import __version__ as viewer_version
from viewer.core.demo import (
    DEFAULT_SEED,
    DEMO_VERSION,
    PET_PATIENT,
    Grid,
    _at,
    _pet_tags,
    _visit_date,
    sample_linear,
)
from viewer.core.io.atomic import write_text_atomic
from viewer.core.io.dicom_write import FileNaming, MrTags, SeriesTags, StudyTags, write_exam_series
from viewer.core.io.study import MANIFEST_NAME, load_image
from viewer.core.volume import ROLES, Volume

@dataclass(frozen=True)
class ExamSeries:
    """How one image of a demo timepoint appears in its DICOM exam, labelled as a PET/MR would.

    Attributes:
        role: the manifest key of the image shown, or ``"localizer"`` (a 3-plane scout sampled
            from the anatomy).
        number: SeriesNumber.
        clock: SeriesTime, local "HH:MM:SS" (PET: the time of PET_PATIENT, which SUV decays to).
        description: SeriesDescription, with the units of derived maps.
        image_type: ImageType.
        axes: where the array axes (i = along a row, j = down the columns, k = slices) point, as
            nibabel axis codes: "LPS" is a scanner's axial stack, "PIL" its sagittal one.
        mr: MR acquisition tags; None for the PET.
        suffix: file name extension ("" like most PACS exports, ".dcm" for the PET).
    """

    role: str
    number: int
    clock: str
    description: str
    image_type: tuple[str, ...]
    axes: str
    mr: MrTags | None
    suffix: str = ""


EXAM_FOLDER = "exam"
EXAM_README = "README.txt"
#: Field strength of the (simulated) PET/MR, T.
EXAM_FIELD_T = 3.0
EXAM_STUDY_CLOCK = "09:44:00"
EXAM_STUDY_DESCRIPTION = "PET-MR BRAIN^Cell tracking"
#: The fictitious site and staff of the exams: plausible, invented, and present in every file
#: (the identifiers a de-identification must remove).
EXAM_SITE: dict[str, Any] = {
    "institution": "Musterstadt University Hospital",
    "institution_address": "Klinikweg 1, 12345 Musterstadt",
    "department": "Neuroradiology",
    "referring_physician": "Schneider^Hans^^Dr.",
    "operators": ("Weber^Anna", "Becker^Jonas"),
    "manufacturer": "SIMULATED (cell-therapy-viewer demo)",
    "model_name": "Demo PET-MR 3T",
    "station_name": "PETMR01",
    "software_versions": f"cell-therapy-viewer {viewer_version}",
}
#: Localizer planes: side (mm) and pixel size (mm) of each square plane, slice thickness (mm).
LOCALIZER_FOV_MM = 256.0
LOCALIZER_PIXEL_MM = 2.0
LOCALIZER_THICKNESS_MM = 5.0
#: (along a row, down the columns) of the localizer's sagittal, coronal and axial plane (RAS).
LOCALIZER_PLANES = (((0.0, -1.0, 0.0), (0.0, 0.0, -1.0)),
                    ((-1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
                    ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0)))


def _mr(**tags: Any) -> MrTags:
    """MrTags of the demo's 3 T PET/MR (times in ms, flip angles in degrees)."""
    return MrTags(field_strength_t=EXAM_FIELD_T, **tags)


#: The series of every visit, in SeriesNumber order. The times tell a plausible session: the
#: scout and anatomy, ¹⁹F, then PET (injected at 09:12) with diffusion and perfusion during
#: it, sodium, and the relaxation maps after contrast. Sequence parameters are typical of
#: each method (MPRAGE: TR 2300, TI 900, TE 2.98 ms — T1-weighted).
EXAM_SERIES: tuple[ExamSeries, ...] = (
    ExamSeries("localizer", 1, "09:45:10", "localizer", ("ORIGINAL", "PRIMARY", "LOCALIZER"), "LPS",
               _mr(nucleus="1H", scanning_sequence=("GR",), sequence_variant=("SP",), acquisition_type="2D",
                   sequence_name="*fl2d1", repetition_time_ms=8.6, echo_time_ms=4.0, flip_angle_deg=20.0,
                   echo_train_length=1)),
    ExamSeries("anatomical", 2, "09:46:30", "T1 MPRAGE sag", ("ORIGINAL", "PRIMARY", "M", "ND"), "PIL",
               _mr(nucleus="1H", scanning_sequence=("GR", "IR"), sequence_variant=("SK", "SP", "MP"),
                   scan_options=("IR",), acquisition_type="3D", sequence_name="*tfl3d1_16ns",
                   repetition_time_ms=2300.0, echo_time_ms=2.98, inversion_time_ms=900.0, flip_angle_deg=9.0,
                   echo_train_length=1)),
    ExamSeries("fluorine", 3, "09:55:00", "19F CSI hotspot", ("ORIGINAL", "PRIMARY", "M", "ND"), "LPS",
               _mr(nucleus="19F", scanning_sequence=("RM",), sequence_variant=("NONE",), acquisition_type="3D",
                   sequence_name="*csi3d_19F", repetition_time_ms=100.0, echo_time_ms=1.3, flip_angle_deg=30.0,
                   echo_train_length=1)),
    ExamSeries("pet", 4, PET_PATIENT["series"], "FDG PET AC brain (Bq/mL)", ("ORIGINAL", "PRIMARY"), "LPS",
               None, ".dcm"),
    ExamSeries("adc", 5, "10:06:00", "DWI ADC (1e-6 mm2/s)", ("DERIVED", "PRIMARY", "DIFFUSION", "ADC"), "LPS",
               _mr(nucleus="1H", scanning_sequence=("EP",), sequence_variant=("SK", "SP"), scan_options=("PFP", "FS"),
                   acquisition_type="2D", sequence_name="*ep_b0_1000", repetition_time_ms=5200.0, echo_time_ms=89.0,
                   flip_angle_deg=90.0, echo_train_length=64)),
    ExamSeries("tmax", 6, "10:12:00", "Tmax", ("DERIVED", "PRIMARY", "PERFUSION", "TMAX"), "LPS",
               _mr(nucleus="1H", scanning_sequence=("EP",), sequence_variant=("SK",), acquisition_type="2D",
                   sequence_name="*epfid2d1_64", repetition_time_ms=1500.0, echo_time_ms=30.0, flip_angle_deg=60.0,
                   echo_train_length=64)),
    ExamSeries("sodium", 7, "10:18:00", "23Na TSC (mM)", ("DERIVED", "PRIMARY", "TSC"), "LPS",
               _mr(nucleus="23Na", scanning_sequence=("RM",), sequence_variant=("NONE",), acquisition_type="3D",
                   sequence_name="*ute3d_23Na", repetition_time_ms=100.0, echo_time_ms=0.2, flip_angle_deg=90.0,
                   echo_train_length=1)),
    ExamSeries("spio", 8, "10:30:00", "dR2* SPIO map (1/s)", ("DERIVED", "PRIMARY", "DELTA_R2STAR"), "LPS",
               _mr(nucleus="1H", scanning_sequence=("GR",), sequence_variant=("SP",), acquisition_type="3D",
                   sequence_name="*fl3d_me8", repetition_time_ms=40.0, echo_time_ms=20.0, flip_angle_deg=15.0,
                   echo_train_length=8)),
    ExamSeries("gd", 9, "10:40:00", "dR1 Gd map (1/s)", ("DERIVED", "PRIMARY", "DELTA_R1"), "LPS",
               _mr(nucleus="1H", scanning_sequence=("GR",), sequence_variant=("SS", "SP"), acquisition_type="3D",
                   sequence_name="*fl3d_vfa", repetition_time_ms=15.0, echo_time_ms=2.0, flip_angle_deg=15.0,
                   echo_train_length=1)),
)


def write_demo_exam(study_root: Path, exam_folder: Path, *, seed: int = DEFAULT_SEED) -> list[Path]:
    """Write the demo study's images as a DICOM exam, one study per timepoint, and a README.

    ``study_root`` holds the written NIfTI study; its manifest and images are read back, so
    the exam shows exactly what the manifest does (values through each slice's 16-bit
    rescale). Layout, as a PACS export: ``exam_folder/<StudyID>/<SeriesNumber>/IM000123``
    (files numbered through the study, InstanceNumbers shuffled; the PET's files end in
    ``.dcm``). Region label maps are not written (they belong in DICOM SEG). UIDs derive from
    the seed and the timepoint, so the same seed writes the same exam.

    Returns:
        The study folders, one per timepoint.
    """
    manifest = tomllib.loads((study_root / MANIFEST_NAME).read_text(encoding="utf-8"))
    info = manifest["study"]
    day0 = str(info["day0"])
    visits: list[tuple[str, date, str]] = []
    for index, entry in enumerate(manifest["timepoint"]):
        visit = _visit_date(day0, entry.get("day", 0))
        tags = _exam_study_tags(info, visit, entry["label"], index, seed)
        images = {role: load_image(study_root / entry[role], role) for role in ROLES
                  if role in entry and role != "regions"}
        _write_exam_study(exam_folder / tags.study_id, tags, images, seed + 100 * index)
        visits.append((entry["label"], visit, tags.study_id))
    write_text_atomic(exam_folder / EXAM_README, _exam_readme(info, day0, visits))
    return [exam_folder / folder for _, _, folder in visits]


def _exam_uid(seed: int, label: str, what: str) -> str:
    """A reproducible UID for one thing (study, frame of reference, series) of one visit."""
    return generate_uid(entropy_srcs=["cell-therapy-viewer demo exam", DEMO_VERSION, str(seed), label, what])


def _exam_study_tags(info: dict[str, Any], visit: date, label: str, index: int, seed: int) -> StudyTags:
    """Patient (from the manifest), visit and site tags of one timepoint's study."""
    return StudyTags(
        study_uid=_exam_uid(seed, label, "study"), frame_of_reference_uid=_exam_uid(seed, label, "frame of reference"),
        start=_at(visit, EXAM_STUDY_CLOCK), study_id=f"PETMR{index + 1:04d}", accession_number=f"RAD{26001234 + index}",
        description=EXAM_STUDY_DESCRIPTION, patient_name=str(info["patient"]), patient_id=str(info["patient_id"]),
        birth_date=date.fromisoformat(str(info["birth_date"])), sex=str(info["sex"]),
        weight_kg=PET_PATIENT["weight_kg"], height_m=PET_PATIENT["height_m"], **EXAM_SITE)


def _write_exam_study(folder: Path, study: StudyTags, images: dict[str, Volume], seed: int) -> None:
    """Every series of EXAM_SERIES whose image the timepoint has, files numbered through the study."""
    next_file = 1
    for design in EXAM_SERIES:
        if design.role != "localizer" and design.role not in images:
            continue
        stacks = (_localizer_planes(images["anatomical"]) if design.role == "localizer"
                  else [_scanner_oriented(images[design.role], design.axes)])
        pet = _pet_tags(study.start.date()) if design.mr is None else None
        start = None if pet is not None else _at(study.start.date(), design.clock)
        series = SeriesTags(number=design.number, modality="MR" if pet is None else "PT",
                            description=design.description, protocol_name=design.description,
                            image_type=design.image_type, start=start, body_part="HEAD",
                            series_uid=_exam_uid(seed, study.study_uid, f"series {design.number}"), mr=design.mr,
                            pet=pet)
        naming = FileNaming(prefix="IM", digits=6, suffix=design.suffix, first=next_file)
        files = write_exam_series(stacks, folder / str(design.number), study, series, naming=naming,
                                  shuffle_seed=seed + design.number)
        next_file += len(files)


def _scanner_oriented(volume: Volume, axes: str) -> Volume:
    """The same image with its array axes permuted and flipped to point toward ``axes``.

    Scanners store axial slices with rows running to the patient's left and columns to the
    back ("LPS"); the demo's NIfTI grids run right and forward. World positions and values
    are unchanged (the affine follows), obliquity is kept.
    """
    import nibabel.orientations as orientations

    data = np.asarray(volume.data)
    transform = orientations.ornt_transform(orientations.io_orientation(volume.voxel_to_world),
                                            orientations.axcodes2ornt(tuple(axes)))
    affine = volume.voxel_to_world @ orientations.inv_ornt_aff(transform, data.shape)
    return Volume.from_array(orientations.apply_orientation(data, transform), affine, role=volume.role)


def _localizer_planes(anatomy: Volume) -> list[Volume]:
    """A 3-plane scout: sagittal, coronal and axial one-slice planes through the anatomy's centre.

    Each plane is LOCALIZER_FOV_MM square with LOCALIZER_PIXEL_MM pixels, sampled trilinearly
    from the anatomy; its slice axis is LOCALIZER_THICKNESS_MM long (the slice thickness).
    """
    shape = np.array(anatomy.shape, dtype=np.float64)
    centre = anatomy.voxel_to_world[:3, :3] @ ((shape - 1) / 2) + anatomy.voxel_to_world[:3, 3]
    n = int(round(LOCALIZER_FOV_MM / LOCALIZER_PIXEL_MM))
    values = np.asarray(anatomy.data, dtype=np.float32)
    planes = []
    for row, column in LOCALIZER_PLANES:
        i_axis, j_axis = np.array(row), np.array(column)
        affine = np.eye(4)
        affine[:3, 0] = i_axis * LOCALIZER_PIXEL_MM
        affine[:3, 1] = j_axis * LOCALIZER_PIXEL_MM
        affine[:3, 2] = np.cross(i_axis, j_axis) * LOCALIZER_THICKNESS_MM
        affine[:3, 3] = centre - (n - 1) / 2 * LOCALIZER_PIXEL_MM * (i_axis + j_axis)
        grid = Grid((n, n, 1), affine)
        planes.append(Volume.from_array(sample_linear(values, anatomy.voxel_to_world, grid), affine))
    return planes


def _exam_readme(info: dict[str, Any], day0: str, visits: list[tuple[str, date, str]]) -> str:
    """One paragraph: what the exam is, that it is simulated, how to import it."""
    listed = "; ".join(f"{label}: {visit.isoformat()}, folder {folder}" for label, visit, folder in visits)
    series = ", ".join(design.description for design in EXAM_SERIES)
    return (
        f"This folder is a SIMULATED DICOM exam of the cell-therapy viewer's demonstration study "
        f"{info['id']}, written by `viewer demo --dicom`: one DICOM study per timepoint ({listed}) of the "
        f"fictitious patient {info['patient']} (ID {info['patient_id']}), laid out like a PACS export "
        "(<StudyID>/<SeriesNumber>/IM000123; file names and InstanceNumbers are not in slice order), with the "
        f"series {series}. Only the anatomy is real (the MNI ICBM152 2009a T1 template); every other image, "
        "the patient, the hospital and its staff are invented: this is not clinical data and not for clinical "
        "decisions. The same images, with the region maps and truth.json, are the NIfTI study in the folder "
        f"above. To try the importer, run `viewer import exam -o my-study --day0 {day0}` in that folder: it "
        "groups the series, proposes a role for each, skips the localizers, numbers the timepoints' days from "
        "their StudyDate (day 0 = the transplantation; without --day0 the first visit is day 0) and writes "
        "my-study/study.toml.\n"
    )


__all__ = ["EXAM_FOLDER", "EXAM_SERIES", "write_demo_exam"]
