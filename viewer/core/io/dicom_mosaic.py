"""Siemens MOSAIC files: many slices tiled into one stored image.

A MOSAIC file holds one whole volume: its ``n`` slices are tiles of one stored image, laid out
row by row on a square grid of ``ceil(sqrt(n))`` tiles per row (unused tiles at the end are
blank). The slice count, the slice direction and the per-slice positions are in Siemens'
private CSA headers (0029,xx10 image header, 0029,xx20 series header), read with nibabel's CSA
parser (:mod:`nibabel.nicom.csareader`).

Why these rules:
- A MOSAIC is recognised by ImageType containing "MOSAIC" or by the Siemens private
  NumberOfImagesInMosaic (0019,xx0A) above 1; reading one as a single slice would put every
  tile at the wrong place (a 360×360×1 image instead of 72×72×20), so it is never read as a
  plain slice.
- The slice count ``n`` is the CSA image header's NumberOfImagesInMosaic, else the private
  tag (0019,xx0A). Every other count the file states must agree with it — the private tag,
  the CSA MosaicRefAcqTimes (one acquisition time per slice) and, for a protocol without
  concatenations, ``sSliceArray.lSize`` of the protocol — and the tiles must divide Rows and
  Columns exactly. A wrong count still "fits" many images (400 tiles of 18×18 in 360×360), so
  the cross-checks are what keeps a damaged file from being cut into the wrong tiles; any
  disagreement is refused.
- Without a readable CSA image header the file is refused: the header's SliceNormalVector is
  the only record of the direction in which the tiles are stacked.
- Slice direction: the normal is the cross product of the direction cosines (exactly
  perpendicular to the image), with the sign of SliceNormalVector, as nibabel and dcm2niix
  do: Siemens stores tiles along SliceNormalVector, which points against the cross product for
  default sagittal slices (numbered right to left) and for reversed numbering (head to feet).
- ImagePositionPatient of a MOSAIC is the corner of the whole stored image read as one slice;
  the first tile's first pixel lies ``(Columns − tile columns) / 2`` columns along the row
  direction and ``(Rows − tile rows) / 2`` rows down the column direction from it (nibabel's
  and dcm2niix's correction), in mm through PixelSpacing.
- Position of tile k (which source wins): the first tile is always placed by the corrected
  ImagePositionPatient — the image's own standard tag, which every reader uses. The other
  tiles are placed by the protocol's stored slice centres (ASCCONV
  ``sSliceArray.asSlice[k].sPosition`` in the CSA series header, MrPhoenixProtocol or
  MrProtocol): tile k = tile 0 + (centre of its slice − centre of the first tile's slice),
  so stored positions, not an assumed uniform spacing, decide — uneven slice groups are then
  refused by the series reader instead of being spread evenly. The protocol is used only when
  it verifiably describes this image: as many slices as tiles, centres monotonic along the
  normal (listed in either direction; the direction maps protocol slices to tiles), on one
  line along the normal, and the first tile's slice at the first tile's position along the
  normal within ``POSITION_AGREEMENT_TOLERANCE_MM`` (compared along the normal only, so the
  in-plane centre convention plays no part). Otherwise (no or unparsable protocol,
  concatenations, a protocol that disagrees with the header) tile k lies at ``tile 0 + k · gap · normal``
  with gap = SpacingBetweenSlices, else SliceThickness — nibabel's and dcm2niix's rule. The
  protocol is a prescription shared by every file of the series and written in a private text
  format, so it never overrides the image's own ImagePositionPatient; but its relative
  positions are per slice and stored to ~1e-8 mm, where SpacingBetweenSlices is one
  rounded number for all slices.
- The ASCCONV lines needed (``sSliceArray.lSize``, ``.lConc``, ``.asSlice[k].sPosition``)
  are read with one regular expression each: nibabel's full ASCCONV parser stops at lines such
  as ``sSliceArray.asSlice.__attribute__.size`` (present in 0051.dcm), and a component that is
  zero is omitted from the text, so it defaults to 0 mm.
- Rescale slope and intercept are the file's RescaleSlope / RescaleIntercept (usually absent
  for MR: stored values are the values).
- Several MOSAIC files in one series are several volumes (fMRI time points, DWI directions):
  their tiles land at the same positions and the series reader refuses them as duplicates.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

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
from viewer.core.io.dicom_scan import raw_value_bytes, short_error, tag_text

#: Largest |1 − |SliceNormalVector · (row × column)|| for the CSA normal to be accepted as
#: perpendicular to the image (dimensionless; 1e-4 ≈ 0.8°; headers agree to ~1e-6).
NORMAL_PARALLEL_TOLERANCE = 1e-4
#: Largest disagreement (mm) between the protocol and the image header about where the first
#: tile lies along the normal, and largest sideways offset of a protocol slice centre from the
#: line along the normal through the first one. Header rounding gives ≤ 3e-4 mm; reading the
#: protocol against the wrong tile order or a moved table gives at least one slice gap.
POSITION_AGREEMENT_TOLERANCE_MM = 0.05
#: Private creators of the Siemens blocks read here.
SIEMENS_MR_HEADER = "SIEMENS MR HEADER"
#: Element offset of NumberOfImagesInMosaic in the SIEMENS MR HEADER block (0019,xx0A).
N_IMAGES_ELEMENT = 0x0A
#: LPS axes of the protocol's sPosition components (Siemens patient coordinates, +LPH = LPS).
_PROTOCOL_AXES = {"Sag": 0, "Cor": 1, "Tra": 2}
_ASCCONV_RE = re.compile(r"### ASCCONV BEGIN.*?###(.*?)### ASCCONV END ###", re.DOTALL)
_POSITION_RE = re.compile(
    r"^\s*sSliceArray\.asSlice\[(\d+)\]\.sPosition\.d(Sag|Cor|Tra)\s*=\s*([-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*$",
    re.MULTILINE)
_SIZE_RE = re.compile(r"^\s*sSliceArray\.(lSize|lConc)\s*=\s*(\d+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class MosaicLayout:
    """How the tiles lie in the stored image (all in pixels)."""

    n_images: int
    tiles_per_row: int
    tile_shape: tuple[int, int]  # (rows, columns) of one tile
    stored_shape: tuple[int, int]  # (Rows, Columns) of the stored image

    def tile_offset(self, k: int) -> tuple[int, int]:
        """(first row, first column) of tile ``k`` (0-based, row by row)."""
        return (k // self.tiles_per_row) * self.tile_shape[0], (k % self.tiles_per_row) * self.tile_shape[1]


@dataclass(frozen=True)
class MosaicGeometry:
    """Where each tile of a MOSAIC file lies in LPS patient space.

    ``origins_lps[k]`` is the centre of tile k's first pixel (mm); ``position_source`` says
    what placed tiles 1…n−1: ``"protocol"`` (the ASCCONV slice centres) or ``"uniform"``
    (SpacingBetweenSlices along the normal).
    """

    layout: MosaicLayout
    row_cosine: np.ndarray
    col_cosine: np.ndarray
    normal: np.ndarray  # unit, pointing from tile k to tile k + 1
    pixel_spacing_mm: tuple[float, float]
    origins_lps: np.ndarray  # (n, 3), mm
    position_source: str


@dataclass(frozen=True)
class _Protocol:
    """What the ASCCONV protocol says about the slices (None where it is silent)."""

    n_slices: int | None
    concatenations: int | None
    centres_lps: np.ndarray | None  # (n_slices, 3) slice centres in protocol order, mm


# -- public API ---------------------------------------------------------------------------------
def is_mosaic(ds: Dataset) -> bool:
    """True for a Siemens MOSAIC image (ImageType holds "MOSAIC", or the Siemens private
    NumberOfImagesInMosaic is above 1)."""
    if "MOSAIC" in tag_text(ds, "ImageType").upper().split("\\"):
        return True
    raw = raw_value_bytes(ds, "Manufacturer")
    maker = raw.decode("latin-1").upper() if raw is not None else tag_text(ds, "Manufacturer").upper()
    if "SIEMENS" not in maker:
        return False  # the private count lives in Siemens' (0019) block only; its lookup is slow
    count = _private_image_count(ds)
    return count is not None and count > 1


def mosaic_frames(where: Path, path: Path, ds: Dataset) -> list[Frame]:
    """The tiles of a MOSAIC file as frames, labelled "<file> mosaic image <k>" (k from 1).

    Raises:
        ViewerError: the CSA header is missing or unreadable, the slice counts disagree or do
            not tile the image, or the geometry tags are missing.
    """
    geometry = mosaic_geometry(where, path, ds)
    layout = geometry.layout
    slope = rescale_value(where, path.name, ds, "RescaleSlope", 1.0)
    intercept = rescale_value(where, path.name, ds, "RescaleIntercept", 0.0)
    thickness = slice_thickness(ds)
    return [
        Frame(
            path=path, ds=ds, label=f"{path.name} mosaic image {k + 1}",
            row_cosine=geometry.row_cosine, col_cosine=geometry.col_cosine,
            origin_lps=geometry.origins_lps[k], pixel_spacing_mm=geometry.pixel_spacing_mm,
            shape=layout.tile_shape, slope=slope, intercept=intercept,
            frame_index=None, tile=layout.tile_offset(k), thickness_mm=thickness,
        )
        for k in range(layout.n_images)
    ]


def mosaic_geometry(where: Path, path: Path, ds: Dataset) -> MosaicGeometry:
    """Tile layout and the LPS position of every tile (see the module docstring for the rules).

    Raises:
        ViewerError: as :func:`mosaic_frames`.
    """
    label = path.name
    csa = _csa_image_header(where, label, ds)
    protocol = _protocol(ds)
    layout = _mosaic_layout(where, label, ds, csa, protocol)
    row_cos, col_cos = orientation(where, label, vector(where, label, ds, "ImageOrientationPatient", 6))
    spacing = pixel_spacing(where, label, vector(where, label, ds, "PixelSpacing", 2))
    normal = _slice_normal(where, label, csa, row_cos, col_cos)
    first = first_tile_origin(vector(where, label, ds, "ImagePositionPatient", 3), row_cos, col_cos, spacing,
                              layout)
    origins = _protocol_origins(first, normal, layout.n_images, protocol)
    source = "protocol"
    if origins is None:
        origins = first + np.arange(layout.n_images)[:, None] * _uniform_gap(where, label, ds, layout) * normal
        source = "uniform"
    return MosaicGeometry(layout, row_cos, col_cos, normal, spacing, origins, source)


def _mosaic_layout(where: Path, label: str, ds: Dataset, csa: dict, protocol: _Protocol | None) -> MosaicLayout:
    """Slice count and tile grid, after checking every count the file states agrees.

    Raises:
        ViewerError: no count, counts that disagree, or tiles that do not divide the image.
    """
    csa_count = _csa_int(csa, "NumberOfImagesInMosaic")
    private_count = _private_image_count(ds)
    n = csa_count if csa_count is not None else private_count
    if n is None:
        raise file_error(where, f"{label} is a Siemens MOSAIC image without NumberOfImagesInMosaic (neither in "
                                "its CSA header nor in (0019,xx0A)), so its slices cannot be cut out")
    if n < 1:
        raise file_error(where, f"{label}: Siemens MOSAIC NumberOfImagesInMosaic is {n}; expected at least 1")
    if private_count is not None and private_count != n:
        raise file_error(where, f"{label}: Siemens MOSAIC slice counts disagree (CSA header NumberOfImagesInMosaic "
                                f"{n}, tag (0019,xx0A) {private_count})")
    times = _csa_items(csa, "MosaicRefAcqTimes")
    if times and len(times) != n:
        raise file_error(where, f"{label}: Siemens MOSAIC slice counts disagree (NumberOfImagesInMosaic {n}, "
                                f"but the CSA header lists {len(times)} slice acquisition times)")
    if protocol is not None and protocol.n_slices is not None and (protocol.concatenations or 1) == 1 \
            and protocol.n_slices != n:
        raise file_error(where, f"{label}: Siemens MOSAIC slice counts disagree (NumberOfImagesInMosaic {n}, "
                                f"but the protocol has {protocol.n_slices} slices)")
    rows, cols = rows_columns(where, label, ds)
    per_row = math.ceil(math.sqrt(n))
    if rows % per_row or cols % per_row:
        raise file_error(where, f"{label}: a Siemens MOSAIC of {n} images needs {per_row}×{per_row} tiles, which do "
                                f"not divide its {rows}×{cols} pixels")
    return MosaicLayout(n, per_row, (rows // per_row, cols // per_row), (rows, cols))


def first_tile_origin(corner_lps: np.ndarray, row_cosine: np.ndarray, col_cosine: np.ndarray,
                      spacing_mm: tuple[float, float], layout: MosaicLayout) -> np.ndarray:
    """LPS centre (mm) of the first tile's first pixel, from the mosaic's ImagePositionPatient.

    Siemens writes the position the stored image would have if it were one slice centred like
    each tile: the first tile starts half the difference of the image and tile sizes away.
    """
    row_spacing, col_spacing = spacing_mm
    rows_shift = (layout.stored_shape[0] - layout.tile_shape[0]) / 2
    cols_shift = (layout.stored_shape[1] - layout.tile_shape[1]) / 2
    return corner_lps + row_cosine * col_spacing * cols_shift + col_cosine * row_spacing * rows_shift


# -- CSA image header ---------------------------------------------------------------------------
def _csa_image_header(where: Path, label: str, ds: Dataset) -> dict:
    """The parsed CSA image header (0029,xx10); refused when missing or unreadable."""
    csareader = _csareader()
    try:
        csa = csareader.get_csa_header(ds, "image")
    except Exception as exc:  # CSAReadError, struct.error, truncated or foreign bytes
        raise file_error(where, f"{label}: the Siemens CSA image header (0029,xx10) of this MOSAIC cannot be read "
                                f"({short_error(exc)})") from None
    if not csa or not csa.get("tags"):
        raise file_error(where, f"{label} is a Siemens MOSAIC image without its CSA image header (0029,xx10; "
                                "removed by anonymisation?), which records how its slices are stacked")
    return csa


def _csareader():
    """nibabel's CSA reader (its package warns on import that the DICOM readers are experimental)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom import csareader
    return csareader


