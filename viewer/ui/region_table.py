"""The region table (PRODUCT.md §5): one row per region, its name column frozen while the
numbers scroll, columns grouped (¹⁹F cells, viability, PET, sodium / perfusion) with a chooser.

Column titles, units, tooltips and cell text all come from :data:`REGION_MEASURES` (Slicer's
SegmentStatistics habit), so the table, the CSV and the PDF report cannot disagree. The panel
around it (:mod:`viewer.ui.region_panel`) feeds it the scene's numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from viewer.core.quant.measures import (
    REGION_MEASURES,
    Measure,
    display_value,
    plain_value,
    table_measures,
)
from viewer.core.quant.stats import RegionStats, TimepointStats

Qt = QtCore.Qt

#: Measures the table leaves out: the label is an id (the name says it), predictions have
#: their own panel.
HIDDEN_KEYS = ("label", "prediction")


@dataclass(frozen=True)
class ColumnGroup:
    """A family of columns the reader shows or hides together (the chooser above the table).

    Attributes:
        key: id kept in the panel's state (:attr:`RegionPanel.group_choice`).
        title: the chooser button's text.
        words: first words of the measure keys that belong to the group ("suv" of
            ``suv_peak``): a measure added to the registry joins its group by its key.
        description: the chooser button's tooltip.
    """

    key: str
    title: str
    words: tuple[str, ...]
    description: str


#: Measures whose key starts with none of the groups' words (the name, the volume) belong to
#: this group: always shown, no chooser button.
GENERAL_GROUP = "region"

#: The optional column groups, in table order (PRODUCT.md §3's sections).
COLUMN_GROUPS: tuple[ColumnGroup, ...] = (
    ColumnGroup("cells", "¹⁹F cells", ("fluorine", "cells", "below", "homing"),
                "¹⁹F cell count, density, detection and homing"),
    ColumnGroup("viability", "Viability", ("dead", "live", "rejection"),
                "Dead and live cells from the released gadolinium, dead fraction, rejection alert"),
    ColumnGroup("pet", "PET", ("suv", "mtv", "tlg"), "SUVmax, SUVmean, SUVpeak, MTV, TLG"),
    ColumnGroup("sodium", "Sodium / perfusion", ("sodium", "tsc", "adc", "tmax", "perfusion"),
                "Tissue sodium concentration and perfusion measures"),
)


def measure_group(measure: Measure) -> str:
    """The key of the column group of a measure, from the first word of its key."""
    first = measure.key.split("_", 1)[0].casefold()
    return next((g.key for g in COLUMN_GROUPS if first in g.words), GENERAL_GROUP)


def _grouped(measures: Sequence[Measure]) -> tuple[Measure, ...]:
    """Schema order within each group; the general columns first, then the groups' order."""
    order = [GENERAL_GROUP] + [g.key for g in COLUMN_GROUPS]
    return tuple(sorted(measures, key=lambda m: order.index(measure_group(m))))  # sorted() is stable


#: The table's columns: schema order, grouped (homing beside the other ¹⁹F columns).
TABLE_MEASURES: tuple[Measure, ...] = _grouped(table_measures([m for m in REGION_MEASURES if m.key not in HIDDEN_KEYS]))


def header_tooltip(measure: Measure) -> str:
    """A column's header tooltip: what the number is and its units."""
    units = measure.units or "none (a count, ratio, flag or name)"
    if measure.kind == "text":
        return measure.description
    return f"{measure.description}\nUnits: {units}"

#: The invalid index Qt uses for "the table itself" (a shared default argument).
_ROOT = QtCore.QModelIndex()

#: Item-data role holding the raw value (float, int, str or None) used for numeric sorting.
SORT_ROLE = int(Qt.ItemDataRole.UserRole) + 1

