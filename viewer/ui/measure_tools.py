"""Measuring tools: a distance ruler, an ellipse in a slice and a sphere (PRODUCT.md §5).

They follow the annotation tools' lifecycle (:mod:`viewer.ui.tools`: press / move / release
in a slice view, in world mm) but change no label map: a finished drag adds a measurement to
the scene's list (:class:`viewer.core.measurements.Measurements`), whose event redraws the views
and the measurement panel. While dragging, ``on_preview`` shows the shape being drawn.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from viewer.core.measurements import EllipseROI, Measurement, Ruler, SphereROI
from viewer.core.scene import Scene
from viewer.core.spaces import Plane

#: A drag shorter than this (mm) is a click, not a measurement.
MIN_DRAG_MM = 0.5

MEASURE_TOOL_NAMES: tuple[str, ...] = ("ruler", "ellipse", "sphere")


class MeasureTool:
    """Press at the start (ruler) or centre (ellipse, sphere), drag, release to add."""

    #: the window holds no region numbers during its drags: it edits no label map
    edits_labels = False

    def __init__(self, scene: Scene, name: str, on_status: Callable[[str], None] = lambda text: None) -> None:
        self.scene = scene
        self.name = name
        self.on_status = on_status
        self.on_preview: Callable[[Measurement | None], None] = lambda shape: None
        self._start: np.ndarray | None = None
        self._plane: Plane | None = None

    def activate(self) -> None:
        what = {"ruler": "from one point to the other", "ellipse": "from the centre outwards",
                "sphere": "from the centre to the radius"}[self.name]
        self.on_status(f"{self.name}: left-drag in a view {what}; Esc returns to navigation")

    def deactivate(self) -> None:
        self._start = None
        self.on_preview(None)

    def shape(self, plane: Plane, start: np.ndarray, end: np.ndarray) -> Measurement | None:
        """The measurement a drag from ``start`` to ``end`` (world mm) in ``plane`` makes."""
        if float(np.linalg.norm(end - start)) < MIN_DRAG_MM:
            return None
        if self.name == "ruler":
            return Ruler(start, end)
        if self.name == "sphere":
            return SphereROI(start, float(np.linalg.norm(end - start)))
        try:
            return EllipseROI.in_plane(plane, start, end)
        except ValueError:  # a drag along one axis only: no area
            return None

    def press(self, plane: Plane, world: np.ndarray) -> None:
        self._start, self._plane = np.asarray(world, float), plane

    def move(self, plane: Plane, world: np.ndarray) -> None:
        if self._start is not None and self._plane is not None:
            self.on_preview(self.shape(self._plane, self._start, np.asarray(world, float)))

    def release(self, plane: Plane, world: np.ndarray) -> None:
        if self._start is None or self._plane is None:
            return
        shape = self.shape(self._plane, self._start, np.asarray(world, float))
        self._start = None
        self.on_preview(None)
        if shape is None:
            self.on_status(f"{self.name}: drag to measure (a click measures nothing)")
            return
        added = self.scene.measurements.add(shape)
        self.on_status(f"{added.name}: {added.summary()}")


def make_measure_tool(name: str, scene: Scene, on_status: Callable[[str], None] = lambda text: None) -> MeasureTool:
    if name not in MEASURE_TOOL_NAMES:
        raise ValueError(f"measuring tool must be one of {MEASURE_TOOL_NAMES}, got {name!r}")
    return MeasureTool(scene, name, on_status)
