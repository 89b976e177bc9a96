"""Core/penumbra proposal, mismatch summary and mean TSC (PRODUCT.md §3, sodium paragraph).

Synthetic maps are analytic objects in world mm voxelised on their own grids (rotated,
anisotropic), the proposal is built on a different 1 mm target grid, so every test goes
through the resampling the window uses. The demo-study test at the end checks the whole chain
on the shipped demonstration study.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.special import erfc

from tests.core.phantoms import centered_affine, rotation, world_grid
from viewer.core.io.study import load_study, load_timepoint
from viewer.core.quant.perfusion import (
    CORE_LABEL,
    PENUMBRA_LABEL,
    mismatch_summary,
    propose_core_penumbra,
    sodium_mean,
)
from viewer.core.quant.settings import QuantSettings
from viewer.core.spaces import region_mask_on_grid, resample_to_grid
from viewer.core.volume import Volume

#: Volumes of proposals from sharp synthetic maps: within 5 % of the analytic sphere volumes.
VOLUME_TOL = 0.05

CENTRE = np.array([4.0, -3.0, 2.0])
CORE_R, HYPO_R, HEAD_R = 10.0, 20.0, 45.0
#: Edge width (Gaussian σ, mm) of the synthetic lesions: maps are smooth, as a scanner's are;
#: the default thresholds sit at half height of each edge (ADC 450→790, Tmax 11→1), so the
#: proposal's boundary is the analytic sphere.
EDGE_SIGMA_MM = 1.5


def sphere_ml(radius_mm: float) -> float:
    return 4.0 / 3.0 * np.pi * radius_mm ** 3 / 1000.0


def smooth_ball(world: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """1 inside, 0 outside a ball, with an erf edge of σ = EDGE_SIGMA_MM (0.5 on the sphere)."""
    r = np.linalg.norm(world - centre, axis=-1)
    return 0.5 * erfc((r - radius) / (np.sqrt(2.0) * EDGE_SIGMA_MM))


def target_grid() -> Volume:
    """The editable regions grid: 1 mm, axis-aligned, 100³ around the origin."""
    shape = (100, 100, 100)
    return Volume.from_array(np.zeros(shape, np.int32), centered_affine(shape, (1, 1, 1), (0, 0, 0)), role="regions")


def adc_map(small_blob: np.ndarray | None = None) -> Volume:
    """ADC on a rotated 2×2×3 mm grid: 450 in the core sphere, 790 in the head, 0 in air."""
    shape = (56, 56, 40)
    affine = centered_affine(shape, (2.0, 2.0, 3.0), (0.7, 0.3, -0.4), rotate=rotation("z", 21) @ rotation("x", 9))
    world = world_grid(shape, affine)
    data = 790.0 - 340.0 * smooth_ball(world, CENTRE, CORE_R)
    if small_blob is not None:
        data[np.linalg.norm(world - small_blob, axis=-1) <= 2.5] = 450.0
    data[np.linalg.norm(world, axis=-1) > HEAD_R] = 0.0
    return Volume.from_array(data.astype(np.float32), affine, role="adc")


def tmax_map() -> Volume:
    """Tmax on a 2×2×4 mm grid rotated the other way: 11 s within 20 mm, 1 s in the head, 0 in air."""
    shape = (56, 56, 30)
    affine = centered_affine(shape, (2.0, 2.0, 4.0), (-0.5, 0.9, 0.2), rotate=rotation("y", -14))
    world = world_grid(shape, affine)
    data = 1.0 + 10.0 * smooth_ball(world, CENTRE, HYPO_R)
    data[np.linalg.norm(world, axis=-1) > HEAD_R] = 0.0
    return Volume.from_array(data.astype(np.float32), affine, role="tmax")


def volumes(labels: np.ndarray, voxel_ml: float = 0.001) -> tuple[float, float]:
    return float((labels == CORE_LABEL).sum()) * voxel_ml, float((labels == PENUMBRA_LABEL).sum()) * voxel_ml


# -- ADC + Tmax -------------------------------------------------------------------------------

def test_adc_tmax_proposal_reproduces_the_analytic_spheres():
    target = target_grid()
    p = propose_core_penumbra(target, adc=adc_map(), tmax=tmax_map(), sodium=None, settings=QuantSettings())
    assert p.method == "ADC+Tmax"
    assert p.labels.shape == target.shape and p.labels.dtype == np.int32
    assert p.label_names == {1: "core", 2: "penumbra"}
    core_ml, penumbra_ml = volumes(p.labels)
    assert (p.core_ml, p.penumbra_ml) == pytest.approx((core_ml, penumbra_ml))
    assert core_ml == pytest.approx(sphere_ml(CORE_R), rel=VOLUME_TOL)  # 4.19 mL
    assert penumbra_ml == pytest.approx(sphere_ml(HYPO_R) - sphere_ml(CORE_R), rel=VOLUME_TOL)  # 29.3 mL
    # No false core at the head's surface, where trilinear blending with air would give ADC < 620.
    r = np.linalg.norm(world_grid(target.shape, target.voxel_to_world) - CENTRE, axis=-1)
    assert not np.any((p.labels == CORE_LABEL) & (r > CORE_R + 2.0))
    assert not np.any((p.labels > 0) & (r > HYPO_R + 2.0))
    volume = p.to_volume()
    assert volume.role == "regions" and np.array_equal(volume.data, p.labels)


def test_adc_tmax_thresholds_are_settings():
    target = target_grid()
    adc, tmax = adc_map(), tmax_map()
    no_core = propose_core_penumbra(target, adc=adc, tmax=tmax, sodium=None,
                                    settings=QuantSettings(adc_core_threshold=400.0))
    core_ml, penumbra_ml = volumes(no_core.labels)
    assert core_ml == 0.0
    assert penumbra_ml == pytest.approx(sphere_ml(HYPO_R), rel=VOLUME_TOL)  # all hypoperfused tissue
    no_hypo = propose_core_penumbra(target, adc=adc, tmax=tmax, sodium=None,
                                    settings=QuantSettings(tmax_threshold_s=11.5))
    core_ml, penumbra_ml = volumes(no_hypo.labels)
    assert penumbra_ml == 0.0 and core_ml == pytest.approx(sphere_ml(CORE_R), rel=VOLUME_TOL)


def test_brain_mask_restricts_the_proposal():
    target = target_grid()
    world = world_grid(target.shape, target.voxel_to_world)
    left = world[..., 0] < CENTRE[0]
    p = propose_core_penumbra(target, adc=adc_map(), tmax=tmax_map(), sodium=None, settings=QuantSettings(),
                              brain_mask=left)
    assert not np.any(p.labels[~left])
    assert volumes(p.labels)[0] == pytest.approx(sphere_ml(CORE_R) / 2, rel=2 * VOLUME_TOL)
    with pytest.raises(ValueError):
        propose_core_penumbra(target, adc=adc_map(), tmax=tmax_map(), sodium=None, brain_mask=left[:-1])


def test_small_components_are_dropped():
    """A 2.5 mm-radius ADC blob (6 ADC voxels, 0.04 mL proposed) far from the lesion goes; with a
    0.01 mL minimum it stays."""
    target = target_grid()
    blob_at = np.array([-25.0, 20.0, -15.0])
    adc = adc_map(small_blob=blob_at)
    r_blob = np.linalg.norm(world_grid(target.shape, target.voxel_to_world) - blob_at, axis=-1)
    near_blob = r_blob <= 4.0
    p = propose_core_penumbra(target, adc=adc, tmax=tmax_map(), sodium=None, settings=QuantSettings())
    assert not np.any(p.labels[near_blob])
    assert any("dropped" in note and "core" in note for note in p.notes)
    kept = propose_core_penumbra(target, adc=adc, tmax=tmax_map(), sodium=None,
                                 settings=QuantSettings(min_component_ml=0.01))
    assert np.any(kept.labels[near_blob] == CORE_LABEL)


# -- sodium only ------------------------------------------------------------------------------

LESION = np.array([-12.0, 4.0, 0.0])
VENTRICLE = np.array([16.0, 4.0, 0.0])
SODIUM_CORE_R, SODIUM_PENUMBRA_R, VENTRICLE_R = 8.0, 13.0, 8.0


def sodium_map() -> Volume:
    """TSC on a rotated 3 mm grid: tissue 38 mM, lesion core 82 mM within 8 mm, penumbra 58 mM to
    13 mm, a 140 mM ventricle (radius 8 mm, 28 mm from the lesion), 4 mm FWHM blur, 0 in air."""
    shape = (36, 36, 36)
    affine = centered_affine(shape, (3.0, 3.0, 3.0), (0.4, -0.6, 0.5), rotate=rotation("z", -17) @ rotation("y", 8))
    world = world_grid(shape, affine)
    head = np.linalg.norm(world, axis=-1) <= HEAD_R
    data = np.full(shape, 38.0)
    r_lesion = np.linalg.norm(world - LESION, axis=-1)
    data[r_lesion <= SODIUM_PENUMBRA_R] = 58.0
    data[r_lesion <= SODIUM_CORE_R] = 82.0
    data[np.linalg.norm(world - VENTRICLE, axis=-1) <= VENTRICLE_R] = 140.0
    sigma_vox = 4.0 / 2.3548 / 3.0
    blurred = ndimage.gaussian_filter(np.where(head, data, 0.0), sigma_vox)
    weight = ndimage.gaussian_filter(head.astype(float), sigma_vox)
    data = np.where(head, blurred / np.maximum(weight, 1e-6), 0.0)
    return Volume.from_array(data.astype(np.float32), affine, role="sodium")


def csf_distance(target: Volume, sodium: Volume, csf_mM: float) -> np.ndarray:
    """Distance (mm) on the target grid to the nearest voxel with resampled TSC ≥ csf_mM."""
    tsc = resample_to_grid(sodium, target)
    return ndimage.distance_transform_edt(~(tsc >= csf_mM), sampling=target.spacing_mm)


def test_sodium_only_finds_the_lesion_and_keeps_away_from_csf():
    target, sodium = target_grid(), sodium_map()
    settings = QuantSettings()
    p = propose_core_penumbra(target, adc=None, tmax=None, sodium=sodium, settings=settings)
    assert p.method == "sodium"
    r = np.linalg.norm(world_grid(target.shape, target.voxel_to_world) - LESION, axis=-1)
    core = p.labels == CORE_LABEL
    true_core = r <= SODIUM_CORE_R
    assert (core & true_core).sum() / true_core.sum() >= 0.7  # blurred 82-mM core: its inner part ≥ 70 mM
    assert not np.any(core & (r > SODIUM_CORE_R + 2.0))
    assert np.any((p.labels == PENUMBRA_LABEL) & (r > SODIUM_CORE_R) & (r <= SODIUM_PENUMBRA_R))
    assert not np.any((p.labels > 0) & (r > SODIUM_PENUMBRA_R + 3.0))  # nothing at the ventricle
    distance = csf_distance(target, sodium, settings.csf_sodium_mM)
    assert not np.any((p.labels > 0) & (distance <= settings.csf_margin_mm))
    # The phantom does have a false rim: without the CSF margin, voxels at the ventricle's
    # blurred edge (TSC between 50 and 100 mM) are proposed.
    no_margin = propose_core_penumbra(target, adc=None, tmax=None, sodium=sodium,
                                      settings=QuantSettings(csf_margin_mm=0.0))
    assert np.any((no_margin.labels > 0) & (r > SODIUM_PENUMBRA_R + 3.0))


def test_sodium_thresholds_are_settings():
    target, sodium = target_grid(), sodium_map()
    high = propose_core_penumbra(target, adc=None, tmax=None, sodium=sodium,
                                 settings=QuantSettings(sodium_core_mM=95.0))
    assert high.core_ml == 0.0 and high.penumbra_ml > sphere_ml(SODIUM_CORE_R)  # the whole lesion is "penumbra"
    default = propose_core_penumbra(target, adc=None, tmax=None, sodium=sodium, settings=QuantSettings())
    lower_pen = propose_core_penumbra(target, adc=None, tmax=None, sodium=sodium,
                                      settings=QuantSettings(sodium_penumbra_mM=65.0))
    assert lower_pen.penumbra_ml < default.penumbra_ml
    assert lower_pen.core_ml == default.core_ml


def test_method_choice_and_missing_maps():
    target = target_grid()
    none = propose_core_penumbra(target, adc=None, tmax=None, sodium=None, settings=QuantSettings())
    assert none.method is None and none.core_ml is None and none.penumbra_ml is None
    assert not none.labels.any()
    assert len(none.notes) == 1 and "ADC and Tmax" in none.notes[0] and "sodium" in none.notes[0]
    adc_only = propose_core_penumbra(target, adc=adc_map(), tmax=None, sodium=None)
    assert adc_only.method is None and "only ADC" in adc_only.notes[0]
    adc_and_sodium = propose_core_penumbra(target, adc=adc_map(), tmax=None, sodium=sodium_map())
    assert adc_and_sodium.method == "sodium"
    assert any("ADC alone is not used" in note for note in adc_and_sodium.notes)
    all_maps = propose_core_penumbra(target, adc=adc_map(), tmax=tmax_map(), sodium=sodium_map())
    assert all_maps.method == "ADC+Tmax" and any("sodium map not used" in n for n in all_maps.notes)


# -- mismatch ---------------------------------------------------------------------------------

def test_mismatch_summary_meets_the_criteria():
    s = mismatch_summary(1.9, 33.8, QuantSettings())
    assert s.hypoperfused_ml == pytest.approx(35.7)
    assert s.mismatch_ratio == pytest.approx(35.7 / 1.9)
    assert s.mismatch_ml == 33.8
    assert s.meets_criteria is True
    assert s.describe() == ("core 1.9 mL, penumbra 33.8 mL, mismatch ratio 18.8, mismatch 33.8 mL: meets the "
                            "DEFUSE-3 style criteria (core < 70 mL, ratio ≥ 1.8, mismatch ≥ 15 mL)")


@pytest.mark.parametrize("core, penumbra, failing", [
    (70.0, 200.0, "core 70.0 mL is not < 70 mL"),  # core limit is strict
    (30.0, 20.0, "ratio 1.67 is < 1.8"),
    (5.0, 10.0, "mismatch 10.0 mL is < 15 mL"),
])
def test_mismatch_summary_fails_each_criterion(core, penumbra, failing):
    s = mismatch_summary(core, penumbra, QuantSettings())
    assert s.meets_criteria is False
    assert s.failed_criteria() == [failing]
    assert "does not meet" in s.describe() and failing in s.describe()


def test_mismatch_summary_edges_and_settings():
    assert mismatch_summary(1.5, 1.2).mismatch_ratio == pytest.approx(1.8)
    assert mismatch_summary(1.5, 1.2, QuantSettings(defuse_min_mismatch_ml=1.0)).meets_criteria is True
    no_core = mismatch_summary(0.0, 30.0)
    assert no_core.mismatch_ratio is None and no_core.meets_criteria is None
    assert "cannot be assessed (no core)" in no_core.describe()
    unknown = mismatch_summary(None, 12.0)
    assert unknown.hypoperfused_ml is None and unknown.meets_criteria is None
    relaxed = QuantSettings(defuse_max_core_ml=100.0, defuse_min_ratio=1.2, defuse_min_mismatch_ml=5.0)
    assert mismatch_summary(80.0, 20.0, relaxed).meets_criteria is True
    assert "core < 100 mL, ratio ≥ 1.2, mismatch ≥ 5 mL" in mismatch_summary(80.0, 20.0, relaxed).describe()


# -- mean TSC ---------------------------------------------------------------------------------

def test_sodium_mean_on_the_sodium_grid():
    shape = (20, 20, 20)
    affine = centered_affine(shape, (4.0, 4.0, 4.0), (0.3, 0.3, 0.3))
    data = np.full(shape, 35.0, np.float32)
    data[8:12, 8:12, 8:12] = 80.0
    data[9, 9, 9] = np.nan
    sodium = Volume.from_array(data, affine, role="sodium")
    region = np.zeros(shape, bool)
    region[8:12, 8:12, 8:12] = True
    labels = Volume.from_array(region.astype(np.int32), affine, role="regions")
    box, mask = region_mask_on_grid(labels, 1, sodium)
    assert sodium_mean(sodium, box, mask) == pytest.approx(80.0)
    data[region] = np.nan
    assert sodium_mean(sodium, box, mask) is None


# -- the demo study ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(demo_manifest):
    """Day 1 of the demo study (written once per session) with both proposals (≈ 3 s each)."""
    study = load_study(demo_manifest)
    images = load_timepoint(study, study.timepoints[0])
    regions = images["regions"]
    drawn = np.asarray(regions.data)
    settings = QuantSettings()
    return {
        "core": drawn == 1,
        "lesion": (drawn == 1) | (drawn == 2),
        "adc_tmax": propose_core_penumbra(regions, adc=images["adc"], tmax=images["tmax"], sodium=None,
                                          settings=settings),
        "sodium": propose_core_penumbra(regions, adc=None, tmax=None, sodium=images["sodium"], settings=settings),
        "sodium_anatomy": propose_core_penumbra(regions, adc=None, tmax=None, sodium=images["sodium"],
                                                settings=settings, anatomy=images["anatomical"]),
    }


def test_demo_adc_tmax_core_and_precision(demo):
    """Measured: proposed core 1.842 mL vs drawn 1.892 mL (−2.6 %); 1.7 % of the 34.3 mL proposed
    lies outside the drawn lesion (the 4 mm blur of the Tmax edge). Tolerance 5 %."""
    p = demo["adc_tmax"]
    core = p.labels == CORE_LABEL
    assert p.core_ml == pytest.approx(demo["core"].sum() * 0.001, rel=0.15)
    assert (core & demo["core"]).sum() / demo["core"].sum() >= 0.85
    proposed = p.labels > 0
    assert (proposed & ~demo["lesion"]).sum() <= 0.05 * proposed.sum()


def test_demo_adc_tmax_hypoperfused_volume_matches_the_drawn_lesion(demo):
    """Measured: 34.3 mL proposed vs 35.6 mL drawn (−3.8 %); tolerance 20 %."""
    p = demo["adc_tmax"]
    assert p.core_ml + p.penumbra_ml == pytest.approx(demo["lesion"].sum() * 0.001, rel=0.20)


def test_demo_sodium_finds_the_core(demo):
    """Measured: 63 % of the drawn core is proposed as sodium core."""
    core = demo["sodium"].labels == CORE_LABEL
    assert (core & demo["core"]).sum() / demo["core"].sum() >= 0.5


@pytest.mark.xfail(strict=True, reason=(
    "known limit of the sodium-only rule WITHOUT an anatomy: the demo's 4 mm TSC map blurs every "
    "CSF space (140 mM) into the surrounding tissue, so a 3-4 mm band at each ventricle and sulcus "
    "reads 50-100 mM; growing the >= 100 mM CSF by 3 mm leaves 33 mL core + 251 mL penumbra vs "
    "35.6 mL drawn. With the anatomy's CSF class it holds (next test)"))
def test_demo_sodium_without_anatomy_marks_large_areas_elsewhere(demo):
    proposed = demo["sodium"].labels > 0
    assert proposed.sum() <= 2 * demo["lesion"].sum()


def test_demo_sodium_with_the_anatomy_marks_the_lesion_and_little_else(demo):
    """Measured: CSF = the T1's darkest Otsu class grown by 2 mm, penumbra connected to the core:
    25.8 mL penumbra vs 33.8 mL drawn (−24 %), 2.5 mL of the 27 mL proposed outside the drawn
    lesion (251 mL of penumbra without the anatomy)."""
    p = demo["sodium_anatomy"]
    proposed = p.labels > 0
    drawn_penumbra_ml = (demo["lesion"] & ~demo["core"]).sum() * 0.001
    assert p.penumbra_ml == pytest.approx(drawn_penumbra_ml, rel=0.30)
    assert (proposed & ~demo["lesion"]).sum() <= 0.15 * proposed.sum()
    assert any("darkest tissue class" in note for note in p.notes)


def test_demo_sodium_core_within_20_percent_of_the_drawn_core(demo):
    """Measured: 1.79 mL proposed vs 1.89 mL drawn (−5 %). The demo's core is 92 mM (it reads
    81 mM after the 4 mm blur and grid); at 82 mM it read >= 70 mM over only 63 % of the core."""
    assert demo["sodium_anatomy"].core_ml == pytest.approx(demo["core"].sum() * 0.001, rel=0.20)


@pytest.mark.parametrize("contrast", ["T1", "T2"])
def test_the_anatomys_csf_class_is_where_sodium_is_highest_whatever_its_contrast(contrast):
    """A ventricle (TSC 140 mM) in grey/white tissue: dark on T1, bright on T2; the class with
    the higher TSC is taken as CSF either way, and nothing else."""
    from viewer.core.quant.perfusion import _anatomy_csf

    shape = (40, 40, 40)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    ventricle = np.linalg.norm(ijk - 20, axis=-1) < 6
    white = ijk[..., 0] < 20
    grey = ~white & ~ventricle
    t1 = np.where(ventricle, 30.0, np.where(white, 200.0, 120.0)).astype(np.float32)
    image = t1 if contrast == "T1" else (260.0 - t1).astype(np.float32)
    affine = np.eye(4)
    anatomy = Volume.from_array(image, affine, role="anatomical")
    target = Volume.from_array(np.zeros(shape, np.int16), affine, role="regions")
    tsc = np.where(ventricle, 140.0, 40.0).astype(np.float32)
    notes: list[str] = []
    csf = _anatomy_csf(anatomy, target, tsc, notes)
    assert csf is not None and np.array_equal(csf, ventricle), contrast
    assert ("darkest" if contrast == "T1" else "brightest") in notes[-1]
    assert not (csf & grey).any()
