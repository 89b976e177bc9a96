"""The study workspace in the main window: what the reader was looking at (layout, displays,
order, cursor, each view's zoom) restored when a study opens and saved beside its manifest
when it closes, when another study replaces it, and on the autosave timer when it changed.

A mixin of :class:`viewer.ui.main_window.MainWindow`; the file and what fits a study are
:mod:`viewer.core.workspace`'s (no Qt there). A study without a manifest (one image, a DICOM
folder) has no workspace; a read-only study keeps none, silently. View ▸ "Remember each
study's layout and display" (setting ``workspace/remember``, on by default) turns it off for
readers who must not write into a study folder.
"""

from __future__ import annotations

from viewer.core.errors import ViewerError
from viewer.core.scene import Scene
from viewer.core.workspace import (
    ViewState,
    Workspace,
    apply,
    capture,
    read_workspace,
    to_json,
    write_workspace,
)
from viewer.ui.ortho import LAYOUTS

#: the setting that keeps (true, the default) or ignores every study's workspace
REMEMBER_KEY = "workspace/remember"


class WorkspaceKeeping:
    """Restore the workspace on opening, write it when leaving the study."""

    _workspace_written: str | None = None

    def remembers_workspace(self) -> bool:
        return str(self.settings.value(REMEMBER_KEY, "true")).lower() != "false"

    def set_remember_workspace(self, remember: bool) -> None:
        self._remember(REMEMBER_KEY, "true" if remember else "false")

    def current_workspace(self) -> Workspace | None:
        """The workspace of what is on screen now (None without a study)."""
        if self.scene is None:
            return None
        views = {}
        for orientation, view in self.ortho.views.items():
            state = view.view_state()
            if state is not None:
                views[orientation] = ViewState(state[0], state[1])
        return capture(self.scene, layout=self.ortho.layout_name, protocol=self.scene.protocol, views=views)

    def save_workspace(self) -> None:
        """Write the workspace beside the manifest when it changed since last written."""
        scene = self.scene
        workspace = self.current_workspace()
        if scene is None or workspace is None or scene.study.manifest is None or not self.remembers_workspace():
            return
        text = to_json(workspace)
        if text == self._workspace_written:
            return
        try:
            write_workspace(scene.study.manifest, workspace)
        except ViewerError as exc:  # a convenience: never stop a close or a study switch
            self.statusBar().showMessage(f"workspace not saved: {exc}", 10_000)
            return
        self._workspace_written = text

    def _restore_workspace(self, scene: Scene) -> None:
        """Show the study as it was left (the displays, cursor, layout and zoom saved with it)."""
        self._workspace_written = None
        if scene.study.manifest is None or not self.remembers_workspace():
            return
        workspace, problem = read_workspace(scene.study.manifest)
        notes = [problem] if problem else []
        if workspace is not None:
            if workspace.protocol:
                try:
                    scene.set_protocol(workspace.protocol)  # then the saved displays on top
                except ViewerError as exc:
                    notes.append(str(exc))
            notes += apply(scene, workspace)
            if workspace.layout in LAYOUTS and workspace.layout != self.ortho.layout_name:
                self.set_layout(workspace.layout)
            for orientation, state in workspace.views.items():
                view = self.ortho.views.get(orientation)
                if view is not None:
                    view.set_view_state(state.center_mm, state.width_mm)
            self._workspace_written = to_json(workspace)
        if notes:
            self.statusBar().showMessage("workspace: " + "; ".join(notes), 10_000)
