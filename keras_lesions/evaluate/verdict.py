"""The one "did it help?" sentence, for every comparison of two training schemes.

A difference is called a gain (or a loss) only when the 95% confidence
interval of the mean paired difference excludes zero; otherwise the sentence
says no difference was shown, and gives the interval. The unit of pairing is
a (fold, seed) cell: both arms tested on the same lesions.
"""
from __future__ import annotations

import math
from typing import Sequence

from keras_lesions.evaluate.metrics import mean_std_ci


def paired_differences(baseline: Sequence[dict], proposed: Sequence[dict]) -> list[dict]:
    """Per (fold, seed) cell both arms ran: their accuracies and the difference.

    Args:
        baseline, proposed: ``summarize_predictions(...)["per_fold"]`` rows
            (``{"fold", "seed", "accuracy"}``).
    """
    base = {(r["fold"], r["seed"]): r["accuracy"] for r in baseline}
    return [{"fold": r["fold"], "seed": r["seed"], "baseline": base[(r["fold"], r["seed"])],
             "proposed": r["accuracy"], "difference": r["accuracy"] - base[(r["fold"], r["seed"])]}
            for r in sorted(proposed, key=lambda r: (r["seed"], r["fold"]))
            if (r["fold"], r["seed"]) in base]


def verdict(what: str, pairs: Sequence[dict], baseline_accuracy: float | None = None,
            proposed_accuracy: float | None = None) -> str:
    """One honest sentence on whether ``what`` helped.

    Args:
        what: the subject, e.g. "Synthetic augmentation", "The mixtures".
        pairs: :func:`paired_differences` rows.
        baseline_accuracy, proposed_accuracy: pooled total accuracies, shown
            beside the per-fold figures when given.

    Returns:
        "<what> helped / hurt / did not help detectably: ..." with the mean
        difference, its 95% t interval, the per-fold differences and how many
        improved.
    """
    differences = [p["difference"] for p in pairs]
    stats = mean_std_ci(differences)
    low, high = stats["ci95"]
    improved = sum(d > 0 for d in differences)
    n = len(differences)
    if n == 0:
        return f"{what}: no pair of runs to compare."
    if n > 1 and low > 0:
        head = f"{what} helped"
    elif n > 1 and high < 0:
        head = f"{what} hurt"
    else:
        head = f"{what} did not help detectably"
    interval = (f"95% CI [{100 * low:+.1f}, {100 * high:+.1f}]" if not math.isnan(low)
                else "no interval from a single fold and seed, so no gain is claimed")
    pooled = ""
    if baseline_accuracy is not None and proposed_accuracy is not None:
        pooled = (f"total accuracy {100 * baseline_accuracy:.1f}% → {100 * proposed_accuracy:.1f}% "
                  f"({100 * (proposed_accuracy - baseline_accuracy):+.1f} points); ")
    per_fold = ", ".join(f"{100 * d:+.1f}" for d in differences)
    return (f"{head}: {pooled}mean difference per fold {100 * stats['mean']:+.1f} points "
            f"({interval}; per fold {per_fold}; {improved} of {n} improved; std of the "
            f"differences {100 * stats['std']:.1f}).")
