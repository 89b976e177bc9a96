"""The main window driven with pytest-qt (offscreen): model state *and* grabbed pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtTest import QTest


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _wait_redraw(qtbot, win, orientation: str = "axial") -> None:
    with qtbot.waitSignal(win.frame_drawn, timeout=10_000, check_params_cb=lambda o: o == orientation):
        pass


def _pixel(view, world) -> tuple[int, int, int]:
    """Colour the user sees at a world point of a view (grabbed from the widget)."""
    point = view.view_position_of(np.asarray(world, float))
    image = view.graphics.grab().toImage()
    color = QtGui.QColor(image.pixel(int(point.x()), int(point.y())))
    return color.red(), color.green(), color.blue()


def _shown_rgb(view, world) -> np.ndarray:
    row, col, _ = view.plane.world_to_pixel(np.asarray(world, float))
    return view.image.image[int(round(row)), int(round(col))].astype(int)


def _warm(rgb) -> bool:
    """A hot-colormap colour (red/orange/yellow), not grey anatomy nor a cyan/green overlay."""
    r, g, b = (int(v) for v in rgb)
    return r > 180 and r - b > 80 and r >= g


def _warm_pixels(view, world, radius_mm: float = 6.0) -> np.ndarray:
    """(row, col) of hot-coloured pixels of the shown image within ``radius_mm`` of a point."""
    image = view.image.image.astype(int)
    row, col, _ = view.plane.world_to_pixel(np.asarray(world, float))
    rows, cols = np.indices(image.shape[:2])
    near = np.hypot((rows - row) * view.plane.row_step_mm, (cols - col) * view.plane.col_step_mm) <= radius_mm
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    warm = (r > 180) & (r - b > 80) & (r >= g)
    return np.argwhere(near & warm)


def test_opens_on_the_hotspot_with_hot_colour_on_the_patients_right(window):
    scene = window.scene
    axial = window.ortho.views["axial"]
    assert scene.readout()[-1][1] == "injection site"
    warm = _warm_pixels(axial, scene.cursor)
    assert len(warm) > 10
    # radiological: the hotspot in the right hemisphere (x > 0) is drawn on the left half
    assert warm[:, 1].mean() < axial.plane.shape[1] / 2
    x = axial.view_position_of(scene.cursor).x()
    assert x < axial.graphics.width() / 2
    # what the widget itself shows there (grabbed pixels), at one of the hot pixels
    row, col = warm[len(warm) // 2]
    world = axial.plane.pixel_to_world_points(np.array([row]), np.array([col]))[0]
    assert _warm(_pixel(axial, world))
    assert axial._letters["left"].text() == "R" and axial._letters["top"].text() == "A"


def test_wheel_scrolls_slices_and_click_moves_the_cursor(window, qtbot):
    scene = window.scene
    axial = window.ortho.views["axial"]
    slice0 = scene.plane("axial").slice_index
    viewport = axial.graphics.viewport()
    center = QtCore.QPointF(viewport.width() / 2, viewport.height() / 2)
    wheel = QtGui.QWheelEvent(center, viewport.mapToGlobal(center), QtCore.QPoint(), QtCore.QPoint(0, 120),
                              QtCore.Qt.MouseButton.NoButton, QtCore.Qt.KeyboardModifier.NoModifier,
                              QtCore.Qt.ScrollPhase.NoScrollPhase, False)
    QtWidgets.QApplication.sendEvent(viewport, wheel)
    assert scene.plane("axial").slice_index == slice0 + 1  # one notch up = one slice superior
    _wait_redraw(qtbot, window, "axial")
    target = scene.cursor + np.array([-40.0, -20.0, 0.0])
    position = axial.view_position_of(target)
    QTest.mouseClick(viewport, QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier, position)
    assert scene.cursor[:2] == pytest.approx(target[:2], abs=1.5)
    for name, view in window.ortho.views.items():
        assert view.plane is not None
    qtbot.waitUntil(lambda: window.ortho.views["sagittal"].plane.slice_index
                    == window.scene.plane("sagittal").slice_index, timeout=10_000)


def test_hiding_the_fluorine_layer_removes_its_colour(window, qtbot):
    scene = window.scene
    axial = window.ortho.views["axial"]
    assert len(_warm_pixels(axial, scene.cursor)) > 10
    scene.set_display("fluorine", visible=False)
    _wait_redraw(qtbot, window)
    assert len(_warm_pixels(axial, scene.cursor)) == 0
    scene.set_display("fluorine", visible=True)
    _wait_redraw(qtbot, window)
    assert len(_warm_pixels(axial, scene.cursor)) > 10


def test_right_drag_changes_window_level_of_the_anatomy(window, qtbot):
    scene = window.scene
    before = scene.display["anatomical"].levels
    axial = window.ortho.views["axial"]
    far = scene.cursor + np.array([-30.0, 30.0, 0.0])  # anatomy only, no overlay there
    shown_before = _shown_rgb(axial, far)
    axial.window_level_requested.emit(0.0, 0.3)  # drag up: raise the level
    _wait_redraw(qtbot, window)
    after = scene.display["anatomical"].levels
    assert after[0] > before[0] and after[1] > before[1]
    assert _shown_rgb(axial, far).sum() < shown_before.sum()  # a higher level darkens tissue


def test_switching_timepoint_redraws_and_keeps_the_cursor(window, qtbot):
    scene = window.scene
    cursor = scene.cursor.copy()
    before = window.ortho.views["axial"].image.image.copy()
    scene.set_timepoint(2)
    _wait_redraw(qtbot, window)
    assert scene.cursor == pytest.approx(cursor)
    assert not np.array_equal(before, window.ortho.views["axial"].image.image)


def test_radiological_toggle_flips_letters_and_is_remembered(window, qtbot, settings):
    window.radiological_action.trigger()
    _wait_redraw(qtbot, window)
    assert window.ortho.views["axial"]._letters["left"].text() == "L"
    assert settings.value("view/radiological") == "false"


def test_layouts_switch_with_number_keys_and_are_remembered(window, settings):
    QTest.keyClick(window, QtCore.Qt.Key.Key_2)
    assert window.ortho.layout_name == "1+2"
    assert settings.value("view/layout") == "1+2"
    QTest.keyClick(window, QtCore.Qt.Key.Key_1)
    assert window.ortho.layout_name == "1x3"


def test_errors_show_a_dialog_and_the_app_keeps_running(window, tmp_path):
    assert not window.open(tmp_path / "nope" / "study.toml")
    assert "file not found" in window.last_error
    assert window.scene is not None and window.ortho.views["axial"].plane is not None


def test_drop_of_a_study_opens_it(window, demo_manifest, qtbot):
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(demo_manifest))])
    old_scene = window.scene
    event = QtGui.QDropEvent(QtCore.QPointF(10, 10), QtCore.Qt.DropAction.CopyAction, mime,
                             QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert window.scene is not old_scene
    assert str(demo_manifest.resolve()) in window.recent_studies()


def test_screenshot_of_window_and_view(window, tmp_path):
    path = window.save_screenshot(tmp_path / "window.png")
    image = QtGui.QImage(str(path))
    assert image.width() > 800
    colors = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert len(colors) > 200
    view_path = window.save_screenshot(tmp_path / "axial.png", "axial")
    assert QtGui.QImage(str(view_path)).width() < image.width()


def test_region_panel_receives_the_statistics(window, qtbot):
    qtbot.waitUntil(lambda: len(window.scene.results.ready()) == 3, timeout=30_000)
    assert {t.label for t in window.scene.results.ready()} == {"day 1", "day 7", "day 21"}
    day1 = window.scene.results.latest("day 1")
    injection = day1.region("injection site").values  # the demo put 58,000 cells there
    assert injection["fluorine_cells"] > 0
    assert injection["fluorine_cells_ci95_low"] <= 58_000 <= injection["fluorine_cells_ci95_high"]


def test_workspace_is_saved_beside_the_manifest_and_restored_on_reopening(qtbot, settings, tmp_path, demo_manifest):
    """PRODUCT.md §5: layout, displays, order, timepoint, cursor and each view's zoom come
    back when the study is opened again (issue 14)."""
    import shutil

    from tests.ui.conftest import open_window
    from viewer.core.workspace import workspace_path

    shutil.copytree(demo_manifest.parent, tmp_path / "study")
    manifest = tmp_path / "study" / "study.toml"
    settings.setValue("workspace/remember", "true")

    def opened():
        win = open_window(qtbot, settings, manifest)
        win.jobs.wait()
        QtWidgets.QApplication.processEvents()
        return win

    first = opened()
    scene = first.scene
    scene.set_timepoint(2)
    scene.set_display("fluorine", levels=(3.0, 40.0), opacity=0.5, colormap="green")
    scene.set_display("pet", visible=False)
    scene.move_layer("gd", +2)
    scene.set_cursor(scene.cursor + np.array([6.0, -4.0, 3.0]))
    first.set_layout("1+2")
    first.jobs.wait()
    QtWidgets.QApplication.processEvents()
    axial = first.ortho.views["axial"]
    (cx, cy), width = axial.view_state()
    axial._apply_view_state((cx + 10.0, cy - 5.0), width / 2)
    saved_state = axial.view_state()
    expected = (scene.timepoint.label, scene.display["fluorine"], scene.display["pet"].visible, list(scene.order),
                scene.cursor.copy())
    first.close()
    assert workspace_path(manifest).exists()

    second = opened()
    restored = second.scene
    assert restored.timepoint.label == expected[0] == "day 21"
    assert restored.display["fluorine"] == expected[1]
    assert restored.display["pet"].visible is False
    assert restored.order == expected[3]
    assert restored.cursor == pytest.approx(expected[4])
    assert second.ortho.layout_name == "1+2"
    state = second.ortho.views["axial"].view_state()
    assert state[0] == pytest.approx(saved_state[0], abs=0.5) and state[1] == pytest.approx(saved_state[1], rel=0.02)
    second.close()


def test_no_workspace_is_written_when_the_reader_turned_it_off(window, demo_manifest):
    from viewer.core.workspace import workspace_path

    assert not window.workspace_action.isChecked()
    window.scene.set_display("fluorine", opacity=0.3)
    window.save_workspace()
    assert not workspace_path(demo_manifest).exists()
    window.workspace_action.trigger()  # the reader turns it on: this study's workspace is kept
    assert window.remembers_workspace()
    window.workspace_action.trigger()
    assert not window.remembers_workspace()


def test_scale_bar_stays_inside_the_view_and_true_at_every_zoom(window, qtbot):
    """The scale bar (issue 15: it was clipped to "0 mm" when zoomed) lies inside the view,
    names a length that fits a quarter of it, and is that many mm long on screen."""
    view = window.ortho.views["axial"]
    (cx, cy), width = view.view_state()
    for factor in (1.0, 0.5, 0.25, 0.1, 0.04, 2.0):
        view._apply_view_state((cx, cy), width * factor)
        QtWidgets.QApplication.processEvents()
        bar = view.scale_bar
        bar.updateBar()
        rect = bar.mapRectToScene(bar.bar.rect())
        box = view.view_box.sceneBoundingRect()
        assert box.contains(rect), f"zoom {factor}: bar {rect} outside {box}"
        label = bar.text.mapRectToScene(bar.text.boundingRect())
        assert box.contains(label), f"zoom {factor}: label outside the view"
        assert bar.text.textItem.toPlainText() == f"{bar.length_mm:g} mm"
        (x0, x1), _ = view.view_box.viewRange()
        px_per_mm = box.width() / (x1 - x0)
        assert rect.width() == pytest.approx(bar.length_mm * px_per_mm, rel=0.02)
        assert rect.width() <= 0.25 * box.width() + 1


def test_captions_follow_the_cursor_in_the_view_clicked(window, qtbot):
    """Clicking in a view moves the cursor within its own plane: its image stays, but its
    caption must show the new coordinates (issue 15: it kept the old ones)."""
    scene = window.scene
    view = window.ortho.views["axial"]
    target = scene.cursor + np.array([7.0, -5.0, 0.0])  # same axial slice
    scene.set_cursor(target)
    window.jobs.wait()
    QtWidgets.QApplication.processEvents()
    x, y, z = scene.cursor
    for orientation, each in window.ortho.views.items():
        assert f"({x:.1f}, {y:.1f}, {z:.1f}) mm" in each.info.text(), orientation
    assert view.info.text().startswith("axial ")


def test_a_layout_change_fits_every_view_to_its_new_size(window, qtbot):
    for layout in ("1+2", "1x3"):
        window.set_layout(layout)
        qtbot.wait(50)
        QtWidgets.QApplication.processEvents()
        for orientation, view in window.ortho.views.items():
            brain = view.content_rect  # the anatomy's extent in the plane: what a view fits
            (x0, x1), (y0, y1) = view.view_box.viewRange()
            assert x0 <= brain.left() + 0.5 and x1 >= brain.right() - 0.5, (layout, orientation)
            assert y0 <= brain.top() + 0.5 and y1 >= brain.bottom() - 0.5, (layout, orientation)
            # the part of the view the colour bars leave free (they sit beside the anatomy)
            right, bottom = view.colorbar_reserve()
            mm_per_pixel = (x1 - x0) / view.view_box.sceneBoundingRect().width()
            spare = min(x1 - x0 - right * mm_per_pixel - brain.width(), y1 - y0 - bottom * mm_per_pixel - brain.height())
            assert spare < 0.15 * max(brain.width(), brain.height()), "fitted, not zoomed out"


def test_hover_shows_every_layers_value_without_a_click(window, qtbot):
    """Moving the mouse over a view updates the readout with the values under it; the cursor
    does not move; leaving the view shows the cursor's values again (issue 15)."""
    from PySide6.QtTest import QTest

    scene = window.scene
    view = window.ortho.views["axial"]
    cursor = scene.cursor.copy()
    viewport = view.graphics.viewport()
    target = cursor + np.array([12.0, 8.0, 0.0])
    point = view.view_position_of(target)
    QTest.mouseMove(viewport, point)
    move = QtGui.QMouseEvent(QtCore.QEvent.Type.MouseMove, QtCore.QPointF(point), QtCore.QPointF(viewport.mapToGlobal(point)),
                             QtCore.Qt.MouseButton.NoButton, QtCore.Qt.MouseButton.NoButton, QtCore.Qt.KeyboardModifier.NoModifier)
    QtWidgets.QApplication.sendEvent(viewport, move)
    qtbot.waitUntil(lambda: "under the mouse" in window.readout.text(), timeout=3000)
    assert np.allclose(scene.cursor, cursor), "hovering does not move the cursor"
    text = window.readout.text()
    expected = dict((name, value) for name, value, _ in scene.readout(view.world_at(view.view_box.mapSceneToView(
        view.graphics.mapToScene(point)))))
    assert f"anatomy: <b>{expected['anatomy']}</b>" in text
    view.hovered.emit(None)
    assert "<i>cursor</i>" in window.readout.text()


