"""Reading one DICOM image series as a :class:`Volume`.

What is accepted: a folder (searched recursively, any file names), a DICOMDIR, or a single
file (an enhanced multi-frame or MOSAIC file is a whole volume). Files are found and grouped
by :mod:`viewer.core.io.dicom_scan`; each file becomes frames (:mod:`viewer.core.io.dicom_frames`:
classic slices, MOSAIC tiles, enhanced frames); this module sorts the frames, checks that one
affine can place them and reads the pixels.

Why these rules:
- A folder may hold several series; the caller must pick one (the error lists them) rather
  than getting an arbitrary one or a mix.
- Frames are ordered by their position along the slice normal
  (``normal = row_cosine × col_cosine``, ``position = normal · ImagePositionPatient``), never
  by file name, InstanceNumber or frame number, which scanners and anonymisers do not keep in
  order.
- The slice step is measured from the positions, not taken from SliceThickness (which is the
  slab thickness and may differ from the gap, e.g. overlapping or gapped slices). A series
  with missing slices (non-uniform gaps), duplicate positions (several echoes or time points
  in one series) or slices of different orientation or size is refused, because no single
  affine can place it.
- The third affine column is the measured step vector between consecutive slice origins. For
  ordinary series it equals ``normal · gap``; for CT with gantry tilt it is not along the
  normal, and using the step vector keeps every voxel where the scanner put it (the affine is
  then sheared; the tilt is recorded in ``meta["gantry_tilt_deg"]``).
- Each frame's own rescale slope and intercept is applied (PET slopes differ per slice).
- Pixel data is decoded by pydicom with the pylibjpeg plugins (JPEG baseline, extended and
  lossless, JPEG-LS, JPEG 2000, RLE); deflate and big-endian are pydicom's own. Each file is
  decoded once, even when it holds many frames or mosaic tiles, from a fresh read of the file
  (a deflated file cannot be read lazily, so the scanned header is not reused).
- DICOM patient space is LPS (+x left, +y posterior); volumes are RAS, so x and y rows of the
  affine are negated.
- Array axes: ``data[i, j, k]``, i = column index (along the row direction cosine), j = row
  index (along the column direction cosine), k = slice in sorted order; pydicom's
  ``pixel_array`` is ``[row, column]`` and is transposed.
- A PET series (Modality PT, or ``role="pet"``) is converted to SUV with
  :mod:`viewer.core.io.pet_suv`, and refused if the tags do not allow it; the role stays the
  one the caller asked for.
- The tags that identify the patient, the visit, the site and its staff are recorded in
  ``meta["identifiers"]`` (keyword → text values) when the series is read, because a
  de-identified report must remove them wherever they turn up (PRODUCT.md §6) and only the
  reader sees the tags. They come from the headers already scanned, so recording them costs no
  file read: the patient, study, series and equipment modules are shared by every file of a
  series (first file), while the image's own dates and times (AcquisitionTime, ContentTime …)
  differ per file and are taken from every file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from viewer.core.errors import file_error
from viewer.core.io.dicom_frames import Frame, frames_of_file
from viewer.core.io.dicom_scan import (
    PIXEL_KEYWORDS,
    DicomSeries,
    image_series,
    number_of_frames,
    short_error,
    tag_text,
)
from viewer.core.io.nifti import check_affine
from viewer.core.io.pet_suv import suv_conversion
from viewer.core.volume import Volume

#: Slice gaps may differ from the median gap by this fraction of it … (dimensionless)
SPACING_RELATIVE_TOLERANCE = 0.01
#: … or by this many mm, whichever is larger. Scanners write positions rounded to ~1e-5 mm;
#: a missing slice changes a gap by 100 %, so this tolerance cannot hide one.
SPACING_ABSOLUTE_TOLERANCE_MM = 0.01
#: Two slices closer than this along the normal (mm) are duplicates (echoes, time points).
DUPLICATE_POSITION_TOLERANCE_MM = 0.01
#: Largest difference between direction-cosine components for slices to share orientation.
ORIENTATION_TOLERANCE = 1e-4
#: Largest difference between PixelSpacing values of the slices (mm).
PIXEL_SPACING_TOLERANCE_MM = 1e-4
#: Gantry tilt (degrees) below which the step vector is treated as along the normal in meta.
TILT_REPORT_THRESHOLD_DEG = 0.01
#: LPS → RAS: negate x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Tags naming or numbering the patient, the visit, the site or its staff (PRODUCT.md §6; the
#: PS3.15 Basic Profile's list, narrowed to what a report could print), recorded in
#: ``meta["identifiers"]``. Found at any depth (OtherPatientIDsSequence holds PatientID and
#: IssuerOfPatientID items). Every date, time and date-time element is recorded as well.
IDENTIFYING_KEYWORDS: frozenset[str] = frozenset({
    "PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName", "IssuerOfPatientID", "PatientBirthDate", "PatientBirthTime", "PatientAddress",
    "PatientTelephoneNumbers", "AccessionNumber", "StudyID", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "ReferringPhysicianName", "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy", "PhysiciansOfRecord", "RequestingPhysician", "OperatorsName", "StationName",
    "DeviceSerialNumber",
})
#: Identifying tags of the General Image and SOP Common modules, which differ from file to file.
PER_FILE_IDENTIFYING_KEYWORDS: tuple[str, ...] = (
    "AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime", "ContentDate", "ContentTime",
    "InstanceCreationDate", "InstanceCreationTime",
)
#: Value representations whose every value is an identifier: dates, times, date-times.
_DATE_TIME_VRS = frozenset({"DA", "TM", "DT"})
_PIXEL_TAGS = frozenset(Tag(keyword) for keyword in PIXEL_KEYWORDS)
#: Keywords recorded under another name inside a sequence (an item's PatientID there is another ID).
_NESTED_KEYWORDS: Mapping[str, Mapping[str, str]] = {"OtherPatientIDsSequence": {"PatientID": "OtherPatientIDs"}}


@dataclass(frozen=True)
class DicomSeriesInfo:
    """One series found in a folder (for choosing between several)."""

    series_uid: str
    description: str
    modality: str
    n_files: int

    def summary(self) -> str:
        """``UID (description, modality, N files)``."""
        description = self.description or "no description"
        return f"{self.series_uid} ({description}, {self.modality or '?'}, {self.n_files} files)"


@dataclass(frozen=True)
class _Geometry:
    """The series' sorted frames and its voxel→LPS affine."""

    frames: list[Frame]
    affine_lps: np.ndarray
    slice_gap_mm: float
    tilt_deg: float


