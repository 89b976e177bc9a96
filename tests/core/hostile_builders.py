"""Hostile inputs for the command line (issue 13) and the runner that executes them.

Two halves:

- **builders** (used by ``tests/core/test_hostile_inputs.py``): a tiny valid study
  (:func:`write_base_study`: 2 mm anatomy, ¹⁹F, PET, regions, one timepoint) and the ways to
  break it — NIfTI header fields patched in the file's bytes (:func:`patch_nifti`), DICOM
  series with tags changed (:func:`write_mr_dicom`, :func:`write_pet_dicom`,
  :func:`mutate_dicom`), manifests written from data (wrong types, NaN, paths) or as raw
  text (malformed TOML).
- **the runner** (``python -m tests.core.hostile_builders JOBS.json RESULTS.jsonl``): runs
  ``viewer.cli.main(argv)`` for every job of the list in one process — starting Python with
  numpy, pydicom and matplotlib costs about a second, so one process per job would make the
  suite slow. Each job's file descriptors 1 and 2 are captured (so C libraries writing to
  stderr are seen too), and a watchdog (:func:`faulthandler.dump_traceback_later`) ends the
  process when one job exceeds its time; the parent (:func:`run_jobs`) then records that job
  as timed out and starts a new runner on the jobs after it. The parent also applies the
  memory limit (``RLIMIT_AS``) to the runner.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: Memory a runner may map (RLIMIT_AS): no hostile input may need more than this tiny study does.
MEMORY_LIMIT_BYTES = 3 << 30
#: Time one job may take before it counts as a hang (a legitimate job on these inputs takes < 3 s).
JOB_TIMEOUT_S = 15.0

# -- the base study ------------------------------------------------------------------------------

ANAT_SHAPE = (24, 24, 16)
ANAT_SPACING = (2.0, 2.0, 2.0)
SMALL_SHAPE = (12, 12, 8)
SMALL_SPACING = (4.0, 4.0, 4.0)


def _phantoms():
    from tests.core.phantoms import (
        MARKER_WORLD,
        blob_function,
        centered_affine,
        world_grid,
    )

    return MARKER_WORLD, blob_function, centered_affine, world_grid


def anat_affine():
    _, _, centered_affine, _ = _phantoms()
    return centered_affine(ANAT_SHAPE, ANAT_SPACING, (0, 0, 0))


def small_affine():
    _, _, centered_affine, _ = _phantoms()
    return centered_affine(SMALL_SHAPE, SMALL_SPACING, (0, 0, 0))


def grid_affine(shape, spacing: float):
    """A centred grid of ``shape`` with isotropic ``spacing`` mm."""
    _, _, centered_affine, _ = _phantoms()
    return centered_affine(shape, (spacing,) * 3, (0, 0, 0))


def anatomy_data():
    import numpy as np

    _, blob_function, _, world_grid = _phantoms()
    return blob_function(world_grid(ANAT_SHAPE, anat_affine())).astype(np.float32)


def fluorine_data():
    import numpy as np

    marker, _, _, world_grid = _phantoms()
    world = world_grid(SMALL_SHAPE, small_affine())
    signal = np.where(np.linalg.norm(world - marker, axis=-1) < 6, 60.0, 0.0)
    noise = np.random.default_rng(0).normal(0, 1, (2, *SMALL_SHAPE))
    return np.hypot(signal + noise[0], noise[1]).astype(np.float32)


def pet_data():
    import numpy as np

    _, blob_function, _, world_grid = _phantoms()
    return (blob_function(world_grid(SMALL_SHAPE, small_affine())) / 50 + 0.1).astype(np.float32)


def region_data():
    import numpy as np

    marker, _, _, world_grid = _phantoms()
    distance = np.linalg.norm(world_grid(ANAT_SHAPE, anat_affine()) - marker, axis=-1)
    labels = np.zeros(ANAT_SHAPE, np.int16)
    labels[distance < 6] = 1
    labels[(distance >= 6) & (distance < 10)] = 2
    labels[:3, :3, :3] = 3  # a "reference" corner
    return labels


def save_nii(data, path: Path, affine=None, *, qform: bool = True, sform: bool = True, dtype=None) -> Path:
    """A NIfTI-1 file written with nibabel (``.nii`` single file or ``.nii.gz``)."""
    import nibabel as nib
    import numpy as np

    affine = anat_affine() if affine is None else affine
    array = np.asarray(data) if dtype is None else np.asarray(data).astype(dtype)
    img = nib.Nifti1Image(array, affine, dtype=array.dtype)
    img.set_sform(affine, code=1 if sform else 0)
    img.set_qform(affine, code=1 if qform else 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def base_timepoint(**changes: Any) -> dict[str, Any]:
    timepoint: dict[str, Any] = {
        "label": "day 7", "day": 7, "anatomical": "t1.nii", "fluorine": "f19.nii.gz",
        "pet": "pet.nii.gz", "pet_units": "SUV", "regions": "regions.nii.gz",
        "region_names": {"1": "core", "2": "penumbra", "3": "reference"},
    }
    timepoint.update(changes)
    return {k: v for k, v in timepoint.items() if v is not None}


def base_manifest(**tables: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "study": {"id": "hostile-001", "patient": "Test^Patient", "condition": "test"},
        "calibration": {"fluorine_atoms_per_cell": 1.0e12, "reference_fluorine_mM": 20.0},
        "timepoint": [base_timepoint()],
    }
    manifest.update(tables)
    return {k: v for k, v in manifest.items() if v is not None}


def write_base_images(root: Path) -> None:
    """The images of the base study (anatomy as a single-file ``.nii`` so headers can be patched)."""
    root.mkdir(parents=True, exist_ok=True)
    save_nii(anatomy_data(), root / "t1.nii")
    save_nii(fluorine_data(), root / "f19.nii.gz", small_affine())
    save_nii(pet_data(), root / "pet.nii.gz", small_affine())
    save_nii(region_data(), root / "regions.nii.gz")


def write_toml(path: Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as TOML without validating it (tomli_w writes nan, inf, any type)."""
    import tomli_w

    path.write_text(tomli_w.dumps(_plain(data)), encoding="utf-8")
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_base_study(root: Path, manifest: Mapping[str, Any] | None = None) -> Path:
    """The valid tiny study at ``root`` (or with the given manifest data); returns study.toml."""
    write_base_images(root)
    return write_toml(root / "study.toml", manifest if manifest is not None else base_manifest())


