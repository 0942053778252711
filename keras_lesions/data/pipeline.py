"""From lesion datasets to network input: windowed, resized arrays and tf.data.

The HU → [0, 1] window and the resampling to the network's input size happen
here, on purpose, and nowhere earlier.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from keras_lesions.data.dataset import LesionDataset


def roi_inputs(dataset: LesionDataset, indices: Sequence[int] | None = None,
               size: int | None = None) -> np.ndarray:
    """The original ROIs as network input.

    Args:
        dataset: a dataset read with images.
        indices: which lesions (default: all).
        size: output side (default: the dataset's ``input_size``).

    Returns:
        float32 [n, size, size, 1] in [0, 1]: HU windowed with the dataset's
        window (normalized datasets as they are), resized bicubically.

    The ROIs go through the very code that renders the original ROIs of the
    training groups (the identity augmentation), so test, serving and
    training inputs are resampled identically.
    """
    from keras_lesions.augment.classic import (
        AffineParams, augment_lesion, lesion_geometry, windowed_context)

    size = size or dataset.input_size
    indices = range(len(dataset)) if indices is None else indices
    out = np.empty((len(indices), size, size, 1), np.float32)
    for row, i in enumerate(indices):
        lesion = dataset.lesions[i]
        if (dataset.intensity_unit == "normalized" and not lesion.has_context
                and lesion.roi.shape == (size, size)):
            # Already network input (e.g. synthetic lesions): resampling a
            # size×size image to size×size would only blur it.
            out[row, :, :, 0] = np.clip(lesion.roi, 0.0, 1.0)
            continue
        context = windowed_context(lesion, dataset.window_level, dataset.window_width,
                                   dataset.intensity_unit)
        out[row] = augment_lesion(context, lesion_geometry(lesion), [AffineParams()],
                                  size=size)[0]
    return out


def one_hot(labels: Sequence[int], num_classes: int) -> np.ndarray:
    """float32 [n, num_classes] one-hot targets (soft targets use the same shape)."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.zeros((len(labels), num_classes), np.float32)
    out[np.arange(len(labels)), labels] = 1.0
    return out


def training_dataset(images: np.ndarray, targets: np.ndarray, batch_size: int, seed: int):
    """A shuffled, batched, prefetched ``tf.data.Dataset`` of in-memory arrays.

    Shuffling is seeded and reshuffles each epoch, so runs repeat exactly for
    a seed.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, targets))
    ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
