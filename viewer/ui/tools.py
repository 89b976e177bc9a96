"""Annotation tools with one lifecycle (3D Slicer's Segment Editor effects are the model).

activate → options (the annotation panel shows them) → mouse press / move / release in a
slice view (world mm) → apply: every change is a core operation on the scene's editable label
map, whose history saves the undo state → deactivate. Tools hold no label data themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from viewer.core import edit_tools
from viewer.core.scene import Scene
from viewer.core.spaces import Plane


@dataclass
class ToolOptions:
    """What the annotation panel sets; tools read it at every event.

    Attributes:
        label: the active label (0 erases).
        radius_mm: brush radius in mm.
        sphere: 3-D sphere brush instead of a disk in the slice.
        threshold_role: layer whose values limit threshold paint and flood fill.
        low/high: the value range of that layer (its units).
    """

    label: int = 1
    radius_mm: float = 3.0
    sphere: bool = False
    threshold_role: str = "anatomical"
    low: float = 0.0
    high: float = 1.0


@dataclass
class Tool:
    """Base: receives view events in world mm; subclasses apply one kind of edit."""

    scene: Scene
    options: ToolOptions
    name: str = "tool"
    on_status: Callable[[str], None] = field(default=lambda text: None)

    def activate(self) -> None:
        self.on_status(f"{self.name}: left-drag in a view")

    def deactivate(self) -> None:
        pass

    def press(self, plane: Plane, world: np.ndarray) -> None:
        pass

    def move(self, plane: Plane, world: np.ndarray) -> None:
        pass

    def release(self, plane: Plane, world: np.ndarray) -> None:
        pass

    @property
    def editable(self):
        return self.scene.editable()


class BrushTool(Tool):
    """Brush (label) or eraser (label 0): a disk in the slice or a sphere, painted live while
    dragging; the whole stroke is one undo step."""

    def __init__(self, scene: Scene, options: ToolOptions, erase: bool = False, on_status=lambda text: None) -> None:
        super().__init__(scene, options, "eraser" if erase else "brush", on_status)
        self.erase = erase
        self._last: np.ndarray | None = None
        self._edits = 0

    @property
    def label(self) -> int:
        return 0 if self.erase else self.options.label

    def _paint(self, plane: Plane, points: list[np.ndarray]) -> None:
        edit = edit_tools.brush_stroke(
            self.editable, points, self.options.radius_mm, self.label,
            plane=None if self.options.sphere else plane, sphere=self.options.sphere,
        )
        if edit is not None:
            self._edits += 1

    def press(self, plane: Plane, world: np.ndarray) -> None:
        self._edits = 0
        self._last = np.asarray(world, float)
        self._paint(plane, [self._last])

    def move(self, plane: Plane, world: np.ndarray) -> None:
        if self._last is None:
            return
        point = np.asarray(world, float)
        self._paint(plane, [self._last, point])
        self._last = point

    def release(self, plane: Plane, world: np.ndarray) -> None:
        if self._last is None:
            return
        self._last = None
        if self._edits > 1:
            self.editable.squash(self._edits, f"{self.name} stroke")
        self._edits = 0


class ThresholdBrushTool(BrushTool):
    """Paint only where the chosen layer lies within [low, high] (e.g. ¹⁹F above noise)."""

    def __init__(self, scene: Scene, options: ToolOptions, on_status=lambda text: None) -> None:
        super().__init__(scene, options, erase=False, on_status=on_status)
        self.name = "threshold paint"

    def _paint(self, plane: Plane, points: list[np.ndarray]) -> None:
        image = self.scene.volumes.get(self.options.threshold_role)
        if image is None:
            self.on_status(f"threshold paint: no {self.options.threshold_role} layer at this timepoint")
            return
        for point in points[-1:]:
            edit = edit_tools.threshold_paint(
                self.editable, point, self.options.radius_mm, self.options.label, image,
                self.options.low, self.options.high,
                plane=None if self.options.sphere else plane, sphere=self.options.sphere,
            )
            if edit is not None:
                self._edits += 1


class LassoTool(Tool):
    """Polygon/lasso: drag around an area in a slice; releasing fills it with the label."""

    def __init__(self, scene: Scene, options: ToolOptions, on_status=lambda text: None) -> None:
        super().__init__(scene, options, "polygon", on_status)
        self.points: list[np.ndarray] = []
        self.on_preview: Callable[[list[np.ndarray]], None] = lambda points: None

    def press(self, plane: Plane, world: np.ndarray) -> None:
        self.points = [np.asarray(world, float)]
        self.on_preview(self.points)

    def move(self, plane: Plane, world: np.ndarray) -> None:
        if self.points:
            self.points.append(np.asarray(world, float))
            self.on_preview(self.points)

    def release(self, plane: Plane, world: np.ndarray) -> None:
        if len(self.points) >= 3:
            edit_tools.polygon_fill(self.editable, plane, self.points, self.options.label)
        self.points = []
        self.on_preview(self.points)


class FloodFillTool(Tool):
    """Click a seed: fill the connected voxels whose chosen layer lies within [low, high] (3-D)."""

    def __init__(self, scene: Scene, options: ToolOptions, on_status=lambda text: None) -> None:
        super().__init__(scene, options, "flood fill", on_status)

    def press(self, plane: Plane, world: np.ndarray) -> None:
        image = self.scene.volumes.get(self.options.threshold_role)
        if image is None:
            self.on_status(f"flood fill: no {self.options.threshold_role} layer at this timepoint")
            return
        edit = edit_tools.flood_fill(self.editable, world, self.options.label, image, self.options.low, self.options.high)
        if edit is None:
            self.on_status("flood fill: the seed's value is outside the range; nothing filled")


TOOL_NAMES: tuple[str, ...] = ("navigate", "brush", "eraser", "threshold paint", "polygon", "flood fill")


def make_tool(name: str, scene: Scene, options: ToolOptions, on_status=lambda text: None) -> Tool | None:
    """The tool called ``name`` (None for "navigate", which moves the cursor)."""
    if name == "navigate":
        return None
    factories = {
        "brush": lambda: BrushTool(scene, options, False, on_status),
        "eraser": lambda: BrushTool(scene, options, True, on_status),
        "threshold paint": lambda: ThresholdBrushTool(scene, options, on_status),
        "polygon": lambda: LassoTool(scene, options, on_status),
        "flood fill": lambda: FloodFillTool(scene, options, on_status),
    }
    return factories[name]()
