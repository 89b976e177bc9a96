"""The report as a description: every sentence, table and figure, before any PDF exists.

PRODUCT.md §6 asks that the window and ``viewer report`` make identical reports. Both build
one :class:`Report` here from the same inputs (:mod:`.inputs`), and one writer
(:mod:`.pdf`) lays it out. Keeping the content apart from the layout also lets tests read
the report's text without parsing a PDF, and lets the de-identification check run on the
finished text before anything is written.

Column titles, units, descriptions and number formats come from the measures registry
(:mod:`viewer.core.quant.measures`), so the report shows the numbers exactly as the window's
region table does.

Timepoints are consumed one at a time: each timepoint's section (its key images) is made as
soon as it arrives and only its numbers are kept afterwards, so a long study never holds every
timepoint's images at once. A de-identified report knows every identifier before the first
section is made (the manifest's and the DICOM tags of every series, :mod:`.inputs`), scrubs
every string it writes and every word drawn into its figures, and is checked place by place
(:meth:`Report.places`) before it is returned (:mod:`.deidentify`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from viewer import APP_NAME, __version__
from viewer.core.errors import ViewerError
from viewer.core.io.study import Study, Timepoint
from viewer.core.quant.measures import (
    REGION_MEASURES,
    Measure,
    format_number,
    plain_value,
    region_measure,
    timepoint_measure,
)
from viewer.core.quant.perfusion import MismatchSummary
from viewer.core.quant.stats import TimepointStats
from viewer.core.regions import LabelTable
from viewer.core.report.deidentify import (
    DATE_REMOVED,
    REMOVED,
    TIME_REMOVED,
    Scrubber,
    merge_identifiers,
    words_written_by,
)
from viewer.core.report.inputs import (
    TimepointInput,
    input_identifiers,
    study_identifiers,
)
from viewer.core.volume import ROLE_QUANTITY, ROLE_UNITS

#: Regions per table: more would not fit the width of a portrait A4 page.
REGIONS_PER_TABLE = 6
#: Measures shown as rows of the region table (label and name head the columns; predictions
#: have their own table).
TABLE_MEASURES: tuple[Measure, ...] = tuple(m for m in REGION_MEASURES if m.key not in ("label", "name", "prediction"))

#: Notes of the numbers that the report shows in the timepoint summary or beside the
#: predictions instead (mismatch sentence, homing, ¹⁹F noise, demonstration-model notice).
SUMMARISED_NOTES: tuple[str, ...] = ("core ", "homing: ", "¹⁹F noise σ", "predictions of ")


@dataclass(frozen=True)
class Table:
    """A table as text.

    Attributes:
        columns: header cells.
        rows: body rows, each as long as ``columns``.
        alert_cells: (row, column) body cells to highlight as alerts.
        alert_columns: header columns to highlight (a region with a rejection alert).
        caption: a sentence shown under the table.
        first_column_wide: the first column holds titles (measure names) and gets more room.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    alert_cells: frozenset[tuple[int, int]] = frozenset()
    alert_columns: frozenset[int] = frozenset()
    caption: str = ""
    first_column_wide: bool = True
    notice: str = ""

    def text(self) -> str:
        lines = [" | ".join(self.columns)] + [" | ".join(row) for row in self.rows]
        return "\n".join(lines + [text for text in (self.caption, self.notice) if text])

    def cells(self) -> Iterator[str]:
        """Every cell, caption and notice on its own (what the leak check reads one by one, so
        two neighbouring cells are never read as one phrase)."""
        yield from self.columns
        for row in self.rows:
            yield from row
        yield from (text for text in (self.caption, self.notice) if text)


@dataclass(frozen=True)
class Figure:
    """A raster figure: RGB pixels (rows, cols, 3) uint8 and the printed size in inches."""

    pixels: np.ndarray
    width_in: float
    height_in: float
    caption: str = ""
    #: every string drawn into the pixels (titles, ticks, legends), for the leak check
    texts: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSummary:
    """A prediction model's card, summarised for a reader (PRODUCT.md §4)."""

    title: str
    notice: str | None
    fields: tuple[tuple[str, str], ...]

    def text(self) -> str:
        lines = [self.title] + ([self.notice] if self.notice else [])
        return "\n".join(lines + [f"{k}: {v}" for k, v in self.fields])


