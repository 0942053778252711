"""The CNN-AUG-GAN experiment of Frid-Adar et al. 2018 (Fig. 7, Fig. 8, Tables 3, 5, 7).

The plan extends the classic curve's. Per test fold, everything from its
training folds only, starting from the base group B (D_aug^optimal, or the
config's ``synth.base_group``); every GAN and synthetic set is keyed by B:

1. ``fold<k>/gan/dcgan-<class>/base-B/seed<g>``: one DCGAN per class, and
   ``fold<k>/gan/acgan/base-B/seed<g>``, trained on B (§4.2.2: "we
   incorporated classic augmentation for the training process");
2. ``fold<k>/synth/<kind>/base-B``: their synthetic lesions (the largest
   group; groups nest);
3. ``fold<k>/classifier/B+D_synth<n>x<C>/seed<s>``: the classifier on B plus
   n synthetic lesions per class (Fig. 8, blue), and ``B+real<n>x<C>``, the
   same sizes of extra real lesions (phantoms only; Fig. 8, green);
4. ``fold<k>/quality/base-B``: Fréchet and kernel distances in the fold's
   CNN-AUG classifier features, nearest-real distances;
5. ``choose/synthetic-size/base-B``: the best synthetic size, then at that
   size the ACGAN (and DiffAugment) rows of Table 5, and the ACGAN
   discriminator used directly as the classifier;
6. ``report``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from keras_lesions.config import ExperimentConfig
from keras_lesions.data.dataset import read_dataset, write_dataset
from keras_lesions.data.folds import train_test_indices
from keras_lesions.errors import KerasLesionsError
from keras_lesions.evaluate.crossval import group_name, run_record
from keras_lesions.evaluate.gan_report import (
    diff_augment_verdict, point, write_gan_report, write_synthetic_grid)
from keras_lesions.evaluate.report import summarize_predictions, text_table
from keras_lesions.evaluate.verdict import paired_differences, verdict
from keras_lesions.experiments import classic_curve as classic
from keras_lesions.experiments.context import Experiment
from keras_lesions.experiments.extra_pool import (
    EXTRA_POOL, extra_pool_spec, extra_pool_step, has_extra_pool)
from keras_lesions.experiments.kind import ExperimentKind, StepContext
from keras_lesions.experiments.plan import Plan, Resources, RunSpec
from keras_lesions.io import write_json
from keras_lesions.runs.folder import RunError, finish_run, read_json_record

DIFFAUG_SWAP = "diffaug-swap"
ALL_CLASSES = None  # train_gans(classes=ALL_CLASSES): a DCGAN for every class
DEFAULT_DIFF_AUGMENT = "translation,cutout,color"
# A paper-size DCGAN (G 18.9 M, D 4.3 M parameters, batch 64) fits half a 16 GB GPU.
GAN_NEEDS = Resources(cpus=1, gpus=0.5)


def diff_augment_counterpart(config: ExperimentConfig) -> ExperimentConfig:
    """The config with DiffAugment switched the other way, for the comparison."""
    policy = "" if config.gan.diff_augment else DEFAULT_DIFF_AUGMENT
    return dataclasses.replace(config, gan=dataclasses.replace(config.gan, diff_augment=policy))


# --------------------------------------------------------------------------- ids


def gan_id(fold: int, name: str, base: str, seed: int) -> str:
    return f"fold{fold}/gan/{name}/base-{base}/seed{seed}"


def synth_id(fold: int, kind: str, base: str) -> str:
    return f"fold{fold}/synth/{kind}/base-{base}"


def discriminator_id(fold: int, base: str) -> str:
    return f"fold{fold}/acgan-discriminator/base-{base}"


def size_choice(base: str) -> str:
    return f"synthetic-size-base-{base}"


def base_index(exp: Experiment) -> int | None:
    """0-based index of the group the GANs start from: ``synth.base_group``, or
    D_aug optimal once it is chosen; None before."""
    if exp.config.synth.base_group:
        return exp.config.synth.base_group - 1
    path = exp.layout.choice(classic.OPTIMAL_CHOICE)
    return _choice_value(path, "group_index")


def best_size(exp: Experiment, base: str) -> int | None:
    return _choice_value(exp.layout.choice(size_choice(base)), "per_class")


def _choice_value(path, key: str) -> int | None:
    """An integer of a choice the plan made, None before it is made.

    Raises:
        RunError: a damaged choice file.
    """
    if not path.is_file():
        return None
    value = read_json_record(path).get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RunError(f"names no {key}; delete it to make the choice again", path)
    return value


# --------------------------------------------------------------------------- plan


def _gan_spec(exp, fold, kind, class_name, base, b, *, swap=False) -> RunSpec:
    name = (f"dcgan-{class_name}" if kind == "dcgan" else "acgan") + \
        (f"-{DIFFAUG_SWAP}" if swap else "")
    run_id = gan_id(fold, name, base, exp.config.gan.seed)
    return RunSpec(id=run_id, step="gan",
                   params={"fold": fold, "kind": kind, "class_name": class_name,
                           "base_index": b, "swap_diff_augment": swap},
                   depends_on=(classic.augment_id(fold),), needs=GAN_NEEDS,
                   output=exp.layout.run_output(run_id),
                   title=f"{kind.upper()} {class_name or 'all classes'} on {base}, fold {fold}")


def _synth_spec(exp, fold, kind, base, gans: list[RunSpec]) -> RunSpec:
    run_id = synth_id(fold, kind, base)
    return RunSpec(id=run_id, step="synthesize",
                   params={"fold": fold, "generators": [g.id for g in gans],
                           "per_class": max(exp.config.synth.per_class_sizes)},
                   depends_on=tuple(g.id for g in gans), needs=Resources(cpus=1, gpus=0.25),
                   output=exp.layout.relative(exp.layout.data_file(run_id)),
                   title=f"{kind} synthetic lesions of fold {fold}")


def gan_specs(exp: Experiment, b: int) -> tuple[list[RunSpec], list[str]]:
    """The runs that start from base group index ``b``; and the stages that wait
    for the best synthetic size."""
    config, names = exp.config, exp.class_names
    base, n_classes = group_name(b), len(exp.class_names)
    synth_cfg, seeds = config.synth, config.evaluate.seeds
    specs: list[RunSpec] = []
    extra = has_extra_pool(exp)
    if extra:
        specs.append(extra_pool_spec(exp))
    synthetic_arms = []
    for fold in config.evaluate.folds:
        dcgans = [_gan_spec(exp, fold, "dcgan", c, base, b) for c in names]
        sets = {"dcgan": _synth_spec(exp, fold, "dcgan", base, dcgans)}
        specs += dcgans
        if synth_cfg.acgan:
            acgan = _gan_spec(exp, fold, "acgan", None, base, b)
            sets["acgan"] = _synth_spec(exp, fold, "acgan", base, [acgan])
            disc_id = discriminator_id(fold, base)
            specs += [acgan, RunSpec(
                id=disc_id, step="acgan-discriminator", params={"fold": fold, "gan": acgan.id},
                depends_on=(acgan.id,), output=exp.layout.run_output(disc_id),
                title=f"the ACGAN discriminator as the classifier, fold {fold}")]
        if synth_cfg.compare_diff_augment:
            swapped = [_gan_spec(exp, fold, "dcgan", c, base, b, swap=True) for c in names]
            sets["dcgan_diffaug_swap"] = _synth_spec(exp, fold, f"dcgan-{DIFFAUG_SWAP}", base,
                                                     swapped)
            specs += swapped
        specs += list(sets.values())
        for per_class in synth_cfg.per_class_sizes:
            for seed in seeds:
                arm = classic.classifier_spec(
                    exp, fold, b, seed, group=f"{base}+D_synth{per_class}x{n_classes}",
                    additions=({"source": "synthetic", "data": sets["dcgan"].id,
                                "per_class": per_class},), depends_on=(sets["dcgan"].id,))
                synthetic_arms.append(arm)
                specs.append(arm)
                if extra:
                    specs.append(classic.classifier_spec(
                        exp, fold, b, seed, group=f"{base}+real{per_class}x{n_classes}",
                        additions=({"source": "real-extra", "per_class": per_class},),
                        depends_on=(EXTRA_POOL,)))
        quality_id = f"fold{fold}/quality/base-{base}"
        specs.append(RunSpec(
            id=quality_id, step="quality",
            params={"fold": fold, "base_index": b, "sets": {k: s.id for k, s in sets.items()}},
            depends_on=tuple(s.id for s in sets.values())
            + (classic.classifier_id(fold, base, seeds[0]),),
            output=exp.layout.relative(exp.layout.data_file(quality_id, ".json")),
            title=f"generator quality of fold {fold}"))
    choose = RunSpec(id=f"choose/synthetic-size/base-{base}", step="choose-size",
                     params={"base": base}, depends_on=tuple(s.id for s in synthetic_arms),
                     output=exp.layout.relative(exp.layout.choice(size_choice(base))),
                     title="the best synthetic size (pooled test accuracy, as in the paper)",
                     light=True)
    specs.append(choose)
    later: list[str] = []
    others = _table5_methods(config)
    size = best_size(exp, base)
    if others and size is None:
        later.append(f"Table 5's {' and '.join(tag for _, tag in others)} classifiers: planned "
                     f"once {choose.id} has picked the synthetic size")
    elif others:
        for fold in config.evaluate.folds:
            for kind, tag in others:
                data = synth_id(fold, kind, base)
                for seed in seeds:
                    specs.append(classic.classifier_spec(
                        exp, fold, b, seed, group=f"{base}+{tag}{size}x{n_classes}",
                        additions=({"source": "synthetic", "data": data, "per_class": size},),
                        depends_on=(data, choose.id)))
    return specs, later


def _table5_methods(config: ExperimentConfig) -> list[tuple[str, str]]:
    """(synthetic set kind, group tag) of Table 5's rows beside the DCGAN's."""
    return ([("acgan", "ACGAN_synth")] if config.synth.acgan else []) + (
        [(f"dcgan-{DIFFAUG_SWAP}", "DiffAugSwap_synth")] if config.synth.compare_diff_augment
        else [])


def plan(exp: Experiment) -> Plan:
    specs = classic.classic_specs(exp)
    b = base_index(exp)
    later = []
    if b is None:
        later.append(f"the CNN-AUG-GAN runs (GANs, synthetic sets, classifiers): planned once "
                     f"{classic.CHOOSE_OPTIMAL} has picked the group the GANs train on")
    else:
        classic.check_group(exp.config, b)
        more, later = gan_specs(exp, b)
        specs += more
    report = classic.report_spec(exp, [s.id for s in specs])
    return Plan(specs + ([] if later else [report]), later)


# --------------------------------------------------------------------------- steps


def gan_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    from keras_lesions.train.gan import train_gan

    p = spec.params
    fold, kind, names = p["fold"], p["kind"], exp.class_names
    config = diff_augment_counterpart(exp.config) if p["swap_diff_augment"] else exp.config
    images, labels = classic.base_group(exp, fold, p["base_index"])
    selected = labels == names.index(p["class_name"]) if kind == "dcgan" else np.ones(len(labels),
                                                                                       bool)
    what = (f"DCGAN {p['class_name']}" if kind == "dcgan" else "ACGAN") + (
        f" (DiffAugment {config.gan.diff_augment})" if config.gan.diff_augment else "")
    ctx.log(f"{spec.id}: training the {what} on {int(selected.sum())} images "
            f"({config.gan.epochs} epochs)")
    train_gan(kind, images[selected], config, exp.layout.run_dir(spec.id),
              class_ids=None if kind == "dcgan" else labels[selected], class_names=names,
              run_info={"fold": fold, "class_name": p["class_name"],
                        "base_group": group_name(p["base_index"]),
                        "dataset": str(exp.dataset_path)},
              resume=ctx.resume, progress=ctx.bar(f"{what} fold {fold}"), verbose=ctx.verbose)


def synthesize_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    from keras_lesions.synth import synthesize_dataset

    p = spec.params
    ctx.log(f"{spec.id}: synthesizing {p['per_class']} lesions per class")
    synthetic = synthesize_dataset([exp.layout.run_dir(g) for g in p["generators"]],
                                   p["per_class"], exp.config.synth.seed + p["fold"],
                                   exp.class_names)
    synthetic.created_by = f"keras_lesions experiment {exp.config.name}"
    write_dataset(synthetic, exp.layout.data_file(spec.id))


def quality_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    """Fréchet/kernel distances in the fold's CNN-AUG feature space, NN distances.

    The reference set is the fold's original training ROIs, not their
    augmentations: rotated copies of one lesion sit close together and would
    make the memorisation check needlessly strict.
    """
    from keras_lesions.evaluate.quality import generator_quality_report
    from keras_lesions.pipeline import roi_inputs
    from keras_lesions.train.classifier import load_run_model

    p = spec.params
    fold, names = p["fold"], exp.class_names
    base = group_name(p["base_index"])
    classifier = load_run_model(exp.layout.run_dir(
        classic.classifier_id(fold, base, exp.config.evaluate.seeds[0])))
    train_idx, _ = train_test_indices(exp.dataset.folds, fold)
    real_images = roi_inputs(exp.dataset, train_idx, exp.config.classifier.input_size)
    real_labels = exp.dataset.labels[train_idx]
    real = {name: real_images[real_labels == c] for c, name in enumerate(names)}
    result = {}
    for kind, data_id in p["sets"].items():
        dataset = read_dataset(exp.layout.data_file(data_id))
        images = roi_inputs(dataset)
        synthetic = {name: images[dataset.labels == c] for c, name in enumerate(names)}
        result[kind] = generator_quality_report(real, synthetic, classifier)
    ctx.log(f"{spec.id}: generator quality measured ({', '.join(p['sets'])})")
    write_json(exp.layout.data_file(spec.id, ".json"), result)


def acgan_discriminator_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    """Table 5, last row: the ACGAN discriminator's class head as the classifier."""
    from keras_lesions.inference import predict
    from keras_lesions.runs.predictions import write_predictions
    from keras_lesions.train.gan import load_discriminator

    fold = spec.params["fold"]
    discriminator, _ = load_discriminator(exp.layout.run_dir(spec.params["gan"]))
    images, labels, ids = classic.test_set(exp, fold)
    outputs = predict(discriminator, images * 2.0 - 1.0)  # D reads [−1, 1] (§3.2)
    run_dir = exp.layout.run_dir(spec.id)
    accuracy = write_predictions(run_dir, outputs["class"], labels, ids)
    ctx.log(f"fold {fold}: ACGAN discriminator as classifier: {100 * accuracy:.1f}%")
    finish_run(run_dir, {"fold": fold, "seed": exp.config.gan.seed, "group": "ACGAN_discriminator",
                         "class_names": exp.class_names, "test_accuracy": accuracy,
                         "generator_run": spec.params["gan"], "dataset": str(exp.dataset_path)})


