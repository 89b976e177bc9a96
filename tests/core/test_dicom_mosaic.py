"""Siemens MOSAIC files read as dcm2niix and nibabel read them.

Every file here was written by a Siemens scanner (shipped with nibabel, dicom3tools and
heudiconv). Each is loaded by our reader and compared with two independent references through
the affines (``real_files.assert_same_image``: world coordinates of the corner voxels, then
every voxel's value): dcm2niix's NIfTI conversion, and nibabel's own DICOM wrapper
(``nibabel.nicom.dicomwrappers``; its affine is LPS, converted to RAS here).

Tolerances: MOSAIC pixels are stored integers without RescaleSlope, so values must agree
exactly (``VALUE_ATOL = 0``). Corners agree to ``CORNER_ATOL_MM``: dcm2niix writes its affine
in float32 (~2e-5 mm at these distances); nibabel steps SpacingBetweenSlices along the normal
rounded in ImageOrientationPatient, where we step the protocol's slice centres (up to 3e-4 mm
apart over 48 slices of siemens_dwi_*).

Damaged copies are made by rewriting the CSA image header with :func:`csa2_bytes`, a writer of
the CSA2 format nibabel's reader (:mod:`nibabel.nicom.csareader`) parses.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from tests.core.real_files import (
    DICOM3TOOLS_EXAMPLES,
    HEUDICONV_DATA,
    NICOM_DATA,
    assert_matches_nifti,
    assert_same_image,
    dcm2niix,
    real_file,
    ungzipped,
)
from viewer.core.errors import ViewerError
from viewer.core.io.dicom import load_dicom_series
from viewer.core.io.dicom_mosaic import mosaic_geometry
from viewer.core.io.dicom_scan import read_header

#: World distance (mm) allowed between our corner voxels and a reference's (see docstring).
CORNER_ATOL_MM = 1e-3
#: MOSAIC values are stored integers: equal, not close.
VALUE_ATOL = 0.0
#: The protocol's slice centres and the uniform rule (SpacingBetweenSlices along the normal)
#: place the tiles of these real files within this distance of each other (mm).
SOURCES_AGREE_MM = 1e-3
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
CSA_CREATOR = "SIEMENS CSA HEADER"
MR_CREATOR = "SIEMENS MR HEADER"
B0DWI = "b0dwiForFmap"

# (folder, name, expected shape [i = columns, j = rows, k = slices])
MOSAIC_FILES = [
    (NICOM_DATA, "siemens_dwi_0.dcm.gz", (128, 128, 48)),
    (NICOM_DATA, "siemens_dwi_1000.dcm.gz", (128, 128, 48)),
    (DICOM3TOOLS_EXAMPLES, "0051.dcm", (72, 72, 20)),
    (HEUDICONV_DATA, "axasc35.dcm", (64, 64, 35)),
    (HEUDICONV_DATA, f"{B0DWI}/b0dwi_for_fmap+00001.dcm", (150, 152, 81)),
    (HEUDICONV_DATA, f"{B0DWI}/b0dwi_for_fmap+00002.dcm", (150, 152, 81)),
    (HEUDICONV_DATA, f"{B0DWI}/b0dwi_for_fmap+00003.dcm", (150, 152, 81)),
]
IDS = [case[1].split("/")[-1] for case in MOSAIC_FILES]


def mosaic_file(folder: Path, name: str, tmp_path: Path) -> Path:
    """The real file (unpacked when nibabel ships it gzipped)."""
    return ungzipped(real_file(folder, name), tmp_path)


def nibabel_reference(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(data, RAS affine) of nibabel's MosaicWrapper for ``path``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom.dicomwrappers import wrapper_from_file

        wrapper = wrapper_from_file(str(path))
        assert wrapper.is_mosaic
        return wrapper.get_data(), LPS_TO_RAS @ wrapper.affine


def only_nifti(out: list[Path]) -> Path:
    assert len(out) == 1, [p.name for p in out]
    return out[0]


# -- real files against the references ----------------------------------------------------------
@pytest.mark.parametrize("folder,name,shape", MOSAIC_FILES, ids=IDS)
def test_real_mosaic_matches_dcm2niix(folder, name, shape, tmp_path):
    path = mosaic_file(folder, name, tmp_path)
    volume = load_dicom_series(path)
    assert volume.shape == shape
    nifti = only_nifti(dcm2niix(path, tmp_path / "dcm2niix"))
    assert nib.load(str(nifti)).shape[:3] == shape  # one volume (4-D with one time point at most)
    assert_matches_nifti(volume, nifti, atol_mm=CORNER_ATOL_MM, atol_value=VALUE_ATOL)


@pytest.mark.parametrize("folder,name,shape", MOSAIC_FILES, ids=IDS)
def test_real_mosaic_matches_nibabel(folder, name, shape, tmp_path):
    path = mosaic_file(folder, name, tmp_path)
    volume = load_dicom_series(path)
    data, affine = nibabel_reference(path)
    assert_same_image(np.asarray(volume.data), volume.voxel_to_world, data, affine,
                      atol_mm=CORNER_ATOL_MM, atol_value=VALUE_ATOL)


@pytest.mark.parametrize("folder,name,shape", MOSAIC_FILES, ids=IDS)
def test_protocol_positions_place_the_tiles_and_agree_with_uniform_spacing(folder, name, shape, tmp_path):
    # The protocol's stored slice centres are used (they describe these files), and on these
    # evenly spaced stacks they agree with SpacingBetweenSlices stepped along the normal.
    path = mosaic_file(folder, name, tmp_path)
    geometry = mosaic_geometry(path, path, read_header(path))
    assert geometry.position_source == "protocol"
    gap = float(read_header(path).SpacingBetweenSlices)
    uniform = geometry.origins_lps[0] + np.arange(shape[2])[:, None] * gap * geometry.normal
    assert np.abs(geometry.origins_lps - uniform).max() < SOURCES_AGREE_MM


def test_each_b0dwi_file_is_its_volume_of_the_4d_dcm2niix_conversion(tmp_path):
    # dcm2niix converts the folder (one series, three MOSAIC files) to one 4-D NIfTI; volume t
    # is the file with InstanceNumber t + 1.
    folder = HEUDICONV_DATA / B0DWI
    if not folder.is_dir():
        real_file(HEUDICONV_DATA, B0DWI)
    img = nib.load(str(only_nifti(dcm2niix(folder, tmp_path))))
    assert img.shape == (150, 152, 81, 3)
    files = sorted(folder.glob("*.dcm"), key=lambda p: int(read_header(p).InstanceNumber))
    assert len(files) == 3
    volumes = [load_dicom_series(path) for path in files]
    for t, volume in enumerate(volumes):
        assert_same_image(np.asarray(volume.data), volume.voxel_to_world, img.dataobj[..., t], img.affine,
                          atol_mm=CORNER_ATOL_MM, atol_value=VALUE_ATOL)
    assert not np.array_equal(volumes[0].data, volumes[1].data)  # the pick matters


def test_folder_of_several_mosaic_volumes_is_refused_naming_the_files():
    folder = HEUDICONV_DATA / B0DWI
    if not folder.is_dir():
        real_file(HEUDICONV_DATA, B0DWI)
    with pytest.raises(ViewerError) as caught:
        load_dicom_series(folder)
    message = str(caught.value)
    assert "\n" not in message
    assert "3 files each hold a whole volume" in message and "b0dwi_for_fmap+0000" in message
    assert "same slice positions" in message and "open one of its files" in message


def test_regression_0051_mosaic_is_72x72x20_not_one_360x360_slice(tmp_path):
    # Bug: the ASL mosaic 0051.dcm (20 images of 72×72 tiled in 360×360) loaded as one
    # 360×360×1 slice; it is a 72×72×20 volume with 3 mm pixels and 6 mm between slices.
    volume = load_dicom_series(real_file(DICOM3TOOLS_EXAMPLES, "0051.dcm"))
    assert volume.shape == (72, 72, 20)
    np.testing.assert_allclose(np.linalg.norm(volume.voxel_to_world[:3, :3], axis=0), [3.0, 3.0, 6.0], atol=1e-6)
    assert volume.meta["n_slices"] == 20


@pytest.mark.parametrize("name", ["0.dcm", "1.dcm"])
def test_nibabel_header_samples_whose_pixels_do_not_tile_are_refused(name):
    # nibabel's 0.dcm / 1.dcm carry a real 48-image MOSAIC header over a synthetic 256×256 ramp:
    # 7×7 tiles do not divide 256 pixels. dcm2niix crops them to 36×36 tiles (dropping the
    # last 4 rows and columns) and nibabel cannot reshape them; we refuse.
    path = real_file(NICOM_DATA, name)
    with pytest.raises(ViewerError, match=r"48 images needs 7×7 tiles, which do not divide its 256×256 pixels") \
            as caught:
        load_dicom_series(path)
    assert name in str(caught.value) and "\n" not in str(caught.value)


# -- damaged copies -----------------------------------------------------------------------------
def csa2_bytes(csa: dict) -> bytes:
    """A CSA2 ("SV10") header holding ``csa["tags"]`` as parsed by nibabel's reader."""
    tags = csa["tags"]
    parts = [b"SV10", b"\x04\x03\x02\x01", struct.pack("<2I", len(tags), 77)]
    for name, tag in tags.items():
        values = [(item if isinstance(item, str) else repr(item)).encode("latin-1") + b"\x00" for item in tag["items"]]
        n_items = max(len(values), tag.get("n_items", 0))  # Siemens pads with empty items, as dcm2niix expects
        values += [b""] * (n_items - len(values))
        vm = tag["vm"] if tag["vm"] == 0 else max(tag["vm"], len(tag["items"]))
        parts.append(struct.pack("<64si4s3i", name.encode("latin-1"), vm, tag["vr"].encode("latin-1"),
                                 tag["syngodt"], n_items, tag.get("last3", 77)))
        for data in values:
            parts.append(struct.pack("<4i", len(data), len(data), 77, len(data)))
            parts.append(data + b"\x00" * (-len(data) % 4))
    return b"".join(parts)


