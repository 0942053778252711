"""The cross-validation loop and the classic-augmentation curve (CNN-AUG).

Frid-Adar et al. 2018 §4.1–4.2.1: 3-fold cross-validation on patient-level
folds, training on two folds and testing on the third; the classifier is
trained on each nested data group D_aug^1 ⊂ … ⊂ D_aug^9 and the accuracy
curve (Fig. 8, red line) picks D_aug^optimal, the smallest group at
saturation. Every fitted thing (augmentations, the input mean, the network)
comes from the training folds only; the test fold is only ever predicted.

Layout of an experiment folder ``OUTPUT_DIR/NAME``::

    config.yaml                     the resolved config
    dataset.h5                      the dataset (phantoms are generated here)
    augment/fold<k>.h5              augmentation groups built from the
                                    training folds of test fold k
    runs/D_aug<i>/fold<k>/seed<s>/  one classifier run (see train.classifier)
    report/                         curve, tables, pictures, optimal group
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from keras_lesions.config import ExperimentConfig, save_config
from keras_lesions.data.dataset import (
    LesionDataset, atomic_path, read_dataset, save_figure, write_dataset)
from keras_lesions.data.folds import train_test_indices
from keras_lesions.data.pipeline import one_hot, roi_inputs
from keras_lesions.errors import DatasetError, KerasLesionsError
from keras_lesions.evaluate.report import summarize_predictions, text_table, write_summary
from keras_lesions.train.classifier import is_done, train_classifier, write_json

PHANTOM_PREFIX = "phantoms:"


def experiment_dir(config: ExperimentConfig) -> Path:
    return Path(config.output_dir) / config.name


def prepare_dataset(config: ExperimentConfig, log: Callable[[str], None] = print) -> Path:
    """The experiment's dataset with folds: the user's file, or phantoms made once.

    Raises:
        DatasetError: the dataset has no fold assignment, or the config asks
            for folds it does not have.
    """
    spec = config.data.dataset
    if spec.startswith(PHANTOM_PREFIX):
        from keras_lesions.data.builtin import make_phantom_dataset

        path = experiment_dir(config) / "dataset.h5"
        if not path.exists():
            preset = spec[len(PHANTOM_PREFIX):]
            log(f"generating the {preset} phantom dataset (seed {config.data.phantom_seed}) "
                f"into {path}")
            dataset = make_phantom_dataset(
                preset, config.data.phantom_seed, config.data.phantom_difficulty,
                fold_seed=config.data.fold_seed,
                created_by=f"keras_lesions experiment {config.name}")
            write_dataset(dataset, path)
    else:
        path = Path(spec)
    header = read_dataset(path, images=False)
    if header.folds is None:
        raise DatasetError("has no fold assignment: run `kl data folds` on it first", path)
    bad = [f for f in config.evaluate.folds if f >= header.fold_k]
    if bad:
        raise DatasetError(f"config asks for fold {bad[0]} but the dataset has folds "
                           f"0..{header.fold_k - 1}", path)
    return path


# Settings that may change between calls on one experiment folder without
# making earlier results stale: which folds and seeds to run, and how the
# optimum is read off the curve. Everything else is fingerprinted.
_FREE_SETTINGS = ("evaluate", "output_dir")


# Sections each kind of experiment does not read: left out of its fingerprint,
# so changing them never makes its results stale (and folders made before a
# section existed still match).
_UNUSED_SECTIONS = {
    "classic-curve": ("disentangle", "mixture"),
    "gan-curve": ("disentangle", "mixture"),
    "mixture": ("augment", "classifier", "train", "gan", "synth"),
}


def _fingerprint(config: ExperimentConfig, dataset: LesionDataset) -> dict:
    skip = _FREE_SETTINGS + _UNUSED_SECTIONS.get(config.kind, ())
    settings = {k: v for k, v in config.to_dict().items() if k not in skip}
    folds = hashlib.sha1(np.asarray(dataset.folds, np.int16).tobytes()).hexdigest()
    return {"config": settings,
            "dataset": {"created_at": dataset.created_at, "n_lesions": len(dataset),
                        "class_names": list(dataset.class_names), "folds_sha1": folds}}


def _first_difference(old, new, prefix="") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if old == new else f"{prefix.rstrip('.')} was {old!r}, now {new!r}"


def open_experiment(config: ExperimentConfig, log: Callable[[str], None] = print
                    ) -> tuple[Path, LesionDataset]:
    """Prepare an experiment folder and refuse to mix results of other settings.

    The first call records a fingerprint of the config (all but the evaluate
    section) and of the dataset (its creation stamp and fold assignment) in
    ``experiment.json``. Later calls on the same folder must match it, so
    cached augmentation groups and finished runs are only ever reused for the
    settings that made them.

    Returns:
        (dataset path, the dataset read with images).

    Raises:
        ConfigError: the folder holds an experiment made with other settings.
    """
    from keras_lesions.config import ConfigError

    out = experiment_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    dataset_path = prepare_dataset(config, log)
    dataset = read_dataset(dataset_path)
    fingerprint = _fingerprint(config, dataset)
    record = out / "experiment.json"
    if record.is_file():
        try:
            previous = json.loads(record.read_text())
        except json.JSONDecodeError:
            raise ConfigError("is damaged: delete it to start the experiment afresh",
                              record) from None
        difference = _first_difference(previous, fingerprint)
        if difference:
            raise ConfigError(f"holds results made with other settings ({difference}): use "
                              "another name or output_dir, or delete the folder", out)
    else:
        write_json(record, fingerprint)
    save_config(config, out / "config.yaml")
    return dataset_path, dataset


def group_name(index: int) -> str:
    """D_aug^i of the paper, 1-based: D_aug1 holds only the original ROIs."""
    return f"D_aug{index + 1}"


Progress = Callable[[str, int, int], None]


def run_classic_curve(
    config: ExperimentConfig,
    *,
    log: Callable[[str], None] = print,
    progress: Progress | None = None,
    verbose: int | str = 0,
) -> dict:
    """Train and test the classifier on every group, fold and seed; resume-safe.

    Finished runs (``done.json``) are read back, never trained again; an
    interrupted run resumes from its last epoch checkpoint.

    Args:
        config: the experiment.
        log: receives one line per step.
        progress: optional ``progress(description, done, total)`` for bars
            (augmentation images rendered, training epochs).
        verbose: Keras ``fit`` verbosity.

    Returns:
        The curve summary (also written to ``report/``): per group the
        cross-validated metrics, and the chosen D_aug^optimal.
    """
    dataset_path, dataset = open_experiment(config, log)
    n_runs = len(config.evaluate.folds) * len(config.augment.group_sizes) * len(config.evaluate.seeds)
    run_number = 0
    for fold in config.evaluate.folds:
        for group_index in range(len(config.augment.group_sizes)):
            for seed in config.evaluate.seeds:
                run_number += 1
                run_dir = default_run_dir(config, fold, group_index, seed)
                if is_done(run_dir):
                    continue
                log(f"[{run_number}/{n_runs}] {group_name(group_index)} "
                    f"(+{config.augment.group_sizes[group_index]} augmented), fold {fold}, "
                    f"seed {seed}")
                run_fold(config, dataset, dataset_path, fold, group_index, seed, run_dir,
                         log=log, progress=progress, verbose=verbose)
    return write_curve_report(config, dataset)


def run_group_name(group_index: int, extra_datasets=()) -> str:
    """D_aug<i>, plus ``+<name>`` for each extra training set, so runs with
    extra data never pass for plain CNN-AUG runs."""
    return group_name(group_index) + "".join(f"+{Path(p).stem}" for p in extra_datasets)


def default_run_dir(config: ExperimentConfig, fold: int, group_index: int, seed: int,
                    extra_datasets=()) -> Path:
    return (experiment_dir(config) / "runs" / run_group_name(group_index, extra_datasets)
            / f"fold{fold}" / f"seed{seed}")


def augmentation_groups_path(config: ExperimentConfig, dataset: LesionDataset, fold: int,
                             log: Callable[[str], None] = print,
                             progress: Progress | None = None) -> Path:
    """The fold's augmentation-group file, built once from its training folds."""
    from keras_lesions.augment import build_augmentation_groups

    aug = config.augment
    path = experiment_dir(config) / "augment" / f"fold{fold}.h5"
    if not path.exists():
        train_idx, _ = train_test_indices(dataset.folds, fold)
        log(f"fold {fold}: building augmentation groups from {len(train_idx)} training lesions "
            f"-> {path}")
        build_augmentation_groups(
            dataset, test_fold=fold, path=path, group_sizes=aug.group_sizes,
            n_rot=aug.n_rot, n_flip=aug.n_flip, n_trans=aug.n_trans, n_scale=aug.n_scale,
            seed=aug.seed + fold, size=config.classifier.input_size, log=log,
            progress=None if progress is None else
            (lambda done, total: progress(f"augmenting fold {fold}", done, total)))
    return path


