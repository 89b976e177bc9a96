"""The one exception type users see.

Every problem with user input (a missing file, a malformed manifest, a DICOM series without a
needed tag) is raised as :class:`ViewerError` whose message is a single line naming the file
and the problem. The command line prints it as ``error: <message>`` and exits with status 2;
the window shows it in a dialog. Anything else escaping is a bug.
"""

from __future__ import annotations

from pathlib import Path


class ViewerError(Exception):
    """A user-facing error with a one-line message."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def file_error(path: str | Path, problem: str) -> ViewerError:
    """Build the standard ``<path>: <problem>`` error."""
    return ViewerError(f"{path}: {problem}")
