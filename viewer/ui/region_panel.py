"""The side panel's per-region part (PRODUCT.md §5): timepoint selector, region table with
rejection alerts, timepoint summary and notes, and a time course of live/dead cells.

The panel never computes statistics itself: the scene's results
(:class:`viewer.core.results.StudyResults`) measure in workers, and the panel shows what their
``stats`` events announce (:meth:`RegionPanel.show_stats` / :meth:`RegionPanel.show_time_course`). Column
titles, units, tooltips and cell text all come from :data:`REGION_MEASURES` (Slicer's
SegmentStatistics habit), so the table, the CSV and the PDF report cannot disagree.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg
import shiboken6
from PySide6 import QtCore, QtGui, QtWidgets

from viewer.core.quant.measures import (
    REGION_MEASURES,
    Measure,
    plain_value,
    region_measure,
    timepoint_measure,
)
from viewer.core.quant.stats import (
    RegionStats,
    StudyStats,
    TimepointStats,
    course_positions,
    course_values,
    region_label_of,
    time_course,
)
from viewer.core.regions import LabelTable
from viewer.core.scene import Scene

Qt = QtCore.Qt

#: Measures the table leaves out: the label is an id (the name says it), predictions have
#: their own panel.
HIDDEN_KEYS = ("label", "prediction")

#: The table's columns, in schema order.
TABLE_MEASURES: tuple[Measure, ...] = tuple(m for m in REGION_MEASURES if m.key not in HIDDEN_KEYS)

#: The invalid index Qt uses for "the table itself" (a shared default argument).
_ROOT = QtCore.QModelIndex()

#: Item-data role holding the raw value (float, int, str or None) used for numeric sorting.
SORT_ROLE = int(Qt.ItemDataRole.UserRole) + 1

ALERT_SIGN = "⚠"
ALERT_BACKGROUND = QtGui.QColor(255, 214, 214)
ALERT_TEXT = QtGui.QColor(40, 0, 0)
ALERT_EMPHASIS = QtGui.QColor(185, 0, 0)
PLOT_BACKGROUND = "#1e1e1e"
PLOT_FOREGROUND = "#d0d0d0"
CURRENT_LINE_COLOR = (235, 235, 235, 150)


def sort_key(value: Any) -> Any:
    """What a cell sorts by: numbers as numbers (bools as 0/1), text case-insensitively."""
    value = plain_value(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        return value.casefold()
    return value


def timepoint_title(label: str, day: float | None) -> str:
    """Selector text: the label plus the day, unless the label already says it ("day 7")."""
    if day is None:
        return label
    day_text = f"day {day:g}"
    return label if label.strip().casefold() == day_text else f"{label} ({day_text})"


# -- table model ---------------------------------------------------------------------------------

class RegionTableModel(QtCore.QAbstractTableModel):
    """One row per region of one timepoint; columns are :data:`TABLE_MEASURES`."""

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._stats: TimepointStats | None = None
        self._threshold: float | None = None

    # -- data in --------------------------------------------------------------------------------
    def set_stats(self, stats: TimepointStats | None, alert_threshold: float | None = None) -> None:
        """Replace every row (a model reset: the proxy re-sorts, the view keeps its header)."""
        self.beginResetModel()
        self._stats = stats
        self._threshold = alert_threshold
        self.endResetModel()

    @property
    def stats(self) -> TimepointStats | None:
        return self._stats

    def region_at(self, row: int) -> RegionStats:
        assert self._stats is not None
        return self._stats.regions[row]

    def row_of(self, name: str) -> int | None:
        """Source row of a region by name (names, not labels, identify a region over time)."""
        regions = self._stats.regions if self._stats else []
        return next((row for row, region in enumerate(regions) if region.name == name), None)

    @staticmethod
    def column_of(key: str) -> int:
        return next(i for i, m in enumerate(TABLE_MEASURES) if m.key == key)

    # -- Qt model interface ---------------------------------------------------------------------
    def rowCount(self, parent: QtCore.QModelIndex = _ROOT) -> int:
        return 0 if parent.isValid() or self._stats is None else len(self._stats.regions)

    def columnCount(self, parent: QtCore.QModelIndex = _ROOT) -> int:
        return 0 if parent.isValid() else len(TABLE_MEASURES)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(TABLE_MEASURES):
            return None
        measure = TABLE_MEASURES[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return measure.title
        if role == Qt.ItemDataRole.ToolTipRole:
            return measure.description
        return None

    def data(self, index: QtCore.QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or self._stats is None:
            return None
        region = self._stats.regions[index.row()]
        measure = TABLE_MEASURES[index.column()]
        value = plain_value(region.values.get(measure.key))
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(measure, value, region)
        if role == SORT_ROLE:
            return sort_key(value)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            horizontal = Qt.AlignmentFlag.AlignLeft if measure.kind == "text" else Qt.AlignmentFlag.AlignRight
            return int(horizontal | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(measure, region)
        return self._alert_style(role, measure, region)

    def _text(self, measure: Measure, value: Any, region: RegionStats) -> str:
        """Cell text; the alert column carries the warning sign so it reads without colour."""
        text = measure.format(value)
        if measure.key == "rejection_alert" and self._alerting(region):
            return f"{ALERT_SIGN} {text}"
        return text

    def _tooltip(self, measure: Measure, region: RegionStats) -> str:
        """What the number is, plus the region's own notes (why a value is missing)."""
        lines = [f"{measure.title}: {measure.description}"]
        if measure.key == "dead_fraction" and self._threshold is not None:
            lines.append(f"Rejection alert at ≥ {self._threshold:.2f}.")
        lines.extend(region.details.get("notes", []))
        return "\n".join(lines)

    def _alert_style(self, role: int, measure: Measure, region: RegionStats) -> Any:
        """Red-tinted row, dark text, and a bold red dead fraction and alert for alerting regions."""
        if not self._alerting(region):
            return None
        emphasised = measure.key in ("dead_fraction", "rejection_alert")
        if role == Qt.ItemDataRole.BackgroundRole:
            return QtGui.QBrush(ALERT_BACKGROUND)
        if role == Qt.ItemDataRole.ForegroundRole:
            return QtGui.QBrush(ALERT_EMPHASIS if emphasised else ALERT_TEXT)
        if role == Qt.ItemDataRole.DecorationRole and measure.key == "name":
            # The alert column is far right in a narrow panel; the name column is always seen.
            return QtWidgets.QApplication.style().standardIcon(QtWidgets.QStyle.StandardPixmap.SP_MessageBoxWarning)
        if role == Qt.ItemDataRole.FontRole and emphasised:
            font = QtGui.QFont()
            font.setBold(True)
            return font
        return None

    @staticmethod
    def _alerting(region: RegionStats) -> bool:
        return plain_value(region.values.get("rejection_alert")) is True


