"""Colour bars with units, drawn with QPainter, for the dark margins of the slice views.

A :class:`ColorBar` shows one layer's lookup table between its explicit ``levels`` (the values
mapped to the first and last LUT entry, in the layer's units), low/middle/high tick labels, the
title ``ROLE_QUANTITY (units)`` — "PET (SUV)", "ΔR1 (1/s)" — and a marker at each bound of the
visible range that lies inside the levels (values beyond it are transparent in the views, so
that part of the bar is dimmed). A :class:`ColorBarStack` keeps one bar per visible overlay of
a :class:`~viewer.core.scene.Scene` (anatomy and regions have none), top-most layer first,
following the scene's ``display``/``order``/``timepoint`` events.

The small helpers (:func:`layer_title`, :func:`value_decimals`, :func:`lut_image`,
:class:`SceneLink`) are shared with the layer panel.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets
from shiboken6 import isValid

from viewer.core.display import DisplayProps, colormap_lut
from viewer.core.events import Events
from viewer.core.volume import ROLE_QUANTITY

if TYPE_CHECKING:
    from viewer.core.scene import Scene

#: Roles that never get a colour bar: the anatomy is the grey base, regions have a legend.
NO_COLORBAR_ROLES: frozenset[str] = frozenset({"anatomical", "regions"})

#: Colours of the bar's decorations, chosen for a black background.
_TEXT_COLOR = QtGui.QColor(230, 230, 230)
_FRAME_COLOR = QtGui.QColor(150, 150, 150)
_MARKER_COLOR = QtGui.QColor(255, 255, 255)
#: Black veil over the part of the bar whose values are hidden by the visible range.
_HIDDEN_VEIL = QtGui.QColor(0, 0, 0, 170)


# -- shared helpers ------------------------------------------------------------------------------

def layer_title(role: str, units: str) -> str:
    """One-line name of a layer, e.g. "PET (SUV)", "ΔR1 (1/s)", "¹⁹F signal (a.u.)"."""
    quantity = ROLE_QUANTITY.get(role, role)
    return f"{quantity} ({units})" if units else quantity


def value_decimals(span: float, significant: int = 3) -> int:
    """Decimals that show about ``significant`` digits of a value range ``span``.

    Why: the maps live on very different scales (ADC ~1000·10⁻⁶ mm²/s, SUV ~5, ΔR1 ~0.003 1/s);
    a fixed number of decimals either hides ΔR1 entirely or clutters ADC with zeros.
    """
    if not np.isfinite(span) or span <= 0:
        return 2
    return int(np.clip(significant - math.floor(math.log10(span)), 0, 8))


def format_value(value: float, decimals: int) -> str:
    """A tick label: fixed-point with ``decimals``, "−0" folded to "0", infinities as ∞."""
    if not np.isfinite(value):
        return "∞" if value > 0 else ("−∞" if value < 0 else "–")
    text = f"{value:.{decimals}f}"
    if float(text) == 0.0:
        text = text.lstrip("-")
    return text.replace("-", "−")


def lut_image(colormap: str, horizontal: bool = True) -> QtGui.QImage:
    """The 256-entry LUT of a colormap as a 256×1 (or 1×256, high at the top) RGBA image."""
    lut = np.ascontiguousarray(colormap_lut(colormap))
    if horizontal:
        pixels = lut.reshape(1, 256, 4)
    else:
        pixels = np.ascontiguousarray(lut[::-1].reshape(256, 1, 4))
    height, width = pixels.shape[:2]
    image = QtGui.QImage(pixels.data, width, height, width * 4, QtGui.QImage.Format.Format_RGBA8888)
    return image.copy()  # own the pixels: the numpy buffer is temporary


def lut_pixmap(colormap: str, width: int, height: int) -> QtGui.QPixmap:
    """A horizontal swatch of a colormap with a thin grey frame (for lists and combos)."""
    pixmap = QtGui.QPixmap(width, height)
    pixmap.fill(QtCore.Qt.GlobalColor.transparent)
    painter = QtGui.QPainter(pixmap)
    painter.drawImage(QtCore.QRect(0, 0, width, height), lut_image(colormap, horizontal=True))
    painter.setPen(_FRAME_COLOR)
    painter.drawRect(0, 0, width - 1, height - 1)
    painter.end()
    return pixmap


class SceneLink:
    """Scene event subscriptions of one widget, held weakly.

    Why: :class:`~viewer.core.events.Events` keeps strong references to its callbacks, so a
    bound method would keep a closed widget alive and be called after Qt deleted the C++ side.
    Here each callback holds a :class:`weakref.WeakMethod`; it disconnects everything when the
    widget is gone, and the widget's ``destroyed`` signal disconnects too.
    """

    def __init__(self, events: Events, owner: QtCore.QObject) -> None:
        self._events = events
        self._connected: list[tuple[str, Callable[..., None]]] = []
        owner.destroyed.connect(self.disconnect)

    def connect(self, name: str, method: Callable[..., None]) -> None:
        """Call the bound ``method(**info)`` on every ``name`` event while its widget lives."""
        ref = weakref.WeakMethod(method)

        def callback(**info: Any) -> None:
            bound = ref()
            if bound is None or not isValid(bound.__self__):
                self.disconnect()
                return
            bound(**info)

        self._events.connect(name, callback)
        self._connected.append((name, callback))

    def disconnect(self, *_: Any) -> None:
        """Drop every subscription (idempotent)."""
        for name, callback in self._connected:
            self._events.disconnect(name, callback)
        self._connected.clear()


# -- one colour bar ------------------------------------------------------------------------------

class ColorBar(QtWidgets.QWidget):
    """One layer's colour bar, painted on black: LUT between levels, ticks, title with units.

    Args:
        orientation: ``Qt.Vertical`` (default; about 70 px wide, high values at the top) or
            ``Qt.Horizontal`` (a strip with labels underneath, low values on the left).
    """

    #: Pixel size of tick labels and of the title (legible, yet fits a 56 px column).
    FONT_PIXELS = 10
    #: Thickness of the colour strip, px.
    STRIP = 12
    #: Size of the triangular visible-range markers, px.
    MARKER = 5
    #: Preferred size across the bar, px: {vertical: width, horizontal: height}.
    THICKNESS = {True: 56, False: 50}

    def __init__(
        self,
        orientation: QtCore.Qt.Orientation = QtCore.Qt.Orientation.Vertical,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.orientation = orientation
        self.role: str | None = None
        self.units = ""
        self.title = ""
        self.props: DisplayProps | None = None
        self._image: QtGui.QImage | None = None
        font = QtGui.QFont(self.font())
        font.setPixelSize(self.FONT_PIXELS)
        self.setFont(font)
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        if self.is_vertical:
            self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Fixed, QtWidgets.QSizePolicy.Policy.Expanding)
        else:
            self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)

    @property
    def is_vertical(self) -> bool:
        return self.orientation == QtCore.Qt.Orientation.Vertical

    def set_orientation(self, orientation: QtCore.Qt.Orientation) -> None:
        """Draw along ``orientation`` from now on (a view moves its bars to where it has room)."""
        if orientation == self.orientation:
            return
        self.orientation = orientation
        if self.is_vertical:
            self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Fixed, QtWidgets.QSizePolicy.Policy.Expanding)
        else:
            self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        if self.props is not None:
            self._image = lut_image(self.props.colormap, horizontal=not self.is_vertical)
        self.updateGeometry()
        self.update()

    def set_layer(self, role: str, units: str, props: DisplayProps) -> None:
        """Show a layer: its role and units name the bar, ``props`` give LUT, levels and range."""
        if props.colormap != (self.props.colormap if self.props else None):
            self._image = lut_image(props.colormap, horizontal=not self.is_vertical)
        self.role, self.units, self.props = role, units, props
        self.title = layer_title(role, units)
        self.setToolTip(self.title)
        self.setAccessibleName(f"{self.title} colour bar")
        self.update()

    # -- what is drawn (also used by tests) ---------------------------------------------------------
    def title_lines(self) -> list[str]:
        """The title as drawn: quantity over "(units)" when vertical (narrow), one line otherwise."""
        if not self.role:
            return []
        if not self.is_vertical or not self.units:
            return [self.title]
        return [ROLE_QUANTITY.get(self.role, self.role), f"({self.units})"]

    def tick_values(self) -> list[float]:
        """Low, middle and high level, in the layer's units."""
        if self.props is None:
            return []
        low, high = (float(v) for v in self.props.levels)
        return [low, (low + high) / 2.0, high]

    def tick_texts(self) -> list[str]:
        values = self.tick_values()
        if not values:
            return []
        decimals = value_decimals(abs(values[-1] - values[0]), significant=2)
        while decimals > 0 and all(format_value(v, decimals).endswith("0") for v in values):
            decimals -= 1  # round levels need no trailing zeros: 0.015 not 0.0150
        return [format_value(v, decimals) for v in values]

    def marker_values(self) -> list[float]:
        """Bounds of the visible range that lie strictly inside the levels (get a marker)."""
        if self.props is None:
            return []
        low, high = sorted(float(v) for v in self.props.levels)
        return [float(v) for v in self.props.visible_range if np.isfinite(v) and low < v < high]

    # -- geometry --------------------------------------------------------------------------------------
    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(self.THICKNESS[True], 170) if self.is_vertical else QtCore.QSize(220, self.THICKNESS[False])

    def minimumSizeHint(self) -> QtCore.QSize:
        return self.minimum_size(self.orientation)

    @staticmethod
    def minimum_size(orientation: QtCore.Qt.Orientation) -> QtCore.QSize:
        """Smallest legible bar: two title lines, three ticks and a short strip (vertical)."""
        return QtCore.QSize(52, 76) if orientation == QtCore.Qt.Orientation.Vertical else QtCore.QSize(130, 46)

    def _fraction(self, value: float) -> float:
        """Position of a value between the levels, 0 (low) to 1 (high), unclipped."""
        assert self.props is not None
        low, high = (float(v) for v in self.props.levels)
        return (value - low) / (high - low) if high != low else 0.0

    # -- painting ----------------------------------------------------------------------------------------
    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        painter = QtGui.QPainter(self)
        try:
            painter.fillRect(self.rect(), QtCore.Qt.GlobalColor.black)
            if self.props is not None and self._image is not None:
                painter.setFont(self.font())
                if self.is_vertical:
                    self._paint_vertical(painter)
                else:
                    self._paint_horizontal(painter)
        finally:
            painter.end()

    def _paint_title(self, painter: QtGui.QPainter, top: int) -> int:
        """Draw the title lines from ``top``; return the y below them."""
        metrics = painter.fontMetrics()
        painter.setPen(_TEXT_COLOR)
        y = top
        for line in self.title_lines():
            text = metrics.elidedText(line, QtCore.Qt.TextElideMode.ElideRight, self.width() - 4)
            painter.drawText(QtCore.QRect(2, y, self.width() - 4, metrics.height()),
                             QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignVCenter, text)
            y += metrics.height()
        return y

    def _paint_strip(self, painter: QtGui.QPainter, strip: QtCore.QRect) -> None:
        """The LUT, a veil over values hidden by the visible range, and a frame."""
        assert self._image is not None and self.props is not None
        painter.drawImage(strip, self._image)
        low, high = (self._fraction(float(v)) for v in self.props.visible_range)
        for start, stop in ((-np.inf, low), (high, np.inf)):
            start, stop = max(start, 0.0), min(stop, 1.0)
            if stop > start:
                painter.fillRect(self._strip_part(strip, start, stop), _HIDDEN_VEIL)
        painter.setPen(_FRAME_COLOR)
        painter.setBrush(QtCore.Qt.BrushStyle.NoBrush)
        painter.drawRect(strip.adjusted(0, 0, -1, -1))

    def _strip_part(self, strip: QtCore.QRect, start: float, stop: float) -> QtCore.QRectF:
        """The part of the strip between two level fractions (0 = low end)."""
        if self.is_vertical:
            top = strip.bottom() + 1 - stop * strip.height()
            return QtCore.QRectF(strip.left(), top, strip.width(), (stop - start) * strip.height())
        return QtCore.QRectF(strip.left() + start * strip.width(), strip.top(), (stop - start) * strip.width(), strip.height())

    def _paint_vertical(self, painter: QtGui.QPainter) -> None:
        metrics = painter.fontMetrics()
        half = metrics.height() // 2
        top = self._paint_title(painter, 2) + half + 2
        bottom = self.height() - half - 2
        strip = QtCore.QRect(self.MARKER + 3, top, self.STRIP, max(bottom - top, 4))
        self._paint_strip(painter, strip)
        label_x = strip.right() + 5
        for value, text in zip(self.tick_values(), self.tick_texts()):
            y = round(strip.bottom() + 1 - self._fraction(value) * strip.height())
            painter.setPen(_FRAME_COLOR)
            painter.drawLine(strip.right() + 1, y, strip.right() + 3, y)
            painter.setPen(_TEXT_COLOR)
            painter.drawText(QtCore.QRect(label_x, y - half, self.width() - label_x, metrics.height()),
                             QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignVCenter,
                             metrics.elidedText(text, QtCore.Qt.TextElideMode.ElideRight, self.width() - label_x))
        for value in self.marker_values():
            y = strip.bottom() + 1 - self._fraction(value) * strip.height()
            self._paint_marker(painter, QtCore.QPointF(strip.left() - 1, y), QtCore.QPointF(strip.right(), y), pointing=(1, 0))

    def _paint_horizontal(self, painter: QtGui.QPainter) -> None:
        metrics = painter.fontMetrics()
        top = self._paint_title(painter, 1) + self.MARKER + 1
        strip = QtCore.QRect(4, top, self.width() - 8, self.STRIP - 2)
        self._paint_strip(painter, strip)
        label_y = strip.bottom() + 4
        alignments = (QtCore.Qt.AlignmentFlag.AlignLeft, QtCore.Qt.AlignmentFlag.AlignHCenter, QtCore.Qt.AlignmentFlag.AlignRight)
        for value, text, align in zip(self.tick_values(), self.tick_texts(), alignments):
            x = round(strip.left() + self._fraction(value) * strip.width())
            painter.setPen(_FRAME_COLOR)
            painter.drawLine(x, strip.bottom() + 1, x, strip.bottom() + 3)
            width = metrics.horizontalAdvance(text) + 2
            left = {alignments[0]: x - 1, alignments[1]: x - width // 2, alignments[2]: x - width + 1}[align]
            painter.setPen(_TEXT_COLOR)
            painter.drawText(QtCore.QRect(left, label_y, width, metrics.height()), align, text)
        for value in self.marker_values():
            x = strip.left() + self._fraction(value) * strip.width()
            self._paint_marker(painter, QtCore.QPointF(x, strip.top() - 1), QtCore.QPointF(x, strip.bottom()), pointing=(0, 1))

    def _paint_marker(self, painter: QtGui.QPainter, tip: QtCore.QPointF, end: QtCore.QPointF, pointing: tuple[int, int]) -> None:
        """A small triangle outside the strip pointing at a threshold, and a line across it."""
        size = float(self.MARKER)
        dx, dy = pointing
        back = QtCore.QPointF(tip.x() - dx * size, tip.y() - dy * size)
        side = QtCore.QPointF(dy * size * 0.8, dx * size * 0.8)
        triangle = QtGui.QPolygonF([tip, back + side, back - side])
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
        painter.setPen(QtCore.Qt.PenStyle.NoPen)
        painter.setBrush(_MARKER_COLOR)
        painter.drawPolygon(triangle)
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, False)
        painter.setPen(QtGui.QPen(_MARKER_COLOR, 1))
        painter.drawLine(tip, end)


