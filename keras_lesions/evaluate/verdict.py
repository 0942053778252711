"""Comparisons of two training schemes, and the one "did it help?" sentence.

Both arms of a comparison predicted the same lesions in the same cells
(repeat, fold, seed) of the repeated cross-validation. From the stored
predictions (``evaluate.stats`` has the tests):

* the accuracy difference with a 95% interval from a patient-cluster paired
  bootstrap (lesions of one patient are not independent);
* the Nadeau–Bengio corrected resampled t over the cells (the training-set
  overlap of cross-validation makes the plain t far too narrow);
* exact McNemar per whole cross-validation (repeat, seed);
* macro one-vs-rest AUC of each arm, DeLong's paired test of the difference
  per cross-validation, and the patient-bootstrap interval of the mean AUC
  difference;
* balanced accuracy (the mean of the classes' sensitivities) and each
  class's sensitivity and specificity, and their paired differences, with
  intervals from the same patient resamples;
* the smallest difference this experiment could have detected (80% power),
  from the observed discordance.

The outcome reads the primary metric (``evaluate.primary_metric``: total
accuracy as the papers, balanced accuracy or macro AUC). A difference is
called a gain (or a loss) only when the patient-bootstrap interval and the
corrected resampled t interval both exclude zero; otherwise the sentence says
there is no evidence of a difference, with the interval and the detectable
difference. A gain for which some class's sensitivity fell by more than
``evaluate.class_sensitivity_margin`` is "mixed": the sentence names the
class that paid for it, and nothing treats it as a gain.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

from keras_lesions.errors import KerasLesionsError
from keras_lesions.evaluate import primary, stats
from keras_lesions.evaluate.primary import AUC_RESAMPLES, BOOTSTRAP_RESAMPLES

HELPED, HURT, NO_EVIDENCE = "helped", "hurt", "no evidence"
# a gain on the primary metric paid for by a class's sensitivity
MIXED = "mixed"


def paired_differences(baseline: Sequence[dict], proposed: Sequence[dict]) -> list[dict]:
    """Per cell both arms ran: their accuracies and the difference.

    Args:
        baseline, proposed: ``summarize_predictions(...)["per_fold"]`` rows
            (``{"repeat", "fold", "seed", "accuracy"}``).
    """
    def key(r):
        return r.get("repeat", 0), r["fold"], r["seed"]

    base = {key(r): r["accuracy"] for r in baseline}
    return [{"repeat": key(r)[0], "fold": r["fold"], "seed": r["seed"], "baseline": base[key(r)],
             "proposed": r["accuracy"], "difference": r["accuracy"] - base[key(r)]}
            for r in sorted(proposed, key=key) if key(r) in base]


def _cell(record: dict) -> tuple[int, int, int]:
    return int(record.get("repeat", 0)), int(record["fold"]), int(record["seed"])


def paired_records(baseline: Sequence[dict], proposed: Sequence[dict]) -> list[tuple[dict, dict]]:
    """(baseline, proposed) run records of every cell both arms ran, with the
    proposed predictions put in the baseline's lesion order.

    Raises:
        KerasLesionsError: two runs of one cell that predicted different lesions.
    """
    by_cell = {_cell(r): r for r in baseline}
    pairs = []
    for record in sorted(proposed, key=_cell):
        base = by_cell.get(_cell(record))
        if base is None:
            continue
        position = {lesion: i for i, lesion in enumerate(np.asarray(record["lesion_ids"]).tolist())}
        base_ids = np.asarray(base["lesion_ids"]).tolist()
        if sorted(position) != sorted(base_ids):
            raise KerasLesionsError(f"runs {base['run_dir']} and {record['run_dir']} predicted "
                                    "different lesions: they are not one cell of one experiment")
        order = np.array([position[i] for i in base_ids], np.int64)
        pairs.append((base, {**record, **{k: np.asarray(record[k])[order] for k in
                                          ("y_true", "y_pred", "probabilities", "lesion_ids")}}))
    return pairs


def _correct(record: dict) -> np.ndarray:
    return np.asarray(record["y_pred"]) == np.asarray(record["y_true"])


def accuracy_interval(records: Sequence[dict], patient_of: Mapping[str, str],
                      seed: int = 0) -> list[float]:
    """95% patient-bootstrap interval of one arm's pooled accuracy."""
    if not records:
        return [math.nan, math.nan]
    correct = np.concatenate([_correct(r) for r in records])
    clusters = np.concatenate([[patient_of[i] for i in np.asarray(r["lesion_ids"]).tolist()]
                               for r in records])
    # The accuracy is the difference to an arm that is always wrong.
    result = stats.cluster_bootstrap_difference(np.zeros_like(correct), correct, clusters,
                                                n_boot=BOOTSTRAP_RESAMPLES, seed=seed)
    return [float(v) for v in result["ci95"]]


