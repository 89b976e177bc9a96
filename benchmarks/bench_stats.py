"""Benchmark: `viewer stats` wall time, and recomputing one region after an edit.

Budgets (issue #3): `viewer stats` on the demo study ≤ 2 s wall for all timepoints including
start-up; recomputing one 200,000-voxel region after an edit ≤ 30 ms median, compared with a
from-scratch recompute of the timepoint measured in the same run. Issue 17: ≤ 1.5 s whole
process with the ¹⁹F intervals; the time without them is measured in the same run, interleaved,
with ``--baseline DIR`` (a checkout from before the intervals, put first on PYTHONPATH), and the
intervals' own share in process (their graft fits per timepoint).

Usage: python benchmarks/bench_stats.py [--study .demo/study] [--runs 7] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


from timing import median_ms  # benchmarks/ is on sys.path when run as a script
from viewer.core.io.study import load_study, load_timepoint
from viewer.core.quant.stats import TimepointQuantifier
from viewer.core.volume import Volume



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=Path(".demo/study"))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="a checkout without the ¹⁹F intervals, for the same run")
    args = parser.parse_args()
    runs = max(5, args.runs)
    viewer = Path(sys.executable).with_name("viewer")

    command = [str(viewer), "stats", str(args.study)]
    subprocess.run(command, check=True, capture_output=True)  # warm caches once
    if args.baseline is None:
        wall = median_ms(lambda: subprocess.run(command, check=True, capture_output=True), runs)
        print(f"viewer stats (all timepoints, JSON, including start-up): {wall:7.0f} ms median of {runs}")
    else:
        _with_baseline(command, args.baseline, runs)
    _interval_share(args.study)

    study = load_study(args.study)
    timepoint = study.timepoints[1 if len(study.timepoints) > 1 else 0]
    volumes = load_timepoint(study, timepoint)
    regions = volumes["regions"]
    labels = np.array(regions.data)
    center = np.array(labels.shape) // 2
    grid = np.indices(labels.shape, sparse=True)
    radius = (200_000 * 3 / (4 * np.pi)) ** (1 / 3)  # voxels; the anatomy is 1 mm isotropic
    ball = sum((g - c) ** 2 for g, c in zip(grid, center)) <= radius**2
    new_label = int(labels.max()) + 1
    labels[ball] = new_label
    edited = Volume.from_array(labels, regions.voxel_to_world, role="regions")
    volumes = {**volumes, "regions": edited}
    quantifier = TimepointQuantifier(study, timepoint, volumes)
    voxels = int((labels == new_label).sum())
    print(f"edited region: {voxels:,} voxels on the {labels.shape} regions grid, measured on {len(volumes) - 2} maps")

    edit = tuple(slice(int(c), int(c) + 1) for c in center)

    def recompute_region() -> None:
        labels[edit] = new_label  # a one-voxel edit, then the region panel's refresh
        quantifier.labels_changed(new_label, edit)
        quantifier.region(new_label)

    one = median_ms(recompute_region, max(20, runs))
    scratch = median_ms(lambda: TimepointQuantifier(study, timepoint, volumes).compute(), runs)
    print(f"recompute one region after an edit: {one:7.1f} ms median of {max(20, runs)}")
    print(f"from-scratch recompute of the timepoint (all regions, all maps): {scratch:7.1f} ms median; ratio {scratch / one:.0f}x")
    return 0


def _with_baseline(command: list[str], baseline: Path, runs: int) -> None:
    """This checkout and the baseline's, interleaved run by run (the same machine load)."""
    module = [sys.executable, "-m", "viewer", *command[1:2], str(Path(command[2]).resolve())]
    baseline = baseline.resolve()
    env = dict(os.environ, PYTHONPATH=str(baseline))
    # `python -m` puts the working folder first on sys.path: each side runs from its own checkout
    # (from this one, the baseline would silently import this checkout's code)
    sides = ((Path(__file__).resolve().parents[1], None), (baseline, env))
    for folder, environment in sides:
        where = subprocess.run([sys.executable, "-c", "import viewer; print(viewer.__file__)"], cwd=folder,
                               env=environment, check=True, capture_output=True, text=True).stdout.strip()
        if not Path(where).resolve().is_relative_to(folder):
            raise SystemExit(f"the run from {folder} imports {where}, not its own checkout")
        subprocess.run(module, check=True, capture_output=True, env=environment, cwd=folder)
    now, before = [], []
    for _ in range(runs):
        for times, (folder, environment) in zip((now, before), sides):
            start = time.perf_counter()
            subprocess.run(module, check=True, capture_output=True, env=environment, cwd=folder)
            times.append((time.perf_counter() - start) * 1000)
    a, b = statistics.median(now), statistics.median(before)
    print(f"viewer stats whole process, median of {runs}: this checkout {a:7.0f} ms, baseline {baseline.name} {b:7.0f} ms, "
          f"ratio {a / b:.2f}x")


def _interval_share(study_path: Path) -> None:
    """In process: the intervals' graft fits per timepoint, against quantifying it."""
    from viewer.core.quant.fluorine_interval import CountInterval

    study = load_study(study_path)
    for timepoint in study.timepoints:
        volumes = load_timepoint(study, timepoint)
        quantifier = TimepointQuantifier(study, timepoint, volumes)
        total = median_ms(lambda q=quantifier: TimepointQuantifier(study, timepoint, volumes).compute(), 3)
        fits = median_ms(lambda: CountInterval.of(quantifier.fluorine), 5)
        clusters = CountInterval.of(quantifier.fluorine).factors.shape[0] - 1
        print(f"{timepoint.label}: intervals {fits:6.1f} ms ({clusters} clusters) of {total:6.1f} ms quantifying it")


if __name__ == "__main__":
    sys.exit(main())
