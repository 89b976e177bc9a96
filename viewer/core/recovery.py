"""Autosave journal and crash recovery for label-map edits (PRODUCT.md §5: "nothing the user
drew is ever lost").

Design
------
Every change to an :class:`~viewer.core.regions.EditableLabels` already is an
:class:`~viewer.core.regions.Edit` — the box it touched with the labels before and after, and
the label table before and after. The journal writes those edits to disk as they happen,
instead of periodically dumping the whole map: a brush stroke costs a few kB, never the
78 MB map.

- :class:`JournaledLabels` is an ``EditableLabels`` whose ``_push`` (every new edit: paint,
  erase, table change, delete, replay), ``undo`` and ``redo`` also append a record to its
  :class:`RecoveryJournal`. Overriding the three choke points of the history is the whole
  hook: no listener guesswork, no monkey-patching, nothing added to ``regions.py``. An
  existing ``EditableLabels`` is converted with :meth:`RecoveryJournal.attach`.
  ``mark_saved()`` clears the journal: the saved file is the new base. A study save
  (:func:`viewer.core.io.labels.save_timepoint_regions`) calls it only after the manifest
  points at the new map, so until then the journal holds every edit; a crash after the
  switch but before the clearing leaves a journal whose edits the map already holds, which
  :func:`holds_journal_result` recognises (the window drops it instead of offering it).
- The journal is an append-only file of records. Each record is
  ``magic "CTJ1" · u32 header length · u64 payload length · u32 CRC-32`` followed by a JSON
  header and a binary payload; the CRC covers both lengths, the header and the payload. A
  crash mid-write leaves a torn last record that fails the length or CRC test and is
  ignored; every complete record before it is kept.
- The first record (``start``) holds the study id, timepoint, which map, the map's
  fingerprint (shape, dtype, the file's affine and the placed one), the label table at the start, the writer's pid and
  times. It is written together with the first edit, so a session that never edits leaves
  no file.
- ``edit`` records hold description, box, both tables and the ``before``/``after`` arrays
  (raw bytes, zlib level 1: label boxes compress ~10–50×). ``undo``/``redo`` records only name
  the sequence number of the edit they move — unless that edit predates the journal (undo
  after a save), then they carry the edit's data.
- Records are written with one unbuffered ``write`` each (a killed process loses nothing
  written) and fsync'ed after every ``flush_every`` records (default 1) and whenever the UI
  calls :meth:`RecoveryJournal.flush` (its 30 s timer).
- Each journal session writes its own file (``<study>--<timepoint>--<map hash>--<time>-<pid>
  .journal``) holding an exclusive ``flock`` while open, so :func:`find_recoverable` skips
  journals of running viewers and a new session never overwrites a crashed one's file.

Recovery (:func:`recover`) replays the records in order onto a freshly loaded map: ``edit``
writes ``after`` and pushes the edit, ``undo``/``redo`` call the editable's own
``undo``/``redo`` (checked to move exactly the recorded edit). Because every record writes
absolute values into its box, the result is exactly the state after the last action, with
the undo and redo stacks of the crashed session (those within the journal). The replay first
runs on a scratch copy: a map whose fingerprint differs is refused, and a map whose voxels
differ from what the journal saw (edited by another program) is refused too unless
``force=True`` — except when the map already holds the journal's result (a crash between
saving and clearing the journal), which replays harmlessly.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import time
import weakref
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from viewer.core.errors import ViewerError
from viewer.core.io.atomic import fsync_dir
from viewer.core.regions import Edit, EditableLabels, LabelEntry, LabelTable
from viewer.core.transforms import file_affine
from viewer.core.volume import Volume

try:  # advisory lock so a live session's journal is not offered for recovery (POSIX)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

JOURNAL_FORMAT = "cell-therapy-viewer edit journal"
JOURNAL_VERSION = 1
JOURNAL_SUFFIX = ".journal"

#: Default folder name inside a study folder.
RECOVERY_FOLDER_NAME = ".viewer-recovery"

_MAGIC = b"CTJ1"
_PREFIX = struct.Struct("<4sIQI")  # magic, header length, payload length, CRC-32
_LENGTHS = struct.Struct("<IQ")
_MAX_HEADER = 64 * 1024 * 1024
_AFFINE_ATOL_MM = 1e-4


def default_recovery_folder(study_root: str | Path) -> Path:
    """``<study folder>/.viewer-recovery`` (use a user cache folder when the study is read-only)."""
    return Path(study_root) / RECOVERY_FOLDER_NAME


# -- record encoding ---------------------------------------------------------------------------

def _encode_record(header: dict[str, Any], payload: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    lengths = _LENGTHS.pack(len(head), len(payload))
    crc = zlib.crc32(payload, zlib.crc32(head, zlib.crc32(lengths)))
    return _PREFIX.pack(_MAGIC, len(head), len(payload), crc) + head + payload


def _read_records(path: Path) -> tuple[list[tuple[dict[str, Any], memoryview]], bool]:
    """All complete records of a journal file and whether a torn/corrupt tail was dropped."""
    blob = memoryview(path.read_bytes())
    records: list[tuple[dict[str, Any], memoryview]] = []
    pos, size = 0, len(blob)
    while pos < size:
        if size - pos < _PREFIX.size:
            return records, True
        magic, head_len, payload_len, crc = _PREFIX.unpack_from(blob, pos)
        end = pos + _PREFIX.size + head_len + payload_len
        if magic != _MAGIC or head_len > _MAX_HEADER or end > size:
            return records, True
        head = blob[pos + _PREFIX.size : pos + _PREFIX.size + head_len]
        payload = blob[pos + _PREFIX.size + head_len : end]
        if zlib.crc32(payload, zlib.crc32(head, zlib.crc32(_LENGTHS.pack(head_len, payload_len)))) != crc:
            return records, True
        try:
            header = json.loads(bytes(head).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return records, True
        if not isinstance(header, dict):
            return records, True
        records.append((header, payload))
        pos = end
    return records, False


def _table_to_list(table: LabelTable | None) -> list[dict] | None:
    if table is None:
        return None
    return [
        {"label": int(e.label), "name": str(e.name), "color": [int(c) for c in e.color], "locked": bool(e.locked)}
        for e in table.entries
    ]


def _table_from_list(rows: list[dict] | None) -> LabelTable | None:
    if rows is None:
        return None
    return LabelTable(
        tuple(LabelEntry(int(r["label"]), str(r["name"]), tuple(int(c) for c in r["color"]), bool(r["locked"])) for r in rows)  # type: ignore[misc]
    )


def _encode_edit(edit: Edit, compress: bool) -> tuple[dict[str, Any], bytes]:
    header: dict[str, Any] = {
        "description": edit.description,
        "box": None if edit.box is None else [[int(s.start), int(s.stop)] for s in edit.box],
        "table_before": _table_to_list(edit.table_before),
        "table_after": _table_to_list(edit.table_after),
        "arrays": {},
    }
    chunks: list[bytes] = []
    offset = 0
    for name in ("before", "after"):
        array = getattr(edit, name)
        if array is None:
            continue
        array = np.ascontiguousarray(array)
        raw = array.tobytes()
        data = zlib.compress(raw, 1) if compress else raw
        header["arrays"][name] = {
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "codec": "zlib" if compress else "raw",
            "offset": offset,
            "nbytes": len(data),
        }
        chunks.append(data)
        offset += len(data)
    return header, b"".join(chunks)


def _decode_edit(header: dict[str, Any], payload: memoryview) -> Edit:
    arrays: dict[str, np.ndarray] = {}
    for name, spec in header.get("arrays", {}).items():
        chunk = bytes(payload[spec["offset"] : spec["offset"] + spec["nbytes"]])
        raw = zlib.decompress(chunk) if spec["codec"] == "zlib" else chunk
        arrays[name] = np.frombuffer(raw, dtype=np.dtype(spec["dtype"])).reshape(spec["shape"]).copy()
    box = header.get("box")
    return Edit(
        header["description"],
        None if box is None else tuple(slice(a, b) for a, b in box),  # type: ignore[arg-type]
        arrays.get("before"),
        arrays.get("after"),
        _table_from_list(header.get("table_before")),
        _table_from_list(header.get("table_after")),
    )


def _fingerprint(labels: EditableLabels) -> dict[str, Any]:
    """Shape, dtype and both affines of the map edited: ``file_affine`` is the grid of the
    file itself (the voxels the edits are made of), ``affine`` where the study placed it
    (composed with its timepoint's transforms, PRODUCT.md §9; it changes with a registration)."""
    volume = labels.labels
    return {
        "shape": list(volume.shape),
        "dtype": np.dtype(volume.dtype).newbyteorder("<").str,
        "affine": [float(v) for v in np.asarray(volume.voxel_to_world, dtype=np.float64).ravel()],
        "file_affine": [float(v) for v in file_affine(volume.voxel_to_world, volume.meta.get("world_from_file")).ravel()],
    }


def _same_affine(a: list[float], b: list[float]) -> bool:
    return bool(np.allclose(np.reshape(a, (4, 4)), np.reshape(b, (4, 4)), rtol=0, atol=_AFFINE_ATOL_MM))


def _grid_key(start: dict[str, Any]) -> str:
    """The affine that says which voxels the edits are of: the file's (journals before
    transforms existed held only the placed one, which was then the file's)."""
    return "file_affine" if "file_affine" in start else "affine"


def _slug(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return (slug or "x")[:limit]


# -- the journal -------------------------------------------------------------------------------

class RecoveryJournal:
    """Append-only on-disk record of one label map's edits in one viewer session.

    Args:
        folder: where journals live (created on the first edit), e.g.
            :func:`default_recovery_folder` of the study or a user cache folder.
        study_id: the study's id (shown when offering recovery).
        timepoint_label: the timepoint whose map is edited.
        labels_path_or_key: which map (its path, or any key the app can reload it by).
        flush_every: fsync after this many records (1: after every edit).
        compress: zlib-compress the voxel arrays (level 1).

    Writing failures never break editing: the first ``OSError`` is kept in :attr:`error`
    (the UI should warn that autosave stopped) and journaling pauses until :meth:`clear`.
    """

    def __init__(
        self,
        folder: str | Path,
        study_id: str,
        timepoint_label: str,
        labels_path_or_key: str,
        *,
        flush_every: int = 1,
        compress: bool = True,
    ) -> None:
        self.folder = Path(folder)
        self.study_id = str(study_id)
        self.timepoint_label = str(timepoint_label)
        self.labels_key = str(labels_path_or_key)
        self.flush_every = max(1, int(flush_every))
        self.compress = compress
        self.error: str | None = None
        self._path: Path | None = None
        self._file: BinaryIO | None = None
        self._unsynced = 0
        self._records = 0
        self._bytes = 0
        self._next_seq = 1
        self._seq_of: dict[int, tuple[weakref.ref, int]] = {}
        self._base: dict[str, Any] | None = None
        self._started = 0.0

    # -- lifecycle ------------------------------------------------------------------------------
    def attach(self, editable: EditableLabels) -> JournaledLabels:
        """A :class:`JournaledLabels` taking over ``editable``'s map, table, history and
        listeners, journaling into this journal from now on (use it instead of ``editable``)."""
        return JournaledLabels.from_editable(editable, self)

    def begin(self, labels: EditableLabels) -> None:
        """Take ``labels``' current state as the base the records apply to (no disk I/O)."""
        self._base = {**_fingerprint(labels), "table": _table_to_list(labels.table), "max_undo": int(labels.max_undo)}

    @property
    def path(self) -> Path | None:
        """The current journal file (None until the first edit after start or clear)."""
        return self._path

    @property
    def n_records(self) -> int:
        """Edit/undo/redo records written to the current file."""
        return self._records

    @property
    def nbytes(self) -> int:
        """Bytes written to the current file."""
        return self._bytes

    def flush(self) -> None:
        """fsync what was written (the UI calls this every 30 s)."""
        if self._file is None or self._unsynced == 0:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._unsynced = 0
        except OSError as exc:
            self._fail(exc)

    @contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """Skip the per-record fsync inside the block, fsync once at its end (bulk replays)."""
        saved = self.flush_every
        self.flush_every = 1 << 62
        try:
            yield
        finally:
            self.flush_every = saved
            self.flush()

    def close(self) -> None:
        """fsync and close the file, keeping it on disk (it stays recoverable)."""
        self.flush()
        if self._file is not None:
            try:
                self._file.close()  # closing also releases the lock
            except OSError:
                pass
            self._file = None

    def clear(self) -> None:
        """Delete the journal (after a successful save, or when the user discards changes).
        The next edit starts a new file based on the state given to :meth:`begin`."""
        path = self._path
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
        self._file = None
        self._path = None
        if path is not None:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
        self._unsynced = self._records = self._bytes = 0
        self._next_seq = 1
        self._seq_of.clear()
        self.error = None

    # -- recording ------------------------------------------------------------------------------
    def record(self, kind: str, edit: Edit) -> None:
        """Append one action: ``"edit"`` (new edit pushed), ``"undo"`` or ``"redo"``."""
        if kind not in ("edit", "undo", "redo"):
            raise ValueError(f"unknown journal record kind {kind!r}")
        if self.error is not None:
            return
        header: dict[str, Any] = {"kind": kind, "time": time.time()}
        payload = b""
        try:
            seq = self._known(edit)
            if kind == "edit" or seq is None:
                seq = self._register(edit)
                edit_header, payload = _encode_edit(edit, self.compress)
                header["edit"] = edit_header
            header["seq"] = seq
            self._write(_encode_record(header, payload))
        except (OSError, TypeError, ValueError) as exc:  # never break editing; report instead
            self._fail(exc)

    def record_squash(self, count: int, description: str, merged: Edit) -> None:
        """Append a squash: the last ``count`` edits became one undo step, ``merged``."""
        if self.error is not None:
            return
        try:
            seq = self._register(merged)
            header = {"kind": "squash", "time": time.time(), "seq": seq, "count": int(count), "description": description}
            self._write(_encode_record(header))
        except (OSError, TypeError, ValueError) as exc:
            self._fail(exc)

    def _known(self, edit: Edit) -> int | None:
        entry = self._seq_of.get(id(edit))
        return entry[1] if entry is not None and entry[0]() is edit else None

    def _register(self, edit: Edit) -> int:
        seq = self._next_seq
        self._next_seq += 1
        key = id(edit)
        seq_of = self._seq_of

        def forget(_ref: weakref.ref, key: int = key, seq: int = seq) -> None:
            entry = seq_of.get(key)
            if entry is not None and entry[1] == seq:
                del seq_of[key]

        self._seq_of[key] = (weakref.ref(edit, forget), seq)
        return seq

    def _write(self, record: bytes) -> None:
        if self._file is None:
            record = self._open() + record
        assert self._file is not None
        self._file.write(record)  # unbuffered: one write, in the OS once it returns
        self._bytes += len(record)
        self._records += 1
        self._unsynced += 1
        if self._unsynced >= self.flush_every:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._unsynced = 0

    def _open(self) -> bytes:
        """Create this session's file; return the start record to write before the first edit."""
        if self._base is None:
            raise RuntimeError("RecoveryJournal.begin(labels) must be called before recording")
        self.folder.mkdir(parents=True, exist_ok=True)
        now = time.time()
        key_hash = hashlib.sha1(self.labels_key.encode("utf-8")).hexdigest()[:8]
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now))
        stem = f"{_slug(self.study_id)}--{_slug(self.timepoint_label)}--{key_hash}--{stamp}-{os.getpid()}"
        for attempt in range(1000):
            path = self.folder / f"{stem}{'' if attempt == 0 else f'-{attempt}'}{JOURNAL_SUFFIX}"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover
            raise OSError(f"cannot create a journal file in {self.folder}")
        handle = os.fdopen(fd, "wb", buffering=0)
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pass
        self._file, self._path, self._started = handle, path, now
        fsync_dir(self.folder)
        start = {
            "kind": "start",
            "format": JOURNAL_FORMAT,
            "version": JOURNAL_VERSION,
            "study_id": self.study_id,
            "timepoint": self.timepoint_label,
            "labels_key": self.labels_key,
            "pid": os.getpid(),
            "time": now,
            **self._base,
        }
        return _encode_record(start)

    def _fail(self, exc: Exception) -> None:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        self.error = f"autosave stopped: {self._path or self.folder}: {reason}"