@dataclass(frozen=True)
class TimepointSection:
    """Everything the report says about one timepoint."""

    label: str
    heading: str
    images_caption: str
    key_images: Figure | None
    alerts: tuple[str, ...]
    summary: tuple[tuple[str, str], ...]
    region_tables: tuple[Table, ...]
    mismatch: Table | None
    predictions: tuple[Table, ...]
    contributions: tuple[Table, ...]
    notes: tuple[str, ...]

    def text(self) -> str:
        parts = [self.heading, self.images_caption, *self.alerts]
        parts += [f"{k}: {v}" for k, v in self.summary]
        parts += [t.text() for t in (*self.region_tables, *((self.mismatch,) if self.mismatch else ()),
                                     *self.predictions, *self.contributions)]
        parts += list(self.notes)
        return "\n".join(parts)

    def places(self) -> Iterator[tuple[str, str]]:
        """(where, text) of everything the section shows, words drawn into its images included."""
        of = f"of {self.label}"
        yield f"the heading {of}", self.heading
        yield f"the key image caption {of}", self.images_caption
        for drawn in self.key_images.texts if self.key_images is not None else ():
            yield f"the key images {of} (a label drawn into them)", drawn
        yield from ((f"the alerts {of}", alert) for alert in self.alerts)
        yield from ((f"the summary {of}", f"{k}: {v}") for k, v in self.summary)
        for what, tables in (("region table", self.region_tables), ("core/penumbra table", (self.mismatch,)),
                             ("prediction table", self.predictions), ("feature contribution table", self.contributions)):
            for table in tables:
                if table is not None:
                    yield from ((f"the {what} {of}", cell) for cell in table.cells())
        yield from ((f"the notes {of}", note) for note in self.notes)


@dataclass(frozen=True)
class PdfInfo:
    """The PDF's document information (what file browsers and search tools show)."""

    title: str
    author: str
    subject: str
    keywords: tuple[str, ...]
    #: fixed creation date and document ID (de-identified reports carry no real date)
    invariant: bool
    creator: str = f"{APP_NAME} {__version__}"


@dataclass(frozen=True)
class Report:
    """A whole report, ready to be laid out."""

    title: str
    header: tuple[tuple[str, str], ...]
    deidentified: bool
    modalities: Table
    sections: tuple[TimepointSection, ...]
    time_course: Figure | None
    models: tuple[ModelSummary, ...]
    definitions: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    footer: str
    info: PdfInfo
    signature: tuple[str, ...] = ()
    #: the reviewer's name (scrubbed), printed on the signature block's name line
    reviewer: str | None = None

    def text(self) -> str:
        """All the report's words in reading order (for tests and the de-identification check)."""
        parts = [self.title] + [f"{k}: {v}" for k, v in self.header] + [self.modalities.text()]
        parts += [s.text() for s in self.sections]
        parts += [self.time_course.caption] if self.time_course else []
        parts += [m.text() for m in self.models]
        parts += [f"{k}: {v}" for k, v in self.definitions] + list(self.notes) + list(self.signature) + [self.footer]
        parts += [self.info.title, self.info.author, self.info.subject, *self.info.keywords]
        return "\n".join(parts)

    def places(self) -> Iterator[tuple[str, str]]:
        """(where, text) of everything a reader can see or search: the de-identification check
        reads each place on its own and names it when it refuses."""
        yield "the title", self.title
        yield from ((f"the header ({k})", f"{k}: {v}") for k, v in self.header)
        yield from (("the timepoint table", cell) for cell in self.modalities.cells())
        for section in self.sections:
            yield from section.places()
        if self.time_course is not None:
            yield "the time-course caption", self.time_course.caption
            yield from (("the time-course figure (a label drawn into it)", drawn) for drawn in self.time_course.texts)
        for model in self.models:
            yield from ((f"the model card {model.title}", line) for line in model.text().splitlines())
        yield from (("the definitions", f"{k}: {v}") for k, v in self.definitions)
        yield from (("the report notes", note) for note in self.notes)
        yield from (("the signature block", line) for line in (*self.signature, self.reviewer or ""))
        yield "the page footer", self.footer
        info = self.info
        yield from ((f"the PDF {key}", value) for key, value in (
            ("title", info.title), ("author", info.author), ("subject", info.subject),
            ("keywords", ", ".join(info.keywords)), ("creator", info.creator)))


