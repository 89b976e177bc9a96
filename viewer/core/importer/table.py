"""The per-series table of an import plan: rows for the series browser, text for the terminal.

Every series found is a row, imported or not, with its guessed role or the reason it is
skipped (PRODUCT.md §8): a radiologist checks that nothing expected is missing before the
study is written, so nothing is hidden, not even series without pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

from viewer.core.importer.plan import ImportPlan

COLUMNS = ("patient", "date", "modality", "nucleus", "series", "description", "images", "role", "why")
#: Longest description shown in the terminal table (the browser shows it whole).
DESCRIPTION_WIDTH = 32


@dataclass(frozen=True)
class PlanRow:
    """One series as the table shows it (text only, so any UI can show it as it is)."""

    entry_id: str
    patient: str
    date: str
    modality: str
    nucleus: str
    series: str
    description: str
    images: str
    role: str  # "anatomical → day 7", or "skipped"
    why: str

    def cells(self) -> tuple[str, ...]:
        return (self.patient, self.date, self.modality, self.nucleus, self.series, self.description, self.images,
                self.role, self.why)


def plan_rows(plan: ImportPlan) -> tuple[PlanRow, ...]:
    """A row per series of the exam, in the exam's order."""
    rows = []
    for entry in plan.exam.entries:
        decision = plan.decision(entry.entry_id)
        role = f"{decision.role} → {decision.timepoint}" if decision.role else "skipped"
        series = str(entry.series_number) if entry.series_number is not None else ("NIfTI" if entry.source == "nifti" else "")
        rows.append(PlanRow(
            entry_id=entry.entry_id, patient=entry.patient.describe() if entry.patient.named else "",
            date=entry.date.isoformat() if entry.date else (f"ses-{entry.session}" if entry.session else ""),
            modality=entry.modality, nucleus=entry.nucleus, series=series,
            description=entry.description if entry.source == "dicom" else entry.files[0].name,
            images=str(entry.n_images), role=role, why=decision.reason,
        ))
    return tuple(rows)


def format_table(plan: ImportPlan) -> str:
    """The rows as aligned plain text with a header line, then one line per timepoint."""
    rows = [COLUMNS] + [_clip(row.cells()) for row in plan_rows(plan)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
    lines.append("")
    for tp in plan.timepoints:
        when = f" ({tp.date.isoformat()})" if tp.date else ""
        roles = ", ".join(image.role for image in tp.images)
        lines.append(f"timepoint {tp.label}{when}: {roles}")
    if plan.day0 is not None:
        lines.append(f"day 0 = {plan.day0.isoformat()}" + ("" if plan.day0_given else " (the first date; set --day0)"))
    return "\n".join(lines).rstrip() + "\n"


def _clip(cells: tuple[str, ...]) -> tuple[str, ...]:
    description = cells[5]
    if len(description) > DESCRIPTION_WIDTH:
        description = description[: DESCRIPTION_WIDTH - 1] + "…"
    return cells[:5] + (description,) + cells[6:]


__all__ = ["COLUMNS", "PlanRow", "format_table", "plan_rows"]
