"""Classic augmentation of lesion ROIs: draw parameters, then apply them.

Frid-Adar et al. 2018 §3.1 builds, for every lesion ROI, ``N_rot`` random
rotations θ ∈ [0°, 180°] and, for each rotated ROI, the ROI itself, ``N_flip``
flips (up-down, left-right, both), ``N_trans`` translations by random
[x, y] ∈ (−p, p) with p = min(4, 0.1·d) pixels, and ``N_scale`` re-crops with a
tissue margin s ∈ [0.1·d, 0.4·d] around the lesion (d: lesion diameter in
pixels); every result is resized to 64×64 with bicubic interpolation. That is
N = N_rot·(1 + N_flip + N_trans + N_scale) images per lesion (480 for 30, 3, 7,
5). Ben-Cohen et al. 2019 §3.2 instead augments online (random scale, rotation
and translation each time a case is shown); see ``keras_lesions.augment.online``.

Drawing and applying are separate steps, as in Keras' augmentation layers:
``draw_offline_params`` / ``draw_online_params`` return frozen ``AffineParams``
(plain numbers, storable next to the images), and ``augment_lesion`` applies any
list of them to one lesion in a single batched TensorFlow call.

Geometry of one augmented image (all lengths in context pixels)::

    out(q) = context(P + R(θ)⁻¹ · F · (q − t))

where q is a position in the output crop relative to its centre, t the shift
(``shift_px``: the content moves by t), F the flip (diag(±1, ±1)), R(θ) the
rotation (positive θ turns the content counter-clockwise on screen, like
``np.rot90``), and P the crop centre: the ROI centre for the ROI's own crop, the
lesion centre for scale re-crops ("we kept the ROI centered around the
lesion", §3.1). Rotating about the crop centre *inside the context* means the
corners of a rotated crop hold real tissue instead of padding. Where a crop
runs past the context, pixels are filled by reflection about the context edge
(``fill_mode="reflect"``, numpy's "symmetric"); black padding would teach the
classifier that rotated images have dark corners.

Resampling happens twice, both in TensorFlow and batched: one bilinear
``ImageProjectiveTransformV3`` maps an intermediate grid at about the native
resolution of the crop (at most ``oversample·size`` pixels across) to context
coordinates and does rotation, flip, shift and crop in a single pass; then an
antialiased bicubic resize brings it to ``size`` (the papers' bicubic resize;
the antialias low-pass matters when a large ROI shrinks by several times):
``tf.image.resize(..., "bicubic", antialias=True)``'s weights, applied as two
matrix products (``resize_bicubic_antialiased``). Contexts whose largest crop
exceeds ``oversample·size`` pixels are first shrunk once per lesion with the
same antialiased bicubic resize, so the bilinear pass never skips pixels.
Results are clipped to [0, 1] because bicubic kernels overshoot at sharp
edges.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import tensorflow as tf

from keras_lesions.data.imaging import window
from keras_lesions.errors import KerasLesionsError


class AugmentationError(KerasLesionsError):
    """Augmentation arguments or inputs are unusable (one clear line)."""


# ----------------------------------------------------------------- paper facts

# §3.1: random rotation angles θ ∈ [0°, 180°]; flips cover the other half turn.
OFFLINE_ANGLE_RANGE_DEG: tuple[float, float] = (0.0, 180.0)
# §3.1: translations in (−p, p) with p = min(4, 0.1·d) pixels.
MAX_SHIFT_PX: float = 4.0
SHIFT_FRACTION_OF_DIAMETER: float = 0.1
# §3.1: tissue margin s ∈ [0.1·d, 0.4·d]; crop side d + 2s ∈ [1.2·d, 1.8·d].
MARGIN_FRACTION_RANGE: tuple[float, float] = (0.1, 0.4)
# §3.1 flips "up-down, left-right" with N_flip = 3: the third is both at once.
FLIP_MODES: tuple[str, ...] = ("none", "ud", "lr", "both")
_FLIP_SIGNS = {"none": (1.0, 1.0), "ud": (-1.0, 1.0), "lr": (1.0, -1.0), "both": (-1.0, -1.0)}

# Ben-Cohen §3.2 names scale, rotation and translation but gives no ranges.
# Our choice: any angle (no flips in that recipe, so the full turn), a zoom of
# the ROI's own crop by ±15 % (about the spread of Frid-Adar's margins around a
# typical ROI), and Frid-Adar's translation rule.
ONLINE_ANGLE_RANGE_DEG: tuple[float, float] = (-180.0, 180.0)
ONLINE_ZOOM_RANGE: tuple[float, float] = (0.85, 1.15)

KINDS: tuple[str, ...] = ("original", "rotation", "flip", "translation", "scale", "online")
FILL_MODES: tuple[str, ...] = ("reflect", "nearest", "constant")

# Images per ImageProjectiveTransformV3 call: bounds memory (256 × 128² floats
# is 16 MiB) while keeping the per-call overhead small.
_CHUNK = 256


@dataclass(frozen=True)
class AffineParams:
    """One drawn augmentation: plain numbers, applied later by ``augment_lesion``.

    Attributes:
        angle_deg: rotation of the content about the crop centre, degrees,
            counter-clockwise on screen.
        flip: one of ``FLIP_MODES``; applied after the rotation ("each rotated
            ROI was flipped", §3.1).
        shift_px: (dy, dx) displacement of the content in context pixels
            (positive dy moves it down), applied after rotation and flip.
        margin: tissue margin s in context pixels for a scale re-crop of side
            d + 2s centred on the lesion, or None for the ROI's own crop.
        zoom: multiplies the side of the ROI's own crop (online scale);
            ignored when ``margin`` is set. Below 1 zooms in.
        kind: which §3.1 branch drew it (one of ``KINDS``), for provenance.
    """

    angle_deg: float = 0.0
    flip: str = "none"
    shift_px: tuple[float, float] = (0.0, 0.0)
    margin: float | None = None
    zoom: float = 1.0
    kind: str = "original"

    def __post_init__(self):
        if self.flip not in FLIP_MODES:
            raise AugmentationError(f"flip must be one of {FLIP_MODES}, got {self.flip!r}")
        if self.kind not in KINDS:
            raise AugmentationError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if len(self.shift_px) != 2 or not all(math.isfinite(v) for v in self.shift_px):
            raise AugmentationError(f"shift_px must be two finite numbers, got {self.shift_px!r}")
        if self.margin is not None and not (math.isfinite(self.margin) and self.margin >= 0):
            raise AugmentationError(f"margin must be None or ≥ 0, got {self.margin!r}")
        if not (math.isfinite(self.zoom) and self.zoom > 0):
            raise AugmentationError(f"zoom must be > 0, got {self.zoom!r}")
        if not math.isfinite(self.angle_deg):
            raise AugmentationError(f"angle_deg must be finite, got {self.angle_deg!r}")


def shift_limit(diameter_px: float) -> float:
    """p = min(4, 0.1·d): the translation bound of §3.1, in pixels."""
    return min(MAX_SHIFT_PX, SHIFT_FRACTION_OF_DIAMETER * float(diameter_px))


def n_offline_augmentations(n_rot: int = 30, n_flip: int = 3, n_trans: int = 7,
                            n_scale: int = 5) -> int:
    """N = N_rot·(1 + N_flip + N_trans + N_scale) of §3.1 (480 for the defaults)."""
    return n_rot * (1 + n_flip + n_trans + n_scale)


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check_diameter(diameter_px) -> float:
    d = float(diameter_px)
    if not (math.isfinite(d) and d > 0):
        raise AugmentationError(f"the lesion diameter must be a positive number of pixels, got {d}")
    return d


def _check_count(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or int(value) != value:
        raise AugmentationError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f"≥ {low}"
        raise AugmentationError(f"{name} must be {bound}, got {value}")
    return value


def draw_offline_params(diameter_px: float, n_rot: int = 30, n_flip: int = 3, n_trans: int = 7,
                        n_scale: int = 5, rng: np.random.Generator | int | None = None,
                        ) -> list[AffineParams]:
    """Draw the N augmentations of one lesion exactly as Frid-Adar §3.1.

    For each of ``n_rot`` angles θ ~ U[0°, 180°]: the rotated ROI itself, then
    its first ``n_flip`` flips of (up-down, left-right, both), ``n_trans``
    translations (dy, dx) ~ U(−p, p)² with p = min(4, 0.1·d), and ``n_scale``
    re-crops with tissue margin s ~ U[0.1·d, 0.4·d] (crop side d + 2s).

    Args:
        diameter_px: lesion diameter d in context pixels (> 0).
        n_rot: rotations (≥ 1).
        n_flip: flips per rotation, 0 to 3 (there are only three distinct ones).
        n_trans: translations per rotation (≥ 0).
        n_scale: scale re-crops per rotation (≥ 0).
        rng: a numpy Generator or a seed.

    Returns:
        N = n_rot·(1 + n_flip + n_trans + n_scale) ``AffineParams``, grouped by
        rotation in the order [itself, flips, translations, scales].

    Raises:
        AugmentationError: a non-positive diameter or a count out of range.
    """
    d = _check_diameter(diameter_px)
    n_rot = _check_count("n_rot", n_rot, 1)
    n_flip = _check_count("n_flip", n_flip, 0, 3)
    n_trans = _check_count("n_trans", n_trans, 0)
    n_scale = _check_count("n_scale", n_scale, 0)
    rng = _rng(rng)
    p = shift_limit(d)
    low, high = (f * d for f in MARGIN_FRACTION_RANGE)
    params: list[AffineParams] = []
    for angle in rng.uniform(*OFFLINE_ANGLE_RANGE_DEG, size=n_rot):
        angle = float(angle)
        params.append(AffineParams(angle_deg=angle, kind="rotation"))
        params.extend(AffineParams(angle_deg=angle, flip=flip, kind="flip")
                      for flip in FLIP_MODES[1:1 + n_flip])
        for dy, dx in rng.uniform(-p, p, size=(n_trans, 2)):
            params.append(AffineParams(angle_deg=angle, shift_px=(float(dy), float(dx)),
                                       kind="translation"))
        for margin in rng.uniform(low, high, size=n_scale):
            params.append(AffineParams(angle_deg=angle, margin=float(margin), kind="scale"))
    return params


def draw_online_params(diameter_px: float, n: int, rng: np.random.Generator | int | None = None,
                       ) -> list[AffineParams]:
    """Draw ``n`` online augmentations (Ben-Cohen §3.2: scale, rotation, translation).

    The same distributions as the tf.data pipeline of
    ``keras_lesions.augment.online`` (which draws them with stateless TF ops
    instead): θ ~ U[−180°, 180°), zoom of the ROI's own crop ~ U[0.85, 1.15]
    (our choice, the paper gives no range), (dy, dx) ~ U(−p, p)² with
    p = min(4, 0.1·d) (Frid-Adar's rule), no flips.

    Args:
        diameter_px: lesion diameter d in context pixels (> 0).
        n: how many to draw (≥ 0).
        rng: a numpy Generator or a seed.

    Returns:
        ``n`` ``AffineParams`` of kind "online".

    Raises:
        AugmentationError: a non-positive diameter or a negative count.
    """
    d = _check_diameter(diameter_px)
    n = _check_count("n", n, 0)
    rng = _rng(rng)
    p = shift_limit(d)
    angles = rng.uniform(*ONLINE_ANGLE_RANGE_DEG, size=n)
    zooms = rng.uniform(*ONLINE_ZOOM_RANGE, size=n)
    shifts = rng.uniform(-p, p, size=(n, 2))
    return [AffineParams(angle_deg=float(a), zoom=float(z), shift_px=(float(s[0]), float(s[1])),
                         kind="online") for a, z, s in zip(angles, zooms, shifts)]


# ----------------------------------------------------------------- geometry


@dataclass(frozen=True)
class LesionGeometry:
    """Where a lesion sits in its context, in continuous pixel coordinates.

    Pixel (i, j) covers [i, i+1) × [j, j+1), so a half-open box (r0, c0, r1, c1)
    has its centre at ((r0 + r1)/2, (c0 + c1)/2).

    Attributes:
        context_shape: (H, W) of the context image.
        roi_center: (row, col) centre of the ROI box.
        roi_side: (rows, cols) of the ROI box.
        lesion_center: (row, col) centre of the lesion box.
        diameter_px: lesion diameter d in context pixels.
        has_context: False when the context is the ROI itself (no tissue beyond
            it): scale re-crops then zoom within the ROI, see ``resolve_params``.
    """

    context_shape: tuple[int, int]
    roi_center: tuple[float, float]
    roi_side: tuple[float, float]
    lesion_center: tuple[float, float]
    diameter_px: float
    has_context: bool = True

    @classmethod
    def from_boxes(cls, context_shape, roi_box, lesion_box, diameter_px, has_context=True):
        """Build from the dataset's half-open (row0, col0, row1, col1) boxes."""
        r0, c0, r1, c1 = (float(v) for v in roi_box)
        l0, k0, l1, k1 = (float(v) for v in lesion_box)
        return cls(context_shape=(int(context_shape[0]), int(context_shape[1])),
                   roi_center=((r0 + r1) / 2, (c0 + c1) / 2), roi_side=(r1 - r0, c1 - c0),
                   lesion_center=((l0 + l1) / 2, (k0 + k1) / 2),
                   diameter_px=_check_diameter(diameter_px), has_context=bool(has_context))

    @property
    def reference_side(self) -> float:
        """The largest crop side §3.1 asks for: the ROI or d + 2·0.4·d."""
        return max(self.roi_side[0], self.roi_side[1],
                   (1 + 2 * MARGIN_FRACTION_RANGE[1]) * self.diameter_px)


def lesion_geometry(lesion) -> LesionGeometry:
    """``LesionGeometry`` of a ``keras_lesions.data.dataset.Lesion``.

    A missing diameter (NaN) falls back to the longer side of the lesion box.
    """
    diameter = float(lesion.diameter_px)
    if not (math.isfinite(diameter) and diameter > 0):
        r0, c0, r1, c1 = lesion.lesion_box
        diameter = float(max(r1 - r0, c1 - c0))
    return LesionGeometry.from_boxes(lesion.context.shape, lesion.roi_box, lesion.lesion_box,
                                     diameter, lesion.has_context)


def windowed_context(lesion, window_level: float, window_width: float,
                     intensity_unit: str = "HU") -> np.ndarray:
    """The lesion's context as float32 in [0, 1], ready for ``augment_lesion``.

    HU datasets go through the display window (W400/L50 by default, the same
    ``imaging.window`` every other input path uses); normalized ones are
    already in [0, 1] and are only clipped.
    """
    if intensity_unit == "normalized":
        return np.clip(np.asarray(lesion.context, np.float32), 0.0, 1.0)
    return window(lesion.context, window_level, window_width)


@dataclass(frozen=True)
class ResolvedParams:
    """Params turned into per-image arrays in context pixels (float32).

    Attributes:
        centers: (B, 2) crop centres (row, col).
        sides: (B, 2) crop sides (rows, cols).
        angles_rad: (B,) rotation angles in radians.
        flip_signs: (B, 2) ±1 for (rows, cols).
        shifts: (B, 2) content displacement (dy, dx).
        fallback: (B,) bool, True where a scale re-crop was replaced by a zoom
            within the ROI because the lesion has no context.
    """

    centers: np.ndarray
    sides: np.ndarray
    angles_rad: np.ndarray
    flip_signs: np.ndarray
    shifts: np.ndarray
    fallback: np.ndarray

    def sampled_bounds(self) -> np.ndarray:
        """(B, 4) float (row0, col0, row1, col1): the box of context each image samples.

        The corners q of the crop, relative to its centre, map to
        P + R⁻¹·F·(q − t); the box spans the four mapped corners.
        """
        corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], float) / 2
        q = corners[None] * self.sides[:, None, :] - self.shifts[:, None, :]   # (B, 4, 2)
        u = q * self.flip_signs[:, None, :]
        cos, sin = np.cos(self.angles_rad)[:, None], np.sin(self.angles_rad)[:, None]
        rows = self.centers[:, None, 0] + cos * u[..., 0] + sin * u[..., 1]
        cols = self.centers[:, None, 1] - sin * u[..., 0] + cos * u[..., 1]
        return np.stack([rows.min(1), cols.min(1), rows.max(1), cols.max(1)], axis=1)