def extra_training_set(path: str | os.PathLike, dataset: LesionDataset, test_idx: np.ndarray,
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
    extra = read_dataset(path)
    made_for = extra.extra.get("fold")
    test_fold = int(dataset.folds[test_idx[0]]) if len(test_idx) else None
    if made_for is not None and test_fold is not None and int(made_for) != test_fold:
        raise DatasetError(f"was synthesized by generators of fold {made_for}, which learned "
                           f"from fold {test_fold}'s lesions: it may only augment fold "
                           f"{made_for}", path)
    unknown = [c for c in extra.class_names if c not in dataset.class_names]
    if unknown:
        raise DatasetError(f"has class {unknown[0]!r}, which the experiment's dataset "
                           f"({', '.join(dataset.class_names)}) lacks", path)
    test_patients = set(dataset.patient_ids[test_idx].tolist())
    leaked = sorted(test_patients & set(extra.patient_ids.tolist()))
    if leaked:
        raise DatasetError(f"holds lesions of test-fold patient {leaked[0]!r}: training on them "
                           "would leak the test set", path)
    remap = np.array([dataset.class_names.index(c) for c in extra.class_names])
    targets = np.zeros((len(extra), len(dataset.class_names)), np.float32)
    targets[:, remap] = extra.targets()
    return roi_inputs(extra, None, size), targets


def run_fold(config: ExperimentConfig, dataset: LesionDataset, dataset_path: Path, fold: int,
             group_index: int, seed: int, run_dir: str | os.PathLike, *,
             extra_datasets: tuple = (), resume: bool = True,
             log: Callable[[str], None] = print, progress: Progress | None = None,
             verbose: int | str = 0) -> dict:
    """Train on D_aug^i of the training folds (plus extra sets), test on the fold."""
    from keras_lesions.augment import read_augmentation_group

    if not 0 <= group_index < len(config.augment.group_sizes):
        raise KerasLesionsError(
            f"there is no {group_name(group_index)}: the config defines "
            f"{group_name(0)}..{group_name(len(config.augment.group_sizes) - 1)}")
    _, test_idx = train_test_indices(dataset.folds, fold)
    size = config.classifier.input_size
    groups_path = augmentation_groups_path(config, dataset, fold, log, progress)
    images, labels, _meta = read_augmentation_group(groups_path, group_index)
    targets = one_hot(labels, len(dataset.class_names))
    for extra_path in extra_datasets:
        extra_images, extra_targets = extra_training_set(extra_path, dataset, test_idx, size)
        images = np.concatenate([images, extra_images])
        targets = np.concatenate([targets, extra_targets])
    log(f"training on {len(images)} images, testing on {len(test_idx)} lesions of fold {fold}")
    run_info = {"fold": fold, "group": run_group_name(group_index, extra_datasets),
                "added_samples": config.augment.group_sizes[group_index],
                "extra_datasets": [str(p) for p in extra_datasets],
                "class_names": dataset.class_names, "dataset": str(dataset_path)}
    return train_and_test(config, run_dir, images, targets,
                          roi_inputs(dataset, test_idx, size), dataset.labels[test_idx],
                          dataset.lesion_ids[test_idx], seed=seed, run_info=run_info,
                          resume=resume, verbose=verbose, progress=progress)


def train_and_test(config, run_dir, images, targets, test_images, test_labels, test_ids, *,
                   seed, run_info, resume=True, verbose=0, progress=None) -> dict:
    """One run: train (resuming if interrupted), predict the test fold, mark done."""
    on_epoch_end = None
    if progress is not None:
        label = f"training {run_info.get('group', '')} fold {run_info.get('fold', '')}"
        epochs = config.train.epochs
        on_epoch_end = lambda epoch, logs: progress(label, epoch + 1, epochs)  # noqa: E731
    model = train_classifier(images, targets, config, run_dir, seed=seed, resume=resume,
                             run_info=run_info, verbose=verbose, on_epoch_end=on_epoch_end)
    # Called directly rather than through model.predict: predict builds a new
    # tf.function per model, which TF warns about as "retracing" across runs.
    probabilities = np.concatenate([
        keras_ops_numpy(model(test_images[i:i + 256], training=False))
        for i in range(0, len(test_images), 256)])
    predictions = probabilities.argmax(1)
    with atomic_path(Path(run_dir) / "predictions.npz", suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, probabilities=probabilities, y_true=np.asarray(test_labels),
                     y_pred=predictions, lesion_ids=np.asarray(test_ids, dtype=str))
    accuracy = float((predictions == np.asarray(test_labels)).mean())
    write_json(Path(run_dir) / "done.json", {**run_info, "seed": seed, "test_accuracy": accuracy,
                                             "n_test": int(len(test_labels))})
    return {"accuracy": accuracy, "run_dir": str(run_dir)}


def keras_ops_numpy(tensor) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(tensor))


