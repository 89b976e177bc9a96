"""Saving regions is one transaction: a process killed (SIGKILL) at any step of a save loses no
edit and leaves no torn or temporary file once the study is reopened (issue 13, PRODUCT.md §5).

Fault injection: a child process edits a study the way the window does (a Scene with a
recovery journal and the study lock) and saves twice; ``viewer.core.io.labels.SAVE_STEP_HOOK``
makes it SIGKILL itself right after one step of one save (every step of
``labels.SAVE_STEPS``, for both saves). The parent then reopens the study as the window does
(``Scene.reconcile`` then ``Scene.recoverable`` / ``Scene.recover``) and checks that the edits
are in the map the manifest points at or offered back — replaying them gives exactly the
painted voxels — and that the manifest parses, points at complete files, and that no
temporary or orphaned file is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.core.study_builders import write_small_study
from viewer.core.errors import ViewerError
from viewer.core.io import labels as labels_io
from viewer.core.io.labels import REGIONS_FOLDER, label_table_path, load_label_map
from viewer.core.io.study import load_study
from viewer.core.io.study_lock import STALE, lock_path_for
from viewer.core.recovery import default_recovery_folder, find_recoverable
from viewer.core.regions import EditableLabels, LabelEntry
from viewer.core.scene import Scene

ROOT = Path(__file__).resolve().parents[2]
#: Seconds a child may take to edit, save and be killed.
CHILD_TIMEOUT_S = 120
#: The label the first batch adds and strokes with.
DRAWN = 3
#: (edits, net undone) of each batch, as the recovery prompt must count them.
BATCH_COUNTS = {1: (3, 0), 2: (4, 1)}

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def _box(corner: tuple[int, int, int], size: int = 4) -> tuple[slice, slice, slice]:
    return tuple(slice(c, c + size) for c in corner)  # type: ignore[return-value]


def _stroke(editable: EditableLabels, corners: list[tuple[int, int, int]], label: int, name: str) -> None:
    """A live brush stroke: one paint per mouse move, merged into one undo step on release."""
    for corner in corners:
        editable.paint_mask(name, _box(corner), np.ones((4, 4, 4), bool), label)
    editable.squash(len(corners), f"{name} stroke")


def paint_batch(editable: EditableLabels, batch: int) -> None:
    """The edits made before save ``batch`` (run identically by the child and in-process)."""
    if batch == 1:  # add a region, two strokes: 3 edits
        editable.set_table("add 'drawn'", editable.table.with_entry(LabelEntry(DRAWN, "drawn", (1, 200, 3))))
        _stroke(editable, [(4, 4, 4), (6, 5, 4), (8, 6, 4)], DRAWN, "brush")
        _stroke(editable, [(40, 40, 30), (42, 41, 30)], 1, "brush")
    else:  # three strokes (one undone), a rename: 4 edits, 1 undone
        _stroke(editable, [(20, 10, 10), (22, 11, 10), (24, 12, 10)], DRAWN, "brush")
        _stroke(editable, [(6, 5, 4), (8, 6, 4)], 0, "eraser")
        editable.undo()
        _stroke(editable, [(10, 50, 20), (12, 51, 20)], 2, "brush")
        editable.rename(DRAWN, "drawn twice")


CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    from pathlib import Path
    import numpy as np
    from tests.core.test_save_transaction import paint_batch
    from viewer.core.io import labels
    from viewer.core.io.study import load_study
    from viewer.core.recovery import default_recovery_folder
    from viewer.core.scene import Scene

    manifest, kill_save, kill_step, out = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])

    def kill_at(step):
        if step == kill_step:
            os.kill(os.getpid(), signal.SIGKILL)

    scene = Scene(load_study(manifest), recovery_folder=default_recovery_folder(manifest.parent), editing_lock=True)
    for save in (1, 2):
        editable = scene.editable()
        paint_batch(editable, save)
        np.save(out / f"expected-{save}.npy", editable.data)
        (out / f"names-{save}.json").write_text(json.dumps(editable.table.names))
        if save == kill_save:
            labels.SAVE_STEP_HOOK = kill_at
        scene.save_regions()
    print("not killed", flush=True)
    """
)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The small study, written once and copied for each kill point."""
    root = tmp_path_factory.mktemp("template") / "study"
    write_small_study(root)
    return root


def _run_child(study: Path, kill_save: int, kill_step: str, out: Path) -> None:
    script = out / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.run([sys.executable, str(script), str(study / "study.toml"), str(kill_save), kill_step, str(out)],
                           check=False, capture_output=True, text=True, cwd=ROOT, env=env, timeout=CHILD_TIMEOUT_S)
    assert child.returncode == -signal.SIGKILL, f"not killed at {kill_step!r}: {child.stdout}{child.stderr[-3000:]}"


def _reopen(study: Path, killed: bool = True) -> tuple[Scene, list]:
    """Open the study as the window does: reconcile, then the recovery prompt's journals."""
    manifest = study / "study.toml"
    scene = Scene(load_study(manifest), recovery_folder=default_recovery_folder(study), editing_lock=True)
    result = scene.reconcile()
    assert result.locked is None
    if killed:  # the killed child's lock is left behind, provably stale: taken over
        assert result.taken_over is not None and result.taken_over.status == STALE
    return scene, scene.recoverable()


