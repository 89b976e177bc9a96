"""Default levels and the opening focus remembered per image file (viewer.core.io.levels_cache).

The cache must be invisible but for speed: the numbers read back are the numbers computed, a
changed file or an edited region map is computed anew, a damaged or unwritable cache is only
slower, and nothing identifying a study is written into it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from viewer.core.io.levels_cache import (
    LevelsCache,
    default_cache_folder,
    file_identity,
    open_levels_cache,
    values_identity,
)
from viewer.core.io.nifti import load_nifti
from viewer.core.layers import build_layers, default_focus, layer_display
from viewer.core.regions import EditableLabels, LabelTable
from viewer.core.volume import FILE_IDENTITY

ROOT = Path(__file__).resolve().parents[2]


def _write(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def _fluorine_scene(folder: Path, hot: float = 60.0, hot_at=(30, 10, 12)):
    """A ¹⁹F map of Rayleigh noise (σ = 1) with a reference tube of 400 and a 3×3×3 cell cluster
    of ``hot`` centred at ``hot_at`` (the focus), and a region map whose label 4 ("reference") is a
    core inside the tube."""
    rng = np.random.default_rng(5)
    fluorine = rng.rayleigh(1.0, (40, 40, 24)).astype(np.float32)
    fluorine[4:10, 4:10, :] = 400.0  # the tube, the brightest object
    fluorine[tuple(slice(c - 1, c + 2) for c in hot_at)] = hot
    regions = np.zeros((40, 40, 24), np.uint8)
    regions[6:8, 6:8, 10:14] = 4
    f_path = _write(folder / "f19.nii", fluorine)
    r_path = _write(folder / "regions.nii", regions)
    return f_path, r_path


def _volumes(f_path: Path, r_path: Path):
    return {"fluorine": load_nifti(f_path, "fluorine"), "regions": load_nifti(r_path, "regions")}


NAMES = {4: "reference"}


def test_levels_and_focus_read_back_are_the_ones_computed(tmp_path):
    f_path, r_path = _fluorine_scene(tmp_path)
    cache = LevelsCache(tmp_path / "cache")
    volumes = _volumes(f_path, r_path)
    computed = layer_display(volumes, NAMES, volumes["fluorine"])
    focus = default_focus(volumes, NAMES)
    assert computed.levels[1] == pytest.approx(60.0)  # the hot voxel tops the scale, the tube is left out
    np.testing.assert_allclose(focus, (30, 10, 12))
    first = layer_display(volumes, NAMES, volumes["fluorine"], cache)
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    again = _volumes(f_path, r_path)  # a new process would load the files again
    assert layer_display(again, NAMES, again["fluorine"], cache) == first == computed
    assert default_focus(again, NAMES, cache).tolist() == focus.tolist()
    assert default_focus(again, NAMES, cache).tolist() == focus.tolist()  # now read back


def test_a_cached_entry_is_what_the_second_call_uses(tmp_path, monkeypatch):
    """The second call reads the entry: the computation is not called again."""
    import viewer.core.layers as layers

    f_path, r_path = _fluorine_scene(tmp_path)
    cache = LevelsCache(tmp_path / "cache")
    layer_display(_volumes(f_path, r_path), NAMES, load_nifti(f_path, "fluorine"), cache)

    def refuse(*_args, **_kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(layers, "default_display", refuse)
    monkeypatch.setattr(layers, "calibration_mask", refuse)
    volumes = _volumes(f_path, r_path)
    assert layer_display(volumes, NAMES, volumes["fluorine"], cache).levels[1] == pytest.approx(60.0)


def test_a_file_rewritten_with_the_same_size_gets_new_levels(tmp_path):
    f_path, r_path = _fluorine_scene(tmp_path, hot=60.0)
    cache = LevelsCache(tmp_path / "cache")
    volumes = _volumes(f_path, r_path)
    assert layer_display(volumes, NAMES, volumes["fluorine"], cache).levels[1] == pytest.approx(60.0)
    size = f_path.stat().st_size
    stamp = f_path.stat().st_mtime_ns
    _fluorine_scene(tmp_path, hot=90.0, hot_at=(20, 30, 5))  # same sizes, other contents
    os.utime(f_path, ns=(stamp, stamp))  # even with the old modification time: the inode/ctime differ
    assert f_path.stat().st_size == size
    volumes = _volumes(f_path, r_path)
    assert layer_display(volumes, NAMES, volumes["fluorine"], cache).levels[1] == pytest.approx(90.0)
    np.testing.assert_allclose(default_focus(volumes, NAMES, cache), (20, 30, 5))


def test_a_moved_image_gets_a_new_focus(tmp_path):
    """The focus is a world point: an image placed elsewhere (a registration) is computed anew."""
    f_path, r_path = _fluorine_scene(tmp_path)
    cache = LevelsCache(tmp_path / "cache")
    volumes = _volumes(f_path, r_path)
    np.testing.assert_allclose(default_focus(volumes, NAMES, cache), (30, 10, 12))
    shift = np.eye(4)
    shift[:3, 3] = (5.0, -2.0, 1.0)
    from viewer.core.io.study import placed

    moved = {role: placed(volume, shift) for role, volume in _volumes(f_path, r_path).items()}
    np.testing.assert_allclose(default_focus(moved, NAMES, cache), (35, 8, 13))


def test_edited_regions_are_never_cached(tmp_path):
    """After one voxel edit the region map is not the file's: its calibration mask is computed."""
    f_path, r_path = _fluorine_scene(tmp_path)
    cache = LevelsCache(tmp_path / "cache")
    volumes = _volumes(f_path, r_path)
    layer_display(volumes, NAMES, volumes["fluorine"], cache)
    editable = EditableLabels(volumes["regions"], LabelTable.from_names(NAMES))
    assert values_identity(volumes["regions"]) is not None
    box = (slice(0, 40), slice(0, 40), slice(0, 24))
    editable.apply_voxels("clear", box, np.zeros((40, 40, 24), np.uint8))  # no reference region left
    assert FILE_IDENTITY not in volumes["regions"].meta
    display = layer_display(volumes, NAMES, volumes["fluorine"], cache)
    assert display.levels[1] == pytest.approx(400.0)  # the tube is no longer left out


