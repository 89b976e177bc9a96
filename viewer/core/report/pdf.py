"""Laying out a :class:`~viewer.core.report.content.Report` as a PDF with reportlab.

reportlab (BSD licence, maintained since 2000, pure Python with a C accelerator) writes
vector text with embedded TrueType subsets, so every word of the report can be searched and
copied, images go in losslessly and the time course is a vector drawing. The font is DejaVu
Sans, the files the figures are drawn with (:func:`viewer.core.decorations.font_folder`: the
ones matplotlib ships, found without importing it; their licence travels with matplotlib): it
has ¹⁹F, µ, ³, ≥, Δ and ⚠.

The layout is A4 portrait: alerts and the demonstration-model notice first, because a
reviewer must not miss them; then one section per timepoint (key images, summary, region
table, core/penumbra, the reader's measurements, predictions, notes), the time course, the model cards, the definitions
of every measure and a signature block. Every page carries the footer with the software
version and "page N of M".
"""

from __future__ import annotations

import io
from pathlib import Path
from xml.sax.saxutils import escape

from PIL import Image as PILImage
from reportlab.graphics import renderPDF
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import inch
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    TableStyle,
)
from reportlab.platypus import Table as RLTable

from viewer.core.decorations import font_folder
from viewer.core.errors import ViewerError
from viewer.core.io.atomic import write_bytes_atomic
from viewer.core.report.content import Chart, Figure, Report, Table, TimepointSection

FONT = "DejaVuSans"
FONT_BOLD = "DejaVuSans-Bold"
FONT_ITALIC = "DejaVuSans-Oblique"

ALERT_TEXT = "#b00020"
ALERT_FILL = "#fde3e6"
HEADER_FILL = "#e8edf3"
GRID = "#b8c0cc"

#: Page margins in points (15 mm).
MARGIN_PT = 15 * 72 / 25.4


def write_report_pdf(report: Report, output: str | Path) -> Path:
    """Write ``report`` to ``output`` (.pdf): built in memory, then written atomically.

    A failure at any point leaves an existing file at ``output`` untouched and creates none.
    """
    output = Path(output)
    check_output_path(output)
    payload = report_pdf_bytes(report)
    return write_bytes_atomic(output, payload)


def check_output_path(output: Path) -> None:
    """Refuse an output that cannot be a new or replaceable PDF file, before any work is done."""
    if output.suffix.lower() != ".pdf":
        raise ViewerError(f"{output}: the output must be a .pdf file")
    if output.is_dir():
        raise ViewerError(f"{output}: is a folder, expected a file name")
    if not output.parent.is_dir():
        raise ViewerError(f"{output.parent}: folder not found")


def report_pdf_bytes(report: Report) -> bytes:
    """The PDF file's bytes."""
    register_fonts()
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer, pagesize=A4, leftMargin=MARGIN_PT, rightMargin=MARGIN_PT, topMargin=MARGIN_PT, bottomMargin=MARGIN_PT + 10,
        title=report.info.title, author=report.info.author, subject=report.info.subject,
        keywords=list(report.info.keywords), creator=report.info.creator, invariant=report.info.invariant,
        lang="en", initialFontName=FONT, initialFontSize=8.5,  # no Helvetica: every font is embedded
    )
    story = _Story(report, document.width).build()
    document.build(story, canvasmaker=_numbered_canvas(report))
    return buffer.getvalue()


# -- fonts and styles ------------------------------------------------------------------------------

def register_fonts() -> None:
    """Register DejaVu Sans (regular, bold, oblique) once per process (reportlab's registry),
    for the report's text and the words of its vector figures."""
    if FONT in pdfmetrics.getRegisteredFontNames():
        return
    folder = font_folder()
    for name, file in ((FONT, "DejaVuSans.ttf"), (FONT_BOLD, "DejaVuSans-Bold.ttf"), (FONT_ITALIC, "DejaVuSans-Oblique.ttf")):
        path = folder / file
        if not path.is_file():
            raise ViewerError(f"{path}: font file not found (matplotlib's DejaVu fonts are needed for reports)")
        pdfmetrics.registerFont(TTFont(name, str(path)))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT_BOLD, italic=FONT_ITALIC, boldItalic=FONT_BOLD)


