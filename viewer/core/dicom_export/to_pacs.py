"""File ▸ Export to PACS: the study's results exported as DICOM and sent to a node in one go.

The objects are exported into a private temporary folder (removed afterwards, whatever
happens), the kinds the user chose are picked from it, and they are sent; the study folder
never receives DICOM files it did not ask for.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection

from viewer.core.dicom_export.export import (
    ANATOMY_FOLDER,
    MEASUREMENTS_FILE,
    REPORT_FILE,
    SEGMENTATION_FILE,
    export_dicom,
)
from viewer.core.errors import ViewerError
from viewer.core.pacs.nodes import Node
from viewer.core.pacs.send import send

#: The kinds of exported object a user can choose, and the files that hold them.
KINDS = {
    "segmentation": "Regions (DICOM Segmentation)",
    "measurements": "Numbers (TID 1500 measurement report)",
    "report": "PDF report (Encapsulated PDF)",
    "anatomy": "Anatomy series (only when it is written: NIfTI or de-identified)",
}
_FILE_KIND = {SEGMENTATION_FILE: "segmentation", MEASUREMENTS_FILE: "measurements", REPORT_FILE: "report"}


@dataclass(frozen=True)
class SentResults:
    """What an export to a PACS stored: instance count per kind, the studies, the notes."""

    node: str
    counts: dict[str, int]
    study_uids: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def kind_of(relative: str) -> str:
    """The kind of one exported file from its path inside the export (``day-1/segmentation.dcm``)."""
    parts = Path(relative).parts
    return "anatomy" if ANATOMY_FOLDER in parts[:-1] else _FILE_KIND[parts[-1]]


def export_to_pacs(study_path: str | Path, node: Node, via: str, kinds: Collection[str],
                   timepoint_label: str | None = None, deidentify: bool = False,
                   progress: Callable[[str, int, int], None] | None = None,
                   should_cancel: Callable[[], bool] | None = None) -> SentResults:
    """Export the results of the saved study and send the chosen kinds to ``node``.

    Raises:
        ViewerError: no kind chosen, the export or the send failed (a send that fails or is
            cancelled halfway says how many instances were stored before).
    """
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ViewerError(f"choose what to send ({', '.join(KINDS)})" if not kinds else
                          f"unknown kinds of object: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="viewer-export-") as scratch:
        out = Path(scratch) / "export"
        exported = export_dicom(study_path, out, timepoint_label, deidentify, progress, should_cancel)
        chosen = [name for item in exported for name in item.files if kind_of(name) in kinds]
        if not chosen:
            raise ViewerError("the export holds none of the chosen objects (is there an anatomy series to send? "
                              "it is written only for NIfTI or de-identified studies)")
        send(node, [out / name for name in chosen], via, progress, should_cancel)
    counts = {kind: sum(kind_of(name) == kind for name in chosen) for kind in KINDS}
    return SentResults(node.name, {k: v for k, v in counts.items() if v}, tuple(i.study_uid for i in exported),
                       tuple(note for item in exported for note in item.notes))
