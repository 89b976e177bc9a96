"""RegionPanel on the demo study: titles from the measures, alerts, numeric sorting, CSV,
time course, and the timepoint selector bound to the scene."""

from __future__ import annotations

import copy
import gc
import math
import weakref

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from viewer.core.quant.measures import REGION_MEASURES, region_measure
from viewer.core.quant.stats import StudyStats
from viewer.ui.region_panel import RegionPanel
from viewer.ui.region_table import ALERT_SIGN, SORT_ROLE, TABLE_MEASURES, header_tooltip

Qt = QtCore.Qt
CELL_REGIONS = {"core", "penumbra", "injection site", "contralateral white matter"}


@pytest.fixture
def panel(qtbot, scene, demo_stats):
    widget = RegionPanel(scene)
    qtbot.addWidget(widget)
    widget.resize(560, 900)
    widget.show_time_course(list(demo_stats.values()))
    widget.show_stats(demo_stats[scene.timepoint.label])
    return widget


def column(key: str) -> int:
    return next(i for i, m in enumerate(TABLE_MEASURES) if m.key == key)


def view_column(panel: RegionPanel, key: str) -> list:
    """(display text) of a column in view (sorted) order."""
    proxy = panel.proxy
    return [proxy.index(row, column(key)).data() for row in range(proxy.rowCount())]


def sort_by(panel: RegionPanel, key: str, order: Qt.SortOrder) -> None:
    panel.table.sortByColumn(column(key), order)


def row_of(panel: RegionPanel, name: str) -> int:
    return view_column(panel, "name").index(name)


def test_headers_are_measure_titles_with_descriptions(panel):
    model = panel.proxy
    titles = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    expected = [m for m in REGION_MEASURES if m.key not in ("label", "prediction", "fluorine_cells_ci95_low",
                                                             "fluorine_cells_ci95_high")]
    assert sorted(titles) == sorted([m.title for m in expected] + ["¹⁹F cells, 95 % interval (cells)"])  # grouped
    assert titles.index("¹⁹F cells, 95 % interval (cells)") == titles.index("¹⁹F cells (cells)") + 1
    assert "SUVpeak (SUV)" in titles and "¹⁹F cells (cells)" in titles and "TSC (mM)" in titles
    # schema order within groups; homing joins the other ¹⁹F columns
    assert titles[:2] == ["Region", "Volume (mL)"]
    assert titles.index("Homing") == titles.index("Below detection") + 1
    assert titles.index("Dead cells (cells)") < titles.index("SUVmax (SUV)") < titles.index("TSC (mM)")
    tooltips = [model.headerData(c, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole) for c in range(model.columnCount())]
    assert tooltips == [header_tooltip(m) for m in TABLE_MEASURES]
    suv = tooltips[titles.index("SUVpeak (SUV)")]
    assert region_measure("suv_peak").description in suv and "Units: SUV" in suv
    assert "Units: mM" in tooltips[titles.index("TSC (mM)")]


def test_cells_are_formatted_by_the_measures(panel, demo_stats):
    core = demo_stats["day 1"].region("core")
    row = row_of(panel, "core")
    for key in ("volume_ml", "fluorine_cells", "dead_fraction", "suv_peak", "below_detection"):
        assert panel.proxy.index(row, column(key)).data() == region_measure(key).format(core.values[key])


