"""Turning a study into results: the layer above ``io``, ``quant`` and ``predict``.

``quant`` takes arrays and affines and returns numbers; ``predict`` takes those numbers as
features; neither loads files nor knows the other. This module composes them: it loads a
study's images and models, runs the quantifier of each timepoint and adds the predictions
through the quantifier's one assembly (:meth:`TimepointQuantifier._assemble`), so `viewer
stats`, the report and the window's session get the same results by the same path.

Layers (checked by the import-linter contract in pyproject.toml):
``ui`` → ``scene``/``report``/``analysis`` → ``predict`` → ``quant`` → ``io``/``spaces``/``volume``.
"""

from __future__ import annotations

from typing import Any, Sequence

from viewer.core.io.labels import saved_label_table
from viewer.core.io.study import Study, load_timepoint
from viewer.core.quant.settings import QuantSettings
from viewer.core.quant.stats import PredictStep, StudyStats, TimepointQuantifier, TimepointStats, unique_notes


def prediction_step(models: Sequence[Any]) -> PredictStep:
    """The step a quantifier runs on every result: the models' predictions and their notes
    (a note when there is no model). ``models`` is read at each call, so a model added to
    the session's list is used from the next result on."""
    from viewer.core.predict import fill_predictions

    def predict(stats: TimepointStats) -> None:
        fill_predictions(stats, list(models))

    return predict


def compute_study_stats(study: Study, timepoint_label: str | None = None, settings: QuantSettings | None = None) -> StudyStats:
    """Load and quantify the study's timepoints (or one of them), with the manifest's models."""
    timepoints = [study.timepoint(timepoint_label)] if timepoint_label else list(study.timepoints)
    models: list[Any] = []
    if study.models:
        from viewer.core.predict import load_models

        models = load_models(study.models)
    step = prediction_step(models)
    results: list[TimepointStats] = []
    notes: list[str] = []
    for timepoint in timepoints:
        stats = TimepointQuantifier(study, timepoint, load_timepoint(study, timepoint), settings, step,
                                    region_names=saved_label_table(timepoint).names).compute()
        results.append(stats)
        notes.extend(f"{timepoint.label}: {note}" for note in stats.notes)
    return StudyStats(study.id, results, unique_notes(notes))


__all__ = ["compute_study_stats", "prediction_step"]
