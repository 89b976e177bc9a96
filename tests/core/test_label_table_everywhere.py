"""One label table per timepoint: a colour or a name chosen while editing is what every view,
legend, number and report shows, and what `viewer render` draws once saved (issue 14).

Pixel checks compare two renderings that differ only in one region's colour: every pixel that
changes must move towards the new colour (blue against red), and there must be many of them —
so the outline, the fill and the legend swatch are all drawn from the table, not from a
default colour per label or name.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace

import numpy as np
from PIL import Image
from reportlab.graphics import renderPDF

from viewer.cli import main
from viewer.core.io.study import load_study
from viewer.core.render import fuse_plane
from viewer.core.report import ReportOptions, build_report, inputs_from_scene
from viewer.core.scene import Scene

BLUE = (0, 0, 255)
RED = (255, 0, 0)
REGION = "injection site"
RENAMED = "graft A"


def _region_centre(scene: Scene, name: str) -> np.ndarray:
    regions = scene.volumes["regions"]
    label = scene.label_table().label_of(name)
    return regions.voxel_to_world_points(np.argwhere(np.asarray(regions.data) == label).mean(axis=0))


def _recolour(scene: Scene, name: str, rgb: tuple[int, int, int]) -> None:
    editable = scene.editable()
    entry = editable.table.get(editable.table.label_of(name))
    editable.set_table("recolour", editable.table.with_entry(replace(entry, color=rgb)))


def _rename(scene: Scene, old: str, new: str) -> None:
    editable = scene.editable()
    editable.rename(editable.table.label_of(old), new)


def _assert_moved_towards_blue(blue: np.ndarray, red: np.ndarray, at_least: int) -> None:
    """Pixels of the blue rendering that differ from the red one are bluer, never redder."""
    blue = blue.astype(int)
    red = red.astype(int)
    changed = np.any(blue != red, axis=-1)
    assert changed.sum() >= at_least, f"only {changed.sum()} pixels follow the region's colour"
    assert np.all(blue[changed][:, 2] >= red[changed][:, 2])
    assert np.all(blue[changed][:, 0] <= red[changed][:, 0])


def test_views_draw_the_colour_of_the_label_table(demo_manifest):
    scene = Scene(load_study(demo_manifest))
    scene.set_cursor(_region_centre(scene, REGION))
    scene.set_display("regions", opacity=1.0)
    label = scene.label_table().label_of(REGION)
    _recolour(scene, REGION, BLUE)
    plane = scene.plane("axial")
    fused = fuse_plane(scene.layers(), plane)
    region = np.asarray(fused.samples[len(scene.layers()) - 1].values) == label
    assert region.sum() > 20
    outline = np.all(fused.rgb == np.array(BLUE, np.uint8), axis=-1)
    assert outline.sum() > 10 and np.all(region[outline]), "the outline is drawn in the table's colour"
    blue = fused.rgb
    _recolour(scene, REGION, RED)
    red = fuse_plane(scene.layers(), plane).rgb
    _assert_moved_towards_blue(blue, red, at_least=int(region.sum()))


def test_renamed_and_recoloured_region_in_numbers_legend_and_key_images(demo_manifest, tmp_path):
    study = load_study(demo_manifest)
    scene = Scene(study)
    options = ReportOptions(focus=_region_centre(scene, REGION))
    _rename(scene, REGION, RENAMED)
    assert scene.region_names()[scene.label_table().label_of(RENAMED)] == RENAMED
    assert scene.stats().region(RENAMED) is not None and scene.stats().region(REGION) is None
    _recolour(scene, RENAMED, BLUE)
    blue = build_report(study, *inputs_from_scene(scene, scene.timepoint.label), options=options)
    _recolour(scene, RENAMED, RED)
    red = build_report(study, *inputs_from_scene(scene, scene.timepoint.label), options=options)
    images = blue.sections[0].key_images
    assert RENAMED in images.texts and REGION not in images.texts
    assert RENAMED in blue.text()
    _assert_moved_towards_blue(images.pixels, red.sections[0].key_images.pixels, at_least=100)
    # the time course draws the region in its table colour too (a vector drawing: as poppler renders it)
    _assert_moved_towards_blue(_rendered(blue.time_course.drawing, tmp_path / "blue"),
                               _rendered(red.time_course.drawing, tmp_path / "red"), at_least=10)


def _rendered(drawing, stem) -> np.ndarray:
    """A reportlab drawing as RGB pixels: written alone as a PDF, rendered by pdftoppm at 100 dpi."""
    renderPDF.drawToFile(drawing, f"{stem}.pdf")
    subprocess.run(["pdftoppm", "-r", "100", "-png", "-singlefile", f"{stem}.pdf", str(stem)], check=True)
    return np.asarray(Image.open(f"{stem}.png").convert("RGB"))


def test_saved_colours_are_drawn_by_viewer_render(demo_manifest, tmp_path, capsys):
    import matplotlib.image as mpimg

    copy = tmp_path / "study"
    shutil.copytree(demo_manifest.parent, copy)
    manifest = copy / "study.toml"
    at = ",".join(f"{v:.1f}" for v in _region_centre(Scene(load_study(manifest)), REGION))
    pngs = {}
    for name, rgb in (("red", RED), ("blue", BLUE)):
        scene = Scene(load_study(manifest))
        _recolour(scene, REGION, rgb)
        scene.save_regions()
        scene.close()
        out = tmp_path / f"{name}.png"
        assert main(["render", str(manifest), "--view", "axial", "--at", at, "-o", str(out)]) == 0
        pngs[name] = (mpimg.imread(out)[..., :3] * 255).round().astype(np.uint8)
    capsys.readouterr()
    _assert_moved_towards_blue(pngs["blue"], pngs["red"], at_least=50)
