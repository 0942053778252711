"""The CNN-AUG-GAN report (Frid-Adar et al. 2018 Fig. 8, Tables 3, 5 and 7, generator quality).

Pure reporting: summaries of finished runs in, Markdown, JSON and PNG out.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_lesions.data.dataset import LesionDataset
from keras_lesions.evaluate.primary import label as metric_label
from keras_lesions.evaluate.report import BALANCE_WORDS, prior_table, write_summary
from keras_lesions.evaluate.verdict import comparison_table, interval_text
from keras_lesions.io import save_figure, write_text

def write_gan_report(out: Path, config, names, *, classic: dict, comparisons: dict,
                     summaries: dict, curves: dict, sizes: dict, quality: dict, sentence: str,
                     has_extra: bool, selected_on: str,
                     selection_effect: dict | None = None, appendix=()) -> None:
    """Write gan_report.md, gan_curves.png and the Table 3 files into ``out``.

    Args:
        out: the report folder.
        config: the experiment config (named in the header).
        names: class names.
        classic: the classic curve's result (``crossval.write_curve_report``).
        comparisons: key -> ``verdict.compare_arms`` result.
        summaries: arm -> ``summarize_predictions`` summary (Table 5).
        curves: line label -> points per synthetic size, with intervals.
        sizes: method -> cell -> its chosen synthetic size per class.
        quality: cell -> GAN kind -> quality report.
        sentence: the headline verdict.
        has_extra: whether the "more real data" line exists.
        selected_on: "validation" or "test": what the choices read.
        selection_effect: arm -> accuracy with the validation choices and
            with the choices the test folds would have made
            (``gan_curve.selection_effect``).
        appendix: Markdown lines added at the end (Table 6, Fig. 9).
    """
    write_summary(summaries["DCGAN"], out, "gan_table3_best_synthetic",
                  "CNN-AUG-GAN at each cell's chosen synthetic size (Table 3)")
    markdown = _markdown(config, names, classic, comparisons, summaries, curves, sizes, quality,
                         sentence, has_extra, selected_on, selection_effect or {})
    if appendix:  # e.g. Table 6 and Fig. 9 (evaluate.baselines)
        markdown += "\n" + "\n".join(appendix) + "\n"
    write_text(out / "gan_report.md", markdown)
    _write_curves_png(classic, curves, out / "gan_curves.png")


def _pct(value) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"


def _markdown(config, names, classic, comparisons, summaries, curves, sizes, quality, verdict,
              has_extra, selected_on, selection_effect) -> str:
    evaluate = config.evaluate
    lines = [f"# CNN-AUG-GAN on {config.data.dataset} ({config.name})", "", f"**{verdict}**", ""]
    if selected_on == "validation":
        lines.append(f"Choices (each cell's D_aug optimal and each method's synthetic size) were "
                     f"made on validation patients: {100 * evaluate.validation_fraction:.0f}% of "
                     "each fold's training patients, stratified by class, held out from every "
                     "network; each test fold was predicted once, after every choice.")
    else:
        lines.append("**Test-selected** (`evaluate.selection: paper`): D_aug optimal and the "
                     "synthetic sizes were read off the pooled test folds, as in the paper. "
                     "Every figure below is flattered by that choice.")
    budget = (f"every classifier took {config.train.steps} SGD steps whatever its training-set "
              "size (equal compute)" if config.train.steps else
              f"every classifier took {config.train.epochs} epochs over its own set, so larger "
              "sets got more SGD steps (the verdicts say by how much)")
    lines += ["", f"{evaluate.repeats} repeat(s) of {len(evaluate.folds)}-fold patient-level "
              f"cross-validation × {len(evaluate.seeds)} seed(s); {budget}. GANs: "
              f"{config.gan.epochs} epochs, width {config.gan.width}, DiffAugment "
              f"{config.gan.diff_augment or 'off'}.", "",
              "## Comparisons", ""] + comparison_table(comparisons.values())
    headline = comparisons.get("DCGAN")
    if headline and headline.get("n_cells") and np.isfinite(headline["detectable_difference"]):
        lines += ["", f"With {headline['n_lesions']} lesions and {100 * headline['discordance']:.0f}% "
                  "of them classified differently by the two arms, this experiment could detect "
                  f"differences of about {100 * headline['detectable_difference']:.0f} points "
                  "(80% power, 5% level)."]
    lines += ["", "Verdicts:", ""] + [f"- {c['verdict']}" for c in comparisons.values()]
    lines += ["", "## What each arm trained on", "",
              f"Lesions per class per run (mean over its runs; augmented and synthetic lesions "
              f"included): the class prior each classifier learned. "
              f"`train.class_balance: {config.train.class_balance}` for every arm "
              f"({BALANCE_WORDS[config.train.class_balance]}). The verdicts read "
              f"{metric_label(evaluate.primary_metric)} (`evaluate.primary_metric`) and call a "
              f"gain 'helped' only if no class's sensitivity fell by more than "
              f"{100 * evaluate.class_sensitivity_margin:g} points.", "", *prior_table(summaries)]
    lines += ["", "## Accuracy vs synthetic lesions added (Fig. 8)", "",
              "Every size, not only the chosen one; the difference is to CNN-AUG on the same "
              "cells.", "", "| line | added per class | test accuracy [95% CI] | difference to "
              "CNN-AUG [95% CI] | balanced accuracy | outcome (primary metric) |",
              "|---|---|---|---|---|---|"]
    for label, points in curves.items():
        for p in points:
            lines.append(f"| {label} | {p['added_per_class']} | {_pct(p['accuracy'])}% "
                         f"[{_pct(p['accuracy_ci95'][0])}, {_pct(p['accuracy_ci95'][1])}] | "
                         f"{100 * p['difference']:+.1f} [{interval_text(p['ci95'])}] | "
                         f"{_pct(p.get('balanced_accuracy', float('nan')))}% | "
                         f"{p.get('outcome', '')} |")
    if not has_extra:
        lines += ["", "No extra real pool (user dataset): the 'more real data' line is absent."]
    lines += ["", "Chosen synthetic size per class, per cell:", "",
              "| method | " + " | ".join(next(iter(sizes.values()), {}).keys()) + " |",
              "|---" * (1 + len(next(iter(sizes.values()), {}))) + "|"]
    for method, by_cell in sizes.items():
        lines.append(f"| {method} | " + " | ".join(str(v) for v in by_cell.values()) + " |")
    if selected_on == "validation" and selection_effect:
        lines += ["", "## What choosing on the test folds would have reported", "",
                  "The papers read D_aug optimal (smallest group within one point of total "
                  "accuracy of the best) and the "
                  "synthetic size (the best) off the pooled test folds. Every alternative was "
                  "trained here, so the test folds tell what that rule would have printed for "
                  "the same runs: the optimism a test-fold choice adds. Pooled test accuracy, "
                  "mean over the cross-validations; the GAN arms keep each cell's validated "
                  "D_aug optimal."
                  + ("" if evaluate.primary_metric == "accuracy" else
                     f" Here the validation choices maximised {metric_label(evaluate.primary_metric)}"
                     ", not total accuracy, so the column also holds the effect of choosing on "
                     "another metric, not only the optimism of the test folds."), "",
                  "| arm | chosen among | choices on validation patients | choices on the test "
                  "folds | optimism |", "|---|---|---|---|---|"]
        for arm, e in selection_effect.items():
            among = ("1 (nothing to choose)" if e.get("options") == 1 else
                     f"{e.get('options')} {'groups' if arm == 'CNN-AUG' else 'sizes'}")
            lines.append(f"| {arm} | {among} | {_pct(e['validation'])}% | {_pct(e['test'])}% | "
                         f"{100 * e['optimism']:+.1f} |")
    lines += ["", "## Table 5: synthesis methods", "",
              "| method | accuracy | weighted specificity | per cell mean ± sample std | "
              "balanced accuracy | majority-class baseline |", "|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        lines.append(f"| {name} | {_pct(s['pooled']['accuracy'])}% | "
                     f"{_pct(s['pooled']['weighted_specificity'])}% | "
                     f"{_pct(s['accuracy']['mean'])} ± {_pct(s['accuracy']['std'])} | "
                     f"{_pct(s['pooled'].get('balanced_accuracy', float('nan')))}% | "
                     f"{_pct(s['pooled'].get('majority_accuracy', float('nan')))}% |")
    if headline and headline.get("n_cells"):
        lines += ["", "## Table 7: per-class sensitivity and specificity (95% patient-bootstrap "
                  "intervals; Wilson at 0% and 100%)",
                  "", "| class | CNN-AUG sensitivity | CNN-AUG specificity | CNN-AUG-GAN "
                  "sensitivity | CNN-AUG-GAN specificity |", "|---|---|---|---|---|"]
        for name in names:
            entry = headline["per_class"][name]
            cells = []
            for arm in ("baseline", "proposed"):
                for metric in ("sensitivity", "specificity"):
                    v = entry[arm][metric]
                    cells.append(f"{_pct(v['value'])}% [{_pct(v['ci95'][0])}, "
                                 f"{_pct(v['ci95'][1])}]")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Table 3 (confusion matrix of CNN-AUG-GAN): gan_table3_best_synthetic.md", ""]
    lines += _quality_markdown(quality, names)
    return "\n".join(lines) + "\n"


def _quality_markdown(quality: dict, names) -> list[str]:
    lines = ["## Generator quality", "",
             "Against the test fold's real lesions, which neither the generators nor the "
             "feature extractor (the cell's CNN-AUG classifier) trained on. 'real vs real': the "
             "same measure between two samples of real lesions of the same sizes — what no "
             "difference at all looks like at this sample size. Memorisation: the share of "
             "synthetic lesions closer to a training lesion than that lesion's own nearest real "
             "neighbour (originals / originals and their augmentations). Two-sample AUC: a small "
             "classifier telling real from synthetic lesions it did not train on (0.5: "
             "indistinguishable).", "",
             "| cell | GAN | class | FID | FID real vs real | KID ×1000 [95% CI] | KID ×1000 "
             "real vs real | memorised (orig. / +aug.) | two-sample AUC [95% CI] |",
             "|---|---|---|---|---|---|---|---|---|"]
    flagged, note = False, None
    for cell, by_kind in quality.items():
        for kind, report in by_kind.items():
            note = report.get("note", note)
            for name in names:
                q = report["per_class"].get(name)
                if not q:
                    continue
                reliable = q.get("fid_reliable", False)
                flagged |= not reliable
                fid = f"{q['fid']:.1f}" + ("" if reliable else " ⚠")
                base = q.get("baseline", {})
                kid_ci = q.get("kid_ci95", [float("nan")] * 2)
                mem = q.get("memorisation", {})
                two = q.get("two_sample", {})
                lines.append(
                    f"| {cell} | {kind} | {name} | {fid} | {base.get('fid_mean', float('nan')):.1f} | "
                    f"{1000 * q['kid_mean']:.2f} [{1000 * kid_ci[0]:.2f}, {1000 * kid_ci[1]:.2f}] | "
                    f"{1000 * base.get('kid_mean', float('nan')):.2f} | "
                    f"{_percent(_share(mem, 'originals'))} / {_percent(_share(mem, 'augmented'))} | "
                    f"{two.get('auc', float('nan')):.2f} [{two.get('ci95', [float('nan')] * 2)[0]:.2f}, "
                    f"{two.get('ci95', [float('nan')] * 2)[1]:.2f}] |")
    if flagged:
        lines += ["", "⚠ FID from fewer samples than it needs (see the real-vs-real column: "
                  "FID is biased upwards at small n, so only its difference to that baseline "
                  "means anything; prefer KID, which is unbiased)."]
    if note:
        lines += ["", f"Features: {note}"]
    return lines


def _percent(value) -> str:
    """A share as "12.3%", or "n/a" (no augmented copies: a base of originals only)."""
    text = _pct(value)
    return text if text == "n/a" else f"{text}%"


def _share(memorisation: dict, reference: str) -> float:
    entry = memorisation.get(reference) or {}
    return entry.get("share_closer_than_own_neighbour", float("nan"))


def _write_curves_png(classic: dict, curves: dict, path: Path) -> None:
    """Fig. 8 as the experiment measures it: test accuracy vs synthetic (or
    extra) lesions added per class, with 95% intervals, CNN-AUG at 0."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    colors = {"DCGAN": "tab:blue", "more real data": "tab:green", "classic control": "tab:red",
              "ACGAN": "tab:purple"}
    for label, points in curves.items():
        x = [p["added_per_class"] for p in points]
        y = [100 * p["accuracy"] for p in points]
        err = [[100 * (p["accuracy"] - p["accuracy_ci95"][0]) for p in points],
               [100 * (p["accuracy_ci95"][1] - p["accuracy"]) for p in points]]
        ax.errorbar(x, y, yerr=err, marker="s", capsize=3, color=colors.get(label), label=label)
    ax.set_xlabel("lesions added per class to each cell's D_aug optimal")
    ax.set_ylabel("test accuracy (%), 95% CI")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)


def write_synthetic_grid(real_images, real_labels, synth: LesionDataset, names, cell: str,
                          path: Path, per_row: int = 8) -> None:
    """Real training ROIs beside synthetic ones, a pair of rows per class."""
    from matplotlib.figure import Figure

    from keras_lesions.pipeline import roi_inputs

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
    fig.suptitle(f"real training ROIs (D_aug) and DCGAN lesions, {cell}", fontsize=10)
    save_figure(fig, path, dpi=100)
