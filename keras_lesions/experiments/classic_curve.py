"""The classic-augmentation curve, CNN-AUG (Frid-Adar et al. 2018 §4.2.1, Fig. 8 red).

The plan, per cell (repeat r, test fold k) of the repeated cross-validation:
split the training folds' patients into a fit part and validation patients
(``evaluate.validation_fraction``); build the augmentation groups from the
fit part (``<cell>/augment``); train the classifier on every group and seed
(``<cell>/classifier/D_aug<i>/seed<s>``), predicting the validation and the
test lesions; pick the cell's D_aug^optimal on its validation predictions
(``choose/<cell>/D_aug-optimal``); then write the report. The test fold is
predicted once and read only by the report. With ``evaluate.selection:
paper`` there are no validation patients and D_aug optimal is read off the
pooled test folds of the repeat, as in the paper; the report labels every
number it gives as test-selected. The classifier steps here are shared with
the GAN experiment, whose classifiers train on D_aug^optimal plus synthetic
or extra real lesions.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_lesions.config import ExperimentConfig
from keras_lesions.data.dataset import LesionDataset, read_dataset
from keras_lesions.data.folds import Split
from keras_lesions.errors import DatasetError, KerasLesionsError
from keras_lesions.evaluate.crossval import (
    best_point, curve_point, group_name, run_record, saturation_point, write_curve_report)
from keras_lesions.evaluate.report import text_table
from keras_lesions.experiments.context import Experiment
from keras_lesions.experiments.kind import ExperimentKind, StepContext
from keras_lesions.experiments.layout import cell_tag
from keras_lesions.experiments.plan import Plan, Resources, RunSpec
from keras_lesions.io import write_json
from keras_lesions.runs.folder import finish_run
from keras_lesions.runs.predictions import PREDICTIONS, VALIDATION_PREDICTIONS

OPTIMAL_CHOICE = "D_aug-optimal"
# A classifier run at paper size uses about a quarter of a 16 GB GPU.
CLASSIFIER_NEEDS = Resources(cpus=1, gpus=0.25)


# --------------------------------------------------------------------------- plan


def augment_id(repeat: int, fold: int) -> str:
    return f"{cell_tag(repeat, fold)}/augment"


def classifier_id(repeat: int, fold: int, group: str, seed: int) -> str:
    return f"{cell_tag(repeat, fold)}/classifier/{group}/seed{seed}"


def optimal_choice(repeat: int, fold: int) -> str:
    """The choice file's name of a cell's D_aug optimal."""
    return f"{cell_tag(repeat, fold)}/{OPTIMAL_CHOICE}"


def choose_optimal_id(repeat: int, fold: int) -> str:
    return f"choose/{optimal_choice(repeat, fold)}"


def selected_on(config: ExperimentConfig) -> str:
    """What the experiment's choices read: "validation" patients or the "test" folds."""
    return "test" if config.evaluate.selection == "paper" else "validation"


def augment_spec(exp: Experiment, repeat: int, fold: int) -> RunSpec:
    return RunSpec(id=augment_id(repeat, fold), step="augment",
                   params={"repeat": repeat, "fold": fold},
                   output=exp.layout.relative(exp.layout.augment_groups(cell_tag(repeat, fold))),
                   title=f"augmentation groups of {cell_tag(repeat, fold)}'s fit patients")


def classifier_spec(exp: Experiment, repeat: int, fold: int, group_index: int, seed: int, *,
                    group: str | None = None, additions: tuple[dict, ...] = (),
                    base_added: int | None = None,
                    depends_on: tuple[str, ...] = ()) -> RunSpec:
    """A classifier trained on D_aug^(group_index+1) of a cell's fit patients
    (or on the first ``base_added`` augmented samples: the classic control)
    plus ``additions`` ({"source": "synthetic", "data": run id, "per_class":
    n}, {"source": "real-extra", "per_class": n} or {"source": "file",
    "path": dataset}), predicting the cell's validation and test lesions."""
    group = group or group_name(group_index)
    run_id = classifier_id(repeat, fold, group, seed)
    added = exp.config.augment.group_sizes[group_index] if base_added is None else base_added
    return RunSpec(id=run_id, step="classifier",
                   params={"repeat": repeat, "fold": fold, "seed": seed,
                           "group_index": group_index, "group": group, "base_added": added,
                           "additions": list(additions)},
                   depends_on=(augment_id(repeat, fold),) + tuple(depends_on),
                   needs=CLASSIFIER_NEEDS, output=exp.layout.run_output(run_id),
                   title=f"classifier on {group}, {cell_tag(repeat, fold)}, seed {seed}")


