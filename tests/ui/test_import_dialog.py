"""File ▸ Import DICOM exam: the series browser (PRODUCT.md §8, "Exam import").

The exam is built here with the series writer: one patient, two study dates a week apart, a
localizer, two T1 candidates, ¹⁹F (ImagedNucleus "19F"), a PET with SUV tags, and the second
date on a "CD" with a DICOMDIR. The browser must show what ``viewer import`` prints
(:func:`plan_rows`), re-plan on every role change, write the study and hand it to the window.
"""

from __future__ import annotations

import threading
import time
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid
from PySide6 import QtCore, QtGui, QtWidgets

from viewer.core.importer import plan_import, plan_rows, scan_exam, write_study
from viewer.core.io.dicom_write import PetTags, write_dicom_series
from viewer.core.io.study import load_study
from viewer.core.volume import Volume
from viewer.ui import import_dialog
from viewer.ui.import_dialog import (
    AUTO,
    CHOICES_ROLE,
    COL_ROLE,
    COLUMNS,
    SKIP,
    ImportDialog,
)

PATIENT_ID, PATIENT_NAME = "MRN-0042", "Doe^Jane"
DAY_A, DAY_B = "20260302", "20260309"
SCAN_TIMEOUT_MS = 30_000


# -- the exam -------------------------------------------------------------------------------------
def _volume(shape, spacing, seed=0, scale=100.0) -> Volume:
    rng = np.random.default_rng(seed)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-8.0, -8.0, -6.0)
    return Volume.from_array((rng.random(shape) * scale + 1.0).astype(np.float32), affine)


def _series(folder: Path, vol: Volume, study: dict, number: int, description: str, pet=None, **tags) -> list[Path]:
    files = write_dicom_series(vol, folder, modality="PT" if pet else "MR", series_description=description, pet=pet,
                               patient_name=PATIENT_NAME, patient_id=PATIENT_ID, study_date=study["date"],
                               shuffle_seed=number)
    for path in files:  # one study per date, as a scanner writes it
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.StudyID, ds.SeriesNumber = study["uid"], study.get("id", "1"), number
        for keyword, value in tags.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
    return files


def _pet_tags(day: str) -> PetTags:
    when = datetime.strptime(day, "%Y%m%d")
    return PetTags(weight_kg=70.0, dose_bq=3.7e8, injection=when.replace(hour=10), series=when.replace(hour=11))


