"""Real files from installed packages, and independent references to compare our reader with.

Nothing is downloaded at test time: the files ship inside pip packages (pydicom's own test
files, pydicom-data, nibabel's test data) or Debian packages that ``make test`` installs or
unpacks (dicom3tools, mricron-data, heudiconv's test data in ``.cache/debian-data``). A test
that needs a file that is not there is skipped with the install step that brings it.

The references are independent of ``viewer``: dcm2niix (PyPI binary) converts DICOM to NIfTI
and nibabel reads the result; nibabel and SimpleITK read NIfTI files directly.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
_SITE = Path(np.__file__).resolve().parents[1]

PYDICOM_TEST_FILES = _SITE / "pydicom" / "data" / "test_files"
PYDICOM_DATA = _SITE / "data_store" / "data"  # the pydicom-data package
NIBABEL_DATA = _SITE / "nibabel" / "tests" / "data"
NICOM_DATA = _SITE / "nibabel" / "nicom" / "tests" / "data"
DICOM3TOOLS_EXAMPLES = Path("/usr/share/doc/dicom3tools/examples")
MRICRON_TEMPLATES = Path("/usr/share/mricron/templates")
HEUDICONV_DATA = REPO / ".cache" / "debian-data" / "root" / "usr" / "lib" / "python3" / "dist-packages" / "heudiconv" / "tests" / "data"

_WHERE_FROM = {
    PYDICOM_TEST_FILES: "pip install pydicom",
    PYDICOM_DATA: "pip install pydicom-data (make venv)",
    NIBABEL_DATA: "pip install nibabel",
    NICOM_DATA: "pip install nibabel",
    DICOM3TOOLS_EXAMPLES: "apt-get install dicom3tools (make system-packages)",
    MRICRON_TEMPLATES: "apt-get install mricron-data (make system-packages)",
    HEUDICONV_DATA: "make debian-data",
}


def real_file(folder: Path, name: str) -> Path:
    """``folder/name``, or skip the test naming the step that installs it."""
    path = folder / name
    if not path.exists():
        pytest.skip(f"{path} is not installed ({_WHERE_FROM.get(folder, 'see tests/core/real_files.py')})")
    return path


def ungzipped(path: Path, tmp_path: Path) -> Path:
    """A gzipped test file (nibabel ships some DICOM as ``.dcm.gz``) unpacked into tmp_path."""
    if path.suffix != ".gz":
        return path
    target = tmp_path / path.name[:-3]
    with gzip.open(path, "rb") as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out)
    return target


def dcm2niix_binary() -> Path:
    """The dcm2niix executable of the venv (PyPI package ``dcm2niix``)."""
    candidate = Path(sys.executable).parent / "dcm2niix"
    if candidate.exists():
        return candidate
    found = shutil.which("dcm2niix")
    if not found:
        pytest.skip("dcm2niix is not installed (pip install dcm2niix; make venv)")
    return Path(found)


def dcm2niix(source: Path, out_dir: Path) -> list[Path]:
    """Convert a DICOM file or folder with dcm2niix; the NIfTI files it wrote, sorted.

    A single file is copied into a folder of its own first (dcm2niix converts folders).
    """
    if source.is_file():
        folder = out_dir / "in"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / source.name)
        source = folder
    target = out_dir / "nii"
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([str(dcm2niix_binary()), "-z", "n", "-b", "n", "-f", "%s_%e_%j", "-o", str(target),
                             str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return sorted(target.glob("*.nii"))


def corner_voxels(shape: tuple[int, ...]) -> np.ndarray:
    """The 8 corner voxel indices of a 3-D grid, as (8, 3)."""
    return np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)],
                    dtype=float)


def to_world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def assert_same_image(ours_data: np.ndarray, ours_affine: np.ndarray, ref_data: np.ndarray, ref_affine: np.ndarray,
                      *, atol_mm: float = 1e-3, atol_value: float = 0.0, rtol_value: float = 0.0) -> None:
    """Our volume and a reference hold the same voxels at the same world places.

    The grids may differ by flips and transposes (dcm2niix flips the row axis): every
    reference voxel's world position is mapped into our grid, must land on a voxel centre
    (within ``atol_mm``), and the two values must agree. Both grids must cover the same box:
    the set of world corners is compared first.
    """
    ours = np.squeeze(np.asarray(ours_data, dtype=np.float64))
    ref = np.asarray(ref_data, dtype=np.float64)
    while ref.ndim > 3 and ref.shape[-1] == 1:
        ref = ref[..., 0]
    assert ours.size == ref.size, (ours.shape, ref.shape)
    ours_corners = to_world(ours_affine, corner_voxels(ours_data.shape))
    ref_corners = to_world(ref_affine, corner_voxels(ref.shape))
    distances = np.linalg.norm(ours_corners[:, None, :] - ref_corners[None, :, :], axis=2)
    assert distances.min(axis=1).max() < atol_mm, (ours_corners, ref_corners)

    ijk = np.indices(ref.shape).reshape(3, -1).T.astype(float)
    ref_to_ours = np.linalg.inv(ours_affine) @ ref_affine
    mapped = to_world(ref_to_ours, ijk)
    rounded = np.round(mapped)
    spacing = np.linalg.norm(ours_affine[:3, :3], axis=0)
    assert (np.abs(mapped - rounded) * spacing).max() < atol_mm
    idx = rounded.astype(int)
    ours_values = np.asarray(ours_data, dtype=np.float64)[idx[:, 0], idx[:, 1], idx[:, 2]]
    np.testing.assert_allclose(ours_values, ref.reshape(-1), atol=atol_value, rtol=rtol_value)


def assert_matches_nifti(volume, nifti_path: Path, **tolerances) -> None:
    """:func:`assert_same_image` of a :class:`Volume` against a NIfTI read by nibabel."""
    img = nib.load(str(nifti_path))
    assert_same_image(np.asarray(volume.data), volume.voxel_to_world, img.get_fdata(), img.affine, **tolerances)


def simpleitk_image(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(data[i, j, k], RAS voxel→world affine) of a file or DICOM folder read by SimpleITK.

    SimpleITK (GDCM for DICOM) is LPS with arrays ordered [k, j, i]; both are converted here.
    """
    import SimpleITK as sitk

    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path)))
        image = reader.Execute()
    else:
        image = sitk.ReadImage(str(path))
    data = np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return data, np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def assert_matches_simpleitk(volume, path: Path, **tolerances) -> None:
    """:func:`assert_same_image` of a :class:`Volume` against SimpleITK's reading of ``path``."""
    data, affine = simpleitk_image(path)
    assert_same_image(np.asarray(volume.data), volume.voxel_to_world, data, affine, **tolerances)
