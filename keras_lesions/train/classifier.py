"""Training the classification CNN: plain ``compile`` + ``fit`` with a run folder.

A run folder holds everything one training produced and is enough to resume,
evaluate and export it::

    RUN/config.yaml          the resolved experiment config
    RUN/run.json             what was trained on (fold, group, class names, sizes)
    RUN/backup/              per-epoch checkpoint (weights + optimizer + epoch),
                             removed once training finishes
    RUN/history.csv          per-epoch loss and accuracy
    RUN/tensorboard/         TensorBoard logs
    RUN/model.keras          the trained classifier (written atomically at the end)
    RUN/predictions.npz      test-fold probabilities, labels and lesion ids
    RUN/done.json            written last: the run is complete and never retrained
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from keras_lesions.config import ExperimentConfig, save_config
from keras_lesions.data.dataset import atomic_path
from keras_lesions.errors import KerasLesionsError


class RunError(KerasLesionsError):
    """A run folder is missing, of the wrong kind, or in the way."""


def is_done(run_dir: str | os.PathLike) -> bool:
    """Whether the run finished (``done.json`` is written last)."""
    return (Path(run_dir) / "done.json").is_file()


def claim_run_dir(run_dir: str | os.PathLike, resume: bool) -> bool:
    """Refuse a folder holding a finished run, or an unfinished one without resume.

    Returns:
        Whether the folder already holds a started run (to be resumed).

    Raises:
        RunError: as above; every trainer shares these rules.
    """
    run_dir = Path(run_dir)
    if is_done(run_dir):
        raise RunError("holds a finished run; it is never trained again (use a new folder)",
                       run_dir)
    started = (run_dir / "run.json").is_file()
    if started and not resume:
        raise RunError("holds an unfinished run: pass --resume to continue it, or choose "
                       "another folder", run_dir)
    return started


def record_run(run_dir: str | os.PathLike, config: ExperimentConfig, info: dict,
               started: bool, must_match: tuple[str, ...] = ()) -> None:
    """Write the run's config.yaml, and run.json for a new run.

    A resumed run (``started``) keeps its run.json, and each ``must_match``
    key of it must equal ``info``'s, or two trainings would be mixed.

    Raises:
        RunError: a resumed run of another kind, or recorded with other settings.
    """
    run_dir = Path(run_dir)
    if started:
        previous = read_run_info(run_dir)
        if previous.get("kind") != info.get("kind"):
            raise RunError(f"holds a {previous.get('kind')!r} run; cannot resume it as "
                           f"{info.get('kind')!r}", run_dir)
        for key in must_match:
            if previous.get(key) != info.get(key):
                raise RunError(f"was started with {key} = {previous.get(key)!r}; resuming "
                               f"with {info.get(key)!r} would mix two trainings", run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    if not started:
        write_json(run_dir / "run.json", info)


def read_run_info(run_dir: str | os.PathLike) -> dict:
    """The ``run.json`` of a run folder.

    Raises:
        RunError: no such folder, no run.json, or one that cannot be read.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError("no such run folder", run_dir)
    info_path = run_dir / "run.json"
    if not info_path.is_file():
        raise RunError("holds no run.json: not a run folder", run_dir)
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"run.json cannot be read ({type(exc).__name__})", run_dir) from None
    if not isinstance(info, dict):
        raise RunError("run.json is not a JSON object", run_dir)
    return info


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write JSON atomically (temp file, then rename)."""
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_json_default),
                       encoding="utf-8")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def train_classifier(
    images: np.ndarray,
    targets: np.ndarray,
    config: ExperimentConfig,
    run_dir: str | os.PathLike,
    *,
    seed: int | None = None,
    resume: bool = False,
    run_info: dict | None = None,
    verbose: int | str = "auto",
    tensorboard: bool = True,
    on_epoch_end: Callable[[int, dict], None] | None = None,
):
    """Train the Frid-Adar classifier on in-memory images; checkpoint every epoch.

    Args:
        images: float32 [n, size, size, 1] in [0, 1] (training folds only).
        targets: float32 [n, classes] one-hot or soft targets.
        config: the experiment config (classifier and train sections are used).
        run_dir: the run folder (see module docstring).
        seed: overrides ``config.train.seed`` (weight init, dropout, shuffling).
        resume: continue an interrupted run from its last epoch checkpoint.
            Without it, a folder holding a previous run is refused.
        run_info: facts recorded in ``run.json`` (fold, group, class names ...).
        verbose: Keras ``fit`` verbosity.
        tensorboard: write TensorBoard logs.
        on_epoch_end: optional callback(epoch, logs).

    Returns:
        The trained ``keras.Model`` (also saved as ``RUN/model.keras``).

    Raises:
        RunError: the folder holds a finished run, or a previous run without
            ``resume``.
    """
    import keras

    from keras_lesions.data.pipeline import training_dataset
    from keras_lesions.models import build_lesion_classifier

    run_dir = Path(run_dir)
    started = claim_run_dir(run_dir, resume)
    if images.ndim != 4 or images.shape[-1] != 1:
        raise KerasLesionsError(f"training images must be [n, size, size, 1], got {images.shape}")
    if len(images) != len(targets):
        raise KerasLesionsError(f"{len(images)} images but {len(targets)} targets")
    if len(images) == 0:
        raise KerasLesionsError("no training images")

    if (run_dir / "model.keras").is_file() and not (run_dir / "backup").exists():
        # Training finished earlier but the run stopped before it was tested:
        # the saved model is complete, so it is not trained again.
        return load_run_model(run_dir)
    seed = config.train.seed if seed is None else seed
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    # The training-set mean is fitted here, on the training images only, and
    # stored inside the model (SubtractMean).
    mean = float(images.mean())
    info = {**(run_info or {}), "seed": seed, "n_train": int(len(images)),
            "train_mean": mean, "kind": "lesion_classifier"}
    if not started:
        write_json(run_dir / "run.json", info)

    keras.utils.set_random_seed(seed)
    model = build_lesion_classifier(
        num_classes=targets.shape[1], input_size=images.shape[1],
        filters=tuple(config.classifier.filters), kernel_size=config.classifier.kernel_size,
        dense_units=config.classifier.dense_units, dropout=config.classifier.dropout, mean=mean)
    model.compile(
        # §4.1: SGD with Nesterov momentum, learning rate 0.001.
        optimizer=keras.optimizers.SGD(learning_rate=config.train.learning_rate,
                                       momentum=config.train.momentum, nesterov=True),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    callbacks = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup"), save_freq="epoch",
                                         delete_checkpoint=True),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
    ]
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard"),
                                                     write_graph=False, profile_batch=0))
    if on_epoch_end is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end))
    data = training_dataset(images, targets, config.train.batch_size, seed)
    model.fit(data, epochs=config.train.epochs, callbacks=callbacks, verbose=verbose,
              shuffle=False)  # the tf.data pipeline shuffles, seeded
    with atomic_path(run_dir / "model.keras", suffix=".keras") as tmp:
        model.save(tmp)
    shutil.rmtree(run_dir / "backup", ignore_errors=True)
    return model


def load_run_model(run_dir: str | os.PathLike):
    """Load a finished run's classifier (safe mode: no code from the file).

    Raises:
        RunError: no finished classifier run in that folder.
    """
    import keras

    from keras_lesions.models.classifier import SubtractMean  # noqa: F401  (registers the layer)

    run_dir = Path(run_dir)
    model_path = run_dir / "model.keras"
    if not run_dir.is_dir():
        raise RunError("no such run folder", run_dir)
    info_path = run_dir / "run.json"
    if info_path.is_file():
        kind = json.loads(info_path.read_text()).get("kind")
        if kind != "lesion_classifier":
            raise RunError(f"is a {kind!r} run, not a lesion classifier run", run_dir)
    if not model_path.is_file():
        raise RunError("holds no trained classifier (model.keras); is the run finished?",
                       run_dir)
    try:
        return keras.saving.load_model(model_path)
    except Exception as exc:  # Keras raises many types for a damaged archive
        raise RunError(f"model.keras cannot be loaded ({type(exc).__name__})", run_dir) from None
