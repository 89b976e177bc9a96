"""File ▸ Query and retrieve from PACS (PRODUCT.md §8 "PACS"): the dialog against the real
Orthanc of the session, over DICOMweb and DIMSE.

The form's fields become the StudyQuery the command line would send; the table lists exactly
the studies stored (``STUDIES``), readable and sortable; an unreachable node and a missing or
broken pacs.toml are one line in the dialog; Retrieve brings the stored files into a new folder
and hands it to the series browser; Cancel (and a failure) leaves nothing on disk.
"""

from __future__ import annotations

import threading
import time

import pytest
from pydicom import dcmread
from PySide6 import QtCore, QtWidgets

from tests.pacs.conftest import PASSWORD, STUDIES, free_port
from viewer.core.errors import ViewerError
from viewer.core.pacs.query import StudyMatch, StudyQuery
from viewer.ui import pacs_dialog
from viewer.ui.pacs_dialog import (
    COL_DATE,
    COL_SERIES,
    COLUMNS,
    PacsDialog,
    build_query,
    date_range,
    new_retrieve_folders,
    retrieve_folder_name,
)

VIAS = ("dicomweb", "dimse")
NAMES = {"dicomweb": "DICOMweb", "dimse": "DIMSE"}
WAIT_MS = 60_000
ACTION_TEXT = "Query and retrieve from &PACS…"


@pytest.fixture
def config(pacs, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PACS_PASSWORD", PASSWORD)
    port = free_port()  # nothing listens there
    return pacs.config(tmp_path / "pacs.toml", extra=f"""
[node.down]
dicomweb = "http://127.0.0.1:{port}/dicom-web"
host = "127.0.0.1"
port = {port}
called_aet = "GONE"

[node.web-only]
dicomweb = "{pacs.dicomweb}"
username = "viewer"
password_env = "TEST_PACS_PASSWORD"
""")


@pytest.fixture
def settings(tmp_path):
    return QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)


def make_dialog(qtbot, config, settings=None) -> PacsDialog:
    dialog = PacsDialog(config, settings=settings)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


@pytest.fixture
def dialog(qtbot, config, stored_studies):
    return make_dialog(qtbot, config)


def search(qtbot, dialog: PacsDialog, via: str = "dicomweb", node: str = "test", **fields) -> list[tuple[str, ...]]:
    """Fill the form as a user would, press Search, wait for the answer; the rows' texts."""
    dialog.set_node(node, via)
    edits = {"patient_id": dialog.patient_id_edit, "patient_name": dialog.patient_name_edit,
             "date_from": dialog.date_from_edit, "date_to": dialog.date_to_edit}
    for name, edit in edits.items():
        edit.setText(fields.get(name, ""))
    dialog.modality_combo.setEditText(fields.get("modality", ""))
    with qtbot.waitSignal(dialog.searched, timeout=WAIT_MS):
        qtbot.mouseClick(dialog.search_button, QtCore.Qt.MouseButton.LeftButton)
    return rows(dialog)


def rows(dialog: PacsDialog) -> list[tuple[str, ...]]:
    table = dialog.table
    return [tuple(table.item(r, c).text() for c in range(table.columnCount())) for r in range(table.rowCount())]


def listed_uids(dialog: PacsDialog) -> list[str]:
    return [m.study_uid for m in dialog.listed()]


def expected_row(index: int) -> tuple[str, ...]:
    patient_id, name, date, modalities, description = STUDIES[index]
    family, given = name.split("^")
    return (f"{date[:4]}-{date[4:6]}-{date[6:]}", patient_id, f"{family}, {given}", ", ".join(sorted(modalities)),
            str(len(modalities)), description)


def by_sop(paths) -> dict[str, bytes]:
    return {str(ds.SOPInstanceUID): bytes(ds.PixelData) for ds in (dcmread(p) for p in paths)}


# -- the form, without a window -------------------------------------------------------------------------
@pytest.mark.parametrize(("date_from", "date_to", "expected"), [
    ("", "", None),
    ("20250110", "", "20250110-"),
    ("", "2025-03-01", "-20250301"),
    ("2025-01-10", "20250301", "20250110-20250301"),
    (" 20250217 ", "2025-02-17", "20250217"),
])
def test_the_date_fields_become_the_query_date(date_from, date_to, expected):
    assert date_range(date_from, date_to) == expected
    assert build_query(date_from=date_from, date_to=date_to).date == expected


