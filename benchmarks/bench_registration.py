"""Benchmark `viewer register`'s registration (issue 16: ≤ 10 s per timepoint at the demo size on
this 2-core machine), at the demo's size (the 1 mm MNI T1, 197×233×189) and at 512×512×300.

Each run registers the template to a copy of itself moved by a known rigid transform onto
another grid (made with scipy, outside the timing) and prints the time and the target
registration error. The reference measured in the same run, interleaved: SimpleITK's own
single-resolution rigid registration of the same pair (the same ~2 mm working copies, Mattes
MI, the same sampling and optimiser, no pyramid) — what the library costs without our
multi-resolution set-up.

Usage: python benchmarks/bench_registration.py [--runs 3] [--big]
"""

from __future__ import annotations

import argparse
import statistics
import time

import nibabel as nib
import numpy as np
from scipy import ndimage

from viewer.core import registration
from viewer.core.resources import resource_path
from viewer.core.study_registration import target_errors
from viewer.core.transforms import rigid
from viewer.core.volume import Volume

MOVED = rigid((9.0, -6.0, 13.0), (7.0, -11.0, 16.0), center=(10.0, 0.0, 5.0))
POINTS = np.array([[x, y, z] for x in (-50, 0, 50) for y in (-70, -10, 50) for z in (-30, 10, 50)], float)


def _template() -> tuple[np.ndarray, np.ndarray]:
    image = nib.load(resource_path("anatomy", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"))
    return np.asarray(image.dataobj, np.float32), image.affine


def _scan(data, data_affine, shape, spacing, moved) -> Volume:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) * np.array(spacing) / 2 + (0.0, -18.0, 10.0)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3).astype(np.float32)
    world = ijk @ affine[:3, :3].T.astype(np.float32) + affine[:3, 3].astype(np.float32)
    reference = world @ moved[:3, :3].T.astype(np.float32) + moved[:3, 3].astype(np.float32)
    voxels = (np.c_[reference, np.ones(len(reference), np.float32)] @ np.linalg.inv(data_affine).T.astype(np.float32))[:, :3]
    values = ndimage.map_coordinates(data, voxels.T, order=1, cval=0.0).reshape(shape).astype(np.float32)
    return Volume.from_array(values, affine, role="anatomical")


def single_resolution_seconds(fixed: Volume, moving: Volume) -> float:
    """SimpleITK's plain rigid registration of the pair: one level, same metric and optimiser."""
    import SimpleITK as sitk

    a, b = registration.to_itk(fixed), registration.to_itk(moving)
    start = time.perf_counter()
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=registration.BINS)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(registration.SAMPLING, registration.SEED)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(2.0, 1e-4, registration.ITERATIONS)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetInitialTransform(sitk.CenteredTransformInitializer(a, b, sitk.Euler3DTransform(),
                                                                 sitk.CenteredTransformInitializerFilter.MOMENTS))
    method.Execute(a, b)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big", action="store_true", help="also 512×512×300 (slow to build)")
    args = parser.parse_args()
    data, data_affine = _template()
    sizes = [("demo 197x233x189 @1 mm", data.shape, (1.0, 1.0, 1.0))]
    if args.big:
        sizes.append(("512x512x300 @0.45x0.45x0.7 mm", (512, 512, 300), (0.45, 0.45, 0.7)))
    for name, shape, spacing in sizes:
        fixed = _scan(data, data_affine, shape, spacing, np.eye(4))
        moving = _scan(data, data_affine, tuple(int(n * 0.9) for n in shape), tuple(s * 1.1 for s in spacing), MOVED)
        ours, floor, errors = [], [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            found = registration.register(fixed, moving, "rigid")
            ours.append(time.perf_counter() - start)
            errors.append(float(target_errors(found.transform, MOVED, POINTS).max()))
            floor.append(single_resolution_seconds(fixed, moving))
        print(f"{name}: viewer register (rigid, 3 levels) {statistics.median(ours):.2f} s median of {args.runs}, "
              f"TRE max {max(errors):.2f} mm; SimpleITK single-resolution {statistics.median(floor):.2f} s; "
              f"ratio {statistics.median(ours) / statistics.median(floor):.2f}x")


if __name__ == "__main__":
    main()
