"""The annotation panel: label table, tools and their options, region actions.

Everything it changes goes through the scene's editable label map (undoable core
operations); the panel keeps only widget state (which tool, which options).
"""

from __future__ import annotations

from dataclasses import replace

from PySide6 import QtCore, QtGui, QtWidgets

from viewer.core.regions import RESERVED_NAMES, LabelEntry
from viewer.core.scene import Scene
from viewer.core.volume import ROLE_QUANTITY
from viewer.ui.tools import TOOL_NAMES, Tool, ToolOptions, make_tool


class AnnotationPanel(QtWidgets.QWidget):
    """Label table + tool choice + options + actions.

    Signals:
        tool_changed(object): the new Tool, or None for "navigate".
        action_requested(str): "undo", "redo", "interpolate", "propose", "carry", "save", "export".
        status(str): a message for the status bar.
    """

    tool_changed = QtCore.Signal(object)
    action_requested = QtCore.Signal(str)
    status = QtCore.Signal(str)

    def __init__(self, scene: Scene, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.scene = scene
        self.options = ToolOptions()
        self.tool: Tool | None = None
        layout = QtWidgets.QVBoxLayout(self)
        self.read_only_notice = QtWidgets.QLabel()
        self.read_only_notice.setWordWrap(True)
        self.read_only_notice.setStyleSheet("color: #b35c00;")
        self.read_only_notice.hide()
        layout.addWidget(self.read_only_notice)
        layout.addWidget(self._build_table())
        layout.addWidget(self._build_tools())
        layout.addWidget(self._build_options())
        layout.addWidget(self._build_actions())
        layout.addStretch(1)
        scene.events.connect("regions", self._on_regions)
        scene.events.connect("timepoint", self._on_timepoint)
        self.refresh_table()
        self._sync_threshold_range()

    # -- label table -----------------------------------------------------------------------------
    def _build_table(self) -> QtWidgets.QGroupBox:
        box = QtWidgets.QGroupBox("Regions (labels)")
        layout = QtWidgets.QVBoxLayout(box)
        self.table = QtWidgets.QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["", "Label", "Name", "Locked"])
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(2, QtWidgets.QHeaderView.ResizeMode.Stretch)
        for column in (0, 1, 3):
            header.setSectionResizeMode(column, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumHeight(150)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.cellDoubleClicked.connect(self._on_double_click)
        layout.addWidget(self.table)
        buttons = QtWidgets.QHBoxLayout()
        self.add_button = QtWidgets.QToolButton(text="Add ▾")
        self.add_button.setPopupMode(QtWidgets.QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QtWidgets.QMenu(self.add_button)
        for name in (*RESERVED_NAMES, "injection site"):
            menu.addAction(name, lambda n=name: self.add_region(n))
        menu.addAction("custom region…", self._add_custom)
        self.add_button.setMenu(menu)
        self.delete_button = QtWidgets.QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete_selected)
        self.color_button = QtWidgets.QPushButton("Colour…")
        self.color_button.clicked.connect(self._recolour_selected)
        for widget in (self.add_button, self.delete_button, self.color_button):
            buttons.addWidget(widget)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        return box

    def refresh_table(self) -> None:
        """Show the current label table, keeping the active label selected."""
        table = self.scene.editable().table
        self.table.blockSignals(True)
        self.table.setRowCount(len(table.entries))
        selected_row = 0
        for row, entry in enumerate(table.entries):
            swatch = QtWidgets.QTableWidgetItem()
            swatch.setBackground(QtGui.QColor(*entry.color))
            swatch.setFlags(QtCore.Qt.ItemFlag.ItemIsEnabled | QtCore.Qt.ItemFlag.ItemIsSelectable)
            number = QtWidgets.QTableWidgetItem(str(entry.label))
            number.setFlags(QtCore.Qt.ItemFlag.ItemIsEnabled | QtCore.Qt.ItemFlag.ItemIsSelectable)
            number.setData(QtCore.Qt.ItemDataRole.UserRole, entry.label)
            name = QtWidgets.QTableWidgetItem(entry.name)
            locked = QtWidgets.QTableWidgetItem()
            locked.setFlags(QtCore.Qt.ItemFlag.ItemIsEnabled | QtCore.Qt.ItemFlag.ItemIsUserCheckable | QtCore.Qt.ItemFlag.ItemIsSelectable)
            locked.setCheckState(QtCore.Qt.CheckState.Checked if entry.locked else QtCore.Qt.CheckState.Unchecked)
            for column, item in enumerate((swatch, number, name, locked)):
                self.table.setItem(row, column, item)
            if entry.label == self.options.label:
                selected_row = row
        if table.entries:
            self.table.selectRow(selected_row)
            self.options.label = table.entries[selected_row].label
        self.table.blockSignals(False)

    def _label_at(self, row: int) -> int | None:
        item = self.table.item(row, 1)
        return int(item.data(QtCore.Qt.ItemDataRole.UserRole)) if item is not None else None

    def _on_selection(self) -> None:
        rows = {index.row() for index in self.table.selectedIndexes()}
        if rows:
            label = self._label_at(min(rows))
            if label is not None:
                self.options.label = label

    def _on_item_changed(self, item: QtWidgets.QTableWidgetItem) -> None:
        label = self._label_at(item.row())
        editable = self.scene.editable()
        entry = editable.table.get(label) if label is not None else None
        if entry is None:
            return
        if item.column() == 2 and item.text().strip() and item.text().strip() != entry.name:
            editable.rename(entry.label, item.text().strip())
        elif item.column() == 3:
            locked = item.checkState() == QtCore.Qt.CheckState.Checked
            if locked != entry.locked:
                verb = "lock" if locked else "unlock"
                editable.set_table(f"{verb} '{entry.name}'", editable.table.with_entry(replace(entry, locked=locked)))

    def _on_double_click(self, row: int, column: int) -> None:
        if column == 0:
            self._recolour_selected()

    def add_region(self, name: str) -> int:
        """Add a label (reserved name or custom) and make it active; undoable."""
        editable = self.scene.editable()
        existing = editable.table.label_of(name)
        if existing is not None:
            self.options.label = existing
            self.refresh_table()
            return existing
        from viewer.core.display import region_color

        label = editable.table.next_free_label()
        editable.set_table(f"add '{name}'", editable.table.with_entry(LabelEntry(label, name, region_color(label, name))))
        self.options.label = label
        self.refresh_table()
        return label

    def _add_custom(self) -> None:
        name, ok = QtWidgets.QInputDialog.getText(self, "New region", "Name:")
        if ok and name.strip():
            self.add_region(name.strip())

    def delete_selected(self) -> None:
        label = self.options.label
        editable = self.scene.editable()
        if editable.table.get(label) is not None or (editable.data == label).any():
            editable.delete_label(label)
            self.refresh_table()

    def _recolour_selected(self) -> None:
        editable = self.scene.editable()
        entry = editable.table.get(self.options.label)
        if entry is None:
            return
        color = QtWidgets.QColorDialog.getColor(QtGui.QColor(*entry.color), self, f"Colour of {entry.name}")
        if color.isValid():
            self.recolour(entry.label, (color.red(), color.green(), color.blue()))

    def recolour(self, label: int, rgb: tuple[int, int, int]) -> None:
        editable = self.scene.editable()
        entry = editable.table.get(label)
        if entry is not None:
            editable.set_table(f"recolour '{entry.name}'", editable.table.with_entry(replace(entry, color=tuple(rgb))))
            self.refresh_table()

    # -- tools ----------------------------------------------------------------------------------------
    def _build_tools(self) -> QtWidgets.QGroupBox:
        box = QtWidgets.QGroupBox("Tool")
        layout = QtWidgets.QGridLayout(box)
        self.tool_buttons: dict[str, QtWidgets.QToolButton] = {}
        group = QtWidgets.QButtonGroup(self)
        group.setExclusive(True)
        for index, name in enumerate(TOOL_NAMES):
            button = QtWidgets.QToolButton(text=name.capitalize())
            button.setCheckable(True)
            button.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
            group.addButton(button)
            button.clicked.connect(lambda checked=False, n=name: self.set_tool(n))
            layout.addWidget(button, index // 3, index % 3)
            self.tool_buttons[name] = button
        self.tool_buttons["navigate"].setChecked(True)
        return box

    def set_tool(self, name: str) -> Tool | None:
        """Activate a tool by name ("navigate" moves the cursor instead)."""
        if self.tool is not None:
            self.tool.deactivate()
        self.tool = make_tool(name, self.scene, self.options, self.status.emit)
        if self.tool is not None:
            self.tool.activate()
        self.tool_buttons[name].setChecked(True)
        self.tool_changed.emit(self.tool)
        return self.tool

    # -- options --------------------------------------------------------------------------------------
    def _build_options(self) -> QtWidgets.QGroupBox:
        box = QtWidgets.QGroupBox("Options")
        form = QtWidgets.QFormLayout(box)
        self.radius = QtWidgets.QDoubleSpinBox(minimum=0.5, maximum=50.0, singleStep=0.5, decimals=1, suffix=" mm")
        self.radius.setValue(self.options.radius_mm)
        self.radius.valueChanged.connect(lambda v: setattr(self.options, "radius_mm", float(v)))
        self.sphere = QtWidgets.QCheckBox("3-D sphere (else a disk in the slice)")
        self.sphere.toggled.connect(lambda v: setattr(self.options, "sphere", bool(v)))
        self.threshold_layer = QtWidgets.QComboBox()
        for role, volume in self.scene.volumes.items():
            if role != "regions":
                self.threshold_layer.addItem(f"{ROLE_QUANTITY[role]} ({volume.units})", role)
        self.threshold_layer.currentIndexChanged.connect(self._on_threshold_layer)
        self.low = QtWidgets.QDoubleSpinBox(decimals=4, minimum=-1e9, maximum=1e9)
        self.high = QtWidgets.QDoubleSpinBox(decimals=4, minimum=-1e9, maximum=1e9)
        self.low.valueChanged.connect(lambda v: setattr(self.options, "low", float(v)))
        self.high.valueChanged.connect(lambda v: setattr(self.options, "high", float(v)))
        form.addRow("Brush radius", self.radius)
        form.addRow("", self.sphere)
        form.addRow("Limit to layer", self.threshold_layer)
        form.addRow("from", self.low)
        form.addRow("to", self.high)
        return box

    def _on_threshold_layer(self) -> None:
        self.options.threshold_role = str(self.threshold_layer.currentData())
        self._sync_threshold_range()

    def _sync_threshold_range(self) -> None:
        """Start from what the layer shows: its visible range, else its display levels."""
        role = self.threshold_layer.currentData()
        if role is None:
            return
        self.options.threshold_role = str(role)
        props = self.scene.display.get(role)
        if props is None:
            return
        low, high = props.visible_range
        low = low if low > -1e300 else props.levels[0]
        high = high if high < 1e300 else float(max(props.levels[1], low))
        self.low.setValue(low)
        self.high.setValue(high)

    # -- actions ---------------------------------------------------------------------------------------
    def _build_actions(self) -> QtWidgets.QGroupBox:
        box = QtWidgets.QGroupBox("Actions")
        layout = QtWidgets.QGridLayout(box)
        actions = [
            ("Undo", "undo"), ("Redo", "redo"), ("Fill between slices", "interpolate"),
            ("Propose core/penumbra", "propose"), ("Carry to other timepoints", "carry"),
            ("Save regions", "save"), ("Export table (CSV)…", "export"),
        ]
        self.action_buttons: dict[str, QtWidgets.QPushButton] = {}
        for index, (text, key) in enumerate(actions):
            button = QtWidgets.QPushButton(text)
            button.clicked.connect(lambda checked=False, k=key: self.action_requested.emit(k))
            layout.addWidget(button, index // 2, index % 2)
            self.action_buttons[key] = button
        self.interpolate_axis = QtWidgets.QComboBox()
        self.interpolate_axis.addItems(["axial", "coronal", "sagittal"])
        layout.addWidget(QtWidgets.QLabel("Fill between slices along:"), 4, 0)
        layout.addWidget(self.interpolate_axis, 4, 1)
        return box

    # -- read-only (another session holds the study) ------------------------------------------------------
    #: Actions that change or save the regions, disabled while read-only.
    EDITING_ACTIONS = ("undo", "redo", "interpolate", "propose", "carry", "save")

    def set_read_only(self, message: str | None) -> None:
        """Show why the regions cannot be saved (another session holds the study) and turn
        the editing tools off; None turns them back on. Navigating and exporting stay."""
        read_only = message is not None
        self.read_only_notice.setText(f"Read-only: {message}" if read_only else "")
        self.read_only_notice.setVisible(read_only)
        if read_only and self.tool is not None:
            self.set_tool("navigate")
        for name, button in self.tool_buttons.items():
            button.setEnabled(name == "navigate" or not read_only)
        for key in self.EDITING_ACTIONS:
            self.action_buttons[key].setEnabled(not read_only)
        for widget in (self.add_button, self.delete_button, self.color_button):
            widget.setEnabled(not read_only)

    @property
    def read_only(self) -> bool:
        """True while the panel says the study is held by another session."""
        return bool(self.read_only_notice.text())

    # -- scene events ------------------------------------------------------------------------------------
    def _on_regions(self, **info) -> None:
        self.refresh_table()

    def _on_timepoint(self, index: int) -> None:
        self.refresh_table()
        if self.tool is not None:
            self.set_tool(self.tool.name)
