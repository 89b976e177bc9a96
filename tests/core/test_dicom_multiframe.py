"""Enhanced multi-frame DICOM (MR, CT, PET) against independent references.

References, and where each is trusted (every limitation below was checked against a
constructed ground truth, which our reader matches exactly):
- dcm2niix (``tests/core/real_files.dcm2niix``). It applies only one rescale slope to a Legacy
  Converted file whose per-frame slopes differ, and it leaves *compressed* enhanced frames in
  file order while its affine assumes slice order. So it is compared on files whose frames
  are stored in slice order or share one slope, and, for per-slice slopes, on the classic
  series the enhanced file was converted from.
- nibabel's ``MultiframeWrapper`` (affine LPS, data [row, column, slice]). nibabel 5.4 computes
  the slice spacing from slice ranks used as frame indices, so it is wrong for frames stored
  out of slice order, and it cannot sort highdicom's dimension index (ImagePositionPatient
  instead of StackID/InStackPositionNumber). It is compared on the real files and on files
  whose frames are in slice order.
- highdicom (``highdicom.legacy``) writes the enhanced files from classic series written by
  our writer, so "enhanced read" = "classic read" is a comparison of two storages of the same
  voxels, and the classic series is compared with dcm2niix.
- pydicom-data's ``emri_small*`` files are anonymised without any functional group (no
  position, orientation or spacing: dcm2niix writes a "bogus spatial matrix", nibabel fails),
  so as shipped they are refused; to compare the decoders of their five transfer syntaxes the
  same oblique geometry is added to each (their compressed pixel data is kept byte for byte).

Tolerances are named below; values are compared exactly where both sides compute
``stored · slope + intercept`` in floating point from the same integers.
"""

from __future__ import annotations

import copy
import warnings
from datetime import datetime
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from tests.core.real_files import (
    NICOM_DATA,
    PYDICOM_DATA,
    assert_same_image,
    corner_voxels,
    dcm2niix,
    real_file,
    to_world,
    ungzipped,
)
from viewer.core.errors import ViewerError
from viewer.core.io.dicom import load_dicom_series
from viewer.core.io.dicom_frames import frames_of_file
from viewer.core.io.dicom_multiframe import VALUE_MAPPING_ATTRIBUTE
from viewer.core.io.dicom_scan import read_header
from viewer.core.io.dicom_write import PetTags, write_dicom_series
from viewer.core.volume import Volume

highdicom = pytest.importorskip("highdicom")

#: dcm2niix stores its affine in float32: 1e-3 mm is far above its rounding (~3e-5 mm at 300 mm).
DCM2NIIX_TOLERANCE_MM = 1e-3
#: nibabel builds the affine from the first slice and a rounded slice spacing: up to ~1.4e-3 mm
#: off over the 176 slices of the Philips file.
NIBABEL_TOLERANCE_MM = 1e-2
#: Our affine against the phantom's own (positions are written as 12-digit decimal strings).
AFFINE_TOLERANCE_MM = 1e-4
#: float32 results (ours and dcm2niix's) of the same float64 value differ by ≤ 1 ulp.
FLOAT32_RELATIVE = 2.0**-23
SHAPE = (20, 16, 12)
SPACING_MM = (0.9, 1.1, 2.5)
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
EMRI_NAMES = ("emri_small.dcm", "emri_small_big_endian.dcm", "emri_small_RLE.dcm",
              "emri_small_jpeg_2k_lossless.dcm", "emri_small_jpeg_ls_lossless.dcm")
#: The file order of the emri frames in the "shuffled" geometry: frame f lies at slice ORDER[f].
SHUFFLED_ORDER = (3, 7, 0, 9, 1, 5, 8, 2, 6, 4)
PET = PetTags(weight_kg=59.94, dose_bq=3.7e8, half_life_s=6586.2,
              injection=datetime(2026, 1, 1, 13, 1, 0), series=datetime(2026, 1, 1, 14, 1, 0),
              sex="F", height_m=1.65)


# -- phantoms (as in test_dicom.py: oblique, anisotropic, every voxel unique) --------------------
def rotation(axis: int, degrees: float) -> np.ndarray:
    angle = np.radians(degrees)
    c, s = np.cos(angle), np.sin(angle)
    a, b = [x for x in range(3) if x != axis]
    m = np.eye(3)
    m[a, a], m[a, b], m[b, a], m[b, b] = c, -s, s, c
    return m


def oblique_affine() -> np.ndarray:
    """RAS affine rotated about x by 20° and z by −35°, 0.9 × 1.1 × 2.5 mm, offset."""
    affine = np.eye(4)
    affine[:3, :3] = rotation(0, 20) @ rotation(2, -35) @ np.diag(SPACING_MM)
    affine[:3, 3] = [12.5, -40.0, 33.0]
    return affine


def phantom(scale: float = 1.0, role: str = "anatomical") -> Volume:
    """Values ``(i + 20 j + 320 k) · scale``: any transpose or flip changes them."""
    i, j, k = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    return Volume.from_array(((i + 20.0 * j + 320.0 * k) * scale).astype(np.float32), oblique_affine(), role=role)


