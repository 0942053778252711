"""Online classic augmentation inside tf.data (Ben-Cohen et al. 2019 §3.2).

"Online data augmentation was performed showing each case 10 times in each
epoch with different affine transformations including scale, rotation, and
translation." Each epoch here holds every case exactly ``repeats`` times, in a
seeded random order, each showing with its own random rotation, zoom and
shift (the distributions of ``draw_online_params``).

Variable-size contexts cannot be batched, so each lesion is first resampled
once to a fixed square *canvas* (``prepare_online_canvases``): the region of
side ``canvas_ratio`` × ROI side around the ROI centre (real context tissue
where the lesion has it, reflection beyond), resized bicubically with
antialiasing (TensorFlow) to C = canvas_ratio·size pixels, so the ROI spans
about ``size`` canvas pixels for every lesion. The scale relation (ROI side,
diameter, shift limit) is converted to canvas pixels per lesion.

Each showing is then one bicubic affine warp of its canvas straight to the
output (``warp_showings``: OpenCV's ``warpAffine``, one image per call, in a
``tf.numpy_function``), at about one canvas pixel per output pixel (0.85–1.15
with the zoom), so no second low-pass is needed. This is the step that runs
millions of times: OpenCV's warp is several times faster than TensorFlow's
``ImageProjectiveTransformV3`` on a CPU, and the canvas at 1× (not the 2×
grid of the offline groups' ``affine_crop_resize``) is a quarter of the
pixels; ``bench/bench_augment.py`` (run by ``bench/run.py``) measures it
against what the classifiers consume.
OpenCV's cubic kernel is Keys' with a = −0.75 and it places the sample
positions to 1/32 pixel; both are far below what a random zoom and shift
change. Memory: n·C² floats (239 lesions at size 128: 63 MB).

Randomness is stateless and derived only from (seed, epoch, batch index), so a
seed gives the same batches whatever the parallelism; epochs differ because
epoch e folds e into the seed (new order, new transforms). Re-iterating the
returned dataset replays it from ``first_epoch``: for Keras ``fit``, build it
with ``epochs=None`` (an endless sequence of distinct epochs) and pass
``steps_per_epoch=online_steps_per_epoch(...)``, or build one dataset per epoch
with ``first_epoch=e``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import tensorflow as tf

from keras_lesions.augment.classic import (
    FILL_MODES,
    ONLINE_ANGLE_RANGE_DEG,
    ONLINE_ZOOM_RANGE,
    AugmentationError,
    affine_transforms,
    shift_limit,
    windowed_context,
)

# Which warp draws the showings, in the settings of every run trained on them:
# 2 is one OpenCV cubic warp from a 1x canvas (1 was TensorFlow's projective
# transform from an oversampled canvas). Another warp gives other images, so a
# run made with one does not resume with the other.
ONLINE_WARP_VERSION = 2

# fill_mode -> OpenCV border: "reflect" is numpy's "symmetric" (the edge pixel
# repeats), as TensorFlow's REFLECT and the offline path's.
_BORDERS = {"reflect": cv2.BORDER_REFLECT, "nearest": cv2.BORDER_REPLICATE,
            "constant": cv2.BORDER_CONSTANT}


@dataclass(frozen=True)
class OnlineCanvases:
    """Lesions resampled to equal square canvases, with their geometry in canvas pixels.

    Attributes:
        canvases: float32 (n, C, C) in [0, 1].
        centers: float32 (n, 2) ROI centre (row, col) on the canvas.
        roi_sides: float32 (n, 2) ROI side (rows, cols) on the canvas.
        shift_limits: float32 (n,) p = min(4, 0.1·d) context pixels, on the canvas.
        has_context: bool (n,); without context zooms are capped at 1.
        labels: int32 (n,).
        size: output side; the ROI spans about ``size`` canvas pixels.
    """

    canvases: np.ndarray
    centers: np.ndarray
    roi_sides: np.ndarray
    shift_limits: np.ndarray
    has_context: np.ndarray
    labels: np.ndarray
    size: int

    def __len__(self) -> int:
        return len(self.labels)

    def concatenate(self, other: "OnlineCanvases") -> "OnlineCanvases":
        """These cases followed by ``other``'s (same output and canvas size)."""
        if (other.size, other.canvases.shape[1:]) != (self.size, self.canvases.shape[1:]):
            raise AugmentationError(
                f"cannot join canvases of size {self.size} (canvas {self.canvases.shape[1:]}) "
                f"and {other.size} (canvas {other.canvases.shape[1:]})")
        join = lambda name: np.concatenate([getattr(self, name), getattr(other, name)])  # noqa: E731
        return OnlineCanvases(
            canvases=join("canvases"), centers=join("centers"), roi_sides=join("roi_sides"),
            shift_limits=join("shift_limits"), has_context=join("has_context"),
            labels=join("labels"), size=self.size)

    @classmethod
    def from_arrays(cls, contexts: Sequence[np.ndarray], roi_boxes, diameters_px, labels,
                    has_context=None, *, size: int = 64,
                    canvas_ratio: float = 2.0) -> "OnlineCanvases":
        """Build canvases from windowed contexts.

        Args:
            contexts: n float 2-D images in [0, 1] (already windowed), any sizes.
            roi_boxes: (n, 4) half-open (row0, col0, row1, col1) ROI boxes in
                each context.
            diameters_px: (n,) lesion diameters in context pixels.
            labels: (n,) int class indices.
            has_context: (n,) bool, default all True.
            size: output side; the ROI spans about ``size`` canvas pixels.
            canvas_ratio: canvas side over ROI side (2: room for a rotated,
                zoomed, shifted ROI: √2·1.15 ≈ 1.63).

        Raises:
            AugmentationError: mismatched lengths, empty input, bad images or sizes.
        """
        n = len(contexts)
        roi_boxes = np.asarray(roi_boxes, np.float64).reshape(-1, 4) if n else np.zeros((0, 4))
        diameters = np.asarray(diameters_px, np.float64).reshape(-1)
        labels = np.asarray(labels).reshape(-1)
        has_context = (np.ones(n, bool) if has_context is None
                       else np.asarray(has_context, bool).reshape(-1))
        if n == 0:
            raise AugmentationError("no lesions to augment")
        if not (len(roi_boxes) == len(diameters) == len(labels) == len(has_context) == n):
            raise AugmentationError(
                f"contexts ({n}), roi_boxes ({len(roi_boxes)}), diameters ({len(diameters)}), "
                f"labels ({len(labels)}) and has_context ({len(has_context)}) differ in length")
        if isinstance(size, bool) or int(size) != size or size < 4:
            raise AugmentationError(f"size must be an integer ≥ 4, got {size!r}")
        if not canvas_ratio >= 1:
            raise AugmentationError(f"canvas_ratio must be ≥ 1, got {canvas_ratio}")
        if not np.all(np.isfinite(diameters) & (diameters > 0)):
            raise AugmentationError("every lesion diameter must be a positive number of pixels")
        side = max(int(size), int(round(canvas_ratio * size)))
        canvases = np.zeros((n, side, side), np.float32)
        centers = np.zeros((n, 2), np.float32)
        roi_sides = np.zeros((n, 2), np.float32)
        limits = np.zeros(n, np.float32)
        for i, context in enumerate(contexts):
            context = np.asarray(context, np.float32)
            if context.ndim != 2 or min(context.shape) < 2:
                raise AugmentationError(f"context {i} must be a 2-D image, got {context.shape}")
            if not np.isfinite(context).all() or context.min() < 0 or context.max() > 1:
                raise AugmentationError(f"context {i} must lie in [0, 1]: window it first")
            r0, c0, r1, c1 = roi_boxes[i]
            center = np.array([(r0 + r1) / 2, (c0 + c1) / 2])
            region = max(2, math.ceil(canvas_ratio * max(r1 - r0, c1 - c0)))
            top_left = np.round(center - region / 2).astype(int)
            crop = _crop_symmetric(context, top_left, region)
            resized = tf.image.resize(crop[:, :, None], (side, side), method="bicubic",
                                      antialias=True).numpy()[:, :, 0]
            canvases[i] = np.clip(resized, 0.0, 1.0)
            scale = side / region        # canvas pixels per context pixel
            centers[i] = (center - top_left) * scale
            roi_sides[i] = (r1 - r0) * scale, (c1 - c0) * scale
            limits[i] = shift_limit(diameters[i]) * scale
        return cls(canvases=canvases, centers=centers, roi_sides=roi_sides, shift_limits=limits,
                   has_context=has_context, labels=labels.astype(np.int32), size=int(size))