class NumericSortProxy(QtCore.QSortFilterProxyModel):
    """Sorts by :data:`SORT_ROLE` (raw numbers, not text); missing values last in both orders.

    Text sorting would put "9" after "10,000" and "—" before everything; and a missing value
    at the top of a descending sort would hide the regions that have numbers.
    """

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def lessThan(self, left: QtCore.QModelIndex, right: QtCore.QModelIndex) -> bool:
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        if a is None or b is None:
            if (a is None) == (b is None):
                return left.row() < right.row()
            # "a < b" puts a first in ascending order and last in descending order.
            missing_is_less = self.sortOrder() == Qt.SortOrder.DescendingOrder
            return missing_is_less if a is None else not missing_is_less
        if type(a) is str or type(b) is str:
            return str(a) < str(b)
        return a < b


class RegionTableView(QtWidgets.QTableView):
    """A table whose preferred height fits its rows (a few regions should not leave a void)."""

    MIN_ROWS = 3
    MAX_ROWS = 12

    def sizeHint(self) -> QtCore.QSize:
        hint = super().sizeHint()
        model = self.model()
        rows = min(max(model.rowCount() if model else 0, self.MIN_ROWS), self.MAX_ROWS)
        height = (self.horizontalHeader().sizeHint().height() + rows * self.verticalHeader().defaultSectionSize()
                  + self.horizontalScrollBar().sizeHint().height() + 2 * self.frameWidth())
        return QtCore.QSize(hint.width(), height)


