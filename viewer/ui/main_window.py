"""The main window: menus, preferences, the Scene wired to the views and panels, redraws.

The window is a view of the Scene of the open study (PRODUCT.md §5): it turns the views'
requests (click, wheel, right-drag) into Scene changes and redraws from Scene events. Slicing
runs in worker threads (`viewer.ui.workers`, stale results dropped); the numbers are the
scene's results' (`viewer.core.results`), run in the statistics thread. What else a window
does lives beside it, by responsibility:

* ``window_opening``   opening studies, crash recovery on opening, the study lock's prompts;
* ``window_adding``    an image added as an overlay of the timepoint on screen;
* ``window_saving``    saving regions with its questions, closing with unsaved edits;
* ``window_annotation`` the annotation panel's tools and actions;
* ``window_measuring`` the ruler, ellipse and sphere, and the measurements drawn in the views;
* ``window_compare``   two timepoints side by side (the compare layout);
* ``window_registering`` Study ▸ Register: timepoints to the reference, with progress and Cancel;
* ``window_nudging``   Study ▸ Adjust registration: a transform nudged by hand, undoable, saved;
* ``window_outputs``   screenshots, the PDF report, the region table's CSV, About;
* ``window_workspace`` the study workspace restored on opening, saved on leaving.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from viewer.core.scene import Scene
from viewer.core.spaces import ORIENTATIONS, Plane
from viewer.ui.ortho import LAYOUTS, OrthoViews
from viewer.ui.window_adding import ImageAdding
from viewer.ui.window_annotation import AnnotationActions
from viewer.ui.window_compare import COMPARE, TimepointComparing
from viewer.ui.window_nudging import Nudging
from viewer.ui.window_registering import Registering
from viewer.ui.window_measuring import MeasureActions
from viewer.ui.window_opening import StudyOpening, recovery_folder_for
from viewer.ui.window_outputs import WindowOutputs
from viewer.ui.window_prefetching import PREFETCH_KEY, SlicePrefetching
from viewer.ui.window_pacs import PacsRetrieving
from viewer.ui.window_saving import RegionSaving
from viewer.ui.window_workspace import WorkspaceKeeping
from viewer.ui.workers import Jobs, slice_job

__all__ = ["MainWindow", "default_settings", "recovery_folder_for"]

ORGANIZATION = "cell-therapy-viewer"
APPLICATION = "viewer"
MAX_RECENT = 8
#: Journaled region edits are also forced to disk on this timer (each edit is written at once).
AUTOSAVE_INTERVAL_MS = 30_000
#: The layout a first start opens with (then the user's last choice).
DEFAULT_LAYOUT = "1+2"


class ReadoutHolder(QtWidgets.QWidget):
    """Holds the cursor readout (a word-wrapped rich-text label) without a layout of its own.

    A label's new text asks its parent to lay out again: in the side panel's layout that was
    the whole dock (tabs, tables, plot) on every slice step and mouse move: 2.1 ms with the
    label's painting, 0.9 ms here. The label fills this widget; the side panel is laid out
    again only when the text needs another height (a layer more, a longer value wrapping).
    (An opaque label would save 0.4 ms more, but its fill shows against the group box's.)"""

    def __init__(self, label: QtWidgets.QLabel) -> None:
        super().__init__()
        self._label = label
        label.setParent(self)
        policy = QtWidgets.QSizePolicy(QtWidgets.QSizePolicy.Policy.Preferred, QtWidgets.QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt naming)
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802
        return self._label.heightForWidth(width)

    def sizeHint(self) -> QtCore.QSize:  # noqa: N802
        return self._label.sizeHint()

    def minimumSizeHint(self) -> QtCore.QSize:  # noqa: N802
        return self._label.minimumSizeHint()

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._label.setGeometry(self.rect())

    def event(self, event: QtCore.QEvent) -> bool:
        if event.type() == QtCore.QEvent.Type.LayoutRequest and self.heightForWidth(self.width()) != self.height():
            self.updateGeometry()  # the new text needs another height: the side panel makes room
        return super().event(event)


def default_settings() -> QtCore.QSettings:
    """User preferences in an INI file in the platform's configuration folder."""
    return QtCore.QSettings(QtCore.QSettings.Format.IniFormat, QtCore.QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


class MainWindow(StudyOpening, ImageAdding, RegionSaving, AnnotationActions, MeasureActions, TimepointComparing,
                 Registering, Nudging, WindowOutputs, WorkspaceKeeping, PacsRetrieving, SlicePrefetching,
                 QtWidgets.QMainWindow):
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
        self._init_prefetching()
        self._stats_requested = False
        self._linking = False  # a linked view being moved by another does not move them back
        self._view_centres: dict[int, tuple[np.ndarray | None, np.ndarray | None]] = {}
        self.layer_panel: QtWidgets.QWidget | None = None
        self.region_panel: QtWidgets.QWidget | None = None
        self.annotation_panel: QtWidgets.QWidget | None = None
        self.prediction_panel: QtWidgets.QWidget | None = None
        self.measurement_panel: QtWidgets.QWidget | None = None
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
        QtWidgets.QVBoxLayout(cursor_box).addWidget(ReadoutHolder(self.readout))
        side_layout.addWidget(cursor_box)
        side_layout.addWidget(self._side, 1)
        self._side_dock.setWidget(side)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, self._side_dock)
        self._side_dock.setMinimumWidth(560)
        for orientation, view in self.ortho.views.items():
            view.cursor_requested.connect(self._on_cursor_requested)
            view.hovered.connect(self._on_hover)
            view.view_box.sigRangeChangedManually.connect(lambda *_, v=view: self._on_view_zoomed(v))
            view.slice_step_requested.connect(lambda steps, o=orientation: self._on_slice_step(o, steps))
            view.window_level_requested.connect(self._on_window_level)
            view.stroke_started.connect(self._on_stroke_started)
            view.stroke_finished.connect(self._on_stroke_finished)
        for view in self.ortho.all_views():
            view.view_box.sigRangeChanged.connect(lambda *_, v=view: self._track_centre(v))
        compare = self.ortho.compare_view
        compare.cursor_requested.connect(self._on_cursor_requested)
        compare.hovered.connect(self._on_compare_hover)
        compare.view_box.sigRangeChangedManually.connect(lambda *_: self._on_view_zoomed(compare))
        compare.slice_step_requested.connect(lambda steps: self._on_slice_step(compare.orientation, steps))
        compare.window_level_requested.connect(self._on_window_level)
        self._build_menus()
        self._build_toolbar()
        self._restore_preferences()
        self._autosave = QtCore.QTimer(self)
        self._autosave.setInterval(AUTOSAVE_INTERVAL_MS)
        self._autosave.timeout.connect(self._autosave_now)
        self._autosave.start()
        self.statusBar().showMessage("Ready")

    def _autosave_now(self) -> None:
        """Journaled edits forced to disk, and the workspace written if it changed."""
        if self.scene is not None:
            self.scene.flush_journals()
            self.save_workspace()

    # -- menus and preferences ------------------------------------------------------------------
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&Open study…", self._choose_study, QtGui.QKeySequence.StandardKey.Open)
        self._action(file_menu, "Open &image (NIfTI)…", self._choose_image)
        self._action(file_menu, "Open &DICOM folder…", self._choose_dicom_folder)
        self._action(file_menu, "&Import DICOM exam…", self._choose_exam, QtGui.QKeySequence("Ctrl+I"))
        self._action(file_menu, "Query and retrieve from &PACS…", self.open_pacs_dialog)
        self.recent_menu = file_menu.addMenu("Open &recent")
        file_menu.addSeparator()
        self._action(file_menu, "&Add image as overlay…", self._choose_overlay_file, QtGui.QKeySequence("Ctrl+Shift+O"))
        self._action(file_menu, "Add DICOM series as o&verlay…", self._choose_overlay_folder)
        self.save_added_action = self._action(file_menu, "Save added images into the study",
                                              self.save_added_images)
        self.save_added_action.setEnabled(False)
        file_menu.addSeparator()
        self._action(file_menu, "Save &screenshot of the window…", lambda: self._choose_screenshot(None))
        shots = file_menu.addMenu("Save screenshot of a &view")
        for orientation in ORIENTATIONS:
            self._action(shots, orientation.capitalize() + "…", lambda o=orientation: self._choose_screenshot(o))
        file_menu.addSeparator()
        self.report_action = self._action(file_menu, "Export &report (PDF)…", self._choose_report,
                                          QtGui.QKeySequence("Ctrl+P"))
        self._action(file_menu, "Export results to P&ACS (SEG, SR, PDF)…", self.open_export_pacs_dialog)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QtGui.QKeySequence.StandardKey.Quit)

        edit_menu = self.menuBar().addMenu("&Edit")
        self._action(edit_menu, "&Undo", lambda: self.run_action("undo"), QtGui.QKeySequence.StandardKey.Undo)
        self._action(edit_menu, "&Redo", lambda: self.run_action("redo"), QtGui.QKeySequence.StandardKey.Redo)
        edit_menu.addSeparator()
        self._action(edit_menu, "&Save regions", lambda: self.run_action("save"), QtGui.QKeySequence.StandardKey.Save)

        view_menu = self.menuBar().addMenu("&View")
        names = {"1x3": "1 × 3", "1+2": "One large + two small", "2x2": "2 × 2 with 3D",
                 COMPARE: "Compare timepoints side by side"}
        for index, layout in enumerate(LAYOUTS, start=1):
            self._action(view_menu, f"Layout {names[layout]}", lambda n=layout: self.set_layout(n), QtGui.QKeySequence(str(index)))
        view_menu.addSeparator()
        self.radiological_action = self._action(view_menu, "&Radiological convention", self._toggle_radiological)
        self.radiological_action.setCheckable(True)
        self.radiological_action.setChecked(True)
        self._action(view_menu, "&Reset view", self.reset_views, QtGui.QKeySequence("R"))
        self.workspace_action = self._action(view_menu, "Remember each study's layout and display",
                                             lambda: self.set_remember_workspace(self.workspace_action.isChecked()))
        self.workspace_action.setCheckable(True)
        view_menu.addSeparator()
        self.side_panel_action = self._side_dock.toggleViewAction()  # the side panel can be collapsed
        self.side_panel_action.setText("Side &panel")
        self.side_panel_action.setShortcut(QtGui.QKeySequence("F9"))
        view_menu.addAction(self.side_panel_action)
        self.addAction(self.side_panel_action)
        self.sync_zoom_action = self._action(view_menu, "&Synchronise zoom and pan", self._sync_zoom_toggled)
        self.sync_zoom_action.setCheckable(True)
        study_menu = self.menuBar().addMenu("&Study")
        self.register_action = self._action(study_menu, "&Register timepoints…", self.start_registration)
        self.nudge_action = self._action(study_menu, "&Adjust registration…", self.start_nudge,
                                         QtGui.QKeySequence("Ctrl+Shift+R"))
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "&Keyboard shortcuts", self._show_shortcuts, QtGui.QKeySequence("F1"))
        self._action(help_menu, "&About", self._about)

    def _build_toolbar(self) -> None:
        """The reading toolbar: the display protocol (which layers show, PRODUCT.md §5)."""
        from viewer.core.protocols import PROTOCOLS

        bar = self.addToolBar("Display")
        bar.setObjectName("display-toolbar")
        bar.setMovable(False)
        bar.addWidget(QtWidgets.QLabel(" Protocol: "))
        self.protocol_combo = QtWidgets.QComboBox()
        for name, preset in PROTOCOLS.items():
            self.protocol_combo.addItem(name, name)
            self.protocol_combo.setItemData(self.protocol_combo.count() - 1, preset.description,
                                            QtCore.Qt.ItemDataRole.ToolTipRole)
        self.protocol_combo.setEnabled(False)
        self.protocol_combo.activated.connect(
            lambda index: self.scene.set_protocol(self.protocol_combo.itemData(index)) if self.scene else None)
        bar.addWidget(self.protocol_combo)
        from viewer.ui.window_level import WindowLevelBar

        bar.addSeparator()
        self.window_level = WindowLevelBar()
        bar.addWidget(self.window_level)
        self._build_measure_toolbar(bar)
        self._build_compare_toolbar(bar)

    def _on_protocol(self, **_: Any) -> None:
        if self.scene is None:
            return
        with QtCore.QSignalBlocker(self.protocol_combo):
            self.protocol_combo.setCurrentIndex(max(0, self.protocol_combo.findData(self.scene.protocol)))
        self.protocol_combo.setEnabled(True)

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
        # one large view and two small: in a landscape window beside the side panel each view
        # gets nearer the anatomy's shape (three side by side are each tall and narrow)
        layout = str(self.settings.value("view/layout", DEFAULT_LAYOUT))
        if layout in LAYOUTS and layout != "2x2":  # the 3D view is never built at start-up
            self.ortho.set_layout(layout)
            self._show_compare_toolbar(layout == COMPARE)
        radiological = str(self.settings.value("view/radiological", "true")).lower() != "false"
        self.radiological_action.setChecked(radiological)
        self.workspace_action.setChecked(self.remembers_workspace())
        self.sync_zoom_action.setChecked(str(self.settings.value("view/sync_zoom", "false")).lower() == "true")
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

    # -- scene wiring -------------------------------------------------------------------------------
    def _set_scene(self, scene: Scene, panels: dict[str, QtWidgets.QWidget] | None = None) -> None:
        """Show ``scene``; ``panels`` come from :meth:`_build_panels` (built before anything of
        the previous study is torn down, so a study that cannot be shown leaves the window as
        it was)."""
        panels = panels if panels is not None else self._build_panels(scene)
        if self.scene is not None and self.scene is not scene:
            self.save_workspace()
            self.scene.close()  # its lock released; unsaved edits stay in its journals
        self._forget_nudge_dialog()  # it adjusted the previous study
        self.scene = scene
        self._samples.clear()
        self._shown_key.clear()
        self._forget_prefetched()
        scene.results.submit = self._submit_stats
        self._apply_remembered_colormaps(scene)
        for name, callback in (("cursor", self._on_cursor), ("display", self._on_display), ("order", self.refresh_all),
                               ("timepoint", self._on_timepoint), ("radiological", self.refresh_all),
                               ("regions", self._on_regions_edited), ("regions", self._mark_unsaved),
                               ("saved", self._mark_unsaved), ("lock", self._on_study_locked), ("stats", self._on_stats),
                               ("stats_failed", self._on_stats_failed), ("protocol", self._on_protocol),
                               ("measurements", self._draw_measurements), ("timepoint", self._update_added_action),
                               ("timepoint", self._fill_compare_combo), ("timepoint", self._nudge_timepoint_changed)):
            scene.events.connect(name, callback)
        self._install_panels(scene, panels)
        self.set_measure_tool("navigate")  # a tool of the previous study does not carry over
        self._on_protocol()
        self._update_added_action()
        self.compare_label = None
        self._fill_compare_combo()
        self.window_level.set_scene(scene)
        title = scene.study.id if scene.study.manifest else scene.study.timepoints[0].label
        self.setWindowTitle(f"{title}[*] — Cell-therapy viewer")  # [*]: a '*' while regions are unsaved
        self.setWindowModified(False)
        self._stats_requested = False
        self.refresh_all()

    def _build_panels(self, scene: Scene) -> dict[str, QtWidgets.QWidget]:
        """The side panels of ``scene``, not yet shown (may raise: nothing is replaced yet)."""
        from viewer.ui.annotation_panel import AnnotationPanel
        from viewer.ui.layer_panel import LayerPanel
        from viewer.ui.prediction_panel import PredictionPanel
        from viewer.ui.region_panel import RegionPanel

        from viewer.ui.measurement_panel import MeasurementPanel

        return {"Regions": RegionPanel(scene), "Layers": LayerPanel(scene), "Annotate": AnnotationPanel(scene),
                "Predictions": PredictionPanel(scene), "Measure": MeasurementPanel(scene)}

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
        self.measurement_panel = panels["Measure"]
        self.region_panel.set_group_choice(self._remembered_groups())
        self.region_panel.group_choice_changed.connect(lambda choice: self._remember("regions/column_groups", choice))
        for title in ("Regions", "Layers", "Annotate", "Predictions", "Measure"):
            self._side.addTab(self._annotate_tab(panels) if title == "Annotate" else panels[title], title)
        for view in self.ortho.all_views():
            view.set_colorbars(ColorBarStack(scene))
        self._place_colorbars()
        if self.ortho.volume_view is not None:
            self.ortho.volume_view.deleteLater()
            self.ortho.volume_view = None
            if self.ortho.layout_name == "2x2":
                self.ortho.set_layout("2x2")

    def _annotate_tab(self, panels: dict[str, QtWidgets.QWidget]) -> QtWidgets.QWidget:
        """The annotation tools above the region numbers they change (visible while drawing)."""
        splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        tools = QtWidgets.QScrollArea()  # scrolls rather than making the window taller than the screen
        tools.setWidgetResizable(True)
        tools.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        tools.setWidget(panels["Annotate"])
        splitter.addWidget(tools)
        compact = panels["Regions"].compact_table()
        compact.setToolTip("The regions' numbers, following every stroke (all columns: the Regions tab)")
        splitter.addWidget(compact)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        return splitter

    def _remembered_groups(self) -> dict[str, bool]:
        """The region table's column groups as the reader left them (QSettings may return
        a dict with string values from an INI file)."""
        value = self.settings.value("regions/column_groups", {})
        if not isinstance(value, dict):
            return {}
        return {str(k): str(v).lower() not in ("false", "0") for k, v in value.items()}

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

    def _on_regions_edited(self, timepoint: str, labels, box) -> None:
        """Redraw only the views an edit crosses (the scene's results re-measure the regions)."""
        assert self.scene is not None
        self._forget_prefetched()  # a neighbour may cross the edit where the view on screen does not
        shown = [key for key in self._view_keys() if self._timepoint_of(key).label == timepoint]
        for key in shown:  # another timepoint not on screen (recovery, carried regions): nothing to redraw
            plane = self._plane_of(key)
            axis = plane.normal_axis
            if box is None or axis is None or box[axis].start <= (plane.slice_index or 0) < box[axis].stop:
                self._refresh(key, roles={"regions"})
        self._update_readout()

    def set_layout(self, name: str) -> None:
        """Arrange the views; each is fitted to its new size once the layout has settled, so
        the orientation letters and captions stay off the anatomy (issue 15)."""
        self.ortho.set_layout(name)
        self._remember("view/layout", name)
        self._show_compare_toolbar(name == COMPARE)
        if self.scene is not None:
            if name == COMPARE:
                self._fill_compare_combo()
                self._refresh(COMPARE)
            self._place_colorbars()
            for key in self._view_keys():  # captions name their timepoint only when compared
                view = self._view_of(key)
                if view.plane is not None:
                    view.info.setText(self._caption(key, view.plane))
        QtCore.QTimer.singleShot(0, self._fit_views)

    def _fit_views(self) -> None:
        for view in self.ortho.all_views():
            view.reset_view()
        self._link_compare(self.ortho.views[self.ortho.compare_view.orientation])

    def reset_views(self) -> None:
        self._fit_views()
        if self.ortho.volume_view is not None and hasattr(self.ortho.volume_view, "reset_camera"):
            self.ortho.volume_view.reset_camera()

    def _toggle_radiological(self) -> None:
        radiological = self.radiological_action.isChecked()
        self._remember("view/radiological", "true" if radiological else "false")
        if self.scene is not None:
            self.scene.set_radiological(radiological)

    # -- scene events → redraw ------------------------------------------------------------------------
    def _plane_key(self, plane: Plane, timepoint: str) -> tuple:
        assert self.scene is not None
        return (timepoint, plane.orientation, plane.slice_index, self.scene.radiological, tuple(self.scene.order))

    def refresh_all(self) -> None:
        """Resample every view (new timepoint, order, convention or study)."""
        self._samples.clear()
        for key in self._view_keys():
            self._refresh(key)
        self._update_readout()

    def _refresh(self, orientation: str, resample: bool = True, roles: set[str] | None = None,
                 navigating: bool = False) -> None:
        """Ask a worker for a view's image; only the newest request per view is drawn.

        ``resample=False`` recomposites the cached samples; ``roles`` resamples only those
        layers (e.g. the label map after an edit) and reuses the others' samples. Any redraw but
        the cursor's (``navigating``) means the scene changed: the slices computed in advance
        are forgotten (:mod:`viewer.ui.window_prefetching`).
        """
        assert self.scene is not None
        if not navigating:
            self._forget_prefetched()
        timepoint = self._timepoint_of(orientation)
        plane = self._plane_of(orientation)
        key = self._plane_key(plane, timepoint.label)
        if orientation == COMPARE and self.check_mode != "side by side":
            self._shown_key[orientation] = key
            self.jobs.submit(f"slice:{orientation}", self._check_job(plane))
            return
        layers = self.scene.slice_layers(plane, timepoint)
        cached = self._samples.get(orientation)
        reusable = cached is not None and cached[0] == key
        samples = cached[1] if reusable and (not resample or roles) else None
        indices = {i for i, layer in enumerate(layers) if roles and layer.volume.role in roles}
        job = slice_job(layers, plane, samples, indices if samples is not None else None)
        self._shown_key[orientation] = key
        self._asked_for(orientation)
        self.jobs.submit(f"slice:{orientation}", job)

    def _on_cursor(self) -> None:
        assert self.scene is not None
        for name in self._view_keys():
            view = self._view_of(name)
            key = self._plane_key(self._plane_of(name), self._timepoint_of(name).label)
            previous = self._shown_key.get(name)
            if key != previous:
                self._want_neighbours(name, previous, key)
                if not self._show_prefetched(name, key):
                    self._refresh(name, navigating=True)
            elif view.plane is not None:  # same image: only its caption's coordinates change
                view.info.setText(self._caption(name, view.plane))
            view.set_crosshair(self.scene.cursor)
        self._update_readout()

    def _on_display(self, role: str) -> None:
        """A display change recomposites cached samples; showing a hidden layer resamples."""
        assert self.scene is not None
        props = self.scene.display[role]
        index = next((i for i, layer in enumerate(self.scene.layers()) if layer.volume.role == role), None)
        for key in self._view_keys():
            cached = self._samples.get(key)
            needs_samples = props.visible and cached is not None and (key == COMPARE or index not in cached[1])
            self._refresh(key, resample=needs_samples)
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
            self._samples[orientation] = (self._shown_key.get(orientation), samples)  # the newest request's
            self._show(orientation, plane, rgb)
            if orientation == COMPARE:
                self._after_check_frame(samples)
        elif key.startswith(PREFETCH_KEY):
            self._on_prefetched(key.removeprefix(PREFETCH_KEY).split(":", 1)[0], result)
        elif key.startswith("stats:"):
            if self.scene is not None:
                self.scene.results.deliver(result)  # merged by version; the scene emits "stats"
        elif key == "propose":
            self._apply_proposal(result)
        elif key == "report":
            self.statusBar().showMessage(f"Report written to {result}", 15_000)
            self.report_written.emit(str(result))
        elif key == "register":
            self._registration_done(result)

    def _on_job_failed(self, key: str, generation: int, message: str) -> None:
        if key.startswith(PREFETCH_KEY):
            return  # the slice's own job, when the reader reaches it, reports the problem
        if key == "report":
            self.show_error(message.removeprefix("ViewerError: "), title="Report not written")
            return
        if key == "register":
            self._registration_failed(message)
            return
        self.show_error(f"{key}: {message}")

    def _show(self, orientation: str, plane: Plane, rgb: np.ndarray) -> None:
        assert self.scene is not None
        view = self._view_of(orientation)
        view.content_rect = self._content_rect(plane, self._timepoint_of(orientation))
        fitted = view.show_image(plane, rgb, self._caption(orientation, plane))
        view.set_crosshair(self.scene.cursor)
        if fitted and orientation == COMPARE:
            self._link_compare(view)
        self._draw_measurements(views=[view])
        self.frame_drawn.emit(orientation)
        self._after_frame(orientation, plane, rgb)
        if not self._stats_requested and all(v.plane is not None for v in self.ortho.views.values()):
            # statistics start once the first frames are up, so they do not delay them
            self._stats_requested = True
            self.scene.results.request()

    def _content_rect(self, plane: Plane, timepoint=None) -> QtCore.QRectF | None:
        """Where the anatomy lies in a view's plane (mm from its first pixel's corner): the
        view opens fitted to the head, not to the empty field of view around it."""
        assert self.scene is not None
        corners = self.scene.anatomy_extent(timepoint)
        if corners is None:
            return None
        pixels = plane.world_to_pixel(corners)
        rows, cols = pixels[:, 0], pixels[:, 1]
        x0, x1 = cols.min() * plane.col_step_mm, (cols.max() + 1.0) * plane.col_step_mm
        y0, y1 = rows.min() * plane.row_step_mm, (rows.max() + 1.0) * plane.row_step_mm
        return QtCore.QRectF(x0, y0, x1 - x0, y1 - y0)

    def _caption(self, key: str, plane: Plane) -> str:
        """A view's caption: its slice and the cursor's world position (mm); in the compare
        layout each view names its timepoint."""
        assert self.scene is not None
        axis = plane.normal_axis if plane.normal_axis is not None else 0
        index = (plane.slice_index or 0) + 1
        x, y, z = self.scene.cursor
        timepoint = self._timepoint_of(key)
        shape = self.scene.volumes_of(timepoint)["anatomical"].shape
        named = f"{timepoint.label} · " if self.ortho.layout_name == COMPARE else ""
        if key == COMPARE and self.check_mode != "side by side":
            named = f"{self.scene.timepoint.label} / {timepoint.label} {self.check_mode} · "
        return f"{named}{plane.orientation or key} {index}/{shape[axis]}\n({x:.1f}, {y:.1f}, {z:.1f}) mm"

    def _update_readout(self, hover: np.ndarray | None = None, timepoint=None) -> None:
        """Every layer's value in its units at the point under the mouse (``hover``), else at
        the cursor (PRODUCT.md §5: values without clicking), of a timepoint (the one on
        screen; the compare view's under its mouse)."""
        if self.scene is None:
            return
        point = self.scene.cursor if hover is None else np.asarray(hover, dtype=float)
        x, y, z = point
        where = "cursor" if hover is None else "under the mouse"
        timepoint = timepoint or self.scene.timepoint
        rows = [f"<b>({x:.1f}, {y:.1f}, {z:.1f}) mm</b> &nbsp; {timepoint.label} &nbsp; <i>{where}</i>"]
        for name, value, units in self.scene.readout(point, timepoint):
            rows.append(f"{name}: <b>{value}</b> {units}".rstrip())
        self.readout.setText("<br>".join(rows))
        self.statusBar().showMessage(f"({x:.1f}, {y:.1f}, {z:.1f}) mm — {where}")

    def _on_hover(self, world: np.ndarray | None) -> None:
        self._update_readout(world)

    def _mark_unsaved(self, **_: Any) -> None:
        """The title's '*' says whether region edits or an adjusted registration are not saved."""
        self.refresh_unsaved_marker()

    def shortcut_lines(self) -> list[tuple[str, str]]:
        """(keys, what they do) of every menu action with a shortcut, and the mouse."""
        lines = [(action.shortcut().toString(QtGui.QKeySequence.SequenceFormat.NativeText),
                  action.text().replace("&", "").rstrip("…"))
                 for action in self.actions() if not action.shortcut().isEmpty()]
        lines += [("Wheel / Page Up, Page Down", "next or previous slice of the view under the mouse"),
                  ("Ctrl + wheel", "zoom"), ("Middle drag", "pan"), ("Right drag", "window (width) and level"),
                  ("Left click", "move the cursor (with a tool: draw)")]
        return lines

    def _show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td><b>{keys}</b></td><td>&nbsp;&nbsp;{text}</td></tr>" for keys, text in self.shortcut_lines())
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.NoIcon, "Keyboard shortcuts",
                                    f"<table>{rows}</table>", parent=self)
        box.setTextFormat(QtCore.Qt.TextFormat.RichText)
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def _sync_zoom_toggled(self) -> None:
        self._remember("view/sync_zoom", "true" if self.sync_zoom_action.isChecked() else "false")

    def _on_view_zoomed(self, source) -> None:
        """A zoom (Ctrl + wheel) or pan (middle drag) the user made in one view.

        In the compare layout the other timepoint's view always follows (same world point,
        same scale). With View ▸ Synchronise zoom and pan, the other orientations take the same
        scale (mm per screen pixel) and move by the same world displacement along the axes
        they share (a pan in the axial view moves the coronal view left-right, not up-down)."""
        if self._linking or source.plane is None:
            return
        self._linking = True
        try:
            self._link_compare(source)
            previous = self._view_centres.get(id(source), (None, None))[0]
            center = source.center_world()
            if self.sync_zoom_action.isChecked() and center is not None:
                (x0, x1), _ = source.view_box.viewRange()
                mm_per_pixel = (x1 - x0) / max(source.view_box.sceneBoundingRect().width(), 1.0)
                moved = center - previous if previous is not None else np.zeros(3)
                for view in self.ortho.views.values():
                    own = view.center_world()
                    if view is source or own is None:
                        continue
                    view.show_world(own + moved, mm_per_pixel * view.view_box.sceneBoundingRect().width())
                    self._link_compare(view)
        finally:
            self._linking = False

    def _track_centre(self, view) -> None:
        """Every range change (pyqtgraph signals it before the user's 'manually'): the view's
        centre before and after, so a pan's world displacement is known when it is linked."""
        _before, now = self._view_centres.get(id(view), (None, None))
        self._view_centres[id(view)] = (now, view.center_world())

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

