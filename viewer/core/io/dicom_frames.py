"""The 2-D images of a DICOM series, each with where it lies: :class:`Frame`.

Scanners store a volume in three ways, and this module turns all of them into one list of
frames so that sorting, spacing checks and the affine (:mod:`viewer.core.io.dicom`) are
written once:

- *classic* single-frame files (one slice per file): the geometry is in the file's own
  ImagePositionPatient / ImageOrientationPatient / PixelSpacing;
- *Siemens MOSAIC* files (many slices tiled into one image): :mod:`.dicom_mosaic`;
- *enhanced multi-frame* files (MR, CT, PET; per-frame and shared functional groups):
  :mod:`.dicom_multiframe`.

Why these rules:
- A frame carries the dataset whose tags describe it (``ds``): the file for a classic slice, a
  per-frame view (top level + shared + per-frame functional groups) for an enhanced frame, so
  that PET SUV (:mod:`.pet_suv`) reads the same tags whatever the storage.
- Rescale slope and intercept belong to the frame: PET writes one per slice, enhanced files
  one per frame (Pixel Value Transformation or Real World Value Mapping).
- A non-enhanced multi-frame file (ultrasound cine, NM, RT dose) has no per-frame position in
  the tags we read, so it is refused rather than stacked at a guessed spacing.
- Colour images are refused: every layer is a scalar map.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from viewer.core.errors import file_error
from viewer.core.io.dicom_scan import number_of_frames, raw_ascii, raw_unsigned_short, tag_text

#: Largest |cos| between row and column direction cosines (they must be perpendicular).
PERPENDICULAR_TOLERANCE = 1e-3


@dataclass
class Frame:
    """One 2-D image of a series and its place in LPS patient space.

    Attributes:
        path: the file holding the pixels.
        ds: the dataset whose tags describe this frame (see module docstring).
        label: how messages name it ("IM0001", "IM0001 frame 3", "0051.dcm mosaic image 4").
        row_cosine, col_cosine: unit LPS direction of a row (increasing column index) and of
            a column (increasing row index) — ImageOrientationPatient.
        origin_lps: centre of the first stored pixel, mm — ImagePositionPatient.
        pixel_spacing_mm: (distance between rows, distance between columns), mm.
        shape: (rows, columns) of this frame.
        slope, intercept: stored value → real value (per frame).
        frame_index: index of the frame in the file's pixel data (None for a single frame).
        tile: (first row, first column) of a mosaic tile in the stored image, or None.
        thickness_mm: slice thickness (mm) for a one-frame series, when known.
    """

    path: Path
    ds: Dataset
    label: str
    row_cosine: np.ndarray
    col_cosine: np.ndarray
    origin_lps: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    shape: tuple[int, int]
    slope: float = 1.0
    intercept: float = 0.0
    frame_index: int | None = None
    tile: tuple[int, int] | None = None
    thickness_mm: float | None = None

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_cosine, self.col_cosine)

    def cut(self, stored: np.ndarray) -> np.ndarray:
        """This frame's (rows, columns) values out of its file's decoded pixel array."""
        image = stored[self.frame_index] if self.frame_index is not None else stored
        if self.tile is not None:
            r0, c0 = self.tile
            image = image[r0:r0 + self.shape[0], c0:c0 + self.shape[1]]
        return image


def frames_of_file(where: Path, path: Path, ds: Dataset) -> list[Frame]:
    """Every frame stored in one file, whatever the storage (classic, MOSAIC, enhanced).

    Raises:
        ViewerError: colour data, an unsupported multi-frame file, or missing geometry.
    """
    check_greyscale(where, path, ds)
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        from viewer.core.io.dicom_multiframe import enhanced_frames

        return enhanced_frames(where, path, ds)
    from viewer.core.io.dicom_mosaic import is_mosaic, mosaic_frames

    if is_mosaic(ds):
        return mosaic_frames(where, path, ds)
    frames = number_of_frames(ds)
    if frames > 1:
        raise file_error(where, f"{path.name} is a multi-frame file with {frames} frames but no per-frame "
                                "geometry (not an enhanced MR/CT/PET image); it cannot be placed as a volume")
    return [classic_frame(where, path, ds)]


def classic_frame(where: Path, path: Path, ds: Dataset) -> Frame:
    """The one frame of a single-frame file, from its own geometry tags."""
    row_cos, col_cos = orientation(where, path.name, vector(where, path.name, ds, "ImageOrientationPatient", 6))
    return Frame(
        path=path, ds=ds, label=path.name, row_cosine=row_cos, col_cosine=col_cos,
        origin_lps=vector(where, path.name, ds, "ImagePositionPatient", 3),
        pixel_spacing_mm=pixel_spacing(where, path.name, vector(where, path.name, ds, "PixelSpacing", 2)),
        shape=rows_columns(where, path.name, ds),
        slope=rescale_value(where, path.name, ds, "RescaleSlope", 1.0),
        intercept=rescale_value(where, path.name, ds, "RescaleIntercept", 0.0),
        thickness_mm=slice_thickness(ds),
    )


# -- tag helpers shared by the frame builders ---------------------------------------------------
def check_greyscale(where: Path, path: Path, ds: Dataset) -> None:
    """Refuse colour (RGB, YBR, palette) images: every layer is one scalar per voxel."""
    samples = raw_unsigned_short(ds, "SamplesPerPixel")
    samples = int(ds.get("SamplesPerPixel", 1) or 1) if samples is None else (samples or 1)
    photometric = tag_text(ds, "PhotometricInterpretation").upper()
    if samples != 1 or photometric.startswith(("RGB", "YBR", "PALETTE")):
        raise file_error(where, f"{path.name} is a colour image ({photometric or 'SamplesPerPixel'} "
                                f"{samples if samples != 1 else ''}".rstrip() + "); expected greyscale")


def vector(where: Path, label: str, ds: Dataset, tag: str, length: int) -> np.ndarray:
    """A multi-valued numeric tag as floats, refusing missing or malformed values.

    Read from the file's bytes when not converted yet (:func:`~.dicom_scan.raw_ascii`: the
    geometry of every file of an exam is checked before import, and pydicom's DS objects cost
    more than the arithmetic)."""
    raw = raw_ascii(ds, tag)
    if raw is not None:
        items = raw.split("\\") if raw else []
    else:
        value = ds.get(tag)
        items = [] if value is None else [value] if isinstance(value, (str, float, int)) else list(value)
    if not items or items == [""]:
        raise file_error(where, f"{label}: {tag} is missing")
    try:
        numbers = np.array([float(v) for v in items])
    except (TypeError, ValueError):
        raise file_error(where, f"{label}: {tag} is not numeric") from None
    if numbers.shape != (length,) or not np.all(np.isfinite(numbers)):
        raise file_error(where, f"{label}: {tag} must hold {length} finite numbers, got {numbers.size}")
    return numbers


def orientation(where: Path, label: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit row and column direction cosines (LPS) from the six ImageOrientationPatient values."""
    row, col = values[:3], values[3:]
    norms = np.linalg.norm(row), np.linalg.norm(col)
    if min(norms) < 0.5 or max(norms) > 1.5:
        raise file_error(where, f"{label}: ImageOrientationPatient does not hold unit vectors")
    row, col = row / norms[0], col / norms[1]
    if abs(float(row @ col)) > PERPENDICULAR_TOLERANCE:
        raise file_error(where, f"{label}: ImageOrientationPatient row and column directions are not "
                                "perpendicular")
    return row, col


