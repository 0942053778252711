"""The extra real lesions of Fig. 8's green line ("more real data", Frid-Adar §4.2.2).

Phantom experiments only: the preset's extra patient pool (patients never in
the main dataset), augmented like the training folds. "More real data" means
the extra lesions themselves first, then their augmentations: the originals
interleaved by class, the augmentations dealt round-robin over lesions (equal
lesions per class), so every prefix is balanced per class. User datasets have no extra pool: the green line is then
left out, and the report says so.
"""
from __future__ import annotations

import numpy as np

from keras_lesions.data.dataset import read_dataset, write_dataset
from keras_lesions.errors import KerasLesionsError
from keras_lesions.experiments.context import PHANTOM_PREFIX, Experiment
from keras_lesions.experiments.kind import StepContext
from keras_lesions.experiments.plan import RunSpec

EXTRA_POOL = "extra-pool"


def has_extra_pool(exp: Experiment) -> bool:
    return exp.config.synth.more_real_data and exp.config.data.dataset.startswith(PHANTOM_PREFIX)


def extra_pool_spec(exp: Experiment) -> RunSpec:
    return RunSpec(id=EXTRA_POOL, step="extra-pool",
                   output=exp.layout.relative(exp.layout.data_file(f"{EXTRA_POOL}/augment")),
                   title="the extra real pool of the phantom preset, augmented")


def extra_pool_step(exp: Experiment, spec: RunSpec, ctx: StepContext) -> None:
    from keras_lesions.augment import build_augmentation_groups
    from keras_lesions.data.builtin import make_phantom_dataset

    config = exp.config
    dataset_path = exp.layout.data_file(f"{EXTRA_POOL}/dataset")
    if not dataset_path.exists():
        preset = config.data.dataset[len(PHANTOM_PREFIX):]
        ctx.log(f"generating the extra real pool of the {preset} phantoms")
        write_dataset(make_phantom_dataset(preset, config.data.phantom_seed,
                                           config.data.phantom_difficulty, extra_pool=True),
                      dataset_path)
    pool = read_dataset(dataset_path)
    # Every extra lesion is a training lesion: one pseudo-fold, none held out.
    pool.folds, pool.fold_k = np.ones(len(pool), np.int64), 2
    a = config.augment
    needed = max(config.synth.per_class_sizes) * len(pool.class_names)
    build_augmentation_groups(pool, test_fold=0, path=exp.layout.data_file(f"{EXTRA_POOL}/augment"),
                              group_sizes=[needed], n_rot=a.n_rot, n_flip=a.n_flip,
                              n_trans=a.n_trans, n_scale=a.n_scale, seed=a.seed,
                              size=config.classifier.input_size, log=ctx.log)


def extra_pool(exp: Experiment, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` extra real images (the lesions, then their augmentations):
    images [n, S, S, 1], labels [n].

    Raises:
        KerasLesionsError: the pool holds fewer.
    """
    from keras_lesions.augment import read_augmentation_group

    images, labels, meta = read_augmentation_group(
        exp.layout.data_file(f"{EXTRA_POOL}/augment"), 0)
    original = np.asarray(meta["is_original"])
    originals = np.flatnonzero(original)
    # originals class by class in turn: the k-th of each class, then the (k+1)-th
    rank = np.zeros(len(originals), np.int64)
    for c in np.unique(labels[originals]):
        of_class = labels[originals] == c
        rank[of_class] = np.arange(of_class.sum())
    originals = originals[np.lexsort((labels[originals], rank))]
    order = np.concatenate([originals, np.flatnonzero(~original)])
    if n > len(order):
        raise KerasLesionsError(f"the extra real pool has {len(order)} lesions and "
                                f"augmentations, {n} asked for")
    return images[order[:n]], labels[order[:n]]
