"""The features a prediction model may use, and how they are read from the region statistics.

A model card names its features; every name must be one the core computes (otherwise the card
is refused). They are:

- every numeric per-region measure of PRODUCT.md §3 (:data:`viewer.core.quant.measures.REGION_MEASURES`:
  ``volume_ml``, ``fluorine_cells``, ``cells_per_mm3``, ``dead_cells``, ``live_cells``,
  ``dead_fraction``, ``suv_max``, ``suv_mean``, ``suv_peak``, ``mtv_ml``, ``tlg``,
  ``sodium_mean_mM``, ``homing_fraction``) and the two flags ``below_detection`` and
  ``rejection_alert`` as 0/1, in the units the measures declare;
- ``days_since_transplant``: the timepoint's ``day`` from the manifest (days);
- ``region_type:core``, ``region_type:penumbra``, ``region_type:other``: the region type
  **one-hot encoded** (1 for the region's type, 0 otherwise; a card may list any subset of the
  three). The type comes from the region name: ``core`` for a name that is "core" or starts with
  "core " (e.g. "core 2"), ``penumbra`` likewise, ``other`` for every other region.

Features are returned raw, in the units above; a card's optional ``transform`` (see
:mod:`viewer.core.predict.card`) is applied by the model just before the ONNX graph.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from viewer.core.quant.measures import REGION_KEYS, REGION_MEASURES, region_measure

#: Region types known to the ``region_type:*`` features and to a card's ``applies_to``.
REGION_TYPES: tuple[str, ...] = ("core", "penumbra", "other")


@dataclass(frozen=True)
class FeatureSource:
    """Where a feature comes from: the measure (or timepoint/region attribute) and its units."""

    name: str
    source: str
    units: str
    description: str


def _known_features() -> dict[str, FeatureSource]:
    known: dict[str, FeatureSource] = {}
    for measure in REGION_MEASURES:
        if measure.key == "label" or measure.kind not in ("float", "int", "bool"):
            continue
        description = measure.description + (" (1 = yes, 0 = no)" if measure.kind == "bool" else "")
        known[measure.key] = FeatureSource(measure.key, measure.key, measure.units, description)
    known["days_since_transplant"] = FeatureSource(
        "days_since_transplant", "timepoint.day", "days", "Days from transplantation to this timepoint (manifest `day`)."
    )
    for kind in REGION_TYPES:
        known[f"region_type:{kind}"] = FeatureSource(
            f"region_type:{kind}", "region.name", "",
            f"1 when the region is a {kind} region (from its name), else 0 (one-hot region type).",
        )
    return known


#: Every feature name a model card may use → where it comes from.
KNOWN_FEATURES: dict[str, FeatureSource] = _known_features()


def region_type(name: str) -> str:
    """The region type used by ``region_type:*`` and ``applies_to``: core, penumbra or other."""
    text = " ".join(str(name).lower().split())
    for kind in ("core", "penumbra"):
        if text == kind or text.startswith(kind + " "):
            return kind
    return "other"


def finite_number(value: Any) -> float | None:
    """A finite float, or None for missing, text, NaN and infinities."""
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def feature_value(name: str, region_values: Mapping[str, Any], day: float | None) -> float | None:
    """One feature of a region (raw units), or None when the core could not compute it."""
    if name == "days_since_transplant":
        return finite_number(day)
    if name.startswith("region_type:"):
        region_name = region_values.get("name")
        if region_name is None:
            return None
        return 1.0 if region_type(str(region_name)) == name.split(":", 1)[1] else 0.0
    return finite_number(region_values.get(name))


def region_features(region_values: Mapping[str, Any], day: float | None, card) -> tuple[dict[str, float], list[str]]:
    """The card's features for one region: ``({name: value}, [names that are missing])``.

    ``region_values`` is a row of the region table (:attr:`RegionStats.values`), ``day`` the
    timepoint's day. A feature is missing when its measure is None or not finite (not measured
    at this timepoint, or not computable for this region); missing names are listed in card order.
    """
    values: dict[str, float] = {}
    missing: list[str] = []
    for feature in card.features:
        value = feature_value(feature.name, region_values, day)
        if value is None:
            missing.append(feature.name)
        else:
            values[feature.name] = value
    return values, missing


# -- names a reader reads ------------------------------------------------------------------------

def feature_title(name: str) -> str:
    """A model feature as a reader knows it: the registry's name with units, e.g.
    "¹⁹F cells (cells)"; the identifier itself for a feature the registry does not know."""
    if name in REGION_KEYS:
        return region_measure(name).title
    source = KNOWN_FEATURES.get(name)
    if name == "days_since_transplant":
        units = source.units if source is not None else "days"
        return f"Days since transplantation ({units})"
    if name.startswith("region_type:"):
        return f"Region type {name.split(':', 1)[1]} (1 = yes, 0 = no)"
    return name


def feature_description(name: str) -> str:
    """The identifier and what the feature is (a tooltip)."""
    source = KNOWN_FEATURES.get(name)
    return f"{name}: {source.description}" if source is not None else name


_FEATURE_PATTERN = re.compile(
    r"(?<![\w:])(" + "|".join(re.escape(n) for n in sorted(KNOWN_FEATURES, key=len, reverse=True)) + r")(?!\w)")


def readable(text: str) -> str:
    """A core sentence (a warning, a reason) with every feature identifier replaced by its
    :func:`feature_title`, e.g. "no PET at this timepoint: SUVpeak (SUV) missing"."""
    return _FEATURE_PATTERN.sub(lambda match: feature_title(match.group(1)), text)
