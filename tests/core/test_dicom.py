"""DICOM series reading and writing.

The phantom is oblique (rotated about two axes), anisotropic (0.9 × 1.1 × 2.5 mm), has a
different size along each axis and values ``i + 20 j + 320 k`` (every voxel unique, so any
transpose or flip changes values) plus a bright marker near one corner. It is written shuffled
(file names and InstanceNumbers out of order) with a different RescaleSlope per slice.

Quantisation tolerance: the writer stores 16-bit integers with RescaleSlope =
max|slice| / 65534 (uint16) or / 32766 (int16), so a read-back value differs by at most half
a slope, plus float32 rounding of the result (relative 2⁻²⁴).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from viewer.core.errors import ViewerError
from viewer.core.io.dicom import list_dicom_series, load_dicom_series
from viewer.core.io.dicom_write import PetTags, write_dicom_series
from viewer.core.volume import Volume

SHAPE = (20, 16, 12)
SPACING_MM = (0.9, 1.1, 2.5)
MARKER_IJK = (2, 3, 1)
MARKER_VALUE = 9000.0
AFFINE_TOLERANCE_MM = 1e-4


# -- builders -----------------------------------------------------------------------------------
def rotation(axis: int, degrees: float) -> np.ndarray:
    angle = np.radians(degrees)
    c, s = np.cos(angle), np.sin(angle)
    a, b = [x for x in range(3) if x != axis]
    m = np.eye(3)
    m[a, a], m[a, b], m[b, a], m[b, b] = c, -s, s, c
    return m


def oblique_affine(flip_k: bool = False, tilt_deg: float = 0.0) -> np.ndarray:
    """Rotated about x by 20° and z by −35°, anisotropic, with a world offset."""
    columns = np.diag(SPACING_MM).astype(float)
    if tilt_deg:  # shear the slice step within the j-k plane (CT gantry tilt)
        columns[:, 2] = [0.0, SPACING_MM[2] * np.tan(np.radians(tilt_deg)), SPACING_MM[2]]
    if flip_k:
        columns[:, 2] *= -1
    affine = np.eye(4)
    affine[:3, :3] = rotation(0, 20) @ rotation(2, -35) @ columns
    affine[:3, 3] = [12.5, -40.0, 33.0]
    return affine


def phantom(affine: np.ndarray | None = None, shape=SHAPE, role: str = "anatomical", scale: float = 1.0) -> Volume:
    i, j, k = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    data = (i + 20.0 * j + 320.0 * k).astype(np.float32)
    data[tuple(min(m, n - 1) for m, n in zip(MARKER_IJK, shape))] = MARKER_VALUE
    return Volume.from_array(data * scale, oblique_affine() if affine is None else affine, role=role)


def quantisation_tolerance(data: np.ndarray, signed: bool = False) -> np.ndarray:
    """Per-slice bound on |read − written| (see module docstring)."""
    levels = 32766 if signed else 65534
    peak = np.abs(data).max(axis=(0, 1))
    return 0.5 * peak / levels * (1 + 1e-6) + peak * 2.0**-23


def assert_values_match(read: np.ndarray, original: np.ndarray, signed: bool = False) -> None:
    error = np.abs(read.astype(np.float64) - original).max(axis=(0, 1))
    assert np.all(error <= quantisation_tolerance(original, signed)), (error, quantisation_tolerance(original, signed))


def assert_one_line_error(excinfo: pytest.ExceptionInfo, folder: Path, *words: str) -> str:
    assert isinstance(excinfo.value, ViewerError)
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(folder) in message
    for word in words:
        assert word in message, message
    return message


def edit_file(path: Path, edit) -> None:
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path)


def value_at_world(volume: Volume, xyz: np.ndarray) -> float:
    ijk = np.round(volume.world_to_voxel_points(np.atleast_2d(xyz))[0]).astype(int)
    return float(volume.data[tuple(ijk)])


@pytest.fixture
def written(tmp_path) -> tuple[Volume, Path, list[Path]]:
    volume = phantom()
    folder = tmp_path / "series"
    files = write_dicom_series(volume, folder, series_description="oblique phantom", shuffle_seed=7)
    return volume, folder, files


# -- round trip ---------------------------------------------------------------------------------
def test_round_trip_oblique_shuffled_series(written):
    original, folder, files = written
    volume = load_dicom_series(folder)
    assert volume.shape == SHAPE
    assert volume.data.dtype == np.float32
    assert np.abs(volume.voxel_to_world - original.voxel_to_world).max() < AFFINE_TOLERANCE_MM
    np.testing.assert_allclose(volume.spacing_mm, SPACING_MM, atol=1e-6)
    assert_values_match(volume.data, original.data)
    assert volume.data[MARKER_IJK] == pytest.approx(MARKER_VALUE, rel=1e-4)
    # The marker's world position reads the marker in the re-read volume too.
    marker_world = original.voxel_to_world_points(np.array([MARKER_IJK]))[0]
    assert value_at_world(volume, marker_world) == pytest.approx(MARKER_VALUE, rel=1e-4)
    assert volume.meta["format"] == "dicom"
    assert volume.meta["n_slices"] == SHAPE[2]
    assert volume.meta["modality"] == "MR"
    assert volume.meta["description"] == "oblique phantom"
    assert volume.name == "oblique phantom"
    assert volume.source == folder


def test_written_series_is_awkward_on_purpose(written):
    """Names and InstanceNumbers are out of slice order and slopes differ per slice."""
    _, _, files = written
    names = [f.name for f in files]
    assert names != sorted(names)
    headers = [pydicom.dcmread(f) for f in files]
    instance_numbers = [int(ds.InstanceNumber) for ds in headers]
    assert instance_numbers != sorted(instance_numbers)
    assert len({str(ds.RescaleSlope) for ds in headers}) == len(files)
    assert len({str(ds.SeriesInstanceUID) for ds in headers}) == 1


def test_affine_axes_follow_dicom_conventions(written):
    """Column i runs along the row cosine × column spacing; LPS x and y are negated."""
    _, _, files = written
    ds = pydicom.dcmread(files[0])
    row_cos = np.array(ds.ImageOrientationPatient[:3], dtype=float)
    col_cos = np.array(ds.ImageOrientationPatient[3:], dtype=float)
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    assert (row_spacing, col_spacing) == pytest.approx((SPACING_MM[1], SPACING_MM[0]))
    flip = np.array([-1.0, -1.0, 1.0])
    volume = load_dicom_series(files[0].parent)
    np.testing.assert_allclose(volume.voxel_to_world[:3, 0], flip * row_cos * col_spacing, atol=1e-6)
    np.testing.assert_allclose(volume.voxel_to_world[:3, 1], flip * col_cos * row_spacing, atol=1e-6)
    stored = ds.pixel_array  # [row, column]
    assert stored.shape == (SHAPE[1], SHAPE[0])


def test_slices_running_against_the_normal(tmp_path):
    """k step anti-parallel to the normal: the reader re-sorts, the world mapping is kept."""
    original = phantom(oblique_affine(flip_k=True))
    write_dicom_series(original, tmp_path / "flipped", shuffle_seed=3)
    volume = load_dicom_series(tmp_path / "flipped")
    np.testing.assert_allclose(volume.voxel_to_world[:3, 2], -original.voxel_to_world[:3, 2], atol=1e-6)
    assert_values_match(volume.data[:, :, ::-1], original.data)
    marker_world = original.voxel_to_world_points(np.array([MARKER_IJK]))[0]
    assert value_at_world(volume, marker_world) == pytest.approx(MARKER_VALUE, rel=1e-4)


def test_gantry_tilt_keeps_voxels_in_place(tmp_path):
    original = phantom(oblique_affine(tilt_deg=15.0))
    write_dicom_series(original, tmp_path / "tilt", shuffle_seed=4)
    volume = load_dicom_series(tmp_path / "tilt")
    assert np.abs(volume.voxel_to_world - original.voxel_to_world).max() < AFFINE_TOLERANCE_MM
    assert volume.meta["gantry_tilt_deg"] == pytest.approx(15.0, abs=1e-3)
    assert volume.meta["slice_gap_mm"] == pytest.approx(SPACING_MM[2])


def test_series_wide_slope_integer_data_is_exact(tmp_path):
    original = phantom()
    files = write_dicom_series(original, tmp_path / "exact", per_slice_rescale=False)
    assert {str(pydicom.dcmread(f).RescaleSlope) for f in files} == {"1"}
    np.testing.assert_array_equal(load_dicom_series(tmp_path / "exact").data, original.data)


def test_negative_values_use_signed_storage(tmp_path):
    original = phantom()
    original = Volume.from_array(original.data - 2000.0, original.voxel_to_world)
    files = write_dicom_series(original, tmp_path / "signed", shuffle_seed=1)
    assert int(pydicom.dcmread(files[0]).PixelRepresentation) == 1
    assert_values_match(load_dicom_series(tmp_path / "signed").data, original.data, signed=True)


def test_non_dicom_files_and_subfolders(tmp_path, written):
    _, folder, files = written
    (folder / "README").write_text("not DICOM\n")
    (folder / "notes.txt").write_text("hello")
    (folder / "DICOMDIR").write_bytes(b"\0" * 300)
    sub = folder / "sub"
    sub.mkdir()
    for path in files[:5]:
        path.rename(sub / path.name)
    volume = load_dicom_series(folder)
    assert volume.shape == SHAPE


def test_non_image_object_of_the_series_is_skipped_an_image_without_pixels_refused(written):
    _, folder, files = written
    ds = pydicom.dcmread(files[0])
    del ds.PixelData
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(folder / "no_pixels.dcm")
    with pytest.raises(ViewerError) as excinfo:  # an MR image without pixels: a slice cut short
        load_dicom_series(folder)
    assert_one_line_error(excinfo, folder, "no_pixels.dcm", "no pixel data")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    ds.save_as(folder / "no_pixels.dcm")
    assert load_dicom_series(folder).shape == SHAPE


# -- several series -----------------------------------------------------------------------------
def test_two_series_in_one_folder_lists_both(tmp_path):
    folder = tmp_path / "mixed"
    write_dicom_series(phantom(), tmp_path / "a", series_description="T1 axial", series_uid="1.2.3.4")
    write_dicom_series(phantom(), tmp_path / "b", modality="CT", series_description="CT body",
                       series_uid="1.2.3.5", shuffle_seed=2)
    folder.mkdir()
    for source in ("a", "b"):
        for path in (tmp_path / source).iterdir():
            path.rename(folder / f"{source}_{path.name}")
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(folder)
    assert_one_line_error(
        excinfo, folder, "2 series", "1.2.3.4 (T1 axial, MR, 12 files)", "1.2.3.5 (CT body, CT, 12 files)", "series_uid"
    )
    chosen = load_dicom_series(folder, series_uid="1.2.3.5")
    assert chosen.meta["series_uid"] == "1.2.3.5" and chosen.meta["modality"] == "CT"
    assert [info.series_uid for info in list_dicom_series(folder)] == ["1.2.3.4", "1.2.3.5"]
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(folder, series_uid="9.9")
    assert_one_line_error(excinfo, folder, "9.9", "1.2.3.4")


# -- refusals -----------------------------------------------------------------------------------
@pytest.mark.parametrize("tag", ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"])
def test_missing_geometry_tag_is_named(written, tag):
    _, folder, files = written
    edit_file(files[4], lambda ds: delattr(ds, tag))
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(folder)
    assert_one_line_error(excinfo, folder, tag, files[4].name, "missing")


def test_missing_middle_slice_is_refused(written):
    _, folder, files = written
    files[5].unlink()
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(folder)
    assert_one_line_error(excinfo, folder, "not uniform")


def test_duplicate_position_is_refused(written):
    _, folder, files = written
    ds = pydicom.dcmread(files[3])
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(folder / "echo2.dcm")
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(folder)
    assert_one_line_error(excinfo, folder, "same position")


def test_different_orientation_is_refused(written):
    _, folder, files = written

    def rotate(ds):
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]

    edit_file(files[2], rotate)
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(folder)
    assert_one_line_error(excinfo, folder, "orientation")


def test_different_pixel_spacing_is_refused(written):
    _, folder, files = written
    edit_file(files[2], lambda ds: setattr(ds, "PixelSpacing", ["1.2", "0.9"]))
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(folder)
    assert_one_line_error(excinfo, folder, "PixelSpacing")


@pytest.mark.parametrize("content", [None, "text"])
def test_folder_without_dicom_images(tmp_path, content):
    folder = tmp_path / "empty"
    folder.mkdir()
    if content:
        (folder / "a.txt").write_text("not an image")
        (folder / "b.dcm").write_bytes(b"garbage" * 50)
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(folder)
    assert_one_line_error(excinfo, folder, "no DICOM image files")


def test_missing_folder_and_file_instead_of_folder(tmp_path):
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(tmp_path / "nope")
    assert_one_line_error(excinfo, tmp_path / "nope", "not found")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(tmp_path / "file")
    assert_one_line_error(excinfo, tmp_path / "file", "folder")


def test_truncated_pixel_data_is_a_viewer_error(written):
    _, folder, files = written
    payload = files[6].read_bytes()
    files[6].write_bytes(payload[: len(payload) - 100])
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(folder)
    assert_one_line_error(excinfo, folder, files[6].name, "pixel data")


# -- single slice -------------------------------------------------------------------------------
def test_single_slice_uses_slice_thickness(tmp_path):
    original = phantom(shape=(20, 16, 1))
    files = write_dicom_series(original, tmp_path / "one")
    volume = load_dicom_series(tmp_path / "one")
    assert volume.shape == (20, 16, 1)
    assert np.abs(volume.voxel_to_world - original.voxel_to_world).max() < AFFINE_TOLERANCE_MM
    assert_values_match(volume.data, original.data)
    # Without SliceThickness, SpacingBetweenSlices is used; without both, refused.
    edit_file(files[0], lambda ds: (delattr(ds, "SliceThickness"), setattr(ds, "SpacingBetweenSlices", "4.0")))
    assert load_dicom_series(tmp_path / "one").spacing_mm[2] == pytest.approx(4.0)
    edit_file(files[0], lambda ds: delattr(ds, "SpacingBetweenSlices"))
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(tmp_path / "one")
    assert_one_line_error(excinfo, tmp_path / "one", "SliceThickness", "SpacingBetweenSlices")


# -- PET ----------------------------------------------------------------------------------------
PET = PetTags(
    weight_kg=59.94, dose_bq=3.7e8, half_life_s=6586.2,
    injection=datetime(2026, 1, 1, 13, 1, 0), series=datetime(2026, 1, 1, 14, 1, 0),
    sex="F", height_m=1.65,
)


def suv_phantom() -> Volume:
    """SUV 0 … ≈10 with a hot marker and a slightly negative corner (noise-like)."""
    volume = phantom(role="pet", scale=1.0 / 400.0)
    data = np.array(volume.data)
    data[0, 0, 0] = -0.11
    return Volume.from_array(data, volume.voxel_to_world, role="pet")


def test_pet_round_trip_through_suv(tmp_path):
    original = suv_phantom()
    files = write_dicom_series(original, tmp_path / "pet", pet=PET, shuffle_seed=11, series_description="PET WB")
    stored = pydicom.dcmread(files[MARKER_IJK[2]])
    assert stored.Modality == "PT" and stored.Units == "BQML"
    volume = load_dicom_series(tmp_path / "pet")  # a PT series is read in SUV whatever the role
    assert volume.role == "anatomical" and volume.units == "SUV"
    assert load_dicom_series(tmp_path / "pet", role="pet").role == "pet"
    # stored Bq/mL → SUV multiplies by ≈2.4e-4 g/Bq·mL⁻¹, so tolerance scales the same way
    assert_values_match(volume.data, original.data, signed=True)
    assert volume.data[MARKER_IJK] == pytest.approx(MARKER_VALUE / 400.0, rel=1e-4)
    assert volume.data[0, 0, 0] == pytest.approx(-0.11, abs=1e-3)
    meta = volume.meta
    assert meta["suv_method"] == "BQML, decay START"
    assert meta["delta_t_s"] == pytest.approx(3600.0)
    assert meta["dose_bq"] == pytest.approx(3.7e8)
    assert meta["sul_factor"] == pytest.approx((1.07 * 59.94 - 148 * (59.94 / 165) ** 2) / 59.94)
    assert np.abs(volume.voxel_to_world - original.voxel_to_world).max() < AFFINE_TOLERANCE_MM


def test_pet_stored_values_are_activity_concentration(tmp_path):
    original = suv_phantom()
    files = write_dicom_series(original, tmp_path / "pet", pet=PET)
    ds = pydicom.dcmread(files[MARKER_IJK[2]])
    bq_per_ml = float(ds.pixel_array.T[MARKER_IJK[:2]]) * float(ds.RescaleSlope)
    decayed_dose = 3.7e8 * 2 ** (-3600 / 6586.2)
    assert bq_per_ml * 59940 / decayed_dose == pytest.approx(MARKER_VALUE / 400.0, rel=1e-4)


@pytest.mark.parametrize("units, extra", [("GML", {}), ("CNTS", {"philips_suv_factor": 2.5e-4}),
                                          ("BQML", {"decay_correction": "ADMIN"})])
def test_pet_round_trip_other_units(tmp_path, units, extra):
    tags = dataclasses.replace(PET, units=units, **extra)
    original = suv_phantom()
    write_dicom_series(original, tmp_path / "pet", pet=tags, shuffle_seed=5)
    volume = load_dicom_series(tmp_path / "pet", role="pet")
    assert_values_match(volume.data, original.data, signed=True)


def test_pet_without_dose_is_refused(tmp_path):
    files = write_dicom_series(suv_phantom(), tmp_path / "pet", pet=PET)
    for path in files:
        edit_file(path, lambda ds: delattr(ds.RadiopharmaceuticalInformationSequence[0], "RadionuclideTotalDose"))
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(tmp_path / "pet")
    assert_one_line_error(excinfo, tmp_path / "pet", "cannot compute SUV", "RadionuclideTotalDose is missing")


def test_role_pet_on_non_pet_series_needs_pet_tags(written):
    _, folder, _ = written
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(folder, role="pet")
    assert_one_line_error(excinfo, folder, "cannot compute SUV")


# -- writer -------------------------------------------------------------------------------------
def test_writer_refuses_non_empty_target_and_overwrites_atomically(tmp_path):
    folder = tmp_path / "out"
    first = write_dicom_series(phantom(), folder, series_uid="1.2.3.1")
    with pytest.raises(ViewerError) as excinfo:
        write_dicom_series(phantom(), folder)
    assert_one_line_error(excinfo, folder, "not empty")
    assert sorted(folder.iterdir()) == sorted(first)
    write_dicom_series(phantom(), folder, series_uid="1.2.3.2", overwrite=True)
    assert load_dicom_series(folder).meta["series_uid"] == "1.2.3.2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left behind


def test_writer_into_existing_empty_folder(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    files = write_dicom_series(phantom(), folder)
    assert all(f.exists() for f in files) and len(files) == SHAPE[2]


def test_failed_write_leaves_nothing(tmp_path):
    data = np.array(phantom().data)
    data[1, 1, 1] = np.nan
    with pytest.raises(ViewerError):
        write_dicom_series(Volume.from_array(data, oblique_affine()), tmp_path / "bad")
    assert list(tmp_path.iterdir()) == []


def test_series_made_from_a_nifti_reads_back_to_the_same_world_values(tmp_path):
    """A NIfTI → shuffled DICOM (per-slice slopes) → Volume round trip, compared in world space.

    Tolerance: the writer stores 16-bit integers with a per-slice slope, so each value may move
    by half a quantisation step: max |slice| / 65534 (uint16), here ≤ 0.02 of values up to 1000.
    """
    from tests.core.phantoms import blob_function, centered_affine, rotation, world_grid
    from viewer.core.io.nifti import load_nifti, save_nifti
    from viewer.core.spaces import sample_point

    shape = (24, 20, 14)
    affine = centered_affine(shape, (1.2, 0.9, 2.5), (10, -5, 3), rotate=rotation("z", -25) @ rotation("y", 15))
    save_nifti((blob_function(world_grid(shape, affine)) * 2).astype(np.float32), tmp_path / "source.nii.gz", affine)
    source = load_nifti(tmp_path / "source.nii.gz")
    write_dicom_series(source, tmp_path / "series", shuffle_seed=11)
    series = load_dicom_series(tmp_path / "series")
    np.testing.assert_allclose(series.voxel_to_world, source.voxel_to_world, atol=1e-4)
    step = np.abs(np.asarray(source.data)).max() / 65534
    rng = np.random.default_rng(4)
    inside_points = source.voxel_to_world_points(rng.uniform(0, np.array(shape) - 1, (200, 3)))
    for point in inside_points:
        assert abs(sample_point(series, point) - sample_point(source, point)) <= step + 1e-3
