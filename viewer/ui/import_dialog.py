"""File ▸ Import DICOM exam: the series browser (PRODUCT.md §8 "Exam import").

The dialog shows what :mod:`viewer.core.importer` decides and collects the user's choices; it
decides nothing itself. Its steps are the command line's (``viewer import``):

1. scan the folder (:func:`scan_exam`) on a worker thread, with a progress dialog whose Cancel
   stops the scan;
2. list every series in a tree patient → study → series whose cells are :func:`plan_rows`'
   (the rows ``viewer import`` prints), with the role of each series editable;
3. every change (a role, day 0, the patient) becomes new :class:`ImportChoices`, planned again
   (:func:`plan_import`: cheap, no rescan); the "imported as" and "why" columns and the Import
   button follow the new plan (disabled, with the reason, while it cannot be written);
4. Import writes the study (:func:`write_study`: atomic, cancellable) on a worker thread and
   emits :attr:`ImportDialog.study_written` with the manifest; the window then opens it.

Workers get immutable requests (:class:`ScanRequest`, :class:`WriteRequest` holding a frozen
:class:`ImportPlan`), so nothing the user does while they run changes what they do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Protocol

from PySide6 import QtCore, QtGui, QtWidgets

from viewer.core.errors import Cancelled, ViewerError
from viewer.core.io.file_names import file_name_part
from viewer.core.importer import (
    IMPORT_ROLES,
    Exam,
    ImportPlan,
    SeriesEntry,
    check_output,
    default_study_id,
    plan_import,
    plan_rows,
    scan_exam,
    write_study,
)

#: Role choice meaning "no override: the role the tags propose".
AUTO = "auto"
#: Role choice leaving a series out of the study.
SKIP = "skip"
#: Tree columns; a series row's cells are its :class:`viewer.core.importer.PlanRow`'s (patient
#: and date are the rows above it).
COLUMNS = ("patient ▸ date ▸ series", "modality", "nucleus", "description", "images", "role", "imported as",
           "why")
COL_TREE, COL_MODALITY, COL_NUCLEUS, COL_DESCRIPTION, COL_IMAGES, COL_ROLE, COL_RESULT, COL_WHY = range(len(COLUMNS))
#: Item data of a series' role cell: its entry_id, its choice, the (text, choice) pairs offered.
ENTRY_ROLE = QtCore.Qt.ItemDataRole.UserRole
CHOICE_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1
CHOICES_ROLE = QtCore.Qt.ItemDataRole.UserRole + 2
#: Space added to each column's widest cell (pixels).
COLUMN_GAP_PX = 14
#: Progress signals from a worker are sent at most this often (seconds), plus each stage's last.
PROGRESS_INTERVAL_S = 0.05
STAGE_TEXT = {"scanning": "Reading DICOM headers", "checking": "Checking series", "copying": "Copying files"}


# -- what the user chose (no Qt) -------------------------------------------------------------------
@dataclass(frozen=True)
class ImportChoices:
    """The user's choices on a scanned exam; :meth:`plan` asks the core what they give.

    Attributes:
        exam: the scanned exam.
        overrides: entry_id → role, or None to leave the series out (absent: the proposal).
        day0: day 0 (None: the first date).
        patient: which patient, when the exam holds several (ID, or name without ID).
    """

    exam: Exam
    overrides: Mapping[str, str | None] = field(default_factory=lambda: MappingProxyType({}))
    day0: date | None = None
    patient: str | None = None

    def with_choice(self, entry_id: str, choice: str) -> ImportChoices:
        """``choice`` is :data:`AUTO`, :data:`SKIP` or one of :data:`IMPORT_ROLES`."""
        overrides = dict(self.overrides)
        if choice == AUTO:
            overrides.pop(entry_id, None)
        else:
            overrides[entry_id] = None if choice == SKIP else choice
        return replace(self, overrides=MappingProxyType(overrides))

    def choice(self, entry_id: str) -> str:
        if entry_id not in self.overrides:
            return AUTO
        return self.overrides[entry_id] or SKIP

    def plan(self) -> ImportPlan:
        return plan_import(self.exam, self.overrides, day0=self.day0, patient=self.patient)


def default_output_folder(exam: Exam, plan: ImportPlan) -> Path:
    """A new folder beside the scanned folder (never inside it): ``<patient ID>-study``, or
    ``<scanned folder>-study`` without an ID; ``-2``, ``-3``… when that name is taken."""
    scanned = Path(exam.sources[0]).absolute()
    folder = scanned if scanned.is_dir() else scanned.parent
    who = plan.patient.patient_id if plan.patient is not None else ""
    stem = f"{file_name_part(who or folder.name, 'exam')}-study"
    candidate, number = folder.parent / stem, 2
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        candidate, number = folder.parent / f"{stem}-{number}", number + 1
    return candidate


# -- work off the GUI thread --------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanRequest:
    paths: tuple[Path, ...]

    def run(self, progress, should_cancel) -> Exam:
        return scan_exam(self.paths, progress, should_cancel)


@dataclass(frozen=True)
class WriteRequest:
    plan: ImportPlan
    folder: Path
    study_id: str
    link: bool
    overwrite: bool

    def run(self, progress, should_cancel) -> Path:
        return write_study(self.plan, self.folder, study_id=self.study_id, link=self.link,
                           overwrite=self.overwrite, progress=progress, should_cancel=should_cancel)


class Request(Protocol):
    """What a :class:`Task` runs: an immutable request (a scan, a write, a PACS retrieval…)."""

    def run(self, progress: Callable[[str, int, int], None], should_cancel: Callable[[], bool]) -> Any: ...


class Task(QtCore.QObject):
    """One request run on its own thread: ``progress`` signals, then exactly one of
    ``done(result)``, ``cancelled(message)`` or ``failed(message)`` (the core's one line)."""

    progress = QtCore.Signal(str, int, int)
    done = QtCore.Signal(object)
    cancelled = QtCore.Signal(str)
    failed = QtCore.Signal(str)

    def __init__(self, request: Request) -> None:
        super().__init__()
        self.request = request
        self._cancel = threading.Event()
        self._last = (0.0, "")
        self._thread = threading.Thread(target=self._run, name=f"import {type(request).__name__}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def _report(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage != self._last[1] or done >= total or now - self._last[0] >= PROGRESS_INTERVAL_S:
            self._last = (now, stage)
            self._emit(self.progress, stage, done, total)

    def _run(self) -> None:
        try:
            result = self.request.run(self._report, self._cancel.is_set)
        except Cancelled as exc:  # a scan, a copy, a PACS retrieval… the user stopped
            self._emit(self.cancelled, str(exc))
        except ViewerError as exc:
            self._emit(self.failed, str(exc))
        except Exception as exc:  # noqa: BLE001 — a bug: still one line in the dialog
            self._emit(self.failed, f"unexpected {type(exc).__name__}: {exc}")
        else:
            self._emit(self.done, result)

    @staticmethod
    def _emit(signal, *args: Any) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the dialog went away meanwhile: nobody is waiting
            pass


class TaskRunner(QtCore.QObject):
    """Runs one :class:`Task` at a time behind a window-modal progress dialog with Cancel.

    Signals:
        finished(request, result)
        stopped(request, message, cancelled): cancelled, or failed with the core's one line.
    """

    finished = QtCore.Signal(object, object)
    stopped = QtCore.Signal(object, str, bool)

    def __init__(self, parent: QtWidgets.QWidget, window_title: str = "Import DICOM exam") -> None:
        super().__init__(parent)
        self._widget = parent
        self.window_title = window_title
        self.task: Task | None = None
        self.progress_dialog: QtWidgets.QProgressDialog | None = None

    @property
    def busy(self) -> bool:
        return self.task is not None

    def start(self, request: Request, title: str) -> None:
        assert self.task is None, "one task at a time"
        task = Task(request)
        progress = QtWidgets.QProgressDialog(title, "Cancel", 0, 0, self._widget)
        progress.setWindowTitle(self.window_title)
        # Not modal: a modal QProgressDialog runs the event loop inside setValue, and a task's
        # end (or a window's statistics) delivered there could delete the dialog under that
        # very setValue — it segfaulted in QProgressBar::maximum. The browser's own controls
        # are disabled while a task runs (ImportDialog._refresh_state), so nothing is lost.
        progress.setWindowModality(QtCore.Qt.WindowModality.NonModal)
        progress.setAutoClose(False)
        progress.setAutoReset(False)
        progress.setMinimumDuration(300)
        progress.setMinimumWidth(480)
        progress.canceled.connect(self.cancel)
        progress.setValue(0)
        # bound methods: Qt drops the connections if the runner goes away before the task ends
        task.progress.connect(self._on_progress)
        task.done.connect(self._on_done)
        task.cancelled.connect(self._on_cancelled)
        task.failed.connect(self._on_failed)
        self.task, self.progress_dialog = task, progress
        task.start()

    def cancel(self) -> None:
        """What the progress dialog's Cancel does: the request's ``should_cancel`` turns True."""
        if self.task is not None:
            self.task.cancel()
            if self.progress_dialog is not None:
                self.progress_dialog.setLabelText("Cancelling…")

    def _current(self) -> Task | None:
        """The task that sent the signal, if it is the running one."""
        return self.task if self.task is not None and self.sender() is self.task else None

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        task, progress = self._current(), self.progress_dialog
        if task is None or progress is None or task.cancel_requested():
            return
        progress.setLabelText(f"{STAGE_TEXT.get(stage, stage)}… {done} of {total}")
        progress.setMaximum(max(total, 1))
        progress.setValue(min(done, max(total, 1)))

    def _end(self) -> Task | None:
        task = self._current()
        if task is None:
            return None
        self.task = None
        if self.progress_dialog is not None:
            self.progress_dialog.canceled.disconnect()  # closing a progress dialog emits canceled
            self.progress_dialog.close()
            self.progress_dialog.deleteLater()
            self.progress_dialog = None
        return task

    def _on_done(self, result: object) -> None:
        task = self._end()
        if task is not None:
            self.finished.emit(task.request, result)

    def _on_cancelled(self, message: str) -> None:
        task = self._end()
        if task is not None:
            self.stopped.emit(task.request, message, True)

    def _on_failed(self, message: str) -> None:
        task = self._end()
        if task is not None:
            self.stopped.emit(task.request, message, False)


# -- the series tree ---------------------------------------------------------------------------------
class _RoleDelegate(QtWidgets.QStyledItemDelegate):
    """The role cell: its text with a drop-down mark; editing it is a combo box of
    :data:`AUTO` (the proposal), every import role and :data:`SKIP`."""

    def __init__(self, tree: SeriesTree) -> None:
        super().__init__(tree)
        self.tree = tree

    def paint(self, painter: QtGui.QPainter, option: QtWidgets.QStyleOptionViewItem, index: QtCore.QModelIndex) -> None:
        super().paint(painter, option, index)
        if index.data(CHOICES_ROLE) is None:
            return
        painter.save()
        painter.setPen(option.palette.color(QtGui.QPalette.ColorRole.Text))
        rect = option.rect.adjusted(0, 0, -6, 0)
        painter.drawText(rect, int(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter), "▾")
        painter.restore()

    def sizeHint(self, option: QtWidgets.QStyleOptionViewItem, index: QtCore.QModelIndex) -> QtCore.QSize:
        size = super().sizeHint(option, index)
        return QtCore.QSize(size.width() + 24, size.height())

    def createEditor(self, parent: QtWidgets.QWidget, option, index: QtCore.QModelIndex) -> QtWidgets.QWidget:
        combo = QtWidgets.QComboBox(parent)
        for text, value in index.data(CHOICES_ROLE) or ():
            combo.addItem(text, value)
        combo.currentIndexChanged.connect(lambda _i, c=combo: self._commit(c))
        return combo

    def setEditorData(self, editor: QtWidgets.QWidget, index: QtCore.QModelIndex) -> None:
        editor.blockSignals(True)
        editor.setCurrentIndex(max(0, editor.findData(index.data(CHOICE_ROLE))))
        editor.blockSignals(False)

    def setModelData(self, editor: QtWidgets.QWidget, model, index: QtCore.QModelIndex) -> None:
        choice = editor.currentData()
        if choice != index.data(CHOICE_ROLE):
            self.tree.choice_changed.emit(index.data(ENTRY_ROLE), choice)

    def updateEditorGeometry(self, editor: QtWidgets.QWidget, option, index: QtCore.QModelIndex) -> None:
        editor.setGeometry(option.rect)

    def _commit(self, combo: QtWidgets.QComboBox) -> None:
        self.commitData.emit(combo)
        self.closeEditor.emit(combo, QtWidgets.QAbstractItemDelegate.EndEditHint.NoHint)


class SeriesTree(QtWidgets.QTreeWidget):
    """Patient → study → series, the plan rows' cells, and the role of each series (a click on
    it opens a combo box).

    Signals:
        choice_changed(entry_id, choice): the user picked :data:`AUTO`, :data:`SKIP` or a role.
    """

    choice_changed = QtCore.Signal(str, str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setColumnCount(len(COLUMNS))
        self.setHeaderLabels(list(COLUMNS))
        self.setAlternatingRowColors(True)
        self.setUniformRowHeights(True)
        self.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.EditKeyPressed
                             | QtWidgets.QAbstractItemView.EditTrigger.SelectedClicked)
        self.setItemDelegateForColumn(COL_ROLE, _RoleDelegate(self))
        self.itemClicked.connect(self._on_clicked)
        self.header().setStretchLastSection(True)
        self._items: dict[str, QtWidgets.QTreeWidgetItem] = {}

    def clear(self) -> None:
        super().clear()
        self._items.clear()

    def show_exam(self, exam: Exam, plan: ImportPlan) -> None:
        """One item per patient, study and series; the decision columns come from :meth:`show_plan`."""
        self.clear()
        bold = self.font()
        bold.setBold(True)
        groups: dict[tuple, QtWidgets.QTreeWidgetItem] = {}

        def group(key: tuple, parent, text: str) -> QtWidgets.QTreeWidgetItem:
            if key not in groups:
                item = QtWidgets.QTreeWidgetItem(parent, [text])
                item.setFont(COL_TREE, bold)
                item.setFirstColumnSpanned(True)
                item.setFlags(QtCore.Qt.ItemFlag.ItemIsEnabled)
                groups[key] = item
            return groups[key]

        for entry, row in zip(exam.entries, plan_rows(plan), strict=True):
            patient = group((entry.patient.key,), self, row.patient or "(no patient ID or name)")
            study = group((entry.patient.key, entry.study_uid, row.date), patient, row.date or "(no date)")
            if entry.study_uid:
                study.setToolTip(COL_TREE, f"StudyInstanceUID {entry.study_uid}")
            number = f"series {row.series}" if row.series.isdigit() else (row.series or "series")
            item = QtWidgets.QTreeWidgetItem(study, [number, row.modality, row.nucleus, row.description, row.images])
            item.setFlags(QtCore.Qt.ItemFlag.ItemIsEnabled | QtCore.Qt.ItemFlag.ItemIsSelectable
                          | QtCore.Qt.ItemFlag.ItemIsEditable)
            item.setTextAlignment(COL_IMAGES, QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
            item.setToolTip(COL_DESCRIPTION, row.description)
            item.setData(COL_ROLE, ENTRY_ROLE, entry.entry_id)
            item.setData(COL_ROLE, CHOICES_ROLE, _choices(entry))
            item.setToolTip(COL_ROLE, f"proposed: {entry.role or SKIP} ({entry.guess.reason}); click to change")
            self._items[entry.entry_id] = item
            self.show_choice(entry.entry_id, AUTO)
        for key, study in groups.items():
            if len(key) == 3:
                study.setText(COL_TREE, f"{study.text(COL_TREE)}  ·  {study.childCount()} series")
        self.expandAll()

    def _on_clicked(self, item: QtWidgets.QTreeWidgetItem, column: int) -> None:
        if column == COL_ROLE and item.data(COL_ROLE, ENTRY_ROLE) is not None:
            self.editItem(item, COL_ROLE)
            editor = self.role_editor(item.data(COL_ROLE, ENTRY_ROLE))
            if editor is not None:
                editor.showPopup()

    def role_editor(self, entry_id: str) -> QtWidgets.QComboBox | None:
        """The open role combo box of a series, if any."""
        editor = self.indexWidget(self.indexFromItem(self._items[entry_id], COL_ROLE))
        return editor if isinstance(editor, QtWidgets.QComboBox) else None

    def show_choice(self, entry_id: str, choice: str) -> None:
        """Show ``choice`` in the series' role cell (bold when it is the user's)."""
        item = self._items[entry_id]
        text = next(t for t, value in item.data(COL_ROLE, CHOICES_ROLE) if value == choice)
        item.setText(COL_ROLE, text)
        item.setData(COL_ROLE, CHOICE_ROLE, choice)
        font = self.font()
        font.setBold(choice != AUTO)
        item.setFont(COL_ROLE, font)

    def show_plan(self, plan: ImportPlan) -> None:
        """The "imported as" and "why" cells of every series; skipped series greyed."""
        grey = self.palette().color(QtGui.QPalette.ColorGroup.Disabled, QtGui.QPalette.ColorRole.Text)
        bold = self.font()
        bold.setBold(True)
        for row, decision in zip(plan_rows(plan), plan.decisions, strict=True):
            item = self._items[row.entry_id]
            item.setText(COL_RESULT, row.role)
            item.setText(COL_WHY, row.why)
            item.setToolTip(COL_WHY, row.why)
            item.setFont(COL_RESULT, bold if decision.role else self.font())
            for column in range(len(COLUMNS)):
                if column != COL_ROLE:  # the role stays readable: it is what the user can change
                    item.setData(column, QtCore.Qt.ItemDataRole.ForegroundRole, None if decision.role else grey)
        self.fit_columns()

    def fit_columns(self) -> None:
        """Every column as wide as its widest cell plus a gap (descriptions at most 320 px;
        their tooltip shows them whole); "why" takes the rest."""
        header = self.header()
        for column in range(COL_WHY):
            self.resizeColumnToContents(column)
            header.resizeSection(column, header.sectionSize(column) + COLUMN_GAP_PX)
        header.resizeSection(COL_DESCRIPTION, min(header.sectionSize(COL_DESCRIPTION), 320))

    def choice(self, entry_id: str) -> str:
        return self._items[entry_id].data(COL_ROLE, CHOICE_ROLE)

    def item(self, entry_id: str) -> QtWidgets.QTreeWidgetItem:
        return self._items[entry_id]


def _choices(entry: SeriesEntry) -> tuple[tuple[str, str], ...]:
    """(text, value) of the role combo box of one series."""
    return ((f"auto: {entry.role or SKIP}", AUTO), *((role, role) for role in IMPORT_ROLES), (SKIP, SKIP))


# -- the dialog ----------------------------------------------------------------------------------------
class ImportDialog(QtWidgets.QDialog):
    """The series browser on ``paths``; call :meth:`scan` once it is shown.

    Signals:
        scanned(): a scan ended (listed, failed or cancelled).
        study_written(str): the study's manifest was written (the dialog has accepted).
    """

    scanned = QtCore.Signal()
    study_written = QtCore.Signal(str)

    def __init__(self, paths: Sequence[str | Path], note: str = "", parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import DICOM exam")
        self.paths = tuple(Path(p) for p in paths)
        self.choices: ImportChoices | None = None
        self.plan: ImportPlan | None = None
        self.manifest: Path | None = None
        self.last_error: str | None = None
        self.status = ""  # what happened while nothing is listed (scanning, cancelled, failed)
        self.note = ""  # how the last write ended, shown until the next choice
        self._folder_edited = False
        self.runner = TaskRunner(self)
        self.runner.finished.connect(self._on_finished)
        self.runner.stopped.connect(self._on_stopped)
        self._build(note)
        self.resize(1560, 780)

    def _build(self, note: str) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        source = QtWidgets.QHBoxLayout()
        self.source_label = QtWidgets.QLabel()
        self.source_label.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.source_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.rescan_button = QtWidgets.QPushButton("Scan another folder…")
        self.rescan_button.clicked.connect(self._choose_exam_folder)
        source.addWidget(self.source_label, 1)
        source.addWidget(self.rescan_button)
        layout.addLayout(source)
        self.note_label = QtWidgets.QLabel(note)
        self.note_label.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.note_label.setWordWrap(True)
        self.note_label.setVisible(bool(note))
        layout.addWidget(self.note_label)

        self.tree = SeriesTree()
        self.tree.choice_changed.connect(self.set_choice)
        layout.addWidget(self.tree, 1)
        self.summary_label = QtWidgets.QLabel()
        self.summary_label.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.summary_label.setWordWrap(True)
        layout.addWidget(self.summary_label)

        self.options = QtWidgets.QWidget()
        form = QtWidgets.QFormLayout(self.options)
        form.setContentsMargins(0, 0, 0, 0)
        self.patient_combo = QtWidgets.QComboBox()
        self.patient_combo.currentIndexChanged.connect(self._on_patient)
        self.patient_label = QtWidgets.QLabel("Patient")
        form.addRow(self.patient_label, self.patient_combo)
        self.day0_check = QtWidgets.QCheckBox("day 0 (transplantation) is")
        self.day0_edit = QtWidgets.QDateEdit()
        self.day0_edit.setCalendarPopup(True)
        self.day0_edit.setDisplayFormat("yyyy-MM-dd")
        self.day0_edit.setEnabled(False)
        self.day0_hint = QtWidgets.QLabel()
        self.day0_check.toggled.connect(self._on_day0)
        self.day0_edit.dateChanged.connect(self._on_day0)
        form.addRow("Day 0", _row(self.day0_check, self.day0_edit, (self.day0_hint, 1)))
        self.folder_edit = QtWidgets.QLineEdit()
        self.folder_edit.textEdited.connect(self._on_folder_edited)
        browse = QtWidgets.QPushButton("Browse…")
        browse.clicked.connect(self._browse_output)
        form.addRow("Study folder", _row((self.folder_edit, 1), browse))
        self.copy_radio = QtWidgets.QRadioButton("copy the files")
        self.link_radio = QtWidgets.QRadioButton("hard-link them (no extra space on the same disk; the study "
                                                 "and the exam then share the files)")
        self.copy_radio.setChecked(True)
        self.overwrite_check = QtWidgets.QCheckBox("replace the study folder if it is not empty")
        self.overwrite_check.toggled.connect(self._refresh_state)
        form.addRow("Files", _row(self.copy_radio, self.link_radio, (None, 1), self.overwrite_check))
        layout.addWidget(self.options)

        self.reason_label = QtWidgets.QLabel()
        self.reason_label.setTextFormat(QtCore.Qt.TextFormat.PlainText)  # core messages as they are
        self.reason_label.setWordWrap(True)
        self.reason_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        self.import_button = self.buttons.addButton("Import", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole)
        self.import_button.setDefault(True)
        self.buttons.accepted.connect(self.start_import)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(_row((self.reason_label, 1), self.buttons))
        self._show_source()
        self._show_patients(())
        self._refresh_state()

    def _show_source(self) -> None:
        where = ", ".join(str(p) for p in self.paths) or "(no folder)"
        self.source_label.setText(f"Exam: <b>{_escape(where)}</b>")

    # -- scanning ------------------------------------------------------------------------------------
    def scan(self, paths: Sequence[str | Path] | None = None) -> None:
        """Scan ``paths`` (default: the dialog's) on a worker thread and list what they hold."""
        if self.runner.busy:
            return
        if paths is not None:
            self.paths = tuple(Path(p) for p in paths)
            self._show_source()
        self.choices, self.plan = None, None
        self.tree.clear()
        self.summary_label.clear()
        self.status = "Scanning…"
        self.runner.start(ScanRequest(self.paths), "Scanning the exam…")
        self._refresh_state()

    def _choose_exam_folder(self) -> None:
        start = str(self.paths[0].parent) if self.paths else ""
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Scan a DICOM exam folder", start)
        if path:
            self.scan([path])

    def _on_finished(self, request: object, result: Any) -> None:
        if isinstance(request, ScanRequest):
            self.choices = ImportChoices(result)
            self.plan = self.choices.plan()
            self._show_patients(result.patients())
            self.tree.show_exam(result, self.plan)
            self.status = f"{len(result.entries)} series in {result.files_seen} files"
            self._replan()
            self._folder_edited = False
            self._set_default_output()
            self.scanned.emit()
        else:
            self.manifest = Path(result)
            self.accept()
            self.study_written.emit(str(result))

    def _on_stopped(self, request: object, message: str, cancelled: bool) -> None:
        if isinstance(request, ScanRequest):
            if not cancelled:
                self._show_error(message, title="Exam not scanned")
            self.status = message if cancelled else f"Not scanned: {message}"
            self._refresh_state()
            self.scanned.emit()
        else:
            if not cancelled:
                self._show_error(message, title="Study not written")
            self.note = message
            self._refresh_state()

    # -- choices → plan -----------------------------------------------------------------------------
    def set_choice(self, entry_id: str, choice: str) -> None:
        """:data:`AUTO` (the proposal), :data:`SKIP` or a role, for one series."""
        if self.choices is None:
            return
        self.choices = self.choices.with_choice(entry_id, choice)
        self.tree.show_choice(entry_id, choice)
        self._replan()

    def _show_patients(self, patients: Sequence) -> None:
        """The patient chooser, shown only when the exam holds several patients."""
        self.patient_combo.blockSignals(True)
        self.patient_combo.clear()
        self.patient_combo.addItem("choose the patient to import…", None)
        for patient in patients:
            self.patient_combo.addItem(patient.describe(), patient.patient_id or patient.name)
        self.patient_combo.blockSignals(False)
        self.patient_combo.setVisible(len(patients) > 1)
        self.patient_label.setVisible(len(patients) > 1)

    def _on_patient(self) -> None:
        if self.choices is not None:
            self.choices = replace(self.choices, patient=self.patient_combo.currentData())
            self._replan()
            self._set_default_output()

    def _on_day0(self) -> None:
        self.day0_edit.setEnabled(self.day0_check.isChecked())
        if self.choices is not None:
            day0 = self.day0_edit.date().toPython() if self.day0_check.isChecked() else None
            self.choices = replace(self.choices, day0=day0)
            self._replan()

    def _replan(self) -> None:
        assert self.choices is not None
        self.plan = self.choices.plan()
        self.note = ""
        self.tree.show_plan(self.plan)
        self._show_summary(self.plan)
        if not self.day0_check.isChecked() and self.plan.day0 is not None:
            self.day0_edit.blockSignals(True)
            self.day0_edit.setDate(self.plan.day0)
            self.day0_edit.blockSignals(False)
        self._refresh_state()

    def _show_summary(self, plan: ImportPlan) -> None:
        parts = []
        for tp in plan.timepoints:
            when = f" ({tp.date.isoformat()})" if tp.date else ""
            parts.append(f"<b>{_escape(tp.label)}</b>{when}: {', '.join(image.role for image in tp.images)}")
        self.summary_label.setText("The study: " + " &nbsp;·&nbsp; ".join(parts) if parts else "")
        if plan.day0 is None:
            self.day0_hint.setText("the series are not dated: timepoints have no day")
        elif plan.day0_given:
            self.day0_hint.setText("")
        else:
            self.day0_hint.setText(f"now the first date, {plan.day0.isoformat()}")

    # -- the output folder -----------------------------------------------------------------------------
    def _set_default_output(self) -> None:
        if self.plan is not None and not self._folder_edited:
            self.folder_edit.setText(str(default_output_folder(self.plan.exam, self.plan)))
        self._refresh_state()

    def _on_folder_edited(self) -> None:
        self._folder_edited = True
        self._refresh_state()

    def _browse_output(self) -> None:
        start = str(self.output_folder().parent) if self.folder_edit.text().strip() else ""
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Study folder (new or empty)", start)
        if path:
            self.folder_edit.setText(path)
            self._on_folder_edited()

    def output_folder(self) -> Path:
        return Path(self.folder_edit.text().strip()).expanduser().absolute()

    def _output_problem(self) -> str:
        """Why the study cannot be written into the chosen folder ('' when it can)."""
        if not self.folder_edit.text().strip():
            return "choose a study folder"
        folder, overwrite = self.output_folder(), self.overwrite_check.isChecked()
        if not overwrite and folder.is_dir() and any(folder.iterdir()):
            return f"{folder}: exists and is not empty; choose another folder or tick “replace the study folder”"
        try:
            check_output(folder, self.plan.exam.sources if self.plan is not None else self.paths, overwrite)
        except ViewerError as exc:
            return str(exc)
        return ""

    # -- the Import button, and why it is disabled --------------------------------------------------------
    def _refresh_state(self) -> None:
        busy = self.runner.busy
        self.options.setEnabled(self.plan is not None and not busy)
        self.tree.setEnabled(not busy)
        self.rescan_button.setEnabled(not busy)
        problem = "" if self.plan is None else (self.plan.problem or self._output_problem())
        ready = self.plan is not None and not problem and not busy
        self.import_button.setEnabled(ready)
        self.import_button.setToolTip(problem)
        if self.plan is None or busy:
            text, style = self.status, ""
        elif problem:
            text, style = f"Cannot import: {problem}", "color: #b00020;"
        else:
            images = sum(len(tp.images) for tp in self.plan.timepoints)
            note = f"{self.note}. " if self.note else ""
            text = f"{note}Ready: {len(self.plan.timepoints)} timepoint(s), {images} image(s) into {self.output_folder()}"
            style = ""
        self.reason_label.setText(text)
        self.reason_label.setStyleSheet(style)

    def import_blocked_reason(self) -> str:
        """Why Import is disabled ('' when it is enabled), as the line beside it says."""
        return "" if self.import_button.isEnabled() else self.reason_label.text()

    # -- writing ---------------------------------------------------------------------------------------
    def start_import(self) -> bool:
        """Write the study on a worker thread (False, with the reason shown, when it cannot)."""
        if self.plan is None or self.runner.busy:
            return False
        problem = self.plan.problem or self._output_problem()
        if problem:
            self._show_error(problem)
            return False
        folder = self.output_folder()
        request = WriteRequest(self.plan, folder, default_study_id(folder), self.link_radio.isChecked(),
                               self.overwrite_check.isChecked())
        self.status = f"Writing the study into {folder}…"
        self.runner.start(request, self.status)
        self._refresh_state()
        return True

    def _show_error(self, message: str, title: str = "Cannot import") -> None:
        """The core's one line in a message box; the dialog stays usable."""
        self.last_error = message
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Critical, title, message, parent=self)
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def reject(self) -> None:
        """Cancel, Esc or closing the window: a running scan stops; a running copy is cancelled
        (nothing is left behind) and the dialog stays to say so."""
        task = self.runner.task
        if task is not None:
            self.runner.cancel()
            if isinstance(task.request, WriteRequest):
                return
        super().reject()


def _row(*widgets) -> QtWidgets.QWidget:
    """Widgets side by side; ``(widget, stretch)`` pairs stretch, ``(None, n)`` is a spacer."""
    holder = QtWidgets.QWidget()
    layout = QtWidgets.QHBoxLayout(holder)
    layout.setContentsMargins(0, 0, 0, 0)
    for one in widgets:
        widget, stretch = one if isinstance(one, tuple) else (one, 0)
        if widget is None:
            layout.addStretch(stretch)
        else:
            layout.addWidget(widget, stretch)
    return holder


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


__all__ = [
    "AUTO", "COLUMNS", "SKIP", "ImportChoices", "ImportDialog", "Request", "ScanRequest", "SeriesTree", "Task",
    "TaskRunner", "WriteRequest", "default_output_folder",
]
