"""Class balance of a classifier's training set (``train.class_balance``).

Real cohorts are rarely balanced (Ben-Cohen et al. 2019 §3.1: 27 healthy ROIs
of 239), and a classifier trained on them as they are learns the majority
class. Beyond the papers, which train on their sets as they are ("none"):

* "weights": each lesion's loss is weighted by ``n / (K · n_c)`` of its class
  c, where n_c is the class's mass in the training set (its count, or for
  soft targets the sum of the targets' column) and K the classes present:
  scikit-learn's "balanced" class weights, extended to soft targets by
  weighting a case by ``Σ_c y_c · w_c``. The weights average to 1 over the
  set, so the loss keeps its scale.
* "sampling": batches drawn with every class equally often
  (``pipeline.balanced_pass``); a case's class is its target's argmax.

Every arm of a comparison applies the same rule to its own training set.
"""
from __future__ import annotations

import numpy as np

NONE, WEIGHTS, SAMPLING = "none", "weights", "sampling"


def class_mass(targets: np.ndarray) -> np.ndarray:
    """float64 [K]: the training set's lesions per class (the targets' column
    sums: counts for one-hot targets)."""
    return np.asarray(targets, np.float64).sum(axis=0)


def class_weights(targets: np.ndarray) -> np.ndarray:
    """float64 [K]: ``n / (K · n_c)`` per class present, 0 for a class without
    training cases (no case carries it)."""
    mass = class_mass(targets)
    present = mass > 0
    weights = np.zeros_like(mass)
    weights[present] = mass.sum() / (present.sum() * mass[present])
    return weights


def sample_weights(targets: np.ndarray) -> np.ndarray:
    """float32 [n]: each case's loss weight under "weights", ``targets · w``."""
    targets = np.asarray(targets, np.float64)
    return (targets @ class_weights(targets)).astype(np.float32)


def balanced_classes(targets: np.ndarray, class_balance: str) -> np.ndarray | None:
    """Each case's class for balanced sampling (the targets' argmax), or None
    when ``class_balance`` does not sample."""
    return np.asarray(targets).argmax(axis=1) if class_balance == SAMPLING else None


def balance_record(targets: np.ndarray, class_names, class_balance: str) -> dict:
    """What a run records of its training set's class prior: the lesions per
    class, their shares, the rule, and the weights it applied."""
    mass = class_mass(targets)
    record = {"class_balance": class_balance,
              "train_class_counts": {name: round(float(m), 3) for name, m in zip(class_names, mass)},
              "train_class_shares": {name: round(float(m / max(mass.sum(), 1e-12)), 4)
                                     for name, m in zip(class_names, mass)}}
    if class_balance == WEIGHTS:
        record["class_weights"] = {name: round(float(w), 4)
                                   for name, w in zip(class_names, class_weights(targets))}
    return record