def _saved_map(study: Path) -> tuple[np.ndarray, dict[int, str]]:
    """The map (and names) the manifest points at, read completely (a torn file would fail)."""
    timepoint = load_study(study / "study.toml").timepoint("day 7")
    volume, table = load_label_map(timepoint.images["regions"])
    return np.array(volume.data), table.names


def _assert_study_tidy(study: Path) -> None:
    """The manifest parses and points at existing, complete files; no temporary, orphaned or
    lock file is left."""
    timepoint = load_study(study / "study.toml").timepoint("day 7")
    saved = timepoint.images["regions"]
    assert saved.is_file()
    _saved_map(study)
    assert [p for p in study.rglob(".*.tmp")] == []
    regions = study / REGIONS_FOLDER
    if regions.is_dir():
        expected = {saved.name, label_table_path(saved).name} if saved.parent == regions.resolve() else set()
        assert {p.name for p in regions.iterdir()} == expected
    assert not lock_path_for(study / "study.toml").exists()


KILL_POINTS = [(save, step) for save in (1, 2) for step in labels_io.SAVE_STEPS]


def test_kill_points_cover_every_step_of_both_saves():
    assert len(KILL_POINTS) == 2 * len(labels_io.SAVE_STEPS) == 24


@pytest.mark.parametrize(("kill_save", "kill_step"), KILL_POINTS, ids=[f"save{s}-{step.replace(' ', '-')}" for s, step in KILL_POINTS])
def test_killed_at_each_step_of_a_save_loses_nothing(template, tmp_path, kill_save, kill_step):
    study = tmp_path / "study"
    shutil.copytree(template, study)
    before_save = np.array(load_label_map(study / "regions.nii.gz")[0].data)
    _run_child(study, kill_save, kill_step, tmp_path)
    expected = np.load(tmp_path / f"expected-{kill_save}.npy")
    expected_names = {int(k): v for k, v in json.loads((tmp_path / f"names-{kill_save}.json").read_text()).items()}
    previous = before_save if kill_save == 1 else np.load(tmp_path / "expected-1.npy")

    scene, infos = _reopen(study)
    saved_data, _names = _saved_map(study)
    committed = labels_io.SAVE_STEPS.index(kill_step) >= labels_io.SAVE_STEPS.index("manifest committed")
    if committed:  # the save was done: the edits are in the map, nothing is offered again
        np.testing.assert_array_equal(saved_data, expected)
        assert infos == []
    else:  # not switched yet: the map is the previous one and every edit is offered back
        np.testing.assert_array_equal(saved_data, previous)
        (info,) = infos
        assert (info.n_edits, info.n_undone) == BATCH_COUNTS[kill_save]
        scene.recover(info)
    editable = scene.editable()
    np.testing.assert_array_equal(editable.data, expected)
    assert editable.table.names == expected_names
    scene.close()
    _assert_study_tidy(study)


