"""Command line: the window (``viewer``, ``viewer open``, ``viewer --demo``), ``viewer demo``,
``viewer stats``, ``viewer render``, ``viewer report`` (PRODUCT.md §7).

Every failure prints exactly one line ``error: …`` on stderr and exits with status 2; outputs
are written to a temporary file and renamed, so a failed command leaves nothing behind.
Set ``VIEWER_DEBUG=1`` to see the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

from viewer import __version__
from viewer.core.errors import ViewerError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one ``error:`` line (no usage dump) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ViewerError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="viewer", description="Cell-therapy imaging viewer.")
    parser.add_argument("--version", action="version", version=f"viewer {__version__}")
    parser.add_argument("--demo", action="store_true", help="open the window on the demo study (written on first use)")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    open_ = commands.add_parser("open", help="open the window on a study, NIfTI file or DICOM folder")
    # zero paths opens an empty window: the .desktop file runs `cell-therapy-viewer open %F`
    open_.add_argument("paths", nargs="*", type=Path, help="study.toml, a folder, a NIfTI file or a DICOM folder")

    demo = commands.add_parser("demo", help="write the demo study (real anatomy, simulated overlays, truth.json)")
    demo.add_argument("--out", required=True, type=Path, help="folder to create")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the simulation (default 7)")
    demo.add_argument("--overwrite", action="store_true", help="replace an existing demo folder")

    stats = commands.add_parser("stats", help="per-region numbers of every timepoint (PRODUCT.md §3)")
    stats.add_argument("study", type=Path, help="study.toml or a folder holding one")
    stats.add_argument("--timepoint", metavar="LABEL", help="only this timepoint")
    stats.add_argument("--format", choices=("json", "csv"), default="json")
    stats.add_argument("-o", "--output", type=Path, help="write to this file instead of standard output")

    render = commands.add_parser("render", help="render one view of a study to PNG")
    render.add_argument("study", type=Path, help="study.toml, a folder holding one, a NIfTI file or a DICOM folder")
    render.add_argument("--view", choices=("axial", "coronal", "sagittal"), default="axial")
    render.add_argument("--at", metavar="X,Y,Z", help="world point in mm (default: strongest 19F hotspot)")
    render.add_argument("--timepoint", metavar="LABEL", help="timepoint label (default: the first)")
    render.add_argument("--neurological", action="store_true", help="patient left on screen left")
    render.add_argument("-o", "--output", required=True, type=Path, help="PNG file to write")

    report = commands.add_parser("report", help="write the PDF report of a study (PRODUCT.md §6)")
    report.add_argument("study", type=Path, help="study.toml or a folder holding one")
    report.add_argument("-o", "--output", required=True, type=Path, help="PDF file to write (replaced only on success)")
    report.add_argument("--timepoint", metavar="LABEL", help="only this timepoint (default: every timepoint)")
    report.add_argument("--deidentify", action="store_true",
                        help="remove patient name, ID, birth date and exact dates (text, images, PDF properties)")
    report.add_argument("--reviewer", metavar="NAME", help="reviewer named on the report")
    report.add_argument("--at", metavar="X,Y,Z", help="world point in mm for the key images (default: each timepoint's strongest 19F hotspot)")
    report.add_argument("--neurological", action="store_true", help="patient left on screen left in the key images")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``viewer`` console script and ``python -m viewer``."""
    with warnings.catch_warnings():
        # Library warnings (pydicom on a scanner's non-conforming values, numba, matplotlib)
        # are not the user's to act on and never reach the terminal (PRODUCT.md §7).
        if not os.environ.get("VIEWER_DEBUG"):
            warnings.simplefilter("ignore")
        return _run(argv)


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            return _cmd_gui(args)
        handler = {"demo": _cmd_demo, "render": _cmd_render, "stats": _cmd_stats, "report": _cmd_report,
                   "open": _cmd_gui}[args.command]
        return handler(args)
    except ViewerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug: still one line, traceback only on request
        if os.environ.get("VIEWER_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (set VIEWER_DEBUG=1 for details)", file=sys.stderr)
        return EXIT_USAGE


def _cmd_gui(args: argparse.Namespace) -> int:
    from viewer.ui.app import ensure_demo, run_gui

    paths = list(getattr(args, "paths", []) or [])
    for path in paths:
        if not Path(path).exists():
            raise ViewerError(f"{path}: file not found")
    if getattr(args, "demo", False):
        paths = [ensure_demo()]
    return run_gui(paths)


def _cmd_demo(args: argparse.Namespace) -> int:
    from viewer.core.demo import write_demo_study

    manifest = write_demo_study(args.out, seed=args.seed, overwrite=args.overwrite)
    print(manifest)
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from viewer.core.io.atomic import write_text_atomic
    from viewer.core.io.study import open_path
    from viewer.core.quant.stats import compute_study_stats

    if args.output is not None and args.output.is_dir():
        raise ViewerError(f"{args.output}: is a folder, expected a file name")
    study = open_path(args.study)
    stats = compute_study_stats(study, args.timepoint)
    text = stats.to_json() if args.format == "json" else stats.to_csv()
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(args.output, text)
        print(args.output)
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from viewer.core.io.study import load_timepoint, open_path
    from viewer.core.layers import build_layers, default_focus, parse_point
    from viewer.core.render import render_view

    if args.output.suffix.lower() != ".png":
        raise ViewerError(f"{args.output}: the output must be a .png file")
    if args.output.is_dir():
        raise ViewerError(f"{args.output}: is a folder, expected a file name")
    study = open_path(args.study)
    timepoint = study.timepoint(args.timepoint) if args.timepoint else study.timepoints[0]
    volumes = load_timepoint(study, timepoint)
    if args.at:
        try:
            point = parse_point(args.at)
        except ValueError as exc:
            raise ViewerError(f"--at: {exc}") from None
    else:
        point = default_focus(volumes, timepoint)
    layers = build_layers(volumes, timepoint)
    title = f"{study.id} · {timepoint.label}"
    path = render_view(layers, args.view, point, args.output, radiological=not args.neurological, title=title)
    print(path)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from viewer.core.layers import parse_point
    from viewer.core.report import ReportOptions, report_from_study

    point = None
    if args.at:
        try:
            point = parse_point(args.at)
        except ValueError as exc:
            raise ViewerError(f"--at: {exc}") from None
    options = ReportOptions(deidentify=args.deidentify, reviewer=args.reviewer, focus=point,
                            radiological=not args.neurological)
    print(report_from_study(args.study, args.output, options, args.timepoint))
    return 0


if __name__ == "__main__":
    sys.exit(main())
