"""The toolbar's numeric window/level: typed values, presets and the right-drag agree."""

from __future__ import annotations

import pytest


def test_typed_window_and_level_set_the_anatomy_levels(window):
    bar = window.window_level
    assert bar.isEnabled()
    bar.width_spin.setValue(400.0)
    bar.level_spin.setValue(250.0)
    assert window.scene.display["anatomical"].levels == pytest.approx((50.0, 450.0))


def test_a_preset_sets_its_levels_and_the_spins_follow(window):
    bar = window.window_level
    presets = bar.presets()
    assert [p.name for p in presets][:1] == ["Tissue"]  # the demo is MR
    index = next(i for i in range(bar.preset_combo.count()) if bar.preset_combo.itemText(i).startswith("High contrast"))
    bar.preset_combo.activated.emit(index)
    chosen = next(p for p in presets if p.name == "High contrast")
    assert window.scene.display["anatomical"].levels == pytest.approx(chosen.levels)
    assert bar.width_spin.value() == pytest.approx(chosen.width, rel=1e-3)
    assert bar.preset_combo.currentIndex() == 0  # back to the prompt
    opened = bar.preset_combo.itemData(bar.preset_combo.count() - 1)
    bar.preset_combo.activated.emit(bar.preset_combo.count() - 1)
    assert window.scene.display["anatomical"].levels == pytest.approx(opened)


def test_the_right_drag_updates_the_numbers(window):
    bar = window.window_level
    before = bar.width_spin.value()
    window._on_window_level(0.5, 0.0)  # what a right-drag to the right asks
    assert bar.width_spin.value() == pytest.approx(before * 1.5, rel=1e-3)
