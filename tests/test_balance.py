"""Imbalanced classes: class-balanced training, balanced metrics, and verdicts
that watch every class's sensitivity (issue 15)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from keras_lesions.config import ConfigError, load_config
from keras_lesions.evaluate.metrics import metrics_from_confusion
from keras_lesions.evaluate.primary import metric_interval, saturation_tolerance
from keras_lesions.evaluate.crossval import saturation_point
from keras_lesions.evaluate.report import markdown_tables, summarize_predictions, text_table
from keras_lesions.evaluate.verdict import HELPED, MIXED, compare_arms
from keras_lesions.pipeline import balanced_pass, epoch_batches, one_hot, step_batches
from keras_lesions.train.balance import balance_record, class_weights, sample_weights

# ---------------------------------------------------------------- training


def _imbalanced_labels():
    # 10 of class 0, 30 of class 1, 20 of class 2
    return np.repeat([0, 1, 2], [10, 30, 20])


def test_class_weights_equalise_the_classes_loss_mass():
    labels = _imbalanced_labels()
    targets = one_hot(labels, 3)
    weights = class_weights(targets)
    # n / (K · n_c): 60 / (3 · 10), 60 / (3 · 30), 60 / (3 · 20)
    np.testing.assert_allclose(weights, [2.0, 2 / 3, 1.0])
    per_case = sample_weights(targets)
    mass = np.bincount(labels, weights=per_case)
    np.testing.assert_allclose(mass, [20.0, 20.0, 20.0], rtol=1e-6)  # every class the same
    assert per_case.mean() == pytest.approx(1.0)  # the loss keeps its scale


def test_soft_targets_are_weighted_by_their_class_mass():
    targets = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.5, 0.5]], np.float32)
    # class mass 3.5 and 0.5 of 4 cases: weights 4/7 and 4
    np.testing.assert_allclose(class_weights(targets), [4 / 7, 4.0])
    np.testing.assert_allclose(sample_weights(targets), [4 / 7, 4 / 7, 4 / 7, 2 / 7 + 2.0],
                               rtol=1e-6)


def test_a_class_without_training_cases_gets_no_weight():
    targets = one_hot([0, 0, 2], 3)
    np.testing.assert_allclose(class_weights(targets), [0.75, 0.0, 1.5])


def test_balance_record_states_the_prior_the_set_produces():
    record = balance_record(one_hot(_imbalanced_labels(), 3), ["a", "b", "c"], "weights")
    assert record["train_class_counts"] == {"a": 10, "b": 30, "c": 20}
    assert record["train_class_shares"]["b"] == pytest.approx(0.5)
    assert record["class_weights"]["a"] == pytest.approx(2.0)
    assert "class_weights" not in balance_record(one_hot([0, 1], 2), ["a", "b"], "none")


def _epoch_rows(data):
    """Rows of each batch (the first array holds each row's index)."""
    return [np.asarray(batch[0]).reshape(-1).astype(int) for batch in data]


def test_balanced_sampling_draws_every_class_equally_often_each_epoch():
    labels = _imbalanced_labels()
    rows = np.arange(len(labels), dtype=np.float32)
    data, steps = epoch_batches((rows, one_hot(labels, 3)), 16, seed=3, first_epoch=0, epochs=4,
                                drop_remainder=False, balance_classes=labels)
    batches = _epoch_rows(data)
    assert steps == 4 and len(batches) == 16
    for epoch in range(4):
        seen = np.concatenate(batches[epoch * steps:(epoch + 1) * steps])
        assert len(seen) == 60
        np.testing.assert_array_equal(np.bincount(labels[seen], minlength=3), [20, 20, 20])
        # the minority's 10 rows each twice; the majority's 30 rows: 20 of them once
        minority = np.bincount(seen[labels[seen] == 0], minlength=10)[:10]
        np.testing.assert_array_equal(minority, np.full(10, 2))
        majority = np.bincount(seen[labels[seen] == 1] - 10, minlength=30)
        assert majority.max() == 1 and majority.sum() == 20
    # without balance every row once an epoch, as before
    plain, _ = epoch_batches((rows, one_hot(labels, 3)), 16, seed=3, first_epoch=0, epochs=1,
                             drop_remainder=False)
    np.testing.assert_array_equal(np.sort(np.concatenate(_epoch_rows(plain))), np.arange(60))


def test_balanced_sampling_in_equal_step_parts_and_resumes_to_the_same_batches():
    labels = np.repeat([0, 1], [7, 41])
    rows = np.arange(len(labels), dtype=np.float32)
    arrays = (rows, one_hot(labels, 2))
    whole, _ = step_batches(arrays, 8, seed=5, first_part=0, parts=6, steps_per_part=6,
                            balance_classes=labels)
    seen = np.concatenate(_epoch_rows(whole))
    counts = np.bincount(labels[seen], minlength=2)
    assert counts.sum() == 6 * 6 * 8
    assert abs(counts[0] - counts[1]) <= 6  # balanced up to the passes' ± 1 per class
    resumed, _ = step_batches(arrays, 8, seed=5, first_part=3, parts=6, steps_per_part=6,
                              balance_classes=labels)
    np.testing.assert_array_equal(np.concatenate(_epoch_rows(resumed)), seen[3 * 6 * 8:])


def test_balanced_pass_rounds_an_odd_split_and_varies_with_the_pass():
    labels = np.repeat([0, 1, 2], [2, 5, 4])  # 11 rows, 3 classes: 4, 4, 3 in some order
    passes = [np.bincount(labels[balanced_pass(labels, 0, p)], minlength=3) for p in range(12)]
    assert all(sorted(c.tolist()) == [3, 4, 4] for c in passes)
    assert len({tuple(c) for c in passes}) > 1  # which class gets the fewer draws varies


def test_class_weights_reach_the_batches_as_sample_weights():
    labels = _imbalanced_labels()
    targets = one_hot(labels, 3)
    data, _ = epoch_batches((np.arange(60, dtype=np.float32), targets, sample_weights(targets)),
                            60, seed=0, first_epoch=0, epochs=1, drop_remainder=False)
    rows, batch_targets, weights = (np.asarray(a) for a in next(iter(data)))
    np.testing.assert_allclose(weights, np.array([2.0, 2 / 3, 1.0])[labels[rows.astype(int)]],
                               rtol=1e-6)
    np.testing.assert_array_equal(batch_targets.argmax(1), labels[rows.astype(int)])


# ---------------------------------------------------------------- configs


def test_new_configs_balance_and_the_papers_configs_do_not():
    defaults = load_config(None)
    assert defaults.train.class_balance == "weights"
    assert defaults.evaluate.primary_metric == "balanced_accuracy"
    assert defaults.evaluate.saturation_tolerance is None  # a fraction of the interval
    for name in ("frid-adar-2018", "frid-adar-2018-quick", "frid-adar-2018-gan-quick",
                 "ben-cohen-2019-quick"):
        config = load_config(f"configs/{name}.yaml")
        assert config.train.class_balance == "none"
        assert config.evaluate.primary_metric == "accuracy"


@pytest.mark.parametrize("overrides, message", [
    ({"train.class_balance": "oversample"}, "train.class_balance must be one of none, weights"),
    ({"evaluate.primary_metric": "f1"}, "evaluate.primary_metric must be one of accuracy"),
    ({"kind": "mixture", "train.class_balance": "sampling"}, "sampling is not available for "
                                                               "mixture experiments"),
    ({"evaluate.class_sensitivity_margin": -0.1}, "evaluate.class_sensitivity_margin must lie"),
    ({"evaluate.saturation_tolerance": 1.5}, "evaluate.saturation_tolerance must lie"),
])
def test_bad_balance_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_settings_that_keep_the_earlier_behaviour_keep_the_earlier_fingerprint():
    from conftest import make_toy_dataset
    from keras_lesions.experiments.context import fingerprint
    from keras_lesions.experiments.registry import KINDS

    dataset = make_toy_dataset()
    dataset.folds = np.zeros(len(dataset), int)
    sections = KINDS["gan-curve"].sections
    paper = fingerprint(load_config("configs/frid-adar-2018-quick.yaml"), sections,
                        dataset)["config"]
    # what a folder recorded before these settings existed: none of them
    assert "class_balance" not in paper["train"]
    assert not {"primary_metric", "saturation_fraction", "class_sensitivity_margin"} & set(
        paper["evaluate"])
    assert paper["evaluate"]["saturation_tolerance"] == 0.01
    new = fingerprint(load_config(None, {"kind": "gan-curve"}), sections, dataset)["config"]
    assert new["train"]["class_balance"] == "weights"
    assert new["evaluate"]["primary_metric"] == "balanced_accuracy"
    assert new["evaluate"]["saturation_fraction"] == 0.1
    # the margin gates the verdict sentences only: changing it remakes a report, never a run
    margin = fingerprint(load_config(None, {"kind": "gan-curve",
                                            "evaluate.class_sensitivity_margin": 0.2}),
                         sections, dataset)["config"]
    assert margin == new


# ---------------------------------------------------------------- metrics


def test_balanced_accuracy_macro_f1_and_majority_baseline_by_hand():
    # a classifier that learned the majority class: 73 of 100 lesions are "b"
    matrix = np.array([[7, 20],    # a: 27 lesions, 7 found
                       [3, 70]])   # b: 73 lesions, 70 found
    m = metrics_from_confusion(matrix, ["a", "b"])
    assert m["accuracy"] == pytest.approx(0.77)
    assert m["balanced_accuracy"] == pytest.approx((7 / 27 + 70 / 73) / 2)
    f1_a, f1_b = 2 * 7 / (2 * 7 + 3 + 20), 2 * 70 / (2 * 70 + 20 + 3)
    assert m["per_class"]["a"]["f1"] == pytest.approx(f1_a)
    assert m["macro_f1"] == pytest.approx((f1_a + f1_b) / 2)
    assert m["majority_class"] == "b" and m["majority_accuracy"] == pytest.approx(0.73)
    # always answering the majority class: the baseline's accuracy, balanced accuracy 1/K
    always = metrics_from_confusion(np.array([[0, 27], [0, 73]]), ["a", "b"])
    assert always["accuracy"] == pytest.approx(0.73)
    assert always["balanced_accuracy"] == pytest.approx(0.5)


def test_a_class_without_test_lesions_is_left_out_of_the_balanced_means():
    m = metrics_from_confusion(np.array([[4, 1, 0], [0, 0, 0], [1, 0, 4]]), ["a", "b", "c"])
    assert m["balanced_accuracy"] == pytest.approx(0.8)
    assert np.isnan(m["per_class"]["b"]["sensitivity"])


def _records(cells, n_patients_per_cell=None):
    """Run records from (y_true, y_pred) per cell; every lesion its own patient."""
    records = []
    for fold, (y_true, y_pred) in enumerate(cells):
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        ids = np.array([f"f{fold}-l{i}" for i in range(len(y_true))])
        probabilities = np.eye(2)[y_pred] * 0.8 + 0.1
        records.append({"repeat": 0, "fold": fold, "seed": 0, "y_true": y_true,
                        "y_pred": y_pred, "lesion_ids": ids, "probabilities": probabilities,
                        "run_dir": f"run{fold}"})
    return records


def _cell(minority_found, majority_found, n_minority=15, n_majority=45):
    y_true = np.repeat([0, 1], [n_minority, n_majority])
    y_pred = y_true.copy()
    y_pred[minority_found:n_minority] = 1
    y_pred[n_minority + majority_found:] = 0
    return y_true, y_pred


def test_summary_reports_balanced_accuracy_with_intervals_and_the_baseline():
    records = _records([_cell(3, 45), _cell(4, 44), _cell(2, 45)])
    records[0]["train_class_counts"] = records[1]["train_class_counts"] = \
        records[2]["train_class_counts"] = {"minor": 40, "major": 120}
    summary = summarize_predictions(records, ["minor", "major"])
    pooled = summary["pooled"]
    assert pooled["balanced_accuracy"] == pytest.approx((9 / 45 + 134 / 135) / 2)
    intervals = summary["intervals"]
    low, high = intervals["balanced_accuracy"]["ci95"]
    assert low < pooled["balanced_accuracy"] < high
    low, high = intervals["per_class"]["minor"]["sensitivity"]["ci95"]
    assert 0.0 <= low < 9 / 45 < high < 0.5
    assert summary["training"]["class_shares"]["minor"] == pytest.approx(0.25)
    text = markdown_tables(summary, "toy")
    assert "Balanced accuracy (mean of the classes' sensitivities) 59.6%" in text
    # 143 of 180 right (79.4%) against a 75% majority baseline, interval includes it
    assert "Majority-class baseline: 75.0% (every lesion called major)" in text
    assert "not distinguishable from it" in text
    assert "Trained on, per run (mean of 3): minor 40 (25%), major 120 (75%)" in text
    assert "balanced accuracy: 59.6%" in text_table(summary)


def test_metric_interval_of_each_primary_metric():
    records = _records([_cell(12, 40), _cell(13, 41), _cell(11, 42)])
    for metric in ("accuracy", "balanced_accuracy", "auc"):
        result = metric_interval(records, metric, 2)
        low, high = result["ci95"]
        assert low <= result["value"] <= high, metric
    assert metric_interval(records, "accuracy", 2)["value"] == pytest.approx(159 / 180)


# ---------------------------------------------------------------- verdicts


def _gain_paid_by_the_minority():
    """Total accuracy up 20 points in every cell, the minority's sensitivity
    down 20 points: the proposal learned the majority class."""
    baseline = _records([_cell(12, 30), _cell(12, 31), _cell(12, 29)])
    proposed = _records([_cell(9, 45), _cell(9, 44), _cell(9, 45)])
    patient_of = {i: i for r in baseline for i in r["lesion_ids"].tolist()}
    return baseline, proposed, patient_of


def test_a_gain_paid_for_by_a_minority_class_is_not_called_helped():
    baseline, proposed, patient_of = _gain_paid_by_the_minority()
    names = ["minor", "major"]
    unguarded = compare_arms("The proposal", baseline, proposed, patient_of, names)
    assert unguarded["outcome"] == HELPED  # both intervals of total accuracy above zero
    assert unguarded["ci95"][0] > 0 and unguarded["corrected_t"]["ci95"][0] > 0
    guarded = compare_arms("The proposal", baseline, proposed, patient_of, names,
                           sensitivity_margin=0.05)
    assert guarded["outcome"] == MIXED and guarded["paid_by"] == ["minor"]
    change = guarded["per_class"]["minor"]["sensitivity_change"]
    assert change["difference"] == pytest.approx(-0.2)
    assert change["ci95"][1] < 0  # paired interval of the fall
    assert "minor paid for it (sensitivity minor -20.0 points, past the 5-point margin)" \
        in guarded["verdict"]
    assert "not called a gain" in guarded["verdict"]
    # a margin wider than the fall lets the gain stand
    loose = compare_arms("The proposal", baseline, proposed, patient_of, names,
                         sensitivity_margin=0.25)
    assert loose["outcome"] == HELPED


def test_the_verdict_reads_the_primary_metric():
    baseline, proposed, patient_of = _gain_paid_by_the_minority()
    names = ["minor", "major"]
    balanced = compare_arms("The proposal", baseline, proposed, patient_of, names,
                            metric="balanced_accuracy", sensitivity_margin=0.05)
    # balanced accuracy: (12/15 + 30/45)/2 → (9/15 + 44.67/45)/2
    expected = np.mean([9 / 15, 134 / 135]) - np.mean([12 / 15, 90 / 135])
    assert balanced["difference"] == pytest.approx(expected)
    assert balanced["metrics"]["accuracy"]["difference"] == pytest.approx(
        (27 + 134 - 36 - 90) / 180)
    assert balanced["metric"] == "balanced_accuracy"
    assert "points of balanced accuracy" in balanced["verdict"] or \
        "raised balanced accuracy" in balanced["verdict"]
    assert "sensitivity change per class: minor -20.0" in balanced["verdict"]


# ---------------------------------------------------------------- saturation


def test_saturation_tolerance_is_a_fraction_of_the_best_groups_interval():
    curve = [{"group": "D_aug1", "value": 0.70, "ci95": [0.60, 0.80]},
             {"group": "D_aug2", "value": 0.74, "ci95": [0.66, 0.82]},
             {"group": "D_aug3", "value": 0.76, "ci95": [0.70, 0.82]}]
    best = curve[2]
    tolerance = saturation_tolerance(best, None, 0.5)
    assert tolerance == pytest.approx(0.03)  # half of the 6-point half-width
    assert saturation_point(curve, tolerance)["group"] == "D_aug2"
    # a noisier best widens the tolerance; a fixed one (the papers' configs) overrides
    assert saturation_tolerance({"ci95": [0.56, 0.96]}, None, 0.5) == pytest.approx(0.1)
    assert saturation_point(curve, saturation_tolerance(best, 0.01, 0.5))["group"] == "D_aug3"
    assert saturation_tolerance({"ci95": [float("nan")] * 2}, None, 0.5) == 0.0


# ---------------------------------------------------------------- end to end


def _tiny_yaml(tmp_path, dataset_path, name, class_balance, extra=""):
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\noutput_dir: {tmp_path / 'out'}\nkind: classic-curve\n"
        f"data:\n  dataset: {dataset_path}\n"
        "augment:\n  n_rot: 2\n  n_flip: 1\n  n_trans: 1\n  n_scale: 1\n  group_sizes: [0, 24]\n"
        "classifier:\n  input_size: 16\n  filters: [2, 2, 2]\n  dense_units: 4\n"
        f"train:\n  epochs: 1\n  batch_size: 8\n  class_balance: {class_balance}\n"
        "evaluate:\n  repeats: 1\n" + extra)
    return path


