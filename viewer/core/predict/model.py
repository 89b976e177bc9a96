"""Running a model (ONNX on CPU) on a region's features, with interval, contributions and
out-of-range warnings (PRODUCT.md §4).

The ONNX contract: one input, float (or double) tensor of shape ``[batch, n_features]`` whose
columns are the card's features in card order, each after the card's ``transform``; the output
is the probability of the outcome — by default the ``probabilities`` output of a scikit-learn
classifier exported with skl2onnx (zipmap disabled; column 1 = the positive class), or the
only float output; the card's ``onnx.output`` / ``onnx.column`` say otherwise.

Contributions (how much each feature moved this region's prediction away from the card's
baselines):

- **linear models** (the card carries ``linear``, checked against the graph at load): exact,
  ``c_i · (t(x_i) − t(baseline_i))`` in the card's linear space — for a logistic model the
  **logit** (log-odds) space, so they add up to ``logit(p) − logit(p_baseline)``;
- **any model**: baseline substitution computed by the core, in **probability** units:
  ``f(x) − f(x with feature i set to its baseline)``. For a model additive in its features
  they add up to ``f(x) − f(baselines)``; with interactions the sum differs from it by the
  interaction terms. Both are returned for a linear model (:attr:`Prediction.substitution`).

Loading never runs code: an ONNX file is a protobuf graph of standard operators, evaluated by
onnxruntime; pickle/joblib files are refused as "not an ONNX model".

Time (issue 13: a model with a huge ``Loop`` hung ``viewer stats`` and the window):

- at load, a graph whose control flow cannot be bounded before it runs is refused
  (:func:`viewer.core.predict.onnx_graph.check_bounded_graph`: Loops need a constant trip
  count); onnxruntime's graph optimisations are off, so creating the session never evaluates
  the graph (constant folding would run a costly constant sub-graph inside the load);
- every run has a wall-clock budget of :data:`PREDICTION_TIME_BUDGET_S`: the run happens on a
  worker thread, and when the budget is spent onnxruntime is told to terminate (it stops
  between two operators) and the caller stops waiting after :data:`TERMINATE_GRACE_S` more
  (an operator that is still computing is abandoned, never waited for). The model is then
  unavailable for the rest of the session: its predictions are ``null`` with a reason naming
  it (:attr:`PredictionModel.unavailable`), and nothing is ever reported from a partial run.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from viewer.core.errors import ViewerError, file_error
from viewer.core.predict.card import DEMONSTRATION_NOTICE, ModelCard, load_card
from viewer.core.predict.features import finite_number, region_features, region_type
from viewer.core.predict.onnx_graph import check_bounded_graph
from viewer.core.resources import resources_dir

if TYPE_CHECKING:
    from viewer.core.io.study import ModelEntry
    from viewer.core.quant.stats import TimepointStats


#: Wall-clock seconds one model may take for one batch of rows (every region of a timepoint
#: with its baseline substitutions: tens to hundreds of rows). The bundled model needs well
#: under a millisecond; a budget this wide only stops a model that would never finish.
PREDICTION_TIME_BUDGET_S = 5.0

#: The name a worker thread is given when its run is abandoned (see :func:`runs_abandoned`).
ABANDONED_RUN = "abandoned"


def runs_abandoned() -> bool:
    """Whether a model run abandoned after its time budget is still computing on its thread.

    Why it matters: such a thread is inside onnxruntime's C++ when the interpreter ends, and
    onnxruntime's thread pools, destroyed at exit while it runs, abort the process ("terminate
    called without an active exception", status -6) after the command's output was written. A
    command that finds one ends its process at once instead (:func:`viewer.cli.main`)."""
    return any(thread.name.startswith(ABANDONED_RUN + " ") and thread.is_alive() for thread in threading.enumerate())


#: Seconds to wait, after telling onnxruntime to terminate, for the run to return; an operator
#: still computing after that is abandoned on its (daemon) thread.
TERMINATE_GRACE_S = 1.0


class _OutOfTime(Exception):
    """A run used up the time budget (the message is the user-facing reason)."""


@dataclass(frozen=True)
class Prediction:
    """One model's prediction for one region.

    Attributes:
        value: probability of the card's outcome, or None (then ``reason`` says why).
        interval: (low, high) in probability units, clipped to [0, 1], or None.
        out_of_range: names of the features outside the card's training range.
        warnings: one human sentence per out-of-range feature.
        contributions: per feature, in ``contribution_space`` (see the module docstring).
        contribution_method: "linear" or "baseline substitution" (None without a value).
        contribution_space: "logit", "output" or "probability".
        substitution: baseline-substitution contributions (probability units), always computed.
        baseline_value: the model's value with every feature at its baseline.
        features: the raw feature values used.
        reason: why there is no value (e.g. "no PET at this timepoint: suv_peak missing").
    """

    value: float | None
    interval: tuple[float, float] | None = None
    out_of_range: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    contributions: Mapping[str, float] = field(default_factory=dict)
    contribution_method: str | None = None
    contribution_space: str | None = None
    substitution: Mapping[str, float] = field(default_factory=dict)
    baseline_value: float | None = None
    features: Mapping[str, float] = field(default_factory=dict)
    reason: str | None = None


class PredictionModel:
    """A loaded ONNX model with its card. Build it with :func:`load_model`."""

    def __init__(self, card: ModelCard, onnx_path: Path, session: Any, load_seconds: float = 0.0,
                 time_budget_s: float | None = None) -> None:
        self.card = card
        self.onnx_path = onnx_path
        self.load_seconds = load_seconds
        #: seconds one run may take (default :data:`PREDICTION_TIME_BUDGET_S`, read at load)
        self.time_budget_s = PREDICTION_TIME_BUDGET_S if time_budget_s is None else float(time_budget_s)
        #: why the model gives no predictions any more (it ran out of time), else None
        self.unavailable: str | None = None
        self._session = session
        inputs = session.get_inputs()
        where = onnx_path
        if len(inputs) != 1:
            raise file_error(where, f"the model has {len(inputs)} inputs; the viewer feeds one [batch, n_features] tensor")
        tensor = inputs[0]
        self._input_name = tensor.name
        dtypes = {"tensor(float)": np.float32, "tensor(double)": np.float64}
        if tensor.type not in dtypes:
            raise file_error(where, f"the model input '{tensor.name}' is {tensor.type}; it must be a float tensor")
        self._dtype = dtypes[tensor.type]
        shape = list(tensor.shape or [])
        n = len(card.features)
        card_name = card.path.name if card.path else "the card"
        if len(shape) != 2:
            raise file_error(where, f"the model input '{tensor.name}' has shape {shape}; it must be [batch, {n}] ({n} features in {card_name})")
        if isinstance(shape[1], int) and shape[1] != n:
            raise file_error(where, f"the model takes {shape[1]} features per row but {card_name} lists {n}")
        self._one_row = shape[0] == 1
        self._outputs = [o.name for o in session.get_outputs()]
        self._output, self._column = self._choose_output()
        self._bounds = None
        if card.interval is not None and card.interval.method == "model":
            for name in (card.interval.lower, card.interval.upper):
                if name not in self._outputs:
                    raise file_error(where, f"the card's interval names output '{name}' but the model outputs {', '.join(self._outputs)}")
            self._bounds = (card.interval.lower, card.interval.upper)
        self._baselines = np.array([f.baseline for f in card.features], dtype=float)
        # A test run on two baseline rows: checks the shapes against the card and that rows are
        # independent of each other, and gives f(baseline). A model that cannot finish even
        # that within its budget loads, but is unavailable (null predictions, with the reason).
        self.baseline_value: float | None = None
        try:
            values, _ = self._evaluate(np.repeat(self._baselines[None, :], 2, axis=0))
            self.baseline_value = float(values[0])
            if card.linear is not None:
                self._check_linear()
        except _OutOfTime:
            pass

    # -- description -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    @property
    def demonstration(self) -> bool:
        return self.card.demonstration

    @property
    def notice(self) -> str | None:
        return self.card.notice

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.card.feature_names

    def __repr__(self) -> str:
        return f"PredictionModel({self.card.name!r}, {self.card.version!r}, {self.onnx_path.name!r})"

    # -- running -------------------------------------------------------------------------------
    def _choose_output(self) -> tuple[str, int | None]:
        outputs = {o.name: o for o in self._session.get_outputs()}
        where = self.onnx_path
        if self.card.output_name is not None:
            if self.card.output_name not in outputs:
                raise file_error(where, f"the card names output '{self.card.output_name}' but the model outputs {', '.join(outputs)}")
            chosen = outputs[self.card.output_name]
        elif "probabilities" in outputs:
            chosen = outputs["probabilities"]
        else:
            floats = [o for o in outputs.values() if o.type in ("tensor(float)", "tensor(double)")]
            if len(floats) != 1:
                raise file_error(where, f"cannot tell which output is the probability ({', '.join(outputs)}): set onnx.output in the card")
            chosen = floats[0]
        if chosen.type.startswith("seq(") or chosen.type.startswith("map("):
            raise file_error(where, f"output '{chosen.name}' is {chosen.type}; export the model without zipmap (a float tensor)")
        if chosen.type not in ("tensor(float)", "tensor(double)"):
            raise file_error(where, f"output '{chosen.name}' is {chosen.type}, not a float tensor")
        return chosen.name, self.card.output_column

    def _column_of(self, array: np.ndarray, name: str) -> np.ndarray:
        array = np.asarray(array, dtype=float)
        if array.ndim == 1:
            return array
        if array.ndim != 2:
            raise file_error(self.onnx_path, f"output '{name}' has {array.ndim} dimensions; expected [batch] or [batch, k]")
        columns = array.shape[1]
        if self._column is not None:
            if self._column >= columns:
                raise file_error(self.onnx_path, f"onnx.column {self._column} but output '{name}' has {columns} columns")
            return array[:, self._column]
        if columns == 1:
            return array[:, 0]
        if columns == 2:
            return array[:, 1]  # binary classifier: the positive class
        raise file_error(self.onnx_path, f"output '{name}' has {columns} columns: set onnx.column in the card")

    def _evaluate(self, raw_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Model value (and model interval bounds) for rows of raw feature values."""
        rows = np.array(raw_rows, dtype=float)
        for j, feature in enumerate(self.card.features):
            if feature.transform == "log10p1":
                rows[:, j] = np.log10(1.0 + np.maximum(rows[:, j], 0.0))
        feed = rows.astype(self._dtype)
        names = [self._output] + (list(self._bounds) if self._bounds else [])
        deadline = time.monotonic() + self.time_budget_s
        try:
            if self._one_row and len(feed) != 1:
                parts = [self._run(names, feed[i:i + 1], deadline) for i in range(len(feed))]
                results = [np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(len(names))]
            else:
                results = self._run(names, feed, deadline)
        except _OutOfTime:
            raise
        except Exception as exc:  # onnxruntime's own exception types
            card_name = self.card.path.name if self.card.path else "the card"
            raise file_error(self.onnx_path, f"the model does not run on the {len(self.card.features)} features "
                                             f"{card_name} describes ({_first_line(exc)})") from exc
        values = self._column_of(results[0], self._output)
        if values.shape[0] != len(rows):
            raise file_error(self.onnx_path, f"output '{self._output}' gave {values.shape[0]} values for {len(rows)} rows")
        if not np.all(np.isfinite(values)) or np.any(values < -1e-6) or np.any(values > 1 + 1e-6):
            bad = values[~(np.isfinite(values) & (values >= -1e-6) & (values <= 1 + 1e-6))][0]
            raise file_error(self.onnx_path, f"output '{self._output}' gave {bad}, not a probability in [0, 1]")
        bounds = None
        if self._bounds:
            low = self._column_of(results[1], self._bounds[0])
            high = self._column_of(results[2], self._bounds[1])
            bounds = np.stack([np.minimum(low, high), np.maximum(low, high)], axis=1)
        return np.clip(values, 0.0, 1.0), bounds

    def _run(self, names: list[str], feed: np.ndarray, deadline: float) -> list[Any]:
        """One ``session.run`` on a worker thread, stopped at ``deadline`` (time.monotonic).

        Raises :class:`_OutOfTime` (and marks the model unavailable) when the budget is spent;
        re-raises what onnxruntime raised otherwise.
        """
        if self.unavailable is not None:
            raise _OutOfTime(self.unavailable)
        import onnxruntime

        options = onnxruntime.RunOptions()
        options.log_severity_level = ORT_QUIET  # a terminated run is reported by us, not logged
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["result"] = self._session.run(names, {self._input_name: feed}, options)
            except Exception as exc:  # onnxruntime's own types, handed to the caller's thread
                outcome["error"] = exc

        worker = threading.Thread(target=work, name=f"onnx {self.onnx_path.name}", daemon=True)
        worker.start()
        worker.join(max(deadline - time.monotonic(), 0.0))
        if worker.is_alive():
            options.terminate = True  # onnxruntime stops between two operators
            worker.join(TERMINATE_GRACE_S)
            if worker.is_alive():
                worker.name = f"{ABANDONED_RUN} {worker.name}"  # found again by runs_abandoned()
            self.unavailable = (f"model '{self.card.name}' {self.card.version} ({self.onnx_path.name}) did not "
                                f"finish within its time budget of {self.time_budget_s:g} s and was stopped")
            raise _OutOfTime(self.unavailable)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    def _check_linear(self) -> None:
        """Verify the card's linear terms against the graph (so that contributions are exact)."""
        linear = self.card.linear
        assert linear is not None
        features = self.card.features
        rows = [self._baselines.copy()]
        for j, feature in enumerate(features):
            low, high = feature.training_range
            row = self._baselines.copy()
            far = high if abs(high - feature.baseline) >= abs(feature.baseline - low) else low
            row[j] = 0.5 * (feature.baseline + far) if far != feature.baseline else feature.baseline + 1.0
            rows.append(row)
        values, _ = self._evaluate(np.array(rows))
        coefficients = np.array([linear.coefficients[f.name] for f in features])
        card_name = self.card.path.name if self.card.path else "the card"

        def model_space(p: float) -> float | None:
            if linear.space == "output":
                return p
            if not 1e-4 < p < 1 - 1e-4:
                return None  # saturated: the logit is not recoverable from a float32 probability
            return math.log(p / (1 - p))

        def tolerance(p: float, expected: float) -> float:
            if linear.space == "output":
                return 1e-5 + 1e-5 * abs(expected)
            return 2e-3 + 1e-3 * abs(expected) + 1e-6 / (p * (1 - p))

        def refuse(what: str, expected: float, got: float) -> ViewerError:
            return file_error(
                self.onnx_path,
                f"the linear terms in {card_name} do not match the model {what} "
                f"({linear.space} {expected:.6g} from the card, {got:.6g} from the model)",
            )

        base = model_space(float(values[0]))
        t_base = np.array([f.transformed(f.baseline) for f in features])
        # slopes first (so that a wrong coefficient is named), then the level at the baselines
        for j, feature in enumerate(features):
            got = model_space(float(values[1 + j]))
            if got is None or base is None:
                continue
            step = coefficients[j] * (feature.transformed(rows[1 + j][j]) - t_base[j])
            if abs((got - base) - step) > tolerance(float(values[1 + j]), step) + tolerance(float(values[0]), 0.0):
                raise refuse(f"when {feature.name} = {rows[1 + j][j]:g} (other features at their baselines)",
                             step, got - base)
        expected = linear.intercept + float(coefficients @ t_base)
        if base is not None and abs(base - expected) > tolerance(float(values[0]), expected):
            raise refuse("at the baselines (intercept)", expected, base)

    def predict(self, features: Mapping[str, Any]) -> Prediction:
        """The prediction for one region's features (raw units, keyed by card feature name)."""
        return self.predict_many([features])[0]

    def predict_many(self, rows: Sequence[Mapping[str, Any]]) -> list[Prediction]:
        """Predictions for several regions in one onnxruntime call."""
        card = self.card
        features = card.features
        n = len(features)
        if self.unavailable is not None:
            return [Prediction(None, reason=self.unavailable) for _ in rows]
        results: list[Prediction | None] = [None] * len(rows)
        complete: list[tuple[int, np.ndarray]] = []
        for index, given in enumerate(rows):
            missing = [f.name for f in features if finite_number(given.get(f.name)) is None]
            if missing:
                results[index] = Prediction(None, reason=f"{', '.join(missing)} missing")
            else:
                complete.append((index, np.array([finite_number(given[f.name]) for f in features], dtype=float)))
        if not complete:
            return results  # type: ignore[return-value]
        blocks = []
        for _, x in complete:
            block = np.repeat(x[None, :], n + 1, axis=0)
            block[1 + np.arange(n), np.arange(n)] = self._baselines
            blocks.append(block)
        try:
            values, bounds = self._evaluate(np.concatenate(blocks))
        except _OutOfTime as stopped:
            return [Prediction(None, reason=str(stopped)) for _ in rows]
        for k, (index, x) in enumerate(complete):
            p = values[k * (n + 1): (k + 1) * (n + 1)]
            value = float(p[0])
            substitution = {f.name: float(p[0] - p[1 + j]) for j, f in enumerate(features)}
            if card.linear is not None:
                method, space = "linear", card.linear.space
                contributions = {
                    f.name: float(card.linear.coefficients[f.name] * (f.transformed(float(x[j])) - f.transformed(f.baseline)))
                    for j, f in enumerate(features)
                }
            else:
                method, space, contributions = "baseline substitution", "probability", dict(substitution)
            interval = None
            if card.interval is not None and card.interval.method == "conformal":
                q = float(card.interval.q or 0.0)
                interval = (max(0.0, value - q), min(1.0, value + q))
            elif bounds is not None:
                low, high = bounds[k * (n + 1)]
                interval = (float(np.clip(low, 0.0, 1.0)), float(np.clip(high, 0.0, 1.0)))
            outside = [(f, x[j]) for j, f in enumerate(features) if not f.in_range(x[j])]
            warnings = tuple(
                f"{f.name} = {v:.4g}{' ' + f.units if f.units else ''} lies outside the training range "
                f"[{f.training_range[0]:.4g}, {f.training_range[1]:.4g}]" for f, v in outside
            )
            results[index] = Prediction(
                value=value, interval=interval, out_of_range=tuple(f.name for f, _ in outside), warnings=warnings,
                contributions=contributions, contribution_method=method, contribution_space=space,
                substitution=substitution, baseline_value=self.baseline_value,
                features={f.name: float(x[j]) for j, f in enumerate(features)},
            )
        return results  # type: ignore[return-value]

    def entry(self, prediction: Prediction) -> dict[str, Any]:
        """The ``prediction`` content of the §3 output schema for one region and this model."""
        return prediction_entry(self, prediction)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] + ("…" if len(text) > 200 else "")


