"""One writer per study: a lock file beside the manifest, and files changed on disk detected.

Why: two windows on one study used to save over each other without a word (issue 13). Two
guards, both without Qt (the window only shows their messages):

**The lock** ``study.toml.lock`` beside the manifest is a small JSON document naming its
holder (host, PID, user, start time and a random token). It is taken when a window starts
editing or saving and kept until the window closes:

- it is published complete and already ``flock``-ed: written to a hidden temporary file,
  fsynced, locked, then hard-linked to its name (``os.link`` fails when a lock exists, so two
  writers can never both create it, and nobody ever reads half a lock);
- the holder keeps the file open with an exclusive ``flock`` for as long as it holds the lock.
  The kernel drops that ``flock`` when the holder's process ends however it ends (``kill -9``
  included), which is what makes a stale lock provable.

The rule for an existing lock (:func:`inspect_lock`):

- **live** — same host and its ``flock`` is held (another window, in this process or
  another): refused; the window opens read-only and says who holds it.
- **stale** — same host and its ``flock`` is free (the holder's PID is gone, or the PID now
  belongs to another program): taken over without asking, the holder provably ended.
  Where ``flock`` does not exist (Windows) a lock whose PID is gone on this host is stale.
- **unverifiable** — another host (its processes cannot be checked from here, and network
  file systems do not carry ``flock`` reliably), or a lock file that cannot be read: refused
  unless the user confirms the other session has ended (``take_over=True``).

**Change detection** (:class:`FileState`, :func:`check_unchanged`): the manifest's size and
SHA-256 and the map's size, mtime and inode are recorded when the study is read and compared
before saving, so a file another program (or a window that saved and closed) changed is
reported (:class:`StudyChanged`) instead of overwritten.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import secrets
import socket
import tempfile
import time
import weakref
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from viewer.core.errors import ViewerError, file_error
from viewer.core.io.atomic import current_umask

try:  # the kernel-held lock that proves a holder alive (POSIX)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FORMAT = "cell-therapy-viewer study lock"
LOCK_VERSION = 1
#: The lock file is the manifest's name plus this suffix (``study.toml.lock``).
LOCK_SUFFIX = ".lock"
#: How often acquiring retries when a lock vanishes or is being taken over meanwhile.
ACQUIRE_ATTEMPTS = 5
#: Pause between those attempts (s): a take-over in progress lasts microseconds.
ACQUIRE_RETRY_S = 0.05

LIVE = "live"
STALE = "stale"
UNVERIFIABLE = "unverifiable"
FREE = "free"


def lock_path_for(manifest: str | Path) -> Path:
    """``…/study.toml`` → ``…/study.toml.lock`` (a study folder is accepted too)."""
    manifest = Path(manifest)
    if manifest.is_dir():
        from viewer.core.io.study import MANIFEST_NAME

        manifest = manifest / MANIFEST_NAME
    return manifest.with_name(manifest.name + LOCK_SUFFIX)


# -- who holds it -------------------------------------------------------------------------------

@dataclass(frozen=True)
class LockHolder:
    """The session named in a lock file."""

    host: str
    pid: int
    user: str
    started: float
    token: str = ""

    def describe(self) -> str:
        """``alice on host lab-3 (PID 4242) since 2026-03-02 10:15``."""
        since = datetime.fromtimestamp(self.started).astimezone().strftime("%Y-%m-%d %H:%M")
        return f"{self.user or 'an unknown user'} on host {self.host or '?'} (PID {self.pid}) since {since}"

    def to_json(self) -> str:
        document = {"format": LOCK_FORMAT, "version": LOCK_VERSION, "host": self.host, "pid": self.pid,
                    "user": self.user, "started": self.started,
                    "started_local": datetime.fromtimestamp(self.started).astimezone().isoformat(timespec="seconds"),
                    "token": self.token}
        return json.dumps(document, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LockHolder | None:
        """The holder, or None when the text is not a lock document of this viewer."""
        try:
            document = json.loads(text)
            if not isinstance(document, dict) or document.get("format") != LOCK_FORMAT:
                return None
            return cls(str(document["host"]), int(document["pid"]), str(document.get("user", "")),
                       float(document["started"]), str(document.get("token", "")))
        except (ValueError, KeyError, TypeError):
            return None


def this_session() -> LockHolder:
    """A holder for this process, with a fresh token (two windows of one process differ)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError, ImportError):  # no passwd entry, no USER variable
        user = ""
    return LockHolder(socket.gethostname(), os.getpid(), user, time.time(), secrets.token_hex(8))


@dataclass(frozen=True)
class LockState:
    """What an existing lock file means for someone who wants it (see the module rule)."""

    status: str
    holder: LockHolder | None
    reason: str = ""


class StudyLocked(ViewerError):
    """Another session holds the study's lock (the message names the manifest and the holder)."""

    def __init__(self, manifest: Path, state: LockState) -> None:
        who = state.holder.describe() if state.holder is not None else "another session (its lock file cannot be read)"
        message = f"{manifest}: the study is being edited by {who}"
        if state.status == UNVERIFIABLE:
            message += f" — {state.reason}; take the lock over only if that session has ended"
        super().__init__(message)
        self.manifest = manifest
        self.state = state