@dataclass(frozen=True)
class SeriesGeometry:
    """Where a series' voxels are, known from its headers alone (no pixel decoded).

    Attributes:
        shape: (columns, rows, slices) — the volume's ``data.shape``.
        voxel_to_world: 4×4 RAS affine (mm).
        spacing_mm: voxel size along i, j, k (mm).
    """

    shape: tuple[int, int, int]
    voxel_to_world: np.ndarray
    spacing_mm: tuple[float, float, float]


# -- public API ---------------------------------------------------------------------------------
def list_dicom_series(path: str | Path) -> list[DicomSeriesInfo]:
    """The image series under ``path`` (sorted by UID).

    Raises:
        ViewerError: the path is missing or holds no DICOM image file.
    """
    path = _check_path(path)
    return sorted((_series_info(s) for s in image_series([path])), key=lambda info: info.series_uid)


def load_dicom_series(
    path: str | Path, role: str = "anatomical", name: str = "", series_uid: str | None = None
) -> Volume:
    """Read one DICOM image series as a float32 :class:`Volume` in RAS world space.

    Args:
        path: a folder holding the series' files (searched recursively), a DICOMDIR, or one
            file (enhanced multi-frame, MOSAIC, or a single slice).
        role: the layer's role. A PET series (Modality PT) is always read in SUV; its role stays
            the one asked for, so a PET opened on its own is the study's anatomy (in SUV) and
            the layer keys and the volumes' roles never disagree.
        name: layer name (defaults to SeriesDescription, else the folder name).
        series_uid: which series to read when the path holds several.

    Raises:
        ViewerError: one line naming the path (and file) and the problem.
    """
    path = _check_path(path)
    series = _choose_series(path, image_series([path]), series_uid)
    return volume_from_series(path, series, role=role, name=name)


