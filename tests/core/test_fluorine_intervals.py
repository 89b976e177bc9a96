"""Coverage of the ¹⁹F count intervals at a scanner's SNR (issue 17; PRODUCT.md §3).

A phantom built here, independently of the code under test: grafts are uniform balls of known
cells, spread over a 2 mm grid by 10×10×10 supersampled partial volume (so the voxels hold
exactly the designed cells), each in a region of its own; a reference tube of 20 mM fully
inside its region; an air background. Complex Gaussian noise gives the magnitude image at a
reference SNR of 15, 25 and 40, 50 seeds each. For every graft denser than twice the detection
limit the 95 % interval must cover the true count in ≥ 90 % of seeds, and its median
half-width must stay within 3× the spread of the corrected count over the seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from viewer.core.io.study import Calibration
from viewer.core.quant.fluorine import AVOGADRO, FluorineQuantifier
from viewer.core.volume import Volume

VOXEL_MM = 2.0
SHAPE = (64, 48, 36)
CAL = Calibration(fluorine_atoms_per_cell=1.0e12, reference_fluorine_mM=20.0)
#: cells per reference-filled voxel: F_vox / atoms per cell
CELLS_PER_FULL_VOXEL = 20.0e-3 * AVOGADRO * (VOXEL_MM**3 * 1e-6) / 1.0e12
#: (centre mm, radius mm, density as full-voxel SNR at reference SNR 25) of the grafts
GRAFTS = ((20, 20, 20, 2.5, 6.0), (20, 60, 20, 3.5, 9.0), (60, 20, 20, 4.5, 14.0),
          (60, 60, 20, 3.0, 25.0), (100, 20, 20, 6.0, 8.0), (100, 60, 40, 2.0, 40.0))
REFERENCE_SNRS = (15.0, 25.0, 40.0)
SEEDS = 50
SUPERSAMPLING = 10


def _ball_fractions(centre, radius) -> np.ndarray:
    offsets = (np.arange(SUPERSAMPLING) + 0.5) / SUPERSAMPLING - 0.5
    out = np.zeros(SHAPE)
    low = np.maximum(np.floor((np.array(centre) - radius) / VOXEL_MM).astype(int) - 1, 0)
    high = np.minimum(np.ceil((np.array(centre) + radius) / VOXEL_MM).astype(int) + 2, SHAPE)
    axes = [((np.arange(a, b)[:, None] + offsets[None, :]).ravel()) * VOXEL_MM for a, b in zip(low, high)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    inside = ((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2) <= radius**2
    n = [b - a for a, b in zip(low, high)]
    s = SUPERSAMPLING
    out[low[0]:high[0], low[1]:high[1], low[2]:high[2]] = inside.reshape(n[0], s, n[1], s, n[2], s).mean(axis=(1, 3, 5))
    return out


def make_phantom():
    """(clean signal per reference-SNR unit, labels, region names, true cells per label)."""
    labels = np.zeros(SHAPE, np.int16)
    signal = np.zeros(SHAPE)  # in units of the reference signal (a full reference voxel = 1)
    truth = {}
    for index, (x, y, z, radius, snr25) in enumerate(GRAFTS, start=1):
        fractions = _ball_fractions((x, y, z), radius)
        amplitude = snr25 / 25.0  # a full voxel's signal relative to the reference's
        signal += amplitude * fractions
        truth[index] = amplitude * fractions.sum() * CELLS_PER_FULL_VOXEL
        box = tuple(slice(max(int((c - radius) / VOXEL_MM) - 4, 0), int((c + radius) / VOXEL_MM) + 5)
                    for c in (x, y, z))
        labels[box] = np.where(labels[box] == 0, index, labels[box])
    reference, background = len(GRAFTS) + 1, len(GRAFTS) + 2
    signal[2:12, 2:10, 26:34] = 1.0  # the tube: fully filled voxels
    labels[3:11, 3:9, 27:33] = reference
    labels[40:62, 30:46, 28:35] = background
    names = {i: f"graft {i}" for i in truth} | {reference: "reference", background: "background"}
    return signal, labels, names, truth


@pytest.fixture(scope="module")
def phantom():
    return make_phantom()


def _measure(phantom, snr, seed):
    signal, labels, names, truth = phantom
    rng = np.random.default_rng(seed)
    clean = signal * snr  # σ = 1
    magnitude = np.hypot(clean + rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)).astype(np.float32)
    affine = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
    quantifier = FluorineQuantifier(Volume.from_array(magnitude, affine, role="fluorine"),
                                    Volume.from_array(labels, affine, role="regions"), names, CAL)
    out = {}
    whole = tuple(slice(0, n) for n in SHAPE)
    for label in truth:
        out[label] = quantifier.measure(whole, labels == label)
    return out, quantifier.detection_limit_cells_per_mm3


def coverage_rows(phantom, snr: float, seeds: int = SEEDS) -> list[tuple]:
    """Per graft: (label, true, median §3 count, median corrected, median low, median high,
    coverage, median half-width, spread of the corrected count, density / detection limit)."""
    _signal, _labels, _names, truth = phantom
    runs = [_measure(phantom, snr, seed) for seed in range(seeds)]
    limit = float(np.median([limit for _, limit in runs]))
    rows = []
    for label, true in truth.items():
        radius = GRAFTS[label - 1][3]
        density = true / (4 / 3 * math.pi * radius**3)
        lows = np.array([r[label].cells_ci95[0] for r, _ in runs])
        highs = np.array([r[label].cells_ci95[1] for r, _ in runs])
        central = np.array([r[label].corrected_cells for r, _ in runs])
        counted = np.array([r[label].cells for r, _ in runs])
        coverage = float(np.mean((lows <= true) & (true <= highs)))
        half = float(np.median((highs - lows) / 2))
        spread = float(np.std(central))
        rows.append((label, true, float(np.median(counted)), float(np.median(central)), float(np.median(lows)),
                     float(np.median(highs)), coverage, half, spread, density / limit))
    return rows


def format_rows(rows: list[tuple]) -> str:
    return "\n".join(f"graft {r[0]}: true {r[1]:.0f}, §3 count {r[2]:.0f}, corrected {r[3]:.0f}, "
                     f"[{r[4]:.0f}, {r[5]:.0f}], coverage {r[6]:.2f}, half-width {r[7]:.0f} vs spread {r[8]:.0f}, "
                     f"density {r[9]:.1f}× limit" for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("snr", REFERENCE_SNRS)
def test_intervals_cover_the_true_count_at_scanner_snr(phantom, snr, record_property):
    rows = coverage_rows(phantom, snr)
    record_property("coverage", rows)
    table = format_rows(rows)
    print(f"\nreference SNR {snr:g}\n{table}")
    for label, true, _c, _m, _lo, _hi, coverage, half, spread, above in rows:
        if above >= 2.0:
            assert coverage >= 0.9, (snr, label, table)
            assert half <= 3.0 * spread, (snr, label, table)


def test_the_rician_mean_of_the_corrected_signal_matches_monte_carlo_and_the_closed_form():
    from viewer.core.quant.fluorine_graft_fit import corrected_mean

    # at zero signal: E[√(M² − σ²)] = e^{-1/2} Γ(3/2) √2 σ for a Rayleigh M
    assert float(corrected_mean(np.array([0.0]))[0]) == pytest.approx(math.exp(-0.5) * math.gamma(1.5) * math.sqrt(2),
                                                                      rel=1e-3)
    rng = np.random.default_rng(5)
    for amplitude in (0.5, 1.0, 2.0, 3.5, 8.0, 30.0):
        magnitude = np.hypot(amplitude + rng.standard_normal(400_000), rng.standard_normal(400_000))
        expected = np.sqrt(np.maximum(magnitude**2 - 1.0, 0.0)).mean()
        assert float(corrected_mean(np.array([amplitude]))[0]) == pytest.approx(expected, abs=0.005)


def test_levenberg_marquardt_finds_a_known_minimum_within_bounds():
    from viewer.core.quant.fluorine_graft_fit import levenberg_marquardt

    x = np.linspace(0, 4, 50)
    truth = np.array([2.5, 0.7])
    observed = truth[0] * np.exp(-truth[1] * x)
    solution = levenberg_marquardt(lambda t: observed - t[0] * np.exp(-t[1] * x), np.array([1.0, 0.1]),
                                   np.array([0.0, 0.0]), np.array([10.0, 5.0]), np.array([1.0, 1.0]))
    assert solution.success
    np.testing.assert_allclose(solution.x, truth, rtol=1e-6)
    bounded = levenberg_marquardt(lambda t: observed - t[0] * np.exp(-t[1] * x), np.array([1.0, 0.1]),
                                  np.array([0.0, 0.0]), np.array([2.0, 5.0]), np.array([1.0, 1.0]))
    assert bounded.x[0] <= 2.0 + 1e-12  # the bound holds


def test_the_fit_s_analytic_derivatives_equal_central_differences():
    """The ball's partial-volume derivatives and the Rician mean's slope, which the fit's
    Jacobian and the signal's standard error use, against central differences of the values
    (random balls on an anisotropic grid; the table slope away from its knots)."""
    from viewer.core.quant.fluorine_graft_fit import (
        ball_fraction_derivatives,
        ball_fractions,
        corrected_mean,
        corrected_mean_slope,
    )

    rng = np.random.default_rng(3)
    points = np.argwhere(np.ones((9, 9, 9))) * np.array([1.2, 1.2, 1.5])
    for _ in range(5):
        centre, radius, voxel = np.array([5.0, 4.8, 6.0]) + rng.normal(0, 0.4, 3), 1.5 + 2 * rng.random(), 1.3
        fractions, derivatives = ball_fraction_derivatives(points, centre, radius, voxel)
        np.testing.assert_array_equal(fractions, ball_fractions(points, centre, radius, voxel))
        h = 1e-6
        for k in range(4):
            step = np.eye(4)[k] * h
            plus = ball_fractions(points, centre + step[:3], radius + step[3], voxel)
            minus = ball_fractions(points, centre - step[:3], radius - step[3], voxel)
            np.testing.assert_allclose(derivatives[:, k], (plus - minus) / (2 * h), atol=1e-6)
        assert np.abs(derivatives[:, 3]).max() > 0.5  # the ball's edge lies on the grid
    amplitudes = rng.uniform(0.01, 250.0, 500)
    h = 1e-7
    np.testing.assert_allclose(corrected_mean_slope(amplitudes),
                               (corrected_mean(amplitudes + h) - corrected_mean(amplitudes - h)) / (2 * h), atol=1e-5)


def test_a_region_with_nothing_detected_bounds_cells_spread_thinly_below_the_threshold():
    """Cells spread evenly at 1 σ per voxel over a region: when nothing is detected there, the
    interval's upper end is above them in ≥ 95 % of seeds, whatever their spread. (When a few
    noise voxels pass the threshold the region's interval is that of its clusters: cells spread
    thinly away from them are outside it — the stated limit.)"""
    signal, labels, names, _truth = make_phantom()
    region = labels == 1
    clean = signal.copy()
    clean[region] = 1.0 / 25.0  # 1 σ at reference SNR 25
    hidden = float(clean[region].sum()) * CELLS_PER_FULL_VOXEL
    undetected = covered = 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        magnitude = np.hypot(clean * 25.0 + rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)).astype(np.float32)
        affine = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
        quantifier = FluorineQuantifier(Volume.from_array(magnitude, affine, role="fluorine"),
                                        Volume.from_array(labels, affine, role="regions"), names, CAL)
        measured = quantifier.measure(tuple(slice(0, n) for n in SHAPE), region)
        if measured.detected_voxels == 0:
            undetected += 1
            low, high = measured.cells_ci95
            assert low == 0.0 and measured.below_detection
            covered += high >= hidden
    assert undetected >= 20
    assert covered >= 0.95 * undetected


def test_live_cells_and_dead_fraction_follow_the_count_interval_in_the_notes():
    from viewer.core.quant.stats import _viability_interval_note

    note = _viability_interval_note("core", 2600.0, 8000.0, 9000.0)
    assert "live cells 5,400–6,400" in note and "dead fraction 0.29–0.33" in note and "'core'" in note
    assert "dead fraction 1.00–1.00" in _viability_interval_note("x", 9500.0, 8000.0, 9000.0)


def test_a_small_graft_too_small_to_count_is_inside_its_regions_upper_end():
    """A region holding a counted graft and a small one whose voxels above the threshold are
    only two, too few to count (min_cluster_voxels 3): the count leaves the small graft out,
    but the interval's upper end includes what it may hold, so the interval covers the true
    count; without that term it would miss it in most seeds (the test can fail)."""
    labels = np.zeros(SHAPE, np.int16)
    signal = _ball_fractions((20.0, 14.0, 20.0), 3.5) * (12.0 / 25.0)
    small = _ball_fractions((21.0, 34.0, 20.0), 1.7)  # on a voxel face: two voxels share most of it
    signal += small * (13.0 / 25.0)
    labels[2:20, 2:24, 4:17] = 1
    signal[2:12, 30:38, 26:34] = 1.0  # the tube
    labels[3:11, 31:37, 27:33] = 2  # its region, fully filled voxels
    labels[40:62, 30:46, 28:35] = 3
    names = {1: "lesion", 2: "reference", 3: "background"}
    true = float(signal[labels == 1].sum()) * CELLS_PER_FULL_VOXEL
    affine = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
    region = labels == 1
    flagged = covered = covered_without = 0
    for seed in range(SEEDS):
        rng = np.random.default_rng(300 + seed)
        magnitude = np.hypot(signal * 25.0 + rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)).astype(np.float32)
        quantifier = FluorineQuantifier(Volume.from_array(magnitude, affine, role="fluorine"),
                                        Volume.from_array(labels, affine, role="regions"), names, CAL)
        measured = quantifier.measure(tuple(slice(0, n) for n in SHAPE), region)
        low, high = measured.cells_ci95
        flagged += measured.possible_grafts > 0
        covered += low <= true <= high
        covered_without += low <= true <= high - measured.possible_graft_cells
    assert flagged >= SEEDS // 2, flagged
    assert covered >= 0.9 * SEEDS, (covered, covered_without)
    assert covered_without < 0.5 * SEEDS, (covered, covered_without)