# -- the journaled editable --------------------------------------------------------------------

@dataclass
class JournaledLabels(EditableLabels):
    """An :class:`EditableLabels` that journals every new edit, undo and redo.

    ``mark_saved()`` (called by the save once the file is in place) clears the journal and
    makes the saved state its new base; the next journal names ``labels.source`` (the saved
    file, which the study save sets) as its map, so a later recovery reloads the map the new
    journal is based on.
    """

    journal: RecoveryJournal | None = None

    def __post_init__(self) -> None:
        if self.journal is not None:
            self.journal.begin(self)

    @classmethod
    def from_editable(cls, editable: EditableLabels, journal: RecoveryJournal) -> JournaledLabels:
        """Take over an EditableLabels' map, table, history, listeners and dirty flag."""
        journaled = cls(editable.labels, editable.table, editable.max_undo, journal=journal)
        journaled._undo = editable._undo
        journaled._redo = editable._redo
        journaled._listeners = editable._listeners
        journaled.dirty = editable.dirty
        return journaled

    def _push(self, edit: Edit) -> None:
        super()._push(edit)
        if self.journal is not None:
            self.journal.record("edit", edit)

    def undo(self) -> Edit | None:
        edit = super().undo()
        if edit is not None and self.journal is not None:
            self.journal.record("undo", edit)
        return edit

    def redo(self) -> Edit | None:
        edit = super().redo()
        if edit is not None and self.journal is not None:
            self.journal.record("redo", edit)
        return edit

    def squash(self, count: int, description: str) -> Edit | None:
        merged = super().squash(count, description)
        if merged is not None and count > 1 and self.journal is not None:
            self.journal.record_squash(count, description, merged)
        return merged

    def mark_saved(self) -> None:
        super().mark_saved()
        if self.journal is not None:
            if self.labels.source is not None:
                self.journal.labels_key = str(self.labels.source)
            self.journal.clear()
            self.journal.begin(self)


