"""The references the project's train steps are measured against.

Each reference trains the same networks on the same batches as the project's
step, so a ratio between them is the cost of how the step is written, not of
what it computes:

* :func:`eager_loop`: the step run eagerly, one Python call per batch, no
  ``tf.function`` (what a first GradientTape loop looks like);
* :class:`ConcatenatedDCGAN`, :class:`ConcatenatedACGAN`: the trainer shape
  of the keras-io GAN examples (``dcgan_overriding_train_step``,
  ``conditional_gan``): one discriminator pass over the real and generated
  images concatenated, then one generator pass. Written here from that
  description with this project's networks, noise (z ~ U[-1, 1]) and batch
  norm in training mode, so what differs from ``keras_lesions.train.gan`` is
  the concatenated D pass, the loss written as one mean over both halves
  (the same arithmetic up to a factor 2) and no metric trackers. keras-io's
  conditional GAN is not an ACGAN; the ACGAN reference only borrows its
  concatenated shape.
* plain ``model.fit`` on in-memory numpy arrays, for the classifiers
  (run in ``bench/run.py``).
"""
from __future__ import annotations

import time

import keras
import tensorflow as tf
from keras import ops

from keras_lesions.losses import acgan_discriminator_loss, acgan_generator_loss


class ConcatenatedDCGAN(keras.Model):
    """keras-io's DCGAN trainer shape on this project's G and D."""

    def __init__(self, generator, discriminator, latent_dim, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = latent_dim
        self.bce = keras.losses.BinaryCrossentropy()
        self.seed_generator = keras.random.SeedGenerator(0)

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        super().compile(optimizer=None, **kwargs)
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    def call(self, z, training=False):
        return self.generator(z, training=training)

    def _z(self, batch):
        return keras.random.uniform((batch, self.latent_dim), -1.0, 1.0,
                                    seed=self.seed_generator)

    def train_step(self, real_images):
        batch = ops.shape(real_images)[0]
        fake = self.generator(self._z(batch), training=True)
        images = ops.concatenate([fake, real_images], axis=0)
        labels = ops.concatenate([ops.zeros((batch, 1)), ops.ones((batch, 1))], axis=0)
        with tf.GradientTape() as tape:
            d_loss = self.bce(labels, self.discriminator(images, training=True))
        d_vars = self.discriminator.trainable_variables
        self.d_optimizer.apply(tape.gradient(d_loss, d_vars), d_vars)
        with tf.GradientTape() as tape:
            prob = self.discriminator(self.generator(self._z(batch), training=True),
                                      training=True)
            g_loss = self.bce(ops.ones((batch, 1)), prob)
        g_vars = self.generator.trainable_variables
        self.g_optimizer.apply(tape.gradient(g_loss, g_vars), g_vars)
        return {"d_loss": d_loss, "g_loss": g_loss}


class ConcatenatedACGAN(ConcatenatedDCGAN):
    """The same shape for the class-conditional GAN: D's source and class
    heads on the concatenated batch."""

    def __init__(self, generator, discriminator, latent_dim, num_classes, **kwargs):
        super().__init__(generator, discriminator, latent_dim, **kwargs)
        self.num_classes = num_classes

    def _classes(self, batch):
        u = keras.random.uniform((batch,), seed=self.seed_generator)
        return ops.minimum(ops.cast(ops.floor(u * self.num_classes), "int32"),
                           self.num_classes - 1)

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def train_step(self, data):
        real_images, real_classes = data
        real_classes = ops.cast(real_classes, "int32")
        batch = ops.shape(real_images)[0]
        fake_classes = self._classes(batch)
        fake = self.generator([self._z(batch), fake_classes], training=True)
        with tf.GradientTape() as tape:
            out = self.discriminator(ops.concatenate([real_images, fake], axis=0),
                                     training=True)
            real_p, fake_p = ops.split(out["real"], 2, axis=0)
            real_c, fake_c = ops.split(out["class"], 2, axis=0)
            d_loss = acgan_discriminator_loss(real_p, fake_p, real_c, real_classes,
                                              fake_c, fake_classes)
        d_vars = self.discriminator.trainable_variables
        self.d_optimizer.apply(tape.gradient(d_loss, d_vars), d_vars)
        g_classes = self._classes(batch)
        with tf.GradientTape() as tape:
            out = self.discriminator(self.generator([self._z(batch), g_classes], training=True),
                                     training=True)
            g_loss = acgan_generator_loss(out["real"], out["class"], g_classes)
        g_vars = self.generator.trainable_variables
        self.g_optimizer.apply(tape.gradient(g_loss, g_vars), g_vars)
        return {"d_loss": d_loss, "g_loss": g_loss}


def classifier_tape_step(model: keras.Model):
    """One eager GradientTape step of a compiled classifier, as a function of a batch."""
    loss_fn = keras.losses.CategoricalCrossentropy()

    def step(batch):
        images, targets = batch
        with tf.GradientTape() as tape:
            loss = loss_fn(targets, model(images, training=True))
        variables = model.trainable_variables
        model.optimizer.apply(tape.gradient(loss, variables), variables)
        return loss
    return step


def eager_loop(step, batches, warmup: int, seconds: float, min_steps: int, max_steps: int):
    """Run ``step`` eagerly over ``batches`` (an iterator): ``warmup`` untimed
    steps, then timed steps until ``seconds`` have passed (between
    ``min_steps`` and ``max_steps``). Returns (steps, wall seconds, per-step
    seconds)."""
    for _ in range(warmup):
        step(next(batches))
    times = []
    start = time.perf_counter()
    while len(times) < max_steps and (len(times) < min_steps
                                       or time.perf_counter() - start < seconds):
        batch = next(batches)
        t0 = time.perf_counter()
        out = step(batch)
        # the step's results are on the host once it returns (eager), but
        # force them so a GPU's asynchronous queue is counted too
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
        times.append(time.perf_counter() - t0)
    return len(times), time.perf_counter() - start, times
