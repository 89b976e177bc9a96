"""DICOMweb requests are tried twice, not five times with back-off (issue 18): dicomweb-client
retries every failure, so a refused connection took 30 s to report. Counted on a local HTTP
server that answers 503 (busy) to everything: exactly two requests, then one error line."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from viewer.cli import main


def test_a_busy_server_is_asked_twice_then_reported(tmp_path, capsys):
    seen: list[str] = []

    class Busy(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            seen.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = tmp_path / "pacs.toml"
        config.write_text(f'[node.busy]\ndicomweb = "http://127.0.0.1:{server.server_address[1]}/dicom-web"\n')
        code = main(["pacs", "echo", "busy", "--config", str(config)])
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "503" in err[0] and "busy" in err[0]
    assert len(seen) == 2 and all(path.startswith("/dicom-web/studies") for path in seen)
