"""World-space geometry: display planes, plane sampling, and mapping label maps between grids.

Every image keeps its own voxel grid and its own ``voxel_to_world`` affine (FSLeyes' model):
nothing is resampled wholesale to be shown. A view asks for one *plane* — a 2-D grid of pixels
placed in world space — and each layer is sampled on that plane straight from its own voxels.
Rotated (oblique), flipped and anisotropic grids are handled by the same affine arithmetic.

Conventions: world is RAS+ millimetres (+x patient right, +y anterior, +z superior). A plane's
pixel (row, col) has row increasing downward on screen and col increasing to the right.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
from viewer.core.plane_kernels import kernels_ready, lookup_labels, sample_on_plane
from viewer.core.volume import Volume

#: Two sampling grids are "the same" when every pixel centre of one lands within this many
#: voxels of a voxel centre of the other (then a plane is read by plain array slicing).
GRID_TOLERANCE_VOX = 1e-3

ORIENTATIONS: tuple[str, ...] = ("axial", "coronal", "sagittal")

#: World direction each view looks along (the plane normal).
_VIEW_NORMAL = {
    "axial": np.array([0.0, 0.0, 1.0]),
    "coronal": np.array([0.0, 1.0, 0.0]),
    "sagittal": np.array([1.0, 0.0, 0.0]),
}

#: World directions of screen-right and screen-down in the neurological convention
#: (patient right on screen right). Radiological flips screen-right of axial and coronal.
#: Sagittal shows anterior on the left, as radiology workstations do.
_SCREEN_AXES = {
    "axial": (np.array([1.0, 0.0, 0.0]), np.array([0.0, -1.0, 0.0])),
    "coronal": (np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0])),
    "sagittal": (np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, -1.0])),
}

_LETTERS = (("L", "R"), ("P", "A"), ("I", "S"))


@dataclass(frozen=True)
class Plane:
    """A 2-D pixel grid placed in world space.

    ``pixel_to_world`` maps homogeneous ``(row, col, 0, 1)`` to world mm: its column 0 is the
    world step of one row (screen down), column 1 of one column (screen right), column 2 a unit
    normal, column 3 the world position of pixel (0, 0).
    """

    pixel_to_world: np.ndarray
    shape: tuple[int, int]
    orientation: str | None = None
    normal_axis: int | None = None
    slice_index: int | None = None

    @property
    def row_step_mm(self) -> float:
        """Pixel height in mm."""
        return float(np.linalg.norm(self.pixel_to_world[:3, 0]))

    @property
    def col_step_mm(self) -> float:
        """Pixel width in mm."""
        return float(np.linalg.norm(self.pixel_to_world[:3, 1]))

    @property
    def normal(self) -> np.ndarray:
        return self.pixel_to_world[:3, 2].copy()

    def pixel_to_world_points(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """World mm (N, 3) of pixel coordinates (continuous, N each)."""
        rows = np.asarray(rows, dtype=np.float64)
        cols = np.asarray(cols, dtype=np.float64)
        m = self.pixel_to_world
        return rows[..., None] * m[:3, 0] + cols[..., None] * m[:3, 1] + m[:3, 3]

    def world_to_pixel(self, xyz: np.ndarray) -> np.ndarray:
        """(row, col, distance_mm_from_plane) of world points given as (N, 3) or (3,)."""
        xyz = np.asarray(xyz, dtype=np.float64)
        inverse = np.linalg.inv(self.pixel_to_world)
        return xyz @ inverse[:3, :3].T + inverse[:3, 3]

    def edge_letters(self) -> dict[str, str]:
        """Orientation letters at the four screen edges, e.g. {'left': 'R', 'right': 'L', ...}."""
        right = self.pixel_to_world[:3, 1]
        down = self.pixel_to_world[:3, 0]
        return {
            "right": direction_letter(right),
            "left": direction_letter(-right),
            "bottom": direction_letter(down),
            "top": direction_letter(-down),
        }


@dataclass(frozen=True)
class PlaneImage:
    """One layer sampled on a plane: values (rows, cols) and where the layer has data."""

    values: np.ndarray
    inside: np.ndarray


def direction_letter(vector: np.ndarray) -> str:
    """Anatomical letter (R/L/A/P/S/I) a world direction points to (its largest component)."""
    vector = np.asarray(vector, dtype=np.float64)
    axis = int(np.argmax(np.abs(vector)))
    return _LETTERS[axis][1 if vector[axis] > 0 else 0]


def display_plane(
    reference: Volume,
    orientation: str,
    world_point: np.ndarray,
    radiological: bool = True,
) -> Plane:
    """The slice of ``reference``'s voxel grid a view shows through ``world_point``.

    The plane follows the reference (anatomical) grid: the voxel axis closest to the view's
    normal picks the slice (nearest voxel to the point, clamped to the grid); the other two
    axes become screen rows and columns, flipped as needed so that screen directions follow
    the convention (radiological: patient left on screen right for axial and coronal).
    """
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    linear = reference.voxel_to_world[:3, :3]
    directions = linear / np.linalg.norm(linear, axis=0)
    normal_axis = int(np.argmax(np.abs(directions.T @ _VIEW_NORMAL[orientation])))
    in_plane = [a for a in range(3) if a != normal_axis]
    right_target, down_target = _SCREEN_AXES[orientation]
    if radiological and orientation in ("axial", "coronal"):
        right_target = -right_target

    def score(right_axis: int, down_axis: int) -> float:
        return abs(directions[:, right_axis] @ right_target) + abs(directions[:, down_axis] @ down_target)

    right_axis, down_axis = in_plane
    if score(in_plane[1], in_plane[0]) > score(in_plane[0], in_plane[1]):
        right_axis, down_axis = in_plane[1], in_plane[0]
    right_sign = 1.0 if directions[:, right_axis] @ right_target >= 0 else -1.0
    down_sign = 1.0 if directions[:, down_axis] @ down_target >= 0 else -1.0

    shape = reference.shape
    voxel = reference.world_to_voxel_points(np.asarray(world_point, dtype=np.float64))
    slice_index = int(np.clip(np.rint(voxel[normal_axis]), 0, shape[normal_axis] - 1))
    origin_ijk = np.zeros(3)
    origin_ijk[normal_axis] = slice_index
    origin_ijk[right_axis] = 0 if right_sign > 0 else shape[right_axis] - 1
    origin_ijk[down_axis] = 0 if down_sign > 0 else shape[down_axis] - 1

    pixel_to_world = np.eye(4)
    pixel_to_world[:3, 0] = down_sign * linear[:, down_axis]
    pixel_to_world[:3, 1] = right_sign * linear[:, right_axis]
    normal = np.cross(pixel_to_world[:3, 1], pixel_to_world[:3, 0])
    pixel_to_world[:3, 2] = normal / np.linalg.norm(normal)
    pixel_to_world[:3, 3] = reference.voxel_to_world_points(origin_ijk)
    return Plane(
        pixel_to_world,
        (int(shape[down_axis]), int(shape[right_axis])),
        orientation,
        normal_axis,
        slice_index,
    )


def plane_to_voxel(volume: Volume, plane: Plane) -> np.ndarray:
    """4×4 affine from plane pixels ``(row, col, 0, 1)`` to ``volume``'s voxel coordinates."""
    return volume.world_to_voxel @ plane.pixel_to_world


