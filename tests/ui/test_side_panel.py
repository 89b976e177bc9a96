"""The side panel while annotating shows the region numbers, and the region table's column
groups are remembered across windows."""

from __future__ import annotations

from tests.ui.conftest import open_window
from viewer.ui.region_table import TABLE_MEASURES


def test_the_annotate_tab_shows_the_region_numbers_that_follow_a_stroke(qtbot, window):
    side = window._side
    index = next(i for i in range(side.count()) if side.tabText(i) == "Annotate")
    side.setCurrentIndex(index)
    tab = side.widget(index)
    assert window.annotation_panel.isVisibleTo(tab)
    compact = next(w for w in window.region_panel._compact_tables if w.isVisibleTo(tab))
    qtbot.waitUntil(lambda: compact.model().rowCount() == 6, timeout=20_000)
    shown = [m.key for c, m in enumerate(TABLE_MEASURES) if not compact.isColumnHidden(c)]
    assert set(shown) == set(window.region_panel.COMPACT_KEYS)
    assert compact.viewport().height() >= 3 * compact.rowHeight(0)  # rows visible, not squashed


def test_hidden_column_groups_stay_hidden_in_the_next_window(qtbot, settings, demo_manifest):
    first = open_window(qtbot, settings, demo_manifest)
    qtbot.waitUntil(lambda: first.region_panel.model.rowCount() > 0, timeout=20_000)
    first.region_panel.set_group_visible("pet", False)
    assert first.region_panel.group_choice.get("pet") is False
    first.close()
    second = open_window(qtbot, settings, demo_manifest)
    qtbot.waitUntil(lambda: second.region_panel.model.rowCount() > 0, timeout=20_000)
    assert not second.region_panel.group_shown("pet")
    assert second.region_panel.group_shown("fluorine") or "fluorine" not in second.region_panel.group_buttons
