"""Cross-validated results as JSON, Markdown tables and PNG pictures.

Layouts follow Frid-Adar et al. 2018: Table 2/3 (confusion matrix summed over
the test folds) and Table 7 (per-class sensitivity and specificity with their
support-weighted averages), plus per-fold accuracy with mean ± std and, with
repeated seeds, 95% confidence intervals.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from keras_lesions.evaluate.discrimination import (
    DEFAULT_TARGET_SENSITIVITY, discrimination_summary, write_reliability_png)
from keras_lesions.io import atomic_path, save_figure
from keras_lesions.evaluate.metrics import confusion_matrix, mean_std_ci, metrics_from_confusion


def summarize_predictions(records: Sequence[dict], class_names: Sequence[str],
                          patient_of: Mapping[str, str] | None = None, *,
                          positive_class: str | None = None,
                          target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY) -> dict:
    """Cross-validated metrics of one configuration from its test-fold predictions.

    Args:
        records: one per (repeat, fold, seed) run, each with "fold", "seed",
            optionally "repeat" (default 0), "y_true" (int [n]) and "y_pred"
            (int [n]); with "probabilities" and "lesion_ids" (as
            ``crossval.run_record`` reads them) also AUC and calibration.
        class_names: class order of the labels.
        patient_of: lesion id -> patient id, the unit the AUC's and the
            operating points' bootstrap resamples.
        positive_class, target_sensitivity: two classes: the positive class
            (default the second) and the sensitivity a threshold chosen on
            each run's validation patients aims at
            (``discrimination.discrimination_summary``).

    Returns:
        dict: "pooled" (metrics of the confusion matrix summed over every
        run), "confusion" (summed over folds, averaged over repeats and
        seeds, as counts per test set), "per_fold" (accuracy of every run),
        "accuracy" (mean, sample std (ddof = 1) and t interval over the
        runs), "accuracy_by_seed" (pooled accuracy of each whole
        cross-validation, one per (repeat, seed), with its spread),
        "intervals" (95% patient-bootstrap intervals of the pooled accuracy,
        balanced accuracy and every class's sensitivity and specificity:
        :func:`class_rate_intervals`), "training" (the class prior the runs
        trained on, when they recorded it: :func:`training_prior`).
    """
    k = len(class_names)
    total = np.zeros((k, k), np.int64)
    per_fold, by_run = [], {}
    for record in records:
        matrix = confusion_matrix(record["y_true"], record["y_pred"], k)
        total += matrix
        accuracy = float(np.trace(matrix) / max(matrix.sum(), 1))
        repeat = int(record.get("repeat", 0))
        per_fold.append({"repeat": repeat, "fold": int(record["fold"]),
                         "seed": int(record["seed"]), "accuracy": accuracy,
                         "n": int(matrix.sum())})
        key = (repeat, int(record["seed"]))
        by_run.setdefault(key, np.zeros((k, k), np.int64))
        by_run[key] += matrix
    run_accuracy = {f"repeat{r}/seed{s}": float(np.trace(m) / max(m.sum(), 1))
                    for (r, s), m in sorted(by_run.items())}
    summary = {
        "class_names": list(class_names),
        "pooled": metrics_from_confusion(total, class_names),
        "confusion": (total / max(len(by_run), 1)).tolist(),
        "per_fold": sorted(per_fold, key=lambda r: (r["repeat"], r["seed"], r["fold"])),
        "accuracy": mean_std_ci([r["accuracy"] for r in per_fold]),
        "accuracy_by_seed": {"values": run_accuracy,
                             **mean_std_ci(list(run_accuracy.values()))},
    }
    if records:
        summary["intervals"] = class_rate_intervals(records, class_names, patient_of)
    training = training_prior(records, class_names)
    if training:
        summary["training"] = training
    if records and all("probabilities" in r and "lesion_ids" in r for r in records):
        summary["discrimination"] = discrimination_summary(
            records, class_names, patient_of, positive_class=positive_class,
            target_sensitivity=target_sensitivity)
    return summary


def prediction_clusters(records: Sequence[dict],
                        patient_of: Mapping[str, str] | None) -> tuple[np.ndarray, str]:
    """Per pooled prediction, the unit a bootstrap resamples, and its name:
    the lesion's patient, else the lesion (when patients are not known),
    else the prediction itself."""
    if all("lesion_ids" in r for r in records):
        lesions = np.concatenate([np.asarray(r["lesion_ids"]).astype(str) for r in records])
        if patient_of is not None and all(i in patient_of for i in lesions.tolist()):
            return np.array([patient_of[i] for i in lesions.tolist()]), "patients"
        return lesions, "lesions"
    return np.arange(sum(len(r["y_true"]) for r in records)), "predictions"


def class_rate_intervals(records: Sequence[dict], class_names: Sequence[str],
                         patient_of: Mapping[str, str] | None = None, *,
                         n_boot: int = 2000, seed: int = 0) -> dict:
    """95% patient-bootstrap intervals of an arm's pooled accuracy, balanced
    accuracy and per-class sensitivity and specificity
    (``stats.cluster_bootstrap_class_rates``; a rate of 0 or 1 gets the
    Wilson interval of its lesions, ``stats.rate_interval``)."""
    from keras_lesions.evaluate.stats import (
        cluster_bootstrap_class_rates, distinct_lesions_per_class, percentile_interval,
        rate_interval)

    clusters, unit = prediction_clusters(records, patient_of)
    y_true = np.concatenate([np.asarray(r["y_true"]) for r in records])
    y_pred = np.concatenate([np.asarray(r["y_pred"]) for r in records])
    (rates,) = cluster_bootstrap_class_rates(y_true, [y_pred], clusters, len(class_names),
                                             n_boot=n_boot, seed=seed)
    resampled = rates["resampled"]
    lesions = (np.concatenate([np.asarray(r["lesion_ids"]) for r in records])
               if all("lesion_ids" in r for r in records) else np.arange(len(y_true)))
    positives, negatives = distinct_lesions_per_class(y_true, lesions, len(class_names))
    sens = [rate_interval(rates["sensitivity"][c], ci, positives[c])
            for c, ci in enumerate(percentile_interval(resampled["sensitivity"]))]
    spec = [rate_interval(rates["specificity"][c], ci, negatives[c])
            for c, ci in enumerate(percentile_interval(resampled["specificity"]))]
    return {"resampled": unit, "n_boot": int(len(resampled["accuracy"])),
            "accuracy": {"value": rates["accuracy"],
                         "ci95": percentile_interval(resampled["accuracy"])},
            "balanced_accuracy": {"value": rates["balanced_accuracy"],
                                  "ci95": percentile_interval(resampled["balanced_accuracy"])},
            "per_class": {name: {"sensitivity": {"value": float(rates["sensitivity"][c]),
                                                 "ci95": sens[c]},
                                 "specificity": {"value": float(rates["specificity"][c]),
                                                 "ci95": spec[c]}}
                          for c, name in enumerate(class_names)}}


def training_prior(records: Sequence[dict], class_names: Sequence[str]) -> dict | None:
    """The class prior an arm's runs trained on: lesions per class (mean over
    its runs, real, augmented and synthetic together), shares, and the
    ``train.class_balance`` rule; None when a run did not record it."""
    counts = [r.get("train_class_counts") for r in records]
    if not records or any(not isinstance(c, dict) for c in counts):
        return None
    mean = {name: float(np.mean([c.get(name, 0.0) for c in counts])) for name in class_names}
    total = sum(mean.values()) or 1.0
    rules = sorted({str(r.get("class_balance", "none")) for r in records})
    return {"class_balance": ", ".join(rules), "class_counts": mean,
            "class_shares": {name: value / total for name, value in mean.items()},
            "n_runs": len(records)}


def prior_text(training: dict, class_names: Sequence[str] | None = None) -> str:
    """"cyst 120 (14%), metastasis 480 (57%) …; class balance: weights", in
    ``class_names``' order (a summary read back from JSON has its keys sorted)."""
    names = list(class_names or training["class_counts"])
    parts = [f"{name} {count_text(round(training['class_counts'][name], 1))} "
             f"({100 * training['class_shares'][name]:.0f}%)" for name in names]
    return f"{', '.join(parts)}; class balance: {training['class_balance']}"