#: onnxruntime log level that keeps its own messages (a terminated run is logged as an error)
#: off the terminal: 4 = fatal only.
ORT_QUIET = 4


def load_model(onnx_path: str | Path, card_path: str | Path, time_budget_s: float | None = None) -> PredictionModel:
    """Load an ONNX model and its card; a :class:`ViewerError` names the file that is wrong.

    ``time_budget_s`` bounds every run (default :data:`PREDICTION_TIME_BUDGET_S`); a graph with
    control flow that cannot be bounded is refused here (module docstring).
    """
    start = time.perf_counter()
    onnx_path, card_path = Path(onnx_path), Path(card_path)
    card = load_card(card_path)
    if not onnx_path.is_file():
        raise file_error(onnx_path, "model file not found")
    data = onnx_path.read_bytes()
    if data[:1] == b"\x80" or data[:4] == b"PK\x03\x04":
        raise file_error(onnx_path, "is a pickle/joblib/zip file, not an ONNX model (the viewer never runs pickled code)")
    check_bounded_graph(data, onnx_path)
    import onnxruntime  # deferred: only needed once a model is used

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # tiny models: threads cost more than they save; deterministic
    options.inter_op_num_threads = 1
    options.log_severity_level = ORT_QUIET
    # No graph optimisation: constant folding would evaluate constant sub-graphs (of any cost)
    # inside InferenceSession(), outside every time budget; tiny models gain nothing from it.
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = onnxruntime.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise file_error(onnx_path, f"not a readable ONNX model ({_first_line(exc)})") from exc
    model = PredictionModel(card, onnx_path, session, time_budget_s=time_budget_s)
    model.load_seconds = time.perf_counter() - start
    return model