@dataclass(frozen=True)
class ReportOptions:
    """Choices made when asking for a report.

    Attributes:
        deidentify: remove the patient's name, ID, birth date and exact dates everywhere.
        reviewer: who reviews and signs the report.
        focus: world point (mm, RAS) the key images pass through; None: each timepoint's
            strongest ¹⁹F hotspot (the window passes its cursor).
        radiological: patient's right on screen left in axial and coronal views.
        created: creation time shown in an identified report (default: now).
        protocol: display protocol of the key images (None: the default for each timepoint's
            images; PRODUCT.md §5).
        displays: the display of each role as on screen (the window passes its own, so the
            key images look like the views); roles not in it get their default display.
    """

    deidentify: bool = False
    reviewer: str | None = None
    focus: Any = None
    radiological: bool = True
    created: datetime | None = None
    protocol: str | None = None
    displays: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class _Reported:
    """What the study-wide parts need of a timepoint once its section is made: its numbers and
    which images it had, not the images themselves (they are released)."""

    timepoint: Timepoint
    roles: tuple[str, ...]
    stats: TimepointStats
    unsaved_edits: bool
    table: LabelTable

    @classmethod
    def of(cls, item: TimepointInput) -> _Reported:
        return cls(item.timepoint, tuple(item.volumes), item.stats, item.unsaved_edits, item.table)


def report_vocabulary() -> frozenset[str]:
    """The words the report's own code writes (headings, column titles, units, notes of the
    numbers, reserved region names, figure labels): a name part that is one of them is never
    removed on its own (PRODUCT.md §6, "Day^Core")."""
    from viewer.core import render, volume
    from viewer.core.predict import card, model
    from viewer.core.quant import (
        fluorine,
        measures,
        perfusion,
        pet,
        settings,
        stats,
        viability,
    )
    from viewer.core.report import figures, pdf

    modules = (sys.modules[__name__], figures, pdf, render, volume, measures, stats, fluorine, pet, perfusion,
               viability, settings, card, model)
    replacements = f"{REMOVED} {DATE_REMOVED} {TIME_REMOVED}"
    return words_written_by(modules) | frozenset(re.findall(r"[^\W\d_]{2,}", replacements))


@dataclass
class _Builder:
    study: Study
    models: Sequence[Any]
    options: ReportOptions
    scrub: Scrubber
    #: the timepoints whose sections are made, in order (numbers only)
    reported: list[_Reported] = field(default_factory=list)
    #: one display per role for every timepoint (levels from the first), as in the window
    displays: dict = field(default_factory=dict)

    def t(self, text: Any) -> str:
        return self.scrub.text(str(text))

    def learn(self, identifiers: Mapping[str, Sequence[str]]) -> None:
        """Know the identifiers of a timepoint's images from now on (its section and later ones;
        earlier sections are covered by the final check, which knows them all)."""
        if self.options.deidentify and identifiers:
            self.scrub = self.scrub.with_tags(identifiers)


