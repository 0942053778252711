"""The CNN-AUG-GAN experiment of Frid-Adar et al. 2018 (Fig. 7, Fig. 8, Tables 3, 5, 7).

The plan extends the classic curve's. Per cell (repeat r, test fold k),
everything from the cell's fit patients only, starting from the cell's base
group B (its D_aug^optimal, chosen on its validation patients, or the
config's ``synth.base_group``); every GAN and synthetic set is keyed by B:

1. ``<cell>/gan/dcgan-<class>/base-B/seed<g>``: one DCGAN per class, and
   ``<cell>/gan/acgan/base-B/seed<g>``, trained on B (§4.2.2: "we
   incorporated classic augmentation for the training process");
2. ``<cell>/synth/<kind>/base-B``: their synthetic lesions (the largest
   group; groups nest);
3. ``<cell>/classifier/B+D_synth<n>x<C>/seed<s>``: the classifier on B plus
   n synthetic lesions per class (Fig. 8, blue), at every size and for every
   synthesis method (DCGAN, ACGAN, DiffAugment swap: Table 5); ``B+real<n>x<C>``,
   the original extra real lesions and their augmentations (phantoms only;
   Fig. 8, green); ``B+classic<n>x<C>``, as many more classic augmentations
   (the control of equal size);
4. ``<cell>/quality/base-B``: generator quality against the test fold's real
   lesions, which neither the generators nor the feature extractor saw;
5. ``choose/<cell>/size-<method>``: each method's synthetic size, on the
   cell's validation predictions (the paper: the pooled test folds, which
   ``evaluate.selection: paper`` keeps);
6. ``report``: every comparison with its interval (``evaluate.verdict``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from keras_lesions.config import ExperimentConfig
from keras_lesions.data.dataset import read_dataset, write_dataset
from keras_lesions.errors import KerasLesionsError
from keras_lesions.evaluate.crossval import group_name, run_record
from keras_lesions.evaluate.gan_report import write_gan_report, write_synthetic_grid
from keras_lesions.evaluate.primary import label as metric_label
from keras_lesions.evaluate.report import text_table
from keras_lesions.evaluate.verdict import accuracy_interval
from keras_lesions.experiments import classic_curve as classic
from keras_lesions.experiments.context import Experiment
from keras_lesions.experiments.extra_pool import (
    EXTRA_POOL, extra_pool_spec, extra_pool_step, has_extra_pool)
from keras_lesions.experiments.kind import ExperimentKind, StepContext
from keras_lesions.experiments.layout import cell_tag
from keras_lesions.experiments.plan import Plan, Resources, RunSpec
from keras_lesions.experiments.table4 import table4_appendix
from keras_lesions.io import write_json
from keras_lesions.runs.folder import RunError, finish_run, read_json_record

DIFFAUG_SWAP = "diffaug-swap"
ALL_CLASSES = None  # train_gans(classes=ALL_CLASSES): a DCGAN for every class
DEFAULT_DIFF_AUGMENT = "translation,cutout,color"
# A paper-size DCGAN (G 18.9 M, D 4.3 M parameters, batch 64) fits half a 16 GB GPU.
GAN_NEEDS = Resources(cpus=1, gpus=0.5)
# What the paper's saturation rule reads off the test folds (§4.2.1): the
# smallest group within a point of total accuracy of the best; the
# selection-effect counterfactual applies it as the paper did.
PAPER_SATURATION_TOLERANCE = 0.01


@dataclasses.dataclass(frozen=True)
class Method:
    """One synthesis method of Table 5: its synthetic set and its groups' tag."""

    name: str  # "dcgan", "acgan", "dcgan-diffaug-swap"
    tag: str  # group tag: B+<tag><n>x<C>
    title: str


DCGAN = Method("dcgan", "D_synth", "DCGAN")
ACGAN = Method("acgan", "ACGAN_synth", "ACGAN")
SWAP = Method(f"dcgan-{DIFFAUG_SWAP}", "DiffAugSwap_synth", "DCGAN, DiffAugment swapped")
REAL_TAG, CLASSIC_TAG = "real", "classic"


def methods(config: ExperimentConfig) -> list[Method]:
    """The synthesis methods the config runs, the DCGAN first."""
    return [DCGAN] + ([ACGAN] if config.synth.acgan else []) + (
        [SWAP] if config.synth.compare_diff_augment else [])


