"""File ▸ Query and retrieve from PACS (PRODUCT.md §8 "PACS"): the window's ``viewer pacs find``
and ``viewer pacs get``, then the series browser on what arrived.

The dialog decides nothing the command line does not: the nodes come from ``pacs.toml``
(:func:`viewer.core.pacs.nodes.load_nodes`), a search is :func:`viewer.core.pacs.operations.find`
with a :class:`StudyQuery`, a retrieval is :func:`viewer.core.pacs.retrieve.get` into a new
folder per study. Its steps:

1. choose a node (and the protocol, when the node speaks both); a missing or broken
   ``pacs.toml`` is shown as its one-line error with where the file goes, and Reload reads it
   again;
2. fill the form (patient ID, patient name with DICOM wildcards, a study date or a range,
   modality) and Search: the query runs on a worker thread, so an unreachable node costs the
   window nothing and ends as its one line under the results;
3. choose one or several studies (a patient's timepoints are separate studies) and Retrieve:
   each goes into a new folder under the chosen parent, behind a progress dialog with Cancel
   (:class:`viewer.ui.import_dialog.TaskRunner`); a failure or a cancel leaves nothing on disk;
4. :attr:`PacsDialog.retrieved` hands the folders to the window, which opens the series
   browser on them (:meth:`viewer.ui.window_pacs.PacsRetrieving.open_pacs_dialog`).

What is not Qt (reading the form, naming the folders, the two requests) is plain functions and
frozen dataclasses, so it is tested without a window.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from viewer.core.errors import ViewerError
from viewer.core.io.file_names import file_name_part
from viewer.core.pacs import operations
from viewer.core.pacs.nodes import Node, default_config_path, load_nodes
from viewer.core.pacs.query import StudyMatch, StudyQuery
from viewer.core.pacs.retrieve import get
from viewer.ui.import_dialog import Task, TaskRunner

#: Results columns; the Study Instance UID is in every cell's tooltip (and the row's data).
COLUMNS = ("study date", "patient ID", "patient name", "modalities", "series", "description")
COL_DATE, COL_PATIENT_ID, COL_NAME, COL_MODALITIES, COL_SERIES, COL_DESCRIPTION = range(len(COLUMNS))
#: Item data of a row's first cell: the study's UID.
UID_ROLE = QtCore.Qt.ItemDataRole.UserRole
#: The modalities offered in the form's (editable) list; empty means any.
MODALITIES = ("", "MR", "PT", "CT", "NM", "US", "SEG", "SR", "OT")
PROTOCOL_TEXT = {"dicomweb": "DICOMweb (QIDO-RS, WADO-RS)", "dimse": "DIMSE (C-FIND, C-GET)"}
PROTOCOL_NAME = {"dicomweb": "DICOMweb", "dimse": "DIMSE"}
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DICOM_DATE = re.compile(r"^\d{8}$")
_MODALITY = re.compile(r"^[A-Z0-9_]{1,16}$")
#: Where the settings keep the last node, protocol and retrieval folder.
SETTINGS_NODE, SETTINGS_VIA, SETTINGS_PARENT = "pacs/node", "pacs/via", "pacs/retrieve_parent"
CONFIG_EXAMPLE = '[node.hospital]\ndicomweb = "https://pacs.example.org/dicom-web"\n' \
                 'host = "pacs.example.org"\nport = 104\ncalled_aet = "PACS"'


# -- the form (no Qt) ---------------------------------------------------------------------------------
def dicom_date(text: str, label: str) -> str | None:
    """``YYYYMMDD`` from what the user typed (``YYYYMMDD`` or ``YYYY-MM-DD``); None when empty.

    Raises:
        ViewerError: not a date, naming the field (``label``) — the core's message would name
            the command line's ``--date``.
    """
    typed = text.strip()
    if not typed:
        return None
    value = typed.replace("-", "") if _ISO_DATE.match(typed) else typed
    if not _DICOM_DATE.match(value):
        raise ViewerError(f"{label}: {typed!r} is not a date; write YYYYMMDD or YYYY-MM-DD")
    try:
        datetime.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise ViewerError(f"{label}: {typed!r} is not a calendar date") from None
    return value


def date_range(date_from: str, date_to: str) -> str | None:
    """The query's StudyDate from the two fields: ``YYYYMMDD`` (both the same),
    ``YYYYMMDD-YYYYMMDD``, ``YYYYMMDD-`` (from only), ``-YYYYMMDD`` (to only), None (neither)."""
    start, end = dicom_date(date_from, "study date from"), dicom_date(date_to, "study date to")
    if start and end and start > end:
        raise ViewerError(f"study date: the range ends ({display_date(end)}) before it starts ({display_date(start)})")
    if start and end:
        return start if start == end else f"{start}-{end}"
    if start or end:
        return f"{start or ''}-{end or ''}"
    return None


def _field(text: str, label: str) -> str | None:
    value = text.strip()
    if not value:
        return None
    if "\\" in value or not value.isprintable():
        raise ViewerError(f"{label} must be printable text without backslashes")
    return value


def build_query(patient_id: str = "", patient_name: str = "", date_from: str = "", date_to: str = "",
                modality: str = "") -> StudyQuery:
    """The :class:`StudyQuery` of the form's fields (empty fields match anything).

    Raises:
        ViewerError: one line naming the field that is wrong.
    """
    kind = modality.strip().upper()
    if kind and not _MODALITY.match(kind):
        raise ViewerError(f"modality must be a DICOM modality such as MR, PT or CT, got {modality.strip()!r}")
    return StudyQuery(_field(patient_id, "patient ID"), _field(patient_name, "patient name"),
                      date_range(date_from, date_to), kind or None)


def display_date(value: str) -> str:
    """``YYYY-MM-DD`` for a DICOM date (anything else as it is)."""
    return f"{value[:4]}-{value[4:6]}-{value[6:]}" if _DICOM_DATE.match(value) else value


def display_name(value: str) -> str:
    """A DICOM person name for reading: ``Doe^Jane^^Dr`` → ``Doe, Jane Dr``."""
    family, *rest = value.split("^")
    given = " ".join(part for part in rest if part)
    return f"{family}, {given}" if family and given else family or given


def default_retrieve_parent() -> Path:
    """Where retrieved studies go unless the user chose another folder."""
    return Path.home() / "cell-therapy-viewer" / "retrieved"


def retrieve_folder_name(match: StudyMatch) -> str:
    """``<patient ID>_<study date>_<last 8 digits of the study UID>``: readable in a file
    browser, and distinct for two studies of one patient on one day."""
    who = file_name_part(match.patient_id or display_name(match.patient_name), "patient", keep="-_")
    tail = match.study_uid.replace(".", "")[-8:] or "study"
    return f"{who}_{match.study_date or 'undated'}_{tail}"


def new_retrieve_folders(parent: Path, matches: Sequence[StudyMatch]) -> list[Path]:
    """A new folder under ``parent`` for each study: its :func:`retrieve_folder_name`, with
    ``-2``, ``-3``… when that exists (a study retrieved before) or is taken by another study."""
    folders: list[Path] = []
    for match in matches:
        stem = retrieve_folder_name(match)
        candidate, number = parent / stem, 2
        while candidate.exists() or candidate in folders:
            candidate, number = parent / f"{stem}-{number}", number + 1
        folders.append(candidate)
    return folders


# -- work off the GUI thread ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchRequest:
    """One study search (run by a :class:`Task`; nothing to cancel: it is one request)."""

    node: Node
    query: StudyQuery
    via: str

    def run(self, progress: Callable[[str, int, int], None], should_cancel: Callable[[], bool]) -> list[StudyMatch]:
        return operations.find(self.node, self.query, self.via)


@dataclass(frozen=True)
class Retrieved:
    """What a retrieval brought: a folder per study, ready for the series browser."""

    node: str
    via: str
    folders: tuple[Path, ...]
    instances: int

    def note(self) -> str:
        """The series browser's note on where its folders came from."""
        studies = "1 study" if len(self.folders) == 1 else f"{len(self.folders)} studies"
        where = self.folders[0] if len(self.folders) == 1 else self.folders[0].parent
        return (f"Retrieved from PACS node '{self.node}' ({PROTOCOL_NAME.get(self.via, self.via)}): "
                f"{studies}, {_instances(self.instances)}, into {where}. "
                "Choose the role of each series (or skip it) and import them as a new study, which then opens.")


