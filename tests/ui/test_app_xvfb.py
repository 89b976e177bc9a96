"""The real application in a real X window (Xvfb + Qt's xcb platform), started as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.xvfb, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _free_display() -> int:
    for number in range(90, 140):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            return number
    raise RuntimeError("no free X display number")


@pytest.fixture
def xvfb():
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (make test installs it)")
    number = _free_display()
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1920x1080x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            pytest.fail("Xvfb did not start")
        time.sleep(0.05)
    try:
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _real_window(xvfb, manifest, tmp_path, preferences_ini: str) -> tuple[np.ndarray, float]:
    """Start `viewer open` as a user would, with ``preferences_ini`` as its settings (never a
    workspace beside the shared demo); the screenshot of its first frame (RGB int) and the
    start-up probe's time."""
    probe = tmp_path / "startup.txt"
    shot = tmp_path / "window.png"
    preferences = tmp_path / "config" / "cell-therapy-viewer" / "viewer.ini"
    preferences.parent.mkdir(parents=True)
    preferences.write_text("[workspace]\nremember=false\n\n" + preferences_ini)
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    env.update(DISPLAY=xvfb, QT_QPA_PLATFORM="xcb", VIEWER_STARTUP_PROBE=str(probe), VIEWER_STARTUP_SCREENSHOT=str(shot),
               XDG_CONFIG_HOME=str(tmp_path / "config"))
    result = subprocess.run([sys.executable, "-m", "viewer", "open", str(manifest)], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return np.asarray(Image.open(shot).convert("RGB")).astype(int), float(probe.read_text())


def test_real_window_under_xvfb_shows_anatomy_and_overlays(xvfb, demo_manifest, tmp_path):
    image, started = _real_window(xvfb, demo_manifest, tmp_path, "")
    assert started > 0
    assert image.shape[1] >= 1000
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    grey = (np.abs(r - g) < 12) & (np.abs(g - b) < 12) & (r > 60) & (r < 230)
    hot = (r > 200) & (r - b > 100) & (g > 60) & (g < 200)
    assert grey.sum() > 5_000, "no anatomy visible"
    assert hot.sum() > 30, "no hot (19F/PET) overlay colour visible"
    assert len(np.unique(image.reshape(-1, 3)[::37], axis=0)) > 300, "screenshot looks blank"


def test_real_window_compares_two_timepoints_side_by_side(xvfb, demo_manifest, tmp_path):
    """The compare layout chosen in the preferences: the real window shows day 1 and day 7 of
    the same axial plane beside each other, both with anatomy, each with its own cells."""
    image, _ = _real_window(xvfb, demo_manifest, tmp_path, "[view]\nlayout=compare\n")
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    grey = (np.abs(r - g) < 12) & (np.abs(g - b) < 12) & (r > 60) & (r < 230)
    hot = (r > 200) & (r - b > 100) & (g > 60) & (g < 200)
    height, width_px = grey.shape
    # the middle rows of the views' area (left of the side panel, which is grey itself): the
    # anatomy fills two separate column bands there, one per timepoint
    grey[: height // 6] = grey[-height // 6:] = False
    grey[:, int(0.58 * width_px):] = False
    hot[:, int(0.58 * width_px):] = False
    columns = grey.sum(axis=0)
    inside = np.flatnonzero(columns > 20)
    gaps = np.flatnonzero(np.diff(inside) > 30)
    assert len(gaps) >= 1, "one anatomy band only: the two timepoints are not side by side"
    split = (inside[gaps[0]] + inside[gaps[0] + 1]) // 2
    left, right = grey[:, :split].sum(), grey[:, split:].sum()
    assert left > 5_000 and right > 5_000, (left, right)
    # the same anatomy at the same place in both, the cells of each timepoint on it
    start_left, start_right = inside[0], inside[gaps[0] + 1]
    width = min(inside[gaps[0]] - start_left, inside[-1] - start_right)
    profile = columns[start_left:start_left + width].astype(float)
    best = max(np.corrcoef(profile, columns[start_right + shift:start_right + shift + width])[0, 1]
               for shift in range(-3, 4))
    assert best > 0.95, "the two views do not show the same plane at the same scale"
    assert hot[:, start_left:start_left + width].sum() > 50 and hot[:, start_right:start_right + width].sum() > 50
    assert (hot[:, start_left:start_left + width] != hot[:, start_right:start_right + width]).sum() > 20
