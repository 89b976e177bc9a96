"""Volume-rendering transfer functions from the intensity distribution (viewer.core.transfer_function).

Analytic phantoms with known classes — an MR-like sphere in a cube on a noisy zero background,
a CT-like head in Hounsfield units with air, padding and bone, an MRI with a Rician noise
background — and the demo's real T1: air/background must be transparent, tissue visible,
bright structures more opaque, and the thresholds must come from the data.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from viewer.core.transfer_function import (
    PRESETS,
    background_threshold,
    intensity_sample,
    landmarks,
    otsu_threshold,
    transfer_function,
    volume_landmarks,
)

BACKGROUND, CUBE, SPHERE = 0.0, 10.0, 100.0


def sphere_in_cube(n: int = 64, noise: float = 1.0, seed: int = 0) -> np.ndarray:
    """A sphere of 100 inside a cube of 10 on a background of 0, Gaussian noise everywhere."""
    ijk = np.indices((n, n, n)) - (n - 1) / 2.0
    r = np.sqrt((ijk ** 2).sum(axis=0))
    data = np.full((n, n, n), BACKGROUND)
    data[8:-8, 8:-8, 8:-8] = CUBE
    data[r < n / 5] = SPHERE
    return (data + np.random.default_rng(seed).normal(0.0, noise, data.shape)).astype(np.float32)


#: CT-like classes (HU): padding outside the circular field of view, air, fat/skin, bone, brain.
PAD, AIR, FAT, BONE, BRAIN = -3024.0, -1000.0, -100.0, 900.0, 35.0


def ct_head(n: int = 96, seed: int = 1) -> np.ndarray:
    """An int16, Fortran-ordered CT-like head: brain in a bone shell under fat, in air, padded."""
    ijk = np.indices((n, n, n)).astype(np.float32) - (n - 1) / 2.0
    r = np.sqrt(ijk[0] ** 2 + ijk[1] ** 2 + (1.1 * ijk[2]) ** 2)
    data = np.full((n, n, n), AIR, np.float32)
    data[r < 0.38 * n] = FAT
    data[r < 0.35 * n] = BONE
    data[r < 0.31 * n] = BRAIN
    data += np.random.default_rng(seed).normal(0.0, 15.0, data.shape).astype(np.float32)
    data[np.hypot(ijk[0], ijk[1]) > 0.48 * n] = PAD
    return np.asfortranarray(np.rint(data).astype(np.int16))


def rician_mr(n: int = 80, sigma: float = 20.0, seed: int = 2) -> np.ndarray:
    """A magnitude MRI: tissue of 300 (scalp), 800 (brain) and noise σ = 20 in both channels."""
    ijk = np.indices((n, n, n)) - (n - 1) / 2.0
    r = np.sqrt((ijk ** 2).sum(axis=0))
    truth = np.zeros((n, n, n))
    truth[r < 0.4 * n] = 300.0
    truth[r < 0.33 * n] = 800.0
    rng = np.random.default_rng(seed)
    return np.abs(truth + rng.normal(0, sigma, truth.shape) + 1j * rng.normal(0, sigma, truth.shape)).astype(np.float32)


# -- the phantom of the issue -----------------------------------------------------------------

def test_sphere_in_cube_background_transparent_tissue_visible():
    data = sphere_in_cube(noise=1.0)
    marks = volume_landmarks(data)
    # the ceiling lies between the background noise and the cube (both ± 3 σ)
    assert 3.0 < marks.background < 7.0, marks
    tf = transfer_function(marks)
    noise = data[:4, :4, :4]  # a corner: background only
    assert np.all(tf.opacity_at(noise) == 0.0), "background noise is not transparent"
    assert tf.opacity_at(BACKGROUND) == 0.0
    assert tf.opacity_at(CUBE) > 0.0, "the cube (soft tissue) is invisible"
    assert tf.opacity_at(SPHERE) > tf.opacity_at(CUBE), "the bright sphere is not more opaque"
    # brighter is whiter
    assert tf.colour_at(SPHERE)[0] > tf.colour_at(CUBE)[0] > tf.colour_at(BACKGROUND)[0]


def test_noise_only_on_the_background_and_an_exact_zero_fill():
    """Constant tissue classes (synthetic) beside a noisy or an exactly zero background."""
    data = sphere_in_cube(noise=0.0)
    noisy_background = data + np.where(data == 0, np.random.default_rng(3).normal(0, 1.0, data.shape), 0)
    for volume in (data, noisy_background.astype(np.float32)):
        tf = transfer_function(volume_landmarks(volume))
        assert tf.opacity_at(BACKGROUND) == 0.0
        assert tf.opacity_at(CUBE) > 0.0 and tf.opacity_at(SPHERE) > tf.opacity_at(CUBE)


def test_every_preset_is_transparent_at_the_background():
    data = sphere_in_cube()
    marks = volume_landmarks(data)
    for preset in PRESETS:
        tf = transfer_function(marks, preset)
        assert tf.opacity_at(BACKGROUND) == 0.0, preset
        assert tf.opacity_at(SPHERE) > 0.0, preset
        values = [v for v, _ in tf.opacity]
        assert values == sorted(values) and len(set(values)) == len(values), preset
    assert transfer_function(marks, "surface").opacity_at(CUBE) > transfer_function(marks, "tissue").opacity_at(CUBE)
    assert transfer_function(marks, "xray").opacity_at(SPHERE) < 0.05
    assert not transfer_function(marks, "xray").shade and transfer_function(marks, "tissue").shade
    with pytest.raises(ValueError, match="unknown transfer-function preset"):
        transfer_function(marks, "bone window")


def test_opacity_scale_and_a_user_threshold():
    sample = intensity_sample(sphere_in_cube())
    marks = landmarks(sample)
    base = transfer_function(marks)
    doubled = transfer_function(marks, opacity_scale=2.0)
    assert doubled.opacity_at(CUBE) == pytest.approx(2 * base.opacity_at(CUBE))
    assert np.all(transfer_function(marks, opacity_scale=100.0).opacity_at([CUBE, SPHERE]) <= 1.0)
    assert np.all(transfer_function(marks, opacity_scale=0.0).opacity_at([CUBE, SPHERE]) == 0.0)
    # the user raises the threshold above the cube: only the sphere remains
    raised = transfer_function(landmarks(sample, background=50.0))
    assert raised.opacity_at(CUBE) == 0.0 and raised.opacity_at(SPHERE) > 0.0


# -- CT-like and noisy MR ranges ----------------------------------------------------------------

def test_ct_like_head_in_hounsfield_units():
    data = ct_head()
    marks = volume_landmarks(data)
    assert AIR + 45 < marks.background < FAT - 45, marks  # above the air's noise, below the fat
    tf = transfer_function(marks)
    assert tf.opacity_at(PAD) == 0.0 and tf.opacity_at(AIR) == 0.0 and tf.opacity_at(AIR + 45) == 0.0
    assert tf.opacity_at(FAT) > 0.0 and tf.opacity_at(BRAIN) > 0.0
    assert tf.opacity_at(BONE) > tf.opacity_at(BRAIN)
    bone = transfer_function(marks, "bright")
    assert bone.opacity_at(BRAIN) == 0.0 and bone.opacity_at(FAT) == 0.0 and bone.opacity_at(BONE) > 0.2
    assert BRAIN < marks.bright <= BONE


def test_ct_clipped_at_minus_1024_has_the_same_background():
    """Scanners that clip air at −1024: the spike at the minimum is the air's clipped half."""
    data = np.maximum(ct_head(), -1024)
    marks = volume_landmarks(data)
    assert AIR + 45 < marks.background < FAT - 45, marks
    assert transfer_function(marks).opacity_at(AIR) == 0.0