def sample_plane(volume: Volume, plane: Plane, interpolation: str = "linear") -> PlaneImage:
    """Sample ``volume`` on ``plane`` from its own voxels.

    Args:
        interpolation: ``"linear"`` (trilinear; images) or ``"nearest"`` (label maps).

    Returns:
        values: when the plane's pixels are exactly this grid's voxel centres, the voxels
            themselves in the volume's dtype (no interpolation happens, nothing is converted);
            otherwise float32 for linear and the volume's dtype for nearest. Pixels outside the
            field of view are NaN (float) or 0 (integer). ``inside`` is True where the pixel
            centre lies within the volume's voxel extent (outer voxel faces).
    """
    if interpolation not in ("linear", "nearest"):
        raise ValueError(f"interpolation must be 'linear' or 'nearest', got {interpolation!r}")
    to_voxel = plane_to_voxel(volume, plane)
    direct = _slice_directly(volume.data, to_voxel, plane.shape)
    if direct is None:
        values, inside = sample_on_plane(volume.data, to_voxel, plane.shape, interpolation)
        return PlaneImage(values, inside)
    values = direct
    inside = _field_of_view_mask(to_voxel, volume.shape, plane.shape)
    if not inside.all():
        if interpolation == "linear" and not np.issubdtype(values.dtype, np.floating):
            values = values.astype(np.float32)
        values[~inside] = np.nan if interpolation == "linear" else 0
    return PlaneImage(values, inside)


