"""NIfTI reading and writing through nibabel.

Why these rules:
- nibabel's ``img.affine`` already prefers the sform and falls back to the qform (and to a
  pixdim-only affine when neither code is set, which we note in ``meta``).
- ``np.asanyarray(img.dataobj)`` memory-maps an uncompressed, unscaled ``.nii`` instead of
  copying it (``get_fdata`` would always copy to float64).
- A 4-D file holding a single volume is squeezed; a true 4-D series is refused, because every
  layer of a timepoint is one 3-D map.
- Voxels are made usable once, at load (:func:`supported_voxels`), so the plane kernels
  (numba compiles them per dtype and has no ``float16``, no long double and no non-native
  byte order), quantification (float32/float64 arithmetic) and label maps (``int32`` on
  other grids) never meet a dtype they cannot take. The rule, by stored dtype:

  - native ``uint8 int8 uint16 int16 uint32 int32 float32 float64``: kept as they are; an
    uncompressed, unscaled file stays memory-mapped (a 150 MB ``.nii`` is not copied at open);
  - non-native byte order (big-endian files on a little-endian machine): the same dtype in
    native order — one copy, unavoidable, since numba cannot read swapped bytes;
  - ``bool`` → ``uint8`` (numpy refuses ``bool - bool``; a mask stays an integer map);
  - ``float16`` → ``float32`` and long double → ``float64`` (numba has neither; float16 →
    float32 is exact, long double → float64 rounds to double precision). NIfTI has no
    bool or float16 code and nibabel refuses FLOAT128 on x86, so these three only reach
    :func:`supported_voxels` from arrays other readers hand it;
  - ``int64``/``uint64`` → ``int32`` when every value fits (exact, half the memory, and
    label maps stay integer), else ``float64`` when every |value| ≤ 2**53 (exact); larger
    values are refused, since no supported type would hold them exactly;
  - complex (``complex64/128``) and colour (``RGB24``/``RGBA32``, structured) voxels are
    refused with one line: every layer is one real-valued map, and choosing magnitude, phase
    or a colour channel for the user would load the file wrongly.

  Scaled files (``scl_slope``/``scl_inter``) are scaled by nibabel to float before this rule.
- A header without an sform (geometry from the qform or pixdim alone) whose voxel size
  ``pixdim[1..3]`` holds a 0 is refused: nibabel "repairs" it to 1 mm on load, an invented
  voxel size that would make every volume and every mm wrong.
- A single-file NIfTI (magic ``n+1``/``n+2``) whose ``vox_offset`` points inside its own header
  (below 352 bytes for NIfTI-1, 544 for NIfTI-2: the header plus the 4-byte extension flag) is
  refused: nibabel would read the header bytes as voxels, a plausible-looking wrong image.
- Writes are atomic: a temporary file beside the target, then ``os.replace``.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from viewer.core.errors import ViewerError, file_error
from viewer.core.io.atomic import atomic_path
from viewer.core.io.levels_cache import file_identity
from viewer.core.volume import FILE_IDENTITY, Volume

#: |det| of the 3×3 part below which an affine counts as singular (mm³ per voxel).
SINGULAR_AFFINE_DET_MM3 = 1e-9

#: Largest integer magnitude float64 holds exactly (53-bit significand).
FLOAT64_EXACT_INT_LIMIT = 2**53

#: Float dtypes numba cannot compile the kernels for, and the float each becomes.
_WIDENED_FLOATS: dict[np.dtype, np.dtype] = {np.dtype(np.float16): np.dtype(np.float32)}
if np.dtype(np.longdouble).itemsize > 8:  # x86 long double; on some platforms it is float64
    _WIDENED_FLOATS[np.dtype(np.longdouble)] = np.dtype(np.float64)

#: Smallest vox_offset of a single-file NIfTI (header + extension flag, bytes), by magic.
_SINGLE_FILE_FIRST_VOXEL_BYTE = {b"n+1": 352, b"n+2": 544}

#: NIfTI datatype codes of colour voxels and their names in nifti1.h.
_NIFTI_COLOUR_TYPES = {128: "NIFTI_TYPE_RGB24", 2304: "NIFTI_TYPE_RGBA32"}

#: What to load instead of data that is not one real value per voxel.
_MULTI_VALUE_ADVICE = {
    "c": ("holds complex values", "load the magnitude image"),
    "V": ("holds colour (multi-channel) voxels", "load a single-channel (grey-scale) image"),
}


def _only_when_debugging(record: logging.LogRecord) -> bool:
    """nibabel logs header problems to stderr through its own handler ('nibabel.global', e.g.
    "vox offset 100 too low …") and then raises or fixes them; the viewer reports the problem
    in its one error line, so the log line is shown only with VIEWER_DEBUG (PRODUCT.md §7)."""
    return bool(os.environ.get("VIEWER_DEBUG"))


logging.getLogger("nibabel.global").addFilter(_only_when_debugging)


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
    identity = file_identity(path)  # before reading: a file changed meanwhile gets another identity
    img, affine, meta = _checked_header(path)
    if identity is not None:
        meta[FILE_IDENTITY] = identity  # until the voxels are edited (viewer.core.io.levels_cache)
    try:
        data = _voxels(path, img)
        if data.ndim == 4:
            data = data[..., 0]
        data = supported_voxels(path, data)
        if not has_finite_value(data):
            raise file_error(path, "contains only NaN or infinite values")
    except ViewerError:
        raise
    except Exception as exc:  # truncated gzip stream, short file, bad dtype
        raise file_error(path, f"cannot read the voxel data ({_short(exc)}); the file may be truncated") from None
    return Volume(data, affine, role=role, name=name or _stem(path), source=path, meta=meta)


def check_nifti_header(path: str | Path) -> None:
    """Every check :func:`load_nifti` makes before it reads the voxels (the file, its header,
    dimensions, voxel type and affine), reading the header only: what a command that does not
    draw an image still verifies about it.

    Raises:
        ViewerError: as :func:`load_nifti`, for any problem found in the header.
    """
    _checked_header(Path(path))


def _checked_header(path: Path) -> tuple[nib.Nifti1Image, np.ndarray, dict[str, object]]:
    """The opened image (voxels not read), its voxel→world affine and the facts for
    ``Volume.meta``, once the header passed every check."""
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
    refuse_multi_value(path, img.get_data_dtype(), _datatype_label(img))
    refuse_offset_inside_header(path, img.header, getattr(img.dataobj, "offset", None))
    refuse_zero_voxel_size(path, img)

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
    meta["stored_dtype"] = img.get_data_dtype().str
    return img, affine, meta


def _voxels(path: Path, img: nib.Nifti1Image) -> np.ndarray:
    """The image's voxels as nibabel scales them. A gzipped file is inflated by ISA-L (2.2×
    zlib's speed); if that fails for any reason (a truncated or damaged stream), nibabel reads
    the file itself, so its error is the one reported."""
    if path.suffix.lower() == ".gz":
        try:
            return _inflated_voxels(path, img)
        except Exception:  # the file is read again the usual way, which names the problem
            pass
    return np.asanyarray(img.dataobj)


def _inflated_voxels(path: Path, img: nib.Nifti1Image) -> np.ndarray:
    """A gzipped image's voxels inflated by ISA-L. Without scaling (slope 1, intercept 0:
    nibabel returns the stored values as they are) the stream is inflated straight into the
    array (:func:`_read_into`), one pass over fresh memory instead of three (the inflated bytes,
    then nibabel's copy of them: 6400 page faults for the demo's 8.7 MB label map). With scaling
    nibabel reads and scales the inflated bytes."""
    from isal import igzip

    proxy = img.dataobj
    if float(proxy.slope) == 1.0 and float(proxy.inter) == 0.0:
        data = np.empty(img.shape, dtype=img.get_data_dtype(), order="F")
        with igzip.open(path, "rb") as stream:
            stream.seek(int(proxy.offset))
            read = _read_into(stream, memoryview(data.reshape(-1, order="F").view(np.uint8)))
        if read != data.nbytes:
            raise OSError(f"expected {data.nbytes} bytes of voxels, got {read}")
        return data
    return np.asanyarray(type(img).from_bytes(igzip.decompress(path.read_bytes())).dataobj)


def _read_into(stream: Any, target: memoryview) -> int:
    """Inflate ``stream`` (an ISA-L gzip file) into ``target``; the bytes read.

    The gzip file's own ``readinto`` (io.BufferedIOBase's) inflates into a new bytes object of
    the whole size and copies it; its buffered reader (``_buffer``, as in the standard
    library's GzipFile) inflates straight into ``target``: 6.2 instead of 7.7 ms for the demo's
    2.9 MB ¹⁹F map, 2.0 instead of 6.5 ms for its 8.7 MB region map. Without that reader (another
    ISA-L version), the public way."""
    reader = getattr(stream, "_buffer", None)
    if isinstance(reader, io.BufferedReader):
        return reader.readinto(target)
    return stream.readinto(target)


def refuse_offset_inside_header(path: str | Path, header: nib.Nifti1Header, offset: float | None) -> None:
    """Refuse a single-file NIfTI whose voxels would start inside its header.

    ``offset`` is the byte the voxels are read from (the loaded image's ``dataobj.offset``,
    i.e. the file's vox_offset: nibabel resets ``header["vox_offset"]`` once loaded).
    """
    magic = bytes(np.asarray(header["magic"]).tobytes()).rstrip(b"\x00")
    first = _SINGLE_FILE_FIRST_VOXEL_BYTE.get(magic)
    if first is None or offset is None:
        return  # a header/image pair (ni1): the voxels are in the .img file from byte vox_offset
    offset = float(offset)
    if not offset >= first:  # also NaN
        raise file_error(path, f"vox_offset {offset:g} lies inside the NIfTI header (a single-file "
                               f"{magic.decode('ascii', 'replace')} image stores voxels from byte {first} on): "
                               "the voxels would be read from the header; the file is damaged")


def refuse_zero_voxel_size(path: str | Path, img: nib.Nifti1Image) -> None:
    """Refuse a 0 in the stored pixdim[1..3] when no sform gives the geometry.

    The loaded header is already repaired by nibabel (0 → 1), so the stored header is read
    again without nibabel's checks (the first bytes of the file only).
    """
    if int(img.header["sform_code"]) > 0:
        return  # the sform carries the voxel size; pixdim is not used
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(str(path)) as stream:
            stored = type(img.header).from_fileobj(stream, check=False)
    except Exception:  # unreadable the second time: the first read succeeded, keep its result
        return
    zooms = np.asarray(stored["pixdim"][1:4], dtype=np.float64)
    zero = [i + 1 for i, z in enumerate(zooms) if z == 0]
    if zero:
        raise file_error(path, f"pixdim[{zero[0]}] (the voxel size) is 0 and there is no sform: the voxel size is "
                               "unknown (nibabel would invent 1 mm)")


def refuse_multi_value(path: str | Path, dtype: np.dtype, label: str = "") -> None:
    """Refuse complex and colour (structured) voxels with one line naming the file and why.

    ``label`` names a colour datatype as the file's header does (``NIFTI_TYPE_RGB24``);
    numpy's structured dtype has no readable name.
    """
    dtype = np.dtype(dtype)
    kind = "V" if dtype.fields is not None else dtype.kind
    if kind not in _MULTI_VALUE_ADVICE:
        return
    what, advice = _MULTI_VALUE_ADVICE[kind]
    name = dtype.name if kind == "c" else (label or "structured")
    raise file_error(path, f"{what} ({name}); {advice}")


def supported_voxels(path: str | Path, data: np.ndarray) -> np.ndarray:
    """``data`` in a dtype the plane kernels and quantification take (rule: module docstring).

    Returns ``data`` itself — a memory map stays a memory map — when it already is one; else
    one converted copy. Raises ViewerError for complex, colour or inexactly representable data.
    """
    refuse_multi_value(path, data.dtype)
    target = _supported_dtype(path, data)
    if target == data.dtype:
        return data
    return np.asarray(data).astype(target)  # a plain array: the copy is in memory, not mapped


def _supported_dtype(path: str | Path, data: np.ndarray) -> np.dtype:
    """The native dtype ``data`` is loaded as (may read the data once for int64/uint64)."""
    dtype = data.dtype.newbyteorder("=")
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    if dtype in _WIDENED_FLOATS:
        return _WIDENED_FLOATS[dtype]
    if dtype in (np.dtype(np.int64), np.dtype(np.uint64)):
        return _dtype_for_wide_integers(path, data)
    return dtype


def _dtype_for_wide_integers(path: str | Path, data: np.ndarray) -> np.dtype:
    """int32 when every value fits, float64 when every |value| ≤ 2**53, else refused."""
    if data.size == 0:
        return np.dtype(np.int32)
    low, high = int(data.min()), int(data.max())
    limits = np.iinfo(np.int32)
    if limits.min <= low and high <= limits.max:
        return np.dtype(np.int32)
    if -FLOAT64_EXACT_INT_LIMIT <= low and high <= FLOAT64_EXACT_INT_LIMIT:
        return np.dtype(np.float64)
    raise file_error(
        path, f"holds {data.dtype.name} values up to {max(abs(low), abs(high))}, beyond 2**53: "
              "no supported type (float64 at most) holds them exactly")


def _datatype_label(img: nib.Nifti1Image) -> str:
    """The standard's name of the header's datatype (``NIFTI_TYPE_RGB24``), or nibabel's."""
    code = int(img.header["datatype"])
    if code in _NIFTI_COLOUR_TYPES:
        return _NIFTI_COLOUR_TYPES[code]
    try:
        return str(img.header.get_value_label("datatype"))
    except Exception:  # an unknown code; nibabel would have refused the file already
        return ""


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
