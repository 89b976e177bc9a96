"""Annotation requests of the main window: the panel's tool and actions (undo, redo,
interpolate, propose core/penumbra, carry, save, export) turned into calls on the scene.

A mixin of :class:`viewer.ui.main_window.MainWindow`; the numbers that follow an edit are the
scene's results' (:class:`viewer.core.results.StudyResults`), not the window's.
"""

from __future__ import annotations

import numpy as np


class AnnotationActions:
    """Tools, region actions and strokes, forwarded to the scene."""

    def _on_models_changed(self) -> None:
        """A user model was added: recompute every timepoint's numbers (predictions included)."""
        if self.scene is not None:
            self.scene.results.invalidate()

    def _on_tool_changed(self, tool) -> None:
        self._annotation_tool_chosen(tool)
        # the compare view shows another timepoint: it never edits the one on screen
        self.ortho.compare_view.tool = None
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
            target, adc=volumes.get("adc"), tmax=volumes.get("tmax"), sodium=volumes.get("sodium"),
            anatomy=volumes.get("anatomical")))

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

    def _on_stroke_started(self) -> None:
        if self.scene is not None:
            self.scene.results.hold(True)  # during a stroke the numbers follow once, at its end

    def _on_stroke_finished(self) -> None:
        if self.scene is not None:
            self.scene.results.hold(False)

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
