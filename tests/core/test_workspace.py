"""The study workspace: saved beside the manifest, restored on reopening, never in the way."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import threading

import pytest

from viewer.core.display import DisplayProps
from viewer.core.errors import ViewerError
from viewer.core.io.study import load_study
from viewer.core.measurements import EllipseROI, Ruler, SphereROI
from viewer.core.scene import Scene
from viewer.core.workspace import (
    WORKSPACE_NAME,
    ViewState,
    Workspace,
    apply,
    capture,
    from_json,
    read_workspace,
    to_json,
    workspace_path,
    write_workspace,
)


@pytest.fixture(scope="module")
def manifest(demo_manifest, tmp_path_factory):
    """A private copy of the demo study (the shared one is read-only)."""
    folder = tmp_path_factory.mktemp("workspace") / "study"
    shutil.copytree(demo_manifest.parent, folder)
    return folder / demo_manifest.name


def fresh_scene(manifest) -> Scene:
    return Scene(load_study(manifest))


def state(scene: Scene):
    return (scene.timepoint.label, dict(scene.display), list(scene.order), scene.radiological, scene.cursor.copy())


def assert_same_state(before, after):
    assert after[:4] == before[:4]
    assert list(after[4]) == pytest.approx(list(before[4]), abs=0)


def test_workspace_lives_beside_the_manifest(tmp_path):
    assert workspace_path(tmp_path / "study.toml") == tmp_path / WORKSPACE_NAME


def test_round_trip_restores_timepoint_displays_order_convention_and_cursor(manifest):
    scene = fresh_scene(manifest)
    scene.set_timepoint(2)
    scene.set_display("pet", colormap="hot", levels=(1.5, 7.25), visible_range=(0.5, math.inf), opacity=0.25)
    scene.set_display("fluorine", visible=False)
    scene.set_display("gd", visible_range=(-math.inf, 3.0))
    scene.move_layer("fluorine", -3)
    scene.move_layer("sodium", 2)
    scene.set_radiological(not scene.radiological)
    scene.set_cursor((10.25, -20.5, 30.75))
    scene.measurements.add(Ruler((0, 0, 0), (3, 4, 0)))
    scene.measurements.add(SphereROI((10, -20, 30), 7.5, name="graft"))
    scene.measurements.add(EllipseROI.in_plane(scene.plane("coronal"), (1, 2, 3), (5, 2, 6)))
    views = {"axial": ViewState((1.5, -2.0), 120.0), "sagittal": ViewState((0.0, 4.25), 64.5)}
    saved = capture(scene, layout="2x2", protocol="stroke follow-up", views=views)

    text = to_json(saved)
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} written"))  # strict JSON
    assert json.loads(text)["displays"]["pet"]["visible_range"] == [0.5, None]
    assert write_workspace(manifest, saved) == workspace_path(manifest)
    loaded, problem = read_workspace(manifest)
    assert problem is None and loaded == saved
    assert loaded.views["axial"] == ViewState((1.5, -2.0), 120.0) and loaded.layout == "2x2"

    restored = fresh_scene(manifest)
    assert restored.timepoint.label == "day 1" and restored.order != scene.order  # the test can fail
    assert apply(restored, loaded) == []
    assert restored.timepoint.label == "day 21"
    assert dict(restored.display) == dict(scene.display)
    assert restored.order == scene.order
    assert restored.radiological == scene.radiological
    assert list(restored.cursor) == pytest.approx([10.25, -20.5, 30.75])
    assert [m.name for m in restored.measurements] == ["M1", "graft", "M2"]
    assert list(restored.measurements) == list(scene.measurements)
    assert restored.measurements.get("M1").length_mm == 5.0


def test_unknown_role_timepoint_colormap_and_layer_are_noted_and_change_nothing(manifest):
    scene = fresh_scene(manifest)
    before = state(scene)
    workspace = Workspace(
        timepoint="day 99",
        displays={"spect": DisplayProps(), "pet": scene.display["pet"].with_(colormap="rainbow")},
        order=("spect", "pet"),
    )
    notes = apply(scene, workspace)
    assert len(notes) == 4
    for name in ("day 99", "spect", "rainbow"):
        assert any(name in note for note in notes), name
    assert all("\n" not in note for note in notes)
    assert_same_state(before, state(scene))


def test_an_unknown_colormap_keeps_the_rest_of_the_display(manifest):
    scene = fresh_scene(manifest)
    old = scene.display["gd"]
    notes = apply(scene, Workspace(displays={"gd": old.with_(colormap="viridis", opacity=0.125)}))
    assert len(notes) == 1 and "viridis" in notes[0]
    assert scene.display["gd"] == old.with_(opacity=0.125)


def test_a_display_that_cannot_be_shown_is_skipped(manifest):
    scene = fresh_scene(manifest)
    before = state(scene)
    bad = {"pet": DisplayProps("pet", (5.0, 1.0)), "gd": DisplayProps("green", (0.0, 1.0), opacity=3.0)}
    notes = apply(scene, Workspace(displays=bad, cursor_mm=(math.nan, 0.0, 0.0)))
    assert len(notes) == 3
    assert_same_state(before, state(scene))


def test_roles_missing_from_the_saved_order_keep_their_place(manifest):
    scene = fresh_scene(manifest)
    assert scene.order == ["anatomical", "other", "sodium", "adc", "tmax", "pet", "spio", "gd", "fluorine", "regions"]
    assert apply(scene, Workspace(order=("fluorine", "anatomical", "pet"))) == []
    assert scene.order == ["anatomical", "other", "sodium", "adc", "tmax", "fluorine", "spio", "gd", "pet", "regions"]


def test_a_cursor_outside_the_anatomy_is_clamped_and_noted(manifest):
    scene = fresh_scene(manifest)
    notes = apply(scene, Workspace(cursor_mm=(0.0, 0.0, 10_000.0)))
    assert len(notes) == 1 and "cursor" in notes[0]
    assert scene.cursor[2] == pytest.approx(scene.anatomy.world_bounds()[1][2])


def test_unknown_colormap_names_parse():
    text = to_json(Workspace(displays={"pet": DisplayProps("rainbow", (0.0, 2.0))}))
    assert from_json(text, "x.json").displays["pet"].colormap == "rainbow"


def valid_text() -> str:
    return to_json(Workspace(
        timepoint="day 7", cursor_mm=(1.0, 2.0, 3.0), order=("pet",),
        displays={"pet": DisplayProps("pet", (0.0, 4.0), (1.0, math.inf), 0.5)},
        views={"axial": ViewState((0.0, 0.0), 100.0)},
    ))


def edited(change) -> str:
    data = json.loads(valid_text())
    change(data)
    return json.dumps(data)


HOSTILE = {
    "malformed": ("{\"format\": ", "not valid JSON"),
    "a list": ("[1, 2, 3]", "format marker"),
    "wrong format": (edited(lambda d: d.update(format="something-else")), "format marker"),
    "version 2": (edited(lambda d: d.update(version=2)), "newer viewer"),
    "version as text": (edited(lambda d: d.update(version="1")), "version"),
    "NaN levels": (valid_text().replace('"levels": [\n        0.0,', '"levels": [\n        NaN,'), "levels"),
    "Infinity cursor": (valid_text().replace("1.0,\n    2.0", "Infinity,\n    2.0"), "cursor_mm"),
    "huge number": (valid_text().replace("1.0,\n    2.0", "1e999,\n    2.0"), "cursor_mm"),
    "boolean cursor": (edited(lambda d: d.update(cursor_mm=[True, 0, 0])), "cursor_mm"),
    "opacity 2": (edited(lambda d: d["displays"]["pet"].update(opacity=2)), "opacity"),
    "levels reversed": (edited(lambda d: d["displays"]["pet"].update(levels=[4, 4])), "levels"),
    "display key missing": (edited(lambda d: d["displays"]["pet"].pop("visible")), "keys"),
    "width 0": (edited(lambda d: d["views"]["axial"].update(width_mm=0)), "width_mm"),
    "unknown key": (edited(lambda d: d.update(zoom=3)), "unknown keys"),
    "65 roles": (edited(lambda d: d.update(displays={f"r{i}": d["displays"]["pet"] for i in range(65)})), "64"),
    "long string": (edited(lambda d: d.update(layout="x" * 201)), "200"),
    "duplicate order": (edited(lambda d: d.update(order=["pet", "pet"])), "twice"),
    "negative radius": (edited(lambda d: d.update(measurements=[{"kind": "sphere", "center_mm": [0, 0, 0],
                                                                  "radius_mm": -2}])), "measurement 1"),
    "unknown measurement": (edited(lambda d: d.update(measurements=[{"kind": "protractor"}])), "protractor"),
    "measurements not a list": (edited(lambda d: d.update(measurements={"kind": "ruler"})), "measurements"),
    "deep nesting": ("[" * 100_000 + "]" * 100_000, "nested"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_workspaces_are_refused_in_one_line_naming_the_file(tmp_path, name):
    text, fragment = HOSTILE[name]
    (tmp_path / WORKSPACE_NAME).write_text(text, encoding="utf-8")
    workspace, problem = read_workspace(tmp_path / "study.toml")
    assert workspace is None
    assert WORKSPACE_NAME in problem and fragment in problem and "\n" not in problem
    with pytest.raises(ViewerError, match=WORKSPACE_NAME):
        from_json(text, tmp_path / WORKSPACE_NAME)


def test_the_valid_base_of_the_hostile_cases_reads(tmp_path):
    (tmp_path / WORKSPACE_NAME).write_text(valid_text(), encoding="utf-8")
    workspace, problem = read_workspace(tmp_path / "study.toml")
    assert problem is None and workspace.displays["pet"].visible_range == (1.0, math.inf)


def test_no_workspace_is_no_problem(tmp_path):
    assert read_workspace(tmp_path / "study.toml") == (None, None)


@pytest.mark.parametrize("kind", ["large", "folder", "not utf-8"])
def test_files_that_are_not_workspaces_are_refused(tmp_path, kind):
    path = tmp_path / WORKSPACE_NAME
    if kind == "large":
        path.write_bytes(b" " * (5 * 1024 * 1024))
    elif kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(b"\xff\xfe{}")
    workspace, problem = read_workspace(tmp_path / "study.toml")
    assert workspace is None and WORKSPACE_NAME in problem and "\n" not in problem


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / WORKSPACE_NAME)
    result = []
    reader = threading.Thread(target=lambda: result.append(read_workspace(tmp_path / "study.toml")), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "read_workspace blocked on a FIFO"
    workspace, problem = result[0]
    assert workspace is None and WORKSPACE_NAME in problem and "regular file" in problem

    writer = threading.Thread(target=lambda: result.append(_raises(write_workspace, tmp_path / "study.toml")),
                              daemon=True)
    writer.start()
    writer.join(timeout=10)
    assert not writer.is_alive(), "write_workspace blocked on a FIFO"
    assert isinstance(result[1], ViewerError) and WORKSPACE_NAME in str(result[1])


def _raises(function, manifest):
    try:
        function(manifest, Workspace())
    except ViewerError as exc:
        return exc
    return None


def test_writing_over_a_folder_is_refused(tmp_path):
    (tmp_path / WORKSPACE_NAME).mkdir()
    with pytest.raises(ViewerError, match=WORKSPACE_NAME):
        write_workspace(tmp_path / "study.toml", Workspace())


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_study_folder_writes_nothing(tmp_path):
    folder = tmp_path / "cd"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert write_workspace(folder / "study.toml", Workspace(layout="1x3")) is None
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o755)


def test_a_folder_refusing_writes_returns_none(tmp_path, monkeypatch):
    """The same as the read-only folder, for runs as root (who may write anywhere)."""
    from viewer.core.io import atomic

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    assert write_workspace(tmp_path / "study.toml", Workspace(layout="1x3")) is None
    assert os.listdir(tmp_path) == []


def test_other_write_failures_are_viewer_errors(tmp_path, monkeypatch):
    from viewer.core.io import atomic

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", full)
    with pytest.raises(ViewerError, match=WORKSPACE_NAME):
        write_workspace(tmp_path / "study.toml", Workspace())


def test_a_workspace_is_replaced_whole_and_leaves_no_temporary_files(tmp_path):
    manifest = tmp_path / "study.toml"
    big = Workspace(layout="x" * 200, order=tuple(f"role{i}" for i in range(64)),
                    displays={f"role{i}": DisplayProps() for i in range(64)})
    small = Workspace(layout="1x1", radiological=False)
    assert write_workspace(manifest, big) == tmp_path / WORKSPACE_NAME
    assert write_workspace(manifest, small) == tmp_path / WORKSPACE_NAME
    assert (tmp_path / WORKSPACE_NAME).read_text(encoding="utf-8") == to_json(small)
    assert read_workspace(manifest) == (small, None)
    assert os.listdir(tmp_path) == [WORKSPACE_NAME]
