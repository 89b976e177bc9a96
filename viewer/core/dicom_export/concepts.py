"""The coded vocabulary of the exported measurement report (TID 1500): a concept name, a UCUM
unit and, where the standard has one, a derivation for every §3 number.

Standard codes are used wherever DICOM has them (PS3.16: Volume, SUV with Maximum / Mean /
Peak Value Within ROI, Metabolic Volume, Total Lesion Glycolysis); the cell counts, the ¹⁹F
interval, the viability numbers, the tissue sodium concentration and the homing fraction have
no standard concept, so they are coded in this application's private scheme :data:`SCHEME`
(PS3.16 8.2: a designator beginning "99" is a private scheme), declared in the report's Coding
Scheme Identification Sequence. Units are UCUM (case-sensitive codes: "mL", "{cells}").
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.sr.coding import Code

#: The private coding scheme of this application's concepts.
SCHEME = "99CTV"
SCHEME_NAME = "cell-therapy-viewer measurement concepts"

MILLILITER = Code("mL", "UCUM", "milliliter")
CELLS = Code("{cells}", "UCUM", "cells")
CELLS_PER_MM3 = Code("{cells}/mm3", "UCUM", "cells per cubic millimeter")
NO_UNITS = Code("1", "UCUM", "no units")
SUV_BW = Code("{SUVbw}g/ml", "UCUM", "Standardized Uptake Value body weight")
SUV_BW_ML = Code("{SUVbw}g", "UCUM", "Standardized Uptake Value body weight times milliliter")
MILLIMOLAR = Code("mmol/L", "UCUM", "millimole per liter")

VOLUME = Code("118565006", "SCT", "Volume")
SUV = Code("126400", "DCM", "Standardized Uptake Value")
MAXIMUM = Code("56851009", "SCT", "Maximum")
MEAN = Code("373098007", "SCT", "Mean")
PEAK = Code("126031", "DCM", "Peak Value Within ROI")
METABOLIC_VOLUME = Code("126032", "DCM", "Metabolic Volume")
TOTAL_LESION_GLYCOLYSIS = Code("126033", "DCM", "Total Lesion Glycolysis")
YES = Code("373066001", "SCT", "Yes")
NO = Code("373067005", "SCT", "No")

MRI = Code("113091000", "SCT", "Magnetic resonance imaging")
PET = Code("82918005", "SCT", "Positron emission tomography")
TISSUE = Code("85756007", "SCT", "Tissue")
PHYSICAL_OBJECT = Code("260787004", "SCT", "Physical object")


def _private(value: str, meaning: str) -> Code:
    return Code(value, SCHEME, meaning)


@dataclass(frozen=True)
class Concept:
    """How one §3 number is written: concept name, unit and optional derivation."""

    name: Code
    unit: Code
    derivation: Code | None = None


#: Every numeric region key of PRODUCT.md §3 (``viewer.core.quant.measures.REGION_MEASURES``).
REGION_CONCEPTS: dict[str, Concept] = {
    "volume_ml": Concept(VOLUME, MILLILITER),
    "fluorine_cells": Concept(_private("F19CELLS", "19F-labelled cell count"), CELLS),
    "fluorine_cells_ci95_low": Concept(_private("F19CELLSLO", "19F-labelled cell count, 95% interval lower limit"), CELLS),
    "fluorine_cells_ci95_high": Concept(_private("F19CELLSHI", "19F-labelled cell count, 95% interval upper limit"), CELLS),
    "cells_per_mm3": Concept(_private("F19DENSITY", "19F-labelled cell density"), CELLS_PER_MM3),
    "dead_cells": Concept(_private("DEADCELLS", "Dead transplanted cell count from released gadolinium"), CELLS),
    "live_cells": Concept(_private("LIVECELLS", "Live transplanted cell count"), CELLS),
    "dead_fraction": Concept(_private("DEADFRAC", "Dead transplanted cell fraction"), NO_UNITS),
    "suv_max": Concept(SUV, SUV_BW, MAXIMUM),
    "suv_mean": Concept(SUV, SUV_BW, MEAN),
    "suv_peak": Concept(SUV, SUV_BW, PEAK),
    "mtv_ml": Concept(METABOLIC_VOLUME, MILLILITER),
    "tlg": Concept(TOTAL_LESION_GLYCOLYSIS, SUV_BW_ML),
    "sodium_mean_mM": Concept(_private("TSC", "Tissue sodium concentration"), MILLIMOLAR, MEAN),
    "homing_fraction": Concept(_private("HOMING", "Homing fraction of 19F-labelled cells"), NO_UNITS),
}

#: The yes/no region keys, written as qualitative evaluations.
REGION_FLAGS: dict[str, Code] = {
    "below_detection": _private("BELOWDET", "Below 19F detection limit"),
    "rejection_alert": _private("REJECTION", "Graft rejection alert"),
}

#: Model predictions (the model named by the measurement's algorithm identification).
PREDICTION = Concept(_private("PREDICTION", "Model prediction"), NO_UNITS)
PREDICTION_LOW = Concept(_private("PREDICTLO", "Model prediction, interval lower limit"), NO_UNITS)
PREDICTION_HIGH = Concept(_private("PREDICTHI", "Model prediction, interval upper limit"), NO_UNITS)

#: The per-timepoint number of §3.
DETECTION_LIMIT = Concept(_private("F19DETLIM", "19F detection limit"), CELLS_PER_MM3)
TIMEPOINT_GROUP = _private("TIMEPOINT", "Timepoint measurements")