_TEMPLATE: dict[str, Path] = {}


def template_folder(name: str) -> Path:
    """A folder for templates built once per process, removed when the process ends."""
    if "root" not in _TEMPLATE:
        import atexit

        _TEMPLATE["root"] = Path(tempfile.mkdtemp(prefix="hostile-templates-"))
        atexit.register(shutil.rmtree, _TEMPLATE["root"], True)
    return _TEMPLATE["root"] / name


def copy_base_study(root: Path) -> Path:
    """The base study's images copied to ``root`` (built once per process), with its manifest."""
    if "base" not in _TEMPLATE:
        _TEMPLATE["base"] = template_folder("base") / "study"
        write_base_study(_TEMPLATE["base"])
    shutil.copytree(_TEMPLATE["base"], root)
    return root / "study.toml"


# -- NIfTI header patches ------------------------------------------------------------------------

#: NIfTI-1 header fields: (byte offset, struct format) — nifti1.h.
NIFTI1_FIELDS: dict[str, tuple[int, str]] = {
    "sizeof_hdr": (0, "i"), "dim": (40, "8h"), "datatype": (70, "h"), "bitpix": (72, "h"),
    "pixdim": (76, "8f"), "vox_offset": (108, "f"), "scl_slope": (112, "f"), "scl_inter": (116, "f"),
    "qform_code": (252, "h"), "sform_code": (254, "h"), "quatern": (256, "3f"), "qoffset": (268, "3f"),
    "srow_x": (280, "4f"), "srow_y": (296, "4f"), "srow_z": (312, "4f"), "magic": (344, "4s"),
}