def resolve_params(params: Sequence[AffineParams], geometry: LesionGeometry) -> ResolvedParams:
    """Turn ``AffineParams`` into crop centres and sides for one lesion.

    The ROI's own crop is centred on the ROI box with its side times ``zoom``;
    a scale re-crop is a square of side d + 2·margin centred on the lesion.

    Without context (``geometry.has_context`` False, the context is the ROI)
    there is no tissue beyond the ROI to re-crop, so scaling falls back to
    zooming within the ROI: a margin maps proportionally onto
    side = ROI side · (d + 2s) / (1.8·d), so the widest margin of §3.1 gives
    the whole ROI and narrower ones zoom in; the centre stays on the lesion,
    moved just enough to keep the crop inside the ROI. A ``zoom`` above 1 is
    capped at 1 for the same reason.
    """
    n = len(params)
    centers = np.zeros((n, 2))
    sides = np.zeros((n, 2))
    fallback = np.zeros(n, bool)
    roi_side = np.asarray(geometry.roi_side, float)
    d = geometry.diameter_px
    widest = 1 + 2 * MARGIN_FRACTION_RANGE[1]
    for i, p in enumerate(params):
        if p.margin is None:
            zoom = p.zoom if geometry.has_context else min(p.zoom, 1.0)
            centers[i] = geometry.roi_center
            sides[i] = roi_side * zoom
        elif geometry.has_context:
            centers[i] = geometry.lesion_center
            sides[i] = d + 2 * p.margin
        else:
            fallback[i] = True
            side = roi_side * min(1.0, (d + 2 * p.margin) / (widest * d))
            low = side / 2
            high = np.asarray(geometry.context_shape, float) - side / 2
            centers[i] = np.clip(geometry.lesion_center, low, np.maximum(low, high))
            sides[i] = side
    return ResolvedParams(
        centers=centers.astype(np.float32), sides=sides.astype(np.float32),
        angles_rad=np.deg2rad([p.angle_deg for p in params]).astype(np.float32).reshape(n),
        flip_signs=np.array([_FLIP_SIGNS[p.flip] for p in params], np.float32).reshape(n, 2),
        shifts=np.array([p.shift_px for p in params], np.float32).reshape(n, 2),
        fallback=fallback)


