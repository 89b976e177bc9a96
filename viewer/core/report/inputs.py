"""What a report is made from, gathered either from files (headless) or from a open Scene.

``viewer report`` and File ▸ Export report must produce the same content. Both collect the
same :class:`TimepointInput` per timepoint — the images, the region names and the computed
numbers — and hand them to one builder (:func:`viewer.core.report.build_report`). The only
difference is where they come from: the headless path loads and quantifies the files; the
window passes what it already has, including region edits not yet saved (the report says so).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from viewer.core.io.study import Study, Timepoint, load_timepoint
from viewer.core.quant.stats import TimepointQuantifier, TimepointStats
from viewer.core.volume import Volume


@dataclass
class TimepointInput:
    """One timepoint's material for the report.

    Attributes:
        timepoint: the manifest's timepoint.
        volumes: its images by role (the region map is the one the numbers were computed on).
        stats: every region's numbers (PRODUCT.md §3).
        region_names: label → name as shown in the numbers and the images.
        unsaved_edits: the regions were edited in the window and not saved to disk.
    """

    timepoint: Timepoint
    volumes: Mapping[str, Volume]
    stats: TimepointStats
    region_names: dict[int, str] = field(default_factory=dict)
    unsaved_edits: bool = False


def selected_timepoints(study: Study, timepoint_label: str | None) -> list[Timepoint]:
    """Every timepoint, or the one named (a ViewerError lists the labels when it does not exist)."""
    return [study.timepoint(timepoint_label)] if timepoint_label else list(study.timepoints)


def study_models(study: Study) -> list[Any]:
    """The manifest's prediction models, loaded (an empty list without ``[[model]]``)."""
    if not study.models:
        return []
    from viewer.core.predict import load_models

    return load_models(study.models)


@contextmanager
def streamed_inputs(study: Study, timepoint_label: str | None, models: Sequence[Any]) -> Iterator[Iterator[TimepointInput]]:
    """Timepoints loaded and quantified two at a time in worker threads, yielded in study order.

    Decompressing and quantifying run mostly in numpy, zlib and numba, which release the GIL;
    a consumer that renders each timepoint as it arrives overlaps its work with the loading of
    the next ones. Each timepoint's images are loaded once and shared by numbers and images.
    """
    def gather(timepoint: Timepoint) -> TimepointInput:
        volumes = load_timepoint(study, timepoint)
        stats = TimepointQuantifier(study, timepoint, volumes, models=models).compute()
        return TimepointInput(timepoint, volumes, stats, dict(timepoint.region_names))

    timepoints = selected_timepoints(study, timepoint_label)
    with ThreadPoolExecutor(max_workers=min(2, len(timepoints))) as pool:
        futures = [pool.submit(gather, timepoint) for timepoint in timepoints]
        try:
            yield (future.result() for future in futures)
        finally:
            for future in futures:
                future.cancel()


def inputs_from_study(study: Study, timepoint_label: str | None = None) -> tuple[list[TimepointInput], list[Any]]:
    """Load and quantify the study's timepoints from disk, with the manifest's prediction models."""
    models = study_models(study)
    with streamed_inputs(study, timepoint_label, models) as inputs:
        return list(inputs), models


@dataclass
class SceneSnapshot:
    """What the window hands to a report job: the study, its models, and copies of the
    label maps being edited (so strokes made while the report is built cannot change it)."""

    study: Study
    timepoints: list[Timepoint]
    labels: dict[str, Volume]
    region_names: dict[str, dict[int, str]]
    unsaved: dict[str, bool]
    models: list[Any]
    scene: Any


def snapshot_scene(scene: Any, timepoint_label: str | None = None) -> SceneSnapshot:
    """Take the window's state for a report (GUI thread; copies only the edited label maps)."""
    timepoints = selected_timepoints(scene.study, timepoint_label)
    labels: dict[str, Volume] = {}
    unsaved: dict[str, bool] = {}
    editables = scene.editables()
    for timepoint in timepoints:
        editable = editables.get(timepoint.label)
        if editable is not None:
            current = scene.volumes_of(timepoint)["regions"]
            labels[timepoint.label] = Volume.from_array(
                np.array(editable.data, copy=True), current.voxel_to_world, role="regions", units=current.units,
                name=current.name, source=current.source)
            unsaved[timepoint.label] = bool(editable.dirty)
    names = {tp.label: dict(scene.region_names(tp)) for tp in timepoints}
    return SceneSnapshot(scene.study, timepoints, labels, names, unsaved, list(scene.models()), scene)


def inputs_from_snapshot(snapshot: SceneSnapshot) -> list[TimepointInput]:
    """Quantify a snapshot (any thread): the scene's images with the snapshot's label maps."""
    inputs = []
    for timepoint in snapshot.timepoints:
        volumes = dict(snapshot.scene.volumes_of(timepoint))
        if timepoint.label in snapshot.labels:
            volumes["regions"] = snapshot.labels[timepoint.label]
        names = snapshot.region_names[timepoint.label]
        quantifier = TimepointQuantifier(snapshot.study, timepoint, volumes, models=snapshot.models)
        if names != quantifier.region_names:
            quantifier.names_changed(names)
        inputs.append(TimepointInput(timepoint, volumes, quantifier.compute(), names,
                                     unsaved_edits=snapshot.unsaved.get(timepoint.label, False)))
    return inputs


def inputs_from_scene(scene: Any, timepoint_label: str | None = None) -> tuple[list[TimepointInput], list[Any]]:
    """The same material from an open :class:`viewer.core.scene.Scene` (the window's state).

    Uses the scene's loaded images, its current (possibly edited) regions and names, and its
    models, including ones the user added in the window.
    """
    snapshot = snapshot_scene(scene, timepoint_label)
    return inputs_from_snapshot(snapshot), snapshot.models
