"""The classifier of Ben-Cohen et al. 2019: E_C and its head, trained with (soft) cross-entropy.

Step 1 of the disentanglement trains it on real lesions (it is also the
mixture experiment's baseline), and the mixture experiment trains it afresh
on real lesions plus mixtures with soft targets (§2.2). Both see the online
augmentation of §3.2 (every case ``repeats`` times an epoch), keep 30% of the
training patients aside for validation, and keep the weights of their best
validation epoch.

Our addition: batch norm's moving statistics are recomputed on the
un-augmented training images before every validation
(:func:`recalibrate_batch_norm`), because with few steps an epoch they trail
the still-moving encoder so far that validation picks epochs at random.

A classifier run folder follows ``runs.folder``'s layout (kind
"lesion_classifier", architecture "ben-cohen-2019"), plus::

    RUN/best-epoch<E>.weights.h5, RUN/best.json   the best validation epoch so far
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
from keras import ops

from keras_lesions.augment.online import ONLINE_WARP_VERSION
from keras_lesions.config import ExperimentConfig
from keras_lesions.errors import KerasLesionsError
from keras_lesions.evaluate import primary
from keras_lesions.inference import predict
from keras_lesions.io import atomic_path, write_json
from keras_lesions.runs.checkpoint import fit_resumably, save_networks
from keras_lesions.runs.folder import check_start, data_fingerprint, identity, start_run
from keras_lesions.train.precision import (
    compiled_as_configured, compute_settings, precision_policy)

# Batch of the inference passes over 128×128 images: a paper-size encoder's
# first activations are 64 × 128 × 128 floats an image.
INFERENCE_BATCH = 64


def build_specified_networks(num_classes: int, config: ExperimentConfig) -> dict[str, keras.Model]:
    """E_C and its classifier head at the config's size (Table 1)."""
    from keras_lesions.models.disentangle import build_code_classifier, build_encoder

    d = config.disentangle
    return {
        "encoder_c": build_encoder(d.input_size, d.width, d.code_size, name="encoder_c"),
        "classifier": build_code_classifier(num_classes, d.code_size, d.classifier_units,
                                            name="classifier"),
    }


