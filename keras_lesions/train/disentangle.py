"""Two-step disentanglement of liver lesions (Ben-Cohen et al. 2019 §2.1, after Hadad et al. 2018).

Step 1 trains the encoder E_C with the classifier on cross-entropy (it is
also the experiment's baseline classifier). Step 2 freezes E_C and trains the
encoder E_R and the decoder G_R on z = (E_C(x), E_R(x)) with

    L(E_R, G_R) = L_rec + λ·L_adv,   λ < 0                      (eq. 1, 2)

where L_adv is the cross-entropy of an adversarial classifier that reads
E_R(x) and is itself trained to classify; :class:`DisentangleTrainer` is that
step. Both steps see the online augmentation of §3.2 (every case 10 times an
epoch) and keep 30% of the training folds' patients aside for validation.

A disentanglement run folder::

    RUN/config.yaml, RUN/run.json   kind "disentangle": fold, classes, dataset,
                                    input size, the fit and validation lesion ids
    RUN/step1/                      step 1: a lesion classifier run (E_C + head),
                                    tested on the fold (the baseline)
    RUN/checkpoint/                 step 2's per-epoch tf.train checkpoint (E_R,
                                    G_R, adversary, both optimizers, epoch);
                                    removed once training ends
    RUN/history.csv, tensorboard/   step 2's per-epoch losses and adversary accuracy
    RUN/encoder_c.keras, classifier.keras, encoder_r.keras, decoder.keras,
    RUN/adversary.keras             the five networks (safe-mode loadable)
    RUN/done.json                   written last

A classifier run (``train_specified_classifier``; step 1 and the mixture
experiment's classifiers) follows ``train.classifier``'s layout with a
tf.train checkpoint, and keeps the weights of the epoch with the best
validation accuracy (``best.json``): that is the model saved and tested.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_lesions.config import ExperimentConfig
from keras_lesions.data.dataset import LesionDataset, atomic_path
from keras_lesions.errors import KerasLesionsError
from keras_lesions.train.classifier import (
    RunError, claim_run_dir, is_done, load_run_model, read_run_info, record_run, write_json)
from keras_lesions.train.gan import EpochCheckpoint, read_history

Progress = Callable[[str, int, int], None]
NETWORKS = ("encoder_c", "classifier", "encoder_r", "decoder", "adversary")


class DisentangleTrainer(keras.Model):
    """Step 2: E_R and G_R against an adversarial classifier, E_C frozen (§2.1).

    Each step: ``adversary_steps`` updates of the adversary A on
    cross-entropy CE(y, A(E_R(x))), then one update of E_R and G_R on

        rec_weight · mean((G_R(E_C(x), E_R(x)) − x)²) + λ · CE(y, A(E_R(x)))

    with λ = ``adv_weight`` < 0 (eq. 2): E_R is pushed to make A wrong, so its
    code stops carrying class information, while G_R must still rebuild x.
    L_rec is the paper's squared L2 norm (eq. 1) divided by the number of
    pixels, so its weight does not depend on the image size.

    Tracks ``rec_loss``, ``adv_loss`` (the adversary's cross-entropy) and
    ``adv_accuracy``, which should fall towards chance as E_R sheds class
    information.

    Args:
        encoder_c: step 1's E_C (frozen here).
        encoder_r, decoder, adversary: the networks this step trains.
        rec_weight: weight of L_rec.
        adv_weight: λ of eq. (2), negative.
        adversary_steps: adversary updates per E_R/G_R update.
    """

    def __init__(self, encoder_c: keras.Model, encoder_r: keras.Model, decoder: keras.Model,
                 adversary: keras.Model, rec_weight: float = 1.0, adv_weight: float = -0.1,
                 adversary_steps: int = 1, **kwargs):
        super().__init__(**kwargs)
        if adv_weight >= 0:
            raise KerasLesionsError(f"adv_weight (λ) must be negative (§2.1), got {adv_weight}")
        encoder_c.trainable = False  # before compile: Keras 3 fixes trainables there
        self.encoder_c = encoder_c
        self.encoder_r = encoder_r
        self.decoder = decoder
        self.adversary = adversary
        self.rec_weight = float(rec_weight)
        self.adv_weight = float(adv_weight)
        self.adversary_steps = int(adversary_steps)
        self.crossentropy = keras.losses.CategoricalCrossentropy()
        self.rec_tracker = keras.metrics.Mean(name="rec_loss")
        self.adv_tracker = keras.metrics.Mean(name="adv_loss")
        self.adv_accuracy = keras.metrics.CategoricalAccuracy(name="adv_accuracy")
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def compile(self, ae_optimizer: keras.optimizers.Optimizer,
                adversary_optimizer: keras.optimizers.Optimizer, **kwargs):
        """One optimizer for (E_R, G_R), one for the adversary; built here so a
        checkpoint can be restored into their state."""
        super().compile(optimizer=None, **kwargs)
        self.ae_optimizer = ae_optimizer
        self.adversary_optimizer = adversary_optimizer
        self.ae_optimizer.build(self.autoencoder_variables)
        self.adversary_optimizer.build(self.adversary.trainable_variables)

    @property
    def autoencoder_variables(self):
        return self.encoder_r.trainable_variables + self.decoder.trainable_variables

    @property
    def metrics(self):
        return [self.loss_tracker, self.rec_tracker, self.adv_tracker, self.adv_accuracy]

    def call(self, images, training=False):
        """G_R(E_C(x), E_R(x)): the reconstruction."""
        c = self.encoder_c(images, training=False)
        r = self.encoder_r(images, training=training)
        return self.decoder(ops.concatenate([c, r], axis=-1), training=training)

    def reconstruction_loss(self, images, reconstructed):
        return ops.mean(ops.square(reconstructed - images))

    def train_step(self, data):
        images, targets = data
        c = self.encoder_c(images, training=False)

        # The adversary learns to classify from r = E_R(x) (E_R held fixed).
        r = self.encoder_r(images, training=False)
        for _ in range(self.adversary_steps):
            with tf.GradientTape() as tape:
                adv_probabilities = self.adversary(r, training=True)
                adv_loss = self.crossentropy(targets, adv_probabilities)
            variables = self.adversary.trainable_variables
            self.adversary_optimizer.apply(tape.gradient(adv_loss, variables), variables)

        # E_R and G_R: rebuild x from (c, r) while making the adversary wrong.
        # The adversary runs on batch statistics here too (training=True), as
        # in its own step: its moving averages lag far behind early on.
        with tf.GradientTape() as tape:
            r = self.encoder_r(images, training=True)
            reconstructed = self.decoder(ops.concatenate([c, r], axis=-1), training=True)
            rec_loss = self.reconstruction_loss(images, reconstructed)
            fooled = self.crossentropy(targets, self.adversary(r, training=True))
            loss = self.rec_weight * rec_loss + self.adv_weight * fooled
        variables = self.autoencoder_variables
        self.ae_optimizer.apply(tape.gradient(loss, variables), variables)

        self.loss_tracker.update_state(loss)
        self.rec_tracker.update_state(rec_loss)
        self.adv_tracker.update_state(adv_loss)
        self.adv_accuracy.update_state(targets, adv_probabilities)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        images, targets = data
        reconstructed = self(images, training=False)
        rec_loss = self.reconstruction_loss(images, reconstructed)
        adv_probabilities = self.adversary(self.encoder_r(images, training=False),
                                           training=False)
        adv_loss = self.crossentropy(targets, adv_probabilities)
        self.loss_tracker.update_state(self.rec_weight * rec_loss + self.adv_weight * adv_loss)
        self.rec_tracker.update_state(rec_loss)
        self.adv_tracker.update_state(adv_loss)
        self.adv_accuracy.update_state(targets, adv_probabilities)
        return {m.name: m.result() for m in self.metrics}


# --------------------------------------------------------------------------- builders


def restore_checkpoint(manager: tf.train.CheckpointManager, run_dir: Path) -> None:
    """Restore the last epoch checkpoint, if any, into the freshly built networks.

    Raises:
        RunError: the checkpoint does not fit them (made with other settings) or
            cannot be read.
    """
    if not manager.latest_checkpoint:
        return
    try:
        manager.checkpoint.restore(manager.latest_checkpoint).assert_consumed()
    except (AssertionError, ValueError, tf.errors.OpError) as exc:
        raise RunError(f"its checkpoint does not fit the networks of this config "
                       f"({type(exc).__name__}); resume with the config it was started with",
                       run_dir) from None


def build_networks(num_classes: int, config: ExperimentConfig) -> dict[str, keras.Model]:
    """The five networks of Table 1 at the config's size."""
    from keras_lesions.models.disentangle import (
        build_code_classifier, build_decoder, build_encoder)

    d = config.disentangle
    return {
        "encoder_c": build_encoder(d.input_size, d.width, d.code_size, name="encoder_c"),
        "classifier": build_code_classifier(num_classes, d.code_size, d.classifier_units,
                                            name="classifier"),
        "encoder_r": build_encoder(d.input_size, d.width, d.code_size, name="encoder_r"),
        "decoder": build_decoder(d.input_size, d.width, d.code_size, d.code_size, d.dropout,
                                 name="decoder"),
        "adversary": build_code_classifier(num_classes, d.code_size, d.classifier_units,
                                           name="adversary"),
    }


# --------------------------------------------------------------------------- data


def online_batches(canvases, targets: np.ndarray, config: ExperimentConfig, seed: int,
                   first_epoch: int):
    """Endless online-augmented batches (§3.2) from ``first_epoch`` on, and the
    steps per epoch. Each epoch shows every case ``repeats`` times; the last
    partial batch is dropped (batch norm wants full batches)."""
    from keras_lesions.augment.online import online_augmented_dataset, online_steps_per_epoch

    d = config.disentangle
    batch = min(d.batch_size, len(canvases) * d.repeats)
    data = online_augmented_dataset(canvases, repeats=d.repeats, batch_size=batch, seed=seed,
                                    epochs=None, first_epoch=first_epoch, drop_remainder=True,
                                    targets=targets)
    return data, online_steps_per_epoch(len(canvases), d.repeats, batch, drop_remainder=True)


def check_image_size(dataset: LesionDataset, config: ExperimentConfig, where) -> None:
    """The dataset's ROIs must be meant for the networks' input size."""
    if dataset.input_size != config.disentangle.input_size:
        raise KerasLesionsError(
            f"the dataset's ROIs are meant for {dataset.input_size}×{dataset.input_size} input "
            f"but disentangle.input_size is {config.disentangle.input_size} (the networks "
            "take that size; set it to match)", where)


# --------------------------------------------------------------------------- step 1 / classifiers


def recalibrate_batch_norm(encoder: keras.Model, head: keras.Model, images: np.ndarray) -> None:
    """Set the head's batch-norm moving statistics to the exact statistics of
    ``images``' codes (training images only, un-augmented).

    Moving averages trail an encoder that is still learning: with a few
    dozen steps an epoch, a classifier at 87% on its own training images with
    batch statistics scored 42% with its moving ones. Recomputing them on
    the training images before each validation (and before saving) removes
    that lag; nothing of the validation or test sets is used.
    """
    x = predict(encoder, images)
    for layer in head.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(x.mean(axis=0))
            layer.moving_variance.assign(x.var(axis=0))
        x = np.asarray(ops.convert_to_numpy(layer(x, training=False)))


def _crossentropy(targets: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean categorical cross-entropy of (soft) targets, as Keras computes it."""
    return float(-np.mean(np.sum(targets * np.log(np.clip(probabilities, 1e-7, 1.0)), axis=1)))


class _ValidateAndKeepBest(keras.callbacks.Callback):
    """After each epoch: recalibrate batch norm on the training images, score
    the validation set (``val_loss``, ``val_accuracy`` added to the logs),
    and keep the weights of the best epoch (accuracy, ties: lower loss),
    written atomically with ``best.json`` before the epoch's checkpoint."""

    def __init__(self, run_dir: Path, encoder, head, calibration_images, val_images,
                 val_targets):
        super().__init__()
        self.run_dir = run_dir
        self.encoder, self.head = encoder, head
        self.calibration_images = calibration_images
        self.val_images, self.val_targets = val_images, val_targets
        path = run_dir / "best.json"
        self.best = json.loads(path.read_text()) if path.is_file() else None

    def on_epoch_end(self, epoch, logs=None):
        recalibrate_batch_norm(self.encoder, self.head, self.calibration_images)
        probabilities = predict(self.model, self.val_images)
        loss = _crossentropy(self.val_targets, probabilities)
        accuracy = float(np.mean(probabilities.argmax(1) == self.val_targets.argmax(1)))
        logs["val_loss"], logs["val_accuracy"] = loss, accuracy
        if self.best is None or (accuracy, -loss) > (self.best["val_accuracy"],
                                                     -self.best["val_loss"]):
            with atomic_path(self.run_dir / "best.weights.h5", suffix=".weights.h5") as tmp:
                self.model.save_weights(tmp)
            self.best = {"epoch": epoch, "val_accuracy": accuracy, "val_loss": loss}
            write_json(self.run_dir / "best.json", self.best)


class _Step2Validation(keras.callbacks.Callback):
    """After each step-2 epoch: recalibrate the adversary's batch norm on the
    training images' r codes, then add ``val_rec_loss``, ``val_adv_loss``,
    ``val_adv_accuracy`` and ``val_loss`` to the logs."""

    def __init__(self, trainer: DisentangleTrainer, calibration_images, val_images,
                 val_targets):
        super().__init__()
        self.trainer = trainer
        self.calibration_images = calibration_images
        self.val_images, self.val_targets = val_images, val_targets

    def on_epoch_end(self, epoch, logs=None):
        t = self.trainer
        recalibrate_batch_norm(t.encoder_r, t.adversary, self.calibration_images)
        reconstructed = predict(t, self.val_images)
        rec = float(np.mean((reconstructed - self.val_images) ** 2))
        probabilities = predict(t.adversary, predict(t.encoder_r, self.val_images))
        adv = _crossentropy(self.val_targets, probabilities)
        logs["val_rec_loss"], logs["val_adv_loss"] = rec, adv
        logs["val_adv_accuracy"] = float(np.mean(probabilities.argmax(1)
                                                 == self.val_targets.argmax(1)))
        logs["val_loss"] = t.rec_weight * rec + t.adv_weight * adv


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
    progress: Progress | None = None,
    label: str = "classifier",
    verbose: int | str = 0,
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
        progress: ``progress(label, epochs done, epochs)``.

    Returns:
        The model with the best validation epoch's weights (also ``RUN/model.keras``).
    """
    from keras_lesions.data.pipeline import one_hot
    from keras_lesions.models.disentangle import build_specified_classifier

    d = config.disentangle
    run_dir = Path(run_dir)
    if (run_dir / "model.keras").is_file() and not (run_dir / "checkpoint").exists():
        return load_run_model(run_dir)
    started = claim_run_dir(run_dir, resume)
    targets = np.asarray(targets, np.float32)
    if targets.shape != (len(canvases), len(class_names)):
        raise KerasLesionsError(f"targets must be [{len(canvases)}, {len(class_names)}], got "
                                f"{targets.shape}")
    if canvases.size != d.input_size:
        raise KerasLesionsError(f"training images are {canvases.size}×{canvases.size} but "
                                f"disentangle.input_size is {d.input_size}")
    info = {**(run_info or {}), "kind": "lesion_classifier", "architecture": "ben-cohen-2019",
            "class_names": list(class_names), "n_train": int(len(canvases)),
            "n_validation": int(len(validation[1])), "seed": d.seed,
            "input_size": d.input_size, "width": d.width, "code_size": d.code_size,
            "classifier_units": d.classifier_units}
    record_run(run_dir, config, info, started,
               must_match=("class_names", "n_train", "n_validation", "seed", "input_size",
                           "width", "code_size", "classifier_units"))

    keras.utils.set_random_seed(d.seed)
    networks = build_networks(len(class_names), config)
    model = build_specified_classifier(networks["encoder_c"], networks["classifier"])
    model.compile(optimizer=keras.optimizers.Adam(d.classifier_learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    model.optimizer.build(model.trainable_variables)
    epoch_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=epoch_counter),
        str(run_dir / "checkpoint"), max_to_keep=1, checkpoint_name="epoch")
    restore_checkpoint(manager, run_dir)
    first_epoch = int(epoch_counter.numpy())
    epochs = d.classifier_epochs
    columns = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    rows = read_history(run_dir / "history.csv", first_epoch)
    if progress is not None:
        progress(label, first_epoch, epochs)
    if first_epoch < epochs:
        data, steps = online_batches(canvases, targets, config, d.seed, first_epoch)
        val_images, val_labels = validation
        callbacks = [  # in this order: validation adds to the logs the others write
            _ValidateAndKeepBest(run_dir, networks["encoder_c"], networks["classifier"],
                                 calibration_images, val_images,
                                 one_hot(val_labels, len(class_names))),
            keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False,
                                        profile_batch=0),
            EpochCheckpoint(manager, epoch_counter, run_dir / "history.csv", rows, columns),
        ]
        if progress is not None:
            callbacks.append(keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: progress(label, epoch + 1, epochs)))
        model.fit(data, epochs=epochs, initial_epoch=first_epoch, steps_per_epoch=steps,
                  callbacks=callbacks, verbose=verbose, shuffle=False)
    model.load_weights(run_dir / "best.weights.h5")
    with atomic_path(run_dir / "model.keras", suffix=".keras") as tmp:
        model.save(tmp)
    shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
    return model


def predict(model: keras.Model, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Model outputs in inference mode, batch by batch, as numpy."""
    if len(images) == 0:
        return np.zeros((0,) + tuple(model.output_shape[1:]), np.float32)
    return np.concatenate([np.asarray(ops.convert_to_numpy(model(images[i:i + batch],
                                                                 training=False)))
                           for i in range(0, len(images), batch)])


def test_classifier(model: keras.Model, run_dir: str | os.PathLike, images: np.ndarray,
                    labels: np.ndarray, lesion_ids: Sequence[str], info: dict) -> float:
    """Predict the test fold, write predictions.npz and done.json; return accuracy."""
    probabilities = predict(model, images)
    predictions = probabilities.argmax(1)
    run_dir = Path(run_dir)
    with atomic_path(run_dir / "predictions.npz", suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, probabilities=probabilities, y_true=np.asarray(labels),
                     y_pred=predictions, lesion_ids=np.asarray(lesion_ids, dtype=str))
    accuracy = float((predictions == np.asarray(labels)).mean())
    best = json.loads((run_dir / "best.json").read_text())
    write_json(run_dir / "done.json", {**info, "test_accuracy": accuracy,
                                       "n_test": int(len(labels)), "best_epoch": best})
    return accuracy


# --------------------------------------------------------------------------- the two steps


def fold_split(dataset: LesionDataset, fold: int, config: ExperimentConfig, where=None):
    """(fit, validation, test) lesion indices for a test fold (§3.2).

    Validation is ``validation_fraction`` of the training folds' patients.
    """
    from keras_lesions.data.folds import train_test_indices, validation_split

    if dataset.folds is None:
        raise KerasLesionsError("has no fold assignment: run `kl data folds` on it first", where)
    train_idx, test_idx = train_test_indices(dataset.folds, fold, where=where)
    fit_pos, val_pos = validation_split(dataset.labels[train_idx],
                                        dataset.patient_ids[train_idx],
                                        config.disentangle.validation_fraction,
                                        seed=config.disentangle.seed + 1000 * fold)
    return train_idx[fit_pos], train_idx[val_pos], test_idx


def train_disentangle(
    dataset: LesionDataset,
    dataset_path: str | os.PathLike,
    fold: int,
    config: ExperimentConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    log: Callable[[str], None] = print,
    progress: Progress | None = None,
    verbose: int | str = 0,
) -> dict:
    """Both steps of the disentanglement for one test fold, into a run folder.

    Trains on the training folds' fit part (validation patients held out),
    never on the test fold, which only the step-1 classifier predicts.

    Returns:
        ``{"run_dir", "baseline_accuracy", "metrics"}`` (step 2's last epoch).

    Raises:
        RunError: the folder holds a finished run, or an unfinished one
            without ``resume``.
        KerasLesionsError: no folds, a fold out of range, or a dataset meant
            for another input size.
    """
    from keras_lesions.augment.online import prepare_online_canvases
    from keras_lesions.data.pipeline import one_hot, roi_inputs

    run_dir = Path(run_dir)
    started = claim_run_dir(run_dir, resume)
    check_image_size(dataset, config, dataset_path)
    fit_idx, val_idx, test_idx = fold_split(dataset, fold, config, dataset_path)
    d = config.disentangle
    names = list(dataset.class_names)
    info = {"kind": "disentangle", "fold": fold, "class_names": names,
            "dataset": str(Path(dataset_path).resolve()), "input_size": d.input_size,
            "width": d.width, "code_size": d.code_size,
            "classifier_units": d.classifier_units, "dropout": d.dropout, "seed": d.seed,
            # The adversary's accuracy at chance: always naming the largest class.
            "chance_accuracy": float(np.bincount(dataset.labels[fit_idx]).max() / len(fit_idx)),
            "fit_ids": dataset.lesion_ids[fit_idx].tolist(),
            "validation_ids": dataset.lesion_ids[val_idx].tolist()}
    record_run(run_dir, config, info, started,
               must_match=("fold", "class_names", "input_size", "width", "code_size",
                           "classifier_units", "dropout", "seed", "fit_ids"))

    log(f"fold {fold}: fitting on {len(fit_idx)} lesions, validating on {len(val_idx)}, "
        f"testing on {len(test_idx)}")
    canvases = prepare_online_canvases(dataset, fit_idx, size=d.input_size)
    targets = one_hot(canvases.labels, len(names))
    fit_images = roi_inputs(dataset, fit_idx, d.input_size)
    val_images = roi_inputs(dataset, val_idx, d.input_size)
    val_labels = dataset.labels[val_idx]

    # Step 1: E_C + classifier, cross-entropy (§2.1); the baseline classifier.
    step1 = run_dir / "step1"
    step1_info = {"fold": fold, "group": "baseline", "dataset": info["dataset"],
                  "class_names": names}
    if not is_done(step1):
        model = train_specified_classifier(
            canvases, targets, (val_images, val_labels), fit_images, config, step1,
            class_names=names,
            run_info=step1_info, resume=(step1 / "run.json").is_file(), progress=progress,
            label=f"step 1 (E_C) fold {fold}", verbose=verbose)
        test_classifier(model, step1, roi_inputs(dataset, test_idx, d.input_size),
                        dataset.labels[test_idx], dataset.lesion_ids[test_idx],
                        {**step1_info, "seed": d.seed})
    model = load_run_model(step1)
    baseline = json.loads((step1 / "done.json").read_text())["test_accuracy"]

    # Step 2: E_C frozen; E_R, G_R against the adversary (§2.1).
    keras.utils.set_random_seed(d.seed)
    networks = build_networks(len(names), config)
    networks["encoder_c"] = model.get_layer("encoder_c")
    networks["classifier"] = model.get_layer("classifier")
    trainer = DisentangleTrainer(networks["encoder_c"], networks["encoder_r"],
                                 networks["decoder"], networks["adversary"],
                                 rec_weight=d.rec_weight, adv_weight=d.adv_weight,
                                 adversary_steps=d.adversary_steps)
    trainer.compile(ae_optimizer=keras.optimizers.Adam(d.learning_rate),
                    adversary_optimizer=keras.optimizers.Adam(d.learning_rate))
    epoch_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(encoder_r=trainer.encoder_r, decoder=trainer.decoder,
                            adversary=trainer.adversary, ae_optimizer=trainer.ae_optimizer,
                            adversary_optimizer=trainer.adversary_optimizer,
                            epoch=epoch_counter),
        str(run_dir / "checkpoint"), max_to_keep=1, checkpoint_name="epoch")
    restore_checkpoint(manager, run_dir)
    first_epoch = int(epoch_counter.numpy())
    columns = ["epoch"] + [m.name for m in trainer.metrics] + \
        [f"val_{m.name}" for m in trainer.metrics]
    rows = read_history(run_dir / "history.csv", first_epoch)
    label = f"step 2 (E_R, G_R) fold {fold}"
    if progress is not None:
        progress(label, first_epoch, d.epochs)
    if first_epoch < d.epochs:
        data, steps = online_batches(canvases, targets, config, d.seed + 1, first_epoch)
        callbacks = [  # in this order: validation adds to the logs the others write
            _Step2Validation(trainer, fit_images, val_images, one_hot(val_labels, len(names))),
            keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False,
                                        profile_batch=0),
            EpochCheckpoint(manager, epoch_counter, run_dir / "history.csv", rows, columns),
        ]
        if progress is not None:
            callbacks.append(keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: progress(label, epoch + 1, d.epochs)))
        trainer.fit(data, epochs=d.epochs, initial_epoch=first_epoch, steps_per_epoch=steps,
                    callbacks=callbacks, verbose=verbose, shuffle=False)
    for name, network in networks.items():
        with atomic_path(run_dir / f"{name}.keras", suffix=".keras") as tmp:
            network.save(tmp)
    metrics = {k: v for k, v in rows[-1].items() if k != "epoch"} if rows else {}
    write_json(run_dir / "done.json", {**info, "epochs": d.epochs, "metrics": metrics,
                                       "baseline_accuracy": baseline})
    shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
    return {"run_dir": str(run_dir), "baseline_accuracy": baseline, "metrics": metrics}


