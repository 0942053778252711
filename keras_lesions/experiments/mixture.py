"""The mixture-of-specified-factors experiment (Ben-Cohen et al. 2019 §3.2, Tables 2 and 3).

The plan, for each cell (repeat r, test fold k) of the repeated 3-fold
patient-level cross-validation and each seed:

1. ``<cell>/disentangle/seed<s>``: split the training folds' patients into a
   fit part and a 30% validation part (§3.2) and disentangle on the fit
   part. Its step 1 is E_C + classifier trained with cross-entropy on
   online-augmented real lesions: the *baseline* ("classic training
   scheme"), tested on the fold;
2. ``<cell>/mixtures/seed<s>``: ``mixture.per_image`` mixtures per fit
   image (§2.2) with soft targets;
3. ``<cell>/proposed/seed<s>``: the same architecture trained afresh, same
   seed, same schedule and the same SGD steps per epoch as the baseline (so
   twice the cases are each shown half as often), on the real fit lesions
   (one-hot) plus the mixtures (soft targets), both online augmented: the
   *proposed* scheme, tested on the fold;
4. ``<cell>/control-<name>/seed<s>`` for each of ``mixture.controls``: the
   proposed classifier's recipe (same cases, soft targets and SGD steps) with
   the mixtures' decoded images replaced by their real source lesions
   (label smoothing) or by pixel mixtures with random partners (mixup), so a
   gain can be credited to the disentangled codes only if it holds against
   them (``synth.controls``);

then the report, with every comparison's intervals (``evaluate.verdict``).
Both classifiers keep their best-validation epoch (chosen on the validation
patients, never on the test fold).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from keras_lesions.config import ExperimentConfig
from keras_lesions.data.dataset import read_dataset, write_dataset
from keras_lesions.data.folds import fit_validation_test_indices
from keras_lesions.evaluate.crossval import run_record
from keras_lesions.evaluate.mixture_report import (
    CONTROL_TITLES, adversary_summary, mixture_markdown)
from keras_lesions.evaluate.report import side_by_side, write_summary
from keras_lesions.evaluate.verdict import HELPED, paired_differences
from keras_lesions.experiments.context import Experiment
from keras_lesions.experiments.kind import ExperimentKind, StepContext
from keras_lesions.experiments.layout import cell_tag
from keras_lesions.experiments.plan import Plan, Resources, RunSpec
from keras_lesions.io import save_figure, write_json, write_text
from keras_lesions.runs.folder import RunError, finish_run, read_run_info

# Paper-size networks: encoder 69.6 M, decoder 146.5 M parameters at 128×128:
# one run to a GPU.
DISENTANGLE_NEEDS = Resources(cpus=1, gpus=1.0)
CLASSIFIER_NEEDS = Resources(cpus=1, gpus=0.5)


def seeded(config: ExperimentConfig, seed: int) -> ExperimentConfig:
    """The config with the disentangle section's seed set to ``seed``."""
    return dataclasses.replace(
        config, disentangle=dataclasses.replace(config.disentangle, seed=seed))


def disentangle_id(fold: int, seed: int, repeat: int = 0) -> str:
    return f"{cell_tag(repeat, fold)}/disentangle/seed{seed}"


def mixtures_id(fold: int, seed: int, repeat: int = 0) -> str:
    return f"{cell_tag(repeat, fold)}/mixtures/seed{seed}"


def proposed_id(fold: int, seed: int, repeat: int = 0) -> str:
    return f"{cell_tag(repeat, fold)}/proposed/seed{seed}"


def control_id(control: str, fold: int, seed: int, repeat: int = 0) -> str:
    return f"{cell_tag(repeat, fold)}/control-{control}/seed{seed}"


