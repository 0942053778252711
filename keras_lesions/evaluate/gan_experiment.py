"""The CNN-AUG-GAN experiment of Frid-Adar et al. 2018 (Fig. 7, Fig. 8, Tables 3, 5, 7).

Per test fold, everything from its training folds only:

1. the classic curve gives D_aug^optimal (``crossval.run_classic_curve``), or
   the config names the base group;
2. one DCGAN per class and one ACGAN are trained on D_aug^optimal (§4.2.2:
   "we incorporated classic augmentation for the training process");
3. the classifier is trained on D_aug^optimal + D_synth^j, j = per-class sizes
   {100, 500, 1000, 2000, 3000, 4000} × classes, balanced per class (Fig. 8,
   blue line);
4. the same sizes of *real* extra lesions with their classic augmentations
   (phantoms: the preset's extra patient pool; Fig. 8, green line);
5. at the best synthetic size, the classifier on ACGAN synthesis, and the
   ACGAN discriminator used directly as a classifier (Table 5);
6. generator quality: Fréchet and kernel distances in the feature space of the
   fold's CNN-AUG classifier, and nearest-real-neighbour distances.

Layout inside the experiment folder (beside the classic curve's)::

    gan/dcgan-<class>/fold<k>/      a DCGAN run (train.gan)
    gan/acgan/fold<k>/              an ACGAN run
    synth/fold<k>-<kind>.h5         synthetic lesions (largest group; groups nest)
    extra/dataset.h5, extra/augment.h5   the extra real pool and its augmentations
    runs/<group>/fold<k>/seed<s>/   classifier runs, group names like
                                    D_aug6+D_synth1000x3, D_aug6+real1000x3,
                                    D_aug6+ACGAN_synth1000x3
    report/gan_*.{csv,png,md,json}  curves, tables, quality
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from keras_lesions.config import ExperimentConfig
from keras_lesions.data.dataset import (
    LesionDataset, atomic_path, read_dataset, save_figure, write_dataset)
from keras_lesions.data.folds import train_test_indices
from keras_lesions.data.pipeline import one_hot, roi_inputs
from keras_lesions.errors import KerasLesionsError
from keras_lesions.evaluate.crossval import (
    PHANTOM_PREFIX, Progress, collect_runs, experiment_dir, group_name, open_experiment,
    run_classic_curve, train_and_test)
from keras_lesions.evaluate.metrics import mean_std_ci
from keras_lesions.evaluate.report import summarize_predictions, write_summary
from keras_lesions.train.classifier import is_done, load_run_model, write_json


def run_gan_curve(config: ExperimentConfig, *, log: Callable[[str], None] = print,
                  progress: Progress | None = None) -> dict:
    """Run the whole CNN-AUG-GAN experiment; resumable, finished steps are reused.

    Returns:
        The summary written to ``report/gan_summary.json`` plus the classic
        curve's result under "classic".
    """
    classic = run_classic_curve(config, log=log, progress=progress)
    dataset_path, dataset = open_experiment(config, log)
    base_index = base_group_index(config)
    base = group_name(base_index)
    log(f"CNN-AUG-GAN starts from {base} (+{config.augment.group_sizes[base_index]} "
        "augmented samples per fold)")
    names = dataset.class_names
    extra_pool = _extra_pool(config, log) if config.synth.more_real_data else None
    sizes = config.synth.per_class_sizes
    seeds = config.evaluate.seeds
    quality: dict[int, dict] = {}
    for fold in config.evaluate.folds:
        _, test_idx = train_test_indices(dataset.folds, fold, where=dataset_path)
        base_images, base_labels = _base_group(config, dataset, fold, base_index, log, progress)
        test = (roi_inputs(dataset, test_idx, config.classifier.input_size),
                dataset.labels[test_idx], dataset.lesion_ids[test_idx])
        generators = _train_gans(config, names, fold, base_images, base_labels, log, progress,
                                 acgan=config.synth.acgan, dataset_path=dataset_path)
        if config.synth.compare_diff_augment:
            other = diff_augment_counterpart(config)
            generators["dcgan_diffaug_swap"] = _train_gans(
                other, names, fold, base_images, base_labels, log, progress, acgan=False,
                dataset_path=dataset_path, folder_suffix=DIFFAUG_SWAP_SUFFIX)["dcgan"]
        synth = {kind: _synthetic_set(config, names, fold, kind, runs, max(sizes), log)
                 for kind, runs in generators.items() if runs}
        for j, per_class in enumerate(sizes):
            images, labels = _take_per_class(synth["dcgan"], per_class, len(names))
            _run_classifier(config, f"{base}+D_synth{per_class}x{len(names)}", fold, seeds,
                            base_images, base_labels, images, labels, test, names, dataset_path,
                            log, progress)
            if extra_pool is not None:
                images, labels = extra_pool.take(per_class * len(names))
                _run_classifier(config, f"{base}+real{per_class}x{len(names)}", fold, seeds,
                                base_images, base_labels, images, labels, test, names,
                                dataset_path, log, progress)
        train_idx, _ = train_test_indices(dataset.folds, fold)
        quality[fold] = _quality(config, base, fold, names,
                                 roi_inputs(dataset, train_idx, config.classifier.input_size),
                                 dataset.labels[train_idx], synth, log)
        if fold == config.evaluate.folds[0]:
            _write_synthetic_grid(base_images, base_labels, synth["dcgan"], names, fold,
                                  experiment_dir(config) / "report" / "gan_synthetic_vs_real.png")
        if config.synth.acgan:
            _acgan_discriminator_predictions(config, generators["acgan"][0], fold, test, names,
                                             log)
    # Table 5: the other synthesis methods at the DCGAN's best size, every fold.
    best_size = _best_synthetic_size(config, base, names)
    others = ([("acgan", "ACGAN_synth")] if config.synth.acgan else []) + (
        [("dcgan_diffaug_swap", "DiffAugSwap_synth")] if config.synth.compare_diff_augment else [])
    for fold in config.evaluate.folds if others else []:
        _, test_idx = train_test_indices(dataset.folds, fold)
        base_images, base_labels = _base_group(config, dataset, fold, base_index, log, progress)
        test = (roi_inputs(dataset, test_idx, config.classifier.input_size),
                dataset.labels[test_idx], dataset.lesion_ids[test_idx])
        for kind, tag in others:
            synth = read_dataset(_synth_path(config, fold, kind))
            images, labels = _take_per_class(synth, best_size, len(names))
            _run_classifier(config, f"{base}+{tag}{best_size}x{len(names)}", fold, seeds,
                            base_images, base_labels, images, labels, test, names,
                            dataset_path, log, progress)
    return write_gan_report(config, dataset, base, classic, quality, best_size,
                            has_extra=extra_pool is not None)


# --------------------------------------------------------------------------- steps


DIFFAUG_SWAP_SUFFIX = "-diffaug-swap"
DEFAULT_DIFF_AUGMENT = "translation,cutout,color"


def diff_augment_counterpart(config: ExperimentConfig) -> ExperimentConfig:
    """The config with DiffAugment switched the other way, for the comparison."""
    import dataclasses

    policy = "" if config.gan.diff_augment else DEFAULT_DIFF_AUGMENT
    return dataclasses.replace(config, gan=dataclasses.replace(config.gan, diff_augment=policy))


def base_group_index(config: ExperimentConfig) -> int:
    """0-based index of the group the GANs start from: the config's
    ``synth.base_group``, else D_aug^optimal of the classic curve's report.

    Raises:
        KerasLesionsError: D_aug^optimal is asked for but not chosen yet.
    """
    if config.synth.base_group:
        return config.synth.base_group - 1
    optimal = experiment_dir(config) / "report" / "optimal.json"
    if not optimal.is_file():
        raise KerasLesionsError(
            "D_aug optimal is not known yet: run the classic curve first (kl experiment with "
            "kind classic-curve or gan-curve), or set synth.base_group", optimal.parent.parent)
    return int(json.loads(optimal.read_text())["optimal_group"][len("D_aug"):]) - 1


def train_fold_gans(config: ExperimentConfig, fold: int, class_names: list[str] | None = None,
                    acgan: bool = False, *, resume: bool = True,
                    log: Callable[[str], None] = print, progress: Progress | None = None
                    ) -> dict[str, list[Path]]:
    """Train the DCGANs of the given classes (and the ACGAN) of one fold.

    What ``kl train-gan`` and ``kl train-acgan`` run; the experiment calls the
    same code for every class and fold.
    """
    dataset_path, dataset = open_experiment(config, log)
    train_test_indices(dataset.folds, fold, where=dataset_path)
    names = list(dataset.class_names)
    unknown = [c for c in (class_names or []) if c not in names]
    if unknown:
        raise KerasLesionsError(f"unknown class {unknown[0]!r}: the dataset's classes are "
                                f"{', '.join(names)}", dataset_path)
    images, labels = _base_group(config, dataset, fold, base_group_index(config), log, progress)
    classes = [names.index(c) for c in (class_names or [])]
    return _train_gans(config, names, fold, images, labels, log, progress, classes=classes,
                       acgan=acgan, resume=resume, dataset_path=dataset_path)


def _base_group(config, dataset, fold, base_index, log, progress):
    from keras_lesions.augment import read_augmentation_group
    from keras_lesions.evaluate.crossval import augmentation_groups_path

    path = augmentation_groups_path(config, dataset, fold, log, progress)
    images, labels, _ = read_augmentation_group(path, base_index)
    return images, labels


def _gan_dir(config, kind: str, fold: int) -> Path:
    return experiment_dir(config) / "gan" / kind / f"fold{fold}"


def _train_gans(config, names, fold, images, labels, log, progress, *, classes=None,
                acgan=True, resume=True, dataset_path=None, folder_suffix="",
                ) -> dict[str, list[Path]]:
    """DCGANs of ``classes`` (default: all) and the ACGAN, on the fold's base group."""
    from keras_lesions.train.gan import train_gan

    runs: dict[str, list[Path]] = {"dcgan": [], "acgan": []}
    classes = range(len(names)) if classes is None else classes
    jobs = [("dcgan", c) for c in classes] + ([("acgan", None)] if acgan else [])
    for kind, c in jobs:
        folder = (f"dcgan-{names[c]}" if kind == "dcgan" else "acgan") + folder_suffix
        run_dir = _gan_dir(config, folder, fold)
        runs[kind].append(run_dir)
        if is_done(run_dir):
            continue
        selected = labels == c if kind == "dcgan" else np.ones(len(labels), bool)
        what = (f"DCGAN {names[c]}" if kind == "dcgan" else "ACGAN") + (
            f" (DiffAugment {config.gan.diff_augment})" if config.gan.diff_augment else "")
        log(f"fold {fold}: training the {what} on {int(selected.sum())} images "
            f"({config.gan.epochs} epochs)")
        label = f"{what} fold {fold}"
        train_gan(kind, images[selected], config, run_dir,
                  class_ids=None if kind == "dcgan" else labels[selected],
                  class_names=list(names),
                  run_info={"fold": fold, "class_name": names[c] if kind == "dcgan" else None,
                            "dataset": str(dataset_path or config.data.dataset)},
                  resume=resume,
                  progress=None if progress is None else
                  (lambda done, total, label=label: progress(label, done, total)))
    return runs


