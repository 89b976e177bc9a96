"""Issue 13, "hangs, memory and wrong numbers": every case through `viewer stats`.

Each input here used to hang, exhaust memory or give a plausible wrong number. Now it ends in
one of two ways (PRODUCT.md §2, §3 "Uncertainty and honest limits", §4, §7):

- exit 2 with exactly one ``error:`` line naming the file and the key or tag, nothing on stdout;
- exit 0 with the number ``null`` (or left out, with its count) and a note in the JSON saying why.

Cases that could hang or exhaust memory run in a child process under a timeout (and, for the
label maps, an address-space limit); their measured time and memory are printed (``-s``).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import resource
import struct
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from tests.core.phantoms import centered_affine
from tests.core.quant_phantoms import (
    BALLS,
    CALIBRATION,
    REGION_NAMES,
    fluorine_image,
    gd_image,
    region_labels,
)
from tests.core.study_builders import write_small_study
from viewer.cli import main
from viewer.core.errors import ViewerError
from viewer.core.io.dicom_write import PetTags, write_dicom_series
from viewer.core.io.nifti import save_nifti
from viewer.core.io.study import MAX_REGIONS, load_study
from viewer.core.predict import model as model_module
from viewer.core.predict.onnx_graph import MAX_LOOP_ITERATIONS, check_bounded_graph
from viewer.core.spaces import region_mask_on_grid
from viewer.core.volume import Volume

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_ONNX = ROOT / "resources" / "models" / "penumbra_recovery_demo.onnx"

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper

#: Generous wall-clock limits for child processes (seconds): a hang is minutes to forever.
CHILD_TIMEOUT_S = 120
#: Address space a child `viewer stats` may use (bytes): the small study needs ~0.5 GB of
#: address space; the old per-label tables needed 5.5 GB for a label of 1e8.
CHILD_ADDRESS_SPACE = 1_500_000_000


# -- running `viewer stats` ----------------------------------------------------------------------

def stats(capsys, *argv) -> tuple[int, str, str]:
    code = main(["stats", *(str(a) for a in argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(code: int, out: str, err: str, *words: str) -> str:
    """Exit 2, exactly one ``error:`` line holding every word, nothing on stdout."""
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "unexpected" not in lines[0] and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]
    assert out == ""
    return lines[0]


def stats_json(capsys, manifest: Path) -> dict:
    code, out, err = stats(capsys, manifest)
    assert code == 0, err
    assert err == "", err
    return json.loads(out)


def region(result: dict, name: str, timepoint: int = 0) -> dict:
    return next(r for r in result["timepoints"][timepoint]["regions"] if r["name"] == name)


def notes_with(result: dict, *words: str) -> list[str]:
    return [n for n in result["notes"] if all(w in n for w in words)]


#: Prepended to a child's code: writes its own peak resident size (kB, VmHWM: unlike
#: ru_maxrss it does not inherit the parent's peak across fork + exec) to $CHILD_RSS_FILE.
_REPORT_RSS = """
import atexit, os
def _report_peak():
    peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    open(os.environ["CHILD_RSS_FILE"], "w").write(peak)
atexit.register(_report_peak)
"""


def run_child(code: str, *args: str, address_space: int | None = None) -> tuple[subprocess.CompletedProcess, float, int]:
    """Run Python ``code`` in a child (cwd = checkout) under CHILD_TIMEOUT_S and optionally an
    address-space limit; (result, wall seconds, the child's peak resident MB)."""
    def limit() -> None:
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    rss_file = Path(args[-1]).with_name("child_rss.txt")
    environment = dict(os.environ, CHILD_RSS_FILE=str(rss_file))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _REPORT_RSS + textwrap.dedent(code), *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, preexec_fn=limit, env=environment,
                            check=False)
    elapsed = time.perf_counter() - start
    peak_kb = int(rss_file.read_text()) if rss_file.exists() else 0
    rss_file.unlink(missing_ok=True)
    return result, elapsed, peak_kb // 1024


STATS_CHILD = """
    import sys
    from viewer.cli import main
    sys.exit(main(["stats", sys.argv[1], "-o", sys.argv[2]]))
"""


# -- studies ---------------------------------------------------------------------------------------

