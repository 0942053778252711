"""The paired statistics of ``evaluate.stats``, each against an independent reference.

References: scipy's exact binomial test (McNemar), the Wilson formula written
out, DeLong's pairwise definition (a different algorithm from the midranks),
bootstrap standard errors and Hanley & McNeil's published CT ratings (DeLong), scikit-learn (AUCs), the formulas of
Nadeau & Bengio and Connor computed by hand, the cluster-robust standard
error, and coverage on simulated nulls (cluster bootstrap).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st
from sklearn.metrics import roc_auc_score

from keras_lesions.evaluate import stats


def _softmax_probabilities(rng, y, strength, n_classes):
    """Probabilities that favour the true class by ``strength`` logits."""
    logits = rng.normal(0.0, 1.0, (len(y), n_classes))
    logits[np.arange(len(y)), y] += strength
    e = np.exp(logits)
    return e / e.sum(1, keepdims=True)


# McNemar and Wilson


def test_mcnemar_exact_is_the_binomial_test_of_the_discordant_lesions():
    from statsmodels.stats.contingency_tables import mcnemar

    # 30 both right, 9 only A, 2 only B, 10 both wrong
    a = np.array([1] * 30 + [1] * 9 + [0] * 2 + [0] * 10, bool)
    b = np.array([1] * 30 + [0] * 9 + [1] * 2 + [0] * 10, bool)
    result = stats.mcnemar_exact(a, b)
    assert (result["a_only"], result["b_only"], result["n"]) == (9, 2, 51)
    assert result["pvalue"] == pytest.approx(st.binomtest(2, 11, 0.5).pvalue, rel=1e-12)
    reference = mcnemar([[30, 9], [2, 10]], exact=True)
    assert (result["statistic"], result["pvalue"]) == (reference.statistic, reference.pvalue)
    # no discordant lesion: no evidence at all
    assert stats.mcnemar_exact(a, a)["pvalue"] == 1.0
    with pytest.raises(ValueError):
        stats.mcnemar_exact(a, b[:-1])


def test_wilson_interval_is_the_wilson_formula():
    low, high = stats.wilson_interval(8, 10)
    z, p, n = st.norm.ppf(0.975), 0.8, 10
    centre = (p + z ** 2 / (2 * n)) / (1 + z ** 2 / n)
    half = z / (1 + z ** 2 / n) * math.sqrt(p * (1 - p) / n + z ** 2 / (4 * n ** 2))
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)  # the textbook 8/10
    assert all(math.isnan(v) for v in stats.wilson_interval(0, 0))


# DeLong


def _delong_by_definition(y, a, b):
    """DeLong et al. (1988) written out: the m·n kernel ψ, the placement
    values V10 (per positive) and V01 (per negative), S10 and S01, and
    Var = L S10 L'/m + L S01 L'/n with L = (−1, 1)."""
    y = np.asarray(y, bool)
    v10, v01, aucs = [], [], []
    for scores in (a, b):
        pos, neg = scores[y], scores[~y]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    s10, s01 = np.cov(np.vstack(v10)), np.cov(np.vstack(v01))
    contrast = np.array([-1.0, 1.0])
    variance = contrast @ s10 @ contrast / y.sum() + contrast @ s01 @ contrast / (~y).sum()
    return aucs, math.sqrt(variance)


def test_delong_midranks_equal_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(3)
    y = rng.random(90) < 0.4
    a = np.round(rng.normal(y * 1.0, 1.0), 1)  # rounded to tenths: many ties
    b = np.round(0.6 * a + rng.normal(y * 0.5, 0.8), 1)
    result = stats.delong_paired(y, a, b)
    (auc_a, auc_b), se = _delong_by_definition(y, a, b)
    assert result["auc_a"] == pytest.approx(auc_a, abs=1e-12)
    assert result["auc_b"] == pytest.approx(auc_b, abs=1e-12)
    assert result["auc_a"] == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert result["se"] == pytest.approx(se, rel=1e-10)
    z = (auc_b - auc_a) / se
    assert result["z"] == pytest.approx(z, rel=1e-10)
    assert result["pvalue"] == pytest.approx(2 * st.norm.sf(abs(z)), rel=1e-9)
    half = st.norm.ppf(0.975) * se
    assert result["ci95"] == pytest.approx([auc_b - auc_a - half, auc_b - auc_a + half])


def test_delong_se_agrees_with_a_paired_bootstrap():
    rng = np.random.default_rng(7)
    y = np.r_[np.ones(100, bool), np.zeros(120, bool)]
    a = rng.normal(y * 1.0, 1.0)
    b = 0.5 * a + rng.normal(y * 0.9, 0.9)  # correlated with a: the pairing matters
    se = stats.delong_paired(y, a, b)["se"]
    # stratified (m and n fixed, as in DeLong's variance) paired bootstrap,
    # AUCs by rank sums
    m, n, resamples = 100, 120, 3000
    rows = np.hstack([rng.integers(0, m, (resamples, m)), m + rng.integers(0, n, (resamples, n))])

    def aucs(scores):
        ranks = st.rankdata(scores[rows], axis=1)
        return (ranks[:, :m].sum(1) - m * (m + 1) / 2) / (m * n)

    assert se == pytest.approx(np.std(aucs(b) - aucs(a)), rel=0.10)


def test_delong_on_hanley_and_mcneils_published_ct_ratings():
    """The published example: Hanley & McNeil (1982, Radiology 143:29, Table 1),
    one radiologist's 5-point ratings of 109 CT images, 58 normal and 51
    abnormal. They report an area of 0.893 with a standard error of 0.032
    from their exponential approximation; DeLong's nonparametric variance of
    the same area is close to it but not equal (about 0.031)."""
    normal = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    abnormal = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    y = np.r_[np.ones(len(abnormal), bool), np.zeros(len(normal), bool)]
    ratings = np.r_[abnormal, normal].astype(float)
    # against a constant score (area 0.5, no variance, no covariance), the
    # paired difference's standard error is the single area's
    result = stats.delong_paired(y, np.zeros_like(ratings), ratings)
    assert round(result["auc_b"], 3) == 0.893
    assert result["se"] == pytest.approx(0.032, abs=0.002)
    assert result["se"] == pytest.approx(_delong_by_definition(y, np.zeros_like(ratings),
                                                               ratings)[1], rel=1e-10)


def test_delong_degenerate_inputs_give_nan_or_certainty_not_errors():
    y = np.array([1, 1, 0, 0, 0])
    s = np.array([0.9, 0.6, 0.5, 0.2, 0.1])
    assert math.isnan(stats.delong_paired(np.zeros(5), s, s)["pvalue"])  # no positive
    same = stats.delong_paired(y, s, s)
    assert (same["difference"], same["se"], same["pvalue"]) == (0.0, 0.0, 1.0)
    one_positive = stats.delong_paired(np.array([1, 0, 0, 0, 0]), s, s[::-1])
    assert one_positive["auc_a"] == 1.0 and math.isnan(one_positive["se"])


def test_delong_macro_is_binary_delong_for_two_classes():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 120)
    pa, pb = _softmax_probabilities(rng, y, 1.0, 2), _softmax_probabilities(rng, y, 1.5, 2)
    assert stats.delong_macro_ovr(y, pa, pb, 2) == stats.delong_paired(y == 1, pa[:, 1], pb[:, 1])


def test_delong_macro_se_agrees_with_a_bootstrap_for_three_classes():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 3, 240)
    pa = _softmax_probabilities(rng, y, 1.0, 3)
    pb = 0.5 * pa + 0.5 * _softmax_probabilities(rng, y, 1.6, 3)  # correlated arms
    result = stats.delong_macro_ovr(y, pa, pb, 3)
    assert result["difference"] == pytest.approx(
        roc_auc_score(y, pb, multi_class="ovr") - roc_auc_score(y, pa, multi_class="ovr"),
        abs=1e-12)
    # bootstrap over lesions (class counts vary, as in the data), AUCs by rank sums
    resamples = 2000
    rows = rng.integers(0, len(y), (resamples, len(y)))

    def macro_aucs(probabilities):
        total = np.zeros(resamples)
        for c in range(3):
            positive = y[rows] == c
            m = positive.sum(1)
            ranks = st.rankdata(probabilities[rows, c], axis=1)
            total += ((ranks * positive).sum(1) - m * (m + 1) / 2) / (m * (len(y) - m))
        return total / 3

    assert result["se"] == pytest.approx(np.std(macro_aucs(pb) - macro_aucs(pa)), rel=0.10)
    identical = stats.delong_macro_ovr(y, pa, pa, 3)
    assert (identical["difference"], identical["se"], identical["pvalue"]) == (0.0, 0.0, 1.0)


def test_macro_auc_is_sklearns_and_one_for_perfect_scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    p = _softmax_probabilities(rng, y, 1.0, 3)
    assert stats.macro_ovr_auc(y, p, 3) == pytest.approx(
        roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=1e-15)
    assert stats.macro_ovr_auc(y, np.eye(3)[y], 3) == 1.0
    y2 = rng.integers(0, 2, 40)
    p2 = _softmax_probabilities(rng, y2, 1.0, 2)
    assert stats.macro_ovr_auc(y2, p2, 2) == roc_auc_score(y2, p2[:, 1])
    assert math.isnan(stats.macro_ovr_auc(np.zeros(5, int), np.eye(3)[np.zeros(5, int)], 3))


# Cluster bootstraps


def _null_experiment(rng, n_patients=60, repeats=2):
    """Two arms with no true difference: patients of 1-4 lesions, each lesion
    predicted once per repeat. Correctness shares a patient ability and a
    lesion difficulty between arms; a patient × arm and a lesion × arm effect
    (mean 0) make the arms' differences cluster within patients."""
    sizes = rng.integers(1, 5, n_patients)
    patient = np.repeat(np.arange(n_patients), sizes)
    n_lesions = len(patient)
    ability = rng.normal(0.8, 1.0, n_patients)[patient]
    difficulty = rng.normal(0.0, 1.0, n_lesions)
    arm_effect = (rng.normal(0.0, 0.7, (2, n_patients))[:, patient]
                  + rng.normal(0.0, 0.5, (2, n_lesions)))
    noise = rng.normal(0.0, 0.5, (repeats, 2, n_lesions))
    correct = ability + difficulty + arm_effect + noise > 0  # (repeats, arm, lesion)
    return correct[:, 0].ravel(), correct[:, 1].ravel(), np.tile(patient, repeats)


