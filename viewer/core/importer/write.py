"""Writing a planned import: the series copied (or hard-linked) into a study folder, and its
``study.toml``.

Why these rules:
- **All or nothing.** The study is built in a temporary sibling folder and renamed into place
  (:func:`viewer.core.io.atomic.write_folder_atomically`); the manifest is validated by
  :func:`viewer.core.io.study.write_manifest` inside it before the rename. A failure, a
  cancel or Ctrl+C leaves the target as it was (absent if it was absent).
- **An existing folder is not replaced by accident**: a non-empty target is refused unless
  ``overwrite``; an empty one is used. A target inside a scanned folder, or holding one, is
  refused: replacing it would delete the exam being imported, and scanning it again would
  import the study into itself.
- **Layout** (from the plan): ``day-7/pet/IM00001.dcm …`` for DICOM series (files renamed in
  path order, so series from a DICOMDIR's ``IM000000`` in several folders cannot collide) and
  ``day-7/t1.nii.gz`` for NIfTI files; every path stays inside the study (PRODUCT.md §2).
- **Hard links** (``link=True``) save the copy on the same file system; where a link is refused
  (another file system, EXDEV; a file system without links) the file is copied instead, and
  once one link fails every later file is copied without trying again. A linked file is the
  same file as the exam's: editing one edits the other.
- Copied files are flushed (fsync) before the rename, like every other output of the tools.
- **Manifest keys** are the ones :mod:`viewer.core.io.study` accepts (``STUDY_KEYS``): the
  patient fields only when the tags give them, ``birth_date`` and ``day0`` as TOML dates when
  the parser takes dates, else as ISO text, and ``day0`` only when the parser knows the key.
"""

from __future__ import annotations

import errno
import os
import shutil
from datetime import date
from pathlib import Path
from typing import Any

from viewer.core.errors import ViewerError, file_error
from viewer.core.importer.exam import CancelCheck, ImportProgress
from viewer.core.importer.plan import ImportPlan
from viewer.core.io.dicom_scan import ScanCancelled