@pytest.mark.parametrize(("date_from", "date_to", "words"), [
    ("2025/01/10", "", "study date from: '2025/01/10' is not a date"),
    ("", "20251301", "study date to: '20251301' is not a calendar date"),
    ("20250301", "20250110", "the range ends (2025-01-10) before it starts (2025-03-01)"),
])
def test_a_wrong_date_names_its_field(date_from, date_to, words):
    with pytest.raises(ViewerError) as caught:
        build_query(date_from=date_from, date_to=date_to)
    assert words in str(caught.value) and "--date" not in str(caught.value)


def test_the_other_fields_become_the_query():
    assert build_query(" P-100 ", "Alp*", "", "", " pt ") == StudyQuery("P-100", "Alp*", None, "PT")
    assert build_query() == StudyQuery()
    with pytest.raises(ViewerError, match="modality must be a DICOM modality"):
        build_query(modality="M R")
    with pytest.raises(ViewerError, match="patient name must be printable text without backslashes"):
        build_query(patient_name="a\\b")


def test_retrieved_folders_are_new_and_named_for_reading(tmp_path):
    a = StudyMatch("1.2.826.0.1.3680043.8.498.12345678901", "P-1/0 0", "Doe^Jane", "20250110", ["MR"], "", 1)
    b = StudyMatch("1.2.826.0.1.3680043.8.498.99999999999", "", "Roe^John", "", ["PT"], "", 1)
    assert retrieve_folder_name(a) == "P-1_0_0_20250110_45678901"  # the last 8 digits of the UID
    assert retrieve_folder_name(b) == "Roe__John_undated_99999999"
    (tmp_path / retrieve_folder_name(a)).mkdir()  # retrieved before
    folders = new_retrieve_folders(tmp_path, [a, a, b])
    assert [f.name for f in folders] == ["P-1_0_0_20250110_45678901-2", "P-1_0_0_20250110_45678901-3",
                                         "Roe__John_undated_99999999"]
    assert all(f.parent == tmp_path and not f.exists() for f in folders)


# -- searching --------------------------------------------------------------------------------------
@pytest.mark.parametrize("via", VIAS)
def test_search_by_patient_id_lists_exactly_its_studies(qtbot, dialog, stored_studies, via):
    assert search(qtbot, dialog, via, patient_id="P-100") == [expected_row(0), expected_row(1)]
    assert listed_uids(dialog) == stored_studies[:2]
    assert dialog.last_error is None
    assert dialog.message_label.text().startswith(f"2 studies on 'test' ({NAMES[via]})")
    tip = dialog.table.item(1, 3).toolTip()
    assert f"StudyInstanceUID {stored_studies[1]}" in tip
    assert [dialog.table.horizontalHeaderItem(c).text() for c in range(len(COLUMNS))] == list(COLUMNS)


@pytest.mark.parametrize("via", VIAS)
def test_search_by_date_range_and_open_ends(qtbot, dialog, stored_studies, via):
    assert listed_uids_of(qtbot, dialog, via, date_from="2025-02-01", date_to="20250301") == stored_studies[1:3]
    assert listed_uids_of(qtbot, dialog, via, date_from="20250301") == stored_studies[2:4]
    assert listed_uids_of(qtbot, dialog, via, date_to="20250110") == stored_studies[:1]
    assert listed_uids_of(qtbot, dialog, via, date_from="20250217", date_to="20250217") == stored_studies[1:2]


def listed_uids_of(qtbot, dialog, via, **fields) -> list[str]:
    search(qtbot, dialog, via, **fields)
    return listed_uids(dialog)


@pytest.mark.parametrize("via", VIAS)
def test_search_by_modality_and_name_wildcard(qtbot, dialog, stored_studies, via):
    assert listed_uids_of(qtbot, dialog, via, modality="pt") == [stored_studies[1], stored_studies[3]]
    assert listed_uids_of(qtbot, dialog, via, modality="CT", patient_name="Gam*") == [stored_studies[3]]
    assert search(qtbot, dialog, via, patient_id="P-999") == []
    assert dialog.message_label.text().startswith("0 studies on 'test'")


