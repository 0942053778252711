"""FLOPs per image of a Keras model, counted from its layers.

Only the layers that carry the arithmetic are counted: ``Conv2D``,
``Conv2DTranspose`` and ``Dense`` (a multiply-add is 2 FLOPs). Batch norm,
activations, pooling and the optimizer's update are elementwise and left out,
so the counts are a slight undercount of the work, and the GFLOP/s derived
from them a slight undercount of the speed.

A training step costs about 3× the forward pass of every network it
differentiates (the forward pass, then the gradients with respect to the
inputs and to the weights, each about as costly as the forward pass), 2× for
a network it only back-propagates through (gradients to the inputs only,
e.g. D in the generator's step) and 1× for a network it only runs.
"""
from __future__ import annotations

import math

import keras


def _spatial(shape) -> int:
    """Product of the dimensions between batch and channels (1 for [B, C])."""
    return int(math.prod(int(d) for d in shape[1:-1]))


def forward_flops(model: keras.Model) -> int:
    """FLOPs of one image's forward pass through a built functional ``model``
    (nested models are counted through)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += forward_flops(layer)
        elif isinstance(layer, keras.layers.Conv2DTranspose):
            # every input pixel scatters a k×k×C_out patch of its C_in channels
            kh, kw = layer.kernel_size
            c_in = int(layer.input.shape[-1])
            total += 2 * _spatial(layer.input.shape) * c_in * kh * kw * layer.filters
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            c_in = int(layer.input.shape[-1]) // layer.groups
            total += 2 * _spatial(layer.output.shape) * layer.filters * kh * kw * c_in
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * _spatial(layer.output.shape) * int(layer.input.shape[-1]) * layer.units
    return total
