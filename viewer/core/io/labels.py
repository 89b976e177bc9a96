"""Saving and loading edited region label maps with their label table, and pointing the
study manifest at them.

A saved label map is two files side by side:

- ``<name>.nii`` / ``<name>.nii.gz``: the integer labels on the map's own voxel grid and
  affine (sform and qform, code 1), dtype kept (a uint8 map stays uint8), NIfTI intent
  "label";
- ``<name>.labels.json``: the label table (names, colours, locks)::

      {"format": "cell-therapy-viewer label table", "version": 1,
       "labels": [{"label": 1, "name": "core", "color": [230, 40, 40], "locked": false}, ...]}

Saving a timepoint's regions in a study is one transaction (:func:`save_timepoint_regions`,
PRODUCT.md §5 "nothing the user drew is ever lost"): new files under new names, the manifest
switched to them atomically, and only then the recovery journal cleared and the old files
removed; :func:`reconcile_study_files` tidies up after a crash at any point of it.
:func:`save_label_map` saves a map to a path of the caller's choice ("both or neither"). The
manifest keeps only ``regions`` and ``region_names`` (PRODUCT.md §2).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import tempfile
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import nibabel as nib
import numpy as np

from viewer.core.errors import ViewerError, file_error
from viewer.core.io.atomic import (
    atomic_path,
    current_umask,
    fsync_dir,
    write_text_atomic,
)
from viewer.core.io.manifest_edit import manifest_file as _manifest_file
from viewer.core.io.manifest_edit import read_manifest as _read_manifest
from viewer.core.io.manifest_edit import relative_to as _relative_to
from viewer.core.io.manifest_edit import resolved as _resolved
from viewer.core.io.manifest_edit import timepoints_to_change as _timepoints_to_change
from viewer.core.io.nifti import check_affine, is_nifti_path, load_nifti
from viewer.core.io.study import (
    Timepoint,
    parse_manifest,
    write_manifest,
)
from viewer.core.regions import EditableLabels, LabelEntry, LabelTable
from viewer.core.volume import Volume

if TYPE_CHECKING:  # the lock's module is imported where a save needs it: reading a table does not
    from viewer.core.io.study_lock import FileState

TABLE_FORMAT = "cell-therapy-viewer label table"
TABLE_VERSION = 1
TABLE_SUFFIX = ".labels.json"

#: NIfTI intent code NIFTI_INTENT_LABEL ("the values are labels", read by ITK-SNAP, FSLeyes).
_NIFTI_INTENT_LABEL = "label"


# -- paths -------------------------------------------------------------------------------------

def label_table_path(nifti_path: str | Path) -> Path:
    """The JSON label table beside a label map: ``regions.nii.gz`` → ``regions.labels.json``."""
    path = Path(nifti_path)
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(name + TABLE_SUFFIX)


# -- the label table as JSON --------------------------------------------------------------------

def saved_label_table(timepoint: Timepoint) -> LabelTable:
    """A timepoint's label table as saved: the JSON beside its label map (names, colours,
    locks, written by every save), else the manifest's ``region_names`` in default colours.

    The one reader for the window, ``viewer render`` and the report, so a colour chosen in
    the window is the colour of the saved study everywhere.
    """
    regions = timepoint.images.get("regions")
    if regions is not None:
        path = label_table_path(regions)
        if path.exists():
            return table_from_json(path.read_text(encoding="utf-8"), path)
    return LabelTable.from_names(dict(timepoint.region_names))


def table_to_json(table: LabelTable) -> str:
    """The JSON text of a label table (stable key order, one entry per line)."""
    rows = [
        {"label": int(e.label), "name": str(e.name), "color": [int(c) for c in e.color], "locked": bool(e.locked)}
        for e in table.entries
    ]
    document = {"format": TABLE_FORMAT, "version": TABLE_VERSION, "labels": rows}
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def table_from_json(text: str, source: str | Path) -> LabelTable:
    """Parse a label table document; any problem is a ViewerError naming ``source``."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise file_error(source, f"malformed label table JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != TABLE_FORMAT:
        raise file_error(source, f"not a label table (expected \"format\": \"{TABLE_FORMAT}\")")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise file_error(source, f"label table version must be a positive integer, got {version!r}")
    if version > TABLE_VERSION:
        raise file_error(source, f"label table version {version} is newer than this viewer reads ({TABLE_VERSION})")
    rows = document.get("labels")
    if not isinstance(rows, list):
        raise file_error(source, "label table 'labels' must be a list")
    entries: dict[int, LabelEntry] = {}
    for index, row in enumerate(rows):
        where = f"label table entry {index + 1}"
        if not isinstance(row, dict):
            raise file_error(source, f"{where} must be an object")
        unknown = set(row) - {"label", "name", "color", "locked"}
        if unknown:
            raise file_error(source, f"{where} has unknown key {min(unknown)!r}")
        label = row.get("label")
        if not isinstance(label, int) or isinstance(label, bool) or label <= 0:
            raise file_error(source, f"{where} 'label' must be a positive integer, got {label!r}")
        if label in entries:
            raise file_error(source, f"{where}: label {label} is listed twice")
        name = row.get("name")
        if not isinstance(name, str) or not name.strip():
            raise file_error(source, f"{where} 'name' must be a non-empty string")
        color = row.get("color")
        if (
            not isinstance(color, list)
            or len(color) != 3
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in color)
        ):
            raise file_error(source, f"{where} 'color' must be [r, g, b] with integers 0-255, got {color!r}")
        locked = row.get("locked", False)
        if not isinstance(locked, bool):
            raise file_error(source, f"{where} 'locked' must be true or false, got {locked!r}")
        entries[label] = LabelEntry(label, name, (color[0], color[1], color[2]), locked)
    return LabelTable(tuple(entries[k] for k in sorted(entries)))


