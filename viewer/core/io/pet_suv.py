"""PET standardised uptake value (SUV) from DICOM tags.

Follows the QIBA vendor-neutral SUV pseudo-code (PRODUCT.md §3). The output of this module is
a *factor per file*: SUVbw = rescaled pixel value × factor, where the rescaled pixel value is
``stored · RescaleSlope + RescaleIntercept`` of that very file (the slope may change from
slice to slice, so it is never assumed constant over a series).

Why these rules:
- SUVbw = activity concentration [Bq/mL] · body weight [g] / dose at scan time [Bq]. 1 mL of
  tissue is taken as 1 g, so SUV is dimensionless.
- ``CorrectedImage`` must contain ATTN and DECY: without attenuation correction the pixel values
  are not activity concentrations, and without decay correction they refer to each bed
  position's own time, so no single decayed dose would be right.
- ``Units``: BQML (Bq/mL) is converted with the decayed dose; GML means the scanner already
  stored SUVbw (factor 1); CNTS (Philips) needs the private SUV scale factor (7053,1000) or,
  failing that, the activity concentration scale factor (7053,1009) that turns counts into
  Bq/mL. Anything else is refused.
- ``DecayCorrection`` START: pixels are decay corrected to the series start, so the dose is
  decayed from injection to the scan time. ADMIN: pixels refer to the injection time, so the
  dose is not decayed (factor 1).
- Scan time is SeriesDate/SeriesTime, except when it is later than the earliest
  AcquisitionDate/AcquisitionTime of the slices (a series re-created after post-processing):
  then the earliest acquisition time is used.
- Anything missing, zero or unsupported raises :class:`ViewerError` naming the tag. A
  silently wrong SUV is worse than none. So does a factor that is not a finite positive
  number once computed: a dose that decays to nothing over the uptake time (a half-life of a
  nanosecond underflows 2^(−Δt/T½) to 0, which used to escape as ``ZeroDivisionError``), or
  a weight or scale factor large enough to overflow.

SUL (SUV normalised to lean body mass) uses the James formula and needs PatientSex (M/F) and
PatientSize (m); it is reported as ``sul_factor = LBM / weight`` so SUL = SUV · sul_factor.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Sequence

from pydicom.dataset import Dataset
from pydicom.valuerep import DT

from viewer.core.errors import file_error
from viewer.core.io.dicom_scan import tag_text

#: Private creator of the Philips PET group holding the SUV scale factors.
PHILIPS_PET_CREATOR = "Philips PET Private Group"
#: Element offsets in that block: (7053,xx00) SUV scale factor, (7053,xx09) activity
#: concentration scale factor (counts → Bq/mL, together with RescaleSlope).
PHILIPS_SUV_SCALE_OFFSET = 0x00
PHILIPS_ACTIVITY_SCALE_OFFSET = 0x09

#: Tags whose value must be the same in every file of a series for one SUV conversion to hold.
SERIES_LEVEL_TAGS: tuple[str, ...] = (
    "Units", "DecayCorrection", "PatientWeight", "SeriesDate", "SeriesTime",
)
SERIES_LEVEL_RADIOPHARMACEUTICAL_TAGS: tuple[str, ...] = (
    "RadionuclideTotalDose", "RadionuclideHalfLife", "RadiopharmaceuticalStartTime",
    "RadiopharmaceuticalStartDateTime",
)

_SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class SuvConversion:
    """How a PET series is turned into SUVbw.

    Attributes:
        factors: one factor per input dataset, in input order; SUVbw = rescaled pixel × factor.
        meta: provenance for :attr:`Volume.meta` (``suv_method``, ``weight_kg``, ``dose_bq``,
            ``half_life_s``, ``delta_t_s``, ``scan_time``, ``injection_time``, ``sul_factor``
            or ``sul_unavailable``, ...).
    """

    factors: tuple[float, ...]
    meta: dict[str, Any] = field(default_factory=dict)


# -- public API ---------------------------------------------------------------------------------
def suv_conversion(datasets: Sequence[Dataset], where: str | Path) -> SuvConversion:
    """SUV factors for every file of one PET series, plus their provenance.

    Args:
        datasets: the series' files (headers are enough; pixel data is not touched).
        where: folder named in error messages.

    Raises:
        ViewerError: a needed tag is missing/zero/unsupported, or series-level tags differ.
    """
    if not datasets:
        raise file_error(where, "cannot compute SUV: no PET files")
    _check_same_series_tags(datasets, where)
    scan = scan_datetime(datasets, where) if _needs_scan_time(datasets[0]) else None
    factors: list[float] = []
    meta: dict[str, Any] = {}
    for ds in datasets:
        factor, meta = _factor_and_provenance(ds, where, scan)
        factors.append(factor)
    if len(set(factors)) > 1:
        meta["suv_factor_varies_per_slice"] = True
    meta.update(sul_provenance(datasets[0]))
    return SuvConversion(tuple(factors), meta)


def suv_scale_factor(ds: Dataset, where: str | Path = "", scan_time: datetime | None = None) -> float:
    """SUVbw per unit of rescaled pixel value (``stored·slope + intercept``) for one file.

    Args:
        ds: one PET file's dataset.
        where: file or folder named in error messages.
        scan_time: the series scan time (see :func:`scan_datetime`); by default it is worked
            out from this file alone.

    Returns:
        The factor (g/Bq·mL⁻¹ for BQML, 1 for GML, the Philips factor for CNTS).
    """
    if scan_time is None and _needs_scan_time(ds):
        scan_time = scan_datetime([ds], where)
    return _factor_and_provenance(ds, where, scan_time)[0]


def scan_datetime(datasets: Sequence[Dataset], where: str | Path) -> datetime:
    """The time the dose is decayed to: SeriesDate/SeriesTime, or the earliest acquisition.

    QIBA: when the series date/time is *after* the earliest AcquisitionDate/AcquisitionTime the
    series was probably re-created after post-processing, so its time is not the scan start;
    the earliest acquisition time is used instead.
    """
    first = datasets[0]
    series_date = parse_da(_required(first, "SeriesDate", where), "SeriesDate", where)
    series_time = parse_tm(_required(first, "SeriesTime", where), "SeriesTime", where)
    series = datetime.combine(series_date, series_time)
    earliest = earliest_acquisition(datasets, series_date, where)
    if earliest is not None and series > earliest:
        return earliest
    return series


def earliest_acquisition(
    datasets: Sequence[Dataset], default_date: date, where: str | Path
) -> datetime | None:
    """Earliest AcquisitionDate/AcquisitionTime over the files (None when no file has one)."""
    times = []
    for ds in datasets:
        text = _text(ds, "AcquisitionTime")
        if not text:
            continue
        day_text = _text(ds, "AcquisitionDate")
        day = parse_da(day_text, "AcquisitionDate", where) if day_text else default_date
        times.append(datetime.combine(day, parse_tm(text, "AcquisitionTime", where)))
    return min(times) if times else None


def decay_factor(delta_t_s: float, half_life_s: float) -> float:
    """Fraction of the activity left after ``delta_t_s`` seconds: 2^(−Δt / T½)."""
    return 2.0 ** (-delta_t_s / half_life_s)


def lean_body_mass_kg(weight_kg: float, height_cm: float, sex: str) -> float:
    """Lean body mass by the James formula (kg), as used for SUL.

    Male: 1.10·W − 128·(W/H)²; female: 1.07·W − 148·(W/H)² (W in kg, H in cm).
    """
    ratio = weight_kg / height_cm
    if sex == "M":
        return 1.10 * weight_kg - 128.0 * ratio**2
    if sex == "F":
        return 1.07 * weight_kg - 148.0 * ratio**2
    raise ValueError(f"sex must be 'M' or 'F', got {sex!r}")


def sul_provenance(ds: Dataset) -> dict[str, Any]:
    """``{"sul_factor": LBM/weight, "lbm_kg": …}`` or ``{"sul_unavailable": reason}``."""
    weight = _float_or_none(ds, "PatientWeight")
    sex = _text(ds, "PatientSex").upper()
    height_m = _float_or_none(ds, "PatientSize")
    if not weight or weight <= 0:
        return {"sul_unavailable": "PatientWeight is missing"}
    if sex not in ("M", "F"):
        return {"sul_unavailable": "PatientSex is missing or not M/F"}
    if not height_m or height_m <= 0:
        return {"sul_unavailable": "PatientSize (height) is missing"}
    lbm = lean_body_mass_kg(weight, height_m * 100.0, sex)
    if lbm <= 0:
        return {"sul_unavailable": "the James lean-body-mass formula is not valid at this weight/height"}
    return {"sul_factor": lbm / weight, "lbm_kg": lbm, "height_m": height_m, "sex": sex}


# -- date/time parsing --------------------------------------------------------------------------
def parse_da(text: str, tag: str, where: str | Path) -> date:
    """A DICOM DA value (``YYYYMMDD``; the old ``YYYY.MM.DD`` is accepted too)."""
    digits = text.strip().replace(".", "").replace("-", "")
    try:
        return datetime.strptime(digits, "%Y%m%d").date()
    except ValueError:
        raise file_error(where, f"cannot compute SUV: {tag} {text!r} is not a valid date") from None


def parse_tm(text: str, tag: str, where: str | Path) -> time:
    """A DICOM TM value (``HH[MM[SS[.FFFFFF]]]``; the old ``HH:MM:SS`` is accepted too)."""
    match = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?", text.strip().replace(":", ""))
    try:
        if match is None:
            raise ValueError(text)
        hh, mm, ss, frac = match.groups()
        micro = int((frac or "0").ljust(6, "0"))
        return time(int(hh), int(mm or 0), int(ss or 0), micro)
    except ValueError:
        raise file_error(where, f"cannot compute SUV: {tag} {text!r} is not a valid time") from None


def parse_dt(text: str, tag: str, where: str | Path) -> datetime:
    """A DICOM DT value as a naive local datetime (a UTC offset, if any, is dropped: the
    series time it is compared with has none, and both are the scanner's clock)."""
    try:
        value = DT(text.strip())
    except ValueError:
        raise file_error(where, f"cannot compute SUV: {tag} {text!r} is not a valid date-time") from None
    return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                    value.microsecond)