def test_slice_keys_work_in_the_view_under_the_mouse_without_a_click(window, qtbot):
    from PySide6.QtTest import QTest

    coronal = window.ortho.views["coronal"]
    cursor = window.scene.cursor.copy()
    before = window.scene.plane("coronal").slice_index
    enter = QtGui.QEnterEvent(QtCore.QPointF(20, 20), QtCore.QPointF(20, 20), QtCore.QPointF(coronal.mapToGlobal(QtCore.QPoint(20, 20))))
    QtWidgets.QApplication.sendEvent(coronal, enter)
    assert coronal.hasFocus() or QtWidgets.QApplication.focusWidget() is coronal
    QTest.keyClick(QtWidgets.QApplication.focusWidget(), QtCore.Qt.Key.Key_PageUp)
    assert window.scene.plane("coronal").slice_index != before
    moved = window.scene.cursor - cursor
    assert np.count_nonzero(np.abs(moved) > 1e-6) == 1, "only the coronal slice moved"


def test_title_marks_unsaved_edits_and_help_lists_shortcuts(window, qtbot):
    assert "[*]" in window.windowTitle() and not window.isWindowModified()
    editable = window.scene.editable()
    box = (slice(90, 93), slice(100, 103), slice(80, 83))
    editable.paint_mask("brush", box, np.ones((3, 3, 3), bool), 1)
    assert window.isWindowModified()
    editable.undo()  # still different from the saved map's history: dirty until saved
    lines = dict(window.shortcut_lines())
    assert any("Undo" in text for text in lines.values()) and "F1" in lines and "F9" in lines
    window._show_shortcuts()


