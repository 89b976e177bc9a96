"""Editing while statistics and slice jobs run (issue 14): many worker threads, many edits.

The owner thread (the GUI thread in the window) paints, erases, undoes, redoes and renames
while a pool of threads runs the scene's statistics requests and slice jobs. Checked:

* no job saw a torn array: each job's labels hash the same when it starts, when it ends, and
  as the owner's map hashed at the version the job was given (stats jobs: the whole map;
  slice jobs: their slice);
* the arrays jobs read are read-only, so a write into them would raise, not tear;
* when the edits stop and the last responses are in, the results equal a from-scratch
  computation of the final label map, every field and note;
* no response was lost: every timepoint's last result measures the last version.
"""

from __future__ import annotations

import queue
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.core.test_incremental_equals_scratch import (
    ball,
    from_scratch,
    random_box,
    snapshot,
)
from viewer.core.io.study import load_study
from viewer.core.render import sample_layers
from viewer.core.scene import Scene

pytestmark = pytest.mark.slow
EDITS = 120
THREADS = 6


def _crc(array: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(array).tobytes())


def test_edits_while_stats_and_slice_jobs_run_end_exact_and_untorn(demo_manifest):
    rng = np.random.default_rng(5)
    scene = Scene(load_study(demo_manifest))
    editable = scene.editable()
    label_of_tp = scene.timepoint.label
    hashes = {editable.version: _crc(editable.data)}  # the owner's map at every version
    done: queue.Queue = queue.Queue()
    problems: list[str] = []
    pool = ThreadPoolExecutor(THREADS)

    def run_stats(request):
        labels = request.snapshot.labels.data
        before = _crc(labels)
        if labels.flags.writeable:
            problems.append(f"stats job of version {request.version} got a writable array")
        outcome = request.run()
        if _crc(labels) != before or before != hashes[request.version]:
            problems.append(f"stats job of version {request.version} saw its labels change")
        done.put(("stats", outcome))

    def run_slice(layers, plane, version, expected):
        regions = next(layer.volume for layer in layers if layer.volume.role == "regions")
        before = _crc(regions.data)
        sample_layers(layers, plane)
        if _crc(regions.data) != before or before != expected:
            problems.append(f"slice job of version {version} saw its slice change")
        done.put(("slice", None))

    scene.results.submit = lambda request: pool.submit(run_stats, request)
    scene.results.request([label_of_tp])
    data_labels = [e.label for e in editable.table.entries if e.name not in ("reference", "background")]
    centres = {label: np.argwhere(np.asarray(editable.data) == label).mean(axis=0).astype(int)
               for label in data_labels if (np.asarray(editable.data) == label).any()}
    delivered = 0

    def drain(block: bool) -> None:
        nonlocal delivered
        while True:
            try:
                kind, outcome = done.get(timeout=30) if block else done.get_nowait()
            except queue.Empty:
                return
            if kind == "stats":
                scene.results.deliver(outcome)
                delivered += 1
            if block:
                return

    for step in range(EDITS):
        action = rng.choice(["brush", "brush", "erase", "undo", "redo", "rename", "big"])
        label = int(rng.choice(list(centres)))
        if action in ("brush", "erase", "big"):
            size = 72 if action == "big" else int(rng.integers(4, 10))  # big: measured in a worker
            box = random_box(rng, editable.data.shape, centres[label], size)
            editable.paint_mask(f"{action} {step}", box, ball(size), 0 if action == "erase" else label)
        elif action == "undo":
            editable.undo()
        elif action == "redo":
            editable.redo()
        else:
            editable.rename(label, f"region {step}")
        hashes[editable.version] = _crc(editable.data)
        for orientation in ("axial", "coronal", "sagittal"):
            plane = scene.plane(orientation)
            axis, index = plane.normal_axis, plane.slice_index
            slab = np.take(editable.data, [index], axis=axis)
            pool.submit(run_slice, scene.slice_layers(plane), plane, editable.version, _crc(slab))
        drain(block=False)
    while not scene.results.is_current(label_of_tp):
        drain(block=True)
    pool.shutdown(wait=True)
    drain(block=False)

    assert not problems, problems[:5]
    assert delivered >= 5, f"only {delivered} responses came from workers"
    assert scene.results.version(label_of_tp) == editable.version
    assert snapshot(scene.results.latest(label_of_tp)) == snapshot(from_scratch(scene))


def test_a_failed_job_leaves_the_numbers_marked_stale_and_the_next_edit_retries(demo_manifest, monkeypatch):
    from viewer.core.quant.stats import TimepointQuantifier

    scene = Scene(load_study(demo_manifest))
    label = scene.timepoint.label
    failures: list[str] = []
    scene.events.connect("stats_failed", lambda **info: failures.append(info["message"]))
    scene.results.request([label])
    first = scene.results.latest(label)
    editable = scene.editable()
    region = editable.table.label_of("injection site")
    centre = np.argwhere(np.asarray(editable.data) == region).mean(axis=0).astype(int)
    original = TimepointQuantifier.recompute
    monkeypatch.setattr(TimepointQuantifier, "recompute", lambda *a, **k: (_ for _ in ()).throw(MemoryError("boom")))
    box = tuple(slice(int(c) - 2, int(c) + 2) for c in centre)
    assert editable.paint_mask("erase", box, np.ones((4, 4, 4), bool), 0) is not None
    assert failures and "boom" in failures[-1]
    assert scene.results.latest(label) is first and not scene.results.is_current(label)
    monkeypatch.setattr(TimepointQuantifier, "recompute", original)
    assert editable.paint_mask("brush", box, np.ones((4, 4, 4), bool), region) is not None
    assert scene.results.is_current(label) and scene.results.version(label) == editable.version
    assert snapshot(scene.results.latest(label)) == snapshot(from_scratch(scene))
