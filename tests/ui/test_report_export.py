"""File ▸ Export report: the window writes the same report as `viewer report` (issue #7)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from pypdf import PdfReader

from viewer.cli import main
from viewer.ui.report_dialog import ReportDialog


def _text_without_creation_time(pdf) -> str:
    text = "\n".join(page.extract_text() for page in PdfReader(pdf).pages)
    return re.sub(r"Created\s*\n?[^\n]*\n", "Created\n", text)


def test_window_report_matches_the_command_line(window, qtbot, tmp_path, demo_manifest):
    from viewer.core.report import ReportOptions

    window.scene.set_cursor(np.array([30.25, 4.5, 28.75]))
    window.scene.set_timepoint(2)
    written = []
    window.report_written.connect(written.append)
    out = tmp_path / "from window.pdf"
    options = ReportOptions(reviewer="Dr. Window", focus=window.scene.cursor.copy(), radiological=True)
    assert window.export_report(out, options, "day 21")
    qtbot.waitUntil(lambda: bool(written), timeout=60_000)
    assert written == [str(out)]
    assert "Report written" in window.statusBar().currentMessage()

    cli_out = tmp_path / "from cli.pdf"
    assert main(["report", str(demo_manifest), "-o", str(cli_out), "--timepoint", "day 21", "--reviewer", "Dr. Window",
                 "--at", "30.25,4.5,28.75"]) == 0
    window_text = _text_without_creation_time(out)
    assert window_text == _text_without_creation_time(cli_out)
    assert "through the point chosen in the window at (30.2, 4.5, 28.8) mm" in window_text or \
        "through the point chosen in the window at (30.3, 4.5, 28.8) mm" in window_text
    assert "Day 21 after transplantation" in window_text


def test_window_report_lists_the_scene_measurements_as_the_command_line_does(window, qtbot, tmp_path, study_copy):
    """The measurements listed in the window are in its report, measured as `viewer report`
    measures the same ones saved in the study's workspace (issue #15)."""
    from viewer.core.measurements import Ruler, SphereROI
    from viewer.core.report import ReportOptions
    from viewer.core.workspace import Workspace, write_workspace

    window.scene.set_cursor(np.array([30.25, 4.5, 28.75]))
    window.scene.measurements.add(SphereROI([38.13, 9.07, 32.91], 6.2, "graft"))
    window.scene.measurements.add(Ruler([10.0, -20.0, 15.0], [13.0, -16.0, 27.0]))
    measured = tuple(window.scene.measurements)
    assert [m.name for m in measured] == ["graft", "M1"]
    written = []
    window.report_written.connect(written.append)
    out = tmp_path / "from window.pdf"
    options = ReportOptions(reviewer="Dr. Window", focus=window.scene.cursor.copy(), radiological=True)
    assert window.export_report(out, options, "day 1")
    window.scene.measurements.clear()  # the report lists the measurements of when it was asked for
    qtbot.waitUntil(lambda: bool(written), timeout=60_000)
    window_text = _text_without_creation_time(out)
    flat = re.sub(r"\s+", " ", window_text)
    assert "graft — sphere radius 6.2 mm" in flat and "regions inside: injection site" in flat
    assert "M1 — ruler length 13.0 mm" in flat

    write_workspace(study_copy, Workspace(measurements=measured))
    cli_out = tmp_path / "from cli.pdf"
    assert main(["report", str(study_copy), "-o", str(cli_out), "--timepoint", "day 1", "--reviewer", "Dr. Window",
                 "--at", "30.25,4.5,28.75"]) == 0
    assert window_text == _text_without_creation_time(cli_out)


def test_bad_output_is_refused_with_a_dialog(window, tmp_path):
    from viewer.core.report import ReportOptions

    assert not window.export_report(tmp_path / "report.txt", ReportOptions())
    assert "must be a .pdf file" in window.last_error
    assert list(tmp_path.iterdir()) == [] or all(p.name == "settings.ini" for p in tmp_path.iterdir())


def test_report_dialog_choices_and_memory(qtbot, settings, demo_manifest):
    from viewer.core.io.study import load_study

    study = load_study(demo_manifest)
    dialog = ReportDialog(study, "day 7", np.array([1.0, 2.0, 3.0]), False, settings)
    qtbot.addWidget(dialog)
    assert dialog.output().name == "demo-001-report.pdf"
    assert dialog.timepoint_label() is None
    assert "(1.0, 2.0, 3.0) mm" in dialog.at_cursor.text()
    dialog.reviewer.setText("  Dr. Memory ")
    dialog.deidentify.setChecked(True)
    dialog.timepoints.setCurrentIndex(2)
    options = dialog.options()
    assert options.reviewer == "Dr. Memory" and options.deidentify and not options.radiological
    assert np.allclose(options.focus, [1.0, 2.0, 3.0])
    assert dialog.timepoint_label() == "day 7"
    dialog.at_hotspot.setChecked(True)
    assert dialog.options().focus is None
    dialog.remember()
    again = ReportDialog(study, "day 7", np.zeros(3), True, settings)
    qtbot.addWidget(again)
    assert again.reviewer.text() == "Dr. Memory"


def test_export_action_is_in_the_file_menu(window):
    assert window.report_action.text() == "Export &report (PDF)…"
    assert window.report_action.shortcut().toString() == "Ctrl+P"


def test_version_is_the_same_in_about_cli_and_report_footer(window, capsys):
    from viewer import __version__
    from viewer.core.report.content import APP_NAME
    from viewer.ui.app import application_icon

    assert f"{APP_NAME} {__version__}" in window.about_text()
    with pytest.raises(SystemExit):  # argparse's version action prints and exits
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"viewer {__version__}"
    assert not application_icon().isNull()
