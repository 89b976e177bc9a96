"""De-identification everywhere (issue #13, PRODUCT.md §6): every identifier a study holds, in
every spelling, in every place, never reaches a PDF marked de-identified.

Studies are built with identifiers in the manifest, in the DICOM tags of the series it reads
(some only there), in region names, timepoint labels, free text and file names, spelled every
way §6 lists. `viewer report --deidentify` (through `viewer.cli.main`) is then searched for
every form in the PDF's extracted text, its raw bytes and decompressed streams, its page
content streams, its metadata and the OCR text of its rendered pages (pdftoppm + tesseract),
which reads the labels drawn into the images. Also: a patient called "Day^Core" keeps the
report's ordinary words; a report that cannot be made clean is refused, names the kind of
identifier and the place, and writes nothing; a long study streams its timepoints.
"""

from __future__ import annotations

import gc
import re
import shutil
import subprocess
import tomllib
import weakref
from datetime import date
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pypdf import PdfReader
from pypdf.generic import StreamObject

from tests.core.study_builders import write_small_study
from viewer.cli import main
from viewer.core.io.dicom import load_dicom_series
from viewer.core.io.dicom_write import write_dicom_series
from viewer.core.io.nifti import load_nifti
from viewer.core.io.study import load_study, write_manifest
from viewer.core.report import ReportOptions, build_report, inputs_from_study
from viewer.core.report.content import report_vocabulary
from viewer.core.report.deidentify import REMOVED, Scrubber

# -- the fictitious people, site and visits -------------------------------------------------------

PATIENT = "Smith^John"
PATIENT_ID = "MRN-778899"
BIRTH = date(1970, 1, 2)
DAY0 = date(2026, 3, 2)
#: Identifying tags written only into the DICOM files of the study (the manifest does not hold them).
DICOM_ONLY: dict[str, Any] = {
    "InstitutionName": "Quimby Memorial Hospital",
    "InstitutionAddress": "Elmwood Road 7, 90210 Springfield",
    "InstitutionalDepartmentName": "Neuroradiology Wardell Unit",
    "ReferringPhysicianName": "Okafor^Chidi^^Dr.",
    "PerformingPhysicianName": "Lindqvist^Astrid",
    "NameOfPhysiciansReadingStudy": "Moreau^Julien",
    "OperatorsName": ["Tanaka^Hiroshi", "Castellanos^Pilar"],
    "StationName": "MRSTATION7",
    "DeviceSerialNumber": "SN-553311",
    "AccessionNumber": "ACC4477120",
    "StudyID": "EXAM8812",
    "IssuerOfPatientID": "Brightwater Registry",
    "PatientAddress": "Harrowgate Lane 12, 40477 Fernhill",
    "PatientTelephoneNumbers": "+49 30 5550199",
    "StudyDate": "20260309", "SeriesDate": "20260309", "ContentDate": "20260309",
    "StudyTime": "094400", "SeriesTime": "101200",
}
OTHER_PATIENT_ID = "HOSP-445566"
#: AcquisitionTime differs per file: 10:15:00 + slice index seconds (read from every file).
ACQUISITION_CLOCK = "1015"

