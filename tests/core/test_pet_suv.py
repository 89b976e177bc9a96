"""PET SUV conversion from DICOM tags (QIBA vendor-neutral pseudo-code).

The reference numbers are those of the QIBA FDG-PET/CT digital reference object: weight
59.94 kg, 370 MBq of F-18 (half-life 6586.2 s) injected at 13:01:00, series at 14:01:00,
RescaleSlope 0.530081816975547. Stored 32767 → 17369.2 Bq/mL; the dose decayed over 3600 s is
3.7e8 · 2^(−3600/6586.2) = 2.5331e8 Bq; SUV = 17369.2 · 59940 / 2.5331e8 = 4.110 (and stored
−877 → −0.110).
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, PositronEmissionTomographyImageStorage, generate_uid

from viewer.core.errors import ViewerError
from viewer.core.io.dicom import load_dicom_series
from viewer.core.io.pet_suv import (
    PHILIPS_PET_CREATOR,
    lean_body_mass_kg,
    scan_datetime,
    suv_conversion,
    suv_scale_factor,
)

QIBA_SLOPE = 0.530081816975547
QIBA_WEIGHT_KG = 59.94
QIBA_DOSE_BQ = 3.7e8
F18_HALF_LIFE_S = 6586.2
WHERE = Path("/data/study/pet")
_DELETE = object()


def pet_dataset(**overrides) -> Dataset:
    """A PET header like the QIBA DRO; ``tag=None`` deletes it, ``radio_<tag>`` edits the
    RadiopharmaceuticalInformationSequence item."""
    ds = Dataset()
    ds.Modality = "PT"
    ds.SeriesDate = ds.AcquisitionDate = "20260101"
    ds.SeriesTime = ds.AcquisitionTime = "140100"
    ds.PatientWeight = str(QIBA_WEIGHT_KG)
    ds.Units = "BQML"
    ds.DecayCorrection = "START"
    ds.CorrectedImage = ["DECY", "ATTN", "SCAT", "DTIM", "RAN", "NORM"]
    ds.RescaleSlope = repr(QIBA_SLOPE)[:16]
    ds.RescaleIntercept = "0"
    item = Dataset()
    item.RadiopharmaceuticalStartTime = "130100"
    item.RadionuclideTotalDose = "370000000"
    item.RadionuclideHalfLife = str(F18_HALF_LIFE_S)
    ds.RadiopharmaceuticalInformationSequence = Sequence([item])
    for key, value in overrides.items():
        target, tag = (item, key[len("radio_"):]) if key.startswith("radio_") else (ds, key)
        if value is None:
            if tag in target:
                delattr(target, tag)
        else:
            setattr(target, tag, value)
    return ds


def add_philips(ds: Dataset, offset: int, value: float) -> Dataset:
    block = ds.private_block(0x7053, PHILIPS_PET_CREATOR, create=True)
    block.add_new(offset, "DS", str(value))
    return ds


def rescaled(ds: Dataset, stored: float) -> float:
    return stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def assert_error(excinfo: pytest.ExceptionInfo, *words: str) -> str:
    message = str(excinfo.value)
    assert isinstance(excinfo.value, ViewerError)
    assert "\n" not in message
    assert str(WHERE) in message
    for word in words:
        assert word in message, message
    return message


# -- QIBA digital reference object --------------------------------------------------------------
def test_qiba_reference_values():
    ds = pet_dataset()
    factor = suv_scale_factor(ds, WHERE)
    assert rescaled(ds, 32767) == pytest.approx(17369.2, abs=0.05)
    assert rescaled(ds, 32767) * factor == pytest.approx(4.11, abs=0.001)
    assert rescaled(ds, -877) * factor == pytest.approx(-0.11, abs=0.001)


def test_qiba_provenance_in_meta():
    conversion = suv_conversion([pet_dataset(), pet_dataset()], WHERE)
    meta = conversion.meta
    assert meta["suv_method"] == "BQML, decay START"
    assert meta["weight_kg"] == pytest.approx(QIBA_WEIGHT_KG)
    assert meta["dose_bq"] == pytest.approx(QIBA_DOSE_BQ)
    assert meta["half_life_s"] == pytest.approx(F18_HALF_LIFE_S)
    assert meta["delta_t_s"] == pytest.approx(3600.0)
    assert len(conversion.factors) == 2


def _write_series(folder: Path, **overrides) -> None:
    """Two 1×2 slices of the DRO's stored values as PET files."""
    folder.mkdir()
    series_uid = generate_uid()
    for k, stored in enumerate(([32767, -877], [0, 100])):
        ds = pet_dataset(**overrides)
        ds.SOPClassUID = PositronEmissionTomographyImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = series_uid
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.ImagePositionPatient = ["0", "0", str(3.27 * k)]
        ds.PixelSpacing = ["4", "4"]
        ds.Rows, ds.Columns = 1, 2
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.array([stored], dtype="<i2").tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(folder / f"slice{k}.dcm", enforce_file_format=True)


