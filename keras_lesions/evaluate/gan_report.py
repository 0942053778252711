"""The CNN-AUG-GAN report (Frid-Adar et al. 2018 Fig. 8, Tables 3, 5 and 7, generator quality).

Pure reporting: summaries of finished runs in, Markdown, JSON and PNG out.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_lesions.data.dataset import LesionDataset
from keras_lesions.evaluate.report import write_summary
from keras_lesions.evaluate.verdict import paired_differences, verdict
from keras_lesions.io import save_figure, write_text

def write_gan_report(out: Path, config, names, *, base: str, base_added: int, classic: dict,
                     curves: dict, table5: list, baseline: dict, best: dict, best_group: str,
                     quality: dict, sentence: str, has_extra: bool) -> None:
    """Write gan_report.md, gan_curves.png and the Table 3 files into ``out``.

    Args:
        out: the report folder.
        config: the experiment config (named in the header).
        names: class names.
        base: the base group's name (D_aug optimal, or the config's).
        base_added: augmented samples of the base group.
        classic: the classic curve's result (``crossval.write_curve_report``).
        curves: line label -> points (``point`` per size, 0 = the baseline).
        table5: (row name, summary or None) per synthesis method.
        baseline, best: summaries of CNN-AUG and of CNN-AUG-GAN at the chosen size.
        best_group: the chosen CNN-AUG-GAN group's name.
        quality: fold -> GAN kind -> quality report.
        sentence: the verdict (``evaluate.verdict``).
        has_extra: whether the "more real data" line exists.
    """
    write_summary(best, out, "gan_table3_best_synthetic", f"CNN-AUG-GAN at {best_group} (Table 3)")
    write_text(out / "gan_report.md", _markdown(config, base, names, curves, table5, baseline, best,
                                                quality, sentence, has_extra))
    _write_curves_png(classic, curves, out / "gan_curves.png", base_added, len(names))


def mean_kid(quality: dict, kind: str) -> float:
    """Mean KID over folds and classes of one GAN kind (NaN when not measured)."""
    values = [q["kid_mean"] for by_kind in quality.values() if kind in by_kind
              for q in by_kind[kind]["per_class"].values()]
    return float(np.mean(values)) if values else float("nan")


def point(summary: dict) -> dict:
    return {"accuracy": summary["pooled"]["accuracy"],
            "fold_mean": summary["accuracy"]["mean"], "fold_std": summary["accuracy"]["std"],
            "weighted_specificity": summary["pooled"]["weighted_specificity"]}


def diff_augment_verdict(best, swap, main_policy, swap_policy, quality) -> str:
    """Whether DiffAugment helped the classifier, at the same synthetic size,
    with the mean KID of both kinds of generators."""
    with_policy, without = (swap, best) if main_policy == "off" else (best, swap)
    kid = {kind: mean_kid(quality, kind) for kind in ("dcgan", "dcgan_diffaug_swap")}
    kid_with = kid["dcgan_diffaug_swap"] if main_policy == "off" else kid["dcgan"]
    kid_without = kid["dcgan"] if main_policy == "off" else kid["dcgan_diffaug_swap"]
    policy = swap_policy if main_policy == "off" else main_policy
    sentence = verdict(f"DiffAugment ({policy}) for the GANs",
                       paired_differences(without["per_fold"], with_policy["per_fold"]),
                       without["pooled"]["accuracy"], with_policy["pooled"]["accuracy"])
    return (f"{sentence[:-1]}, at the same synthetic size; mean KID ×1000 "
            f"{1000 * kid_without:.2f} without, {1000 * kid_with:.2f} with (lower is closer to "
            "the real lesions).")


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

def write_synthetic_grid(real_images, real_labels, synth: LesionDataset, names, fold: int,
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
    fig.suptitle(f"real training ROIs (D_aug) and DCGAN lesions, fold {fold}", fontsize=10)
    save_figure(fig, path, dpi=100)
