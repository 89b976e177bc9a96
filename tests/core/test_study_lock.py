"""One writer per study (issue 13): the study lock, files changed on disk, kept permissions and
file names unique per timepoint."""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

from tests.core.study_builders import write_small_study
from viewer.core.io.labels import (
    REGIONS_FOLDER,
    label_table_path,
    load_label_map,
    regions_file_name,
    save_label_map,
)
from viewer.core.io.nifti import save_nifti
from viewer.core.io.study import load_study, write_manifest
from viewer.core.io.study_lock import (
    LIVE,
    STALE,
    UNVERIFIABLE,
    LockHolder,
    StudyChanged,
    StudyLock,
    StudyLocked,
    inspect_lock,
    lock_path_for,
)
from viewer.core.recovery import default_recovery_folder
from viewer.core.scene import Scene

ROOT = Path(__file__).resolve().parents[2]
#: Seconds the other process may take to answer.
CHILD_TIMEOUT_S = 60
BOX_A = (slice(2, 8), slice(2, 8), slice(2, 8))
BOX_B = (slice(30, 36), slice(30, 36), slice(20, 26))


@pytest.fixture
def study(tmp_path) -> Path:
    return write_small_study(tmp_path / "study").parent


def _scene(study: Path, editing_lock: bool = True) -> Scene:
    return Scene(load_study(study / "study.toml"), recovery_folder=default_recovery_folder(study), editing_lock=editing_lock)


def _paint(scene: Scene, box, label: int) -> None:
    scene.editable().paint_mask(f"brush {label}", box, np.ones(tuple(s.stop - s.start for s in box), bool), label)


def _saved_map(study: Path) -> np.ndarray:
    return np.array(load_label_map(load_study(study / "study.toml").timepoint("day 7").images["regions"])[0].data)


# -- two processes --------------------------------------------------------------------------------

