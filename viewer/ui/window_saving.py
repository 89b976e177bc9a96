"""Saving regions from the main window, and closing it: one transaction per timepoint
(:meth:`viewer.core.scene.Scene.save_regions`), with the questions a save can raise (another
host's lock, files changed on disk) and the unsaved-edits question on close.

A mixin of :class:`viewer.ui.main_window.MainWindow`.
"""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtGui, QtWidgets

from viewer.core.errors import ViewerError
from viewer.core.scene import Scene


class RegionSaving:
    """Save the regions (asking what a save must ask) and close without losing edits."""

    def save_regions(self) -> Path | None:
        """Save the current timepoint's regions into the study (one transaction, Scene.save_regions).

        Another live session holding the study, or files changed on disk since they were
        read, are told — never overwritten silently; the edits stay in the recovery journal.
        Returns the new label map, or None when nothing was saved.
        """
        scene = self.scene
        assert scene is not None
        if scene.study.manifest is None:
            self.show_error("regions can be saved only for a study opened from its study.toml", title="Regions not saved")
            return None
        try:
            saved = self._save_with_prompts(scene)
        except ViewerError as exc:
            self.show_error(str(exc), title="Regions not saved")
            return None
        if saved is None:
            return None
        if self.annotation_panel is not None:
            self.annotation_panel.set_read_only(None)
        self.statusBar().showMessage(f"regions saved to {saved.map_path}", 8000)
        return saved.map_path

    def _save_with_prompts(self, scene: Scene):
        """Save, asking before taking over another host's lock or overwriting files changed on
        disk; None when the user chose not to save (or to reload)."""
        from viewer.core.io.study_lock import UNVERIFIABLE, StudyChanged, StudyLocked

        take_over = overwrite = False
        while True:
            try:
                return scene.save_regions(overwrite_changed=overwrite, take_over=take_over)
            except StudyLocked as exc:
                if exc.state.status != UNVERIFIABLE or take_over or not self.ask_take_over(str(exc)):
                    raise
                take_over = True
            except StudyChanged as exc:
                if overwrite:
                    raise
                choice = self.ask_changed_on_disk(str(exc))
                if choice == "overwrite":
                    overwrite = True
                    continue
                if choice == "reload":
                    self._reload_keeping_edits(scene)
                else:
                    self.statusBar().showMessage("regions not saved: the study changed on disk", 10_000)
                return None

    def _reload_keeping_edits(self, scene: Scene) -> None:
        """Reopen the study from disk; the unsaved edits are offered back from their journals
        and replayed on top of what another session saved."""
        scene.flush_journals()
        manifest = scene.study.manifest
        assert manifest is not None
        self.open(manifest)

    def unsaved_timepoints(self) -> list[str]:
        if self.scene is None:
            return []
        return [label for label, editable in self.scene.editables().items() if editable.dirty]

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        """Unsaved region edits: ask to save, discard or cancel (the journal still holds them);
        an adjusted registration not saved: the same question, first."""
        if not self.settle_registration():
            event.ignore()
            return
        unsaved = self.unsaved_timepoints()
        if unsaved:
            answer = self.ask_unsaved(unsaved)
            if answer == QtWidgets.QMessageBox.StandardButton.Cancel:
                event.ignore()
                return
            if answer == QtWidgets.QMessageBox.StandardButton.Save:
                if self.save_all_regions() is False:
                    event.ignore()
                    return
            else:
                self._discard_recovery()
        self.save_workspace()
        self.jobs.wait(5_000)
        self.stats_jobs.wait(5_000)
        if self.scene is not None:
            self.scene.close()  # the study lock is released for other windows
        super().closeEvent(event)

    def ask_unsaved(self, unsaved: list[str]) -> QtWidgets.QMessageBox.StandardButton:
        """The question shown on close; a method so tests can answer it."""
        buttons = (QtWidgets.QMessageBox.StandardButton.Save | QtWidgets.QMessageBox.StandardButton.Discard
                   | QtWidgets.QMessageBox.StandardButton.Cancel)
        return QtWidgets.QMessageBox.question(
            self, "Unsaved regions", f"Regions of {', '.join(unsaved)} have unsaved edits. Save them?", buttons,
            QtWidgets.QMessageBox.StandardButton.Save)

    def save_all_regions(self) -> bool:
        assert self.scene is not None
        current = self.scene.timepoint_index
        ok = True
        for index, timepoint in enumerate(self.scene.study.timepoints):
            if timepoint.label in self.unsaved_timepoints():
                self.scene.set_timepoint(index)
                ok = self.save_regions() is not None and ok
        self.scene.set_timepoint(current)
        return ok

    def _discard_recovery(self) -> None:
        """The user chose to discard: the recovery journals go too."""
        if self.scene is not None:
            self.scene.discard_journals()