def _synth_path(config, fold: int, kind: str) -> Path:
    return experiment_dir(config) / "synth" / f"fold{fold}-{kind}.h5"


def _synthetic_set(config, names, fold, kind, generator_runs, per_class, log) -> LesionDataset:
    """The fold's synthetic lesions of one GAN kind: ``per_class`` of each class."""
    from keras_lesions.synth import synthesize_dataset

    path = _synth_path(config, fold, kind)
    if not path.exists():
        log(f"fold {fold}: synthesizing {per_class} lesions per class with the {kind.upper()}")
        synth = synthesize_dataset(generator_runs, per_class, config.synth.seed + fold,
                                   list(names))
        synth.created_by = f"keras_lesions experiment {config.name}"
        write_dataset(synth, path)
    return read_dataset(path)


def _take_per_class(dataset: LesionDataset, per_class: int, n_classes: int):
    """The first ``per_class`` lesions of each class: nested, balanced groups."""
    labels = dataset.labels
    chosen = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(n_classes)])
    short = [c for c in range(n_classes) if (labels == c).sum() < per_class]
    if short:
        raise KerasLesionsError(f"the synthetic set has fewer than {per_class} lesions of class "
                                f"{dataset.class_names[short[0]]!r}")
    return roi_inputs(dataset, chosen), labels[chosen]