def choose_size_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    """The best synthetic size: the arg-max of the pooled test accuracy over the
    D_synth groups, as the paper picks it (which flatters it; the report says so)."""
    base = spec.params["base"]
    n_classes = len(exp.class_names)
    the_plan = plan(exp)
    accuracies = {}
    for per_class in exp.config.synth.per_class_sizes:
        records = classic.arm_records(exp, the_plan, f"{base}+D_synth{per_class}x{n_classes}")
        if records:
            accuracies[per_class] = summarize_predictions(records, exp.class_names)["pooled"][
                "accuracy"]
    if not accuracies:
        raise KerasLesionsError("no finished CNN-AUG-GAN run to pick the best synthetic size "
                                "from")
    best = max(accuracies, key=lambda size: (accuracies[size], -size))
    ctx.log(f"best synthetic size: {best} per class")
    write_json(exp.layout.choice(size_choice(base)),
               {"per_class": best, "accuracy_by_size": {str(k): v for k, v in accuracies.items()}})


def report_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    the_plan = plan(exp)
    classic_result = classic.classic_report(exp, the_plan)
    b = base_index(exp)
    base, names = group_name(b), exp.class_names
    n_classes = len(names)

    def summary(group):
        records = classic.arm_records(exp, the_plan, group)
        return summarize_predictions(records, names) if records else None

    baseline = summary(base)
    curves: dict[str, list[dict]] = {}
    lines = {"synthetic (CNN-AUG-GAN, DCGAN)": "D_synth", "more real data": "real"}
    for label, tag in lines.items():
        points = [{"added_per_class": 0, **point(baseline)}]
        for per_class in exp.config.synth.per_class_sizes:
            s = summary(f"{base}+{tag}{per_class}x{n_classes}")
            if s is not None:
                points.append({"added_per_class": per_class, **point(s)})
        if len(points) > 1:
            curves[label] = points
    size = best_size(exp, base)
    best_group = f"{base}+D_synth{size}x{n_classes}"
    best = summary(best_group)
    discriminator = [run_record(exp.layout.run_dir(s.id)) for s in the_plan
                     if s.step == "acgan-discriminator"]
    table5 = [("CNN-AUG (classic augmentation only)", baseline),
              (f"DCGAN synthetic augmentation (+{size}x{n_classes})", best),
              (f"ACGAN synthetic augmentation (+{size}x{n_classes})",
               summary(f"{base}+ACGAN_synth{size}x{n_classes}")),
              ("ACGAN discriminator as the classifier",
               summarize_predictions(discriminator, names) if discriminator else None)]
    quality = {s.params["fold"]: read_json_record(exp.layout.data_file(s.id, ".json"))
               for s in the_plan if s.step == "quality"}
    sentence = verdict("Synthetic augmentation",
                       paired_differences(baseline["per_fold"], best["per_fold"]),
                       baseline["pooled"]["accuracy"], best["pooled"]["accuracy"])
    sentence += (" The synthetic size was picked on the test folds, as in the paper, which "
                 "flatters it.")
    if exp.config.synth.compare_diff_augment:
        swap_policy = diff_augment_counterpart(exp.config).gan.diff_augment or "off"
        swap = summary(f"{base}+DiffAugSwap_synth{size}x{n_classes}")
        table5.append((f"DCGAN with DiffAugment {swap_policy} (+{size}x{n_classes})", swap))
        if swap is not None:
            sentence += " " + diff_augment_verdict(best, swap, exp.config.gan.diff_augment or "off",
                                                   swap_policy, quality)
    out = exp.layout.report
    write_gan_report(out, exp.config, names, base=base,
                     base_added=exp.config.augment.group_sizes[b], classic=classic_result,
                     curves=curves, table5=table5, baseline=baseline, best=best,
                     best_group=best_group, quality=quality, sentence=sentence,
                     has_extra=has_extra_pool(exp))
    first_fold = exp.config.evaluate.folds[0]
    images, labels = classic.base_group(exp, first_fold, b)
    write_synthetic_grid(images, labels,
                         read_dataset(exp.layout.data_file(synth_id(first_fold, "dcgan", base))),
                         names, first_fold, out / "gan_synthetic_vs_real.png")
    result = {"base_group": base, "best_synthetic_per_class": size, "curves": curves,
              "verdict": sentence, "table5": {name: (None if s is None else point(s))
                                              for name, s in table5},
              "quality": quality, "classic_optimal_group": classic_result["optimal_group"],
              "baseline_summary": baseline, "best_summary": best, "classic": classic_result,
              "report": str(out / "gan_report.md")}
    write_json(out / "gan_summary.json", {k: v for k, v in result.items()
                                          if k not in ("baseline_summary", "best_summary",
                                                       "classic")})
    write_json(exp.layout.result, result)
    ctx.log(f"report: {out / 'gan_report.md'}")


