"""Every number the product reports, declared once: key, name, units, description.

3D Slicer's SegmentStatistics habit: a measurement declares itself, and the CSV header, the
window's region table and the PDF report read these declarations instead of hard-coding
column titles. The keys are exactly the output schema of PRODUCT.md §3.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Measure:
    """One reported quantity.

    Attributes:
        key: JSON/CSV key (PRODUCT.md §3 schema).
        name: short column title for tables and reports.
        units: units shown after the name ("" when dimensionless or not a number).
        description: one line saying what it is and how it is obtained.
        kind: "int", "float", "bool", "text", "object", or "interval" (a display column joining
            the keys ``KEY_low`` and ``KEY_high``: :func:`display_value`).
        digits: significant digits shown in tables (floats only).
    """

    key: str
    name: str
    units: str
    description: str
    kind: str = "float"
    digits: int = 3

    @property
    def title(self) -> str:
        """Column title with units, e.g. "SUVpeak (SUV)"."""
        return f"{self.name} ({self.units})" if self.units else self.name

    def format(self, value: Any) -> str:
        """Human text for a table cell; "—" for a value that could not be computed."""
        if value is None:
            return "—"
        if self.kind == "interval":
            low, high = value
            return f"{format_number(float(low), self.digits)}–{format_number(float(high), self.digits)}"
        if self.kind == "bool":
            return "yes" if value else "no"
        if self.kind == "int":
            return f"{int(value):d}"
        if self.kind == "float":
            return format_number(float(value), self.digits)
        return str(value)


def plain_value(value: Any) -> Any:
    """A reported value as a plain Python scalar: numpy scalars to bool/int/float, NaN/inf → None.

    A non-finite number means "could not be computed", exactly like None (JSON ``null``, "—" in
    tables). Used by the JSON/CSV output, the window's table and the report alike.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def format_number(value: float, digits: int = 3) -> str:
    """Significant-digit formatting without scientific notation for everyday magnitudes."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10 ** digits:
        return f"{value:,.0f}"
    if magnitude >= 1e-3:
        decimals = max(0, digits - 1 - int(f"{magnitude:e}".split("e")[1]))
        return f"{value:.{decimals}f}"
    return f"{value:.{digits - 1}e}"


TIMEPOINT_MEASURES: tuple[Measure, ...] = (
    Measure("label", "Timepoint", "", "Timepoint label from the manifest.", "text"),
    Measure("day", "Day", "days", "Days after transplantation.", "float", 3),
    Measure(
        "detection_limit_cells_per_mm3", "Detection limit", "cells/mm³",
        "Smallest detectable ¹⁹F cell density: detection SNR × noise σ / reference signal × "
        "reference fluorine per voxel / fluorine per cell / voxel volume.",
    ),
)

REGION_MEASURES: tuple[Measure, ...] = (
    Measure("label", "Label", "", "Integer label of the region in the label map.", "int"),
    Measure("name", "Region", "", "Region name from the manifest (\"label N\" when unnamed).", "text"),
    Measure("volume_ml", "Volume", "mL", "Region volume: voxel count × voxel volume on the label map's own grid."),
    Measure(
        "fluorine_cells", "¹⁹F cells", "cells",
        "All labelled cells (live and dead) from ¹⁹F: noise-bias-corrected signal of detected voxels "
        "(SNR threshold, cluster size) calibrated against the reference tube.", "float", 3,
    ),
    Measure(
        "fluorine_cells_ci95_low", "¹⁹F cells, 95 % low", "cells",
        "Lower end of the 95 % interval of the true ¹⁹F cell count: the signal lost under the detection "
        "threshold restored by a fitted graft model, with the noise of the voxels, the reference and σ "
        "(docs/fluorine_intervals.md).", "float", 3,
    ),
    Measure(
        "fluorine_cells_ci95_high", "¹⁹F cells, 95 % high", "cells",
        "Upper end of the 95 % interval of the true ¹⁹F cell count (a region with nothing detected: an "
        "upper bound on what could hide there, however spread).", "float", 3,
    ),
    Measure("cells_per_mm3", "Cell density", "cells/mm³", "¹⁹F cells divided by the region volume."),
    Measure("below_detection", "Below detection", "", "No ¹⁹F voxel of the region passed the detection threshold.", "bool"),
    Measure(
        "dead_cells", "Dead cells", "cells",
        "Cells whose gadolinium was released: Σ ΔR1 over the region / r1 × voxel volume / Gd per cell.",
    ),
    Measure("live_cells", "Live cells", "cells", "Total cells (¹⁹F, or SPIO iron without ¹⁹F) minus dead cells, at least 0."),
    Measure("dead_fraction", "Dead fraction", "", "Dead cells / total cells.", "float", 2),
    Measure("rejection_alert", "Rejection alert", "", "Dead fraction at or above the alert threshold (graft rejection warning).", "bool"),
    Measure("suv_max", "SUVmax", "SUV", "Highest PET SUV in the region."),
    Measure("suv_mean", "SUVmean", "SUV", "Mean PET SUV over the region."),
    Measure("suv_peak", "SUVpeak", "SUV", "Highest mean SUV within a 12 mm sphere (≈ 1 cm³) centred anywhere in the region."),
    Measure("mtv_ml", "MTV", "mL", "Metabolic tumour volume: region voxels at ≥ 41 % of the region's SUVmax."),
    Measure("tlg", "TLG", "SUV·mL", "Total lesion glycolysis: SUVmean within the MTV × MTV."),
    Measure("sodium_mean_mM", "TSC", "mM", "Mean tissue sodium concentration over the region."),
    Measure(
        "homing_fraction", "Homing", "", "Share of all ¹⁹F-counted cells of the timepoint that lie in this region.",
        "float", 2,
    ),
    Measure("prediction", "Prediction", "", "Model predictions for the region (model, version, value, interval, out-of-range flag).", "object"),
)

REGION_KEYS: tuple[str, ...] = tuple(m.key for m in REGION_MEASURES)

#: The ¹⁹F interval as tables show it: one "low–high" column instead of the schema's two.
FLUORINE_INTERVAL = Measure(
    "fluorine_cells_ci95", "¹⁹F cells, 95 % interval", "cells",
    "95 % interval of the true ¹⁹F cell count: the signal lost under the detection threshold restored by a "
    "fitted graft model, with the noise of the voxels, the reference and σ (docs/fluorine_intervals.md); "
    "a region with nothing detected: 0 to an upper bound on what could hide there, however spread.",
    "interval", 3,
)


def table_measures(measures: Sequence[Measure]) -> tuple[Measure, ...]:
    """``measures`` as tables show them: the interval's two keys as one FLUORINE_INTERVAL column
    where the low one stood."""
    out: list[Measure] = []
    for measure in measures:
        if measure.key == "fluorine_cells_ci95_low":
            out.append(FLUORINE_INTERVAL)
        elif measure.key != "fluorine_cells_ci95_high":
            out.append(measure)
    return tuple(out)


def display_value(values: Mapping[str, Any], measure: Measure) -> Any:
    """A region's value for a table column: (low, high) for an interval column (None when
    either end is missing), else the plain value."""
    if measure.kind == "interval":
        low, high = plain_value(values.get(f"{measure.key}_low")), plain_value(values.get(f"{measure.key}_high"))
        return None if low is None or high is None else (low, high)
    return plain_value(values.get(measure.key))
TIMEPOINT_KEYS: tuple[str, ...] = tuple(m.key for m in TIMEPOINT_MEASURES)

_BY_KEY = {m.key: m for m in REGION_MEASURES} | {f"timepoint.{m.key}": m for m in TIMEPOINT_MEASURES}


def region_measure(key: str) -> Measure:
    """The declaration of a per-region measure."""
    return _BY_KEY[key]


def timepoint_measure(key: str) -> Measure:
    """The declaration of a per-timepoint measure."""
    return _BY_KEY[f"timepoint.{key}"]