def collect_runs(runs_root: str | os.PathLike) -> dict[str, list[dict]]:
    """Finished runs under a folder, grouped by their data group.

    Returns:
        {group name: [{"fold", "seed", "y_true", "y_pred", "run_dir", ...}, ...]}

    Raises:
        KerasLesionsError: no finished run below ``runs_root``, a damaged run
            record, or runs of one group that cannot be pooled (other datasets
            or classes, or the same fold and seed twice: two experiments).
    """
    runs_root = Path(runs_root)
    grouped: dict[str, list[dict]] = {}
    for done in sorted(runs_root.rglob("done.json")):
        try:
            info = json.loads(done.read_text())
            with np.load(done.parent / "predictions.npz", allow_pickle=False) as data:
                record = {"fold": int(info["fold"]), "seed": int(info["seed"]),
                          "y_true": data["y_true"], "y_pred": data["y_pred"],
                          "run_dir": str(done.parent), "class_names": info["class_names"],
                          "dataset": info.get("dataset"),
                          "added_samples": info.get("added_samples")}
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise KerasLesionsError(f"damaged run record ({type(exc).__name__}); delete the run "
                                    "folder to train it again", done.parent) from None
        group = grouped.setdefault(info.get("group", "run"), [])
        for other in group:
            if (other["dataset"], other["class_names"]) != (record["dataset"],
                                                          record["class_names"]):
                raise KerasLesionsError(
                    f"runs {other['run_dir']} and {record['run_dir']} come from different "
                    "datasets or classes: evaluate one experiment's runs folder", runs_root)
            if (other["fold"], other["seed"]) == (record["fold"], record["seed"]):
                raise KerasLesionsError(
                    f"runs {other['run_dir']} and {record['run_dir']} are the same fold and "
                    "seed: evaluate one experiment's runs folder", runs_root)
        group.append(record)
    if not grouped:
        raise KerasLesionsError("holds no finished classifier runs (no done.json below it)",
                                runs_root)
    return grouped


