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
* per-class sensitivity and specificity with Wilson intervals;
* the smallest difference this experiment could have detected (80% power),
  from the observed discordance.

A difference is called a gain (or a loss) only when the patient-bootstrap
interval and the corrected resampled t interval both exclude zero; otherwise
the sentence says there is no evidence of a difference, with the interval and
the detectable difference.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

from keras_lesions.errors import KerasLesionsError
from keras_lesions.evaluate import stats

HELPED, HURT, NO_EVIDENCE = "helped", "hurt", "no evidence"
BOOTSTRAP_RESAMPLES = 2000
AUC_RESAMPLES = 300  # AUCs are slower to recompute; 300 percentiles are stable to ~0.5 points


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
                 seed: int = 0) -> dict:
    """Every statistic of one comparison, and its verdict sentence.

    Args:
        what: the subject of the sentence, e.g. "Synthetic augmentation (DCGAN)".
        baseline, proposed: ``crossval.run_record`` test records of the two
            arms; cells both ran are compared.
        patient_of: lesion id -> patient id.
        class_names: the class order of the labels.
        seed: the bootstrap's seed.

    Returns:
        JSON-able: "what", "n_cells", "n_lesions", "n_patients", "accuracy"
        {baseline, proposed}, "difference", "ci95", "corrected_t",
        "mcnemar" (per repeat and seed), "auc" {baseline, proposed,
        difference, ci95, delong per repeat and seed}, "per_class"
        {name: {arm: {sensitivity, specificity with Wilson intervals}}},
        "discordance", "detectable_difference", "steps" {baseline,
        proposed}, "outcome" (helped / hurt / no evidence), "verdict".
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
    cell_differences = [float(_correct(b).mean() - _correct(a).mean()) for a, b in pairs]
    n_test = float(np.mean([len(a["y_true"]) for a, _ in pairs]))
    n_train_lesions = float(len(set(lesions.tolist())) - n_test)
    # Nadeau & Bengio's correction uses the sizes of the training and test
    # sets in lesions (not augmented images): the overlap between folds.
    corrected = stats.corrected_resampled_t(cell_differences, max(n_train_lesions, 1.0), n_test)

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
    comparison = {
        "what": what, "n_cells": len(pairs), "n_lesions": n_lesions,
        "n_patients": len(set(clusters.tolist())), "n_cross_validations": len(by_run),
        "accuracy": {"baseline": float(correct_a.mean()), "proposed": float(correct_b.mean())},
        "difference": float(boot["difference"]), "ci95": [float(v) for v in boot["ci95"]],
        "cell_differences": cell_differences, "corrected_t": corrected,
        "mcnemar": mcnemar,
        "auc": {"baseline": auc_a, "proposed": auc_b, "difference": auc_b - auc_a,
                "ci95": [float(v) for v in auc_boot["ci95"]], "delong": delong},
        "per_class": _per_class(pairs, class_names),
        "discordance": mean_discordance, "detectable_difference": detectable,
        "steps": {"baseline": _steps(a for a, _ in pairs), "proposed": _steps(b for _, b in pairs)},
    }
    comparison["outcome"] = outcome(comparison)
    comparison["verdict"] = verdict_sentence(comparison)
    return comparison


def _steps(records) -> int | None:
    """The SGD steps of an arm's runs, summed (None when a run did not record them)."""
    steps = [r.get("sgd_steps") for r in records]
    return None if any(s is None for s in steps) else int(sum(steps))


def _per_class(pairs, class_names) -> dict:
    """Sensitivity and specificity per class and arm, with Wilson intervals.

    Repeats predict every lesion again, so the counts are scaled to one
    cross-validation's lesions before the interval: the interval is for the
    number of lesions there are, not the number of predictions."""
    result = {}
    n_runs = len({(_cell(a)[0], _cell(a)[2]) for a, _ in pairs})
    for c, name in enumerate(class_names):
        entry = {}
        for arm, index in (("baseline", 0), ("proposed", 1)):
            y_true = np.concatenate([np.asarray(p[index]["y_true"]) for p in pairs])
            y_pred = np.concatenate([np.asarray(p[index]["y_pred"]) for p in pairs])
            positives, negatives = y_true == c, y_true != c
            values = {}
            for label, mask, hit in (("sensitivity", positives, y_pred == c),
                                     ("specificity", negatives, y_pred != c)):
                n = mask.sum() / n_runs
                rate = float(hit[mask].mean()) if mask.any() else math.nan
                low, high = stats.wilson_interval(rate * n, n) if n else (math.nan, math.nan)
                values[label] = {"value": rate, "ci95": [float(low), float(high)]}
            entry[arm] = values
        result[name] = entry
    return result


