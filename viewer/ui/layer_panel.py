"""Layers panel (PRODUCT.md §5): visibility, opacity, colormap, display range, visible range,
histogram and order of every layer of the current timepoint.

Layout follows FSLeyes: the list shows the top-most drawn layer first and the anatomy last.
Each row has a visibility checkbox, a colormap swatch and the layer's name with units
("PET (SUV)"); selecting a row shows a :class:`LayerEditor` for it.

The panel keeps no copy of display state: every control writes through
``scene.set_display(role, ...)``/``scene.move_layer(role, steps)`` and every control is
re-synchronised from the scene's ``display``/``order``/``timepoint`` events, with Qt signals
blocked while syncing so a sync never writes back. Levels are always explicit: the histogram
only *shows* the data, it never sets levels from it.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from viewer.core.display import COLORMAPS
from viewer.core.regions import LabelTable
from viewer.core.volume import Volume
from viewer.ui.colorbar import SceneLink, layer_title, lut_pixmap, value_decimals

if TYPE_CHECKING:
    from viewer.core.scene import Scene

#: Values counted at most for a histogram (a strided subsample of bigger volumes).
HISTOGRAM_MAX_SAMPLES = 2_000_000
#: Bins of a histogram (integer data get whole-number-wide bins, at most this many).
HISTOGRAM_BINS = 128
#: Size of the colormap swatch in list rows and in the colormap combo, px.
SWATCH_SIZE = QtCore.QSize(36, 12)

_ROLE = QtCore.Qt.ItemDataRole.UserRole
_LEVEL_PEN = pg.mkPen((90, 200, 255), width=2)
_LEVEL_HOVER_PEN = pg.mkPen((180, 235, 255), width=3)
_RANGE_PEN = pg.mkPen((255, 170, 40), width=2, style=QtCore.Qt.PenStyle.DashLine)
_RANGE_HOVER_PEN = pg.mkPen((255, 215, 120), width=3, style=QtCore.Qt.PenStyle.DashLine)


# -- histogram of a whole volume (numpy only) ----------------------------------------------------

@dataclass(frozen=True)
class VolumeHistogram:
    """Counts of a volume's finite values.

    Attributes:
        counts: values per bin (int64).
        edges: ``len(counts) + 1`` bin edges, in the volume's units.
        stride: every ``stride``-th voxel (in memory order) was counted; 1 = the whole volume.
    """

    counts: np.ndarray
    edges: np.ndarray
    stride: int

    @property
    def span(self) -> float:
        """Width of the histogram's value range, in the volume's units."""
        return float(self.edges[-1] - self.edges[0])


def volume_histogram(volume: Volume, bins: int = HISTOGRAM_BINS, max_samples: int = HISTOGRAM_MAX_SAMPLES) -> VolumeHistogram:
    """Histogram of the finite values of the *whole* volume (not of a slice).

    Volumes above ``max_samples`` voxels are subsampled with a fixed stride in memory order
    (deterministic, and a memory-mapped file is read sequentially). Float data get ``bins``
    equal bins between the finite minimum and maximum (as ``np.histogram(values, bins)``);
    integer data get whole-number-wide bins centred on integers, so no bin holds one more
    integer than its neighbour (a comb).
    """
    flat = np.asarray(volume.data).ravel(order="K")
    stride = max(1, math.ceil(flat.size / max_samples))
    sample = np.asarray(flat[::stride])
    if np.issubdtype(sample.dtype, np.floating):
        sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return VolumeHistogram(np.zeros(bins, dtype=np.int64), np.linspace(0.0, 1.0, bins + 1), stride)
    if np.issubdtype(sample.dtype, np.integer) or sample.dtype == bool:
        low, high = int(sample.min()), int(sample.max())
        width = max(1, math.ceil((high - low + 1) / bins))
        edges = np.arange(low - 0.5, high + 0.5 + width, width, dtype=np.float64)
        counts, edges = np.histogram(sample, bins=edges)
    else:
        counts, edges = np.histogram(sample, bins=bins)
    return VolumeHistogram(counts.astype(np.int64), edges.astype(np.float64), stride)


def _finite_or(value: float, fallback: float) -> float:
    return float(value) if np.isfinite(value) else float(fallback)


def layer_name(role: str, units: str) -> str:
    """A layer's name in the list and the editor: "PET (SUV)", but plain "regions"."""
    return "regions" if role == "regions" else layer_title(role, units)


