"""Annotation tools on an editable label map: brush/eraser, polygon, threshold paint, flood fill,
fill-between-slices and writing an automatic core/penumbra proposal (PRODUCT.md §5).

Every tool is a pure function of an :class:`~viewer.core.regions.EditableLabels`: it computes
*which* voxels change inside a small box of the label grid (never over the whole map), hands
the box to ``EditableLabels.paint_mask`` / ``apply_voxels`` and returns the resulting
:class:`~viewer.core.regions.Edit` (one undo step), or None when nothing changed. Locked labels
are respected there.

Geometry: the label grid may be anisotropic and oblique. Sizes are in millimetres and a voxel
belongs to a brush when its *centre* lies within the radius, measured physically through the
grid's affine (not in voxel units). A 2-D tool works on "the slice" of the label grid under a
view's plane: the label voxels whose centres lie within half a voxel of the plane along the
grid axis closest to the plane normal (a *naive digital plane*: exactly one voxel per column of
that axis). When the plane is a slice of the label grid — the usual case, labels drawn on the
anatomical grid — that is exactly the plane's slice ``slice_index``.

Images used to limit painting (threshold paint, flood fill) stay on their own grid: they are
sampled at the label voxel centres (trilinear, with the same kernels and conventions as the
display, so what is thresholded is what the user sees), and only inside the tool's box.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from viewer.core.display import region_color
from viewer.core.plane_kernels import sample_on_plane
from viewer.core.quant.perfusion import CORE_LABEL, PENUMBRA_LABEL, Proposal
from viewer.core.regions import Box, Edit, EditableLabels, LabelEntry
from viewer.core.spaces import GRID_TOLERANCE_VOX, Plane, label_box, same_grid
from viewer.core.volume import Volume

__all__ = [
    "SliceSlab",
    "apply_proposal",
    "brush",
    "brush_footprint",
    "brush_stroke",
    "flood_fill",
    "interpolate_slices",
    "polygon_fill",
    "slice_slab",
    "threshold_paint",
    "threshold_stroke",
]


# -- the slice of the label grid under a plane ------------------------------------------------

@dataclass(frozen=True)
class SliceSlab:
    """The label-grid voxels a 2-D tool may touch: one voxel thick around a plane.

    A voxel centre ``x`` belongs to the slab when ``-0.5 <= n·(x - origin) / step_mm < 0.5``:
    within half a voxel of the plane, counted along ``axis``, the label-grid axis closest to the
    plane normal (half-open so that a plane exactly between two slices picks one of them).

    Attributes:
        normal: unit world normal of the plane.
        origin: a world point of the plane (mm).
        axis: label-grid axis closest to the normal.
        step_mm: ``n · (world step of one voxel along axis)``, signed (mm).
    """

    normal: np.ndarray
    origin: np.ndarray
    axis: int
    step_mm: float

    def project(self, points_world: np.ndarray) -> np.ndarray:
        """World points moved along the normal onto the plane (mm)."""
        points = np.asarray(points_world, dtype=np.float64)
        offset = (points - self.origin) @ self.normal
        return points - offset[..., None] * self.normal


def slice_slab(volume: Volume, plane: Plane) -> SliceSlab:
    """The :class:`SliceSlab` of ``volume``'s grid under ``plane``."""
    normal = np.asarray(plane.normal, dtype=np.float64)
    normal = normal / np.linalg.norm(normal)
    along = volume.voxel_to_world[:3, :3].T @ normal  # mm along the normal per voxel step
    axis = int(np.argmax(np.abs(along)))
    return SliceSlab(normal, plane.pixel_to_world[:3, 3].astype(np.float64), axis, float(along[axis]))


# -- voxel boxes and separable forms over a box ------------------------------------------------------

def _box_around(volume: Volume, centers_vox: np.ndarray, half_extent_vox: np.ndarray) -> Box | None:
    """Voxel box containing every voxel centre within ``half_extent`` of the voxel coordinates.

    ``centers_vox`` is (3,) or (N, 3); the box spans them all (before clipping to the grid, so
    a segment crossing the grid between two outside points is kept). One voxel of margin on
    each side (the masks decide exactly).
    """
    centers = np.atleast_2d(centers_vox)
    shape = np.array(volume.shape)
    low = np.floor(centers.min(axis=0) - half_extent_vox).astype(np.int64)
    high = np.ceil(centers.max(axis=0) + half_extent_vox).astype(np.int64) + 1
    low = np.clip(low, 0, shape)
    high = np.clip(high, 0, shape)
    if np.any(high <= low):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))  # type: ignore[return-value]


