"""End to end: the demo's DICOM exam, imported with ``viewer import``, gives the NIfTI demo's numbers.

Through the real command line only: ``viewer demo --out D --dicom`` (once per module, ~12 s),
``viewer import D/exam -o S --day0 <day0>``, then ``viewer stats`` on D and on S. The exam has no
region maps (they will be DICOM SEG) and no calibration, so the one manual step a user would
take is done here: copy the demo's region maps into S and add ``[calibration]``, ``regions`` and
``region_names`` to S/study.toml.

Why the numbers may differ, and by how much at most
----------------------------------------------------
The exam stores every image as 16-bit integers with a per-slice RescaleSlope
(viewer/core/io/dicom_write.py): slope = max|slice| / L, L = 65534 for a non-negative image
(uint16) and L = 32766 otherwise and for every PET (int16; the PET slice is stored in Bq/mL, so
in SUV its step is max|SUV slice| / 32766 as well). Rounding to the nearest integer moves a voxel
v of slice s by at most h(s)/2. The bound used per voxel is

    e(v) = h(s) · (1/2 + 1e-6) + 2⁻²³ · |x(v)|,

with x the demo's value: the 1e-6 covers the slope being written as a ≤ 16-character decimal string,
2⁻²³ the float32 rounding of the demo file and of the reader. e(v) is computed from the DEMO's
image (the writer's rule applied to the slice that holds v), never from the difference.
Every imported image is first checked against it voxel by voxel, at the same world points (the
imported grid must be the demo's grid with permuted/flipped axes, to 1e-4 voxel), and the region
maps must land on exactly the same voxels of both grids — so a flipped axis, a shifted slice, a
wrong rescale or a wrong SUV fails there, and cannot hide behind the tolerances below.

The region volume comes from the region map itself (the same file in both studies): equal.
Voxel volumes computed from the exam's decimal-string geometry agree to ~1e-11; every bound
below adds GEOMETRY_RELATIVE = 1e-9 · |value| for that. M is a region's voxels on the grid of
the image measured, N = |M|, V that grid's voxel volume.

- sodium_mean_mM, suv_mean (a mean over M):  |Δ| ≤ Σ_M e / N.
- suv_max (a max over M):                     |Δ| ≤ max_M e  (=: E).
- suv_peak (max over centres in M of a sphere mean): |Δ| ≤ max e over the whole PET
  + 2 · FFT_ROUNDOFF_FLOOR · max|PET| (the product's own stated float32-FFT round-off floor,
  once per study).
- mtv_ml (voxels ≥ 41 % of SUVmax): only a voxel with |x − t| ≤ e + 0.41·E (+ float32 of t),
  t = 0.41 · SUVmax, can change side — n_band such voxels: |Δ| ≤ n_band · V.
- tlg (= V · Σ over the MTV of SUV): |Δ| ≤ V · (Σ e over the MTV and the band + Σ over the
  band of |x| + e).
- dead_cells (= max(Σ_M ΔR1, 0) · k, k = 1e-3 · V[L] / r1 / (Gd per cell)): |Δ| ≤ k · Σ_M e.
- fluorine_cells — interval arithmetic through §3's steps, with S ∈ [x − e, x + e] per voxel:
  σ = mean_background(S)/√(π/2) moves by δσ ≤ mean_background(e)/√(π/2); the Rician-corrected
  S_c = √max(S² − σ², 0) lies in [S_c⁻, S_c⁺] (increasing in S, decreasing in σ); the reference
  mean in [mean S_c⁻, mean S_c⁺]; the threshold 3.5σ in [3.5(σ − δσ), 3.5(σ + δσ)]. A voxel
  surely above the threshold (S_c⁻ > 3.5(σ+δσ)) or possibly above it (S_c⁺ > 3.5(σ−δσ))
  gives two sets; the cluster rule (face-connected, ≥ min_cluster_voxels) is monotone, so the
  detected set of either study lies between the clusters of the first and of the second. So
  cells ∈ [c⁻ · Σ_{sure ∩ M} S_c⁻, c⁺ · Σ_{possible ∩ M} S_c⁺], c = F_vox / (S̄_ref · atoms per
  cell) taken at the ends of its interval. Both studies' counts must lie in it (which also
  checks that this derivation still describes the product), and |Δ| ≤ its width.
- cells_per_mm3: the fluorine interval / (volume_ml · 1000).
- homing_fraction: [cells⁻ / total⁺, cells⁺ / total⁻], the timepoint's total over the detected
  voxels outside the clusters touching the reference and background regions (also monotone).
- detection_limit_cells_per_mm3 (per timepoint): 3.5 · σ · c / V[mm³] over the σ and c intervals.
- live_cells, dead_fraction: interval arithmetic on the fluorine and dead-cell intervals
  (live = max(total − dead, 0), dead fraction = min(dead/total, 1)).
- below_detection, rejection_alert (booleans): equal, unless the intervals above leave them
  undecided (no detected voxel surely / possibly in the region; the dead-fraction interval
  straddling dead_fraction_alert) — then not compared; the test reports none were undecided.
- fluorine_cells_ci95_low/high, when the schema has them: their method is not fixed here, so
  this is a STATED, not derived, tolerance: the count's absolute bound plus |value| · (2 δσ/σ +
  relative width of S̄_ref) — the relative moves of the noise and calibration terms such an
  interval is built from — plus FIT_GAIN (1) × c⁺ · Σ (S_c⁺ − S_c⁻) over the voxels its graft
  fits read (within two voxels, face-connected, of the region's voxels possibly above the
  threshold, detected or not).
- prediction is not compared: the imported study has no [[model]] (the demo's bundled model is
  not part of the exam), so it is null there; that null and its note are expected.
A column not listed here fails the test instead of being compared with a made-up tolerance.

These are worst-case bounds. The ¹⁹F ones are wide because the slices crossing the reference
tube (≈1000 a.u.) are stored with steps h ≈ 0.015 a.u. ≈ 0.3 σ, and about half of the background
region lies in those slices: the worst case is δσ ≈ 7 % of σ, while independent rounding errors
(sd h/√12 each) move σ by ≈ 0.1 % (one sd) — the 0.03–0.2 % actually seen in the detection limit.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shutil
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from viewer.cli import main
from viewer.core.demo import PET_PATIENT, TIMEPOINTS
from viewer.core.io.study import (
    IMAGE_ROLES,
    load_image,
    load_study,
    load_timepoint,
    write_manifest,
)
from viewer.core.quant.pet import FFT_ROUNDOFF_FLOOR
from viewer.core.quant.settings import QuantSettings
from viewer.core.spaces import map_labels_to_grid
from viewer.core.volume import Volume

pytestmark = pytest.mark.slow  # the module writes the demo with its exam once (~12 s), imports it and measures both

LEVELS_UNSIGNED = 65534
LEVELS_SIGNED = 32766
FLOAT32_RELATIVE = 2.0**-23
SLOPE_SLACK = 1e-6
GRID_TOLERANCE_VOX = 1e-4
GEOMETRY_RELATIVE = 1e-9
AVOGADRO = 6.02214076e23
#: Images the statistics read (SPIO only counts cells when there is no ¹⁹F image).
QUANTIFIED_ROLES = ("fluorine", "gd", "pet", "sodium")
#: The manifest exactly as `viewer import` wrote it, kept beside the completed study.toml.
AS_IMPORTED = "as-imported.toml"
FACES = ndimage.generate_binary_structure(3, 1)


# -- running the command line -----------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


def run_cli(argv: list[Any]) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in argv])
    return Run(code, out.getvalue(), err.getvalue())


@dataclass(frozen=True)
class Imported:
    root: Path
    run: Run
    manifest_text: str  # study.toml as `viewer import` wrote it, before the manual step


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("import_demo_exam") / "demo"
    run = run_cli(["demo", "--out", root, "--dicom"])
    assert run.code == 0, run.stderr
    return root


@pytest.fixture(scope="module")
def demo_toml(demo) -> dict:
    return tomllib.loads((demo / "study.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def imported(demo, demo_toml, tmp_path_factory) -> Imported:
    root = tmp_path_factory.mktemp("import_demo_exam_out") / "study"
    day0 = str(demo_toml["study"]["day0"])  # a TOML date: its ISO text
    run = run_cli(["import", demo / "exam", "-o", root, "--day0", day0])
    text = ""
    if run.code == 0:
        text = (root / "study.toml").read_text(encoding="utf-8")
        (root / AS_IMPORTED).write_text(text, encoding="utf-8")
    return Imported(root, run, text)


@pytest.fixture(scope="module")
def completed(imported, demo, demo_toml) -> Path:
    """The imported study with what a user adds by hand: region maps and calibration."""
    assert imported.run.code == 0, imported.run.stderr
    root = imported.root
    manifest = tomllib.loads(imported.manifest_text)
    # THE ONE MANUAL STEP: the exam carries no region maps (DICOM SEG, later), no calibration
    # and no registration, so copy the demo's baseline region map into the study and write
    # [calibration], regions and region_names (or regions_from) into its study.toml, as a
    # user would. The sessions keep their scanner spaces through DICOM, so the demo's
    # transforms apply unchanged (what `viewer register` would find: test_demo_registration).
    manifest["calibration"] = dict(demo_toml["calibration"])
    by_label = {tp["label"]: tp for tp in demo_toml["timepoint"]}
    (root / "regions").mkdir()
    for timepoint in manifest["timepoint"]:
        source = by_label[timepoint["label"]]
        for key in ("transform", "image_transforms", "regions_from"):
            if key in source:
                timepoint[key] = source[key]
        if "regions" in source:
            relative = f"regions/{timepoint['label'].replace(' ', '-')}.nii.gz"
            shutil.copyfile(demo / source["regions"], root / relative)
            timepoint["regions"] = relative
            timepoint["region_names"] = dict(source["region_names"])
    write_manifest(manifest, root / "study.toml")
    return root


@pytest.fixture(scope="module")
def stats(demo, completed, tmp_path_factory) -> dict[str, dict]:
    """`viewer stats --format json` of the demo study and of the completed imported study."""
    out = tmp_path_factory.mktemp("import_demo_exam_stats")
    result = {}
    for name, study in (("demo", demo), ("imported", completed)):
        target = out / f"{name}.json"
        run = run_cli(["stats", study, "--format", "json", "-o", target])
        assert run.code == 0 and run.stderr == "", run.stderr
        result[name] = json.loads(target.read_text(encoding="utf-8"))
    return result


# -- the same voxels on both grids ----------------------------------------------------------------

@dataclass(frozen=True)
class GridMatch:
    """How an image grid lies on a reference grid: the same voxel centres, axes permuted/flipped."""

    order: tuple[int, int, int]  # the image axis that runs along each reference axis
    flips: tuple[bool, bool, bool]
    error_vox: float  # largest distance (voxels) between corresponding voxel centres

    def arrange(self, array: np.ndarray) -> np.ndarray:
        """An array of the image grid, arranged on the reference grid."""
        out = np.transpose(np.asarray(array), self.order)
        for axis, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis)
        return out

    @property
    def slice_axis(self) -> int:
        """The reference axis along which the image's slices (its k axis, one DICOM file each) run."""
        return self.order.index(2)


