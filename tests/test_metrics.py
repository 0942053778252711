"""Metric formulas of Frid-Adar §4.1 on a hand-made confusion matrix."""
from __future__ import annotations

import numpy as np
import pytest

from keras_lesions.evaluate.metrics import confusion_matrix, mean_std_ci, metrics_from_confusion
from keras_lesions.evaluate.report import markdown_tables, summarize_predictions


def test_confusion_counts():
    matrix = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


def test_sensitivity_specificity_by_hand():
    # rows true, columns predicted: the paper's Table 3 layout
    matrix = np.array([[19, 1, 1],   # cyst: 21
                       [2, 15, 4],   # metastasis: 21
                       [0, 3, 17]])  # hemangioma: 20
    m = metrics_from_confusion(matrix, ["cyst", "metastasis", "hemangioma"])
    assert m["n"] == 62
    assert m["accuracy"] == pytest.approx(51 / 62)
    cyst = m["per_class"]["cyst"]
    # cyst vs rest: TP 19, FN 2, FP 2 (column), TN 62 - 19 - 2 - 2 = 39
    assert cyst["sensitivity"] == pytest.approx(19 / 21)
    assert cyst["specificity"] == pytest.approx(39 / 41)
    met = m["per_class"]["metastasis"]
    # TP 15, FN 6, FP 4, TN 37
    assert met["sensitivity"] == pytest.approx(15 / 21)
    assert met["specificity"] == pytest.approx(37 / 41)
    hem = m["per_class"]["hemangioma"]
    # TP 17, FN 3, FP 5, TN 37
    assert hem["specificity"] == pytest.approx(37 / 42)
    # support-weighted sensitivity equals total accuracy
    assert m["weighted_sensitivity"] == pytest.approx(m["accuracy"])
    expected_spec = (21 * 39 / 41 + 21 * 37 / 41 + 20 * 37 / 42) / 62
    assert m["weighted_specificity"] == pytest.approx(expected_spec)


def test_mean_std_ci():
    stats = mean_std_ci([0.7, 0.8, 0.9])
    assert stats["mean"] == pytest.approx(0.8)
    assert stats["std"] == pytest.approx(0.1)
    half = 4.303 * 0.1 / np.sqrt(3)
    assert stats["ci95"] == pytest.approx([0.8 - half, 0.8 + half])
    single = mean_std_ci([0.5])
    assert single["std"] == 0 and np.isnan(single["ci95"][0])


def test_summary_pools_folds_and_seeds():
    records = [
        {"fold": 0, "seed": 0, "y_true": [0, 1, 2], "y_pred": [0, 1, 1]},
        {"fold": 1, "seed": 0, "y_true": [0, 1], "y_pred": [0, 1]},
        {"fold": 0, "seed": 1, "y_true": [0, 1, 2], "y_pred": [0, 0, 2]},
        {"fold": 1, "seed": 1, "y_true": [0, 1], "y_pred": [0, 1]},
    ]
    summary = summarize_predictions(records, ["a", "b", "c"])
    assert summary["pooled"]["n"] == 10 and summary["pooled"]["accuracy"] == pytest.approx(0.8)
    assert summary["accuracy_by_seed"]["values"] == {"repeat0/seed0": pytest.approx(0.8),
                                                     "repeat0/seed1": pytest.approx(0.8)}
    assert summary["accuracy"]["n"] == 4
    # confusion averaged over the two seeds: counts per cross-validated test set
    assert np.sum(summary["confusion"]) == pytest.approx(5)
    text = markdown_tables(summary, "t")
    assert "| weighted average |" in text and "| true \\ predicted | a | b | c |" in text