def _csa_items(csa: dict, name: str) -> list:
    """The values of one CSA tag ([] when absent)."""
    return list(csa.get("tags", {}).get(name, {}).get("items") or [])


def _csa_int(csa: dict, name: str) -> int | None:
    items = _csa_items(csa, name)
    try:
        return int(items[0]) if items else None
    except (TypeError, ValueError):
        return None


def _slice_normal(where: Path, label: str, csa: dict, row_cos: np.ndarray, col_cos: np.ndarray) -> np.ndarray:
    """Unit normal from tile k to tile k + 1: row × column, signed like SliceNormalVector."""
    cross = np.cross(row_cos, col_cos)
    items = _csa_items(csa, "SliceNormalVector")
    try:
        stated = np.array([float(v) for v in items])
    except (TypeError, ValueError):
        stated = np.array([])
    if stated.shape != (3,) or not np.all(np.isfinite(stated)) or np.linalg.norm(stated) == 0:
        raise file_error(where, f"{label}: the Siemens MOSAIC CSA header has no usable SliceNormalVector, so the "
                                "order of its slices is unknown")
    dot = float(stated @ cross / np.linalg.norm(stated))
    if abs(abs(dot) - 1.0) > NORMAL_PARALLEL_TOLERANCE:
        raise file_error(where, f"{label}: the Siemens MOSAIC SliceNormalVector is not perpendicular to the image "
                                f"plane of ImageOrientationPatient (cosine {dot:.6f})")
    return cross if dot > 0 else -cross