def _union(a: Box | None, b: Box | None) -> Box | None:
    if a is None:
        return b
    if b is None:
        return a
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))  # type: ignore[return-value]


def _offsets(box: Box, origin_vox: np.ndarray) -> list[np.ndarray]:
    """Per-axis voxel-index offsets of the box's voxel centres from a voxel coordinate."""
    return [np.arange(s.start, s.stop, dtype=np.float64) - origin_vox[a] for a, s in enumerate(box)]


def _linear(d: list[np.ndarray], coef: np.ndarray, constant: float = 0.0) -> np.ndarray:
    """``coef · d + constant`` over the box (one full-size add; the rest is 1-D/2-D)."""
    ij = (coef[0] * d[0] + constant)[:, None] + coef[1] * d[1][None, :]
    return ij[:, :, None] + (coef[2] * d[2])[None, None, :]


def _quadratic(d: list[np.ndarray], m: np.ndarray) -> np.ndarray:
    """``dᵀ M d`` over the box for a symmetric 3×3 ``M``, from three 2-D partial sums.

    Two full-size adds instead of ~10 per-voxel operations: this is what keeps a 20 mm sphere
    brush on a fine grid in the low milliseconds.
    """
    di, dj, dk = d
    q_ij = (m[0, 0] * di * di)[:, None] + 2.0 * m[0, 1] * np.outer(di, dj) + (m[1, 1] * dj * dj)[None, :]
    q_ik = 2.0 * m[0, 2] * np.outer(di, dk)
    q_jk = (m[2, 2] * dk * dk)[None, :] + 2.0 * m[1, 2] * np.outer(dj, dk)
    out = q_ij[:, :, None] + q_ik[:, None, :]
    out += q_jk[None, :, :]
    return out


# -- brush footprint (disk / sphere / capsule) ------------------------------------------------------

def _segment_box(volume: Volume, p: np.ndarray, q: np.ndarray, radius_mm: float, slab: SliceSlab | None) -> Box | None:
    """Box of the capsule p→q (convex hull of two balls/disks: union of the two boxes)."""
    inverse = volume.world_to_voxel[:3, :3]  # row i: voxel-coordinate i per world mm
    row_norm2 = np.sum(inverse * inverse, axis=1)
    if slab is None:
        half = radius_mm * np.sqrt(row_norm2)
    else:
        along_normal = inverse @ slab.normal
        half = radius_mm * np.sqrt(np.maximum(row_norm2 - along_normal**2, 0.0))
        half = half + 0.5 * abs(slab.step_mm) * np.abs(along_normal)
    return _box_around(volume, volume.world_to_voxel_points(np.stack([p, q])), half)


def _segment_mask(volume: Volume, box: Box, p: np.ndarray, q: np.ndarray, radius_mm: float, slab: SliceSlab | None) -> np.ndarray:
    """Voxels of ``box`` whose centre is within ``radius_mm`` of the segment p→q (a capsule).

    2-D (``slab`` given): in-plane distance to the segment projected on the plane, and only
    voxels of the slab. All distances are physical (mm) through the affine.
    """
    linear_part = volume.voxel_to_world[:3, :3]
    gram = linear_part.T @ linear_part
    d = _offsets(box, volume.world_to_voxel_points(p))
    segment = np.asarray(q, dtype=np.float64) - np.asarray(p, dtype=np.float64)
    form = gram
    if slab is not None:
        n_vox = linear_part.T @ slab.normal
        form = gram - np.outer(n_vox, n_vox)  # |w|² − (w·n)²: squared in-plane distance
        segment = segment - (segment @ slab.normal) * slab.normal
    dist2 = _quadratic(d, form)
    length2 = float(segment @ segment)
    if length2 > 1e-12 * max(radius_mm, 1.0) ** 2:
        along = _linear(d, linear_part.T @ segment)  # w·d
        t = np.clip(along / length2, 0.0, 1.0)
        dist2 -= t * (2.0 * along - t * length2)
    mask = dist2 <= radius_mm * radius_mm
    if slab is not None:
        height = (np.asarray(p, dtype=np.float64) - slab.origin) @ slab.normal
        s = _linear(d, (linear_part.T @ slab.normal) / slab.step_mm, height / slab.step_mm)
        mask &= (s >= -0.5) & (s < 0.5)
    return mask


