"""Scene: the one source of truth the window shows — study, timepoint, layers, cursor.

No Qt here: widgets observe the scene through :class:`~viewer.core.events.Events` and change it
through its methods, and tests drive the same methods without a window. Display settings are
kept per *role* (not per file), so switching timepoints keeps a PET window or a ¹⁹F threshold
and timepoints stay comparable. Volumes of a timepoint are loaded on first use and kept.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from viewer.core.display import DisplayProps, default_display
from viewer.core.events import Events
from viewer.core.io.study import Study, Timepoint, load_timepoint
from viewer.core.layers import LAYER_ORDER, build_layers, default_focus
from viewer.core.quant.stats import TimepointQuantifier, TimepointStats
from viewer.core.recovery import (
    RecoveryInfo,
    RecoveryJournal,
    find_recoverable,
    recover,
)
from viewer.core.regions import EditableLabels, LabelTable
from viewer.core.render import Layer
from viewer.core.spaces import (
    Plane,
    display_plane,
    map_labels_to_grid,
    same_grid,
    sample_point,
)
from viewer.core.volume import ROLE_QUANTITY, Volume


class Scene:
    """Evented state of the viewer.

    Events: ``timepoint``, ``cursor``, ``display`` (role=...), ``order``, ``radiological``,
    ``regions`` (the label map or its names changed), ``stats`` (new numbers are available).
    """

    def __init__(self, study: Study, timepoint: int = 0, radiological: bool = True,
                 recovery_folder: Path | None = None) -> None:
        self.events = Events()
        self.study = study
        #: where region edits are journaled for crash recovery (None: not journaled)
        self.recovery_folder = recovery_folder
        # Loading and quantification may run in worker threads. One lock per timepoint and
        # cache, held only while that entry is built: reading a ready entry never waits.
        self._locks_guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._timepoint = 0
        self._volumes: dict[str, dict[str, Volume]] = {}
        self._quantifiers: dict[str, TimepointQuantifier] = {}
        self._editables: dict[str, EditableLabels] = {}
        self._models: list | None = None
        self.display: dict[str, DisplayProps] = {}
        self.order: list[str] = list(LAYER_ORDER)
        self.radiological = radiological
        self._timepoint = self._checked_index(timepoint)
        self._adopt_display(self.volumes)
        self.cursor = np.asarray(default_focus(self.volumes, self.timepoint), dtype=float)

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
        """Give roles seen for the first time their default display (levels from this volume)."""
        build_layers(volumes, self.timepoint, self.display)

    # -- layers -------------------------------------------------------------------------------
    @property
    def anatomy(self) -> Volume:
        return self.volumes["anatomical"]

    def region_names(self, timepoint: Timepoint | None = None) -> dict[int, str]:
        """Current names of the labels: the label table while editing, else the manifest's."""
        timepoint = timepoint or self.timepoint
        editable = self._editables.get(timepoint.label)
        return editable.table.names if editable is not None else dict(timepoint.region_names)

    def layers(self) -> list[Layer]:
        """The current timepoint's layers in drawing order (anatomy first, always)."""
        volumes = self.volumes
        roles = ["anatomical"] + [r for r in self.order if r != "anatomical"]
        names = self.region_names()
        return [
            Layer(volumes[role], self.display[role], names if role == "regions" else {})
            for role in roles if role in volumes
        ]

    def set_display(self, role: str, **changes: Any) -> None:
        """Change how one role is shown (colormap, levels, visible_range, opacity, visible)."""
        if role not in self.display:
            raise KeyError(f"no layer with role {role!r}")
        updated = replace(self.display[role], **changes)
        if updated != self.display[role]:
            self.display[role] = updated
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
        voxel = self.anatomy.world_to_voxel_points(self.cursor)
        voxel[axis] = np.clip(np.rint(voxel[axis]) + steps, 0, self.anatomy.shape[axis] - 1)
        self.set_cursor(self.anatomy.voxel_to_world_points(voxel))

    def set_radiological(self, radiological: bool) -> None:
        if radiological != self.radiological:
            self.radiological = radiological
            self.events.emit("radiological")

    def plane(self, orientation: str) -> Plane:
        """The anatomical slice a view shows through the cursor."""
        return display_plane(self.anatomy, orientation, self.cursor, self.radiological)

    def readout(self, world_xyz: Any | None = None) -> list[tuple[str, str, str]]:
        """(layer, value, units) at a world point for *every* layer, in drawing order.

        ¹⁹F is shown in cells/voxel when the study is calibrated (S_c / S̄_ref · F_vox / atoms per
        cell at that voxel's noise-corrected signal); the region shows its name.
        """
        point = self.cursor if world_xyz is None else np.asarray(world_xyz, dtype=float)
        rows: list[tuple[str, str, str]] = []
        for layer in self.layers():
            volume = layer.volume
            role = volume.role
            nearest = role == "regions"
            value = sample_point(volume, point, "nearest" if nearest else "linear")
            quantity = ROLE_QUANTITY[role]
            if value is None:
                rows.append((quantity, "outside", ""))
            elif nearest:
                label = int(value)
                names = self.region_names()
                rows.append((quantity, "—" if label == 0 else names.get(label, f"label {label}"), ""))
            elif role == "fluorine" and self.fluorine_cells_per_signal() is not None:
                fluorine = self._quantifiers[self.timepoint.label].fluorine
                assert fluorine is not None
                corrected = float(np.sqrt(max(value * value - fluorine.sigma**2, 0.0)))
                rows.append(("¹⁹F cells", f"{corrected * fluorine.cells_per_signal:.4g}", "cells/voxel"))
            else:
                rows.append((quantity, f"{value:.4g}", volume.units))
        return rows

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
        if "regions" in volumes and not same_grid(volumes["regions"], anatomy):
            # regions are edited on the anatomical grid, the grid the views and tools use
            source = volumes["regions"]
            mapped = map_labels_to_grid(source, anatomy)
            dtype = np.uint8 if mapped.max() < 256 else np.uint16
            volumes["regions"] = Volume.from_array(mapped.astype(dtype), anatomy.voxel_to_world, role="regions",
                                                   name=source.name, source=source.source)
        if "regions" not in volumes:
            volumes["regions"] = Volume.from_array(
                np.zeros(anatomy.shape, np.uint8), anatomy.voxel_to_world, role="regions", name=f"{timepoint.label} regions"
            )
            self.display.setdefault("regions", default_display(volumes["regions"]))
        editable = EditableLabels(volumes["regions"], self._label_table(volumes["regions"], timepoint))
        if self.recovery_folder is not None:
            source = volumes["regions"].source
            key = str(source) if source is not None else f"new regions of {timepoint.label}"
            journal = RecoveryJournal(self.recovery_folder, self.study.id, timepoint.label, key)
            editable = journal.attach(editable)
        editable.add_listener(lambda labels, box, tp=timepoint: self._on_labels_edited(tp, labels, box))
        self._editables[timepoint.label] = editable
        return editable

    @staticmethod
    def _label_table(regions: Volume, timepoint: Timepoint) -> LabelTable:
        """The table saved beside the label map (names, colours, locks), else the manifest's names."""
        from viewer.core.io.labels import label_table_path, table_from_json

        if regions.source is not None:
            path = label_table_path(regions.source)
            if path.exists():
                return table_from_json(path.read_text(encoding="utf-8"), path)
        return LabelTable.from_names(dict(timepoint.region_names))

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
            mapped = map_labels_to_grid(origin.labels, target.labels).astype(target.data.dtype, copy=False)
            box = tuple(slice(0, n) for n in target.data.shape)
            edit = target.apply_voxels(f"regions from {source.label}", box, mapped, respect_locks=False)
            table_edit = target.set_table(f"label table from {source.label}", origin.table)
            changed += int(edit is not None or table_edit is not None)
        return changed

    def recoverable(self) -> list[RecoveryInfo]:
        """Journals of this study left by a session that ended without saving."""
        if self.recovery_folder is None:
            return []
        labels = {tp.label for tp in self.study.timepoints}
        return [info for info in find_recoverable(self.recovery_folder)
                if info.study_id == self.study.id and info.timepoint_label in labels]

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
        editable = self._editables[timepoint.label]
        quantifier = self._quantifiers.get(timepoint.label)
        if quantifier is not None:
            if quantifier.labels is not editable.labels:
                quantifier.set_labels(editable.labels)
            if quantifier.region_names != editable.table.names:
                quantifier.names_changed(editable.table.names)
            for label in labels:
                quantifier.labels_changed(label, box)
        self.events.emit("regions", timepoint=timepoint.label, labels=frozenset(labels), box=box)

    # -- quantification ---------------------------------------------------------------------------
    def quantifier(self, timepoint: Timepoint | None = None) -> TimepointQuantifier:
        """The timepoint's quantification state (prepared once, then cheap per region)."""
        timepoint = timepoint or self.timepoint
        quantifier = self._quantifiers.get(timepoint.label)
        if quantifier is not None:
            return quantifier
        volumes = self.volumes_of(timepoint)
        models = self.models()
        with self._lock_for("quantifier", timepoint.label):
            if timepoint.label not in self._quantifiers:
                quantifier = TimepointQuantifier(self.study, timepoint, volumes, models=models)
                editable = self._editables.get(timepoint.label)
                if editable is not None and editable.table.names != quantifier.region_names:
                    quantifier.names_changed(editable.table.names)
                self._quantifiers[timepoint.label] = quantifier
        return self._quantifiers[timepoint.label]

    def models(self) -> list:
        """The study's prediction models (``[[model]]`` in the manifest), loaded once."""
        with self._lock_for("models", ""):
            if self._models is None:
                from viewer.core.predict import load_models

                self._models = load_models(self.study.models) if self.study.models else []
        return self._models

    def add_model(self, model) -> None:
        """Add a user's prediction model to this session (shown beside the study's models)."""
        models = self.models()
        models.append(model)
        for quantifier in self._quantifiers.values():
            quantifier.models = list(models)

    def fluorine_cells_per_signal(self) -> float | None:
        """¹⁹F calibration of the current timepoint, once its quantifier has been prepared.

        Never prepares it here (that takes ~0.1 s): the window prepares it off the GUI thread
        and the readout shows a.u. until then.
        """
        quantifier = self._quantifiers.get(self.timepoint.label)
        if quantifier is None or quantifier.fluorine is None:
            return None
        return quantifier.fluorine.cells_per_signal

    def stats(self, timepoint: Timepoint | None = None) -> TimepointStats:
        """Every region's numbers for a timepoint (computed on demand)."""
        return self.quantifier(timepoint).compute()
