"""Model cards: the JSON that says what an ONNX model predicts, from which features, and how
far it can be trusted (PRODUCT.md §4). Loading a card only parses JSON — no code is run.

Card format 1 (every field is checked; unknown fields are refused so that a typo is not
silently ignored)::

    {
      "card_format": 1,
      "name": "Penumbra recovery",                    # shown next to every prediction
      "version": "1.0.0",
      "intended_use": "…",
      "outcome": {"name": "penumbra_recovery_day90", "meaning": "…"},
      "features": [                                   # ONNX input columns, in this order
        {"name": "live_cells",                        # a feature the core computes (features.py)
         "units": "cells",                            # must be the core's units for that feature
         "source": "live_cells",                      # optional; the measure it comes from
         "transform": "log10p1",                      # optional: "none" (default) or
                                                      #   "log10p1" = log10(1 + x), applied by
                                                      #   the core before the ONNX graph
         "training_range": [120.0, 310000.0],         # raw units; outside → out-of-range warning
         "baseline": 9000.0,                          # raw units; reference for contributions
         "description": "…"}                          # optional
      ],
      "training_data": {"description": "…", "n": 4000, "simulated": true, "references": ["…"]},
      "validation": {"metric": "AUC", "value": 0.74, "n": 800, "description": "…",
                     "extra": {"brier_score": 0.2}},  # n, description, extra optional
      "licence": "CC0-1.0",                           # "license" is accepted too
      "demonstration": true,
      "notice": "demonstration model — simulated data — not for clinical decisions",
                                                      # required when demonstration is true
      # optional:
      "applies_to": ["penumbra"],                     # region types (core/penumbra/other)
      "onnx": {"output": "probabilities", "column": 1},
      "interval": {"method": "conformal", "alpha": 0.1, "q": 0.12, "description": "…"}
                | {"method": "model", "lower": "<output>", "upper": "<output>"},
      "linear": {"space": "logit", "intercept": -0.2,
                 "coefficients": {"live_cells": 1.1, …}},  # per feature, transformed units
      "references": ["…"], "notes": "…"
    }

The model's value is the probability of the outcome. ``linear`` declares the model linear in
its (transformed) features, in the logit space (``p = sigmoid(intercept + Σ c·t(x))``) or
directly in the output space (``p = intercept + Σ c·t(x)``); it is verified against the ONNX
graph when the model is loaded, and makes the contributions exact:
``c_i · (t(x_i) − t(baseline_i))`` in that space.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from viewer.core.errors import file_error
from viewer.core.predict.features import KNOWN_FEATURES, REGION_TYPES

CARD_FORMAT = 1

#: The label every demonstration model carries, in the card and wherever it is shown.
DEMONSTRATION_NOTICE = "demonstration model — simulated data — not for clinical decisions"

TRANSFORMS: tuple[str, ...] = ("none", "log10p1")

_TOP_REQUIRED = {"card_format", "name", "version", "intended_use", "outcome", "features", "training_data",
                 "validation", "demonstration"}
_TOP_OPTIONAL = {"licence", "license", "notice", "applies_to", "onnx", "interval", "linear", "references", "notes"}


@dataclass(frozen=True)
class CardFeature:
    """One input column of the model."""

    name: str
    units: str
    source: str
    training_range: tuple[float, float]
    baseline: float
    transform: str = "none"
    description: str = ""

    def in_range(self, value: float) -> bool:
        low, high = self.training_range
        return low <= value <= high

    def transformed(self, value: float) -> float:
        """The value fed to the ONNX graph."""
        if self.transform == "log10p1":
            return math.log10(1.0 + max(value, 0.0))
        return value


@dataclass(frozen=True)
class Interval:
    """How the card gives an interval: a conformal half-width, or two model outputs."""

    method: str  # "conformal" or "model"
    alpha: float | None = None
    q: float | None = None
    lower: str | None = None
    upper: str | None = None
    description: str = ""


@dataclass(frozen=True)
class LinearTerms:
    """The card's declaration that the model is linear in its (transformed) features."""

    space: str  # "logit" or "output"
    intercept: float
    coefficients: Mapping[str, float]