def build_report(study: Study, inputs: Iterable[TimepointInput], models: Sequence[Any] = (),
                 options: ReportOptions | None = None,
                 identifiers: Mapping[str, Sequence[str]] | None = None) -> Report:
    """The report of ``inputs`` (one or more timepoints of ``study``) with ``models``' predictions.

    ``inputs`` may be a lazy iterable: each timepoint's section (its key images) is made as soon
    as that timepoint arrives, and then only its numbers are kept, so the images of one
    timepoint can be released before the next is loaded.

    ``identifiers`` are the identifying DICOM tags of the study's series (keyword → values,
    :func:`viewer.core.report.inputs.study_identifiers`, read from the headers when not given),
    known before the first section is made. The inputs' volumes add their
    ``meta["identifiers"]``: a list up front, a lazy iterable as each timepoint arrives.

    A de-identified report is checked place by place for every identifier (:meth:`Report.places`,
    :meth:`Scrubber.check`) before it is returned; what is still found cannot be scrubbed there,
    and the report is refused with one line naming the kind of identifier and the place.
    """
    options = options or ReportOptions()
    created = options.created or datetime.now().astimezone()
    known: dict[str, list[str]] = {}
    if options.deidentify:
        known = merge_identifiers(study_identifiers(study) if identifiers is None else identifiers)
        if isinstance(inputs, Sequence):
            known = merge_identifiers(known, *(input_identifiers(item) for item in inputs))
    scrub = Scrubber.for_study(study.info, active=options.deidentify, tags=known,
                               ordinary=report_vocabulary() if options.deidentify else ())
    build = _Builder(study, models, options, scrub, displays=dict(options.displays or {}))
    sections = []
    for item in inputs:
        sections.append(_next_section(build, item))
        del item  # before the next one is asked for: its images are freed while the next loads
    if not sections:
        raise ViewerError(f"{study.id}: the report needs at least one timepoint")
    report = Report(
        title=f"{APP_NAME} — report of study {build.t(study.id)}",
        header=_header(build, created),
        deidentified=options.deidentify,
        modalities=_modalities(build),
        sections=tuple(sections),
        time_course=_time_course(build),
        models=tuple(_model_summary(build, model) for model in models),
        definitions=_definitions(),
        notes=_study_notes(build),
        footer=_footer(build),
        info=_pdf_info(build),
        signature=("Reviewed and approved by", "Name", "Signature", "Date"),
        reviewer=build.t(options.reviewer) if options.reviewer else None,
    )
    if options.deidentify:
        build.scrub.check(report.places())
    return report


def _next_section(build: _Builder, item: TimepointInput) -> TimepointSection:
    """The section of one arriving timepoint; afterwards only its numbers are kept."""
    build.learn(input_identifiers(item))
    section = _section(build, item)
    build.reported.append(_Reported.of(item))
    return section


# -- header and overview ------------------------------------------------------------------------

def _header(build: _Builder, created: datetime) -> tuple[tuple[str, str], ...]:
    info = build.study.info
    rows: list[tuple[str, str]] = [("Study", build.t(build.study.id))]
    if build.options.deidentify:
        rows.append(("Patient", "de-identified: name, patient ID, birth date and exact dates removed; "
                                "times are days after transplantation"))
    else:
        rows.append(("Patient", _patient_name(str(info.get("patient") or "not given"))))
        rows.append(("Patient ID", str(info.get("patient_id") or "not given")))
        rows.append(("Birth date", str(info.get("birth_date") or "not given")))
        if info.get("day0"):
            rows.append(("Transplantation (day 0)", str(info["day0"])))
    for key, title in (("sex", "Sex"), ("condition", "Condition"), ("therapy", "Therapy")):
        if info.get(key):
            rows.append((title, build.t(info[key])))
    injected = info.get("injected_cells")
    rows.append(("Injected cells", format_number(float(injected), 3) if injected is not None else "not given"))
    rows.append(("Reviewer", build.t(build.options.reviewer) if build.options.reviewer else "not given"))
    created_text = "date withheld (de-identified report)" if build.options.deidentify else created.strftime("%Y-%m-%d %H:%M %Z").strip()
    rows.append(("Created", created_text))
    rows.append(("Software", f"{APP_NAME} {__version__}"))
    if info.get("description"):
        rows.append(("Description", build.t(info["description"])))
    return tuple(rows)


