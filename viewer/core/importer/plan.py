"""From an exam to a study: timepoints, days, the one series per role, and what is skipped.

:func:`plan_import` is pure: it reads an :class:`Exam` and the user's role overrides and returns
an :class:`ImportPlan` that says, for every series, what happens to it and why. The plan also
holds the manifest it would write, so ``--dry-run``, the series browser and the real import
all show the same thing. A plan that cannot be written says why in :attr:`ImportPlan.problem`
(one line) instead of raising, so a browser can keep showing the table while the user fixes
the choice.

Why these rules:
- **Patients**: one study is one patient. Several patients among the series that could be
  imported refuse the plan, listing them, unless ``patient`` picks one (matched against
  PatientID, or the name when there is no ID, ignoring case); series of the others are
  skipped. A series that names no patient (anonymised) is taken to be the chosen patient's.
- **Timepoints** are study dates (a PET/CT and an MR of the same day are one timepoint),
  ``day`` = date − ``day0`` in days, labelled "day N" (negative before day 0), folders
  ``day-N`` (``day-minus-N``). ``day0`` defaults to the first date among the series that could
  be imported. Undated series are skipped when others are dated (their timepoint is
  unknown); when nothing is dated, BIDS sessions become timepoints "ses-X" (in session order)
  and undated DICOM series one timepoint "undated", all without ``day``.
- **One series per role and timepoint**. A series the user assigned wins; then the anatomy
  preference tier (T1-weighted ¹H MR over other ¹H MR over CT); then an ORIGINAL image over a
  DERIVED one (a reformat repeats the acquisition it came from); then the smallest voxel
  volume (finest detail); then the most slices (widest coverage); then the lowest
  SeriesNumber (the scanner's first). Every losing candidate is listed with the rule that
  decided.
- **A timepoint without an anatomical image** cannot be written (the manifest requires one):
  its series are listed as skipped with that reason; if no timepoint remains, the plan is
  refused naming the exam and, when an anatomy candidate was rejected by the reader, its
  reason.
- A series the user assigns must be usable: pixel data, one grid, a date when others are
  dated, the chosen patient; a PT series can only be PET and a PET must be PT (or a NIfTI PET
  with units). Otherwise the plan is refused with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Iterable, Mapping

from viewer.core.errors import ViewerError
from viewer.core.importer.entries import Exam, PatientFacts, SeriesEntry
from viewer.core.importer.roles import (
    IMPORT_ROLES,
    ROLE_TITLES,
    TIER_CT,
    TIER_OTHER_PROTON,
)

#: Relative voxel-volume step under which two grids count as the same voxel size (DS values
#: are rounded differently by vendors: 0.9765625 vs 0.976562); volumes are compared after
#: rounding to steps of this size on a logarithmic scale.
VOXEL_VOLUME_RELATIVE_TOLERANCE = 1e-3

#: File or folder name of each role in a timepoint folder (PRODUCT.md §2's example names).
ROLE_STEMS = {
    "fluorine": "f19", "spio": "dr2star", "gd": "dr1", "pet": "pet", "sodium": "tsc", "adc": "adc",
    "tmax": "tmax",
}

SKIPPED_BY_USER = "skipped by the user"


@dataclass(frozen=True)
class Decision:
    """What happens to one series.

    Attributes:
        entry_id: the series (:attr:`SeriesEntry.entry_id`).
        role: the role it gets in the study, or None when it is not imported.
        reason: why (the rule that gave the role, or why it is skipped).
        timepoint: label of the timepoint it goes to (None when skipped).
        by_user: the role (or the skip) came from the user's override.
    """

    entry_id: str
    role: str | None
    reason: str
    timepoint: str | None = None
    by_user: bool = False


@dataclass(frozen=True)
class PlannedImage:
    """One image of a planned timepoint: which series, and where it goes in the study."""

    role: str
    entry_id: str
    path: str  # relative to the study folder, POSIX separators


@dataclass(frozen=True)
class PlannedTimepoint:
    """A timepoint of the study to write."""

    label: str
    day: int | None
    date: date | None
    folder: str
    images: tuple[PlannedImage, ...]

    def image(self, role: str) -> PlannedImage | None:
        for image in self.images:
            if image.role == role:
                return image
        return None


@dataclass(frozen=True)
class ImportPlan:
    """The study an import would write, and the fate of every series of the exam.

    Attributes:
        exam: the scanned exam.
        patient: the study's patient (fields merged from its series), None when ambiguous.
        day0: the date of day 0 (given or the first date), None without dates.
        timepoints: the timepoints to write, in date (or session) order.
        decisions: one per exam entry, in the exam's order.
        problem: why the plan cannot be written ('' when it can), one line.
    """

    exam: Exam
    patient: PatientFacts | None
    day0: date | None
    timepoints: tuple[PlannedTimepoint, ...]
    decisions: tuple[Decision, ...]
    problem: str = ""
    day0_given: bool = False
    _by_id: Mapping[str, Decision] = field(default_factory=dict, repr=False, compare=False)

    @property
    def writable(self) -> bool:
        return not self.problem

    def decision(self, entry_id: str) -> Decision:
        """The decision for one series (KeyError for an unknown id)."""
        return self._by_id[entry_id]

    def require_writable(self) -> None:
        """Raise the plan's problem as a ViewerError (one line)."""
        if self.problem:
            raise ViewerError(self.problem)

    def imported(self) -> tuple[tuple[PlannedTimepoint, PlannedImage, SeriesEntry], ...]:
        """Every image to copy, with its timepoint and series."""
        return tuple((tp, image, self.exam.entry(image.entry_id)) for tp in self.timepoints for image in tp.images)

    def manifest(self, study_id: str) -> dict[str, Any]:
        """The manifest as plain data (see :func:`viewer.core.importer.write.manifest_data`)."""
        from viewer.core.importer.write import manifest_data

        return manifest_data(self, study_id)


