"""Training the classification CNN of Frid-Adar et al. 2018: ``compile`` + ``fit``.

A classifier run folder follows ``runs.folder``'s layout::

    RUN/run.json, RUN/config.yaml   kind "lesion_classifier", what it trained on
    RUN/checkpoint/                 per-epoch weights, optimizer state, epoch
    RUN/history.csv, tensorboard/   per-epoch loss and accuracy
    RUN/model.keras                 the trained classifier (written atomically)
    RUN/predictions.npz             test-fold predictions (``runs.predictions``)
    RUN/done.json                   written last
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

import numpy as np

from keras_lesions.config import ExperimentConfig
from keras_lesions.errors import KerasLesionsError
from keras_lesions.runs.folder import (
    check_start, data_fingerprint, identity, read_run_info, start_run)
from keras_lesions.train.balance import (
    NONE, WEIGHTS, balance_record, balanced_classes, sample_weights)
from keras_lesions.train.precision import (
    compiled_as_configured, compute_settings, precision_policy)

KIND = "lesion_classifier"


def classifier_config_settings(config: ExperimentConfig, seed: int) -> dict:
    """The settings of a classifier run that its config decides: the network
    and optimisation sections and the seed (checked before data are loaded)."""
    train = {**dataclasses.asdict(config.train), "seed": seed}
    if train["class_balance"] == NONE:
        # what every run did before the setting existed: their settings stand
        del train["class_balance"]
    return {"classifier": dataclasses.asdict(config.classifier), "train": train,
            **compute_settings(config)}


def classifier_settings(config: ExperimentConfig, seed: int, images: np.ndarray,
                        targets: np.ndarray) -> dict:
    """Everything that changes a classifier run's result: the config's part,
    and the identity of its training data."""
    return {**classifier_config_settings(config, seed),
            "n_train": int(len(images)), "train_data": data_fingerprint(images, targets)}


def build_compiled_classifier(config: ExperimentConfig, num_classes: int, input_size: int,
                              mean: float):
    """The classification CNN at the config's size under ``compute.precision``,
    compiled as §4.1 trains it (under mixed_float16 ``compile`` wraps the
    optimizer in a LossScaleOptimizer)."""
    import keras

    from keras_lesions.models import build_lesion_classifier

    with precision_policy(config.compute.precision):
        model = build_lesion_classifier(
            num_classes=num_classes, input_size=input_size,
            filters=tuple(config.classifier.filters), kernel_size=config.classifier.kernel_size,
            dense_units=config.classifier.dense_units, dropout=config.classifier.dropout,
            mean=mean)
    model.compile(
        # §4.1: SGD with Nesterov momentum, learning rate 0.001.
        optimizer=keras.optimizers.SGD(learning_rate=config.train.learning_rate,
                                       momentum=config.train.momentum, nesterov=True),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=config.compute.xla,   # explicit: Keras' "auto" would turn XLA on on a GPU
    )
    return compiled_as_configured(model, config)


def train_classifier(
    images: np.ndarray,
    targets: np.ndarray,
    config: ExperimentConfig,
    run_dir: str | os.PathLike,
    *,
    seed: int | None = None,
    resume: bool = False,
    run_info: dict | None = None,
    verbose: int | str = 0,
    tensorboard: bool = True,
    progress: Callable[[int, int], None] | None = None,
):
    """Train the Frid-Adar classifier on in-memory images; checkpoint every epoch.

    Args:
        images: float32 [n, size, size, 1] in [0, 1] (training folds only).
        targets: float32 [n, classes] one-hot or soft targets.
        config: the experiment config (classifier and train sections are
            used; ``train.class_balance`` weights the loss or balances the
            batches: ``keras_lesions.train.balance``).
        run_dir: the run folder (see module docstring).
        seed: overrides ``config.train.seed`` (weight init, dropout, batch order).
        resume: continue an interrupted run from its last epoch checkpoint.
            Without it, a folder holding a started run is refused; so is one
            started with other settings or other training data.
        run_info: facts recorded in ``run.json`` (fold, group, class names ...).
        verbose: Keras ``fit`` verbosity.
        tensorboard: write TensorBoard logs.
        progress: ``progress(epochs done, epochs)``.

    Returns:
        The trained ``keras.Model`` (also saved as ``RUN/model.keras``); the
        run is finished by whoever tests it (``runs.folder.finish_run``).

    Raises:
        RunError: the folder holds a finished run, a started one without
            ``resume``, or one of other settings.
        KerasLesionsError: images and targets that do not fit together.
        ConfigError: ``compute.xla`` is on and Keras compiled a network
            without it (:func:`~keras_lesions.train.precision.compiled_as_configured`);
            refused before the folder is claimed.
    """
    import keras

    from keras_lesions.pipeline import epoch_batches, step_batches
    from keras_lesions.runs.checkpoint import fit_resumably, save_networks

    images = np.asarray(images, np.float32)
    targets = np.asarray(targets, np.float32)
    if images.ndim != 4 or images.shape[-1] != 1:
        raise KerasLesionsError(f"training images must be [n, size, size, 1], got {images.shape}")
    if len(images) != len(targets):
        raise KerasLesionsError(f"{len(images)} images but {len(targets)} targets")
    if len(images) == 0:
        raise KerasLesionsError("no training images")
    seed = config.train.seed if seed is None else seed
    run_dir = Path(run_dir)
    # The training-set mean is fitted here, on the training images only, and
    # stored inside the model (SubtractMean).
    mean = float(images.mean())
    settings = {**classifier_settings(config, seed, images, targets), **identity(run_info)}
    check_start(run_dir, kind=KIND, settings=settings, resume=resume)
    # Built before the folder is claimed, so that a build the config cannot
    # have (compiled_as_configured) leaves no started run behind.
    keras.utils.set_random_seed(seed)
    model = build_compiled_classifier(config, targets.shape[1], images.shape[1], mean)
    model.optimizer.build(model.trainable_variables)  # its state must exist to be restored
    start_run(run_dir, kind=KIND, settings=settings,
              info={**(run_info or {}), "seed": seed, "n_train": int(len(images)),
                    "train_mean": mean, "sgd_steps": sgd_steps(config.train, len(images)),
                    **balance_record(targets, (run_info or {}).get("class_names")
                                     or [str(c) for c in range(targets.shape[1])],
                                     config.train.class_balance)},
              config=config, resume=resume)

    train = config.train
    # (images, targets, weights): Keras reads a third element as sample weights
    arrays = (images, targets) + ((sample_weights(targets),)
                                  if train.class_balance == WEIGHTS else ())
    classes = balanced_classes(targets, train.class_balance)
    if train.steps:
        # Equal compute (train.steps): the same SGD steps for every run, in
        # train.epochs checkpointed parts, whatever the size of its set.
        per_part = -(-train.steps // train.epochs)

        def make_data(first):
            return step_batches(arrays, train.batch_size, seed, first, train.epochs, per_part,
                                balance_classes=classes)
    else:
        def make_data(first):
            return epoch_batches(arrays, train.batch_size, seed, first, train.epochs,
                                 drop_remainder=False, balance_classes=classes)
    fit_resumably(
        model, run_dir, {"model": model, "optimizer": model.optimizer}, epochs=train.epochs,
        make_data=make_data,
        columns=["epoch", "loss", "accuracy"], tensorboard=tensorboard, progress=progress,
        verbose=verbose)
    save_networks(run_dir, {"model": model})
    return model


def sgd_steps(train, n_images: int) -> int:
    """The SGD steps a classifier run of ``n_images`` training images takes."""
    if train.steps:
        return train.epochs * -(-train.steps // train.epochs)
    return train.epochs * -(-n_images // max(1, min(train.batch_size, n_images)))


def load_run_model(run_dir: str | os.PathLike):
    """Load a trained classifier run's model (safe mode: no code from the file).

    Raises:
        RunError: no classifier run in that folder, or no trained model yet.
    """
    from keras_lesions.runs.checkpoint import load_network

    read_run_info(run_dir, kind=KIND)
    return load_network(run_dir, "model")