#: What a reader must not find anywhere in the de-identified PDF (case-insensitive): every name
#: part, ID core and date/time element of the identifiers above and of the spellings below.
FORBIDDEN: tuple[str, ...] = (
    "Smith", "John", "778899", "445566", "Okafor", "Chidi", "Lindqvist", "Astrid", "Moreau", "Julien",
    "Tanaka", "Hiroshi", "Castellanos", "Pilar", "Quimby", "Elmwood", "Springfield", "90210", "Wardell",
    "MRSTATION", "553311", "4477120", "EXAM8812", "Brightwater", "Harrowgate", "Fernhill", "40477", "5550199",
    "1970", "2026", "January", "March", "09:44", "10:15", "094400", "101531",
)
#: Every spelling PRODUCT.md §6 lists, as people type them into free text.
SPELLINGS: tuple[str, ...] = (
    "SmithJohn", "JohnSmith", "Smith_injection", "SMITH, JOHN", "J. Smith", "Smith, J.", "Dr Smith", "john_smith",
    "MRN-778899", "MRN778899", "mrn 778899", "778899", "Mrn_778899",
    "1970-01-02", "02.01.1970", "01/02/1970", "19700102", "1970/01/02", "2-Jan-1970", "02 January 1970",
    "January 2nd, 1970", "2026-03-09", "March 9, 2026", "Mar 9 2026", "9 Mar 2026", "20260309101531.000000",
    "09:44", "10:15:31", "101531", "March 2026",
    "Quimby Memorial Hospital", "QuimbyMemorialHospital", "Elmwood Road 7, 90210 Springfield",
    "Dr. Okafor", "C. Okafor", "Lindqvist^Astrid", "Julien Moreau", "TANAKA HIROSHI", "Pilar Castellanos",
    "MRSTATION7", "mrstation 7", "SN-553311", "sn553311", "ACC4477120", "acc 4477120", "EXAM8812", "exam-8812",
    "HOSP-445566", "hosp445566", "Brightwater Registry", "Harrowgate Lane 12, 40477 Fernhill", "+49 30 5550199",
)


# -- building studies ----------------------------------------------------------------------------------

def _as_dicom(nifti: Path, folder: Path, tags: dict[str, Any]) -> None:
    """Write a NIfTI image as a DICOM series and set identifying tags in every file, with an
    AcquisitionTime of its own per file and an OtherPatientIDsSequence."""
    volume = load_nifti(nifti)
    files = write_dicom_series(volume, folder, modality="MR", patient_name=tags.get("PatientName", PATIENT),
                               patient_id=PATIENT_ID, study_date="20260309")
    for index, path in enumerate(files):
        ds = pydicom.dcmread(path)
        for keyword, value in tags.items():
            setattr(ds, keyword, value)
        ds.AcquisitionDate = "20260309"
        ds.AcquisitionTime = f"{ACQUISITION_CLOCK}{index:02d}"
        other = Dataset()
        other.PatientID = OTHER_PATIENT_ID
        other.IssuerOfPatientID = "Brightwater Registry"
        ds.OtherPatientIDsSequence = [other]
        ds.save_as(path)


def _identified_study(root: Path, *, manifest_patient: bool = True) -> Path:
    """Two timepoints of the small study, anatomy and ¹⁹F as DICOM series carrying identifiers,
    and identifiers typed into the study id, labels, region names and free text."""
    write_small_study(root)
    anatomy = root / "Smith_John_19700102" / "t1"
    _as_dicom(root / "t1.nii", anatomy, {**DICOM_ONLY, "PatientBirthDate": "19700102"})
    _as_dicom(root / "f19.nii.gz", root / "f19", {"PatientName": "SMITH^JOHN", "PatientBirthDate": "19700102",
                                                 "PerformingPhysicianName": "Lindqvist^Astrid",
                                                 "AcquisitionDateTime": "20260309101531"})
    study: dict[str, Any] = {
        "id": "MRN778899 study",
        "day0": DAY0,
        "condition": "seen by Dr. Okafor at Quimby Memorial Hospital on March 9, 2026 at 10:15:31",
        "therapy": "UC-MSC for JohnSmith (ACC4477120, mrn 778899)",
        "description": "; ".join(SPELLINGS),
        "injected_cells": 62500,
    }
    if manifest_patient:
        study.update(patient=PATIENT, patient_id=PATIENT_ID, birth_date=BIRTH)
    common = {"anatomical": "Smith_John_19700102/t1", "fluorine": "f19", "gd": "f19.nii.gz", "pet": "pet.nii.gz",
              "pet_units": "SUV", "regions": "regions.nii.gz"}
    manifest = {
        "study": study,
        "calibration": {"fluorine_atoms_per_cell": 1.0e12, "reference_fluorine_mM": 20.0, "gd_r1_per_mM_s": 4.0,
                        "gd_fmol_per_cell": 100.0},
        "timepoint": [
            {"label": "2026-03-09 SmithJohn", **common,
             "region_names": {1: "Smith_injection", 2: "penumbra MRN778899 2-Jan-1970"}},
            {"label": "March 16, 2026 (mrn 778899)", **common,
             "region_names": {1: "Smith_injection", 2: "Lindqvist core"}},
        ],
    }
    return write_manifest(manifest, root / "study.toml")


