"""Removing patient identifiers from report text (``viewer report --deidentify``).

A de-identified report must not carry the patient's name, patient ID, birth date or any exact
date — not in its text, not burned into its images, not in the PDF metadata. The report is
assembled from strings (manifest fields, region names typed by users, notes), so rather than
trusting each field to be clean, every string that enters a de-identified report passes
through one :class:`Scrubber`, which knows the study's identifiers and also removes anything
shaped like a calendar date. Dates are replaced by day offsets where the report has them
(timepoints are "day N after transplantation").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Mapping

#: What replaces an identifier in a de-identified report.
REMOVED = "[removed]"
#: What replaces an exact date.
DATE_REMOVED = "[date removed]"

#: Manifest keys of ``[study]`` that identify the patient and are dropped when de-identifying.
IDENTIFYING_KEYS: tuple[str, ...] = ("patient", "patient_id", "birth_date", "day0")

# Calendar dates in the spellings found in manifests, DICOM and notes: 2026-03-02, 2026/03/02,
# 20260302 (DICOM DA, only when it is a valid date), 02.03.2026, 03/02/2026. Two-digit years
# are left alone: "1.10.12" is more often a version number than a date.
_DATE_PATTERNS = (
    r"(?<!\d)\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?!\d)",
    r"(?<!\d)\d{1,2}[./-]\d{1,2}[./-]\d{4}(?!\d)",
)
_DICOM_DATE = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)")


@dataclass(frozen=True)
class Scrubber:
    """Replaces the study's identifiers and every calendar date in a string.

    Attributes:
        identifiers: exact strings to remove (name parts, patient ID, dates in several forms),
            matched case-insensitively and not inside a longer word or number.
        active: False for an identified report: :meth:`text` then returns its input.
    """

    identifiers: tuple[str, ...] = ()
    active: bool = True
    #: the identifiers :meth:`leaks` looks for: whole names (not single name parts, which may
    #: be ordinary words such as "Day" or "Core" that the report itself uses), IDs and dates
    checked: tuple[str, ...] = ()

    @classmethod
    def for_study(cls, info: Mapping[str, Any], active: bool = True, extra: tuple[str, ...] = ()) -> Scrubber:
        """A scrubber for the ``[study]`` table of a manifest (plus any ``extra`` identifiers)."""
        checked: list[str] = []
        name_parts: list[str] = []
        patient = str(info.get("patient") or "")
        if patient.strip():
            checked.append(patient.strip())
            name_parts.extend(part for part in re.split(r"[\^,\s]+", patient) if len(part) >= 2)
            parts = [p.strip() for p in patient.split("^") if p.strip()]
            if len(parts) >= 2:  # DICOM "Family^Given" also appears as "Given Family" and "Family, Given"
                checked += [f"{parts[1]} {parts[0]}", f"{parts[0]}, {parts[1]}"]
            elif parts:
                checked.append(parts[0])
        for key in ("patient_id", "birth_date", "day0"):
            value = str(info.get(key) or "").strip()
            if value:
                checked.append(value)
                checked.extend(_date_spellings(value))
        checked.extend(e.strip() for e in extra if e and e.strip())

        def longest_first(items: list[str]) -> tuple[str, ...]:
            return tuple(sorted({i for i in items if i.strip()}, key=len, reverse=True))

        return cls(longest_first(checked + name_parts), active, longest_first(checked))

    def text(self, value: str) -> str:
        """``value`` with identifiers replaced by :data:`REMOVED` and dates by :data:`DATE_REMOVED`."""
        if not self.active or not value:
            return value
        for identifier in self.identifiers:
            value = re.sub(rf"(?<![\w]){re.escape(identifier)}(?![\w])", REMOVED, value, flags=re.IGNORECASE)
        for pattern in _DATE_PATTERNS:
            value = re.sub(pattern, DATE_REMOVED, value)
        return _DICOM_DATE.sub(lambda m: DATE_REMOVED if _is_date(*m.groups()) else m.group(0), value)

    def leaks(self, value: str) -> list[str]:
        """The whole names, IDs and dates still found in ``value`` (the report builder's check)."""
        lowered = value.lower()
        return [identifier for identifier in self.checked if identifier.lower() in lowered]


def _date_spellings(value: str) -> list[str]:
    """Other spellings of an ISO or DICOM date: 20260302, 02.03.2026, 03/02/2026, 02/03/2026."""
    text = value.strip()
    try:
        day = date.fromisoformat(text) if "-" in text else date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except (ValueError, IndexError):
        return []
    return [
        day.isoformat(), day.strftime("%Y%m%d"), day.strftime("%d.%m.%Y"),
        day.strftime("%m/%d/%Y"), day.strftime("%d/%m/%Y"), day.strftime("%Y/%m/%d"),
    ]


def _is_date(year: str, month: str, day: str) -> bool:
    try:
        date(int(year), int(month), int(day))
    except ValueError:
        return False
    return 1900 <= int(year) <= 2200
