"""Two experiments' CNN-AUG arms compared: did a setting help on these data?

``kl compare BASELINE PROPOSED`` answers questions no single experiment
asks, such as "does class balancing help on my data?" (two configs that
differ in ``train.class_balance``). Each experiment's CNN-AUG is what its
report shows: every cell's classifiers on that cell's D_aug optimal, chosen
on its own validation patients (on the test folds under ``evaluate.selection:
paper``, which the report then says). The two are paired cell by cell (the
same repeat, fold and seed predicted the same test lesions with the same
classes, which is checked) and
compared by ``verdict.compare_arms`` on the primary metric, watching every
class's sensitivity. The report lists every setting in which the two
experiments differ, so nothing else can pass for the effect.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_lesions.config import ExperimentConfig
from keras_lesions.errors import KerasLesionsError
from keras_lesions.experiments import classic_curve as classic
from keras_lesions.experiments.context import Log
from keras_lesions.io import write_json, write_text

COMPARABLE_KINDS = ("classic-curve", "gan-curve")
# what says where an experiment lives, not what it did
NOT_A_DIFFERENCE = ("name", "output_dir")


def setting_differences(baseline: ExperimentConfig, proposed: ExperimentConfig) -> list[str]:
    """Every setting in which two configs differ, as "section.key: A → B"."""
    def flat(value, prefix=""):
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                out.update(flat(item, f"{prefix}{key}."))
            return out
        return {prefix.rstrip("."): value}

    a, b = flat(baseline.to_dict()), flat(proposed.to_dict())
    return [f"{key}: {a.get(key)!r} → {b.get(key)!r}" for key in sorted(set(a) | set(b))
            if key not in NOT_A_DIFFERENCE and a.get(key) != b.get(key)]


def cnn_aug_records(config: ExperimentConfig, log: Log) -> tuple[object, list[dict]]:
    """An experiment and its CNN-AUG arm's test records (each cell on its own
    D_aug optimal).

    Raises:
        KerasLesionsError: another kind, or an experiment that has not made
            every choice or finished its CNN-AUG runs.
    """
    from keras_lesions.experiments.registry import kind_of, open_for

    if config.kind not in COMPARABLE_KINDS:
        raise KerasLesionsError(f"kind {config.kind!r}: kl compare compares the CNN-AUG arms of "
                                f"{' and '.join(COMPARABLE_KINDS)} experiments")
    exp = open_for(config, log, create=False, record=False)
    choices = classic.cell_choices(exp)
    records = classic.optimal_records(exp, kind_of(config).plan(exp), choices)
    cells = exp.cells()
    expected = len(cells) * len(config.evaluate.seeds)
    if len(choices) < len(cells) or len(records) < expected:
        raise KerasLesionsError(
            f"has {len(records)} of its {expected} CNN-AUG runs on their D_aug optimal: run "
            "`kl experiment` on its config to the end first", exp.layout.root)
    return exp, records


def compare_experiments(baseline: ExperimentConfig, proposed: ExperimentConfig,
                        out_dir: str | os.PathLike | None = None, log: Log = print) -> dict:
    """Compare the CNN-AUG arms of two finished experiments on the same lesions.

    The baseline's ``evaluate`` settings (primary metric, sensitivity
    margin) decide the verdict; the two must agree on them.

    Returns:
        {"comparison": ``compare_arms`` result, "differences": settings,
        "summaries": {"baseline", "proposed"}, "report": the Markdown path}.

    Raises:
        KerasLesionsError: experiments that cannot be compared (other kinds,
            unfinished, other classes, other lesions per cell, other metrics).
    """
    from keras_lesions.evaluate.report import prior_table, write_summary
    from keras_lesions.evaluate.verdict import comparison_table, paired_records

    for key in ("primary_metric", "class_sensitivity_margin"):
        a, b = getattr(baseline.evaluate, key), getattr(proposed.evaluate, key)
        if a != b:
            raise KerasLesionsError(f"the experiments' evaluate.{key} differ ({a!r}, {b!r}): a "
                                    "verdict needs one; set it the same in both configs")
    exp_a, records_a = cnn_aug_records(baseline, log)
    exp_b, records_b = cnn_aug_records(proposed, log)
    if exp_a.layout.root.resolve() == exp_b.layout.root.resolve():
        raise KerasLesionsError("both configs name the same experiment folder: give two "
                                "experiments", exp_a.layout.root)
    if exp_a.class_names != exp_b.class_names:
        raise KerasLesionsError(f"the experiments' classes differ ({', '.join(exp_a.class_names)}"
                                f" and {', '.join(exp_b.class_names)})", exp_b.layout.root)
    pairs = paired_records(records_a, records_b)  # raises for other lesions in a cell
    for a, b in pairs:
        if not np.array_equal(np.asarray(a["y_true"]), np.asarray(b["y_true"])):
            raise KerasLesionsError(
                "the experiments' datasets give lesions of one cell other classes: they are "
                "not the same lesions (another dataset or phantom seed)", exp_b.layout.root)
    if not pairs:
        raise KerasLesionsError("the experiments share no cell (repeat, fold and seed): give "
                                "them the same evaluate.folds, repeats and seeds",
                                exp_b.layout.root)
    patient_a, patient_b = exp_a.patient_of(), exp_b.patient_of()
    shared = set(patient_a) & set(patient_b)
    if any(patient_a[i] != patient_b[i] for i in shared):
        raise KerasLesionsError("the experiments' datasets give one lesion different patients: "
                                "they are not the same lesions", exp_b.layout.root)
    differences = setting_differences(baseline, proposed)
    groups = {(a["repeat"], a["fold"], a["seed"]): (a["group"], b["group"]) for a, b in pairs}
    changed = sum(1 for a, b in groups.values() if a != b)
    choice_text = (f"Each cell's D_aug optimal: {_tally([a for a, _ in groups.values()])} in "
                   f"{baseline.name}, {_tally([b for _, b in groups.values()])} in "
                   f"{proposed.name}; " + (
                       f"{changed} of {len(groups)} cells chose another group, so the arms' "
                       "training sets differ in size there as well (the tables below)."
                       if changed else "every cell chose the same group in both."))
    comparison = exp_a.compare(f"{proposed.name} over {baseline.name}", records_a, records_b)
    summaries = {"baseline": exp_a.summarize(records_a), "proposed": exp_b.summarize(records_b)}
    out = Path(out_dir) if out_dir is not None else \
        exp_b.layout.root.parent / f"compare-{baseline.name}-vs-{proposed.name}"
    write_summary(summaries["baseline"], out, "baseline", f"CNN-AUG of {baseline.name}")
    write_summary(summaries["proposed"], out, "proposed", f"CNN-AUG of {proposed.name}")
    where = {classic.selected_on(c) for c in (baseline, proposed)}
    chosen_on = ("its own validation patients" if where == {"validation"} else
                 "**the test folds** (`evaluate.selection: paper`) in "
                 + " and ".join(c.name for c in (baseline, proposed)
                                if classic.selected_on(c) == "test")
                 + ": test-selected, flattered by that choice")
    lines = [f"# {proposed.name} against {baseline.name}", "", f"**{comparison['verdict']}**", "",
             f"Each experiment's CNN-AUG: every cell's classifiers on that cell's D_aug optimal, "
             f"chosen on {chosen_on}; {comparison['n_cells']} cells paired on "
             f"the same test lesions ({comparison['n_lesions']} lesions, "
             f"{comparison['n_patients']} patients).", "",
             "Settings that differ (nothing else does):", "",
             *([f"- `{d}`" for d in differences] or ["- none"]), "", choice_text, "",
             "## Comparison", "", *comparison_table([comparison]), "",
             "## What each arm trained on", "",
             *prior_table({baseline.name: summaries["baseline"],
                           proposed.name: summaries["proposed"]}), "",
             "Tables per arm: baseline.md, proposed.md."]
    report = out / "compare.md"
    write_text(report, "\n".join(lines) + "\n")
    write_json(out / "compare.json", {"baseline": baseline.name, "proposed": proposed.name,
                                      "differences": differences, "choices": choice_text,
                                      "comparison": comparison})
    return {"comparison": comparison, "differences": differences, "summaries": summaries,
            "choices": choice_text, "report": report}


def _tally(groups: list[str]) -> str:
    counts = {g: groups.count(g) for g in sorted(set(groups))}
    return ", ".join(f"{g} in {n}" for g, n in counts.items()) + f" of {len(groups)}"
