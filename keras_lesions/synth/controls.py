"""Controls for the mixtures of specified factors: the same soft targets without the codes.

The proposed classifier of Ben-Cohen et al. 2019 (§2.2) trains on real
lesions plus mixtures G_R(r, c_mix) with soft targets. A gain over the
baseline could come from the disentangled codes, or only from training on
soft targets, which regularise a classifier by themselves (label smoothing,
mixup). Each control here keeps, case for case, a mixture's soft target and
its real source lesion, and replaces the decoded image:

- ``label-smoothing``: the source lesion itself. The soft target then acts as
  a per-image label smoothing (with ``alpha`` random it is rather label
  noise: the own class keeps 1/classes of the target on average, as in the
  mixtures).
- ``mixup``: the pixel mixture Σ_j α_j · x_j of the source (own class) and, for
  each other class j, a lesion drawn at random from that class's training
  lesions (Zhang et al. 2018's mixup with the mixtures' proportions, its
  partners random instead of nearest in code).

Trained with the proposed classifier's number of cases and SGD steps, they
tell a gain from the codes apart from a gain from soft targets
(``experiments.mixture``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from keras_lesions.config import MIXTURE_CONTROLS
from keras_lesions.errors import MixtureError
from keras_lesions.synth.mixture import soft_image_dataset

if TYPE_CHECKING:
    from keras_lesions.data.dataset import LesionDataset


def mixture_sources(dataset: "LesionDataset", mixed: "LesionDataset") -> np.ndarray:
    """Index in ``dataset`` of each mixture's source lesion (the one whose r it keeps).

    Raises:
        MixtureError: a mixture without a recorded source, or whose source
            ``dataset`` lacks.
    """
    position = {lesion_id: i for i, lesion_id in enumerate(dataset.lesion_ids.tolist())}
    sources = []
    for lesion in mixed.lesions:
        source = lesion.attributes.get("r_from")
        if source not in position:
            raise MixtureError(f"mixture {lesion.lesion_id} names source lesion {source!r}, "
                               "which the dataset lacks")
        sources.append(position[source])
    return np.array(sources, np.int64)


def control_dataset(control: str, dataset: "LesionDataset", mixed: "LesionDataset",
                    fit_indices: Sequence[int], seed: int = 0, *,
                    created_by: str = "") -> "LesionDataset":
    """One control's training cases: as many as ``mixed``, with its soft targets.

    Args:
        control: one of ``MIXTURE_CONTROLS``.
        dataset: the real dataset (the mixtures' sources index it).
        mixed: the mixtures (``synth.mixture.mixture_dataset``).
        fit_indices: the training lesions the mixtures were made from; the
            mixup partners are drawn from them (never validation or test).
        seed: the mixup partners.

    Returns:
        A lesion dataset in the mixtures' format (context-less ROIs of the
        mixtures' size, soft labels).

    Raises:
        MixtureError: an unknown control, mixtures without soft labels, or
            whose sources are not among ``fit_indices``.
    """
    from keras_lesions.pipeline import roi_inputs

    if control not in MIXTURE_CONTROLS:
        raise MixtureError(f"unknown control {control!r} (known: {', '.join(MIXTURE_CONTROLS)})")
    if mixed.soft_labels is None:
        raise MixtureError("the mixtures carry no soft labels")
    fit_indices = np.asarray(fit_indices, np.int64)
    sources = mixture_sources(dataset, mixed)
    if not np.isin(sources, fit_indices).all():
        raise MixtureError("a mixture's source lesion is not among the training lesions")
    size = int(mixed.input_size)
    soft = np.asarray(mixed.soft_labels, np.float64)
    attributes = [{"proportions": lesion.attributes.get("proportions", {})}
                  for lesion in mixed.lesions]
    if control == "label-smoothing":
        images = roi_inputs(dataset, sources, size)
    else:
        images, partners = mixup_images(dataset, fit_indices, sources, soft, size, seed)
        names = list(dataset.class_names)
        ids = dataset.lesion_ids
        for row, entry in enumerate(attributes):
            entry["mixed_with"] = {names[j]: str(ids[partners[row, j]])
                                   for j in range(len(names))
                                   if partners[row, j] >= 0 and soft[row, j] > 0}
    return soft_image_dataset(
        dataset, images, soft, sources, id_prefix=f"{control}-s{int(seed)}", what=control,
        attributes=attributes, created_by=created_by,
        description=f"{len(images)} {control} control cases for {mixed.description}",
        extra={**mixed.extra, "kind": f"mixture-control:{control}", "control_seed": int(seed)})


def mixup_images(dataset, fit_indices: np.ndarray, sources: np.ndarray, soft: np.ndarray,
                 size: int, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """x = Σ_j soft[:, j] · x_j: the source for its own class, a random training
    lesion for every other class with a share (classes absent from the
    training lesions keep none: the mixtures gave them none either).

    Returns:
        images float32 [n, S, S, 1], partners int (n, classes) (-1: none).
    """
    from keras_lesions.pipeline import roi_inputs

    rng = np.random.default_rng(seed)
    labels = dataset.labels
    n, k = soft.shape
    partners = np.full((n, k), -1, np.int64)
    partners[np.arange(n), labels[sources]] = sources
    for j in range(k):
        members = fit_indices[labels[fit_indices] == j]
        wanted = (labels[sources] != j) & (soft[:, j] > 0)
        if wanted.any() and len(members) == 0:
            raise MixtureError(f"the mixtures give class {dataset.class_names[j]} a share but "
                               "the training lesions hold none")
        if wanted.any():
            partners[wanted, j] = rng.choice(members, size=int(wanted.sum()))
    images = np.zeros((n, size, size, 1), np.float32)
    for j in range(k):
        rows = np.flatnonzero(partners[:, j] >= 0)
        if len(rows) == 0:
            continue
        # the own class's partner is the source itself
        pictures = roi_inputs(dataset, partners[rows, j], size)
        images[rows] += soft[rows, j][:, None, None, None].astype(np.float32) * pictures
    return np.clip(images, 0.0, 1.0).astype(np.float32), partners
