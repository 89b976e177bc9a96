"""The one exception type users see.

Every problem with user input (a missing file, a malformed manifest, a DICOM series without a
needed tag) is raised as :class:`ViewerError` whose message is a single line naming the file
and the problem. The command line prints it as ``error: <message>`` and exits with status 2;
the window shows it in a dialog. Anything else escaping is a bug.

The message is made safe for one terminal line (:func:`one_line`): control characters —
a newline or an ESC in a file name, a library's multi-line text — are written as escapes
(``\\n``, ``\\x1b``), never passed to the terminal, so a hostile file name can neither add a
line to the error nor move the cursor, recolour the screen or set the window title.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

#: Characters written as escapes besides the C0/C1 controls: line and paragraph separators
#: (new lines for some terminals and viewers) and the bidirectional overrides and isolates,
#: which reorder how the rest of the line is displayed ("Trojan source").
_ALSO_ESCAPED = frozenset("\u2028\u2029\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: object) -> str:
    """``text`` as one printable line: control characters escaped, ends stripped.

    ``\\n``, ``\\r`` and ``\\t`` become those two-character escapes; any other control
    character (C0, DEL, C1), line/paragraph separator or bidirectional control becomes
    ``\\xNN`` / ``\\uNNNN``. Nothing else changes (a name with two spaces keeps them).
    """
    text = str(text).strip()
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[char])
        elif char in _ALSO_ESCAPED or unicodedata.category(char) in ("Cc", "Cs"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


class ViewerError(Exception):
    """A user-facing error with a one-line message (control characters escaped)."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class Cancelled(ViewerError):
    """The user stopped long work (the window's Cancel, Ctrl+C): not a failure, so a caller
    shows no error dialog; the message says what was kept (scan, import, retrieval, send…)."""


class ImageExists(ViewerError):
    """The timepoint already has an image of that role (the window asks to replace it)."""


def file_error(path: str | Path, problem: str) -> ViewerError:
    """Build the standard ``<path>: <problem>`` error."""
    return ViewerError(f"{path}: {problem}")
