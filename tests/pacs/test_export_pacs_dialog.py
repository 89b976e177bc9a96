"""File ▸ Export to PACS (issue 18): the dialog exports the saved study and sends the chosen
objects to a real Orthanc; what arrived is read through Orthanc's REST API."""

from __future__ import annotations

import io

import pytest
import requests
from pydicom import dcmread

from tests.pacs.conftest import PASSWORD, running_orthanc
from viewer.ui.export_pacs_dialog import ExportPacsDialog

SEG, SR, PDF, MR = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34",
                    "1.2.840.10008.5.1.4.1.1.104.1", "1.2.840.10008.5.1.4.1.1.4")


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PACS_PASSWORD", PASSWORD)
    (tmp_path / "server").mkdir()
    with running_orthanc(tmp_path / "server") as pacs:
        yield pacs, pacs.config(tmp_path / "pacs.toml")


def held(pacs) -> list:
    out = []
    for orthanc_id in requests.get(f"{pacs.http}/instances", auth=pacs.auth, timeout=30).json():
        raw = requests.get(f"{pacs.http}/instances/{orthanc_id}/file", auth=pacs.auth, timeout=30).content
        out.append(dcmread(io.BytesIO(raw), stop_before_pixels=True))
    return out


def ended(dialog) -> bool:
    return dialog.last_result is not None or dialog.last_error is not None


@pytest.mark.parametrize("via", ["dicomweb", "dimse"])
def test_the_dialog_sends_the_chosen_objects_of_one_timepoint(qtbot, server, demo_manifest, via):
    pacs, config = server
    dialog = ExportPacsDialog(demo_manifest, ["day 1", "day 7", "day 21"], current="day 7", config_path=config)
    qtbot.addWidget(dialog)
    assert dialog.timepoint_combo.currentData() == "day 7"
    dialog.via_combo.setCurrentIndex(dialog.via_combo.findData(via))
    dialog.kind_boxes["report"].setChecked(False)  # everything but the PDF
    assert dialog.send_button.isEnabled()
    dialog.send_button.click()
    assert not dialog.node_combo.isEnabled() and not dialog.kind_boxes["segmentation"].isEnabled()
    qtbot.waitUntil(lambda: ended(dialog), timeout=180_000)
    assert dialog.node_combo.isEnabled() and dialog.send_button.isEnabled()
    assert dialog.last_error is None, dialog.last_error
    instances = held(pacs)
    classes = sorted(str(ds.SOPClassUID) for ds in instances)
    assert SEG in classes and SR in classes and PDF not in classes
    anatomy = classes.count(MR)
    assert anatomy > 100 and len({str(ds.StudyInstanceUID) for ds in instances}) == 1
    assert dialog.message.text() == (f"Stored {anatomy + 2} instances on 'test' (1 study): 1 segmentation, "
                                     f"1 measurement report, {anatomy} anatomy images.")


def test_unsaved_region_edits_block_the_send(qtbot, server, demo_manifest):
    pacs, config = server
    dialog = ExportPacsDialog(demo_manifest, ["day 1"], unsaved=True, config_path=config)
    qtbot.addWidget(dialog)
    assert not dialog.send_button.isEnabled()
    assert "not saved" in dialog.message.text()
    dialog.send()
    assert held(pacs) == []


def test_cancel_stores_nothing(qtbot, server, demo_manifest):
    pacs, config = server
    dialog = ExportPacsDialog(demo_manifest, ["day 1"], current="day 1", config_path=config)
    qtbot.addWidget(dialog)
    dialog.send()
    dialog.runner.cancel()  # what the progress dialog's Cancel does
    qtbot.waitUntil(lambda: ended(dialog), timeout=120_000)
    assert dialog.last_result is None and "cancelled" in dialog.last_error
    assert dialog.message.text().startswith("Cancelled: ")
    assert held(pacs) == []


def test_a_missing_pacs_toml_is_explained(qtbot, tmp_path, demo_manifest):
    dialog = ExportPacsDialog(demo_manifest, ["day 1"], config_path=tmp_path / "nowhere" / "pacs.toml")
    qtbot.addWidget(dialog)
    assert dialog.node_combo.count() == 0 and not dialog.send_button.isEnabled()
    assert "pacs.toml" in dialog.message.text() and "[node.NAME]" in dialog.message.text()


def test_an_unreachable_node_gives_one_line(qtbot, tmp_path, demo_manifest):
    from tests.pacs.conftest import free_port

    config = tmp_path / "pacs.toml"
    config.write_text(f'[node.gone]\nhost = "127.0.0.1"\nport = {free_port()}\ncalled_aet = "NOBODY"\n')
    dialog = ExportPacsDialog(demo_manifest, ["day 1"], current="day 1", config_path=config)
    qtbot.addWidget(dialog)
    dialog.kind_boxes["anatomy"].setChecked(False)
    dialog.send()
    qtbot.waitUntil(lambda: ended(dialog), timeout=120_000)
    assert dialog.last_result is None
    assert "gone" in dialog.last_error and "\n" not in dialog.last_error
    assert dialog.message.text().startswith("Not sent: ")


def test_the_window_opens_the_dialog_on_the_open_study_and_names_unsaved_edits(qtbot, demo_manifest, tmp_path):
    """File ▸ Export results to PACS: the study on screen, its timepoint chosen; an unsaved
    stroke blocks the send (the saved files are what is exported)."""
    import numpy as np
    from PySide6 import QtCore, QtWidgets

    from viewer.ui.main_window import MainWindow

    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    settings.setValue("workspace/remember", "false")
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.ask_unsaved = lambda unsaved: QtWidgets.QMessageBox.StandardButton.Discard  # on closing
    window.show()
    assert window.open_export_pacs_dialog(tmp_path / "pacs.toml") is None  # no study yet
    assert "open a study" in window.last_error
    assert window.open(demo_manifest)
    (action,) = [a for a in window.actions() if a.text().startswith("Export results to P&ACS")]
    dialog = window.open_export_pacs_dialog(tmp_path / "pacs.toml")
    assert isinstance(dialog, ExportPacsDialog) and dialog.isVisible()
    assert [dialog.timepoint_combo.itemData(i) for i in range(dialog.timepoint_combo.count())] == \
        ["", "day 1", "day 7", "day 21"]
    assert dialog.timepoint_combo.currentData() == window.scene.timepoint.label
    assert not dialog.unsaved
    dialog.close()
    editable = window.scene.editable()
    box = (slice(0, 2), slice(0, 2), slice(0, 1))
    editable.paint_mask("test stroke", box, np.ones((2, 2, 1), dtype=bool), 1)
    dialog = window.open_export_pacs_dialog(tmp_path / "pacs.toml")
    assert dialog.unsaved and not dialog.send_button.isEnabled() and "not saved" in dialog.message.text()
    dialog.close()
    assert action.isEnabled()