def _crop_symmetric(image: np.ndarray, top_left, side: int) -> np.ndarray:
    """A side×side crop at ``top_left``, reflected (numpy "symmetric") beyond the edges."""
    r0, c0 = (int(v) for v in top_left)
    height, width = image.shape
    pads = ((max(0, -r0), max(0, r0 + side - height)), (max(0, -c0), max(0, c0 + side - width)))
    padded = np.pad(image, pads, mode="symmetric")
    r0, c0 = r0 + pads[0][0], c0 + pads[1][0]
    return padded[r0:r0 + side, c0:c0 + side]


def prepare_online_canvases(dataset, indices: Sequence[int] | None = None, *,
                            size: int | None = None,
                            canvas_ratio: float = 2.0) -> OnlineCanvases:
    """Window and resample the chosen lesions of a ``LesionDataset`` to canvases.

    Args:
        dataset: a ``keras_lesions.data.dataset.LesionDataset``.
        indices: lesions to use (e.g. the training folds); default all.
        size: output side; default ``dataset.input_size``.
        canvas_ratio: see ``OnlineCanvases.from_arrays``.
    """
    indices = range(len(dataset)) if indices is None else [int(i) for i in indices]
    lesions = [dataset.lesions[i] for i in indices]
    contexts, diameters = [], []
    for lesion in lesions:
        contexts.append(windowed_context(lesion, dataset.window_level, dataset.window_width,
                                         dataset.intensity_unit))
        d = float(lesion.diameter_px)
        if not (math.isfinite(d) and d > 0):
            r0, c0, r1, c1 = lesion.lesion_box
            d = float(max(r1 - r0, c1 - c0))
        diameters.append(d)
    return OnlineCanvases.from_arrays(
        contexts, [l.roi_box for l in lesions], diameters, [l.label for l in lesions],
        [l.has_context for l in lesions], size=size or dataset.input_size,
        canvas_ratio=canvas_ratio)


