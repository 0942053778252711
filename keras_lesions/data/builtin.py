"""The built-in dataset as experiments use it: phantoms with their folds."""
from __future__ import annotations

from typing import Callable

import numpy as np

from keras_lesions.data.dataset import LesionDataset
from keras_lesions.data.folds import fold_table, make_patient_folds
from keras_lesions.data.registry import PRESETS
from keras_lesions.errors import FoldError, KerasLesionsError


def make_phantom_dataset(
    preset: str = "frid-adar-2018",
    seed: int = 0,
    difficulty: float = 0.5,
    *,
    k: int | None = None,
    fold_seed: int | None = None,
    extra_pool: bool = False,
    class_counts: dict[str, int] | None = None,
    created_by: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> LesionDataset:
    """Generate the phantom dataset of a preset and store patient-level folds in it.

    The folds are assigned and checked on the generator's patient plan before
    any image is drawn, so a request whose folds cannot be made fails at once.

    Args:
        preset: a name of ``registry.PRESETS``.
        seed: phantom seed (same seed, same dataset).
        difficulty: metastasis/hemangioma overlap δ in [0, 1].
        k: folds to assign (default: the preset's, 3); 0 for none. The extra
            pool never gets folds: it only ever feeds training sets.
        fold_seed: seed of the fold assignment (default: ``seed``).
        extra_pool: the "more real data" pool of new patients instead.
        class_counts: lesions per class instead of the pool's default, as
            ``phantoms.generate_phantoms`` takes them (classes left out get 0).
        created_by: provenance recorded in the file.
        progress: ``progress(done, total)`` per lesion.

    Raises:
        KerasLesionsError: unknown preset, bad difficulty or ``class_counts``,
            k == 1.
        FoldError: folds that cannot be made: a class with lesions from fewer
            patients than folds, or one that some fold would lack.
    """
    from keras_lesions.data.phantoms import generate_phantoms, patient_plan

    if preset not in PRESETS:
        raise KerasLesionsError(f"unknown phantom preset {preset!r} (known: {', '.join(PRESETS)})")
    k = PRESETS[preset].k_folds if k is None else k
    if k == 1 or k < 0:
        raise KerasLesionsError(f"folds must be 0 (none) or at least 2, got {k}")
    pool = "extra" if extra_pool else "main"
    folds = None
    if k and not extra_pool:
        fold_seed = seed if fold_seed is None else fold_seed
        class_names = list(PRESETS[preset].class_names)
        plan = patient_plan(preset, seed, pool, class_counts)
        labels = np.array([class_names.index(name) for _, name in plan], dtype=np.int64)
        patient_ids = np.array([patient for patient, _ in plan], dtype=object)
        folds = _checked_folds(labels, patient_ids, k, fold_seed, class_names)
    dataset = generate_phantoms(preset=preset, seed=seed, difficulty=difficulty, pool=pool,
                                class_counts=class_counts, progress=progress)
    dataset.created_by = created_by
    if folds is not None:
        if (not np.array_equal(dataset.labels, labels)
                or list(dataset.patient_ids) != list(patient_ids)):
            raise RuntimeError("the phantom generator did not follow its own patient plan")
        dataset.folds = folds
        dataset.fold_k, dataset.fold_seed = k, fold_seed
    return dataset


def _checked_folds(labels: np.ndarray, patient_ids: np.ndarray, k: int, seed: int,
                   class_names: list[str]) -> np.ndarray:
    """Patient-level folds in which every fold holds every class that has lesions."""
    n_per_class = np.bincount(labels, minlength=len(class_names))
    for name, n in zip(class_names, n_per_class):
        if 0 < n < k:
            raise FoldError(
                f"class {name!r} has only {n} lesion(s), too few for {k} folds: every fold "
                f"needs lesions of every class (ask for more lesions of it, or for fewer folds)")
    try:
        folds = make_patient_folds(labels, patient_ids, k=k, seed=seed, class_names=class_names)
    except FoldError as exc:
        raise FoldError(f"{exc.problem} (ask for more lesions, or for fewer folds)") from None
    table = fold_table(labels, folds, k, len(class_names))
    for c, name in enumerate(class_names):
        empty = [f for f in range(k) if n_per_class[c] and table[f, c] == 0]
        if empty:
            n_patients = len(set(patient_ids[labels == c].tolist()))
            raise FoldError(
                f"class {name!r} ({n_per_class[c]} lesions from {n_patients} patients) cannot "
                f"be spread over all {k} folds: fold {empty[0]} would have none (ask for more "
                f"lesions of it, or for fewer folds)")
    return folds
