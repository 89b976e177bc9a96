"""Command line: the window (``viewer``, ``viewer open``, ``viewer --demo``), ``viewer demo``,
``viewer stats``, ``viewer render``, ``viewer report``, ``viewer import`` (PRODUCT.md §7).

Every failure prints exactly one line ``error: …`` on stderr and exits with status 2, control
characters escaped (:func:`viewer.core.errors.one_line`); outputs are written to a temporary
file and renamed, so a failed command leaves nothing behind. An output that is a device or a
FIFO (``-o /dev/stdout``, a named pipe) is written in place and never replaced
(:mod:`viewer.core.io.atomic`); its path is then not printed on standard output. Library
warnings (Python warnings and log records) are silenced. Set ``VIEWER_DEBUG=1`` to see them
and the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from viewer import __version__
from viewer.core.errors import ViewerError, one_line

if TYPE_CHECKING:
    from datetime import date
    from typing import TextIO

    from viewer.core.importer import Exam

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
    # the demo's NOISE_PROFILES and DEFAULT_NOISE, named here so that building the parser imports
    # no numpy (tests/core/test_cli_demo_noise.py keeps the two the same)
    demo.add_argument("--noise", choices=("scanner", "ideal"), default="scanner",
                      help="scanner (default): reference SNR 25, 1e13 19F atoms per cell, realistic dR1 noise (compare "
                           "the count intervals with truth.json); ideal: the 19F and Gd noise far below a scanner's "
                           "(the counts match truth.json within 1-2 %%)")
    demo.add_argument("--unregistered", action="store_true",
                      help="leave the sessions unregistered (no transforms: the later timepoints' numbers are then "
                           "wrong until `viewer register`; truth.json holds the true transforms)")
    demo.add_argument("--dicom", action="store_true",
                      help="also write the demo as a DICOM exam in OUT/exam (try: viewer import OUT/exam -o STUDY)")

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
    render.add_argument("--protocol", metavar="NAME",
                        help="display protocol: which layers show (cell tracking, viability, PET, perfusion, all; "
                             "default: cell tracking when there is a 19F map)")
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
    report.add_argument("--protocol", metavar="NAME", help="display protocol of the key images (as for render)")
    report.add_argument("--no-measurements", action="store_true",
                        help="leave out the rulers and ROIs saved in the study's workspace (study.workspace.json "
                             "beside the manifest); by default they are measured on every reported timepoint and "
                             "listed in its section. A missing or unreadable workspace means no measurements")

    register_ = commands.add_parser(
        "register", help="register every later timepoint to the first (or one image to its timepoint's anatomy) "
                         "and write the transforms into the manifest (PRODUCT.md §9)")
    register_.add_argument("study", type=Path, help="study.toml or a folder holding one")
    register_.add_argument("--timepoint", metavar="LABEL", help="only this timepoint")
    register_.add_argument("--image", metavar="ROLE",
                           help="register this image (e.g. pet) to its timepoint's anatomy instead (image_transforms)")
    register_.add_argument("--method", choices=("rigid", "affine"), default="rigid",
                           help="rigid (6 parameters, default) or affine (12)")

    import_ = commands.add_parser("import", help="make a study from a DICOM exam or BIDS NIfTI folders (PRODUCT.md §8)")
    import_.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                         help="folders (searched recursively), DICOMDIR files, DICOM or BIDS NIfTI files")
    import_.add_argument("-o", "--output", required=True, type=Path, metavar="STUDY_DIR", help="study folder to create")
    import_.add_argument("--day0", metavar="YYYY-MM-DD", help="date of day 0 (transplantation); default: the first date")
    import_.add_argument("--dry-run", action="store_true", help="print the series table and the manifest; write nothing")
    import_.add_argument("--patient", metavar="ID", help="the patient to import when the exam holds several")
    import_.add_argument("--role", action="append", default=[], metavar="SERIES=ROLE",
                         help="set a series' role (SERIES: SeriesNumber, SeriesInstanceUID or NIfTI file name; "
                              "ROLE: anatomical, fluorine, spio, gd, pet, sodium, adc, tmax or skip); repeatable")
    import_.add_argument("--link", action="store_true",
                         help="hard-link the files instead of copying (copies where linking is impossible)")
    import_.add_argument("--overwrite", action="store_true", help="replace STUDY_DIR if it exists and is not empty")
    import_.add_argument("--id", dest="study_id", metavar="ID", help="study id (default: the STUDY_DIR name)")

    export = commands.add_parser(
        "export-dicom", help="write the results as DICOM: per timepoint a Segmentation of the regions, a TID 1500 "
                             "measurement report and the PDF report (PRODUCT.md §8), ready for `viewer pacs send`")
    export.add_argument("study", type=Path, help="study.toml or a folder holding one")
    export.add_argument("-o", "--output", required=True, type=Path, metavar="DIR",
                        help="folder to create (it must not exist or be empty; it appears only when complete)")
    export.add_argument("--timepoint", metavar="LABEL", help="only this timepoint (default: every timepoint)")
    export.add_argument("--deidentify", action="store_true",
                        help="PS3.15 Basic Application Level Confidentiality Profile: a pseudonym for the patient, "
                             "new UIDs, dates moved to 1900-01-01 + day, the anatomy written anew, the report "
                             "de-identified")

    from viewer.pacs_cli import add_pacs_commands

    add_pacs_commands(commands, _Parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``viewer`` console script and ``python -m viewer`` (``argv`` None: the
    process's own command line; a list when called in-process, by tests)."""
    if os.environ.get("VIEWER_DEBUG"):
        code = _run(argv)
    else:
        with warnings.catch_warnings(), _quiet_logging():
            # Library warnings (pydicom on a scanner's non-conforming values, numba, matplotlib)
            # are not the user's to act on and never reach the terminal (PRODUCT.md §7).
            warnings.simplefilter("ignore")
            code = _run(argv)
    if argv is None:
        _end_now_if_a_run_was_abandoned(code)
    return code


