"""Generator quality, measured: Fréchet and kernel distances, memorisation.

Frid-Adar et al. 2018 judge synthetic lesions by eye (Fig. 6) and by two
radiologists (§4.4). We add numbers that can be recomputed on every run:

* FID (Heusel et al. 2017): the Fréchet distance between Gaussians fitted to
  real and synthetic features, ‖μa − μb‖² + Tr(Σa + Σb − 2(ΣaΣb)^½).
  Biased upwards for small samples, so compare values at equal sample sizes.
* KID (Bińkowski et al. 2018): the unbiased MMD² with the polynomial kernel
  k(x, y) = (xᵀy/d + 1)³, averaged over random subsets; unbiased, so it is
  meaningful for the few dozen real lesions a fold holds, and ≈ 0 when the
  two sets come from one distribution.
* Nearest real neighbours: for each synthetic lesion, its distance to the
  closest real training lesion. A generator that memorised its training set
  puts synthetic lesions much closer to real ones than real lesions are to
  each other (zero for copies).

The reference FID/KID use ImageNet Inception-v3 pool features; no such
weights are available offline, so the features are those of a trained lesion
classification CNN's hidden dense layer (the network §4.3 also uses for its
t-SNE). Numbers are therefore comparable only between generators measured
with the same classifier. Everything but feature extraction is numpy/scipy.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np

from keras_lesions.errors import KerasLesionsError

FEATURES_NOTE = ("the trained classification CNN's {units}-unit {layer!r} layer; no "
                 "ImageNet Inception weights are available offline, so FID/KID values are "
                 "comparable only between generators scored with the same classifier")
# Distances at or below this (in feature or pixel units) count as copies.
COPY_TOLERANCE = 1e-6


def _as_features(features, name: str) -> np.ndarray:
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise KerasLesionsError(f"{name} must be a 2-D array [samples, features], got shape "
                                f"{array.shape}")
    if not np.isfinite(array).all():
        raise KerasLesionsError(f"{name} holds NaN or infinite values")
    return array


def _pair(features_a, features_b, min_samples: int) -> tuple[np.ndarray, np.ndarray]:
    a = _as_features(features_a, "features_a")
    b = _as_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise KerasLesionsError(f"feature sizes differ: {a.shape[1]} and {b.shape[1]}")
    if len(a) < min_samples or len(b) < min_samples:
        raise KerasLesionsError(f"needs at least {min_samples} samples on each side, got "
                                f"{len(a)} and {len(b)}")
    return a, b


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (eigh, clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(features_a, features_b, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID formula).

    ‖μa − μb‖² + Tr(Σa) + Tr(Σb) − 2 Tr((ΣaΣb)^½).

    Tr((ΣaΣb)^½) is computed as Tr((Σa^½ Σb Σa^½)^½): the same eigenvalues,
    but of a symmetric positive semi-definite matrix, so ``eigvalsh`` gives
    them without the complex round-off ``scipy.linalg.sqrtm`` produces on
    near-singular products. Singular covariances (fewer samples than
    features, common here) are handled like the reference FID code: ``eps``
    is added to both diagonals when the plain computation is not finite.

    Args:
        features_a, features_b: [n, d] and [m, d] feature arrays, n, m ≥ 2.
        eps: diagonal offset used only if needed for a finite result.

    Returns:
        The distance (≥ 0), a Python float.

    Raises:
        KerasLesionsError: arrays of the wrong shape, different feature sizes,
            fewer than 2 samples, or non-finite values.
    """
    a, b = _pair(features_a, features_b, min_samples=2)
    mu_a, mu_b = a.mean(0), b.mean(0)
    sigma_a = np.atleast_2d(np.cov(a, rowvar=False))
    sigma_b = np.atleast_2d(np.cov(b, rowvar=False))
    trace_sqrt = _trace_sqrt_product(sigma_a, sigma_b)
    if not np.isfinite(trace_sqrt):
        offset = eps * np.eye(len(sigma_a))
        trace_sqrt = _trace_sqrt_product(sigma_a + offset, sigma_b + offset)
    diff = mu_a - mu_b
    distance = diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_sqrt
    return float(max(distance, 0.0))


