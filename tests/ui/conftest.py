"""Fixtures for window tests: a MainWindow with private settings, opened on the demo study."""

from __future__ import annotations

import pytest
from PySide6 import QtCore, QtWidgets

from viewer.ui.main_window import MainWindow


@pytest.fixture
def settings(tmp_path):
    """Private preferences; the shared demo study gets no workspace file written beside it
    (tests that check the workspace turn it on for their own copy of the study)."""
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    settings.setValue("workspace/remember", "false")
    return settings


def open_window(qtbot, settings, manifest, size=(1500, 900)):
    """A shown MainWindow with private settings, opened on ``manifest``, its three views drawn.
    The questions it could ask are answered: discard unsaved regions, do not recover."""
    win = MainWindow(settings=settings)
    # never block the test run on the "unsaved regions" question when pytest-qt closes the window
    win.ask_unsaved = lambda unsaved: QtWidgets.QMessageBox.StandardButton.Discard
    win.ask_recover = lambda infos: False
    qtbot.addWidget(win)
    win.resize(*size)
    win.show()
    drawn: set[str] = set()
    win.frame_drawn.connect(drawn.add)
    assert win.open(manifest), win.last_error
    qtbot.waitUntil(lambda: len(drawn & {"axial", "coronal", "sagittal"}) == 3, timeout=20_000)
    return win


@pytest.fixture
def window(qtbot, settings, demo_manifest):
    win = open_window(qtbot, settings, demo_manifest)
    yield win
    win.jobs.wait()




@pytest.fixture
def study_copy(demo_manifest, tmp_path):
    """A private copy of the demo study (tests that save regions rewrite its manifest)."""
    import shutil

    target = tmp_path / "study"
    shutil.copytree(demo_manifest.parent, target)
    return target / "study.toml"


@pytest.fixture(scope="module")
def demo_stats(demo_manifest):
    """Every demo timepoint's numbers, computed once (the window does this in a worker)."""
    from viewer.core.io.study import load_study
    from viewer.core.scene import Scene

    scene = Scene(load_study(demo_manifest))
    return {t.label: scene.stats(t) for t in scene.study.timepoints}


@pytest.fixture
def scene(demo_manifest):
    """A fresh scene of the demo study (no window)."""
    from viewer.core.io.study import load_study
    from viewer.core.scene import Scene

    return Scene(load_study(demo_manifest))