def labels_present(data: np.ndarray) -> list[int]:
    """The non-zero labels present in a label array (bincount for small ranges: fast)."""
    array = np.asarray(data)
    if array.size == 0:
        return []
    top = int(array.max())
    if np.issubdtype(array.dtype, np.integer) and int(array.min()) >= 0 and top < 1 << 16:
        counts = np.bincount(array.ravel(), minlength=top + 1)
        return [int(v) for v in np.flatnonzero(counts) if v != 0]
    return [int(v) for v in np.unique(array) if v != 0]


# -- writing the two files --------------------------------------------------------------------

#: Suffix of every temporary file a save writes (hidden: ``.<name>.<random>.tmp``), so that
#: :func:`reconcile_study_files` recognises what a killed save left behind.
TEMP_SUFFIX = ".tmp"
#: gzip level of saved ``.nii.gz`` maps (nibabel's default: label maps compress well at 1).
_GZIP_LEVEL = 1
#: Written into the NIfTI ``descrip`` of maps this viewer saves in a study's ``regions/``
#: folder: a file is only ever removed as an orphan when it carries this mark.
VIEWER_MAP_MARK = b"cell-therapy-viewer regions"


def _label_image(editable: EditableLabels, path: Path, world_from_file: np.ndarray | None = None) -> nib.Nifti1Image:
    """The NIfTI image of a label map, validated (integer voxels, invertible affine), with
    the affine of the file's own space (``world_from_file``: where loading placed it in the
    study's reference space, PRODUCT.md §9; None: the same)."""
    from viewer.core.transforms import file_affine

    volume = editable.labels
    data = np.asarray(volume.data)
    if not np.issubdtype(data.dtype, np.integer):
        raise file_error(path, f"a label map must hold integers, got {data.dtype}")
    affine = file_affine(volume.voxel_to_world, world_from_file)
    check_affine(path, affine)
    img = nib.Nifti1Image(data, affine, dtype=data.dtype)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_intent(_NIFTI_INTENT_LABEL)
    img.header.set_slope_inter(1.0, 0.0)
    img.header["descrip"] = VIEWER_MAP_MARK
    return img


def _write_nifti(handle: BinaryIO, img: nib.Nifti1Image, compressed: bool) -> None:
    """Write a single-file NIfTI to an open file (gzip-compressed for ``.nii.gz``)."""
    payload = img.to_bytes()
    if not compressed:
        handle.write(payload)
        return
    with gzip.GzipFile(fileobj=handle, mode="wb", compresslevel=_GZIP_LEVEL, mtime=0) as stream:
        stream.write(payload)


def new_file_mode(replaced: Path | None = None) -> int:
    """The permissions a saved file gets: those of the file it replaces, else what a plain
    ``open()`` would give (0666 minus the umask) — never ``mkstemp``'s private 0600."""
    if replaced is not None:
        try:
            return replaced.stat().st_mode & 0o7777
        except OSError:
            pass
    return 0o666 & ~current_umask()