class _ExtraPool:
    """The extra real lesions with their classic augmentations (green line)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def take(self, n: int):
        if n > len(self.images):
            raise KerasLesionsError(f"the extra real pool has {len(self.images)} augmented "
                                    f"samples, {n} asked for")
        return self.images[:n], self.labels[:n]


def _extra_pool(config, log) -> _ExtraPool | None:
    """Phantom experiments: the preset's extra patients, augmented like the rest.

    Their augmentations are dealt round-robin over lesions (equal lesions per
    class), so every prefix is balanced per class. Datasets of users have no
    extra pool: the green line is then skipped, and the report says so.
    """
    from keras_lesions.augment import build_augmentation_groups, read_augmentation_group
    from keras_lesions.data.builtin import make_phantom_dataset

    if not config.data.dataset.startswith(PHANTOM_PREFIX):
        log("no extra real pool for a user dataset: the 'more real data' line is skipped")
        return None
    folder = experiment_dir(config) / "extra"
    dataset_path, groups_path = folder / "dataset.h5", folder / "augment.h5"
    needed = max(config.synth.per_class_sizes)
    if not dataset_path.exists():
        preset = config.data.dataset[len(PHANTOM_PREFIX):]
        log(f"generating the extra real pool of the {preset} phantoms")
        write_dataset(make_phantom_dataset(preset, config.data.phantom_seed,
                                           config.data.phantom_difficulty, extra_pool=True),
                      dataset_path)
    pool = read_dataset(dataset_path)
    n_classes = len(pool.class_names)
    if not groups_path.exists():
        # Every extra lesion is a training lesion: one pseudo-fold, none held out.
        pool.folds, pool.fold_k = np.ones(len(pool), np.int64), 2
        a = config.augment
        build_augmentation_groups(pool, test_fold=0, path=groups_path,
                                  group_sizes=[needed * n_classes], n_rot=a.n_rot,
                                  n_flip=a.n_flip, n_trans=a.n_trans, n_scale=a.n_scale,
                                  seed=a.seed, size=config.classifier.input_size, log=log)
    images, labels, meta = read_augmentation_group(groups_path, 0)
    augmented = ~np.asarray(meta["is_original"])
    return _ExtraPool(images[augmented], labels[augmented])


def _run_classifier(config, group, fold, seeds, base_images, base_labels, images, labels, test,
                    names, dataset_path, log, progress):
    for seed in seeds:
        run_dir = experiment_dir(config) / "runs" / group / f"fold{fold}" / f"seed{seed}"
        if is_done(run_dir):
            continue
        train_images = np.concatenate([base_images, images])
        train_labels = np.concatenate([base_labels, labels])
        log(f"fold {fold}, seed {seed}: {group}: training on {len(train_images)} images")
        train_and_test(config, run_dir, train_images, one_hot(train_labels, len(names)),
                       *test, seed=seed, progress=progress,
                       run_info={"fold": fold, "group": group, "class_names": list(names),
                                 "dataset": str(dataset_path), "n_added": int(len(images))})


def evaluate_acgan_discriminators(config: ExperimentConfig, folds=None,
                                  log: Callable[[str], None] = print) -> dict:
    """Table 5, last row, on its own: each fold's ACGAN discriminator classifies
    that fold's test lesions. Returns the cross-validated summary.

    Raises:
        RunError: a fold's ACGAN is not trained (``kl train-acgan``).
    """
    from keras_lesions.train.classifier import RunError

    dataset_path, dataset = open_experiment(config, log)
    names = list(dataset.class_names)
    for fold in folds if folds is not None else config.evaluate.folds:
        _, test_idx = train_test_indices(dataset.folds, fold, where=dataset_path)
        acgan_run = _gan_dir(config, "acgan", fold)
        if not is_done(acgan_run):
            raise RunError("holds no finished ACGAN: train it with kl train-acgan", acgan_run)
        test = (roi_inputs(dataset, test_idx, config.classifier.input_size),
                dataset.labels[test_idx], dataset.lesion_ids[test_idx])
        _acgan_discriminator_predictions(config, acgan_run, fold, test, names, log)
    records = collect_runs(experiment_dir(config) / "runs")["ACGAN_discriminator"]
    summary = summarize_predictions(records, names)
    write_summary(summary, experiment_dir(config) / "report", "ACGAN_discriminator",
                  "ACGAN discriminator as the classifier (Table 5, last row)")
    return summary


def _acgan_discriminator_predictions(config, acgan_run: Path, fold, test, names, log) -> None:
    """Table 5, last row: the ACGAN discriminator's class head as the classifier."""
    import keras

    run_dir = experiment_dir(config) / "runs" / "ACGAN_discriminator" / f"fold{fold}" / "seed0"
    if is_done(run_dir):
        return
    discriminator = keras.saving.load_model(acgan_run / "discriminator.keras")
    images, labels, ids = test
    outputs = discriminator(images * 2.0 - 1.0, training=False)  # D reads [−1, 1] (§3.2)
    class_probabilities = outputs["class"] if isinstance(outputs, dict) else outputs[1]
    probabilities = np.asarray(keras.ops.convert_to_numpy(class_probabilities))
    predictions = probabilities.argmax(1)
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_dir / "predictions.npz", suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, probabilities=probabilities, y_true=labels, y_pred=predictions,
                     lesion_ids=np.asarray(ids, dtype=str))
    accuracy = float((predictions == labels).mean())
    log(f"fold {fold}: ACGAN discriminator as classifier: {100 * accuracy:.1f}%")
    write_json(run_dir / "done.json", {"fold": fold, "seed": 0, "group": "ACGAN_discriminator",
                                       "class_names": list(names), "test_accuracy": accuracy,
                                       "generator_run": str(acgan_run),
                                       "dataset": str(config.data.dataset)})


