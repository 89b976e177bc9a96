"""Comparing timepoints side by side (PRODUCT.md §5): the compare layout (key 4) shows one
orientation of the timepoint on screen beside the same plane of another timepoint, with one
cursor, the same zoom and pan, and the same display per role. Its *check* modes (PRODUCT.md §9)
show the two anatomies combined in the right view instead — checkerboard, blend (a slider) or
flicker — to judge a registration (:mod:`viewer.core.check_view`).

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
from viewer.ui.slice_view import show_rgb

#: the key the compare view's jobs, samples and captions go by (beside the orientations)
COMPARE = "compare"
#: Flicker: each anatomy shown this long (ms), about the eye's comfortable alternation.
FLICKER_MS = 600


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
        from viewer.core.check_view import CHECK_MODES

        self.check_combo = QtWidgets.QComboBox()
        self.check_combo.addItems(list(CHECK_MODES))
        self.check_combo.setToolTip("Check a registration: the two anatomies combined in the right view")
        self.check_combo.activated.connect(lambda index: self.set_check_mode(self.check_combo.itemText(index)))
        self.blend_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.blend_slider.setRange(0, 100)
        self.blend_slider.setValue(50)
        self.blend_slider.setFixedWidth(90)
        self.blend_slider.setToolTip("Blend: the timepoint on screen (left) against the compared one (right)")
        self.blend_slider.valueChanged.connect(lambda _: self._refresh(COMPARE) if self.check_mode == "blend" else None)
        self._compare_actions += [bar.addWidget(QtWidgets.QLabel(" Check: ")), bar.addWidget(self.check_combo)]
        self._blend_action = bar.addWidget(self.blend_slider)
        self._flicker = QtCore.QTimer(self)
        self._flicker.setInterval(FLICKER_MS)
        self._flicker.timeout.connect(self._flip)
        self._flicker_frames: list = []
        self._show_compare_toolbar(False)

    check_mode: str = "side by side"

    def _show_compare_toolbar(self, shown: bool) -> None:
        for action in self._compare_actions:
            action.setVisible(shown)
        self._blend_action.setVisible(shown and self.check_mode == "blend")
        if not shown:
            self._flicker.stop()

    def set_check_mode(self, mode: str) -> None:
        """Side by side, or one of the check views of the two anatomies."""
        from viewer.core.check_view import CHECK_MODES

        if mode not in CHECK_MODES:
            raise ValueError(f"check mode must be one of {CHECK_MODES}, got {mode!r}")
        self.check_mode = mode
        with QtCore.QSignalBlocker(self.check_combo):
            self.check_combo.setCurrentText(mode)
        self._blend_action.setVisible(self.ortho.layout_name == COMPARE and mode == "blend")
        self._flicker.stop()
        self._samples.pop(COMPARE, None)  # a check frame's samples are not a slice's
        if self.ortho.layout_name == COMPARE:
            self._refresh(COMPARE)

    def _check_job(self, plane):
        """The job of a check view: both anatomies on the compare view's plane, combined."""
        from viewer.core.check_view import blend, checkerboard, grey

        assert self.scene is not None
        mine = self.scene.volumes_of(self.scene.timepoint)["anatomical"]
        theirs = self.scene.volumes_of(self.compare_timepoint())["anatomical"]
        props, mode, weight = self.scene.display["anatomical"], self.check_mode, self.blend_slider.value() / 100.0

        def run():
            a, b = grey(mine, plane, props), grey(theirs, plane, props)
            if mode == "checkerboard":
                return plane, checkerboard(a, b, plane), {}
            if mode == "blend":
                return plane, blend(a, b, weight), {}
            return plane, blend(a, b, 1.0), {"flicker": (blend(a, b, 1.0), blend(a, b, 0.0))}

        return run

    def _after_check_frame(self, samples) -> None:
        """Flicker alternates the two frames a check job made."""
        frames = samples.get("flicker") if isinstance(samples, dict) else None
        self._flicker_frames = list(frames) if frames else []
        self._flicker_index = 0
        if self._flicker_frames:
            self._flicker.start()
        else:
            self._flicker.stop()

    def _flip(self) -> None:
        view = self.ortho.compare_view
        if not self._flicker_frames or self.ortho.layout_name != COMPARE or view.plane is None:
            self._flicker.stop()
            return
        self._flicker_index = 1 - self._flicker_index
        show_rgb(view.image, self._flicker_frames[self._flicker_index])

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