def _patient_name(dicom_name: str) -> str:
    """"Family^Given" → "Family, Given" (DICOM person names as people write them)."""
    parts = [p.strip() for p in dicom_name.split("^") if p.strip()]
    return ", ".join(parts[:2]) + (" " + " ".join(parts[2:]) if len(parts) > 2 else "") if parts else dicom_name


def _image_title(role: str, timepoint: Any) -> str:
    """"PET (SUV)"; an ``other`` image with the units the manifest gives it (or none)."""
    units = timepoint.other_units if role == "other" else ROLE_UNITS[role]
    return f"{ROLE_QUANTITY[role]} ({units})" if units else ROLE_QUANTITY[role]


def _modalities(build: _Builder) -> Table:
    """Which images each reported timepoint has."""
    start = _day_zero(build.study)
    with_dates = start is not None and not build.options.deidentify
    columns = ["Timepoint", "Day"] + (["Date"] if with_dates else []) + ["Images", "Regions"]
    rows = []
    for item in build.reported:
        timepoint = item.timepoint
        roles = [_image_title(role, timepoint) for role in item.roles if role not in ("anatomical", "regions")]
        day = "—" if timepoint.day is None else f"{timepoint.day:g}"
        row = [build.t(timepoint.label), day]
        if with_dates:
            row.append("—" if timepoint.day is None else (start + timedelta(days=float(timepoint.day))).isoformat())
        row.append("anatomy" + "".join(f", {r}" for r in roles))
        names = [build.t(r.name) for r in item.stats.regions]
        row.append(_region_list(names))
        rows.append(tuple(row))
    return Table(tuple(columns), tuple(rows), first_column_wide=False)


#: Region names listed in the timepoints table; more are counted (a cell taller than a page
#: cannot be laid out, and the region tables list every region anyway).
REGIONS_LISTED = 24


def _region_list(names: list[str]) -> str:
    """The timepoint's regions for one table cell: every name up to :data:`REGIONS_LISTED`."""
    if not names:
        return "none"
    if len(names) <= REGIONS_LISTED:
        return ", ".join(names)
    return ", ".join(names[:REGIONS_LISTED]) + f" and {len(names) - REGIONS_LISTED} more (see the region tables)"


def _day_zero(study: Study) -> date | None:
    text = str(study.info.get("day0") or "")
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


# -- one timepoint ------------------------------------------------------------------------------

def _section(build: _Builder, item: TimepointInput) -> TimepointSection:
    stats = item.stats
    label = build.t(item.timepoint.label)
    day = item.timepoint.day
    if day is None:
        heading = f"Timepoint {label}"
    elif label.strip().lower() == f"day {day:g}":
        heading = f"Day {day:g} after transplantation"
    else:
        heading = f"Timepoint {label} — day {day:g} after transplantation"
    key_images, images_caption = _key_images(build, item)
    results = {}
    if build.models:
        from viewer.core.predict import predictions_of

        results = predictions_of(stats, build.models)
    return TimepointSection(
        label=label,
        heading=heading,
        images_caption=images_caption,
        key_images=key_images,
        alerts=_alerts(build, stats),
        summary=_summary(build, stats),
        region_tables=_region_tables(build, stats),
        mismatch=_mismatch_table(stats.mismatch),
        predictions=_prediction_tables(build, stats, results),
        contributions=_contribution_tables(build, stats, results),
        notes=tuple(build.t(n) for n in stats.notes if not n.startswith(SUMMARISED_NOTES)) + (
            ("the regions were edited in the window and not saved; this report shows the edited regions",)
            if item.unsaved_edits else ()),
    )