# -- internals ----------------------------------------------------------------------------------
def _factor_and_provenance(
    ds: Dataset, where: str | Path, scan: datetime | None
) -> tuple[float, dict[str, Any]]:
    """(factor, provenance) for one file; the factor is refused unless finite and > 0."""
    factor, meta = _factor_by_units(ds, where, scan)
    if not (math.isfinite(factor) and factor > 0):
        raise file_error(where, f"cannot compute SUV: the SUV factor from {meta.get('suv_method', 'the tags')} is "
                                f"{factor:g} (PatientWeight, RadionuclideTotalDose or a scale factor out of range)")
    return factor, meta


def _factor_by_units(
    ds: Dataset, where: str | Path, scan: datetime | None
) -> tuple[float, dict[str, Any]]:
    """Dispatch on Units (after the corrections check) and return (factor, provenance)."""
    _check_corrections(ds, where)
    units = _required(ds, "Units", where).upper()
    if units == "GML":
        return 1.0, _provenance(ds, "GML (stored values are SUVbw)")
    if units == "BQML":
        return _bqml_factor(ds, where, scan, "BQML")
    if units == "CNTS":
        return _cnts_factor(ds, where, scan)
    raise file_error(where, f"cannot compute SUV: Units {units} is not supported (expected BQML, GML or "
                            "CNTS)")


