"""Real DICOM files read as dcm2niix reads them: the transfer-syntax and geometry matrix.

Every case is a file written by someone else's software (scanners, pydicom's and GDCM's test
suites, dcmtk transcoding a real series), loaded by our reader and compared with dcm2niix's
conversion of the same input through the affines: world coordinates of the corner voxels and
the value of every voxel (see ``real_files.assert_same_image``).

Tolerances: lossless storage must give the stored values exactly; dcm2niix keeps the stored
integers with scl_slope/scl_inter, nibabel applies them in float64 and we in float64 then
float32, so values agree to float32 rounding (relative 2⁻²⁴, ``VALUE_RTOL``). Corner
positions agree to ``CORNER_ATOL_MM``: both read the same decimal strings.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.core.real_files import (
    DICOM3TOOLS_EXAMPLES,
    HEUDICONV_DATA,
    NICOM_DATA,
    PYDICOM_DATA,
    PYDICOM_TEST_FILES,
    assert_matches_nifti,
    assert_matches_simpleitk,
    dcm2niix,
    real_file,
)
from viewer.cli import main
from viewer.core.errors import ViewerError
from viewer.core.io.dicom import list_dicom_series, load_dicom_series

CORNER_ATOL_MM = 1e-3
VALUE_RTOL = 1e-6
VALUE_ATOL = 1e-3
DICOMDIR_TESTS = PYDICOM_TEST_FILES / "dicomdirtests"
#: A real CT series (5 slices, feet first), the source of the dcmtk transcoding matrix.
CT5N = DICOMDIR_TESTS / "98892001" / "CT5N"


def reference_for(volume, out: list[Path]) -> Path:
    """dcm2niix's output for the series of ``volume``: its file names end in the series UID
    (``-f %s_%e_%j``); extra outputs such as ``_ROI1`` (an overlay) are not the image. A file
    without SeriesInstanceUID gives one output whose name cannot carry it."""
    uid = volume.meta["series_uid"]
    matches = [path for path in out if path.name.endswith(f"_{uid}.nii")]
    if not matches and len(out) == 1:
        matches = out
    assert len(matches) == 1, [p.name for p in out]
    return matches[0]


# -- single files: transfer syntaxes, orientations, rescale -------------------------------------
SINGLE_FILES = [
    # (folder, name, what it exercises)
    (PYDICOM_TEST_FILES, "MR_small.dcm", "explicit VR little endian"),
    (PYDICOM_TEST_FILES, "MR_small_implicit.dcm", "implicit VR little endian"),
    (PYDICOM_TEST_FILES, "MR_small_bigendian.dcm", "explicit VR big endian"),
    (PYDICOM_TEST_FILES, "MR_small_expb.dcm", "explicit VR big endian (pydicom)"),
    (PYDICOM_TEST_FILES, "MR_small_RLE.dcm", "RLE lossless"),
    (PYDICOM_TEST_FILES, "MR_small_jpeg_ls_lossless.dcm", "JPEG-LS lossless"),
    (PYDICOM_TEST_FILES, "MR_small_jp2klossless.dcm", "JPEG 2000 lossless"),
    (PYDICOM_TEST_FILES, "MR_small_padded.dcm", "padded pixel data"),
    (PYDICOM_TEST_FILES, "CT_small.dcm", "CT, feet first"),
    (PYDICOM_TEST_FILES, "J2K_pixelrep_mismatch.dcm", "JPEG 2000, oblique, pixel representation mismatch"),
    (PYDICOM_DATA, "bad_sequence.dcm", "JPEG lossless SV1 (1.2.840.10008.1.2.4.70), feet first"),
    (PYDICOM_DATA, "693_J2KR.dcm", "JPEG 2000 lossless CT 512²"),
    (PYDICOM_DATA, "693_UNCR.dcm", "CT 512² uncompressed"),
    (PYDICOM_DATA, "MR2_J2KR.dcm", "JPEG 2000 lossless, oblique MR 1024²"),
    (PYDICOM_DATA, "MR2_UNCR.dcm", "oblique MR 1024² uncompressed"),
    (PYDICOM_DATA, "MR-SIEMENS-DICOM-WithOverlays.dcm", "Siemens MR with overlays"),
    (NICOM_DATA, "decimal_rescale.dcm", "decimal RescaleSlope, feet first, oblique"),
    (HEUDICONV_DATA, "phantom.dcm", "Siemens classic MR"),
    (HEUDICONV_DATA, "01-fmap_acq-3mm/1.3.12.2.1107.5.2.43.66112.2016101409263663466202201.dcm",
     "Siemens field map, oblique"),
]


#: dcm2niix reads this file's JPEG 2000 stream as unsigned 13-bit (air 6192 instead of −2000);
#: the dataset's PixelRepresentation (1), GDCM (SimpleITK) and pydicom agree on signed values.
DCM2NIIX_MISREADS = {"J2K_pixelrep_mismatch.dcm"}
TOLERANCES = {"atol_mm": CORNER_ATOL_MM, "atol_value": VALUE_ATOL, "rtol_value": VALUE_RTOL}


@pytest.mark.parametrize("folder,name,what", SINGLE_FILES, ids=[case[1].split("/")[-1] for case in SINGLE_FILES])
def test_single_file_matches_dcm2niix_and_simpleitk(folder, name, what, tmp_path):
    path = real_file(folder, name)
    volume = load_dicom_series(path)
    assert volume.data.dtype == np.float32
    assert_matches_simpleitk(volume, path, **TOLERANCES)
    if name not in DCM2NIIX_MISREADS:
        assert_matches_nifti(volume, reference_for(volume, dcm2niix(path, tmp_path)), **TOLERANCES)


@pytest.mark.parametrize("variant", ["MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
                                     "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"])
def test_lossless_variants_equal_the_uncompressed_file(variant):
    original = load_dicom_series(real_file(PYDICOM_TEST_FILES, "MR_small.dcm"))
    other = load_dicom_series(real_file(PYDICOM_TEST_FILES, variant))
    np.testing.assert_array_equal(other.data, original.data)
    np.testing.assert_allclose(other.voxel_to_world, original.voxel_to_world, atol=1e-9)


def test_jpeg_2000_of_a_real_ct_equals_its_uncompressed_original():
    compressed = load_dicom_series(real_file(PYDICOM_DATA, "693_J2KR.dcm"))
    original = load_dicom_series(real_file(PYDICOM_DATA, "693_UNCR.dcm"))
    np.testing.assert_array_equal(compressed.data, original.data)


# -- multi-slice series: folders, DICOMDIR, feet first ------------------------------------------
def test_feet_first_ct_series_from_its_folder_matches_dcm2niix(tmp_path):
    folder = real_file(CT5N.parent, CT5N.name)
    volume = load_dicom_series(folder)
    assert volume.shape == (16, 16, 5)
    assert pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).PatientPosition == "FFS"
    assert_matches_nifti(volume, reference_for(volume, dcm2niix(folder, tmp_path)), **TOLERANCES)
    assert_matches_simpleitk(volume, folder, **TOLERANCES)


def test_dicomdir_lists_its_series_and_loads_one(tmp_path):
    dicomdir = real_file(DICOMDIR_TESTS, "DICOMDIR")
    series = {info.series_uid: info for info in list_dicom_series(dicomdir)}
    # the truth from pydicom's own DICOMDIR records (an independent walk of the same file)
    from pydicom.fileset import FileSet

    records = {instance.SeriesInstanceUID for instance in FileSet(pydicom.dcmread(dicomdir))}
    assert set(series) == records and len(series) == 13  # CT, CR and MR series of three patients
    ct5n = next(uid for uid, info in series.items() if info.description == "SmartScore - Gated 0.5 sec")
    assert series[ct5n].n_files == 5
    volume = load_dicom_series(dicomdir, series_uid=ct5n)
    from_folder = load_dicom_series(CT5N)
    np.testing.assert_array_equal(volume.data, from_folder.data)
    np.testing.assert_allclose(volume.voxel_to_world, from_folder.voxel_to_world)


def test_dicomdir_with_several_series_asks_which(tmp_path):
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(real_file(DICOMDIR_TESTS, "DICOMDIR"))
    message = str(excinfo.value)
    assert "contains 13 series" in message and "SmartScore" in message and "\n" not in message


def test_projection_series_of_mixed_orientations_is_refused_not_stacked():
    # MR700 holds 7 angiography projections at different angles: no single affine exists.
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(real_file(DICOMDIR_TESTS / "98892003", "MR700"))
    assert "different orientations" in str(excinfo.value)


# -- every transfer syntax on a real series (dcmtk transcodes, dcm2niix reads the original) ------
#: dcmtk command and options per transfer syntax, and whether it is lossless. (dcmtk cannot
#: encode signed data as JPEG-LS near-lossless; JPEG 2000 is not in dcmtk: the real J2K files
#: above cover it.)
TRANSCODINGS = {
    "implicit VR little endian": (["dcmconv", "+ti"], True),
    "explicit VR big endian": (["dcmconv", "+tb"], True),
    "deflated explicit VR little endian": (["dcmconv", "+td"], True),
    "RLE lossless": (["dcmcrle"], True),
    "JPEG lossless process 14": (["dcmcjpeg", "+el"], True),
    "JPEG lossless SV1": (["dcmcjpeg", "+e1"], True),
    "JPEG-LS lossless": (["dcmcjpls", "+el"], True),
    "JPEG baseline (8-bit, lossy)": (["dcmcjpeg", "+eb"], False),
    "JPEG extended (12-bit, lossy)": (["dcmcjpeg", "+ee"], False),
}
#: Lossy codecs: the mean absolute error must stay below this fraction of the value range,
#: the largest below ``LOSSY_MAX_FRACTION`` (8-bit baseline re-quantises a 12-bit CT: a step is
#: 1/255 of the range, plus the JPEG error).
LOSSY_MEAN_FRACTION = 0.01
LOSSY_MAX_FRACTION = 0.08


def transcode(source: Path, target: Path, command: list[str]) -> Path:
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed (apt-get install dcmtk; make system-packages)")
    target.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        result = subprocess.run([*command, str(path), str(target / path.name)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    return target


@pytest.mark.parametrize("syntax", list(TRANSCODINGS))
def test_real_series_in_every_transfer_syntax(syntax, tmp_path):
    source = real_file(CT5N.parent, CT5N.name)
    command, lossless = TRANSCODINGS[syntax]
    folder = transcode(source, tmp_path / "transcoded", command)
    volume = load_dicom_series(folder)
    reference = reference_for(volume, dcm2niix(source, tmp_path / "reference"))
    if lossless:
        assert_matches_nifti(volume, reference, **TOLERANCES)
        return
    import nibabel as nib

    truth = nib.load(str(reference)).get_fdata()
    span = float(truth.max() - truth.min())
    ours = load_dicom_series(source)  # same geometry as the transcoded series
    np.testing.assert_allclose(volume.voxel_to_world, ours.voxel_to_world, atol=1e-6)
    assert_matches_nifti(ours, reference, **TOLERANCES)
    error = np.abs(volume.data.astype(np.float64) - ours.data)
    assert error.mean() < LOSSY_MEAN_FRACTION * span, (error.mean(), span)
    assert error.max() < LOSSY_MAX_FRACTION * span, (error.max(), span)


def test_transcoded_series_say_which_syntax_they_hold(tmp_path):
    folder = transcode(real_file(CT5N.parent, CT5N.name), tmp_path / "ls", ["dcmcjpls", "+el"])
    syntax = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert syntax == "1.2.840.10008.1.2.4.80"


# -- refusals: never loaded wrongly ---------------------------------------------------------------
@pytest.mark.parametrize("folder,name,words", [
    (PYDICOM_TEST_FILES, "MR_truncated.dcm", ("pixel data",)),
    (PYDICOM_DATA, "SC_rgb.dcm", ("colour",)),
    (PYDICOM_DATA, "JPEG-LL.dcm", ("ImageOrientationPatient", "missing")),
    (PYDICOM_TEST_FILES, "rtdose.dcm", ("multi-frame",)),
    (PYDICOM_TEST_FILES, "test-SR.dcm", ("not a DICOM image",)),
    (PYDICOM_TEST_FILES, "README.txt", ("not a DICOM image",)),
    (NICOM_DATA, "csa_slice_norm.dcm", ("not a DICOM image",)),  # header only: nibabel stripped the pixels
])
def test_unreadable_files_are_refused_in_one_line(folder, name, words):
    path = real_file(folder, name)
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(path)
    message = str(excinfo.value)
    assert "\n" not in message and name in message
    for word in words:
        assert word in message, message


# -- the command line on real files: values and a quiet terminal ----------------------------------
def test_render_of_a_real_file_with_non_conforming_values_prints_only_the_output(tmp_path, capfd):
    # 693_J2KR.dcm carries UI values pydicom warns about: the warnings must not reach the terminal.
    path = real_file(PYDICOM_DATA, "693_J2KR.dcm")
    out = tmp_path / "ct.png"
    assert main(["render", str(path), "--view", "axial", "-o", str(out)]) == 0
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out.strip() == str(out)
    assert out.stat().st_size > 1000


def test_render_of_a_real_mosaic_file_draws_the_demosaiced_volume(tmp_path, capfd):
    # 0051.dcm once loaded as one 360×360 tiled slice (regression of issue 12)
    path = real_file(DICOM3TOOLS_EXAMPLES, "0051.dcm")
    out = tmp_path / "m.png"
    assert main(["render", str(path), "--view", "coronal", "-o", str(out)]) == 0
    captured = capfd.readouterr()
    assert captured.err == "" and out.stat().st_size > 1000
    assert load_dicom_series(path).shape == (72, 72, 20)


def test_a_segmentation_beside_its_image_is_not_a_second_series(tmp_path):
    folder = tmp_path / "exam"
    folder.mkdir()
    shutil.copy(real_file(PYDICOM_TEST_FILES, "CT_small.dcm"), folder / "ct")
    shutil.copy(real_file(PYDICOM_DATA, "liver.dcm"), folder / "seg")
    assert [info.modality for info in list_dicom_series(folder)] == ["CT"]
    assert load_dicom_series(folder).shape == (128, 128, 1)
    with pytest.raises(ViewerError, match="Segmentation"):
        load_dicom_series(folder / "seg")


def test_a_truncated_compressed_file_says_so():
    path = real_file(PYDICOM_DATA, "emri_small_jpeg_2k_lossless_too_short.dcm")
    with pytest.raises(ViewerError, match="is truncated"):
        load_dicom_series(path)


@pytest.mark.parametrize("position", ["first", "last"])
def test_a_damaged_end_slice_is_refused_not_silently_dropped(tmp_path, position):
    """A slice whose DICOM magic is damaged is not recognised as DICOM; at either end of the
    stack its loss leaves no gap, so without a check the volume loses a slice silently."""
    folder = tmp_path / "ct"
    shutil.copytree(real_file(CT5N.parent, CT5N.name), folder)
    files = sorted(folder.iterdir(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    victim = files[0] if position == "first" else files[-1]
    payload = bytearray(victim.read_bytes())
    payload[128:132] = b"XXXX"
    victim.write_bytes(bytes(payload))
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(folder)
    message = str(excinfo.value)
    assert victim.name in message and "damaged" in message and "\n" not in message


def test_a_slice_cut_short_in_its_header_or_replaced_by_garbage_is_refused(tmp_path):
    """Cut inside its header, a slice reads as a dataset without pixels; replaced by garbage,
    it reads as no DICOM at all. Both would leave the series one slice short."""
    source = real_file(CT5N.parent, CT5N.name)
    for damage in ("cut", "garbage"):
        folder = tmp_path / damage
        folder.mkdir()
        for index, path in enumerate(sorted(source.iterdir())):  # PACS-like names
            shutil.copy(path, folder / f"IM{index:04d}")
        victim = folder / "IM0000"
        payload = victim.read_bytes()
        victim.write_bytes(payload[:900] if damage == "cut" else np.random.default_rng(1).bytes(3000))
        with pytest.raises(ViewerError) as excinfo:
            load_dicom_series(folder)
        assert "IM0000" in str(excinfo.value), str(excinfo.value)
    # an unrelated file beside the series stays unrelated
    (tmp_path / "fine").mkdir()
    for index, path in enumerate(sorted(source.iterdir())):
        shutil.copy(path, tmp_path / "fine" / f"IM{index:04d}")
    (tmp_path / "fine" / "README.txt").write_text("exported by a PACS")
    assert load_dicom_series(tmp_path / "fine").shape == (16, 16, 5)