def _note_quoting_the_source(monkeypatch) -> None:
    """Numbers' notes may quote file names (a damaged slice, NaN voxels): make one that does."""
    from viewer.core.quant import stats

    original = stats.TimepointQuantifier.compute

    def compute(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        result.notes.append(f"anatomy read from {self.volumes['anatomical'].source}")
        return result

    monkeypatch.setattr(stats.TimepointQuantifier, "compute", compute)


# -- reading a PDF every way a person or a search tool can ----------------------------------------

def _extracted_text(pdf: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(pdf).pages)


def _raw_and_streams(pdf: Path) -> bytes:
    """The file's bytes outside its streams (dictionaries, metadata; byte counts and offsets
    left out), every
    stream but the images' decoded (contents, fonts, ToUnicode maps, metadata streams), and each
    page's content stream (pypdf). Image pixels are left to the OCR: their encoded bytes spell
    four-letter words by chance."""
    raw = pdf.read_bytes()
    raw = re.sub(rb"(?<!end)stream\r?\n.*?endstream", b"stream endstream", raw, flags=re.DOTALL)
    # byte counts and offsets are numbers the file's layout makes ("/Length 202661" is no date)
    raw = re.sub(rb"/Length \d+", b"/Length N", raw)
    raw = re.sub(rb"\nxref\r?\n.*?trailer", b"\nxref trailer", raw, flags=re.DOTALL)
    raw = re.sub(rb"startxref\s+\d+", b"startxref N", raw)
    chunks = [raw]
    reader = PdfReader(pdf)
    for number in range(1, int(reader.trailer["/Size"])):
        obj = reader.get_object(number)
        if isinstance(obj, StreamObject) and obj.get("/Subtype") != "/Image":
            chunks.append(obj.get_data())
    chunks += [page.get_contents().get_data() for page in reader.pages if page.get_contents() is not None]
    return b"\n".join(chunks)


def _metadata(pdf: Path) -> str:
    return "\n".join(f"{key}={value}" for key, value in (PdfReader(pdf).metadata or {}).items())


def _ocr(pdf: Path, folder: Path) -> str:
    """The words of the rendered pages as tesseract reads them (150 dpi)."""
    assert shutil.which("pdftoppm") and shutil.which("tesseract"), "`make test` installs poppler-utils and tesseract-ocr"
    folder.mkdir()
    subprocess.run(["pdftoppm", "-r", "150", "-png", str(pdf), str(folder / "page")], check=True)
    pages = sorted(folder.glob("page-*.png"))
    return "\n".join(subprocess.run(["tesseract", str(page), "-"], check=True, capture_output=True, text=True).stdout
                     for page in pages)


def _assert_nothing_found(pdf: Path, ocr_folder: Path, forbidden: tuple[str, ...]) -> str:
    """Search every reading of the PDF for every form; returns the OCR text."""
    text = _extracted_text(pdf)
    flat = re.sub(r"\s+", "", text)  # a table cell may wrap inside a word
    payload = _raw_and_streams(pdf)
    metadata = _metadata(pdf)
    ocr = _ocr(pdf, ocr_folder)
    for form in forbidden:
        lowered = form.lower()
        assert lowered not in text.lower(), ("text", form)
        assert re.sub(r"\s+", "", lowered) not in flat.lower(), ("text without line breaks", form)
        assert lowered not in metadata.lower(), ("metadata", form)
        # in UTF-16, a run of digits is also what a font's ToUnicode map lists ("12345"): letters only there
        for encoding in ("latin-1", "utf-16-be") if re.search(r"[^\W\d_]", form) else ("latin-1",):
            for spelled in {form, form.lower(), form.upper()}:
                assert spelled.encode(encoding) not in payload, ("bytes", form, encoding)
        assert lowered not in ocr.lower(), ("OCR of the rendered pages", form)
    return ocr


def _report(argv: list[Any], capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


# -- tests ------------------------------------------------------------------------------------------------

def test_the_dicom_reader_records_every_identifying_tag(tmp_path):
    manifest = _identified_study(tmp_path / "s")
    volume = load_dicom_series(manifest.parent / "Smith_John_19700102" / "t1")
    found = volume.meta["identifiers"]
    assert found["PatientName"] == [PATIENT] and found["PatientID"] == [PATIENT_ID]
    assert found["PatientBirthDate"] == ["19700102"]
    for keyword, value in DICOM_ONLY.items():
        expected = [str(v) for v in value] if isinstance(value, list) else [value]
        assert found[keyword] == expected, keyword
    assert found["OtherPatientIDs"] == [OTHER_PATIENT_ID]  # from the items of OtherPatientIDsSequence
    assert len(found["AcquisitionTime"]) == volume.shape[2]  # one per file: every file was read for it
    fluorine = load_dicom_series(manifest.parent / "f19")
    assert fluorine.meta["identifiers"]["AcquisitionDateTime"] == ["20260309101531"]


def test_every_spelling_of_every_identifier_is_scrubbed():
    tags = {key: (value if isinstance(value, list) else [value]) for key, value in DICOM_ONLY.items()}
    tags.update(OtherPatientIDs=[OTHER_PATIENT_ID], AcquisitionTime=[f"{ACQUISITION_CLOCK}{i:02d}" for i in range(48)])
    scrub = Scrubber.for_study({"patient": PATIENT, "patient_id": PATIENT_ID, "birth_date": BIRTH.isoformat(),
                                "day0": DAY0.isoformat()}, tags=tags, ordinary=report_vocabulary())
    for spelling in SPELLINGS:
        cleaned = scrub.text(f"note: {spelling} here")
        assert not scrub.leaks(cleaned), (spelling, cleaned)
        assert cleaned.startswith("note: ") and cleaned.endswith(" here"), (spelling, cleaned)
        for form in FORBIDDEN:
            assert form.lower() not in cleaned.lower(), (spelling, form, cleaned)
    assert scrub.text("2026-03-09") == "day 7" and scrub.text("Mar 16 2026") == "day 14"  # dates become days
    assert scrub.text("born 02.01.1970") == f"born {REMOVED}"
    assert scrub.text("Smith_injection") == f"{REMOVED}_injection"
    for kept in ("version 1.10.12", "62,500 cells", "7788990 voxels", "0.778899", "day 21",
                 "core injection", "University Hospital"):
        assert scrub.text(kept) == kept, kept


def test_identifiers_in_every_place_and_spelling_never_reach_the_pdf(tmp_path, capsys, monkeypatch):
    manifest = _identified_study(tmp_path / "s")
    _note_quoting_the_source(monkeypatch)
    out = tmp_path / "shared.pdf"
    code, err = _report(["report", manifest, "-o", out, "--deidentify", "--reviewer", "Dr. Quinn Reviewer"], capsys)
    assert code == 0, err
    ocr = _assert_nothing_found(out, tmp_path / "ocr", FORBIDDEN + SPELLINGS)
    text = re.sub(r"\s+", " ", _extracted_text(out))
    # what is left is the report, with days after transplantation instead of dates
    assert "Timepoint day 7 [removed]" in text and "Timepoint day 14 ([removed])" in text
    assert f"{REMOVED}_injection" in text and "penumbra [removed] [removed]" in text
    assert "anatomy read from" in text and "Dr. Quinn Reviewer" in text and "62,500" in text
    # the OCR reads the labels drawn into the figures (the legend's region name, the time-course ticks)
    assert "sagittal" in ocr and "dead cells" in ocr  # words drawn only into the key images and the time course
    identified = tmp_path / "identified.pdf"
    assert _report(["report", manifest, "-o", identified], capsys)[0] == 0
    assert "Smith_injection" in _extracted_text(identified)  # the study does hold what was removed


def test_identifiers_held_only_in_dicom_tags_are_removed(tmp_path, capsys):
    """The manifest names nobody; the DICOM files of the anatomy and ¹⁹F do."""
    manifest = _identified_study(tmp_path / "s", manifest_patient=False)
    assert "Smith^John" not in manifest.read_text()
    out = tmp_path / "shared.pdf"
    code, err = _report(["report", manifest, "-o", out, "--deidentify"], capsys)
    assert code == 0, err
    text = _extracted_text(out)
    metadata = _metadata(out)
    for form in FORBIDDEN + SPELLINGS:
        assert form.lower() not in text.lower() and form.lower() not in metadata.lower(), form


def test_the_demo_exam_imported_from_dicom_gives_a_clean_report(demo_manifest, tmp_path, capsys):
    """The demo as a PACS export (named patient, institution, physicians, operators, accession
    numbers, dates and times in every file), imported, the manifest's patient fields dropped so
    that the identifiers live only in the DICOM tags, and identifiers typed into region names
    and free text."""
    from viewer.core.demo_exam import EXAM_SITE, write_demo_exam

    exam = tmp_path / "exam"
    write_demo_exam(demo_manifest.parent, exam)
    study_dir = tmp_path / "imported"
    assert main(["import", str(exam), "-o", str(study_dir), "--day0", "2026-03-02"]) == 0
    capsys.readouterr()
    raw = tomllib.loads((study_dir / "study.toml").read_text())
    for key in ("patient", "patient_id", "birth_date"):
        raw["study"].pop(key)
    # day 21's accession number too: a report of day 7 must know the tags of every timepoint's series
    raw["study"]["condition"] = ("referred by Hans Schneider (Musterstadt University Hospital), accession RAD26001235, "
                                 "follow-up rad-26001236, ERIKA MUSTERMANN, born 12 April 1961")
    demo_timepoints = {t["label"]: t for t in tomllib.loads(demo_manifest.read_text())["timepoint"]}
    for timepoint in raw["timepoint"]:  # the baseline's regions, carried to the later sessions (§9)
        source = demo_timepoints[timepoint["label"]]
        for key in ("transform", "image_transforms", "regions_from"):
            if key in source:
                timepoint[key] = source[key]
        if "regions" not in source:
            continue
        regions = study_dir / "baseline-regions.nii.gz"
        shutil.copy(demo_manifest.parent / source["regions"], regions)
        timepoint["regions"] = regions.name
        timepoint["region_names"] = {1: "core", 2: "penumbra", 3: "MustermannErika injection", 4: "reference",
                                     5: "background", 6: "Weber_white matter"}
    write_manifest(raw, study_dir / "study.toml")
    out = tmp_path / "exam.pdf"  # one timepoint (fewer pages to OCR); the identifiers of all are known
    code, err = _report(["report", study_dir, "-o", out, "--deidentify", "--timepoint", "day 7"], capsys)
    assert code == 0, err
    forms = ("Mustermann", "Erika", "DEMO-0001", "DEMO0001", "Musterstadt", "Klinikweg", "12345", "Schneider",
             "Hans", "Weber", "Becker", "Jonas", "Anna", "PETMR", "RAD2600", "26001235", "26001236", "1961", "2026", "09:44",
             "094400", "April")
    assert EXAM_SITE["institution"].split()[0] in forms
    ocr = _assert_nothing_found(out, tmp_path / "ocr", forms)
    text = re.sub(r"\s+", " ", _extracted_text(out))
    assert "[removed] injection (3)" in text and "core (1)" in text and "Day 7 after transplantation" in text
    assert "sagittal" in ocr and "dead cells" in ocr


def test_a_patient_called_day_core_keeps_the_reports_ordinary_words(tmp_path, capsys):
    manifest = write_small_study(tmp_path / "s")
    text = manifest.read_text().replace('patient = "Test^Patient"', 'patient = "Day^Core"\npatient_id = "P-123456"')
    text = text.replace('condition = "test"', 'condition = "Day Core was seen; core lesion on day 7 (Core, Day)"')
    manifest.write_text(text)
    out = tmp_path / "r.pdf"
    code, err = _report(["report", manifest, "-o", out, "--deidentify"], capsys)
    assert code == 0, err
    flat = re.sub(r"\s+", " ", _extracted_text(out))
    for kept in ("Day 7 after transplantation", "core (1)", "penumbra (2)", "core lesion on day 7",
                 "days after transplantation"):
        assert kept in flat, kept
    assert f"{REMOVED} was seen; core lesion on day 7 ({REMOVED})" in flat
    study = load_study(manifest)
    report = build_report(study, *inputs_from_study(study), options=ReportOptions(deidentify=True))
    identified = build_report(study, *inputs_from_study(study))
    # every "day" and "core" of the timepoint sections, the tables and the definitions is kept
    assert [s.text() for s in report.sections] == [s.text() for s in identified.sections]
    assert report.modalities.rows[0][0] == "day 7" and report.definitions == identified.definitions
    for word in ("day", "core"):
        assert re.search(rf"\b{word}\b", report.sections[0].text(), re.IGNORECASE), word
    assert report.sections[0].key_images.texts == identified.sections[0].key_images.texts  # legend, title, views


def test_an_identifier_spelled_like_the_reports_own_words_is_refused_and_nothing_is_written(tmp_path, capsys):
    manifest = write_small_study(tmp_path / "s")
    manifest.write_text(manifest.read_text().replace('patient = "Test^Patient"', 'patient = "Key^Images"'))
    out = tmp_path / "r.pdf"
    code, err = _report(["report", manifest, "-o", out, "--deidentify"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "the report would show the patient's name in the key image caption of day 7" in lines[0]
    assert "not written" in lines[0] and "Key" not in lines[0].replace("key image", "")  # never quotes the name
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary file left
    assert _report(["report", manifest, "-o", out], capsys)[0] == 0  # an identified report is fine


def test_a_word_drawn_into_a_figure_without_scrubbing_is_caught(tmp_path, capsys, monkeypatch):
    """Defence in depth: were a figure to draw a word that bypassed the scrubber, the check
    reads the figure's drawn words (not only the report's text) and refuses, naming the figure."""
    from viewer.core import render

    original = render.render_key_images

    def leaky(layers, point, radiological=True, title="", **kwargs):
        figure = original(layers, point, radiological, title, **kwargs)
        figure.text(0.5, 0.5, "seen by Nadia Quimby")
        return figure

    monkeypatch.setattr(render, "render_key_images", leaky)
    manifest = write_small_study(tmp_path / "s")
    manifest.write_text(manifest.read_text().replace('patient = "Test^Patient"', 'patient = "Quimby^Nadia"'))
    out = tmp_path / "r.pdf"
    code, err = _report(["report", manifest, "-o", out, "--deidentify"], capsys)
    assert code == 2, err
    assert "the patient's name in the key images of day 7 (a label drawn into them)" in err and not out.exists()


def test_a_long_study_streams_its_timepoints(tmp_path, monkeypatch):
    """Sections are made as timepoints arrive and their images released: never more than the
    look-ahead plus the one being laid out are alive, however many timepoints there are."""
    from viewer.core.report import content, inputs

    manifest = write_small_study(tmp_path / "s")
    raw = tomllib.loads(manifest.read_text())
    raw["timepoint"] = [dict(raw["timepoint"][0], label=f"visit {i}", day=i) for i in range(1, 8)]
    write_manifest(raw, manifest)
    alive: weakref.WeakSet = weakref.WeakSet()
    most = []
    load = inputs.load_timepoint

    def loading(study, timepoint):
        volumes = load(study, timepoint)
        alive.add(volumes["anatomical"])
        return volumes

    section = content._section

    def counting(build, item):
        gc.collect()
        most.append(len(alive))
        return section(build, item)

    monkeypatch.setattr(inputs, "load_timepoint", loading)
    monkeypatch.setattr(content, "_section", counting)
    out = tmp_path / "r.pdf"
    assert main(["report", str(manifest), "-o", str(out), "--deidentify"]) == 0
    assert len(most) == 7 and max(most) <= inputs.LOOKAHEAD + 1, most
    assert "visit 7" in _extracted_text(out)
