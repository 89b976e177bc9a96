"""The view area: three linked slice views (and the 3D view) in one of three layouts.

Layouts (number keys): 1 = 1×3 row; 2 = one large view + two small; 3 = 2×2 with the 3D
view; 4 = compare timepoints: one orientation of the timepoint shown beside the same plane of
another timepoint (:attr:`OrthoViews.compare_view`). The 3D view is created only when layout 3
is first shown, so start-up never pays for VTK.
"""

from __future__ import annotations

from typing import Callable

from PySide6 import QtWidgets

from viewer.core.spaces import ORIENTATIONS
from viewer.ui.slice_view import SliceView

LAYOUTS: tuple[str, ...] = ("1x3", "1+2", "2x2", "compare")


class OrthoViews(QtWidgets.QWidget):
    """Holds the SliceViews and arranges them; the 3D view comes from ``make_3d`` on demand."""

    def __init__(self, make_3d: Callable[[], QtWidgets.QWidget], parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.views: dict[str, SliceView] = {o: SliceView(o) for o in ORIENTATIONS}
        self._make_3d = make_3d
        self.volume_view: QtWidgets.QWidget | None = None
        #: the other timepoint's view of the compare layout; its orientation is the one compared
        self.compare_view = SliceView("axial")
        self.compare_view.hide()
        self.layout_name = "1x3"
        self._grid = QtWidgets.QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(2)
        self.set_layout("1x3")

    def set_compare_orientation(self, orientation: str) -> None:
        """Which orientation the compare layout shows (re-arranged at once when it is up)."""
        self.compare_view.orientation = orientation
        if self.layout_name == "compare":
            self.set_layout("compare")

    def all_views(self) -> list[SliceView]:
        """Every slice view, shown or not (the compare view last)."""
        return [*self.views.values(), self.compare_view]

    def set_layout(self, name: str) -> None:
        """Rearrange the views; creates the 3D view the first time "2x2" is chosen."""
        if name not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {name!r}")
        while self._grid.count():
            self._grid.takeAt(0)
        for row in range(3):
            self._grid.setRowStretch(row, 0)
        for col in range(3):
            self._grid.setColumnStretch(col, 0)
        axial, coronal, sagittal = (self.views[o] for o in ORIENTATIONS)
        if self.volume_view is not None:
            self.volume_view.hide()
        self.compare_view.hide()
        if name == "compare":
            primary = self.views[self.compare_view.orientation]
            for view in self.views.values():
                view.setVisible(view is primary)
            self._grid.addWidget(primary, 0, 0)
            self._grid.addWidget(self.compare_view, 0, 1)
            self._grid.setColumnStretch(0, 1)
            self._grid.setColumnStretch(1, 1)
            self._grid.setRowStretch(0, 1)
            self.compare_view.show()
            self.layout_name = name
            return
        if name == "1x3":
            for col, view in enumerate((axial, coronal, sagittal)):
                self._grid.addWidget(view, 0, col)
                self._grid.setColumnStretch(col, 1)
            self._grid.setRowStretch(0, 1)
        elif name == "1+2":
            self._grid.addWidget(axial, 0, 0, 2, 1)
            self._grid.addWidget(coronal, 0, 1)
            self._grid.addWidget(sagittal, 1, 1)
            self._grid.setColumnStretch(0, 2)
            self._grid.setColumnStretch(1, 1)
            self._grid.setRowStretch(0, 1)
            self._grid.setRowStretch(1, 1)
        else:
            if self.volume_view is None:
                self.volume_view = self._make_3d()
            self._grid.addWidget(axial, 0, 0)
            self._grid.addWidget(coronal, 0, 1)
            self._grid.addWidget(sagittal, 1, 0)
            self._grid.addWidget(self.volume_view, 1, 1)
            self.volume_view.show()
            for index in range(2):
                self._grid.setRowStretch(index, 1)
                self._grid.setColumnStretch(index, 1)
        for view in self.views.values():
            view.show()
        self.layout_name = name