def _key_images(build: _Builder, item: TimepointInput) -> tuple[Figure | None, str]:
    """The three orthogonal views through the focus, with every overlay and the regions."""
    from viewer.core.layers import build_layers, default_focus
    from viewer.core.render import render_key_images

    from viewer.core.protocols import default_protocol, protocol

    chosen = protocol(build.options.protocol) if build.options.protocol else default_protocol(item.volumes)
    layers = build_layers(item.volumes, item.table.renamed(build.t), build.displays, protocol=chosen)
    if build.options.focus is not None:
        point, how = np.asarray(build.options.focus, dtype=float), "through the point chosen in the window"
    else:
        point = default_focus(item.volumes, item.table.names)
        how = "through the strongest ¹⁹F hotspot" if "fluorine" in item.volumes else "through the centre of the anatomy"
    where = f"({point[0]:.1f}, {point[1]:.1f}, {point[2]:.1f}) mm"
    convention = "radiological convention (patient's right on the left)" if build.options.radiological else \
        "neurological convention (patient's right on the right)"
    title = f"{build.t(build.study.id)} · {build.t(item.timepoint.label)} · {where}"
    figure = render_key_images(layers, point, build.options.radiological, title=title, text=build.t)
    caption = (f"Key images {how} at {where}, {convention}. Overlays with their colour bars and units; "
               "region outlines in the region colours; dashed marks on colour bars are display thresholds.")
    return _figure(figure, caption), caption


def _figure(figure: Any, caption: str) -> Figure:
    """A drawn matplotlib figure as pixels, with every string drawn into it (for the leak check)."""
    from viewer.core.render import drawn_texts, figure_pixels

    width, height = figure.get_size_inches()
    pixels = figure_pixels(figure)
    return Figure(pixels, float(width), float(height), caption, drawn_texts(figure))


def _alerts(build: _Builder, stats: TimepointStats) -> tuple[str, ...]:
    threshold = build.study.calibration.dead_fraction_alert
    fraction = region_measure("dead_fraction")
    return tuple(
        f"⚠ Rejection alert — {build.t(region.name)}: dead fraction {fraction.format(region.values['dead_fraction'])} "
        f"(alert at ≥ {threshold:g})"
        for region in stats.regions if region.values.get("rejection_alert")
    )


def _summary(build: _Builder, stats: TimepointStats) -> tuple[tuple[str, str], ...]:
    rows: list[tuple[str, str]] = []
    limit = timepoint_measure("detection_limit_cells_per_mm3")
    value = stats.detection_limit_cells_per_mm3
    rows.append((limit.name, f"{limit.format(value)} {limit.units}" if value is not None else
                 "not computed (see the notes)"))
    sigma = stats.details.get("fluorine_sigma")
    if sigma is not None:
        rows.append(("¹⁹F noise σ", f"{format_number(float(sigma), 4)} a.u. from the {stats.details.get('fluorine_sigma_source')}"))
    if stats.homing:
        rows.append(("Homing of ¹⁹F-counted cells",
                     ", ".join(f"{100 * share:.0f} % {place}" for place, share in stats.homing.items() if share is not None)))
    if stats.mismatch is not None:
        rows.append(("Core/penumbra", build.t(stats.mismatch.describe())))
    return tuple(rows)


def _region_tables(build: _Builder, stats: TimepointStats) -> tuple[Table, ...]:
    """Measures as rows, regions as columns (at most :data:`REGIONS_PER_TABLE` per table)."""
    tables = []
    regions = list(stats.regions)
    for start in range(0, len(regions), REGIONS_PER_TABLE):
        chunk = regions[start:start + REGIONS_PER_TABLE]
        columns = ("Measure",) + tuple(
            ("⚠ " if r.values.get("rejection_alert") else "") + f"{build.t(r.name)} ({r.label})" for r in chunk)
        rows = []
        alert_cells = set()
        for row_index, measure in enumerate(TABLE_MEASURES):
            rows.append((measure.title,) + tuple(measure.format(plain_value(r.values.get(measure.key))) for r in chunk))
            if measure.key in ("dead_fraction", "rejection_alert"):
                alert_cells |= {(row_index, 1 + i) for i, r in enumerate(chunk) if r.values.get("rejection_alert")}
        alert_columns = frozenset(1 + i for i, r in enumerate(chunk) if r.values.get("rejection_alert"))
        tables.append(Table(columns, tuple(rows), frozenset(alert_cells), alert_columns))
    if not tables:
        tables.append(Table(("Measure",), (), caption="No regions are drawn at this timepoint."))
    return tuple(tables)


