"""The demonstration study: real anatomy, simulated cell-therapy imaging, and its truth.

:func:`write_demo_study` writes a complete study folder (PRODUCT.md §2) for a fictitious
patient: the MNI ICBM152 2009a T1 as anatomy, and simulated ¹⁹F, SPIO ΔR2*, Gd ΔR1, PET,
sodium, ADC and Tmax maps at three timepoints, plus ``truth.json`` holding the numbers the
quantification of PRODUCT.md §3 must recover.

Why it is built this way:
- *Truth by construction.* Cells are placed as uniform-density balls; each ball's cells are
  spread over the voxels of every grid by supersampled partial volume and then renormalised, so
  the fluorine, iron and gadolinium written into each image add up *exactly* to the designed
  cell numbers. Region means in ``truth.json`` (sodium, SUV) are the means of the noise-free
  maps over the region resampled onto that map's own grid (nearest neighbour through world
  space, as §3 does), so they are what a correct implementation measures, minus noise.
- *Every session in its own space.* The later timepoints and every PET are written with
  affines moved by known rigid transforms (``TimepointDesign.session``/``pet_session``), as a
  patient lies differently at each visit; the truth lives in the reference space, so the
  study's numbers are right only once registered (:func:`register_demo`, the default).
- *Every modality on its own grid.* No image shares the anatomical voxel grid; the ¹⁹F and Gd
  grids are rotated about two axes, the ADC and Tmax grids are oblique. Axis-aligned grids are
  offset by 0.3 mm so that no voxel centre falls half-way between two anatomical voxels
  (nearest-neighbour ties would make the region masks depend on rounding conventions).
- *Margins.* Cell balls keep at least two ¹⁹F voxels (4 mm) between their surface and their
  region's boundary, so every voxel holding cells maps to that region on every grid; the
  reference region is drawn inside the tube, away from its wall, so every ¹⁹F voxel of it
  is fully filled (its mean is exactly the reference signal, no partial volume).
- *A scanner's noise.* By default (``NOISE_PROFILES["scanner"]``) the ¹⁹F reference SNR is
  25 and graft voxels read 3–12 σ, the ΔR1 noise is a tenth of a dead cluster's signal: the
  §3 counts then miss the faint graft edges, and their 95 % intervals are what holds the
  truth. The ``ideal`` profile (reference SNR 20,000) checks the estimators themselves
  within 1–2 %. The profile is named in ``truth.json`` and in the manifest description.
- *Atomic.* Everything is written into a temporary sibling folder and renamed into place; an
  existing study is replaced only once the new one is complete.
- *Deterministic.* One ``numpy.random.default_rng(seed)`` stream, drawn in a fixed order.
- *DICOM exam* (``viewer demo --dicom``): :mod:`viewer.core.demo_exam` writes the same images
  as a PACS export, so ``viewer import`` can be tried on scanner-like data.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy import ndimage

from viewer import __version__ as viewer_version
from viewer.core.errors import file_error
from viewer.core.io.atomic import write_folder_atomically, write_text_atomic
from viewer.core.io.dicom_write import PetTags, write_dicom_series
from viewer.core.io.nifti import save_nifti
from viewer.core.io.study import MANIFEST_NAME, write_manifest
from viewer.core.resources import resource_path
from viewer.core.spaces import map_labels_to_grid
from viewer.core.transforms import as_list, rigid
from viewer.core.volume import Volume

#: Version of the generator's scenario; bump when the written numbers change.
DEMO_VERSION = "1.2"
DEFAULT_SEED = 7
TRUTH_NAME = "truth.json"

AVOGADRO = 6.02214076e23
FE_G_PER_MOL = 55.845

#: ``[calibration]`` of the demo study (PRODUCT.md §2–3).
CALIBRATION: dict[str, float | int] = {
    "fluorine_atoms_per_cell": 1.0e12,
    "reference_fluorine_mM": 20.0,
    "detection_snr": 3.5,
    "min_cluster_voxels": 3,
    "gd_r1_per_mM_s": 4.0,
    "gd_fmol_per_cell": 100.0,
    "dead_fraction_alert": 0.2,
    "fe_pg_per_cell": 15.0,
    "spio_r2star_per_mM_s": 100.0,
}

STUDY_INFO: dict[str, Any] = {
    "id": "demo-001",
    "patient": "Mustermann^Erika",
    "patient_id": "DEMO-0001",
    "birth_date": date(1961, 4, 12),  # TOML dates in the manifest (PRODUCT.md §2)
    "sex": "F",
    "day0": date(2026, 3, 2),
    "condition": "CNS vasculitis with a stroke-like lesion (right periventricular white matter)",
    "therapy": "UC-MSC, intracerebral",
    "injected_cells": 62500,
    "description": (
        "Demonstration study, FULLY SIMULATED except the anatomy (MNI ICBM152 2009a T1). "
        "Fictitious patient; day 0 = transplantation of 62,500 19F/SPIO/Gd-labelled UC-MSC. "
        "19F, SPIO, Gd, PET, sodium, ADC and Tmax maps are synthetic; truth.json holds the true "
        "numbers. Not clinical data; not for clinical decisions."
    ),
}

# -- region labels ----------------------------------------------------------------------------
CORE, PENUMBRA, INJECTION, REFERENCE, BACKGROUND, CONTRALATERAL = 1, 2, 3, 4, 5, 6
REGION_NAMES: dict[int, str] = {
    CORE: "core",
    PENUMBRA: "penumbra",
    INJECTION: "injection site",
    REFERENCE: "reference",
    BACKGROUND: "background",
    CONTRALATERAL: "contralateral white matter",
}
CELL_REGIONS = (INJECTION, PENUMBRA, CORE)

# -- geometry (world mm, RAS: +x = patient's right) -------------------------------------------
LESION_CENTER_MM = np.array([28.0, -10.0, 22.0])  # right periventricular / corona radiata WM
CORE_RADIUS_MM = 8.0
CORE_MIN_RADIUS_MM = 7.0
PENUMBRA_RADIUS_MM = 21.0  # thick enough to hold cell balls 4 mm inside both its surfaces
INJECTION_CENTER_MM = np.array([38.0, 9.0, 33.0])  # 24 mm from the lesion centre, right frontal WM
INJECTION_RADIUS_MM = 8.0
CONTRALATERAL_CENTER_MM = np.array([-28.0, -10.0, 22.0])
CONTRALATERAL_RADIUS_MM = 7.0
TUBE_AXIS_XY_MM = np.array([-86.0, -20.0])  # beside the head on the patient's LEFT (−x), in air
TUBE_RADIUS_MM = 5.0
TUBE_Z_MM = (-5.0, 25.0)  # 30 mm long, along z
REFERENCE_LABEL_RADIUS_MM = 2.5  # drawn inside the tube, away from its wall
REFERENCE_LABEL_Z_MM = (0.0, 20.0)
BACKGROUND_BOX_MM = ((-97.0, -81.0), (25.0, 55.0), (-10.0, 20.0))  # air, left-anterior of the head
PET_RIM_MM = 4.0
LESION_BOX_HALF_MM = 42.0

#: Distance kept between a cell ball's surface and its region's boundary (two ¹⁹F voxels).
BALL_MARGIN_MM = 4.0
#: Packing density of the labelled-cell clusters (cells/mm³) before the room limits the radius.
BALL_DENSITY_CELLS_MM3 = 500.0
MIN_BALL_RADIUS_MM = 1.0
MAX_BALL_RADIUS_MM = 3.5

# -- signal and noise -------------------------------------------------------------------------
F19_REFERENCE_SIGNAL = 1000.0  # a.u., signal of a voxel filled with the 20 mM reference
F19_SIGMA = 0.05  # a.u., per channel (Rician magnitude); the "ideal" profile's
DR2STAR_SIGMA = 1.5  # 1/s
DR1_SIGMA = 5.0e-6  # 1/s; the "ideal" profile's
PET_RELATIVE_SIGMA = 0.05
TSC_SIGMA = 2.5  # mM
ADC_SIGMA = 20.0  # 1e-6 mm²/s
TMAX_SIGMA = 0.25  # s
HEAD_MASK_FWHM_MM = 3.0  # noise fades out over a few mm outside the brain, is exactly 0 in air
HEAD_MASK_FLOOR = 0.01
STORAGE_STEPS_PER_SIGMA = 64  # values are stored rounded to sigma/64 (a power of two), like a scanner's integers
SUPERSAMPLING = 5  # sub-samples per voxel axis for partial volume

TISSUE = {
    "suv": {"gm": 6.0, "wm": 2.5, "csf": 0.3, "core": 3.0},
    "tsc": {"gm": 40.0, "wm": 35.0, "csf": 140.0, "core": 92.0, "penumbra": 55.0},
    "adc": {"gm": 850.0, "wm": 720.0, "csf": 3000.0, "core": 450.0},
    "tmax": {"brain": 1.0, "core": 12.0, "penumbra": 11.0},
}
PET_FWHM_MM = 5.0
PET_LESION_FWHM_MM = 3.0
TSC_FWHM_MM = 4.0
ADC_FWHM_MM = 2.5
TMAX_FWHM_MM = 4.0
SPIO_SMOOTH_SIGMA_MM = 0.6
T1_CORE_FACTOR = 0.8  # the core is slightly hypointense on T1

PET_PATIENT = {"weight_kg": 68.0, "height_m": 1.68, "dose_bq": 250.0e6, "half_life_s": 6586.2,
               "injection": "09:12:00", "series": "10:05:00"}


@dataclass(frozen=True)
class TimepointDesign:
    """Designed cell numbers of one timepoint (all labelled cells are in the three regions)."""

    label: str
    day: int
    folder: str
    cells: dict[int, int]
    dead: dict[int, int]
    penumbra_split: tuple[float, ...]
    pet_rim_suv: float
    pet_dicom: bool
    #: Packing of the injection site's cells (cells/mm³): the bolus is densest the day after
    #: it is injected and loosens as cells leave, so its brightest ¹⁹F voxels read up to ~40 σ
    #: on day 1 while migrated cells (BALL_DENSITY_CELLS_MM3) read 3–12 σ.
    bolus_density_cells_mm3: float
    #: How the patient lay in this session's MR: rotations about x, y, z (degrees) about
    #: HEAD_CENTRE_MM, then a translation (mm); the timepoint's world → reference world.
    session: tuple[tuple[float, float, float], tuple[float, float, float]]
    #: Likewise for the PET/CT of that day: the PET's world → the day's MR world.
    pet_session: tuple[tuple[float, float, float], tuple[float, float, float]]

    def transform(self) -> np.ndarray:
        """True ``transform`` of the timepoint (PRODUCT.md §9): its world → the reference world."""
        return rigid(*self.session, center=HEAD_CENTRE_MM)

    def pet_transform(self) -> np.ndarray:
        """True ``image_transforms.pet``: the PET's world → the timepoint's world."""
        return rigid(*self.pet_session, center=HEAD_CENTRE_MM)


#: Where a head rotates when a patient lies differently (about the middle of the brain), mm.
HEAD_CENTRE_MM = (0.0, -18.0, 18.0)

TIMEPOINTS: tuple[TimepointDesign, ...] = (
    TimepointDesign("day 1", 1, "day1",
                    {INJECTION: 58000, PENUMBRA: 3000, CORE: 1500},
                    {INJECTION: 1740, PENUMBRA: 60, CORE: 75},
                    (1.0,), 8.0, False, 2000.0,
                    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)), ((2.0, -3.0, 4.0), (3.0, -12.0, 9.0))),
    TimepointDesign("day 7", 7, "day7",
                    {INJECTION: 30000, PENUMBRA: 24000, CORE: 8500},
                    {INJECTION: 7500, PENUMBRA: 2400, CORE: 2600},
                    (0.6, 0.4), 8.8, True, 1000.0,
                    ((4.0, -3.0, 7.0), (6.0, -9.0, 5.0)), ((-3.0, 2.0, -5.0), (-4.0, 10.0, -14.0))),
    TimepointDesign("day 21", 21, "day21",
                    {INJECTION: 12000, PENUMBRA: 40000, CORE: 10500},
                    {INJECTION: 4200, PENUMBRA: 4800, CORE: 7350},
                    (0.4, 0.35, 0.25), 7.5, False, 500.0,
                    ((-6.0, 5.0, -9.0), (-8.0, 7.0, -11.0)), ((3.0, 4.0, 2.0), (5.0, 8.0, 12.0))),
)


@dataclass(frozen=True)
class NoiseProfile:
    """How noisy the demo's ¹⁹F and Gd maps are, and the calibration that goes with it.

    ``scanner`` (the default, issue 17): reference SNR 25 and 10¹³ ¹⁹F atoms per cell (the
    contract's range is 3·10¹¹–1.7·10¹³), so the migrated cells' fully filled voxels read
    about 10 σ (3 σ for the smallest balls' brightest, 34 σ for the day-1 bolus's); 1 fmol
    Gd per cell with ΔR1 noise of 3e-5 1/s, a tenth of a dead-cell cluster's ΔR1. The numbers
    to compare with the truth are then the counts' 95 % intervals. ``ideal``: reference SNR
    20,000 and ΔR1 noise 5e-6 1/s, so the §3 estimators recover the truth within 1-2 % (a check
    of the estimators themselves, not of what a scanner allows).
    """

    name: str
    f19_sigma: float  # a.u., per channel
    fluorine_atoms_per_cell: float
    dr1_sigma: float  # 1/s
    gd_fmol_per_cell: float

    def calibration(self) -> dict[str, float | int]:
        return {**CALIBRATION, "fluorine_atoms_per_cell": self.fluorine_atoms_per_cell,
                "gd_fmol_per_cell": self.gd_fmol_per_cell}


NOISE_PROFILES: dict[str, NoiseProfile] = {
    "ideal": NoiseProfile("ideal", F19_SIGMA, float(CALIBRATION["fluorine_atoms_per_cell"]), DR1_SIGMA,
                          float(CALIBRATION["gd_fmol_per_cell"])),
    "scanner": NoiseProfile("scanner", F19_REFERENCE_SIGNAL / 25.0, 1.0e13, 3.0e-5, 1.0),
}
DEFAULT_NOISE = "scanner"


# -- public API -------------------------------------------------------------------------------

def write_demo_study(out_dir: str | Path, *, seed: int = DEFAULT_SEED, overwrite: bool = False,
                     dicom_exam: bool = False, registered: bool = True, noise: str = DEFAULT_NOISE,
                     progress: Callable[[str, int, int], None] = lambda stage, done, total: None) -> Path:
    """Write the demonstration study into ``out_dir`` and return its manifest path.

    The folder gets ``study.toml``, ``truth.json``, the baseline anatomy ``anat/t1.nii``
    (uncompressed) and one folder per timepoint (``day1``, ``day7``, ``day21``; the later ones
    hold their own ``t1.nii``); with ``dicom_exam`` also ``exam/``, the same images as a DICOM
    exam (:mod:`viewer.core.demo_exam`). The whole study is built in a temporary sibling folder
    and renamed into place.

    Each session lies in its own scanner space (``TimepointDesign.session``, its PET in
    another: ``pet_session``), as a real patient's do; ``truth.json`` holds the true
    transforms. With ``registered`` (the default) the study is then registered by
    :func:`viewer.core.study_registration.register_study` — the product's own registration,
    not the truth — every later timepoint to day 1 and every PET to its day's MR, so its
    numbers are right; ``registered=False`` leaves the transforms out (``viewer demo
    --unregistered``), and the later timepoints then measure day 1's regions in the wrong
    tissue. ``progress(stage, done, total)`` follows the registrations. ``noise`` names a
    :data:`NOISE_PROFILES` entry ("scanner", the default, or "ideal").

    Raises:
        ViewerError: an unknown ``noise`` profile (before anything is written).

    Raises:
        ViewerError: ``out_dir`` exists and is not empty (without ``overwrite``), or is a file.
    """
    out_dir = Path(out_dir).absolute()
    if noise not in NOISE_PROFILES:
        from viewer.core.errors import ViewerError

        raise ViewerError(f"unknown demo noise profile {noise!r}; choose {' or '.join(NOISE_PROFILES)}")
    profile = NOISE_PROFILES[noise]

    def build(tmp: Path) -> None:
        _build(tmp, seed, profile)
        if registered:
            register_demo(tmp / MANIFEST_NAME, progress)
        if dicom_exam:
            from viewer.core.demo_exam import EXAM_FOLDER, write_demo_exam

            write_demo_exam(tmp, tmp / EXAM_FOLDER, seed=seed)

    write_folder_atomically(out_dir, build, lambda target: _check_target(target, overwrite))
    return out_dir / MANIFEST_NAME


def register_demo(manifest: Path, progress: Callable[[str, int, int], None] = lambda stage, done, total: None) -> None:
    """Register a freshly written demo (nobody else holds it): the sessions to day 1, then
    each PET to its day's MR (mutual information across modalities).

    Raises:
        RuntimeError: a registration did not improve its similarity (a generator defect: the
            demo must not ship misregistered).
    """
    from viewer.core.study_registration import register_study

    for image in (None, "pet"):
        items = register_study(manifest, image=image, progress=progress, lock=False)
        refused = [item.line() for item in items if not item.written]
        if refused:
            raise RuntimeError("demo registration failed: " + "; ".join(refused))


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise file_error(out_dir, "already exists and is not a folder; choose another output folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise file_error(out_dir, "already exists; choose an empty or new folder, or overwrite it")


# -- grids ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Grid:
    """A voxel grid: shape and voxel→world affine (RAS mm)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    @property
    def voxel_volume_l(self) -> float:
        return self.voxel_volume_mm3 * 1e-6

    def to_voxel(self, xyz: np.ndarray) -> np.ndarray:
        inverse = np.linalg.inv(self.affine)
        return np.asarray(xyz, dtype=np.float64) @ inverse[:3, :3].T + inverse[:3, 3]


def rotation_matrix(axis: str, degrees: float) -> np.ndarray:
    """3×3 rotation about a world axis (right-handed)."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def covering_grid(points: np.ndarray, spacing: tuple[float, float, float], rotation: np.ndarray | None = None,
                  margin_mm: float = 6.0, offset_mm: float = 0.3) -> Grid:
    """The smallest grid of given spacing and orientation holding ``points`` (+ margin).

    Axis-aligned grids start at an integer + ``offset_mm`` so their voxel centres never sit
    half-way between 1 mm anatomical voxel centres.
    """
    rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    local = np.asarray(points, dtype=np.float64) @ rot  # rot.T @ p, row-wise
    low = local.min(axis=0) - margin_mm
    high = local.max(axis=0) + margin_mm
    if rotation is None:
        low = np.floor(low) + offset_mm
    shape = tuple(int(n) for n in np.ceil((high - low) / spacing_arr).astype(int) + 1)
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(spacing_arr)
    affine[:3, 3] = rot @ low
    return Grid(shape, affine)  # type: ignore[arg-type]


def labels_on_grid(labels: np.ndarray, labels_affine: np.ndarray, grid: Grid) -> np.ndarray:
    """Label map on ``grid`` by nearest neighbour through world space (the rule of §3)."""
    source = Volume.from_array(labels, labels_affine, role="regions")
    target = Volume.from_array(np.zeros(grid.shape, dtype=np.uint8), grid.affine, role="regions")
    return map_labels_to_grid(source, target)


def sample_linear(volume: np.ndarray, volume_affine: np.ndarray, grid: Grid) -> np.ndarray:
    """Trilinear sample of ``volume`` at ``grid``'s voxel centres (0 outside), float32."""
    to_volume = np.linalg.inv(volume_affine) @ grid.affine
    out = np.empty(grid.shape, dtype=np.float32)
    ii, jj = np.meshgrid(np.arange(grid.shape[0], dtype=np.float64),
                         np.arange(grid.shape[1], dtype=np.float64), indexing="ij")
    for k in range(grid.shape[2]):
        coords = [to_volume[a, 0] * ii + to_volume[a, 1] * jj + (to_volume[a, 2] * k + to_volume[a, 3]) for a in range(3)]
        out[:, :, k] = ndimage.map_coordinates(volume, coords, order=1, mode="constant", cval=0.0)
    return out


def partial_volume(grid: Grid, inside: Callable[[np.ndarray], np.ndarray], low_mm: np.ndarray,
                   high_mm: np.ndarray, n_sub: int = SUPERSAMPLING) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Fraction of each voxel inside a shape, by n_sub³ supersampling.

    Args:
        inside: world points (…, 3) → bool, the shape.
        low_mm, high_mm: a world box holding the shape.

    Returns:
        (voxel index arrays, fractions) of the voxels with a non-zero fraction.

    Raises:
        RuntimeError: the shape reaches the edge of the grid (the design would lose mass).
    """
    corners = np.array([[x, y, z] for x in (low_mm[0], high_mm[0]) for y in (low_mm[1], high_mm[1])
                        for z in (low_mm[2], high_mm[2])])
    vox = grid.to_voxel(corners)
    start = np.floor(vox.min(axis=0)).astype(int) - 1
    stop = np.ceil(vox.max(axis=0)).astype(int) + 2
    if np.any(start < 0) or np.any(stop > np.array(grid.shape)):
        raise RuntimeError("demo design error: a shape reaches the edge of a grid")
    axes = [np.arange(a, b, dtype=np.float64) for a, b in zip(start, stop)]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    offsets = (np.arange(n_sub) + 0.5) / n_sub - 0.5
    sub = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), axis=-1).reshape(-1, 3)
    fractions = np.empty(len(ijk))
    linear, shift = grid.affine[:3, :3], grid.affine[:3, 3]
    for lo in range(0, len(ijk), 2048):
        block = ijk[lo:lo + 2048]
        points = (block[:, None, :] + sub[None, :, :]) @ linear.T + shift
        fractions[lo:lo + 2048] = inside(points).mean(axis=1)
    keep = fractions > 0
    index = tuple(ijk[keep].astype(np.int64).T)
    return index, fractions[keep]


# -- anatomy and regions ----------------------------------------------------------------------

@dataclass
class Anatomy:
    """The MNI template on its 1 mm grid and the tissue maps derived from it."""

    affine: np.ndarray
    t1: np.ndarray  # uint8
    gm: np.ndarray  # float32 0..1
    wm: np.ndarray  # float32 0..1
    csf: np.ndarray  # float32 0..1 (brain minus GM and WM)
    brain: np.ndarray  # bool, the template's (skull-stripped) brain mask
    csf_mask: np.ndarray  # bool, brain voxels with little GM+WM (ventricles, sulci)

    def world_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Nearest anatomical voxel index of world points (N, 3)."""
        return np.rint(Grid(self.t1.shape, self.affine).to_voxel(xyz)).astype(int)


def load_anatomy() -> Anatomy:
    """The bundled MNI ICBM152 2009a T1, GM and WM maps."""
    import nibabel as nib

    def read(kind: str) -> tuple[np.ndarray, np.ndarray]:
        img = nib.load(str(resource_path("anatomy", f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz")))
        return np.asarray(img.dataobj), np.asarray(img.affine, dtype=np.float64)

    t1, affine = read("t1")
    gm_raw, _ = read("gm")
    wm_raw, _ = read("wm")
    brain = t1 > 0
    gm = np.where(brain, gm_raw.astype(np.float32) / 255.0, 0.0).astype(np.float32)
    wm = np.where(brain, wm_raw.astype(np.float32) / 255.0, 0.0).astype(np.float32)
    tissue = np.clip(gm + wm, 0.0, 1.0)
    scale = np.where(gm + wm > 1.0, 1.0 / np.maximum(gm + wm, 1e-6), 1.0).astype(np.float32)
    gm, wm = gm * scale, wm * scale
    csf = np.where(brain, 1.0 - tissue, 0.0).astype(np.float32)
    csf_mask = brain & (tissue < 0.4)
    return Anatomy(affine, t1.astype(np.uint8), gm, wm, csf, brain, csf_mask)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: float) -> np.ndarray:
    """Smooth Gaussian random field with unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_vox, mode="wrap")
    return field / field.std()


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labelled, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum_labels(mask, labelled, index=np.arange(1, n + 1))
    return labelled == (int(np.argmax(sizes)) + 1)


@dataclass
class Regions:
    labels: np.ndarray  # uint8 on the anatomical grid
    rim: np.ndarray  # bool, inflamed rim around the core (PET)
    box: tuple[slice, slice, slice]  # anatomical box holding the lesion and injection site


def build_regions(anatomy: Anatomy, rng: np.random.Generator) -> Regions:
    """Core, penumbra, injection site, reference, background and a contralateral WM region."""
    shape = anatomy.t1.shape
    labels = np.zeros(shape, dtype=np.uint8)
    centre_idx = anatomy.world_to_index(LESION_CENTER_MM[None])[0]
    half = int(LESION_BOX_HALF_MM)
    box = tuple(slice(max(c - half, 0), min(c + half + 1, n)) for c, n in zip(centre_idx, shape))
    world = _box_world(anatomy, box)
    tissue_ok = anatomy.brain[box] & ~anatomy.csf_mask[box]

    box_shape = world.shape[:3]
    wobble_core = _smooth_field(rng, box_shape, 4.0)
    wobble_pen = _smooth_field(rng, box_shape, 5.0)
    d_lesion = np.linalg.norm(world - LESION_CENTER_MM, axis=-1)
    d_inj = np.linalg.norm(world - INJECTION_CENTER_MM, axis=-1)

    outline = CORE_RADIUS_MM * (1.0 + 0.18 * wobble_core)
    core = ndimage.binary_fill_holes(_largest_component(tissue_ok & (d_lesion < outline))) & tissue_ok
    if not (ball_room(core) >= MIN_BALL_RADIUS_MM).any():
        # the wobble pinched the core too thin for a cell ball (seeds 4 and 19 of 0-40): its
        # outline is kept CORE_MIN_RADIUS_MM from the centre (other seeds' cores are unchanged)
        outline = np.maximum(outline, CORE_MIN_RADIUS_MM)
        core = ndimage.binary_fill_holes(_largest_component(tissue_ok & (d_lesion < outline))) & tissue_ok
    injection = tissue_ok & (d_inj <= INJECTION_RADIUS_MM) & ~core
    penumbra = tissue_ok & (d_lesion < PENUMBRA_RADIUS_MM * (1.0 + 0.12 * wobble_pen)) & ~core & ~injection
    penumbra = _largest_component(penumbra)
    outside_core = ndimage.distance_transform_edt(~core)
    rim = (outside_core > 0) & (outside_core <= PET_RIM_MM) & tissue_ok & ~injection

    sub = labels[box]
    sub[penumbra] = PENUMBRA
    sub[injection] = INJECTION
    sub[core] = CORE

    # Reference: a cylinder inside the tube, away from its wall.
    _paint(labels, anatomy, REFERENCE,
           low=np.array([TUBE_AXIS_XY_MM[0] - 4, TUBE_AXIS_XY_MM[1] - 4, REFERENCE_LABEL_Z_MM[0] - 1]),
           high=np.array([TUBE_AXIS_XY_MM[0] + 4, TUBE_AXIS_XY_MM[1] + 4, REFERENCE_LABEL_Z_MM[1] + 1]),
           inside=lambda p: (np.hypot(p[..., 0] - TUBE_AXIS_XY_MM[0], p[..., 1] - TUBE_AXIS_XY_MM[1])
                             <= REFERENCE_LABEL_RADIUS_MM)
           & (p[..., 2] >= REFERENCE_LABEL_Z_MM[0]) & (p[..., 2] <= REFERENCE_LABEL_Z_MM[1]))
    (x0, x1), (y0, y1), (z0, z1) = BACKGROUND_BOX_MM
    _paint(labels, anatomy, BACKGROUND, low=np.array([x0, y0, z0]), high=np.array([x1, y1, z1]),
           inside=lambda p: np.ones(p.shape[:-1], dtype=bool))
    wm_core = (anatomy.wm > 0.5) & ~anatomy.csf_mask
    _paint(labels, anatomy, CONTRALATERAL,
           low=CONTRALATERAL_CENTER_MM - CONTRALATERAL_RADIUS_MM - 1,
           high=CONTRALATERAL_CENTER_MM + CONTRALATERAL_RADIUS_MM + 1,
           inside=lambda p: np.linalg.norm(p - CONTRALATERAL_CENTER_MM, axis=-1) <= CONTRALATERAL_RADIUS_MM,
           restrict=wm_core)
    if np.any(labels[anatomy.brain] == REFERENCE) or np.any(labels[anatomy.brain] == BACKGROUND):
        raise RuntimeError("demo design error: reference or background overlaps the head")
    rim_full = np.zeros(shape, dtype=bool)
    rim_full[box] = rim
    return Regions(labels, rim_full, box)  # type: ignore[arg-type]


def _box_world(anatomy: Anatomy, box: tuple[slice, ...]) -> np.ndarray:
    axes = [np.arange(s.start, s.stop, dtype=np.float64) for s in box]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    return ijk @ anatomy.affine[:3, :3].T + anatomy.affine[:3, 3]


def _paint(labels: np.ndarray, anatomy: Anatomy, value: int, low: np.ndarray, high: np.ndarray,
           inside: Callable[[np.ndarray], np.ndarray], restrict: np.ndarray | None = None) -> None:
    lo = np.clip(anatomy.world_to_index(low[None])[0], 0, np.array(labels.shape) - 1)
    hi = np.clip(anatomy.world_to_index(high[None])[0], 0, np.array(labels.shape) - 1)
    box = tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi))
    mask = inside(_box_world(anatomy, box))
    if restrict is not None:
        mask &= restrict[box]
    labels[box][mask] = value


# -- cells ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ball:
    """A uniform-density cluster of labelled cells."""

    region: int
    centre_mm: np.ndarray
    radius_mm: float
    cells: int
    dead: int


def ball_room(mask: np.ndarray) -> np.ndarray:
    """The largest cell-ball radius (mm, 1 mm anatomy voxels) centred at each voxel of a region
    that keeps BALL_MARGIN_MM from its boundary, measured conservatively (Euclidean distance
    transform between voxel centres minus half a voxel diagonal)."""
    return ndimage.distance_transform_edt(mask) - math.sqrt(3) / 2 - BALL_MARGIN_MM


def ball_sites(anatomy: Anatomy, regions: Regions) -> dict[int, list[tuple[np.ndarray, float]]]:
    """Where cell balls may sit in each cell region, and how large they may be there.

    A site's room is :func:`ball_room`. Injection site and core get one site (the roomiest
    voxel); the penumbra gets three, the first nearest to the injection site (cells arrive from
    there), the others as far from the previous ones as possible.
    """
    box = regions.box
    world = _box_world(anatomy, box)
    sites: dict[int, list[tuple[np.ndarray, float]]] = {}
    for region in CELL_REGIONS:
        room = ball_room(regions.labels[box] == region)
        candidates = room >= MIN_BALL_RADIUS_MM
        if not candidates.any():
            raise RuntimeError(f"demo design error: no room for cells in region {REGION_NAMES[region]}")
        points, rooms = world[candidates], room[candidates]
        if region != PENUMBRA:
            best = int(np.argmax(rooms))
            sites[region] = [(points[best], float(rooms[best]))]
            continue
        roomy = rooms >= min(2.0, float(rooms.max()))
        points, rooms = points[roomy], rooms[roomy]
        chosen = [int(np.argmin(np.linalg.norm(points - INJECTION_CENTER_MM, axis=1)))]
        while len(chosen) < 3:
            distance = np.min([np.linalg.norm(points - points[c], axis=1) for c in chosen], axis=0)
            chosen.append(int(np.argmax(distance)))
        sites[region] = [(points[c], float(rooms[c])) for c in chosen]
    return sites


def _split(total: int, weights: list[float]) -> list[int]:
    """Integers proportional to ``weights`` adding up to ``total`` (largest remainder)."""
    w = np.asarray(weights, dtype=np.float64)
    raw = total * w / w.sum()
    parts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - parts), kind="stable")[: total - int(parts.sum())]:
        parts[i] += 1
    return [int(p) for p in parts]


def balls_for(design: TimepointDesign, sites: dict[int, list[tuple[np.ndarray, float]]]) -> list[Ball]:
    """The cell balls of one timepoint: each region's cells split over its sites."""
    balls: list[Ball] = []
    for region in CELL_REGIONS:
        region_sites = sites[region]
        weights = list(design.penumbra_split) if region == PENUMBRA else [1.0]
        region_sites = region_sites[: len(weights)]
        cells = _split(design.cells[region], weights)
        dead = _split(design.dead[region], [float(c) for c in cells])
        for (centre, room), n, d in zip(region_sites, cells, dead):
            density = design.bolus_density_cells_mm3 if region == INJECTION else BALL_DENSITY_CELLS_MM3
            wanted = (3.0 * n / (4.0 * math.pi * density)) ** (1.0 / 3.0)
            radius = float(np.clip(wanted, MIN_BALL_RADIUS_MM, min(room, MAX_BALL_RADIUS_MM)))
            balls.append(Ball(region, np.asarray(centre, dtype=np.float64), radius, n, d))
    return balls


def ball_content(grid: Grid, balls: list[Ball], per_ball: Callable[[Ball], float]) -> np.ndarray:
    """Sum over balls of ``per_ball(ball)`` spread over the grid by partial volume (exact sum)."""
    out = np.zeros(grid.shape, dtype=np.float64)
    for ball in balls:
        amount = per_ball(ball)
        if amount == 0:
            continue
        r2 = ball.radius_mm ** 2
        centre = ball.centre_mm
        index, fractions = partial_volume(
            grid, lambda p: np.sum((p - centre) ** 2, axis=-1) <= r2,
            centre - ball.radius_mm, centre + ball.radius_mm)
        out[index] += amount * fractions / fractions.sum()
    return out


# -- the build --------------------------------------------------------------------------------

def _fwhm_sigma(fwhm_mm: float) -> float:
    return fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def _smooth(array: np.ndarray, fwhm_mm: float) -> np.ndarray:
    """Gaussian smoothing of a 1 mm anatomical-grid map."""
    return ndimage.gaussian_filter(np.asarray(array, dtype=np.float32), _fwhm_sigma(fwhm_mm), mode="constant")


def _region_means(noise_free: np.ndarray, labels_here: np.ndarray) -> dict[int, float | None]:
    means: dict[int, float | None] = {}
    for label in REGION_NAMES:
        mask = labels_here == label
        means[label] = float(np.mean(noise_free[mask], dtype=np.float64)) if mask.any() else None
    return means


def _brain_map(design: np.ndarray, anatomy: Anatomy, fwhm_mm: float, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """A tissue map blurred within the brain only, sampled on ``grid`` and masked to the brain.

    Normalised convolution (blur(map·brain) / blur(brain)) keeps voxels at the brain's edge at
    tissue values instead of blending them with the air outside, as a scanner's masked
    parameter map does. Returns (noise-free map, mask as the noise scale).
    """
    brain = anatomy.brain.astype(np.float32)
    weight = sample_linear(_smooth(brain, fwhm_mm), anatomy.affine, grid)
    blurred = sample_linear(_smooth(np.where(anatomy.brain, design, 0.0), fwhm_mm), anatomy.affine, grid)
    inside = weight >= 0.5
    clean = np.where(inside, blurred / np.maximum(weight, 1e-6), 0.0).astype(np.float32)
    return clean, inside.astype(np.float32)


def _head_weight(weight: np.ndarray) -> np.ndarray:
    """Noise scale: 1 in the head, fading over a few mm, exactly 0 in air (masked maps)."""
    return np.where(weight >= HEAD_MASK_FLOOR, np.clip(weight, 0.0, 1.0), 0.0).astype(np.float32)


def quantize(values: np.ndarray, sigma: float) -> np.ndarray:
    """Round to a power-of-two step ≤ sigma/64 (float32): noise-level precision, compressible."""
    step = 2.0 ** math.floor(math.log2(sigma / STORAGE_STEPS_PER_SIGMA))
    return (np.rint(np.asarray(values, dtype=np.float64) / step) * step).astype(np.float32)


def _noisy(rng: np.random.Generator, clean: np.ndarray, sigma: float, scale: np.ndarray) -> np.ndarray:
    """clean + N(0, (sigma·scale)²), stored at sigma/64 precision."""
    return quantize(clean + sigma * scale * rng.standard_normal(clean.shape), sigma)


def _build(root: Path, seed: int, profile: NoiseProfile = NOISE_PROFILES[DEFAULT_NOISE]) -> None:
    """Write the whole study into the (empty, temporary) folder ``root``."""
    rng = np.random.default_rng(seed)
    anatomy = load_anatomy()
    regions = build_regions(anatomy, rng)
    sites = ball_sites(anatomy, regions)
    anat_affine = anatomy.affine
    labels = regions.labels

    # Grids: every modality on its own.
    brain_index = 3.0 * np.argwhere(anatomy.brain[::3, ::3, ::3])
    brain_points = brain_index @ anat_affine[:3, :3].T + anat_affine[:3, 3]
    tube_points = np.array([[TUBE_AXIS_XY_MM[0] + dx, TUBE_AXIS_XY_MM[1] + dy, z]
                            for dx in (-TUBE_RADIUS_MM, TUBE_RADIUS_MM) for dy in (-TUBE_RADIUS_MM, TUBE_RADIUS_MM)
                            for z in TUBE_Z_MM])
    bg_points = np.array([[x, y, z] for x in BACKGROUND_BOX_MM[0] for y in BACKGROUND_BOX_MM[1]
                          for z in BACKGROUND_BOX_MM[2]])
    anat_corners = np.array([anatomy.affine[:3, :3] @ np.array(c) + anatomy.affine[:3, 3]
                             for c in [(i, j, k) for i in (0, anatomy.t1.shape[0] - 1)
                                       for j in (0, anatomy.t1.shape[1] - 1) for k in (0, anatomy.t1.shape[2] - 1)]])
    grids = {
        "fluorine": covering_grid(np.vstack([brain_points, tube_points, bg_points]), (2.0, 2.0, 2.0),
                                  rotation_matrix("z", 12.0) @ rotation_matrix("x", 8.0), margin_mm=6.0),
        "spio": covering_grid(brain_points, (1.0, 1.0, 2.0), margin_mm=4.0),
        "gd": covering_grid(brain_points, (1.5, 1.5, 1.5),
                            rotation_matrix("z", -10.0) @ rotation_matrix("y", 6.0), margin_mm=4.0),
        "pet": covering_grid(anat_corners, (2.0, 2.0, 3.0), margin_mm=2.0),
        "sodium": covering_grid(brain_points, (4.0, 4.0, 4.0), margin_mm=6.0),
        "adc": covering_grid(brain_points, (2.0, 2.0, 4.0), rotation_matrix("x", 6.0), margin_mm=4.0),
        "tmax": covering_grid(brain_points, (2.0, 2.0, 5.0), rotation_matrix("x", -4.0), margin_mm=4.0),
    }
    labels_on = {role: labels_on_grid(labels, anat_affine, grid) for role, grid in grids.items()}
    head = _smooth(anatomy.brain, HEAD_MASK_FWHM_MM)
    noise_scale = {role: _head_weight(sample_linear(head, anat_affine, grids[role])) for role in ("spio", "gd")}
    del head

    # Noise-free maps that do not depend on the timepoint.
    core = labels == CORE
    pen = labels == PENUMBRA
    f19_grid = grids["fluorine"]
    calibration = profile.calibration()
    f_vox_atoms = calibration["reference_fluorine_mM"] * 1e-3 * AVOGADRO * f19_grid.voxel_volume_l
    tube_index, tube_fraction = partial_volume(
        f19_grid,
        lambda p: (np.hypot(p[..., 0] - TUBE_AXIS_XY_MM[0], p[..., 1] - TUBE_AXIS_XY_MM[1]) <= TUBE_RADIUS_MM)
        & (p[..., 2] >= TUBE_Z_MM[0]) & (p[..., 2] <= TUBE_Z_MM[1]),
        np.array([TUBE_AXIS_XY_MM[0] - TUBE_RADIUS_MM, TUBE_AXIS_XY_MM[1] - TUBE_RADIUS_MM, TUBE_Z_MM[0]]),
        np.array([TUBE_AXIS_XY_MM[0] + TUBE_RADIUS_MM, TUBE_AXIS_XY_MM[1] + TUBE_RADIUS_MM, TUBE_Z_MM[1]]))
    tube = np.zeros(f19_grid.shape)
    tube[tube_index] = tube_fraction
    ref_voxels = labels_on["fluorine"] == REFERENCE
    if not ref_voxels.any() or not np.all(tube[ref_voxels] == 1.0):
        raise RuntimeError("demo design error: a 19F reference voxel is not fully inside the tube")

    suv = TISSUE["suv"]
    pet_base = sample_linear(_smooth(suv["gm"] * anatomy.gm + suv["wm"] * anatomy.wm + suv["csf"] * anatomy.csf,
                                     PET_FWHM_MM), anat_affine, grids["pet"])
    pet_core = sample_linear(_smooth(core, PET_LESION_FWHM_MM), anat_affine, grids["pet"])
    pet_rim = sample_linear(_smooth(regions.rim, PET_LESION_FWHM_MM), anat_affine, grids["pet"])

    tsc = TISSUE["tsc"]
    # Tissue voxels carry the tissue TSC (GM/WM mix); only CSF spaces (GM+WM < 0.4) carry CSF's
    # 140 mM, so healthy cortex with some CSF partial volume stays below the 50 mM penumbra cut.
    tissue = anatomy.gm + anatomy.wm
    tissue_tsc = (tsc["gm"] * anatomy.gm + tsc["wm"] * anatomy.wm) / np.maximum(tissue, 1e-6)
    tsc_design = np.where(anatomy.csf_mask, tsc["csf"], np.where(anatomy.brain, tissue_tsc, 0.0)).astype(np.float32)
    del tissue, tissue_tsc
    tsc_design[core] = tsc["core"]
    tsc_design[pen] = tsc["penumbra"]
    tsc_clean, noise_scale["sodium"] = _brain_map(tsc_design, anatomy, TSC_FWHM_MM, grids["sodium"])
    del tsc_design
    adc = TISSUE["adc"]
    adc_design = adc["gm"] * anatomy.gm + adc["wm"] * anatomy.wm + adc["csf"] * anatomy.csf
    adc_design[core] = adc["core"]
    adc_clean, noise_scale["adc"] = _brain_map(adc_design, anatomy, ADC_FWHM_MM, grids["adc"])
    del adc_design
    tmax = TISSUE["tmax"]
    tmax_design = np.where(anatomy.brain, tmax["brain"], 0.0).astype(np.float32)
    tmax_design[core] = tmax["core"]
    tmax_design[pen] = tmax["penumbra"]
    tmax_clean, noise_scale["tmax"] = _brain_map(tmax_design, anatomy, TMAX_FWHM_MM, grids["tmax"])
    del tmax_design

    # Anatomy: the T1 with a slightly hypointense core, written once, uncompressed.
    t1 = anatomy.t1.astype(np.float32) * (1.0 - (1.0 - T1_CORE_FACTOR) * np.clip(_smooth(core, 2.0), 0, 1))
    t1_stored = np.clip(np.rint(t1), 0, 255).astype(np.uint8)
    (root / "anat").mkdir()
    save_nifti(t1_stored, root / "anat" / "t1.nii", anat_affine)
    del t1

    fe_mol_per_cell = calibration["fe_pg_per_cell"] * 1e-12 / FE_G_PER_MOL
    gd_mol_per_cell = calibration["gd_fmol_per_cell"] * 1e-15
    spio_sigma_vox = SPIO_SMOOTH_SIGMA_MM / np.linalg.norm(grids["spio"].affine[:3, :3], axis=0)

    timepoint_truth: list[dict[str, Any]] = []
    manifest_timepoints: list[dict[str, Any]] = []
    volumes_ml = {label: float(np.count_nonzero(labels == label)) * abs(np.linalg.det(anat_affine[:3, :3])) / 1000.0
                  for label in REGION_NAMES}
    sodium_means = _region_means(tsc_clean, labels_on["sodium"])
    noise_sd = _count_noise_sd(labels_on, noise_scale, grids, profile)
    for design in TIMEPOINTS:
        folder = root / design.folder
        folder.mkdir()
        balls = balls_for(design, sites)
        # Every image of the session is written in that session's scanner space: the same
        # voxels with the affine moved by the inverse of the true transform (nothing resampled).
        to_session = np.linalg.inv(design.transform())
        to_pet = np.linalg.inv(design.pet_transform()) @ to_session
        if design is TIMEPOINTS[0]:
            anatomical = "anat/t1.nii"
        else:
            anatomical = f"{design.folder}/t1.nii"
            save_nifti(t1_stored, root / anatomical, to_session @ anat_affine)

        # 19F: fluorine atoms per voxel relative to a full reference voxel, Rician magnitude.
        cells_f19 = ball_content(f19_grid, balls, lambda b: float(b.cells))
        clean = F19_REFERENCE_SIGNAL * (tube + cells_f19 * calibration["fluorine_atoms_per_cell"] / f_vox_atoms)
        real = clean + profile.f19_sigma * rng.standard_normal(clean.shape)
        imag = profile.f19_sigma * rng.standard_normal(clean.shape)
        save_nifti(quantize(np.hypot(real, imag), profile.f19_sigma), folder / "f19.nii.gz",
                   to_session @ f19_grid.affine)
        del real, imag, clean

        # SPIO ΔR2* from the iron of all cells, slightly smoothed.
        g = grids["spio"]
        fe_mM = ball_content(g, balls, lambda b: b.cells * fe_mol_per_cell) / g.voxel_volume_l * 1e3
        dr2 = ndimage.gaussian_filter(calibration["spio_r2star_per_mM_s"] * fe_mM, spio_sigma_vox, mode="constant")
        save_nifti(_noisy(rng, dr2, DR2STAR_SIGMA, noise_scale["spio"]), folder / "dr2star.nii.gz", to_session @ g.affine)
        del fe_mM, dr2

        # Gd ΔR1 from the gadolinium released by dead cells.
        g = grids["gd"]
        gd_mM = ball_content(g, balls, lambda b: b.dead * gd_mol_per_cell) / g.voxel_volume_l * 1e3
        dr1 = calibration["gd_r1_per_mM_s"] * gd_mM
        save_nifti(_noisy(rng, dr1, profile.dr1_sigma, noise_scale["gd"]), folder / "dr1.nii.gz", to_session @ g.affine)
        del gd_mM, dr1

        # PET SUV: FDG-like grey/white contrast, hypometabolic core, inflamed rim.
        pet_clean = (pet_base * (1.0 - pet_core - pet_rim) + suv["core"] * pet_core
                     + design.pet_rim_suv * pet_rim).astype(np.float32)
        pet_noisy = np.maximum(pet_clean * (1.0 + PET_RELATIVE_SIGMA * rng.standard_normal(pet_clean.shape)), 0)
        pet_noisy = quantize(pet_noisy, PET_RELATIVE_SIGMA)
        pet_entry: dict[str, Any]
        if design.pet_dicom:
            _write_pet_dicom(Volume.from_array(pet_noisy, to_pet @ grids["pet"].affine, role="pet"), folder / "pet",
                             design, seed)
            pet_entry = {"pet": f"{design.folder}/pet"}
        else:
            save_nifti(pet_noisy, folder / "pet.nii.gz", to_pet @ grids["pet"].affine)
            pet_entry = {"pet": f"{design.folder}/pet.nii.gz", "pet_units": "SUV"}
        suv_means = _region_means(pet_clean, labels_on["pet"])
        del pet_noisy

        # Sodium, ADC, Tmax: same tissue design at every timepoint, new noise.
        save_nifti(_noisy(rng, tsc_clean, TSC_SIGMA, noise_scale["sodium"]), folder / "tsc.nii.gz",
                   to_session @ grids["sodium"].affine)
        save_nifti(_noisy(rng, adc_clean, ADC_SIGMA, noise_scale["adc"]), folder / "adc.nii.gz",
                   to_session @ grids["adc"].affine)
        save_nifti(_noisy(rng, tmax_clean, TMAX_SIGMA, noise_scale["tmax"]), folder / "tmax.nii.gz",
                   to_session @ grids["tmax"].affine)
        if design is TIMEPOINTS[0]:  # drawn once at baseline; the later timepoints carry them (§9)
            save_nifti(labels, folder / "regions.nii.gz", anat_affine)
            regions_entry: dict[str, Any] = {"regions": f"{design.folder}/regions.nii.gz",
                                             "region_names": dict(REGION_NAMES)}
        else:
            regions_entry = {"regions_from": TIMEPOINTS[0].label}

        manifest_timepoints.append({
            "label": design.label,
            "day": design.day,
            "anatomical": anatomical,
            "fluorine": f"{design.folder}/f19.nii.gz",
            "spio": f"{design.folder}/dr2star.nii.gz",
            "gd": f"{design.folder}/dr1.nii.gz",
            **pet_entry,
            "sodium": f"{design.folder}/tsc.nii.gz",
            "adc": f"{design.folder}/adc.nii.gz",
            "tmax": f"{design.folder}/tmax.nii.gz",
            **regions_entry,
        })
        timepoint_truth.append(_timepoint_truth(design, balls, volumes_ml, sodium_means, suv_means, profile,
                                                noise_sd, f_vox_atoms, f19_grid))

    truth = {
        "study": STUDY_INFO["id"],
        "generator": {"seed": int(seed), "version": DEMO_VERSION, "module": __name__, "viewer": viewer_version},
        "noise_profile": profile.name,
        "assumptions": _assumptions(grids, profile),
        "calibration": dict(calibration),
        "geometry": _geometry_truth(grids),
        "timepoints": timepoint_truth,
        "homing": [_homing(t) for t in timepoint_truth],
    }
    write_text_atomic(root / TRUTH_NAME, json.dumps(truth, indent=2, sort_keys=False) + "\n")
    models = _copy_demo_models(root)
    write_manifest({"study": dict(STUDY_INFO), "calibration": dict(calibration), "model": models,
                    "timepoint": manifest_timepoints}, root / MANIFEST_NAME)


def _copy_demo_models(root: Path) -> list[dict[str, str]]:
    """Put the bundled demonstration model(s) in the study and list them as [[model]] entries,
    so `viewer stats`, the window and the report show its (clearly labelled) predictions."""
    from viewer.core.predict import bundled_model_paths

    folder = root / "models"
    folder.mkdir(exist_ok=True)
    entries = []
    for onnx, card in bundled_model_paths():
        shutil.copyfile(onnx, folder / onnx.name)
        shutil.copyfile(card, folder / card.name)
        entries.append({"onnx": f"models/{onnx.name}", "card": f"models/{card.name}"})
    return entries


def _write_pet_dicom(volume: Volume, folder: Path, design: TimepointDesign, seed: int) -> None:
    """The day-7 PET as a DICOM series in Bq/mL with QIBA SUV tags (shuffled file order)."""
    day = _visit_date(STUDY_INFO["day0"], design.day)
    write_dicom_series(volume, folder, modality="PT", pet=_pet_tags(day), series_description=f"FDG PET {design.label}",
                       patient_name=STUDY_INFO["patient"], patient_id=STUDY_INFO["patient_id"],
                       study_date=day.strftime("%Y%m%d"), shuffle_seed=seed + design.day)


def _visit_date(day0: date | str, day: float) -> date:
    """The calendar date of a timepoint: day 0 (a date or ISO text) plus ``day`` days."""
    start = day0 if isinstance(day0, date) else date.fromisoformat(str(day0))
    return start + timedelta(days=int(day))


def _at(day: date, clock: str) -> datetime:
    """``day`` at the local time ``clock`` ("HH:MM:SS")."""
    return datetime.combine(day, datetime.strptime(clock, "%H:%M:%S").time())


def _pet_tags(day: date) -> PetTags:
    """The demo's F-18 FDG PET dose and timing on the visit ``day`` (PET_PATIENT)."""
    return PetTags(weight_kg=PET_PATIENT["weight_kg"], dose_bq=PET_PATIENT["dose_bq"],
                   half_life_s=PET_PATIENT["half_life_s"], injection=_at(day, PET_PATIENT["injection"]),
                   series=_at(day, PET_PATIENT["series"]), units="BQML", decay_correction="START",
                   sex=STUDY_INFO["sex"], height_m=PET_PATIENT["height_m"])


def _count_noise_sd(labels_on: dict[str, np.ndarray], noise_scale: dict[str, np.ndarray],
                    grids: dict[str, Grid], profile: NoiseProfile) -> dict[int, dict[str, float]]:
    """Standard deviation, caused by map noise, of the SPIO cell count and the Gd dead count."""
    fe_g_per_cell = CALIBRATION["fe_pg_per_cell"] * 1e-12
    gd_mol_per_cell = profile.gd_fmol_per_cell * 1e-15
    out: dict[int, dict[str, float]] = {}
    for label in REGION_NAMES:
        spio = noise_scale["spio"][labels_on["spio"] == label].astype(np.float64)
        gd = noise_scale["gd"][labels_on["gd"] == label].astype(np.float64)
        spio_mol = DR2STAR_SIGMA * math.sqrt(float(np.sum(spio ** 2))) / CALIBRATION["spio_r2star_per_mM_s"] \
            * 1e-3 * grids["spio"].voxel_volume_l
        gd_mol = profile.dr1_sigma * math.sqrt(float(np.sum(gd ** 2))) / CALIBRATION["gd_r1_per_mM_s"] \
            * 1e-3 * grids["gd"].voxel_volume_l
        out[label] = {"spio_cells_noise_sd": spio_mol * FE_G_PER_MOL / fe_g_per_cell,
                      "dead_cells_noise_sd": gd_mol / gd_mol_per_cell}
    return out


def _timepoint_truth(design: TimepointDesign, balls: list[Ball], volumes_ml: dict[int, float],
                     sodium_means: dict[int, float | None], suv_means: dict[int, float | None], profile: NoiseProfile,
                     noise_sd: dict[int, dict[str, float]], f_vox_atoms: float, f19_grid: Grid) -> dict[str, Any]:
    regions = []
    for label, name in REGION_NAMES.items():
        total = sum(b.cells for b in balls if b.region == label)
        dead = sum(b.dead for b in balls if b.region == label)
        regions.append({
            "label": label,
            "name": name,
            "volume_ml": volumes_ml[label],
            "total_cells": int(total),
            "dead_cells": int(dead),
            "live_cells": int(total - dead),
            "dead_fraction": (dead / total) if total else None,
            "released_gd_mol": dead * profile.gd_fmol_per_cell * 1e-15,
            "sodium_mean_mM": sodium_means[label],
            "suv_mean": suv_means[label],
            **noise_sd[label],
        })
    noise = {
        "f19_sigma": profile.f19_sigma,
        "dr2star_sigma": DR2STAR_SIGMA,
        "dr1_sigma": profile.dr1_sigma,
        "pet_relative_sigma": PET_RELATIVE_SIGMA,
        "tsc_sigma": TSC_SIGMA,
        "adc_sigma": ADC_SIGMA,
        "tmax_sigma": TMAX_SIGMA,
        "storage_step": "values stored rounded to a power-of-two step <= sigma/64",
        "air": "every map but 19F and PET is exactly 0 in air (noise fades out over ~3 mm outside the brain)",
    }
    detection_limit = (CALIBRATION["detection_snr"] * profile.f19_sigma / F19_REFERENCE_SIGNAL * f_vox_atoms
                       / profile.fluorine_atoms_per_cell / f19_grid.voxel_volume_mm3)
    return {
        "label": design.label,
        "day": design.day,
        "transform": as_list(np.round(design.transform(), 12)),
        "image_transforms": {"pet": as_list(np.round(design.pet_transform(), 12))},
        "noise": noise,
        "reference_signal": F19_REFERENCE_SIGNAL,
        "reference_cell_equivalents_per_voxel": f_vox_atoms / profile.fluorine_atoms_per_cell,
        "detection_limit_cells_per_mm3": detection_limit,
        "pet_rim_suv": design.pet_rim_suv,
        "regions": regions,
        "cell_balls": [{"region": REGION_NAMES[b.region], "centre_mm": [float(v) for v in b.centre_mm],
                        "radius_mm": b.radius_mm, "cells": b.cells, "dead": b.dead} for b in balls],
    }


def _homing(timepoint: dict[str, Any]) -> dict[str, Any]:
    by_name = {r["name"]: r["total_cells"] for r in timepoint["regions"]}
    total = sum(by_name.values())
    return {
        "label": timepoint["label"],
        "day": timepoint["day"],
        "penumbra": by_name["penumbra"] / total,
        "core": by_name["core"] / total,
        "elsewhere": (total - by_name["penumbra"] - by_name["core"]) / total,
    }


def _geometry_truth(grids: dict[str, Grid]) -> dict[str, Any]:
    return {
        "lesion_centre_mm": LESION_CENTER_MM.tolist(),
        "injection_centre_mm": INJECTION_CENTER_MM.tolist(),
        "reference_tube": {"axis_xy_mm": TUBE_AXIS_XY_MM.tolist(), "radius_mm": TUBE_RADIUS_MM,
                           "z_mm": list(TUBE_Z_MM), "label_radius_mm": REFERENCE_LABEL_RADIUS_MM,
                           "label_z_mm": list(REFERENCE_LABEL_Z_MM)},
        "background_box_mm": [list(a) for a in BACKGROUND_BOX_MM],
        "grids": {role: {"shape": list(g.shape), "affine": np.round(g.affine, 9).tolist()} for role, g in grids.items()},
    }


def _assumptions(grids: dict[str, Grid], profile: NoiseProfile) -> list[str]:
    f19 = grids["fluorine"]
    return [
        "Everything except the anatomy is simulated; the patient is fictitious.",
        "Sessions: the patient lies differently at every visit. Each timepoint's images are written in that "
        "session's scanner space, and each PET in its PET/CT's: the same voxels with the affine moved by the "
        "inverse of a known rigid transform (5-12 deg and 11-18 mm, turning about the middle of the head; "
        "'transform' and 'image_transforms' of each timepoint here, PRODUCT.md §9). Nothing is resampled, so every number below holds in the reference space (day 1's MR) exactly. Regions are drawn "
        "once, on day 1; days 7 and 21 measure them with regions_from = \"day 1\", so their numbers are right "
        "only once registered. The demo ships registered by `viewer register` (the product's own estimate, not "
        "these truths); `viewer demo --unregistered` leaves the transforms out. The later anatomies hold the "
        "same intensities as day 1's, which makes their registration easier than a real rescan's.",
        "Anatomy: MNI ICBM152 2009a non-linear symmetric T1 (1 mm, skull-stripped), the same voxels at every "
        "timepoint; the lesion core is made 20 % hypointense. Tissue classes from the template's GM/WM "
        "probability maps; CSF = brain voxels with GM+WM < 0.4 (ventricles, sulci).",
        "Regions: core = irregular blob (~8 mm radius) around (28, -10, 22) mm in right periventricular white "
        "matter; penumbra = irregular shell out to ~21 mm (thicker than the nominal 18 mm so cell clusters fit "
        "4 mm inside both of its surfaces), CSF excluded; injection site = 8 mm sphere 24 mm from the lesion "
        "centre (right frontal white matter); contralateral white matter = mirror of the lesion centre.",
        "Reference tube: 20 mM 19F, radius 5 mm, 30 mm long along z, at x = -86 mm (patient's left), in air. "
        "The 'reference' region is drawn inside it (radius 2.5 mm, 20 mm long) so every 19F voxel of the region "
        "is fully inside the tube (checked when generating); the tube itself is rendered with partial volume.",
        "Background region: an air box left-anterior of the head inside the 19F field of view.",
        "Cells: every labelled cell is in one of injection site, penumbra, core; each region's cells form "
        f"uniform balls of ~{BALL_DENSITY_CELLS_MM3:g} cells/mm3 (the injection bolus "
        + ", ".join(f"{d.bolus_density_cells_mm3:g} on {d.label}" for d in TIMEPOINTS)
        + "; radius limited by the room), centred at least "
        "radius + 4 mm (two 19F voxels) inside the region, so each ball maps entirely to its region on every grid.",
        "Cell numbers follow the scenario of PRODUCT.md §1: 62,500 UC-MSC injected; about 20 % (12,500) dead by "
        "day 7; 19F counts all cells (live and dead) since the perfluorocarbon persists. Dead cells are spread "
        "over a region's balls in proportion to its cells.",
        "Partial volume: each ball's content is integrated over the voxels of each grid by 5x5x5 supersampling and "
        "renormalised, so every image holds exactly the designed amount of fluorine, iron and gadolinium.",
        f"19F: grid {f19.shape} of 2 mm voxels rotated 12 deg about z and 8 deg about x. Voxel signal = "
        f"{F19_REFERENCE_SIGNAL:g} x (fluorine atoms in voxel) / (20 mM x N_A x V); Rician magnitude noise with "
        f"sigma = {profile.f19_sigma:g} per channel (reference SNR {F19_REFERENCE_SIGNAL / profile.f19_sigma:g}; "
        f"noise profile '{profile.name}': "
        + ("far above a real scanner's, chosen so the PRODUCT.md §3 estimator recovers 1,500-58,000 cells within "
           "1-2 %)." if profile.name == "ideal" else
           f"a scanner's; {profile.fluorine_atoms_per_cell:g} 19F atoms per cell, so the migrated cells' fully filled "
           "voxels read about 10 sigma, the day-1 bolus's brightest about 34 sigma and the smallest balls' brightest "
           "voxels about 3 sigma; the counts' 95 % "
           "intervals are what to compare with the truth)."),
        "SPIO: dR2* = 100 /mM/s x iron (15 pg Fe/cell, 55.845 g/mol) of all cells, Gaussian-smoothed "
        f"(sigma {SPIO_SMOOTH_SIGMA_MM} mm), 1x1x2 mm grid, Gaussian noise sigma {DR2STAR_SIGMA} 1/s in the head.",
        "Gd: dR1 = 4 /mM/s x gadolinium released by dead cells only, spread like that region's cells; "
        f"1.5 mm grid rotated -10 deg about z and 6 deg about y. gd_fmol_per_cell = {profile.gd_fmol_per_cell:g}, "
        f"noise sigma = {profile.dr1_sigma:g} 1/s: "
        + ("a demo choice (dR1 of a dead-cell cluster ~0.01-0.1 1/s) with noise orders of magnitude below a "
           "scanner's, so the dead fraction of a 3,000-cell, 30 mL penumbra is measurable within 0.01 by summing "
           "dR1 over the region." if profile.name == "ideal" else
           "about a tenth of a dead-cell cluster's dR1 (~3e-4 1/s), as a scanner gives: summed over a 30 mL "
           "region the noise is worth thousands of dead cells."),
        "PET: FDG-like SUV = 6 GM + 2.5 WM + 0.3 CSF, smoothed to 5 mm FWHM; core SUV 3 (hypometabolic), "
        "inflamed rim (4 mm around the core) SUV 8.0 / 8.8 / 7.5 at day 1 / 7 / 21 (3 mm FWHM); 5 % multiplicative "
        "noise; 2x2x3 mm grid. Day 7 is a DICOM series in Bq/mL (F-18, 250 MBq at 09:12, scan 10:05, 68 kg, "
        "1.68 m, female); days 1 and 21 are NIfTI in SUV.",
        "Sodium (TSC): tissue = GM/WM-weighted mix of GM 40 and WM 35 mM; CSF spaces (GM+WM < 0.4) 140 mM; "
        "core 92, penumbra 55 mM (after blurring the core reads about 81 mM: core >= 70 and penumbra in "
        "[50, 70) as in PRODUCT.md §3), 4 mm FWHM, 4 mm grid, noise 2.5 mM.",
        "ADC: GM 850, WM 720, CSF 3000, core 450 x 1e-6 mm2/s (penumbra normal), 2.5 mm FWHM, 2x2x4 mm oblique "
        "grid, noise 20. Tmax: brain 1 s, core 12 s, penumbra 11 s (the 6 s threshold sits at half height of "
        "the blurred edge), 4 mm FWHM, 2x2x5 mm oblique grid, noise 0.25 s.",
        "Sodium/ADC/Tmax tissue design is the same at every timepoint (new noise each time).",
        "Outside the head (air) every map except 19F is exactly zero (masked, as scanners write parameter maps; "
        "the noise fades out over ~3 mm outside the brain); 19F is pure Rician noise except the tube and the cells.",
        "Storage: every noisy map is stored as float32 rounded to a power-of-two step <= sigma/64 (like a "
        "scanner's integer storage); this keeps the study small and changes no statistic measurably.",
        "SPIO totals: with dR2* noise sigma 1.5 1/s, a count of cells from SPIO is far less precise than from "
        "19F; spio_cells_noise_sd gives its standard deviation per region (dead_cells_noise_sd likewise for Gd).",
        "Truth values: total/dead/live cells are the designed integers; volume_ml = voxel count x 1 mm3 on the "
        "anatomical grid; sodium_mean_mM and suv_mean are the means of the noise-free maps over the region "
        "resampled (nearest neighbour, through world space) onto that map's own grid, null when the grid holds "
        "no voxel of the region.",
    ]
