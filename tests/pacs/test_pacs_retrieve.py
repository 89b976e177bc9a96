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


def test_wado_rs_writes_each_instance_as_the_pacs_sent_it(capsys, config, pacs, stored_studies, tmp_path,
                                                         monkeypatch):
    """Each retrieved file is, byte for byte, the file the PACS holds (Orthanc's own copy, asked
    for by its REST API; WADO-RS sends it untranscoded), and no instance is encoded again by
    pydicom (issue 19: that was 2.6 ms of every instance's 3.7 ms)."""
    import pydicom
    import requests

    def no_encoding(*args, **kwargs):
        raise AssertionError("a retrieved Part 10 instance was encoded again")

    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", no_encoding)
    monkeypatch.setattr(pydicom.filewriter, "dcmwrite", no_encoding)
    out_dir = tmp_path / "retrieved"
    code, _, err = get(capsys, config, "dicomweb", "--study", stored_studies[1], "-o", str(out_dir))
    assert code == 0, err
    files = sorted(out_dir.rglob("*.dcm"))
    assert len(files) == len(stored_studies.files[1])
    for path in files:
        found = requests.post(f"{pacs.http}/tools/lookup", data=path.stem, auth=pacs.auth, timeout=30).json()
        (instance,) = [item["ID"] for item in found if item["Type"] == "Instance"]
        held = requests.get(f"{pacs.http}/instances/{instance}/file", auth=pacs.auth, timeout=30).content
        assert path.read_bytes() == held


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

    real = DICOMwebClient._decode_multipart_message  # the stream of the response's parts

    def cut_off(self, *args, **kwargs):
        for count, part in enumerate(real(self, *args, **kwargs)):
            if count == 1:
                raise requests.exceptions.ConnectionError("the server went away")
            yield part

    monkeypatch.setattr(DICOMwebClient, "_decode_multipart_message", cut_off)
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


def test_a_part_that_is_not_a_part10_file_is_parsed_and_garbage_refused(tmp_path):
    """A body part without the Part 10 preamble is parsed (and written as a Part 10 file), so
    garbage is refused by pydicom as before (the retrieval then names the node in one line)."""
    from pydicom.errors import InvalidDicomError

    from viewer.core.pacs.retrieve import _store_part

    with pytest.raises(InvalidDicomError):
        _store_part(tmp_path, b"\x00" * 200 + b"not DICOM at all")
    assert list(tmp_path.iterdir()) == []


def test_a_server_answering_with_one_bare_instance_gives_that_one_part():
    """Some servers send a single instance as application/dicom, not wrapped in multipart."""
    from viewer.core.pacs.nodes import Node
    from viewer.core.pacs.retrieve import _instance_parts

    class Response:
        headers = {"Content-Type": "application/dicom"}
        content = b"one instance"

    class Web:
        def __init__(self):
            self.asked = []

        def _http_get(self, url, params=None, headers=None, stream=False):
            self.asked.append((url, headers["Accept"], stream))
            return Response()

        def _decode_multipart_message(self, response, stream):
            raise AssertionError("not a multipart body")

    web = Web()
    node = Node(name="n", dicomweb="http://pacs.example/dicom-web/")
    assert list(_instance_parts(web, node, "1.2.3", "1.2.3.4")) == [b"one instance"]
    assert web.asked == [("http://pacs.example/dicom-web/studies/1.2.3/series/1.2.3.4",
                          'multipart/related; type="application/dicom"', True)]


class _Qido:
    """A DICOMweb client answering QIDO-RS as told: study and series matches, instance lists."""

    def __init__(self, matches, instances=()):
        self.matches, self.instances, self.asked = matches, list(instances), []

    def search_for_studies(self, search_filters=None, fields=None):
        self.asked.append(("studies", search_filters, fields))
        return self.matches

    def search_for_series(self, study_instance_uid=None, search_filters=None, fields=None):
        self.asked.append(("series", study_instance_uid, search_filters, fields))
        return self.matches

    def search_for_instances(self, study_instance_uid=None, search_filters=None, fields=None, get_remaining=False,
                             limit=None):
        self.asked.append(("instances", study_instance_uid, search_filters))
        return self.instances


def test_the_expected_count_is_the_pacs_related_instances_attribute():
    from viewer.core.pacs.retrieve import _expected_instances

    study = _Qido([{"00201208": {"vr": "IS", "Value": [660]}}])
    assert _expected_instances(study, "1.2", None) == 660
    assert study.asked == [("studies", {"StudyInstanceUID": "1.2"}, ["NumberOfStudyRelatedInstances"])]
    series = _Qido([{"00201209": {"vr": "IS", "Value": ["12"]}}])
    assert _expected_instances(series, "1.2", "1.2.3") == 12
    assert series.asked == [("series", "1.2", {"SeriesInstanceUID": "1.2.3"}, ["NumberOfSeriesRelatedInstances"])]


def test_without_the_attribute_the_instances_are_counted_and_no_match_is_none():
    from viewer.core.pacs.retrieve import _expected_instances

    silent = _Qido([{"0020000D": {"vr": "UI", "Value": ["1.2"]}}], instances=[{}, {}, {}])
    assert _expected_instances(silent, "1.2", None) == 3
    assert silent.asked[-1] == ("instances", "1.2", None)
    empty_value = _Qido([{"00201209": {"vr": "IS"}}], instances=[{}])
    assert _expected_instances(empty_value, "1.2", "1.2.3") == 1
    assert _expected_instances(_Qido([]), "1.2", None) == 0