def write_curve_report(config: ExperimentConfig, dataset: LesionDataset) -> dict:
    """Accuracy vs added samples (CSV + PNG), tables per group, D_aug^optimal."""
    out = experiment_dir(config)
    report_dir = out / "report"
    grouped = collect_runs(out / "runs")
    names = dataset.class_names
    curve = []
    for group_index, added in enumerate(config.augment.group_sizes):
        records = grouped.get(group_name(group_index), [])
        if not records:
            continue
        summary = summarize_predictions(records, names)
        write_summary(summary, report_dir, group_name(group_index),
                      f"CNN-AUG, {group_name(group_index)} (+{added} augmented samples per fold)")
        curve.append({"group": group_name(group_index), "added_samples": added,
                      "accuracy": summary["pooled"]["accuracy"],
                      "fold_mean": summary["accuracy"]["mean"],
                      "fold_std": summary["accuracy"]["std"],
                      "weighted_specificity": summary["pooled"]["weighted_specificity"],
                      "summary": summary})
    best = max(c["accuracy"] for c in curve)
    tolerance = config.evaluate.saturation_tolerance
    optimal = next(c for c in curve if c["accuracy"] >= best - tolerance)
    with atomic_path(report_dir / "classic_curve.csv", suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["group", "added_samples", "accuracy", "fold_mean", "fold_std",
                             "weighted_specificity"])
            for c in curve:
                writer.writerow([c["group"], c["added_samples"], f"{c['accuracy']:.4f}",
                                 f"{c['fold_mean']:.4f}", f"{c['fold_std']:.4f}",
                                 f"{c['weighted_specificity']:.4f}"])
    _write_curve_png(curve, optimal, report_dir / "classic_curve.png")
    result = {"optimal_group": optimal["group"], "optimal_added_samples": optimal["added_samples"],
              "optimal_accuracy": optimal["accuracy"], "best_accuracy": best,
              "saturation_tolerance": tolerance,
              "curve": [{k: v for k, v in c.items() if k != "summary"} for c in curve]}
    write_json(report_dir / "optimal.json", result)
    result["optimal_summary"] = optimal["summary"]
    return result


