"""Core logic of the viewer: data, geometry, quantification and headless rendering.

Nothing in this package may import Qt (PySide6), pyqtgraph or VTK: everything the window can
compute, a test or a batch script can compute without one. `tests/core/test_no_gui_imports.py`
and the import-linter contract in `pyproject.toml` enforce this.
"""