@dataclass(frozen=True)
class ModelCard:
    """A validated model card."""

    path: Path | None
    name: str
    version: str
    intended_use: str
    outcome_name: str
    outcome_meaning: str
    features: tuple[CardFeature, ...]
    training_data: Mapping[str, Any]
    validation: Mapping[str, Any]
    licence: str
    demonstration: bool
    notice: str | None
    applies_to: tuple[str, ...] | None = None
    output_name: str | None = None
    output_column: int | None = None
    interval: Interval | None = None
    linear: LinearTerms | None = None
    references: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def feature(self, name: str) -> CardFeature:
        return next(f for f in self.features if f.name == name)

    def validation_text(self) -> str:
        """e.g. "AUC 0.706 (n = 800)" from the card's validation block."""
        metric = self.validation.get("metric", "metric")
        value = self.validation.get("value")
        number = f"{value:.3f}" if isinstance(value, (int, float)) else str(value)
        n = self.validation.get("n")
        return f"{metric} {number}" + (f" (n = {n})" if n is not None else "")

    def training_summary(self, limit: int = 220) -> str:
        """The first sentence of the training-data description (at most ``limit`` characters)."""
        sentence = str(self.training_data.get("description", "")).split(". ")[0].strip()
        return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"

    @property
    def title(self) -> str:
        """"name version", with the notice for a demonstration model."""
        text = f"{self.name} {self.version}"
        return f"{text} ({self.notice})" if self.demonstration and self.notice else text


