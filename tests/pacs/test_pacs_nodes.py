"""pacs.toml (PRODUCT.md §8): nodes, credentials from the file or the environment, and one clear
line for every mistake, never holding a secret."""

from __future__ import annotations

import pytest

from viewer.core.errors import ViewerError
from viewer.core.pacs.nodes import default_config_path, find_node, load_nodes
from viewer.core.pacs.query import StudyQuery

SECRET = "s3cret-ba1e-not-shown"


def nodes_of(tmp_path, text: str, environ=None):
    path = tmp_path / "pacs.toml"
    path.write_text(text, encoding="utf-8")
    return load_nodes(path, environ or {})


def test_a_node_with_both_protocols_and_credentials_from_the_environment(tmp_path):
    nodes = nodes_of(tmp_path, """[node.hospital]
dicomweb = "https://pacs.example.org/dicom-web/"
host = "10.0.0.5"
port = 104
called_aet = "HOSPACS"
calling_aet = "READER1"
username = "reader"
password_env = "PACS_PW"
""", {"PACS_PW": SECRET})
    node = nodes["hospital"]
    assert node.dicomweb == "https://pacs.example.org/dicom-web" and node.verify_tls is True
    assert (node.host, node.port, node.called_aet, node.calling_aet) == ("10.0.0.5", 104, "HOSPACS", "READER1")
    assert node.credentials.password == SECRET and node.credentials.kind == "basic"
    assert SECRET not in repr(node)


def test_the_default_file_is_in_the_xdg_configuration_folder(tmp_path):
    assert default_config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "cell-therapy-viewer" / "pacs.toml"


@pytest.mark.parametrize("text, words", [
    ("[node.a]\nhost = 'h'\nport = 104\n", ("host, port and called_aet together",)),
    ("[node.a]\nhost = 'h'\nport = 0\ncalled_aet = 'X'\n", ("port must be a whole number",)),
    ("[node.a]\nhost = 'h'\nport = true\ncalled_aet = 'X'\n", ("port must be a whole number",)),
    ("[node.a]\nhost = 'h'\nport = 104\ncalled_aet = 'MUCH-TOO-LONG-AE-TITLE'\n", ("not an AE title",)),
    ("[node.a]\nhost = 'h'\nport = 104\ncalled_aet = 'A\\\\B'\n", ("not an AE title",)),
    ("[node.a]\ndicomweb = 'ftp://x/dicom-web'\n", ("http:// or https://",)),
    (f"[node.a]\ndicomweb = 'http://u:{SECRET}@x/dicom-web'\n", ("must not hold credentials",)),
    ("[node.a]\ndicomweb = 'http://x/dw'\npassword_env = 'NOT_SET_ANYWHERE'\nusername = 'u'\n",
     ("NOT_SET_ANYWHERE", "not set")),
    (f"[node.a]\ndicomweb = 'http://x/dw'\ntoken = '{SECRET}'\nusername = 'u'\npassword = '{SECRET}'\n",
     ("not both",)),
    ("[node.a]\ndicomweb = 'http://x/dw'\nusername = 'u'\n", ("needs username and password",)),
    (f"[node.a]\nhost = 'h'\nport = 104\ncalled_aet = 'X'\ntoken = '{SECRET}'\n", ("no dicomweb address",)),
    ("[node.a]\ndicomweb = 'http://x/dw'\nverify = false\n", ("unknown key 'verify'",)),
    ("[node.a]\n", ("give dicomweb and/or host",)),
    ("[server]\nx = 1\n", ("names no PACS node",)),
    ("[node.a\n", ("not a readable TOML file",)),
    ("[node.a]\ndicomweb = 'http://x/dw'\nca_bundle = 'missing.pem'\n", ("ca_bundle missing.pem is not a file",)),
])
def test_every_mistake_is_one_line_naming_the_file_and_node_and_never_the_secret(tmp_path, text, words):
    with pytest.raises(ViewerError) as caught:
        nodes_of(tmp_path, text)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "pacs.toml") in message
    assert all(word in message for word in words), message
    assert SECRET not in message


def test_a_missing_file_and_an_unknown_node_say_what_to_do(tmp_path):
    with pytest.raises(ViewerError, match=r"no PACS configuration here: name your nodes"):
        load_nodes(tmp_path / "nowhere.toml", {})
    nodes = nodes_of(tmp_path, "[node.one]\ndicomweb = 'http://x/dw'\n[node.two]\ndicomweb = 'http://y/dw'\n")
    with pytest.raises(ViewerError, match=r"no PACS node 'three'.*the nodes are: one, two"):
        find_node(nodes, "three")


@pytest.mark.parametrize("date, ok", [("20250101", True), ("20250101-20250131", True), ("-20250131", True),
                                      ("20250101-", True), ("2025-01-01", False), ("20251301", False),
                                      ("20250131-20250101", False), ("-", False), ("2025010", False)])
def test_query_dates(date, ok):
    if ok:
        assert StudyQuery(date=date).filters() == {"StudyDate": date}
    else:
        with pytest.raises(ViewerError, match="--date"):
            StudyQuery(date=date)


def test_query_refuses_backslashes_and_control_characters():
    with pytest.raises(ViewerError, match="--patient-id"):
        StudyQuery(patient_id="A\\B")
    with pytest.raises(ViewerError, match="--patient-name"):
        StudyQuery(patient_name="x\ny")
    with pytest.raises(ViewerError, match="--modality"):
        StudyQuery(modality="M R")
