"""One orthogonal slice view: the fused plane from the core, crosshair, letters, scale bar.

Radiology mouse habits (PRODUCT.md §5): wheel = slice, ctrl+wheel = zoom, right-drag =
window/level of the anatomy, middle-drag = pan, left-click/drag = move the linked cursor.

Coordinates: the view's scene units are millimetres of the plane (x = column · pixel width,
y = row · pixel height, y down), so anisotropic pixels show with the right aspect. The image
is one RGB ImageItem composited by the core (`viewer.core.render`), the same pixels the PDF
report and `viewer render` produce; pyqtgraph only places and zooms it (shown as it is: no
levels, never auto-levels).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from viewer.core.spaces import Plane

#: Window/level sensitivity: a full-width drag changes the window by this many times its range.
WINDOW_DRAG_GAIN = 2.0


def show_rgb(item: pg.ImageItem, rgb: np.ndarray) -> None:
    """Put composited RGB pixels (uint8) on screen as they are: no levels, so pyqtgraph wraps
    the array in an RGB888 QImage instead of rescaling a copy through levels (0, 255), which
    gave the same bytes for 0.6 ms a 512×512 frame; never auto-levels."""
    item.setImage(rgb, autoLevels=False, levels=None)


class SliceViewBox(pg.ViewBox):
    """A ViewBox with the radiology mouse mapping instead of pyqtgraph's defaults."""

    def __init__(self, view: "SliceView") -> None:
        super().__init__(invertY=True, lockAspect=True, enableMenu=False)
        self._view = view

    def wheelEvent(self, ev, axis=None):  # noqa: N802 (Qt naming)
        if ev.modifiers() & QtCore.Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(ev, axis)
            return
        delta = ev.delta() if hasattr(ev, "delta") else ev.angleDelta().y()
        steps = 1 if delta > 0 else -1
        self._view.slice_step_requested.emit(steps)
        ev.accept()

    def hoverEvent(self, ev):  # noqa: N802
        """The point under the mouse, without a click (the hover readout); None on leaving."""
        if ev.isExit():
            self._view.hovered.emit(None)
            return
        world = self._view.world_at(self.mapSceneToView(ev.scenePos()))
        self._view.hovered.emit(world)

    def mouseClickEvent(self, ev):  # noqa: N802
        if ev.button() == QtCore.Qt.MouseButton.LeftButton:
            point = self.mapSceneToView(ev.scenePos())
            if self._view.tool is not None:
                self._view.tool_event("press", point)
                self._view.tool_event("release", point)
            else:
                self._view.point_clicked(point)
            ev.accept()
        else:
            ev.ignore()

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802
        button = ev.button()
        if button == QtCore.Qt.MouseButton.MiddleButton:
            delta = self.mapSceneToView(ev.lastScenePos()) - self.mapSceneToView(ev.scenePos())
            self.translateBy(x=delta.x(), y=delta.y())
            self.sigRangeChangedManually.emit(self.state["mouseEnabled"])  # a pan the user made
            ev.accept()
        elif button == QtCore.Qt.MouseButton.RightButton:
            step = ev.scenePos() - ev.lastScenePos()
            width = max(1.0, self.screenGeometry().width()) if self.screenGeometry() is not None else 500.0
            self._view.window_level_requested.emit(step.x() / width * WINDOW_DRAG_GAIN, -step.y() / width * WINDOW_DRAG_GAIN)
            ev.accept()
        elif button == QtCore.Qt.MouseButton.LeftButton:
            point = self.mapSceneToView(ev.scenePos())
            if self._view.tool is not None:
                if ev.isStart():
                    self._view.tool_event("press", self.mapSceneToView(ev.buttonDownScenePos()))
                self._view.tool_event("move", point)
                if ev.isFinish():
                    self._view.tool_event("release", point)
            else:
                self._view.point_clicked(point)
            ev.accept()
        else:
            ev.ignore()


#: Overlay placement in a view (px): the edge margin of letters and text; the colour bars keep
#: clear of the top letter, of the bottom's scale bar, letter and caption, and of the side letters.
_OVERLAY_MARGIN = 6
_BAR_TOP_MARGIN = 26
_BAR_BOTTOM_MARGIN = 62
_BAR_SIDE_MARGIN = 30
#: Most of a view's width or height the colour bars take on their preferred side before the
#: other side is tried (seven overlays in a small view).
_BAR_MOST_OF_VIEW = 0.25