@dataclass(frozen=True)
class RetrieveRequest:
    """Retrieve each study into its folder, in turn; if one fails or is cancelled, the folders
    of those already retrieved are removed too (and the parent folders this created, when
    empty), so nothing is left of a retrieval that did not complete."""

    node: Node
    via: str
    studies: tuple[tuple[StudyMatch, Path], ...]

    def run(self, progress: Callable[[str, int, int], None], should_cancel: Callable[[], bool]) -> Retrieved:
        parents = _missing_folders(self.studies[0][1].parent) if self.studies else []
        done: list[Path] = []
        instances = 0
        try:
            for number, (match, folder) in enumerate(self.studies, start=1):
                stage = "Retrieving" if len(self.studies) == 1 else \
                    f"Study {number} of {len(self.studies)}: retrieving instances"
                instances += get(self.node, match.study_uid, folder, via=self.via,
                                 progress=lambda _stage, n, total, stage=stage: progress(stage, n, total),
                                 should_cancel=should_cancel)
                done.append(folder)
        except BaseException:
            for folder in done:
                shutil.rmtree(folder, ignore_errors=True)
            for folder in parents:  # deepest first; only the empty ones
                try:
                    os.rmdir(folder)
                except OSError:
                    break
            raise
        return Retrieved(self.node.name, self.via, tuple(done), instances)


