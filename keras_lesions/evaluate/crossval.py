"""Cross-validated results from finished runs, and the classic-augmentation curve.

Frid-Adar et al. 2018 §4.1–4.2.1: 3-fold cross-validation on patient-level
folds, training on two folds and testing on the third; the classifier is
trained on each nested data group D_aug^1 ⊂ … ⊂ D_aug^9 and the accuracy
curve (Fig. 8, red line) picks D_aug^optimal, the smallest group at
saturation. Every fitted thing (augmentations, the input mean, the network)
comes from the training folds only.

This module reads finished runs (``done.json`` + ``predictions.npz``) and
writes reports; it trains nothing.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from keras_lesions.errors import KerasLesionsError
from keras_lesions.evaluate.discrimination import DEFAULT_TARGET_SENSITIVITY
from keras_lesions.evaluate.report import summarize_predictions, write_summary
from keras_lesions.io import save_figure, write_json, write_text
from keras_lesions.runs.folder import read_done
from keras_lesions.runs.predictions import PREDICTIONS, VALIDATION_PREDICTIONS, read_predictions


def group_name(index: int) -> str:
    """D_aug^i of the paper, 1-based: D_aug1 holds only the original ROIs."""
    return f"D_aug{index + 1}"


def run_record(run_dir: str | os.PathLike, predictions_file: str = PREDICTIONS) -> dict:
    """A finished classifier run's test-fold predictions (or those of
    ``predictions_file``, e.g. its validation patients) and facts.

    Returns:
        ``{"repeat", "fold", "seed", "group", "y_true", "y_pred",
        "probabilities", "lesion_ids", "run_dir", "class_names", "dataset",
        "added_samples", "n_train", "sgd_steps", "validation",
        "train_class_counts", "class_balance"}``; "validation"
        holds the run's validation predictions (what a threshold may be
        chosen on) when the record is of its test predictions and the run
        has them, else None.

    Raises:
        RunError: an unfinished run, or a damaged record.
        KerasLesionsError: a done.json without fold or seed.
    """
    done = read_done(run_dir)
    predictions = read_predictions(run_dir, predictions_file)
    validation = None
    if predictions_file == PREDICTIONS and (Path(run_dir) / VALIDATION_PREDICTIONS).is_file():
        validation = read_predictions(run_dir, VALIDATION_PREDICTIONS)
    names = done.get("class_names")
    if isinstance(names, list) and np.ndim(predictions["probabilities"]) == 2 and \
            predictions["probabilities"].shape[1] != len(names):
        raise KerasLesionsError(f"{predictions_file} has {predictions['probabilities'].shape[1]} "
                                f"probability columns for the {len(names)} classes done.json "
                                "lists; delete the run folder to train it again", run_dir)
    try:
        fold, seed = int(done["fold"]), int(done["seed"])
    except (KeyError, TypeError, ValueError):
        raise KerasLesionsError("done.json names no fold and seed; delete the run folder to "
                                "train it again", run_dir) from None
    return {"repeat": int(done.get("repeat", 0)), "fold": fold, "seed": seed,
            "group": done.get("group", "run"),
            "y_true": predictions["y_true"], "y_pred": predictions["y_pred"],
            "probabilities": predictions["probabilities"],
            "lesion_ids": predictions["lesion_ids"], "run_dir": str(run_dir),
            "class_names": done.get("class_names"), "dataset": done.get("dataset"),
            "added_samples": done.get("added_samples"), "n_train": done.get("n_train"),
            "sgd_steps": done.get("sgd_steps"), "validation": validation,
            **_class_prior(run_dir, done)}


def _class_prior(run_dir, done: dict) -> dict:
    """The class counts a run trained on and its class-balance rule, from
    done.json or, for runs whose done.json does not repeat them (the
    mixture's classifiers), from run.json."""
    from keras_lesions.runs.folder import read_run_info

    source = done
    if "train_class_counts" not in done:
        try:
            source = read_run_info(run_dir)
        except KerasLesionsError:
            source = {}
    return {"train_class_counts": source.get("train_class_counts"),
            "class_balance": source.get("class_balance", "none")}


def collect_runs(runs_root: str | os.PathLike) -> dict[str, list[dict]]:
    """Finished classifier runs under a folder, grouped by their recorded group.

    Every finished run with test predictions counts (GAN and disentanglement
    runs, which have none, are passed over).

    Returns:
        {group name: [run_record(...), ...]}

    Raises:
        KerasLesionsError: no finished run below ``runs_root``, a damaged run
            record, or runs of one group that cannot be pooled (other datasets
            or classes, or the same fold and seed twice: two experiments).
    """
    runs_root = Path(runs_root)
    grouped: dict[str, list[dict]] = {}
    for done in sorted(runs_root.rglob("done.json")):
        if not (done.parent / PREDICTIONS).exists():
            continue
        record = run_record(done.parent)
        group = grouped.setdefault(record["group"], [])
        for other in group:
            if (other["dataset"], other["class_names"]) != (record["dataset"],
                                                          record["class_names"]):
                raise KerasLesionsError(
                    f"runs {other['run_dir']} and {record['run_dir']} come from different "
                    "datasets or classes: evaluate one experiment's runs folder", runs_root)
            if (other["repeat"], other["fold"], other["seed"]) == (
                    record["repeat"], record["fold"], record["seed"]):
                raise KerasLesionsError(
                    f"runs {other['run_dir']} and {record['run_dir']} are the same repeat, fold "
                    "and seed: evaluate one experiment's runs folder", runs_root)
        group.append(record)
    if not grouped:
        raise KerasLesionsError("holds no finished classifier runs (no done.json with "
                                "predictions below it)", runs_root)
    return grouped


def evaluate_runs(runs_root: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                  positive_class: str | None = None,
                  target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY) -> dict:
    """Cross-validated metrics of every group of finished runs under a folder.

    Writes ``<group>.json/.md/-confusion.png/-reliability.png`` into
    ``out_dir`` (default: ``runs_root/report``) and returns {group: summary}.
    The AUC's and operating points' intervals resample the patients of the
    dataset the runs name, when it can be read.
    """
    grouped = collect_runs(runs_root)
    if positive_class is not None:
        for records in grouped.values():
            names = records[0]["class_names"] or []
            if len(names) != 2 or positive_class not in names:
                raise KerasLesionsError(
                    f"--positive-class {positive_class!r}: the runs' classes are "
                    f"{', '.join(names)}; operating points need one of two classes", runs_root)
    out_dir = Path(out_dir) if out_dir is not None else Path(runs_root) / "report"
    results = {}
    for group, records in grouped.items():
        summary = summarize_predictions(records, records[0]["class_names"],
                                        patients_of_runs(records), positive_class=positive_class,
                                        target_sensitivity=target_sensitivity)
        write_summary(summary, out_dir, group, group)
        results[group] = summary
    return results


def patients_of_runs(records: Sequence[dict]) -> dict[str, str] | None:
    """Lesion id -> patient id from the dataset file the runs name, or None
    when it cannot be read (the intervals then resample lesions, and say so)."""
    from keras_lesions.data import read_dataset

    path = records[0].get("dataset") if records else None
    if not path or not Path(path).is_file():
        return None
    try:
        dataset = read_dataset(path, images=False)
    except KerasLesionsError:
        return None
    patient_of = dict(zip(dataset.lesion_ids.tolist(), dataset.patient_ids.tolist()))
    wanted = {str(i) for r in records for i in np.asarray(r["lesion_ids"]).tolist()}
    return patient_of if wanted <= set(patient_of) else None


def curve_point(group: str, added: int, summary: dict, ci95=(float("nan"), float("nan"))) -> dict:
    """One point of an accuracy curve, from a group's summary and the 95%
    interval of its accuracy."""
    balanced = summary.get("intervals", {}).get("balanced_accuracy",
                                                {"value": float("nan"),
                                                 "ci95": [float("nan"), float("nan")]})
    return {"group": group, "added_samples": added, "accuracy": summary["pooled"]["accuracy"],
            "ci95": [float(ci95[0]), float(ci95[1])],
            "balanced_accuracy": balanced["value"], "balanced_ci95": balanced["ci95"],
            "fold_mean": summary["accuracy"]["mean"], "fold_std": summary["accuracy"]["std"],
            "weighted_specificity": summary["pooled"]["weighted_specificity"]}


def saturation_point(curve: Sequence[dict], tolerance: float, key: str = "value") -> dict:
    """D_aug^optimal: the smallest group whose metric (``key``) is within
    ``tolerance`` of the best group's ("saturation", §4.2.1); a group whose
    metric is undefined (NaN) is never chosen.

    Raises:
        KerasLesionsError: no group has a defined metric.
    """
    best = best_point(curve, key)
    return next(c for c in curve if c[key] >= best[key] - tolerance)


def best_point(curve: Sequence[dict], key: str = "value") -> dict:
    """The point of highest ``key`` (the first of equals), NaN never.

    Raises:
        KerasLesionsError: every point's value is NaN, e.g. an AUC on
            validation patients that lack a class.
    """
    defined = [c for c in curve if np.isfinite(c[key])]
    if not defined:
        raise KerasLesionsError(
            f"the primary metric is undefined for every option ({key} is NaN): the "
            "validation patients lack a class (an AUC needs every class); use "
            "evaluate.primary_metric: balanced_accuracy or a larger validation_fraction")
    return max(defined, key=lambda c: c[key])


def write_curve_report(curve: Sequence[dict], summaries: dict[str, dict], choices: dict,
                       optimal_summary: dict, report_dir: str | os.PathLike, tolerance: float,
                       selected_on: str) -> dict:
    """Test accuracy vs added samples (CSV + PNG), a table per group, and the
    groups the cells chose.

    Args:
        curve: :func:`curve_point` per group, in group order (test predictions).
        summaries: group -> ``summarize_predictions`` summary.
        choices: (repeat, fold) -> that cell's D_aug optimal choice.
        optimal_summary: the summary of every cell's runs on its own choice.
        report_dir: where the files go.
        tolerance: how the choices set the saturation tolerance, in words.
        selected_on: "validation" or "test": what the choices read.

    Returns:
        The curve result: the choices and how often each group was chosen,
        the curve, and the chosen groups' summary.
    """
    report_dir = Path(report_dir)
    for point in curve:
        write_summary(summaries[point["group"]], report_dir, point["group"],
                      f"CNN-AUG, {point['group']} (+{point['added_samples']} augmented samples "
                      "per fold)")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["group", "added_samples", "accuracy", "ci95_low", "ci95_high", "fold_mean",
                     "fold_std", "weighted_specificity", "balanced_accuracy",
                     "balanced_ci95_low", "balanced_ci95_high"])
    for c in curve:
        writer.writerow([c["group"], c["added_samples"], f"{c['accuracy']:.4f}",
                         f"{c['ci95'][0]:.4f}", f"{c['ci95'][1]:.4f}", f"{c['fold_mean']:.4f}",
                         f"{c['fold_std']:.4f}", f"{c['weighted_specificity']:.4f}",
                         f"{c['balanced_accuracy']:.4f}", f"{c['balanced_ci95'][0]:.4f}",
                         f"{c['balanced_ci95'][1]:.4f}"])
    write_text(report_dir / "classic_curve.csv", buffer.getvalue())
    counts: dict[str, int] = {}
    for choice in choices.values():
        counts[choice["group"]] = counts.get(choice["group"], 0) + 1
    counts_text = ", ".join(f"{group} in {n} of {len(choices)} cells"
                            for group, n in sorted(counts.items()))
    _write_curve_png(curve, counts, report_dir / "classic_curve.png")
    result = {"selected_on": selected_on, "optimal_counts": counts_text,
              "choices": [{"repeat": r, "fold": k, "group": c["group"],
                           "metric": c.get("metric", "accuracy"),
                           "selection_value": c.get("value", c.get("accuracy")),
                           "saturation_tolerance": c.get("saturation_tolerance")}
                          for (r, k), c in sorted(choices.items())],
              "saturation_rule": tolerance, "curve": list(curve)}
    write_json(report_dir / "optimal.json", result)
    return {**result, "optimal_summary": optimal_summary}


def _write_curve_png(curve: Sequence[dict], chosen: dict[str, int], path: Path) -> None:
    # A bare Figure (no pyplot): no global backend switch, nothing left open.
    from matplotlib.figure import Figure

    x = [c["added_samples"] for c in curve]
    y = [100 * c["accuracy"] for c in curve]
    err = [[100 * (c["accuracy"] - c["ci95"][0]) for c in curve],
           [100 * (c["ci95"][1] - c["accuracy"]) for c in curve]]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.errorbar(x, y, yerr=err, color="tab:red", marker="o", capsize=3,
                label="classic augmentation (CNN-AUG), test accuracy, 95% CI")
    for c in curve:
        if c["group"] in chosen:
            ax.annotate(f"chosen ×{chosen[c['group']]}", (c["added_samples"], 100 * c["accuracy"]),
                        textcoords="offset points", xytext=(4, -12), fontsize=7, color="gray")
    ax.set_xlabel("augmented samples added per fold")
    ax.set_ylabel("total accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)