def test_a_failing_manifest_update_loses_nothing(template, tmp_path):
    """A file the manifest references vanished before saving: the save is refused (naming it),
    nothing new is left behind, the edits stay unsaved and journaled, and come back."""
    study = tmp_path / "study"
    shutil.copytree(template, study)
    manifest = study / "study.toml"
    old_manifest = manifest.read_bytes()
    scene = Scene(load_study(manifest), recovery_folder=default_recovery_folder(study), editing_lock=True)
    editable = scene.editable()
    paint_batch(editable, 1)
    expected = editable.data.copy()
    (study / "f19.nii.gz").rename(tmp_path / "f19.nii.gz")
    with pytest.raises(ViewerError, match="f19.nii.gz"):
        scene.save_regions()
    assert editable.dirty and editable.journal.path.exists()
    assert manifest.read_bytes() == old_manifest
    assert list((study / REGIONS_FOLDER).iterdir()) == [] and list(study.rglob(".*.tmp")) == []
    scene.close()

    (tmp_path / "f19.nii.gz").rename(study / "f19.nii.gz")
    again, infos = _reopen(study, killed=False)
    (info,) = infos
    assert info.summary == "3 edits"
    again.recover(info)
    np.testing.assert_array_equal(again.editable().data, expected)
    saved = again.save_regions()
    assert saved.map_path.parent == study / REGIONS_FOLDER
    again.close()
    np.testing.assert_array_equal(_saved_map(study)[0], expected)
    _assert_study_tidy(study)


def test_recovery_prompt_counts_strokes_not_records(template, tmp_path):
    """4 strokes of several mouse moves each are "4 edits"; an undo is counted apart."""
    study = tmp_path / "study"
    shutil.copytree(template, study)
    scene = Scene(load_study(study / "study.toml"), recovery_folder=default_recovery_folder(study))
    editable = scene.editable()
    for index in range(4):
        _stroke(editable, [(4 + 6 * index, 4, 4), (5 + 6 * index, 5, 4), (6 + 6 * index, 6, 4)], 1, "brush")
    (info,) = find_recoverable(default_recovery_folder(study), include_live=True)
    assert info.n_actions == 4 * 3 + 4  # 12 paints and 4 stroke merges
    assert info.summary == "4 edits"
    editable.undo()
    editable.undo()
    editable.redo()
    (info,) = find_recoverable(default_recovery_folder(study), include_live=True)
    assert (info.n_edits, info.n_undone, info.summary) == (4, 1, "4 edits, 1 undone")
    scene.close()


def test_reconcile_removes_only_what_a_save_left(template, tmp_path):
    """Hidden temporaries and unreferenced maps this viewer saved go; a user's file that merely
    looks like one (no mark), other files and the referenced map stay."""
    study = tmp_path / "study"
    shutil.copytree(template, study)
    scene = Scene(load_study(study / "study.toml"))
    paint_batch(scene.editable(), 1)
    saved = scene.save_regions()
    regions = study / REGIONS_FOLDER
    orphan = regions / labels_io.regions_file_name("day 7", 7)
    shutil.copy(saved.map_path, orphan)
    shutil.copy(saved.table_path, label_table_path(orphan))
    lookalike = regions / labels_io.regions_file_name("day 7", 8)
    shutil.copy(study / "regions.nii.gz", lookalike)  # a NIfTI without the viewer's mark
    notes = regions / "notes.txt"
    notes.write_text("mine")
    temporaries = [regions / ".day-7-bfa5e917.x1y2.tmp", study / ".study.toml.k3j4.tmp", study / ".study.toml.ab12.toml"]
    for path in temporaries:
        path.write_bytes(b"half")
    result = Scene(load_study(study / "study.toml")).reconcile()
    assert sorted(result.files.temporaries) == sorted(temporaries)
    assert sorted(result.files.orphans) == sorted([orphan, label_table_path(orphan)])
    assert {p.name for p in regions.iterdir()} == {saved.map_path.name, saved.table_path.name, lookalike.name, notes.name}
