"""Annotation in the window: painting with simulated mouse events in every view, undo, live
numbers in the region table, saving, and the unsaved-edits question."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtTest import QTest

from tests.ui.conftest import open_window as _open_window

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _drag(view, worlds) -> None:
    """Press at the first world point, move through the others, release at the last."""
    viewport = view.graphics.viewport()
    points = [view.view_position_of(np.asarray(w, float)) for w in worlds]
    QTest.mousePress(viewport, QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier, points[0])
    for point in points[1:]:
        QTest.qWait(15)  # pyqtgraph drops mouse moves closer than 10 ms apart (its rate limit)
        # a move with the left button held (QTest.mouseMove does not reach the scene offscreen)
        move = QtGui.QMouseEvent(QtCore.QEvent.Type.MouseMove, QtCore.QPointF(point), QtCore.QPointF(viewport.mapToGlobal(point)),
                                 QtCore.Qt.MouseButton.NoButton, QtCore.Qt.MouseButton.LeftButton,
                                 QtCore.Qt.KeyboardModifier.NoModifier)
        QtWidgets.QApplication.sendEvent(viewport, move)
    QTest.mouseRelease(viewport, QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier, points[-1])


def _window_that_recovers(qtbot, tmp_path, manifest):
    """A new window on ``manifest`` that answers "recover" and records what it was offered."""
    from viewer.ui.main_window import MainWindow

    win = MainWindow(settings=QtCore.QSettings(str(tmp_path / "next.ini"), QtCore.QSettings.Format.IniFormat))
    offered: list = []
    win.ask_recover = lambda infos: offered.append(infos) or True
    win.ask_unsaved = lambda unsaved: QtWidgets.QMessageBox.StandardButton.Discard
    qtbot.addWidget(win)
    win.show()
    assert win.open(manifest)
    return win, offered


def _region_row(window, name):
    stats = window.scene.results.latest(window.scene.timepoint.label)
    return None if stats is None else stats.region(name)


def _wait_stats(qtbot, window):
    qtbot.waitUntil(lambda: window.scene.results.latest(window.scene.timepoint.label) is not None, timeout=30_000)
    window.jobs.wait()
    QtWidgets.QApplication.processEvents()


@pytest.mark.parametrize("orientation", ["axial", "coronal", "sagittal"])
def test_brush_stroke_in_each_view_paints_and_updates_the_table(window, qtbot, orientation):
    _wait_stats(qtbot, window)
    panel = window.annotation_panel
    label = panel.add_region("lesion B")
    panel.radius.setValue(4.0)
    panel.set_tool("brush")
    view = window.ortho.views[orientation]
    start = window.scene.cursor + np.array([-45.0, 0.0, 0.0])  # in the left hemisphere, away from regions
    plane = view.plane
    step = plane.pixel_to_world[:3, 0] / plane.row_step_mm * 20.0  # 20 mm down the screen
    _drag(view, [start, start + step / 2, start + step])  # moves of ≥ 10 px: pyqtgraph sees a drag
    editable = window.scene.editable()
    painted = int((editable.data == label).sum())
    # a 20 mm capsule of radius 4 mm on one 1 mm slice: 20·8 + π·4² ≈ 210 mm²
    assert 160 < painted < 260
    assert editable.history()[-1].endswith("stroke")
    window.jobs.wait()
    qtbot.waitUntil(lambda: _region_row(window, "lesion B") is not None, timeout=10_000)
    assert _region_row(window, "lesion B").values["volume_ml"] == pytest.approx(painted / 1000.0)
    window.run_action("undo")
    assert not (editable.data == label).any()


def test_lasso_and_flood_fill_and_eraser(window, qtbot):
    _wait_stats(qtbot, window)
    panel = window.annotation_panel
    label = panel.add_region("lasso region")
    panel.set_tool("polygon")
    view = window.ortho.views["axial"]
    c = window.scene.cursor + np.array([-40.0, -10.0, 0.0])
    square = [c, c + [20, 0, 0], c + [20, 20, 0], c + [0, 20, 0]]
    _drag(view, square)
    editable = window.scene.editable()
    area = int((editable.data == label).sum())
    assert 380 <= area <= 470  # a 20 × 20 mm square on 1 mm voxels, edges included
    panel.set_tool("eraser")
    _drag(view, [c + [5, 5, 0], c + [5, 15, 0]])
    assert int((editable.data == label).sum()) < area
    # flood fill the ¹⁹F hotspot of the injection site (3-D, ¹⁹F above the display threshold)
    fill_label = panel.add_region("hotspot")
    index = panel.threshold_layer.findData("fluorine")
    panel.threshold_layer.setCurrentIndex(index)
    panel.high.setValue(1e6)
    panel.set_tool("flood fill")
    hotspot = window.scene.cursor.copy()
    QTest.mouseClick(view.graphics.viewport(), QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier,
                     view.view_position_of(hotspot))
    filled = int((editable.data == fill_label).sum())
    assert filled > 50  # the hotspot spans several 2 mm ¹⁹F voxels = many 1 mm label voxels


def test_save_regions_writes_nifti_table_and_manifest(qtbot, settings, study_copy):
    from viewer.core.io.study import load_study

    win = _open_window(qtbot, settings, study_copy)
    label = win.annotation_panel.add_region("saved region")
    editable = win.scene.editable()
    box = (slice(10, 14), slice(10, 14), slice(10, 14))
    editable.paint_mask("test paint", box, np.ones((4, 4, 4), bool), label)
    assert win.unsaved_timepoints() == [win.scene.timepoint.label]
    target = win.save_regions()
    assert target is not None and target.exists()
    assert not win.unsaved_timepoints()
    reloaded = load_study(study_copy)
    timepoint = reloaded.timepoint(win.scene.timepoint.label)
    assert timepoint.images["regions"] == target.resolve()
    assert timepoint.region_names[label] == "saved region"
    win.jobs.wait()


def test_closing_with_unsaved_edits_asks(window, qtbot):
    editable = window.scene.editable()
    editable.paint_mask("x", (slice(0, 2),) * 3, np.ones((2, 2, 2), bool), 1)
    asked = []
    window.ask_unsaved = lambda unsaved: asked.append(unsaved) or QtWidgets.QMessageBox.StandardButton.Cancel
    window.close()
    assert asked and window.isVisible()
    window.ask_unsaved = lambda unsaved: QtWidgets.QMessageBox.StandardButton.Discard
    window.close()
    assert not window.isVisible()


CRASHING_SESSION = r"""
import sys, time
import os

