"""Paired statistics of two training arms that predicted the same lesions.

A comparison pairs arm A (the baseline) with arm B (the proposal, e.g. with
synthetic augmentation). Its unit is the *cell* (repeat r, test fold k,
seed s): in a cell both arms predicted the same test lesions. Within one
(repeat, seed) every lesion is predicted once (cross-validation); every
repeat predicts it again under another partition; and lesions are clustered
in patients. Each function answers one question under those facts:

* :func:`cluster_bootstrap_difference`: the headline number. The accuracy
  difference B − A over every prediction of every cell, with a percentile
  interval from resampling *patients*, because a patient's lesions (and the
  repeated predictions of one lesion) are not independent. It measures the
  uncertainty from which patients were sampled, for these trained models.
* :func:`corrected_resampled_t`: Nadeau & Bengio's (2003) t over per-cell
  differences. Use it next to the bootstrap: it carries the randomness of
  training (folds, seeds) that a bootstrap over test patients does not see,
  and corrects the naive t for the overlap of cross-validation training sets.
* :func:`mcnemar_exact`: the exact test of one cross-validation run (one
  repeat and seed, each lesion once); per run, not pooled over repeats,
  since repeated predictions of a lesion are not independent pairs.
* :func:`delong_paired` (binary) and :func:`delong_macro_ovr` (macro
  one-vs-rest over classes): DeLong's test of two correlated AUCs, for one
  cross-validation run, as for McNemar. :func:`cluster_bootstrap_auc_difference`
  is the AUC's counterpart of the pooled, patient-resampled accuracy interval;
  :func:`macro_ovr_auc` is the AUC both use.
* :func:`wilson_interval`: the interval of one proportion (a sensitivity,
  a specificity, one arm's accuracy on one run);
  :func:`cluster_bootstrap_proportion` and :func:`cluster_bootstrap_auc`:
  one arm's pooled proportion and mean AUC with patient-resampled intervals.
* :func:`cluster_bootstrap_class_rates`: accuracy, balanced accuracy and
  per-class sensitivity and specificity of one or more arms with shared
  patient resamples, for intervals of each and of their paired differences.
* :func:`detectable_difference`: what the comparison could have found: the
  smallest accuracy difference a paired test of n lesions detects with 80%
  power (Connor 1987); it says whether "no evidence" means "no effect" or
  "too few lesions to tell".

Pure numpy/scipy; statsmodels and scikit-learn are imported inside the
functions that use them (statsmodels is slow to import).
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
from scipy import stats as st


def _nan_interval() -> list[float]:
    return [math.nan, math.nan]


def _percentile_interval(values: np.ndarray, confidence: float) -> list[float]:
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return [float(low), float(high)]


def _cluster_index(clusters: Sequence) -> tuple[np.ndarray, int]:
    """Cluster labels (any hashable type) as 0..G−1 and G."""
    labels = np.asarray(clusters)
    if labels.size == 0:
        return np.zeros(0, np.int64), 0
    _, index = np.unique(labels, return_inverse=True)
    index = index.reshape(-1)
    return index, int(index.max()) + 1


def _cluster_draw_counts(n_clusters: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_clusters): how often each resample drew each cluster.

    The counts are all a resample needs when its statistic is a weighted sum
    over predictions, so no resampled index arrays are built; one bincount
    over offset draws counts all resamples at once.
    """
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    draws += np.arange(n_boot)[:, None] * n_clusters  # resample r's clusters -> r·G + j
    counts = np.bincount(draws.ravel(), minlength=n_boot * n_clusters)
    return counts.reshape(n_boot, n_clusters).astype(np.float64)


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    Wilson (1927), "Probable inference, the law of succession, and
    statistical inference", JASA 22:209-212; computed by statsmodels'
    ``proportion_confint(method="wilson")``. Unlike the Wald interval it stays
    inside [0, 1] and keeps its coverage near 0 and 1 and for small n.

    Returns:
        (low, high); (nan, nan) when n == 0.
    """
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        return math.nan, math.nan
    low, high = proportion_confint(successes, n, alpha=1.0 - confidence, method="wilson")
    return float(low), float(high)


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict:
    """Exact McNemar test of two classifiers on the same lesions.

    McNemar (1947), "Note on the sampling error of the difference between
    correlated proportions or percentages", Psychometrika 12:153-157. Only the
    discordant lesions carry information; under no difference, B-only among
    them is Binomial(a_only + b_only, 1/2) (statsmodels'
    ``mcnemar(exact=True)``). The lesions must be independent pairs: use one
    prediction per lesion (one repeat and seed).

    Args:
        correct_a, correct_b: per lesion, whether arm A (B) was right.

    Returns:
        {"a_only": lesions A got right and B wrong, "b_only": the reverse,
        "n": lesions, "statistic": min(a_only, b_only), "pvalue": two-sided}.
    """
    from statsmodels.stats.contingency_tables import mcnemar

    a = np.asarray(correct_a, bool).reshape(-1)
    b = np.asarray(correct_b, bool).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"correct_a has {a.size} lesions, correct_b {b.size}")
    both, a_only, b_only, neither = (int(np.sum(a & b)), int(np.sum(a & ~b)),
                                     int(np.sum(~a & b)), int(np.sum(~a & ~b)))
    result = mcnemar([[both, a_only], [b_only, neither]], exact=True)
    return {"a_only": a_only, "b_only": b_only, "n": int(a.size),
            "statistic": float(result.statistic), "pvalue": float(result.pvalue)}


def cluster_bootstrap_difference(correct_a: Sequence[bool], correct_b: Sequence[bool],
                                 clusters: Sequence, *, n_boot: int = 2000, seed: int = 0,
                                 confidence: float = 0.95) -> dict:
    """Paired accuracy difference B − A with a patient-cluster bootstrap interval.

    The cluster (case) bootstrap of Davison & Hinkley (1997), "Bootstrap
    Methods and their Application", §3.8, and Field & Welsh (2007), "Bootstrapping
    clustered data", JRSS B 69:369-390: patients are drawn with replacement
    and a drawn patient brings all of its predictions, of every cell and both
    arms. That keeps the pairing of the arms, the correlation of a patient's
    lesions and of a lesion's repeated predictions; the interval is the
    percentile interval of the resampled differences.

    Args:
        correct_a, correct_b: per prediction (all cells pooled), whether
            arm A (B) was right.
        clusters: per prediction, its patient.

    Returns:
        {"difference": mean(B) − mean(A), "ci95": [low, high] at
        ``confidence``, "n_boot", "n_clusters", "n_predictions"}; the
        interval is NaN with fewer than two patients.
    """
    a = np.asarray(correct_a, np.float64).reshape(-1)
    b = np.asarray(correct_b, np.float64).reshape(-1)
    index, n_clusters = _cluster_index(clusters)
    if not a.shape == b.shape == index.shape:
        raise ValueError("correct_a, correct_b and clusters must have one entry per prediction")
    difference = float(b.mean() - a.mean()) if a.size else math.nan
    result = {"difference": difference, "ci95": _nan_interval(), "n_boot": 0,
              "n_clusters": n_clusters, "n_predictions": int(a.size)}
    if n_clusters < 2:
        return result
    # A resample's difference is sum(draws · per-patient sum of b − a) over
    # sum(draws · per-patient predictions): two matrix products in all.
    patient_sums = np.bincount(index, weights=b - a, minlength=n_clusters)
    patient_sizes = np.bincount(index, minlength=n_clusters).astype(np.float64)
    draws = _cluster_draw_counts(n_clusters, n_boot, seed)
    resampled = (draws @ patient_sums) / (draws @ patient_sizes)
    result.update(ci95=_percentile_interval(resampled, confidence), n_boot=int(n_boot))
    return result


def cluster_bootstrap_proportion(successes: Sequence[bool], counted: Sequence[bool],
                                 clusters: Sequence, *, n_boot: int = 2000, seed: int = 0,
                                 confidence: float = 0.95) -> dict:
    """A pooled proportion (a sensitivity, a specificity) with a patient-cluster
    bootstrap interval.

    The proportion is Σ successes / Σ counted over the predictions that count
    (for a sensitivity: the true positives among the lesions of the class);
    patients are resampled as in :func:`cluster_bootstrap_difference`, so the
    repeated predictions of one lesion and a patient's lesions move together.

    Args:
        successes: per prediction, whether it is a success (only read where
            ``counted``).
        counted: per prediction, whether it is in the denominator.
        clusters: per prediction, its patient.

    Returns:
        {"value", "ci95", "n": predictions counted, "n_clusters", "n_boot"};
        NaN value without a counted prediction, NaN interval with fewer than
        two patients among the counted ones.
    """
    hit = np.asarray(successes, bool).reshape(-1)
    used = np.asarray(counted, bool).reshape(-1)
    index, _ = _cluster_index(clusters)
    if not hit.shape == used.shape == index.shape:
        raise ValueError("successes, counted and clusters must have one entry per prediction")
    index, n_clusters = _cluster_index(index[used])
    hit = hit[used]
    result = {"value": float(hit.mean()) if hit.size else math.nan, "ci95": _nan_interval(),
              "n": int(hit.size), "n_clusters": n_clusters, "n_boot": 0}
    if n_clusters < 2:
        return result
    patient_hits = np.bincount(index, weights=hit.astype(np.float64), minlength=n_clusters)
    patient_sizes = np.bincount(index, minlength=n_clusters).astype(np.float64)
    draws = _cluster_draw_counts(n_clusters, n_boot, seed)
    resampled = (draws @ patient_hits) / (draws @ patient_sizes)
    result.update(ci95=_percentile_interval(resampled, confidence), n_boot=int(n_boot))
    return result


def cluster_bootstrap_class_rates(y_true: Sequence[int], y_preds: Sequence[Sequence[int]],
                                  clusters: Sequence, n_classes: int, *, n_boot: int = 2000,
                                  seed: int = 0) -> list[dict]:
    """Accuracy, balanced accuracy and each class's sensitivity and
    specificity of one or more arms on the same predictions, and their
    values in every patient-cluster resample (the draws of
    :func:`cluster_bootstrap_difference`, shared by the arms, so differences
    of resampled values are paired).

    Balanced accuracy is the mean of the classes' sensitivities (Brodersen et
    al. 2010, "The balanced accuracy and its posterior distribution", ICPR):
    a classifier that always answers one class scores 1/K, whatever the
    prior. A resample without a lesion of some class leaves that class's
    sensitivity undefined (NaN) and its balanced accuracy averages the
    others.

    Args:
        y_true: per prediction (all cells pooled), the true class.
        y_preds: per arm, per prediction, the predicted class.
        clusters: per prediction, its patient.
        n_classes: K.

    Returns:
        Per arm: {"accuracy", "balanced_accuracy": float, "sensitivity",
        "specificity": float [K], and "resampled": {the same names: [n_boot]
        or [n_boot, K] arrays}} (empty arrays with fewer than two patients).
        Use :func:`percentile_interval` on the resampled values.
    """
    y = np.asarray(y_true, np.int64).reshape(-1)
    index, n_clusters = _cluster_index(clusters)
    if index.shape != y.shape:
        raise ValueError("y_true and clusters must have one entry per prediction")
    truth = np.eye(n_classes, dtype=np.float64)[y]  # [n, K]
    draws = _cluster_draw_counts(n_clusters, n_boot, seed) if n_clusters >= 2 else None

    def per_patient(values):  # [n, K] -> [G, K]
        out = np.zeros((n_clusters, values.shape[1]))
        np.add.at(out, index, values)
        return out

    positives, negatives = per_patient(truth), per_patient(1.0 - truth)
    results = []
    for y_pred in y_preds:
        pred = np.eye(n_classes, dtype=np.float64)[np.asarray(y_pred, np.int64).reshape(-1)]
        if pred.shape != truth.shape:
            raise ValueError("every arm must have one prediction per entry of y_true")
        hits = per_patient(truth * pred)  # true c, called c
        rejections = per_patient((1.0 - truth) * (1.0 - pred))  # not c, not called c

        def rates(weights):
            with np.errstate(invalid="ignore", divide="ignore"):
                sens = (weights @ hits) / (weights @ positives)
                spec = (weights @ rejections) / (weights @ negatives)
                accuracy = (weights @ hits.sum(1)) / (weights @ positives.sum(1))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a resample lacking a class
                balanced = np.nanmean(sens, axis=-1)
            return {"accuracy": accuracy, "balanced_accuracy": balanced,
                    "sensitivity": sens, "specificity": spec}

        point = rates(np.ones(n_clusters))
        resampled = rates(draws) if draws is not None else \
            {k: np.zeros((0,) + np.shape(v)) for k, v in point.items()}
        results.append({**{k: (float(v) if np.ndim(v) == 0 else np.asarray(v))
                           for k, v in point.items()}, "resampled": resampled})
    return results


def rate_interval(value: float, bootstrap_ci: Sequence[float], n: int) -> list[float]:
    """The 95% interval of a rate (a sensitivity, a specificity): the patient
    bootstrap's, except at 0 or 1, where every resample gives the same rate
    and the percentile interval collapses to the point: there the Wilson
    interval of the n lesions it counts."""
    if np.isfinite(value) and value in (0.0, 1.0) and n > 0:
        return [float(v) for v in wilson_interval(value * n, n)]
    return [float(v) for v in bootstrap_ci]


def distinct_lesions_per_class(y_true: Sequence[int], lesions: Sequence, n_classes: int
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Per class, the distinct lesions of it and the distinct lesions of the
    other classes among pooled predictions (repeats predict each again)."""
    y = np.asarray(y_true, np.int64).reshape(-1)
    ids = np.asarray(lesions).astype(str).reshape(-1)
    total = len(set(ids.tolist()))
    positives = np.array([len(set(ids[y == c].tolist())) for c in range(n_classes)])
    return positives, total - positives


