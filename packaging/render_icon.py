"""Render the application icon's PNG sizes from resources/icons/cell-therapy-viewer.svg.

Usage: python packaging/render_icon.py [--sizes 256,128,…]
Writes resources/icons/cell-therapy-viewer.png (256 px) and cell-therapy-viewer-<N>.png for any
other size asked for. Uses Qt's SVG renderer (QtSvg ships with PySide6-Essentials); no screen
is needed (offscreen platform).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parent.parent / "resources" / "icons"
SVG = ICONS / "cell-therapy-viewer.svg"


def render(size: int, target: Path) -> Path:
    from PySide6 import QtCore, QtGui, QtSvg

    renderer = QtSvg.QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"error: {SVG}: not a valid SVG for Qt")
    image = QtGui.QImage(size, size, QtGui.QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(QtCore.Qt.GlobalColor.transparent)
    painter = QtGui.QPainter(image)
    painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QtCore.QRectF(0, 0, size, size))
    painter.end()
    if not image.save(str(target), "PNG"):
        raise SystemExit(f"error: could not write {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256", help="comma-separated pixel sizes (default 256)")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtGui

    app = QtGui.QGuiApplication.instance() or QtGui.QGuiApplication(sys.argv[:1])  # noqa: F841 (keeps Qt alive)
    for size in (int(s) for s in args.sizes.split(",")):
        name = "cell-therapy-viewer.png" if size == 256 else f"cell-therapy-viewer-{size}.png"
        print(render(size, ICONS / name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