def test_qiba_reference_through_files(tmp_path):
    """The DRO numbers survive the whole reader (files → per-slice rescale → SUV)."""
    folder = tmp_path / "pet"
    _write_series(folder)
    volume = load_dicom_series(folder, role="pet")
    assert volume.role == "pet" and volume.units == "SUV"
    assert volume.data[0, 0, 0] == pytest.approx(4.11, abs=0.001)
    assert volume.data[1, 0, 0] == pytest.approx(-0.11, abs=0.001)


# -- decay and timing ---------------------------------------------------------------------------
def test_admin_decay_does_not_decay_the_dose():
    ds = pet_dataset(DecayCorrection="ADMIN")
    conversion = suv_conversion([ds], WHERE)
    assert conversion.factors[0] == pytest.approx(QIBA_WEIGHT_KG * 1000 / QIBA_DOSE_BQ)
    assert conversion.meta["delta_t_s"] == 0.0
    assert conversion.meta["suv_method"] == "BQML, decay ADMIN"


def test_start_datetime_preferred_over_start_time():
    # StartDateTime says the injection was the day before: Δt = 25 h, not 1 h.
    ds = pet_dataset(radio_RadiopharmaceuticalStartDateTime="20251231130100")
    expected = QIBA_WEIGHT_KG * 1000 / (QIBA_DOSE_BQ * 2 ** (-(25 * 3600) / F18_HALF_LIFE_S))
    assert suv_scale_factor(ds, WHERE) == pytest.approx(expected)


def test_series_time_after_acquisition_uses_earliest_acquisition():
    """QIBA: a post-processed series has a later SeriesTime; the acquisition time counts."""
    a = pet_dataset(SeriesTime="153000", AcquisitionTime="140500")
    b = pet_dataset(SeriesTime="153000", AcquisitionTime="140100")
    assert scan_datetime([a, b], WHERE) == datetime(2026, 1, 1, 14, 1)
    conversion = suv_conversion([a, b], WHERE)
    assert conversion.meta["delta_t_s"] == pytest.approx(3600.0)
    assert conversion.factors[0] == pytest.approx(suv_scale_factor(pet_dataset(), WHERE))


def test_series_time_before_acquisition_uses_series_time():
    ds = pet_dataset(AcquisitionTime="141500")
    assert scan_datetime([ds], WHERE) == datetime(2026, 1, 1, 14, 1)


def test_injection_before_midnight_with_time_only():
    ds = pet_dataset(SeriesDate="20260102", AcquisitionDate="20260102", SeriesTime="003000",
                     AcquisitionTime="003000", radio_RadiopharmaceuticalStartTime="233000")
    conversion = suv_conversion([ds], WHERE)
    assert conversion.meta["delta_t_s"] == pytest.approx(3600.0)
    assert conversion.meta["injection_assumed_previous_day"] is True