def _end_now_if_a_run_was_abandoned(code: int) -> None:
    """End the process with ``code`` at once, output flushed, when a model run abandoned after
    its time budget still computes (:func:`viewer.core.predict.model.runs_abandoned`): the
    interpreter's normal end would destroy onnxruntime under it and abort. Only for the
    process's own command line: an in-process caller keeps its process."""
    model = sys.modules.get("viewer.core.predict.model")  # not imported: no model ran
    if model is None or not model.runs_abandoned():
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def skip_final_collection() -> None:
    """Freeze every object at exit, so the interpreter's last garbage collection does not walk
    them: a one-shot command (render, stats, report, ...) ends ~70 ms sooner (the collection
    after ``import numpy, nibabel`` alone traverses the hundreds of thousands of objects the
    imports made, pydicom's dictionaries most: 89 ms before exit, 16 ms frozen; issue 19).

    Registered at exit, not called now: objects the command makes and drops are still
    collected while it runs (``main`` is also called in-process by tests, which must not keep
    their garbage). Nothing of the viewer relies on a finalizer at exit: outputs are written,
    flushed and renamed before the command returns. Not for the window (Qt's objects are
    destroyed in their own order as the interpreter ends)."""
    atexit.unregister(gc.freeze)  # once, however often main runs in one process
    atexit.register(gc.freeze)


class _quiet_logging:
    """Library log records never reach the terminal while a command runs: nibabel installs
    its own stderr handler ("sizeof_hdr should be 348; set sizeof_hdr to 348" for a header it
    repairs), others fall back to :data:`logging.lastResort` (matplotlib's font warnings).
    The viewer itself does not log; every message a user needs is its result or its one
    ``error:`` line. The previous logging state is restored afterwards (``main`` is also
    called in-process, by tests)."""

    def __enter__(self) -> None:
        self.previous = logging.root.manager.disable
        logging.disable(logging.CRITICAL)

    def __exit__(self, *exc_info: object) -> None:
        logging.disable(self.previous)