def compare_arms(what: str, baseline: Sequence[dict], proposed: Sequence[dict],
                 patient_of: Mapping[str, str], class_names: Sequence[str], *,
                 metric: str = "accuracy", sensitivity_margin: float | None = None,
                 seed: int = 0) -> dict:
    """Every statistic of one comparison, and its verdict sentence.

    Args:
        what: the subject of the sentence, e.g. "Synthetic augmentation (DCGAN)".
        baseline, proposed: ``crossval.run_record`` test records of the two
            arms; cells both ran are compared.
        patient_of: lesion id -> patient id.
        class_names: the class order of the labels.
        metric: the primary metric ("accuracy", "balanced_accuracy",
            "auc"): the difference the outcome and the sentence read.
        sensitivity_margin: a gain is "helped" only if no class's
            sensitivity fell by more than this; None: not checked.
        seed: the bootstrap's seed.

    Returns:
        JSON-able: "what", "metric", "n_cells", "n_lesions", "n_patients",
        "accuracy" and "balanced_accuracy" {baseline, proposed}, "metrics"
        {accuracy, balanced_accuracy, auc: {baseline, proposed, difference,
        ci95, corrected_t}}, the primary metric's "difference", "ci95",
        "corrected_t" and "cell_differences", "mcnemar" (per repeat and
        seed), "auc" {baseline, proposed, difference, ci95, delong per repeat
        and seed}, "per_class" {name: {baseline, proposed: {sensitivity,
        specificity}, sensitivity_change: {difference, ci95}}} (patient
        bootstrap intervals), "discordance", "detectable_difference",
        "steps" {baseline, proposed}, "sensitivity_margin", "outcome"
        (helped / mixed / hurt / no evidence), "paid_by" (the classes whose
        sensitivity fell past the margin), "verdict".
    """
    pairs = paired_records(baseline, proposed)
    if not pairs:
        return {"what": what, "n_cells": 0, "outcome": NO_EVIDENCE,
                "verdict": f"{what}: no pair of runs to compare."}
    k = len(class_names)
    correct_a = np.concatenate([_correct(a) for a, _ in pairs])
    correct_b = np.concatenate([_correct(b) for _, b in pairs])
    lesions = np.concatenate([np.asarray(a["lesion_ids"]) for a, _ in pairs])
    clusters = np.array([patient_of[i] for i in lesions.tolist()])
    cells = np.concatenate([np.full(len(a["y_true"]), c) for c, (a, _) in enumerate(pairs)])
    y_true = np.concatenate([np.asarray(a["y_true"]) for a, _ in pairs])
    prob_a = np.concatenate([np.asarray(a["probabilities"]) for a, _ in pairs])
    prob_b = np.concatenate([np.asarray(b["probabilities"]) for _, b in pairs])

    boot = stats.cluster_bootstrap_difference(correct_a, correct_b, clusters,
                                              n_boot=BOOTSTRAP_RESAMPLES, seed=seed)
    n_test = float(np.mean([len(a["y_true"]) for a, _ in pairs]))
    n_train_lesions = float(len(set(lesions.tolist())) - n_test)

    def corrected_t(name):
        # Nadeau & Bengio's correction uses the sizes of the training and
        # test sets in lesions (not augmented images): the overlap between
        # folds.
        differences = [primary.cell_value(b, name, k) - primary.cell_value(a, name, k)
                       for a, b in pairs]
        return differences, stats.corrected_resampled_t(differences, max(n_train_lesions, 1.0),
                                                        n_test)

    # one set of patient resamples for both arms: paired differences
    rates_a, rates_b = stats.cluster_bootstrap_class_rates(
        y_true, [np.concatenate([np.asarray(a["y_pred"]) for a, _ in pairs]),
                 np.concatenate([np.asarray(b["y_pred"]) for _, b in pairs])],
        clusters, k, n_boot=BOOTSTRAP_RESAMPLES, seed=seed)

    by_run: dict[tuple[int, int], list[int]] = {}
    for c, (a, _) in enumerate(pairs):
        by_run.setdefault((_cell(a)[0], _cell(a)[2]), []).append(c)
    mcnemar, delong, discordance = [], [], []
    for (repeat, run_seed), members in sorted(by_run.items()):
        mask = np.isin(cells, members)
        test = stats.mcnemar_exact(correct_a[mask], correct_b[mask])
        mcnemar.append({"repeat": repeat, "seed": run_seed, **test})
        discordance.append((test["a_only"] + test["b_only"]) / max(test["n"], 1))
        d = stats.delong_macro_ovr(y_true[mask], prob_a[mask], prob_b[mask], k)
        delong.append({"repeat": repeat, "seed": run_seed, **d})
    auc_a = float(np.mean([stats.macro_ovr_auc(y_true[cells == c], prob_a[cells == c], k)
                           for c in range(len(pairs))]))
    auc_b = float(np.mean([stats.macro_ovr_auc(y_true[cells == c], prob_b[cells == c], k)
                           for c in range(len(pairs))]))
    auc_boot = stats.cluster_bootstrap_auc_difference(y_true, prob_a, prob_b, clusters, cells,
                                                      n_classes=k, n_boot=AUC_RESAMPLES,
                                                      seed=seed)
    n_lesions = len(set(lesions.tolist()))
    mean_discordance = float(np.mean(discordance))
    detectable = stats.detectable_difference(mean_discordance, n_lesions)
    metrics, cell_differences = {}, {}
    for name, values, difference, ci95 in (
            ("accuracy", (float(correct_a.mean()), float(correct_b.mean())), boot["difference"],
             boot["ci95"]),
            ("balanced_accuracy", (rates_a["balanced_accuracy"], rates_b["balanced_accuracy"]),
             rates_b["balanced_accuracy"] - rates_a["balanced_accuracy"],
             stats.percentile_interval(rates_b["resampled"]["balanced_accuracy"]
                                       - rates_a["resampled"]["balanced_accuracy"])),
            ("auc", (auc_a, auc_b), auc_b - auc_a, auc_boot["ci95"])):
        cell_differences[name], t = corrected_t(name)
        metrics[name] = {"baseline": float(values[0]), "proposed": float(values[1]),
                         "difference": float(difference), "ci95": [float(v) for v in ci95],
                         "corrected_t": t}
    chosen = metrics[metric]
    comparison = {
        "what": what, "metric": metric, "n_cells": len(pairs), "n_lesions": n_lesions,
        "n_patients": len(set(clusters.tolist())), "n_cross_validations": len(by_run),
        "accuracy": {"baseline": metrics["accuracy"]["baseline"],
                     "proposed": metrics["accuracy"]["proposed"]},
        "balanced_accuracy": {"baseline": metrics["balanced_accuracy"]["baseline"],
                              "proposed": metrics["balanced_accuracy"]["proposed"]},
        "metrics": metrics,
        "difference": chosen["difference"], "ci95": chosen["ci95"],
        "cell_differences": cell_differences[metric], "corrected_t": chosen["corrected_t"],
        "mcnemar": mcnemar,
        "auc": {"baseline": auc_a, "proposed": auc_b, "difference": auc_b - auc_a,
                "ci95": [float(v) for v in auc_boot["ci95"]], "delong": delong},
        "per_class": _per_class(rates_a, rates_b, class_names, y_true, lesions),
        "discordance": mean_discordance, "detectable_difference": detectable,
        "steps": {"baseline": _steps(a for a, _ in pairs), "proposed": _steps(b for _, b in pairs)},
        "sensitivity_margin": sensitivity_margin,
    }
    comparison["paid_by"] = paid_by(comparison)
    comparison["outcome"] = outcome(comparison)
    comparison["verdict"] = verdict_sentence(comparison)
    return comparison


