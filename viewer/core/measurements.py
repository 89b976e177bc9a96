"""Measurements a reader places on the images: a distance ruler, an ellipse in a slice and a
sphere in 3D, with statistics of every layer in its own units (PRODUCT.md §5).

A measurement lives in world millimetres, not on any one image's grid, so it measures every
layer of a timepoint at once (each on its own grid, exactly: the voxels of that image whose
centres lie inside the shape, nothing resampled) and the same place in another timepoint.

* :class:`Ruler`      two world points; its length in mm.
* :class:`EllipseROI` an ellipse in one slice: centre, two in-plane unit axes and radii (mm).
  On a layer's grid it holds the voxels whose centres lie inside the ellipse and within half
  that layer's voxel extent of the slice's plane — for a grid aligned with the slice, exactly
  the one slice of voxels the view shows.
* :class:`SphereROI`  a ball: centre and radius (mm); the voxels whose centres lie inside.

:func:`roi_statistics` returns one :class:`LayerStatistics` per layer: voxel count, volume
(mm³), mean, standard deviation, minimum and maximum over the finite voxels (non-finite ones
counted apart, never averaged), ¹⁹F cells when the timepoint is calibrated, and for a label map
the voxels of each region. :class:`Measurements` is the ordered, named list a session holds.

No Qt here; the window draws the shapes (:func:`outline_in_plane`) and lists the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from viewer.core.spaces import Plane
from viewer.core.volume import ROLE_QUANTITY, Volume

#: Points of a drawn ellipse or circle outline.
OUTLINE_POINTS = 96


def _vector(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.shape != (3,) or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be three finite numbers (world mm), got {value!r}")
    return array


class _Shape:
    """Measurements are equal when their definitions are (their numpy points compared by
    value: a dataclass's own equality would compare arrays element-wise and fail)."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class Ruler(_Shape):
    """A distance between two world points (mm)."""

    start: np.ndarray
    end: np.ndarray
    name: str = ""
    kind: str = field(default="ruler", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _vector(self.start, "start"))
        object.__setattr__(self, "end", _vector(self.end, "end"))

    @property
    def length_mm(self) -> float:
        return float(np.linalg.norm(self.end - self.start))

    @property
    def center(self) -> np.ndarray:
        return (self.start + self.end) / 2.0

    def summary(self) -> str:
        return f"{self.length_mm:.1f} mm"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "start_mm": self.start.tolist(), "end_mm": self.end.tolist()}


@dataclass(frozen=True, eq=False)
class EllipseROI(_Shape):
    """An ellipse in a slice: ``center`` (world mm), in-plane unit axes ``axis_u``/``axis_v``
    (orthogonal) and semi-axes ``radii_mm`` along them."""

    center: np.ndarray
    axis_u: np.ndarray
    axis_v: np.ndarray
    radii_mm: tuple[float, float]
    name: str = ""
    kind: str = field(default="ellipse", init=False)

    def __post_init__(self) -> None:
        center = _vector(self.center, "center")
        u = _vector(self.axis_u, "axis_u")
        v = _vector(self.axis_v, "axis_v")
        if np.linalg.norm(u) == 0 or np.linalg.norm(v) == 0:
            raise ValueError("an ellipse's axes must not be zero")
        u = u / np.linalg.norm(u)
        v = v - (v @ u) * u
        if np.linalg.norm(v) < 1e-9:
            raise ValueError("an ellipse's two axes must not be parallel")
        v = v / np.linalg.norm(v)
        radii = tuple(float(r) for r in self.radii_mm)
        if len(radii) != 2 or not all(math.isfinite(r) and r > 0 for r in radii):
            raise ValueError(f"an ellipse's radii must be two positive numbers (mm), got {self.radii_mm!r}")
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "axis_u", u)
        object.__setattr__(self, "axis_v", v)
        object.__setattr__(self, "radii_mm", radii)

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.axis_u, self.axis_v)

    @property
    def area_mm2(self) -> float:
        """The ellipse's own area, π·a·b (the voxels' area follows the grid)."""
        return math.pi * self.radii_mm[0] * self.radii_mm[1]

    def summary(self) -> str:
        return f"ellipse {2 * self.radii_mm[0]:.1f} × {2 * self.radii_mm[1]:.1f} mm"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "center_mm": self.center.tolist(),
                "axis_u": self.axis_u.tolist(), "axis_v": self.axis_v.tolist(), "radii_mm": list(self.radii_mm)}

    @classmethod
    def in_plane(cls, plane: Plane, center: Any, corner: Any, name: str = "") -> EllipseROI:
        """The ellipse a drag draws in ``plane``: centred at ``center``, its semi-axes along the
        view's horizontal and vertical reaching ``corner`` (world mm)."""
        center = _vector(center, "center")
        step = _vector(corner, "corner") - center
        u = plane.pixel_to_world[:3, 1] / plane.col_step_mm
        v = plane.pixel_to_world[:3, 0] / plane.row_step_mm
        return cls(center, u, v, (abs(float(step @ u)), abs(float(step @ v))), name)


