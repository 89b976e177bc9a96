"""Atomic file writes: nothing half-written is ever left where a user looks.

Every output (PNG, PDF, JSON, NIfTI, manifest) is written to a temporary file in the target's
folder, flushed to disk with fsync, and renamed over the target with ``os.replace`` (atomic
on POSIX and Windows). If anything fails the temporary file is removed and the target is
untouched.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator


@contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target``.

    Args:
        target: final file path.
        suffix: suffix of the temporary file (defaults to the target's, so libraries that
            pick a format from the extension still work).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(target.suffixes[-2:]) if target.name.endswith(".nii.gz") else target.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would have,
        # or the mode of the file it replaces.
        os.chmod(tmp, target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~current_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(target: str | Path, payload: bytes) -> Path:
    """Write bytes atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(payload)
    return Path(target)


def write_text_atomic(target: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return write_bytes_atomic(target, text.encode("utf-8"))


def write_folder_atomically(
    folder: str | Path,
    write: Callable[[Path], None],
    check_target: Callable[[Path], None] | None = None,
) -> Path:
    """Build a folder in a temporary sibling, then rename it into place.

    ``write`` fills the temporary folder. ``check_target`` (called before and again after the
    build) refuses a target that must not be replaced. An existing target is moved aside and
    deleted only after the new folder is in place; on failure it is put back and the temporary
    folder removed, so a reader never sees a half-written folder.
    """
    folder = Path(folder)
    if check_target is not None:
        check_target(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    old: Path | None = None
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes the folder private (0700)
        write(tmp)
        if check_target is not None:
            check_target(folder)
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
            os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / folder.name).exists() and not folder.exists():
            os.replace(old / folder.name, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def current_umask() -> int:
    """The process's file-creation mask, read without changing it where the OS allows (Linux).

    Elsewhere it is read by setting and restoring it, which is not atomic but harmless here
    (the mask is only consulted to give new outputs their usual permissions).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(folder: str | Path) -> None:
    """Make renames in ``folder`` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def flush_files(folder: str | Path, files: Iterable[str | Path]) -> None:
    """Make freshly written ``files`` (all under ``folder``) durable before a folder is renamed
    into place.

    On Linux one ``syncfs`` of the folder's file system commits them all at once — an exam
    import writes a thousand files, and one ``fsync`` each cost more than the copying. Where
    ``syncfs`` is missing, every file is fsynced. Either way the folders are fsynced after.
    """
    if not _syncfs(Path(folder)):
        for path in files:
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for sub in sorted({Path(path).parent for path in files} | {Path(folder)}):
        fsync_dir(sub)


def _syncfs(folder: Path) -> bool:
    """``syncfs(2)`` on the file system holding ``folder``; False where it is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return False
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        return syncfs(descriptor) == 0
    finally:
        os.close(descriptor)