OTHER_WINDOW = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np
    from viewer.core.io.study import load_study
    from viewer.core.recovery import default_recovery_folder
    from viewer.core.scene import Scene

    study = Path(sys.argv[1])
    scene = Scene(load_study(study / "study.toml"), recovery_folder=default_recovery_folder(study), editing_lock=True)
    scene.editable().paint_mask("brush 1", (slice(2, 8),) * 3, np.ones((6, 6, 6), bool), 1)
    print("editing", flush=True)
    for line in sys.stdin:
        if line.strip() == "save":
            scene.save_regions()
            print("saved", flush=True)
        elif line.strip() == "quit":
            scene.close()
            print("closed", flush=True)
            break
    """
)


def _readline(child: subprocess.Popen) -> str:
    ready, _, _ = select.select([child.stdout], [], [], CHILD_TIMEOUT_S)
    if not ready:
        child.kill()
        pytest.fail("the other window did not answer: " + child.stderr.read())
    line = child.stdout.readline()
    if not line:
        pytest.fail("the other window died: " + child.stderr.read())
    return line.strip()


def _tell(child: subprocess.Popen, command: str) -> str:
    child.stdin.write(command + "\n")
    child.stdin.flush()
    return _readline(child)


def test_two_processes_on_one_study_the_second_is_told_and_nothing_is_lost(study, tmp_path):
    script = tmp_path / "other_window.py"
    script.write_text(OTHER_WINDOW, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    other = subprocess.Popen([sys.executable, str(script), str(study)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        assert _readline(other) == "editing"
        manifest = (study / "study.toml").read_bytes()

        mine = _scene(study)
        told = []
        mine.events.connect("lock", lambda state, message: told.append((state, message)))
        _paint(mine, BOX_B, 2)  # the edit is made (and journaled), the window is told at once
        ((state, message),) = told
        assert state.status == LIVE and mine.locked_by == state
        for part in ("being edited by", f"on host {socket.gethostname()}", f"(PID {other.pid})", "since", "study.toml"):
            assert part in message
        with pytest.raises(StudyLocked, match=f"PID {other.pid}"):
            mine.save_regions()
        assert (study / "study.toml").read_bytes() == manifest

        assert _tell(other, "save") == "saved"
        with pytest.raises(StudyLocked):  # still editing there: still refused
            mine.save_regions()
        assert _tell(other, "quit") == "closed"
        other.wait(timeout=CHILD_TIMEOUT_S)
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
        for stream in (other.stdin, other.stdout, other.stderr):
            stream.close()

    # the lock is free now, but the other window saved since this one read the study
    with pytest.raises(StudyChanged, match="study.toml: the manifest changed on disk"):
        mine.save_regions()
    theirs = _saved_map(study)
    assert (theirs[BOX_A] == 1).all()
    assert mine.editable().dirty

    # "reload and re-apply my edits": reopened, the journal replays this window's stroke
    # on top of what the other one saved, and both are saved
    mine.close()
    again = _scene(study)
    assert again.reconcile().locked is None
    (info,) = again.recoverable()
    assert info.summary == "1 edit"
    again.recover(info)
    again.save_regions()
    again.close()
    both = _saved_map(study)
    assert (both[BOX_A] == 1).all() and (both[BOX_B] == 2).all()
    expected = theirs.copy()
    expected[BOX_B] = 2
    np.testing.assert_array_equal(both, expected)
    assert not lock_path_for(study / "study.toml").exists()


def test_second_window_of_the_same_process_is_told(study):
    first, second = _scene(study), _scene(study)
    _paint(first, BOX_A, 1)
    told = []
    second.events.connect("lock", lambda state, message: told.append(message))
    _paint(second, BOX_B, 2)
    assert told and f"(PID {os.getpid()})" in told[0]
    with pytest.raises(StudyLocked):
        second.save_regions()
    first.close()  # closed without saving: the second may save now (nothing changed on disk)
    second.save_regions()
    assert (_saved_map(study)[BOX_B] == 2).all()
    second.close()


# -- stale and unverifiable locks -----------------------------------------------------------------

def _write_lock(study: Path, host: str, pid: int) -> Path:
    path = lock_path_for(study / "study.toml")
    path.write_text(LockHolder(host, pid, "someone", 1_700_000_000.0, "feedc0de").to_json(), encoding="utf-8")
    return path


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_lock_of_a_dead_process_is_taken_over(study):
    pid = _dead_pid()
    _write_lock(study, socket.gethostname(), pid)
    state = inspect_lock(study / "study.toml")
    assert state.status == STALE and f"PID {pid}" in state.reason
    lock = StudyLock.acquire(study / "study.toml")
    assert lock.replaced is not None and lock.replaced.status == STALE and lock.replaced.holder.pid == pid
    document = json.loads(lock.path.read_text(encoding="utf-8"))
    assert (document["pid"], document["host"], document["token"]) == (os.getpid(), socket.gethostname(), lock.holder.token)
    assert document["user"] == lock.holder.user and document["started"] == lock.holder.started
    assert lock.held and inspect_lock(study / "study.toml").status == LIVE
    lock.release()
    assert not lock.path.exists() and not lock.held


def test_lock_left_by_a_live_pid_that_no_longer_holds_it_is_stale(study):
    """A PID that is running but does not hold the lock's flock (PID reused, or a session
    that dropped it) cannot be editing."""
    _write_lock(study, socket.gethostname(), os.getpid())
    assert inspect_lock(study / "study.toml").status == STALE
    scene = _scene(study)
    assert scene.reconcile().locked is None
    _paint(scene, BOX_A, 1)
    scene.save_regions()
    scene.close()


def test_lock_of_another_host_is_refused_unless_the_user_confirms(study):
    _write_lock(study, "imaging-ws-7", 4242)
    with pytest.raises(StudyLocked) as error:
        StudyLock.acquire(study / "study.toml")
    assert error.value.state.status == UNVERIFIABLE
    message = str(error.value)
    assert "someone on host imaging-ws-7 (PID 4242) since" in message and "cannot be checked" in message
    scene = _scene(study)
    assert scene.reconcile().locked.status == UNVERIFIABLE  # opened read-only, nothing touched
    lock = StudyLock.acquire(study / "study.toml", take_over=True)
    assert lock.replaced.status == UNVERIFIABLE and lock.held
    lock.release()


@pytest.mark.parametrize("how", ["replaced", "rewritten in place"])
def test_taken_over_lock_makes_the_save_refuse(study, tmp_path, how):
    scene = _scene(study)
    _paint(scene, BOX_A, 1)
    assert scene.lock is not None and scene.lock.held
    if how == "replaced":  # how a session of another host takes it over when its user confirmed
        other = tmp_path / "other"
        other.mkdir()
        os.replace(_write_lock(other, "imaging-ws-7", 4242), lock_path_for(study / "study.toml"))
    else:
        _write_lock(study, "imaging-ws-7", 4242)
    with pytest.raises(StudyLocked, match="imaging-ws-7"):
        scene.save_regions()
    assert scene.editable().dirty
    scene.close()
    assert lock_path_for(study / "study.toml").exists()  # not ours: left alone


# -- files changed on disk ------------------------------------------------------------------------

def test_manifest_changed_on_disk_is_told_not_overwritten(study):
    scene = _scene(study)
    _paint(scene, BOX_A, 1)
    manifest = study / "study.toml"
    raw = tomllib.loads(manifest.read_text(encoding="utf-8"))
    raw["study"]["condition"] = "changed by another program"
    write_manifest(raw, manifest)
    changed = manifest.read_bytes()
    with pytest.raises(StudyChanged, match="study.toml: the manifest changed on disk"):
        scene.save_regions()
    assert manifest.read_bytes() == changed and not (study / REGIONS_FOLDER).exists()
    assert scene.editable().dirty
    scene.save_regions(overwrite_changed=True)  # the user chose to: only this timepoint's regions change
    after = tomllib.loads(manifest.read_text(encoding="utf-8"))
    assert after["study"]["condition"] == "changed by another program"
    assert after["timepoint"][0]["regions"].startswith(f"{REGIONS_FOLDER}/")
    scene.close()


def test_map_changed_on_disk_is_told_not_overwritten(study):
    scene = _scene(study)
    _paint(scene, BOX_A, 1)
    volume, _table = load_label_map(study / "regions.nii.gz")
    data = np.array(volume.data)
    data[40:44, 40:44, 30:34] = 7
    save_nifti(data, study / "regions.nii.gz", volume.voxel_to_world)  # another program's edit
    with pytest.raises(StudyChanged, match="regions.nii.gz: the label map changed on disk"):
        scene.save_regions()
    assert load_study(study / "study.toml").timepoint("day 7").images["regions"].name == "regions.nii.gz"
    scene.close()


# -- permissions and names ------------------------------------------------------------------------

@pytest.fixture
def umask():
    """Set the process umask for one test, restored after."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(saved)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_saving_keeps_permissions_and_new_files_get_the_umask_default(study, umask):
    umask(0o022)
    manifest = study / "study.toml"
    manifest.chmod(0o664)
    (study / "regions.nii.gz").chmod(0o664)
    scene = _scene(study, editing_lock=False)
    _paint(scene, BOX_A, 1)
    first = scene.save_regions()
    for path in (manifest, first.map_path, first.table_path):
        assert path.stat().st_mode & 0o777 == 0o664, path
    _paint(scene, BOX_B, 2)
    second = scene.save_regions()  # replaces the viewer's own map: its mode carries on
    for path in (manifest, second.map_path, second.table_path):
        assert path.stat().st_mode & 0o777 == 0o664, path

    # no previous map: the umask default, not mkstemp's 0600
    fresh = write_small_study(study.parent / "fresh", with_regions=False).parent
    for mask, mode in ((0o022, 0o644), (0o002, 0o664)):
        umask(mask)
        other = _scene(fresh, editing_lock=False)
        _paint(other, BOX_A, 1)
        saved = other.save_regions()
        assert saved.map_path.stat().st_mode & 0o777 == mode and saved.table_path.stat().st_mode & 0o777 == mode
        shutil.rmtree(fresh / REGIONS_FOLDER)
        raw = tomllib.loads((fresh / "study.toml").read_text(encoding="utf-8"))
        del raw["timepoint"][0]["regions"]
        write_manifest(raw, fresh / "study.toml")

    # save_label_map to a chosen path keeps the mode of the file it replaces too
    umask(0o022)
    path = study / "export.nii.gz"
    save_label_map(scene.editable(), path)
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o664)
    label_table_path(path).chmod(0o660)
    save_label_map(scene.editable(), path)
    assert path.stat().st_mode & 0o777 == 0o664 and label_table_path(path).stat().st_mode & 0o777 == 0o660