# ----------------------------------------------------------------- application


def affine_transforms(centers, sides, angles_rad, flip_signs, shifts, grid_size):
    """The (B, 8) rows of ``ImageProjectiveTransformV3`` for ``out = context(P + R⁻¹F(q − t))``.

    Each row maps an output pixel index (x = col, y = row) of a
    ``grid_size``×``grid_size`` grid spanning the crop to a context pixel index.
    Pixel centres sit at index + 0.5 in continuous coordinates, hence the −0.5.

    Args:
        centers, sides, flip_signs, shifts: (B, 2) float32 tensors, (row, col).
        angles_rad: (B,) float32.
        grid_size: scalar, pixels across the intermediate grid.

    Returns:
        float32 tensor (B, 8).
    """
    grid = tf.cast(grid_size, tf.float32)
    cos, sin = tf.cos(angles_rad), tf.sin(angles_rad)
    k_r, k_c = sides[:, 0] / grid, sides[:, 1] / grid            # context px per grid px
    b_r, b_c = -sides[:, 0] / 2 + 0.5 * k_r, -sides[:, 1] / 2 + 0.5 * k_c
    f_r, f_c = flip_signs[:, 0], flip_signs[:, 1]
    u_r0 = f_r * (b_r - shifts[:, 0])                             # F(q − t) at grid index 0
    u_c0 = f_c * (b_c - shifts[:, 1])
    a0 = cos * f_c * k_c
    a1 = -sin * f_r * k_r
    a2 = centers[:, 1] - 0.5 - sin * u_r0 + cos * u_c0
    b0 = sin * f_c * k_c
    b1 = cos * f_r * k_r
    b2 = centers[:, 0] - 0.5 + cos * u_r0 + sin * u_c0
    zeros = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def affine_crop_resize(images, centers, sides, angles_rad, flip_signs, shifts, *, grid_size,
                       size, fill_mode: str = "reflect"):
    """Rotate, flip, shift and crop each image, then resize it bicubically to ``size``.

    Pure TensorFlow, usable eagerly, in a ``tf.function`` or inside ``tf.data``.

    Args:
        images: float32 (B, H, W, 1) in [0, 1]; one context per param row.
        centers, sides, flip_signs, shifts: float32 (B, 2) in image pixels,
            (row, col); see ``ResolvedParams``.
        angles_rad: float32 (B,).
        grid_size: side of the intermediate bilinear grid (about the crop's
            native resolution, at most ``oversample·size``).
        size: output side.
        fill_mode: "reflect", "nearest" or "constant" (0) beyond the image.

    Returns:
        float32 (B, size, size, 1) in [0, 1].
    """
    transforms = affine_transforms(centers, sides, angles_rad, flip_signs, shifts, grid_size)
    grid = tf.stack([grid_size, grid_size])
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.cast(grid, tf.int32),
        fill_value=tf.constant(0.0, tf.float32), interpolation="BILINEAR",
        fill_mode=fill_mode.upper())
    return tf.clip_by_value(resize_bicubic_antialiased(warped, grid_size, size), 0.0, 1.0)