def _trace_sqrt_product(sigma_a: np.ndarray, sigma_b: np.ndarray) -> float:
    root_a = _psd_sqrt(sigma_a)
    inner = root_a @ sigma_b @ root_a
    values = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(values, 0.0, None)).sum())


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3) -> np.ndarray:
    """k(x, y) = (xᵀy / d + 1)^degree, the KID kernel (Bińkowski et al. 2018)."""
    return (x @ y.T / x.shape[1] + 1.0) ** degree


def kernel_distance(features_a, features_b, degree: int = 3, subsets: int = 100,
                    subset_size: int = 1000, seed: int = 0) -> dict:
    """Kernel Inception Distance: unbiased polynomial-kernel MMD² over subsets.

    As in Bińkowski et al.'s reference code: ``subsets`` times, draw
    ``subset_size`` samples of each set without replacement and compute

        MMD²_u = Σ_{i≠j} k(a_i, a_j) / (m(m−1)) + Σ_{i≠j} k(b_i, b_j) / (m(m−1))
                 − 2 Σ_{i,j} k(a_i, b_j) / m².

    ``subset_size`` is lowered to the smaller set's size when larger.

    Args:
        features_a, features_b: [n, d] and [m, d] feature arrays, n, m ≥ 2.
        degree: polynomial degree (3 in the reference).
        subsets: number of random subsets (100 in the reference).
        subset_size: samples per subset and side (1000 in the reference).
        seed: seed of the subset draws.

    Returns:
        {"mean", "std" (over subsets), "subsets", "subset_size"}. The mean is
        an unbiased estimate, so it can be slightly negative when the two sets
        share a distribution.

    Raises:
        KerasLesionsError: bad arrays or arguments.
    """
    a, b = _pair(features_a, features_b, min_samples=2)
    if subsets < 1 or subset_size < 2 or degree < 1:
        raise KerasLesionsError(f"KID needs subsets ≥ 1, subset_size ≥ 2 and degree ≥ 1, got "
                                f"{subsets}, {subset_size} and {degree}")
    m = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for s in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx = polynomial_kernel(x, x, degree)
        k_yy = polynomial_kernel(y, y, degree)
        k_xy = polynomial_kernel(x, y, degree)
        values[s] = ((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
                     + (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
                     - 2.0 * k_xy.mean())
    return {"mean": float(values.mean()), "std": float(values.std()), "subsets": int(subsets),
            "subset_size": int(m)}


class NearestReal(NamedTuple):
    """Per synthetic sample: distance to, and index of, its nearest real sample."""

    distances: np.ndarray  # float64 [n_synthetic]
    indices: np.ndarray  # int64 [n_synthetic], rows of the real features
    summary: dict


def _nearest(queries: np.ndarray, references: np.ndarray, exclude_self: bool = False,
             chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Nearest reference of each query: BLAS to find it, an exact norm to measure it.

    ‖q‖² + ‖r‖² − 2qᵀr (one matrix product per chunk) finds the neighbour fast
    even for 64×64-pixel vectors; the returned distance is then recomputed
    directly, so a copy measures exactly 0.
    """
    reference_sq = np.einsum("ij,ij->i", references, references)
    distances = np.empty(len(queries))
    indices = np.empty(len(queries), np.int64)
    for start in range(0, len(queries), chunk):
        block = queries[start:start + chunk]
        squared = (np.einsum("ij,ij->i", block, block)[:, None] + reference_sq[None, :]
                   - 2.0 * block @ references.T)
        if exclude_self:
            rows = np.arange(len(block))
            squared[rows, start + rows] = np.inf
        nearest = squared.argmin(1)
        indices[start:start + len(block)] = nearest
        distances[start:start + len(block)] = np.linalg.norm(block - references[nearest], axis=1)
    return distances, indices


def nearest_real_distances(synthetic_features, real_features,
                           copy_tolerance: float = COPY_TOLERANCE) -> NearestReal:
    """Distance of each synthetic sample to its nearest real one (memorisation check).

    The scale for "close" comes from the real set itself: each real sample's
    distance to its nearest *other* real sample. A generator that generalises
    puts few synthetic samples closer to the real set than that; one that
    memorised puts many (and copies at distance 0).

    Args:
        synthetic_features: [n, d] (features, or flattened images).
        real_features: [m, d], m ≥ 2, the generator's real training samples.
        copy_tolerance: distances at or below this count as copies.

    Returns:
        ``NearestReal(distances, indices, summary)`` with summary keys
        "median", "min", "real_median" (median real-to-real nearest
        distance), "fraction_below_real_median", "copies" (count within
        ``copy_tolerance``), "n_synthetic", "n_real".

    Raises:
        KerasLesionsError: bad arrays, or fewer than 2 real samples.
    """
    synthetic = _as_features(synthetic_features, "synthetic_features")
    real = _as_features(real_features, "real_features")
    if synthetic.shape[1] != real.shape[1]:
        raise KerasLesionsError(f"feature sizes differ: {synthetic.shape[1]} and "
                                f"{real.shape[1]}")
    if len(real) < 2 or len(synthetic) < 1:
        raise KerasLesionsError(f"needs ≥ 1 synthetic and ≥ 2 real samples, got "
                                f"{len(synthetic)} and {len(real)}")
    distances, indices = _nearest(synthetic, real)
    real_nn, _ = _nearest(real, real, exclude_self=True)
    real_median = float(np.median(real_nn))
    summary = {
        "median": float(np.median(distances)),
        "min": float(distances.min()),
        "real_median": real_median,
        "fraction_below_real_median": float((distances < real_median).mean()),
        "copies": int((distances <= copy_tolerance).sum()),
        "n_synthetic": int(len(synthetic)),
        "n_real": int(len(real)),
    }
    return NearestReal(distances, indices, summary)


def classifier_features(model, images, layer: str = "dense", batch_size: int = 256) -> np.ndarray:
    """Activations of a trained lesion classifier's hidden layer.

    Args:
        model: a classifier from ``keras_lesions.models.build_lesion_classifier``
            (its hidden dense layer is named "dense").
        images: float32 [n, S, S, 1] in [0, 1], the classifier's input.
        layer: the layer whose output is the feature vector.
        batch_size: images per forward pass.

    Returns:
        float32 [n, units] (inference mode: dropout off).

    Raises:
        KerasLesionsError: no such layer, or images of the wrong shape.
    """
    import keras

    try:
        output = model.get_layer(layer).output
    except ValueError:
        raise KerasLesionsError(f"the classifier {model.name!r} has no layer {layer!r}") from None
    images = np.asarray(images, np.float32)
    expected = tuple(model.input_shape[1:])
    if images.ndim != 4 or images.shape[1:] != expected:
        raise KerasLesionsError(f"images must be [n, {', '.join(map(str, expected))}] for "
                                f"the classifier, got {images.shape}")
    extractor = keras.Model(model.input, output, name=f"{model.name}_{layer}_features")
    units = int(output.shape[-1])
    if len(images) == 0:
        return np.zeros((0, units), np.float32)
    return np.concatenate([
        keras.ops.convert_to_numpy(extractor(images[i:i + batch_size], training=False))
        for i in range(0, len(images), batch_size)]).astype(np.float32)


# FID's covariances need clearly more samples than features: a rule of thumb
# (Chong & Forsyth 2020, "Effectively Unbiased FID", show the bias ~ 1/n).
FID_SAMPLES_PER_FEATURE = 2


def fid_reliable(n_samples: int, feature_size: int) -> bool:
    """Whether FID from ``n_samples`` (the smaller side) in ``feature_size``
    features is more than small-sample bias (n ≥ 2 × features)."""
    return n_samples >= FID_SAMPLES_PER_FEATURE * feature_size


def kid_bootstrap(features_a, features_b, *, n_boot: int = 200, seed: int = 0,
                  degree: int = 3) -> dict:
    """KID on the full sets with a 95% bootstrap percentile interval.

    Each resample draws both sets with replacement; a drawn row may repeat,
    and k(x, x) of a repeated row would bias the unbiased MMD² upwards, so
    pairs of the same original row are left out of the within-set sums
    (the kernel matrices are computed once).

    Returns:
        {"kid", "ci95", "n_a", "n_b", "n_boot"}.
    """
    a, b = _pair(features_a, features_b, min_samples=2)
    k_aa, k_bb, k_ab = (polynomial_kernel(a, a, degree), polynomial_kernel(b, b, degree),
                        polynomial_kernel(a, b, degree))

    def mmd(ia, ib):
        within = 0.0
        for kernel, index in ((k_aa, ia), (k_bb, ib)):
            distinct = index[:, None] != index[None, :]
            within += kernel[np.ix_(index, index)][distinct].mean()
        return within - 2.0 * k_ab[np.ix_(ia, ib)].mean()

    kid = mmd(np.arange(len(a)), np.arange(len(b)))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        ia, ib = rng.integers(0, len(a), len(a)), rng.integers(0, len(b), len(b))
        if len(np.unique(ia)) > 1 and len(np.unique(ib)) > 1:  # a within-set pair exists
            values.append(mmd(ia, ib))
    low, high = np.percentile(values, [2.5, 97.5]) if values else (np.nan, np.nan)
    return {"kid": float(kid), "ci95": [float(low), float(high)], "n_a": int(len(a)),
            "n_b": int(len(b)), "n_boot": int(n_boot)}


def real_vs_real_baseline(reference, pool, n_draw: int, *, seed: int = 0,
                          repeats: int = 20) -> dict:
    """FID and KID between ``reference`` and ``n_draw`` rows drawn from another
    real ``pool``, averaged over draws: what the measures give at these sample
    sizes for real lesions (a generator that reproduced its training lesions
    exactly would score about this against held-out ones).

    Returns:
        {"fid_mean", "fid_std", "kid_mean", "kid_std", "n_reference", "n_other",
        "repeats"}; ``n_other`` is ``n_draw`` capped at the pool's size (one
        draw then: the whole pool).
    """
    reference = _as_features(reference, "reference")
    pool = _as_features(pool, "pool")
    n = min(int(n_draw), len(pool))
    draws = repeats if n < len(pool) else 1
    rng = np.random.default_rng(seed)
    fids, kids = [], []
    for _ in range(draws):
        other = pool[rng.choice(len(pool), n, replace=False)]
        fids.append(frechet_distance(reference, other))
        kids.append(kernel_distance(reference, other, subsets=20, seed=int(rng.integers(1 << 30)))
                    ["mean"])
    return {"fid_mean": float(np.mean(fids)), "fid_std": float(np.std(fids)),
            "kid_mean": float(np.mean(kids)), "kid_std": float(np.std(kids)),
            "n_reference": int(len(reference)), "n_other": int(n), "repeats": int(draws)}


def memorisation_share(synthetic_features, training_features, *, augmented_features=None,
                       augmented_sources=None) -> dict:
    """How many synthetic lesions sit closer to a training lesion than real
    lesions sit to each other.

    For each synthetic lesion s with nearest training image t*: is d(s, t*)
    below the distance of t*'s original to its own nearest other original?
    A generator that copies (or nearly copies) its training images scores
    near 1; one that generalises, low.

    Args:
        synthetic_features: [n, d].
        training_features: [m, d], the original training lesions, m ≥ 2.
        augmented_features: [p, d], their augmented copies the GAN also
            trained on (optional).
        augmented_sources: [p] the row of ``training_features`` each
            augmented copy came from.

    Returns:
        {"originals": {...}, "augmented": {...} (when given)}, each with
        "share_closer_than_own_neighbour", "median_distance", "copies"
        (distance ≤ 1e-6), "n_synthetic", "n_reference".
    """
    synthetic = _as_features(synthetic_features, "synthetic_features")
    originals = _as_features(training_features, "training_features")
    if len(originals) < 2:
        raise KerasLesionsError(f"needs ≥ 2 training lesions, got {len(originals)}")
    own_neighbour, _ = _nearest(originals, originals, exclude_self=True)

    def against(reference, source_of_row):
        distances, rows = _nearest(synthetic, reference)
        closer = distances < own_neighbour[source_of_row[rows]]
        return {"share_closer_than_own_neighbour": float(closer.mean()),
                "median_distance": float(np.median(distances)),
                "copies": int((distances <= COPY_TOLERANCE).sum()),
                "n_synthetic": int(len(synthetic)), "n_reference": int(len(reference))}

    result = {"originals": against(originals, np.arange(len(originals)))}
    if augmented_features is not None and len(augmented_features):
        augmented = _as_features(augmented_features, "augmented_features")
        sources = np.asarray(augmented_sources, np.int64)
        if sources.shape != (len(augmented),) or sources.min() < 0 \
                or sources.max() >= len(originals):
            raise KerasLesionsError("augmented_sources must give, for every augmented row, "
                                    "the row of its original in training_features")
        result["augmented"] = against(np.concatenate([originals, augmented]),
                                      np.concatenate([np.arange(len(originals)), sources]))
    return result


def _downsampled_pixels(images) -> np.ndarray:
    array = np.asarray(images, np.float64)
    if array.ndim == 2:
        return array
    if array.ndim != 4:
        raise KerasLesionsError(f"images must be [n, S, S, 1] or features [n, d], got "
                                f"{array.shape}")
    side = array.shape[1] // 2 * 2
    pooled = array[:, :side, :side, 0].reshape(len(array), side // 2, 2, side // 2, 2).mean((2, 4))
    return pooled.reshape(len(array), -1)


def classifier_two_sample_test(real_train, synthetic_train, real_test, synthetic_test, *,
                               seed: int = 0) -> dict:
    """Classifier two-sample test (Lopez-Paz & Oquab 2017): can a small
    classifier tell real from synthetic lesions it did not train on?

    An L2-regularised logistic regression (scikit-learn) on standardised,
    2×-downsampled pixels: pixels rather than the classifier features, which
    were fitted to the real training lesions; linear and regularised so that
    a few dozen real lesions suffice; classes weighted by their counts.

    Returns:
        {"auc" (ROC AUC on the test rows, real = 1), "ci95" (Hanley & McNeil
        1982 standard error, normal interval), "n_train", "n_test", "reading"}.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    parts = [_downsampled_pixels(x) for x in (real_train, synthetic_train, real_test,
                                              synthetic_test)]
    if min(len(p) for p in parts) < 1:
        raise KerasLesionsError("the two-sample test needs real and synthetic lesions on both "
                                "the training and the test side")
    x_train = np.concatenate(parts[:2])
    y_train = np.r_[np.ones(len(parts[0])), np.zeros(len(parts[1]))]
    x_test = np.concatenate(parts[2:])
    y_test = np.r_[np.ones(len(parts[2])), np.zeros(len(parts[3]))]
    model = make_pipeline(StandardScaler(), LogisticRegression(
        C=0.1, max_iter=2000, class_weight="balanced", random_state=seed))
    model.fit(x_train, y_train)
    auc = float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))
    n1, n0 = len(parts[2]), len(parts[3])
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    se = float(np.sqrt(max(auc * (1 - auc) + (n1 - 1) * (q1 - auc * auc)
                           + (n0 - 1) * (q2 - auc * auc), 0.0) / (n1 * n0)))
    reading = ("indistinguishable from real lesions" if auc < 0.6 else
               "told apart from real lesions at once: the generator has not learned them"
               if auc > 0.9 else "partly told apart from real lesions")
    return {"auc": auc, "ci95": [max(0.0, auc - 1.96 * se), min(1.0, auc + 1.96 * se)],
            "n_train": int(len(x_train)), "n_test": int(len(x_test)),
            "reading": f"AUC {auc:.2f}: {reading} (0.5: indistinguishable)"}