def write_phantom_study(root: Path, *, fluorine: np.ndarray | None = None, gd: Volume | None = None,
                        names: dict[int, str] | None = None) -> Path:
    """The quantification phantom (tests/core/quant_phantoms.py) as a study on disk: 1 mm
    regions (also the anatomy), the rotated 2 mm ¹⁹F image (or ``fluorine`` on its grid), an
    optional ΔR1 map; the calibration of the phantom."""
    from viewer.core.io.study import write_manifest

    root.mkdir(parents=True, exist_ok=True)
    labels = region_labels()
    save_nifti(labels.data.astype(np.float32), root / "t1.nii.gz", labels.voxel_to_world)
    save_nifti(np.asarray(labels.data), root / "regions.nii.gz", labels.voxel_to_world)
    f19, _ = fluorine_image(sigma=1.0)
    save_nifti(f19.data if fluorine is None else fluorine.astype(np.float32), root / "f19.nii.gz", f19.voxel_to_world)
    timepoint = {"label": "day 7", "day": 7, "anatomical": "t1.nii.gz", "fluorine": "f19.nii.gz",
                 "regions": "regions.nii.gz", "region_names": names or REGION_NAMES}
    if gd is not None:
        save_nifti(gd, root / "dr1.nii.gz")
        timepoint["gd"] = "dr1.nii.gz"
    calibration = {k: v for k, v in dataclasses.asdict(CALIBRATION).items() if v is not None}
    manifest = {"study": {"id": "phantom"}, "calibration": calibration, "timepoint": [timepoint]}
    return write_manifest(manifest, root / "study.toml")


def phantom_fluorine_grid() -> Volume:
    return fluorine_image(sigma=1.0)[0]


def edit_manifest(manifest: Path, old: str, new: str) -> None:
    text = manifest.read_text()
    assert old in text, text
    manifest.write_text(text.replace(old, new))


