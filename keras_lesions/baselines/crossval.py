"""Table 6 of Frid-Adar et al. 2018 (§4.5): texture and bag-of-words baselines
with SVMs on the experiments' patient-level folds, beside CNN-AUG and
CNN-AUG-GAN.

For every cell (repeat, test fold) each method is fitted on the cell's
training patients only (the training folds; their validation patients
included, since the SVM's hyper-parameters are chosen by an inner
cross-validation over those same patients, grouped by patient) and predicts
the test fold once. The predictions go through the experiments' own metrics
code (``evaluate.report.summarize_predictions``). The scaling and BoVW-MI's
word selection are steps of the SVM's pipeline, refitted on every inner
training fold; the dictionary (unsupervised: patches, PCA, k-means) is fitted
once per cell on its training patients, so the inner folds that choose C and
gamma share it.

Methods: GLCM + SVM, Gabor + SVM, BoVW + SVM, BoVW-MI with a single
representation (the 35% most informative words of one dictionary) and
BoVW-MI with a multi-binary representation (per one-vs-rest task its own 3%
of words and its own binary SVM; the class whose SVM is most confident).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from keras_lesions.baselines import bovw
from keras_lesions.baselines.features import image_features
from keras_lesions.errors import KerasLesionsError
from keras_lesions.io import write_json, write_text

METHODS = ("GLCM + SVM", "Gabor + SVM", "BoVW + SVM", "BoVW-MI single representation",
           "BoVW-MI multi representation")
# Table 6 as the paper reports it: (sensitivity, specificity), %.
PAPER_TABLE6 = {"CNN-AUG-GAN": (85.7, 92.4), "CNN-AUG": (78.6, 88.4),
                "BoVW-MI multi representation": (82.9, 90.8),
                "BoVW-MI single representation": (78.0, 88.3),
                "Gabor + SVM": (74.2, 86.5), "GLCM + SVM": (71.4, 84.9)}
# The SVM's grid, searched by the inner cross-validation (our choice: the
# paper gives none).
SVM_GRID = {"svc__C": [0.1, 1.0, 10.0, 100.0], "svc__gamma": ["scale", 0.01, 0.1, 1.0]}
INNER_FOLDS = 3
Log = Callable[[str], None]


class _Fixed:
    """An SVM at the grid's defaults when the training patients are too few
    for an inner cross-validation (a class with fewer than two patients)."""

    best_params_ = {"svc__C": 1.0, "svc__gamma": "scale", "inner_cv": "too few patients"}

    def __init__(self, model):
        self.model = model

    def fit(self, x, y, groups=None):
        self.model.fit(x, y)
        return self

    def predict(self, x):
        return self.model.predict(x)

    def decision_function(self, x):
        return self.model.decision_function(x)


class _Search:
    """An RBF SVM on standardised features whose C and gamma an inner
    cross-validation chooses; the inner folds group lesions by patient and
    are as many as the rarest class's patients allow (at most 3)."""

    def __init__(self, class_weight: str | None, seed: int, scoring: str,
                 keep_words: int | None = None):
        self.class_weight, self.seed, self.scoring = class_weight, seed, scoring
        self.keep_words = keep_words

    def fit(self, x, y, groups):
        from functools import partial

        from sklearn.feature_selection import SelectKBest, mutual_info_classif
        from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        steps = [StandardScaler(), SVC(kernel="rbf", class_weight=self.class_weight)]
        if self.keep_words:
            # BoVW-MI: the word selection is a step of the model, so every
            # inner fold selects on its own training patients only
            steps.insert(0, SelectKBest(partial(mutual_info_classif, random_state=self.seed),
                                        k=min(self.keep_words, x.shape[1])))
        # the fitted selection is cached across the grid's points: each inner
        # fold computes its mutual information once, not once per (C, gamma)
        cache = tempfile.TemporaryDirectory(prefix="kl-baselines-") if self.keep_words else None
        model = make_pipeline(*steps, memory=cache.name if cache else None)
        groups = np.asarray(groups)
        patients_per_class = min(len(set(groups[np.asarray(y) == c].tolist()))
                                 for c in np.unique(y))
        folds = min(INNER_FOLDS, patients_per_class)
        if folds < 2:
            self.fitted = _Fixed(model).fit(x, y)
        else:
            self.fitted = GridSearchCV(model, SVM_GRID, scoring=self.scoring, cv=StratifiedGroupKFold(
                folds, shuffle=True, random_state=self.seed)).fit(x, y, groups=groups)
        self.best_params_ = self.fitted.best_params_
        if cache is not None:
            self.fitted = _without_memory(self.fitted)
            cache.cleanup()
        return self

    def predict(self, x):
        return self.fitted.predict(x)

    def decision_function(self, x):
        return self.fitted.decision_function(x)