def sample_point(volume: Volume, world_xyz: np.ndarray, interpolation: str = "linear") -> float | None:
    """Exact value at one world point (cursor readout); None outside the field of view.

    Trilinear (or nearest) on the 2×2×2 voxels around the point, clamped at the grid's edge
    half-voxel as the plane sampler does. In plain Python floats (the same float64 operations
    numpy would do): the window reads every layer at the cursor on each slice step and mouse
    move, and a dozen numpy calls on three numbers cost ≈0.3 ms a layer.
    """
    ijk = volume.world_to_voxel_points(np.asarray(world_xyz, dtype=np.float64)).tolist()
    shape = volume.shape
    if not all(-0.5 <= c <= n - 0.5 for c, n in zip(ijk, shape)):  # also NaN
        return None
    data = volume.data
    if interpolation == "nearest":  # round() and np.rint both round half to even
        return float(data[tuple(min(max(int(round(c)), 0), n - 1) for c, n in zip(ijk, shape))])
    lower = [min(max(math.floor(c), 0), n - 1) for c, n in zip(ijk, shape)]
    upper = [min(low + 1, n - 1) for low, n in zip(lower, shape)]
    frac = [0.0 if up == low else min(max(c - low, 0.0), 1.0) for c, low, up in zip(ijk, lower, upper)]
    block = np.asarray(data[lower[0]: upper[0] + 1, lower[1]: upper[1] + 1, lower[2]: upper[2] + 1],
                       dtype=np.float64)
    values, sizes = block.ravel().tolist(), list(block.shape)
    for axis in range(3):  # blend axis 0, then 1, then 2: value(0)·(1 − w) + value(1)·w
        if sizes[axis] != 2:
            continue
        w = frac[axis]
        keep = 1 - w
        stride = math.prod(sizes[axis + 1:])
        blended = []
        for outer in range(0, len(values), 2 * stride):
            blended += [values[outer + s] * keep + values[outer + stride + s] * w for s in range(stride)]
        values, sizes[axis] = blended, 1
    return float(values[0])


# -- plane sampling internals ----------------------------------------------------------------

