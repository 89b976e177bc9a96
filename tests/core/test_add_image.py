"""Adding an image to the timepoint on screen (File ▸ Add image): files written with nibabel,
numbers checked against constants the test put in them, the manifest read back by tomllib."""

from __future__ import annotations

import tomllib

import nibabel as nib
import numpy as np
import pytest

from tests.core.study_builders import write_small_study
from viewer.core.errors import ImageExists, ViewerError
from viewer.core.io.study import load_study
from viewer.core.io.study_lock import StudyChanged
from viewer.core.scene import Scene


@pytest.fixture
def study(tmp_path):
    return write_small_study(tmp_path / "study")


def _image(path, value, shape=(20, 22, 18), spacing=3.0, shift=(0.0, 0.0, 0.0)):
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = [-(n - 1) * spacing / 2 + s for n, s in zip(shape, shift)]
    data = np.full(shape, value, np.float32) if np.isscalar(value) else value
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def test_an_added_pet_replaces_the_old_one_and_the_numbers_follow(study, tmp_path):
    scene = Scene(load_study(study))
    events = []
    scene.events.connect("images", lambda **info: events.append(info))
    pet = _image(tmp_path / "new_pet.nii.gz", 2.5)
    with pytest.raises(ImageExists, match="replace it"):
        scene.add_image(pet, "pet")
    assert scene.volumes["pet"].source != pet
    scene.add_image(pet, "pet", replace=True)
    assert events == [{"timepoint": "day 7", "role": "pet"}]
    assert scene.display["pet"].visible and scene.volumes["pet"].units == "SUV"
    for region in scene.stats().regions:
        assert region.values["suv_mean"] == pytest.approx(2.5)


def test_another_image_with_its_units_is_shown_read_out_and_saved_into_the_manifest(study, tmp_path):
    scene = Scene(load_study(study))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    t2 = _image(outside / "t2map.nii.gz", 85.0)
    scene.add_image(t2, "other", units="ms")
    assert "other" in [layer.volume.role for layer in scene.layers()]
    assert ("other image", "85", "ms") in scene.readout(scene.cursor)

    placed = scene.save_added_images()
    manifest = tomllib.loads(study.read_text())
    (table,) = manifest["timepoint"]
    assert table["other_units"] == "ms"
    assert (study.parent / table["other"]).resolve() == placed["other"]
    assert placed["other"].parent.parent == study.parent.resolve()  # copied into the study folder
    assert np.array_equal(np.asarray(nib.load(placed["other"]).dataobj), np.asarray(nib.load(t2).dataobj))
    assert scene.added_images == {}

    reopened = Scene(load_study(study))
    assert reopened.volumes["other"].units == "ms"
    assert float(np.asarray(reopened.volumes["other"].data).mean()) == 85.0


def test_an_image_inside_the_study_is_not_copied(study):
    scene = Scene(load_study(study))
    inside = _image(study.parent / "extra_other.nii.gz", 1.0)
    before = sorted(p.name for p in study.parent.rglob("*"))
    scene.add_image(inside, "other")
    scene.save_added_images()
    assert tomllib.loads(study.read_text())["timepoint"][0]["other"] == "extra_other.nii.gz"
    assert sorted(p.name for p in study.parent.rglob("*") if not p.name.endswith(".lock")) == before


def test_bad_images_are_refused_in_one_line_and_change_nothing(study, tmp_path):
    scene = Scene(load_study(study))
    roles = sorted(scene.volumes)
    far = _image(tmp_path / "far.nii.gz", 1.0, shift=(0.0, 0.0, 1000.0))
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((10, 10), np.float32), np.eye(4)), flat)
    text = tmp_path / "notes.nii.gz"
    text.write_text("not an image")
    labels = _image(tmp_path / "fractional.nii.gz", 1.5)
    cases = [(far, "other", "outside the anatomy"), (flat, "other", ""), (text, "other", ""),
             (far, "anatomical", "base"), (labels, "regions", "whole numbers"),
             (tmp_path / "missing.nii.gz", "other", "")]
    for path, role, fragment in cases:
        with pytest.raises(ViewerError) as error:
            scene.add_image(path, role, replace=True)
        assert "\n" not in str(error.value) and fragment in str(error.value)
    assert sorted(scene.volumes) == roles and scene.added_images == {}


def test_a_label_map_with_unsaved_edits_is_not_replaced(study, tmp_path):
    scene = Scene(load_study(study))
    editable = scene.editable()
    from viewer.core.edit_tools import brush_stroke

    brush_stroke(editable, [scene.cursor], 3.0, 3, plane=scene.plane("axial"))
    assert editable.dirty
    with pytest.raises(ViewerError, match="save or undo"):
        scene.add_image(_image(tmp_path / "labels.nii.gz", 1.0), "regions", replace=True)


def test_a_manifest_changed_on_disk_is_not_overwritten_and_the_copy_is_removed(study, tmp_path):
    scene = Scene(load_study(study))
    scene.add_image(_image(tmp_path / "t2.nii.gz", 3.0), "other", units="ms")
    study.write_text(study.read_text() + "\n# edited by someone else\n")
    before = study.read_bytes()
    with pytest.raises(StudyChanged):
        scene.save_added_images()
    assert study.read_bytes() == before
    assert not list(study.parent.glob("day_7/t2*"))
    assert "other" in scene.added_images["day 7"]  # still added, can be saved after a reload


def test_nothing_added_nothing_to_save(study):
    with pytest.raises(ViewerError, match="no image was added"):
        Scene(load_study(study)).save_added_images()


def test_a_saved_other_image_renders_and_reports_with_its_units(study, tmp_path, capsys):
    from viewer.cli import main

    scene = Scene(load_study(study))
    scene.add_image(_image(tmp_path / "perf.nii.gz", 42.0), "other", units="mL/100 g/min")
    scene.save_added_images()
    png, pdf = tmp_path / "all.png", tmp_path / "report.pdf"
    assert main(["render", str(study), "-o", str(png), "--protocol", "all"]) == 0
    assert png.stat().st_size > 0
    assert main(["report", str(study), "-o", str(pdf)]) == 0
    from pypdf import PdfReader

    text = "".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert "other image (mL/100 g/min)" in text.replace("\n", " ")