def _private_image_count(ds: Dataset) -> int | None:
    """NumberOfImagesInMosaic from the SIEMENS MR HEADER block (0019,xx0A), when present."""
    try:
        element = ds.get_private_item(0x0019, N_IMAGES_ELEMENT, SIEMENS_MR_HEADER)
    except (KeyError, ValueError):
        return None
    value = element.value
    try:
        if isinstance(value, bytes):  # VR UN: the raw unsigned short
            if len(value) < 2:
                return None
            little = getattr(ds, "original_encoding", (None, True))[1] is not False
            return int.from_bytes(value[:2], "little" if little else "big")
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = value[0]
        return int(value)
    except (TypeError, ValueError, IndexError):
        return None


# -- protocol (CSA series header ASCCONV) -------------------------------------------------------
def _protocol(ds: Dataset) -> _Protocol | None:
    """Slice count, concatenations and slice centres from the ASCCONV protocol, or None.

    An unreadable series header only costs the per-slice positions (the uniform rule is used),
    so it is not an error.
    """
    try:
        series = _csareader().get_csa_header(ds, "series")
    except Exception:
        return None
    if not series:
        return None
    text = next((str(items[0]) for items in (_csa_items(series, "MrPhoenixProtocol"),
                                              _csa_items(series, "MrProtocol")) if items), "")
    match = _ASCCONV_RE.search(text)
    return _parse_ascconv(match.group(1)) if match else None


