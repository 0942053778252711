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
        cross-validation, one per (repeat, seed), with its spread).
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
    if records and all("probabilities" in r and "lesion_ids" in r for r in records):
        summary["discrimination"] = discrimination_summary(
            records, class_names, patient_of, positive_class=positive_class,
            target_sensitivity=target_sensitivity)
    return summary


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
    lines += ["", "| class | sensitivity | specificity | support |", "|---|---|---|---|"]
    for name in names:
        c = pooled["per_class"][name]
        lines.append(f"| {name} | {_pct(c['sensitivity'])} | {_pct(c['specificity'])} | "
                     f"{c['support']} |")
    lines.append(f"| weighted average | {_pct(pooled['weighted_sensitivity'])} | "
                 f"{_pct(pooled['weighted_specificity'])} | {pooled['n']} |")
    if "discrimination" in summary:
        lines += ["", *discrimination_lines(summary["discrimination"])]
    lines += ["", "| repeat | fold | seed | accuracy | n |", "|---|---|---|---|---|"]
    for r in summary["per_fold"]:
        lines.append(f"| {r.get('repeat', 0)} | {r['fold']} | {r['seed']} | "
                     f"{_pct(r['accuracy'])} | {r['n']} |")
    return "\n".join(lines) + "\n"


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
    acc = summary["accuracy"]
    lines.append(f"total accuracy: {_pct(pooled['accuracy'])}   per fold: "
                 + ", ".join(_pct(r["accuracy"]) for r in summary["per_fold"])
                 + (f"   (mean {100 * acc['mean']:.1f} ± {100 * acc['std']:.1f})"
                    if acc["n"] > 1 else ""))
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
    width = max(16, *(len(n) + 2 for n in names))
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
