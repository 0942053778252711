"""The final model: what a user deploys after an experiment (``kl train-final``).

Cross-validation says how well a recipe does; the model to use is that
recipe trained once on every patient. The recipe is what the experiment
chose on its validation patients: the D_aug group each cell chose at
saturation (§4.2.1), taken as the group chosen by the most cells (ties: the
smaller group). Its figures are the experiment's cross-validated ones for
that recipe (no patient is left to test the final model on), written into
its model card.

A gan-curve experiment's final model adds synthetic lesions only when its
verdict says DCGAN augmentation helps (both intervals above zero), at the
synthetic size most cells chose on validation, from per-class DCGANs
trained on every patient's lesions; otherwise it is CNN-AUG, and its card
says why. Mixture experiments have no final model yet.
"""
from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from keras_lesions.config import ExperimentConfig
from keras_lesions.errors import KerasLesionsError
from keras_lesions.experiments import classic_curve as classic
from keras_lesions.experiments.registry import open_for

FINAL_KINDS = ("classic-curve", "gan-curve")


def most_chosen(values) -> tuple[int, Counter]:
    """The value most cells chose (ties: the smaller, i.e. fewer added
    images), and the tally."""
    tally = Counter(values)
    return min(v for v, n in tally.items() if n == max(tally.values())), tally


def chosen_group(choices: dict) -> tuple[int, dict[str, int]]:
    """The group index most cells chose (ties: the smaller group), and how
    often each group was chosen."""
    try:
        index, tally = most_chosen(int(c["group_index"]) for c in choices.values())
    except (KeyError, TypeError, ValueError):
        raise KerasLesionsError("a D_aug choice file of this experiment names no group_index: "
                                "delete choices/ and run `kl experiment` again") from None
    return index, {classic.group_name(i): n for i, n in sorted(tally.items())}


def check_external(dataset, external_path: str | os.PathLike):
    """The external test set, read, if it can be compared with the training
    dataset: the same classes and intensity kind, and no patient in both.

    Raises:
        KerasLesionsError / DatasetError: naming the external file.
    """
    from keras_lesions.data import read_dataset

    external = read_dataset(external_path)
    if list(external.class_names) != list(dataset.class_names):
        raise KerasLesionsError(f"has classes {', '.join(external.class_names)}, but the "
                                f"training dataset has {', '.join(dataset.class_names)}: an "
                                "external test set needs the same classes in the same order",
                                external_path)
    if external.intensity_unit != dataset.intensity_unit:
        raise KerasLesionsError(f"holds {external.intensity_unit} images, the training dataset "
                                f"{dataset.intensity_unit} ones: they cannot be compared",
                                external_path)
    shared = sorted(set(external.patient_ids.tolist()) & set(dataset.patient_ids.tolist()))
    if shared:
        raise KerasLesionsError(f"shares {len(shared)} patient id(s) with the training dataset "
                                f"(e.g. {shared[0]!r}): an external test set must hold other "
                                "patients", external_path)
    if not len(external):
        raise KerasLesionsError("holds no lesions", external_path)
    return external


SYNTHETIC_MODES = ("auto", "always", "never")