def plan_import(
    exam: Exam,
    roles_override: Mapping[str, str | None] | None = None,
    day0: date | None = None,
    patient: str | None = None,
) -> ImportPlan:
    """Decide every series' fate (see the module docstring).

    Args:
        exam: from :func:`viewer.core.importer.exam.scan_exam`.
        roles_override: entry_id → role to force, or None to leave the series out.
        day0: date of day 0; default the first date among the series that could be imported
            (None when none is dated and none is given).
        patient: which patient to import when the exam holds several (ID or name).

    Raises:
        ValueError: an override names a series the exam does not have or an unknown role
            (a programming error of the caller; users' mistakes become ``plan.problem``).
    """
    overrides = dict(roles_override or {})
    _check_overrides(exam, overrides)
    decisions: dict[str, Decision] = {}
    problems: list[str] = []

    chosen, patient_problem = _choose_patient(exam, patient)
    wanted = _wanted(exam, overrides, chosen, decisions, problems)
    if patient_problem:
        for entry, role, by_user in wanted:
            decisions[entry.entry_id] = Decision(entry.entry_id, None, f"proposed {role}; not planned: "
                                                 "several patients", by_user=by_user)
        return _plan(exam, None, day0, (), decisions, patient_problem, day0 is not None)

    dated = [item for item in wanted if item[0].date is not None]
    first = min((item[0].date for item in dated), default=None)
    start = day0 if day0 is not None else first
    groups = _group(wanted, bool(dated), decisions, problems)
    timepoints = []
    for key, members in sorted(groups.items(), key=lambda kv: kv[0]):
        timepoint = _timepoint(exam, key, members, start, decisions, problems)
        if timepoint is not None:
            timepoints.append(timepoint)
    if not timepoints and not problems:
        problems.append(_nothing_to_import(exam, wanted, chosen))
    merged = _merged_patient(exam, chosen)
    problem = problems[0] if problems else ""
    return _plan(exam, merged, start, tuple(timepoints), decisions, problem, day0 is not None)