def _check_corrections(ds: Dataset, where: str | Path) -> None:
    """Require attenuation and decay correction, and a supported DecayCorrection."""
    if "CorrectedImage" not in ds or not ds.CorrectedImage:
        raise file_error(where, "cannot compute SUV: CorrectedImage is missing")
    corrected = {str(v).strip().upper() for v in _as_list(ds.CorrectedImage)}
    for needed in ("ATTN", "DECY"):
        if needed not in corrected:
            raise file_error(
                where, f"cannot compute SUV: CorrectedImage ({'/'.join(sorted(corrected))}) lacks {needed}"
            )
    decay = _required(ds, "DecayCorrection", where).upper()
    if decay not in ("START", "ADMIN"):
        raise file_error(where, f"cannot compute SUV: DecayCorrection {decay} is not supported (expected "
                                "START or ADMIN)")


def _bqml_factor(
    ds: Dataset, where: str | Path, scan: datetime | None, label: str
) -> tuple[float, dict[str, Any]]:
    """weight[g] / (dose[Bq] · 2^(−Δt/T½)) for pixels in Bq/mL."""
    weight_kg = _positive(ds, "PatientWeight", where)
    info = _radiopharmaceutical(ds, where)
    dose_bq = _positive(info, "RadionuclideTotalDose", where)
    half_life_s = _positive(info, "RadionuclideHalfLife", where)
    decay = _required(ds, "DecayCorrection", where).upper()
    meta = _provenance(ds, f"{label}, decay {decay}")
    if decay == "ADMIN":
        delta_t_s = 0.0
    else:
        if scan is None:
            scan = scan_datetime([ds], where)
        injection, time_only = _injection_datetime(ds, info, where)
        delta_t_s = (scan - injection).total_seconds()
        if delta_t_s < 0 and time_only and delta_t_s > -_SECONDS_PER_DAY:
            injection -= timedelta(days=1)  # injected before midnight, scanned after it
            delta_t_s += _SECONDS_PER_DAY
            meta["injection_assumed_previous_day"] = True
        if delta_t_s < 0:
            raise file_error(where, f"cannot compute SUV: injection time {injection.isoformat()} is after "
                                    f"the scan time {scan.isoformat()}")
        meta["scan_time"] = scan.isoformat()
        meta["injection_time"] = injection.isoformat()
    meta.update(weight_kg=weight_kg, dose_bq=dose_bq, half_life_s=half_life_s, delta_t_s=delta_t_s)
    decayed_bq = dose_bq * decay_factor(delta_t_s, half_life_s)
    if not decayed_bq > 0:
        raise file_error(where, f"cannot compute SUV: RadionuclideTotalDose {dose_bq:g} Bq decays to nothing over "
                                f"{delta_t_s:g} s with RadionuclideHalfLife {half_life_s:g} s")
    return weight_kg * 1000.0 / decayed_bq, meta


