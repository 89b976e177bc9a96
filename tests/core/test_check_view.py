"""Check views: tiles alternate the two images at the tile size in mm; a blend weighs them."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.core.check_view import TILE_MM, blend, checkerboard, grey
from viewer.core.display import DisplayProps
from viewer.core.spaces import display_plane
from viewer.core.volume import Volume


def _planes():
    volume = Volume.from_array(np.zeros((60, 50, 10), np.float32), np.diag([0.5, 0.5, 2.0, 1.0]))
    return volume, display_plane(volume, "axial", [10.0, 10.0, 8.0])


def test_tiles_alternate_every_tile_mm():
    _, plane = _planes()
    a = np.ones(plane.shape, np.float32)
    b = np.zeros(plane.shape, np.float32)
    rgb = checkerboard(a, b, plane)
    per_tile = int(TILE_MM / plane.col_step_mm)
    row = rgb[0, :, 0]
    assert (row[:per_tile] == 255).all() and (row[per_tile:2 * per_tile] == 0).all()
    assert rgb[int(TILE_MM / plane.row_step_mm), 0, 0] == 0  # the next row of tiles starts with b
    assert rgb.dtype == np.uint8 and rgb.shape == (*plane.shape, 3)


@pytest.mark.parametrize("weight, expected", [(1.0, 255), (0.0, 51), (0.5, 153)])
def test_blend_weighs_the_two(weight, expected):
    a = np.full((4, 4), 1.0, np.float32)
    b = np.full((4, 4), 0.2, np.float32)
    assert blend(a, b, weight)[0, 0, 0] == expected


def test_grey_windows_with_the_anatomy_levels_and_leaves_outside_black():
    data = np.full((20, 20, 5), 50.0, np.float32)
    volume = Volume.from_array(data, np.eye(4))
    plane = display_plane(volume, "axial", [10.0, 10.0, 2.0])
    values = grey(volume, plane, DisplayProps("gray", (0.0, 100.0)))
    assert values[5, 5] == pytest.approx(127 / 255, abs=1 / 255)
    far = Volume.from_array(data, np.diag([1.0, 1.0, 1.0, 1.0]) + np.array([[0, 0, 0, 500]] * 3 + [[0, 0, 0, 0]]))
    assert grey(far, plane, DisplayProps("gray", (0.0, 100.0))).max() == 0.0