def test_a_guessed_injection_day_is_told_to_the_reader(tmp_path):
    """Scanned at 00:30, injected at "23:30" with no date: the day before is assumed, and the
    numbers' notes say so (not only the volume's metadata)."""
    from viewer.core.io.study import Calibration, Study, Timepoint
    from viewer.core.quant.stats import TimepointQuantifier

    _write_series(tmp_path / "pet", SeriesDate="20260102", AcquisitionDate="20260102", SeriesTime="003000",
                  AcquisitionTime="003000", radio_RadiopharmaceuticalStartTime="233000")
    volume = load_dicom_series(tmp_path / "pet", role="pet")
    timepoint = Timepoint("night", 1.0, {})
    study = Study("night-001", None, {}, Calibration(), (timepoint,))
    notes = TimepointQuantifier(study, timepoint, {"pet": volume}).compute().notes
    (note,) = [n for n in notes if "injection" in n]
    assert "day before" in note and "2026-01-01 23:30:00" in note and "1.0 h before" in note
    _write_series(tmp_path / "day")
    plain = TimepointQuantifier(study, timepoint, {"pet": load_dicom_series(tmp_path / "day", role="pet")}).compute()
    assert not [n for n in plain.notes if "injection" in n]


def test_injection_after_scan_is_refused():
    ds = pet_dataset(radio_RadiopharmaceuticalStartDateTime="20260101150000")
    with pytest.raises(ViewerError) as excinfo:
        suv_scale_factor(ds, WHERE)
    assert_error(excinfo, "after the scan time")


@pytest.mark.filterwarnings("ignore:Invalid value for VR TM")
def test_old_colon_time_format_is_read():
    ds = pet_dataset(SeriesTime="14:01:00", AcquisitionTime="14:01:00")
    assert suv_scale_factor(ds, WHERE) == pytest.approx(suv_scale_factor(pet_dataset(), WHERE))


# -- units -------------------------------------------------------------------------------------
def test_gml_is_already_suv():
    conversion = suv_conversion([pet_dataset(Units="GML")], WHERE)
    assert conversion.factors == (1.0,)
    assert conversion.meta["suv_method"].startswith("GML")


def test_cnts_with_philips_suv_scale_factor():
    ds = add_philips(pet_dataset(Units="CNTS", RescaleSlope="2.5", RescaleIntercept="0"), 0x00, 0.000123)
    factor = suv_scale_factor(ds, WHERE)
    assert factor == pytest.approx(0.000123)
    assert rescaled(ds, 1000) * factor == pytest.approx(1000 * 2.5 * 0.000123)
    assert "7053,1000" in suv_conversion([ds], WHERE).meta["suv_method"]


def test_cnts_philips_factor_survives_a_file_round_trip(tmp_path):
    """Written explicit VR then read back, the private block is found by its creator."""
    ds = add_philips(pet_dataset(Units="CNTS"), 0x00, 0.000123)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(tmp_path / "x.dcm", implicit_vr=False, little_endian=True)
    assert suv_scale_factor(pydicom.dcmread(tmp_path / "x.dcm", force=True), WHERE) == pytest.approx(0.000123)


def test_cnts_with_philips_activity_concentration_factor_only():
    """QIBA: (7053,1009) turns counts into Bq/mL, then proceed as BQML."""
    ds = add_philips(pet_dataset(Units="CNTS"), 0x09, 3.0)
    assert suv_scale_factor(ds, WHERE) == pytest.approx(3.0 * suv_scale_factor(pet_dataset(), WHERE))


def test_cnts_without_philips_tag_is_refused():
    with pytest.raises(ViewerError) as excinfo:
        suv_scale_factor(pet_dataset(Units="CNTS"), WHERE)
    assert_error(excinfo, "CNTS", "7053,1000")


def test_unsupported_units_refused():
    with pytest.raises(ViewerError) as excinfo:
        suv_scale_factor(pet_dataset(Units="PROPCPS"), WHERE)
    assert_error(excinfo, "Units PROPCPS")