def _write_temp(folder: Path, stem: str, write: Callable[[BinaryIO], None], mode: int) -> Path:
    """A hidden temporary file in ``folder`` (``.<stem>.<random>.tmp``) written by ``write``,
    given ``mode`` and fsynced. On any failure it is removed again."""
    fd, name = tempfile.mkstemp(prefix=f".{stem}.", suffix=TEMP_SUFFIX, dir=folder)
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.chmod(temp, mode)
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise file_error(folder, f"cannot create the folder ({exc.strerror or exc})") from None


# -- saving to a chosen path ---------------------------------------------------------------------

def save_label_map(editable: EditableLabels, path: str | Path) -> Path:
    """Save the label map and its table: ``path`` (NIfTI) plus ``<name>.labels.json`` beside it.

    For a study's own regions use :func:`save_timepoint_regions` (the transaction with the
    manifest); this saves to a path of the caller's choice. The map is written on its own
    grid with its own affine and its integer dtype. Both files appear together or not at all:

    1. the JSON and the NIfTI are written to hidden temporary files in the target folder and
       fsync'ed (any failure here removes both temporaries; the old files are untouched);
    2. the JSON is renamed over its target, then the NIfTI (``os.replace``, atomic each);
    3. if the second rename fails, the previous JSON is put back (its bytes were read before
       step 2) or the new one removed when there was none — so in-process failures leave the
       previous pair intact;
    4. the folder is fsync'ed and ``editable.mark_saved()`` is called.

    Files keep the permissions of the files they replace (new ones: the umask default). A
    kill *between the two renames* leaves the new table beside the old map — names and
    colours, not drawn voxels — and the recovery journal, not yet cleared, holds every edit.

    Returns:
        The NIfTI path.

    Raises:
        ViewerError: the path is not ``.nii``/``.nii.gz``, the map is not integer, or the
            files cannot be written (the message names the file).
    """
    path = Path(path)
    if not is_nifti_path(path):
        raise file_error(path, "a label map must be saved as .nii or .nii.gz")
    img = _label_image(editable, path)
    json_path = label_table_path(path)
    json_bytes = table_to_json(editable.table).encode("utf-8")
    folder = path.parent
    _make_folder(folder)
    compressed = path.name.lower().endswith(".gz")
    tmp_json: Path | None = None
    tmp_nii: Path | None = None
    try:
        try:
            tmp_json = _write_temp(folder, json_path.name, lambda h: h.write(json_bytes),
                                   new_file_mode(json_path if json_path.exists() else None))
            tmp_nii = _write_temp(folder, path.name, lambda h: _write_nifti(h, img, compressed),
                                  new_file_mode(path if path.exists() else None))
            previous_json = json_path.read_bytes() if json_path.exists() else None
        except OSError as exc:
            raise file_error(path, f"cannot write the label map ({exc.strerror or exc})") from None

        try:
            os.replace(tmp_json, json_path)
        except OSError as exc:
            raise file_error(json_path, f"cannot write the label table ({exc.strerror or exc})") from None
        tmp_json = None
        try:
            os.replace(tmp_nii, path)
        except OSError as exc:
            _restore(json_path, previous_json)
            raise file_error(path, f"cannot write the label map ({exc.strerror or exc})") from None
        tmp_nii = None
    finally:
        for leftover in (tmp_json, tmp_nii):
            if leftover is not None:
                leftover.unlink(missing_ok=True)
    fsync_dir(folder)
    editable.mark_saved()
    return path


def _restore(json_path: Path, previous: bytes | None) -> None:
    """Put the previous label table back after the map's rename failed (best effort)."""
    try:
        if previous is None:
            json_path.unlink(missing_ok=True)
        else:
            tmp = _write_temp(json_path.parent, json_path.name, lambda h: h.write(previous), new_file_mode(json_path))
            try:
                os.replace(tmp, json_path)
            finally:
                tmp.unlink(missing_ok=True)
    except OSError:
        pass


# -- saving a timepoint's regions: one transaction -----------------------------------------------

