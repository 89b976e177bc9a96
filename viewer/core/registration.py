"""Registering one image to another (PRODUCT.md §9) with SimpleITK, the ITK registration
framework that 3D Slicer's General Registration (BRAINS) and ANTs build on.

What it does, for a *moving* image (a later session's anatomy, or a PET/CT of the same day) and
a *fixed* one (the reference anatomy, or that day's MR):

* both are handed to ITK in their files' own spaces (RAS mm turned into ITK's LPS), as they
  are — nothing is resampled beforehand;
* initialisation by the images' moments (centres of mass and principal axes): it survives the
  large offsets of two sessions, tens of mm;
* Mattes mutual information (works within and across modalities: T1 to T1, PET or CT to MR),
  random sampling of a fraction of the voxels, linear interpolation;
* up to three resolution levels of about 8, 4 and 2 mm voxels (:func:`pyramid`), regular-step
  gradient descent with scales from physical shifts; for ``affine``, a rigid run first, then the affine
  one started from it.

The result is returned as the manifest wants it: a 4×4 RAS transform from the moving image's
world to the fixed image's world, with the similarity (mutual information, higher is better)
before and after.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from viewer.core.errors import ViewerError
from viewer.core.transforms import rotation_degrees, translation_mm
from viewer.core.volume import Volume

METHODS: tuple[str, ...] = ("rigid", "affine")
#: RAS ↔ LPS (ITK's physical space): x and y change sign.
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Fraction of voxels the metric samples per iteration, and the histogram bins of Mattes MI.
SAMPLING = 0.05
#: Most voxels sampled per iteration at any level: 5 % of a 512×512×300 image (3.9 M) made each
#: iteration slow without making the metric any better defined.
MAX_SAMPLES = 150_000
BINS = 40
#: Resolution levels (mm): the images are shrunk to about these voxel sizes, coarse to fine,
#: each smoothed by half its size. The finest is 2 mm: registering the demo's 1 mm T1 there
#: instead of at 1 mm took 7.7 s instead of 18.7 s with a target error of 0.01 mm.
LEVELS_MM = (8.0, 4.0, 2.0)
ITERATIONS = 200
#: Seed of the metric's random sampling: the same images give the same transform.
SEED = 20261202


class RegistrationCancelled(ViewerError):
    """The reader cancelled a registration (nothing was written)."""


@dataclass(frozen=True)
class Registration:
    """What one registration found.

    Attributes:
        transform: 4×4 RAS mm, the moving image's world → the fixed image's world.
        method: "rigid" or "affine".
        similarity_before, similarity_after: mutual information (nats) of the images as they
            were placed before (``initial``) and after; higher is better.
        iterations: optimiser iterations over all levels.
    """

    transform: np.ndarray
    method: str
    similarity_before: float
    similarity_after: float
    iterations: int

    @property
    def improved(self) -> bool:
        return self.similarity_after > self.similarity_before

    @property
    def rotation_deg(self) -> float:
        return rotation_degrees(self.transform)

    @property
    def translation_mm(self) -> float:
        return translation_mm(self.transform)


def _sitk():
    import SimpleITK

    return SimpleITK


def to_itk(volume: Volume):
    """A SimpleITK image of a volume's working copy (:func:`working_copy`) in ITK's LPS
    physical space. Fails on a grid that is not 3-D."""
    sitk = _sitk()
    shape = volume.shape
    if len(shape) != 3 or min(shape) < 4:
        raise ViewerError(f"{volume.source or volume.name}: registration needs a 3-D image of at least 4 voxels a side, "
                          f"got shape {shape}")
    data, working_affine = working_copy(volume)
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    affine = _FLIP @ working_affine
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (affine[:3, :3] / spacing).ravel()])
    image.SetOrigin([float(v) for v in affine[:3, 3]])
    return image


#: Voxel size (mm) the images are block-averaged to before ITK sees them (per axis, by whole
#: factors): registration ends at about 2 mm anyway (:data:`LEVELS_MM`), and with both images
#: finer than that (0.45 × 0.45 × 0.7 mm against 0.5 × 0.5 × 0.8 mm) ITK's pyramid converged to
#: a wrong optimum 8-11 mm away; averaged to about 2 mm first, 0.03 mm in 2-4 s.
WORKING_MM = 2.0


def working_copy(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """The volume's data block-averaged to about :data:`WORKING_MM` per axis (whole factors;
    NaN as 0) and the voxel→world of the averaged grid (its voxel centres are the blocks')."""
    data = np.nan_to_num(np.asarray(volume.data, dtype=np.float32))
    spacing = volume.spacing_mm
    factors = [max(1, int(round(WORKING_MM / s))) if s < WORKING_MM else 1 for s in spacing]
    factors = [min(f, max(1, n // 4)) for f, n in zip(factors, data.shape)]  # keep ≥ 4 voxels a side
    affine = np.asarray(volume.voxel_to_world, dtype=np.float64).copy()
    if all(f == 1 for f in factors):
        return data, affine
    shape = [n // f for n, f in zip(data.shape, factors)]
    cropped = data[:shape[0] * factors[0], :shape[1] * factors[1], :shape[2] * factors[2]]
    blocks = cropped.reshape(shape[0], factors[0], shape[1], factors[1], shape[2], factors[2]).mean(axis=(1, 3, 5))
    affine[:3, 3] = affine[:3, :3] @ ((np.array(factors) - 1) / 2.0) + affine[:3, 3]
    affine[:3, :3] = affine[:3, :3] @ np.diag(factors)
    return blocks.astype(np.float32), affine


def _matrix_of(transform) -> np.ndarray:
    """The 4×4 LPS matrix of an ITK transform (any affine one, composite included), from the
    images of four points (exact for affine maps)."""
    points = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [0.0, 100.0, 0.0], [0.0, 0.0, 100.0]])
    mapped = np.array([transform.TransformPoint([float(v) for v in p]) for p in points])
    matrix = np.eye(4)
    matrix[:3, :3] = (mapped[1:] - mapped[0]).T / 100.0
    matrix[:3, 3] = mapped[0]
    return matrix


def pyramid(spacing: tuple[float, ...]) -> tuple[list[int], list[float]]:
    """Shrink factors and smoothing sigmas (mm) giving voxels of about :data:`LEVELS_MM` on a
    grid of ``spacing`` (mm): a coarse image starts finer and gets fewer distinct levels."""
    finest = max(min(float(s) for s in spacing), 1e-6)
    shrink: list[int] = []
    for size in LEVELS_MM:
        factor = max(1, int(round(size / finest)))
        if not shrink or factor < shrink[-1]:
            shrink.append(factor)
    return shrink, [0.5 * factor * finest if factor > 1 else 0.0 for factor in shrink]


def _method(sitk, fixed, moving, transform, progress: Callable[[str, int, int], None], label: str,
            should_stop: Callable[[], bool] = lambda: False):
    registration = sitk.ImageRegistrationMethod()
    registration.SetMetricAsMattesMutualInformation(numberOfHistogramBins=BINS)
    registration.SetMetricSamplingStrategy(registration.RANDOM)
    shrink, smoothing = pyramid(fixed.GetSpacing())
    voxels = [float(np.prod([max(1, n // factor) for n in fixed.GetSize()])) for factor in shrink]
    registration.SetMetricSamplingPercentagePerLevel([min(SAMPLING, MAX_SAMPLES / v) for v in voxels], SEED)
    registration.SetInterpolator(sitk.sitkLinear)
    registration.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-4,
                                                          numberOfIterations=ITERATIONS,
                                                          gradientMagnitudeTolerance=1e-8)
    registration.SetOptimizerScalesFromPhysicalShift()
    registration.SetShrinkFactorsPerLevel(shrink)
    registration.SetSmoothingSigmasPerLevel(smoothing)
    registration.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    registration.SetInitialTransform(transform, inPlace=False)
    counter = {"iterations": 0, "level": 0}

    def on_iteration() -> None:
        counter["iterations"] += 1
        if should_stop():
            registration.Abort()  # ITK stops at the end of this iteration
        done = registration.GetCurrentLevel() * ITERATIONS + registration.GetOptimizerIteration()
        progress(label, min(done, len(shrink) * ITERATIONS), len(shrink) * ITERATIONS)

    registration.AddCommand(sitk.sitkIterationEvent, on_iteration)
    return registration, counter


def _itk_transform(sitk, moving_to_fixed: np.ndarray | None):
    """The ITK transform (fixed LPS points → moving LPS points) of a RAS moving→fixed map."""
    matrix = np.eye(4) if moving_to_fixed is None else np.asarray(moving_to_fixed, dtype=np.float64)
    lps = _FLIP @ np.linalg.inv(matrix) @ _FLIP
    affine = sitk.AffineTransform(3)
    affine.SetMatrix([float(v) for v in lps[:3, :3].ravel()])
    affine.SetTranslation([float(v) for v in lps[:3, 3]])
    return affine


def _similarity(sitk, fixed, moving, transform) -> float:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=BINS)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(min(1.0, 4 * SAMPLING), SEED)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetInitialTransform(transform)
    try:
        return -float(method.MetricEvaluate(fixed, moving))
    except RuntimeError:  # no overlap at all (ITK: "too many samples map outside")
        return 0.0


def register(fixed_volume: Volume, moving_volume: Volume, method: str = "rigid",
             initial: np.ndarray | None = None,
             progress: Callable[[str, int, int], None] = lambda stage, done, total: None,
             should_stop: Callable[[], bool] = lambda: False) -> Registration:
    """Register ``moving_volume`` to ``fixed_volume`` (see the module's notes).

    Args:
        initial: the moving→fixed placement to compare against (the manifest's current
            transform; None: as the images lie). The optimisation itself starts from the
            images' moments, which survives any plausible offset.
        progress: called with (stage, iterations done, at most) while it runs.
        should_stop: polled at every iteration; True stops it (:class:`RegistrationCancelled`).

    Raises:
        ViewerError: an unknown method, an image that is not 3-D, or an optimisation ITK
            could not run (no overlap of the images, a constant image).
    """
    if method not in METHODS:
        raise ViewerError(f"registration method must be one of {', '.join(METHODS)}, got {method!r}")
    sitk = _sitk()
    fixed, moving = to_itk(fixed_volume), to_itk(moving_volume)
    for name, image in (("fixed", fixed), ("moving", moving)):
        statistics = sitk.StatisticsImageFilter()
        statistics.Execute(image)
        if statistics.GetVariance() <= 0:
            raise ViewerError(f"the {name} image is constant: there is nothing to register")
    before = _similarity(sitk, fixed, moving, _itk_transform(sitk, initial))
    try:
        start = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                  sitk.CenteredTransformInitializerFilter.MOMENTS)
        runner, counter = _method(sitk, fixed, moving, start, progress, "rigid", should_stop)
        found = runner.Execute(fixed, moving)
        if should_stop():
            raise RegistrationCancelled("registration cancelled: nothing was written")
        iterations = counter["iterations"]
        if method == "affine":
            rigid = sitk.CompositeTransform(found).GetBackTransform() if found.GetName() == "CompositeTransform" else found
            affine = sitk.AffineTransform(3)
            euler = sitk.Euler3DTransform(rigid)
            affine.SetMatrix(euler.GetMatrix())
            affine.SetTranslation(euler.GetTranslation())
            affine.SetCenter(euler.GetCenter())
            runner, counter = _method(sitk, fixed, moving, affine, progress, "affine", should_stop)
            found = runner.Execute(fixed, moving)
            if should_stop():
                raise RegistrationCancelled("registration cancelled: nothing was written")
            iterations += counter["iterations"]
    except RuntimeError as exc:
        if should_stop():
            raise RegistrationCancelled("registration cancelled: nothing was written") from None
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ViewerError(f"registration failed: {first}") from None
    lps = _matrix_of(found)  # fixed LPS point → moving LPS point
    moving_to_fixed = np.linalg.inv(_FLIP @ lps @ _FLIP)
    after = _similarity(sitk, fixed, moving, _itk_transform(sitk, moving_to_fixed))
    return Registration(moving_to_fixed, method, before, after, iterations)
