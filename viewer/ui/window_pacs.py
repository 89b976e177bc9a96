"""File ▸ Query and retrieve from PACS in the main window (PRODUCT.md §8 "PACS").

A mixin of :class:`viewer.ui.main_window.MainWindow` (it uses the window's ``settings`` and
``import_exam``): the PACS dialog, and the series browser on the folders a retrieval made. The
dialog is kept once opened, so its node, query and results are still there the next time; the
nodes are read again from ``pacs.toml`` on every opening (the file may have been edited).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the dialog (and the PACS libraries) are imported on first use, not at start-up
    from viewer.ui.pacs_dialog import PacsDialog, Retrieved


class PacsRetrieving:
    """Opening the PACS dialog; what it retrieves goes to the series browser."""

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