def _steps(records) -> int | None:
    """The SGD steps of an arm's runs, summed (None when a run did not record them)."""
    steps = [r.get("sgd_steps") for r in records]
    return None if any(s is None for s in steps) else int(sum(steps))


def _per_class(rates_a: dict, rates_b: dict, class_names, y_true, lesions) -> dict:
    """Sensitivity and specificity per class and arm, and each class's
    sensitivity change (proposed − baseline), with 95% intervals from the
    same patient resamples as the headline difference (paired; a rate of 0
    or 1 gets the Wilson interval of its lesions, ``stats.rate_interval``)."""
    result = {}
    counted = dict(zip(("sensitivity", "specificity"),
                       stats.distinct_lesions_per_class(y_true, lesions, len(class_names))))
    for label, rates in (("baseline", rates_a), ("proposed", rates_b)):
        for name in ("sensitivity", "specificity"):
            rates[f"{name}_ci95"] = [
                stats.rate_interval(rates[name][c], ci, counted[name][c])
                for c, ci in enumerate(stats.percentile_interval(rates["resampled"][name]))]
    change = stats.percentile_interval(rates_b["resampled"]["sensitivity"]
                                       - rates_a["resampled"]["sensitivity"])
    for c, name in enumerate(class_names):
        entry = {arm: {kind: {"value": float(rates[kind][c]),
                              "ci95": [float(v) for v in rates[f"{kind}_ci95"][c]]}
                       for kind in ("sensitivity", "specificity")}
                 for arm, rates in (("baseline", rates_a), ("proposed", rates_b))}
        entry["sensitivity_change"] = {
            "difference": float(rates_b["sensitivity"][c] - rates_a["sensitivity"][c]),
            "ci95": [float(v) for v in change[c]]}
        result[name] = entry
    return result


