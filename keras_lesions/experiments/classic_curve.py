"""The classic-augmentation curve, CNN-AUG (Frid-Adar et al. 2018 §4.2.1, Fig. 8 red).

The plan, per test fold: build the augmentation groups from its training
folds (``fold<k>/augment``), train and test the classifier on every group
and seed (``fold<k>/classifier/D_aug<i>/seed<s>``); then pick D_aug^optimal
(``choose/D_aug-optimal``) and write the report. The classifier steps here
are shared with the GAN experiment, whose classifiers train on D_aug^optimal
plus synthetic or extra real lesions.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_lesions.config import ExperimentConfig
from keras_lesions.data.dataset import LesionDataset, read_dataset
from keras_lesions.data.folds import train_test_indices
from keras_lesions.errors import DatasetError, KerasLesionsError
from keras_lesions.evaluate.crossval import (
    curve_point, group_name, run_record, saturation_point, write_curve_report)
from keras_lesions.evaluate.report import summarize_predictions, text_table
from keras_lesions.experiments.context import Experiment
from keras_lesions.experiments.kind import ExperimentKind, StepContext
from keras_lesions.experiments.plan import Plan, Resources, RunSpec
from keras_lesions.io import write_json
from keras_lesions.runs.folder import finish_run

OPTIMAL_CHOICE = "D_aug-optimal"
CHOOSE_OPTIMAL = f"choose/{OPTIMAL_CHOICE}"
# A classifier run at paper size uses about a quarter of a 16 GB GPU.
CLASSIFIER_NEEDS = Resources(cpus=1, gpus=0.25)


# --------------------------------------------------------------------------- plan


def augment_id(fold: int) -> str:
    return f"fold{fold}/augment"


def classifier_id(fold: int, group: str, seed: int) -> str:
    return f"fold{fold}/classifier/{group}/seed{seed}"


def augment_spec(exp: Experiment, fold: int) -> RunSpec:
    return RunSpec(id=augment_id(fold), step="augment", params={"fold": fold},
                   output=exp.layout.relative(exp.layout.augment_groups(fold)),
                   title=f"augmentation groups of fold {fold}'s training folds")


def classifier_spec(exp: Experiment, fold: int, group_index: int, seed: int, *,
                    group: str | None = None, additions: tuple[dict, ...] = (),
                    depends_on: tuple[str, ...] = ()) -> RunSpec:
    """A classifier trained on D_aug^(group_index+1) of the fold's training
    folds plus ``additions`` ({"source": "synthetic", "data": run id,
    "per_class": n}, {"source": "real-extra", "per_class": n} or {"source":
    "file", "path": dataset}), tested on the fold."""
    group = group or group_name(group_index)
    run_id = classifier_id(fold, group, seed)
    return RunSpec(id=run_id, step="classifier",
                   params={"fold": fold, "seed": seed, "group_index": group_index,
                           "group": group, "additions": list(additions)},
                   depends_on=(augment_id(fold),) + tuple(depends_on), needs=CLASSIFIER_NEEDS,
                   output=exp.layout.run_output(run_id),
                   title=f"classifier on {group}, fold {fold}, seed {seed}")


def classic_specs(exp: Experiment) -> list[RunSpec]:
    """The augmentation and classifier runs of the curve, and the choice of D_aug optimal."""
    config = exp.config
    specs, classifiers = [], []
    for fold in config.evaluate.folds:
        specs.append(augment_spec(exp, fold))
        for index in range(len(config.augment.group_sizes)):
            for seed in config.evaluate.seeds:
                classifiers.append(classifier_spec(exp, fold, index, seed))
    choose = RunSpec(id=CHOOSE_OPTIMAL, step="choose-optimal",
                     depends_on=tuple(s.id for s in classifiers), needs=Resources(cpus=1),
                     output=exp.layout.relative(exp.layout.choice(OPTIMAL_CHOICE)),
                     title="D_aug optimal: the smallest group at saturation", light=True)
    return specs + classifiers + [choose]


def report_spec(exp: Experiment, depends_on) -> RunSpec:
    return RunSpec(id="report", step="report", depends_on=tuple(depends_on),
                   output=exp.layout.relative(exp.layout.result), title="the report",
                   light=True)


def plan(exp: Experiment) -> Plan:
    specs = classic_specs(exp)
    return Plan(specs + [report_spec(exp, [s.id for s in specs])])


# --------------------------------------------------------------------------- inputs


def build_augmentation(exp: Experiment, fold: int, ctx: StepContext) -> Path:
    """The fold's augmentation-group file, built once from its training folds."""
    from keras_lesions.augment import build_augmentation_groups

    config, aug = exp.config, exp.config.augment
    path = exp.layout.augment_groups(fold)
    if not path.exists():
        train_idx, _ = train_test_indices(exp.dataset.folds, fold, where=exp.dataset_path)
        ctx.log(f"fold {fold}: building augmentation groups from {len(train_idx)} training "
                f"lesions -> {path}")
        build_augmentation_groups(
            exp.dataset, test_fold=fold, path=path, group_sizes=aug.group_sizes,
            n_rot=aug.n_rot, n_flip=aug.n_flip, n_trans=aug.n_trans, n_scale=aug.n_scale,
            seed=aug.seed + fold, size=config.classifier.input_size, log=ctx.log,
            progress=ctx.bar(f"augmenting fold {fold}"))
    return path