#: Folder of the study (beside the manifest) where the window saves edited maps.
REGIONS_FOLDER = "regions"
#: ``<slug>-<8 hex of the exact label>-r<generation>`` + ``.nii.gz`` or ``.labels.json``: the
#: hash keeps "day 1" and "day-1" apart, the generation gives every save new names.
_SAVED_NAME = re.compile(
    r"^(?P<stem>[A-Za-z0-9-]{1,40}-[0-9a-f]{8})-r(?P<generation>[1-9][0-9]{0,8})(?P<ext>\.nii\.gz|\.labels\.json)$"
)
_SLUG_CHARS = 32
_HASH_CHARS = 8
#: Names tried (next generations) before a save gives up finding a free one.
_NAME_ATTEMPTS = 1000

#: The steps of :func:`save_timepoint_regions`, in order. After each one the save calls
#: :data:`SAVE_STEP_HOOK` with its name.
SAVE_STEPS: tuple[str, ...] = (
    "prepared",               # manifest read and checked, image and table built; nothing written
    "map written",            # new map in a hidden temporary file, fsynced
    "table written",          # new label table likewise
    "table published",        # the table hard-linked to its new, unused name
    "map published",          # the map likewise
    "temporaries removed",    # the temporary names unlinked
    "regions folder synced",  # the new names durable
    "manifest written",       # the new manifest in a hidden temporary file
    "manifest committed",     # renamed over study.toml, its folder fsynced: the save is done
    "journal cleared",        # editable marked saved: the recovery journal is deleted
    "old map removed",        # the previous viewer-saved map, if nothing else points at it
    "old table removed",      # and its label table
)

#: Fault-injection hook for tests, None in normal use: called with each step's name (from
#: :data:`SAVE_STEPS`) once that step is done. The save-transaction tests set it in a child
#: process to ``os.kill(os.getpid(), SIGKILL)`` at one step and check nothing is lost.
SAVE_STEP_HOOK: Callable[[str], None] | None = None


def _step(name: str) -> None:
    hook = SAVE_STEP_HOOK
    if hook is not None:
        hook(name)


