"""The 3D view: actor geometry and scene events (headless), and real rendering under Xvfb.

QVTKRenderWindowInteractor needs a real X display (it does not work with
``QT_QPA_PLATFORM=offscreen``). Under the offscreen platform the view is *headless*: it builds
and updates its actors without rendering, which the first tests use to check world placement
on the demo's oblique ¹⁹F grid and the event wiring. The last test starts its own Xvfb and runs
the Qt + VTK code in a child Python process (this very file run as a script), leaving the
pytest process's offscreen Qt untouched. The child writes screenshot PNGs and a JSON of its
measurements; the parent checks them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

#: Frame size of the child's widget (pixels).
WIDTH, HEIGHT = 900, 760
#: Box of the colour key in the top-left corner of the frame (pixels).
LEGEND_WIDTH, LEGEND_HEIGHT = 300, 135


# -- frame analysis (used by the child, plain numpy) ---------------------------------------------

def count_colours(frame: np.ndarray) -> int:
    """Distinct RGB colours of a frame (a blank or flat frame has a handful)."""
    flat = frame.reshape(-1, 3).astype(np.uint32)
    return int(np.unique(flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2]).size)


def grey_pixels(frame: np.ndarray, min_level: int = 45) -> int:
    """Pixels with R≈G≈B and brighter than the background: the anatomy surface."""
    rgb = frame.astype(np.int32)
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return int(((spread <= 12) & (rgb.mean(axis=2) >= min_level)).sum())


def hot_pixels(frame: np.ndarray) -> int:
    """Red/orange/yellow pixels (R high, B low): ¹⁹F hotspots, core and penumbra."""
    r, b = frame[..., 0].astype(np.int32), frame[..., 2].astype(np.int32)
    return int(((r >= 150) & (r - b >= 110) & (b <= 90)).sum())


def hotspot_pixels(frame: np.ndarray, without_fluorine: np.ndarray) -> int:
    """Hot-coloured pixels (R high, B low) that change when the ¹⁹F layer is hidden."""
    r, g, b = (frame[..., c].astype(np.int32) for c in range(3))
    changed = np.abs(frame.astype(np.int32) - without_fluorine.astype(np.int32)).max(axis=2) > 40
    return int(((r >= 150) & (r - b >= 100) & (g >= 50) & changed).sum())


def coloured_changed_pixels(frame: np.ndarray, other: np.ndarray) -> int:
    """Saturated pixels (channel spread > 40) that change by more than 30 in ``other``."""
    rgb = frame.astype(np.int32)
    changed = np.abs(rgb - other.astype(np.int32)).max(axis=2) > 30
    return int((changed & (rgb.max(axis=2) - rgb.min(axis=2) > 40)).sum())


def mask_legend(frame: np.ndarray) -> np.ndarray:
    """The frame with the colour key (top-left text) painted over with the corner's colour,
    so that text colours are not counted as hotspots or regions."""
    masked = frame.copy()
    masked[:LEGEND_HEIGHT, :LEGEND_WIDTH] = frame[LEGEND_HEIGHT + 5, 5]
    return masked


def anatomy_mask(frame: np.ndarray, min_difference: int = 20) -> np.ndarray:
    """Grey pixels (R≈G≈B) that differ from the background: the volume-rendered anatomy.

    The background is a vertical gradient, read per row in the frame's right-most column
    (nothing is drawn there; the orientation cube sits at the bottom left).
    """
    rgb = frame.astype(np.int32)
    grey = rgb.mean(axis=2)
    background = grey[:, -1:]
    return ((rgb.max(axis=2) - rgb.min(axis=2)) <= 12) & (np.abs(grey - background) > min_difference)


def anatomy_detail(frame: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of the anatomy's pixels with local contrast (gyri, sulci, folds in the shading):
    grey differs by > 6 from its Gaussian-blurred (σ 3 px) surroundings. A featureless fog
    (the former ramp) has ≈ 2 %, the shaded cortex ≈ 19 %."""
    from scipy import ndimage

    grey = frame.astype(np.float64).mean(axis=2)
    high_pass = np.abs(grey - ndimage.gaussian_filter(grey, 3.0))
    return float((high_pass[mask] > 6.0).mean()) if mask.any() else 0.0