def _without_memory(fitted):
    """The refitted model with its pipeline's cache folder forgotten (the
    folder is removed once the search is done)."""
    model = getattr(fitted, "best_estimator_", getattr(fitted, "model", None))
    if model is not None:
        model.memory = None
    return fitted


def svm_search(class_weight: str | None, seed: int, scoring: str = "accuracy",
               keep_words: int | None = None) -> _Search:
    """An RBF SVM whose C and gamma a patient-grouped inner cross-validation
    on the training lesions chooses (``fit(x, y, groups=patients)``); with
    ``keep_words``, the most informative words by mutual information first."""
    return _Search(class_weight, seed, scoring, keep_words)


def fit_predict(method: str, images: np.ndarray, labels: np.ndarray, patients: np.ndarray,
                train: np.ndarray, test: np.ndarray, cached: dict, *,
                class_weight: str | None = None, seed: int = 0, scoring: str = "accuracy"
                ) -> tuple[np.ndarray, dict]:
    """One method fitted on the ``train`` rows and predicting the ``test``
    rows. ``cached`` keeps the per-lesion texture features across cells.

    Returns:
        (predicted classes of the test rows, what was chosen: the SVM's C and
        gamma, and for BoVW-MI the words kept).
    """
    y_train = labels[train]
    groups = patients[train]
    if method in ("GLCM + SVM", "Gabor + SVM"):
        kind = "glcm" if method.startswith("GLCM") else "gabor"
        if kind not in cached:
            cached[kind] = image_features(images, kind)
        x = cached[kind]
        search = svm_search(class_weight, seed, scoring).fit(x[train], y_train, groups=groups)
        return search.predict(x[test]), {"svm": _params(search)}
    # every bag of words: one dictionary of the cell's training lesions'
    # patches only, shared by the three bag-of-words methods of the cell
    key = ("bovw", train.tobytes())
    if key not in cached:
        cached.pop(next((k for k in cached if k[0] == "bovw"), None), None)  # one cell at a time
        cached[key] = bovw.fit_dictionary(images[train], seed=seed).histograms(images)
    histograms = cached[key]
    hist_train, hist_test = histograms[train], histograms[test]
    if method == "BoVW + SVM":
        search = svm_search(class_weight, seed, scoring).fit(hist_train, y_train, groups=groups)
        return search.predict(hist_test), {"svm": _params(search)}
    if method == "BoVW-MI single representation":
        words = bovw.words_kept(hist_train.shape[1], bovw.SINGLE_KEEP)
        search = svm_search(class_weight, seed, scoring, words).fit(hist_train, y_train,
                                                                    groups=groups)
        return search.predict(hist_test), {"svm": _params(search), "words": words}
    if method == "BoVW-MI multi representation":
        scores, chosen = [], {}
        words = bovw.words_kept(hist_train.shape[1], bovw.MULTI_KEEP)
        for c in range(int(labels.max()) + 1):
            task = (y_train == c).astype(int)
            search = svm_search(class_weight, seed, scoring, words).fit(hist_train, task,
                                                                        groups=groups)
            scores.append(search.decision_function(hist_test))
            chosen[str(c)] = {"svm": _params(search), "words": words}
        return np.argmax(np.stack(scores, axis=1), axis=1), chosen
    raise KerasLesionsError(f"unknown baseline {method!r} (known: {', '.join(METHODS)})")


def _params(search) -> dict:
    return {k.replace("svc__", ""): v for k, v in search.best_params_.items()}


