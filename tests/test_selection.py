"""No choice reads a test-fold prediction unless ``evaluate.selection: paper``.

Two checks on a tiny classic curve: a spy on every predictions file read
while a choice runs (a choice that read the test fold fails the test), and a
planted disagreement between the validation and the test predictions: the
choice follows the validation predictions, and with ``selection: paper``
the test ones (so the check can fail).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from keras_lesions.evaluate import crossval
from keras_lesions.experiments import classic_curve as classic
from keras_lesions.experiments.registry import open_for
from keras_lesions.experiments.run import run_experiment
from keras_lesions.runs.predictions import (
    PREDICTIONS, VALIDATION_PREDICTIONS, read_predictions, write_predictions)

from test_experiment import tiny_config


@pytest.fixture
def spied_reads(monkeypatch):
    """(step, predictions file) of every predictions file read during a choice."""
    reads, current = [], []

    def spy(run_dir, name=PREDICTIONS):
        if current:
            reads.append((current[-1], name))
        return read_predictions(run_dir, name)

    def watched(step_name, step):
        def run(exp, spec, ctx):
            current.append(step_name)
            try:
                step(exp, spec, ctx)
            finally:
                current.pop()
        return run

    monkeypatch.setattr(crossval, "read_predictions", spy)
    for kind_steps in (classic.KIND.steps,):
        for name in [n for n in kind_steps if n.startswith("choose")]:
            monkeypatch.setitem(kind_steps, name, watched(name, kind_steps[name]))
    return reads


def test_choices_read_only_validation_predictions(tmp_path, folded_dataset, spied_reads):
    config = tiny_config(tmp_path, folded_dataset)
    result = run_experiment(config, log=lambda line: None)
    assert spied_reads, "the spy saw no choice"
    assert {name for _, name in spied_reads} == {VALIDATION_PREDICTIONS}
    assert result["selected_on"] == "validation"
    # validation patients are held out of everything fitted: not in the
    # augmentation file, not in the test fold
    exp = open_for(config, log=lambda line: None)
    from keras_lesions.augment import read_augmentation_group

    for fold in range(3):
        split = exp.split(0, fold)
        _, _, meta = read_augmentation_group(exp.layout.augment_groups(f"fold{fold}"), 1)
        fitted = set(np.asarray(meta["patient_id"]).tolist())
        held_out = set(exp.dataset.patient_ids[split.validation].tolist())
        tested = set(exp.dataset.patient_ids[split.test].tolist())
        assert held_out and not fitted & held_out and not fitted & tested
        assert not held_out & tested


def _plant(exp, group: str, name: str, right: bool) -> None:
    """Make every prediction of a group's fold-0 runs in one file right or wrong."""
    run_dir = exp.layout.run_dir(classic.classifier_id(0, 0, group, 0))
    p = read_predictions(run_dir, name)
    k = p["probabilities"].shape[1]
    wrong = (p["y_true"] + 1) % k
    write_predictions(run_dir, np.eye(k)[p["y_true"] if right else wrong], p["y_true"],
                      p["lesion_ids"], name)


@pytest.mark.parametrize("selection, expected", [("validation", "D_aug2"), ("paper", "D_aug1")])
def test_the_choice_follows_validation_not_test(tmp_path, folded_dataset, selection, expected):
    config = tiny_config(tmp_path, folded_dataset, **{"evaluate.selection": selection})
    run_experiment(config, log=lambda line: None)
    exp = open_for(config, log=lambda line: None)
    for group, best_on_test in (("D_aug1", True), ("D_aug2", False)):
        _plant(exp, group, PREDICTIONS, right=best_on_test)
        if selection == "validation":
            _plant(exp, group, VALIDATION_PREDICTIONS, right=not best_on_test)
    if selection == "paper":  # the other folds' test predictions vote too: level them
        for fold in (1, 2):
            for group in ("D_aug1", "D_aug2"):
                run_dir = exp.layout.run_dir(classic.classifier_id(0, fold, group, 0))
                p = read_predictions(run_dir)
                write_predictions(run_dir, np.eye(3)[p["y_true"]], p["y_true"], p["lesion_ids"])
    choice = exp.layout.choice(classic.optimal_choice(0, 0))
    choice.unlink()
    spec = classic.Plan(classic.classic_specs(exp)).get(classic.choose_optimal_id(0, 0))
    classic.choose_optimal_step(exp, spec, classic.StepContext())
    made = json.loads(choice.read_text())
    assert made["group"] == expected
    assert made["selected_on"] == ("test" if selection == "paper" else "validation")


@pytest.mark.slow  # 18 tiny classifier runs, ~45 s
def test_a_null_comparison_is_not_called_a_gain(tmp_path, folded_dataset):
    """Two arms that differ only in their training seed, over 3 repeats of the
    cross-validation of a tiny dataset: the verdict must not say "helped"
    (nor "hurt"), and it says what the experiment could have detected."""
    from keras_lesions.evaluate.verdict import NO_EVIDENCE, compare_arms

    config = tiny_config(tmp_path, folded_dataset, **{
        "augment.group_sizes": [0], "evaluate.seeds": [0, 1], "evaluate.repeats": 3})
    run_experiment(config, log=lambda line: None)
    exp = open_for(config, log=lambda line: None)
    plan = classic.Plan(classic.classic_specs(exp))
    records = classic.arm_records(exp, plan, "D_aug1")
    seed0 = [r for r in records if r["seed"] == 0]
    seed1 = [{**r, "seed": 0} for r in records if r["seed"] == 1]  # paired with seed 0's cells
    assert len(seed0) == len(seed1) == 9 and {r["repeat"] for r in seed0} == {0, 1, 2}
    comparison = compare_arms("Another seed", seed0, seed1, exp.patient_of(), exp.class_names)
    assert comparison["outcome"] == NO_EVIDENCE, comparison["verdict"]
    assert comparison["verdict"].startswith("Another seed: no evidence of a difference")
    assert "could detect total-accuracy differences of about" in comparison["verdict"]
    assert comparison["n_cells"] == 9 and comparison["n_cross_validations"] == 3
    # the repeats are other patient-level partitions of the same lesions
    partitions = {tuple(exp.split(r, 0).test.tolist()) for r in range(3)}
    assert len(partitions) > 1
    for r in range(3):
        for fold in range(3):
            split = exp.split(r, fold)
            assert not set(exp.dataset.patient_ids[split.test]) & set(
                exp.dataset.patient_ids[split.training])