def regions_stem(timepoint_label: str) -> str:
    """``day-1-<8 hex>``: a readable slug of the label plus a hash of the exact label."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", timepoint_label).strip("-")[:_SLUG_CHARS].strip("-") or "timepoint"
    digest = hashlib.sha256(timepoint_label.encode("utf-8")).hexdigest()[:_HASH_CHARS]
    return f"{slug}-{digest}"


def regions_file_name(timepoint_label: str, generation: int) -> str:
    """The map file name of one save: ``day-1-<hash>-r<generation>.nii.gz``."""
    return f"{regions_stem(timepoint_label)}-r{generation}.nii.gz"


@dataclass(frozen=True)
class SavedRegions:
    """What :func:`save_timepoint_regions` wrote.

    Attributes:
        map_path, table_path: the new label map and its table (absolute).
        manifest: the manifest now pointing at them.
        manifest_state: the manifest as written (for detecting later changes by others).
        removed: previous viewer-saved files deleted because nothing points at them.
    """

    map_path: Path
    table_path: Path
    manifest: Path
    manifest_state: FileState
    removed: tuple[Path, ...] = ()


def save_timepoint_regions(
    manifest_path: str | Path,
    timepoint_label: str,
    editable: EditableLabels,
    *,
    expected_manifest: FileState | None = None,
    all_sharing: bool = False,
    world_from_file: np.ndarray | None = None,
) -> SavedRegions:
    """Save a timepoint's edited regions into the study as one transaction.

    The order (:data:`SAVE_STEPS`) is what makes a crash at any point lose nothing:

    1. the new map and table are written to hidden temporary files in ``regions/`` and
       fsynced, then hard-linked to **new** names (:func:`regions_file_name`, next free
       generation; a link never replaces an existing file) — the map the manifest points at
       is never overwritten;
    2. the folder is fsynced, the new manifest is validated and written atomically (temporary
       file, fsync, rename) and its folder fsynced: from here the study opens with the edits;
    3. only then ``editable.mark_saved()`` clears the recovery journal;
    4. then the previous map and table are deleted, if this viewer wrote them (``regions/``,
       its name pattern and NIfTI mark) and no timepoint points at them any more. A user's
       own map (e.g. ``day7/regions.nii.gz``) is never deleted.

    Before the manifest is switched, a crash leaves the old manifest and the untouched journal
    (the edits are offered back on the next start, and the unreferenced new files and
    temporaries are removed by :func:`reconcile_study_files`); after it, the study holds the
    edits. A failure raised here (a referenced file went missing, a full disk, the manifest
    changed) removes the new files and leaves the editable unsaved, its journal intact.

    Args:
        manifest_path: ``study.toml`` or the study folder.
        timepoint_label: the ``[[timepoint]]`` whose ``regions`` is saved.
        editable: its label map and table (its ``labels.source`` becomes the new map).
        expected_manifest: the manifest as the caller read it; a manifest changed since
            raises :class:`~viewer.core.io.study_lock.StudyChanged` (None: not checked).
        all_sharing: also point every other timepoint that used the same map file at it.
        world_from_file: the timepoint's transform to the reference space (PRODUCT.md §9):
            the map is written in the timepoint's own space; None when it is the reference.

    Raises:
        ViewerError: the manifest, the map or a referenced file is wrong or cannot be
            written (one line naming the file); StudyChanged as above.
    """
    from viewer.core.io.study_lock import StudyChanged, bytes_state

    manifest_path = _manifest_file(manifest_path)
    original, raw = _read_manifest(manifest_path)
    if expected_manifest is not None and not bytes_state(manifest_path, original).same_as(expected_manifest):
        raise StudyChanged(manifest_path, "the manifest")
    root = manifest_path.parent
    folder = root / REGIONS_FOLDER
    label = str(timepoint_label).strip()
    chosen = _timepoints_to_change(raw, label, manifest_path, all_sharing)
    old_maps = {p for p in (_resolved(root, tp.get("regions")) for tp in chosen) if p is not None}
    img = _label_image(editable, folder / regions_file_name(label, 1), world_from_file)
    table_bytes = table_to_json(editable.table).encode("utf-8")
    _make_folder(folder)
    _step("prepared")

    temps: list[Path] = []
    published: list[Path] = []
    try:
        map_path, table_path = _stage_new_files(folder, label, img, table_bytes, _modes_like(old_maps), temps, published)
        new_text = _point_at(raw, chosen, f"{REGIONS_FOLDER}/{map_path.name}", editable.table)
        parse_manifest(tomllib.loads(new_text), manifest_path)  # a missing referenced file: refused here
        new_bytes = new_text.encode("utf-8")
        _commit_manifest(manifest_path, original, new_bytes)
    except BaseException:
        for path in (*published, *temps):
            path.unlink(missing_ok=True)
        raise
    state = bytes_state(manifest_path, new_bytes)
    _step("manifest committed")

    editable.labels.source = map_path
    editable.mark_saved()
    _step("journal cleared")
    removed = _remove_unreferenced(root, old_maps, tomllib.loads(new_text))
    return SavedRegions(map_path, table_path, manifest_path, state, removed)


def _modes_like(old_maps: set[Path]) -> tuple[int, int]:
    """(map mode, table mode) for the new files: those of the map and table they succeed,
    else the umask default."""
    replaced = next((p for p in sorted(old_maps) if p.is_file()), None)
    map_mode = new_file_mode(replaced)
    old_table = label_table_path(replaced) if replaced is not None else None
    return map_mode, new_file_mode(old_table) if old_table is not None and old_table.exists() else map_mode


def _stage_new_files(folder: Path, label: str, img: nib.Nifti1Image, table_bytes: bytes, modes: tuple[int, int],
                     temps: list[Path], published: list[Path]) -> tuple[Path, Path]:
    """Steps "map written" to "regions folder synced": the map and table fsynced under new
    names in ``folder`` (temporaries and final names are recorded for rollback)."""
    stem = regions_stem(label)
    try:
        temps.append(_write_temp(folder, stem, lambda h: _write_nifti(h, img, True), modes[0]))
        _step("map written")
        temps.append(_write_temp(folder, stem, lambda h: h.write(table_bytes), modes[1]))
        _step("table written")
        map_path, table_path = _publish_new_names(folder, label, temps[0], temps[1], published)
        for temp in temps:
            temp.unlink(missing_ok=True)
        _step("temporaries removed")
    except OSError as exc:
        raise file_error(folder, f"cannot write the label map ({exc.strerror or exc})") from None
    fsync_dir(folder)
    _step("regions folder synced")
    return map_path, table_path


def _publish_new_names(folder: Path, label: str, map_temp: Path, table_temp: Path,
                       published: list[Path]) -> tuple[Path, Path]:
    """Give the temporary table and map the first free generation's names.

    ``os.link`` never replaces an existing file, so neither an earlier save nor an unrelated
    file of the same name is ever overwritten; on a name in use the next generation is tried.
    File systems without hard links get the name reserved with ``O_EXCL`` and the temporary
    renamed onto it. Every final name created is appended to ``published`` (for rollback).
    """
    generation = _next_generation(folder, regions_stem(label))
    for _attempt in range(_NAME_ATTEMPTS):
        map_path = folder / regions_file_name(label, generation)
        table_path = label_table_path(map_path)
        if _claim(table_temp, table_path, published):
            _step("table published")
            if _claim(map_temp, map_path, published):
                _step("map published")
                return map_path, table_path
            published.remove(table_path)
            table_path.unlink(missing_ok=True)
        generation += 1
    raise file_error(folder, "no free file name for the label map")


def _claim(temp: Path, final: Path, published: list[Path]) -> bool:
    """Put ``temp``'s content at ``final`` if no file has that name (False if one has)."""
    try:
        os.link(temp, final)
    except FileExistsError:
        return False
    except OSError:  # no hard links here (FAT, some network shares): reserve, then rename
        try:
            os.close(os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            return False
        published.append(final)
        copy = _write_temp(final.parent, final.name, lambda h: h.write(temp.read_bytes()), temp.stat().st_mode & 0o7777)
        os.replace(copy, final)
        return True
    published.append(final)
    return True


def _next_generation(folder: Path, stem: str) -> int:
    """One more than the highest generation of this stem's saved files in ``folder``."""
    highest = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 1
    for name in names:
        match = _SAVED_NAME.match(name)
        if match and match["stem"] == stem:
            highest = max(highest, int(match["generation"]))
    return highest + 1


def _commit_manifest(manifest_path: Path, original: bytes, new_bytes: bytes) -> None:
    """Atomically replace the manifest (its permissions kept) and fsync its folder, unless
    it changed since it was read."""
    from viewer.core.io.study_lock import StudyChanged

    try:
        with atomic_path(manifest_path, suffix=TEMP_SUFFIX) as tmp:
            tmp.write_bytes(new_bytes)
            _step("manifest written")
            if manifest_path.read_bytes() != original:
                raise StudyChanged(manifest_path, "the manifest")
    except ViewerError:
        raise
    except OSError as exc:
        raise file_error(manifest_path, f"cannot write the manifest ({exc.strerror or exc})") from None
    fsync_dir(manifest_path.parent)


def _remove_unreferenced(root: Path, old_maps: set[Path], raw: Mapping[str, Any]) -> tuple[Path, ...]:
    """Delete previous viewer-saved maps (and their tables) that no timepoint points at."""
    referenced = _referenced_maps(root, raw)
    removed: list[Path] = []
    candidates = [p for p in sorted(old_maps) if p not in referenced and _is_saved_by_viewer(root, p)]
    for step, pick in (("old map removed", lambda p: p), ("old table removed", label_table_path)):
        for old in candidates:
            path = pick(old)
            try:
                if path.exists():
                    path.unlink()
                    removed.append(path)
            except OSError:
                pass  # removed on the next start by reconcile_study_files
        _step(step)
    if removed:
        fsync_dir(root / REGIONS_FOLDER)
    return tuple(removed)


def _is_saved_by_viewer(root: Path, path: Path) -> bool:
    """A file of ``regions/`` with the save name pattern and (for a map) the viewer's mark
    or no content at all (a name reserved by a killed save)."""
    try:
        if path.parent.resolve() != (root / REGIONS_FOLDER).resolve() or not _SAVED_NAME.match(path.name):
            return False
        if path.stat().st_size == 0:
            return True
        if path.name.endswith(TABLE_SUFFIX):
            return json.loads(path.read_text(encoding="utf-8")).get("format") == TABLE_FORMAT
        with gzip.open(path, "rb") as stream:
            header = stream.read(_NIFTI_HEADER_BYTES)
        return header[_DESCRIP_OFFSET:_DESCRIP_OFFSET + len(VIEWER_MAP_MARK)] == VIEWER_MAP_MARK
    except (OSError, ValueError, EOFError, AttributeError, gzip.BadGzipFile):
        return False


#: NIfTI-1 header size and the offset of its 80-byte ``descrip`` field.
_NIFTI_HEADER_BYTES = 348
_DESCRIP_OFFSET = 148


# -- after a crash -------------------------------------------------------------------------------

#: A temporary lock file younger than this may belong to a session acquiring the lock now.
_LOCK_TEMP_AGE_S = 60.0


@dataclass(frozen=True)
class ReconciledFiles:
    """What :func:`reconcile_study_files` removed."""

    temporaries: tuple[Path, ...] = ()
    orphans: tuple[Path, ...] = ()


def reconcile_study_files(manifest_path: str | Path) -> ReconciledFiles:
    """Remove what a killed save left behind, whatever the moment it died.

    - hidden temporary files of a save: ``regions/.*.tmp`` and ``.study.toml.*.tmp`` (and
      ``.study.toml.*.toml`` of an atomic manifest write), plus lock temporaries older than
      a minute;
    - orphans: maps and tables in ``regions/`` that this viewer saved (name pattern and
      mark) but no timepoint of the manifest points at — the new files of a save killed
      before the manifest was switched, or the old ones of a save killed after it.

    Call it only while holding the study's lock (no other save can be running). Edits are
    never in these files alone: before the switch the recovery journal still holds them.
    A manifest that cannot be read leaves every map in place.
    """
    manifest_path = _manifest_file(manifest_path)
    root = manifest_path.parent
    temporaries = [p for p in _study_temporaries(root, manifest_path.name) if _unlink(p)]
    orphans: list[Path] = []
    try:
        raw = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        raw = None
    folder = root / REGIONS_FOLDER
    if raw is not None and folder.is_dir():
        referenced = _referenced_maps(root, raw)
        for path in sorted(folder.iterdir()):
            match = _SAVED_NAME.match(path.name)
            if match is None:
                continue
            map_path = (folder / f"{match['stem']}-r{match['generation']}.nii.gz").resolve()
            if map_path not in referenced and _is_saved_by_viewer(root, path) and _unlink(path):
                orphans.append(path)
    if temporaries or orphans:
        fsync_dir(folder if folder.is_dir() else root)
    return ReconciledFiles(tuple(temporaries), tuple(orphans))


def _study_temporaries(root: Path, manifest_name: str) -> list[Path]:
    from viewer.core.io.study_lock import LOCK_SUFFIX

    found: list[Path] = []
    folder = root / REGIONS_FOLDER
    if folder.is_dir():
        found += [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX) and p.is_file()]
    prefix, lock_prefix = f".{manifest_name}.", f".{manifest_name}{LOCK_SUFFIX}."
    now = time.time()
    for path in root.iterdir():
        name = path.name
        if not name.startswith(prefix) or not path.is_file():
            continue
        if name.startswith(lock_prefix):
            if name.endswith(TEMP_SUFFIX) and now - _mtime(path) > _LOCK_TEMP_AGE_S:
                found.append(path)
        elif name.endswith((TEMP_SUFFIX, ".toml")):
            found.append(path)
    return found


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError:
        return False
    return True