def diff_augment_counterpart(config: ExperimentConfig) -> ExperimentConfig:
    """The config with DiffAugment switched the other way, for the comparison."""
    policy = "" if config.gan.diff_augment else DEFAULT_DIFF_AUGMENT
    return dataclasses.replace(config, gan=dataclasses.replace(config.gan, diff_augment=policy))


# --------------------------------------------------------------------------- ids


def gan_id(repeat: int, fold: int, name: str, base: str, seed: int) -> str:
    return f"{cell_tag(repeat, fold)}/gan/{name}/base-{base}/seed{seed}"


def synth_id(repeat: int, fold: int, kind: str, base: str) -> str:
    return f"{cell_tag(repeat, fold)}/synth/{kind}/base-{base}"


def discriminator_id(repeat: int, fold: int, base: str) -> str:
    return f"{cell_tag(repeat, fold)}/acgan-discriminator/base-{base}"


def size_choice(repeat: int, fold: int, method: Method) -> str:
    return f"{cell_tag(repeat, fold)}/size-{method.name}"


def arm_group(base: str, tag: str, per_class: int, n_classes: int) -> str:
    return f"{base}+{tag}{per_class}x{n_classes}"


def base_index(exp: Experiment, repeat: int, fold: int) -> int | None:
    """0-based index of the group a cell's GANs start from: ``synth.base_group``,
    or the cell's D_aug optimal once it is chosen; None before."""
    if exp.config.synth.base_group:
        return exp.config.synth.base_group - 1
    return _choice_value(exp.layout.choice(classic.optimal_choice(repeat, fold)), "group_index")


def chosen_size(exp: Experiment, repeat: int, fold: int, method: Method) -> int | None:
    return _choice_value(exp.layout.choice(size_choice(repeat, fold, method)), "per_class")


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


def _gan_spec(exp, repeat, fold, kind, class_name, base, b, *, swap=False) -> RunSpec:
    name = (f"dcgan-{class_name}" if kind == "dcgan" else "acgan") + \
        (f"-{DIFFAUG_SWAP}" if swap else "")
    run_id = gan_id(repeat, fold, name, base, exp.config.gan.seed)
    return RunSpec(id=run_id, step="gan",
                   params={"repeat": repeat, "fold": fold, "kind": kind,
                           "class_name": class_name, "base_index": b, "swap_diff_augment": swap},
                   depends_on=(classic.augment_id(repeat, fold),), needs=GAN_NEEDS,
                   output=exp.layout.run_output(run_id),
                   title=f"{kind.upper()} {class_name or 'all classes'} on {base}, "
                         f"{cell_tag(repeat, fold)}")


def _synth_spec(exp, repeat, fold, kind, base, gans: list[RunSpec]) -> RunSpec:
    run_id = synth_id(repeat, fold, kind, base)
    return RunSpec(id=run_id, step="synthesize",
                   params={"repeat": repeat, "fold": fold, "generators": [g.id for g in gans],
                           "per_class": max(exp.config.synth.per_class_sizes)},
                   depends_on=tuple(g.id for g in gans), needs=Resources(cpus=1, gpus=0.25),
                   output=exp.layout.relative(exp.layout.data_file(run_id)),
                   title=f"{kind} synthetic lesions of {cell_tag(repeat, fold)}")


