"""What a reader of a clinical classifier expects beside accuracy: ROC AUC,
sensitivity and specificity at stated operating points, and calibration.

* **AUC**: for two classes, the ROC AUC of the positive class's probability;
  for more, the macro one-vs-rest AUC. Computed within each trained model
  (cell) and averaged, with a patient bootstrap interval
  (:func:`keras_lesions.evaluate.stats.cluster_bootstrap_auc`).
* **Operating points** (two classes): sensitivity and specificity at the
  0.5 threshold, and at a threshold chosen per run on its *validation*
  patients for a target sensitivity, then applied once to its test fold:
  no threshold ever reads a test prediction.
* **Calibration**: the top-label expected calibration error over 15
  equal-width confidence bins (Guo et al. 2017, "On calibration of modern
  neural networks", ICML, use 15 bins) and its reliability diagram.

Pure numpy (scikit-learn through ``stats``); nothing here trains or reads
files (``write_reliability_png`` writes its picture).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from keras_lesions.errors import KerasLesionsError
from keras_lesions.evaluate import stats

ECE_BINS = 15  # Guo et al. 2017 §5 (and the request): 15 equal-width bins
DEFAULT_TARGET_SENSITIVITY = 0.9  # our choice: a screening-style operating point
BOOTSTRAP_RESAMPLES = 1000


def threshold_for_sensitivity(y_positive: Sequence[bool], scores: Sequence[float],
                              target: float) -> float:
    """The largest threshold t at which ``scores >= t`` finds at least a share
    ``target`` of the positives (the sensitivity asked for, on these lesions).

    Returns:
        t; NaN without positives.
    """
    positive = np.asarray(y_positive, bool).reshape(-1)
    s = np.asarray(scores, np.float64).reshape(-1)
    found = np.sort(s[positive])[::-1]
    if not found.size:
        return math.nan
    # ceil(target · n) positives must lie at or above t: t is the k-th largest
    # positive score (a small tolerance keeps 0.9 · 10 from rounding up to 10).
    k = max(1, min(found.size, math.ceil(target * found.size - 1e-9)))
    return float(found[k - 1])


def operating_point(y_positive: Sequence[bool], scores: Sequence[float],
                    threshold: float) -> dict:
    """Counts, sensitivity and specificity when ``scores >= threshold`` is called positive."""
    positive = np.asarray(y_positive, bool).reshape(-1)
    called = np.asarray(scores, np.float64).reshape(-1) >= threshold
    tp, fn = int(np.sum(called & positive)), int(np.sum(~called & positive))
    tn, fp = int(np.sum(~called & ~positive)), int(np.sum(called & ~positive))
    return {"threshold": float(threshold), "tp": tp, "fn": fn, "tn": tn, "fp": fp,
            "sensitivity": tp / (tp + fn) if tp + fn else math.nan,
            "specificity": tn / (tn + fp) if tn + fp else math.nan}


def calibration(y_true: Sequence[int], probabilities: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Top-label calibration: per confidence bin, the mean confidence and the
    accuracy, and the expected calibration error

        ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b|

    where the confidence of a prediction is its largest probability and bin b
    holds the confidences in ((b − 1)/B, b/B] (the first bin includes 0).

    Returns:
        {"ece", "bins": B, "n", "table": [{"low", "high", "n", "confidence",
        "accuracy"}] for every bin (NaN means in empty bins)}.
    """
    y = np.asarray(y_true, np.int64).reshape(-1)
    p = np.asarray(probabilities, np.float64)
    if p.ndim != 2 or len(p) != y.size:
        raise ValueError(f"probabilities have shape {p.shape} for {y.size} labels")
    confidence = p.max(1) if y.size else np.zeros(0)
    correct = (p.argmax(1) == y) if y.size else np.zeros(0, bool)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        members = which == b
        n = int(members.sum())
        conf = float(confidence[members].mean()) if n else math.nan
        acc = float(correct[members].mean()) if n else math.nan
        if n:
            ece += n / y.size * abs(acc - conf)
        table.append({"low": b / bins, "high": (b + 1) / bins, "n": n, "confidence": conf,
                      "accuracy": acc})
    return {"ece": float(ece) if y.size else math.nan, "bins": bins, "n": int(y.size),
            "table": table}


def positive_index(class_names: Sequence[str], positive_class: str | None) -> int:
    """The index of the positive class of a two-class task: the one named, or
    the second class (e.g. "malignant" after "benign")."""
    if positive_class is None:
        return 1
    if positive_class not in class_names:
        raise KerasLesionsError(f"positive class {positive_class!r} is not one of the classes "
                                f"{', '.join(class_names)}")
    return list(class_names).index(positive_class)