def test_rician_noise_background_is_transparent():
    data = rician_mr()
    outside = data[:6, :6, :6]
    marks = volume_landmarks(data)
    assert np.percentile(outside, 99.5) < marks.background < 300.0 - 3 * 20.0, marks
    tf = transfer_function(marks)
    assert tf.opacity_at(np.percentile(outside, 99.5)) == 0.0
    assert tf.opacity_at(300.0) > 0.0 and tf.opacity_at(800.0) > tf.opacity_at(300.0)


def test_thresholds_follow_the_data_not_fixed_numbers():
    """Scaling and shifting the image (units, offsets) moves every landmark with it."""
    data = sphere_in_cube()
    marks = volume_landmarks(data)
    moved = volume_landmarks(data * 40.0 - 500.0)
    for name in ("background", "tissue_low", "tissue", "bright", "top"):
        assert getattr(moved, name) == pytest.approx(40.0 * getattr(marks, name) - 500.0, rel=0.02, abs=20.0), name


def test_no_background_class_when_all_is_tissue():
    """A brain-only histogram (grey and white matter, even well apart; no air): nothing is cut
    but the minimum, so the grey matter never becomes "background"."""
    rng = np.random.default_rng(4)
    values = np.sort(np.concatenate([rng.normal(160, 15, 60_000), rng.normal(215, 8, 50_000)]))
    assert background_threshold(values) == values[0]
    assert 160 < otsu_threshold(values) < 215


# -- the demo's T1 and the strided sample -----------------------------------------------------------

def test_demo_t1_background_transparent_brain_visible(demo_manifest):
    from viewer.core.io.study import load_study
    from viewer.core.scene import Scene

    anatomy = Scene(load_study(demo_manifest)).anatomy
    data = np.asarray(anatomy.data)
    marks = volume_landmarks(anatomy.data)
    tf = transfer_function(marks)
    assert tf.opacity_at(0.0) == 0.0, "the demo's zero background is not transparent"
    brain = data[data > 0]
    # grey matter, white matter (the median and the 90th percentile of the brain) and the
    # darkest tenth of the brain (CSF, partial volume) are all visible
    for value in np.percentile(brain, (10, 50, 90)):
        assert tf.opacity_at(value) > 0.0, value
    assert tf.opacity_at(np.percentile(brain, 90)) > tf.opacity_at(np.percentile(brain, 10))
    assert np.mean(tf.opacity_at(brain[::50]) > 0) > 0.99


def test_the_sample_of_a_large_fortran_memmap_is_small(tmp_path):
    shape = (256, 256, 150)  # ≈ 20 MB of int16 on disk
    path = tmp_path / "ct.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.int16, shape=shape, fortran_order=True)
    mm[...] = -1000
    mm[40:-40, 40:-40, 20:-20] = 40
    mm.flush()
    del mm
    data = np.load(path, mmap_mode="r")
    assert data.flags["F_CONTIGUOUS"]
    tracemalloc.start()
    sample = intensity_sample(data, max_samples=200_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sample.size <= 200_000 * 1.1
    assert peak < 0.25 * data.nbytes, f"the sample allocated {peak / 1e6:.1f} MB for a {data.nbytes / 1e6:.1f} MB image"
    assert np.all(np.diff(sample) >= 0)
    marks = landmarks(sample)
    assert -1000 <= marks.background < 40 and transfer_function(marks).opacity_at(40) > 0.0
