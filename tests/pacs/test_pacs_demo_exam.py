"""The demo's DICOM exam through a real PACS and back (issue 18): stored in Orthanc through its
REST API, found by `viewer pacs find`, retrieved over WADO-RS with `viewer pacs get`, imported
with `viewer import` — the same study, voxel for voxel, as importing the exam from disk."""

from __future__ import annotations

import json
import tomllib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from tests.pacs.conftest import PASSWORD, running_orthanc
from viewer.cli import main


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """A PACS of this module's own (the other tests count the studies in theirs)."""
    with running_orthanc(tmp_path_factory.mktemp("orthanc-demo")) as server:
        yield server


@pytest.fixture(scope="module")
def demo_exam(pacs, tmp_path_factory):
    """The demo written with --dicom; its exam stored in the PACS."""
    root = tmp_path_factory.mktemp("pacs-demo") / "demo"
    assert main(["demo", "--out", str(root), "--dicom"]) == 0
    files = sorted(p for p in (root / "exam").rglob("*") if p.is_file() and p.suffix != ".txt")  # not README.txt

    def store(path):
        answer = requests.post(f"{pacs.http}/instances", data=path.read_bytes(), auth=pacs.auth, timeout=60)
        return answer.status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(store, files))
    assert set(statuses) == {200}, sorted(set(statuses))
    return root, len(files)


@pytest.mark.slow
def test_the_exam_retrieved_from_the_pacs_imports_as_the_exam_on_disk(pacs, demo_exam, tmp_path, monkeypatch, capsys):
    root, count = demo_exam
    monkeypatch.setenv("TEST_PACS_PASSWORD", PASSWORD)
    config = pacs.config(tmp_path / "pacs.toml")
    day0 = str(tomllib.loads((root / "study.toml").read_text(encoding="utf-8"))["study"]["day0"])
    capsys.readouterr()
    assert main(["pacs", "find", "test", "--config", str(config), "--patient-id", "DEMO-0001", "--format", "json"]) == 0
    studies = json.loads(capsys.readouterr().out)
    assert len(studies) == 3 and sum(s["series_count"] for s in studies) == 27
    folders = []
    for index, study in enumerate(studies):
        folder = tmp_path / f"retrieved{index}"
        assert main(["pacs", "get", "test", "--config", str(config), "--study", study["study_uid"], "-o", str(folder)]) == 0
        folders.append(folder)
    assert sum(len(list(f.rglob("*.dcm"))) for f in folders) == count

    from_pacs, from_disk = tmp_path / "from-pacs", tmp_path / "from-disk"
    assert main(["import", *map(str, folders), "-o", str(from_pacs), "--day0", day0, "--id", "demo"]) == 0
    assert main(["import", str(root / "exam"), "-o", str(from_disk), "--day0", day0, "--id", "demo"]) == 0
    capsys.readouterr()

    from viewer.core.io.study import load_study, load_timepoint

    a, b = load_study(from_pacs / "study.toml"), load_study(from_disk / "study.toml")
    assert [t.label for t in a.timepoints] == [t.label for t in b.timepoints] and len(a.timepoints) == 3
    assert dict(a.info) == dict(b.info)  # patient, condition, dates from the tags
    for ta, tb in zip(a.timepoints, b.timepoints):
        assert sorted(ta.images) == sorted(tb.images) and ta.day == tb.day
        va, vb = load_timepoint(a, ta), load_timepoint(b, tb)
        for role in va:
            np.testing.assert_array_equal(np.asarray(va[role].data), np.asarray(vb[role].data), err_msg=role)
            np.testing.assert_array_equal(va[role].voxel_to_world, vb[role].voxel_to_world, err_msg=role)