def _run(argv: Sequence[str] | None) -> int:
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        if args.command not in (None, "open"):
            skip_final_collection()  # a one-shot command, not the window
        if args.command is None:
            return _cmd_gui(args)
        if args.command == "pacs":
            from viewer.pacs_cli import run_pacs

            return run_pacs(args)
        handler = {"demo": _cmd_demo, "render": _cmd_render, "stats": _cmd_stats, "report": _cmd_report,
                   "open": _cmd_gui, "import": _cmd_import, "register": _cmd_register,
                   "export-dicom": _cmd_export_dicom}[args.command]
        return handler(args)
    except ViewerError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted")
    except MemoryError:
        # a user can provoke this with a big enough input: say what ran out, not "unexpected"
        if os.environ.get("VIEWER_DEBUG"):
            raise
        return _fail(f"{_subject(args)}: not enough memory to {_doing(args)} (the input is too large for this machine)")
    except BrokenPipeError:
        # standard output closed early (`viewer stats S | head -1`): not an error of the study
        _silence_stdout()
        return _fail("standard output was closed before everything was written")
    except OSError as exc:
        # a file that vanished or cannot be read while a command runs: name it, one line
        if os.environ.get("VIEWER_DEBUG"):
            raise
        name = exc.filename if exc.filename is not None else _subject(args)
        return _fail(f"{os.fsdecode(name)}: {exc.strerror or type(exc).__name__}")
    except Exception as exc:  # a bug: still one line, traceback only on request
        if os.environ.get("VIEWER_DEBUG"):
            raise
        return _fail(f"{_subject(args)}: unexpected {type(exc).__name__}: {exc} (set VIEWER_DEBUG=1 for details)")


def _fail(message: str) -> int:
    """Print ``error: <message>`` as one line (control characters escaped) and return 2."""
    print(f"error: {one_line(message)}", file=sys.stderr)
    return EXIT_USAGE


def _subject(args: argparse.Namespace | None) -> str:
    """What a command worked on, for messages that have no file of their own."""
    study = getattr(args, "study", None)
    if study is not None:
        return str(study)
    paths = getattr(args, "paths", None)
    if paths:
        return ", ".join(str(p) for p in paths)
    return "viewer"