def load_card(path: str | Path) -> ModelCard:
    """Read and validate a JSON model card; a :class:`ViewerError` names the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "model card not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise file_error(path, f"model card cannot be read as UTF-8 text ({exc})") from exc
    try:
        raw = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise file_error(path, f"model card is not valid JSON ({exc})") from exc
    return parse_card(raw, path)


def _refuse_constant(token: str) -> float:
    raise ValueError(f"{token} is not allowed")


def parse_card(raw: Any, path: str | Path | None = None) -> ModelCard:
    """Validate an already parsed card (``path`` only names the file in messages)."""
    where = Path(path) if path is not None else Path("<model card>")
    card = _Checker(where)
    if not isinstance(raw, dict):
        raise card.error("", "must be a JSON object")
    missing = sorted(_TOP_REQUIRED - raw.keys())
    if missing:
        raise card.error(missing[0], "is missing")
    unknown = sorted(raw.keys() - _TOP_REQUIRED - _TOP_OPTIONAL)
    if unknown:
        raise card.error(unknown[0], f"is not a model card field (known: {', '.join(sorted(_TOP_REQUIRED | _TOP_OPTIONAL))})")
    if raw["card_format"] != CARD_FORMAT or isinstance(raw["card_format"], bool):
        raise card.error("card_format", f"must be {CARD_FORMAT}, got {raw['card_format']!r}")
    if "licence" in raw and "license" in raw:
        raise card.error("license", "give either 'licence' or 'license', not both")
    licence_key = "licence" if "licence" in raw else "license"
    if licence_key not in raw:
        raise card.error("licence", "is missing")

    name = card.text(raw, "name")
    version = card.text(raw, "version")
    intended_use = card.text(raw, "intended_use")
    licence = card.text(raw, licence_key)
    outcome = card.table(raw, "outcome", {"name", "meaning"}, {"kind"})
    if "kind" in outcome and outcome["kind"] != "probability":
        raise card.error("outcome.kind", "only 'probability' outcomes are supported")
    outcome_name = card.text(outcome, "name", "outcome.")
    outcome_meaning = card.text(outcome, "meaning", "outcome.")

    demonstration = raw["demonstration"]
    if not isinstance(demonstration, bool):
        raise card.error("demonstration", "must be true or false")
    notice = None
    if "notice" in raw:
        notice = card.text(raw, "notice")
    if demonstration and notice is None:
        raise card.error("notice", f"is required for a demonstration model (e.g. \"{DEMONSTRATION_NOTICE}\")")

    features = card.features(raw["features"])

    training = card.table(raw, "training_data", {"description", "n", "simulated"}, {"references", "assumptions", "settings"})
    card.text(training, "description", "training_data.")
    card.count(training, "n", "training_data.")
    if not isinstance(training["simulated"], bool):
        raise card.error("training_data.simulated", "must be true or false")

    validation = card.table(raw, "validation", {"metric", "value"}, {"n", "description", "extra"})
    card.text(validation, "metric", "validation.")
    card.number(validation, "value", "validation.")
    if "n" in validation:
        card.count(validation, "n", "validation.")
    if "description" in validation:
        card.text(validation, "description", "validation.")
    if "extra" in validation:
        extra = validation["extra"]
        if not isinstance(extra, dict):
            raise card.error("validation.extra", "must be an object of name: number")
        for key in extra:
            card.number(extra, key, "validation.extra.")

    applies_to = None
    if "applies_to" in raw:
        value = raw["applies_to"]
        if not isinstance(value, list) or not value or any(v not in REGION_TYPES for v in value):
            raise card.error("applies_to", f"must be a non-empty list of region types ({', '.join(REGION_TYPES)})")
        applies_to = tuple(dict.fromkeys(value))

    output_name = output_column = None
    if "onnx" in raw:
        onnx = card.table(raw, "onnx", set(), {"output", "column"})
        if "output" in onnx:
            output_name = card.text(onnx, "output", "onnx.")
        if "column" in onnx:
            output_column = card.count(onnx, "column", "onnx.", minimum=0)

    interval = card.interval(raw["interval"]) if "interval" in raw else None
    linear = card.linear(raw["linear"], features) if "linear" in raw else None

    references: tuple[str, ...] = ()
    if "references" in raw:
        refs = raw["references"]
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            raise card.error("references", "must be a list of strings")
        references = tuple(refs)
    if "notes" in raw and not isinstance(raw["notes"], str):
        raise card.error("notes", "must be a string")

    return ModelCard(
        path=Path(path) if path is not None else None, name=name, version=version, intended_use=intended_use,
        outcome_name=outcome_name, outcome_meaning=outcome_meaning, features=features,
        training_data=dict(training), validation=dict(validation), licence=licence,
        demonstration=demonstration, notice=notice, applies_to=applies_to, output_name=output_name,
        output_column=output_column, interval=interval, linear=linear, references=references, raw=raw,
    )


def _units_key(units: str) -> str:
    text = units.strip().lower().replace("³", "3").replace("·", "*").replace(" ", "")
    return "" if text in ("", "1", "none", "dimensionless", "fraction", "ratio") else text


class _Checker:
    """Small helpers raising ``<file>: model card field '<field>' <problem>``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, where: str, problem: str):
        subject = f"model card field '{where}'" if where else "model card"
        return file_error(self.path, f"{subject} {problem}")

    def text(self, table: Mapping[str, Any], key: str, prefix: str = "") -> str:
        if key not in table:
            raise self.error(prefix + key, "is missing")
        value = table[key]
        if not isinstance(value, str) or not value.strip():
            raise self.error(prefix + key, "must be a non-empty string")
        return value

    def number(self, table: Mapping[str, Any], key: str, prefix: str = "") -> float:
        if key not in table:
            raise self.error(prefix + key, "is missing")
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(prefix + key, f"must be a finite number, got {value!r}")
        return float(value)

    def count(self, table: Mapping[str, Any], key: str, prefix: str = "", minimum: int = 1) -> int:
        value = table.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(prefix + key, f"must be an integer ≥ {minimum}, got {value!r}")
        return value

    def table(self, raw: Mapping[str, Any], key: str, required: set[str], optional: set[str]) -> dict[str, Any]:
        value = raw[key]
        if not isinstance(value, dict):
            raise self.error(key, "must be a JSON object")
        missing = sorted(required - value.keys())
        if missing:
            raise self.error(f"{key}.{missing[0]}", "is missing")
        unknown = sorted(value.keys() - required - optional)
        if unknown:
            raise self.error(f"{key}.{unknown[0]}", f"is not known (known: {', '.join(sorted(required | optional))})")
        return value

    def features(self, value: Any) -> tuple[CardFeature, ...]:
        if not isinstance(value, list) or not value:
            raise self.error("features", "must be a non-empty list")
        result: list[CardFeature] = []
        for index, entry in enumerate(value):
            where = f"features[{index}]"
            if not isinstance(entry, dict):
                raise self.error(where, "must be a JSON object")
            missing = sorted({"name", "units", "training_range", "baseline"} - entry.keys())
            if missing:
                raise self.error(f"{where}.{missing[0]}", "is missing")
            unknown = sorted(entry.keys() - {"name", "units", "source", "training_range", "baseline", "transform", "description"})
            if unknown:
                raise self.error(f"{where}.{unknown[0]}", "is not a feature field")
            name = self.text(entry, "name", where + ".")
            known = KNOWN_FEATURES.get(name)
            if known is None:
                raise self.error(
                    f"{where}.name", f"'{name}' is not a feature the viewer computes "
                    f"(known: {', '.join(KNOWN_FEATURES)})"
                )
            where = f"features[{index}] ({name})"
            units = entry["units"]
            if not isinstance(units, str):
                raise self.error(f"{where}.units", "must be a string ('' for dimensionless)")
            if _units_key(units) != _units_key(known.units):
                raise self.error(f"{where}.units", f"is '{units}' but the viewer computes {name} in '{known.units or 'no units'}'")
            source = entry.get("source", known.source)
            if source != known.source:
                raise self.error(f"{where}.source", f"is '{source}' but {name} comes from '{known.source}'")
            transform = entry.get("transform", "none")
            if transform not in TRANSFORMS:
                raise self.error(f"{where}.transform", f"must be one of {', '.join(TRANSFORMS)}, got {transform!r}")
            bounds = entry["training_range"]
            if (not isinstance(bounds, list) or len(bounds) != 2
                    or any(isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) for b in bounds)
                    or bounds[0] > bounds[1]):
                raise self.error(f"{where}.training_range", f"must be [min, max] with finite min ≤ max, got {bounds!r}")
            baseline = self.number(entry, "baseline", where + ".")
            if not bounds[0] <= baseline <= bounds[1]:
                raise self.error(f"{where}.baseline", f"{baseline} lies outside the training range {bounds}")
            if transform == "log10p1" and bounds[0] < 0:
                raise self.error(f"{where}.training_range", "must not be negative with the log10p1 transform")
            description = entry.get("description", "")
            if not isinstance(description, str):
                raise self.error(f"{where}.description", "must be a string")
            result.append(CardFeature(name, units, source, (float(bounds[0]), float(bounds[1])), baseline, transform, description))
        names = [f.name for f in result]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise self.error("features", f"lists '{duplicate}' twice")
        return tuple(result)

    def interval(self, value: Any) -> Interval:
        if not isinstance(value, dict) or value.get("method") not in ("conformal", "model"):
            raise self.error("interval.method", "must be 'conformal' or 'model'")
        if value["method"] == "conformal":
            self.table({"interval": value}, "interval", {"method", "alpha", "q"}, {"description", "n"})
            alpha = self.number(value, "alpha", "interval.")
            q = self.number(value, "q", "interval.")
            if not 0.0 < alpha < 1.0:
                raise self.error("interval.alpha", f"must lie in (0, 1), got {alpha}")
            if not 0.0 <= q <= 1.0:
                raise self.error("interval.q", f"is a half-width in probability units and must lie in [0, 1], got {q}")
            return Interval("conformal", alpha=alpha, q=q, description=str(value.get("description", "")))
        self.table({"interval": value}, "interval", {"method", "lower", "upper"}, {"description", "alpha"})
        alpha = self.number(value, "alpha", "interval.") if "alpha" in value else None
        return Interval("model", alpha=alpha, lower=self.text(value, "lower", "interval."),
                        upper=self.text(value, "upper", "interval."), description=str(value.get("description", "")))

    def linear(self, value: Any, features: tuple[CardFeature, ...]) -> LinearTerms:
        table = self.table({"linear": value}, "linear", {"space", "intercept", "coefficients"}, set())
        if table["space"] not in ("logit", "output"):
            raise self.error("linear.space", "must be 'logit' or 'output'")
        intercept = self.number(table, "intercept", "linear.")
        coefficients = table["coefficients"]
        if not isinstance(coefficients, dict):
            raise self.error("linear.coefficients", "must be an object of feature: coefficient")
        names = [f.name for f in features]
        if set(coefficients) != set(names):
            odd = sorted(set(coefficients) ^ set(names))
            raise self.error("linear.coefficients", f"must give one coefficient per feature (mismatch: {', '.join(odd)})")
        values = {name: self.number(coefficients, name, "linear.coefficients.") for name in names}
        return LinearTerms(table["space"], intercept, values)