def _keys_cubic(x):
    """Keys' cubic kernel with a = −0.5 at |x| (TensorFlow's "bicubic")."""
    return tf.where(x >= 2.0, 0.0, tf.where(x >= 1.0, ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0,
                                            ((1.5 * x - 2.5) * x) * x + 1.0))


def bicubic_weights(from_side, to_side):
    """(to_side, from_side) float32 weights of an antialiased bicubic resize.

    Row o holds what ``tf.image.resize(..., "bicubic", antialias=True)`` (the
    ``ScaleAndTranslate`` kernel) gives input pixel i for output pixel o: the
    sample sits at (o + 0.5)·s with s = from/to, the kernel is stretched by
    max(s, 1) when shrinking (the antialiasing low-pass), and each row is
    normalised over the taps inside the image.
    """
    source = tf.cast(from_side, tf.float32)
    target = tf.cast(to_side, tf.float32)
    inverse_scale = source / target
    stretch = tf.maximum(inverse_scale, 1.0)
    samples = (tf.range(target) + 0.5) * inverse_scale
    offsets = tf.range(source)[None, :] + 0.5 - samples[:, None]
    weights = _keys_cubic(tf.abs(offsets / stretch))
    return weights / tf.reduce_sum(weights, axis=1, keepdims=True)