def pixel_spacing(where: Path, label: str, values: np.ndarray) -> tuple[float, float]:
    """(row spacing, column spacing) in mm: PixelSpacing[0] is the distance between rows."""
    if not np.all(values > 0):
        raise file_error(where, f"{label}: PixelSpacing must be positive, got {values.tolist()}")
    return float(values[0]), float(values[1])


def rows_columns(where: Path, label: str, ds: Dataset) -> tuple[int, int]:
    """(Rows, Columns) of the stored image (from the raw bytes when not converted yet)."""
    rows = raw_unsigned_short(ds, "Rows")
    columns = raw_unsigned_short(ds, "Columns")
    if rows is None or columns is None:
        rows, columns = ds.get("Rows"), ds.get("Columns")
    for tag, value in (("Rows", rows), ("Columns", columns)):
        if value in (None, ""):
            raise file_error(where, f"{label}: {tag} is missing")
    return int(rows), int(columns)


def rescale_value(where: Path, label: str, ds: Dataset, tag: str, default: float) -> float:
    """RescaleSlope or RescaleIntercept of ``ds`` (``default`` when absent)."""
    text = tag_text(ds, tag)
    try:
        value = float(text) if text else default
    except ValueError:
        raise file_error(where, f"{label}: {tag} {text!r} is not a number") from None
    if not np.isfinite(value) or (tag == "RescaleSlope" and value == 0):
        raise file_error(where, f"{label}: {tag} {text!r} is not a usable number")
    return value


def slice_thickness(ds: Dataset) -> float | None:
    """SliceThickness, else SpacingBetweenSlices (mm), when positive; None otherwise."""
    for tag in ("SliceThickness", "SpacingBetweenSlices"):
        text = tag_text(ds, tag)
        try:
            value = float(text) if text else float("nan")
        except ValueError:
            continue
        if np.isfinite(value) and value > 0:
            return value
    return None


__all__ = [
    "Frame", "check_greyscale", "classic_frame", "frames_of_file", "orientation", "pixel_spacing",
    "rescale_value", "rows_columns", "slice_thickness", "vector",
]
