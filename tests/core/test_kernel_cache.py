"""The sampling kernels `make venv` compiles ahead (plane_kernels.precompile) are the ones a
render of the demo needs (issue 19): rendering after it adds nothing to numba's cache, so a
fresh checkout's first render does not compile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _cached(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*.nbc")}


@pytest.mark.slow
def test_rendering_the_demo_after_precompile_compiles_nothing(demo_manifest, tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    subprocess.run([sys.executable, "-c", "from viewer.core.plane_kernels import precompile; precompile()"],
                   check=True, cwd=ROOT, env=env, timeout=600)
    before = _cached(tmp_path / "numba")
    assert before, "precompile wrote no kernel into the cache"
    for view in ("axial", "coronal", "sagittal"):
        result = subprocess.run([sys.executable, "-m", "viewer", "render", str(demo_manifest.parent), "--view", view,
                                 "-o", str(tmp_path / f"{view}.png")], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    assert _cached(tmp_path / "numba") == before, "render compiled kernels precompile does not cover"