import numpy as np
from PySide6 import QtCore, QtWidgets
app = QtWidgets.QApplication([])
from viewer.ui.main_window import MainWindow
settings = QtCore.QSettings(sys.argv[2], QtCore.QSettings.Format.IniFormat)
window = MainWindow(settings=settings)
window.ask_recover = lambda infos: False
window.show()
assert window.open(sys.argv[1])
deadline = time.time() + 60
while window.ortho.views["axial"].plane is None and time.time() < deadline:
    app.processEvents()
    time.sleep(0.01)
panel = window.annotation_panel
label = panel.add_region("drawn before the crash")
panel.radius.setValue(5.0)
panel.set_tool("brush")
tool = panel.tool
view = window.ortho.views["axial"]
start = window.scene.cursor + np.array([-40.0, 0.0, 0.0])
for offset in (0.0, 6.0, 12.0):  # three strokes, the last one undone
    tool.press(view.plane, start + [0, offset, 0])
    tool.move(view.plane, start + [10, offset, 0])
    tool.release(view.plane, start + [10, offset, 0])
window.run_action("undo")
np.save(sys.argv[3], window.scene.editable().data)
print("edited", flush=True)
time.sleep(600)
"""


def test_killed_app_offers_recovery_and_restores_exactly(qtbot, tmp_path, study_copy):
    """kill -9 after edits; the next start offers recovery and restores exactly those edits."""
    import os
    import signal
    import subprocess
    import sys


    expected = tmp_path / "expected.npy"
    script = tmp_path / "session.py"
    script.write_text(CRASHING_SESSION)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    child = subprocess.Popen([sys.executable, str(script), str(study_copy), str(tmp_path / "child.ini"), str(expected)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = child.stdout.readline()
        assert line.strip() == "edited", child.stderr.read()[-2000:]
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    win, offered = _window_that_recovers(qtbot, tmp_path, study_copy)
    assert offered and (offered[0][0].n_edits, offered[0][0].n_undone) == (4, 1)  # a region added, 3 strokes, 1 undone
    editable = win.scene.editable()
    np.testing.assert_array_equal(editable.data, np.load(expected))
    assert editable.table.label_of("drawn before the crash") is not None
    assert editable.dirty
    win.jobs.wait()


def test_second_window_on_a_study_is_told_and_reloads_without_losing_edits(qtbot, settings, study_copy, tmp_path):
    """Two windows on one study: the second is told who edits it and opens read-only; once the
    first saved and closed, the second's save is stopped (the study changed), and "reload"
    brings its edits back on top of the first's."""
    from viewer.core.io.labels import load_label_map
    from viewer.core.io.study import load_study

    box_a, box_b = (slice(10, 14),) * 3, (slice(20, 24),) * 3
    first = _open_window(qtbot, settings, study_copy)
    first.scene.editable().paint_mask("first", box_a, np.ones((4, 4, 4), bool), 1)
    second = _open_window(qtbot, QtCore.QSettings(str(tmp_path / "second.ini"), QtCore.QSettings.Format.IniFormat), study_copy)
    assert "is being edited by" in second.last_notice and f"(PID {os.getpid()})" in second.last_notice
    qtbot.waitUntil(lambda: second.annotation_panel.read_only, timeout=5_000)
    assert not second.annotation_panel.tool_buttons["brush"].isEnabled()
    assert second.save_regions() is None and "is being edited by" in second.last_error

    assert first.save_regions() is not None
    first.close()
    second.scene.editable().paint_mask("second", box_b, np.ones((4, 4, 4), bool), 2)
    asked = []
    second.ask_changed_on_disk = lambda message: asked.append(message) or "reload"
    second.ask_recover = lambda infos: True
    assert second.save_regions() is None  # told, reloaded, edits offered back and replayed
    assert asked and "changed on disk" in asked[0]
    assert (second.scene.editable().data[box_b] == 2).all() and (second.scene.editable().data[box_a] == 1).all()
    saved = second.save_regions()
    assert saved is not None and not second.annotation_panel.read_only
    data = np.asarray(load_label_map(load_study(study_copy).timepoint(second.scene.timepoint.label).images["regions"])[0].data)
    assert (data[box_a] == 1).all() and (data[box_b] == 2).all()
    second.jobs.wait()


