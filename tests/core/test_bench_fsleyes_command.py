"""benchmarks/bench_fsleyes.py asks `fsleyes render` for the view `viewer render` draws.

Only the pure argument builder is checked (FSLeyes need not be installed): one axial canvas at
the view's point, each overlay with its own display range, the ¹⁹F threshold as clipping low
(unlinked from the display low), and opacities on FSLeyes' 0-100 scale. A wrong flag there
would make the benchmark time a different picture, not fail.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_fsleyes", ROOT / "benchmarks" / "bench_fsleyes.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_fsleyes", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _bench()

# the demo's first timepoint as `viewer render` shows it (levels from build_layers)
VIEW = bench.View(
    point=(38.5385748, 10.0733345, 33.2120036),
    anatomy=bench.Overlay(Path("/s/anat/t1.nii"), (0.0, 228.0)),
    fluorine=bench.Overlay(Path("/s/day1/f19.nii.gz"), (139.713436, 1350.0), (139.713436, 1363.5), 0.85),
    regions=bench.Overlay(Path("/s/day1/regions.nii.gz"), (0.0, 6.0), opacity=0.9),
)


def _split(command: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Main options, and each overlay's display options keyed by its file."""
    files = [str(VIEW.anatomy.path), str(VIEW.fluorine.path), str(VIEW.regions.path)]
    starts = [index for index, word in enumerate(command) if word in files]
    ends = starts[1:] + [len(command)]
    return command[:starts[0]], {command[start]: command[start + 1:end] for start, end in zip(starts, ends)}


def _value(options: list[str], flag: str, count: int = 1) -> list[str]:
    index = options.index(flag)
    return options[index + 1:index + 1 + count]


def test_one_axial_canvas_at_the_views_point() -> None:
    main, overlays = _split(bench.fsleyes_command("fsleyes", VIEW, Path("/o/f.png"), (688, 630)))
    assert main[:2] == ["fsleyes", "render"]
    assert _value(main, "--scene") == ["ortho"]
    assert "--hidex" in main and "--hidey" in main and "--hidez" not in main  # only the Z (axial) canvas
    assert "--hideCursor" in main
    assert [float(value) for value in _value(main, "--worldLoc", 3)] == list(VIEW.point)
    assert _value(main, "--zcentre", 2) == ["0", "0"]  # the canvas centred on the images, not on the point
    assert _value(main, "--size", 2) == ["688", "630"] and _value(main, "--outfile") == ["/o/f.png"]
    assert list(overlays) == [str(VIEW.anatomy.path), str(VIEW.fluorine.path)]  # anatomy under the ¹⁹F map


def test_overlays_keep_levels_threshold_and_opacity() -> None:
    _, overlays = _split(bench.fsleyes_command("fsleyes", VIEW, Path("/o/f.png"), (688, 630)))
    anatomy, fluorine = overlays[str(VIEW.anatomy.path)], overlays[str(VIEW.fluorine.path)]
    assert _value(anatomy, "--cmap") == ["greyscale"]
    assert [float(v) for v in _value(anatomy, "--displayRange", 2)] == [0.0, 228.0]
    assert _value(fluorine, "--cmap") == ["hot"]
    assert [float(v) for v in _value(fluorine, "--displayRange", 2)] == [139.713436, 1350.0]
    assert "--unlinkLowRanges" in fluorine  # else the clipping low would move the display low
    assert [float(v) for v in _value(fluorine, "--clippingRange", 2)] == [139.713436, 1363.5]
    assert float(_value(fluorine, "--alpha")[0]) == 85.0  # 0.85 on FSLeyes' 0-100 scale
    assert _value(anatomy, "--interpolation") == _value(fluorine, "--interpolation") == ["linear"]


def test_regions_and_colour_bar_only_when_decorated() -> None:
    main, overlays = _split(bench.fsleyes_command("fsleyes", VIEW, Path("/o/f.png"), (688, 630), decorated=True))
    regions = overlays[str(VIEW.regions.path)]
    assert list(overlays)[-1] == str(VIEW.regions.path)
    assert _value(regions, "--overlayType") == ["label"] and "--outline" in regions
    assert float(_value(regions, "--alpha")[0]) == 90.0
    assert "--showColourBar" in main and _value(main, "--selectedOverlay") == ["1"]  # the ¹⁹F map's bar
