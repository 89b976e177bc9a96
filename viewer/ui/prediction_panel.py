"""The predictions panel: every model's per-region prediction, interval, warnings and the
features' contributions, with the model card summary (PRODUCT.md §4).

Predictions are computed by the core (`viewer.core.predict`) from the region table the window
already has; a demonstration model's notice is shown with every one of its predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from viewer.core.errors import ViewerError
from viewer.core.predict import Prediction, PredictionModel, load_model, predictions_of
from viewer.core.quant.stats import TimepointStats
from viewer.core.scene import Scene
from viewer.ui.colorbar import SceneLink

NOTICE_STYLE = "color: #b00020; font-weight: bold;"


class PredictionPanel(QtWidgets.QWidget):
    """Side-panel tab listing each model's predictions for the regions of the shown timepoint.

    Signals:
        models_changed(): a user model was added (the window recomputes the statistics).
    """

    models_changed = QtCore.Signal()

    def __init__(self, scene: Scene, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.scene = scene
        self.stats: TimepointStats | None = None
        self.results: dict[int, list[tuple[PredictionModel, Prediction]]] = {}
        layout = QtWidgets.QVBoxLayout(self)
        top = QtWidgets.QHBoxLayout()
        self.status = QtWidgets.QLabel("Waiting for the region numbers…")
        self.status.setWordWrap(True)
        self.add_button = QtWidgets.QPushButton("Add model…")
        self.add_button.clicked.connect(self._choose_model)
        top.addWidget(self.status, 1)
        top.addWidget(self.add_button)
        layout.addLayout(top)
        cards = QtWidgets.QWidget()
        self.models_box = QtWidgets.QVBoxLayout(cards)
        self.models_box.setContentsMargins(0, 0, 0, 0)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(cards)
        scroll.setMaximumHeight(190)
        layout.addWidget(scroll)
        self._shown_models: list[int] = []
        self.table = QtWidgets.QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["Region", "Model", "Prediction", "90 % interval", "Warnings"])
        self.table.horizontalHeader().setSectionResizeMode(4, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.itemSelectionChanged.connect(self._show_contributions)
        layout.addWidget(self.table, 2)
        layout.addWidget(QtWidgets.QLabel("<b>Contributions</b> of the selected prediction's features"))
        self.contributions = QtWidgets.QTableWidget(0, 3)
        self.contributions.setHorizontalHeaderLabels(["Feature", "Value", "Contribution"])
        self.contributions.horizontalHeader().setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.contributions.verticalHeader().setVisible(False)
        self.contributions.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        layout.addWidget(self.contributions, 1)
        self.contributions_note = QtWidgets.QLabel("")
        self.contributions_note.setWordWrap(True)
        layout.addWidget(self.contributions_note)
        self._rows: list[tuple[int, PredictionModel, Prediction]] = []
        self._show_cards()
        self._observe_scene()

    def _observe_scene(self) -> None:
        """Show the numbers of the timepoint on screen when the scene's results announce them."""
        self._link = SceneLink(self.scene.events, self)
        self._link.connect("stats", self._on_scene_stats)
        self._link.connect("timepoint", self._on_scene_timepoint)

    def _on_scene_stats(self, timepoint: str, **_: Any) -> None:
        if timepoint == self.scene.timepoint.label:
            self.show_stats(self.scene.results.latest(timepoint))

    def _on_scene_timepoint(self, **_: Any) -> None:
        latest = self.scene.results.latest(self.scene.timepoint.label)
        if latest is not None:
            self.show_stats(latest)

    # -- content ---------------------------------------------------------------------------------
    def show_stats(self, stats: TimepointStats) -> None:
        """Predict every region of ``stats`` with every model and show the results."""
        self.stats = stats
        models = self.scene.models()
        self._show_cards()
        if not models:
            self.status.setText("No prediction model: add one (ONNX file + JSON model card).")
            self.table.setRowCount(0)
            return
        self.results = predictions_of(stats, models)  # the result's own (computed by the scene's results)
        self.status.setText(f"Predictions for {stats.label}")
        self._rows = []
        for region in stats.regions:
            for model, prediction in self.results.get(region.label, []):
                self._rows.append((region.label, model, prediction))
        self.table.setRowCount(len(self._rows))
        names = {r.label: r.name for r in stats.regions}
        for row, (label, model, prediction) in enumerate(self._rows):
            cells = [
                names.get(label, f"label {label}"),
                f"{model.card.name} {model.card.version}",
                "—" if prediction.value is None else f"{prediction.value:.2f}",
                "—" if prediction.interval is None else f"{prediction.interval[0]:.2f}–{prediction.interval[1]:.2f}",
                prediction.reason or "; ".join(prediction.warnings) or "",
            ]
            for column, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(text)
                if column == 4 and prediction.warnings:
                    item.setForeground(QtGui.QBrush(QtGui.QColor(176, 0, 32)))
                    item.setText("⚠ " + text)
                if column == 2 and model.card.demonstration and prediction.value is not None:
                    item.setToolTip(model.card.notice or "")
                self.table.setItem(row, column, item)
        first = next((i for i, (_, _, p) in enumerate(self._rows) if p.value is not None), 0)
        if self._rows:
            self.table.selectRow(first)
            self._show_contributions()  # the same row may stay selected with new numbers

    def _show_cards(self) -> None:
        """One summary per model: name, version, intended use, outcome, validation, notice."""
        models = self.scene.models()
        if [id(m) for m in models] == self._shown_models:
            return
        self._shown_models = [id(m) for m in models]
        while self.models_box.count():
            widget = self.models_box.takeAt(0).widget()
            if widget is not None:
                widget.setParent(None)
                widget.deleteLater()
        for model in models:
            card = model.card
            box = QtWidgets.QGroupBox(f"{card.name} — version {card.version}")
            form = QtWidgets.QVBoxLayout(box)
            if card.demonstration:
                notice = QtWidgets.QLabel(f"⚠ {card.notice}")
                notice.setStyleSheet(NOTICE_STYLE)
                notice.setWordWrap(True)
                form.addWidget(notice)
            validation = card.validation_text()
            training = card.training_summary()
            text = (f"<b>Outcome:</b> {card.outcome_name} — {card.outcome_meaning}<br>"
                    f"<b>Intended use:</b> {card.intended_use}<br>"
                    f"<b>Validation:</b> {validation}<br><b>Training data:</b> {training}<br>"
                    f"<b>Licence:</b> {card.licence}")
            summary = QtWidgets.QLabel(text)
            summary.setWordWrap(True)
            summary.setTextFormat(QtCore.Qt.TextFormat.RichText)
            form.addWidget(summary)
            self.models_box.addWidget(box)

    def _show_contributions(self) -> None:
        rows = {index.row() for index in self.table.selectedIndexes()}
        self.contributions.setRowCount(0)
        if not rows or min(rows) >= len(self._rows):
            return
        _, model, prediction = self._rows[min(rows)]
        if prediction.value is None:
            self.contributions_note.setText(prediction.reason or "")
            return
        items = sorted(prediction.contributions.items(), key=lambda kv: -abs(kv[1]))
        self.contributions.setRowCount(len(items))
        for row, (name, value) in enumerate(items):
            feature = prediction.features.get(name)
            out = name in prediction.out_of_range
            cells = [("⚠ " if out else "") + name, "—" if feature is None else f"{feature:.4g}", f"{value:+.3f}"]
            for column, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(text)
                if column == 2:
                    color = QtGui.QColor(0, 110, 0) if value > 0 else QtGui.QColor(176, 0, 32)
                    item.setForeground(QtGui.QBrush(color))
                self.contributions.setItem(row, column, item)
        space = prediction.contribution_space or ""
        method = prediction.contribution_method or ""
        self.contributions_note.setText(
            f"{method} contributions in {space} units, relative to each feature's baseline"
            f" (baseline prediction {prediction.baseline_value:.2f})." if prediction.baseline_value is not None else "")

    # -- adding a model ------------------------------------------------------------------------------
    def _choose_model(self) -> None:
        onnx, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Prediction model (ONNX)", "", "ONNX model (*.onnx)")
        if not onnx:
            return
        default_card = str(Path(onnx).with_suffix(".json"))
        card = default_card if Path(default_card).exists() else QtWidgets.QFileDialog.getOpenFileName(
            self, "Model card (JSON)", str(Path(onnx).parent), "Model card (*.json)")[0]
        if card:
            self.add_model(onnx, card)

    def add_model(self, onnx: str | Path, card: str | Path) -> PredictionModel | None:
        """Load a user model next to the study's; errors are shown, nothing changes."""
        try:
            model = load_model(Path(onnx), Path(card))
        except ViewerError as exc:
            self.status.setText(f"<span style='color:#b00020'>error: {exc}</span>")
            return None
        self.scene.add_model(model)
        self._show_cards()
        self.status.setText(f"Predictions of {model.card.name} {model.card.version} are being computed…")
        self.models_changed.emit()  # the numbers are measured again; their "stats" event shows them
        return model

