"""The desktop application: PySide6 + pyqtgraph (+ VTK for the 3D view), a thin layer over
:mod:`viewer.core`. Widgets observe the core's Scene and call its methods; they hold no copy
of its state.
"""
