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

Step 1 is ``train.specified_classifier`` (also what the mixture experiment
trains its classifiers with); checkpoints, history and the done marker are
``runs``'.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_lesions.augment.online import ONLINE_WARP_VERSION
from keras_lesions.config import ExperimentConfig
from keras_lesions.data.dataset import LesionDataset
from keras_lesions.errors import KerasLesionsError
from keras_lesions.inference import predict
from keras_lesions.runs.checkpoint import fit_resumably, load_network, save_networks
from keras_lesions.runs.folder import (
    RunError, check_start, finish_run, is_done, is_started, read_done, read_run_info, start_run)
from keras_lesions.runs.predictions import predict_and_record
from keras_lesions.train.precision import (
    check_xla_available, compiled_as_configured, compute_settings, precision_policy,
    scaled_optimizer)
from keras_lesions.train.specified_classifier import (
    INFERENCE_BATCH, best_epoch, crossentropy, online_batches, recalibrate_batch_norm,
    train_specified_classifier)

Progress = Callable[[str, int, int], None]  # (label, epochs done, epochs)
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
        # E_C is not frozen by flag: nothing of this step updates it, because
        # each optimizer updates an explicit variable list (E_R + G_R, A).
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
                scaled = self.adversary_optimizer.scale_loss(adv_loss)  # float16 only
            variables = self.adversary.trainable_variables
            self.adversary_optimizer.apply(tape.gradient(scaled, variables), variables)

        # E_R and G_R: rebuild x from (c, r) while making the adversary wrong.
        # The adversary runs on batch statistics here too (training=True), as
        # in its own step: its moving averages lag far behind early on.
        with tf.GradientTape() as tape:
            r = self.encoder_r(images, training=True)
            reconstructed = self.decoder(ops.concatenate([c, r], axis=-1), training=True)
            rec_loss = self.reconstruction_loss(images, reconstructed)
            fooled = self.crossentropy(targets, self.adversary(r, training=True))
            loss = self.rec_weight * rec_loss + self.adv_weight * fooled
            scaled = self.ae_optimizer.scale_loss(loss)  # × the loss scale, float16 only
        variables = self.autoencoder_variables
        self.ae_optimizer.apply(tape.gradient(scaled, variables), variables)

        self.loss_tracker.update_state(loss)
        self.rec_tracker.update_state(rec_loss)
        self.adv_tracker.update_state(adv_loss)
        self.adv_accuracy.update_state(targets, adv_probabilities)
        return {m.name: m.result() for m in self.metrics}


# --------------------------------------------------------------------------- builders


def build_networks(num_classes: int, config: ExperimentConfig) -> dict[str, keras.Model]:
    """The five networks of Table 1 at the config's size."""
    from keras_lesions.models.disentangle import build_code_classifier, build_decoder, build_encoder
    from keras_lesions.train.specified_classifier import build_specified_networks

    d = config.disentangle
    return {
        **build_specified_networks(num_classes, config),  # encoder_c, classifier
        "encoder_r": build_encoder(d.input_size, d.width, d.code_size, name="encoder_r"),
        "decoder": build_decoder(d.input_size, d.width, d.code_size, d.code_size, d.dropout,
                                 name="decoder"),
        "adversary": build_code_classifier(num_classes, d.code_size, d.classifier_units,
                                           name="adversary"),
    }


def build_disentangle_trainer(step1_model: keras.Model, num_classes: int,
                              config: ExperimentConfig) -> tuple[DisentangleTrainer, dict]:
    """Step 2's trainer around step 1's E_C, its new networks built under
    ``compute.precision``, compiled with one Adam per player; and the five
    networks by name (E_C and the classifier are step 1's)."""
    d = config.disentangle
    with precision_policy(config.compute.precision):
        networks = build_networks(num_classes, config)
    networks["encoder_c"] = step1_model.get_layer("encoder_c")
    networks["classifier"] = step1_model.get_layer("classifier")
    trainer = DisentangleTrainer(networks["encoder_c"], networks["encoder_r"],
                                 networks["decoder"], networks["adversary"],
                                 rec_weight=d.rec_weight, adv_weight=d.adv_weight,
                                 adversary_steps=d.adversary_steps)

    def adam():  # our choice (the paper names no optimizer)
        return scaled_optimizer(keras.optimizers.Adam(d.learning_rate), config.compute.precision)

    trainer.compile(ae_optimizer=adam(), adversary_optimizer=adam(),
                    jit_compile=config.compute.xla)
    return compiled_as_configured(trainer, config), networks