@dataclass(frozen=True, eq=False)
class SphereROI(_Shape):
    """A ball: ``center`` (world mm) and ``radius_mm``."""

    center: np.ndarray
    radius_mm: float
    name: str = ""
    kind: str = field(default="sphere", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "center", _vector(self.center, "center"))
        radius = float(self.radius_mm)
        if not (math.isfinite(radius) and radius > 0):
            raise ValueError(f"a sphere's radius must be a positive number (mm), got {self.radius_mm!r}")
        object.__setattr__(self, "radius_mm", radius)

    @property
    def volume_ml(self) -> float:
        """The ball's own volume, 4/3·π·r³ (mL)."""
        return 4.0 / 3.0 * math.pi * self.radius_mm**3 / 1000.0

    def summary(self) -> str:
        return f"sphere r {self.radius_mm:.1f} mm"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "center_mm": self.center.tolist(), "radius_mm": self.radius_mm}


Measurement = Ruler | EllipseROI | SphereROI
ROI = EllipseROI | SphereROI


def from_dict(data: Mapping[str, Any]) -> Measurement:
    """A measurement from :meth:`to_dict`'s form; ValueError (one line) for anything else."""
    if not isinstance(data, Mapping):
        raise ValueError("a measurement must be a table")
    kind = data.get("kind")
    name = data.get("name", "")
    if not isinstance(name, str) or len(name) > 200:
        raise ValueError("a measurement's name must be a short text")
    try:
        if kind == "ruler":
            return Ruler(data["start_mm"], data["end_mm"], name)
        if kind == "ellipse":
            return EllipseROI(data["center_mm"], data["axis_u"], data["axis_v"], tuple(data["radii_mm"]), name)
        if kind == "sphere":
            return SphereROI(data["center_mm"], data["radius_mm"], name)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"a {kind} measurement lacks or mistypes {exc}") from None
    raise ValueError(f"unknown measurement kind {kind!r}")


#: A voxel centre on a shape's edge (to rounding) is inside: a radius of 3 voxels holds the
#: centres 3 voxels away, as the same shape written in index space does.
_ON_EDGE = 1e-9


# -- which voxels -----------------------------------------------------------------------------------