def brush_footprint(
    volume: Volume,
    points_world: Sequence[Sequence[float]] | np.ndarray,
    radius_mm: float,
    *,
    plane: Plane | None = None,
    sphere: bool = False,
) -> tuple[Box, np.ndarray] | None:
    """Which voxels of ``volume``'s grid a brush stroke covers: ``(box, mask)`` or None.

    A stroke of one point is a disk (2-D, on ``plane``'s slice of the grid) or a sphere (3-D);
    several points give the union of the capsules between consecutive points — the exact swept
    shape, so a fast drag leaves no gaps (no need to sample the segment). Voxel centre within
    ``radius_mm`` (mm, physical distance). Also usable for a cursor preview (nothing is edited).
    """
    if radius_mm <= 0:
        raise ValueError(f"radius_mm must be > 0, got {radius_mm}")
    points = np.atleast_2d(np.asarray(points_world, dtype=np.float64))
    if points.shape[1] != 3 or len(points) == 0:
        raise ValueError("points_world must be world points (N, 3)")
    slab = None
    if not sphere:
        if plane is None:
            raise ValueError("a 2-D brush needs the plane it paints on (or sphere=True)")
        slab = slice_slab(volume, plane)
        points = slab.project(points)
    segments = [(points[0], points[0])] if len(points) == 1 else list(itertools.pairwise(points))
    boxes = [_segment_box(volume, p, q, radius_mm, slab) for p, q in segments]
    box = None
    for b in boxes:
        box = _union(box, b)
    if box is None:
        return None
    if len(segments) == 1:
        return box, _segment_mask(volume, box, *segments[0], radius_mm, slab)
    mask = np.zeros(tuple(s.stop - s.start for s in box), dtype=bool)
    for (p, q), b in zip(segments, boxes):
        if b is None:
            continue
        inner = tuple(slice(x.start - o.start, x.stop - o.start) for x, o in zip(b, box))
        mask[inner] |= _segment_mask(volume, b, p, q, radius_mm, slab)
    return box, mask


def _check_label(labels: EditableLabels, label: int) -> int:
    label = int(label)
    info = np.iinfo(labels.data.dtype) if np.issubdtype(labels.data.dtype, np.integer) else None
    if label < 0 or (info is not None and label > info.max):
        raise ValueError(f"label {label} does not fit the label map ({labels.data.dtype})")
    return label


def _describe(labels: EditableLabels, tool: str, label: int) -> str:
    return f"erase ({tool})" if label == 0 else f"{tool} '{labels.table.name(label)}'"


def _paint(labels: EditableLabels, description: str, footprint: tuple[Box, np.ndarray] | None, label: int) -> Edit | None:
    if footprint is None:
        return None
    box, mask = footprint
    if not mask.any():
        return None
    return labels.paint_mask(description, box, mask, label)


def brush(
    labels: EditableLabels,
    center_world: Sequence[float] | np.ndarray,
    radius_mm: float,
    label: int,
    *,
    plane: Plane | None = None,
    sphere: bool = False,
    description: str | None = None,
) -> Edit | None:
    """Paint (``label`` > 0) or erase (``label`` 0) a disk or sphere of ``radius_mm`` (mm).

    2-D brush (default): a disk in ``plane``'s slice of the label grid (see
    :class:`SliceSlab`), centred on the world point projected onto the plane. 3-D brush
    (``sphere=True``): a ball around the world point. A voxel is painted when its centre lies
    within the radius, measured in mm through the affine, so the brush is round on screen and
    in the patient whatever the grid's spacing or obliquity. One undoable edit.
    """
    return brush_stroke(labels, [center_world], radius_mm, label, plane=plane, sphere=sphere, description=description)


