"""``kl baselines`` on a dataset's own folds, and the baselines of cells of an
experiment (``experiments.table6`` puts them beside its CNN rows)."""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from keras_lesions.baselines.crossval import METHODS, Log, run_baselines, write_table6
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


def baselines_on_cells(exp, cells, *, methods=METHODS, log: Log = print,
                       progress: Callable[[int, int], None] | None = None) -> dict:
    """``crossval.run_baselines`` on cells of an experiment (anything with a
    ``config`` and a ``dataset``), with its class balance (SVM class weights)
    and primary metric (the inner cross-validation's score)."""
    config = exp.config
    return run_baselines(exp.dataset, cells, methods=methods,
                         class_weight=None if config.train.class_balance == "none"
                         else "balanced",
                         scoring=INNER_SCORING[config.evaluate.primary_metric],
                         size=config.classifier.input_size, log=log, progress=progress)


def check_methods(names) -> list[str]:
    """The methods named, each known.

    Raises:
        KerasLesionsError: an unknown one.
    """
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise KerasLesionsError(f"unknown baseline {unknown[0]!r} (known: {', '.join(METHODS)})")
    return list(names)
