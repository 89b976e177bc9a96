"""Editable region label maps: the label table, edits as bounding-box diffs, undo/redo.

FSLeyes' and Slicer's lesson: undo must store only what an edit touched. An edit is the box
of voxels it changed, with the labels before and after *inside that box* (a 20 mm brush
stroke on a 512×512×300 map stores ~70k voxels, not 78 M). Undo writes `before` back,
redo writes `after`. The label table (names, colours, locks) changes through the same
history, so deleting a region can be undone too.

Every change goes through :class:`EditableLabels` and is announced to listeners with the
labels and the box it touched, so quantification recomputes only those regions.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from viewer.core.display import region_color
from viewer.core.spaces import label_box
from viewer.core.volume import FILE_IDENTITY, Volume

Box = tuple[slice, slice, slice]

#: Names with a meaning in quantification (PRODUCT.md §2).
RESERVED_NAMES: tuple[str, ...] = ("core", "penumbra", "reference", "background")

#: Default number of undo steps kept (issue #5: at least 100).
DEFAULT_UNDO_STEPS = 200


@dataclass(frozen=True)
class LabelEntry:
    """One row of the label table."""

    label: int
    name: str
    color: tuple[int, int, int]
    locked: bool = False

    def as_dict(self) -> dict:
        return {"label": self.label, "name": self.name, "color": list(self.color), "locked": self.locked}


@dataclass(frozen=True)
class LabelTable:
    """Names, colours and locks of the labels; immutable (changes make a new table)."""

    entries: tuple[LabelEntry, ...] = ()

    @classmethod
    def from_names(cls, names: dict[int, str]) -> LabelTable:
        return cls(tuple(LabelEntry(int(k), v, region_color(int(k), v)) for k, v in sorted(names.items())))

    def get(self, label: int) -> LabelEntry | None:
        return next((e for e in self.entries if e.label == label), None)

    def name(self, label: int) -> str:
        entry = self.get(label)
        return entry.name if entry else f"label {label}"

    @property
    def names(self) -> dict[int, str]:
        return {e.label: e.name for e in self.entries}

    @property
    def locked(self) -> set[int]:
        return {e.label for e in self.entries if e.locked}

    def label_of(self, name: str) -> int | None:
        return next((e.label for e in self.entries if e.name == name), None)

    def color(self, label: int) -> tuple[int, int, int]:
        """The colour (RGB 0–255) every view, legend and report draws ``label`` in: the
        table's, else the default colour of an unnamed label (a painted label not in the table)."""
        entry = self.get(label)
        return entry.color if entry is not None else region_color(int(label), "")

    def color_of_name(self, name: str, label: int) -> tuple[int, int, int]:
        """The colour of the region called ``name`` (a time course follows regions by name):
        the table's entry of that name, else the default colour of ``name`` at ``label``."""
        entry = next((e for e in self.entries if e.name == name), None)
        return entry.color if entry is not None else region_color(int(label), name)

    def renamed(self, rename: Callable[[str], str]) -> LabelTable:
        """The same labels, colours and locks with every name passed through ``rename`` (a
        report's de-identification)."""
        return LabelTable(tuple(replace(e, name=rename(e.name)) for e in self.entries))

    def next_free_label(self) -> int:
        used = {e.label for e in self.entries}
        label = 1
        while label in used:
            label += 1
        return label

    def with_entry(self, entry: LabelEntry) -> LabelTable:
        others = [e for e in self.entries if e.label != entry.label]
        return LabelTable(tuple(sorted([*others, entry], key=lambda e: e.label)))

    def without(self, label: int) -> LabelTable:
        return LabelTable(tuple(e for e in self.entries if e.label != label))

    def as_list(self) -> list[dict]:
        return [e.as_dict() for e in self.entries]


#: Arrays up to this size (bytes) are kept as they are; larger ones are zlib-compressed.
#: A brush stroke's before/after boxes are mostly one or two label values and shrink ~50×,
#: which keeps 100 strokes of 20 mm on a 512×512×300 map far below 50 MB of history.
COMPRESS_ABOVE_BYTES = 4096