# -- time course -------------------------------------------------------------------------------

class TimeCoursePlot(pg.PlotWidget):
    """Live (solid, symbols) and dead (dashed) cells per region across timepoints.

    Attributes:
        curves: region name → (live curve, dead curve), for the report and for tests.
        current_line: the vertical line at the shown timepoint.
    """

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent, background=PLOT_BACKGROUND)
        self.curves: dict[str, tuple[pg.PlotDataItem, pg.PlotDataItem]] = {}
        self._drawn_colors: dict[str, tuple[int, int, int]] = {}
        self._x_by_label: dict[str, float] = {}
        item = self.getPlotItem()
        item.setMenuEnabled(False)
        item.showGrid(x=True, y=True, alpha=0.2)
        item.setTitle("Live and dead cells per region", color=PLOT_FOREGROUND, size="10pt")
        for side in ("left", "bottom"):
            axis = item.getAxis(side)
            axis.enableAutoSIPrefix(False)  # "kcells" would be a made-up unit
            axis.setTextPen(PLOT_FOREGROUND)
            axis.setPen(PLOT_FOREGROUND)
        item.setLabel("left", "cells", color=PLOT_FOREGROUND)
        item.setLabel("bottom", "days after transplantation", color=PLOT_FOREGROUND)
        # Below the axes rather than over the data: the side panel's plot is small.
        self.legend = pg.LegendItem(offset=None, colCount=3, labelTextColor=PLOT_FOREGROUND,
                                    horSpacing=12, verSpacing=-6)
        item.layout.addItem(self.legend, 4, 1)
        self.current_line = pg.InfiniteLine(angle=90, movable=False,
                                            pen=pg.mkPen(CURRENT_LINE_COLOR, width=1, style=Qt.PenStyle.DashDotLine))
        self.current_line.setVisible(False)
        item.addItem(self.current_line, ignoreBounds=True)

    def set_course(self, timepoints: Sequence[TimepointStats], study_id: str = "",
                   table: LabelTable | None = None) -> None:
        """Redraw from every timepoint's numbers (regions matched by name across timepoints),
        each region in its colour of ``table`` (the shown timepoint's label table).

        When the regions, days and colours are the same as drawn, only the curves' data change
        (cheap enough for every brush stroke); otherwise the curves and legend are rebuilt.
        """
        x = self._x_positions(timepoints)
        names = time_course(StudyStats(study_id, list(timepoints), []), "live_cells")  # name order
        table = table or LabelTable()
        colors = {name: table.color_of_name(name, region_label_of(timepoints, name)) for name in names}
        series = {}
        for name in names:
            live, dead = course_values(timepoints, name, "live_cells"), course_values(timepoints, name, "dead_cells")
            if not (np.isnan(live).all() and np.isnan(dead).all()):
                series[name] = (live, dead)
        same_colors = all(self._drawn_colors.get(name) == colors[name] for name in self.curves if name in colors)
        if set(series) <= set(self.curves) and x == getattr(self, "_drawn_x", None) and same_colors:
            for name, (live_curve, dead_curve) in self.curves.items():
                if name not in series:  # a region emptied by an edit: no points until it returns
                    live_curve.setData([], [])
                    dead_curve.setData([], [])
                    continue
                live, dead = series[name]
                live_curve.setData(np.asarray(x, dtype=float), live)
                dead_curve.setData(np.asarray(x, dtype=float), dead)
            return
        self._drawn_x = list(x)
        self._drawn_colors = colors
        self._clear_curves()
        for name in names:
            live, dead = course_values(timepoints, name, "live_cells"), course_values(timepoints, name, "dead_cells")
            if np.isnan(live).all() and np.isnan(dead).all():
                continue  # reference, background: no cells to follow
            color = colors[name]
            self.curves[name] = (self._add_curve(x, live, color, live=True), self._add_curve(x, dead, color, live=False))
            self.legend.addItem(self.curves[name][0], name)
        self._add_style_key()
        self._set_ticks()

    def mark_timepoint(self, label: str) -> None:
        """Move the vertical line to a timepoint (hidden when that timepoint has no x)."""
        x = self._x_by_label.get(label)
        self.current_line.setVisible(x is not None)
        if x is not None:
            self.current_line.setValue(x)

    def _clear_curves(self) -> None:
        item = self.getPlotItem()
        for live, dead in self.curves.values():
            item.removeItem(live)
            item.removeItem(dead)
        self.curves.clear()
        self.legend.clear()

    def _x_positions(self, timepoints: Sequence[TimepointStats]) -> list[float]:
        """Days; when any day is unknown, the timepoint order instead (days would mislead)."""
        x, with_days = course_positions(timepoints)
        self._x_by_label = {t.label: value for t, value in zip(timepoints, x)}
        self.getPlotItem().setLabel("bottom", "days after transplantation" if with_days else "timepoint (days not given)",
                                    color=PLOT_FOREGROUND)
        return x

    def _add_curve(self, x: list[float], y: np.ndarray, color: tuple[int, int, int], live: bool) -> pg.PlotDataItem:
        style = Qt.PenStyle.SolidLine if live else Qt.PenStyle.DashLine
        curve = pg.PlotDataItem(
            np.asarray(x, dtype=float), y, connect="finite",
            pen=pg.mkPen(color, width=2, style=style),
            symbol="o" if live else "t", symbolSize=7 if live else 6,
            symbolBrush=color if live else None, symbolPen=pg.mkPen(color, width=1.5),
        )
        self.getPlotItem().addItem(curve)
        return curve

    def _add_style_key(self) -> None:
        """Two grey legend samples saying which line style is live and which dead."""
        if not self.curves:
            return
        grey = (170, 170, 170)
        for text, style, symbol, brush in (("live", Qt.PenStyle.SolidLine, "o", grey),
                                           ("dead", Qt.PenStyle.DashLine, "t", None)):
            sample = pg.PlotDataItem([0.0], [0.0], pen=pg.mkPen(grey, width=2, style=style), symbol=symbol,
                                     symbolSize=6, symbolBrush=brush, symbolPen=pg.mkPen(grey))
            self.legend.addItem(sample, text)

    def _set_ticks(self) -> None:
        """Ticks at the study's own days, so each point reads against its day."""
        ticks = [(x, f"{x:g}") for x in sorted(set(self._x_by_label.values()))]
        self.getPlotItem().getAxis("bottom").setTicks([ticks] if ticks else None)


