"""A real PACS for the tests: Debian's Orthanc with its DICOMweb plugin, started on free
loopback ports with a temporary configuration and storage, stopped after the session.

DIMSE answers the known AE title only (``DicomCheckCalledAet``) and serves C-ECHO/C-FIND/C-GET/
C-STORE to any caller; HTTP (REST and DICOMweb) needs HTTP basic credentials, so a node
without them gets a 401. The Makefile installs ``orthanc`` and ``orthanc-dicomweb``; without
them these tests fail (they do not skip: a PACS the tests never reach proves nothing).

The studies are written here with pydicom and stored through Orthanc's own REST API, so what
`viewer pacs` finds is checked against files the viewer did not write or send.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import requests

from tests.processes import stop

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
AET = "TESTPACS"
USER, PASSWORD = "viewer", "pw-9f3c1e7a-never-printed"


@dataclass(frozen=True)
class Pacs:
    http: str  # http://127.0.0.1:PORT
    dicom_port: int
    aet: str
    auth: tuple[str, str]
    folder: Path

    @property
    def dicomweb(self) -> str:
        return f"{self.http}/dicom-web"

    def config(self, path: Path, extra: str = "") -> Path:
        """A pacs.toml naming this server as node ``test`` (both protocols, the password from
        the environment variable TEST_PACS_PASSWORD) and ``extra`` nodes."""
        path.write_text(f"""[node.test]
dicomweb = "{self.dicomweb}"
host = "127.0.0.1"
port = {self.dicom_port}
called_aet = "{self.aet}"
username = "{self.auth[0]}"
password_env = "TEST_PACS_PASSWORD"
{extra}""", encoding="utf-8")
        return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_orthanc(folder: Path) -> Iterator[Pacs]:
    """An Orthanc of its own in ``folder`` (configuration, storage, log), stopped on exit."""
    if shutil.which(ORTHANC) is None or not Path(DICOMWEB_PLUGIN).is_file():
        pytest.fail("Orthanc and its DICOMweb plugin are missing: run `make system-packages` (Debian orthanc, "
                    "orthanc-dicomweb)")
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "viewer-tests", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
        "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": AET, "DicomCheckCalledAet": True,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
        "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True, "DicomModalities": {}, "HttpServerEnabled": True,
        "Plugins": [DICOMWEB_PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "SaveJobs": False, "StableAge": 1,
    }
    (folder / "orthanc.json").write_text(json.dumps(config), encoding="utf-8")
    http = f"http://127.0.0.1:{http_port}"
    with open(folder / "orthanc.log", "w") as log:
        server = subprocess.Popen([ORTHANC, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                if server.poll() is not None:
                    pytest.fail(f"Orthanc exited with code {server.returncode}: "
                                f"{(folder / 'orthanc.log').read_text()[-800:]}")
                try:
                    if requests.get(f"{http}/system", auth=(USER, PASSWORD), timeout=1).ok:
                        break
                except requests.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("Orthanc did not answer within 30 s")
                time.sleep(0.1)
            yield Pacs(http, dicom_port, AET, (USER, PASSWORD), folder)
        finally:
            stop(server, timeout=15)


@pytest.fixture(scope="session")
def pacs(tmp_path_factory):
    """The PACS holding the small test studies (:func:`stored_studies`) and nothing else."""
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


# -- studies written by the tests ---------------------------------------------------------------

#: (patient ID, patient name, study date, modalities of its series, description)
STUDIES = (
    ("P-100", "Alpha^Anna", "20250110", ("MR",), "Brain MR"),
    ("P-100", "Alpha^Anna", "20250217", ("MR", "PT"), "PET-MR follow-up"),
    ("P-200", "Beta^Bruno", "20250301", ("CT",), "Head CT"),
    ("P-300", "Gamma^Greta", "20251231", ("PT", "CT"), "PET/CT"),
)


def write_study(folder: Path, index: int, patient_id: str, name: str, date: str, modalities, description) -> list[Path]:
    """A small study (one series per modality, two 8×8 slices each) as pydicom writes it."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    storage = {"MR": "1.2.840.10008.5.1.4.1.1.4", "PT": "1.2.840.10008.5.1.4.1.1.128", "CT": "1.2.840.10008.5.1.4.1.1.2"}
    study_uid = generate_uid(entropy_srcs=["viewer pacs test", str(index)])
    paths = []
    for s, modality in enumerate(modalities):
        series_uid = generate_uid(entropy_srcs=["viewer pacs test", str(index), modality])
        for k in range(2):
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPClassUID = storage[modality]
            ds.SOPInstanceUID = generate_uid(entropy_srcs=["viewer pacs test", str(index), modality, str(k)])
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.SOPClassUID = storage[modality]
            ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient_id, name, "19600101", "O"
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
            ds.StudyDate, ds.StudyTime, ds.StudyDescription = date, "101500", description
            ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = str(index), f"ACC{index}", ""
            ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, s + 1, k + 1
            ds.ImagePositionPatient = [0.0, 0.0, float(k)]
            ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 1.0
            ds.Rows = ds.Columns = 8
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.PixelData = (np.arange(64, dtype=np.uint16).reshape(8, 8) + 100 * k + 1000 * index).tobytes()
            path = folder / f"study{index}_{modality}_{k}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


class StoredStudies(list):
    """The stored studies' Study Instance UIDs, in STUDIES order; ``files[i]`` are study i's files."""

    files: list[list[Path]]


@pytest.fixture(scope="session")
def stored_studies(pacs, tmp_path_factory) -> StoredStudies:
    """The four test studies, stored in the PACS through its REST API."""
    from pydicom import dcmread

    folder = tmp_path_factory.mktemp("pacs-studies")
    uids = StoredStudies()
    uids.files = []
    for index, study in enumerate(STUDIES):
        paths = write_study(folder, index, *study)
        for path in paths:
            answer = requests.post(f"{pacs.http}/instances", data=path.read_bytes(), auth=pacs.auth, timeout=30)
            assert answer.ok, answer.text
        uids.append(str(dcmread(paths[0]).StudyInstanceUID))
        uids.files.append(paths)
    return uids


def mr_slice(patient_id: str, study_uid: str, series_uid: str, k: int, size: int):
    """Slice ``k`` of a plain MR series (``size``×``size``, uint16 values k + pixel index), as
    pydicom writes it: what the send and server-stop tests store."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.PatientID, ds.PatientName, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient_id, "Test^Series", study_uid, series_uid
    ds.Modality, ds.StudyDate, ds.InstanceNumber = "MR", "20250101", k + 1
    ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing = [0, 0, k], [1, 0, 0, 0, 1, 0], [1, 1]
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = (np.arange(size * size, dtype=np.uint16) + k).tobytes()
    return ds
