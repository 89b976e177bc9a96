"""Thresholds of the quantification that are settings rather than calibration (PRODUCT.md §3).

Calibration (how many atoms per cell, relaxivities) belongs to a study and lives in its
manifest; these thresholds belong to the method and a user may change them per analysis.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuantSettings:
    """Method thresholds, units in the names.

    PET (PERCIST / EANM conventions): SUVpeak sphere of 12 mm diameter (≈ 1 cm³); MTV at
    41 % of the region's SUVmax.

    Core/penumbra proposal: with ADC and Tmax, core = ADC < 620·10⁻⁶ mm²/s, hypoperfused =
    Tmax > 6 s, penumbra = hypoperfused − core (DEFUSE 3). With sodium only: core = TSC ≥ 70
    mM, penumbra = TSC in [50, 70) mM (healthy tissue < 45 mM, infarct ≈ 70 mM); CSF (TSC ≥
    ``csf_sodium_mM``, about 140 mM in CSF, grown by ``csf_margin_mm`` to remove partial-volume
    rims) is excluded; with an anatomy, so is its CSF class (the anatomy's darkest or brightest
    of three Otsu classes, whichever holds the higher TSC) grown by ``csf_anatomy_margin_mm``,
    and the penumbra is the raised tissue connected to the core. Components smaller than
    ``min_component_ml`` are dropped.

    DEFUSE-3 style target-mismatch criteria: core < 70 mL, mismatch ratio ≥ 1.8, mismatch
    volume ≥ 15 mL.
    """

    suv_peak_diameter_mm: float = 12.0
    mtv_fraction_of_max: float = 0.41
    adc_core_threshold: float = 620.0
    tmax_threshold_s: float = 6.0
    sodium_core_mM: float = 70.0
    sodium_penumbra_mM: float = 50.0
    csf_sodium_mM: float = 100.0
    csf_margin_mm: float = 3.0
    csf_anatomy_margin_mm: float = 2.0
    min_component_ml: float = 0.1
    defuse_max_core_ml: float = 70.0
    defuse_min_ratio: float = 1.8
    defuse_min_mismatch_ml: float = 15.0