def check_group(config: ExperimentConfig, group_index: int) -> None:
    """Refuse a group the config does not define, naming the ones it does."""
    sizes = config.augment.group_sizes
    if not 0 <= group_index < len(sizes):
        raise KerasLesionsError(f"there is no {group_name(group_index)} (group "
                                f"{group_index + 1}): the config's augment.group_sizes define "
                                f"{group_name(0)}..{group_name(len(sizes) - 1)}")


def base_group(exp: Experiment, fold: int, group_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Images float32 [n, S, S, 1] in [0, 1] and labels of D_aug^(group_index+1)
    of the fold's training folds (augmentation file built by ``fold<k>/augment``)."""
    from keras_lesions.augment import read_augmentation_group

    check_group(exp.config, group_index)
    images, labels, _ = read_augmentation_group(exp.layout.augment_groups(fold), group_index)
    return images, labels


def test_set(exp: Experiment, fold: int, size: int | None = None):
    """(images [n, S, S, 1] in [0, 1], labels [n], lesion ids [n]) of the test fold."""
    from keras_lesions.pipeline import roi_inputs

    _, test_idx = train_test_indices(exp.dataset.folds, fold, where=exp.dataset_path)
    size = size or exp.config.classifier.input_size
    return (roi_inputs(exp.dataset, test_idx, size), exp.dataset.labels[test_idx],
            exp.dataset.lesion_ids[test_idx])


def extra_training_set(path: str | os.PathLike, dataset: LesionDataset, test_fold: int,
                       size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images and targets of an extra training dataset (synthetic or more real lesions).

    Returns:
        (images float32 [n, size, size, 1], targets float32 [n, classes] in
        the main dataset's class order: one-hot, or the extra set's soft
        labels, e.g. mixtures of specified factors).

    Raises:
        DatasetError: a class the main dataset lacks, a patient of the test
            fold among its lesions, or synthetic lesions from generators of
            another fold (all would leak the test set into training).
    """
    from keras_lesions.pipeline import roi_inputs

    extra = read_dataset(path)
    made_for = extra.extra.get("fold")
    if made_for is not None and int(made_for) != test_fold:
        raise DatasetError(f"was synthesized by generators of fold {made_for}, which learned "
                           f"from fold {test_fold}'s lesions: it may only augment fold "
                           f"{made_for}", path)
    unknown = [c for c in extra.class_names if c not in dataset.class_names]
    if unknown:
        raise DatasetError(f"has class {unknown[0]!r}, which the experiment's dataset "
                           f"({', '.join(dataset.class_names)}) lacks", path)
    test_patients = set(dataset.patient_ids[dataset.folds == test_fold].tolist())
    leaked = sorted(test_patients & set(extra.patient_ids.tolist()))
    if leaked:
        raise DatasetError(f"holds lesions of test-fold patient {leaked[0]!r}: training on them "
                           "would leak the test set", path)
    remap = np.array([dataset.class_names.index(c) for c in extra.class_names])
    targets = np.zeros((len(extra), len(dataset.class_names)), np.float32)
    targets[:, remap] = extra.targets()
    return roi_inputs(extra, None, size), targets


def take_per_class(dataset: LesionDataset, per_class: int, n_classes: int):
    """The first ``per_class`` lesions of each class: nested, balanced groups.

    Raises:
        KerasLesionsError: a class with fewer lesions.
    """
    from keras_lesions.pipeline import roi_inputs

    labels = dataset.labels
    short = [c for c in range(n_classes) if (labels == c).sum() < per_class]
    if short:
        raise KerasLesionsError(f"the synthetic set has fewer than {per_class} lesions of class "
                                f"{dataset.class_names[short[0]]!r}")
    chosen = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(n_classes)])
    return roi_inputs(dataset, chosen), labels[chosen]


def _addition(exp: Experiment, fold: int, addition: dict) -> tuple[np.ndarray, np.ndarray]:
    """The images and targets one addition of a classifier spec contributes."""
    from keras_lesions.pipeline import one_hot

    names = exp.class_names
    source = addition["source"]
    if source == "synthetic":
        synthetic = read_dataset(exp.layout.data_file(addition["data"]))
        images, labels = take_per_class(synthetic, addition["per_class"], len(names))
        return images, one_hot(labels, len(names))
    if source == "real-extra":
        from keras_lesions.experiments.extra_pool import extra_pool

        images, labels = extra_pool(exp, addition["per_class"] * len(names))
        return images, one_hot(labels, len(names))
    if source == "file":
        return extra_training_set(addition["path"], exp.dataset, fold,
                                  exp.config.classifier.input_size)
    raise ValueError(f"unknown addition source {source!r}")


# --------------------------------------------------------------------------- steps


def augment_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    build_augmentation(exp, spec.params["fold"], ctx)


def train_and_test(exp: Experiment, run_dir: Path, images: np.ndarray, targets: np.ndarray,
                   fold: int, seed: int, run_info: dict, ctx: StepContext) -> float:
    """One classifier run: train (resuming if interrupted), test on the fold, finish.

    Returns:
        The test accuracy.
    """
    from keras_lesions.runs.predictions import predict_and_record
    from keras_lesions.train.classifier import train_classifier

    model = train_classifier(images, targets, exp.config, run_dir, seed=seed,
                             resume=ctx.resume, run_info=run_info, verbose=ctx.verbose,
                             progress=ctx.bar(f"training {run_info['group']} fold {fold}"))
    accuracy = predict_and_record(model, run_dir, *test_set(exp, fold))
    finish_run(run_dir, {**run_info, "seed": seed, "test_accuracy": accuracy,
                         "n_test": int(np.sum(exp.dataset.folds == fold))})
    return accuracy


def classifier_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    run_classifier(exp, spec, ctx)


def run_classifier(exp: Experiment, spec: RunSpec, ctx: StepContext,
                   run_dir: Path | None = None) -> float:
    """Train a classifier spec's run (into ``run_dir``, default its plan folder)
    and test it on its fold; returns the test accuracy."""
    from keras_lesions.pipeline import one_hot

    p = spec.params
    fold, group_index = p["fold"], p["group_index"]
    images, labels = base_group(exp, fold, group_index)
    parts_images, parts_targets = [images], [one_hot(labels, len(exp.class_names))]
    for addition in p["additions"]:
        extra_images, extra_targets = _addition(exp, fold, addition)
        parts_images.append(extra_images)
        parts_targets.append(extra_targets)
    images, targets = np.concatenate(parts_images), np.concatenate(parts_targets)
    n_added = int(len(images) - len(labels))
    ctx.log(f"{spec.id}: training on {len(images)} images"
            + (f" ({n_added} added)" if n_added else "")
            + f", testing on fold {fold}")
    run_info = {"fold": fold, "group": p["group"], "base_group": group_name(group_index),
                "added_samples": exp.config.augment.group_sizes[group_index],
                "n_added": n_added, "additions": p["additions"],
                "class_names": exp.class_names, "dataset": str(exp.dataset_path)}
    return train_and_test(exp, run_dir or exp.layout.run_dir(spec.id), images, targets, fold,
                          p["seed"], run_info, ctx)


def arm_records(exp: Experiment, plan_: Plan, group: str) -> list[dict]:
    """The finished classifier runs of one arm (group) of the plan."""
    return [run_record(exp.layout.run_dir(s.id)) for s in plan_
            if s.step == "classifier" and s.params["group"] == group and s.is_done(exp.layout.root)]


def classic_curve(exp: Experiment, plan_: Plan) -> tuple[list[dict], dict[str, dict]]:
    """The curve's points and each group's summary, from finished runs."""
    curve, summaries = [], {}
    for index, added in enumerate(exp.config.augment.group_sizes):
        records = arm_records(exp, plan_, group_name(index))
        if records:
            summaries[group_name(index)] = summarize_predictions(records, exp.class_names)
            curve.append(curve_point(group_name(index), added, summaries[group_name(index)]))
    return curve, summaries


def choose_optimal_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    """D_aug optimal on the pooled accuracy of the curve (as in the paper: read
    off the test folds, which flatters it; the report says so)."""
    curve, _ = classic_curve(exp, Plan(classic_specs(exp)))
    optimal = saturation_point(curve, exp.config.evaluate.saturation_tolerance)
    index = [c["group"] for c in curve].index(optimal["group"])
    ctx.log(f"D_aug optimal: {optimal['group']} ({100 * optimal['accuracy']:.1f}%)")
    write_json(exp.layout.choice(OPTIMAL_CHOICE),
               {"group": optimal["group"], "group_index": index,
                "accuracy": optimal["accuracy"],
                "saturation_tolerance": exp.config.evaluate.saturation_tolerance,
                "curve": curve})


def classic_report(exp: Experiment, plan_: Plan) -> dict:
    curve, summaries = classic_curve(exp, plan_)
    optimal = saturation_point(curve, exp.config.evaluate.saturation_tolerance)
    return write_curve_report(curve, summaries, optimal, exp.layout.report,
                              exp.config.evaluate.saturation_tolerance)


def report_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    result = {**classic_report(exp, plan(exp)),
              "report": str(exp.layout.report / "classic_curve.png")}
    write_json(exp.layout.result, result)
    ctx.log(f"report: {exp.layout.report}")


def summary(result: dict) -> str:
    """The curve and the optimal group's table, for a terminal."""
    lines = ["added samples  accuracy"]
    for point in result["curve"]:
        lines.append(f"{point['added_samples']:>13}  {100 * point['accuracy']:.1f}% "
                     f"(folds {100 * point['fold_mean']:.1f} ± {100 * point['fold_std']:.1f})")
    lines += ["", f"D_aug optimal: {result['optimal_group']} "
              f"(+{result['optimal_added_samples']} samples)", "",
              text_table(result["optimal_summary"]), "",
              f"report: {result.get('report', '')}"]
    return "\n".join(lines)


STEPS = {"augment": augment_step, "classifier": classifier_step,
         "choose-optimal": choose_optimal_step}

KIND = ExperimentKind(
    name="classic-curve",
    description="the CNN-AUG curve over the D_aug groups (Frid-Adar §4.2.1, Fig. 8 red)",
    sections=("data", "augment", "classifier", "train", "evaluate"),
    plan=plan, steps={**STEPS, "report": report_step}, epoch_settings=("train.epochs",),
    summary=summary)