def paid_by(comparison: dict) -> list[str]:
    """The classes whose sensitivity fell by more than the comparison's
    margin (the point estimate of the change), worst first."""
    margin = comparison.get("sensitivity_margin")
    if margin is None:
        return []
    fell = [(entry["sensitivity_change"]["difference"], name)
            for name, entry in comparison.get("per_class", {}).items()
            if "sensitivity_change" in entry  # reports made before the margin have none
            and entry["sensitivity_change"]["difference"] < -margin]
    return [name for _, name in sorted(fell)]


def outcome(comparison: dict) -> str:
    """helped / hurt only when both intervals exclude zero on the same side;
    a gain for which some class's sensitivity fell past the margin is
    "mixed", not helped."""
    low, high = comparison["ci95"]
    t_low, t_high = comparison["corrected_t"]["ci95"]
    t_defined = not (math.isnan(t_low) or math.isnan(t_high))
    if low > 0 and (t_defined and t_low > 0):
        return MIXED if paid_by(comparison) else HELPED
    if high < 0 and (t_defined and t_high < 0):
        return HURT
    return NO_EVIDENCE


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def verdict_sentence(comparison: dict) -> str:
    """"<what> helped: +x points of <metric> (95% CI a to b) ..." or "no
    evidence of a difference (... CI a to b; this experiment could detect
    differences of about d points)"; "hurt" symmetrically; "mixed" names the
    class whose sensitivity paid for the gain. Every sentence ends with each
    class's sensitivity change and its interval."""
    what = comparison["what"]
    metric = comparison.get("metric", "accuracy")
    name = primary.label(metric)
    low, high = comparison["ci95"]
    interval = f"95% CI {_points(low)} to {_points(high)}"
    t = comparison["corrected_t"]
    t_interval = ("corrected resampled t over the cells: not defined (a single cell, or a "
                  "cell whose metric is undefined)" if math.isnan(t["ci95"][0]) else
                  f"corrected resampled t over {t['n_cells']} cells: {_points(t['ci95'][0])} to "
                  f"{_points(t['ci95'][1])}")
    difference = f"{_points(comparison['difference'])} points of {name}"
    detectable = comparison["detectable_difference"]
    could = ("" if math.isnan(detectable) else
             f"; this experiment could detect total-accuracy differences of about "
             f"{100 * detectable:.0f} points")
    kind = comparison["outcome"]
    if kind == HELPED:
        head = f"{what} helped: {difference} ({interval}; {t_interval})"
    elif kind == MIXED:
        paid = comparison["paid_by"]
        costs = ", ".join(
            f"{c} {_points(comparison['per_class'][c]['sensitivity_change']['difference'])}"
            for c in paid)
        head = (f"{what} raised {name} by {_points(comparison['difference'])} points ({interval}; "
                f"{t_interval}), but {' and '.join(paid)} paid for it (sensitivity {costs} "
                f"points, past the {100 * comparison['sensitivity_margin']:g}-point margin): not "
                "called a gain")
    elif kind == HURT:
        head = f"{what} hurt: {difference} ({interval}; {t_interval})"
    else:
        head = (f"{what}: no evidence of a difference ({difference}, {interval}; "
                f"{t_interval}{could})")
        if comparison.get("paid_by") and comparison["difference"] > 0:
            head += (f"; nor would a gain have counted: {' and '.join(comparison['paid_by'])} "
                     f"lost more than the {100 * comparison['sensitivity_margin']:g}-point "
                     "margin of sensitivity")
    acc = comparison["accuracy"]
    tail = ""
    if metric != "accuracy":
        values = comparison["metrics"][metric]
        tail += f"; {name} {_value(values['baseline'], metric)} → " \
                f"{_value(values['proposed'], metric)}"
    tail += (f"; total accuracy {100 * acc['baseline']:.1f}% → {100 * acc['proposed']:.1f}% over "
             f"{comparison['n_lesions']} lesions × {comparison['n_cross_validations']} "
             "cross-validation(s)")
    if comparison.get("per_class"):
        tail += "; sensitivity change per class: " + ", ".join(
            f"{c} {_points(e['sensitivity_change']['difference'])} "
            f"({interval_text(e['sensitivity_change']['ci95'])})"
            for c, e in comparison["per_class"].items())
    steps = comparison["steps"]
    if steps["baseline"] and steps["proposed"] and steps["baseline"] != steps["proposed"]:
        tail += (f"; the arms differ in training budget ({steps['baseline']} vs "
                 f"{steps['proposed']} SGD steps)")
    return head + tail + "."


