"""Work off the GUI thread: plane sampling/compositing and statistics, with stale results dropped.

Requests carry a generation number; a job whose generation is no longer the latest for its
key is skipped before it starts, and the receiver ignores any result that arrives late. So
scrolling quickly through slices computes only what will be shown.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any, Callable, Sequence

from PySide6 import QtCore

from viewer.core.render import Layer, composite_layers, sample_layers
from viewer.core.spaces import Plane, PlaneImage


class _Bridge(QtCore.QObject):
    """Carries results from worker threads to the GUI thread (queued signal delivery)."""

    done = QtCore.Signal(str, int, object)
    failed = QtCore.Signal(str, int, str)


class Jobs(QtCore.QObject):
    """Runs keyed jobs on a thread pool; only the newest job per key counts.

    Signals:
        finished(key, generation, result)
        failed(key, generation, message)
    """

    finished = QtCore.Signal(str, int, object)
    failed = QtCore.Signal(str, int, str)

    def __init__(self, pool: QtCore.QThreadPool | None = None, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = pool or QtCore.QThreadPool.globalInstance()
        self._latest: dict[str, int] = {}
        self._lock = threading.Lock()
        self._bridge = _Bridge()
        self._bridge.done.connect(self._deliver)
        self._bridge.failed.connect(self._deliver_failure)

    def submit(self, key: str, function: Callable[[], Any], priority: int = 0) -> int:
        """Queue ``function`` as the newest job for ``key``; returns its generation. Queued jobs
        of a higher ``priority`` start first (a slice the reader waits for before one computed
        in advance)."""
        with self._lock:
            generation = self._latest.get(key, 0) + 1
            self._latest[key] = generation

        def run() -> None:
            if not self.is_current(key, generation):
                return  # a newer request replaced this one before it started
            try:
                result = function()
            except Exception as exc:  # reported to the GUI, which shows it
                detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                self._emit(self._bridge.failed, key, generation, detail)
                return
            self._emit(self._bridge.done, key, generation, result)

        self.pool.start(run, priority)
        return generation

    def cancel(self, key: str) -> None:
        """Drop the job of ``key``: not started if it is queued, its result ignored if it runs."""
        with self._lock:
            if key in self._latest:
                self._latest[key] += 1

    @staticmethod
    def _emit(signal, *args) -> None:
        """Deliver a result unless the window it was for has been closed meanwhile."""
        try:
            signal.emit(*args)
        except RuntimeError:  # "Signal source has been deleted": nobody is waiting any more
            pass

    def is_current(self, key: str, generation: int) -> bool:
        with self._lock:
            return self._latest.get(key) == generation

    def _deliver(self, key: str, generation: int, result: object) -> None:
        if self.is_current(key, generation):
            self.finished.emit(key, generation, result)

    def _deliver_failure(self, key: str, generation: int, message: str) -> None:
        if self.is_current(key, generation):
            self.failed.emit(key, generation, message)

    def wait(self, timeout_ms: int = 10_000) -> bool:
        """Block until the pool is idle (tests and benchmarks)."""
        return self.pool.waitForDone(timeout_ms)


def slice_job(layers: Sequence[Layer], plane: Plane, samples: dict[int, PlaneImage] | None = None,
              resample: set[int] | None = None):
    """A job computing (plane, rgb, samples).

    With ``samples`` (from the same plane) only the layers whose indices are in ``resample``
    are sampled again — none for a display change, just the label map after a brush stroke.
    """

    def run():
        if samples is None:
            current = sample_layers(layers, plane)
        else:
            current = dict(samples)
            if resample:
                fresh = sample_layers([layer if i in resample else _hidden(layer) for i, layer in enumerate(layers)], plane)
                current.update(fresh)
        return plane, composite_layers(layers, current, plane.shape), current

    return run


def _hidden(layer: Layer) -> Layer:
    """The same layer marked invisible (so sample_layers skips it)."""
    from dataclasses import replace

    return Layer(layer.volume, replace(layer.display, visible=False), layer.table)