# -- the panel -----------------------------------------------------------------------------------

class RegionPanel(QtWidgets.QWidget):
    """Per-region numbers of the shown timepoint, alerts, notes and the time course.

    Signals:
        region_activated(int): a row was double-clicked; the region's label.

    The scene stays the one source of truth for the timepoint: the selector calls
    ``scene.set_timepoint`` and follows the scene's "timepoint" event.
    """

    region_activated = QtCore.Signal(int)

    def __init__(self, scene: Scene, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.scene = scene
        self._course: dict[str, TimepointStats] = {}
        self.model = RegionTableModel(self)
        self.proxy = NumericSortProxy(self)
        self.proxy.setSourceModel(self.model)
        self._build()
        self._fill_selector()
        self._observe_scene()
        self._show_summary(None)

    # -- public API -----------------------------------------------------------------------------
    def show_stats(self, stats: TimepointStats) -> None:
        """Show one timepoint's numbers (computed elsewhere), keeping sort and selection.

        Also refreshes that timepoint in the time course, so an edited region updates both.
        """
        selected = self.selected_region_names()
        self.model.set_stats(stats, self.scene.study.calibration.dead_fraction_alert)
        self._hide_empty_columns(stats)
        self.table.updateGeometry()
        self._select_names(selected)
        self._show_summary(stats)
        if stats.label in self._course:
            self._course[stats.label] = stats
            self._redraw_course()

    def show_time_course(self, timepoints: Sequence[TimepointStats]) -> None:
        """Plot live/dead cells of every timepoint (one TimepointStats per timepoint, study order)."""
        self._course = {t.label: t for t in timepoints}
        self._redraw_course()

    def selected_region_names(self) -> list[str]:
        """Names of the selected rows, in view order."""
        rows = sorted(index.row() for index in self.table.selectionModel().selectedRows())
        return [self.model.region_at(self.proxy.mapToSource(self.proxy.index(row, 0)).row()).name for row in rows]

    def select_region(self, name: str) -> None:
        """Select a region's row by name (e.g. when the cursor enters it)."""
        self._select_names([name])

    def csv_text(self) -> str:
        """The shown timepoint as CSV, with exactly the columns of ``viewer stats --format csv``."""
        stats = self.model.stats
        return StudyStats(self.scene.study.id, [stats] if stats else [], []).to_csv()

    def copy_csv(self) -> None:
        """Put :meth:`csv_text` on the clipboard (for a spreadsheet or a lab notebook)."""
        QtGui.QGuiApplication.clipboard().setText(self.csv_text())

    # -- construction ---------------------------------------------------------------------------
    def _build(self) -> None:
        """Selector row, then table | (alerts, summary, notes, plot) split so the table can grow."""
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(self._build_top_row())
        self.status_label = QtWidgets.QLabel(self)
        self.status_label.setStyleSheet("font-style: italic;")
        layout.addWidget(self.status_label)
        splitter = QtWidgets.QSplitter(Qt.Orientation.Vertical, self)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(self._build_table(splitter))
        splitter.addWidget(self._build_lower_part(splitter))
        splitter.setStretchFactor(0, 0)  # the table keeps its fitted height, the plot takes the rest
        splitter.setStretchFactor(1, 1)
        layout.addWidget(splitter, 1)

    def _build_top_row(self) -> QtWidgets.QHBoxLayout:
        row = QtWidgets.QHBoxLayout()
        label = QtWidgets.QLabel("Timepoint:", self)
        self.timepoint_combo = QtWidgets.QComboBox(self)
        self.timepoint_combo.setToolTip("Timepoint shown in the views and the table")
        label.setBuddy(self.timepoint_combo)
        self.copy_button = QtWidgets.QPushButton("Copy CSV", self)
        self.copy_button.setToolTip("Copy this timepoint's table as CSV (same columns as `viewer stats --format csv`)")
        self.copy_button.clicked.connect(self.copy_csv)
        row.addWidget(label)
        row.addWidget(self.timepoint_combo, 1)
        row.addWidget(self.copy_button)
        return row

    def _build_lower_part(self, parent: QtWidgets.QWidget) -> QtWidgets.QWidget:
        part = QtWidgets.QWidget(parent)
        layout = QtWidgets.QVBoxLayout(part)
        layout.setContentsMargins(0, 2, 0, 0)
        self.alert_label = QtWidgets.QLabel(part)
        self.alert_label.setWordWrap(True)
        self.alert_label.setStyleSheet(f"color: {ALERT_EMPHASIS.name()}; font-weight: bold;")
        layout.addWidget(self.alert_label)
        self.summary_label = QtWidgets.QLabel(part)
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.summary_label)
        layout.addWidget(self._build_notes(part))
        self.plot = TimeCoursePlot(part)
        self.plot.setMinimumHeight(180)
        layout.addWidget(self.plot, 1)
        return part

    def _build_table(self, parent: QtWidgets.QWidget) -> QtWidgets.QTableView:
        table = self.table = RegionTableView(parent)
        table.setModel(self.proxy)
        table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setAlternatingRowColors(True)
        table.setWordWrap(False)
        table.verticalHeader().setVisible(False)
        table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 6)
        header = table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setHighlightSections(False)
        header.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # label order until a click
        table.setSortingEnabled(True)
        table.doubleClicked.connect(self._on_double_click)
        copy_action = QtGui.QAction("Copy table as CSV", table)
        copy_action.setShortcut(QtGui.QKeySequence.StandardKey.Copy)
        copy_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        copy_action.triggered.connect(self.copy_csv)
        table.addAction(copy_action)
        table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        return table

    def _build_notes(self, parent: QtWidgets.QWidget) -> QtWidgets.QWidget:
        """Notes folded away by default: they explain, but the numbers come first."""
        box = QtWidgets.QWidget(parent)
        layout = QtWidgets.QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        self.notes_toggle = QtWidgets.QToolButton(box)
        self.notes_toggle.setCheckable(True)
        self.notes_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.notes_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.notes_toggle.setAutoRaise(True)
        self.notes_view = QtWidgets.QPlainTextEdit(box)
        self.notes_view.setReadOnly(True)
        self.notes_view.setMaximumHeight(110)
        self.notes_view.setVisible(False)
        self.notes_toggle.toggled.connect(self._on_notes_toggled)
        layout.addWidget(self.notes_toggle)
        layout.addWidget(self.notes_view)
        return box

    def _fill_selector(self) -> None:
        with QtCore.QSignalBlocker(self.timepoint_combo):
            self.timepoint_combo.clear()
            for timepoint in self.scene.study.timepoints:
                self.timepoint_combo.addItem(timepoint_title(timepoint.label, timepoint.day), timepoint.label)
            self.timepoint_combo.setCurrentIndex(self.scene.timepoint_index)
        self.timepoint_combo.currentIndexChanged.connect(self._on_combo_changed)

    def _observe_scene(self) -> None:
        """Follow the scene without the scene keeping a deleted widget alive or calling into it."""
        callbacks = {"timepoint": _weak_callback(self, RegionPanel._on_scene_timepoint),
                     "regions": _weak_callback(self, RegionPanel._on_scene_regions),
                     "stats": _weak_callback(self, RegionPanel._on_scene_stats)}
        events = self.scene.events
        for name, callback in callbacks.items():
            events.connect(name, callback)

        def disconnect(*_: Any) -> None:
            for name, callback in callbacks.items():
                events.disconnect(name, callback)

        self.destroyed.connect(disconnect)

    # -- reactions ------------------------------------------------------------------------------
    def _on_combo_changed(self, index: int) -> None:
        if index >= 0:
            self.scene.set_timepoint(index)

    def _on_scene_timepoint(self, index: int | None = None, **_: Any) -> None:
        index = self.scene.timepoint_index if index is None else index
        with QtCore.QSignalBlocker(self.timepoint_combo):
            self.timepoint_combo.setCurrentIndex(index)
        self.plot.mark_timepoint(self.scene.timepoint.label)
        latest = self.scene.results.latest(self.scene.timepoint.label)
        if latest is not None:
            self.show_stats(latest)
        self._show_status()

    def _on_scene_stats(self, timepoint: str, **_: Any) -> None:
        """A timepoint's numbers changed: the table when it is the one shown, the time course
        always (a timepoint seen for the first time redraws every curve)."""
        latest = self.scene.results.latest(timepoint)
        if latest is None:
            return
        if timepoint not in self._course:
            self.show_time_course(self.scene.results.ready())
        if timepoint == self.scene.timepoint.label:
            self.show_stats(latest)
        elif timepoint in self._course:
            self._course[timepoint] = latest
            self._redraw_course()

    def _on_scene_regions(self, **_: Any) -> None:
        """The label map changed: the numbers shown are old until the window sends new ones."""
        self._show_status(updating=True)

    def _on_double_click(self, index: QtCore.QModelIndex) -> None:
        if index.isValid():
            self.region_activated.emit(self.model.region_at(self.proxy.mapToSource(index).row()).label)

    def _on_notes_toggled(self, shown: bool) -> None:
        self.notes_view.setVisible(shown)
        self.notes_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    # -- showing --------------------------------------------------------------------------------
    def _hide_empty_columns(self, stats: TimepointStats) -> None:
        """A column nobody has a value for (e.g. no PET) is dropped, as PRODUCT.md §2 asks."""
        for column, measure in enumerate(TABLE_MEASURES):
            empty = bool(stats.regions) and all(plain_value(r.values.get(measure.key)) is None for r in stats.regions)
            self.table.setColumnHidden(column, empty and measure.key != "name")

    def _select_names(self, names: Sequence[str]) -> None:
        selection = QtCore.QItemSelection()
        for name in names:
            row = self.model.row_of(name)
            if row is not None:
                proxy_row = self.proxy.mapFromSource(self.model.index(row, 0)).row()
                selection.select(self.proxy.index(proxy_row, 0), self.proxy.index(proxy_row, self.proxy.columnCount() - 1))
        flags = QtCore.QItemSelectionModel.SelectionFlag.ClearAndSelect
        self.table.selectionModel().select(selection, flags)

    def _show_summary(self, stats: TimepointStats | None) -> None:
        self._show_status()
        if stats is None:
            self.alert_label.setVisible(False)
            self.summary_label.setText("No numbers yet.")
            self._show_notes([])
            return
        alerts = self._alert_lines(stats)
        self.alert_label.setText("\n".join(alerts))
        self.alert_label.setVisible(bool(alerts))
        self.summary_label.setText(self._summary_html(stats))
        self._show_notes(stats.notes)

    def _show_status(self, updating: bool = False) -> None:
        """Say which timepoint the numbers belong to, and when they are being recomputed."""
        stats = self.model.stats
        current = self.scene.timepoint
        if stats is None:
            text = f"Computing the numbers of {current.label}…"
        elif stats.label != current.label:
            text = f"Numbers of {stats.label}; {current.label} is being computed…"
        else:
            updating = updating or not self.scene.results.is_current(current.label)
            text = f"Numbers of {stats.label}" + (" (updating…)" if updating else "")
        self.status_label.setText(text)

    def _alert_lines(self, stats: TimepointStats) -> list[str]:
        """One sentence per alerting region, e.g. "… injection site — dead fraction 0.25 ≥ 0.20"."""
        threshold = self.scene.study.calibration.dead_fraction_alert
        fraction = region_measure("dead_fraction")
        return [
            f"{ALERT_SIGN} Rejection alert: {region.name} — dead fraction "
            f"{fraction.format(plain_value(region.values.get('dead_fraction')))} ≥ {threshold:.2f}"
            for region in stats.regions if plain_value(region.values.get("rejection_alert")) is True
        ]

    def _summary_html(self, stats: TimepointStats) -> str:
        limit = timepoint_measure("detection_limit_cells_per_mm3")
        value = plain_value(stats.detection_limit_cells_per_mm3)
        lines = [f"<b>{limit.name}:</b> {limit.format(value)}" + (f" {limit.units}" if value is not None else "")]
        if stats.homing:
            shares = ", ".join(f"{_percent(share)} {place}" for place, share in stats.homing.items())
            lines.append(f"<b>Homing</b> of ¹⁹F-counted cells: {shares}")
        if stats.mismatch is not None:
            lines.append(f"<b>Core/penumbra:</b> {_escape(stats.mismatch.describe())}")
        return "<br>".join(lines)

    def _show_notes(self, notes: Sequence[str]) -> None:
        self.notes_view.setPlainText("\n".join(f"• {note}" for note in notes))
        self.notes_toggle.setText(f"Notes ({len(notes)})")
        self.notes_toggle.setEnabled(bool(notes))

    def _redraw_course(self) -> None:
        ordered = [self._course[t.label] for t in self.scene.study.timepoints if t.label in self._course]
        self.plot.set_course(ordered, self.scene.study.id, self.scene.label_table())
        self.plot.mark_timepoint(self.scene.timepoint.label)


def _percent(share: float | None) -> str:
    share = plain_value(share)
    return "—" if share is None else f"{100 * share:.0f} %"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _weak_callback(widget: QtWidgets.QWidget, method: Callable[..., None]) -> Callable[..., None]:
    """A scene callback that holds the widget weakly and ignores it once Qt deleted it."""
    ref = weakref.ref(widget)

    def callback(**info: Any) -> None:
        target = ref()
        if target is not None and shiboken6.isValid(target):
            method(target, **info)

    return callback