def patch_nifti(path: Path, **fields: Any) -> Path:
    """Overwrite header fields of a little-endian single-file NIfTI-1 in place.

    A value is one number/bytes, or a dict {index: value} for array fields (``dim``,
    ``pixdim``, ``srow_x``…), e.g. ``patch_nifti(p, pixdim={1: 0.0}, sform_code=0)``.
    """
    payload = bytearray(path.read_bytes())
    for name, value in fields.items():
        offset, fmt = NIFTI1_FIELDS[name]
        current = list(struct.unpack_from("<" + fmt, payload, offset))
        if isinstance(value, dict):
            for index, item in value.items():
                current[index] = item
        elif isinstance(value, (list, tuple)):
            current = list(value)
        else:
            current = [value]
        struct.pack_into("<" + fmt, payload, offset, *current)
    path.unlink()
    path.write_bytes(bytes(payload))
    return path


def replace_bytes(path: Path, payload: bytes) -> Path:
    """Give ``path`` new content as a new file (never through a shared hard link)."""
    if path.exists() or path.is_symlink():
        path.unlink()
    path.write_bytes(payload)
    return path


# -- DICOM series --------------------------------------------------------------------------------

MR_SHAPE = (16, 16, 6)


def write_mr_dicom(folder: Path) -> list[Path]:
    """A classic single-frame MR series (16×16×6, 2×2×3 mm); files in slice order."""
    import numpy as np

    from tests.core.phantoms import centered_affine
    from viewer.core.io.dicom_write import write_dicom_series
    from viewer.core.volume import Volume

    data = (np.arange(np.prod(MR_SHAPE), dtype=np.float32).reshape(MR_SHAPE) % 97) + 10
    volume = Volume.from_array(data, centered_affine(MR_SHAPE, (2, 2, 3), (0, 0, 0)))
    return write_dicom_series(volume, folder, series_description="T1 hostile")


def pet_tags(**changes: Any):
    from viewer.core.io.dicom_write import PetTags

    values: dict[str, Any] = {"weight_kg": 70.0, "dose_bq": 3.7e8, "injection": datetime(2026, 3, 9, 13, 1),
                              "series": datetime(2026, 3, 9, 14, 1)}
    values.update(changes)
    return PetTags(**values)


def write_pet_dicom(folder: Path, **tag_changes: Any) -> list[Path]:
    """A PT series with SUV tags (12×12×8, 4 mm), values in SUV; files in slice order."""
    from viewer.core.io.dicom_write import write_dicom_series
    from viewer.core.volume import Volume

    volume = Volume.from_array(pet_data(), small_affine(), role="pet")
    return write_dicom_series(volume, folder, modality="PT", pet=pet_tags(**tag_changes))


