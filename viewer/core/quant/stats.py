"""Assembling the per-region, per-timepoint numbers of PRODUCT.md §3 (`viewer stats`).

:class:`TimepointQuantifier` prepares each modality once per timepoint (noise, calibration,
SUVpeak map) and then measures any region cheaply, so the window can recompute the one region
a brush stroke changed. Each image is measured on its own grid with the region mapped onto it
(:func:`viewer.core.spaces.region_mask_on_grid`). Anything that cannot be computed is None
with a note saying why — never a default that looks like a measurement. In particular
(PRODUCT.md §3, "honest limits"): NaN/inf voxels inside a region are left out *and* counted in
a note per region and image (a region whose voxels are all non-finite on an image gets None
for that image's numbers); a Gd-implied dead count above the total count gives no live/dead
split, with a note, instead of a split capped to look plausible.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from viewer.core.io.study import Study, Timepoint
from viewer.core.quant.fluorine import FluorineQuantifier
from viewer.core.quant.measures import REGION_KEYS, TIMEPOINT_KEYS, plain_value
from viewer.core.quant.perfusion import MismatchSummary, mismatch_summary, sodium_mean
from viewer.core.quant.pet import PetQuantifier
from viewer.core.quant.settings import QuantSettings
from viewer.core.quant.viability import (
    MapSum,
    cells_from_spio,
    dead_cells_from_gd,
    region_sum,
    released_gd_mol,
    viability,
)
from viewer.core.spaces import label_box, label_boxes, region_mask_on_grid
from viewer.core.volume import ROLE_QUANTITY, Volume

#: Region names that calibrate the ¹⁹F image instead of holding cells.
CALIBRATION_NAMES = ("reference", "background")

#: A region whose mapped part on an image is below this share of its volume is reported as
#: partly outside that image's field of view.
PARTIAL_COVERAGE_WARNING = 0.9

#: Fills the predictions of a timepoint's result in place (the analysis layer provides it).
PredictStep = Callable[["TimepointStats"], None]


@dataclass
class RegionStats:
    """One row of the region table: the schema values plus details for the window and report."""

    values: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> int:
        return int(self.values["label"])

    @property
    def name(self) -> str:
        return str(self.values["name"])


@dataclass
class TimepointStats:
    """All regions of one timepoint, with the per-timepoint numbers and notes."""

    label: str
    day: float | None
    detection_limit_cells_per_mm3: float | None
    regions: list[RegionStats]
    notes: list[str]
    mismatch: MismatchSummary | None = None
    homing: dict[str, float | None] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def region(self, name: str) -> RegionStats | None:
        return next((r for r in self.regions if r.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "day": self.day,
            "detection_limit_cells_per_mm3": _clean(self.detection_limit_cells_per_mm3),
            "regions": [{key: _clean(r.values[key]) for key in REGION_KEYS} for r in self.regions],
        }


@dataclass
class StudyStats:
    """The result of `viewer stats`: every requested timepoint and the notes."""

    study: str
    timepoints: list[TimepointStats]
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"study": self.study, "timepoints": [t.as_dict() for t in self.timepoints], "notes": list(self.notes)}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    def to_csv(self) -> str:
        """One row per timepoint × region; timepoint columns prefixed ``timepoint_``."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        timepoint_columns = [f"timepoint_{key}" if key in ("label", "day") else key for key in TIMEPOINT_KEYS]
        writer.writerow(timepoint_columns + list(REGION_KEYS))
        for timepoint in self.timepoints:
            head = [timepoint.label, _csv(timepoint.day), _csv(timepoint.detection_limit_cells_per_mm3)]
            for region in timepoint.regions:
                writer.writerow(head + [_csv(region.values[key]) for key in REGION_KEYS])
        return buffer.getvalue()


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to None, also inside dicts."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return plain_value(value)


