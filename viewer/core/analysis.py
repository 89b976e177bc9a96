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

from concurrent.futures import Future, ThreadPoolExecutor
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


#: Timepoints (and the model loading) worked on at once: the machine's cores are few, and each
#: timepoint in flight holds its images (the report's streamed inputs keep two as well).
WORKERS = 2


def compute_study_stats(study: Study, timepoint_label: str | None = None, settings: QuantSettings | None = None) -> StudyStats:
    """Load and quantify the study's timepoints (or one of them), with the manifest's models.

    Two at a time: decompressing, reading and most of quantifying run in zlib/ISA-L, numpy and
    scipy, which release the GIL, and the models (onnxruntime's import and sessions) load
    beside them; each prediction waits for them. Results are in study order.
    """
    timepoints = [study.timepoint(timepoint_label)] if timepoint_label else list(study.timepoints)
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="stats") as pool:
        loading: Future | None = pool.submit(_load_models, study) if study.models else None

        def step(stats: TimepointStats) -> None:
            from viewer.core.predict import fill_predictions

            fill_predictions(stats, loading.result() if loading is not None else [])

        def quantify(timepoint) -> TimepointStats:
            return TimepointQuantifier(study, timepoint, load_timepoint(study, timepoint), settings, step,
                                       region_names=saved_label_table(timepoint).names).compute()

        results = [future.result() for future in [pool.submit(quantify, tp) for tp in timepoints]]
    notes = [f"{tp.label}: {note}" for tp, stats in zip(timepoints, results) for note in stats.notes]
    return StudyStats(study.id, results, unique_notes(notes))


def _load_models(study: Study) -> list[Any]:
    from viewer.core.predict import load_models

    return load_models(study.models)


__all__ = ["compute_study_stats", "prediction_step"]
