"""Cancelling a retrieval (the window's progress dialog, PRODUCT.md §8): ``get(should_cancel=…)``
against the real Orthanc, over WADO-RS and C-GET. A cancelled retrieval raises
:class:`RetrievalCancelled` with one line, stops the transfer after the instance in hand, and
leaves neither the folder nor a temporary sibling; the PACS serves the next retrieval in full."""

from __future__ import annotations

import time

import pytest
from pydicom import dcmread

from tests.pacs.conftest import PASSWORD, free_port
from viewer.core.errors import Cancelled, ViewerError
from viewer.core.pacs.nodes import load_nodes
from viewer.core.pacs.retrieve import CANCELLED_MESSAGE, RetrievalCancelled, get

VIAS = ("dicomweb", "dimse")


@pytest.fixture
def nodes(pacs, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PACS_PASSWORD", PASSWORD)
    config = pacs.config(tmp_path / "pacs.toml", extra=f"""
[node.down]
dicomweb = "http://127.0.0.1:{free_port()}/dicom-web"
host = "127.0.0.1"
port = {free_port()}
called_aet = "NOBODY"
""")
    return load_nodes(config)


class CancelAfter:
    """``progress`` and ``should_cancel`` for :func:`get`: asks to stop once ``after`` instances
    have arrived, and records every progress report."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.reports: list[tuple[int, int]] = []
        self.asked = 0

    def progress(self, stage: str, done: int, total: int) -> None:
        assert stage == "retrieve"
        self.reports.append((done, total))

    def should_cancel(self) -> bool:
        self.asked += 1
        return bool(self.reports) and self.reports[-1][0] >= self.after

    @property
    def most(self) -> int:
        return max(done for done, _ in self.reports)


@pytest.mark.parametrize("via", VIAS)
def test_cancel_after_the_first_instance_keeps_nothing(nodes, stored_studies, tmp_path, via):
    out_dir = tmp_path / "retrieved"
    stop = CancelAfter(1)
    started = time.monotonic()
    with pytest.raises(RetrievalCancelled) as caught:
        get(nodes["test"], stored_studies[1], out_dir, via=via, progress=stop.progress,
            should_cancel=stop.should_cancel)
    assert str(caught.value) == CANCELLED_MESSAGE == "retrieval cancelled; nothing was kept"
    assert isinstance(caught.value, Cancelled)  # the window's Task reports it as cancelled, not failed
    assert isinstance(caught.value, ViewerError)  # the command line prints it as its one error line
    assert not out_dir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pacs.toml"]  # no temporary sibling either
    assert stop.most == 1 and stop.reports[0] == (0, 4)  # the study has 4 instances; 1 arrived
    assert time.monotonic() - started < 10  # stopped at once, not after a timeout


@pytest.mark.parametrize("via", VIAS)
def test_after_a_cancel_the_pacs_serves_the_whole_study(nodes, stored_studies, tmp_path, via):
    """C-GET is cancelled by aborting the association: the next one must still get everything."""
    stop = CancelAfter(1)
    with pytest.raises(RetrievalCancelled):
        get(nodes["test"], stored_studies[3], tmp_path / "first", via=via, progress=stop.progress,
            should_cancel=stop.should_cancel)
    count = get(nodes["test"], stored_studies[3], tmp_path / "second", via=via, should_cancel=lambda: False)
    files = sorted((tmp_path / "second").rglob("*.dcm"))
    assert count == len(files) == 4
    assert {str(dcmread(p).SOPInstanceUID) for p in files} == \
        {str(dcmread(p).SOPInstanceUID) for p in stored_studies.files[3]}
    assert not (tmp_path / "first").exists()


@pytest.mark.parametrize("via", VIAS)
def test_a_cancel_before_the_start_asks_nothing_of_the_node(nodes, tmp_path, via):
    """Cancelled before it began: no connection is tried (the node does not even answer; trying
    would raise "cannot reach", a ViewerError that is not RetrievalCancelled)."""
    with pytest.raises(RetrievalCancelled):
        get(nodes["down"], "1.2.3.4", tmp_path / "never", via=via, should_cancel=lambda: True)
    assert not (tmp_path / "never").exists()
    if via == "dimse":  # the same node, not cancelled (over DICOMweb dicomweb-client retries for 30 s)
        with pytest.raises(ViewerError, match="cannot reach PACS node 'down'") as caught:
            get(nodes["down"], "1.2.3.4", tmp_path / "never", via=via, should_cancel=lambda: False)
        assert not isinstance(caught.value, RetrievalCancelled)


@pytest.mark.parametrize("via", VIAS)
def test_should_cancel_is_asked_for_every_instance(nodes, stored_studies, tmp_path, via):
    """Never cancelled: everything arrives, and the question was asked at least once per instance."""
    stop = CancelAfter(10**6)
    count = get(nodes["test"], stored_studies[1], tmp_path / "all", via=via, progress=stop.progress,
                should_cancel=stop.should_cancel)
    assert count == 4 and len(list((tmp_path / "all").rglob("*.dcm"))) == 4
    assert stop.asked >= 1 + count
