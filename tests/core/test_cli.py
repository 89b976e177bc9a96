"""Command line: `viewer render` output and the bad inputs of issue #2 (exit 2, one line, no file)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from tests.core.phantoms import centered_affine
from tests.core.study_builders import write_small_study
from viewer.cli import main
from viewer.core.io.dicom_write import PetTags, write_dicom_series
from viewer.core.io.nifti import save_nifti
from viewer.core.render import RENDER_IMAGE_PIXELS
from viewer.core.volume import Volume

ROOT = Path(__file__).resolve().parents[2]


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_clean_failure(code, err, out_dir: Path):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert not any(out_dir.iterdir()), f"left behind: {list(out_dir.iterdir())}"


@pytest.fixture
def out_dir(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def _study_with_anatomy(tmp_path: Path, write_anatomy) -> Path:
    """The small study with its anatomical file replaced by something broken."""
    manifest = write_small_study(tmp_path / "s")
    write_anatomy(tmp_path / "s" / "t1.nii")
    return manifest


def _nan_image(path):
    nib.save(nib.Nifti1Image(np.full((4, 4, 4), np.nan, np.float32), np.eye(4)), path)


def _four_d(path):
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 2), np.float32), np.eye(4)), path)


def _singular(path):
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    img.header.set_sform(np.diag([1.0, 0.0, 1.0, 1.0]), code=1)
    nib.save(nib.Nifti1Image(img.dataobj, None, img.header), path)


def _truncated(path):
    full = path.with_name("full.nii.gz")
    save_nifti(np.random.default_rng(1).random((30, 30, 30)).astype(np.float32), full, np.eye(4))
    payload = full.read_bytes()
    full.unlink()
    target = path.with_name("t1.nii.gz")
    target.write_bytes(payload[: len(payload) // 2])
    manifest = path.with_name("study.toml")
    manifest.write_text(manifest.read_text().replace('anatomical = "t1.nii"', 'anatomical = "t1.nii.gz"'))


@pytest.mark.parametrize(
    "breaker, expected",
    [
        (lambda p: p.unlink(), "not found"),
        (lambda p: p.write_text("plain text, not NIfTI"), "not a readable NIfTI"),
        (_nan_image, "only NaN"),
        (_four_d, "4-D with 2 volumes"),
        (_singular, "singular"),
        (_truncated, "truncated|not a readable"),
    ],
    ids=["missing", "text-as-nii", "all-nan", "true-4d", "singular-affine", "truncated-gz"],
)
def test_render_refuses_bad_images(tmp_path, out_dir, capsys, breaker, expected):
    manifest = _study_with_anatomy(tmp_path, breaker)
    code, _, err = _run(["render", manifest, "-o", out_dir / "view.png"], capsys)
    _assert_clean_failure(code, err, out_dir)
    import re

    assert re.search(expected, err), err


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[study\nid='x'", "malformed TOML"),
        ("[study]\nid='x'\n[[timepoint]]\nlabel='a'\nfluorine='f19.nii.gz'\n", "'anatomical' image is required"),
    ],
    ids=["malformed-toml", "no-anatomical"],
)
def test_render_refuses_bad_manifests(tmp_path, out_dir, capsys, text, expected):
    manifest = write_small_study(tmp_path / "s")
    manifest.write_text(text)
    code, _, err = _run(["render", manifest, "-o", out_dir / "view.png"], capsys)
    _assert_clean_failure(code, err, out_dir)
    assert expected in err and str(manifest) in err


def _mr_volume(shape=(8, 8, 5)) -> Volume:
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return Volume.from_array(data, centered_affine(shape, (2, 2, 3), (0, 0, 0)))


def test_dicom_folder_with_two_series_is_refused(tmp_path, out_dir, capsys):
    folder = tmp_path / "dicom"
    write_dicom_series(_mr_volume(), folder / "a", series_description="T1 axial")
    write_dicom_series(_mr_volume(), folder / "b", series_description="T2 axial")
    code, _, err = _run(["render", folder, "-o", out_dir / "view.png"], capsys)
    _assert_clean_failure(code, err, out_dir)
    assert "2 series" in err and "T1 axial" in err and "T2 axial" in err


def test_pet_series_without_dose_is_refused(tmp_path, out_dir, capsys):
    manifest = write_small_study(tmp_path / "s")
    pet = Volume.from_array(np.full((8, 8, 5), 2.0, np.float32), centered_affine((8, 8, 5), (3, 3, 3), (0, 0, 0)), role="pet")
    tags = PetTags(weight_kg=70, dose_bq=3.7e8, injection=datetime(2026, 3, 9, 13, 1), series=datetime(2026, 3, 9, 14, 1))
    files = write_dicom_series(pet, tmp_path / "s" / "petdcm", modality="PT", pet=tags, shuffle_seed=3)
    for path in files:
        ds = pydicom.dcmread(path)
        del ds.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose
        ds.save_as(path)
    text = manifest.read_text().replace('pet = "pet.nii.gz"\npet_units = "SUV"', 'pet = "petdcm"')
    manifest.write_text(text)
    code, _, err = _run(["render", manifest, "-o", out_dir / "view.png"], capsys)
    _assert_clean_failure(code, err, out_dir)
    assert "RadionuclideTotalDose" in err


def test_bad_arguments_exit_2_with_one_line(out_dir, capsys, tmp_path):
    manifest = write_small_study(tmp_path / "s")
    for argv in (["render", manifest], ["render", manifest, "--view", "oblique", "-o", out_dir / "x.png"],
                 ["render", manifest, "--at", "1,2", "-o", out_dir / "x.png"], ["render", manifest, "-o", out_dir / "x.jpg"],
                 ["render", manifest, "--timepoint", "day 99", "-o", out_dir / "x.png"],
                 ["open", tmp_path / "missing" / "study.toml"]):
        code, _, err = _run(argv, capsys)
        _assert_clean_failure(code, err, out_dir)


def test_render_writes_png_with_hotspot_on_the_radiological_side(tmp_path, out_dir, capsys):
    manifest = write_small_study(tmp_path / "s")
    code, out, err = _run(["render", manifest, "--view", "axial", "-o", out_dir / "axial.png"], capsys)
    assert code == 0, err
    assert out.strip() == str(out_dir / "axial.png")
    assert sorted(p.name for p in out_dir.iterdir()) == ["axial.png"]
    # The image area starts 20 px from the left and is at most RENDER_IMAGE_PIXELS wide (the
    # colour bars, which also hold hot colours, are to its right).
    left, width = 20, RENDER_IMAGE_PIXELS

    def hot_columns(png: Path) -> np.ndarray:
        image = np.asarray(Image.open(png).convert("RGB")).astype(int)[:, left: left + width]
        hot = (image[..., 0] > 200) & (image[..., 1] > 120) & (image[..., 2] < 90)
        return np.nonzero(hot)[1]

    # the ¹⁹F hotspot sits at x = +18 mm, the patient's right: screen left in radiological view
    columns = hot_columns(out_dir / "axial.png")
    assert len(columns) > 50
    assert columns.mean() < 0.5 * width, columns.mean()
    code, _, _ = _run(["render", manifest, "--view", "axial", "--neurological", "-o", out_dir / "neuro.png"], capsys)
    neurological = hot_columns(out_dir / "neuro.png")
    assert neurological.mean() > 0.5 * width, neurological.mean()


def test_python_dash_m_is_the_same_command_and_prints_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "viewer", "render", str(tmp_path / "nope.toml"), "-o", str(tmp_path / "x.png")],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    version = subprocess.run([sys.executable, "-m", "viewer", "--version"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("viewer ")