def test_the_table_sorts_by_any_column_numbers_as_numbers(qtbot, dialog, stored_studies):
    search(qtbot, dialog)
    assert listed_uids(dialog) == list(stored_studies)  # by date, oldest first
    dialog.table.sortItems(COL_DATE, QtCore.Qt.SortOrder.DescendingOrder)
    assert listed_uids(dialog) == list(reversed(stored_studies))
    dialog.table.sortItems(COL_SERIES, QtCore.Qt.SortOrder.DescendingOrder)
    assert [r[COL_SERIES] for r in rows(dialog)][:2] == ["2", "2"]
    assert dialog.table.isSortingEnabled()
    header = dialog.table.horizontalHeader()
    for column in range(len(COLUMNS) - 1):  # every header and cell readable, none cut
        widest = max(dialog.table.fontMetrics().horizontalAdvance(t[column]) for t in rows(dialog))
        title = header.fontMetrics().horizontalAdvance(COLUMNS[column])
        assert header.sectionSize(column) >= max(widest, title) + 8, COLUMNS[column]


def test_the_protocol_is_chosen_only_where_the_node_has_both(qtbot, dialog, pacs):
    dialog.set_node("test")
    assert dialog.via_combo.isEnabled() and dialog.via_combo.count() == 2
    assert dialog.address_label.text() == pacs.dicomweb
    dialog.via_combo.setCurrentIndex(dialog.via_combo.findData("dimse"))
    assert dialog.address_label.text().startswith(f"{pacs.aet}@127.0.0.1:{pacs.dicom_port}")
    dialog.set_node("web-only")
    assert not dialog.via_combo.isEnabled() and dialog.current_via() == "dicomweb"


@pytest.mark.parametrize("via", ["dicomweb", "dimse"])
def test_an_unreachable_node_is_one_line_in_the_dialog(qtbot, dialog, stored_studies, via):
    assert search(qtbot, dialog, via, node="down", patient_id="P-100") == []
    message = dialog.last_error
    assert message is not None and message.startswith("cannot reach PACS node 'down'")
    assert "\n" not in message and "Traceback" not in message
    assert dialog.message_label.text() == message and dialog.message_label.isVisible()
    assert dialog.isVisible() and not any(w.isVisible() for w in dialog.findChildren(QtWidgets.QMessageBox))
    assert len(search(qtbot, dialog, "dimse", node="test", patient_id="P-100")) == 2  # still usable


def test_a_wrong_field_is_one_line_and_nothing_is_asked(qtbot, dialog):
    dialog.date_from_edit.setText("2025-1-1")
    assert not dialog.search()
    assert dialog.last_error == "study date from: '2025-1-1' is not a date; write YYYYMMDD or YYYY-MM-DD"
    assert not dialog.searching and dialog.message_label.text() == dialog.last_error