def percentile_interval(resampled: np.ndarray, confidence: float = 0.95) -> list:
    """The percentile interval of resampled values, [low, high] (NaN for no
    resample); along the first axis for [n_boot, K] arrays (one per column).
    Resamples in which the value is undefined (NaN) are left out."""
    resampled = np.asarray(resampled, np.float64)
    if resampled.shape[0] == 0 or np.all(np.isnan(resampled)):
        return _nan_interval() if resampled.ndim == 1 else [_nan_interval()] * resampled.shape[1]
    tail = (1.0 - confidence) / 2.0 * 100.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column
        low, high = np.nanpercentile(resampled, [tail, 100.0 - tail], axis=0)
    if resampled.ndim == 1:
        return [float(low), float(high)]
    return [[float(a), float(b)] for a, b in zip(low, high)]


def corrected_resampled_t(differences: Sequence[float], n_train: float, n_test: float,
                          confidence: float = 0.95) -> dict:
    """Corrected resampled t-test over the J per-cell differences.

    Nadeau & Bengio (2003), "Inference for the generalization error", Machine
    Learning 52:239-281. The cells' training sets overlap, so their
    differences are positively correlated and the naive variance σ²/J is too
    small; the correction replaces it by (1/J + n_test/n_train)·σ²
    (σ² the sample variance, ddof = 1). t = d̄ / √that, J − 1 degrees of
    freedom, two-sided p and the t interval d̄ ± t_{J−1}·√that.

    Args:
        differences: per cell, accuracy(B) − accuracy(A).
        n_train, n_test: lesions in a cell's training and test set.

    Returns:
        {"mean", "t", "df", "pvalue", "ci95", "n_cells"}; NaN t, p and
        interval when J < 2 or a difference is NaN. With identical differences (σ = 0) the interval
        is the point and t is ±inf (p = 0), or 0 (p = 1) if they are all 0.
    """
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"n_train and n_test must be positive, got {n_train}, {n_test}")
    d = np.asarray(differences, np.float64).reshape(-1)
    j = int(d.size)
    mean = float(d.mean()) if j else math.nan
    result = {"mean": mean, "t": math.nan, "df": max(j - 1, 0), "pvalue": math.nan,
              "ci95": _nan_interval(), "n_cells": j}
    if j < 2 or np.isnan(d).any():
        # one cell, or a cell whose metric is undefined (an AUC of a cell
        # lacking a class): no t
        return result
    se = math.sqrt((1.0 / j + n_test / n_train) * d.var(ddof=1))
    if se > 0:
        t = mean / se
        pvalue = float(2.0 * st.t.sf(abs(t), j - 1))
    else:
        t = math.copysign(math.inf, mean) if mean else 0.0
        pvalue = 0.0 if mean else 1.0
    half = float(st.t.ppf(0.5 + confidence / 2.0, j - 1)) * se
    result.update(t=float(t), pvalue=pvalue, ci95=[mean - half, mean + half])
    return result


