"""The study workspace (PRODUCT.md §5): what the reader was looking at, restored on reopening.

A workspace is small JSON beside the manifest (:data:`WORKSPACE_NAME`): the layout, the display
protocol, each role's display, the layer order, the cursor, each view's zoom and pan, and the
reader's rulers and ROIs (:mod:`viewer.core.measurements`). It is
a convenience, never part of the study's data, so:

- *Opening never fails because of it.* :func:`read_workspace` turns every problem (a hostile
  or truncated file, a FIFO, a 5 GB file) into one line for the status bar, and
  :func:`apply` restores what still fits the study and lists what it skipped.
- *Read-only studies are normal.* A study on a CD or a PACS export cannot hold a workspace:
  :func:`write_workspace` then quietly writes nothing.
- *Strict to parse, lenient to apply.* Numbers the views compute with (levels, cursor, zoom)
  must be finite or the file is refused whole; names the study may not have (a role, a
  timepoint, a colormap of a newer viewer) are only skipped, with a note, when applied.

No Qt here: the window captures its layout, protocol and view zoom and passes them in.
"""

from __future__ import annotations

import errno
import json
import math
import numbers
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from viewer.core.display import COLORMAPS, DisplayProps
from viewer.core.errors import ViewerError, file_error
from viewer.core.io.atomic import OutputError, atomic_path
from viewer.core.measurements import Measurement, from_dict

WORKSPACE_NAME = "study.workspace.json"
FORMAT = "cell-therapy-viewer-workspace"
VERSION = 1
#: A workspace is a few kB; anything bigger is not one and is not read into memory.
MAX_WORKSPACE_BYTES = 1 << 20
MAX_ENTRIES = 64  # roles, order entries or views
MAX_STRING = 200  # characters of any name
_TOP_KEYS = {"format", "version", "timepoint", "cursor_mm", "radiological", "order", "displays",
             "layout", "protocol", "views", "measurements"}
_DISPLAY_KEYS = {"colormap", "levels", "visible_range", "opacity", "visible"}
_VIEW_KEYS = {"center_mm", "width_mm"}


@dataclass(frozen=True)
class ViewState:
    """Zoom and pan of one 2D view.

    Attributes:
        center_mm: the view's centre in its plane (horizontal, vertical), mm.
        width_mm: visible width, mm (> 0); the height follows from the view's aspect.
    """

    center_mm: tuple[float, float]
    width_mm: float


@dataclass(frozen=True)
class Workspace:
    """What a reader saw. None (or empty) means "not saved": the scene's own default stays.

    Attributes:
        timepoint: label of the timepoint shown.
        cursor_mm: the linked cursor, world mm.
        radiological: radiological (patient's right on screen left) or neurological convention.
        order: drawing order of roles, bottom first.
        displays: display of each role.
        layout: the window's layout name.
        protocol: a display-protocol name (kept as given; the window interprets it).
        views: zoom and pan per orientation ("axial", "coronal", "sagittal").
        measurements: the rulers and ROIs, in the order they were made.
    """

    timepoint: str | None = None
    cursor_mm: tuple[float, float, float] | None = None
    radiological: bool | None = None
    order: tuple[str, ...] = ()
    displays: Mapping[str, DisplayProps] = field(default_factory=dict)
    layout: str | None = None
    protocol: str | None = None
    views: Mapping[str, ViewState] = field(default_factory=dict)
    measurements: tuple[Measurement, ...] = ()

    def __post_init__(self) -> None:  # read-only copies: a caller's dict cannot change it later
        object.__setattr__(self, "order", tuple(self.order))
        object.__setattr__(self, "measurements", tuple(self.measurements))
        object.__setattr__(self, "displays", MappingProxyType(dict(self.displays)))
        object.__setattr__(self, "views", MappingProxyType(dict(self.views)))


def workspace_path(manifest: str | Path) -> Path:
    """Where the workspace of the study whose manifest is ``manifest`` lives (beside it)."""
    return Path(manifest).with_name(WORKSPACE_NAME)


# -- scene ----------------------------------------------------------------------------------------

