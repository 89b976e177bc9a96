"""Default display levels and the opening focus, kept per image file in the user's cache.

Why: an image's default levels need its largest finite voxel (a ¹⁹F hotspot of one voxel must
reach the top of the colour scale, PRODUCT.md's explicit-levels rule), and the ¹⁹F levels and
the opening focus need the reference tube grown over the whole map. That is a pass over every
voxel; done once per image file and remembered, `viewer render`, `viewer report` and the
window's opening read a few bytes instead of the volume the next time.

What a result is kept under: the file's identity when it was read (resolved path, size,
modification and change times in ns, inode and device: the test `make` and rsync trust, plus
the inode, so a file replaced by a copy of the same size and time is another file) and
everything else the numbers depend on — the role, how the values were derived from the file
(a NIfTI PET's SUV factor), and for ¹⁹F the region map's identity, which labels are the
calibration regions and the two images' placement. A volume holds its identity in
``meta[FILE_IDENTITY]`` from the moment it is read until its voxels are edited
(:class:`viewer.core.regions.EditableLabels` drops it at the first edit); a volume without one
is computed every time, never cached.

The cache is a convenience: an entry that cannot be read or does not parse is recomputed, a
folder that cannot be written is not written, and neither is ever an error. Entries hold
numbers only, named by the SHA-256 of their key: no path, name or identifier of a study is
written into the cache folder. It is bounded (:data:`MAX_ENTRIES`; the least recently written
half goes when it is full).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from viewer.core.volume import FILE_IDENTITY

#: Raised whenever the way defaults are computed changes: older entries are then never read.
ALGORITHM_VERSION = 1

#: Most entries kept (a few hundred bytes each).
MAX_ENTRIES = 4096

#: Environment variable naming the cache folder; ``off`` turns caching off.
CACHE_ENVIRONMENT = "VIEWER_CACHE_DIR"


def file_identity(path: str | os.PathLike[str]) -> tuple[str, int, int, int, int, int] | None:
    """(resolved path, size B, mtime ns, ctime ns, inode, device) of a file, None if it cannot
    be read by stat."""
    try:
        resolved = Path(path).resolve()
        status = resolved.stat()
    except (OSError, RuntimeError, ValueError):
        return None
    return (str(resolved), status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino, status.st_dev)


def values_identity(volume: Any) -> list[Any] | None:
    """What a volume's voxel values are, for a cache key: the identity of the file they were read
    from, the role, dtype and shape, and how they were derived from the file (the SUV factor of
    a NIfTI PET); None when the volume has no file identity (built in memory, or edited)."""
    identity = volume.meta.get(FILE_IDENTITY)
    if identity is None:
        return None
    suv = volume.meta.get("suv_factor")
    return [list(identity), volume.role, np.dtype(volume.dtype).str, list(volume.shape),
            None if suv is None else repr(float(suv))]


def default_cache_folder(environment: dict[str, str] | os._Environ[str] = os.environ) -> Path | None:
    """``$VIEWER_CACHE_DIR`` (``off``: no cache), else ``$XDG_CACHE_HOME`` or ``~/.cache``,
    each followed by ``cell-therapy-viewer/levels``."""
    chosen = environment.get(CACHE_ENVIRONMENT, "")
    if chosen.strip().lower() == "off":
        return None
    if chosen:
        return Path(chosen) / "levels"
    base = environment.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cell-therapy-viewer" / "levels"


class LevelsCache:
    """Numbers kept in one small JSON file per key in ``folder`` (created when first written)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def get(self, key: Sequence[Any]) -> list[float] | None:
        """The numbers kept under ``key``, or None (never kept, unreadable, or not numbers)."""
        name, digest = self._name(key)
        try:
            with open(self.folder / name, encoding="ascii") as stream:
                entry = json.load(stream)
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        if not isinstance(entry, dict) or entry.get("key") != digest:
            return None
        values = entry.get("values")
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   and not math.isnan(v) for v in values):
            return None
        return [float(v) for v in values]

    def put(self, key: Sequence[Any], values: Sequence[float]) -> None:
        """Keep ``values`` (finite or infinite floats) under ``key``: written to a temporary
        file and renamed, so a reader never sees half an entry; any failure leaves no file."""
        name, digest = self._name(key)
        text = json.dumps({"key": digest, "values": [float(v) for v in values]})
        temporary = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._bound()
            handle, temporary = tempfile.mkstemp(prefix=".entry-", suffix=".tmp", dir=self.folder)
            with os.fdopen(handle, "w", encoding="ascii") as stream:
                stream.write(text)
            os.replace(temporary, self.folder / name)
            temporary = None
        except OSError:
            pass  # a read-only or full cache folder: the numbers are computed again next time
        finally:
            if temporary is not None:
                try:
                    os.unlink(temporary)
                except OSError:
                    pass

    def _bound(self) -> None:
        entries = [entry for entry in os.scandir(self.folder) if entry.name.endswith(".json")]
        if len(entries) < MAX_ENTRIES:
            return
        entries.sort(key=lambda entry: entry.stat().st_mtime_ns)
        for entry in entries[: len(entries) // 2]:
            try:
                os.unlink(entry.path)
            except OSError:
                pass

    @staticmethod
    def _name(key: Sequence[Any]) -> tuple[str, str]:
        digest = hashlib.sha256(json.dumps([ALGORITHM_VERSION, *key], default=_plain).encode()).hexdigest()
        return f"{digest[:40]}.json", digest


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [repr(float(v)) for v in value.ravel()]  # every bit of a placement counts
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"not a cache key part: {type(value).__name__}")


def open_levels_cache(environment: dict[str, str] | os._Environ[str] = os.environ) -> LevelsCache | None:
    """The user's levels cache (:func:`default_cache_folder`), None when turned off."""
    folder = default_cache_folder(environment)
    return None if folder is None else LevelsCache(folder)


def cached_numbers(cache: LevelsCache | None, key: Sequence[Any] | None, count: int,
                   compute: Callable[[], Sequence[float]]) -> list[float]:
    """The ``count`` numbers under ``key`` if kept, else ``compute()`` (then kept, when there
    is a key: None means the inputs have no identity and are computed every time)."""
    if cache is None or key is None:
        return [float(v) for v in compute()]
    kept = cache.get(key)
    if kept is not None and len(kept) == count:
        return kept
    values = [float(v) for v in compute()]
    cache.put(key, values)
    return values