# -- refusals naming the tag --------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, tag",
    [
        ({"radio_RadionuclideTotalDose": None}, "RadionuclideTotalDose is missing"),
        ({"radio_RadionuclideHalfLife": None}, "RadionuclideHalfLife is missing"),
        ({"PatientWeight": None}, "PatientWeight is missing"),
        ({"PatientWeight": "0"}, "PatientWeight is 0"),
        ({"Units": None}, "Units is missing"),
        ({"DecayCorrection": None}, "DecayCorrection is missing"),
        ({"CorrectedImage": None}, "CorrectedImage is missing"),
        ({"SeriesTime": None}, "SeriesTime is missing"),
        ({"RadiopharmaceuticalInformationSequence": None}, "RadiopharmaceuticalInformationSequence is missing"),
        ({"radio_RadiopharmaceuticalStartTime": None}, "RadiopharmaceuticalStartTime are missing"),
    ],
)
def test_missing_tag_is_named(overrides, tag):
    with pytest.raises(ViewerError) as excinfo:
        suv_conversion([pet_dataset(**overrides)], WHERE)
    message = assert_error(excinfo, "cannot compute SUV", tag)
    assert message.startswith(f"{WHERE}: ")


def test_corrected_image_without_decy_refused():
    with pytest.raises(ViewerError) as excinfo:
        suv_scale_factor(pet_dataset(CorrectedImage=["ATTN", "SCAT"]), WHERE)
    assert_error(excinfo, "CorrectedImage", "DECY")


def test_corrected_image_without_attn_refused():
    with pytest.raises(ViewerError) as excinfo:
        suv_scale_factor(pet_dataset(CorrectedImage=["DECY"]), WHERE)
    assert_error(excinfo, "CorrectedImage", "ATTN")


def test_decay_correction_none_refused():
    with pytest.raises(ViewerError) as excinfo:
        suv_scale_factor(pet_dataset(DecayCorrection="NONE"), WHERE)
    assert_error(excinfo, "DecayCorrection NONE")


def test_series_level_tags_must_agree():
    with pytest.raises(ViewerError) as excinfo:
        suv_conversion([pet_dataset(), pet_dataset(radio_RadionuclideTotalDose="360000000")], WHERE)
    assert_error(excinfo, "RadionuclideTotalDose differs")


# -- SUL ---------------------------------------------------------------------------------------
def test_lean_body_mass_james():
    assert lean_body_mass_kg(80.0, 180.0, "M") == pytest.approx(1.10 * 80 - 128 * (80 / 180) ** 2)
    assert lean_body_mass_kg(60.0, 165.0, "F") == pytest.approx(1.07 * 60 - 148 * (60 / 165) ** 2)


def test_sul_factor_in_meta():
    meta = suv_conversion([pet_dataset(PatientSex="F", PatientSize="1.65")], WHERE).meta
    lbm = 1.07 * QIBA_WEIGHT_KG - 148 * (QIBA_WEIGHT_KG / 165.0) ** 2
    assert meta["sul_factor"] == pytest.approx(lbm / QIBA_WEIGHT_KG)
    assert meta["lbm_kg"] == pytest.approx(lbm)
    assert "sul_unavailable" not in meta
    male = suv_conversion([pet_dataset(PatientSex="M", PatientSize="1.80")], WHERE).meta
    assert male["sul_factor"] == pytest.approx((1.10 * QIBA_WEIGHT_KG - 128 * (QIBA_WEIGHT_KG / 180) ** 2) / QIBA_WEIGHT_KG)


@pytest.mark.parametrize(
    "overrides, reason",
    [({}, "PatientSex"), ({"PatientSex": "O", "PatientSize": "1.7"}, "PatientSex"),
     ({"PatientSex": "M"}, "PatientSize")],
)
def test_sul_unavailable_says_why(overrides, reason):
    meta = suv_conversion([pet_dataset(**overrides)], WHERE).meta
    assert "sul_factor" not in meta
    assert reason in meta["sul_unavailable"]
    assert math.isfinite(meta["weight_kg"])


def test_cnts_philips_factor_needs_no_times():
    """The Philips SUV scale factor already includes decay: missing times are not needed."""
    ds = add_philips(pet_dataset(Units="CNTS", SeriesTime=None, AcquisitionTime=None), 0x00, 0.000123)
    assert suv_conversion([ds], WHERE).factors == (pytest.approx(0.000123),)
