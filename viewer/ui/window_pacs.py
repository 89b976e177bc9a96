"""File ▸ Query and retrieve from PACS and File ▸ Export results to PACS in the main window
(PRODUCT.md §8 "PACS", "Results in DICOM").

A mixin of :class:`viewer.ui.main_window.MainWindow` (it uses the window's ``settings``,
``scene`` and ``import_exam``): the PACS dialog, and the series browser on the folders a
retrieval made. That dialog is kept once opened, so its node, query and results are still there
the next time; the nodes are read again from ``pacs.toml`` on every opening (the file may have
been edited). The export dialog is made anew for the study on screen each time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6 import QtCore

if TYPE_CHECKING:  # the dialog (and the PACS libraries) are imported on first use, not at start-up
    from viewer.ui.export_pacs_dialog import ExportPacsDialog
    from viewer.ui.pacs_dialog import PacsDialog, Retrieved


class PacsRetrieving:
    """Opening the PACS dialogs: what File ▸ Query and retrieve brings goes to the series
    browser; File ▸ Export results to PACS sends the open study's results."""

    #: The window's PACS dialog, once opened.
    pacs_dialog: PacsDialog | None = None

    def open_pacs_dialog(self, config_path: str | Path | None = None) -> PacsDialog:
        """Show the PACS dialog on ``config_path`` (default: the user's ``pacs.toml``)."""
        from viewer.ui.pacs_dialog import PacsDialog

        config = Path(config_path) if config_path is not None else None
        dialog = self.pacs_dialog
        if dialog is not None and dialog.config_path == config:
            dialog.reload_nodes()
        else:
            if dialog is not None:
                dialog.deleteLater()
            dialog = self.pacs_dialog = PacsDialog(config, settings=self.settings, parent=self)
            dialog.retrieved.connect(self._open_retrieved)
        dialog.open()
        return dialog

    def _open_retrieved(self, retrieved: Retrieved) -> None:
        """The retrieved folders in the series browser (the study it writes then opens)."""
        self.import_exam(list(retrieved.folders), retrieved.note())

    def open_export_pacs_dialog(self, config_path: str | Path | None = None) -> ExportPacsDialog | None:
        """Show File ▸ Export results to PACS for the open study (its saved files are sent;
        region edits not yet saved are named and block the send)."""
        from viewer.ui.export_pacs_dialog import ExportPacsDialog

        scene = self.scene
        if scene is None or scene.study.manifest is None:
            self.show_error("open a study (study.toml) first: its regions and numbers are what is sent",
                            title="Nothing to export")
            return None
        unsaved = bool(self.unsaved_timepoints())
        labels = [timepoint.label for timepoint in scene.study.timepoints]
        dialog = ExportPacsDialog(scene.study.manifest, labels, scene.timepoint.label, unsaved, config_path, self)
        dialog.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog
