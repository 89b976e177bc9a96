"""`viewer export-dicom` then `viewer pacs send` (issue 18): the results land in the PACS, in
the timepoint's study beside its anatomy, over STOW-RS and over C-STORE; what Orthanc holds is
read back through its REST API, and the SEG and the SR as Orthanc returns them are still the
objects that were exported (same instance, same bytes of the pixel data / content)."""

from __future__ import annotations

import io

import pytest
import requests
from pydicom import dcmread

from tests.pacs.conftest import PASSWORD, running_orthanc
from viewer.cli import main

SEG, SR, PDF = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.104.1"
MR = "1.2.840.10008.5.1.4.1.1.4"


@pytest.fixture(scope="module")
def exported(demo_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("export-to-pacs") / "dicom"
    assert main(["export-dicom", str(demo_manifest), "-o", str(out), "--timepoint", "day 7"]) == 0
    return out


@pytest.mark.parametrize("via", ["dicomweb", "dimse"])
def test_exported_results_are_stored_in_the_timepoints_study(exported, via, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEST_PACS_PASSWORD", PASSWORD)
    (tmp_path / "server").mkdir()
    with running_orthanc(tmp_path / "server") as server:
        config = server.config(tmp_path / "pacs.toml")
        files = sorted(p for p in exported.rglob("*.dcm"))
        capsys.readouterr()
        assert main(["pacs", "send", "test", "--config", str(config), "--via", via, str(exported)]) == 0
        assert capsys.readouterr().out.strip() == f"{len(files)} instances sent to test"
        studies = requests.get(f"{server.http}/studies", auth=server.auth, timeout=30).json()
        assert len(studies) == 1  # SEG, SR, PDF and the anatomy in one study
        held = {}
        for orthanc_id in requests.get(f"{server.http}/instances", auth=server.auth, timeout=30).json():
            raw = requests.get(f"{server.http}/instances/{orthanc_id}/file", auth=server.auth, timeout=30).content
            ds = dcmread(io.BytesIO(raw))
            held[str(ds.SOPInstanceUID)] = ds
    sent = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in files}
    assert set(held) == set(sent)
    classes = sorted(str(ds.SOPClassUID) for ds in held.values())
    assert classes.count(MR) == len(files) - 3 and {SEG, SR, PDF} <= set(classes)
    for uid, ds in held.items():
        original = dcmread(sent[uid])
        if ds.SOPClassUID == SEG:
            assert bytes(ds.PixelData) == bytes(original.PixelData)
            assert [s.SegmentLabel for s in ds.SegmentSequence] == [s.SegmentLabel for s in original.SegmentSequence]
        elif ds.SOPClassUID == SR:
            assert ds.ContentSequence == original.ContentSequence
        elif ds.SOPClassUID == PDF:
            assert bytes(ds.EncapsulatedDocument) == bytes(original.EncapsulatedDocument)
