"""Study ▸ Register (PRODUCT.md §9) in the main window: every later timepoint to the first, or
one image to its timepoint's anatomy, with progress and Cancel, then the study reopened in its
new reference space.

A mixin of :class:`viewer.ui.main_window.MainWindow`; the registration and the manifest are
:func:`viewer.core.study_registration.register_study`'s, run on a worker thread. The window
holds the study's lock while it writes, and registration waits until no region edit is unsaved
(a reopened study starts from what is on disk).
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from viewer.core.errors import ViewerError

#: the image choice meaning "each timepoint's anatomy to the reference"
ANATOMY = "anatomy (timepoints to the first)"


class _Progress(QtCore.QObject):
    """Carries the worker's progress to the GUI thread (a queued signal)."""

    moved = QtCore.Signal(str, int, int)


class RegisterDialog(QtWidgets.QDialog):
    """Which timepoint(s), which image, which method."""

    def __init__(self, timepoints: list[str], roles: list[str], parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Register")
        form = QtWidgets.QFormLayout(self)
        self.timepoint_combo = QtWidgets.QComboBox()
        self.timepoint_combo.addItem("every later timepoint", None)
        for label in timepoints:
            self.timepoint_combo.addItem(label, label)
        self.image_combo = QtWidgets.QComboBox()
        self.image_combo.addItem(ANATOMY, None)
        for role in roles:
            self.image_combo.addItem(f"{role} to its timepoint's anatomy", role)
        self.method_combo = QtWidgets.QComboBox()
        self.method_combo.addItems(["rigid", "affine"])
        form.addRow("Timepoint:", self.timepoint_combo)
        form.addRow("Image:", self.image_combo)
        form.addRow("Method:", self.method_combo)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def choice(self) -> tuple[str | None, str | None, str]:
        return self.timepoint_combo.currentData(), self.image_combo.currentData(), self.method_combo.currentText()


class Registering:
    """Study ▸ Register…"""

    _register_stop: threading.Event | None = None

    def ask_registration(self) -> tuple[str | None, str | None, str] | None:
        """(timepoint or None for all, image role or None for the anatomy, method); None when
        cancelled (tests replace this)."""
        assert self.scene is not None
        timepoints = [tp.label for tp in self.scene.study.timepoints]
        roles = sorted({role for tp in self.scene.study.timepoints for role in tp.images
                        if role not in ("anatomical", "regions")})
        dialog = RegisterDialog(timepoints, roles, self)
        if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted:
            return None
        return dialog.choice()

    def start_registration(self) -> bool:
        """Ask, then register on a worker; False when nothing was started (and why is shown)."""
        if self.scene is None or self.scene.study.manifest is None:
            self.show_error("Registration writes into a study's manifest: open a study from its study.toml",
                            title="Register")
            return False
        if self.unsaved_timepoints():
            self.show_error("Save or discard the region edits first: the study is reopened after registering",
                            title="Register")
            return False
        if not self.settle_registration():
            return False
        choice = self.ask_registration()
        if choice is None:
            return False
        timepoint, image, method = choice
        try:
            self.scene.acquire_lock()
        except ViewerError as exc:
            self.show_error(str(exc), title="Register")
            return False
        from viewer.core.study_registration import register_study

        manifest = Path(self.scene.study.manifest)
        stop = self._register_stop = threading.Event()
        relay = _Progress(self)
        dialog = QtWidgets.QProgressDialog("Registering…", "Cancel", 0, 100, self)
        dialog.setWindowTitle("Register")
        dialog.setMinimumDuration(0)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.canceled.connect(stop.set)
        relay.moved.connect(self._on_register_progress)  # a window slot: queued to the GUI thread
        self._register_dialog = dialog
        dialog.show()
        self.jobs.submit("register", lambda: register_study(
            manifest, timepoint, image, method, progress=relay.moved.emit, should_stop=stop.is_set, lock=False))
        return True

    def _on_register_progress(self, stage: str, done: int, total: int) -> None:
        dialog = getattr(self, "_register_dialog", None)
        if dialog is not None:
            dialog.setLabelText(f"Registering {stage}…")
            dialog.setValue(int(100 * done / max(total, 1)))

    def _registration_done(self, items) -> None:
        """Show what was found and reopen the study in its new reference space."""
        self._close_register_dialog()
        lines = "\n".join(item.line() for item in items)
        self.last_notice = lines
        self.statusBar().showMessage(lines.splitlines()[0] if lines else "nothing registered", 15_000)
        if self.scene is not None and any(item.written for item in items):
            manifest = self.scene.study.manifest
            self.scene.release_lock()
            self.open(manifest)  # the transforms are composed when the volumes load
        if not self._quiet_dialogs:
            box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Information, "Registration", lines, parent=self)
            box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()

    def _registration_failed(self, message: str) -> None:
        self._close_register_dialog()
        if self.scene is not None:
            self.scene.release_lock()
        prefix, _, rest = message.partition(": ")  # "viewer.core.registration.RegistrationCancelled: …"
        self.show_error(rest if rest and " " not in prefix else message, title="Registration")

    def _close_register_dialog(self) -> None:
        dialog = getattr(self, "_register_dialog", None)
        if dialog is not None:
            dialog.close()
            dialog.deleteLater()
            self._register_dialog = None

    _quiet_dialogs = False  # tests read last_notice instead of closing a message box