def replace_regions(manifest: Path, data: np.ndarray, dtype) -> Path:
    """The small study's region map replaced by ``data`` (same grid) stored as ``dtype``."""
    path = manifest.parent / "regions.nii.gz"
    affine = nib.load(path).affine
    image = nib.Nifti1Image(np.asarray(data).astype(dtype), affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    nib.save(image, path)
    return path


def small_regions(manifest: Path) -> np.ndarray:
    return np.asarray(nib.load(manifest.parent / "regions.nii.gz").dataobj).astype(np.int64)


# -- 1. models with a time budget -------------------------------------------------------------------

VOLUME_CARD = {
    "card_format": 1, "name": "Slow test model", "version": "0.1", "intended_use": "tests",
    "outcome": {"name": "x", "meaning": "probability of x"},
    "features": [{"name": "volume_ml", "units": "mL", "training_range": [0.0, 100.0], "baseline": 1.0}],
    "training_data": {"description": "none", "n": 1, "simulated": True},
    "validation": {"metric": "AUC", "value": 0.5}, "licence": "CC0-1.0", "demonstration": False,
}

INT64_MAX = 2**63 - 1


def loop_model(trip_count: int | str | None, body_matrix: int = 0) -> bytes:
    """p = sigmoid(volume_ml) · exp(−v), v carried through a Loop that adds 0 each pass.

    ``trip_count``: an integer (constant initializer M), None (no M: a while loop) or
    "shape" (M = the batch size, computed from the input's shape). ``body_matrix`` > 0 gives
    every pass a k×k MatMul (k = body_matrix), so a long loop really takes long.
    """
    body_nodes = [helper.make_node("Identity", ["cond_in"], ["cond_out"])]
    body_inits = [helper.make_tensor("zero_f", TensorProto.FLOAT, [], [0.0])]
    if body_matrix:
        k = body_matrix
        body_inits.append(helper.make_tensor("a", TensorProto.FLOAT, [k, k], np.full(k * k, 1e-3, np.float32).tolist()))
        body_nodes += [helper.make_node("MatMul", ["a", "a"], ["aa"]),
                       helper.make_node("ReduceMean", ["aa"], ["mean"], keepdims=0),
                       helper.make_node("Mul", ["mean", "zero_f"], ["nothing"]),
                       helper.make_node("Add", ["v_in", "nothing"], ["v_out"])]
    else:
        body_nodes.append(helper.make_node("Add", ["v_in", "zero_f"], ["v_out"]))
    body = helper.make_graph(
        body_nodes, "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [])],
        initializer=body_inits,
    )
    nodes, inits = [], [helper.make_tensor("cond", TensorProto.BOOL, [], [True]),
                        helper.make_tensor("v0", TensorProto.FLOAT, [], [0.0])]
    if trip_count is None:
        m_name = ""
    elif trip_count == "shape":
        m_name = "m"
        inits.append(helper.make_tensor("zero_i", TensorProto.INT64, [], [0]))
        nodes += [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Gather", ["shape", "zero_i"], ["m"])]
    else:
        m_name = "M"
        inits.append(helper.make_tensor("M", TensorProto.INT64, [], [int(trip_count)]))
    nodes += [helper.make_node("Loop", [m_name, "cond", "v0"], ["v"], body=body),
              helper.make_node("Neg", ["v"], ["minus_v"]), helper.make_node("Exp", ["minus_v"], ["scale"]),
              helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["s", "scale"], ["p"])]
    graph = helper.make_graph(nodes, "loop", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 1])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def slow_kernel_model(size: int) -> bytes:
    """p = sigmoid(x) · exp(−mean(A·A)·0): one size×size MatMul, one operator onnxruntime cannot
    interrupt (its terminate flag is read between operators)."""
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["a"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1e-6])),
             helper.make_node("MatMul", ["a", "a"], ["aa"]),
             helper.make_node("ReduceMean", ["aa"], ["mean"], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
             helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Add", ["s", "nothing"], ["p"])]
    graph = helper.make_graph(nodes, "slow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 1])],
                              initializer=[helper.make_tensor("shape", TensorProto.INT64, [2], [size, size]),
                                           helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def study_with_model(root: Path, onnx_bytes: bytes) -> Path:
    manifest = write_small_study(root)
    (root / "models").mkdir()
    (root / "models" / "m.onnx").write_bytes(onnx_bytes)
    (root / "models" / "m.json").write_text(json.dumps(VOLUME_CARD))
    manifest.write_text('[[model]]\nonnx = "models/m.onnx"\ncard = "models/m.json"\n\n' + manifest.read_text())
    return manifest


@pytest.mark.parametrize("trip_count, why", [
    (INT64_MAX, "9,223,372,036,854,775,807 times"),
    (None, "has no trip count"),
    ("shape", "from a value computed in the graph"),
    (MAX_LOOP_ITERATIONS + 1, f"at most {MAX_LOOP_ITERATIONS:,}"),
], ids=["int64-max", "while-loop", "from-input-shape", "just-over-the-limit"])
def test_a_model_with_an_unbounded_loop_is_refused_at_load(tmp_path, capsys, trip_count, why):
    manifest = study_with_model(tmp_path / "s", loop_model(trip_count))
    start = time.perf_counter()
    code, out, err = stats(capsys, manifest)
    assert_refused(code, out, err, "m.onnx", "Loop", why)
    assert time.perf_counter() - start < 30


def test_a_trip_count_stored_as_raw_bytes_is_read(tmp_path, capsys):
    """Exporters store initializers as raw_data (little-endian bytes), not int64_data."""
    from onnx import numpy_helper

    for value, refused in ((INT64_MAX, True), (7, False)):
        model = onnx.load_from_string(loop_model(1))
        index = next(i for i, t in enumerate(model.graph.initializer) if t.name == "M")
        model.graph.initializer[index].CopyFrom(numpy_helper.from_array(np.array(value, np.int64), "M"))
        assert model.graph.initializer[index].raw_data
        manifest = study_with_model(tmp_path / f"s{value}", model.SerializeToString())
        if refused:
            assert_refused(*stats(capsys, manifest), "m.onnx", "9,223,372,036,854,775,807 times")
        else:
            assert region(stats_json(capsys, manifest), "core")["prediction"][0]["value"] is not None


def test_a_model_entry_without_its_card_is_refused(tmp_path, capsys):
    manifest = study_with_model(tmp_path / "s", loop_model(3))
    edit_manifest(manifest, 'card = "models/m.json"\n', "")
    assert_refused(*stats(capsys, manifest), "study.toml", "[[model]] 1 needs 'card'")


def test_a_model_out_of_time_gives_null_predictions_with_a_note(tmp_path, capsys, monkeypatch):
    """A Loop with an accepted constant trip count (10⁶ ≤ the limit) whose body is a 256² MatMul
    (≈ 10 min of work): stopped by the time budget, predictions null, a note names the model."""
    monkeypatch.setattr(model_module, "PREDICTION_TIME_BUDGET_S", 0.5)
    manifest = study_with_model(tmp_path / "s", loop_model(MAX_LOOP_ITERATIONS, body_matrix=256))
    start = time.perf_counter()
    result = stats_json(capsys, manifest)
    elapsed = time.perf_counter() - start
    print(f"\nloop model stopped by a 0.5 s budget: `viewer stats` took {elapsed:.2f} s")
    assert elapsed < 30
    for row in result["timepoints"][0]["regions"]:
        (prediction,) = row["prediction"]
        assert prediction["value"] is None and "Slow test model" in prediction["reason"], prediction
        assert "time budget of 0.5 s" in prediction["reason"]
    (note,) = notes_with(result, "Slow test model", "m.onnx", "time budget")
    assert "null" in note


def test_an_operator_that_ignores_terminate_is_abandoned_not_waited_for(tmp_path):
    """One MatMul of 4000² (≈ 1 s of one core) cannot be interrupted: the caller stops waiting
    after the budget and the grace period; `viewer stats` ends with null predictions."""
    manifest = study_with_model(tmp_path / "s", slow_kernel_model(4000))
    code = """
        import sys
        from viewer.core.predict import model
        model.PREDICTION_TIME_BUDGET_S = 0.1
        model.TERMINATE_GRACE_S = 0.1
        from viewer.cli import main
        sys.argv = ["viewer", "stats", sys.argv[1], "-o", sys.argv[2]]
        sys.exit(main())  # as the console script runs it: the process's own command line
    """
    result, elapsed, peak_mb = run_child(code, str(manifest), str(tmp_path / "out.json"))
    print(f"\nuninterruptible kernel: `viewer stats` took {elapsed:.2f} s (peak {peak_mb} MB)")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    output = json.loads((tmp_path / "out.json").read_text())
    assert all(r["prediction"][0]["value"] is None for r in output["timepoints"][0]["regions"])
    assert notes_with(output, "Slow test model", "time budget")


def test_bounded_control_flow_and_the_usual_models_still_load(tmp_path, capsys):
    """The demo model, a scikit-learn model through skl2onnx and a Loop of 10 passes load;
    the Loop model predicts."""
    check_bounded_graph(SHIPPED_ONNX.read_bytes(), SHIPPED_ONNX)
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    for classifier in (LogisticRegression(), RandomForestClassifier(n_estimators=20, random_state=0)):
        exported = to_onnx(classifier.fit(x, y), x[:1], options={type(classifier): {"zipmap": False}},
                           target_opset={"": 17, "ai.onnx.ml": 3})
        check_bounded_graph(exported.SerializeToString(), "sklearn.onnx")
    manifest = study_with_model(tmp_path / "s", loop_model(10))
    result = stats_json(capsys, manifest)
    core = region(result, "core")
    assert core["prediction"][0]["value"] == pytest.approx(1 / (1 + np.exp(-core["volume_ml"])), rel=1e-5)


def test_nested_loops_count_together_and_other_subgraph_operators_are_refused():
    """Two nested Loops of 1001 passes each (1,002,001 in all) exceed the limit; a Loop with an
    unbounded trip count hidden in an If branch is found; an unknown operator with a subgraph
    is refused."""
    inner = onnx.load_from_string(loop_model(1001))
    outer_body = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["c_out"]), helper.make_node("Loop", ["M", "cond", "v"], ["v_out"],
                                                                         body=inner.graph.node[0].attribute[0].g)],
        "outer", [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                  helper.make_tensor_value_info("v", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [])])
    nested = onnx.load_from_string(loop_model(1001))
    nested.graph.node[0].attribute[0].g.CopyFrom(outer_body)
    with pytest.raises(ViewerError, match=r"nested.onnx: the model is refused: .*1,002,001 times, counting the Loops"):
        check_bounded_graph(nested.SerializeToString(), "nested.onnx")

    while_loop = onnx.load_from_string(loop_model(None))
    branch = helper.make_graph(list(while_loop.graph.node[:1]), "then", [],
                               [helper.make_tensor_value_info("v", TensorProto.FLOAT, [])])
    hidden = onnx.load_from_string(loop_model(5))
    hidden.graph.node.insert(0, helper.make_node("If", ["cond"], ["v_if"], then_branch=branch, else_branch=branch))
    with pytest.raises(ViewerError, match=r"hidden.onnx: .*Loop node in the (then|else)_branch of the If has no trip count"):
        check_bounded_graph(hidden.SerializeToString(), "hidden.onnx")

    search = onnx.load_from_string(loop_model(5))
    search.graph.node.insert(0, helper.make_node("BeamSearch", ["x"], ["y"], domain="com.microsoft", decoder=branch))
    with pytest.raises(ViewerError, match=r"search.onnx: .*BeamSearch node \(com.microsoft\) carries a subgraph"):
        check_bounded_graph(search.SerializeToString(), "search.onnx")