def _field_of_view_mask(to_voxel: np.ndarray, shape: tuple[int, ...], plane_shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre maps inside [-0.5, n-0.5] on every axis, solved row by row.

    Each axis' voxel coordinate is affine in (row, col), so for every row the valid columns
    form one interval; intersecting the three intervals is O(rows), not O(pixels) arithmetic.
    """
    rows, cols = plane_shape
    corners = np.array([[0, 0], [0, cols - 1], [rows - 1, 0], [rows - 1, cols - 1]], dtype=np.float64)
    corner_voxels = corners @ to_voxel[:3, :2].T + to_voxel[:3, 3]
    if np.all(corner_voxels >= -0.5) and np.all(corner_voxels <= np.array(shape[:3]) - 0.5):
        return np.ones(plane_shape, dtype=bool)  # the plane and the grid are convex
    r = np.arange(rows, dtype=np.float64)
    lo = np.full(rows, -np.inf)
    hi = np.full(rows, np.inf)
    eps = 1e-9
    for axis in range(3):
        a_row, a_col, offset = to_voxel[axis, 0], to_voxel[axis, 1], to_voxel[axis, 3]
        low_bound, high_bound = -0.5 - eps, shape[axis] - 0.5 + eps
        base = offset + a_row * r
        if abs(a_col) < 1e-12:
            ok = (base >= low_bound) & (base <= high_bound)
            hi = np.where(ok, hi, -np.inf)
            continue
        c1 = (low_bound - base) / a_col
        c2 = (high_bound - base) / a_col
        lo = np.maximum(lo, np.minimum(c1, c2))
        hi = np.minimum(hi, np.maximum(c1, c2))
    c = np.arange(cols, dtype=np.float64)
    return (c[None, :] >= lo[:, None]) & (c[None, :] <= hi[:, None])


def _slice_directly(data: np.ndarray, to_voxel: np.ndarray, plane_shape: tuple[int, int]) -> np.ndarray | None:
    """Plain array slicing when the plane's pixels are voxel centres of this grid, else None."""
    row_vec, col_vec, offset = to_voxel[:3, 0], to_voxel[:3, 1], to_voxel[:3, 3]
    row_axis = int(np.argmax(np.abs(row_vec)))
    col_axis = int(np.argmax(np.abs(col_vec)))
    if row_axis == col_axis:
        return None
    normal_axis = 3 - row_axis - col_axis
    unit_row = np.zeros(3)
    unit_row[row_axis] = np.sign(row_vec[row_axis])
    unit_col = np.zeros(3)
    unit_col[col_axis] = np.sign(col_vec[col_axis])
    if np.abs(row_vec - unit_row).max() > GRID_TOLERANCE_VOX or np.abs(col_vec - unit_col).max() > GRID_TOLERANCE_VOX:
        return None
    rounded = np.rint(offset)
    if np.abs(offset - rounded).max() > GRID_TOLERANCE_VOX:
        return None
    k = int(rounded[normal_axis])
    if not 0 <= k < data.shape[normal_axis]:
        return None
    rows, cols = plane_shape
    row_idx = int(rounded[row_axis]) + int(unit_row[row_axis]) * np.arange(rows)
    col_idx = int(rounded[col_axis]) + int(unit_col[col_axis]) * np.arange(cols)
    # Basic indexing gives a strided view (np.take would read a whole memory-mapped file).
    index: list[slice | int] = [slice(None)] * 3
    index[normal_axis] = k
    slab = data[tuple(index)]  # remaining axes keep their order
    if row_axis > col_axis:
        slab = slab.T
    r_ok = (row_idx >= 0) & (row_idx < data.shape[row_axis])
    c_ok = (col_idx >= 0) & (col_idx < data.shape[col_axis])
    if r_ok.all() and c_ok.all():
        return np.ascontiguousarray(slab[_as_slice(row_idx), :][:, _as_slice(col_idx)])
    out = np.zeros(plane_shape, dtype=data.dtype)
    if r_ok.any() and c_ok.any():
        out[np.ix_(r_ok, c_ok)] = slab[_as_slice(row_idx[r_ok]), :][:, _as_slice(col_idx[c_ok])]
    return out


def _as_slice(indices: np.ndarray) -> slice:
    """A basic slice for a run of consecutive indices stepping by +1 or -1."""
    start = int(indices[0])
    if len(indices) == 1:
        return slice(start, start + 1)
    step = int(indices[1] - indices[0])
    stop = int(indices[-1]) + step
    return slice(start, stop if stop >= 0 else None, step)


# -- label maps between grids ----------------------------------------------------------------

def same_grid(a: Volume, b: Volume) -> bool:
    """True when two volumes share shape and voxel centres (within GRID_TOLERANCE_VOX)."""
    if a.shape != b.shape:
        return False
    corners = np.array([[i, j, k] for i in (0, a.shape[0] - 1) for j in (0, a.shape[1] - 1) for k in (0, a.shape[2] - 1)])
    mapped = b.world_to_voxel_points(a.voxel_to_world_points(corners))
    return bool(np.abs(mapped - corners).max() <= GRID_TOLERANCE_VOX)


def map_labels_to_grid(labels: Volume, target: Volume) -> np.ndarray:
    """The label map resampled onto ``target``'s grid (nearest neighbour through world space).

    Quantification measures each image on its own grid (PRODUCT.md §3): the *region* moves,
    never the image. Only target voxels inside the box the labelled voxels occupy are computed,
    so a small region on a large grid is cheap. Target voxels outside the label map are 0.
    """
    out = np.zeros(target.shape, dtype=np.int32)
    if same_grid(labels, target):
        out[...] = labels.data
        return out
    box = labels_box_on_grid(labels, target)
    if box is None:
        return out
    out[box] = _lookup_labels(labels, target, box)
    return out


def labels_box_on_grid(labels: Volume, target: Volume) -> tuple[slice, slice, slice] | None:
    """Slices of ``target``'s grid covering every labelled (non-zero) voxel of ``labels``."""
    source_box = label_box(np.asarray(labels.data) != 0)
    if source_box is None:
        return None
    return _box_on_grid(labels, target, source_box)


def _box_on_grid(labels: Volume, target: Volume, source_box: tuple[slice, slice, slice]) -> tuple[slice, slice, slice] | None:
    """Slices of ``target``'s grid covering a box of the label map's grid."""
    low = np.array([b.start for b in source_box]) - 0.5
    high = np.array([b.stop - 1 for b in source_box]) + 0.5
    corners = np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])])
    in_target = target.world_to_voxel_points(labels.voxel_to_world_points(corners))
    start = np.clip(np.floor(in_target.min(axis=0)).astype(int) - 1, 0, np.array(target.shape))
    stop = np.clip(np.ceil(in_target.max(axis=0)).astype(int) + 2, 0, np.array(target.shape))
    if np.any(stop <= start):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop))  # type: ignore[return-value]


