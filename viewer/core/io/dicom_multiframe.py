"""Enhanced multi-frame DICOM (MR, CT, PET): frames placed by their functional groups.

Current Siemens (XA), Philips and GE scanners store a series as one file holding every
frame; what classic files carry per file (position, orientation, spacing, rescale, times) is
carried per frame by *functional group macros*, in the frame's item of
PerFrameFunctionalGroupsSequence or, when the same for all frames, in the one item of
SharedFunctionalGroupsSequence. This module turns such a file into :class:`Frame` objects, so
that sorting, spacing checks, the affine, SUV and pixel reading (:mod:`.dicom`) are the same
as for classic series.

Why these rules:
- Which objects are read: Enhanced MR/CT/PET Image and their Legacy Converted forms. Any
  other object with functional groups (Segmentation, Parametric Map, whole-slide, X-ray
  angiography, …) is refused with a line naming its SOP class: a SEG is a label map, not an
  image layer, and the others are untested here, so they are not guessed at.
- Each macro is looked up in the frame's per-frame item first, then in the shared item (the
  standard puts a macro in exactly one of them; per-frame wins if a writer put it in both).
  Geometry: PlanePositionSequence → ImagePositionPatient (mm, LPS) per frame, never from the
  top level (one top-level position for many frames would stack them all in one place);
  PlaneOrientationSequence → ImageOrientationPatient and PixelMeasuresSequence → PixelSpacing,
  SliceThickness (mm) fall back to top-level values, which some converters write there.
  A missing position is named by tag and frame ("IM0001 frame 12: ImagePositionPatient …").
- Values (stored → real): three sources may be present — Pixel Value Transformation
  (RescaleSlope/Intercept, the "modality" values; for MR usually of unspecified unit "US"),
  Real World Value Mapping (RWVM: one or more linear maps or LUTs, each with its unit; Philips
  writes its quantitative values there) and top-level RescaleSlope/Intercept. The rule,
  between dcm2niix's (RWVM only for Philips and only when the rescale is the identity) and
  highdicom's / nibabel's (RWVM first):

  * PET (Modality PT) with a Units tag (classic PET attributes, e.g. Legacy Converted):
    Pixel Value Transformation, as for classic PET: QIBA defines SUV from the rescaled value
    in Bq/mL, and an RWVM there may already hold SUV (Siemens), which would be converted twice
    (without any rescale: an RWVM in the Units given, else the stored values).
  * PET without Units (true Enhanced PET has none): the first linear RWVM whose unit is one
    SUV can start from — UCUM ``Bq/ml`` (preferred), ``{SUVbw}g/ml``, ``{counts}`` — gives
    both the values and Units (BQML, GML, CNTS); without one the file is refused.
  * Any other modality: the first *linear* RWVM whose unit is defined (MeasurementUnitsCode
    not empty, ``1``, "no units" or "UNDEFINED") wins — that is where a real quantity (ms,
    mm²/s, ml/100ml/s) is; otherwise the Pixel Value Transformation; otherwise the
    top-level rescale; otherwise a linear RWVM without unit (the only mapping there is);
    otherwise identity. RWVM LUTs (non-linear) are never applied.

  The choice is recorded in the frame's view: its RescaleSlope/RescaleIntercept are the
  applied values, RescaleType the unit when an RWVM was used, and the Python attribute
  ``value_mapping`` (:data:`VALUE_MAPPING_ATTRIBUTE`) says in words which source it was.
- ``Frame.ds`` is a per-frame *view*: a new :class:`Dataset` whose element dictionary holds the
  file's own top-level element objects (shared, not copied: building 300 views costs 300 dict
  copies, not 300 deep copies), minus the functional group sequences, pixel data and any
  element the header scan deferred (larger than its defer size: overlays, private blobs);
  then the Unassigned Shared / Per-frame Converted Attributes of Legacy Converted files (where
  highdicom and scanners put classic tags such as Units, DecayCorrection, CorrectedImage,
  RadiopharmaceuticalInformationSequence); then the contents of the frame's macros
  (:data:`FLATTENED_MACROS`); then the derived tags: ImagePositionPatient,
  ImageOrientationPatient, PixelSpacing, SliceThickness, SpacingBetweenSlices, RescaleSlope,
  RescaleIntercept and AcquisitionDate/AcquisitionTime from the frame's
  FrameAcquisitionDateTime (else the top-level AcquisitionDateTime). So :mod:`.pet_suv` reads
  a frame exactly as it reads a classic PET file. Views are read-only: assigning
  ``view.Keyword = value`` to a shared element would change it in every view (replace an
  element with ``view[tag] = DataElement(...)`` instead).
- Enhanced PET carries no Units, DecayCorrection or CorrectedImage (PS3.3 Enhanced PET Image
  IOD): units are in the RWVM (above); the Enhanced PET Corrections Module has YES/NO flags
  (DecayCorrected, AttenuationCorrected, ScatterCorrected, …), mapped to the CorrectedImage
  terms (DECY, ATTN, SCAT, …), and DecayCorrectionDateTime, the time every frame is
  decay-corrected to: equal (within :data:`DECAY_REFERENCE_TOLERANCE_S`) to the injection
  time it is DecayCorrection ADMIN, equal to the scan time :mod:`.pet_suv` uses (series time,
  or the earliest acquisition) it is START; any other time is refused, because the QIBA
  formula would decay the dose to the wrong moment.
- A file holding several volumes (echoes, b-values, temporal positions, stacks, magnitude and
  phase) is refused with one line naming the extra dimension(s) and their sizes, read from
  StackID, TemporalPositionIndex, echo time, b-value and the other :data:`KNOWN_DIMENSIONS`,
  then from the file's own DimensionIndexSequence — never by silently picking one volume.
- ``Frame.label`` is "<file> frame <n>" with the DICOM frame number n (1-based);
  ``Frame.frame_index`` is the 0-based index into the decoded pixel array, in file order
  (None for a one-frame file, whose decoded array is 2-D).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from viewer.core.errors import file_error
from viewer.core.io.dicom_frames import (
    Frame,
    orientation,
    pixel_spacing,
    rescale_value,
    rows_columns,
    slice_thickness,
    vector,
)
from viewer.core.io.dicom_scan import PIXEL_KEYWORDS, number_of_frames, tag_text
from viewer.core.io.pet_suv import parse_da, parse_dt, parse_tm, scan_datetime

#: SOP classes read as images (Enhanced and Legacy Converted Enhanced MR, CT, PET).
IMAGE_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image",
    "1.2.840.10008.5.1.4.1.1.4.4": "Legacy Converted Enhanced MR Image",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image",
    "1.2.840.10008.5.1.4.1.1.130": "Enhanced PET Image",
    "1.2.840.10008.5.1.4.1.1.128.1": "Legacy Converted Enhanced PET Image",
}
SEGMENTATION_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"

#: Functional group macros whose contents are copied into a frame's view, in this order.
FLATTENED_MACROS: tuple[str, ...] = (
    "UnassignedSharedConvertedAttributesSequence",
    "UnassignedPerFrameConvertedAttributesSequence",
    "MRImageFrameTypeSequence", "CTImageFrameTypeSequence", "PETFrameTypeSequence",
    "FrameContentSequence", "PlanePositionSequence", "PlaneOrientationSequence",
    "PixelMeasuresSequence", "PixelValueTransformationSequence", "FrameVOILUTSequence",
    "MREchoSequence", "MRDiffusionSequence", "MRTimingAndRelatedParametersSequence",
    "MRModifierSequence", "CardiacSynchronizationSequence", "TemporalPositionSequence",
    "PETFrameCorrectionFactorsSequence", "PETFrameAcquisitionSequence",
)
#: Top-level elements never copied into a view (the frames' own groups, and pixels).
_NOT_IN_VIEW = {Tag("PerFrameFunctionalGroupsSequence"), Tag("SharedFunctionalGroupsSequence"),
                *(Tag(keyword) for keyword in PIXEL_KEYWORDS)}

#: Name of the Python attribute of a view saying which value mapping was applied.
VALUE_MAPPING_ATTRIBUTE = "value_mapping"
#: MeasurementUnitsCodeSequence values that mean "no unit" (the RWVM is then not preferred).
UNDEFINED_UNITS = {"", "1", "no units", "undefined", "none"}
#: Philips writes RealWorldValueSlope ≈ 1.7e38 (FLT_MAX) for "no map"; dcm2niix ignores
#: slopes above 1e38, and so do we.
RWVM_INVALID_SLOPE = 1e37
#: RWVM units (UCUM CodeValue) a PET SUV can be computed from → PET Units, in preference order.
PET_RWVM_UNITS: dict[str, str] = {"bq/ml": "BQML", "{suvbw}g/ml": "GML", "{counts}": "CNTS"}

#: Enhanced PET Corrections Module flag → CorrectedImage defined term (PET Series Module).
PET_CORRECTION_FLAGS: dict[str, str] = {
    "DecayCorrected": "DECY", "AttenuationCorrected": "ATTN", "ScatterCorrected": "SCAT",
    "DeadTimeCorrected": "DTIM", "GantryMotionCorrected": "MOTN", "PatientMotionCorrected": "PMOT",
    "CountLossNormalizationCorrected": "CLN", "RandomsCorrected": "RAN",
    "NonUniformRadialSamplingCorrected": "RADL", "SensitivityCalibrated": "DCAL",
    "DetectorNormalizationCorrection": "NORM",
}
#: DecayCorrectionDateTime may differ from the injection or scan time by this much (s): DT
#: values are written to the second, and 1 s changes an F-18 decay factor by 1e-4.
DECAY_REFERENCE_TOLERANCE_S = 1.0

#: Frames whose origins agree to this grid (mm) and orientations to ORIENTATION_KEY are at
#: the same place (several echoes or time points of one slice).
SAME_POSITION_MM = 0.01
ORIENTATION_KEY = 1e-4

#: Non-spatial dimensions a file may hold: (view keyword, plural name, unit shown or "").
KNOWN_DIMENSIONS: tuple[tuple[str, str, str], ...] = (
    ("StackID", "stacks", ""),
    ("TemporalPositionIndex", "temporal positions", ""),
    ("TemporalPositionIdentifier", "temporal positions", ""),
    ("EffectiveEchoTime", "echo times", " ms"),
    ("EchoNumbers", "echoes", ""),
    ("DiffusionBValue", "b-values", " s/mm²"),
    ("DiffusionGradientOrientation", "diffusion directions", ""),
    ("ComplexImageComponent", "image components", ""),
    ("InversionTimes", "inversion times", " ms"),
    ("NominalCardiacTriggerDelayTime", "cardiac phases", " ms"),
    ("FrameType", "frame types", ""),
)
#: DimensionIndexSequence pointers that are positions within one volume, not extra dimensions.
SPATIAL_DIMENSION_KEYWORDS = {"ImagePositionPatient", "InStackPositionNumber", "SliceLocation",
                              "FrameAcquisitionNumber"}
#: Dimension values are listed in the message when there are at most this many.
MAX_VALUES_SHOWN = 6

_DT_PATTERN = re.compile(r"(\d{8})(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?(?:[+-]\d{4})?")


@dataclass(frozen=True)
class _ValueMapping:
    """Stored value → real value of one frame: slope, intercept and where they came from."""

    slope: float
    intercept: float
    source: str
    units: str = ""


# -- public API ---------------------------------------------------------------------------------
def enhanced_frames(where: Path, path: Path, ds: Dataset) -> list[Frame]:
    """Every frame of an enhanced multi-frame file, in file order.

    Args:
        where: what error messages name (the folder or file the user opened).
        path: the file.
        ds: its header (pixel data deferred), as scanned by :mod:`.dicom_scan`.

    Raises:
        ViewerError: not an enhanced MR/CT/PET image, missing or malformed geometry, several
            volumes in the file, or (PET) units/decay correction that cannot be mapped.
    """
    _check_sop_class(where, path, ds)
    items = _per_frame_items(where, path, ds)
    shared = _shared_item(ds)
    base = _base_elements(ds)
    shape = rows_columns(where, path.name, ds)
    single = len(items) == 1
    frames = [_frame(where, path, ds, base, shared, item, index, shape, single)
              for index, item in enumerate(items)]
    _check_single_volume(where, path, ds, frames)
    if tag_text(ds, "Modality").upper() == "PT":
        _map_enhanced_pet(where, path, [frame.ds for frame in frames])
    return frames


# -- which files --------------------------------------------------------------------------------
def _check_sop_class(where: Path, path: Path, ds: Dataset) -> None:
    """Refuse objects with functional groups that are not enhanced MR/CT/PET images."""
    meta = getattr(ds, "file_meta", None)
    sop = tag_text(ds, "SOPClassUID") or str(getattr(meta, "MediaStorageSOPClassUID", "") or "")
    if sop in IMAGE_SOP_CLASSES:
        return
    name = UID(sop).name if sop else "object without SOPClassUID"
    if sop == SEGMENTATION_SOP_CLASS:
        raise file_error(where, f"{path.name} is a DICOM Segmentation (a label map of regions), not an image; "
                                "it cannot be opened as an image layer")
    raise file_error(where, f"{path.name} is a {name} object with {number_of_frames(ds)} frames, not an "
                            "enhanced MR, CT or PET image; it cannot be read as a volume")


def _per_frame_items(where: Path, path: Path, ds: Dataset) -> list[Dataset]:
    """One PerFrameFunctionalGroupsSequence item per frame (empty items for a one-frame file
    described by its shared groups only)."""
    n = number_of_frames(ds)
    items = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    if not items and n == 1:
        return [Dataset()]
    if len(items) != n:
        raise file_error(where, f"{path.name}: PerFrameFunctionalGroupsSequence has {len(items)} items for "
                                f"NumberOfFrames {n}")
    return items


def _shared_item(ds: Dataset) -> Dataset:
    shared = ds.get("SharedFunctionalGroupsSequence")
    return shared[0] if shared else Dataset()


# -- one frame ----------------------------------------------------------------------------------
def _frame(where: Path, path: Path, ds: Dataset, base: dict[BaseTag, Any], shared: Dataset,
           item: Dataset, index: int, shape: tuple[int, int], single: bool) -> Frame:
    """One frame: its view, geometry (mm, LPS) and value mapping."""
    label = f"{path.name} frame {index + 1}"
    view = _view(base, ds, shared, item)
    position = _required_macro(where, label, item, shared, "PlanePositionSequence", "ImagePositionPatient")
    origin = vector(where, label, position, "ImagePositionPatient", 3)
    orient_ds = _macro_or_top(where, label, item, shared, ds, "PlaneOrientationSequence", "ImageOrientationPatient")
    row_cos, col_cos = orientation(where, label, vector(where, label, orient_ds, "ImageOrientationPatient", 6))
    measures = _macro_or_top(where, label, item, shared, ds, "PixelMeasuresSequence", "PixelSpacing")
    spacing = pixel_spacing(where, label, vector(where, label, measures, "PixelSpacing", 2))
    mapping = _value_mapping(where, label, view, item, shared, ds)
    _set_derived(view, origin, np.concatenate([row_cos, col_cos]), spacing, measures, ds, mapping)
    return Frame(
        path=path, ds=view, label=label, row_cosine=row_cos, col_cosine=col_cos, origin_lps=origin,
        pixel_spacing_mm=spacing, shape=shape, slope=mapping.slope, intercept=mapping.intercept,
        frame_index=None if single else index, thickness_mm=slice_thickness(view),
    )


def _macro(item: Dataset, shared: Dataset, sequence: str) -> Dataset | None:
    """The macro's item: from the frame's per-frame groups, else from the shared groups."""
    for group in (item, shared):
        value = group.get(sequence)
        if value:
            return value[0]
    return None


def _required_macro(where: Path, label: str, item: Dataset, shared: Dataset, sequence: str,
                    tag: str) -> Dataset:
    """A macro that must be there (the frame's position), naming tag and frame when not."""
    macro = _macro(item, shared, sequence)
    if macro is None or tag not in macro:
        raise file_error(where, f"{label}: {tag} is missing (no {sequence} in its per-frame or shared "
                                "functional groups)")
    return macro


def _macro_or_top(where: Path, label: str, item: Dataset, shared: Dataset, ds: Dataset, sequence: str,
                  tag: str) -> Dataset:
    """The macro holding ``tag``, else the top-level dataset (which converters sometimes fill)."""
    macro = _macro(item, shared, sequence)
    if macro is not None and tag in macro:
        return macro
    if tag in ds:
        return ds
    raise file_error(where, f"{label}: {tag} is missing (no {sequence} in its per-frame or shared functional "
                            "groups, nor at the top level)")


# -- the per-frame view -------------------------------------------------------------------------
def _base_elements(ds: Dataset) -> dict[BaseTag, Any]:
    """The file's top-level elements a view starts from (shared objects, not copies).

    Deferred elements (larger than the scan's defer size) are left out: reading them needs the
    file, and none of them describes a frame.
    """
    base: dict[BaseTag, Any] = {}
    for tag in list(ds.keys()):
        if tag in _NOT_IN_VIEW:
            continue
        raw = ds.get_item(tag, keep_deferred=True)
        if isinstance(raw, RawDataElement) and raw.value is None and raw.length:
            continue
        base[tag] = ds[tag]
    return base


def _view(base: dict[BaseTag, Any], ds: Dataset, shared: Dataset, item: Dataset) -> Dataset:
    """A Dataset describing one frame: top level, converted attributes, then its macros."""
    view = Dataset(dict(base))
    if hasattr(ds, "file_meta"):
        view.file_meta = ds.file_meta
    for sequence in FLATTENED_MACROS:
        for group in (shared, item):  # per-frame last, so it wins
            value = group.get(sequence)
            if value:
                _copy_elements(view, value[0])
    for group in (item, shared):  # the maps apply as a whole: per-frame ones replace shared ones
        if "RealWorldValueMappingSequence" in group:
            element = group["RealWorldValueMappingSequence"]
            view[element.tag] = element
            break
    return view


def _copy_elements(view: Dataset, source: Dataset) -> None:
    """Put every element of ``source`` into ``view`` (the element objects, not copies)."""
    for tag in list(source.keys()):
        view[tag] = source[tag]


def _set_derived(view: Dataset, origin: np.ndarray, orientation_values: np.ndarray,
                 spacing: tuple[float, float], measures: Dataset, ds: Dataset, mapping: _ValueMapping) -> None:
    """Write the frame's own geometry, rescale and acquisition time into its view."""
    _put(view, "ImagePositionPatient", "DS", [_ds(v) for v in origin])
    _put(view, "ImageOrientationPatient", "DS", [_ds(v) for v in orientation_values])
    _put(view, "PixelSpacing", "DS", [_ds(v) for v in spacing])
    for tag in ("SliceThickness", "SpacingBetweenSlices"):
        text = tag_text(measures, tag) or tag_text(ds, tag)
        if text:
            _put(view, tag, "DS", text)
    _put(view, "RescaleSlope", "DS", _ds(mapping.slope))
    _put(view, "RescaleIntercept", "DS", _ds(mapping.intercept))
    if mapping.units:
        _put(view, "RescaleType", "LO", mapping.units[:64])
    setattr(view, VALUE_MAPPING_ATTRIBUTE, mapping.source)
    _set_acquisition_time(view)


def _set_acquisition_time(view: Dataset) -> None:
    """AcquisitionDate/AcquisitionTime (what classic files and :mod:`.pet_suv` read) from the
    frame's FrameAcquisitionDateTime, else from the top-level AcquisitionDateTime when the
    file has no AcquisitionDate/Time. The UTC offset, if any, is dropped: the series time it is
    compared with has none."""
    text = tag_text(view, "FrameAcquisitionDateTime")
    if not text and not tag_text(view, "AcquisitionTime"):
        text = tag_text(view, "AcquisitionDateTime")
    match = _DT_PATTERN.fullmatch(text) if text else None
    if match is None:
        return
    day, clock = match.groups()
    _put(view, "AcquisitionDate", "DA", day)
    if clock:
        _put(view, "AcquisitionTime", "TM", clock)


def _put(view: Dataset, keyword: str, vr: str, value: Any) -> None:
    """Set an element of the view as a *new* element (never mutating a shared one)."""
    view[Tag(keyword)] = DataElement(Tag(keyword), vr, value)


def _ds(value: float) -> str:
    """A DS (decimal string, ≤ 16 characters) as precise as fits."""
    for digits in range(16, 3, -1):
        text = format(float(value), f".{digits}g")
        if len(text) <= 16:
            return text
    return format(float(value), ".4g")


# -- values -------------------------------------------------------------------------------------
def _value_mapping(where: Path, label: str, view: Dataset, item: Dataset, shared: Dataset,
                   ds: Dataset) -> _ValueMapping:
    """Which stored → real mapping applies to this frame (module docstring, "Values")."""
    transformation = _macro(item, shared, "PixelValueTransformationSequence")
    maps = _linear_rwvm(view)
    if tag_text(view, "Modality").upper() == "PT":
        return _pet_mapping(where, label, view, transformation, ds, maps)
    defined = [m for m in maps if m.units.lower() not in UNDEFINED_UNITS]
    if defined:
        return defined[0]
    rescale = _rescale(where, label, transformation, ds)
    if rescale is not None:
        return rescale
    if maps:
        return maps[0]
    return _ValueMapping(1.0, 0.0, "none (stored values)")


def _rescale(where: Path, label: str, transformation: Dataset | None, ds: Dataset) -> _ValueMapping | None:
    """Pixel Value Transformation, else the top-level RescaleSlope/Intercept, else None."""
    for source, name in ((transformation, "Pixel Value Transformation"), (ds, "top-level rescale")):
        if source is not None and ("RescaleSlope" in source or "RescaleIntercept" in source):
            return _ValueMapping(rescale_value(where, label, source, "RescaleSlope", 1.0),
                                 rescale_value(where, label, source, "RescaleIntercept", 0.0), name,
                                 tag_text(source, "RescaleType"))
    return None


def _linear_rwvm(view: Dataset) -> list[_ValueMapping]:
    """The frame's linear Real World Value Maps (LUT maps are skipped), in file order."""
    maps = []
    for rwvm in view.get("RealWorldValueMappingSequence") or []:
        if "RealWorldValueSlope" not in rwvm or rwvm.get("RealWorldValueSlope") is None:
            continue
        slope = float(rwvm.RealWorldValueSlope)
        intercept = float(rwvm.get("RealWorldValueIntercept") or 0.0)
        if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0 or abs(slope) > RWVM_INVALID_SLOPE:
            continue
        units = _rwvm_units(rwvm)
        name = tag_text(rwvm, "LUTLabel") or tag_text(rwvm, "LUTExplanation")
        source = f"Real World Value Mapping{f' {name!r}' if name else ''} ({units or 'no units'})"
        maps.append(_ValueMapping(slope, intercept, source, units))
    return maps


def _rwvm_units(rwvm: Dataset) -> str:
    """The map's unit: UCUM CodeValue, else CodeMeaning ('' when absent or "no units")."""
    codes = rwvm.get("MeasurementUnitsCodeSequence")
    if not codes:
        return ""
    value, meaning = tag_text(codes[0], "CodeValue"), tag_text(codes[0], "CodeMeaning")
    if meaning.lower() in UNDEFINED_UNITS:
        return ""
    return value or meaning


def _pet_mapping(where: Path, label: str, view: Dataset, transformation: Dataset | None, ds: Dataset,
                 maps: list[_ValueMapping]) -> _ValueMapping:
    """PET: the rescale when Units is given (QIBA, like classic PET; without a rescale, an RWVM
    in those units); else the RWVM that says the unit, and Units from it (true Enhanced PET)."""
    units = tag_text(view, "Units").upper()
    if units:
        rescale = _rescale(where, label, transformation, ds)
        in_units = [m for m in maps if PET_RWVM_UNITS.get(m.units.lower()) == units]
        return rescale or (in_units[0] if in_units else _ValueMapping(1.0, 0.0, "none (stored values)"))
    for unit, pet_units in PET_RWVM_UNITS.items():
        for mapping in maps:
            if mapping.units.lower() == unit:
                _put(view, "Units", "CS", pet_units)
                return mapping
    found = ", ".join(m.units or "no units" for m in maps) or "none"
    raise file_error(where, f"{label}: cannot compute SUV: the PET frame has no Units and no Real World Value "
                            f"Mapping in Bq/ml, {{SUVbw}}g/ml or {{counts}} (found: {found})")


# -- Enhanced PET ---------------------------------------------------------------------------------
def _map_enhanced_pet(where: Path, path: Path, views: list[Dataset]) -> None:
    """Give true Enhanced PET views the classic CorrectedImage and DecayCorrection tags.

    Legacy Converted files keep the classic tags and are left alone.
    """
    if not views or ("CorrectedImage" in views[0] and "DecayCorrection" in views[0]):
        return
    for view in views:
        if "CorrectedImage" not in view:
            corrected = [term for flag, term in PET_CORRECTION_FLAGS.items()
                         if tag_text(view, flag).upper() == "YES"]
            if corrected:
                _put(view, "CorrectedImage", "CS", corrected)
    if "DecayCorrection" not in views[0] and "DecayCorrected" in views[0]:
        decay = _decay_correction(where, path, views)
        for view in views:
            _put(view, "DecayCorrection", "CS", decay)


def _decay_correction(where: Path, path: Path, views: list[Dataset]) -> str:
    """START, ADMIN or NONE from DecayCorrected and DecayCorrectionDateTime."""
    first = views[0]
    if tag_text(first, "DecayCorrected").upper() != "YES":
        return "NONE"
    text = tag_text(first, "DecayCorrectionDateTime")
    if not text:
        raise file_error(where, f"{path.name}: cannot compute SUV: DecayCorrected is YES but "
                                "DecayCorrectionDateTime is missing")
    reference = parse_dt(text, "DecayCorrectionDateTime", where)
    info = (first.get("RadiopharmaceuticalInformationSequence") or [Dataset()])[0]
    injection = _injection(info, first, where)
    if injection is not None and _same_time(reference, injection):
        return "ADMIN"
    scan = scan_datetime(views, where)
    if _same_time(reference, scan):
        return "START"
    raise file_error(where, f"{path.name}: cannot compute SUV: the frames are decay-corrected to "
                            f"{reference.isoformat()} (DecayCorrectionDateTime), which is neither the scan "
                            f"start {scan.isoformat()} nor the injection time"
                            f"{' ' + injection.isoformat() if injection else ''}")


def _injection(info: Dataset, view: Dataset, where: Path) -> datetime | None:
    """RadiopharmaceuticalStartDateTime, else StartTime on the series date (None if neither)."""
    full = tag_text(info, "RadiopharmaceuticalStartDateTime")
    if full:
        return parse_dt(full, "RadiopharmaceuticalStartDateTime", where)
    start, day = tag_text(info, "RadiopharmaceuticalStartTime"), tag_text(view, "SeriesDate")
    if start and day:
        start_time = parse_tm(start, "RadiopharmaceuticalStartTime", where)
        return datetime.combine(parse_da(day, "SeriesDate", where), start_time)
    return None


def _same_time(a: datetime, b: datetime) -> bool:
    return abs((a - b).total_seconds()) <= DECAY_REFERENCE_TOLERANCE_S


# -- one volume per file --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Dimension:
    """A candidate extra dimension: its name and each frame's value."""

    name: str
    unit: str
    values: tuple[Any, ...]

    @property
    def distinct(self) -> list[Any]:
        return sorted(set(self.values), key=_sort_key)

    def describe(self) -> str:
        """"3 echo times (2.5, 5, 7.5 ms)"."""
        distinct = self.distinct
        text = f"{len(distinct)} {self.name}"
        if self.unit and len(distinct) <= MAX_VALUES_SHOWN:
            text += f" ({', '.join(_show(v) for v in distinct)}{self.unit})"
        return text


def _check_single_volume(where: Path, path: Path, ds: Dataset, frames: list[Frame]) -> None:
    """Refuse a file holding several volumes, naming what tells them apart.

    Frames at one place (origin and orientation) are several volumes' slices; several stacks
    are several volumes even at different places.
    """
    groups = _position_groups(frames)
    candidates = _candidate_dimensions(ds, frames)
    stacks = next((c for c in candidates if c.name == "stacks"), None)
    several_stacks = stacks is not None and len(stacks.distinct) > 1
    if all(len(group) == 1 for group in groups) and not several_stacks:
        return
    chosen = _explaining_dimensions(groups, candidates, several_stacks)
    if chosen is None:
        positions = len(groups)
        raise file_error(where, f"{path.name} holds {len(frames)} frames at only {positions} slice positions, "
                                "and none of StackID, TemporalPositionIndex, echo time, b-value or its "
                                "DimensionIndexSequence tells them apart; it cannot be read as one volume")
    first = tuple(d.values[0] for d in chosen)
    slices = sum(1 for k in range(len(frames)) if tuple(d.values[k] for d in chosen) == first)
    dims = " × ".join(d.describe() for d in chosen)
    raise file_error(where, f"{path.name} holds {dims} × {slices} slices; choose a single volume (one 3-D "
                            "volume per file is read)")


def _position_groups(frames: list[Frame]) -> list[list[int]]:
    """Frame indices grouped by place (origin on a :data:`SAME_POSITION_MM` grid, orientation)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, frame in enumerate(frames):
        key = (*np.round(frame.origin_lps / SAME_POSITION_MM).astype(np.int64),
               *np.round(np.concatenate([frame.row_cosine, frame.col_cosine]) / ORIENTATION_KEY).astype(np.int64))
        groups.setdefault(tuple(int(v) for v in key), []).append(k)
    return list(groups.values())


def _candidate_dimensions(ds: Dataset, frames: list[Frame]) -> list[_Dimension]:
    """Known dimensions first (:data:`KNOWN_DIMENSIONS`), then the file's own non-spatial
    DimensionIndexSequence entries (by their DimensionIndexValues)."""
    views = [frame.ds for frame in frames]
    found = [_Dimension(name, unit, tuple(_dimension_value(view, keyword) for view in views))
             for keyword, name, unit in KNOWN_DIMENSIONS]
    known = {keyword for keyword, _, _ in KNOWN_DIMENSIONS}
    for position, pointer in enumerate(ds.get("DimensionIndexSequence") or []):
        keyword = _pointer_keyword(pointer)
        if keyword in SPATIAL_DIMENSION_KEYWORDS or keyword in known:
            continue
        name = tag_text(pointer, "DimensionDescriptionLabel") or keyword or "unnamed dimension"
        found.append(_Dimension(f"values of {name}", "",
                                tuple(_index_value(view, position) for view in views)))
    return found


def _explaining_dimensions(groups: list[list[int]], candidates: list[_Dimension],
                           several_stacks: bool) -> list[_Dimension] | None:
    """The fewest candidates, in order, that tell apart the frames of every place (None when
    they cannot); several stacks always count."""
    chosen = [c for c in candidates if c.name == "stacks"] if several_stacks else []

    def separated() -> bool:
        for group in groups:
            keys = {tuple(d.values[k] for d in chosen) for k in group}
            if len(keys) != len(group):
                return False
        return True

    for candidate in candidates:
        if separated():
            break
        if candidate in chosen or not any(len({candidate.values[k] for k in g}) > 1 for g in groups):
            continue
        chosen.append(candidate)
    return chosen if chosen and separated() else None


def _dimension_value(view: Dataset, keyword: str) -> Any:
    """A frame's value of a candidate dimension, hashable (None when absent)."""
    if keyword == "DiffusionGradientOrientation":
        directions = view.get("DiffusionGradientDirectionSequence")
        view = directions[0] if directions else Dataset()
    value = view.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, (str, bytes)):
        return str(value).strip()
    if isinstance(value, Iterable):
        return tuple(_scalar(v) for v in value)
    return _scalar(value)


def _index_value(view: Dataset, position: int) -> Any:
    values = view.get("DimensionIndexValues")
    if values is None:
        return None
    values = [values] if isinstance(values, int) else list(values)
    return int(values[position]) if position < len(values) else None


def _pointer_keyword(pointer: Dataset) -> str:
    """Keyword of a DimensionIndexSequence item's DimensionIndexPointer ('' when unknown)."""
    from pydicom.datadict import keyword_for_tag

    tag = pointer.get("DimensionIndexPointer")
    return keyword_for_tag(tag) if tag is not None else ""


def _scalar(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value).strip()


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, float):
        return (1, value)
    return (2, str(value))


def _show(value: Any) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


__all__ = ["IMAGE_SOP_CLASSES", "VALUE_MAPPING_ATTRIBUTE", "enhanced_frames"]
