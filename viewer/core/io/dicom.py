"""Reading one DICOM image series from a folder as a :class:`Volume`.

Why these rules:
- Files are found by content, not name: every file under the folder is tried with
  ``pydicom.dcmread(force=False)``; files without the DICOM preamble (README, text) and files
  without pixel data (DICOMDIR, structured reports) are skipped silently.
- A folder may hold several series; they are grouped by SeriesInstanceUID and the caller must
  pick one (the error lists them) rather than getting an arbitrary one.
- Slices are ordered by their position along the slice normal
  (``normal = row_cosine × col_cosine``, ``position = normal · ImagePositionPatient``), never
  by file name or InstanceNumber, which scanners and anonymisers do not keep in order.
- The slice step is measured from the positions, not taken from SliceThickness (which is the
  slab thickness and may differ from the gap, e.g. overlapping or gapped slices). A series
  with missing slices (non-uniform gaps), duplicate positions (several echoes or time points
  in one series) or slices of different orientation or size is refused, because no single
  affine can place it.
- The third affine column is the measured step vector between consecutive slice origins. For
  ordinary series it equals ``normal · gap``; for CT with gantry tilt it is not along the
  normal, and using the step vector keeps every voxel where the scanner put it (the affine is
  then sheared; the tilt is recorded in ``meta["gantry_tilt_deg"]``).
- Each slice's own RescaleSlope/RescaleIntercept is applied (PET slopes differ per slice).
- DICOM patient space is LPS (+x left, +y posterior); volumes are RAS, so x and y rows of the
  affine are negated.
- Array axes: ``data[i, j, k]``, i = column index (along the row direction cosine), j = row
  index (along the column direction cosine), k = slice in sorted order; pydicom's
  ``pixel_array`` is ``[row, column]`` and is transposed.
- A PET series (Modality PT, or ``role="pet"``) is converted to SUV with
  :mod:`viewer.core.io.pet_suv`, and refused if the tags do not allow it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from viewer.core.errors import file_error
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
#: Largest |cos| between row and column direction cosines (they must be perpendicular).
PERPENDICULAR_TOLERANCE = 1e-3
#: Gantry tilt (degrees) below which the step vector is treated as along the normal in meta.
TILT_REPORT_THRESHOLD_DEG = 0.01

#: Elements larger than this (bytes) are read lazily, so scanning headers never loads pixels.
_DEFER_SIZE_BYTES = 4096
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
#: LPS → RAS: negate x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


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


@dataclass
class _Slice:
    """One image file of the chosen series and its geometry (LPS mm)."""

    path: Path
    ds: Dataset
    position_mm: float = 0.0
    origin_lps: np.ndarray | None = None


@dataclass(frozen=True)
class _Geometry:
    """The series' sorted slices and its voxel→LPS affine."""

    slices: list[_Slice]
    affine_lps: np.ndarray
    slice_gap_mm: float
    pixel_spacing_mm: tuple[float, float]
    tilt_deg: float


# -- public API ---------------------------------------------------------------------------------
def list_dicom_series(folder: str | Path) -> list[DicomSeriesInfo]:
    """The image series under ``folder`` (sorted by UID).

    Raises:
        ViewerError: the folder is missing or holds no DICOM image file.
    """
    folder = _check_folder(folder)
    return [_series_info(uid, files) for uid, files in sorted(_scan_folder(folder).items())]


def load_dicom_series(
    folder: str | Path, role: str = "anatomical", name: str = "", series_uid: str | None = None
) -> Volume:
    """Read one DICOM image series as a float32 :class:`Volume` in RAS world space.

    Args:
        folder: folder holding the series' files (searched recursively).
        role: the layer's role; a PET series (Modality PT) always becomes ``"pet"`` in SUV.
        name: layer name (defaults to SeriesDescription, else the folder name).
        series_uid: which series to read when the folder holds several.

    Raises:
        ViewerError: one line naming the folder (and file) and the problem.
    """
    folder = _check_folder(folder)
    series = _scan_folder(folder)
    uid, files = _choose_series(folder, series, series_uid)
    _check_single_frame(folder, files)
    geometry = _geometry(folder, files)
    first = geometry.slices[0].ds
    modality = _text(first, "Modality").upper()

    meta: dict[str, Any] = {
        "format": "dicom",
        "series_uid": uid,
        "modality": modality,
        "description": _text(first, "SeriesDescription"),
        "n_slices": len(geometry.slices),
        "slice_gap_mm": geometry.slice_gap_mm,
        "pixel_spacing_mm": list(geometry.pixel_spacing_mm),
        "manufacturer": _text(first, "Manufacturer"),
    }
    if geometry.tilt_deg > TILT_REPORT_THRESHOLD_DEG:
        meta["gantry_tilt_deg"] = geometry.tilt_deg

    factors = np.ones(len(geometry.slices))
    units = ""
    if role == "pet" or modality == "PT":
        conversion = suv_conversion([s.ds for s in geometry.slices], folder)
        factors = np.asarray(conversion.factors, dtype=np.float64)
        meta.update(conversion.meta)
        role, units = "pet", "SUV"

    data = _read_pixels(folder, geometry.slices, factors)
    affine = LPS_TO_RAS @ geometry.affine_lps
    check_affine(folder, affine)
    return Volume(
        data, affine, role=role, units=units, name=name or meta["description"] or folder.name,
        source=folder, meta=meta,
    )


