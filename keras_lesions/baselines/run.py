"""``kl baselines``: Table 6 on a dataset's own folds, or on an experiment's
cells beside its CNN rows."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from keras_lesions.baselines.crossval import METHODS, Log, run_baselines, write_table6
from keras_lesions.config import ExperimentConfig
from keras_lesions.errors import DatasetError, KerasLesionsError

# evaluate.primary_metric -> what the SVMs' inner cross-validation maximises
# (an AUC needs probabilities the SVMs do not give: balanced accuracy there)
INNER_SCORING = {"accuracy": "accuracy", "balanced_accuracy": "balanced_accuracy",
                 "auc": "balanced_accuracy"}


def baselines_on_dataset(path: str | os.PathLike, out_dir: str | os.PathLike, *,
                         methods=METHODS, class_weight: str | None = None, log: Log = print,
                         progress: Callable[[int, int], None] | None = None) -> dict:
    """Table 6 on the dataset's own patient-level folds (each fold tested once).

    Raises:
        DatasetError: a dataset without folds.
    """
    from keras_lesions.data import read_dataset
    from keras_lesions.evaluate.report import summarize_predictions

    dataset = read_dataset(path)
    if dataset.folds is None:
        raise DatasetError("has no fold assignment: run `kl data folds` on it first", path)
    folds = np.asarray(dataset.folds)
    cells = [(0, k, np.flatnonzero(folds != k), np.flatnonzero(folds == k))
             for k in range(int(dataset.fold_k))]
    records = run_baselines(dataset, cells, methods=methods, class_weight=class_weight, log=log,
                            progress=progress)
    patient_of = dict(zip(dataset.lesion_ids.tolist(), dataset.patient_ids.tolist()))
    summaries = {m: summarize_predictions(r, dataset.class_names, patient_of)
                 for m, r in records.items()}
    table = write_table6(summaries, out_dir, source=str(path), cells=len(cells),
                         class_weight=class_weight, cnn_from=None)
    return {"summaries": summaries, "table": table}


def baselines_on_experiment(config: ExperimentConfig, out_dir: str | os.PathLike | None = None,
                            *, methods=METHODS, log: Log = print,
                            progress: Callable[[int, int], None] | None = None) -> dict:
    """Table 6 on an experiment's cells (every repeat and fold; each fitted on
    the cell's training patients), beside the experiment's CNN-AUG (and, for
    a gan-curve, CNN-AUG-GAN) when its report exists. The SVMs weight classes
    when the experiment's classifiers do (``train.class_balance``), and their
    inner cross-validation maximises its primary metric.
    """
    from keras_lesions.experiments.registry import open_for
    from keras_lesions.runs.folder import read_json_record

    exp = open_for(config, log, create=False, record=False)
    cells = []
    for repeat, fold in exp.cells():
        split = exp.split(repeat, fold)
        cells.append((repeat, fold, split.training, split.test))
    class_weight = None if config.train.class_balance == "none" else "balanced"
    records = run_baselines(exp.dataset, cells, methods=methods, class_weight=class_weight,
                            scoring=INNER_SCORING[config.evaluate.primary_metric], log=log,
                            progress=progress)
    summaries = {}
    cnn_from = None
    if exp.layout.result.is_file():
        result = read_json_record(exp.layout.result)
        for name, key in (("CNN-AUG", "optimal_summary"), ("CNN-AUG", "baseline_summary"),
                          ("CNN-AUG-GAN", "best_summary")):
            if isinstance(result.get(key), dict) and "intervals" in result[key]:
                summaries[name] = result[key]
        cnn_from = str(exp.layout.result) if summaries else None
        if not summaries:
            log(f"{exp.layout.result}: made before reports had balanced intervals; run `kl "
                "experiment --report` for the CNN rows")
    summaries.update({m: exp.summarize(r) for m, r in records.items()})
    out = Path(out_dir) if out_dir is not None else exp.layout.report / "baselines"
    table = write_table6(summaries, out, source=f"{exp.dataset_path} ({config.name})",
                         cells=len(cells), class_weight=class_weight, cnn_from=cnn_from)
    return {"summaries": summaries, "table": table}


def check_methods(names) -> list[str]:
    """The methods named, each known.

    Raises:
        KerasLesionsError: an unknown one.
    """
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise KerasLesionsError(f"unknown baseline {unknown[0]!r} (known: {', '.join(METHODS)})")
    return list(names)