#: Rulers and ROIs (cyan: apart from the yellow text, the green cursor and the regions' colours).
MEASURE_COLOUR = (80, 220, 255)

#: Lengths (mm) the scale bar may show: the longest that fits a quarter of the view.
SCALE_BAR_LENGTHS_MM: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200)


class ViewScaleBar(pg.ScaleBar):
    """A scale bar drawn to the right of its anchor (pyqtgraph's grows to the left, so a
    zoomed view clipped it to "0 mm") whose length follows the zoom: the longest of
    :data:`SCALE_BAR_LENGTHS_MM` that fits in a quarter of the view's width."""

    def __init__(self) -> None:
        super().__init__(size=20, suffix="mm")
        self.length_mm = 20.0

    def updateBar(self) -> None:  # noqa: N802 (pyqtgraph naming)
        view = self.parentItem()
        if view is None:
            return
        origin = view.mapFromViewToItem(self, QtCore.QPointF(0, 0))
        one_mm = abs((view.mapFromViewToItem(self, QtCore.QPointF(1, 0)) - origin).x())
        room = 0.25 * view.boundingRect().width()
        fitting = [mm for mm in SCALE_BAR_LENGTHS_MM if mm * one_mm <= room] or [SCALE_BAR_LENGTHS_MM[0]]
        self.length_mm = fitting[-1]
        width = self.length_mm * one_mm
        self.bar.setRect(QtCore.QRectF(0, 0, width, self._width))
        self.text.setText(f"{self.length_mm:g} mm")
        self.text.setPos(width / 2.0, 0)