# train.class_balance in a sentence
BALANCE_WORDS = {"none": "the training sets' own class prior, as the papers trained",
                 "weights": "inverse-frequency class weights in the loss",
                 "sampling": "class-balanced batches"}


def prior_table(summaries: Mapping[str, dict]) -> list[str]:
    """Markdown: the class prior every arm trained on (lesions per class per
    run, real, augmented and synthetic together) and its class-balance rule;
    nothing when no arm recorded one."""
    rows = {arm: s["training"] for arm, s in summaries.items() if s and "training" in s}
    if not rows:
        return []
    names = next(s["class_names"] for s in summaries.values() if s and "training" in s)
    lines = ["| arm | " + " | ".join(names) + " | class balance |",
             "|---" * (len(names) + 2) + "|"]
    for arm, t in rows.items():
        lines.append(f"| {arm} | " + " | ".join(
            f"{count_text(round(t['class_counts'][n], 1))} ({100 * t['class_shares'][n]:.0f}%)"
            for n in names) + f" | {t['class_balance']} |")
    return lines


def count_text(value: float) -> str:
    """A confusion-matrix count: whole, or with one decimal where repeated
    cross-validations average it."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _pct(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}%"


def markdown_tables(summary: dict, title: str) -> str:
    """Table-2-style confusion matrix and Table-7-style sensitivity/specificity."""
    names = summary["class_names"]
    pooled = summary["pooled"]
    acc = summary["accuracy"]
    lines = [f"### {title}", ""]
    spread = f" ± {100 * acc['std']:.1f}" if acc["n"] > 1 else ""
    lines.append(f"Total accuracy {_pct(pooled['accuracy'])} over {pooled['n']} test predictions; "
                 f"per fold {100 * acc['mean']:.1f}%{spread} (mean ± sample std, ddof = 1, "
                 f"n = {acc['n']}).")
    seeds = summary["accuracy_by_seed"]
    if seeds["n"] > 1:
        lines.append(f"Over {seeds['n']} whole cross-validations (repeats × seeds): "
                     f"{100 * seeds['mean']:.1f}% ± {100 * seeds['std']:.1f} (sample std).")
    lines += ["", "Confusion matrix (rows: true class, columns: predicted), summed over test folds:",
              "", "| true \\ predicted | " + " | ".join(names) + " |",
              "|---" * (len(names) + 1) + "|"]
    for name, row in zip(names, summary["confusion"]):
        lines.append(f"| {name} | " + " | ".join(count_text(v) for v in row) + " |")
    lines += ["", *balance_lines(summary)]
    intervals = summary.get("intervals", {}).get("per_class", {})
    lines += ["", "| class | sensitivity | specificity | F1 | support |", "|---|---|---|---|---|"]
    for name in names:
        c = pooled["per_class"][name]
        ci = intervals.get(name)
        sens, spec = _pct(c["sensitivity"]), _pct(c["specificity"])
        if ci:
            sens += f" ({_interval(ci['sensitivity']['ci95'])})"
            spec += f" ({_interval(ci['specificity']['ci95'])})"
        lines.append(f"| {name} | {sens} | {spec} | {_f1(c.get('f1'))} | {c['support']} |")
    lines.append(f"| weighted average | {_pct(pooled['weighted_sensitivity'])} | "
                 f"{_pct(pooled['weighted_specificity'])} | | {pooled['n']} |")
    lines.append(f"| unweighted mean (balanced) | {_pct(pooled.get('balanced_accuracy'))} | | "
                 f"{_f1(pooled.get('macro_f1'))} (macro) | |")
    if "discrimination" in summary:
        lines += ["", *discrimination_lines(summary["discrimination"])]
    lines += ["", "| repeat | fold | seed | accuracy | n |", "|---|---|---|---|---|"]
    for r in summary["per_fold"]:
        lines.append(f"| {r.get('repeat', 0)} | {r['fold']} | {r['seed']} | "
                     f"{_pct(r['accuracy'])} | {r['n']} |")
    return "\n".join(lines) + "\n"


def _f1(value) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def balance_lines(summary: dict) -> list[str]:
    """Balanced accuracy, the majority-class baseline beside the total
    accuracy, and the class prior the runs trained on (Markdown sentences)."""
    pooled = summary["pooled"]
    intervals = summary.get("intervals", {})
    if "balanced_accuracy" not in pooled:
        return []
    balanced = intervals.get("balanced_accuracy", {}).get("ci95", [np.nan, np.nan])
    accuracy = intervals.get("accuracy", {}).get("ci95", [np.nan, np.nan])
    baseline = pooled["majority_accuracy"]
    lines = [f"Balanced accuracy (mean of the classes' sensitivities) "
             f"{_pct(pooled['balanced_accuracy'])} ({_interval(balanced)}; always answering one "
             f"class scores {100 / _present(summary):.1f}%), macro F1 "
             f"{_f1(pooled['macro_f1'])}.",
             f"Majority-class baseline: {_pct(baseline)} (every lesion called "
             f"{pooled['majority_class']}); total accuracy {_pct(pooled['accuracy'])} "
             f"({_interval(accuracy)}) is {_beats(accuracy, baseline)}."]
    if "training" in summary:
        lines.append(f"Trained on, per run (mean of {summary['training']['n_runs']}): "
                     f"{prior_text(summary['training'], summary['class_names'])}.")
    return lines


def _present(summary: dict) -> int:
    """The classes with test lesions (what the balanced mean averages)."""
    return max(1, sum(1 for c in summary["pooled"]["per_class"].values() if c["support"]))


def _beats(ci, baseline: float) -> str:
    low, high = ci
    if not (np.isfinite(low) and np.isfinite(high)):
        return "not compared with it (no interval)"
    if low > baseline:
        return "above it (its interval excludes the baseline)"
    if high < baseline:
        return "BELOW it (its interval excludes the baseline)"
    return "not distinguishable from it (its interval includes the baseline)"


def _interval(ci) -> str:
    low, high = ci
    if not (np.isfinite(low) and np.isfinite(high)):
        return "no interval"
    return f"95% CI {100 * low:.1f}–{100 * high:.1f}"


def discrimination_lines(discrimination: dict) -> list[str]:
    """AUC, operating points and calibration as Markdown sentences and a table."""
    auc = discrimination["auc"]
    value = auc["value"]
    low, high = auc["ci95"]
    if not np.isfinite(value):
        auc_text = "n/a (a test fold lacks a class)"
    elif np.isfinite(low) and np.isfinite(high):
        auc_text = f"{value:.3f} (95% CI {low:.3f}–{high:.3f}, {auc['resampled']} resampled)"
    else:
        auc_text = f"{value:.3f} (no interval)"
    cal = discrimination["calibration"]
    lines = [f"{auc['kind'][0].upper()}{auc['kind'][1:]}: {auc_text}, mean over {auc['n_cells']} trained "
             "model(s).",
             f"Calibration: expected calibration error {_pct(cal['ece'])} "
             f"({cal['bins']} equal-width bins of the top-label confidence, "
             f"n = {cal['n']}; 0% is perfectly calibrated)."]
    if "positive_class" in discrimination:
        lines += ["", f"Operating points (positive class: {discrimination['positive_class']}):",
                  "", "| threshold | sensitivity | specificity |", "|---|---|---|"]
        half = discrimination["at_0.5"]
        lines.append(f"| 0.5 | {_pct(half['sensitivity'])} ({_interval(half['sensitivity_ci95'])})"
                     f" | {_pct(half['specificity'])} ({_interval(half['specificity_ci95'])}) |")
        chosen = discrimination["at_validation_threshold"]
        target = _pct(chosen["target_sensitivity"])
        if chosen["available"]:
            spread = chosen["thresholds"]
            lines.append(
                f"| chosen on validation for sensitivity ≥ {target} (median "
                f"{chosen['threshold']:.3f}, {min(spread):.3f}–{max(spread):.3f} over runs) | "
                f"{_pct(chosen['sensitivity'])} ({_interval(chosen['sensitivity_ci95'])}) | "
                f"{_pct(chosen['specificity'])} ({_interval(chosen['specificity_ci95'])}) |")
        else:
            lines.append(f"| chosen on validation for sensitivity ≥ {target} | n/a: "
                         f"{chosen['why']} | |")
    return lines


def text_table(summary: dict) -> str:
    """The accuracy/sensitivity/specificity table for a terminal."""
    names = summary["class_names"]
    pooled = summary["pooled"]
    width = max(16, *(len(n) + 2 for n in names))
    lines = [f"{'class':<{width}}{'sensitivity':>12}{'specificity':>13}{'support':>9}"]
    for name in names:
        c = pooled["per_class"][name]
        lines.append(f"{name:<{width}}{_pct(c['sensitivity']):>12}{_pct(c['specificity']):>13}"
                     f"{c['support']:>9}")
    lines.append(f"{'weighted average':<{width}}{_pct(pooled['weighted_sensitivity']):>12}"
                 f"{_pct(pooled['weighted_specificity']):>13}{pooled['n']:>9}")
    if "balanced_accuracy" in pooled:
        lines.append(f"{'unweighted mean':<{width}}{_pct(pooled['balanced_accuracy']):>12}"
                     f"{'':>13}{'':>9}")
    acc = summary["accuracy"]
    lines.append(f"total accuracy: {_pct(pooled['accuracy'])}   per fold: "
                 + ", ".join(_pct(r["accuracy"]) for r in summary["per_fold"])
                 + (f"   (mean {100 * acc['mean']:.1f} ± {100 * acc['std']:.1f})"
                    if acc["n"] > 1 else ""))
    if "balanced_accuracy" in pooled:
        ci = summary.get("intervals", {}).get("balanced_accuracy", {}).get("ci95",
                                                                           [np.nan, np.nan])
        lines.append(f"balanced accuracy: {_pct(pooled['balanced_accuracy'])}"
                     + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if np.isfinite(ci[0]) else "")
                     + f"   macro F1: {_f1(pooled['macro_f1'])}   majority-class baseline: "
                     f"{_pct(pooled['majority_accuracy'])} ({pooled['majority_class']})")
    if "training" in summary:
        lines.append("trained on (per run): "
                     + prior_text(summary["training"], summary["class_names"]))
    if "discrimination" in summary:
        d = summary["discrimination"]
        auc = d["auc"]
        low, high = auc["ci95"]
        value = f"{auc['value']:.3f}" if np.isfinite(auc["value"]) else "n/a"
        line = (f"AUC: {value}" + (f" [{low:.3f}, {high:.3f}]" if np.isfinite(low) else "")
                + f"   ECE: {_pct(d['calibration']['ece'])}")
        if "positive_class" in d:
            half = d["at_0.5"]
            line += (f"   {d['positive_class']} at 0.5: sensitivity {_pct(half['sensitivity'])}, "
                     f"specificity {_pct(half['specificity'])}")
        lines.append(line)
    return "\n".join(lines)


def side_by_side(left: dict, right: dict, titles=("CNN-AUG", "CNN-AUG-GAN")) -> str:
    """Two summaries' sensitivity/specificity per class in one terminal table."""
    names = left["class_names"]
    width = max(19, *(len(n) + 2 for n in names))
    head = f"{'':<{width}}" + "".join(f"{t + ' sens':>18}{t + ' spec':>18}" for t in titles)
    lines = [head]
    for name in names + ["weighted average"]:
        cells = []
        for s in (left, right):
            pooled = s["pooled"]
            if name == "weighted average":
                sens, spec = pooled["weighted_sensitivity"], pooled["weighted_specificity"]
            else:
                sens = pooled["per_class"][name]["sensitivity"]
                spec = pooled["per_class"][name]["specificity"]
            cells.append(f"{_pct(sens):>18}{_pct(spec):>18}")
        lines.append(f"{name:<{width}}" + "".join(cells))
    lines.append(f"{'total accuracy':<{width}}"
                 + "".join(f"{_pct(s['pooled']['accuracy']):>18}{'':>18}" for s in (left, right)))
    if all("balanced_accuracy" in s["pooled"] for s in (left, right)):
        lines.append(f"{'balanced accuracy':<{width}}" + "".join(
            f"{_pct(s['pooled']['balanced_accuracy']):>18}{'':>18}" for s in (left, right)))
    return "\n".join(lines)