def resolve_series(exam: Exam, key: str) -> str:
    """The entry_id a user means by ``key``: an entry_id, a SeriesInstanceUID, a NIfTI file
    name, or a SeriesNumber that exactly one series has.

    Raises:
        ViewerError: no series or several match (the message lists them).
    """
    exact = [e for e in exam.entries if key in (e.entry_id, e.files[0].name if e.source == "nifti" and e.files else None)]
    if len(exact) == 1:
        return exact[0].entry_id
    by_number = [e for e in exam.entries if e.series_number is not None and str(e.series_number) == key.strip()]
    if len(by_number) == 1:
        return by_number[0].entry_id
    if by_number:
        listing = "; ".join(f"{e.label()} = {e.entry_id}" for e in by_number)
        raise ViewerError(f"{len(by_number)} series have SeriesNumber {key} ({listing}); name one by its "
                          "SeriesInstanceUID")
    raise ViewerError(f"no series has SeriesNumber, SeriesInstanceUID or file name {key!r}")


# -- steps --------------------------------------------------------------------------------------
_Wanted = tuple[SeriesEntry, str, bool]  # entry, role, chosen by the user


def _check_overrides(exam: Exam, overrides: Mapping[str, str | None]) -> None:
    known = {e.entry_id for e in exam.entries}
    for entry_id, role in overrides.items():
        if entry_id not in known:
            raise ValueError(f"no series {entry_id!r} in the exam")
        if role is not None and role not in IMPORT_ROLES:
            raise ValueError(f"unknown role {role!r} (expected one of {', '.join(IMPORT_ROLES)})")


def _choose_patient(exam: Exam, wanted: str | None) -> tuple[PatientFacts | None, str]:
    patients = exam.patients()
    if wanted is not None:
        needle = wanted.strip().casefold()
        for one in patients:
            if needle in (one.patient_id.strip().casefold(), one.name.strip().casefold()) and needle:
                return one, ""
        listing = ", ".join(p.describe() for p in patients) or "no named patient"
        return None, f"{exam.where()}: no patient {wanted!r} in the exam (it holds {listing})"
    if len(patients) > 1:
        listing = ", ".join(p.describe() for p in patients)
        return None, (f"{exam.where()}: the exam holds {len(patients)} patients ({listing}); choose one "
                      "(--patient ID, or the patient box of the import window)")
    return (patients[0] if patients else None), ""


def _wanted(exam: Exam, overrides: Mapping[str, str | None], chosen: PatientFacts | None,
            decisions: dict[str, Decision], problems: list[str]) -> list[_Wanted]:
    """Entries that would get a role (proposed or forced), after the user's skips and the
    patient filter; the others get their decision here."""
    wanted: list[_Wanted] = []
    for entry in exam.entries:
        by_user = entry.entry_id in overrides
        role = overrides[entry.entry_id] if by_user else entry.role
        if role is None:
            reason = SKIPPED_BY_USER if by_user else entry.guess.reason
            decisions[entry.entry_id] = Decision(entry.entry_id, None, reason, by_user=by_user)
            continue
        if chosen is not None and entry.patient.named and entry.patient.key != chosen.key:
            decisions[entry.entry_id] = Decision(entry.entry_id, None, f"other patient ({entry.patient.describe()})",
                                                 by_user=by_user)
            if by_user:
                problems.append(f"{entry.label()} belongs to patient {entry.patient.describe()}, not "
                                f"{chosen.describe()}")
            continue
        if by_user:
            refusal = _refuse_forced(entry, role)
            if refusal:
                decisions[entry.entry_id] = Decision(entry.entry_id, None, refusal, by_user=True)
                problems.append(f"{entry.folder}: {entry.label()} cannot be the {role} image: {refusal}")
                continue
        wanted.append((entry, role, by_user))
    return wanted


def _refuse_forced(entry: SeriesEntry, role: str) -> str:
    """Why a series cannot take the role the user gave it ('' when it can)."""
    if not entry.has_pixels:
        return entry.guess.reason
    if entry.geometry is None:
        return entry.problem or entry.guess.reason
    if entry.problem and (role == "pet" or entry.guess.rule != "suv"):
        return entry.problem
    if entry.source == "dicom" and (entry.modality == "PT") != (role == "pet"):
        return "only a PT series can be the PET image, and a PT series only the PET image"
    if entry.source == "nifti" and role == "pet" and "pet_units" not in entry.manifest_extra:
        return entry.problem or "a NIfTI PET needs Units (SUV or Bq/mL with dose) in its BIDS JSON sidecar"
    return ""


