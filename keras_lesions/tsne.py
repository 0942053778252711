"""Fig. 9 of Frid-Adar et al. 2018 (§4.3): the classifiers' last hidden layer
embedded with t-SNE, and numbers that say how well the classes separate.

For each trained classifier run, the features of its own test fold's real
lesions (optionally also classic augmentations of them) are the outputs of
the last hidden layer (``dense``, the units before the softmax: 128 in the
paper's network). The
paper shows the t-SNE picture of CNN-AUG beside CNN-AUG-GAN and reads "better
separated" off it. t-SNE distances mean little (van der Maaten & Hinton 2008
preserve neighbourhoods, not distances or cluster sizes), so the scores are
computed in the original feature space, and the embedding is only the
picture:

* the silhouette score of the classes (scikit-learn, Euclidean; −1 to 1,
  higher is better separated, Rousseeuw 1987);
* the leave-one-out accuracy of a 5-nearest-neighbour vote (each lesion's
  class predicted by its five nearest other lesions; a tie goes to the
  nearest tied class).

Both are computed on the real lesions only; augmentations, when asked for,
are only drawn in the picture (an augmented copy's nearest neighbours are
its own lesion's copies, which would make any features score well).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from keras_lesions.errors import KerasLesionsError
from keras_lesions.io import save_figure, write_json

KNN_K = 5  # the choice: five neighbours
MIN_LESIONS = 3  # below it t-SNE's perplexity cannot stay below n
FEATURE_LAYER = "dense"  # the classifier's last hidden layer (models.classifier)
INFERENCE_BATCH = 256


def separation_scores(features: np.ndarray, labels: Sequence[int], k: int = KNN_K) -> dict:
    """How well classes separate in a feature space.

    Args:
        features: [n, d].
        labels: class per row.
        k: neighbours of the vote.

    Returns:
        {"silhouette", "knn_accuracy", "k", "n"}; NaN silhouette with fewer
        than two classes, NaN kNN accuracy with k or fewer rows.
    """
    from sklearn.metrics import silhouette_score
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(features, np.float64)
    y = np.asarray(labels, np.int64).reshape(-1)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be [n, d] with one label per row, got {x.shape} and "
                         f"{y.shape}")
    n_classes = len(np.unique(y))
    silhouette = (float(silhouette_score(x, y)) if 2 <= n_classes < len(y) else float("nan"))
    knn = float("nan")
    if len(y) > k:
        # k + 1 neighbours of every row, itself among them (at distance 0):
        # drop each row's own index, keep its k nearest others
        _, index = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
        others = [[j for j in row if j != i][:k] for i, row in enumerate(index)]
        knn = float(np.mean([_vote(y[row]) == y[i] for i, row in enumerate(others)]))
    return {"silhouette": silhouette, "knn_accuracy": knn, "k": int(k), "n": int(len(y))}


def _vote(neighbours: np.ndarray) -> int:
    """The majority class of neighbours (nearest first); a tie goes to the
    tied class of the nearest neighbour, not to the lowest class index."""
    counts = np.bincount(neighbours)
    tied = np.flatnonzero(counts == counts.max())
    return int(next(c for c in neighbours if c in tied))


def run_features(run_dir: str | os.PathLike, *, augmentations: int = 0, seed: int = 0) -> dict:
    """The last hidden layer's features of a classifier run's test-fold lesions.

    Args:
        run_dir: a finished classifier run (Frid-Adar's CNN) with test
            predictions.
        augmentations: classic augmentations (Frid-Adar §3.1's transforms)
            of each lesion to add; 0 for the real lesions only.
        seed: the augmentations' seed.

    Returns:
        {"features" [n, d], "labels", "augmented" bool [n], "lesion_ids",
        "class_names", "title"}.

    Raises:
        KerasLesionsError: not a finished run of that classifier, or its
            dataset is not there to read the lesions from.
    """
    import keras

    from keras_lesions.data import read_dataset
    from keras_lesions.evaluate.crossval import run_record
    from keras_lesions.inference import predict
    from keras_lesions.pipeline import lesion_inputs
    from keras_lesions.predict import run_preprocessing
    from keras_lesions.runs.folder import read_run_info
    from keras_lesions.train.classifier import load_run_model

    from keras_lesions.train.classifier import KIND as CLASSIFIER

    run_dir = Path(run_dir)
    info = read_run_info(run_dir, kind=CLASSIFIER)
    record = run_record(run_dir)
    model = load_run_model(run_dir)
    try:
        hidden = model.get_layer(FEATURE_LAYER).output
    except ValueError:
        raise KerasLesionsError(f"has no {FEATURE_LAYER!r} layer: t-SNE reads Frid-Adar's "
                                "classifier's last hidden layer", run_dir) from None
    dataset_path = record.get("dataset")
    if not dataset_path or not Path(dataset_path).is_file():
        raise KerasLesionsError(f"names the dataset {dataset_path or '(none)'}, which is not "
                                "there: its test lesions cannot be read", run_dir)
    dataset = read_dataset(dataset_path)
    position = {lesion_id: i for i, lesion_id in enumerate(dataset.lesion_ids.tolist())}
    ids = [str(i) for i in np.asarray(record["lesion_ids"]).tolist()]
    missing = [i for i in ids if i not in position]
    if missing:
        raise KerasLesionsError(f"its test lesion {missing[0]} is not in {dataset_path}", run_dir)
    lesions = [dataset.lesions[position[i]] for i in ids]
    if [lesion.label for lesion in lesions] != np.asarray(record["y_true"]).tolist():
        raise KerasLesionsError(f"{dataset_path} gives its test lesions other classes than it "
                                "was tested with: the dataset was replaced", run_dir)
    preprocessing = run_preprocessing(info, run_dir, model.input_shape[1])
    inputs = [lesion_inputs(lesions, preprocessing)]
    labels = [np.array([lesion.label for lesion in lesions])]
    augmented = [np.zeros(len(lesions), bool)]
    if augmentations:
        inputs.append(_augmented_inputs(lesions, preprocessing, augmentations, seed))
        labels.append(np.repeat(labels[0], augmentations))
        augmented.append(np.ones(len(lesions) * augmentations, bool))
    features = predict(keras.Model(model.input, hidden), np.concatenate(inputs),
                       INFERENCE_BATCH)
    fold = f"repeat{record['repeat']}/fold{record['fold']}" if record["repeat"] else \
        f"fold{record['fold']}"
    return {"features": np.asarray(features, np.float64), "labels": np.concatenate(labels),
            "augmented": np.concatenate(augmented), "lesion_ids": ids,
            "class_names": list(record["class_names"] or dataset.class_names),
            "title": f"{record['group']}, {fold}, seed {record['seed']}"}


def _augmented_inputs(lesions, preprocessing: dict, per_lesion: int, seed: int) -> np.ndarray:
    """``per_lesion`` classic augmentations of each lesion, rendered as the
    training groups render them (Frid-Adar §3.1's rotations, flips,
    translations and scales, drawn per lesion from (seed, lesion))."""
    from keras_lesions.augment.classic import (
        augment_lesion, draw_offline_params, lesion_geometry, windowed_context)

    size = int(preprocessing["input_size"])
    level = preprocessing["window_level"]
    width = preprocessing["window_width"]
    out = []
    for row, lesion in enumerate(lesions):
        # enough rotations for per_lesion draws, then a seeded choice among them
        n_rot = max(1, -(-per_lesion // 16))
        rng = np.random.default_rng([seed, row])
        params = draw_offline_params(lesion.diameter_px, n_rot=n_rot, rng=rng)
        chosen = [params[i] for i in rng.choice(len(params), per_lesion, replace=False)]
        context = windowed_context(lesion, np.nan if level is None else float(level),
                                   np.nan if width is None else float(width),
                                   preprocessing["intensity_unit"])
        out.append(augment_lesion(context, lesion_geometry(lesion), chosen, size=size))
    return np.concatenate(out)


def embed(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of the features (scikit-learn, PCA initialisation, a fixed
    seed); perplexity 30, or less for small sets (it must stay below n)."""
    from sklearn.manifold import TSNE

    n = len(features)
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed
                ).fit_transform(np.asarray(features, np.float64))


def tsne_report(run_dirs: Sequence[str | os.PathLike], out_png: str | os.PathLike, *,
                augmentations: int = 0, seed: int = 0) -> dict:
    """Fig. 9: one t-SNE panel per run, side by side, each titled with its
    separation scores; ``out_png`` and the scores beside it as JSON.

    Returns:
        {"panels": [{"run", "title", "scores", "n_real", "n_augmented"}],
        "png", "json"}.

    Raises:
        KerasLesionsError: a run that cannot be read (see
            :func:`run_features`), or runs of different classes.
    """
    out_png = Path(out_png)
    panels = []
    for run_dir in run_dirs:
        found = run_features(run_dir, augmentations=augmentations, seed=seed)
        if panels and found["class_names"] != panels[0]["class_names"]:
            raise KerasLesionsError(f"has classes {', '.join(found['class_names'])}, not "
                                    f"{', '.join(panels[0]['class_names'])}: give runs of one "
                                    "dataset", run_dir)
        real = ~found["augmented"]
        features = found["features"]
        if int(real.sum()) < MIN_LESIONS:
            raise KerasLesionsError(f"has {int(real.sum())} test lesion(s): t-SNE and the scores "
                                    f"need at least {MIN_LESIONS}", run_dir)
        if not np.all(np.isfinite(features)) or np.ptp(features, axis=0).max() == 0:
            raise KerasLesionsError("its last hidden layer gives every test lesion the same "
                                    "features (dead units): nothing to embed", run_dir)
        # the scores read the real lesions only: an augmented copy's nearest
        # neighbours are its own lesion's other copies
        found["scores"] = separation_scores(features[real], found["labels"][real])
        found["embedding"] = embed(features, seed)
        found["run"] = str(run_dir)
        panels.append(found)
    _write_png(panels, out_png)
    result = {"panels": [{"run": p["run"], "title": p["title"], "scores": p["scores"],
                          "features": int(p["features"].shape[1]),
                          "n_real": int((~p["augmented"]).sum()),
                          "n_augmented": int(p["augmented"].sum())} for p in panels],
              "feature_layer": FEATURE_LAYER, "knn_k": KNN_K, "seed": seed,
              "png": str(out_png), "json": str(out_png.with_suffix(".json"))}
    write_json(out_png.with_suffix(".json"), result)
    return result


def _write_png(panels: list[dict], path: Path) -> None:
    # A bare Figure (no pyplot): no global backend switch, nothing left open.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6 * len(panels), 4.6))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for ax, panel in zip(axes, panels):
        xy, labels, augmented = panel["embedding"], panel["labels"], panel["augmented"]
        for c, name in enumerate(panel["class_names"]):
            colour = colours[c % len(colours)]
            mine = labels == c
            if augmented.any():
                ax.scatter(*xy[mine & augmented].T, s=6, alpha=0.25, color=colour,
                           marker=".")
            ax.scatter(*xy[mine & ~augmented].T, s=18, color=colour, edgecolor="black",
                       linewidth=0.3, label=name)
        scores = panel["scores"]
        ax.set_title(f"{panel['title']}\nsilhouette {scores['silhouette']:.2f}, "
                     f"{scores['k']}-NN accuracy {100 * scores['knn_accuracy']:.1f}% "
                     f"(n = {scores['n']})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("t-SNE of the last hidden layer (scores in the feature space, real test "
                 "lesions)", fontsize=9)
    save_figure(fig, path)