def load_models(entries: Iterable[ModelEntry]) -> list[PredictionModel]:
    """The models of a manifest's ``[[model]]`` entries, in order."""
    return [load_model(entry.onnx, entry.card) for entry in entries]


def bundled_model_paths() -> list[tuple[Path, Path]]:
    """(onnx, card) pairs shipped in ``resources/models/``: ``X.onnx`` with its card ``X.json``."""
    folder = resources_dir() / "models"
    if not folder.is_dir():
        return []
    return [(onnx, onnx.with_suffix(".json")) for onnx in sorted(folder.glob("*.onnx")) if onnx.with_suffix(".json").is_file()]


def load_bundled_models() -> list[PredictionModel]:
    """The models shipped with the viewer (the demonstration model)."""
    return [load_model(onnx, card) for onnx, card in bundled_model_paths()]


# -- the region table -------------------------------------------------------------------------

_PET = ("suv_max", "suv_mean", "suv_peak", "mtv_ml", "tlg")
_FLUORINE = ("fluorine_cells", "cells_per_mm3", "homing_fraction", "below_detection")
_VIABILITY = ("dead_cells", "live_cells", "dead_fraction", "rejection_alert")


def _why_missing(name: str, region: Mapping[str, Any], notes: Sequence[str]) -> str:
    """Why one feature is missing for a region, from the timepoint's notes and the row."""
    def noted(prefix: str) -> bool:
        return any(note.startswith(prefix) for note in notes)

    region_name = str(region.get("name", ""))
    if name == "days_since_transplant":
        return "the timepoint has no day in the manifest"
    if name.startswith("region_type:"):
        return "the region has no name"
    if not region.get("volume_ml"):
        return "the region has no voxels"
    if name in _PET:
        return "no PET at this timepoint" if noted("no PET") else "PET not measured in this region"
    if name == "sodium_mean_mM":
        return "no sodium map at this timepoint" if noted("no sodium map") else "TSC not measured in this region"
    if region_name in ("reference", "background") and (name in _FLUORINE or name in _VIABILITY):
        return f"'{region_name}' is a ¹⁹F calibration region"
    if name in _FLUORINE or name in _VIABILITY:
        if noted("no ¹⁹F image") and name in _FLUORINE:
            return "no ¹⁹F image at this timepoint"
        if noted("¹⁹F cell counts not computed"):
            return "¹⁹F cell counts not calibrated"
        if name in _VIABILITY:
            if noted("no Gd ΔR1 map"):
                return "no Gd ΔR1 map at this timepoint"
            if noted("dead cells not computed"):
                return "Gd calibration missing"
            if name == "dead_fraction" and region.get("fluorine_cells") == 0:
                return "no ¹⁹F cells detected in this region"
        return "¹⁹F not measured in this region"
    return "not computed for this region"


