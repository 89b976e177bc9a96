"""NIfTI loading (memory mapping, sform/qform, 4-D) and the study manifest."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.core.study_builders import write_small_study
from viewer.core.errors import ViewerError
from viewer.core.io.nifti import load_nifti, save_nifti
from viewer.core.io.study import Calibration, load_study, load_timepoint, open_path


def _with_sform(sform: np.ndarray) -> nib.Nifti1Image:
    """An image whose sform (which readers prefer) is the given matrix, even a singular one."""
    img = nib.Nifti1Image(np.ones((3, 3, 3), np.float32), np.eye(4))
    img.header.set_sform(sform, code=1)
    return nib.Nifti1Image(img.dataobj, None, img.header)


def _affine():
    return np.array([[-0.9, 0, 0, 40.0], [0, 1.1, 0, -30.0], [0, 0, 2.5, -10.0], [0, 0, 0, 1]])


def test_uncompressed_nifti_is_memory_mapped(tmp_path):
    save_nifti(np.arange(60, dtype=np.int16).reshape(3, 4, 5), tmp_path / "a.nii", _affine())
    volume = load_nifti(tmp_path / "a.nii")
    assert volume.is_memory_mapped
    assert volume.data[2, 3, 4] == 59
    np.testing.assert_allclose(volume.voxel_to_world, _affine())
    assert volume.voxel_volume_mm3 == pytest.approx(0.9 * 1.1 * 2.5)
    assert volume.axcodes() == ("L", "A", "S")


def test_sform_preferred_and_qform_fallback(tmp_path):
    data = np.ones((3, 3, 3), np.float32)
    img = nib.Nifti1Image(data, None)
    sform = np.diag([2.0, 2.0, 2.0, 1.0])
    qform = np.diag([3.0, 3.0, 3.0, 1.0])
    img.set_qform(qform, code=1)
    img.set_sform(sform, code=2)
    nib.save(img, tmp_path / "both.nii.gz")
    assert load_nifti(tmp_path / "both.nii.gz").spacing_mm.tolist() == [2, 2, 2]
    img.set_sform(sform, code=0)
    nib.save(img, tmp_path / "qonly.nii.gz")
    volume = load_nifti(tmp_path / "qonly.nii.gz")
    assert volume.spacing_mm.tolist() == [3, 3, 3] and volume.meta["affine_source"] == "qform"


def test_single_volume_4d_is_squeezed_and_true_4d_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 1), np.float32), np.eye(4)), tmp_path / "one.nii.gz")
    assert load_nifti(tmp_path / "one.nii.gz").shape == (4, 4, 4)
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 3), np.float32), np.eye(4)), tmp_path / "many.nii.gz")
    with pytest.raises(ViewerError, match="4-D with 3 volumes"):
        load_nifti(tmp_path / "many.nii.gz")


@pytest.mark.parametrize(
    "maker, message",
    [
        (lambda p: None, "file not found"),
        (lambda p: p.write_text("this is not an image\n"), "not a readable NIfTI"),
        (lambda p: nib.save(nib.Nifti1Image(np.full((3, 3, 3), np.nan, np.float32), np.eye(4)), p), "only NaN"),
        (lambda p: nib.save(_with_sform(np.diag([1, 1, 0, 1.0])), p), "singular"),
        (lambda p: nib.save(nib.Nifti1Image(np.ones((3, 3), np.float32), np.eye(4)), p), "expected 3-D"),
    ],
)
def test_bad_nifti_files_give_one_clear_error(tmp_path, maker, message):
    path = tmp_path / "bad.nii"
    maker(path)
    with pytest.raises(ViewerError, match=message) as info:
        load_nifti(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_gzip_is_reported(tmp_path):
    save_nifti(np.random.default_rng(0).random((40, 40, 40)).astype(np.float32), tmp_path / "full.nii.gz", np.eye(4))
    payload = (tmp_path / "full.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(payload[: len(payload) // 2])
    with pytest.raises(ViewerError, match="truncated|not a readable"):
        load_nifti(tmp_path / "cut.nii.gz")


def test_save_is_atomic_and_leaves_no_temporary(tmp_path):
    save_nifti(np.zeros((2, 2, 2), np.float32), tmp_path / "x.nii.gz", np.eye(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.nii.gz"]


# -- manifest -----------------------------------------------------------------------------------

def test_small_study_loads_with_resolved_paths_and_defaults(tmp_path):
    manifest = write_small_study(tmp_path / "s")
    study = load_study(manifest)
    assert study.id == "small-001"
    timepoint = study.timepoint("day 7")
    assert timepoint.images["anatomical"] == (tmp_path / "s" / "t1.nii").resolve()
    assert timepoint.region_name(2) == "penumbra" and timepoint.region_name(9) == "label 9"
    assert study.calibration.detection_snr == Calibration().detection_snr == 3.5
    assert study.calibration.gd_fmol_per_cell is None
    volumes = load_timepoint(study, timepoint)
    assert list(volumes) == ["anatomical", "fluorine", "pet", "regions"]
    assert volumes["regions"].data.dtype == np.int16  # integer label maps keep their stored type
    assert volumes["pet"].units == "SUV"
    assert open_path(tmp_path / "s").id == "small-001"


def _manifest(tmp_path: Path, text: str) -> Path:
    write_small_study(tmp_path / "s")
    path = tmp_path / "s" / "study.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("[study\nid = 'x'", "malformed TOML"),
        ("[study]\nid = 'x'\n[[timepoint]]\nlabel = 'a'\nfluorine = 'f19.nii.gz'\n", "'anatomical' image is required"),
        ("[study]\nid = 'x'\n", "at least one"),
        ("[study]\npatient = 'x'\n[[timepoint]]\nlabel='a'\nanatomical='t1.nii'\n", "id is required"),
        ("[study]\nid = 'x'\n[calibration]\nfluorine_atom_per_cell = 1e12\n[[timepoint]]\nlabel='a'\nanatomical='t1.nii'\n", "unknown key 'fluorine_atom_per_cell'"),
        ("[study]\nid = 'x'\n[calibration]\ndetection_snr = -1\n[[timepoint]]\nlabel='a'\nanatomical='t1.nii'\n", "must be positive"),
        ("[study]\nid = 'x'\n[[timepoint]]\nlabel='a'\nanatomical='missing.nii'\n", "missing.nii not found"),
        ("[study]\nid = 'x'\n[[timepoint]]\nlabel='a'\nanatomical='t1.nii'\n[[timepoint]]\nlabel='a'\nanatomical='t1.nii'\n", "used more than once"),
        ("[study]\nid = 'x'\n[[timepoint]]\nlabel='a'\nanatomical='t1.nii'\npet='pet.nii.gz'\n", "needs pet_units"),
        ("[study]\nid = 'x'\n[[timepoint]]\nlabel='a'\nanatomical='t1.nii'\nregions='regions.nii.gz'\nregion_names={ x = 'core' }\n", "not an integer label"),
    ],
)
def test_bad_manifests_name_file_and_key(tmp_path, text, message):
    path = _manifest(tmp_path, text)
    with pytest.raises(ViewerError, match=message) as info:
        load_study(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_unknown_timepoint_lists_the_known_ones(tmp_path):
    study = load_study(write_small_study(tmp_path / "s"))
    with pytest.raises(ViewerError, match="has 'day 7'"):
        study.timepoint("day 99")


def test_pet_in_bq_per_ml_is_converted_with_manifest_dose(tmp_path):
    write_small_study(tmp_path / "s")
    path = tmp_path / "s" / "study.toml"
    path.write_text(
        "[study]\nid='x'\n[[timepoint]]\nlabel='a'\nanatomical='t1.nii'\npet='pet.nii.gz'\npet_units='Bq/mL'\n"
        "[timepoint.pet_dose]\ndose_bq=3.7e8\nweight_kg=59.94\nhalf_life_s=6586.2\ninjection_time='13:01:00'\nscan_time='14:01:00'\n"
    )
    study = load_study(path)
    pet = load_timepoint(study, study.timepoints[0])["pet"]
    raw = load_nifti(tmp_path / "s" / "pet.nii.gz")
    decayed = 3.7e8 * 2 ** (-3600 / 6586.2)
    np.testing.assert_allclose(pet.data, np.asarray(raw.data) * 59940 / decayed, rtol=1e-5)
    assert pet.units == "SUV"


@pytest.mark.parametrize("dtype,value", [(np.uint32, 2**31 + 5), (np.float64, 3.0e9)])
def test_label_maps_beyond_int32_are_refused_not_wrapped(tmp_path, dtype, value):
    manifest = write_small_study(tmp_path / "s")
    labels = np.zeros((60, 64, 48), dtype)
    labels[30, 32, 24] = value
    affine = nib.load(str(tmp_path / "s" / "t1.nii")).affine
    save_nifti(labels, tmp_path / "s" / "regions.nii.gz", affine)
    study = load_study(manifest)
    with pytest.raises(ViewerError) as excinfo:
        load_timepoint(study, study.timepoints[0])
    assert "labels up to 2147483647" in str(excinfo.value) and "regions.nii.gz" in str(excinfo.value)


def test_day0_and_birth_date_are_toml_dates_or_iso_text(tmp_path):
    manifest = write_small_study(tmp_path / "s")
    text = manifest.read_text().replace('[study]\n', '[study]\nday0 = 2026-03-02\nbirth_date = "1961-04-12"\n', 1)
    manifest.write_text(text)
    study = load_study(manifest)
    assert study.info["day0"] == "2026-03-02" and study.info["birth_date"] == "1961-04-12"
    manifest.write_text(text.replace("day0 = 2026-03-02", 'study_date = "2026-03-02"'))
    assert load_study(manifest).info["day0"] == "2026-03-02"  # the older name of day0
    manifest.write_text(text.replace("day0 = 2026-03-02", "day0 = 2026-03-02\nstudy_date = 2026-03-02"))
    with pytest.raises(ViewerError, match="both day0 and study_date"):
        load_study(manifest)
    manifest.write_text(text.replace("day0 = 2026-03-02", 'day0 = "2 March"'))
    with pytest.raises(ViewerError, match="day0 must be a date"):
        load_study(manifest)