def write_confusion_png(summary: dict, path: str | os.PathLike, title: str) -> None:
    """The summed confusion matrix as a labelled heat map."""
    # A bare Figure (no pyplot): no global backend switch, nothing left open.
    from matplotlib.figure import Figure

    names = summary["class_names"]
    matrix = np.asarray(summary["confusion"], dtype=float)
    fig = Figure(figsize=(1.2 * len(names) + 2, 1.1 * len(names) + 1.6))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:g}", ha="center", va="center",
                color="white" if value > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\naccuracy {_pct(summary['pooled']['accuracy'])}", fontsize=10)
    save_figure(fig, path)


def write_summary(summary: dict, out_dir: str | os.PathLike, name: str, title: str) -> list[Path]:
    """Write NAME.json, NAME.md, NAME-confusion.png and, with probabilities,
    NAME-reliability.png into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md", out_dir / f"{name}-confusion.png"]
    with atomic_path(paths[0], suffix=".json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    with atomic_path(paths[1], suffix=".md") as tmp:
        tmp.write_text(markdown_tables(summary, title), encoding="utf-8")
    write_confusion_png(summary, paths[2], title)
    if "discrimination" in summary:
        paths.append(out_dir / f"{name}-reliability.png")
        write_reliability_png(summary["discrimination"]["calibration"], paths[-1], title)
    return paths
