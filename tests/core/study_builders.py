"""Small studies written to disk for CLI and loader tests (fast: tiny grids)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.core.phantoms import MARKER_WORLD, blob_function, centered_affine, rotation, world_grid
from viewer.core.io.nifti import save_nifti
from viewer.core.io.study import write_manifest


def write_small_study(root: Path, *, with_regions: bool = True) -> Path:
    """A one-timepoint study: 1 mm anatomy, rotated 2 mm ¹⁹F with a hotspot, 2 mm PET, regions."""
    root.mkdir(parents=True, exist_ok=True)
    anat_shape = (60, 64, 48)
    anat_affine = centered_affine(anat_shape, (1, 1, 1), (0, 0, 0))
    save_nifti(blob_function(world_grid(anat_shape, anat_affine)).astype(np.float32), root / "t1.nii", anat_affine)

    f_shape = (30, 30, 24)
    f_affine = centered_affine(f_shape, (2, 2, 2), (0, 0, 0), rotate=rotation("z", 12) @ rotation("x", 8))
    f_world = world_grid(f_shape, f_affine)
    rng = np.random.default_rng(0)
    signal = np.where(np.linalg.norm(f_world - MARKER_WORLD, axis=-1) < 4, 60.0, 0.0)
    noise = rng.normal(0, 1, (2, *f_shape))
    fluorine = np.hypot(signal + noise[0], noise[1]).astype(np.float32)
    save_nifti(fluorine, root / "f19.nii.gz", f_affine)

    p_shape = (30, 32, 24)
    p_affine = centered_affine(p_shape, (2, 2, 2), (1, -1, 0.5))
    save_nifti((blob_function(world_grid(p_shape, p_affine)) / 50).astype(np.float32), root / "pet.nii.gz", p_affine)

    timepoint = {"label": "day 7", "day": 7, "anatomical": "t1.nii", "fluorine": "f19.nii.gz", "pet": "pet.nii.gz", "pet_units": "SUV"}
    if with_regions:
        labels = np.zeros(anat_shape, np.int16)
        distance = np.linalg.norm(world_grid(anat_shape, anat_affine) - MARKER_WORLD, axis=-1)
        labels[distance < 6] = 1
        labels[(distance >= 6) & (distance < 10)] = 2
        save_nifti(labels, root / "regions.nii.gz", anat_affine)
        timepoint["regions"] = "regions.nii.gz"
        timepoint["region_names"] = {1: "core", 2: "penumbra"}
    manifest = {
        "study": {"id": "small-001", "patient": "Test^Patient", "condition": "test"},
        "calibration": {"fluorine_atoms_per_cell": 1.0e12, "reference_fluorine_mM": 20.0},
        "timepoint": [timepoint],
    }
    return write_manifest(manifest, root / "study.toml")
