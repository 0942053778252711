"""The experiment's primary metric (``evaluate.primary_metric``): what the
choices maximise on validation patients and what the verdicts compare.

* "accuracy": total accuracy, as Frid-Adar et al. 2018 and Ben-Cohen et al.
  2019 report (their configs keep it);
* "balanced_accuracy": the mean of the classes' sensitivities
  (``metrics``), which a majority-class classifier cannot inflate;
* "auc": macro one-vs-rest ROC AUC, the mean over trained models (cells).

Every value comes with a 95% patient-bootstrap interval
(``stats.cluster_bootstrap_class_rates``, ``stats.cluster_bootstrap_auc``).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from keras_lesions.evaluate import stats
from keras_lesions.evaluate.report import prediction_clusters

LABELS = {"accuracy": "total accuracy", "balanced_accuracy": "balanced accuracy",
          "auc": "macro AUC"}
BOOTSTRAP_RESAMPLES = 2000
AUC_RESAMPLES = 300  # AUCs are slower to recompute; 300 percentiles are stable to ~0.5 points


def label(metric: str) -> str:
    """The metric's name in a sentence."""
    return LABELS[metric]


def pooled(records: Sequence[dict], field: str) -> np.ndarray:
    return np.concatenate([np.asarray(r[field]) for r in records])


def cells_of(records: Sequence[dict]) -> np.ndarray:
    """Per pooled prediction, the index of the run (cell) that made it."""
    return np.concatenate([np.full(len(r["y_true"]), i) for i, r in enumerate(records)])


def metric_interval(records: Sequence[dict], metric: str, n_classes: int,
                    patient_of: Mapping[str, str] | None = None, *, seed: int = 0) -> dict:
    """One arm's primary metric over its runs' pooled predictions (AUC: the
    mean over its runs) with a 95% patient-bootstrap interval.

    Args:
        records: ``crossval.run_record``-like dicts with "y_true", "y_pred",
            "lesion_ids" (and "probabilities" for the AUC).

    Returns:
        {"metric", "value", "ci95"}.
    """
    if not records:
        return {"metric": metric, "value": math.nan, "ci95": [math.nan, math.nan]}
    y_true = pooled(records, "y_true")
    clusters, _ = prediction_clusters(records, patient_of)
    if metric == "auc":
        result = stats.cluster_bootstrap_auc(y_true, pooled(records, "probabilities"), clusters,
                                             cells_of(records), n_classes=n_classes,
                                             n_boot=AUC_RESAMPLES, seed=seed)
        return {"metric": metric, "value": result["auc"], "ci95": result["ci95"]}
    (rates,) = stats.cluster_bootstrap_class_rates(y_true, [pooled(records, "y_pred")], clusters,
                                                   n_classes, n_boot=BOOTSTRAP_RESAMPLES,
                                                   seed=seed)
    return {"metric": metric, "value": rates[metric],
            "ci95": stats.percentile_interval(rates["resampled"][metric])}


def cell_value(record: dict, metric: str, n_classes: int) -> float:
    """The primary metric of one run's predictions."""
    y_true, y_pred = np.asarray(record["y_true"]), np.asarray(record["y_pred"])
    if metric == "auc":
        return stats.macro_ovr_auc(y_true, np.asarray(record["probabilities"]), n_classes)
    if metric == "accuracy":
        return float(np.mean(y_true == y_pred))
    present = np.unique(y_true)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in present]))


def saturation_tolerance(best: dict, fixed: float | None, fraction: float) -> float:
    """The saturation tolerance (``evaluate.saturation_tolerance`` /
    ``saturation_fraction``): ``fixed`` if set, else ``fraction`` × the
    half-width of the best point's 95% interval (0 when it has none)."""
    if fixed is not None:
        return float(fixed)
    low, high = best.get("ci95", [math.nan, math.nan])
    if not (np.isfinite(low) and np.isfinite(high)):
        return 0.0
    return float(fraction * (high - low) / 2.0)
