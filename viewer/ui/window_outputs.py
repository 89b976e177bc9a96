"""What the main window writes out: screenshots, the PDF report, the region table as CSV,
and the About box.

A mixin of :class:`viewer.ui.main_window.MainWindow`. The report is made by the same builder
as ``viewer report`` from a snapshot of the scene (edits made while it is written do not
change it).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from viewer import APP_NAME, __version__
from viewer.core.errors import ViewerError


class WindowOutputs:
    """Screenshots, reports, the region table's CSV and About."""

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
        change it; the numbers are computed in the statistics thread. The scene's measurements
        (rulers and ROIs, as listed now) are reported unless ``options`` brings its own. Returns
        False (with an error dialog) when the output cannot be written; ``report_written`` is
        emitted when done.
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

        if options.displays is None:  # the key images look like the views on screen
            options = dataclasses.replace(options, protocol=options.protocol or self.scene.protocol,
                                          displays=dict(self.scene.display))
        if not options.measurements:  # the reader's rulers and ROIs as listed now
            options = dataclasses.replace(options, measurements=tuple(self.scene.measurements))

        def job() -> Path:
            report = build_report(snapshot.study, inputs_from_snapshot(snapshot), snapshot.models, options)
            return write_report_pdf(report, output)

        self.statusBar().showMessage(f"Writing report to {output}…")
        self.stats_jobs.submit("report", job)
        return True

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

    def about_text(self) -> str:
        """The About box: name and version (the same `viewer.__version__` as `--version` and the
        report footer), what it does, and the licences."""
        return (f"{APP_NAME} {__version__}\n\nFuses ¹⁹F MRI, SPIO/Gd, PET and sodium maps on anatomy.\n"
                "Research software — not for clinical decisions.\n\n"
                "BSD-3-Clause. Demo anatomy: MNI ICBM152 2009 (see resources/anatomy/NOTICE.txt); "
                "Qt (PySide6) under the LGPL-3.0.")

    def _about(self) -> None:
        QtWidgets.QMessageBox.about(self, "About", self.about_text())
