"""From lesion datasets to network input: windowed, resized arrays and tf.data.

The HU → [0, 1] window and the resampling to the network's input size happen
here, on purpose, and nowhere earlier. This module sits above both ``data``
(the lesions) and ``augment`` (whose identity transform renders the original
ROIs), so neither of those imports the other's user.
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
    size = size or dataset.input_size
    indices = range(len(dataset)) if indices is None else indices
    out = np.empty((len(indices), size, size, 1), np.float32)
    # An experiment asks for the same lesions at the same size many times
    # (validation, calibration and test inputs of every run of a cell): each
    # is rendered once per dataset object and size, and again when its lesion
    # or the lesion's images or boxes are replaced.
    rendered = dataset.__dict__.setdefault("_network_inputs", {}).setdefault(
        (size, dataset.intensity_unit, dataset.window_level, dataset.window_width), {})
    for row, i in enumerate(indices):
        lesion = dataset.lesions[i]
        known = rendered.get(int(i))
        if known is not None and _same_lesion(known[0], lesion):
            out[row] = known[1]
            continue
        out[row] = _network_input(lesion, size, dataset.intensity_unit, dataset.window_level,
                                  dataset.window_width)
        rendered[int(i)] = (_lesion_state(lesion), out[row].copy())
    return out


def lesion_inputs(lesions: Sequence, preprocessing: dict) -> np.ndarray:
    """Lesions that belong to no training dataset (new cases to classify) as
    network input, rendered exactly as :func:`roi_inputs` renders a dataset's.

    Args:
        lesions: ``data.Lesion`` objects in the units ``preprocessing`` names.
        preprocessing: :func:`preprocessing_record` of the training dataset.

    Returns:
        float32 [n, size, size, 1] in [0, 1].
    """
    size = int(preprocessing["input_size"])
    out = np.empty((len(lesions), size, size, 1), np.float32)
    for row, lesion in enumerate(lesions):
        out[row] = _network_input(lesion, size, preprocessing["intensity_unit"],
                                  _number(preprocessing["window_level"]),
                                  _number(preprocessing["window_width"]))
    return out


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def _network_input(lesion, size: int, intensity_unit: str, window_level: float,
                   window_width: float) -> np.ndarray:
    """One lesion's original ROI as float32 [size, size, 1] in [0, 1]."""
    from keras_lesions.augment.classic import (
        AffineParams, augment_lesion, lesion_geometry, windowed_context)

    if intensity_unit == "normalized" and not lesion.has_context and lesion.roi.shape == (size,
                                                                                        size):
        # Already network input (e.g. synthetic lesions): resampling a
        # size×size image to size×size would only blur it.
        return np.clip(lesion.roi, 0.0, 1.0)[:, :, None].astype(np.float32)
    context = windowed_context(lesion, window_level, window_width, intensity_unit)
    return augment_lesion(context, lesion_geometry(lesion), [AffineParams()], size=size)[0]


def preprocessing_record(dataset: LesionDataset, size: int | None = None) -> dict:
    """What turns a lesion of ``dataset`` into network input, as a run records
    it (``run.json`` "preprocessing") so that new cases can be classified the
    way its training lesions were: the units, the HU window, the network's
    input side and how the importer cropped the ROIs."""
    extra = dataset.extra or {}
    normalized = dataset.intensity_unit == "normalized"  # no window: recorded as null
    return {"intensity_unit": dataset.intensity_unit,
            "window_level": None if normalized else float(dataset.window_level),
            "window_width": None if normalized else float(dataset.window_width),
            "input_size": int(size or dataset.input_size),
            "resampling": "bicubic with antialiasing (augment.classic.augment_lesion, identity)",
            "roi_margin": extra.get("roi_margin"), "context_margin": extra.get("context_margin"),
            "source": extra.get("importer") or extra.get("generator")}


def _lesion_state(lesion) -> tuple:
    """What the rendering of a lesion reads: its images (by identity), boxes,
    diameter, context flag and mask (by identity)."""
    return (lesion, lesion.context, lesion.roi, tuple(lesion.roi_box), tuple(lesion.lesion_box),
            lesion.has_context, float(lesion.diameter_px), lesion.mask)


def _same_lesion(state: tuple, lesion) -> bool:
    now = _lesion_state(lesion)
    return all(a is b for a, b in zip(state[:3], now[:3])) and state[3:6] == now[3:6] \
        and np.array_equal(state[6], now[6], equal_nan=True) and state[7] is now[7]


def one_hot(labels: Sequence[int], num_classes: int) -> np.ndarray:
    """float32 [n, num_classes] one-hot targets (soft targets use the same shape)."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.zeros((len(labels), num_classes), np.float32)
    out[np.arange(len(labels)), labels] = 1.0
    return out


def _batchable(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Arrays of equal length as contiguous float32 (or int32 for integers).

    Raises:
        ValueError: arrays of different lengths, or no rows.
    """
    arrays = [np.ascontiguousarray(a, np.int32 if np.issubdtype(np.asarray(a).dtype, np.integer)
                                   else np.float32) for a in arrays]
    if any(len(a) != len(arrays[0]) for a in arrays):
        raise ValueError(f"arrays of different lengths: {[len(a) for a in arrays]}")
    if len(arrays[0]) == 0:
        raise ValueError("no rows to batch")
    return arrays


