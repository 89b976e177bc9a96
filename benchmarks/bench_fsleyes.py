"""Benchmark: whole-process `viewer render` against FSLeyes' `fsleyes render` on the same view.

Budget (issue 19, "Speed at the floor"): `viewer render` ≤ 0.4× the time of `fsleyes render`
drawing the same axial view — the same anatomy and ¹⁹F files, the same world point, display
ranges, ¹⁹F threshold and opacity, at about the same PNG size. FSLeyes is the reference viewer
people already script; a viewer that is not clearly faster at its one batch job has no case.
Exact colours need not match; the work must be equivalent. Measured in one run, interleaved
round by round (rotating who goes first, one warm-up of each before), as medians, each with its
peak RSS (``/usr/bin/time -f %M``):

- ``python -c "import numpy, nibabel"``, the floor any Python program showing the view starts from;
- this checkout's ``viewer render STUDY --view axial`` (run from the checkout, as in bench_render.py);
- ``fsleyes render`` with a single axial canvas of the anatomy (greyscale) and the ¹⁹F map (hot,
  clipped below its threshold), linear interpolation like the viewer's;
- ``fsleyes render`` with the regions (label outlines) and the ¹⁹F colour bar added as well:
  what `viewer render` draws besides, so the ratio is given for both.

Every side runs without PYTHONDONTWRITEBYTECODE (an installation has its bytecode caches; the
warm-up writes any that are missing). FSLeyes needs an OpenGL context: ``--headless xvfb``
(default) starts one Xvfb for the whole run, as a desktop's display is already there, and is the
fastest way here (Mesa llvmpipe through GLX); ``xvfb-run`` starts a fresh one per render
(``xvfb-run -a``, counted in its time); ``osmesa`` gives FSLeyes no display, so it falls back to
its own off-screen OSMesa context (slower here). `viewer render` needs no display at all.

FSLeyes (not a project dependency) installs outside the checkout, on Debian's python3 with its
wxPython (plain pip cannot build wxPython)::

    apt-get install -y python3-venv python3-wxgtk4.0 xvfb xauth libosmesa6 libgl1-mesa-dri libglu1-mesa time
    /usr/bin/python3 -m venv --system-site-packages /opt/fsleyes-venv
    /opt/fsleyes-venv/bin/pip install fsleyes 'pyparsing>=3.1'   # Debian 12's pyparsing 3.0.9 is too old

Usage: python benchmarks/bench_fsleyes.py [--study .demo/study] [--runs 7]
           [--fsleyes /opt/fsleyes-venv/bin/fsleyes] [--headless {xvfb,xvfb-run,osmesa}]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.4  # viewer render ≤ 0.4× fsleyes render (issue 19)


@dataclass(frozen=True)
class Overlay:
    """One image as `viewer render` shows it: file, display range, clipping, opacity (0-1)."""

    path: Path
    levels: tuple[float, float]
    clipping: tuple[float, float] | None = None  # (shown from, shown up to); None: nothing clipped
    opacity: float = 1.0


@dataclass(frozen=True)
class View:
    """The inputs of ``viewer render STUDY --view axial``: world point (mm) and its layers."""

    point: tuple[float, float, float]
    anatomy: Overlay
    fluorine: Overlay
    regions: Overlay | None = None


def read_view(study: Path) -> View:
    """The view `viewer render` draws for the study's first timepoint, read with the project's
    own code (the point it picks by default, each layer's default display)."""
    from viewer.core.io.labels import saved_label_table
    from viewer.core.io.study import load_timepoint, open_path
    from viewer.core.layers import build_layers, default_focus
    from viewer.core.protocols import default_protocol

    opened = open_path(study)
    timepoint = opened.timepoints[0]
    volumes = load_timepoint(opened, timepoint)
    table = saved_label_table(timepoint)
    point = default_focus(volumes, table.names)
    layers = {layer.volume.role: layer for layer in
              build_layers(volumes, table, protocol=default_protocol(timepoint.images))}

    def path(role: str) -> Path:
        image = Path(timepoint.images[role])
        return image if image.is_absolute() or opened.root is None else opened.root / image

    def levels(role: str) -> tuple[float, float]:
        low, high = layers[role].display.levels
        return float(low), float(high)

    fluorine = layers["fluorine"].display
    brightest = float(np.nanmax(np.asarray(layers["fluorine"].volume.data)))
    above = fluorine.visible_range[1]
    if not np.isfinite(above):  # shown up to infinity: FSLeyes wants a number above every voxel
        above = brightest + max(1.0, abs(brightest)) * 0.01
    regions = layers.get("regions")
    return View(
        point=tuple(float(value) for value in point),
        anatomy=Overlay(path("anatomical"), levels("anatomical"), opacity=float(layers["anatomical"].display.opacity)),
        fluorine=Overlay(path("fluorine"), levels("fluorine"), (float(fluorine.visible_range[0]), float(above)),
                         float(fluorine.opacity)),
        regions=None if regions is None or not regions.display.visible else
        Overlay(path("regions"), levels("regions"), opacity=float(regions.display.opacity)),
    )


def fsleyes_command(fsleyes: str, view: View, output: Path, size: tuple[int, int],
                    decorated: bool = False) -> list[str]:
    """``fsleyes render`` arguments drawing ``view``: one axial canvas (ortho scene with the X
    and Y canvases hidden), no cursor, the slice through ``view.point``, the canvas centred on
    the images. With ``decorated``, also the regions
    as label outlines and the ¹⁹F colour bar (what `viewer render` draws besides)."""

    def number(value: float) -> str:
        return format(float(value), ".9g")

    def alpha(overlay: Overlay) -> list[str]:
        return ["--alpha", number(round(100.0 * overlay.opacity, 3))]  # FSLeyes' alpha is 0-100

    command = [fsleyes, "render", "--outfile", str(output), "--size", str(size[0]), str(size[1]),
               "--scene", "ortho", "--hidex", "--hidey", "--hideCursor",
               "--worldLoc", *(number(value) for value in view.point),
               "--zcentre", "0", "0"]  # centred on the images, as the viewer's; FSLeyes' default: on the point
    if decorated:
        command += ["--showColourBar", "--selectedOverlay", "1"]  # the colour bar of overlay 1, the ¹⁹F map
    anatomy, fluorine = view.anatomy, view.fluorine
    command += [str(anatomy.path), "--cmap", "greyscale", "--displayRange", *map(number, anatomy.levels),
                "--interpolation", "linear", *alpha(anatomy)]
    command += [str(fluorine.path), "--cmap", "hot", "--displayRange", *map(number, fluorine.levels),
                "--interpolation", "linear", *alpha(fluorine)]
    if fluorine.clipping is not None:
        # the clipping low is linked to the display low unless unlinked: keep both as given
        command += ["--unlinkLowRanges", "--clippingRange", *map(number, fluorine.clipping)]
    if decorated and view.regions is not None:
        command += [str(view.regions.path), "--overlayType", "label", "--outline", *alpha(view.regions)]
    return command


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=Path(".demo/study"))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--fsleyes", default="/opt/fsleyes-venv/bin/fsleyes", help="the fsleyes executable")
    parser.add_argument("--headless", choices=("xvfb", "xvfb-run", "osmesa"), default="xvfb",
                        help="how FSLeyes gets its OpenGL context (see the docstring)")
    args = parser.parse_args()
    runs = max(5, args.runs)
    study = args.study.resolve()
    if not Path(args.fsleyes).is_file():
        raise SystemExit(f"{args.fsleyes}: no fsleyes there (install it as the docstring says, or pass --fsleyes)")
    timer = shutil.which("time", path="/usr/bin")
    if timer is None:
        raise SystemExit("needs /usr/bin/time (apt-get install -y time) for the peak RSS")
    out = Path(tempfile.mkdtemp(prefix="bench_fsleyes_"))
    installed = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    plain = {name: value for name, value in installed.items() if name != "DISPLAY"}

    # the viewer first: its PNG gives the size FSLeyes renders at
    viewer_png = out / "viewer.png"
    viewer = [sys.executable, "-m", "viewer", "render", str(study), "--view", "axial", "-o", str(viewer_png)]
    _check_own_checkout(plain)
    subprocess.run(viewer, check=True, capture_output=True, cwd=ROOT, env=plain)  # warm caches once
    from PIL import Image

    with Image.open(viewer_png) as png:
        size = png.size
    view = read_view(study)

    xvfb = None
    fsleyes_env = dict(plain)
    prefix: list[str] = []
    if args.headless == "xvfb":
        xvfb, display = _start_xvfb(size)
        fsleyes_env["DISPLAY"] = display
    elif args.headless == "xvfb-run":
        prefix = ["xvfb-run", "-a"]
    try:
        plain_png, decorated_png = out / "fsleyes.png", out / "fsleyes_regions.png"
        sides: dict[str, tuple[list[str], dict[str, str], Path | None]] = {
            'python -c "import numpy, nibabel"': ([sys.executable, "-c", "import numpy, nibabel"], plain, None),
            "viewer render": (viewer, plain, viewer_png),
            "fsleyes render (anatomy + 19F)": (
                prefix + fsleyes_command(args.fsleyes, view, plain_png, size), fsleyes_env, plain_png),
            "fsleyes render (+ regions, colour bar)": (
                prefix + fsleyes_command(args.fsleyes, view, decorated_png, size, decorated=True), fsleyes_env,
                decorated_png),
        }
        for command, environment, png in sides.values():  # warm-up: bytecode caches, page cache
            _run(timer, command, environment, png, out / "rss")

        times: dict[str, list[float]] = {name: [] for name in sides}
        rss: dict[str, list[int]] = {name: [] for name in sides}
        order = list(sides)
        for round_ in range(runs):
            for name in order[round_ % len(order):] + order[:round_ % len(order)]:  # rotate who goes first
                command, environment, png = sides[name]
                elapsed, peak = _run(timer, command, environment, png, out / "rss")
                times[name].append(elapsed)
                rss[name].append(peak)
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(timeout=10)

    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"FSLeyes {_fsleyes_version(args.fsleyes)}, headless: {_HEADLESS[args.headless]}")
    print("fsleyes render command: " + shlex.join(sides["fsleyes render (anatomy + 19F)"][0]))
    print(f"whole process, median of {runs} interleaved runs ({study}, axial, {size[0]}x{size[1]} px, "
          f"point {', '.join(f'{value:.1f}' for value in view.point)} mm):")
    for name, median in medians.items():
        print(f"  {name:40s} {median:7.0f} ms   peak RSS {statistics.median(rss[name]) / 1024:6.0f} MB")
    now = medians["viewer render"]
    for name in order[2:]:
        print(f"viewer/fsleyes {name[len('fsleyes render '):]:24s} {now / medians[name]:5.2f}x "
              f"(target <= {TARGET}x = {TARGET * medians[name]:.0f} ms)")
    print(f"PNGs: {viewer_png}, {plain_png}, {decorated_png}")
    return 0


