"""Comparing timepoints side by side (PRODUCT.md §5): the compare layout (key 4) shows one
orientation of the timepoint on screen beside the same plane of another timepoint, with one
cursor, the same zoom and pan, and the same display per role.

A mixin of :class:`viewer.ui.main_window.MainWindow`. Both views show the same *world* point,
each timepoint on its own anatomy's grid (:meth:`viewer.core.scene.Scene.plane` of that
timepoint); once registration (PRODUCT.md §9) gives timepoints their transforms, the scene's
planes carry them and this layout follows without change.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6 import QtCore, QtWidgets

from viewer.core.io.study import Timepoint
from viewer.core.spaces import ORIENTATIONS

#: the key the compare view's jobs, samples and captions go by (beside the orientations)
COMPARE = "compare"


class TimepointComparing:
    """The compare layout's toolbar (which timepoint, which orientation) and its linking."""

    compare_label: str | None = None

    def _build_compare_toolbar(self, bar: QtWidgets.QToolBar) -> None:
        self._compare_actions = [bar.addSeparator(), bar.addWidget(QtWidgets.QLabel(" Compare with: "))]
        self.compare_combo = QtWidgets.QComboBox()
        self.compare_combo.setToolTip("The timepoint shown beside the one on screen (layout 4)")
        self.compare_combo.activated.connect(lambda index: self.set_compare_timepoint(self.compare_combo.itemData(index)))
        self.compare_orientation_combo = QtWidgets.QComboBox()
        for orientation in ORIENTATIONS:
            self.compare_orientation_combo.addItem(orientation, orientation)
        self.compare_orientation_combo.activated.connect(
            lambda index: self.set_compare_orientation(self.compare_orientation_combo.itemData(index)))
        self._compare_actions += [bar.addWidget(self.compare_combo), bar.addWidget(self.compare_orientation_combo)]
        self._show_compare_toolbar(False)

    def _show_compare_toolbar(self, shown: bool) -> None:
        for action in self._compare_actions:
            action.setVisible(shown)

    def _fill_compare_combo(self, **_: Any) -> None:
        if self.scene is None:
            return
        with QtCore.QSignalBlocker(self.compare_combo):
            self.compare_combo.clear()
            for timepoint in self.scene.study.timepoints:
                self.compare_combo.addItem(timepoint.label, timepoint.label)
            self.compare_combo.setCurrentIndex(max(0, self.compare_combo.findData(self.compare_timepoint().label)))

    def compare_timepoint(self) -> Timepoint:
        """The timepoint beside the one on screen: the chosen one, else the next (the previous
        for the last timepoint; the same one in a one-timepoint study)."""
        assert self.scene is not None
        timepoints = self.scene.study.timepoints
        chosen = next((tp for tp in timepoints if tp.label == self.compare_label), None)
        if chosen is not None:
            return chosen
        index = self.scene.timepoint_index
        return timepoints[index + 1] if index + 1 < len(timepoints) else timepoints[max(0, index - 1)]

    def set_compare_timepoint(self, label: str) -> None:
        self.compare_label = label
        self._fill_compare_combo()
        if self.ortho.layout_name == COMPARE:
            self._refresh(COMPARE)

    def set_compare_orientation(self, orientation: str) -> None:
        self.ortho.set_compare_orientation(orientation)
        combo = self.compare_orientation_combo
        with QtCore.QSignalBlocker(combo):
            combo.setCurrentIndex(combo.findData(orientation))
        if self.ortho.layout_name == COMPARE:
            self._place_colorbars()
            self._refresh(COMPARE)
            self._fit_views()

    def _place_colorbars(self) -> None:
        """One colour bar stack for the two compared views (they share every display): the
        left view's is hidden in the compare layout."""
        compared = self.ortho.views[self.ortho.compare_view.orientation] if self.ortho.layout_name == COMPARE else None
        for view in self.ortho.views.values():
            if view.colorbars is not None:
                view.colorbars.setVisible(view is not compared)

    def _view_keys(self) -> list[str]:
        """The views to redraw: the three orientations, and the compare view when it is up."""
        return list(ORIENTATIONS) + ([COMPARE] if self.ortho.layout_name == COMPARE else [])

    def _view_of(self, key: str):
        return self.ortho.compare_view if key == COMPARE else self.ortho.views[key]

    def _timepoint_of(self, key: str) -> Timepoint:
        assert self.scene is not None
        return self.compare_timepoint() if key == COMPARE else self.scene.timepoint

    def _plane_of(self, key: str):
        assert self.scene is not None
        if key == COMPARE:
            return self.scene.plane(self.ortho.compare_view.orientation, self.compare_timepoint())
        return self.scene.plane(key)

    def _link_compare(self, source) -> None:
        """In the compare layout the two views show the same world point at the same scale."""
        if self.ortho.layout_name != COMPARE:
            return
        primary = self.ortho.views[self.ortho.compare_view.orientation]
        other = self.ortho.compare_view if source is primary else primary if source is self.ortho.compare_view else None
        center = source.center_world()
        state = source.view_state()
        if other is None or center is None or state is None or other.plane is None:
            return
        other.show_world(center, state[1] * _width_ratio(other, source))

    def _on_compare_hover(self, world: np.ndarray | None) -> None:
        """The readout under the mouse in the compare view is that timepoint's."""
        self._update_readout(world, timepoint=self.compare_timepoint() if world is not None else None)


def _width_ratio(target, source) -> float:
    """Widths scale with the views' screen widths (the same mm per screen pixel)."""
    return max(target.view_box.sceneBoundingRect().width(), 1.0) / max(source.view_box.sceneBoundingRect().width(), 1.0)