def capture(scene: Any, layout: str | None = None, protocol: str | None = None,
            views: Mapping[str, ViewState] | None = None) -> Workspace:
    """The workspace of a :class:`~viewer.core.scene.Scene` (duck-typed, so the scene module
    stays above this one) plus what only the window knows: layout, protocol, views."""
    return Workspace(
        timepoint=scene.timepoint.label,
        cursor_mm=tuple(float(v) for v in scene.cursor),
        radiological=bool(scene.radiological),
        order=tuple(scene.order),
        displays=dict(scene.display),
        layout=layout,
        protocol=protocol,
        views=dict(views or {}),
        measurements=tuple(scene.measurements),
    )


def apply(scene: Any, workspace: Workspace) -> list[str]:
    """Restore ``workspace`` onto ``scene`` as far as it fits; one short note per thing skipped.

    Timepoint first (a role seen there for the first time gets its display), then displays,
    order, convention, and the cursor last (clamped to the anatomy). Layout, protocol and
    views are the window's to apply. Never raises for what the workspace holds.
    """
    notes: list[str] = []
    if workspace.timepoint is not None:
        labels = [tp.label for tp in scene.study.timepoints]
        if workspace.timepoint not in labels:
            notes.append(f"The saved timepoint {workspace.timepoint!r} is not in this study.")
        else:
            try:
                scene.set_timepoint(labels.index(workspace.timepoint))
            except ViewerError as exc:
                notes.append(f"The saved timepoint {workspace.timepoint!r} could not be shown ({exc}).")
    for role, props in workspace.displays.items():
        if role not in scene.display:
            notes.append(f"No {role!r} layer is open; its saved display was skipped.")
            continue
        problem = _display_problem(props)
        if problem is not None:
            notes.append(f"The saved display of {role!r} was skipped: {problem}.")
            continue
        changes = {name: getattr(props, name) for name in _DISPLAY_KEYS}
        if props.colormap not in COLORMAPS:
            notes.append(f"Unknown colormap {props.colormap!r} for {role!r}; kept {scene.display[role].colormap!r}.")
            del changes["colormap"]
        scene.set_display(role, **changes)
    _restore_order(scene, workspace.order, notes)
    if workspace.radiological is not None:
        scene.set_radiological(bool(workspace.radiological))
    if workspace.measurements:
        scene.measurements.replace_all(workspace.measurements)
    if workspace.cursor_mm is not None:
        cursor = workspace.cursor_mm
        if len(cursor) != 3 or not all(_is_finite(v) for v in cursor):
            notes.append("The saved cursor is not three finite numbers; it was skipped.")
        else:
            scene.set_cursor([float(v) for v in cursor])
            if not all(math.isclose(a, float(b), abs_tol=1e-6) for a, b in zip(scene.cursor, cursor)):
                notes.append("The saved cursor lay outside the anatomy; it was moved to its edge.")
    return notes


def _restore_order(scene: Any, saved: tuple[str, ...], notes: list[str]) -> None:
    """Reorder the saved roles among the slots they hold now; other roles keep their place."""
    current = [r for r in scene.order if r != "anatomical"]
    unknown = [r for r in saved if r != "anatomical" and r not in current]
    if unknown:
        notes.append(f"Unknown layers in the saved order were ignored: {', '.join(map(repr, unknown))}.")
    wanted = list(dict.fromkeys(r for r in saved if r in current))
    slots = iter(wanted)
    target = [next(slots) if r in wanted else r for r in current]
    for index, role in enumerate(target):
        now = [r for r in scene.order if r != "anatomical"].index(role)
        if now != index:
            scene.move_layer(role, index - now)


# -- JSON -----------------------------------------------------------------------------------------

