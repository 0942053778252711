"""Classification metrics of Frid-Adar et al. 2018 §4.1, in plain numpy.

    Accuracy    = Σ_c TP_c / N
    Sensitivity_c = TP_c / (TP_c + FN_c)        (one class vs the rest)
    Specificity_c = TN_c / (TN_c + FP_c)

Averages over classes are weighted by support (the number of true lesions of
each class), as the paper's Tables 2 and 7 report them; with that weighting
the average sensitivity equals the total accuracy, so a classifier that
learns the majority class of an imbalanced set scores well on it. Beyond the
paper, for imbalanced sets:

    Balanced accuracy = (1/K) Σ_c Sensitivity_c    (unweighted mean)
    F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c);  macro F1 = (1/K) Σ_c F1_c
    Majority-class baseline = max_c support_c / N   (always the largest class)
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Counts [true class, predicted class], int64 (num_classes, num_classes)."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return matrix


def metrics_from_confusion(matrix: np.ndarray, class_names: Sequence[str]) -> dict:
    """Total accuracy, per-class sensitivity/specificity and their weighted means.

    Args:
        matrix: confusion counts [true, predicted].
        class_names: names in matrix order.

    Returns:
        dict with "accuracy", "balanced_accuracy", "macro_f1",
        "majority_class" and "majority_accuracy" (the majority-class
        baseline), "per_class" {name: {sensitivity, specificity, f1,
        support}}, "weighted_sensitivity", "weighted_specificity", "n".
        A class without true cases has NaN sensitivity and is left out of
        the balanced accuracy and macro F1.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    total = matrix.sum()
    tp = np.diag(matrix)
    support = matrix.sum(1)
    predicted = matrix.sum(0)
    fn = support - tp
    fp = predicted - tp
    tn = total - tp - fn - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = np.where(support > 0, tp / support, np.nan)
        specificity = np.where(tn + fp > 0, tn / (tn + fp), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    weights = support / total if total else np.zeros_like(support)
    present = support > 0
    majority = int(np.argmax(support)) if len(support) else 0
    return {
        "n": int(total),
        "accuracy": float(tp.sum() / total) if total else float("nan"),
        "balanced_accuracy": float(sensitivity[present].mean()) if present.any()
        else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "majority_class": class_names[majority] if len(support) else None,
        "majority_accuracy": float(support[majority] / total) if total else float("nan"),
        "weighted_sensitivity": float(np.nansum(sensitivity * weights)),
        "weighted_specificity": float(np.nansum(specificity * weights)),
        "per_class": {
            name: {"sensitivity": float(sensitivity[i]), "specificity": float(specificity[i]),
                   "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
    }


# Two-sided 97.5% quantiles of Student's t for small samples (df 1..30): enough
# for CIs over a handful of seeds without a scipy dependency in this module.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def mean_std_ci(values: Sequence[float]) -> dict:
    """Mean, sample std and a 95% t confidence interval of the mean.

    With a single value, std is 0 and the interval is undefined (NaN).
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    std = float(values.std(ddof=1)) if n > 1 else 0.0
    if n > 1:
        t = _T975[min(n - 1, len(_T975)) - 1] if n - 1 <= len(_T975) else 1.96
        half = t * std / math.sqrt(n)
        ci = (mean - half, mean + half)
    else:
        ci = (float("nan"), float("nan"))
    return {"mean": mean, "std": std, "ci95": list(ci), "n": n}
