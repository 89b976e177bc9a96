"""Window/level presets: CT windows in HU for CT (recognised from a real CT file's Modality
and from its values), MR windows from the image's own tissue."""

from __future__ import annotations

import numpy as np
import pytest

from tests.core.real_files import PYDICOM_TEST_FILES, real_file
from viewer.core.io.dicom import load_dicom_series
from viewer.core.volume import Volume
from viewer.core.window_presets import CT_WINDOWS, anatomy_presets, looks_like_ct


def _volume(data, **meta):
    return Volume.from_array(np.asarray(data, np.float32), np.eye(4), role="anatomical", meta=meta)


def _head(rng, shape=(64, 64, 40)):
    """Air (Rician noise around 8) around a ball of grey (300) and white (500) matter."""
    i, j, k = np.meshgrid(*(np.arange(n) - n / 2 for n in shape), indexing="ij")
    r = np.sqrt(i**2 + j**2 + (k * 1.5) ** 2)
    clean = np.where(r < 14, 500.0, np.where(r < 25, 300.0, 0.0))
    return np.hypot(clean + rng.normal(0, 8, shape), rng.normal(0, 8, shape))


def test_a_real_ct_file_gets_the_hounsfield_windows():
    volume = load_dicom_series(real_file(PYDICOM_TEST_FILES, "CT_small.dcm"))
    assert looks_like_ct(volume)
    presets = {p.name: p for p in anatomy_presets(volume)}
    assert set(presets) == {name for name, _, _ in CT_WINDOWS}
    assert presets["Brain"].levels == (0.0, 80.0)
    assert presets["Bone"].width == 2800.0 and presets["Bone"].center == 600.0


def test_a_ct_without_a_modality_is_recognised_by_its_air():
    rng = np.random.default_rng(1)
    data = np.full((40, 40, 20), -1000.0) + rng.normal(0, 5, (40, 40, 20))
    data[10:30, 10:30, 5:15] = 40.0
    assert looks_like_ct(_volume(data))
    assert not looks_like_ct(_volume(data, modality="MR"))  # the header wins when it says


def test_mr_windows_come_from_the_tissue_not_the_air():
    volume = _volume(_head(np.random.default_rng(2)))
    assert not looks_like_ct(volume)
    presets = {p.name: p for p in anatomy_presets(volume)}
    tissue = presets["Tissue"].levels
    # grey (300) and white (500) matter span the window; air (≈ 10) is below it
    assert 200 < tissue[0] < 300 and 500 <= tissue[1] < 600
    high = presets["High contrast"].levels
    assert tissue[0] < high[0] < high[1] <= tissue[1]
    full = presets["Full range"].levels
    assert full[0] == pytest.approx(float(volume.data.min())) and full[1] == pytest.approx(float(volume.data.max()))


def test_flat_and_empty_images_do_not_break():
    assert [p.name for p in anatomy_presets(_volume(np.full((8, 8, 8), 5.0)))] == ["Full range"]
    assert anatomy_presets(_volume(np.full((8, 8, 8), np.nan))) == []