_HEADLESS = {
    "xvfb": "one Xvfb for the whole run (GLX on Mesa llvmpipe), its start not counted",
    "xvfb-run": "xvfb-run -a per render (a fresh Xvfb counted in each run)",
    "osmesa": "no display: FSLeyes' off-screen OSMesa context",
}


def _run(timer: str, command: list[str], environment: dict[str, str], png: Path | None,
         rss_file: Path) -> tuple[float, int]:
    """Wall time (ms) and peak RSS (KiB) of one run; fails loudly if it wrote no PNG."""
    if png is not None:
        png.unlink(missing_ok=True)
    start = time.perf_counter()
    result = subprocess.run([timer, "-f", "%M", "-o", str(rss_file), *command], capture_output=True, cwd=ROOT,
                            env=environment)
    elapsed = (time.perf_counter() - start) * 1000.0
    if result.returncode != 0 or (png is not None and not png.is_file()):
        raise SystemExit(f"failed ({result.returncode}): {shlex.join(command)}\n{result.stderr.decode()[-3000:]}")
    return elapsed, int(rss_file.read_text().split()[-1])


def _start_xvfb(size: tuple[int, int]) -> tuple[subprocess.Popen, str]:
    read, write = os.pipe()
    screen = f"{max(1280, size[0])}x{max(1024, size[1])}x24"
    process = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", screen, "-nolisten", "tcp",
                                "-noreset"],
                               pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    if not number:
        process.kill()
        raise SystemExit("Xvfb did not start (apt-get install -y xvfb)")
    return process, f":{number}"


def _fsleyes_version(fsleyes: str) -> str:
    python = Path(fsleyes).with_name("python")
    result = subprocess.run([str(python), "-c", "import fsleyes.version as v; print(v.__version__)"],
                            capture_output=True, text=True)
    return result.stdout.strip() or "(version unknown)"


def _check_own_checkout(environment: dict[str, str]) -> None:
    where = subprocess.run([sys.executable, "-c", "import viewer; print(viewer.__file__)"], cwd=ROOT, env=environment,
                           check=True, capture_output=True, text=True).stdout.strip()
    if not Path(where).resolve().is_relative_to(ROOT):
        raise SystemExit(f"the run from {ROOT} imports {where}, not this checkout")


if __name__ == "__main__":
    sys.exit(main())