# -- finding and replaying journals ------------------------------------------------------------

@dataclass(frozen=True)
class RecoveryInfo:
    """A journal left by a session that ended without saving (offered at start).

    Attributes:
        path: the journal file.
        study_id, timepoint_label, labels_key: which map the edits belong to.
        n_edits: edits the user made, as undo steps: a brush stroke (many records merged
            by its squash) is one, a rename or an added region is one. What the prompt says.
        n_undone: undos minus redos (negative: edits saved before were redone).
        n_actions: records of edits, undos, redos and stroke merges: what :func:`recover`
            replays and returns.
        last_edit_time: when the last complete action was recorded (local time).
        started_time: when the journal was started.
        last_description: the last edit's description ("brush core").
        torn: a torn or corrupt tail (crash mid-write) was found and will be ignored.
        shape, dtype: fingerprint of the map the edits apply to.
    """

    path: Path
    study_id: str
    timepoint_label: str
    labels_key: str
    n_edits: int
    n_undone: int
    n_actions: int
    last_edit_time: datetime
    started_time: datetime
    last_description: str
    torn: bool
    shape: tuple[int, int, int]
    dtype: str

    @property
    def summary(self) -> str:
        """``4 edits`` or ``4 edits, 1 undone`` (``0 edits, 2 redone``: saved edits redone): the prompt's words."""
        edits = f"{self.n_edits} edit{'' if self.n_edits == 1 else 's'}"
        if self.n_undone > 0:
            return f"{edits}, {self.n_undone} undone"
        if self.n_undone < 0:
            return f"{edits}, {-self.n_undone} redone"
        return edits


