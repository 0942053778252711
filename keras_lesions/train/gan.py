"""Training the DCGAN and ACGAN of Frid-Adar et al. 2018 §3.2–3.3.

The trainers are ``keras.Model`` subclasses that receive their networks, take
one optimizer per network in ``compile`` and train with ``fit``; the side
effects of a run (checkpoint, history, sample grids) live in callbacks.
:func:`train_gan` runs one training into a run folder::

    RUN/config.yaml             the resolved experiment config
    RUN/run.json                what was trained (kind "dcgan"/"acgan", classes,
                                latent_dim, width, image_size, n_train, seed, fold,
                                and the settings a resume must match)
    RUN/checkpoint/             per-epoch tf.train checkpoint: both networks
                                (BN statistics included), both Adam optimizers
                                (iterations and moments), the noise seed state
                                and the epoch count; removed once training ends
    RUN/history.csv             per-epoch d_loss, g_loss, d_accuracy (...)
    RUN/tensorboard/            TensorBoard scalars
    RUN/samples/epoch_003.png   G on a fixed z after 3 epochs
    RUN/generator.keras         the trained networks, each its own file,
    RUN/discriminator.keras     loadable in safe mode (written atomically)
    RUN/done.json               written last: the run is complete
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_lesions.augment.diff_augment import DiffAugment
from keras_lesions.config import ExperimentConfig
from keras_lesions.errors import KerasLesionsError
from keras_lesions.io import save_figure
from keras_lesions.losses import (
    acgan_discriminator_loss, acgan_generator_loss, dcgan_discriminator_loss,
    dcgan_generator_loss)
from keras_lesions.pipeline import epoch_batches
from keras_lesions.runs.checkpoint import fit_resumably, load_network, save_networks
from keras_lesions.runs.folder import (
    RunError, check_start, data_fingerprint, finish_run, identity, is_done, read_run_info,
    start_run)
from keras_lesions.train.precision import (
    compiled_as_configured, compute_settings, precision_policy, scaled_optimizer)

GAN_KINDS = ("dcgan", "acgan")
GENERATOR_PASSES_PER_STEP = 1  # DCGANTrainer.train_step; 2 before 2026-12-08
IMAGE_SIZE = 64  # §3.2: 64×64×1 ROIs


class DCGANTrainer(keras.Model):
    """Trains a DCGAN (Frid-Adar et al. 2018 §3.2, eq. (1)).

    Each step: one Adam step of D on a real and a generated batch, then one
    Adam step of G against the updated D (the paper trains them "iteratively").
    Our choice, for speed: both steps use one draw of z and G runs forward
    once; D learns on G(z) as a constant, then G learns from the updated D on
    the same G(z), as in PyTorch's DCGAN example. §3.2 speaks of "mini-batches
    of m = 64 lesion ROI examples ... and m = 64 noise samples"; carpedm20's
    DCGAN-tensorflow of the paper's time also feeds one ``batch_z`` to its D
    and G updates (recomputing G(z) for each). Goodfellow et al.'s Algorithm 1
    and the keras-io example draw a fresh z for the G step and run G again.

    Args:
        generator: z [batch, latent_dim] in [-1, 1] → images [batch, 64, 64, 1]
            in [-1, 1] (:func:`~keras_lesions.models.gan.build_dcgan_generator`).
        discriminator: images → D(x) [batch, 1] in (0, 1).
        latent_dim: length of z (100, §3.2).
        diff_augment: DiffAugment policy applied to D's inputs ("" = the paper).
        seed: seeds the one noise source of the trainer (z and DiffAugment).
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, latent_dim: int,
                 diff_augment: str = "", seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = int(latent_dim)
        self.augment = DiffAugment(diff_augment)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_accuracy_tracker = keras.metrics.Mean(name="d_accuracy")

    def compile(self, d_optimizer: keras.optimizers.Optimizer,
                g_optimizer: keras.optimizers.Optimizer, **kwargs):
        """Attach one optimizer per network.

        The optimizers are built on their network's trainable variables here
        (Keras 3 fixes trainable variables at compile time), so their state
        exists before a checkpoint is restored into it.
        """
        # No optimizer of the wrapper itself: each network has its own.
        super().compile(optimizer=None, **kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker, self.d_accuracy_tracker]

    def sample_z(self, batch_size):
        """z ~ U[-1, 1]^latent_dim (§3.2), float32 [batch_size, latent_dim]."""
        return keras.random.uniform((batch_size, self.latent_dim), minval=-1.0, maxval=1.0,
                                    seed=self.seed_generator)

    def discriminate(self, images):
        """D on DiffAugmented images (identity when the policy is empty)."""
        return self.discriminator(self.augment(images, self.seed_generator), training=True)

    def call(self, z, training=False):
        """G(z): the trainer's forward pass is its generator's."""
        return self.generator(z, training=training)

    def train_step(self, real_images):
        """One D step then one G step.

        Args:
            real_images: float32 [batch, 64, 64, 1] in [-1, 1].

        Returns:
            ``{"d_loss", "g_loss", "d_accuracy"}``, running means over the epoch.
        """
        batch_size = ops.shape(real_images)[0]
        d_variables = self.discriminator.trainable_variables
        g_variables = self.generator.trainable_variables

        with tf.GradientTape() as g_tape:
            fake_images = self.generator(self.sample_z(batch_size), training=True)

            # D: max_D log D(x) + log(1 − D(G(z))), G(z) a constant. Real and
            # generated images go through D as separate batches, so each batch
            # norm sees one kind (Radford et al.'s DCGAN practice).
            with g_tape.stop_recording():
                with tf.GradientTape() as d_tape:
                    real_prob = self.discriminate(real_images)
                    fake_prob = self.discriminate(fake_images)
                    d_loss = dcgan_discriminator_loss(real_prob, fake_prob)
                    scaled = self.d_optimizer.scale_loss(d_loss)  # × the loss scale, float16 only
                self.d_optimizer.apply(d_tape.gradient(scaled, d_variables), d_variables)

            # G: max_G log D(G(z)) against the updated D, the non-saturating
            # form of min_G log(1 − D(G(z)))
            g_loss = dcgan_generator_loss(self.discriminate(fake_images))
            scaled = self.g_optimizer.scale_loss(g_loss)  # × the loss scale, float16 only
        self.g_optimizer.apply(g_tape.gradient(scaled, g_variables), g_variables)

        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.d_accuracy_tracker.update_state(_source_correct(real_prob, fake_prob))
        return {m.name: m.result() for m in self.metrics}


