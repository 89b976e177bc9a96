"""PDF reports (issue #7): content checked against `viewer stats`, de-identification, atomic writes.

The demo study's report is written once per session through the command line (`main`) and
read back with pypdf (text, metadata, fonts, images) and poppler's pdftoppm (pixels).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zlib
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader

from tests.core.study_builders import write_small_study
from viewer import __version__
from viewer.cli import main
from viewer.core.io.study import load_study
from viewer.core.quant.measures import display_value, timepoint_measure
from viewer.core.report import (
    ReportOptions,
    Scrubber,
    build_report,
    inputs_from_scene,
    inputs_from_study,
)
from viewer.core.report.content import TABLE_MEASURES
from viewer.core.report.deidentify import DATE_REMOVED, REMOVED
from viewer.core.scene import Scene

REVIEWER = "Dr. Quinn Reviewer"
#: Every identifier of the demo's fictitious patient, in the spellings a leak could take.
DEMO_IDENTIFIERS = ("Mustermann", "Erika", "DEMO-0001", "1961-04-12", "19610412", "12.04.1961",
                    "2026-03-02", "20260302", "2026-03-03", "2026-03-09", "2026-03-23")


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _text(pdf: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(pdf).pages)


def _flat(text: str) -> str:
    """Extracted text with line breaks as spaces (table cells may wrap)."""
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="session")
def demo_stats(demo_manifest):
    """What `viewer stats` prints for the demo, parsed."""
    from viewer.core.analysis import compute_study_stats

    return json.loads(compute_study_stats(load_study(demo_manifest)).to_json())


@pytest.fixture(scope="session")
def demo_report(demo_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "demo report.pdf"
    assert main(["report", str(demo_manifest), "-o", str(out), "--reviewer", REVIEWER]) == 0
    return out


@pytest.fixture(scope="session")
def demo_report_deidentified(demo_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "shared.pdf"
    assert main(["report", str(demo_manifest), "-o", str(out), "--deidentify", "--reviewer", REVIEWER]) == 0
    return out


# -- content ------------------------------------------------------------------------------------

def test_report_states_every_number_of_viewer_stats_as_the_table_formats_it(demo_report, demo_stats):
    text = _flat(_text(demo_report))
    assert demo_stats["study"] in text
    limit = timepoint_measure("detection_limit_cells_per_mm3")
    checked = 0
    for timepoint in demo_stats["timepoints"]:
        assert f"{limit.format(timepoint['detection_limit_cells_per_mm3'])} cells/mm³" in text
        for region in timepoint["regions"]:
            assert f"{region['name']} ({region['label']})" in text  # the region's column header
            for measure in TABLE_MEASURES:
                value = display_value(region, measure)  # the interval: one "low–high" cell
                if value is not None:
                    assert measure.format(value) in text, (timepoint["label"], region["name"], measure.key)
                    checked += 1
    assert checked > 200


def test_report_names_measures_with_units_and_descriptions_from_the_registry(demo_report):
    text = _flat(_text(demo_report))
    for measure in TABLE_MEASURES:  # the registry's, the interval's two keys as one row
        assert measure.title in text, measure.title
        assert measure.description.split(":")[0][:40] in text, measure.key


def test_report_header_alerts_notice_and_footer(demo_report, demo_stats):
    text = _flat(_text(demo_report))
    for expected in ("Mustermann, Erika", "DEMO-0001", "1961-04-12", REVIEWER, "62,500", "UC-MSC, intracerebral",
                     "demonstration model — simulated data — not for clinical decisions", "Reviewed and approved by"):
        assert expected in text, expected
    alerts = [(t["label"], r["name"], r["dead_fraction"]) for t in demo_stats["timepoints"] for r in t["regions"]
              if r["rejection_alert"]]
    assert len(alerts) >= 3
    for label, name, fraction in alerts:
        assert f"{label}: ⚠ Rejection alert — {name}: dead fraction {fraction:.2f}" in text
    pages = PdfReader(demo_report).pages
    for number, page in enumerate(pages, start=1):
        page_text = page.extract_text()
        assert f"page {number} of {len(pages)}" in page_text
        assert f"Cell-therapy imaging viewer {__version__}" in page_text


def test_report_has_core_penumbra_predictions_time_course_and_notes(demo_report):
    text = _flat(_text(demo_report))
    for expected in ("Core and penumbra", "DEFUSE-3 style profile", "Mismatch ratio", "Predictions",
                     "Penumbra salvage at day 90", "Time course of live and dead cells", "Prediction models",
                     "Intended use", "Validation", "Licence", "contributions in logit units",
                     "lies outside the TSC field of view", "Detection limit", "Homing of ¹⁹F-counted cells"):
        assert expected in text, expected


def test_report_layout_pages_fonts_and_images(demo_report):
    reader = PdfReader(demo_report)
    assert 6 <= len(reader.pages) <= 14
    images = [image for page in reader.pages for image in page.images]
    assert len(images) == 3  # key images of three timepoints; the time course is drawn as vectors and text
    assert all(image.image.width >= 900 for image in images)
    fonts = {}
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            descriptor = font.get("/FontDescriptor") or font["/DescendantFonts"][0].get_object()["/FontDescriptor"]
            fonts[str(font["/BaseFont"])] = "/FontFile2" in descriptor.get_object()
    assert fonts and all(fonts.values()), fonts  # every font embedded (TrueType subsets)
    assert all("DejaVuSans" in name for name in fonts)
    text = _text(demo_report)
    for glyphs in ("¹⁹F", "mm³", "≥", "ΔR1", "10⁻⁶ mm²/s"):
        assert glyphs in text, glyphs
    assert demo_report.stat().st_size <= 5 * 1024 * 1024


def test_every_page_renders_with_content(demo_report, tmp_path):
    assert shutil.which("pdftoppm"), "pdftoppm missing: `make test` installs poppler-utils"
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(demo_report), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == len(PdfReader(demo_report).pages)
    for path in pages:
        grey = np.asarray(Image.open(path).convert("L"), dtype=float)
        ink = (grey < 200).mean()
        assert ink > 0.005, f"{path.name} is blank"
    first_timepoint = np.asarray(Image.open(pages[1]).convert("RGB"), dtype=float)
    # the fused key images are on the timepoint's first page: dark view backgrounds, grey
    # anatomy (the default protocol) and the coloured cells and regions on it
    dark = (first_timepoint.max(axis=2) < 40).mean()
    colourful = (np.ptp(first_timepoint, axis=2) > 60).mean()
    assert dark > 0.03 and colourful > 0.001


def test_one_timepoint_and_a_chosen_point(demo_manifest, tmp_path, capsys):
    out = tmp_path / "day7.pdf"
    code, _, err = _run(["report", demo_manifest, "-o", out, "--timepoint", "day 7", "--at", "10,-20,15"], capsys)
    assert code == 0, err
    text = _flat(_text(out))
    assert "Day 7 after transplantation" in text and "Day 21 after transplantation" not in text
    assert "through the point chosen in the window at (10.0, -20.0, 15.0) mm" in text
    assert len([i for p in PdfReader(out).pages for i in p.images]) == 1  # the key images; the time course is vectors


# -- the same content from the window's scene ------------------------------------------------------

def test_scene_and_files_give_the_same_report(demo_manifest):
    study = load_study(demo_manifest)
    created = datetime(2026, 11, 1, 9, 30).astimezone()
    options = ReportOptions(reviewer=REVIEWER, focus=np.array([30.0, 5.0, 30.0]), created=created)
    from_files = build_report(study, *inputs_from_study(study, "day 7"), options=options)
    scene = Scene(study)
    scene.set_timepoint(1)
    from_scene = build_report(study, *inputs_from_scene(scene, "day 7"), options=options)
    assert from_scene.text() == from_files.text()
    assert np.array_equal(from_scene.sections[0].key_images.pixels, from_files.sections[0].key_images.pixels)


def test_unsaved_edits_are_reported_as_such(demo_manifest):
    study = load_study(demo_manifest)
    scene = Scene(study)
    editable = scene.editable()
    box = (slice(100, 104), slice(100, 104), slice(60, 64))
    editable.paint_mask("brush", box, np.ones((4, 4, 4), bool), 1)
    report = build_report(study, *inputs_from_scene(scene, scene.timepoint.label))
    assert "edited in the window and not saved" in report.text()


# -- de-identification ----------------------------------------------------------------------------------

def _all_stream_bytes(pdf: Path) -> bytes:
    """Every stream of the file decompressed (content, fonts, metadata), plus the raw file."""
    raw = pdf.read_bytes()
    chunks = [raw]
    for match in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", raw, re.S):
        data = match.group(1)
        for decode in (zlib.decompress, lambda d: zlib.decompress(_a85(d))):
            try:
                chunks.append(decode(data))
            except Exception:
                pass
    return b"\n".join(chunks)


def _a85(data: bytes) -> bytes:
    import base64

    data = data.strip()
    if data.endswith(b"~>"):
        data = data[:-2]
    return base64.a85decode(data, adobe=False)


def test_deidentified_report_has_no_identifier_in_text_bytes_or_metadata(demo_report_deidentified):
    text = _text(demo_report_deidentified)
    payload = _all_stream_bytes(demo_report_deidentified)
    metadata = PdfReader(demo_report_deidentified).metadata
    for identifier in DEMO_IDENTIFIERS:
        assert identifier.lower() not in text.lower(), identifier
        for encoding in ("latin-1", "utf-16-be"):
            assert identifier.encode(encoding) not in payload, (identifier, encoding)
        for key, value in metadata.items():
            assert identifier.lower() not in str(value).lower(), (key, identifier)
    assert "de-identified" in text and "day 7" in text and "demo-001" in text
    for key in ("/CreationDate", "/ModDate"):
        assert "2000" in str(metadata.get(key, "")) or key not in metadata  # reportlab's invariant date
    assert REVIEWER in text


def test_identifiers_in_free_text_and_images_are_scrubbed(tmp_path, monkeypatch):
    """Identifiers typed into a region name, the study id and the condition never reach the
    PDF text or the burned-in labels of the key images."""
    from viewer.core import render

    manifest = write_small_study(tmp_path / "s")
    text = manifest.read_text()
    text = text.replace('id = "small-001"', 'id = "P-778899 study"')
    text = text.replace('condition = "test"', 'condition = "seen 2026-05-04 (Nadia Quimby)"')
    text = text.replace('patient = "Test^Patient"', 'patient = "Quimby^Nadia"\npatient_id = "P-778899"\nbirth_date = "1950-01-02"')
    text = text.replace('2 = "penumbra"', '2 = "Quimby lesion 02.01.1950"')
    assert text.count("Quimby") == 3
    manifest.write_text(text)
    seen = []
    original = render.render_key_images

    def spy(layers, point, radiological=True, title="", **kwargs):
        seen.append(title)
        seen.extend(name for layer in layers for name in layer.region_names.values())
        return original(layers, point, radiological, title, **kwargs)

    monkeypatch.setattr(render, "render_key_images", spy)
    out = tmp_path / "out.pdf"
    assert main(["report", str(manifest), "-o", str(out), "--deidentify"]) == 0
    extracted = _text(out)
    metadata = " ".join(str(v) for v in PdfReader(out).metadata.values())
    for leak in ("Quimby", "Nadia", "P-778899", "1950-01-02", "02.01.1950", "2026-05-04"):
        assert leak not in extracted, leak
        assert leak not in metadata, leak
        assert all(leak not in label for label in seen), (leak, seen)
    assert REMOVED in extracted and DATE_REMOVED in extracted
    assert f"{REMOVED} study" in extracted


def test_scrubber_spellings_and_no_false_positives():
    scrub = Scrubber.for_study({"patient": "Doe^Jane^Q", "patient_id": "12345", "birth_date": "19800506"})
    for leaked in ("Doe^Jane^Q", "Jane Doe", "Doe, Jane", "JANE", "id 12345", "06.05.1980", "1980-05-06", "05/06/1980",
                   "scan 2025-12-01T10:22:03", "DA 20251201"):
        cleaned = scrub.text(leaked)
        assert not scrub.leaks(cleaned) and "2025" not in cleaned, (leaked, cleaned)
    for kept in ("version 1.10.12", "62,500 cells", "123456 voxels", "Doer", "SUV 4.10995", "day 21"):
        assert scrub.text(kept) == kept
    assert Scrubber.for_study({"patient": "Doe^Jane"}, active=False).text("Jane Doe 2025-01-01") == "Jane Doe 2025-01-01"


# -- failures and atomic replacement -------------------------------------------------------------------

def test_bad_inputs_fail_with_one_line_and_leave_the_old_file(demo_manifest, tmp_path, capsys):
    out = tmp_path / "report.pdf"
    out.write_bytes(b"previous report")
    broken = tmp_path / "broken"
    manifest = write_small_study(broken)
    (broken / "t1.nii").write_bytes(b"not a nifti")
    cases = [
        ["report", manifest, "-o", out],
        ["report", demo_manifest, "-o", out, "--timepoint", "day 99"],
        ["report", demo_manifest, "-o", out, "--at", "1,2"],
        ["report", tmp_path / "missing", "-o", out],
        ["report", demo_manifest, "-o", tmp_path / "report.txt"],
        ["report", demo_manifest, "-o", tmp_path],
        ["report", demo_manifest, "-o", tmp_path / "no such folder" / "r.pdf"],
    ]
    for argv in cases:
        code, _, err = _run(argv, capsys)
        assert code == 2, argv
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
        assert out.read_bytes() == b"previous report"
        leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("report.pdf", "broken"))
        assert leftovers == [], leftovers
    assert "day 99" in _run(cases[1], capsys)[2] and "'day 7'" in _run(cases[1], capsys)[2]


def test_success_replaces_an_existing_file(tmp_path, capsys):
    manifest = write_small_study(tmp_path / "s")
    out = tmp_path / "r.pdf"
    out.write_bytes(b"old")
    out.chmod(0o640)
    code, stdout, err = _run(["report", manifest, "-o", out], capsys)
    assert code == 0, err
    assert stdout.strip() == str(out)
    assert out.read_bytes().startswith(b"%PDF")
    assert out.stat().st_mode & 0o777 == 0o640  # the replaced file's permissions are kept
    text = _flat(_text(out))
    assert "small-001" in text and "core (1)" in text and "penumbra (2)" in text
    assert "No prediction model is configured for this study." in text
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