def plan(exp: Experiment) -> Plan:
    layout, specs = exp.layout, []
    for seed in exp.config.evaluate.seeds:
        for repeat, fold in exp.cells():
            d, m, p = (disentangle_id(fold, seed, repeat), mixtures_id(fold, seed, repeat),
                       proposed_id(fold, seed, repeat))
            params = {"repeat": repeat, "fold": fold, "seed": seed}
            specs += [
                RunSpec(id=d, step="disentangle", params=params, needs=DISENTANGLE_NEEDS,
                        output=layout.run_output(d),
                        title=f"disentanglement (step 1 = the baseline), fold {fold}"),
                RunSpec(id=m, step="mixtures", params=params, depends_on=(d,),
                        needs=Resources(cpus=1, gpus=0.5),
                        output=layout.relative(layout.data_file(m)),
                        title=f"mixtures of specified factors, fold {fold}"),
                RunSpec(id=p, step="proposed", params=params, depends_on=(m,),
                        needs=CLASSIFIER_NEEDS, output=layout.run_output(p),
                        title=f"the proposed classifier, fold {fold}"),
            ]
            for control in exp.config.mixture.controls:
                c = control_id(control, fold, seed, repeat)
                specs.append(RunSpec(id=c, step="control", params={**params, "control": control},
                                     depends_on=(m,), needs=CLASSIFIER_NEEDS,
                                     output=layout.run_output(c),
                                     title=f"the {control} control, fold {fold}"))
    report = RunSpec(id="report", step="report", depends_on=tuple(s.id for s in specs),
                     output=layout.relative(layout.result), title="the report", light=True)
    return Plan(specs + [report])


# --------------------------------------------------------------------------- steps


def _split(exp: Experiment, config: ExperimentConfig, repeat: int, fold: int):
    return fit_validation_test_indices(exp.repeat_dataset(repeat), fold,
                                       config.disentangle.validation_fraction,
                                       seed=config.disentangle.seed + 1000 * fold,
                                       where=exp.dataset_path)


def _fit_indices(exp: Experiment, run_dir) -> np.ndarray:
    """The lesions the disentanglement run itself was fitted on, as it recorded them."""
    position = {lesion_id: i for i, lesion_id in enumerate(exp.dataset.lesion_ids.tolist())}
    fit_ids = read_run_info(run_dir).get("fit_ids") or []
    missing = [i for i in fit_ids if i not in position]
    if missing or not fit_ids:
        raise RunError(f"was fitted on lesion {missing[0]!r}, which the experiment's dataset "
                       "lacks" if missing else "run.json lists no fit_ids", run_dir)
    return np.array([position[i] for i in fit_ids])


def disentangle_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    from keras_lesions.train.disentangle import check_image_size, train_disentangle

    check_image_size(exp.dataset, exp.config, exp.dataset_path)
    p = spec.params
    ctx.log(f"{spec.id}: disentangling (step 1 = the baseline classifier, then step 2)")
    train_disentangle(exp.repeat_dataset(p["repeat"]), exp.dataset_path, p["fold"],
                      seeded(exp.config, p["seed"]),
                      exp.layout.run_dir(spec.id), resume=ctx.resume, log=ctx.log,
                      progress=ctx.progress, verbose=ctx.verbose, repeat=p["repeat"])


def _cell_seed(exp: Experiment, params: dict) -> int:
    """The seed of a cell's (repeat, fold, training seed) mixtures."""
    return (exp.config.mixture.seed + 1000 * params["fold"] + params["seed"]
            + 100_003 * params["repeat"])


def mixtures_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    from keras_lesions.synth.mixture import mixture_dataset
    from keras_lesions.train.disentangle import load_disentangled

    p, mixture = spec.params, exp.config.mixture
    run_dir = exp.layout.run_dir(disentangle_id(p["fold"], p["seed"], p["repeat"]))
    fit_idx = _fit_indices(exp, run_dir)
    n = mixture.per_image * len(fit_idx)
    ctx.log(f"{spec.id}: mixing specified factors: {n} images (alpha {mixture.alpha})")
    mixed = mixture_dataset(load_disentangled(run_dir), exp.dataset, fit_idx, n, mixture.alpha,
                            seed=_cell_seed(exp, p), created_by=f"keras_lesions experiment {exp.config.name}")
    write_dataset(mixed, exp.layout.data_file(spec.id))


