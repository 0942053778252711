"""Texture features of a ROI for the Table 6 baselines (Frid-Adar 2018 §4.5).

Every feature is computed by scikit-image on the network's own input (the
windowed ROI resized to the input side, in [0, 1]), so the baselines see what
the CNN sees ("with the same ROI input", §4.5).
"""
from __future__ import annotations

import numpy as np

# GLCM: grey levels, pixel offsets and the four directions 0°, 45°, 90°, 135°
# (our choice; the paper names Haralick's features without settings).
GLCM_LEVELS = 32
GLCM_DISTANCES = (1, 2, 4)
GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
GLCM_PROPERTIES = ("contrast", "dissimilarity", "homogeneity", "ASM", "energy",
                   "correlation", "entropy")
# Gabor: spatial frequencies (cycles per pixel) and orientations (our choice:
# four octave-spaced scales, four orientations).
GABOR_FREQUENCIES = (0.05, 0.1, 0.2, 0.4)
GABOR_ORIENTATIONS = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
ENTROPY_BINS = 32


def quantize(image: np.ndarray, levels: int = GLCM_LEVELS) -> np.ndarray:
    """A [0, 1] image as integer grey levels 0..levels−1."""
    return np.clip(np.floor(np.asarray(image, np.float64) * levels), 0, levels - 1
                   ).astype(np.uint8)


def glcm_features(image: np.ndarray) -> np.ndarray:
    """Haralick-style GLCM properties (scikit-image ``graycoprops``) per
    distance, averaged over the four directions (rotation-invariant):
    len(GLCM_PROPERTIES) × len(GLCM_DISTANCES) values."""
    from skimage.feature import graycomatrix, graycoprops

    matrix = graycomatrix(quantize(np.squeeze(image)), distances=list(GLCM_DISTANCES),
                          angles=list(GLCM_ANGLES), levels=GLCM_LEVELS, symmetric=True,
                          normed=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = [graycoprops(matrix, prop).mean(axis=1) for prop in GLCM_PROPERTIES]
    # correlation is 0/0 on a constant image (scikit-image returns 1 there);
    # any NaN a property still gives becomes 0
    return np.nan_to_num(np.concatenate(values), nan=0.0)


def gabor_responses(image: np.ndarray) -> np.ndarray:
    """Gabor magnitude responses (scikit-image ``filters.gabor``), one per
    (frequency, orientation): [len(freqs) · len(orientations), H, W]."""
    from skimage.filters import gabor

    image = np.squeeze(np.asarray(image, np.float64))
    out = []
    for frequency in GABOR_FREQUENCIES:
        for theta in GABOR_ORIENTATIONS:
            real, imaginary = gabor(image, frequency=frequency, theta=theta, mode="reflect")
            out.append(np.hypot(real, imaginary))
    return np.stack(out)


def gabor_features(image: np.ndarray) -> np.ndarray:
    """Mean, standard deviation, energy (mean square) and entropy of each
    Gabor magnitude response (§4.5: "mean, std, energy and entropy for each
    scale and orientation"): 4 × scales × orientations values."""
    from skimage.measure import shannon_entropy

    features = []
    for response in gabor_responses(image):
        top = response.max()
        # the entropy of the response's histogram over [0, its maximum] (a
        # flat response has one bin: 0 bits)
        binned = (np.zeros_like(response, np.uint8) if top <= 0 else
                  np.minimum((response / top * ENTROPY_BINS).astype(np.int64), ENTROPY_BINS - 1))
        features += [response.mean(), response.std(), np.mean(response ** 2),
                     shannon_entropy(binned)]
    return np.asarray(features, np.float64)


def image_features(images: np.ndarray, kind: str) -> np.ndarray:
    """[n, features] of "glcm" or "gabor" for [n, S, S, 1] images."""
    extract = {"glcm": glcm_features, "gabor": gabor_features}[kind]
    return np.stack([extract(image) for image in images])
