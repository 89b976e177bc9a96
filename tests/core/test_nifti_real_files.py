"""NIfTI of any byte order and dtype (PRODUCT.md §8 "Reading"), against independent readers.

Real files that ship with installed packages (nibabel's test data, Debian's mricron-data
templates) are loaded with our loader and compared with nibabel read directly and with
SimpleITK (an ITK reader, not nibabel): the world position of the 8 corner voxels and the
value of every voxel. Synthetic files written by nibabel cover each stored dtype. The
regression: a big-endian file used to load fine but die inside the numba plane kernels on
``viewer render`` / ``viewer report``.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.core.real_files import MRICRON_TEMPLATES, NIBABEL_DATA, corner_voxels, real_file, to_world
from viewer.cli import main
from viewer.core.errors import ViewerError
from viewer.core.io.nifti import FLOAT64_EXACT_INT_LIMIT, _inflated_voxels, load_nifti, supported_voxels
from viewer.core.io.study import load_timepoint, open_path
from viewer.core.layers import build_layers, default_focus
from viewer.core.regions import LabelTable
from viewer.core.render import render_view
from viewer.core.spaces import Plane, sample_plane
from viewer.core.volume import Volume

sitk = pytest.importorskip("SimpleITK")

#: World positions from two readers of the same header agree to this (mm); both decode the
#: same float32 header fields, so only double-rounding differences remain.
WORLD_ATOL_MM = 1e-4

#: One float32 rounding, relative (ITK scales stored integers in float32).
FLOAT32_RTOL = float(np.finfo(np.float32).eps)

#: The kernels and quantification take exactly these dtypes (native byte order).
KERNEL_DTYPES = {np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32,
                                       np.float32, np.float64)}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

NIBABEL_3D = ("anatomical.nii", "standard.nii.gz", "reoriented_anat_moved.nii", "resampled_anat_moved.nii")
NIBABEL_4D = {"example4d.nii.gz": 2, "functional.nii": 20, "example_nifti2.nii.gz": 2}
BIG_ENDIAN = ("anatomical.nii", "reoriented_anat_moved.nii", "resampled_anat_moved.nii")
MRICRON = (
    "AICHAmc.nii.gz", "HarvardOxford-cort-maxprob-thr0-1mm.nii.gz", "JHU-WhiteMatter-labels-1mm.nii.gz",
    "JHU-WhiteMatter-labels-2mm.nii.gz", "aal.nii.gz", "brodmann.nii.gz", "ch2.nii.gz", "ch2bet.nii.gz",
    "ch2better.nii.gz", "inia19-NeuroMaps.nii.gz", "inia19-t1-brain.nii.gz", "jhu189.nii.gz", "natbrainlab.nii.gz",
)


# -- independent references -------------------------------------------------------------------

def _sitk_corners_ras(image) -> np.ndarray:
    """World (RAS+ mm) of the 8 corner voxels as SimpleITK places them (ITK is LPS: flip x, y)."""
    corners = corner_voxels(image.GetSize())
    lps = np.array([image.TransformContinuousIndexToPhysicalPoint(c.tolist()) for c in corners])
    return lps * np.array([-1.0, -1.0, 1.0])


def _sitk_voxels(image) -> np.ndarray:
    """SimpleITK's voxel array indexed [i, j, k] like ours (it returns [k, j, i])."""
    return sitk.GetArrayViewFromImage(image).transpose(2, 1, 0)


def _forms_disagree(img) -> bool:
    """Both sform and qform are set and place the corners differently.

    nibabel (and we) then use the sform; ITK uses the qform unless the sform is in scanner
    space or matches it (its documented rule), so SimpleITK follows the other form.
    """
    header = img.header
    if int(header["sform_code"]) <= 0 or int(header["qform_code"]) <= 0:
        return False
    corners = corner_voxels(img.shape)
    gap = np.abs(to_world(img.get_sform(), corners) - to_world(img.get_qform(), corners)).max()
    return bool(gap > WORLD_ATOL_MM)


