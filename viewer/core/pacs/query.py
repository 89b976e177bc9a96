"""A study query and what a PACS answers to it, the same for DICOMweb and DIMSE (PRODUCT.md §8)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from viewer.core.errors import ViewerError

_DATE = re.compile(r"^\d{8}$")


@dataclass(frozen=True)
class StudyQuery:
    """What ``viewer pacs find`` asks for; None matches anything.

    ``patient_name`` may hold DICOM wildcards (``*``, ``?``); ``date`` is ``YYYYMMDD`` or a range
    ``YYYYMMDD-YYYYMMDD`` (either end may be left open); ``modality`` matches any series of the
    study (ModalitiesInStudy).
    """

    patient_id: str | None = None
    patient_name: str | None = None
    date: str | None = None
    modality: str | None = None

    def __post_init__(self) -> None:
        if self.date is not None:
            check_date_range(self.date)
        if self.modality is not None and not re.fullmatch(r"[A-Z0-9_]{1,16}", self.modality):
            raise ViewerError(f"--modality must be a DICOM modality such as MR, PT or CT, got {self.modality!r}")
        for name in ("patient_id", "patient_name"):
            value = getattr(self, name)
            if value is not None and ("\\" in value or not value.isprintable() or not value.strip()):
                raise ViewerError(f"--{name.replace('_', '-')} must be printable text without backslashes")

    def filters(self) -> dict[str, str]:
        """The query's matching keys by DICOM keyword (the ones given only)."""
        keys = {"PatientID": self.patient_id, "PatientName": self.patient_name, "StudyDate": self.date,
                "ModalitiesInStudy": self.modality}
        return {key: value for key, value in keys.items() if value is not None}


def check_date_range(text: str) -> None:
    """``YYYYMMDD``, ``YYYYMMDD-YYYYMMDD``, ``-YYYYMMDD`` or ``YYYYMMDD-``, with real dates."""
    import datetime

    parts = text.split("-")
    if len(parts) > 2 or not any(parts) or not all(p == "" or _DATE.match(p) for p in parts):
        raise ViewerError(f"--date must be YYYYMMDD or YYYYMMDD-YYYYMMDD, got {text!r}")
    for part in parts:
        if part:
            try:
                datetime.date(int(part[:4]), int(part[4:6]), int(part[6:]))
            except ValueError:
                raise ViewerError(f"--date {text!r}: {part} is not a calendar date") from None
    if len(parts) == 2 and all(parts) and parts[0] > parts[1]:
        raise ViewerError(f"--date {text!r}: the range ends before it starts")


@dataclass(frozen=True)
class StudyMatch:
    """One study a PACS found: the keys of ``viewer pacs find --format json``."""

    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    modalities: list[str]
    description: str
    series_count: int | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


#: The study-level attributes a find asks the PACS to return.
RETURN_KEYS = ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "ModalitiesInStudy",
               "StudyDescription", "NumberOfStudyRelatedSeries")


def match_from_values(values: dict[str, Any]) -> StudyMatch:
    """A :class:`StudyMatch` from the returned attributes by keyword (missing ones empty)."""
    modalities = values.get("ModalitiesInStudy") or []
    if isinstance(modalities, str):  # one value, or several joined as DICOM writes them
        modalities = modalities.split("\\")
    modalities = [str(m) for m in modalities if str(m)]  # a list, or pydicom's MultiValue
    count = values.get("NumberOfStudyRelatedSeries")
    try:
        series = int(count) if count not in (None, "") else None
    except (TypeError, ValueError):
        series = None
    return StudyMatch(str(values.get("StudyInstanceUID") or ""), str(values.get("PatientID") or ""),
                      str(values.get("PatientName") or ""), str(values.get("StudyDate") or ""),
                      sorted(str(m) for m in modalities), str(values.get("StudyDescription") or ""), series)
