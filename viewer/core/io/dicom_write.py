"""Writing a :class:`Volume` as a DICOM series (one file per slice).

Used by tests and by the demo-study generator. The output is deliberately *awkward* in the
ways real series are, so the reader is exercised: every slice has its own RescaleSlope (chosen
to use the 16-bit range of that slice), and with ``shuffle_seed`` the file names and
InstanceNumbers are scrambled so that only ImagePositionPatient gives the slice order.

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
- A folder is written atomically: into a temporary sibling folder, then renamed into place.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
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

_SOP_CLASSES = {"MR": MRImageStorage, "CT": CTImageStorage, "PT": PositronEmissionTomographyImageStorage}
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_UINT16_MAX_USED = 65534  # one count of head-room so a rounded slope never overflows
_INT16_MAX_USED = 32766


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
        decay_correction: START or ADMIN.
        corrected_image: CorrectedImage values (must include ATTN and DECY for SUV).
        sex: PatientSex "M"/"F" (for SUL), optional.
        height_m: PatientSize (m) (for SUL), optional.
        philips_suv_factor: (7053,1000) for CNTS series.
        write_start_datetime: also write RadiopharmaceuticalStartDateTime (else only the time).
        radiopharmaceutical: name of the tracer.
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


@dataclass(frozen=True)
class _SliceGeometry:
    """LPS geometry shared by all slices."""

    row_cosine: np.ndarray
    col_cosine: np.ndarray
    row_spacing_mm: float
    col_spacing_mm: float
    step_lps: np.ndarray
    origin_lps: np.ndarray
    thickness_mm: float


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
    """Write ``volume`` as one DICOM file per slice into ``folder`` (atomically).

    Args:
        volume: the image; with ``pet`` its values are SUV.
        folder: target folder; refused if it exists and is not empty, unless ``overwrite``.
        modality: DICOM Modality ("MR", "CT", ...); "PT" whenever ``pet`` is given.
        pet: PET tags; required for modality "PT".
        shuffle_seed: scramble file names and InstanceNumbers (reproducibly).
        per_slice_rescale: one RescaleSlope per slice (else one for the whole series).
        series_uid: SeriesInstanceUID to use (generated if None).

    Returns:
        The written files, in slice order (k = 0, 1, ...).
    """
    folder = Path(folder)
    if pet is not None:
        modality = "PT"
    if modality == "PT" and pet is None:
        raise ValueError("a PT series needs PetTags")
    data = np.asarray(volume.data, dtype=np.float64)
    if not np.all(np.isfinite(data)):
        raise file_error(folder, "cannot write DICOM: the volume has NaN or infinite values")
    geometry = _slice_geometry(folder, volume.voxel_to_world)
    _check_target(folder, overwrite)

    n = data.shape[2]
    file_numbers, instance_numbers = _numbering(n, shuffle_seed)
    names = [f"IM{number:05d}.dcm" for number in file_numbers]
    common = _common_dataset(modality, series_description, patient_name, patient_id, study_date, series_uid)
    if pet is not None:
        _add_pet_tags(common, pet)
    unsigned = modality != "PT" and float(data.min()) >= 0.0  # PET stays int16 (QIBA's −877)

    def write_all(tmp: Path) -> None:
        slope = None if per_slice_rescale else _series_slope(folder, data, common, geometry, pet, unsigned)
        for k in range(n):
            ds = _slice_dataset(common, geometry, k, instance_numbers[k])
            values = data[:, :, k].T  # rows × columns
            if pet is not None:
                values = values / suv_scale_factor(ds, folder)
            _set_pixels(ds, values, unsigned, slope)
            _save(ds, tmp / names[k])

    write_folder_atomically(folder, write_all, lambda target: _check_target(target, overwrite))
    return [folder / name for name in names]


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
def _common_dataset(modality: str, description: str, patient_name: str, patient_id: str,
                    study_date: str, series_uid: str | None) -> Dataset:
    """Tags shared by every slice of the series."""
    ds = Dataset()
    ds.SOPClassUID = _SOP_CLASSES.get(modality, SecondaryCaptureImageStorage)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.Modality = modality
    ds.SeriesDescription = description
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "120000"
    ds.SeriesNumber = 1
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    return ds


def _add_pet_tags(ds: Dataset, pet: PetTags) -> None:
    """PET Image / Patient Study / radiopharmaceutical tags used for SUV."""
    acquisition = pet.acquisition or pet.series
    ds.SeriesDate, ds.SeriesTime = pet.series.strftime("%Y%m%d"), pet.series.strftime("%H%M%S")
    ds.AcquisitionDate = acquisition.strftime("%Y%m%d")
    ds.AcquisitionTime = acquisition.strftime("%H%M%S")
    ds.PatientWeight = _ds_text(pet.weight_kg)
    if pet.height_m is not None:
        ds.PatientSize = _ds_text(pet.height_m)
    if pet.sex is not None:
        ds.PatientSex = pet.sex
    ds.Units = pet.units
    ds.DecayCorrection = pet.decay_correction
    ds.CorrectedImage = list(pet.corrected_image)
    ds.SeriesType = ["STATIC", "IMAGE"]
    item = Dataset()
    item.Radiopharmaceutical = pet.radiopharmaceutical
    item.RadiopharmaceuticalStartTime = pet.injection.strftime("%H%M%S")
    if pet.write_start_datetime:
        item.RadiopharmaceuticalStartDateTime = pet.injection.strftime("%Y%m%d%H%M%S")
    item.RadionuclideTotalDose = _ds_text(pet.dose_bq)
    item.RadionuclideHalfLife = _ds_text(pet.half_life_s)
    ds.RadiopharmaceuticalInformationSequence = Sequence([item])
    if pet.philips_suv_factor is not None:
        block = ds.private_block(0x7053, PHILIPS_PET_CREATOR, create=True)
        block.add_new(PHILIPS_SUV_SCALE_OFFSET, "DS", _ds_text(pet.philips_suv_factor))


def _slice_dataset(common: Dataset, geometry: _SliceGeometry, k: int, instance_number: int) -> Dataset:
    """A copy of the common tags plus this slice's position and UIDs."""
    ds = copy.deepcopy(common)
    ds.file_meta = FileMetaDataset()
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = instance_number
    origin = geometry.origin_lps + k * geometry.step_lps
    normal = np.cross(geometry.row_cosine, geometry.col_cosine)
    ds.ImagePositionPatient = [_ds_text(v) for v in origin]
    ds.ImageOrientationPatient = [_ds_text(v) for v in (*geometry.row_cosine, *geometry.col_cosine)]
    ds.PixelSpacing = [_ds_text(geometry.row_spacing_mm), _ds_text(geometry.col_spacing_mm)]
    ds.SliceThickness = _ds_text(geometry.thickness_mm)
    ds.SliceLocation = _ds_text(float(normal @ origin))
    return ds


def _series_slope(folder: Path, data: np.ndarray, common: Dataset, geometry: _SliceGeometry,
                  pet: PetTags | None, unsigned: bool) -> str:
    """One RescaleSlope for the whole series: 1 for integer data that fits, else max/range."""
    limit = _UINT16_MAX_USED if unsigned else _INT16_MAX_USED
    factor = 1.0 if pet is None else suv_scale_factor(_slice_dataset(common, geometry, 0, 1), folder)
    stored = data / factor
    peak = float(np.abs(stored).max())
    if peak == 0 or (np.all(stored == np.round(stored)) and peak <= limit):
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


# -- atomic folder ------------------------------------------------------------------------------
def _check_target(folder: Path, overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise file_error(folder, "cannot write DICOM: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise file_error(folder, "cannot write DICOM: the folder exists and is not empty")


__all__ = ["PetTags", "write_dicom_series", "F18_HALF_LIFE_S"]