# -- 2. label maps: memory and time follow the labels present ------------------------------------------

@pytest.mark.parametrize("largest", [10**8, 2 * 10**9], ids=["1e8", "2e9"])
def test_huge_label_values_need_no_memory_of_their_size(tmp_path, largest):
    manifest = write_small_study(tmp_path / "s")
    data = small_regions(manifest)
    data[data == 2] = largest
    replace_regions(manifest, data, np.int32)
    result, elapsed, peak_mb = run_child(STATS_CHILD, str(manifest), str(tmp_path / "out.json"),
                                         address_space=CHILD_ADDRESS_SPACE)
    print(f"\nlargest label {largest:.0e}: {elapsed:.2f} s, peak resident {peak_mb} MB "
          f"(address space limited to {CHILD_ADDRESS_SPACE / 1e9:.1f} GB)")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    labels = [r["label"] for r in json.loads((tmp_path / "out.json").read_text())["timepoints"][0]["regions"]]
    assert largest in labels and 1 in labels


@pytest.mark.parametrize("value, dtype, words", [
    (np.iinfo(np.uint64).max, np.uint64, ("regions.nii.gz", "beyond 2**53")),
    (3 * 10**9, np.int64, ("regions.nii.gz", "labels up to 2147483647")),
], ids=["uint64-max", "3e9-int64"])
def test_labels_beyond_int32_are_refused_at_load(tmp_path, capsys, value, dtype, words):
    manifest = write_small_study(tmp_path / "s")
    data = small_regions(manifest).astype(dtype)
    data[data == 2] = value
    path = manifest.parent / "regions.nii.gz"
    affine = nib.load(path).affine
    nib.save(nib.Nifti1Image(data, affine, dtype=dtype), path)
    assert_refused(*stats(capsys, manifest), *words)