# -- loading -----------------------------------------------------------------------------------

def load_label_map(
    path: str | Path,
    role: str = "regions",
    fallback_names: Mapping[int, str] | None = None,
) -> tuple[Volume, LabelTable]:
    """Read a label map and the label table beside it.

    Without a ``<name>.labels.json`` the table is built from the labels present in the map:
    named from ``fallback_names`` (e.g. the manifest's ``region_names``) where given, else
    "label N", with the default colours.

    Raises:
        ViewerError: the NIfTI cannot be read or is not a label map (non-integer values,
            negative labels), or the JSON beside it is malformed (naming that file).
    """
    path = Path(path)
    volume = load_nifti(path, role=role)
    volume = _as_labels(volume, role)
    json_path = label_table_path(path)
    if json_path.exists():
        try:
            text = json_path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise file_error(json_path, "is not UTF-8 text") from None
        except OSError as exc:
            raise file_error(json_path, f"cannot read the label table ({exc.strerror or exc})") from None
        return volume, table_from_json(text, json_path)
    names = {int(k): str(v) for k, v in (fallback_names or {}).items()}
    present = labels_present(volume.data)
    return volume, LabelTable.from_names({label: names.get(label, f"label {label}") for label in present})


def _as_labels(volume: Volume, role: str) -> Volume:
    """Integer files keep their dtype; float files must hold whole numbers (→ int32)."""
    data = volume.data
    if not np.issubdtype(data.dtype, np.integer):
        array = np.asarray(data)
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise file_error(volume.source or volume.name, "a region label map must hold whole numbers only")
        data = array.astype(np.int32)
    if np.issubdtype(data.dtype, np.signedinteger) and data.size and int(np.min(data)) < 0:
        raise file_error(volume.source or volume.name, "a region label map must not hold negative labels")
    if data is volume.data and volume.role == role:
        return volume
    return Volume(data, volume.voxel_to_world, role, "label" if role == "regions" else "", volume.name, volume.source, volume.meta)