# -- finding files ------------------------------------------------------------------------------
def _check_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.exists():
        raise file_error(folder, "folder not found")
    if not folder.is_dir():
        raise file_error(folder, "is a file, expected a folder of DICOM files")
    return folder


def _scan_folder(folder: Path) -> dict[str, list[tuple[Path, Dataset]]]:
    """Every DICOM image file under ``folder`` grouped by SeriesInstanceUID."""
    series: dict[str, list[tuple[Path, Dataset]]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        ds = _read_header(path)
        if ds is None or not any(key in ds for key in _PIXEL_KEYWORDS):
            continue
        series.setdefault(_text(ds, "SeriesInstanceUID"), []).append((path, ds))
    if not series:
        raise file_error(folder, "contains no DICOM image files")
    return series


def _read_header(path: Path) -> Dataset | None:
    """The dataset with large values (pixels) deferred, or None for a non-DICOM file."""
    try:
        return pydicom.dcmread(path, force=False, defer_size=_DEFER_SIZE_BYTES)
    except InvalidDicomError:
        return None
    except OSError as exc:
        raise file_error(path, f"cannot be read ({_short(exc)})") from None
    except Exception as exc:  # a DICOM file with a broken body
        raise file_error(path, f"is a damaged DICOM file ({_short(exc)})") from None


def _series_info(uid: str, files: Sequence[tuple[Path, Dataset]]) -> DicomSeriesInfo:
    ds = files[0][1]
    return DicomSeriesInfo(uid or "(no SeriesInstanceUID)", _text(ds, "SeriesDescription"),
                           _text(ds, "Modality"), len(files))


def _choose_series(
    folder: Path, series: dict[str, list[tuple[Path, Dataset]]], series_uid: str | None
) -> tuple[str, list[tuple[Path, Dataset]]]:
    """The requested series, or the only one; otherwise an error listing them all."""
    listing = ", ".join(_series_info(uid, files).summary() for uid, files in sorted(series.items()))
    if series_uid is not None:
        if series_uid not in series:
            raise file_error(folder, f"has no series {series_uid}; it contains {listing}")
        return series_uid, series[series_uid]
    if len(series) > 1:
        raise file_error(folder, f"contains {len(series)} series: {listing}; choose one with series_uid")
    uid, files = next(iter(series.items()))
    return uid, files


def _check_single_frame(folder: Path, files: Iterable[tuple[Path, Dataset]]) -> None:
    """Refuse multi-frame (enhanced) files: one file per slice is what is supported."""
    for path, ds in files:
        frames = _text(ds, "NumberOfFrames")
        if frames and frames.isdigit() and int(frames) > 1:
            raise file_error(folder, f"{path.name} is a multi-frame (enhanced) DICOM file with {frames} "
                                     "frames; only one slice per file is supported")
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise file_error(folder, f"{path.name} is a colour image (SamplesPerPixel "
                                     f"{ds.SamplesPerPixel}); expected greyscale")


# -- geometry -----------------------------------------------------------------------------------
def _geometry(folder: Path, files: Sequence[tuple[Path, Dataset]]) -> _Geometry:
    """Sort slices along the normal and build the voxel→LPS affine."""
    first_path, first = files[0]
    row_cos, col_cos = _orientation(folder, first_path, first)
    normal = np.cross(row_cos, col_cos)
    row_spacing, col_spacing = _pixel_spacing(folder, first_path, first)
    shape = _rows_columns(folder, first_path, first)

    slices = []
    for path, ds in files:
        _check_same_plane(folder, path, ds, (first_path, row_cos, col_cos, row_spacing, col_spacing, shape))
        origin = _vector(folder, path, ds, "ImagePositionPatient", 3)
        slices.append(_Slice(path, ds, float(normal @ origin), origin))
    slices.sort(key=lambda s: s.position_mm)

    if len(slices) == 1:
        step = normal * _single_slice_thickness(folder, slices[0])
    else:
        step = _slice_step(folder, slices)
    gap = float(abs(normal @ step))
    tilt = float(np.degrees(np.arccos(min(1.0, gap / float(np.linalg.norm(step))))))

    affine = np.eye(4)
    affine[:3, 0] = row_cos * col_spacing  # i runs along a row: one column per step
    affine[:3, 1] = col_cos * row_spacing  # j runs down a column: one row per step
    affine[:3, 2] = step
    affine[:3, 3] = slices[0].origin_lps
    return _Geometry(slices, affine, gap, (row_spacing, col_spacing), tilt)


def _slice_step(folder: Path, slices: Sequence[_Slice]) -> np.ndarray:
    """Mean vector between consecutive slice origins, after checking they are evenly spaced."""
    positions = np.array([s.position_mm for s in slices])
    gaps = np.diff(positions)
    smallest = int(np.argmin(gaps))
    if gaps[smallest] < DUPLICATE_POSITION_TOLERANCE_MM:
        a, b = slices[smallest].path.name, slices[smallest + 1].path.name
        raise file_error(folder, f"slices {a} and {b} are at the same position ({positions[smallest]:.3f} mm "
                                 "along the normal); several echoes or time points in one series are not supported")
    median = float(np.median(gaps))
    tolerance = max(SPACING_RELATIVE_TOLERANCE * median, SPACING_ABSOLUTE_TOLERANCE_MM)
    worst = int(np.argmax(np.abs(gaps - median)))
    if abs(gaps[worst] - median) > tolerance:
        a, b = slices[worst].path.name, slices[worst + 1].path.name
        raise file_error(folder, f"slice spacing is not uniform: gaps range from {gaps.min():.4g} to "
                                 f"{gaps.max():.4g} mm (median {median:.4g} mm; {gaps[worst]:.4g} mm between "
                                 f"{a} and {b}); a slice may be missing")
    origins = np.array([s.origin_lps for s in slices])
    step = (origins[-1] - origins[0]) / (len(slices) - 1)
    expected = origins[0] + np.arange(len(slices))[:, None] * step
    off_line = np.linalg.norm(origins - expected, axis=1)
    if off_line.max() > tolerance:
        bad = slices[int(np.argmax(off_line))].path.name
        raise file_error(folder, f"slice origins do not lie on a straight line ({bad} is "
                                 f"{off_line.max():.3g} mm off it)")
    return step


def _single_slice_thickness(folder: Path, single: _Slice) -> float:
    """Third-axis extent of a one-slice series: SliceThickness, else SpacingBetweenSlices (mm)."""
    for tag in ("SliceThickness", "SpacingBetweenSlices"):
        text = _text(single.ds, tag)
        if text:
            try:
                value = float(text)
            except ValueError:
                continue
            if np.isfinite(value) and value > 0:
                return value
    raise file_error(folder, f"single-slice series ({single.path.name}) has neither SliceThickness nor "
                             "SpacingBetweenSlices, so its voxel depth is unknown")


def _check_same_plane(folder: Path, path: Path, ds: Dataset, reference: tuple) -> None:
    """Every slice must share orientation, PixelSpacing and Rows/Columns with the first."""
    first_path, row_cos, col_cos, row_spacing, col_spacing, shape = reference
    r, c = _orientation(folder, path, ds)
    if max(np.abs(r - row_cos).max(), np.abs(c - col_cos).max()) > ORIENTATION_TOLERANCE:
        raise file_error(folder, f"slices have different orientations (ImageOrientationPatient of {path.name} "
                                 f"differs from {first_path.name}); localizers or multi-stack series are not "
                                 "supported")
    spacing = _pixel_spacing(folder, path, ds)
    if max(abs(spacing[0] - row_spacing), abs(spacing[1] - col_spacing)) > PIXEL_SPACING_TOLERANCE_MM:
        raise file_error(folder, f"slices have different PixelSpacing ({path.name}: {spacing[0]:g}\\{spacing[1]:g} "
                                 f"mm, {first_path.name}: {row_spacing:g}\\{col_spacing:g} mm)")
    if _rows_columns(folder, path, ds) != shape:
        raise file_error(folder, f"slices have different sizes (Rows/Columns of {path.name} differ from "
                                 f"{first_path.name})")


def _orientation(folder: Path, path: Path, ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Unit row and column direction cosines (LPS) from ImageOrientationPatient."""
    values = _vector(folder, path, ds, "ImageOrientationPatient", 6)
    row, col = values[:3], values[3:]
    norms = np.linalg.norm(row), np.linalg.norm(col)
    if min(norms) < 0.5 or max(norms) > 1.5:
        raise file_error(folder, f"{path.name}: ImageOrientationPatient does not hold unit vectors")
    row, col = row / norms[0], col / norms[1]
    if abs(float(row @ col)) > PERPENDICULAR_TOLERANCE:
        raise file_error(folder, f"{path.name}: ImageOrientationPatient row and column directions are not "
                                 "perpendicular")
    return row, col


def _pixel_spacing(folder: Path, path: Path, ds: Dataset) -> tuple[float, float]:
    """(row spacing, column spacing) in mm: PixelSpacing[0] is the distance between rows."""
    values = _vector(folder, path, ds, "PixelSpacing", 2)
    if not np.all(values > 0):
        raise file_error(folder, f"{path.name}: PixelSpacing must be positive, got {values.tolist()}")
    return float(values[0]), float(values[1])


def _rows_columns(folder: Path, path: Path, ds: Dataset) -> tuple[int, int]:
    for tag in ("Rows", "Columns"):
        if tag not in ds or ds.get(tag) in (None, ""):
            raise file_error(folder, f"{path.name}: {tag} is missing")
    return int(ds.Rows), int(ds.Columns)


def _vector(folder: Path, path: Path, ds: Dataset, tag: str, length: int) -> np.ndarray:
    """A multi-valued numeric tag as floats, refusing missing or malformed values."""
    value = ds.get(tag)
    items = [] if value is None else [value] if isinstance(value, (str, float, int)) else list(value)
    if not items or items == [""]:
        raise file_error(folder, f"{path.name}: {tag} is missing")
    try:
        numbers = np.array([float(v) for v in items])
    except (TypeError, ValueError):
        raise file_error(folder, f"{path.name}: {tag} is not numeric") from None
    if numbers.shape != (length,) or not np.all(np.isfinite(numbers)):
        raise file_error(folder, f"{path.name}: {tag} must hold {length} finite numbers, got {numbers.size}")
    return numbers


# -- pixels -------------------------------------------------------------------------------------
def _read_pixels(folder: Path, slices: Sequence[_Slice], factors: np.ndarray) -> np.ndarray:
    """float32 ``[i, j, k]`` array: each slice's stored values · its slope + intercept, × factor."""
    rows, cols = int(slices[0].ds.Rows), int(slices[0].ds.Columns)
    data = np.empty((cols, rows, len(slices)), dtype=np.float32)
    for k, item in enumerate(slices):
        stored = _pixel_array(folder, item, rows, cols)
        slope, intercept = _rescale(folder, item)
        data[:, :, k] = ((stored.astype(np.float64) * slope + intercept) * factors[k]).T
        item.ds = _drop_pixels(item.ds)
    return data


def _pixel_array(folder: Path, item: _Slice, rows: int, cols: int) -> np.ndarray:
    """The slice's stored values, shape (Rows, Columns)."""
    try:
        array = item.ds.pixel_array
    except Exception as exc:  # unsupported compression, truncated data, missing decoder
        syntax = getattr(getattr(item.ds, "file_meta", None), "TransferSyntaxUID", None)
        what = f" ({syntax.name})" if syntax is not None else ""
        problem = f"{item.path.name}: cannot decode the pixel data{what}: {_short(exc)}"
        raise file_error(folder, problem) from None
    if array.shape != (rows, cols):
        raise file_error(folder, f"{item.path.name}: pixel data has shape {array.shape}, expected "
                                 f"{(rows, cols)}")
    return array


def _rescale(folder: Path, item: _Slice) -> tuple[float, float]:
    """This slice's (RescaleSlope, RescaleIntercept), defaults 1 and 0."""
    values = []
    for tag, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        text = _text(item.ds, tag)
        try:
            value = float(text) if text else default
        except ValueError:
            raise file_error(folder, f"{item.path.name}: {tag} {text!r} is not a number") from None
        if not np.isfinite(value):
            raise file_error(folder, f"{item.path.name}: {tag} is not finite")
        values.append(value)
    return values[0], values[1]


def _drop_pixels(ds: Dataset) -> Dataset:
    """Release a slice's pixel bytes once copied into the volume (keeps headers for meta)."""
    for key in _PIXEL_KEYWORDS:
        if key in ds:
            delattr(ds, key)
    return ds


def _text(ds: Dataset, tag: str) -> str:
    value = ds.get(tag)
    return "" if value is None else str(value).strip()


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


__all__ = ["DicomSeriesInfo", "list_dicom_series", "load_dicom_series"]
