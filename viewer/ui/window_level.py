"""The toolbar's numeric window/level of the anatomy and its presets (PRODUCT.md §5).

Window (width) and level (centre) in the anatomy's units, typed or stepped, beside the
right-drag that changes them continuously; presets from :mod:`viewer.core.window_presets`
(CT windows in HU, MR windows from the image's own tissue). The levels stay the scene's
(``display["anatomical"].levels``); this bar shows and sets them.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6 import QtCore, QtWidgets

from viewer.core.scene import Scene
from viewer.core.window_presets import WindowPreset, anatomy_presets
from viewer.ui.colorbar import SceneLink

PRESET_PROMPT = "Presets…"
#: the levels the anatomy had when the study was opened (its protocol's default, before any saved workspace)
AS_OPENED = "As opened"


class _PresetCombo(QtWidgets.QComboBox):
    """A combo box that says when its list is about to open (the presets are computed then:
    their Otsu threshold imports scikit-image, 0.2 s a start-up need not pay)."""

    about_to_open = QtCore.Signal()

    def showPopup(self) -> None:  # noqa: N802 (Qt naming)
        self.about_to_open.emit()
        super().showPopup()


def _spin(tooltip: str) -> QtWidgets.QDoubleSpinBox:
    spin = QtWidgets.QDoubleSpinBox()
    spin.setRange(-1e9, 1e9)
    spin.setKeyboardTracking(False)  # typing "400" is one change, not "4", "40", "400"
    spin.setToolTip(tooltip)
    spin.setFixedWidth(96)
    return spin


class WindowLevelBar(QtWidgets.QWidget):
    """W and L spin boxes and a preset menu for the open study's anatomy."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.scene: Scene | None = None
        self._link: SceneLink | None = None
        self._presets: dict[int, list[WindowPreset]] = {}  # per anatomy volume (id)
        self._default: dict[int, tuple[float, float]] = {}
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        self.width_spin = _spin("Window width of the anatomy, in its units (right-drag changes it too)")
        self.level_spin = _spin("Window level (centre) of the anatomy, in its units")
        self.preset_combo = _PresetCombo()
        self.preset_combo.setToolTip("Window/level presets of the anatomy")
        self.preset_combo.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContentsOnFirstShow)
        self.preset_combo.setMaximumWidth(150)  # the list opens as wide as its entries
        self.preset_combo.view().setMinimumWidth(300)
        for text, widget in (("W", self.width_spin), ("L", self.level_spin)):
            layout.addWidget(QtWidgets.QLabel(text))
            layout.addWidget(widget)
        layout.addWidget(self.preset_combo)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Maximum, QtWidgets.QSizePolicy.Policy.Preferred)
        self.width_spin.valueChanged.connect(self._on_spin)
        self.level_spin.valueChanged.connect(self._on_spin)
        self.preset_combo.activated.connect(self._on_preset)
        self.preset_combo.about_to_open.connect(self.presets)
        self.setEnabled(False)

    def set_scene(self, scene: Scene) -> None:
        if self._link is not None:
            self._link.disconnect()
        self.scene = scene
        self._link = SceneLink(scene.events, self)
        self._link.connect("display", self._on_display)
        self._link.connect("timepoint", self._on_timepoint)
        self._on_timepoint()
        self.setEnabled(True)

    def presets(self) -> list[WindowPreset]:
        """The presets of the shown anatomy (computed once per image, when first asked for:
        the list opening), listed in the combo box."""
        assert self.scene is not None
        key = id(self.scene.anatomy)
        if key not in self._presets:
            self._presets[key] = anatomy_presets(self.scene.anatomy)
        if self.preset_combo.count() == 1:  # only the prompt: list them
            with QtCore.QSignalBlocker(self.preset_combo):
                for preset in self._presets[key]:
                    self.preset_combo.addItem(f"{preset.name}  (W {preset.width:.4g} / L {preset.center:.4g})",
                                              preset.levels)
                self.preset_combo.addItem(AS_OPENED, self._default[key])
        return self._presets[key]

    def _on_timepoint(self, **_: Any) -> None:
        assert self.scene is not None
        self._default.setdefault(id(self.scene.anatomy), tuple(self.scene.display["anatomical"].levels))
        with QtCore.QSignalBlocker(self.preset_combo):
            self.preset_combo.clear()
            self.preset_combo.addItem(PRESET_PROMPT)
        self._show_levels()

    def _on_display(self, role: str, **_: Any) -> None:
        if role == "anatomical":
            self._show_levels()

    def _show_levels(self) -> None:
        assert self.scene is not None
        low, high = self.scene.display["anatomical"].levels
        width, center = high - low, (low + high) / 2.0
        decimals = max(0, min(6, 3 - math.floor(math.log10(max(abs(width), 1e-9)))))
        with QtCore.QSignalBlocker(self.width_spin), QtCore.QSignalBlocker(self.level_spin):
            for spin, value in ((self.width_spin, width), (self.level_spin, center)):
                spin.setDecimals(decimals)
                spin.setSingleStep(max(width / 100.0, 10.0 ** -decimals))
                spin.setValue(value)
            self.width_spin.setMinimum(10.0 ** -decimals)

    def _on_spin(self, *_: Any) -> None:
        if self.scene is None:
            return
        width, center = self.width_spin.value(), self.level_spin.value()
        if width > 0:
            self.scene.set_display("anatomical", levels=(center - width / 2.0, center + width / 2.0))

    def _on_preset(self, index: int) -> None:
        levels = self.preset_combo.itemData(index)
        if self.scene is not None and levels is not None:
            self.scene.set_display("anatomical", levels=(float(levels[0]), float(levels[1])))
        with QtCore.QSignalBlocker(self.preset_combo):
            self.preset_combo.setCurrentIndex(0)  # the prompt again: a preset is an action
