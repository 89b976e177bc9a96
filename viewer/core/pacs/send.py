"""Sending DICOM files to a PACS node (PRODUCT.md §8): STOW-RS through dicomweb-client, or
C-STORE through pynetdicom. Every file is read and checked before anything is sent, so a
folder holding a file that is not DICOM is refused whole instead of half sent."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, NamedTuple

from viewer.core.errors import Cancelled, ViewerError, file_error
from viewer.core.pacs.nodes import Node

Progress = Callable[[str, int, int], None]
#: Returns True when the user asked to stop (asked before every STOW-RS batch or C-STORE).
ShouldCancel = Callable[[], bool]
#: Instances per STOW-RS request (bounds the request's size and memory).
STOW_BATCH = 32
#: C-STORE statuses that mean stored, with a warning (PS3.4 B.2.3).
STORE_WARNINGS = (0xB000, 0xB006, 0xB007)


class Outgoing(NamedTuple):
    """A file to send, with what a C-STORE association must offer for it."""

    path: Path
    sop_class: str
    transfer_syntax: str


def dicom_files(paths: Iterable[str | Path]) -> list[Outgoing]:
    """Every file under ``paths`` (folders searched recursively), each checked to be a DICOM
    Part 10 file with a SOP instance; text files beside them (README.txt) are left out."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    paths = [Path(p) for p in paths]
    found: list[Outgoing] = []
    for path in paths:
        if not path.exists():
            raise file_error(path, "not found")
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for candidate in candidates:
            if candidate.suffix.lower() in (".txt", ".md", ".json", ".toml") or candidate.name == "DICOMDIR":
                continue
            try:
                header = dcmread(candidate, stop_before_pixels=True, specific_tags=["SOPInstanceUID", "SOPClassUID"])
            except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
                raise file_error(candidate, f"is not a DICOM file to send ({type(exc).__name__}); nothing was sent") \
                    from None
            if "SOPInstanceUID" not in header or "SOPClassUID" not in header:
                raise file_error(candidate, "has no SOPInstanceUID or SOPClassUID; nothing was sent")
            syntax = header.file_meta.get("TransferSyntaxUID") or "1.2.840.10008.1.2"  # none: implicit VR
            found.append(Outgoing(candidate, str(header.SOPClassUID), str(syntax)))
    if not found:
        raise ViewerError(f"no DICOM file under {', '.join(map(str, paths))}; nothing to send")
    return found


class SendCancelled(Cancelled):
    """The user stopped a send; what was stored before stays on the node (a PACS cannot be
    asked to forget), and the message says how many."""


def send(node: Node, paths: Iterable[str | Path], via: str = "dicomweb", progress: Progress | None = None,
         should_cancel: ShouldCancel | None = None) -> int:
    """Send every DICOM file under ``paths``; returns how many were stored.

    Raises:
        SendCancelled: ``should_cancel`` turned True; the files stored before are named by count.
        ViewerError: a file is not DICOM (nothing sent), or the node refused or failed.
    """
    files = dicom_files(paths)
    report = progress or (lambda stage, done, total: None)
    cancelled = should_cancel or (lambda: False)

    def check(done: int) -> None:
        if cancelled():
            raise SendCancelled(f"sending cancelled; {done} of {len(files)} instances were stored on "
                                f"'{node.name}' before")

    report("send", 0, len(files))
    if via == "dicomweb":
        _send_stow(node, files, report, check)
    else:
        _send_c_store(node, files, report, check)
    return len(files)


def _send_stow(node: Node, files: list[Outgoing], report: Progress, check: Callable[[int], None]) -> None:
    from pydicom import dcmread

    from viewer.core.pacs.dicomweb import client, talking_to

    web = client(node)
    with talking_to(node, "a store (STOW-RS)"):
        for start in range(0, len(files), STOW_BATCH):
            check(start)
            batch = files[start:start + STOW_BATCH]
            answer = web.store_instances([dcmread(file.path) for file in batch])
            failed = answer.get("00081198", {}).get("Value") if answer is not None else None
            if failed:
                raise ViewerError(f"PACS node '{node.name}' refused {len(failed)} of {len(batch)} instances "
                                  f"(from {batch[0].path} on); {start} were stored before")
            report("send", start + len(batch), len(files))


def _send_c_store(node: Node, files: list[Outgoing], report: Progress, check: Callable[[int], None]) -> None:
    from pydicom import dcmread

    from viewer.core.pacs.dimse import association, check_status

    contexts: dict[str, set[str]] = {}
    for file in files:
        contexts.setdefault(file.sop_class, set()).add(file.transfer_syntax)
    if len(contexts) > 128:
        raise ViewerError(f"the files hold {len(contexts)} kinds of DICOM object; one association offers at most 128")
    # each stored kind of object in the transfer syntaxes the files are in (nothing is transcoded)
    requested = [(sop, sorted(syntaxes)) for sop, syntaxes in sorted(contexts.items())]
    with association(node, requested) as assoc:
        for done, file in enumerate(files, start=1):
            check(done - 1)
            status = assoc.send_c_store(dcmread(file.path))
            if status is not None and "Status" in status and int(status.Status) in STORE_WARNINGS:
                report("send", done, len(files))  # stored, with a warning (e.g. elements coerced)
                continue
            try:
                check_status(node, "C-STORE", status)
            except ViewerError as exc:
                raise ViewerError(f"{file.path}: {exc}; {done - 1} were stored before") from None
            report("send", done, len(files))
