"""The core must run without Qt, pyqtgraph or VTK (napari's machine-checked rule)."""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import viewer.core

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("PySide6", "pyqtgraph", "vtk", "vtkmodules", "viewer.ui")


def test_importing_every_core_module_loads_no_gui_toolkit():
    modules = sorted(m.name for m in pkgutil.walk_packages(viewer.core.__path__, "viewer.core."))
    assert "viewer.core.spaces" in modules and "viewer.core.io.dicom" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} or m.startswith('viewer.ui'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"core pulled in: {result.stdout.strip()}"


def test_import_linter_contract_holds():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is part of the test extras"
    result = subprocess.run([lint], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    text = " ".join(result.stdout.split())  # import-linter wraps long contract names
    assert "2 kept, 0 broken" in text
    assert "The core never imports Qt, pyqtgraph or VTK KEPT" in text
    assert ("Layers: window > DICOM export > session and report > results > analysis > predictions > quantification > files and "
            "regions > geometry KEPT") in text