def test_two_experiments_compared_by_their_class_balance(tmp_path, folded_dataset):
    """kl experiment twice (none, then weights) and kl compare: the runs
    record the prior they trained on, the reports print it with the balanced
    metrics, and the comparison names the one setting that differs."""
    from click.testing import CliRunner

    from keras_lesions.runs.folder import read_done, read_run_info
    from keras_lesions_cli.main import cli

    def kl(*args):
        return CliRunner().invoke(cli, [str(a) for a in args])

    plain = _tiny_yaml(tmp_path, folded_dataset, "plain", "none")
    weighted = _tiny_yaml(tmp_path, folded_dataset, "weighted", "weights")
    # not finished yet: one clear line, nothing written
    early = kl("compare", plain, weighted)
    assert early.exit_code != 0 and "kl: error:" in early.output
    assert "Traceback" not in early.output
    assert not (tmp_path / "out" / "compare-plain-vs-weighted").exists()
    for config in (plain, weighted):
        result = kl("experiment", config)
        assert result.exit_code == 0, result.output
    run = tmp_path / "out" / "weighted" / "runs" / "fold0" / "classifier" / "D_aug1" / "seed0"
    info, done = read_run_info(run), read_done(run)
    counts = done["train_class_counts"]
    assert info["class_balance"] == "weights" and done["class_balance"] == "weights"
    n = sum(counts.values())
    for name, count in counts.items():  # n / (K · n_c)
        assert info["class_weights"][name] == pytest.approx(n / (len(counts) * count), rel=1e-3)
    report = (tmp_path / "out" / "weighted" / "report" / "D_aug1.md").read_text()
    assert "Balanced accuracy" in report and "Majority-class baseline" in report
    assert "class balance: weights" in report

    result = kl("compare", plain, weighted)
    assert result.exit_code == 0, result.output
    assert "settings that differ: train.class_balance: 'none' → 'weights'" in result.output
    assert "weighted over plain" in result.output and "sensitivity change per class" in \
        result.output
    compared = json.loads((tmp_path / "out" / "compare-plain-vs-weighted" / "compare.json")
                          .read_text())
    assert compared["differences"] == ["train.class_balance: 'none' → 'weights'"]
    assert compared["comparison"]["n_cells"] == 3
    assert compared["comparison"]["metric"] == "balanced_accuracy"
    markdown = (tmp_path / "out" / "compare-plain-vs-weighted" / "compare.md").read_text()
    assert "| weighted |" in markdown and "| plain |" in markdown  # the priors per arm
    # the same experiment twice is refused
    same = kl("compare", plain, plain)
    assert same.exit_code != 0 and "same experiment folder" in same.output


