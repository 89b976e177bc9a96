"""Display protocols (issue 15, PRODUCT.md §5): the first screen reads as grey anatomy with the
cells on it; protocols choose which layers show, in the scene, `viewer render` and the report."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.cli import main
from viewer.core.display import default_display, shown_mask
from viewer.core.errors import ViewerError
from viewer.core.io.labels import saved_label_table
from viewer.core.io.study import load_study, load_timepoint
from viewer.core.layers import build_layers, default_focus
from viewer.core.protocols import PROTOCOLS, default_protocol, protocol
from viewer.core.render import fuse_plane
from viewer.core.report import ReportOptions, build_report, inputs_from_study
from viewer.core.scene import Scene
from viewer.core.spaces import display_plane
from viewer.core.volume import Volume

OVERLAYS = ("fluorine", "pet", "spio", "gd", "sodium", "adc", "tmax")


def _grey_share(rgb: np.ndarray, anatomy_mask: np.ndarray) -> float:
    """Share of anatomy pixels drawn grey (channels within 12 of each other, not saturated)."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    grey = (np.abs(r - g) < 12) & (np.abs(g - b) < 12) & (r < 250)
    return float(grey[anatomy_mask].mean())


def test_the_demo_opens_on_cell_tracking_grey_anatomy_and_the_hotspot(demo_manifest):
    scene = Scene(load_study(demo_manifest))
    assert scene.protocol == "cell tracking"
    shown = {role for role, props in scene.display.items() if props.visible}
    assert shown == {"anatomical", "fluorine", "regions"} & set(scene.display)
    plane = scene.plane("axial")
    fused = fuse_plane(scene.layers(), plane)
    anatomy = fused.samples[0].values
    brain = anatomy > scene.display["anatomical"].levels[0] + 0.1 * np.ptp(scene.display["anatomical"].levels)
    assert _grey_share(fused.rgb, brain) >= 0.7
    everything = Scene(load_study(demo_manifest))
    everything.set_protocol("all")
    assert _grey_share(fuse_plane(everything.layers(), plane).rgb, brain) < 0.5, "the check can tell a wash"
    # the hotspot (the cursor opens on it) is drawn hot around the crosshair (its centre may be
    # white, the top of the hot scale)
    row, col, _ = np.rint(plane.world_to_pixel(scene.cursor)).astype(int)
    patch = fused.rgb[row - 4:row + 5, col - 4:col + 5].astype(int)
    hot = (patch[..., 0] > 200) & (patch[..., 0] - patch[..., 2] > 100)
    assert hot.sum() >= 3


def test_choosing_a_protocol_changes_visibility_not_levels(demo_manifest):
    scene = Scene(load_study(demo_manifest))
    scene.set_display("gd", levels=(0.001, 0.002))
    events = []
    scene.events.connect("protocol", lambda **info: events.append(info["protocol"]))
    scene.set_protocol("viability")
    assert events == ["viability"] and scene.protocol == "viability"
    assert scene.display["gd"].visible and scene.display["spio"].visible and not scene.display["fluorine"].visible
    assert scene.display["gd"].levels == (0.001, 0.002)
    assert scene.display["anatomical"].visible
    scene.set_timepoint(1)  # a new timepoint keeps the protocol
    assert not scene.display["fluorine"].visible and scene.display["gd"].visible
    with pytest.raises(ViewerError, match="unknown display protocol 'bogus'; expected one of: cell tracking"):
        scene.set_protocol("bogus")
    assert scene.protocol == "viability"


def test_default_protocol_follows_the_images_there_are():
    assert default_protocol(["anatomical", "fluorine", "pet"]).name == "cell tracking"
    assert default_protocol(["anatomical", "gd"]).name == "viability"
    assert default_protocol(["anatomical", "pet", "regions"]).name == "PET"
    assert default_protocol(["anatomical", "adc", "tmax"]).name == "perfusion"
    assert default_protocol(["anatomical"]).name == "all"
    assert protocol("pet").name == "PET"
    assert set(PROTOCOLS) == {"cell tracking", "viability", "PET", "perfusion", "all"}