def test_synchronised_zoom_gives_every_view_the_same_scale(window, qtbot):
    window.sync_zoom_action.trigger()
    assert window.settings.value("view/sync_zoom") == "true"
    axial = window.ortho.views["axial"]
    axial.view_box.scaleBy((0.5, 0.5))
    axial.view_box.sigRangeChangedManually.emit(axial.view_box.state["mouseEnabled"])
    QtWidgets.QApplication.processEvents()

    def mm_per_pixel(view):
        (x0, x1), _ = view.view_box.viewRange()
        return (x1 - x0) / view.view_box.sceneBoundingRect().width()

    for view in window.ortho.views.values():
        assert mm_per_pixel(view) == pytest.approx(mm_per_pixel(axial), rel=0.02)
    window.side_panel_action.trigger()
    assert not window._side_dock.isVisible()
    window.side_panel_action.trigger()


def test_first_screen_gives_each_view_to_the_anatomy(window, qtbot):
    """The first screen (issue 15): in the default layout each view opens fitted to the brain,
    which fills ≥ 70 % of the view along its limiting side, and the image covers ≥ 55 % of
    the view (the colour bars sit over the room the anatomy leaves, not in a column beside
    every view), with no colour bar over the brain, a letter or the caption."""
    assert window.ortho.layout_name == "1+2"
    qtbot.wait(50)
    QtWidgets.QApplication.processEvents()
    for orientation, view in window.ortho.views.items():
        area = view.width() * view.height()
        box = view.view_box.sceneBoundingRect()
        image = view.image.mapRectToScene(view.image.boundingRect()).intersected(box)
        share = image.width() * image.height() / area
        assert share >= (0.75 if orientation == "axial" else 0.55), f"{orientation}: the image covers {share:.0%}"
        brain = view.view_box.mapViewToScene(view.content_rect).boundingRect()
        # the brain fills the view along the side that limits it (its shape is not the view's)
        filled = max(brain.width() / box.width(), brain.height() / box.height())
        assert filled >= 0.7, f"{orientation}: the brain spans {filled:.0%} of the view"
        bars = view.colorbars.geometry()
        assert not bars.isEmpty() and view.graphics.rect().contains(bars)
        brain_px = view.graphics.mapFromScene(brain).boundingRect()
        for widget in (*view._letters.values(), view.info):
            assert not bars.intersects(widget.geometry()), f"{orientation}: a colour bar covers {widget.text()!r}"
        assert not bars.intersects(brain_px.adjusted(2, 2, -2, -2)), f"{orientation}: a colour bar covers the brain"