def check_image_size(dataset: LesionDataset, config: ExperimentConfig, where) -> None:
    """The dataset's ROIs must be meant for the networks' input size."""
    if dataset.input_size != config.disentangle.input_size:
        raise KerasLesionsError(
            f"the dataset's ROIs are meant for {dataset.input_size}×{dataset.input_size} input "
            f"but disentangle.input_size is {config.disentangle.input_size} (the networks "
            "take that size; set it to match)", where)


# --------------------------------------------------------------------------- step 2


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
        reconstructed = predict(t, self.val_images, INFERENCE_BATCH)
        rec = float(np.mean((reconstructed - self.val_images) ** 2))
        probabilities = predict(t.adversary, predict(t.encoder_r, self.val_images,
                                                     INFERENCE_BATCH))
        adv = crossentropy(self.val_targets, probabilities)
        logs["val_rec_loss"], logs["val_adv_loss"] = rec, adv
        logs["val_adv_accuracy"] = float(np.mean(probabilities.argmax(1)
                                                 == self.val_targets.argmax(1)))
        logs["val_loss"] = t.rec_weight * rec + t.adv_weight * adv


def disentangle_settings(config: ExperimentConfig, fold: int, class_names, fit_ids) -> dict:
    """Everything that changes a disentanglement run: its section, fold, classes
    and the lesions it fits."""
    return {"disentangle": dataclasses.asdict(config.disentangle), "fold": fold,
            "class_names": list(class_names), "fit_ids": list(fit_ids),
            "online_warp": ONLINE_WARP_VERSION, **compute_settings(config)}


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
    repeat: int = 0,
) -> dict:
    """Both steps of the disentanglement for one test fold, into a run folder.

    Trains on the training folds' fit part (validation patients held out),
    never on the test fold, which only the step-1 classifier predicts.
    ``dataset`` carries the folds of ``repeat`` (recorded in run.json).

    Returns:
        ``{"run_dir", "baseline_accuracy", "metrics"}`` (step 2's last epoch).

    Raises:
        RunError: the folder holds a finished run, an unfinished one without
            ``resume``, or one of other settings.
        KerasLesionsError: no folds, a fold out of range, or a dataset meant
            for another input size.
        ConfigError: ``compute.xla`` is on and Keras compiled a network
            without it (:func:`~keras_lesions.train.precision.compiled_as_configured`);
            refused before the folder is claimed.
    """
    from keras_lesions.augment.online import prepare_online_canvases
    from keras_lesions.data.folds import fit_validation_test_indices
    from keras_lesions.pipeline import one_hot, roi_inputs

    run_dir = Path(run_dir)
    check_image_size(dataset, config, dataset_path)
    d = config.disentangle
    fit_idx, val_idx, test_idx = fit_validation_test_indices(
        dataset, fold, d.validation_fraction, seed=d.seed + 1000 * fold, where=dataset_path)
    names = list(dataset.class_names)
    info = {"repeat": repeat, "fold": fold, "class_names": names, "dataset": str(Path(dataset_path).resolve()),
            "input_size": d.input_size, "width": d.width, "code_size": d.code_size,
            "seed": d.seed,
            # The adversary's accuracy at chance: always naming the largest class.
            "chance_accuracy": float(np.bincount(dataset.labels[fit_idx]).max() / len(fit_idx)),
            "fit_ids": dataset.lesion_ids[fit_idx].tolist(),
            "validation_ids": dataset.lesion_ids[val_idx].tolist()}
    settings = disentangle_settings(config, fold, names, info["fit_ids"])
    check_start(run_dir, kind="disentangle", settings=settings, resume=resume)
    # Step 2 is built around step 1's trained E_C, after this folder is
    # claimed; what would make Keras drop XLA for every network is refused
    # here first (a layer it cannot compile: by each build, and ours have none).
    check_xla_available(config)
    start_run(run_dir, kind="disentangle", settings=settings, info=info, config=config,
              resume=resume)

    log(f"fold {fold}: fitting on {len(fit_idx)} lesions, validating on {len(val_idx)}, "
        f"testing on {len(test_idx)}")
    canvases = prepare_online_canvases(dataset, fit_idx, size=d.input_size)
    targets = one_hot(canvases.labels, len(names))
    fit_images = roi_inputs(dataset, fit_idx, d.input_size)
    val_images = roi_inputs(dataset, val_idx, d.input_size)
    val_labels = dataset.labels[val_idx]

    def labelled(label):
        return None if progress is None else (lambda done, total: progress(label, done, total))

    # Step 1: E_C + classifier, cross-entropy (§2.1); the baseline classifier.
    step1 = run_dir / "step1"
    step1_info = {"repeat": repeat, "fold": fold, "group": "baseline", "dataset": info["dataset"],
                  "class_names": names}
    if not is_done(step1):
        model = train_specified_classifier(
            canvases, targets, (val_images, val_labels), fit_images, config, step1,
            class_names=names, run_info=step1_info, resume=is_started(step1),
            progress=labelled(f"step 1 (E_C) fold {fold}"), verbose=verbose)
        accuracy = predict_and_record(model, step1, roi_inputs(dataset, test_idx, d.input_size),
                                      dataset.labels[test_idx], dataset.lesion_ids[test_idx])
        finish_run(step1, {**step1_info, "seed": d.seed, "test_accuracy": accuracy,
                           "n_test": int(len(test_idx)), "best_epoch": best_epoch(step1)})
    step1_model = load_network(step1, "model")
    baseline = read_done(step1)["test_accuracy"]

    # Step 2: E_C fixed; E_R, G_R against the adversary (§2.1).
    keras.utils.set_random_seed(d.seed)
    trainer, networks = build_disentangle_trainer(step1_model, len(names), config)
    state = {"encoder_r": trainer.encoder_r, "decoder": trainer.decoder,
             "adversary": trainer.adversary, "ae_optimizer": trainer.ae_optimizer,
             "adversary_optimizer": trainer.adversary_optimizer}
    metric_names = [m.name for m in trainer.metrics]
    rows = fit_resumably(
        trainer, run_dir, state, epochs=d.epochs,
        # Step 2's adversary probes r for class information (eq. 2); it is no
        # classifier of ours, so class balance does not apply to it.
        make_data=lambda first: online_batches(canvases, targets, config, d.seed + 1, first,
                                               balance=False),
        columns=["epoch"] + metric_names + [f"val_{m}" for m in metric_names],
        callbacks=[_Step2Validation(trainer, fit_images, val_images,
                                    one_hot(val_labels, len(names)))],
        progress=labelled(f"step 2 (E_R, G_R) fold {fold}"), verbose=verbose)
    save_networks(run_dir, networks)
    metrics = {k: v for k, v in rows[-1].items() if k != "epoch"} if rows else {}
    finish_run(run_dir, {**info, "kind": "disentangle", "epochs": d.epochs, "metrics": metrics,
                         "baseline_accuracy": baseline})
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
    if info.get("kind") != "disentangle":
        raise RunError(f"is a {info.get('kind')!r} run, not a disentanglement run (made by "
                       "`kl train-disentangle`)", run_dir)
    if not is_done(run_dir):
        raise RunError("holds an unfinished disentanglement run (no done.json); resume it "
                       "with `kl train-disentangle --resume` first", run_dir)
    networks = {name: load_network(run_dir, name) for name in NETWORKS}
    return Disentangled(**networks, info=info, run_dir=run_dir)