def read_csa(ds: pydicom.Dataset) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom import csareader

        return csareader.get_csa_header(ds, "image")


def damaged_copy(tmp_path: Path, *, csa_tags: dict | None = None, drop_csa_tags: tuple[str, ...] = (),
                 csa_raw: bytes | None = None, remove_csa: bool = False, private_count: int | None | str = "keep",
                 name: str = "0051.dcm") -> Path:
    """A copy of 0051.dcm with its CSA image header or private slice count changed."""
    ds = pydicom.dcmread(real_file(DICOM3TOOLS_EXAMPLES, "0051.dcm"))
    block = ds.private_block(0x0029, CSA_CREATOR)
    if remove_csa:
        del ds[block.get_tag(0x10)]
    elif csa_raw is not None:
        block[0x10].value = csa_raw
    elif csa_tags or drop_csa_tags:
        csa = read_csa(ds)
        for key, items in (csa_tags or {}).items():
            csa["tags"][key]["items"] = list(items)
        for key in drop_csa_tags:
            del csa["tags"][key]
        block[0x10].value = csa2_bytes(csa)
    if private_count is None:
        del ds[ds.private_block(0x0019, MR_CREATOR).get_tag(0x0A)]
    elif private_count != "keep":
        ds.get_private_item(0x0019, 0x0A, MR_CREATOR).value = private_count
    folder = tmp_path / "damaged"
    folder.mkdir(exist_ok=True)
    target = folder / name
    ds.save_as(target)
    return target


