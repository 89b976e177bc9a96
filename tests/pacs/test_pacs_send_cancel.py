"""Cancelling `pacs send` (the window's Cancel): it stops before the next STOW-RS batch or
C-STORE, and says how many instances the node already holds (a PACS cannot be asked to
forget them); the count is checked against Orthanc's own."""

from __future__ import annotations

import pytest
import requests

from tests.pacs.conftest import PASSWORD, mr_slice, running_orthanc
from viewer.core.errors import Cancelled
from viewer.core.pacs.nodes import load_nodes
from viewer.core.pacs.send import STOW_BATCH, SendCancelled, send


def write_files(folder, count: int) -> list:
    from pydicom.uid import generate_uid

    study, series = generate_uid(), generate_uid()
    paths = []
    for k in range(count):
        path = folder / f"{k:03d}.dcm"
        mr_slice("P-CANCEL", study, series, k, 8).save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.mark.parametrize("via, asked, stored", [("dicomweb", 2, STOW_BATCH), ("dimse", 6, 5)])
def test_a_cancelled_send_stops_and_counts_what_was_stored(via, asked, stored, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PACS_PASSWORD", PASSWORD)
    (tmp_path / "server").mkdir()
    (tmp_path / "files").mkdir()
    files = write_files(tmp_path / "files", STOW_BATCH + 8)
    with running_orthanc(tmp_path / "server") as server:
        node = load_nodes(server.config(tmp_path / "pacs.toml"))["test"]
        questions = []

        def should_cancel() -> bool:
            questions.append(1)
            return len(questions) >= asked

        with pytest.raises(SendCancelled) as caught:
            send(node, [tmp_path / "files"], via, should_cancel=should_cancel)
        held = requests.get(f"{server.http}/instances", auth=server.auth, timeout=30).json()
    assert isinstance(caught.value, Cancelled)
    assert str(caught.value) == f"sending cancelled; {stored} of {len(files)} instances were stored on 'test' before"
    assert len(held) == stored