def test_recovered_edits_of_a_timepoint_not_on_screen_get_their_numbers(qtbot, tmp_path, study_copy):
    """A crashed session left unsaved edits of day 21; the next window opens on day 1 and
    recovers them. Day 21's numbers must be computed again from the recovered map and reach
    the time course (they used to be dropped and never asked for again)."""
    from viewer.core.io.study import load_study
    from viewer.core.scene import Scene
    from viewer.ui.main_window import recovery_folder_for

    study = load_study(study_copy)
    day21 = study.timepoint("day 21")
    crashed = Scene(study, recovery_folder=recovery_folder_for(study))
    editable = crashed.editable(day21)
    penumbra = editable.table.label_of("penumbra")
    box = tuple(slice(0, n) for n in editable.data.shape)
    erased = np.asarray(editable.data) == penumbra
    editable.paint_mask("erase penumbra (crashed session)", box, erased, 0)
    crashed.close()  # its files closed, the journal left on disk: what a killed process leaves

    win, offered = _window_that_recovers(qtbot, tmp_path, study_copy)
    assert offered and [info.timepoint_label for info in offered[0]] == ["day 21"], (offered, win.last_notice)
    assert win.scene.timepoint.label != "day 21"
    qtbot.waitUntil(lambda: win.scene.results.latest("day 21") is not None or win.last_error, timeout=60_000)
    assert win.last_error is None, win.last_error
    def recovered_numbers_shown() -> bool:
        stats = win.scene.results.latest("day 21")
        if stats is None:
            return False
        row = stats.region("penumbra")
        return row is None or row.values["volume_ml"] == 0

    qtbot.waitUntil(recovered_numbers_shown, timeout=60_000)
    assert "day 21" in win.region_panel._course
    assert win.region_panel._course["day 21"] is win.scene.results.latest("day 21")
    win.jobs.wait()
    win.stats_jobs.wait()