def _assert_matches_nibabel(volume: Volume, path: Path) -> None:
    img = nib.load(str(path))
    corners = corner_voxels(volume.shape)
    np.testing.assert_allclose(to_world(volume.voxel_to_world, corners), to_world(img.affine, corners),
                               rtol=0, atol=WORLD_ATOL_MM)
    reference = img.get_fdata()
    while reference.ndim > 3:
        reference = reference[..., 0]
    np.testing.assert_array_equal(np.asarray(volume.data), reference)  # NaN equals NaN here


def _assert_matches_simpleitk(volume: Volume, path: Path) -> None:
    image = sitk.ReadImage(str(path))
    assert image.GetDimension() == 3
    img = nib.load(str(path))
    sitk_corners = _sitk_corners_ras(image)
    ours = to_world(volume.voxel_to_world, corner_voxels(volume.shape))
    if _forms_disagree(img):
        in_ours = np.abs(sitk_corners - ours).max() <= WORLD_ATOL_MM
        in_qform = np.abs(sitk_corners - to_world(img.get_qform(), corner_voxels(volume.shape))).max() <= WORLD_ATOL_MM
        assert in_ours or in_qform, "SimpleITK follows neither of the file's two forms"
        np.testing.assert_allclose(volume.voxel_to_world, img.get_sform(), rtol=0, atol=WORLD_ATOL_MM)
    else:
        np.testing.assert_allclose(ours, sitk_corners, rtol=0, atol=WORLD_ATOL_MM)
    _assert_same_values_as_itk(np.asarray(volume.data), _sitk_voxels(image))


def _assert_same_values_as_itk(ours: np.ndarray, itk: np.ndarray) -> None:
    """Every voxel equal, except that ITK's NIfTI reader turns NaN voxels into 0
    (resampled_anat_moved.nii has 153 NaN outside its field of view; nibabel keeps them),
    and that ITK applies scl_slope/scl_inter in float32 where nibabel uses float64: then
    values agree to one float32 rounding (:data:`FLOAT32_RTOL`)."""
    nan = np.isnan(ours) if ours.dtype.kind == "f" else np.zeros(ours.shape, bool)
    rounded_by_itk = itk.dtype == np.float32 and ours.dtype == np.float64
    np.testing.assert_allclose(ours[~nan], itk[~nan], rtol=FLOAT32_RTOL if rounded_by_itk else 0, atol=0)
    assert np.all((itk[nan] == 0) | np.isnan(itk[nan]))


def _assert_kernel_ready(volume: Volume) -> None:
    assert volume.dtype in KERNEL_DTYPES, volume.dtype
    assert volume.dtype.isnative


def _oblique_plane(volume: Volume) -> Plane:
    """A plane tilted against the grid so sampling runs the compiled kernels, not slicing."""
    c, s = np.cos(np.radians(17.0)), np.sin(np.radians(17.0))
    pixel_to_world = np.eye(4)
    pixel_to_world[:3, 0] = [0.0, c, s]
    pixel_to_world[:3, 1] = [1.0, 0.0, 0.0]
    pixel_to_world[:3, 2] = np.cross(pixel_to_world[:3, 1], pixel_to_world[:3, 0])
    pixel_to_world[:3, 3] = volume.center_world() - 2.0 * pixel_to_world[:3, 0] - 2.0 * pixel_to_world[:3, 1]
    return Plane(pixel_to_world, (5, 5))


# -- real files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NIBABEL_3D)
def test_nibabel_test_files_match_nibabel_and_simpleitk(name):
    path = real_file(NIBABEL_DATA, name)
    volume = load_nifti(path)
    _assert_kernel_ready(volume)
    _assert_matches_nibabel(volume, path)
    _assert_matches_simpleitk(volume, path)