def test_a_damaged_or_foreign_entry_is_recomputed(tmp_path):
    f_path, r_path = _fluorine_scene(tmp_path)
    folder = tmp_path / "cache"
    cache = LevelsCache(folder)
    volumes = _volumes(f_path, r_path)
    expected = layer_display(volumes, NAMES, volumes["fluorine"], cache)
    (entry,) = folder.glob("*.json")
    good = json.loads(entry.read_text())
    for damaged in ("", "{", "[1, 2]", json.dumps({"key": good["key"], "values": [1.0, 2.0]}),
                    json.dumps({"key": good["key"], "values": [1.0, "x", 3.0, 4.0]}),
                    json.dumps({"key": good["key"], "values": [True, 2.0, 3.0, 4.0]}),
                    '{"key": "%s", "values": [NaN, 1, 2, 3]}' % good["key"],
                    json.dumps({"key": "0" * 64, "values": [1.0, 2.0, 3.0, 4.0]}), "\xff\xfe"):
        entry.write_bytes(damaged.encode("latin-1"))
        assert layer_display(volumes, NAMES, volumes["fluorine"], cache) == expected
    assert json.loads(entry.read_text()) == good  # rewritten


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_cache_folder_is_only_slower(tmp_path):
    f_path, r_path = _fluorine_scene(tmp_path)
    folder = tmp_path / "cache"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        volumes = _volumes(f_path, r_path)
        assert layer_display(volumes, NAMES, volumes["fluorine"], LevelsCache(folder)).levels[1] == pytest.approx(60.0)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_a_cache_path_that_is_a_file_is_only_slower(tmp_path):
    f_path, r_path = _fluorine_scene(tmp_path)
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    volumes = _volumes(f_path, r_path)
    assert layer_display(volumes, NAMES, volumes["fluorine"], LevelsCache(blocker / "levels")).levels[1] == pytest.approx(60.0)
    assert blocker.read_text() == "not a folder"