# -- a missing or broken pacs.toml --------------------------------------------------------------------
def test_a_missing_pacs_toml_says_where_it_goes(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    dialog = make_dialog(qtbot, None)
    expected = tmp_path / "config" / "cell-therapy-viewer" / "pacs.toml"
    assert dialog.config_error.startswith(f"{expected}: no PACS configuration here")
    assert "\n" not in dialog.config_error
    assert dialog.config_label.isVisible() and dialog.config_label.text() == dialog.config_error
    assert dialog.config_hint.isVisible() and f"The PACS nodes are read from <b>{expected}</b>" in dialog.config_hint.text()
    assert "[node.hospital]" in dialog.config_hint.text()
    assert dialog.node_combo.count() == 0 and not dialog.search_button.isEnabled() and not dialog.form.isEnabled()
    assert not dialog.retrieve_button.isEnabled()
    assert not dialog.search() and dialog.last_error == dialog.config_error


def test_a_broken_pacs_toml_is_one_line_and_reload_reads_it_again(qtbot, pacs, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PACS_PASSWORD", PASSWORD)
    path = tmp_path / "pacs.toml"
    path.write_text("[node.test\ndicomweb = 1\n", encoding="utf-8")
    dialog = make_dialog(qtbot, path)
    assert dialog.config_error.startswith(f"{path}: is not a readable TOML file")
    assert "\n" not in dialog.config_error and dialog.config_label.isVisible()
    pacs.config(path)  # the user fixes the file
    qtbot.mouseClick(dialog.reload_button, QtCore.Qt.MouseButton.LeftButton)
    assert dialog.config_error is None and not dialog.config_label.isVisible()
    assert dialog.node_combo.currentText() == "test" and dialog.search_button.isEnabled()


# -- retrieving ---------------------------------------------------------------------------------------
def choose(dialog: PacsDialog, *uids: str) -> None:
    dialog.select(list(uids))
    assert [m.study_uid for m in dialog.selected()] == list(uids)


@pytest.mark.parametrize("via", VIAS)
def test_retrieve_brings_the_stored_files_into_a_new_folder(qtbot, dialog, stored_studies, tmp_path, via):
    search(qtbot, dialog, via, patient_id="P-100")
    parent = tmp_path / "retrieved"
    dialog.parent_edit.setText(str(parent))
    choose(dialog, stored_studies[1])
    (folder,) = dialog.planned_folders()
    assert folder.parent == parent and folder.name.startswith("P-100_20250217_")
    assert folder.name in dialog.target_label.text()
    assert dialog.retrieve_button.isEnabled()
    with qtbot.waitSignal(dialog.retrieved, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(dialog.retrieve_button, QtCore.Qt.MouseButton.LeftButton)
    result = blocker.args[0]
    assert result.folders == (folder,) and result.instances == 4 and result.via == via
    files = sorted(folder.rglob("*.dcm"))
    assert by_sop(files) == by_sop(stored_studies.files[1])
    assert sorted(p.name for p in parent.iterdir()) == [folder.name]  # no temporary sibling left
    assert not dialog.isVisible() and dialog.last_error is None
    assert f"Retrieved from PACS node 'test' ({NAMES[via]})" in result.note()


def test_retrieve_several_studies_a_folder_each(qtbot, dialog, stored_studies, tmp_path):
    search(qtbot, dialog, patient_id="P-100")
    dialog.parent_edit.setText(str(tmp_path / "retrieved"))
    choose(dialog, *stored_studies[:2])
    assert dialog.retrieve_button.text() == "Retrieve 2 studies"
    with qtbot.waitSignal(dialog.retrieved, timeout=WAIT_MS) as blocker:
        assert dialog.retrieve()
    result = blocker.args[0]
    assert len(result.folders) == 2 and result.instances == 2 + 4
    for folder, files in zip(result.folders, stored_studies.files[:2], strict=True):
        assert by_sop(folder.rglob("*.dcm")) == by_sop(files)
    assert "2 studies, 6 instances" in result.note()


def cancelling_get(dialog: PacsDialog, after: int, wait_for_cancel: bool, seen: list[int]):
    """``get`` with a progress callback that, once ``after`` instances arrived, asks the running
    task to stop (as the Cancel button does) — or, with ``wait_for_cancel``, waits for the
    user to press Cancel."""
    real = pacs_dialog.get

    def get(node, study_uid, out_dir, **options):
        progress, should_cancel = options["progress"], options["should_cancel"]

        def report(stage, done, total):
            seen.append(done)
            progress(stage, done, total)
            if done >= after:
                if wait_for_cancel:
                    deadline = time.monotonic() + 20
                    while not should_cancel() and time.monotonic() < deadline:
                        time.sleep(0.01)
                else:
                    dialog.runner.task.cancel()  # a threading.Event: safe from the worker

        return real(node, study_uid, out_dir, **{**options, "progress": report})

    return get


@pytest.mark.parametrize("via", VIAS)
def test_cancel_after_the_first_instance_leaves_no_folder(qtbot, dialog, stored_studies, tmp_path, monkeypatch, via):
    search(qtbot, dialog, via, patient_id="P-100")
    parent = tmp_path / "retrieved"
    dialog.parent_edit.setText(str(parent))
    choose(dialog, stored_studies[1])
    seen: list[int] = []
    real = pacs_dialog.get
    monkeypatch.setattr(pacs_dialog, "get", cancelling_get(dialog, 1, False, seen))
    retrieved: list = []
    dialog.retrieved.connect(retrieved.append)
    with qtbot.waitSignal(dialog.runner.stopped, timeout=WAIT_MS) as blocker:
        assert dialog.retrieve()
    _, message, cancelled = blocker.args
    assert cancelled and message == "retrieval cancelled; nothing was kept"
    assert max(seen) == 1  # stopped after the first of 4 instances
    assert not parent.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["pacs.toml"]
    assert retrieved == [] and dialog.isVisible() and dialog.last_error is None
    assert dialog.message_label.text() == message
    assert dialog.runner.progress_dialog is None and dialog.retrieve_button.isEnabled()
    monkeypatch.setattr(pacs_dialog, "get", real)
    with qtbot.waitSignal(dialog.retrieved, timeout=WAIT_MS):  # the same study again, in full
        assert dialog.retrieve()
    assert len(list(parent.rglob("*.dcm"))) == 4


def test_the_progress_dialogs_cancel_button_stops_the_retrieval(qtbot, dialog, stored_studies, tmp_path, monkeypatch):
    search(qtbot, dialog, patient_id="P-100")
    parent = tmp_path / "retrieved"
    dialog.parent_edit.setText(str(parent))
    choose(dialog, *stored_studies[:2])  # the first study arrives whole, then the second is cancelled
    seen: list[int] = []
    monkeypatch.setattr(pacs_dialog, "get", cancelling_get(dialog, 3, True, seen))
    with qtbot.waitSignal(dialog.runner.stopped, timeout=WAIT_MS) as blocker:
        assert dialog.retrieve()
        qtbot.waitUntil(lambda: dialog.runner.progress_dialog is not None
                        and dialog.runner.progress_dialog.isVisible(), timeout=10_000)
        progress = dialog.runner.progress_dialog
        assert progress.windowTitle() == "Retrieve from PACS"
        # the worker waits after the second study's third instance (progress reaches the
        # dialog at most every 50 ms, so which count it shows last is not fixed)
        qtbot.waitUntil(lambda: progress.labelText().startswith("Study 2 of 2: retrieving instances… "),
                        timeout=10_000)
        assert not dialog.form.isEnabled() and not dialog.retrieve_button.isEnabled()
        assert not dialog.via_combo.isEnabled() and not dialog.node_combo.isEnabled()
        button = progress.findChild(QtWidgets.QPushButton)
        assert button.text() == "Cancel"
        qtbot.mouseClick(button, QtCore.Qt.MouseButton.LeftButton)
    assert blocker.args[1:] == ["retrieval cancelled; nothing was kept", True]
    assert not parent.exists()  # the first study's folder went too: nothing of a cancelled retrieval stays
    assert dialog.isVisible() and dialog.form.isEnabled()


def test_closing_the_dialog_while_it_retrieves_cancels_and_stays(qtbot, dialog, stored_studies, tmp_path, monkeypatch):
    search(qtbot, dialog, patient_id="P-100")
    dialog.parent_edit.setText(str(tmp_path / "retrieved"))
    choose(dialog, stored_studies[1])
    started = threading.Event()
    real = pacs_dialog.get

    def slow_get(node, study_uid, out_dir, **options):
        def report(stage, done, total):
            options["progress"](stage, done, total)
            started.set()
            while done and not options["should_cancel"]():
                time.sleep(0.01)
        return real(node, study_uid, out_dir, **{**options, "progress": report})

    monkeypatch.setattr(pacs_dialog, "get", slow_get)
    with qtbot.waitSignal(dialog.runner.stopped, timeout=WAIT_MS):
        assert dialog.retrieve()
        assert started.wait(10)
        dialog.reject()  # Esc or Close
    assert dialog.isVisible() and "retrieval cancelled" in dialog.message_label.text()
    assert not (tmp_path / "retrieved").exists()


def test_a_failed_retrieval_is_one_line_and_leaves_nothing(qtbot, dialog, stored_studies, tmp_path):
    search(qtbot, dialog, patient_id="P-100")
    blocker_file = tmp_path / "a-file"
    blocker_file.write_text("not a folder")
    dialog.parent_edit.setText(str(blocker_file))
    choose(dialog, stored_studies[1])
    assert not dialog.retrieve_button.isEnabled() and "is not a folder" in dialog.retrieve_button.toolTip()
    dialog.parent_edit.setText(str(blocker_file / "below"))  # a folder that cannot be made
    with qtbot.waitSignal(dialog.runner.stopped, timeout=WAIT_MS) as blocker:
        assert dialog.retrieve()
    _, message, cancelled = blocker.args
    assert not cancelled and str(blocker_file) in message and "\n" not in message
    assert dialog.last_error == message and dialog.isVisible()
    assert blocker_file.read_text() == "not a folder"


# -- the window ---------------------------------------------------------------------------------------
def test_the_file_menu_opens_the_dialog_and_the_import_browser_on_what_arrived(
        qtbot, pacs, stored_studies, settings, tmp_path, monkeypatch):
    from viewer.ui.main_window import MainWindow

    monkeypatch.setenv("TEST_PACS_PASSWORD", PASSWORD)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (tmp_path / "config" / "cell-therapy-viewer").mkdir(parents=True)
    pacs.config(tmp_path / "config" / "cell-therapy-viewer" / "pacs.toml")
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.show()
    file_menu = window.menuBar().actions()[0].menu()
    texts = [a.text() for a in file_menu.actions()]
    assert texts[texts.index("&Import DICOM exam…") + 1] == ACTION_TEXT
    (action,) = [a for a in window.actions() if a.text() == ACTION_TEXT]
    action.trigger()
    dialog = window.pacs_dialog
    assert isinstance(dialog, PacsDialog) and dialog.isVisible() and dialog.node_combo.currentText() == "test"
    search(qtbot, dialog, "dimse", patient_id="P-100")
    dialog.parent_edit.setText(str(tmp_path / "retrieved"))
    choose(dialog, stored_studies[1])
    (folder,) = dialog.planned_folders()
    with qtbot.waitSignal(dialog.retrieved, timeout=WAIT_MS):
        assert dialog.retrieve()
    qtbot.waitUntil(lambda: window.import_dialog is not None and window.import_dialog.plan is not None,
                    timeout=WAIT_MS)
    browser = window.import_dialog
    assert browser.paths == (folder,) and browser.isVisible() and not dialog.isVisible()
    assert browser.note_label.text().startswith("Retrieved from PACS node 'test' (DIMSE): 1 study, 4 instances")
    assert sorted(e.modality for e in browser.plan.exam.entries) == ["MR", "PT"]
    browser.reject()
    # the settings remember the node, protocol and folder; opening again keeps the results
    assert settings.value("pacs/via") == "dimse" and settings.value("pacs/retrieve_parent") == str(tmp_path / "retrieved")
    action.trigger()
    assert window.pacs_dialog is dialog and dialog.isVisible() and len(dialog.listed()) == 2
    assert dialog.current_via() == "dimse"
    dialog.reject()


def test_the_default_folder_is_under_home_and_a_chosen_one_is_remembered(qtbot, config, settings, stored_studies,
                                                                           tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    first = make_dialog(qtbot, config, settings)
    assert first.retrieve_parent() == tmp_path / "home" / "cell-therapy-viewer" / "retrieved"
    search(qtbot, first, "dimse", node="test", patient_id="P-200")
    choose(first, stored_studies[2])
    assert first.planned_folders()[0].parent == tmp_path / "home" / "cell-therapy-viewer" / "retrieved"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path / "elsewhere"))
    qtbot.mouseClick(first.browse_button, QtCore.Qt.MouseButton.LeftButton)  # "Choose…"
    with qtbot.waitSignal(first.retrieved, timeout=WAIT_MS) as blocker:
        assert first.retrieve()
    (folder,) = blocker.args[0].folders
    assert folder.parent == tmp_path / "elsewhere" and len(list(folder.rglob("*.dcm"))) == 2
    assert not (tmp_path / "home").exists()
    second = make_dialog(qtbot, config, settings)  # the next time: the same node, protocol and folder
    assert second.retrieve_parent() == tmp_path / "elsewhere"
    assert second.current_node().name == "test" and second.current_via() == "dimse"