def match_grids(reference: Volume, image: Volume, what: str) -> GridMatch:
    to_reference = np.linalg.inv(reference.voxel_to_world) @ image.voxel_to_world
    linear = np.rint(to_reference[:3, :3])
    is_permutation = (np.all(np.abs(linear).sum(axis=0) == 1) and np.all(np.abs(linear).sum(axis=1) == 1))
    assert is_permutation, f"{what}: the imported grid is not the demo's grid with permuted axes:\n{to_reference}"
    order = tuple(int(np.flatnonzero(linear[b])[0]) for b in range(3))
    flips = tuple(bool(linear[b, order[b]] < 0) for b in range(3))
    assert tuple(image.shape[a] for a in order) == tuple(reference.shape), what
    offset = np.array([reference.shape[b] - 1 if flips[b] else 0 for b in range(3)], dtype=float)
    error = (np.abs(to_reference[:3, :3] - linear).max() * max(image.shape)
             + np.abs(to_reference[:3, 3] - offset).max())
    return GridMatch(order, flips, float(error))  # type: ignore[arg-type]


@dataclass
class ImagePair:
    """One role of one timepoint: the demo's image and the imported one on the demo's grid."""

    role: str
    reference: np.ndarray  # the demo's values (float64)
    imported: np.ndarray  # the imported values at the same voxels
    error_bound: np.ndarray  # e(v), the module docstring's per-voxel bound
    voxel_ml: float
    grid_error_vox: float
    labels: np.ndarray | None = None  # the region map on this grid (from the demo's grid)
    label_mismatches: int = 0  # voxels where the region map lands differently on the imported grid

    @property
    def violations(self) -> int:
        return int(np.count_nonzero(np.abs(self.imported - self.reference) > self.error_bound))

    @property
    def max_difference(self) -> float:
        return float(np.abs(self.imported - self.reference).max())

    @property
    def max_ratio(self) -> float:
        """Largest |difference| / e(v) (0 where both are 0)."""
        diff = np.abs(self.imported - self.reference)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(diff > 0, diff / self.error_bound, 0.0)
        return float(ratio.max())


