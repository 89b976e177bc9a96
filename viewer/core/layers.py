"""Assembling a timepoint's volumes into display layers, and where a view should look first."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from viewer.core.display import ROLE_COLORMAP, ROLE_OPACITY, DisplayProps, default_display
from viewer.core.io.levels_cache import LevelsCache, cached_numbers, values_identity
from viewer.core.protocols import Protocol
from viewer.core.quant.clusters import clusters_touching
from viewer.core.regions import LabelTable
from viewer.core.render import Layer
from viewer.core.spaces import map_labels_to_grid
from viewer.core.volume import Volume

#: Drawing order, bottom to top: anatomy, broad physiological maps, cell maps, regions on top.
LAYER_ORDER: tuple[str, ...] = ("anatomical", "other", "sodium", "adc", "tmax", "pet", "spio", "gd", "fluorine", "regions")

#: Regions that hold calibration signal, not cells: excluded when choosing ¹⁹F levels and focus.
CALIBRATION_REGIONS = ("reference", "background")


def calibration_mask(volumes: Mapping[str, Volume], names: Mapping[int, str], target: Volume) -> np.ndarray | None:
    """Voxels of ``target`` in the reference tube or background regions, if there are any.

    On the ¹⁹F map the drawn reference region is usually a core inside the tube, so the mask
    grows to every connected component of above-noise signal that touches it: the whole tube,
    which is the brightest object in the image and holds no cells. ``names`` are the
    current label names (the label table's), so a region renamed "reference" counts at once.
    """
    regions = volumes.get("regions")
    if regions is None:
        return None
    labels = [label for label, name in names.items() if name in CALIBRATION_REGIONS]
    if not labels:
        return None
    mask = np.isin(map_labels_to_grid(regions, target), labels)
    if target.role == "fluorine" and mask.any():
        data = np.nan_to_num(np.asarray(target.data, dtype=np.float32))
        mask = clusters_touching(data > default_display(target).levels[0], mask)
    return mask


def calibration_key(volumes: Mapping[str, Volume], names: Mapping[int, str], target: Volume) -> list | None:
    """What :func:`calibration_mask` of ``target`` depends on, for a cache key: the target's
    values, and when there are calibration regions the region map's values, which labels they
    are and where both images lie; None when either volume has no file identity."""
    values = values_identity(target)
    if values is None:
        return None
    regions = volumes.get("regions")
    labels = sorted(label for label, name in names.items() if name in CALIBRATION_REGIONS)
    if regions is None or not labels:
        return [values]
    region_values = values_identity(regions)
    if region_values is None:
        return None
    return [values, region_values, labels, target.voxel_to_world, regions.voxel_to_world]


def layer_display(volumes: Mapping[str, Volume], names: Mapping[int, str], volume: Volume,
                  cache: LevelsCache | None = None) -> DisplayProps:
    """A layer's default display (:func:`viewer.core.display.default_display`, the ¹⁹F map's
    without its calibration regions), read from ``cache`` when it was computed for the same
    files before: its levels need every voxel once (the largest), the ¹⁹F map's the tube."""
    role = volume.role
    if role == "fluorine":
        key = calibration_key(volumes, names, volume)
    else:
        values = values_identity(volume)
        key = None if values is None else [values]

    def compute() -> list[float]:
        display = default_display(volume, calibration_mask(volumes, names, volume) if role == "fluorine" else None)
        return [*display.levels, *display.visible_range]

    low, high, shown_from, shown_to = cached_numbers(cache, None if key is None else ["display", *key], 4, compute)
    # default_display's colormap and opacity are the role's own: only the numbers are kept
    return DisplayProps(ROLE_COLORMAP[role], (low, high), (shown_from, shown_to), ROLE_OPACITY[role])


def build_layers(volumes: Mapping[str, Volume], table: LabelTable,
                 displays: dict[str, DisplayProps] | None = None, protocol: Protocol | None = None,
                 cache: LevelsCache | None = None) -> list[Layer]:
    """Layers in :data:`LAYER_ORDER` (anatomy first) with default displays; the label map
    is drawn with ``table`` (names and colours: :func:`viewer.core.io.labels.saved_label_table`
    for a study on disk, the edited table in the window).

    With ``displays`` (role → display), a role already there keeps its display and a new
    role's default is added to it: how the window keeps one display per role across
    timepoints, so a report's timepoints share levels and can be compared by eye.
    Default displays are read from ``cache`` when there (:func:`layer_display`).
    """
    layers: list[Layer] = []
    for role in LAYER_ORDER:
        volume = volumes.get(role)
        if volume is None:
            continue
        display = displays.get(role) if displays is not None else None
        if display is None:
            display = layer_display(volumes, table.names, volume, cache)
            if protocol is not None:  # a new role is shown or hidden by the protocol
                display = protocol.applied_to({role: display})[role]
            if displays is not None:
                displays[role] = display
        layers.append(Layer(volume, display, table if role == "regions" else LabelTable()))
    return layers