def test_cluster_bootstrap_covers_a_null_difference_about_95_percent():
    rng = np.random.default_rng(11)
    experiments = 300
    covered = covered_ignoring_patients = 0
    for _ in range(experiments):
        a, b, patient = _null_experiment(rng)
        seed = int(rng.integers(1 << 31))
        low, high = stats.cluster_bootstrap_difference(a, b, patient, n_boot=500, seed=seed)["ci95"]
        covered += low <= 0 <= high
        low, high = stats.cluster_bootstrap_difference(a, b, np.arange(len(a)), n_boot=500,
                                                       seed=seed)["ci95"]
        covered_ignoring_patients += low <= 0 <= high
    assert 0.90 <= covered / experiments <= 0.99
    # resampling predictions as if independent is too narrow here
    assert covered_ignoring_patients / experiments < 0.90


def test_cluster_bootstrap_width_matches_the_cluster_robust_standard_error():
    rng = np.random.default_rng(4)
    a, b, patient = _null_experiment(rng, n_patients=150)
    b = b | (rng.random(len(b)) < 0.25)  # and a true gain
    result = stats.cluster_bootstrap_difference(a, b, patient, n_boot=4000, seed=1)
    d = b.astype(float) - a
    assert result["difference"] == pytest.approx(d.mean(), abs=1e-15)
    assert (result["n_clusters"], result["n_predictions"], result["n_boot"]) == (150, len(d), 4000)
    # the ratio estimator's sandwich SE: sum over patients of (Σd − d̄·size)²
    residual_sums = np.bincount(patient, weights=d - d.mean())
    se = math.sqrt(np.sum(residual_sums ** 2)) / len(d)
    low, high = result["ci95"]
    assert (high - low) / (2 * st.norm.ppf(0.975)) == pytest.approx(se, rel=0.10)
    assert low > 0