def compare_image(role: str, reference: Volume, image: Volume, labels: Volume | None, what: str) -> ImagePair:
    match = match_grids(reference, image, what)
    ref = np.asarray(reference.data, dtype=np.float64)
    got = match.arrange(np.asarray(image.data, dtype=np.float64))
    levels = LEVELS_SIGNED if role == "pet" or float(ref.min()) < 0 else LEVELS_UNSIGNED  # the writer's rule
    in_plane = tuple(axis for axis in range(3) if axis != match.slice_axis)
    step = np.abs(ref).max(axis=in_plane, keepdims=True) / levels  # each slice's RescaleSlope (SUV for PET)
    bound = step * (0.5 + SLOPE_SLACK) + FLOAT32_RELATIVE * np.abs(ref)
    pair = ImagePair(role, ref, got, bound, reference.voxel_volume_ml, match.error_vox)
    if labels is not None:
        pair.labels = map_labels_to_grid(labels, reference)
        on_imported = match.arrange(map_labels_to_grid(labels, image))
        pair.label_mismatches = int(np.count_nonzero(on_imported != pair.labels))
    return pair


@dataclass
class TimepointImages:
    label: str
    pairs: dict[str, ImagePair]  # quantified roles only (arrays kept)
    summary: dict[str, tuple[float, float, int, float, int]]  # role → (max diff, max ratio, violations, grid error, label mismatches)


