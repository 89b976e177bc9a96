"""Benchmark: `viewer stats` wall time, and recomputing one region after an edit.

Budgets (issue #3): `viewer stats` on the demo study ≤ 2 s wall for all timepoints including
start-up; recomputing one 200,000-voxel region after an edit ≤ 30 ms median, compared with a
from-scratch recompute of the timepoint measured in the same run.

Usage: python benchmarks/bench_stats.py [--study .demo/study] [--runs 7]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
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
    args = parser.parse_args()
    runs = max(5, args.runs)
    viewer = Path(sys.executable).with_name("viewer")

    command = [str(viewer), "stats", str(args.study)]
    subprocess.run(command, check=True, capture_output=True)  # warm caches once
    wall = median_ms(lambda: subprocess.run(command, check=True, capture_output=True), runs)
    print(f"viewer stats (all timepoints, JSON, including start-up): {wall:7.0f} ms median of {runs}")

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


if __name__ == "__main__":
    sys.exit(main())
