"""File ▸ Export to PACS (PRODUCT.md §8 "Results in DICOM"): the window's ``viewer export-dicom``
followed by ``viewer pacs send``, in one step with progress and Cancel.

The saved study is exported (:func:`viewer.core.dicom_export.to_pacs.export_to_pacs`), so what
reaches the PACS is what ``viewer stats`` and ``viewer report`` give for the files on disk;
with region edits not yet saved the dialog says so and does not send (a hospital record must
not hold numbers of regions nobody saved). The user chooses the node, the timepoints, the kinds
of object and de-identification; the result is one line of what was stored where, or the
core's one line of what went wrong (a send stopped halfway says how many instances arrived).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from viewer.core.dicom_export.to_pacs import KINDS, SentResults, export_to_pacs
from viewer.core.errors import ViewerError
from viewer.core.pacs import operations
from viewer.core.pacs.nodes import Node, default_config_path, load_nodes
from viewer.ui.import_dialog import TaskRunner

#: The stages' words in the progress dialog.
STAGES = {"export": "Exporting timepoints as DICOM", "send": "Sending instances"}
#: Object kinds as they are counted in the result line.
COUNTED = {"segmentation": ("segmentation", "segmentations"), "measurements": ("measurement report", "measurement reports"),
           "report": ("PDF report", "PDF reports"), "anatomy": ("anatomy image", "anatomy images")}
ALL_TIMEPOINTS = ""


def result_text(sent: SentResults) -> str:
    """One line of what was stored: "Stored 195 instances on 'hospital': 1 segmentation, …"."""
    parts = [f"{n} {COUNTED[kind][n != 1]}" for kind, n in sent.counts.items()]
    studies = "1 study" if len(set(sent.study_uids)) == 1 else f"{len(set(sent.study_uids))} studies"
    return f"Stored {sent.total} instance{'s' if sent.total != 1 else ''} on '{sent.node}' ({studies}): " + \
        ", ".join(parts) + "."


@dataclass(frozen=True)
class ExportRequest:
    """Export the saved study and send the chosen objects (run by the dialog's TaskRunner)."""

    study: Path
    node: Node
    via: str
    kinds: tuple[str, ...]
    timepoint: str | None
    deidentify: bool

    def run(self, progress: Callable[[str, int, int], None], should_cancel: Callable[[], bool]) -> SentResults:
        return export_to_pacs(self.study, self.node, self.via, self.kinds, self.timepoint, self.deidentify,
                              lambda stage, done, total: progress(STAGES.get(stage, stage), done, total),
                              should_cancel)


class ExportPacsDialog(QtWidgets.QDialog):
    """Send the study's results (SEG, SR, PDF, anatomy) to a PACS node.

    Args:
        study: the study's manifest (the saved files are exported).
        timepoints: its timepoint labels; ``current`` is chosen first when given.
        unsaved: the window holds region edits not saved yet (sending is then refused).
        config_path: the nodes' file (None: the user's ``pacs.toml``).

    Signals:
        sent(SentResults): the objects are stored on the node.
    """

    sent = QtCore.Signal(object)

    def __init__(self, study: Path, timepoints: Sequence[str], current: str | None = None, unsaved: bool = False,
                 config_path: str | Path | None = None, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export results to PACS")
        self.study = Path(study)
        self.unsaved = unsaved
        self.config_path = Path(config_path) if config_path is not None else None
        self.nodes: dict[str, Node] = {}
        self.last_result: SentResults | None = None
        self.last_error: str | None = None
        self.runner = TaskRunner(self, "Export to PACS")
        self.runner.finished.connect(self._on_sent)
        self.runner.stopped.connect(self._on_stopped)
        self._build(timepoints, current)
        self.reload_nodes()
        self.resize(760, 400)

    # -- building --------------------------------------------------------------------------------
    def _build(self, timepoints: Sequence[str], current: str | None) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        form = QtWidgets.QFormLayout()
        self.node_combo = QtWidgets.QComboBox()
        self.node_combo.currentIndexChanged.connect(self._on_node)
        self.via_combo = QtWidgets.QComboBox()
        form.addRow("PACS node", self.node_combo)
        form.addRow("Protocol", self.via_combo)
        self.timepoint_combo = QtWidgets.QComboBox()
        self.timepoint_combo.addItem("Every timepoint", ALL_TIMEPOINTS)
        for label in timepoints:
            self.timepoint_combo.addItem(label, label)
        if current:
            self.timepoint_combo.setCurrentIndex(max(0, self.timepoint_combo.findData(current)))
        form.addRow("Timepoints", self.timepoint_combo)
        layout.addLayout(form)

        objects = QtWidgets.QGroupBox("Objects (one of each per timepoint, in that timepoint's study)")
        column = QtWidgets.QVBoxLayout(objects)
        self.kind_boxes: dict[str, QtWidgets.QCheckBox] = {}
        for kind, text in KINDS.items():
            box = QtWidgets.QCheckBox(text)
            box.setChecked(True)
            box.toggled.connect(self._refresh)
            column.addWidget(box)
            self.kind_boxes[kind] = box
        layout.addWidget(objects)
        self.deidentify_box = QtWidgets.QCheckBox(
            "De-identify (PS3.15 Basic Profile: pseudonym, new UIDs, dates moved to 1900-01-01 + day)")
        layout.addWidget(self.deidentify_box)

        self.message = QtWidgets.QLabel()
        self.message.setWordWrap(True)
        self.message.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.message.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.message, 1)
        buttons = QtWidgets.QDialogButtonBox()
        self.send_button = buttons.addButton("Send", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole)
        self.send_button.clicked.connect(self.send)
        close = buttons.addButton(QtWidgets.QDialogButtonBox.StandardButton.Close)
        close.clicked.connect(self.reject)
        layout.addWidget(buttons)

    def reload_nodes(self) -> None:
        """Read ``pacs.toml`` again; a missing or broken file is shown as its one line."""
        self.node_combo.clear()
        try:
            self.nodes = load_nodes(self.config_path)
        except ViewerError as exc:
            self.nodes = {}
            self._show(f"{exc}. The PACS nodes are named in {self.config_path or default_config_path()} "
                       "([node.NAME] with dicomweb = \"https://…/dicom-web\" and/or host, port, called_aet).", error=True)
        for name in self.nodes:
            self.node_combo.addItem(name, name)
        self._refresh()

    def _on_node(self) -> None:
        self.via_combo.clear()
        node = self.current_node()
        if node is not None:
            for protocol in operations.protocols_of(node):
                self.via_combo.addItem({"dicomweb": "DICOMweb (STOW-RS)", "dimse": "DIMSE (C-STORE)"}[protocol], protocol)
        self._refresh()

    def current_node(self) -> Node | None:
        name = self.node_combo.currentData()
        return self.nodes.get(name) if name else None

    def kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind, box in self.kind_boxes.items() if box.isChecked())

    def _refresh(self) -> None:
        idle = not self.runner.busy  # the choices of a send under way stay as they were
        for widget in (self.node_combo, self.via_combo, self.timepoint_combo, self.deidentify_box,
                       *self.kind_boxes.values()):
            widget.setEnabled(idle)
        ready = self.current_node() is not None and bool(self.kinds()) and not self.unsaved and not self.runner.busy
        self.send_button.setEnabled(ready)
        if self.unsaved:
            self._show("Some regions have edits that are not saved. The saved study is what is exported: save the "
                       "regions first (Edit ▸ Save regions, Ctrl+S), then send.", error=True)
        elif self.nodes and not self.kinds():
            self._show("Choose at least one kind of object to send.", error=True)
        elif self.nodes and self.last_error is None and self.last_result is None:
            self._show("")
        if "anatomy" not in self.kinds() and self.nodes and not self.unsaved:
            self.kind_boxes["anatomy"].setToolTip("Without it, a NIfTI study's segmentation references images the "
                                                  "PACS does not have")

    def _show(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #b00020;" if error else "")

    # -- sending ---------------------------------------------------------------------------------
    def send(self) -> None:
        """Export and send in the background, behind a progress dialog with Cancel."""
        node = self.current_node()
        if node is None or self.unsaved or self.runner.busy or not self.kinds():
            return
        timepoint = self.timepoint_combo.currentData() or None
        request = ExportRequest(self.study, node, str(self.via_combo.currentData()), self.kinds(), timepoint,
                                self.deidentify_box.isChecked())
        self.last_error = self.last_result = None
        self._show(f"Exporting and sending to '{node.name}'…")
        self.runner.start(request, "Exporting…")
        self._refresh()

    def _on_sent(self, request: ExportRequest, result: SentResults) -> None:
        self.last_result = result
        self.last_error = None
        notes = "".join(f"\nNote: {note}" for note in result.notes)
        self._show(result_text(result) + notes)
        self._refresh()
        self.sent.emit(result)

    def _on_stopped(self, request: ExportRequest, message: str, cancelled: bool) -> None:
        self.last_error = message
        self._show(("Cancelled: " if cancelled else "Not sent: ") + message, error=not cancelled)
        self._refresh()
