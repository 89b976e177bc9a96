"""The study manifest (``study.toml``, PRODUCT.md §2) and loading a study's images.

The manifest is the only study format the tools accept. It is validated strictly: an unknown
key is refused rather than ignored, because a misspelt calibration key silently falling back
to a default would change cell counts without anyone noticing. Every error names the manifest
and the key, on one line.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from viewer.core.errors import ViewerError, file_error
from viewer.core.io.nifti import check_nifti_header, is_nifti_path, load_nifti
from viewer.core.volume import ROLES, Volume

MANIFEST_NAME = "study.toml"
#: Largest manifest read (bytes): a real one is a few kB; a link to /dev/zero is endless.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: Largest region label: label maps are mapped onto other grids as int32.
LARGEST_LABEL = int(np.iinfo(np.int32).max)

#: Most distinct regions one label map (or one region_names table) may hold. Every region is
#: measured on every image of its timepoint and is a row of the window's table and of the
#: report, at a cost that grows with its extent: 1000 regions keep `viewer stats` within
#: seconds on a small study even when every region is scattered over the whole grid, and are
#: far more than a clinician draws (core, penumbra, injection sites, references: tens). A map
#: with more (a parcellation, or an image loaded as regions) is refused with this limit named.
MAX_REGIONS = 1000

#: A region_names key: an unsigned decimal integer, surrounding spaces allowed (" 1").
_LABEL_KEY = re.compile(r"\s*([0-9]+)\s*")

#: Image keys of a timepoint, in display order (anatomy first, regions last).
IMAGE_ROLES: tuple[str, ...] = ROLES

STUDY_KEYS = {
    "id": str,
    "patient": str,
    "patient_id": str,
    "birth_date": (date, str),
    "sex": str,
    "day0": (date, str),
    "study_date": (date, str),
    "condition": str,
    "therapy": str,
    "injected_cells": (int, float),
    "description": str,
}

PET_UNITS = ("SUV", "Bq/mL")

PET_DOSE_KEYS = {
    "dose_bq": (int, float),
    "weight_kg": (int, float),
    "half_life_s": (int, float),
    "injection_time": str,
    "scan_time": str,
    "decay_correction": str,
}

#: pet_dose keys that are physical amounts and must be > 0 (Bq, kg, s): a negative weight
#: would give negative SUVs, a zero dose or half-life a division by zero.
PET_DOSE_POSITIVE_KEYS = ("dose_bq", "weight_kg", "half_life_s")

#: What a NIfTI PET in Bq/mL is decay-corrected to, as DICOM DecayCorrection says it:
#: START — the scan start, so the dose is decayed from injection_time to scan_time with
#: half_life_s (the default: these three are then required); ADMIN — the injection, so the
#: dose is not decayed (no times needed).
PET_DECAY_CORRECTIONS = ("START", "ADMIN")

#: Accepted forms of pet_dose.injection_time and scan_time.
PET_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%H:%M:%S")


@dataclass(frozen=True)
class Calibration:
    """Calibration constants of a study (PRODUCT.md §2–3); ``None`` means "not given".

    Units are in the names: atoms per cell, mM, 1/(mM·s), fmol per cell, pg per cell.
    Quantities without a physically safe default stay ``None`` so that results needing them
    become ``null`` with a note instead of a plausible-looking number.
    """

    fluorine_atoms_per_cell: float | None = None
    reference_fluorine_mM: float | None = None
    detection_snr: float = 3.5
    min_cluster_voxels: int = 3
    gd_r1_per_mM_s: float | None = None
    gd_fmol_per_cell: float | None = None
    dead_fraction_alert: float = 0.2
    fe_pg_per_cell: float | None = None
    spio_r2star_per_mM_s: float | None = None


@dataclass(frozen=True)
class ModelEntry:
    """A user prediction model: an ONNX file and its JSON model card (PRODUCT.md §4)."""

    onnx: Path
    card: Path


@dataclass(frozen=True)
class PetDose:
    """Dose facts for a NIfTI PET in Bq/mL (SUV = Bq/mL · weight / decayed dose).

    Units in the names: Bq, kg, s; times as in :data:`PET_TIME_FORMATS`; ``decay_correction``
    one of :data:`PET_DECAY_CORRECTIONS` (None: START).
    """

    dose_bq: float | None = None
    weight_kg: float | None = None
    half_life_s: float | None = None
    injection_time: str | None = None
    scan_time: str | None = None
    decay_correction: str | None = None


@dataclass(frozen=True)
class Timepoint:
    """One imaging session: its images by role and its region names."""

    label: str
    day: float | None
    images: Mapping[str, Path]
    region_names: Mapping[int, str] = field(default_factory=dict)
    pet_units: str | None = None
    pet_dose: PetDose | None = None
    #: units of the ``other`` image (free text, e.g. "ms" for a T2 map; "" when not given)
    other_units: str = ""
    #: this timepoint's world → the reference world (PRODUCT.md §9; None: the identity)
    transform: np.ndarray | None = field(default=None, compare=False)
    #: per role, that image's world → this timepoint's world (None entries are not stored)
    image_transforms: Mapping[str, np.ndarray] = field(default_factory=dict, compare=False)
    #: the timepoint whose regions this one measures (``regions_from``), carried through both
    #: timepoints' transforms; ``images["regions"]`` and ``region_names`` are then that one's
    regions_from: str | None = None

    def has(self, role: str) -> bool:
        return role in self.images

    def world_from_image(self, role: str) -> np.ndarray | None:
        """The transform from an image's own world to this timepoint's world (None: identity)."""
        return self.image_transforms.get(role)

    def region_name(self, label: int) -> str:
        """Name of a label; labels missing from the table are called "label N"."""
        return self.region_names.get(int(label), f"label {int(label)}")


@dataclass(frozen=True)
class Study:
    """A parsed manifest. Image paths are absolute (resolved against the manifest folder)."""

    id: str
    manifest: Path | None
    info: Mapping[str, Any]
    calibration: Calibration
    timepoints: tuple[Timepoint, ...]
    models: tuple[ModelEntry, ...] = ()

    @property
    def root(self) -> Path | None:
        return self.manifest.parent if self.manifest else None

    def timepoint(self, label: str) -> Timepoint:
        """The timepoint with this label, or a ViewerError listing the labels there are."""
        for tp in self.timepoints:
            if tp.label == label:
                return tp
        known = ", ".join(repr(tp.label) for tp in self.timepoints)
        where = self.manifest or self.id
        raise ViewerError(f"{where}: no timepoint {label!r} (the study has {known})")


# -- parsing ---------------------------------------------------------------------------------

def load_study(path: str | Path) -> Study:
    """Parse and validate a ``study.toml`` (or a folder holding one).

    Only the manifest is read; images are opened later by :func:`load_timepoint`. Referenced
    files are checked for existence here so a study with a missing file fails at once.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.exists():
        raise file_error(path, "file not found")
    try:
        raw = tomllib.loads(_manifest_text(path))
    except UnicodeDecodeError:
        raise file_error(path, "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise file_error(path, f"malformed TOML ({exc})") from None
    return parse_manifest(raw, path)


def _manifest_text(path: Path) -> str:
    """The manifest's text: a regular file (links followed) of at most MAX_MANIFEST_BYTES.

    A FIFO would block the read until some writer appears and a device (/dev/zero) never ends,
    so anything but a regular file is refused before it is opened.
    """
    if not path.is_file():
        raise file_error(path, "is not a regular file (a manifest is a TOML text file)")
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise file_error(path, f"cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise file_error(path, f"is larger than {MAX_MANIFEST_BYTES // (1024 * 1024)} MB; a manifest is a small text file")
    return data.decode("utf-8")


def parse_manifest(raw: Mapping[str, Any], path: Path) -> Study:
    """Validate the decoded TOML of a manifest located at ``path``."""
    allowed_top = {"study", "calibration", "model", "timepoint"}
    _check_keys(path, "", raw, allowed_top)
    study_table = _table(path, raw, "study", required=True)
    _check_keys(path, "[study]", study_table, set(STUDY_KEYS))
    info: dict[str, Any] = {}
    for key, kinds in STUDY_KEYS.items():
        if key in study_table:
            info[key] = _typed(path, f"[study] {key}", study_table[key], kinds)
    if "id" not in info or not str(info["id"]).strip():
        raise file_error(path, "[study] id is required")
    _normalise_dates(path, info)
    if "injected_cells" in info:
        _positive(path, "[study] injected_cells", info["injected_cells"])

    calibration = _parse_calibration(path, _table(path, raw, "calibration", required=False))
    models = tuple(_parse_model(path, i, entry) for i, entry in enumerate(_array(path, raw, "model")))
    timepoint_tables = _array(path, raw, "timepoint")
    if not timepoint_tables:
        raise file_error(path, "at least one [[timepoint]] is required")
    timepoints = tuple(_parse_timepoint(path, i, t) for i, t in enumerate(timepoint_tables))
    labels = [tp.label for tp in timepoints]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise file_error(path, f"[[timepoint]] label {duplicates[0]!r} is used more than once")
    timepoints = _resolve_regions_from(path, timepoints)
    return Study(str(info["id"]), path, info, calibration, timepoints, models)


#: Keys of [study] holding calendar dates: TOML dates (``1970-01-02``) or ISO strings.
DATE_KEYS = ("birth_date", "day0")


def _normalise_dates(path: Path, info: dict[str, Any]) -> None:
    """Dates become ISO ``YYYY-MM-DD`` strings in ``info`` (one form for report and scrubber).

    ``study_date`` is the older name of ``day0`` (the transplantation date, PRODUCT.md §2):
    still read, stored as ``day0``; giving both is refused as ambiguous.
    """
    if "study_date" in info:
        if "day0" in info:
            raise file_error(path, "[study] gives both day0 and study_date (its older name); keep day0")
        info["day0"] = info.pop("study_date")
    for key in DATE_KEYS:
        if key in info:
            info[key] = _iso_date(path, f"[study] {key}", info[key])


def _iso_date(path: Path, where: str, value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    try:
        return date.fromisoformat(str(value).strip()).isoformat()
    except ValueError:
        raise file_error(path, f"{where} must be a date like 1970-01-02, got {value!r}") from None


def study_day0(study: Study) -> date | None:
    """The transplantation date (day 0) of a study, if its manifest gives one."""
    value = study.info.get("day0")
    return date.fromisoformat(value) if value else None


def _parse_calibration(path: Path, table: Mapping[str, Any]) -> Calibration:
    kinds = {f.name: f for f in fields(Calibration)}
    _check_keys(path, "[calibration]", table, set(kinds))
    values: dict[str, Any] = {}
    for key, value in table.items():
        where = f"[calibration] {key}"
        if key == "min_cluster_voxels":
            number = _typed(path, where, value, int)
            if number < 1:
                raise file_error(path, f"{where} must be at least 1, got {number}")
        else:
            number = float(_typed(path, where, value, (int, float)))
            if key == "dead_fraction_alert":
                if not 0.0 < number <= 1.0:
                    raise file_error(path, f"{where} must be in (0, 1], got {number}")
            else:
                _positive(path, where, number)
        values[key] = number
    return Calibration(**values)


def _parse_model(path: Path, index: int, table: Any) -> ModelEntry:
    where = f"[[model]] {index + 1}"
    if not isinstance(table, dict):
        raise file_error(path, f"{where} must be a table")
    _check_keys(path, where, table, {"onnx", "card"})
    for key, what in (("onnx", "the ONNX file"), ("card", "the model card JSON")):
        if key not in table:
            raise file_error(path, f"{where} needs '{key}' ({what})")
    onnx = _existing(path, where, "onnx", table, kind="model")
    card = _existing(path, where, "card", table, kind="model")
    return ModelEntry(onnx, card)


def _parse_timepoint(path: Path, index: int, table: Any) -> Timepoint:
    where = f"[[timepoint]] {index + 1}"
    if not isinstance(table, dict):
        raise file_error(path, f"{where} must be a table")
    allowed = {"label", "day", "region_names", "pet_units", "pet_dose", "other_units", "transform",
               "image_transforms", "regions_from", *IMAGE_ROLES}
    _check_keys(path, where, table, allowed)
    label = table.get("label")
    if not isinstance(label, str) or not label.strip():
        raise file_error(path, f"{where}: 'label' is required (a non-empty string)")
    where = f"[[timepoint]] {label!r}"
    day = table.get("day")
    if day is not None:
        day = float(_typed(path, f"{where} day", day, (int, float)))
    if "anatomical" not in table:
        raise file_error(path, f"{where}: 'anatomical' image is required")
    images = {role: _existing(path, where, role, table) for role in IMAGE_ROLES if role in table}

    region_names = _parse_region_names(path, where, table.get("region_names", {}))
    if region_names and "regions" not in images and table.get("regions_from") is None:
        raise file_error(path, f"{where}: region_names given without a 'regions' image")

    pet_units = table.get("pet_units")
    if pet_units is not None and pet_units not in PET_UNITS:
        raise file_error(path, f"{where} pet_units must be one of {', '.join(PET_UNITS)}, got {pet_units!r}")
    pet_dose = _parse_pet_dose(path, where, table["pet_dose"]) if "pet_dose" in table else None
    if "pet" in images and is_nifti_path(images["pet"]):
        if pet_units is None:
            raise file_error(path, f"{where}: a NIfTI 'pet' needs pet_units (\"SUV\" or \"Bq/mL\")")
        if pet_units == "Bq/mL":
            pet_suv_factor(f"{path}: {where}", pet_dose)  # refuses what cannot give an SUV
    other_units = table.get("other_units", "")
    if not isinstance(other_units, str) or len(other_units) > 40 or "\n" in other_units:
        raise file_error(path, f"{where} other_units must be a short text (at most 40 characters)")
    if other_units and "other" not in images:
        raise file_error(path, f"{where}: other_units given without an 'other' image")
    transform, image_transforms = _parse_transforms(path, where, table, images)
    regions_from = table.get("regions_from")
    if regions_from is not None:
        if not isinstance(regions_from, str) or not regions_from.strip():
            raise file_error(path, f"{where} regions_from must be the label of another timepoint")
        if "regions" in images or region_names:
            raise file_error(path, f"{where}: regions_from and regions (or region_names) cannot both be given")
        regions_from = regions_from.strip()
    return Timepoint(label.strip(), day, images, region_names, pet_units, pet_dose, other_units.strip(),
                     transform, image_transforms, regions_from)


def _parse_transforms(path: Path, where: str, table: Mapping[str, Any],
                      images: Mapping[str, Path]) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """``transform`` and ``image_transforms`` of a timepoint table (PRODUCT.md §9)."""
    from viewer.core.transforms import TransformError, as_transform, is_identity

    try:
        transform = as_transform(table["transform"], f"{where} transform") if "transform" in table else None
        raw = table.get("image_transforms", {})
        if not isinstance(raw, Mapping):
            raise TransformError(f"{where} image_transforms must be a table of role = 4×4 array")
        image_transforms = {}
        for role, value in raw.items():
            if role == "anatomical":
                raise TransformError(f"{where} image_transforms: the anatomy defines the timepoint's world "
                                     "(move the timepoint with 'transform' instead)")
            if role not in images:
                raise TransformError(f"{where} image_transforms.{role}: the timepoint has no {role!r} image")
            matrix = as_transform(value, f"{where} image_transforms.{role}")
            if not is_identity(matrix):
                image_transforms[role] = matrix
    except TransformError as exc:
        raise file_error(path, str(exc)) from None
    return (None if is_identity(transform) else transform), image_transforms


def _resolve_regions_from(path: Path, timepoints: tuple[Timepoint, ...]) -> tuple[Timepoint, ...]:
    """A timepoint with ``regions_from`` measures that timepoint's map and names: it gets them
    here (the source must have its own ``regions``: no chains, no cycles)."""
    by_label = {tp.label: tp for tp in timepoints}
    resolved = []
    for timepoint in timepoints:
        source_label = timepoint.regions_from
        if source_label is None:
            resolved.append(timepoint)
            continue
        source = by_label.get(source_label)
        where = f"[[timepoint]] {timepoint.label!r} regions_from"
        if source is None:
            raise file_error(path, f"{where}: no timepoint {source_label!r} (the study has {', '.join(map(repr, by_label))})")
        if source is timepoint:
            raise file_error(path, f"{where} names the timepoint itself")
        if "regions" not in source.images:
            raise file_error(path, f"{where}: timepoint {source_label!r} has no 'regions' of its own to carry")
        resolved.append(replace(timepoint, images={**timepoint.images, "regions": source.images["regions"]},
                                region_names=dict(source.region_names)))
    return tuple(resolved)


def _parse_region_names(path: Path, where: str, names: Any) -> dict[int, str]:
    """``{label: name}`` from a timepoint's region_names table.

    Keys are decimal integers (spaces around them allowed); two keys meaning the same label
    (" 1" and "01") are refused naming both, since one name would silently replace the other.
    Forms ``int()`` would also take but nobody means as a label ("1_0" → 10, "+1") are refused.
    """
    if not isinstance(names, dict):
        raise file_error(path, f"{where} region_names must be a table like {{ 1 = \"core\" }}")
    if len(names) > MAX_REGIONS:
        raise file_error(path, f"{where} region_names names {len(names)} regions; at most {MAX_REGIONS} are supported")
    region_names: dict[int, str] = {}
    keys: dict[int, str] = {}
    for key, name in names.items():
        match = _LABEL_KEY.fullmatch(key)
        if match is None:
            raise file_error(path, f"{where} region_names key {key!r} is not an integer label")
        digits = match.group(1).lstrip("0") or "0"
        number = int(digits) if len(digits) <= len(str(LARGEST_LABEL)) else LARGEST_LABEL + 1
        if number <= 0:
            raise file_error(path, f"{where} region_names label {number} must be positive (0 is unlabelled)")
        if number > LARGEST_LABEL:
            raise file_error(path, f"{where} region_names key {key.strip()[:20]!r} is beyond the largest label "
                                   f"{LARGEST_LABEL}")
        if number in keys:
            raise file_error(path, f"{where} region_names keys {keys[number]!r} and {key!r} both name label {number}")
        if not isinstance(name, str) or not name.strip():
            raise file_error(path, f"{where} region_names.{key} must be a non-empty string")
        keys[number] = key
        region_names[number] = name.strip()
    return region_names


def _parse_pet_dose(path: Path, where: str, table: Any) -> PetDose:
    """A timepoint's pet_dose table: known keys, types, positive amounts, valid times."""
    if not isinstance(table, dict):
        raise file_error(path, f"{where} pet_dose must be a table")
    _check_keys(path, f"{where} pet_dose", table, set(PET_DOSE_KEYS))
    values = {k: _typed(path, f"{where} pet_dose.{k}", v, PET_DOSE_KEYS[k]) for k, v in table.items()}
    for key in PET_DOSE_POSITIVE_KEYS:
        if key in values:
            _positive(path, f"{where} pet_dose.{key}", values[key])
    for key in ("injection_time", "scan_time"):
        if key in values:
            _pet_time(f"{path}: {where}", key, values[key])
    correction = values.get("decay_correction")
    if correction is not None and correction not in PET_DECAY_CORRECTIONS:
        raise file_error(path, f"{where} pet_dose.decay_correction must be one of {', '.join(PET_DECAY_CORRECTIONS)}, "
                               f"got {correction!r}")
    return PetDose(**values)


def _pet_time(where: str, key: str, text: str) -> datetime:
    for pattern in PET_TIME_FORMATS:
        try:
            return datetime.strptime(text.strip(), pattern)
        except ValueError:
            continue
    raise ViewerError(f"{where} pet_dose.{key} {text!r} is not HH:MM:SS or YYYY-MM-DDTHH:MM:SS")


def pet_suv_factor(where: str, dose: PetDose | None) -> float:
    """SUV per Bq/mL of a NIfTI PET: weight[g] / (dose[Bq] · decay), or a one-line error.

    decay = 2^(−Δt / half_life_s), Δt from injection_time to scan_time, for images
    decay-corrected to the scan start (``decay_correction`` START, the default); 1 for ADMIN.
    PRODUCT.md §2/§3: Bq/mL needs dose, weight *and* times — without the times the dose would
    silently not be decayed (a 60-min F-18 uptake makes that a 31 % error in every SUV).
    """
    def need(key: str, why: str) -> Any:
        value = getattr(dose, key) if dose is not None else None
        if value is None:
            raise ViewerError(f"{where}: PET in Bq/mL needs pet_dose.{key} {why}")
        return value

    dose_bq = float(need("dose_bq", "to compute SUV"))
    weight_kg = float(need("weight_kg", "to compute SUV"))
    decay = 1.0
    if (dose.decay_correction if dose is not None else None) != "ADMIN":
        why = ("to decay the dose to the scan (or pet_dose.decay_correction = \"ADMIN\" when the image is "
               "decay-corrected to the injection time)")
        injection = _pet_time(where, "injection_time", need("injection_time", why))
        scan = _pet_time(where, "scan_time", need("scan_time", why))
        half_life_s = float(need("half_life_s", why))
        if (injection.year == 1900) != (scan.year == 1900):
            raise ViewerError(f"{where}: pet_dose injection_time and scan_time must both have a date or both not")
        delta_s = (scan - injection).total_seconds()
        if delta_s < 0:
            raise ViewerError(f"{where}: pet_dose.scan_time is before pet_dose.injection_time")
        decay = 2.0 ** (-delta_s / half_life_s)
    factor = weight_kg * 1000.0 / (dose_bq * decay) if dose_bq * decay > 0 else math.inf
    if not math.isfinite(factor):
        raise ViewerError(f"{where}: pet_dose gives no finite SUV factor (pet_dose.dose_bq {dose_bq:g} Bq decayed "
                          f"by {decay:.3g} over the uptake time, pet_dose.weight_kg {weight_kg:g} kg)")
    return factor


# -- validation helpers ----------------------------------------------------------------------

def _check_keys(path: Path, where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            prefix = f"{where} " if where else ""
            raise file_error(path, f"{prefix}unknown key {key!r} (expected one of {', '.join(sorted(allowed))})")


def _table(path: Path, raw: Mapping[str, Any], key: str, required: bool) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        if required:
            raise file_error(path, f"[{key}] table is required")
        return {}
    if not isinstance(value, dict):
        raise file_error(path, f"{key} must be a table [{key}]")
    return value


def _array(path: Path, raw: Mapping[str, Any], key: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise file_error(path, f"{key} must be an array of tables [[{key}]]")
    return value


def _typed(path: Path, where: str, value: Any, kinds: Any) -> Any:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise file_error(path, f"{where} must be {expected}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise file_error(path, f"{where} must be finite, got {value!r}")
    return value


def _positive(path: Path, where: str, value: float) -> None:
    if not value > 0:
        raise file_error(path, f"{where} must be positive, got {value!r}")


def _existing(path: Path, where: str, key: str, table: Mapping[str, Any], kind: str = "image") -> Path:
    """The file or folder a manifest entry names, resolved, inside the study folder and present.

    PRODUCT.md §2: paths are relative to the manifest and stay inside its folder, so a study
    copied from elsewhere cannot make the tools read (or print into a report) outside files.
    Checked in order, the first failure being the one-line error:

    - the text: not absolute, and no ``..`` climbing above the manifest folder (``sub/../x``
      stays inside and is fine; ``sub/../../x`` is refused);
    - where it really leads: the resolved path (every symlink followed) must lie inside the
      resolved study folder. A symlink inside the study that points outside is refused like
      ``../``; a link to another place inside the study is fine. Hard links cannot be told
      from files and are allowed (``viewer import`` may hard-link data in);
    - it exists; and for a folder (a DICOM series, read recursively), no symlink in it leads
      outside either.

    ``kind`` ("image", "model") names what the paths are in the message.
    """
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise file_error(path, f"{where} {key} must be a relative path string")
    entry = f"{where} {key}: {value}"
    _check_relative_inside(path, entry, value, kind)
    root = _resolved(path, entry, path.parent)
    target = _resolved(path, entry, root / value)
    if not target.is_relative_to(root):
        raise file_error(path, f"{entry} leads outside the study folder (a link to {target}); "
                               f"{kind} paths must stay inside it, copy the file into the study")
    if not target.exists():
        raise file_error(path, f"{entry} not found ({target})")
    if target.is_dir():
        _check_folder_links_inside(path, entry, root, target, kind)
    return target


def _check_relative_inside(path: Path, entry: str, value: str, kind: str) -> None:
    """Refuse, from the text alone, an absolute path or one whose ``..`` climb out."""
    if PurePath(value).anchor:
        raise file_error(path, f"{entry} is an absolute path; {kind} paths must be relative to the study folder")
    normal = os.path.normpath(value)
    if normal == os.pardir or normal.startswith(os.pardir + os.sep):
        raise file_error(path, f"{entry} climbs out of the study folder (..); {kind} paths must stay inside it")


def _resolved(path: Path, entry: str, candidate: Path) -> Path:
    """``candidate`` with every symlink followed, or a one-line error (a loop, a NUL byte)."""
    try:
        return candidate.resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise file_error(path, f"{entry} cannot be resolved ({exc})") from None


def _check_folder_links_inside(path: Path, entry: str, root: Path, folder: Path, kind: str) -> None:
    """Refuse a folder holding a symlink (file or folder) that leads outside the study.

    Only symlinks can lead out of a folder that is itself inside, so this lists names and
    follows links only; nothing is read. Linked folders are not descended (a link inside
    the study is checked where it points).
    """
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in (*dirnames, *filenames):
            link = Path(dirpath) / name
            if not link.is_symlink():
                continue
            target = _resolved(path, entry, link)
            if not target.is_relative_to(root):
                inside = link.relative_to(folder).as_posix()
                raise file_error(path, f"{entry}: {inside} in it is a link to {target}, outside the study folder; "
                                       f"{kind} paths must stay inside it, copy the file into the study")


# -- images ----------------------------------------------------------------------------------

def load_image(path: Path, role: str, name: str = "") -> Volume:
    """Open a NIfTI file, a DICOM series (folder, DICOMDIR or file) as a Volume of the given role.

    Anything else is refused by the DICOM reader: "is not a DICOM image file (expected …)".
    """
    path = Path(path)
    if is_nifti_path(path) and not path.is_dir():
        return load_nifti(path, role=role, name=name)
    from viewer.core.io.dicom import load_dicom_series

    # a folder of DICOM files, a DICOMDIR, or one DICOM file (enhanced multi-frame, MOSAIC)
    return load_dicom_series(path, role=role, name=name)


def load_timepoint(study: Study, timepoint: Timepoint, voxels_of: Collection[str] | None = None) -> dict[str, Volume]:
    """Open every image of a timepoint, keyed by role, anatomy first, placed in the study's
    reference space (PRODUCT.md §9: :func:`world_from_file` composed into each volume's
    voxel→world; the volume's ``meta["world_from_file"]`` keeps it for saving back).

    PET in NIfTI is converted to SUV here when the manifest says Bq/mL; region maps are
    checked to hold whole numbers and converted to int32.

    With ``voxels_of`` (roles), only those images are read and returned; every other one is
    checked as far as it can be without its voxels (:func:`check_image`), so a command that
    draws three layers does not inflate six more, yet still refuses a study whose other
    images are broken in their headers or manifest facts.
    """
    volumes: dict[str, Volume] = {}
    for role in IMAGE_ROLES:
        if role not in timepoint.images:
            continue
        if voxels_of is not None and role not in voxels_of:
            check_image(timepoint, role)
            continue
        name = f"{timepoint.label} {role}"
        volume = load_image(timepoint.images[role], role, name)
        if role == "regions":
            volume = _as_label_volume(volume)
        elif role == "pet" and volume.meta.get("format") == "nifti":
            volume = _nifti_pet_to_suv(study, timepoint, volume)
        elif role == "other":
            volume.units = timepoint.other_units
        volumes[role] = placed(volume, world_from_file(study, timepoint, role))
    return volumes


def check_image(timepoint: Timepoint, role: str) -> None:
    """The checks :func:`load_timepoint` makes of one image that need not its voxels: a NIfTI
    file's header (:func:`viewer.core.io.nifti.check_nifti_header`; a NIfTI PET's dose facts
    were checked with the manifest); a DICOM series is read whole (its checks need every
    file's tags).

    Raises:
        ViewerError: the problem, naming the file or the manifest entry.
    """
    path = Path(timepoint.images[role])
    if not (is_nifti_path(path) and not path.is_dir()):
        load_image(path, role)
        return
    check_nifti_header(path)


def world_from_file(study: Study, timepoint: Timepoint, role: str) -> np.ndarray | None:
    """The transform from an image file's world to the study's reference world: the
    timepoint's ``transform`` after the image's ``image_transforms`` entry; for regions carried
    with ``regions_from``, the source timepoint's (the map lies in that session's space).
    None: the file is in the reference space already."""
    from viewer.core.transforms import compose, is_identity

    if role == "regions" and timepoint.regions_from is not None:
        timepoint = study.timepoint(timepoint.regions_from)
    matrix = compose(timepoint.transform, timepoint.world_from_image(role))
    return None if is_identity(matrix) else matrix


def placed(volume: Volume, world_from: np.ndarray | None) -> Volume:
    """``volume`` moved into another world by ``world_from`` (its voxel→world composed; the
    data untouched, so sampling stays exact); itself when there is nothing to move."""
    if world_from is None:
        return volume
    meta = {**volume.meta, "world_from_file": np.asarray(world_from, dtype=np.float64)}
    return Volume(volume.data, np.asarray(world_from, dtype=np.float64) @ volume.voxel_to_world, volume.role,
                  volume.units, volume.name, volume.source, meta)


def placed_anew(volume: Volume, world_from: np.ndarray | None) -> Volume:
    """A loaded (placed) volume placed by another transform from its file's world: what a
    changed registration does to an open image (its data untouched)."""
    from viewer.core.transforms import file_affine

    meta = {key: value for key, value in volume.meta.items() if key != "world_from_file"}
    in_file = Volume(volume.data, file_affine(volume.voxel_to_world, volume.meta.get("world_from_file")), volume.role,
                     volume.units, volume.name, volume.source, meta)
    return placed(in_file, world_from)


def check_overlay_role(role: str) -> None:
    """An added image may play any role but the anatomy (the study's base)."""
    if role not in IMAGE_ROLES or role == "anatomical":
        raise ViewerError(f"an added image's role must be one of {', '.join(r for r in IMAGE_ROLES if r != 'anatomical')}"
                          f" (the anatomy is the study's base: open it as a study), got {role!r}")


def load_overlay(path: str | Path, role: str, label: str, anatomy: Volume, units: str = "") -> Volume:
    """Open an image a reader adds to a timepoint on screen (File ▸ Add image) as ``role``.

    The role's own rules hold as when the manifest names it: a label map must hold whole
    labels, a DICOM PET is read in SUV from its tags, and a NIfTI PET is taken to be in SUV
    already (a NIfTI carries no dose; say so in the manifest to convert Bq/mL). ``units`` are
    the ``other`` image's. An image that does not overlap the anatomy in world space is
    refused: it would show nowhere and measure nothing.

    Raises:
        ViewerError: one line naming the file.
    """
    check_overlay_role(role)
    path = Path(path)
    volume = load_image(path, role, f"{label} {role}")
    if role == "regions":
        volume = _as_label_volume(volume)
    elif role == "pet" and volume.meta.get("format") == "nifti":
        volume.units = "SUV"
        volume.meta["suv_method"] = "NIfTI added in the window: taken to be in SUV"
    elif role == "other":
        volume.units = units.strip()
    low, high = volume.world_bounds()
    anatomy_low, anatomy_high = anatomy.world_bounds()
    if np.any(high < anatomy_low) or np.any(low > anatomy_high):
        raise file_error(path, "lies outside the anatomy in world space (no voxel overlaps it); is it of this patient "
                               "and this session?")
    return volume


def _as_label_volume(volume: Volume) -> Volume:
    """Integer label map: integer files keep their dtype (a uint8 map of a 512³ grid stays
    134 MB instead of 537 MB as int32); float files must hold whole numbers and become int32.
    Labels must lie in 0..LARGEST_LABEL, and at most :data:`MAX_REGIONS` distinct ones."""
    data = np.asarray(volume.data)
    if np.issubdtype(data.dtype, np.integer):
        labels = data
    else:
        if not np.all(np.isfinite(data)) or not np.all(data == np.round(data)):
            raise file_error(volume.source or volume.name, "a region label map must hold whole numbers only")
        if np.abs(data).max() > LARGEST_LABEL:
            raise file_error(volume.source or volume.name, f"a region label map must hold labels up to {LARGEST_LABEL}, "
                                                           f"got {float(np.abs(data).max()):.0f}")
        labels = data.astype(np.int32)
    # an unsigned map cannot hold a negative label, nor one of 8-16 bits a label above the
    # largest: no pass over its voxels (a 512×512×300 uint8 map is 79 MB)
    if labels.dtype.kind == "i" and labels.min() < 0:
        raise file_error(volume.source or volume.name, "a region label map must not hold negative labels")
    if np.iinfo(labels.dtype).max > LARGEST_LABEL and int(labels.max()) > LARGEST_LABEL:
        raise file_error(volume.source or volume.name, f"a region label map must hold labels up to {LARGEST_LABEL}, "
                                                       f"got {int(labels.max())}")
    _check_region_count(volume, labels)
    return Volume(labels, volume.voxel_to_world, "regions", "label", volume.name, volume.source, volume.meta)


def _check_region_count(volume: Volume, labels: np.ndarray) -> None:
    """Refuse a label map with more than :data:`MAX_REGIONS` distinct labels (no pass over a
    uint8 map, which cannot hold more than 255)."""
    from viewer.core.spaces import present_labels

    if labels.dtype.itemsize == 1 and MAX_REGIONS >= 255:
        return
    count = len(present_labels(labels))
    if count > MAX_REGIONS:
        raise file_error(volume.source or volume.name, f"a region label map holds {count} distinct labels; at most "
                                                       f"{MAX_REGIONS} regions are supported (is it a label map?)")


def _nifti_pet_to_suv(study: Study, timepoint: Timepoint, volume: Volume) -> Volume:
    """Convert a NIfTI PET to SUV from the manifest's dose facts (decay to the scan time)."""
    volume.meta["suv_method"] = "NIfTI, manifest pet_units = SUV"
    if timepoint.pet_units == "SUV":
        volume.units = "SUV"
        return volume
    factor = pet_suv_factor(f"{study.manifest}: [[timepoint]] {timepoint.label!r}", timepoint.pet_dose)
    suv = np.asarray(volume.data, dtype=np.float32) * np.float32(factor)
    meta = dict(volume.meta, suv_method="NIfTI Bq/mL with manifest dose", suv_factor=factor)
    return Volume(suv, volume.voxel_to_world, "pet", "SUV", volume.name, volume.source, meta)


def study_from_image(path: str | Path) -> Study:
    """A one-timepoint study around a single image (``viewer open FILE``)."""
    path = Path(path).resolve()
    if not path.exists():
        raise file_error(path, "file not found")
    timepoint = Timepoint(label=path.name, day=None, images={"anatomical": path})
    return Study(path.name, None, {"id": path.name}, Calibration(), (timepoint,))


def open_path(path: str | Path) -> Study:
    """Open what a user points at: a manifest, a folder with one, a NIfTI file or a DICOM folder."""
    path = Path(path)
    if path.is_dir() and (path / MANIFEST_NAME).exists():
        return load_study(path / MANIFEST_NAME)
    if path.suffix == ".toml":
        return load_study(path)
    return study_from_image(path)


def write_manifest(raw: Mapping[str, Any], path: str | Path) -> Path:
    """Validate a manifest given as plain data and write it atomically as TOML.

    Validation runs before anything touches the disk (paths are checked relative to
    ``path``), so a bad manifest never replaces a good one.
    """
    import tomli_w

    from viewer.core.io.atomic import write_text_atomic

    path = Path(path)
    text = _rows_on_one_line(tomli_w.dumps(_plain(raw)))
    parse_manifest(tomllib.loads(text), path)
    return write_text_atomic(path, text)


#: An array of numbers only, one per line, as tomli_w writes it.
_NUMBER_ROW = re.compile(r"\[\n((?:[ \t]*[-+0-9.eEinfa]+,\n)+)[ \t]*\]")


def _rows_on_one_line(text: str) -> str:
    """Arrays of plain numbers on one line each, so a 4×4 transform reads as four rows."""
    return _NUMBER_ROW.sub(lambda m: "[" + ", ".join(v.strip().rstrip(",") for v in m.group(1).splitlines()) + "]", text)


def _plain(value: Any) -> Any:
    """TOML needs string keys and no None: convert int keys, drop None values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value
