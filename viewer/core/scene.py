"""Scene: the one source of truth the window shows — study, timepoint, layers, cursor.

No Qt here: widgets observe the scene through :class:`~viewer.core.events.Events` and change it
through its methods, and tests drive the same methods without a window. Display settings are
kept per *role* (not per file), so switching timepoints keeps a PET window or a ¹⁹F threshold
and timepoints stay comparable. Volumes of a timepoint are loaded on first use and kept.

Saving is the scene's too (:meth:`Scene.save_regions`): one writer per study (the study lock,
taken at the first edit when ``editing_lock``), files changed on disk since they were read
refused, then the save transaction of :mod:`viewer.core.io.labels`. :meth:`Scene.reconcile`
tidies a study after a crash before :meth:`Scene.recoverable` offers the edits back.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from viewer.core.analysis import prediction_step
from viewer.core.display import DisplayProps, default_display
from viewer.core.errors import ImageExists, ViewerError
from viewer.core.events import Events
from viewer.core.io.labels import (
    ReconciledFiles,
    SavedRegions,
    reconcile_study_files,
    save_timepoint_regions,
    saved_label_table,
)
from viewer.core.io.levels_cache import LevelsCache
from viewer.core.io.manifest_edit import add_images_to_manifest, write_transforms
from viewer.core.io.study import (
    Study,
    Timepoint,
    check_overlay_role,
    load_overlay,
    load_timepoint,
    placed_anew,
    world_from_file,
)
from viewer.core.io.study_lock import (
    FileState,
    LockState,
    StudyLock,
    StudyLocked,
    check_unchanged,
    file_state,
)
from viewer.core.layers import LAYER_ORDER, anatomy_extent, build_layers, default_focus
from viewer.core.measurements import (
    ROI,
    FluorineCalibration,
    LayerStatistics,
    Measurements,
    roi_statistics,
)
from viewer.core.protocols import default_protocol, protocol
from viewer.core.quant.stats import TimepointQuantifier, TimepointStats
from viewer.core.recovery import (
    RecoveryInfo,
    RecoveryJournal,
    discard,
    find_recoverable,
    holds_journal_result,
    recover,
)
from viewer.core.regions import EditableLabels, LabelSnapshot, LabelTable
from viewer.core.render import Layer
from viewer.core.results import StudyResults
from viewer.core.spaces import (
    Plane,
    display_plane,
    map_labels_to_grid,
    same_grid,
    sample_point,
)
from viewer.core.transforms import compose
from viewer.core.volume import ROLE_QUANTITY, Volume


@dataclass(frozen=True)
class Reconciliation:
    """What :meth:`Scene.reconcile` did when the study was opened.

    Attributes:
        files: hidden temporaries and orphaned maps of a killed save that were removed.
        saved_journals: journals whose edits the saved map already held (dropped, not offered).
        locked: another live session holds the study: nothing was touched, this session is
            read-only (None: the study was free).
        taken_over: the stale lock (its holder ended) or confirmed lock that was taken over.
    """

    files: ReconciledFiles = field(default_factory=ReconciledFiles)
    saved_journals: tuple[Path, ...] = ()
    locked: LockState | None = None
    taken_over: LockState | None = None


def smallest_label_dtype(largest: int) -> type:
    """The smallest unsigned integer type that holds labels up to ``largest`` (a label map
    edited on the anatomical grid stays small, and never wraps a large label)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if largest <= np.iinfo(dtype).max:
            return dtype
    return np.int64


#: Planes through the cursor kept by :meth:`Scene.plane` (three views, a compared timepoint).
PLANES_KEPT = 16


