"""Benchmark the window: redraw after a slice step, hover readout, cold start, memory of a large study.

Budgets (issue #4, medians of ≥ 20 steps): redraw of the three views after one slice step with
five layers ≤ 16 ms on the demo and ≤ 40 ms with a 512×512×300 anatomical; cold start of
`viewer --demo` to the first drawn frame ≤ 3 s; memory after opening the 512×512×300 study
≤ 2× its in-memory size (reported both as the process total and as what opening added).
Issue #15: the same slice-step budgets hold with three measurements drawn in the views (a
ruler, an ellipse, a sphere), and the hover readout (mouse moved over a view until the readout
label shows the values of every layer there) takes ≤ 16 ms, one frame, median of ≥ 50 points.

"Redraw after one slice step" is measured from the scene change (a wheel notch) until the
stepped view has its new image on screen and the other two views have moved their crosshair:
worker sampling + compositing + upload, as the user waits for it, or, for a slice the window
computed in advance next to the one on screen (viewer.ui.window_prefetching), the upload alone.
Steps without and with measurements are interleaved in the same window; steps back and forth
reach kept slices, and "jump to a slice not kept" (+3, -2, ...) times slices never drawn or
computed before. The main thread waits in a Qt event loop, as the application's does.

Cold start is timed from process start (/proc) to the first frame, interleaved with its floor:
a program that imports numpy, nibabel, PySide6 and pyqtgraph and shows one axial slice of the
demo's anatomy in a pyqtgraph image view (the least any Qt viewer of these files does), so a
slower machine shows as a slower floor, not as a slower application.

"Hover readout" is measured per point across the brain, interleaved with its floor (a plain
rich-text QLabel given the same kind of text): a mouse-move event sent to the axial view, the
window's hover slot, and ``Scene.readout`` alone; each with and without the event loop drained
afterwards (" + paint": layout and painting of the label). Ratios are to the floor of the same run.

The 512×512×300 study is built once into a folder under /tmp (``--cache``) and reused; the demo is
copied to a temporary folder (the window locks the study it opens), and no workspace is read or
written, so every run starts from the same view.

Usage: QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui.py [--study .demo/study.toml]
       [--parts step,hover,memory,cold] [--steps 24] [--points 60] [--cache /tmp/viewer-bench-512x512x300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIVE_LAYERS = ("anatomical", "fluorine", "pet", "gd", "regions")


def rss_mb(kind: str = "VmRSS") -> float:
    """Resident memory of this process in MB (Linux /proc): VmRSS total, RssAnon (heap) or
    RssFile (pages of memory-mapped files, such as an uncompressed .nii being viewed)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(kind + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def open_window(study: Path):
    """The window offscreen on ``study`` (its own settings, no workspace read or written, no
    dialogs, the compiled sampling kernels loaded as the application loads them), all three
    views drawn and the statistics done; returns (app, window, drawn)."""
    from PySide6 import QtCore, QtWidgets

    from viewer.ui.main_window import MainWindow
    from viewer.ui.window_workspace import REMEMBER_KEY

    from viewer.core.plane_kernels import warm_up

    warm_up()  # the application loads its compiled kernels at start-up (viewer.ui.app): step with them
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    settings = QtCore.QSettings(str(Path(tempfile.mkdtemp()) / "bench.ini"), QtCore.QSettings.Format.IniFormat)
    settings.setValue(REMEMBER_KEY, "false")  # the same start every run, and no file written beside the study
    window = MainWindow(settings=settings)
    window.ask_recover = lambda infos: False
    window.ask_take_over = lambda message: False
    window.ask_unsaved = lambda unsaved: QtWidgets.QMessageBox.StandardButton.Discard
    window.resize(1600, 950)
    window.show()
    drawn: list[str] = []
    window.frame_drawn.connect(drawn.append)
    assert window.open(study)
    _wait(app, lambda: len(set(drawn)) == 3)
    _wait(app, lambda: window.scene.results.latest(window.scene.timepoint.label) is not None
          and window.jobs.pool.activeThreadCount() == 0, timeout_s=300)
    app.processEvents()
    return app, window, drawn


def three_measurements(scene) -> list:
    """A ruler and an ellipse in the axial slice of the cursor, and a sphere, around the cursor."""
    from viewer.core.measurements import EllipseROI, Ruler, SphereROI

    c = np.asarray(scene.cursor, float)
    return [Ruler(c + [-20.0, -8.0, 0.0], c + [20.0, 8.0, 0.0], name="R"),
            SphereROI(c + [0.0, 18.0, 0.0], 10.0, name="S"),
            EllipseROI.in_plane(scene.plane("axial"), c + [-12.0, -18.0, 0.0], c + [-2.0, -12.0, 0.0], name="E")]


#: The step's floor in the same run: the three views drawing the images they already show.
REDISPLAY = "floor: redisplay 3 views"
#: Steps to slices the window has neither drawn nor computed in advance (window_prefetching):
#: sampled and composited while the reader waits, as every step was before.
JUMP = "jump to a slice not kept"


def step_redraw_ms(app, window, drawn: list[str], steps: int) -> dict[str, list[float]]:
    """Time slice steps with five layers visible, without and with three measurements,
    interleaved in blocks of two steps (+1 then -1, so every block starts on the same slice):

    * "plain": no measurement;
    * "measured": three measurements (ruler + ellipse in the starting slice, sphere around it);
      split into "measured, on their slice" (the step back to the starting slice: the axial
      view draws all three) and "measured, next slice" (the step off it: the sphere's cut only).
    """
    scene = window.scene
    for role in list(scene.display):
        scene.set_display(role, visible=role in FIVE_LAYERS)
    _wait(app, lambda: window.jobs.pool.activeThreadCount() == 0)
    shapes = three_measurements(scene)
    times: dict[str, list[float]] = {"plain": [], "measured": [], "measured, on their slice": [],
                                     "measured, next slice": [], JUMP: [], REDISPLAY: []}
    from viewer.ui.slice_view import show_rgb

    def redisplay_ms() -> float:
        """The floor of a step: the three views given the images they show again, and drawn."""
        start = time.perf_counter()
        for view in window.ortho.views.values():
            if view.image.image is not None:
                show_rgb(view.image, view.image.image)
        app.processEvents()
        return (time.perf_counter() - start) * 1000.0

    warm = 4  # one block of each: the first steps warm caches
    for index in range(2 * steps + warm):
        measured = (index // 2) % 2 == 1
        direction = 1 if index % 2 == 0 else -1
        if index % 2 == 0:  # a block starts: add or remove the measurements (not timed)
            scene.measurements.replace_all(shapes if measured else [])
            _wait(app, lambda: window.jobs.pool.activeThreadCount() == 0)
            app.processEvents()
        drawn.clear()
        start = time.perf_counter()
        scene.step_slice("axial", direction)
        _wait_for_frame(window, drawn, "axial")
        app.processEvents()
        elapsed = (time.perf_counter() - start) * 1000.0
        if index >= warm:
            if measured:
                times["measured"].append(elapsed)
                times["measured, on their slice" if direction < 0 else "measured, next slice"].append(elapsed)
            else:
                times["plain"].append(elapsed)
                times[REDISPLAY].append(redisplay_ms())
    scene.measurements.clear()
    _wait(app, lambda: window.jobs.pool.activeThreadCount() == 0)
    app.processEvents()
    for index in range(steps):  # +3, -2, +3, ...: every slice reached is one never drawn nor computed before
        drawn.clear()
        start = time.perf_counter()
        scene.step_slice("axial", 3 if index % 2 == 0 else -2)
        _wait_for_frame(window, drawn, "axial")
        app.processEvents()
        times[JUMP].append((time.perf_counter() - start) * 1000.0)
        _wait(app, lambda: window.jobs.pool.activeThreadCount() == 0)
    scene.step_slice("axial", -steps // 2)
    _wait(app, lambda: window.jobs.pool.activeThreadCount() == 0)
    app.processEvents()
    return times


def hover_path(scene, count: int) -> np.ndarray:
    """``count`` world points in the cursor's axial slice, a wave from one side of the head to
    the other (inside the middle 70 % of the anatomy's content)."""
    corners = scene.anatomy_extent()
    low, high = corners.min(axis=0), corners.max(axis=0)
    centre, half = (low + high) / 2.0, (high - low) / 2.0
    t = np.linspace(-0.7, 0.7, count)
    points = np.repeat(np.asarray(scene.cursor, float)[None, :], count, axis=0)
    points[:, 0] = centre[0] + t * half[0]
    points[:, 1] = centre[1] + 0.5 * half[1] * np.sin(3.0 * np.pi * t)
    return points


HOVER_KINDS = ("floor: label.setText", "scene.readout", "window._on_hover", "mouse move event")


def hover_ms(app, window, points: np.ndarray) -> dict[str, list[float]]:
    """Hover readout at each point, the four kinds interleaved (in a random order per point):

    * "mouse move event": a QMouseEvent sent to the axial view's viewport, through pyqtgraph's
      hover delivery, ``SliceViewBox.hoverEvent`` → ``hovered`` → ``MainWindow._on_hover`` →
      ``_update_readout`` (``Scene.readout`` + label text + status bar), until the readout
      label's text has changed;
    * "window._on_hover": the same from the slot on;
    * "scene.readout": sampling every layer at the point, alone;
    * "floor: label.setText": a plain rich-text QLabel of its own window given the readout's text.

    Each kind gets its own point (the path's point moved by k × 0.3 mm) so that every call
    changes the text (QLabel ignores setting the text it has). The same kinds with the event
    loop drained afterwards (layout + paint of the label) are under "… + paint".
    """
    from PySide6 import QtCore, QtGui, QtWidgets

    scene = window.scene
    view = window.ortho.views["axial"]
    viewport = view.graphics.viewport()
    floor = QtWidgets.QLabel()
    floor.setTextFormat(QtCore.Qt.TextFormat.RichText)
    floor.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop | QtCore.Qt.AlignmentFlag.AlignLeft)
    floor.setWordWrap(True)
    floor.resize(window.readout.size())
    floor.show()
    app.processEvents()
    times: dict[str, list[float]] = {k: [] for k in HOVER_KINDS}
    times.update({f"{k} + paint": [] for k in HOVER_KINDS if k != "scene.readout"})
    last_call, missed = 0.0, 0

    def move_to(world) -> None:
        position = QtCore.QPointF(view.view_position_of(world))
        event = QtGui.QMouseEvent(QtCore.QEvent.Type.MouseMove, position, viewport.mapToGlobal(position),
                                  QtCore.Qt.MouseButton.NoButton, QtCore.Qt.MouseButton.NoButton,
                                  QtCore.Qt.KeyboardModifier.NoModifier)
        QtWidgets.QApplication.sendEvent(viewport, event)

    def floor_text() -> None:
        text = window.readout.text()
        floor.setText(text if text != floor.text() else text + " ")

    calls = {
        "floor: label.setText": lambda p: floor_text(),
        "scene.readout": lambda p: scene.readout(p),
        "window._on_hover": lambda p: window._on_hover(p),
        "mouse move event": move_to,
    }
    shift = np.array([0.3, 0.3, 0.0])
    rng = np.random.default_rng(0)
    for round_ in range(2):  # a first pass warms caches (not kept)
        for point in points:
            for kind in [HOVER_KINDS[i] for i in rng.permutation(len(HOVER_KINDS))]:  # none always after another
                p = point + HOVER_KINDS.index(kind) * shift
                before = window.readout.text()
                # 12 ms idle before every call, as between a real mouse's moves (and pyqtgraph drops
                # a move within 10 ms of the previous one); the same for every kind, not timed
                while time.perf_counter() - last_call < 0.012:
                    time.sleep(0.001)
                start = time.perf_counter()
                calls[kind](p)
                text_set = time.perf_counter()
                if kind == "mouse move event":
                    missed += window.readout.text() == before
                if kind != "scene.readout":
                    app.processEvents()
                painted = last_call = time.perf_counter()
                if round_ == 1:
                    times[kind].append((text_set - start) * 1000.0)
                    if kind != "scene.readout":
                        times[f"{kind} + paint"].append((painted - start) * 1000.0)
    if missed:
        print(f"  (warning: {missed} mouse moves did not change the readout)")
    floor.close()
    return times


def _p90(values: list[float]) -> float:
    return float(np.percentile(values, 90))


def report_steps(label: str, times: dict[str, list[float]]) -> None:
    plain = statistics.median(times["plain"])
    for kind, values in times.items():
        median = statistics.median(values)
        extra = "" if kind == "plain" else f"  {median / plain:5.2f}x plain ({median - plain:+.1f} ms)"
        print(f"{label}: slice step redraw, {kind:25s} {median:6.1f} ms median, p90 {_p90(values):6.1f}, "
              f"n={len(values)}{extra}")


def report_hover(label: str, times: dict[str, list[float]]) -> None:
    for suffix in ("", " + paint"):
        floor = statistics.median(times["floor: label.setText" + suffix])
        for kind in HOVER_KINDS:
            values = times.get(kind + suffix)
            if values is None:
                continue
            median = statistics.median(values)
            print(f"{label}: hover {kind + suffix:31s} {median:7.2f} ms median, p90 {_p90(values):7.2f}, "
                  f"n={len(values)}  {median / floor:6.1f}x floor")


def _wait_for_frame(window, drawn: list[str], orientation: str, timeout_s: float = 60.0) -> None:
    """Until ``window`` has drawn a new image in ``orientation``, the main thread idle in a Qt event
    loop as the application's is (a polling loop would take the GIL thousands of times a second
    from the worker that samples the slice, which no user's window does)."""
    from PySide6 import QtCore

    if orientation in drawn:
        return
    loop = QtCore.QEventLoop()

    def on_frame(name: str) -> None:
        if name == orientation:
            loop.quit()

    timer = QtCore.QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)
    window.frame_drawn.connect(on_frame)
    timer.start(int(timeout_s * 1000))
    try:
        if orientation not in drawn:
            loop.exec()
    finally:
        timer.stop()
        window.frame_drawn.disconnect(on_frame)
    if orientation not in drawn:
        raise TimeoutError("the window did not draw in time")


def _wait(app, condition, timeout_s: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while not condition():
        app.processEvents()
        if time.perf_counter() > deadline:
            raise TimeoutError("the window did not draw in time")
        time.sleep(0.0002)


LARGE_VERSION = "1"  # bump when write_large_study changes: the cached copy is rebuilt


def large_study(cache: Path) -> Path:
    """The 512×512×300 study of :func:`write_large_study`, built once into ``cache`` and reused."""
    manifest = cache / "study.toml"
    marker = cache / "bench-version.txt"
    if manifest.exists() and marker.exists() and marker.read_text().strip() == LARGE_VERSION:
        return manifest
    import shutil

    building = cache.with_name(cache.name + f".building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    start = time.perf_counter()
    write_large_study(building)
    (building / "bench-version.txt").write_text(LARGE_VERSION)
    shutil.rmtree(cache, ignore_errors=True)
    building.rename(cache)
    print(f"(built the 512x512x300 study in {cache} in {time.perf_counter() - start:.0f} s)")
    return manifest


def write_large_study(folder: Path) -> Path:
    """512×512×300 int16 anatomy (.nii, memory-mapped) + ¹⁹F, PET, Gd on their own grids + regions."""
    from viewer.core.io.nifti import save_nifti
    from viewer.core.io.study import write_manifest

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)

    def grid(shape, spacing, degrees=0.0, center=(0.0, 0.0, 0.0)):
        t = np.deg2rad(degrees)
        rotation = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
        affine = np.eye(4)
        affine[:3, :3] = rotation @ np.diag(spacing)
        affine[:3, 3] = np.asarray(center) - affine[:3, :3] @ ((np.array(shape) - 1) / 2)
        return affine

    anat_affine = grid((512, 512, 300), (0.5, 0.5, 0.6))
    ii, jj, kk = np.ogrid[:512, :512, :300]
    head = ((ii - 256) / 220.0) ** 2 + ((jj - 256) / 240.0) ** 2 + ((kk - 150) / 140.0) ** 2 < 1
    anatomy = np.where(head, 600, 0).astype(np.int16) + rng.integers(0, 200, (512, 512, 300), dtype=np.int16)
    save_nifti(anatomy, folder / "t1.nii", anat_affine)
    del anatomy
    labels = np.zeros((512, 512, 300), np.uint8)
    labels[((ii - 300) / 30.0) ** 2 + ((jj - 250) / 30.0) ** 2 + ((kk - 150) / 25.0) ** 2 < 1] = 1
    labels[((ii - 200) / 12.0) ** 2 + ((jj - 260) / 12.0) ** 2 + ((kk - 150) / 12.0) ** 2 < 1] = 2
    save_nifti(labels, folder / "regions.nii", anat_affine)
    del labels
    save_nifti(rng.rayleigh(1.0, (110, 110, 80)).astype(np.float32), folder / "f19.nii.gz", grid((110, 110, 80), (2, 2, 2), 12))
    save_nifti((rng.random((128, 128, 90)) * 6).astype(np.float32), folder / "pet.nii.gz", grid((128, 128, 90), (2, 2, 2)))
    save_nifti(rng.normal(0, 0.01, (160, 160, 110)).astype(np.float32), folder / "dr1.nii.gz", grid((160, 160, 110), (1.5, 1.5, 1.5), -8))
    manifest = {
        "study": {"id": "large-512"},
        "timepoint": [{"label": "day 7", "day": 7, "anatomical": "t1.nii", "fluorine": "f19.nii.gz", "pet": "pet.nii.gz",
                       "pet_units": "SUV", "gd": "dr1.nii.gz", "regions": "regions.nii",
                       "region_names": {1: "penumbra", 2: "core"}}],
    }
    return write_manifest(manifest, folder / "study.toml")


def in_memory_mb(study: Path) -> float:
    from viewer.core.io.study import load_study, load_timepoint

    loaded = load_study(study)
    return sum(np.asarray(v.data).nbytes for tp in loaded.timepoints for v in load_timepoint(loaded, tp).values()) / 2**20


def cold_start_s(runs: int, data_home: Path) -> tuple[list[float], list[float]]:
    """`viewer --demo` to the first frame of all three views, and the floor
    (:data:`COLD_FLOOR_PROGRAM`), in fresh processes, interleaved round by round (who goes
    first alternates), after one untimed run of each (OS file cache, numba's cache)."""
    env = dict(os.environ, XDG_DATA_HOME=str(data_home), QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    viewer = Path(sys.executable).with_name("viewer")
    demo = data_home / "cell-therapy-viewer" / "demo-study"
    subprocess.run([str(viewer), "demo", "--out", str(demo)], check=False, capture_output=True, env=env)
    probe = data_home / "probe.txt"

    def window() -> float:
        probe.unlink(missing_ok=True)
        subprocess.run([str(viewer), "--demo"], check=True, env=dict(env, VIEWER_STARTUP_PROBE=str(probe)),
                       capture_output=True, timeout=120)
        return float(probe.read_text())

    def floor() -> float:
        probe.unlink(missing_ok=True)
        subprocess.run([sys.executable, "-c", COLD_FLOOR_PROGRAM, str(probe), str(demo / "anat" / "t1.nii")],
                       check=True, env=env, capture_output=True, timeout=120, cwd=ROOT)
        return float(probe.read_text())

    window(), floor()
    windows, floors = [], []
    for round_ in range(runs):
        for side in ((window, floor) if round_ % 2 == 0 else (floor, window)):
            (windows if side is window else floors).append(side())
    return windows, floors


#: The floor of a cold start: the least a Python program showing the demo's anatomy in a Qt
#: window does — start, import numpy, nibabel, PySide6 and pyqtgraph, read one axial slice,
#: show it in a pyqtgraph image view and draw it once — timed from process start as the
#: application's probe is (/proc), and written to the file named by its first argument.
COLD_FLOOR_PROGRAM = """
import sys
import numpy, nibabel
from PySide6 import QtCore, QtWidgets
import pyqtgraph as pg
from viewer.ui.app import _process_start_seconds
app = QtWidgets.QApplication([])
image = nibabel.load(sys.argv[2])
axial = numpy.asarray(image.dataobj[:, :, image.shape[2] // 2], dtype=numpy.float32)
view = pg.ImageView()
view.setImage(axial, autoLevels=False, levels=(float(axial.min()), float(axial.max())))
view.resize(900, 700)
view.show()
def drawn():
    view.repaint()  # painted now, whatever the platform has scheduled
    open(sys.argv[1], "w").write(f"{_process_start_seconds():.3f}")
    app.quit()
QtCore.QTimer.singleShot(0, drawn)
app.exec()
"""


def memory_child(study: str) -> None:
    """Child process: open the study, wait for frames and statistics, print RSS before/after."""
    from viewer.ui.app import share_malloc_arena

    share_malloc_arena()  # as the application does at start-up, before any thread starts
    from PySide6 import QtCore, QtWidgets

    from viewer.ui.main_window import MainWindow

    app = QtWidgets.QApplication([])
    from viewer.ui.window_workspace import REMEMBER_KEY

    settings = QtCore.QSettings(str(Path(tempfile.mkdtemp()) / "mem.ini"), QtCore.QSettings.Format.IniFormat)
    settings.setValue(REMEMBER_KEY, "false")
    window = MainWindow(settings=settings)
    window.show()
    from viewer.core.plane_kernels import warm_up

    warm_up()  # the window loads its compiled kernels at start-up; count them in the baseline
    app.processEvents()
    before = rss_mb()
    before_anon = rss_mb("RssAnon")
    drawn: set[str] = set()
    window.frame_drawn.connect(drawn.add)
    window.open(study)
    _wait(app, lambda: len(drawn) == 3 and len(window.scene.results.ready()) == 1, timeout_s=300)
    for _ in range(20):  # scroll a little, as a user would
        window.scene.step_slice("axial", 3)
        app.processEvents()
    window.jobs.wait()
    app.processEvents()
    print(f"{before:.1f} {rss_mb():.1f} {before_anon:.1f} {rss_mb('RssAnon'):.1f} {rss_mb('RssFile'):.1f}")


PARTS = ("step", "hover", "memory", "cold")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-child":
        memory_child(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=ROOT / ".demo" / "study" / "study.toml",
                        help="the demo study (copied to a temporary folder: the window locks what it opens)")
    parser.add_argument("--steps", type=int, default=24, help="timed slice steps without, and again with, measurements")
    parser.add_argument("--points", type=int, default=60, help="hover points across the brain")
    parser.add_argument("--runs", type=int, default=5, help="cold starts")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "viewer-bench-512x512x300",
                        help="where the 512x512x300 study is built once and reused")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if parts - set(PARTS):
        parser.error(f"unknown parts {sorted(parts - set(PARTS))}")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    if parts & {"step", "hover"}:
        from viewer.ui.app import share_malloc_arena

        share_malloc_arena()  # the window's process as the application starts it
        import shutil

        large = large_study(args.cache)
        with tempfile.TemporaryDirectory() as folder:
            demo_folder = Path(folder) / "demo"
            manifest = args.study if args.study.suffix == ".toml" else args.study / "study.toml"
            shutil.copytree(manifest.parent, demo_folder, ignore=shutil.ignore_patterns("*.workspace.json"))
            for label, study in (("demo", demo_folder / manifest.name), ("512x512x300", large)):
                app, window, drawn = open_window(study)
                layers = len(window.scene.layers())
                label = f"{label} ({layers} layers, 5 shown)"
                if "step" in parts:
                    report_steps(label, step_redraw_ms(app, window, drawn, args.steps))
                if "hover" in parts:
                    report_hover(label, hover_ms(app, window, hover_path(window.scene, args.points)))
                window.close()
                app.processEvents()
    if "memory" in parts:
        large = large_study(args.cache)
        size = in_memory_mb(large)
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(large)], capture_output=True, text=True,
                             env=dict(os.environ), timeout=600, check=True)
        before, after, anon_before, anon_after, file_after = (float(v) for v in out.stdout.split()[-5:])
        print(f"512x512x300 study: in-memory size {size:.0f} MB; window RSS {before:.0f} MB before opening, "
              f"{after:.0f} MB after: opening added {after - before:.0f} MB = {(after - before) / size:.2f}x the study "
              f"(heap +{anon_after - anon_before:.0f} MB, memory-mapped file pages {file_after:.0f} MB in all)")
    if "cold" in parts:
        with tempfile.TemporaryDirectory() as home:
            starts, floors = cold_start_s(args.runs, Path(home))
            floor = statistics.median(floors)
            print(f"cold start of viewer --demo to first frame: {statistics.median(starts):.2f} s median of {len(starts)} "
                  f"(min {min(starts):.2f}, max {max(starts):.2f}); floor (numpy, nibabel, PySide6, pyqtgraph, "
                  f"one slice shown) {floor:.2f} s: {statistics.median(starts) / floor:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