def resize_bicubic_antialiased(images, from_side, to_side):
    """Square one-channel images from ``from_side`` to ``to_side`` pixels.

    Equal to ``tf.image.resize(images, (to, to), "bicubic", antialias=True)``
    to a few 10⁻⁶, and 4–12× faster on a CPU (``bench/bench_augment.py``):
    the separable kernel as two matrix products, W·X·Wᵀ, with W from
    :func:`bicubic_weights`, instead of ``ScaleAndTranslate``'s gathers.

    Args:
        images: float32 (B, from_side, from_side, 1).
        from_side, to_side: ints or int tensors.
    """
    weights = bicubic_weights(from_side, to_side)[None]
    planes = tf.convert_to_tensor(images, tf.float32)[..., 0]
    return tf.matmul(tf.matmul(weights, planes), weights, transpose_b=True)[..., None]


_SIGNATURE = [
    tf.TensorSpec([None, None], tf.float32),   # one context, (H, W)
    tf.TensorSpec([None, 2], tf.float32),      # centers
    tf.TensorSpec([None, 2], tf.float32),      # sides
    tf.TensorSpec([None], tf.float32),         # angles_rad
    tf.TensorSpec([None, 2], tf.float32),      # flip_signs
    tf.TensorSpec([None, 2], tf.float32),      # shifts
    tf.TensorSpec([], tf.int32),               # grid_size
    tf.TensorSpec([], tf.int32),               # size
]
_COMPILED: dict = {}  # fill mode -> traced tf.function