def _cnts_factor(ds: Dataset, where: str | Path, scan: datetime | None) -> tuple[float, dict[str, Any]]:
    """Philips counts: the private SUV scale factor, else activity scale factor then BQML."""
    suv_scale = _philips_value(ds, PHILIPS_SUV_SCALE_OFFSET)
    if suv_scale is not None and suv_scale > 0:
        meta = _provenance(ds, "CNTS, Philips SUV scale factor (7053,1000)")
        meta["philips_suv_scale_factor"] = suv_scale
        return suv_scale, meta
    activity_scale = _philips_value(ds, PHILIPS_ACTIVITY_SCALE_OFFSET)
    if activity_scale is not None and activity_scale > 0:
        label = "CNTS via Philips activity concentration scale factor (7053,1009)"
        factor, meta = _bqml_factor(ds, where, scan, label)
        meta["philips_activity_scale_factor"] = activity_scale
        return activity_scale * factor, meta
    raise file_error(
        where, "cannot compute SUV: Units is CNTS but the Philips SUV scale factor (7053,1000) is missing"
    )


def _injection_datetime(ds: Dataset, info: Dataset, where: str | Path) -> tuple[datetime, bool]:
    """(injection date-time, True when only a time was given and the series date assumed)."""
    full = _text(info, "RadiopharmaceuticalStartDateTime")
    if full:
        return parse_dt(full, "RadiopharmaceuticalStartDateTime", where), False
    start = _text(info, "RadiopharmaceuticalStartTime")
    if not start:
        raise file_error(where, "cannot compute SUV: RadiopharmaceuticalStartDateTime and "
                                "RadiopharmaceuticalStartTime are missing")
    day = parse_da(_required(ds, "SeriesDate", where), "SeriesDate", where)
    return datetime.combine(day, parse_tm(start, "RadiopharmaceuticalStartTime", where)), True


