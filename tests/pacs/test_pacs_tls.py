"""HTTPS nodes are verified, and bearer tokens are sent and never shown (issue 18).

TLS: the real Orthanc behind a TLS front (Debian's Orthanc 1.10 crashes with a segmentation
fault on its first HTTPS connection when its own SslEnabled is on, so the tests terminate TLS
in front of it, as a hospital's reverse proxy would) with a certificate made here by openssl
for 127.0.0.1; the node works with that certificate as its ``ca_bundle``, is refused with one
line without it (the system's authorities do not know it), and works with ``verify_tls = false``.
Bearer: Orthanc 1.10 has no bearer authentication, so a small local HTTP server stands in; it
answers a QIDO-RS study search only with the right ``Authorization: Bearer`` header.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from dataclasses import replace
from pathlib import Path

import pytest

from tests.pacs.conftest import PASSWORD, running_orthanc
from viewer.cli import main


def self_signed(folder: Path) -> tuple[Path, Path]:
    """(certificate, certificate + key) for 127.0.0.1, valid for two days."""
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    both = folder / "server.pem"
    both.write_text(cert.read_text() + key.read_text())
    return cert, both


@contextmanager
def tls_front(certificate: Path, backend_port: int):
    """A TLS listener on a free loopback port that relays every connection to ``backend_port``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate)
    listener = socket.create_server(("127.0.0.1", 0))
    stopping = threading.Event()

    def pump(source, target):
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        while not stopping.is_set():
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                client = context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):  # a client that does not trust the certificate hangs up
                raw.close()
                continue
            backend = socket.create_connection(("127.0.0.1", backend_port))
            threading.Thread(target=pump, args=(client, backend), daemon=True).start()
            threading.Thread(target=pump, args=(backend, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        stopping.set()
        listener.close()


@pytest.fixture(scope="module")
def https_pacs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("orthanc-tls")
    cert, both = self_signed(folder)
    (folder / "server").mkdir()
    with running_orthanc(folder / "server") as server:
        backend = int(server.http.rsplit(":", 1)[1])
        with tls_front(both, backend) as port:
            yield replace(server, http=f"https://127.0.0.1:{port}"), cert


@pytest.fixture(autouse=True)
def environment_bundle(monkeypatch):
    """Set as on many hospital machines: requests would let it replace the node's TLS choice
    (psf/requests#3829); the node's ca_bundle / verify_tls must still win."""
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi.where())


def node_file(tmp_path: Path, server, tls: str) -> Path:
    path = tmp_path / "pacs.toml"
    path.write_text(f'[node.secure]\ndicomweb = "{server.dicomweb}"\nusername = "{server.auth[0]}"\n'
                    f'password_env = "TEST_PACS_PASSWORD"\n{tls}\n')
    return path


def test_https_with_the_hospital_ca_bundle_answers(https_pacs, tmp_path, monkeypatch, capsys):
    server, cert = https_pacs
    assert server.dicomweb.startswith("https://")
    monkeypatch.setenv("TEST_PACS_PASSWORD", PASSWORD)
    config = node_file(tmp_path, server, f'ca_bundle = "{cert}"')
    assert main(["pacs", "echo", "secure", "--config", str(config)]) == 0
    assert "DICOMweb at https://" in capsys.readouterr().out


def test_https_with_an_unknown_certificate_is_refused_in_one_line(https_pacs, tmp_path, monkeypatch, capsys):
    server, _ = https_pacs
    monkeypatch.setenv("TEST_PACS_PASSWORD", PASSWORD)
    config = node_file(tmp_path, server, "")
    assert main(["pacs", "echo", "secure", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TLS certificate is not trusted" in err[0] and "ca_bundle" in err[0]
    assert PASSWORD not in err[0]


def test_verify_tls_false_turns_checking_off(https_pacs, tmp_path, monkeypatch, capsys):
    server, _ = https_pacs
    monkeypatch.setenv("TEST_PACS_PASSWORD", PASSWORD)
    config = node_file(tmp_path, server, "verify_tls = false")
    assert main(["pacs", "echo", "secure", "--config", str(config)]) == 0


TOKEN = "tok-5d1e0b3c-never-printed"


@pytest.fixture
def bearer_server():
    seen: list[str | None] = []

    class Bearer(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            seen.append(self.headers.get("Authorization"))
            good = self.headers.get("Authorization") == f"Bearer {TOKEN}" and self.path.startswith("/dicom-web/studies")
            body = json.dumps([]).encode() if good else b""
            self.send_response(200 if good else 401)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Bearer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("token, code", [(TOKEN, 0), ("wrong-token-3f9a", 2)])
def test_a_bearer_token_is_sent_and_never_shown(bearer_server, tmp_path, monkeypatch, capsys, token, code):
    url, seen = bearer_server
    monkeypatch.setenv("TEST_PACS_TOKEN", token)
    config = tmp_path / "pacs.toml"
    config.write_text(f'[node.web]\ndicomweb = "{url}"\ntoken_env = "TEST_PACS_TOKEN"\n')
    assert main(["pacs", "find", "web", "--config", str(config), "--format", "json"]) == code
    out, err = capsys.readouterr()
    assert seen and set(seen) == {f"Bearer {token}"}
    assert token not in out + err
    if code == 0:
        assert json.loads(out) == []
    else:
        assert "HTTP 401" in err and len(err.strip().splitlines()) == 1