def default_focus(volumes: Mapping[str, Volume], names: Mapping[int, str],
                  cache: LevelsCache | None = None) -> np.ndarray:
    """World mm where views open: the strongest ¹⁹F hotspot, else the anatomy's centre.

    The ¹⁹F map is smoothed over 3×3×3 voxels first so a lone noise spike cannot win, and the
    reference tube is ignored (it is the brightest thing in the image but holds no cells).
    Read from ``cache`` when found for the same files before (it needs every ¹⁹F voxel).
    """
    fluorine = volumes.get("fluorine")
    if fluorine is None:
        return volumes["anatomical"].center_world()
    key = calibration_key(volumes, names, fluorine)
    point = cached_numbers(cache, None if key is None else ["focus", *key, fluorine.voxel_to_world], 3,
                           lambda: hotspot_focus(volumes, names, fluorine))
    return np.asarray(point, dtype=np.float64)


def hotspot_focus(volumes: Mapping[str, Volume], names: Mapping[int, str], fluorine: Volume) -> np.ndarray:
    """World mm of the strongest 3×3×3-smoothed ¹⁹F hotspot outside the calibration regions."""
    data = np.nan_to_num(np.asarray(fluorine.data, dtype=np.float32))
    exclude = calibration_mask(volumes, names, fluorine)
    if exclude is not None:
        data[exclude] = 0.0
    smoothed = box_mean_3(data)
    index = np.unravel_index(int(np.argmax(smoothed)), smoothed.shape)
    return fluorine.voxel_to_world_points(np.array(index, dtype=float))


def box_mean_3(data: np.ndarray) -> np.ndarray:
    """The mean of every voxel's 3×3×3 neighbourhood (float64), edges mirrored (the edge voxel
    repeated, as ``scipy.ndimage.uniform_filter(size=3)`` does), as three running sums: numpy
    alone, so a command that only draws a view does not import scipy.ndimage (≈0.13 s)."""
    total = np.asarray(data, dtype=np.float64)
    for axis in range(total.ndim):
        padded = np.pad(total, [(1, 1) if a == axis else (0, 0) for a in range(total.ndim)], mode="symmetric")
        n = total.shape[axis]

        def shifted(start: int) -> np.ndarray:
            index = [slice(None)] * padded.ndim
            index[axis] = slice(start, start + n)
            return padded[tuple(index)]

        total = shifted(0) + shifted(1)
        total += shifted(2)
    return total / 27.0


#: Most voxels read to find the anatomy's extent (a strided sample: the box is grown by one
#: stride so it never cuts the head, and a 512×512×300 image costs a few ms, not a full scan).
EXTENT_SAMPLES = 2_000_000


def anatomy_extent(volume: Volume, threshold: float) -> np.ndarray | None:
    """World-space corners (8 × 3, mm) of the box holding the anatomy's voxels above
    ``threshold`` (the head, not the empty field of view around it), or None if none are.

    Views open fitted to this box (PRODUCT.md §5: the screen goes to the images).
    """
    shape = np.array(volume.shape)
    stride = max(1, int(np.ceil((np.prod(shape) / EXTENT_SAMPLES) ** (1 / 3))))
    sample = np.asarray(volume.data[::stride, ::stride, ::stride])
    above = sample > threshold
    if not above.any():
        return None
    low, high = [], []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(above.any(axis=others))
        low.append(max(0, hits[0] * stride - stride))
        high.append(min(shape[axis] - 1, hits[-1] * stride + stride))
    corners = np.array([[i, j, k] for i in (low[0], high[0]) for j in (low[1], high[1]) for k in (low[2], high[2])],
                       dtype=float)
    return volume.voxel_to_world_points(corners)


def parse_point(text: str) -> np.ndarray:
    """Parse ``"X,Y,Z"`` (world mm) from the command line."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3:
        raise ValueError(f"expected X,Y,Z in mm, got {text!r}")
    try:
        return np.array([float(p) for p in parts])
    except ValueError:
        raise ValueError(f"expected three numbers X,Y,Z in mm, got {text!r}") from None