def baseline_steps_per_epoch(config: ExperimentConfig, n_real: int) -> int:
    """SGD steps of one baseline epoch on ``n_real`` fit lesions (every case
    ``repeats`` times, full batches)."""
    from keras_lesions.augment.online import online_steps_per_epoch

    d = config.disentangle
    batch = min(d.batch_size, n_real * d.repeats)
    return online_steps_per_epoch(n_real, d.repeats, batch, drop_remainder=True)


def proposed_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    p = spec.params
    mixed_path = exp.layout.data_file(mixtures_id(p["fold"], p["seed"], p["repeat"]))
    fit_idx = _fit_indices(exp, exp.layout.run_dir(disentangle_id(p["fold"], p["seed"],
                                                                  p["repeat"])))
    _train_soft_arm(exp, spec, ctx, fit_idx, "proposed", read_dataset(mixed_path), mixed_path,
                    "mixed images")


def control_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    from keras_lesions.synth.controls import control_dataset

    p = spec.params
    mixed_path = exp.layout.data_file(mixtures_id(p["fold"], p["seed"], p["repeat"]))
    fit_idx = _fit_indices(exp, exp.layout.run_dir(disentangle_id(p["fold"], p["seed"],
                                                                  p["repeat"])))
    # the partners' draws apart from the mixtures' own (+7)
    cases = control_dataset(p["control"], exp.dataset, read_dataset(mixed_path), fit_idx,
                            seed=_cell_seed(exp, p) + 7,
                            created_by=f"keras_lesions experiment {exp.config.name}")
    _train_soft_arm(exp, spec, ctx, fit_idx, f"control-{p['control']}", cases, mixed_path,
                    f"{p['control']} control cases")


def _train_soft_arm(exp: Experiment, spec: RunSpec, ctx: StepContext, fit_idx: np.ndarray,
                    group: str, cases, mixed_path, what: str) -> None:
    """Train the specified classifier on the real fit lesions (one-hot) plus
    ``cases`` (soft targets), at the baseline's SGD steps per epoch, and test it."""
    from keras_lesions.augment.online import prepare_online_canvases
    from keras_lesions.pipeline import one_hot, preprocessing_record, roi_inputs
    from keras_lesions.runs.predictions import predict_and_record
    from keras_lesions.train.specified_classifier import best_epoch, train_specified_classifier

    p = spec.params
    repeat, fold, seed = p["repeat"], p["fold"], p["seed"]
    config = seeded(exp.config, seed)
    dataset, names, size = exp.dataset, exp.class_names, config.disentangle.input_size
    _, val_idx, test_idx = _split(exp, config, repeat, fold)
    real = prepare_online_canvases(dataset, fit_idx, size=size)
    canvases = real.concatenate(prepare_online_canvases(cases, size=size))
    targets = np.concatenate([one_hot(real.labels, len(names)), cases.targets()])
    # Equal compute: the baseline's SGD steps per epoch, so the extra cases
    # replace half of the real showings instead of adding steps.
    steps_per_epoch = baseline_steps_per_epoch(config, len(real))
    info = {"repeat": repeat, "fold": fold, "group": group,
            "dataset": str(exp.dataset_path), "class_names": names, "mixtures": str(mixed_path),
            "preprocessing": preprocessing_record(dataset, size),
            "n_real": int(len(real)), "n_mixed": int(len(cases)),
            "sgd_steps": steps_per_epoch * config.disentangle.classifier_epochs}
    ctx.log(f"{spec.id}: training on {len(real)} real images + {len(cases)} {what} "
            f"({steps_per_epoch} steps an epoch, as the baseline)")
    run_dir = exp.layout.run_dir(spec.id)
    model = train_specified_classifier(
        canvases, targets, (roi_inputs(dataset, val_idx, size), dataset.labels[val_idx]),
        # batch norm statistics from the real training images, as in the
        # baseline: they are what test images look like
        roi_inputs(dataset, fit_idx, size), config, run_dir, class_names=names, run_info=info,
        resume=ctx.resume, progress=ctx.bar(f"{group} classifier {cell_tag(repeat, fold)}"),
        verbose=ctx.verbose, steps_per_epoch=steps_per_epoch)
    accuracy = predict_and_record(model, run_dir, roi_inputs(dataset, test_idx, size),
                                  dataset.labels[test_idx], dataset.lesion_ids[test_idx])
    finish_run(run_dir, {**info, "seed": seed, "test_accuracy": accuracy,
                         "n_test": int(len(test_idx)), "best_epoch": best_epoch(run_dir)})