def build_compiled_specified_classifier(num_classes: int, config: ExperimentConfig):
    """E_C + classifier (the paper's classification network) under
    ``compute.precision``, compiled with Adam and cross-entropy (our choice:
    the paper names no optimizer; under mixed_float16 ``compile`` wraps it in a
    LossScaleOptimizer)."""
    from keras_lesions.models.disentangle import build_specified_classifier

    with precision_policy(config.compute.precision):
        networks = build_specified_networks(num_classes, config)
        model = build_specified_classifier(networks["encoder_c"], networks["classifier"])
    model.compile(optimizer=keras.optimizers.Adam(config.disentangle.classifier_learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                  jit_compile=config.compute.xla)   # explicit, as the classifier's
    return compiled_as_configured(model, config)


def online_batches(canvases, targets: np.ndarray, config: ExperimentConfig, seed: int,
                   first_epoch: int, steps_per_epoch: int | None = None, *,
                   balance: bool = True):
    """Endless online-augmented batches (§3.2) from ``first_epoch`` on, and the
    steps per epoch. Each epoch shows every case ``repeats`` times; the last
    partial batch is dropped (batch norm wants full batches).

    With ``steps_per_epoch``, every epoch takes only that many batches of its
    shuffled showings (equal compute: the mixture arm, with twice the cases,
    takes the baseline's steps); epoch e's batches still depend on (seed, e)
    only, so a resumed run sees what an uninterrupted one would.

    With ``balance`` and ``train.class_balance: weights``, the batches carry
    each case's class weight third (``keras_lesions.train.balance``)."""
    from keras_lesions.augment.online import online_augmented_dataset, online_steps_per_epoch

    from keras_lesions.train.balance import WEIGHTS, sample_weights

    d = config.disentangle
    batch = min(d.batch_size, len(canvases) * d.repeats)
    # train.class_balance "weights" (sampling is refused for this pipeline
    # when the config is read)
    weights = sample_weights(targets) if balance and config.train.class_balance == WEIGHTS \
        else None
    natural = online_steps_per_epoch(len(canvases), d.repeats, batch, drop_remainder=True)
    if steps_per_epoch is None or steps_per_epoch >= natural:
        data = online_augmented_dataset(canvases, repeats=d.repeats, batch_size=batch, seed=seed,
                                        epochs=None, first_epoch=first_epoch,
                                        drop_remainder=True, targets=targets,
                                        sample_weights=weights)
        return data, natural
    # One pipeline (its canvases one constant), each epoch cut to its first
    # batches; a pipeline per epoch copied the canvases into the graph once
    # an epoch, which cost more than the epoch's training.
    data = online_augmented_dataset(canvases, repeats=d.repeats, batch_size=batch, seed=seed,
                                    epochs=max(1, d.classifier_epochs - first_epoch),
                                    first_epoch=first_epoch, drop_remainder=True,
                                    targets=targets, steps_per_epoch=steps_per_epoch,
                                    sample_weights=weights)
    return data, steps_per_epoch


def recalibrate_batch_norm(encoder: keras.Model, head: keras.Model, images: np.ndarray) -> None:
    """Set the head's batch-norm moving statistics to the exact statistics of
    ``images``' codes (training images only, un-augmented).

    Moving averages trail an encoder that is still learning: with a few
    dozen steps an epoch, a classifier at 87% on its own training images with
    batch statistics scored 42% with its moving ones. Recomputing them on
    the training images before each validation (and before saving) removes
    that lag; nothing of the validation or test sets is used.
    """
    x = predict(encoder, images, INFERENCE_BATCH)
    for layer in head.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(x.mean(axis=0))
            layer.moving_variance.assign(x.var(axis=0))
        x = np.asarray(ops.convert_to_numpy(layer(x, training=False)))


def crossentropy(targets: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean categorical cross-entropy of (soft) targets, as Keras computes it."""
    return float(-np.mean(np.sum(targets * np.log(np.clip(probabilities, 1e-7, 1.0)), axis=1)))


class ValidateAndKeepBest(keras.callbacks.Callback):
    """After each epoch: recalibrate batch norm on the training images, score
    the validation set (``val_loss``, ``val_accuracy`` added to the logs),
    and keep the weights of the best epoch (the primary metric, total
    accuracy as the paper; ties: lower loss).

    The best epoch's weights go to ``best-epoch<E>.weights.h5``, then
    ``best.json`` names that file, then the previous best's file goes: at any
    crash ``best.json`` names weights that exist and match it. A resumed run
    forgets a best from an epoch it is about to train again (the checkpoint
    is written after this callback), so the best is always one of the
    epochs in the history.
    """

    def __init__(self, run_dir: Path, encoder, head, calibration_images, val_images,
                 val_targets, metric: str = "accuracy"):
        super().__init__()
        self.metric = metric
        self.run_dir = run_dir
        self.encoder, self.head = encoder, head
        self.calibration_images = calibration_images
        self.val_images, self.val_targets = val_images, val_targets
        self.best = read_best(run_dir)

    def on_epoch_end(self, epoch, logs=None):
        recalibrate_batch_norm(self.encoder, self.head, self.calibration_images)
        probabilities = predict(self.model, self.val_images, INFERENCE_BATCH)
        loss = crossentropy(self.val_targets, probabilities)
        accuracy = float(np.mean(probabilities.argmax(1) == self.val_targets.argmax(1)))
        logs["val_loss"], logs["val_accuracy"] = loss, accuracy
        # the epoch is chosen on the primary metric (evaluate.primary_metric)
        score = accuracy if self.metric == "accuracy" else primary.cell_value(
            {"y_true": self.val_targets.argmax(1), "y_pred": probabilities.argmax(1),
             "probabilities": probabilities}, self.metric, probabilities.shape[1])
        if self.best is not None and self.best["epoch"] >= epoch:
            self.best = None  # from an epoch lost in a crash, being trained again
        # an undefined score (an AUC of validation lesions lacking a class,
        # stored as null) ranks below every defined one
        rank = -math.inf if math.isnan(score) else score
        best_rank = None if self.best is None else self.best.get("val_score",
                                                                  self.best["val_accuracy"])
        best_rank = -math.inf if best_rank is None else best_rank
        if self.best is None or (rank, -loss) > (best_rank, -self.best["val_loss"]):
            previous = self.best
            weights = f"best-epoch{epoch:03d}.weights.h5"
            with atomic_path(self.run_dir / weights, suffix=".weights.h5") as tmp:
                self.model.save_weights(tmp)
            self.best = {"epoch": epoch, "val_accuracy": accuracy, "val_loss": loss,
                         "weights": weights, "val_score": None if math.isnan(score) else score,
                         "metric": self.metric}
            write_json(self.run_dir / "best.json", self.best)
            if previous is not None and previous["weights"] != weights:
                (self.run_dir / previous["weights"]).unlink(missing_ok=True)


def read_best(run_dir: Path) -> dict | None:
    """``best.json`` of a run, or None before its first epoch.

    Raises:
        RunError: a damaged best.json, or one naming weights that are missing.
    """
    from keras_lesions.runs.folder import RunError

    path = Path(run_dir) / "best.json"
    if not path.is_file():
        return None
    try:
        best = json.loads(path.read_text(encoding="utf-8"))
        ok = (Path(run_dir) / best["weights"]).is_file()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        ok = False
    if not ok:
        raise RunError("best.json is damaged or names missing weights; delete the run folder "
                       "to train it again", run_dir)
    return best


def specified_classifier_settings(config: ExperimentConfig, class_names, canvases, targets,
                                  validation) -> dict:
    """Everything that changes the run's result: the disentangle section's
    network and schedule, and the identity of its training and validation data."""
    d = dataclasses.asdict(config.disentangle)
    # step 2's own settings do not change this classifier
    for key in ("epochs", "learning_rate", "rec_weight", "adv_weight", "adversary_steps"):
        d.pop(key)
    # none and accuracy: what every run did before the settings existed
    balance = {} if config.train.class_balance == "none" else \
        {"class_balance": config.train.class_balance}
    if config.evaluate.primary_metric != "accuracy":
        balance["best_epoch_metric"] = config.evaluate.primary_metric
    return {"disentangle": d, "class_names": list(class_names), **balance,
            "n_train": int(len(canvases)), "n_validation": int(len(validation[1])),
            "train_data": data_fingerprint(canvases.canvases, targets),
            "validation_data": data_fingerprint(*validation),
            "online_warp": ONLINE_WARP_VERSION, **compute_settings(config)}


def train_specified_classifier(
    canvases,
    targets: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray],
    calibration_images: np.ndarray,
    config: ExperimentConfig,
    run_dir: str | os.PathLike,
    *,
    class_names: Sequence[str],
    run_info: dict | None = None,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
    verbose: int | str = 0,
    steps_per_epoch: int | None = None,
) -> keras.Model:
    """Train E_C + classifier (the paper's classifier) with (soft) cross-entropy.

    Args:
        canvases: ``OnlineCanvases`` of the training cases (real lesions, and
            mixed images for the proposed scheme).
        targets: float32 [cases, classes], one-hot or soft (§2.2).
        validation: (images [n, S, S, 1] in [0, 1], int labels [n]): the
            held-out 30% (§3.2); the best epoch on it is kept.
        calibration_images: the real training images, un-augmented [m, S, S, 1]:
            batch norm's statistics are recomputed on them after each epoch
            (``recalibrate_batch_norm``).
        config: its ``disentangle`` section sets size, width, batch,
            ``classifier_epochs`` and ``classifier_learning_rate``.
        run_dir: the run folder (kind "lesion_classifier").
        class_names: recorded in run.json.
        run_info: facts added to run.json.
        resume: continue from the last epoch checkpoint.
        progress: ``progress(epochs done, epochs)``.
        steps_per_epoch: SGD steps per epoch (default: every case ``repeats``
            times): the baseline's, for an arm with more cases at equal compute.

    Returns:
        The model with the best validation epoch's weights (also
        ``RUN/model.keras``); whoever tests it finishes the run.

    Raises:
        RunError: a finished run, a started one without ``resume``, or one of
            other settings.
        KerasLesionsError: targets or images that do not fit the config.
        ConfigError: ``compute.xla`` is on and Keras compiled a network
            without it (:func:`~keras_lesions.train.precision.compiled_as_configured`);
            refused before the folder is claimed.
    """
    from keras_lesions.pipeline import one_hot
    from keras_lesions.train.balance import balance_record

    d = config.disentangle
    run_dir = Path(run_dir)
    if config.train.class_balance == "sampling":
        raise KerasLesionsError("train.class_balance: sampling is not available for Ben-Cohen's "
                                "classifier (its online pipeline shows every case "
                                "disentangle.repeats times an epoch); use weights or none")
    targets = np.asarray(targets, np.float32)
    if targets.shape != (len(canvases), len(class_names)):
        raise KerasLesionsError(f"targets must be [{len(canvases)}, {len(class_names)}], got "
                                f"{targets.shape}")
    if canvases.size != d.input_size:
        raise KerasLesionsError(f"training images are {canvases.size}×{canvases.size} but "
                                f"disentangle.input_size is {d.input_size}")
    settings = {**specified_classifier_settings(config, class_names, canvases, targets,
                                                validation), **identity(run_info),
                "steps_per_epoch": steps_per_epoch}
    check_start(run_dir, kind="lesion_classifier", settings=settings, resume=resume)
    # Built before the folder is claimed, so that a build the config cannot
    # have (compiled_as_configured) leaves no started run behind.
    keras.utils.set_random_seed(d.seed)
    model = build_compiled_specified_classifier(len(class_names), config)
    model.optimizer.build(model.trainable_variables)
    start_run(run_dir, kind="lesion_classifier", settings=settings,
              info={**(run_info or {}), "architecture": "ben-cohen-2019",
                    "class_names": list(class_names), "n_train": int(len(canvases)),
                    "n_validation": int(len(validation[1])), "seed": d.seed,
                    "input_size": d.input_size,
                    **balance_record(targets, class_names, config.train.class_balance)},
              config=config, resume=resume)

    val_images, val_labels = validation
    fit_resumably(
        model, run_dir, {"model": model, "optimizer": model.optimizer},
        epochs=d.classifier_epochs,
        make_data=lambda first: online_batches(canvases, targets, config, d.seed, first,
                                               steps_per_epoch),
        columns=["epoch", "loss", "accuracy", "val_loss", "val_accuracy"],
        callbacks=[ValidateAndKeepBest(run_dir, model.get_layer("encoder_c"),
                                       model.get_layer("classifier"),
                                       calibration_images, val_images,
                                       one_hot(val_labels, len(class_names)),
                                       metric=config.evaluate.primary_metric)],
        progress=progress, verbose=verbose)
    model.load_weights(run_dir / read_best(run_dir)["weights"])
    save_networks(run_dir, {"model": model})
    return model


def best_epoch(run_dir: str | os.PathLike) -> dict:
    """``best.json`` of a specified-classifier run: the kept epoch and its scores."""
    return read_best(Path(run_dir))
