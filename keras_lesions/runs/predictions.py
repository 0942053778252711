"""Predictions of a classifier run: the test fold's ``RUN/predictions.npz`` and,
where choices are made on validation patients, ``RUN/validation_predictions.npz``.

One writer and one reader for every run that classifies test lesions (the
Frid-Adar CNN, the Ben-Cohen classifiers, the ACGAN discriminator used as a
classifier), so reports read them all the same way.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from keras_lesions.io import atomic_path
from keras_lesions.runs.folder import RunError

PREDICTIONS = "predictions.npz"
# What choices read (D_aug optimal, synthetic sizes): never the test file.
VALIDATION_PREDICTIONS = "validation_predictions.npz"


def write_predictions(run_dir: str | os.PathLike, probabilities: np.ndarray,
                      y_true: Sequence[int], lesion_ids: Sequence[str],
                      name: str = PREDICTIONS) -> float:
    """Write ``predictions.npz`` (or ``name``) atomically and return the accuracy.

    Args:
        probabilities: float [n, classes], each row a distribution.
        y_true: int [n] true classes.
        lesion_ids: [n] ids of the test lesions.

    Returns:
        The share of lesions whose most probable class is the true one.
    """
    probabilities = np.asarray(probabilities, np.float32)
    y_true = np.asarray(y_true, np.int64)
    y_pred = probabilities.argmax(1) if len(probabilities) else np.zeros(0, np.int64)
    with atomic_path(Path(run_dir) / name, suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, probabilities=probabilities, y_true=y_true, y_pred=y_pred,
                     lesion_ids=np.asarray(lesion_ids, dtype=str))
    return float((y_pred == y_true).mean()) if len(y_true) else float("nan")


def read_predictions(run_dir: str | os.PathLike,
                     name: str = PREDICTIONS) -> dict[str, np.ndarray]:
    """``{"probabilities", "y_true", "y_pred", "lesion_ids"}`` of a run (its test
    predictions, or ``name``).

    Raises:
        RunError: no predictions, or a damaged file.
    """
    path = Path(run_dir) / name
    if not path.is_file():
        raise RunError(f"holds no {name}; is the run finished?", run_dir)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in ("probabilities", "y_true", "y_pred", "lesion_ids")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise RunError(f"{name} cannot be read ({type(exc).__name__}); delete the run "
                       "folder to train it again", run_dir) from None


def predict_and_record(model, run_dir: str | os.PathLike, images: np.ndarray,
                       labels: Sequence[int], lesion_ids: Sequence[str],
                       name: str = PREDICTIONS) -> float:
    """Classify the images with ``model`` and write ``predictions.npz`` (or ``name``).

    Returns:
        The accuracy.
    """
    from keras_lesions.inference import predict

    return write_predictions(run_dir, predict(model, images), labels, lesion_ids, name)