def final_recipe(exp, index: int, synthetic: str) -> dict:
    """What the final classifier trains on: the D_aug group, and for a
    gan-curve experiment whose verdict says DCGAN augmentation helped (or
    with ``synthetic="always"``) the DCGAN lesions at the size most cells
    chose on validation (ties: the smaller size).

    Returns:
        {"base_index", "group" (the classifier's group label), "per_class"
        (synthetic lesions per class, or None), "why"}.
    """
    from keras_lesions.experiments import gan_curve
    from keras_lesions.evaluate.verdict import HELPED, outcome
    from keras_lesions.runs.folder import read_json_record

    config = exp.config
    plain = {"base_index": index, "group": classic.group_name(index), "per_class": None}
    if synthetic == "never" or (config.kind != "gan-curve" and synthetic == "auto"):
        return {**plain, "why": "CNN-AUG: classic augmentation only"}
    if config.kind != "gan-curve":
        raise KerasLesionsError(f"--synthetic always needs a gan-curve experiment; this one is "
                                f"{config.kind}", exp.layout.root)
    if synthetic == "auto":
        if not exp.layout.result.is_file():
            raise KerasLesionsError("has no report yet (report/result.json): run `kl "
                                    "experiment` to its end first; the final model follows its "
                                    "verdict", exp.layout.root)
        comparison = read_json_record(exp.layout.result).get("comparisons", {}).get(
            gan_curve.DCGAN.title)
        if not isinstance(comparison, dict) or "ci95" not in comparison:
            raise KerasLesionsError("report/result.json holds no DCGAN comparison: run `kl "
                                    "experiment --report` again", exp.layout.root)
        # the margin is a report-only setting: the current config's, not the
        # one the report was written with
        comparison = {**comparison,
                      "sensitivity_margin": config.evaluate.class_sensitivity_margin}
        if outcome(comparison) != HELPED:
            return {**plain, "why": "CNN-AUG: the experiment found no evidence that DCGAN "
                                    "augmentation helps (its interval includes zero or lies "
                                    "below it, or a class's sensitivity paid for the gain), so "
                                    "the final model has no synthetic lesions"}
    sizes = [gan_curve.chosen_size(exp, r, k, gan_curve.DCGAN) for r, k in exp.cells()]
    if any(n is None for n in sizes):
        raise KerasLesionsError("has not chosen every cell's synthetic size yet: run `kl "
                                "experiment` to its end first", exp.layout.root)
    per_class, tally = most_chosen(sizes)
    base = config.synth.base_group - 1 if config.synth.base_group else index
    n_classes = len(exp.class_names)
    return {"base_index": base, "per_class": per_class,
            "group": gan_curve.arm_group(classic.group_name(base), gan_curve.DCGAN.tag,
                                         per_class, n_classes),
            "why": (f"CNN-AUG-GAN: {classic.group_name(base)} plus {per_class} DCGAN lesions "
                    f"per class (the size chosen on validation in {tally[per_class]} of "
                    f"{len(sizes)} cells), "
                    + ("as the experiment's verdict found it helps" if synthetic == "auto"
                       else "asked for with --synthetic always"))}


