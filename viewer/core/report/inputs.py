"""What a report is made from, gathered either from files (headless) or from a open Scene.

``viewer report`` and File ▸ Export report must produce the same content. Both collect the
same :class:`TimepointInput` per timepoint — the images, the region names and the computed
numbers — and hand them to one builder (:func:`viewer.core.report.build_report`). The only
difference is where they come from: the headless path loads and quantifies the files; the
window passes what it already has, including region edits not yet saved (the report says so).

Headless, timepoints are loaded two ahead of the one being laid out and no further: a
20-timepoint study holds at most three timepoints' images at once, whatever its length (each
timepoint's section is built and its images released before a new one is loaded).

For a de-identified report, :func:`study_identifiers` reads the identifying tags of every
DICOM series the report will read, from the headers only, before the first section is made:
a name or date of a later timepoint's series must already be known when an earlier
timepoint's region names and labels are scrubbed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from viewer.core.analysis import prediction_step
from viewer.core.io.labels import saved_label_table
from viewer.core.io.nifti import is_nifti_path
from viewer.core.io.study import Study, Timepoint, load_timepoint
from viewer.core.measurements import FluorineCalibration
from viewer.core.quant.stats import TimepointQuantifier, TimepointStats
from viewer.core.regions import LabelTable
from viewer.core.report.deidentify import merge_identifiers
from viewer.core.volume import Volume

#: Timepoints loaded and quantified ahead of the one being laid out (and worker threads).
LOOKAHEAD = 2


@dataclass
class TimepointInput:
    """One timepoint's material for the report.

    Attributes:
        timepoint: the manifest's timepoint.
        volumes: its images by role (the region map is the one the numbers were computed on).
        stats: every region's numbers (PRODUCT.md §3).
        table: the label table (names and colours) of the numbers and the images.
        unsaved_edits: the regions were edited in the window and not saved to disk.
        fluorine: the timepoint's ¹⁹F calibration as its numbers were computed with (noise σ,
            cells per signal, detected voxels): what turns the ¹⁹F signal inside a
            measurement into cells; None without a ¹⁹F image or a complete calibration.
    """

    timepoint: Timepoint
    volumes: Mapping[str, Volume]
    stats: TimepointStats
    table: LabelTable = field(default_factory=LabelTable)
    unsaved_edits: bool = False
    fluorine: FluorineCalibration | None = None


def fluorine_calibration(quantifier: TimepointQuantifier) -> FluorineCalibration | None:
    """The calibration a quantifier prepared (call after :meth:`TimepointQuantifier.compute`),
    as :meth:`viewer.core.scene.Scene.measure` takes it from the window's quantifier: the same
    σ, cells per signal and detected voxels, so a measurement's cells in the report equal the
    window's."""
    return FluorineCalibration.of(quantifier.fluorine)


def selected_timepoints(study: Study, timepoint_label: str | None) -> list[Timepoint]:
    """Every timepoint, or the one named (a ViewerError lists the labels when it does not exist)."""
    return [study.timepoint(timepoint_label)] if timepoint_label else list(study.timepoints)


def study_models(study: Study) -> list[Any]:
    """The manifest's prediction models, loaded (an empty list without ``[[model]]``)."""
    if not study.models:
        return []
    from viewer.core.predict import load_models

    return load_models(study.models)


def input_identifiers(item: TimepointInput) -> dict[str, list[str]]:
    """The identifying DICOM tags of a timepoint's images (``meta["identifiers"]`` of each)."""
    return merge_identifiers(*(volume.meta.get("identifiers") or {} for volume in item.volumes.values()))


def study_identifiers(study: Study) -> dict[str, list[str]]:
    """The identifying DICOM tags of every series of the study.

    Every timepoint's, even for a report of one: the study-wide texts (condition, description)
    may quote another visit's accession number or date. Headers only (pixel data is never read;
    collecting costs about 3 ms per 200 files beyond the header scan), by the same rule
    :func:`viewer.core.io.dicom.series_identifiers` applies when a series is loaded, so the
    scrubber knows the whole study's identifiers before the first section is made.
    """
    from viewer.core.io.dicom import series_identifiers
    from viewer.core.io.dicom_scan import image_series

    found: dict[str, list[str]] = {}
    for timepoint in study.timepoints:
        for path in timepoint.images.values():
            if is_nifti_path(path) and not path.is_dir():
                continue
            for series in image_series([path]):
                found = merge_identifiers(found, series_identifiers(series))
    return found


