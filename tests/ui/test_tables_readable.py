"""Issue 15, "the reading room": the side panel's two tables read at a glance.

Region table: the name column frozen while the others scroll, column groups with a chooser
(default: the groups that have values), rows at the font's natural height with at least six
visible, header tooltips with units. Predictions: registry names instead of identifiers,
reasons instead of bare dashes, warnings in full, and a timepoint selector.

Every test checks what is on screen (geometry, visibility) as well as the model behind it.
"""

from __future__ import annotations

import copy

import pytest
from PySide6 import QtCore, QtWidgets

from viewer.core.predict import fill_predictions, predictions_of
from viewer.core.quant.measures import region_measure
from viewer.ui.prediction_panel import PredictionPanel, feature_title, readable
from viewer.ui.region_panel import RegionPanel
from viewer.ui.region_table import (
    COLUMN_GROUPS,
    GENERAL_GROUP,
    TABLE_MEASURES,
    measure_group,
)

Qt = QtCore.Qt
PANEL_WIDTH = 560  # the side dock's minimum width in the window

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def panel(qtbot, scene, demo_stats):
    widget = RegionPanel(scene)
    qtbot.addWidget(widget)
    widget.resize(PANEL_WIDTH, 900)
    widget.show()
    widget.show_time_course(list(demo_stats.values()))
    widget.show_stats(demo_stats["day 1"])
    qtbot.waitExposed(widget)
    return widget


def columns_of(group: str) -> list[int]:
    return [c for c, m in enumerate(TABLE_MEASURES) if measure_group(m) == group]


def key_column(key: str) -> int:
    return next(c for c, m in enumerate(TABLE_MEASURES) if m.key == key)


def settle() -> None:
    QtWidgets.QApplication.processEvents()


def row_of(panel: RegionPanel, name: str) -> int:
    names = [panel.proxy.index(r, 0).data() for r in range(panel.proxy.rowCount())]
    return names.index(name)


# -- region table: groups ----------------------------------------------------------------------

def test_groups_come_from_the_measure_keys():
    groups = {g.key: {m.key for m in TABLE_MEASURES if measure_group(m) == g.key} for g in COLUMN_GROUPS}
    assert groups == {
        "cells": {"fluorine_cells", "fluorine_cells_ci95", "cells_per_mm3", "below_detection", "homing_fraction"},
        "viability": {"dead_cells", "live_cells", "dead_fraction", "rejection_alert"},
        "pet": {"suv_max", "suv_mean", "suv_peak", "mtv_ml", "tlg"},
        "sodium": {"sodium_mean_mM"},
    }
    assert {m.key for m in TABLE_MEASURES if measure_group(m) == GENERAL_GROUP} == {"name", "volume_ml"}
    # each group's columns are next to each other, in the chooser's order
    order = [measure_group(m) for m in TABLE_MEASURES]
    assert order == sorted(order, key=[GENERAL_GROUP, *(g.key for g in COLUMN_GROUPS)].index)


def test_the_chooser_hides_and_shows_a_groups_columns(panel, qtbot, demo_stats):
    table, header = panel.table, panel.table.horizontalHeader()
    pet = columns_of("pet")
    assert all(not table.isColumnHidden(c) and header.sectionSize(c) > 0 for c in pet)
    width_with_pet = header.length()
    button = panel.group_buttons["pet"]
    assert button.isEnabled() and button.isChecked() and button.isVisibleTo(panel)
    with qtbot.waitSignal(panel.group_choice_changed) as changed:
        button.click()
    assert changed.args == [{"pet": False}]
    assert panel.group_choice == {"pet": False}
    assert not button.isChecked()
    assert all(table.isColumnHidden(c) for c in pet)
    others = [c for c in range(len(TABLE_MEASURES)) if c not in pet]
    assert not any(table.isColumnHidden(c) for c in others)
    assert header.length() < width_with_pet - 5 * 20  # five columns fewer on screen
    # the choice outlives another timepoint's numbers
    panel.show_stats(demo_stats["day 7"])
    assert all(table.isColumnHidden(c) for c in pet) and not button.isChecked()
    button.click()
    assert panel.group_choice == {"pet": True}
    assert not any(table.isColumnHidden(c) for c in pet)
    # a remembered choice is restored as the window would do
    panel.set_group_choice({"viability": False, "unknown group": False})
    assert panel.group_choice == {"viability": False}
    assert all(table.isColumnHidden(c) for c in columns_of("viability"))
    assert not panel.group_buttons["viability"].isChecked()
    assert not any(table.isColumnHidden(c) for c in pet)  # back to the default: it has values


