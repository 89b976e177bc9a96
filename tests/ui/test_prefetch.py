"""Slices next to the one on screen, computed in advance (viewer.ui.window_prefetching, issue 19):
a step shows them at once, with the pixels a fresh computation gives; any change of the scene
(display, region edit, convention) forgets them, so a view never shows an outdated image."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.core.render import fuse_plane


def _step(window, qtbot, steps: int = 1, orientation: str = "axial") -> None:
    """Step the view and wait until it has drawn its new slice and every job has finished."""
    view = window.ortho.views[orientation]
    target = view.plane.slice_index + steps
    window.scene.step_slice(orientation, steps)
    qtbot.waitUntil(lambda: view.plane is not None and view.plane.slice_index == target, timeout=10_000)
    window.jobs.wait()
    qtbot.wait(10)  # the finished jobs' results are delivered by the event loop


def _fresh_rgb(window, orientation: str = "axial") -> np.ndarray:
    """The view's image computed now from the scene, independently of any kept frame."""
    plane = window.scene.plane(orientation)
    return fuse_plane(window.scene.slice_layers(plane), plane).rgb


def _kept_slices(window, orientation: str = "axial") -> set[int]:
    return {key[2] for key in window._prefetched if key[1] == orientation}


def _shown(window, orientation: str = "axial") -> np.ndarray:
    return np.asarray(window.ortho.views[orientation].image.image)


def test_after_a_step_both_neighbours_are_kept_and_the_next_step_shows_one_at_once(window, qtbot):
    _step(window, qtbot)
    index = window.ortho.views["axial"].plane.slice_index
    assert _kept_slices(window) >= {index - 1, index, index + 1}  # the one it came from, itself, the next
    drawn: list[str] = []
    window.frame_drawn.connect(drawn.append)
    window.scene.step_slice("axial", 1)
    assert drawn == ["axial"]  # drawn inside the step, no worker waited for
    assert window.ortho.views["axial"].plane.slice_index == index + 1
    assert np.array_equal(_shown(window), _fresh_rgb(window))


def test_stepping_back_and_forth_always_shows_the_slices_own_pixels(window, qtbot):
    for steps in (1, 1, -1, -1, -1, 1):
        _step(window, qtbot, steps)
        assert np.array_equal(_shown(window), _fresh_rgb(window)), steps


def test_a_display_change_forgets_the_kept_slices(window, qtbot):
    _step(window, qtbot)
    assert _kept_slices(window)
    low, high = window.scene.display["anatomical"].levels
    window.scene.set_display("anatomical", levels=(low, low + (high - low) / 3))
    assert not window._prefetched
    window.jobs.wait()
    qtbot.wait(10)
    _step(window, qtbot)
    assert np.array_equal(_shown(window), _fresh_rgb(window))  # the new window/level, not the kept image


def test_a_region_painted_into_a_kept_slice_is_shown_when_the_view_reaches_it(window, qtbot):
    _step(window, qtbot)
    view = window.ortho.views["axial"]
    index = view.plane.slice_index
    assert index + 1 in _kept_slices(window)
    editable = window.scene.editable()
    axis = view.plane.normal_axis
    box = [slice(40, 80), slice(40, 80), slice(40, 80)]
    box[axis] = slice(index + 1, index + 2)  # the next slice only: the view on screen does not cross it
    label = max(editable.table.names) if editable.table.names else 1
    editable.paint_mask("test square", tuple(box), np.ones([s.stop - s.start for s in box], bool), label)
    assert not window._prefetched
    window.jobs.wait()
    qtbot.wait(10)
    _step(window, qtbot)
    shown = _shown(window)
    assert np.array_equal(shown, _fresh_rgb(window))


def test_a_neighbour_computed_before_a_change_is_dropped_when_it_arrives(window, qtbot):
    """A result asked for before the scene changed carries the old generation: not kept."""
    _step(window, qtbot)
    window._forget_prefetched()
    key = window._shown_key["axial"]
    stale = (key[:2] + (key[2] + 5,) + key[3:], window._prefetch_generation - 1, (None, None, None))
    window._on_prefetched("axial", stale)
    assert not window._prefetched


@pytest.mark.parametrize("change", ["radiological", "timepoint"])
def test_convention_or_timepoint_change_forgets_the_kept_slices(window, qtbot, change):
    _step(window, qtbot)
    assert window._prefetched
    if change == "radiological":
        window.scene.set_radiological(not window.scene.radiological)
    else:
        window.scene.set_timepoint(1)
    assert not window._prefetched
    window.jobs.wait()
    qtbot.wait(10)
    _step(window, qtbot)
    assert np.array_equal(_shown(window), _fresh_rgb(window))


def test_a_frame_asked_for_before_a_change_is_shown_but_not_kept(window, qtbot):
    """A view's own frame is kept for stepping back only when it was asked for at the current
    generation (a region edit elsewhere does not redraw this view, yet forgets what is kept)."""
    _step(window, qtbot)
    view = window.ortho.views["axial"]
    key = window._shown_key["axial"]
    window._forget_prefetched()
    window._requested_generation["axial"] = window._prefetch_generation - 1
    window._after_frame("axial", view.plane, _shown(window))
    assert key not in window._prefetched
    window._asked_for("axial")
    window._after_frame("axial", view.plane, _shown(window))
    assert key in window._prefetched