def quantisation_tolerance(data: np.ndarray, signed: bool = False) -> np.ndarray:
    """Per-slice bound of the writer's 16-bit storage: half a slope plus float32 rounding."""
    peak = np.abs(data).max(axis=(0, 1))
    return 0.5 * peak / (32766 if signed else 65534) * (1 + 1e-6) + peak * FLOAT32_RELATIVE


# -- references -------------------------------------------------------------------------------------
def measure(ours: Volume, ref_data: np.ndarray, ref_affine: np.ndarray, what: str) -> tuple[float, float]:
    """(largest corner distance in mm, largest |value difference|) between our volume and a
    reference mapped through both affines (printed for the record; asserted by the caller)."""
    data = np.asarray(ours.data, dtype=np.float64)
    ref = np.asarray(ref_data, dtype=np.float64)
    while ref.ndim > 3 and ref.shape[-1] == 1:
        ref = ref[..., 0]
    ours_corners = to_world(ours.voxel_to_world, corner_voxels(data.shape))
    ref_corners = to_world(ref_affine, corner_voxels(ref.shape))
    corner = float(np.linalg.norm(ours_corners[:, None] - ref_corners[None], axis=2).min(axis=1).max())
    ijk = np.indices(ref.shape).reshape(3, -1).T.astype(float)
    index = np.round(to_world(np.linalg.inv(ours.voxel_to_world) @ ref_affine, ijk)).astype(int)
    value = float(np.abs(data[index[:, 0], index[:, 1], index[:, 2]] - ref.reshape(-1)).max())
    print(f"{what}: corner {corner:.3g} mm, value {value:.3g}")
    return corner, value


def compare(ours: Volume, ref_data: np.ndarray, ref_affine: np.ndarray, what: str, *, atol_mm: float,
            atol_value: float = 0.0, rtol_value: float = 0.0) -> None:
    """Same voxels at the same world places (real_files.assert_same_image), and the record."""
    measure(ours, ref_data, ref_affine, what)
    assert_same_image(np.asarray(ours.data), ours.voxel_to_world, ref_data, ref_affine, atol_mm=atol_mm,
                      atol_value=atol_value, rtol_value=rtol_value)


