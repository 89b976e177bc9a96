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
    first got."""
    import threading

    import viewer.ui.app as app

    order: list[str] = []

    class Stop(Exception):
        pass

    def thread(*args, **kwargs):
        order.append("thread")
        raise Stop

    monkeypatch.setattr(app, "_check_display", lambda: None)
    monkeypatch.setattr(app, "share_malloc_arena", lambda: order.append("arena"))
    monkeypatch.setattr(threading, "Thread", thread)
    with pytest.raises(Stop):
        app.run_gui()
    assert order == ["arena", "thread"]
