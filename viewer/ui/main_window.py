"""The main window: opens studies, wires the Scene to the views and panels, keeps preferences.

The window is the controller of PRODUCT.md §5: it owns the Scene of the open study, turns the
views' requests (click, wheel, right-drag) into Scene changes, and redraws from Scene events.
Slicing and statistics run in worker threads (`viewer.ui.workers`); stale results are dropped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from viewer import APP_NAME, __version__
from viewer.core.errors import ViewerError
from viewer.core.io.study import open_path
from viewer.core.scene import Scene
from viewer.core.spaces import ORIENTATIONS, Plane
from viewer.ui.ortho import LAYOUTS, OrthoViews
from viewer.ui.workers import Jobs, slice_job

ORGANIZATION = "cell-therapy-viewer"
APPLICATION = "viewer"
MAX_RECENT = 8
#: Journaled region edits are also forced to disk on this timer (each edit is written at once).
AUTOSAVE_INTERVAL_MS = 30_000


def recovery_folder_for(study) -> Path:
    """Where a study's region edits are journaled: beside its manifest if writable, else the
    user's cache folder."""
    from viewer.core.recovery import default_recovery_folder

    if study.manifest is not None and os.access(study.manifest.parent, os.W_OK):
        return default_recovery_folder(study.manifest.parent)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "cell-therapy-viewer" / "recovery"


