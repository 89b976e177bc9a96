"""Benchmark: retrieving a study from a local Orthanc (issue 18) with `viewer pacs get`, over
WADO-RS and over C-GET, against the floor of `curl` fetching the same WADO-RS study URL in the
same run. Prints medians of whole-process runs in MB/s and files/s.

It starts its own Orthanc (Debian orthanc + orthanc-dicomweb) on free loopback ports, writes
the demo's DICOM exam, stores the timepoints' studies until about ``--files`` instances are there,
and retrieves them one study at a time.

Usage: python benchmarks/bench_pacs.py [--runs 3] [--files 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

USER, PASSWORD = "bench", "bench-password"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_orthanc(folder: Path) -> tuple[subprocess.Popen, str, int]:
    http_port, dicom_port = free_port(), free_port()
    config = {"Name": "bench", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
              "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": "BENCH", "RemoteAccessAllowed": False,
              "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD}, "DicomAlwaysAllowGet": True,
              "DicomAlwaysAllowFind": True, "DicomModalities": {},
              "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"], "DicomWeb": {"Enable": True}}
    (folder / "orthanc.json").write_text(json.dumps(config))
    server = subprocess.Popen(["Orthanc", str(folder / "orthanc.json")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    http = f"http://127.0.0.1:{http_port}"
    for _ in range(300):
        try:
            if requests.get(f"{http}/system", auth=(USER, PASSWORD), timeout=1).ok:
                return server, http, dicom_port
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit("Orthanc did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    viewer = Path(sys.executable).with_name("viewer")
    with tempfile.TemporaryDirectory(prefix="bench-pacs-") as tmp:
        root = Path(tmp)
        server, http, dicom_port = start_orthanc(root)
        try:
            subprocess.run([str(viewer), "demo", "--out", str(root / "demo"), "--dicom"], check=True,
                           capture_output=True)
            studies = sorted(p for p in (root / "demo" / "exam").iterdir() if p.is_dir())
            stored, kept = 0, 0
            for study in studies:
                files = [p for p in study.rglob("*") if p.is_file()]
                with ThreadPoolExecutor(4) as pool:
                    list(pool.map(lambda p: requests.post(f"{http}/instances", data=p.read_bytes(),
                                                          auth=(USER, PASSWORD), timeout=60).raise_for_status(), files))
                stored += len(files)
                kept += 1
                if stored >= args.files:
                    break
            study_ids = requests.get(f"{http}/studies", auth=(USER, PASSWORD)).json()
            uids = [requests.get(f"{http}/studies/{i}", auth=(USER, PASSWORD)).json()["MainDicomTags"]["StudyInstanceUID"]
                    for i in study_ids]
            total_bytes = sum(p.stat().st_size for study in studies[:kept] for p in study.rglob("*") if p.is_file())
            config = root / "pacs.toml"
            config.write_text(f'[node.bench]\ndicomweb = "{http}/dicom-web"\nhost = "127.0.0.1"\nport = {dicom_port}\n'
                              f'called_aet = "BENCH"\nusername = "{USER}"\npassword_env = "BENCH_PW"\n')
            env = dict(os.environ, BENCH_PW=PASSWORD)

            def curl() -> None:
                for uid in uids:
                    subprocess.run(["curl", "-sf", "-u", f"{USER}:{PASSWORD}", "-H",
                                    "Accept: multipart/related; type=\"application/dicom\"",
                                    f"{http}/dicom-web/studies/{uid}", "-o", str(root / "curl.out")], check=True)

            def get(via: str) -> None:
                for uid in uids:
                    out = root / f"got-{via}"
                    shutil.rmtree(out, ignore_errors=True)
                    subprocess.run([str(viewer), "pacs", "get", "bench", "--config", str(config), "--via", via,
                                    "--study", uid, "-o", str(out)], check=True, capture_output=True, env=env)

            times: dict[str, list[float]] = {"curl WADO-RS (floor)": [], "viewer pacs get, WADO-RS": [],
                                             "viewer pacs get, C-GET": []}
            for _ in range(args.runs):
                for name, work in (("curl WADO-RS (floor)", curl), ("viewer pacs get, WADO-RS", lambda: get("dicomweb")),
                                   ("viewer pacs get, C-GET", lambda: get("dimse"))):
                    start = time.perf_counter()
                    work()
                    times[name].append(time.perf_counter() - start)
        finally:
            server.terminate()
            server.wait(timeout=15)
    floor = statistics.median(times["curl WADO-RS (floor)"])
    print(f"{stored} instances, {total_bytes / 1e6:.1f} MB in {len(uids)} studies; medians of {args.runs} runs")
    for name, values in times.items():
        seconds = statistics.median(values)
        print(f"{name:28s} {seconds:7.2f} s  {total_bytes / 1e6 / seconds:7.1f} MB/s  {stored / seconds:7.0f} files/s  "
              f"{seconds / floor:5.1f}x the floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
