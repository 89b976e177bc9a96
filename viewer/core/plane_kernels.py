"""Compiled per-pixel sampling of a 3-D grid on an oblique plane (numba).

Why numba: sampling a 512×512 plane through a rotated overlay touches every pixel with
trilinear interpolation. ``scipy.ndimage.map_coordinates`` costs ≈ 60 ns per pixel (≈ 16 ms
per layer) and holds the GIL; this kernel costs ≈ 5 ns per pixel on two cores and is exact. The kernels
are compiled on first use and cached on disk (``cache=True``). Rows run in parallel on all
cores; numba's default threading layer must not be entered by two Python threads at once, so
calls are serialised by a lock (the GIL is released while a kernel runs).

Coordinates: ``to_voxel`` maps plane pixel ``(row, col, 0, 1)`` to the volume's voxel
coordinates. A pixel whose voxel coordinate lies outside ``[-0.5, n - 0.5]`` on any axis gets
``fill``; inside, coordinates are clamped to ``[0, n - 1]`` (the edge half-voxel repeats the
edge voxel, matching ``mode="nearest"``).

Two implementations of the same arithmetic: the compiled kernels, and numpy (:func:`sample_on_plane_numpy`),
which gives the same bits (the same float64 operations in the same order, column coordinates
accumulated step by step as the kernel does). Starting numba and loading its cached kernels
costs ≈0.4 s — a third of a whole ``viewer render`` — while numpy samples a 512×512 plane in
≈20 ms. So a command that samples a few planes and exits never starts numba; the window loads
the kernels on a background thread at start-up and uses numpy until they are ready, so its first
frames never wait for them either (and in a packaged app that must compile them first, ≈7 s, the
views are drawn meanwhile).
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

#: Serialises kernel launches: numba's workqueue threading layer is not re-entrant.
_LAUNCH_LOCK = threading.Lock()


@lru_cache(maxsize=None)
def _compiled():
    """Compile (or load from cache) the kernels; imported lazily so start-up does not pay."""
    import numba

    @numba.njit(cache=True, nogil=True, parallel=True)
    def trilinear(data, m, rows, cols, fill, out, inside):  # pragma: no cover - compiled
        nx, ny, nz = data.shape
        for r in numba.prange(rows):
            x = m[0, 0] * r + m[0, 3]
            y = m[1, 0] * r + m[1, 3]
            z = m[2, 0] * r + m[2, 3]
            for c in range(cols):
                if x < -0.5 or y < -0.5 or z < -0.5 or x > nx - 0.5 or y > ny - 0.5 or z > nz - 0.5:
                    out[r, c] = fill
                    inside[r, c] = False
                else:
                    inside[r, c] = True
                    cx = min(max(x, 0.0), nx - 1.0)
                    cy = min(max(y, 0.0), ny - 1.0)
                    cz = min(max(z, 0.0), nz - 1.0)
                    i = min(int(cx), max(nx - 2, 0))
                    j = min(int(cy), max(ny - 2, 0))
                    k = min(int(cz), max(nz - 2, 0))
                    fx = cx - i
                    fy = cy - j
                    fz = cz - k
                    i1 = min(i + 1, nx - 1)
                    j1 = min(j + 1, ny - 1)
                    k1 = min(k + 1, nz - 1)
                    c00 = data[i, j, k] * (1.0 - fz) + data[i, j, k1] * fz
                    c01 = data[i, j1, k] * (1.0 - fz) + data[i, j1, k1] * fz
                    c10 = data[i1, j, k] * (1.0 - fz) + data[i1, j, k1] * fz
                    c11 = data[i1, j1, k] * (1.0 - fz) + data[i1, j1, k1] * fz
                    out[r, c] = (c00 * (1.0 - fy) + c01 * fy) * (1.0 - fx) + (c10 * (1.0 - fy) + c11 * fy) * fx
                x += m[0, 1]
                y += m[1, 1]
                z += m[2, 1]

    @numba.njit(cache=True, nogil=True, parallel=True)
    def nearest(data, m, rows, cols, fill, out, inside):  # pragma: no cover - compiled
        nx, ny, nz = data.shape
        for r in numba.prange(rows):
            x = m[0, 0] * r + m[0, 3]
            y = m[1, 0] * r + m[1, 3]
            z = m[2, 0] * r + m[2, 3]
            for c in range(cols):
                if x < -0.5 or y < -0.5 or z < -0.5 or x > nx - 0.5 or y > ny - 0.5 or z > nz - 0.5:
                    out[r, c] = fill
                    inside[r, c] = False
                else:
                    inside[r, c] = True
                    i = min(max(int(np.rint(x)), 0), nx - 1)
                    j = min(max(int(np.rint(y)), 0), ny - 1)
                    k = min(max(int(np.rint(z)), 0), nz - 1)
                    out[r, c] = data[i, j, k]
                x += m[0, 1]
                y += m[1, 1]
                z += m[2, 1]

    @numba.njit(cache=True, nogil=True, parallel=True)
    def labels_in_box(labels, m, start, out):  # pragma: no cover - compiled
        nx, ny, nz = labels.shape
        bx, by, bz = out.shape
        for a in numba.prange(bx):
            i = start[0] + a
            for b in range(by):
                j = start[1] + b
                for c in range(bz):
                    k = start[2] + c
                    x = m[0, 0] * i + m[0, 1] * j + m[0, 2] * k + m[0, 3]
                    y = m[1, 0] * i + m[1, 1] * j + m[1, 2] * k + m[1, 3]
                    z = m[2, 0] * i + m[2, 1] * j + m[2, 2] * k + m[2, 3]
                    ri = int(np.rint(x))
                    rj = int(np.rint(y))
                    rk = int(np.rint(z))
                    if ri < 0 or rj < 0 or rk < 0 or ri >= nx or rj >= ny or rk >= nz:
                        out[a, b, c] = 0
                    else:
                        out[a, b, c] = labels[ri, rj, rk]

    return trilinear, nearest, labels_in_box


def lookup_labels(labels: np.ndarray, target_to_labels: np.ndarray, start: tuple[int, int, int],
                  shape: tuple[int, int, int]) -> np.ndarray:
    """Nearest label (int32) at each target voxel centre of a box starting at ``start``
    (``target_to_labels`` maps target voxel indices to label-map voxel coordinates; outside → 0)."""
    *_, labels_in_box = _compiled()
    out = np.empty(tuple(int(n) for n in shape), dtype=np.int32)
    with _LAUNCH_LOCK:
        labels_in_box(labels, np.ascontiguousarray(target_to_labels, dtype=np.float64), np.asarray(start, dtype=np.int64), out)
    return out


def warm_up() -> None:
    """Load (or compile) the kernels now, e.g. from a background thread at start-up."""
    sample_on_plane_compiled(np.zeros((2, 2, 2), np.float32), np.eye(4), (2, 2), "linear")
    sample_on_plane_compiled(np.zeros((2, 2, 2), np.uint8), np.eye(4), (2, 2), "nearest")


#: Voxel types and memory orders studies bring: NIfTI memory maps are Fortran-ordered, DICOM
#: volumes and edited label maps C-ordered; numba compiles each combination separately.
PRECOMPILED_LINEAR = (np.float32, np.float64, np.uint8, np.int16, np.uint16)
PRECOMPILED_NEAREST = (np.uint8, np.int16, np.uint16, np.int32)


def precompile() -> int:
    """Compile the sampling kernels for every voxel type and order of
    :data:`PRECOMPILED_LINEAR`/:data:`PRECOMPILED_NEAREST` into numba's on-disk cache, at
    install time (`make venv`), so the first render of a fresh checkout loads them instead of
    compiling (4.1 s first, 1.9 s after). Returns how many variants were prepared."""
    count = 0
    for interpolation, types in (("linear", PRECOMPILED_LINEAR), ("nearest", PRECOMPILED_NEAREST)):
        for dtype in types:
            for order in ("C", "F"):
                sample_on_plane_compiled(np.zeros((2, 2, 2), dtype, order=order), np.eye(4), (2, 2), interpolation)
                count += 1
    return count


def kernels_ready() -> bool:
    """True once the compiled kernels are loaded in this process (nothing is started here)."""
    return _compiled.cache_info().currsize > 0


def sample_on_plane(data: np.ndarray, to_voxel: np.ndarray, shape: tuple[int, int], interpolation: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact samples of ``data`` at every pixel of a plane, and where the pixel is inside the grid.

    The compiled kernels when they are loaded (≈10× faster than numpy: the window's slice
    steps), numpy otherwise (no start-up cost: one-shot commands, the window's first frames);
    both give the same bits.

    Returns:
        values: float32 (trilinear, NaN outside) or the data's dtype (nearest, 0 outside).
        inside: bool, True where the pixel centre lies within the grid's voxel extent.
    """
    if not kernels_ready():
        return sample_on_plane_numpy(data, to_voxel, shape, interpolation)
    return sample_on_plane_compiled(data, to_voxel, shape, interpolation)