def series_geometry(where: Path, series: DicomSeries) -> SeriesGeometry:
    """Check that one affine places the series and return it, reading headers only.

    The importer calls this for every series it proposes, so a series with missing slices
    or mixed orientations is refused before anything is written, at the cost of a header scan.

    Raises:
        ViewerError: the series cannot be placed as one volume (the message names the file).
    """
    geometry = _geometry(where, [frame for path, ds in series.files for frame in frames_of_file(where, path, ds)])
    rows, cols = geometry.frames[0].shape
    affine = LPS_TO_RAS @ geometry.affine_lps
    check_affine(where, affine)
    spacing = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    return SeriesGeometry((cols, rows, len(geometry.frames)), affine, spacing)  # type: ignore[arg-type]


def volume_from_series(where: Path, series: DicomSeries, role: str = "anatomical", name: str = "") -> Volume:
    """Read an already scanned series (see :func:`viewer.core.io.dicom_scan.scan_series`).

    ``where`` is what error messages name (the folder or file the user pointed at).
    """
    frames = [frame for path, ds in series.files for frame in frames_of_file(where, path, ds)]
    geometry = _geometry(where, frames)
    first = geometry.frames[0].ds
    modality = tag_text(first, "Modality").upper()

    meta: dict[str, Any] = {
        "format": "dicom",
        "series_uid": series.uid,
        "modality": modality,
        "description": series.description,
        "n_slices": len(geometry.frames),
        "slice_gap_mm": geometry.slice_gap_mm,
        "pixel_spacing_mm": list(geometry.frames[0].pixel_spacing_mm),
        "manufacturer": tag_text(first, "Manufacturer"),
        "identifiers": series_identifiers(series),
    }
    if geometry.tilt_deg > TILT_REPORT_THRESHOLD_DEG:
        meta["gantry_tilt_deg"] = geometry.tilt_deg

    factors = np.ones(len(geometry.frames))
    units = ""
    if role == "pet" or modality == "PT":
        conversion = suv_conversion([f.ds for f in geometry.frames], where)
        factors = np.asarray(conversion.factors, dtype=np.float64)
        meta.update(conversion.meta)
        units = "SUV"

    data = _read_pixels(where, geometry.frames, factors)
    affine = LPS_TO_RAS @ geometry.affine_lps
    check_affine(where, affine)
    default_name = series.description or (where.name if where.is_dir() else where.parent.name)
    return Volume(data, affine, role=role, units=units, name=name or default_name, source=where, meta=meta)


# -- identifiers ------------------------------------------------------------------------------
def series_identifiers(series: DicomSeries) -> dict[str, list[str]]:
    """Every identifying value of a series: keyword → distinct non-empty texts, in file order.

    The first file gives every :data:`IDENTIFYING_KEYWORDS` tag and every date/time element
    at any depth; every file gives :data:`PER_FILE_IDENTIFYING_KEYWORDS`. Only headers already
    in memory are read (pixel data and other deferred values are skipped, never loaded).
    """
    found: dict[str, list[str]] = {}
    if not series.files:
        return found
    _collect_identifiers(series.first, found, depth=0, renamed={})
    for _, ds in series.files[1:]:
        for keyword in PER_FILE_IDENTIFYING_KEYWORDS:
            _add_values(found, keyword, tag_text(ds, keyword))
    return found