def _doing(args: argparse.Namespace | None) -> str:
    command = getattr(args, "command", None)
    return {"stats": "compute its statistics", "render": "render it", "report": "write its report",
            "import": "import it", "demo": "write the demo", "register": "register it",
            "export-dicom": "export it as DICOM"}.get(command or "", "open it")


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush
    does not print a second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _print_output(path: Path, in_place: bool) -> None:
    """Print the written file's path, unless the output was written in place (a device or a
    FIFO such as /dev/stdout, where the path would be mixed into the output itself)."""
    if not in_place:
        print(path)


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
    from viewer.core.demo_exam import EXAM_FOLDER

    progress = _TerminalProgress(sys.stderr) if sys.stderr.isatty() else None
    try:
        manifest = write_demo_study(args.out, seed=args.seed, overwrite=args.overwrite, dicom_exam=args.dicom,
                                    registered=not args.unregistered, noise=args.noise,
                                    progress=progress or (lambda stage, done, total: None))
    finally:
        if progress is not None:
            progress.close()
    print(manifest)
    if args.dicom:
        print(manifest.parent / EXAM_FOLDER)
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from viewer.core.io.atomic import check_output, write_text_atomic
    from viewer.core.io.study import open_path
    from viewer.core.analysis import compute_study_stats

    target = check_output(args.output) if args.output is not None else None
    study = open_path(args.study)
    stats = compute_study_stats(study, args.timepoint)
    text = stats.to_json() if args.format == "json" else stats.to_csv()
    if target is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_text_atomic(args.output, text)
        _print_output(args.output, target.in_place)
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from viewer.core.io.atomic import check_output
    from viewer.core.io.labels import saved_label_table
    from viewer.core.io.levels_cache import open_levels_cache
    from viewer.core.io.study import load_timepoint, open_path
    from viewer.core.layers import build_layers, default_focus, parse_point
    from viewer.core.protocols import default_protocol, protocol
    from viewer.core.render import render_view

    if args.output.suffix.lower() != ".png":
        raise ViewerError(f"{args.output}: the output must be a .png file")
    target = check_output(args.output)
    study = open_path(args.study)
    timepoint = study.timepoint(args.timepoint) if args.timepoint else study.timepoints[0]
    chosen = protocol(args.protocol) if args.protocol else default_protocol(timepoint.images)  # a bad name fails first
    # the voxels of the layers drawn (the ¹⁹F map's levels leave out its calibration regions), and
    # of the ¹⁹F map and regions the focus comes from; the other images' headers are checked only
    drawn = {"anatomical", *chosen.shown}
    needed = drawn | ({"fluorine", "regions"} if not args.at or "fluorine" in drawn else set())
    volumes = load_timepoint(study, timepoint, voxels_of=needed)
    table = saved_label_table(timepoint)
    cache = open_levels_cache()  # default levels and the focus need every voxel: once per file
    if args.at:
        try:
            point = parse_point(args.at)
        except ValueError as exc:
            raise ViewerError(f"--at: {exc}") from None
    else:
        point = default_focus(volumes, table.names, cache)
    layers = build_layers(volumes, table, protocol=chosen, cache=cache)
    title = f"{study.id} · {timepoint.label}"
    path = render_view(layers, args.view, point, args.output, radiological=not args.neurological, title=title)
    _print_output(path, target.in_place)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from viewer.core.io.atomic import check_output
    from viewer.core.layers import parse_point
    from viewer.core.report import ReportOptions, report_from_study

    if args.output.suffix.lower() != ".pdf":
        raise ViewerError(f"{args.output}: the output must be a .pdf file")
    target = check_output(args.output)
    point = None
    if args.at:
        try:
            point = parse_point(args.at)
        except ValueError as exc:
            raise ViewerError(f"--at: {exc}") from None
    if args.protocol:
        from viewer.core.protocols import protocol

        protocol(args.protocol)  # a bad name fails before anything is loaded
    measurements, problem = ((), None) if args.no_measurements else _saved_measurements(args.study)
    from viewer.core.io.levels_cache import open_levels_cache

    options = ReportOptions(deidentify=args.deidentify, reviewer=args.reviewer, focus=point,
                            radiological=not args.neurological, protocol=args.protocol, measurements=measurements,
                            levels_cache=open_levels_cache())
    _print_output(report_from_study(args.study, args.output, options, args.timepoint), target.in_place)
    if problem:  # after the report: a failure still prints its one error line alone
        print(f"note: {one_line(problem)}; the report has no measurements", file=sys.stderr)
    return 0


def _cmd_export_dicom(args: argparse.Namespace) -> int:
    from viewer.core.dicom_export.export import export_dicom

    progress = _TerminalProgress(sys.stderr) if sys.stderr.isatty() else None
    try:
        exported = export_dicom(args.study, args.output, args.timepoint, args.deidentify, progress)
    finally:
        if progress is not None:
            progress.close()
    for item in exported:
        objects = [name.split("/", 1)[1] for name in item.files if "/anatomy/" not in name]
        anatomy = sum("/anatomy/" in name for name in item.files)
        written = ", ".join(objects) + (f", anatomy series ({anatomy} files)" if anatomy else "")
        print(f"{item.label}: {args.output / item.folder}: {written} (study {item.study_uid})")
        for note in item.notes:
            print(f"note: {note}", file=sys.stderr)
    return 0


def _saved_measurements(study: Path) -> tuple[tuple, str | None]:
    """(measurements, problem): the rulers and ROIs of the study's workspace (beside its
    manifest). A workspace is a convenience, never the study's data: none, or one that cannot
    be used (then ``problem`` says why, in one line), means no measurements, and the report is
    written all the same."""
    from viewer.core.io.study import MANIFEST_NAME
    from viewer.core.workspace import read_workspace

    manifest = study / MANIFEST_NAME if study.is_dir() else study
    if manifest.suffix.lower() != ".toml":
        return (), None
    workspace, problem = read_workspace(manifest)
    return (tuple(workspace.measurements) if workspace is not None else ()), problem


