"""Benchmark annotation: one brush stroke + region panel refresh, undo, history memory.

Budgets (issue #5): one brush stroke of 20 mm radius applied and the region panel refreshed
≤ 50 ms median; undo of it ≤ 20 ms; memory of 100 strokes of undo history on a 512×512×300
map < 50 MB.

The stroke is measured in the window (offscreen) on the demo study, from the mouse press until
the region table shows the recomputed numbers (worker recompute of the touched regions only).

Usage: QT_QPA_PLATFORM=offscreen python benchmarks/bench_annotation.py [--study .demo/study]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def window_strokes(study: Path, runs: int) -> tuple[list[float], list[float], list[float]]:
    from PySide6 import QtCore, QtWidgets

    from viewer.ui.main_window import MainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    settings = QtCore.QSettings(str(Path(tempfile.mkdtemp()) / "bench.ini"), QtCore.QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    window.ask_recover = lambda infos: False
    window.ask_unsaved = lambda unsaved: QtWidgets.QMessageBox.StandardButton.Discard
    window.resize(1600, 950)
    window.show()
    assert window.open(study)
    _wait(app, lambda: window.scene.results.latest(window.scene.timepoint.label) is not None and window.jobs.pool.activeThreadCount() == 0)
    panel = window.annotation_panel
    label = panel.add_region("benchmark region")
    # The region already holds a few voxels (users paint into an existing region): undoing a
    # stroke then leaves the region, so the time course keeps its curves and only updates data.
    seed_world = window.scene.cursor + np.array([-45.0, 30.0, 0.0])
    seed = np.rint(window.scene.anatomy.world_to_voxel_points(seed_world)).astype(int)
    box = tuple(slice(int(c), int(c) + 2) for c in seed)
    window.scene.editable().paint_mask("seed", box, np.ones((2, 2, 2), bool), label)
    _wait(app, lambda: window.jobs.pool.activeThreadCount() == 0)
    panel.radius.setValue(20.0)
    refreshed: list[int] = []
    window.stats_ready.connect(lambda: refreshed.append(1))
    view = window.ortho.views["axial"]
    strokes, undos, sphere_strokes = [], [], []
    center = window.scene.cursor + np.array([-45.0, -10.0, 0.0])
    for sphere, times in ((False, strokes), (True, sphere_strokes)):
        panel.sphere.setChecked(sphere)
        tool = panel.set_tool("brush")
        for index in range(runs + 2):
            point = center + np.array([0.0, 2.0 * (index % 5), 0.0])
            refreshed.clear()
            start = time.perf_counter()
            view.stroke_started.emit()  # what the view does around a mouse press … release
            tool.press(view.plane, point)
            tool.move(view.plane, point + [8.0, 0.0, 0.0])
            tool.release(view.plane, point + [8.0, 0.0, 0.0])
            view.stroke_finished.emit()
            _wait(app, lambda: bool(refreshed))
            elapsed = (time.perf_counter() - start) * 1000.0
            undo_start = time.perf_counter()
            window.scene.editable().undo()
            undo_ms = (time.perf_counter() - undo_start) * 1000.0
            _wait(app, lambda: window.jobs.pool.activeThreadCount() == 0)
            app.processEvents()
            if index >= 2:
                times.append(elapsed)
                if not sphere:
                    undos.append(undo_ms)
    window.close()
    return strokes, sphere_strokes, undos


def _wait(app, condition, timeout_s: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while not condition():
        app.processEvents()
        if time.perf_counter() > deadline:
            raise TimeoutError("timed out")
        time.sleep(0.0002)


def history_memory(strokes: int = 100) -> tuple[float, float, float]:
    """Undo history of 100 sphere strokes (20 mm) on a 512×512×300 uint8 map at 0.5×0.5×0.6 mm."""
    from viewer.core.edit_tools import brush
    from viewer.core.regions import EditableLabels, LabelTable
    from viewer.core.volume import Volume

    affine = np.diag([0.5, 0.5, 0.6, 1.0])
    editable = EditableLabels(Volume.from_array(np.zeros((512, 512, 300), np.uint8), affine, role="regions"),
                              LabelTable.from_names({1: "core", 2: "penumbra"}))
    rng = np.random.default_rng(0)
    times = []
    for index in range(strokes):
        center = rng.uniform([30, 30, 30], [226, 226, 150])
        start = time.perf_counter()
        brush(editable, center, 20.0, 1 + index % 2, sphere=True)
        times.append((time.perf_counter() - start) * 1000.0)
    raw = sum(e._before.shape and np.prod(e._before.shape) * 2 for e in editable._undo)  # uncompressed before+after
    held = editable.history_nbytes() / 2**20
    undo_times = []
    for _ in range(20):
        start = time.perf_counter()
        editable.undo()
        undo_times.append((time.perf_counter() - start) * 1000.0)
    return held, raw / 2**20, statistics.median(times), statistics.median(undo_times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=ROOT / ".demo" / "study")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    with tempfile.TemporaryDirectory() as folder:
        import shutil

        study = Path(folder) / "study"
        shutil.copytree(args.study, study)  # the window journals edits beside the study
        disk, sphere, undo = window_strokes(study / "study.toml", args.runs)
    print(f"brush stroke, 20 mm disk in the slice, applied + region panel refreshed: {statistics.median(disk):6.1f} ms median of {len(disk)}")
    print(f"brush stroke, 20 mm sphere (3-D), applied + region panel refreshed:      {statistics.median(sphere):6.1f} ms median of {len(sphere)}")
    print(f"undo of the disk stroke + region panel refreshed:                         {statistics.median(undo):6.1f} ms median of {len(undo)}")
    held, raw, paint, undo_core = history_memory()
    print(f"100 sphere strokes (20 mm) on 512x512x300: undo history {held:.1f} MB "
          f"(uncompressed boxes would be {raw:.0f} MB); paint {paint:.1f} ms, undo {undo_core:.1f} ms median per stroke")
    return 0


if __name__ == "__main__":
    sys.exit(main())
