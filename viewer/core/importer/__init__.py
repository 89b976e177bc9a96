"""Exam import (PRODUCT.md §8): DICOM exams and BIDS NIfTI folders into a study.

The four steps, each usable on its own by the command line and by a series browser:

1. :func:`scan_exam` (paths, progress, cancel) → :class:`Exam`: every series with the role its
   tags propose or the reason it is skipped (:mod:`.roles` holds the rules table).
2. :func:`plan_import` (exam, per-series role overrides, day0, patient) → :class:`ImportPlan`:
   timepoints, the series kept per role and why every other series is not (:mod:`.plan`).
3. :func:`plan_rows` / :func:`format_table`: the plan as a table (:mod:`.table`).
4. :func:`write_study` (plan, folder, link, overwrite, progress, cancel): the study, atomically
   (:mod:`.write`).

No Qt here: the window runs these steps on a worker thread and shows the same rows.
"""

from viewer.core.importer.entries import Exam, PatientFacts, SeriesEntry, VolumeGeometry
from viewer.core.importer.exam import CancelCheck, ImportProgress, scan_exam
from viewer.core.importer.plan import (
    Decision,
    ImportPlan,
    PlannedImage,
    PlannedTimepoint,
    plan_import,
    resolve_series,
)
from viewer.core.importer.roles import IMPORT_ROLES, RoleGuess, SeriesFacts, guess_role
from viewer.core.importer.table import PlanRow, format_table, plan_rows
from viewer.core.importer.write import (
    ImportCancelled,
    check_output,
    default_study_id,
    manifest_data,
    manifest_text,
    write_study,
)
from viewer.core.io.dicom_scan import ScanCancelled

__all__ = [
    "IMPORT_ROLES",
    "CancelCheck",
    "Decision",
    "Exam",
    "ImportCancelled",
    "ImportPlan",
    "ImportProgress",
    "PatientFacts",
    "PlanRow",
    "PlannedImage",
    "PlannedTimepoint",
    "RoleGuess",
    "ScanCancelled",
    "SeriesEntry",
    "SeriesFacts",
    "VolumeGeometry",
    "check_output",
    "default_study_id",
    "format_table",
    "guess_role",
    "manifest_data",
    "manifest_text",
    "plan_import",
    "plan_rows",
    "resolve_series",
    "scan_exam",
    "write_study",
]
