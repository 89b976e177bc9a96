"""Starting the desktop application (``viewer``, ``viewer open …``, ``viewer --demo``)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Sequence

from viewer import __version__
from viewer.core.errors import ViewerError


def demo_folder() -> Path:
    """Where ``viewer --demo`` keeps its demo study (XDG data folder)."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "cell-therapy-viewer" / "demo-study"


def ensure_demo() -> Path:
    """The demo study's manifest, written on first use (the generator is imported only then)."""
    folder = demo_folder()
    manifest = folder / "study.toml"
    if not manifest.exists():
        from viewer.core.demo import write_demo_study

        write_demo_study(folder, overwrite=folder.exists())
    return manifest


def _check_display() -> None:
    """Refuse early, with one line, when no screen is available (instead of Qt aborting)."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if sys.platform.startswith("linux") and not platform and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise ViewerError("no display available: set DISPLAY (e.g. run under xvfb-run) or QT_QPA_PLATFORM=offscreen")


def application_icon():
    """The application icon (a QIcon) from the bundled resources; empty if they are missing."""
    from PySide6 import QtGui

    from viewer.core.resources import resources_dir

    icon = QtGui.QIcon()
    try:
        folder = resources_dir() / "icons"
    except ViewerError:
        return icon
    for name in ("cell-therapy-viewer.svg", "cell-therapy-viewer.png"):
        if (folder / name).is_file():
            icon.addFile(str(folder / name))
    return icon


#: ``mallopt`` parameter of glibc's <malloc.h>: the most malloc arenas the process may create.
_M_ARENA_MAX = -8


def share_malloc_arena() -> bool:
    """Make every thread started from now on allocate from glibc's one main malloc arena
    (Linux); True when it was set.

    Why: glibc gives each new thread an arena of its own (up to eight per core), and an arena
    keeps the memory its thread frees for that thread's next allocations. The window's slice
    jobs (one pool thread per core) and its statistics thread each free tens of MB of numpy
    temporaries per frame or measurement (~17 MB for one 512×512 view of five layers), so each
    arena held a working set of its own: opening the 512×512×300 benchmark study grew the heap
    by 103 MB, of which ~30 MB was freed memory parked in arenas of idle threads (issue 19).
    With one arena what one job frees serves the next, whichever thread runs it. Our threads
    make few and large allocations (numpy arrays; Python's small objects come from its own
    allocator), so the shared arena's lock costs no measurable time (compared before and
    after: slice steps, the hover readout, opening the study with its statistics, the cold
    start, a report).

    Runs before the threads it is meant for (a thread keeps the arena it first got). A
    ``MALLOC_ARENA_MAX`` set in the environment is left as it is; other C libraries (macOS,
    Windows, musl) are not touched.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
        if not hasattr(libc, "gnu_get_libc_version"):
            return False  # not glibc: its mallopt takes other numbers
        return bool(libc.mallopt(_M_ARENA_MAX, 1))
    except OSError:
        return False


def run_gui(paths: Sequence[str | os.PathLike[str]] = ()) -> int:
    """Open the window on ``paths`` (the first that opens) and run the event loop.

    ``VIEWER_STARTUP_PROBE=FILE`` writes the seconds from process start to the first drawn
    frame of every view into FILE and quits (used by the start-up benchmark); with
    ``VIEWER_STARTUP_SCREENSHOT=PNG`` it also saves the window as drawn (smoke tests).
    """
    _check_display()
    share_malloc_arena()  # before any thread starts, the warm-up's and Qt's included
    import threading

    from PySide6 import QtWidgets

    from viewer.core.plane_kernels import warm_up
    from viewer.ui.main_window import MainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("Cell-therapy viewer")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("cell-therapy-viewer")  # Wayland/X11 match the window to the .desktop entry
    app.setWindowIcon(application_icon())
    window = MainWindow()
    _warm_up_after_first_frames(window, lambda: threading.Thread(target=warm_up, name="warm-up kernels",
                                                                 daemon=True).start())
    probe = os.environ.get("VIEWER_STARTUP_PROBE")
    if probe:
        _install_startup_probe(window, app, Path(probe))
    window.show()
    for path in paths:
        if window.open(path):
            break
    return app.exec()


#: The kernels are loaded this long after start-up (ms) at the latest, when no study draws sooner.
WARM_UP_LATEST_MS = 3000


def _warm_up_after_first_frames(window, start) -> None:
    """Call ``start`` (loading the compiled kernels) once the window has drawn its first three
    views, or after :data:`WARM_UP_LATEST_MS` without a study.

    Why not at once: numba's import is ~0.4 s of Python holding the GIL, so on a thread of its
    own it slowed the main thread building the window and opening the study; the first frames
    are sampled with numpy anyway (viewer.core.plane_kernels), so the kernels are needed only
    from the next slice steps on."""
    from PySide6 import QtCore

    drawn: set[str] = set()
    started = False

    def begin() -> None:
        nonlocal started
        if not started:
            started = True
            window.frame_drawn.disconnect(on_frame)
            start()

    def on_frame(orientation: str) -> None:
        drawn.add(orientation)
        if len(drawn) >= 3:
            QtCore.QTimer.singleShot(0, window, begin)  # after the views have painted these frames

    window.frame_drawn.connect(on_frame)
    QtCore.QTimer.singleShot(WARM_UP_LATEST_MS, window, begin)  # not after the window is gone


def _install_startup_probe(window, app, target: Path) -> None:
    """Record the time to the first frame of all three views, then quit."""
    drawn: set[str] = set()

    screenshot = os.environ.get("VIEWER_STARTUP_SCREENSHOT")

    def on_frame(orientation: str) -> None:
        drawn.add(orientation)
        if len(drawn) == 3:
            window.frame_drawn.disconnect(on_frame)
            app.processEvents()  # let the views paint what they were given
            elapsed = _process_start_seconds()
            if screenshot:
                window.save_screenshot(screenshot)
            target.write_text(f"{elapsed:.3f}\n")
            app.quit()

    window.frame_drawn.connect(on_frame)


def _process_start_seconds() -> float:
    """Seconds since this process started (Linux /proc; falls back to interpreter start)."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        with open("/proc/self/stat") as handle:
            start_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
        return uptime - start_ticks / ticks
    except (OSError, ValueError, IndexError):
        return time.process_time()
