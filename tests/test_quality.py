"""Generator quality metrics on toy distributions with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from keras_lesions.errors import KerasLesionsError
from keras_lesions.evaluate.quality import (
    classifier_features,
    frechet_distance,
    generator_quality_report,
    kernel_distance,
    nearest_real_distances,
    polynomial_kernel,
)


def exact_moments(rng, n, mean, covariance):
    """n samples whose sample mean and (n−1) covariance are exactly the given ones."""
    x = rng.normal(size=(n, len(mean)))
    x -= x.mean(0)
    x = x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T  # whiten
    return x @ np.linalg.cholesky(covariance).T + mean


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu_a, mu_b = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 0.25, 9.0]), np.array([4.0, 1.0, 0.25, 1.0])
    a = exact_moments(rng, 200, mu_a, np.diag(var_a))
    b = exact_moments(rng, 300, mu_b, np.diag(var_b))
    # ‖μa − μb‖² + Σ(√a − √b)² = 5.25 + (1 + 1 + 0 + 4)
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert expected == pytest.approx(11.25)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_agrees_with_scipy_sqrtm_and_is_zero_on_itself():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(50, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(40, 6)) @ rng.normal(size=(6, 6)) + 0.3
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    reference = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(sa) + np.trace(sb)
                 - 2 * np.trace(scipy.linalg.sqrtm(sa @ sb).real))
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # Fewer samples than features: singular covariances, still finite and ≈ 0.
    few = rng.normal(size=(10, 128))
    assert frechet_distance(few, few) == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(frechet_distance(few, rng.normal(size=(12, 128)) + 1.0))
    with pytest.raises(KerasLesionsError, match="feature sizes differ"):
        frechet_distance(a, b[:, :5])
    with pytest.raises(KerasLesionsError, match="at least 2 samples"):
        frechet_distance(a[:1], b)


def test_kernel_distance_is_unbiased_mmd_with_the_cubic_kernel():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(30, 5)), rng.normal(size=(30, 5)) + 0.5
    # One subset of all samples: the plain unbiased MMD² estimate.
    m = 30
    k_xx, k_yy, k_xy = (polynomial_kernel(x, y) for x, y in ((a, a), (b, b), (a, b)))
    assert k_xy[0, 1] == pytest.approx((a[0] @ b[1] / 5 + 1) ** 3)
    expected = ((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
                + (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1)) - 2 * k_xy.mean())
    kid = kernel_distance(a, b, subsets=3, subset_size=1000)
    assert kid["subset_size"] == 30 and kid["subsets"] == 3
    assert kid["mean"] == pytest.approx(expected, rel=1e-10) and kid["std"] < 1e-12

    same = kernel_distance(rng.normal(size=(400, 8)), rng.normal(size=(400, 8)),
                           subsets=20, subset_size=200, seed=0)
    shifted = kernel_distance(rng.normal(size=(400, 8)), rng.normal(size=(400, 8)) + 1.0,
                              subsets=20, subset_size=200, seed=0)
    assert abs(same["mean"]) < 0.05 and same["std"] > 0
    assert shifted["mean"] > 1.0 and shifted["mean"] > 20 * (abs(same["mean"]) + same["std"])
    assert kernel_distance(a, b, subsets=5, subset_size=10, seed=4) == \
        kernel_distance(a, b, subsets=5, subset_size=10, seed=4)


def test_nearest_real_distances_detect_copies():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(40, 16))
    fresh = rng.normal(size=(20, 16))
    synthetic = np.concatenate([real[[3, 7, 7]], fresh])
    result = nearest_real_distances(synthetic, real)
    assert result.distances[:3].tolist() == [0.0, 0.0, 0.0]
    assert result.indices[:3].tolist() == [3, 7, 7]
    brute = np.linalg.norm(fresh[:, None] - real[None], axis=-1)
    np.testing.assert_allclose(result.distances[3:], brute.min(1), rtol=1e-12)
    np.testing.assert_array_equal(result.indices[3:], brute.argmin(1))
    summary = result.summary
    assert summary["copies"] == 3 and summary["min"] == 0.0
    real_nn = np.sort(np.linalg.norm(real[:, None] - real[None], axis=-1), axis=1)[:, 1]
    assert summary["real_median"] == pytest.approx(np.median(real_nn))
    assert summary["fraction_below_real_median"] == pytest.approx(
        (result.distances < np.median(real_nn)).mean())
    assert summary["fraction_below_real_median"] >= 3 / 23
    # A memorising generator: every sample a copy.
    assert nearest_real_distances(real[::2], real).summary["fraction_below_real_median"] == 1


def tiny_classifier():
    from keras_lesions.models import build_lesion_classifier

    return build_lesion_classifier(num_classes=3, input_size=16, filters=(2, 2, 2),
                                   dense_units=8)


def test_classifier_features_and_quality_report():
    import keras

    model = tiny_classifier()
    rng = np.random.default_rng(4)
    images = rng.uniform(size=(7, 16, 16, 1)).astype(np.float32)
    features = classifier_features(model, images, batch_size=3)
    assert features.shape == (7, 8) and features.dtype == np.float32
    direct = keras.Model(model.input, model.get_layer("dense").output)(images, training=False)
    np.testing.assert_allclose(features, keras.ops.convert_to_numpy(direct), atol=1e-5)
    with pytest.raises(KerasLesionsError, match="no layer 'fc7'"):
        classifier_features(model, images, layer="fc7")
    with pytest.raises(KerasLesionsError, match="images must be"):
        classifier_features(model, images[..., 0])

    real = {"cyst": rng.uniform(size=(12, 16, 16, 1)).astype(np.float32),
            "metastasis": rng.uniform(size=(12, 16, 16, 1)).astype(np.float32)}
    synth = {"cyst": real["cyst"][[0, 1, 2, 2]],  # memorised
             "metastasis": rng.uniform(size=(6, 16, 16, 1)).astype(np.float32) * 0.5}
    report = generator_quality_report(real, synth, model, kid_subsets=4, kid_subset_size=4)
    assert report["note"].startswith("the trained classification CNN's 8-unit "
                                         "'dense' layer; no ImageNet Inception weights")
    assert list(report["per_class"]) == ["cyst", "metastasis"]
    cyst, metastasis = report["per_class"]["cyst"], report["per_class"]["metastasis"]
    assert cyst["n_real"] == 12 and cyst["n_synthetic"] == 4
    assert cyst["nearest_real_pixels"]["copies"] == 4
    assert cyst["nearest_real"]["copies"] == 4
    assert metastasis["nearest_real_pixels"]["copies"] == 0
    assert metastasis["fid"] > 0 and metastasis["kid_mean"] == metastasis["kid"]["mean"]
    assert metastasis["kid_std"] == metastasis["kid"]["std"] and metastasis["kid"]["subsets"] == 4
    assert "singular covariances" in cyst["warning"]
    with pytest.raises(KerasLesionsError, match="synthetic class 'healthy'"):
        generator_quality_report(real, {"healthy": synth["cyst"]}, model)


def test_kid_bootstrap_interval_holds_zero_for_one_distribution_only():
    from keras_lesions.evaluate.quality import kid_bootstrap

    rng = np.random.default_rng(0)
    same = kid_bootstrap(rng.normal(size=(60, 8)), rng.normal(size=(80, 8)), n_boot=100)
    assert same["ci95"][0] <= 0 <= same["ci95"][1]
    shifted = kid_bootstrap(rng.normal(size=(60, 8)), rng.normal(0.8, 1, size=(80, 8)),
                            n_boot=100)
    assert shifted["ci95"][0] > 0 and shifted["kid"] > same["kid"]


def test_real_vs_real_fid_is_large_at_small_n_and_shrinks():
    """The small-sample bias the report warns about: two samples of one
    distribution have a large FID at the project's sizes."""
    from keras_lesions.evaluate.quality import fid_reliable, real_vs_real_baseline

    rng = np.random.default_rng(1)
    pool = rng.normal(size=(2000, 32))
    small = real_vs_real_baseline(rng.normal(size=(40, 32)), pool, 40, repeats=5)
    large = real_vs_real_baseline(rng.normal(size=(1000, 32)), pool, 1000, repeats=2)
    assert small["fid_mean"] > 5 * large["fid_mean"] and small["fid_mean"] > 10
    assert not fid_reliable(40, 32) and fid_reliable(1000, 32)
    assert abs(small["kid_mean"]) < 0.05  # KID is unbiased


