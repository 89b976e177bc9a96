"""One-shot commands skip the interpreter's last garbage collection (viewer.cli.skip_final_collection,
issue 19): every object frozen at exit, registered once however often ``main`` runs, and never
for the window."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import viewer.cli as cli

#: Runs the command three times with gc.freeze counted, and prints its exit code; at exit, after
#: every callback the command registered (atexit runs the last registered first), prints how
#: often gc.freeze ran and whether objects are frozen.
PROBE = """
import atexit, gc, sys
calls = []
real_freeze = gc.freeze
def counted():
    calls.append(1)
    real_freeze()
gc.freeze = counted
atexit.register(lambda: print("frozen", len(calls), gc.get_freeze_count() > 0))
import viewer.cli as cli
for _ in range(3):
    code = cli.main(sys.argv[1:])
print("code", code, flush=True)
"""


def _run(*argv: str, cwd: Path) -> tuple[int, int, bool]:
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=cwd, capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    code = int(lines[-2].split()[1])
    _, calls, frozen = lines[-1].split()
    return code, int(calls), frozen == "True"


def test_a_one_shot_command_freezes_everything_at_exit_once(demo_manifest, tmp_path):
    assert _run("stats", str(demo_manifest.parent), "--format", "json", cwd=tmp_path) == (0, 1, True)


def test_a_failing_command_also_ends_frozen(tmp_path):
    assert _run("render", str(tmp_path / "missing"), "-o", str(tmp_path / "x.png"), cwd=tmp_path) == (2, 1, True)


def test_the_window_is_never_frozen(monkeypatch):
    import atexit

    monkeypatch.setattr(cli, "_cmd_gui", lambda args: 0)
    registered = []
    monkeypatch.setattr(atexit, "register", lambda function: registered.append(function))
    monkeypatch.setattr(atexit, "unregister", lambda function: None)
    assert cli.main(["open", "x"]) == 0
    assert cli.main([]) == 0
    assert registered == []
    monkeypatch.setattr(cli, "_cmd_stats", lambda args: 0)
    assert cli.main(["stats", "x"]) == 0
    assert registered and registered[-1] is __import__("gc").freeze


ABANDONED_PROBE = """
import sys, threading
import viewer.core.predict.model as model
from viewer.cli import main
stuck = threading.Event()
# stands for an onnxruntime run abandoned after its time budget; not a daemon, so an ordinary
# interpreter end would wait for it for ever
threading.Thread(target=stuck.wait, name=f"{model.ABANDONED_RUN} onnx slow.onnx").start()
assert model.runs_abandoned()
print("output before the end", flush=False)
sys.argv = ["viewer", *sys.argv[1:]]
sys.exit(main())
"""


def test_a_command_ends_at_once_when_a_model_run_was_abandoned(tmp_path):
    """An abandoned model run still computing would abort the interpreter's end inside
    onnxruntime (status -6); the command ends its process with its own status instead, its
    output flushed, without waiting for that thread."""
    result = subprocess.run([sys.executable, "-c", ABANDONED_PROBE, "render", str(tmp_path / "missing"), "-o",
                             str(tmp_path / "x.png")], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == "output before the end\n"
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")


def test_an_in_process_caller_keeps_its_process_whatever_runs(monkeypatch):
    import viewer.core.predict.model as model

    monkeypatch.setattr(model, "runs_abandoned", lambda: True)
    monkeypatch.setattr(cli, "_cmd_stats", lambda args: 0)
    assert cli.main(["stats", "x"]) == 0  # still here