@dataclass
class Disentangled:
    """The networks of a finished disentanglement run and its run.json."""

    encoder_c: keras.Model
    classifier: keras.Model
    encoder_r: keras.Model
    decoder: keras.Model
    adversary: keras.Model
    info: dict
    run_dir: Path

    @property
    def input_size(self) -> int:
        return int(self.encoder_c.input_shape[1])

    @property
    def class_names(self) -> list[str]:
        return list(self.info["class_names"])


def load_disentangled(run_dir: str | os.PathLike) -> Disentangled:
    """Load a finished disentanglement run (safe mode: no code from the files).

    Raises:
        RunError: no such folder, a run of another kind, or an unfinished run.
    """
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    kind = info.get("kind")
    if kind != "disentangle":
        raise RunError(f"is a {kind!r} run, not a disentanglement run (made by "
                       "`kl train-disentangle`)", run_dir)
    if not is_done(run_dir):
        raise RunError("holds an unfinished disentanglement run (no done.json); resume it "
                       "with `kl train-disentangle --resume` first", run_dir)
    networks = {}
    for name in NETWORKS:
        try:
            networks[name] = keras.saving.load_model(run_dir / f"{name}.keras", safe_mode=True)
        except Exception as exc:  # Keras raises many types for a damaged archive
            raise RunError(f"{name}.keras cannot be loaded ({type(exc).__name__})",
                           run_dir) from None
    return Disentangled(**networks, info=info, run_dir=run_dir)
