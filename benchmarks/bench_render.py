"""Benchmark: whole-process `viewer render` (one decorated axial view of the demo to PNG).

Budget (issue 19, "Speed at the floor"): `viewer render` ≤ 1.3× the floor, the least any
program showing that view must do — start Python, ``import numpy, nibabel`` and read the two
slices it shows (the anatomy's and the ¹⁹F map's, at the rendered point). Measured in the same
run, interleaved round by round (the same machine load for every side), as medians:

- the floor, and ``python -c "import numpy, nibabel"`` alone;
- the floor ending as the viewer's commands end, every object frozen at exit (the interpreter's
  last garbage collection, ~70 ms after these imports, then walks nothing): the like-for-like
  ratio, printed beside the budget's;
- this checkout's `viewer render`;
- with ``--baseline DIR``, a checkout from before (e.g. ``git worktree add /tmp/render-before
  HEAD``), run from its own folder so its own code is imported.

It also checks, with ``python -X importtime``, that the render imports no matplotlib (its
decorations are drawn with Pillow; matplotlib's import alone was ≈0.57 s of a ≈2 s render),
and prints the slowest imports left.

Usage: python benchmarks/bench_render.py [--study .demo/study] [--runs 7] [--baseline DIR]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=Path(".demo/study"))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="a checkout from before, rendered in the same run")
    args = parser.parse_args()
    runs = max(5, args.runs)
    study = args.study.resolve()
    out = Path(tempfile.mkdtemp(prefix="bench_render_"))

    # as installed: bytecode caches written (the warm-up run writes any that are missing), and
    # the user's levels cache as it is after a first look at the study
    installed = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    sides: dict[str, tuple[list[str], Path, dict[str, str] | None]] = {
        "import numpy, nibabel": ([sys.executable, "-c", "import numpy, nibabel"], ROOT, installed),
        "floor (import + two slices)": ([sys.executable, "-c", _floor_program(study)], ROOT, installed),
        FROZEN_FLOOR: ([sys.executable, "-c", _floor_program(study) + FREEZE_AT_EXIT], ROOT, installed),
        "viewer render (this checkout)": (_render(study, out / "now.png"), ROOT, installed),
    }
    if args.baseline is not None:
        baseline = args.baseline.resolve()
        sides[f"viewer render ({baseline.name})"] = (_render(study, out / "before.png"), baseline,
                                                     dict(installed, PYTHONPATH=str(baseline)))
    for name, (command, folder, environment) in sides.items():
        if name.startswith("viewer render"):
            _check_own_checkout(folder, environment)
        subprocess.run(command, check=True, capture_output=True, cwd=folder, env=environment)  # warm caches once

    times: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides)
    for round_ in range(runs):
        for name in order[round_ % len(order):] + order[:round_ % len(order)]:  # rotate who goes first
            command, folder, environment = sides[name]
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=folder, env=environment)
            times[name].append((time.perf_counter() - start) * 1000.0)

    medians = {name: statistics.median(values) for name, values in times.items()}
    floor = medians["floor (import + two slices)"]
    print(f"whole process, median of {runs} interleaved runs ({study}, axial):")
    for name, median in medians.items():
        print(f"  {name:42s} {median:7.0f} ms   {median / floor:5.2f}x the floor")
    now = medians["viewer render (this checkout)"]
    print(f"budget: viewer render <= 1.3x the floor = {1.3 * floor:.0f} ms; this checkout {now / floor:.2f}x")
    print(f"like for like (both skip the final garbage collection): {now / medians[FROZEN_FLOOR]:.2f}x the frozen floor")
    if args.baseline is not None:
        before = medians[f"viewer render ({args.baseline.resolve().name})"]
        print(f"this checkout against the baseline: {now:.0f} ms vs {before:.0f} ms ({now / before:.2f}x, "
              f"{before - now:.0f} ms less)")
    _import_check(study, out / "importtime.png")
    return 0


#: The floor program ending as the viewer's one-shot commands end (viewer.cli.skip_final_collection:
#: every object frozen at exit, so the interpreter's last garbage collection does not walk the
#: imports' objects): the like-for-like floor of the viewer's own exit.
FREEZE_AT_EXIT = "; import atexit, gc; atexit.register(gc.freeze)"
FROZEN_FLOOR = "floor, frozen at exit as the viewer is"


def _render(study: Path, output: Path) -> list[str]:
    # `python -m` puts the working folder first on sys.path: each side imports its own checkout
    return [sys.executable, "-m", "viewer", "render", str(study), "--view", "axial", "-o", str(output)]


def _check_own_checkout(folder: Path, environment: dict[str, str] | None) -> None:
    where = subprocess.run([sys.executable, "-c", "import viewer; print(viewer.__file__)"], cwd=folder, env=environment,
                           check=True, capture_output=True, text=True).stdout.strip()
    if not Path(where).resolve().is_relative_to(folder):
        raise SystemExit(f"the run from {folder} imports {where}, not its own checkout")


def _floor_program(study: Path) -> str:
    """A program that imports numpy and nibabel and reads the rendered view's two slices: the
    anatomy's and the ¹⁹F map's axial slice through the point `viewer render` picks by default."""
    from viewer.core.io.labels import saved_label_table
    from viewer.core.io.study import load_timepoint, open_path
    from viewer.core.layers import default_focus

    opened = open_path(study)
    timepoint = opened.timepoints[0]
    volumes = load_timepoint(opened, timepoint)
    point = default_focus(volumes, saved_label_table(timepoint).names)
    reads = []
    for role in ("anatomical", "fluorine"):
        path = Path(timepoint.images[role])
        if not path.is_absolute() and opened.root is not None:
            path = opened.root / path
        volume = volumes[role]
        voxel = np.linalg.inv(volume.voxel_to_world) @ np.r_[point, 1.0]
        axis = int(np.argmax(np.abs(volume.voxel_to_world[2, :3])))  # the voxel axis closest to world z
        index = int(np.clip(round(voxel[axis]), 0, volume.shape[axis] - 1))
        where = ", ".join(str(index) if a == axis else ":" for a in range(3))
        reads.append(f"numpy.asarray(nibabel.load({str(path)!r}).dataobj[{where}])")
    return "import numpy, nibabel; " + "; ".join(reads)


def _import_check(study: Path, output: Path) -> None:
    result = subprocess.run([sys.executable, "-X", "importtime", *(_render(study, output)[1:])], cwd=ROOT,
                            check=True, capture_output=True, text=True)
    rows = []
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = (part.strip() for part in line.split("|"))
            if cumulative.isdigit():
                rows.append((int(cumulative), name))
    names = {name for _, name in rows}
    plotting = sorted(name for name in names if name.split(".")[0] == "matplotlib")
    print(f"python -X importtime -m viewer render: {len(names)} modules, matplotlib "
          + (f"IMPORTED ({len(plotting)} modules)" if plotting else "not imported"))
    top = [row for row in sorted(rows, reverse=True) if "." not in row[1]][:6]
    print("  slowest top-level imports (cumulative): " + ", ".join(f"{name} {us / 1000:.0f} ms" for us, name in top))


if __name__ == "__main__":
    sys.exit(main())