def test_memorisation_share_catches_copies_of_originals_and_of_augmentations():
    from keras_lesions.evaluate.quality import memorisation_share

    rng = np.random.default_rng(2)
    originals = rng.normal(size=(40, 16))
    copies = originals[rng.integers(0, 40, 100)] + rng.normal(0, 1e-3, (100, 16))
    assert memorisation_share(copies, originals)["originals"][
        "share_closer_than_own_neighbour"] > 0.95
    fresh = rng.normal(size=(100, 16))
    assert memorisation_share(fresh, originals)["originals"][
        "share_closer_than_own_neighbour"] < 0.5
    # the augmented copies sit away from every original; a GAN that copied them
    sources = rng.integers(0, 40, 200)
    augmented = originals[sources] + rng.normal(0, 0.9, (200, 16))
    copied = augmented[:100] + rng.normal(0, 1e-3, (100, 16))
    result = memorisation_share(copied, originals, augmented_features=augmented,
                                augmented_sources=sources)
    assert result["augmented"]["share_closer_than_own_neighbour"] > 0.95
    assert result["originals"]["share_closer_than_own_neighbour"] < \
        result["augmented"]["share_closer_than_own_neighbour"] - 0.3


def test_two_sample_test_tells_checkerboards_from_blobs_but_not_blobs_from_blobs():
    from keras_lesions.evaluate.quality import classifier_two_sample_test

    rng = np.random.default_rng(3)

    def blobs(n):
        yy, xx = np.mgrid[:16, :16]
        centres = rng.uniform(5, 11, (n, 2))
        r = ((yy[None] - centres[:, :1, None]) ** 2 + (xx[None] - centres[:, 1:, None]) ** 2)
        return (np.exp(-r / 20.0) + rng.normal(0, 0.05, (n, 16, 16)))[..., None]

    def checkers(n):
        board = (np.indices((16, 16)).sum(0) % 2).astype(float)
        return (board[None] * 0.5 + rng.normal(0, 0.05, (n, 16, 16)))[..., None]

    same = classifier_two_sample_test(blobs(40), blobs(60), blobs(30), blobs(60))
    assert 0.3 <= same["auc"] <= 0.7
    different = classifier_two_sample_test(blobs(40), checkers(60), blobs(30), checkers(60))
    assert different["auc"] > 0.95 and different["ci95"][0] > 0.85
