"""The mixture experiment's report (Ben-Cohen et al. 2019 Tables 2 and 3).

Pure reporting: summaries and run histories in, Markdown out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from keras_lesions.evaluate.report import BALANCE_WORDS, count_text, prior_table
from keras_lesions.evaluate.verdict import comparison_table
from keras_lesions.runs.folder import read_done
from keras_lesions.runs.history import read_history


# Each control (synth.controls) in a sentence, and what replaces the
# decoded mixture in it.
CONTROL_TITLES = {"label-smoothing": "label smoothing with the mixtures' soft targets",
                  "mixup": "mixup with random partners and the mixtures' soft targets"}
CONTROL_IMAGES = {"label-smoothing": "the mixture's real source lesion",
                  "mixup": "a pixel mixture of the source and random lesions of the other "
                           "classes, in the mixture's proportions"}


def adversary_summary(disentangle_dirs: Sequence[Path]) -> dict:
    """The adversary's accuracy on E_R's code per disentanglement run, and chance."""
    runs, chance = [], []
    for run_dir in map(Path, disentangle_dirs):
        history = read_history(run_dir / "history.csv")
        done = read_done(run_dir)
        runs.append({"repeat": done.get("repeat", 0), "fold": done["fold"],
                     "seed": done["seed"],
                     "first": history[0]["adv_accuracy"], "last": history[-1]["adv_accuracy"],
                     "val": history[-1]["val_adv_accuracy"],
                     "val_rec": history[-1]["val_rec_loss"],
                     "curve": [row["adv_accuracy"] for row in history],
                     "val_curve": [row["val_adv_accuracy"] for row in history]})
        chance.append(done.get("chance_accuracy", float("nan")))
    return {"runs": runs, "chance": float(np.nanmean(chance)) if chance else float("nan")}


def mixture_markdown(config, dataset, summaries: dict[str, dict], rows: Sequence[dict],
                     sentence: str, adversary: dict, pictures: Sequence[Path],
                     comparisons: dict[str, dict], attribution: str, swap: str) -> str:
    """The report: the verdict and every comparison with its intervals,
    Table 2 (accuracy per cell), Table 3 (confusion matrices), the adversary
    against chance, and what the arms were trained on.

    Args:
        summaries: ``report.summarize_predictions`` per arm ("baseline",
            "proposed", "control-<name>").
        comparisons: ``verdict.compare_arms`` results, the mixtures against
            the baseline under "mixtures" first.
        attribution: whether a gain can be credited to the codes; the
            comparisons against the controls follow it as a list.
        swap: what the swap test says of the decoder (does it draw what its
            specified code says?).
    """
    names = list(dataset.class_names)
    baseline, proposed = summaries["baseline"], summaries["proposed"]

    def pct(v):
        return f"{100 * v:.1f}"

    controls = list(config.mixture.controls)
    lines = [f"# Mixture of specified factors: {config.name}", "",
             f"Dataset: {len(dataset)} lesions ({', '.join(f'{k} {v}' for k, v in dataset.class_counts().items())}), "
             f"{config.disentangle.input_size}×{config.disentangle.input_size}; "
             f"networks at width {config.disentangle.width}, code size "
             f"{config.disentangle.code_size}; {config.disentangle.classifier_epochs} classifier "
             f"epochs, {config.disentangle.epochs} disentanglement epochs, every case shown "
             f"{config.disentangle.repeats}× per epoch; "
             f"{100 * config.disentangle.validation_fraction:.0f}% of each training set's "
             f"patients held out for validation (best epoch kept); mixtures: "
             f"{config.mixture.per_image} per training image, alpha {config.mixture.alpha}; "
             f"controls: {', '.join(controls) or 'none'}; "
             f"{config.evaluate.repeats} repeat(s) of the {len(config.evaluate.folds)}-fold "
             f"cross-validation × {len(config.evaluate.seeds)} seed(s).", "",
             f"**{sentence}**", "", attribution, ""]
    lines += [f"- {c['verdict']}" for key, c in comparisons.items()
              if key.startswith("mixtures-vs-")]
    lines += ["", swap, "", "## Comparisons", ""] + comparison_table(comparisons.values())
    lines += ["", "What each arm trained on (cases per class per run, mixtures by their soft "
              f"targets' mass; `train.class_balance: {config.train.class_balance}`, "
              f"{BALANCE_WORDS[config.train.class_balance]}):", "", *prior_table(summaries)]
    main = comparisons.get("mixtures", {})
    if main.get("n_cells"):
        lines += ["", "Detectable difference (80% power, 5% level) of the main comparison: "
                  + (f"about {100 * main['detectable_difference']:.0f} points."
                     if np.isfinite(main["detectable_difference"]) else "none: too few lesions."),
                  ""]
    if controls:
        lines += ["The controls train like the proposed classifier (the same real images, as "
                  "many extra cases as there are mixtures, each with its mixture's soft target, "
                  "the same SGD steps) but replace the decoded mixture image: "
                  + "; ".join(f"**{c}** — {CONTROL_IMAGES[c]}" for c in controls)
                  + ". A gain is credited to the disentangled codes only if it holds against "
                  "every control.", ""]
    lines += ["## Table 2: accuracy with and without the proposed training scheme", "",
              "| repeat | fold | seed | baseline [acc. %] | proposed [acc. %] | difference |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['repeat']} | {r['fold']} | {r['seed']} | {pct(r['baseline'])} | "
                     f"{pct(r['proposed'])} | {100 * r['difference']:+.1f} |")
    b, p = baseline["accuracy"], proposed["accuracy"]
    lines.append(f"| avg. | | | {pct(b['mean'])} ± {pct(b['std'])} | "
                 f"{pct(p['mean'])} ± {pct(p['std'])} | "
                 f"{100 * (p['mean'] - b['mean']):+.1f} |")
    lines += ["", "Our ± is the sample std over the cells (ddof = 1); the paper's may be the "
              "population std (it does not say). Paper (Ben-Cohen et al. 2019, Table 2, real "
              "CT): 67.6 ± 2.0 → 75.0 ± 5.8.", "",
              "## Table 3: confusion matrices (rows: ground truth, columns: predicted), "
              "summed over the test folds, averaged over the repeats", ""]
    arms = [("Classic training scheme", baseline), ("Proposed training scheme", proposed)]
    arms += [(f"Control: {c}", summaries[f"control-{c}"]) for c in controls]
    for title, summary in arms:
        lines += [f"**{title}** (total accuracy {pct(summary['pooled']['accuracy'])}%)", "",
                  "| GT \\ predicted | " + " | ".join(names) + " |",
                  "|---" * (len(names) + 1) + "|"]
        for name, row in zip(names, summary["confusion"]):
            lines.append(f"| {name} | " + " | ".join(count_text(v) for v in row) + " |")
        lines.append("")
    lines += ["## Disentanglement", "",
              "Adversary accuracy on E_R's code (the last epoch; chance is the largest class "
              f"share, {100 * adversary['chance']:.1f}% on the fit sets):", "",
              "| repeat | fold | seed | first epoch (train) | last epoch (train) | validation | "
              "reconstruction MSE (val) |", "|---|---|---|---|---|---|---|"]
    for entry in adversary["runs"]:
        lines.append(f"| {entry['repeat']} | {entry['fold']} | {entry['seed']} | "
                     f"{pct(entry['first'])} | {pct(entry['last'])} | {pct(entry['val'])} | "
                     f"{entry['val_rec']:.4f} |")
    below = [e for e in adversary["runs"] if e["val"] < adversary["chance"] - 0.1]
    if below:
        lines += ["", f"On {len(below)} of {len(adversary['runs'])} runs the adversary ends "
                  "well below chance on validation: maximising its cross-entropy (λ < 0) "
                  "pushes E_R's code to point at wrong classes rather than at none, so r "
                  "still carries class information, only inverted. The paper's loss allows "
                  "this; read the swap grid with it in mind."]
    per_image = config.mixture.per_image
    lines += ["", f"The proposed classifier trains on its real images and {per_image} "
              "mixture(s) per real image, in the baseline's number of SGD steps per epoch "
              "(equal compute: each case is shown proportionally less often); both keep "
              "their best epoch on the validation patients."]
    if config.mixture.alpha == "random":
        lines += ["", "alpha random is our reading of §2.2 (\"different random proportion of "
                  "each one\"): proportions drawn uniformly on the simplex, so an image's own "
                  f"class keeps 1/{len(names)} of its target on average."]
    lines += ["", "Pictures: " + ", ".join(f"`{Path(p).name}`" for p in pictures), "",
              "Per-class sensitivity and specificity: "
              + ", ".join(f"`{arm}.md`" for arm in summaries) + ".", ""]
    return "\n".join(lines)