def _parse_ascconv(text: str) -> _Protocol:
    """The sSliceArray values this module needs (see the module docstring)."""
    sizes = {key: int(value) for key, value in _SIZE_RE.findall(text)}
    n_slices = sizes.get("lSize")
    centres = None
    if n_slices:
        centres = np.zeros((n_slices, 3))
        for index, axis, value in _POSITION_RE.findall(text):
            k = int(index)
            if k >= n_slices:
                centres = None
                break
            centres[k, _PROTOCOL_AXES[axis]] = float(value)
    return _Protocol(n_slices, sizes.get("lConc"), centres)


def _protocol_origins(first: np.ndarray, normal: np.ndarray, n: int, protocol: _Protocol | None) -> np.ndarray | None:
    """Tile origins (n, 3) from the protocol's slice centres, or None when the protocol does
    not verifiably describe this image (see the module docstring)."""
    if protocol is None or protocol.centres_lps is None or len(protocol.centres_lps) != n:
        return None
    if (protocol.concatenations or 1) != 1:
        return None
    centres = protocol.centres_lps
    if n > 1:
        steps = np.diff(centres @ normal)
        if np.all(steps < 0):
            centres = centres[::-1]  # the protocol lists the slices against the tile order
        elif not np.all(steps > 0):
            return None
    relative = centres - centres[0]
    sideways = relative - np.outer(relative @ normal, normal)
    if np.linalg.norm(sideways, axis=1).max() > POSITION_AGREEMENT_TOLERANCE_MM:
        return None
    if abs(float((centres[0] - first) @ normal)) > POSITION_AGREEMENT_TOLERANCE_MM:
        return None
    return first + relative


def _uniform_gap(where: Path, label: str, ds: Dataset, layout: MosaicLayout) -> float:
    """Distance between slice centres (mm): SpacingBetweenSlices, else SliceThickness."""
    for tag in ("SpacingBetweenSlices", "SliceThickness"):
        text = tag_text(ds, tag)
        try:
            value = float(text) if text else math.nan
        except ValueError:
            continue
        if math.isfinite(value) and value > 0:
            return value
    if layout.n_images == 1:
        return 0.0
    raise file_error(where, f"{label}: Siemens MOSAIC of {layout.n_images} images with neither a usable protocol "
                            "nor SpacingBetweenSlices / SliceThickness, so its slices cannot be placed")


__all__ = ["MosaicGeometry", "MosaicLayout", "first_tile_origin", "is_mosaic", "mosaic_frames", "mosaic_geometry"]
