"""Opening studies in the main window: files, folders, DICOM exams, drops, and what follows
an open — tidying after a crash, offering unsaved edits back, the study lock's questions.

A mixin of :class:`viewer.ui.main_window.MainWindow` (it uses the window's ``scene``,
``show_error``, ``show_notice``, ``statusBar``, ``_build_panels``, ``_set_scene`` and
``_add_recent``). The questions (``ask_recover``, ``ask_take_over``, ``ask_changed_on_disk``)
are methods so tests can answer them.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from viewer.core.errors import ViewerError
from viewer.core.io.levels_cache import open_levels_cache
from viewer.core.io.study import open_path
from viewer.core.scene import Scene


def recovery_folder_for(study) -> Path:
    """Where a study's region edits are journaled: beside its manifest if writable, else the
    user's cache folder."""
    from viewer.core.recovery import default_recovery_folder

    if study.manifest is not None and os.access(study.manifest.parent, os.W_OK):
        return default_recovery_folder(study.manifest.parent)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "cell-therapy-viewer" / "recovery"


class StudyOpening:
    """Opening, crash recovery on opening, the study lock's prompts, exam import."""

    def open(self, path: str | os.PathLike[str]) -> bool:
        """Open a study, a NIfTI file or a DICOM folder; errors become a dialog, not a crash.

        A folder or DICOMDIR holding several image series opens the series browser instead
        (True: the path was handed to it; the study it writes is opened when imported)."""
        if self._offer_series_browser(Path(path)):
            return True
        if not self.settle_registration():  # unsaved nudges of the study shown: save, discard or stay
            return False
        try:
            study = open_path(Path(path))
            scene = Scene(study, radiological=self.radiological_action.isChecked(),
                          recovery_folder=recovery_folder_for(study), editing_lock=True,
                          levels_cache=open_levels_cache())
            panels = self._build_panels(scene)
        except ViewerError as exc:
            self.show_error(str(exc))
            return False
        except Exception as exc:  # a bug: the window keeps what it showed, and says so
            if os.environ.get("VIEWER_DEBUG"):
                raise
            self.show_error(f"{path}: unexpected {type(exc).__name__}: {exc}")
            return False
        self._set_scene(scene, panels)
        self._restore_workspace(scene)
        self._add_recent(Path(path).resolve())
        if self._reconcile(scene):
            self._offer_recovery(scene)
        return True

    def _reconcile(self, scene: Scene) -> bool:
        """Tidy the study after a crash (PRODUCT.md §5); False when another session holds it
        (then the window is read-only and recovery is left to the session that can save)."""
        from viewer.core.io.study_lock import UNVERIFIABLE, StudyLocked

        try:
            result = scene.reconcile()
            if result.locked is not None and result.locked.status == UNVERIFIABLE:
                message = str(StudyLocked(scene.study.manifest, result.locked))
                if self.ask_take_over(message):
                    result = scene.reconcile(take_over=True)
        except ViewerError as exc:
            self.show_error(str(exc))
            return False
        if result.locked is not None:
            self._enter_read_only(str(StudyLocked(scene.study.manifest, result.locked)) + " — opened read-only")
            return False
        notes = []
        if result.taken_over is not None and result.taken_over.holder is not None:
            notes.append(f"took over the study lock of {result.taken_over.holder.describe()} ({result.taken_over.reason})")
        removed = len(result.files.temporaries) + len(result.files.orphans)
        if removed:
            notes.append(f"an interrupted save was tidied up: {removed} unused file(s) removed")
        if notes:
            self.statusBar().showMessage("; ".join(notes), 10_000)
        return True

    def _offer_recovery(self, scene: Scene) -> None:
        """Region edits of a session that crashed: offer to restore them, or to drop them."""
        infos = scene.recoverable()
        if not infos:
            return
        if self.ask_recover(infos):
            restored, moved = 0, []
            for info in infos:
                try:
                    if scene.recovery_moved(info):
                        moved.append(info.timepoint_label)
                    scene.recover(info)
                    restored += info.n_edits
                except ViewerError as exc:
                    self.show_error(str(exc))
            message = f"recovered {restored} unsaved region edit(s)"
            if moved:
                message += (f"; {', '.join(moved)} was registered again since those edits: check the regions "
                            "against the images")
            self.statusBar().showMessage(message, 15_000)
        else:
            from viewer.core.recovery import discard

            for info in infos:
                discard(info)

    def ask_recover(self, infos) -> bool:
        """The question shown when unsaved edits from a crashed session exist (tests answer it)."""
        lines = [f"{info.timepoint_label}: {info.summary}, last '{info.last_description}'" for info in infos]
        answer = QtWidgets.QMessageBox.question(
            self, "Recover unsaved regions",
            "The viewer closed without saving region edits:\n" + "\n".join(lines) + "\n\nRecover them?",
            QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.No,
            QtWidgets.QMessageBox.StandardButton.Yes)
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    def ask_take_over(self, message: str) -> bool:
        """The study is locked by a session this computer cannot check (another host): take
        the lock over only if the user says that session has ended. Default: no."""
        answer = QtWidgets.QMessageBox.warning(
            self, "Study in use",
            f"{message}.\n\nTake the lock over? Only do so if that session has ended: two sessions "
            "saving one study overwrite each other's regions.",
            QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.No,
            QtWidgets.QMessageBox.StandardButton.No)
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    def ask_changed_on_disk(self, message: str) -> str:
        """The study changed on disk since it was opened: ``"reload"`` (reopen it; the unsaved
        edits come back from the recovery journal, on top of what is saved now),
        ``"overwrite"`` (save anyway) or ``"cancel"``. Default: reload."""
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Warning, "Study changed on disk", message, parent=self)
        box.setInformativeText("Reload the study and re-apply your unsaved edits on top of what is saved now, or save "
                               "anyway — this timepoint's saved regions are then replaced by yours.")
        reload_button = box.addButton("Reload and re-apply my edits", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
        overwrite_button = box.addButton("Save anyway", QtWidgets.QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QtWidgets.QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(reload_button)
        box.exec()
        clicked = box.clickedButton()
        return "reload" if clicked is reload_button else "overwrite" if clicked is overwrite_button else "cancel"

    def _on_study_locked(self, state, message: str) -> None:
        """Another session holds the study this window started editing: say so, ask to take
        over a lock of another host, else continue read-only (the edits stay journaled)."""
        from viewer.core.io.study_lock import UNVERIFIABLE

        scene = self.scene
        if scene is None:
            return
        if state.status == UNVERIFIABLE and self.ask_take_over(message):
            try:
                scene.acquire_lock(take_over=True)
                return
            except ViewerError as exc:
                message = str(exc)
        self._enter_read_only(f"{message} — this window is read-only; your edits are kept in the recovery journal")

    def _enter_read_only(self, message: str) -> None:
        self.show_notice(message, title="Study in use")
        if self.annotation_panel is not None:
            panel = self.annotation_panel
            QtCore.QTimer.singleShot(0, lambda: panel.set_read_only(message))  # not inside the stroke's handler

    def _choose_study(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open study", "", "Study manifest (study.toml);;All files (*)")
        if path:
            self.open(path)

    def _choose_image(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open image", "", "NIfTI (*.nii *.nii.gz);;All files (*)")
        if path:
            self.open(path)

    def _choose_dicom_folder(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open DICOM series folder")
        if path:
            self.open(path)

    def _choose_exam(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Import DICOM exam (folder, CD or PACS export)")
        if path:
            self.import_exam([path])

    def import_exam(self, paths: list[str | os.PathLike[str]], note: str = "") -> QtWidgets.QDialog:
        """Show the series browser on ``paths`` and scan them; the study it writes is opened."""
        from viewer.ui.import_dialog import ImportDialog

        if self.import_dialog is not None:
            self.import_dialog.deleteLater()
        dialog = self.import_dialog = ImportDialog(paths, note, self)
        dialog.study_written.connect(self.open)
        dialog.open()
        dialog.scan()
        return dialog

    def _offer_series_browser(self, path: Path) -> bool:
        """A folder (without study.toml) or DICOMDIR holding several image series: the series
        browser, instead of only the "contains N series" error. Headers only."""
        from viewer.core.io.dicom import list_dicom_series
        from viewer.core.io.dicom_scan import DICOMDIR_NAME
        from viewer.core.io.study import MANIFEST_NAME

        if not (path.is_dir() and not (path / MANIFEST_NAME).exists()) and path.name.upper() != DICOMDIR_NAME:
            return False
        try:
            found = list_dicom_series(path)
        except ViewerError:
            return False  # opening it says what is wrong
        if len(found) < 2:
            return False
        self.import_exam([path], f"{path} holds {len(found)} image series. Choose the role of each (or skip it) "
                                 "and import them as a new study, which then opens.")
        return True

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        """A drop opens what was dropped; with Shift held it adds it to the study on screen."""
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            event.acceptProposedAction()
            if event.modifiers() & QtCore.Qt.KeyboardModifier.ShiftModifier and self.scene is not None:
                self.add_overlay(Path(urls[0].toLocalFile()))
            else:
                self.open(urls[0].toLocalFile())
