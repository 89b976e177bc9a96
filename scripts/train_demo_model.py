"""Train the viewer's DEMONSTRATION prediction model on a SIMULATED cohort and write it as
ONNX + model card (PRODUCT.md §4, issue #6).

    .venv/bin/python scripts/train_demo_model.py --out resources/models [--n 4000] [--seed 20170301]

Writes ``penumbra_recovery_demo.onnx`` and its card ``penumbra_recovery_demo.json``. Same
``--n`` and ``--seed`` → the same cohort, the same coefficients and the same card metrics
(tests/core/test_predict.py checks this against the shipped files). Needs the ``test``/``dev``
extras (scikit-learn, skl2onnx, onnx); the viewer itself only needs onnxruntime.

demonstration model — simulated data — not for clinical decisions
====================================================================

Nothing below was fitted to patient data. The model exists so that the prediction panel, the
report and `viewer stats` have a real ONNX model and a complete card to show. Every
coefficient of the simulation is INVENTED; the references only anchor the direction of the
effects and the order of magnitude of the rates.

What is simulated
-----------------
One row = one ischaemic *penumbra* region of one patient, imaged once, 1–28 days after an
intravenous infusion of ¹⁹F-labelled, Gd-co-labelled mesenchymal stromal cells (MSC). The
outcome is whether that penumbra is *salvaged at the day-90 follow-up* (does not become part
of the final infarct). Day 90 is the usual primary time point of the cell-therapy stroke
trials below [1, 2].

Features (the numbers the viewer computes, PRODUCT.md §3), and how they are drawn:

1. ``days_since_transplant`` ~ Uniform(1, 28) days.
2. Total ¹⁹F-detected labelled cells in the brain T ~ LogNormal(median 6·10⁴, σ_ln 0.7), the
   order of magnitude of the demo study (≈ 6·10⁴ cells). Cell counting from ¹⁹F as in [6].
3. ``homing_fraction`` h ~ Beta(8m, 8(1−m)), m = 0.05 + 0.60·(1 − e^(−day/8)): cells reach the
   penumbra over the first weeks (the demo study: 5 % → 38 % → 64 % at days 1, 7, 21). Invented.
4. ``dead_fraction`` d ~ Beta(12m, 12(1−m)), m = 0.03 + 0.15·(1 − e^(−day/10)). Invented.
5. ``live_cells`` = T·h·(1 − d), as the viewer computes it (§3).
6. ``sodium_mean_mM`` (TSC) ~ Normal(56, 5) mM clipped to [42, 72]: between healthy tissue
   (< 45 mM) and infarct (≈ 70 mM; regions > 70 mM were infarcted) [4, 5].
7. ``suv_peak`` ~ Normal(5.5, 1.0) clipped to [2.5, 9.5] (the demo study's penumbra ≈ 5.7–6.3).

Outcome model (log-odds; every coefficient invented for the demonstration)::

    logit P(salvaged) = −0.2
                        + 1.0 · (log10(1 + live_cells) − 4.4)   more live cells homed → better
                        + 1.5 · (homing_fraction − 0.5)         more of the graft in the penumbra
                        − 4.0 · (dead_fraction − 0.12)          graft death/rejection → worse
                        − 0.12 · (TSC − 56 mM)                  TSC rising towards 70 mM → infarct [4, 5]
                        + 0.25 · (SUVpeak − 5.5)                mild: preserved metabolism
                        + u,   u ~ Normal(0, 0.6)               unmeasured patient factors (age,
                                                                severity, collaterals, reperfusion)

``days_since_transplant`` has no direct effect (it acts through homing and death); the model
is given it so that its coefficient should come out near 0 — a visible sanity check. The
unmeasured term u caps the achievable discrimination, as in real cohorts.

The overall salvage rate comes out ≈ 45 %. It was *chosen* to lie in a 30–60 % band around
the favourable-outcome proportions of cell-therapy stroke trials — e.g. in TREASURE [2]
(MultiStem vs placebo, day 90) mRS ≤ 2 in 35 % vs 24 % and Barthel index ≥ 95 in 32 % vs 26 %;
MASTERS [1] showed no difference in day-90 global stroke recovery; small MSC series [3] and
the Cochrane review [7] describe safety with uncertain efficacy. Those are *patient-level*
functional outcomes; no published base rate exists for region-level salvage, so the 45 % is
a demonstration choice, not a literature value.

Training and validation
-----------------------
The cohort is split 60/20/20 (fixed seed) into training, calibration and test rows. A
scikit-learn ``StandardScaler`` + ``LogisticRegression`` (C = 1) is fitted on the training
rows, with ``live_cells`` entered as log10(1 + live_cells) (card ``transform: log10p1``,
applied by the viewer). It is converted to ONNX with skl2onnx (zipmap disabled, output
``probabilities``), and every metric is computed from the ONNX model through onnxruntime:

- validation AUC and Brier score on the test rows;
- a split-conformal 90 % interval (α = 0.1) for the region's *true* salvage probability:
  scores |p_true − p̂| on the calibration rows, q = their ⌈(n+1)(1−α)⌉-th smallest value
  (Vovk et al.; Lei et al. 2018 [8]). This is only possible because the simulation knows
  p_true; the card states it. Test-row coverage is reported as a check.

Training ranges are the training rows' min/max (rounded outwards to 3 significant digits);
baselines (the reference point of the contributions) are the training medians.

References
----------
[1] Hess DC, Wechsler LR, Clark WM, et al. Safety and efficacy of multipotent adult progenitor
    cells in acute ischaemic stroke (MASTERS): a randomised, double-blind, placebo-controlled,
    phase 2 trial. Lancet Neurol 2017;16(5):360–368. doi:10.1016/S1474-4422(17)30046-7
[2] Houkin K, Osanai T, Uchiyama S, et al. Allogeneic stem cell therapy for acute ischemic
    stroke: the phase 2/3 TREASURE randomized clinical trial. JAMA Neurol 2024;81(2):154–162.
    doi:10.1001/jamaneurol.2023.5200
[3] Honmou O, Houkin K, Matsunaga T, et al. Intravenous administration of auto serum-expanded
    autologous mesenchymal stem cells in stroke. Brain 2011;134(6):1790–1807.
[4] Thulborn KR, Gindin TS, Davis D, Erb P. Comprehensive MR imaging protocol for stroke
    management: tissue sodium concentration as a measure of tissue viability in nonhuman
    primate studies and in clinical studies. Radiology 1999;213(1):156–166.
    doi:10.1148/radiology.213.1.r99se15156
[5] Thulborn KR, et al. Sodium MR imaging of acute and subacute stroke for assessment of tissue
    viability. Neuroimaging Clin N Am 2005;15(3):639–653. doi:10.1016/j.nic.2005.08.003
[6] Ahrens ET, Flores R, Xu H, Morel PA. In vivo imaging platform for tracking
    immunotherapeutic cells. Nat Biotechnol 2005;23(8):983–987.
[7] Boncoraglio GB, Ranieri M, Bersano A, Parati EA, Del Giovane C. Stem cell transplantation
    for ischemic stroke. Cochrane Database Syst Rev 2019;5:CD007231.
    doi:10.1002/14651858.CD007231.pub3
[8] Lei J, G'Sell M, Rinaldo A, Tibshirani RJ, Wasserman L. Distribution-free predictive
    inference for regression. J Am Stat Assoc 2018;113(523):1094–1111.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from viewer.core.predict.card import DEMONSTRATION_NOTICE, parse_card

DEFAULT_N = 4000
DEFAULT_SEED = 20170301
STEM = "penumbra_recovery_demo"
ALPHA = 0.1

#: (card feature name, units, transform) in ONNX column order.
FEATURES: tuple[tuple[str, str, str], ...] = (
    ("live_cells", "cells", "log10p1"),
    ("homing_fraction", "", "none"),
    ("dead_fraction", "", "none"),
    ("sodium_mean_mM", "mM", "none"),
    ("suv_peak", "SUV", "none"),
    ("days_since_transplant", "days", "none"),
)

#: The invented outcome model (log-odds), see the module docstring.
TRUE_MODEL = {
    "intercept": -0.2,
    "log10_live_cells": (1.0, 4.4),
    "homing_fraction": (1.5, 0.5),
    "dead_fraction": (-4.0, 0.12),
    "sodium_mean_mM": (-0.12, 56.0),
    "suv_peak": (0.25, 5.5),
    "unmeasured_sd": 0.6,
}

REFERENCES = [
    (
        "Hess DC, Wechsler LR, Clark WM, et al. Safety and efficacy of multipotent adult progenitor cells in acute "
        "ischaemic stroke (MASTERS): a randomised, double-blind, placebo-controlled, phase 2 trial. Lancet Neurol "
        "2017;16(5):360-368. doi:10.1016/S1474-4422(17)30046-7"
    ),
    (
        "Houkin K, Osanai T, Uchiyama S, et al. Allogeneic stem cell therapy for acute ischemic stroke: the phase 2/3 "
        "TREASURE randomized clinical trial. JAMA Neurol 2024;81(2):154-162. doi:10.1001/jamaneurol.2023.5200"
    ),
    (
        "Honmou O, Houkin K, Matsunaga T, et al. Intravenous administration of auto serum-expanded autologous "
        "mesenchymal stem cells in stroke. Brain 2011;134(6):1790-1807."
    ),
    (
        "Thulborn KR, Gindin TS, Davis D, Erb P. Comprehensive MR imaging protocol for stroke management: tissue sodium "
        "concentration as a measure of tissue viability in nonhuman primate studies and in clinical studies. Radiology "
        "1999;213(1):156-166. doi:10.1148/radiology.213.1.r99se15156"
    ),
    (
        "Thulborn KR, et al. Sodium MR imaging of acute and subacute stroke for assessment of tissue viability. "
        "Neuroimaging Clin N Am 2005;15(3):639-653. doi:10.1016/j.nic.2005.08.003"
    ),
    (
        "Ahrens ET, Flores R, Xu H, Morel PA. In vivo imaging platform for tracking immunotherapeutic cells. "
        "Nat Biotechnol 2005;23(8):983-987."
    ),
    (
        "Boncoraglio GB, Ranieri M, Bersano A, Parati EA, Del Giovane C. Stem cell transplantation for ischemic stroke. "
        "Cochrane Database Syst Rev 2019;5:CD007231. doi:10.1002/14651858.CD007231.pub3"
    ),
    (
        "Lei J, G'Sell M, Rinaldo A, Tibshirani RJ, Wasserman L. Distribution-free predictive inference for regression. "
        "J Am Stat Assoc 2018;113(523):1094-1111."
    ),
]


def simulate(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The simulated cohort: raw features, the true salvage probability and the outcome."""
    day = rng.uniform(1.0, 28.0, n)
    total = np.exp(rng.normal(math.log(6e4), 0.7, n))
    m_h = 0.05 + 0.60 * (1.0 - np.exp(-day / 8.0))
    homing = rng.beta(8.0 * m_h, 8.0 * (1.0 - m_h))
    m_d = 0.03 + 0.15 * (1.0 - np.exp(-day / 10.0))
    dead = rng.beta(12.0 * m_d, 12.0 * (1.0 - m_d))
    live = total * homing * (1.0 - dead)
    sodium = np.clip(rng.normal(56.0, 5.0, n), 42.0, 72.0)
    suv = np.clip(rng.normal(5.5, 1.0, n), 2.5, 9.5)
    unmeasured = rng.normal(0.0, TRUE_MODEL["unmeasured_sd"], n)
    t = TRUE_MODEL
    logit = (
        t["intercept"]
        + t["log10_live_cells"][0] * (np.log10(1.0 + live) - t["log10_live_cells"][1])
        + t["homing_fraction"][0] * (homing - t["homing_fraction"][1])
        + t["dead_fraction"][0] * (dead - t["dead_fraction"][1])
        + t["sodium_mean_mM"][0] * (sodium - t["sodium_mean_mM"][1])
        + t["suv_peak"][0] * (suv - t["suv_peak"][1])
        + unmeasured
    )
    p_true = 1.0 / (1.0 + np.exp(-logit))
    outcome = (rng.uniform(0.0, 1.0, n) < p_true).astype(np.int64)
    raw = np.column_stack([live, homing, dead, sodium, suv, day])
    return {"raw": raw, "p_true": p_true, "y": outcome}