def brush_stroke(
    labels: EditableLabels,
    points_world: Sequence[Sequence[float]] | np.ndarray,
    radius_mm: float,
    label: int,
    *,
    plane: Plane | None = None,
    sphere: bool = False,
    description: str | None = None,
) -> Edit | None:
    """A whole mouse drag (world points, mm) painted as ONE edit — one undo step.

    The stroke is the union of the capsules (disks/spheres swept) between consecutive points,
    computed exactly (see :func:`brush_footprint`) inside the stroke's box only.
    """
    label = _check_label(labels, label)
    footprint = brush_footprint(labels.labels, points_world, radius_mm, plane=plane, sphere=sphere)
    return _paint(labels, description or _describe(labels, "brush", label), footprint, label)


# -- polygon (lasso) ------------------------------------------------------------------------------

def _plane_is_grid_slice(volume: Volume, plane: Plane) -> np.ndarray | None:
    """Integer plane-pixel → voxel affine when the plane's pixels are this grid's voxel centres."""
    to_voxel = volume.world_to_voxel @ plane.pixel_to_world
    for column in (0, 1):
        vec = to_voxel[:3, column]
        axis = int(np.argmax(np.abs(vec)))
        unit = np.zeros(3)
        unit[axis] = np.sign(vec[axis])
        if np.abs(vec - unit).max() > GRID_TOLERANCE_VOX:
            return None
    if int(np.argmax(np.abs(to_voxel[:3, 0]))) == int(np.argmax(np.abs(to_voxel[:3, 1]))):
        return None
    offset = to_voxel[:3, 3]
    if np.abs(offset - np.rint(offset)).max() > GRID_TOLERANCE_VOX:
        return None
    exact = np.rint(to_voxel[:3, [0, 1, 3]]).astype(np.int64)
    return exact


def polygon_fill(
    labels: EditableLabels,
    plane: Plane,
    vertices_world: Sequence[Sequence[float]] | np.ndarray,
    label: int,
    *,
    description: str | None = None,
) -> Edit | None:
    """Fill a polygon (lasso; world-mm vertices on the plane, closed automatically).

    Filled voxels are those of the plane's slice of the label grid whose centre lies inside the
    polygon or on its boundary (``skimage.draw.polygon``'s rule: a square with vertices on
    voxel centres 10..20 fills 11×11 voxels). When the plane's pixels are the label grid's
    voxels the polygon is rasterised on the plane's pixels directly; otherwise every voxel of
    the slab (see :class:`SliceSlab`) under the polygon's circumscribed disk is projected onto
    the plane and tested (``skimage.measure.points_in_poly``). ``label`` 0 erases. One undoable edit.
    """
    from skimage.draw import polygon as draw_polygon
    from skimage.measure import points_in_poly

    label = _check_label(labels, label)
    description = description or _describe(labels, "polygon", label)
    vertices = np.atleast_2d(np.asarray(vertices_world, dtype=np.float64))
    if len(vertices) < 3:
        return None
    volume = labels.labels
    pixels = plane.world_to_pixel(vertices)[:, :2]  # (row, col) on the plane
    direct = _plane_is_grid_slice(volume, plane)
    if direct is not None:
        snapped = np.rint(pixels)  # vertices on voxel centres stay there despite rounding noise
        pixels = np.where(np.abs(pixels - snapped) < 1e-6, snapped, pixels)
        rows, cols = draw_polygon(pixels[:, 0], pixels[:, 1], shape=plane.shape)
        if len(rows) == 0:
            return None
        ijk = direct[:, 0][None, :] * rows[:, None] + direct[:, 1][None, :] * cols[:, None] + direct[:, 2][None, :]
        shape = np.array(volume.shape)
        ok = np.all((ijk >= 0) & (ijk < shape), axis=1)
        ijk = ijk[ok]
        if len(ijk) == 0:
            return None
        low, high = ijk.min(axis=0), ijk.max(axis=0) + 1
        box: Box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))  # type: ignore[assignment]
        mask = np.zeros(tuple(high - low), dtype=bool)
        mask[tuple((ijk - low).T)] = True
        return labels.paint_mask(description, box, mask, label)

    slab = slice_slab(volume, plane)
    on_plane = slab.project(vertices)
    center = on_plane.mean(axis=0)
    radius = float(np.max(np.linalg.norm(on_plane - center, axis=1)))
    circumscribed = max(radius, 1e-6) * (1 + 1e-9) + 1e-9  # the slab voxels under the polygon, and a few more
    footprint = brush_footprint(volume, [center], circumscribed, plane=plane)
    if footprint is None:
        return None
    box, mask = footprint
    ijk = np.argwhere(mask) + np.array([s.start for s in box])
    inside = points_in_poly(plane.world_to_pixel(volume.voxel_to_world_points(ijk))[:, :2], pixels)
    mask[tuple((ijk[~inside] - np.array([s.start for s in box])).T)] = False
    return _paint(labels, description, (box, mask), label)