def test_day_1_and_day_minus_1_save_to_different_files(study):
    manifest = study / "study.toml"
    raw = tomllib.loads(manifest.read_text(encoding="utf-8"))
    first = dict(raw["timepoint"][0], label="day 1", day=1)
    second = dict(raw["timepoint"][0], label="day-1", day=2)
    raw["timepoint"] = [first, second]
    write_manifest(raw, manifest)
    regions = study / REGIONS_FOLDER
    regions.mkdir()
    unrelated = regions / regions_file_name("day 1", 1)  # someone's file where the first save would go
    unrelated.write_bytes(b"not ours")

    scene = _scene(study, editing_lock=False)
    day1, day_minus_1 = scene.study.timepoints
    scene.editable(day1).paint_mask("a", BOX_A, np.ones((6, 6, 6), bool), 1)
    scene.editable(day_minus_1).paint_mask("b", BOX_B, np.ones((6, 6, 6), bool), 2)
    saved1 = scene.save_regions(day1)
    saved2 = scene.save_regions(scene.study.timepoints[1])
    assert saved1.map_path != saved2.map_path and saved1.table_path != saved2.table_path
    assert saved1.map_path.name == regions_file_name("day 1", 2)  # the unrelated file was skipped
    assert unrelated.read_bytes() == b"not ours"

    reopened = load_study(manifest)
    a = np.array(load_label_map(reopened.timepoint("day 1").images["regions"])[0].data)
    b = np.array(load_label_map(reopened.timepoint("day-1").images["regions"])[0].data)
    assert (a[BOX_A] == 1).all() and not (a[BOX_B] == 2).all()
    assert (b[BOX_B] == 2).all() and not (b[BOX_A] == 1).all()


def test_without_hard_links_the_lock_and_the_save_still_work(study, monkeypatch):
    """FAT sticks and some network shares have no hard links: names are then reserved with
    O_EXCL, still never replacing an existing file."""
    def no_links(source, target):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    scene = _scene(study)
    _paint(scene, BOX_A, 1)
    assert scene.lock is not None and scene.lock.held
    with pytest.raises(StudyLocked):
        StudyLock.acquire(study / "study.toml")
    first = scene.save_regions()
    _paint(scene, BOX_B, 2)
    second = scene.save_regions()
    assert first.map_path != second.map_path and not first.map_path.exists()
    assert (_saved_map(study)[BOX_B] == 2).all() and list(study.rglob(".*.tmp")) == []
    scene.close()
    assert not lock_path_for(study / "study.toml").exists()