def _mismatch_table(summary: MismatchSummary | None) -> Table | None:
    """Core/penumbra volumes, mismatch and each DEFUSE-3 style criterion with its threshold."""
    if summary is None:
        return None

    def ml(value: float | None) -> str:
        return "—" if value is None else f"{value:.1f}"

    def verdict(ok: bool | None) -> str:
        return "—" if ok is None else ("met" if ok else "not met")

    ratio = summary.mismatch_ratio
    rows = [
        ("Core volume (mL)", ml(summary.core_ml), f"< {summary.max_core_ml:g} mL",
         verdict(None if summary.core_ml is None else summary.core_ml < summary.max_core_ml)),
        ("Penumbra volume (mL)", ml(summary.penumbra_ml), "", ""),
        ("Hypoperfused volume (mL)", ml(summary.hypoperfused_ml), "", ""),
        ("Mismatch ratio", "—" if ratio is None else f"{ratio:.2f}", f"≥ {summary.min_ratio:g}",
         verdict(None if ratio is None else ratio >= summary.min_ratio)),
        ("Mismatch volume (mL)", ml(summary.mismatch_ml), f"≥ {summary.min_mismatch_ml:g} mL",
         verdict(None if summary.mismatch_ml is None else summary.mismatch_ml >= summary.min_mismatch_ml)),
        ("DEFUSE-3 style profile", "", "all three", verdict(summary.meets_criteria)),
    ]
    alert = frozenset((i, 3) for i, row in enumerate(rows) if row[3] == "not met")
    return Table(("Core/penumbra", "Value", "Criterion", "Result"), tuple(rows), alert)


def _prediction_tables(build: _Builder, stats: TimepointStats, results: dict) -> tuple[Table, ...]:
    """One row per predicted region and model: prediction, interval and out-of-range warnings.

    Regions a model gives no value for are listed under the table, grouped by the reason.
    """
    if not build.models:
        return ()
    rows = []
    alert_cells = set()
    missing: dict[str, list[str]] = {}
    for region in stats.regions:
        for model, prediction in results.get(region.label, []):
            title = build.t(f"{model.card.name} {model.card.version}")
            if prediction.value is None:
                missing.setdefault(f"{title}: {build.t(prediction.reason or 'no value')}", []).append(build.t(region.name))
                continue
            interval = "—" if prediction.interval is None else f"{prediction.interval[0]:.2f}–{prediction.interval[1]:.2f}"
            remark = "; ".join(prediction.warnings)
            if prediction.warnings:
                alert_cells.add((len(rows), 4))
                remark = "⚠ " + remark
            rows.append((build.t(region.name), title, f"{prediction.value:.2f}", interval, build.t(remark)))
    lines = [f"Not predicted by {reason} ({', '.join(names)})." for reason, names in missing.items()]
    notices = sorted({build.t(m.card.notice) for m in build.models if m.card.demonstration and m.card.notice})
    if not rows:
        rows.append(("—", "—", "—", "—", "no region has a prediction"))
    return (Table(("Region", "Model", "Prediction", "Interval", "Warnings"), tuple(rows), frozenset(alert_cells),
                  caption="\n".join(lines), first_column_wide=False, notice="\n".join(f"⚠ {n}" for n in notices)),)


