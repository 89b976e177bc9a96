"""`viewer pacs echo` and `viewer pacs find` against a real Orthanc (issue 18), over DICOMweb and
over DIMSE, and the faults a user meets: one clear line each, credentials never shown."""

from __future__ import annotations

import json

import pytest

from tests.pacs.conftest import PASSWORD, STUDIES
from viewer.cli import main

VIAS = ("dicomweb", "dimse")


@pytest.fixture
def config(pacs, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PACS_PASSWORD", PASSWORD)
    return pacs.config(tmp_path / "pacs.toml", extra=f"""
[node.anonymous]
dicomweb = "{pacs.dicomweb}"

[node.wrong-password]
dicomweb = "{pacs.dicomweb}"
username = "viewer"
password = "not-the-password-5b1d"

[node.wrong-aet]
host = "127.0.0.1"
port = {pacs.dicom_port}
called_aet = "NOT-THE-PACS"

[node.no-root]
dicomweb = "{pacs.http}/no-dicom-web-here"
username = "viewer"
password_env = "TEST_PACS_PASSWORD"
""")


def run(capsys, *arguments):
    code = main(list(arguments))
    out, err = capsys.readouterr()
    return code, out, err


def find_json(capsys, config, via, *filters) -> list[dict]:
    code, out, err = run(capsys, "pacs", "find", "test", "--config", str(config), "--via", via, "--format", "json",
                         *filters)
    assert code == 0 and err == "", err
    return json.loads(out)


@pytest.mark.parametrize("via", VIAS)
def test_echo_reaches_the_pacs(capsys, config, via):
    code, out, err = run(capsys, "pacs", "echo", "test", "--config", str(config), "--via", via)
    assert code == 0 and err == ""
    assert ("C-ECHO" if via == "dimse" else "DICOMweb") in out


def test_echo_without_via_checks_every_protocol_of_the_node(capsys, config):
    code, out, _ = run(capsys, "pacs", "echo", "test", "--config", str(config))
    assert code == 0 and len(out.strip().splitlines()) == 2


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("filters, expected", [
    (("--patient-id", "P-100"), {0, 1}),
    (("--patient-id", "P-999"), set()),
    (("--date", "20250201-20250331"), {1, 2}),
    (("--date", "20251231"), {3}),
    (("--date", "-20250131"), {0}),
    (("--modality", "PT"), {1, 3}),
    (("--modality", "ct"), {2, 3}),
    (("--patient-name", "Beta*"), {2}),
    (("--patient-id", "P-100", "--modality", "PT"), {1}),
    ((), {0, 1, 2, 3}),
])
def test_find_returns_exactly_the_matching_studies(capsys, config, stored_studies, via, filters, expected):
    found = find_json(capsys, config, via, *filters)
    assert {study["study_uid"] for study in found} == {stored_studies[i] for i in expected}


@pytest.mark.parametrize("via", VIAS)
def test_find_json_has_the_contract_s_keys_and_values(capsys, config, stored_studies, via):
    found = {study["study_uid"]: study for study in find_json(capsys, config, via)}
    for index, (patient_id, name, date, modalities, description) in enumerate(STUDIES):
        study = found[stored_studies[index]]
        assert list(study) == ["study_uid", "patient_id", "patient_name", "study_date", "modalities", "description",
                               "series_count"]
        assert (study["patient_id"], study["patient_name"], study["study_date"]) == (patient_id, name, date)
        assert study["modalities"] == sorted(modalities) and study["description"] == description
        assert study["series_count"] == len(modalities)


def test_find_prints_a_table_by_default(capsys, config, stored_studies):
    code, out, _ = run(capsys, "pacs", "find", "test", "--config", str(config), "--patient-id", "P-200")
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].startswith("study date") and "Beta^Bruno" in lines[1] and lines[-1] == "1 study"


@pytest.mark.parametrize("node, via, words", [
    ("anonymous", "dicomweb", ("HTTP 401", "credentials")),
    ("wrong-password", "dicomweb", ("HTTP 401",)),
    ("wrong-aet", "dimse", ("rejected the association", "called AE title")),
    ("no-root", "dicomweb", ("HTTP 404", "no DICOMweb service")),
])
def test_a_fault_is_one_clear_line_without_the_credentials(capsys, config, node, via, words):
    code, out, err = run(capsys, "pacs", "echo", node, "--config", str(config), "--via", via)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert all(word in err for word in words), err
    assert PASSWORD not in err and "not-the-password-5b1d" not in err


@pytest.mark.parametrize("via", VIAS)
def test_an_unreachable_node_is_one_line(capsys, tmp_path, via):
    from tests.pacs.conftest import free_port

    port = free_port()  # nothing listens there
    config = tmp_path / "pacs.toml"
    config.write_text(f"""[node.gone]
dicomweb = "http://127.0.0.1:{port}/dicom-web"
host = "127.0.0.1"
port = {port}
called_aet = "GONE"
timeout_s = 3
""", encoding="utf-8")
    code, out, err = run(capsys, "pacs", "find", "gone", "--config", str(config), "--via", via)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "cannot reach PACS node 'gone'" in err
