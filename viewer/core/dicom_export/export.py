"""``viewer export-dicom STUDY -o DIR [--timepoint L] [--deidentify]`` (PRODUCT.md §8).

Per timepoint, in a folder of its own (``DIR/<timepoint>/``):

- ``anatomy/`` — the anatomy as a DICOM MR series, when the SEG cannot reference the original
  instances (NIfTI, MOSAIC, a de-identified export: :mod:`.anatomy`);
- ``segmentation.dcm`` — the regions, one segment per region (:mod:`.segmentation`);
- ``measurements.dcm`` — every §3 number per region, TID 1500 (:mod:`.measurement_report`);
- ``report.dcm`` — the timepoint's PDF report as Encapsulated PDF (:mod:`.encapsulated_pdf`).

All in the timepoint's Study Instance UID: the source anatomy's when it is DICOM. Each
timepoint is loaded and quantified once (the report's own streamed inputs), so the SR's
numbers, the PDF's and ``viewer stats``' are one computation. DIR is built in a temporary
sibling and renamed into place only when every object is written, so a failure (or a
de-identified object still holding an identifier) leaves nothing at DIR.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from pydicom.uid import generate_uid

from viewer import __version__
from viewer.core.dicom_export import anatomy as anatomy_series
from viewer.core.dicom_export.deidentify import check_clean, encoded, mark_deidentified, shift_dates
from viewer.core.dicom_export.encapsulated_pdf import encapsulated_pdf
from viewer.core.dicom_export.measurement_report import build_measurement_report
from viewer.core.dicom_export.segmentation import build_segmentation, labels_on_frames
from viewer.core.errors import Cancelled, ViewerError
from viewer.core.io.atomic import write_folder_atomically
from viewer.core.io.study import Study, open_path
from viewer.core.report.content import ReportOptions, build_report, report_vocabulary
from viewer.core.report.deidentify import Scrubber, merge_identifiers
from viewer.core.report.inputs import TimepointInput, input_identifiers, streamed_inputs, study_identifiers, study_models
from viewer.core.report.pdf import report_pdf_bytes

Progress = Callable[[str, int, int], None]
ShouldCancel = Callable[[], bool]

SEGMENTATION_FILE = "segmentation.dcm"
MEASUREMENTS_FILE = "measurements.dcm"
REPORT_FILE = "report.dcm"
ANATOMY_FOLDER = "anatomy"
SEG_SERIES_NUMBER = 902


@dataclass
class TimepointExport:
    """What was written for one timepoint (paths relative to the export folder)."""

    label: str
    folder: str
    study_uid: str
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class ExportCancelled(Cancelled):
    """The user stopped the export; nothing was written."""


def export_dicom(study_path: str | Path, output: str | Path, timepoint_label: str | None = None,
                 deidentify: bool = False, progress: Progress | None = None,
                 should_cancel: ShouldCancel | None = None) -> list[TimepointExport]:
    """Write the study's results as DICOM into the new folder ``output``.

    ``should_cancel`` is asked before each timepoint (a timepoint takes a few seconds).

    Raises:
        ExportCancelled: ``should_cancel`` turned True; nothing is left at ``output``.
        ViewerError: the study cannot be read or quantified, ``output`` exists and is not an
            empty folder, a timepoint's anatomy cannot be written as DICOM, or a de-identified
            object still holds an identifier; nothing is left at ``output`` then.
    """
    output = Path(output)
    _check_target(output)
    study = open_path(study_path)
    if study.manifest is None:
        raise ViewerError(f"{study_path}: export-dicom needs a study (study.toml), not a single image")
    report = progress or (lambda stage, done, total: None)
    cancelled = should_cancel or (lambda: False)
    results: list[TimepointExport] = []

    def write(folder: Path) -> None:
        results.extend(_export(study, folder, timepoint_label, deidentify, report, cancelled))

    write_folder_atomically(output, write, _check_target)
    return results


def _check_target(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ViewerError(f"{folder}: exists and is not an empty folder; choose a new folder for the export")


class _Exporter:
    """The study-wide state of one export: scrubbing, identifiers to check, folder names."""

    def __init__(self, study: Study, deidentify: bool) -> None:
        self.study = study
        self.deidentify = deidentify
        self.identifiers = study_identifiers(study) if deidentify else {}
        self.scrub = Scrubber.for_study(study.info, active=deidentify, tags=self.identifiers,
                                        ordinary=report_vocabulary() if deidentify else ())
        self.pseudonym = (self.scrub.text(study.id) or "DEIDENTIFIED")[:64]
        self.folders: set[str] = set()
        self.created = datetime.now().astimezone()
        #: UIDs of the study's own DICOM objects, none of which a de-identified object may hold
        self.original_uids: set[str] = set()

    def learn(self, item: TimepointInput) -> None:
        if self.deidentify:
            self.identifiers = merge_identifiers(self.identifiers, input_identifiers(item))
            self.scrub = self.scrub.with_tags(self.identifiers)
            self.original_uids |= {str(v.meta["series_uid"]) for v in item.volumes.values() if v.meta.get("series_uid")}

    def text(self, value: str) -> str:
        return self.scrub.text(value)

    def folder_for(self, label: str) -> str:
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", self.text(label)).strip("-.") or "timepoint"
        name, n = base, 2
        while name in self.folders:
            name, n = f"{base}-{n}", n + 1
        self.folders.add(name)
        return name

    def secrets(self) -> list[str]:
        """Every identifying value the study knows, as it could appear in a DICOM object."""
        values: list[str] = []
        info = self.study.info
        for key in ("patient", "patient_id"):
            text = str(info.get(key) or "")
            values.append(text)
            values.extend(part for part in re.split(r"[\^ ,]+", text) if part)
        for key in ("birth_date", "day0"):
            if info.get(key):
                values.append(str(info[key]).replace("-", ""))
        for keyword, found in self.identifiers.items():
            values.extend(found)
        return [v for v in values if v and v.lower() not in self.scrub.ordinary]


def _export(study: Study, folder: Path, timepoint_label: str | None, deidentify: bool,
            report: Progress, cancelled: ShouldCancel) -> list[TimepointExport]:
    exporter = _Exporter(study, deidentify)
    models = study_models(study)
    labels = [timepoint_label] if timepoint_label else [tp.label for tp in study.timepoints]
    results = []
    if cancelled():
        raise ExportCancelled("export cancelled; nothing was written")
    with streamed_inputs(study, timepoint_label, models) as inputs:
        for index, item in enumerate(inputs):
            if cancelled():
                raise ExportCancelled("export cancelled; nothing was written")
            report("export", index, len(labels))
            results.append(_export_timepoint(exporter, item, models, folder))
            del item
    report("export", len(labels), len(labels))
    return results


def _export_timepoint(exporter: _Exporter, item: TimepointInput, models: list, root: Path) -> TimepointExport:
    exporter.learn(item)
    study, timepoint = exporter.study, item.timepoint
    name = exporter.folder_for(timepoint.label)
    folder = root / name
    folder.mkdir()
    anatomy = item.volumes.get("anatomical")
    if anatomy is None:
        raise ViewerError(f"{study.manifest}: timepoint {timepoint.label!r} has no anatomical image to reference")
    series = _anatomy(exporter, item, folder)
    first = series.datasets[0]
    result = TimepointExport(exporter.text(timepoint.label), name, str(first.StudyInstanceUID))
    result.files.extend(str(p.relative_to(root)) for p in series.written)
    objects = []
    regions = item.volumes.get("regions")
    if regions is not None and item.stats.regions:
        frame_labels = labels_on_frames(regions, anatomy, series.frames)
        seg, segments = build_segmentation(series, frame_labels, item.table, exporter.text, SEG_SERIES_NUMBER,
                                           __version__)
        modalities = [str(v.meta.get("modality") or ("PT" if role == "pet" else "MR"))
                      for role, v in item.volumes.items() if role != "regions"]
        sr = build_measurement_report(item.stats, seg, segments, series.datasets, exporter.text, modalities,
                                      __version__)
        objects += [(SEGMENTATION_FILE, seg), (MEASUREMENTS_FILE, sr)]
        missing = [r.name for r in item.stats.regions if r.label not in {s.label for s in segments}]
        if missing:
            result.notes.append(f"{result.label}: regions {', '.join(missing)} have no voxel on the anatomy and "
                                "are not in the SEG or the SR")
    else:
        result.notes.append(f"{result.label}: no regions; only the report is exported")
    options = ReportOptions(deidentify=exporter.deidentify, created=exporter.created)
    pdf = report_pdf_bytes(build_report(study, [item], models, options, exporter.identifiers))
    title = f"Cell-therapy imaging report, {exporter.text(study.id)} · {result.label}"
    objects.append((REPORT_FILE, encapsulated_pdf(pdf, first, title, __version__, exporter.created,
                                                  identifying=not exporter.deidentify)))
    study_date = str(first.get("StudyDate", "") or "")
    secrets = exporter.secrets() if exporter.deidentify else []
    for file_name, dataset in objects:
        dataset.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: region names and titles may be any text
        if exporter.deidentify:
            mark_deidentified(dataset)
            shift_dates(dataset, study_date)
        if exporter.deidentify:
            check_clean(f"{name}/{file_name}", dataset, secrets, exporter.original_uids)
        (folder / file_name).write_bytes(encoded(dataset))
        result.files.append(f"{name}/{file_name}")
    return result


def _anatomy(exporter: _Exporter, item: TimepointInput, folder: Path) -> anatomy_series.AnatomySeries:
    """The anatomy series the SEG references: the original instances, or a derived series."""
    study, timepoint = exporter.study, item.timepoint
    volume = item.volumes["anatomical"]
    original = anatomy_series.original_series(volume)
    if original is not None and exporter.deidentify:
        for ds in original[0]:
            exporter.original_uids |= {str(ds.get(k)) for k in ("StudyInstanceUID", "SeriesInstanceUID",
                                                                 "FrameOfReferenceUID", "SOPInstanceUID") if ds.get(k)}
    if original is not None and not exporter.deidentify:
        return anatomy_series.AnatomySeries(original[0], original[1], [])
    if exporter.deidentify:
        identity = anatomy_series.deidentified_identity(exporter.pseudonym, timepoint.day)
        series_uid, frame_uid = generate_uid(), generate_uid()
    elif original is not None:  # DICOM that cannot be referenced frame by frame: same study
        first = original[0][0]
        identity = anatomy_series.source_identity(first)
        series_uid = anatomy_series.deterministic_uid("anatomy", identity.study_uid, str(first.SeriesInstanceUID))
        frame_uid = str(first.get("FrameOfReferenceUID") or generate_uid())
    else:
        digest = anatomy_series.file_digest(Path(timepoint.images["anatomical"]))
        identity = anatomy_series.manifest_identity(study.info, study.id, timepoint.label, timepoint.day, digest)
        series_uid = anatomy_series.deterministic_uid("anatomy", identity.study_uid, digest)
        frame_uid = anatomy_series.deterministic_uid("frame of reference", identity.study_uid, digest)
    description = f"Anatomy {exporter.text(timepoint.label)} (cell-therapy-viewer)"
    series = anatomy_series.write_derived_series(volume, folder / ANATOMY_FOLDER, identity, series_uid, frame_uid,
                                                 description)
    if exporter.deidentify:
        secrets = exporter.secrets()
        from pydicom import dcmread

        for path in series.written:
            ds = dcmread(path)
            mark_deidentified(ds)
            check_clean(f"{folder.name}/{ANATOMY_FOLDER}/{path.name}", ds, secrets, exporter.original_uids)
            ds.save_as(path, enforce_file_format=True)
        series = anatomy_series.AnatomySeries([dcmread(p, stop_before_pixels=True) for p in series.written],
                                              series.frames, series.written)
    return series