def _transform(raw: np.ndarray) -> np.ndarray:
    """The ONNX input: the card's transforms applied (log10p1 for live_cells)."""
    x = raw.copy()
    for j, (_, _, transform) in enumerate(FEATURES):
        if transform == "log10p1":
            x[:, j] = np.log10(1.0 + np.maximum(x[:, j], 0.0))
    return x


def _sig(value: float, digits: int = 3, direction: str = "nearest") -> float:
    """Round to significant digits (outwards for range ends)."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    scale = 10.0 ** (digits - 1 - math.floor(math.log10(abs(value))))
    op = {"down": math.floor, "up": math.ceil, "nearest": round}[direction]
    return float(op(value * scale) / scale)


def train(n: int = DEFAULT_N, seed: int = DEFAULT_SEED) -> tuple[bytes, dict]:
    """Simulate, fit, convert and validate; returns (ONNX bytes, card dict)."""
    import onnxruntime
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import brier_score_loss, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if n < 100:
        raise SystemExit("--n must be at least 100")
    rng = np.random.default_rng(seed)
    cohort = simulate(n, rng)
    order = rng.permutation(n)
    n_train, n_cal = int(0.6 * n), int(0.2 * n)
    train_rows, cal_rows, test_rows = order[:n_train], order[n_train:n_train + n_cal], order[n_train + n_cal:]
    x = _transform(cohort["raw"])
    y, p_true = cohort["y"], cohort["p_true"]

    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    pipeline.fit(x[train_rows], y[train_rows])
    onnx_model = to_onnx(
        pipeline, x[:1].astype(np.float32), target_opset={"": 17, "ai.onnx.ml": 3},
        options={LogisticRegression: {"zipmap": False}},
    )
    onnx_bytes = onnx_model.SerializeToString()

    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    p_hat = session.run(["probabilities"], {input_name: x.astype(np.float32)})[0][:, 1].astype(float)
    p_sklearn = pipeline.predict_proba(x)[:, 1]
    if np.max(np.abs(p_hat - p_sklearn)) > 1e-4:
        raise SystemExit("the ONNX model does not reproduce scikit-learn's probabilities")

    auc = float(roc_auc_score(y[test_rows], p_hat[test_rows]))
    brier = float(brier_score_loss(y[test_rows], p_hat[test_rows]))
    scores = np.sort(np.abs(p_true[cal_rows] - p_hat[cal_rows]))
    rank = min(len(scores), math.ceil((len(scores) + 1) * (1 - ALPHA)))
    q = float(scores[rank - 1])
    coverage = float(np.mean(np.abs(p_true[test_rows] - p_hat[test_rows]) <= q))

    scaler, logistic = pipeline[0], pipeline[-1]
    beta = logistic.coef_[0] / scaler.scale_
    intercept = float(logistic.intercept_[0] - np.sum(logistic.coef_[0] * scaler.mean_ / scaler.scale_))

    raw_train = cohort["raw"][train_rows]
    features = []
    for j, (name, units, transform) in enumerate(FEATURES):
        low = _sig(float(raw_train[:, j].min()), 3, "down")
        high = _sig(float(raw_train[:, j].max()), 3, "up")
        baseline = min(max(_sig(float(np.median(raw_train[:, j])), 3), low), high)
        entry = {"name": name, "units": units, "source": name if name != "days_since_transplant" else "timepoint.day",
                 "training_range": [low, high], "baseline": baseline}
        if transform != "none":
            entry["transform"] = transform
        features.append(entry)

    prevalence = float(np.mean(y))
    card = {
        "card_format": 1,
        "name": "Penumbra salvage at day 90 (demonstration)",
        "version": "1.0.0",
        "intended_use": (
            "Demonstrates the viewer's per-region predictions, explanations and warnings. Trained on simulated data "
            "with invented effect sizes: for software testing and teaching only. Not for clinical or research "
            "decisions."
        ),
        "demonstration": True,
        "notice": DEMONSTRATION_NOTICE,
        "outcome": {
            "name": "penumbra_salvaged_day90",
            "meaning": (
                "Probability that this ischaemic penumbra region is salvaged at the day-90 follow-up (does not become "
                "part of the final infarct), given one imaging timepoint 1-28 days after intravenous MSC transplantation."
            ),
        },
        "applies_to": ["penumbra"],
        "features": features,
        "onnx": {"output": "probabilities", "column": 1},
        "linear": {
            "space": "logit",
            "intercept": intercept,
            "coefficients": {name: float(b) for (name, _, _), b in zip(FEATURES, beta)},
        },
        "interval": {
            "method": "conformal",
            "alpha": ALPHA,
            "q": q,
            "n": len(cal_rows),
            "description": (
                "Split-conformal 90 % interval for the region's true salvage probability: q is the "
                f"ceil((n+1)(1-alpha))-th smallest |p_true - p_hat| over {len(cal_rows)} held-out calibration rows. "
                "Only possible because the simulation knows p_true; valid for the simulated population only."
            ),
        },
        "training_data": {
            "description": (
                f"{n} simulated penumbra regions (one patient, one imaging timepoint each; {len(train_rows)} for "
                f"training, {len(cal_rows)} for the conformal calibration, {len(test_rows)} for validation). Features "
                "drawn in the ranges of the viewer's demo study; outcome from an invented logistic model "
                "(more live cells homed to the penumbra, lower dead fraction, lower TSC -> more likely salvaged; mild "
                "SUVpeak effect; unmeasured patient factors, sd 0.6 on the log-odds). Simulated salvage rate "
                f"{100 * prevalence:.0f} %, chosen within 30-60 % around the favourable-outcome proportions of "
                "cell-therapy stroke trials (MASTERS, TREASURE); no published region-level base rate exists. "
                "Coefficients are invented, not estimated from patients. Full assumptions: scripts/train_demo_model.py."
            ),
            "n": int(n),
            "simulated": True,
            "settings": {"n": int(n), "seed": int(seed), "split": [0.6, 0.2, 0.2], "true_model": TRUE_MODEL,
                         "prevalence": prevalence},
            "references": REFERENCES,
        },
        "validation": {
            "metric": "AUC",
            "value": auc,
            "n": len(test_rows),
            "description": "ROC AUC of the ONNX model on held-out simulated rows (not on patients).",
            "extra": {"brier_score": brier, "interval_coverage": coverage},
        },
        "licence": "BSD-3-Clause (same as the viewer)",
        "references": REFERENCES,
        "notes": (
            "Model: StandardScaler + LogisticRegression (scikit-learn), converted with skl2onnx (opset 17, zipmap off). "
            "Contributions are exact in the logit space (coefficient x (t(x) - t(baseline)), t = the feature's "
            "transform)."
        ),
    }
    parse_card(json.loads(json.dumps(card)), f"{STEM}.json")  # the card must pass the viewer's own checks
    return onnx_bytes, card


def write(out: Path, onnx_bytes: bytes, card: dict) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    onnx_path, card_path = out / f"{STEM}.onnx", out / f"{STEM}.json"
    onnx_path.write_bytes(onnx_bytes)
    card_path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return onnx_path, card_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the .onnx and the .json card")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help=f"simulated regions (default {DEFAULT_N})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    onnx_bytes, card = train(args.n, args.seed)
    onnx_path, card_path = write(args.out, onnx_bytes, card)
    validation = card["validation"]
    print(f"wrote {onnx_path} ({len(onnx_bytes)} bytes) and {card_path}")
    print(f"n={args.n} seed={args.seed} salvage rate={card['training_data']['settings']['prevalence']:.3f} "
          f"AUC={validation['value']:.4f} Brier={validation['extra']['brier_score']:.4f} "
          f"conformal q={card['interval']['q']:.4f} coverage={validation['extra']['interval_coverage']:.3f} "
          f"({time.perf_counter() - start:.1f} s)")
    print(DEMONSTRATION_NOTICE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
