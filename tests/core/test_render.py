"""Fusion of layers on a plane and display defaults (the pixels the window and reports show)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.core.phantoms import MARKER_WORLD, blob_function, centered_affine, rotation, voxelise, world_grid
from viewer.core.display import colormap_lut, default_display, region_color
from viewer.core.regions import LabelTable
from viewer.core.render import Layer, fuse_plane, refine_plane
from viewer.core.spaces import display_plane
from viewer.core.volume import Volume


def _scene():
    anatomy = voxelise(blob_function, (64, 72, 56), centered_affine((64, 72, 56), (1, 1, 1), (0, 0, 0)))
    shape = (30, 30, 24)
    affine = centered_affine(shape, (2, 2, 2), (0, 0, 0), rotate=rotation("z", 12) @ rotation("x", 8))
    hot = np.where(np.linalg.norm(world_grid(shape, affine) - MARKER_WORLD, axis=-1) < 4, 50.0, 0.0)
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, (2, *shape))
    fluorine = Volume.from_array(np.hypot(hot + noise[0], noise[1]).astype(np.float32), affine, role="fluorine")
    return anatomy, fluorine


def test_hot_overlay_colours_the_marker_and_leaves_noise_transparent():
    anatomy, fluorine = _scene()
    layers = [Layer(anatomy, default_display(anatomy)), Layer(fluorine, default_display(fluorine))]
    plane = display_plane(anatomy, "axial", MARKER_WORLD)
    fused = fuse_plane(layers, plane).rgb
    anatomy_only = fuse_plane(layers[:1], plane).rgb
    row, col, _ = np.rint(plane.world_to_pixel(MARKER_WORLD)).astype(int)
    r, g, b = fused[row, col].astype(int)
    assert r > 200 and r >= g >= b and r - b > 20  # warm (hot colormap), not the grey anatomy
    assert not np.array_equal(fused[row, col], anatomy_only[row, col])
    # far from the hotspot the ¹⁹F noise is below the 3.5σ threshold: anatomy shows unchanged
    far = plane.world_to_pixel(np.array([-20.0, -20.0, MARKER_WORLD[2]]))
    fr, fc = np.rint(far[:2]).astype(int)
    np.testing.assert_array_equal(fused[fr, fc], anatomy_only[fr, fc])


def test_hidden_layer_changes_nothing():
    anatomy, fluorine = _scene()
    plane = display_plane(anatomy, "coronal", MARKER_WORLD)
    hidden = Layer(fluorine, default_display(fluorine).with_(visible=False))
    np.testing.assert_array_equal(
        fuse_plane([Layer(anatomy, default_display(anatomy)), hidden], plane).rgb,
        fuse_plane([Layer(anatomy, default_display(anatomy))], plane).rgb,
    )


def test_region_outline_drawn_in_region_colour():
    anatomy, _ = _scene()
    distance = np.linalg.norm(world_grid(anatomy.shape, anatomy.voxel_to_world) - MARKER_WORLD, axis=-1)
    labels = Volume.from_array((distance < 8).astype(np.int32), anatomy.voxel_to_world, role="regions")
    layers = [Layer(anatomy, default_display(anatomy)), Layer(labels, default_display(labels).with_(opacity=1.0), LabelTable.from_names({1: "core"}))]
    plane = display_plane(anatomy, "axial", MARKER_WORLD)
    rgb = fuse_plane(layers, plane).rgb
    outline = np.all(rgb == np.array(region_color(1, "core"), dtype=np.uint8), axis=-1)
    assert outline.sum() > 20
    rows, cols = np.nonzero(outline)
    world = plane.pixel_to_world_points(rows, cols)
    assert np.all(np.abs(np.linalg.norm(world - MARKER_WORLD, axis=-1) - 8) < 1.6)


def test_fluorine_levels_reach_the_single_hottest_voxel():
    """Explicit whole-volume levels: one hot voxel defines the top (no slice auto-levels)."""
    data = np.random.default_rng(3).rayleigh(1.0, (40, 40, 40)).astype(np.float32)
    data[5, 6, 7] = 500.0
    props = default_display(Volume.from_array(data, np.eye(4), role="fluorine"))
    assert props.levels[1] == pytest.approx(500.0)
    assert props.levels[0] == pytest.approx(3.5, rel=0.1)  # 3.5σ with σ = 1
    assert props.visible_range[0] == props.levels[0]


def test_fluorine_levels_can_ignore_the_reference_tube():
    data = np.random.default_rng(3).rayleigh(1.0, (40, 40, 40)).astype(np.float32)
    data[30:34, 30:34, :] = 1000.0  # tube
    data[10, 10, 10] = 40.0  # cells
    tube = np.zeros(data.shape, bool)
    tube[30:34, 30:34, :] = True
    props = default_display(Volume.from_array(data, np.eye(4), role="fluorine"), exclude=tube)
    assert props.levels[1] == pytest.approx(40.0)


def test_colormaps_run_dark_to_bright():
    for name in ("gray", "hot", "pet", "green", "sodium"):
        lut = colormap_lut(name).astype(int)
        assert lut.shape == (256, 4) and lut[0, :3].sum() < lut[-1, :3].sum()
    with pytest.raises(ValueError):
        colormap_lut("rainbow-ish")


def test_refined_plane_covers_the_same_world_extent():
    anatomy, _ = _scene()
    plane = display_plane(anatomy, "sagittal", MARKER_WORLD)
    fine = refine_plane(plane, 0.25)
    def corner(p, r, c):
        return p.pixel_to_world_points(np.array([r]), np.array([c]))[0]
    np.testing.assert_allclose(corner(plane, -0.5, -0.5), corner(fine, -0.5, -0.5), atol=1e-9)
    np.testing.assert_allclose(corner(plane, plane.shape[0] - 0.5, plane.shape[1] - 0.5),
                               corner(fine, fine.shape[0] - 0.5, fine.shape[1] - 0.5), atol=1e-9)
    assert fine.row_step_mm == pytest.approx(fine.col_step_mm, rel=0.05)


@pytest.mark.parametrize("threshold", [-np.inf, 10.0, 40.0])
def test_dense_and_sparse_overlay_blends_give_the_same_bits(monkeypatch, threshold):
    """An overlay shown on most of a plane is blended over the whole image at once, a sparse one
    pixel by pixel: the two ways give the same bytes, whatever share of the plane shows (three
    overlays stacked, so a blend lands on pixels another already blended)."""
    import viewer.core.render as render

    anatomy, fluorine = _scene()
    plane = display_plane(anatomy, "axial", MARKER_WORLD)
    layers = [Layer(anatomy, default_display(anatomy))]
    for opacity, colormap in ((0.85, "hot"), (0.4, "pet"), (0.7, "green")):
        props = default_display(fluorine).with_(visible_range=(threshold, np.inf), opacity=opacity, colormap=colormap,
                                                levels=(0.0, 30.0 * opacity))
        layers.append(Layer(fluorine, props))
    monkeypatch.setattr(render, "DENSE_BLEND_SHARE", 2.0)  # never dense
    sparse = fuse_plane(layers, plane).rgb
    monkeypatch.setattr(render, "DENSE_BLEND_SHARE", 0.0)  # always dense
    dense = fuse_plane(layers, plane).rgb
    np.testing.assert_array_equal(dense, sparse)
    assert not np.array_equal(sparse, fuse_plane(layers[:1], plane).rgb)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.uint32, np.int64])
def test_labels_present_in_a_slice_are_numpys_unique(dtype):
    """The region palette is built per label present (8/16-bit labels counted, wider ones
    sorted): the same labels, in the same order and dtype, as np.unique gives."""
    from viewer.core.render import _distinct_sorted

    rng = np.random.default_rng(2)
    top = np.iinfo(dtype).max if np.dtype(dtype).itemsize <= 2 else 2_000_000_000
    for count in (0, 1, 7, 5000):
        values = rng.integers(1, top, count, endpoint=True).astype(dtype)
        ours = _distinct_sorted(values)
        assert ours.dtype == np.unique(values).dtype
        np.testing.assert_array_equal(ours, np.unique(values))