def macro_ovr_auc(y_true: Sequence[int], probabilities: np.ndarray, n_classes: int) -> float:
    """Macro one-vs-rest ROC AUC; with two classes, the AUC of class 1.

    Hand & Till (2001) discuss multi-class AUCs; this is the plain average of
    the C one-vs-rest AUCs (class c against the rest, scored by column c),
    scikit-learn's ``roc_auc_score(multi_class="ovr", average="macro")``
    (which requires rows summing to 1).

    Args:
        y_true: class per lesion, 0..n_classes−1.
        probabilities: (lesions, n_classes).

    Returns:
        The AUC; NaN when some class is absent from ``y_true``.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true, np.int64).reshape(-1)
    p = np.asarray(probabilities, np.float64)
    if p.shape != (y.size, n_classes):
        raise ValueError(f"probabilities have shape {p.shape}, expected {(y.size, n_classes)}")
    if not np.isin(np.arange(n_classes), y).all():
        return math.nan
    if n_classes == 2:
        return float(roc_auc_score(y, p[:, 1]))
    return float(roc_auc_score(y, p, multi_class="ovr", average="macro",
                               labels=list(range(n_classes))))


def _placement_values(positive: np.ndarray, scores: np.ndarray
                      ) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's placement values by midranks (Sun & Xu 2014).

    With T_Z the midranks among all cases, T_X among the positives only and
    T_Y among the negatives only, T_Z − T_X of a positive counts the
    negatives below it (ties ½), so V10 = (T_Z − T_X)/n; likewise
    V01 = 1 − (T_Z − T_Y)/m for a negative. O((m + n) log(m + n)) instead of
    the m·n comparisons of the definition.
    """
    pos, neg = scores[positive], scores[~positive]
    m, n = pos.size, neg.size
    ranks_all = st.rankdata(np.concatenate([pos, neg]))
    v10 = (ranks_all[:m] - st.rankdata(pos)) / n
    v01 = 1.0 - (ranks_all[m:] - st.rankdata(neg)) / m
    return float(v10.mean()), v10, v01


