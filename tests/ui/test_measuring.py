"""The ruler, ellipse and sphere in the window, driven with the mouse, checked against a
phantom written with nibabel and numbers computed with numpy in index space."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PySide6 import QtCore

from tests.ui.conftest import open_window
from tests.ui.test_annotation import _drag
from viewer.core.measurements import EllipseROI, Ruler, SphereROI
from viewer.core.quant.measures import format_number

SPACING = (1.0, 1.25, 3.0)
SHAPE = (90, 80, 24)
DOT_A = (20, 16, 12)
DOT_B = (50, 48, 12)  # 30 voxels × 1 mm and 32 voxels × 1.25 mm away: exactly 50 mm


@pytest.fixture
def phantom(tmp_path):
    """Noise around 100 with two bright dots 50 mm apart in one axial slice."""
    rng = np.random.default_rng(3)
    data = rng.normal(100.0, 20.0, SHAPE).astype(np.float32)
    data[DOT_A] = data[DOT_B] = 1000.0
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = (-45.0, -50.0, -36.0)
    path = tmp_path / "phantom.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    return path, data, affine


def _world(affine, ijk):
    return nib.affines.apply_affine(affine, ijk)


def test_the_ruler_measures_a_known_50_mm_within_one_voxel(qtbot, settings, phantom):
    path, _data, affine = phantom
    win = open_window(qtbot, settings, path)
    a, b = _world(affine, DOT_A), _world(affine, DOT_B)
    assert np.linalg.norm(b - a) == pytest.approx(50.0)
    win.scene.set_cursor(a)
    qtbot.waitUntil(lambda: win.ortho.views["axial"].plane.slice_index == DOT_A[2], timeout=5000)
    win.measure_actions["ruler"].trigger()
    view = win.ortho.views["axial"]
    strokes = []
    view.stroke_started.connect(lambda: strokes.append(1))
    _drag(view, [a, (a + b) / 2, b])
    assert not strokes  # a measurement is no label edit: the region numbers are not held
    (ruler,) = list(win.scene.measurements)
    assert isinstance(ruler, Ruler)
    assert abs(ruler.length_mm - 50.0) <= max(SPACING[:2])
    # drawn in the slice it was measured in, listed in the panel with its length
    assert view._measure_items
    top = win.measurement_panel.tree.topLevelItem(0)
    assert top.text(0).startswith("M1") and top.text(5) == f"{ruler.length_mm:.1f} mm"
    # a neighbouring slice does not show it; the region numbers were never held for it
    win.scene.step_slice("axial", 1)
    qtbot.waitUntil(lambda: view.plane.slice_index == DOT_A[2] + 1, timeout=5000)
    assert not view._measure_items


def test_ellipse_statistics_are_numpy_on_the_slice(qtbot, settings, phantom):
    path, data, affine = phantom
    win = open_window(qtbot, settings, path)
    center = _world(affine, (45, 40, 8))
    win.scene.set_cursor(center)
    view = win.ortho.views["axial"]
    qtbot.waitUntil(lambda: view.plane.slice_index == 8, timeout=5000)
    win.measure_actions["ellipse"].trigger()
    _drag(view, [center, center + (6.0, 4.0, 0.0), center + (12.0, 9.0, 0.0)])
    (ellipse,) = list(win.scene.measurements)
    assert isinstance(ellipse, EllipseROI)
    a, b = ellipse.radii_mm
    cx, cy, _ = ellipse.center  # the drag's ends are on the mouse's pixels: use what was drawn
    i, j = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    x = affine[0, 0] * i + affine[0, 3]
    y = affine[1, 1] * j + affine[1, 3]
    inside = ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0
    values = data[:, :, 8][inside].astype(np.float64)
    top = win.measurement_panel.tree.topLevelItem(0)
    anatomy = top.child(0)
    assert anatomy.text(1) == format_number(values.mean(), 4)
    assert anatomy.text(2) == format_number(values.std(), 4)
    assert anatomy.text(4) == format_number(values.max(), 4)
    assert anatomy.text(5).startswith(f"{values.size} vox")


def test_a_sphere_shows_its_cut_in_every_view_and_is_deleted_from_the_panel(qtbot, settings, phantom):
    path, data, affine = phantom
    win = open_window(qtbot, settings, path)
    center = _world(affine, (45, 40, 12))
    win.scene.set_cursor(center)
    qtbot.waitUntil(lambda: win.ortho.views["coronal"].plane.slice_index == 40, timeout=5000)
    win.measure_actions["sphere"].trigger()
    _drag(win.ortho.views["coronal"], [center, center + (10.0, 0.0, 0.0), center + (15.0, 0.0, 0.0)])
    (sphere,) = list(win.scene.measurements)
    assert isinstance(sphere, SphereROI) and abs(sphere.radius_mm - 15.0) <= 1.0
    assert all(view._measure_items for view in win.ortho.views.values())  # the cursor is at its centre
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij"), -1).reshape(-1, 3)
    inside = np.linalg.norm(_world(affine, ijk) - sphere.center, axis=1) <= sphere.radius_mm
    anatomy = win.measurement_panel.tree.topLevelItem(0).child(0)
    assert anatomy.text(1) == format_number(data.reshape(-1)[inside].astype(np.float64).mean(), 4)
    win.measurement_panel.tree.topLevelItem(0).setSelected(True)
    win.measurement_panel.delete_selected()
    assert len(win.scene.measurements) == 0
    assert win.measurement_panel.tree.topLevelItemCount() == 0
    assert not any(view._measure_items for view in win.ortho.views.values())


def test_one_tool_at_a_time(window):
    window.measure_actions["ruler"].trigger()
    assert window.ortho.views["axial"].tool.name == "ruler"
    window.annotation_panel.set_tool("brush")
    assert window.measure_actions["navigate"].isChecked()
    assert window.ortho.views["axial"].tool.name == "brush"
    window.measure_actions["sphere"].trigger()
    assert window.annotation_panel.tool is None
    assert window.ortho.views["sagittal"].tool.name == "sphere"
    window.measure_actions["navigate"].trigger()
    assert all(view.tool is None for view in window.ortho.views.values())


def test_a_click_measures_nothing(qtbot, window):
    from PySide6.QtTest import QTest

    messages = []
    window.statusBar().messageChanged.connect(messages.append)
    window.measure_actions["ruler"].trigger()
    view = window.ortho.views["axial"]
    point = view.view_position_of(window.scene.cursor)
    QTest.mouseClick(view.graphics.viewport(), QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier,
                     point)
    assert len(window.scene.measurements) == 0
    assert any("click measures nothing" in m for m in messages)


def test_a_sphere_around_the_demo_graft_counts_the_cells_the_demo_put_there(qtbot, window, demo_manifest):
    """The demo's truth (truth.json, written by its generator) holds the cells of each ball; at
    the demo's scanner noise the §3 count is low by the graft's faint edge, and the 95 %
    interval the panel shows beside it holds the truth."""
    import json

    truth = json.loads((demo_manifest.parent / "truth.json").read_text())
    ball = next(b for b in truth["timepoints"][0]["cell_balls"] if b["region"] == "injection site")
    qtbot.waitUntil(lambda: window.scene.fluorine_cells_per_signal() is not None, timeout=20_000)
    window.scene.measurements.add(SphereROI(ball["centre_mm"], 8.0))
    rows = {stats.role: stats for stats in window.scene.measure(window.scene.measurements.get("M1"))}
    low, high = rows["fluorine"].cells_ci95
    assert low <= ball["cells"] <= high and rows["fluorine"].cells <= 1.05 * ball["cells"]
    assert rows["regions"].regions.get("injection site", 0) > 0
    panel = window.measurement_panel.tree.topLevelItem(0)
    cells = next(panel.child(i) for i in range(panel.childCount()) if panel.child(i).text(0).startswith("¹⁹F cells"))
    assert cells.isFirstColumnSpanned()
    assert cells.text(0) == (f"¹⁹F cells: {format_number(rows['fluorine'].cells, 3)} · 95 % interval "
                             f"{format_number(low, 3)}–{format_number(high, 3)}")


def test_a_sphere_over_the_reference_tube_counts_no_cells(qtbot, window, demo_manifest):
    """The tube holds the calibration signal, not cells: like the regions' counts, an ROI
    leaves it out (truth.json gives the tube's place)."""
    import json

    tube = json.loads((demo_manifest.parent / "truth.json").read_text())["geometry"]["reference_tube"]
    qtbot.waitUntil(lambda: window.scene.fluorine_cells_per_signal() is not None, timeout=20_000)
    x, y = tube["axis_xy_mm"]
    z = sum(tube["label_z_mm"]) / 2
    roi = SphereROI([x, y, z], 2 * tube["radius_mm"])
    rows = {stats.role: stats for stats in window.scene.measure(roi)}
    assert rows["fluorine"].maximum > 500  # the tube's signal is there (its reference signal is 1000)
    assert rows["fluorine"].cells == 0.0