# -- the manifest ------------------------------------------------------------------------------

def update_manifest_regions(
    manifest_path: str | Path,
    timepoint_label: str,
    regions_relpath: str | Path,
    table: LabelTable,
    *,
    all_sharing: bool = False,
) -> Path:
    """Point a timepoint's ``regions`` at a saved map and set its ``region_names`` from ``table``.

    (The window saves through :func:`save_timepoint_regions`, which calls the same rewrite
    inside its transaction.) Everything else the manifest holds is kept: every other key
    and table, every other timepoint, ``[[model]]`` entries, ``[calibration]``, and the order
    of keys as far as ``tomli_w`` allows (it writes a table's plain keys before its
    sub-tables, so a ``region_names`` inline table moves to a ``[timepoint.region_names]``
    sub-table). **Comments and the original formatting are not kept**: the manifest is
    parsed with ``tomllib`` and written back with ``tomli_w``, which cannot carry comments.

    The new manifest is validated (:func:`write_manifest`: every referenced file must exist,
    so save the map first) and written atomically (permissions kept, folder fsynced); on any
    error the old manifest is untouched.

    Args:
        manifest_path: ``study.toml`` or the study folder.
        timepoint_label: which ``[[timepoint]]`` to change.
        regions_relpath: the saved map, relative to the manifest folder (an absolute path is
            made relative; written with ``/`` separators).
        table: its label table; ``region_names`` becomes ``{label = name}`` of every entry
            (removed when the table is empty).
        all_sharing: also update every other timepoint whose ``regions`` named the same file
            as this timepoint's (one map drawn for several sessions).

    Returns:
        The manifest path.
    """
    manifest_path = _manifest_file(manifest_path)
    _original, raw = _read_manifest(manifest_path)
    chosen = _timepoints_to_change(raw, timepoint_label, manifest_path, all_sharing)
    relpath = _relative_to(manifest_path.parent, Path(regions_relpath))
    _point_at(raw, chosen, relpath, table)
    written = write_manifest(raw, manifest_path)
    fsync_dir(manifest_path.parent)
    return written