def classic_specs(exp: Experiment) -> list[RunSpec]:
    """The augmentation and classifier runs of the curve, and each cell's
    choice of D_aug optimal."""
    config = exp.config
    specs, choices = [], []
    for repeat in range(config.evaluate.repeats):
        repeat_classifiers = []
        for fold in config.evaluate.folds:
            specs.append(augment_spec(exp, repeat, fold))
            cell = [classifier_spec(exp, repeat, fold, index, seed)
                    for index in range(len(config.augment.group_sizes))
                    for seed in config.evaluate.seeds]
            specs += cell
            repeat_classifiers.append(cell)
        for fold, cell in zip(config.evaluate.folds, repeat_classifiers):
            # On validation a cell's choice reads its own runs; on the test
            # folds (the paper), every fold of the repeat.
            reads = cell if selected_on(config) == "validation" else \
                [s for runs in repeat_classifiers for s in runs]
            choices.append(RunSpec(
                id=choose_optimal_id(repeat, fold), step="choose-optimal",
                params={"repeat": repeat, "fold": fold, "reads": [s.id for s in reads]},
                depends_on=tuple(s.id for s in reads), needs=Resources(cpus=1),
                output=exp.layout.relative(exp.layout.choice(optimal_choice(repeat, fold))),
                title=f"D_aug optimal of {cell_tag(repeat, fold)}: the smallest group at "
                      f"saturation on the {selected_on(config)} predictions", light=True))
    baselines = [baselines_spec(exp, repeat, fold) for repeat, fold in exp.cells()] \
        if config.evaluate.baselines else []
    return specs + choices + baselines


def baselines_spec(exp: Experiment, repeat: int, fold: int) -> RunSpec:
    """Table 6's baselines on one cell: fitted on its training patients,
    tested on its test fold (``keras_lesions.baselines``)."""
    run_id = f"{cell_tag(repeat, fold)}/baselines"
    return RunSpec(id=run_id, step="baselines", params={"repeat": repeat, "fold": fold},
                   needs=Resources(cpus=1),
                   output=exp.layout.relative(exp.layout.data_file(run_id, ".json")),
                   title=f"the texture and bag-of-words baselines of {cell_tag(repeat, fold)} "
                         "(Table 6)")


def report_spec(exp: Experiment, depends_on) -> RunSpec:
    return RunSpec(id="report", step="report", depends_on=tuple(depends_on),
                   output=exp.layout.relative(exp.layout.result), title="the report",
                   light=True)


def plan(exp: Experiment) -> Plan:
    specs = classic_specs(exp)
    return Plan(specs + [report_spec(exp, [s.id for s in specs])])


# --------------------------------------------------------------------------- inputs


def augment_sizes(config: ExperimentConfig, n_classes: int) -> list[int]:
    """Augmented samples of every group the augmentation file holds: the
    config's D_aug groups and, for the GAN experiment's classic control, each
    group's size plus each synthetic size (groups nest, so each is a prefix)."""
    sizes = set(config.augment.group_sizes)
    if config.kind == "gan-curve" and config.synth.classic_control:
        sizes |= {g + n * n_classes for g in config.augment.group_sizes
                  for n in config.synth.per_class_sizes}
    return sorted(sizes)


