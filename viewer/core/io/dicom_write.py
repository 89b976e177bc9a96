"""Writing a :class:`Volume` as a DICOM series (one file per slice).

Used by tests and by the demo-study generator (its PET, and the DICOM exam of
``viewer demo --dicom``). The output is deliberately *awkward* in the ways real series are, so
the reader is exercised: every slice has its own RescaleSlope (chosen to use the 16-bit range
of that slice), and with ``shuffle_seed`` the file names and InstanceNumbers are scrambled so
that only ImagePositionPatient gives the slice order.

Two entry points:
- :func:`write_dicom_series` — one volume, minimal tags (a new study per call); what the
  reader tests need.
- :func:`write_exam_series` — one series of a realistic exam: :class:`StudyTags` (patient,
  study, equipment, frame of reference; shared by every series of the study) and
  :class:`SeriesTags` (number, description, image type, times, :class:`MrTags` or
  :class:`PetTags`), one or several stacks (a 3-plane localizer is three one-slice stacks),
  and a :class:`FileNaming`.

Why these rules:
- The volume's affine is RAS; DICOM patient space is LPS, so x and y are negated. The affine's
  first column (i step) is the row direction × column spacing, the second (j step) the column
  direction × row spacing: ``PixelSpacing = [row spacing, column spacing]`` and the stored
  pixel array is ``data[:, :, k].T`` (rows × columns).
- The in-plane axes must be perpendicular (DICOM cannot store a sheared slice); the slice step
  may be oblique to the slice normal (gantry tilt) because each slice stores its own origin.
- Stored values are 16-bit integers, uint16 for non-negative volumes and int16 otherwise, with
  RescaleIntercept 0 (required for PET). Quantisation error per slice is at most half the
  slice's RescaleSlope, i.e. max|slice| / (2·(2¹⁶−2)) for uint16, max|slice| / (2·(2¹⁵−2)) for
  int16.
- PET: the volume holds SUV. Using the :class:`PetTags` the same SUV factor the reader will
  compute (:func:`viewer.core.io.pet_suv.suv_scale_factor`) converts SUV back to the stored
  unit (Bq/mL for BQML), so a round trip gives the same SUV.
- SOPInstanceUIDs are derived from the SeriesInstanceUID and the slice's position in the
  series, so a series written with a given UID is reproducible (the demo exam is deterministic).
- Tags the IODs require (type 1 and 2, PS3.3 MR Image / PET Image) are always written, empty
  where a value is unknown, so exams pass dicom3tools' ``dciodvfy`` without errors.
- A folder is written atomically: into a temporary sibling folder, then renamed into place.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    PositronEmissionTomographyImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from viewer.core.errors import file_error
from viewer.core.io.atomic import write_folder_atomically
from viewer.core.io.pet_suv import (
    PHILIPS_PET_CREATOR,
    PHILIPS_SUV_SCALE_OFFSET,
    suv_scale_factor,
)
from viewer.core.volume import Volume

#: Half-life of fluorine-18 (s), the default radionuclide.
F18_HALF_LIFE_S = 6586.2
#: Tolerance (|cos|) for the volume's i and j axes to count as perpendicular.
PERPENDICULAR_TOLERANCE = 1e-6
#: Gyromagnetic ratio / 2π (MHz/T) of the nuclei MR scanners image, for ImagingFrequency.
LARMOR_MHZ_PER_T = {"1H": 42.577478, "19F": 40.078, "23Na": 11.262, "31P": 17.235, "13C": 10.7084}

_SOP_CLASSES = {"MR": MRImageStorage, "CT": CTImageStorage, "PT": PositronEmissionTomographyImageStorage}
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_UINT16_MAX_USED = 65534  # one count of head-room so a rounded slope never overflows
_INT16_MAX_USED = 32766
#: SNOMED CT codes of the NM/PET Patient Orientation module (CID 19, 21) and of F-18 (CID 4020).
_SCT_RECUMBENT = ("102538003", "recumbent")
_SCT_SUPINE = ("40199007", "supine")
_SCT_HEADFIRST = ("102540008", "headfirst")
_SCT_F18 = ("77004003", "^18^Fluorine")


@dataclass(frozen=True, kw_only=True)
class PetTags:
    """What a PET series needs for SUV (QIBA): patient, dose and timing.

    Attributes:
        weight_kg: PatientWeight (kg).
        dose_bq: RadionuclideTotalDose (Bq) at injection.
        half_life_s: RadionuclideHalfLife (s); F-18 by default.
        injection: RadiopharmaceuticalStartDateTime (also written as StartTime).
        series: SeriesDate/SeriesTime (scan start).
        acquisition: AcquisitionDate/Time of every slice (defaults to ``series``).
        units: BQML, GML or CNTS.
        decay_correction: START, ADMIN or NONE.
        corrected_image: CorrectedImage values (must include ATTN and DECY for SUV).
        sex: PatientSex "M"/"F" (for SUL), optional.
        height_m: PatientSize (m) (for SUL), optional.
        philips_suv_factor: (7053,1000) for CNTS series.
        write_start_datetime: also write RadiopharmaceuticalStartDateTime (else only the time).
        radiopharmaceutical: name of the tracer.
        frame_duration_s: ActualFrameDuration (s) of the static frame; with the half-life it
            gives FrameReferenceTime and DecayFactor.
    """

    weight_kg: float
    dose_bq: float
    half_life_s: float = F18_HALF_LIFE_S
    injection: datetime
    series: datetime
    acquisition: datetime | None = None
    units: str = "BQML"
    decay_correction: str = "START"
    corrected_image: tuple[str, ...] = ("DECY", "ATTN", "SCAT", "DTIM", "RAN", "NORM")
    sex: str | None = None
    height_m: float | None = None
    philips_suv_factor: float | None = None
    write_start_datetime: bool = True
    radiopharmaceutical: str = "Fluorodeoxyglucose"
    frame_duration_s: float = 600.0


@dataclass(frozen=True, kw_only=True)
class StudyTags:
    """Patient, study and equipment tags shared by every series of one study (one visit).

    Dates and times are the scanner's local time, as DICOM stores them. Names are DICOM person
    names ("Family^Given^Middle^Prefix^Suffix"). Empty strings are written as empty type-2
    values (present, unknown), which is what scanners do.

    Attributes:
        study_uid: StudyInstanceUID.
        frame_of_reference_uid: FrameOfReferenceUID of every series (one patient position).
        start: StudyDate/StudyTime; also the default series time.
        study_id, accession_number, description: StudyID, AccessionNumber, StudyDescription.
        patient_name, patient_id: PatientName (PN), PatientID.
        birth_date: PatientBirthDate; with ``start`` it gives PatientAge.
        sex: PatientSex "M", "F", "O" or "" (unknown).
        weight_kg, height_m: PatientWeight (kg), PatientSize (m), when known.
        referring_physician: ReferringPhysicianName (PN).
        operators: OperatorsName (PN, one per operator).
        institution, institution_address, department: InstitutionName, InstitutionAddress,
            InstitutionalDepartmentName.
        manufacturer, model_name, station_name, software_versions: the General Equipment module.
    """

    study_uid: str
    frame_of_reference_uid: str
    start: datetime
    study_id: str = ""
    accession_number: str = ""
    description: str = ""
    patient_name: str = "Anon"
    patient_id: str = "0"
    birth_date: date | None = None
    sex: str = ""
    weight_kg: float | None = None
    height_m: float | None = None
    referring_physician: str = ""
    operators: tuple[str, ...] = ()
    institution: str = ""
    institution_address: str = ""
    department: str = ""
    manufacturer: str = ""
    model_name: str = ""
    station_name: str = ""
    software_versions: str = ""


@dataclass(frozen=True, kw_only=True)
class MrTags:
    """MR acquisition tags (PS3.3 MR Image module) of one series.

    Attributes:
        nucleus: ImagedNucleus ("1H", "19F", "23Na", ...); "" leaves it out. With
            ``field_strength_t`` it gives ImagingFrequency (MHz) from :data:`LARMOR_MHZ_PER_T`.
        field_strength_t: MagneticFieldStrength (T), or None.
        scanning_sequence: ScanningSequence (SE, IR, GR, EP, RM); "IR" requires an inversion time.
        sequence_variant: SequenceVariant (SK, MTC, SS, TRSS, SP, MP, OSP, NONE).
        scan_options: ScanOptions (IR, FS, PFP, ...).
        acquisition_type: MRAcquisitionType "2D" or "3D".
        sequence_name: SequenceName (vendor's short name).
        repetition_time_ms, echo_time_ms, inversion_time_ms: TR, TE, TI (ms); None writes an
            empty value (allowed for derived maps).
        flip_angle_deg: FlipAngle (degrees).
        echo_train_length: EchoTrainLength.
    """

    nucleus: str = ""
    field_strength_t: float | None = None
    scanning_sequence: tuple[str, ...] = ("RM",)
    sequence_variant: tuple[str, ...] = ("NONE",)
    scan_options: tuple[str, ...] = ()
    acquisition_type: str = ""
    sequence_name: str = ""
    repetition_time_ms: float | None = None
    echo_time_ms: float | None = None
    inversion_time_ms: float | None = None
    flip_angle_deg: float | None = None
    echo_train_length: int | None = None


@dataclass(frozen=True, kw_only=True)
class SeriesTags:
    """Tags of one series of a study.

    Attributes:
        number: SeriesNumber (distinct per series of a study).
        modality: Modality; "PT" whenever ``pet`` is given.
        description, protocol_name: SeriesDescription, ProtocolName.
        image_type: ImageType values, e.g. ORIGINAL\\PRIMARY\\M\\ND or DERIVED\\PRIMARY\\DIFFUSION\\ADC.
        start: SeriesDate/Time, AcquisitionDate/Time and ContentDate/Time (default: the study's
            start). For PET the :class:`PetTags` times are written (they define the SUV decay);
            a different ``start`` is refused.
        body_part: BodyPartExamined ("HEAD", ...; an unpaired part), or "" when unknown (then an
            empty Laterality is written, as the General Series module requires).
        patient_position: PatientPosition (HFS = head first, supine); PET writes the NM/PET
            orientation codes (recumbent, supine, head first) instead.
        series_uid: SeriesInstanceUID (generated if None).
        mr: MR acquisition tags; modality MR without them writes research-mode placeholders.
        pet: PET tags; required for modality "PT".
        per_slice_rescale: one RescaleSlope per slice (else one for the whole series).
    """

    number: int = 1
    modality: str = "MR"
    description: str = ""
    protocol_name: str = ""
    image_type: tuple[str, ...] = ("DERIVED", "PRIMARY")
    start: datetime | None = None
    body_part: str = ""
    patient_position: str = "HFS"
    series_uid: str | None = None
    mr: MrTags | None = None
    pet: PetTags | None = None
    per_slice_rescale: bool = True


@dataclass(frozen=True, kw_only=True)
class FileNaming:
    """File names of a series: ``prefix`` + number (``digits`` wide, from ``first``) + ``suffix``.

    The default gives ``IM00001.dcm``; PACS exports typically write ``IM000123`` (no extension,
    numbered through the whole study): ``FileNaming(digits=6, suffix="", first=123)``.
    """

    prefix: str = "IM"
    digits: int = 5
    suffix: str = ".dcm"
    first: int = 1

    def name(self, number: int) -> str:
        """The name of the ``number``-th file (1-based) of the series."""
        return f"{self.prefix}{self.first + number - 1:0{self.digits}d}{self.suffix}"


@dataclass(frozen=True)
class _SliceGeometry:
    """LPS geometry shared by all slices of one stack."""

    row_cosine: np.ndarray
    col_cosine: np.ndarray
    row_spacing_mm: float
    col_spacing_mm: float
    step_lps: np.ndarray
    origin_lps: np.ndarray
    thickness_mm: float


@dataclass(frozen=True)
class _Stack:
    """One volume of a series: its values (float64) and geometry."""

    data: np.ndarray
    geometry: _SliceGeometry


def write_dicom_series(
    volume: Volume,
    folder: str | Path,
    *,
    modality: str = "MR",
    series_description: str = "",
    pet: PetTags | None = None,
    patient_name: str = "Anon",
    patient_id: str = "0",
    study_date: str = "20260101",
    shuffle_seed: int | None = None,
    per_slice_rescale: bool = True,
    series_uid: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``volume`` as one DICOM file per slice into ``folder`` (atomically), in a new study.

    Args:
        volume: the image; with ``pet`` its values are SUV.
        folder: target folder; refused if it exists and is not empty, unless ``overwrite``.
        modality: DICOM Modality ("MR", "CT", ...); "PT" whenever ``pet`` is given.
        pet: PET tags; required for modality "PT".
        study_date: StudyDate (YYYYMMDD); the study time is 12:00.
        shuffle_seed: scramble file names and InstanceNumbers (reproducibly).
        per_slice_rescale: one RescaleSlope per slice (else one for the whole series).
        series_uid: SeriesInstanceUID to use (generated if None).

    Returns:
        The written files, in slice order (k = 0, 1, ...).
    """
    study = StudyTags(study_uid=generate_uid(), frame_of_reference_uid=generate_uid(),
                      start=datetime.strptime(study_date + "120000", "%Y%m%d%H%M%S"),
                      patient_name=patient_name, patient_id=patient_id)
    series = SeriesTags(modality=modality, description=series_description, pet=pet,
                        per_slice_rescale=per_slice_rescale, series_uid=series_uid)
    return write_exam_series(volume, folder, study, series, shuffle_seed=shuffle_seed, overwrite=overwrite)


def write_exam_series(
    stacks: Volume | Sequence[Volume],
    folder: str | Path,
    study: StudyTags,
    series: SeriesTags,
    *,
    naming: FileNaming = FileNaming(),
    shuffle_seed: int | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write one series of a study into ``folder`` (atomically), one file per slice.

    Args:
        stacks: the image, or several (e.g. the three one-slice planes of a localizer), each
            with its own geometry; slices are numbered through the stacks in order.
        folder: target folder; refused if it exists and is not empty, unless ``overwrite``.
        study: tags shared with the other series of the study.
        series: this series' tags; with ``series.pet`` the values are SUV.
        naming: file names.
        shuffle_seed: scramble file names and InstanceNumbers (reproducibly).

    Returns:
        The written files, in slice order (stack by stack, k = 0, 1, ...).

    Raises:
        ValueError: inconsistent tags (PT without PetTags, PET times or patient facts that
            contradict the study/series tags, IR without an inversion time).
        ViewerError: the folder cannot be written, or a volume cannot be stored as DICOM.
    """
    folder = Path(folder)
    volumes = [stacks] if isinstance(stacks, Volume) else list(stacks)
    if not volumes:
        raise ValueError("a series needs at least one volume")
    _check_tags(study, series)
    parts = [_stack(folder, volume) for volume in volumes]
    _check_target(folder, overwrite)

    slices = [(part, k) for part in parts for k in range(part.data.shape[2])]
    file_numbers, instance_numbers = _numbering(len(slices), shuffle_seed)
    names = [naming.name(number) for number in file_numbers]
    series_uid = series.series_uid or generate_uid()
    common = _common_dataset(study, series, series_uid, len(slices))
    pet = series.pet
    modality = str(common.Modality)
    # PET stays int16 (QIBA: RescaleIntercept 0 and negative values such as −877 must survive)
    unsigned = modality != "PT" and min(float(part.data.min()) for part in parts) >= 0.0

    def write_all(tmp: Path) -> None:
        slope = None if series.per_slice_rescale else _series_slope(folder, parts, common, pet, unsigned)
        for index, (part, k) in enumerate(slices):
            sop_uid = generate_uid(entropy_srcs=[series_uid, str(index)])
            ds = _slice_dataset(common, part.geometry, k, instance_numbers[index], sop_uid)
            if pet is not None:
                ds.ImageIndex = index + 1
            values = part.data[:, :, k].T  # rows × columns
            if pet is not None:
                values = values / suv_scale_factor(ds, folder)
            _set_pixels(ds, values, unsigned, slope)
            _save(ds, tmp / names[index])

    write_folder_atomically(folder, write_all, lambda target: _check_target(target, overwrite))
    return [folder / name for name in names]


def _check_tags(study: StudyTags, series: SeriesTags) -> None:
    """Refuse tags that contradict each other (one fact, one value)."""
    pet = series.pet
    if series.modality == "PT" and pet is None:
        raise ValueError("a PT series needs PetTags")
    if pet is not None:
        if series.start is not None and series.start != pet.series:
            raise ValueError("the PET series time is PetTags.series; SeriesTags.start differs")
        for what, study_value, pet_value in (("sex", study.sex or None, pet.sex),
                                             ("weight", study.weight_kg, pet.weight_kg),
                                             ("height", study.height_m, pet.height_m)):
            if study_value is not None and pet_value is not None and study_value != pet_value:
                raise ValueError(f"the patient's {what} differs between StudyTags and PetTags")
    mr = series.mr
    if mr is not None and "IR" in mr.scanning_sequence and mr.inversion_time_ms is None:
        raise ValueError("an inversion-recovery series (ScanningSequence IR) needs an inversion time")


def _stack(folder: Path, volume: Volume) -> _Stack:
    """The volume's finite values (float64) and slice geometry."""
    data = np.asarray(volume.data, dtype=np.float64)
    if not np.all(np.isfinite(data)):
        raise file_error(folder, "cannot write DICOM: the volume has NaN or infinite values")
    return _Stack(data, _slice_geometry(folder, volume.voxel_to_world))


# -- geometry -----------------------------------------------------------------------------------
def _slice_geometry(folder: Path, voxel_to_world: np.ndarray) -> _SliceGeometry:
    """Direction cosines, spacings and step in LPS from the RAS affine."""
    lps = _RAS_TO_LPS @ np.asarray(voxel_to_world, dtype=np.float64)
    i_step, j_step, k_step = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    col_spacing, row_spacing = float(np.linalg.norm(i_step)), float(np.linalg.norm(j_step))
    if min(col_spacing, row_spacing) <= 0:
        raise file_error(folder, "cannot write DICOM: the affine has a zero-length in-plane axis")
    row_cos, col_cos = i_step / col_spacing, j_step / row_spacing
    if abs(float(row_cos @ col_cos)) > PERPENDICULAR_TOLERANCE:
        raise file_error(folder, "cannot write DICOM: the in-plane voxel axes are not perpendicular")
    thickness = abs(float(np.cross(row_cos, col_cos) @ k_step))
    if thickness <= 1e-9:
        raise file_error(folder, "cannot write DICOM: the slice axis lies in the slice plane")
    return _SliceGeometry(row_cos, col_cos, row_spacing, col_spacing, k_step, lps[:3, 3], thickness)


def _numbering(n: int, seed: int | None) -> tuple[list[int], list[int]]:
    """(file number, InstanceNumber) per slice: in order, or two different scramblings."""
    if seed is None or n < 2:
        return list(range(1, n + 1)), list(range(1, n + 1))
    rng = np.random.default_rng(seed)
    identity = np.arange(n)

    def scrambled(avoid: list[np.ndarray]) -> list[int]:
        while True:
            perm = rng.permutation(n)
            if not any(np.array_equal(perm, other) for other in avoid):
                return [int(p) + 1 for p in perm]

    files = scrambled([identity])
    instances = scrambled([identity, np.array(files) - 1] if n > 2 else [identity])
    return files, instances


# -- datasets -----------------------------------------------------------------------------------
def _common_dataset(study: StudyTags, series: SeriesTags, series_uid: str, n_slices: int) -> Dataset:
    """Tags shared by every slice of the series."""
    modality = "PT" if series.pet is not None else series.modality
    start = series.start or study.start
    ds = Dataset()
    ds.SOPClassUID = _SOP_CLASSES.get(modality, SecondaryCaptureImageStorage)
    _add_patient_tags(ds, study)
    _add_study_tags(ds, study)
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.Modality = modality
    ds.SeriesDescription = series.description
    if series.protocol_name:
        ds.ProtocolName = series.protocol_name
    ds.SeriesNumber = series.number
    if modality != "PT":  # PET states the position in PatientOrientationCodeSequence instead
        ds.PatientPosition = series.patient_position
    if series.body_part:
        ds.BodyPartExamined = series.body_part
    else:  # type 2C: required (empty: unknown) when the body part, hence whether it is paired, is unknown
        ds.Laterality = ""
    ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = start.strftime("%Y%m%d")
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = start.strftime("%H%M%S")
    ds.AcquisitionNumber = 1
    _add_equipment_tags(ds, study)
    ds.ImageType = list(series.image_type)
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    if modality == "MR":
        _add_mr_tags(ds, series.mr or MrTags())
    if series.pet is not None:
        _add_pet_tags(ds, series.pet, n_slices)
    if _needs_utf8(study, series):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _add_patient_tags(ds: Dataset, study: StudyTags) -> None:
    """Patient and Patient Study modules (PatientAge in years at the study date)."""
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.birth_date.strftime("%Y%m%d") if study.birth_date else ""
    ds.PatientSex = study.sex
    if study.birth_date is not None:
        ds.PatientAge = f"{_age_years(study.birth_date, study.start.date()):03d}Y"
    if study.weight_kg is not None:
        ds.PatientWeight = _ds_text(study.weight_kg)
    if study.height_m is not None:
        ds.PatientSize = _ds_text(study.height_m)


def _age_years(birth: date, on: date) -> int:
    """Completed years of age on a day."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _add_study_tags(ds: Dataset, study: StudyTags) -> None:
    """General Study module."""
    ds.StudyInstanceUID = study.study_uid
    ds.StudyDate = study.start.strftime("%Y%m%d")
    ds.StudyTime = study.start.strftime("%H%M%S")
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number
    ds.ReferringPhysicianName = study.referring_physician
    if study.description:
        ds.StudyDescription = study.description
    if study.operators:
        ds.OperatorsName = list(study.operators)


def _add_equipment_tags(ds: Dataset, study: StudyTags) -> None:
    """General Equipment module (Manufacturer is type 2: always present)."""
    ds.Manufacturer = study.manufacturer
    for keyword, value in (("InstitutionName", study.institution),
                           ("InstitutionAddress", study.institution_address),
                           ("InstitutionalDepartmentName", study.department),
                           ("ManufacturerModelName", study.model_name),
                           ("StationName", study.station_name),
                           ("SoftwareVersions", study.software_versions)):
        if value:
            setattr(ds, keyword, value)


def _add_mr_tags(ds: Dataset, mr: MrTags) -> None:
    """MR Image module: sequence (type 1), timing (type 2, empty when unknown), nucleus."""
    ds.ScanningSequence = list(mr.scanning_sequence)
    ds.SequenceVariant = list(mr.sequence_variant)
    ds.ScanOptions = list(mr.scan_options) if mr.scan_options else ""
    ds.MRAcquisitionType = mr.acquisition_type
    if mr.sequence_name:
        ds.SequenceName = mr.sequence_name
    ds.RepetitionTime = _ds_or_empty(mr.repetition_time_ms)
    ds.EchoTime = _ds_or_empty(mr.echo_time_ms)
    if mr.inversion_time_ms is not None:
        ds.InversionTime = _ds_text(mr.inversion_time_ms)
    ds.EchoTrainLength = mr.echo_train_length  # None: an empty type-2 value
    if mr.flip_angle_deg is not None:
        ds.FlipAngle = _ds_text(mr.flip_angle_deg)
    if mr.nucleus:
        ds.ImagedNucleus = mr.nucleus
    if mr.field_strength_t is not None:
        ds.MagneticFieldStrength = _ds_text(mr.field_strength_t)
        if mr.nucleus in LARMOR_MHZ_PER_T:
            ds.ImagingFrequency = _ds_text(LARMOR_MHZ_PER_T[mr.nucleus] * mr.field_strength_t)


def _add_pet_tags(ds: Dataset, pet: PetTags, n_slices: int) -> None:
    """PET Series / Isotope / Image, NM/PET Patient Orientation and the tags used for SUV."""
    acquisition = pet.acquisition or pet.series
    ds.SeriesDate, ds.SeriesTime = pet.series.strftime("%Y%m%d"), pet.series.strftime("%H%M%S")
    ds.AcquisitionDate = ds.ContentDate = acquisition.strftime("%Y%m%d")
    ds.AcquisitionTime = ds.ContentTime = acquisition.strftime("%H%M%S")
    ds.PatientWeight = _ds_text(pet.weight_kg)
    if pet.height_m is not None:
        ds.PatientSize = _ds_text(pet.height_m)
    if pet.sex is not None:
        ds.PatientSex = pet.sex
    ds.Units = pet.units
    ds.CountsSource = "EMISSION"
    ds.SeriesType = ["STATIC", "IMAGE"]
    ds.NumberOfSlices = n_slices
    ds.CollimatorType = "NONE"
    ds.DecayCorrection = pet.decay_correction
    ds.CorrectedImage = list(pet.corrected_image)
    item = Dataset()
    item.Radiopharmaceutical = pet.radiopharmaceutical
    item.RadiopharmaceuticalStartTime = pet.injection.strftime("%H%M%S")
    if pet.write_start_datetime:
        item.RadiopharmaceuticalStartDateTime = pet.injection.strftime("%Y%m%d%H%M%S")
    item.RadionuclideTotalDose = _ds_text(pet.dose_bq)
    item.RadionuclideHalfLife = _ds_text(pet.half_life_s)
    f18 = abs(pet.half_life_s - F18_HALF_LIFE_S) < 1.0
    item.RadionuclideCodeSequence = DicomSequence([_code(*_SCT_F18)] if f18 else [])
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([item])
    orientation = _code(*_SCT_RECUMBENT)
    orientation.PatientOrientationModifierCodeSequence = DicomSequence([_code(*_SCT_SUPINE)])
    ds.PatientOrientationCodeSequence = DicomSequence([orientation])
    ds.PatientGantryRelationshipCodeSequence = DicomSequence([_code(*_SCT_HEADFIRST)])
    _add_pet_frame_timing(ds, pet, (acquisition - pet.series).total_seconds())
    if pet.philips_suv_factor is not None:
        block = ds.private_block(0x7053, PHILIPS_PET_CREATOR, create=True)
        block.add_new(PHILIPS_SUV_SCALE_OFFSET, "DS", _ds_text(pet.philips_suv_factor))


def _add_pet_frame_timing(ds: Dataset, pet: PetTags, offset_s: float) -> None:
    """ActualFrameDuration (ms), FrameReferenceTime (ms) and DecayFactor of the static frame.

    The reference time is when the activity equals its mean over the frame: for a frame of
    length T starting ``offset_s`` after the series time, t_ref = offset + ln(λT / (1 − e^(−λT))) / λ
    with λ = ln 2 / half-life. DecayFactor undoes the decay from the decay-correction time
    (series start for START, injection for ADMIN) to t_ref.
    """
    duration = pet.frame_duration_s
    rate = math.log(2.0) / pet.half_life_s
    mean_offset = math.log(rate * duration / -math.expm1(-rate * duration)) / rate if duration > 0 else 0.0
    reference_s = offset_s + mean_offset
    ds.ActualFrameDuration = int(round(duration * 1000.0))
    ds.FrameReferenceTime = _ds_text(reference_s * 1000.0)
    if pet.decay_correction == "START":
        ds.DecayFactor = _ds_text(math.exp(rate * reference_s))
    elif pet.decay_correction == "ADMIN":
        uptake_s = (pet.series - pet.injection).total_seconds()
        ds.DecayFactor = _ds_text(math.exp(rate * (reference_s + uptake_s)))


def _code(value: str, meaning: str, scheme: str = "SCT") -> Dataset:
    """A code sequence item."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _needs_utf8(study: StudyTags, series: SeriesTags) -> bool:
    """Whether a name or description is not plain ASCII (then UTF-8, ISO_IR 192, is declared)."""
    texts = [value for value in vars(study).values() if isinstance(value, str)]
    texts += [*study.operators, series.description, series.protocol_name]
    return not all(text.isascii() for text in texts)


def _slice_dataset(common: Dataset, geometry: _SliceGeometry, k: int, instance_number: int,
                   sop_uid: str | None = None) -> Dataset:
    """The common tags plus this slice's position and UIDs.

    The common elements are shared, not copied (a deep copy per slice took a quarter of the
    writing time): they are never modified, every per-slice tag is a new element.
    """
    ds = Dataset()
    for element in common:
        ds.add(element)
    ds.file_meta = FileMetaDataset()
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.InstanceNumber = instance_number
    origin = geometry.origin_lps + k * geometry.step_lps
    normal = np.cross(geometry.row_cosine, geometry.col_cosine)
    ds.ImagePositionPatient = [_ds_text(v) for v in origin]
    ds.ImageOrientationPatient = [_ds_text(v) for v in (*geometry.row_cosine, *geometry.col_cosine)]
    ds.PixelSpacing = [_ds_text(geometry.row_spacing_mm), _ds_text(geometry.col_spacing_mm)]
    ds.SliceThickness = _ds_text(geometry.thickness_mm)
    ds.SliceLocation = _ds_text(float(normal @ origin))
    return ds


def _series_slope(folder: Path, parts: Sequence[_Stack], common: Dataset, pet: PetTags | None,
                  unsigned: bool) -> str:
    """One RescaleSlope for the whole series: 1 for integer data that fits, else max/range."""
    limit = _UINT16_MAX_USED if unsigned else _INT16_MAX_USED
    factor = 1.0 if pet is None else suv_scale_factor(_slice_dataset(common, parts[0].geometry, 0, 1), folder)
    stored = [part.data / factor for part in parts]
    peak = max(float(np.abs(values).max()) for values in stored)
    if peak == 0 or (all(np.all(values == np.round(values)) for values in stored) and peak <= limit):
        return "1"
    return _ds_text(peak / limit)


def _set_pixels(ds: Dataset, values: np.ndarray, unsigned: bool, slope_text: str | None) -> None:
    """16-bit stored values; without a series slope, RescaleSlope uses this slice's range."""
    limit = _UINT16_MAX_USED if unsigned else _INT16_MAX_USED
    if slope_text is None:
        peak = float(np.abs(values).max())
        slope_text = "1" if peak == 0 else _ds_text(peak / limit)
    stored = np.clip(np.round(values / float(slope_text)), 0 if unsigned else -limit, limit)
    ds.Rows, ds.Columns = values.shape
    ds.PixelRepresentation = 0 if unsigned else 1
    ds.RescaleSlope = slope_text
    ds.RescaleIntercept = "0"
    ds.PixelData = stored.astype("<u2" if unsigned else "<i2").tobytes()


def _save(ds: Dataset, path: Path) -> None:
    """Write a Part-10 file (preamble + file meta, explicit VR little endian) and fsync it."""
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.save_as(path, enforce_file_format=True)
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _ds_text(value: float) -> str:
    """A decimal string of at most 16 characters (the DS limit), as precise as fits."""
    for digits in range(12, 3, -1):
        text = format(float(value), f".{digits}g")
        if len(text) <= 16:
            return text
    raise ValueError(f"cannot write {value!r} as a DICOM decimal string")


def _ds_or_empty(value: float | None) -> str:
    """A decimal string, or "" (an empty type-2 value) when unknown."""
    return "" if value is None else _ds_text(value)


# -- atomic folder ------------------------------------------------------------------------------
def _check_target(folder: Path, overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise file_error(folder, "cannot write DICOM: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise file_error(folder, "cannot write DICOM: the folder exists and is not empty")


__all__ = ["F18_HALF_LIFE_S", "FileNaming", "LARMOR_MHZ_PER_T", "MrTags", "PetTags", "SeriesTags", "StudyTags",
           "write_dicom_series", "write_exam_series"]
