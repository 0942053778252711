"""DiffAugment: differentiable augmentation of a discriminator's inputs.

Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training" (beyond Frid-Adar et al. 2018): the GAN trainers apply it to real
and generated images whenever D sees them. Pure Keras ops, so gradients pass
through to G.
"""
from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from keras_lesions.config import DIFF_AUGMENT_POLICIES
from keras_lesions.errors import KerasLesionsError


class DiffAugment:
    """Differentiable augmentation of D's inputs (Zhao et al. 2020, beyond the paper).

    "Differentiable Augmentation for Data-Efficient GAN Training": the same
    policy of random, differentiable transforms is applied to real and fake
    images whenever D sees them, in D's and in G's step, so D cannot memorise
    a small training set and G's gradients pass through the transforms. Each
    call draws fresh parameters per image.

    Transforms, on images in [-1, 1] (our implementation, pure Keras ops):

    - ``translation``: shift by whole pixels, up to 1/8 of the side in each
      direction, filling with 0 (as zero padding then cropping would).
    - ``cutout``: set a square of half the side, centred anywhere in the
      image (it may leave the image), to 0.
    - ``color``: brightness (add U[-0.5, 0.5)) then contrast (scale the
      deviation from the image mean by U[0.5, 1.5)); Zhao et al.'s saturation
      step is skipped, the images being greyscale.

    Drawing parameters (:meth:`draw`) is split from applying them
    (:meth:`apply`), so a test or a figure can apply chosen parameters.

    Args:
        policy: comma-separated transform names from ``translation``,
            ``cutout``, ``color``, applied in the given order; "" = identity.
        translation_ratio: largest shift as a fraction of the side (1/8).
        cutout_ratio: side of the cutout square as a fraction of the side (1/2).

    Raises:
        KerasLesionsError: an unknown or repeated transform name.
    """

    def __init__(self, policy: str | Sequence[str] = "", translation_ratio: float = 0.125,
                 cutout_ratio: float = 0.5):
        names = [p.strip() for p in policy.split(",")] if isinstance(policy, str) \
            else [str(p).strip() for p in policy]
        names = [p for p in names if p]
        unknown = sorted(set(names) - set(DIFF_AUGMENT_POLICIES))
        if unknown:
            raise KerasLesionsError(
                f"unknown DiffAugment transform {unknown[0]!r} "
                f"(known: {', '.join(DIFF_AUGMENT_POLICIES)})")
        if len(set(names)) != len(names):
            raise KerasLesionsError(f"DiffAugment policy repeats a transform: {policy!r}")
        self.policy = tuple(names)
        self.translation_ratio = float(translation_ratio)
        self.cutout_ratio = float(cutout_ratio)

    def get_config(self) -> dict:
        return {"policy": ",".join(self.policy), "translation_ratio": self.translation_ratio,
                "cutout_ratio": self.cutout_ratio}

    def __call__(self, images, seed_generator: keras.random.SeedGenerator):
        """Augment a batch: ``apply(images, draw(batch, seed_generator))``.

        Args:
            images: float [batch, H, W, C] in [-1, 1].
            seed_generator: the trainer's noise source.

        Returns:
            float [batch, H, W, C], differentiable with respect to ``images``.
        """
        if not self.policy:
            return images
        return self.apply(images, self.draw(ops.shape(images)[0], seed_generator))

    def draw(self, batch_size, seed_generator: keras.random.SeedGenerator) -> dict:
        """Random parameters for one batch: uniforms in [0, 1), one row per image.

        Returns:
            ``{"translation": [batch, 2], "cutout": [batch, 2], "color":
            [batch, 2]}`` for the transforms of the policy.
        """
        return {name: keras.random.uniform((batch_size, 2), seed=seed_generator)
                for name in self.policy}

    def apply(self, images, params: dict):
        """Apply drawn parameters (see :meth:`draw`) in the policy's order."""
        for name in self.policy:
            images = getattr(self, f"_{name}")(images, params[name])
        return images

    def _color(self, images, u):
        images = images + (u[:, 0] - 0.5)[:, None, None, None]  # brightness
        mean = ops.mean(images, axis=(1, 2, 3), keepdims=True)
        return (images - mean) * (u[:, 1] + 0.5)[:, None, None, None] + mean  # contrast

    def _translation(self, images, u):
        height, width = images.shape[1], images.shape[2]

        def shift_matrix(size, fraction):
            # Row i of the [batch, size, size] matrix picks source pixel i − shift;
            # sources outside the image give all-zero rows (the zero fill).
            largest = int(size * self.translation_ratio + 0.5)
            shift = ops.floor(fraction * (2 * largest + 1)) - largest
            source = ops.arange(size, dtype="float32")[None, :] - shift[:, None]
            inside = ops.cast((source >= 0) & (source < size), images.dtype)
            picks = ops.one_hot(ops.cast(ops.clip(source, 0, size - 1), "int32"), size,
                                dtype=images.dtype)
            return picks * inside[:, :, None]

        rows = shift_matrix(height, u[:, 0])
        cols = shift_matrix(width, u[:, 1])
        return ops.einsum("bik,bklc,bjl->bijc", rows, images, cols)

    def _cutout(self, images, u):
        height, width = images.shape[1], images.shape[2]

        def covered(size, fraction):
            side = int(size * self.cutout_ratio + 0.5)
            start = ops.floor(fraction * size) - side // 2
            index = ops.arange(size, dtype="float32")[None, :]
            return (index >= start[:, None]) & (index < start[:, None] + side)

        hole = covered(height, u[:, 0])[:, :, None] & covered(width, u[:, 1])[:, None, :]
        return images * (1.0 - ops.cast(hole, images.dtype))[:, :, :, None]