def test_groups_without_values_are_hidden_by_default(panel, demo_stats):
    stats = copy.deepcopy(demo_stats["day 1"])
    for region in stats.regions:
        for key in ("suv_max", "suv_mean", "suv_peak", "mtv_ml", "tlg"):
            region.values[key] = None
    panel.show_stats(stats)
    assert all(panel.table.isColumnHidden(c) for c in columns_of("pet"))
    assert not panel.group_buttons["pet"].isEnabled() and not panel.group_buttons["pet"].isChecked()
    assert "No PET values" in panel.group_buttons["pet"].toolTip()
    for group in ("cells", "viability", "sodium"):
        assert panel.group_buttons[group].isChecked()
        assert not any(panel.table.isColumnHidden(c) for c in columns_of(group))
    panel.show_stats(demo_stats["day 1"])  # PET back: its columns come back
    assert panel.group_buttons["pet"].isEnabled() and panel.group_buttons["pet"].isChecked()
    assert not any(panel.table.isColumnHidden(c) for c in columns_of("pet"))


def test_header_tooltips_say_what_and_units(panel):
    header_tip = panel.proxy.headerData(key_column("tlg"), Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert region_measure("tlg").description in header_tip and "Units: SUV·mL" in header_tip


# -- region table: the frozen name column ----------------------------------------------------------

def test_the_name_column_stays_put_while_the_others_scroll(panel):
    table, frozen = panel.table, panel.table.frozen
    settle()
    bar = table.horizontalScrollBar()
    assert bar.maximum() > 0  # at the dock's width the columns do not fit: they scroll
    assert frozen.isVisible() and not frozen.isColumnHidden(0)
    assert all(frozen.isColumnHidden(c) for c in range(1, panel.proxy.columnCount()))
    assert frozen.width() == table.columnWidth(0) > 0
    x_before = frozen.mapTo(panel, QtCore.QPoint(0, 0)).x()
    assert table.columnViewportPosition(0) == 0
    # the frozen view is on top: a point over the names belongs to it, not to the table's viewport
    over_names = QtCore.QPoint(frozen.x() + 5, frozen.y() + table.horizontalHeader().height() + 5)
    assert table.childAt(over_names) is frozen.viewport()
    bar.setValue(bar.maximum())
    settle()
    assert table.columnViewportPosition(0) < -10  # the table did scroll sideways…
    assert frozen.mapTo(panel, QtCore.QPoint(0, 0)).x() == x_before  # …the names did not
    assert frozen.isVisible() and frozen.columnViewportPosition(0) == 0
    assert table.childAt(over_names) is frozen.viewport()
    last = max(c for c in range(panel.proxy.columnCount()) if not table.isColumnHidden(c))
    right = table.columnViewportPosition(last) + table.columnWidth(last)
    assert right <= table.viewport().width()  # the last column is fully in view
    # each frozen row shows the name of the table's row beside it
    for row in range(panel.proxy.rowCount()):
        y = table.rowViewportPosition(row) + table.rowHeight(row) // 2
        assert frozen.indexAt(QtCore.QPoint(5, y)).data() == panel.proxy.index(row, 0).data()


def test_the_frozen_column_selects_sorts_and_activates(panel, qtbot):
    frozen = panel.table.frozen
    settle()
    row = row_of(panel, "core")
    center = frozen.visualRect(panel.proxy.index(row, 0)).center()
    qtbot.mouseClick(frozen.viewport(), Qt.MouseButton.LeftButton, pos=center)
    assert panel.selected_region_names() == ["core"]
    assert frozen.selectionModel() is panel.table.selectionModel()
    with qtbot.waitSignal(panel.region_activated) as activated:
        qtbot.mouseDClick(frozen.viewport(), Qt.MouseButton.LeftButton, pos=center)
    assert activated.args == [1]  # core's label
    # a click on the frozen header sorts by name, and the table's header says so
    frozen_header = frozen.horizontalHeader()
    qtbot.mouseClick(frozen_header.viewport(), Qt.MouseButton.LeftButton,
                     pos=QtCore.QPoint(frozen_header.sectionSize(0) // 2, frozen_header.height() // 2))
    names = [panel.proxy.index(r, 0).data() for r in range(panel.proxy.rowCount())]
    assert names == sorted(names, key=str.casefold)
    assert panel.table.horizontalHeader().sortIndicatorSection() == 0
    qtbot.mouseClick(frozen_header.viewport(), Qt.MouseButton.LeftButton,
                     pos=QtCore.QPoint(frozen_header.sectionSize(0) // 2, frozen_header.height() // 2))
    names = [panel.proxy.index(r, 0).data() for r in range(panel.proxy.rowCount())]
    assert names == sorted(names, key=str.casefold, reverse=True)
    assert panel.selected_region_names() == ["core"]  # the selection follows its row


def test_names_carry_the_region_colour(panel, scene):
    row = row_of(panel, "penumbra")
    swatch = panel.proxy.index(row, 0).data(Qt.ItemDataRole.DecorationRole)
    label = scene.label_table().label_of("penumbra")
    assert swatch.getRgb()[:3] == tuple(scene.label_table().color_of_name("penumbra", label))


# -- region table: rows and heights ----------------------------------------------------------------

def _rows_fully_visible(table) -> int:
    viewport = table.viewport().rect()
    model = table.model()
    return sum(viewport.contains(table.visualRect(model.index(r, 1))) for r in range(model.rowCount()))


def test_six_rows_show_at_the_panels_minimum_height(panel):
    assert panel.proxy.rowCount() == 6  # the demo study's regions
    minimum = panel.minimumSizeHint()
    panel.resize(PANEL_WIDTH, minimum.height())
    settle()
    assert panel.height() == minimum.height()
    table = panel.table
    assert _rows_fully_visible(table) == 6
    assert table.verticalScrollBar().maximum() == 0
    # rows at the font's natural height, not squashed
    for row in range(6):
        assert table.rowHeight(row) >= max(table.sizeHintForRow(row), table.fontMetrics().height() + 6)


def test_many_regions_scroll_and_the_names_scroll_with_them(panel, demo_stats):
    stats = copy.deepcopy(demo_stats["day 1"])
    regions = []
    for copy_ in range(4):
        for i, region in enumerate(demo_stats["day 1"].regions):
            region = copy.deepcopy(region)
            region.values.update(name=f"{region.name} {copy_}", label=10 * copy_ + i + 1)
            regions.append(region)
    stats.regions = regions
    panel.show_stats(stats)
    panel.resize(PANEL_WIDTH, panel.minimumSizeHint().height())
    settle()
    table, frozen = panel.table, panel.table.frozen
    assert _rows_fully_visible(table) >= 6
    bar = table.verticalScrollBar()
    assert bar.maximum() > 0
    bar.setValue(bar.maximum())
    settle()
    assert frozen.verticalScrollBar().value() == bar.value()
    bottom = table.rowAt(table.viewport().height() - 3)
    assert bottom == panel.proxy.rowCount() - 1
    y = table.rowViewportPosition(bottom) + table.rowHeight(bottom) // 2
    assert frozen.indexAt(QtCore.QPoint(5, y)).data() == panel.proxy.index(bottom, 0).data()


def test_the_table_takes_the_height_it_is_given(panel):
    panel.resize(PANEL_WIDTH, 800)
    settle()
    short = panel.table.height()
    panel.resize(PANEL_WIDTH, 1300)
    settle()
    assert panel.table.height() > short + 100


# -- predictions ------------------------------------------------------------------------------------

@pytest.fixture
def predictions(qtbot, scene):
    """A prediction panel on a scene whose views show day 7, its numbers computed (at the
    demo's scanner noise day 1's penumbra cells are below detection, so it has no prediction)."""
    widget = PredictionPanel(scene)
    qtbot.addWidget(widget)
    widget.resize(PANEL_WIDTH, 900)
    widget.show()
    scene.set_timepoint(1)
    scene.stats(scene.timepoint)  # the result of day 7: its "stats" event shows it
    assert widget.table.rowCount() > 0
    return widget


def _column_texts(table, column):
    return [table.item(row, column).text() for row in range(table.rowCount())]


def _penumbra_value(panel) -> str:
    return panel.table.item(_column_texts(panel.table, 0).index("penumbra"), 2).text()


def test_feature_names_are_the_registrys(predictions):
    assert feature_title("fluorine_cells") == "¹⁹F cells (cells)"
    assert feature_title("days_since_transplant") == "Days since transplantation (days)"
    assert feature_title("no_such_feature") == "no_such_feature"
    row = _column_texts(predictions.table, 0).index("penumbra")
    predictions.table.selectRow(row)
    _, _, prediction = predictions._rows[row]
    features = sorted(prediction.contributions, key=lambda name: -abs(prediction.contributions[name]))
    shown = [text.removeprefix("⚠ ") for text in _column_texts(predictions.contributions, 0)]
    assert shown == [feature_title(name) for name in features]
    assert "Live cells (cells)" in shown and "TSC (mM)" in shown
    assert not any("_" in text for text in shown)  # no identifier left
    tooltip = predictions.contributions.item(shown.index("TSC (mM)"), 0).toolTip()
    assert tooltip.startswith("sodium_mean_mM:")


def test_rows_without_a_value_say_why_in_readable_words(predictions, scene):
    values = _column_texts(predictions.table, 2)
    regions = _column_texts(predictions.table, 0)
    assert all(region for region in regions)
    assert values[regions.index("core")] == "not computed: the model applies to penumbra regions only"
    stats = copy.deepcopy(scene.results.latest("day 7"))
    stats.region("penumbra").values["suv_peak"] = None
    fill_predictions(stats, scene.models())
    predictions.show_stats(stats)
    text = _penumbra_value(predictions)
    assert text.startswith("not computed: ") and "SUVpeak (SUV) missing" in text and "suv_peak" not in text
    row = _column_texts(predictions.table, 0).index("penumbra")
    assert predictions.table.columnSpan(row, 2) == 2
    rect = predictions.table.visualRect(predictions.table.model().index(row, 2))
    assert predictions.table.viewport().rect().contains(rect)  # the reason is on screen, wrapped if need be


def test_a_long_warning_is_shown_complete(predictions, scene, qtbot):
    stats = copy.deepcopy(scene.results.latest("day 7"))
    penumbra = stats.region("penumbra")
    penumbra.values.update(sodium_mean_mM=140.0, live_cells=9.0e7, homing_fraction=0.99, dead_fraction=0.95)
    fill_predictions(stats, scene.models())
    predictions.resize(380, 900)  # narrower than the warnings
    predictions.show_stats(stats)
    settle()
    (_, prediction), = predictions_of(stats, scene.models())[penumbra.label]
    assert len(prediction.warnings) >= 3
    label = predictions.warnings_label
    assert label.isVisible() and label.wordWrap()
    for warning in prediction.warnings:
        assert readable(warning) in label.text()
    assert "…" not in label.text()
    line = label.fontMetrics().height()
    assert label.width() <= predictions.width()
    assert label.height() >= label.heightForWidth(label.width()) >= 2 * len(prediction.warnings) * line - 1
    assert label.fontMetrics().horizontalAdvance(readable(prediction.warnings[0])) > label.width()  # it did wrap


def test_the_timepoint_selector_shows_another_timepoints_predictions(predictions, scene, qtbot):
    combo = predictions.timepoint_combo
    assert combo.currentData() is None and "day 7" in combo.currentText()  # follows the views
    day7 = _penumbra_value(predictions)
    submitted = []
    scene.results.submit = submitted.append  # as in the window: computed elsewhere, delivered later
    combo.setCurrentIndex(combo.findData("day 21"))
    assert "day 21: not computed yet" in predictions.status.text()
    assert predictions.table.rowCount() == 0
    assert [request.timepoint for request in submitted] == ["day 21"]
    scene.results.deliver(submitted.pop().run())
    assert predictions.status.text() == "Predictions for day 21"
    stats = scene.results.latest("day 21")
    (_, expected), = predictions_of(stats, scene.models())[stats.region("penumbra").label]
    assert _penumbra_value(predictions) == f"{expected.value:.2f}" != day7
    assert scene.timepoint_index == 1  # the views stay on day 7
    # the views moving does not move a chosen timepoint…
    scene.set_timepoint(0)
    assert _penumbra_value(predictions) == f"{expected.value:.2f}"
    assert "day 1" in combo.itemText(0)
    # …and following the views again shows theirs (day 1, asked for: its penumbra cells are
    # below detection at the demo's noise, so the row says why instead of a value)
    combo.setCurrentIndex(0)
    assert [request.timepoint for request in submitted] == ["day 1"]
    scene.results.deliver(submitted.pop().run())
    assert predictions.status.text() == "Predictions for day 1"
    assert _penumbra_value(predictions) not in (day7, f"{expected.value:.2f}")
