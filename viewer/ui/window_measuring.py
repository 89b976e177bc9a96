"""Measuring in the main window: the toolbar's Ruler, Ellipse and Sphere, and the shapes drawn
in every view that shows them (PRODUCT.md §5).

A mixin of :class:`viewer.ui.main_window.MainWindow`. A measuring tool and an annotation tool
are never active together: choosing one returns the other to navigation. The measurements are
the scene's (:attr:`viewer.core.scene.Scene.measurements`); the views draw what
:func:`viewer.core.measurements.outline_in_plane` says each plane shows of them.
"""

from __future__ import annotations

from PySide6 import QtGui, QtWidgets

from viewer.core.measurements import Measurement, outline_in_plane
from viewer.ui.measure_tools import make_measure_tool
from viewer.ui.measurement_panel import size_text

#: toolbar entries: (tool name, text, shortcut)
MEASURE_ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("navigate", "Navigate", "Esc"), ("ruler", "Ruler", "M"), ("ellipse", "Ellipse", "E"), ("sphere", "Sphere", "S"),
)


class MeasureActions:
    """The measuring toolbar and the drawing of measurements in the views."""

    def _build_measure_toolbar(self, bar: QtWidgets.QToolBar) -> None:
        bar.addSeparator()
        bar.addWidget(QtWidgets.QLabel(" Measure: "))
        self._measure_group = QtGui.QActionGroup(self)
        self._measure_group.setExclusive(True)
        self.measure_actions: dict[str, QtGui.QAction] = {}
        for name, text, keys in MEASURE_ACTIONS:
            action = QtGui.QAction(text, self)
            action.setCheckable(True)
            action.setShortcut(QtGui.QKeySequence(keys))
            action.setToolTip(f"{text} ({keys})")
            action.triggered.connect(lambda checked=False, n=name: self.set_measure_tool(n))
            self._measure_group.addAction(action)
            bar.addAction(action)
            self.addAction(action)
            self.measure_actions[name] = action
        self.measure_actions["navigate"].setChecked(True)

    def set_measure_tool(self, name: str) -> None:
        """Activate a measuring tool ("navigate" ends measuring)."""
        if self.scene is None:
            self.measure_actions["navigate"].setChecked(True)
            return
        if self.annotation_panel is not None and self.annotation_panel.tool is not None:
            self.annotation_panel.set_tool("navigate")  # one tool at a time
        tool = None if name == "navigate" else make_measure_tool(
            name, self.scene, lambda text: self.statusBar().showMessage(text, 8000))
        for view in self.ortho.all_views():
            view.tool = tool
        if tool is not None:
            tool.on_preview = self._preview_measurement
            tool.activate()
        self.measure_actions[name].setChecked(True)
        self._draw_measurements()

    def _annotation_tool_chosen(self, tool) -> None:
        """An annotation tool replaces a measuring one (its toolbar shows Navigate)."""
        if tool is not None:
            self.measure_actions["navigate"].setChecked(True)

    def _preview_measurement(self, shape: Measurement | None) -> None:
        self._draw_measurements(shape)

    def _draw_measurements(self, preview: Measurement | None = None, views=None, **_: object) -> None:
        """Every view (or those given: a new frame redraws only its own) draws the
        measurements its plane shows, and the one being dragged."""
        if self.scene is None:
            return
        items = [(m, False) for m in self.scene.measurements] + ([(preview, True)] if preview is not None else [])
        for view in views if views is not None else self.ortho.all_views():
            if view.plane is None:
                continue
            shapes = []
            for measurement, dragging in items:
                points = outline_in_plane(measurement, view.plane)
                if points is not None:
                    shapes.append((measurement.name, points, size_text(measurement), dragging))
            view.show_measurements(shapes)