def _normal_test(difference: float, variance: float, confidence: float) -> dict:
    """z, two-sided p and interval of a difference with a known variance."""
    se = math.sqrt(variance) if variance >= 0 else math.nan
    if se > 0:
        z = difference / se
        pvalue = float(2.0 * st.norm.sf(abs(z)))
    elif se == 0:  # both arms order every pair identically
        z = math.copysign(math.inf, difference) if difference else 0.0
        pvalue = 0.0 if difference else 1.0
    else:
        z = pvalue = math.nan
    half = float(st.norm.ppf(0.5 + confidence / 2.0)) * se
    return {"se": se, "z": float(z), "pvalue": pvalue,
            "ci95": [difference - half, difference + half]}


def _nan_delong(auc_a: float = math.nan, auc_b: float = math.nan) -> dict:
    return {"auc_a": auc_a, "auc_b": auc_b, "difference": auc_b - auc_a, "se": math.nan,
            "z": math.nan, "pvalue": math.nan, "ci95": _nan_interval()}


def delong_paired(y_true: Sequence[int], scores_a: Sequence[float], scores_b: Sequence[float],
                  confidence: float = 0.95) -> dict:
    """DeLong's test of two correlated AUCs on the same cases (binary task).

    DeLong, DeLong & Clarke-Pearson (1988), "Comparing the areas under two or
    more correlated receiver operating characteristic curves: a nonparametric
    approach", Biometrics 44:837-845, with the midrank algorithm of Sun & Xu
    (2014), "Fast implementation of DeLong's algorithm for comparing the areas
    under correlated receiver operating characteristic curves", IEEE Signal
    Processing Letters 21:1389-1393. Var(AUC_b − AUC_a) = L S10 L'/m +
    L S01 L'/n with L = (−1, 1) and S10, S01 the covariances (ddof = 1) of the
    placement values of the m positive and n negative cases.

    Args:
        y_true: 0/1 (or bool) per case, 1 the positive class.
        scores_a, scores_b: the arms' scores, higher meaning more positive.

    Returns:
        {"auc_a", "auc_b", "difference": auc_b − auc_a, "se", "z", "pvalue"
        (two-sided), "ci95"}; NaN where a class is absent, and NaN se, z, p
        and interval with fewer than two cases of a class.
    """
    y = np.asarray(y_true).astype(bool).reshape(-1)
    a = np.asarray(scores_a, np.float64).reshape(-1)
    b = np.asarray(scores_b, np.float64).reshape(-1)
    if not y.shape == a.shape == b.shape:
        raise ValueError("y_true, scores_a and scores_b must have one entry per case")
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        return _nan_delong()
    auc_a, v10_a, v01_a = _placement_values(y, a)
    auc_b, v10_b, v01_b = _placement_values(y, b)
    if m < 2 or n < 2:
        return _nan_delong(auc_a, auc_b)
    # L S L' for L = (−1, 1) is the sample variance of the differences of the
    # placement values.
    variance = float(np.var(v10_b - v10_a, ddof=1) / m + np.var(v01_b - v01_a, ddof=1) / n)
    return {"auc_a": auc_a, "auc_b": auc_b, "difference": auc_b - auc_a,
            **_normal_test(auc_b - auc_a, variance, confidence)}


