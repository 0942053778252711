"""Batched inference: a network's outputs over many inputs, as numpy.

Networks are called directly in inference mode (``training=False``: batch
norm's moving statistics, no dropout) rather than through ``Model.predict``,
which builds a new ``tf.function`` per model and warns about retracing when
an experiment trains many of them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_BATCH_SIZE = 256


def predict(model, inputs: np.ndarray | Sequence[np.ndarray], batch_size: int = DEFAULT_BATCH_SIZE):
    """``model(inputs, training=False)`` batch by batch.

    Args:
        model: a Keras model (or any callable taking ``training=``).
        inputs: one array [n, ...], or a list of arrays of n rows each for a
            model with several inputs (an ACGAN generator's [z, class_id]).
        batch_size: rows per forward pass.

    Returns:
        float32 numpy [n, ...]; a dict of such arrays for a model with named
        outputs (an ACGAN discriminator's {"real", "class"}).
    """
    import keras

    several = isinstance(inputs, (list, tuple))
    arrays = [np.asarray(a) for a in inputs] if several else [np.asarray(inputs)]
    n = len(arrays[0])
    if n == 0:
        return _empty(model)
    chunks = []
    for start in range(0, n, batch_size):
        batch = [a[start:start + batch_size] for a in arrays]
        chunks.append(keras.tree.map_structure(
            lambda t: np.asarray(keras.ops.convert_to_numpy(t)),
            model(batch if several else batch[0], training=False)))
    if isinstance(chunks[0], dict):
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    return np.concatenate(chunks)


def _empty(model):
    shape = model.output_shape
    if isinstance(shape, dict):
        return {k: np.zeros((0,) + tuple(s[1:]), np.float32) for k, s in shape.items()}
    return np.zeros((0,) + tuple(shape[1:]), np.float32)