# -- histogram plot with level and visible-range lines --------------------------------------------

class HistogramView(pg.PlotWidget):
    """Log-count histogram with draggable lines at the levels and visible-range bounds.

    ``line_moved(which, value)`` is emitted while a line is dragged, with ``which`` one of
    ``"level_low"``, ``"level_high"``, ``"visible_low"``, ``"visible_high"`` and ``value`` in
    the layer's units. :meth:`set_marks` moves the lines without emitting it.
    """

    line_moved = QtCore.Signal(str, float)

    #: log₁₀ count drawn for empty bins: just below one count, so single voxels still show.
    EMPTY_LOG = -0.4

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMenuEnabled(False)
        self.hideButtons()
        # Wheel zooms and drag pans along values only (a reference tube can stretch the axis
        # far beyond the levels); the counts axis stays fixed.
        self.setMouseEnabled(x=True, y=False)
        self.setFixedHeight(130)
        item = self.getPlotItem()
        item.getAxis("left").setLogMode(False, True)  # data are plotted as log₁₀(count)
        item.getAxis("left").setWidth(34)
        item.getAxis("left").setLabel("count")
        for axis in ("left", "bottom"):
            item.getAxis(axis).setStyle(tickFont=self._small_font(), tickTextOffset=2)
        self.curve = pg.PlotDataItem(
            [0.0, 1.0], [self.EMPTY_LOG], stepMode="center", fillLevel=self.EMPTY_LOG,
            pen=pg.mkPen((200, 200, 200), width=1), brush=pg.mkBrush(150, 150, 150, 120),
        )
        self.addItem(self.curve)
        self.lines: dict[str, pg.InfiniteLine] = {}
        for which, pen, hover, tooltip in (
            ("visible_low", _RANGE_PEN, _RANGE_HOVER_PEN, "Hide below: drag to change the threshold"),
            ("visible_high", _RANGE_PEN, _RANGE_HOVER_PEN, "Hide above: drag to change the cut"),
            ("level_low", _LEVEL_PEN, _LEVEL_HOVER_PEN, "Range min: drag to change the display range"),
            ("level_high", _LEVEL_PEN, _LEVEL_HOVER_PEN, "Range max: drag to change the display range"),
        ):
            line = pg.InfiniteLine(angle=90, movable=True, pen=pen, hoverPen=hover)
            line.setToolTip(tooltip)
            line.sigPositionChanged.connect(lambda line, which=which: self.line_moved.emit(which, float(line.value())))
            self.addItem(line)
            self.lines[which] = line
        self.histogram: VolumeHistogram | None = None

    def _small_font(self) -> QtGui.QFont:
        font = QtGui.QFont(self.font())
        font.setPixelSize(9)
        return font

    def set_histogram(self, histogram: VolumeHistogram, levels: tuple[float, float]) -> None:
        """Show new counts; the x range covers the data and the current levels."""
        self.histogram = histogram
        counts = histogram.counts
        with np.errstate(divide="ignore"):
            log_counts = np.where(counts > 0, np.log10(np.maximum(counts, 1)), self.EMPTY_LOG)
        self.curve.setData(histogram.edges, log_counts)
        finite_levels = [float(v) for v in levels if np.isfinite(v)]
        low = min([float(histogram.edges[0]), *finite_levels])
        high = max([float(histogram.edges[-1]), *finite_levels])
        high = high if high > low else low + 1.0
        margin = 0.03 * (high - low)
        self.getPlotItem().getViewBox().setLimits(xMin=low - margin, xMax=high + margin)
        self.setXRange(low, high, padding=0.03)
        self.setYRange(self.EMPTY_LOG, max(1.0, float(log_counts.max())) * 1.05, padding=0.0)

    def set_marks(self, levels: tuple[float, float], visible_range: tuple[float, float]) -> None:
        """Move the lines to the scene's values (hidden when a bound is infinite)."""
        values = {
            "level_low": levels[0], "level_high": levels[1],
            "visible_low": visible_range[0], "visible_high": visible_range[1],
        }
        for which, value in values.items():
            line = self.lines[which]
            line.blockSignals(True)
            try:
                line.setVisible(bool(np.isfinite(value)))
                if np.isfinite(value):
                    line.setValue(float(value))
            finally:
                line.blockSignals(False)