def mutate_dicom(files: Sequence[Path], change: Callable[[Any], None], which: str = "all") -> None:
    """Apply ``change(ds)`` to the files (``all``, ``first``, ``middle``, ``last``) and save them,
    with pydicom's value validation off (the point is to write invalid values)."""
    import pydicom
    from pydicom import config

    chosen = {"all": list(files), "first": [files[0]], "middle": [files[len(files) // 2]], "last": [files[-1]]}[which]
    saved = config.settings.writing_validation_mode, config.settings.reading_validation_mode
    config.settings.writing_validation_mode = config.IGNORE
    config.settings.reading_validation_mode = config.IGNORE
    try:
        for path in chosen:
            ds = pydicom.dcmread(path)
            change(ds)
            ds.save_as(path, enforce_file_format=False)
    finally:
        config.settings.writing_validation_mode, config.settings.reading_validation_mode = saved


def set_raw(keyword: str, vr: str, value: Any) -> Callable[[Any], None]:
    """A ``mutate_dicom`` change that sets a tag to a raw (possibly invalid) value: text is
    stored as the element's bytes, unparsed (so "abc\\def" can be a DS)."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import DataElement, RawDataElement
    from pydicom.tag import Tag

    def change(ds: Any) -> None:
        tag = Tag(tag_for_keyword(keyword))
        if isinstance(value, str):
            raw = value.encode("latin-1")
            raw += b" " if len(raw) % 2 else b""
            ds._dict[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)
        else:
            ds[tag] = DataElement(tag, vr, value)

    return change


def declare_transfer_syntax(path: Path, uid: str) -> Path:
    """Rewrite the file meta's TransferSyntaxUID in the bytes, leaving the dataset as it is
    encoded (so a file can claim JPEG or big endian while holding raw little-endian data)."""
    payload = path.read_bytes()
    assert payload[128:132] == b"DICM", path
    offset = 132
    group_length_at = None
    out = bytearray(payload[:132])
    while payload[offset:offset + 2] == b"\x02\x00":
        _, element = struct.unpack_from("<HH", payload, offset)
        vr = payload[offset + 4:offset + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length = struct.unpack_from("<I", payload, offset + 8)[0]
            head = 12
        else:
            length = struct.unpack_from("<H", payload, offset + 6)[0]
            head = 8
        value = payload[offset + head:offset + head + length]
        if element == 0x0000:
            group_length_at = len(out) + 8
        if element == 0x0010:
            value = uid.encode("ascii")
            value += b"\0" if len(value) % 2 else b""
            out += payload[offset:offset + 6] + struct.pack("<H", len(value)) + value
        else:
            out += payload[offset:offset + head + length]
        offset += head + length
    if group_length_at is not None:
        struct.pack_into("<I", out, group_length_at, len(out) - (group_length_at + 4))
    return replace_bytes(path, bytes(out) + payload[offset:])


def delete_tag(*keywords: str) -> Callable[[Any], None]:
    def change(ds: Any) -> None:
        for keyword in keywords:
            if keyword in ds:
                delattr(ds, keyword)

    return change


def delete_radiopharmaceutical(*keywords: str) -> Callable[[Any], None]:
    def change(ds: Any) -> None:
        item = ds.RadiopharmaceuticalInformationSequence[0]
        for keyword in keywords:
            if keyword in item:
                delattr(item, keyword)

    return change


def set_radiopharmaceutical(keyword: str, value: Any) -> Callable[[Any], None]:
    def change(ds: Any) -> None:
        setattr(ds.RadiopharmaceuticalInformationSequence[0], keyword, value)

    return change


def truncate(path: Path, keep: float) -> Path:
    """Cut a file to ``keep`` bytes (an int) or that fraction of its length (a float)."""
    payload = path.read_bytes()
    size = keep if isinstance(keep, int) else int(len(payload) * keep)
    return replace_bytes(path, payload[:size])


def gzip_bytes(payload: bytes) -> bytes:
    return gzip.compress(payload, compresslevel=1, mtime=0)


# -- jobs and the runner --------------------------------------------------------------------------

@dataclass
class Job:
    """One run of ``viewer.cli.main(argv)``; ``key`` names it in the results."""

    key: str
    argv: list[str]
    timeout_s: float = JOB_TIMEOUT_S


@dataclass
class JobResult:
    key: str
    outcome: str  # "done", "timeout" (the watchdog ended the runner) or "crash"
    code: Any = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    detail: str = ""


def _limit_resources() -> None:
    """preexec_fn of a runner: the memory limit, no core files."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def runner_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIEWER_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1", PYTHONWARNINGS="default")
    # matplotlib's font cache: reuse the machine's (building it would print to the log once)
    return env


def run_jobs(jobs: Sequence[Job], work: Path, workers: int = 2) -> dict[str, JobResult]:
    """Run the jobs in ``workers`` runner processes (each restarted after a hang or a crash)."""
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, JobResult] = {}
    lanes = [list(jobs[i::workers]) for i in range(workers)]
    lock = threading.Lock()

    def lane(index: int, pending: list[Job]) -> None:
        attempt = 0
        while pending:
            attempt += 1
            stem = work / f"lane{index}-{attempt}"
            jobs_file = stem.with_suffix(".jobs.json")
            results_file = stem.with_suffix(".results.jsonl")
            jobs_file.write_text(json.dumps([job.__dict__ for job in pending]))
            budget = sum(job.timeout_s for job in pending) + 60
            process = subprocess.run(
                [sys.executable, "-m", "tests.core.hostile_builders", str(jobs_file), str(results_file)],
                cwd=ROOT, env=runner_env(work), preexec_fn=_limit_resources, capture_output=True,
                timeout=budget, check=False)
            done: dict[str, JobResult] = {}
            started: list[str] = []
            if results_file.exists():
                for line in results_file.read_text().splitlines():
                    record = json.loads(line)
                    if "start" in record:
                        started.append(record["start"])
                    else:
                        done[record["key"]] = JobResult(**record)
            with lock:
                results.update(done)
            unfinished = [key for key in started if key not in done]
            if not unfinished:
                if len(done) < len(pending):  # the runner died before starting the rest
                    raise RuntimeError(f"runner failed: {process.returncode} {process.stderr[-2000:]!r}")
                return
            key = unfinished[0]
            job = next(j for j in pending if j.key == key)
            watchdog = results_file.with_suffix(".watchdog")
            log = watchdog.read_text(errors="replace") if watchdog.exists() else ""
            timed_out = log.lstrip().startswith("Timeout")
            outcome = "timeout" if timed_out else "crash"
            where = " ".join(line.strip() for line in log.splitlines()[1:4])
            detail = (f"no result after {job.timeout_s:g} s (in {where})" if timed_out else
                      f"runner exit {process.returncode}: {process.stderr[-1500:]}")
            with lock:
                results[key] = JobResult(key, outcome, detail=detail, seconds=job.timeout_s if timed_out else 0.0)
            position = [j.key for j in pending].index(key)
            pending = pending[position + 1:]

    errors: list[BaseException] = []

    def guarded(thread_target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                thread_target()
            except BaseException as exc:  # noqa: BLE001 (re-raised in the main thread after join)
                errors.append(exc)
        return run

    threads = [threading.Thread(target=guarded(lambda i=i: lane(i, lanes[i]))) for i in range(workers) if lanes[i]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _run_one(job: Job, log: Any) -> JobResult:
    """``main(job.argv)`` with fd 1 and 2 captured, under the watchdog."""
    import faulthandler
    import traceback

    from viewer.cli import main

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        start = time.perf_counter()
        faulthandler.dump_traceback_later(job.timeout_s, exit=True, file=log)
        try:
            code: Any = main(job.argv)
        except SystemExit as exc:
            code = exc.code
        except BaseException:  # noqa: BLE001 (main() should never let anything out: recorded)
            traceback.print_exc()
            code = "raised"
        finally:
            faulthandler.cancel_dump_traceback_later()
            seconds = time.perf_counter() - start
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        out.seek(0)
        err.seek(0)
        return JobResult(job.key, "done", code, out.read().decode("utf-8", "backslashreplace"),
                         err.read().decode("utf-8", "backslashreplace"), seconds)


def _runner(jobs_file: Path, results_file: Path) -> int:
    jobs = [Job(**item) for item in json.loads(jobs_file.read_text())]
    import viewer.cli  # noqa: F401  (imported before the first watchdog starts)

    with open(results_file, "a", encoding="utf-8") as results, \
            open(results_file.with_suffix(".watchdog"), "w", encoding="utf-8") as watchdog:
        for job in jobs:
            results.write(json.dumps({"start": job.key}) + "\n")
            results.flush()
            result = _run_one(job, watchdog)
            results.write(json.dumps(result.__dict__) + "\n")
            results.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_runner(Path(sys.argv[1]), Path(sys.argv[2])))


# -- ONNX models ----------------------------------------------------------------------------------

def endless_loop_onnx(trip_count: int = 2**63 - 1) -> bytes:
    """An ONNX model shaped like the bundled demonstration model (X: [N, 6] float →
    label [N], probabilities [N, 2]) whose output passes through a ``Loop`` of ``trip_count``
    iterations (the default, INT64_MAX, is how exporters write a ``while`` loop): run, it
    never ends (issue 13)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["x_in"], ["x_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_out", TensorProto.FLOAT, None)])
    nodes = [
        helper.make_node("Loop", ["M", "cond", "X"], ["looped"], body=body),
        helper.make_node("Slice", ["looped", "starts", "ends", "axes"], ["two"]),
        helper.make_node("Softmax", ["two"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    initializers = [
        numpy_helper.from_array(np.array(trip_count, np.int64), "M"),
        numpy_helper.from_array(np.array(True), "cond"),
        numpy_helper.from_array(np.array([0], np.int64), "starts"),
        numpy_helper.from_array(np.array([2], np.int64), "ends"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
    ]
    graph = helper.make_graph(
        nodes, "endless", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 6])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
