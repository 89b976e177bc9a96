"""NIfTI files named by BIDS (``sub-01_ses-1_T1w.nii.gz``) as exam entries.

Why these rules:
- Only the name, the JSON sidecar beside the file and the dataset's TSV tables are read, with
  nibabel reading the header alone (no voxels), so a BIDS folder is scanned as fast as a DICOM
  one and the entry carries its grid for the tie-break and the "one 3-D volume" check.
- The role comes from the suffix (the weighting the dataset's author declared: T1w, T2w, pet,
  ...) and from the entities: ``nuc-19F``/``acq-19F`` (or ``23Na``, any case) for the
  nucleus, and the description rules of :mod:`.roles` on the entities and the sidecar's
  SeriesDescription (``desc-dR2star``, ``_ADC``, ``desc-Tmax``).
- **Sessions become timepoints by date** when the dataset says when they were acquired: the
  file's ``acq_time`` in ``sub-X[_ses-Y]_scans.tsv``, else the session's ``acq_time`` in
  ``sub-X_sessions.tsv``. Without either, sessions are timepoints in ``ses`` order (sorted by
  label), labelled "ses-1", "ses-2", with no ``day``: a session label is not a number of days,
  and inventing one would put the wrong day on every result.
- The patient is the BIDS subject (``patient_id = "sub-01"``); ``sex`` comes from
  ``participants.tsv`` when it has that column. BIDS data are normally de-identified, so there
  is no name or birth date.
- A NIfTI PET needs units for SUV (PRODUCT.md §2): ``Units`` "SUV" (or "g/mL") gives
  ``pet_units = "SUV"``; "Bq/mL" gives ``pet_units = "Bq/mL"`` with ``pet_dose`` from
  ``InjectedRadioactivity`` (+ ``InjectedRadioactivityUnits``) and ``BodyWeight`` only when the
  images are decay-corrected to the injection (``ImageDecayCorrected`` true and
  ``ImageDecayCorrectionTime`` equal to ``InjectionStart``), since the manifest's dose then
  needs no decay term; otherwise the file is skipped with the missing field named.
- A NIfTI file not named by BIDS is listed and skipped: neither its role nor its timepoint
  can be known from a free name.
"""

from __future__ import annotations

import csv
import json
import math
import re
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Mapping, Sequence

from viewer.core.errors import ViewerError
from viewer.core.importer.entries import PatientFacts, SeriesEntry, VolumeGeometry
from viewer.core.importer.roles import (
    RoleGuess,
    SeriesFacts,
    guess_role,
    normalise_nucleus,
)

_NAME = re.compile(
    r"^sub-(?P<sub>[A-Za-z0-9]+)(?P<entities>(?:_[A-Za-z0-9]+-[A-Za-z0-9]+)*)_(?P<suffix>[A-Za-z0-9]+)"
    r"(?P<ext>\.nii(?:\.gz)?)$"
)
#: Bq per unit of InjectedRadioactivityUnits.
_ACTIVITY_BQ = {"bq": 1.0, "kbq": 1e3, "mbq": 1e6, "gbq": 1e9, "uci": 3.7e4, "µci": 3.7e4, "mci": 3.7e7}
_SEX = {"m": "M", "male": "M", "f": "F", "female": "F", "o": "O", "other": "O"}
_NUCLEUS_ENTITIES = ("nuc", "acq")


@dataclass(frozen=True)
class BidsName:
    """The parts of a BIDS file name."""

    subject: str
    entities: Mapping[str, str]
    suffix: str
    extension: str

    @property
    def session(self) -> str:
        return self.entities.get("ses", "")


def parse_bids_name(name: str) -> BidsName | None:
    """``sub-01_ses-1_acq-x_T1w.nii.gz`` → its subject, entities, suffix; None if not BIDS."""
    match = _NAME.match(name)
    if match is None:
        return None
    entities = dict(part.split("-", 1) for part in match.group("entities").split("_") if part)
    return BidsName(match.group("sub"), entities, match.group("suffix"), match.group("ext"))


def nifti_entries(files: Sequence[Path]) -> list[SeriesEntry]:
    """One entry per NIfTI file (BIDS-named or not), headers only."""
    tables: dict[Path, list[dict[str, str]]] = {}  # TSV files read once per scan
    return [_entry(Path(path), tables) for path in files]


