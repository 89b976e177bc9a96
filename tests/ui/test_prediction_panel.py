"""The predictions tab: values, the demonstration notice, warnings, contributions, user models."""

from __future__ import annotations

import json

import pytest
from PySide6 import QtWidgets

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _wait_predictions(qtbot, window):
    """Show day 7 (at the demo's scanner noise day 1's penumbra cells are below detection, so
    it has no prediction) and wait for its predictions."""
    if window.scene.timepoint.label != "day 7":
        window.scene.set_timepoint(1)
    qtbot.waitUntil(lambda: window.prediction_panel.table.rowCount() > 0
                    and window.prediction_panel.stats is not None
                    and window.prediction_panel.stats.label == "day 7", timeout=30_000)


def _texts(table, column):
    return [table.item(row, column).text() for row in range(table.rowCount())]


def test_panel_shows_values_disclaimer_and_contributions(window, qtbot):
    _wait_predictions(qtbot, window)
    panel = window.prediction_panel
    labels = [w.text() for w in panel.findChildren(QtWidgets.QLabel)]
    assert any("not for clinical decisions" in text for text in labels)
    regions = _texts(panel.table, 0)
    values = _texts(panel.table, 2)
    penumbra = values[regions.index("penumbra")]
    assert 0.0 <= float(penumbra) <= 1.0
    # other regions say why there is no value instead of a number, across value and interval
    core_row = regions.index("core")
    assert values[core_row] == "not computed: the model applies to penumbra regions only"
    assert panel.table.columnSpan(core_row, 2) == 2
    panel.table.selectRow(regions.index("penumbra"))
    assert panel.contributions.rowCount() >= 5
    assert "contributions" in panel.contributions_note.text()


def test_out_of_range_warning_is_visible(window, qtbot):
    _wait_predictions(qtbot, window)
    panel = window.prediction_panel
    stats = window.scene.results.latest(window.scene.timepoint.label)
    penumbra = stats.region("penumbra")
    penumbra.values["sodium_mean_mM"] = 140.0  # far outside the training range
    from viewer.core.predict import fill_predictions

    fill_predictions(stats, window.scene.models())  # the analysis step of every result, run again
    panel.show_stats(stats)
    regions = _texts(panel.table, 0)
    value = panel.table.item(regions.index("penumbra"), 2)
    assert value.text().startswith("⚠") and "TSC (mM) = 140 mM lies outside the training range" in value.toolTip()
    assert panel.warnings_label.isVisibleTo(panel)
    assert "⚠ penumbra (" in panel.warnings_label.text() and "TSC (mM) = 140 mM" in panel.warnings_label.text()
    assert "sodium_mean_mM" not in panel.warnings_label.text()  # the registry's name, not the identifier


def test_adding_a_user_model_shows_it_side_by_side(window, qtbot, tmp_path):
    from viewer.core.predict import bundled_model_paths

    _wait_predictions(qtbot, window)
    onnx, card = bundled_model_paths()[0]
    data = json.loads(card.read_text())
    data["name"] = "My site model"
    data["version"] = "2.0"
    (tmp_path / "site.onnx").write_bytes(onnx.read_bytes())
    (tmp_path / "site.json").write_text(json.dumps(data))
    panel = window.prediction_panel
    before = panel.table.rowCount()
    assert panel.add_model(tmp_path / "site.onnx", tmp_path / "site.json") is not None
    qtbot.waitUntil(lambda: panel.table.rowCount() == 2 * before, timeout=30_000)
    assert "My site model 2.0" in _texts(panel.table, 1)
    (tmp_path / "bad.onnx").write_text("not a model")
    assert panel.add_model(tmp_path / "bad.onnx", tmp_path / "site.json") is None
    assert "error:" in panel.status.text()


def test_the_panel_shows_the_results_predictions_without_running_the_models(window, qtbot, monkeypatch):
    """The predictions are part of the scene's result (its prediction step): the panel only
    shows them, so a model runs once per result, not once more per widget (issue 14)."""
    _wait_predictions(qtbot, window)
    stats = window.scene.results.latest(window.scene.timepoint.label)
    runs = []
    for model in window.scene.models():
        monkeypatch.setattr(model, "predict_many", lambda rows, m=model: runs.append(m) or [])
    window.prediction_panel.show_stats(stats)
    assert runs == []
    assert window.prediction_panel.table.rowCount() > 0