# -- editor of one layer ------------------------------------------------------------------------

def _spin_box(tooltip: str) -> QtWidgets.QDoubleSpinBox:
    """A spin box that commits on Enter/focus-out (not on every keystroke)."""
    spin = QtWidgets.QDoubleSpinBox()
    spin.setKeyboardTracking(False)
    spin.setToolTip(tooltip)
    spin.setAccelerated(True)
    spin.setMinimumWidth(84)
    return spin


class LayerEditor(QtWidgets.QGroupBox):
    """Controls of the selected layer; reads and writes the scene, stores nothing of its own.

    Region layers keep their "labels" colormap and show only opacity; every other layer has
    colormap, display range (``levels``), visible range (values below "hide below" and above
    "hide above" are transparent) and a whole-volume histogram.
    """

    def __init__(self, scene: Scene, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._scene = scene
        self.role: str | None = None
        self._histograms: weakref.WeakKeyDictionary[Volume, VolumeHistogram] = weakref.WeakKeyDictionary()
        self._build()
        self._connect()
        self.show_role(None)

    # -- construction -------------------------------------------------------------------------------
    def _build(self) -> None:
        self.opacity_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setToolTip("Opacity of the layer over the ones below it")
        self.opacity_label = QtWidgets.QLabel("100 %")
        self.opacity_label.setMinimumWidth(self.opacity_label.fontMetrics().horizontalAdvance("100 %") + 4)
        self.opacity_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
        self.colormap_combo = QtWidgets.QComboBox()
        self.colormap_combo.setIconSize(SWATCH_SIZE)
        self.level_min = _spin_box("Value shown with the first colour of the colormap")
        self.level_max = _spin_box("Value shown with the last colour of the colormap")
        self.hide_below_check = QtWidgets.QCheckBox("Hide below")
        self.hide_below_check.setToolTip("Values below this threshold are transparent")
        self.hide_below = _spin_box("Values below this threshold are transparent")
        self.hide_above_check = QtWidgets.QCheckBox("Hide above")
        self.hide_above_check.setToolTip("Values above this cut are transparent (e.g. ADC: only the core shows)")
        self.hide_above = _spin_box("Values above this cut are transparent")
        self.histogram = HistogramView()

        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(6, 6, 6, 6)
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(4)
        grid.addWidget(QtWidgets.QLabel("Opacity"), 0, 0)
        opacity_row = QtWidgets.QHBoxLayout()
        opacity_row.addWidget(self.opacity_slider, 1)
        opacity_row.addWidget(self.opacity_label)
        grid.addLayout(opacity_row, 0, 1, 1, 2)
        self._colormap_label = QtWidgets.QLabel("Colormap")
        grid.addWidget(self._colormap_label, 1, 0)
        grid.addWidget(self.colormap_combo, 1, 1, 1, 2)
        self._range_label = QtWidgets.QLabel("Range")
        self._range_label.setToolTip("Display range (levels): min and max of the colormap")
        grid.addWidget(self._range_label, 2, 0)
        grid.addWidget(self.level_min, 2, 1)
        grid.addWidget(self.level_max, 2, 2)
        grid.addWidget(self.hide_below_check, 3, 0)
        grid.addWidget(self.hide_below, 3, 1)
        grid.addWidget(self.hide_above_check, 4, 0)
        grid.addWidget(self.hide_above, 4, 1)
        grid.addWidget(self.histogram, 5, 0, 1, 3)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(2, 1)
        self._continuous_widgets = (
            self._range_label, self.level_min, self.level_max, self.hide_below_check, self.hide_below,
            self.hide_above_check, self.hide_above, self.histogram,
        )

    def _connect(self) -> None:
        self.opacity_slider.valueChanged.connect(self._on_opacity)
        self.colormap_combo.currentIndexChanged.connect(self._on_colormap)
        self.level_min.valueChanged.connect(lambda value: self._on_level(0, value))
        self.level_max.valueChanged.connect(lambda value: self._on_level(1, value))
        self.hide_below_check.toggled.connect(lambda _: self._on_visible_bound(0))
        self.hide_above_check.toggled.connect(lambda _: self._on_visible_bound(1))
        self.hide_below.valueChanged.connect(lambda _: self._on_visible_bound(0))
        self.hide_above.valueChanged.connect(lambda _: self._on_visible_bound(1))
        self.histogram.line_moved.connect(self._on_line_moved)

    def _controls(self) -> tuple[QtCore.QObject, ...]:
        return (
            self.opacity_slider, self.colormap_combo, self.level_min, self.level_max,
            self.hide_below_check, self.hide_below, self.hide_above_check, self.hide_above, self.histogram,
        )

    # -- showing a layer ----------------------------------------------------------------------------
    @property
    def volume(self) -> Volume | None:
        """The selected layer's volume at the current timepoint."""
        return self._scene.volumes.get(self.role) if self.role else None

    def histogram_of(self, volume: Volume) -> VolumeHistogram:
        """The whole-volume histogram, computed once per volume object."""
        if volume not in self._histograms:
            self._histograms[volume] = volume_histogram(volume)
        return self._histograms[volume]

    def show_role(self, role: str | None) -> None:
        """Edit another layer (or none); rebuilds the parts that depend on its volume."""
        self.role = role if role in self._scene.display and role in self._scene.volumes else None
        volume = self.volume
        self.setEnabled(volume is not None)
        self.setTitle(layer_name(volume.role, volume.units) if volume is not None else "No layer selected")
        is_regions = volume is not None and volume.role == "regions"
        for widget in self._continuous_widgets:
            widget.setVisible(not is_regions)
        with self._signals_blocked():
            self._fill_colormaps(["labels"] if is_regions else [name for name in COLORMAPS if name != "labels"])
            self.colormap_combo.setEnabled(not is_regions)
            if volume is not None and not is_regions:
                self._configure_spins(volume, self.histogram_of(volume))
                self.histogram.set_histogram(self.histogram_of(volume), self._scene.display[volume.role].levels)
        self.sync()

    def _fill_colormaps(self, names: list[str]) -> None:
        if [self.colormap_combo.itemData(i) for i in range(self.colormap_combo.count())] == names:
            return
        self.colormap_combo.clear()
        for name in names:
            self.colormap_combo.addItem(QtGui.QIcon(lut_pixmap(name, SWATCH_SIZE.width(), SWATCH_SIZE.height())), name, name)

    def _configure_spins(self, volume: Volume, histogram: VolumeHistogram) -> None:
        """Decimals and step for the volume's values, range well beyond its data.

        Decimals show ~3 digits of the finer of the data's span and the current levels' span
        (ΔR1 ~0.003 1/s needs 6, ADC none; a ¹⁹F threshold of 0.18 a.u. must not read "0" just
        because the reference tube reaches 1000). Integer images show whole numbers.
        """
        span = histogram.span
        levels = self._scene.display[volume.role].levels
        level_span = abs(float(levels[1]) - float(levels[0]))
        decimals = max(value_decimals(span), value_decimals(level_span) if level_span > 0 else 0)
        if np.issubdtype(volume.dtype, np.integer):
            decimals = value_decimals(level_span or span, significant=2)
        finest = min(s for s in (span, level_span) if s > 0) if max(span, level_span) > 0 else 1.0
        step = max(10.0 ** math.floor(math.log10(finest) - 2), 10.0 ** -decimals)
        low, high = float(histogram.edges[0]) - 10 * span, float(histogram.edges[-1]) + 10 * span
        for spin in (self.level_min, self.level_max, self.hide_below, self.hide_above):
            spin.setDecimals(decimals)
            spin.setSingleStep(step)
            spin.setRange(low, high)

    # -- scene → controls ---------------------------------------------------------------------------
    @QtCore.Slot()
    def sync(self) -> None:
        """Show the scene's display of the selected layer (signals blocked: no write-back)."""
        if self.role is None:
            return
        props = self._scene.display[self.role]
        with self._signals_blocked():
            self.opacity_slider.setValue(round(props.opacity * 100))
            self.opacity_label.setText(f"{round(props.opacity * 100)} %")
            index = self.colormap_combo.findData(props.colormap)
            if index < 0:  # a colormap this kind of layer does not offer: show it anyway
                self.colormap_combo.addItem(props.colormap, props.colormap)
                index = self.colormap_combo.count() - 1
            self.colormap_combo.setCurrentIndex(index)
            if self.role == "regions":
                return
            low, high = (float(v) for v in props.levels)
            self._set_spin(self.level_min, low)
            self._set_spin(self.level_max, high)
            for check, spin, bound, fallback in (
                (self.hide_below_check, self.hide_below, props.visible_range[0], low),
                (self.hide_above_check, self.hide_above, props.visible_range[1], high),
            ):
                check.setChecked(bool(np.isfinite(bound)))
                spin.setEnabled(bool(np.isfinite(bound)))
                self._set_spin(spin, _finite_or(bound, fallback))
            self.histogram.set_marks(props.levels, props.visible_range)

    @staticmethod
    def _set_spin(spin: QtWidgets.QDoubleSpinBox, value: float) -> None:
        """Show a value, widening the spin box's range if the scene went beyond it."""
        if value < spin.minimum():
            spin.setMinimum(value)
        if value > spin.maximum():
            spin.setMaximum(value)
        spin.setValue(value)

    def _signals_blocked(self) -> _Blocked:
        return _Blocked(self._controls())

    # -- controls → scene ---------------------------------------------------------------------------
    def _set(self, **changes: Any) -> None:
        if self.role is not None:
            self._scene.set_display(self.role, **changes)

    def _on_opacity(self, value: int) -> None:
        self.opacity_label.setText(f"{value} %")
        self._set(opacity=value / 100.0)

    def _on_colormap(self, index: int) -> None:
        name = self.colormap_combo.itemData(index)
        if name:
            self._set(colormap=name)

    def _on_level(self, end: int, value: float) -> None:
        """Change one end of the levels; the other keeps the scene's exact value."""
        if self.role is None:
            return
        levels = list(self._scene.display[self.role].levels)
        levels[end] = float(value)
        if levels[0] >= levels[1]:
            self.sync()  # an empty range is refused: show the scene's levels again
            return
        self._set(levels=(levels[0], levels[1]))

    def _on_visible_bound(self, end: int) -> None:
        """Apply the "hide below"/"hide above" check box and value to the visible range."""
        if self.role is None:
            return
        check, spin = ((self.hide_below_check, self.hide_below), (self.hide_above_check, self.hide_above))[end]
        spin.setEnabled(check.isChecked())
        visible = list(self._scene.display[self.role].visible_range)
        visible[end] = float(spin.value()) if check.isChecked() else (-np.inf, np.inf)[end]
        self._set(visible_range=(visible[0], visible[1]))

    def _on_line_moved(self, which: str, value: float) -> None:
        """A dragged histogram line sets its end of the levels or of the visible range."""
        if self.role is None:
            return
        props = self._scene.display[self.role]
        if which.startswith("level"):
            levels = list(props.levels)
            levels[which == "level_high"] = value
            if levels[0] != levels[1]:
                self._set(levels=(min(levels), max(levels)))
        else:
            visible = list(props.visible_range)
            visible[which == "visible_high"] = value
            self._set(visible_range=(visible[0], visible[1]))


class _Blocked:
    """Context manager blocking the Qt signals of some objects (restores their previous state)."""

    def __init__(self, objects: tuple[QtCore.QObject, ...]) -> None:
        self._objects = objects
        self._previous: list[bool] = []

    def __enter__(self) -> None:
        self._previous = [obj.blockSignals(True) for obj in self._objects]

    def __exit__(self, *exc: object) -> None:
        for obj, previous in zip(self._objects, self._previous):
            obj.blockSignals(previous)


# -- the panel ----------------------------------------------------------------------------------

def _regions_pixmap(table: LabelTable, size: QtCore.QSize) -> QtGui.QPixmap:
    """A swatch of the label table's colours (the "labels" colormap is a legend, not a ramp)."""
    pixmap = QtGui.QPixmap(size)
    pixmap.fill(QtGui.QColor(40, 40, 40))
    labels = sorted(table.names) or [1]
    painter = QtGui.QPainter(pixmap)
    width = size.width() / len(labels)
    for index, label in enumerate(labels):
        painter.fillRect(QtCore.QRectF(index * width, 0, width + 1, size.height()),
                         QtGui.QColor(*table.color(label)))
    painter.setPen(QtGui.QColor(150, 150, 150))
    painter.drawRect(0, 0, size.width() - 1, size.height() - 1)
    painter.end()
    return pixmap


class LayerPanel(QtWidgets.QWidget):
    """Every layer of the current timepoint, top-most first (anatomy last), and its editor."""

    def __init__(self, scene: Scene, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._scene = scene
        self.layer_list = QtWidgets.QListWidget()
        self.layer_list.setIconSize(SWATCH_SIZE)
        self.layer_list.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.layer_list.setVerticalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.up_button = self._tool_button("▲", "Draw the selected layer above the one listed above it")
        self.down_button = self._tool_button("▼", "Draw the selected layer below the one listed below it")
        self.editor = LayerEditor(scene, self)

        buttons = QtWidgets.QVBoxLayout()
        buttons.addWidget(self.up_button)
        buttons.addWidget(self.down_button)
        buttons.addStretch(1)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.layer_list, 1)
        top.addLayout(buttons)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.editor)
        layout.addStretch(1)

        self.layer_list.currentItemChanged.connect(self._on_current_changed)
        self.layer_list.itemChanged.connect(self._on_item_changed)
        self.up_button.clicked.connect(lambda: self._move(+1))
        self.down_button.clicked.connect(lambda: self._move(-1))
        self._link = SceneLink(scene.events, self)
        self._link.connect("display", self._on_display)
        self._link.connect("order", self._on_order)
        self._link.connect("timepoint", self._on_timepoint)
        self._link.connect("regions", self._on_regions)
        self.rebuild()

    @staticmethod
    def _tool_button(text: str, tooltip: str) -> QtWidgets.QToolButton:
        button = QtWidgets.QToolButton()
        button.setText(text)
        button.setToolTip(tooltip)
        button.setAutoRaise(False)
        button.setFixedSize(26, 24)
        return button

    # -- queries ------------------------------------------------------------------------------------
    def listed_roles(self) -> list[str]:
        """Roles in list order: top-most drawn layer first, anatomy last."""
        return [self.layer_list.item(row).data(_ROLE) for row in range(self.layer_list.count())]

    def selected_role(self) -> str | None:
        item = self.layer_list.currentItem()
        return item.data(_ROLE) if item is not None else None

    def select_role(self, role: str) -> None:
        """Select a layer's row (its editor is shown)."""
        row = self._row_of(role)
        if row is not None:
            self.layer_list.setCurrentRow(row)

    def item_of(self, role: str) -> QtWidgets.QListWidgetItem | None:
        row = self._row_of(role)
        return self.layer_list.item(row) if row is not None else None

    def _row_of(self, role: str) -> int | None:
        roles = self.listed_roles()
        return roles.index(role) if role in roles else None

    # -- building the list --------------------------------------------------------------------------
    def rebuild(self) -> None:
        """List the current timepoint's layers again, keeping the selected role if it still exists."""
        selected = self.selected_role()
        layers = list(reversed(self._scene.layers()))
        self.layer_list.blockSignals(True)
        try:
            self.layer_list.clear()
            for layer in layers:
                item = QtWidgets.QListWidgetItem()
                item.setData(_ROLE, layer.volume.role)
                item.setFlags(QtCore.Qt.ItemFlag.ItemIsEnabled | QtCore.Qt.ItemFlag.ItemIsSelectable
                              | QtCore.Qt.ItemFlag.ItemIsUserCheckable)
                self.layer_list.addItem(item)
                self._update_item(item)
            roles = self.listed_roles()
            if roles:
                self.layer_list.setCurrentRow(roles.index(selected) if selected in roles else 0)
        finally:
            self.layer_list.blockSignals(False)
        self._fit_list_height()
        self.editor.show_role(self.selected_role())
        self._update_buttons()

    def _update_item(self, item: QtWidgets.QListWidgetItem) -> None:
        """Name, swatch and check box of a row from the scene."""
        role = item.data(_ROLE)
        volume = self._scene.volumes[role]
        props = self._scene.display[role]
        item.setText(layer_name(role, volume.units))
        if role == "regions":
            item.setIcon(QtGui.QIcon(_regions_pixmap(self._scene.label_table(), SWATCH_SIZE)))
        else:
            item.setIcon(QtGui.QIcon(lut_pixmap(props.colormap, SWATCH_SIZE.width(), SWATCH_SIZE.height())))
        item.setCheckState(QtCore.Qt.CheckState.Checked if props.visible else QtCore.Qt.CheckState.Unchecked)
        item.setToolTip(f"{volume.name or role} — {props.colormap}, {round(props.opacity * 100)} % opaque")

    def _fit_list_height(self) -> None:
        """Show every row without scrolling (a timepoint has at most nine layers)."""
        rows = max(self.layer_list.count(), 1)
        row_height = self.layer_list.sizeHintForRow(0) if self.layer_list.count() else 20
        self.layer_list.setFixedHeight(rows * row_height + 2 * self.layer_list.frameWidth() + 2)

    def _update_buttons(self) -> None:
        """Anatomy never moves; the top row cannot go up, the row above the anatomy not down."""
        roles = self.listed_roles()
        role = self.selected_role()
        movable = [r for r in roles if r != "anatomical"]
        index = movable.index(role) if role in movable else None
        self.up_button.setEnabled(index is not None and index > 0)
        self.down_button.setEnabled(index is not None and index < len(movable) - 1)

    # -- user actions -------------------------------------------------------------------------------
    def _on_current_changed(self, current: QtWidgets.QListWidgetItem | None, _previous: Any) -> None:
        self.editor.show_role(current.data(_ROLE) if current is not None else None)
        self._update_buttons()

    def _on_item_changed(self, item: QtWidgets.QListWidgetItem) -> None:
        visible = item.checkState() == QtCore.Qt.CheckState.Checked
        self._scene.set_display(item.data(_ROLE), visible=visible)

    def _move(self, direction: int) -> None:
        """Swap the selected layer with its listed neighbour (+1 = up, i.e. drawn later).

        Steps are counted in ``scene.order``, which may hold roles this timepoint lacks, so a
        click always passes exactly one *listed* layer.
        """
        role = self.selected_role()
        movable = [r for r in self.listed_roles() if r != "anatomical"]
        if role not in movable:
            return
        neighbour_index = movable.index(role) - direction  # the list is top-most first
        if not 0 <= neighbour_index < len(movable):
            return
        order = [r for r in self._scene.order if r != "anatomical"]
        steps = order.index(movable[neighbour_index]) - order.index(role)
        self._scene.move_layer(role, steps)

    # -- scene events -------------------------------------------------------------------------------
    def _on_display(self, role: str | None = None, **_: Any) -> None:
        roles = [role] if role is not None else self.listed_roles()
        self.layer_list.blockSignals(True)
        try:
            for each in roles:
                item = self.item_of(each)
                if item is not None:
                    self._update_item(item)
        finally:
            self.layer_list.blockSignals(False)
        if role is None or role == self.editor.role:
            self.editor.sync()

    def _on_order(self, **_: Any) -> None:
        self.rebuild()

    def _on_regions(self, timepoint: str | None = None, labels: Any = None, box: Any = None, **_: Any) -> None:
        """The label table changed (a region added, renamed, recoloured): a new swatch. A
        voxel edit (a box) leaves the swatch as it was, so strokes cost nothing here."""
        if box is None and (timepoint is None or timepoint == self._scene.timepoint.label) and "regions" in self._scene.volumes:
            self._on_display("regions")

    def _on_timepoint(self, **_: Any) -> None:
        self.rebuild()