def cell_specs(exp: Experiment, repeat: int, fold: int,
               b: int) -> tuple[list[RunSpec], dict[str, list[RunSpec]]]:
    """The GAN, synthesis, classifier and quality runs of one cell that start
    from base group index ``b``, and its synthetic arms by method."""
    config, names = exp.config, exp.class_names
    base, n_classes, seeds = group_name(b), len(names), config.evaluate.seeds
    base_added = config.augment.group_sizes[b]
    specs: list[RunSpec] = []
    gans = {DCGAN.name: [_gan_spec(exp, repeat, fold, "dcgan", c, base, b) for c in names]}
    if config.synth.acgan:
        gans[ACGAN.name] = [_gan_spec(exp, repeat, fold, "acgan", None, base, b)]
        disc_id = discriminator_id(repeat, fold, base)
        specs.append(RunSpec(
            id=disc_id, step="acgan-discriminator",
            params={"repeat": repeat, "fold": fold, "gan": gans[ACGAN.name][0].id},
            depends_on=(gans[ACGAN.name][0].id,), output=exp.layout.run_output(disc_id),
            title=f"the ACGAN discriminator as the classifier, {cell_tag(repeat, fold)}"))
    if config.synth.compare_diff_augment:
        gans[SWAP.name] = [_gan_spec(exp, repeat, fold, "dcgan", c, base, b, swap=True)
                           for c in names]
    sets = {m.name: _synth_spec(exp, repeat, fold, m.name, base, gans[m.name])
            for m in methods(config)}
    specs += [g for group in gans.values() for g in group] + list(sets.values())

    def arm(tag, per_class, seed, additions=(), depends_on=(), added=base_added):
        return classic.classifier_spec(exp, repeat, fold, b, seed,
                                       group=arm_group(base, tag, per_class, n_classes),
                                       additions=additions, depends_on=depends_on,
                                       base_added=added)

    by_method: dict[str, list[RunSpec]] = {}
    for method in methods(config):
        data = sets[method.name]
        by_method[method.name] = [
            arm(method.tag, n, seed, ({"source": "synthetic", "data": data.id, "per_class": n},),
                (data.id,)) for n in config.synth.per_class_sizes for seed in seeds]
        specs += by_method[method.name]
    for n in config.synth.per_class_sizes:
        for seed in seeds:
            if has_extra_pool(exp):
                specs.append(arm(REAL_TAG, n, seed, ({"source": "real-extra", "per_class": n},),
                                 (EXTRA_POOL,)))
            if config.synth.classic_control:
                specs.append(arm(CLASSIC_TAG, n, seed, added=base_added + n * n_classes))
    quality_id = f"{cell_tag(repeat, fold)}/quality/base-{base}"
    specs.append(RunSpec(
        id=quality_id, step="quality",
        params={"repeat": repeat, "fold": fold, "base_index": b,
                "sets": {m.name: sets[m.name].id for m in methods(config)}},
        depends_on=tuple(s.id for s in sets.values())
        + (classic.classifier_id(repeat, fold, base, seeds[0]),),
        output=exp.layout.relative(exp.layout.data_file(quality_id, ".json")),
        title=f"generator quality of {cell_tag(repeat, fold)}"))
    return specs, by_method


def _size_choices(exp: Experiment, cell_arms: dict) -> list[RunSpec]:
    """Each planned cell's choice of each method's size: on the cell's own
    validation predictions, or (``selection: paper``) on the test predictions
    of every fold of its repeat, once every fold of it is planned."""
    config, specs = exp.config, []
    for (repeat, fold), by_method in cell_arms.items():
        for method in methods(config):
            if classic.selected_on(config) == "validation":
                reads = by_method[method.name]
            else:
                folds = [cell_arms.get((repeat, k)) for k in config.evaluate.folds]
                if any(f is None for f in folds):
                    continue
                reads = [s for f in folds for s in f[method.name]]
            specs.append(RunSpec(
                id=f"choose/{size_choice(repeat, fold, method)}", step="choose-size",
                params={"repeat": repeat, "fold": fold, "method": method.name,
                        "reads": [s.id for s in reads]},
                depends_on=tuple(s.id for s in reads),
                output=exp.layout.relative(exp.layout.choice(size_choice(repeat, fold, method))),
                title=f"the {method.title} synthetic size of {cell_tag(repeat, fold)} "
                      f"({classic.selected_on(config)} predictions)", light=True))
    return specs


def plan(exp: Experiment) -> Plan:
    specs = classic.classic_specs(exp)
    waiting, cell_arms = [], {}
    more: list[RunSpec] = [extra_pool_spec(exp)] if has_extra_pool(exp) else []
    for repeat, fold in exp.cells():
        b = base_index(exp, repeat, fold)
        if b is None:
            waiting.append(cell_tag(repeat, fold))
            continue
        classic.check_group(exp.config, b)
        cell, by_method = cell_specs(exp, repeat, fold, b)
        more += cell
        cell_arms[(repeat, fold)] = by_method
    more += _size_choices(exp, cell_arms)
    specs += more
    later = [f"the CNN-AUG-GAN runs of {len(waiting)} cell(s) ({', '.join(waiting[:3])}"
             f"{' ...' if len(waiting) > 3 else ''}): planned once their D_aug optimal is "
             "chosen"] if waiting else []
    report = classic.report_spec(exp, [s.id for s in specs])
    return Plan(specs + ([] if later else [report]), later)


# --------------------------------------------------------------------------- steps


