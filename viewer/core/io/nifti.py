"""NIfTI reading and writing through nibabel.

Why these rules:
- nibabel's ``img.affine`` already prefers the sform and falls back to the qform (and to a
  pixdim-only affine when neither code is set, which we note in ``meta``).
- ``np.asanyarray(img.dataobj)`` memory-maps an uncompressed, unscaled ``.nii`` instead of
  copying it (``get_fdata`` would always copy to float64).
- A 4-D file holding a single volume is squeezed; a true 4-D series is refused, because every
  layer of a timepoint is one 3-D map.
- Writes are atomic: a temporary file beside the target, then ``os.replace``.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from viewer.core.errors import ViewerError, file_error
from viewer.core.io.atomic import atomic_path
from viewer.core.volume import Volume

#: |det| of the 3×3 part below which an affine counts as singular (mm³ per voxel).
SINGULAR_AFFINE_DET_MM3 = 1e-9

def is_nifti_path(path: str | Path) -> bool:
    """True when the name ends in ``.nii`` or ``.nii.gz``."""
    name = str(path).lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def has_finite_value(data: np.ndarray) -> bool:
    """True if any voxel is finite; scans slab by slab and stops at the first finite one."""
    if np.issubdtype(data.dtype, np.integer) or data.dtype == bool:
        return data.size > 0
    for k in range(data.shape[-1]):
        if np.isfinite(data[..., k]).any():
            return True
    return False


def check_affine(path: str | Path, affine: np.ndarray) -> None:
    """Refuse an affine that cannot map world points back to voxels."""
    if not np.all(np.isfinite(affine)):
        raise file_error(path, "the voxel-to-world affine contains NaN or infinite values")
    if abs(np.linalg.det(affine[:3, :3])) < SINGULAR_AFFINE_DET_MM3:
        raise file_error(path, "the voxel-to-world affine is singular (not invertible)")


def load_nifti(path: str | Path, role: str = "anatomical", name: str = "") -> Volume:
    """Read one 3-D NIfTI image as a :class:`Volume`.

    Raises:
        ViewerError: the file is missing, unreadable, truncated, not 3-D, has no finite
            voxel, or has a singular affine. The message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise file_error(path, "file not found")
    if path.is_dir():
        raise file_error(path, "is a folder, expected a NIfTI file")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for bad files
        raise file_error(path, f"not a readable NIfTI image ({_short(exc)})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise file_error(path, f"is a {type(img).__name__}, expected NIfTI-1 or NIfTI-2")

    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    elif len(shape) == 4:
        raise file_error(path, f"is 4-D with {shape[3]} volumes; expected a single 3-D volume")
    if len(shape) != 3:
        raise file_error(path, f"has {len(img.shape)} dimensions {tuple(img.shape)}; expected 3-D")
    if min(shape) < 1:
        raise file_error(path, f"has an empty dimension {tuple(img.shape)}")

    affine = np.asarray(img.affine, dtype=np.float64)
    check_affine(path, affine)
    meta: dict[str, object] = {"format": "nifti"}
    sform_code = int(img.header["sform_code"])
    qform_code = int(img.header["qform_code"])
    meta["affine_source"] = "sform" if sform_code > 0 else "qform" if qform_code > 0 else "pixdim"

    try:
        data = np.asanyarray(img.dataobj)
        if data.ndim == 4:
            data = data[..., 0]
        if not has_finite_value(data):
            raise file_error(path, "contains only NaN or infinite values")
    except ViewerError:
        raise
    except Exception as exc:  # truncated gzip stream, short file, bad dtype
        raise file_error(path, f"cannot read the voxel data ({_short(exc)}); the file may be truncated") from None
    return Volume(data, affine, role=role, name=name or _stem(path), source=path, meta=meta)


def save_nifti(volume_or_array: Volume | np.ndarray, path: str | Path, affine: np.ndarray | None = None) -> Path:
    """Write a NIfTI file atomically (temporary file in the same folder, then rename).

    The affine is stored as both sform and qform with code 1 (scanner) so every reader agrees.
    """
    path = Path(path)
    if isinstance(volume_or_array, Volume):
        data = np.asarray(volume_or_array.data)
        affine = volume_or_array.voxel_to_world
    else:
        data = np.asarray(volume_or_array)
        if affine is None:
            raise ValueError("an affine is needed to save a bare array")
    img = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    suffix = ".nii.gz" if str(path).lower().endswith(".gz") else ".nii"
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(img, str(tmp))
    return path


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
