"""The predictions panel: every model's per-region prediction, interval, warnings and the
features' contributions, with the model card summary (PRODUCT.md §4).

Predictions are computed by the core (`viewer.core.predict`) from the region table the window
already has; a demonstration model's notice is shown with every one of its predictions.

What a reader sees is worded for them: features by the measures registry's name and units
("¹⁹F cells (cells)", not ``fluorine_cells``), a prediction that could not be made says why
("not computed: …"), and warnings are written out in full under the table. A timepoint selector
shows the views' timepoint by default, or any other timepoint's stored predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from viewer.core.errors import ViewerError
from viewer.core.predict import (
    Prediction,
    PredictionModel,
    feature_description,
    feature_title,
    load_model,
    predictions_of,
    readable,
)
from viewer.core.quant.stats import TimepointStats
from viewer.core.scene import Scene
from viewer.ui.colorbar import SceneLink
from viewer.ui.region_table import timepoint_title

Qt = QtCore.Qt

NOTICE_STYLE = "color: #b00020; font-weight: bold;"
WARNING_COLOR = QtGui.QColor(176, 0, 32)
WARNING_SIGN = "⚠"

#: The prediction table's columns.
COLUMNS = ("Region", "Model", "Prediction", "90 % interval")
REGION_COLUMN, MODEL_COLUMN, VALUE_COLUMN, INTERVAL_COLUMN = range(len(COLUMNS))

#: The selector's first entry: the timepoint of the views, whichever it is.
FOLLOW_VIEWS = None


class PredictionPanel(QtWidgets.QWidget):
    """Side-panel tab listing each model's predictions for the regions of one timepoint.

    Signals:
        models_changed(): a user model was added (the window recomputes the statistics).

    Attributes:
        timepoint_combo: the timepoint shown; its first entry follows the views' timepoint,
            the others show that timepoint's stored predictions (asking the scene's results to
            compute a timepoint that has none yet) without moving the views.
        warnings_label: every warning of the shown predictions, in full, word-wrapped.
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
        layout.addLayout(self._build_selector())
        cards = QtWidgets.QWidget()
        self.models_box = QtWidgets.QVBoxLayout(cards)
        self.models_box.setContentsMargins(0, 0, 0, 0)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # the cards wrap
        scroll.setWidget(cards)
        scroll.setMaximumHeight(190)
        layout.addWidget(scroll)
        self._shown_models: list[int] = []
        layout.addWidget(self._build_table(), 1)
        self.warnings_label = QtWidgets.QLabel("")
        self.warnings_label.setWordWrap(True)
        self.warnings_label.setTextFormat(Qt.TextFormat.PlainText)
        self.warnings_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warnings_label.setStyleSheet(f"color: {WARNING_COLOR.name()};")
        self.warnings_label.setVisible(False)
        layout.addWidget(self.warnings_label)
        layout.addWidget(QtWidgets.QLabel("<b>Contributions</b> of the selected prediction's features"))
        self.contributions = QtWidgets.QTableWidget(0, 3)
        self.contributions.setHorizontalHeaderLabels(["Feature", "Value", "Contribution"])
        self.contributions.horizontalHeader().setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.contributions.verticalHeader().setVisible(False)
        self.contributions.verticalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.contributions.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        layout.addWidget(self.contributions, 1)
        self.contributions_note = QtWidgets.QLabel("")
        self.contributions_note.setWordWrap(True)
        layout.addWidget(self.contributions_note)
        self._rows: list[tuple[int, PredictionModel, Prediction]] = []
        self._show_cards()
        self._observe_scene()

    def _build_selector(self) -> QtWidgets.QHBoxLayout:
        row = QtWidgets.QHBoxLayout()
        label = QtWidgets.QLabel("Timepoint:")
        self.timepoint_combo = QtWidgets.QComboBox()
        self.timepoint_combo.setToolTip("Whose predictions are shown: the views' timepoint, or another one "
                                        "(the views stay where they are)")
        label.setBuddy(self.timepoint_combo)
        self.timepoint_combo.addItem("", FOLLOW_VIEWS)
        for timepoint in self.scene.study.timepoints:
            self.timepoint_combo.addItem(timepoint_title(timepoint.label, timepoint.day), timepoint.label)
        self._name_follow_entry()
        self.timepoint_combo.currentIndexChanged.connect(self._on_combo_changed)
        row.addWidget(label)
        row.addWidget(self.timepoint_combo, 1)
        return row

    def _build_table(self) -> QtWidgets.QTableWidget:
        table = self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        table.setHorizontalHeaderLabels(list(COLUMNS))
        header = table.horizontalHeader()
        header.setSectionResizeMode(REGION_COLUMN, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(MODEL_COLUMN, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(VALUE_COLUMN, QtWidgets.QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(INTERVAL_COLUMN, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.sectionResized.connect(lambda *_: table.resizeRowsToContents())  # wrapped text keeps fitting
        table.verticalHeader().setVisible(False)
        table.verticalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        table.setWordWrap(True)
        table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # columns fit, text wraps
        table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        table.itemSelectionChanged.connect(self._show_contributions)
        return table

    def _observe_scene(self) -> None:
        """Show the numbers of the chosen timepoint when the scene's results announce them."""
        self._link = SceneLink(self.scene.events, self)
        self._link.connect("stats", self._on_scene_stats)
        self._link.connect("timepoint", self._on_scene_timepoint)

    # -- which timepoint -------------------------------------------------------------------------
    @property
    def chosen_timepoint(self) -> str | None:
        """The timepoint chosen in the selector, or None when it follows the views."""
        return self.timepoint_combo.currentData()

    @property
    def shown_timepoint(self) -> str:
        """The label of the timepoint whose predictions the panel shows (or waits for)."""
        return self.chosen_timepoint or self.scene.timepoint.label

    def choose_timepoint(self, label: str | None) -> None:
        """Show a timepoint's predictions (None: follow the views), as the selector does."""
        index = self.timepoint_combo.findData(label)
        if index < 0:
            raise KeyError(label)
        if index == self.timepoint_combo.currentIndex():
            self._show_chosen()
        else:
            self.timepoint_combo.setCurrentIndex(index)  # → _on_combo_changed

    def _name_follow_entry(self) -> None:
        current = self.scene.timepoint
        self.timepoint_combo.setItemText(0, f"As the views: {timepoint_title(current.label, current.day)}")

    def _on_combo_changed(self, _index: int) -> None:
        self._show_chosen()

    def _show_chosen(self) -> None:
        """The chosen timepoint's stored predictions; a timepoint without a result yet is asked for."""
        label = self.shown_timepoint
        latest = self.scene.results.latest(label)
        if latest is not None:
            self.show_stats(latest)
            return
        self.stats = None
        self._rows = []
        self.results = {}
        self.table.setRowCount(0)
        self.contributions.setRowCount(0)
        self.contributions_note.setText("")
        self._show_warnings([])
        self.status.setText(f"Predictions of {label}: not computed yet (computing…)")
        self.scene.results.request([label])  # its "stats" event shows them

    def _on_scene_stats(self, timepoint: str, **_: Any) -> None:
        if timepoint == self.shown_timepoint:
            latest = self.scene.results.latest(timepoint)
            if latest is not None:
                self.show_stats(latest)

    def _on_scene_timepoint(self, **_: Any) -> None:
        self._name_follow_entry()
        if self.chosen_timepoint is FOLLOW_VIEWS:
            latest = self.scene.results.latest(self.scene.timepoint.label)
            if latest is not None:
                self.show_stats(latest)

    # -- content ---------------------------------------------------------------------------------
    def show_stats(self, stats: TimepointStats) -> None:
        """Show every model's prediction for every region of ``stats``."""
        self.stats = stats
        models = self.scene.models()
        self._show_cards()
        if not models:
            self.status.setText("No prediction model: add one (ONNX file + JSON model card).")
            self._rows = []
            self.table.setRowCount(0)
            self._show_warnings([])
            return
        self.results = predictions_of(stats, models)  # the result's own (computed by the scene's results)
        self.status.setText(f"Predictions for {stats.label}")
        self._rows = []
        for region in stats.regions:
            for model, prediction in self.results.get(region.label, []):
                self._rows.append((region.label, model, prediction))
        names = {r.label: r.name for r in stats.regions}
        self.table.clearSpans()
        self.table.setRowCount(len(self._rows))
        warnings: list[str] = []
        for row, (label, model, prediction) in enumerate(self._rows):
            region = names.get(label, f"label {label}")
            model_name = f"{model.card.name} {model.card.version}"
            self._fill_row(row, region, model_name, model, prediction)
            warnings.extend(f"{WARNING_SIGN} {region} ({model_name}): {readable(w)}" for w in prediction.warnings)
        self.table.setColumnHidden(MODEL_COLUMN, len(models) < 2)  # one model: its card above names it
        self.table.resizeRowsToContents()
        self._show_warnings(warnings)
        first = next((i for i, (_, _, p) in enumerate(self._rows) if p.value is not None), 0)
        if self._rows:
            self.table.selectRow(first)
            self._show_contributions()  # the same row may stay selected with new numbers

    def _fill_row(self, row: int, region: str, model_name: str, model: PredictionModel, prediction: Prediction) -> None:
        """Region, model, value and interval; a row without a value says why across both."""
        self.table.setItem(row, REGION_COLUMN, QtWidgets.QTableWidgetItem(region))
        self.table.setItem(row, MODEL_COLUMN, QtWidgets.QTableWidgetItem(model_name))
        if prediction.value is None:
            text = f"not computed: {readable(prediction.reason)}" if prediction.reason else "—"
            item = QtWidgets.QTableWidgetItem(text)
            item.setToolTip(text)
            item.setForeground(QtGui.QBrush(self.palette().color(QtGui.QPalette.ColorRole.PlaceholderText)))
            self.table.setItem(row, VALUE_COLUMN, item)
            self.table.setItem(row, INTERVAL_COLUMN, QtWidgets.QTableWidgetItem(""))
            self.table.setSpan(row, VALUE_COLUMN, 1, 2)
            return
        value = QtWidgets.QTableWidgetItem(f"{prediction.value:.2f}")
        tips = [model.card.notice] if model.card.demonstration and model.card.notice else []
        if prediction.warnings:
            value.setText(f"{WARNING_SIGN} {prediction.value:.2f}")
            value.setForeground(QtGui.QBrush(WARNING_COLOR))
            tips = [readable(w) for w in prediction.warnings] + tips
        value.setToolTip("\n".join(tips))
        self.table.setItem(row, VALUE_COLUMN, value)
        interval = prediction.interval
        self.table.setItem(row, INTERVAL_COLUMN, QtWidgets.QTableWidgetItem(
            "—" if interval is None else f"{interval[0]:.2f}–{interval[1]:.2f}"))

    def _show_warnings(self, warnings: list[str]) -> None:
        self.warnings_label.setText("\n".join(warnings))
        self.warnings_label.setVisible(bool(warnings))

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
        _, _, prediction = self._rows[min(rows)]
        if prediction.value is None:
            self.contributions_note.setText(f"Not computed: {readable(prediction.reason)}" if prediction.reason else "")
            return
        items = sorted(prediction.contributions.items(), key=lambda kv: -abs(kv[1]))
        self.contributions.setRowCount(len(items))
        for row, (name, value) in enumerate(items):
            feature = prediction.features.get(name)
            out = name in prediction.out_of_range
            cells = [("⚠ " if out else "") + feature_title(name), "—" if feature is None else f"{feature:.4g}",
                     f"{value:+.3f}"]
            for column, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(text)
                if column == 0:
                    item.setToolTip(feature_description(name))
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

