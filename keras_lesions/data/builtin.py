"""The built-in dataset as experiments use it: phantoms with their folds."""
from __future__ import annotations

from typing import Callable

from keras_lesions.data.dataset import LesionDataset
from keras_lesions.data.folds import make_patient_folds
from keras_lesions.data.registry import PRESETS
from keras_lesions.errors import KerasLesionsError


def make_phantom_dataset(
    preset: str = "frid-adar-2018",
    seed: int = 0,
    difficulty: float = 0.5,
    *,
    k: int | None = None,
    fold_seed: int | None = None,
    extra_pool: bool = False,
    created_by: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> LesionDataset:
    """Generate the phantom dataset of a preset and store patient-level folds in it.

    Args:
        preset: a name of ``registry.PRESETS``.
        seed: phantom seed (same seed, same dataset).
        difficulty: metastasis/hemangioma overlap δ in [0, 1].
        k: folds to assign (default: the preset's, 3); 0 for none. The extra
            pool never gets folds: it only ever feeds training sets.
        fold_seed: seed of the fold assignment (default: ``seed``).
        extra_pool: the "more real data" pool of new patients instead.
        created_by: provenance recorded in the file.
        progress: ``progress(done, total)`` per lesion.

    Raises:
        KerasLesionsError: unknown preset, bad difficulty, k == 1, or folds
            that cannot be made.
    """
    from keras_lesions.data.phantoms import generate_phantoms

    if preset not in PRESETS:
        raise KerasLesionsError(f"unknown phantom preset {preset!r} (known: {', '.join(PRESETS)})")
    k = PRESETS[preset].k_folds if k is None else k
    if k == 1 or k < 0:
        raise KerasLesionsError(f"folds must be 0 (none) or at least 2, got {k}")
    dataset = generate_phantoms(preset=preset, seed=seed, difficulty=difficulty,
                                pool="extra" if extra_pool else "main", progress=progress)
    dataset.created_by = created_by
    if k and not extra_pool:
        fold_seed = seed if fold_seed is None else fold_seed
        dataset.folds = make_patient_folds(dataset.labels, dataset.patient_ids, k=k,
                                           seed=fold_seed, class_names=dataset.class_names)
        dataset.fold_k, dataset.fold_seed = k, fold_seed
    return dataset