def test_the_cache_is_bounded(tmp_path, monkeypatch):
    import viewer.core.io.levels_cache as levels_cache

    monkeypatch.setattr(levels_cache, "MAX_ENTRIES", 6)
    cache = LevelsCache(tmp_path / "cache")
    for n in range(40):
        cache.put(["entry", n], [float(n)])
        assert len(list((tmp_path / "cache").glob("*.json"))) <= 6
    assert cache.get(["entry", 39]) == [39.0]
    assert list((tmp_path / "cache").glob(".entry-*")) == []  # no temporary file left


def test_volumes_without_a_file_are_computed_every_time(tmp_path):
    from viewer.core.volume import Volume

    volume = Volume.from_array(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.eye(4), role="anatomical")
    cache = LevelsCache(tmp_path / "cache")
    assert values_identity(volume) is None
    layer_display({"anatomical": volume}, {}, volume, cache)
    assert not (tmp_path / "cache").exists()


def test_cache_folder_from_the_environment(tmp_path):
    assert default_cache_folder({"VIEWER_CACHE_DIR": "off"}) is None
    assert open_levels_cache({"VIEWER_CACHE_DIR": " OFF "}) is None
    assert default_cache_folder({"VIEWER_CACHE_DIR": str(tmp_path)}) == tmp_path / "levels"
    assert default_cache_folder({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "cell-therapy-viewer" / "levels"
    assert file_identity(tmp_path / "missing.nii") is None


def test_pet_levels_follow_the_manifest_dose(demo_manifest, tmp_path):
    """A NIfTI PET in Bq/mL is converted with the manifest's dose: another dose, other levels,
    though the file is the same."""
    from viewer.core.io.study import load_timepoint, load_study

    study = load_study(demo_manifest)
    volumes = load_timepoint(study, study.timepoints[0])
    pet = volumes["pet"]
    assert values_identity(pet) is not None
    scaled = type(pet)(pet.data * np.float32(2.0), pet.voxel_to_world, "pet", "SUV", pet.name, pet.source,
                       dict(pet.meta, suv_factor=2.0 * float(pet.meta.get("suv_factor", 1.0))))
    cache = LevelsCache(tmp_path / "cache")
    first = layer_display(volumes, {}, pet, cache)
    second = layer_display({**volumes, "pet": scaled}, {}, scaled, cache)
    assert second.levels[1] == pytest.approx(2.0 * first.levels[1], rel=1e-6)


def _render(study: Path, output: Path, cache: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "viewer", "render", str(study), "--view", "axial", "-o", str(output)],
                          cwd=ROOT, env=dict(os.environ, VIEWER_CACHE_DIR=cache), capture_output=True, text=True,
                          timeout=300)


def test_render_with_the_cache_draws_the_same_pixels_and_writes_no_identifier(demo_manifest, tmp_path):
    """The demo rendered with the cache off, then twice with a fresh cache (computed, then read):
    the same PNG bytes; the cache holds numbers only (no patient name, study id or path)."""
    cache = tmp_path / "cache"
    outputs = []
    for n, where in enumerate(("off", str(cache), str(cache))):
        output = tmp_path / f"view{n}.png"
        result = _render(demo_manifest.parent, output, where)
        assert result.returncode == 0, result.stderr
        outputs.append(output.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    entries = list((cache / "levels").glob("*.json"))
    assert len(entries) >= 3  # the focus and the shown layers' levels at least
    text = "".join(entry.read_text() for entry in entries)
    for identifier in ("Mustermann", "Erika", "DEMO-0001", "demo-001", str(demo_manifest.parent), "study"):
        assert identifier not in text
    for entry in entries:
        assert set(json.loads(entry.read_text())) == {"key", "values"}


def test_build_layers_with_and_without_the_cache_agree_on_the_demo(demo_manifest, tmp_path):
    from viewer.core.io.labels import saved_label_table
    from viewer.core.io.study import load_timepoint, load_study

    study = load_study(demo_manifest)
    for timepoint in study.timepoints:
        table = saved_label_table(timepoint)
        plain = build_layers(load_timepoint(study, timepoint), table)
        cache = LevelsCache(tmp_path / timepoint.label)
        build_layers(load_timepoint(study, timepoint), table, cache=cache)
        cached = build_layers(load_timepoint(study, timepoint), table, cache=cache)
        assert [layer.display for layer in cached] == [layer.display for layer in plain]
