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
from viewer.core.measurements import (
    EllipseROI,
    LayerStatistics,
    Measurement,
    Ruler,
    SphereROI,
    roi_statistics,
)
from viewer.core.predict import feature_title
from viewer.core.quant.measures import (
    FLUORINE_INTERVAL,
    REGION_MEASURES,
    Measure,
    display_value,
    format_number,
    region_measure,
    table_measures,
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
TABLE_MEASURES: tuple[Measure, ...] = table_measures([m for m in REGION_MEASURES
                                                      if m.key not in ("label", "name", "prediction")])

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
        widths: each column's share of the text width (summing to 1); empty: the layout's
            default (see ``first_column_wide``).
        spans: body cells merged into one, each (first column, first row, last column, last
            row) in body-row indices; the first cell holds the text, the others are empty. A
            page never breaks inside a merged cell.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    alert_cells: frozenset[tuple[int, int]] = frozenset()
    alert_columns: frozenset[int] = frozenset()
    caption: str = ""
    first_column_wide: bool = True
    notice: str = ""
    widths: tuple[float, ...] = ()
    spans: tuple[tuple[int, int, int, int], ...] = ()

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
class Chart:
    """A vector figure: a reportlab Drawing (its size in points), placed in the PDF as drawn."""

    drawing: Any
    caption: str = ""
    #: every string the drawing shows (axis titles, ticks, legends), read from it, for the leak check
    texts: tuple[str, ...] = ()

    @property
    def width_in(self) -> float:
        return float(self.drawing.width) / 72

    @property
    def height_in(self) -> float:
        return float(self.drawing.height) / 72


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
    #: the reader's rulers and ROIs measured on this timepoint's images (None: there are none)
    measurements: Table | None = None

    def text(self) -> str:
        parts = [self.heading, self.images_caption, *self.alerts]
        parts += [f"{k}: {v}" for k, v in self.summary]
        parts += [t.text() for t in (*self.region_tables, *((self.mismatch,) if self.mismatch else ()),
                                     *((self.measurements,) if self.measurements else ()),
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
                             ("measurement table", (self.measurements,)),
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
    time_course: Chart | None
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
        measurements: the reader's rulers and ROIs (world mm; the window passes its list,
            ``viewer report`` the study workspace's), measured on every reported timepoint's
            own images and listed in its section.
        levels_cache: where default levels and each timepoint's focus are remembered per image
            file (:class:`viewer.core.io.levels_cache.LevelsCache`); None: computed every time.
    """

    deidentify: bool = False
    reviewer: str | None = None
    focus: Any = None
    radiological: bool = True
    created: datetime | None = None
    protocol: str | None = None
    displays: Mapping[str, Any] | None = None
    measurements: tuple[Measurement, ...] = ()
    levels_cache: Any = None

    def __post_init__(self) -> None:  # a caller's list cannot change the report afterwards
        object.__setattr__(self, "measurements", tuple(self.measurements))


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
        measurements=_measurement_table(build, item),
    )


def _key_images(build: _Builder, item: TimepointInput) -> tuple[Figure | None, str]:
    """The three orthogonal views through the focus, with every overlay and the regions."""
    from viewer.core.layers import build_layers, default_focus
    from viewer.core.protocols import default_protocol, protocol
    from viewer.core.render import render_key_images

    chosen = protocol(build.options.protocol) if build.options.protocol else default_protocol(item.volumes)
    cache = build.options.levels_cache
    layers = build_layers(item.volumes, item.table.renamed(build.t), build.displays, protocol=chosen, cache=cache)
    if build.options.focus is not None:
        point, how = np.asarray(build.options.focus, dtype=float), "through the point chosen in the window"
    else:
        point = default_focus(item.volumes, item.table.names, cache)
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
    """A drawn canvas (the key images) as pixels, with every string drawn into it (for the leak check)."""
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
            rows.append((measure.title,) + tuple(measure.format(display_value(r.values, measure)) for r in chunk))
            if measure.key in ("dead_fraction", "rejection_alert"):
                alert_cells |= {(row_index, 1 + i) for i, r in enumerate(chunk) if r.values.get("rejection_alert")}
        alert_columns = frozenset(1 + i for i, r in enumerate(chunk) if r.values.get("rejection_alert"))
        tables.append(Table(columns, tuple(rows), frozenset(alert_cells), alert_columns))
    if not tables:
        tables.append(Table(("Measure",), (), caption="No regions are drawn at this timepoint."))
    return tuple(tables)


#: Layers in the order the measurement table lists them (the roles' order, anatomy first), the
#: same whichever order the window draws them in.
_LAYER_ORDER: tuple[str, ...] = tuple(ROLE_UNITS)
#: Region names listed per measurement; more are counted (a cell taller than a page cannot be laid out).
MEASUREMENT_REGIONS_LISTED = 12
#: Column shares of the text width, with and without the ¹⁹F cells column.
_MEASUREMENT_WIDTHS = (0.23, 0.14, 0.19, 0.09, 0.09, 0.08, 0.18)  # the cells column holds an interval
_MEASUREMENT_WIDTHS_NO_CELLS = (0.27, 0.17, 0.22, 0.11, 0.11, 0.12)


def _measurement_table(build: _Builder, item: TimepointInput) -> Table | None:
    """The reader's measurements on this timepoint's images: one row per (measurement, layer
    with voxels inside), the measurement's name, shape, size, position and regions inside in
    a first cell merged over its rows; a ruler is one row with its length. None without any."""
    measurements = build.options.measurements
    if not measurements:
        return None
    with_cells = "fluorine" in item.volumes
    columns = ("Measurement", "Layer (units)", "Mean ± SD", "Min", "Max", "Voxels") + (("¹⁹F cells",) if with_cells else ())
    width = len(columns)
    rows: list[tuple[str, ...]] = []
    spans: list[tuple[int, int, int, int]] = []
    layers = sorted(item.volumes.items(), key=lambda kv: (_LAYER_ORDER.index(kv[0]) if kv[0] in _LAYER_ORDER
                                                           else len(_LAYER_ORDER), kv[0]))
    volumes = [volume for _, volume in layers]
    for index, measurement in enumerate(measurements, start=1):
        name = build.t(measurement.name) if measurement.name else f"measurement {index}"
        first = len(rows)
        if isinstance(measurement, Ruler):
            length = f"length {measurement.length_mm:.1f} mm, from {_mm(measurement.start)} to {_mm(measurement.end)} mm"
            rows.append((f"{name} — ruler", length) + ("",) * (width - 2))
            spans.append((1, first, width - 1, first))
            continue
        statistics = roi_statistics(measurement, volumes, item.fluorine, item.table.names)
        inside = [s for s in statistics if s.voxels > 0 and s.role != "regions"]
        regions = next((s for s in statistics if s.role == "regions"), None)
        description = [f"{name} — {measurement.kind}", _size_text(measurement), f"centre {_mm(measurement.center)} mm"]
        if isinstance(measurement, EllipseROI):
            description.append(_slice_text(measurement))
        if regions is not None:
            description.append("regions inside: " + _regions_inside(build, regions, item))
        outside = [_layer_title(s) for s in statistics if s.voxels == 0 and s.role != "regions"]
        if outside and inside:
            description.append("outside the images of " + ", ".join(outside))
        if not inside:
            rows.append(("\n".join(description), "outside every image of this timepoint") + ("",) * (width - 2))
            spans.append((1, first, width - 1, first))
            continue
        for position, layer in enumerate(inside):
            cells = _layer_cells(layer, item)
            rows.append(("\n".join(description) if position == 0 else "",) + cells[:width - 1])
        if len(inside) > 1:
            spans.append((0, first, 0, len(rows) - 1))
    caption = ("Measurements placed by the reader, measured on this timepoint's own images: for each layer, on its own "
               "grid (nothing resampled), the voxels whose centres lie inside the shape (an ellipse: within half a voxel "
               "of its slice). Mean ± SD (population), minimum and maximum over the finite voxels, in each layer's "
               "units; the layers the shape misses are named in the first column.")
    if with_cells:
        caption += (" ¹⁹F cells: noise-bias-corrected signal of the detected ¹⁹F voxels inside, calibrated against the "
                    "reference tube (the rule of the regions' ¹⁹F cells), and in brackets the 95 % interval of the true "
                    "count (as the regions')." if item.fluorine is not None else
                    " ¹⁹F cells are not given: this timepoint's ¹⁹F calibration is incomplete (see the notes).")
    return Table(columns, tuple(rows), caption=caption, first_column_wide=False,
                 widths=_MEASUREMENT_WIDTHS if with_cells else _MEASUREMENT_WIDTHS_NO_CELLS, spans=tuple(spans))


def _mm(point: Any) -> str:
    return "(" + ", ".join(f"{float(v):.1f}" for v in point) + ")"


def _size_text(roi: EllipseROI | SphereROI) -> str:
    """A sphere's radius and volume (mL), an ellipse's diameters and area (mm²): the shape's
    own, not its voxels' (those follow each layer's grid)."""
    if isinstance(roi, SphereROI):
        return f"radius {roi.radius_mm:.1f} mm, {format_number(roi.volume_ml, 3)} mL"
    a, b = roi.radii_mm
    return f"{2 * a:.1f} × {2 * b:.1f} mm, {format_number(roi.area_mm2, 3)} mm²"


def _slice_text(roi: EllipseROI) -> str:
    """The slice an ellipse lies in: axial/coronal/sagittal at its coordinate, or oblique."""
    normal = np.abs(roi.normal)
    axis = int(np.argmax(normal))
    if normal[axis] < 1 - 1e-6:
        return "in an oblique slice"
    view, coordinate = (("sagittal", "x"), ("coronal", "y"), ("axial", "z"))[axis]
    return f"in the {view} slice {coordinate} = {roi.center[axis]:.1f} mm"


def _layer_title(layer: LayerStatistics) -> str:
    return f"{layer.quantity} ({layer.units})" if layer.units else layer.quantity


def _layer_cells(layer: LayerStatistics, item: TimepointInput) -> tuple[str, ...]:
    """Layer, mean ± SD, min, max, voxels and ¹⁹F cells of one layer inside a measurement."""
    def number(value: float | None) -> str:
        return "—" if value is None else format_number(value, 4)

    voxels = f"{layer.voxels:,}" + (f" ({layer.nonfinite:,} not finite)" if layer.nonfinite else "")
    if layer.mean is None:
        values = ("no finite value", "—", "—")
    else:
        values = (f"{number(layer.mean)} ± {number(layer.std)}", number(layer.minimum), number(layer.maximum))
    cells = ""
    if layer.role == "fluorine":
        cells = region_measure("fluorine_cells").format(layer.cells) if layer.cells is not None else (
            "not calibrated" if item.fluorine is None else "—")
        if layer.cells is not None and layer.cells_ci95 is not None:
            cells += f" ({FLUORINE_INTERVAL.format(layer.cells_ci95)})"
    return (_layer_title(layer), *values, voxels, cells)


def _regions_inside(build: _Builder, regions: LayerStatistics, item: TimepointInput) -> str:
    """Regions of the label map inside a measurement, most voxels first (at most
    :data:`MEASUREMENT_REGIONS_LISTED` named)."""
    if not regions.regions:
        return "none"
    voxel_ml = item.volumes["regions"].voxel_volume_mm3 / 1000.0
    ordered = sorted(regions.regions.items(), key=lambda kv: (-kv[1], kv[0]))
    listed = [f"{build.t(name)} ({count:,} voxels, {format_number(count * voxel_ml, 3)} mL)"
              for name, count in ordered[:MEASUREMENT_REGIONS_LISTED]]
    more = len(ordered) - MEASUREMENT_REGIONS_LISTED
    return ", ".join(listed) + (f" and {more} more" if more > 0 else "")


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
                rows.append((feature_title(feature.name),) + tuple(cells))
            caption = build.t(f"{model.card.name} {model.card.version}: {method} contributions in {space} units "
                              "relative to each feature's baseline; the feature's value in brackets; highlighted values "
                              "lie outside the training range.")
            tables.append(Table(columns, tuple(rows), frozenset(alert_cells), caption=caption))
    return tuple(tables)


# -- study-wide parts --------------------------------------------------------------------------------

def _time_course(build: _Builder) -> Chart | None:
    """The time course as a vector drawing, with every string it draws read back from it (for
    the leak check)."""
    from viewer.core.report.figures import drawn_strings, time_course_drawing

    drawing = time_course_drawing([i.stats for i in build.reported], text=build.t,
                                  tables=[i.table for i in build.reported])
    if drawing is None:
        return None
    caption = ("Time course of live (solid, circles) and dead (dashed, triangles) transplanted cells per region, "
               "regions matched by name across timepoints.")
    return Chart(drawing, caption, drawn_strings(drawing))


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
    if build.options.measurements:
        count = len(build.options.measurements)
        plural = count != 1
        notes.append(f"{count} measurement{'s' if plural else ''} placed by the reader (rulers and regions of interest, "
                     f"in world millimetres) {'are' if plural else 'is'} listed in every timepoint's section; a region "
                     "of interest is measured on each timepoint's own images, at the same place.")
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
