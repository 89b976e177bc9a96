"""What a scanned exam holds: patients' series, each with its proposed role or skip reason.

These are immutable descriptions: the exam browser shows them and the user's edits go into a
separate override mapping (:func:`viewer.core.importer.plan.plan_import`), so a rescan is never
needed to change a role and an edit can always be undone by dropping it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Mapping

from viewer.core.importer.roles import RoleGuess


@dataclass(frozen=True)
class PatientFacts:
    """Who a series belongs to, as its tags (or BIDS subject) say. Protected health information."""

    name: str = ""
    patient_id: str = ""
    birth_date: date | None = None
    sex: str = ""

    @property
    def named(self) -> bool:
        """The series says whose it is (a PatientID or a name)."""
        return bool(self.patient_id or self.name)

    @property
    def key(self) -> str:
        """What tells patients apart: PatientID, else the name (an exam may lack IDs)."""
        return self.patient_id or self.name or "(no patient ID or name)"

    def describe(self) -> str:
        """"ID (Name)" for messages listing patients."""
        if self.patient_id and self.name:
            return f"{self.patient_id} ({self.name})"
        return self.key


@dataclass(frozen=True)
class VolumeGeometry:
    """Grid of a series known from its headers: shape (i, j, k) and voxel size (mm)."""

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]

    @property
    def voxel_mm3(self) -> float:
        x, y, z = self.spacing_mm
        return x * y * z

    @property
    def n_slices(self) -> int:
        return int(self.shape[2])

    def describe(self) -> str:
        """"1 mm" when isotropic, else "0.9×0.9×5 mm"."""
        values = [f"{v:.3g}" for v in self.spacing_mm]
        return f"{values[0]} mm" if len(set(values)) == 1 else "×".join(values) + " mm"


@dataclass(frozen=True)
class SeriesEntry:
    """One series of the exam (a DICOM series or one NIfTI file) and its proposal.

    Attributes:
        entry_id: stable identifier (SeriesInstanceUID, or ``nifti:<path>``); the key of
            role overrides.
        source: "dicom" or "nifti".
        patient: whose series it is.
        date: study date (DICOM) or acquisition date (BIDS scans/sessions tables), if known.
        session: BIDS session label ("1" for ses-1), "" for DICOM.
        study_uid: StudyInstanceUID ("" for NIfTI).
        series_number: SeriesNumber, if given.
        modality, nucleus, description: as shown in the table.
        n_files, n_images: files of the series and 2-D images they hold.
        folder: where its files are (what error messages name).
        files: the files a study gets (image files only; the NIfTI file).
        geometry: grid from the headers, None when it could not be placed (or was not tried).
        guess: the role the tags propose, or why the series is skipped.
        candidate: the role the tags point to even when the series is skipped for a later
            reason (its geometry, its SUV), so messages can say "the 19F series cannot be …".
        problem: why a series that has a candidate role cannot be used ('' when it can).
        has_pixels: it holds images (structured reports and the like do not).
        derived: ImageType says DERIVED (a reformat, a computed map), not ORIGINAL.
        manifest_extra: timepoint keys a NIfTI PET needs (pet_units, pet_dose).
    """

    entry_id: str
    source: str
    patient: PatientFacts
    date: date | None
    session: str
    study_uid: str
    series_number: int | None
    modality: str
    nucleus: str
    description: str
    n_files: int
    n_images: int
    folder: Path
    files: tuple[Path, ...]
    geometry: VolumeGeometry | None
    guess: RoleGuess
    candidate: str | None = None
    problem: str = ""
    has_pixels: bool = True
    derived: bool = False
    manifest_extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def role(self) -> str | None:
        """The proposed role (None: skipped, see :attr:`guess`)."""
        return self.guess.role

    @property
    def usable(self) -> bool:
        """It can be given a role: it has pixels and one grid places it."""
        return self.has_pixels and self.geometry is not None and not self.problem

    def label(self) -> str:
        """How messages name it: "series 5 (T1 MPRAGE)" or the NIfTI file name."""
        if self.source == "nifti":
            return self.files[0].name if self.files else self.entry_id
        number = f"series {self.series_number}" if self.series_number is not None else "series (no number)"
        return f"{number} ({self.description})" if self.description else number

    def summary(self) -> str:
        """Label and voxel size, as tie-break messages quote it."""
        if self.geometry is None:
            return self.label()
        inner = self.label()
        size = self.geometry.describe()
        return f"{inner[:-1]}, {size})" if inner.endswith(")") else f"{inner} ({size})"


@dataclass(frozen=True)
class Exam:
    """Everything found under the paths a user gave, in table order.

    Attributes:
        sources: the paths scanned.
        entries: every series found (image or not), sorted by patient, date, series number.
        files_seen: how many files were looked at.
    """

    sources: tuple[Path, ...]
    entries: tuple[SeriesEntry, ...]
    files_seen: int

    def entry(self, entry_id: str) -> SeriesEntry:
        """The entry with this id (KeyError when there is none)."""
        for entry in self.entries:
            if entry.entry_id == entry_id:
                return entry
        raise KeyError(entry_id)

    def patients(self) -> tuple[PatientFacts, ...]:
        """Distinct patients of the series that could be imported (those with a role or a
        candidate role). A series without patient ID or name (an anonymised export, a NIfTI
        file not named by BIDS) names no patient and does not count."""
        found: dict[str, PatientFacts] = {}
        for entry in self.entries:
            if (entry.role or entry.candidate) and entry.patient.named:
                found.setdefault(entry.patient.key, entry.patient)
        return tuple(found.values())

    def where(self) -> str:
        """The scanned paths as error messages name them."""
        return ", ".join(str(p) for p in self.sources)


__all__ = ["Exam", "PatientFacts", "SeriesEntry", "VolumeGeometry"]