def _collect_identifiers(ds: Dataset, found: dict[str, list[str]], depth: int, renamed: Mapping[str, str]) -> None:
    """Identifying elements of ``ds`` and of its sequence items (depth-limited: real headers
    nest a few levels; a malformed one must not recurse without end). ``renamed``: keywords
    recorded under another name in this sequence's items."""
    if depth > 8:
        return
    for tag in list(ds.keys()):
        if tag in _PIXEL_TAGS:
            continue
        element = ds.get_item(tag)
        if element is None or (isinstance(element, RawDataElement) and element.value is None):
            continue  # absent, or a deferred (large) value: not a header field
        vr = _vr_of(element)
        keyword = keyword_for_tag(tag) or str(tag)
        if vr == "SQ":
            for item in _sequence_items(ds, tag):
                _collect_identifiers(item, found, depth + 1, _NESTED_KEYWORDS.get(keyword, {}))
            continue
        if vr in _DATE_TIME_VRS or keyword in IDENTIFYING_KEYWORDS:
            _add_values(found, renamed.get(keyword, keyword), _element_text(ds, tag, keyword))


def _vr_of(element: Any) -> str:
    """The element's VR; implicit-VR files leave it to the dictionary ('' for unknown tags)."""
    vr = getattr(element, "VR", None)
    if vr and vr != "UN":
        return str(vr)
    try:
        return str(dictionary_VR(element.tag))
    except KeyError:
        return ""


def _sequence_items(ds: Dataset, tag: Any) -> list[Dataset]:
    """A sequence's items ([] when the sequence cannot be parsed: a damaged header is the
    reader's business, not the identifier collection's)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return list(ds[tag].value or [])
    except Exception:  # noqa: BLE001 — pydicom raises many kinds for a malformed sequence
        return []


def _element_text(ds: Dataset, tag: Any, keyword: str) -> str:
    """One element's values as text, ``\\`` between values (person names as written); '' for a
    value that cannot be decoded (the viewer cannot print what it cannot decode either)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if not keyword.startswith("("):
                return tag_text(ds, keyword)
            value = ds[tag].value
    except Exception:  # noqa: BLE001 — a value pydicom cannot decode (any charset or VR error)
        return ""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(str(v).strip() for v in value)
    return str(value or "").strip()


def _add_values(found: dict[str, list[str]], keyword: str, text: str) -> None:
    """Add each of the ``\\``-separated values of ``text`` once."""
    for value in text.split("\\"):
        value = value.strip(" \x00")
        if value and value not in found.setdefault(keyword, []):
            found[keyword].append(value)
    if not found.get(keyword):
        found.pop(keyword, None)


# -- choosing -----------------------------------------------------------------------------------
def _check_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise file_error(path, "folder not found")
    return path


def _series_info(series: DicomSeries) -> DicomSeriesInfo:
    return DicomSeriesInfo(series.uid, series.description, series.modality, series.n_files)


def _choose_series(where: Path, found: Sequence[DicomSeries], series_uid: str | None) -> DicomSeries:
    """The requested series, or the only one; otherwise an error listing them all."""
    listing = ", ".join(_series_info(s).summary() for s in sorted(found, key=lambda s: s.uid))
    if series_uid is not None:
        for series in found:
            if series.uid == series_uid:
                return series
        raise file_error(where, f"has no series {series_uid}; it contains {listing}")
    if len(found) > 1:
        raise file_error(where, f"contains {len(found)} series: {listing}; choose one with series_uid")
    return found[0]


# -- geometry -----------------------------------------------------------------------------------
def _geometry(where: Path, frames: list[Frame]) -> _Geometry:
    """Sort frames along the normal and build the voxel→LPS affine."""
    first = frames[0]
    normal = first.normal
    for frame in frames[1:]:
        _check_same_plane(where, frame, first)
    ordered = sorted(frames, key=lambda f: float(normal @ f.origin_lps))
    positions = np.array([float(normal @ f.origin_lps) for f in ordered])

    if len(ordered) == 1:
        step = normal * _single_slice_thickness(where, ordered[0])
    else:
        step = _slice_step(where, ordered, positions)
    gap = float(abs(normal @ step))
    tilt = float(np.degrees(np.arccos(min(1.0, gap / float(np.linalg.norm(step))))))

    row_spacing, col_spacing = first.pixel_spacing_mm
    affine = np.eye(4)
    affine[:3, 0] = first.row_cosine * col_spacing  # i runs along a row: one column per step
    affine[:3, 1] = first.col_cosine * row_spacing  # j runs down a column: one row per step
    affine[:3, 2] = step
    affine[:3, 3] = ordered[0].origin_lps
    return _Geometry(ordered, affine, gap, tilt)


