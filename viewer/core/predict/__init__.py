"""Per-region predictions from ONNX models described by JSON model cards (PRODUCT.md §4).

- :mod:`.card` — the model card format and its strict validation (:func:`load_card`);
- :mod:`.features` — the features a card may name and how they are read from the region table
  (:func:`region_features`);
- :mod:`.model` — :func:`load_model` (onnxruntime, CPU), :meth:`PredictionModel.predict` with
  interval, contributions and out-of-range warnings, and :func:`predictions_for` for
  `viewer stats`; every run has a wall-clock budget (a model out of time gives null
  predictions with the reason, never a hang);
- :mod:`.onnx_graph` — :func:`check_bounded_graph`: graphs with control flow that cannot be
  bounded before running (a Loop without a constant trip count) are refused at load.

The bundled demonstration model (``resources/models/``) is written by
``scripts/train_demo_model.py`` from simulated data; it and everything showing its predictions
carry :data:`DEMONSTRATION_NOTICE`.
"""

from viewer.core.predict.card import (
    DEMONSTRATION_NOTICE,
    CardFeature,
    Interval,
    LinearTerms,
    ModelCard,
    load_card,
    parse_card,
)
from viewer.core.predict.features import (
    KNOWN_FEATURES,
    REGION_TYPES,
    feature_description,
    feature_title,
    readable,
    region_features,
    region_type,
)
from viewer.core.predict.model import (
    Prediction,
    PredictionModel,
    bundled_model_paths,
    fill_predictions,
    load_bundled_models,
    load_model,
    load_models,
    missing_reason,
    predict_regions,
    prediction_entry,
    predictions_for,
    predictions_of,
)

__all__ = [
    "DEMONSTRATION_NOTICE",
    "KNOWN_FEATURES",
    "REGION_TYPES",
    "CardFeature",
    "Interval",
    "LinearTerms",
    "ModelCard",
    "Prediction",
    "PredictionModel",
    "bundled_model_paths",
    "feature_description",
    "feature_title",
    "fill_predictions",
    "load_bundled_models",
    "load_card",
    "load_model",
    "load_models",
    "missing_reason",
    "parse_card",
    "predict_regions",
    "prediction_entry",
    "predictions_for",
    "predictions_of",
    "readable",
    "region_features",
    "region_type",
]