def refusal(path: Path) -> str:
    with pytest.raises(ViewerError) as caught:
        load_dicom_series(path)
    message = str(caught.value)
    assert "\n" not in message and path.name in message
    return message


def test_rewritten_csa_header_reads_back_the_same(tmp_path):
    # The writer itself: an unchanged round trip gives the original volume.
    original = load_dicom_series(real_file(DICOM3TOOLS_EXAMPLES, "0051.dcm"))
    copy = load_dicom_series(damaged_copy(tmp_path, csa_tags={"NumberOfImagesInMosaic": [20]}))
    np.testing.assert_array_equal(copy.data, original.data)
    np.testing.assert_allclose(copy.voxel_to_world, original.voxel_to_world, atol=1e-9)


def test_400_images_in_a_360x360_mosaic_is_refused(tmp_path):
    # 400 tiles of 18×18 would divide 360×360: only the cross-checks catch the wrong count.
    message = refusal(damaged_copy(tmp_path, csa_tags={"NumberOfImagesInMosaic": [400]}))
    assert "slice counts disagree" in message and "400" in message and "(0019,xx0A) 20" in message


def test_400_images_in_both_counts_is_refused_by_the_slice_times(tmp_path):
    message = refusal(damaged_copy(tmp_path, csa_tags={"NumberOfImagesInMosaic": [400]}, private_count=400))
    assert "slice counts disagree" in message and "20 slice acquisition times" in message


def test_400_images_everywhere_in_the_image_header_is_refused_by_the_protocol(tmp_path):
    times = [float(t) for t in range(400)]
    path = damaged_copy(tmp_path, csa_tags={"NumberOfImagesInMosaic": [400], "MosaicRefAcqTimes": times},
                        private_count=400)
    message = refusal(path)
    assert "slice counts disagree" in message and "protocol has 20 slices" in message


def test_mosaic_without_csa_image_header_is_refused(tmp_path):
    message = refusal(damaged_copy(tmp_path, remove_csa=True))
    assert "MOSAIC" in message and "CSA image header" in message