def default_settings() -> QtCore.QSettings:
    """User preferences in an INI file in the platform's configuration folder."""
    return QtCore.QSettings(QtCore.QSettings.Format.IniFormat, QtCore.QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


class MainWindow(QtWidgets.QMainWindow):
    """The application window.

    Signals:
        frame_drawn(str): a view showed a new image (orientation) — tests and start-up timing.
        stats_ready(): the region statistics of the current timepoint arrived.
    """

    frame_drawn = QtCore.Signal(str)
    stats_ready = QtCore.Signal()
    #: a report was written (its path) — tests and the status bar
    report_written = QtCore.Signal(str)

    def __init__(self, settings: QtCore.QSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or default_settings()
        self.scene: Scene | None = None
        self.jobs = Jobs(parent=self)
        self.jobs.finished.connect(self._on_job_finished)
        self.jobs.failed.connect(self._on_job_failed)
        # statistics get their own thread, so numbers never queue behind slice redraws
        self._stats_pool = QtCore.QThreadPool(self)
        self._stats_pool.setMaxThreadCount(1)
        self.stats_jobs = Jobs(self._stats_pool, parent=self)
        self.stats_jobs.finished.connect(self._on_job_finished)
        self.stats_jobs.failed.connect(self._on_job_failed)
        self.last_error: str | None = None
        self.last_notice: str | None = None
        self._samples: dict[str, tuple[tuple, dict]] = {}
        self._shown_key: dict[str, tuple] = {}
        self._stats_requested = False
        self.layer_panel: QtWidgets.QWidget | None = None
        self.region_panel: QtWidgets.QWidget | None = None
        self.annotation_panel: QtWidgets.QWidget | None = None
        self.prediction_panel: QtWidgets.QWidget | None = None
        self.import_dialog: QtWidgets.QDialog | None = None  # the series browser, once opened
        self.setWindowTitle("Cell-therapy viewer")
        self.setAcceptDrops(True)
        self.resize(1500, 900)
        self.ortho = OrthoViews(self._make_volume_view)
        self.setCentralWidget(self.ortho)
        self.readout = QtWidgets.QLabel("Open a study (File ▸ Open study…, or drop a study.toml here)")
        self.readout.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.readout.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop | QtCore.Qt.AlignmentFlag.AlignLeft)
        self.readout.setWordWrap(True)
        self._side = QtWidgets.QTabWidget()
        self._side_dock = QtWidgets.QDockWidget("Study", self)
        self._side_dock.setObjectName("study-dock")
        side = QtWidgets.QWidget()
        side_layout = QtWidgets.QVBoxLayout(side)
        cursor_box = QtWidgets.QGroupBox("Cursor")
        QtWidgets.QVBoxLayout(cursor_box).addWidget(self.readout)
        side_layout.addWidget(cursor_box)
        side_layout.addWidget(self._side, 1)
        self._side_dock.setWidget(side)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, self._side_dock)
        self._side_dock.setMinimumWidth(560)
        for orientation, view in self.ortho.views.items():
            view.cursor_requested.connect(self._on_cursor_requested)
            view.slice_step_requested.connect(lambda steps, o=orientation: self._on_slice_step(o, steps))
            view.window_level_requested.connect(self._on_window_level)
            view.stroke_started.connect(self._on_stroke_started)
            view.stroke_finished.connect(self._on_stroke_finished)
        self._build_menus()
        self._restore_preferences()
        self._autosave = QtCore.QTimer(self)
        self._autosave.setInterval(AUTOSAVE_INTERVAL_MS)
        self._autosave.timeout.connect(lambda: self.scene.flush_journals() if self.scene is not None else None)
        self._autosave.start()
        self.statusBar().showMessage("Ready")

    # -- menus and preferences ------------------------------------------------------------------
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&Open study…", self._choose_study, QtGui.QKeySequence.StandardKey.Open)
        self._action(file_menu, "Open &image (NIfTI)…", self._choose_image)
        self._action(file_menu, "Open &DICOM folder…", self._choose_dicom_folder)
        self._action(file_menu, "&Import DICOM exam…", self._choose_exam, QtGui.QKeySequence("Ctrl+I"))
        self.recent_menu = file_menu.addMenu("Open &recent")
        file_menu.addSeparator()
        self._action(file_menu, "Save &screenshot of the window…", lambda: self._choose_screenshot(None))
        shots = file_menu.addMenu("Save screenshot of a &view")
        for orientation in ORIENTATIONS:
            self._action(shots, orientation.capitalize() + "…", lambda o=orientation: self._choose_screenshot(o))
        file_menu.addSeparator()
        self.report_action = self._action(file_menu, "Export &report (PDF)…", self._choose_report,
                                          QtGui.QKeySequence("Ctrl+P"))
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QtGui.QKeySequence.StandardKey.Quit)

        edit_menu = self.menuBar().addMenu("&Edit")
        self._action(edit_menu, "&Undo", lambda: self.run_action("undo"), QtGui.QKeySequence.StandardKey.Undo)
        self._action(edit_menu, "&Redo", lambda: self.run_action("redo"), QtGui.QKeySequence.StandardKey.Redo)
        edit_menu.addSeparator()
        self._action(edit_menu, "&Save regions", lambda: self.run_action("save"), QtGui.QKeySequence.StandardKey.Save)

        view_menu = self.menuBar().addMenu("&View")
        names = {"1x3": "1 × 3", "1+2": "One large + two small", "2x2": "2 × 2 with 3D"}
        for index, layout in enumerate(LAYOUTS, start=1):
            self._action(view_menu, f"Layout {names[layout]}", lambda n=layout: self.set_layout(n), QtGui.QKeySequence(str(index)))
        view_menu.addSeparator()
        self.radiological_action = self._action(view_menu, "&Radiological convention", self._toggle_radiological)
        self.radiological_action.setCheckable(True)
        self.radiological_action.setChecked(True)
        self._action(view_menu, "&Reset view", self.reset_views, QtGui.QKeySequence("R"))
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "&About", self._about)

    def _action(self, menu: QtWidgets.QMenu, text: str, slot, shortcut: Any = None) -> QtGui.QAction:
        action = QtGui.QAction(text, self)
        if shortcut is not None:
            action.setShortcut(shortcut)
            action.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(lambda checked=False: slot())
        menu.addAction(action)
        self.addAction(action)
        return action

    def _restore_preferences(self) -> None:
        layout = str(self.settings.value("view/layout", "1x3"))
        if layout in LAYOUTS and layout != "2x2":  # the 3D view is never built at start-up
            self.ortho.set_layout(layout)
        radiological = str(self.settings.value("view/radiological", "true")).lower() != "false"
        self.radiological_action.setChecked(radiological)
        self._refresh_recent_menu()

    def _remember(self, key: str, value: Any) -> None:
        self.settings.setValue(key, value)
        self.settings.sync()

    def recent_studies(self) -> list[str]:
        value = self.settings.value("recent/studies", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _add_recent(self, path: Path) -> None:
        entries = [str(path)] + [p for p in self.recent_studies() if p != str(path)]
        self._remember("recent/studies", entries[:MAX_RECENT])
        self._refresh_recent_menu()

    def _refresh_recent_menu(self) -> None:
        self.recent_menu.clear()
        for entry in self.recent_studies():
            action = self.recent_menu.addAction(entry)
            action.triggered.connect(lambda checked=False, p=entry: self.open(p))
        self.recent_menu.setEnabled(bool(self.recent_studies()))

    # -- opening -------------------------------------------------------------------------------
    def open(self, path: str | os.PathLike[str]) -> bool:
        """Open a study, a NIfTI file or a DICOM folder; errors become a dialog, not a crash.

        A folder or DICOMDIR holding several image series opens the series browser instead
        (True: the path was handed to it; the study it writes is opened when imported)."""
        if self._offer_series_browser(Path(path)):
            return True
        try:
            study = open_path(Path(path))
            scene = Scene(study, radiological=self.radiological_action.isChecked(),
                          recovery_folder=recovery_folder_for(study), editing_lock=True)
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
        self._add_recent(Path(path).resolve())
        if self._reconcile(scene):
            self._offer_recovery(scene)
        return True

    # -- crash recovery and the study lock ----------------------------------------------------------
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
            restored = 0
            for info in infos:
                try:
                    scene.recover(info)
                    restored += info.n_edits
                except ViewerError as exc:
                    self.show_error(str(exc))
            self.statusBar().showMessage(f"recovered {restored} unsaved region edit(s)", 10_000)
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

    def show_notice(self, message: str, title: str) -> None:
        """A warning the user should read, without stopping the app (tests read ``last_notice``)."""
        self.last_notice = message
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Warning, title, message, parent=self)
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.statusBar().showMessage(message, 15_000)

    def show_error(self, message: str, title: str = "Cannot open") -> None:
        """The same one-line message the command line prints, in a dialog; the app keeps running."""
        self.last_error = message
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Critical, title, message, parent=self)
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.statusBar().showMessage(f"error: {message}", 10_000)

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

    # -- exam import (the series browser) ------------------------------------------------------------
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

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:  # noqa: N802
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            event.acceptProposedAction()
            self.open(urls[0].toLocalFile())

    # -- scene wiring -------------------------------------------------------------------------------
    def _set_scene(self, scene: Scene, panels: dict[str, QtWidgets.QWidget] | None = None) -> None:
        """Show ``scene``; ``panels`` come from :meth:`_build_panels` (built before anything of
        the previous study is torn down, so a study that cannot be shown leaves the window as
        it was)."""
        panels = panels if panels is not None else self._build_panels(scene)
        if self.scene is not None and self.scene is not scene:
            self.scene.close()  # its lock released; unsaved edits stay in its journals
        self.scene = scene
        self._samples.clear()
        self._shown_key.clear()
        scene.results.submit = self._submit_stats
        self._apply_remembered_colormaps(scene)
        scene.events.connect("cursor", self._on_cursor)
        scene.events.connect("display", self._on_display)
        scene.events.connect("order", self.refresh_all)
        scene.events.connect("timepoint", self._on_timepoint)
        scene.events.connect("radiological", self.refresh_all)
        scene.events.connect("regions", self._on_regions_edited)
        scene.events.connect("lock", self._on_study_locked)
        scene.events.connect("stats", self._on_stats)
        scene.events.connect("stats_failed", self._on_stats_failed)
        self._install_panels(scene, panels)
        title = scene.study.id if scene.study.manifest else scene.study.timepoints[0].label
        self.setWindowTitle(f"{title} — Cell-therapy viewer")
        self._stats_requested = False
        self.refresh_all()

    def _build_panels(self, scene: Scene) -> dict[str, QtWidgets.QWidget]:
        """The side panels of ``scene``, not yet shown (may raise: nothing is replaced yet)."""
        from viewer.ui.annotation_panel import AnnotationPanel
        from viewer.ui.layer_panel import LayerPanel
        from viewer.ui.prediction_panel import PredictionPanel
        from viewer.ui.region_panel import RegionPanel

        return {"Regions": RegionPanel(scene), "Layers": LayerPanel(scene), "Annotate": AnnotationPanel(scene),
                "Predictions": PredictionPanel(scene)}

    def _install_panels(self, scene: Scene, panels: dict[str, QtWidgets.QWidget]) -> None:
        from viewer.ui.colorbar import ColorBarStack

        while self._side.count():
            widget = self._side.widget(0)
            self._side.removeTab(0)
            widget.deleteLater()
        self.layer_panel = panels["Layers"]
        self.region_panel = panels["Regions"]
        self.region_panel.region_activated.connect(self._go_to_region)
        self.annotation_panel = panels["Annotate"]
        self.annotation_panel.tool_changed.connect(self._on_tool_changed)
        self.annotation_panel.action_requested.connect(self.run_action)
        self.annotation_panel.status.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.prediction_panel = panels["Predictions"]
        self.prediction_panel.models_changed.connect(self._on_models_changed)
        for title in ("Regions", "Layers", "Annotate", "Predictions"):
            self._side.addTab(panels[title], title)
        for view in self.ortho.views.values():
            view.set_colorbars(ColorBarStack(scene))
        if self.ortho.volume_view is not None:
            self.ortho.volume_view.deleteLater()
            self.ortho.volume_view = None
            if self.ortho.layout_name == "2x2":
                self.ortho.set_layout("2x2")

    def _apply_remembered_colormaps(self, scene: Scene) -> None:
        for role in list(scene.display):
            colormap = self.settings.value(f"colormap/{role}")
            if colormap:
                try:
                    scene.set_display(role, colormap=str(colormap))
                except ValueError:
                    continue

    def _make_volume_view(self) -> QtWidgets.QWidget:
        if self.scene is None:
            placeholder = QtWidgets.QLabel("3D view: open a study first")
            placeholder.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
            return placeholder
        from viewer.ui.volume_view import VolumeView

        return VolumeView(self.scene)

    # -- requests from the views -------------------------------------------------------------------
    def _on_cursor_requested(self, world: np.ndarray) -> None:
        if self.scene is not None:
            self.scene.set_cursor(world)

    def _on_slice_step(self, orientation: str, steps: int) -> None:
        if self.scene is not None:
            self.scene.step_slice(orientation, steps)

    def _on_window_level(self, d_width: float, d_center: float) -> None:
        """Right-drag: horizontal changes the window width, vertical the level (centre)."""
        if self.scene is None:
            return
        low, high = self.scene.display["anatomical"].levels
        width = max(high - low, 1e-6)
        center = (low + high) / 2 + d_center * width
        width = max(width * (1.0 + d_width), 1e-6)
        self.scene.set_display("anatomical", levels=(center - width / 2, center + width / 2))

    def _go_to_region(self, label: int) -> None:
        if self.scene is None:
            return
        from viewer.core.spaces import label_box

        labels = self.scene.volumes.get("regions")
        if labels is None:
            return
        box = label_box(np.asarray(labels.data) == label)
        if box is not None:
            center = np.array([(b.start + b.stop - 1) / 2 for b in box])
            self.scene.set_cursor(labels.voxel_to_world_points(center))

    # -- annotation ------------------------------------------------------------------------------
    def _on_models_changed(self) -> None:
        """A user model was added: recompute every timepoint's numbers (predictions included)."""
        if self.scene is not None:
            self.scene.results.invalidate()

    def _on_tool_changed(self, tool) -> None:
        for view in self.ortho.views.values():
            view.tool = tool
        if tool is not None and hasattr(tool, "on_preview"):
            tool.on_preview = self._show_lasso
        self.statusBar().showMessage(f"tool: {tool.name if tool else 'navigate'}", 5000)

    def _show_lasso(self, points) -> None:
        for view in self.ortho.views.values():
            view.show_outline(points if points and view.plane is not None and
                              abs(view.plane.world_to_pixel(np.asarray(points[0]))[2]) < 1e-3 else [])

    def run_action(self, action: str) -> None:
        """Annotation actions from the panel or the Edit menu."""
        if self.scene is None:
            return
        editable = self.scene.editable()
        if action == "undo":
            editable.undo()
        elif action == "redo":
            editable.redo()
        elif action == "interpolate":
            self._interpolate()
        elif action == "propose":
            self._propose()
        elif action == "carry":
            count = self.scene.carry_regions()
            self.statusBar().showMessage(f"regions copied to {count} other timepoint(s)", 8000)
        elif action == "save":
            self.save_regions()
        elif action == "export":
            self._export_table()

    def _interpolate(self) -> None:
        from viewer.core.edit_tools import interpolate_slices

        assert self.scene is not None and self.annotation_panel is not None
        orientation = self.annotation_panel.interpolate_axis.currentText()
        axis = self.scene.plane(orientation).normal_axis
        label = self.annotation_panel.options.label
        edit = interpolate_slices(self.scene.editable(), label, axis)
        message = "filled between slices" if edit is not None else "nothing to fill: draw the region on two or more slices"
        self.statusBar().showMessage(message, 8000)

    def _propose(self) -> None:
        """Core/penumbra proposal from ADC+Tmax or sodium, computed in a worker."""
        from viewer.core.quant.perfusion import propose_core_penumbra

        scene = self.scene
        assert scene is not None
        target = scene.editable().labels
        volumes = scene.volumes
        self.statusBar().showMessage("proposing core and penumbra…")
        self.jobs.submit("propose", lambda: propose_core_penumbra(
            target, adc=volumes.get("adc"), tmax=volumes.get("tmax"), sodium=volumes.get("sodium")))

    def _apply_proposal(self, proposal) -> None:
        from viewer.core.edit_tools import apply_proposal

        assert self.scene is not None and self.annotation_panel is not None
        if proposal.method is None:
            self.show_error("; ".join(proposal.notes) or "no map to propose core and penumbra from")
            return
        panel = self.annotation_panel
        core = panel.add_region("core")
        penumbra = panel.add_region("penumbra")
        apply_proposal(self.scene.editable(), proposal, core, penumbra)
        self.statusBar().showMessage(
            f"proposal ({proposal.method}): core {proposal.core_ml:.1f} mL, penumbra {proposal.penumbra_ml:.1f} mL", 10000)

    def _on_regions_edited(self, timepoint: str, labels, box) -> None:
        """Redraw only the views an edit crosses (the scene's results re-measure the regions)."""
        assert self.scene is not None
        if timepoint != self.scene.timepoint.label:
            return  # another timepoint (recovery, carried regions): its numbers follow by themselves
        for orientation in ORIENTATIONS:
            plane = self.scene.plane(orientation)
            axis = plane.normal_axis
            if box is None or axis is None or box[axis].start <= (plane.slice_index or 0) < box[axis].stop:
                self._refresh(orientation, roles={"regions"})
        self._update_readout()

    def _on_stroke_started(self) -> None:
        if self.scene is not None:
            self.scene.results.hold(True)  # during a stroke the numbers follow once, at its end

    def _on_stroke_finished(self) -> None:
        if self.scene is not None:
            self.scene.results.hold(False)

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

    def _export_table(self) -> None:
        from viewer.core.quant.stats import StudyStats

        assert self.scene is not None
        current = self.scene.results.latest(self.scene.timepoint.label)
        if current is None:
            self.show_error("the region table is still being computed")
            return
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export region table", "regions.csv", "CSV (*.csv)")
        if path:
            from viewer.core.io.labels import export_region_table_csv

            export_region_table_csv(StudyStats(self.scene.study.id, [current], []).to_csv(), path)

    def set_layout(self, name: str) -> None:
        self.ortho.set_layout(name)
        self._remember("view/layout", name)

    def reset_views(self) -> None:
        for view in self.ortho.views.values():
            view.reset_view()
        if self.ortho.volume_view is not None and hasattr(self.ortho.volume_view, "reset_camera"):
            self.ortho.volume_view.reset_camera()

    def _toggle_radiological(self) -> None:
        radiological = self.radiological_action.isChecked()
        self._remember("view/radiological", "true" if radiological else "false")
        if self.scene is not None:
            self.scene.set_radiological(radiological)

    # -- scene events → redraw ------------------------------------------------------------------------
    def _plane_key(self, plane: Plane) -> tuple:
        assert self.scene is not None
        return (self.scene.timepoint.label, plane.orientation, plane.slice_index, self.scene.radiological,
                tuple(self.scene.order))

    def refresh_all(self) -> None:
        """Resample every view (new timepoint, order, convention or study)."""
        self._samples.clear()
        for orientation in ORIENTATIONS:
            self._refresh(orientation)
        self._update_readout()

    def _refresh(self, orientation: str, resample: bool = True, roles: set[str] | None = None) -> None:
        """Ask a worker for a view's image; only the newest request per view is drawn.

        ``resample=False`` recomposites the cached samples; ``roles`` resamples only those
        layers (e.g. the label map after an edit) and reuses the others' samples.
        """
        assert self.scene is not None
        plane = self.scene.plane(orientation)
        key = self._plane_key(plane)
        layers = self.scene.layers()
        cached = self._samples.get(orientation)
        reusable = cached is not None and cached[0] == key
        samples = cached[1] if reusable and (not resample or roles) else None
        indices = {i for i, layer in enumerate(layers) if roles and layer.volume.role in roles}
        job = slice_job(self.scene.slice_layers(plane), plane, samples, indices if samples is not None else None)
        self._shown_key[orientation] = key
        self.jobs.submit(f"slice:{orientation}", job)

    def _on_cursor(self) -> None:
        assert self.scene is not None
        for orientation, view in self.ortho.views.items():
            key = self._plane_key(self.scene.plane(orientation))
            if key != self._shown_key.get(orientation):
                self._refresh(orientation)
            view.set_crosshair(self.scene.cursor)
        self._update_readout()

    def _on_display(self, role: str) -> None:
        """A display change recomposites cached samples; showing a hidden layer resamples."""
        assert self.scene is not None
        props = self.scene.display[role]
        index = next((i for i, layer in enumerate(self.scene.layers()) if layer.volume.role == role), None)
        for orientation in ORIENTATIONS:
            cached = self._samples.get(orientation)
            needs_samples = props.visible and cached is not None and index not in cached[1]
            self._refresh(orientation, resample=needs_samples)
        if self.settings.value(f"colormap/{role}") != props.colormap:  # not on every slider step
            self._remember(f"colormap/{role}", props.colormap)

    def _on_timepoint(self, index: int) -> None:
        self.refresh_all()
        if self.scene is not None and self.scene.results.latest(self.scene.timepoint.label) is not None:
            self.stats_ready.emit()

    def _on_job_finished(self, key: str, generation: int, result: object) -> None:
        if key.startswith("slice:"):
            orientation = key.split(":", 1)[1]
            plane, rgb, samples = result  # type: ignore[misc]
            self._samples[orientation] = (self._plane_key(plane), samples)
            self._show(orientation, plane, rgb)
        elif key.startswith("stats:"):
            if self.scene is not None:
                self.scene.results.deliver(result)  # merged by version; the scene emits "stats"
        elif key == "propose":
            self._apply_proposal(result)
        elif key == "report":
            self.statusBar().showMessage(f"Report written to {result}", 15_000)
            self.report_written.emit(str(result))

    def _on_job_failed(self, key: str, generation: int, message: str) -> None:
        if key == "report":
            self.show_error(message.removeprefix("ViewerError: "), title="Report not written")
            return
        self.show_error(f"{key}: {message}")

    def _show(self, orientation: str, plane: Plane, rgb: np.ndarray) -> None:
        assert self.scene is not None
        view = self.ortho.views[orientation]
        anatomy = self.scene.anatomy
        axis = plane.normal_axis if plane.normal_axis is not None else 0
        index = (plane.slice_index or 0) + 1
        x, y, z = self.scene.cursor
        info = f"{orientation} {index}/{anatomy.shape[axis]}\n({x:.1f}, {y:.1f}, {z:.1f}) mm"
        view.show_image(plane, rgb, info)
        view.set_crosshair(self.scene.cursor)
        self.frame_drawn.emit(orientation)
        if not self._stats_requested and all(v.plane is not None for v in self.ortho.views.values()):
            # statistics start once the first frames are up, so they do not delay them
            self._stats_requested = True
            self.scene.results.request()

    def _update_readout(self) -> None:
        if self.scene is None:
            return
        x, y, z = self.scene.cursor
        rows = [f"<b>({x:.1f}, {y:.1f}, {z:.1f}) mm</b> &nbsp; {self.scene.timepoint.label}"]
        for name, value, units in self.scene.readout():
            rows.append(f"{name}: <b>{value}</b> {units}".rstrip())
        self.readout.setText("<br>".join(rows))
        self.statusBar().showMessage(f"({x:.1f}, {y:.1f}, {z:.1f}) mm")

    # -- statistics -----------------------------------------------------------------------------------
    def _submit_stats(self, request) -> None:
        """Run a statistics request of the scene's results in the statistics thread."""
        self.stats_jobs.submit(f"stats:{request.timepoint}", request.run)

    def _on_stats(self, timepoint: str, **_: Any) -> None:
        """New numbers (the panels show them themselves): the readout's ¹⁹F calibration may
        be known now, and tests and the start-up probe hear of the current timepoint's."""
        if self.scene is not None and timepoint == self.scene.timepoint.label:
            self._update_readout()
            self.stats_ready.emit()

    def _on_stats_failed(self, timepoint: str, message: str) -> None:
        self.show_error(message, title="Numbers not computed")

    # -- closing -----------------------------------------------------------------------------------------
    def unsaved_timepoints(self) -> list[str]:
        if self.scene is None:
            return []
        return [label for label, editable in self.scene.editables().items() if editable.dirty]

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802
        """Unsaved region edits: ask to save, discard or cancel (the journal still holds them)."""
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

    # -- screenshots and about -------------------------------------------------------------------------
    def save_screenshot(self, path: str | os.PathLike[str], orientation: str | None = None) -> Path:
        """Save the window (or one view) as PNG, atomically."""
        from viewer.core.io.atomic import atomic_path

        widget: QtWidgets.QWidget = self if orientation is None else self.ortho.views[orientation]
        image = widget.grab()
        if orientation is None:
            self._paint_3d_frame(image)
        target = Path(path)
        with atomic_path(target, suffix=".png") as tmp:
            if not image.save(str(tmp), "PNG"):
                raise ViewerError(f"{target}: could not write the PNG")
        return target

    def _paint_3d_frame(self, image: QtGui.QPixmap) -> None:
        """Qt cannot grab a native OpenGL child window: paint VTK's own frame in its place."""
        view = self.ortho.volume_view
        vtk_widget = getattr(view, "vtk_widget", None)
        if view is None or vtk_widget is None or not view.isVisible():
            return
        frame = np.ascontiguousarray(view.grab_frame())
        height, width = frame.shape[:2]
        picture = QtGui.QImage(frame.data, width, height, 3 * width, QtGui.QImage.Format.Format_RGB888).copy()
        origin = vtk_widget.mapTo(self, QtCore.QPoint(0, 0))
        painter = QtGui.QPainter(image)
        target = QtCore.QRectF(origin.x(), origin.y(), vtk_widget.width(), vtk_widget.height())
        painter.drawImage(target, picture)
        painter.end()

    def _choose_screenshot(self, orientation: str | None) -> None:
        name = "window" if orientation is None else orientation
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save screenshot", f"{name}.png", "PNG image (*.png)")
        if path:
            try:
                self.save_screenshot(path, orientation)
            except ViewerError as exc:
                self.show_error(str(exc))

    # -- reports ----------------------------------------------------------------------------------
    def _choose_report(self) -> None:
        if self.scene is None:
            self.show_error("open a study first", title="Report not written")
            return
        from viewer.ui.report_dialog import ReportDialog

        dialog = ReportDialog(self.scene.study, self.scene.timepoint.label, self.scene.cursor, self.scene.radiological,
                              self.settings, self)
        if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted:
            return
        dialog.remember()
        self.export_report(dialog.output(), dialog.options(), dialog.timepoint_label())

    def export_report(self, output: str | os.PathLike[str], options, timepoint_label: str | None = None) -> bool:
        """Write the PDF report of the open study in the background (same content as ``viewer report``).

        The edited label maps are copied now, so strokes made while the report is built do not
        change it; the numbers are computed in the statistics thread. Returns False (with an
        error dialog) when the output cannot be written; ``report_written`` is emitted when done.
        """
        from viewer.core.report import (
            build_report,
            check_output_path,
            inputs_from_snapshot,
            snapshot_scene,
            write_report_pdf,
        )

        if self.scene is None:
            self.show_error("open a study first", title="Report not written")
            return False
        output = Path(output)
        try:
            check_output_path(output)
            snapshot = snapshot_scene(self.scene, timepoint_label)
        except ViewerError as exc:
            self.show_error(str(exc), title="Report not written")
            return False

        def job() -> Path:
            report = build_report(snapshot.study, inputs_from_snapshot(snapshot), snapshot.models, options)
            return write_report_pdf(report, output)

        self.statusBar().showMessage(f"Writing report to {output}…")
        self.stats_jobs.submit("report", job)
        return True

    def about_text(self) -> str:
        """The About box: name and version (the same `viewer.__version__` as `--version` and the
        report footer), what it does, and the licences."""
        return (f"{APP_NAME} {__version__}\n\nFuses ¹⁹F MRI, SPIO/Gd, PET and sodium maps on anatomy.\n"
                "Research software — not for clinical decisions.\n\n"
                "BSD-3-Clause. Demo anatomy: MNI ICBM152 2009 (see resources/anatomy/NOTICE.txt); "
                "Qt (PySide6) under the LGPL-3.0.")

    def _about(self) -> None:
        QtWidgets.QMessageBox.about(self, "About", self.about_text())