def test_regions_edited_off_screen_after_the_numbers_arrived_are_measured_again(qtbot, tmp_path, study_copy):
    """Carrying regions, or a recovery replay, changes the map of a timepoint that is not on
    screen after its numbers arrived: they must be measured again (they were dropped and never
    asked for again, so that timepoint fell out of the time course)."""
    win = _open_window(qtbot, QtCore.QSettings(str(tmp_path / "w.ini"), QtCore.QSettings.Format.IniFormat), study_copy)
    qtbot.waitUntil(lambda: all(win.scene.results.latest(tp.label) is not None for tp in win.scene.study.timepoints), timeout=60_000)
    day21 = win.scene.study.timepoint("day 21")
    assert win.scene.timepoint.label != "day 21"
    editable = win.scene.editable(day21)
    penumbra = editable.table.label_of("penumbra")
    box = tuple(slice(0, n) for n in editable.data.shape)
    editable.paint_mask("erase penumbra of day 21", box, np.asarray(editable.data) == penumbra, 0)

    def measured_again() -> bool:
        stats = win.scene.results.latest("day 21")
        row = None if stats is None else stats.region("penumbra")
        return row is not None and row.values["volume_ml"] == 0

    qtbot.waitUntil(measured_again, timeout=60_000)
    qtbot.waitUntil(lambda: win.region_panel._course.get("day 21") is win.scene.results.latest("day 21"), timeout=10_000)
    win.jobs.wait()
    win.stats_jobs.wait()



def test_recolour_and_rename_change_views_swatch_table_and_time_course(window, qtbot):
    """A colour or name chosen in the label table is what the views, the layer swatch, the
    region table and the time course show (issue 14: one label table, read by all)."""
    from viewer.ui.layer_panel import SWATCH_SIZE

    scene = window.scene
    _wait_stats(qtbot, window)
    label = scene.label_table().label_of("injection site")
    regions = scene.volumes["regions"]
    centre = regions.voxel_to_world_points(np.argwhere(np.asarray(regions.data) == label).mean(axis=0))
    scene.set_cursor(centre)
    scene.set_display("regions", opacity=1.0)
    window.jobs.wait()
    qtbot.waitUntil(lambda: window.ortho.views["axial"].plane.slice_index == scene.plane("axial").slice_index)
    window.jobs.wait()
    QtWidgets.QApplication.processEvents()
    blue = (0, 0, 255)
    assert not np.all(window.ortho.views["axial"].image.image == np.array(blue, np.uint8), axis=-1).any()
    window.annotation_panel.recolour(label, blue)
    window.annotation_panel.options.label = label
    scene.editable().rename(label, "graft A")
    window.jobs.wait()
    QtWidgets.QApplication.processEvents()
    shown = window.ortho.views["axial"].image.image
    assert np.all(shown == np.array(blue, np.uint8), axis=-1).sum() > 10, "the view draws the new colour"
    # the layer list's swatch of the regions layer
    item = next(window.layer_panel.layer_list.item(i) for i in range(window.layer_panel.layer_list.count())
                if window.layer_panel.layer_list.item(i).data(QtCore.Qt.ItemDataRole.UserRole) == "regions")
    swatch = item.icon().pixmap(SWATCH_SIZE).toImage()
    colours = {swatch.pixelColor(x, SWATCH_SIZE.height() // 2).getRgb()[:3] for x in range(1, SWATCH_SIZE.width() - 1)}
    assert blue in colours
    # the region table and the time course follow the new name and colour
    qtbot.waitUntil(lambda: _region_row(window, "graft A") is not None, timeout=20_000)
    assert _region_row(window, "injection site") is None
    QtWidgets.QApplication.processEvents()
    curves = window.region_panel.plot.curves
    assert "graft A" in curves
    assert curves["graft A"][0].opts["pen"].color().getRgb()[:3] == blue


def test_after_a_small_edit_the_table_says_its_numbers_are_current(window, qtbot):
    """A small edit is measured at once: its numbers follow the 'regions' event, so the
    table's status does not stay on "updating…" over numbers that are already new."""
    _wait_stats(qtbot, window)
    scene = window.scene
    label = scene.label_table().label_of("injection site")
    scene.editable().rename(label, "graft A")
    assert scene.results.is_current(scene.timepoint.label)
    assert window.region_panel.status_label.text() == f"Numbers of {scene.timepoint.label}"
