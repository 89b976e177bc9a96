"""File ▸ Export report: the choices of a PDF report, asked before it is written.

The dialog only collects choices; the report itself is built by the core
(`viewer.core.report`) exactly as ``viewer report`` builds it, so the two give the same
content. The reviewer's name and the output folder are remembered between sessions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtWidgets

from viewer.core.io.file_names import file_name_part
from viewer.core.report import ReportOptions


class ReportDialog(QtWidgets.QDialog):
    """Asks for the output file, timepoints, key-image point, reviewer and de-identification."""

    def __init__(self, study, current_label: str, cursor_mm: np.ndarray, radiological: bool,
                 settings: QtCore.QSettings, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export report")
        self.settings = settings
        self.cursor_mm = np.asarray(cursor_mm, dtype=float)
        self.radiological = radiological
        form = QtWidgets.QFormLayout(self)

        folder = str(settings.value("report/folder", "") or (study.root or Path.home()))
        self.path_edit = QtWidgets.QLineEdit(str(Path(folder).expanduser().resolve() / f"{file_name_part(study.id, 'study')}-report.pdf"))
        browse = QtWidgets.QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.path_edit, 1)
        row.addWidget(browse)
        form.addRow("PDF file", row)

        self.timepoints = QtWidgets.QComboBox()
        self.timepoints.addItem("All timepoints", None)
        for timepoint in study.timepoints:
            self.timepoints.addItem(f"Only {timepoint.label}", timepoint.label)
        form.addRow("Timepoints", self.timepoints)

        x, y, z = self.cursor_mm
        self.at_cursor = QtWidgets.QRadioButton(f"through the cursor ({x:.1f}, {y:.1f}, {z:.1f}) mm")
        self.at_hotspot = QtWidgets.QRadioButton("through each timepoint's strongest ¹⁹F hotspot")
        self.at_cursor.setChecked(True)
        points = QtWidgets.QVBoxLayout()
        points.addWidget(self.at_cursor)
        points.addWidget(self.at_hotspot)
        form.addRow("Key images", points)

        self.reviewer = QtWidgets.QLineEdit(str(settings.value("report/reviewer", "") or ""))
        self.reviewer.setPlaceholderText("name printed as reviewer")
        form.addRow("Reviewer", self.reviewer)

        self.deidentify = QtWidgets.QCheckBox("remove patient name, ID, birth date and exact dates")
        form.addRow("De-identify", self.deidentify)

        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        export = buttons.addButton("Export", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole)
        export.setDefault(True)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.resize(620, self.sizeHint().height())

    def _browse(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Report", self.path_edit.text(), "PDF (*.pdf)")
        if path:
            self.path_edit.setText(path if path.lower().endswith(".pdf") else path + ".pdf")

    # -- the choices -------------------------------------------------------------------------------
    def output(self) -> Path:
        return Path(self.path_edit.text().strip()).expanduser()

    def timepoint_label(self) -> str | None:
        return self.timepoints.currentData()

    def options(self) -> ReportOptions:
        reviewer = self.reviewer.text().strip() or None
        return ReportOptions(
            deidentify=self.deidentify.isChecked(),
            reviewer=reviewer,
            focus=self.cursor_mm if self.at_cursor.isChecked() else None,
            radiological=self.radiological,
        )

    def remember(self) -> None:
        """Keep the reviewer and the folder for the next report."""
        self.settings.setValue("report/reviewer", self.reviewer.text().strip())
        self.settings.setValue("report/folder", str(self.output().parent))
        self.settings.sync()
