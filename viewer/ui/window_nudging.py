"""Study ▸ Adjust registration (PRODUCT.md §9: nudge a transform by hand, undoable, saved).

A non-modal dialog beside the views: the reader picks what moves (the shown timepoint against
the reference, or one of its images against its anatomy), moves it along or turns it about the
reference axes with buttons or keys, watches the views (the compare layout's checkerboard,
blend or flicker shows the fit), undoes, redoes, reverts, and saves into the manifest. Every
step is applied to the scene at once (:meth:`viewer.core.scene.Scene.set_transform`: the
open images are placed anew and measured again); nothing is written until Save. The motion
math and the history are :mod:`viewer.core.transform_nudge`'s.

Keys in the dialog: ←/→ move along x (right), ↑/↓ along y (anterior), Page Up/Down along z
(superior); with Ctrl they turn about that axis instead; Ctrl+Z undo, Ctrl+Shift+Z redo,
Ctrl+S save.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from viewer.core.errors import ViewerError
from viewer.core.transform_nudge import AXES, NudgeHistory, Step, nudged
from viewer.core.transforms import rotation_degrees, translation_mm

TRANSLATION_STEPS_MM = (0.1, 0.5, 1.0, 2.0, 5.0)
ROTATION_STEPS_DEG = (0.1, 0.5, 1.0, 2.0, 5.0)
AXIS_TITLES = ("x (right)", "y (anterior)", "z (superior)")
#: keys → (axis, sign); with Ctrl the same key turns about the axis
KEYS = {QtCore.Qt.Key.Key_Right: (0, 1), QtCore.Qt.Key.Key_Left: (0, -1), QtCore.Qt.Key.Key_Up: (1, 1),
        QtCore.Qt.Key.Key_Down: (1, -1), QtCore.Qt.Key.Key_PageUp: (2, 1), QtCore.Qt.Key.Key_PageDown: (2, -1)}


@dataclass(frozen=True)
class Target:
    """What a nudge moves: a timepoint (role None) or one of its images."""

    label: str
    role: str | None

    def title(self, reference: str) -> str:
        if self.role is None:
            return f"{self.label} against {reference}"
        return f"{self.label} {self.role} against {self.label}'s anatomy"


class NudgeDialog(QtWidgets.QDialog):
    """Adjust one transform by hand; the window passes itself (the scene and its messages)."""

    def __init__(self, window: QtWidgets.QMainWindow) -> None:
        super().__init__(window)
        self.window_ = window
        self.setWindowTitle("Adjust registration")
        self.history: NudgeHistory | None = None
        self.target: Target | None = None
        layout = QtWidgets.QVBoxLayout(self)
        form = QtWidgets.QFormLayout()
        self.target_combo = QtWidgets.QComboBox()
        self.target_combo.activated.connect(self._target_chosen)
        form.addRow("Move:", self.target_combo)
        self.move_step = QtWidgets.QComboBox()
        self.turn_step = QtWidgets.QComboBox()
        for value in TRANSLATION_STEPS_MM:
            self.move_step.addItem(f"{value:g} mm", value)
        for value in ROTATION_STEPS_DEG:
            self.turn_step.addItem(f"{value:g}°", value)
        self.move_step.setCurrentIndex(TRANSLATION_STEPS_MM.index(1.0))
        self.turn_step.setCurrentIndex(ROTATION_STEPS_DEG.index(0.5))
        form.addRow("Step:", self._row(self.move_step, self.turn_step))
        layout.addLayout(form)
        grid = QtWidgets.QGridLayout()
        grid.addWidget(QtWidgets.QLabel("<b>move along</b>"), 0, 1, 1, 2)
        grid.addWidget(QtWidgets.QLabel("<b>turn about</b>"), 0, 3, 1, 2)
        self.buttons: dict[tuple[str, int, int], QtWidgets.QToolButton] = {}
        for axis, title in enumerate(AXIS_TITLES):
            grid.addWidget(QtWidgets.QLabel(title), axis + 1, 0)
            for column, (kind, sign, text) in enumerate((("translate", -1, "−"), ("translate", 1, "+"),
                                                          ("rotate", -1, "↻"), ("rotate", 1, "↺"))):
                button = QtWidgets.QToolButton()
                button.setText(text)
                button.setAutoRepeat(True)
                button.setToolTip(f"{'move' if kind == 'translate' else 'turn'} {'+' if sign > 0 else '−'} "
                                  f"{AXES[axis]}")
                button.clicked.connect(lambda _=False, k=kind, a=axis, s=sign: self.nudge(k, a, s))
                grid.addWidget(button, axis + 1, column + 1)
                self.buttons[(kind, axis, sign)] = button
        layout.addLayout(grid)
        self.state_label = QtWidgets.QLabel()
        self.state_label.setWordWrap(True)
        layout.addWidget(self.state_label)
        keys = QtWidgets.QLabel("Keys: ←/→ x, ↑/↓ y, Page Up/Down z; with Ctrl: turn. Ctrl+Z undo, "
                                "Ctrl+Shift+Z redo, Ctrl+S save.")
        keys.setWordWrap(True)
        keys.setStyleSheet("color: palette(mid);")
        layout.addWidget(keys)
        actions = QtWidgets.QHBoxLayout()
        self.undo_button = self._button(actions, "Undo", self.undo, QtGui.QKeySequence.StandardKey.Undo)
        self.redo_button = self._button(actions, "Redo", self.redo, QtGui.QKeySequence("Ctrl+Shift+Z"))
        self.revert_button = self._button(actions, "Revert", self.revert)
        self.save_button = self._button(actions, "Save into study", self.save, QtGui.QKeySequence.StandardKey.Save)
        self._button(actions, "Close", self.close)
        layout.addLayout(actions)
        self.fill_targets()

    @staticmethod
    def _row(*widgets: QtWidgets.QWidget) -> QtWidgets.QWidget:
        box = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        for widget in widgets:
            row.addWidget(widget)
        return box

    def _button(self, layout: QtWidgets.QHBoxLayout, text: str, slot, shortcut=None) -> QtWidgets.QPushButton:
        button = QtWidgets.QPushButton(text)
        button.setAutoDefault(False)
        button.clicked.connect(lambda _=False: slot())
        if shortcut is not None:
            QtGui.QShortcut(shortcut, self, activated=slot)
        layout.addWidget(button)
        return button

    # -- what moves -----------------------------------------------------------------------------

    @property
    def scene(self):
        return self.window_.scene

    def targets(self) -> list[Target]:
        """The shown timepoint (unless it is the reference) and its images but anatomy and regions."""
        if self.scene is None:
            return []
        timepoint = self.scene.timepoint
        found = [] if timepoint.label == self.scene.study.timepoints[0].label else [Target(timepoint.label, None)]
        return found + [Target(timepoint.label, role) for role in timepoint.images if role not in ("anatomical", "regions")]

    def fill_targets(self) -> None:
        """List what can move at the shown timepoint; keep the one being adjusted if still there."""
        targets = self.targets()
        if self.dirty and self.target not in targets:  # another timepoint shown: the unsaved one stays
            targets.insert(0, self.target)
        reference = self.scene.study.timepoints[0].label if self.scene is not None else ""
        self.target_combo.clear()
        for target in targets:
            self.target_combo.addItem(target.title(reference), target)
        keep = targets.index(self.target) if self.target in targets else 0
        if targets:
            self.target_combo.setCurrentIndex(keep)
        if self.target not in targets:
            self._begin(targets[0] if targets else None)
        self._update()

    def _target_chosen(self, index: int) -> None:
        target = self.target_combo.itemData(index)
        if target == self.target:
            return
        if not self.settle():
            self.target_combo.setCurrentIndex(self.target_combo.findData(self.target))
            return
        self._begin(target)
        self._update()

    def _begin(self, target: Target | None) -> None:
        self.target = target
        self.history = None if target is None else NudgeHistory(self.scene.transform_of(target.label, target.role)[0])

    # -- moving ---------------------------------------------------------------------------------

    def nudge(self, kind: str, axis: int, sign: int) -> bool:
        """One step of the chosen size; False (and why, in the window) when it cannot apply."""
        if self.target is None or self.history is None:
            return False
        amount = sign * (self.move_step.currentData() if kind == "translate" else self.turn_step.currentData())
        step = Step(kind, axis, float(amount))
        timepoint = self.scene.study.timepoint(self.target.label)
        extent = self.scene.anatomy_extent(timepoint)
        centre = np.asarray(extent).mean(axis=0) if extent is not None else np.zeros(3)
        inner, outer = self.scene.transform_of(self.target.label, self.target.role)
        matrix = nudged(inner, outer, step.matrix(centre))
        return self._apply(matrix) and self._done(self.history.push(matrix, step.describe()))

    def undo(self) -> None:
        history = self.history
        if history is not None and history.previous is not None and self._apply(history.previous):
            self._done(history.undo())

    def redo(self) -> None:
        history = self.history
        if history is not None and history.following is not None and self._apply(history.following):
            self._done(history.redo())

    def revert(self) -> None:
        history = self.history
        if history is not None and history.dirty and self._apply(history.saved):
            self._done(history.revert())

    def _apply(self, matrix: np.ndarray) -> bool:
        """Place the target by ``matrix`` now; False (said in the window) when the scene refuses."""
        assert self.target is not None
        try:
            self.scene.set_transform(self.target.label, matrix, self.target.role)
        except ViewerError as exc:
            self.window_.show_error(str(exc), title="Adjust registration")
            return False
        return True

    def _done(self, _state: np.ndarray) -> bool:
        self._update()
        self.window_.refresh_unsaved_marker()
        return True

    def save(self) -> bool:
        if self.target is None or self.history is None or not self.history.dirty:
            return True
        try:
            self.scene.save_transform(self.target.label, self.target.role)
        except ViewerError as exc:
            self.window_.show_error(str(exc), title="Adjust registration")
            return False
        self.history.mark_saved()
        self.window_.statusBar().showMessage(f"saved the registration of {self.target_combo.currentText()}", 10_000)
        self._update()
        self.window_.refresh_unsaved_marker()
        return True

    @property
    def dirty(self) -> bool:
        return self.history is not None and self.history.dirty

    def settle(self) -> bool:
        """Before the target, the study or the window changes: save, discard or stay (False)."""
        if not self.dirty:
            return True
        answer = self.window_.ask_unsaved_registration(self.target_combo.currentText())
        if answer == QtWidgets.QMessageBox.StandardButton.Save:
            return self.save()
        if answer == QtWidgets.QMessageBox.StandardButton.Discard:
            assert self.history is not None
            if not self._apply(self.history.saved):
                return False
            self._done(self.history.revert())
            return True
        return False

    def _update(self) -> None:
        enabled = self.target is not None
        for button in (*self.buttons.values(), self.move_step, self.turn_step):
            button.setEnabled(enabled)
        history = self.history
        self.undo_button.setEnabled(bool(history and history.can_undo))
        self.redo_button.setEnabled(bool(history and history.can_redo))
        self.revert_button.setEnabled(bool(history and history.dirty))
        self.save_button.setEnabled(bool(history and history.dirty))
        if history is None:
            self.state_label.setText("The shown timepoint is the reference and has no other image to move: "
                                     "show a later timepoint.")
            return
        matrix = history.current
        text = f"rotation {rotation_degrees(matrix):.2f}°, translation {translation_mm(matrix):.2f} mm"
        if history.dirty:
            turned, moved = self._change_since_saved()
            text += f" — changed by {turned:.2f}° and {moved:.1f} mm at the anatomy's centre, not saved"
        if history.undo_name:
            text += f"; last: {history.undo_name}"
        self.state_label.setText(text)

    def _change_since_saved(self) -> tuple[float, float]:
        """(degrees, mm): how far the current state turns and moves the target, as the reader
        sees it in the reference space, from the saved one (at the anatomy's centre)."""
        assert self.target is not None and self.history is not None
        _inner, outer = self.scene.transform_of(self.target.label, self.target.role)
        outer = np.eye(4) if outer is None else outer
        change = outer @ self.history.current @ np.linalg.inv(outer @ self.history.saved)
        extent = self.scene.anatomy_extent(self.scene.study.timepoint(self.target.label))
        centre = np.append(np.asarray(extent).mean(axis=0) if extent is not None else np.zeros(3), 1.0)
        return rotation_degrees(change), float(np.linalg.norm((change @ centre - centre)[:3]))

    # -- keys and closing -----------------------------------------------------------------------

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        key = QtCore.Qt.Key(event.key())
        if key in KEYS and self.target is not None:
            axis, sign = KEYS[key]
            turn = bool(event.modifiers() & QtCore.Qt.KeyboardModifier.ControlModifier)
            self.nudge("rotate" if turn else "translate", axis, sign)
            event.accept()
            return
        super().keyPressEvent(event)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        if not self.settle():
            event.ignore()
            return
        super().closeEvent(event)

    def reject(self) -> None:  # Esc: the same question as closing
        if self.settle():
            super().reject()


class Nudging:
    """Study ▸ Adjust registration… (a mixin of the main window)."""

    _nudge_dialog: NudgeDialog | None = None

    def start_nudge(self) -> NudgeDialog | None:
        """Open (or raise) the adjust-registration dialog for the shown timepoint."""
        if self.scene is None:
            return None
        if self.unsaved_timepoints():
            self.show_error("Save or discard the region edits first: moving a timepoint moves its regions' numbers",
                            title="Adjust registration")
            return None
        if self._nudge_dialog is None:
            self._nudge_dialog = NudgeDialog(self)
        self._nudge_dialog.fill_targets()
        self._nudge_dialog.show()
        self._nudge_dialog.raise_()
        return self._nudge_dialog

    def unsaved_registration(self) -> bool:
        return self._nudge_dialog is not None and self._nudge_dialog.dirty

    def settle_registration(self) -> bool:
        """Unsaved nudges before the study goes (close, reopen): save, discard or stay."""
        return self._nudge_dialog is None or self._nudge_dialog.settle()

    def _forget_nudge_dialog(self) -> None:
        """A new study: the dialog of the old one goes (its unsaved nudges were settled)."""
        if self._nudge_dialog is not None:
            self._nudge_dialog.history = None  # nothing to ask any more
            self._nudge_dialog.hide()
            self._nudge_dialog.deleteLater()
            self._nudge_dialog = None

    def _nudge_timepoint_changed(self, **_) -> None:
        if self._nudge_dialog is not None and self._nudge_dialog.isVisible():
            self._nudge_dialog.fill_targets()

    def ask_unsaved_registration(self, what: str) -> QtWidgets.QMessageBox.StandardButton:
        """The question for unsaved nudges (tests answer it)."""
        buttons = (QtWidgets.QMessageBox.StandardButton.Save | QtWidgets.QMessageBox.StandardButton.Discard
                   | QtWidgets.QMessageBox.StandardButton.Cancel)
        return QtWidgets.QMessageBox.question(self, "Unsaved registration",
                                              f"The registration of {what} was adjusted and not saved. Save it?",
                                              buttons, QtWidgets.QMessageBox.StandardButton.Save)

    def refresh_unsaved_marker(self) -> None:
        self.setWindowModified(bool(self.unsaved_timepoints()) or self.unsaved_registration())