def arm_records(exp: Experiment) -> tuple[dict[str, list[dict]], list]:
    """Test records of every arm ("baseline": step 1, "proposed", and
    "control-<name>" per control) over every cell and seed, and the
    disentanglement run folders."""
    runs = [s for s in plan(exp) if s.step == "disentangle"]
    disentangle_dirs = [exp.layout.run_dir(s.id) for s in runs]
    arms: dict[str, list[dict]] = {"baseline": [], "proposed": []}
    arms.update({f"control-{c}": [] for c in exp.config.mixture.controls})
    for s, run_dir in zip(runs, disentangle_dirs):
        repeat, fold, seed = s.params["repeat"], s.params["fold"], s.params["seed"]
        record = run_record(run_dir / "step1")
        n_real = int(read_run_info(run_dir / "step1").get("n_train", 0))
        steps = baseline_steps_per_epoch(seeded(exp.config, seed), n_real) * \
            exp.config.disentangle.classifier_epochs if n_real else None
        arms["baseline"].append({**record, "repeat": repeat, "sgd_steps": steps})
        arms["proposed"].append({**run_record(exp.layout.run_dir(proposed_id(fold, seed, repeat))),
                                 "repeat": repeat})
        for control in exp.config.mixture.controls:
            run = exp.layout.run_dir(control_id(control, fold, seed, repeat))
            arms[f"control-{control}"].append({**run_record(run), "repeat": repeat})
    return arms, disentangle_dirs


def comparisons(exp: Experiment, arms: dict[str, list[dict]]) -> dict[str, dict]:
    """The mixtures against the baseline, and against each control (which
    isolates the codes from the soft targets), and each control against the
    baseline (what soft targets alone do)."""
    result = {"mixtures": exp.compare("The mixtures", arms["baseline"], arms["proposed"])}
    for control in exp.config.mixture.controls:
        records = arms[f"control-{control}"]
        title = CONTROL_TITLES[control]
        result[f"mixtures-vs-{control}"] = exp.compare(
            f"The mixtures over {title}", records, arms["proposed"])
        result[f"{control}-vs-baseline"] = exp.compare(
            f"{title[0].upper()}{title[1:]}", arms["baseline"], records)
    return result


def attribution_sentence(found: dict[str, dict], controls) -> str:
    """Whether a gain of the mixtures can be credited to the disentangled codes."""
    if not controls:
        return ("No soft-target control was run (mixture.controls is empty): a difference "
                "cannot be told apart from the effect of soft targets alone.")
    main = found["mixtures"]
    against = [found[f"mixtures-vs-{c}"] for c in controls]
    if main.get("outcome") == HELPED and all(c.get("outcome") == HELPED for c in against):
        return ("The gain holds against every soft-target control, so it can be credited to "
                "the disentangled codes rather than to soft targets alone.")
    if main.get("outcome") == HELPED:
        return ("The gain does not hold against every soft-target control, so it cannot be "
                "credited to the disentangled codes: soft targets alone may explain it.")
    return ("No gain to credit; against the soft-target controls (same soft targets and SGD "
            "steps, other images):")