def outcome(comparison: dict) -> str:
    """helped / hurt only when both intervals exclude zero on the same side."""
    low, high = comparison["ci95"]
    t_low, t_high = comparison["corrected_t"]["ci95"]
    t_defined = not (math.isnan(t_low) or math.isnan(t_high))
    if low > 0 and (t_defined and t_low > 0):
        return HELPED
    if high < 0 and (t_defined and t_high < 0):
        return HURT
    return NO_EVIDENCE


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def verdict_sentence(comparison: dict) -> str:
    """"<what> helped: +x points (95% CI a to b) ..." or "no evidence of a
    difference (... CI a to b; this experiment could detect differences of
    about d points)"; "hurt" symmetrically."""
    what = comparison["what"]
    low, high = comparison["ci95"]
    interval = f"95% CI {_points(low)} to {_points(high)}"
    t = comparison["corrected_t"]
    t_interval = ("corrected resampled t over the cells: not defined for a single cell"
                  if math.isnan(t["ci95"][0]) else
                  f"corrected resampled t over {t['n_cells']} cells: {_points(t['ci95'][0])} to "
                  f"{_points(t['ci95'][1])}")
    difference = _points(comparison["difference"])
    detectable = comparison["detectable_difference"]
    could = ("" if math.isnan(detectable) else
             f"; this experiment could detect differences of about {100 * detectable:.0f} points")
    kind = comparison["outcome"]
    if kind == HELPED:
        head = f"{what} helped: {difference} points ({interval}; {t_interval})"
    elif kind == HURT:
        head = f"{what} hurt: {difference} points ({interval}; {t_interval})"
    else:
        head = (f"{what}: no evidence of a difference ({difference} points, {interval}; "
                f"{t_interval}{could})")
    acc = comparison["accuracy"]
    tail = (f"; total accuracy {100 * acc['baseline']:.1f}% → {100 * acc['proposed']:.1f}% over "
            f"{comparison['n_lesions']} lesions × {comparison['n_cross_validations']} "
            "cross-validation(s)")
    steps = comparison["steps"]
    if steps["baseline"] and steps["proposed"] and steps["baseline"] != steps["proposed"]:
        tail += (f"; the arms differ in training budget ({steps['baseline']} vs "
                 f"{steps['proposed']} SGD steps)")
    return head + tail + "."


def _p(value) -> str:
    return "n/a" if value is None or not np.isfinite(value) else (
        "< 0.001" if value < 0.001 else f"{value:.3f}")


def interval_text(ci) -> str:
    """A 95% interval of a difference in points: "-9.1 to +0.2"."""
    return f"{_points(ci[0])} to {_points(ci[1])}"


def comparison_table(comparisons: Iterable[dict]) -> list[str]:
    """Markdown lines: what the columns mean, then one row per comparison
    (``compare_arms`` results; those without cells are left out)."""
    lines = ["Differences are in accuracy points, proposed minus baseline, over the same "
             "lesions. CI: 95% patient-cluster paired bootstrap; t: the Nadeau–Bengio corrected "
             "resampled t interval over the cells; McNemar: exact, per cross-validation; AUC: "
             "macro one-vs-rest, DeLong's paired p per cross-validation. A gain or loss is "
             "claimed only when both intervals exclude 0.", "",
             "| comparison | baseline | proposed | difference | 95% CI | corrected t | "
             "McNemar p | AUC baseline → proposed | AUC diff. 95% CI | DeLong p | outcome |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        if not c.get("n_cells"):
            continue
        lines.append(
            f"| {c['what']} | {100 * c['accuracy']['baseline']:.1f}% | "
            f"{100 * c['accuracy']['proposed']:.1f}% | {100 * c['difference']:+.1f} | "
            f"{interval_text(c['ci95'])} | {interval_text(c['corrected_t']['ci95'])} | "
            f"{', '.join(_p(m['pvalue']) for m in c['mcnemar'])} | "
            f"{c['auc']['baseline']:.3f} → {c['auc']['proposed']:.3f} | "
            f"{interval_text(c['auc']['ci95'])} | "
            f"{', '.join(_p(d['pvalue']) for d in c['auc']['delong'])} | {c['outcome']} |")
    return lines
