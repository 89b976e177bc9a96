"""The fast path for uncompressed pixel data (issue 19): read at the deferred element's offset,
equal to pydicom's decoding on pydicom's own test files, and not taken where decoding is more
than reading (compressed, big-endian, bits to mask or sign-extend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from viewer.core.io.dicom import _native_pixels
from viewer.core.io.dicom_frames import frames_of_file
from viewer.core.io.dicom_scan import read_header


def first_frame(name: str):
    path = Path(get_testdata_file(name))
    header = read_header(path)
    return path, frames_of_file(path, path, header)[0]


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_native_files_are_read_as_pydicom_decodes_them(name):
    path, frame = first_frame(name)
    native = _native_pixels(frame)
    assert native is not None
    expected = pydicom.dcmread(path).pixel_array
    assert native.dtype == expected.dtype and np.array_equal(native, expected)


@pytest.mark.parametrize("name", ["MR_small_bigendian.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm"])
def test_other_encodings_are_left_to_pydicom(name):
    _, frame = first_frame(name)
    assert _native_pixels(frame) is None


def test_a_multi_frame_file_is_read_whole(tmp_path):
    """All frames at once, in file order, as pydicom decodes them (an enhanced-style file)."""
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    frames = np.stack([ds.pixel_array + k for k in range(3)]).astype(ds.pixel_array.dtype)
    ds.NumberOfFrames = 3
    ds.PixelData = frames.tobytes()
    path = tmp_path / "three.dcm"
    ds.save_as(path)
    header = read_header(path)
    native = _native_pixels(type("F", (), {"ds": header, "path": path})())
    assert native is not None and np.array_equal(native, pydicom.dcmread(path).pixel_array)
