"""`viewer pacs send` to a real Orthanc (issue 18), over STOW-RS and C-STORE: what arrives is
what was sent (read back through Orthanc's REST API, not through the viewer)."""

from __future__ import annotations

import pytest
import requests
from pydicom import dcmread

from tests.pacs.conftest import PASSWORD, STUDIES, running_orthanc, write_study
from viewer.cli import main


@pytest.fixture(params=["dicomweb", "dimse"])
def fresh(request, tmp_path, monkeypatch):
    """An empty PACS of the test's own, the protocol to send with, and its pacs.toml."""
    monkeypatch.setenv("TEST_PACS_PASSWORD", PASSWORD)
    (tmp_path / "server").mkdir()
    with running_orthanc(tmp_path / "server") as server:
        yield server, request.param, server.config(tmp_path / "pacs.toml")


def instances_in(server) -> dict[str, bytes]:
    """SOPInstanceUID → pixel data of every instance the server holds, through its REST API."""
    import io

    out = {}
    for orthanc_id in requests.get(f"{server.http}/instances", auth=server.auth, timeout=30).json():
        raw = requests.get(f"{server.http}/instances/{orthanc_id}/file", auth=server.auth, timeout=30).content
        ds = dcmread(io.BytesIO(raw))
        out[str(ds.SOPInstanceUID)] = bytes(ds.PixelData)
    return out


def test_send_stores_every_file_of_the_folders(fresh, tmp_path, capsys):
    server, via, config = fresh
    folder = tmp_path / "exam"
    (folder / "a").mkdir(parents=True)
    files = write_study(folder / "a", 0, *STUDIES[1]) + write_study(folder, 1, *STUDIES[3])
    (folder / "README.txt").write_text("not DICOM, left out")
    capsys.readouterr()
    code = main(["pacs", "send", "test", "--config", str(config), "--via", via, str(folder)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.strip() == f"{len(files)} instances sent to test"
    assert instances_in(server) == {str(dcmread(p).SOPInstanceUID): bytes(dcmread(p).PixelData) for p in files}


def test_a_file_that_is_not_dicom_stops_the_send_before_anything_is_sent(fresh, tmp_path, capsys):
    server, via, config = fresh
    write_study(tmp_path, 0, *STUDIES[0])
    (tmp_path / "broken.dcm").write_bytes(b"\\0" * 300)
    code = main(["pacs", "send", "test", "--config", str(config), "--via", via, str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 2 and "broken.dcm" in err and "nothing was sent" in err
    assert instances_in(server) == {}