def missing_reason(missing: Sequence[str], region: Mapping[str, Any], notes: Sequence[str] = ()) -> str:
    """e.g. "no PET at this timepoint: suv_peak missing; no sodium map at this timepoint: …"."""
    groups: dict[str, list[str]] = {}
    for name in missing:
        groups.setdefault(_why_missing(name, region, notes), []).append(name)
    return "; ".join(f"{why}: {', '.join(names)} missing" for why, names in groups.items())


def predict_regions(stats: TimepointStats, models: Sequence[PredictionModel]) -> dict[int, list[tuple[PredictionModel, Prediction]]]:
    """Every model's :class:`Prediction` for every region of a timepoint: {label: [(model, prediction)]}.

    A region whose type the card excludes (``applies_to``) or that lacks a needed measure gets a
    prediction without a value and with the reason.
    """
    result: dict[int, list[tuple[PredictionModel, Prediction]]] = {r.label: [] for r in stats.regions}
    for model in models:
        applies = model.card.applies_to
        answers: list[Prediction | int] = []  # a Prediction, or the index of a row to run
        rows: list[dict[str, float]] = []
        for region in stats.regions:
            values = region.values
            if applies is not None and region_type(str(values.get("name", ""))) not in applies:
                answers.append(Prediction(None, reason=f"the model applies to {' or '.join(applies)} regions only"))
                continue
            features, missing = region_features(values, stats.day, model.card)
            if missing:
                answers.append(Prediction(None, reason=missing_reason(missing, values, stats.notes)))
            else:
                answers.append(len(rows))
                rows.append(features)
        computed = model.predict_many(rows) if rows else []
        for region, answer in zip(stats.regions, answers):
            result[region.label].append((model, computed[answer] if isinstance(answer, int) else answer))
    return result


