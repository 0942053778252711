"""One training step on one device and under ``tf.distribute.MirroredStrategy``
over two logical CPU devices, from the same weights and the same global batch:
the subprocess half of ``test_distribute.py`` (logical devices must be set
before TensorFlow initialises, which the test process has long done).

    python distribute_driver.py classifier|dcgan

Prints one JSON line: ``replicas``, ``difference`` (the largest absolute
difference between the two steps' weights) and ``moved`` (the largest change
the single-device step made), so the test can read the difference against
the step's own size.
"""
from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_lesions.config import ExperimentConfig  # noqa: E402
from keras_lesions.train.classifier import build_compiled_classifier  # noqa: E402
from keras_lesions.train.gan import build_gan_trainer  # noqa: E402

GLOBAL_BATCH = 16  # 8 per replica


def _largest_difference(a, b) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def main(which: str) -> dict:
    config = ExperimentConfig()
    rng = np.random.default_rng(0)
    if which == "classifier":
        # Dropout off: its masks are drawn per replica, so even a correct
        # mirrored step would differ from the single-device one.
        config.classifier.filters = [8, 16, 16]
        config.classifier.dense_units = 16
        config.classifier.dropout = 0.0
        inputs = (rng.random((GLOBAL_BATCH, 64, 64, 1), dtype=np.float32),
                  np.eye(3, dtype=np.float32)[rng.integers(0, 3, GLOBAL_BATCH)])

        def build():
            return build_compiled_classifier(config, 3, 64, 0.4)
    else:
        config.gan.width = 0.0625
        inputs = (rng.uniform(-1, 1, (GLOBAL_BATCH, 64, 64, 1)).astype(np.float32),)

        def build():
            trainer = build_gan_trainer("dcgan", 1, config)
            # fit would otherwise build the trainer by calling it on real
            # images, which are not z (keras#20164's first symptom).
            trainer.built = True
            return trainer

    keras.utils.set_random_seed(0)
    single = build()
    start = single.get_weights()
    single.fit(*inputs, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = build()
    mirrored.set_weights(start)
    keras.utils.set_random_seed(0)
    mirrored.fit(*inputs, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    return {"replicas": strategy.num_replicas_in_sync,
            "difference": _largest_difference(single.get_weights(), mirrored.get_weights()),
            "moved": _largest_difference(single.get_weights(), start)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