def to_json(workspace: Workspace) -> str:
    """Strict JSON (no NaN or Infinity literals): an unbounded visible range is ``null``."""
    def bound(value: float, unbounded: float) -> float | None:
        return None if value == unbounded else float(value)

    data = {
        "format": FORMAT, "version": VERSION,
        "timepoint": workspace.timepoint,
        "cursor_mm": None if workspace.cursor_mm is None else [float(v) for v in workspace.cursor_mm],
        "radiological": workspace.radiological,
        "order": list(workspace.order),
        "displays": {role: {"colormap": p.colormap, "levels": [float(v) for v in p.levels],
                            "visible_range": [bound(p.visible_range[0], -math.inf), bound(p.visible_range[1], math.inf)],
                            "opacity": float(p.opacity), "visible": bool(p.visible)}
                     for role, p in workspace.displays.items()},
        "layout": workspace.layout, "protocol": workspace.protocol,
        "views": {name: {"center_mm": [float(v) for v in view.center_mm], "width_mm": float(view.width_mm)}
                  for name, view in workspace.views.items()},
        "measurements": [m.to_dict() for m in workspace.measurements],
    }
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def from_json(text: str, source: str | Path) -> Workspace:
    """Parse a workspace; any problem is a :class:`ViewerError` of one line naming ``source``."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise file_error(source, "is not a workspace (nested too deeply)") from None
    except ValueError as exc:
        raise file_error(source, f"is not valid JSON ({exc})") from None
    try:
        return _parse(data)
    except _Bad as exc:
        raise file_error(source, f"is not a valid workspace: {exc}") from None


class _Bad(Exception):
    """A parse problem, turned into a ViewerError naming the file by :func:`from_json`."""


def _parse(data: Any) -> Workspace:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _Bad(f"the format marker {FORMAT!r} is missing")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _Bad("'version' must be a positive whole number")
    if version > VERSION:
        raise _Bad(f"written by a newer viewer (version {version}; this one reads version {VERSION})")
    extra = sorted(set(data) - _TOP_KEYS)
    if extra:
        raise _Bad(f"unknown keys {', '.join(map(repr, extra[:5]))}")
    cursor = data.get("cursor_mm")
    order = _entries(data.get("order", []), list, "order")
    for item in order:
        _string(item, "an entry of 'order'")
    if len(set(order)) != len(order):
        raise _Bad("'order' names a role twice")
    radiological = data.get("radiological")
    if radiological is not None and not isinstance(radiological, bool):
        raise _Bad("'radiological' must be true, false or null")
    displays = {_string(role, "a role"): _display(value, role)
                for role, value in _entries(data.get("displays", {}), dict, "displays").items()}
    views = {_string(name, "a view"): _view(value, name)
             for name, value in _entries(data.get("views", {}), dict, "views").items()}
    measurements = []
    for index, value in enumerate(_entries(data.get("measurements", []), list, "measurements"), start=1):
        try:
            measurements.append(from_dict(value))
        except ValueError as exc:
            raise _Bad(f"measurement {index}: {exc}") from None
    return Workspace(
        timepoint=_optional_string(data.get("timepoint"), "'timepoint'"),
        cursor_mm=None if cursor is None else tuple(_numbers(cursor, 3, "'cursor_mm'")),
        radiological=radiological, order=tuple(order), displays=displays,
        layout=_optional_string(data.get("layout"), "'layout'"),
        protocol=_optional_string(data.get("protocol"), "'protocol'"), views=views,
        measurements=tuple(measurements))


def _display(value: Any, role: str) -> DisplayProps:
    where = f"the display of {role!r}"
    value = _entries(value, dict, where)
    if set(value) != _DISPLAY_KEYS:
        raise _Bad(f"{where} must have exactly the keys {', '.join(sorted(_DISPLAY_KEYS))}")
    shown = _entries(value["visible_range"], list, f"{where} visible_range")
    if len(shown) != 2 or not all(v is None or _is_finite(v) for v in shown):
        raise _Bad(f"{where}: visible_range must be two finite numbers or nulls (no bound)")
    low, high = shown
    if not isinstance(value["visible"], bool) or not _is_finite(value["opacity"]):
        raise _Bad(f"{where}: 'visible' must be true or false and 'opacity' a finite number")
    props = DisplayProps(
        colormap=_string(value["colormap"], f"{where} colormap"),
        levels=tuple(_numbers(value["levels"], 2, f"{where} levels")),
        visible_range=(-math.inf if low is None else float(low), math.inf if high is None else float(high)),
        opacity=float(value["opacity"]), visible=value["visible"])
    problem = _display_problem(props)
    if problem is not None:
        raise _Bad(f"{where}: {problem}")
    return props


def _display_problem(props: DisplayProps) -> str | None:
    """Why a display cannot be shown (None: it can); the colormap name is checked on apply."""
    levels, shown = props.levels, props.visible_range
    if len(levels) != 2 or not all(_is_finite(v) for v in levels) or not levels[0] < levels[1]:
        return "levels must be two finite numbers, low below high"
    if len(shown) != 2 or any(not isinstance(v, numbers.Real) or math.isnan(v) for v in shown) or shown[0] > shown[1]:
        return "visible_range must be two numbers, low not above high"
    if not _is_finite(props.opacity) or not 0.0 <= props.opacity <= 1.0:
        return "opacity must be between 0 and 1"
    return None


def _view(value: Any, name: str) -> ViewState:
    where = f"the view {name!r}"
    value = _entries(value, dict, where)
    if set(value) != _VIEW_KEYS:
        raise _Bad(f"{where} must have exactly the keys center_mm, width_mm")
    width = value["width_mm"]
    if not _is_finite(width) or width <= 0:
        raise _Bad(f"{where}: width_mm must be a finite number of mm above 0")
    return ViewState(tuple(_numbers(value["center_mm"], 2, f"{where} center_mm")), float(width))


def _entries(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind):
        raise _Bad(f"{where} must be {'an object' if kind is dict else 'a list'}")
    if len(value) > MAX_ENTRIES:
        raise _Bad(f"{where} has more than {MAX_ENTRIES} entries")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_STRING:
        raise _Bad(f"{where} must be a string of at most {MAX_STRING} characters")
    return value


def _optional_string(value: Any, where: str) -> str | None:
    return None if value is None else _string(value, where)


def _numbers(value: Any, count: int, where: str) -> list[float]:
    if not isinstance(value, list) or len(value) != count or not all(_is_finite(v) for v in value):
        raise _Bad(f"{where} must be {count} finite numbers")
    return [float(v) for v in value]


def _is_finite(value: Any) -> bool:
    """A finite int or float, not a bool (true is an int to Python, not a number to a reader)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