def delong_macro_ovr(y_true: Sequence[int], prob_a: np.ndarray, prob_b: np.ndarray,
                     n_classes: int, confidence: float = 0.95) -> dict:
    """DeLong's test of the difference of two macro one-vs-rest AUCs.

    The macro AUC is the mean over classes c of the AUC of column c for class
    c against the rest (:func:`macro_ovr_auc`). Its variance comes from
    DeLong's structural components (DeLong et al. 1988; placement values by
    Sun & Xu 2014) of all classes and both arms together; see the comments.

    With two classes this *is* :func:`delong_paired` on column 1: the AUC of
    column 0 for class 0 equals that of column 1 for class 1 only when the
    rows sum to 1, so the binary task is defined by column 1 alone.

    Args:
        y_true: class per lesion, 0..n_classes−1.
        prob_a, prob_b: (lesions, n_classes) probabilities of the arms.

    Returns:
        {"auc_a", "auc_b" (macro AUCs), "difference": b − a, "se", "z",
        "pvalue" (two-sided), "ci95"}; NaN where a class is absent, and NaN
        se, z, p and interval if a class has fewer than two lesions or
        fewer than two lesions outside it.
    """
    y = np.asarray(y_true, np.int64).reshape(-1)
    pa = np.asarray(prob_a, np.float64)
    pb = np.asarray(prob_b, np.float64)
    if not pa.shape == pb.shape == (y.size, n_classes):
        raise ValueError(f"probabilities must have shape {(y.size, n_classes)}, "
                         f"got {pa.shape} and {pb.shape}")
    if n_classes == 2:
        return delong_paired(y == 1, pa[:, 1], pb[:, 1], confidence)
    counts = np.bincount(y, minlength=n_classes)
    if (counts == 0).any():
        return _nan_delong()
    # Each class's AUC is a two-sample U-statistic; its first-order influence
    # on lesion i is (V10_i − AUC)/m as one of the m positives of that class
    # and (V01_i − AUC)/n as one of its n negatives, and DeLong's
    # variance S10/m + S01/n is the sum over lesions of the squared influences
    # once 1/m² and 1/n² become 1/(m(m − 1)) and 1/(n(n − 1)) (the ddof = 1
    # of S10 and S01). Every lesion is a positive of its own class and a
    # negative of all the others, so the 2C AUCs are correlated across
    # classes as well as across arms. Summing each lesion's influences over
    # classes (weight 1/C) and arms (sign of b − a) *before* squaring gives
    # the variance of the macro difference with all of those covariances,
    # Var = Σ_i (Σ_{c,arm} w·influence_i)² = L S L' for the contrast L over
    # the full 2C × 2C covariance S. Within one class it is exactly DeLong's
    # binary variance; squaring per class and adding would drop the
    # cross-class terms.
    estimable = bool((counts >= 2).all() and (y.size - counts >= 2).all())
    influence = np.zeros(y.size)
    macro = {"a": 0.0, "b": 0.0}
    for c in range(n_classes):
        positive = y == c
        m, n = int(counts[c]), int(y.size - counts[c])
        for arm, probabilities, sign in (("a", pa, -1.0), ("b", pb, 1.0)):
            auc, v10, v01 = _placement_values(positive, probabilities[:, c])
            macro[arm] += auc / n_classes
            if estimable:
                influence[positive] += sign / n_classes * (v10 - auc) / math.sqrt(m * (m - 1))
                influence[~positive] += sign / n_classes * (v01 - auc) / math.sqrt(n * (n - 1))
    if not estimable:
        return _nan_delong(macro["a"], macro["b"])
    difference = macro["b"] - macro["a"]
    return {"auc_a": macro["a"], "auc_b": macro["b"], "difference": difference,
            **_normal_test(difference, float(np.sum(influence ** 2)), confidence)}


