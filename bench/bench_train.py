"""Classifier training throughput: the project's pipeline vs plain ``model.fit``.

Prints images/s of (a) ``keras_lesions.train`` style training — the seeded
stream of per-epoch batches (``pipeline.epoch_batches``: order from (seed, epoch),
so resumed runs see the same batches) feeding ``fit`` — and (b) the plain
reference, ``model.fit`` on in-memory numpy arrays, in the same run, and their
ratio. A benchmark, not a test: nothing is asserted.

    python bench/bench_train.py [--images 2048] [--epochs 3] [--filters 32,64,128]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--filters", default="32,64,128", help="paper size by default")
    parser.add_argument("--jit", action="store_true", help="compile with XLA (jit_compile=True)")
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from keras_lesions.pipeline import epoch_batches
    from keras_lesions.models import build_lesion_classifier

    filters = tuple(int(f) for f in args.filters.split(","))
    rng = np.random.default_rng(0)
    x = rng.random((args.images, 64, 64, 1), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, args.images)]

    def fresh_model():
        keras.utils.set_random_seed(0)
        model = build_lesion_classifier(3, filters=filters)
        model.compile(optimizer=keras.optimizers.SGD(0.001, momentum=0.9, nesterov=True),
                      loss="categorical_crossentropy", jit_compile=args.jit)
        return model

    def timed(fit_once) -> float:
        fit_once(1)  # warm-up: tracing and graph building are not throughput
        start = time.perf_counter()
        fit_once(args.epochs)
        return args.images * args.epochs / (time.perf_counter() - start)

    model = fresh_model()
    # The classifier's own stream: every epoch's order from (seed, epoch), as
    # resumable training needs; long enough for the warm-up and timed epochs.
    data, steps = epoch_batches((x, y), args.batch_size, 0, 0, 1 + args.epochs,
                                drop_remainder=False)
    ours = timed(lambda e: model.fit(data, epochs=e, steps_per_epoch=steps, verbose=0,
                                     shuffle=False))
    model = fresh_model()
    plain = timed(lambda e: model.fit(x, y, batch_size=args.batch_size, epochs=e, verbose=0))

    print(f"device: {tf.config.list_physical_devices('GPU') or 'CPU only'}")
    print(f"classifier filters {filters}, {args.images} images, batch {args.batch_size}, "
          f"{args.epochs} timed epochs, jit={args.jit}")
    print(f"train step, tf.data pipeline : {ours:10.1f} images/s")
    print(f"train step, plain model.fit  : {plain:10.1f} images/s")
    print(f"ratio (pipeline / plain)     : {ours / plain:10.2f}")


if __name__ == "__main__":
    main()