def _quality(config, base, fold, names, real_images, real_labels, synth, log) -> dict:
    """Fréchet/kernel distances in the fold's CNN-AUG feature space, NN distances.

    The reference set is the fold's original training ROIs, not their
    augmentations: rotated copies of one lesion sit close together and would
    make the memorisation check needlessly strict.
    """
    from keras_lesions.evaluate.quality import generator_quality_report

    seed = config.evaluate.seeds[0]
    baseline = experiment_dir(config) / "runs" / base / f"fold{fold}" / f"seed{seed}"
    classifier = load_run_model(baseline)
    real = {name: real_images[real_labels == c] for c, name in enumerate(names)}
    result = {}
    for kind, dataset in synth.items():
        images = roi_inputs(dataset)
        synthetic = {name: images[dataset.labels == c] for c, name in enumerate(names)}
        result[kind] = generator_quality_report(real, synthetic, classifier)
    log(f"fold {fold}: generator quality measured ({', '.join(synth)})")
    return result


def _write_synthetic_grid(real_images, real_labels, synth: LesionDataset, names, fold: int,
                          path: Path, per_row: int = 8) -> None:
    """Real training ROIs beside synthetic ones, a pair of rows per class."""
    from matplotlib.figure import Figure

    synth_images = roi_inputs(synth)
    fig = Figure(figsize=(1.1 * per_row, 2.3 * len(names)))
    axes = fig.subplots(2 * len(names), per_row, squeeze=False)
    rng = np.random.default_rng(0)
    for c, name in enumerate(names):
        for row, (images, label) in enumerate(((real_images[real_labels == c], "real"),
                                                (synth_images[synth.labels == c], "synthetic"))):
            chosen = rng.choice(len(images), size=min(per_row, len(images)), replace=False) \
                if len(images) else []
            for j, ax in enumerate(axes[2 * c + row]):
                ax.set_xticks([])
                ax.set_yticks([])
                if j < len(chosen):
                    ax.imshow(images[chosen[j], :, :, 0], cmap="gray", vmin=0, vmax=1)
                if j == 0:
                    ax.set_ylabel(f"{name}\n{label}", fontsize=8)
    fig.suptitle(f"real training ROIs (D_aug) and DCGAN lesions, fold {fold}", fontsize=10)
    save_figure(fig, path, dpi=100)


