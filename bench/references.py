"""The references the project's train steps are measured against.

Each reference trains the same networks on the same batches as the project's
step, so a ratio between them is the cost of how the step is written, not of
what it computes:

* :func:`eager_step_times`: the step run eagerly, one Python call per batch, no
  ``tf.function`` (what a first GradientTape loop looks like);
* :class:`ConcatenatedDCGAN`, :class:`ConcatenatedACGAN`: the trainer shape
  of the keras-io GAN examples (``dcgan_overriding_train_step``): one
  discriminator pass over the real and generated images concatenated, then a
  G step that draws a fresh z and runs the generator again. They subclass the
  project's trainers and replace only ``train_step``, so the networks, noise,
  losses and metric trackers are the project's, and the differences are the
  two of that shape: the concatenated D pass (the same FLOPs as ours) and the
  second generator pass (ours runs G once per step and uses its G(z) in both
  steps). (keras-io's conditional GAN is not an ACGAN; the ACGAN reference
  only borrows the shape.)
* plain ``model.fit`` on in-memory numpy arrays, for the classifiers
  (run in ``bench/run.py``).
"""
from __future__ import annotations

import time

import keras
import tensorflow as tf
from keras import ops

from keras_lesions.losses import (
    acgan_discriminator_loss, acgan_generator_loss, dcgan_discriminator_loss,
    dcgan_generator_loss)
from keras_lesions.train.gan import ACGANTrainer, DCGANTrainer, _source_correct


class ConcatenatedDCGAN(DCGANTrainer):
    """:class:`DCGANTrainer` with keras-io's step: D on [real; fake] at once."""

    def train_step(self, real_images):
        batch = ops.shape(real_images)[0]
        fake_images = self.generator(self.sample_z(batch), training=True)
        with tf.GradientTape() as tape:
            real_prob, fake_prob = ops.split(
                self.discriminate(ops.concatenate([real_images, fake_images], axis=0)), 2)
            d_loss = dcgan_discriminator_loss(real_prob, fake_prob)
        d_variables = self.discriminator.trainable_variables
        self.d_optimizer.apply(tape.gradient(d_loss, d_variables), d_variables)

        with tf.GradientTape() as tape:
            g_loss = dcgan_generator_loss(self.discriminate(
                self.generator(self.sample_z(batch), training=True)))
        g_variables = self.generator.trainable_variables
        self.g_optimizer.apply(tape.gradient(g_loss, g_variables), g_variables)

        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.d_accuracy_tracker.update_state(_source_correct(real_prob, fake_prob))
        return {m.name: m.result() for m in self.metrics}


class ConcatenatedACGAN(ACGANTrainer):
    """:class:`ACGANTrainer` with the same shape: D's source and class heads
    on [real; fake] at once."""

    def train_step(self, data):
        real_images, real_classes = data
        real_classes = ops.cast(real_classes, "int32")
        batch = ops.shape(real_images)[0]
        fake_classes = self.sample_classes(batch)
        fake_images = self.generator([self.sample_z(batch), fake_classes], training=True)
        with tf.GradientTape() as tape:
            out = self.discriminate(ops.concatenate([real_images, fake_images], axis=0))
            real_prob, fake_prob = ops.split(out["real"], 2)
            real_class, fake_class = ops.split(out["class"], 2)
            d_loss = acgan_discriminator_loss(real_prob, fake_prob, real_class, real_classes,
                                              fake_class, fake_classes)
        d_variables = self.discriminator.trainable_variables
        self.d_optimizer.apply(tape.gradient(d_loss, d_variables), d_variables)

        g_classes = self.sample_classes(batch)
        with tf.GradientTape() as tape:
            g_out = self.discriminate(
                self.generator([self.sample_z(batch), g_classes], training=True))
            g_loss = acgan_generator_loss(g_out["real"], g_out["class"], g_classes)
        g_variables = self.generator.trainable_variables
        self.g_optimizer.apply(tape.gradient(g_loss, g_variables), g_variables)

        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.d_accuracy_tracker.update_state(_source_correct(real_prob, fake_prob))
        predicted = ops.cast(ops.argmax(real_class, axis=-1), "int32")
        self.d_class_accuracy_tracker.update_state(
            ops.cast(ops.equal(predicted, real_classes), "float32"))
        return {m.name: m.result() for m in self.metrics}


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


def eager_step_times(step, batches, steps: int) -> list[float]:
    """Seconds of each of ``steps`` eager calls of ``step`` on ``batches`` (an
    iterator); fetching the batch is not counted."""
    times = []
    for _ in range(steps):
        batch = next(batches)
        start = time.perf_counter()
        out = step(batch)
        # eager results are on the host already, but reading them makes a
        # GPU's asynchronous queue count too
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
        times.append(time.perf_counter() - start)
    return times