def test_a_classifier_trains_under_each_rule_and_records_it(tmp_path):
    from keras_lesions.runs.folder import read_run_info
    from keras_lesions.train.classifier import train_classifier

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [6, 18])
    images = rng.random((24, 16, 16, 1), dtype=np.float32)
    losses = {}
    for rule in ("none", "weights", "sampling"):
        config = load_config(None, {"classifier.input_size": 16, "classifier.filters": [2, 2, 2],
                                    "classifier.dense_units": 4, "train.epochs": 2,
                                    "train.batch_size": 8, "train.class_balance": rule})
        run = tmp_path / rule
        model = train_classifier(images, one_hot(labels, 2), config, run, seed=1,
                                 tensorboard=False, run_info={"class_names": ["a", "b"]})
        assert model.predict(images, verbose=0).shape == (24, 2)
        info = read_run_info(run)
        assert info["class_balance"] == rule
        assert info["train_class_counts"] == {"a": 6, "b": 18}
        assert ("class_weights" in info) == (rule == "weights")
        losses[rule] = (run / "history.csv").read_text()
    # the rules train differently from the same seed
    assert len(set(losses.values())) == 3


def test_compare_refuses_experiments_whose_lesions_have_other_classes(tmp_path, folded_dataset):
    """Same lesion ids and patients, one lesion relabelled: not the same data."""
    import dataclasses

    from click.testing import CliRunner

    from keras_lesions.data.dataset import read_dataset, write_dataset
    from keras_lesions_cli.main import cli

    def kl(*args):
        return CliRunner().invoke(cli, [str(a) for a in args])

    dataset = read_dataset(folded_dataset)
    first = dataset.lesions[0]
    other = dataclasses.replace(first, label=(first.label + 1) % len(dataset.class_names))
    relabelled = tmp_path / "relabelled.h5"
    write_dataset(dataclasses.replace(dataset, lesions=[other, *dataset.lesions[1:]]),
                  relabelled)
    a = _tiny_yaml(tmp_path, folded_dataset, "a", "none")
    b = _tiny_yaml(tmp_path, relabelled, "b", "none")
    for config in (a, b):
        assert kl("experiment", config).exit_code == 0
    result = kl("compare", a, b)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "other classes: they are not the same lesions" in result.output


