"""The hostile-input suite of issue 13: bad studies for `viewer stats`, `render` and `report`.

Every case builds a study (tests/core/hostile_builders.py) and runs the three commands through
``viewer.cli.main`` in two runner processes under a memory limit (RLIMIT_AS, 3 GiB) and a time
limit per job (15 s — a legitimate job on these tiny inputs takes well under 3 s — and 6 s for
FIFOs and devices, whose refusal is instant). The whole catalogue runs once per module, about a
minute on two cores. Set ``HOSTILE_DUMP=results.json`` to write every job's exit code, stderr
and outcome to a file for triage.

A case expects one of two things, stated with the case:

- ``refuse``: exit 2, exactly one stderr line starting ``error: `` that names the file (or the
  manifest and the key: every string of ``names``), no traceback, no ``unexpected …``, no
  temporary-file name, no raw control character; nothing written (the output absent, its
  folder empty, the study folder unchanged);
- ``accept`` (a valid but odd input): exit 0, nothing on stderr (library warnings must not
  reach it), the output present and sane (strict JSON without NaN/Infinity, a PNG that opens,
  a PDF with pages), nothing else written.

Cases that find a bug in another engineer's files of issue 13 are marked
``xfail(strict=True)`` with the owner; once fixed they fail loudly and the marker goes.

The output rules (devices, FIFOs, links, folders, read-only folders; viewer/core/io/atomic.py)
and the message rules (one line, control characters escaped; viewer/core/errors.py) have
their own tests at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.core import hostile_builders as hb
from tests.core.hostile_builders import (
    Job,
    base_manifest,
    base_timepoint,
    copy_base_study,
    delete_radiopharmaceutical,
    delete_tag,
    gzip_bytes,
    mutate_dicom,
    patch_nifti,
    replace_bytes,
    run_jobs,
    save_nii,
    set_radiopharmaceutical,
    set_raw,
    truncate,
    write_toml,
)
from viewer.cli import main
from viewer.core.errors import ViewerError, one_line
from viewer.core.io.atomic import (
    OutputError,
    output_target,
    write_folder_atomically,
    write_text_atomic,
)

COMMANDS = ("stats", "render", "report")
OUTPUT_NAME = {"stats": "stats.json", "render": "view.png", "report": "report.pdf"}
#: The command line's fallback for a bug ("unexpected KeyError: …", "set VIEWER_DEBUG=1").
UNEXPECTED = re.compile(r"unexpected [A-Za-z]*(Error|Exception|Warning|Interrupt|Exit)\b|VIEWER_DEBUG")
#: A temporary file's name: mkstemp's ".<target>.<8 random>" beside the target, or a private folder.
TEMP_NAME = re.compile(r"/\.[^/\s]+\.[a-z0-9_]{8}|viewer-output-|/tmp/tmp")


@dataclass(frozen=True)
class Case:
    """A hostile input: ``build(folder)`` writes it (``folder`` does not exist yet) and returns
    the STUDY argument; ``expect`` is "refuse" or "accept"; an error must contain every string
    of ``names``; ``xfail`` maps a command (or "*") to the reason it is a known bug."""

    id: str
    klass: str
    build: Callable[[Path], str]
    expect: str = "refuse"
    names: tuple[str, ...] = ()
    xfail: dict[str, str] = field(default_factory=dict)
    commands: tuple[str, ...] = COMMANDS
    expect_by_command: dict[str, str] = field(default_factory=dict)
    timeout_s: float = hb.JOB_TIMEOUT_S

    def expectation(self, command: str) -> str:
        return self.expect_by_command.get(command, self.expect)


CASES: list[Case] = []


def case(id: str, klass: str, build: Callable[[Path], str], expect: str = "refuse", names: tuple[str, ...] = (),
         xfail: dict[str, str] | str | None = None, **extra: Any) -> None:
    if isinstance(xfail, str):
        xfail = {"*": xfail}
    CASES.append(Case(id, klass, build, expect, tuple(names), dict(xfail or {}), **extra))


def manifest_of(folder: Path) -> str:
    return str(folder / "study.toml")


# -- builders of cases ---------------------------------------------------------------------------

def with_manifest(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], str]:
    """The base study with its manifest data changed by ``change(data)``."""
    def build(folder: Path) -> str:
        copy_base_study(folder)
        data = base_manifest()
        change(data)
        write_toml(folder / "study.toml", data)
        return manifest_of(folder)
    return build


def with_manifest_text(text: str | bytes) -> Callable[[Path], str]:
    def build(folder: Path) -> str:
        copy_base_study(folder)
        replace_bytes(folder / "study.toml", text if isinstance(text, bytes) else text.encode("utf-8"))
        return manifest_of(folder)
    return build


def study_key(key: str, value: Any) -> Callable[[Path], str]:
    return with_manifest(lambda d: d["study"].__setitem__(key, value))


def calibration_key(key: str, value: Any) -> Callable[[Path], str]:
    return with_manifest(lambda d: d["calibration"].__setitem__(key, value))


def timepoint_key(key: str, value: Any) -> Callable[[Path], str]:
    def change(d: dict[str, Any]) -> None:
        if value is None:
            d["timepoint"][0].pop(key, None)
        else:
            d["timepoint"][0][key] = value
    return with_manifest(change)


def with_files(change: Callable[[Path], None], manifest: Callable[[dict[str, Any]], None] | None = None) -> Callable[[Path], str]:
    """The base study with its files changed by ``change(folder)`` (and its manifest data)."""
    def build(folder: Path) -> str:
        copy_base_study(folder)
        change(folder)
        if manifest is not None:
            data = base_manifest()
            manifest(data)
            write_toml(folder / "study.toml", data)
        return manifest_of(folder)
    return build


def nifti_header(qform_only: bool = False, file: str = "t1.nii", **fields: Any) -> Callable[[Path], str]:
    """The base study with header fields of its anatomy (a single-file .nii) overwritten."""
    def change(folder: Path) -> None:
        path = folder / file
        if qform_only:
            path.unlink()
            save_nii(hb.anatomy_data(), path, sform=False)
        patch_nifti(path, **fields)
    return with_files(change)


def anatomy_bytes(make: Callable[[bytes], bytes], name: str = "t1.nii") -> Callable[[Path], str]:
    """The anatomy replaced by ``make(original .nii bytes)``, saved as ``name``."""
    def change(folder: Path) -> None:
        original = (folder / "t1.nii").read_bytes()
        (folder / "t1.nii").unlink()
        (folder / name).write_bytes(make(original))
    return with_files(change, lambda d: d["timepoint"][0].__setitem__("anatomical", name))


def anatomy_array(data_fn: Callable[[], Any], **save: Any) -> Callable[[Path], str]:
    def change(folder: Path) -> None:
        (folder / "t1.nii").unlink()
        save_nii(data_fn(), folder / "t1.nii", **save)
    return with_files(change)


def regions_array(data_fn: Callable[[], Any], affine_fn: Callable[[], Any] | None = None,
                  names: dict[str, str] | None = None) -> Callable[[Path], str]:
    def change(folder: Path) -> None:
        (folder / "regions.nii.gz").unlink()
        save_nii(data_fn(), folder / "regions.nii.gz", affine_fn() if affine_fn else None)
    manifest = None
    if names is not None:
        def manifest(d: dict[str, Any]) -> None:
            d["timepoint"][0]["region_names"] = names
    return with_files(change, manifest)


_DICOM_TEMPLATES: dict[str, Path] = {}


def _dicom_template(kind: str) -> Path:
    if kind not in _DICOM_TEMPLATES:
        folder = hb.template_folder(kind) / kind
        (hb.write_mr_dicom if kind == "mr" else hb.write_pet_dicom)(folder)
        _DICOM_TEMPLATES[kind] = folder
    return _DICOM_TEMPLATES[kind]


def dicom_files(folder: Path) -> list[Path]:
    """The series' files in slice order (the writer numbers them along the slices)."""
    return sorted(p for p in folder.iterdir() if p.is_file())


def _dicom_study(role: str, template: str, change: Callable[[list[Path]], None] | None) -> Callable[[Path], str]:
    """The base study with its ``role`` image as the DICOM folder ``{template}`` series
    (``t1_dicom`` / ``pet_dicom``) changed by ``change``."""
    name = {"mr": "t1_dicom", "pet": "pet_dicom"}[template]

    def build(folder: Path) -> str:
        copy_base_study(folder)
        series = folder / name
        shutil.copytree(_dicom_template(template), series)
        if change is not None:
            change(dicom_files(series))
        data = base_manifest()
        data["timepoint"][0][role] = name
        if role == "pet":
            del data["timepoint"][0]["pet_units"]  # the series' own units (SUV from its tags)
        write_toml(folder / "study.toml", data)
        return manifest_of(folder)
    return build


def mr_dicom(change: Callable[[list[Path]], None] | None = None) -> Callable[[Path], str]:
    """The base study with its anatomy as a DICOM folder ``t1_dicom`` changed by ``change``."""
    return _dicom_study("anatomical", "mr", change)


def mr_tag(change: Callable[[Any], None], which: str = "all") -> Callable[[Path], str]:
    return mr_dicom(lambda files: mutate_dicom(files, change, which))


def pet_dicom(change: Callable[[list[Path]], None] | None = None) -> Callable[[Path], str]:
    """The base study with its PET as a DICOM folder ``pet_dicom`` changed by ``change``."""
    return _dicom_study("pet", "pet", change)


def pet_tag(change: Callable[[Any], None], which: str = "all") -> Callable[[Path], str]:
    return pet_dicom(lambda files: mutate_dicom(files, change, which))