ALERT_SIGN = "⚠"
ALERT_BACKGROUND = QtGui.QColor(255, 214, 214)
ALERT_TEXT = QtGui.QColor(40, 0, 0)
ALERT_EMPHASIS = QtGui.QColor(185, 0, 0)


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
        self._colors: dict[str, QtGui.QColor] = {}

    # -- data in --------------------------------------------------------------------------------
    def set_stats(self, stats: TimepointStats | None, alert_threshold: float | None = None,
                  colors: dict[str, tuple[int, int, int]] | None = None) -> None:
        """Replace every row (a model reset: the proxy re-sorts, the view keeps its header).

        ``colors``: region name → its label colour, the swatch of the name column.
        """
        self.beginResetModel()
        self._stats = stats
        self._threshold = alert_threshold
        self._colors = {name: QtGui.QColor(*rgb) for name, rgb in (colors or {}).items()}
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
            return header_tooltip(measure)
        return None

    def data(self, index: QtCore.QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or self._stats is None:
            return None
        region = self._stats.regions[index.row()]
        measure = TABLE_MEASURES[index.column()]
        value = display_value(region.values, measure)
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(measure, value, region)
        if role == SORT_ROLE:
            return sort_key(value[0] if isinstance(value, tuple) else value)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            horizontal = Qt.AlignmentFlag.AlignLeft if measure.kind == "text" else Qt.AlignmentFlag.AlignRight
            return int(horizontal | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(measure, region)
        if role == Qt.ItemDataRole.DecorationRole and measure.key == "name" and not self._alerting(region):
            return self._colors.get(region.name)  # the region's colour, as on the images and the plot
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
    """The region table: its first column (the region name) frozen at the left edge, rows at
    the font's natural height, a preferred height that fits the rows and a minimum that shows
    :attr:`MIN_ROWS` of them.

    The frozen column is Qt's "frozencolumn" example: a second view (:attr:`frozen`) on the same
    model and selection model shows only column 0, overlaid on the left of this view, with its
    vertical scrolling tied to this view's; the other columns scroll under it. A click in it
    selects the row, a double-click is this view's ``doubleClicked``, a click on its header
    sorts by name exactly as this view's header would.
    """

    MIN_ROWS = 6
    MAX_ROWS = 12
    FROZEN_COLUMN = 0

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setHorizontalScrollMode(QtWidgets.QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setVerticalScrollMode(QtWidgets.QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Fixed)
        self.verticalHeader().setDefaultSectionSize(self.natural_row_height())
        frozen = self.frozen = QtWidgets.QTableView(self)
        frozen.setObjectName("frozenNameColumn")
        frozen.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        frozen.verticalHeader().hide()
        frozen.verticalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Fixed)
        frozen.verticalHeader().setDefaultSectionSize(self.natural_row_height())
        frozen.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Fixed)
        frozen.horizontalHeader().setHighlightSections(False)
        frozen.horizontalHeader().setSortIndicatorShown(True)
        frozen.horizontalHeader().setSectionsClickable(True)
        frozen.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        frozen.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        frozen.setVerticalScrollMode(QtWidgets.QAbstractItemView.ScrollMode.ScrollPerPixel)
        frozen.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        frozen.setWordWrap(False)
        # a line on its right edge says the columns beyond scroll under it
        frozen.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        frozen.setStyleSheet("QTableView#frozenNameColumn { border: none; border-right: 1px solid palette(mid); }")
        self.viewport().stackUnder(frozen)
        self.horizontalHeader().sectionResized.connect(self._on_section_resized)
        self.verticalHeader().sectionResized.connect(lambda row, _old, size: frozen.setRowHeight(row, size))
        frozen.verticalScrollBar().valueChanged.connect(self.verticalScrollBar().setValue)
        self.verticalScrollBar().valueChanged.connect(frozen.verticalScrollBar().setValue)
        frozen.doubleClicked.connect(self.doubleClicked.emit)
        frozen.pressed.connect(lambda _index: self.setFocus(Qt.FocusReason.MouseFocusReason))  # keys, Ctrl+C here
        frozen.horizontalHeader().sectionClicked.connect(self._on_frozen_header_clicked)
        self.horizontalHeader().sortIndicatorChanged.connect(
            lambda section, order: frozen.horizontalHeader().setSortIndicator(section, order))
        frozen.show()

    def natural_row_height(self) -> int:
        """The font's line plus the style's cell margins (and room for the 16 px swatch/icon)."""
        return max(self.fontMetrics().height(), 16) + 8

    # -- the frozen column follows this view ------------------------------------------------------
    def setModel(self, model: QtCore.QAbstractItemModel | None) -> None:
        super().setModel(model)
        self.frozen.setModel(model)
        if model is None:
            return
        self.frozen.setSelectionModel(self.selectionModel())
        model.modelReset.connect(self._hide_frozen_columns)  # after both headers reset
        model.columnsInserted.connect(self._hide_frozen_columns)
        self._hide_frozen_columns()

    def setSelectionBehavior(self, behavior: QtWidgets.QAbstractItemView.SelectionBehavior) -> None:
        super().setSelectionBehavior(behavior)
        self.frozen.setSelectionBehavior(behavior)

    def setSelectionMode(self, mode: QtWidgets.QAbstractItemView.SelectionMode) -> None:
        super().setSelectionMode(mode)
        self.frozen.setSelectionMode(mode)

    def setAlternatingRowColors(self, enable: bool) -> None:
        super().setAlternatingRowColors(enable)
        self.frozen.setAlternatingRowColors(enable)

    def _hide_frozen_columns(self, *_: Any) -> None:
        model = self.model()
        if model is None:
            return
        for column in range(model.columnCount()):
            self.frozen.setColumnHidden(column, column != self.FROZEN_COLUMN)
        self.frozen.setColumnWidth(self.FROZEN_COLUMN, self.columnWidth(self.FROZEN_COLUMN))
        header = self.horizontalHeader()
        self.frozen.horizontalHeader().setSortIndicator(header.sortIndicatorSection(), header.sortIndicatorOrder())
        self._place_frozen()

    def _on_section_resized(self, column: int, _old: int, size: int) -> None:
        if column == self.FROZEN_COLUMN:
            self.frozen.setColumnWidth(column, size)
            self._place_frozen()

    def _on_frozen_header_clicked(self, section: int) -> None:
        """Sort as a click on this view's header would: the same section again flips the order."""
        header = self.horizontalHeader()
        if header.sortIndicatorSection() == section:
            ascending = header.sortIndicatorOrder() == Qt.SortOrder.AscendingOrder
            order = Qt.SortOrder.DescendingOrder if ascending else Qt.SortOrder.AscendingOrder
        else:
            order = Qt.SortOrder.AscendingOrder
        self.sortByColumn(section, order)

    def _place_frozen(self) -> None:
        """Over column 0 and the header above it, inside the frame, above the scroll bar."""
        if getattr(self, "frozen", None) is None:
            return  # Qt lays the view out while it is being built
        header = self.horizontalHeader()
        self.frozen.horizontalHeader().setFixedHeight(header.height())
        self.frozen.setGeometry(self.verticalHeader().width() + self.frameWidth(), self.frameWidth(),
                                self.columnWidth(self.FROZEN_COLUMN), self.viewport().height() + header.height())

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        self._place_frozen()

    def updateGeometries(self) -> None:  # the header's height is known here
        super().updateGeometries()
        self._place_frozen()

    def moveCursor(self, action: QtWidgets.QAbstractItemView.CursorAction,
                   modifiers: Qt.KeyboardModifier) -> QtCore.QModelIndex:
        """Moving left onto a column hidden under the frozen one scrolls it into view."""
        current = super().moveCursor(action, modifiers)
        frozen_width = self.frozen.columnWidth(self.FROZEN_COLUMN)
        if (action == QtWidgets.QAbstractItemView.CursorAction.MoveLeft and current.column() > self.FROZEN_COLUMN
                and self.visualRect(current).topLeft().x() < frozen_width):
            bar = self.horizontalScrollBar()
            bar.setValue(bar.value() + self.visualRect(current).topLeft().x() - frozen_width)
        return current

    def scrollTo(self, index: QtCore.QModelIndex,
                 hint: QtWidgets.QAbstractItemView.ScrollHint = QtWidgets.QAbstractItemView.ScrollHint.EnsureVisible) -> None:
        if index.column() > self.FROZEN_COLUMN:
            super().scrollTo(index, hint)
            return
        bar = self.horizontalScrollBar()  # the name column never scrolls sideways: only the row
        kept = bar.value()
        super().scrollTo(index, hint)
        bar.setValue(kept)

    # -- sizes --------------------------------------------------------------------------------------
    def _height_for(self, rows: int) -> int:
        return (self.horizontalHeader().sizeHint().height() + rows * self.verticalHeader().defaultSectionSize()
                + self.horizontalScrollBar().sizeHint().height() + 2 * self.frameWidth())

    def sizeHint(self) -> QtCore.QSize:
        hint = super().sizeHint()
        model = self.model()
        rows = min(max(model.rowCount() if model else 0, self.MIN_ROWS), self.MAX_ROWS)
        return QtCore.QSize(hint.width(), self._height_for(rows))

    def minimumSizeHint(self) -> QtCore.QSize:
        """At least :attr:`MIN_ROWS` rows (more scroll), however the panel is squeezed."""
        return QtCore.QSize(super().minimumSizeHint().width(), self._height_for(self.MIN_ROWS))