def prediction_entry(model: PredictionModel, prediction: Prediction) -> dict[str, Any]:
    """The §3 schema's ``prediction`` content for one model and region."""
    value = None if prediction.value is None else round(float(prediction.value), 6)
    interval = None if prediction.interval is None else [round(float(b), 6) for b in prediction.interval]
    return {
        "model": model.card.name,
        "version": model.card.version,
        "value": value,
        "interval": interval,
        "out_of_range": bool(prediction.out_of_range),
        "out_of_range_features": list(prediction.out_of_range),
        "demonstration": model.card.demonstration,
        "notice": model.card.notice,
        "reason": prediction.reason,
    }


#: Where :func:`fill_predictions` keeps every model's full :class:`Prediction` of every region
#: (``stats.details[PREDICTIONS_KEY]``: the models' (name, version) in order, and per region
#: label one Prediction per model — plain data, no model objects), so the prediction panel and
#: the report show the predictions of the result itself instead of running the models again.
PREDICTIONS_KEY = "predictions"


def _model_keys(models: Sequence[PredictionModel]) -> list[tuple[str, str]]:
    return [(m.card.name, m.card.version) for m in models]


def predictions_for(stats: TimepointStats, models: Sequence[PredictionModel]) -> dict[int, list[dict[str, Any]]]:
    """For `viewer stats`: {region label: [schema ``prediction`` dict per model, in model order]}."""
    return {
        label: [prediction_entry(model, prediction) for model, prediction in pairs]
        for label, pairs in predictions_of(stats, models).items()
    }