def test_weighted_auc_of_a_resample_is_sklearns_auc_of_the_repeated_rows():
    rng = np.random.default_rng(8)
    y = rng.integers(0, 3, 50)
    p = np.round(_softmax_probabilities(rng, y, 1.0, 3), 2)  # rounded: ties
    counts = rng.integers(0, 3, (4, 50)).astype(float)
    weighted = stats._weighted_macro_aucs(y, p, 3, counts)
    for row, value in zip(counts, weighted):
        rows = np.repeat(np.arange(50), row.astype(int))
        # sklearn's macro one-vs-rest, class by class (the rounded rows no
        # longer sum to 1, which its multi-class form insists on)
        reference = np.mean([roc_auc_score(y[rows] == c, p[rows, c]) for c in range(3)])
        assert value == pytest.approx(reference, abs=1e-12)


def test_auc_bootstrap_difference_interval_and_skipped_resamples():
    rng = np.random.default_rng(2)
    n = 160
    y = rng.integers(0, 3, n)
    patient = np.arange(n) // 2
    cells = np.arange(n) % 2
    pa, pb = _softmax_probabilities(rng, y, 0.5, 3), _softmax_probabilities(rng, y, 2.5, 3)
    result = stats.cluster_bootstrap_auc_difference(y, pa, pb, patient, cells, n_classes=3,
                                                    n_boot=300)
    by_cell = [roc_auc_score(y[cells == c], pb[cells == c], multi_class="ovr")
               - roc_auc_score(y[cells == c], pa[cells == c], multi_class="ovr") for c in (0, 1)]
    assert result["difference"] == pytest.approx(np.mean(by_cell), abs=1e-12)
    low, high = result["ci95"]
    assert 0 < low <= result["difference"] <= high
    assert (result["n_boot"], result["skipped"], result["n_clusters"]) == (300, 0, 80)

    # class 2 only in patient 0: a resample without patient 0 (probability
    # (1 − 1/G)^G) has no class 2 and is skipped
    y = np.where(patient == 0, 2, rng.integers(0, 2, n))
    resamples = 1000
    result = stats.cluster_bootstrap_auc_difference(y, pa, pb, patient, cells, n_classes=3,
                                                    n_boot=resamples)
    expected = (1 - 1 / 80) ** 80 * resamples
    assert result["skipped"] + result["n_boot"] == resamples
    assert abs(result["skipped"] - expected) < 4 * math.sqrt(expected * (1 - expected / resamples))