def balanced_pass(classes: np.ndarray, seed: int, index: int) -> np.ndarray:
    """Pass ``index``'s order of the n rows for class-balanced sampling: n
    row indices in which every class present is drawn n/K times (± 1), in a
    random order from (seed, index).

    A class's rows are drawn in shuffled rounds, every row once a round, so a
    minority class's rows repeat equally often and a majority class's rows
    are subsampled without replacement within the pass.
    """
    classes = np.asarray(classes).reshape(-1)
    rng = np.random.default_rng([seed, index])
    present = np.unique(classes)
    n, k = len(classes), len(present)
    # which classes get the n % k extra draws varies with the pass
    extra = rng.permutation(k) < n % k
    parts = []
    for c, plus in zip(present, extra):
        rows = np.flatnonzero(classes == c)
        need = n // k + int(plus)
        rounds = -(-need // len(rows))
        parts.append(np.concatenate([rng.permutation(rows) for _ in range(rounds)])[:need])
    return rng.permutation(np.concatenate(parts))


def _pass_order(n: int, seed: int, index: int, classes: np.ndarray | None) -> np.ndarray:
    """Pass ``index``'s order of n rows: a permutation from (seed, index), or
    a class-balanced draw (:func:`balanced_pass`) when ``classes`` are given."""
    if classes is None:
        return np.random.default_rng([seed, index]).permutation(n)
    return balanced_pass(classes, seed, index)


def epoch_batches(arrays: Sequence[np.ndarray], batch_size: int, seed: int, first_epoch: int,
                  epochs: int, *, drop_remainder: bool, balance_classes: np.ndarray | None = None):
    """Shuffled batches of every epoch from ``first_epoch`` on, as one tf.data stream.

    Epoch e's order depends on (seed, e) only, so a resumed run sees the very
    batches an uninterrupted one would.

    Args:
        arrays: arrays of n rows each (images, and targets or class ids),
            batched together; float arrays become float32, integer ones int32.
        batch_size: rows per batch; a set smaller than one batch is one batch.
        seed: shuffling seed.
        first_epoch, epochs: the epochs ``[first_epoch, epochs)`` to stream.
        drop_remainder: drop each epoch's last partial batch (a different
            rest each epoch), so every batch norm sees full batches (GANs);
            otherwise every row is seen each epoch (the classifier).
        balance_classes: each row's class: every epoch is then a
            class-balanced draw of n rows (:func:`balanced_pass`) instead of
            a permutation (``train.class_balance: sampling``).

    Returns:
        ``(dataset, steps_per_epoch)``: a dataset of one array (or a tuple of
        arrays) per batch, and the number of batches per epoch.
    """
    import tensorflow as tf

    arrays = _batchable(arrays)
    n = len(arrays[0])
    batch = max(1, min(int(batch_size), n))
    steps = n // batch if drop_remainder else -(-n // batch)
    # Each epoch's order from (seed, epoch), drawn here once; tf.data only
    # gathers the rows, in parallel, ahead of the training step.
    used = steps * batch if drop_remainder else n
    orders = np.stack([_pass_order(n, seed, epoch, balance_classes)[:used]
                       for epoch in range(first_epoch, epochs)] or [np.zeros(0, np.int64)])
    tensors = [tf.convert_to_tensor(a) for a in arrays]

    def take(index):
        rows = tuple(tf.gather(t, index) for t in tensors)
        return rows if len(rows) > 1 else rows[0]

    data = tf.data.Dataset.from_tensor_slices(orders.astype(np.int64)).flat_map(
        lambda order: tf.data.Dataset.from_tensor_slices(order).batch(
            batch, drop_remainder=drop_remainder))
    data = data.map(take, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return data.prefetch(tf.data.AUTOTUNE), steps


def step_batches(arrays: Sequence[np.ndarray], batch_size: int, seed: int, first_part: int,
                 parts: int, steps_per_part: int, *, balance_classes: np.ndarray | None = None):
    """A fixed number of SGD steps, whatever the set's size, as one tf.data stream.

    The rows are visited in shuffled passes (pass p's order from (seed, p)),
    laid end to end and cut into full batches, so every row is seen equally
    often (± 1) and every batch is full. The steps are grouped in ``parts``
    of ``steps_per_part`` (the checkpointed "epochs" of a run with
    ``train.steps``); part q's batches depend on (seed, q) only, so a resumed
    run sees the very batches an uninterrupted one would.

    Args:
        arrays: arrays of n rows each, batched together (as ``epoch_batches``).
        batch_size: rows per batch (a set smaller than one batch: n rows).
        seed: shuffling seed.
        first_part, parts: stream the parts ``[first_part, parts)``.
        steps_per_part: batches in each part.
        balance_classes: each row's class: the passes are then
            class-balanced draws (:func:`balanced_pass`), so every class is
            seen equally often (``train.class_balance: sampling``).

    Returns:
        ``(dataset, steps_per_part)``.
    """
    import tensorflow as tf

    arrays = _batchable(arrays)
    n = len(arrays[0])
    batch = max(1, min(int(batch_size), n))
    start, stop = first_part * steps_per_part * batch, parts * steps_per_part * batch
    first_pass, last_pass = start // n, -(-stop // n)
    order = np.concatenate([_pass_order(n, seed, p, balance_classes)
                            for p in range(first_pass, last_pass)] or [np.zeros(0, np.int64)])
    order = order[start - first_pass * n:stop - first_pass * n].reshape(-1, batch)
    tensors = [tf.convert_to_tensor(a) for a in arrays]

    def take(index):
        rows = tuple(tf.gather(t, index) for t in tensors)
        return rows if len(rows) > 1 else rows[0]

    data = tf.data.Dataset.from_tensor_slices(order.astype(np.int64))
    data = data.map(take, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return data.prefetch(tf.data.AUTOTUNE), steps_per_part
