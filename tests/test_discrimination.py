"""AUC with a patient interval, operating points and calibration
(``evaluate.discrimination``), against scikit-learn and hand-computed examples."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from keras_lesions.evaluate import discrimination as disc
from keras_lesions.evaluate import stats
from keras_lesions.evaluate.report import markdown_tables, summarize_predictions, text_table


def _two_class(rng, n, strength):
    y = rng.integers(0, 2, n)
    score = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + strength * (2 * y - 1))))
    return y, np.stack([1 - score, score], 1)


def test_auc_of_one_model_is_scikit_learns_and_its_interval_holds_it():
    rng = np.random.default_rng(0)
    y, p = _two_class(rng, 120, 1.0)
    patients = np.repeat(np.arange(60), 2)  # two lesions per patient
    result = stats.cluster_bootstrap_auc(y, p, patients, np.zeros(120), n_classes=2, seed=1)
    assert result["auc"] == pytest.approx(roc_auc_score(y, p[:, 1]), abs=1e-12)
    low, high = result["ci95"]
    assert low < result["auc"] < high and 0 < high - low < 0.3
    assert result["n_clusters"] == 60 and result["n_cells"] == 1


def test_auc_is_the_mean_over_models_and_macro_ovr_for_three_classes():
    rng = np.random.default_rng(2)
    y = np.tile(np.arange(3), 40)
    logits = rng.normal(0, 1, (120, 3))
    logits[np.arange(120), y] += 1.5
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    cells = np.repeat([0, 1], 60)
    result = stats.cluster_bootstrap_auc(y, p, np.arange(120), cells, n_classes=3)
    expected = np.mean([roc_auc_score(y[c == cells], p[c == cells], multi_class="ovr")
                        for c in (0, 1)])
    assert result["auc"] == pytest.approx(expected, abs=1e-12)


def test_a_better_ranking_gets_a_higher_interval():
    rng = np.random.default_rng(3)
    y_weak, p_weak = _two_class(rng, 200, 0.2)
    y_strong, p_strong = _two_class(rng, 200, 2.0)
    weak = stats.cluster_bootstrap_auc(y_weak, p_weak, np.arange(200), np.zeros(200), n_classes=2)
    strong = stats.cluster_bootstrap_auc(y_strong, p_strong, np.arange(200), np.zeros(200),
                                         n_classes=2)
    assert weak["ci95"][1] < strong["ci95"][0]


def test_proportion_interval_resamples_patients():
    # 10 patients of 4 positives each; patients 0-5 found all, 6-9 none: 60%
    hit = np.repeat([True] * 6 + [False] * 4, 4)
    counted = np.ones(40, bool)
    result = stats.cluster_bootstrap_proportion(hit, counted, np.repeat(np.arange(10), 4))
    assert result["value"] == pytest.approx(0.6)
    by_lesion = stats.cluster_bootstrap_proportion(hit, counted, np.arange(40))
    # Whole patients move together: the interval is wider than treating lesions as independent.
    assert (result["ci95"][1] - result["ci95"][0]) > 1.5 * (by_lesion["ci95"][1]
                                                            - by_lesion["ci95"][0])
    one = stats.cluster_bootstrap_proportion(hit[:4], counted[:4], np.zeros(4))
    assert one["value"] == 1.0 and all(math.isnan(v) for v in one["ci95"])


def test_threshold_for_sensitivity_and_the_operating_point():
    positive = np.array([True] * 10 + [False] * 5)
    scores = np.r_[np.linspace(0.95, 0.5, 10), [0.1, 0.2, 0.55, 0.6, 0.9]]
    t = disc.threshold_for_sensitivity(positive, scores, 0.9)
    assert t == pytest.approx(0.55)  # the 9th highest of the positives' scores
    point = disc.operating_point(positive, scores, t)
    assert (point["tp"], point["fn"], point["tn"], point["fp"]) == (9, 1, 2, 3)
    assert point["sensitivity"] == pytest.approx(0.9)
    assert point["specificity"] == pytest.approx(0.4)
    assert disc.threshold_for_sensitivity(positive, scores, 1.0) == pytest.approx(0.5)
    assert math.isnan(disc.threshold_for_sensitivity(np.zeros(3, bool), scores[:3], 0.9))


def test_expected_calibration_error_by_hand():
    # confidences 0.9 (right), 0.81 (wrong), 0.6 and 0.55 (both right), 15 bins:
    # bin 13 |1 − 0.9|·1/4, bin 12 |0 − 0.81|·1/4, bin 8 |1 − 0.575|·2/4
    p = np.array([[0.9, 0.1], [0.81, 0.19], [0.4, 0.6], [0.55, 0.45]])
    y = np.array([0, 1, 1, 0])
    result = disc.calibration(y, p)
    assert result["ece"] == pytest.approx(0.1 / 4 + 0.81 / 4 + 0.425 / 2)
    filled = {i: b for i, b in enumerate(result["table"]) if b["n"]}
    assert sorted(filled) == [8, 12, 13]
    assert filled[8]["n"] == 2 and filled[8]["confidence"] == pytest.approx(0.575)
    assert filled[12]["accuracy"] == 0.0
    perfect = disc.calibration(np.array([0, 0, 1, 1]), np.array([[1.0, 0], [1, 0], [0, 1], [0, 1]]))
    assert perfect["ece"] == 0.0


def _records(rng, n_runs=3, n=40):
    records = []
    for run in range(n_runs):
        y, p = _two_class(rng, n, 1.2)
        vy, vp = _two_class(rng, n, 1.2)
        records.append({"fold": run, "seed": 0, "y_true": y, "y_pred": p.argmax(1),
                        "probabilities": p, "lesion_ids": [f"r{run}-{i}" for i in range(n)],
                        "validation": {"y_true": vy, "probabilities": vp}})
    return records


def test_summary_chooses_each_runs_threshold_on_its_validation_lesions():
    rng = np.random.default_rng(5)
    records = _records(rng)
    patient_of = {f"r{r}-{i}": f"p{i // 2}" for r in range(3) for i in range(40)}
    result = disc.discrimination_summary(records, ["benign", "malignant"], patient_of,
                                         target_sensitivity=0.95)
    chosen = result["at_validation_threshold"]
    assert result["positive_class"] == "malignant"
    expected_thresholds = [disc.threshold_for_sensitivity(
        r["validation"]["y_true"] == 1, r["validation"]["probabilities"][:, 1], 0.95)
        for r in records]
    assert chosen["thresholds"] == pytest.approx(expected_thresholds)
    called = np.concatenate([r["probabilities"][:, 1] >= t
                             for r, t in zip(records, expected_thresholds)])
    y = np.concatenate([r["y_true"] for r in records])
    assert chosen["sensitivity"] == pytest.approx(np.mean(called[y == 1]))
    assert chosen["specificity"] == pytest.approx(np.mean(~called[y == 0]))
    assert result["auc"]["resampled"] == "patients"

    benign = disc.discrimination_summary(records, ["benign", "malignant"], patient_of,
                                         positive_class="benign")
    assert benign["at_0.5"]["sensitivity"] == pytest.approx(result["at_0.5"]["specificity"],
                                                            abs=0.02)
    without = [{**r, "validation": None} for r in records]
    missing = disc.discrimination_summary(without, ["benign", "malignant"], patient_of)
    assert missing["at_validation_threshold"]["available"] is False


def test_reports_show_auc_calibration_and_operating_points(tmp_path):
    from keras_lesions.evaluate.report import write_summary

    records = _records(np.random.default_rng(6))
    summary = summarize_predictions(records, ["benign", "malignant"])
    text = markdown_tables(summary, "test")
    assert "ROC AUC of the positive class" in text and "expected calibration error" in text
    assert "chosen on validation for sensitivity ≥ 90.0%" in text
    assert "AUC:" in text_table(summary)
    paths = write_summary(summary, tmp_path, "arm", "arm")
    assert (tmp_path / "arm-reliability.png").stat().st_size > 1000 and len(paths) == 4
    # records without probabilities (hand-made tables) keep the paper's tables only
    plain = summarize_predictions([{k: r[k] for k in ("fold", "seed", "y_true", "y_pred")}
                                   for r in records], ["benign", "malignant"])
    assert "discrimination" not in plain and "AUC" not in markdown_tables(plain, "t")