def scattered_labels(shape: tuple[int, ...], count: int, seed: int = 0) -> np.ndarray:
    """``count`` distinct labels scattered over half the voxels (every label present): the
    worst case, each region's box spanning the whole grid."""
    rng = np.random.default_rng(seed)
    flat = np.zeros(int(np.prod(shape)), np.int32)
    chosen = rng.choice(flat.size, size=flat.size // 2, replace=False)
    flat[chosen] = rng.integers(1, count + 1, size=chosen.size)
    flat[chosen[:count]] = np.arange(1, count + 1)
    return flat.reshape(shape)


def test_thirty_thousand_labels_are_refused_quickly(tmp_path):
    manifest = write_small_study(tmp_path / "s")
    replace_regions(manifest, scattered_labels(small_regions(manifest).shape, 30_000), np.int32)
    result, elapsed, peak_mb = run_child(STATS_CHILD, str(manifest), str(tmp_path / "out.json"),
                                         address_space=CHILD_ADDRESS_SPACE)
    print(f"\n30,000 labels: refused in {elapsed:.2f} s (peak {peak_mb} MB)")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "regions.nii.gz" in line
    assert "30000 distinct labels" in line and f"at most {MAX_REGIONS}" in line
    assert not (tmp_path / "out.json").exists()


@pytest.mark.slow
def test_the_largest_accepted_number_of_scattered_regions_completes(tmp_path):
    """MAX_REGIONS labels, each scattered over the whole grid (every box is the whole grid),
    on the ¹⁹F, PET and label grids of the small study."""
    manifest = write_small_study(tmp_path / "s")
    replace_regions(manifest, scattered_labels(small_regions(manifest).shape, MAX_REGIONS, seed=1), np.int32)
    result, elapsed, peak_mb = run_child(STATS_CHILD, str(manifest), str(tmp_path / "out.json"),
                                         address_space=CHILD_ADDRESS_SPACE)
    print(f"\n{MAX_REGIONS} scattered regions: `viewer stats` took {elapsed:.2f} s (peak {peak_mb} MB)")
    assert result.returncode == 0, result.stderr
    assert len(json.loads((tmp_path / "out.json").read_text())["timepoints"][0]["regions"]) == MAX_REGIONS


# -- 3. plausible wrong output: errors ----------------------------------------------------------------

def test_vox_offset_inside_the_header_is_refused(tmp_path, capsys):
    """nibabel reads a single-file NIfTI with vox_offset = 0 from byte 0: the header as voxels."""
    manifest = write_small_study(tmp_path / "s")
    path = tmp_path / "s" / "t1.nii"
    raw = bytearray(path.read_bytes())
    raw[108:112] = struct.pack("<f", 0.0)  # vox_offset (NIfTI-1 header, little endian)
    path.write_bytes(bytes(raw))
    assert_refused(*stats(capsys, manifest), "t1.nii", "vox_offset 0", "inside the NIfTI header")
    save_nifti(np.ones((8, 8, 8), np.float32), path, np.eye(4))  # a good anatomy again
    compressed = tmp_path / "s" / "f19.nii.gz"
    raw = bytearray(gzip.decompress(compressed.read_bytes()))
    raw[108:112] = struct.pack("<f", 0.0)
    compressed.write_bytes(gzip.compress(bytes(raw)))
    assert_refused(*stats(capsys, manifest), "f19.nii.gz", "vox_offset 0")


def test_nibabel_header_messages_stay_off_the_terminal(tmp_path):
    """nibabel logs "vox offset 100 too low …" through its own handler before raising; the
    user sees one error line only."""
    manifest = write_small_study(tmp_path / "s")
    path = tmp_path / "s" / "t1.nii"
    raw = bytearray(path.read_bytes())
    raw[108:112] = struct.pack("<f", 100.0)
    path.write_bytes(bytes(raw))
    result, _, _ = run_child(STATS_CHILD, str(manifest), str(tmp_path / "out.json"))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "t1.nii" in line and "vox offset 100" in line


def test_zero_voxel_size_without_sform_is_refused(tmp_path, capsys):
    """nibabel repairs pixdim[1] = 0 to 1 mm on load: an invented voxel size."""
    manifest = write_small_study(tmp_path / "s")
    image = nib.Nifti1Image(np.ones((8, 8, 8), np.float32), None)
    image.header.set_qform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
    image.header.set_sform(None, code=0)
    image.header["pixdim"][1] = 0.0
    nib.save(image, tmp_path / "s" / "f19.nii.gz")
    assert_refused(*stats(capsys, manifest), "f19.nii.gz", "pixdim[1]", "voxel size")


@pytest.mark.parametrize("make", ["fifo", "dev-zero"])
def test_a_manifest_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path, make):
    manifest = write_small_study(tmp_path / "s")
    manifest.unlink()
    if make == "fifo":
        os.mkfifo(manifest)  # reading would wait for a writer forever
    else:
        manifest.symlink_to("/dev/zero")  # reading would never end
    result, elapsed, _ = run_child(STATS_CHILD, str(manifest), str(tmp_path / "out.json"),
                                   address_space=CHILD_ADDRESS_SPACE)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "study.toml" in line and "not a regular file" in line
    assert elapsed < 30


