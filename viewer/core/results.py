"""The numbers of an open study: per timepoint the latest result, its version, and the jobs
that bring it up to date.

napari's slicing is the model: a job gets an immutable request (:class:`StatsRequest`: a
snapshot of the label map and table at one version, the previous result and the regions to
measure again) and its response is merged on the owner's thread (:meth:`StudyResults.deliver`).
Only one request per timepoint is out at a time; edits made meanwhile wait in ``pending`` and
become the next request once the response is in. So two overlapping large edits cannot lose
each other's rows, edits made before the first numbers arrived are measured, and a result is
always the exact numbers of the label map of its version ("recompute after an edit" is
:meth:`~viewer.core.quant.stats.TimepointQuantifier.recompute`: compute restricted to the
touched regions, one assembly).

No Qt: the owner passes ``submit(request)``, which runs ``request.run()`` somewhere (a worker
thread in the window, inline in tests and headless use) and hands the outcome back to
:meth:`StudyResults.deliver` on the owner's thread. Events (on the scene's ``events``):
``stats`` (timepoint=label, version=n, current=bool) when a timepoint's result changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from viewer.core.events import Events
from viewer.core.io.study import Study, Timepoint
from viewer.core.quant.stats import TimepointQuantifier, TimepointStats
from viewer.core.regions import EditableLabels, LabelSnapshot


class ResultsOwner(Protocol):
    """What the results need of their owner (the :class:`~viewer.core.scene.Scene`): the
    study, the timepoint on screen, the label maps being edited, a way to prepare a
    quantifier, and the events to announce results on."""

    study: Study
    events: Events

    @property
    def timepoint(self) -> Timepoint: ...

    def editables(self) -> dict[str, EditableLabels]: ...

    def make_quantifier(self, timepoint: Timepoint, snapshot: LabelSnapshot | None = None) -> TimepointQuantifier: ...

#: Requests whose regions' boxes hold at most this volume (mm³, ≈ a 63 mm cube) are measured
#: at once on the caller's thread (≤ ≈ 20 ms), so a brush stroke's numbers appear with the
#: stroke instead of queueing behind redraws; larger ones go to ``submit``.
INLINE_MAX_MM3 = 250_000.0


@dataclass(frozen=True)
class Result:
    """A timepoint's numbers and the label-map version they measure (-1: the saved map,
    never edited in this session)."""

    stats: TimepointStats
    version: int


@dataclass(frozen=True)
class StatsRequest:
    """What one job measures; nothing in it changes while the job runs.

    Attributes:
        timepoint: the timepoint's label.
        version: the label map's version in ``snapshot`` (-1 when not being edited).
        epoch: the results' epoch when made (a model added since makes it obsolete).
        snapshot: the frozen label map and table (None: the timepoint is not being edited,
            its map is the file's and never written).
        touched: labels to measure again (None: every region, from scratch).
        base: the result the untouched rows are copied from (None with ``touched`` None).
        quantifier: the prepared quantifier of the timepoint (None: prepared by the job).
    """

    timepoint: str
    version: int
    epoch: int
    snapshot: LabelSnapshot | None
    touched: frozenset[int] | None
    base: TimepointStats | None
    quantifier: TimepointQuantifier | None
    make_quantifier: Callable[[LabelSnapshot | None], TimepointQuantifier] = field(repr=False)

    def run(self) -> Outcome:
        """Measure (any thread): never raises, a failure is an outcome with ``error``."""
        try:
            labels = self.snapshot.labels if self.snapshot is not None else None
            names = self.snapshot.table.names if self.snapshot is not None else None
            if self.quantifier is None:
                measured = self.make_quantifier(self.snapshot)
            else:
                measured = self.quantifier.frozen(labels, names)
            if self.touched is None or self.base is None:
                stats = measured.compute()
            else:
                stats = measured.recompute(self.base, self.touched)
            return Outcome(self, stats, measured)
        except Exception as exc:  # reported by the owner; the results stay as they were
            return Outcome(self, None, None, f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class Outcome:
    """A job's answer: the numbers, the quantifier copy that measured them, or an error."""

    request: StatsRequest
    stats: TimepointStats | None
    measured: TimepointQuantifier | None
    error: str | None = None


class StudyResults:
    """Per timepoint: the latest result, the edits not yet measured, the request out.

    Every method except :meth:`StatsRequest.run` belongs to the owner's thread (the thread
    that edits the label maps: the GUI thread in the window).
    """

    def __init__(self, scene: ResultsOwner, submit: Callable[[StatsRequest], None] | None = None) -> None:
        self._scene = scene
        #: runs a request and calls :meth:`deliver` with its outcome on the owner's thread
        self.submit: Callable[[StatsRequest], None] = submit or self._run_inline
        self._results: dict[str, Result] = {}
        self._pending: dict[str, set[int]] = {}     # labels edited since the request out / result
        self._wanted: set[str] = set()              # timepoints asked for and not yet measured
        self._in_flight: dict[str, StatsRequest] = {}
        self._full: set[str] = set()                 # timepoints whose next request is from scratch
        self._quantifiers: dict[str, TimepointQuantifier] = {}
        self._held = False
        self._epoch = 0
        #: the last job error (the window shows it)
        self.last_error: str | None = None

    # -- reading ------------------------------------------------------------------------------
    def latest(self, timepoint: str) -> TimepointStats | None:
        """The newest numbers of a timepoint (maybe of an older version: see :meth:`is_current`)."""
        result = self._results.get(timepoint)
        return result.stats if result is not None else None

    def version(self, timepoint: str) -> int | None:
        result = self._results.get(timepoint)
        return result.version if result is not None else None

    def is_current(self, timepoint: str) -> bool:
        """True when the timepoint's numbers measure its label map as it is now."""
        return (timepoint in self._results and timepoint not in self._pending and timepoint not in self._in_flight
                and timepoint not in self._wanted)

    def ready(self) -> list[TimepointStats]:
        """Every timepoint's newest numbers, in study order (those computed so far)."""
        return [self._results[tp.label].stats for tp in self._scene.study.timepoints if tp.label in self._results]

    def prepared(self, timepoint: str) -> TimepointQuantifier | None:
        """The timepoint's prepared quantifier, if a result has been computed (never prepares)."""
        return self._quantifiers.get(timepoint)

    # -- asking ---------------------------------------------------------------------------------
    def request(self, timepoints: list[str] | None = None) -> None:
        """Bring timepoints (default: every one, the one on screen first) up to date."""
        labels = timepoints if timepoints is not None else [tp.label for tp in self._scene.study.timepoints]
        current = self._scene.timepoint.label
        for label in labels:
            if label not in self._in_flight and (label not in self._results or label in self._pending):
                self._wanted.add(label)
        for label in sorted(self._wanted, key=lambda l: l != current):
            self._schedule(label)

    def invalidate(self) -> None:
        """Everything must be computed again (a prediction model was added): results kept
        on screen until the new ones arrive; requests out are answered, then dropped."""
        self._epoch += 1
        labels = [tp.label for tp in self._scene.study.timepoints]
        self._full.update(labels)
        self._wanted.update(label for label in labels if label not in self._in_flight)
        self.request(labels)

    def images_changed(self, timepoint: str) -> None:
        """An image was added to (or replaced in) a timepoint: its quantifier, built on the
        old images, is dropped and its numbers are measured again from scratch (answers to
        requests sent before are measured again too: the epoch changes)."""
        self._epoch += 1
        self._quantifiers.pop(timepoint, None)
        self._full.add(timepoint)
        if timepoint not in self._in_flight:
            self._wanted.add(timepoint)
        self._schedule(timepoint)

    def hold(self, held: bool) -> None:
        """While held (a brush stroke in progress) edits are only collected; the numbers
        follow once, when released."""
        self._held = held
        if not held:
            for label in list(self._pending):
                self._schedule(label)

    def labels_edited(self, timepoint: str, labels: set[int], box: Any) -> None:
        """An edit changed ``labels`` (empty: the table only) inside ``box`` (None: unknown):
        the quantifier's boxes follow now, the numbers with the next request."""
        quantifier = self._quantifiers.get(timepoint)
        editable = self._scene.editables().get(timepoint)
        if quantifier is not None and editable is not None:
            self._follow(quantifier, editable, labels, box)
        self._pending.setdefault(timepoint, set()).update(int(l) for l in labels)
        if timepoint in self._results or timepoint in self._in_flight or timepoint in self._wanted:
            self._schedule(timepoint)

    def compute_now(self, timepoint: str) -> TimepointStats:
        """The timepoint's numbers of its label map as it is now, measured on this thread
        (headless use: `scene.stats()`); stored as its result when nothing is out."""
        request = self._make_request(timepoint, full=timepoint not in self._results)
        outcome = request.run()
        if outcome.error is not None:
            self._release(request)
            raise RuntimeError(outcome.error)
        if timepoint in self._in_flight:
            self._release(request)
            return outcome.stats  # type: ignore[return-value]
        self._in_flight[timepoint] = request
        self._pending.pop(timepoint, None)
        self._wanted.discard(timepoint)
        self.deliver(outcome)
        return outcome.stats  # type: ignore[return-value]

    # -- requests and responses -------------------------------------------------------------------
    def _schedule(self, timepoint: str) -> None:
        if self._held or timepoint in self._in_flight:
            return
        if timepoint not in self._pending and timepoint not in self._wanted:
            return
        request = self._make_request(timepoint, full=timepoint not in self._results or timepoint in self._full)
        self._pending.pop(timepoint, None)
        self._wanted.discard(timepoint)
        self._full.discard(timepoint)
        self._in_flight[timepoint] = request
        if request.quantifier is not None and self._small(request):
            self.deliver(request.run())
        else:
            self.submit(request)

    def _make_request(self, timepoint: str, full: bool) -> StatsRequest:
        scene = self._scene
        editable = scene.editables().get(timepoint)
        snapshot = editable.snapshot() if editable is not None else None
        version = snapshot.version if snapshot is not None else -1
        base = None if full else self._results[timepoint].stats
        touched = None if full else frozenset(self._pending.get(timepoint, set()))
        tp = scene.study.timepoint(timepoint)
        return StatsRequest(timepoint, version, self._epoch, snapshot, touched, base, self._quantifiers.get(timepoint),
                            lambda snap, tp=tp: scene.make_quantifier(tp, snap))

    def _small(self, request: StatsRequest) -> bool:
        """True when the request's regions are small enough to measure on the owner's thread."""
        quantifier = request.quantifier
        if request.touched is None or quantifier is None or quantifier.needs_prepare or quantifier.labels is None:
            return False
        voxels = 0
        for label in request.touched:
            box = quantifier.region_box(label)
            if box is not None:
                voxels += int(np.prod([b.stop - b.start for b in box]))
        return voxels * quantifier.labels.voxel_volume_mm3 <= INLINE_MAX_MM3

    def deliver(self, outcome: Outcome) -> None:
        """Merge a job's outcome (owner's thread), then send the next request if edits waited."""
        request = outcome.request
        label = request.timepoint
        if self._in_flight.get(label) is not request:
            self._release(request)
            return  # not the request out (the study was reopened): nothing to merge
        del self._in_flight[label]
        self._release(request)
        if outcome.error is not None:  # the numbers stay as they were, and say they are stale
            self.last_error = f"{label}: {outcome.error}"
            if request.touched is None:
                self._wanted.add(label)
            else:
                self._pending.setdefault(label, set()).update(request.touched)
            self._scene.events.emit("stats_failed", timepoint=label, message=self.last_error)
            return
        if request.epoch != self._epoch:  # asked before a model was added: measure again
            self._wanted.add(label)
            self._full.add(label)
            self._schedule(label)
            return
        self._adopt(label, request, outcome)
        self._results[label] = Result(outcome.stats, request.version)  # type: ignore[arg-type]
        self._scene.events.emit("stats", timepoint=label, version=request.version, current=self.is_current(label))
        self._schedule(label)  # edits made while it ran

    def _adopt(self, label: str, request: StatsRequest, outcome: Outcome) -> None:
        """Keep the quantifier the job prepared (a first result, or a calibration prepared
        again) for the next requests; edits made while it ran are followed on the live map."""
        measured = outcome.measured
        assert measured is not None
        base = self._quantifiers.get(label)
        editable = self._scene.editables().get(label)
        if base is None:
            if editable is not None and request.snapshot is None:
                measured.set_labels(editable.labels)  # editing began while it ran (maybe on another grid)
            elif editable is not None:
                _measure_live(measured, editable)
                for edited in self._pending.get(label, set()):
                    measured.labels_changed(edited, None)  # boxes of edits made while it ran
            if editable is not None and measured.region_names != editable.table.names:
                measured.names_changed(editable.table.names)
            self._quantifiers[label] = measured
        elif request.quantifier is base and base.needs_prepare and not self._pending.get(label):
            base.adopt_prepared(measured)

    def _follow(self, quantifier: TimepointQuantifier, editable, labels: set[int], box: Any) -> None:
        if quantifier.labels is not editable.labels:
            quantifier.set_labels(editable.labels)
        if quantifier.region_names != editable.table.names:
            quantifier.names_changed(editable.table.names)
        for label in labels:
            quantifier.labels_changed(label, box)

    def quantifier(self, timepoint: str) -> TimepointQuantifier:
        """The timepoint's prepared quantifier, made now if there is none (owner's thread)."""
        quantifier = self._quantifiers.get(timepoint)
        if quantifier is None:
            editable = self._scene.editables().get(timepoint)
            snapshot = editable.snapshot() if editable is not None else None
            try:
                quantifier = self._scene.make_quantifier(self._scene.study.timepoint(timepoint), snapshot)
            finally:
                if snapshot is not None:
                    editable.release(snapshot)
            if editable is not None:
                _measure_live(quantifier, editable)
            self._quantifiers[timepoint] = quantifier
        return quantifier

    def _release(self, request: StatsRequest) -> None:
        if request.snapshot is not None:
            editable = self._scene.editables().get(request.timepoint)
            if editable is not None:
                editable.release(request.snapshot)

    # -- running inline (headless) ---------------------------------------------------------------------
    def _run_inline(self, request: StatsRequest) -> None:
        self.deliver(request.run())


def _measure_live(quantifier: TimepointQuantifier, editable: EditableLabels) -> None:
    """A quantifier prepared on a snapshot, kept by the owner: it follows the owner's live map
    (box scans on the owner's thread read it; jobs get frozen copies of it)."""
    quantifier.labels = editable.labels
    quantifier.volumes = {**quantifier.volumes, "regions": editable.labels}


__all__ = ["INLINE_MAX_MM3", "Outcome", "Result", "StatsRequest", "StudyResults"]