#: errno values meaning "this file system will not hard-link here": copy instead.
_NO_LINK_ERRORS = {errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


class ImportCancelled(ScanCancelled):
    """The user cancelled the copy (catch :class:`ScanCancelled` for scan and copy alike)."""


def default_study_id(out_dir: str | Path) -> str:
    """The study id when none is given: the study folder's name (no patient data in it)."""
    return Path(out_dir).resolve().name or "study"


def manifest_data(plan: ImportPlan, study_id: str) -> dict[str, Any]:
    """The manifest of a plan as plain data (paths relative to the study folder)."""
    from viewer.core.io.study import STUDY_KEYS

    study: dict[str, Any] = {"id": study_id}
    patient = plan.patient
    if patient is not None:
        for key, value in (("patient", patient.name), ("patient_id", patient.patient_id),
                           ("birth_date", patient.birth_date), ("sex", patient.sex)):
            if value and key in STUDY_KEYS:
                study[key] = _date_value(STUDY_KEYS[key], value) if isinstance(value, date) else value
    if plan.day0 is not None and "day0" in STUDY_KEYS:
        study["day0"] = _date_value(STUDY_KEYS["day0"], plan.day0)
    timepoints = []
    for tp in plan.timepoints:
        table: dict[str, Any] = {"label": tp.label}
        if tp.day is not None:
            table["day"] = tp.day
        for image in tp.images:
            table[image.role] = image.path
            if image.role == "pet":
                table.update(plan.exam.entry(image.entry_id).manifest_extra)
        timepoints.append(table)
    return {"study": study, "timepoint": timepoints}


def manifest_text(plan: ImportPlan, study_id: str) -> str:
    """The TOML text :func:`write_study` would write (for ``--dry-run``)."""
    import tomli_w

    return tomli_w.dumps(manifest_data(plan, study_id))


def check_output(out_dir: str | Path, sources: tuple[Path, ...], overwrite: bool) -> None:
    """Refuse a target that must not be written (see the module docstring).

    Raises:
        ViewerError: the target is a file, is not empty (without ``overwrite``), or overlaps
            a scanned folder.
    """
    target = Path(out_dir)
    resolved = target.resolve()
    for source in sources:
        scanned = Path(source).resolve()
        scanned_dir = scanned if scanned.is_dir() else scanned.parent
        if resolved == scanned_dir or scanned_dir in resolved.parents:
            raise file_error(target, f"is inside the scanned folder {source}; write the study elsewhere")
        if resolved in scanned.parents:
            raise file_error(target, f"holds the scanned {source}; write the study elsewhere")
    if target.exists() and not target.is_dir():
        raise file_error(target, "exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise file_error(target, "exists and is not empty; replace it with --overwrite (in the window: 'replace the study folder')")


def write_study(
    plan: ImportPlan,
    out_dir: str | Path,
    *,
    study_id: str | None = None,
    link: bool = False,
    overwrite: bool = False,
    progress: ImportProgress | None = None,
    should_cancel: CancelCheck | None = None,
) -> Path:
    """Copy (or link) the planned series into ``out_dir`` and write its ``study.toml``.

    Returns:
        The manifest path.

    Raises:
        ViewerError: the plan cannot be written (its problem), the target is refused
            (:func:`check_output`), a file cannot be copied, or the manifest is invalid.
        ImportCancelled: ``should_cancel`` returned True; nothing is left behind.
    """
    from viewer.core.io.atomic import flush_files, write_folder_atomically
    from viewer.core.io.study import MANIFEST_NAME, write_manifest

    plan.require_writable()
    target = Path(out_dir)
    study_id = study_id or default_study_id(target)
    check_output(target, plan.exam.sources, overwrite)
    jobs = _copy_jobs(plan)

    def build(folder: Path) -> None:
        linker = _Linker(link)
        made: set[Path] = set()
        placed: list[Path] = []
        for done, (source, relative) in enumerate(jobs, start=1):
            if should_cancel is not None and should_cancel():
                raise ImportCancelled("import cancelled; nothing was written")
            destination = folder / relative
            if destination.parent not in made:
                destination.parent.mkdir(parents=True, exist_ok=True)
                made.add(destination.parent)
            linker.place(source, destination)
            placed.append(destination)
            if progress is not None:
                progress("copying", done, len(jobs))
        flush_files(folder, placed)  # durable before the folder is renamed into place
        try:
            write_manifest(manifest_data(plan, study_id), folder / MANIFEST_NAME)
        except ViewerError as exc:  # name the study the user asked for, not the temporary folder
            raise ViewerError(str(exc).replace(str(folder), str(target))) from None

    write_folder_atomically(target, build, lambda t: check_output(t, plan.exam.sources, overwrite))
    return target / MANIFEST_NAME


def _copy_jobs(plan: ImportPlan) -> list[tuple[Path, str]]:
    """(source file, path relative to the study) for every file to place."""
    jobs: list[tuple[Path, str]] = []
    for _, image, entry in plan.imported():
        if entry.source == "nifti":
            jobs.append((entry.files[0], image.path))
            continue
        for index, source in enumerate(sorted(entry.files), start=1):
            jobs.append((source, f"{image.path}/IM{index:05d}.dcm"))
    return jobs


class _Linker:
    """Places files by hard link or copy; remembers when linking stopped working."""

    def __init__(self, link: bool) -> None:
        self.link = link

    def place(self, source: Path, destination: Path) -> None:
        if self.link:
            try:
                os.link(source, destination)
                return
            except OSError as exc:
                if exc.errno not in _NO_LINK_ERRORS:
                    raise file_error(source, f"cannot be linked into the study ({exc.strerror})") from None
                self.link = False
        try:
            shutil.copyfile(source, destination)  # made durable all at once by flush_files
        except OSError as exc:
            raise file_error(source, f"cannot be copied into the study ({exc.strerror or exc})") from None


def _date_value(kinds: Any, value: date) -> Any:
    """A TOML date where the parser accepts dates, else ISO text."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return value if date in kinds else value.isoformat()


__all__ = ["ImportCancelled", "check_output", "default_study_id", "manifest_data", "manifest_text", "write_study"]
