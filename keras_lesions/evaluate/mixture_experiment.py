"""The mixture-of-specified-factors experiment (Ben-Cohen et al. 2019 §3.2, Tables 2 and 3).

For each test fold of the 3-fold patient-level split (and each seed):

1. split the training folds' patients into a fit part and a 30% validation
   part (§3.2);
2. disentangle on the fit part (``train.disentangle``). Its step 1 is E_C +
   classifier trained with cross-entropy on online-augmented real lesions:
   the *baseline* ("classic training scheme"), tested on the fold;
3. make ``mixture.per_image`` mixtures per fit image (§2.2) with soft targets;
4. train the same architecture afresh, same seed, same schedule, on the
   real fit lesions (one-hot) plus the mixtures (soft targets), both online
   augmented: the *proposed* scheme, tested on the fold.

Both classifiers keep their best-validation epoch. Layout under
``OUTPUT_DIR/NAME``::

    runs/disentangle/fold<k>/seed<s>/        disentanglement run (step1/ = baseline)
    mixtures/fold<k>_seed<s>.h5              the mixtures (soft labels)
    runs/proposed/fold<k>/seed<s>/           the proposed classifier run
    report/mixture_report.md, mixture.json   Tables 2 and 3, verdict
    report/swap.png, mixtures.png, adversary.png, baseline*, proposed*

Everything is resumable: finished stages are reused, interrupted trainings
continue from their last epoch.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import numpy as np

from keras_lesions.config import ExperimentConfig
from keras_lesions.data.dataset import atomic_path, read_dataset, save_figure, write_dataset
from keras_lesions.evaluate.crossval import experiment_dir, open_experiment
from keras_lesions.evaluate.report import summarize_predictions, write_summary
from keras_lesions.train.classifier import is_done, write_json

Progress = Callable[[str, int, int], None]


def _seeded(config: ExperimentConfig, seed: int) -> ExperimentConfig:
    return dataclasses.replace(
        config, disentangle=dataclasses.replace(config.disentangle, seed=seed))


def _load_predictions(run_dir: Path, fold: int, seed: int) -> dict:
    with np.load(run_dir / "predictions.npz") as data:
        return {"fold": fold, "seed": seed, "y_true": data["y_true"], "y_pred": data["y_pred"],
                "run_dir": str(run_dir)}


def run_mixture_experiment(config: ExperimentConfig, log: Callable[[str], None] = print,
                           progress: Progress | None = None) -> dict:
    """Baseline vs proposed on every configured fold and seed; write the report.

    Returns:
        ``{"baseline", "proposed"}`` summaries (``summarize_predictions``),
        ``"table2"`` rows, ``"verdict"``, ``"report"`` (the Markdown path).
    """
    from keras_lesions.augment.online import prepare_online_canvases
    from keras_lesions.data.pipeline import one_hot, roi_inputs
    from keras_lesions.synth.mixture import mixture_dataset
    from keras_lesions.train.disentangle import (
        check_image_size, fold_split, load_disentangled, test_classifier,
        train_disentangle, train_specified_classifier)

    dataset_path, dataset = open_experiment(config, log)
    check_image_size(dataset, config, dataset_path)
    out = experiment_dir(config)
    names = list(dataset.class_names)
    size = config.disentangle.input_size
    baseline_records, proposed_records, disentangle_dirs = [], [], []
    for seed in config.evaluate.seeds:
        seeded = _seeded(config, seed)
        for fold in config.evaluate.folds:
            tag = f"fold {fold}" + (f" seed {seed}" if len(config.evaluate.seeds) > 1 else "")
            run_dir = out / "runs" / "disentangle" / f"fold{fold}" / f"seed{seed}"
            if not is_done(run_dir):
                log(f"{tag}: disentangling (step 1 = the baseline classifier, then step 2)")
                train_disentangle(dataset, dataset_path, fold, seeded, run_dir,
                                  resume=(run_dir / "run.json").is_file(), log=log,
                                  progress=progress)
            disentangle_dirs.append(run_dir)
            baseline_records.append(_load_predictions(run_dir / "step1", fold, seed))

            mixed_path = out / "mixtures" / f"fold{fold}_seed{seed}.h5"
            _, val_idx, test_idx = fold_split(dataset, fold, seeded, dataset_path)
            # the lesions the run itself was fitted on, as it recorded them
            ids = dataset.lesion_ids.tolist()
            fit_idx = np.array([ids.index(i) for i in
                                json.loads((run_dir / "run.json").read_text())["fit_ids"]])
            if not mixed_path.is_file():
                networks = load_disentangled(run_dir)
                n = config.mixture.per_image * len(fit_idx)
                log(f"{tag}: mixing specified factors: {n} images (alpha "
                    f"{config.mixture.alpha})")
                mixed = mixture_dataset(networks, dataset, fit_idx, n, config.mixture.alpha,
                                        seed=config.mixture.seed + 1000 * fold + seed,
                                        created_by=f"keras_lesions experiment {config.name}")
                write_dataset(mixed, mixed_path)
            proposed_dir = out / "runs" / "proposed" / f"fold{fold}" / f"seed{seed}"
            if not is_done(proposed_dir):
                mixed = read_dataset(mixed_path)
                real = prepare_online_canvases(dataset, fit_idx, size=size)
                canvases = real.concatenate(prepare_online_canvases(mixed, size=size))
                targets = np.concatenate([one_hot(real.labels, len(names)), mixed.targets()])
                info = {"fold": fold, "group": "proposed", "dataset": str(dataset_path),
                        "class_names": names, "mixtures": str(mixed_path),
                        "n_real": int(len(real)), "n_mixed": int(len(mixed))}
                log(f"{tag}: training the proposed classifier on {len(real)} real + "
                    f"{len(mixed)} mixed images")
                model = train_specified_classifier(
                    canvases, targets, (roi_inputs(dataset, val_idx, size),
                                        dataset.labels[val_idx]),
                    # batch norm statistics from the real training images, as in
                    # the baseline: they are what test images look like
                    roi_inputs(dataset, fit_idx, size), seeded, proposed_dir, class_names=names, run_info=info,
                    resume=(proposed_dir / "run.json").is_file(), progress=progress,
                    label=f"proposed classifier {tag}")
                test_classifier(model, proposed_dir, roi_inputs(dataset, test_idx, size),
                                dataset.labels[test_idx], dataset.lesion_ids[test_idx],
                                {**info, "seed": seed})
                del model
            proposed_records.append(_load_predictions(proposed_dir, fold, seed))

    report = write_mixture_report(config, dataset, baseline_records, proposed_records,
                                  disentangle_dirs)
    log(f"report: {report['report']}")
    return report


def table2_rows(baseline_records, proposed_records) -> list[dict]:
    """Per (fold, seed): baseline and proposed test accuracy and the difference."""
    rows = []
    for base, prop in zip(baseline_records, proposed_records):
        b = float(np.mean(base["y_true"] == base["y_pred"]))
        p = float(np.mean(prop["y_true"] == prop["y_pred"]))
        rows.append({"fold": base["fold"], "seed": base["seed"], "baseline": b, "proposed": p,
                     "difference": p - b})
    return rows


def verdict(rows: list[dict]) -> str:
    """One honest sentence on whether the mixtures helped, with the fold spread."""
    diffs = np.array([r["difference"] for r in rows])
    mean = 100 * diffs.mean()
    spread = 100 * diffs.std(ddof=1) if len(diffs) > 1 else 0.0
    improved = int((diffs > 0).sum())
    per_fold = ", ".join(f"{100 * d:+.1f}" for d in diffs)
    if improved == len(diffs) and mean > 0:
        head = "The mixtures helped on every fold"
    elif mean > 0:
        head = f"The mixtures helped on average but not on every fold ({improved} of {len(diffs)})"
    elif improved:
        head = (f"The mixtures did not help on average (they helped on {improved} of "
                f"{len(diffs)} folds)")
    else:
        head = "The mixtures did not help on any fold"
    return (f"{head}: {mean:+.1f} points of accuracy on average (per fold {per_fold}; "
            f"std of the differences {spread:.1f}).")


def write_mixture_report(config, dataset, baseline_records, proposed_records,
                         disentangle_dirs) -> dict:
    """Tables 2 and 3 in Markdown and JSON, confusion PNGs, swap and mixture pictures."""
    names = list(dataset.class_names)
    out = experiment_dir(config) / "report"
    out.mkdir(parents=True, exist_ok=True)
    baseline = summarize_predictions(baseline_records, names)
    proposed = summarize_predictions(proposed_records, names)
    write_summary(baseline, out, "baseline", "Classic training scheme (baseline)")
    write_summary(proposed, out, "proposed", "Proposed training scheme (mixtures)")
    rows = table2_rows(baseline_records, proposed_records)
    sentence = verdict(rows)
    adversary = _adversary_summary(disentangle_dirs)
    pictures = _write_pictures(config, dataset, disentangle_dirs[0], out, adversary)

    def pct(v):
        return f"{100 * v:.1f}"

    lines = [f"# Mixture of specified factors: {config.name}", "",
             f"Dataset: {len(dataset)} lesions ({', '.join(f'{k} {v}' for k, v in dataset.class_counts().items())}), "
             f"{config.disentangle.input_size}×{config.disentangle.input_size}; "
             f"networks at width {config.disentangle.width}, code size "
             f"{config.disentangle.code_size}; {config.disentangle.classifier_epochs} classifier "
             f"epochs, {config.disentangle.epochs} disentanglement epochs, every case shown "
             f"{config.disentangle.repeats}× per epoch; "
             f"{100 * config.disentangle.validation_fraction:.0f}% of each training set's "
             f"patients held out for validation (best epoch kept); mixtures: "
             f"{config.mixture.per_image} per training image, alpha {config.mixture.alpha}.", "",
             f"**{sentence}**", "",
             "## Table 2: accuracy with and without the proposed training scheme", "",
             "| fold | seed | baseline [acc. %] | proposed [acc. %] | difference |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['fold']} | {r['seed']} | {pct(r['baseline'])} | "
                     f"{pct(r['proposed'])} | {100 * r['difference']:+.1f} |")
    b, p = baseline["accuracy"], proposed["accuracy"]
    lines.append(f"| avg. | | {pct(b['mean'])} ± {pct(b['std'])} | "
                 f"{pct(p['mean'])} ± {pct(p['std'])} | "
                 f"{100 * (p['mean'] - b['mean']):+.1f} |")
    lines += ["", "Paper (Ben-Cohen et al. 2019, Table 2, real CT): 67.6 ± 2.0 → 75.0 ± 5.8.", "",
              "## Table 3: confusion matrices (rows: ground truth, columns: predicted), "
              "summed over the test folds", ""]
    for title, summary in (("Classic training scheme", baseline),
                           ("Proposed training scheme", proposed)):
        lines += [f"**{title}** (total accuracy {pct(summary['pooled']['accuracy'])}%)", "",
                  "| GT \\ predicted | " + " | ".join(names) + " |",
                  "|---" * (len(names) + 1) + "|"]
        for name, row in zip(names, summary["confusion"]):
            lines.append(f"| {name} | " + " | ".join(f"{v:g}" for v in row) + " |")
        lines.append("")
    lines += ["## Disentanglement", "",
              "Adversary accuracy on E_R's code (the last epoch; chance is the largest class "
              f"share, {100 * adversary['chance']:.1f}% on the fit sets):", "",
              "| fold | seed | first epoch (train) | last epoch (train) | validation | "
              "reconstruction MSE (val) |", "|---|---|---|---|---|---|"]
    for entry in adversary["runs"]:
        lines.append(f"| {entry['fold']} | {entry['seed']} | {pct(entry['first'])} | "
                     f"{pct(entry['last'])} | {pct(entry['val'])} | {entry['val_rec']:.4f} |")
    below = [e for e in adversary["runs"] if e["val"] < adversary["chance"] - 0.1]
    if below:
        lines += ["", f"On {len(below)} of {len(adversary['runs'])} runs the adversary ends "
                  "well below chance on validation: maximising its cross-entropy (λ < 0) "
                  "pushes E_R's code to point at wrong classes rather than at none, so r "
                  "still carries class information, only inverted. The paper's loss allows "
                  "this; read the swap grid with it in mind."]
    per_image = config.mixture.per_image
    lines += ["", f"The proposed classifier sees its real images and {per_image} mixture(s) "
              f"per real image each epoch, so it takes about {1 + per_image}× the baseline's "
              "gradient steps on the same schedule; both keep their best validation epoch."]
    lines += ["", "Pictures: " + ", ".join(f"`{Path(p).name}`" for p in pictures), "",
              "Per-class sensitivity and specificity: `baseline.md`, `proposed.md`.", ""]
    report_path = out / "mixture_report.md"
    with atomic_path(report_path, suffix=".md") as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    result = {"baseline": baseline, "proposed": proposed, "table2": rows, "verdict": sentence,
              "adversary": adversary, "report": str(report_path)}
    write_json(out / "mixture.json", result)
    return result


def _adversary_summary(disentangle_dirs) -> dict:
    import csv

    runs, chance = [], []
    for run_dir in disentangle_dirs:
        run_dir = Path(run_dir)
        with open(run_dir / "history.csv", newline="", encoding="utf-8") as handle:
            history = list(csv.DictReader(handle))
        done = json.loads((run_dir / "done.json").read_text())
        info = json.loads((run_dir / "run.json").read_text())
        runs.append({"fold": done["fold"], "seed": done["seed"],
                     "first": float(history[0]["adv_accuracy"]),
                     "last": float(history[-1]["adv_accuracy"]),
                     "val": float(history[-1]["val_adv_accuracy"]),
                     "val_rec": float(history[-1]["val_rec_loss"]),
                     "curve": [float(row["adv_accuracy"]) for row in history],
                     "val_curve": [float(row["val_adv_accuracy"]) for row in history]})
        chance.append(info.get("chance_accuracy", float("nan")))
    return {"runs": runs, "chance": float(np.nanmean(chance)) if chance else float("nan")}


def _write_pictures(config, dataset, run_dir: Path, out: Path, adversary: dict) -> list[Path]:
    """Swap grid (Fig. 3), mixture examples (Fig. 4) and adversary accuracy curves."""
    from matplotlib.figure import Figure

    from keras_lesions.data.pipeline import roi_inputs
    from keras_lesions.synth.mixture import write_swap_grid
    from keras_lesions.train.disentangle import load_disentangled

    networks = load_disentangled(run_dir)
    size = networks.input_size
    ids = list(dataset.lesion_ids)
    fit = [ids.index(i) for i in networks.info["fit_ids"]]
    labels = dataset.labels[fit]
    # x: a cyst (as in Fig. 3) or the first class present; y: one lesion per class.
    x_class = 0 if (labels == 0).any() else int(labels[0])
    x = fit[int(np.flatnonzero(labels == x_class)[0])]
    ys = [fit[int(np.flatnonzero(labels == k)[-1])] for k in range(len(dataset.class_names))
          if (labels == k).any()]
    images = roi_inputs(dataset, [x] + ys, size)
    swap = write_swap_grid(networks, images[0], images[1:], out / "swap.png",
                           f"{dataset.class_names[x_class]} {ids[x]}",
                           [f"{dataset.class_names[dataset.labels[i]]}" for i in ys])

    mixed_path = experiment_dir(config) / "mixtures" / f"fold{networks.info['fold']}_seed{networks.info['seed']}.h5"
    paths = [swap]
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
        ax.plot(range(1, len(entry["curve"]) + 1), entry["curve"],
                label=f"fold {entry['fold']} train")
        ax.plot(range(1, len(entry["val_curve"]) + 1), entry["val_curve"], "--",
                label=f"fold {entry['fold']} val")
    if np.isfinite(adversary["chance"]):
        ax.axhline(adversary["chance"], color="gray", lw=0.8, label="chance (majority)")
    ax.set_xlabel("step-2 epoch")
    ax.set_ylabel("adversary accuracy on E_R(x)")
    ax.legend(fontsize=6)
    save_figure(fig, out / "adversary.png")
    paths.append(out / "adversary.png")
    return paths