# Nadeau & Bengio, Connor


def test_corrected_resampled_t_by_hand():
    d = np.array([0.03, 0.061, 0.133, -0.01, 0.05])
    result = stats.corrected_resampled_t(d, n_train=121, n_test=61)
    mean = d.sum() / 5
    sample_variance = np.sum((d - mean) ** 2) / 4
    se = math.sqrt((1 / 5 + 61 / 121) * sample_variance)
    t = mean / se
    assert result["mean"] == pytest.approx(mean)
    assert result["t"] == pytest.approx(t)
    assert (result["df"], result["n_cells"]) == (4, 5)
    assert result["pvalue"] == pytest.approx(2 * st.t.sf(abs(t), 4))
    half = st.t.ppf(0.975, 4) * se
    assert result["ci95"] == pytest.approx([mean - half, mean + half])
    # the correction widens the naive t interval of the same differences
    naive = st.ttest_1samp(d, 0.0)
    assert result["pvalue"] > naive.pvalue
    single = stats.corrected_resampled_t([0.1], 10, 5)
    assert single["mean"] == 0.1 and all(math.isnan(single[k]) for k in ("t", "pvalue"))
    assert all(math.isnan(v) for v in single["ci95"])


def test_detectable_difference_solves_connors_formula():
    d = stats.detectable_difference(0.2, 182)
    assert 0.08 <= d <= 0.10
    z_alpha, z_power = st.norm.ppf(0.975), st.norm.ppf(0.8)
    lesions = (z_alpha * math.sqrt(0.2) + z_power * math.sqrt(0.2 - d * d)) ** 2 / d ** 2
    assert lesions == pytest.approx(182, rel=1e-9)
    assert (stats.detectable_difference(0.2, 1000) < d
            < stats.detectable_difference(0.2, 60) < stats.detectable_difference(0.2, 40))
    assert math.isnan(stats.detectable_difference(0.0, 182))
    assert math.isnan(stats.detectable_difference(0.2, 5))  # even d = p_d needs more lesions