def _slice_step(where: Path, frames: Sequence[Frame], positions: np.ndarray) -> np.ndarray:
    """Mean vector between consecutive slice origins, after checking they are evenly spaced."""
    gaps = np.diff(positions)
    smallest = int(np.argmin(gaps))
    if gaps[smallest] < DUPLICATE_POSITION_TOLERANCE_MM:
        _refuse_duplicates(where, frames, positions, smallest)
    median = float(np.median(gaps))
    tolerance = max(SPACING_RELATIVE_TOLERANCE * median, SPACING_ABSOLUTE_TOLERANCE_MM)
    worst = int(np.argmax(np.abs(gaps - median)))
    if abs(gaps[worst] - median) > tolerance:
        a, b = frames[worst].label, frames[worst + 1].label
        raise file_error(where, f"slice spacing is not uniform: gaps range from {gaps.min():.4g} to "
                                f"{gaps.max():.4g} mm (median {median:.4g} mm; {gaps[worst]:.4g} mm between "
                                f"{a} and {b}); a slice may be missing")
    origins = np.array([f.origin_lps for f in frames])
    step = (origins[-1] - origins[0]) / (len(frames) - 1)
    expected = origins[0] + np.arange(len(frames))[:, None] * step
    off_line = np.linalg.norm(origins - expected, axis=1)
    if off_line.max() > tolerance:
        bad = frames[int(np.argmax(off_line))].label
        raise file_error(where, f"slice origins do not lie on a straight line ({bad} is "
                                f"{off_line.max():.3g} mm off it)")
    return step


def _refuse_duplicates(where: Path, frames: Sequence[Frame], positions: np.ndarray, index: int) -> None:
    """Two frames at one position: name them, and when whole files are whole volumes (a 4-D
    series of MOSAIC or multi-frame files: fMRI time points, DWI directions), say how to
    load one."""
    a, b = frames[index], frames[index + 1]
    per_file: dict[Path, int] = {}
    for frame in frames:
        per_file[frame.path] = per_file.get(frame.path, 0) + 1
    if a.path != b.path and per_file[a.path] > 1 and per_file[b.path] > 1:
        raise file_error(where, f"{len(per_file)} files each hold a whole volume at the same slice positions "
                                f"({a.path.name} and {b.path.name}, …): a 4-D series (time points or diffusion "
                                "directions); open one of its files to load that volume")
    raise file_error(where, f"slices {a.label} and {b.label} are at the same position ({positions[index]:.3f} mm "
                            "along the normal); several echoes or time points in one series are not supported")


def _single_slice_thickness(where: Path, single: Frame) -> float:
    """Third-axis extent of a one-slice series: SliceThickness, else SpacingBetweenSlices (mm)."""
    if single.thickness_mm is None:
        raise file_error(where, f"single-slice series ({single.label}) has neither SliceThickness nor "
                                "SpacingBetweenSlices, so its voxel depth is unknown")
    return single.thickness_mm


def _check_same_plane(where: Path, frame: Frame, first: Frame) -> None:
    """Every frame must share orientation, PixelSpacing and size with the first."""
    difference = max(np.abs(frame.row_cosine - first.row_cosine).max(),
                     np.abs(frame.col_cosine - first.col_cosine).max())
    if difference > ORIENTATION_TOLERANCE:
        raise file_error(where, f"slices have different orientations (ImageOrientationPatient of {frame.label} "
                                f"differs from {first.label}); localizers or multi-stack series are not "
                                "supported")
    spacing, reference = frame.pixel_spacing_mm, first.pixel_spacing_mm
    if max(abs(spacing[0] - reference[0]), abs(spacing[1] - reference[1])) > PIXEL_SPACING_TOLERANCE_MM:
        raise file_error(where, f"slices have different PixelSpacing ({frame.label}: {spacing[0]:g}\\{spacing[1]:g} "
                                f"mm, {first.label}: {reference[0]:g}\\{reference[1]:g} mm)")
    if frame.shape != first.shape:
        raise file_error(where, f"slices have different sizes (Rows/Columns of {frame.label} differ from "
                                f"{first.label})")