def online_steps_per_epoch(n_cases: int, repeats: int = 10, batch_size: int = 32,
                           drop_remainder: bool = False) -> int:
    """Batches in one epoch of ``online_augmented_dataset``."""
    shown = n_cases * repeats
    return shown // batch_size if drop_remainder else math.ceil(shown / batch_size)


def online_augmented_dataset(source, *, indices: Sequence[int] | None = None, repeats: int = 10,
                             batch_size: int = 32, seed: int = 0, size: int | None = None,
                             epochs: int | None = 1, first_epoch: int = 0, shuffle: bool = True,
                             drop_remainder: bool = False, fill_mode: str = "reflect",
                             targets: np.ndarray | None = None,
                             steps_per_epoch: int | None = None,
                             sample_weights: np.ndarray | None = None) -> tf.data.Dataset:
    """A seeded tf.data pipeline of online-augmented lesions (Ben-Cohen §3.2).

    Args:
        source: a ``LesionDataset`` (with ``indices`` choosing e.g. the
            training folds) or prepared ``OnlineCanvases``.
        indices: lesions of a ``LesionDataset`` to use; default all.
        repeats: showings of every case per epoch (10 in the paper).
        batch_size: images per batch; batches never span two epochs.
        seed: all randomness derives from it, the epoch and the batch index.
        size: output side; default the dataset's ``input_size``.
        epochs: epochs to yield; None for an endless stream (use with
            ``steps_per_epoch``).
        first_epoch: index of the first epoch (its transforms and order).
        shuffle: visit the ``n·repeats`` showings in a seeded random order
            (False: case by case, ``repeats`` times each, for inspection).
        drop_remainder: drop each epoch's last partial batch.
        fill_mode: "reflect", "nearest" or "constant" beyond the canvas.
        targets: optional float (n, classes) per case (one-hot or soft, e.g.
            mixtures of specified factors); yielded instead of the labels.
        steps_per_epoch: yield only the first that many batches of each
            epoch (equal compute for a larger set); each batch is still the
            one the full epoch would yield (it depends on seed, epoch and
            batch index only).
        sample_weights: optional float (n,) loss weight per case (class
            balance, ``keras_lesions.train.balance``); yielded third, where Keras reads
            sample weights.

    Returns:
        A ``tf.data.Dataset`` of (images float32 (B, size, size, 1) in [0, 1],
        labels int32 (B,)), or (images, targets float32 (B, classes)), each
        with the batch's weights float32 (B,) third if ``sample_weights``.

    Raises:
        AugmentationError: bad counts, sizes, seed or fill mode.
    """
    for name, value, low in (("repeats", repeats, 1), ("batch_size", batch_size, 1),
                             ("first_epoch", first_epoch, 0),
                             ("steps_per_epoch", 1 if steps_per_epoch is None else
                              steps_per_epoch, 1)):
        if isinstance(value, bool) or int(value) != value or value < low:
            raise AugmentationError(f"{name} must be an integer ≥ {low}, got {value!r}")
    if epochs is not None and (isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1):
        raise AugmentationError(f"epochs must be None or an integer ≥ 1, got {epochs!r}")
    if fill_mode not in FILL_MODES:
        raise AugmentationError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
    if isinstance(seed, bool) or int(seed) != seed:
        raise AugmentationError(f"seed must be an integer, got {seed!r}")
    if isinstance(source, OnlineCanvases):
        if indices is not None:
            raise AugmentationError("indices selects lesions of a LesionDataset; "
                                    "build OnlineCanvases from the chosen lesions instead")
        if size is not None and size != source.size:
            raise AugmentationError(
                f"the canvases were prepared for size {source.size}, not {size}")
        canvases = source
    else:
        canvases = prepare_online_canvases(source, indices, size=size)

    n = len(canvases)
    if targets is not None:
        targets = np.asarray(targets, np.float32)
        if targets.ndim != 2 or len(targets) != n:
            raise AugmentationError(f"targets must be (cases, classes) for {n} cases, got "
                                    f"{targets.shape}")
    if sample_weights is not None:
        sample_weights = np.asarray(sample_weights, np.float32).reshape(-1)
        if len(sample_weights) != n:
            raise AugmentationError(f"sample_weights must have one weight for each of the {n} "
                                    f"cases, got {len(sample_weights)}")
        weights_all = tf.constant(sample_weights)
    shown = n * int(repeats)
    centers_all = tf.constant(canvases.centers)
    sides_all = tf.constant(canvases.roi_sides)
    limits_all = tf.constant(canvases.shift_limits)
    context_all = tf.constant(canvases.has_context)
    labels_all = tf.constant(canvases.labels if targets is None else targets)
    warp = warp_showings(canvases.canvases, canvases.size, fill_mode)
    base_seed = tf.constant([int(seed) & 0x7FFFFFFF, (int(seed) >> 31) & 0x7FFFFFFF], tf.int64)
    a_lo, a_hi = ONLINE_ANGLE_RANGE_DEG
    z_lo, z_hi = ONLINE_ZOOM_RANGE

    def epoch_batches(epoch):
        epoch_seed = tf.random.experimental.stateless_fold_in(base_seed, epoch)
        if shuffle:
            order = tf.argsort(tf.random.stateless_uniform([shown], epoch_seed))
            # A permutation of n·repeats slots, taken mod n: each case exactly `repeats` times.
            cases = tf.cast(order % n, tf.int32)
        else:
            cases = tf.repeat(tf.range(n, dtype=tf.int32), int(repeats))
        batches = tf.data.Dataset.from_tensor_slices(cases).batch(
            int(batch_size), drop_remainder=drop_remainder)
        if steps_per_epoch is not None:
            batches = batches.take(int(steps_per_epoch))
        return batches.enumerate().map(lambda b, idx: (epoch, b, idx))

    def render(epoch, batch_index, idx):
        batch_seed = tf.random.experimental.stateless_fold_in(
            tf.random.experimental.stateless_fold_in(base_seed, epoch), batch_index + 1)
        count = tf.shape(idx)[0]
        u = tf.random.stateless_uniform(tf.stack([count, 4]), batch_seed)
        angles = tf.constant(math.pi / 180.0) * (a_lo + (a_hi - a_lo) * u[:, 0])
        zoom = z_lo + (z_hi - z_lo) * u[:, 1]
        # No context: no tissue beyond the ROI, so never zoom out past it.
        zoom = tf.where(tf.gather(context_all, idx), zoom, tf.minimum(zoom, 1.0))
        shifts = (2.0 * u[:, 2:4] - 1.0) * tf.gather(limits_all, idx)[:, None]
        transforms = affine_transforms(
            tf.gather(centers_all, idx), tf.gather(sides_all, idx) * zoom[:, None], angles,
            tf.ones([count, 2], tf.float32), shifts, canvases.size)
        images = tf.numpy_function(warp, [idx, transforms], tf.float32, stateful=False)
        images = tf.ensure_shape(images, [None, canvases.size, canvases.size, 1])
        if sample_weights is not None:
            return images, tf.gather(labels_all, idx), tf.gather(weights_all, idx)
        return images, tf.gather(labels_all, idx)

    if epochs is None:
        epoch_ds = tf.data.Dataset.counter(start=int(first_epoch))
    else:
        epoch_ds = tf.data.Dataset.range(int(first_epoch), int(first_epoch) + int(epochs))
    ds = epoch_ds.flat_map(epoch_batches)
    ds = ds.map(render, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def warp_showings(canvases: np.ndarray, size: int, fill_mode: str = "reflect"):
    """The renderer of the online pipeline: ``warp(cases, transforms) -> images``.

    Args:
        canvases: float32 (n, C, C) in [0, 1], kept by reference (not copied).
        size: output side.
        fill_mode: one of ``FILL_MODES``, beyond the canvas.

    Returns:
        A numpy function of int32 ``cases`` (B,) and float32 ``transforms``
        (B, 8) (``affine_transforms`` rows for a ``size`` grid: output pixel
        (x, y) samples canvas point (a0·x + a1·y + a2, b0·x + b1·y + b2)) that
        returns float32 (B, size, size, 1) in [0, 1]: one bicubic OpenCV warp
        per showing (Keys a = −0.75; positions to 1/32 pixel), clipped because
        cubic kernels overshoot at sharp edges.
    """
    border = _BORDERS[fill_mode]
    size = int(size)

    def warp(cases, transforms):
        out = np.empty((len(cases), size, size), np.float32)
        for k, (case, row) in enumerate(zip(cases, transforms)):
            # WARP_INVERSE_MAP: the matrix maps output pixels to canvas pixels,
            # the direction affine_transforms gives (OpenCV releases the GIL).
            cv2.warpAffine(canvases[case], row[:6].reshape(2, 3).astype(np.float64),
                           (size, size), dst=out[k],
                           flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                           borderMode=border, borderValue=0.0)
        np.clip(out, 0.0, 1.0, out=out)
        return out[..., None]
    return warp