@pytest.mark.parametrize("name", BIG_ENDIAN)
def test_big_endian_file_is_native_after_load(name):
    volume = load_nifti(real_file(NIBABEL_DATA, name))
    assert volume.meta["stored_dtype"].startswith(">")
    assert volume.dtype.isnative and not volume.is_memory_mapped  # swapped once, into memory


@pytest.mark.parametrize("name", sorted(NIBABEL_4D))
def test_nibabel_4d_series_refused_in_one_line(name):
    path = real_file(NIBABEL_DATA, name)
    with pytest.raises(ViewerError) as info:
        load_nifti(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    assert f"4-D with {NIBABEL_4D[name]} volumes" in message


@pytest.mark.parametrize("name", sorted(NIBABEL_4D))
def test_first_volume_of_4d_files_with_their_own_header_matches_nibabel(name, tmp_path):
    """Each 4-D file's first volume, saved 3-D with the file's own header class and dtype
    (NIfTI-2 for example_nifti2), reads like nibabel reads it (SimpleITK has no NIfTI-2)."""
    img = nib.load(str(real_file(NIBABEL_DATA, name)))
    first = type(img)(np.asanyarray(img.dataobj[..., 0]), img.affine, img.header)
    path = tmp_path / name.replace(".nii", "_first.nii")
    nib.save(first, str(path))
    volume = load_nifti(path)
    _assert_kernel_ready(volume)
    _assert_matches_nibabel(volume, path)
    if isinstance(img, nib.Nifti1Image) and not isinstance(img, nib.Nifti2Image):
        _assert_matches_simpleitk(volume, path)


@pytest.mark.parametrize("name", MRICRON)
def test_mricron_templates_match_nibabel_and_simpleitk(name):
    path = real_file(MRICRON_TEMPLATES, name)
    volume = load_nifti(path)
    _assert_kernel_ready(volume)
    _assert_matches_nibabel(volume, path)
    _assert_matches_simpleitk(volume, path)


def test_mricron_template_with_bogus_qform_keeps_the_sform():
    """AICHAmc's qform has lost its y/z offsets (ITK reads it, 126 mm off); nibabel and we use
    the MNI sform, which puts voxel (45, 63, 36) at the MNI origin."""
    volume = load_nifti(real_file(MRICRON_TEMPLATES, "AICHAmc.nii.gz"))
    np.testing.assert_allclose(volume.voxel_to_world_points(np.array([[45.0, 63.0, 36.0]]))[0], [0.0, 0.0, 0.0],
                               atol=WORLD_ATOL_MM)


# -- the regression: big-endian through render and report ---------------------------------------

def test_big_endian_file_renders_through_render_view(tmp_path):
    study = open_path(real_file(NIBABEL_DATA, "anatomical.nii"))
    timepoint = study.timepoints[0]
    volumes = load_timepoint(study, timepoint)
    out = render_view(build_layers(volumes, LabelTable.from_names(dict(timepoint.region_names))), "axial",
                      default_focus(volumes, timepoint.region_names), tmp_path / "a.png")
    assert out.read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("view", ("axial", "coronal", "sagittal"))
def test_big_endian_file_renders_from_the_command_line(tmp_path, view, capsys):
    out = tmp_path / f"{view}.png"
    assert main(["render", str(real_file(NIBABEL_DATA, "anatomical.nii")), "--view", view, "-o", str(out)]) == 0
    assert capsys.readouterr().err == ""
    assert out.read_bytes().startswith(PNG_SIGNATURE)


def test_big_endian_file_reports_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "report.pdf"
    assert main(["report", str(real_file(NIBABEL_DATA, "reoriented_anat_moved.nii")), "-o", str(out)]) == 0
    assert capsys.readouterr().err == ""
    assert out.read_bytes().startswith(b"%PDF")


# -- synthetic files of every stored dtype ------------------------------------------------------

def _affine() -> np.ndarray:
    """Oblique (10° about x), anisotropic (1.5 × 1.2 × 2 mm), x flipped; orthogonal axes,
    since ITK refuses sheared grids."""
    c, s = np.cos(np.radians(10.0)), np.sin(np.radians(10.0))
    rotation = np.array([[-1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.5, 1.2, 2.0])
    affine[:3, 3] = [20.0, -14.0, -6.0]
    return affine


def _blob(shape: tuple[int, int, int] = (12, 14, 10)) -> np.ndarray:
    """A smooth bright blob in [0, 1] (so every render has contrast)."""
    grid = np.indices(shape).astype(np.float64)
    centre = (np.array(shape, dtype=np.float64) - 1) / 2
    distance2 = sum(((grid[a] - centre[a]) / (shape[a] / 4)) ** 2 for a in range(3))
    return np.exp(-distance2)


def _write(path: Path, data: np.ndarray, stored: str, slope: float | None = None, inter: float = 0.0) -> Path:
    """Write ``data`` stored as ``stored`` (numpy dtype string, ``>`` for big-endian)."""
    dtype = np.dtype(stored)
    header = nib.Nifti1Header(endianness=">" if dtype.byteorder == ">" else "<")
    img = nib.Nifti1Image(data, _affine(), header=header, dtype=dtype)
    img.set_data_dtype(dtype)
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    nib.save(img, str(path))
    return path


#: stored dtype, values written, the dtype we must load it as, stays memory-mapped
SYNTHETIC = {
    "int8": (lambda: np.round(_blob() * 250 - 125).astype(np.int8), np.int8, True),
    "uint8": (lambda: np.round(_blob() * 255).astype(np.uint8), np.uint8, True),
    "int16": (lambda: np.round(_blob() * 3000 - 100).astype(np.int16), np.int16, True),
    "uint16": (lambda: np.round(_blob() * 60000).astype(np.uint16), np.uint16, True),
    "int32": (lambda: np.round(_blob() * 2e9 - 1e9).astype(np.int32), np.int32, True),
    "uint32": (lambda: np.round(_blob() * 4e9).astype(np.uint32), np.uint32, True),
    "int64": (lambda: np.round(_blob() * 4000 - 7).astype(np.int64), np.int32, False),
    "uint64": (lambda: np.round(_blob() * 4000).astype(np.uint64), np.int32, False),
    "float32": (lambda: (_blob() * 7.5 - 1).astype(np.float32), np.float32, True),
    "float64": (lambda: _blob() * 1e-3 + 1e-9, np.float64, True),
    ">f4": (lambda: (_blob() * 7.5 - 1).astype(np.float32), np.float32, False),
    ">i2": (lambda: np.round(_blob() * 3000 - 100).astype(np.int16), np.int16, False),
    ">f8": (lambda: _blob() * 1e-3, np.float64, False),
    ">u2": (lambda: np.round(_blob() * 60000).astype(np.uint16), np.uint16, False),
}


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("stored", sorted(SYNTHETIC))
def test_each_stored_dtype_loads_the_values_nibabel_reads(stored, suffix, tmp_path):
    make, loaded_as, mapped = SYNTHETIC[stored]
    path = _write(tmp_path / f"img{suffix}", make(), stored)
    assert nib.load(str(path)).get_data_dtype() == np.dtype(stored)
    volume = load_nifti(path)
    assert volume.dtype == np.dtype(loaded_as)
    assert volume.is_memory_mapped == (mapped and suffix == ".nii")
    assert volume.meta["stored_dtype"] == np.dtype(stored).str
    _assert_matches_nibabel(volume, path)
    _assert_matches_simpleitk(volume, path)


@pytest.mark.parametrize("stored", sorted(SYNTHETIC))
def test_each_stored_dtype_samples_and_renders(stored, tmp_path):
    make, _, _ = SYNTHETIC[stored]
    path = _write(tmp_path / "img.nii", make(), stored)
    volume = load_nifti(path)
    plane = _oblique_plane(volume)
    for interpolation in ("linear", "nearest"):
        assert np.isfinite(sample_plane(volume, plane, interpolation).values.astype(np.float64)).all()
    out = tmp_path / "img.png"
    assert main(["render", str(path), "--view", "coronal", "-o", str(out)]) == 0
    assert out.read_bytes().startswith(PNG_SIGNATURE)


def test_big_endian_int16_with_slope_and_intercept_is_scaled(tmp_path):
    raw = np.round(_blob() * 3000 - 100).astype(np.int16)
    path = _write(tmp_path / "scaled.nii", raw, ">i2", slope=0.25, inter=-3.0)
    volume = load_nifti(path)
    assert volume.dtype.kind == "f" and volume.dtype.isnative
    np.testing.assert_allclose(np.asarray(volume.data), raw * 0.25 - 3.0, rtol=0, atol=1e-6)
    _assert_matches_nibabel(volume, path)
    _assert_matches_simpleitk(volume, path)
    out = tmp_path / "scaled.png"
    assert main(["render", str(path), "-o", str(out)]) == 0
    assert out.read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("stored", sorted(SYNTHETIC))
def test_gzipped_voxels_inflated_straight_into_the_array_are_nibabels(stored, tmp_path):
    """The unscaled .nii.gz path inflates the stream into the array itself (issue 19: one pass
    over fresh memory, not three); it must give nibabel's values in the stored dtype, and not by
    falling back to nibabel."""
    make, _, _ = SYNTHETIC[stored]
    path = _write(tmp_path / "img.nii.gz", make(), stored)
    img = nib.load(str(path))
    data = _inflated_voxels(path, img)
    reference = np.asanyarray(nib.load(str(path)).dataobj)
    assert data.dtype == reference.dtype == np.dtype(stored)
    np.testing.assert_array_equal(data, reference)


def test_truncated_gzip_reports_nibabels_error_not_a_short_array(tmp_path):
    path = _write(tmp_path / "img.nii.gz", _blob().astype(np.float32), "float32")
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(Exception):
        _inflated_voxels(path, nib.load(str(path)))
    with pytest.raises(ViewerError, match="truncated"):
        load_nifti(path)


def test_gzipped_scaled_file_is_scaled_like_nibabel(tmp_path):
    raw = np.round(_blob() * 3000 - 100).astype(np.int16)
    path = _write(tmp_path / "scaled.nii.gz", raw, ">i2", slope=0.25, inter=-3.0)
    volume = load_nifti(path)
    np.testing.assert_allclose(np.asarray(volume.data), raw * 0.25 - 3.0, rtol=0, atol=1e-6)
    _assert_matches_nibabel(volume, path)
    _assert_matches_simpleitk(volume, path)


def test_int64_beyond_int32_becomes_exact_float64(tmp_path):
    data = np.round(_blob() * 1e12).astype(np.int64) - 5
    volume = load_nifti(_write(tmp_path / "big.nii", data, "int64"))
    assert volume.dtype == np.float64
    np.testing.assert_array_equal(np.asarray(volume.data).astype(np.int64), data)


def test_int64_beyond_two_to_the_53_refused_in_one_line(tmp_path):
    data = np.zeros((4, 4, 4), np.int64)
    data[1, 2, 3] = FLOAT64_EXACT_INT_LIMIT + 1
    path = _write(tmp_path / "huge.nii", data, "int64")
    with pytest.raises(ViewerError, match="beyond 2\\*\\*53") as info:
        load_nifti(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_integer_label_map_stays_integer_in_a_study(tmp_path):
    """int64 labels (as some tools write them) load as int32: still integer for the label code."""
    labels = np.zeros((12, 14, 10), np.int64)
    labels[3:6, 4:8, 2:5] = 1
    labels[7:9, 8:11, 5:8] = 2
    _write(tmp_path / "anat.nii", _blob().astype(np.float32), "float32")
    _write(tmp_path / "regions.nii", labels, "int64")
    (tmp_path / "study.toml").write_text(
        '[study]\nid = "dtypes"\n\n[[timepoint]]\nlabel = "day 1"\nanatomical = "anat.nii"\n'
        'regions = "regions.nii"\nregion_names = { 1 = "core", 2 = "penumbra" }\n', encoding="utf-8")
    study = open_path(tmp_path / "study.toml")
    volumes = load_timepoint(study, study.timepoints[0])
    assert np.issubdtype(volumes["regions"].dtype, np.integer)
    np.testing.assert_array_equal(np.asarray(volumes["regions"].data), labels)


@pytest.mark.parametrize(("given", "expected"), [("float16", np.float32), ("bool", np.uint8)])
def test_arrays_no_nifti_can_hold_become_kernel_dtypes(given, expected):
    """NIfTI has no float16 or bool code (nibabel refuses to write them); other readers may
    still hand such arrays over, and the kernels have no float16."""
    data = (_blob() > 0.5).astype(given) if given == "bool" else _blob().astype(given)
    converted = supported_voxels("in-memory", data)
    assert converted.dtype == expected
    np.testing.assert_array_equal(converted, data.astype(expected))
    volume = Volume.from_array(converted, _affine())
    for interpolation in ("linear", "nearest"):
        sample_plane(volume, _oblique_plane(volume), interpolation)


def test_native_array_is_returned_unchanged():
    data = _blob().astype(np.float32)
    assert supported_voxels("in-memory", data) is data


@pytest.mark.parametrize(("stored", "expected"), [
    ("complex64", "holds complex values (complex64); load the magnitude image"),
    ("complex128", "holds complex values (complex128); load the magnitude image"),
])
def test_complex_refused_in_one_line_naming_the_file(stored, expected, tmp_path):
    path = tmp_path / f"{stored}.nii"
    nib.save(nib.Nifti1Image((_blob() * (1 + 2j)).astype(stored), _affine()), str(path))
    with pytest.raises(ViewerError) as info:
        load_nifti(path)
    assert str(info.value) == f"{path}: {expected}"


@pytest.mark.parametrize(("channels", "name"), [("RGB", "NIFTI_TYPE_RGB24"), ("RGBA", "NIFTI_TYPE_RGBA32")])
def test_colour_refused_in_one_line_naming_the_file(channels, name, tmp_path):
    voxels = np.zeros((4, 5, 6), dtype=[(c, "u1") for c in channels])
    path = tmp_path / f"{channels}.nii"
    nib.save(nib.Nifti1Image(voxels, _affine()), str(path))
    with pytest.raises(ViewerError) as info:
        load_nifti(path)
    message = str(info.value)
    assert "\n" not in message
    assert message == f"{path}: holds colour (multi-channel) voxels ({name}); load a single-channel (grey-scale) image"


def test_colour_refused_by_the_command_line_with_one_error_line(tmp_path, capsys):
    voxels = np.zeros((4, 5, 6), dtype=[(c, "u1") for c in "RGB"])
    path = tmp_path / "colour.nii.gz"
    nib.save(nib.Nifti1Image(voxels, _affine()), str(path))
    assert main(["render", str(path), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: holds colour")
    assert not (tmp_path / "x.png").exists()


def test_the_gzip_reader_inflates_straight_into_the_array(tmp_path):
    """One pass over fresh memory: inflating allocates the array and no second copy of its
    size (the gzip file's public readinto builds a bytes object of the whole size first)."""
    import tracemalloc

    data = np.random.default_rng(2).normal(size=(128, 128, 64)).astype(np.float32)  # 4 MB, barely compressible
    path = _write(tmp_path / "img.nii.gz", data, "float32")
    img = nib.load(str(path))
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        read = _inflated_voxels(path, img)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(read, data)
    assert read.nbytes <= peak < 1.5 * read.nbytes