def bqml_pet(**dose: Any) -> Callable[[Path], str]:
    """The NIfTI PET declared in Bq/mL with ``[timepoint.pet_dose]`` = ``dose``."""
    def change(d: dict[str, Any]) -> None:
        tp = d["timepoint"][0]
        tp["pet_units"] = "Bq/mL"
        if dose:
            tp["pet_dose"] = dose
    return with_manifest(change)


GOOD_DOSE = {"dose_bq": 3.7e8, "weight_kg": 70.0, "half_life_s": 6586.2, "injection_time": "13:01:00",
             "scan_time": "14:01:00"}


def dose(**changes: Any) -> dict[str, Any]:
    values = dict(GOOD_DOSE)
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def _random_bytes(n: int, seed: int = 1) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _nifti_with_dims_gz(dims: tuple[int, int, int], keep: int) -> Callable[[bytes], bytes]:
    """A gzipped header claiming ``dims`` (float32) followed by only ``keep`` bytes of data."""
    def make(original: bytes) -> bytes:
        import struct

        header = bytearray(original[:352])
        struct.pack_into("<8h", header, 40, 3, *dims, 1, 1, 1, 1)
        return gzip_bytes(bytes(header) + bytes(keep))
    return make


# -- the cases -------------------------------------------------------------------------------------

OWNER_C = "owner C"
OWNER_B = "owner B"

# ---- sanity: the base study and its DICOM variants are accepted (the suite's reference)
case("base-study", "sanity", lambda f: str(copy_base_study(f)), "accept")
case("base-study-folder-argument", "sanity", lambda f: (copy_base_study(f), str(f))[1], "accept")
case("mr-dicom-valid", "sanity", mr_dicom(), "accept")
case("pet-dicom-valid", "sanity", pet_dicom(), "accept")
case("bqml-pet-with-dose-and-times", "sanity", bqml_pet(**GOOD_DOSE), "accept")

# ---- NIfTI header fields (the anatomy, t1.nii)
T1 = ("t1.nii",)
# a wrong sizeof_hdr with the n+1 magic and a sound header: repaired by nibabel (logged, which must
# not reach stderr), the voxels are where vox_offset says: accepted
case("nifti-sizeof_hdr-0", "nifti", nifti_header(sizeof_hdr=0), "accept")
case("nifti-sizeof_hdr-540", "nifti", nifti_header(sizeof_hdr=540), "accept")
case("nifti-sizeof_hdr-negative", "nifti", nifti_header(sizeof_hdr=-348), "accept")
case("nifti-magic-garbage", "nifti", nifti_header(magic=b"abcd"), names=T1)
case("nifti-magic-ni1-in-a-single-file", "nifti", nifti_header(magic=b"ni1\0"), "accept")  # a .nii is read as one file
case("nifti-magic-n+2-in-nifti1", "nifti", nifti_header(magic=b"n+2\0"), names=T1)
case("nifti-dim0-0", "nifti", nifti_header(dim={0: 0}), names=T1)
case("nifti-dim0-negative", "nifti", nifti_header(dim={0: -3}), names=T1)
case("nifti-dim0-9", "nifti", nifti_header(dim={0: 9}), names=T1)
case("nifti-dim0-2-is-2d", "nifti", nifti_header(dim={0: 2}), names=T1)
case("nifti-dim1-0", "nifti", nifti_header(dim={1: 0}), names=T1)
case("nifti-dim1-negative", "nifti", nifti_header(dim={1: -24}), names=T1)
case("nifti-dims-huge-truncated", "nifti", nifti_header(dim={1: 32767, 2: 32767, 3: 32767}), names=T1)
case("nifti-dim4-2-volumes", "nifti", nifti_header(dim={0: 4, 4: 2}), names=T1)
case("nifti-dim4-0", "nifti", nifti_header(dim={0: 4, 4: 0}), names=T1)
case("nifti-datatype-0", "nifti", nifti_header(datatype=0), names=T1)
case("nifti-datatype-255-unknown", "nifti", nifti_header(datatype=255), names=T1)
case("nifti-datatype-binary", "nifti", nifti_header(datatype=1, bitpix=1), names=T1)
case("nifti-datatype-complex64", "nifti", nifti_header(datatype=32, bitpix=64), names=T1)
case("nifti-datatype-rgb24", "nifti", nifti_header(datatype=128, bitpix=24), names=T1)
case("nifti-datatype-float128", "nifti", nifti_header(datatype=1536, bitpix=128), names=T1)
case("nifti-datatype-float64-short-file", "nifti", nifti_header(datatype=64, bitpix=64), names=T1)
case("nifti-bitpix-mismatch", "nifti", nifti_header(bitpix=8), "accept")  # redundant field: datatype rules
case("nifti-bitpix-odd", "nifti", nifti_header(bitpix=7), "accept")
case("nifti-vox_offset-0", "nifti", nifti_header(vox_offset=0.0), names=T1 + ("vox_offset",))
case("nifti-vox_offset-inside-header", "nifti", nifti_header(vox_offset=100.0), names=T1)
case("nifti-vox_offset-past-end", "nifti", nifti_header(vox_offset=1e9), names=T1)
case("nifti-vox_offset-negative", "nifti", nifti_header(vox_offset=-352.0), names=T1)
case("nifti-vox_offset-nan", "nifti", nifti_header(vox_offset=float("nan")), names=T1)
case("nifti-vox_offset-shifted-short", "nifti", nifti_header(vox_offset=352.0 + 64), names=T1)
case("nifti-scl_slope-0-means-unscaled", "nifti", nifti_header(scl_slope=0.0, scl_inter=5.0), "accept")
case("nifti-scl_slope-nan-means-unscaled", "nifti", nifti_header(scl_slope=float("nan")), "accept")
case("nifti-scl_slope-inf-means-unscaled", "nifti", nifti_header(scl_slope=float("inf")), "accept")  # nibabel, as 0/NaN
case("nifti-scl_inter-inf", "nifti", nifti_header(scl_slope=1.0, scl_inter=float("inf")), names=T1)
case("nifti-scl_inter-nan", "nifti", nifti_header(scl_slope=2.0, scl_inter=float("nan")), names=T1)
case("nifti-scl_slope-huge", "nifti", nifti_header(scl_slope=3e38), "accept")  # huge but finite values, as stored
case("nifti-qform-pixdim-0", "nifti", nifti_header(qform_only=True, pixdim={1: 0.0}), names=T1)
case("nifti-qform-pixdim-nan", "nifti", nifti_header(qform_only=True, pixdim={2: float("nan")}), names=T1)
case("nifti-qform-pixdim-inf", "nifti", nifti_header(qform_only=True, pixdim={3: float("inf")}), names=T1)
case("nifti-qform-pixdim-negative", "nifti", nifti_header(qform_only=True, pixdim={1: -2.0}), "accept")
case("nifti-qform-qfac-0", "nifti", nifti_header(qform_only=True, pixdim={0: 0.0}), "accept")
case("nifti-qform-quatern-nan", "nifti", nifti_header(qform_only=True, quatern=(float("nan"), 0.0, 0.0)), names=T1)
case("nifti-qform-quatern-not-unit", "nifti", nifti_header(qform_only=True, quatern=(1.0, 1.0, 1.0)), names=T1)
case("nifti-qform-qoffset-nan", "nifti", nifti_header(qform_only=True, qoffset={0: float("nan")}), names=T1)
case("nifti-qform-qoffset-inf", "nifti", nifti_header(qform_only=True, qoffset={1: float("-inf")}), names=T1)
case("nifti-sform-pixdim-0-ignored", "nifti", nifti_header(pixdim={1: 0.0, 2: 0.0}), "accept")
case("nifti-sform-zero-rows", "nifti", nifti_header(srow_x=(0.0,) * 4, srow_y=(0.0,) * 4, srow_z=(0.0,) * 4, qform_code=0),
     names=T1)