def build_exam(root: Path) -> Path:
    """exam/A/<series>/… for the first date, exam/CD/DICOMDIR for the second."""
    exam = root / "exam"
    a = {"date": DAY_A, "uid": generate_uid(), "id": "1"}
    b = {"date": DAY_B, "uid": generate_uid(), "id": "2"}
    _series(exam / "A" / "scout", _volume((16, 16, 3), (1, 1, 5)), a, 1, "localizer",
            ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    _series(exam / "A" / "mprage", _volume((16, 16, 12), (1, 1, 1)), a, 2, "T1 MPRAGE")
    _series(exam / "A" / "t1se", _volume((16, 16, 4), (1, 1, 3)), a, 3, "T1 SE")
    _series(exam / "A" / "f19", _volume((8, 8, 6), (2, 2, 2)), a, 4, "CSI fluorine", ImagedNucleus="19F")
    _series(exam / "A" / "pet", _volume((8, 8, 6), (2, 2, 2), scale=5.0), a, 5, "PET AC", pet=_pet_tags(DAY_A))
    work = root / "work"
    day_b = [*_series(work / "mprage", _volume((16, 16, 12), (1, 1, 1), seed=1), b, 2, "T1 MPRAGE"),
             *_series(work / "f19", _volume((8, 8, 6), (2, 2, 2), seed=1), b, 4, "CSI fluorine", ImagedNucleus="19F")]
    fileset = FileSet()
    for path in day_b:
        fileset.add(path)
    fileset.write(exam / "CD")
    return exam


@pytest.fixture(scope="module")
def exam(tmp_path_factory) -> Path:
    return build_exam(tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def expected(exam):
    """What ``viewer import`` decides and prints for the exam, by series description and date."""
    rows = plan_rows(plan_import(scan_exam([exam])))
    return {(row.description, row.date): row for row in rows}


def scanned_dialog(qtbot, paths, note: str = "") -> ImportDialog:
    dialog = ImportDialog(paths, note)
    qtbot.addWidget(dialog)
    dialog.show()
    with qtbot.waitSignal(dialog.scanned, timeout=SCAN_TIMEOUT_MS):
        dialog.scan()
    return dialog


def entry_id(dialog: ImportDialog, description: str, day: str) -> str:
    wanted = date.fromisoformat(f"{day[:4]}-{day[4:6]}-{day[6:]}")
    (found,) = [e.entry_id for e in dialog.plan.exam.entries if e.description == description and e.date == wanted]
    return found


def choose(qtbot, dialog: ImportDialog, entry: str, choice: str) -> None:
    """What the user does: click the series' role cell, then an item of the list it opens."""
    tree = dialog.tree
    item = tree.item(entry)
    tree.scrollToItem(item)
    cell = tree.visualRect(tree.indexFromItem(item, COL_ROLE))
    qtbot.mouseClick(tree.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=cell.center())
    combo = tree.role_editor(entry)
    assert combo is not None and combo.view().isVisible()  # the list is open at once
    index = combo.findData(choice)
    assert index >= 0, choice
    view = combo.view()
    qtbot.wait(QtWidgets.QApplication.doubleClickInterval() + 50)  # a popup ignores a release right after opening
    qtbot.mouseClick(view.viewport(), QtCore.Qt.MouseButton.LeftButton,
                     pos=view.visualRect(combo.model().index(index, 0)).center())
    qtbot.waitUntil(lambda: tree.role_editor(entry) is None, timeout=5_000)
    assert tree.choice(entry) == choice


def cells(dialog: ImportDialog, entry: str) -> dict[str, str]:
    item = dialog.tree.item(entry)
    return {name: item.text(column) for column, name in enumerate(COLUMNS)}


# -- the browser ------------------------------------------------------------------------------------
def test_the_tree_shows_patient_studies_and_series_as_the_command_line_prints_them(qtbot, exam, expected):
    dialog = scanned_dialog(qtbot, [exam])
    tree = dialog.tree
    assert tree.topLevelItemCount() == 1
    patient = tree.topLevelItem(0)
    assert patient.text(0) == f"{PATIENT_ID} ({PATIENT_NAME})"
    studies = [patient.child(i) for i in range(patient.childCount())]
    assert [s.text(0) for s in studies] == ["2026-03-02  ·  5 series", "2026-03-09  ·  2 series"]
    assert all(s.isExpanded() for s in studies) and patient.isExpanded()

    rows = expected
    assert len(dialog.plan.exam.entries) == len(rows) == 7
    for study in studies:
        for i in range(study.childCount()):
            item = study.child(i)
            description = item.text(COLUMNS.index("description"))
            row = rows[(description, study.text(0).split()[0])]
            assert item.text(0) == f"series {row.series}"
            assert [item.text(c) for c in range(1, 5)] == [row.modality, row.nucleus, row.description, row.images]
            assert item.text(COLUMNS.index("imported as")) == row.role
            assert item.text(COLUMNS.index("why")) == row.why

    mprage, t1se = entry_id(dialog, "T1 MPRAGE", DAY_A), entry_id(dialog, "T1 SE", DAY_A)
    assert cells(dialog, mprage)["imported as"] == "anatomical → day 0"
    assert cells(dialog, t1se)["imported as"] == "skipped"
    assert cells(dialog, t1se)["why"].startswith("second T1 candidate")
    assert cells(dialog, entry_id(dialog, "localizer", DAY_A))["why"].startswith("localizer")
    assert cells(dialog, entry_id(dialog, "CSI fluorine", DAY_B))["imported as"] == "fluorine → day 7"
    assert cells(dialog, entry_id(dialog, "PET AC", DAY_A))["imported as"] == "pet → day 0"
    assert cells(dialog, mprage)["role"] == "auto: anatomical"
    assert cells(dialog, entry_id(dialog, "localizer", DAY_A))["role"] == "auto: skip"
    offered = [value for _, value in dialog.tree.item(mprage).data(COL_ROLE, CHOICES_ROLE)]
    assert offered == [AUTO, "anatomical", "fluorine", "spio", "gd", "pet", "sodium", "adc", "tmax", SKIP]

    # the default study folder: new, beside the exam (never inside it), named after the patient ID
    assert dialog.output_folder() == exam.parent / f"{PATIENT_ID}-study"
    assert dialog.import_button.isEnabled(), dialog.import_blocked_reason()
    assert "2 timepoint(s), 5 image(s)" in dialog.reason_label.text()
    assert "day 0" in dialog.summary_label.text() and "day 7" in dialog.summary_label.text()
    assert not dialog.patient_combo.isVisible()  # one patient: nothing to choose


def test_role_changes_replan_and_import_writes_the_study(qtbot, exam, tmp_path):
    dialog = scanned_dialog(qtbot, [exam])
    mprage, t1se = entry_id(dialog, "T1 MPRAGE", DAY_A), entry_id(dialog, "T1 SE", DAY_A)
    fluorine_b = entry_id(dialog, "CSI fluorine", DAY_B)
    choose(qtbot, dialog, mprage, SKIP)
    assert cells(dialog, mprage)["why"] == "skipped by the user"
    assert cells(dialog, t1se)["imported as"] == "anatomical → day 0"  # the other T1 takes its place
    assert cells(dialog, mprage)["role"] == "skip"
    assert dialog.tree.item(mprage).font(COL_ROLE).bold()  # the user's choices stand out
    choose(qtbot, dialog, fluorine_b, SKIP)
    assert cells(dialog, fluorine_b)["imported as"] == "skipped"
    assert dialog.choices.overrides == {mprage: None, fluorine_b: None}

    dialog.day0_check.setChecked(True)
    dialog.day0_edit.setDate(QtCore.QDate(2026, 2, 23))
    assert cells(dialog, t1se)["imported as"] == "anatomical → day 7"
    assert cells(dialog, entry_id(dialog, "T1 MPRAGE", DAY_B))["imported as"] == "anatomical → day 14"

    target = tmp_path / "imported"
    dialog.folder_edit.setText(str(target))
    assert dialog.import_button.isEnabled(), dialog.import_blocked_reason()
    with qtbot.waitSignal(dialog.study_written, timeout=SCAN_TIMEOUT_MS) as written:
        qtbot.mouseClick(dialog.import_button, QtCore.Qt.MouseButton.LeftButton)
    assert Path(written.args[0]) == target / "study.toml" == dialog.manifest
    assert dialog.result() == QtWidgets.QDialog.DialogCode.Accepted
    study = load_study(target / "study.toml")
    assert study.id == "imported"
    assert study.info["patient_id"] == PATIENT_ID
    assert [(tp.label, tp.day) for tp in study.timepoints] == [("day 7", 7), ("day 14", 14)]
    first, second = study.timepoints
    assert set(first.images) == {"anatomical", "fluorine", "pet"}
    assert len(list(first.images["anatomical"].iterdir())) == 4  # T1 SE's 4 slices, not MPRAGE's 12
    assert set(second.images) == {"anatomical"}


def test_forcing_a_series_and_an_impossible_role(qtbot, exam):
    dialog = scanned_dialog(qtbot, [exam])
    mprage, t1se = entry_id(dialog, "T1 MPRAGE", DAY_A), entry_id(dialog, "T1 SE", DAY_A)
    pet = entry_id(dialog, "PET AC", DAY_A)
    choose(qtbot, dialog, t1se, "anatomical")  # the user's pick beats the preference rules
    assert cells(dialog, t1se)["imported as"] == "anatomical → day 0"
    assert cells(dialog, t1se)["why"] == "chosen by the user"
    assert "rule: chosen by the user" in cells(dialog, mprage)["why"]

    choose(qtbot, dialog, pet, "fluorine")
    assert not dialog.import_button.isEnabled()
    reason = dialog.import_blocked_reason()
    assert reason.startswith("Cannot import: ") and "only a PT series can be the PET image" in reason
    assert reason == f"Cannot import: {dialog.plan.problem}"  # the core's line, as it is
    choose(qtbot, dialog, pet, AUTO)  # dropping the override restores the proposal
    assert dialog.import_button.isEnabled()
    assert cells(dialog, pet)["imported as"] == "pet → day 0"
    assert pet not in dialog.choices.overrides


def test_the_study_folder_is_checked_before_import(qtbot, exam, tmp_path):
    dialog = scanned_dialog(qtbot, [exam])
    dialog.folder_edit.setText(str(exam / "study"))
    dialog._on_folder_edited()
    assert not dialog.import_button.isEnabled()
    assert "inside the scanned folder" in dialog.import_blocked_reason()
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    dialog.folder_edit.setText(str(full))
    dialog._on_folder_edited()
    assert "exists and is not empty" in dialog.import_blocked_reason()
    dialog.overwrite_check.setChecked(True)
    assert dialog.import_button.isEnabled(), dialog.import_blocked_reason()


def _wait_for_cancel(should_cancel, timeout_s: float = 20.0) -> None:
    end = time.monotonic() + timeout_s
    while not should_cancel() and time.monotonic() < end:
        time.sleep(0.01)


def _click_cancel(qtbot, dialog: ImportDialog) -> None:
    qtbot.waitUntil(lambda: dialog.runner.progress_dialog is not None and dialog.runner.progress_dialog.isVisible(),
                    timeout=10_000)
    button = dialog.runner.progress_dialog.findChild(QtWidgets.QPushButton)
    assert button.text() == "Cancel"
    qtbot.mouseClick(button, QtCore.Qt.MouseButton.LeftButton)


def test_cancel_stops_the_scan(qtbot, exam, monkeypatch):
    started = threading.Event()

    def slow_scan(paths, progress=None, should_cancel=None):
        started.set()
        progress("scanning", 1, 1000)
        _wait_for_cancel(should_cancel)  # a big exam: still reading when the user cancels
        return scan_exam(paths, progress, should_cancel)  # raises at its first file

    monkeypatch.setattr(import_dialog, "scan_exam", slow_scan)
    dialog = ImportDialog([exam])
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.scan()
    assert started.wait(10)
    assert not dialog.import_button.isEnabled() and not dialog.rescan_button.isEnabled()
    with qtbot.waitSignal(dialog.scanned, timeout=SCAN_TIMEOUT_MS):
        _click_cancel(qtbot, dialog)
    assert dialog.status == "scan cancelled"
    assert dialog.plan is None and dialog.tree.topLevelItemCount() == 0
    assert not dialog.import_button.isEnabled() and dialog.last_error is None
    assert dialog.isVisible() and dialog.runner.progress_dialog is None

    monkeypatch.undo()  # the dialog stays usable: scanning again lists the exam
    with qtbot.waitSignal(dialog.scanned, timeout=SCAN_TIMEOUT_MS):
        dialog.scan()
    assert len(dialog.plan.exam.entries) == 7 and dialog.import_button.isEnabled()


def test_cancel_stops_the_copy_and_leaves_nothing(qtbot, exam, tmp_path, monkeypatch):
    def slow_write(plan, folder, **options):
        should_cancel = options["should_cancel"]
        options["progress"]("copying", 1, 100)
        _wait_for_cancel(should_cancel)
        return write_study(plan, folder, **options)  # raises ImportCancelled, removes its temporary folder

    dialog = scanned_dialog(qtbot, [exam])
    monkeypatch.setattr(import_dialog, "write_study", slow_write)
    target = tmp_path / "never"
    dialog.folder_edit.setText(str(target))
    assert dialog.start_import()
    with qtbot.waitSignal(dialog.runner.stopped, timeout=SCAN_TIMEOUT_MS):
        _click_cancel(qtbot, dialog)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    assert dialog.isVisible() and dialog.manifest is None and dialog.last_error is None
    assert "import cancelled" in dialog.reason_label.text()
    assert dialog.import_button.isEnabled()


def test_an_exam_with_nothing_to_import_says_why(qtbot, tmp_path):
    study = {"date": DAY_A, "uid": generate_uid()}
    _series(tmp_path / "exam" / "scout", _volume((16, 16, 3), (1, 1, 5)), study, 1, "localizer",
            ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    _series(tmp_path / "exam" / "p31", _volume((8, 8, 6), (2, 2, 2)), study, 2, "CSI phosphorus", ImagedNucleus="31P")
    dialog = scanned_dialog(qtbot, [tmp_path / "exam"])
    assert dialog.tree.topLevelItemCount() == 1
    whys = [cells(dialog, e.entry_id)["why"] for e in dialog.plan.exam.entries]
    assert all(cells(dialog, e.entry_id)["imported as"] == "skipped" for e in dialog.plan.exam.entries)
    assert whys[0].startswith("localizer") and "31P" in whys[1]
    assert not dialog.import_button.isEnabled()
    assert "nothing to import" in dialog.import_blocked_reason()
    assert not dialog.start_import() and "nothing to import" in dialog.last_error


def test_a_scan_error_is_one_line_and_the_dialog_stays(qtbot, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not an image")
    dialog = scanned_dialog(qtbot, [tmp_path / "notes"])
    assert "no DICOM files nor NIfTI images found" in dialog.last_error
    assert "\n" not in dialog.last_error
    boxes = [w for w in dialog.findChildren(QtWidgets.QMessageBox) if w.isVisible()]
    assert len(boxes) == 1 and boxes[0].text() == dialog.last_error
    assert dialog.isVisible() and not dialog.import_button.isEnabled()
    assert dialog.rescan_button.isEnabled()


def test_an_exam_of_two_patients_asks_which_one(qtbot, tmp_path):
    study = {"date": DAY_A, "uid": generate_uid()}
    _series(tmp_path / "exam" / "jane", _volume((16, 16, 12), (1, 1, 1)), study, 2, "T1 MPRAGE")
    other = _series(tmp_path / "exam" / "john", _volume((16, 16, 12), (1, 1, 1)), {"date": DAY_B, "uid": generate_uid()},
                    2, "T1 MPRAGE")
    for path in other:
        ds = pydicom.dcmread(path)
        ds.PatientID, ds.PatientName = "MRN-0099", "Roe^John"
        ds.save_as(path)
    dialog = scanned_dialog(qtbot, [tmp_path / "exam"])
    assert dialog.tree.topLevelItemCount() == 2
    assert dialog.patient_combo.isVisible()
    assert not dialog.import_button.isEnabled() and "2 patients" in dialog.import_blocked_reason()
    dialog.patient_combo.setCurrentIndex(dialog.patient_combo.findData("MRN-0099"))
    assert dialog.import_button.isEnabled(), dialog.import_blocked_reason()
    jane = entry_id(dialog, "T1 MPRAGE", DAY_A)
    assert cells(dialog, jane)["why"].startswith("other patient")
    assert dialog.output_folder().name == "MRN-0099-study"


# -- the window ------------------------------------------------------------------------------------
def _action(window, text: str) -> QtGui.QAction:
    (action,) = [a for a in window.actions() if a.text() == text]
    return action


def test_file_menu_import_writes_and_opens_the_study(window, qtbot, exam, tmp_path, monkeypatch):
    action = _action(window, "&Import DICOM exam…")
    assert action.shortcut() == QtGui.QKeySequence("Ctrl+I")
    assert [a for a in window.actions() if a.shortcut() == QtGui.QKeySequence("Ctrl+I")] == [action]
    monkeypatch.setattr(QtWidgets.QFileDialog, "getExistingDirectory", lambda *a, **k: str(exam))
    action.trigger()
    dialog = window.import_dialog
    assert dialog is not None and dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.plan is not None, timeout=SCAN_TIMEOUT_MS)
    dialog.folder_edit.setText(str(tmp_path / "from-window"))
    dialog.link_radio.setChecked(True)
    drawn: set[str] = set()
    window.frame_drawn.connect(drawn.add)
    assert dialog.start_import()
    manifest = tmp_path / "from-window" / "study.toml"
    qtbot.waitUntil(lambda: window.scene.study.manifest is not None
                    and window.scene.study.manifest.resolve() == manifest.resolve(), timeout=SCAN_TIMEOUT_MS)
    assert not dialog.isVisible()
    assert [tp.label for tp in window.scene.study.timepoints] == ["day 0", "day 7"]
    qtbot.waitUntil(lambda: len(drawn) == 3, timeout=20_000)
    assert str(manifest.resolve()) in window.recent_studies()
    linked = sorted((manifest.parent / "day-0" / "pet").iterdir())
    assert linked and all(path.stat().st_nlink == 2 for path in linked)  # hard links into the exam


@pytest.mark.parametrize("where", ["A", "CD/DICOMDIR"])
def test_opening_a_folder_of_several_series_offers_the_browser(window, qtbot, exam, where):
    scene, title = window.scene, window.windowTitle()
    assert window.open(exam / where)
    dialog = window.import_dialog
    assert dialog is not None and dialog.isVisible()
    assert "image series" in dialog.note_label.text() and dialog.note_label.isVisible()
    qtbot.waitUntil(lambda: dialog.plan is not None, timeout=SCAN_TIMEOUT_MS)
    assert window.scene is scene and window.windowTitle() == title  # nothing half-built
    assert window.last_error is None
    n_series = 5 if where == "A" else 2
    assert len(dialog.plan.exam.entries) == n_series
    dialog.reject()
    assert window.scene is scene


def test_a_folder_of_one_series_opens_directly_pet_included(window, qtbot, exam):
    drawn: set[str] = set()
    window.frame_drawn.connect(drawn.add)
    assert window.open(exam / "A" / "pet")
    assert window.import_dialog is None
    assert window.scene.study.timepoints[0].label == "pet"
    qtbot.waitUntil(lambda: len(drawn) == 3, timeout=20_000)