def _write_curve_png(curve: list[dict], optimal: dict, path: Path) -> None:
    # A bare Figure (no pyplot): no global backend switch, nothing left open.
    from matplotlib.figure import Figure

    x = [c["added_samples"] for c in curve]
    y = [100 * c["fold_mean"] for c in curve]
    err = [100 * c["fold_std"] for c in curve]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.errorbar(x, y, yerr=err, color="tab:red", marker="o", capsize=3,
                label="classic augmentation (CNN-AUG), mean ± std over folds")
    ax.axvline(optimal["added_samples"], color="gray", linestyle=":",
               label=f"D_aug optimal = {optimal['group']}")
    ax.set_xlabel("augmented samples added per fold")
    ax.set_ylabel("total accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)


def evaluate_runs(runs_root: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict:
    """Cross-validated metrics of every group of finished runs under a folder.

    Writes ``<group>.json/.md/-confusion.png`` into ``out_dir`` (default:
    ``runs_root/report``) and returns {group: summary}.
    """
    grouped = collect_runs(runs_root)
    out_dir = Path(out_dir) if out_dir is not None else Path(runs_root) / "report"
    results = {}
    for group, records in grouped.items():
        names = records[0]["class_names"]
        summary = summarize_predictions(records, names)
        write_summary(summary, out_dir, group, f"{group}")
        results[group] = summary
    return results


__all__ = ["run_classic_curve", "evaluate_runs", "collect_runs", "prepare_dataset",
           "train_and_test", "text_table"]
