"""Core/penumbra proposal, mismatch summary and mean TSC (PRODUCT.md §3, sodium paragraph).

The proposal is a *new label map* on the editable regions grid (the clinician then edits it),
so here, and only here, parameter maps are resampled onto another grid
(:func:`viewer.core.spaces.resample_to_grid`). Measurements never resample the image: mean TSC
is taken on the sodium grid with the region mapped onto it.

Label numbers of a proposal: :data:`CORE_LABEL` = 1 (core), :data:`PENUMBRA_LABEL` = 2
(penumbra), 0 elsewhere — the numbering of the demo study's drawn regions.

Units: ADC in 10⁻⁶ mm²/s, Tmax in s, TSC in mM, volumes in mL, distances in mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from viewer.core.quant.settings import QuantSettings
from viewer.core.spaces import resample_to_grid
from viewer.core.volume import Volume

Box = tuple[slice, slice, slice]

CORE_LABEL = 1
PENUMBRA_LABEL = 2
LABEL_NAMES: dict[int, str] = {CORE_LABEL: "core", PENUMBRA_LABEL: "penumbra"}

METHOD_ADC_TMAX = "ADC+Tmax"
METHOD_SODIUM = "sodium"

#: Components are 26-connected (faces, edges and corners touch), as in FSL's ``cluster``.
_CONNECTIVITY = ndimage.generate_binary_structure(3, 3)


@dataclass(frozen=True, eq=False)
class Proposal:
    """An automatic core/penumbra label map on the target grid, to be edited by the clinician.

    Attributes:
        labels: int32 array of the target's shape: 1 = core, 2 = penumbra, 0 = neither.
        voxel_to_world: the target grid's affine (so the proposal can become a regions Volume).
        method: ``"ADC+Tmax"``, ``"sodium"`` or None when the needed maps are missing.
        notes: human sentences: thresholds used, what was excluded or dropped, why nothing
            was proposed.
        core_ml, penumbra_ml: proposed volumes (mL); None when no method applied.
        label_names: ``{1: "core", 2: "penumbra"}``.
    """

    labels: np.ndarray
    voxel_to_world: np.ndarray
    method: str | None
    notes: tuple[str, ...]
    core_ml: float | None
    penumbra_ml: float | None
    label_names: dict[int, str] = field(default_factory=lambda: dict(LABEL_NAMES))

    def to_volume(self, name: str = "core/penumbra proposal") -> Volume:
        """The proposal as a ``regions`` Volume on the target grid."""
        return Volume.from_array(self.labels, self.voxel_to_world, role="regions", name=name,
                                 meta={"proposal_method": self.method, "region_names": dict(self.label_names)})


@dataclass(frozen=True)
class MismatchSummary:
    """Core/penumbra volumes and the DEFUSE-3 style target-mismatch decision.

    Attributes:
        core_ml, penumbra_ml: as given (mL).
        hypoperfused_ml: core + penumbra (mL).
        mismatch_ratio: (core + penumbra) / core; None when core is 0 or unknown.
        mismatch_ml: penumbra volume (hypoperfused minus core, mL).
        meets_criteria: core < max core, ratio ≥ min ratio and mismatch ≥ min mismatch; None
            when the ratio cannot be computed.
        max_core_ml, min_ratio, min_mismatch_ml: the thresholds applied (from settings).
    """

    core_ml: float | None
    penumbra_ml: float | None
    hypoperfused_ml: float | None
    mismatch_ratio: float | None
    mismatch_ml: float | None
    meets_criteria: bool | None
    max_core_ml: float
    min_ratio: float
    min_mismatch_ml: float

    def failed_criteria(self) -> list[str]:
        """The criteria not met, in words (empty when met or not computable)."""
        if self.meets_criteria is None:
            return []
        failed = []
        assert self.core_ml is not None and self.mismatch_ratio is not None and self.mismatch_ml is not None
        if not self.core_ml < self.max_core_ml:
            failed.append(f"core {self.core_ml:.1f} mL is not < {self.max_core_ml:g} mL")
        if not self.mismatch_ratio >= self.min_ratio:
            failed.append(f"ratio {self.mismatch_ratio:.2f} is < {self.min_ratio:g}")
        if not self.mismatch_ml >= self.min_mismatch_ml:
            failed.append(f"mismatch {self.mismatch_ml:.1f} mL is < {self.min_mismatch_ml:g} mL")
        return failed

    def describe(self) -> str:
        """One sentence: volumes, ratio and whether the DEFUSE-3 style criteria are met."""
        criteria = (f"DEFUSE-3 style criteria (core < {self.max_core_ml:g} mL, ratio ≥ {self.min_ratio:g}, "
                    f"mismatch ≥ {self.min_mismatch_ml:g} mL)")
        core = "unknown" if self.core_ml is None else f"{self.core_ml:.1f} mL"
        penumbra = "unknown" if self.penumbra_ml is None else f"{self.penumbra_ml:.1f} mL"
        ratio = "undefined" if self.mismatch_ratio is None else f"{self.mismatch_ratio:.1f}"
        mismatch = "unknown" if self.mismatch_ml is None else f"{self.mismatch_ml:.1f} mL"
        head = f"core {core}, penumbra {penumbra}, mismatch ratio {ratio}, mismatch {mismatch}"
        if self.meets_criteria is None:
            why = "no core" if self.core_ml == 0 else "core or penumbra unknown"
            return f"{head}: the {criteria} cannot be assessed ({why})"
        if self.meets_criteria:
            return f"{head}: meets the {criteria}"
        return f"{head}: does not meet the {criteria}: {'; '.join(self.failed_criteria())}"


def mismatch_summary(core_ml: float | None, penumbra_ml: float | None,
                     settings: QuantSettings | None = None) -> MismatchSummary:
    """Mismatch ratio, mismatch volume and the DEFUSE-3 style decision from two volumes (mL)."""
    settings = settings or QuantSettings()
    known = core_ml is not None and penumbra_ml is not None
    hypoperfused = core_ml + penumbra_ml if known else None  # type: ignore[operator]
    ratio = hypoperfused / core_ml if known and core_ml > 0 else None  # type: ignore[operator]
    meets = None
    if ratio is not None:
        meets = bool(core_ml < settings.defuse_max_core_ml and ratio >= settings.defuse_min_ratio  # type: ignore[operator]
                     and penumbra_ml >= settings.defuse_min_mismatch_ml)  # type: ignore[operator]
    return MismatchSummary(core_ml, penumbra_ml, hypoperfused, ratio, penumbra_ml, meets,
                           settings.defuse_max_core_ml, settings.defuse_min_ratio, settings.defuse_min_mismatch_ml)


def sodium_mean(sodium: Volume, box: Box, mask: np.ndarray) -> float | None:
    """Mean TSC (mM) over the region's finite voxels on the sodium grid; None if there are none.

    ``box, mask`` come from :func:`viewer.core.spaces.region_mask_on_grid` for the sodium grid.
    """
    values = np.asarray(sodium.data[box], dtype=np.float64)[mask]
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


# -- the proposal -----------------------------------------------------------------------------

def propose_core_penumbra(target: Volume, *, adc: Volume | None, tmax: Volume | None, sodium: Volume | None,
                          settings: QuantSettings | None = None, brain_mask: np.ndarray | None = None,
                          anatomy: Volume | None = None) -> Proposal:
    """Propose core (label 1) and penumbra (label 2) on ``target``'s grid.

    With ADC and Tmax (preferred): core = ADC < ``adc_core_threshold`` inside the ADC field of
    view and brain (ADC > 0), hypoperfused = Tmax > ``tmax_threshold_s``, penumbra =
    hypoperfused − core. With sodium only: core = TSC ≥ ``sodium_core_mM``, penumbra = TSC in
    [``sodium_penumbra_mM``, ``sodium_core_mM``), both outside CSF (TSC ≥ ``csf_sodium_mM``)
    grown by ``csf_margin_mm``; with ``anatomy`` also outside its CSF class grown by
    ``csf_anatomy_margin_mm`` (a 4 mm TSC map blurs 140 mM CSF into a 50–100 mM band around
    every ventricle and sulcus that thresholds cannot tell from penumbra; the anatomy's finer
    grid can), and the penumbra is the raised tissue connected to the core (26-neighbours).
    Then both are restricted to ``brain_mask`` (a bool array of the
    target's shape) when given, and 26-connected components smaller than ``min_component_ml``
    are dropped. Without usable maps the proposal is empty, ``method`` None, and a note says
    which maps are needed.
    """
    settings = settings or QuantSettings()
    if brain_mask is not None and tuple(np.shape(brain_mask)) != target.shape:
        raise ValueError(f"brain_mask shape {np.shape(brain_mask)} differs from the target grid {target.shape}")
    notes: list[str] = []
    if adc is not None and tmax is not None:
        if sodium is not None:
            notes.append("sodium map not used: ADC and Tmax take precedence")
        core, hypo = _adc_tmax_masks(target, adc, tmax, settings, notes)
        method = METHOD_ADC_TMAX
    elif sodium is not None:
        if adc is not None or tmax is not None:
            notes.append(f"{'ADC' if adc is not None else 'Tmax'} alone is not used: ADC and Tmax are needed together")
        core, hypo = _sodium_masks(target, sodium, settings, notes, anatomy)
        method = METHOD_SODIUM
    else:
        have = "only ADC" if adc is not None else "only Tmax" if tmax is not None else "no ADC, Tmax or sodium map"
        notes.append(f"no core/penumbra proposal: it needs ADC and Tmax maps, or a sodium (TSC) map; "
                     f"this timepoint has {have}")
        return Proposal(np.zeros(target.shape, np.int32), target.voxel_to_world.copy(), None, tuple(notes), None, None)
    return _finish(target, core, hypo, brain_mask, settings, method, notes)


def _finish(target: Volume, core: np.ndarray, hypo: np.ndarray, brain_mask: np.ndarray | None,
            settings: QuantSettings, method: str, notes: list[str]) -> Proposal:
    """Restrict to the brain, drop small components, build the label map."""
    if brain_mask is not None:
        brain = np.asarray(brain_mask, dtype=bool)
        core &= brain
        hypo &= brain
        notes.append("restricted to the brain mask")
    voxel_ml = target.voxel_volume_ml
    core = _drop_small_components(core, voxel_ml, settings.min_component_ml, "core", notes)
    penumbra = _drop_small_components(hypo & ~core, voxel_ml, settings.min_component_ml, "penumbra", notes)
    labels = np.zeros(target.shape, np.int32)
    labels[penumbra] = PENUMBRA_LABEL
    labels[core] = CORE_LABEL
    core_ml = float(np.count_nonzero(core)) * voxel_ml
    penumbra_ml = float(np.count_nonzero(penumbra)) * voxel_ml
    return Proposal(labels, target.voxel_to_world.copy(), method, tuple(notes), core_ml, penumbra_ml)


def _adc_tmax_masks(target: Volume, adc: Volume, tmax: Volume, settings: QuantSettings,
                    notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(core, hypoperfused) on the target grid from ADC and Tmax (DEFUSE 3)."""
    adc_t = _resample_masked_map(adc, target)
    tmax_t = resample_to_grid(tmax, target, "linear")
    with np.errstate(invalid="ignore"):
        core = np.isfinite(adc_t) & (adc_t > 0) & (adc_t < settings.adc_core_threshold)
        hypo = np.isfinite(tmax_t) & (tmax_t > settings.tmax_threshold_s)
    notes.append(f"core: ADC < {settings.adc_core_threshold:g} ×10⁻⁶ mm²/s; penumbra: Tmax > "
                 f"{settings.tmax_threshold_s:g} s minus core")
    return core, hypo


def _sodium_masks(target: Volume, sodium: Volume, settings: QuantSettings, notes: list[str],
                  anatomy: Volume | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(core, core ∪ penumbra) on the target grid from TSC, CSF and its margin excluded."""
    tsc = _resample_masked_map(sodium, target)
    with np.errstate(invalid="ignore"):
        csf = tsc >= settings.csf_sodium_mM
        core = tsc >= settings.sodium_core_mM
        raised = tsc >= settings.sodium_penumbra_mM
    near_csf = _grow(csf, target.spacing_mm, settings.csf_margin_mm)
    core &= ~near_csf
    raised &= ~near_csf
    excluded_ml = np.count_nonzero(near_csf) * target.voxel_volume_ml
    notes.append(f"core: TSC ≥ {settings.sodium_core_mM:g} mM; penumbra: TSC in [{settings.sodium_penumbra_mM:g}, "
                 f"{settings.sodium_core_mM:g}) mM; CSF (TSC ≥ {settings.csf_sodium_mM:g} mM) grown by "
                 f"{settings.csf_margin_mm:g} mm excluded ({excluded_ml:.1f} mL)")
    if anatomy is not None:
        anatomy_csf = _anatomy_csf(anatomy, target, tsc, notes)
        if anatomy_csf is not None:
            near = _grow(anatomy_csf, target.spacing_mm, settings.csf_anatomy_margin_mm)
            core &= ~near
            raised &= ~near
            notes.append(f"CSF of the anatomy grown by {settings.csf_anatomy_margin_mm:g} mm excluded "
                         f"({np.count_nonzero(near) * target.voxel_volume_ml:.1f} mL)")
        raised = _connected_to(raised | core, core)
        notes.append("penumbra: the raised-TSC tissue connected to the core")
    notes.append("sodium only: the penumbra is the raised-TSC tissue around the core, not a perfusion deficit")
    return core, raised


def _anatomy_csf(anatomy: Volume, target: Volume, tsc: np.ndarray, notes: list[str]) -> np.ndarray | None:
    """The anatomy's CSF on the target grid: of three Otsu classes of its non-zero voxels, the
    darkest (T1) or the brightest (T2), whichever holds the higher mean TSC — CSF is where
    sodium is highest, whatever the anatomy's contrast. None when it cannot be told."""
    from skimage.filters import threshold_multiotsu

    values = np.asarray(anatomy.data, dtype=np.float32)
    inside = np.isfinite(values) & (values != 0)
    sample = values[inside][:: max(1, int(np.count_nonzero(inside) // 500_000))]
    if sample.size < 1000 or np.unique(sample).size < 3:
        notes.append("the anatomy has too few distinct values for a CSF class: not used")
        return None
    low, high = threshold_multiotsu(sample, classes=3)
    dark = resample_to_grid(Volume.from_array((inside & (values < low)).astype(np.float32), anatomy.voxel_to_world,
                                              role="anatomical"), target, "linear") >= 0.5
    bright = resample_to_grid(Volume.from_array((inside & (values >= high)).astype(np.float32), anatomy.voxel_to_world,
                                                role="anatomical"), target, "linear") >= 0.5
    with np.errstate(invalid="ignore"):
        dark_tsc = float(np.nanmean(tsc[dark])) if dark.any() else -np.inf
        bright_tsc = float(np.nanmean(tsc[bright])) if bright.any() else -np.inf
    if not np.isfinite(max(dark_tsc, bright_tsc)):
        notes.append("the anatomy's tissue classes lie outside the TSC map: no CSF class used")
        return None
    which, mask = ("darkest", dark) if dark_tsc >= bright_tsc else ("brightest", bright)
    notes.append(f"CSF: the anatomy's {which} tissue class (mean TSC {max(dark_tsc, bright_tsc):.0f} mM there)")
    return mask


def _connected_to(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The 26-connected components of ``mask`` that hold a seed voxel."""
    components, _count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    kept = np.unique(components[seeds & (components > 0)])
    return np.isin(components, kept[kept > 0])


def _resample_masked_map(volume: Volume, target: Volume) -> np.ndarray:
    """A parameter map on the target grid, with exact zeros (air, masked out) as no-data.

    Scanners write parameter maps (ADC, TSC) as 0 outside the head. Plain trilinear
    interpolation would blend tissue with those zeros at the brain surface, making a rim of
    false low ADC. Normalised interpolation — interpolate map·valid and valid, divide — keeps
    tissue values up to the edge; target voxels with less than half valid weight get 0, those
    outside the map's field of view NaN. No zero in the map: plain trilinear.
    """
    data = np.asarray(volume.data, dtype=np.float32)
    valid = np.isfinite(data) & (data != 0)
    if valid.all():
        return resample_to_grid(volume, target, "linear")
    affine = volume.voxel_to_world
    total = resample_to_grid(Volume.from_array(np.where(valid, data, 0).astype(np.float32), affine, role=volume.role),
                             target, "linear")
    weight = resample_to_grid(Volume.from_array(valid.astype(np.float32), affine, role=volume.role), target, "linear")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(weight >= 0.5, total / weight, np.float32(0.0))
    out[np.isnan(weight)] = np.nan
    return out.astype(np.float32, copy=False)


def _grow(mask: np.ndarray, spacing_mm: np.ndarray, margin_mm: float) -> np.ndarray:
    """``mask`` plus every voxel whose centre is within ``margin_mm`` (physical) of it."""
    if not mask.any():
        return mask.copy()
    if margin_mm <= 0:
        return mask.copy()
    distance = ndimage.distance_transform_edt(~mask, sampling=np.asarray(spacing_mm, dtype=np.float64))
    return distance <= margin_mm


def _drop_small_components(mask: np.ndarray, voxel_ml: float, min_ml: float, what: str,
                           notes: list[str]) -> np.ndarray:
    """``mask`` without its 26-connected components smaller than ``min_ml`` mL."""
    if min_ml <= 0 or not mask.any():
        return mask
    labelled, count = ndimage.label(mask, structure=_CONNECTIVITY)
    sizes = np.bincount(labelled.ravel())
    small = sizes * voxel_ml < min_ml
    small[0] = True
    dropped = int(np.count_nonzero(small[1:]))
    if dropped:
        notes.append(f"{what}: dropped {dropped} of {count} components smaller than {min_ml:g} mL "
                     f"({int(sizes[1:][small[1:]].sum()) * voxel_ml:.2f} mL)")
    return ~small[labelled]