def _radiopharmaceutical(ds: Dataset, where: str | Path) -> Dataset:
    """First item of RadiopharmaceuticalInformationSequence (dose, half-life, start time)."""
    sequence = ds.get("RadiopharmaceuticalInformationSequence")
    if not sequence:
        raise file_error(where, "cannot compute SUV: RadiopharmaceuticalInformationSequence is missing")
    return sequence[0]


def _needs_scan_time(ds: Dataset) -> bool:
    """Only decay START with Bq/mL-derived units needs the scan time (a Philips SUV scale
    factor already contains the decay, so CNTS with (7053,1000) does not)."""
    if _text(ds, "DecayCorrection").upper() != "START":
        return False
    units = _text(ds, "Units").upper()
    if units == "CNTS":
        philips = _philips_value(ds, PHILIPS_SUV_SCALE_OFFSET)
        return philips is None or philips <= 0
    return units == "BQML"


def _check_same_series_tags(datasets: Sequence[Dataset], where: str | Path) -> None:
    """Refuse a series whose SUV-relevant series-level tags differ between files."""
    first = datasets[0]
    first_info = _first_item(first)
    for ds in datasets[1:]:
        for tag in SERIES_LEVEL_TAGS:
            if _text(ds, tag) != _text(first, tag):
                raise file_error(where, f"cannot compute SUV: {tag} differs between files of the series")
        info = _first_item(ds)
        for tag in SERIES_LEVEL_RADIOPHARMACEUTICAL_TAGS:
            if _text(info, tag) != _text(first_info, tag):
                raise file_error(where, f"cannot compute SUV: {tag} differs between files of the series")


def _first_item(ds: Dataset) -> Dataset:
    """The radiopharmaceutical item, or an empty dataset (so comparisons still work)."""
    sequence = ds.get("RadiopharmaceuticalInformationSequence")
    return sequence[0] if sequence else Dataset()


def _philips_value(ds: Dataset, offset: int) -> float | None:
    """A DS value in the Philips PET private block, or None when absent/unparseable."""
    try:
        element = ds.private_block(0x7053, PHILIPS_PET_CREATOR)[offset]
    except KeyError:
        return None
    value = element.value
    if isinstance(value, bytes):  # read as UN (implicit VR without a dictionary entry)
        value = value.decode("ascii", "ignore").strip(" \x00")
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _provenance(ds: Dataset, method: str) -> dict[str, Any]:
    """The meta keys every method reports (None where the method does not use the value)."""
    return {
        "suv_method": method,
        "pet_units_stored": _text(ds, "Units").upper(),
        "decay_correction": _text(ds, "DecayCorrection").upper(),
        "weight_kg": _float_or_none(ds, "PatientWeight"),
        "dose_bq": None,
        "half_life_s": None,
        "delta_t_s": None,
    }


def _required(ds: Dataset, tag: str, where: str | Path) -> str:
    """A tag's text, refusing a missing or empty value with an error naming the tag."""
    text = _text(ds, tag)
    if not text:
        raise file_error(where, f"cannot compute SUV: {tag} is missing")
    return text


def _positive(ds: Dataset, tag: str, where: str | Path) -> float:
    """A numeric tag that must be present and > 0 (weight, dose, half-life)."""
    text = _required(ds, tag, where)
    try:
        value = float(text)
    except ValueError:
        raise file_error(where, f"cannot compute SUV: {tag} {text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise file_error(where, f"cannot compute SUV: {tag} is {text}, expected a positive number")
    return value


def _float_or_none(ds: Dataset, tag: str) -> float | None:
    """A numeric tag for provenance (None when absent or not a number)."""
    try:
        return float(_text(ds, tag))
    except ValueError:
        return None


def _text(ds: Dataset, tag: str) -> str:
    """A tag's value as stripped text ('' when absent or empty); see :func:`.dicom_scan.tag_text`."""
    return tag_text(ds, tag)


def _as_list(value: Any) -> list[Any]:
    """A single or multi-valued element's value as a list."""
    if isinstance(value, (str, bytes)):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


__all__ = [
    "SuvConversion", "suv_conversion", "suv_scale_factor", "scan_datetime", "earliest_acquisition",
    "decay_factor", "lean_body_mass_kg", "sul_provenance", "parse_da", "parse_tm", "parse_dt",
]