def _point_at(raw: dict[str, Any], chosen: list[dict[str, Any]], relpath: str, table: LabelTable) -> str:
    """Set ``regions`` and ``region_names`` of the chosen timepoints in ``raw``; return the
    TOML text of the whole manifest."""
    import tomli_w

    names = {str(e.label): e.name for e in table.entries if e.label > 0}
    for tp in chosen:
        tp["regions"] = relpath
        tp.pop("regions_from", None)  # its own map now, no longer another timepoint's
        if names:
            tp["region_names"] = names
        else:
            tp.pop("region_names", None)
    return tomli_w.dumps(raw)


def _referenced_maps(root: Path, raw: Mapping[str, Any]) -> set[Path]:
    """Every map file a timepoint of the manifest points at (resolved)."""
    timepoints = raw.get("timepoint")
    if not isinstance(timepoints, list):
        return set()
    found = (_resolved(root, tp.get("regions")) for tp in timepoints if isinstance(tp, dict))
    return {path for path in found if path is not None}


# -- region statistics -------------------------------------------------------------------------

def export_region_table_csv(stats_csv_text: str, path: str | Path) -> Path:
    """Write region statistics CSV text (from ``StudyStats.to_csv()``) atomically, UTF-8."""
    path = Path(path)
    try:
        return write_text_atomic(path, stats_csv_text)
    except OSError as exc:
        raise file_error(path, f"cannot write the CSV ({exc.strerror or exc})") from None
