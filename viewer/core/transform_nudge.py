"""Nudging a registration by hand (PRODUCT.md §9: "lets the user nudge a transform (undoable)
when the automatic one is wrong").

A nudge is a small rigid motion *in the reference space the reader looks at*: a translation
along one of its axes (mm), or a rotation about one of them (degrees) through a centre — the
moved anatomy's middle, so a rotation turns the head in place instead of swinging it away.
The transform that changes may sit inside another: an image's ``image_transforms`` entry is
followed by its timepoint's ``transform`` on the way to the reference, so the motion is
conjugated through that outer transform (``inner' = outer⁻¹ · step · outer · inner``), and
what the reader sees moves exactly by the step.

:class:`NudgeHistory` keeps every state since the dialog opened, for undo and redo, and the
state last saved, for "unsaved" and revert. No Qt here: the window's dialog is a thin layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from viewer.core.transforms import rigid

AXES = ("x", "y", "z")


@dataclass(frozen=True)
class Step:
    """One nudge: ``kind`` "translate" (``amount`` mm) or "rotate" (``amount`` degrees) along
    or about reference axis ``axis`` (0 = x right, 1 = y anterior, 2 = z superior)."""

    kind: str
    axis: int
    amount: float

    def __post_init__(self) -> None:
        if self.kind not in ("translate", "rotate"):
            raise ValueError(f"a nudge translates or rotates, not {self.kind!r}")
        if self.axis not in (0, 1, 2):
            raise ValueError(f"a nudge's axis is 0, 1 or 2 (x, y, z), not {self.axis!r}")

    def matrix(self, centre_mm: Sequence[float]) -> np.ndarray:
        """The motion in the reference space (4×4); rotations about ``centre_mm``."""
        vector = [0.0, 0.0, 0.0]
        vector[self.axis] = float(self.amount)
        if self.kind == "translate":
            return rigid(translation=vector)
        return rigid(rotation_deg=vector, center=centre_mm)

    def describe(self) -> str:
        if self.kind == "translate":
            return f"move {self.amount:+g} mm along {AXES[self.axis]}"
        return f"rotate {self.amount:+g}° about {AXES[self.axis]}"


def nudged(inner: np.ndarray | None, outer: np.ndarray | None, step: np.ndarray) -> np.ndarray:
    """``inner`` changed so that ``outer · inner`` moves by ``step`` in the outer world."""
    inner = np.eye(4) if inner is None else np.asarray(inner, dtype=np.float64)
    outer = np.eye(4) if outer is None else np.asarray(outer, dtype=np.float64)
    return np.linalg.inv(outer) @ np.asarray(step, dtype=np.float64) @ outer @ inner


class NudgeHistory:
    """The states of one transform while it is nudged: undo, redo, saved, revert."""

    def __init__(self, saved: np.ndarray | None) -> None:
        start = np.eye(4) if saved is None else np.array(saved, dtype=np.float64)
        self._states: list[np.ndarray] = [start]
        self._names: list[str] = ["as opened"]
        self._index = 0
        self._saved = start.copy()

    @property
    def current(self) -> np.ndarray:
        return self._states[self._index].copy()

    @property
    def dirty(self) -> bool:
        """The current state is not the one last saved (to 1e-9, rounding of a written manifest)."""
        return not np.allclose(self._states[self._index], self._saved, rtol=0, atol=1e-9)

    @property
    def can_undo(self) -> bool:
        return self._index > 0

    @property
    def can_redo(self) -> bool:
        return self._index < len(self._states) - 1

    @property
    def previous(self) -> np.ndarray | None:
        """The state an undo would return to (None: nothing to undo)."""
        return self._states[self._index - 1].copy() if self.can_undo else None

    @property
    def following(self) -> np.ndarray | None:
        """The state a redo would return to (None: nothing to redo)."""
        return self._states[self._index + 1].copy() if self.can_redo else None

    @property
    def saved(self) -> np.ndarray:
        return self._saved.copy()

    def push(self, matrix: np.ndarray, name: str) -> np.ndarray:
        """A new state after the current one (the redo branch is dropped); returns it."""
        del self._states[self._index + 1:], self._names[self._index + 1:]
        self._states.append(np.array(matrix, dtype=np.float64))
        self._names.append(name)
        self._index += 1
        return self.current

    def undo(self) -> np.ndarray:
        if self.can_undo:
            self._index -= 1
        return self.current

    def redo(self) -> np.ndarray:
        if self.can_redo:
            self._index += 1
        return self.current

    def revert(self) -> np.ndarray:
        """Back to the state last saved, as one more undoable step."""
        return self.push(self._saved, "revert") if self.dirty else self.current

    def mark_saved(self) -> None:
        self._saved = self.current

    @property
    def undo_name(self) -> str | None:
        return self._names[self._index] if self.can_undo else None

    @property
    def redo_name(self) -> str | None:
        return self._names[self._index + 1] if self.can_redo else None