def test_rejection_alert_is_highlighted_at_day_7(panel, demo_stats):
    panel.show_stats(demo_stats["day 7"])
    row = row_of(panel, "injection site")
    alert = panel.proxy.index(row, column("rejection_alert"))
    fraction = panel.proxy.index(row, column("dead_fraction"))
    assert alert.data().startswith(ALERT_SIGN)
    assert fraction.data(Qt.ItemDataRole.BackgroundRole).color().red() > 200
    assert fraction.data(Qt.ItemDataRole.BackgroundRole).color().green() < 230
    assert fraction.data(Qt.ItemDataRole.FontRole).bold()
    red = fraction.data(Qt.ItemDataRole.ForegroundRole).color()
    assert red.red() > 150 and red.green() < 50
    # A region without alert keeps the default look.
    calm = panel.proxy.index(row_of(panel, "penumbra"), column("dead_fraction"))
    assert calm.data(Qt.ItemDataRole.BackgroundRole) is None
    assert ALERT_SIGN not in panel.proxy.index(row_of(panel, "penumbra"), column("rejection_alert")).data()
    text = panel.alert_label.text()
    fraction_value = demo_stats["day 7"].region("injection site").values["dead_fraction"]
    assert fraction_value >= 0.2  # the demo's 25 % dead at day 7, measured at its noise
    assert f"Rejection alert: injection site — dead fraction {fraction_value:.2f} ≥ 0.20" in text
    assert panel.alert_label.isVisibleTo(panel)


def test_no_alert_at_day_1(panel):
    assert panel.alert_label.text() == ""
    assert not panel.alert_label.isVisibleTo(panel)


def test_summary_and_notes(panel, demo_stats):
    stats = demo_stats["day 1"]
    summary = panel.summary_label.text()
    assert "Detection limit" in summary and "cells/mm³" in summary
    assert "Homing" in summary and "% penumbra" in summary
    assert stats.mismatch.describe().split(":")[0] in summary
    assert panel.notes_view.toPlainText().count("•") == len(stats.notes)
    assert not panel.notes_view.isVisibleTo(panel)
    panel.notes_toggle.click()
    assert panel.notes_view.isVisibleTo(panel)


@pytest.mark.parametrize("label, first", [("day 1", "injection site"), ("day 21", "penumbra")])
def test_sorting_is_numeric(panel, demo_stats, label, first):
    stats = demo_stats[label]
    panel.show_stats(stats)
    sort_by(panel, "fluorine_cells", Qt.SortOrder.DescendingOrder)
    names = view_column(panel, "name")
    assert names[0] == first
    counted = sorted((r for r in stats.regions if r.values["fluorine_cells"] is not None),
                     key=lambda r: -r.values["fluorine_cells"])
    assert names[:len(counted)] == [r.name for r in counted]


def test_missing_values_show_a_dash_and_sort_last_both_ways(panel):
    for order in (Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder):
        sort_by(panel, "fluorine_cells", order)
        texts = view_column(panel, "fluorine_cells")
        names = view_column(panel, "name")
        assert texts[-2:] == ["—", "—"]
        assert set(names[-2:]) == {"reference", "background"}
        assert "—" not in texts[:-2]
        raw = [panel.proxy.index(r, column("fluorine_cells")).data(SORT_ROLE) for r in range(len(texts) - 2)]
        assert raw == sorted(raw, reverse=order == Qt.SortOrder.DescendingOrder)


def test_show_stats_keeps_sort_and_selection(panel, demo_stats):
    sort_by(panel, "fluorine_cells", Qt.SortOrder.DescendingOrder)
    panel.select_region("core")
    assert panel.selected_region_names() == ["core"]
    panel.show_stats(demo_stats["day 21"])
    header = panel.table.horizontalHeader()
    assert header.sortIndicatorSection() == column("fluorine_cells")
    assert header.sortIndicatorOrder() == Qt.SortOrder.DescendingOrder
    assert view_column(panel, "name")[0] == "penumbra"
    assert panel.selected_region_names() == ["core"]


def test_copy_csv_matches_viewer_stats(panel, demo_stats, scene):
    panel.show_stats(demo_stats["day 7"])
    QtGui.QGuiApplication.clipboard().clear()
    panel.copy_button.click()
    text = QtGui.QGuiApplication.clipboard().text()
    expected = StudyStats(scene.study.id, [demo_stats["day 7"]], []).to_csv()
    assert text == expected
    header = text.splitlines()[0].split(",")
    assert header == StudyStats(scene.study.id, list(demo_stats.values()), []).to_csv().splitlines()[0].split(",")
    assert header[:3] == ["timepoint_label", "timepoint_day", "detection_limit_cells_per_mm3"]
    assert len(text.splitlines()) == 1 + len(demo_stats["day 7"].regions)


