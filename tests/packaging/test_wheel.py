"""The wheel as a user gets it: built from this checkout, installed into a fresh virtualenv, it
carries resources/ as viewer/resources and runs from there (not from the source tree).

The fresh virtualenv reuses the development virtualenv's dependencies through a .pth file
(installing them again would download and unpack ≈ 1.5 GB); the wheel itself is installed with --no-deps.
Building the wheel needs PyPI for the isolated build requirements (setuptools, wheel).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import viewer

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# what is not part of a source tree (nor of an sdist)
SKIP = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", ".demo", "*.egg-info", "__pycache__",
                              ".pytest_cache", ".ruff_cache", ".import_linter_cache", "*.pyc")


def _run(args, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], check=False, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the working tree (pip wheel --no-deps, isolated build)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=SKIP)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", tmp / "out", source])
    (built,) = (tmp / "out").glob("cell_therapy_viewer-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A fresh virtualenv with the wheel installed; returns (bin folder, environment, cwd)."""
    tmp = tmp_path_factory.mktemp("venv")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel])
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # the development virtualenv's packages, after the new one's own (a plain path entry: the
    # editable install's .pth finder there is not run, so `viewer` can only come from the wheel)
    (purelib / "zz_dev_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    env.update(QT_QPA_PLATFORM="offscreen", PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    cwd = tmp / "cwd"
    cwd.mkdir()
    return venv / "bin", env, cwd


def test_wheel_carries_the_resources_inside_the_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for resource in ("anatomy/NOTICE.txt", "anatomy/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
                     "anatomy/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
                     "anatomy/mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
                     "models/penumbra_recovery_demo.onnx", "models/penumbra_recovery_demo.json",
                     "icons/cell-therapy-viewer.svg", "icons/cell-therapy-viewer.png",
                     "desktop/cell-therapy-viewer.desktop", "desktop/cell-therapy-viewer-mime.xml"):
        assert f"viewer/resources/{resource}" in names
    assert {"viewer/__init__.py", "viewer/cli.py", "viewer/core/plane_kernels.py", "viewer/ui/app.py"} <= names
    assert not [name for name in names if name.startswith(("resources/", "tests/", "packaging/"))]
    assert not [name for name in names if "__pycache__" in name or name.endswith((".nbi", ".nbc", ".pyc"))]


def test_installed_wheel_runs_from_its_own_copy(installed, tmp_path):
    bin_dir, env, cwd = installed
    for command in ("viewer", "cell-therapy-viewer"):  # the second is the name the .desktop file runs
        version = _run([bin_dir / command, "--version"], env=env, cwd=cwd).stdout.strip()
        assert version == f"viewer {viewer.__version__}"

    probe = "import viewer, viewer.core.resources as r; print(viewer.__file__); print(r.resources_dir())"
    where = _run([bin_dir / "python", "-c", probe], env=env, cwd=cwd).stdout.split("\n")
    venv = bin_dir.parent.resolve()
    assert Path(where[0]).resolve().is_relative_to(venv), where
    assert Path(where[1]).resolve().is_relative_to(venv) and Path(where[1]).name == "resources", where

    # the demo is built from the anatomy inside the wheel
    study = tmp_path / "study"
    _run([bin_dir / "viewer", "demo", "--out", study], env=env, cwd=cwd)
    assert (study / "study.toml").is_file() and (study / "truth.json").is_file()
    stats = json.loads(_run([bin_dir / "viewer", "stats", study], env=env, cwd=cwd).stdout)
    assert json.dumps(stats).count("injection") >= 1
