"""Autosave journal and crash recovery of label-map edits (PRODUCT.md §5)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from viewer.core.errors import ViewerError
from viewer.core.io.labels import load_label_map, save_label_map
from viewer.core.recovery import (
    JournaledLabels,
    RecoveryJournal,
    default_recovery_folder,
    discard,
    find_recoverable,
    placement_changed,
    recover,
)
from viewer.core.io.study import placed
from viewer.core.regions import EditableLabels, LabelEntry, LabelTable
from viewer.core.transforms import rigid
from viewer.core.volume import Volume

ROOT = Path(__file__).resolve().parents[2]
#: A seed whose first 30 actions include brush, erase, undo, redo, rename, lock and delete.
MIXED_SEED = 27
AFFINE = np.array([[0.9, 0, 0, -20.0], [0, 1.1, 0, 10.0], [0, 0, 2.0, 5.0], [0, 0, 0, 1]])
SHAPE = (48, 40, 24)

#: A deterministic random editing session, run by the in-process tests and by the crashing
#: subprocess (which imports it from this module), so both run exactly the same actions.
def random_actions(editable, seed, n_actions):
    """Run n_actions recorded actions (no-ops are not counted); yield after each."""
    rng = np.random.default_rng(seed)
    shape = editable.data.shape
    done = 0
    while done < n_actions:
        roll = rng.random()
        result = None
        if roll < 0.45:  # brush or erase: a ball in a box
            radius = int(rng.integers(2, 6))
            centre = [int(rng.integers(radius, s - radius)) for s in shape]
            box = tuple(slice(c - radius, c + radius + 1) for c in centre)
            grid = np.ogrid[tuple(slice(-radius, radius + 1) for _ in range(3))]
            mask = sum(g * g for g in grid) <= radius * radius
            label = int(rng.choice([0, 1, 2, 3, 4, 5])) if roll > 0.05 else 0
            result = editable.paint_mask("erase" if label == 0 else f"brush {label}", box, mask, label)
        elif roll < 0.60:
            result = editable.undo()
        elif roll < 0.70:
            result = editable.redo()
        elif roll < 0.78:  # rename
            entries = editable.table.entries
            if entries:
                entry = entries[int(rng.integers(len(entries)))]
                result = editable.rename(entry.label, f"{entry.name.split('#')[0]}#{int(rng.integers(1000))}")
        elif roll < 0.85:  # lock / unlock
            entries = editable.table.entries
            if entries:
                entry = entries[int(rng.integers(len(entries)))]
                result = editable.set_table("lock", editable.table.with_entry(replace(entry, locked=not entry.locked)))
        elif roll < 0.92:  # add a label entry
            label = editable.table.next_free_label()
            result = editable.set_table("add", editable.table.with_entry(LabelEntry(label, f"new {label}", (1, 2, label % 256))))
        else:
            present = [int(v) for v in np.unique(editable.data) if v != 0]
            if present:
                result = editable.delete_label(present[int(rng.integers(len(present)))])
        if result is not None:
            done += 1
            yield done


def _base_map(dtype=np.uint8) -> tuple[np.ndarray, LabelTable]:
    data = np.zeros(SHAPE, dtype)
    data[5:15, 5:15, 3:9] = 1
    data[25:35, 20:30, 10:16] = 2
    return data, LabelTable.from_names({1: "core", 2: "penumbra", 3: "reference"})


def _plain(dtype=np.uint8) -> EditableLabels:
    data, table = _base_map(dtype)
    return EditableLabels(Volume.from_array(data, AFFINE, role="regions"), table)


def _journaled(folder: Path, dtype=np.uint8, **journal_options) -> JournaledLabels:
    journal = RecoveryJournal(folder, "demo-001", "day 7", "day7/regions.nii.gz", **journal_options)
    return journal.attach(_plain(dtype))


def _assert_same_state(a: EditableLabels, b: EditableLabels) -> None:
    np.testing.assert_array_equal(a.data, b.data)
    assert a.data.dtype == b.data.dtype
    assert a.table == b.table
    assert a.history() == b.history()
    assert [e.description for e in a._redo] == [e.description for e in b._redo]


def _close(editable: JournaledLabels) -> Path:
    """Simulate the end of a crashed session: the file stays, the lock goes."""
    path = editable.journal.path
    editable.journal.close()
    return path


# -- replay ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
def test_thirty_mixed_actions_replay_to_identical_map_table_and_history(tmp_path, dtype):
    live = _journaled(tmp_path, dtype)
    list(random_actions(live, seed=MIXED_SEED, n_actions=30))
    assert live.journal.n_records == 30
    _close(live)
    descriptions = " ".join(live.history())
    assert "brush" in descriptions and "rename" in descriptions

    (info,) = find_recoverable(tmp_path)
    assert (info.study_id, info.timepoint_label, info.labels_key) == ("demo-001", "day 7", "day7/regions.nii.gz")
    assert info.n_actions == 30 and not info.torn and info.shape == SHAPE

    fresh = _plain(dtype)
    assert recover(info, fresh) == 30
    assert fresh.dirty
    _assert_same_state(fresh, live)
    # the recovered history works like the original: undo everything, redo everything
    while fresh.undo() is not None:
        live.undo()
    _assert_same_state(fresh, live)
    while fresh.redo() is not None:
        live.redo()
    _assert_same_state(fresh, live)


def test_mixed_session_covers_every_kind_of_action(tmp_path):
    live = _journaled(tmp_path)
    log = []
    original = {name: getattr(live, name) for name in ("undo", "redo", "delete_label", "rename", "set_table", "apply_voxels")}
    for name, method in original.items():
        def wrapped(*args, _name=name, _method=method, **kwargs):
            result = _method(*args, **kwargs)
            if result is not None:
                log.append(_name if _name != "apply_voxels" else args[0].split(" ")[0])
            return result
        setattr(live, name, wrapped)
    list(random_actions(live, seed=MIXED_SEED, n_actions=30))
    assert {"undo", "redo", "delete_label", "rename", "set_table", "brush", "erase"} <= set(log)


def test_long_session_with_many_seeds_replays_exactly(tmp_path):
    for seed in range(8):
        folder = tmp_path / str(seed)
        live = _journaled(folder)
        list(random_actions(live, seed=seed, n_actions=120))
        _close(live)
        fresh = _plain()
        recover(find_recoverable(folder)[0], fresh)
        _assert_same_state(fresh, live)


def test_undo_limit_is_respected_in_replay(tmp_path):
    journal = RecoveryJournal(tmp_path, "s", "t", "k")
    data, table = _base_map()
    live = journal.attach(EditableLabels(Volume.from_array(data, AFFINE, role="regions"), table, max_undo=5))
    list(random_actions(live, seed=11, n_actions=60))
    _close(live)
    fresh = EditableLabels(Volume.from_array(_base_map()[0], AFFINE, role="regions"), table, max_undo=5)
    recover(find_recoverable(tmp_path)[0], fresh)
    _assert_same_state(fresh, live)


# -- torn records, fingerprints, changed maps ---------------------------------------------------

def test_torn_last_record_is_ignored_and_complete_records_kept(tmp_path):
    live = _journaled(tmp_path)
    reference = _plain()
    states = []
    for _ in random_actions(live, seed=5, n_actions=12):
        states.append((live.data.copy(), live.table))
    path = _close(live)
    full = path.read_bytes()

    # a crash in the middle of writing the 12th record: cut it anywhere
    size_11 = None
    for cut in (1, 7, 20, 100):
        path.write_bytes(full[:-cut])
        (info,) = find_recoverable(tmp_path)
        assert info.torn and info.n_actions == 11
        fresh = _plain()
        assert recover(info, fresh) == 11
        np.testing.assert_array_equal(fresh.data, states[10][0])
        assert fresh.table == states[10][1]
        size_11 = size_11 or len(full) - cut

    # garbage after complete records (zeros from a power cut, a flipped byte)
    path.write_bytes(full + b"\0" * 4096)
    (info,) = find_recoverable(tmp_path)
    assert info.torn and info.n_actions == 12
    damaged = bytearray(full)
    damaged[-3] ^= 0xFF
    path.write_bytes(bytes(damaged))
    (info,) = find_recoverable(tmp_path)
    assert info.torn and info.n_actions == 11
    assert reference.data.shape == SHAPE


def test_fingerprint_mismatch_is_refused_and_map_untouched(tmp_path):
    live = _journaled(tmp_path)
    list(random_actions(live, seed=1, n_actions=5))
    _close(live)
    (info,) = find_recoverable(tmp_path)

    data, table = _base_map()
    candidates = {
        "shape": EditableLabels(Volume.from_array(np.zeros((48, 40, 25), np.uint8), AFFINE, role="regions"), table),
        "dtype": EditableLabels(Volume.from_array(data.astype(np.int16), AFFINE, role="regions"), table),
        "affine": EditableLabels(Volume.from_array(data.copy(), AFFINE @ np.diag([1, 1, 1.01, 1]), role="regions"), table),
    }
    for what, editable in candidates.items():
        before = editable.data.copy()
        with pytest.raises(ViewerError, match="not replayed") as error:
            recover(info, editable)
        assert str(info.path) in str(error.value), what
        np.testing.assert_array_equal(editable.data, before)
        assert not editable.dirty and not editable.can_undo
    assert info.path.exists()


def test_edits_replay_after_the_timepoint_was_registered_and_say_so(tmp_path):
    """A registration after the crash moves where the study places the map (PRODUCT.md §9)
    but not its voxels: the edits are replayed and the move is reported; a map whose own
    file grid differs is still refused."""
    def on(world_from):
        data, table = _base_map()
        return EditableLabels(placed(Volume.from_array(data, AFFINE, role="regions"), world_from), table)

    before = rigid((3.0, 0.0, -2.0), (4.0, -1.0, 2.0), center=(10.0, 10.0, 10.0))
    journal = RecoveryJournal(tmp_path, "demo-001", "day 7", "day7/regions.nii.gz")
    live = journal.attach(on(before))
    list(random_actions(live, seed=3, n_actions=8))
    expected = live.data.copy()
    _close(live)
    (info,) = find_recoverable(tmp_path)

    same = on(before)
    assert not placement_changed(info, same)
    registered = on(rigid((2.5, 0.4, -1.8), (4.2, -0.7, 2.1), center=(10.0, 10.0, 10.0)))
    assert placement_changed(info, registered)
    assert recover(info, registered) == info.n_actions
    np.testing.assert_array_equal(registered.data, expected)

    data, table = _base_map()
    other_file = EditableLabels(placed(Volume.from_array(data, AFFINE @ np.diag([1, 1, 1.01, 1]), role="regions"),
                                       before), table)
    assert not placement_changed(info, other_file)
    with pytest.raises(ViewerError, match="another voxel-to-world affine"):
        recover(info, other_file)


def test_map_changed_on_disk_is_refused_unless_forced(tmp_path):
    live = _journaled(tmp_path)
    live.paint_mask("brush", (slice(0, 10), slice(0, 10), slice(0, 10)), np.ones((10, 10, 10), bool), 3)
    _close(live)
    (info,) = find_recoverable(tmp_path)
    other = _plain()
    other.labels.data[0:4, 0:4, 0:4] = 5  # another program drew here after the crash
    before = other.data.copy()
    with pytest.raises(ViewerError, match="changed on disk"):
        recover(info, other)
    np.testing.assert_array_equal(other.data, before)
    assert recover(info, other, force=True) == 1
    assert (other.data[0:10, 0:10, 0:10][~np.isin(other.data[0:10, 0:10, 0:10], [1])] == 3).all()


def test_crash_between_save_and_clearing_the_journal_replays_harmlessly(tmp_path):
    folder = tmp_path / "recovery"
    live = _journaled(folder)
    list(random_actions(live, seed=9, n_actions=25))
    path = _close(live)
    save_label_map(EditableLabels(live.labels, live.table), tmp_path / "saved.nii.gz")  # saved, journal kept
    volume, table = load_label_map(tmp_path / "saved.nii.gz")
    fresh = EditableLabels(volume, table)
    assert recover(find_recoverable(folder)[0], fresh) == 25
    _assert_same_state(fresh, live)
    assert path.exists()  # plain EditableLabels: the journal is kept until discard
    discard(find_recoverable(folder)[0])
    assert find_recoverable(folder) == []


# -- lifecycle ---------------------------------------------------------------------------------

def test_no_file_until_first_edit_and_save_clears_the_journal(tmp_path):
    folder = default_recovery_folder(tmp_path)
    live = _journaled(folder)
    assert live.journal.path is None and not folder.exists()
    live.paint_mask("brush", (slice(0, 4),) * 3, np.ones((4, 4, 4), bool), 2)
    first = live.journal.path
    assert first is not None and first.exists() and first.parent == folder
    save_label_map(live, tmp_path / "regions.nii.gz")
    assert not live.dirty and not first.exists() and live.journal.path is None
    assert find_recoverable(folder, include_live=True) == []


def test_undo_and_redo_after_save_are_journaled_with_their_data(tmp_path):
    folder = tmp_path / "rec"
    live = _journaled(folder)
    list(random_actions(live, seed=21, n_actions=20))
    save_label_map(live, tmp_path / "r.nii.gz")
    # after the save: undo edits made before it, redo one, make new edits
    live.undo()
    live.undo()
    live.undo()
    live.redo()
    live.paint_mask("after save", (slice(2, 9),) * 3, np.ones((7, 7, 7), bool), 4)
    live.undo()
    live.undo()
    live.redo()
    _close(live)

    volume, table = load_label_map(tmp_path / "r.nii.gz")
    fresh = EditableLabels(volume, table)
    (info,) = find_recoverable(folder)
    assert recover(info, fresh) == info.n_actions == 8
    assert info.summary == "1 edit, 3 undone"  # one new edit; undo ×5, redo ×2 of edits saved before
    np.testing.assert_array_equal(fresh.data, live.data)
    assert fresh.table == live.table
    assert [e.description for e in fresh._redo] == [e.description for e in live._redo]


def test_live_journal_is_not_offered_and_recovery_rejournals(tmp_path):
    live = _journaled(tmp_path)
    list(random_actions(live, seed=2, n_actions=10))
    assert find_recoverable(tmp_path) == []  # the session holds the lock
    assert len(find_recoverable(tmp_path, include_live=True)) == 1
    old = _close(live)

    (info,) = find_recoverable(tmp_path)
    second = RecoveryJournal(tmp_path, "demo-001", "day 7", "day7/regions.nii.gz").attach(_plain())
    assert recover(info, second) == 10
    assert not old.exists()  # re-journaled in the new session's file, old one deleted
    list(random_actions(second, seed=4, n_actions=5))
    _close(second)  # a second crash
    (info,) = find_recoverable(tmp_path)
    assert info.n_actions == 15
    third = _plain()
    recover(info, third)
    _assert_same_state(third, second)


def test_flush_every_and_timer_flush(tmp_path):
    live = _journaled(tmp_path, flush_every=5)
    for _ in random_actions(live, seed=8, n_actions=3):
        pass
    assert live.journal._unsynced == 3
    live.journal.flush()
    assert live.journal._unsynced == 0


def test_write_failure_keeps_editing_and_reports(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    live = _journaled(blocker / "sub")
    edit = live.paint_mask("brush", (slice(0, 4),) * 3, np.ones((4, 4, 4), bool), 2)
    assert edit is not None and (live.data[0:4, 0:4, 0:4] == 2).all()
    assert live.journal.error and "autosave stopped" in live.journal.error
    live.undo()  # still works, silently not journaled
    assert live.data[0, 0, 0] == 0


def test_journal_size_for_brush_strokes(tmp_path, record_property):
    """100 brush strokes of ~70k voxels (a 41³ box) on a uint8 map: size and time per record."""
    data = np.zeros((256, 256, 160), np.uint8)
    rng = np.random.default_rng(0)
    sizes = {}
    for compress in (True, False):
        folder = tmp_path / str(compress)
        journal = RecoveryJournal(folder, "s", "t", "k", compress=compress)
        live = journal.attach(EditableLabels(Volume.from_array(data.copy(), np.eye(4), role="regions"), LabelTable.from_names({1: "a", 2: "b"})))
        grid = np.ogrid[-20:21, -20:21, -20:21]
        ball = sum(g * g for g in grid) <= 400
        start = time.perf_counter()
        for i in range(100):
            c = [int(rng.integers(25, s - 25)) for s in data.shape]
            box = tuple(slice(x - 20, x + 21) for x in c)
            live.paint_mask("brush", box, ball, 1 + i % 2, respect_locks=False)
        elapsed = time.perf_counter() - start
        sizes[compress] = journal.path.stat().st_size
        voxel_bytes = live.history_nbytes()
        record_property(f"journal_bytes_compress_{compress}", sizes[compress])
        record_property(f"ms_per_stroke_compress_{compress}", 1000 * elapsed / 100)
        _close(live)
    record_property("voxel_bytes_in_history", voxel_bytes)
    # the history compresses its boxes too, so the raw journal is the larger of the two
    raw_box_bytes = 100 * 2 * 60_000  # before + after of boxes of at least 60k voxels
    assert sizes[False] > raw_box_bytes
    assert voxel_bytes < sizes[False]
    assert sizes[True] < sizes[False] / 5


# -- a real crash -------------------------------------------------------------------------------

CRASH_SCRIPT = textwrap.dedent(
    """
    import sys, time, json
    import numpy as np
    from viewer.core.io.labels import load_label_map
    from viewer.core.recovery import RecoveryJournal
    from viewer.core.regions import EditableLabels, LabelEntry

    map_path, folder, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    volume, table = load_label_map(map_path)
    journal = RecoveryJournal(folder, "crash-001", "day 7", map_path)
    labels = journal.attach(EditableLabels(volume, table))
    if mode == "scripted":
        ones = lambda box: np.ones(tuple(s.stop - s.start for s in box), bool)
        A = (slice(2, 10), slice(3, 9), slice(1, 6))
        B = (slice(20, 30), slice(20, 26), slice(4, 12))
        C = (slice(22, 25), slice(0, 40), slice(0, 24))
        D = (slice(40, 46), slice(30, 38), slice(15, 20))
        E = (slice(0, 3), slice(0, 3), slice(0, 3))
        labels.paint_mask("brush A", A, ones(A), 1)
        labels.paint_mask("brush B", B, ones(B), 2)
        labels.paint_mask("erase C", C, ones(C), 0)
        labels.undo()
        labels.paint_mask("brush D", D, ones(D), 3)
        labels.undo()
        labels.redo()
        labels.rename(2, "rim")
        labels.delete_label(1)
        labels.set_table("add", labels.table.with_entry(LabelEntry(4, "new", (9, 8, 7))))
        labels.paint_mask("brush E", E, ones(E), 4)
        print("ready", flush=True)
        time.sleep(120)
    else:
        from tests.core.test_recovery import random_actions
        for done in random_actions(labels, seed=42, n_actions=10**9):
            print(done, flush=True)
    """
)


def _start(tmp_path, mode):
    script = tmp_path / "session.py"
    script.write_text(CRASH_SCRIPT, encoding="utf-8")
    data, table = _base_map()
    base = EditableLabels(Volume.from_array(data, AFFINE, role="regions"), table)
    map_path = save_label_map(base, tmp_path / "regions.nii.gz")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(map_path), str(tmp_path / "rec"), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    return proc, map_path


def _readline(proc, timeout=60.0) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        pytest.fail("the editing subprocess did not report in time: " + proc.stderr.read())
    line = proc.stdout.readline()
    if not line:
        pytest.fail("the editing subprocess died: " + proc.stderr.read())
    return line.strip()


def _kill(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    proc.stdout.close()
    proc.stderr.close()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkilled_session_is_recovered_exactly(tmp_path):
    proc, map_path = _start(tmp_path, "scripted")
    assert _readline(proc) == "ready"
    _kill(proc)

    # expected, computed with plain numpy from the base map
    expected, _ = _base_map()
    expected[2:10, 3:9, 1:6] = 1
    expected[20:30, 20:26, 4:12] = 2
    expected[40:46, 30:38, 15:20] = 3  # erase C was undone; D undone then redone
    expected[expected == 1] = 0  # delete label 1
    expected[0:3, 0:3, 0:3] = 4

    (info,) = find_recoverable(tmp_path / "rec")
    assert info.study_id == "crash-001" and info.labels_key == str(map_path)
    assert info.n_actions == 11 and info.last_description == "brush E"
    assert (info.n_edits, info.n_undone) == (8, 1)  # A B C D, rename, delete, add, E; 2 undos, 1 redo
    volume, table = load_label_map(info.labels_key)
    fresh = EditableLabels(volume, table)
    assert recover(info, fresh) == 11
    np.testing.assert_array_equal(fresh.data, expected)
    assert fresh.table.names == {2: "rim", 3: "reference", 4: "new"}
    assert fresh.table.get(4).color == (9, 8, 7)
    assert fresh.history()[-1] == "brush E" and fresh.dirty
    fresh.undo()
    assert (fresh.data[0:3, 0:3, 0:3] == 0).all()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_while_editing_recovers_exactly_the_completed_actions(tmp_path):
    proc, map_path = _start(tmp_path, "random")
    count = 0
    while count < 200:
        count = int(_readline(proc))
    _kill(proc)

    (info,) = find_recoverable(tmp_path / "rec")
    assert info.n_actions >= count  # every reported action is on disk (maybe a few more)
    volume, table = load_label_map(map_path)
    fresh = EditableLabels(volume, table)
    replayed = recover(info, fresh)

    volume, table = load_label_map(map_path)
    expected = EditableLabels(volume, table)
    list(random_actions(expected, seed=42, n_actions=replayed))
    _assert_same_state(fresh, expected)


def test_numpy_integer_colours_and_attach_with_existing_history(tmp_path):
    editable = _plain()
    editable.paint_mask("before attach", (slice(0, 6),) * 3, np.ones((6, 6, 6), bool), 3)
    live = RecoveryJournal(tmp_path, "s", "t", "k").attach(editable)
    live.set_table("colour", live.table.with_entry(LabelEntry(3, "reference", tuple(np.array([1, 2, 3], np.int64)))))
    live.undo()
    live.undo()  # an edit from before the journal: carried with its data
    assert live.journal.error is None
    _close(live)
    fresh = _plain()
    fresh.paint_mask("before attach", (slice(0, 6),) * 3, np.ones((6, 6, 6), bool), 3)  # the base the journal saw
    assert recover(find_recoverable(tmp_path)[0], fresh) == 3
    np.testing.assert_array_equal(fresh.data, live.data)
    assert fresh.table == live.table
    assert fresh.redo().description == "before attach"


def test_squashed_strokes_replay_with_the_same_undo_steps(tmp_path):
    """A live brush stroke is several edits squashed into one undo step; recovery keeps that."""
    import numpy as np

    from viewer.core.recovery import RecoveryJournal, find_recoverable, recover
    from viewer.core.regions import EditableLabels, LabelTable
    from viewer.core.volume import Volume

    def fresh():
        return EditableLabels(Volume.from_array(np.zeros((20, 20, 20), np.uint8), np.eye(4), role="regions"),
                              LabelTable.from_names({1: "core"}))

    journal = RecoveryJournal(tmp_path / "rec", "s", "day 1", "regions.nii.gz")
    live = journal.attach(fresh())
    for index in range(3):
        mask = np.zeros((20, 20, 20), bool)
        mask[index * 3:index * 3 + 2, 5, 5] = True
        live.paint_mask("segment", (slice(0, 20),) * 3, mask, 1)
    live.squash(3, "brush stroke")
    mask = np.zeros((20, 20, 20), bool)
    mask[15, 15, 15] = True
    live.paint_mask("dot", (slice(0, 20),) * 3, mask, 1)
    live.undo()
    live.undo()  # undoes the whole stroke
    live.redo()
    expected = live.data.copy()
    journal.flush()
    journal._file = None  # simulate the crashed process: its lock is gone with it
    infos = find_recoverable(tmp_path / "rec", include_live=True)
    target = fresh()
    recover(infos[0], target)
    np.testing.assert_array_equal(target.data, expected)
    assert target.history() == ["brush stroke"]
