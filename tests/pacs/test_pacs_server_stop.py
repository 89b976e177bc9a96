"""A PACS that stops in the middle of a retrieval (issue 18): the real Orthanc process is
killed while `viewer pacs get` is receiving, over WADO-RS and over C-GET. One error line, and
no folder at the target (nothing that looks like a complete series)."""

from __future__ import annotations

import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.pacs.conftest import PASSWORD, mr_slice, running_orthanc
from viewer.cli import main

INSTANCES = 120


def orthanc_pid(folder) -> int:
    """The pid of the Orthanc started with this folder's configuration."""
    found = subprocess.run(["pgrep", "-f", f"{folder}/orthanc.json"], capture_output=True, text=True).stdout.split()
    assert len(found) == 1, found
    return int(found[0])


def store_series(server, count: int) -> str:
    """One MR series of ``count`` 512×512 slices (0.5 MB each: far more than the sockets buffer,
    so the server is still sending when it dies), written with pydicom, stored through REST."""
    import io

    from pydicom.uid import generate_uid

    study_uid, series_uid = generate_uid(), generate_uid()
    payloads = []
    for k in range(count):
        ds = mr_slice("P-STOP", study_uid, series_uid, k, 512)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        payloads.append(buffer.getvalue())

    def store(data):
        return requests.post(f"{server.http}/instances", data=data, auth=server.auth, timeout=60).status_code

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(store, payloads)) == {200}
    return study_uid


@pytest.mark.parametrize("via", ["dicomweb", "dimse"])
def test_a_server_killed_mid_retrieval_leaves_no_folder(via, tmp_path, monkeypatch, capsys):
    from viewer.core.pacs import retrieve

    monkeypatch.setenv("TEST_PACS_PASSWORD", PASSWORD)
    (tmp_path / "server").mkdir()
    with running_orthanc(tmp_path / "server") as server:
        config = server.config(tmp_path / "pacs.toml")
        study = store_series(server, INSTANCES)
        pid = orthanc_pid(tmp_path / "server")
        real_path_for = retrieve._path_for
        arrived = []

        def path_then_kill(folder, dataset):
            arrived.append(1)
            if len(arrived) == 10:
                os.kill(pid, signal.SIGKILL)  # the server dies with 110 instances still to send
            return real_path_for(folder, dataset)

        monkeypatch.setattr(retrieve, "_path_for", path_then_kill)
        out = tmp_path / "retrieved"
        capsys.readouterr()
        code = main(["pacs", "get", "test", "--config", str(config), "--via", via, "--study", study, "-o", str(out)])
        _, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "test" in lines[0], err
    assert PASSWORD not in err
    assert 10 <= len(arrived) < INSTANCES
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pacs.toml", "server"]  # no temporary sibling left