def test_review_edge_cases_of_undefined_metrics_and_certain_rates():
    from keras_lesions.errors import KerasLesionsError
    from keras_lesions.evaluate.crossval import best_point
    from keras_lesions.evaluate.stats import corrected_resampled_t, rate_interval

    # a cell whose AUC is undefined leaves the corrected t undefined, not infinite
    t = corrected_resampled_t([0.02, float("nan"), 0.03], 100, 50)
    assert np.isnan(t["t"]) and np.isnan(t["ci95"][0]) and np.isnan(t["pvalue"])
    # choices never pick an undefined value, and say so when all are
    curve = [{"group": "D_aug1", "value": float("nan")}, {"group": "D_aug2", "value": 0.7}]
    assert best_point(curve)["group"] == "D_aug2"
    assert saturation_point(curve, 0.5)["group"] == "D_aug2"
    with pytest.raises(KerasLesionsError, match="undefined for every option"):
        best_point([{"value": float("nan")}])
    # a sensitivity of 100% on 12 lesions is not certain: Wilson's 75.8–100%
    low, high = rate_interval(1.0, [1.0, 1.0], 12)
    assert low == pytest.approx(0.7575, abs=1e-3) and high == pytest.approx(1.0)
    assert rate_interval(0.5, [0.3, 0.7], 12) == [0.3, 0.7]  # the bootstrap's elsewhere


def test_mixture_classifiers_refuse_sampling():
    from keras_lesions.errors import KerasLesionsError
    from keras_lesions.train.specified_classifier import train_specified_classifier

    config = load_config(None, {"train.class_balance": "sampling"})
    with pytest.raises(KerasLesionsError, match="sampling is not available"):
        train_specified_classifier(None, np.zeros((2, 2)), (None, None), None, config, "unused",
                                   class_names=["a", "b"])