def build_augmentation(exp: Experiment, repeat: int, fold: int, ctx: StepContext) -> Path:
    """The cell's augmentation-group file, built once from its fit lesions."""
    from keras_lesions.augment import build_augmentation_groups

    config, aug = exp.config, exp.config.augment
    path = exp.layout.augment_groups(cell_tag(repeat, fold))
    if not path.exists():
        from keras_lesions.augment.classic import n_offline_augmentations

        split = exp.split(repeat, fold)
        sizes = augment_sizes(config, len(exp.class_names))
        capacity = len(split.fit) * n_offline_augmentations(aug.n_rot, aug.n_flip, aug.n_trans,
                                                            aug.n_scale)
        if max(aug.group_sizes) <= capacity < max(sizes):
            raise KerasLesionsError(
                f"{cell_tag(repeat, fold)}: the equal-size classic control needs {max(sizes)} "
                f"augmented samples, but its {len(split.fit)} fit lesions give {capacity}: set "
                "synth.classic_control: false, or raise augment.n_rot (or the other counts)",
                exp.dataset_path)
        ctx.log(f"{cell_tag(repeat, fold)}: building augmentation groups from {len(split.fit)} "
                f"fit lesions ({len(split.validation)} validation lesions held out) -> {path}")
        build_augmentation_groups(
            exp.repeat_dataset(repeat), test_fold=fold, path=path,
            group_sizes=sizes, n_rot=aug.n_rot,
            n_flip=aug.n_flip, n_trans=aug.n_trans, n_scale=aug.n_scale,
            seed=aug.seed + fold + 1000 * repeat, size=config.classifier.input_size,
            log=ctx.log, progress=ctx.bar(f"augmenting {cell_tag(repeat, fold)}"),
            train_indices=split.fit)
    return path


def check_group(config: ExperimentConfig, group_index: int) -> None:
    """Refuse a group the config does not define, naming the ones it does."""
    sizes = config.augment.group_sizes
    if not 0 <= group_index < len(sizes):
        raise KerasLesionsError(f"there is no {group_name(group_index)} (group "
                                f"{group_index + 1}): the config's augment.group_sizes define "
                                f"{group_name(0)}..{group_name(len(sizes) - 1)}")


def augmented_group(exp: Experiment, repeat: int, fold: int, n_added: int):
    """Images float32 [n, S, S, 1] in [0, 1], labels and meta of the cell's fit
    originals plus their first ``n_added`` augmented samples (a D_aug group,
    or the classic control), from the file ``<cell>/augment`` built."""
    from keras_lesions.augment import read_augmentation_group, read_augmentation_sources

    path = exp.layout.augment_groups(cell_tag(repeat, fold))
    sizes = list(read_augmentation_sources(path)["attrs"]["group_sizes"])
    if n_added not in sizes:
        raise KerasLesionsError(f"holds no group of {n_added} augmented samples (it has "
                                f"{sizes}): delete it to build it again", path)
    return read_augmentation_group(path, sizes.index(n_added))