def phantom_render(out: Path) -> dict[str, float]:
    """Ray-cast the sphere-in-cube phantom (tests/core) with its data-driven transfer function
    in a bare VTK window, looking down z in parallel projection; measure the frame.

    Returns the brightest pixel of the margin between the cube's and the volume's outlines
    (background noise only: 0 if the noise is transparent) and the mean of the cube's face.
    """
    from vtkmodules.vtkRenderingCore import (
        vtkRenderer,
        vtkRenderWindow,
        vtkWindowToImageFilter,
    )

    from tests.core.test_transfer_function import sphere_in_cube
    from viewer.core.transfer_function import transfer_function, volume_landmarks
    from viewer.ui.vtk_scene import anatomy_volume, apply_transfer_function

    data = sphere_in_cube(noise=1.0)
    volume = anatomy_volume(data, np.eye(4), gpu=False)
    apply_transfer_function(volume, transfer_function(volume_landmarks(data)))
    renderer = vtkRenderer()
    renderer.SetBackground(0.0, 0.0, 0.0)
    renderer.AddVolume(volume)
    window = vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(320, 320)
    window.AddRenderer(renderer)
    centre = (np.array(data.shape) - 1) / 2.0
    camera = renderer.GetActiveCamera()
    camera.ParallelProjectionOn()
    camera.SetFocalPoint(*centre)
    camera.SetPosition(centre[0], centre[1], centre[2] + 500.0)
    camera.SetViewUp(0.0, 1.0, 0.0)
    renderer.ResetCamera()
    window.Render()
    grab = vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.SetInputBufferTypeToRGB()
    grab.ReadFrontBufferOff()
    grab.Update()
    image = grab.GetOutput()
    width, height, _ = image.GetDimensions()
    frame = vtk_to_numpy_rgb(image).reshape(height, width, 3)  # bottom row first, as display y

    def display_box(low: float, high: float) -> tuple[slice, slice]:
        corners = []
        for x, y in ((low, low), (high, high)):
            renderer.SetWorldPoint(x, y, centre[2], 1.0)
            renderer.WorldToDisplay()
            corners.append(renderer.GetDisplayPoint()[:2])
        (x0, y0), (x1, y1) = corners
        return slice(round(y0), round(y1)), slice(round(x0), round(x1))

    outer = display_box(0.0, data.shape[0] - 1.0)
    cube = display_box(8.0, data.shape[0] - 9.0)
    margin = np.zeros((height, width), bool)
    margin[outer] = True
    inset = tuple(slice(s.start - 3, s.stop + 3) for s in cube)  # the cube's shaded edge
    margin[inset] = False
    face = tuple(slice(s.start + 5, s.stop - 5) for s in cube)
    _save_png(np.ascontiguousarray(frame[::-1]), out / "phantom_volume_rendering.png")
    window.Finalize()
    return {"phantom_margin_max": float(frame[margin].max()), "phantom_margin_pixels": int(margin.sum()),
            "phantom_cube_mean": float(frame[face].mean())}


def vtk_to_numpy_rgb(image) -> np.ndarray:
    from vtkmodules.util.numpy_support import vtk_to_numpy

    return vtk_to_numpy(image.GetPointData().GetScalars())[:, :3]


def near_colour(frame: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 60) -> int:
    """Pixels within ``tolerance`` (max channel difference) of a colour, after shading."""
    difference = np.abs(frame.astype(np.int32) - np.array(rgb, dtype=np.int32)).max(axis=2)
    return int((difference <= tolerance).sum())


# -- the child: runs under Xvfb with QT_QPA_PLATFORM=xcb ---------------------------------------

