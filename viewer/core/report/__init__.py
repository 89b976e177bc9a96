"""PDF reports (PRODUCT.md §6): one description built in the core, one PDF writer.

- :mod:`.inputs` — what a report is made from, from files (:func:`inputs_from_study`) or from
  the window's scene (:func:`inputs_from_scene`);
- :mod:`.content` — :func:`build_report` turns the inputs into a :class:`Report` (all text,
  tables and figures; de-identified on request);
- :mod:`.deidentify` — the :class:`Scrubber` every string of a de-identified report passes, and
  the final check that refuses a report still showing an identifier;
- :mod:`.figures` — the time-course plot (the key images come from :mod:`viewer.core.render`);
- :mod:`.pdf` — :func:`write_report_pdf` lays a Report out with reportlab, atomically.
"""

from __future__ import annotations

from pathlib import Path

from viewer.core.report.content import Report, ReportOptions, build_report
from viewer.core.report.deidentify import Scrubber
from viewer.core.report.inputs import (
    SceneSnapshot,
    TimepointInput,
    inputs_from_scene,
    inputs_from_snapshot,
    inputs_from_study,
    snapshot_scene,
    streamed_inputs,
    study_identifiers,
    study_models,
)
from viewer.core.report.pdf import check_output_path, report_pdf_bytes, write_report_pdf


def report_from_study(study_path: str | Path, output: str | Path, options: ReportOptions | None = None,
                      timepoint_label: str | None = None) -> Path:
    """``viewer report``: load, quantify, build and write the PDF of a study (atomic).

    The output path is checked before any work, so a bad one costs nothing and writes nothing.
    Timepoints are streamed (a section is made per timepoint and its images released); a
    de-identified report first reads the identifying tags of every DICOM series from their
    headers, so that no section is scrubbed without knowing them.
    """
    from viewer.core.io.study import open_path

    output = Path(output)
    check_output_path(output)
    study = open_path(study_path)
    models = study_models(study)
    identifiers = study_identifiers(study) if options is not None and options.deidentify else {}
    with streamed_inputs(study, timepoint_label, models) as inputs:
        report = build_report(study, inputs, models, options, identifiers)
    return write_report_pdf(report, output)


__all__ = [
    "Report",
    "ReportOptions",
    "SceneSnapshot",
    "Scrubber",
    "TimepointInput",
    "build_report",
    "check_output_path",
    "inputs_from_scene",
    "inputs_from_snapshot",
    "inputs_from_study",
    "report_from_study",
    "report_pdf_bytes",
    "snapshot_scene",
    "study_identifiers",
    "write_report_pdf",
]