def _value(value: float, metric: str) -> str:
    return f"{value:.3f}" if metric == "auc" else f"{100 * value:.1f}%"


def _p(value) -> str:
    return "n/a" if value is None or not np.isfinite(value) else (
        "< 0.001" if value < 0.001 else f"{value:.3f}")


def interval_text(ci) -> str:
    """A 95% interval of a difference in points: "-9.1 to +0.2"."""
    return f"{_points(ci[0])} to {_points(ci[1])}"


def comparison_table(comparisons: Iterable[dict]) -> list[str]:
    """Markdown lines: what the columns mean, then one row per comparison
    (``compare_arms`` results; those without cells are left out)."""
    comparisons = [c for c in comparisons if c.get("n_cells")]
    metric = comparisons[0].get("metric", "accuracy") if comparisons else "accuracy"
    name = primary.label(metric)
    lines = [f"Differences are in points of {name} (the primary metric), proposed minus "
             "baseline, over the same lesions. CI: 95% patient-cluster paired bootstrap; t: the "
             "Nadeau–Bengio corrected resampled t interval over the cells; McNemar: exact, on "
             "total accuracy, per cross-validation; AUC: macro one-vs-rest, DeLong's paired p "
             "per cross-validation; sensitivity change: per class, with its paired 95% "
             "bootstrap interval. A gain or loss is claimed only when both intervals exclude 0; "
             "a gain for which a class's sensitivity fell past the margin is 'mixed'.", "",
             f"| comparison | {name} baseline | proposed | difference | 95% CI | corrected t | "
             "total accuracy | McNemar p | AUC baseline → proposed | AUC diff. 95% CI | "
             "DeLong p | sensitivity change per class | outcome |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        values = c.get("metrics", {}).get(metric, {"baseline": c["accuracy"]["baseline"],
                                                   "proposed": c["accuracy"]["proposed"]})
        changes = ", ".join(f"{k} {_points(e['sensitivity_change']['difference'])} "
                            f"({interval_text(e['sensitivity_change']['ci95'])})"
                            for k, e in c.get("per_class", {}).items()
                            if "sensitivity_change" in e)
        lines.append(
            f"| {c['what']} | {_value(values['baseline'], metric)} | "
            f"{_value(values['proposed'], metric)} | {100 * c['difference']:+.1f} | "
            f"{interval_text(c['ci95'])} | {interval_text(c['corrected_t']['ci95'])} | "
            f"{100 * c['accuracy']['baseline']:.1f}% → {100 * c['accuracy']['proposed']:.1f}% | "
            f"{', '.join(_p(m['pvalue']) for m in c['mcnemar'])} | "
            f"{c['auc']['baseline']:.3f} → {c['auc']['proposed']:.3f} | "
            f"{interval_text(c['auc']['ci95'])} | "
            f"{', '.join(_p(d['pvalue']) for d in c['auc']['delong'])} | {changes} | "
            f"{c['outcome']} |")
    return lines