def _entry(path: Path, tables: dict[Path, list[dict[str, str]]]) -> SeriesEntry:
    name = parse_bids_name(path.name)
    geometry, problem = header_geometry(path)
    if name is None:
        guess = RoleGuess(None, "NIfTI file not named by BIDS (sub-<label>[_ses-<label>]_…_<suffix>.nii.gz): its "
                                "role and timepoint are unknown", "not-bids")
        return _make(path, PatientFacts(), None, "", "", "", "", guess, geometry, problem, {})
    sidecar = _sidecar(path)
    subject_dir = _subject_dir(path, name.subject)
    patient = PatientFacts(patient_id=f"sub-{name.subject}", sex=_participant_sex(subject_dir, name.subject, tables))
    facts = _facts(name, sidecar)
    guess = guess_role(facts)
    extra: dict[str, Any] = {}
    if guess.role == "pet" and not problem:
        extra, problem = pet_manifest_keys(sidecar)
    when = _acquisition_date(path, name, subject_dir, tables)
    return _make(path, patient, when, name.session, facts.modality, facts.nucleus, _description(name, sidecar),
                 guess, geometry, problem, extra)


def _make(path: Path, patient: PatientFacts, when: date | None, session: str, modality: str, nucleus: str,
          description: str, guess: RoleGuess, geometry: VolumeGeometry | None, problem: str,
          extra: Mapping[str, Any]) -> SeriesEntry:
    candidate = guess.role
    if candidate is not None and problem:
        guess = RoleGuess(None, problem, "geometry" if geometry is None else "pet-units", guess.tier, guess.t1_weighted)
    return SeriesEntry(
        entry_id=f"nifti:{path}", source="nifti", patient=patient, date=when, session=session, study_uid="",
        series_number=None, modality=modality or "MR", nucleus=nucleus, description=description, n_files=1,
        n_images=geometry.n_slices if geometry else 0, folder=path.parent, files=(path,), geometry=geometry,
        guess=guess, candidate=candidate, problem=problem if candidate is not None else "",
        has_pixels=True, manifest_extra=extra,
    )


def header_geometry(path: Path) -> tuple[VolumeGeometry | None, str]:
    """The grid from the NIfTI header, or (None, why it is not one usable 3-D volume)."""
    import nibabel as nib
    import numpy as np

    from viewer.core.io.nifti import check_affine

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = nib.load(str(path))
            shape = tuple(int(n) for n in img.shape)
            affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:  # nibabel raises many types for bad files
        return None, f"not a readable NIfTI image ({' '.join(str(exc).split())[:160]})"
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) == 4:
        return None, f"is 4-D with {shape[3]} volumes; a layer is one 3-D volume"
    if len(shape) != 3 or min(shape) < 1:
        return None, f"has shape {shape}; a layer is one 3-D volume"
    try:
        check_affine(path, affine)
    except ViewerError as exc:
        return None, str(exc).removeprefix(f"{path}: ")
    spacing = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    return VolumeGeometry(shape, spacing), ""  # type: ignore[arg-type]


