"""Throughput of classic augmentation: batched TensorFlow vs one image at a time.

A benchmark, not a test: it prints numbers and asserts nothing. It times

* ``augment_lesion`` (one traced graph, all params of a lesion per call),
* the plain reference: an eager Python loop over the same params, one image
  per call, through the same TensorFlow ops (same outputs, checked),
* an OpenCV per-image loop (warpAffine + INTER_CUBIC resize; similar work,
  different kernels, shown only for scale),
* the online tf.data pipeline (``online_augmented_dataset``),

on synthetic CT-like lesions (noisy parenchyma in HU, darker disc, d in
[12, 60] px, ROI 1.5–2.2·d, context 3·d). ``--groups`` also builds one fold's
D_aug file at paper scale (121 training lesions, 15 000 samples by default)
and reports its time and size.

    python bench/bench_augment.py                 # default, < 1 min on 2 cores
    python bench/bench_augment.py --count 5000 --size 128
    python bench/bench_augment.py --groups 121
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

import cv2
import numpy as np
import tensorflow as tf

from keras_lesions.augment import (
    PAPER_GROUP_SIZES,
    LesionGeometry,
    augment_lesion,
    build_augmentation_groups,
    draw_offline_params,
    online_augmented_dataset,
    resolve_params,
)
from keras_lesions.augment.classic import affine_transforms, grid_and_prescale
from keras_lesions.augment.online import OnlineCanvases
from keras_lesions.data.dataset import Lesion, LesionDataset
from keras_lesions.data.imaging import window


def synthetic_lesion(rng: np.random.Generator, index: int) -> Lesion:
    """A dark disc in smoothed-noise 'liver' (HU), with a 3·d context."""
    d = float(rng.uniform(12, 60))
    roi_side = int(round(d * rng.uniform(1.5, 2.2)))
    side = int(round(3 * d))
    noise = cv2.GaussianBlur(rng.normal(0, 25, (side, side)).astype(np.float32), (0, 0), 1.2)
    context = 110 + noise
    yy, xx = np.mgrid[:side, :side] + 0.5
    centre = side / 2 + rng.uniform(-2, 2, 2)
    inside = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= (d / 2) ** 2
    context[inside] -= 60
    r0 = int(round(side / 2 - roi_side / 2))
    roi_box = (r0, r0, r0 + roi_side, r0 + roi_side)
    rows, cols = np.nonzero(inside)
    return Lesion(
        lesion_id=f"B{index:04d}", patient_id=f"P{index:04d}", label=index % 3,
        roi=context[r0:r0 + roi_side, r0:r0 + roi_side].copy(), context=context,
        roi_box=roi_box, lesion_box=(rows.min(), cols.min(), rows.max() + 1, cols.max() + 1),
        diameter_px=d, diameter_source="phantom", source="bench")


def eager_one_at_a_time(context, geometry, params, size, oversample=2.0):
    """The plain reference: same maths, eager TF ops, one image per call."""
    grid, shrink = grid_and_prescale(geometry, size, oversample)
    scale = np.ones(2, np.float32)
    if shrink < 1.0:
        new_shape = [max(2, int(round(s * shrink))) for s in context.shape]
        scale = np.asarray(new_shape, np.float32) / np.asarray(context.shape, np.float32)
        context = np.clip(tf.image.resize(context[:, :, None], new_shape, "bicubic",
                                          antialias=True).numpy()[:, :, 0], 0, 1)
    image = tf.constant(context[None, :, :, None])
    out = []
    for p in params:
        r = resolve_params([p], geometry)
        row = affine_transforms(tf.constant(r.centers * scale), tf.constant(r.sides * scale),
                                tf.constant(r.angles_rad), tf.constant(r.flip_signs),
                                tf.constant(r.shifts * scale), grid)
        warped = tf.raw_ops.ImageProjectiveTransformV3(
            images=image, transforms=row, output_shape=[grid, grid], fill_value=0.0,
            interpolation="BILINEAR", fill_mode="REFLECT")
        resized = tf.image.resize(warped, (size, size), "bicubic", antialias=True)
        out.append(tf.clip_by_value(resized, 0.0, 1.0).numpy())
    return np.concatenate(out)


def opencv_one_at_a_time(context, geometry, params, size):
    """Per-image OpenCV: warpAffine (bilinear, reflect) to the crop, INTER_CUBIC resize."""
    out = []
    for p in params:
        r = resolve_params([p], geometry)
        side = float(r.sides[0, 0])
        grid = max(8, int(math.ceil(side)))
        k = side / grid
        cos, sin = math.cos(r.angles_rad[0]), math.sin(r.angles_rad[0])
        f_r, f_c = r.flip_signs[0]
        t_r, t_c = r.shifts[0]
        b = -side / 2 + 0.5 * k
        u_r0, u_c0 = f_r * (b - t_r), f_c * (b - t_c)
        c_r, c_c = r.centers[0]
        matrix = np.array([[cos * f_c * k, -sin * f_r * k, c_c - 0.5 - sin * u_r0 + cos * u_c0],
                           [sin * f_c * k, cos * f_r * k, c_r - 0.5 + cos * u_r0 + sin * u_c0]])
        warped = cv2.warpAffine(context, matrix, (grid, grid),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REFLECT)
        out.append(np.clip(cv2.resize(warped, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1))
    return np.stack(out)[..., None]


def rate(seconds: float, count: int) -> float:
    return count / seconds if seconds > 0 else float("inf")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=64,
                        help="output side (64 Frid-Adar, 128 Ben-Cohen)")
    parser.add_argument("--count", type=int, default=4000, help="images for the batched path")
    parser.add_argument("--reference-count", type=int, default=300,
                        help="images for the per-image loops (they are slow)")
    parser.add_argument("--lesions", type=int, default=8, help="synthetic lesions to spread over")
    parser.add_argument("--online-count", type=int, default=4000, help="images from tf.data")
    parser.add_argument("--groups", type=int, default=0, metavar="N_LESIONS",
                        help="also build a D_aug file from this many training lesions")
    parser.add_argument("--group-max", type=int, default=PAPER_GROUP_SIZES[-1],
                        help="largest group size for --groups")
    parser.add_argument("--oversample", type=float, default=2.0,
                        help="intermediate grid at most oversample·size (see augment_lesion)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, verbose: bool = False) -> dict:
    """Time the paths; returns images/s of each (``*_per_s``) and the largest
    difference between the batched path and its eager reference."""
    rng = np.random.default_rng(args.seed)
    lesions = [synthetic_lesion(rng, i) for i in range(args.lesions)]
    contexts = [window(l.context, 50.0, 400.0) for l in lesions]
    geometries = [LesionGeometry.from_boxes(l.context.shape, l.roi_box, l.lesion_box,
                                            l.diameter_px) for l in lesions]
    per = math.ceil(args.count / args.lesions)
    params = [draw_offline_params(g.diameter_px, 30, 3, 7, 5, rng=i)[:per] if per <= 480 else
              (draw_offline_params(g.diameter_px, 30, 3, 7, 5, rng=i) * math.ceil(per / 480))[:per]
              for i, g in enumerate(geometries)]
    if verbose:
        print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, size {args.size}, "
              f"{args.lesions} lesions, d {min(g.diameter_px for g in geometries):.0f}–"
              f"{max(g.diameter_px for g in geometries):.0f} px")

    # Warm up the traced graph and the eager kernels outside the timings.
    augment_lesion(contexts[0], geometries[0], params[0][:4], size=args.size)
    eager_one_at_a_time(contexts[0], geometries[0], params[0][:2], args.size)

    start = time.perf_counter()
    batched_n = 0
    for context, geometry, chosen in zip(contexts, geometries, params):
        batched_n += len(augment_lesion(context, geometry, chosen, size=args.size,
                                                  oversample=args.oversample))
    batched_s = time.perf_counter() - start

    ref_per = max(1, math.ceil(args.reference_count / args.lesions))
    start = time.perf_counter()
    reference, ref_n = [], 0
    for context, geometry, chosen in zip(contexts, geometries, params):
        reference.append(eager_one_at_a_time(context, geometry, chosen[:ref_per], args.size,
                                             args.oversample))
        ref_n += len(reference[-1])
    eager_s = time.perf_counter() - start
    difference = max(float(np.abs(ref - augment_lesion(c, g, p[:ref_per], size=args.size,
                                                                oversample=args.oversample)).max())
                     for ref, c, g, p in zip(reference, contexts, geometries, params))

    start = time.perf_counter()
    cv_n = 0
    for context, geometry, chosen in zip(contexts, geometries, params):
        # OpenCV is fast enough to run the batched path's full count.
        cv_n += len(opencv_one_at_a_time(context, geometry, chosen, args.size))
    cv_s = time.perf_counter() - start

    canvases = OnlineCanvases.from_arrays(contexts, [l.roi_box for l in lesions],
                                          [l.diameter_px for l in lesions],
                                          [l.label for l in lesions], size=args.size)
    repeats = max(1, math.ceil(args.online_count / args.lesions))
    ds = online_augmented_dataset(canvases, repeats=repeats, batch_size=64, seed=args.seed)
    for _ in ds.take(1):  # once per process: the graph's first run
        pass
    # Timed from a new iterator's start, its threads and first batches
    # included (timing after a first batch would count what prefetch made
    # before the clock started); --online-count large enough to make the
    # start small.
    start = time.perf_counter()
    online_n = sum(int(x.shape[0]) for x, _ in ds)
    online_s = time.perf_counter() - start

    return {"batched_per_s": rate(batched_s, batched_n), "eager_per_s": rate(eager_s, ref_n),
            "opencv_per_s": rate(cv_s, cv_n), "online_per_s": rate(online_s, online_n),
            "max_difference": difference,
            "counts": {"batched": batched_n, "eager": ref_n, "opencv": cv_n,
                       "online": online_n}}


def main(argv=None) -> None:
    args = parse_args(argv)
    found = measure(args, verbose=True)
    names = {"batched": "batched TF (augment_lesion, one graph)",
             "eager": "eager TF, one image per call (reference)",
             "opencv": "OpenCV, one image per call (for scale)",
             "online": "online tf.data (batch 64, AUTOTUNE)"}
    print(f"{'path':44s} {'images':>7s} {'images/s':>9s}")
    for key, name in names.items():
        print(f"{name:44s} {found['counts'][key]:7d} {found[key + '_per_s']:9.0f}")
    print(f"batched / eager reference: {found['batched_per_s'] / found['eager_per_s']:.1f}×   "
          f"(max |difference| {found['max_difference']:.2e})")
    print(f"batched / OpenCV loop: {found['batched_per_s'] / found['opencv_per_s']:.2f}×")

    if args.groups:
        rng = np.random.default_rng([args.seed, 1])
        group_lesions = [synthetic_lesion(rng, 1000 + i) for i in range(args.groups)]
        dataset = LesionDataset(class_names=["cyst", "metastasis", "hemangioma"],
                                lesions=group_lesions, input_size=args.size,
                                folds=np.zeros(args.groups, np.int64) + 1, fold_k=2)
        dataset.folds[0] = 0     # one test lesion; the rest train
        dataset.lesions[0].lesion_id = "TEST"
        sizes = tuple(s for s in PAPER_GROUP_SIZES if s < args.group_max) + (args.group_max,)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "fold0.h5")
            start = time.perf_counter()
            result = build_augmentation_groups(dataset, 0, sizes, path=path,
                                               size=args.size, log=None,
                                               oversample=args.oversample)
            seconds = time.perf_counter() - start
            megabytes = os.path.getsize(path) / 2 ** 20
        total = result.n_train_lesions + sizes[-1]
        raw = total * args.size ** 2 * 2 / 2 ** 20
        print(f"D_aug file: {result.n_train_lesions} training lesions + {sizes[-1]} samples = "
              f"{total} images in {seconds:.1f} s ({total / seconds:.0f} images/s incl. HDF5), "
              f"{megabytes:.1f} MiB on disk ({raw:.1f} MiB as raw uint16)")


if __name__ == "__main__":
    main()
