"""Changing a study's manifest in place: reading it, finding a ``[[timepoint]]``, keeping paths
inside the study folder, and pointing a timepoint at images added in the window.

Every rewrite parses the manifest with ``tomllib`` and writes it back with ``tomli_w`` through
:func:`viewer.core.io.study.write_manifest` (validated first, written atomically): comments and
the original formatting are lost, every key and table is kept (documented in PRODUCT.md §2's
notes on `viewer import` and region saving). Region maps are repointed by
:mod:`viewer.core.io.labels`, which uses the helpers here.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from viewer.core.errors import ViewerError, file_error
from viewer.core.io.atomic import fsync_dir
from viewer.core.io.study import MANIFEST_NAME, write_manifest


def manifest_file(manifest_path: str | Path) -> Path:
    """The manifest of a study given as its folder or its manifest."""
    manifest_path = Path(manifest_path)
    if manifest_path.is_dir():
        manifest_path = manifest_path / MANIFEST_NAME
    return manifest_path


def read_manifest(manifest_path: Path) -> tuple[bytes, dict[str, Any]]:
    """The manifest's bytes and parsed TOML (ViewerError naming it when it cannot be read)."""
    try:
        original = manifest_path.read_bytes()
    except FileNotFoundError:
        raise file_error(manifest_path, "file not found") from None
    except OSError as exc:
        raise file_error(manifest_path, f"cannot read the manifest ({exc.strerror or exc})") from None
    try:
        raw: dict[str, Any] = tomllib.loads(original.decode("utf-8"))
    except UnicodeDecodeError:
        raise file_error(manifest_path, "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise file_error(manifest_path, f"malformed TOML ({exc})") from None
    return original, raw


def timepoints_to_change(raw: dict[str, Any], timepoint_label: str, manifest_path: Path,
                          all_sharing: bool) -> list[dict[str, Any]]:
    """The ``[[timepoint]]`` tables to repoint: the one labelled ``timepoint_label``, plus
    those sharing its map file when ``all_sharing``."""
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
    old_file = resolved(root, target.get("regions"))
    chosen = [target]
    if all_sharing and old_file is not None:
        chosen += [tp for tp in timepoints
                   if isinstance(tp, dict) and tp is not target and resolved(root, tp.get("regions")) == old_file]
    return chosen


def resolved(root: Path, value: Any) -> Path | None:
    return (root / value).resolve() if isinstance(value, str) and value.strip() else None


def relative_to(root: Path, path: Path) -> str:
    """``path`` relative to the study folder, both with symlinks resolved: a study opened
    through a linked folder must not get ``../link/…`` (refused by the manifest's
    stay-inside rule, PRODUCT.md §2)."""
    if path.is_absolute():
        try:
            path = Path(os.path.relpath(path.resolve(), root.resolve()))
        except ValueError:  # another drive on Windows: keep absolute (refused by the manifest)
            return path.as_posix()
    return path.as_posix()

def inside(root: Path, path: Path) -> bool:
    """True when ``path`` lies in the study folder ``root`` (symlinks resolved)."""
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return False
    return True


def _folder_name(label: str) -> str:
    """A timepoint label as a folder name ("day 7" → "day_7")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "timepoint"


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    stem, suffix = name, ""
    for ending in (".nii.gz", ".nii"):
        if name.endswith(ending):
            stem, suffix = name[: -len(ending)], ending
    number = 2
    while target.exists():
        target = folder / f"{stem}-{number}{suffix}"
        number += 1
    return target


def _copy_into(source: Path, folder: Path) -> Path:
    """Copy a file or a DICOM folder into ``folder`` under a free name, through a hidden
    temporary (never a half-copied image under its final name)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_name(folder, source.name)
    temp = Path(tempfile.mkdtemp(prefix=".adding-", dir=folder))
    try:
        staged = temp / source.name
        if source.is_dir():
            shutil.copytree(source, staged)
        else:
            shutil.copy2(source, staged)
        os.replace(staged, target)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target


def add_images_to_manifest(manifest_path: str | Path, timepoint_label: str, images: Mapping[str, Path],
                           keys: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Point a timepoint's ``role = "path"`` entries at images added in the window.

    An image outside the study folder is first copied into ``<study>/<timepoint>/`` (the
    manifest's paths stay inside the study, PRODUCT.md §2). ``keys`` are further timepoint
    keys to set (e.g. ``pet_units = "SUV"``, ``other_units``). All or nothing: when the
    manifest cannot be written, the copies are removed and the manifest is as it was.

    Returns:
        role → the image's path as the manifest now names it (absolute).
    """
    manifest_path = manifest_file(manifest_path)
    root = manifest_path.parent
    _original, raw = read_manifest(manifest_path)
    (table,) = timepoints_to_change(raw, timepoint_label, manifest_path, all_sharing=False)
    copied: list[Path] = []
    placed: dict[str, Path] = {}
    try:
        for role, source in images.items():
            source = Path(source)
            if not source.exists():
                raise file_error(source, "no longer exists; it was not added to the manifest")
            path = source if inside(root, source) else _copy_into(source, root / _folder_name(timepoint_label))
            if path != source:
                copied.append(path)
            table[role] = relative_to(root, path.resolve())
            placed[role] = path.resolve()
        for key, value in (keys or {}).items():
            table[key] = value
        write_manifest(raw, manifest_path)
        fsync_dir(root)
    except (ViewerError, OSError) as exc:
        for path in copied:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if isinstance(exc, ViewerError):
            raise
        raise file_error(manifest_path, f"the added images were not saved ({exc.strerror or exc})") from None
    return placed


def write_transforms(manifest_path: str | Path, changes: list[tuple[str, str | None, Any]]) -> None:
    """Set transforms of timepoints (PRODUCT.md §9) in one validated atomic rewrite.

    Args:
        changes: (timepoint label, role or None, 4×4 matrix as nested lists or None):
            role None sets the timepoint's ``transform``, a role its ``image_transforms``
            entry; a None matrix removes the key (the identity).
    """
    manifest_path = manifest_file(manifest_path)
    _original, raw = read_manifest(manifest_path)
    for label, role, matrix in changes:
        (table,) = timepoints_to_change(raw, label, manifest_path, all_sharing=False)
        if role is None:
            if matrix is None:
                table.pop("transform", None)
            else:
                table["transform"] = matrix
            continue
        transforms = dict(table.get("image_transforms", {}))
        if matrix is None:
            transforms.pop(role, None)
        else:
            transforms[role] = matrix
        if transforms:
            table["image_transforms"] = transforms
        else:
            table.pop("image_transforms", None)
    write_manifest(raw, manifest_path)
