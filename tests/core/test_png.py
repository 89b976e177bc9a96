"""The PNG writer (viewer.core.io.png) read back by two readers that are not this code: Pillow
and ImageMagick. Sizes from one pixel up, rows whose differences wrap modulo 256, and noise."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from viewer.core.io.png import PNG_SIGNATURE, rgb_png_bytes, write_rgb_png


def _pictures() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    wrap = np.zeros((4, 3, 3), np.uint8)
    wrap[0::2] = 255  # 0 - 255 and 255 - 0 wrap in the Up filter
    ramp = np.broadcast_to(np.arange(256, dtype=np.uint8)[:, None, None], (256, 2, 3)).copy()
    return {
        "one pixel": np.array([[[12, 200, 7]]], np.uint8),
        "one row": rng.integers(0, 256, (1, 17, 3), dtype=np.uint8),
        "one column": rng.integers(0, 256, (19, 1, 3), dtype=np.uint8),
        "wrapping rows": wrap,
        "ramp": ramp,
        "noise": rng.integers(0, 256, (131, 97, 3), dtype=np.uint8),
        "strided view": rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)[::2, ::3],
    }


@pytest.mark.parametrize("name", sorted(_pictures()))
def test_pillow_reads_back_every_pixel(name, tmp_path):
    pixels = _pictures()[name]
    path = tmp_path / "p.png"
    write_rgb_png(path, pixels)
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    with Image.open(path) as image:
        image.load()  # decodes every IDAT byte and checks the CRCs
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.size == (pixels.shape[1], pixels.shape[0])
        assert np.array_equal(np.asarray(image), pixels)


@pytest.mark.skipif(shutil.which("convert") is None, reason="ImageMagick is installed by make system-packages")
@pytest.mark.parametrize("name", sorted(_pictures()))
def test_imagemagick_reads_back_every_pixel(name, tmp_path):
    pixels = _pictures()[name]
    path = tmp_path / "p.png"
    write_rgb_png(path, pixels)
    raw = subprocess.run(["convert", str(path), "-depth", "8", "rgb:-"], check=True, capture_output=True).stdout
    assert np.array_equal(np.frombuffer(raw, np.uint8).reshape(pixels.shape), pixels)


@pytest.mark.parametrize("bad", [
    np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
    np.zeros((0, 4, 3), np.uint8), np.zeros((4, 0, 3), np.uint8), [[[1, 2, 3]]],
])
def test_anything_but_rgb_bytes_is_refused_and_nothing_written(bad, tmp_path):
    path = tmp_path / "p.png"
    with pytest.raises(ValueError):
        write_rgb_png(path, bad)
    assert not path.exists()
    with pytest.raises(ValueError):
        rgb_png_bytes(bad)