class Scene:
    """Evented state of the viewer.

    Events: ``timepoint``, ``cursor``, ``display`` (role=...), ``order``, ``radiological``,
    ``regions`` (timepoint=..., labels=..., box=...: the label map or its table changed),
    ``stats`` (timepoint=..., version=..., current=...: new numbers in :attr:`results`),
    ``stats_failed`` (timepoint=..., message=...),
    ``protocol`` (protocol=...: another display protocol was chosen),
    ``lock`` (state=..., message=...: another session holds the study, this one cannot save),
    ``saved`` (timepoint=..., path=...: a timepoint's regions were saved),
    ``measurements`` (a ruler or ROI was added or removed: :attr:`measurements`),
    ``images`` (timepoint=..., role=...: an image was added to a timepoint; ``order`` follows).
    """

    def __init__(self, study: Study, timepoint: int = 0, radiological: bool = True,
                 recovery_folder: Path | None = None, editing_lock: bool = False,
                 levels_cache: LevelsCache | None = None) -> None:
        self.events = Events()
        self.study = study
        #: where default levels and the opening focus are remembered per image file (None: none)
        self.levels_cache = levels_cache
        #: where region edits are journaled for crash recovery (None: not journaled)
        self.recovery_folder = recovery_folder
        #: take the study's lock at the first edit (the window does; a headless scene locks
        #: only while it saves)
        self.editing_lock = editing_lock
        #: this session's hold on the study (None: not holding it)
        self.lock: StudyLock | None = None
        #: the live lock of another session that keeps this one from saving (None: none seen)
        self.locked_by: LockState | None = None
        # the manifest and each timepoint's map as read, to notice others rewriting them
        self._manifest_state: FileState | None = file_state(study.manifest, content_hash=True)
        self._map_states: dict[str, FileState | None] = {
            tp.label: file_state(tp.images.get("regions")) for tp in study.timepoints
        }
        # Loading and quantification may run in worker threads. One lock per timepoint and
        # cache, held only while that entry is built: reading a ready entry never waits.
        self._locks_guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._timepoint = 0
        self._volumes: dict[str, dict[str, Volume]] = {}
        self._editables: dict[str, EditableLabels] = {}
        #: a timepoint's regions as loaded, while its editable holds them carried onto the
        #: anatomy's grid and no voxel has been edited (the numbers use these)
        self._loaded_regions: dict[str, Volume] = {}
        # the saved label table of each timepoint not being edited (read once; while a
        # timepoint is edited its EditableLabels holds the table)
        self._saved_tables: dict[str, LabelTable] = {}
        self._extents: dict[str, np.ndarray | None] = {}  # the anatomy's extent per timepoint
        self._models: list | None = None
        #: every timepoint's numbers, versioned, and the jobs that keep them up to date
        self.results = StudyResults(self)
        # planes through the cursor, derived (a slice step asks for each view's plane several
        # times: the step, the redraws, the crosshairs); keyed by everything a plane depends on
        self._planes: dict[tuple, Plane] = {}
        self._display: dict[str, DisplayProps] = {}
        self.order: list[str] = list(LAYER_ORDER)
        self.radiological = radiological
        self._timepoint = self._checked_index(timepoint)
        #: the display protocol (which layers show): the default for this study's images
        self.protocol: str = default_protocol(self.volumes).name
        self._adopt_display(self.volumes)
        self.cursor = np.asarray(default_focus(self.volumes, self.region_names(), levels_cache), dtype=float)
        #: images added in this session (File ▸ Add image), per timepoint: role → (file, units);
        #: not in the manifest until :meth:`save_added_images`
        self.added_images: dict[str, dict[str, tuple[Path, str]]] = {}
        #: the reader's rulers and ROIs (world mm: they measure whichever timepoint is shown)
        self.measurements = Measurements(lambda: self.events.emit("measurements"))

    # -- timepoints ---------------------------------------------------------------------------
    @property
    def timepoint(self) -> Timepoint:
        return self.study.timepoints[self._timepoint]

    @property
    def timepoint_index(self) -> int:
        return self._timepoint

    def _checked_index(self, index: int) -> int:
        if not 0 <= index < len(self.study.timepoints):
            raise IndexError(f"timepoint {index} out of range (0..{len(self.study.timepoints) - 1})")
        return index

    def volumes_of(self, timepoint: Timepoint) -> dict[str, Volume]:
        """Every image of a timepoint by role, loaded once."""
        volumes = self._volumes.get(timepoint.label)
        if volumes is not None:
            return volumes
        with self._lock_for("volumes", timepoint.label):
            if timepoint.label not in self._volumes:
                self._volumes[timepoint.label] = load_timepoint(self.study, timepoint)
        return self._volumes[timepoint.label]

    def _lock_for(self, cache: str, label: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((cache, label), threading.Lock())

    @property
    def volumes(self) -> dict[str, Volume]:
        return self.volumes_of(self.timepoint)

    def set_timepoint(self, index: int) -> None:
        """Show another timepoint; the cursor stays at the same world point."""
        index = self._checked_index(index)
        if index == self._timepoint:
            return
        volumes = self.volumes_of(self.study.timepoints[index])
        self._timepoint = index
        self._adopt_display(volumes)
        self.events.emit("timepoint", index=index)

    def _adopt_display(self, volumes: dict[str, Volume]) -> None:
        """Give roles seen for the first time their default display (levels from this volume),
        shown or hidden by the current protocol."""
        new = {role for role in volumes if role not in self._display}
        build_layers(volumes, self.label_table(), self._display, cache=self.levels_cache)  # part of the timepoint change
        shown = protocol(self.protocol).applied_to({role: self._display[role] for role in new if role in self._display})
        self._display.update(shown)

    def set_protocol(self, name: str) -> None:
        """Show the layers of a display protocol (PRODUCT.md §5); levels and colormaps stay.

        Raises:
            ViewerError: no protocol has that name (the message lists them).
        """
        chosen = protocol(name)
        with self.events.batch():
            for role, props in chosen.applied_to(self._display).items():
                if props != self._display[role]:
                    self._display[role] = props
                    self.events.emit("display", role=role)
            if chosen.name != self.protocol:
                self.protocol = chosen.name
                self.events.emit("protocol", protocol=chosen.name)

    # -- layers -------------------------------------------------------------------------------
    @property
    def anatomy(self) -> Volume:
        return self.volumes["anatomical"]

    @property
    def display(self) -> Mapping[str, DisplayProps]:
        """How each role is shown (read-only: change it with :meth:`set_display`, which
        emits the ``display`` event every view and panel redraws from)."""
        return MappingProxyType(self._display)

    def label_table(self, timepoint: Timepoint | None = None) -> LabelTable:
        """The one label table of a timepoint (names, colours, locks) that the views, the 3D
        view, legends, the quantifier, the report and saving all read: the edited table while
        the timepoint is being edited, else the saved one (the JSON beside its label map, or
        the manifest's names). Immutable: a change makes a new table and a ``regions`` event."""
        timepoint = timepoint or self.timepoint
        editable = self._editables.get(timepoint.label)
        if editable is not None:
            return editable.table
        table = self._saved_tables.get(timepoint.label)
        if table is None:
            table = self._saved_tables[timepoint.label] = saved_label_table(timepoint)
        return table

    def region_names(self, timepoint: Timepoint | None = None) -> dict[int, str]:
        """Current names of the labels (of :meth:`label_table`)."""
        return self.label_table(timepoint).names

    def layers(self, timepoint: Timepoint | None = None) -> list[Layer]:
        """A timepoint's layers (the current one's by default) in drawing order, anatomy first,
        each with the display of its role (shared by every timepoint, so two timepoints side
        by side are shown alike)."""
        timepoint = timepoint or self.timepoint
        volumes = self.volumes_of(timepoint)
        if any(role not in self._display for role in volumes):
            self._adopt_display(volumes)  # a timepoint compared before it was ever shown
        roles = ["anatomical"] + [r for r in self.order if r != "anatomical"]
        table = self.label_table(timepoint)
        return [
            Layer(volumes[role], self.display[role], table if role == "regions" else LabelTable())
            for role in roles if role in volumes
        ]

    def slice_layers(self, plane: Plane, timepoint: Timepoint | None = None) -> list[Layer]:
        """:meth:`layers` for a slice job on ``plane``: a label map being edited is replaced
        by a copy of the one slice the plane shows (the job never reads the array the GUI
        thread paints; an axis-aligned plane of the anatomical grid samples the same pixels)."""
        timepoint = timepoint or self.timepoint
        layers = self.layers(timepoint)
        editable = self._editables.get(timepoint.label)
        if editable is None:
            return layers
        for layer in layers:
            if layer.volume is editable.labels:
                if plane.normal_axis is not None and plane.slice_index is not None:
                    layer.volume = editable.slab_snapshot(plane.normal_axis, plane.slice_index)
                else:
                    source = editable.labels
                    layer.volume = Volume.from_array(np.array(editable.data), source.voxel_to_world, role=source.role,
                                                     name=source.name, source=source.source)
        return layers

    def set_display(self, role: str, **changes: Any) -> None:
        """Change how one role is shown (colormap, levels, visible_range, opacity, visible)."""
        if role not in self.display:
            raise KeyError(f"no layer with role {role!r}")
        updated = replace(self.display[role], **changes)
        if updated != self.display[role]:
            self._display[role] = updated
            self.events.emit("display", role=role)

    def move_layer(self, role: str, steps: int) -> None:
        """Move a layer up (+) or down (−) in the drawing order; the anatomy stays at the bottom."""
        if role == "anatomical" or role not in self.order:
            return
        order = [r for r in self.order if r != "anatomical"]
        index = order.index(role)
        new_index = int(np.clip(index + steps, 0, len(order) - 1))
        if new_index == index:
            return
        order.insert(new_index, order.pop(index))
        self.order = ["anatomical", *order]
        self.events.emit("order")

    # -- cursor and planes ------------------------------------------------------------------------
    def set_cursor(self, world_xyz: Any) -> None:
        """Move the linked cursor (world mm), clamped to the anatomy's extent."""
        low, high = self.anatomy.world_bounds()
        point = np.clip(np.asarray(world_xyz, dtype=float), low, high)
        if not np.allclose(point, self.cursor):
            self.cursor = point
            self.events.emit("cursor")

    def step_slice(self, orientation: str, steps: int) -> None:
        """Move the cursor by whole anatomical voxels along a view's normal."""
        plane = self.plane(orientation)
        axis = plane.normal_axis
        assert axis is not None
        index = np.rint(self.anatomy.world_to_voxel_points(self.cursor)[axis]) + steps
        self.set_cursor(self._cursor_on_slice(self.anatomy, axis, np.clip(index, 0, self.anatomy.shape[axis] - 1)))

    def _cursor_on_slice(self, anatomy: Volume, axis: int, index: float) -> np.ndarray:
        """The cursor moved along voxel ``axis`` of ``anatomy`` onto slice ``index`` (world mm),
        its other two voxel coordinates kept."""
        voxel = anatomy.world_to_voxel_points(self.cursor)
        voxel[axis] = index
        return anatomy.voxel_to_world_points(voxel)

    def set_radiological(self, radiological: bool) -> None:
        if radiological != self.radiological:
            self.radiological = radiological
            self.events.emit("radiological")

    def anatomy_extent(self, timepoint: Timepoint | None = None) -> np.ndarray | None:
        """World corners (8 × 3 mm) of a timepoint's (the current) anatomy's content — the
        head, not the empty field of view — which views fit when they open or are reset."""
        timepoint = timepoint or self.timepoint
        if timepoint.label not in self._extents:
            low, high = self.display["anatomical"].levels
            anatomy = self.volumes_of(timepoint)["anatomical"]
            self._extents[timepoint.label] = anatomy_extent(anatomy, low + 0.1 * (high - low))
        return self._extents[timepoint.label]

    def plane(self, orientation: str, timepoint: Timepoint | None = None) -> Plane:
        """The anatomical slice a view shows through the cursor (of a timepoint's own anatomy:
        two timepoints compared show the same world point, each on its own grid)."""
        anatomy = self.volumes_of(timepoint)["anatomical"] if timepoint is not None else self.anatomy
        key = (anatomy, anatomy.voxel_to_world.tobytes(), orientation, np.asarray(self.cursor).tobytes(),
               self.radiological)
        plane = self._planes.get(key)
        if plane is None:
            if len(self._planes) >= PLANES_KEPT:
                self._planes.clear()
            plane = self._planes[key] = display_plane(anatomy, orientation, self.cursor, self.radiological)
        return plane

    def neighbour_plane(self, plane: Plane, steps: int, timepoint: Timepoint | None = None) -> Plane | None:
        """The plane a view of ``plane`` shows after ``steps`` slice steps (:meth:`step_slice`
        from a cursor on ``plane``), None beyond the anatomical grid: a view's plane depends on
        its slice alone, not on where the cursor lies in it."""
        anatomy = self.volumes_of(timepoint)["anatomical"] if timepoint is not None else self.anatomy
        axis, index = plane.normal_axis, plane.slice_index
        if axis is None or index is None or plane.orientation is None:
            return None
        target = index + steps
        if not 0 <= target < anatomy.shape[axis]:
            return None
        return display_plane(anatomy, plane.orientation, self._cursor_on_slice(anatomy, axis, target), self.radiological)

    def readout(self, world_xyz: Any | None = None, timepoint: Timepoint | None = None) -> list[tuple[str, str, str]]:
        """(layer, value, units) at a world point for *every* layer of a timepoint (the current
        one), in drawing order.

        ¹⁹F is shown in cells/voxel when the study is calibrated (S_c / S̄_ref · F_vox / atoms per
        cell at that voxel's noise-corrected signal); the region shows its name.
        """
        point = self.cursor if world_xyz is None else np.asarray(world_xyz, dtype=float)
        timepoint = timepoint or self.timepoint
        prepared = self.results.prepared(timepoint.label)
        fluorine = prepared.fluorine if prepared is not None else None
        calibrated = fluorine is not None and fluorine.cells_per_signal is not None
        names = self.region_names(timepoint)
        rows: list[tuple[str, str, str]] = []
        for layer in self.layers(timepoint):
            volume = layer.volume
            role = volume.role
            nearest = role == "regions"
            value = sample_point(volume, point, "nearest" if nearest else "linear")
            quantity = ROLE_QUANTITY[role]
            if value is None:
                rows.append((quantity, "outside", ""))
            elif nearest:
                label = int(value)
                rows.append((quantity, "—" if label == 0 else names.get(label, f"label {label}"), ""))
            elif role == "fluorine" and calibrated:
                assert fluorine is not None
                corrected = float(np.sqrt(max(value * value - fluorine.sigma**2, 0.0)))
                rows.append(("¹⁹F cells", f"{corrected * fluorine.cells_per_signal:.4g}", "cells/voxel"))
            else:
                rows.append((quantity, f"{value:.4g}", volume.units))
        return rows

    # -- images added on screen ---------------------------------------------------------------------
    def add_image(self, path: str | Path, role: str, units: str = "", replace: bool = False) -> Volume:
        """Add an image file or DICOM series to the shown timepoint as ``role`` (PRODUCT.md §5
        "Adding an image as an overlay"): shown at once, measured with the timepoint's numbers,
        kept for this session (:meth:`save_added_images` writes it into the manifest).

        Raises:
            ImageExists: the timepoint has an image of that role and ``replace`` is False.
            ViewerError: the file cannot be read as that role, or lies outside the anatomy, or
                it would replace a label map with unsaved edits.
        """
        check_overlay_role(role)
        timepoint = self.timepoint
        volumes = self.volumes_of(timepoint)
        if role in volumes and not replace:
            raise ImageExists(f"{timepoint.label} already has a {ROLE_QUANTITY.get(role, role)} image "
                              f"({volumes[role].source or volumes[role].name}); replace it?")
        editable = self._editables.get(timepoint.label)
        if role == "regions" and editable is not None and editable.dirty:
            raise ViewerError(f"{timepoint.label}: save or undo the region edits before replacing the label map")
        volume = load_overlay(path, role, timepoint.label, volumes["anatomical"], units)
        volumes[role] = volume
        if role == "regions":
            self._editables.pop(timepoint.label, None)
            self._loaded_regions.pop(timepoint.label, None)
            self._saved_tables.pop(timepoint.label, None)
        self.added_images.setdefault(timepoint.label, {})[role] = (Path(path), volume.units)
        previous = self._display.get(role)
        fresh = default_display(volume)
        self._display[role] = fresh.with_(colormap=previous.colormap if previous else fresh.colormap, visible=True)
        self.results.images_changed(timepoint.label)
        with self.events.batch():
            self.events.emit("images", timepoint=timepoint.label, role=role)
            self.events.emit("order")
            self.events.emit("display", role=role)
        return volume

    def save_added_images(self, timepoint: Timepoint | None = None) -> dict[str, Path]:
        """Write the images added to a timepoint into the manifest (copied into the study
        folder when outside it), under the study lock; returns role → file as now named.

        Raises:
            ViewerError: no manifest, nothing added, another session holds the study, the
                manifest changed on disk since it was read, or it cannot be written.
        """
        timepoint = timepoint or self.timepoint
        manifest = self.study.manifest
        added = self.added_images.get(timepoint.label, {})
        if manifest is None:
            raise ViewerError("added images can be saved only into a study opened from its study.toml")
        if not added:
            raise ViewerError(f"{timepoint.label}: no image was added in this session")
        keep_lock = self.editing_lock or (self.lock is not None and self.lock.held)
        self.acquire_lock()
        try:
            check_unchanged(manifest, self._manifest_state, "the manifest")
            keys: dict[str, Any] = {}
            if "other" in added:
                keys["other_units"] = added["other"][1]
            if "pet" in added and self.volumes_of(timepoint)["pet"].meta.get("format") == "nifti":
                keys["pet_units"] = "SUV"
            placed = add_images_to_manifest(manifest, timepoint.label, {r: p for r, (p, _) in added.items()}, keys)
        finally:
            if not keep_lock:
                self.release_lock()
        self._manifest_state = file_state(manifest, content_hash=True)
        updated = replace(timepoint, images={**timepoint.images, **placed},
                          other_units=added["other"][1] if "other" in added else timepoint.other_units)
        self.study = replace(self.study, timepoints=tuple(
            updated if tp.label == timepoint.label else tp for tp in self.study.timepoints))
        self._map_states[timepoint.label] = file_state(updated.images.get("regions"))
        del self.added_images[timepoint.label]
        return placed

    # -- registration by hand (PRODUCT.md §9: nudging a transform) ------------------------------

    def transform_of(self, label: str, role: str | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(the transform, the one applied after it on the way to the reference space): a
        timepoint's ``transform`` and nothing; an image's ``image_transforms`` entry and its
        timepoint's ``transform``. None is the identity."""
        timepoint = self.study.timepoint(label)
        if role is None:
            return timepoint.transform, None
        return timepoint.world_from_image(role), timepoint.transform

    def set_transform(self, label: str, matrix: Any, role: str | None = None) -> None:
        """Use another transform for a timepoint (role None) or one of its images, in this
        session: every open image it places is placed anew (nothing resampled, nothing
        reloaded), with the regions carried from that timepoint, and their numbers are
        measured again. :meth:`save_transform` writes it into the manifest.

        Raises:
            ViewerError: the reference timepoint asked to move, the anatomy or regions as the
                image, a matrix that is not a study transform, or region edits not yet saved on
                a timepoint whose placement would change.
        """
        from viewer.core.transforms import TransformError, as_transform, is_identity

        timepoint = self.study.timepoint(label)
        if role is None and timepoint.label == self.study.timepoints[0].label:
            raise ViewerError(f"{label} is the reference space: the other timepoints are placed on it")
        if role is not None and (role in ("anatomical", "regions") or role not in timepoint.images):
            raise ViewerError(f"{label}: no image {role!r} to move against its anatomy")
        try:
            value = None if matrix is None else as_transform(matrix, f"{label} transform")
        except TransformError as exc:
            raise ViewerError(str(exc)) from None
        value = None if value is None or is_identity(value) else value
        if role is None:
            updated = replace(timepoint, transform=value)
        else:
            transforms = {r: m for r, m in timepoint.image_transforms.items() if r != role}
            updated = replace(timepoint, image_transforms=transforms if value is None else {**transforms, role: value})
        study = replace(self.study, timepoints=tuple(updated if tp.label == label else tp
                                                     for tp in self.study.timepoints))
        affected = [tp for tp in study.timepoints if tp.label == label or tp.regions_from == label]
        for tp in affected:
            editable = self._editables.get(tp.label)
            if editable is not None and editable.dirty:
                raise ViewerError(f"{tp.label}: save or undo the region edits before its registration changes")
        self.study = study
        for tp in affected:
            volumes = self._volumes.get(tp.label)
            loaded = self._loaded_regions.pop(tp.label, None)
            if volumes is not None and loaded is not None:
                volumes["regions"] = loaded  # the map as loaded, carried again when next edited
            for key, volume in (volumes or {}).items():
                volumes[key] = placed_anew(volume, world_from_file(study, tp, key))
            self._editables.pop(tp.label, None)
            self._extents.pop(tp.label, None)
            self.results.images_changed(tp.label)
        with self.events.batch():
            for tp in affected:
                self.events.emit("images", timepoint=tp.label, role=role or "anatomical")
            self.events.emit("order")

    def save_transform(self, label: str, role: str | None = None) -> None:
        """Write a timepoint's (or one image's) transform as this session holds it into the
        manifest: under the study lock, refused when the manifest changed on disk since read.

        Raises:
            ViewerError: no manifest, another session holds the study, the manifest changed,
                or it cannot be written (then it is unchanged).
        """
        from viewer.core.transforms import as_list

        manifest = self.study.manifest
        if manifest is None:
            raise ViewerError("a transform can be saved only into a study opened from its study.toml")
        matrix, _outer = self.transform_of(label, role)
        keep_lock = self.editing_lock or (self.lock is not None and self.lock.held)
        self.acquire_lock()
        try:
            check_unchanged(manifest, self._manifest_state, "the manifest")
            write_transforms(manifest, [(label, role, None if matrix is None else as_list(matrix))])
        finally:
            if not keep_lock:
                self.release_lock()
        self._manifest_state = file_state(manifest, content_hash=True)

    def measure(self, roi: ROI, timepoint: Timepoint | None = None) -> list[LayerStatistics]:
        """Every layer's statistics inside ``roi`` at a timepoint (the current one), in
        drawing order and each layer's units; ¹⁹F cells once the timepoint's calibration is
        prepared (never prepared here, like :meth:`readout`)."""
        timepoint = timepoint or self.timepoint
        volumes = self.volumes_of(timepoint)  # a map being edited is its editable's volume
        roles = ["anatomical"] + [r for r in self.order if r != "anatomical"]
        prepared = self.results.prepared(timepoint.label)
        fluorine = FluorineCalibration.of(prepared.fluorine if prepared is not None else None)
        return roi_statistics(roi, [volumes[r] for r in roles if r in volumes], fluorine,
                              self.region_names(timepoint))

    # -- editing regions ----------------------------------------------------------------------------
    def editable(self, timepoint: Timepoint | None = None) -> EditableLabels:
        """The editable label map of a timepoint (an empty one on the anatomical grid if none).

        Edits notify the scene: the quantifier forgets the touched regions' extents and a
        ``regions`` event (labels=..., box=...) lets views and the region table refresh.
        """
        timepoint = timepoint or self.timepoint
        editable = self._editables.get(timepoint.label)
        if editable is not None:
            return editable
        volumes = self.volumes_of(timepoint)
        anatomy = volumes["anatomical"]
        # a map made here lies on this timepoint's anatomy, in this session's space (what a save
        # writes back, what the recovery journal fingerprints, what a new registration moves)
        own_space = {"world_from_file": compose(timepoint.transform, timepoint.world_from_image("regions"))}
        if "regions" in volumes and not same_grid(volumes["regions"], anatomy):
            # regions are edited on the anatomical grid, the grid the views and tools use; the
            # map as loaded is kept for the numbers until the first voxel is edited, so an
            # unedited carried map measures exactly what `viewer stats` does
            source = volumes["regions"]
            self._loaded_regions[timepoint.label] = source
            mapped = map_labels_to_grid(source, anatomy)
            dtype = smallest_label_dtype(int(mapped.max()) if mapped.size else 0)
            volumes["regions"] = Volume.from_array(mapped.astype(dtype), anatomy.voxel_to_world, role="regions",
                                                   name=source.name, source=source.source, meta=own_space)
        if "regions" not in volumes:
            volumes["regions"] = Volume.from_array(
                np.zeros(anatomy.shape, np.uint8), anatomy.voxel_to_world, role="regions",
                name=f"{timepoint.label} regions", meta=own_space)
            if "regions" not in self._display:
                self._display["regions"] = protocol(self.protocol).applied_to(
                    {"regions": default_display(volumes["regions"])})["regions"]
                self.events.emit("display", role="regions")
        editable = EditableLabels(volumes["regions"], self.label_table(timepoint))
        if self.recovery_folder is not None:
            source = volumes["regions"].source
            key = str(source) if source is not None else f"new regions of {timepoint.label}"
            journal = RecoveryJournal(self.recovery_folder, self.study.id, timepoint.label, key)
            editable = journal.attach(editable)
        editable.add_listener(lambda labels, box, tp=timepoint: self._on_labels_edited(tp, labels, box))
        self._editables[timepoint.label] = editable
        return editable

    def carry_regions(self, source: Timepoint | None = None) -> int:
        """Copy the regions of one timepoint to every other timepoint (world space → each
        timepoint's own label grid, nearest neighbour), one undoable edit per timepoint.

        The label table is copied too. Returns how many timepoints changed.
        """
        source = source or self.timepoint
        origin = self.editable(source)
        changed = 0
        for timepoint in self.study.timepoints:
            if timepoint.label == source.label:
                continue
            target = self.editable(timepoint)
            mapped = map_labels_to_grid(origin.labels, target.labels)
            wide = smallest_label_dtype(int(mapped.max()) if mapped.size else 0)
            if np.iinfo(wide).max > np.iinfo(target.data.dtype).max:
                raise ViewerError(f"{timepoint.label}: its label map ({target.data.dtype}) cannot hold label "
                                  f"{int(mapped.max())} of {source.label}; carry refused instead of wrapping labels")
            mapped = mapped.astype(target.data.dtype, copy=False)
            box = tuple(slice(0, n) for n in target.data.shape)
            edit = target.apply_voxels(f"regions from {source.label}", box, mapped, respect_locks=False)
            table_edit = target.set_table(f"label table from {source.label}", origin.table)
            changed += int(edit is not None or table_edit is not None)
        return changed

    # -- saving, the study lock and crash recovery ----------------------------------------------------
    def acquire_lock(self, take_over: bool = False) -> StudyLock:
        """Hold the study's lock (kept until :meth:`release_lock` or :meth:`close`).

        Raises:
            StudyLocked: another live session holds it, or a session of another host does and
                ``take_over`` is False (the user did not confirm that session has ended).
            ViewerError: the study has no manifest, or the lock file cannot be created.
        """
        if self.lock is not None and self.lock.held:
            return self.lock
        self.release_lock()
        if self.study.manifest is None:
            raise ViewerError(f"{self.study.id}: regions can be saved only for a study opened from its study.toml")
        self.lock = StudyLock.acquire(self.study.manifest, take_over=take_over)
        self.locked_by = None
        return self.lock

    def release_lock(self) -> None:
        """Let other sessions edit the study."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def close(self) -> None:
        """End of the session: the lock is released and the journals are closed (kept on
        disk: unsaved edits stay recoverable; discard or save them first to drop them)."""
        self.release_lock()
        for editable in self._editables.values():
            journal = getattr(editable, "journal", None)
            if journal is not None:
                journal.close()

    def _claim_for_editing(self) -> None:
        """The first edit takes the study's lock, so no other window saves over these edits.

        When another session holds it the edit stays (in memory and in the journal), the
        ``lock`` event says who holds it and saving is refused. Never raises: a lock file
        that cannot be created (a read-only folder) is reported by the save instead.
        """
        if not self.editing_lock or self.lock is not None or self.locked_by is not None or self.study.manifest is None:
            return
        try:
            self.acquire_lock()
        except StudyLocked as exc:
            self.locked_by = exc.state
            self.events.emit("lock", state=exc.state, message=str(exc))
        except ViewerError:
            pass

    def save_regions(self, timepoint: Timepoint | None = None, *, overwrite_changed: bool = False,
                     take_over: bool = False) -> SavedRegions:
        """Save a timepoint's regions into the study (PRODUCT.md §5: nothing drawn is lost).

        1. the study lock is taken (or confirmed still ours): another live session's lock
           raises :class:`~viewer.core.io.study_lock.StudyLocked`, a stale one is taken over;
        2. unless ``overwrite_changed`` (the user chose to), a manifest or map that changed on
           disk since this session read it raises
           :class:`~viewer.core.io.study_lock.StudyChanged` instead of being overwritten;
        3. :func:`~viewer.core.io.labels.save_timepoint_regions` runs the transaction (new
           files, manifest switched, journal cleared, old files removed);
        4. the scene's study now points at the new map (and remembers it as read).

        A headless scene (``editing_lock`` False) releases the lock again afterwards.
        """
        timepoint = timepoint or self.timepoint
        manifest = self.study.manifest
        if manifest is None:
            raise ViewerError(f"{timepoint.label}: regions can be saved only for a study opened from its study.toml")
        editable = self.editable(timepoint)
        keep_lock = self.editing_lock or (self.lock is not None and self.lock.held)
        self.acquire_lock(take_over)
        try:
            expected = None if overwrite_changed else self._manifest_state
            if not overwrite_changed:
                check_unchanged(manifest, self._manifest_state, "the manifest")
                check_unchanged(timepoint.images.get("regions"), self._map_states.get(timepoint.label), "the label map")
            saved = save_timepoint_regions(manifest, timepoint.label, editable, expected_manifest=expected,
                                           world_from_file=compose(timepoint.transform,
                                                                   timepoint.world_from_image("regions")))
        finally:
            if not keep_lock:
                self.release_lock()
        self._after_save(timepoint, saved)
        return saved

    def _after_save(self, timepoint: Timepoint, saved: SavedRegions) -> None:
        """The study as it is on disk now: the timepoint's new map and names, both the
        manifest and the map remembered as read (they are ours)."""
        editable = self._editables[timepoint.label]
        self._manifest_state = saved.manifest_state
        self._map_states[timepoint.label] = file_state(saved.map_path)
        self._loaded_regions.pop(timepoint.label, None)
        updated = replace(timepoint, images={**timepoint.images, "regions": saved.map_path.resolve()},
                          region_names=dict(editable.table.names), regions_from=None)
        self.study = replace(self.study, timepoints=tuple(
            updated if tp.label == timepoint.label else tp for tp in self.study.timepoints))
        self.events.emit("saved", timepoint=timepoint.label, path=saved.map_path)

    def reconcile(self, take_over: bool = False) -> Reconciliation:
        """Make the study consistent after a crash, whatever moment of a save it hit; call
        it on opening, before :meth:`recoverable`.

        Under the study lock (so no save of another session is running): the hidden
        temporaries and orphaned maps of a killed save are removed, and journals whose edits
        the map the manifest points at already holds (killed after the manifest was switched,
        before the journal was cleared) are dropped. Every other journal stays, to be offered.
        When another live session holds the lock nothing is touched and ``locked`` says who.
        """
        manifest = self.study.manifest
        if manifest is None:
            return Reconciliation()
        held = self.lock is not None and self.lock.held
        try:
            lock = self.acquire_lock(take_over)
        except StudyLocked as exc:
            self.locked_by = exc.state
            return Reconciliation(locked=exc.state)
        except ViewerError:
            return Reconciliation()  # no lock file possible (read-only folder): nothing to tidy either
        try:
            files = reconcile_study_files(manifest)
            saved = tuple(self._drop_saved_journals())
        finally:
            if not held:
                self.release_lock()
        return Reconciliation(files, saved, taken_over=None if held else lock.replaced)

    def _drop_saved_journals(self) -> list[Path]:
        dropped = []
        for info in self.recoverable():
            editable = self.editable(self.study.timepoint(info.timepoint_label))
            if holds_journal_result(info, editable):
                discard(info)
                dropped.append(info.path)
        return dropped

    def recoverable(self) -> list[RecoveryInfo]:
        """Journals of this study left by a session that ended without saving."""
        if self.recovery_folder is None:
            return []
        labels = {tp.label for tp in self.study.timepoints}
        return [info for info in find_recoverable(self.recovery_folder)
                if info.study_id == self.study.id and info.timepoint_label in labels]

    def recovery_moved(self, info: RecoveryInfo) -> bool:
        """The journal's map is now placed elsewhere (its timepoint registered or nudged since)."""
        from viewer.core.recovery import placement_changed

        return placement_changed(info, self.editable(self.study.timepoint(info.timepoint_label)))

    def recover(self, info: RecoveryInfo) -> int:
        """Replay a journal onto this session's map of the same timepoint; returns the edits replayed."""
        timepoint = self.study.timepoint(info.timepoint_label)
        editable = self.editable(timepoint)
        count = recover(info, editable)
        self.events.emit("regions", timepoint=timepoint.label, labels=frozenset(editable.table.names), box=None)
        return count

    def flush_journals(self) -> None:
        """Write journaled edits to disk now (the window calls this on a timer)."""
        for editable in self._editables.values():
            journal = getattr(editable, "journal", None)
            if journal is not None:
                journal.flush()

    def discard_journals(self) -> None:
        """The user chose to throw the unsaved edits away: drop their journals too."""
        for editable in self._editables.values():
            journal = getattr(editable, "journal", None)
            if journal is not None:
                journal.clear()

    def editables(self) -> dict[str, EditableLabels]:
        return dict(self._editables)

    def _on_labels_edited(self, timepoint: Timepoint, labels: set[int], box) -> None:
        self._claim_for_editing()
        if labels:  # voxels changed (not only names): the map edited is what is measured now
            self._loaded_regions.pop(timepoint.label, None)
        # first what changed (views redraw, the table says "updating"), then the numbers: a
        # small edit is measured at once and its "stats" event must come after "regions"
        self.events.emit("regions", timepoint=timepoint.label, labels=frozenset(labels), box=box)
        self.results.labels_edited(timepoint.label, labels, box)

    # -- quantification ---------------------------------------------------------------------------
    def unedited_regions(self, timepoint: Timepoint) -> Volume | None:
        """The timepoint's regions as loaded when its editable holds them carried onto the
        anatomy's grid and no voxel was edited: what its numbers are measured on (None: the
        editable's map is)."""
        return self._loaded_regions.get(timepoint.label)

    def make_quantifier(self, timepoint: Timepoint, snapshot: LabelSnapshot | None = None) -> TimepointQuantifier:
        """A timepoint's quantifier, prepared on ``snapshot`` (a frozen copy of the map being
        edited) or on the map as loaded. Any thread: it reads no array the GUI thread writes."""
        volumes = dict(self.volumes_of(timepoint))
        names = self.region_names(timepoint)
        if snapshot is not None:
            loaded = self.unedited_regions(timepoint)
            volumes["regions"] = snapshot.labels if loaded is None else loaded  # no voxel edited yet
            names = snapshot.table.names
        return TimepointQuantifier(self.study, timepoint, volumes, predict=prediction_step(self.models()),
                                   region_names=names)

    def quantifier(self, timepoint: Timepoint | None = None) -> TimepointQuantifier:
        """The timepoint's quantification state (prepared once, then cheap per region)."""
        return self.results.quantifier((timepoint or self.timepoint).label)

    def models(self) -> list:
        """The study's prediction models (``[[model]]`` in the manifest), loaded once."""
        with self._lock_for("models", ""):
            if self._models is None:
                from viewer.core.predict import load_models

                self._models = load_models(self.study.models) if self.study.models else []
        return self._models

    def add_model(self, model) -> None:
        """Add a user's prediction model to this session (shown beside the study's models)."""
        self.models().append(model)  # the quantifiers' prediction step reads this list

    def fluorine_cells_per_signal(self) -> float | None:
        """¹⁹F calibration of the current timepoint, once its quantifier has been prepared.

        Never prepares it here (that takes ~0.1 s): the window prepares it off the GUI thread
        and the readout shows a.u. until then.
        """
        quantifier = self.results.prepared(self.timepoint.label)
        if quantifier is None or quantifier.fluorine is None:
            return None
        return quantifier.fluorine.cells_per_signal

    def stats(self, timepoint: Timepoint | None = None) -> TimepointStats:
        """Every region's numbers for a timepoint as its regions are now, measured on this
        thread (headless use; the window asks :attr:`results` for them in workers)."""
        return self.results.compute_now((timepoint or self.timepoint).label)
