"""Atomic file writes: nothing half-written is ever left where a user looks.

What happens depends on what the output path is when the write starts
(:func:`output_target`):

- **absent, or a regular file**: the output is written to a temporary file in the target's
  folder, flushed to disk with fsync, and renamed over the target with ``os.replace`` (atomic
  on POSIX and Windows). If anything fails the temporary file is removed and the target is
  untouched. A replaced file keeps its permissions; a new one gets ``0666 & ~umask``.
- **a symbolic link to a regular file** (through any number of links): the link is kept and
  the file it leads to is replaced atomically as above, in that file's folder. So
  ``-o latest.pdf`` with ``latest.pdf -> 2026/03.pdf`` updates ``2026/03.pdf`` and
  ``latest.pdf`` still points at it. A dangling link creates the file it names (as the
  shell's ``>`` does) when that file's folder exists, and is refused otherwise.
  Links through ``/proc`` (``/dev/stdout`` → ``/proc/self/fd/1`` → the file the shell's
  ``> out.json`` opened, perhaps deleted or in another namespace), and any link whose
  followed path is not the file behind it, are written in place instead (next item): the
  shell's file gets the bytes and no new file takes its name.
- **a character device or a FIFO**, directly or through links (``/dev/null``, a terminal,
  ``/dev/stdout`` into a pipe, a named pipe): written **in place** — opened for writing and
  the bytes written, with no temporary file beside it and no rename, so the device, the
  pipe or the link to them is never replaced by a regular file. The output is first built
  completely (in memory, or in a private temporary folder in the system's temporary
  directory when a library needs a path — never in ``/dev``), so a failure writes nothing;
  only then are the bytes written. This is not atomic: a reader sees the bytes as they come.
- **a folder, a socket, a block device** (a disk: a PDF written over it would destroy it),
  **a symbolic link loop**, or a name the system cannot hold (a NUL byte): refused with one
  line naming the path; nothing is written.

Every failure to write (permission denied, a read-only file system, a full disk, a broken
pipe) is an :class:`OutputError` — a :class:`~viewer.core.errors.ViewerError` whose one line
names the output, never the temporary file — that is also an ``OSError`` with the original
``errno``/``strerror``, so callers that handle ``OSError`` keep working.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from viewer.core.errors import ViewerError

#: Bytes copied per write when an output built in a temporary file goes to a device or pipe.
_COPY_CHUNK = 1 << 20


class OutputError(ViewerError, OSError):
    """An output that cannot be written: one line ``<output>: <problem>``.

    Also an ``OSError`` carrying the failure's ``errno`` and ``strerror`` (and the output,
    not the temporary file, as ``filename``), so ``except OSError`` handlers still apply.
    """

    def __init__(self, path: str | Path, problem: str, cause: OSError | None = None) -> None:
        ViewerError.__init__(self, f"{path}: {problem}")
        self.message = self.args[0]
        self.errno = cause.errno if cause is not None else None
        self.strerror = (cause.strerror or str(cause)) if cause is not None else problem
        self.filename = str(path)

    def __str__(self) -> str:  # OSError's would print "[Errno 13] …"
        return self.message


@dataclass(frozen=True)
class OutputTarget:
    """Where and how an output is written (rule: module docstring).

    Attributes:
        path: the path the user named.
        write_path: the file replaced atomically — ``path``, or for a link the file it leads
            to — or, when ``in_place``, the path opened for writing (``path`` itself).
        in_place: a device, a FIFO, or a file reached through ``/proc``-style links: opened
            and written, never replaced.
    """

    path: Path
    write_path: Path
    in_place: bool


def output_target(target: str | Path) -> OutputTarget:
    """Classify an output path before writing (rule: module docstring).

    Raises:
        OutputError: a folder, a socket, a block device, a link loop, a dangling link into a
            missing folder, or a path the system refuses to look up.
    """
    target = Path(target)
    try:
        info: os.stat_result | None = os.stat(target)  # follows links
    except FileNotFoundError:
        info = None
    except ValueError:  # an embedded NUL byte
        raise OutputError(target, "the file name holds a NUL character") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutputError(target, "is a symbolic link loop", exc) from None
        if exc.errno == errno.ENOTDIR:
            raise OutputError(target, "a part of the path before the file name is not a folder", exc) from None
        raise OutputError(target, f"cannot be written ({exc.strerror or exc})", exc) from None
    link = _is_link(target)
    if info is None:
        if not link:
            return OutputTarget(target, target, False)
        resolved = Path(os.path.realpath(target))
        if not resolved.parent.is_dir():
            raise OutputError(target, f"is a link to {resolved}, whose folder does not exist")
        return OutputTarget(target, resolved, False)
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        raise OutputError(target, "is a folder, expected a file name")
    if stat.S_ISREG(mode):
        if not link:
            return OutputTarget(target, target, False)
        if _through_proc_link(target):
            return OutputTarget(target, target, True)
        resolved = Path(os.path.realpath(target))
        try:
            same = os.path.samestat(os.stat(resolved), info)
        except OSError:
            same = False
        return OutputTarget(target, resolved, False) if same else OutputTarget(target, target, True)
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return OutputTarget(target, target, True)
    if stat.S_ISSOCK(mode):
        raise OutputError(target, "is a socket; write to a file, a FIFO or a device instead")
    if stat.S_ISBLK(mode):
        raise OutputError(target, "is a block device (a disk); refusing to write over it")
    raise OutputError(target, "is not a regular file, a FIFO or a character device; refusing to write to it")


def check_output(target: str | Path) -> OutputTarget:
    """:func:`output_target`, plus a check that its folder can be written (so a command can
    refuse a bad ``-o`` before doing any work). Creating missing folders is left to the write.
    """
    out = output_target(target)
    if out.in_place:
        if not os.access(out.write_path, os.W_OK):
            raise OutputError(out.path, "cannot be written (permission denied)")
        return out
    folder = out.write_path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(out.path, f"cannot be written: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        reason = "a read-only file system" if _read_only_fs(folder) else "permission denied"
        raise OutputError(out.path, f"cannot be written: the folder {folder} is not writable ({reason})")
    return out


@contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target`` (or, for a device
    or a FIFO, its bytes are written into it; rule: module docstring).

    Args:
        target: final file path.
        suffix: suffix of the temporary file (defaults to the target's, so libraries that
            pick a format from the extension still work).

    Raises:
        OutputError: the target is refused or cannot be written (one line naming ``target``).
    """
    target = Path(target)
    if suffix is None:
        suffix = "".join(target.suffixes[-2:]) if target.name.endswith(".nii.gz") else target.suffix
    out = output_target(target)
    if out.in_place:
        with tempfile.TemporaryDirectory(prefix="viewer-output-") as folder:
            tmp = Path(folder) / f"output{suffix}"
            with _output_errors(target, tmp):
                yield tmp
            with _output_errors(target, tmp), open(tmp, "rb") as source:
                _write_in_place(out, source)
        return
    final = out.write_path
    if final == target:  # a link's folder exists (checked); a plain path may need its folders
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(target, f"cannot create its folder {final.parent} ({exc.strerror or exc})", exc) from None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
    except OSError as exc:
        raise OutputError(target, f"cannot be written in {final.parent} ({_reason(exc, final.parent)})", exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _output_errors(target, tmp):
            yield tmp
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            # mkstemp makes the file private (0600); give it the mode a plain open() would
            # have, or the mode of the file it replaces.
            try:
                mode = final.stat().st_mode & 0o7777
            except FileNotFoundError:
                mode = 0o666 & ~current_umask()
            os.chmod(tmp, mode)
            os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(target: str | Path, payload: bytes) -> Path:
    """Write bytes atomically (a device or a FIFO: in place; rule: module docstring)."""
    out = output_target(target)
    if out.in_place:
        import io

        with _output_errors(out.path, None):
            _write_in_place(out, io.BytesIO(payload))
        return out.path
    with atomic_path(target) as tmp:
        tmp.write_bytes(payload)
    return Path(target)


def write_text_atomic(target: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return write_bytes_atomic(target, text.encode("utf-8"))


def writes_in_place(target: str | Path) -> bool:
    """True when ``target`` is a device or a FIFO (written in place, e.g. ``/dev/stdout``);
    False for anything else, including paths that would be refused."""
    try:
        return output_target(target).in_place
    except OutputError:
        return False


def _through_proc_link(path: Path) -> bool:
    """True when the chain of links from ``path`` passes a link kept in ``/proc`` (``/dev/stdout``
    → ``/proc/self/fd/1``, ``/dev/fd/N``): such a link stands for a file an open descriptor
    holds — the shell's ``> file`` — which must be written through that descriptor's path, in
    place, not replaced by a new file under the name the link shows."""
    current = str(path)
    for _ in range(40):  # the system's own limit on links followed
        if not os.path.islink(current):
            return False
        folder = os.path.dirname(os.path.abspath(current))
        if os.path.realpath(folder).startswith("/proc/"):
            return True
        current = os.path.join(folder, os.readlink(current))
    return False


def _is_link(path: Path) -> bool:
    try:
        return path.is_symlink()
    except (OSError, ValueError):
        return False


def _write_in_place(out: OutputTarget, source) -> None:
    """Open ``out.write_path`` for writing (no create, no rename) and copy ``source`` in."""
    flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    if not stat.S_ISFIFO(_mode(out.write_path)):
        flags |= os.O_TRUNC  # a regular file behind /proc links; ignored by devices
    descriptor = os.open(out.write_path, flags)
    with open(descriptor, "wb", closefd=True) as sink:
        shutil.copyfileobj(source, sink, _COPY_CHUNK)


def _mode(path: Path) -> int:
    try:
        return os.stat(path).st_mode
    except OSError:
        return 0


@contextmanager
def _output_errors(target: Path, tmp: Path | None) -> Iterator[None]:
    """Turn an ``OSError`` while writing into a one-line :class:`OutputError` naming the output
    (a failure about the temporary file is the output's failure; another file is named)."""
    try:
        yield
    except OutputError:
        raise
    except ViewerError:
        raise
    except OSError as exc:
        name = exc.filename
        about_output = name is None or tmp is None or str(name) in (str(tmp), str(target))
        where = target if about_output else Path(os.fsdecode(name))
        raise OutputError(where, f"cannot be written ({_reason(exc, target.parent)})", exc) from None


def _reason(exc: OSError, folder: Path) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM) and _read_only_fs(folder):
        return "read-only file system"
    return exc.strerror or type(exc).__name__


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError, ValueError):
        return False


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

    As for files (module docstring): a symbolic link to a folder is kept and the folder it
    leads to is replaced; a target that exists and is not a folder (a file, a device, a
    FIFO) is refused with one line, never moved aside and deleted.
    """
    folder = Path(folder)
    if check_target is not None:
        check_target(folder)
    named = folder
    if _is_link(folder):
        folder = Path(os.path.realpath(folder))
        if not folder.parent.is_dir():
            raise OutputError(named, f"is a link to {folder}, whose folder does not exist")
    if folder.exists() and not folder.is_dir():
        raise OutputError(named, "exists and is not a folder; refusing to replace it")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(named, f"cannot create its folder {folder.parent} ({exc.strerror or exc})", exc) from None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    except OSError as exc:
        raise OutputError(named, f"cannot be written in {folder.parent} ({_reason(exc, folder.parent)})", exc) from None
    old: Path | None = None
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes the folder private (0700)
        write(tmp)
        if check_target is not None:
            check_target(named)
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
    return named


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

