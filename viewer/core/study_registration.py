"""`viewer register` (PRODUCT.md §9): each later timepoint's anatomy registered to the reference
anatomy, or one image to its timepoint's anatomy, and the transforms written into the manifest.

Images are read from their files as they are (their own scanner spaces), so a registration
never depends on the transforms the manifest held before; those are only the "before" the
similarity is compared with. A registration whose similarity did not improve is not written,
and says so. All transforms found are written in one atomic rewrite of the manifest (comments
are lost, as with every rewrite: :mod:`viewer.core.io.manifest_edit`); on any error nothing is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from viewer.core.errors import ViewerError
from viewer.core.io.manifest_edit import write_transforms
from viewer.core.io.study import Study, Timepoint, load_image, load_study, placed
from viewer.core.registration import Registration, register
from viewer.core.transforms import as_list, compose
from viewer.core.volume import Volume


@dataclass(frozen=True)
class RegisteredItem:
    """One registration of a study: which timepoint (and image), what was found, written?"""

    timepoint: str
    role: str  # "anatomical": the timepoint to the reference; else that image to its anatomy
    result: Registration
    written: bool

    def line(self) -> str:
        what = self.timepoint if self.role == "anatomical" else f"{self.timepoint} {self.role}"
        verdict = "written" if self.written else "NOT written: the similarity did not improve"
        return (f"{what}: {self.result.method}, rotation {self.result.rotation_deg:.2f}°, translation "
                f"{self.result.translation_mm:.2f} mm, mutual information {self.result.similarity_before:.3f} → "
                f"{self.result.similarity_after:.3f}; {verdict}")


def _file_volume(timepoint: Timepoint, role: str) -> Volume:
    if role not in timepoint.images:
        raise ViewerError(f"timepoint {timepoint.label!r} has no {role!r} image to register")
    return load_image(timepoint.images[role], role, f"{timepoint.label} {role}")


def register_study(manifest: str | Path, timepoint: str | None = None, image: str | None = None,
                   method: str = "rigid",
                   progress: Callable[[str, int, int], None] = lambda stage, done, total: None,
                   should_stop: Callable[[], bool] = lambda: False, lock: bool = True) -> list[RegisteredItem]:
    """Register and write (see the module's notes); returns what each registration found.

    Args:
        timepoint: only this timepoint (default: every timepoint after the reference).
        image: register this role of the timepoint(s) to their own anatomy instead
            (``image_transforms.ROLE``; e.g. a PET/CT to the day's MR).
        should_stop: polled while registering; True cancels everything (nothing written).
        lock: take the study's lock to write (False: the caller holds it, as the window does).

    Raises:
        ViewerError: no such timepoint or image, the reference asked to move, an image that
            is not 3-D, an optimisation that fails, or a manifest that cannot be written;
            then the manifest is unchanged.
    """
    study = load_study(manifest)
    reference = study.timepoints[0]
    if timepoint is not None:
        chosen = [study.timepoint(timepoint)]
    else:
        chosen = list(study.timepoints if image is not None else study.timepoints[1:])
        if not chosen:
            raise ViewerError(f"{study.manifest}: one timepoint only: there is nothing to register it to")
    if image == "anatomical":
        raise ViewerError("--image names an image other than the anatomy (the anatomy is registered without --image)")
    if image is None and any(tp.label == reference.label for tp in chosen):
        raise ViewerError(f"timepoint {reference.label!r} is the reference: the others are registered to it")
    items: list[RegisteredItem] = []
    fixed_reference = placed(_file_volume(reference, "anatomical"), reference.transform) if image is None else None
    for tp in chosen:
        if image is None:
            fixed, moving, initial = fixed_reference, _file_volume(tp, "anatomical"), tp.transform
        else:
            fixed, moving, initial = _file_volume(tp, "anatomical"), _file_volume(tp, image), tp.world_from_image(image)
        stage = tp.label if image is None else f"{tp.label} {image}"
        result = register(fixed, moving, method, initial=initial, should_stop=should_stop,
                          progress=lambda part, done, total, s=stage: progress(f"{s} {part}", done, total))
        items.append(RegisteredItem(tp.label, image or "anatomical", result, result.improved))
    if lock and study.manifest is not None and any(item.written for item in items):
        from viewer.core.io.study_lock import StudyLock

        held = StudyLock.acquire(study.manifest)  # another session editing the study: StudyLocked
        try:
            _write(study, items)
        finally:
            held.release()
    else:
        _write(study, items)
    return items


def _write(study: Study, items: list[RegisteredItem]) -> None:
    """Every improved transform into the manifest, in one validated atomic rewrite."""
    written = [item for item in items if item.written]
    if not written or study.manifest is None:
        return
    write_transforms(study.manifest, [(item.timepoint, None if item.role == "anatomical" else item.role,
                                       as_list(item.result.transform)) for item in written])


def target_errors(found: np.ndarray, truth: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distances (mm) between where two transforms send each point (target registration
    error, for tests and benchmarks)."""
    homogeneous = np.c_[np.asarray(points, float), np.ones(len(points))]
    return np.linalg.norm((compose(found) @ homogeneous.T - compose(truth) @ homogeneous.T)[:3], axis=0)