# -- pixels -------------------------------------------------------------------------------------
def _read_pixels(where: Path, frames: Sequence[Frame], factors: np.ndarray) -> np.ndarray:
    """float32 ``[i, j, k]`` array: each frame's stored values · its slope + intercept, × factor.

    Files are decoded one at a time (all their frames at once) and released once their
    frames are copied, so memory holds the volume plus one file's pixels.
    """
    rows, cols = frames[0].shape
    data = np.empty((cols, rows, len(frames)), dtype=np.float32)
    slices_of_file: dict[Path, list[int]] = {}
    for k, frame in enumerate(frames):
        slices_of_file.setdefault(frame.path, []).append(k)
    for path, indices in slices_of_file.items():
        stored = _decode(where, frames[indices[0]])
        for k in indices:
            frame = frames[k]
            image = frame.cut(stored)
            if image.shape != frame.shape:
                raise file_error(where, f"{frame.label}: pixel data has shape {image.shape}, expected "
                                        f"{frame.shape}")
            data[:, :, k] = ((image.astype(np.float64) * frame.slope + frame.intercept) * factors[k]).T
    return data


#: Transfer syntaxes whose pixel data is the stored values as they are, little-endian.
_NATIVE_LITTLE_ENDIAN = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


def _native_pixels(frame: Frame) -> np.ndarray | None:
    """The stored values read straight from the file at the deferred PixelData's offset, for
    the common case where that is all decoding is: uncompressed little-endian, one sample per
    pixel, 8/16/32 bits with every allocated bit stored (no sign extension or masking to do).
    None otherwise (pydicom decodes those). Saves parsing each file a second time: ~0.6 ms of
    ~1.1 ms per slice of a classic series."""
    ds = frame.ds
    meta = getattr(ds, "file_meta", None)
    if meta is None or str(meta.get("TransferSyntaxUID", "")) not in _NATIVE_LITTLE_ENDIAN:
        return None
    element = ds.get_item("PixelData", keep_deferred=True) if "PixelData" in ds else None
    if not isinstance(element, RawDataElement) or element.value is not None or element.value_tell is None:
        return None
    bits, stored = ds.get("BitsAllocated"), ds.get("BitsStored")
    if bits not in (8, 16, 32) or stored != bits or ds.get("SamplesPerPixel", 1) != 1:
        return None
    signed = ds.get("PixelRepresentation", 0) == 1
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    frames = number_of_frames(ds)
    rows, cols = int(ds.Rows), int(ds.Columns)
    count = frames * rows * cols
    if element.length not in (count * dtype.itemsize, count * dtype.itemsize + 1):
        return None
    values = np.fromfile(frame.path, dtype=dtype, count=count, offset=element.value_tell)
    if values.size != count:
        return None  # the file ends early: pydicom says how
    return values.reshape((frames, rows, cols) if frames > 1 else (rows, cols))


def _decode(where: Path, frame: Frame) -> np.ndarray:
    """All stored values of the frame's file: (rows, columns) or (frames, rows, columns).

    Read from the file itself (headers were scanned with the pixels deferred), with no
    processing but the decoding: rescale is applied per frame by the caller.
    """
    try:
        native = _native_pixels(frame)
        if native is not None:
            return native
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(frame.path).pixel_array
    except Exception as exc:  # unsupported compression, truncated data, missing decoder
        meta = getattr(frame.ds, "file_meta", None)
        syntax = getattr(meta, "TransferSyntaxUID", None)
        what = f" ({syntax.name})" if syntax is not None else ""
        raise file_error(where, f"{frame.path.name}: cannot decode the pixel data{what}: {short_error(exc)}") from None


__all__ = ["IDENTIFYING_KEYWORDS", "DicomSeriesInfo", "SeriesGeometry", "list_dicom_series", "load_dicom_series",
           "series_geometry", "series_identifiers", "volume_from_series"]