class SliceView(QtWidgets.QWidget):
    """Shows one orientation; emits requests, never changes the scene itself.

    Signals:
        cursor_requested(object): world mm (numpy 3-vector) the user clicked.
        slice_step_requested(int): ±1 per wheel notch or Page Up/Down.
        window_level_requested(float, float): fractional (width, centre) changes from a right-drag.
    """

    cursor_requested = QtCore.Signal(object)
    #: world mm under the mouse (np.ndarray), or None when the mouse left the view
    hovered = QtCore.Signal(object)
    tool_used = QtCore.Signal()
    stroke_started = QtCore.Signal()
    stroke_finished = QtCore.Signal()
    slice_step_requested = QtCore.Signal(int)
    window_level_requested = QtCore.Signal(float, float)

    def __init__(self, orientation: str, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.orientation = orientation
        self.plane: Plane | None = None
        self.tool = None  # an annotation tool (viewer.ui.tools.Tool) or None to move the cursor
        self._fitted_key: tuple | None = None
        # a zoom and pan to restore once the first image is up (the study's workspace)
        self._pending_state: tuple[tuple[float, float], float] | None = None
        #: the part of the plane (x, y, width, height in mm) that holds anatomy; the view fits
        #: it when it opens or is reset (None: the whole plane)
        self.content_rect: QtCore.QRectF | None = None
        self.graphics = pg.GraphicsView(background="k")
        self.view_box = SliceViewBox(self)
        self.graphics.setCentralItem(self.view_box)
        self.view_box.sigRangeChangedManually.connect(self._on_user_range)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.view_box.addItem(self.image)
        pen = pg.mkPen((80, 220, 80, 200), width=1)
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pen)
        self.hline = pg.InfiniteLine(angle=0, movable=False, pen=pen)
        self.view_box.addItem(self.vline, ignoreBounds=True)
        self.view_box.addItem(self.hline, ignoreBounds=True)
        self.outline = pg.PlotDataItem(pen=pg.mkPen((255, 255, 0), width=1.5, style=QtCore.Qt.PenStyle.DashLine))
        self.view_box.addItem(self.outline, ignoreBounds=True)
        self._measure_items: list = []  # the rulers' and ROIs' graphics shown (show_measurements)
        self._measure_pool: list[tuple[pg.PlotDataItem, pg.TextItem]] = []
        self._measure_key: tuple | None = None
        #: the colour bars' reserve the view was fitted beside, and whether the reader zoomed
        #: or panned since (then a change of the bars leaves the view where it is)
        self._fitted_reserve: tuple[int, int] | None = None
        self._zoomed = False
        self.scale_bar = ViewScaleBar()
        self.scale_bar.setParentItem(self.view_box)
        self.scale_bar.anchor((0, 1), (0, 1), offset=(16, -16))
        self._layout = QtWidgets.QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(0)
        self._layout.addWidget(self.graphics, 1)
        self.colorbars: QtWidgets.QWidget | None = None
        self._letters = {edge: self._overlay_label(bold=True) for edge in ("left", "right", "top", "bottom")}
        self.info = self._overlay_label(bold=False)
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(160, 160)

    def _overlay_label(self, bold: bool) -> QtWidgets.QLabel:
        label = QtWidgets.QLabel(self.graphics)
        label.setAttribute(QtCore.Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        weight = "bold" if bold else "normal"
        size = 14 if bold else 11
        label.setStyleSheet(f"color: #ffd24d; font-weight: {weight}; font-size: {size}px; background: transparent;")
        label.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight if not bold else QtCore.Qt.AlignmentFlag.AlignCenter)
        return label

    def set_colorbars(self, widget: QtWidgets.QWidget) -> None:
        """Show the colour bars (with units) of the visible overlays over this view, where
        the anatomy leaves room: a row along the bottom when the view is taller than what it
        shows, a column on the right when it is wider (Slicer's habit of a legend inside the
        view; a column beside every view took 56 px of each)."""
        if self.colorbars is not None:
            self.colorbars.deleteLater()
        self.colorbars = widget
        widget.overlay = True  # this view sizes it
        widget.setMinimumSize(0, 0)
        widget.setParent(self.graphics)
        widget.show()
        self._place_overlays()

    def _has_bars(self) -> bool:
        return self.colorbars is not None and not self.colorbars.isHidden()

    def colorbar_side(self) -> str:
        """"bottom" or "right": where the colour bars go — the side the anatomy leaves free
        (a view taller than what it shows has room below it), unless the bars would take more
        than :data:`_BAR_MOST_OF_VIEW` of the view there and less on the other side."""
        width, height = max(self.graphics.width(), 1), max(self.graphics.height(), 1)
        content = self._fitted_rect()
        if content is None:
            return "right"
        preferred = "bottom" if content.width() / content.height() > width / height else "right"
        share = {side: self._bar_thickness(side) / (height if side == "bottom" else width)
                 for side in ("bottom", "right")}
        other = "right" if preferred == "bottom" else "bottom"
        return other if share[preferred] > _BAR_MOST_OF_VIEW and share[other] < share[preferred] else preferred

    def _bar_length(self, side: str) -> int:
        """Pixels along the colour bars on ``side``: what the view has, at most what they want."""
        room = (self.graphics.width() - 2 * _BAR_SIDE_MARGIN if side == "bottom"
                else self.graphics.height() - _BAR_TOP_MARGIN - _BAR_BOTTOM_MARGIN)
        return min(room, self.colorbars.preferred_length())

    def _bar_thickness(self, side: str) -> int:
        """Pixels across the colour bars if they were placed on ``side`` (0: none)."""
        if not self._has_bars():
            return 0
        orientation = QtCore.Qt.Orientation.Horizontal if side == "bottom" else QtCore.Qt.Orientation.Vertical
        return self.colorbars.thickness_for(self._bar_length(side), orientation)

    def _fitted_rect(self) -> QtCore.QRectF | None:
        """What the view fits (mm in the plane): the anatomy's extent, else the whole plane."""
        if self.plane is None:
            return None
        whole = QtCore.QRectF(0, 0, self.plane.shape[1] * self.plane.col_step_mm,
                              self.plane.shape[0] * self.plane.row_step_mm)
        fitted = self.content_rect.intersected(whole) if self.content_rect is not None else whole
        return fitted if not fitted.isEmpty() else whole

    def colorbar_reserve(self, side: str | None = None) -> tuple[int, int]:
        """Pixels the colour bars take from the right and from the bottom of the view (on
        ``side``, default :meth:`colorbar_side`)."""
        if not self._has_bars():
            return 0, 0
        side = side or self.colorbar_side()
        thickness = self._bar_thickness(side)
        if not thickness:
            return 0, 0
        return (0, thickness + _BAR_BOTTOM_MARGIN) if side == "bottom" else (thickness + _OVERLAY_MARGIN, 0)

    # -- content ------------------------------------------------------------------------------
    def show_image(self, plane: Plane, rgb: np.ndarray, info: str) -> bool:
        """Display a fused RGB plane (rows × cols × 3 uint8) with its geometry and caption;
        True when the view was fitted anew (a new grid or a restored zoom)."""
        self.plane = plane
        show_rgb(self.image, rgb)
        transform = QtGui.QTransform.fromScale(plane.col_step_mm, plane.row_step_mm)
        self.image.setTransform(transform)
        key = (plane.shape, round(plane.col_step_mm, 6), round(plane.row_step_mm, 6), plane.orientation)
        fitted = key != self._fitted_key
        if fitted:
            self._fitted_key = key
            self.reset_view()
        if self._pending_state is not None:  # a restored zoom, once this study's image is up
            state, self._pending_state = self._pending_state, None
            self._apply_view_state(*state)
            fitted = True
        self._set_letters(plane)
        self.info.setText(info)
        self._place_overlays()
        return fitted

    def set_crosshair(self, world_xyz: np.ndarray) -> None:
        """Draw the linked cursor where it crosses this plane."""
        if self.plane is None:
            return
        row, col, _ = self.plane.world_to_pixel(np.asarray(world_xyz, dtype=float))
        self.vline.setPos((col + 0.5) * self.plane.col_step_mm)
        self.hline.setPos((row + 0.5) * self.plane.row_step_mm)

    def reset_view(self) -> None:
        """Fit the anatomy (else the whole plane) in the part of the view the colour bars
        leave free (the `R` key)."""
        fitted = self._fitted_rect()
        if fitted is None:
            return
        self._zoomed = False
        self._fitted_reserve = self.colorbar_reserve()
        self._place_overlays()
        right, bottom = self._fitted_reserve
        pixels_w, pixels_h = max(self.graphics.width(), 1), max(self.graphics.height(), 1)
        free_w, free_h = max(pixels_w - right, 1), max(pixels_h - bottom, 1)
        pad = 1.08  # 4 % each side, as pyqtgraph's padding=0.04
        mm_per_pixel = max(fitted.width() * pad / free_w, fitted.height() * pad / free_h)
        x0 = fitted.center().x() - free_w / 2 * mm_per_pixel
        y0 = fitted.center().y() - free_h / 2 * mm_per_pixel
        self.view_box.setRange(xRange=(x0, x0 + pixels_w * mm_per_pixel), yRange=(y0, y0 + pixels_h * mm_per_pixel),
                               padding=0)

    def view_state(self) -> tuple[tuple[float, float], float] | None:
        """The zoom and pan: the visible centre (mm in the plane, from its first pixel's
        corner) and the visible width (mm); None before the first image."""
        if self.plane is None:
            return None
        (x0, x1), (y0, y1) = self.view_box.viewRange()
        return ((x0 + x1) / 2, (y0 + y1) / 2), float(x1 - x0)

    def set_view_state(self, center_mm: tuple[float, float], width_mm: float) -> None:
        """Show ``width_mm`` around ``center_mm`` (the height follows the view's aspect), from
        the next image on (a study being opened has not drawn its first image yet)."""
        self._pending_state = ((float(center_mm[0]), float(center_mm[1])), float(width_mm))

    def _on_user_range(self, *_: object) -> None:
        self._zoomed = True

    def _apply_view_state(self, center_mm: tuple[float, float], width_mm: float) -> None:
        self._zoomed = True  # a restored or linked zoom stays when the colour bars change
        (x0, x1), (y0, y1) = self.view_box.viewRange()
        height = width_mm * (y1 - y0) / (x1 - x0) if x1 > x0 else width_mm
        cx, cy = center_mm
        self.view_box.setRange(xRange=(cx - width_mm / 2, cx + width_mm / 2),
                               yRange=(cy - height / 2, cy + height / 2), padding=0)

    def center_world(self) -> np.ndarray | None:
        """World mm at the centre of what the view shows (None before the first image)."""
        state = self.view_state()
        if state is None:
            return None
        return self.world_at(QtCore.QPointF(*state[0]))

    def show_world(self, center_world: np.ndarray, width_mm: float) -> None:
        """Pan so ``center_world`` (its projection on this plane) is at the centre, showing
        ``width_mm`` across (linked views: the same place at the same scale)."""
        if self.plane is None:
            return
        row, col, _ = self.plane.world_to_pixel(np.asarray(center_world, dtype=float))
        self._apply_view_state(((col + 0.5) * self.plane.col_step_mm, (row + 0.5) * self.plane.row_step_mm), width_mm)

    def world_at(self, view_point: QtCore.QPointF) -> np.ndarray | None:
        """World mm under a point in view (mm) coordinates."""
        if self.plane is None:
            return None
        col = view_point.x() / self.plane.col_step_mm - 0.5
        row = view_point.y() / self.plane.row_step_mm - 0.5
        return self.plane.pixel_to_world_points(np.array([row]), np.array([col]))[0]

    def tool_event(self, kind: str, view_point: QtCore.QPointF) -> None:
        """Forward a left-button press/move/release (world mm) to the active annotation tool."""
        world = self.world_at(view_point)
        if self.tool is None or world is None or self.plane is None:
            return
        edits = getattr(self.tool, "edits_labels", True)  # a measuring tool draws no stroke
        if kind == "press" and edits:
            self.stroke_started.emit()
        getattr(self.tool, kind)(self.plane, world)
        self.tool_used.emit()
        if kind == "release" and edits:
            self.stroke_finished.emit()

    def show_outline(self, points_world: list) -> None:
        """Draw (or clear) a lasso outline given in world mm."""
        if self.plane is None or not points_world:
            self.outline.setData([], [])
            return
        pixels = self.plane.world_to_pixel(np.asarray(points_world, float))
        xs = (pixels[:, 1] + 0.5) * self.plane.col_step_mm
        ys = (pixels[:, 0] + 0.5) * self.plane.row_step_mm
        self.outline.setData(np.append(xs, xs[0]), np.append(ys, ys[0]))

    def show_measurements(self, shapes: list[tuple[str, np.ndarray, str, bool]]) -> None:
        """Draw rulers and ROIs: (name, world points (N, 3), label, being drawn) each; the
        label sits beside the shape's last point, off the line. Replaces what was drawn.

        The graphics items are kept and reused (new pyqtgraph items cost ~1.7 ms each, which
        a slice step cannot afford); what nothing shows is hidden."""
        if self.plane is None:
            shapes = []
        key = (self._fitted_key, self.plane.slice_index if self.plane is not None else None,
               tuple((name, label, preview, points.shape, float(np.asarray(points).sum())) for name, points, label, preview in shapes))
        if key == self._measure_key:
            return
        self._measure_key = key
        while len(self._measure_pool) < len(shapes):
            line = pg.PlotDataItem(pen=pg.mkPen(MEASURE_COLOUR, width=1.5), symbolSize=5, symbolPen=None)
            text = pg.TextItem("", anchor=(0, 1), fill=(0, 0, 0, 150))
            for item in (line, text):
                self.view_box.addItem(item, ignoreBounds=True)
            self._measure_pool.append((line, text))
        for index, (line, text) in enumerate(self._measure_pool):
            shown = index < len(shapes)
            line.setVisible(shown)
            text.setVisible(shown)
            if not shown:
                continue
            name, points, label, preview = shapes[index]
            pixels = self.plane.world_to_pixel(np.asarray(points, float))
            xs = (pixels[:, 1] + 0.5) * self.plane.col_step_mm
            ys = (pixels[:, 0] + 0.5) * self.plane.row_step_mm
            colour = (255, 255, 255) if preview else MEASURE_COLOUR
            line.setData(xs, ys, pen=pg.mkPen(colour, width=1.5), symbol="o" if len(xs) == 2 else None,
                         symbolBrush=colour)
            text.setText(f"{name} {label}".strip(), color=colour)
            end = int(np.argmax(xs)) if len(xs) > 2 else 1  # the outline's right edge, a ruler's end
            text.setPos(xs[end], ys[end])
        self._measure_items = [item for pair in self._measure_pool[:len(shapes)] for item in pair]

    def point_clicked(self, view_point: QtCore.QPointF) -> None:
        world = self.world_at(view_point)
        if world is not None:
            self.cursor_requested.emit(world)

    def view_position_of(self, world_xyz: np.ndarray) -> QtCore.QPointF:
        """Widget pixel position of a world point (for tests and tools)."""
        assert self.plane is not None
        row, col, _ = self.plane.world_to_pixel(np.asarray(world_xyz, dtype=float))
        scene_point = self.view_box.mapViewToScene(
            QtCore.QPointF((col + 0.5) * self.plane.col_step_mm, (row + 0.5) * self.plane.row_step_mm)
        )
        return self.graphics.mapFromScene(scene_point)

    # -- overlays -----------------------------------------------------------------------------
    def _set_letters(self, plane: Plane) -> None:
        for edge, letter in plane.edge_letters().items():
            self._letters[edge].setText(letter)
            self._letters[edge].adjustSize()

    def _place_overlays(self) -> None:
        width, height = self.graphics.width(), self.graphics.height()
        margin = _OVERLAY_MARGIN
        right_bars, bottom_bars = self._place_colorbars()
        if (right_bars, bottom_bars) != self._fitted_reserve and not self._zoomed and self.plane is not None:
            self._fitted_reserve = (right_bars, bottom_bars)
            self.reset_view()  # more (or fewer) colour bars: the anatomy refitted beside them
            return
        left, right = self._letters["left"], self._letters["right"]
        top, bottom = self._letters["top"], self._letters["bottom"]
        free_height = height - bottom_bars
        left.move(margin, (free_height - left.height()) // 2)
        right.move(width - right_bars - right.width() - margin, (free_height - right.height()) // 2)
        top.move((width - right_bars - top.width()) // 2, margin)
        bottom.move((width - bottom.width()) // 2, height - bottom.height() - margin)
        self.info.adjustSize()
        # bottom-right: the top edge holds the orientation letter, the bottom-left the scale bar
        self.info.move(width - self.info.width() - margin, height - self.info.height() - margin - 18)

    def _place_colorbars(self) -> tuple[int, int]:
        """Put the colour bars where :meth:`colorbar_side` says; returns what they reserve."""
        if not self._has_bars():
            return 0, 0
        width, height = self.graphics.width(), self.graphics.height()
        side = self.colorbar_side()
        bars = self.colorbars
        bars.set_orientation(QtCore.Qt.Orientation.Horizontal if side == "bottom" else QtCore.Qt.Orientation.Vertical)
        right, bottom = self.colorbar_reserve(side)
        if side == "bottom":
            bars.setGeometry(_BAR_SIDE_MARGIN, height - bottom, self._bar_length(side), max(bottom - _BAR_BOTTOM_MARGIN, 0))
        else:
            bars.setGeometry(width - right, _BAR_TOP_MARGIN, max(right - _OVERLAY_MARGIN, 0), self._bar_length(side))
        bars.raise_()
        return right, bottom

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._place_overlays()

    def enterEvent(self, event) -> None:  # noqa: N802
        """The view under the mouse takes the keyboard (slice keys work without a click,
        which would move the cursor); a text field being edited keeps it."""
        focused = QtWidgets.QApplication.focusWidget()
        if not isinstance(focused, (QtWidgets.QLineEdit, QtWidgets.QAbstractSpinBox, QtWidgets.QTextEdit)):
            self.setFocus(QtCore.Qt.FocusReason.MouseFocusReason)
        super().enterEvent(event)

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:  # noqa: N802
        key = event.key()
        if key in (QtCore.Qt.Key.Key_PageUp, QtCore.Qt.Key.Key_Up):
            self.slice_step_requested.emit(1)
        elif key in (QtCore.Qt.Key.Key_PageDown, QtCore.Qt.Key.Key_Down):
            self.slice_step_requested.emit(-1)
        else:
            super().keyPressEvent(event)
