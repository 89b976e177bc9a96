"""Coverage of the ¹⁹F count intervals on the realistic demo, over simulation seeds (issue 17).

The coverage test (tests/core/test_fluorine_intervals.py) uses a phantom of uniform balls in
their own regions; this builds the demo itself — registered sessions, several grafts per region,
the scanner noise profile — at ``--seeds`` seeds and, for every timepoint and cell region,
compares the 95 % interval of `viewer stats` with the cells truth.json says the generator put
there. It prints per region: the true count, the median §3 count and interval ends over seeds,
the share of seeds whose interval holds the truth, and how often the region was below detection.
A validation, not a timing: it takes about 15 s per seed.

Usage: python benchmarks/demo_interval_coverage.py [--seeds 20] [--first 1] [--noise scanner]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from viewer.core.analysis import compute_study_stats
from viewer.core.demo import write_demo_study
from viewer.core.io.study import load_study

CELL_REGIONS = ("core", "penumbra", "injection site")


def one_seed(seed: int, noise: str, folder: Path) -> list[tuple[str, str, int, float, float, float, bool]]:
    """(timepoint, region, true cells, §3 count, low, high, below detection) for one demo build."""
    manifest = write_demo_study(folder / f"seed{seed}", seed=seed, noise=noise)
    truth = json.loads((manifest.parent / "truth.json").read_text())
    stats = compute_study_stats(load_study(manifest))
    rows = []
    for timepoint, true_timepoint in zip(stats.timepoints, truth["timepoints"]):
        true_cells = {region["name"]: region["total_cells"] for region in true_timepoint["regions"]}
        for region in timepoint.regions:
            if region.name not in CELL_REGIONS:
                continue
            values = region.values
            rows.append((timepoint.label, region.name, int(true_cells[region.name]), float(values["fluorine_cells"]),
                         float(values["fluorine_cells_ci95_low"]), float(values["fluorine_cells_ci95_high"]),
                         bool(values["below_detection"])))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first", type=int, default=1, help="the first seed")
    parser.add_argument("--noise", default="scanner", choices=("scanner", "ideal"))
    args = parser.parse_args()
    results: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="demo-coverage-") as folder:
        for seed in range(args.first, args.first + args.seeds):
            for row in one_seed(seed, args.noise, Path(folder)):
                results[row[:2]].append(row)
            print(f"seed {seed} done", file=sys.stderr, flush=True)
    print(f"demo ({args.noise} noise), seeds {args.first}-{args.first + args.seeds - 1}: "
          "per region the true cells, medians over seeds of the §3 count and of the 95 % interval, "
          "the share of seeds whose interval holds the truth, and the share below detection")
    print("| timepoint | region | true cells | §3 count | interval (medians) | covered | below detection |")
    print("|---|---|---|---|---|---|---|")
    for (label, name), rows in results.items():
        true = rows[0][2]
        covered = sum(low <= true <= high for *_, low, high, _below in rows) / len(rows)
        below = sum(row[6] for row in rows) / len(rows)
        count = statistics.median(row[3] for row in rows)
        low = statistics.median(row[4] for row in rows)
        high = statistics.median(row[5] for row in rows)
        print(f"| {label} | {name} | {true:,} | {count:,.0f} | {low:,.0f}–{high:,.0f} | {covered:.2f} | {below:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
