"""Which heavy libraries the number and picture commands load (issue 19): imports are paid only
by the commands that need them. Each command runs in a fresh interpreter on the demo study, and
the modules it left in ``sys.modules`` are checked.

`viewer stats` needs numpy, nibabel (which loads pydicom), scipy.ndimage and scipy.fft (cluster
labels, the SUVpeak sphere means), scipy.special (the Rician table) and onnxruntime (the demo's
model); `viewer render` needs Pillow's drawing modules (its text, letters, scale bar and colour
bars), never numba (a few planes are sampled in numpy: the kernels' start-up is for the window),
scipy.ndimage (the ¹⁹F calibration mask and the focus are computed in numpy) nor matplotlib (issue 19: its import
alone was ≈0.57 s of a ≈2 s render; nothing in the package imports it now).
Neither may load the window's toolkits, the PDF or DICOM-writing libraries, or scipy's
slow-to-import optimisers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NEVER = ("PySide6", "vtkmodules", "vtk", "reportlab", "highdicom", "pynetdicom", "SimpleITK", "skimage",
         "scipy.optimize", "scipy.interpolate", "scipy.stats", "pandas", "torch")
ONLY_FOR_PICTURES = ("matplotlib", "numba", "PIL.ImageDraw", "PIL.ImageFont")
#: What draws a rendered view's decorations (Pillow; pydicom loads PIL.Image for every command).
DRAWING = ("PIL.ImageDraw", "PIL.ImageFont")

CHILD = """
import contextlib, io, runpy, sys
sys.argv = ["viewer", *sys.argv[1:]]
with contextlib.redirect_stdout(io.StringIO()):
    try:
        runpy.run_module("viewer", run_name="__main__")
    except SystemExit as exit:
        code = exit.code
print(code)
print(" ".join(sorted(sys.modules)))
"""


def _modules_of(*arguments: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", CHILD, *arguments], capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    code, modules = result.stdout.strip().splitlines()[-2:]
    assert code in ("0", "None"), (code, result.stderr)
    return set(modules.split())


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name in modules]


def test_stats_loads_only_what_the_numbers_need(demo_manifest):
    modules = _modules_of("stats", str(demo_manifest.parent))
    assert {"numpy", "nibabel", "scipy.ndimage", "onnxruntime"} <= modules  # the check itself sees the run
    assert _loaded(modules, NEVER + ONLY_FOR_PICTURES) == []


def test_render_loads_no_window_report_or_model_library(demo_manifest, tmp_path):
    modules = _modules_of("render", str(demo_manifest.parent), "-o", str(tmp_path / "axial.png"))
    assert (tmp_path / "axial.png").is_file()
    assert set(DRAWING) <= modules
    # numba's start-up (≈0.4 s) is for the window's slice steps: a few planes are sampled in numpy
    assert _loaded(modules, NEVER + ("onnxruntime", "matplotlib", "numba")) == []
    # nor scipy.ndimage (≈0.13 s): the ¹⁹F reference tube is grown and the focus smoothed in numpy
    assert "scipy.ndimage" not in modules


def test_report_loads_no_window_library_matplotlib_or_numba(demo_manifest, tmp_path):
    modules = _modules_of("report", str(demo_manifest.parent), "-o", str(tmp_path / "report.pdf"))
    assert (tmp_path / "report.pdf").is_file()
    assert {"reportlab", "onnxruntime", *DRAWING} <= modules
    assert _loaded(modules, tuple(n for n in NEVER if n != "reportlab") + ("matplotlib", "numba")) == []


@pytest.mark.parametrize("command", [("--version",), ("stats", "--help")])
def test_the_command_line_itself_loads_no_science_library(command):
    modules = _modules_of(*command)
    assert _loaded(modules, ("numpy", "nibabel", "scipy", "pydicom") + NEVER + ONLY_FOR_PICTURES) == []