# -- sampling an image at label voxel centres -----------------------------------------------------------

def _in_range_on_box(image: Volume, grid: Volume, box: Box, low: float, high: float) -> np.ndarray:
    """Where ``image``, taken at the voxel centres of ``box`` on ``grid``, lies in [low, high].

    The image keeps its own grid: when it *is* the label grid its voxels are compared directly
    (no float copy of a large image); otherwise each k-slice of the box is sampled trilinearly
    with the display's plane kernels (NaN outside the image: never in range), so only one
    slice of float samples exists at a time.
    """
    if same_grid(image, grid):
        return _in_range(np.asarray(image.data[box]), low, high)
    i0, j0 = box[0].start, box[1].start
    ni, nj = box[0].stop - i0, box[1].stop - j0
    to_image = image.world_to_voxel @ grid.voxel_to_world
    out = np.empty((ni, nj, box[2].stop - box[2].start), dtype=bool)
    data = image.data
    for out_k, k in enumerate(range(box[2].start, box[2].stop)):
        pixel_to_voxel = np.eye(4)
        pixel_to_voxel[:3, 3] = (i0, j0, k)  # plane pixel (r, c) = grid voxel (i0 + r, j0 + c, k)
        values, _ = sample_on_plane(data, to_image @ pixel_to_voxel, (ni, nj), "linear")
        out[:, :, out_k] = _in_range(values, low, high)
    return out


