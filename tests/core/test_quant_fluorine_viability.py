"""¹⁹F cell counts and dual-contrast viability on phantoms with known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.core.quant_phantoms import BALLS, CALIBRATION, REGION_NAMES, fluorine_image, gd_image, region_labels
from viewer.core.quant.fluorine import FluorineQuantifier
from viewer.core.quant.viability import cells_from_spio, dead_cells_from_gd, region_sum, released_gd_mol, viability
from viewer.core.spaces import region_mask_on_grid
from viewer.core.volume import Volume


@pytest.fixture(scope="module")
def labels():
    return region_labels()


@pytest.fixture(scope="module")
def quantifier(labels):
    fluorine, _ = fluorine_image(sigma=1.0)
    return FluorineQuantifier(fluorine, labels, REGION_NAMES, CALIBRATION)


def _count(quantifier, labels, label):
    box, mask = region_mask_on_grid(labels, label, quantifier.fluorine)
    return quantifier.measure(box, mask)


@pytest.mark.parametrize("ball", BALLS, ids=lambda b: f"region{b.region}")
def test_cell_counts_within_3_percent_on_rotated_2mm_grid(quantifier, labels, ball):
    """Tolerance 3 % (issue #3): partial-volume edge voxels below 3.5σ are lost."""
    measures = _count(quantifier, labels, ball.region)
    assert measures.cells == pytest.approx(ball.cells, rel=0.03)
    assert not measures.below_detection


def test_noise_from_background_is_rayleigh_corrected(quantifier):
    assert quantifier.sigma == pytest.approx(1.0, rel=0.05)
    assert quantifier.sigma_source.startswith("background region")


def test_reference_signal_and_detection_limit_formula(quantifier):
    # the reference region is the tube's core: every voxel is full, so S̄_ref ≈ the tube signal
    assert quantifier.reference_signal == pytest.approx(20_000, rel=0.001)
    per_signal = quantifier.atoms_per_reference_voxel / quantifier.reference_signal / 1e12
    expected = 3.5 * quantifier.sigma * per_signal / 8.0
    assert quantifier.detection_limit_cells_per_mm3 == pytest.approx(expected, rel=1e-9)


def test_total_cells_exclude_the_reference_tube(quantifier):
    assert quantifier.total_cells() == pytest.approx(sum(b.cells for b in BALLS), rel=0.03)


def test_empty_region_is_below_detection(quantifier, labels):
    background = _count(quantifier, labels, 5)
    assert background.below_detection and background.cells == 0


def test_without_background_region_sigma_is_robust_and_noted(labels):
    fluorine, _ = fluorine_image(sigma=1.0)
    names = {k: v for k, v in REGION_NAMES.items() if v != "background"}
    q = FluorineQuantifier(fluorine, labels, names, CALIBRATION)
    assert q.sigma == pytest.approx(1.0, rel=0.1)
    assert "median" in q.sigma_source and any("background" in n for n in q.notes)
    box, mask = region_mask_on_grid(labels, 3, fluorine)
    assert q.measure(box, mask).cells == pytest.approx(40_000, rel=0.03)


def test_without_reference_counts_are_none_with_note(labels):
    fluorine, _ = fluorine_image(sigma=1.0)
    names = {k: v for k, v in REGION_NAMES.items() if v != "reference"}
    q = FluorineQuantifier(fluorine, labels, names, CALIBRATION)
    box, mask = region_mask_on_grid(labels, 3, fluorine)
    measures = q.measure(box, mask)
    assert measures.cells is None and measures.signal_sum > 0
    assert q.detection_limit_cells_per_mm3 is None
    assert any("no 'reference' region" in n for n in q.notes)


def test_isolated_bright_voxels_are_not_counted(labels):
    fluorine, _ = fluorine_image(sigma=1.0)
    data = np.array(fluorine.data)
    box, mask = region_mask_on_grid(labels, 1, fluorine)
    baseline = FluorineQuantifier(Volume.from_array(data, fluorine.voxel_to_world, role="fluorine"), labels, REGION_NAMES, CALIBRATION)
    before = baseline.measure(box, mask).cells
    # a lone hot voxel and a pair (clusters < 3 voxels) inside region 1, away from its ball
    local = np.argwhere(mask)
    spots = [tuple(np.array([s.start for s in box]) + local[i]) for i in (0, len(local) // 7)]
    data[spots[0]] = 500.0
    data[spots[1]] = 500.0
    spiked = FluorineQuantifier(Volume.from_array(data, fluorine.voxel_to_world, role="fluorine"), labels, REGION_NAMES, CALIBRATION)
    assert spiked.measure(box, mask).cells == pytest.approx(before, rel=1e-6)


def test_rician_bias_correction_lowers_the_noise_floor(labels):
    """In signal-free voxels the magnitude's mean is σ√(π/2); correction removes most of it."""
    fluorine, _ = fluorine_image(sigma=3.0)
    q = FluorineQuantifier(fluorine, labels, REGION_NAMES, CALIBRATION)
    box, mask = region_mask_on_grid(labels, 5, fluorine)
    raw = np.asarray(fluorine.data)[box][mask]
    corrected = q.corrected[box][mask]
    assert raw.mean() == pytest.approx(3.0 * math.sqrt(math.pi / 2), rel=0.1)
    # E[√max(R² − σ², 0)] for Rayleigh R = σ·√2·Γ(3/2)·e^(-1/2) ≈ 0.760σ
    assert corrected.mean() == pytest.approx(0.760 * 3.0, rel=0.1)


# -- viability ---------------------------------------------------------------------------------------

DEAD = {3: 9_000.0, 2: 1_200.0, 1: 2_500.0}


def test_dead_fraction_from_released_gd_on_a_third_grid(labels):
    """Tolerance: dead fraction within 0.02 absolute (issue #3); zero-mean noise cancels in the sum.

    ΔR1 noise σ = 1e-5 1/s per voxel: over the smallest region (≈ 760 voxels) the sum's noise is
    ≈ 1 % of its released-Gd signal.
    """
    gd = gd_image(DEAD, sigma=1e-5)
    fluorine, _ = fluorine_image(sigma=1.0)
    q = FluorineQuantifier(fluorine, labels, REGION_NAMES, CALIBRATION)
    for ball in BALLS:
        box, mask = region_mask_on_grid(labels, ball.region, gd)
        dead = dead_cells_from_gd(released_gd_mol(region_sum(gd, box, mask), CALIBRATION.gd_r1_per_mM_s), CALIBRATION.gd_fmol_per_cell)
        fbox, fmask = region_mask_on_grid(labels, ball.region, fluorine)
        total = q.measure(fbox, fmask).cells
        split = viability(total, dead, CALIBRATION.dead_fraction_alert)
        truth = DEAD[ball.region] / ball.cells
        assert split.dead_fraction == pytest.approx(truth, abs=0.02)
        # live = total − dead inherits both errors: 3 % of the total plus 0.02 of it
        assert split.live_cells == pytest.approx(ball.cells - DEAD[ball.region], abs=0.05 * ball.cells)
        assert split.rejection_alert == (split.dead_fraction >= 0.2)


def test_negative_noise_is_not_clipped_per_voxel():
    """Σ over voxels without clipping: a noise-only map gives ~0 dead cells, not a positive bias."""
    values = np.random.default_rng(9).normal(0.0, 0.01, (30, 30, 30)).astype(np.float32)
    volume = Volume.from_array(values, np.eye(4), role="gd")
    mask = np.ones(values.shape, bool)
    summed = region_sum(volume, (slice(None),) * 3, mask)
    clipped_dead = dead_cells_from_gd(np.clip(values, 0, None).sum() / 4.0 * 1e-3 * 1e-6, 10.0)
    dead = dead_cells_from_gd(released_gd_mol(summed, 4.0), 10.0)
    assert dead < 0.05 * clipped_dead


def test_nan_voxels_are_skipped_and_counted():
    values = np.ones((4, 4, 4), np.float32)
    values[0, 0, 0] = np.nan
    summed = region_sum(Volume.from_array(values, np.eye(4), role="gd"), (slice(None),) * 3, np.ones((4, 4, 4), bool))
    assert summed.total == 63 and summed.nan_voxels == 1


def test_spio_total_cells_from_iron():
    cells = 20_000
    iron_mol = cells * 15e-12 / 55.845
    volume_l = 1e-6 * 100  # 100 voxels of 1 mm³
    delta_r2star_sum = 100.0 * iron_mol / volume_l * 1e3 * 100  # r2* · mM per voxel × voxels
    values = np.full((100, 1, 1), delta_r2star_sum / 100, np.float32)
    summed = region_sum(Volume.from_array(values, np.eye(4), role="spio"), (slice(None),) * 3, np.ones(values.shape, bool))
    assert cells_from_spio(summed, 100.0, 15.0) == pytest.approx(cells, rel=1e-5)


def test_viability_edge_cases():
    assert viability(None, 10.0, 0.2).dead_fraction is None
    # dead above the total: no capped split (live 0, fraction 1) but no split at all, flagged
    over = viability(100.0, 150.0, 0.2)
    assert over.live_cells is None and over.dead_fraction is None
    assert over.dead_exceeds_total and over.rejection_alert is True
    assert viability(100.0, 100.0, 0.2).dead_fraction == 1.0 and not viability(100.0, 100.0, 0.2).dead_exceeds_total
    assert viability(0.0, 0.0, 0.2).dead_fraction is None
    assert viability(100.0, 20.0, 0.2).rejection_alert is True
    assert viability(100.0, 19.9, 0.2).rejection_alert is False
    assert math.isclose(dead_cells_from_gd(1e-12, 1.0), 1000.0)


def test_the_magnitudes_are_the_image_itself_unless_some_voxels_are_not_finite(labels):
    """The quantifier is kept for the session: an image with no NaN/inf is not copied (a
    second whole ¹⁹F image per timepoint, issue 19); one with some gets a copy with them set
    to 0, and the image itself is never written."""
    fluorine, _ = fluorine_image(sigma=1.0)
    whole = FluorineQuantifier(fluorine, labels, REGION_NAMES, CALIBRATION)
    assert np.shares_memory(whole.magnitude, fluorine.data)
    holey = fluorine.data.copy()
    holey[0, 0, 0] = np.nan
    image = Volume.from_array(holey, fluorine.voxel_to_world, role="fluorine")
    with_nan = FluorineQuantifier(image, labels, REGION_NAMES, CALIBRATION)
    assert not np.shares_memory(with_nan.magnitude, holey) and np.isnan(holey[0, 0, 0])
    assert with_nan.magnitude[0, 0, 0] == 0 and with_nan.nonfinite_voxels == 1
    assert np.array_equal(with_nan.magnitude.ravel()[1:], holey.ravel()[1:])
    assert with_nan.sigma == pytest.approx(whole.sigma, rel=1e-3)