@contextmanager
def streamed_inputs(study: Study, timepoint_label: str | None, models: Sequence[Any]) -> Iterator[Iterator[TimepointInput]]:
    """Timepoints loaded and quantified in worker threads, yielded in study order, at most
    :data:`LOOKAHEAD` ahead of the consumer.

    Decompressing and quantifying run mostly in numpy, zlib and numba, which release the GIL;
    a consumer that renders each timepoint as it arrives overlaps its work with the loading of
    the next ones. Each timepoint's images are loaded once and shared by numbers and images,
    and nothing here keeps a reference to a timepoint once it is yielded: when the consumer
    drops it, its images are freed.
    """
    def gather(timepoint: Timepoint) -> TimepointInput:
        volumes = load_timepoint(study, timepoint)
        table = saved_label_table(timepoint)
        quantifier = TimepointQuantifier(study, timepoint, volumes, predict=prediction_step(models),
                                         region_names=table.names)
        stats = quantifier.compute()
        return TimepointInput(timepoint, volumes, stats, table, fluorine=fluorine_calibration(quantifier))

    timepoints = selected_timepoints(study, timepoint_label)
    pending: deque[Future[TimepointInput]] = deque()
    with ThreadPoolExecutor(max_workers=min(LOOKAHEAD, len(timepoints))) as pool:
        try:
            yield _in_order(pool.submit, gather, timepoints, pending)
        finally:
            for future in pending:
                future.cancel()


def _in_order(submit: Callable[..., Future], gather: Callable[[Timepoint], TimepointInput],
              timepoints: Sequence[Timepoint], pending: deque) -> Iterator[TimepointInput]:
    """Results in order, keeping :data:`LOOKAHEAD` submitted ahead; a future leaves ``pending``
    before its result is yielded, so the caller's reference is the only one."""
    upcoming = iter(timepoints)
    for timepoint in upcoming:
        pending.append(submit(gather, timepoint))
        if len(pending) >= LOOKAHEAD:
            break
    while pending:
        item = pending.popleft().result()
        following = next(upcoming, None)
        if following is not None:
            pending.append(submit(gather, following))
        yield item
        del item


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
    tables: dict[str, LabelTable]
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
        loaded = scene.unedited_regions(timepoint) if editable is not None else None
        if loaded is not None:  # carried onto the anatomy for editing, not edited: measured as loaded
            labels[timepoint.label] = loaded
            unsaved[timepoint.label] = bool(editable.dirty)  # a rename is an unsaved edit too
        elif editable is not None:
            current = scene.volumes_of(timepoint)["regions"]
            labels[timepoint.label] = Volume.from_array(
                np.array(editable.data, copy=True), current.voxel_to_world, role="regions", units=current.units,
                name=current.name, source=current.source)
            unsaved[timepoint.label] = bool(editable.dirty)
    tables = {tp.label: scene.label_table(tp) for tp in timepoints}  # immutable: no copy needed
    return SceneSnapshot(scene.study, timepoints, labels, tables, unsaved, list(scene.models()), scene)


def inputs_from_snapshot(snapshot: SceneSnapshot) -> list[TimepointInput]:
    """Quantify a snapshot (any thread): the scene's images with the snapshot's label maps."""
    inputs = []
    for timepoint in snapshot.timepoints:
        volumes = dict(snapshot.scene.volumes_of(timepoint))
        if timepoint.label in snapshot.labels:
            volumes["regions"] = snapshot.labels[timepoint.label]
        table = snapshot.tables[timepoint.label]
        quantifier = TimepointQuantifier(snapshot.study, timepoint, volumes, predict=prediction_step(snapshot.models),
                                         region_names=table.names)
        stats = quantifier.compute()
        inputs.append(TimepointInput(timepoint, volumes, stats, table,
                                     unsaved_edits=snapshot.unsaved.get(timepoint.label, False),
                                     fluorine=fluorine_calibration(quantifier)))
    return inputs


def inputs_from_scene(scene: Any, timepoint_label: str | None = None) -> tuple[list[TimepointInput], list[Any]]:
    """The same material from an open :class:`viewer.core.scene.Scene` (the window's state).

    Uses the scene's loaded images, its current (possibly edited) regions and names, and its
    models, including ones the user added in the window.
    """
    snapshot = snapshot_scene(scene, timepoint_label)
    return inputs_from_snapshot(snapshot), snapshot.models
