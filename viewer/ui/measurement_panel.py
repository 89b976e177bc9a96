"""The measurements panel: every ruler and ROI of the session with its statistics in every
layer's units at once (PRODUCT.md §5), deletable one by one or all together.

The numbers are the core's (:meth:`viewer.core.scene.Scene.measure`), measured on the shown
timepoint: switching timepoints re-measures the same places. The list itself is the scene's
(:attr:`~viewer.core.scene.Scene.measurements`); this panel holds no copy of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from viewer.core.measurements import LayerStatistics, Measurement, Ruler, SphereROI
from viewer.core.quant.measures import FLUORINE_INTERVAL, format_number
from viewer.core.scene import Scene
from viewer.ui.colorbar import SceneLink

COLUMNS: tuple[str, ...] = ("Measurement / layer", "Mean", "SD", "Min", "Max", "Size")
DIGITS = 4
#: Pause (ms) after the last edit or new numbers before the measurements are measured again.
REMEASURE_DELAY_MS = 150


def _number(value: float | None) -> str:
    return "—" if value is None else format_number(float(value), DIGITS)


def size_text(measurement: Measurement) -> str:
    """The shape's own size: a ruler's length (mm), an ellipse's area (mm²), a sphere's
    volume (mL)."""
    if isinstance(measurement, Ruler):
        return f"{measurement.length_mm:.1f} mm"
    if isinstance(measurement, SphereROI):
        return f"{measurement.volume_ml:.3g} mL"
    return f"{measurement.area_mm2:.0f} mm²"


def layer_row(stats: LayerStatistics) -> list[str]:
    """One layer's cells of the table (the layer's units in its name)."""
    name = f"{stats.quantity} ({stats.units})" if stats.units else stats.quantity
    if stats.voxels == 0:
        return [name, "outside this image", "", "", "", ""]
    # the voxels of this layer's grid inside the shape; the shape's own volume is on its row
    size = f"{stats.voxels} vox"
    if stats.role == "regions":  # one line across the table (the panel spans it)
        inside = ", ".join(f"{region} {count} vox" for region, count in stats.regions.items()) or "no region"
        return [f"{name}: {inside}", "", "", "", "", ""]
    if stats.nonfinite:
        size += f" · {stats.nonfinite} NaN/inf left out"
    return [name, _number(stats.mean), _number(stats.std), _number(stats.minimum), _number(stats.maximum), size]


def cells_text(stats: LayerStatistics) -> str | None:
    """The ¹⁹F layer's cell count and its 95 % interval as one line, or None for other layers.

    It is a row of its own spanning the table, under the ¹⁹F layer's row, rather than a
    seventh column: in the side panel a last column lay beyond its right edge at 1600 px, and
    the count is the number the reader came for.
    """
    if stats.cells is None:
        return None
    text = f"¹⁹F cells: {format_number(stats.cells, 3)}"
    if stats.cells_ci95 is not None:
        text += f" · 95 % interval {FLUORINE_INTERVAL.format(stats.cells_ci95)}"
    return text


class MeasurementPanel(QtWidgets.QWidget):
    """Side-panel tab: one top row per measurement, one child row per layer."""

    def __init__(self, scene: Scene, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.scene = scene
        layout = QtWidgets.QVBoxLayout(self)
        self.hint = QtWidgets.QLabel("Measure with the toolbar's Ruler, Ellipse or Sphere (keys M, E, S), "
                                     "then drag in a view. Esc returns to navigation.")
        self.hint.setWordWrap(True)
        layout.addWidget(self.hint)
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setAlternatingRowColors(True)
        self.tree.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.itemDoubleClicked.connect(self._go_to)
        layout.addWidget(self.tree, 1)
        buttons = QtWidgets.QHBoxLayout()
        self.delete_button = QtWidgets.QPushButton("Delete")
        self.delete_button.setToolTip("Delete the selected measurements (Del)")
        self.delete_button.clicked.connect(self.delete_selected)
        self.clear_button = QtWidgets.QPushButton("Delete all")
        self.clear_button.clicked.connect(self.scene.measurements.clear)
        buttons.addWidget(self.delete_button)
        buttons.addWidget(self.clear_button)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        delete = QtGui.QShortcut(QtGui.QKeySequence(QtGui.QKeySequence.StandardKey.Delete), self.tree)
        delete.setContext(QtCore.Qt.ShortcutContext.WidgetShortcut)
        delete.activated.connect(self.delete_selected)
        # edits and new numbers come many times a second while painting: they re-measure once
        # the strokes pause; a new or removed measurement or another timepoint shows at once
        self._later = QtCore.QTimer(self)
        self._later.setSingleShot(True)
        self._later.setInterval(REMEASURE_DELAY_MS)
        self._later.timeout.connect(self.refresh)
        self._link = SceneLink(scene.events, self)
        for event in ("measurements", "timepoint"):
            self._link.connect(event, self.refresh)
        for event in ("regions", "stats", "order"):
            self._link.connect(event, self._refresh_later)
        self.refresh()

    def _refresh_later(self, **_: Any) -> None:
        if len(self.scene.measurements):
            self._later.start()

    def refresh(self, **_: Any) -> None:
        """Re-measure every measurement on the shown timepoint and redraw the list."""
        self._later.stop()
        expanded = {self.tree.topLevelItem(i).text(0).split(" ")[0]
                    for i in range(self.tree.topLevelItemCount()) if self.tree.topLevelItem(i).isExpanded()}
        self.tree.clear()
        for measurement in self.scene.measurements:
            top = QtWidgets.QTreeWidgetItem([f"{measurement.name} {measurement.summary()}", "", "", "", "",
                                             size_text(measurement)])
            top.setData(0, QtCore.Qt.ItemDataRole.UserRole, measurement.name)
            self.tree.addTopLevelItem(top)
            if isinstance(measurement, Ruler):
                continue
            for stats in self.scene.measure(measurement):
                self._add_row(top, layer_row(stats), measurement.name, spanned=stats.role == "regions")
                cells = cells_text(stats)
                if cells is not None:
                    self._add_row(top, [cells], measurement.name, spanned=True, bold=True)
            top.setExpanded(measurement.name in expanded or not expanded or measurement is self._newest())
        for column in range(len(COLUMNS)):
            self.tree.resizeColumnToContents(column)
        self.tree.setColumnWidth(0, min(self.tree.columnWidth(0), 240))  # a spanned row may be long
        has_any = len(self.scene.measurements) > 0
        self.delete_button.setEnabled(has_any)
        self.clear_button.setEnabled(has_any)

    @staticmethod
    def _add_row(top: QtWidgets.QTreeWidgetItem, texts: list[str], name: str, spanned: bool,
                 bold: bool = False) -> None:
        child = QtWidgets.QTreeWidgetItem(texts)
        child.setData(0, QtCore.Qt.ItemDataRole.UserRole, name)
        if bold:
            font = child.font(0)
            font.setBold(True)
            child.setFont(0, font)
        top.addChild(child)
        child.setFirstColumnSpanned(spanned)

    def _newest(self) -> Measurement | None:
        items = list(self.scene.measurements)
        return items[-1] if items else None

    def selected_names(self) -> list[str]:
        names = [item.data(0, QtCore.Qt.ItemDataRole.UserRole) for item in self.tree.selectedItems()]
        return list(dict.fromkeys(n for n in names if n))

    def delete_selected(self) -> None:
        for name in self.selected_names():
            self.scene.measurements.remove(name)

    def _go_to(self, item: QtWidgets.QTreeWidgetItem, column: int) -> None:
        """Double-click: the cursor moves to the measurement's centre."""
        name = item.data(0, QtCore.Qt.ItemDataRole.UserRole)
        if name:
            self.scene.set_cursor(np.asarray(self.scene.measurements.get(name).center, float))