def _count_edits(actions: list[tuple[dict[str, Any], memoryview]]) -> tuple[int, int]:
    """(edits as undo steps, undos minus redos) of a journal's action records.

    Each ``edit`` record is one edit; a ``squash`` of N records (a live brush stroke) turns
    N of them into one, so 4 strokes count 4 whatever the mouse moves. Undo and redo are not
    edits: they are counted apart, as the net number of edits undone.
    """
    edits = undone = 0
    for header, _payload in actions:
        kind = header.get("kind")
        if kind == "edit":
            edits += 1
        elif kind == "squash":
            edits -= max(int(header.get("count", 1)) - 1, 0)
        elif kind == "undo":
            undone += 1
        elif kind == "redo":
            undone -= 1
    return max(edits, 0), undone


def _is_locked(path: Path) -> bool:
    """True when a live session holds the journal's lock."""
    if fcntl is None:
        return False
    try:
        with open(path, "rb") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def _load(path: Path) -> tuple[dict[str, Any], list[tuple[dict[str, Any], memoryview]], bool]:
    """(start header, action records, torn) of a journal; ViewerError if it is not one."""
    try:
        records, torn = _read_records(path)
    except OSError as exc:
        raise ViewerError(f"{path}: cannot read the recovery journal ({exc.strerror or exc})") from None
    if not records or records[0][0].get("kind") != "start" or records[0][0].get("format") != JOURNAL_FORMAT:
        raise ViewerError(f"{path}: not a recovery journal (or its first record is damaged)")
    start = records[0][0]
    if int(start.get("version", 0)) > JOURNAL_VERSION:
        raise ViewerError(f"{path}: recovery journal version {start.get('version')} is newer than this viewer")
    actions = [r for r in records[1:] if r[0].get("kind") in ("edit", "undo", "redo", "squash")]
    return start, actions, torn