def train_final(config: ExperimentConfig, *, log: Callable[[str], None] = print,
                progress=None, resume: bool = False, restart: bool = False,
                test_on: str | os.PathLike | None = None, synthetic: str = "auto") -> dict:
    """Train the final classifier of an experiment whose choices are made,
    and test it once on an external test set if one is given.

    Args:
        test_on: the external test set (default ``data.test_dataset``).
        synthetic: "auto" (DCGAN lesions only when the experiment's verdict
            says they help), "always" or "never" (see :func:`final_recipe`).

    Returns:
        {"run_dir", "group", "counts", "already_done", "card", "external"
        (its summary, or None), "why"}.

    Raises:
        KerasLesionsError: another kind of experiment, one that has not made
            its choices yet, an external set that cannot be compared, or a
            damaged final run.
    """
    from keras_lesions.augment import build_augmentation_groups, read_augmentation_group
    from keras_lesions.model_card import CARD_MARKDOWN, classifier_card, write_card
    from keras_lesions.pipeline import one_hot, preprocessing_record
    from keras_lesions.runs.checkpoint import check_resumable
    from keras_lesions.runs.folder import discard_for_restart, finish_run, is_done, read_run_info
    from keras_lesions.train.classifier import classifier_config_settings, train_classifier

    if config.kind not in FINAL_KINDS:
        raise KerasLesionsError(f"kind {config.kind!r}: final models are trained for "
                                f"{' and '.join(FINAL_KINDS)} experiments only, so far")
    exp = open_for(config, log, create=False, record=False)
    choices = classic.cell_choices(exp)
    missing = [c for c in exp.cells() if c not in choices]
    if missing:
        raise KerasLesionsError(
            f"has made {len(choices)} of its {len(exp.cells())} D_aug choices: run "
            "`kl experiment` on this config first (the final model uses what it chose)",
            exp.layout.root)
    if synthetic not in SYNTHETIC_MODES:
        raise KerasLesionsError(f"synthetic must be one of {', '.join(SYNTHETIC_MODES)}")
    index, counts = chosen_group(choices)
    recipe = final_recipe(exp, index, synthetic)
    group = recipe["group"]
    run_dir = exp.layout.final / "classifier"
    seed = config.evaluate.seeds[0]
    card_facts = {"experiment": str(exp.layout.root),
                  "chosen": f"{classic.group_name(index)}, chosen in "
                            f"{counts[classic.group_name(index)]} of {len(choices)} cells on "
                            f"their {classic.selected_on(config)} patients ({counts})",
                  "recipe": recipe["why"]}
    test_on = test_on or config.data.test_dataset
    external = check_external(exp.dataset, test_on) if test_on else None
    if classic.selected_on(config) == "test":
        log("warning: evaluate.selection is paper: the group was chosen on the test folds, "
            "and the model card says so")
    if is_done(run_dir):
        trained = read_run_info(run_dir).get("group")
        if trained != group:
            raise KerasLesionsError(
                f"holds a final model of {trained}, but the experiment now chooses {group}: "
                "delete the folder to train the final model again", run_dir)
        done = {"run_dir": run_dir, "group": group, "counts": counts, "already_done": True,
                "card": run_dir / CARD_MARKDOWN, "external": None, "why": recipe["why"]}
        if not (run_dir / CARD_MARKDOWN).is_file():  # killed between training and card
            write_card(classifier_card(run_dir, performance=cross_validated_performance(
                exp, recipe), provenance=card_facts), run_dir)
        if external is not None:
            done["external"] = test_externally(exp, run_dir, external, Path(test_on), recipe,
                                               card_facts, log)
        return done
    check_resumable(run_dir, resume=resume, restart=restart,
                    settings={**classifier_config_settings(config, seed), "group": group})
    index = recipe["base_index"]
    if restart:
        discard_for_restart([run_dir], log)
    dataset = exp.dataset
    aug = config.augment
    # One file per group: the augment settings are in the experiment's
    # fingerprint, so a file of that name holds that group.
    path = exp.layout.final / f"augment-{classic.group_name(index)}.h5"
    added = aug.group_sizes[index]
    if not path.exists():
        log(f"final model: augmenting all {len(dataset)} lesions "
            f"({classic.group_name(index)}, +{added}) -> {path}")
        build_augmentation_groups(dataset, test_fold=None, path=path, group_sizes=[added],
                                  n_rot=aug.n_rot, n_flip=aug.n_flip, n_trans=aug.n_trans,
                                  n_scale=aug.n_scale, seed=aug.seed,
                                  size=config.classifier.input_size, log=log)
    images, labels, _ = read_augmentation_group(path, 0)
    n_classes = len(exp.class_names)
    targets, additions = one_hot(labels, n_classes), []
    if recipe["per_class"] is not None:
        synthetic_images, synthetic_labels, addition = final_synthetic(
            exp, images, labels, recipe, resume=resume, log=log)
        images = np.concatenate([images, synthetic_images])
        targets = np.concatenate([targets, one_hot(synthetic_labels, n_classes)])
        additions.append(addition)
    info = {"final": True, "group": group, "added_samples": added, "additions": additions,
            "recipe": recipe["why"],
            "group_counts": counts, "experiment": str(exp.layout.root),
            "class_names": exp.class_names, "dataset": str(exp.dataset_path),
            "n_patients": int(len(set(dataset.patient_ids.tolist()))),
            "preprocessing": preprocessing_record(dataset, config.classifier.input_size)}
    log(f"final model: training on {len(images)} images of every patient ({group}) -> "
        f"{run_dir}")
    train_classifier(images, targets, config, run_dir, seed=seed, resume=resume, run_info=info,
                     progress=progress)
    finish_run(run_dir, {**info, "seed": seed, "n_train": int(len(images))})
    card = classifier_card(run_dir, performance=cross_validated_performance(exp, recipe),
                           provenance=card_facts)
    write_card(card, run_dir)
    summary = (test_externally(exp, run_dir, external, Path(test_on), recipe, card_facts, log)
               if external is not None else None)
    return {"run_dir": run_dir, "group": group, "counts": counts, "already_done": False,
            "card": run_dir / CARD_MARKDOWN, "external": summary, "why": recipe["why"]}