def generator_quality_report(
    real_images_by_class: Mapping[str, np.ndarray],
    synth_images_by_class: Mapping[str, np.ndarray],
    classifier_model,
    *,
    layer: str = "dense",
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    heldout_images_by_class: Mapping[str, np.ndarray] | None = None,
    augmented_images_by_class: Mapping[str, np.ndarray] | None = None,
    augmented_sources_by_class: Mapping[str, np.ndarray] | None = None,
) -> dict:
    """FID, KID and nearest-real-neighbour summaries per class.

    Args:
        real_images_by_class: class name → float32 [n, S, S, 1] in [0, 1],
            the real lesions the generator learnt from (the training folds).
        synth_images_by_class: class name → synthetic images, same format;
            every class must also be on the real side.
        classifier_model: a trained lesion classifier (feature extractor).
        layer: its hidden layer used as features.
        kid_subsets, kid_subset_size: KID subset draws (see ``kernel_distance``).
        seed: seed of the KID subsets, bootstraps and draws.
        heldout_images_by_class: real lesions of patients neither the
            generator nor the feature extractor trained on (a test fold).
            Given, FID and KID compare the synthetic lesions with these, and
            each class also gets "kid_ci95", "fid_reliable", "baseline"
            (``real_vs_real_baseline``: the held-out lesions against as many
            real training lesions), "memorisation" (``memorisation_share``)
            and "two_sample" (``classifier_two_sample_test``: the real
            training lesions and half the synthetic ones against the
            held-out lesions and the other half).
        augmented_images_by_class, augmented_sources_by_class: the augmented
            training images and the row of their original in the real
            training images of their class, for the memorisation check.

    Returns:
        JSON-able dict: "note" (which features were used), "layer",
        "feature_size", and "per_class": {name: {"n_real", "n_synthetic",
        "fid", "kid_mean", "kid_std", "kid" (all of ``kernel_distance``'s
        result), "nearest_real" (``nearest_real_distances`` summary in feature
        space), "nearest_real_pixels" (the same on raw pixels, where a copied
        training lesion shows as distance 0)}} in the real dict's class order.
        A class with no more samples than features gets a "warning": its
        covariances are singular and FID is dominated by small-sample bias.

    Raises:
        KerasLesionsError: a synthetic class without real images, or bad arrays.
    """
    unknown = [c for c in synth_images_by_class if c not in real_images_by_class]
    if unknown:
        raise KerasLesionsError(f"synthetic class {unknown[0]!r} has no real images to compare "
                                f"with (real classes: {', '.join(real_images_by_class)})")
    classes = [c for c in real_images_by_class if c in synth_images_by_class]
    if not classes:
        raise KerasLesionsError("no class has both real and synthetic images")
    report_classes = {}
    feature_size = None
    for name in classes:
        real = np.asarray(real_images_by_class[name], np.float32)
        synth = np.asarray(synth_images_by_class[name], np.float32)
        real_features = classifier_features(classifier_model, real, layer)
        synth_features = classifier_features(classifier_model, synth, layer)
        feature_size = real_features.shape[1]
        heldout = None if heldout_images_by_class is None else np.asarray(
            heldout_images_by_class.get(name, np.zeros((0,) + real.shape[1:])), np.float32)
        compared = real_features if heldout is None or len(heldout) < 2 else \
            classifier_features(classifier_model, heldout, layer)
        kid = kernel_distance(compared, synth_features, subsets=kid_subsets,
                              subset_size=kid_subset_size, seed=seed)
        entry = {
            "n_real": int(len(compared)),
            "real_reference": "training" if compared is real_features else "held-out",
            "n_synthetic": int(len(synth)),
            "fid": frechet_distance(compared, synth_features),
            "kid_mean": kid["mean"],
            "kid_std": kid["std"],
            "kid": kid,
            "nearest_real": nearest_real_distances(synth_features, real_features).summary,
            "nearest_real_pixels": nearest_real_distances(synth.reshape(len(synth), -1),
                                                          real.reshape(len(real), -1)).summary,
        }
        if compared is not real_features:
            entry["kid_ci95"] = kid_bootstrap(compared, synth_features, seed=seed)["ci95"]
            entry["fid_reliable"] = fid_reliable(min(len(compared), len(synth)), feature_size)
            entry["baseline"] = real_vs_real_baseline(compared, real_features, len(synth),
                                                      seed=seed)
            augmented = (augmented_images_by_class or {}).get(name)
            entry["memorisation"] = memorisation_share(
                synth_features, real_features,
                augmented_features=None if augmented is None or not len(augmented) else
                classifier_features(classifier_model, augmented, layer),
                augmented_sources=(augmented_sources_by_class or {}).get(name))
            half = len(synth) // 2
            entry["two_sample"] = classifier_two_sample_test(real, synth[:half], heldout,
                                                             synth[half:], seed=seed)
        if min(len(compared), len(synth)) <= feature_size:
            entry["warning"] = (f"{min(len(compared), len(synth))} samples for {feature_size} "
                                "features: singular covariances, FID dominated by "
                                "small-sample bias; prefer KID")
        report_classes[name] = entry
    return {"note": FEATURES_NOTE.format(units=feature_size, layer=layer), "layer": layer,
            "feature_size": int(feature_size), "per_class": report_classes}