@pytest.fixture(scope="module")
def images(demo, completed) -> dict[str, TimepointImages]:
    """Every image of every timepoint, demo vs imported, on the demo's grids."""
    demo_study, imported_study = load_study(demo), load_study(completed)
    result = {}
    for timepoint in demo_study.timepoints:
        reference = load_timepoint(demo_study, timepoint)
        image = load_timepoint(imported_study, imported_study.timepoint(timepoint.label))
        labels = reference["regions"]
        pairs, summary = {}, {}
        for role in IMAGE_ROLES:
            if role == "regions" or role not in reference:
                continue
            pair = compare_image(role, reference[role], image[role],
                                 labels if role in QUANTIFIED_ROLES else None, f"{timepoint.label} {role}")
            summary[role] = (pair.max_difference, pair.max_ratio, pair.violations, pair.grid_error_vox,
                             pair.label_mismatches)
            if role in QUANTIFIED_ROLES:
                pairs[role] = pair
        result[timepoint.label] = TimepointImages(timepoint.label, pairs, summary)
    return result


# -- bounds on the statistics (module docstring) --------------------------------------------------

@dataclass
class Tolerance:
    """How far a column may move: ``bound`` on |Δ|, and optionally an interval both values lie in."""

    bound: float
    interval: tuple[float, float] | None = None


@dataclass
class RegionBounds:
    numbers: dict[str, Tolerance] = field(default_factory=dict)
    #: the value a boolean must have in both studies, or None when the bounds leave it undecided
    booleans: dict[str, bool | None] = field(default_factory=dict)
    #: cells' worth of the rounding of the voxels the region's graft fits read (ci95 columns)
    fit_reading: float = 0.0


@dataclass
class TimepointBounds:
    detection_limit: Tolerance | None
    regions: dict[int, RegionBounds]
    relative_sigma: float = 0.0
    relative_reference: float = 0.0


def interval_tolerance(low: float, high: float) -> Tolerance:
    slack = GEOMETRY_RELATIVE * max(abs(low), abs(high))
    return Tolerance(high - low + 2 * slack, (low - slack, high + slack))


def clusters(above: np.ndarray, min_voxels: int) -> np.ndarray:
    """Face-connected clusters of at least ``min_voxels`` voxels (§3's detection rule)."""
    components, count = ndimage.label(above, structure=FACES)
    if count == 0:
        return above
    keep = np.bincount(components.ravel()) >= min_voxels
    keep[0] = False
    return keep[components]