def report_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    """Tables 2 and 3 in Markdown and JSON, confusion PNGs, swap and mixture pictures."""
    config, dataset = exp.config, exp.dataset
    arms, disentangle_dirs = arm_records(exp)
    out = exp.layout.report
    summaries = {arm: exp.summarize(records) for arm, records in arms.items()}
    baseline, proposed = summaries["baseline"], summaries["proposed"]
    write_summary(baseline, out, "baseline", "Classic training scheme (baseline)")
    write_summary(proposed, out, "proposed", "Proposed training scheme (mixtures)")
    for control in config.mixture.controls:
        write_summary(summaries[f"control-{control}"], out, f"control-{control}",
                      f"Control: {CONTROL_TITLES[control]}")
    rows = paired_differences(baseline["per_fold"], proposed["per_fold"])
    found = comparisons(exp, arms)
    sentence = found["mixtures"]["verdict"]
    attribution = attribution_sentence(found, config.mixture.controls)
    adversary = adversary_summary(disentangle_dirs)
    pictures = write_pictures(exp, disentangle_dirs[0], adversary)
    effect = swap_effect(exp, disentangle_dirs[0])
    swap = f"Swap test (repeat {effect['repeat']}, fold {effect['fold']}): {effect['reading']}."
    report_path = out / "mixture_report.md"
    write_text(report_path, mixture_markdown(config, dataset, summaries, rows, sentence,
                                             adversary, pictures, found, attribution, swap))
    result = {"baseline": baseline, "proposed": proposed,
              "controls": {c: summaries[f"control-{c}"] for c in config.mixture.controls},
              "table2": rows, "verdict": sentence, "attribution": attribution,
              "swap_test": swap, "comparison": found["mixtures"], "comparisons": found,
              "adversary": adversary, "code_effect": effect, "report": str(report_path)}
    write_json(out / "mixture.json", result)
    exp.write_result(result)
    ctx.log(f"report: {report_path}")


def swap_effect(exp: Experiment, run_dir, most: int = 128) -> dict:
    """``synth.mixture.code_effect`` of a disentanglement run on (up to
    ``most`` of) the lesions it was fitted on, with its repeat and fold."""
    from keras_lesions.pipeline import roi_inputs
    from keras_lesions.synth.mixture import code_effect
    from keras_lesions.train.disentangle import load_disentangled

    networks = load_disentangled(run_dir)
    ids = list(exp.dataset.lesion_ids)
    fit = [ids.index(i) for i in networks.info["fit_ids"]][:most]
    images = roi_inputs(exp.dataset, fit, networks.input_size)
    return {"repeat": int(networks.info.get("repeat", 0)), "fold": int(networks.info["fold"]),
            **code_effect(networks, images, exp.dataset.labels[fit],
                          seed=int(networks.info.get("seed", 0)))}