def _contribution_tables(build: _Builder, stats: TimepointStats, results: dict) -> tuple[Table, ...]:
    """Per model: each feature's contribution to each region's prediction (feature value in brackets)."""
    if not build.models:
        return ()
    tables = []
    for model in build.models:
        predicted = [(region, p) for region in stats.regions for m, p in results.get(region.label, [])
                     if m is model and p.value is not None]
        if not predicted:
            continue
        space = next((p.contribution_space for _, p in predicted if p.contribution_space), "")
        method = next((p.contribution_method for _, p in predicted if p.contribution_method), "")
        for start in range(0, len(predicted), REGIONS_PER_TABLE):
            chunk = predicted[start:start + REGIONS_PER_TABLE]
            columns = ("Feature",) + tuple(build.t(region.name) for region, _ in chunk)
            rows = []
            alert_cells = set()
            for row_index, feature in enumerate(model.card.features):
                cells = []
                for column, (_, prediction) in enumerate(chunk, start=1):
                    contribution = prediction.contributions.get(feature.name)
                    value = prediction.features.get(feature.name)
                    cells.append("—" if contribution is None else
                                 f"{contribution:+.3f} ({'—' if value is None else format_number(float(value), 3)})")
                    if feature.name in prediction.out_of_range:
                        alert_cells.add((row_index, column))
                units = f" ({feature.units})" if feature.units and feature.units != "1" else ""
                rows.append((feature.name + units,) + tuple(cells))
            caption = build.t(f"{model.card.name} {model.card.version}: {method} contributions in {space} units "
                              "relative to each feature's baseline; the feature's value in brackets; highlighted values "
                              "lie outside the training range.")
            tables.append(Table(columns, tuple(rows), frozenset(alert_cells), caption=caption))
    return tuple(tables)


# -- study-wide parts --------------------------------------------------------------------------------

def _time_course(build: _Builder) -> Figure | None:
    from viewer.core.report.figures import time_course_figure

    figure = time_course_figure([i.stats for i in build.reported], text=build.t,
                                tables=[i.table for i in build.reported])
    if figure is None:
        return None
    caption = ("Time course of live (solid, circles) and dead (dashed, triangles) transplanted cells per region, "
               "regions matched by name across timepoints.")
    return _figure(figure, caption)


def _model_summary(build: _Builder, model: Any) -> ModelSummary:
    card = model.card
    fields = [
        ("Outcome", f"{card.outcome_name} — {card.outcome_meaning}"),
        ("Intended use", card.intended_use),
        ("Validation", card.validation_text()),
        ("Training data", card.training_summary()),
        ("Features", ", ".join(f"{f.name} [{f.training_range[0]:g}, {f.training_range[1]:g}]" for f in card.features)
         + " (training ranges)"),
    ]
    if card.interval is not None and card.interval.description:
        fields.append(("Interval", card.interval.description))
    fields.append(("Licence", card.licence))
    return ModelSummary(build.t(f"{card.name} — version {card.version}"),
                        build.t(card.notice) if card.demonstration and card.notice else None,
                        tuple((k, build.t(v)) for k, v in fields))


def _definitions() -> tuple[tuple[str, str], ...]:
    measures: Iterable[Measure] = (timepoint_measure("detection_limit_cells_per_mm3"), *TABLE_MEASURES)
    return tuple((m.title, m.description) for m in measures)


def _study_notes(build: _Builder) -> tuple[str, ...]:
    notes = []
    if any(item.unsaved_edits for item in build.reported):
        notes.append("Regions edited in the window and not yet saved are reported as edited.")
    if not build.models:
        notes.append("No prediction model is configured for this study.")
    if build.options.deidentify:
        notes.append("De-identified report: patient name, patient ID, birth date and exact dates are removed from the "
                     "text, the images and the document properties.")
    return tuple(notes)


def _footer(build: _Builder) -> str:
    tag = " · de-identified" if build.options.deidentify else ""
    return f"{APP_NAME} {__version__} · study {build.t(build.study.id)}{tag}"


def _pdf_info(build: _Builder) -> PdfInfo:
    study_id = build.t(build.study.id)
    info = build.study.info
    if build.options.deidentify:
        subject = f"Cell-therapy imaging report, study {study_id} (de-identified)"
    else:
        patient = _patient_name(str(info.get("patient") or ""))
        subject = f"Cell-therapy imaging report, study {study_id}" + (f", patient {patient}" if patient else "") + (
            f" ({info['patient_id']})" if info.get("patient_id") else "")
    keywords = tuple(build.t(v) for v in ("cell therapy", "19F MRI", info.get("condition") or "", info.get("therapy") or "") if v)
    author = build.t(build.options.reviewer) if build.options.reviewer else APP_NAME
    return PdfInfo(f"Report of study {study_id}", author, subject, keywords, invariant=build.options.deidentify)