def touching(detected: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The seeds and every detected cluster touching them (the tube is not a graft)."""
    components, _ = ndimage.label(detected, structure=FACES)
    hit = np.unique(components[seeds & (components > 0)])
    return np.isin(components, hit[hit > 0]) | seeds


@dataclass
class FluorineIntervals:
    """Per-timepoint ¹⁹F interval analysis on the demo's ¹⁹F grid."""

    pair: ImagePair
    names: dict[int, str]
    calibration: dict

    def __post_init__(self) -> None:
        x, e, labels = self.pair.reference, self.pair.error_bound, self.pair.labels
        assert labels is not None
        background = np.isin(labels, [k for k, n in self.names.items() if n == "background"])
        reference = np.isin(labels, [k for k, n in self.names.items() if n == "reference"])
        assert background.any() and reference.any()
        rayleigh = math.sqrt(math.pi / 2)
        self.sigma = float(x[background].mean()) / rayleigh
        self.delta_sigma = float(e[background].mean()) / rayleigh
        low_sigma, high_sigma = self.sigma - self.delta_sigma, self.sigma + self.delta_sigma
        self.corrected_low = np.sqrt(np.maximum(np.maximum(x - e, 0.0) ** 2 - high_sigma**2, 0.0))
        self.corrected_high = np.sqrt(np.maximum((x + e) ** 2 - low_sigma**2, 0.0))
        snr = float(self.calibration["detection_snr"])
        self.threshold = (snr * low_sigma, snr * high_sigma)
        size = int(self.calibration["min_cluster_voxels"])
        self.sure = clusters(self.corrected_low > self.threshold[1], size)
        self.possible = clusters(self.corrected_high > self.threshold[0], size)
        self.reference_signal = (float(self.corrected_low[reference].mean()), float(self.corrected_high[reference].mean()))
        atoms = float(self.calibration["reference_fluorine_mM"]) * 1e-3 * AVOGADRO * self.pair.voxel_ml * 1e-3
        per_cell = float(self.calibration["fluorine_atoms_per_cell"])
        self.cells_per_signal = (atoms / self.reference_signal[1] / per_cell, atoms / self.reference_signal[0] / per_cell)
        calibration_regions = background | reference
        counted_low = self.sure & ~touching(self.possible, calibration_regions)
        counted_high = self.possible & ~touching(self.sure, calibration_regions)
        self.total = (self.cells_per_signal[0] * float(self.corrected_low[counted_low].sum()),
                      self.cells_per_signal[1] * float(self.corrected_high[counted_high].sum()))

    def cells(self, label: int) -> tuple[float, float]:
        region = self.pair.labels == label
        return (self.cells_per_signal[0] * float(self.corrected_low[self.sure & region].sum()),
                self.cells_per_signal[1] * float(self.corrected_high[self.possible & region].sum()))

    def fit_reading(self, label: int) -> float:
        """Cells' worth of the rounding the interval's graft fits read: they fit every voxel
        within NEIGHBOURHOOD_VOXELS of a cluster, detected or not (the module docstring's
        ci95 rule), so a region's interval moves with the bounds e of all of them."""
        from viewer.core.quant.fluorine_graft_fit import NEIGHBOURHOOD_VOXELS

        region = self.pair.labels == label
        above = (self.corrected_high > self.threshold[0]) & region
        if not above.any():
            return 0.0
        read = ndimage.binary_dilation(above, FACES, iterations=NEIGHBOURHOOD_VOXELS)
        return self.cells_per_signal[1] * float((self.corrected_high - self.corrected_low)[read].sum())

    def below_detection(self, label: int) -> bool | None:
        region = self.pair.labels == label
        if (self.sure & region).any():
            return False
        return None if (self.possible & region).any() else True

    def detection_limit(self) -> tuple[float, float]:
        snr = float(self.calibration["detection_snr"])
        volume_mm3 = self.pair.voxel_ml * 1000.0
        return (snr * (self.sigma - self.delta_sigma) * self.cells_per_signal[0] / volume_mm3,
                snr * (self.sigma + self.delta_sigma) * self.cells_per_signal[1] / volume_mm3)


def pet_tolerances(pair: ImagePair, label: int, settings: QuantSettings) -> dict[str, Tolerance]:
    assert pair.labels is not None
    x, e, region = pair.reference, pair.error_bound, pair.labels == label
    if not region.any():
        return {}
    values, errors = x[region], e[region]
    largest_error = float(errors.max())
    suv_max = float(values.max())
    fraction = settings.mtv_fraction_of_max
    if suv_max <= largest_error:  # uptake could be 0 in one study: the whole region may change side
        band = np.ones(values.shape, dtype=bool)
        near_or_above = band
    else:
        threshold = fraction * suv_max
        width = errors + fraction * largest_error + FLOAT32_RELATIVE * threshold
        band = np.abs(values - threshold) <= width
        near_or_above = values >= threshold - width
    v = pair.voxel_ml
    peak = float(e.max()) + 2 * FFT_ROUNDOFF_FLOOR * float(np.abs(x).max())
    tlg = v * (float(errors[near_or_above].sum()) + float((np.abs(values) + errors)[band].sum()))
    return {"suv_max": Tolerance(largest_error), "suv_mean": Tolerance(float(errors.mean())),
            "suv_peak": Tolerance(peak), "mtv_ml": Tolerance(float(band.sum()) * v), "tlg": Tolerance(tlg)}


def timepoint_bounds(timepoint: TimepointImages, names: dict[int, str], calibration: dict,
                     volumes_ml: dict[int, float]) -> TimepointBounds:
    pairs = timepoint.pairs
    fluorine = FluorineIntervals(pairs["fluorine"], names, calibration)
    settings = QuantSettings()
    regions: dict[int, RegionBounds] = {}
    for label, name in names.items():
        bounds = RegionBounds()
        regions[label] = bounds
        calibration_region = name in ("reference", "background")
        cells = None if calibration_region else fluorine.cells(label)
        if cells is not None:
            bounds.numbers["fluorine_cells"] = interval_tolerance(*cells)
            bounds.fit_reading = fluorine.fit_reading(label)
            volume_mm3 = volumes_ml[label] * 1000.0
            bounds.numbers["cells_per_mm3"] = interval_tolerance(cells[0] / volume_mm3, cells[1] / volume_mm3)
            bounds.booleans["below_detection"] = fluorine.below_detection(label)
            if fluorine.total[0] > 0:
                bounds.numbers["homing_fraction"] = interval_tolerance(cells[0] / fluorine.total[1],
                                                                       cells[1] / fluorine.total[0])
            gd = pairs["gd"]
            region = gd.labels == label
            per_sum = 1e-3 * gd.voxel_ml * 1e-3 / float(calibration["gd_r1_per_mM_s"]) \
                / (float(calibration["gd_fmol_per_cell"]) * 1e-15)
            total, spread = float(gd.reference[region].sum()), float(gd.error_bound[region].sum())
            dead = (max(total - spread, 0.0) * per_sum, max(total + spread, 0.0) * per_sum)
            bounds.numbers["dead_cells"] = interval_tolerance(*dead)
            bounds.numbers["live_cells"] = interval_tolerance(max(cells[0] - dead[1], 0.0), max(cells[1] - dead[0], 0.0))
            alert = float(calibration["dead_fraction_alert"])
            if cells[0] > 0:
                fraction = (min(dead[0] / cells[1], 1.0), min(dead[1] / cells[0], 1.0))
                bounds.numbers["dead_fraction"] = interval_tolerance(*fraction)
                bounds.booleans["rejection_alert"] = (fraction[0] >= alert if (fraction[0] >= alert) == (fraction[1] >= alert)
                                                      else None)
            elif cells[1] > 0:  # the count may be 0 (no fraction) in one study and not in the other
                bounds.booleans["rejection_alert"] = None
        bounds.numbers.update(pet_tolerances(pairs["pet"], label, settings))
        sodium = pairs["sodium"]
        region = sodium.labels == label
        if region.any():
            bounds.numbers["sodium_mean_mM"] = Tolerance(float(sodium.error_bound[region].mean()))
    relative_reference = (fluorine.reference_signal[1] - fluorine.reference_signal[0]) / sum(fluorine.reference_signal) * 2
    return TimepointBounds(interval_tolerance(*fluorine.detection_limit()), regions,
                           fluorine.delta_sigma / fluorine.sigma, relative_reference)


@pytest.fixture(scope="module")
def bounds(images, demo_toml, stats) -> dict[str, TimepointBounds]:
    calibration = demo_toml["calibration"]
    result = {}
    by_label = {tp["label"]: tp for tp in demo_toml["timepoint"]}
    for timepoint, reported in zip(demo_toml["timepoint"], stats["demo"]["timepoints"]):
        drawn = by_label[timepoint.get("regions_from", timepoint["label"])]  # carried: the source's names
        names = {int(k): v for k, v in drawn["region_names"].items()}
        volumes = {r["label"]: r["volume_ml"] for r in reported["regions"]}
        result[timepoint["label"]] = timepoint_bounds(images[timepoint["label"]], names, calibration, volumes)
    return result


# -- comparing the statistics -----------------------------------------------------------------------

#: Columns compared exactly (identity and the region map's own volume) and not compared at all.
EXACT_COLUMNS = ("label", "name", "volume_ml")
NOT_COMPARED = ("prediction",)  # the imported study has no [[model]]
CI_COLUMNS = ("fluorine_cells_ci95_low", "fluorine_cells_ci95_high")
#: How much a graft fit's total may move per unit of the rounding of the voxels it reads (stated)
FIT_GAIN = 1.0


@dataclass(frozen=True)
class Difference:
    timepoint: str
    region: str
    column: str
    demo: float
    imported: float
    tolerance: float

    @property
    def delta(self) -> float:
        return abs(self.imported - self.demo)


def column_differences(stats: dict[str, dict], bounds: dict[str, TimepointBounds]) -> tuple[list[Difference], list[str]]:
    """Every compared number with its tolerance, and every problem found (empty when all agree)."""
    differences: list[Difference] = []
    problems: list[str] = []
    demo, imported = stats["demo"]["timepoints"], stats["imported"]["timepoints"]
    assert [t["label"] for t in demo] == [t["label"] for t in imported]
    for ours, theirs in zip(demo, imported):
        where = ours["label"]
        tp_bounds = bounds[where]
        if ours["day"] != theirs["day"]:
            problems.append(f"{where}: day {ours['day']} != {theirs['day']}")
        limit = tp_bounds.detection_limit
        a, b = ours["detection_limit_cells_per_mm3"], theirs["detection_limit_cells_per_mm3"]
        if limit is not None and a is not None and b is not None:
            differences.append(Difference(where, "-", "detection_limit_cells_per_mm3", a, b, allowed(a, b, limit)))
            problems.extend(_check_number(f"{where} detection_limit_cells_per_mm3", a, b, limit))
        elif (a is None) != (b is None) or limit is None:
            problems.append(f"{where} detection_limit_cells_per_mm3: {a!r} vs {b!r}")
        assert [r["label"] for r in ours["regions"]] == [r["label"] for r in theirs["regions"]]
        for region, other in zip(ours["regions"], theirs["regions"]):
            name = region["name"]
            if set(region) != set(other):
                problems.append(f"{where} {name}: columns differ: {sorted(set(region) ^ set(other))}")
                continue
            region_bounds = tp_bounds.regions[region["label"]]
            for column, a in region.items():
                b = other[column]
                label = f"{where} / {name} / {column}"
                if column in NOT_COMPARED:
                    continue
                if (a is None) != (b is None):
                    problems.append(f"{label}: null in one study only ({a!r} vs {b!r})")
                    continue
                if a is None:
                    continue
                if column in EXACT_COLUMNS:
                    if a != b:
                        problems.append(f"{label}: {a!r} != {b!r}")
                    continue
                if isinstance(a, bool):
                    expected = region_bounds.booleans.get(column, "missing")
                    if expected == "missing":
                        problems.append(f"{label}: no rule for this boolean column")
                    elif expected is not None and not (a == b == expected):
                        problems.append(f"{label}: {a!r} / {b!r}, the bounds say {expected!r}")
                    continue
                tolerance = region_bounds.numbers.get(column)
                if tolerance is None and column in CI_COLUMNS and "fluorine_cells" in region_bounds.numbers:
                    count = region_bounds.numbers["fluorine_cells"]
                    tolerance = Tolerance(count.bound + abs(a) * (2 * tp_bounds.relative_sigma + tp_bounds.relative_reference)
                                          + FIT_GAIN * region_bounds.fit_reading)
                if tolerance is None:
                    problems.append(f"{label}: no tolerance is stated for this column (value {a!r})")
                    continue
                differences.append(Difference(where, name, column, float(a), float(b), allowed(a, b, tolerance)))
                problems.extend(_check_number(label, float(a), float(b), tolerance))
    return differences, problems


def allowed(a: float, b: float, tolerance: Tolerance) -> float:
    """The bound plus the geometry term every bound carries (module docstring)."""
    return tolerance.bound + GEOMETRY_RELATIVE * max(abs(a), abs(b))


def _check_number(label: str, a: float, b: float, tolerance: Tolerance) -> list[str]:
    problems = []
    if abs(a - b) > allowed(a, b, tolerance):
        problems.append(f"{label}: demo {a!r}, imported {b!r}, |Δ| = {abs(a - b):.3g} > bound {allowed(a, b, tolerance):.3g}")
    if tolerance.interval is not None:
        low, high = tolerance.interval
        for study, value in (("demo", a), ("imported", b)):
            if not low <= value <= high:
                problems.append(f"{label}: {study} value {value!r} outside the derived interval [{low!r}, {high!r}] "
                                "(a bug, or the bound's model of §3 no longer matches the product)")
    return problems


def undecided_booleans(bounds: dict[str, TimepointBounds]) -> list[str]:
    return [f"{tp} label {label} {column}" for tp, b in bounds.items() for label, region in b.regions.items()
            for column, value in region.booleans.items() if value is None]


# -- import: command, manifest, patient -------------------------------------------------------------

def test_import_exits_0_and_lists_every_series(imported, demo_toml):
    assert imported.run.code == 0, imported.run.stderr
    assert imported.run.stderr == ""
    lines = imported.run.stdout.splitlines()
    assert sum(" skipped " in line and "localizer" in line for line in lines) == len(TIMEPOINTS)
    images = sum(len({key for key in tp if key in IMAGE_ROLES} - {"regions"}) for tp in demo_toml["timepoint"])
    assert lines[-1] == f"wrote {imported.root / 'study.toml'} ({len(TIMEPOINTS)} timepoints, {images} images)"


def test_imported_manifest_has_the_demo_timepoints_roles_and_patient(imported, demo, demo_toml):
    study = load_study(imported.root / AS_IMPORTED)
    demo_info = load_study(demo).info
    raw = tomllib.loads(imported.manifest_text)
    demo_timepoints = demo_toml["timepoint"]
    assert [tp.day for tp in study.timepoints] == [tp["day"] for tp in demo_timepoints] == [d.day for d in TIMEPOINTS]
    assert [tp.label for tp in study.timepoints] == [tp["label"] for tp in demo_timepoints] == ["day 1", "day 7", "day 21"]
    for timepoint, expected in zip(study.timepoints, demo_timepoints):
        roles = {key for key in expected if key in IMAGE_ROLES} - {"regions"}
        assert set(timepoint.images) == roles, timepoint.label  # no region maps: DICOM SEG, later
        assert not timepoint.region_names
    for key in ("patient", "patient_id", "birth_date", "sex", "day0"):
        assert raw["study"][key] == demo_toml["study"][key], key  # TOML dates compare as dates
        assert study.info[key] == demo_info[key], key


def test_imported_pet_is_in_suv_from_the_dicom_tags(imported):
    raw = tomllib.loads(imported.manifest_text)
    assert all("pet_units" not in tp and "pet_dose" not in tp for tp in raw["timepoint"])
    study = load_study(imported.root / AS_IMPORTED)
    expected_delta = (datetime.strptime(PET_PATIENT["series"], "%H:%M:%S")
                      - datetime.strptime(PET_PATIENT["injection"], "%H:%M:%S")).total_seconds()
    for timepoint in study.timepoints:
        pet = load_image(timepoint.images["pet"], "pet")
        assert pet.units == "SUV", timepoint.label
        assert pet.meta["pet_units_stored"] == "BQML" and pet.meta["suv_method"].startswith("BQML")
        assert pet.meta["weight_kg"] == PET_PATIENT["weight_kg"] and pet.meta["dose_bq"] == PET_PATIENT["dose_bq"]
        assert pet.meta["delta_t_s"] == expected_delta
    # QIBA by hand on the hottest file of day 7 (pydicom only): stored · slope · weight / decayed dose.
    folder = study.timepoint("day 7").images["pet"]
    datasets = [pydicom.dcmread(path) for path in sorted(folder.iterdir())]
    ds = max(datasets, key=lambda d: float(d.RescaleSlope))
    info = ds.RadiopharmaceuticalInformationSequence[0]
    scan = datetime.strptime(ds.SeriesDate + ds.SeriesTime[:6], "%Y%m%d%H%M%S")
    injection = datetime.strptime(str(info.RadiopharmaceuticalStartDateTime)[:14], "%Y%m%d%H%M%S")
    decayed = float(info.RadionuclideTotalDose) * 2.0 ** (-(scan - injection).total_seconds() / float(info.RadionuclideHalfLife))
    suv = ds.pixel_array * float(ds.RescaleSlope) * float(ds.PatientWeight) * 1000.0 / decayed
    pet = load_image(folder, "pet")
    lps = np.array([float(v) for v in ds.ImagePositionPatient])
    k = pet.world_to_voxel_points(np.array([[-lps[0], -lps[1], lps[2]]]))[0][2]
    assert abs(k - round(k)) < 1e-4
    np.testing.assert_allclose(np.asarray(pet.data)[:, :, round(k)].T, suv, rtol=1e-6, atol=1e-9)


# -- images: same voxels, same values within half a slice step --------------------------------------

def test_every_imported_image_is_the_demo_image_within_half_a_slice_step(images):
    problems = []
    for label, timepoint in images.items():
        assert set(timepoint.summary) == {"anatomical", "fluorine", "spio", "gd", "pet", "sodium", "adc", "tmax"}
        for role, (max_diff, ratio, violations, grid_error, mismatches) in timepoint.summary.items():
            if grid_error > GRID_TOLERANCE_VOX:
                problems.append(f"{label} {role}: voxel centres {grid_error:.3g} voxel apart")
            if violations:
                problems.append(f"{label} {role}: {violations} voxels beyond half a slice step "
                                f"(max |Δ| {max_diff:.3g}, {ratio:.3g} × the bound)")
            if mismatches:
                problems.append(f"{label} {role}: the regions land on {mismatches} other voxels of the imported grid")
    assert not problems, "\n".join(problems)


# -- statistics -------------------------------------------------------------------------------------

def test_stats_of_the_imported_exam_equal_the_demo_within_derived_bounds(stats, bounds):
    assert stats["demo"]["study"] and stats["imported"]["study"]
    differences, problems = column_differences(stats, bounds)
    assert not problems, "\n".join(problems)
    compared = {d.column for d in differences}
    assert {"fluorine_cells", "cells_per_mm3", "dead_cells", "live_cells", "dead_fraction", "suv_max", "suv_mean",
            "suv_peak", "mtv_ml", "tlg", "sodium_mean_mM", "homing_fraction",
            "detection_limit_cells_per_mm3"} <= compared


def test_no_boolean_is_left_undecided_by_the_bounds(bounds):
    """below_detection and rejection_alert are really compared (the bounds decide every one)."""
    assert undecided_booleans(bounds) == []


def test_prediction_is_the_only_column_null_because_of_the_import(stats):
    for ours, theirs in zip(stats["demo"]["timepoints"], stats["imported"]["timepoints"]):
        for region, other in zip(ours["regions"], theirs["regions"]):
            assert other["prediction"] is None  # no [[model]] in the imported study
            for column, value in region.items():
                if column not in NOT_COMPARED:
                    assert (value is None) == (other[column] is None), (ours["label"], region["name"], column)


def test_notes_are_the_same_but_for_numbers_and_the_model(stats):
    def shape(notes: list[str]) -> list[str]:
        return [re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "#", note) for note in notes if "prediction" not in note]

    assert shape(stats["imported"]["notes"]) == shape(stats["demo"]["notes"])


# -- render -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("manifest", ["study.toml", AS_IMPORTED])
def test_render_day7_axial(completed, tmp_path, capsys, manifest):
    """Render the completed study (S) and the study exactly as imported (no regions, no calibration)."""
    target = completed if manifest == "study.toml" else completed / manifest
    out = tmp_path / "x.png"
    code = main(["render", str(target), "--view", "axial", "--timepoint", "day 7", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""
    assert captured.out.strip() == str(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