def test_viewer_render_uses_the_protocol(demo_manifest, tmp_path, capsys):
    import matplotlib.image as mpimg

    pngs = {}
    for name in ("cell tracking", "all"):
        out = tmp_path / f"{name.replace(' ', '_')}.png"
        assert main(["render", str(demo_manifest), "--view", "axial", "--protocol", name, "-o", str(out)]) == 0
        pngs[name] = mpimg.imread(out)
    assert not np.array_equal(pngs["cell tracking"], pngs["all"])
    assert main(["render", str(demo_manifest), "--protocol", "nope", "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown display protocol 'nope'" in err[0]
    assert not (tmp_path / "x.png").exists()


def test_render_default_equals_the_default_protocol(demo_manifest, tmp_path, capsys):
    import matplotlib.image as mpimg

    default, named = tmp_path / "default.png", tmp_path / "named.png"
    assert main(["render", str(demo_manifest), "-o", str(default)]) == 0
    assert main(["render", str(demo_manifest), "--protocol", "cell tracking", "-o", str(named)]) == 0
    assert np.array_equal(mpimg.imread(default), mpimg.imread(named))


def test_report_key_images_use_the_protocol_and_the_displays_on_screen(demo_manifest):
    study = load_study(demo_manifest)
    inputs, models = inputs_from_study(study, "day 7")
    focus = np.array([30.0, 5.0, 30.0])
    pictures = {}
    for name, options in {
        "cell tracking": ReportOptions(focus=focus),
        "PET": ReportOptions(focus=focus, protocol="PET"),
    }.items():
        pictures[name] = build_report(study, inputs, models, options).sections[0].key_images.pixels
    assert not np.array_equal(pictures["cell tracking"], pictures["PET"])
    scene = Scene(study, timepoint=1)
    scene.set_display("fluorine", colormap="green")
    on_screen = ReportOptions(focus=focus, displays=dict(scene.display), protocol=scene.protocol)
    green = build_report(study, inputs, models, on_screen).sections[0].key_images.pixels
    assert not np.array_equal(green, pictures["cell tracking"])


def test_masked_fluorine_zeros_are_never_drawn():
    """A masked reconstruction: 99.9 % exact zeros, Rayleigh noise inside a small mask and one
    hot voxel. The zeros must not be coloured (no dark-red rectangle over the field of view)."""
    rng = np.random.default_rng(0)
    data = np.zeros((60, 60, 60), np.float32)
    data[28:33, 28:33, 28:33] = rng.rayleigh(1.0, (5, 5, 5))  # 125 of 216,000 voxels
    data[30, 30, 30] = 40.0
    volume = Volume.from_array(data, np.eye(4), role="fluorine")
    props = default_display(volume)
    assert props.visible_range[0] > 0
    inside = np.ones((60, 60), bool)
    assert not shown_mask(data[:, :, 10], inside, props).any()
    assert shown_mask(data[:, :, 30], inside, props)[30, 30]
    assert props.levels[1] == pytest.approx(40.0)


def test_build_layers_applies_the_protocol_to_new_displays(demo_manifest):
    study = load_study(demo_manifest)
    timepoint = study.timepoints[0]
    volumes = load_timepoint(study, timepoint)
    table = saved_label_table(timepoint)
    layers = build_layers(volumes, table, protocol=protocol("PET"))
    shown = {layer.volume.role for layer in layers if layer.display.visible}
    assert shown == {"anatomical", "pet", "regions"}
    point = default_focus(volumes, table.names)
    fused = fuse_plane(layers, display_plane(volumes["anatomical"], "axial", point))
    assert set(fused.samples) == {i for i, layer in enumerate(layers) if layer.display.visible}


@pytest.mark.parametrize("name", ["cell tracking", "viability", "all", "long names"])
def test_rendered_view_gives_the_png_to_the_image_and_no_text_overlaps(demo_manifest, name):
    """`viewer render`'s figure (issue 15): the image takes ≥ 60 % of the PNG under the default
    protocol (and never less than a third), and no two texts, colour bars or the legend
    overlap each other."""
    from viewer.core.render import render_figure

    study = load_study(demo_manifest)
    timepoint = study.timepoints[0]
    volumes = load_timepoint(study, timepoint)
    table = saved_label_table(timepoint)
    if name == "long names":
        table = table.renamed(lambda n: f"{n} of the left hemisphere, second visit, reader two")
        name = "cell tracking"
    layers = build_layers(volumes, table, protocol=protocol(name))
    canvas = render_figure(layers, "axial", default_focus(volumes, saved_label_table(timepoint).names))
    width, height = canvas.size
    image = canvas.areas["view"]
    share = image.width * image.height / (width * height)
    assert share >= (0.6 if name == "cell tracking" else 0.33), f"{name}: the image takes {share:.0%}"
    boxes = [t.box for t in canvas.texts if t.text.strip() and t.group in ("title", "legend")]
    bars = [group for group in canvas.areas if group.startswith("bar ")]
    overlays = [layer for layer in layers[1:] if layer.display.visible and layer.volume.role != "regions"]
    assert len(bars) == len(overlays), f"{name}: one colour bar per overlay shown"
    boxes += [canvas.extent(bar) for bar in bars]  # colour bars with ticks and titles
    for i, a in enumerate(boxes):
        assert 0 <= a.x0 and a.x1 <= width + 1 and 0 <= a.y0 and a.y1 <= height + 1, "drawn outside the PNG"
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), f"{name}: overlapping {a} and {b}"
