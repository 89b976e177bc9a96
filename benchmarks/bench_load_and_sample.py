"""Benchmark: loading the demo study and sampling one view with all layers.

Prints medians over repeated runs and, measured in the same run, the naive baseline of
resampling every overlay's whole volume onto the anatomical grid (what a viewer does when it
puts all layers on one grid before showing them). Budget (issue #2): one view's
``sample_plane`` with all layers ≤ 10 ms median at 512×512, and ≥ 20× faster than the baseline.

Usage: python benchmarks/bench_load_and_sample.py [--study .demo/study] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scipy import ndimage

from timing import median_ms  # benchmarks/ is on sys.path when run as a script
from viewer.core.io.nifti import load_nifti, save_nifti
from viewer.core.io.study import load_study, load_timepoint
from viewer.core.spaces import display_plane, sample_plane
from viewer.core.volume import Volume



def sample_view(layers: list[Volume], orientation: str, point: np.ndarray) -> None:
    """All layers of one view on the anatomical (first) layer's plane."""
    plane = display_plane(layers[0], orientation, point)
    for volume in layers:
        sample_plane(volume, plane, "nearest" if volume.role == "regions" else "linear")


def whole_volume_baseline(anatomy: Volume, overlays: list[Volume]) -> None:
    """Naive: resample each overlay's whole volume onto the anatomical grid (trilinear)."""
    for overlay in overlays:
        to_overlay = overlay.world_to_voxel @ anatomy.voxel_to_world
        ndimage.affine_transform(
            np.asarray(overlay.data, dtype=np.float32), to_overlay[:3, :3], to_overlay[:3, 3],
            output_shape=anatomy.shape, order=1, mode="constant", cval=np.nan, prefilter=False,
        )


def rotation(axis: int, degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    m = np.eye(3)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def grid(shape, spacing, rotate=None, center=(0.0, 0.0, 0.0)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = (rotate if rotate is not None else np.eye(3)) @ np.diag(spacing)
    affine[:3, 3] = np.asarray(center) - affine[:3, :3] @ ((np.array(shape) - 1) / 2.0)
    return affine


def large_anatomy(folder: Path) -> Volume:
    """512×512×300 int16 anatomy at 0.5×0.5×0.6 mm, memory-mapped from an uncompressed .nii."""
    rng = np.random.default_rng(0)
    anatomy_path = folder / "t1.nii"
    save_nifti(rng.integers(0, 1200, (512, 512, 300), dtype=np.int16), anatomy_path, grid((512, 512, 300), (0.5, 0.5, 0.6)))
    return load_nifti(anatomy_path)


def overlays(oblique: bool) -> list[Volume]:
    """¹⁹F (2 mm), PET (2 mm, shifted) and Gd ΔR1 (1.5 mm), each on its own grid.

    ``oblique=False``: overlays share the anatomy's orientation (same-session slice
    prescription, the common case). ``oblique=True``: ¹⁹F rotated about two axes and Gd about
    one, like the demo study.
    """
    rng = np.random.default_rng(1)
    f_rot = rotation(2, 12) @ rotation(0, 8) if oblique else None
    g_rot = rotation(1, -10) if oblique else None
    fluorine = Volume.from_array(rng.random((100, 100, 80), dtype=np.float32), grid((100, 100, 80), (2.0, 2.0, 2.0), f_rot), role="fluorine")
    pet = Volume.from_array(rng.random((128, 128, 90), dtype=np.float32), grid((128, 128, 90), (2.0, 2.0, 2.0), center=(1, -2, 3)), role="pet")
    gd = Volume.from_array(rng.random((160, 160, 110), dtype=np.float32), grid((160, 160, 110), (1.5, 1.5, 1.5), g_rot, center=(0.3, 0.2, -0.4)), role="gd")
    return [fluorine, pet, gd]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=Path(".demo/study"))
    parser.add_argument("--runs", type=int, default=7, help="runs per measurement (≥ 5)")
    parser.add_argument("--steps", type=int, default=21, help="views per orientation for sampling medians")
    args = parser.parse_args()
    runs = max(5, args.runs)
    print(f"runs per figure: {runs}; sampling medians over {args.steps} positions per view")

    if (args.study / "study.toml").exists():
        study = load_study(args.study)
        load_ms = median_ms(lambda: [load_timepoint(study, tp) for tp in study.timepoints], runs)
        print(f"demo: load all {len(study.timepoints)} timepoints (manifest parsed once): {load_ms:8.1f} ms median")
        total_ms = median_ms(lambda: [load_timepoint(s, tp) for s in [load_study(args.study)] for tp in s.timepoints], runs)
        print(f"demo: parse manifest + load all timepoints:                {total_ms:8.1f} ms median")
        volumes = load_timepoint(study, study.timepoints[1 if len(study.timepoints) > 1 else 0])
        layers = list(volumes.values())
        report_sampling("demo", layers, args.steps, runs)
    else:
        print(f"no demo study at {args.study} (run `viewer demo --out {args.study}`); skipping demo figures")

    with tempfile.TemporaryDirectory() as folder:
        anatomy = large_anatomy(Path(folder))
        report_sampling("512x512x300 aligned overlays", [anatomy, *overlays(False)], args.steps, runs)
        report_sampling("512x512x300 oblique overlays", [anatomy, *overlays(True)], args.steps, runs)
        del anatomy
    return 0


def report_sampling(name: str, layers: list[Volume], steps: int, runs: int) -> None:
    anatomy = layers[0]
    shape = " ".join(f"{v.role}{v.shape}" for v in layers)
    print(f"{name}: layers {shape}")
    lo, hi = anatomy.world_bounds()
    worst = 0.0
    for orientation, axis in (("axial", 2), ("coronal", 1), ("sagittal", 0)):
        points = []
        for t in np.linspace(0.3, 0.7, steps):
            point = (lo + hi) / 2
            point[axis] = lo[axis] + t * (hi[axis] - lo[axis])
            points.append(point)
        sample_view(layers, orientation, points[0])  # warm the page cache for this orientation
        times = []
        for point in points:
            start = time.perf_counter()
            sample_view(layers, orientation, point)
            times.append((time.perf_counter() - start) * 1000.0)
        plane = display_plane(anatomy, orientation, points[0])
        median = statistics.median(times)
        worst = max(worst, median)
        print(f"{name}: sample_plane {orientation:8s} {plane.shape[0]}x{plane.shape[1]} all {len(layers)} layers: {median:7.2f} ms median")
    overlays = [v for v in layers[1:] if v.role != "regions"]
    baseline_runs = max(5, runs // 2)
    baseline = median_ms(lambda: whole_volume_baseline(anatomy, overlays), baseline_runs)
    print(f"{name}: baseline whole-volume resampling of {len(overlays)} overlays: {baseline:9.1f} ms median ({baseline_runs} runs)")
    print(f"{name}: slowest view median {worst:.2f} ms; baseline / slowest view = {baseline / worst:,.0f}x")


if __name__ == "__main__":
    sys.exit(main())