def sample_on_plane_compiled(data: np.ndarray, to_voxel: np.ndarray, shape: tuple[int, int],
                             interpolation: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sample_on_plane` with the compiled kernels (loaded, or compiled, first if needed)."""
    trilinear, nearest, _ = _compiled()
    rows, cols = int(shape[0]), int(shape[1])
    matrix = np.ascontiguousarray(to_voxel, dtype=np.float64)
    inside = np.empty((rows, cols), dtype=np.bool_)
    if interpolation == "linear":
        values = np.empty((rows, cols), dtype=np.float32)
        with _LAUNCH_LOCK:
            trilinear(data, matrix, rows, cols, np.float32(np.nan), values, inside)
    else:
        values = np.empty((rows, cols), dtype=data.dtype)
        with _LAUNCH_LOCK:
            nearest(data, matrix, rows, cols, data.dtype.type(0), values, inside)
    return values, inside


# -- the same arithmetic in numpy ------------------------------------------------------------------

def sample_on_plane_numpy(data: np.ndarray, to_voxel: np.ndarray, shape: tuple[int, int],
                          interpolation: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sample_on_plane` in numpy: the compiled kernels' operations, vectorised.

    A plane along the grid is blended one axis at a time (:func:`_sample_separable`); any other
    in blocks of rows (:data:`BLOCK_PIXELS`). Only the voxels the plane touches are read
    (gathers), never the whole volume.
    """
    rows, cols = int(shape[0]), int(shape[1])
    m = np.ascontiguousarray(to_voxel, dtype=np.float64)
    separable = _axis_coordinates(m, rows, cols)
    if separable is not None:
        return _sample_separable(data, separable, rows, cols, interpolation)
    linear = interpolation == "linear"
    values = np.empty((rows, cols), dtype=np.float32 if linear else data.dtype)
    inside = np.empty((rows, cols), dtype=np.bool_)
    step = max(1, BLOCK_PIXELS // max(cols, 1))
    for start in range(0, rows, step):
        block = slice(start, min(rows, start + step))
        _sample_rows(data, m, block, cols, linear, values[block], inside[block])
    return values, inside


#: Pixels sampled at once on a plane across the grid: whole-plane float64 temporaries (≈2 MB
#: each at 560×473) are fresh memory the system must fault in on every call, 7000 page faults
#: for one ¹⁹F plane; blocks of 16384 pixels (128 kB temporaries) reuse the same few pages.
BLOCK_PIXELS = 16384


def _sample_rows(data: np.ndarray, m: np.ndarray, block: slice, cols: int, linear: bool,
                 values: np.ndarray, inside: np.ndarray) -> None:
    """Rows ``block`` of :func:`sample_on_plane_numpy` on a plane across the grid, written into
    ``values`` and ``inside`` (each row's numbers depend on that row only: the bits are the same
    whatever the blocks)."""
    coords = [_plane_coordinate(m, axis, block, cols) for axis in range(3)]
    sizes = data.shape
    inside[...] = True
    for axis in range(3):
        inside &= (coords[axis] >= -0.5) & (coords[axis] <= sizes[axis] - 0.5)
    if linear:
        values[...] = _trilinear_numpy(data, coords, sizes)
        values[~inside] = np.float32(np.nan)
    else:
        index = [np.clip(np.rint(c), 0, n - 1).astype(np.intp) for c, n in zip(coords, sizes)]
        values[...] = _Gather(data, index)((0, 0, 0))
        values[~inside] = 0


def _axis_coordinates(m: np.ndarray, rows: int, cols: int) -> list[tuple[np.ndarray, int | None]] | None:
    """Each voxel axis' coordinate as one vector, when every axis follows the plane's rows only,
    its columns only or neither, and no two axes follow the same one (a plane along the grid, as
    an axial view of an axial acquisition is): ``(vector, 0 | 1 | None)`` per axis, the vector
    over rows (0), columns (1) or of length 1 (None), holding exactly the coordinates
    :func:`_plane_coordinate` gives at every pixel. None for any other plane."""
    r = np.arange(rows, dtype=np.float64)
    axes: list[tuple[np.ndarray, int | None]] = []
    for axis in range(3):
        starts = m[axis, 0] * r + m[axis, 3]  # each row's first column, as the kernel computes it
        if m[axis, 1] == 0:  # columns add exactly 0.0: the same value along every row
            if np.any((starts == 0) & np.signbit(starts)):
                return None  # -0.0 + 0.0 is +0.0: the first column would differ in its sign bit
            axes.append((starts, 0) if m[axis, 0] != 0 else (starts[:1], None))
        elif m[axis, 0] == 0 and np.all(starts.view(np.int64) == starts[:1].view(np.int64)):
            line = np.empty(cols, dtype=np.float64)  # every row starts alike: one row's running sum
            line[0] = starts[0]
            line[1:] = m[axis, 1]
            axes.append((np.add.accumulate(line, out=line), 1))
        else:
            return None
    followed = [dim for _, dim in axes if dim is not None]
    return axes if len(followed) == len(set(followed)) else None


def _sample_separable(data: np.ndarray, axes: list[tuple[np.ndarray, int | None]], rows: int, cols: int,
                      interpolation: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sample_on_plane_numpy` on a plane along the grid (:func:`_axis_coordinates`):
    the same formula blended one axis at a time over the voxels the plane covers (z, then y,
    then x, as the kernel's expression groups them), so each step works on a slab, not on
    eight gathers of the whole plane; every element goes through the same float64 operations,
    so the bits are the kernel's."""
    sizes = data.shape
    inside = np.ones((rows, cols), dtype=np.bool_)
    for axis, (c, dim) in enumerate(axes):
        inside &= _as_plane((c >= -0.5) & (c <= sizes[axis] - 0.5), dim, rows, cols)
    if interpolation != "linear":
        index = [np.clip(np.rint(c), 0, n - 1).astype(np.intp) for (c, _), n in zip(axes, sizes)]
        grids = [_as_plane(i, dim, rows, cols) for i, (_, dim) in zip(index, axes)]
        values = np.ascontiguousarray(data[grids[0], grids[1], grids[2]])
        values[~inside] = 0
        return values, inside
    lower, weight, step = _trilinear_corners([c for c, _ in axes], sizes)
    box = tuple(slice(int(i.min()), int(i.max()) + s + 1) for i, s in zip(lower, step))
    block = data[box]  # only the voxels the plane's corners reach
    blended: np.ndarray = block
    for axis in (2, 1, 0):  # corner = z blend; (c00·(1−fy) + c01·fy) = y blend; then x
        index = lower[axis] - box[axis].start
        shape = [1] * 3
        shape[axis] = -1
        w = weight[axis].reshape(shape)
        blended = (np.take(blended, index, axis=axis) * (1.0 - w)
                   + np.take(blended, index + step[axis], axis=axis) * w)
    # the result's axes are the voxel axes, of lengths rows, cols or 1: rows first, then columns
    dims = [dim for _, dim in axes]
    picked = [dims.index(dim) for dim in (0, 1) if dim in dims]
    plane = blended.transpose(picked + [a for a in range(3) if a not in picked])
    plane = plane.reshape([plane.shape[n] for n in range(len(picked))])  # drop the length-1 axes
    if 0 not in dims:
        plane = plane[None, ...]
    if 1 not in dims:
        plane = plane[..., None]
    values = np.broadcast_to(plane, (rows, cols)).astype(np.float32)
    values[~inside] = np.float32(np.nan)
    return values, inside


def _as_plane(vector: np.ndarray, dim: int | None, rows: int, cols: int) -> np.ndarray:
    """A per-row (0), per-column (1) or single (None) vector broadcast to the plane's shape."""
    if dim == 0:
        return np.broadcast_to(vector[:, None], (rows, cols))
    if dim == 1:
        return np.broadcast_to(vector[None, :], (rows, cols))
    return np.broadcast_to(vector.reshape(1, 1), (rows, cols))


def _plane_coordinate(m: np.ndarray, axis: int, rows: slice, cols: int) -> np.ndarray:
    """One voxel coordinate at every pixel of rows ``rows``, as the kernel computes it: the
    row's start ``m[a,0]·r + m[a,3]``, then ``m[a,1]`` added once per column (a running sum, not
    ``m[a,1]·c``: the same rounding as the kernel)."""
    coordinate = np.empty((rows.stop - rows.start, cols), dtype=np.float64)
    coordinate[:, 0] = m[axis, 0] * np.arange(rows.start, rows.stop, dtype=np.float64) + m[axis, 3]
    coordinate[:, 1:] = m[axis, 1]
    return np.add.accumulate(coordinate, axis=1, out=coordinate)


def _trilinear_numpy(data: np.ndarray, coords: list[np.ndarray], sizes: tuple[int, ...]) -> np.ndarray:
    """Trilinear values (float64) at clamped coordinates, the kernel's formula term by term."""
    lower, weight, step = _trilinear_corners(coords, sizes)
    fx, fy, fz = weight
    sx, sy, sz = step
    gather = _Gather(data, lower)

    def corner(dx: int, dy: int) -> np.ndarray:
        """The two voxels along z at one (x, y) corner, blended: data[i,j,k]·(1−fz) + data[i,j,k1]·fz."""
        return gather((dx, dy, 0)) * (1.0 - fz) + gather((dx, dy, sz)) * fz

    c00, c01, c10, c11 = corner(0, 0), corner(0, sy), corner(sx, 0), corner(sx, sy)
    return (c00 * (1.0 - fy) + c01 * fy) * (1.0 - fx) + (c10 * (1.0 - fy) + c11 * fy) * fx


def _trilinear_corners(coords: list[np.ndarray], sizes: tuple[int, ...]) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Per axis, as the kernel computes them: the lower corner's index (coordinates clamped to
    the grid, truncated, at most n − 2), the weight of the upper corner, and the step to it (0 on
    a one-voxel axis)."""
    lower, weight, step = [], [], []
    for c, n in zip(coords, sizes):
        clamped = np.minimum(np.maximum(c, 0.0), n - 1.0)
        index = np.minimum(clamped.astype(np.intp), max(n - 2, 0))  # truncation = floor, clamped ≥ 0
        lower.append(index)
        weight.append(clamped - index)
        step.append(1 if n > 1 else 0)  # i1 = min(i + 1, n - 1)
    return lower, weight, step


class _Gather:
    """Voxels at fixed index arrays plus a constant offset per axis: one ``np.take`` on a flat
    view when the array is contiguous (C or Fortran, e.g. a memory-mapped NIfTI: the flat view
    costs nothing), three-array fancy indexing otherwise."""

    def __init__(self, data: np.ndarray, index: list[np.ndarray]) -> None:
        self.data = data
        self.index = index
        self.flat: np.ndarray | None = None
        if data.flags.c_contiguous or data.flags.f_contiguous:
            order = "C" if data.flags.c_contiguous else "F"
            self.flat = data.reshape(-1, order=order)
            self.strides = tuple(s // data.itemsize for s in data.strides)
            self.base = index[0] * self.strides[0] + index[1] * self.strides[1] + index[2] * self.strides[2]

    def __call__(self, offset: tuple[int, int, int]) -> np.ndarray:
        if self.flat is None:
            i, j, k = self.index
            return self.data[i + offset[0], j + offset[1], k + offset[2]]
        shift = sum(o * s for o, s in zip(offset, self.strides))
        return np.take(self.flat, self.base + shift if shift else self.base)
