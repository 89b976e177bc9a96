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

from viewer.core.errors import ViewerError
from viewer.core.quant.measures import (
    Measure,
    display_value,
    plain_value,
    region_measure,
    timepoint_measure,
)
from viewer.core.quant.stats import (
    StudyStats,
    TimepointStats,
    course_positions,
    course_values,
    region_label_of,
    time_course,
)
from viewer.core.regions import LabelTable
from viewer.core.scene import Scene
from viewer.ui.region_table import (
    ALERT_EMPHASIS,
    ALERT_SIGN,
    COLUMN_GROUPS,
    GENERAL_GROUP,
    TABLE_MEASURES,
    NumericSortProxy,
    RegionTableModel,
    RegionTableView,
    measure_group,
    timepoint_title,
)

Qt = QtCore.Qt

PLOT_BACKGROUND = "#1e1e1e"
PLOT_FOREGROUND = "#d0d0d0"
CURRENT_LINE_COLOR = (235, 235, 235, 150)

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
        group_choice_changed(dict): the reader showed or hid a column group; the new
            :attr:`group_choice` (for the window to remember, e.g. in its QSettings).

    The scene stays the one source of truth for the timepoint: the selector calls
    ``scene.set_timepoint`` and follows the scene's "timepoint" event.

    Column groups (:data:`COLUMN_GROUPS`): a group is shown when the reader chose so, or, until
    they choose, when any of its columns has a value; a column nobody has a value for is hidden
    whatever the choice (its button is disabled while its whole group is empty).
    """

    region_activated = QtCore.Signal(int)
    group_choice_changed = QtCore.Signal(dict)

    def __init__(self, scene: Scene, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.scene = scene
        self._course: dict[str, TimepointStats] = {}
        self._group_choice: dict[str, bool] = {}
        self._compact_tables: list[QtWidgets.QTableView] = []
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
        self.model.set_stats(stats, self.scene.study.calibration.dead_fraction_alert, self._region_colors(stats))
        self._apply_columns()
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

    @property
    def group_choice(self) -> dict[str, bool]:
        """The reader's explicit show (True) / hide (False) per group key; a group not in it
        follows the default (shown when it has values). Plain data the window can persist."""
        return dict(self._group_choice)

    def set_group_choice(self, choice: dict[str, bool]) -> None:
        """Restore a remembered :attr:`group_choice` (unknown group keys are ignored)."""
        known = {g.key for g in COLUMN_GROUPS}
        self._group_choice = {key: bool(shown) for key, shown in choice.items() if key in known}
        self._apply_columns()

    def set_group_visible(self, group: str, shown: bool) -> None:
        """Show or hide a column group (what its chooser button does)."""
        if group not in {g.key for g in COLUMN_GROUPS}:
            raise KeyError(group)
        if self._group_choice.get(group) == shown:
            self._apply_columns()
            return
        self._group_choice[group] = shown
        self._apply_columns()
        self.group_choice_changed.emit(self.group_choice)

    def group_shown(self, group: str) -> bool:
        """Whether a group's columns (those with values) are shown now."""
        return self._group_choice.get(group, True) and self._group_has_values(group)

    def group_columns(self, group: str) -> list[int]:
        """The table columns of a group."""
        return [c for c, m in enumerate(TABLE_MEASURES) if measure_group(m) == group]

    # -- construction ---------------------------------------------------------------------------
    def _build(self) -> None:
        """Selector row, column groups, then table | (alerts, summary, notes, plot) split so
        the table can grow."""
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(self._build_top_row())
        self.status_label = QtWidgets.QLabel(self)
        self.status_label.setStyleSheet("font-style: italic;")
        layout.addWidget(self.status_label)
        layout.addLayout(self._build_group_row())
        self.splitter = splitter = QtWidgets.QSplitter(Qt.Orientation.Vertical, self)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(self._build_table(splitter))
        splitter.addWidget(self._build_lower_part(splitter))
        # both grow, the table from its fitted height (at least 6 rows), the plot twice as much:
        # a table's extra height is blank below its rows once they all show
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 2)
        layout.addWidget(splitter, 1)

    def _build_group_row(self) -> QtWidgets.QHBoxLayout:
        """"Columns:" and one checkable button per column group."""
        row = QtWidgets.QHBoxLayout()
        row.setSpacing(2)
        row.addWidget(QtWidgets.QLabel("Columns:", self))
        self.group_buttons: dict[str, QtWidgets.QToolButton] = {}
        for group in COLUMN_GROUPS:
            button = QtWidgets.QToolButton(self)
            button.setText(group.title)
            button.setCheckable(True)
            button.setChecked(True)
            button.setAutoRaise(False)
            button.setToolTip(f"Show or hide the {group.title} columns: {group.description}")
            button.toggled.connect(lambda shown, key=group.key: self.set_group_visible(key, shown))
            self.group_buttons[group.key] = button
            row.addWidget(button)
        row.addStretch(1)
        return row

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
        table.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Expanding)
        table.verticalHeader().setVisible(False)
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
        table.frozen.addAction(copy_action)
        table.frozen.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
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
    def _column_empty(self, measure: Measure) -> bool:
        stats = self.model.stats
        return (stats is not None and bool(stats.regions)
                and all(display_value(r.values, measure) is None for r in stats.regions))

    def _group_has_values(self, group: str) -> bool:
        stats = self.model.stats
        if stats is None or not stats.regions:
            return True  # nothing to judge by yet: the reader's choice (default shown)
        return any(not self._column_empty(m) for m in TABLE_MEASURES if measure_group(m) == group)

    #: the columns of the compact table shown while annotating: what a stroke changes
    COMPACT_KEYS: tuple[str, ...] = ("name", "volume_ml", "fluorine_cells", "live_cells", "dead_cells")

    def compact_table(self, parent: QtWidgets.QWidget | None = None) -> QtWidgets.QTableView:
        """A second view of this panel's table with only :data:`COMPACT_KEYS` (the Annotate tab
        shows it, so the numbers follow every stroke while drawing): the same model, sorted
        and filled as here; double-click goes to the region as here."""
        table = RegionTableView(parent)
        table.setModel(self.proxy)
        table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setAlternatingRowColors(True)
        table.setWordWrap(False)
        table.verticalHeader().setVisible(False)
        table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        table.horizontalHeader().setSectionsClickable(False)  # one sort, the Regions tab's
        table.doubleClicked.connect(self._on_double_click)
        for column, measure in enumerate(TABLE_MEASURES):
            table.setColumnHidden(column, measure.key not in self.COMPACT_KEYS)
        self._compact_tables.append(table)
        return table

    def _apply_columns(self) -> None:
        """Hide the columns of hidden groups and the columns nobody has a value for (e.g. no PET:
        PRODUCT.md §2); the buttons say which groups are shown, and which have nothing to show."""
        for column, measure in enumerate(TABLE_MEASURES):
            group = measure_group(measure)
            shown = measure.key == "name" or (
                not self._column_empty(measure) and (group == GENERAL_GROUP or self.group_shown(group)))
            self.table.setColumnHidden(column, not shown)
        for key, button in self.group_buttons.items():
            has_values = self._group_has_values(key)
            with QtCore.QSignalBlocker(button):
                button.setEnabled(has_values)
                button.setChecked(self.group_shown(key))
            title = next(g.title for g in COLUMN_GROUPS if g.key == key)
            description = next(g.description for g in COLUMN_GROUPS if g.key == key)
            button.setToolTip(f"Show or hide the {title} columns: {description}" if has_values
                              else f"No {title} values at this timepoint")

    def _region_colors(self, stats: TimepointStats) -> dict[str, tuple[int, int, int]]:
        """Each region's colour in the label table of the stats' timepoint (swatches)."""
        try:
            table = self.scene.label_table(self.scene.study.timepoint(stats.label))
        except ViewerError:  # numbers of a timepoint the study no longer has
            table = self.scene.label_table()
        return {region.name: table.color_of_name(region.name, region.label) for region in stats.regions}

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
