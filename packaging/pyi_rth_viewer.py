"""PyInstaller run-time hook: runs in the frozen application before any of its modules.

numba caches the compiled plane-sampling kernels (``cache=True``) next to
``viewer/core/plane_kernels.py``, which sits inside the application folder: often read-only
(installed by root) and in any case not the place for per-user files. Point numba at a
per-user cache folder instead, before numba is imported. The spec collects
``plane_kernels.py`` as a source file because numba's ``NUMBA_CACHE_DIR`` locator needs the
source on disk.

In a frozen app numba stamps cache entries with the executable rather than the source file,
and the executable can be byte-identical across releases; the folder name therefore carries
a hash of the bundled ``plane_kernels.py`` so a new release never loads an older release's
kernels. A ``NUMBA_CACHE_DIR`` set by the user wins. If the folder cannot be created, numba
is left to its own fallback (its user-wide cache folder).
"""

import hashlib
import os
import sys
from pathlib import Path


def _user_cache_dir() -> Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cell-therapy-viewer" / "numba"


def _kernels_digest() -> str:
    source = Path(getattr(sys, "_MEIPASS", "")) / "viewer" / "core" / "plane_kernels.py"
    try:
        return hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    except OSError:
        return "unknown"


if not os.environ.get("NUMBA_CACHE_DIR"):
    _folder = _user_cache_dir() / _kernels_digest()
    try:
        _folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    else:
        os.environ["NUMBA_CACHE_DIR"] = str(_folder)