def _weighted_aucs(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of ``scores`` for ``positive`` with case weights, one per row of ``weights``.

    A bootstrap resample that drew a patient w times counts each of its
    predictions w times, so the resampled AUC is the Mann-Whitney statistic
    with case weights: Σ_pos w·(weight of negatives below + ½ tied) /
    (W_pos·W_neg). The scores never change between resamples, so they are
    sorted and grouped by distinct value once, and all resamples are summed
    per group together. NaN where a resample has no positive or no negative
    weight.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    sorted_weights = weights[:, order]
    sorted_positive = positive[order]
    # (resamples, distinct scores): the weight of positives and of negatives at each score
    positive_weight = np.add.reduceat(sorted_weights * sorted_positive, starts, axis=1)
    negative_weight = np.add.reduceat(sorted_weights * ~sorted_positive, starts, axis=1)
    negatives_below = np.cumsum(negative_weight, axis=1) - negative_weight
    pairs = positive_weight.sum(1) * negative_weight.sum(1)
    concordant = np.sum(positive_weight * (negatives_below + 0.5 * negative_weight), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, concordant / pairs, np.nan)


def _weighted_macro_aucs(y: np.ndarray, probabilities: np.ndarray, n_classes: int,
                         weights: np.ndarray) -> np.ndarray:
    """:func:`macro_ovr_auc` with case weights, one value per row of ``weights``."""
    if n_classes == 2:
        return _weighted_aucs(y == 1, probabilities[:, 1], weights)
    return np.mean([_weighted_aucs(y == c, probabilities[:, c], weights)
                    for c in range(n_classes)], axis=0)


def _resampled_mean_auc(y: np.ndarray, probabilities: np.ndarray, index: np.ndarray,
                        members: Sequence[np.ndarray], draws: np.ndarray,
                        n_classes: int) -> np.ndarray:
    """Per resample (row of ``draws``), the mean over cells of the weighted macro AUC."""
    resampled = np.zeros(len(draws))
    for rows in members:
        weights = draws[:, index[rows]]  # a prediction weighs as often as its patient was drawn
        resampled += _weighted_macro_aucs(y[rows], probabilities[rows], n_classes, weights)
    return resampled / len(members)


def cluster_bootstrap_auc(y_true: Sequence[int], probabilities: np.ndarray, clusters: Sequence,
                          cells: Sequence, *, n_classes: int, n_boot: int = 1000, seed: int = 0,
                          confidence: float = 0.95) -> dict:
    """One arm's mean-over-cells macro AUC with a patient bootstrap interval.

    The AUC of each cell (one trained model: a repeat, fold and seed) by
    :func:`macro_ovr_auc`, averaged over the cells: the predictions of
    different models are not pooled into one ranking, since their scores
    need not be on one scale. Patients are resampled as in
    :func:`cluster_bootstrap_auc_difference`.

    Returns:
        {"auc", "ci95", "n_boot": resamples used, "skipped", "n_clusters",
        "n_cells"}; NaN if some cell lacks a class.
    """
    y = np.asarray(y_true, np.int64).reshape(-1)
    p = np.asarray(probabilities, np.float64)
    cell_of = np.asarray(cells).reshape(-1)
    index, n_clusters = _cluster_index(clusters)
    if not (p.shape == (y.size, n_classes) and y.shape == cell_of.shape == index.shape):
        raise ValueError("y_true, probabilities, clusters and cells must describe the same "
                         "predictions")
    members = [np.flatnonzero(cell_of == cell) for cell in np.unique(cell_of)]
    auc = (float(np.mean([macro_ovr_auc(y[r], p[r], n_classes) for r in members]))
           if members else math.nan)
    result = {"auc": auc, "ci95": _nan_interval(), "n_boot": 0, "skipped": 0,
              "n_clusters": n_clusters, "n_cells": len(members)}
    if math.isnan(auc) or n_clusters < 2:
        return result
    resampled = _resampled_mean_auc(y, p, index, members,
                                    _cluster_draw_counts(n_clusters, n_boot, seed), n_classes)
    valid = resampled[~np.isnan(resampled)]
    result["skipped"] = int(n_boot - valid.size)
    if valid.size:
        result.update(ci95=_percentile_interval(valid, confidence), n_boot=int(valid.size))
    return result


def cluster_bootstrap_auc_difference(y_true: Sequence[int], prob_a: np.ndarray,
                                     prob_b: np.ndarray, clusters: Sequence, cells: Sequence,
                                     *, n_classes: int, n_boot: int = 500, seed: int = 0,
                                     confidence: float = 0.95) -> dict:
    """Mean-over-cells macro AUC difference B − A with a patient bootstrap interval.

    The AUC is computed within each cell (one trained model per arm) by
    :func:`macro_ovr_auc` and averaged over cells. The interval resamples
    patients as :func:`cluster_bootstrap_difference` does (Field & Welsh
    2007): a drawn patient brings its predictions in every cell; each
    resample's AUCs are computed with the draw counts as case weights.
    Resamples in which some cell lacks a class (or has only one) have no AUC
    there; they are skipped and counted.

    Args:
        y_true: class per prediction (all cells pooled).
        prob_a, prob_b: (predictions, n_classes) probabilities of the arms.
        clusters: patient per prediction.
        cells: cell id per prediction.

    Returns:
        {"difference", "ci95" (percentile, at ``confidence``), "n_boot":
        resamples used, "skipped": resamples skipped, "n_clusters"}; NaN
        difference and interval if some cell lacks a class in the data.
    """
    y = np.asarray(y_true, np.int64).reshape(-1)
    pa = np.asarray(prob_a, np.float64)
    pb = np.asarray(prob_b, np.float64)
    cell_of = np.asarray(cells).reshape(-1)
    index, n_clusters = _cluster_index(clusters)
    if not (pa.shape == pb.shape == (y.size, n_classes)
            and y.shape == cell_of.shape == index.shape):
        raise ValueError("y_true, prob_a, prob_b, clusters and cells must describe "
                         "the same predictions")
    members = [np.flatnonzero(cell_of == cell) for cell in np.unique(cell_of)]
    difference = float(np.mean([macro_ovr_auc(y[r], pb[r], n_classes)
                                - macro_ovr_auc(y[r], pa[r], n_classes) for r in members]))
    result = {"difference": difference, "ci95": _nan_interval(), "n_boot": 0,
              "skipped": 0, "n_clusters": n_clusters}
    if math.isnan(difference) or n_clusters < 2:
        return result
    draws = _cluster_draw_counts(n_clusters, n_boot, seed)
    resampled = (_resampled_mean_auc(y, pb, index, members, draws, n_classes)
                 - _resampled_mean_auc(y, pa, index, members, draws, n_classes))
    valid = resampled[~np.isnan(resampled)]
    result["skipped"] = int(n_boot - valid.size)
    if valid.size:
        result.update(ci95=_percentile_interval(valid, confidence), n_boot=int(valid.size))
    return result


def detectable_difference(discordant_fraction: float, n: int, *, alpha: float = 0.05,
                          power: float = 0.8) -> float:
    """The smallest accuracy difference a paired McNemar comparison could detect.

    Connor (1987), "Sample size for testing differences in proportions for
    the paired-sample design", Biometrics 43:207-211: with p_d the share of
    discordant lesions (exactly one arm right) and d the accuracy
    difference, a two-sided level-α test has the given power at
    n = (z_{1−α/2}·√p_d + z_power·√(p_d − d²))² / d²; solved here for d on
    (0, p_d] (|d| ≤ p_d always: only discordant lesions differ).

    Args:
        discordant_fraction: p_d, e.g. the mean discordance of the runs.
        n: lesions in one paired comparison.

    Returns:
        d as a fraction (0.09 = 9 points); NaN if p_d ≤ 0, n ≤ 0, or even
        d = p_d (one arm right on every discordant lesion) would need more
        than n lesions.
    """
    from scipy.optimize import brentq

    p_d = float(discordant_fraction)
    if not 0 < p_d <= 1 or n <= 0:
        return math.nan
    z_alpha, z_power = st.norm.ppf(1.0 - alpha / 2.0), st.norm.ppf(power)

    def lesions_needed_minus_n(d: float) -> float:
        # max(…, 0) only absorbs rounding at d = p_d = 1
        spread = z_alpha * math.sqrt(p_d) + z_power * math.sqrt(max(p_d - d * d, 0.0))
        return spread ** 2 / d ** 2 - n

    # lesions_needed falls from +inf as d grows, so there is one root when
    # the largest difference needs no more than n lesions.
    if lesions_needed_minus_n(p_d) > 0:
        return math.nan
    return float(brentq(lesions_needed_minus_n, 1e-12, p_d, xtol=1e-12))