def test_unreadable_csa_image_header_is_refused(tmp_path):
    message = refusal(damaged_copy(tmp_path, csa_raw=b"SV10\x04\x03\x02\x01" + b"\xff" * 64))
    assert "CSA image header" in message and "cannot be read" in message


def test_csa_header_without_slice_normal_is_refused(tmp_path):
    message = refusal(damaged_copy(tmp_path, drop_csa_tags=("SliceNormalVector",)))
    assert "SliceNormalVector" in message


def test_count_falls_back_to_the_private_tag(tmp_path):
    original = load_dicom_series(real_file(DICOM3TOOLS_EXAMPLES, "0051.dcm"))
    path = damaged_copy(tmp_path, drop_csa_tags=("NumberOfImagesInMosaic",))
    assert read_csa(pydicom.dcmread(path))["tags"].get("NumberOfImagesInMosaic") is None
    volume = load_dicom_series(path)
    np.testing.assert_array_equal(volume.data, original.data)
    np.testing.assert_allclose(volume.voxel_to_world, original.voxel_to_world, atol=1e-9)


def test_csa_count_alone_is_enough(tmp_path):
    original = load_dicom_series(real_file(DICOM3TOOLS_EXAMPLES, "0051.dcm"))
    volume = load_dicom_series(damaged_copy(tmp_path, private_count=None))
    np.testing.assert_array_equal(volume.data, original.data)


def test_no_count_anywhere_is_refused(tmp_path):
    message = refusal(damaged_copy(tmp_path, drop_csa_tags=("NumberOfImagesInMosaic",), private_count=None))
    assert "NumberOfImagesInMosaic" in message


def test_reversed_slice_normal_stacks_the_tiles_the_other_way_like_the_references(tmp_path):
    # Siemens stores tiles along SliceNormalVector; pointing it against row × column (as for
    # reversed, head-to-feet numbering) puts tile 1 at the top. The protocol then lists the
    # slices against the tile order and is not used; the uniform rule places the tiles.
    csa = read_csa(pydicom.dcmread(real_file(DICOM3TOOLS_EXAMPLES, "0051.dcm")))
    flipped = [-float(v) for v in csa["tags"]["SliceNormalVector"]["items"]]
    path = damaged_copy(tmp_path, csa_tags={"SliceNormalVector": flipped})
    geometry = mosaic_geometry(path, path, read_header(path))
    assert geometry.position_source == "uniform"
    np.testing.assert_allclose(geometry.normal, flipped, atol=1e-6)
    volume = load_dicom_series(path)
    data, affine = nibabel_reference(path)
    assert_same_image(np.asarray(volume.data), volume.voxel_to_world, data, affine,
                      atol_mm=CORNER_ATOL_MM, atol_value=VALUE_ATOL)
    assert_matches_nifti(volume, only_nifti(dcm2niix(path, tmp_path / "dcm2niix")),
                         atol_mm=CORNER_ATOL_MM, atol_value=VALUE_ATOL)
    original = load_dicom_series(real_file(DICOM3TOOLS_EXAMPLES, "0051.dcm"))
    np.testing.assert_array_equal(volume.data, original.data[:, :, ::-1])  # same tiles, other order


def test_protocol_moved_against_the_image_header_falls_back_to_the_header(tmp_path):
    # A protocol whose first slice is not where ImagePositionPatient puts the first tile (a
    # moved table, an edited header) does not describe this image: the header wins.
    ds = pydicom.dcmread(real_file(DICOM3TOOLS_EXAMPLES, "0051.dcm"))
    ds.ImagePositionPatient = [float(v) + (10.0 if axis == 2 else 0.0)
                               for axis, v in enumerate(ds.ImagePositionPatient)]
    target = tmp_path / "moved" / "0051.dcm"
    target.parent.mkdir()
    ds.save_as(target)
    geometry = mosaic_geometry(target, target, read_header(target))
    assert geometry.position_source == "uniform"
    data, affine = nibabel_reference(target)
    volume = load_dicom_series(target)
    assert_same_image(np.asarray(volume.data), volume.voxel_to_world, data, affine,
                      atol_mm=CORNER_ATOL_MM, atol_value=VALUE_ATOL)


def test_damaged_file_in_a_folder_is_named(tmp_path):
    # Loading the folder: the message names the folder and the file (any file name).
    path = damaged_copy(tmp_path, csa_tags={"NumberOfImagesInMosaic": [400]}, name="IM0051")
    with pytest.raises(ViewerError) as caught:
        load_dicom_series(path.parent)
    assert str(caught.value).startswith(f"{path.parent}: IM0051:")
