"""Non-network baselines of Frid-Adar et al. 2018 §4.5, Table 6: texture
features (GLCM/Haralick, Gabor) and bags of visual words (BoVW, and BoVW-MI
of Diamant et al. 2017, the paper's [30]) with SVMs, cross-validated on the
experiments' patient-level folds and scored with the same metrics code.

``features`` (GLCM, Gabor, patches: scikit-image), ``bovw`` (PCA, k-means
dictionary, word histograms, mutual-information word selection:
scikit-learn), ``crossval`` (the SVMs, their inner cross-validation on
training patients only, Table 6).
"""