def _group(wanted: list[_Wanted], any_dated: bool, decisions: dict[str, Decision],
           problems: list[str]) -> dict[tuple, list[_Wanted]]:
    groups: dict[tuple, list[_Wanted]] = {}
    for item in wanted:
        entry = item[0]
        if entry.date is not None:
            key: tuple = (0, entry.date.isoformat())
        elif any_dated:
            reason = "no study date: its timepoint is unknown (the other series are dated)"
            decisions[entry.entry_id] = Decision(entry.entry_id, None, reason, by_user=item[2])
            if item[2]:
                problems.append(f"{entry.folder}: {entry.label()} cannot be placed: {reason}")
            continue
        elif entry.session:
            key = (1, entry.session)
        else:
            key = (2, "")
        groups.setdefault(key, []).append(item)
    return groups


def _timepoint(exam: Exam, key: tuple, members: list[_Wanted], start: date | None,
               decisions: dict[str, Decision], problems: list[str]) -> PlannedTimepoint | None:
    label, day, when, folder = _naming(key, start)
    by_role: dict[str, list[_Wanted]] = {}
    for item in members:
        by_role.setdefault(item[1], []).append(item)
    if "anatomical" not in by_role:
        reason = f"{label} has no anatomical image{_failed_anatomy(exam, members)}: the timepoint is not imported"
        for entry, _, by_user in members:
            decisions[entry.entry_id] = Decision(entry.entry_id, None, reason, by_user=by_user)
        return None
    images = []
    for role in IMPORT_ROLES:
        if role not in by_role:
            continue
        winner = _choose(label, role, by_role[role], decisions, problems)
        entry = winner[0]
        reason = "chosen by the user" if winner[2] else entry.guess.reason
        decisions[entry.entry_id] = Decision(entry.entry_id, role, reason, label, winner[2])
        images.append(PlannedImage(role, entry.entry_id, f"{folder}/{_stem(role, entry)}{_extension(entry)}"))
    return PlannedTimepoint(label, day, when, folder, tuple(images))


def _naming(key: tuple, start: date | None) -> tuple[str, int | None, date | None, str]:
    """(label, day, date, folder) of a timepoint key."""
    kind, value = key
    if kind == 0:
        when = date.fromisoformat(value)
        day = (when - start).days if start is not None else 0
        return f"day {day}", day, when, f"day-{day}" if day >= 0 else f"day-minus-{-day}"
    if kind == 1:
        return f"ses-{value}", None, None, f"ses-{value}"
    return "undated", None, None, "undated"


def _choose(label: str, role: str, candidates: list[_Wanted], decisions: dict[str, Decision],
            problems: list[str]) -> _Wanted:
    forced = [c for c in candidates if c[2]]
    if len(forced) > 1:
        names = " and ".join(c[0].label() for c in forced)
        problems.append(f"{forced[0][0].folder}: {label}: {names} were both chosen as the {role} image; keep one")
    ranked = sorted(candidates, key=lambda c: _rank(c, role))
    winner = ranked[0]
    for loser in ranked[1:]:
        rule = _deciding_rule(winner, loser, role)
        title = _title(role, loser[0])
        reason = f"second {title} candidate: kept {winner[0].summary()} over {loser[0].summary()} — rule: {rule}"
        decisions[loser[0].entry_id] = Decision(loser[0].entry_id, None, reason, by_user=loser[2])
    return winner


def _rank(item: _Wanted, role: str) -> tuple:
    entry, _, by_user = item
    tier = entry.guess.tier if role == "anatomical" and entry.role == "anatomical" else _forced_tier(entry, role)
    voxel = entry.geometry.voxel_mm3 if entry.geometry else float("inf")
    slices = entry.geometry.n_slices if entry.geometry else 0
    number = entry.series_number if entry.series_number is not None else 1 << 30
    return (not by_user, tier, entry.derived, _voxel_bucket(voxel), -slices, number, entry.entry_id)


def _forced_tier(entry: SeriesEntry, role: str) -> int:
    if role != "anatomical":
        return 0
    return TIER_CT if entry.modality == "CT" else TIER_OTHER_PROTON