def dcm2niix_image(source: Path, out_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(data, RAS affine) of the one NIfTI dcm2niix writes for ``source``."""
    written = dcm2niix(source, out_dir)
    assert len(written) == 1, written
    image = nib.load(str(written[0]))
    return image.get_fdata(), image.affine


def nibabel_image(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(data, RAS affine) by nibabel's MultiframeWrapper (built directly: wrapper_from_file
    only picks it for the Enhanced MR SOP class)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "The DICOM readers are highly experimental"
        from nibabel.nicom.dicomwrappers import MultiframeWrapper

        wrapper = MultiframeWrapper(pydicom.dcmread(str(path)))
        return np.asarray(wrapper.get_data(), dtype=np.float64), LPS_TO_RAS @ wrapper.affine


def decay_factor_independent(delta_t_s: float, half_life_s: float) -> float:
    return 2.0 ** (-delta_t_s / half_life_s)


# -- building enhanced files ------------------------------------------------------------------------
def item(**tags) -> Dataset:
    ds = Dataset()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


def add_geometry(ds: Dataset, order: tuple[int, ...], slopes: list[float] | None = None) -> Dataset:
    """Give a multi-frame dataset an oblique geometry: frame f at slice ``order[f]``, 1.2 mm
    apart, PixelSpacing 1.1 \\ 0.9 mm, rescale ``slopes[f]`` (0.5 for all by default) + 10."""
    rot = rotation(0, 20) @ rotation(2, -35)
    row, col = rot[:, 0], rot[:, 1]
    normal = np.cross(row, col)
    origin = np.array([12.5, -40.0, 33.0])
    cosines = [f"{v:.12f}" for v in (*row, *col)]
    shared = item(PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=cosines)]),
                  PixelMeasuresSequence=Sequence([item(PixelSpacing=["1.1", "0.9"], SliceThickness="1.2")]))
    frames = []
    for f, k in enumerate(order):
        slope = 0.5 if slopes is None else slopes[f]
        position = [f"{v:.12f}" for v in origin + 1.2 * k * normal]
        frames.append(item(
            PlanePositionSequence=Sequence([item(ImagePositionPatient=position)]),
            FrameContentSequence=Sequence([item(StackID="1", InStackPositionNumber=k + 1,
                                                DimensionIndexValues=[1, k + 1])]),
            PixelValueTransformationSequence=Sequence([item(RescaleSlope=f"{slope:g}", RescaleIntercept="10",
                                                            RescaleType="US")]),
        ))
    uid = generate_uid()
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.DimensionOrganizationSequence = Sequence([item(DimensionOrganizationUID=uid)])
    ds.DimensionIndexSequence = Sequence([
        item(DimensionOrganizationUID=uid, DimensionIndexPointer=0x00209056, FunctionalGroupPointer=0x00209111),
        item(DimensionOrganizationUID=uid, DimensionIndexPointer=0x00209057, FunctionalGroupPointer=0x00209111),
    ])
    return ds


def grafted(name: str, target: Path, order: tuple[int, ...] = tuple(range(10)),
            slopes: list[float] | None = None) -> Path:
    """An emri_small variant with :func:`add_geometry`, saved in its own transfer syntax."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(real_file(PYDICOM_DATA, name))
        add_geometry(ds, order, slopes).save_as(target)
    return target


def emri_truth(order: tuple[int, ...], slopes: list[float] | None = None) -> np.ndarray:
    """Expected [i, j, k] values of a grafted emri file, from the uncompressed original."""
    from pydicom.pixels import pixel_array

    stored = pixel_array(str(real_file(PYDICOM_DATA, "emri_small.dcm"))).astype(np.float64)
    truth = np.empty((stored.shape[2], stored.shape[1], stored.shape[0]))
    for f, k in enumerate(order):
        truth[:, :, k] = stored[f].T * (0.5 if slopes is None else slopes[f]) + 10.0
    return truth


def legacy_enhanced(files: list[Path], target: Path, kind: str = "MR", **options) -> Path:
    """highdicom's Legacy Converted Enhanced ``kind`` image of a classic series, in file-name order."""
    classes = {"MR": highdicom.legacy.LegacyConvertedEnhancedMRImage,
               "CT": highdicom.legacy.LegacyConvertedEnhancedCTImage,
               "PT": highdicom.legacy.LegacyConvertedEnhancedPETImage}
    datasets = [pydicom.dcmread(f) for f in sorted(files, key=lambda p: p.name)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = classes[kind](datasets, series_instance_uid=generate_uid(), series_number=2,
                                  sop_instance_uid=generate_uid(), instance_number=1, **options)
        target.parent.mkdir(parents=True, exist_ok=True)
        converted.save_as(target)
    return target


def edited(path: Path, target: Path, edit) -> Path:
    """A copy of ``path`` changed by ``edit(ds)``."""
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(target)
    return target


def with_copies(ds: Dataset, change) -> None:
    """Double the frames: the copies are the same slices changed by ``change(item, copy)``."""
    originals = list(ds.PerFrameFunctionalGroupsSequence)
    copies = [copy.deepcopy(frame) for frame in originals]
    for original, duplicate in zip(originals, copies, strict=True):
        change(original, duplicate)
    ds.PerFrameFunctionalGroupsSequence = Sequence(originals + copies)
    ds.NumberOfFrames = 2 * len(originals)
    ds.PixelData = ds.PixelData * 2


def assert_one_line_error(excinfo: pytest.ExceptionInfo, where: Path, *words: str) -> str:
    assert isinstance(excinfo.value, ViewerError)
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(where) in message
    for word in words:
        assert word in message, message
    return message


# -- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mr_series(tmp_path_factory) -> tuple[Volume, list[Path]]:
    """The oblique phantom as a shuffled classic MR series with one slope per slice."""
    volume = phantom()
    return volume, write_dicom_series(volume, tmp_path_factory.mktemp("mr") / "classic", shuffle_seed=7)


@pytest.fixture(scope="module")
def mr_enhanced(mr_series, tmp_path_factory) -> Path:
    return legacy_enhanced(mr_series[1], tmp_path_factory.mktemp("mr_enh") / "enhanced.dcm",
                           include_dimension_index=False)


@pytest.fixture(scope="module")
def pet_series(tmp_path_factory) -> tuple[Volume, list[Path]]:
    """SUV 0 … ≈10 with a slightly negative corner, as a shuffled classic PET series (BQML)."""
    volume = phantom(scale=1.0 / 400.0, role="pet")
    data = np.array(volume.data)
    data[0, 0, 0] = -0.11
    volume = Volume.from_array(data, volume.voxel_to_world, role="pet")
    return volume, write_dicom_series(volume, tmp_path_factory.mktemp("pet") / "classic", pet=PET, shuffle_seed=11)


@pytest.fixture(scope="module")
def pet_enhanced(pet_series, tmp_path_factory) -> Path:
    return legacy_enhanced(pet_series[1], tmp_path_factory.mktemp("pet_enh") / "enhanced.dcm", kind="PT",
                           include_dimension_index=False)


# -- real enhanced files -------------------------------------------------------------------------------
def test_enhanced_ct_matches_dcm2niix_and_nibabel(tmp_path):
    """Clunie's Enhanced CT (2 frames stored against slice order, shared rescale −1024)."""
    path = real_file(PYDICOM_DATA, "eCT_Supplemental.dcm")
    volume = load_dicom_series(path)
    assert volume.shape == (512, 512, 2)
    assert volume.meta["modality"] == "CT" and volume.meta["slice_gap_mm"] == pytest.approx(10.0)
    compare(volume, *dcm2niix_image(path, tmp_path), "eCT vs dcm2niix", atol_mm=DCM2NIIX_TOLERANCE_MM)
    compare(volume, *nibabel_image(path), "eCT vs nibabel", atol_mm=NIBABEL_TOLERANCE_MM)
    header = read_header(path)
    frames = frames_of_file(path, path, header)
    # Its RWVM (rCBF, ml/100ml/s) has a unit, so it is the mapping used; it equals the rescale.
    assert "ml/100ml/s" in getattr(frames[0].ds, VALUE_MAPPING_ATTRIBUTE)
    assert (frames[0].slope, frames[0].intercept) == (1.0, -1024.0)
    assert [f.label for f in frames] == ["eCT_Supplemental.dcm frame 1", "eCT_Supplemental.dcm frame 2"]
    assert [f.frame_index for f in frames] == [0, 1]


def test_philips_enhanced_mr_matches_dcm2niix_and_nibabel(tmp_path):
    """nibabel's Philips MPRAGE: 176 oblique sagittal frames (its pixel values are all 0 in the
    anonymised file, so the values comparison is trivial; the geometry is not)."""
    path = ungzipped(real_file(NICOM_DATA, "philips_mprage.dcm.gz"), tmp_path)
    volume = load_dicom_series(path)
    assert volume.shape == (256, 256, 176)
    assert volume.meta["manufacturer"] == "Philips Medical Systems"
    compare(volume, *dcm2niix_image(path, tmp_path / "d"), "philips vs dcm2niix", atol_mm=DCM2NIIX_TOLERANCE_MM)
    compare(volume, *nibabel_image(path), "philips vs nibabel", atol_mm=NIBABEL_TOLERANCE_MM)
    frame = frames_of_file(path, path, read_header(path))[0]
    assert getattr(frame.ds, VALUE_MAPPING_ATTRIBUTE) == "Pixel Value Transformation"
    assert frame.slope == pytest.approx(2.1079365079365)
    assert float(frame.ds.EffectiveEchoTime) == pytest.approx(3.513)  # MREchoSequence, flattened
    assert (frame.ds.AcquisitionDate, frame.ds.AcquisitionTime) == ("20120310", "163520.32")


@pytest.mark.parametrize("name", [*EMRI_NAMES, "emri_small_jpeg_2k_lossless_too_short.dcm"])
def test_shipped_emri_files_are_refused_in_one_line(name):
    """As shipped they have no functional groups (and the last one lacks its end of data)."""
    path = real_file(PYDICOM_DATA, name)
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(path)
    message = assert_one_line_error(excinfo, path)
    assert ("is truncated" if "too_short" in name else "no per-frame geometry") in message


@pytest.mark.parametrize("name", EMRI_NAMES)
def test_every_transfer_syntax_gives_the_same_volume(tmp_path, name):
    """The five encodings of emri_small, with one geometry added: identical volumes, equal to
    the uncompressed frames, to dcm2niix and to nibabel (frames in slice order)."""
    path = grafted(name, tmp_path / name)
    volume = load_dicom_series(path)
    reference = load_dicom_series(grafted("emri_small.dcm", tmp_path / "reference.dcm"))
    np.testing.assert_array_equal(volume.data, reference.data)
    np.testing.assert_array_equal(volume.voxel_to_world, reference.voxel_to_world)
    np.testing.assert_array_equal(volume.data, emri_truth(tuple(range(10))))
    compare(volume, *dcm2niix_image(path, tmp_path / "d"), f"{name} vs dcm2niix", atol_mm=DCM2NIIX_TOLERANCE_MM)
    compare(volume, *nibabel_image(path), f"{name} vs nibabel", atol_mm=NIBABEL_TOLERANCE_MM)


@pytest.mark.parametrize("name", EMRI_NAMES)
def test_frames_stored_out_of_slice_order_with_their_own_slopes(tmp_path, name):
    """Frames shuffled, one slope per frame: placed by position and scaled per frame."""
    slopes = [0.5 + 0.125 * f for f in range(10)]
    volume = load_dicom_series(grafted(name, tmp_path / name, SHUFFLED_ORDER, slopes))
    np.testing.assert_array_equal(volume.data, emri_truth(SHUFFLED_ORDER, slopes))
    in_order = load_dicom_series(grafted("emri_small.dcm", tmp_path / "in_order.dcm"))
    np.testing.assert_allclose(volume.voxel_to_world, in_order.voxel_to_world, atol=AFFINE_TOLERANCE_MM)
    if name in ("emri_small.dcm", "emri_small_big_endian.dcm"):  # dcm2niix reorders native frames only
        compare(volume, *dcm2niix_image(tmp_path / name, tmp_path / "d"), f"shuffled {name} vs dcm2niix",
                atol_mm=DCM2NIIX_TOLERANCE_MM, rtol_value=FLOAT32_RELATIVE)


def test_truncated_compressed_file_is_one_error(tmp_path):
    path = grafted("emri_small_jpeg_2k_lossless.dcm", tmp_path / "full.dcm")
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(cut)
    assert_one_line_error(excinfo, cut)


@pytest.mark.parametrize("name", ["liver.dcm", "liver_expb.dcm"])
def test_segmentation_is_refused(name):
    path = real_file(PYDICOM_DATA, name)
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(path)
    assert_one_line_error(excinfo, path, name, "Segmentation", "not an image")


# -- highdicom conversions of classic series -------------------------------------------------------------
@pytest.mark.parametrize("syntax", [None, "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80"],
                         ids=["explicit-le", "rle", "jpeg-ls"])
@pytest.mark.parametrize("dimension_index", [True, False], ids=["sorted", "file-order"])
def test_legacy_converted_oblique_mr(tmp_path, mr_series, syntax, dimension_index):
    """Enhanced = classic = phantom (one slope per frame), and the classic series = dcm2niix."""
    original, files = mr_series
    path = legacy_enhanced(files, tmp_path / "enhanced.dcm", transfer_syntax_uid=syntax,
                           include_dimension_index=dimension_index)
    volume = load_dicom_series(path)
    classic = load_dicom_series(files[0].parent)
    assert volume.shape == SHAPE
    assert np.abs(volume.voxel_to_world - original.voxel_to_world).max() < AFFINE_TOLERANCE_MM
    error = np.abs(volume.data.astype(np.float64) - original.data).max(axis=(0, 1))
    assert np.all(error <= quantisation_tolerance(np.asarray(original.data)))
    np.testing.assert_array_equal(volume.data, classic.data)
    np.testing.assert_allclose(volume.voxel_to_world, classic.voxel_to_world, atol=1e-9)
    compare(volume, *dcm2niix_image(files[0].parent, tmp_path / "d"), "legacy MR vs dcm2niix (classic)",
            atol_mm=DCM2NIIX_TOLERANCE_MM, rtol_value=FLOAT32_RELATIVE)


def test_legacy_converted_mr_with_one_slope_matches_dcm2niix_of_the_enhanced_file(tmp_path):
    original = phantom(scale=0.37)
    files = write_dicom_series(original, tmp_path / "classic", shuffle_seed=3, per_slice_rescale=False)
    path = legacy_enhanced(files, tmp_path / "enhanced.dcm", include_dimension_index=False)
    volume = load_dicom_series(path)
    compare(volume, *dcm2niix_image(path, tmp_path / "d"), "legacy MR (one slope) vs dcm2niix",
            atol_mm=DCM2NIIX_TOLERANCE_MM, rtol_value=FLOAT32_RELATIVE)


def test_legacy_converted_pet_gives_the_classic_suv(tmp_path, pet_series, pet_enhanced):
    """Legacy Converted Enhanced PET (classic Units/DecayCorrection/CorrectedImage in the
    Unassigned Shared Converted Attributes): the same SUV voxels and affine as the classic
    series; and dcm2niix's Bq/mL of the classic series × an independent SUV factor."""
    original, files = pet_series
    volume = load_dicom_series(pet_enhanced)
    classic = load_dicom_series(files[0].parent)
    assert volume.units == "SUV" and classic.units == "SUV"
    np.testing.assert_array_equal(volume.data, classic.data)
    np.testing.assert_allclose(volume.voxel_to_world, classic.voxel_to_world, atol=1e-9)
    assert np.abs(volume.voxel_to_world - original.voxel_to_world).max() < AFFINE_TOLERANCE_MM
    for key in ("suv_method", "delta_t_s", "dose_bq", "weight_kg", "sul_factor", "scan_time"):
        assert volume.meta[key] == classic.meta[key]
    assert volume.meta["suv_method"] == "BQML, decay START" and volume.meta["delta_t_s"] == 3600.0
    bq_per_ml, affine = dcm2niix_image(files[0].parent, tmp_path / "d")
    suv_factor = PET.weight_kg * 1000.0 / (PET.dose_bq * decay_factor_independent(3600.0, PET.half_life_s))
    compare(volume, bq_per_ml * suv_factor, affine, "legacy PET vs dcm2niix (classic) × SUV factor",
            atol_mm=DCM2NIIX_TOLERANCE_MM, atol_value=1e-6, rtol_value=4 * FLOAT32_RELATIVE)


def as_enhanced_pet(ds: Dataset, decay_reference: str = "20260101140100", units: str | None = "Bq/ml",
                    attenuation: str = "YES") -> None:
    """Turn highdicom's Legacy Converted PET into what a scanner's Enhanced PET holds: no
    Units/DecayCorrection/CorrectedImage, the Enhanced PET Corrections flags and
    DecayCorrectionDateTime, the radiopharmaceutical at the top level and one RWVM per frame
    (slope = the frame's rescale slope) in ``units``."""
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.130"
    unassigned = ds.SharedFunctionalGroupsSequence[0].UnassignedSharedConvertedAttributesSequence[0]
    ds.RadiopharmaceuticalInformationSequence = unassigned.RadiopharmaceuticalInformationSequence
    for keyword in ("Units", "DecayCorrection", "CorrectedImage", "RadiopharmaceuticalInformationSequence"):
        delattr(unassigned, keyword)
    for keyword in ("DecayCorrected", "ScatterCorrected", "DeadTimeCorrected", "RandomsCorrected",
                    "DetectorNormalizationCorrection"):
        setattr(ds, keyword, "YES")
    ds.AttenuationCorrected = attenuation
    ds.DecayCorrectionDateTime = decay_reference
    for frame in ds.PerFrameFunctionalGroupsSequence:
        slope = float(frame.PixelValueTransformationSequence[0].RescaleSlope)
        rwvm = item(RealWorldValueFirstValueMapped=-32768, RealWorldValueLastValueMapped=32767,
                    RealWorldValueSlope=slope, RealWorldValueIntercept=0.0, LUTLabel="PET")
        if units is not None:
            rwvm.MeasurementUnitsCodeSequence = Sequence([item(CodeValue=units, CodingSchemeDesignator="UCUM",
                                                               CodeMeaning=units)])
        frame.RealWorldValueMappingSequence = Sequence([rwvm])


def test_enhanced_pet_decay_started_at_the_scan_gives_the_classic_suv(tmp_path, pet_series, pet_enhanced):
    path = edited(pet_enhanced, tmp_path / "epet.dcm", as_enhanced_pet)
    volume = load_dicom_series(path)
    classic = load_dicom_series(pet_series[1][0].parent)
    np.testing.assert_allclose(volume.data, classic.data, rtol=FLOAT32_RELATIVE, atol=1e-7)
    assert volume.meta["decay_correction"] == "START" and volume.meta["pet_units_stored"] == "BQML"
    frame = frames_of_file(path, path, read_header(path))[0]
    assert "Real World Value Mapping" in getattr(frame.ds, VALUE_MAPPING_ATTRIBUTE)
    assert {"DECY", "ATTN", "SCAT", "DTIM", "RAN", "NORM"} <= set(frame.ds.CorrectedImage)


def test_enhanced_pet_decay_corrected_to_injection_is_admin(tmp_path, pet_series, pet_enhanced):
    """DecayCorrectionDateTime = injection: the same stored values then mean activity at
    injection, so SUV = classic SUV × the decay over the 3600 s (dose not decayed)."""
    path = edited(pet_enhanced, tmp_path / "epet.dcm", lambda ds: as_enhanced_pet(ds, "20260101130100"))
    volume = load_dicom_series(path)
    classic = load_dicom_series(pet_series[1][0].parent)
    assert volume.meta["decay_correction"] == "ADMIN"
    np.testing.assert_allclose(volume.data, classic.data * decay_factor_independent(3600.0, PET.half_life_s),
                               rtol=4 * FLOAT32_RELATIVE, atol=1e-6)


@pytest.mark.parametrize("change, words", [
    ({"decay_reference": "20260101133000"}, ("DecayCorrectionDateTime", "neither", "scan start")),
    ({"units": None}, ("no Units", "Real World Value Mapping", "Bq/ml")),
    ({"units": "{propcounts}"}, ("no Units", "{propcounts}")),
    ({"attenuation": "NO"}, ("CorrectedImage", "lacks ATTN")),
], ids=["other-decay-time", "rwvm-without-units", "unsupported-units", "no-attenuation-correction"])
def test_enhanced_pet_that_qiba_cannot_convert_is_refused(tmp_path, pet_enhanced, change, words):
    path = edited(pet_enhanced, tmp_path / "epet.dcm", lambda ds: as_enhanced_pet(ds, **change))
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(path)
    assert_one_line_error(excinfo, path, "cannot compute SUV", *words)


def test_pet_with_units_ignores_an_rwvm_in_suv(tmp_path, pet_series, pet_enhanced):
    """Siemens adds an RWVM in SUVbw to BQML images: with Units given, the rescale (Bq/mL) is
    used, so SUV is not computed twice."""
    def add_suv_map(ds: Dataset) -> None:
        for frame in ds.PerFrameFunctionalGroupsSequence:
            frame.RealWorldValueMappingSequence = Sequence([item(
                RealWorldValueFirstValueMapped=-32768, RealWorldValueLastValueMapped=32767,
                RealWorldValueSlope=1e-4, RealWorldValueIntercept=0.0,
                MeasurementUnitsCodeSequence=Sequence([item(CodeValue="{SUVbw}g/ml", CodingSchemeDesignator="UCUM",
                                                            CodeMeaning="SUVbw")]))])

    volume = load_dicom_series(edited(pet_enhanced, tmp_path / "suv.dcm", add_suv_map))
    np.testing.assert_array_equal(volume.data, load_dicom_series(pet_series[1][0].parent).data)


# -- value mapping rule --------------------------------------------------------------------------------------
def rwvm_item(slope: float, intercept: float, units: str | None, meaning: str | None = None) -> Dataset:
    rwvm = item(RealWorldValueFirstValueMapped=0, RealWorldValueLastValueMapped=65535, RealWorldValueSlope=slope,
                RealWorldValueIntercept=intercept, LUTLabel="MAP")
    if units is not None:
        rwvm.MeasurementUnitsCodeSequence = Sequence([item(CodeValue=units, CodingSchemeDesignator="UCUM",
                                                           CodeMeaning=meaning or units)])
    return rwvm


@pytest.mark.parametrize("units, meaning, keep_rescale, expected", [
    ("ms", None, True, "rwvm"),            # a real unit: RWVM wins over the rescale
    ("1", "no units", True, "rescale"),    # Philips' display map without unit: the rescale
    (None, None, True, "rescale"),         # no unit at all: the rescale
    ("1", "no units", False, "rwvm"),      # the only mapping there is
], ids=["rwvm-with-unit", "rwvm-no-units", "rwvm-without-code", "rwvm-only"])
def test_which_value_mapping_applies(tmp_path, mr_series, mr_enhanced, units, meaning, keep_rescale, expected):
    def add_map(ds: Dataset) -> None:
        ds.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence = Sequence([rwvm_item(2.0, 5.0, units,
                                                                                                 meaning)])
        if not keep_rescale:
            for frame in ds.PerFrameFunctionalGroupsSequence:
                del frame.PixelValueTransformationSequence

    path = edited(mr_enhanced, tmp_path / "mapped.dcm", add_map)
    frames = frames_of_file(path, path, read_header(path))
    stored = pydicom.dcmread(path).pixel_array[0].T.astype(np.float64)
    source = getattr(frames[0].ds, VALUE_MAPPING_ATTRIBUTE)
    volume = load_dicom_series(path)
    along_normal = [float(f.origin_lps @ f.normal) for f in frames]
    position = sorted(along_normal).index(along_normal[0])  # the slice of the file's first frame
    if expected == "rwvm":
        assert source.startswith("Real World Value Mapping") and (frames[0].slope, frames[0].intercept) == (2.0, 5.0)
        np.testing.assert_allclose(volume.data[:, :, position], stored * 2.0 + 5.0, rtol=FLOAT32_RELATIVE)
        if units == "ms":
            assert frames[0].ds.RescaleType == "ms"
    else:
        assert source == "Pixel Value Transformation"
        classic = load_dicom_series(mr_series[1][0].parent)
        np.testing.assert_array_equal(volume.data, classic.data)


# -- views ------------------------------------------------------------------------------------------------------
def test_frame_views_are_light_and_describe_their_frame(pet_enhanced):
    header = read_header(pet_enhanced)
    frames = frames_of_file(pet_enhanced, pet_enhanced, header)
    assert len(frames) == SHAPE[2]
    assert [f.frame_index for f in frames] == list(range(SHAPE[2]))
    assert frames[4].label == "enhanced.dcm frame 5"
    for frame in frames:
        view = frame.ds
        for absent in ("PixelData", "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
            assert absent not in view
        # shared with the header, not copied
        assert view["PatientWeight"] is header["PatientWeight"]
        assert view["SeriesTime"] is header["SeriesTime"]
        # classic PET tags from the Unassigned Shared Converted Attributes
        assert (view.Units, view.DecayCorrection) == ("BQML", "START")
        assert view.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose == 3.7e8
        # the frame's own values
        assert float(view.RescaleSlope) == pytest.approx(frame.slope, rel=1e-11)
        assert [float(v) for v in view.ImagePositionPatient] == pytest.approx(frame.origin_lps.tolist(), abs=1e-9)
        assert (view.AcquisitionDate, view.AcquisitionTime) == ("20260101", "140100")
    assert len({frame.slope for frame in frames}) == SHAPE[2]  # one slope per frame, from its PVT
    assert frames[0].ds["PatientWeight"] is frames[1].ds["PatientWeight"]


def test_frame_acquisition_times_reach_the_suv_scan_time(tmp_path, pet_enhanced):
    """Per-frame FrameAcquisitionDateTime (with a UTC offset) becomes each view's
    AcquisitionDate/Time; a series time later than the earliest frame makes QIBA use that
    frame's time (here 0.5 s after the classic series time)."""
    def stagger(ds: Dataset) -> None:
        ds.SeriesTime = "140130"
        for f, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
            frame.FrameContentSequence[0].FrameAcquisitionDateTime = f"2026010114{1 + f:02d}00.5+0100"

    path = edited(pet_enhanced, tmp_path / "staggered.dcm", stagger)
    frames = frames_of_file(path, path, read_header(path))
    assert [f.ds.AcquisitionTime for f in frames[:2]] == ["140100.5", "140200.5"]
    volume = load_dicom_series(path)
    assert volume.meta["scan_time"] == "2026-01-01T14:01:00.500000"
    assert volume.meta["delta_t_s"] == pytest.approx(3600.5)


# -- hostile files ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("group, sequence, tag, frame", [
    ("per-frame", "PlanePositionSequence", "ImagePositionPatient", 5),
    ("shared", "PlaneOrientationSequence", "ImageOrientationPatient", 1),
    ("shared", "PixelMeasuresSequence", "PixelSpacing", 1),
])
def test_missing_geometry_is_named_by_tag_and_frame(tmp_path, mr_enhanced, group, sequence, tag, frame):
    def remove(ds: Dataset) -> None:
        holder = (ds.PerFrameFunctionalGroupsSequence[frame - 1] if group == "per-frame"
                  else ds.SharedFunctionalGroupsSequence[0])
        delattr(holder, sequence)

    path = edited(mr_enhanced, tmp_path / "no_geometry.dcm", remove)
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(path)
    assert_one_line_error(excinfo, path, f"no_geometry.dcm frame {frame}: {tag} is missing", sequence)


def test_frame_of_another_orientation_is_refused(tmp_path, mr_enhanced):
    def rotate(ds: Dataset) -> None:
        ds.PerFrameFunctionalGroupsSequence[2].PlaneOrientationSequence = Sequence(
            [item(ImageOrientationPatient=["1", "0", "0", "0", "1", "0"])])

    path = edited(mr_enhanced, tmp_path / "rotated.dcm", rotate)
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(path)
    assert_one_line_error(excinfo, path, "orientation", "rotated.dcm frame 3")


def frame_content(frame: Dataset) -> Dataset:
    if "FrameContentSequence" not in frame:
        frame.FrameContentSequence = Sequence([Dataset()])
    return frame.FrameContentSequence[0]


@pytest.mark.parametrize("change, words", [
    (lambda a, b: (setattr(frame_content(a), "TemporalPositionIndex", 1),
                   setattr(frame_content(b), "TemporalPositionIndex", 2)), "2 temporal positions × 12 slices"),
    (lambda a, b: (setattr(a, "MREchoSequence", Sequence([item(EffectiveEchoTime=5.0)])),
                   setattr(b, "MREchoSequence", Sequence([item(EffectiveEchoTime=10.0)]))),
     "2 echo times (5, 10 ms) × 12 slices"),
    (lambda a, b: (setattr(a, "MRDiffusionSequence", Sequence([item(DiffusionBValue=0.0)])),
                   setattr(b, "MRDiffusionSequence", Sequence([item(DiffusionBValue=1000.0)]))),
     "2 b-values (0, 1000 s/mm²) × 12 slices"),
], ids=["temporal", "echo", "b-value"])
def test_several_volumes_in_one_file_are_named(tmp_path, mr_enhanced, change, words):
    path = edited(mr_enhanced, tmp_path / "4d.dcm", lambda ds: with_copies(ds, change))
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(path)
    assert_one_line_error(excinfo, path, "4d.dcm holds", words, "choose a single volume")


def test_several_stacks_are_named_even_at_different_places(tmp_path, mr_enhanced):
    def two_stacks(ds: Dataset) -> None:
        def shift(a: Dataset, b: Dataset) -> None:
            frame_content(a).StackID = "1"
            frame_content(b).StackID = "2"
            position = b.PlanePositionSequence[0]
            position.ImagePositionPatient = [f"{float(v) + 100.0:.6f}" for v in position.ImagePositionPatient]
        with_copies(ds, shift)

    path = edited(mr_enhanced, tmp_path / "stacks.dcm", two_stacks)
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(path)
    assert_one_line_error(excinfo, path, "holds 2 stacks × 12 slices")


def test_duplicate_frames_nothing_tells_apart(tmp_path, mr_enhanced):
    path = edited(mr_enhanced, tmp_path / "twice.dcm", lambda ds: with_copies(ds, lambda a, b: None))
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(path)
    assert_one_line_error(excinfo, path, "24 frames at only 12 slice positions")


def test_frame_count_must_match_the_per_frame_groups(tmp_path, mr_enhanced):
    path = edited(mr_enhanced, tmp_path / "short.dcm", lambda ds: setattr(ds, "NumberOfFrames", 11))
    with pytest.raises(ViewerError) as excinfo:
        load_dicom_series(path)
    assert_one_line_error(excinfo, path, "PerFrameFunctionalGroupsSequence has 12 items", "NumberOfFrames 11")


def test_series_split_over_two_enhanced_files(tmp_path, mr_series, mr_enhanced):
    """A concatenation (one series in several enhanced files): the frames of both files are
    placed together, each file decoded once."""
    folder = tmp_path / "concatenation"
    folder.mkdir()

    def keep(part: slice):
        def edit(ds: Dataset) -> None:
            frame_bytes = int(ds.Rows) * int(ds.Columns) * 2
            frames = list(ds.PerFrameFunctionalGroupsSequence)[part]
            first = range(len(ds.PerFrameFunctionalGroupsSequence))[part][0]
            ds.PixelData = ds.PixelData[first * frame_bytes:(first + len(frames)) * frame_bytes]
            ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
            ds.NumberOfFrames = len(frames)
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        return edit

    edited(mr_enhanced, folder / "part1.dcm", keep(slice(0, 5)))
    edited(mr_enhanced, folder / "part2.dcm", keep(slice(5, None)))
    volume = load_dicom_series(folder)
    classic = load_dicom_series(mr_series[1][0].parent)
    np.testing.assert_array_equal(volume.data, classic.data)
    np.testing.assert_allclose(volume.voxel_to_world, classic.voxel_to_world, atol=1e-9)


def test_one_frame_enhanced_file(tmp_path):
    """NumberOfFrames 1: pydicom decodes a 2-D array, so the frame has no frame index; the
    slab's depth is its SliceThickness."""
    original = Volume.from_array(np.asarray(phantom().data)[:, :, :1], oblique_affine())
    files = write_dicom_series(original, tmp_path / "one")
    path = legacy_enhanced(files, tmp_path / "one.dcm")
    volume = load_dicom_series(path)
    assert volume.shape == (20, 16, 1)
    assert np.abs(volume.voxel_to_world - original.voxel_to_world).max() < AFFINE_TOLERANCE_MM
    assert frames_of_file(path, path, read_header(path))[0].frame_index is None