def child_main(manifest: str, out_dir: str) -> int:
    """Build the view on the demo, render, grab frames, move the cursor; write PNG + JSON."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from viewer.core.io.study import load_study
    from viewer.core.scene import Scene

    scene = Scene(load_study(manifest))
    started = time.perf_counter()
    from viewer.ui.volume_view import VolumeView

    import_seconds = time.perf_counter() - started
    started = time.perf_counter()
    view = VolumeView(scene)
    build_seconds = time.perf_counter() - started
    build_parts = dict(view.timings)
    view.resize(WIDTH, HEIGHT)
    view.show()
    app.processEvents()
    started = time.perf_counter()
    frame = view.grab_frame()
    first_render_seconds = time.perf_counter() - started
    started = time.perf_counter()
    frame = view.grab_frame()
    render_seconds = time.perf_counter() - started
    full_frame = frame
    frame = mask_legend(frame)
    out = Path(out_dir)
    png = out / "volume_view.png"
    _save_png(full_frame, png)

    scene.set_display("fluorine", visible=False)
    app.processEvents()
    without_fluorine = mask_legend(view.grab_frame())
    _save_png(without_fluorine, out / "volume_view_without_fluorine.png")
    scene.set_display("fluorine", visible=True)
    scene.set_display("regions", visible=False)
    app.processEvents()
    without_regions = mask_legend(view.grab_frame())
    scene.set_display("regions", visible=True)

    scene.set_cursor(scene.cursor + np.array([-40.0, -30.0, 25.0]))
    app.processEvents()
    moved = mask_legend(view.grab_frame())
    _save_png(moved, out / "volume_view_cursor_moved.png")

    started = time.perf_counter()
    view.set_mode("volume")
    app.processEvents()
    volume_frame = mask_legend(view.grab_frame())
    volume_seconds = time.perf_counter() - started
    _save_png(volume_frame, out / "volume_view_volume_rendering.png")
    volume_render_seconds = []
    for _ in range(3):
        started = time.perf_counter()
        view._window.Render()
        volume_render_seconds.append(time.perf_counter() - started)
    anatomy = anatomy_mask(volume_frame)
    # the see-through preset (the former look): a featureless fog, for comparison
    view.set_transfer_function(preset="xray")
    app.processEvents()
    xray_frame = mask_legend(view.grab_frame())
    _save_png(xray_frame, out / "volume_view_xray.png")
    view.set_transfer_function(preset="tissue")
    view.set_mode("surface")

    started = time.perf_counter()
    scene.set_timepoint(2)
    app.processEvents()
    timepoint_frame = mask_legend(view.grab_frame())
    timepoint_seconds = time.perf_counter() - started
    _save_png(timepoint_frame, out / "volume_view_day21.png")

    from viewer.core.display import REGION_COLORS

    report = {
        "png": str(png),
        "shape": list(frame.shape),
        "colours": count_colours(frame),
        "grey": grey_pixels(frame),
        "hot": hot_pixels(frame),
        "hotspot": hotspot_pixels(frame, without_fluorine),
        "hot_without_fluorine": hot_pixels(without_fluorine),
        "region": coloured_changed_pixels(frame, without_regions),
        "core": near_colour(frame, REGION_COLORS["core"]),
        "penumbra": near_colour(frame, REGION_COLORS["penumbra"]),
        "injection": near_colour(frame, REGION_COLORS["injection site"]),
        "cursor_changed_pixels": int((np.abs(moved.astype(int) - frame.astype(int)).max(axis=2) > 30).sum()),
        "volume_colours": count_colours(volume_frame),
        "volume_grey": grey_pixels(volume_frame, min_level=30),
        "volume_hot": hot_pixels(volume_frame),
        "volume_anatomy_fraction": float(anatomy.mean()),
        "volume_anatomy_mean": float(volume_frame.mean(axis=2)[anatomy].mean()) if anatomy.any() else 0.0,
        "volume_anatomy_detail": anatomy_detail(volume_frame, anatomy),
        "xray_anatomy_detail": anatomy_detail(xray_frame, anatomy_mask(xray_frame)),
        **phantom_render(out),
        "timepoint_hot": hot_pixels(timepoint_frame),
        "timings": {
            "import_s": import_seconds,
            "build_s": build_seconds,
            "build_parts_s": build_parts,
            "first_render_s": first_render_seconds,
            "render_s": render_seconds,
            "volume_mode_s": volume_seconds,
            "volume_render_s": volume_render_seconds,
            "timepoint_switch_s": timepoint_seconds,
        },
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    view.close()
    return 0


def _save_png(frame: np.ndarray, path: Path) -> None:
    from PySide6.QtGui import QImage

    frame = np.ascontiguousarray(frame)
    height, width, _ = frame.shape
    image = QImage(frame.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    if not image.save(str(path)):
        raise OSError(f"could not write {path}")



# -- headless tests (pytest's offscreen Qt: actors are built, nothing is rendered) -------------

@pytest.fixture
def scene(demo_manifest):
    from viewer.core.io.study import load_study
    from viewer.core.scene import Scene

    return Scene(load_study(demo_manifest))


@pytest.fixture
def view(qtbot, scene):
    from viewer.ui.volume_view import VolumeView

    widget = VolumeView(scene)
    qtbot.addWidget(widget)
    assert widget.headless, "pytest runs Qt offscreen: the view should not try to render"
    return widget


def _centre(bounds) -> np.ndarray:
    b = np.asarray(bounds, dtype=float)
    return (b[0::2] + b[1::2]) / 2.0


def test_image_data_keeps_ijk_order_and_voxel_units():
    from viewer.ui.vtk_scene import image_data

    array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    image = image_data(array, origin=(10.0, 20.0, 30.0), spacing=0.5)
    assert image.GetDimensions() == (4, 5, 6)
    for ijk in [(0, 0, 0), (3, 1, 2), (1, 4, 5)]:
        assert image.GetScalarComponentAsDouble(*ijk, 0) == array[ijk]
    assert image.GetPoint(image.ComputePointId([3, 1, 2])) == pytest.approx((11.5, 20.5, 31.0))


def test_surface_lands_on_the_oblique_world_position():
    """A blob on a rotated, flipped, anisotropic grid: the actor sits where the affine says."""
    from viewer.ui.vtk_scene import contour, image_data, surface_actor

    angle = np.radians(25.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([2.0, -1.5, 3.0])  # flipped j, anisotropic
    affine[:3, 3] = [-40.0, 12.0, 7.0]
    ijk = np.indices((20, 20, 20)).astype(float)
    blob = np.exp(-((ijk[0] - 6) ** 2 + (ijk[1] - 13) ** 2 + (ijk[2] - 9) ** 2) / 4.0).astype(np.float32)
    actor = surface_actor(contour(image_data(blob), 0.5), affine, (1.0, 0.5, 0.0), 1.0)
    expected = affine[:3, :3] @ np.array([6.0, 13.0, 9.0]) + affine[:3, 3]
    assert _centre(actor.GetBounds()) == pytest.approx(expected, abs=0.3)


def test_hotspots_sit_on_the_fluorine_hotspots_and_skip_the_tube(view, scene):
    from scipy import ndimage

    from viewer.core.layers import calibration_mask

    fluorine = scene.volumes["fluorine"]
    data = np.asarray(fluorine.data, dtype=np.float32)
    tube = calibration_mask(scene.volumes, scene.region_names(), fluorine)
    cells = (data > scene.display["fluorine"].visible_range[0]) & ~tube
    labels, _ = ndimage.label(cells, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    biggest = np.argwhere(labels == int(np.argmax(sizes))).mean(axis=0)
    hotspot_world = fluorine.voxel_to_world_points(biggest)
    # the tube holds 1000 a.u.; half of it is far above any noise voxel of its mask (σ 40 at the demo's scanner noise)
    tube_world = fluorine.voxel_to_world_points(np.argwhere(tube & (data > 500)).mean(axis=0))

    shells = view._hotspot_actors[:2]
    low = np.min([np.asarray(a.GetBounds())[0::2] for a in shells], axis=0)
    high = np.max([np.asarray(a.GetBounds())[1::2] for a in shells], axis=0)
    assert np.all(hotspot_world > low) and np.all(hotspot_world < high)
    assert not (np.all(tube_world > low) and np.all(tube_world < high)), "the tube was drawn as a hotspot"
    tube_actor = view._hotspot_actors[-1]
    assert view._tube_drawn
    assert _centre(tube_actor.GetBounds()) == pytest.approx(tube_world, abs=4.0)
    assert tube_actor.GetProperty().GetColor() != view._hotspot_actors[0].GetProperty().GetColor()


def test_regions_drawn_in_their_colours_background_skipped(view, scene):
    from viewer.core.display import region_color

    names = {label: scene.timepoint.region_name(label) for label in view._region_actors}
    assert "background" not in names.values()
    assert {"core", "penumbra", "injection site"} <= set(names.values())
    for label, actor in view._region_actors.items():
        expected = np.array(region_color(label, names[label])) / 255.0
        assert actor.GetProperty().GetColor() == pytest.approx(tuple(expected))
    regions = scene.volumes["regions"]
    core_label = next(label for label, name in names.items() if name == "core")
    core_world = regions.voxel_to_world_points(np.argwhere(np.asarray(regions.data) == core_label).mean(axis=0))
    assert _centre(view._region_actors[core_label].GetBounds()) == pytest.approx(core_world, abs=3.0)


def test_scene_events_update_the_view(view, scene):
    target = scene.cursor + np.array([-20.0, 10.0, 5.0])
    scene.set_cursor(target)
    assert view._cursor.GetPosition() == pytest.approx(tuple(scene.cursor))

    before = [a.GetMapper().GetInput() for a in view._hotspot_actors]
    scene.set_timepoint(2)
    after = [a.GetMapper().GetInput() for a in view._hotspot_actors]
    assert after and all(a is not b for a, b in zip(after, before))

    scene.set_display("fluorine", visible=False)
    assert not any(a.GetVisibility() for a in view._hotspot_actors)
    scene.set_display("regions", opacity=0.5)
    core = next(a for label, a in view._region_actors.items() if scene.timepoint.region_name(label) == "core")
    assert core.GetProperty().GetOpacity() == pytest.approx(0.5 * 0.5)

    view.set_mode("volume")
    assert view.mode == "volume" and view._anatomy_volume is not None and view._anatomy_actor is None
    assert view.mode_combo.currentData() == "volume"
    overlay_actors = list(view.overlay.GetActors())
    assert view._hotspot_actors and all(a in overlay_actors for a in view._hotspot_actors)
    view.set_mode("surface")
    assert view._anatomy_actor is not None


def test_volume_mode_transfer_function_from_the_anatomy(view, scene):
    """Air transparent, brain visible and shaded; preset, opacity and threshold controls work."""
    from viewer.core.transfer_function import PRESETS

    assert view.volume_controls.isHidden() and view.preset_combo.isHidden(), "volume controls in surface mode"
    view.set_mode("volume")
    assert not view.volume_controls.isHidden() and not view.preset_combo.isHidden()
    prop = view._anatomy_volume.GetProperty()
    opacity = prop.GetScalarOpacity()
    data = np.asarray(scene.anatomy.data)
    brain = data[data > 0]
    grey_matter, white_matter = np.percentile(brain, 50), np.percentile(brain, 90)
    assert opacity.GetValue(0.0) == 0.0, "the air (0) is not transparent"
    assert 0.05 <= opacity.GetValue(grey_matter) <= 0.5, "brain tissue not at a moderate opacity"
    assert opacity.GetValue(white_matter) > opacity.GetValue(np.percentile(brain, 10)) > 0.0
    r, g, b = prop.GetRGBTransferFunction().GetColor(grey_matter)
    assert r == g == b and 0.3 < r < 1.0, "not a grey ramp"
    assert prop.GetShade() == 1
    mapper = view._anatomy_volume.GetMapper()  # headless: the CPU ray caster
    assert mapper.GetSampleDistance() == pytest.approx(1.0) and mapper.GetMinimumImageSampleDistance() >= 1.0
    assert view._cursor in list(view.overlay.GetActors()), "the cursor is hidden inside the opaque brain"

    assert [view.preset_combo.itemData(i) for i in range(view.preset_combo.count())] == list(PRESETS)
    view.preset_combo.setCurrentIndex(view.preset_combo.findData("bright"))
    assert view.transfer_function.opacity_at(grey_matter) == 0.0 < view.transfer_function.opacity_at(white_matter)
    assert view._anatomy_volume.GetProperty().GetScalarOpacity().GetValue(grey_matter) == 0.0
    view.set_transfer_function(preset="tissue")
    assert view.preset_combo.currentData() == "tissue"
    base = view.transfer_function.opacity_at(grey_matter)
    view.opacity_slider.setValue(200)
    assert view.transfer_function.opacity_at(grey_matter) == pytest.approx(2 * base)
    view.opacity_slider.setValue(100)

    automatic = view.intensity_landmarks.background
    view.threshold_slider.setValue(view.threshold_slider.maximum())  # up to the typical tissue
    assert view.intensity_landmarks.background > automatic
    assert view.transfer_function.opacity_at(np.percentile(brain, 25)) == 0.0
    assert view.threshold_label.text() == f"{view.intensity_landmarks.background:.4g}"
    view.set_transfer_function(automatic_threshold=True)
    assert view.intensity_landmarks.background == automatic
    assert view.threshold_slider.value() == 0

    view.set_mode("surface")
    assert view.volume_controls.isHidden() and view.preset_combo.isHidden()
    assert view._cursor in list(view.renderer.GetActors())


def test_camera_looks_from_the_front_with_superior_up(view, scene):
    view.reset_camera()
    camera = view.renderer.GetActiveCamera()
    direction = np.asarray(camera.GetDirectionOfProjection())
    assert direction == pytest.approx((0.0, -1.0, 0.0), abs=1e-6)  # looking posteriorly
    assert np.asarray(camera.GetViewUp()) == pytest.approx((0.0, 0.0, 1.0), abs=1e-6)
    assert camera.GetPosition()[1] > scene.anatomy.world_bounds()[1][1]


def test_discarded_view_is_not_kept_alive_by_the_scene(qtbot, scene):
    import gc
    import weakref

    from viewer.ui.volume_view import VolumeView

    widget = VolumeView(scene)
    ref = weakref.ref(widget)
    widget.deleteLater()
    del widget
    qtbot.wait(10)
    gc.collect()
    assert ref() is None
    scene.set_cursor(scene.cursor + 3.0)  # the stale callback is a no-op

# -- the parent test ---------------------------------------------------------------------------

def _free_display() -> int:
    """A display number with no X socket yet (Xvfb refuses taken ones)."""
    for number in range(97, 140):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            return number
    raise RuntimeError("no free X display number between :97 and :139")


def _wait_for_x(number: int, server: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    path = f"/tmp/.X11-unix/X{number}"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"Xvfb :{number} exited with code {server.returncode}")
        if Path(path).exists():
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(path)
                    return
                except OSError:
                    pass
        time.sleep(0.05)
    raise RuntimeError(f"Xvfb :{number} did not start within {timeout} s")


@pytest.mark.xvfb
@pytest.mark.slow
def test_volume_view_renders_demo(demo_manifest, tmp_path):
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not on PATH: the VTK 3D view needs a real X server (apt install xvfb)")
    from tests.processes import stop

    number = _free_display()
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_x(number, server)
        env = dict(os.environ, DISPLAY=f":{number}", QT_QPA_PLATFORM="xcb")
        env.pop("WAYLAND_DISPLAY", None)
        child = subprocess.run([sys.executable, __file__, str(demo_manifest), str(tmp_path)],
                               env=env, capture_output=True, text=True, timeout=240, check=False)
        assert child.returncode == 0, f"child failed:\n{child.stdout}\n{child.stderr}"
    finally:
        stop(server)
    report = json.loads((tmp_path / "report.json").read_text())
    print(f"\n3D view screenshot: {report['png']}")
    print(json.dumps(report, indent=2))
    pixels = report["shape"][0] * report["shape"][1]
    assert report["colours"] > 2000, "the frame looks blank"
    assert report["grey"] > 0.03 * pixels, "no anatomy (grey) pixels"
    assert report["hot"] > 150, "no red/orange/yellow pixels"
    # at the demo's scanner noise the day-1 bolus (a 1.9 mm ball of 2,000 cells/mm³) shows as its voxels
    # above 3.5 σ, a few mm inside the translucent injection-site sphere: about 23 hot pixels at this
    # size (60 for the former 3 mm ball; 0 when it is not drawn)
    assert report["hotspot"] > 12, "no ¹⁹F hotspot pixels (hot colours that vanish with the ¹⁹F layer)"
    assert report["region"] > 1000, "no coloured region surfaces (pixels that vanish with the regions layer)"
    assert report["core"] > 40 or report["penumbra"] > 40, "no region colours (core red, penumbra yellow)"
    assert report["cursor_changed_pixels"] > 50, "moving the cursor did not change the frame"
    assert report["volume_colours"] > 500 and report["volume_grey"] > 0.03 * pixels, "volume rendering is blank"
    assert report["volume_hot"] > 60, "hotspots not visible in volume rendering"
    # volume rendering shows the head: a large share of the frame, not dark, with its folds
    assert report["volume_anatomy_fraction"] >= 0.15, "the volume rendering shows little of the head"
    assert report["volume_anatomy_mean"] >= 40, "the head is (nearly) black in volume rendering"
    assert report["volume_anatomy_detail"] >= 0.08, "the volume rendering is a featureless fog (no gyri/sulci)"
    assert report["volume_anatomy_detail"] > 3 * report["xray_anatomy_detail"]
    assert max(report["timings"]["volume_render_s"]) < 2.5, "volume rendering is not interactive"
    # the phantom: background noise transparent around the cube, the cube visible
    assert report["phantom_margin_pixels"] > 500 and report["phantom_margin_max"] == 0, "background noise is drawn"
    assert report["phantom_cube_mean"] > 30, "the phantom's cube (tissue) is not drawn"
    assert report["timepoint_hot"] > 60, "nothing hot after switching timepoint"
    assert report["timings"]["build_s"] < 5.0, "building the 3D view is far too slow"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(child_main(sys.argv[1], sys.argv[2]))


def test_recolour_and_rename_in_the_label_table_change_the_3d_view(view, scene):
    from dataclasses import replace

    editable = scene.editable()
    label = editable.table.label_of("injection site")
    actor = view._region_actors[label]
    editable.set_table("recolour", editable.table.with_entry(replace(editable.table.get(label), color=(0, 0, 255))))
    editable.rename(label, "graft A")
    assert view._region_actors[label] is actor, "a table change recolours, it does not rebuild surfaces"
    assert actor.GetProperty().GetColor() == pytest.approx((0.0, 0.0, 1.0))
    assert ("graft A", pytest.approx((0.0, 0.0, 1.0))) in view._legend_entries()
    assert not any(name == "injection site" for name, _ in view._legend_entries())