# -- files ----------------------------------------------------------------------------------------

def read_workspace(manifest: str | Path) -> tuple[Workspace | None, str | None]:
    """(workspace, problem) of a study: (None, None) when there is none, (None, one line)
    when it cannot be used — opening the study goes on either way."""
    path = workspace_path(manifest)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, str(file_error(path, f"cannot be read ({exc.strerror or exc}); the workspace was not restored"))
    try:
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read, a device never end
            raise file_error(path, "is not a regular file")
        if info.st_size > MAX_WORKSPACE_BYTES:
            raise file_error(path, f"is larger than {MAX_WORKSPACE_BYTES >> 20} MB; a workspace is a small file")
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            descriptor = os.open(path, flags)
            with open(descriptor, "rb") as stream:
                if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):  # swapped since the stat
                    raise file_error(path, "is not a regular file")
                data = stream.read(MAX_WORKSPACE_BYTES + 1)
        except OSError as exc:
            raise file_error(path, f"cannot be read ({exc.strerror or exc})") from None
        if len(data) > MAX_WORKSPACE_BYTES:
            raise file_error(path, f"is larger than {MAX_WORKSPACE_BYTES >> 20} MB; a workspace is a small file")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise file_error(path, "is not UTF-8 text") from None
        return from_json(text, path), None
    except ViewerError as exc:
        return None, f"{exc}; the workspace was not restored"


def write_workspace(manifest: str | Path, workspace: Workspace) -> Path | None:
    """Save the workspace atomically beside the manifest; its path, or None when the study's
    folder cannot be written (a CD, a PACS export, a share mounted read-only).

    Raises:
        ViewerError: any other failure (a full disk; a folder or FIFO under the workspace's name).
    """
    path = workspace_path(manifest)
    text = to_json(workspace)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # atomic_path would write into a FIFO in place
            raise file_error(path, "is not a regular file; the workspace was not saved")
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise file_error(path, f"cannot be checked ({exc.strerror or exc})") from None
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OutputError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return None
        raise
    except OSError as exc:
        raise file_error(path, f"cannot be written ({exc.strerror or exc})") from None
    return path
