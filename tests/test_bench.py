"""The benchmark suite's own arithmetic: FLOPs counted from layers, and the
keras-io-shaped reference trainer training the project's networks.

Speed itself is never asserted here (it is measured by ``bench/run.py``)."""
from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from flops import forward_flops  # noqa: E402
from references import ConcatenatedDCGAN  # noqa: E402

from keras_lesions.models import build_lesion_classifier  # noqa: E402
from keras_lesions.models.gan import build_dcgan_discriminator, build_dcgan_generator  # noqa: E402


def test_the_paper_classifier_is_counted_layer_by_layer():
    model = build_lesion_classifier(3, 64, (32, 64, 128))
    # §2.2's network by hand: 5×5 convs with 'same' padding, each followed by
    # 2×2 pooling, then dense 128 and the 3-way softmax; 2 FLOPs a multiply-add.
    conv1 = 2 * 64 * 64 * 32 * (5 * 5 * 1)
    conv2 = 2 * 32 * 32 * 64 * (5 * 5 * 32)
    conv3 = 2 * 16 * 16 * 128 * (5 * 5 * 64)
    dense = 2 * (8 * 8 * 128) * 128 + 2 * 128 * 3
    assert forward_flops(model) == conv1 + conv2 + conv3 + dense


def test_a_transposed_convolution_counts_its_scattered_patches():
    inputs = keras.Input((4, 4, 8))
    outputs = keras.layers.Conv2DTranspose(3, 5, strides=2, padding="same")(inputs)
    # each of the 4·4 input pixels scatters a 5×5×3 patch of its 8 channels
    assert forward_flops(keras.Model(inputs, outputs)) == 2 * 4 * 4 * 8 * 5 * 5 * 3


def test_nested_models_are_counted_through():
    inner_in = keras.Input((6,))
    inner = keras.Model(inner_in, keras.layers.Dense(5)(inner_in))
    outer_in = keras.Input((6,))
    outer = keras.Model(outer_in, keras.layers.Dense(2)(inner(outer_in)))
    assert forward_flops(outer) == 2 * 6 * 5 + 2 * 5 * 2


def test_the_keras_io_shaped_reference_trains_the_project_networks():
    keras.utils.set_random_seed(0)
    generator = build_dcgan_generator(100, 0.0625)
    discriminator = build_dcgan_discriminator(0.0625)
    trainer = ConcatenatedDCGAN(generator, discriminator, 100)
    trainer.compile(d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
                    g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5))
    before_g = [w.copy() for w in generator.get_weights()]
    before_d = [w.copy() for w in discriminator.get_weights()]
    images = np.random.default_rng(0).uniform(-1, 1, (16, 64, 64, 1)).astype(np.float32)
    history = trainer.fit(images, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["d_loss"][-1]) and np.isfinite(history["g_loss"][-1])
    assert set(history) == {"d_loss", "g_loss", "d_accuracy"}  # the project trainer's trackers
    assert any(not np.array_equal(a, b) for a, b in zip(before_g, generator.get_weights()))
    assert any(not np.array_equal(a, b) for a, b in zip(before_d, discriminator.get_weights()))


def test_ratios_are_taken_round_by_round_and_the_median_round_is_reported():
    from run import _median_round, _ratio_range

    ours = [{"images_per_s": v, "median_step_ms": 1000 / v} for v in (100.0, 90.0, 120.0)]
    reference = [{"images_per_s": v} for v in (50.0, 100.0, 60.0)]
    ratio = _ratio_range(ours, reference)
    # within rounds: 2.0, 0.9, 2.0 (not the ratio of the medians, 100 / 60)
    assert ratio["rounds"] == [2.0, 0.9, 2.0]
    assert (ratio["median"], ratio["min"], ratio["max"]) == (2.0, 0.9, 2.0)
    median = _median_round(ours)
    assert median["images_per_s"] == 100.0 and median["median_step_ms"] == 10.0
    assert median["rounds_images_per_s"] == [100.0, 90.0, 120.0]