class _Packed:
    """An array held compressed (level 1: ~1 ms for a 0.4 MB box) and unpacked on demand."""

    __slots__ = ("compressed", "dtype", "payload", "shape")

    def __init__(self, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        self.shape = array.shape
        self.dtype = array.dtype
        raw = array.tobytes()
        self.compressed = len(raw) > COMPRESS_ABOVE_BYTES
        self.payload = zlib.compress(raw, 1) if self.compressed else raw

    def unpack(self) -> np.ndarray:
        raw = zlib.decompress(self.payload) if self.compressed else self.payload
        return np.frombuffer(raw, dtype=self.dtype).reshape(self.shape).copy()

    @property
    def nbytes(self) -> int:
        return len(self.payload)


class Edit:
    """One undoable change: voxels of a box before/after, and/or the label table before/after.

    Attributes:
        description: what the user did ("brush core", "delete 'x'").
        box: voxel box of the change on the label grid (None for table-only edits).
        before/after: labels inside ``box`` (same dtype as the map), stored compressed.
        table_before/table_after: the label table around the edit (None if unchanged).
    """

    def __init__(
        self,
        description: str,
        box: Box | None = None,
        before: np.ndarray | None = None,
        after: np.ndarray | None = None,
        table_before: LabelTable | None = None,
        table_after: LabelTable | None = None,
    ) -> None:
        self.description = description
        self.box = box
        self._before = _Packed(before) if before is not None else None
        self._after = _Packed(after) if after is not None else None
        self.table_before = table_before
        self.table_after = table_after
        self._labels: set[int] | None = None

    @property
    def before(self) -> np.ndarray | None:
        return self._before.unpack() if self._before is not None else None

    @property
    def after(self) -> np.ndarray | None:
        return self._after.unpack() if self._after is not None else None

    @property
    def nbytes(self) -> int:
        """Memory the history holds for this edit (bytes, compressed)."""
        return sum(p.nbytes for p in (self._before, self._after) if p is not None)

    def touched_labels(self) -> set[int]:
        if self._labels is None:
            labels: set[int] = set()
            for array in (self.before, self.after):
                if array is not None:
                    labels |= {int(v) for v in np.unique(array) if v != 0}
            self._labels = labels
        return set(self._labels)

    def __repr__(self) -> str:
        return f"Edit({self.description!r}, box={self.box}, nbytes={self.nbytes})"


Listener = Callable[[set[int], Box | None], None]


@dataclass(frozen=True)
class LabelSnapshot:
    """The label map and table as they were at one version, for a job off the GUI thread.

    ``labels`` wraps a read-only array that no one writes again: the next edit of the map
    copies it first (:meth:`EditableLabels._writable`), so a job reading a snapshot never sees
    a half-painted stroke. Hand it back with :meth:`EditableLabels.release` when done, so an
    edit that comes after the job ended needs no copy.
    """

    labels: Volume
    table: LabelTable
    version: int


@dataclass
class EditableLabels:
    """A label map being edited, with its table and its undo/redo history.

    Args:
        labels: the label Volume (its array is copied into writable memory once, at the
            first edit — a memory-mapped file is never written through).
        table: the label table.
        max_undo: how many edits undo can walk back.
    """

    labels: Volume
    table: LabelTable
    max_undo: int = DEFAULT_UNDO_STEPS
    _undo: list[Edit] = field(default_factory=list)
    _redo: list[Edit] = field(default_factory=list)
    _listeners: list[Listener] = field(default_factory=list)
    dirty: bool = False
    #: +1 at every change of the map or the table: results say which version they measured
    version: int = 0
    # the array snapshots were given out of (frozen read-only), and how many are still out
    _frozen: np.ndarray | None = None
    _readers: int = 0

    # -- observers ---------------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        """``listener(labels_touched, box)`` after every change (box None: table only)."""
        self._listeners.append(listener)

    def _notify(self, labels: set[int], box: Box | None) -> None:
        self.version += 1
        for listener in list(self._listeners):
            listener(labels, box)

    # -- data -----------------------------------------------------------------------------------------
    @property
    def data(self) -> np.ndarray:
        return self.labels.data

    def _writable(self) -> np.ndarray:
        """The label array, made writable in memory on first use (copy-on-first-edit), and
        copied again when a snapshot of it is still being read (copy-on-write)."""
        data = self.labels.data
        # the voxels are no longer the file's: nothing is cached for them (levels_cache)
        self.labels.meta.pop(FILE_IDENTITY, None)
        if isinstance(data, np.memmap) or not data.flags.writeable:
            data = np.array(data)
            self.labels._data = data  # the Volume now holds the in-memory copy
        return data

    # -- snapshots for jobs -----------------------------------------------------------------------------
    def snapshot(self) -> LabelSnapshot:
        """The map and table as they are now, immutable (GUI thread). No copy is made: the
        array is frozen, and only an edit made while a snapshot is out copies it."""
        data = self.labels.data
        if data.flags.writeable and not isinstance(data, np.memmap):
            data.flags.writeable = False
            self._frozen, self._readers = data, 0
        if data is self._frozen:
            self._readers += 1
        labels = self.labels
        frozen = Volume.from_array(data, labels.voxel_to_world, role=labels.role, units=labels.units, name=labels.name,
                                   source=labels.source)
        return LabelSnapshot(frozen, self.table, self.version)

    def release(self, snapshot: LabelSnapshot) -> None:
        """A job is done with ``snapshot`` (GUI thread): when no other snapshot is out and the
        map was not edited since, the array is made writable again (no copy at the next edit)."""
        if snapshot.labels.data is not self._frozen:
            return  # the map was copied since: the old array is the jobs' alone
        self._readers -= 1
        if self._readers <= 0 and self.labels.data is self._frozen:
            self._frozen.flags.writeable = True
            self._frozen, self._readers = None, 0

    def slab_snapshot(self, axis: int, index: int) -> Volume:
        """One slice of the map (``index`` along ``axis``) as a copy on a one-voxel-thick grid
        at the same place: what a slice job samples, so it never reads the array being
        painted; sampling the plane through that slice gives the same pixels."""
        index = int(np.clip(index, 0, self.data.shape[axis] - 1))
        box = tuple(slice(index, index + 1) if a == axis else slice(None) for a in range(3))
        shift = np.eye(4)
        shift[axis, 3] = index
        labels = self.labels
        return Volume.from_array(np.array(self.data[box]), labels.voxel_to_world @ shift, role=labels.role,
                                 units=labels.units, name=labels.name, source=labels.source)

    # -- applying ---------------------------------------------------------------------------------------
    def apply_voxels(self, description: str, box: Box, new_values: np.ndarray, respect_locks: bool = True) -> Edit | None:
        """Write ``new_values`` into ``box`` (same shape), record the diff, notify.

        Voxels of locked labels keep their label. Returns the edit, or None when nothing
        changed (no history entry for no-ops).
        """
        data = self._writable()
        before = data[box].copy()
        after = np.asarray(new_values, dtype=data.dtype)
        if respect_locks and self.table.locked:
            keep = np.isin(before, list(self.table.locked))
            after = np.where(keep, before, after)
        changed = before != after
        if not changed.any():
            return None
        tight = label_box(changed)
        before, after = before[tight], after[tight]
        absolute = tuple(slice(b.start + t.start, b.start + t.stop) for b, t in zip(box, tight))
        data[absolute] = after
        edit = Edit(description, absolute, before, after)  # type: ignore[arg-type]
        self._push(edit)
        self._notify(edit.touched_labels(), absolute)  # type: ignore[arg-type]
        return edit

    def paint_mask(self, description: str, box: Box, mask: np.ndarray, label: int, respect_locks: bool = True) -> Edit | None:
        """Set ``label`` where ``mask`` (shape of ``box``) is True; label 0 erases."""
        current = self.data[box]
        return self.apply_voxels(description, box, np.where(mask, label, current), respect_locks)

    def set_table(self, description: str, table: LabelTable) -> Edit | None:
        """Change the label table (rename, recolour, add, lock) as an undoable edit."""
        if table == self.table:
            return None
        edit = Edit(description, table_before=self.table, table_after=table)
        self.table = table
        self._push(edit)
        self._notify(set(), None)
        return edit

    def delete_label(self, label: int) -> Edit | None:
        """Remove a label from the map and the table in one undoable edit."""
        data = self._writable()
        mask = data == label
        box = label_box(mask)
        table_after = self.table.without(label)
        if box is None:
            return self.set_table(f"delete '{self.table.name(label)}'", table_after)
        before = data[box].copy()
        after = np.where(before == label, 0, before).astype(data.dtype)
        data[box] = after
        edit = Edit(f"delete '{self.table.name(label)}'", box, before, after, self.table, table_after)
        self.table = table_after
        self._push(edit)
        self._notify({label}, box)
        return edit

    def _push(self, edit: Edit) -> None:
        self._undo.append(edit)
        if len(self._undo) > self.max_undo:
            del self._undo[0]
        self._redo.clear()
        self.dirty = True

    # -- history ---------------------------------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> Edit | None:
        if not self._undo:
            return None
        edit = self._undo.pop()
        self._write(edit, forward=False)
        self._redo.append(edit)
        self.dirty = True
        return edit

    def redo(self) -> Edit | None:
        if not self._redo:
            return None
        edit = self._redo.pop()
        self._write(edit, forward=True)
        self._undo.append(edit)
        self.dirty = True
        return edit

    def _write(self, edit: Edit, forward: bool) -> None:
        if edit.box is not None:
            self._writable()[edit.box] = edit.after if forward else edit.before
        table = edit.table_after if forward else edit.table_before
        if table is not None:
            self.table = table
        self._notify(edit.touched_labels(), edit.box)

    def squash(self, count: int, description: str) -> Edit | None:
        """Merge the last ``count`` edits into one undo step (a brush stroke painted live, one
        mouse-move at a time, is undone as a whole). The data is not changed."""
        count = min(count, len(self._undo))
        if count <= 1:
            return self._undo[-1] if count == 1 else None
        edits = self._undo[-count:]
        if any(e.box is None for e in edits):
            return None  # table edits are kept as their own steps
        starts = np.min([[b.start for b in e.box] for e in edits], axis=0)  # type: ignore[union-attr]
        stops = np.max([[b.stop for b in e.box] for e in edits], axis=0)  # type: ignore[union-attr]
        union = tuple(slice(int(a), int(b)) for a, b in zip(starts, stops))
        after = self.data[union].copy()
        before = after.copy()
        for edit in reversed(edits):
            local = tuple(slice(b.start - u.start, b.stop - u.start) for b, u in zip(edit.box, union))  # type: ignore[union-attr]
            before[local] = edit.before
        merged = Edit(description, union, before, after)  # type: ignore[arg-type]
        del self._undo[-count:]
        self._undo.append(merged)
        return merged

    def history_nbytes(self) -> int:
        """Bytes held by undo and redo history."""
        return sum(e.nbytes for e in (*self._undo, *self._redo))

    def history(self) -> list[str]:
        return [e.description for e in self._undo]

    def replay(self, edits: Iterable[Edit]) -> None:
        """Re-apply recorded edits (crash recovery): each becomes undoable again."""
        for edit in edits:
            if edit.box is not None:
                self._writable()[edit.box] = edit.after
            if edit.table_after is not None:
                self.table = edit.table_after
            self._push(edit)
            self._notify(edit.touched_labels(), edit.box)

    def mark_saved(self) -> None:
        self.dirty = False

    def entry(self, label: int) -> LabelEntry | None:
        return self.table.get(label)

    def rename(self, label: int, name: str) -> Edit | None:
        entry = self.table.get(label)
        if entry is None:
            raise KeyError(label)
        return self.set_table(f"rename '{entry.name}' to '{name}'", self.table.with_entry(replace(entry, name=name)))
