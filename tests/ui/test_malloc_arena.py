"""The application's threads share one glibc malloc arena (issue 19: freed numpy temporaries
parked in one arena per worker thread were ~30 MB of the memory the 512×512×300 study kept).

Counted in a fresh child process (arenas, once made, last as long as the process): glibc's
``malloc_info`` lists one ``<heap>`` per arena; three threads that allocate at the same time get
arenas of their own unless :func:`viewer.ui.app.share_malloc_arena` ran before they started.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time

import pytest

from viewer.ui.app import share_malloc_arena

ON_GLIBC = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")

CHILD = r"""
import ctypes, os, sys, tempfile, threading
if sys.argv[1] == "share":
    from viewer.ui.app import share_malloc_arena
    assert share_malloc_arena()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.fopen.restype, libc.fopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p]
libc.fclose.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
together = threading.Barrier(3)

def work():
    block = libc.malloc(1 << 16)
    together.wait()  # all three hold memory at once: none can reuse another's arena
    libc.free(block)

threads = [threading.Thread(target=work) for _ in range(3)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
path = tempfile.mktemp()
handle = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, handle)
libc.fclose(handle)
with open(path) as text:
    print(text.read().count("<heap nr="))
os.unlink(path)
"""


def _arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    result = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(not ON_GLIBC, reason="glibc malloc arenas (Linux)")
def test_threads_started_after_it_allocate_from_the_one_main_arena():
    assert _arenas("own") > 1  # without it each thread gets an arena: the probe sees them
    assert _arenas("share") == 1


@pytest.mark.skipif(not ON_GLIBC, reason="glibc malloc arenas (Linux)")
def test_an_arena_limit_set_in_the_environment_is_left_as_it_is(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert share_malloc_arena() is False


def test_run_gui_shares_the_arena_before_it_starts_any_thread(monkeypatch):
    """The warm-up thread (and Qt's) must get the shared arena: a thread keeps the arena it
    first got. Without a study the kernels' warm-up starts after WARM_UP_LATEST_MS."""
    import threading

    from PySide6 import QtWidgets

    import viewer.ui.app as app

    order: list[str] = []

    class Recorded:
        def __init__(self, *args, **kwargs):
            order.append("thread")

        def start(self):
            order.append("started")

    def run_until_started(self) -> int:
        """The event loop, until the warm-up thread was started (no quit(): a QApplication told
        to quit stops running the timers of the tests after this one)."""
        deadline = time.monotonic() + 10
        while "started" not in order and time.monotonic() < deadline:
            QtWidgets.QApplication.processEvents()
            time.sleep(0.002)
        return 0

    monkeypatch.setattr(app, "_check_display", lambda: None)
    monkeypatch.setattr(app, "share_malloc_arena", lambda: order.append("arena"))
    monkeypatch.setattr(app, "WARM_UP_LATEST_MS", 10)
    monkeypatch.setattr(threading, "Thread", Recorded)
    monkeypatch.setattr(QtWidgets.QApplication, "exec", run_until_started)
    app.run_gui()
    assert order == ["arena", "thread", "started"]


def _warming_window(monkeypatch, latest_ms: int):
    """A stand-in for the window (its frame_drawn signal only) with the kernels' warm-up
    installed, the latest delay ``latest_ms``; returns it and the list each start appends to."""
    from PySide6 import QtCore

    import viewer.ui.app as app

    class Window(QtCore.QObject):
        frame_drawn = QtCore.Signal(str)

    monkeypatch.setattr(app, "WARM_UP_LATEST_MS", latest_ms)
    window = Window()
    started: list[int] = []
    app._warm_up_after_first_frames(window, lambda: started.append(1))
    return window, started


def test_the_kernels_warm_up_once_the_first_three_views_are_drawn(qtbot, monkeypatch):
    """numba's import holds the GIL for ~0.4 s: it starts after the first frames, not while
    the window is built (issue 19: the cold start 1.51 s before, 1.00 s after), and once."""
    window, started = _warming_window(monkeypatch, 60_000)
    for orientation in ("axial", "coronal", "axial"):
        window.frame_drawn.emit(orientation)
    qtbot.wait(20)
    assert started == []  # two views drawn, one of them twice
    window.frame_drawn.emit("sagittal")
    qtbot.waitUntil(lambda: started == [1], timeout=2000)
    window.frame_drawn.emit("axial")
    qtbot.wait(20)
    assert started == [1]


def test_the_kernels_warm_up_without_a_study_after_the_latest_delay(qtbot, monkeypatch):
    window, started = _warming_window(monkeypatch, 30)
    qtbot.waitUntil(lambda: started == [1], timeout=2000)
    qtbot.wait(50)
    assert started == [1]