def final_synthetic(exp, images: np.ndarray, labels: np.ndarray, recipe: dict, *,
                    resume: bool, log) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per-class DCGANs trained on the final group of every patient (§3.2, as
    the experiment's cells train theirs on their fit patients), and the
    recipe's number of their lesions per class.

    Returns:
        (images, labels, the addition as run.json records it).
    """
    from keras_lesions.data import read_dataset, write_dataset
    from keras_lesions.runs.folder import is_done
    from keras_lesions.synth import synthesize_dataset
    from keras_lesions.train.gan import train_gan

    config, names = exp.config, exp.class_names
    base = classic.group_name(recipe["base_index"])
    generators = []
    for c, name in enumerate(names):
        # keyed by the group they learn from, as the plan's GAN runs are
        gan_dir = exp.layout.final / "gan" / f"base-{base}" / f"dcgan-{name}"
        generators.append(gan_dir)
        if is_done(gan_dir):
            continue
        log(f"final model: training the DCGAN of {name} on {int(np.sum(labels == c))} images "
            f"({config.gan.epochs} epochs) -> {gan_dir}")
        train_gan("dcgan", images[labels == c], config, gan_dir, class_names=names,
                  run_info={"final": True, "class_name": name, "base_group": base,
                            "dataset": str(exp.dataset_path)},
                  resume=resume, sample_grid_every=max(1, config.gan.epochs // 10))
    per_class = recipe["per_class"]
    path = exp.layout.final / f"synthetic-{base}-{per_class}.h5"
    if path.is_file():
        synthetic = read_dataset(path)
    else:
        synthetic = synthesize_dataset(generators, per_class, config.synth.seed, names)
        synthetic.created_by = f"keras_lesions train-final {config.name}"
        write_dataset(synthetic, path)
    synthetic_images, synthetic_labels = classic.take_per_class(synthetic, per_class,
                                                                len(names))
    return synthetic_images, synthetic_labels, {
        "source": "synthetic", "per_class": per_class, "data": str(path),
        "generators": [str(g) for g in generators]}


def test_externally(exp, run_dir: Path, external, external_path: Path, recipe: dict,
                    card_facts: dict, log) -> dict:
    """Predict the external test set once with the final model, report it
    beside the cross-validated figures (``final/external/``) and add it to
    the model card. The test set decides nothing: every choice was made on
    the training dataset's validation patients.
    """
    from keras_lesions.evaluate.report import markdown_tables, summarize_predictions
    from keras_lesions.inference import predict
    from keras_lesions.io import write_text
    from keras_lesions.model_card import classifier_card, write_card
    from keras_lesions.pipeline import lesion_inputs
    from keras_lesions.runs.predictions import write_predictions
    from keras_lesions.train.classifier import load_run_model
    from keras_lesions.runs.folder import read_run_info

    out = exp.layout.final / "external"
    preprocessing = read_run_info(run_dir)["preprocessing"]
    # the training data's window and margins, not the external file's own
    inputs = lesion_inputs(external.lesions, preprocessing)
    probabilities = predict(load_run_model(run_dir), inputs)
    record = {"fold": 0, "seed": 0, "y_true": external.labels,
              "y_pred": probabilities.argmax(1), "probabilities": probabilities,
              "lesion_ids": external.lesion_ids, "validation": None}
    patient_of = dict(zip(external.lesion_ids.tolist(), external.patient_ids.tolist()))
    evaluate = exp.config.evaluate
    summary = summarize_predictions([record], external.class_names, patient_of,
                                    positive_class=evaluate.positive_class,
                                    target_sensitivity=evaluate.target_sensitivity)
    cross = cross_validated_performance(exp, recipe)
    group = recipe["group"]
    from keras_lesions.evaluate.verdict import accuracy_interval

    low, high = accuracy_interval([record], patient_of)
    lines = [f"# External test: {external_path.name}", "",
             f"The final model (every patient of {exp.dataset_path.name}, {group}) tested once "
             f"on {len(external)} lesions of {len(set(external.patient_ids.tolist()))} other "
             "patients; nothing was chosen on them.", "",
             "| | cross-validated (this recipe) | external |", "|---|---|---|",
             f"| accuracy | {_pct(cross.get('accuracy'))} "
             f"({_ci(cross.get('accuracy_ci95'))}) | {_pct(summary['pooled']['accuracy'])} "
             f"({_ci([low, high])}) |"]
    for name in external.class_names:
        a = (cross.get("per_class") or {}).get(name, {})
        b = summary["pooled"]["per_class"][name]
        lines.append(f"| {name} sensitivity | {_pct(a.get('sensitivity'))} | "
                     f"{_pct(b['sensitivity'])} ({b['support']} lesions) |")
    auc_a = ((cross.get("discrimination") or {}).get("auc") or {}).get("value")
    auc_b = summary.get("discrimination", {}).get("auc", {})
    lines.append(f"| AUC | {_num(auc_a)} | {_num(auc_b.get('value'))} "
                 f"({_ci(auc_b.get('ci95'), points=False)}) |")
    lines += ["", markdown_tables(summary, "External test set")]
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out, probabilities, external.labels, external.lesion_ids.tolist())
    write_text(out / "external.md", "\n".join(lines) + "\n")
    log(f"external test on {external_path}: accuracy "
        f"{_pct(summary['pooled']['accuracy'])} over {len(external)} lesions -> "
        f"{out / 'external.md'}")
    performance = {**cross, "sections": [{"title": f"External test set ({external_path.name})",
                                          "lines": lines[2:-2]}],
                   "external": {"dataset": str(external_path), "accuracy":
                                summary["pooled"]["accuracy"], "accuracy_ci95": [low, high],
                                "discrimination": summary.get("discrimination")}}
    write_card(classifier_card(run_dir, performance=performance, provenance=card_facts), run_dir)
    return summary


def _pct(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


def _num(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _ci(ci, points: bool = True) -> str:
    if not ci or not all(v is not None and math.isfinite(v) for v in ci):
        return "no interval"
    return (f"95% CI {100 * ci[0]:.1f}–{100 * ci[1]:.1f}" if points
            else f"95% CI {ci[0]:.3f}–{ci[1]:.3f}")


def cross_validated_performance(exp, recipe: dict) -> dict:
    """The experiment's cross-validated figures of the final model's recipe:
    CNN-AUG on each cell's chosen group, or the DCGAN arm at each cell's
    chosen size."""
    from keras_lesions.experiments import gan_curve

    if exp.config.kind == "classic-curve":
        records = classic.optimal_records(exp, classic.plan(exp), classic.cell_choices(exp))
    else:
        arm = gan_curve.DCGAN.title if recipe["per_class"] is not None else "CNN-AUG"
        records = gan_curve.comparisons(exp, gan_curve.plan(exp))[1].get(arm, [])
    what = ("the DCGAN arm at each cell's chosen synthetic size"
            if recipe["per_class"] is not None else "CNN-AUG on each cell's chosen group")
    if not records:
        return {"what": "no finished cross-validation runs were found"}
    from keras_lesions.evaluate.verdict import accuracy_interval
    from keras_lesions.model_card import balance_performance

    summary = exp.summarize(records)
    return {"what": f"the experiment's cross-validation of this recipe ({what}; "
                    f"{len(records)} trained models, "
                    f"{summary['pooled']['n']} test predictions of held-out patients); the "
                    "final model itself has no held-out patients",
            "accuracy": summary["pooled"]["accuracy"],
            "accuracy_ci95": accuracy_interval(records, exp.patient_of()),
            **balance_performance(summary),
            "per_class": summary["pooled"]["per_class"],
            "discrimination": summary.get("discrimination")}