def gan_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    from keras_lesions.train.gan import train_gan

    p = spec.params
    repeat, fold, kind, names = p["repeat"], p["fold"], p["kind"], exp.class_names
    config = diff_augment_counterpart(exp.config) if p["swap_diff_augment"] else exp.config
    images, labels = classic.base_group(exp, repeat, fold, p["base_index"])
    selected = labels == names.index(p["class_name"]) if kind == "dcgan" else np.ones(len(labels),
                                                                                       bool)
    what = (f"DCGAN {p['class_name']}" if kind == "dcgan" else "ACGAN") + (
        f" (DiffAugment {config.gan.diff_augment})" if config.gan.diff_augment else "")
    ctx.log(f"{spec.id}: training the {what} on {int(selected.sum())} images "
            f"({config.gan.epochs} epochs)")
    train_gan(kind, images[selected], config, exp.layout.run_dir(spec.id),
              class_ids=None if kind == "dcgan" else labels[selected], class_names=names,
              run_info={"repeat": repeat, "fold": fold, "class_name": p["class_name"],
                        "base_group": group_name(p["base_index"]),
                        "dataset": str(exp.dataset_path)},
              resume=ctx.resume, progress=ctx.bar(f"{what} {cell_tag(repeat, fold)}"),
              # about ten sample grids a run: one per epoch cost more than
              # a short GAN's training
              sample_grid_every=max(1, config.gan.epochs // 10), verbose=ctx.verbose)


def synthesize_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    from keras_lesions.synth import synthesize_dataset

    p = spec.params
    ctx.log(f"{spec.id}: synthesizing {p['per_class']} lesions per class")
    synthetic = synthesize_dataset([exp.layout.run_dir(g) for g in p["generators"]],
                                   p["per_class"],
                                   exp.config.synth.seed + p["fold"] + 1000 * p["repeat"],
                                   exp.class_names)
    synthetic.created_by = f"keras_lesions experiment {exp.config.name}"
    write_dataset(synthetic, exp.layout.data_file(spec.id))


def quality_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    """Generator quality of a cell's synthetic sets, in the features of the
    cell's CNN-AUG classifier (trained on the fit patients).

    FID and KID compare the synthetic lesions with the test fold's real
    lesions, which neither the generators nor the feature extractor saw,
    beside two real samples of the same sizes; the memorisation check
    compares them with the fit lesions and their augmentations (what the
    GANs trained on); a classifier two-sample test scores how well real and
    synthetic lesions can be told apart.
    """
    from keras_lesions.evaluate.quality import generator_quality_report
    from keras_lesions.pipeline import roi_inputs
    from keras_lesions.train.classifier import load_run_model

    p = spec.params
    repeat, fold, names = p["repeat"], p["fold"], exp.class_names
    base = group_name(p["base_index"])
    split = exp.split(repeat, fold)
    classifier = load_run_model(exp.layout.run_dir(
        classic.classifier_id(repeat, fold, base, exp.config.evaluate.seeds[0])))
    size = exp.config.classifier.input_size

    def by_class(images, labels):
        return {name: images[labels == c] for c, name in enumerate(names)}

    real = by_class(roi_inputs(exp.dataset, split.fit, size), exp.dataset.labels[split.fit])
    heldout = by_class(roi_inputs(exp.dataset, split.test, size), exp.dataset.labels[split.test])
    images, labels, meta = classic.augmented_group(exp, repeat, fold,
                                                   exp.config.augment.group_sizes[
                                                       p["base_index"]])
    augmented = ~np.asarray(meta["is_original"])
    # the row, among the fit originals of its class, each augmentation came from
    fit_position = {int(i): j for j, i in enumerate(split.fit.tolist())}
    source_rows = np.array([fit_position[int(i)] for i in meta["lesion_index"]])
    augmented_by_class, sources_by_class = {}, {}
    for c, name in enumerate(names):
        of_class = np.flatnonzero(exp.dataset.labels[split.fit] == c)
        row_in_class = {int(j): r for r, j in enumerate(of_class.tolist())}
        mask = augmented & (labels == c)
        augmented_by_class[name] = images[mask]
        sources_by_class[name] = np.array([row_in_class[int(j)] for j in source_rows[mask]],
                                          np.int64)
    result = {}
    for kind, data_id in p["sets"].items():
        dataset = read_dataset(exp.layout.data_file(data_id))
        synthetic = by_class(roi_inputs(dataset), dataset.labels)
        result[kind] = generator_quality_report(
            real, synthetic, classifier, heldout_images_by_class=heldout,
            augmented_images_by_class=augmented_by_class,
            augmented_sources_by_class=sources_by_class, seed=fold + 1000 * repeat)
    ctx.log(f"{spec.id}: generator quality measured ({', '.join(p['sets'])})")
    write_json(exp.layout.data_file(spec.id, ".json"), result)


def acgan_discriminator_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    """Table 5, last row: the ACGAN discriminator's class head as the classifier."""
    from keras_lesions.inference import predict
    from keras_lesions.runs.predictions import write_predictions
    from keras_lesions.train.gan import load_discriminator

    repeat, fold = spec.params["repeat"], spec.params["fold"]
    discriminator, _ = load_discriminator(exp.layout.run_dir(spec.params["gan"]))
    images, labels, ids = classic.lesion_set(exp, exp.split(repeat, fold).test)
    outputs = predict(discriminator, images * 2.0 - 1.0)  # D reads [−1, 1] (§3.2)
    run_dir = exp.layout.run_dir(spec.id)
    accuracy = write_predictions(run_dir, outputs["class"], labels, ids)
    ctx.log(f"{cell_tag(repeat, fold)}: ACGAN discriminator as classifier: {100 * accuracy:.1f}%")
    finish_run(run_dir, {"repeat": repeat, "fold": fold, "seed": exp.config.gan.seed,
                         "group": "ACGAN_discriminator", "class_names": exp.class_names,
                         "test_accuracy": accuracy, "generator_run": spec.params["gan"],
                         "dataset": str(exp.dataset_path)})


def choose_size_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    """A method's synthetic size for a cell: the arg-max of the pooled
    accuracy over its D_synth groups on the cell's validation predictions
    (ties: the smaller size); with ``selection: paper``, on the test folds,
    as the paper picks it."""
    p = spec.params
    specs = {s.id: s for s in plan(exp)}
    group_of = {run_id: specs[run_id].params["group"] for run_id in p["reads"]}
    scores_by_group = classic.selection_scores(exp, p["reads"], group_of)
    sizes = {}
    for run_id in p["reads"]:
        params = specs[run_id].params
        sizes[params["group"]] = params["additions"][0]["per_class"]
    scores = {sizes[g]: score for g, score in scores_by_group.items()}
    if not scores:
        raise KerasLesionsError("no finished CNN-AUG-GAN run to pick the synthetic size from")
    from keras_lesions.evaluate.crossval import best_point

    # the best value, the smaller size among equals; NaN never
    best = best_point([{"size": size, "value": scores[size]["value"]}
                       for size in sorted(scores)])["size"]
    where = classic.selected_on(exp.config)
    metric = exp.config.evaluate.primary_metric
    ctx.log(f"{cell_tag(p['repeat'], p['fold'])}: {p['method']} synthetic size {best} per class "
            f"({metric_label(metric)} {100 * scores[best]['value']:.1f}% on the {where} predictions)")
    method = next(m for m in methods(exp.config) if m.name == p["method"])
    write_json(exp.layout.choice(size_choice(p["repeat"], p["fold"], method)),
               {"per_class": best, "selected_on": where, "metric": metric,
                "value_by_size": {str(k): v["value"] for k, v in sorted(scores.items())},
                "accuracy_by_size": {str(k): v["accuracy"] for k, v in sorted(scores.items())}})


# --------------------------------------------------------------------------- report


def cell_arm(exp: Experiment, the_plan: Plan, group_of_cell) -> list[dict]:
    """Test records of an arm whose group depends on the cell:
    ``group_of_cell(repeat, fold, base) -> group name or None``."""
    records = []
    for repeat, fold in exp.cells():
        b = base_index(exp, repeat, fold)
        group = group_of_cell(repeat, fold, group_name(b))
        if group is not None:
            records += classic.arm_records(exp, the_plan, group, (repeat, fold))
    return records


def comparisons(exp: Experiment, the_plan: Plan) -> tuple[dict, dict, dict]:
    """Every comparison of the report, each arm's records, and the size curves.

    Returns:
        (comparisons by key, records by arm, curves: line -> points per size).
    """
    n_classes = len(exp.class_names)
    patient_of = exp.patient_of()
    config = exp.config

    def at_chosen(method: Method, tag: str | None = None):
        def group(repeat, fold, base):
            size = chosen_size(exp, repeat, fold, method)
            return None if size is None else arm_group(base, tag or method.tag, size, n_classes)
        return group

    arms = {"CNN-AUG": cell_arm(exp, the_plan, lambda r, k, base: base)}
    for method in methods(config):
        arms[method.title] = cell_arm(exp, the_plan, at_chosen(method))
    if has_extra_pool(exp):
        arms["more real data"] = cell_arm(exp, the_plan, at_chosen(DCGAN, REAL_TAG))
    if config.synth.classic_control:
        arms["classic control"] = cell_arm(exp, the_plan, at_chosen(DCGAN, CLASSIC_TAG))
    arms["ACGAN discriminator"] = [run_record(exp.layout.run_dir(s.id)) for s in the_plan
                                   if s.step == "acgan-discriminator"
                                   and s.is_done(exp.layout.root)]
    baseline = arms["CNN-AUG"]
    found = {}
    subjects = {DCGAN.title: "Synthetic augmentation (DCGAN)",
                ACGAN.title: "Synthetic augmentation (ACGAN)",
                SWAP.title: "Synthetic augmentation (DCGAN, DiffAugment swapped)",
                "more real data": "More real data",
                "classic control": "As many more classic augmentations (the equal-size control)"}
    for arm, what in subjects.items():
        if arms.get(arm):
            found[arm] = exp.compare(what, baseline, arms[arm])
    if arms.get("classic control") and arms.get(DCGAN.title):
        found["DCGAN vs classic control"] = exp.compare(
            "Synthetic lesions in place of as many classic augmentations", arms["classic control"],
            arms[DCGAN.title])
    if arms.get(SWAP.title):
        on_first = bool(config.gan.diff_augment)
        without, with_ = (arms[SWAP.title], arms[DCGAN.title]) if on_first else \
            (arms[DCGAN.title], arms[SWAP.title])
        policy = config.gan.diff_augment or DEFAULT_DIFF_AUGMENT
        found["DiffAugment"] = exp.compare(f"DiffAugment ({policy}) for the GANs", without, with_)
    curves = {}
    lines = [(m.title, m.tag) for m in methods(config)] + \
        ([("more real data", REAL_TAG)] if has_extra_pool(exp) else []) + \
        ([("classic control", CLASSIC_TAG)] if config.synth.classic_control else [])
    for label, tag in lines:
        points = []
        for n in config.synth.per_class_sizes:
            records = cell_arm(exp, the_plan,
                               lambda r, k, base, n=n, tag=tag: arm_group(base, tag, n, n_classes))
            if records:
                c = exp.compare(f"{label} +{n}x{n_classes}", baseline, records)
                # Fig. 8 is a total-accuracy curve; the outcome is the
                # primary metric's
                accuracy = c["metrics"]["accuracy"]
                points.append({"added_per_class": n, "accuracy": accuracy["proposed"],
                               "accuracy_ci95": accuracy_interval(records, patient_of),
                               "balanced_accuracy": c["balanced_accuracy"]["proposed"],
                               "difference": accuracy["difference"], "ci95": accuracy["ci95"],
                               "outcome": c["outcome"]})
        if points:
            curves[label] = points
    return found, arms, curves


def _pooled_accuracy(records: list[dict]) -> float:
    return float(np.concatenate([np.asarray(r["y_true"]) == np.asarray(r["y_pred"])
                                 for r in records]).mean())


def _by_repeat(records: list[dict]) -> dict[int, list[dict]]:
    grouped: dict[int, list[dict]] = {}
    for record in records:
        grouped.setdefault(int(record.get("repeat", 0)), []).append(record)
    return grouped


def selection_effect(exp: Experiment, the_plan: Plan, arms: dict) -> dict:
    """What reading the choices off the test folds would have reported instead.

    A diagnostic of the report, computed from test predictions after every
    choice is made; nothing trained or chosen reads it. Per cross-validation
    (repeat): CNN-AUG's pooled test accuracy with each cell's validation
    choice of D_aug optimal, against the group the paper's rule (§4.2.1,
    smallest within tolerance of the best) picks from the pooled test folds;
    and each synthesis method's accuracy at its validation-chosen sizes,
    against the best size on the test folds (the arg-max the papers report).
    Every alternative was trained anyway (the curves), so the counterfactual
    needs no run of its own. Only alternatives with every cell of a repeat
    count. Means over the repeats.

    Returns:
        arm -> {"validation": accuracy, "test": accuracy, "optimism": test −
        validation, "options": groups or sizes there were to choose from,
        "n_cross_validations"}; arms without finished runs are left out.
    """
    from keras_lesions.evaluate.crossval import saturation_point

    n_classes = len(exp.class_names)
    runs_per_repeat: dict[int, int] = {}
    for repeat, _ in exp.cells():
        runs_per_repeat[repeat] = runs_per_repeat.get(repeat, 0) + len(exp.config.evaluate.seeds)
    # each choice's alternatives in order, every run record read once
    alternatives = {"CNN-AUG": [classic.arm_records(exp, the_plan, group_name(i))
                                for i in range(len(exp.config.augment.group_sizes))]}
    for method in methods(exp.config):
        alternatives[method.title] = [
            cell_arm(exp, the_plan,
                     lambda r, k, base, n=n, tag=method.tag: arm_group(base, tag, n, n_classes))
            for n in exp.config.synth.per_class_sizes]
    effect = {}
    for arm, options in alternatives.items():
        options = [_by_repeat(records) for records in options]
        pairs, counted = [], 0
        for repeat, chosen in sorted(_by_repeat(arms.get(arm, [])).items()):
            curve = [{"accuracy": _pooled_accuracy(o[repeat])} for o in options
                     if len(o.get(repeat, [])) == runs_per_repeat[repeat]]
            if not curve:
                continue
            # the paper's rule on the test folds: one point of total accuracy
            test = (saturation_point(curve, PAPER_SATURATION_TOLERANCE, key="accuracy")
                    if arm == "CNN-AUG" else max(curve, key=lambda c: c["accuracy"]))
            pairs.append((_pooled_accuracy(chosen), test["accuracy"]))
            counted = len(curve)
        if pairs:
            validation, test = (float(np.mean(v)) for v in zip(*pairs))
            effect[arm] = {"validation": validation, "test": test, "optimism": test - validation,
                           "n_cross_validations": len(pairs), "options": counted}
    return effect


def report_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    the_plan = plan(exp)
    classic_result = classic.classic_report(exp, the_plan)
    names = exp.class_names
    found, arms, curves = comparisons(exp, the_plan)
    effect = selection_effect(exp, the_plan, arms)
    summaries = {arm: exp.summarize(records)
                 for arm, records in arms.items() if records}
    quality = {cell_tag(s.params["repeat"], s.params["fold"]):
               read_json_record(exp.layout.data_file(s.id, ".json"))
               for s in the_plan if s.step == "quality"}
    sizes = {m.title: {cell_tag(r, k): chosen_size(exp, r, k, m) for r, k in exp.cells()}
             for m in methods(exp.config)}
    headline = found[DCGAN.title]
    realism = realism_sentence(quality, DCGAN.name)
    sentence = headline["verdict"] + (f" {realism}" if realism else "")
    if classic.selected_on(exp.config) == "test":
        sentence += (" Test-selected: D_aug optimal and the synthetic size were read off the "
                     "test folds (selection: paper), which flatters the proposed arm.")
    out = exp.layout.report
    appendix = []
    if exp.config.evaluate.baselines:
        appendix = classic.write_baselines_table(
            exp, the_plan, {"CNN-AUG": summaries["CNN-AUG"],
                            "CNN-AUG-GAN": summaries[DCGAN.title]})
        appendix += fig9_lines(arms, out / "fig9_tsne.png")
    table4, study_answers = table4_appendix(exp.config, names, out)  # evaluate.reader_study
    appendix += table4
    write_gan_report(out, exp.config, names, classic=classic_result, comparisons=found,
                     summaries=summaries, curves=curves, sizes=sizes, quality=quality,
                     sentence=sentence, has_extra=has_extra_pool(exp),
                     selected_on=classic.selected_on(exp.config), selection_effect=effect,
                     appendix=appendix)
    repeat, fold = exp.cells()[0]
    b = base_index(exp, repeat, fold)
    images, labels = classic.base_group(exp, repeat, fold, b)
    write_synthetic_grid(images, labels, read_dataset(exp.layout.data_file(
        synth_id(repeat, fold, DCGAN.name, group_name(b)))), names, cell_tag(repeat, fold),
        out / "gan_synthetic_vs_real.png")
    result = {"verdict": sentence, "comparisons": found, "curves": curves, "sizes": sizes,
              "quality": quality, "selected_on": classic.selected_on(exp.config),
              "selection_effect": effect, "baseline_summary": summaries["CNN-AUG"],
              "best_summary": summaries[DCGAN.title], "classic": classic_result,
              "report": str(out / "gan_report.md"), "reader_study_answers": study_answers}
    write_json(out / "gan_summary.json", {k: v for k, v in result.items()
                                          if k not in ("baseline_summary", "best_summary",
                                                       "classic")})
    exp.write_result(result)
    ctx.log(f"report: {out / 'gan_report.md'}")


def fig9_lines(arms: dict, path) -> list[str]:
    """Fig. 9 (§4.3) for the first cell: the t-SNE of CNN-AUG beside
    CNN-AUG-GAN (its DCGAN arm at the cell's chosen size), with the
    separation scores (``keras_lesions.tsne``); Markdown lines."""
    from keras_lesions.tsne import tsne_report

    def key(record):
        return record["repeat"], record["fold"], record["seed"]

    # the first cell and seed both arms ran: the same test lesions in both panels
    by_arm = [{key(r): r for r in arms[arm]} for arm in ("CNN-AUG", DCGAN.title)]
    shared = sorted(set(by_arm[0]) & set(by_arm[1]))
    if not shared:
        return []
    result = tsne_report([arm[shared[0]]["run_dir"] for arm in by_arm], path)
    lines = ["", "## Fig. 9: t-SNE of the last hidden layer", "",
             f"![Fig. 9]({Path(path).name})", "",
             f"Scores in the {result['panels'][0]['features']}-unit feature space itself (t-SNE "
             "keeps neighbourhoods, not distances), over the cell's real test lesions:", "",
             "| arm | run | silhouette | 5-NN accuracy (leave-one-out) |", "|---|---|---|---|"]
    for arm, panel in zip(("CNN-AUG", "CNN-AUG-GAN"), result["panels"]):
        s = panel["scores"]
        lines.append(f"| {arm} | {panel['title']} | {s['silhouette']:.3f} | "
                     f"{100 * s['knn_accuracy']:.1f}% (n = {s['n']}) |")
    return lines


def realism_sentence(quality: dict, kind: str) -> str:
    """The classifier two-sample test of a method's generators, over the cells."""
    aucs = [q["two_sample"]["auc"] for by_kind in quality.values() if kind in by_kind
            for q in by_kind[kind]["per_class"].values() if "two_sample" in q]
    if not aucs:
        return ""
    mean = float(np.mean(aucs))
    reading = ("the synthetic lesions are about as hard to tell from real ones as real ones "
               "from each other" if mean < 0.6 else
               "a small classifier tells them from real lesions easily: the generators have "
               "not learned what the lesions look like, so any gain comes from unrealistic "
               "images" if mean > 0.8 else
               "a small classifier tells many of them from real lesions")
    return (f"Realism: a classifier two-sample test tells real from synthetic lesions with "
            f"mean AUC {mean:.2f} over {len(aucs)} cell × class tests (0.5: "
            f"indistinguishable); {reading}.")


def summary(result: dict) -> str:
    """The verdicts and both tables, for a terminal."""
    lines = [result["verdict"], ""]
    for key, comparison in result["comparisons"].items():
        if key != DCGAN.title:
            lines.append(f"- {comparison['verdict']}")
    lines += ["", "CNN-AUG (each cell's D_aug optimal):", text_table(result["baseline_summary"]),
              "", "CNN-AUG-GAN (each cell's synthetic size):", text_table(result["best_summary"]),
              "", f"report: {result.get('report', '')}"]
    return "\n".join(lines)


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
    """Ids of the DCGAN runs of ``classes`` (and the ACGAN) of ``folds`` of
    repeat 0 (the dataset's own folds): what ``kl train-gan`` / ``kl
    train-acgan`` train.

    Raises:
        KerasLesionsError: an unknown class, or a fold's D_aug optimal not chosen yet.
    """
    names = exp.class_names
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise KerasLesionsError(f"unknown class {unknown[0]!r}: the dataset's classes are "
                                f"{', '.join(names)}", exp.dataset_path)
    ids = []
    for fold in folds:
        exp.split(0, fold)  # a fold out of range: one line
        if fold not in exp.config.evaluate.folds:
            raise KerasLesionsError(f"fold {fold} is not among the config's evaluate.folds "
                                    f"{exp.config.evaluate.folds}: its GANs are not in the plan",
                                    exp.layout.root)
        b = base_index(exp, 0, fold)
        if b is None:
            raise KerasLesionsError(
                f"fold {fold}'s D_aug optimal is not known yet: run the classic curve first "
                "(kl experiment with kind classic-curve or gan-curve), or set synth.base_group",
                exp.layout.root)
        classic.check_group(exp.config, b)
        base = group_name(b)
        ids += [gan_id(0, fold, f"dcgan-{c}", base, exp.config.gan.seed) for c in classes]
        if acgan:
            ids.append(gan_id(0, fold, "acgan", base, exp.config.gan.seed))
    return ids
