"""Removing patient identifiers from a report (``viewer report --deidentify``, PRODUCT.md §6).

A de-identified report must not carry the patient's name, IDs, birth date, the site, its staff
or any exact date or time — not in its text, not in the labels drawn into its images, not in the
PDF metadata. The identifiers come from the manifest (``patient``, ``patient_id``,
``birth_date``, ``day0``) and from the DICOM tags of every series read
(``Volume.meta["identifiers"]``, recorded by :mod:`viewer.core.io.dicom`). Every string that
enters a de-identified report passes through one :class:`Scrubber`; the finished report is then
searched again, place by place, by :meth:`Scrubber.check`, which refuses to let a report out
that still shows an identifier.

The rules, and why:

- **Identifiers as identifiers, not as substrings of words.** A patient called "Day^Core" must
  not lose the report every "day" and "core". So a name part that is an *ordinary word of the
  report* (a word its own code writes: headings, column titles, units, reserved region names —
  :func:`words_written_by`) is never removed on its own; it is removed only inside a spelling
  of the whole name ("Day Core", "Core, Day", "DayCore", "D. Core", "Mr Core"). Any other name
  part is removed on its own too, wherever it stands: glued to underscores, digits or a
  capitalised word ("Smith_injection", "SmithJohn"), and — when it has five letters or more and
  lies inside no ordinary word — glued to any letters ("Smithinjection"). Shorter parts ("Doe",
  "Jane") are removed as words only, so "Doer" stays.
- **Every spelling.** Names: parts joined, reordered, with any of ``^ , _ . - '`` or spaces
  between them or none, any case, initials ("J. Smith", "Smith, J."), titles ("Dr Smith").
  IDs: their letter and digit runs with any separator or none, any case ("MRN-778899",
  "mrn 778899", "MRN778899"), and their longest digit run alone when it has at least four
  digits ("778899"). Texts (institution, address, department, issuer): the whole phrase, and
  each distinctive word of it (not a generic word such as "University"), postal codes too.
- **Dates and times.** Every calendar date in any spelling (ISO, DD.MM.YYYY, MM/DD/YYYY,
  YYYYMMDD, YYYY/MM/DD, "2-Jan-1970", "02 January 1970", "March 2, 2026", "Mar 2 2026",
  DICOM DA and DT) is replaced, whether the study knows it or not: by "day N" (days after
  transplantation) when ``day0`` is known, the patient's birth date by :data:`REMOVED`, and
  otherwise by :data:`DATE_REMOVED`; month-and-year by :data:`DATE_REMOVED`. Clock times with
  seconds, and the study's own times (DICOM TM, "094400", "09:44"), by :data:`TIME_REMOVED`.
- **Too short to identify.** An ID of fewer than three characters, or digits only and fewer
  than four ("StudyID 1"), identifies nobody and would match the report's own numbers: it is
  left alone (it is not searched for either).
- **Refusal.** :meth:`Scrubber.check` searches every place of the finished report (text,
  tables, the words drawn into each figure, metadata) for every spelling above. What it finds
  there was not scrubbable — the report's own words or numbers happen to spell an identifier,
  or a place bypassed the scrubber — and the report is refused with one line naming the kind
  of identifier and the place ("the report would show the patient's name in the key image
  caption of day 7; not written"). The line never quotes the identifier itself.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from itertools import permutations
from types import CodeType, FunctionType, ModuleType
from typing import Any

from viewer.core.errors import ViewerError

#: What replaces a name, an ID or a text that identifies.
REMOVED = "[removed]"
#: What replaces a date that cannot become a day after transplantation.
DATE_REMOVED = "[date removed]"
#: What replaces a clock time.
TIME_REMOVED = "[time removed]"

#: Manifest keys of ``[study]`` that identify the patient and are dropped when de-identifying.
IDENTIFYING_KEYS: tuple[str, ...] = ("patient", "patient_id", "birth_date", "day0")


@dataclass(frozen=True)
class Field:
    """What an identifying value is: how a refusal names it, and how it is spelled.

    Attributes:
        kind: a phrase for messages ("the patient's name").
        shape: "name" (DICOM person name), "id", "text", "date", "time" or "datetime".
    """

    kind: str
    shape: str


MANIFEST_FIELDS: Mapping[str, Field] = {
    "patient": Field("the patient's name", "name"),
    "patient_id": Field("the patient ID", "id"),
    "birth_date": Field("the patient's birth date", "date"),
    "day0": Field("the transplantation date", "date"),
}

_PHYSICIAN = Field("a physician's name", "name")
#: DICOM keywords of identifying tags (viewer.core.io.dicom.IDENTIFYING_KEYWORDS) and what they are.
TAG_FIELDS: Mapping[str, Field] = {
    "PatientName": Field("the patient's name", "name"),
    "OtherPatientNames": Field("the patient's name", "name"),
    "PatientBirthName": Field("the patient's name", "name"),
    "PatientMotherBirthName": Field("the name of the patient's mother", "name"),
    "PatientID": Field("the patient ID", "id"),
    "OtherPatientIDs": Field("another ID of the patient", "id"),
    "IssuerOfPatientID": Field("the issuer of the patient ID", "text"),
    "PatientBirthDate": Field("the patient's birth date", "date"),
    "PatientBirthTime": Field("the patient's birth time", "time"),
    "PatientAddress": Field("the patient's address", "text"),
    "PatientTelephoneNumbers": Field("the patient's telephone number", "id"),
    "AccessionNumber": Field("the accession number", "id"),
    "StudyID": Field("the DICOM study ID", "id"),
    "InstitutionName": Field("the institution's name", "text"),
    "InstitutionAddress": Field("the institution's address", "text"),
    "InstitutionalDepartmentName": Field("the department's name", "text"),
    "ReferringPhysicianName": _PHYSICIAN,
    "PerformingPhysicianName": _PHYSICIAN,
    "NameOfPhysiciansReadingStudy": _PHYSICIAN,
    "PhysiciansOfRecord": _PHYSICIAN,
    "RequestingPhysician": _PHYSICIAN,
    "OperatorsName": Field("an operator's name", "name"),
    "StationName": Field("the scanner's station name", "id"),
    "DeviceSerialNumber": Field("the device serial number", "id"),
}

#: Words of institution names and addresses that identify no site on their own.
GENERIC_PLACE_WORDS: frozenset[str] = frozenset({
    "university", "universität", "universitätsklinikum", "hospital", "hospitals", "clinic", "clinics", "klinik",
    "klinikum", "clinical", "medical", "medicine", "center", "centre", "institute", "institut", "department",
    "dept", "radiology", "neuroradiology", "nuclear", "imaging", "health", "healthcare", "general", "national",
    "regional", "county", "city", "saint", "children", "research", "foundation", "school", "college", "faculty",
    "street", "road", "avenue", "lane", "square", "strasse", "straße", "platz", "allee", "floor", "building",
    "suite", "unit", "and", "the", "for",
})
#: Lower-case particles of family names ("van der Berg"), never a name on their own.
_NAME_PARTICLES = frozenset({"van", "von", "der", "den", "de", "da", "di", "du", "del", "la", "le", "ten", "ter", "zu"})
_TITLES = r"(?:mr|mrs|ms|miss|mx|dr|prof|herr|frau|hr|fr)(?:\.\s*|\s+)"

_LETTER = r"[^\W\d_]"
#: A word of letters starts here: no letter before, or a lower → upper case change (SmithJohn).
_WORD_START = rf"(?:(?<!{_LETTER})|(?-i:(?<=[a-z])(?=[A-Z])))"
#: A word of letters ends here: no letter after, or a lower → upper case change.
_WORD_END = rf"(?:(?!{_LETTER})|(?-i:(?<=[a-z])(?=[A-Z])))"
#: A number starts/ends here: not inside a longer number, nor after/before a decimal separator.
_NUMBER_START = r"(?<!\d)(?<!\d[.,])"
_NUMBER_END = r"(?!\d)(?![.,]\d)"
_NAME_SEP = r"[\s,^_.'\-]*"
_ID_SEP = r"[\s\-_./#:]*"
_TEXT_SEP = r"[\s,.\-_/^&'()]*"

# -- dates and times ---------------------------------------------------------------------------

#: Month names and abbreviations (English and German) → month number.
_MONTHS: Mapping[str, int] = {name: number for number, names in enumerate((
    ("january", "jan", "januar", "jän"), ("february", "feb", "februar"), ("march", "mar", "märz", "maerz", "mrz"),
    ("april", "apr"), ("may", "mai"), ("june", "jun", "juni"), ("july", "jul", "juli"), ("august", "aug"),
    ("september", "sep", "sept"), ("october", "oct", "oktober", "okt"), ("november", "nov"),
    ("december", "dec", "dezember", "dez"),
), start=1) for name in names}
_MONTH = "(?P<mon>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + rf")(?!{_LETTER})\.?"
_ORDINAL = r"(?:st|nd|rd|th)?\.?"
_YEAR = r"(?P<y>\d{4})(?!\d)"
_CLOCK_TAIL = r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
#: Calendar dates, most specific first; each is a regex with groups y, m or mon, d (month-year
#: forms have no d). Two-digit years are not dates: "1.10.12" is more often a version number.
_DATE_PATTERNS: tuple[re.Pattern[str], ...] = tuple(re.compile(p, re.IGNORECASE) for p in (
    # DICOM DT and DA: 20260302, 20260302091500.000000+0100 (a valid date only, see _dates_of_match)
    (rf"{_NUMBER_START}(?P<y>(?:18|19|20|21)\d{{2}})(?P<m>\d{{2}})(?P<d>\d{{2}})"
     r"(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?(?:[+-]\d{4})?(?!\d)"),
    # 2026-03-02, 2026/3/2, 2026.03.02, with an optional clock time
    rf"{_NUMBER_START}(?P<y>\d{{4}})(?P<s>[-/.])(?P<m>\d{{1,2}})(?P=s)(?P<d>\d{{1,2}})(?!\d){_CLOCK_TAIL}",
    # 02.03.2026, 2-3-2026 (day first), 03/02/2026 (day or month first: see _dates_of_match)
    rf"{_NUMBER_START}(?P<d>\d{{1,2}})(?P<s>[-/.])(?P<m>\d{{1,2}})(?P=s){_YEAR}",
    # 2-Jan-1970, 02 January 1970, 2nd of January, 1970
    rf"(?<!\d)(?P<d>\d{{1,2}}){_ORDINAL}[\s\-/]*(?:of\s+)?{_MONTH},?[\s\-/]*{_YEAR}",
    # March 2, 2026; Mar 2 2026; Jan-02-1970
    rf"(?<!{_LETTER}){_MONTH}[\s\-/]*(?P<d>\d{{1,2}})(?!\d){_ORDINAL},?[\s\-/]*{_YEAR}",
    # 2026-Mar-02, 2026 March 2
    rf"{_NUMBER_START}(?P<y>\d{{4}})[\s\-/]*{_MONTH}[\s\-/]*(?P<d>\d{{1,2}})(?!\d)",
    # March 2026 (a month, no day)
    rf"(?<!{_LETTER}){_MONTH},?[\s\-/]+{_YEAR}",
))
#: Clock times with seconds: always a time of day.
_CLOCK_SECONDS = re.compile(r"(?<![\d:.])(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.\d+)?(?![\d:])")
#: Clock times without seconds ("09:44", "9h44") and DICOM TM ("094400.000"): removed when
#: they are one of the study's own times (a bare "10:30" may be a ratio, "103000" a number).
_CLOCK_MINUTES = re.compile(r"(?<![\d:.])(?P<h>\d{1,2})[:h](?P<m>\d{2})(?![\d:])")
_COMPACT_TIME = re.compile(rf"{_NUMBER_START}(?P<t>\d{{6}})(?:\.\d{{1,6}})?(?!\d)")


def _valid_date(year: int, month: int, day: int) -> date | None:
    if not 1850 <= year <= 2200:
        return None
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _dates_of_match(match: re.Match[str]) -> tuple[set[date], bool]:
    """The dates a match may mean (two for 03/02/2026) and whether it is a date at all
    (a month-and-year is a date without a day: no candidate, but True)."""
    groups = match.groupdict()
    year = int(groups["y"])
    if groups.get("mon"):
        month = _MONTHS[groups["mon"].lower().rstrip(".")]
        if groups.get("d") is None:
            return set(), 1850 <= year <= 2200
        day = _valid_date(year, month, int(groups["d"]))
        return ({day} if day else set()), day is not None
    first, second = int(groups["m"]), int(groups["d"])
    candidates = {_valid_date(year, first, second)}
    if groups.get("s") == "/" and match.group(0).index("/") < 3:  # 03/02/2026: US or European order
        candidates.add(_valid_date(year, second, first))
    candidates.discard(None)
    return candidates, bool(candidates)  # type: ignore[return-value]


def parse_date_value(text: str) -> date | None:
    """A DICOM DA / DT, an ISO date or date-time, or any spelling :data:`_DATE_PATTERNS` reads."""
    text = str(text).strip()
    for pattern in _DATE_PATTERNS:
        match = pattern.match(text)
        if match:
            candidates, _ = _dates_of_match(match)
            if len(candidates) == 1:
                return next(iter(candidates))
    return None


def _time_key(text: str) -> str | None:
    """HHMMSS of a DICOM TM ("094400.000", "0944", "09:44:00"), or None for an hour alone or junk."""
    digits = re.sub(r"[:\s]", "", str(text)).split(".")[0]
    if not digits.isdigit() or len(digits) not in (4, 6):
        return None
    digits = digits.ljust(6, "0")
    hour, minute, second = int(digits[:2]), int(digits[2:4]), int(digits[4:6])
    return digits if hour < 24 and minute < 60 and second < 61 else None


# -- spellings of names, IDs and texts -----------------------------------------------------------

def _alternation(forms: Iterable[str]) -> str:
    """Forms as one regex alternation, longest first (so a whole name wins over one part)."""
    unique = sorted(set(forms), key=len, reverse=True)
    return "|".join(f"(?:{form})" for form in unique)


def _joined(tokens: Sequence[str], separator: str) -> str:
    return separator.join(re.escape(token) for token in tokens)


def _word(body: str) -> str:
    """``body`` (a regex) as a word of letters: see :data:`_WORD_START`."""
    return f"{_WORD_START}(?:{body}){_WORD_END}"


def _bounded(tokens: Sequence[str], separator: str) -> str:
    """Tokens joined by ``separator``, bounded as words or numbers depending on how they start
    and end (an ID ending in digits must not continue into a longer number)."""
    start = _NUMBER_START if tokens[0][0].isdigit() else _WORD_START
    end = _NUMBER_END if tokens[-1][-1].isdigit() else _WORD_END
    return f"{start}{_joined(tokens, separator)}{end}"


def _inside_ordinary(token: str, ordinary: Collection[str]) -> bool:
    lowered = token.lower()
    return any(lowered in word for word in ordinary)


def _part_form(token: str, ordinary: Collection[str]) -> str | None:
    """How one name part (or distinctive word) is searched for alone, or None when it is an
    ordinary word of the report (it is then searched for only inside the whole name)."""
    lowered = token.lower()
    if len(token) < 2 or lowered in ordinary or lowered in _NAME_PARTICLES:
        return None
    if len(token) >= 5 and token.isalpha() and not _inside_ordinary(token, ordinary):
        return re.escape(token)  # distinctive: glued to anything ("Smithinjection")
    return _word(re.escape(token))


def _name_components(value: str) -> list[list[str]]:
    """Family, given and middle names of a person name, each as its tokens.

    DICOM "Family^Given^Middle^Prefix^Suffix" (prefix and suffix dropped: "Dr.", "Jr."),
    "Family, Given", or "Given Family" as people type it.
    """
    if "^" in value:
        components = value.split("^")[:3]
    elif "," in value:
        components = value.split(",")[:3]
    else:
        components = value.split()
    tokens = [re.findall(rf"{_LETTER}+(?:['’]{_LETTER}+)?", component) for component in components]
    return [t for t in tokens if t]


def name_forms(value: str, ordinary: Collection[str]) -> list[str]:
    """Every spelling of a person name searched for (regexes, case-insensitive)."""
    components = _name_components(value)
    if not components:
        return []
    whole: list[str] = []
    spelled = [_joined(c, _NAME_SEP) for c in components]
    long = [s for s, c in zip(spelled, components) if sum(len(t) for t in c) >= 2]
    orders = _orders(spelled) + (_orders(long, 2) if len(long) >= 2 else [])
    whole += [_NAME_SEP.join(order) for order in orders if len(order) >= 2]
    for named, other in permutations(range(len(components)), 2):
        # "J. Smith", "Smith, J." (either order: a typed "John Smith" has no family marker)
        initial = re.escape(components[named][0][0].upper())
        whole += [rf"(?-i:{initial})\.\s*{spelled[other]}", rf"{spelled[other]},?\s*(?-i:{initial})\."]
    tokens = [t for c in components for t in c]
    whole += [_TITLES + re.escape(t) for t in tokens if len(t) >= 2 and t.lower() not in _NAME_PARTICLES]
    if len(components) == 1:
        whole.append(spelled[0])
    forms = [_word(_alternation(whole))]
    forms += [form for form in (_part_form(t, ordinary) for t in tokens) if form]
    return forms


def _orders(items: Sequence[str], size: int | None = None) -> list[tuple[str, ...]]:
    return list(permutations(items, size or len(items)))


def _alnum_runs(value: str) -> list[str]:
    """Runs of letters and runs of digits ("MRN-778899" → MRN, 778899; "RAD2600" → RAD, 2600)."""
    return re.findall(r"[^\W\d_]+|\d+", value)


def id_forms(value: str, ordinary: Collection[str]) -> list[str]:
    """Every spelling of an ID searched for: its runs with any separator or none (any case),
    and its longest digit run alone when it has four digits or more."""
    runs = _alnum_runs(value)
    content = "".join(runs)
    if len(content) < 3 or (content.isdigit() and len(content) < 4) or content.lower() in ordinary:
        return []
    forms = [_bounded(runs, _ID_SEP)]
    digit_runs = [run for run in runs if run.isdigit()]
    longest = max((len(run) for run in digit_runs), default=0)
    if longest >= 4 and len(runs) > 1:
        forms += [f"{_NUMBER_START}{run}{_NUMBER_END}" for run in digit_runs if len(run) == longest]
    return forms


def text_forms(value: str, ordinary: Collection[str]) -> list[str]:
    """Every spelling of an identifying text (institution, address, department): the whole
    phrase with any separators, each distinctive capitalised word, and numbers of four digits or
    more (postal codes, house numbers of addresses)."""
    runs = _alnum_runs(value)
    content = "".join(runs)
    if len(content) < 3 or (len(runs) == 1 and runs[0].lower() in ordinary):
        return []
    forms = [_bounded(runs, _TEXT_SEP)]
    if len(runs) > 1:
        for run in runs:
            if run.isdigit():
                if len(run) >= 4:
                    forms.append(f"{_NUMBER_START}{run}{_NUMBER_END}")
            elif len(run) >= 4 and run[0].isupper() and run.lower() not in GENERIC_PLACE_WORDS:
                form = _part_form(run, ordinary)
                if form:
                    forms.append(form)
    return forms


@dataclass(frozen=True)
class Identifier:
    """One identifying value and the regex of all its spellings."""

    kind: str
    pattern: re.Pattern[str]


def _identifier(field: Field, value: str, ordinary: Collection[str]) -> Identifier | None:
    builders = {"name": name_forms, "id": id_forms, "text": text_forms}
    forms = builders[field.shape](value, ordinary)
    if not forms:
        return None
    return Identifier(field.kind, re.compile(_alternation(forms), re.IGNORECASE))


def tag_field(keyword: str, value: str = "") -> Field:
    """What a DICOM tag recorded in ``meta["identifiers"]`` is (dates and times by their keyword's
    ending, as every DICOM DA/TM/DT keyword is named; private tags by the value's shape)."""
    if keyword in TAG_FIELDS:
        return TAG_FIELDS[keyword]
    what = f"DICOM {keyword}"
    for ending, shape in (("DateTime", "datetime"), ("Date", "date"), ("Time", "time")):
        if keyword.endswith(ending):
            return Field(f"a {'time' if shape == 'time' else 'date'} of the images ({what})", shape)
    digits = re.sub(r"\D", "", value)
    shape = "datetime" if len(digits) > 8 else "date" if len(digits) == 8 else "time" if len(digits) in (4, 6) else "id"
    return Field(f"a value of {what}", shape)


# -- the scrubber --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scrubber:
    """Replaces the study's identifiers and every calendar date and clock time in a string, and
    checks a finished report for what is left.

    Attributes:
        active: False for an identified report: :meth:`text` then returns its input.
        values: the identifying values as (field, text) pairs, kept to extend the scrubber.
        ordinary: lower-case words the report itself writes (never removed on their own).
        identifiers: the regexes of names, IDs and texts, longest value first.
        dates: known dates → their kind (birth date, day 0, DICOM dates).
        birth_dates: dates that are the patient's birth date (removed, not made relative).
        times: known clock times (HHMMSS) → their kind.
        day0: the transplantation date, from which dates become "day N".
    """

    active: bool = True
    values: tuple[tuple[Field, str], ...] = ()
    ordinary: frozenset[str] = frozenset()
    identifiers: tuple[Identifier, ...] = ()
    dates: Mapping[date, str] = field(default_factory=dict)
    birth_dates: frozenset[date] = frozenset()
    times: Mapping[str, str] = field(default_factory=dict)
    day0: date | None = None

    @classmethod
    def for_study(cls, info: Mapping[str, Any], active: bool = True, tags: Mapping[str, Sequence[str]] | None = None,
                  ordinary: Collection[str] = ()) -> Scrubber:
        """A scrubber for the ``[study]`` table of a manifest and the identifying DICOM ``tags``
        of its series (keyword → values, as in ``Volume.meta["identifiers"]``)."""
        values = [(MANIFEST_FIELDS[key], str(info[key]).strip()) for key in IDENTIFYING_KEYS
                  if str(info.get(key) or "").strip()]
        day0 = parse_date_value(str(info.get("day0") or "")) if info.get("day0") else None
        base = cls(active, (), frozenset(w.lower() for w in ordinary), day0=day0)
        return base.with_values(values + _tag_values(tags or {}))

    def with_tags(self, tags: Mapping[str, Sequence[str]]) -> Scrubber:
        """The same scrubber knowing more DICOM identifiers (itself when they add nothing)."""
        return self.with_values(_tag_values(tags))

    def with_values(self, values: Iterable[tuple[Field, str]]) -> Scrubber:
        """The same scrubber knowing more identifying (field, value) pairs."""
        everything = list(self.values)
        for pair in values:
            if pair[1] and pair not in everything:
                everything.append(pair)
        if len(everything) == len(self.values):
            return self
        identifiers: list[tuple[int, Identifier]] = []
        dates: dict[date, str] = {}
        births: set[date] = set()
        times: dict[str, str] = {}
        for spec, value in everything:
            if spec.shape in ("date", "datetime"):
                day = parse_date_value(value)
                if day is not None:
                    dates.setdefault(day, spec.kind)
                    if "birth" in spec.kind:
                        births.add(day)
            if spec.shape in ("time", "datetime"):
                clock = _time_key(value if spec.shape == "time" else re.sub(r"\D", "", value)[8:14])
                if clock is not None:
                    times.setdefault(clock, spec.kind.replace("date", "time"))
            if spec.shape in ("name", "id", "text"):
                identifier = _identifier(spec, value, self.ordinary)
                if identifier is not None:
                    identifiers.append((len(value), identifier))
        ordered = tuple(i for _, i in sorted(identifiers, key=lambda pair: -pair[0]))
        return dataclasses.replace(self, values=tuple(everything), identifiers=ordered, dates=dates,
                                   birth_dates=frozenset(births), times=times)

    # -- scrubbing --------------------------------------------------------------------------------
    def text(self, value: str) -> str:
        """``value`` with dates as days after transplantation (or removed), clock times removed,
        and names, IDs and identifying texts replaced by :data:`REMOVED`."""
        if not self.active or not value:
            return value
        for pattern in _DATE_PATTERNS:
            value = pattern.sub(self._date_replacement, value)
        value = _CLOCK_SECONDS.sub(lambda m: TIME_REMOVED if self._clock(m) else m.group(0), value)
        value = _CLOCK_MINUTES.sub(lambda m: TIME_REMOVED if self._known_minutes(m) else m.group(0), value)
        value = _COMPACT_TIME.sub(lambda m: TIME_REMOVED if _time_key(m.group("t")) in self.times else m.group(0), value)
        for identifier in self.identifiers:
            value = identifier.pattern.sub(REMOVED, value)
        return value

    def _date_replacement(self, match: re.Match[str]) -> str:
        candidates, is_date = _dates_of_match(match)
        if not is_date:
            return match.group(0)
        if candidates & self.birth_dates:
            return REMOVED
        known = [d for d in candidates if d in self.dates]
        day = next(iter(candidates)) if len(candidates) == 1 else (known[0] if len(known) == 1 else None)
        if day is None or self.day0 is None:
            return DATE_REMOVED
        return f"day {(day - self.day0).days}"

    @staticmethod
    def _clock(match: re.Match[str]) -> bool:
        return int(match["h"]) < 24 and int(match["m"]) < 60 and int(match["s"]) < 61

    def _known_minutes(self, match: re.Match[str]) -> bool:
        key = f"{int(match['h']):02d}{match['m']}"
        return any(clock.startswith(key) for clock in self.times)

    # -- checking ---------------------------------------------------------------------------------
    def leaks(self, value: str) -> list[str]:
        """The kinds of identifier still found in ``value`` (empty when it is clean)."""
        found: list[str] = []
        for pattern in _DATE_PATTERNS:
            for match in pattern.finditer(value):
                candidates, is_date = _dates_of_match(match)
                if is_date:
                    known = [self.dates[d] for d in sorted(candidates) if d in self.dates]
                    found.append(known[0] if known else "a calendar date")
        found += ["a time of day" for m in _CLOCK_SECONDS.finditer(value) if self._clock(m)]
        found += [self._time_kind(m.group("t")) for m in _COMPACT_TIME.finditer(value)
                  if _time_key(m.group("t")) in self.times]
        found += ["a time of the images" for m in _CLOCK_MINUTES.finditer(value) if self._known_minutes(m)]
        found += [identifier.kind for identifier in self.identifiers if identifier.pattern.search(value)]
        return found

    def _time_kind(self, text: str) -> str:
        return self.times.get(_time_key(text) or "", "a time of the images")

    def check(self, places: Iterable[tuple[str, str]]) -> None:
        """Refuse a report that still shows an identifier somewhere.

        ``places`` are (where, text) pairs covering everything the reader can see or search.

        Raises:
            ViewerError: one line naming the first kind of identifier found and where, and how
                many other places hold one; it never quotes the identifier.
        """
        hits = [(place, kinds[0]) for place, text in places for kinds in (self.leaks(text),) if kinds]
        if not hits:
            return
        place, kind = hits[0]
        more = f" (and {len(hits) - 1} more place(s))" if len(hits) > 1 else ""
        raise ViewerError(f"the report would show {kind} in {place}{more}, where de-identification cannot remove "
                          "it; not written")


def _tag_values(tags: Mapping[str, Sequence[str]]) -> list[tuple[Field, str]]:
    return [(tag_field(keyword, value), str(value).strip()) for keyword, values in tags.items() for value in values
            if str(value).strip()]


def merge_identifiers(*sources: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Keyword → values of several ``meta["identifiers"]`` dicts, each value once."""
    merged: dict[str, list[str]] = {}
    for source in sources:
        for keyword, values in source.items():
            bucket = merged.setdefault(keyword, [])
            bucket.extend(v for v in values if v not in bucket)
    return merged


# -- the report's own words --------------------------------------------------------------------------

def words_written_by(modules: Iterable[ModuleType]) -> frozenset[str]:
    """Every word (two letters or more, lower case) of the literal text in ``modules``: string
    constants of their functions and methods (f-string parts included) and of their module-level
    constants (tables such as the measures registry), docstrings left out.

    This is the report's own vocabulary: a name part that is one of these words ("Day", "Core")
    cannot be told from the report's words, so it is never removed on its own. Reading the code
    objects keeps the vocabulary in step with the code without a hand-kept list.
    """
    words: set[str] = set()
    for module in modules:
        for name, value in vars(module).items():
            if not name.startswith("__"):
                _collect_words(value, module.__name__, words, depth=0)
    return frozenset(words)


def _collect_words(value: Any, module_name: str, words: set[str], depth: int) -> None:
    if depth > 4:
        return
    if isinstance(value, str):
        words.update(re.findall(rf"{_LETTER}{{2,}}", value.lower()))
    elif isinstance(value, FunctionType):
        if value.__module__ == module_name:
            _code_words(value.__code__, words)
    elif isinstance(value, type):
        if value.__module__ == module_name:
            for member in vars(value).values():
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if isinstance(member, property):
                    member = member.fget
                if isinstance(member, (FunctionType, str)):
                    _collect_words(member, module_name, words, depth + 1)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _collect_words(key, module_name, words, depth + 1)
            _collect_words(item, module_name, words, depth + 1)
    elif isinstance(value, (tuple, list, set, frozenset)):
        for item in value:
            _collect_words(item, module_name, words, depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for spec in dataclasses.fields(value):
            _collect_words(getattr(value, spec.name), module_name, words, depth + 1)


def _code_words(code: CodeType, words: set[str]) -> None:
    """String constants of a code object and of the code nested in it (lambdas, comprehensions,
    inner functions); a function's first constant is its docstring (or None) and is skipped."""
    constants = code.co_consts[1:] if code.co_consts and not code.co_name.startswith("<") else code.co_consts
    for constant in constants:
        if isinstance(constant, str):
            words.update(re.findall(rf"{_LETTER}{{2,}}", constant.lower()))
        elif isinstance(constant, CodeType):
            _code_words(constant, words)
        elif isinstance(constant, tuple):
            words.update(w for c in constant if isinstance(c, str) for w in re.findall(rf"{_LETTER}{{2,}}", c.lower()))