# -- the lock ----------------------------------------------------------------------------------

class StudyLock:
    """This session's hold on a study (:meth:`acquire` it, :meth:`release` it when done).

    A lock that is never released is released when the object is collected or the
    interpreter exits, and by the kernel (its ``flock``) when the process is killed.
    """

    def __init__(self, manifest: Path, path: Path, holder: LockHolder, handle: BinaryIO,
                 replaced: LockState | None = None) -> None:
        self.manifest = manifest
        self.path = path
        self.holder = holder
        #: the stale (or confirmed) lock this one took over; None when the study was free
        self.replaced = replaced
        self._handle = handle
        stat = os.fstat(handle.fileno())
        self._identity = (stat.st_dev, stat.st_ino)
        self._finalizer = weakref.finalize(self, _release, path, self._identity, holder.token, handle)

    @classmethod
    def acquire(cls, manifest: str | Path, *, take_over: bool = False) -> StudyLock:
        """Take the lock of the study whose manifest is ``manifest``.

        A stale lock is taken over; a live one raises :class:`StudyLocked`; an unverifiable
        one (another host, unreadable) raises it too unless ``take_over`` (the user said that
        session has ended). ``OSError`` (e.g. a read-only folder) becomes a ViewerError
        naming the lock file.
        """
        manifest = Path(manifest)
        path = lock_path_for(manifest)
        holder = this_session()
        try:
            handle, temp = _write_locked_temp(path, holder)
        except OSError as exc:
            raise file_error(path, f"cannot create the lock file ({exc.strerror or exc})") from None
        try:
            replaced, handle = _publish(handle, temp, path, manifest, take_over)
        except BaseException:
            handle.close()
            raise
        finally:
            temp.unlink(missing_ok=True)
        return cls(manifest, path, holder, handle, replaced)

    @property
    def held(self) -> bool:
        """True while the lock file on disk is still this session's (not taken over)."""
        return self._finalizer.alive and _is_ours(self.path, self._identity, self.holder.token)

    def release(self) -> None:
        """Remove the lock file (only if it is still ours) and drop the ``flock``."""
        self._finalizer()


def _release(path: Path, identity: tuple[int, int], token: str, handle: BinaryIO) -> None:
    try:
        if _is_ours(path, identity, token):
            path.unlink(missing_ok=True)
    except OSError:
        pass
    try:
        handle.close()
    except OSError:
        pass


