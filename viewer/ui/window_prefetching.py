"""The slices next to the one a view shows, sampled and composited while the reader looks at it
(issue 19: a slice step shows an image that is ready instead of waiting for a worker).

Every slice a view draws is kept; when a view steps by one slice, the neighbour it does not
keep yet (the next one: the one it came from is kept) is computed by the window's workers at a
lower priority than any slice the reader waits for; the next step (on, or back) shows the one it
reaches at once, and if that one is still being computed, whichever of it and the ordinary job
finishes first. Only navigation uses them: every other redraw (a display change, a region edit,
another timepoint, order or convention, a new study) forgets them all, and a neighbour computed
before such a change is dropped when it arrives, so a view never shows an image that no longer
matches the scene. A few are kept (:data:`PREFETCH_KEPT`): a 512×512 neighbour with five
layers holds about 7 MB.

A mixin of :class:`viewer.ui.main_window.MainWindow`, which calls :meth:`_forget_prefetched`,
:meth:`_show_prefetched` and :meth:`_after_frame` from its redraw paths.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from viewer.core.spaces import ORIENTATIONS, Plane
from viewer.ui.workers import slice_job

#: Job keys of neighbours ("prefetch:axial:+1"): one queued per view and direction, a newer
#: request replacing an older one that has not started (fast scrolling computes only the last).
PREFETCH_KEY = "prefetch:"
#: Slices kept: the one on screen, the one before it, and the next ones computed.
PREFETCH_KEPT = 4
#: Below the default 0 of the slices a view waits for (QThreadPool starts higher first).
PREFETCH_PRIORITY = -1


class SlicePrefetching:
    """Neighbouring slices computed in advance, per plane key, valid until the scene changes."""

    def _init_prefetching(self) -> None:
        self._prefetched: OrderedDict[tuple, tuple[Plane, np.ndarray, dict]] = OrderedDict()
        self._prefetch_generation = 0  # raised by every forgetting: older results are dropped
        self._prefetch_wanted: set[str] = set()  # views whose next frame is followed by its neighbours
        self._drawn_key: dict[str, tuple] = {}  # the plane key of the image each view shows
        self._requested_generation: dict[str, int] = {}  # per view: the generation its last job was asked at

    def _forget_prefetched(self) -> None:
        """Drop every neighbour kept or being computed (the scene changed in a way they miss)."""
        self._prefetched.clear()
        self._prefetch_generation += 1
        self._prefetch_wanted.clear()

    def _want_neighbours(self, orientation: str, previous: tuple | None, key: tuple) -> None:
        """After a one-slice step of a view, its next frame is followed by its neighbours."""
        if orientation in ORIENTATIONS and previous is not None and previous[:2] == key[:2] \
                and previous[3:] == key[3:] and abs(key[2] - previous[2]) == 1:
            self._prefetch_wanted.add(orientation)

    def _show_prefetched(self, orientation: str, key: tuple) -> bool:
        """Show the kept image of ``key`` in ``orientation``'s view, if there is one (and drop
        the view's ordinary job, whose image would be the same)."""
        entry = self._prefetched.get(key) if orientation in ORIENTATIONS else None
        if entry is None:
            return False
        plane, rgb, samples = entry
        self._prefetched.move_to_end(key)
        self.jobs.cancel(f"slice:{orientation}")
        self._shown_key[orientation] = key
        self._samples[orientation] = (key, samples)
        self._show(orientation, plane, rgb)
        return True

    def _asked_for(self, orientation: str) -> None:
        """A slice job of ``orientation`` was requested: its image is as current as what is kept."""
        self._requested_generation[orientation] = self._prefetch_generation

    def _after_frame(self, orientation: str, plane: Plane, rgb: np.ndarray) -> None:
        """A view showed the image of ``plane``: remember it as drawn and keep it (stepping
        back to it needs nothing computed) unless the scene changed since it was asked for;
        after a step, compute its neighbours."""
        key = self._shown_key.get(orientation)
        self._drawn_key[orientation] = key
        samples = self._samples.get(orientation)
        if (orientation in ORIENTATIONS and key is not None and samples is not None and samples[0] == key
                and self._requested_generation.get(orientation) == self._prefetch_generation):
            self._keep(key, (plane, rgb, samples[1]))
        if orientation in self._prefetch_wanted:
            self._prefetch_wanted.discard(orientation)
            self._prefetch_neighbours(orientation, plane)

    def _prefetch_neighbours(self, orientation: str, plane: Plane) -> None:
        assert self.scene is not None
        timepoint = self._timepoint_of(orientation)
        for steps in (1, -1):
            neighbour = self.scene.neighbour_plane(plane, steps, timepoint)
            if neighbour is None:
                continue
            key = self._plane_key(neighbour, timepoint.label)
            if key in self._prefetched:
                self._prefetched.move_to_end(key)
                continue
            job = slice_job(self.scene.slice_layers(neighbour, timepoint), neighbour)
            generation = self._prefetch_generation
            self.jobs.submit(f"{PREFETCH_KEY}{orientation}:{steps:+d}",
                             lambda job=job, key=key, generation=generation: (key, generation, job()),
                             priority=PREFETCH_PRIORITY)

    def _on_prefetched(self, orientation: str, result: tuple) -> None:
        """A neighbour arrived: keep it unless the scene changed since it was asked for; show
        it if its view has meanwhile stepped to it and still waits for its image."""
        key, generation, frame = result
        if generation != self._prefetch_generation:
            return
        self._keep(key, frame)
        if self._shown_key.get(orientation) == key and self._drawn_key.get(orientation) != key:
            self._show_prefetched(orientation, key)

    def _keep(self, key: tuple, frame: tuple[Plane, np.ndarray, dict]) -> None:
        """Keep ``frame`` as the newest of at most :data:`PREFETCH_KEPT`."""
        self._prefetched[key] = frame
        self._prefetched.move_to_end(key)
        while len(self._prefetched) > PREFETCH_KEPT:
            self._prefetched.popitem(last=False)