def _csv(value: Any) -> str:
    value = _clean(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


class TimepointQuantifier:
    """Per-timepoint quantification state; :meth:`region` measures one region on every map."""

    def __init__(self, study: Study, timepoint: Timepoint, volumes: Mapping[str, Volume], settings: QuantSettings | None = None,
                 predict: PredictStep | None = None, region_names: Mapping[int, str] | None = None) -> None:
        self.study = study
        #: the analysis step that adds predictions to every result (quant does not know models:
        #: :func:`viewer.core.analysis.prediction_step`); None leaves ``prediction`` null
        self.predict = predict
        self.timepoint = timepoint
        self.volumes = dict(volumes)
        self.settings = settings or QuantSettings()
        self.labels: Volume | None = self.volumes.get("regions")
        #: label → name: the label table's (``region_names``; default the manifest's), and
        #: it follows the table while editing (:meth:`names_changed`)
        self.region_names: dict[int, str] = dict(timepoint.region_names if region_names is None else region_names)
        self.notes: list[str] = []
        self._boxes = label_boxes(self.labels) if self.labels is not None else {}
        #: the modalities must be prepared again (the calibration regions changed) before the
        #: next result; :meth:`frozen` does it on the copy a job measures
        self.needs_prepare = False
        self._prepare()

    def _prepare(self) -> None:
        calibration = self.study.calibration
        names = dict(self.region_names)
        fluorine = self.volumes.get("fluorine")
        self.fluorine = FluorineQuantifier(fluorine, self.labels, names, calibration) if fluorine is not None else None
        pet = self.volumes.get("pet")
        self.pet = PetQuantifier(pet, self.settings) if pet is not None else None
        self._total_cells = self.fluorine.total_cells() if self.fluorine is not None else None
        if self.fluorine is not None:
            if self.fluorine.cells_per_signal is not None:
                _ = self.fluorine.interval  # the count intervals' fits, once, so their notes are in
            self.notes.extend(self.fluorine.notes)
            missing = self.fluorine.missing_calibration
            if missing and self.fluorine.reference_signal is not None:
                self.notes.append(f"¹⁹F cell counts not computed: [calibration] {', '.join(missing)} not given")
        else:
            self.notes.append("no ¹⁹F image: cell counts, density, homing and viability are not computed")
        if self.labels is None:
            self.notes.append("no region label map: nothing to measure per region")
        if "gd" in self.volumes:
            missing = [k for k in ("gd_r1_per_mM_s", "gd_fmol_per_cell") if getattr(calibration, k) is None]
            if missing:
                self.notes.append(f"dead cells not computed: [calibration] {', '.join(missing)} not given")
        else:
            self.notes.append("no Gd ΔR1 map: dead and live cells are not computed")
        if "pet" not in self.volumes:
            self.notes.append("no PET: SUV measures are not computed")
        else:
            note = _previous_day_note(self.volumes["pet"].meta)
            if note:
                self.notes.append(note)
        if "sodium" not in self.volumes:
            self.notes.append("no sodium map: TSC is not computed")

    # -- regions -------------------------------------------------------------------------------
    def region_labels(self) -> list[int]:
        """Labels present in the map plus named labels (an empty named region is still listed)."""
        if self.labels is None:
            return []
        return sorted(set(self._boxes) | set(self.region_names))

    # -- changes (one thread: the owner of the label map) --------------------------------------------
    # Jobs measure a :meth:`frozen` copy, so nothing here is mutated in place that a copy
    # shares: the boxes and names are replaced by new dicts, the prepared modalities by new
    # objects.

    def set_labels(self, labels: Volume) -> None:
        """Measure another label map object (e.g. the editable copy of the same regions);
        its boxes are scanned now and the modalities prepared again before the next result."""
        self.labels = labels
        self.volumes = {**self.volumes, "regions": labels}
        self._boxes = label_boxes(labels)
        self.needs_prepare = True

    def names_changed(self, names: Mapping[int, str]) -> None:
        """Follow a renamed/added/deleted label table. Renaming the reference or background
        region changes the ¹⁹F calibration, so the modalities are prepared again."""
        calibration = {"reference", "background"}
        old = {label for label, name in self.region_names.items() if name in calibration}
        new = {label for label, name in names.items() if name in calibration}
        changed = old != new
        self.region_names = dict(names)
        if changed:
            self.needs_prepare = True

    def frozen(self, labels: Volume | None = None, names: Mapping[int, str] | None = None) -> "TimepointQuantifier":
        """A copy that measures ``labels`` (a snapshot; default the current map) with
        ``names``, sharing the prepared modalities, prepared again first when they are stale.
        The copy is what a job runs; the original keeps following edits meanwhile."""
        import copy

        twin = copy.copy(self)
        if labels is not None:
            twin.labels = labels
            twin.volumes = {**self.volumes, "regions": labels}
        if names is not None:
            twin.region_names = dict(names)
        twin.notes = list(self.notes)
        if self.needs_prepare:
            twin.notes = []
            twin._prepare()
            twin.needs_prepare = False
        return twin

    def adopt_prepared(self, twin: "TimepointQuantifier") -> None:
        """Take the modalities a :meth:`frozen` copy prepared (when nothing made them stale
        again since: ``twin`` was made from this quantifier's current state)."""
        self.fluorine, self.pet, self._total_cells = twin.fluorine, twin.pet, twin._total_cells
        self.notes = list(twin.notes)
        self.needs_prepare = False

    def region_box(self, label: int) -> tuple[slice, slice, slice] | None:
        """The cached box of a region on its label grid (None if it has no voxels)."""
        return self._boxes.get(label)

    def labels_changed(self, label: int, edited_box: tuple[slice, slice, slice] | None = None) -> None:
        """Update the cached extent of ``label`` after the label map was edited.

        With ``edited_box`` (the box an edit touched, on the label grid) the extent grows to
        include it without scanning the map — exact for painting, conservative for erasing
        (a box too large only costs time). Without it the map is rescanned.
        """
        if self.labels is None:
            return
        if self.region_names.get(label) in ("reference", "background"):
            self.needs_prepare = True  # the ¹⁹F noise or calibration region itself changed
        boxes = dict(self._boxes)  # a new dict: a frozen copy keeps the boxes it was given
        old = boxes.get(label)
        if edited_box is not None and old is not None:
            boxes[label] = tuple(
                slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(old, edited_box)
            )  # type: ignore[assignment]
        else:
            box = label_box(np.asarray(self.labels.data) == label)
            if box is None:
                boxes.pop(label, None)
            else:
                boxes[label] = box
        self._boxes = boxes

    def region(self, label: int) -> RegionStats:
        """Every §3 number of one region (recomputed from the current label map)."""
        assert self.labels is not None
        name = self.region_names.get(int(label), f"label {int(label)}")
        notes: list[str] = []
        box = self._boxes.get(label)
        own = region_mask_on_grid(self.labels, label, self.labels, box) if box is not None else None
        count = int(own[1].sum()) if own is not None else 0
        volume_ml = count * self.labels.voxel_volume_ml
        values: dict[str, Any] = {key: None for key in REGION_KEYS}
        values.update(label=int(label), name=name, volume_ml=volume_ml)
        details: dict[str, Any] = {}
        if count == 0:
            notes.append(f"region '{name}' has no voxels")
            return RegionStats(values, {"notes": notes})
        is_calibration = name in CALIBRATION_NAMES

        total_cells = None
        if self.fluorine is not None and not is_calibration:
            mapped = self._mapped("fluorine", label, name, volume_ml, notes)
            if mapped is not None:
                measures = self.fluorine.measure(*mapped)
                _note_nonfinite(notes, name, "fluorine", measures.nan_voxels, measures.voxels)
                details["fluorine_signal_sum"] = measures.signal_sum
                details["fluorine_detected_voxels"] = measures.detected_voxels
                values["below_detection"] = measures.below_detection
                if measures.cells is not None:
                    total_cells = values["fluorine_cells"] = measures.cells
                    if measures.cells_ci95 is not None:
                        values["fluorine_cells_ci95_low"], values["fluorine_cells_ci95_high"] = measures.cells_ci95
                        details["fluorine_cells_corrected"] = measures.corrected_cells
                        _note_lost_signal(notes, name, measures.cells, measures.corrected_cells)
                        _note_possible_grafts(notes, name, measures, self.study.calibration.min_cluster_voxels)
                    values["cells_per_mm3"] = measures.cells / (volume_ml * 1000.0)
                    if self._total_cells:
                        values["homing_fraction"] = measures.cells / self._total_cells
        calibration = self.study.calibration
        if total_cells is None and not is_calibration and "spio" in self.volumes and self.fluorine is None:
            if calibration.fe_pg_per_cell is not None and calibration.spio_r2star_per_mM_s is not None:
                summed = self._map_sum("spio", label, name, volume_ml, notes)
                if summed is not None:
                    total_cells = cells_from_spio(summed, calibration.spio_r2star_per_mM_s, calibration.fe_pg_per_cell)
                    details["total_cells_source"] = "SPIO"
            else:
                notes.append("total cells from SPIO need [calibration] fe_pg_per_cell and spio_r2star_per_mM_s")
        details["total_cells"] = total_cells

        if "gd" in self.volumes and not is_calibration and calibration.gd_r1_per_mM_s and calibration.gd_fmol_per_cell:
            delta_r1 = self._map_sum("gd", label, name, volume_ml, notes)
            if delta_r1 is not None:
                gd_mol = released_gd_mol(delta_r1, calibration.gd_r1_per_mM_s)
                values["dead_cells"] = dead_cells_from_gd(gd_mol, calibration.gd_fmol_per_cell)
                details["released_gd_mol"] = gd_mol
                split = viability(total_cells, values["dead_cells"], calibration.dead_fraction_alert)
                values.update(live_cells=split.live_cells, dead_fraction=split.dead_fraction, rejection_alert=split.rejection_alert)
                if split.dead_exceeds_total:
                    notes.append(_dead_above_total_note(name, values["dead_cells"], total_cells, details))
                elif (values["fluorine_cells_ci95_low"] or 0) > 0 and split.live_cells is not None:
                    notes.append(_viability_interval_note(name, values["dead_cells"], values["fluorine_cells_ci95_low"],
                                                          values["fluorine_cells_ci95_high"]))

        if self.pet is not None:
            mapped = self._mapped("pet", label, name, volume_ml, notes)
            if mapped is not None:
                pet = self.pet.measure(*mapped)
                _note_nonfinite(notes, name, "pet", pet.n_nan_voxels, pet.n_voxels)
                values.update(suv_max=pet.suv_max, suv_mean=pet.suv_mean, suv_peak=pet.suv_peak, mtv_ml=pet.mtv_ml, tlg=pet.tlg)
                details.update(sul_max=pet.sul_max, sul_mean=pet.sul_mean, sul_peak=pet.sul_peak)
        if "sodium" in self.volumes:
            mapped = self._mapped("sodium", label, name, volume_ml, notes)
            if mapped is not None:
                _note_nonfinite(notes, name, "sodium", *_nonfinite_count(self.volumes["sodium"], *mapped))
                values["sodium_mean_mM"] = sodium_mean(self.volumes["sodium"], *mapped)
        details["notes"] = notes
        return RegionStats(values, details)

    def _map_sum(self, role: str, label: int, name: str, volume_ml: float, notes: list[str]) -> MapSum | None:
        """Σ of a ΔR map over the region (finite voxels), or None (with a note) when the region
        lies outside the map or all its voxels there are NaN/inf — a sum of nothing is no 0."""
        mapped = self._mapped(role, label, name, volume_ml, notes)
        if mapped is None:
            return None
        summed = region_sum(self.volumes[role], *mapped)
        _note_nonfinite(notes, name, role, summed.nan_voxels, summed.voxels + summed.nan_voxels)
        return summed if summed.voxels else None

    def _mapped(self, role: str, label: int, name: str, volume_ml: float, notes: list[str]):
        """The region on a map's grid, or None with a note when it lies outside that map."""
        volume = self.volumes[role]
        mapped = region_mask_on_grid(self.labels, label, volume, self._boxes.get(label))
        quantity = ROLE_QUANTITY[role]
        if mapped is None:
            notes.append(f"region '{name}' lies outside the {quantity} field of view")
            return None
        covered_ml = int(mapped[1].sum()) * volume.voxel_volume_ml
        if covered_ml < PARTIAL_COVERAGE_WARNING * volume_ml and volume_ml > 27 * volume.voxel_volume_ml:
            notes.append(f"region '{name}': only {100 * covered_ml / volume_ml:.0f} % lies inside the {quantity} field of view")
        return mapped

    def compute(self) -> TimepointStats:
        """Every region of the timepoint, the detection limit, homing and the mismatch summary."""
        if self.needs_prepare:
            self.notes = []
            self._prepare()
            self.needs_prepare = False
        return self._assemble([self.region(label) for label in self.region_labels()])

    def recompute(self, stats: TimepointStats, labels: Iterable[int]) -> TimepointStats:
        """:meth:`compute` restricted to what changed: the rows of ``labels`` (an edit) and of
        regions whose name changed are measured again, the others are copied from ``stats``;
        then the one assembly of :meth:`compute` runs, so the result equals a from-scratch
        computation by construction. The window calls this on every brush stroke."""
        if self.needs_prepare:  # the calibration changed: every row depends on it
            return self.compute()
        touched = {int(label) for label in labels}
        previous = {r.label: r for r in stats.regions}
        rows = []
        for label in self.region_labels():
            old = previous.get(label)
            name = self.region_names.get(label, f"label {label}")
            if old is None or label in touched or old.name != name:
                rows.append(self.region(label))
            else:  # a copy: the previous result stays as it was (results are not shared)
                rows.append(RegionStats(dict(old.values), {**old.details, "notes": list(old.details.get("notes", []))}))
        for row in rows:
            row.values["prediction"] = None  # predictions depend on every row: made again below
        return self._assemble(rows)

    def _assemble(self, regions: list[RegionStats]) -> TimepointStats:
        """The timepoint's result from its region rows: notes, detection limit, homing, the
        core/penumbra mismatch summary, then the predict step (the only place it runs)."""
        notes = list(self.notes)
        for region in regions:
            notes.extend(region.details.get("notes", []))
        detection_limit = self.fluorine.detection_limit_cells_per_mm3 if self.fluorine is not None else None
        homing = self._homing(regions)
        core = next((r for r in regions if r.name == "core"), None)
        penumbra = next((r for r in regions if r.name == "penumbra"), None)
        mismatch = None
        if core is not None or penumbra is not None:
            mismatch = mismatch_summary(
                core.values["volume_ml"] if core else None, penumbra.values["volume_ml"] if penumbra else None, self.settings
            )
            notes.append(mismatch.describe())
        if homing:
            notes.append(
                "homing: " + ", ".join(f"{100 * share:.0f} % {place}" for place, share in homing.items())
                + " of the ¹⁹F-counted cells"
            )
        details = {}
        if self.fluorine is not None:
            details.update(
                fluorine_sigma=self.fluorine.sigma, fluorine_sigma_source=self.fluorine.sigma_source,
                reference_signal=self.fluorine.reference_signal, total_cells=self._total_cells,
            )
            if self.fluorine.sigma is not None:
                notes.append(f"¹⁹F noise σ = {self.fluorine.sigma:.4g} a.u. from the {self.fluorine.sigma_source}")
        stats = TimepointStats(self.timepoint.label, self.timepoint.day, detection_limit, regions,
                               unique_notes(notes), mismatch, homing, details)
        if self.predict is not None:
            self.predict(stats)
        return stats

    def _homing(self, regions: list[RegionStats]) -> dict[str, float | None]:
        """Share of all ¹⁹F-counted cells in penumbra, in core and elsewhere."""
        if not self._total_cells:
            return {}
        shares = {name: 0.0 for name in ("penumbra", "core")}
        for region in regions:
            if region.name in shares and region.values["fluorine_cells"] is not None:
                shares[region.name] += region.values["fluorine_cells"] / self._total_cells
        shares["elsewhere"] = max(0.0, 1.0 - shares["penumbra"] - shares["core"])
        return shares


def _viability_interval_note(name: str, dead: float, low: float, high: float) -> str:
    """Live cells and dead fraction over the ¹⁹F count's interval (PRODUCT.md §3: the numbers
    built on the count carry its uncertainty, at least in the notes); ``low`` > 0."""
    live_low, live_high = max(low - dead, 0.0), max(high - dead, 0.0)
    fraction = f"{min(max(dead, 0.0) / high, 1.0):.2f}–{min(max(dead, 0.0) / low, 1.0):.2f}"
    return (f"region '{name}': over the ¹⁹F count's 95 % interval, live cells {live_low:,.0f}–{live_high:,.0f} and dead "
            f"fraction {fraction} (the ΔR1 noise of the dead count is not included)")


def _previous_day_note(meta: Mapping[str, Any]) -> str | None:
    """The reader must see a guessed injection date: an SUV decayed over a wrong day is off by 2^(24 h / T½)."""
    if not meta.get("injection_assumed_previous_day"):
        return None
    injection, scan = str(meta.get("injection_time", "?")), str(meta.get("scan_time", "?"))
    hours = float(meta.get("delta_t_s", 0.0)) / 3600.0
    return (f"PET SUV: the injection time has no date and is later in the day than the scan, so the injection was "
            f"taken as the day before ({injection.replace('T', ' ')}, {hours:.1f} h before the scan at "
            f"{scan.replace('T', ' ')}); if the tracer was not injected before midnight, the SUVs are wrong")


#: A region whose count misses more than this share of its signal (under the threshold) says so.
LOST_SIGNAL_NOTE = 0.05


def _note_lost_signal(notes: list[str], name: str, cells: float, corrected: float | None) -> None:
    """Say when the §3 count (detected voxels only) is well below the count with the lost signal."""
    if corrected is None or corrected <= 0 or cells >= corrected * (1 - LOST_SIGNAL_NOTE):
        return
    notes.append(f"region '{name}': about {100 * (1 - cells / corrected):.0f} % of its ¹⁹F signal lies under the "
                 f"detection threshold (faint graft edges): the count sums detected voxels only (PRODUCT.md §3), the "
                 f"95 % interval includes the lost signal (≈ {corrected:,.0f} cells)")


def _note_possible_grafts(notes: list[str], name: str, measures: Any, min_cluster_voxels: int) -> None:
    """Say when voxels above the threshold, in groups too small to count, may be a small graft
    the count leaves out (its interval's upper end includes them)."""
    if not measures.possible_grafts:
        return
    one = measures.possible_grafts == 1
    groups, them = ("1 group", "it") if one else (f"{measures.possible_grafts} groups", "them")
    notes.append(f"region '{name}': {groups} of voxels above the ¹⁹F detection threshold, too small to count "
                 f"(fewer than {min_cluster_voxels} voxels), may hold a small graft of up to "
                 f"≈ {measures.possible_graft_cells:,.0f} cells in all; the count leaves {them} out, the 95 % "
                 f"interval's upper end includes {them}")


def _nonfinite_count(volume: Volume, box: tuple[slice, slice, slice], mask: np.ndarray) -> tuple[int, int]:
    """(NaN/inf voxels, all voxels) of a region on an image's grid."""
    values = np.asarray(volume.data[box])[mask]
    return int(values.size - np.count_nonzero(np.isfinite(values))), int(values.size)


def _note_nonfinite(notes: list[str], name: str, role: str, missing: int, total: int) -> None:
    """Say how many of a region's voxels on one image were NaN/inf and left out."""
    if not missing:
        return
    quantity = ROLE_QUANTITY[role]
    if missing >= total:
        notes.append(f"region '{name}': all {total} {quantity} voxels are NaN/inf: its {quantity} numbers are not computed")
    else:
        notes.append(f"region '{name}': {missing} of {total} {quantity} voxels are NaN/inf and were left out")


def _dead_above_total_note(name: str, dead: float, total: float | None, details: Mapping[str, Any]) -> str:
    """The note for a Gd-implied dead count above the total count (no live/dead split)."""
    source = "SPIO" if details.get("total_cells_source") == "SPIO" else "¹⁹F"
    return (f"region '{name}': Gd-implied dead cells ({dead:.4g}) exceed the {source} total ({total:.4g}): the two "
            "measurements disagree (check [calibration] gd_fmol_per_cell and gd_r1_per_mM_s, the ΔR1 baseline and the "
            "¹⁹F reference); live cells and dead fraction not computed, rejection alert raised")


def unique_notes(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def time_course(stats: StudyStats, key: str) -> dict[str, list[tuple[float | None, Any]]]:
    """A measure per region name across timepoints: {name: [(day, value), ...]} in study order."""
    course: dict[str, list[tuple[float | None, Any]]] = {}
    for timepoint in stats.timepoints:
        for region in timepoint.regions:
            course.setdefault(region.name, []).append((timepoint.day, region.values.get(key)))
    return course


def course_values(timepoints: Sequence[TimepointStats], name: str, key: str) -> np.ndarray:
    """A measure of the region called ``name`` at every timepoint, NaN where it is missing.

    One value per timepoint (not per appearance), so a region drawn only at some timepoints
    stays at the right days; NaN leaves a gap in a plotted line.
    """
    values = []
    for timepoint in timepoints:
        region = timepoint.region(name)
        value = _clean(region.values.get(key)) if region is not None else None
        values.append(math.nan if value is None else float(value))
    return np.asarray(values, dtype=float)


def course_positions(timepoints: Sequence[TimepointStats]) -> tuple[list[float], bool]:
    """x positions of the timepoints in a time course, and whether they are days.

    Days after transplantation when every timepoint has one; the timepoint order otherwise
    (a partial day axis would mislead).
    """
    with_days = all(t.day is not None for t in timepoints)
    return [float(t.day) if with_days else float(i) for i, t in enumerate(timepoints)], with_days  # type: ignore[arg-type]


def region_label_of(timepoints: Sequence[TimepointStats], name: str) -> int:
    """The label the region called ``name`` has at its first appearance (for its colour)."""
    return next(r for t in timepoints for r in t.regions if r.name == name).label
