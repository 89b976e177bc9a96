"""Benchmark: `viewer report` wall time including start-up, and the PDF's size.

Budget (issue #7): `viewer report` on the demo study (three timepoints) ≤ 5 s wall including
start-up; the PDF ≤ 5 MB. Measured in the same run for scale: `viewer --version` (interpreter
and package start-up) and `viewer stats` (loading and quantifying the same timepoints), so the
report's own share — key images, time course, layout — can be read off.

Usage: python benchmarks/bench_report.py [--study .demo/study] [--runs 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import median_ms  # benchmarks/ is on sys.path when run as a script


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=Path(".demo/study"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = max(5, args.runs)
    viewer = str(Path(sys.executable).with_name("viewer"))
    with tempfile.TemporaryDirectory() as folder:
        pdf = Path(folder) / "report.pdf"
        commands = {
            # the machine's pace: every Python program reading these images starts with this
            'floor: python -c "import numpy, nibabel"': [sys.executable, "-c", "import numpy, nibabel"],
            "viewer --version (start-up only)": [viewer, "--version"],
            "viewer stats (3 timepoints)": [viewer, "stats", str(args.study)],
            "viewer report (3 timepoints)": [viewer, "report", str(args.study), "-o", str(pdf)],
            "viewer report --deidentify": [viewer, "report", str(args.study), "-o", str(pdf), "--deidentify"],
            "viewer report --timepoint 'day 7'": [viewer, "report", str(args.study), "-o", str(pdf), "--timepoint", "day 7"],
        }
        for command in commands.values():
            subprocess.run(command, check=True, capture_output=True)  # warm the numba cache and the page cache
        results = {}
        for name, command in commands.items():
            results[name] = median_ms(lambda c=command: subprocess.run(c, check=True, capture_output=True), runs)
            print(f"{name:38s} {results[name]:7.0f} ms median of {runs}")
        subprocess.run(commands["viewer report (3 timepoints)"], check=True, capture_output=True)
        size = pdf.stat().st_size
    report = results["viewer report (3 timepoints)"]
    print(f"report / stats: {report / results['viewer stats (3 timepoints)']:.2f}×; "
          f"report minus stats: {report - results['viewer stats (3 timepoints)']:.0f} ms")
    print(f"PDF size (3 timepoints): {size / 1e6:.2f} MB")
    floor = results['floor: python -c "import numpy, nibabel"']
    for name, budget in (("viewer stats (3 timepoints)", 1000), ("viewer report (3 timepoints)", 2500),
                         ("viewer report --deidentify", 3000)):
        print(f"issue 19: {name} {results[name]:.0f} ms (budget {budget} ms): {results[name] / floor:.2f}x the floor "
              f"of {floor:.0f} ms")
    print(f"budget: ≤ 5000 ms and ≤ 5 MB -> {'met' if report <= 5000 and size <= 5e6 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
