"""Layers panel and colour bars: every control writes through the Scene and follows it back."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6 import QtCore, QtWidgets

from viewer.core.display import DisplayProps
from viewer.core.io.study import load_study
from viewer.core.scene import Scene
from viewer.core.volume import Volume
from viewer.ui.colorbar import (
    ColorBar,
    ColorBarStack,
    format_value,
    layer_title,
    value_decimals,
)
from viewer.ui.layer_panel import LayerPanel, volume_histogram

Checked = QtCore.Qt.CheckState.Checked
Unchecked = QtCore.Qt.CheckState.Unchecked


@pytest.fixture(scope="module")
def study(demo_manifest):
    return load_study(demo_manifest)


@pytest.fixture
def scene(study):
    """A fresh scene per test (display state is per scene; volumes are re-read lazily), with
    every layer shown (the "all" protocol): these tests edit and stack every overlay."""
    scene = Scene(study)
    scene.set_protocol("all")
    return scene


@pytest.fixture
def panel(qtbot, scene):
    widget = LayerPanel(scene)
    qtbot.addWidget(widget)
    widget.resize(320, 620)
    return widget


@pytest.fixture
def display_events(scene):
    seen: list[str] = []
    scene.events.connect("display", lambda role=None, **_: seen.append(role))
    return seen


# -- the list --------------------------------------------------------------------------------------

def test_lists_every_layer_top_most_first_and_anatomy_last(panel, scene):
    drawing_order = [layer.volume.role for layer in scene.layers()]
    assert panel.listed_roles() == drawing_order[::-1]
    assert panel.listed_roles()[-1] == "anatomical"
    assert panel.item_of("pet").text() == "PET (SUV)"
    assert panel.item_of("gd").text() == "ΔR1 (1/s)"
    assert not panel.item_of("pet").icon().isNull()  # colormap swatch


def test_unchecking_pet_hides_it_through_the_scene(panel, scene, display_events):
    panel.item_of("pet").setCheckState(Unchecked)
    assert scene.display["pet"].visible is False
    assert display_events == ["pet"]
    panel.item_of("pet").setCheckState(Checked)
    assert scene.display["pet"].visible is True


def test_scene_visibility_updates_the_checkbox(panel, scene):
    scene.set_display("fluorine", visible=False)
    assert panel.item_of("fluorine").checkState() == Unchecked


# -- the editor ------------------------------------------------------------------------------------

def test_opacity_slider_sets_opacity(panel, scene):
    panel.select_role("pet")
    panel.editor.opacity_slider.setValue(30)
    assert scene.display["pet"].opacity == pytest.approx(0.3)
    assert panel.editor.opacity_label.text() == "30 %"


def test_colormap_combo_changes_the_display_and_the_swatch(panel, scene):
    panel.select_role("fluorine")
    before = panel.item_of("fluorine").icon().pixmap(36, 12).toImage()
    combo = panel.editor.colormap_combo
    combo.setCurrentIndex(combo.findData("pet"))
    assert scene.display["fluorine"].colormap == "pet"
    assert panel.item_of("fluorine").icon().pixmap(36, 12).toImage() != before
    assert "labels" not in [combo.itemData(i) for i in range(combo.count())]


def test_regions_keep_labels_and_minimal_controls(panel, qtbot, scene):
    panel.show()
    qtbot.waitExposed(panel)
    panel.select_role("regions")
    editor = panel.editor
    assert editor.colormap_combo.currentData() == "labels" and not editor.colormap_combo.isEnabled()
    assert not editor.histogram.isVisible() and not editor.level_min.isVisible()
    assert editor.opacity_slider.isVisible()
    assert panel.item_of("regions").text() == "regions"


def test_typing_levels_into_the_spinboxes(panel, qtbot, scene):
    panel.select_role("gd")
    editor = panel.editor
    assert editor.level_max.decimals() >= 5  # ΔR1 levels are ~0.003 1/s
    low_before, high_before = scene.display["gd"].levels
    typed = round(low_before + 0.5 * (high_before - low_before), editor.level_min.decimals())
    editor.level_min.lineEdit().selectAll()
    qtbot.keyClicks(editor.level_min.lineEdit(), f"{typed:.{editor.level_min.decimals()}f}")
    qtbot.keyClick(editor.level_min.lineEdit(), QtCore.Qt.Key.Key_Return)
    assert scene.display["gd"].levels == (pytest.approx(typed), high_before)  # the other end kept exactly
    editor.level_max.setValue(round(2 * high_before, editor.level_max.decimals()))
    assert scene.display["gd"].levels == (pytest.approx(typed), pytest.approx(2 * high_before, rel=1e-3))


def test_empty_level_range_is_refused(panel, scene):
    panel.select_role("pet")
    before = scene.display["pet"].levels
    panel.editor.level_min.setValue(before[1] + 1.0)
    assert scene.display["pet"].levels == before
    assert panel.editor.level_min.value() == pytest.approx(before[0], abs=1e-2)


def test_dragging_a_histogram_level_line_sets_levels(panel, scene):
    panel.select_role("pet")
    low, _ = scene.display["pet"].levels
    panel.editor.histogram.lines["level_high"].setValue(3.5)  # what a drag does
    assert scene.display["pet"].levels == (low, pytest.approx(3.5))
    assert panel.editor.level_max.value() == pytest.approx(3.5)


def test_dragging_the_threshold_line_sets_the_visible_range(panel, scene):
    panel.select_role("pet")
    panel.editor.histogram.lines["visible_low"].setValue(2.0)
    assert scene.display["pet"].visible_range == (pytest.approx(2.0), np.inf)
    assert panel.editor.hide_below.value() == pytest.approx(2.0)


def test_adc_exposes_both_bounds_of_the_visible_range(panel, scene):
    panel.select_role("adc")
    editor = panel.editor
    assert editor.hide_below_check.isChecked() and editor.hide_above_check.isChecked()
    assert (editor.hide_below.value(), editor.hide_above.value()) == pytest.approx(scene.display["adc"].visible_range)
    editor.hide_above.setValue(700)
    assert scene.display["adc"].visible_range[1] == pytest.approx(700)
    editor.hide_above_check.setChecked(False)
    assert scene.display["adc"].visible_range[1] == np.inf
    assert not editor.histogram.lines["visible_high"].isVisible()


def test_scene_changes_update_the_editor_without_feedback(panel, scene, display_events):
    panel.select_role("gd")
    scene.set_display("gd", levels=(0.0, 0.05))
    editor = panel.editor
    assert editor.level_min.value() == 0.0 and editor.level_max.value() == pytest.approx(0.05)
    assert editor.histogram.lines["level_high"].value() == pytest.approx(0.05)
    scene.set_display("gd", opacity=0.25, colormap="hot")
    assert editor.opacity_slider.value() == 25 and editor.colormap_combo.currentData() == "hot"
    assert display_events == ["gd", "gd"]  # syncing wrote nothing back


def test_up_and_down_buttons_reorder_the_scene(panel, scene):
    panel.select_role("pet")
    listed = panel.listed_roles()
    above = listed[listed.index("pet") - 1]
    panel.up_button.click()
    assert scene.order.index("pet") > scene.order.index(above)
    assert panel.listed_roles().index("pet") == listed.index("pet") - 1
    assert panel.selected_role() == "pet"
    panel.down_button.click()
    assert panel.listed_roles() == listed


def test_move_buttons_at_the_ends(panel, scene):
    panel.select_role("anatomical")
    assert not panel.up_button.isEnabled() and not panel.down_button.isEnabled()
    panel.select_role(panel.listed_roles()[0])
    assert not panel.up_button.isEnabled() and panel.down_button.isEnabled()
    panel.select_role(panel.listed_roles()[-2])
    assert panel.up_button.isEnabled() and not panel.down_button.isEnabled()


def test_timepoint_rebuilds_the_list_and_keeps_the_selection(panel, scene):
    panel.select_role("spio")
    old_volume = panel.editor.volume
    scene.set_timepoint(1)
    assert panel.selected_role() == "spio"
    assert panel.editor.volume is scene.volumes["spio"] and panel.editor.volume is not old_volume
    assert panel.listed_roles() == [layer.volume.role for layer in scene.layers()][::-1]


# -- histogram -------------------------------------------------------------------------------------

def _synthetic(role: str = "pet", shape=(9, 7, 5), seed: int = 3) -> Volume:
    data = np.random.default_rng(seed).gamma(2.0, 1.5, size=shape).astype(np.float32)
    data[0, 0, :2] = np.nan
    data[1, 0, 0] = np.inf
    return Volume.from_array(data, np.eye(4), role=role)


def test_histogram_counts_the_whole_volume():
    volume = _synthetic()
    histogram = volume_histogram(volume, bins=32)
    finite = volume.data[np.isfinite(volume.data)]
    counts, edges = np.histogram(finite, bins=32)
    np.testing.assert_array_equal(histogram.counts, counts)
    np.testing.assert_allclose(histogram.edges, edges)
    assert histogram.stride == 1 and histogram.counts.sum() == volume.data.size - 3


def test_histogram_subsamples_big_volumes_and_bins_integers_whole():
    volume = _synthetic(shape=(20, 20, 20))
    assert volume_histogram(volume, max_samples=1000).stride == 8
    labels = Volume.from_array(np.arange(60, dtype=np.uint8).reshape(3, 4, 5) % 7, np.eye(4), role="anatomical")
    histogram = volume_histogram(labels)
    assert histogram.counts.tolist() == np.bincount(labels.data.ravel()).tolist()


def test_editor_caches_the_histogram_per_volume(panel, scene):
    panel.select_role("pet")
    editor = panel.editor
    volume = scene.volumes["pet"]
    assert editor.histogram_of(volume) is editor.histogram_of(volume)
    plotted_x, _ = editor.histogram.curve.getData()
    assert len(plotted_x) == len(editor.histogram_of(volume).edges)


# -- colour bars -----------------------------------------------------------------------------------

def test_titles_and_tick_formats():
    assert layer_title("pet", "SUV") == "PET (SUV)"
    assert layer_title("gd", "1/s") == "ΔR1 (1/s)"
    assert layer_title("fluorine", "a.u.") == "¹⁹F signal (a.u.)"
    assert value_decimals(0.003) == 6 and value_decimals(1000) == 0
    assert format_value(-0.0001, 2) == "0.00" and format_value(-2.5, 1) == "−2.5"


def test_colorbar_title_ticks_and_marker(qtbot):
    bar = ColorBar()
    qtbot.addWidget(bar)
    bar.set_layer("gd", "1/s", DisplayProps("green", (0.0, 0.03), (0.01, np.inf), 0.7))
    assert bar.title == "ΔR1 (1/s)"
    assert bar.title_lines() == ["ΔR1", "(1/s)"]
    assert bar.tick_texts() == ["0.000", "0.015", "0.030"]
    assert bar.marker_values() == [0.01]
    bar.set_layer("gd", "1/s", DisplayProps("green", (0.0, 0.03), (0.05, np.inf), 0.7))
    assert bar.marker_values() == []  # threshold outside the levels: no marker
    horizontal = ColorBar(QtCore.Qt.Orientation.Horizontal)
    qtbot.addWidget(horizontal)
    horizontal.set_layer("fluorine", "a.u.", DisplayProps("hot", (0.0, 40.0)))
    assert horizontal.title_lines() == ["¹⁹F signal (a.u.)"]


def test_colorbar_paints_its_colormap(qtbot):
    bar = ColorBar()
    qtbot.addWidget(bar)
    bar.resize(70, 200)
    bar.set_layer("gd", "1/s", DisplayProps("green", (0.0, 1.0)))
    image = bar.grab().toImage()
    colours = {image.pixelColor(x, y).getRgb()[:3] for x in range(70) for y in range(0, 200, 4)}
    assert any(g > 150 and r < 60 and b < 100 for r, g, b in colours)  # green LUT drawn
    assert (0, 0, 0) in colours  # black background


def test_colorbar_stack_follows_visible_overlays(qtbot, scene):
    stack = ColorBarStack(scene)
    qtbot.addWidget(stack)
    overlays = [layer.volume.role for layer in scene.layers() if layer.volume.role not in ("anatomical", "regions")]
    assert stack.roles() == overlays[::-1]
    assert [bar.title for bar in stack.bars][:2] == ["¹⁹F signal (a.u.)", "ΔR1 (1/s)"]
    scene.set_display("pet", visible=False)
    assert "pet" not in stack.roles() and len(stack.bars) == len(overlays) - 1
    scene.set_display("pet", visible=True)
    assert "pet" in stack.roles()
    scene.set_display("gd", levels=(0.0, 0.05))
    gd_bar = stack.bars[stack.roles().index("gd")]
    assert gd_bar.props.levels == (0.0, 0.05)
    scene.move_layer("fluorine", -1)
    assert stack.roles()[:2] == ["gd", "fluorine"]


def test_colorbar_stack_wraps_into_columns_when_short(qtbot, scene):
    stack = ColorBarStack(scene)
    qtbot.addWidget(stack)
    stack.resize(160, 600)
    stack.show()
    qtbot.waitExposed(stack)
    one_column = stack.minimumWidth()
    stack.resize(160, 250)
    qtbot.waitUntil(lambda: stack.minimumWidth() > one_column)
    assert stack.minimumHeight() <= ColorBar.minimum_size(QtCore.Qt.Orientation.Vertical).height()


def test_widgets_do_not_outlive_their_deletion(qtbot, scene):
    """Scene events hold widgets weakly; a deleted widget is disconnected, never called."""
    panel = LayerPanel(scene)
    stack = ColorBarStack(scene)
    refs = [weakref.ref(panel), weakref.ref(stack)]
    panel.deleteLater()
    stack.deleteLater()
    del panel, stack
    qtbot.wait(10)
    QtWidgets.QApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    gc.collect()
    assert all(ref() is None for ref in refs)
    scene.set_display("pet", visible=False)  # must not touch the deleted widgets
    assert not any(scene.events._callbacks[name] for name in ("display", "order", "timepoint"))


# -- screenshots (looked at by hand; kept as test artefacts) ------------------------------------------

def test_screenshots(qtbot, scene, tmp_path):
    panel = LayerPanel(scene)
    qtbot.addWidget(panel)
    panel.resize(320, 560)
    panel.select_role("adc")
    panel.show()
    qtbot.waitExposed(panel)
    stack = ColorBarStack(scene)
    qtbot.addWidget(stack)
    stack.resize(150, 600)
    stack.show()
    qtbot.waitExposed(stack)
    qtbot.waitUntil(lambda: stack._layout_shape[0] == len(stack.bars))  # one column at 600 px
    qtbot.wait(50)  # let the layouts settle before grabbing
    for name, widget in (("layer_panel.png", panel), ("colorbar_stack.png", stack)):
        assert widget.grab().save(str(tmp_path / name))
        assert (tmp_path / name).stat().st_size > 2000
