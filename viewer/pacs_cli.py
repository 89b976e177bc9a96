"""``viewer pacs echo|find|get|send NODE …`` (PRODUCT.md §8): the command line over
:mod:`viewer.core.pacs`. Kept apart from :mod:`viewer.cli` so the other commands neither
parse nor import any of it beyond the argument definitions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PACS_HELP = "query a PACS and check it answers (nodes in pacs.toml: PRODUCT.md §8)"


def add_pacs_commands(commands, parser_class) -> None:
    """The ``pacs`` command and its sub-commands on the main parser's ``commands``."""
    pacs = commands.add_parser("pacs", help=PACS_HELP)
    actions = pacs.add_subparsers(dest="pacs_command", parser_class=parser_class, required=True)

    def with_node(name: str, help_text: str) -> argparse.ArgumentParser:
        action = actions.add_parser(name, help=help_text)
        action.add_argument("node", help="the node's name in pacs.toml ([node.NAME])")
        action.add_argument("--config", type=Path, metavar="FILE",
                            help="the nodes' file (default: $XDG_CONFIG_HOME/cell-therapy-viewer/pacs.toml)")
        action.add_argument("--via", choices=("dicomweb", "dimse"),
                            help="the protocol (default: DICOMweb when the node has it)")
        return action

    with_node("echo", "check that the node answers (C-ECHO and/or a DICOMweb study search)")
    find = with_node("find", "list the studies that match")
    find.add_argument("--patient-id", metavar="ID")
    find.add_argument("--patient-name", metavar="NAME", help="DICOM wildcards * and ? allowed")
    find.add_argument("--date", metavar="YYYYMMDD[-YYYYMMDD]", help="a study date or a range (either end open)")
    find.add_argument("--modality", metavar="M", help="a modality of the study's series (MR, PT, CT…)")
    find.add_argument("--format", choices=("table", "json"), default="table")
    get = with_node("get", "retrieve a study (or one series) into a new folder, ready for `viewer import`")
    get.add_argument("--study", required=True, metavar="UID", help="the StudyInstanceUID (from `viewer pacs find`)")
    get.add_argument("--series", metavar="UID", help="only this SeriesInstanceUID")
    get.add_argument("-o", "--output", required=True, type=Path, metavar="DIR",
                     help="folder to create (it must not exist or be empty; it appears only when complete)")
    send = with_node("send", "store DICOM files (or every DICOM file under folders) on the node")
    send.add_argument("paths", nargs="+", type=Path, metavar="PATH")


def run_pacs(args: argparse.Namespace) -> int:
    from viewer.core.pacs import operations
    from viewer.core.pacs.nodes import find_node, load_nodes
    from viewer.core.pacs.query import StudyQuery

    nodes = load_nodes(args.config)
    node = find_node(nodes, args.node, args.config)
    if args.pacs_command == "echo":
        for line in operations.echo(node, args.via):
            print(line)
        return 0
    if args.pacs_command == "get":
        return _get(node, args)
    if args.pacs_command == "send":
        return _send(node, args)
    query = StudyQuery(args.patient_id, args.patient_name, args.date, args.modality.upper() if args.modality else None)
    matches = operations.find(node, query, args.via)
    if args.format == "json":
        json.dump([m.as_json() for m in matches], sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        _print_table(matches)
    return 0


def _print_table(matches) -> None:
    header = ("study date", "patient ID", "patient name", "modalities", "series", "description", "study UID")
    rows = [(m.study_date, m.patient_id, m.patient_name, ",".join(m.modalities),
             "" if m.series_count is None else str(m.series_count), m.description, m.study_uid) for m in matches]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    print(f"{len(matches)} stud{'y' if len(matches) == 1 else 'ies'}")


def _with_progress(work):
    """``work(progress)`` with a terminal progress bar on stderr when it is a terminal."""
    from viewer.cli import _TerminalProgress

    progress = _TerminalProgress(sys.stderr) if sys.stderr.isatty() else None
    try:
        return work(progress)
    finally:
        if progress is not None:
            progress.close()


def _instances(count: int) -> str:
    return f"{count} instance{'s' if count != 1 else ''}"


def _get(node, args: argparse.Namespace) -> int:
    from viewer.core.pacs import operations
    from viewer.core.pacs.retrieve import get

    via = operations.choose_protocol(node, args.via)
    count = _with_progress(lambda progress: get(node, args.study, args.output, args.series, via, progress))
    print(f"{_instances(count)} retrieved into {args.output}")
    return 0


def _send(node, args: argparse.Namespace) -> int:
    from viewer.core.pacs import operations
    from viewer.core.pacs.send import send

    via = operations.choose_protocol(node, args.via)
    count = _with_progress(lambda progress: send(node, args.paths, via, progress))
    print(f"{_instances(count)} sent to {node.name}")
    return 0