def discrimination_summary(records: Sequence[dict], class_names: Sequence[str],
                           patient_of: Mapping[str, str] | None = None, *,
                           positive_class: str | None = None,
                           target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
                           seed: int = 0) -> dict:
    """AUC, operating points and calibration of one arm's test predictions.

    Args:
        records: one per run (cell), each with "probabilities" [n, classes],
            "y_true", "lesion_ids", and, to choose a threshold on validation,
            "validation": {"probabilities", "y_true"} of its validation
            patients (or None).
        class_names: the class order.
        patient_of: lesion id -> patient, the bootstrap's unit (without it,
            every lesion is its own patient, which the result says).
        positive_class: two classes: the positive one (default the second).
        target_sensitivity: the sensitivity the validation threshold aims at.

    Returns:
        {"auc": {"value", "ci95", "kind", ...}, "calibration": ..., and for
        two classes "positive_class", "at_0.5" and "at_validation_threshold"
        (sensitivity and specificity with patient-bootstrap intervals)}.
    """
    k = len(class_names)
    y = np.concatenate([np.asarray(r["y_true"], np.int64) for r in records])
    p = np.concatenate([np.asarray(r["probabilities"], np.float64) for r in records])
    lesions = np.concatenate([np.asarray(r["lesion_ids"]).astype(str) for r in records])
    cells = np.concatenate([np.full(len(r["y_true"]), i) for i, r in enumerate(records)])
    clusters = (np.array([patient_of[i] for i in lesions.tolist()]) if patient_of is not None
                else lesions)
    auc = stats.cluster_bootstrap_auc(y, p, clusters, cells, n_classes=k,
                                      n_boot=BOOTSTRAP_RESAMPLES, seed=seed)
    result = {
        "auc": {"value": auc["auc"], "ci95": auc["ci95"], "n_cells": auc["n_cells"],
                "kind": ("ROC AUC of the positive class" if k == 2
                         else "macro one-vs-rest ROC AUC"),
                "resampled": "patients" if patient_of is not None else "lesions"},
        "calibration": calibration(y, p),
    }
    if k != 2:
        return result
    pos = positive_index(class_names, positive_class)
    positive = y == pos
    result["positive_class"] = class_names[pos]
    at_half = p[:, pos] >= 0.5
    result["at_0.5"] = _point(at_half, positive, clusters, seed, threshold=0.5)
    thresholds, called = [], []
    for r in records:
        validation = r.get("validation")
        if validation is None or not len(validation["y_true"]):
            thresholds = None
            break
        t = threshold_for_sensitivity(np.asarray(validation["y_true"]) == pos,
                                      np.asarray(validation["probabilities"])[:, pos],
                                      target_sensitivity)
        thresholds.append(t)
        called.append(np.asarray(r["probabilities"], np.float64)[:, pos] >= t)
    if thresholds is None or any(math.isnan(t) for t in thresholds):
        result["at_validation_threshold"] = {
            "target_sensitivity": target_sensitivity, "available": False,
            "why": ("no validation predictions with a positive lesion to choose it on (runs "
                    "of selection: paper and external tests have none)")}
    else:
        result["at_validation_threshold"] = {
            **_point(np.concatenate(called), positive, clusters, seed,
                     threshold=float(np.median(thresholds))),
            "target_sensitivity": target_sensitivity, "available": True,
            "thresholds": [float(t) for t in thresholds]}
    return result


def _point(called: np.ndarray, positive: np.ndarray, clusters: np.ndarray, seed: int,
           threshold: float) -> dict:
    sensitivity = stats.cluster_bootstrap_proportion(called, positive, clusters,
                                                     n_boot=BOOTSTRAP_RESAMPLES, seed=seed)
    specificity = stats.cluster_bootstrap_proportion(~called, ~positive, clusters,
                                                     n_boot=BOOTSTRAP_RESAMPLES, seed=seed)
    return {"threshold": threshold,
            "sensitivity": sensitivity["value"], "sensitivity_ci95": sensitivity["ci95"],
            "specificity": specificity["value"], "specificity_ci95": specificity["ci95"]}


def write_reliability_png(calibration_result: dict, path, title: str) -> None:
    """The reliability diagram: accuracy against confidence per bin, with the
    diagonal of perfect calibration and the bins' counts."""
    # A bare Figure (no pyplot): no global backend switch, nothing left open.
    from matplotlib.figure import Figure

    from keras_lesions.io import save_figure

    table = calibration_result["table"]
    width = 1.0 / calibration_result["bins"]
    fig = Figure(figsize=(4.5, 5.2))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    filled = [b for b in table if b["n"]]
    top.bar([b["low"] for b in filled], [b["accuracy"] for b in filled], width=width,
            align="edge", color="tab:blue", edgecolor="white", label="accuracy in the bin")
    top.plot([0, 1], [0, 1], color="gray", linestyle="--", label="perfect calibration")
    top.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled], "o",
             color="tab:red", markersize=3, label="at the bin's mean confidence")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.legend(fontsize=7, loc="upper left")
    ece = calibration_result["ece"]
    top.set_title(f"{title}\nECE {100 * ece:.1f}% ({calibration_result['bins']} bins, "
                  f"n = {calibration_result['n']})", fontsize=9)
    bottom.bar([b["low"] for b in table], [b["n"] for b in table], width=width, align="edge",
               color="gray")
    bottom.set_xlabel("confidence (largest probability)")
    bottom.set_ylabel("predictions")
    bottom.set_xlim(0, 1)
    save_figure(fig, path)