# -- a stack of bars following a scene -------------------------------------------------------------

class ColorBarStack(QtWidgets.QWidget):
    """One :class:`ColorBar` per visible overlay of a scene, top-most layer first.

    Vertical bars are stacked top to bottom and wrap into further columns when the stack is
    too short for each to keep :meth:`ColorBar.minimumSizeHint` (the demo has seven overlays);
    horizontal bars sit side by side and wrap into rows.
    """

    def __init__(
        self,
        scene: Scene,
        orientation: QtCore.Qt.Orientation = QtCore.Qt.Orientation.Vertical,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._scene = scene
        self.orientation = orientation
        self._bars: dict[str, ColorBar] = {}
        self._order: list[str] = []
        self._layout_shape: tuple[int, int] = (0, 0)
        #: drawn over a view, which sizes it (no minimum of its own that would outgrow it)
        self.overlay = False
        self._grid = QtWidgets.QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(2)
        self._grid.setSizeConstraint(QtWidgets.QLayout.SizeConstraint.SetNoConstraint)
        self.setAutoFillBackground(True)
        palette = self.palette()
        palette.setColor(QtGui.QPalette.ColorRole.Window, QtCore.Qt.GlobalColor.black)
        self.setPalette(palette)
        self._link = SceneLink(scene.events, self)
        for name in ("display", "order", "timepoint"):
            self._link.connect(name, self._on_scene_changed)
        self.refresh()

    @property
    def bars(self) -> list[ColorBar]:
        """The bars shown, top-most layer first."""
        return [self._bars[role] for role in self._order]

    def roles(self) -> list[str]:
        return list(self._order)

    def set_orientation(self, orientation: QtCore.Qt.Orientation) -> None:
        """Vertical bars in a column, or horizontal bars in a row (wrapping as needed)."""
        if orientation == self.orientation:
            return
        self.orientation = orientation
        for bar in self._bars.values():
            bar.set_orientation(orientation)
        self._relayout()

    #: Longest a bar is drawn along its strip, px (a compact legend, not a ruler across the view).
    MAX_BAR_LENGTH = 240

    def preferred_length(self) -> int:
        """Length (px) the stack wants along its bars, in either orientation: each bar at
        most :data:`MAX_BAR_LENGTH`."""
        if not self._order:
            return 0
        return len(self._order) * (self.MAX_BAR_LENGTH + self._grid.spacing()) - self._grid.spacing()

    def thickness_for(self, length: int, orientation: QtCore.Qt.Orientation | None = None) -> int:
        """Pixels the stack needs across its bars when it has ``length`` pixels along them
        (a column's width for vertical bars, a band's height for horizontal ones), in
        ``orientation`` (default its own)."""
        if not self._order:
            return 0
        orientation = self.orientation if orientation is None else orientation
        vertical = orientation == QtCore.Qt.Orientation.Vertical
        bar = ColorBar.minimum_size(orientation)
        spacing = self._grid.spacing()
        along = bar.height() if vertical else bar.width()
        across = ColorBar.THICKNESS[vertical]
        per_line = max(1, (length + spacing) // (along + spacing))
        lines = math.ceil(len(self._order) / per_line)
        return lines * (across + spacing) - spacing

    def refresh(self) -> None:
        """Match the bars to the scene's visible overlays (reusing bars by role)."""
        layers = [
            layer for layer in reversed(self._scene.layers())
            if layer.volume.role not in NO_COLORBAR_ROLES and layer.display.visible
        ]
        roles = [layer.volume.role for layer in layers]
        for role in set(self._bars) - set(roles):
            bar = self._bars.pop(role)
            self._grid.removeWidget(bar)
            bar.deleteLater()
        for layer in layers:
            role = layer.volume.role
            if role not in self._bars:
                self._bars[role] = ColorBar(self.orientation, self)
            self._bars[role].set_layer(role, layer.volume.units, layer.display)
        if roles != self._order or any(self._grid.indexOf(bar) < 0 for bar in self._bars.values()):
            self._order = roles
            self._relayout()

    def _on_scene_changed(self, **_: Any) -> None:
        self.refresh()

    def _per_line(self) -> int:
        """How many bars fit along the stacking direction at the current size."""
        bar_min = ColorBar.minimum_size(self.orientation)
        if self.orientation == QtCore.Qt.Orientation.Vertical:
            return max(1, (self.height() + self._grid.spacing()) // (bar_min.height() + self._grid.spacing()))
        return max(1, (self.width() + self._grid.spacing()) // (bar_min.width() + self._grid.spacing()))

    def _relayout(self) -> None:
        """Place the bars in the grid: down the columns (vertical) or along the rows."""
        for bar in self._bars.values():
            self._grid.removeWidget(bar)
        per_line = self._per_line()
        vertical = self.orientation == QtCore.Qt.Orientation.Vertical
        for index, role in enumerate(self._order):
            line, position = divmod(index, per_line)
            row, column = (position, line) if vertical else (line, position)
            self._grid.addWidget(self._bars[role], row, column)
            self._bars[role].show()
        self._layout_shape = (per_line, len(self._order))
        self._set_minimum(per_line)
        self.updateGeometry()

    def _set_minimum(self, per_line: int) -> None:
        """Minimum size of the current grid, but only one bar long along the stacking direction.

        Why: the grid's own minimum (every bar of a column) would stop the view beside the
        stack from getting shorter, so the stack could never wrap into another column.
        """
        bar = ColorBar.minimum_size(self.orientation)
        lines = math.ceil(len(self._order) / per_line)
        spacing = self._grid.spacing()
        if not lines or self.overlay:  # placed by its view, which asked thickness_for first
            self.setMinimumSize(0, 0)
        elif self.orientation == QtCore.Qt.Orientation.Vertical:
            self.setMinimumSize(lines * (bar.width() + spacing), bar.height())
        else:
            self.setMinimumSize(bar.width(), lines * (bar.height() + spacing))

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._layout_shape != (self._per_line(), len(self._order)):
            self._relayout()