def find_recoverable(folder: str | Path, include_live: bool = False) -> list[RecoveryInfo]:
    """Journals in ``folder`` holding at least one action, newest last edit first.

    Journals of sessions still running (their lock is held) are skipped unless
    ``include_live``. Unreadable files and journals without actions are skipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found: list[RecoveryInfo] = []
    for path in sorted(folder.glob(f"*{JOURNAL_SUFFIX}")):
        if not include_live and _is_locked(path):
            continue
        try:
            start, actions, torn = _load(path)
        except ViewerError:
            continue
        if not actions:
            continue
        last = actions[-1][0]
        description = next((r[0]["edit"]["description"] for r in reversed(actions) if "edit" in r[0]), "")
        n_edits, n_undone = _count_edits(actions)
        found.append(
            RecoveryInfo(
                path=path,
                study_id=str(start.get("study_id", "")),
                timepoint_label=str(start.get("timepoint", "")),
                labels_key=str(start.get("labels_key", "")),
                n_edits=n_edits,
                n_undone=n_undone,
                n_actions=len(actions),
                last_edit_time=datetime.fromtimestamp(float(last.get("time", 0.0))).astimezone(),
                started_time=datetime.fromtimestamp(float(start.get("time", 0.0))).astimezone(),
                last_description=str(description),
                torn=torn,
                shape=tuple(start["shape"]),  # type: ignore[arg-type]
                dtype=np.dtype(start["dtype"]).name,
            )
        )
    found.sort(key=lambda info: info.last_edit_time, reverse=True)
    return found


def discard(info: RecoveryInfo | str | Path) -> None:
    """Delete a journal (the user declined recovery, or recovered and saved)."""
    path = info.path if isinstance(info, RecoveryInfo) else Path(info)
    path.unlink(missing_ok=True)


class _Inconsistent(Exception):
    pass


def _replay(target: EditableLabels, records: list[tuple[dict[str, Any], memoryview]], check: bool) -> int:
    """Replay journal records onto ``target``; return how many voxel boxes did not hold what
    the journal saw (only counted when ``check``). Raises _Inconsistent on a broken history.

    Records are decoded one at a time, so memory holds only what the history keeps.
    """
    mismatches = 0
    by_seq: weakref.WeakValueDictionary[int, Edit] = weakref.WeakValueDictionary()
    for header, payload in records:
        kind, seq = header.get("kind"), int(header.get("seq", 0))
        if kind == "squash":
            merged = target.squash(int(header.get("count", 0)), str(header.get("description", "stroke")))
            if merged is None:
                raise _Inconsistent(f"squash of {header.get('count')} edits does not match the history")
            by_seq[seq] = merged
            continue
        try:
            carried = _decode_edit(header["edit"], payload) if "edit" in header else None
        except (KeyError, TypeError, ValueError, zlib.error) as exc:
            raise _Inconsistent(f"damaged record of edit {seq}: {exc}") from None
        if kind == "edit" and carried is not None:
            if check and carried.box is not None and not np.array_equal(target.data[carried.box], carried.before):
                mismatches += 1
            target.replay([carried])
            by_seq[seq] = carried
        elif carried is not None:  # undo/redo of an edit from before this journal (e.g. a save)
            forward = kind == "redo"
            if check and carried.box is not None:
                expected = carried.before if forward else carried.after
                if not np.array_equal(target.data[carried.box], expected):
                    mismatches += 1
            _move_detached(target, carried, forward)
            by_seq[seq] = carried
        else:
            edit = by_seq.get(seq)
            moved = target.undo() if kind == "undo" else target.redo()
            if edit is None or moved is not edit:
                raise _Inconsistent(f"{kind} of edit {seq} does not match the history")
    return mismatches


def _move_detached(target: EditableLabels, edit: Edit, forward: bool) -> None:
    """Undo (forward=False) or redo an edit that is not on ``target``'s stacks: write its
    voxels and table and put it on the other stack, as the crashed session had it."""
    if edit.box is not None:
        target._writable()[edit.box] = edit.after if forward else edit.before
    table = edit.table_after if forward else edit.table_before
    if table is not None:
        target.table = table
    if forward:
        target._undo.append(edit)
        if len(target._undo) > target.max_undo:
            del target._undo[0]
    else:
        target._redo.append(edit)
    target.dirty = True
    if isinstance(target, JournaledLabels) and target.journal is not None:
        target.journal.record("redo" if forward else "undo", edit)
    target._notify(edit.touched_labels(), edit.box)


def recover(info: RecoveryInfo | str | Path, editable: EditableLabels, *, force: bool = False) -> int:
    """Replay a journal onto a freshly loaded copy of its label map.

    Args:
        info: from :func:`find_recoverable` (or a journal path).
        editable: the map as loaded from disk (same shape, dtype and affine as the journal's),
            with no edits yet. A :class:`JournaledLabels` re-journals the replayed actions in
            its own journal (fsync'ed) and the old journal is then deleted; with a plain
            ``EditableLabels`` the old journal is kept — :func:`discard` it after saving.
        force: replay even when the map's voxels differ from what the journal saw (the file
            was changed by another program since); edited boxes then get the journal's values.

    Returns:
        The number of actions replayed (edits, undos, redos). ``editable.dirty`` is True
        afterwards when any was replayed.

    Raises:
        ViewerError: not a journal, the map's fingerprint differs, the map changed on disk
            (without ``force``), or the history does not replay (e.g. a smaller undo limit).
            ``editable`` is untouched in every case.
    """
    path = info.path if isinstance(info, RecoveryInfo) else Path(info)
    start, records, _torn = _load(path)
    if not records:
        return 0
    mine = _fingerprint(editable)
    if list(start["shape"]) != mine["shape"] or start["dtype"] != mine["dtype"]:
        raise ViewerError(
            f"{path}: the edits were made on a {tuple(start['shape'])} {start['dtype']} label map; "
            f"the map loaded is {tuple(mine['shape'])} {mine['dtype']} — not replayed"
        )
    key = _grid_key(start)
    if not _same_affine(start[key], mine[key]):
        raise ViewerError(f"{path}: the label map loaded has another voxel-to-world affine than the one edited — not replayed")
    scratch = EditableLabels(
        Volume.from_array(np.array(editable.data), editable.labels.voxel_to_world, role="regions"),
        editable.table,
        editable.max_undo,
    )
    try:
        mismatches = _replay(scratch, records, check=True)
    except _Inconsistent as exc:
        raise ViewerError(f"{path}: the recorded history does not replay ({exc}) — not replayed") from None
    if mismatches and not force and not np.array_equal(scratch.data, editable.data):
        raise ViewerError(
            f"{path}: the label map changed on disk since these edits were made "
            f"({mismatches} edited areas differ) — not replayed"
        )
    del scratch

    journal = editable.journal if isinstance(editable, JournaledLabels) else None
    try:
        if journal is not None:
            with journal.deferred_sync():
                _replay(editable, records, check=False)
        else:
            _replay(editable, records, check=False)
    except _Inconsistent as exc:  # pragma: no cover - the scratch replay passed
        raise ViewerError(f"{path}: the recorded history does not replay ({exc})") from None
    editable.dirty = True
    if journal is not None and journal.error is None and journal.path is not None and journal.path != path:
        discard(path)
    return len(records)


def placement_changed(info: RecoveryInfo | str | Path, editable: EditableLabels) -> bool:
    """True when the map's own grid is the one edited but the study now places it elsewhere
    (its timepoint was registered, or a transform nudged, after the edits were made).

    The edits are voxels of the map, so :func:`recover` replays them; the window says so,
    because what the reader saw beside them while drawing has moved.
    """
    path = info.path if isinstance(info, RecoveryInfo) else Path(info)
    try:
        start, _records, _torn = _load(path)
    except ViewerError:
        return False
    mine = _fingerprint(editable)
    return _same_affine(start[_grid_key(start)], mine[_grid_key(start)]) and not _same_affine(start["affine"], mine["affine"])


def holds_journal_result(info: RecoveryInfo | str | Path, editable: EditableLabels) -> bool:
    """True when ``editable`` already holds what replaying the journal would give.

    That is the journal of a save killed after the manifest was switched to the new map but
    before the journal was cleared: its edits are saved, and offering them again would only
    confuse. Checked by replaying onto a scratch copy and comparing voxels and label table
    (``editable`` is not changed). A journal that cannot be read or replayed, or was made on
    another map (fingerprint), does not count as held: it stays offered.
    """
    path = info.path if isinstance(info, RecoveryInfo) else Path(info)
    try:
        start, records, _torn = _load(path)
    except ViewerError:
        return False
    if not records:
        return True
    mine = _fingerprint(editable)
    if list(start["shape"]) != mine["shape"] or start["dtype"] != mine["dtype"]:
        return False
    scratch = EditableLabels(
        Volume.from_array(np.array(editable.data), editable.labels.voxel_to_world, role="regions"),
        editable.table,
        editable.max_undo,
    )
    try:
        _replay(scratch, records, check=False)
    except _Inconsistent:
        return False
    return scratch.table == editable.table and np.array_equal(scratch.data, editable.data)
