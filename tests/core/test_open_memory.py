"""Opening a study copies none of its large volumes (issue 19: memory after opening the
512×512×300 study ≤ 1.3× its size).

An uncompressed anatomy and label map are memory-mapped; what the window does before the
statistics — the scene (levels, the ¹⁹F focus and its calibration mask), the anatomy's extent,
and the first frame of the three views — may allocate bounded samples and planes, never a copy
or a whole-volume mask of either map. The sampling kernels are loaded first, as the window does
at start-up, and the second opening is measured, so loading them and the modules the first
opening imported are not counted.
"""

from __future__ import annotations

import tracemalloc

import numpy as np

from tests.core.phantoms import centered_affine, rotation
from viewer.core.io.nifti import save_nifti
from viewer.core.io.study import open_path, write_manifest
from viewer.core.plane_kernels import warm_up
from viewer.core.render import composite_layers, sample_layers
from viewer.core.scene import Scene

#: 41 MB of int16. A copy of it, of the 20 MB uint8 label map, or a boolean mask of either
#: (0.5× the anatomy's bytes) is above the bound; the levels' strided sample (0.8 M voxels) and
#: the three views' planes and colours (~6 MB at the peak, compositing a 320×320 plane) below.
ANATOMY_SHAPE = (320, 320, 200)
#: Peak Python-traced allocation allowed while opening, as a fraction of the anatomy's bytes.
PEAK_FRACTION = 0.4


def _large_study(root):
    affine = centered_affine(ANATOMY_SHAPE, (0.6, 0.6, 0.8), (0, 0, 0))
    i, j, k = np.ogrid[: ANATOMY_SHAPE[0], : ANATOMY_SHAPE[1], : ANATOMY_SHAPE[2]]
    centre = [(n - 1) / 2 for n in ANATOMY_SHAPE]
    head = ((i - centre[0]) / 140) ** 2 + ((j - centre[1]) / 145) ** 2 + ((k - centre[2]) / 90) ** 2 < 1
    rng = np.random.default_rng(0)
    anatomy = np.where(head, 600, 0).astype(np.int16) + rng.integers(0, 200, ANATOMY_SHAPE, dtype=np.int16)
    save_nifti(anatomy, root / "t1.nii", affine)
    labels = np.zeros(ANATOMY_SHAPE, np.uint8)
    labels[((i - 190) / 25) ** 2 + ((j - 160) / 25) ** 2 + ((k - 100) / 20) ** 2 < 1] = 1
    labels[((i - 130) / 10) ** 2 + ((j - 160) / 10) ** 2 + ((k - 100) / 10) ** 2 < 1] = 2
    save_nifti(labels, root / "regions.nii", affine)
    f_shape = (48, 48, 40)
    f_affine = centered_affine(f_shape, (4, 4, 4), (0, 0, 0), rotate=rotation("z", 12))
    save_nifti(rng.rayleigh(1.0, f_shape).astype(np.float32), root / "f19.nii.gz", f_affine)
    timepoint = {"label": "day 7", "day": 7, "anatomical": "t1.nii", "fluorine": "f19.nii.gz", "regions": "regions.nii",
                 "region_names": {1: "penumbra", 2: "core"}}
    return write_manifest({"study": {"id": "open-memory"}, "timepoint": [timepoint]}, root / "study.toml")


def _open_and_draw(manifest) -> Scene:
    scene = Scene(open_path(manifest))
    scene.anatomy_extent()
    for orientation in ("axial", "coronal", "sagittal"):
        plane = scene.plane(orientation)
        layers = scene.slice_layers(plane)
        composite_layers(layers, sample_layers(layers, plane), plane.shape)
    scene.readout()
    return scene


def test_opening_a_memory_mapped_study_allocates_no_whole_volume(tmp_path):
    manifest = _large_study(tmp_path)
    warm_up()
    first = _open_and_draw(manifest)
    for role in ("anatomical", "regions"):  # the premise: both maps are read from the files in place
        assert np.asarray(first.volumes[role].data).base is not None, role
        assert not np.asarray(first.volumes[role].data).flags.owndata, role
    del first
    anatomy_bytes = int(np.prod(ANATOMY_SHAPE)) * 2
    tracemalloc.start()
    try:
        scene = _open_and_draw(manifest)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert scene.display["anatomical"].levels[1] > 600  # it did open and choose levels
    assert peak < PEAK_FRACTION * anatomy_bytes, (
        f"opening allocated {peak / 1e6:.1f} MB at its peak for a {anatomy_bytes / 1e6:.0f} MB anatomy")
