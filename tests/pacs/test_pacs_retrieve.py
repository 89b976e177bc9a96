"""`viewer pacs get` from a real Orthanc (issue 18): WADO-RS and C-GET give the pixel data that
was stored, byte for byte; the output folder appears only when complete."""

from __future__ import annotations

import pytest
from pydicom import dcmread

from tests.pacs.conftest import PASSWORD
from viewer.cli import main

VIAS = ("dicomweb", "dimse")


@pytest.fixture
def config(pacs, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PACS_PASSWORD", PASSWORD)
    return pacs.config(tmp_path / "pacs.toml")


def get(capsys, config, via, *arguments):
    code = main(["pacs", "get", "test", "--config", str(config), "--via", via, *arguments])
    out, err = capsys.readouterr()
    return code, out, err


def by_sop(paths) -> dict[str, bytes]:
    """SOPInstanceUID → the pixel data bytes, of files read with pydicom."""
    return {str(ds.SOPInstanceUID): bytes(ds.PixelData) for ds in (dcmread(p) for p in paths)}


@pytest.mark.parametrize("via", VIAS)
def test_get_returns_the_stored_pixel_data_byte_for_byte(capsys, config, stored_studies, tmp_path, via):
    out_dir = tmp_path / "retrieved"
    code, out, err = get(capsys, config, via, "--study", stored_studies[1], "-o", str(out_dir))
    assert code == 0, err
    files = sorted(out_dir.rglob("*.dcm"))
    assert out.strip() == f"{len(files)} instances retrieved into {out_dir}"
    assert by_sop(files) == by_sop(stored_studies.files[1])
    for path in files:  # SeriesInstanceUID/SOPInstanceUID.dcm
        ds = dcmread(path)
        assert path.parent.name == ds.SeriesInstanceUID and path.stem == ds.SOPInstanceUID
        assert ds.StudyInstanceUID == stored_studies[1]


@pytest.mark.parametrize("via", VIAS)
def test_get_one_series(capsys, config, stored_studies, tmp_path, via):
    wanted = [p for p in stored_studies.files[1] if dcmread(p).Modality == "PT"]
    series = str(dcmread(wanted[0]).SeriesInstanceUID)
    code, _, err = get(capsys, config, via, "--study", stored_studies[1], "--series", series, "-o", str(tmp_path / "pt"))
    assert code == 0, err
    assert by_sop(sorted((tmp_path / "pt").rglob("*.dcm"))) == by_sop(wanted)


@pytest.mark.parametrize("via", VIAS)
def test_an_unknown_study_leaves_no_folder(capsys, config, stored_studies, tmp_path, via):
    code, out, err = get(capsys, config, via, "--study", "1.2.3.4.5.6.7.8.9", "-o", str(tmp_path / "none"))
    assert code == 2 and out == "" and "has no instance of study 1.2.3.4.5.6.7.8.9" in err
    assert list(tmp_path.iterdir()) == [tmp_path / "pacs.toml"]  # neither the folder nor a temporary sibling


def test_an_existing_folder_is_refused_and_left_alone(capsys, config, stored_studies, tmp_path):
    out_dir = tmp_path / "busy"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("mine")
    code, _, err = get(capsys, config, "dicomweb", "--study", stored_studies[0], "-o", str(out_dir))
    assert code == 2 and "is not an empty folder" in err
    assert [p.name for p in out_dir.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("uid", ["../../etc", "1.2.3;rm", "1." + "2" * 70])
def test_a_study_uid_that_is_no_uid_is_refused(capsys, config, tmp_path, uid):
    code, _, err = get(capsys, config, "dicomweb", "--study", uid, "-o", str(tmp_path / "x"))
    assert code == 2 and "is not a DICOM UID" in err and not (tmp_path / "x").exists()


def test_a_retrieval_cut_off_halfway_leaves_nothing(capsys, config, stored_studies, tmp_path, monkeypatch):
    """The connection drops after the first instance: no folder, no temporary sibling."""
    import requests
    from dicomweb_client.api import DICOMwebClient

    real = DICOMwebClient.iter_study

    def cut_off(self, *args, **kwargs):
        for count, dataset in enumerate(real(self, *args, **kwargs)):
            if count == 1:
                raise requests.exceptions.ConnectionError("the server went away")
            yield dataset

    monkeypatch.setattr(DICOMwebClient, "iter_study", cut_off)
    code, _, err = get(capsys, config, "dicomweb", "--study", stored_studies[1], "-o", str(tmp_path / "cut"))
    assert code == 2 and err.count("\n") == 1 and "cannot reach PACS node 'test'" in err
    assert list(tmp_path.iterdir()) == [tmp_path / "pacs.toml"]


def test_the_dimse_association_sends_at_once_and_re_arms_quick_acknowledgements(config, monkeypatch):
    """Issue 19's slow C-GET (~37 ms per instance: the PACS's Nagle waiting for this side's
    delayed acknowledgement): the association's socket has TCP_NODELAY, and every read
    pynetdicom makes through it happens with quick acknowledgements on (Linux TCP_QUICKACK,
    which the kernel turns off by itself)."""
    import socket

    from pynetdicom.sop_class import Verification
    from pynetdicom.transport import AssociationSocket

    from viewer.core.pacs.dimse import association, check_status
    from viewer.core.pacs.nodes import load_nodes

    node = load_nodes(config)["test"]
    reading = AssociationSocket.recv
    quick: list[int] = []

    def recv(self, nr_bytes):  # pynetdicom's own reader, as the association reaches it
        quick.append(self.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK))
        return reading(self, nr_bytes)

    monkeypatch.setattr(AssociationSocket, "recv", recv)
    with association(node, [Verification]) as assoc:
        assert assoc.dul.socket.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        before = len(quick)
        check_status(node, "C-ECHO", assoc.send_c_echo())
        after_echo = quick[before:]
    assert after_echo and all(after_echo)  # the echo's response read with quick acknowledgements on