case("nifti-sform-nan", "nifti", nifti_header(srow_y={1: float("nan")}), names=T1)
case("nifti-sform-inf", "nifti", nifti_header(srow_z={3: float("inf")}), names=T1)
case("nifti-sform-code-unknown", "nifti", nifti_header(sform_code=99), "accept")
case("nifti-qform-code-negative", "nifti", nifti_header(qform_code=-4), "accept")
case("nifti-no-qform-no-sform", "nifti", nifti_header(qform_code=0, sform_code=0), "accept")
case("nifti-empty-file", "nifti", anatomy_bytes(lambda b: b""), names=T1)
case("nifti-truncated-100-bytes", "nifti", anatomy_bytes(lambda b: b[:100]), names=T1)
case("nifti-truncated-header-only", "nifti", anatomy_bytes(lambda b: b[:352]), names=T1)
case("nifti-truncated-half-data", "nifti", anatomy_bytes(lambda b: b[: 352 + (len(b) - 352) // 2]), names=T1)
case("nifti-gz-random-bytes", "nifti", anatomy_bytes(lambda b: _random_bytes(5000), "t1.nii.gz"), names=("t1.nii.gz",))
case("nifti-gz-truncated-stream", "nifti", anatomy_bytes(lambda b: gzip_bytes(b)[: len(gzip_bytes(b)) // 2], "t1.nii.gz"),
     names=("t1.nii.gz",))
case("nifti-gz-of-text", "nifti", anatomy_bytes(lambda b: gzip_bytes(b"hello, not an image\n" * 50), "t1.nii.gz"),
     names=("t1.nii.gz",))
case("nifti-gz-name-plain-content", "nifti", anatomy_bytes(lambda b: b, "t1.nii.gz"), names=("t1.nii.gz",))
case("nifti-plain-name-gz-content", "nifti", anatomy_bytes(gzip_bytes, "t1.nii"), names=T1)
case("nifti-gz-huge-dims-little-data", "nifti", anatomy_bytes(_nifti_with_dims_gz((1024, 1024, 1024), 4096), "t1.nii.gz"),
     names=("t1.nii.gz",))
case("nifti-all-inf", "nifti", anatomy_array(lambda: np.full(hb.ANAT_SHAPE, np.inf, np.float32)), names=T1)
case("nifti-partly-nan", "nifti",
     anatomy_array(lambda: np.where(np.arange(np.prod(hb.ANAT_SHAPE)).reshape(hb.ANAT_SHAPE) % 7 == 0, np.nan,
                                    hb.anatomy_data()).astype(np.float32)), "accept")
case("nifti-big-endian", "nifti", anatomy_array(lambda: hb.anatomy_data().astype(">f4")), "accept")
case("nifti-int64-anatomy", "nifti", anatomy_array(lambda: hb.anatomy_data().astype(np.int64)), "accept")
case("nifti-complex-anatomy", "nifti", anatomy_array(lambda: hb.anatomy_data().astype(np.complex64)), names=T1)
case("nifti2-valid", "nifti", anatomy_bytes(lambda b: _nifti2_bytes(), "t1.nii"), "accept")
case("nifti-analyze-hdr-named-as-anatomy", "nifti", anatomy_bytes(lambda b: b[:348], "t1.hdr"), names=("t1.hdr",))
case("nifti-fluorine-truncated", "nifti",
     with_files(lambda f: truncate(f / "f19.nii.gz", 0.5)), names=("f19.nii.gz",))
case("nifti-pet-4d", "nifti",
     with_files(lambda f: ((f / "pet.nii.gz").unlink(),
                           save_nii(np.ones((*hb.SMALL_SHAPE, 3), np.float32), f / "pet.nii.gz", hb.small_affine()))),
     names=("pet.nii.gz",))


def _nifti2_bytes() -> bytes:
    import io

    import nibabel as nib

    img = nib.Nifti2Image(hb.anatomy_data(), hb.anat_affine())
    buffer = io.BytesIO()
    file_map = nib.Nifti2Image.make_file_map({"image": buffer, "header": buffer})
    img.to_file_map(file_map)
    return buffer.getvalue()


# ---- DICOM tags (the anatomy as a DICOM series t1_dicom; the PET as pet_dicom)
MR = ("t1_dicom",)
PET = ("pet_dicom",)
case("dicom-ipp-missing", "dicom", mr_tag(delete_tag("ImagePositionPatient")), names=MR)
case("dicom-ipp-missing-one-slice", "dicom", mr_tag(delete_tag("ImagePositionPatient"), "middle"), names=MR)
case("dicom-ipp-garbage", "dicom", mr_tag(set_raw("ImagePositionPatient", "DS", "abc\\def\\ghi")), names=MR)
case("dicom-ipp-two-values", "dicom", mr_tag(set_raw("ImagePositionPatient", "DS", "1\\2")), names=MR)
case("dicom-ipp-nan", "dicom", mr_tag(set_raw("ImagePositionPatient", "DS", "nan\\0\\0"), "middle"), names=MR)
case("dicom-ipp-inf", "dicom", mr_tag(set_raw("ImagePositionPatient", "DS", "0\\inf\\0"), "first"), names=MR)
case("dicom-ipp-same-everywhere", "dicom", mr_tag(set_raw("ImagePositionPatient", "DS", "0\\0\\0")), names=MR)
case("dicom-iop-missing", "dicom", mr_tag(delete_tag("ImageOrientationPatient")), names=MR)
case("dicom-iop-zero", "dicom", mr_tag(set_raw("ImageOrientationPatient", "DS", "0\\0\\0\\0\\0\\0")), names=MR)
case("dicom-iop-parallel", "dicom", mr_tag(set_raw("ImageOrientationPatient", "DS", "1\\0\\0\\1\\0\\0")), names=MR)
case("dicom-iop-nan", "dicom", mr_tag(set_raw("ImageOrientationPatient", "DS", "1\\0\\0\\0\\nan\\0")), names=MR)
case("dicom-iop-length-2", "dicom", mr_tag(set_raw("ImageOrientationPatient", "DS", "2\\0\\0\\0\\2\\0")), names=MR)
case("dicom-iop-one-slice-rotated", "dicom", mr_tag(set_raw("ImageOrientationPatient", "DS", "0\\1\\0\\1\\0\\0"), "middle"),
     names=MR)
case("dicom-pixelspacing-0", "dicom", mr_tag(set_raw("PixelSpacing", "DS", "0\\0")), names=MR)
case("dicom-pixelspacing-negative", "dicom", mr_tag(set_raw("PixelSpacing", "DS", "-2\\2")), names=MR)
case("dicom-pixelspacing-missing", "dicom", mr_tag(delete_tag("PixelSpacing")), names=MR)
case("dicom-pixelspacing-nan", "dicom", mr_tag(set_raw("PixelSpacing", "DS", "nan\\2")), names=MR)
case("dicom-pixelspacing-one-value", "dicom", mr_tag(set_raw("PixelSpacing", "DS", "2")), names=MR)
case("dicom-pixelspacing-garbage", "dicom", mr_tag(set_raw("PixelSpacing", "DS", "two\\mm")), names=MR)
case("dicom-rows-0", "dicom", mr_tag(set_raw("Rows", "US", 0)), names=MR)
case("dicom-columns-0", "dicom", mr_tag(set_raw("Columns", "US", 0)), names=MR)
case("dicom-rows-huge", "dicom", mr_tag(set_raw("Rows", "US", 65535)), names=MR)
case("dicom-rows-huge-one-slice", "dicom", mr_tag(set_raw("Rows", "US", 65535), "middle"), names=MR)
case("dicom-rows-missing", "dicom", mr_tag(delete_tag("Rows")), names=MR)
case("dicom-bitsallocated-0", "dicom", mr_tag(set_raw("BitsAllocated", "US", 0)), names=MR)
case("dicom-bitsallocated-1", "dicom", mr_tag(set_raw("BitsAllocated", "US", 1)), names=MR)
case("dicom-bitsallocated-7", "dicom", mr_tag(set_raw("BitsAllocated", "US", 7)), names=MR)
case("dicom-bitsallocated-12", "dicom", mr_tag(set_raw("BitsAllocated", "US", 12)), names=MR)
case("dicom-bitsallocated-32-for-16-bit-data", "dicom", mr_tag(set_raw("BitsAllocated", "US", 32)), names=MR)
case("dicom-bitsstored-above-allocated", "dicom", mr_tag(set_raw("BitsStored", "US", 20)), names=MR)
case("dicom-pixelrepresentation-2", "dicom", mr_tag(set_raw("PixelRepresentation", "US", 2)), names=MR)
case("dicom-samplesperpixel-3", "dicom", mr_tag(set_raw("SamplesPerPixel", "US", 3)), names=MR)
case("dicom-numberofframes-huge", "dicom", mr_tag(set_raw("NumberOfFrames", "IS", "1000000")), names=MR)


def _transfer_syntax(uid: str | None) -> Callable[[Any], None]:
    def change(ds: Any) -> None:
        if uid is None:
            del ds.file_meta.TransferSyntaxUID
        else:
            ds.file_meta.TransferSyntaxUID = uid
    return change


def _declare(uid: str) -> Callable[[list[Path]], None]:
    return lambda files: [hb.declare_transfer_syntax(path, uid) for path in files]


case("dicom-transfer-syntax-jpeg-baseline-on-raw-data", "dicom",
     mr_dicom(_declare("1.2.840.10008.1.2.4.50")), names=MR)
case("dicom-transfer-syntax-unknown", "dicom", mr_dicom(_declare("1.2.3.4.5.6.7")), names=MR)
case("dicom-transfer-syntax-big-endian-on-little-data", "dicom",
     mr_dicom(_declare("1.2.840.10008.1.2.2")), names=MR)
case("dicom-pixeldata-missing", "dicom", mr_tag(delete_tag("PixelData")), names=MR)
case("dicom-pixeldata-short", "dicom", mr_tag(lambda ds: setattr(ds, "PixelData", ds.PixelData[: len(ds.PixelData) // 2])),
     names=MR)
case("dicom-truncated-middle-file", "dicom", mr_dicom(lambda files: truncate(files[len(files) // 2], 0.6)), names=MR)
case("dicom-truncated-first-file", "dicom", mr_dicom(lambda files: truncate(files[0], 0.6)), names=MR)
case("dicom-truncated-last-file", "dicom", mr_dicom(lambda files: truncate(files[-1], 0.6)), names=MR)
case("dicom-empty-middle-file", "dicom", mr_dicom(lambda files: replace_bytes(files[len(files) // 2], b"")), names=MR)
case("dicom-garbage-first-file", "dicom", mr_dicom(lambda files: replace_bytes(files[0], _random_bytes(3000))), names=MR)
case("dicom-rescale-slope-nan", "dicom", mr_tag(set_raw("RescaleSlope", "DS", "nan")), names=MR)
case("dicom-rescale-slope-inf", "dicom", mr_tag(set_raw("RescaleSlope", "DS", "inf"), "middle"), names=MR)
case("dicom-rescale-slope-garbage", "dicom", mr_tag(set_raw("RescaleSlope", "DS", "x1")), names=MR)
case("dicom-rescale-slope-0", "dicom", mr_tag(set_raw("RescaleSlope", "DS", "0")), names=MR)
case("dicom-sopclass-rtstruct-only", "dicom",
     mr_tag(lambda ds: (setattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.481.3"), delattr(ds, "PixelData"),
                        setattr(ds.file_meta, "MediaStorageSOPClassUID", "1.2.840.10008.5.1.4.1.1.481.3"))), names=MR)
case("dicom-modality-pt-without-suv-tags", "dicom", mr_tag(set_raw("Modality", "CS", "PT")), names=MR)
case("dicom-folder-of-text", "dicom",
     mr_dicom(lambda files: [replace_bytes(p, b"not dicom\n") for p in files]), names=MR)
case("dicom-empty-folder", "dicom", mr_dicom(lambda files: [p.unlink() for p in files]), names=MR)
case("dicom-folder-with-readme", "dicom", mr_dicom(lambda files: (files[0].parent / "README.txt").write_text("notes\n")),
     "accept")
case("dicom-transfer-syntax-missing", "dicom", mr_tag(_transfer_syntax(None)), names=MR + ("Transfer Syntax",))

# PET series without what SUV needs
case("pet-dose-missing", "pet", pet_tag(delete_radiopharmaceutical("RadionuclideTotalDose")), names=PET + ("RadionuclideTotalDose",))
case("pet-dose-0", "pet", pet_tag(set_radiopharmaceutical("RadionuclideTotalDose", "0")), names=PET)
case("pet-dose-negative", "pet", pet_tag(set_radiopharmaceutical("RadionuclideTotalDose", "-3.7e8")), names=PET)
case("pet-dose-nan", "pet", pet_tag(set_radiopharmaceutical("RadionuclideTotalDose", "nan")), names=PET)
case("pet-weight-missing", "pet", pet_tag(delete_tag("PatientWeight")), names=PET + ("PatientWeight",))
case("pet-weight-0", "pet", pet_tag(set_raw("PatientWeight", "DS", "0")), names=PET)
case("pet-weight-negative", "pet", pet_tag(set_raw("PatientWeight", "DS", "-70")), names=PET)
case("pet-injection-time-missing", "pet",
     pet_tag(delete_radiopharmaceutical("RadiopharmaceuticalStartTime", "RadiopharmaceuticalStartDateTime")), names=PET)
case("pet-injection-time-garbage", "pet",
     pet_tag(lambda ds: (delete_radiopharmaceutical("RadiopharmaceuticalStartDateTime")(ds),
                         set_radiopharmaceutical("RadiopharmaceuticalStartTime", "25:99:00")(ds))), names=PET)
case("pet-series-time-missing", "pet", pet_tag(delete_tag("SeriesTime", "AcquisitionTime", "SeriesDate", "AcquisitionDate")),
     names=PET)
case("pet-half-life-0", "pet", pet_tag(set_radiopharmaceutical("RadionuclideHalfLife", "0")), names=PET)
case("pet-half-life-missing", "pet", pet_tag(delete_radiopharmaceutical("RadionuclideHalfLife")), names=PET)
case("pet-half-life-negative", "pet", pet_tag(set_radiopharmaceutical("RadionuclideHalfLife", "-6586")), names=PET)
case("pet-units-missing", "pet", pet_tag(delete_tag("Units")), names=PET)
case("pet-units-garbage", "pet", pet_tag(set_raw("Units", "CS", "FURLONGS")), names=PET)
case("pet-units-cnts-without-philips-factor", "pet", pet_tag(set_raw("Units", "CS", "CNTS")), names=PET)
case("pet-not-decay-corrected-image", "pet", pet_tag(set_raw("CorrectedImage", "CS", "ATTN")), names=PET)
case("pet-radiopharmaceutical-sequence-missing", "pet", pet_tag(delete_tag("RadiopharmaceuticalInformationSequence")),
     names=PET)

# NIfTI PET in Bq/mL: the manifest's [timepoint.pet_dose]
DOSE = ("study.toml", "pet_dose")
case("pet-bqml-without-pet_dose", "pet", bqml_pet(), names=DOSE)
case("pet-bqml-dose-0", "pet", bqml_pet(**dose(dose_bq=0)), names=DOSE + ("dose_bq",))
case("pet-bqml-weight-negative", "pet", bqml_pet(**dose(weight_kg=-70.0)), names=DOSE + ("weight_kg",))
case("pet-bqml-half-life-0", "pet", bqml_pet(**dose(half_life_s=0)), names=DOSE + ("half_life_s",))
case("pet-bqml-without-times", "pet", bqml_pet(dose_bq=3.7e8, weight_kg=70.0), names=DOSE)
case("pet-bqml-scan-before-injection", "pet", bqml_pet(**dose(scan_time="12:00:00")), names=DOSE)
case("pet-bqml-time-garbage", "pet", bqml_pet(**dose(injection_time="half past one")), names=DOSE)
case("pet-bqml-dose-string", "pet", bqml_pet(**dose(dose_bq="lots")), names=DOSE + ("dose_bq",))
case("pet-bqml-dose-nan", "pet", bqml_pet(**dose(dose_bq=float("nan"))), names=DOSE + ("dose_bq",))
case("pet-bqml-unknown-key", "pet", bqml_pet(**dose(tracer="FDG")), names=DOSE + ("tracer",))
case("pet-pet_dose-not-a-table", "pet",
     with_manifest(lambda d: d["timepoint"][0].update(pet_units="Bq/mL", pet_dose="3.7e8 Bq")), names=DOSE)
case("pet-units-lowercase", "pet", timepoint_key("pet_units", "suv"), names=("study.toml", "pet_units"))
case("pet-units-missing-for-nifti", "pet", timepoint_key("pet_units", None), names=("study.toml", "pet_units"))

# ---- the manifest's keys and types
TOML = ("study.toml",)
case("manifest-malformed-toml", "manifest", with_manifest_text("[study\nid = 'x'\n"), names=TOML)
case("manifest-not-utf8", "manifest", with_manifest_text(b"[study]\nid = '\xff\xfe'\n"), names=TOML)
case("manifest-utf16", "manifest", with_manifest_text("[study]\nid = 'x'\n".encode("utf-16")), names=TOML)
case("manifest-empty", "manifest", with_manifest_text(""), names=TOML)
case("manifest-binary-garbage", "manifest", with_manifest_text(_random_bytes(2000)), names=TOML)
case("manifest-duplicate-key", "manifest", with_manifest_text("[study]\nid = 'a'\nid = 'b'\n"), names=TOML)
case("manifest-nan-literal", "manifest",
     lambda f: (copy_base_study(f), _append(f / "study.toml", "injected_cells = nan\n", after="[study]\n"))[1],
     names=TOML + ("injected_cells",))
case("manifest-inf-literal", "manifest",
     lambda f: (copy_base_study(f), _append(f / "study.toml", "injected_cells = inf\n", after="[study]\n"))[1],
     names=TOML + ("injected_cells",))
case("manifest-unknown-top-level-key", "manifest", with_manifest(lambda d: d.__setitem__("extras", {"a": 1})),
     names=TOML + ("extras",))
case("manifest-study-missing", "manifest", with_manifest(lambda d: d.pop("study")), names=TOML + ("[study]",))
case("manifest-study-not-a-table", "manifest", with_manifest(lambda d: d.__setitem__("study", [1, 2])), names=TOML + ("study",))
case("manifest-timepoint-missing", "manifest", with_manifest(lambda d: d.pop("timepoint")), names=TOML + ("timepoint",))
case("manifest-timepoint-empty-array", "manifest", with_manifest(lambda d: d.__setitem__("timepoint", [])),
     names=TOML + ("timepoint",))
case("manifest-timepoint-a-table", "manifest", with_manifest(lambda d: d.__setitem__("timepoint", base_timepoint())),
     names=TOML + ("timepoint",))
case("manifest-timepoint-array-of-strings", "manifest", with_manifest(lambda d: d.__setitem__("timepoint", ["day 7"])),
     names=TOML + ("timepoint",))
case("manifest-calibration-not-a-table", "manifest", with_manifest(lambda d: d.__setitem__("calibration", 12)),
     names=TOML + ("calibration",))
case("manifest-model-a-string", "manifest", with_manifest(lambda d: d.__setitem__("model", "model.onnx")),
     names=TOML + ("model",))

for key, value in [("id", 1), ("id", ""), ("id", "   "), ("id", ["a"]), ("patient", 5), ("patient_id", 1.5),
                   ("birth_date", "not a date"), ("birth_date", 19700102), ("day0", "2026-13-40"), ("day0", True),
                   ("condition", {"a": 1}), ("therapy", 3), ("sex", False),
                   ("injected_cells", -5), ("injected_cells", 0), ("injected_cells", "many"), ("injected_cells", True),
                   ("description", 5), ("study_date", 20260302), ("colour", "blue")]:
    case(f"manifest-study-{key}-{value!r}", "manifest", study_key(key, value), names=TOML + (key,))
case("manifest-study-day0-and-study_date", "manifest",
     with_manifest(lambda d: d["study"].update(day0="2026-03-02", study_date="2026-03-02")), names=TOML + ("study_date",))
case("manifest-study-injected_cells-huge", "manifest", study_key("injected_cells", 10**30), "accept")
case("manifest-study-injected_cells-1e308", "manifest", study_key("injected_cells", 1e308), "accept")
case("manifest-study-unicode-and-controls-in-text", "manifest",
     with_manifest(lambda d: d["study"].update(condition="multiple\nsclerosis\t\x1b[2J", therapy="UC-MSC \u202e evil")),
     "accept")

for key in ("fluorine_atoms_per_cell", "reference_fluorine_mM", "detection_snr", "gd_r1_per_mM_s", "gd_fmol_per_cell",
            "fe_pg_per_cell", "spio_r2star_per_mM_s"):
    for label, value in [("string", "1e12"), ("bool", True), ("nan", float("nan")), ("inf", float("inf")), ("zero", 0),
                         ("negative", -1.0), ("array", [1.0])]:
        case(f"manifest-calibration-{key}-{label}", "manifest", calibration_key(key, value), names=TOML + (key,))
for label, value in [("zero", 0), ("negative", -3), ("fraction", 2.5), ("string", "3"), ("bool", True)]:
    case(f"manifest-calibration-min_cluster_voxels-{label}", "manifest", calibration_key("min_cluster_voxels", value),
         names=TOML + ("min_cluster_voxels",))
for label, value in [("zero", 0.0), ("above-1", 1.5), ("nan", float("nan"))]:
    case(f"manifest-calibration-dead_fraction_alert-{label}", "manifest", calibration_key("dead_fraction_alert", value),
         names=TOML + ("dead_fraction_alert",))
case("manifest-calibration-unknown-key", "manifest", calibration_key("fluorine_atom_per_cell", 1e12),
     names=TOML + ("fluorine_atom_per_cell",))
case("manifest-calibration-min_cluster_voxels-huge", "manifest", calibration_key("min_cluster_voxels", 10**30), "accept")
case("manifest-calibration-extreme-values", "manifest",
     with_manifest(lambda d: d["calibration"].update(fluorine_atoms_per_cell=1e308, reference_fluorine_mM=1e-300,
                                                     detection_snr=1e-300)), "accept")

for key, value, label in [("label", 5, "label-number"), ("label", "", "label-empty"), ("label", "  ", "label-blank"),
                          ("label", None, "label-missing"), ("day", "7", "day-string"), ("day", float("nan"), "day-nan"),
                          ("day", float("inf"), "day-inf"), ("day", True, "day-bool"), ("anatomical", None, "anatomical-missing"),
                          ("anatomical", 5, "anatomical-number"), ("anatomical", "", "anatomical-empty"),
                          ("anatomical", ["t1.nii"], "anatomical-array"), ("fluorine", "missing.nii.gz", "fluorine-not-found"),
                          ("regions", "missing.nii.gz", "regions-not-found"), ("colour", "red", "unknown-key"),
                          ("region_names", "core", "region_names-string"), ("region_names", {"abc": "core"}, "region_names-key-text"),
                          ("region_names", {"0": "zero"}, "region_names-key-0"), ("region_names", {"-1": "minus"}, "region_names-key-negative"),
                          ("region_names", {"1.5": "half"}, "region_names-key-fraction"),
                          ("region_names", {"1": 5}, "region_names-value-number"), ("region_names", {"1": ""}, "region_names-value-empty"),
                          ("region_names", {"1": ["core"]}, "region_names-value-array")]:
    name = key if key != "label" else "label"
    case(f"manifest-timepoint-{label}", "manifest", timepoint_key(key, value), names=TOML + (name,))
def _second_timepoint(folder: Path) -> None:
    """A second timepoint "day 14" whose ¹⁹F image is truncated (the first one is sound)."""
    shutil.copyfile(folder / "f19.nii.gz", folder / "f19_day14.nii.gz")
    truncate(folder / "f19_day14.nii.gz", 0.5)


case("manifest-second-timepoint-image-truncated", "manifest",
     with_files(_second_timepoint, lambda d: d["timepoint"].append(base_timepoint(label="day 14", day=14,
                                                                                  fluorine="f19_day14.nii.gz"))),
     names=("f19_day14.nii.gz",), expect_by_command={"render": "accept"})  # render draws the first timepoint only
case("manifest-12-timepoints", "manifest",
     with_manifest(lambda d: d.__setitem__("timepoint", [base_timepoint(label=f"day {n}", day=n) for n in range(12)])),
     "accept")
case("manifest-5000-region-names", "manifest",  # an honest limit: at most 1000 regions
     timepoint_key("region_names", {str(n): f"region {n}" for n in range(1, 5001)}), names=TOML + ("region_names",))
for role in ("fluorine", "spio", "gd", "pet", "sodium", "adc", "tmax", "regions"):  # every image key, wrong type
    case(f"manifest-timepoint-{role}-number", "manifest", timepoint_key(role, 5), names=TOML + (role,))
    case(f"manifest-timepoint-{role}-table", "manifest", timepoint_key(role, {"path": "t1.nii"}), names=TOML + (role,))
case("manifest-timepoint-pet_units-number", "manifest", timepoint_key("pet_units", 5), names=TOML + ("pet_units",))
for key in ("dose_bq", "weight_kg", "half_life_s", "injection_time", "scan_time"):  # every pet_dose key, wrong type
    case(f"manifest-pet_dose-{key}-array", "manifest", bqml_pet(**dose(**{key: [1]})), names=TOML + (key,))
case("manifest-model-onnx-number", "manifest", with_manifest(lambda d: d.__setitem__("model", [{"onnx": 5, "card": "c.json"}])),
     names=TOML + ("onnx",))
case("manifest-model-entry-a-string", "manifest", with_manifest(lambda d: d.__setitem__("model", ["m.onnx"])),
     names=TOML + ("model",))
case("manifest-timepoint-day-negative", "manifest", timepoint_key("day", -3), "accept")  # a baseline before day 0
case("manifest-timepoint-day-huge", "manifest", timepoint_key("day", 1e300), "accept")
case("manifest-timepoint-duplicate-labels", "manifest",
     with_manifest(lambda d: d["timepoint"].append(base_timepoint())), names=TOML + ("day 7",))
case("manifest-timepoint-labels-differ-by-spaces", "manifest",
     with_manifest(lambda d: d["timepoint"].append(base_timepoint(label=" day 7 "))), names=TOML + ("day 7",))
case("manifest-timepoint-region_names-without-regions", "manifest",
     with_manifest(lambda d: d["timepoint"][0].pop("regions")), names=TOML + ("region_names",))
case("manifest-region_names-space-1-and-01-merge", "manifest",
     timepoint_key("region_names", {" 1": "core", "01": "penumbra", "2": "other"}), names=TOML + ("region_names",))
case("manifest-region_names-label-huge", "manifest", timepoint_key("region_names", {"99999999999999999999": "far"}),
     names=TOML + ("region_names",))
case("manifest-region_names-controls-in-name", "manifest",
     timepoint_key("region_names", {"1": "core\n\x1b[31mred", "2": "penumbra\u202e", "3": "reference"}), "accept")


def _append(path: Path, text: str, after: str) -> str:
    content = path.read_text()
    assert after in content
    replace_bytes(path, content.replace(after, after + text, 1).encode())
    return str(path)


# ---- paths in the manifest
def _outside_file(folder: Path) -> Path:
    outside = folder.parent / "outside"
    outside.mkdir(exist_ok=True)
    target = outside / "t1.nii"
    if not target.exists():
        shutil.copyfile(folder / "t1.nii", target)
    return target


def _fifo(folder: Path, name: str) -> None:
    os.mkfifo(folder / name)


def _char_device(folder: Path, name: str) -> None:
    """A character device node like /dev/zero (1, 5) inside the study (needs CAP_MKNOD)."""
    os.mknod(folder / name, 0o644 | stat.S_IFCHR, os.makedev(1, 5))


def _can_mknod() -> bool:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        try:
            _char_device(Path(folder), "zero")
        except OSError:
            return False
        return True


CAN_MKNOD = _can_mknod()
#: Time for a job on a FIFO or a device: refusing one is instant, so a hang is found sooner.
SPECIAL_FILE_TIMEOUT_S = 6.0
ANAT = ("study.toml", "anatomical")
case("path-absolute", "paths", timepoint_key("anatomical", "/etc/hostname"), names=ANAT)
case("path-absolute-to-own-file", "paths",
     lambda f: (copy_base_study(f), with_manifest_data(f, anatomical=str((f / "t1.nii").resolve())))[1], names=ANAT)
case("path-dotdot", "paths", lambda f: (copy_base_study(f), _outside_file(f),
                                         with_manifest_data(f, anatomical="../outside/t1.nii"))[2], names=ANAT)
case("path-dotdot-after-subfolder", "paths", timepoint_key("anatomical", "sub/../../outside/t1.nii"), names=ANAT)
case("path-dotdot-staying-inside", "paths",
     lambda f: (copy_base_study(f), (f / "sub").mkdir(), with_manifest_data(f, anatomical="sub/../t1.nii"))[2], "accept")
case("path-symlink-out", "paths",
     lambda f: (copy_base_study(f), os.symlink(_outside_file(f), f / "link.nii"),
                with_manifest_data(f, anatomical="link.nii"))[2], names=ANAT)
case("path-symlink-inside", "paths",
     lambda f: (copy_base_study(f), os.symlink("t1.nii", f / "link.nii"), with_manifest_data(f, anatomical="link.nii"))[2],
     "accept")
case("path-symlink-loop", "paths",
     lambda f: (copy_base_study(f), os.symlink("loop.nii", f / "loop.nii"), with_manifest_data(f, anatomical="loop.nii"))[2],
     names=ANAT)
case("path-symlink-to-dev-zero", "paths",
     lambda f: (copy_base_study(f), os.symlink("/dev/zero", f / "zero.nii"), with_manifest_data(f, anatomical="zero.nii"))[2],
     names=ANAT, timeout_s=SPECIAL_FILE_TIMEOUT_S)
case("path-dicom-folder-with-link-out", "paths",
     mr_dicom(lambda files: os.symlink("/etc/hostname", files[0].parent / "extra.dcm")), names=MR)
case("path-fifo-nifti", "paths",
     lambda f: (copy_base_study(f), _fifo(f, "fifo.nii"), with_manifest_data(f, anatomical="fifo.nii"))[2],
     names=("fifo.nii",), timeout_s=SPECIAL_FILE_TIMEOUT_S)
case("path-fifo-dicom", "paths",
     lambda f: (copy_base_study(f), _fifo(f, "fifo"), with_manifest_data(f, anatomical="fifo"))[2], names=("fifo",),
     timeout_s=SPECIAL_FILE_TIMEOUT_S)
case("path-fifo-model", "paths",
     lambda f: (copy_base_study(f), _fifo(f, "m.onnx"), shutil.copyfile(_card_path(), f / "m.json"),
                with_manifest_data(f, model=[{"onnx": "m.onnx", "card": "m.json"}]))[3],
     names=("m.onnx",), expect_by_command={"render": "accept"}, timeout_s=SPECIAL_FILE_TIMEOUT_S)
if CAN_MKNOD:
    case("path-char-device-nifti", "paths",
         lambda f: (copy_base_study(f), _char_device(f, "zero.nii"), with_manifest_data(f, anatomical="zero.nii"))[2],
         names=("zero.nii",), timeout_s=SPECIAL_FILE_TIMEOUT_S)
    case("path-char-device-nifti-gz", "paths",
         lambda f: (copy_base_study(f), _char_device(f, "zero.nii.gz"), with_manifest_data(f, anatomical="zero.nii.gz"))[2],
         names=("zero.nii.gz",), timeout_s=SPECIAL_FILE_TIMEOUT_S)
    case("path-char-device-dicom", "paths",
         lambda f: (copy_base_study(f), _char_device(f, "zero"), with_manifest_data(f, anatomical="zero"))[2],
         names=("zero",), timeout_s=SPECIAL_FILE_TIMEOUT_S)
case("path-folder-as-nifti", "paths",
     lambda f: (copy_base_study(f), (f / "dir.nii").mkdir(), with_manifest_data(f, anatomical="dir.nii"))[2],
     names=("dir.nii",))
case("path-the-study-folder-itself", "paths", timepoint_key("anatomical", "."), names=("/study:", "DICOM"))
case("path-the-manifest-as-image", "paths", timepoint_key("anatomical", "study.toml"), names=("study.toml",))
case("path-nul-byte", "paths", timepoint_key("anatomical", "t1\u0000.nii"), names=ANAT)
case("path-very-long", "paths", timepoint_key("anatomical", "a" * 5000 + ".nii"), names=("aaaa.nii", "too long"))
case("path-with-newline-and-escape", "paths", timepoint_key("anatomical", "t1\n\x1b[2J.nii"), names=("\\n", "\\x1b"))


def with_manifest_data(folder: Path, model: list[dict[str, str]] | None = None, **timepoint: Any) -> str:
    data = base_manifest()
    data["timepoint"][0].update(timepoint)
    if model is not None:
        data["model"] = model
    write_toml(folder / "study.toml", data)
    return manifest_of(folder)


# ---- the STUDY argument itself
case("study-missing", "study-argument", lambda f: str(f / "nope" / "study.toml"), names=("study.toml",))
case("study-folder-without-manifest", "study-argument",
     lambda f: ((f.parent / "no-manifest-here").mkdir(parents=True), str(f.parent / "no-manifest-here"))[1], names=("no-manifest-here",))
case("study-manifest-is-a-folder", "study-argument", lambda f: ((f / "study.toml").mkdir(parents=True), str(f / "study.toml"))[1],
     names=("study.toml",))
case("study-manifest-is-a-fifo", "study-argument",
     lambda f: (copy_base_study(f), (f / "study.toml").unlink(), os.mkfifo(f / "study.toml"), str(f / "study.toml"))[3],
     names=("study.toml",),
     timeout_s=SPECIAL_FILE_TIMEOUT_S)
case("study-manifest-links-to-dev-zero", "study-argument",
     lambda f: (copy_base_study(f), (f / "study.toml").unlink(), os.symlink("/dev/zero", f / "study.toml"),
                str(f / "study.toml"))[3], names=("study.toml",))
case("study-dev-zero", "study-argument", lambda f: "/dev/zero", names=("/dev/zero",), timeout_s=SPECIAL_FILE_TIMEOUT_S)
case("study-dev-null", "study-argument", lambda f: "/dev/null", names=("/dev/null",), timeout_s=SPECIAL_FILE_TIMEOUT_S)
case("study-bare-nifti", "study-argument", lambda f: (copy_base_study(f), str(f / "t1.nii"))[1], "accept")
case("study-bare-dicom-folder", "study-argument", lambda f: (mr_dicom()(f), str(f / "t1_dicom"))[1], "accept")


# ---- label maps
REG = ("regions.nii.gz",)
case("regions-fractional-labels", "labels", regions_array(lambda: hb.region_data().astype(np.float32) * 0.5), names=REG)
case("regions-negative-label", "labels", regions_array(lambda: hb.region_data() - 1), names=REG)
case("regions-nan", "labels", regions_array(lambda: np.where(hb.region_data() == 1, np.nan, 0).astype(np.float32)),
     names=REG)
case("regions-4d", "labels", regions_array(lambda: np.stack([hb.region_data()] * 2, axis=-1)), names=REG)
case("regions-float-huge", "labels", regions_array(lambda: (hb.region_data() * 1e20).astype(np.float64)), names=REG)
case("regions-uint64-max", "labels",
     regions_array(lambda: _with_label(np.uint64, np.iinfo(np.uint64).max)), names=REG)
case("regions-other-grid", "labels",
     regions_array(lambda: np.ones(hb.SMALL_SHAPE, np.uint8), hb.small_affine, names={"1": "core"}), "accept")
case("regions-all-zero", "labels", regions_array(lambda: np.zeros(hb.ANAT_SHAPE, np.uint8), names={}), "accept")
case("regions-no-overlap-with-anatomy", "labels",
     regions_array(lambda: np.ones(hb.SMALL_SHAPE, np.uint8),
                   lambda: hb.small_affine() @ np.array([[1, 0, 0, 500], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]),
                   names={"1": "core"}), "accept")
case("regions-label-1e8", "labels",
     regions_array(lambda: _with_label(np.int32, 100_000_000)), "accept")
case("regions-label-2e9", "labels",
     regions_array(lambda: _with_label(np.int32, 2_000_000_000)), "accept")
case("regions-30000-labels", "labels",  # refused as an honest limit (at most 1000 regions), not a hang
     regions_array(lambda: (np.arange(32 * 32 * 32).reshape(32, 32, 32) % 30000 + 1).astype(np.int32),
                   lambda: hb.grid_affine((32, 32, 32), 1.5), names={}), names=REG)
case("regions-300-labels", "labels",
     regions_array(lambda: (np.arange(np.prod(hb.ANAT_SHAPE)).reshape(hb.ANAT_SHAPE) % 300 + 1).astype(np.int16),
                   names={}), "accept")


def _with_label(dtype: Any, value: int) -> np.ndarray:
    """The base label map (labels 1–3) in ``dtype`` with label 1 replaced by ``value``."""
    labels = hb.region_data().astype(dtype)
    labels[labels == 1] = value
    return labels


# ---- prediction models ([[model]])
def _card_path() -> Path:
    return hb.ROOT / "resources" / "models" / "penumbra_recovery_demo.json"


def _onnx_path() -> Path:
    return hb.ROOT / "resources" / "models" / "penumbra_recovery_demo.onnx"


def model_case(onnx: bytes | None, card: bytes | None, entry: dict[str, Any] | None = None) -> Callable[[Path], str]:
    def build(folder: Path) -> str:
        copy_base_study(folder)
        (folder / "models").mkdir()
        (folder / "models" / "m.onnx").write_bytes(onnx if onnx is not None else _onnx_path().read_bytes())
        (folder / "models" / "m.json").write_bytes(card if card is not None else _card_path().read_bytes())
        data = base_manifest()
        data["model"] = [entry if entry is not None else {"onnx": "models/m.onnx", "card": "models/m.json"}]
        write_toml(folder / "study.toml", data)
        return manifest_of(folder)
    return build


RENDER_IGNORES_MODELS = {"render": "accept"}  # render draws images only; it never loads the models
case("model-valid-bundled-copy", "models", model_case(None, None), "accept")
case("model-onnx-garbage", "models", model_case(_random_bytes(4000), None), names=("m.onnx",),
     expect_by_command=RENDER_IGNORES_MODELS)
case("model-onnx-empty", "models", model_case(b"", None), names=("m.onnx",), expect_by_command=RENDER_IGNORES_MODELS)
case("model-onnx-pickle", "models", model_case(b"\x80\x04\x95" + _random_bytes(100), None), names=("m.onnx",),
     expect_by_command=RENDER_IGNORES_MODELS)
case("model-onnx-text", "models", model_case(b"this is not a model\n", None), names=("m.onnx",),
     expect_by_command=RENDER_IGNORES_MODELS)
case("model-card-garbage", "models", model_case(None, b"{not json"), names=("m.json",), expect_by_command=RENDER_IGNORES_MODELS)
case("model-card-empty-object", "models", model_case(None, b"{}"), names=("m.json",), expect_by_command=RENDER_IGNORES_MODELS)
case("model-card-not-utf8", "models", model_case(None, b"\xff\xfe{\x00"), names=("m.json",),
     expect_by_command=RENDER_IGNORES_MODELS)
case("model-card-nan", "models",
     model_case(None, _card_path().read_text().replace('"card_format": 1', '"card_format": NaN').encode()),
     names=("m.json",), expect_by_command=RENDER_IGNORES_MODELS)
case("model-onnx-missing-file", "models",
     model_case(None, None, {"onnx": "models/none.onnx", "card": "models/m.json"}), names=("none.onnx",))
case("model-entry-unknown-key", "models",
     model_case(None, None, {"onnx": "models/m.onnx", "card": "models/m.json", "weights": "x"}), names=TOML + ("weights",))
case("model-entry-missing-card", "models", model_case(None, None, {"onnx": "models/m.onnx"}), names=TOML + ("card",))
case("model-onnx-endless-loop", "models", model_case(hb.endless_loop_onnx(), None), names=("m.onnx",),
     expect_by_command=RENDER_IGNORES_MODELS)
case("model-entry-absolute-path", "models",
     model_case(None, None, {"onnx": str(_onnx_path()), "card": "models/m.json"}), names=TOML + ("onnx",))
case("model-entry-dotdot", "models",
     model_case(None, None, {"onnx": "../m.onnx", "card": "models/m.json"}), names=TOML + ("onnx",))


# ---- messages: names with control characters must not break the line
def _hostile_folder_name(folder: Path) -> Path:
    return folder.parent / (folder.name + "-new\nline-\x1b[31mred-\x1b]0;title\x07")


case("message-folder-name-with-controls-missing-image", "messages",
     lambda f: (copy_base_study(_hostile_folder_name(f)), (_hostile_folder_name(f) / "t1.nii").unlink(),
                str(_hostile_folder_name(f) / "study.toml"))[2], names=("\\n", "\\x1b[31m", "t1.nii"))
case("message-folder-name-with-controls-ok", "messages",
     lambda f: (copy_base_study(_hostile_folder_name(f)), str(_hostile_folder_name(f) / "study.toml"))[1], "accept")
case("message-label-with-controls-bad-day", "messages",
     with_manifest(lambda d: d["timepoint"][0].update(label="day\n7\x1b[2J", day="seven")), names=("\\n", "\\x1b[2J", "day"))
case("message-unicode-names", "messages",
     lambda f: (copy_base_study(f.parent / "Ünïcødé-研究"), str(f.parent / "Ünïcødé-研究" / "study.toml"))[1], "accept")


# -- running and checking ----------------------------------------------------------------------------

def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry under ``folder`` (links not followed): relative name → (size, mtime ns)."""
    entries: dict[str, tuple[int, int]] = {}
    if not folder.exists():
        return entries
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in (*dirnames, *filenames):
            path = Path(dirpath) / name
            info = path.lstat()
            entries[str(path.relative_to(folder))] = (info.st_size if stat.S_ISREG(info.st_mode) else 0, info.st_mtime_ns)
    return entries


@dataclass
class Prepared:
    case: Case
    command: str
    study_argument: str
    folder: Path
    out_dir: Path
    output: Path
    before: dict[str, tuple[int, int]]


def _job_key(c: Case, command: str) -> str:
    return f"{c.id}:{command}"


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory) -> dict[str, tuple[Prepared, hb.JobResult]]:
    """Build every case once per command and run all the jobs (two runner processes)."""
    base = tmp_path_factory.mktemp("hostile")
    prepared: dict[str, Prepared] = {}
    jobs: list[Job] = []
    for index, c in enumerate(CASES):
        for command in c.commands:
            job_dir = base / f"{index:03d}-{command}"
            job_dir.mkdir()
            folder = job_dir / "study"
            argument = c.build(folder)
            out_dir = job_dir / "out"
            out_dir.mkdir()
            output = out_dir / OUTPUT_NAME[command]
            argv = [command, argument, "-o", str(output)]
            key = _job_key(c, command)
            prepared[key] = Prepared(c, command, argument, job_dir, out_dir, output, _snapshot(job_dir / "study"))
            jobs.append(Job(key, argv, c.timeout_s))
    results = run_jobs(jobs, base / "runner", workers=2)
    dump = os.environ.get("HOSTILE_DUMP")  # a file to write every job's result to, for triage
    if dump:
        Path(dump).write_text(json.dumps({key: dict(vars(results[key]), expect=prepared[key].case.expectation(
            prepared[key].command), names=prepared[key].case.names, left=sorted(os.listdir(prepared[key].out_dir)))
            for key in prepared}, indent=1))
    return {key: (prepared[key], results[key]) for key in prepared}


def _params():
    for c in CASES:
        for command in c.commands:
            reason = c.xfail.get(command, c.xfail.get("*"))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(_job_key(c, command), id=f"{c.klass}/{c.id}/{command}", marks=marks)


def _describe(result: hb.JobResult) -> str:
    return (f"outcome={result.outcome} exit={result.code!r} {result.seconds:.1f}s\n"
            f"stderr={result.stderr!r}\nstdout={result.stdout[:300]!r}\n{result.detail}")


def check_refusal(prep: Prepared, result: hb.JobResult) -> None:
    info = _describe(result)
    assert result.outcome == "done", info
    assert result.code == 2, info
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stderr.endswith("\n"), f"not exactly one stderr line\n{info}"
    line = lines[0]
    assert line.startswith("error: "), info
    assert "Traceback" not in line and not UNEXPECTED.search(line), info
    if "memory" not in prep.case.id:  # tiny inputs: running out of memory is never the right refusal
        assert "not enough memory" not in line, info
    assert line.isprintable(), f"raw control characters in the error line\n{info}"
    assert not TEMP_NAME.search(line), f"a temporary file name in the error line\n{info}"
    for name in prep.case.names:
        assert name in line, f"the error does not name {name!r}\n{info}"
    assert not prep.output.exists() and not prep.output.is_symlink(), f"output written\n{info}"
    assert sorted(os.listdir(prep.out_dir)) == [], f"left in the output folder: {os.listdir(prep.out_dir)}\n{info}"
    assert _snapshot(prep.folder / "study") == prep.before, f"the study folder changed\n{info}"


def check_acceptance(prep: Prepared, result: hb.JobResult) -> None:
    info = _describe(result)
    assert result.outcome == "done", info
    assert result.code == 0, info
    assert result.stderr == "", f"something on stderr on success\n{info}"
    assert sorted(os.listdir(prep.out_dir)) == [prep.output.name], f"output folder: {os.listdir(prep.out_dir)}\n{info}"
    assert result.stdout.strip() == str(prep.output), info
    check_sane_output(prep.command, prep.output)
    assert _snapshot(prep.folder / "study") == prep.before, f"the study folder changed\n{info}"


def _no_constant(name: str) -> Any:
    raise AssertionError(f"stats JSON holds {name} (not JSON; a number must be finite or null)")


def check_sane_output(command: str, output: Path) -> None:
    payload = output.read_bytes()
    if command == "stats":
        data = json.loads(payload, parse_constant=_no_constant)
        assert data["timepoints"], data
    elif command == "render":
        from PIL import Image

        with Image.open(output) as image:
            image.verify()
        with Image.open(output) as image:
            assert image.format == "PNG" and min(image.size) >= 100, image.size
    else:
        assert payload.startswith(b"%PDF-") and b"%%EOF" in payload[-1024:]
        from pypdf import PdfReader

        assert len(PdfReader(output).pages) >= 1


@pytest.mark.slow  # the whole catalogue runs once, about 100 s on two cores
@pytest.mark.parametrize("key", list(_params()))
def test_hostile_input(hostile_runs, key):
    prep, result = hostile_runs[key]
    if prep.case.expectation(prep.command) == "refuse":
        check_refusal(prep, result)
    else:
        check_acceptance(prep, result)


def test_suite_covers_every_class_and_command():
    classes = {c.klass for c in CASES}
    assert {"nifti", "dicom", "pet", "manifest", "paths", "labels", "models", "messages"} <= classes
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"
    assert all(c.commands == COMMANDS for c in CASES)


# -- outputs that are not regular files (viewer/core/io/atomic.py) -----------------------------------


@pytest.fixture(scope="module")
def small_study(tmp_path_factory) -> Path:
    return copy_base_study(tmp_path_factory.mktemp("outputs") / "study")


def _cli(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].isprintable(), err
    assert not TEMP_NAME.search(lines[0]) and not UNEXPECTED.search(lines[0]), err
    return lines[0]


def _read_fifo(path: Path, sink: list[bytes]) -> threading.Thread:
    def read() -> None:
        with open(path, "rb") as handle:
            sink.append(handle.read())
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("command", COMMANDS)
def test_a_fifo_output_is_written_in_place(tmp_path, small_study, capsys, command):
    fifo = tmp_path / OUTPUT_NAME[command]
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = _read_fifo(fifo, received)
    code, out, err = _cli([command, small_study, "-o", fifo], capsys)
    reader.join(timeout=60)
    assert code == 0 and err == "", err
    assert out == "", "the path of an output written in place is not printed (it would mix into the stream)"
    assert stat.S_ISFIFO(fifo.lstat().st_mode), "the FIFO was replaced"
    assert os.listdir(tmp_path) == [fifo.name], "no temporary file beside a FIFO"
    payload = received[0]
    assert {"stats": payload[:1] == b"{", "render": payload[:8] == b"\x89PNG\r\n\x1a\n",
            "report": payload[:5] == b"%PDF-"}[command], payload[:20]
    if command == "stats":
        json.loads(payload)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_link_to_dev_null_is_kept(tmp_path, small_study, capsys, command):
    link = tmp_path / OUTPUT_NAME[command]
    link.symlink_to("/dev/null")
    code, out, err = _cli([command, small_study, "-o", link], capsys)
    assert code == 0 and err == "" and out == "", (out, err)
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert os.listdir(tmp_path) == [link.name]


def test_a_link_to_a_regular_file_keeps_the_link_and_replaces_the_file_atomically(tmp_path, small_study, capsys):
    real = tmp_path / "real"
    real.mkdir()
    target = real / "stats.json"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "latest.json"
    link.symlink_to(Path("real") / "stats.json")
    before = target.stat().st_ino
    code, out, err = _cli(["stats", small_study, "-o", link], capsys)
    assert code == 0 and err == "" and out.strip() == str(link), (out, err)
    assert link.is_symlink() and os.readlink(link) == str(Path("real") / "stats.json")
    assert json.loads(target.read_text())["timepoints"]
    assert target.stat().st_ino != before, "replaced by rename (atomic), not rewritten in place"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640, "the file's permissions are kept"
    assert sorted(os.listdir(tmp_path)) == ["latest.json", "real"] and os.listdir(real) == ["stats.json"]


def test_a_dangling_link_creates_its_file_or_is_refused_when_its_folder_is_missing(tmp_path, small_study, capsys):
    link = tmp_path / "out.json"
    link.symlink_to("made.json")
    code, _, err = _cli(["stats", small_study, "-o", link], capsys)
    assert code == 0 and err == "", err
    assert link.is_symlink() and json.loads((tmp_path / "made.json").read_text())
    nowhere = tmp_path / "nowhere.json"
    nowhere.symlink_to(tmp_path / "missing-folder" / "x.json")
    code, _, err = _cli(["stats", small_study, "-o", nowhere], capsys)
    assert code == 2 and "nowhere.json" in _one_error_line(err) and "does not exist" in err
    assert not (tmp_path / "missing-folder").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_folder_as_output_is_refused(tmp_path, small_study, capsys, command):
    folder = tmp_path / OUTPUT_NAME[command]
    folder.mkdir()
    code, out, err = _cli([command, small_study, "-o", folder], capsys)
    assert code == 2 and out == ""
    assert "is a folder" in _one_error_line(err) and str(folder) in err
    assert os.listdir(folder) == [] and os.listdir(tmp_path) == [folder.name]


def test_a_socket_and_a_link_loop_are_refused(tmp_path, small_study, capsys):
    import socket

    path = tmp_path / "s.json"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        code, _, err = _cli(["stats", small_study, "-o", path], capsys)
        assert code == 2 and "is a socket" in _one_error_line(err)
        assert stat.S_ISSOCK(path.lstat().st_mode)
    finally:
        server.close()
    loop = tmp_path / "loop.json"
    loop.symlink_to("loop.json")
    code, _, err = _cli(["stats", small_study, "-o", loop], capsys)
    assert code == 2 and "link loop" in _one_error_line(err)


@pytest.mark.skipif(not CAN_MKNOD, reason="needs CAP_MKNOD to make a block device node")
def test_a_block_device_is_refused(tmp_path, small_study, capsys):
    node = tmp_path / "disk.json"
    os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(7, 200))  # never opened: refused by its type
    code, _, err = _cli(["stats", small_study, "-o", node], capsys)
    assert code == 2 and "block device" in _one_error_line(err)
    assert stat.S_ISBLK(node.lstat().st_mode)


def _without_dac_override() -> None:
    """preexec_fn: as root, drop CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH from the bounding set so
    that permission bits apply after exec (a read-only folder is read-only for root too)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            os._exit(97)


def test_a_read_only_folder_is_one_line_and_leaves_nothing(tmp_path, small_study):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    script = (
        "import sys\n"
        "from viewer.cli import main\n"
        "from viewer.core.io.atomic import write_text_atomic, OutputError\n"
        "code = [main([c, sys.argv[1], '-o', sys.argv[2] + '/' + n]) for c, n in "
        "(('stats', 'x.json'), ('render', 'x.png'), ('report', 'x.pdf'), ('stats', 'sub/x.json'))]\n"
        "try:\n"
        "    write_text_atomic(sys.argv[2] + '/direct.txt', 'x')\n"
        "except OutputError as exc:\n"
        "    print('error: ' + str(exc), file=sys.stderr); code.append(exc.errno)\n"
        "print(code)\n"
    )
    preexec = _without_dac_override if os.geteuid() == 0 else None
    result = subprocess.run([sys.executable, "-c", script, str(small_study), str(folder)], capture_output=True, text=True,
                            cwd=hb.ROOT, timeout=120, preexec_fn=preexec, env=hb.runner_env(tmp_path), check=False)
    import errno

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"[2, 2, 2, 2, {errno.EACCES}]", (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 5, result.stderr
    for line, name in zip(lines, ("x.json", "x.png", "x.pdf", "sub/x.json", "direct.txt")):
        assert line.startswith("error: ") and str(folder / name) in line and "not writable" in line or \
            "Permission denied" in line, line
        assert not TEMP_NAME.search(line), line
    assert os.listdir(folder) == []


def test_dev_stdout_stays_a_link_and_gets_the_bytes(tmp_path, small_study):
    before = os.lstat("/dev/stdout")
    piped = subprocess.run([sys.executable, "-m", "viewer", "stats", str(small_study), "-o", "/dev/stdout"],
                           capture_output=True, text=True, cwd=hb.ROOT, timeout=120, env=hb.runner_env(tmp_path), check=False)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr
    assert json.loads(piped.stdout)["timepoints"], "the JSON alone (no path line after it)"
    redirected = tmp_path / "redirected.json"
    with open(redirected, "w") as handle:
        inode = os.fstat(handle.fileno()).st_ino
        done = subprocess.run([sys.executable, "-m", "viewer", "stats", str(small_study), "-o", "/dev/stdout"],
                              stdout=handle, stderr=subprocess.PIPE, text=True, cwd=hb.ROOT, timeout=120,
                              env=hb.runner_env(tmp_path), check=False)
    assert done.returncode == 0 and done.stderr == ""
    assert redirected.stat().st_ino == inode, "the shell's file is written through, not replaced"
    assert json.loads(redirected.read_text())["timepoints"]
    after = os.lstat("/dev/stdout")
    assert stat.S_ISLNK(after.st_mode) and (after.st_ino, after.st_dev) == (before.st_ino, before.st_dev)
    assert sorted(os.listdir(tmp_path)) == ["redirected.json"]


def test_output_target_rules(tmp_path):
    assert output_target(tmp_path / "new.json").in_place is False
    assert output_target("/dev/null").in_place is True
    assert output_target("/dev/stdout").in_place is True
    (tmp_path / "file.json").write_text("x")
    (tmp_path / "link.json").symlink_to("file.json")
    resolved = output_target(tmp_path / "link.json")
    assert resolved.in_place is False and resolved.write_path == (tmp_path / "file.json").resolve()
    with pytest.raises(OutputError, match="NUL"):
        output_target(tmp_path / "a\0b")
    with pytest.raises(OutputError, match="not a folder"):
        output_target(tmp_path / "file.json" / "x.json")
    error = OutputError(tmp_path / "x", "cannot be written (No space left on device)", OSError(28, "No space left on device"))
    assert isinstance(error, OSError) and isinstance(error, ViewerError)
    assert error.errno == 28 and error.strerror == "No space left on device" and str(error).startswith(str(tmp_path))


def test_write_errors_name_the_output_not_the_temporary_file(tmp_path, monkeypatch):
    from viewer.core.io import atomic

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full_disk)
    target = tmp_path / "out.json"
    with pytest.raises(OutputError) as caught:
        write_text_atomic(target, "{}")
    assert str(caught.value) == f"{target}: cannot be written (No space left on device)"
    assert os.listdir(tmp_path) == []


def test_folders_follow_the_same_rules(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "old.txt").write_text("old")
    link = tmp_path / "link"
    link.symlink_to("real")
    write_folder_atomically(link, lambda tmp: (tmp / "new.txt").write_text("new"))
    assert link.is_symlink() and sorted(os.listdir(real)) == ["new.txt"]
    assert sorted(os.listdir(tmp_path)) == ["link", "real"]
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    with pytest.raises(OutputError, match="not a folder"):
        write_folder_atomically(a_file, lambda tmp: None)
    assert a_file.read_text() == "keep me" and sorted(os.listdir(tmp_path)) == ["file", "link", "real"]


# -- messages (viewer/core/errors.py, viewer/cli.py) ---------------------------------------------------

def test_one_line_escapes_control_characters_and_keeps_the_rest():
    assert one_line("plain  text, two spaces, ünïcødé ☃") == "plain  text, two spaces, ünïcødé ☃"
    assert one_line("a\nb\rc\td") == "a\\nb\\rc\\td"
    assert one_line("\x1b[2J\x1b]0;title\x07\x7f\x85end") == "\\x1b[2J\\x1b]0;title\\x07\\x7f\\x85end"
    assert one_line("line\u2028sep \u202eevil\u2066") == "line\\u2028sep \\u202eevil\\u2066"
    assert one_line("  padded \n") == "padded"
    assert str(ViewerError("x: a\nb")) == "x: a\\nb"


def test_argument_errors_are_escaped(capsys):
    code, _, err = _cli(["render", "study.toml", "--view", "ax\x1b[31mial\n", "-o", "x.png"], capsys)
    assert code == 2 and "\\x1b[31m" in _one_error_line(err) and "\\n" in err


def test_library_warnings_and_log_records_never_reach_stderr(small_study, capsys, monkeypatch):
    import logging
    import warnings

    import viewer.core.analysis as stats_module

    real = stats_module.compute_study_stats

    def noisy(*args, **kwargs):
        warnings.warn("a library's RuntimeWarning", RuntimeWarning)
        logging.getLogger("nibabel.global").error("a library's log record")
        logging.getLogger("some.library").warning("another one")
        return real(*args, **kwargs)

    monkeypatch.setattr(stats_module, "compute_study_stats", noisy)
    before = logging.root.manager.disable
    code, out, err = _cli(["stats", small_study], capsys)
    assert code == 0 and err == "", err
    assert json.loads(out)["timepoints"]
    assert logging.root.manager.disable == before, "logging is restored after the command"


@pytest.mark.parametrize("raised, expected", [
    (PermissionError(13, "Permission denied", "/data/secret.nii"), "error: /data/secret.nii: Permission denied"),
    (MemoryError(), "not enough memory to compute its statistics"),
    (ValueError("bad\nvalue \x1b[2J"), "unexpected ValueError: bad\\nvalue \\x1b[2J"),
], ids=["oserror-names-its-file", "memory-names-the-study", "a-bug-stays-one-escaped-line"])
def test_fallbacks_are_one_line(small_study, capsys, monkeypatch, raised, expected):
    import viewer.core.analysis as stats_module

    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(stats_module, "compute_study_stats", fail)
    code, out, err = _cli(["stats", small_study], capsys)
    lines = err.splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and lines[0].isprintable(), err
    assert expected in lines[0], err
    if not isinstance(raised, ValueError):
        assert str(small_study) in lines[0] or "/data/secret.nii" in lines[0]