def _lookup_labels(labels: Volume, target: Volume, box: tuple[slice, slice, slice]) -> np.ndarray:
    """Nearest label at each target voxel centre of ``box``.

    Uses the compiled kernel when it is already loaded (the window: ~10× faster, it matters
    on every brush stroke) and numpy otherwise (command-line statistics would pay more for
    numba's start-up than these lookups cost). Both give identical labels.
    """
    to_labels = labels.world_to_voxel @ target.voxel_to_world
    if kernels_ready():
        start = tuple(b.start for b in box)
        shape = tuple(b.stop - b.start for b in box)
        return lookup_labels(np.asarray(labels.data), to_labels, start, shape)
    data = np.asarray(labels.data)
    limits = np.array(data.shape)
    i = np.arange(box[0].start, box[0].stop, dtype=np.float32)[:, None, None]
    j = np.arange(box[1].start, box[1].stop, dtype=np.float32)[None, :, None]
    depth = box[2].stop - box[2].start
    result = np.empty((i.shape[0], j.shape[1], depth), dtype=np.int32)
    m = to_labels.astype(np.float32)
    # several target slices at once (a region's box is often a few dozen voxels a side, where
    # one slice at a time was mostly Python overhead), at most LOOKUP_CHUNK_VOXELS per pass
    step = max(1, LOOKUP_CHUNK_VOXELS // max(i.shape[0] * j.shape[1], 1))
    for first in range(0, depth, step):
        k = np.arange(box[2].start + first, box[2].start + min(first + step, depth), dtype=np.float32)[None, None, :]
        valid = np.ones((i.shape[0], j.shape[1], k.shape[2]), dtype=bool)
        index = []
        for axis in range(3):
            rounded = np.rint(m[axis, 0] * i + (m[axis, 1] * j + (m[axis, 2] * k + m[axis, 3]))).astype(np.int32)
            valid &= (rounded >= 0) & (rounded < limits[axis])
            np.clip(rounded, 0, limits[axis] - 1, out=rounded)
            index.append(rounded)
        result[:, :, first:first + k.shape[2]] = np.where(valid, data[index[0], index[1], index[2]], 0)
    return result


#: Target voxels looked up per pass of the numpy label lookup (bounds its temporaries: ~20 B each).
LOOKUP_CHUNK_VOXELS = 1 << 20


#: Largest label value for which tables indexed by the label itself (``ndimage.find_objects``,
#: ``np.bincount``) are used directly: 2¹⁶ entries are a few MB at most. Larger values (1e8,
#: 2e9: issue 13 saw 5.5 GB and MemoryError) are first renumbered 1..K over the K labels present,
#: so memory follows the labels present, not the largest value.
DENSE_LABEL_LIMIT = 1 << 16


def _largest_label(data: np.ndarray) -> int:
    """The largest value of a label array (one fast pass: ~30 ms for 80 M int16 voxels), 0
    when empty."""
    return int(data.max()) if data.size else 0


def present_labels(data: np.ndarray) -> np.ndarray:
    """The positive labels present in a label array, sorted (int64).

    Memory grows with the number of labels present: a histogram when every value is at most
    :data:`DENSE_LABEL_LIMIT`, else a slab-by-slab ``np.unique`` of the positive voxels.
    """
    data = np.asarray(data)
    if data.size == 0:
        return np.zeros(0, np.int64)
    top = _largest_label(data)
    if top <= 0:
        return np.zeros(0, np.int64)
    if top <= DENSE_LABEL_LIMIT:
        counts = np.zeros(top + 1, np.int64)
        for slab in _slabs(data):  # bincount copies its input to intp: one slab at a time
            counts += np.bincount(np.maximum(slab, 0).ravel(), minlength=top + 1)
        return np.flatnonzero(counts[1:]).astype(np.int64) + 1
    return _unique_positive(data)


def _unique_positive(data: np.ndarray) -> np.ndarray:
    """Sorted positive values of a 3-D array, one slab at a time (bounded temporaries)."""
    parts = [np.unique(slab[slab > 0]) for slab in _slabs(data)]
    return np.unique(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)


def _slabs(data: np.ndarray):
    """``data`` as slabs along its first axis (each a view)."""
    if data.ndim == 0:
        yield data.reshape(1)
        return
    for i in range(data.shape[0]):
        yield data[i]


def compact_labels(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values, compact)``: the positive labels present (sorted, int64) and an int32 array
    of ``data``'s shape holding ``i + 1`` where ``data == values[i]``, 0 elsewhere.

    Per-label tables built on ``compact`` have K + 1 entries for K labels present, whatever the
    label values (up to 2³¹ − 1 after :func:`viewer.core.io.study.load_timepoint`).
    """
    data = np.asarray(data)
    values = present_labels(data)
    compact = np.zeros(data.shape, dtype=np.int32)
    if data.ndim == 0 or not len(values):
        return values, compact
    for source, target in zip(_slabs(data), _slabs(compact)):
        positive = source > 0
        if positive.any():
            target[positive] = np.searchsorted(values, source[positive]) + 1
    return values, compact


def label_boxes(labels: Volume) -> dict[int, tuple[slice, slice, slice]]:
    """Tight box of every label present in a label map.

    The map is first cropped to the box of its labelled voxels (regions usually fill a small
    part of the head: on the demo's 197×233×189 map this makes the scan 4 ms instead of 50 ms).
    Then one ``find_objects`` pass for small label values; for large ones (above
    :data:`DENSE_LABEL_LIMIT`) over the renumbered map (:func:`compact_labels`), so that memory
    follows the labels present and not the largest value.
    """
    data = np.asarray(labels.data)
    if data.size == 0:
        return {}
    outer = label_box(data > 0)
    if outer is None:
        return {}
    data = data[outer]

    def shifted(box: tuple[slice, ...]) -> tuple[slice, slice, slice]:
        return tuple(slice(b.start + o.start, b.stop + o.start) for b, o in zip(box, outer))  # type: ignore[return-value]

    from scipy import ndimage  # ≈0.13 s to import: only commands that need the boxes pay it

    if _largest_label(data) <= DENSE_LABEL_LIMIT:
        boxes = ndimage.find_objects(data)
        return {index + 1: shifted(box) for index, box in enumerate(boxes) if box is not None}
    values, compact = compact_labels(data)
    boxes = ndimage.find_objects(compact, max_label=len(values))
    return {int(values[index]): shifted(box) for index, box in enumerate(boxes) if box is not None}


def region_mask_on_grid(
    labels: Volume, label: int, target: Volume, source_box: tuple[slice, slice, slice] | None = None
) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Where one region lies on ``target``'s grid: a box of the grid and the mask inside it.

    Cheap for incremental recomputation: only the box around that label's voxels is mapped.
    ``source_box`` (the label's box on its own grid, e.g. from :func:`label_boxes`) saves a
    scan of the whole label map. Returns None when the region has no voxel on the target grid.
    """
    data = np.asarray(labels.data)
    if source_box is None:
        source_box = label_box(data == label)
        if source_box is None:
            return None
    if same_grid(labels, target):
        mask = data[source_box] == label
        return (source_box, mask) if mask.any() else None
    box = _box_on_grid(labels, target, source_box)
    if box is None:
        return None
    mask = _lookup_labels(labels, target, box) == label
    if not mask.any():
        return None
    return box, mask


def resample_to_grid(volume: Volume, target: Volume, interpolation: str = "linear") -> np.ndarray:
    """``volume`` sampled at every voxel centre of ``target`` (slice by slice with the plane kernels).

    For building a *new* label map on an editable grid (the automatic core/penumbra proposal);
    never used to measure an image, which is always quantified on its own grid.
    """
    out = np.empty(target.shape, dtype=np.float32 if interpolation == "linear" else volume.data.dtype)
    for k in range(target.shape[2]):
        pixel_to_world = np.eye(4)
        pixel_to_world[:3, 0] = target.voxel_to_world[:3, 0]
        pixel_to_world[:3, 1] = target.voxel_to_world[:3, 1]
        normal = np.cross(pixel_to_world[:3, 1], pixel_to_world[:3, 0])
        pixel_to_world[:3, 2] = normal / np.linalg.norm(normal)
        pixel_to_world[:3, 3] = target.voxel_to_world_points(np.array([0.0, 0.0, float(k)]))
        plane = Plane(pixel_to_world, (target.shape[0], target.shape[1]))
        out[:, :, k] = sample_plane(volume, plane, interpolation).values
    return out


def label_box(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Tight box around the True voxels of a 3-D mask (None if empty), in two passes over it."""
    ij = mask.any(axis=2)
    i = np.flatnonzero(ij.any(axis=1))
    if len(i) == 0:
        return None
    j = np.flatnonzero(ij.any(axis=0))
    k = np.flatnonzero(mask.any(axis=(0, 1)))
    return (slice(int(i[0]), int(i[-1]) + 1), slice(int(j[0]), int(j[-1]) + 1), slice(int(k[0]), int(k[-1]) + 1))