class ACGANTrainer(DCGANTrainer):
    """Trains an ACGAN (Frid-Adar et al. 2018 §3.3; Odena et al. 2017).

    As :class:`DCGANTrainer`, with G conditioned on a class drawn uniformly
    and D's auxiliary head classifying real and generated images.

    Args:
        generator: ``[z, class_ids]`` → images
            (:func:`~keras_lesions.models.gan.build_acgan_generator`).
        discriminator: images → ``{"real": [batch, 1], "class": [batch, classes]}``.
        num_classes: number of classes G draws from.
        latent_dim, diff_augment, seed: as for :class:`DCGANTrainer`.
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, num_classes: int,
                 latent_dim: int, diff_augment: str = "", seed: int = 0, **kwargs):
        super().__init__(generator, discriminator, latent_dim, diff_augment, seed, **kwargs)
        self.num_classes = int(num_classes)
        self.d_class_accuracy_tracker = keras.metrics.Mean(name="d_class_accuracy")

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker, self.d_accuracy_tracker,
                self.d_class_accuracy_tracker]

    def sample_classes(self, batch_size):
        """Class ids drawn uniformly from [0, num_classes), int32 [batch_size]."""
        u = keras.random.uniform((batch_size,), seed=self.seed_generator)
        return ops.minimum(ops.cast(ops.floor(u * self.num_classes), "int32"),
                           self.num_classes - 1)

    def call(self, inputs, training=False):
        """G([z, class_ids])."""
        return self.generator(inputs, training=training)

    def train_step(self, data):
        """One D step then one G step.

        Args:
            data: ``(real_images, class_ids)``: float32 [batch, 64, 64, 1] in
                [-1, 1] and int [batch] in [0, num_classes).

        Returns:
            ``{"d_loss", "g_loss", "d_accuracy", "d_class_accuracy"}``;
            d_class_accuracy is D's auxiliary classifier on the real images.
        """
        real_images, real_classes = data
        real_classes = ops.cast(real_classes, "int32")
        batch_size = ops.shape(real_images)[0]

        d_variables = self.discriminator.trainable_variables
        g_variables = self.generator.trainable_variables

        # One draw of z and classes, one G pass, for both steps (as DCGANTrainer)
        fake_classes = self.sample_classes(batch_size)
        with tf.GradientTape() as g_tape:
            fake_images = self.generator([self.sample_z(batch_size), fake_classes],
                                         training=True)

            # D: max_D L_S + L_C, G(z, c) a constant
            with g_tape.stop_recording():
                with tf.GradientTape() as d_tape:
                    real_out = self.discriminate(real_images)
                    fake_out = self.discriminate(fake_images)
                    d_loss = acgan_discriminator_loss(real_out["real"], fake_out["real"],
                                                      real_out["class"], real_classes,
                                                      fake_out["class"], fake_classes)
                    scaled = self.d_optimizer.scale_loss(d_loss)  # × the loss scale, float16
                self.d_optimizer.apply(d_tape.gradient(scaled, d_variables), d_variables)

            # G: max_G L_C − L_S (non-saturating source term), against the updated D
            g_out = self.discriminate(fake_images)
            g_loss = acgan_generator_loss(g_out["real"], g_out["class"], fake_classes)
            scaled = self.g_optimizer.scale_loss(g_loss)  # × the loss scale, float16 only
        self.g_optimizer.apply(g_tape.gradient(scaled, g_variables), g_variables)

        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.d_accuracy_tracker.update_state(_source_correct(real_out["real"], fake_out["real"]))
        predicted = ops.cast(ops.argmax(real_out["class"], axis=-1), "int32")
        self.d_class_accuracy_tracker.update_state(
            ops.cast(ops.equal(predicted, real_classes), "float32"))
        return {m.name: m.result() for m in self.metrics}


def _source_correct(real_prob, fake_prob):
    """1.0 per image D classified right (real > 0.5, fake ≤ 0.5), [2 · batch]."""
    return ops.concatenate([ops.cast(ops.reshape(real_prob, (-1,)) > 0.5, "float32"),
                            ops.cast(ops.reshape(fake_prob, (-1,)) <= 0.5, "float32")])


# --------------------------------------------------------------------------- sample grids

class SampleGrid(keras.callbacks.Callback):
    """Writes ``folder/epoch_NNN.png``: G on a fixed z, every ``every`` epochs.

    The same z (and classes) every time, so the grids of one run compare
    across epochs. G runs with training=False, as it will when sampling.

    Args:
        generator: the generator being trained.
        z: float32 [n, latent_dim], fixed.
        folder: where the PNGs go.
        class_ids: for an ACGAN, int32 [n] classes of the samples, one class
            per row of the grid; None for a DCGAN.
        class_names: row labels for an ACGAN.
        columns: samples per row.
        every: write every that many epochs (and after the last).
    """

    def __init__(self, generator, z, folder, class_ids=None, class_names=(), columns=8,
                 every=1):
        super().__init__()
        self.generator = generator
        self.z = z
        self.folder = Path(folder)
        self.class_ids = class_ids
        self.class_names = list(class_names)
        self.columns = columns
        self.every = every

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if self.every <= 0 or (done % self.every and done != self.params.get("epochs")):
            return
        inputs = self.z if self.class_ids is None else [self.z, self.class_ids]
        images = keras.ops.convert_to_numpy(self.generator(inputs, training=False))
        labels = None
        if self.class_ids is not None:
            labels = [self.class_names[c] if c < len(self.class_names) else str(c)
                      for c in self.class_ids[::self.columns]]
        write_sample_grid((images[..., 0] + 1) / 2, self.folder / f"epoch_{done:03d}.png",
                          columns=self.columns, row_labels=labels,
                          title=f"after epoch {done}")


def write_sample_grid(images: np.ndarray, path, columns: int = 8, row_labels=None,
                      title: str = "") -> None:
    """Save a grid of greyscale images [n, H, W] in [0, 1] as a PNG (atomically).

    One mosaic in one Axes: a grid of 32 Axes took 1.3 s to draw, more than a
    short GAN's training epochs between two grids.
    """
    # A bare Figure (no pyplot): no global backend switch, nothing left open.
    from matplotlib.figure import Figure

    images = np.asarray(images, np.float32)
    n, height, width = images.shape
    rows, gap = int(np.ceil(n / columns)), 2
    mosaic = np.ones((rows * (height + gap) - gap, columns * (width + gap) - gap), np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        mosaic[r * (height + gap):r * (height + gap) + height,
               c * (width + gap):c * (width + gap) + width] = image
    fig = Figure(figsize=(columns * 0.9, rows * 0.9 + 0.4))
    ax = fig.subplots()
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([r * (height + gap) + height / 2 for r in range(len(row_labels or []))],
                  list(row_labels or []), fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path, dpi=80)


def _check_inputs(kind, images, class_ids, class_names, named_class=None):
    if kind not in GAN_KINDS:
        raise KerasLesionsError(f"unknown GAN kind {kind!r} (known: {', '.join(GAN_KINDS)})")
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 1):
        raise KerasLesionsError(
            f"GAN training images must be [n, {IMAGE_SIZE}, {IMAGE_SIZE}, 1] (§3.2), "
            f"got {images.shape}")
    if len(images) == 0:
        raise KerasLesionsError("no training images")
    if not np.isfinite(images).all() or images.min() < 0.0 or images.max() > 1.0:
        raise KerasLesionsError("GAN training images must lie in [0, 1] (the classifier's "
                                "input range); they are scaled to [-1, 1] here")
    class_names = [str(c) for c in class_names]
    if not class_names:
        raise KerasLesionsError("class_names must name at least one class")
    if class_ids is not None:
        class_ids = np.asarray(class_ids)
        if class_ids.shape != (len(images),) or not np.issubdtype(class_ids.dtype, np.integer):
            raise KerasLesionsError(
                f"class_ids must be integers [{len(images)}], got {class_ids.dtype} "
                f"{class_ids.shape}")
        if class_ids.min() < 0 or class_ids.max() >= len(class_names):
            raise KerasLesionsError(f"class_ids must lie in [0, {len(class_names)})")
        class_ids = class_ids.astype(np.int32)
    info: dict = {"class_names": class_names}
    if kind == "acgan":
        if class_ids is None:
            raise KerasLesionsError("an ACGAN needs class_ids for its training images")
        if len(class_names) < 2:
            raise KerasLesionsError("an ACGAN needs at least two classes")
    else:
        # §3.2: one DCGAN per lesion class.
        if class_ids is not None:
            if len(np.unique(class_ids)) != 1:
                raise KerasLesionsError("a DCGAN trains on one class (§3.2): class_ids "
                                        "hold several")
            info["class_id"] = int(class_ids[0])
        elif named_class is not None:
            if named_class not in class_names:
                raise KerasLesionsError(f"unknown class {named_class!r} (known: "
                                        f"{', '.join(class_names)})")
            info["class_id"] = class_names.index(named_class)
        elif len(class_names) == 1:
            info["class_id"] = 0
        else:
            raise KerasLesionsError("a DCGAN trains on one class (§3.2): give class_ids, "
                                    "run_info['class_name'], or class_names with only that "
                                    "class")
        info["class_name"] = class_names[info["class_id"]]
        class_ids = None
    return images.astype(np.float32), class_ids, info


def build_gan_trainer(kind: str, num_classes: int, config: ExperimentConfig) -> DCGANTrainer:
    """Build G, D and their trainer for ``kind`` under ``compute.precision``,
    compiled with the §3.2 Adam."""
    gan = config.gan
    precision = config.compute.precision
    with precision_policy(precision):
        trainer = _gan_trainer(kind, num_classes, gan)

    def adam():  # §3.2: Adam, learning rate 2e-4, β1 = 0.5, β2 = 0.999
        return scaled_optimizer(keras.optimizers.Adam(gan.learning_rate, beta_1=gan.beta_1,
                                                      beta_2=gan.beta_2), precision)

    trainer.compile(d_optimizer=adam(), g_optimizer=adam(), jit_compile=config.compute.xla)
    return compiled_as_configured(trainer, config)


def _gan_trainer(kind, num_classes, gan) -> DCGANTrainer:
    from keras_lesions.models.gan import (
        build_acgan_discriminator, build_acgan_generator, build_dcgan_discriminator,
        build_dcgan_generator)

    if kind == "acgan":
        trainer = ACGANTrainer(
            build_acgan_generator(num_classes, gan.latent_dim, gan.width, name="generator"),
            build_acgan_discriminator(num_classes, gan.width, name="discriminator"),
            num_classes=num_classes, latent_dim=gan.latent_dim,
            diff_augment=gan.diff_augment, seed=gan.seed)
    else:
        trainer = DCGANTrainer(
            build_dcgan_generator(gan.latent_dim, gan.width, name="generator"),
            build_dcgan_discriminator(gan.width, name="discriminator"),
            latent_dim=gan.latent_dim, diff_augment=gan.diff_augment, seed=gan.seed)
    return trainer


def gan_state(trainer: DCGANTrainer) -> dict:
    """The training state a resumed run needs (``runs.checkpoint.fit_resumably``)."""
    return {"generator": trainer.generator, "discriminator": trainer.discriminator,
            "d_optimizer": trainer.d_optimizer, "g_optimizer": trainer.g_optimizer,
            "noise_seed": trainer.seed_generator.state}


def gan_settings(kind: str, config: ExperimentConfig, images: np.ndarray,
                 class_ids: np.ndarray | None, class_info: dict) -> dict:
    """Everything that changes a GAN run's result: its gan section, its classes
    and the identity of its training images."""
    arrays = (images,) if class_ids is None else (images, class_ids)
    return {"gan": dataclasses.asdict(config.gan), "kind": kind,
            "class_names": class_info["class_names"], "class_name": class_info.get("class_name"),
            "n_train": int(len(images)), "train_data": data_fingerprint(*arrays),
            # the step's algorithm: a run started when the G step drew a fresh
            # z and ran G again (recorded no such key) is not resumed by this one
            "generator_passes_per_step": GENERATOR_PASSES_PER_STEP,
            **compute_settings(config)}


def _sample_grid_callback(kind, trainer, config, run_dir, class_names, every) -> SampleGrid:
    """G on a fixed z every ``every`` epochs; for an ACGAN one row per class."""
    gan = config.gan
    grid_rng = np.random.default_rng([gan.seed, 1])  # fixed z, apart from the noise source
    if kind == "acgan":
        columns_per_row = 8
        grid_classes = np.repeat(np.arange(len(class_names), dtype=np.int32), columns_per_row)
        # the same z in every row: rows differ by class only
        grid_z = np.tile(grid_rng.uniform(-1, 1, (columns_per_row, gan.latent_dim)),
                         (len(class_names), 1)).astype(np.float32)
    else:
        grid_classes = None
        grid_z = grid_rng.uniform(-1, 1, (32, gan.latent_dim)).astype(np.float32)
    return SampleGrid(trainer.generator, grid_z, Path(run_dir) / "samples", grid_classes,
                      class_names, every=every)


def train_gan(
    kind: str,
    images: np.ndarray,
    config: ExperimentConfig,
    run_dir: str | os.PathLike,
    *,
    class_ids: np.ndarray | None = None,
    class_names: Sequence[str],
    run_info: dict | None = None,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
    sample_grid_every: int = 1,
    verbose: int | str = 0,
) -> dict:
    """Train a DCGAN (one class, §3.2) or an ACGAN (all classes, §3.3) into a run folder.

    Args:
        kind: "dcgan" or "acgan".
        images: float32 [n, 64, 64, 1] in [0, 1] (the classifier's input range;
            scaled to tanh's [-1, 1] here, the paper's only preprocessing, §3.2).
        config: the experiment config; its ``gan`` section is used
            (latent_dim, width, Adam settings, batch_size, epochs,
            diff_augment, seed).
        run_dir: the run folder (see the module docstring).
        class_ids: int [n] class of each image. Required for an ACGAN; for a
            DCGAN optional, and then all equal (the class it learns).
        class_names: the dataset's class names, recorded in ``run.json``.
            A DCGAN's class is, in this order: its ``class_ids``,
            ``run_info["class_name"]``, or the only name of a one-name list.
        run_info: facts added to ``run.json`` (fold, dataset, class_name ...).
        resume: continue an interrupted run from its last epoch checkpoint
            (networks, optimizers, noise state). Without it, a folder holding
            a previous run is refused; so is one started with other settings.
        progress: ``progress(done_epochs, total_epochs)``, called at the
            start and after each epoch's checkpoint.
        sample_grid_every: write ``samples/epoch_NNN.png`` every that many
            epochs (and after the last); 0 = never.
        verbose: Keras ``fit`` verbosity.

    Returns:
        ``{"run_dir", "kind", "epochs", "metrics" (the last epoch's),
        "generator", "discriminator"}`` (paths of the saved networks).

    Raises:
        RunError: the folder holds a finished run, an unfinished run without
            ``resume``, or a run of another kind or other settings.
        KerasLesionsError: images or class ids of the wrong shape or range.
        ConfigError: ``compute.xla`` is on and Keras compiled a network
            without it (:func:`~keras_lesions.train.precision.compiled_as_configured`);
            refused before the folder is claimed.
    """
    images, class_ids, class_info = _check_inputs(kind, images, class_ids, class_names,
                                                  (run_info or {}).get("class_name"))
    run_dir = Path(run_dir)
    gan = config.gan
    info = {**(run_info or {}), **class_info, "latent_dim": gan.latent_dim, "width": gan.width,
            "image_size": IMAGE_SIZE, "n_train": int(len(images)), "seed": gan.seed,
            "diff_augment": gan.diff_augment}
    settings = {**gan_settings(kind, config, images, class_ids, class_info),
                **identity(run_info)}
    check_start(run_dir, kind=kind, settings=settings, resume=resume)
    # Built before the folder is claimed, so that a build the config cannot
    # have (compiled_as_configured) leaves no started run behind.
    keras.utils.set_random_seed(gan.seed)  # weight initialisation
    trainer = build_gan_trainer(kind, len(class_info["class_names"]), config)
    start_run(run_dir, kind=kind, settings=settings, info=info, config=config, resume=resume)

    # §3.2: "scaling the training images to the range of the tanh (-1, 1)"
    arrays = (images * 2.0 - 1.0,) if class_ids is None else (images * 2.0 - 1.0, class_ids)
    rows = fit_resumably(
        trainer, run_dir, gan_state(trainer), epochs=gan.epochs,
        make_data=lambda first: epoch_batches(arrays, gan.batch_size, gan.seed, first,
                                              gan.epochs, drop_remainder=True),
        columns=["epoch"] + [m.name for m in trainer.metrics],
        callbacks=[_sample_grid_callback(kind, trainer, config, run_dir,
                                         class_info["class_names"], sample_grid_every)],
        progress=progress, verbose=verbose)
    paths = save_networks(run_dir, {"generator": trainer.generator,
                                    "discriminator": trainer.discriminator})
    metrics = {k: v for k, v in rows[-1].items() if k != "epoch"} if rows else {}
    finish_run(run_dir, {**info, "kind": kind, "epochs": gan.epochs, "metrics": metrics})
    return {"run_dir": str(run_dir), "kind": kind, "epochs": gan.epochs, "metrics": metrics,
            "generator": str(paths["generator"]), "discriminator": str(paths["discriminator"])}


def load_generator(run_dir: str | os.PathLike) -> tuple[keras.Model, dict]:
    """Load a finished GAN run's generator (safe mode: no code from the file).

    Returns:
        ``(generator, run_info)``: the model (DCGAN: z → images; ACGAN:
        [z, class_ids] → images; images in [-1, 1]) and the run's ``run.json``.

    Raises:
        RunError: no such folder, not a GAN run, or an unfinished run.
    """
    return _load_network(run_dir, "generator")


def load_discriminator(run_dir: str | os.PathLike) -> tuple[keras.Model, dict]:
    """Load a finished GAN run's discriminator (DCGAN: images → D(x) [batch, 1];
    ACGAN: images → {"real", "class"}), as :func:`load_generator`."""
    return _load_network(run_dir, "discriminator")


def _load_network(run_dir, role: str) -> tuple[keras.Model, dict]:
    run_dir = Path(run_dir)
    info = read_run_info(run_dir, kind=GAN_KINDS)
    if not is_done(run_dir):
        raise RunError(f"holds an unfinished {info['kind']} run (no done.json); resume its "
                       "training first", run_dir)
    return load_network(run_dir, role), info