def _compiled(fill_mode: str):
    """One traced graph per fill mode (shapes are dynamic, so it never retraces)."""
    if fill_mode not in _COMPILED:
        def one_context(context, centers, sides, angles, flips, shifts, grid_size, size):
            images = tf.tile(context[None, :, :, None], tf.stack([tf.shape(centers)[0], 1, 1, 1]))
            return affine_crop_resize(images, centers, sides, angles, flips, shifts,
                                      grid_size=grid_size, size=size, fill_mode=fill_mode)
        _COMPILED[fill_mode] = tf.function(one_context, input_signature=_SIGNATURE)
    return _COMPILED[fill_mode]


def grid_and_prescale(geometry: LesionGeometry, size: int, oversample: float = 2.0
                      ) -> tuple[int, float]:
    """Intermediate grid side and context shrink factor for one lesion.

    The grid is the native side of the lesion's largest crop
    (``geometry.reference_side``), capped at ``oversample·size``; a context
    whose largest crop is wider than that cap is shrunk by the returned factor
    (< 1) first. Both depend only on the lesion, so an image comes out the same
    whether it is augmented alone or in a batch.
    """
    cap = max(8, int(round(oversample * size)))
    reference = geometry.reference_side
    grid = int(min(cap, max(8, math.ceil(reference))))
    return grid, min(1.0, grid / reference)