def _instances(count: int) -> str:
    return f"{count} instance{'s' if count != 1 else ''}"


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


# -- the dialog ------------------------------------------------------------------------------------------
class PacsDialog(QtWidgets.QDialog):
    """Query a PACS node and retrieve studies from it.

    Args:
        config_path: the nodes' file (None: ``$XDG_CONFIG_HOME/cell-therapy-viewer/pacs.toml``).
        settings: where the last node, protocol and retrieval folder are remembered (optional).

    Signals:
        searched(): a search ended (its studies listed, or its error shown).
        retrieved(Retrieved): the studies arrived (the dialog has accepted).
    """

    searched = QtCore.Signal()
    retrieved = QtCore.Signal(object)

    def __init__(self, config_path: str | Path | None = None, settings: QtCore.QSettings | None = None,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Query and retrieve from PACS")
        self.config_path = Path(config_path) if config_path is not None else None
        self.settings = settings
        self.nodes: dict[str, Node] = {}
        self.config_error: str | None = None
        self.matches: dict[str, StudyMatch] = {}  # by Study Instance UID, as listed
        self.last_error: str | None = None
        self.last_retrieval: Retrieved | None = None
        self._search: Task | None = None
        self.runner = TaskRunner(self, "Retrieve from PACS")
        self.runner.finished.connect(self._on_retrieved)
        self.runner.stopped.connect(self._on_retrieve_stopped)
        self._build()
        self.reload_nodes()
        self.resize(1180, 720)

    @property
    def config_file(self) -> Path:
        """The ``pacs.toml`` the nodes are read from."""
        return self.config_path if self.config_path is not None else default_config_path()

    # -- building --------------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        node_row = QtWidgets.QHBoxLayout()
        self.node_combo = QtWidgets.QComboBox()
        self.node_combo.setMinimumContentsLength(16)
        self.node_combo.currentIndexChanged.connect(self._on_node)
        self.via_combo = QtWidgets.QComboBox()
        self.via_combo.currentIndexChanged.connect(self._on_via)
        self.address_label = QtWidgets.QLabel()
        self.address_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.reload_button = QtWidgets.QPushButton("Reload pacs.toml")
        self.reload_button.setAutoDefault(False)
        self.reload_button.clicked.connect(self.reload_nodes)
        node_row.addWidget(QtWidgets.QLabel("PACS node"))
        node_row.addWidget(self.node_combo)
        node_row.addWidget(QtWidgets.QLabel("via"))
        node_row.addWidget(self.via_combo)
        node_row.addWidget(self.address_label, 1)
        node_row.addWidget(self.reload_button)
        layout.addLayout(node_row)

        self.config_label = QtWidgets.QLabel()  # the file's one-line error, and where it goes
        self.config_label.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.config_label.setWordWrap(True)
        self.config_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.config_label.setStyleSheet("color: #b00020;")
        self.config_hint = QtWidgets.QLabel()
        self.config_hint.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.config_hint.setWordWrap(True)
        self.config_hint.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.config_label)
        layout.addWidget(self.config_hint)

        self.form = QtWidgets.QGroupBox("Find studies")
        grid = QtWidgets.QGridLayout(self.form)
        self.patient_id_edit = QtWidgets.QLineEdit()
        self.patient_id_edit.setPlaceholderText("e.g. MRN-0042")
        self.patient_name_edit = QtWidgets.QLineEdit()
        self.patient_name_edit.setPlaceholderText("e.g. Doe^Jane or Doe*  (wildcards * and ?)")
        self.patient_name_edit.setToolTip("DICOM person name: family^given; * matches any text, ? one character")
        self.date_from_edit = QtWidgets.QLineEdit()
        self.date_to_edit = QtWidgets.QLineEdit()
        for edit, end in ((self.date_from_edit, "first"), (self.date_to_edit, "last")):
            edit.setPlaceholderText("YYYYMMDD (any)")
            edit.setToolTip(f"the {end} study date (YYYYMMDD or YYYY-MM-DD); empty: no limit. "
                            "The same date in both for one day.")
            edit.setMaximumWidth(170)
        self.modality_combo = QtWidgets.QComboBox()
        self.modality_combo.setEditable(True)
        self.modality_combo.addItems(MODALITIES)
        self.modality_combo.lineEdit().setPlaceholderText("any")
        self.modality_combo.setToolTip("a modality of any series of the study")
        self.modality_combo.setMinimumContentsLength(6)
        self.search_button = QtWidgets.QPushButton("Search")
        self.search_button.setDefault(True)  # Enter in a field searches
        self.search_button.clicked.connect(self.search)
        dates = QtWidgets.QHBoxLayout()
        dates.addWidget(self.date_from_edit)
        dates.addWidget(QtWidgets.QLabel("to"))
        dates.addWidget(self.date_to_edit)
        dates.addStretch(1)
        grid.addWidget(QtWidgets.QLabel("Patient ID"), 0, 0)
        grid.addWidget(self.patient_id_edit, 0, 1)
        grid.addWidget(QtWidgets.QLabel("Patient name"), 0, 2)
        grid.addWidget(self.patient_name_edit, 0, 3)
        grid.addWidget(QtWidgets.QLabel("Study date from"), 1, 0)
        grid.addLayout(dates, 1, 1)
        grid.addWidget(QtWidgets.QLabel("Modality"), 1, 2)
        modality = QtWidgets.QHBoxLayout()
        modality.addWidget(self.modality_combo)
        modality.addStretch(1)
        modality.addWidget(self.search_button)
        grid.addLayout(modality, 1, 3)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 2)
        layout.addWidget(self.form)

        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSortIndicator(COL_DATE, QtCore.Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.table.itemSelectionChanged.connect(self._refresh_state)
        self.table.itemDoubleClicked.connect(lambda _item: self.retrieve())
        layout.addWidget(self.table, 1)
        self.message_label = QtWidgets.QLabel()  # the search's count, or the one-line error
        self.message_label.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.message_label)

        target = QtWidgets.QHBoxLayout()
        self.parent_edit = QtWidgets.QLineEdit(self._setting(SETTINGS_PARENT) or str(default_retrieve_parent()))
        self.parent_edit.setToolTip("each study is retrieved into a new folder here")
        self.parent_edit.textChanged.connect(self._refresh_state)
        self.browse_button = QtWidgets.QPushButton("Choose…")
        self.browse_button.setAutoDefault(False)
        self.browse_button.clicked.connect(self._browse_parent)
        target.addWidget(QtWidgets.QLabel("Retrieve into"))
        target.addWidget(self.parent_edit, 1)
        target.addWidget(self.browse_button)
        layout.addLayout(target)
        bottom = QtWidgets.QHBoxLayout()
        self.target_label = QtWidgets.QLabel()  # the new folder(s) a retrieval would make
        self.target_label.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.target_label.setWordWrap(True)
        self.buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        self.retrieve_button = self.buttons.addButton("Retrieve", QtWidgets.QDialogButtonBox.ButtonRole.ActionRole)
        self.retrieve_button.setAutoDefault(False)
        self.retrieve_button.clicked.connect(self.retrieve)
        self.buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Close).setAutoDefault(False)
        self.buttons.rejected.connect(self.reject)
        bottom.addWidget(self.target_label, 1)
        bottom.addWidget(self.buttons)
        layout.addLayout(bottom)

    def _setting(self, key: str) -> str:
        return str(self.settings.value(key, "") or "") if self.settings is not None else ""

    def _remember(self, key: str, value: str) -> None:
        if self.settings is not None:
            self.settings.setValue(key, value)

    # -- nodes ------------------------------------------------------------------------------------------
    def reload_nodes(self) -> None:
        """Read ``pacs.toml`` (again); the node chosen before stays chosen if it is still there."""
        previous = self.node_combo.currentText() or self._setting(SETTINGS_NODE)
        try:
            self.nodes, self.config_error = load_nodes(self.config_path), None
        except ViewerError as exc:
            self.nodes, self.config_error = {}, str(exc)
        self.node_combo.blockSignals(True)
        self.node_combo.clear()
        self.node_combo.addItems(sorted(self.nodes))
        self.node_combo.setCurrentIndex(max(0, self.node_combo.findText(previous)))
        self.node_combo.blockSignals(False)
        if self.config_error is None:
            self.config_label.clear()
            self.config_hint.clear()
        else:
            self.config_label.setText(self.config_error)
            self.config_hint.setText(f"The PACS nodes are read from <b>{_escape(str(self.config_file))}</b>. Create or "
                                     f"fix that file, for example:<pre>{_escape(CONFIG_EXAMPLE)}</pre>"
                                     "then press “Reload pacs.toml”.")
        self.config_label.setVisible(self.config_error is not None)
        self.config_hint.setVisible(self.config_error is not None)
        self._on_node()

    def current_node(self) -> Node | None:
        return self.nodes.get(self.node_combo.currentText())

    def current_via(self) -> str | None:
        return self.via_combo.currentData()

    def set_node(self, name: str, via: str | None = None) -> None:
        """Choose the node (and the protocol, when given) as the user would."""
        index = self.node_combo.findText(name)
        if index < 0:
            raise KeyError(name)
        self.node_combo.setCurrentIndex(index)
        if via is not None:
            self.via_combo.setCurrentIndex(self.via_combo.findData(via))

    def _on_node(self) -> None:
        node = self.current_node()
        self.via_combo.blockSignals(True)
        self.via_combo.clear()
        if node is not None:
            for protocol in operations.protocols_of(node):
                self.via_combo.addItem(PROTOCOL_TEXT[protocol], protocol)
            remembered = self.via_combo.findData(self._setting(SETTINGS_VIA))
            self.via_combo.setCurrentIndex(max(0, remembered))
        self.via_combo.blockSignals(False)
        self.via_combo.setToolTip("" if self.via_combo.count() > 1 else "the node speaks only this protocol")
        self._on_via()

    def _on_via(self) -> None:
        node, via = self.current_node(), self.current_via()
        if node is None:
            self.address_label.setText("")
        elif via == "dimse":
            self.address_label.setText(f"{node.called_aet}@{node.host}:{node.port} (calling AE {node.calling_aet})")
        else:
            self.address_label.setText(node.dicomweb or "")
        self._refresh_state()

    # -- searching ------------------------------------------------------------------------------------
    def query(self) -> StudyQuery:
        """The form's query (raises ViewerError naming the wrong field)."""
        return build_query(self.patient_id_edit.text(), self.patient_name_edit.text(), self.date_from_edit.text(),
                           self.date_to_edit.text(), self.modality_combo.currentText())

    def search(self) -> bool:
        """Search the chosen node on a worker thread (False, with the reason shown, when the
        form or the configuration does not allow it). A newer search supersedes a running one."""
        node, via = self.current_node(), self.current_via()
        if self.runner.busy:
            return False
        if node is None or via is None:
            self._show_message(self.config_error or "choose a PACS node", error=True)
            return False
        try:
            query = self.query()
        except ViewerError as exc:
            self._show_message(str(exc), error=True)
            return False
        self._remember(SETTINGS_NODE, node.name)
        self._remember(SETTINGS_VIA, via)
        self._show_results([])
        self._show_message(f"Searching '{node.name}'…")
        task = self._search = Task(SearchRequest(node, query, via))
        task.done.connect(self._on_search_done)
        task.failed.connect(self._on_search_failed)
        task.cancelled.connect(self._on_search_failed)
        task.start()
        self._refresh_state()
        return True

    @property
    def searching(self) -> bool:
        return self._search is not None

    def _current_search(self) -> Task | None:
        return self._search if self._search is not None and self.sender() is self._search else None

    def _on_search_done(self, matches: list[StudyMatch]) -> None:
        task = self._current_search()
        if task is None:
            return
        self._search = None
        self._show_results(matches)
        where = f"on '{task.request.node.name}' ({PROTOCOL_NAME[task.request.via]})"
        count = len(matches)
        self._show_message(f"{count} stud{'y' if count == 1 else 'ies'} {where}"
                           + (": choose one or several and Retrieve" if count else ""))
        self._refresh_state()
        self.searched.emit()

    def _on_search_failed(self, message: str) -> None:
        if self._current_search() is None:
            return
        self._search = None
        self._show_message(message, error=True)
        self._refresh_state()
        self.searched.emit()

    def _show_results(self, matches: Sequence[StudyMatch]) -> None:
        self.matches = {m.study_uid: m for m in matches}
        table = self.table
        table.setSortingEnabled(False)  # rows would move while they are filled
        table.clearContents()
        table.setRowCount(len(matches))
        right = QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter
        for row, match in enumerate(matches):
            cells = (display_date(match.study_date), match.patient_id, display_name(match.patient_name),
                     ", ".join(match.modalities), match.series_count, match.description)
            for column, value in enumerate(cells):
                item = QtWidgets.QTableWidgetItem()
                if column == COL_SERIES:  # a number, so it sorts as one
                    if value is not None:
                        item.setData(QtCore.Qt.ItemDataRole.DisplayRole, value)
                    item.setTextAlignment(right)
                else:
                    item.setText(str(value))
                item.setToolTip(f"{match.description or '(no description)'}\nStudyInstanceUID {match.study_uid}"
                                + (f"\npatient name {match.patient_name}" if column == COL_NAME else ""))
                table.setItem(row, column, item)
            table.item(row, COL_DATE).setData(UID_ROLE, match.study_uid)
        table.setSortingEnabled(True)
        self.fit_columns()
        self._refresh_state()

    def fit_columns(self) -> None:
        """Each column as wide as its widest cell (headers included); the description takes the rest."""
        header = self.table.horizontalHeader()
        for column in range(COL_DESCRIPTION):
            self.table.resizeColumnToContents(column)
            header.resizeSection(column, max(header.sectionSize(column) + 16, 90))

    def listed(self) -> list[StudyMatch]:
        """The studies in the table, in the order shown."""
        return [self.matches[self.table.item(row, COL_DATE).data(UID_ROLE)] for row in range(self.table.rowCount())]

    def selected(self) -> list[StudyMatch]:
        """The chosen studies, in the order shown."""
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [self.matches[self.table.item(row, COL_DATE).data(UID_ROLE)] for row in rows]

    def select(self, study_uids: Sequence[str]) -> None:
        """Choose these studies (as clicking their rows would)."""
        self.table.clearSelection()
        mode = self.table.selectionMode()
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.MultiSelection)
        for row in range(self.table.rowCount()):
            if self.table.item(row, COL_DATE).data(UID_ROLE) in study_uids:
                self.table.selectRow(row)
        self.table.setSelectionMode(mode)

    # -- retrieving -----------------------------------------------------------------------------------
    def retrieve_parent(self) -> Path:
        return Path(self.parent_edit.text().strip()).expanduser().absolute()

    def planned_folders(self) -> list[Path]:
        """The new folders the chosen studies would be retrieved into."""
        if not self.parent_edit.text().strip():
            return []
        return new_retrieve_folders(self.retrieve_parent(), self.selected())

    def _browse_parent(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Retrieve studies into (a new folder each)",
                                                          str(self.retrieve_parent()))
        if path:
            self.parent_edit.setText(path)

    def retrieve(self) -> bool:
        """Retrieve the chosen studies, each into a new folder, behind a progress dialog with
        Cancel (False, with the reason shown, when it cannot start)."""
        node, via, matches = self.current_node(), self.current_via(), self.selected()
        if self.runner.busy or node is None or via is None:
            return False
        problem = self._retrieve_problem(matches)
        if problem:
            self._show_message(problem, error=True)
            return False
        folders = self.planned_folders()
        self._remember(SETTINGS_PARENT, str(self.retrieve_parent()))
        self._remember(SETTINGS_NODE, node.name)
        self._remember(SETTINGS_VIA, via)
        what = (f"{display_name(matches[0].patient_name) or matches[0].patient_id} "
                f"({display_date(matches[0].study_date)})" if len(matches) == 1 else f"{len(matches)} studies")
        self._show_message(f"Retrieving {what} from '{node.name}'…")
        self.runner.start(RetrieveRequest(node, via, tuple(zip(matches, folders))),
                          f"Retrieving {what} from '{node.name}'…")
        self._refresh_state()
        return True

    def _retrieve_problem(self, matches: Sequence[StudyMatch]) -> str:
        if not matches:
            return "choose the studies to retrieve"
        if not self.parent_edit.text().strip():
            return "choose the folder to retrieve into"
        parent = self.retrieve_parent()
        if parent.exists() and not parent.is_dir():
            return f"{parent}: is not a folder; choose a folder to retrieve into"
        return ""

    def _on_retrieved(self, request: object, result: Retrieved) -> None:
        self.last_retrieval = result
        self._show_message(f"{_instances(result.instances)} retrieved into "
                           + ", ".join(str(folder) for folder in result.folders))
        self._refresh_state()
        self.accept()
        self.retrieved.emit(result)

    def _on_retrieve_stopped(self, request: object, message: str, cancelled: bool) -> None:
        self._show_message(message, error=not cancelled)
        self._refresh_state()

    # -- state -----------------------------------------------------------------------------------------
    def _show_message(self, text: str, error: bool = False) -> None:
        """One line under the results: a count, what is running, or an error (kept as
        :attr:`last_error`)."""
        if error:
            self.last_error = text
        self.message_label.setText(text)
        self.message_label.setStyleSheet("color: #b00020;" if error else "")

    def _refresh_state(self) -> None:
        busy = self.runner.busy
        has_node = self.current_node() is not None
        for widget in (self.reload_button, self.table, self.parent_edit, self.browse_button):
            widget.setEnabled(not busy)
        for widget in (self.node_combo, self.form):  # nothing to query without a node
            widget.setEnabled(not busy and has_node)
        self.via_combo.setEnabled(not busy and self.via_combo.count() > 1)
        self.search_button.setEnabled(not busy and has_node)
        matches = self.selected()
        problem = self._retrieve_problem(matches)
        self.retrieve_button.setEnabled(not busy and has_node and not problem)
        self.retrieve_button.setText("Retrieve" if len(matches) < 2 else f"Retrieve {len(matches)} studies")
        self.retrieve_button.setToolTip(problem)
        folders = [] if problem else self.planned_folders()
        if len(folders) == 1:
            self.target_label.setText(f"into the new folder {folders[0].name}")
        elif folders:
            self.target_label.setText(f"into {len(folders)} new folders: {', '.join(f.name for f in folders)}")
        else:
            self.target_label.setText("")

    def reject(self) -> None:
        """Close, Esc or the window's close button: a running retrieval is cancelled (nothing is
        kept) and the dialog stays to say so."""
        if self.runner.busy:
            self.runner.cancel()
            return
        super().reject()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


__all__ = [
    "COLUMNS", "PacsDialog", "RetrieveRequest", "Retrieved", "SearchRequest", "build_query", "date_range",
    "default_retrieve_parent", "display_date", "display_name", "new_retrieve_folders", "retrieve_folder_name",
]