def test_time_course_has_live_and_dead_curves(panel, demo_stats):
    curves = panel.plot.curves
    assert set(curves) == CELL_REGIONS  # reference and background have no cell numbers
    days = [s.day for s in demo_stats.values()]
    for name, (live, dead) in curves.items():
        for curve, key in ((live, "live_cells"), (dead, "dead_cells")):
            x, y = curve.getData()
            assert list(x) == days
            expected = [s.region(name).values[key] for s in demo_stats.values()]
            np.testing.assert_allclose(y, expected)
        assert live.opts["pen"].style() == Qt.PenStyle.SolidLine and live.opts["symbol"] is not None
        assert dead.opts["pen"].style() == Qt.PenStyle.DashLine
        assert live.opts["pen"].color() == dead.opts["pen"].color()
    legend_names = [label.text for _, label in panel.plot.legend.items]
    assert CELL_REGIONS <= set(legend_names) and {"live", "dead"} <= set(legend_names)
    item = panel.plot.getPlotItem()
    assert item.getAxis("bottom").labelText == "days after transplantation"
    assert item.getAxis("left").labelText == "cells"
    assert panel.plot.current_line.value() == 1.0


def test_show_stats_updates_its_timepoint_in_the_course(panel, demo_stats):
    edited = copy.deepcopy(demo_stats["day 7"])
    edited.region("core").values["live_cells"] = 123.0
    panel.show_stats(edited)
    _, y = panel.plot.curves["core"][0].getData()
    assert y[1] == 123.0


def test_selector_drives_the_scene_and_follows_it(panel, scene, qtbot):
    combo = panel.timepoint_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["day 1", "day 7", "day 21"]
    combo.setCurrentIndex(2)
    assert scene.timepoint_index == 2
    assert panel.plot.current_line.value() == 21.0
    assert "day 21 is being computed" in panel.status_label.text()
    scene.set_timepoint(1)
    assert combo.currentIndex() == 1
    assert panel.plot.current_line.value() == 7.0


def test_double_click_activates_the_region(panel, qtbot):
    sort_by(panel, "fluorine_cells", Qt.SortOrder.DescendingOrder)
    index = panel.proxy.index(0, column("name"))
    with qtbot.waitSignal(panel.region_activated) as blocker:
        panel.table.doubleClicked.emit(index)
    assert blocker.args == [3]  # injection site


def test_deleted_panel_leaves_the_scene(qtbot, scene, demo_stats):
    widget = RegionPanel(scene)
    ref = weakref.ref(widget)
    widget.deleteLater()
    del widget
    qtbot.wait(10)
    QtWidgets.QApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    gc.collect()
    scene.set_timepoint(1)  # must not call into the deleted widget
    assert ref() is None


def test_screenshot(panel, demo_stats, tmp_path):
    panel.show_stats(demo_stats["day 7"])
    panel.scene.set_timepoint(1)
    sort_by(panel, "fluorine_cells", Qt.SortOrder.DescendingOrder)
    panel.show()
    path = tmp_path / "region_panel.png"
    assert panel.grab().save(str(path))
    image = QtGui.QImage(str(path))
    assert (image.width(), image.height()) == (panel.width(), panel.height())


def test_time_course_matches_regions_by_name_and_day(panel, demo_stats):
    """A region missing at one timepoint keeps its other points at their own days."""
    stats = [copy.deepcopy(s) for s in demo_stats.values()]
    stats[1].regions = [r for r in stats[1].regions if r.name != "core"]
    panel.show_time_course(stats)
    x, y = panel.plot.curves["core"][0].getData()
    assert list(x) == [1.0, 7.0, 21.0]
    assert math.isnan(y[1])
    assert y[2] == stats[2].region("core").values["live_cells"]