def run_baselines(dataset, cells: Sequence[tuple[int, int, np.ndarray, np.ndarray]], *,
                  methods: Sequence[str] = METHODS, class_weight: str | None = None,
                  seed: int = 0, scoring: str = "accuracy", size: int | None = None,
                  log: Log = print,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, list[dict]]:
    """Every method on every cell: run records as ``crossval.run_record`` gives
    them (repeat, fold, seed, y_true, y_pred, lesion_ids), per method.

    Args:
        dataset: a ``LesionDataset`` read with images.
        cells: (repeat, fold, training indices, test indices) of each cell.
        size: the ROI side the features see (default the dataset's input
            size; an experiment passes its classifier's).

    Raises:
        KerasLesionsError: an unknown method, a test patient among the
            training patients, or a class without training lesions in a cell
            (checked for every cell before anything is fitted).
    """
    from keras_lesions.pipeline import roi_inputs

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise KerasLesionsError(f"unknown baseline {unknown[0]!r} (known: {', '.join(METHODS)})")
    labels = dataset.labels.astype(np.int64)
    patients = np.asarray(dataset.patient_ids).astype(str)
    ids = np.asarray(dataset.lesion_ids).astype(str)
    for repeat, fold, train, test in cells:
        if set(patients[train]) & set(patients[test]):
            raise KerasLesionsError(f"cell repeat {repeat}, fold {fold}: a test patient is among "
                                    "the training patients")
        missing = [name for c, name in enumerate(dataset.class_names)
                   if not np.any(labels[train] == c)]
        if missing:
            raise KerasLesionsError(f"cell repeat {repeat}, fold {fold}: no training lesion of "
                                    f"{', '.join(missing)}; a classifier cannot learn a class it "
                                    "never sees (drop the class or give it more patients)")
    images = roi_inputs(dataset, size=size)
    cached: dict = {}
    records: dict[str, list[dict]] = {m: [] for m in methods}
    total, done = len(cells) * len(methods), 0
    for repeat, fold, train, test in cells:
        for method in methods:
            predicted, chosen = fit_predict(method, images, labels, patients, train, test,
                                            cached, class_weight=class_weight, seed=seed,
                                            scoring=scoring)
            accuracy = float(np.mean(predicted == labels[test]))
            log(f"{method}, repeat {repeat}, fold {fold}: test accuracy {100 * accuracy:.1f}% "
                f"({chosen})")
            records[method].append({"repeat": repeat, "fold": fold, "seed": 0,
                                    "y_true": labels[test], "y_pred": np.asarray(predicted),
                                    "lesion_ids": ids[test], "chosen": chosen})
            done += 1
            if progress:
                progress(done, total)
    return records


def table6(summaries: dict[str, dict]) -> list[str]:
    """Table 6 in Markdown: weighted sensitivity (the total accuracy) and
    specificity as the paper reports them, balanced accuracy with its
    interval, and the paper's figures."""
    lines = ["| method | sensitivity (weighted) | specificity (weighted) | balanced accuracy "
             "(95% CI) | paper: sensitivity / specificity |", "|---|---|---|---|---|"]
    for name, s in summaries.items():
        pooled = s["pooled"]
        low, high = s["intervals"]["balanced_accuracy"]["ci95"]
        paper = PAPER_TABLE6.get(name)
        lines.append(f"| {name} | {100 * pooled['weighted_sensitivity']:.1f}% | "
                     f"{100 * pooled['weighted_specificity']:.1f}% | "
                     f"{100 * pooled['balanced_accuracy']:.1f}% ({100 * low:.1f}–{100 * high:.1f}) | "
                     + (f"{paper[0]:.1f}% / {paper[1]:.1f}%" if paper else "—") + " |")
    return lines


def write_table6(summaries: dict[str, dict], out_dir: str | os.PathLike, *, source: str,
                 cells: int, class_weight: str | None, cnn_from: str | None) -> Path:
    """table6.md and table6.json (and every method's own tables) in ``out_dir``."""
    from keras_lesions.evaluate.report import write_summary

    out = Path(out_dir)
    for name, summary in summaries.items():
        write_summary(summary, out, "baseline-" + name.lower().replace(" + ", "-")
                      .replace(" ", "-"), name)
    lines = ["# Table 6: comparison to non-network methods (Frid-Adar et al. 2018 §4.5)", "",
             f"Dataset: {source}; {cells} cells (repeat, test fold) of patient-level "
             "cross-validation. Each baseline was fitted on a cell's training patients only; "
             "its SVM's C and gamma were chosen by an inner cross-validation over those "
             "patients (grouped by patient; 3 folds, or as many as the rarest class's patients "
             "allow, and the grid's defaults C = 1, gamma = 'scale' below 2); SVM class "
             f"weights: {class_weight or 'none'}. "
             "Sensitivity and specificity are the support-weighted means over the classes, as "
             "the paper's Table 6 reports them (the weighted sensitivity is the total accuracy)."
             + (f" The CNN rows are the experiment's own ({cnn_from}), on the same cells."
                if cnn_from else " No experiment was given: no CNN rows."), "",
             *table6(summaries), "",
             "The paper's figures are on its 182 clinical lesions; ours are on the dataset "
             "above, so only the order of the methods can be compared."]
    path = out / "table6.md"
    write_text(path, "\n".join(lines) + "\n")
    write_json(out / "table6.json", {name: {"pooled": s["pooled"],
                                            "balanced_accuracy": s["intervals"]
                                            ["balanced_accuracy"]}
                                     for name, s in summaries.items()})
    return path