def predictions_of(stats: TimepointStats, models: Sequence[PredictionModel]
                   ) -> dict[int, list[tuple[PredictionModel, Prediction]]]:
    """{label: [(model, prediction)]}: the predictions the result's prediction step made, when
    it ran with these models (same names and versions, same order), else computed now."""
    kept = stats.details.get(PREDICTIONS_KEY)
    if kept is not None and kept["models"] == _model_keys(models) and set(kept["by_label"]) == {
            r.label for r in stats.regions}:
        return {label: list(zip(models, predictions)) for label, predictions in kept["by_label"].items()}
    return predict_regions(stats, models)


def fill_predictions(stats: TimepointStats, models: Sequence[PredictionModel]) -> None:
    """Fill each region's ``prediction`` (a list, one entry per model) and the notes that go
    with the models: the demonstration notice, and models that stopped giving predictions
    (out of time). With no model, a note says so. The analysis step applied to every result."""
    if not models:
        stats.notes.append("predictions: no prediction model is configured")
        return
    pairs = predict_regions(stats, models)
    stats.details[PREDICTIONS_KEY] = {"models": _model_keys(models),
                                      "by_label": {label: [p for _, p in row] for label, row in pairs.items()}}
    for region in stats.regions:
        entries = [prediction_entry(model, prediction) for model, prediction in pairs.get(region.label, [])]
        region.values["prediction"] = entries or None
    for model in models:
        card = model.card
        if card.demonstration:
            stats.notes.append(f"predictions of '{card.name}' {card.version}: {card.notice}")
    unavailable = [f"predictions: {model.unavailable}; its predictions are null"
                   for model in models if getattr(model, "unavailable", None)]
    stats.notes.extend(n for n in unavailable if n not in stats.notes)


__all__ = [
    "DEMONSTRATION_NOTICE",
    "PREDICTIONS_KEY",
    "Prediction",
    "PredictionModel",
    "bundled_model_paths",
    "fill_predictions",
    "load_bundled_models",
    "load_model",
    "load_models",
    "missing_reason",
    "predict_regions",
    "prediction_entry",
    "predictions_for",
    "predictions_of",
]