def base_group(exp: Experiment, repeat: int, fold: int,
               group_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of D_aug^(group_index+1) of the cell's fit lesions."""
    check_group(exp.config, group_index)
    images, labels, _ = augmented_group(exp, repeat, fold,
                                        exp.config.augment.group_sizes[group_index])
    return images, labels


def lesion_set(exp: Experiment, indices: np.ndarray, size: int | None = None):
    """(images [n, S, S, 1] in [0, 1], labels [n], lesion ids [n]) of the lesions."""
    from keras_lesions.pipeline import roi_inputs

    size = size or exp.config.classifier.input_size
    return (roi_inputs(exp.dataset, indices, size), exp.dataset.labels[indices],
            exp.dataset.lesion_ids[indices])


def extra_training_set(path: str | os.PathLike, dataset: LesionDataset, split: Split,
                       size: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Images and targets of an extra training dataset (synthetic or more real lesions).

    Returns:
        (images float32 [n, size, size, 1], targets float32 [n, classes] in
        the main dataset's class order: one-hot, or the extra set's soft
        labels, e.g. mixtures of specified factors; whether it holds lesions
        of the cell's validation patients: a run trained on it then predicts
        no validation lesions, and no choice can read it).

    Raises:
        DatasetError: a class the main dataset lacks, a patient of the cell's
            test fold among its lesions, or synthetic lesions from generators
            of another fold (both would leak the test fold into training).
    """
    from keras_lesions.pipeline import roi_inputs

    extra = read_dataset(path)
    made_for = extra.extra.get("fold")
    if made_for is not None and int(made_for) != split.fold:
        raise DatasetError(f"was synthesized by generators of fold {made_for}, which learned "
                           f"from fold {split.fold}'s lesions: it may only augment fold "
                           f"{made_for}", path)
    unknown = [c for c in extra.class_names if c not in dataset.class_names]
    if unknown:
        raise DatasetError(f"has class {unknown[0]!r}, which the experiment's dataset "
                           f"({', '.join(dataset.class_names)}) lacks", path)
    patients = set(extra.patient_ids.tolist())
    leaked = sorted(set(dataset.patient_ids[split.test].tolist()) & patients)
    if leaked:
        raise DatasetError(f"holds lesions of test-fold patient {leaked[0]!r}: training on them "
                           "would leak the test set", path)
    holds_validation = bool(set(dataset.patient_ids[split.validation].tolist()) & patients)
    remap = np.array([dataset.class_names.index(c) for c in extra.class_names])
    targets = np.zeros((len(extra), len(dataset.class_names)), np.float32)
    targets[:, remap] = extra.targets()
    return roi_inputs(extra, None, size), targets, holds_validation


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


def _addition(exp: Experiment, split: Split, addition: dict
              ) -> tuple[np.ndarray, np.ndarray, bool]:
    """The images and targets one addition of a classifier spec contributes,
    and whether they hold lesions of the cell's validation patients."""
    from keras_lesions.pipeline import one_hot

    names = exp.class_names
    source = addition["source"]
    if source == "synthetic":
        synthetic = read_dataset(exp.layout.data_file(addition["data"]))
        images, labels = take_per_class(synthetic, addition["per_class"], len(names))
        return images, one_hot(labels, len(names)), False
    if source == "real-extra":
        from keras_lesions.experiments.extra_pool import extra_pool

        images, labels = extra_pool(exp, addition["per_class"] * len(names))
        return images, one_hot(labels, len(names)), False
    if source == "file":
        return extra_training_set(addition["path"], exp.dataset, split,
                                  exp.config.classifier.input_size)
    raise ValueError(f"unknown addition source {source!r}")


# --------------------------------------------------------------------------- steps


def augment_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    build_augmentation(exp, spec.params["repeat"], spec.params["fold"], ctx)


def train_and_test(exp: Experiment, run_dir: Path, images: np.ndarray, targets: np.ndarray,
                   split: Split, seed: int, run_info: dict, ctx: StepContext) -> float:
    """One classifier run: train (resuming if interrupted), predict the cell's
    validation lesions (what choices read) and its test fold (what only the
    report reads), finish.

    Returns:
        The test accuracy.
    """
    from keras_lesions.runs.predictions import predict_and_record
    from keras_lesions.train.classifier import sgd_steps, train_classifier

    validation = split.validation if run_info.get("validation_held_out", True) else []
    model = train_classifier(images, targets, exp.config, run_dir, seed=seed,
                             resume=ctx.resume, run_info=run_info, verbose=ctx.verbose,
                             progress=ctx.bar(f"training {run_info['group']} "
                                              f"{cell_tag(split.repeat, split.fold)}"))
    validation_accuracy = None
    if len(validation):
        validation_accuracy = predict_and_record(model, run_dir, *lesion_set(exp, validation),
                                                 name=VALIDATION_PREDICTIONS)
    accuracy = predict_and_record(model, run_dir, *lesion_set(exp, split.test))
    finish_run(run_dir, {**run_info, "seed": seed, "test_accuracy": accuracy,
                         "validation_accuracy": validation_accuracy,
                         "n_test": int(len(split.test)), "n_validation": int(len(split.validation)),
                         "n_train": int(len(images)),
                         "sgd_steps": sgd_steps(exp.config.train, len(images))})
    return accuracy


def classifier_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    run_classifier(exp, spec, ctx)


def baselines_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    """Every Table 6 baseline on one cell; their test predictions as JSON."""
    from keras_lesions.baselines.run import baselines_on_cells

    p = spec.params
    split = exp.split(p["repeat"], p["fold"])
    records = baselines_on_cells(exp, [(p["repeat"], p["fold"], split.training, split.test)],
                                 log=ctx.log)
    write_json(exp.layout.data_file(spec.id, ".json"), records)


def baseline_summaries(exp: Experiment, plan_: Plan) -> dict[str, dict]:
    """Each Table 6 baseline's summary over the finished cells (none when the
    config runs none)."""
    from keras_lesions.runs.folder import read_json_record

    by_method: dict[str, list[dict]] = {}
    for spec in plan_:
        if spec.step == "baselines" and spec.is_done(exp.layout.root):
            for method, records in read_json_record(
                    exp.layout.data_file(spec.id, ".json")).items():
                by_method.setdefault(method, []).extend(records)
    return {method: exp.summarize(records) for method, records in by_method.items()}


def write_baselines_table(exp: Experiment, plan_: Plan, cnn: dict[str, dict]) -> list[str]:
    """Table 6 (report/table6.md) with the CNN rows given; its Markdown lines
    for the experiment's own report (nothing without baselines)."""
    from keras_lesions.baselines.crossval import table6, write_table6

    baselines = baseline_summaries(exp, plan_)
    if not baselines:
        return []
    summaries = {**cnn, **baselines}
    class_weight = None if exp.config.train.class_balance == "none" else "balanced"
    cells = len({(s.params["repeat"], s.params["fold"]) for s in plan_ if s.step == "baselines"})
    write_table6(summaries, exp.layout.report, source=str(exp.dataset_path), cells=cells,
                 class_weight=class_weight, cnn_from="this experiment")
    return ["## Table 6: comparison to non-network methods (§4.5)", "",
            "Each baseline fitted on a cell's training patients only, its SVM's C and gamma "
            "chosen by an inner cross-validation over them (grouped by patient); weighted "
            "sensitivity and specificity as the paper reports them (table6.md has the "
            "details).", "", *table6(summaries)]


def run_classifier(exp: Experiment, spec: RunSpec, ctx: StepContext,
                   run_dir: Path | None = None) -> float:
    """Train a classifier spec's run (into ``run_dir``, default its plan folder)
    and test it on its cell; returns the test accuracy."""
    from keras_lesions.pipeline import one_hot, preprocessing_record
    from keras_lesions.train.balance import balance_record

    p = spec.params
    repeat, fold, group_index = p["repeat"], p["fold"], p["group_index"]
    split = exp.split(repeat, fold)
    images, labels, _ = augmented_group(exp, repeat, fold, p["base_added"])
    parts_images, parts_targets = [images], [one_hot(labels, len(exp.class_names))]
    held_out = True
    for addition in p["additions"]:
        extra_images, extra_targets, holds_validation = _addition(exp, split, addition)
        parts_images.append(extra_images)
        parts_targets.append(extra_targets)
        held_out &= not holds_validation
    if not held_out:
        ctx.log(f"{spec.id}: the extra data hold lesions of validation patients: no validation "
                "predictions (no choice reads this run)")
    images, targets = np.concatenate(parts_images), np.concatenate(parts_targets)
    n_added = int(len(images) - len(labels))
    ctx.log(f"{spec.id}: training on {len(images)} images"
            + (f" ({n_added} added)" if n_added else "")
            + f", testing on {cell_tag(repeat, fold)}")
    run_info = {"repeat": repeat, "fold": fold, "group": p["group"], "n_fit": int(len(split.fit)),
                "base_group": group_name(group_index), "added_samples": p["base_added"],
                "n_added": n_added, "additions": p["additions"], "validation_held_out": held_out,
                "class_names": exp.class_names, "dataset": str(exp.dataset_path),
                "preprocessing": preprocessing_record(exp.dataset,
                                                      exp.config.classifier.input_size),
                **balance_record(targets, exp.class_names, exp.config.train.class_balance)}
    return train_and_test(exp, run_dir or exp.layout.run_dir(spec.id), images, targets, split,
                          p["seed"], run_info, ctx)


def arm_records(exp: Experiment, plan_: Plan, group: str, cell=None) -> list[dict]:
    """The finished classifier runs of one arm (group) of the plan, of one
    cell (repeat, fold) or of all; test predictions."""
    return [run_record(exp.layout.run_dir(s.id)) for s in plan_
            if s.step == "classifier" and s.params["group"] == group
            and (cell is None or (s.params["repeat"], s.params["fold"]) == cell)
            and s.is_done(exp.layout.root)]


def choice_records(exp: Experiment, run_ids) -> list[dict]:
    """What a choice reads of the runs it depends on: their validation
    predictions, or their test predictions with ``evaluate.selection: paper``.
    Every choice of the project reads predictions through this function."""
    name = PREDICTIONS if selected_on(exp.config) == "test" else VALIDATION_PREDICTIONS
    return [run_record(exp.layout.run_dir(run_id), name) for run_id in run_ids]


def selection_scores(exp: Experiment, run_ids, group_of) -> dict[str, dict]:
    """The primary metric (``evaluate.primary_metric``) per group over the
    runs a choice reads (validation or, for ``selection: paper``, test
    predictions), pooled over the cell's seeds, with its 95% patient-bootstrap
    interval: {group: {"metric", "value", "ci95", "accuracy"}}."""
    from keras_lesions.evaluate.primary import metric_interval

    by_group: dict[str, list[dict]] = {}
    for spec_id, record in zip(run_ids, choice_records(exp, run_ids)):
        by_group.setdefault(group_of[spec_id], []).append(record)
    metric = exp.config.evaluate.primary_metric
    patient_of = exp.patient_of()
    return {group: {**metric_interval(records, metric, len(exp.class_names), patient_of),
                    "accuracy": float(np.mean(np.concatenate(
                        [np.asarray(r["y_true"]) == np.asarray(r["y_pred"]) for r in records])))}
            for group, records in by_group.items()}


def choose_optimal_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    """A cell's D_aug optimal: the smallest group at saturation of the
    primary metric on the cell's validation patients (§4.2.1's rule; the paper
    reads total accuracy off the test folds, which ``selection: paper`` and
    ``primary_metric: accuracy`` keep). The tolerance is a fraction of the
    best group's interval unless the config fixes it."""
    from keras_lesions.evaluate.primary import label, saturation_tolerance

    the_plan = Plan(classic_specs(exp))
    reads = spec.params["reads"]
    group_of = {run_id: the_plan.get(run_id).params["group"] for run_id in reads}
    scores = selection_scores(exp, reads, group_of)
    sizes = exp.config.augment.group_sizes
    curve = [{"group": group_name(i), "added_samples": added, **scores[group_name(i)]}
             for i, added in enumerate(sizes) if group_name(i) in scores]
    evaluate = exp.config.evaluate
    best = best_point(curve)
    tolerance = saturation_tolerance(best, evaluate.saturation_tolerance,
                                     evaluate.saturation_fraction)
    optimal = saturation_point(curve, tolerance)
    index = [c["group"] for c in curve].index(optimal["group"])
    where = selected_on(exp.config)
    ctx.log(f"{cell_tag(spec.params['repeat'], spec.params['fold'])}: D_aug optimal "
            f"{optimal['group']} ({label(evaluate.primary_metric)} "
            f"{100 * optimal['value']:.1f}% on the {where} predictions; best {best['group']} "
            f"{100 * best['value']:.1f}%, tolerance {100 * tolerance:.1f} points)")
    write_json(exp.layout.choice(optimal_choice(spec.params["repeat"], spec.params["fold"])),
               {"group": optimal["group"], "group_index": index,
                "metric": evaluate.primary_metric, "value": optimal["value"],
                "accuracy": optimal["accuracy"], "selected_on": where,
                "saturation_tolerance": tolerance,
                "saturation_rule": saturation_rule(exp.config), "curve": curve})


def saturation_rule(config: ExperimentConfig) -> str:
    """How the saturation tolerance is set, in words."""
    evaluate = config.evaluate
    if evaluate.saturation_tolerance is not None:
        return f"fixed at {100 * evaluate.saturation_tolerance:g} points"
    return (f"{evaluate.saturation_fraction:g} × the half-width of the best group's 95% "
            "interval on the same predictions")


def classic_curve(exp: Experiment, plan_: Plan) -> tuple[list[dict], dict[str, dict]]:
    """The curve's points (test accuracy of every group) and each group's
    summary, from finished runs."""
    from keras_lesions.evaluate.verdict import accuracy_interval

    curve, summaries = [], {}
    patient_of = exp.patient_of()
    for index, added in enumerate(exp.config.augment.group_sizes):
        records = arm_records(exp, plan_, group_name(index))
        if records:
            summaries[group_name(index)] = exp.summarize(records)
            curve.append(curve_point(group_name(index), added, summaries[group_name(index)],
                                     accuracy_interval(records, patient_of)))
    return curve, summaries


def cell_choices(exp: Experiment) -> dict[tuple[int, int], dict]:
    """Every cell's D_aug optimal choice that is made: (repeat, fold) -> choice."""
    from keras_lesions.runs.folder import read_json_record

    made = {}
    for repeat, fold in exp.cells():
        path = exp.layout.choice(optimal_choice(repeat, fold))
        if path.is_file():
            made[(repeat, fold)] = read_json_record(path)
    return made


def optimal_records(exp: Experiment, plan_: Plan, choices: dict) -> list[dict]:
    """CNN-AUG as the experiment runs it: each cell's classifiers on that
    cell's D_aug optimal (test predictions)."""
    return [record for cell, choice in sorted(choices.items())
            for record in arm_records(exp, plan_, choice["group"], cell)]


def classic_report(exp: Experiment, plan_: Plan) -> dict:
    curve, summaries = classic_curve(exp, plan_)
    choices = cell_choices(exp)
    optimal = exp.summarize(optimal_records(exp, plan_, choices))
    result = write_curve_report(curve, summaries, choices, optimal,
                                exp.layout.report, saturation_rule(exp.config),
                                selected_on(exp.config))
    if exp.config.kind == "classic-curve":
        table = write_baselines_table(exp, plan_, {"CNN-AUG": optimal})
        if table:
            result["table6"] = str(exp.layout.report / "table6.md")
    return result


def report_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    result = {**classic_report(exp, plan(exp)),
              "report": str(exp.layout.report / "classic_curve.png")}
    exp.write_result(result)
    ctx.log(f"report: {exp.layout.report}")


def summary(result: dict) -> str:
    """The curve and the chosen groups' table, for a terminal."""
    lines = ["added samples  test accuracy        balanced accuracy (95% CIs, patient bootstrap)"]
    for point in result["curve"]:
        low, high = point["ci95"]
        b_low, b_high = point.get("balanced_ci95", [float("nan")] * 2)
        lines.append(f"{point['added_samples']:>13}  {100 * point['accuracy']:.1f}% "
                     f"[{100 * low:.1f}, {100 * high:.1f}]  "
                     f"{100 * point.get('balanced_accuracy', float('nan')):.1f}% "
                     f"[{100 * b_low:.1f}, {100 * b_high:.1f}]")
    lines += ["", f"D_aug optimal per cell, chosen on the {result['selected_on']} "
              f"predictions: {result['optimal_counts']}", "",
              text_table(result["optimal_summary"]), "",
              f"report: {result.get('report', '')}"]
    return "\n".join(lines)


STEPS = {"augment": augment_step, "classifier": classifier_step,
         "choose-optimal": choose_optimal_step, "baselines": baselines_step}

KIND = ExperimentKind(
    name="classic-curve",
    description="the CNN-AUG curve over the D_aug groups (Frid-Adar §4.2.1, Fig. 8 red)",
    sections=("data", "augment", "classifier", "train", "evaluate"),
    plan=plan, steps={**STEPS, "report": report_step}, epoch_settings=("train.epochs",),
    summary=summary)
