"""Study ▸ Register in the window: a moved session registered on a worker, the manifest
written, the study reopened in the reference space; Cancel writes nothing."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from tests.core.test_registration import BRAIN_POINTS, MOVED, _study, reference, template  # noqa: F401
from tests.ui.conftest import open_window
from viewer.core.study_registration import target_errors


def test_register_from_the_window_and_reopen_in_the_reference_space(qtbot, settings, tmp_path, template, reference):
    manifest = _study(tmp_path / "s", template, reference)
    win = open_window(qtbot, settings, manifest)
    win._quiet_dialogs = True
    win.ask_registration = lambda: (None, None, "rigid")
    assert win.start_registration()
    qtbot.waitUntil(lambda: win.last_notice is not None and "day 7" in win.last_notice, timeout=120_000)
    assert "written" in win.last_notice
    transform = np.array(tomllib.loads(manifest.read_text())["timepoint"][1]["transform"])
    assert target_errors(transform, MOVED, BRAIN_POINTS).max() <= 1.0
    qtbot.waitUntil(lambda: win.scene.study.timepoints[1].transform is not None, timeout=20_000)
    assert np.allclose(win.scene.study.timepoints[1].transform, transform)


def test_cancel_writes_nothing(qtbot, settings, tmp_path, template, reference):
    manifest = _study(tmp_path / "s", template, reference)
    before = manifest.read_bytes()
    win = open_window(qtbot, settings, manifest)
    win.ask_registration = lambda: (None, None, "rigid")
    assert win.start_registration()
    win._register_stop.set()  # what the progress dialog's Cancel does
    qtbot.waitUntil(lambda: win.last_error is not None, timeout=120_000)
    assert "cancelled" in win.last_error and "\n" not in win.last_error
    assert manifest.read_bytes() == before


def test_unsaved_edits_come_first(qtbot, window):
    from viewer.core.edit_tools import brush_stroke

    editable = window.scene.editable()
    brush_stroke(editable, [window.scene.cursor], 4.0, 9, plane=window.scene.plane("axial"))
    assert not window.start_registration()
    assert "Save or discard" in window.last_error
