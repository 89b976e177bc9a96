"""De-identified exported objects (PS3.15 Annex E, Basic Application Level Confidentiality
Profile with the Clean Descriptors, Clean Structured Content and Retain Longitudinal Temporal
Information with Modified Dates options).

The exported objects are never copies of identifying ones: a de-identified export writes the
anatomy anew from its pixel values (:mod:`.anatomy`) with a pseudonym, new UIDs and shifted
dates, builds the SEG, the SR and the PDF from that, and every text it writes (region names,
the timepoint label) has passed the report's :class:`~viewer.core.report.deidentify.Scrubber`.
This module marks each object as de-identified, moves every date it holds (highdicom stamps
"now" as content date) to the shifted study date, and finally checks every text value of
every object, at any depth, for each identifying value the study knows, and every UID for
the original ones; one found refuses the export.
"""

from __future__ import annotations

import re
from io import BytesIO
from typing import Collection, Iterable

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from viewer.core.errors import ViewerError

#: PS3.16 CID 7050 codes of the profile and the options applied.
METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113105", "Clean Descriptors Option"),
    ("113104", "Clean Structured Content Option"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)
METHOD_TEXT = "PS3.15 Basic Profile (cell-therapy-viewer export-dicom)"  # LO: at most 64


def mark_deidentified(ds: Dataset) -> None:
    """The Patient Identity Removed attributes (PS3.3 C.7.1.1) on one object."""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD_TEXT
    items = []
    for value, meaning in METHOD_CODES:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = DicomSequence(items)
    ds.LongitudinalTemporalInformationModified = "MODIFIED"


def shift_dates(ds: Dataset, study_date: str) -> None:
    """Every date of ``ds`` (and its sequences) set to ``study_date`` (YYYYMMDD, or "" when the
    day is unknown), every time to midnight, every date-time to both: nothing keeps the day or
    the clock time of the export or of the original visit."""
    for element in ds.iterall():
        if element.VR == "DA" and element.value not in (None, ""):
            element.value = study_date
        elif element.VR == "TM" and element.value not in (None, ""):
            element.value = "000000" if study_date else ""
        elif element.VR == "DT" and element.value not in (None, ""):
            element.value = f"{study_date}000000" if study_date else ""


def encoded(ds: Dataset) -> bytes:
    """The Part 10 bytes of ``ds`` (what goes to disk and to the PACS)."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


#: Value representations holding bytes, not text (pixels, bit-packed segments, the PDF; the
#: PDF's text is checked by the report's own de-identification before it is encapsulated).
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN", "SQ"})


def _patterns(identifiers: Iterable[str]) -> list[re.Pattern[str]]:
    """One pattern per identifying value of at least 4 characters: a number (an ID, a date, a
    time) only as a whole number, so that it is not "found" inside an unrelated longer number
    such as a new random UID; any other text case-insensitively anywhere."""
    patterns = []
    for value in dict.fromkeys(v.strip() for v in identifiers):
        if len(value) < 4:
            continue
        if value.replace(".", "").isdigit():
            patterns.append(re.compile(rf"(?<![0-9.]){re.escape(value)}(?![0-9]|\.[0-9])"))
        else:
            patterns.append(re.compile(re.escape(value), re.IGNORECASE))
    return patterns


def check_clean(name: str, ds: Dataset, identifiers: Iterable[str], original_uids: Collection[str] = ()) -> None:
    """Refuse an object that still holds one of ``identifiers`` (patient name parts, patient
    ID, birth date, visit dates and times, institution…) in any text value, at any depth, or
    any of ``original_uids``; the message names the object and the attribute, never the value.

    Raises:
        ViewerError: an identifier was found.
    """
    patterns = _patterns(identifiers)
    uids = set(original_uids)
    elements = list(ds.file_meta.iterall()) if hasattr(ds, "file_meta") else []
    for element in [*elements, *ds.iterall()]:
        if element.VR in _BINARY_VRS or element.value in (None, ""):
            continue
        texts = [str(v) for v in (element.value if element.VM > 1 else [element.value])]
        if element.VR == "UI":
            found = any(text in uids for text in texts)
        else:
            found = any(pattern.search(text) for pattern in patterns for text in texts)
        if found:
            raise ViewerError(f"{name}: {element.keyword or element.tag} still holds an identifying value of the "
                              "study in the de-identified object; nothing was written")
