"""Benchmark: `viewer import` on a 1,000-file exam, against reading the same headers with pydicom.

The exam (written once into a temporary folder): five series of 200 slices of 64×64 — a T1,
a T2, ¹⁹F, ²³Na and PET — one patient, one date. Timed, as medians of ``--runs`` runs:

- floor: ``pydicom.dcmread(path, stop_before_pixels=True)`` over every file (the least any
  importer that reads the headers must do);
- dry run: what ``viewer import --dry-run`` does through the API (scan, checks of every
  proposed series' geometry and SUV, plan, table, manifest text);
- import: the same plus copying the 1,000 files (made durable by one syncfs) and writing the
  manifest, and the same with ``--link`` (hard links); the copying import is also compared
  with a second floor that reads every header *and* copies every file;
- and, to show where the dry run's time goes, its steps cumulatively: the header scan
  (``scan_series``), the header-only geometry check (``series_geometry``), the PET SUV check
  and role rules (``scan_exam``), and the plan, table and manifest text.

Budget (issue "viewer import"): the dry run ≥ 0.5× the floor's files/s.

Usage: python benchmarks/bench_import.py [--runs 5] [--slices 200] [--size 64]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid
from timing import median_ms  # benchmarks/ is on sys.path when run as a script

from viewer.core.importer import (
    format_table,
    manifest_text,
    plan_import,
    scan_exam,
    write_study,
)
from viewer.core.io.dicom import series_geometry
from viewer.core.io.dicom_scan import scan_series
from viewer.core.io.dicom_write import PetTags, write_dicom_series
from viewer.core.volume import Volume

SERIES = (  # description, modality, ImagedNucleus
    ("T1 MPRAGE", "MR", "1H"),
    ("T2 FLAIR", "MR", "1H"),
    ("CSI fluorine", "MR", "19F"),
    ("sodium UTE", "MR", "23NA"),
    ("PET AC", "PT", ""),
)


def build_exam(folder: Path, slices: int, size: int) -> list[Path]:
    """Five series of ``slices`` × ``size``² (module docstring); returns every file."""
    rng = np.random.default_rng(0)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    files: list[Path] = []
    study_uid = generate_uid()
    for number, (description, modality, nucleus) in enumerate(SERIES, start=1):
        data = (rng.random((size, size, slices)) * 100 + 1).astype(np.float32)
        pet = None
        if modality == "PT":
            pet = PetTags(weight_kg=70.0, dose_bq=3.7e8, injection=datetime(2026, 3, 2, 10),
                          series=datetime(2026, 3, 2, 11))
        written = write_dicom_series(Volume.from_array(data, affine), folder / f"s{number}", modality=modality,
                                     series_description=description, pet=pet, patient_name="Bench^Mark",
                                     patient_id="B-1", study_date="20260302", shuffle_seed=number)
        for path in written:
            ds = pydicom.dcmread(path)
            ds.SeriesNumber, ds.StudyInstanceUID = number, study_uid
            if nucleus:
                ds.ImagedNucleus = nucleus
            ds.save_as(path)
        files.extend(written)
    return files


def floor(files: list[Path]) -> None:
    for path in files:
        pydicom.dcmread(path, stop_before_pixels=True)


def floor_with_copy(files: list[Path], target: Path) -> None:
    """The least an importer that copies must do: read every header, copy every file, make the
    copies durable (one syncfs, as the importer does)."""
    from viewer.core.io.atomic import flush_files

    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    copies = []
    for index, path in enumerate(files):
        pydicom.dcmread(path, stop_before_pixels=True)
        copy = target / f"{index:05d}"
        shutil.copyfile(path, copy)
        copies.append(copy)
    flush_files(target, copies)


def dry_run(folder: Path) -> None:
    plan = plan_import(scan_exam([folder]))
    plan.require_writable()
    format_table(plan)
    manifest_text(plan, "bench")


def scan_only(folder: Path) -> None:
    scan_series([folder])


def scan_and_geometry(folder: Path) -> None:
    """A fresh scan each time: pydicom converts a tag's value on first access and keeps it, so
    checking already-checked headers again would time only the cached part."""
    for one in scan_series([folder]):
        series_geometry(folder, one)


def real_import(folder: Path, target: Path, link: bool = False) -> None:
    if target.exists():
        shutil.rmtree(target)
    write_study(plan_import(scan_exam([folder])), target, link=link)


def paired_increments(steps: list, runs: int) -> list[float]:
    """Median extra time (ms) of each cumulative step over the one before it, measured back to
    back within each run so that the load of a shared machine cancels in the differences."""
    increments: list[list[float]] = [[] for _ in steps]
    for _ in range(runs):
        previous = 0.0
        for index, step in enumerate(steps):
            total = median_ms(step, 1)
            increments[index].append(total - previous)
            previous = total
    return [statistics.median(values) for values in increments]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    runs = max(3, args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        exam, target = Path(tmp) / "exam", Path(tmp) / "study"
        files = build_exam(exam, args.slices, args.size)
        n = len(files)
        floor(files)  # warm the page cache for everyone
        print(f"exam: {len(SERIES)} series × {args.slices} slices of {args.size}×{args.size} = {n} files; "
              f"medians of {runs} runs")
        floor_ms = median_ms(lambda: floor(files), runs)
        dry_ms = median_ms(lambda: dry_run(exam), runs)
        import_ms = median_ms(lambda: real_import(exam, target), runs)
        link_ms = median_ms(lambda: real_import(exam, target, link=True), runs)
        copy_floor_ms = median_ms(lambda: floor_with_copy(files, Path(tmp) / "copies"), runs)
        floor_rate = n / floor_ms * 1000
        for name, ms in (("floor: dcmread(stop_before_pixels=True)", floor_ms),
                         ("viewer import --dry-run (API)", dry_ms),
                         ("viewer import (copy, one syncfs)", import_ms),
                         ("viewer import --link (hard links)", link_ms)):
            rate = n / ms * 1000
            print(f"{name:42s} {ms:8.0f} ms  {rate:7.0f} files/s  {rate / floor_rate:5.2f}× floor")
        copy_rate = n / copy_floor_ms * 1000
        print(f"{'copy floor: dcmread + copyfile + syncfs':42s} {copy_floor_ms:8.0f} ms  {copy_rate:7.0f} files/s  "
              f"import (copy) = {copy_floor_ms / import_ms:4.2f}× this floor")
        steps = {  # cumulative: each step includes the ones above it
            "scan_series (find files, read headers, group)": lambda: scan_only(exam),
            "+ series_geometry of every proposed series": lambda: scan_and_geometry(exam),
            "+ SUV check of the PET, facts, role rules (scan_exam)": lambda: scan_exam([exam]),
            "+ plan, table, manifest text (the dry run)": lambda: dry_run(exam),
        }
        print("where the dry run's time goes (steps timed back to back in each run, medians of the increments):")
        for name, increment in zip(steps, paired_increments(list(steps.values()), runs)):
            print(f"  {name:56s} +{increment:5.0f} ms = {increment / floor_ms:4.2f}× the floor's time")
        verdict = "meets" if floor_ms / dry_ms >= 0.5 else "MISSES"
        print(f"dry run / floor = {floor_ms / dry_ms:.2f}× ({verdict} the ≥ 0.5× budget)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