def _styles() -> dict:
    base = ParagraphStyle("body", fontName=FONT, fontSize=8.5, leading=11)
    return {
        "title": ParagraphStyle("title", parent=base, fontName=FONT_BOLD, fontSize=15, leading=19, spaceAfter=6),
        "h1": ParagraphStyle("h1", parent=base, fontName=FONT_BOLD, fontSize=12.5, leading=16, spaceBefore=4, spaceAfter=5,
                             textColor=colors.HexColor("#1d3557")),
        "h2": ParagraphStyle("h2", parent=base, fontName=FONT_BOLD, fontSize=9.5, leading=12, spaceBefore=7, spaceAfter=3),
        "body": base,
        "small": ParagraphStyle("small", parent=base, fontSize=7.5, leading=9.5),
        "caption": ParagraphStyle("caption", parent=base, fontName=FONT_ITALIC, fontSize=7.2, leading=9, spaceBefore=2,
                                  spaceAfter=4, textColor=colors.HexColor("#333333")),
        "cell": ParagraphStyle("cell", parent=base, fontSize=7, leading=8.6),
        "cell_bold": ParagraphStyle("cell_bold", parent=base, fontName=FONT_BOLD, fontSize=7, leading=8.6),
        "cell_alert": ParagraphStyle("cell_alert", parent=base, fontName=FONT_BOLD, fontSize=7, leading=8.6,
                                     textColor=colors.HexColor(ALERT_TEXT)),
        "alert": ParagraphStyle("alert", parent=base, fontName=FONT_BOLD, fontSize=9, leading=12,
                                textColor=colors.HexColor(ALERT_TEXT)),
        "notice": ParagraphStyle("notice", parent=base, fontName=FONT_BOLD, fontSize=8.5, leading=11,
                                 textColor=colors.HexColor(ALERT_TEXT)),
    }


def _p(text: str, style) -> object:
    return Paragraph(escape(text).replace("\n", "<br/>"), style)


# -- the story -------------------------------------------------------------------------------------

