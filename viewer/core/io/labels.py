"""Saving and loading edited region label maps with their label table, and pointing the
study manifest at them.

A saved label map is two files side by side:

- ``<name>.nii`` / ``<name>.nii.gz``: the integer labels on the map's own voxel grid and
  affine (sform and qform, code 1), dtype kept (a uint8 map stays uint8), NIfTI intent
  "label";
- ``<name>.labels.json``: the label table (names, colours, locks)::

      {"format": "cell-therapy-viewer label table", "version": 1,
       "labels": [{"label": 1, "name": "core", "color": [230, 40, 40], "locked": false}, ...]}

Both are written "both or neither" (see :func:`save_label_map`). The manifest keeps only
``regions`` and ``region_names`` (PRODUCT.md §2); :func:`update_manifest_regions` rewrites it.
"""

from __future__ import annotations

import json
import os
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from viewer.core.errors import file_error
from viewer.core.io.atomic import fsync_dir, write_text_atomic
from viewer.core.io.nifti import check_affine, is_nifti_path, load_nifti
from viewer.core.io.study import MANIFEST_NAME, write_manifest
from viewer.core.regions import EditableLabels, LabelEntry, LabelTable
from viewer.core.volume import Volume

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


# -- saving ------------------------------------------------------------------------------------

def save_label_map(editable: EditableLabels, path: str | Path) -> Path:
    """Save the label map and its table: ``path`` (NIfTI) plus ``<name>.labels.json`` beside it.

    The map is written on its own grid with its own affine and its integer dtype. Both files
    appear together or not at all:

    1. the JSON and the NIfTI are written to temporary files in the target folder and
       fsync'ed (any failure here removes both temporaries; the old files are untouched);
    2. the JSON is renamed over its target, then the NIfTI (``os.replace``, atomic each);
    3. if the second rename fails, the previous JSON is put back (its bytes were read before
       step 2) or the new one removed when there was none — so in-process failures leave the
       previous pair intact;
    4. the folder is fsync'ed and ``editable.mark_saved()`` is called.

    The one window that is not "both or neither" is a power cut or kill *between the two
    renames* (microseconds): the new table then sits beside the old map. It is the milder
    half to lose — names and colours, not drawn voxels — and the recovery journal (not yet
    cleared, since ``mark_saved`` had not run) still holds every edit.

    Returns:
        The NIfTI path.

    Raises:
        ViewerError: the path is not ``.nii``/``.nii.gz``, the map is not integer, or the
            files cannot be written (the message names the file).
    """
    path = Path(path)
    if not is_nifti_path(path):
        raise file_error(path, "a label map must be saved as .nii or .nii.gz")
    volume = editable.labels
    data = np.asarray(volume.data)
    if not np.issubdtype(data.dtype, np.integer):
        raise file_error(path, f"a label map must hold integers, got {data.dtype}")
    affine = np.asarray(volume.voxel_to_world, dtype=np.float64)
    check_affine(path, affine)
    json_path = label_table_path(path)
    json_text = table_to_json(editable.table)

    img = nib.Nifti1Image(data, affine, dtype=data.dtype)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_intent(_NIFTI_INTENT_LABEL)
    img.header.set_slope_inter(1.0, 0.0)

    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise file_error(folder, f"cannot create the folder ({exc.strerror or exc})") from None
    nii_suffix = ".nii.gz" if path.name.lower().endswith(".gz") else ".nii"
    tmp_json: Path | None = None
    tmp_nii: Path | None = None
    try:
        try:
            tmp_json = _temp_beside(json_path, ".json")
            tmp_json.write_text(json_text, encoding="utf-8")
            _fsync_file(tmp_json)
            tmp_nii = _temp_beside(path, nii_suffix)
            nib.save(img, str(tmp_nii))
            _fsync_file(tmp_nii)
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


def _temp_beside(target: Path, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    return Path(name)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _restore(json_path: Path, previous: bytes | None) -> None:
    """Put the previous label table back after the map's rename failed (best effort)."""
    try:
        if previous is None:
            json_path.unlink(missing_ok=True)
        else:
            tmp = _temp_beside(json_path, ".json")
            try:
                tmp.write_bytes(previous)
                os.replace(tmp, json_path)
            finally:
                tmp.unlink(missing_ok=True)
    except OSError:
        pass


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

    Everything else the manifest holds is kept: every other key and table, every other
    timepoint, ``[[model]]`` entries, ``[calibration]``, and the order of keys as far as
    ``tomli_w`` allows (it writes a table's plain keys before its sub-tables, so a
    ``region_names`` inline table moves to a ``[timepoint.region_names]`` sub-table).
    **Comments and the original formatting are not kept**: the manifest is parsed with
    ``tomllib`` and written back with ``tomli_w``, which cannot carry comments.

    The new manifest is validated (:func:`write_manifest`: every referenced file must exist,
    so save the map first) and written atomically; on any error the old manifest is untouched.

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
    manifest_path = Path(manifest_path)
    if manifest_path.is_dir():
        manifest_path = manifest_path / MANIFEST_NAME
    if not manifest_path.exists():
        raise file_error(manifest_path, "file not found")
    try:
        raw: dict[str, Any] = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise file_error(manifest_path, "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise file_error(manifest_path, f"malformed TOML ({exc})") from None

    timepoints = raw.get("timepoint")
    if not isinstance(timepoints, list):
        raise file_error(manifest_path, "no [[timepoint]] array")
    wanted = str(timepoint_label).strip()
    target = next(
        (tp for tp in timepoints if isinstance(tp, dict) and str(tp.get("label", "")).strip() == wanted), None
    )
    if target is None:
        known = ", ".join(repr(tp.get("label")) for tp in timepoints if isinstance(tp, dict))
        raise file_error(manifest_path, f"no timepoint {wanted!r} (the study has {known})")

    root = manifest_path.parent
    relpath = _relative_to(root, Path(regions_relpath))
    names = {str(e.label): e.name for e in table.entries if e.label > 0}

    def resolved(value: Any) -> Path | None:
        return (root / value).resolve() if isinstance(value, str) and value.strip() else None

    old_file = resolved(target.get("regions"))
    chosen = [target]
    if all_sharing and old_file is not None:
        chosen += [tp for tp in timepoints if isinstance(tp, dict) and tp is not target and resolved(tp.get("regions")) == old_file]
    for tp in chosen:
        tp["regions"] = relpath
        if names:
            tp["region_names"] = names
        else:
            tp.pop("region_names", None)
    return write_manifest(raw, manifest_path)


def _relative_to(root: Path, path: Path) -> str:
    """``path`` relative to the study folder, both with symlinks resolved: a study opened
    through a linked folder must not get ``../link/…`` (refused by the manifest's
    stay-inside rule, PRODUCT.md §2)."""
    if path.is_absolute():
        try:
            path = Path(os.path.relpath(path.resolve(), root.resolve()))
        except ValueError:  # another drive on Windows: keep absolute (refused by the manifest)
            return path.as_posix()
    return path.as_posix()


# -- region statistics -------------------------------------------------------------------------

def export_region_table_csv(stats_csv_text: str, path: str | Path) -> Path:
    """Write region statistics CSV text (from ``StudyStats.to_csv()``) atomically, UTF-8."""
    path = Path(path)
    try:
        return write_text_atomic(path, stats_csv_text)
    except OSError as exc:
        raise file_error(path, f"cannot write the CSV ({exc.strerror or exc})") from None