def _best_synthetic_size(config, base, names) -> int:
    grouped = collect_runs(experiment_dir(config) / "runs")
    best, best_accuracy = None, -1.0
    for per_class in config.synth.per_class_sizes:
        records = grouped.get(f"{base}+D_synth{per_class}x{len(names)}", [])
        if records:
            accuracy = summarize_predictions(records, names)["pooled"]["accuracy"]
            if accuracy > best_accuracy:
                best, best_accuracy = per_class, accuracy
    if best is None:
        raise KerasLesionsError("no finished CNN-AUG-GAN run to pick the best synthetic size from")
    return best


# --------------------------------------------------------------------------- report


def write_gan_report(config, dataset, base, classic, quality, best_size, *, has_extra) -> dict:
    """Fig. 8 (three curves), Tables 3, 5 and 7, quality, and an honest verdict."""
    out = experiment_dir(config) / "report"
    names = dataset.class_names
    n_classes = len(names)
    grouped = collect_runs(experiment_dir(config) / "runs")

    def summary(group):
        records = grouped.get(group)
        return summarize_predictions(records, names) if records else None

    baseline = summary(base)
    lines = {"synthetic (CNN-AUG-GAN, DCGAN)": "D_synth", "more real data": "real"}
    curves: dict[str, list[dict]] = {}
    for label, tag in lines.items():
        points = [{"added_per_class": 0, **_point(baseline)}]
        for per_class in config.synth.per_class_sizes:
            s = summary(f"{base}+{tag}{per_class}x{n_classes}")
            if s is not None:
                points.append({"added_per_class": per_class, **_point(s)})
        if len(points) > 1:
            curves[label] = points
    best_group = f"{base}+D_synth{best_size}x{n_classes}"
    best = summary(best_group)
    acgan_aug = summary(f"{base}+ACGAN_synth{best_size}x{n_classes}")
    acgan_disc = summary("ACGAN_discriminator")
    swap = summary(f"{base}+DiffAugSwap_synth{best_size}x{n_classes}")
    swap_policy = diff_augment_counterpart(config).gan.diff_augment or "off"
    main_policy = config.gan.diff_augment or "off"

    write_summary(best, out, "gan_table3_best_synthetic",
                  f"CNN-AUG-GAN at {best_group} (Table 3)")
    table5 = [("CNN-AUG (classic augmentation only)", baseline),
              (f"DCGAN synthetic augmentation (+{best_size}x{n_classes})", best),
              (f"ACGAN synthetic augmentation (+{best_size}x{n_classes})", acgan_aug),
              ("ACGAN discriminator as the classifier", acgan_disc)]
    if config.synth.compare_diff_augment:
        table5.append((f"DCGAN with DiffAugment {swap_policy} (+{best_size}x{n_classes})", swap))
    fold_gain = _fold_gains(baseline, best)
    verdict = _verdict(baseline, best, fold_gain)
    if config.synth.compare_diff_augment and swap is not None:
        verdict += " " + _diff_augment_verdict(best, swap, main_policy, swap_policy, quality)
    markdown = _markdown(config, base, names, curves, table5, baseline, best, quality, verdict,
                         has_extra)
    with atomic_path(out / "gan_report.md", suffix=".md") as tmp:
        tmp.write_text(markdown, encoding="utf-8")
    base_added = config.augment.group_sizes[int(base[len("D_aug"):]) - 1]
    _write_curves_png(classic, curves, out / "gan_curves.png", base_added, n_classes)
    result = {"base_group": base, "best_synthetic_per_class": best_size,
              "curves": curves, "verdict": verdict, "fold_gains": fold_gain,
              "table5": {name: (None if s is None else _point(s)) for name, s in table5},
              "quality": quality, "classic_optimal_group": classic["optimal_group"]}
    write_json(out / "gan_summary.json", result)
    result["baseline_summary"], result["best_summary"] = baseline, best
    result["classic"] = classic
    return result