class _Story:
    """Turns the report description into reportlab flowables."""

    def __init__(self, report: Report, width_pt: float) -> None:
        self.report = report
        self.width = width_pt
        self.s = _styles()

    def build(self) -> list:
        r = self.report
        story: list = [_p(r.title, self.s["title"]), self._key_values(r.header, 1.5)]
        story += self._first_page_warnings()
        story.append(self._table(r.modalities, heading="Timepoints and images"))
        if r.notes:
            story += [Spacer(1, 4)] + [_p("• " + note, self.s["small"]) for note in r.notes]
        for section in r.sections:
            story += [PageBreak()] + self._section(section)
        story += [PageBreak(), _p("Across timepoints", self.s["h1"])]
        if r.time_course is not None:
            story += self._figure(r.time_course, "Time course of live and dead cells")
        if r.models:
            story += [_p("Prediction models", self.s["h2"])]
            for model in r.models:
                story += self._model(model)
        story += self._signature()
        story += [_p("Appendix: definitions of the reported numbers", self.s["h2"]),
                  self._key_values(r.definitions, 1.9, small=True)]
        return story

    def _first_page_warnings(self) -> list:
        """Every rejection alert of every timepoint, and demonstration-model notices, up front."""
        items = []
        alerts = [(s.label, a) for s in self.report.sections for a in s.alerts]
        if alerts:
            lines = [f"{label}: {a}" for label, a in alerts]
            items += [Spacer(1, 6), self._boxed([_p(line, self.s["alert"]) for line in lines])]
        notices = sorted({m.notice for m in self.report.models if m.notice})
        if notices:
            items += [Spacer(1, 4), self._boxed([_p("⚠ " + n, self.s["notice"]) for n in notices])]
        return items

    def _section(self, section: TimepointSection) -> list:
        items: list = [_p(section.heading, self.s["h1"])]
        if section.alerts:
            items += [self._boxed([_p(a, self.s["alert"]) for a in section.alerts]), Spacer(1, 6)]
        if section.key_images is not None:
            items += self._figure(section.key_images, None)
        items.append(KeepTogether([_p("Summary", self.s["h2"]), self._key_values(section.summary, 1.6)]))
        for index, table in enumerate(section.region_tables):
            items.append(self._table(table, heading="Regions" if index == 0 else None))
        if section.mismatch is not None:
            items.append(self._table(section.mismatch, heading="Core and penumbra"))
        if section.measurements is not None:
            items.append(self._table(section.measurements, heading="Measurements"))
        for index, table in enumerate(section.predictions):
            items.append(self._table(table, heading="Predictions" if index == 0 else None))
        for table in section.contributions:
            items.append(self._table(table))
        if section.notes:
            items.append(_p("Notes", self.s["h2"]))
            items += [_p("• " + note, self.s["small"]) for note in section.notes]
        return items

    # -- building blocks --------------------------------------------------------------------------
    def _figure(self, figure: Figure | Chart, heading: str | None) -> list:
        """A figure at its printed size, shrunk to the text width if wider, with its heading and
        caption on the same page."""
        scale = min(1.0, self.width / (figure.width_in * inch))
        if isinstance(figure, Chart):
            drawn: Flowable = _Vector(figure.drawing, scale)
        else:
            drawn = _Pixels(figure.pixels, figure.width_in * inch * scale, figure.height_in * inch * scale)
        parts = ([_p(heading, self.s["h2"])] if heading else []) + [drawn]
        if figure.caption:
            parts.append(_p(figure.caption, self.s["caption"]))
        return [KeepTogether(parts)]

    def _key_values(self, rows, first_in: float, small: bool = False):
        key_style = self.s["cell_bold"] if small else self.s["body"].clone("key", fontName=FONT_BOLD)
        value_style = self.s["cell"] if small else self.s["body"]
        data = [[_p(k, key_style), _p(v, value_style)] for k, v in rows]
        table = RLTable(data, colWidths=[first_in * inch, self.width - first_in * inch], hAlign="LEFT")
        table.setStyle(TableStyle([
            ("VALIGN", (0, 0), (-1, -1), "TOP"), ("FONTNAME", (0, 0), (-1, -1), FONT),
            ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#dde2ea")),
            ("TOPPADDING", (0, 0), (-1, -1), 1.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        ]))
        return table

    def _table(self, table: Table, heading: str | None = None):
        """The table with its heading and caption, kept on one page (a heading never ends a page)."""
        n = len(table.columns)
        if table.widths:
            widths = [share * self.width for share in table.widths]
        elif table.first_column_wide and n > 1:
            first = min(2.0 * inch, self.width * 0.36)
            widths = [first] + [(self.width - first) / (n - 1)] * (n - 1)
        else:
            widths = [self.width / n] * n
        header = [_p(c, self.s["cell_alert"] if i in table.alert_columns else self.s["cell_bold"])
                  for i, c in enumerate(table.columns)]
        body = [[_p(cell, self.s["cell_alert"] if (r, c) in table.alert_cells else self.s["cell"])
                 for c, cell in enumerate(row)] for r, row in enumerate(table.rows)]
        rl = RLTable([header] + body, colWidths=widths, repeatRows=1, hAlign="LEFT")
        commands = [
            ("VALIGN", (0, 0), (-1, -1), "TOP"), ("FONTNAME", (0, 0), (-1, -1), FONT),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor(HEADER_FILL)),
            ("GRID", (0, 0), (-1, -1), 0.3, colors.HexColor(GRID)),
            ("TOPPADDING", (0, 0), (-1, -1), 1.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
            ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ]
        for first_column, first_row, last_column, last_row in table.spans:  # no page break inside
            commands.append(("SPAN", (first_column, first_row + 1), (last_column, last_row + 1)))
        for column in table.alert_columns:
            commands.append(("BACKGROUND", (column, 0), (column, 0), colors.HexColor(ALERT_FILL)))
        for row, column in table.alert_cells:
            commands.append(("BACKGROUND", (column, row + 1), (column, row + 1), colors.HexColor(ALERT_FILL)))
        rl.setStyle(TableStyle(commands))
        parts = ([_p(heading, self.s["h2"])] if heading else []) + [rl]
        if table.caption:
            parts.append(_p(table.caption, self.s["caption"]))
        if table.notice:
            parts.append(_p(table.notice, self.s["notice"]))
        return KeepTogether(parts)

    def _boxed(self, paragraphs: list):
        box = RLTable([[p] for p in paragraphs], colWidths=[self.width], hAlign="LEFT")
        box.setStyle(TableStyle([
            ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor(ALERT_FILL)), ("FONTNAME", (0, 0), (-1, -1), FONT),
            ("BOX", (0, 0), (-1, -1), 0.8, colors.HexColor(ALERT_TEXT)),
            ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ]))
        return box

    def _model(self, model) -> list:
        parts = [_p(model.title, self.s["body"].clone("model", fontName=FONT_BOLD))]
        if model.notice:
            parts.append(_p("⚠ " + model.notice, self.s["notice"]))
        parts.append(self._key_values(model.fields, 1.3, small=True))
        return [KeepTogether(parts)]

    def _signature(self) -> list:
        if not self.report.signature:
            return []
        heading, *fields = self.report.signature
        reviewer = self.report.reviewer or ""
        data = [[_p(f, self.s["body"]), _p(reviewer if f == "Name" else "", self.s["body"])]
                for f in fields]
        table = RLTable(data, colWidths=[1.2 * inch, 3.6 * inch], rowHeights=[0.38 * inch] * len(fields), hAlign="LEFT")
        table.setStyle(TableStyle([
            ("VALIGN", (0, 0), (-1, -1), "BOTTOM"), ("FONTNAME", (0, 0), (-1, -1), FONT),
            ("LINEBELOW", (1, 0), (1, -1), 0.6, colors.black),
        ]))
        return [KeepTogether([Spacer(1, 10), _p(heading, self.s["h2"]), table])]