def write_pictures(exp: Experiment, run_dir, adversary: dict) -> list:
    """Swap grid (Fig. 3), mixture examples (Fig. 4) and adversary accuracy curves."""
    from matplotlib.figure import Figure

    from keras_lesions.pipeline import roi_inputs
    from keras_lesions.synth.mixture import write_swap_grid
    from keras_lesions.train.disentangle import load_disentangled

    dataset, out = exp.dataset, exp.layout.report
    networks = load_disentangled(run_dir)
    ids = list(dataset.lesion_ids)
    fit = [ids.index(i) for i in networks.info["fit_ids"]]
    labels = dataset.labels[fit]
    # x: a cyst (as in Fig. 3) or the first class present; y: one lesion per class.
    x_class = 0 if (labels == 0).any() else int(labels[0])
    x = fit[int(np.flatnonzero(labels == x_class)[0])]
    ys = [fit[int(np.flatnonzero(labels == k)[-1])] for k in range(len(dataset.class_names))
          if (labels == k).any()]
    images = roi_inputs(dataset, [x] + ys, networks.input_size)
    paths = [write_swap_grid(networks, images[0], images[1:], out / "swap.png",
                             f"{dataset.class_names[x_class]} {ids[x]}",
                             [f"{dataset.class_names[dataset.labels[i]]}" for i in ys])]

    mixed_path = exp.layout.data_file(mixtures_id(networks.info["fold"], networks.info["seed"],
                                                  int(networks.info.get("repeat", 0))))
    if mixed_path.is_file():
        mixed = read_dataset(mixed_path)
        shown = min(8, len(mixed))
        fig = Figure(figsize=(1.7 * shown, 2.3))
        axes = fig.subplots(1, shown, squeeze=False)[0]
        for ax, lesion, soft in zip(axes, mixed.lesions[:shown], mixed.soft_labels[:shown]):
            ax.imshow(lesion.roi, cmap="gray", vmin=0, vmax=1)
            ax.axis("off")
            ax.set_title("\n".join(f"{n[:4]} {100 * s:.0f}%"
                                   for n, s in zip(mixed.class_names, soft) if s >= 0.005),
                         fontsize=6)
        fig.suptitle("Mixtures of specified factors and their soft targets (Fig. 4)",
                     fontsize=8)
        save_figure(fig, out / "mixtures.png", dpi=100)
        paths.append(out / "mixtures.png")

    fig = Figure(figsize=(5, 3.2))
    ax = fig.subplots()
    for entry in adversary["runs"]:
        name = f"repeat {entry['repeat']} fold {entry['fold']}"
        ax.plot(range(1, len(entry["curve"]) + 1), entry["curve"], label=f"{name} train")
        ax.plot(range(1, len(entry["val_curve"]) + 1), entry["val_curve"], "--",
                label=f"{name} val")
    if np.isfinite(adversary["chance"]):
        ax.axhline(adversary["chance"], color="gray", lw=0.8, label="chance (majority)")
    ax.set_xlabel("step-2 epoch")
    ax.set_ylabel("adversary accuracy on E_R(x)")
    ax.legend(fontsize=6)
    save_figure(fig, out / "adversary.png")
    paths.append(out / "adversary.png")
    return paths


def summary(result: dict) -> str:
    """Table 2 and the verdicts of a mixture experiment, for a terminal."""
    lines = ["repeat  fold  seed  baseline  proposed  difference"]
    for row in result["table2"]:
        lines.append(f"{row['repeat']:>6}  {row['fold']:>4}  {row['seed']:>4}  "
                     f"{100 * row['baseline']:>7.1f}%  {100 * row['proposed']:>7.1f}%  "
                     f"{100 * row['difference']:>+9.1f}")
    b, p = result["baseline"]["accuracy"], result["proposed"]["accuracy"]
    lines.append(f"avg.        {100 * b['mean']:.1f} ± {100 * b['std']:.1f}  "
                 f"{100 * p['mean']:.1f} ± {100 * p['std']:.1f}")
    lines += ["", side_by_side(result["baseline"], result["proposed"],
                               titles=("baseline", "proposed")),
              "", result["verdict"], "", result["attribution"]]
    lines += [f"- {c['verdict']}" for key, c in result["comparisons"].items()
              if key.startswith("mixtures-vs-")]
    # (results written before the swap test had its own entry kept it in "attribution")
    lines += ["", result["swap_test"]] if "swap_test" in result else []
    lines += ["", f"report: {result['report']}"]
    return "\n".join(lines)


KIND = ExperimentKind(
    name="mixture",
    description="Ben-Cohen 2019 §3.2: the classifier with and without mixtures of specified "
                "factors (Tables 2 and 3)",
    sections=("data", "evaluate", "disentangle", "mixture", "train.class_balance"),
    plan=plan,
    steps={"disentangle": disentangle_step, "mixtures": mixtures_step,
           "proposed": proposed_step, "control": control_step, "report": report_step},
    epoch_settings=("disentangle.classifier_epochs", "disentangle.epochs"), summary=summary)