def _point(summary: dict) -> dict:
    return {"accuracy": summary["pooled"]["accuracy"],
            "fold_mean": summary["accuracy"]["mean"], "fold_std": summary["accuracy"]["std"],
            "weighted_specificity": summary["pooled"]["weighted_specificity"]}


def _fold_gains(baseline: dict, best: dict) -> list[float]:
    """Accuracy of CNN-AUG-GAN minus CNN-AUG on each (fold, seed)."""
    base = {(r["fold"], r["seed"]): r["accuracy"] for r in baseline["per_fold"]}
    return [r["accuracy"] - base[(r["fold"], r["seed"])] for r in best["per_fold"]
            if (r["fold"], r["seed"]) in base]


def _verdict(baseline: dict, best: dict, gains: list[float]) -> str:
    stats = mean_std_ci(gains)
    delta = 100 * (best["pooled"]["accuracy"] - baseline["pooled"]["accuracy"])
    per_fold = ", ".join(f"{100 * g:+.1f}" for g in gains)
    improved = sum(g > 0 for g in gains)
    if delta > 0 and improved == len(gains):
        word = "helped"
    elif delta > 0:
        word = "helped on average but not on every fold"
    elif delta == 0:
        word = "made no difference"
    else:
        word = "did not help"
    return (f"Synthetic augmentation {word}: total accuracy {100 * baseline['pooled']['accuracy']:.1f}% "
            f"→ {100 * best['pooled']['accuracy']:.1f}% ({delta:+.1f} points; per fold {per_fold}; "
            f"{improved} of {len(gains)} folds improved; mean gain {100 * stats['mean']:+.1f} "
            f"± {100 * stats['std']:.1f}). Note the best synthetic size is picked on the test "
            "folds, as in the paper, which flatters it.")


