"""`viewer render` reads the voxels of the layers it draws (issue 19) and checks the rest.

The demo's default protocol (cell tracking) draws the anatomy, the ¹⁹F map and the regions;
its six other maps are only checked in their headers. So a hidden map whose voxels are
damaged does not stop a picture that does not show it (the picture is the same), while a
protocol that shows it, `viewer stats`, and any header problem of a hidden map still refuse
with one line naming the file.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def _viewer(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "viewer", *arguments], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def study_copy(demo_manifest, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shown") / "study"
    shutil.copytree(demo_manifest.parent, folder)
    return folder


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_damaged_voxels_of_a_hidden_map_change_nothing_drawn(study_copy, tmp_path):
    intact = tmp_path / "intact.png"
    assert _viewer("render", str(study_copy), "--view", "axial", "-o", str(intact)).returncode == 0
    spio = study_copy / "day1" / "dr2star.nii.gz"
    original = spio.read_bytes()
    try:
        spio.write_bytes(original[: len(original) // 2])  # the header is whole, the voxels cut off
        damaged = tmp_path / "damaged.png"
        result = _viewer("render", str(study_copy), "--view", "axial", "-o", str(damaged))
        assert result.returncode == 0 and result.stderr == "", result.stderr
        np.testing.assert_array_equal(_pixels(damaged), _pixels(intact))
        for arguments in (("render", str(study_copy), "--view", "axial", "--protocol", "viability",
                           "-o", str(tmp_path / "viability.png")),
                          ("stats", str(study_copy), "-o", str(tmp_path / "stats.json"))):
            refused = _viewer(*arguments)
            lines = refused.stderr.splitlines()
            assert refused.returncode == 2 and len(lines) == 1, refused.stderr
            assert lines[0].startswith("error: ") and "dr2star.nii.gz" in lines[0] and "truncated" in lines[0]
        assert not (tmp_path / "viability.png").exists() and not (tmp_path / "stats.json").exists()
    finally:
        spio.write_bytes(original)


def test_a_hidden_map_with_a_bad_header_is_refused(study_copy, tmp_path):
    tmax = study_copy / "day1" / "tmax.nii.gz"
    original = tmax.read_bytes()
    try:
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)), str(tmax))  # 4-D
        result = _viewer("render", str(study_copy), "--view", "axial", "-o", str(tmp_path / "view.png"))
        lines = result.stderr.splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert "tmax.nii.gz" in lines[0] and "4-D" in lines[0]
        assert not (tmp_path / "view.png").exists()
    finally:
        tmax.write_bytes(original)


def test_load_timepoint_returns_only_the_roles_read(demo_manifest):
    from viewer.core.io.study import load_study, load_timepoint

    study = load_study(demo_manifest)
    timepoint = study.timepoints[0]
    every = load_timepoint(study, timepoint)
    some = load_timepoint(study, timepoint, voxels_of={"anatomical", "fluorine", "regions"})
    assert set(some) == {"anatomical", "fluorine", "regions"} and len(every) == 9
    for role, volume in some.items():
        np.testing.assert_array_equal(np.asarray(volume.data), np.asarray(every[role].data))
        np.testing.assert_array_equal(volume.voxel_to_world, every[role].voxel_to_world)


def test_with_a_point_given_a_hidden_fluorine_map_is_not_read(study_copy, tmp_path):
    """`--at` gives the point, so the ¹⁹F map is needed only when it is drawn: the PET protocol
    with damaged ¹⁹F voxels draws its picture; the default protocol (¹⁹F shown) refuses."""
    fluorine = study_copy / "day1" / "f19.nii.gz"
    original = fluorine.read_bytes()
    try:
        fluorine.write_bytes(original[: len(original) // 2])
        at = ("--at", "10,10,10")
        shown = _viewer("render", str(study_copy), "--view", "axial", "--protocol", "PET", *at,
                        "-o", str(tmp_path / "pet.png"))
        assert shown.returncode == 0 and shown.stderr == "", shown.stderr
        refused = _viewer("render", str(study_copy), "--view", "axial", *at, "-o", str(tmp_path / "f19.png"))
        assert refused.returncode == 2 and "f19.nii.gz" in refused.stderr
    finally:
        fluorine.write_bytes(original)