def _cmd_register(args: argparse.Namespace) -> int:
    from viewer.core.io.study import open_path
    from viewer.core.study_registration import register_study

    study = open_path(args.study)
    if study.manifest is None:
        raise ViewerError(f"{args.study}: registration writes into a study's manifest: give its study.toml")
    progress = _TerminalProgress(sys.stderr) if sys.stderr.isatty() else None
    try:
        items = register_study(study.manifest, args.timepoint, args.image, args.method,
                               progress=progress or (lambda stage, done, total: None))
    finally:
        if progress is not None:
            progress.close()
    for item in items:
        print(item.line())
    return 0 if all(item.written for item in items) else 1


def _cmd_import(args: argparse.Namespace) -> int:
    """Scan, plan, print the table; then write the study (or, with --dry-run, its manifest)."""
    from viewer.core.importer import (
        check_output,
        default_study_id,
        format_table,
        manifest_text,
        plan_import,
        scan_exam,
        write_study,
    )

    day0 = _parse_day0(args.day0)
    check_output(args.output, tuple(args.paths), args.overwrite)
    progress = _TerminalProgress(sys.stderr) if sys.stderr.isatty() else None
    try:
        exam = scan_exam(args.paths, progress)
        overrides = _role_overrides(exam, args.role)
        plan = plan_import(exam, overrides, day0=day0, patient=args.patient)
        sys.stdout.write(format_table(plan))
        plan.require_writable()
        study_id = args.study_id or default_study_id(args.output)
        if args.dry_run:
            sys.stdout.write(f"\n# {args.output / 'study.toml'} (dry run: nothing written)\n")
            sys.stdout.write(manifest_text(plan, study_id))
            return 0
        manifest = write_study(plan, args.output, study_id=study_id, link=args.link, overwrite=args.overwrite,
                               progress=progress)
    finally:
        if progress is not None:
            progress.close()
    images = sum(len(tp.images) for tp in plan.timepoints)
    print(f"wrote {manifest} ({len(plan.timepoints)} timepoints, {images} images)")
    return 0


def _parse_day0(text: str | None) -> date | None:
    """``--day0`` as a date (one ``error:`` line when it is not YYYY-MM-DD)."""
    from datetime import date

    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ViewerError(f"--day0: expected a date YYYY-MM-DD, got {text!r}") from None


def _role_overrides(exam: Exam, pairs: Sequence[str]) -> dict[str, str | None]:
    """``--role SERIES=ROLE`` options as the plan's overrides (``skip`` leaves a series out)."""
    from viewer.core.importer import IMPORT_ROLES, resolve_series

    overrides: dict[str, str | None] = {}
    for pair in pairs:
        key, sep, role = pair.partition("=")
        role = role.strip()
        if not sep or not key.strip() or role not in (*IMPORT_ROLES, "skip"):
            raise ViewerError(f"--role {pair!r}: expected SERIES=ROLE with ROLE one of {', '.join(IMPORT_ROLES)} or skip")
        try:
            entry_id = resolve_series(exam, key.strip())
        except ViewerError as exc:
            raise ViewerError(f"--role {pair}: {exc}") from None
        overrides[entry_id] = None if role == "skip" else role
    return overrides


class _TerminalProgress:
    """A one-line progress bar on a terminal: "scanning [#####.....] 512/1000"; redrawn at
    most 10 times a second so a fast scan is not slowed by the terminal."""

    WIDTH = 30

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.last = 0.0
        self.shown = False

    def __call__(self, stage: str, done: int, total: int) -> None:
        import time

        now = time.monotonic()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        filled = int(self.WIDTH * done / total) if total else self.WIDTH
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.stream.write(f"\r\033[K{stage:<9} [{bar}] {done}/{total}")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


if __name__ == "__main__":
    sys.exit(main())
