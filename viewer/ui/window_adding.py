"""Adding an image as an overlay of the timepoint on screen (PRODUCT.md §5): File ▸ Add image,
or a file dropped with Shift held, a role chosen (or "other" with its own units), optionally
saved into the study's manifest.

A mixin of :class:`viewer.ui.main_window.MainWindow`; the image, its checks and the manifest
are the scene's (:meth:`viewer.core.scene.Scene.add_image`, :meth:`~viewer.core.scene.Scene.save_added_images`).
"""

from __future__ import annotations

import re
from pathlib import Path

from PySide6 import QtWidgets

from viewer.core.errors import ImageExists, ViewerError
from viewer.core.volume import ROLE_QUANTITY, ROLE_UNITS, ROLES

#: Words in a file name that suggest its role (the reader confirms in the dialog).
ROLE_HINTS: tuple[tuple[str, str], ...] = (
    (r"pet|suv|fdg", "pet"), (r"f19|19f|fluor", "fluorine"), (r"adc", "adc"), (r"tmax", "tmax"),
    (r"tsc|sodium|23na", "sodium"), (r"r2s|r2star|spio", "spio"), (r"dr1|gd|gado", "gd"),
    (r"label|seg|region|mask", "regions"),
)


def guess_role(path: Path) -> str:
    """The role a file name suggests, else "other"."""
    name = path.name.lower()
    for pattern, role in ROLE_HINTS:
        if re.search(pattern, name):
            return role
    return "other"


class AddImageDialog(QtWidgets.QDialog):
    """Role, units (for "other") and whether to save into the manifest."""

    def __init__(self, path: Path, can_save: bool, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add image as overlay")
        form = QtWidgets.QFormLayout(self)
        form.addRow("Image:", QtWidgets.QLabel(path.name))
        self.role_combo = QtWidgets.QComboBox()
        for role in ROLES:
            if role != "anatomical":
                units = f" ({ROLE_UNITS[role]})" if ROLE_UNITS[role] else ""
                self.role_combo.addItem(f"{ROLE_QUANTITY[role]}{units}", role)
        self.role_combo.setCurrentIndex(self.role_combo.findData(guess_role(path)))
        form.addRow("Role:", self.role_combo)
        self.units_edit = QtWidgets.QLineEdit()
        self.units_edit.setPlaceholderText("e.g. ms, %, mL/100 g/min")
        self.units_edit.setMaxLength(40)
        form.addRow("Units (other image):", self.units_edit)
        self.save_box = QtWidgets.QCheckBox("Also save it into the study's manifest")
        self.save_box.setEnabled(can_save)
        if not can_save:
            self.save_box.setToolTip("Only a study opened from its study.toml has a manifest")
        form.addRow(self.save_box)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.role_combo.currentIndexChanged.connect(self._on_role)
        self._on_role()

    @property
    def role(self) -> str:
        return str(self.role_combo.currentData())

    def _on_role(self, *_: object) -> None:
        self.units_edit.setEnabled(self.role == "other")


class ImageAdding:
    """File ▸ Add image…, Shift + drop, and saving the added images into the manifest."""

    def _choose_overlay_file(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Add image as overlay", "",
                                                        "NIfTI (*.nii *.nii.gz);;All files (*)")
        if path:
            self.add_overlay(Path(path))

    def _choose_overlay_folder(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Add DICOM series as overlay")
        if path:
            self.add_overlay(Path(path))

    def ask_overlay(self, path: Path) -> tuple[str, str, bool] | None:
        """(role, units, save into the manifest) for ``path``, or None when cancelled (tests
        replace this)."""
        dialog = AddImageDialog(path, can_save=self.scene is not None and self.scene.study.manifest is not None,
                                parent=self)
        if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted:
            return None
        return dialog.role, dialog.units_edit.text(), dialog.save_box.isChecked()

    def ask_replace(self, message: str) -> bool:
        """Whether to replace the timepoint's image of that role (tests replace this)."""
        answer = QtWidgets.QMessageBox.question(self, "Replace image", message)
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    def add_overlay(self, path: Path) -> bool:
        """Add ``path`` to the timepoint on screen; True when it was added."""
        if self.scene is None:
            self.show_error("Open a study first: an overlay is added to the timepoint on screen", title="Add image")
            return False
        choice = self.ask_overlay(path)
        if choice is None:
            return False
        role, units, save = choice
        try:
            try:
                self.scene.add_image(path, role, units)
            except ImageExists as exists:
                if not self.ask_replace(str(exists)):
                    return False
                self.scene.add_image(path, role, units, replace=True)
        except ViewerError as exc:
            self.show_error(str(exc), title="Image not added")
            return False
        self.statusBar().showMessage(f"{path.name} added to {self.scene.timepoint.label} as {ROLE_QUANTITY[role]}", 10_000)
        self.layer_panel.select_role(role)
        self._update_added_action()
        if save:
            self.save_added_images()
        return True

    def save_added_images(self) -> None:
        """File ▸ Save added images into the study: the shown timepoint's, into its manifest."""
        if self.scene is None:
            return
        try:
            placed = self.scene.save_added_images()
        except ViewerError as exc:
            self.show_error(str(exc), title="Added images not saved")
            return
        finally:
            self._update_added_action()
        names = ", ".join(f"{role} = {path.name}" for role, path in placed.items())
        self.statusBar().showMessage(f"saved into the manifest: {names}", 10_000)

    def _update_added_action(self, **_: object) -> None:
        added = self.scene is not None and bool(self.scene.added_images.get(self.scene.timepoint.label))
        self.save_added_action.setEnabled(added)