def _diff_augment_verdict(best, swap, main_policy, swap_policy, quality) -> str:
    with_policy, without = (swap, best) if main_policy == "off" else (best, swap)
    delta = 100 * (with_policy["pooled"]["accuracy"] - without["pooled"]["accuracy"])
    kid = {}
    for kind in ("dcgan", "dcgan_diffaug_swap"):
        values = [q["kid_mean"] for by_kind in quality.values() if kind in by_kind
                  for q in by_kind[kind]["per_class"].values()]
        kid[kind] = float(np.mean(values)) if values else float("nan")
    kid_with = kid["dcgan_diffaug_swap"] if main_policy == "off" else kid["dcgan"]
    kid_without = kid["dcgan"] if main_policy == "off" else kid["dcgan_diffaug_swap"]
    word = "helped" if delta > 0 else ("made no difference" if delta == 0 else "did not help")
    policy = swap_policy if main_policy == "off" else main_policy
    return (f"DiffAugment ({policy}) {word} the classifier: {delta:+.1f} points at the same "
            f"synthetic size; mean KID ×1000 {1000 * kid_without:.2f} without, "
            f"{1000 * kid_with:.2f} with (lower is closer to the real lesions).")


def _markdown(config, base, names, curves, table5, baseline, best, quality, verdict,
              has_extra) -> str:
    lines = [f"# CNN-AUG-GAN on {config.data.dataset} ({config.name})", "", f"**{verdict}**", "",
             f"Base group {base}; GANs: {config.gan.epochs} epochs, width {config.gan.width}, "
             f"DiffAugment {config.gan.diff_augment or 'off'}; classifier "
             f"{config.train.epochs} epochs.", ""]
    lines += ["## Accuracy vs added samples (Fig. 8)", "",
              "| line | added per class | accuracy | per fold mean ± std |", "|---|---|---|---|"]
    for label, points in curves.items():
        for p in points:
            lines.append(f"| {label} | {p['added_per_class']} | {100 * p['accuracy']:.1f}% | "
                         f"{100 * p['fold_mean']:.1f} ± {100 * p['fold_std']:.1f} |")
    if not has_extra:
        lines += ["", "No extra real pool (user dataset): the 'more real data' line is absent."]
    lines += ["", "## Table 5: synthesis methods", "",
              "| method | accuracy | weighted specificity | per fold mean ± std |",
              "|---|---|---|---|"]
    for name, s in table5:
        if s is None:
            lines.append(f"| {name} | not run | | |")
        else:
            lines.append(f"| {name} | {100 * s['pooled']['accuracy']:.1f}% | "
                         f"{100 * s['pooled']['weighted_specificity']:.1f}% | "
                         f"{100 * s['accuracy']['mean']:.1f} ± {100 * s['accuracy']['std']:.1f} |")
    lines += ["", "## Table 7: per-class sensitivity and specificity", "",
              "| class | CNN-AUG sensitivity | CNN-AUG specificity | CNN-AUG-GAN sensitivity | "
              "CNN-AUG-GAN specificity |", "|---|---|---|---|---|"]
    for name in names:
        a, b = baseline["pooled"]["per_class"][name], best["pooled"]["per_class"][name]
        lines.append(f"| {name} | {100 * a['sensitivity']:.1f}% | {100 * a['specificity']:.1f}% | "
                     f"{100 * b['sensitivity']:.1f}% | {100 * b['specificity']:.1f}% |")
    lines.append(f"| weighted average | {100 * baseline['pooled']['weighted_sensitivity']:.1f}% | "
                 f"{100 * baseline['pooled']['weighted_specificity']:.1f}% | "
                 f"{100 * best['pooled']['weighted_sensitivity']:.1f}% | "
                 f"{100 * best['pooled']['weighted_specificity']:.1f}% |")
    lines += ["", "Table 3 (confusion matrix at the best synthetic point): "
              "gan_table3_best_synthetic.md", "", "## Generator quality", ""]
    note = None
    lines += ["| fold | GAN | class | FID | KID (×1000) | median distance to nearest real | share closer than real pairs |",
              "|---|---|---|---|---|---|---|"]
    for fold, by_kind in sorted(quality.items()):
        for kind, report in by_kind.items():
            note = report.get("note", note)
            for name in names:
                q = report["per_class"].get(name) if "per_class" in report else report.get(name)
                if not q:
                    continue
                nn = q["nearest_real"]
                lines.append(
                    f"| {fold} | {kind} | {name} | {q['fid']:.2f} | "
                    f"{1000 * q['kid_mean']:.2f} ± {1000 * q['kid_std']:.2f} | "
                    f"{nn['median']:.3f} | {100 * nn['fraction_below_real_median']:.0f}% |")
    if note:
        lines += ["", f"Features: {note}"]
    return "\n".join(lines) + "\n"


def _write_curves_png(classic: dict, curves: dict, path: Path, base_added: int,
                      n_classes: int) -> None:
    """Fig. 8: accuracy vs training samples added per fold, three lines."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    red = classic["curve"]
    ax.errorbar([p["added_samples"] for p in red], [100 * p["fold_mean"] for p in red],
                yerr=[100 * p["fold_std"] for p in red], marker="o", capsize=3,
                color="tab:red", label="classic augmentation (CNN-AUG)")
    colors = {"synthetic (CNN-AUG-GAN, DCGAN)": "tab:blue", "more real data": "tab:green"}
    for label, points in curves.items():
        x = [base_added + p["added_per_class"] * n_classes for p in points]
        ax.errorbar(x, [100 * p["fold_mean"] for p in points],
                    yerr=[100 * p["fold_std"] for p in points], marker="s", capsize=3,
                    color=colors.get(label), label=f"D_aug optimal + {label}")
    ax.set_xlabel("training samples added per fold")
    ax.set_ylabel("total accuracy (%), mean ± std over folds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)