def pet_manifest_keys(sidecar: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """(timepoint keys for a NIfTI PET, '') or ({}, why SUV cannot be had) — see the docstring."""
    units = str(sidecar.get("Units", "")).strip()
    if units.lower() in ("suv", "g/ml"):
        return {"pet_units": "SUV"}, ""
    if units.lower() != "bq/ml":
        return {}, f"BIDS PET sidecar Units is {units or 'missing'}; SUV needs Units SUV or Bq/mL"
    dose = _number(sidecar.get("InjectedRadioactivity"))
    scale = _ACTIVITY_BQ.get(str(sidecar.get("InjectedRadioactivityUnits", "")).strip().lower())
    weight = _number(sidecar.get("BodyWeight"))
    if dose is None or scale is None or dose <= 0:
        return {}, "BIDS PET in Bq/mL without InjectedRadioactivity and its units: no SUV"
    if weight is None or weight <= 0:
        return {}, "BIDS PET in Bq/mL without BodyWeight: no SUV"
    corrected_to = _number(sidecar.get("ImageDecayCorrectionTime"))
    injection = _number(sidecar.get("InjectionStart"))
    if sidecar.get("ImageDecayCorrected") is not True or corrected_to is None or injection is None \
            or abs(corrected_to - injection) > 1e-6:
        return {}, ("BIDS PET in Bq/mL not decay-corrected to the injection (ImageDecayCorrected, "
                    "ImageDecayCorrectionTime = InjectionStart): the dose would need a decay term")
    return {"pet_units": "Bq/mL",
            "pet_dose": {"dose_bq": dose * scale, "weight_kg": weight, "decay_correction": "ADMIN"}}, ""


# -- facts --------------------------------------------------------------------------------------
def _facts(name: BidsName, sidecar: Mapping[str, Any]) -> SeriesFacts:
    modality = str(sidecar.get("Modality", "") or "").strip().upper()
    if name.suffix == "pet":
        modality = "PT"
    return SeriesFacts(
        modality=modality or "MR", nucleus=_nucleus(name, sidecar),
        description=" ".join([_entity_text(name), str(sidecar.get("SeriesDescription", "") or "")]).strip(),
        image_type=tuple(str(v).strip().upper() for v in _as_list(sidecar.get("ImageType"))),
        bids_suffix=name.suffix,
    )


def _nucleus(name: BidsName, sidecar: Mapping[str, Any]) -> str:
    for key in _NUCLEUS_ENTITIES:
        value = name.entities.get(key, "")
        if normalise_nucleus(value) in ("19F", "23NA", "1H"):
            return value
    for key in ("ImagedNucleus", "ResonantNucleus"):
        if sidecar.get(key):
            return str(sidecar[key]).strip()
    return ""


def _entity_text(name: BidsName) -> str:
    """Entities but subject, session and run, then the suffix: "acq-mprage T1w"."""
    parts = [f"{k}-{v}" for k, v in name.entities.items() if k not in ("ses", "run")]
    return " ".join([*parts, name.suffix])


def _description(name: BidsName, sidecar: Mapping[str, Any]) -> str:
    return str(sidecar.get("SeriesDescription", "") or "").strip() or _entity_text(name)


def _sidecar(path: Path) -> dict[str, Any]:
    stem = path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.name[: -len(".nii")]
    json_path = path.with_name(stem + ".json")
    if not json_path.is_file():
        return {}
    try:
        value = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


# -- dates and subjects ---------------------------------------------------------------------------
def _subject_dir(path: Path, subject: str) -> Path | None:
    for parent in path.parents:
        if parent.name == f"sub-{subject}":
            return parent
    return None


def _acquisition_date(path: Path, name: BidsName, subject_dir: Path | None,
                      tables: dict[Path, list[dict[str, str]]]) -> date | None:
    """acq_time of the file (scans.tsv), else of its session (sessions.tsv), else None."""
    if subject_dir is None:
        return None
    session_dir = subject_dir / f"ses-{name.session}" if name.session else subject_dir
    prefix = f"sub-{name.subject}" + (f"_ses-{name.session}" if name.session else "")
    scans = session_dir / f"{prefix}_scans.tsv"
    try:
        relative = path.relative_to(session_dir).as_posix()
    except ValueError:
        relative = path.name
    for row in _tsv(scans, tables):
        if row.get("filename", "").strip() == relative:
            found = _iso_date(row.get("acq_time", ""))
            if found is not None:
                return found
    if name.session:
        for row in _tsv(subject_dir / f"sub-{name.subject}_sessions.tsv", tables):
            if row.get("session_id", "").strip() == f"ses-{name.session}":
                return _iso_date(row.get("acq_time", ""))
    return None


def _participant_sex(subject_dir: Path | None, subject: str, tables: dict[Path, list[dict[str, str]]]) -> str:
    if subject_dir is None:
        return ""
    for row in _tsv(subject_dir.parent / "participants.tsv", tables):
        if row.get("participant_id", "").strip() == f"sub-{subject}":
            return _SEX.get(row.get("sex", "").strip().lower(), "")
    return ""


def _tsv(path: Path, tables: dict[Path, list[dict[str, str]]]) -> list[dict[str, str]]:
    if path not in tables:
        try:
            with open(path, encoding="utf-8", newline="") as handle:
                tables[path] = [dict(row) for row in csv.DictReader(handle, delimiter="\t")]
        except (OSError, UnicodeDecodeError, csv.Error):
            tables[path] = []
    return tables[path]


def _iso_date(text: str) -> date | None:
    try:
        return date.fromisoformat(str(text).strip()[:10])
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


__all__ = ["BidsName", "header_geometry", "nifti_entries", "parse_bids_name", "pet_manifest_keys"]