def _box_of(volume: Volume, corners_world: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Voxel index box (clipped to the grid) holding every voxel centre inside the world box
    spanned by ``corners_world``; None when it misses the grid."""
    ijk = volume.world_to_voxel_points(corners_world)
    low = np.floor(ijk.min(axis=0)).astype(int)
    high = np.ceil(ijk.max(axis=0)).astype(int) + 1
    low = np.maximum(low, 0)
    high = np.minimum(high, np.asarray(volume.shape))
    if np.any(high <= low):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))  # type: ignore[return-value]


def _centres(volume: Volume, box: tuple[slice, slice, slice]) -> np.ndarray:
    """World mm of the voxel centres of ``box``, shape (*box shape, 3)."""
    grids = np.meshgrid(*(np.arange(s.start, s.stop, dtype=np.float64) for s in box), indexing="ij")
    ijk = np.stack(grids, axis=-1)
    affine = volume.voxel_to_world
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def _bounding_corners(center: np.ndarray, half_extents: Iterable[np.ndarray]) -> np.ndarray:
    """The eight corners of the box centre ± each of three half-extent vectors."""
    a, b, c = (np.asarray(h, float) for h in half_extents)
    signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], dtype=float)
    return center + signs[:, :1] * a + signs[:, 1:2] * b + signs[:, 2:] * c


def half_thickness_mm(volume: Volume, normal: np.ndarray) -> float:
    """Half of one voxel's extent along ``normal`` (mm): the slab of a layer's voxels a slice
    cuts (the voxel's edges projected on the normal)."""
    edges = volume.voxel_to_world[:3, :3]
    return 0.5 * float(np.sum(np.abs(np.asarray(normal, float) @ edges)))


def roi_mask(volume: Volume, roi: ROI) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """The voxels of ``volume`` inside ``roi``: an index box and a boolean mask over it; None
    when the ROI holds none of its voxel centres."""
    if isinstance(roi, SphereROI):
        r = roi.radius_mm
        corners = _bounding_corners(roi.center, np.eye(3) * r)
        box = _box_of(volume, corners)
        if box is None:
            return None
        inside = np.sum((_centres(volume, box) - roi.center) ** 2, axis=-1) <= r * r * (1.0 + _ON_EDGE)
    elif isinstance(roi, EllipseROI):
        half = half_thickness_mm(volume, roi.normal)
        a, b = roi.radii_mm
        corners = _bounding_corners(roi.center, (roi.axis_u * a, roi.axis_v * b, roi.normal * half))
        box = _box_of(volume, corners)
        if box is None:
            return None
        offset = _centres(volume, box) - roi.center
        across = offset @ roi.normal
        u, v = offset @ roi.axis_u / a, offset @ roi.axis_v / b
        # half-open slab: a plane on a voxel boundary takes one slice of voxels, not two
        inside = (u * u + v * v <= 1.0 + _ON_EDGE) & (across >= -half * (1.0 + _ON_EDGE)) & (across < half)
    else:
        raise TypeError(f"not a region of interest: {roi!r}")
    if not inside.any():
        return None
    return box, inside


# -- statistics -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FluorineCalibration:
    """What turns ¹⁹F signal into cells at a voxel (PRODUCT.md §3): the noise σ (a.u.) of the
    Rician correction √(S² − σ²), cells per unit of corrected signal, and the detected voxels
    (a boolean array on the ¹⁹F grid: above the detection SNR in clusters large enough, outside
    the reference tube and background — the rule the regions' counts use). Counting only those
    keeps an ROI drawn around a graft equal to a region drawn there, instead of adding the
    corrected noise of every empty voxel or the tube's calibration signal."""

    sigma: float
    cells_per_signal: float
    detected: np.ndarray | None = None
    #: the count intervals' per-cluster state (:class:`viewer.core.quant.fluorine_interval.CountInterval`),
    #: so an ROI's cells carry the same 95 % interval a region drawn there would
    interval: Any = None

    @classmethod
    def of(cls, fluorine: Any) -> FluorineCalibration | None:
        """The calibration a prepared ¹⁹F quantification holds (duck-typed: ``sigma``,
        ``cells_per_signal``, ``counted`` — detected voxels outside the reference tube and
        background, as the regions' counts take them —, ``interval``); None when it is not
        calibrated."""
        if fluorine is None or fluorine.sigma is None or fluorine.cells_per_signal is None:
            return None
        return cls(fluorine.sigma, fluorine.cells_per_signal, fluorine.counted, fluorine.interval)


@dataclass(frozen=True)
class LayerStatistics:
    """One layer's numbers inside an ROI, in that layer's units.

    Attributes:
        role, quantity, units: the layer (units as the layer states them).
        voxels: voxel centres inside (finite or not); 0 when the ROI misses the layer.
        volume_mm3: ``voxels`` × that layer's voxel volume.
        nonfinite: voxels inside whose value is NaN or infinite (left out of every number).
        mean, std, minimum, maximum: over the finite voxels (None when there are none);
            std is the population standard deviation.
        cells: ¹⁹F cells inside (Σ √(S² − σ²) · cells per signal over the detected voxels)
            when calibrated, else None.
        cells_ci95: the 95 % interval of the true cells inside (docs/fluorine_intervals.md),
            when calibrated on the ¹⁹F image's own grid.
        regions: for the label map, voxels of each region name inside (0 = no region left out).
    """

    role: str
    quantity: str
    units: str
    voxels: int
    volume_mm3: float
    nonfinite: int = 0
    mean: float | None = None
    std: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    cells: float | None = None
    regions: Mapping[str, int] = field(default_factory=dict)
    cells_ci95: tuple[float, float] | None = None


def layer_statistics(volume: Volume, roi: ROI, fluorine: FluorineCalibration | None = None,
                     region_names: Mapping[int, str] | None = None) -> LayerStatistics:
    """Statistics of one layer inside ``roi`` (see :class:`LayerStatistics`)."""
    quantity = ROLE_QUANTITY.get(volume.role, volume.role)
    found = roi_mask(volume, roi)
    if found is None:
        return LayerStatistics(volume.role, quantity, volume.units, 0, 0.0)
    box, inside = found
    values = np.asarray(volume.data[box])[inside]
    count = int(values.size)
    volume_mm3 = count * volume.voxel_volume_mm3
    if volume.role == "regions":
        labels, counts = np.unique(values.astype(np.int64), return_counts=True)
        names = region_names or {}
        regions = {names.get(int(label), f"label {int(label)}"): int(n)
                   for label, n in zip(labels, counts) if label != 0}
        return LayerStatistics(volume.role, quantity, "", count, volume_mm3, regions=regions)
    values = values.astype(np.float64)
    finite = values[np.isfinite(values)]
    nonfinite = count - int(finite.size)
    if finite.size == 0:
        return LayerStatistics(volume.role, quantity, volume.units, count, volume_mm3, nonfinite)
    cells, interval = None, None
    if volume.role == "fluorine" and fluorine is not None:
        signal = np.where(np.isfinite(values), values, 0.0)
        corrected = np.sqrt(np.maximum(signal * signal - fluorine.sigma**2, 0.0))
        on_its_grid = fluorine.detected is not None and fluorine.detected.shape == volume.shape
        if on_its_grid:
            corrected = corrected * fluorine.detected[box][inside]
        cells = float(corrected.sum() * fluorine.cells_per_signal)
        if on_its_grid and fluorine.interval is not None:
            found = fluorine.interval.region(box, inside, int(finite.size), fluorine.cells_per_signal)
            interval = (found.low, found.high)
    return LayerStatistics(volume.role, quantity, volume.units, count, volume_mm3, nonfinite,
                           mean=float(finite.mean()), std=float(finite.std()),
                           minimum=float(finite.min()), maximum=float(finite.max()), cells=cells,
                           cells_ci95=interval)


def roi_statistics(roi: ROI, volumes: Sequence[Volume], fluorine: FluorineCalibration | None = None,
                   region_names: Mapping[int, str] | None = None) -> list[LayerStatistics]:
    """Every layer's statistics inside ``roi``, in the order given."""
    return [layer_statistics(volume, roi, fluorine, region_names) for volume in volumes]


# -- drawing ------------------------------------------------------------------------------------------

def outline_in_plane(measurement: Measurement, plane: Plane) -> np.ndarray | None:
    """World points (N, 3) of what a view of ``plane`` draws of ``measurement``, or None:

    * a ruler, when both its ends lie within half a pixel of the plane (two points): a ruler
      drawn in a slice shows there, not in its neighbours;
    * an ellipse, when it lies in the plane (parallel, within half a pixel): its outline;
    * a sphere, when the plane cuts it: the circle of the cut (its size follows the slice).
    """
    step = 0.5 * min(plane.row_step_mm, plane.col_step_mm)
    normal = plane.normal / np.linalg.norm(plane.normal)
    if isinstance(measurement, Ruler):
        distances = plane.world_to_pixel(np.stack([measurement.start, measurement.end]))[:, 2]
        if np.all(np.abs(distances) <= step):
            return np.stack([measurement.start, measurement.end])
        return None
    angles = np.linspace(0.0, 2.0 * math.pi, OUTLINE_POINTS + 1)
    if isinstance(measurement, EllipseROI):
        parallel = abs(abs(float(measurement.normal @ normal)) - 1.0) < 1e-6
        distance = float(plane.world_to_pixel(measurement.center)[2])
        if not parallel or abs(distance) > step:
            return None
        a, b = measurement.radii_mm
        return (measurement.center + np.cos(angles)[:, None] * a * measurement.axis_u
                + np.sin(angles)[:, None] * b * measurement.axis_v)
    if isinstance(measurement, SphereROI):
        distance = float(plane.world_to_pixel(measurement.center)[2])
        if abs(distance) >= measurement.radius_mm:
            return None
        radius = math.sqrt(measurement.radius_mm**2 - distance**2)
        center = measurement.center - distance * normal
        u = plane.pixel_to_world[:3, 1] / plane.col_step_mm
        v = plane.pixel_to_world[:3, 0] / plane.row_step_mm
        return center + radius * (np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * v)
    raise TypeError(f"not a measurement: {measurement!r}")


# -- the list -------------------------------------------------------------------------------------------

class Measurements:
    """The measurements of a session, in the order they were made, each with a unique name
    ("M1", "M2", … unless given). Changes go through :meth:`add`, :meth:`remove` and
    :meth:`clear`; ``on_change`` (the scene's event) is called after each."""

    def __init__(self, on_change: Any = None) -> None:
        self._items: list[Measurement] = []
        self._counter = 0
        self._on_change = on_change or (lambda: None)

    def __iter__(self):
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return [m.name for m in self._items]

    def get(self, name: str) -> Measurement:
        for item in self._items:
            if item.name == name:
                return item
        raise KeyError(name)

    def add(self, measurement: Measurement) -> Measurement:
        """Add ``measurement`` (named "M<n>" when it has no name, or a taken one); returns it."""
        added = self._append(measurement)
        self._on_change()
        return added

    def _append(self, measurement: Measurement) -> Measurement:
        name = measurement.name
        taken = set(self.names())
        while not name or name in taken:
            self._counter += 1
            name = f"M{self._counter}"
        if name[:1] == "M" and name[1:].isdigit():
            self._counter = max(self._counter, int(name[1:]))
        measurement = replace(measurement, name=name) if name != measurement.name else measurement
        self._items.append(measurement)
        return measurement

    def remove(self, name: str) -> None:
        before = len(self._items)
        self._items = [m for m in self._items if m.name != name]
        if len(self._items) != before:
            self._on_change()

    def clear(self) -> None:
        if self._items:
            self._items = []
            self._on_change()

    def replace_all(self, measurements: Iterable[Measurement]) -> None:
        """Set the whole list at once (a workspace restored), then one change."""
        self._items = []
        self._counter = 0
        for measurement in measurements:
            self._append(measurement)
        self._on_change()