def test_complex_nifti_is_refused(tmp_path, capsys):
    manifest = write_small_study(tmp_path / "s")
    image = nib.Nifti1Image(np.ones((8, 8, 8), np.complex64), np.eye(4))
    nib.save(image, tmp_path / "s" / "f19.nii.gz")
    assert_refused(*stats(capsys, manifest), "f19.nii.gz", "complex", "magnitude")


BQML_DOSE = "[timepoint.pet_dose]\ndose_bq = 3.7e8\nweight_kg = 70.0\nhalf_life_s = 6586.2\n" \
            "injection_time = \"13:00:00\"\nscan_time = \"14:00:00\"\n"


def bqml_study(root: Path, dose_block: str = BQML_DOSE) -> Path:
    manifest = write_small_study(root)
    edit_manifest(manifest, 'pet_units = "SUV"', 'pet_units = "Bq/mL"')
    manifest.write_text(manifest.read_text() + "\n" + dose_block)
    return manifest


@pytest.mark.parametrize("key, value", [
    ("weight_kg", "-70.0"), ("weight_kg", "0"), ("dose_bq", "-3.7e8"), ("dose_bq", "0.0"),
    ("half_life_s", "0"), ("half_life_s", "-6586.2"),
])
def test_non_positive_pet_dose_amounts_are_refused(tmp_path, capsys, key, value):
    block = "\n".join(f"{line.split(' = ')[0]} = {value}" if line.startswith(key + " ") else line
                      for line in BQML_DOSE.splitlines())
    manifest = bqml_study(tmp_path / "s", block + "\n")
    line = assert_refused(*stats(capsys, manifest), "study.toml", f"pet_dose.{key}", "must be positive")
    assert str(manifest) in line


@pytest.mark.parametrize("drop", ["injection_time", "scan_time", "half_life_s"])
def test_bq_per_ml_nifti_pet_without_its_times_is_refused(tmp_path, capsys, drop):
    block = "\n".join(line for line in BQML_DOSE.splitlines() if not line.startswith(drop)) + "\n"
    manifest = bqml_study(tmp_path / "s", block)
    assert_refused(*stats(capsys, manifest), "study.toml", f"pet_dose.{drop}", "decay")


def test_bq_per_ml_nifti_pet_is_decayed_or_explicitly_admin(tmp_path, capsys):
    """With times the dose is decayed (3600 s of F-18); with decay_correction = "ADMIN" (image
    decay-corrected to the injection) it is not; both against the same image read as SUV."""
    as_suv = region(stats_json(capsys, write_small_study(tmp_path / "suv")), "core")["suv_max"]
    decayed = region(stats_json(capsys, bqml_study(tmp_path / "start")), "core")["suv_max"]
    admin_block = "[timepoint.pet_dose]\ndose_bq = 3.7e8\nweight_kg = 70.0\ndecay_correction = \"ADMIN\"\n"
    admin = region(stats_json(capsys, bqml_study(tmp_path / "admin", admin_block)), "core")["suv_max"]
    factor = 70_000.0 / 3.7e8
    assert admin == pytest.approx(as_suv * factor, rel=1e-5)
    assert decayed == pytest.approx(as_suv * factor / 2 ** (-3600 / 6586.2), rel=1e-5)