def _is_ours(path: Path, identity: tuple[int, int], token: str) -> bool:
    """The lock file is the one this session published and still names it (a session that
    took it over replaces the file or, by hand, its contents)."""
    if _identity_of(path) != identity:
        return False
    try:
        holder = LockHolder.from_json(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return False
    return holder is not None and holder.token == token


def _identity_of(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _write_locked_temp(path: Path, holder: LockHolder) -> tuple[BinaryIO, Path]:
    """A complete, fsynced, ``flock``-ed lock document under a hidden temporary name."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    handle = os.fdopen(fd, "r+b", buffering=0)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes it private; colleagues must read who edits
            os.fchmod(fd, 0o666 & ~current_umask())
        handle.write(holder.to_json().encode("utf-8"))
        os.fsync(fd)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        handle.close()
        Path(name).unlink(missing_ok=True)
        raise
    return handle, Path(name)


def _publish(handle: BinaryIO, temp: Path, path: Path, manifest: Path,
             take_over: bool) -> tuple[LockState | None, BinaryIO]:
    """Put the locked temporary file in place as the lock, or raise StudyLocked; return the
    state of the lock it replaced (None: there was none) and the open, locked lock file."""
    for _attempt in range(ACQUIRE_ATTEMPTS):
        try:
            os.link(temp, path)
            return None, handle
        except FileExistsError:
            pass
        except OSError:  # no hard links here (FAT, some network shares)
            created = _create_exclusive(path, temp.read_bytes())
            if created is not None:
                handle.close()
                return None, created
        state, guard = _inspect(path)
        try:
            if state.status == FREE:
                continue  # released meanwhile: try to create it again
            if state.status == LIVE and _taking_over(state):
                time.sleep(ACQUIRE_RETRY_S)
                continue
            if state.status == LIVE or (state.status == UNVERIFIABLE and not take_over):
                raise StudyLocked(manifest, state)
            try:
                os.replace(temp, path)  # stale (or confirmed): this session's file takes its place
            except OSError as exc:
                raise file_error(path, f"cannot take over the lock file ({exc.strerror or exc})") from None
            if _identity_of(path) != _identity_of_handle(handle):
                raise StudyLocked(manifest, inspect_lock(manifest))  # another session replaced it first
            return state, handle
        finally:
            if guard is not None:
                guard.close()
    raise StudyLocked(manifest, inspect_lock(manifest))


def _create_exclusive(path: Path, document: bytes) -> BinaryIO | None:
    """The lock created under its own name with ``O_EXCL`` (None: one exists). Not atomic: a
    reader may see it half written for a moment — and then refuses it as unreadable."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return None
    except OSError as exc:
        raise file_error(path, f"cannot create the lock file ({exc.strerror or exc})") from None
    handle = os.fdopen(fd, "r+b", buffering=0)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.write(document)
        os.fsync(fd)
    except BaseException:
        handle.close()
        path.unlink(missing_ok=True)
        raise
    return handle


def _identity_of_handle(handle: BinaryIO) -> tuple[int, int]:
    stat = os.fstat(handle.fileno())
    return stat.st_dev, stat.st_ino


def _taking_over(state: LockState) -> bool:
    """A lock whose flock is held though its PID is gone on this host: another session is
    taking it over this very moment (it holds the old file's flock while replacing it)."""
    holder = state.holder
    return holder is not None and holder.host == socket.gethostname() and _pid_running(holder.pid) is False


def inspect_lock(manifest: str | Path) -> LockState:
    """What the study's lock file means now (:data:`FREE` when there is none)."""
    state, guard = _inspect(lock_path_for(manifest))
    if guard is not None:
        guard.close()
    return state


def _inspect(path: Path) -> tuple[LockState, BinaryIO | None]:
    """The lock's state; for a stale lock also the open file whose ``flock`` this session
    now holds, so that two sessions cannot both take the same stale lock over."""
    try:
        guard = open(path, "rb")  # noqa: SIM115 - returned open: its flock must outlive this call
    except FileNotFoundError:
        return LockState(FREE, None), None
    except OSError as exc:
        return LockState(UNVERIFIABLE, None, f"its lock file cannot be read ({exc.strerror or exc})"), None
    try:
        holder = LockHolder.from_json(guard.read(64 * 1024).decode("utf-8", "replace"))
        state = _judge(holder, guard)
    except BaseException:
        guard.close()
        raise
    if state.status != STALE:
        guard.close()
        return state, None
    return state, guard


def _judge(holder: LockHolder | None, guard: BinaryIO) -> LockState:
    if holder is None:
        return LockState(UNVERIFIABLE, None, "its lock file cannot be read")
    if holder.host != socket.gethostname():
        return LockState(UNVERIFIABLE, holder, f"host {holder.host} cannot be checked from here")
    if fcntl is not None:
        try:
            fcntl.flock(guard.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return LockState(LIVE, holder)
        running = _pid_running(holder.pid)
        why = "is no longer running" if running is False else "no longer holds it"
        return LockState(STALE, holder, f"PID {holder.pid} {why}")
    running = _pid_running(holder.pid)
    if running is False:
        return LockState(STALE, holder, f"PID {holder.pid} is no longer running")
    if running is None:
        return LockState(UNVERIFIABLE, holder, f"PID {holder.pid} cannot be checked on this system")
    return LockState(LIVE, holder)


def _pid_running(pid: int) -> bool | None:
    """Whether a process with this PID exists on this host (None: cannot tell)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate it on Windows
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except OSError:
        return None
    return True


# -- change detection ----------------------------------------------------------------------------

@dataclass(frozen=True)
class FileState:
    """What a file looked like when it was read: enough to notice it was rewritten since."""

    size: int
    mtime_ns: int
    inode: int
    sha256: str | None = None

    def same_as(self, other: FileState | None) -> bool:
        """The contents are the same (by hash when both have one, else size, mtime and inode)."""
        if other is None:
            return False
        if self.sha256 is not None and other.sha256 is not None:
            return self.size == other.size and self.sha256 == other.sha256
        return (self.size, self.mtime_ns, self.inode) == (other.size, other.mtime_ns, other.inode)


def file_state(path: str | Path | None, *, content_hash: bool = False) -> FileState | None:
    """The state of ``path`` now (None when it does not exist). ``content_hash`` adds the
    SHA-256 of the bytes (for small files such as the manifest, where a rewrite within the
    same mtime tick must still be seen)."""
    if path is None:
        return None
    try:
        stat = os.stat(path)
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if content_hash else None
    except (FileNotFoundError, IsADirectoryError):
        return None
    except OSError:
        return None
    return FileState(stat.st_size, stat.st_mtime_ns, stat.st_ino, digest)


def bytes_state(path: str | Path, payload: bytes) -> FileState:
    """The state of a file whose bytes were just read as ``payload`` (hash of exactly those)."""
    stat = os.stat(path)
    return FileState(len(payload), stat.st_mtime_ns, stat.st_ino, hashlib.sha256(payload).hexdigest())


class StudyChanged(ViewerError):
    """A file of the study changed on disk since it was read; saving would overwrite it."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(
            f"{path}: {what} changed on disk since this window read it (another window or program saved it) "
            "— not overwritten; your edits are kept"
        )
        self.path = path


def check_unchanged(path: str | Path | None, expected: FileState | None, what: str) -> None:
    """Raise :class:`StudyChanged` when ``path`` no longer matches ``expected``.

    Nothing is checked when ``expected`` is None (the file did not exist when read: a new
    map). ``what`` names the file's part for the message ("the manifest", "the label map").
    """
    if path is None or expected is None:
        return
    now = file_state(path, content_hash=expected.sha256 is not None)
    if not expected.same_as(now):
        raise StudyChanged(Path(path), what)