def augment_lesion(context: np.ndarray, geometry: LesionGeometry,
                   params: Sequence[AffineParams], *, size: int = 64, oversample: float = 2.0,
                   fill_mode: str = "reflect") -> np.ndarray:
    """Apply many ``AffineParams`` to one lesion in batched TensorFlow calls.

    Args:
        context: float32 (H, W) in [0, 1], the windowed context
            (``windowed_context``); the ROI itself when the lesion has none.
        geometry: the lesion's ``LesionGeometry`` on that context.
        params: the augmentations to apply (``AffineParams()`` gives the
            original ROI, resized).
        size: output side in pixels (64 in Frid-Adar, 128 in Ben-Cohen).
        oversample: the intermediate grid is at most ``oversample·size``
            pixels across (see the module docstring).
        fill_mode: "reflect" (default), "nearest" or "constant" (0) where a
            crop runs past the context.

    Returns:
        float32 (len(params), size, size, 1) in [0, 1].

    Raises:
        AugmentationError: bad shapes, sizes or fill mode.
    """
    context = np.asarray(context, np.float32)
    if context.ndim != 2 or min(context.shape) < 2:
        raise AugmentationError(f"context must be a 2-D image, got shape {context.shape}")
    if tuple(context.shape) != tuple(geometry.context_shape):
        raise AugmentationError(
            f"context shape {context.shape} differs from the geometry's {geometry.context_shape}")
    size = _check_count("size", size, 4)
    if fill_mode not in FILL_MODES:
        raise AugmentationError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
    if not oversample >= 1:
        raise AugmentationError(f"oversample must be ≥ 1, got {oversample}")
    if len(params) == 0:
        return np.zeros((0, size, size, 1), np.float32)

    grid, shrink = grid_and_prescale(geometry, size, oversample)
    resolved = resolve_params(params, geometry)
    scale = np.ones(2, np.float32)
    if shrink < 1.0:
        new_shape = [max(2, int(round(s * shrink))) for s in context.shape]
        # Continuous coordinates scale per axis by new/old (half-pixel centres).
        scale = np.asarray(new_shape, np.float32) / np.asarray(context.shape, np.float32)
        context = tf.image.resize(context[:, :, None], new_shape, method="bicubic",
                                  antialias=True).numpy()[:, :, 0]
        context = np.clip(context, 0.0, 1.0)
    apply = _compiled(fill_mode)
    out = []
    for start in range(0, len(params), _CHUNK):
        part = slice(start, start + _CHUNK)
        out.append(apply(tf.constant(context), resolved.centers[part] * scale,
                         resolved.sides[part] * scale, resolved.angles_rad[part],
                         resolved.flip_signs[part], resolved.shifts[part] * scale,
                         tf.constant(grid, tf.int32), tf.constant(size, tf.int32)).numpy())
    return np.concatenate(out, axis=0)