def dicom_pet_study(root: Path, **radio) -> Path:
    """The small study with a DICOM PET whose radiopharmaceutical item is edited."""
    manifest = write_small_study(root)
    pet = Volume.from_array(np.full((8, 8, 5), 2.0, np.float32), centered_affine((8, 8, 5), (3, 3, 3), (0, 0, 0)), role="pet")
    tags = PetTags(weight_kg=70, dose_bq=3.7e8, injection=datetime(2026, 3, 9, 13, 1), series=datetime(2026, 3, 9, 14, 1))
    for path in write_dicom_series(pet, root / "petdcm", modality="PT", pet=tags, shuffle_seed=3):
        ds = pydicom.dcmread(path)
        for tag, value in radio.items():
            setattr(ds.RadiopharmaceuticalInformationSequence[0], tag, value)
        ds.save_as(path)
    edit_manifest(manifest, 'pet = "pet.nii.gz"\npet_units = "SUV"', 'pet = "petdcm"')
    return manifest


@pytest.mark.parametrize("tag, value, words", [
    ("RadionuclideHalfLife", "0", ("RadionuclideHalfLife is 0",)),
    ("RadionuclideTotalDose", "0", ("RadionuclideTotalDose is 0",)),
    ("RadionuclideHalfLife", "1e-9", ("decays to nothing", "RadionuclideHalfLife")),
    ("RadionuclideTotalDose", "1e-320", ("SUV factor", "RadionuclideTotalDose")),
], ids=["half-life-0", "dose-0", "half-life-1ns", "dose-denormal"])
def test_dicom_dose_or_half_life_zero_is_a_clear_error(tmp_path, capsys, tag, value, words):
    manifest = dicom_pet_study(tmp_path / "s", **{tag: value})
    assert_refused(*stats(capsys, manifest), "petdcm", "cannot compute SUV", *words)


@pytest.mark.parametrize("keys", [(" 1", "01"), ("1", "+1"), ("1_0",)], ids=["space-and-zero", "plus", "underscore"])
def test_region_names_keys_that_merge_are_refused_naming_both(tmp_path, capsys, keys):
    manifest = write_small_study(tmp_path / "s")
    table = ", ".join(f'"{key}" = "name {i}"' for i, key in enumerate(keys))
    edit_manifest(manifest, "[timepoint.region_names]\n1 = \"core\"\n2 = \"penumbra\"\n",
                  f"region_names = {{ {table} }}\n")
    if keys == (" 1", "01"):
        assert_refused(*stats(capsys, manifest), "study.toml", "region_names keys ' 1' and '01' both name label 1")
    else:
        assert_refused(*stats(capsys, manifest), "study.toml", f"region_names key {keys[-1]!r} is not an integer label")


# -- 3. plausible wrong output: nulls and notes ------------------------------------------------------

def region_voxels_on_fluorine(label: int) -> tuple[np.ndarray, ...]:
    """Indices (on the phantom's ¹⁹F grid) of the voxels of region ``label``."""
    box, mask = region_mask_on_grid(region_labels(), label, phantom_fluorine_grid())
    local = np.nonzero(mask)
    return tuple(axis + b.start for axis, b in zip(local, box))


def test_nan_and_inf_voxels_in_a_fluorine_region_are_counted_in_a_note(tmp_path, capsys):
    data = np.array(phantom_fluorine_grid().data)
    injection = region_voxels_on_fluorine(3)  # 40,000 cells; its ball is bright
    some = tuple(axis[:5] for axis in injection)
    data[some] = [np.nan, np.inf, -np.inf, np.nan, np.nan]
    core = region_voxels_on_fluorine(1)
    data[core] = np.nan
    result = stats_json(capsys, write_phantom_study(tmp_path / "s", fluorine=data))
    (note,) = notes_with(result, "region 'injection site'", "NaN/inf")
    assert f"5 of {len(injection[0])}" in note and "left out" in note
    assert region(result, "injection site")["fluorine_cells"] == pytest.approx(40_000, rel=0.05)
    (image_note,) = notes_with(result, "¹⁹F image", "NaN/inf")
    assert f"{5 + len(core[0])} NaN/inf voxels" in image_note
    # every ¹⁹F voxel of the core is missing: no count and no "below detection" (not 0 cells)
    assert region(result, "core")["fluorine_cells"] is None and region(result, "core")["below_detection"] is None
    assert notes_with(result, "region 'core'", f"all {len(core[0])}", "NaN/inf")