class _Pixels(Flowable):
    """An RGB array drawn at a fixed size (platypus' Image wants a file; this skips a PNG round trip)."""

    def __init__(self, pixels, width_pt: float, height_pt: float) -> None:
        super().__init__()
        self.pixels = pixels
        self.width, self.height = width_pt, height_pt

    def wrap(self, available_width: float, available_height: float) -> tuple[float, float]:
        return self.width, self.height

    def draw(self) -> None:
        self.canv.drawImage(ImageReader(PILImage.fromarray(self.pixels, "RGB")), 0, 0, self.width, self.height)


class _Vector(Flowable):
    """A reportlab Drawing (points) drawn ``scale`` times its size, as vectors and text."""

    def __init__(self, drawing, scale: float = 1.0) -> None:
        super().__init__()
        self.drawing = drawing
        self.scale = scale
        self.width, self.height = drawing.width * scale, drawing.height * scale

    def wrap(self, available_width: float, available_height: float) -> tuple[float, float]:
        return self.width, self.height

    def draw(self) -> None:
        self.canv.saveState()
        self.canv.scale(self.scale, self.scale)
        renderPDF.draw(self.drawing, self.canv, 0, 0)
        self.canv.restoreState()


def _numbered_canvas(report: Report):
    """A canvas class that writes the footer and "page N of M" on every page (two passes)."""
    footer = report.footer

    class NumberedCanvas(Canvas):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict] = []

        def showPage(self) -> None:
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self._draw_footer(total)
                super().showPage()
            super().save()

        def _draw_footer(self, total: int) -> None:
            width, _ = self._pagesize
            self.saveState()
            self.setFont(FONT, 7)
            self.setFillGray(0.3)
            self.setStrokeGray(0.7)
            self.setLineWidth(0.4)
            self.line(MARGIN_PT, MARGIN_PT + 2, width - MARGIN_PT, MARGIN_PT + 2)
            self.drawString(MARGIN_PT, MARGIN_PT - 7, footer)
            self.drawRightString(width - MARGIN_PT, MARGIN_PT - 7, f"page {self._pageNumber} of {total}")
            self.restoreState()

    return NumberedCanvas