def summary(result: dict) -> str:
    """The verdict and both tables, for a terminal."""
    return "\n".join([result["verdict"], "", f"CNN-AUG ({result['base_group']}):",
                      text_table(result["baseline_summary"]), "",
                      f"CNN-AUG-GAN (+{result['best_synthetic_per_class']} synthetic per class):",
                      text_table(result["best_summary"]), "",
                      f"report: {result.get('report', '')}"])


KIND = ExperimentKind(
    name="gan-curve",
    description="the classic curve, then CNN-AUG-GAN: Fig. 8 blue and green, Tables 3, 5, 7, "
                "generator quality (Frid-Adar §4.2.2, §4.3)",
    sections=("data", "augment", "classifier", "train", "gan", "synth", "evaluate"),
    plan=plan,
    steps={**classic.STEPS, "gan": gan_step, "synthesize": synthesize_step,
           "extra-pool": extra_pool_step, "quality": quality_step,
           "acgan-discriminator": acgan_discriminator_step, "choose-size": choose_size_step,
           "report": report_step},
    epoch_settings=("train.epochs",), summary=summary)


# --------------------------------------------------------------------------- by hand


def gan_runs(exp: Experiment, folds, classes=(), acgan: bool = False) -> list[str]:
    """Ids of the DCGAN runs of ``classes`` (and the ACGAN) of ``folds``: what
    ``kl train-gan`` / ``kl train-acgan`` train.

    Raises:
        KerasLesionsError: an unknown class, or D_aug optimal not chosen yet.
    """
    names = exp.class_names
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise KerasLesionsError(f"unknown class {unknown[0]!r}: the dataset's classes are "
                                f"{', '.join(names)}", exp.dataset_path)
    b = base_index(exp)
    if b is None:
        raise KerasLesionsError(
            "D_aug optimal is not known yet: run the classic curve first (kl experiment with "
            "kind classic-curve or gan-curve), or set synth.base_group", exp.layout.root)
    classic.check_group(exp.config, b)
    base = group_name(b)
    ids = []
    for fold in folds:
        train_test_indices(exp.dataset.folds, fold, where=exp.dataset_path)
        if fold not in exp.config.evaluate.folds:
            raise KerasLesionsError(f"fold {fold} is not among the config's evaluate.folds "
                                    f"{exp.config.evaluate.folds}: its GANs are not in the plan",
                                    exp.layout.root)
        ids += [gan_id(fold, f"dcgan-{c}", base, exp.config.gan.seed) for c in classes]
        if acgan:
            ids.append(gan_id(fold, "acgan", base, exp.config.gan.seed))
    return ids