def _in_range(values: np.ndarray, low: float, high: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (values >= low) & (values <= high)  # NaN (outside the image) is never in range


def threshold_stroke(
    labels: EditableLabels,
    points_world: Sequence[Sequence[float]] | np.ndarray,
    radius_mm: float,
    label: int,
    image: Volume,
    low: float,
    high: float,
    *,
    plane: Plane | None = None,
    sphere: bool = False,
    description: str | None = None,
) -> Edit | None:
    """A brush stroke that paints only where ``image`` lies within [low, high] (image units).

    ``image`` is sampled at the label voxel centres under the brush (trilinear, from its own
    grid; only inside the stroke's box). Voxels outside the image are never painted.
    """
    label = _check_label(labels, label)
    footprint = brush_footprint(labels.labels, points_world, radius_mm, plane=plane, sphere=sphere)
    if footprint is None:
        return None
    box, mask = footprint
    if not mask.any():
        return None
    tight = label_box(mask)
    inner_box: Box = tuple(slice(b.start + t.start, b.start + t.stop) for b, t in zip(box, tight))  # type: ignore[assignment]
    inner = mask[tight] & _in_range_on_box(image, labels.labels, inner_box, low, high)
    return _paint(labels, description or _describe(labels, "threshold paint", label), (inner_box, inner), label)


def threshold_paint(
    labels: EditableLabels,
    center_world: Sequence[float] | np.ndarray,
    radius_mm: float,
    label: int,
    image: Volume,
    low: float,
    high: float,
    *,
    plane: Plane | None = None,
    sphere: bool = False,
    description: str | None = None,
) -> Edit | None:
    """Threshold-limited brush: like :func:`brush`, but only voxels whose ``image`` value
    (sampled at the label voxel centre from the image's own grid, trilinear) is within
    [low, high] (image units). Lets the user paint "the bright part" without tracing it."""
    return threshold_stroke(labels, [center_world], radius_mm, label, image, low, high,
                            plane=plane, sphere=sphere, description=description)


# -- 3-D flood fill ----------------------------------------------------------------------------------

def flood_fill(
    labels: EditableLabels,
    seed_world: Sequence[float] | np.ndarray,
    label: int,
    image: Volume,
    low: float,
    high: float,
    *,
    max_radius_mm: float | None = None,
    description: str | None = None,
) -> Edit | None:
    """3-D flood fill from a seed over face-connected label voxels with ``image`` in [low, high].

    The seed is the label voxel nearest to ``seed_world`` (mm). Image values are taken at label
    voxel centres (directly when the image is on the label grid, trilinear from its own grid
    otherwise). ``max_radius_mm`` bounds the fill to voxels whose centre lies within that
    distance (mm) of the seed voxel's centre, and the work to the box around it — the cheap,
    safe default for a click in a large structure. Without it the fill is unbounded, but the
    work starts in a box of ±32 mm around the seed, doubled only while the component reaches
    the box's faces. Returns None (no edit) when the seed is
    outside the grid or its value is out of range. One undoable edit.
    """
    label = _check_label(labels, label)
    volume = labels.labels
    seed = np.rint(volume.world_to_voxel_points(np.asarray(seed_world, dtype=np.float64))).astype(np.int64)
    shape = np.array(volume.shape)
    if np.any(seed < 0) or np.any(seed >= shape):
        return None
    seed_box: Box = tuple(slice(int(s), int(s) + 1) for s in seed)  # type: ignore[assignment]
    if not _in_range_on_box(image, volume, seed_box, low, high).all():
        return None
    seed_centre = volume.voxel_to_world_points(seed.astype(np.float64))
    if max_radius_mm is not None:
        footprint = brush_footprint(volume, [seed_centre], float(max_radius_mm), sphere=True)
        assert footprint is not None  # the seed voxel is inside the grid
        box, region = footprint
        mask = _seed_component(_in_range_on_box(image, volume, box, low, high) & region, seed, box)
    else:
        # Unbounded: label a box around the seed, and double it while the component reaches
        # one of its faces inside the grid — a small structure never pays for the whole map.
        per_mm = np.sqrt(np.sum(volume.world_to_voxel[:3, :3] ** 2, axis=1))
        reach = _FLOOD_FIRST_REACH_MM
        while True:
            box = _box_around(volume, seed.astype(np.float64), reach * per_mm)
            assert box is not None
            mask = _seed_component(_in_range_on_box(image, volume, box, low, high), seed, box)
            if not _reaches_open_face(mask, box, volume.shape):
                break
            reach *= 2.0
    tight = label_box(mask)
    fill_box: Box = tuple(slice(b.start + t.start, b.start + t.stop) for b, t in zip(box, tight))  # type: ignore[assignment]
    return labels.paint_mask(description or _describe(labels, "flood fill", label), fill_box, mask[tight], label)


#: First half-size (mm) of the box an unbounded flood fill labels (doubled as needed).
_FLOOD_FIRST_REACH_MM = 32.0


def _seed_component(candidates: np.ndarray, seed: np.ndarray, box: Box) -> np.ndarray:
    """The face-connected component of ``candidates`` (box-shaped) holding the seed voxel."""
    components, _ = ndimage.label(candidates)  # default structure: face-connected in 3-D
    return components == components[tuple(int(s - b.start) for s, b in zip(seed, box))]


def _reaches_open_face(mask: np.ndarray, box: Box, shape: tuple[int, int, int]) -> bool:
    """True when the mask touches a face of the box that is not the grid's border."""
    for axis, (b, n) in enumerate(zip(box, shape)):
        if b.start > 0 and np.take(mask, 0, axis=axis).any():
            return True
        if b.stop < n and np.take(mask, -1, axis=axis).any():
            return True
    return False


# -- fill between slices -------------------------------------------------------------------------

def _signed_distance(mask: np.ndarray, sampling: np.ndarray) -> np.ndarray:
    """Signed distance (mm) of a 2-D mask: negative inside, positive outside.

    Computed on the mask padded with one background ring (outside the crop is unlabelled).
    """
    padded = np.pad(mask, 1)
    outside = ndimage.distance_transform_edt(~padded, sampling=sampling)
    inside = ndimage.distance_transform_edt(padded, sampling=sampling)
    return (outside - inside)[1:-1, 1:-1]


def interpolate_slices(
    labels: EditableLabels,
    label: int,
    axis: int,
    *,
    description: str | None = None,
) -> Edit | None:
    """Fill-between-slices: interpolate ``label`` on the slices between the drawn ones.

    The user draws a region on a few slices along ``axis`` (0, 1 or 2 of the label grid). For
    every pair of consecutive drawn slices with a gap, the shape on each gap slice is where the
    linear blend (by slice position) of the two drawn slices' signed distance maps is ≤ 0
    (shape-based interpolation; distances in mm with the in-plane spacing, so the blend is
    right on anisotropic grids). Only voxels that are currently 0 (unlabelled) are set — other
    regions are never overwritten. Works inside the label's box only. One undoable edit.
    """
    label = _check_label(labels, label)
    if label == 0:
        raise ValueError("interpolate a label > 0")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    data = labels.data
    present_all = np.asarray(data) == label
    if not present_all.any():
        return None
    box = label_box(present_all)
    block = np.moveaxis(np.asarray(data[box]), axis, 0)  # view: (slices, a, b)
    present = (block == label)
    drawn = np.flatnonzero(present.reshape(len(present), -1).any(axis=1))
    if len(drawn) < 2 or np.all(np.diff(drawn) == 1):
        return None
    spacing = labels.labels.spacing_mm
    sampling = np.array([spacing[a] for a in range(3) if a != axis])
    after = block.copy()
    distances: dict[int, np.ndarray] = {}

    def sdf(index: int) -> np.ndarray:
        if index not in distances:
            distances[index] = _signed_distance(present[index], sampling)
        return distances[index]

    for s0, s1 in itertools.pairwise(drawn):
        if s1 - s0 < 2:
            continue
        d0, d1 = sdf(int(s0)), sdf(int(s1))
        for s in range(s0 + 1, s1):
            w = (s - s0) / (s1 - s0)
            inside = (1.0 - w) * d0 + w * d1 <= 0.0
            after[s][inside & (block[s] == 0)] = label
        distances.pop(int(s0), None)
    return labels.apply_voxels(description or f"fill between slices '{labels.table.name(label)}'",
                               box, np.moveaxis(after, 0, axis))


# -- automatic core/penumbra proposal --------------------------------------------------------------

def apply_proposal(
    labels: EditableLabels,
    proposal: Proposal,
    core_label: int = CORE_LABEL,
    penumbra_label: int = PENUMBRA_LABEL,
    *,
    description: str | None = None,
) -> Edit | None:
    """Write an automatic core/penumbra proposal into the label map as one undoable edit.

    The proposal (``perfusion.Proposal``, 1 = core, 2 = penumbra, on the label map's grid)
    *replaces* the current core and penumbra: voxels of ``core_label``/``penumbra_label``
    outside the new proposal are cleared, proposal voxels are set — except voxels of OTHER
    labels (injection site, reference, ...), which are never overwritten (what the clinician
    drew wins over the automatic method). Locked labels are respected. Only the box covering
    the old and new core/penumbra is touched.

    The label table gets entries ``"core"``/``"penumbra"`` for the two labels when missing;
    that is a separate table edit recorded *before* the voxel edit (so two undo steps in that
    case; the first undo removes the voxels). Returns the voxel edit (None if no voxel changed,
    e.g. an empty proposal and no previous core/penumbra).

    Raises:
        ValueError: if the proposal is not on the label map's grid.
    """
    core_label = _check_label(labels, core_label)
    penumbra_label = _check_label(labels, penumbra_label)
    volume = labels.labels
    proposed = np.asarray(proposal.labels)
    if proposed.shape != volume.shape or not same_grid(proposal.to_volume(), volume):
        raise ValueError("the proposal is not on the label map's grid; build it with the label map as target")
    table = labels.table
    for number, name in ((core_label, "core"), (penumbra_label, "penumbra")):
        if table.get(number) is None:
            table = table.with_entry(LabelEntry(number, name, region_color(number, name)))
    if table != labels.table:
        labels.set_table("add core/penumbra to the label table", table)

    data = np.asarray(labels.data)
    ours = (data == core_label) | (data == penumbra_label)
    new = (proposed == CORE_LABEL) | (proposed == PENUMBRA_LABEL)
    touched = ours | new
    if not touched.any():
        return None
    box = label_box(touched)
    current = data[box]
    free = (current == 0) | ours[box]  # unlabelled or old core/penumbra: ours to rewrite
    after = np.where(ours[box], 0, current)
    after = np.where(free & (proposed[box] == CORE_LABEL), core_label, after)
    after = np.where(free & (proposed[box] == PENUMBRA_LABEL), penumbra_label, after)
    method = f" ({proposal.method})" if proposal.method else ""
    return labels.apply_voxels(description or f"apply core/penumbra proposal{method}", box, after)