def test_nan_voxels_in_a_pet_region_are_counted_in_a_note(tmp_path, capsys):
    manifest = write_small_study(tmp_path / "s")
    image = nib.load(tmp_path / "s" / "pet.nii.gz")
    data = np.asarray(image.dataobj).copy()
    labels = Volume.from_array(small_regions(manifest).astype(np.int16), nib.load(tmp_path / "s" / "regions.nii.gz").affine)
    box, mask = region_mask_on_grid(labels, 1, Volume.from_array(data, image.affine))
    inside = tuple(axis[:3] + b.start for axis, b in zip(np.nonzero(mask), box))
    data[inside] = np.nan
    save_nifti(data, tmp_path / "s" / "pet.nii.gz", image.affine)
    result = stats_json(capsys, manifest)
    assert notes_with(result, "region 'core'", f"3 of {int(mask.sum())} PET voxels are NaN/inf")
    assert region(result, "core")["suv_mean"] is not None


def zero_padded_fluorine() -> np.ndarray:
    """The phantom's ¹⁹F image with every voxel at world x > 18 mm exactly 0 (a zero-padded
    reconstruction); the 'background' box (x 20–34 mm) lies entirely in the padding."""
    volume = phantom_fluorine_grid()
    data = np.array(volume.data)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in data.shape], indexing="ij"), axis=-1)
    x = (ijk @ volume.voxel_to_world[:3, :3].T + volume.voxel_to_world[:3, 3])[..., 0]
    data[x > 18.0] = 0.0
    return data


def test_zero_padded_background_falls_back_to_another_sigma_estimate(tmp_path, capsys):
    """σ from an all-zero background would be 0: a detection limit of 0 and noise counted as
    cells. The fallback (median of the non-zero voxels outside the regions) keeps the counts."""
    result = stats_json(capsys, write_phantom_study(tmp_path / "s", fluorine=zero_padded_fluorine()))
    assert notes_with(result, "'background' region is all 0", "σ estimated from the image instead")
    assert notes_with(result, "exactly 0 (zero-padded reconstruction)", "left out")
    (sigma_note,) = notes_with(result, "¹⁹F noise σ =")
    sigma = float(sigma_note.split("σ = ")[1].split()[0])
    assert sigma == pytest.approx(1.0, rel=0.1)
    assert result["timepoints"][0]["detection_limit_cells_per_mm3"] > 0
    for ball in BALLS:
        name = REGION_NAMES[ball.region]
        assert region(result, name)["fluorine_cells"] == pytest.approx(ball.cells, rel=0.03), name


def test_no_noise_anywhere_gives_null_counts_with_a_note(tmp_path, capsys):
    """A ¹⁹F image that is 0 outside the regions (noise-free, zero-filled): no σ can be
    estimated, so no count, no detection limit — never σ = 0."""
    data = np.array(phantom_fluorine_grid().data)
    labels = region_labels()
    from viewer.core.spaces import map_labels_to_grid

    data[map_labels_to_grid(labels, phantom_fluorine_grid()) == 0] = 0.0
    names = {k: v for k, v in REGION_NAMES.items() if v != "background"}
    result = stats_json(capsys, write_phantom_study(tmp_path / "s", fluorine=data, names=names))
    assert result["timepoints"][0]["detection_limit_cells_per_mm3"] is None
    for ball in BALLS:
        row = region(result, REGION_NAMES[ball.region])
        assert row["fluorine_cells"] is None and row["below_detection"] is None
    assert notes_with(result, "¹⁹F cell counts not computed", "noise σ cannot be estimated")
    assert not notes_with(result, "¹⁹F noise σ =")


def test_gd_dead_count_above_the_fluorine_total_is_flagged_not_capped(tmp_path, capsys):
    dead = {3: 80_000.0, 2: 1_200.0}  # region 3 holds 40,000 cells in all
    result = stats_json(capsys, write_phantom_study(tmp_path / "s", gd=gd_image(dead)))
    over = region(result, "injection site")
    assert over["dead_cells"] == pytest.approx(80_000, rel=0.03)
    assert over["live_cells"] is None and over["dead_fraction"] is None and over["rejection_alert"] is True
    (note,) = notes_with(result, "region 'injection site'", "exceed the ¹⁹F total")
    assert "live cells and dead fraction not computed" in note
    fine = region(result, "penumbra")
    assert fine["dead_fraction"] == pytest.approx(0.1, abs=0.02) and fine["live_cells"] > 0
    assert not notes_with(result, "region 'penumbra'", "exceed")


def test_manifest_errors_do_not_need_the_images(tmp_path):
    """The pet_dose and region_names rules are manifest validation: load_study refuses them."""
    manifest = bqml_study(tmp_path / "s", BQML_DOSE.replace("weight_kg = 70.0", "weight_kg = -1.0"))
    with pytest.raises(ViewerError, match=r"pet_dose\.weight_kg must be positive"):
        load_study(manifest)
