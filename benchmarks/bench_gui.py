"""Benchmark the window: redraw after a slice step, cold start, memory of a large study.

Budgets (issue #4, medians of ≥ 20 steps): redraw of the three views after one slice step with
five layers ≤ 16 ms on the demo and ≤ 40 ms with a 512×512×300 anatomical; cold start of
`viewer --demo` to the first drawn frame ≤ 3 s; memory after opening the 512×512×300 study
≤ 2× its in-memory size (reported both as the process total and as what opening added).

"Redraw after one slice step" is measured from the scene change (a wheel notch) until the
stepped view has its new image on screen and the other two views have moved their crosshair:
worker sampling + compositing + upload, as the user waits for it.

Usage: QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui.py [--study .demo/study]
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


def step_redraw_ms(study: Path, steps: int) -> list[float]:
    """Open the window offscreen, keep five layers visible, time `steps` slice steps."""
    from PySide6 import QtCore, QtWidgets

    from viewer.ui.main_window import MainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    settings = QtCore.QSettings(str(Path(tempfile.mkdtemp()) / "bench.ini"), QtCore.QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    window.resize(1600, 950)
    window.show()
    drawn: list[str] = []
    window.frame_drawn.connect(drawn.append)
    assert window.open(study)
    _wait(app, lambda: len(set(drawn)) == 3)
    scene = window.scene
    for role in list(scene.display):
        scene.set_display(role, visible=role in FIVE_LAYERS)
    _wait(app, lambda: window.jobs.pool.activeThreadCount() == 0)
    times = []
    for index in range(steps + 3):
        drawn.clear()
        start = time.perf_counter()
        scene.step_slice("axial", 1 if index % 2 == 0 else -1)
        _wait(app, lambda: "axial" in drawn)
        app.processEvents()
        if index >= 3:  # the first steps warm caches
            times.append((time.perf_counter() - start) * 1000.0)
    window.close()
    return times


def _wait(app, condition, timeout_s: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while not condition():
        app.processEvents()
        if time.perf_counter() > deadline:
            raise TimeoutError("the window did not draw in time")
        time.sleep(0.0002)


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


def cold_start_s(runs: int, data_home: Path) -> list[float]:
    """`viewer --demo` to the first frame of all three views, in fresh processes."""
    env = dict(os.environ, XDG_DATA_HOME=str(data_home), QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    viewer = Path(sys.executable).with_name("viewer")
    subprocess.run([str(viewer), "demo", "--out", str(data_home / "cell-therapy-viewer" / "demo-study")],
                   check=False, capture_output=True, env=env)
    times = []
    for _ in range(runs + 1):
        probe = data_home / "probe.txt"
        probe.unlink(missing_ok=True)
        subprocess.run([str(viewer), "--demo"], check=True, env=dict(env, VIEWER_STARTUP_PROBE=str(probe)),
                       capture_output=True, timeout=120)
        times.append(float(probe.read_text()))
    return times[1:]  # the first run also fills the OS file cache and numba's cache


def memory_child(study: str) -> None:
    """Child process: open the study, wait for frames and statistics, print RSS before/after."""
    from PySide6 import QtCore, QtWidgets

    from viewer.ui.main_window import MainWindow

    app = QtWidgets.QApplication([])
    settings = QtCore.QSettings(str(Path(tempfile.mkdtemp()) / "mem.ini"), QtCore.QSettings.Format.IniFormat)
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


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-child":
        memory_child(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=ROOT / ".demo" / "study")
    parser.add_argument("--steps", type=int, default=21)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    demo_steps = step_redraw_ms(args.study, args.steps)
    print(f"demo (5 layers): redraw after one slice step {statistics.median(demo_steps):6.1f} ms median of {len(demo_steps)}")
    with tempfile.TemporaryDirectory() as folder:
        large = write_large_study(Path(folder) / "large")
        large_steps = step_redraw_ms(large, args.steps)
        print(f"512x512x300 (5 layers): redraw after one slice step {statistics.median(large_steps):6.1f} ms median of {len(large_steps)}")
        size = in_memory_mb(large)
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(large)], capture_output=True, text=True,
                             env=dict(os.environ), timeout=600, check=True)
        before, after, anon_before, anon_after, file_after = (float(v) for v in out.stdout.split()[-5:])
        print(f"512x512x300 study: in-memory size {size:.0f} MB; window RSS {before:.0f} MB before opening, "
              f"{after:.0f} MB after: opening added {after - before:.0f} MB = {(after - before) / size:.2f}x the study "
              f"(heap +{anon_after - anon_before:.0f} MB, memory-mapped file pages {file_after:.0f} MB in all)")
    with tempfile.TemporaryDirectory() as home:
        starts = cold_start_s(args.runs, Path(home))
        print(f"cold start of viewer --demo to first frame: {statistics.median(starts):.2f} s median of {len(starts)} "
              f"(min {min(starts):.2f}, max {max(starts):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