def roi_network_inputs(rois, roi_margin: float, size: int, oversample: float = 2.0):
    """Serving-graph twin of ``augment_lesion(..., [AffineParams()])`` for ROIs
    without context: pure TensorFlow, traceable into a SavedModel.

    Each ROI is rendered as ``augment_lesion`` renders the lesion that the
    class-folder importer makes of a ROI image without a diameter in its
    CSV: the whole image is the ROI, the diameter estimated as
    max(H, W)/(1 + 2·roi_margin). The geometry (``grid_and_prescale``), the
    pre-shrink and ``affine_crop_resize`` are the same operations, computed
    from the image's shape in the graph (float64, as Python computes them).

    Args:
        rois: float32 [B, H, W, 1] in [0, 1] (windowed), one size per batch.
        roi_margin: the importer's margin the diameter is estimated with.
        size: the network's input side.

    Returns:
        float32 [B, size, size, 1] in [0, 1].
    """
    rois = tf.convert_to_tensor(rois, tf.float32)
    shape = tf.shape(rois)
    hw = tf.cast(shape[1:3], tf.float64)
    diameter = tf.reduce_max(hw) / (1.0 + 2.0 * roi_margin)
    reference = tf.maximum(tf.reduce_max(hw), (1 + 2 * MARGIN_FRACTION_RANGE[1]) * diameter)
    cap = float(max(8, int(round(oversample * size))))
    grid = tf.minimum(tf.constant(cap, tf.float64),
                      tf.maximum(tf.constant(8.0, tf.float64), tf.math.ceil(reference)))
    shrink = tf.minimum(tf.constant(1.0, tf.float64), grid / reference)
    new_hw = tf.maximum(tf.constant(2.0, tf.float64), tf.round(hw * shrink))

    def shrunk():
        resized = tf.image.resize(rois, tf.cast(new_hw, tf.int32), method="bicubic",
                                  antialias=True)
        return tf.clip_by_value(resized, 0.0, 1.0), tf.cast(new_hw, tf.float32) / tf.cast(
            hw, tf.float32)

    images, scale = tf.cond(shrink < 1.0, shrunk, lambda: (rois, tf.ones([2], tf.float32)))
    batch = shape[0]
    # the identity AffineParams: the ROI box's centre and side, no turn, flip or shift
    centers = tf.tile((tf.cast(hw, tf.float32) / 2.0 * scale)[None], [batch, 1])
    sides = tf.tile((tf.cast(hw, tf.float32) * scale)[None], [batch, 1])
    return affine_crop_resize(images, centers, sides, tf.zeros([batch]),
                              tf.ones([batch, 2]), tf.zeros([batch, 2]),
                              grid_size=tf.cast(grid, tf.int32), size=tf.constant(size, tf.int32))