def _voxel_bucket(voxel_mm3: float) -> float:
    """The voxel volume on a logarithmic scale of :data:`VOXEL_VOLUME_RELATIVE_TOLERANCE`
    steps, so that the same grid written with differently rounded spacings ranks equal and
    the next rule (most slices) decides."""
    if not math.isfinite(voxel_mm3) or voxel_mm3 <= 0:
        return float("inf")
    step = math.log1p(VOXEL_VOLUME_RELATIVE_TOLERANCE)
    return round(math.log(voxel_mm3) / step)


_RULE_NAMES = (
    "chosen by the user",
    "T1-weighted ¹H MR over other ¹H MR over CT",
    "an ORIGINAL image over a DERIVED one",
    "smallest voxel volume",
    "most slices",
    "lowest SeriesNumber",
    "lowest series identifier (all else equal)",
)


def _deciding_rule(winner: _Wanted, loser: _Wanted, role: str) -> str:
    for name, a, b in zip(_RULE_NAMES, _rank(winner, role), _rank(loser, role)):
        if a != b:
            return name
    return _RULE_NAMES[-1]


def _title(role: str, entry: SeriesEntry) -> str:
    if role == "anatomical":
        return "T1" if entry.guess.t1_weighted and entry.role == "anatomical" else "anatomy"
    return ROLE_TITLES[role]


def _stem(role: str, entry: SeriesEntry) -> str:
    if role == "anatomical":
        return "t1" if entry.role == "anatomical" and entry.guess.t1_weighted else "anatomy"
    return ROLE_STEMS[role]


def _extension(entry: SeriesEntry) -> str:
    if entry.source != "nifti":
        return ""
    return ".nii.gz" if entry.files[0].name.endswith(".nii.gz") else ".nii"


def _failed_anatomy(exam: Exam, members: Iterable[_Wanted]) -> str:
    """" (series 3 (T1) cannot be placed …)" for an anatomy candidate of the same timepoint
    that the reader refused, so the reason a timepoint is dropped is visible."""
    dates = {item[0].date for item in members}
    sessions = {item[0].session for item in members}
    for entry in exam.entries:
        if entry.candidate == "anatomical" and entry.problem and entry.date in dates \
                and (entry.date is not None or entry.session in sessions):
            return f" ({entry.label()}: {entry.problem})"
    return ""


def _nothing_to_import(exam: Exam, wanted: list[_Wanted], chosen: PatientFacts | None) -> str:
    where = exam.where()
    failed = [e for e in exam.entries if e.candidate == "anatomical" and e.problem
              and (chosen is None or not e.patient.named or e.patient.key == chosen.key)]
    if failed:
        first = failed[0]
        return (f"{where}: nothing to import: no timepoint has a usable anatomical image ({first.folder}: "
                f"{first.label()} {first.problem})")
    if wanted:
        return f"{where}: nothing to import: no timepoint has an anatomical image (¹H MR or CT)"
    reasons = []
    for entry in exam.entries:
        if entry.guess.reason not in reasons:
            reasons.append(entry.guess.reason)
    listing = "; ".join(reasons[:3]) + ("; …" if len(reasons) > 3 else "")
    return f"{where}: nothing to import: none of its {len(exam.entries)} series can be a study image ({listing})"


def _merged_patient(exam: Exam, chosen: PatientFacts | None) -> PatientFacts:
    """Name, ID, birth date and sex: the first non-empty value among the patient's series."""
    values: dict[str, Any] = {"name": "", "patient_id": "", "birth_date": None, "sex": ""}
    for entry in exam.entries:
        if chosen is not None and entry.patient.named and entry.patient.key != chosen.key:
            continue
        for key, value in list(values.items()):
            if not value and getattr(entry.patient, key):
                values[key] = getattr(entry.patient, key)
    return PatientFacts(**values)


def _plan(exam: Exam, patient: PatientFacts | None, day0: date | None, timepoints: tuple[PlannedTimepoint, ...],
          decisions: dict[str, Decision], problem: str, day0_given: bool) -> ImportPlan:
    ordered = tuple(decisions[e.entry_id] for e in exam.entries)
    return ImportPlan(exam, patient, day0, timepoints, ordered, problem, day0_given,
                      {d.entry_id: d for d in ordered})


__all__ = [
    "ROLE_STEMS",
    "Decision",
    "ImportPlan",
    "PlannedImage",
    "PlannedTimepoint",
    "plan_import",
    "resolve_series",
]
