"""The compare layout: two timepoints side by side, one cursor, one zoom, each its own data."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore

from viewer.ui.window_compare import COMPARE


def _drawn(qtbot, window, key):
    drawn = []
    window.frame_drawn.connect(drawn.append)
    return lambda: key in drawn


@pytest.fixture
def compared(qtbot, window):
    done = _drawn(qtbot, window, COMPARE)
    window.set_layout(COMPARE)
    qtbot.waitUntil(done, timeout=20_000)
    qtbot.wait(50)  # the layout's fit runs on the next turn of the event loop
    return window


def _pixels(view) -> np.ndarray:
    return np.asarray(view.image.image)


def test_the_next_timepoint_is_shown_beside_the_one_on_screen(compared):
    window = compared
    primary, other = window.ortho.views["axial"], window.ortho.compare_view
    assert primary.isVisible() and other.isVisible()
    assert not window.ortho.views["coronal"].isVisible()
    assert window.compare_timepoint().label == "day 7" and window.compare_combo.isVisible()
    assert primary.info.text().startswith("day 1 · axial") and other.info.text().startswith("day 7 · axial")
    assert primary.plane.slice_index == other.plane.slice_index  # the same world point, same grid here
    # the same display, different data: the cells moved between day 1 and day 7
    assert _pixels(primary).shape == _pixels(other).shape
    assert np.abs(_pixels(primary).astype(int) - _pixels(other).astype(int)).sum() > 0


def test_one_cursor_a_click_in_the_compare_view_moves_both(qtbot, compared):
    window = compared
    other = window.ortho.compare_view
    target = np.asarray(window.scene.cursor) + (12.0, -8.0, 0.0)
    other.cursor_requested.emit(target)
    assert np.allclose(window.scene.cursor, target, atol=1.0)
    for view in (window.ortho.views["axial"], other):
        row, col, _ = view.plane.world_to_pixel(window.scene.cursor)
        assert view.vline.value() == pytest.approx((col + 0.5) * view.plane.col_step_mm)
        assert view.hline.value() == pytest.approx((row + 0.5) * view.plane.row_step_mm)


def test_zoom_and_pan_follow_in_the_other_view(qtbot, compared):
    window = compared
    primary, other = window.ortho.views["axial"], window.ortho.compare_view
    primary.view_box.scaleBy((0.5, 0.5))
    primary.view_box.translateBy(x=15.0, y=-10.0)
    primary.view_box.sigRangeChangedManually.emit(primary.view_box.state["mouseEnabled"])
    assert np.allclose(other.center_world(), primary.center_world(), atol=0.6)
    def mm_per_pixel(view):
        return view.view_state()[1] / view.view_box.sceneBoundingRect().width()

    assert mm_per_pixel(other) == pytest.approx(mm_per_pixel(primary), rel=0.02)  # the same scale


def test_another_timepoint_can_be_chosen_and_hover_reads_it(qtbot, compared):
    window = compared
    done = _drawn(qtbot, window, COMPARE)
    window.set_compare_timepoint("day 21")
    qtbot.waitUntil(done, timeout=20_000)
    assert window.ortho.compare_view.info.text().startswith("day 21")
    window.ortho.compare_view.hovered.emit(np.asarray(window.scene.cursor))
    assert "day 21" in window.readout.text()
    window.ortho.views["axial"].hovered.emit(np.asarray(window.scene.cursor))
    assert "day 1" in window.readout.text()


def test_the_compare_view_never_takes_an_annotation_tool(compared):
    window = compared
    window.annotation_panel.set_tool("brush")
    assert window.ortho.views["axial"].tool is not None and window.ortho.compare_view.tool is None
    window.measure_actions["ruler"].trigger()
    assert window.ortho.compare_view.tool.name == "ruler"  # measuring reads, it does not edit


def test_another_orientation_can_be_compared(qtbot, compared):
    window = compared
    done = _drawn(qtbot, window, COMPARE)
    window.set_compare_orientation("coronal")
    qtbot.waitUntil(done, timeout=20_000)
    assert window.ortho.views["coronal"].isVisible() and not window.ortho.views["axial"].isVisible()
    assert window.ortho.compare_view.plane.orientation == "coronal"


def test_synchronised_pan_moves_the_other_orientations_along_shared_axes(qtbot, window):
    window.sync_zoom_action.setChecked(True)
    axial, coronal, sagittal = (window.ortho.views[o] for o in ("axial", "coronal", "sagittal"))
    before_coronal, before_sagittal = coronal.center_world(), sagittal.center_world()
    before_axial = axial.center_world()
    axial.view_box.translateBy(x=10.0, y=0.0)  # along the view's horizontal: world x
    axial.view_box.sigRangeChangedManually.emit(axial.view_box.state["mouseEnabled"])
    moved = axial.center_world() - before_axial
    assert abs(moved[0]) == pytest.approx(10.0, abs=0.5)
    after = coronal.center_world()
    assert after[0] - before_coronal[0] == pytest.approx(moved[0], abs=0.5)  # coronal shares x
    assert after[2] == pytest.approx(before_coronal[2], abs=0.5)  # and keeps its height
    assert sagittal.center_world()[1] == pytest.approx(before_sagittal[1], abs=0.5)  # y did not move


def test_the_layout_is_remembered(qtbot, settings, demo_manifest, compared):
    from tests.ui.conftest import open_window

    assert settings.value("view/layout") == COMPARE
    again = open_window(qtbot, settings, demo_manifest)
    assert again.ortho.layout_name == COMPARE and again.ortho.compare_view.isVisible()
    qtbot.waitUntil(lambda: again.ortho.compare_view.plane is not None, timeout=20_000)
    assert again.compare_combo.isVisible()


def test_check_views_combine_the_two_anatomies(qtbot, compared):
    from viewer.core.check_view import grey

    window = compared
    other = window.ortho.compare_view
    for mode in ("checkerboard", "blend", "flicker"):
        done = _drawn(qtbot, window, COMPARE)
        window.set_check_mode(mode)
        qtbot.waitUntil(done, timeout=20_000)
        assert mode in other.info.text() and other.info.text().startswith("day 1 / day 7")
        rgb = _pixels(other)
        assert (rgb[..., 0] == rgb[..., 1]).all()  # grey: the anatomies only, no overlay
        a = grey(window.scene.volumes["anatomical"], other.plane, window.scene.display["anatomical"])
        if mode == "blend":
            b = grey(window.scene.volumes_of(window.compare_timepoint())["anatomical"], other.plane,
                     window.scene.display["anatomical"])
            assert np.abs(rgb[..., 0] / 255.0 - (0.5 * a + 0.5 * b)).max() <= 1.0 / 255 + 1e-6
    assert window._flicker.isActive() and len(window._flicker_frames) == 2
    first = _pixels(other).copy()
    window._flip()
    assert not np.array_equal(first, _pixels(other)) or np.array_equal(*window._flicker_frames)
    done = _drawn(qtbot, window, COMPARE)
    window.set_check_mode("side by side")
    qtbot.waitUntil(done, timeout=20_000)
    assert not window._flicker.isActive() and other.info.text().startswith("day 7")
