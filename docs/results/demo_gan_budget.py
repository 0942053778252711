"""The study behind the demo's GAN epochs (docs/results/demo-gan-budget.md).

How many generator steps, at which width, buy demo-size DCGAN lesions that
the report's classifier two-sample test cannot tell from real ones? Trains
one DCGAN per class on fold 0's D_aug2 of the demo config on phantom seed 1
(not the demo's data, seed 0), and after each checkpoint epoch scores 300
generated lesions with ``classifier_two_sample_test``: the fit patients'
real lesions and 150 synthetic ones against fold 0's *validation* patients'
lesions and the other 150; and it reports which share of them the fold's
CNN-AUG classifier (trained on the fit patients' D_aug2) calls the GAN's
class, beside the share of the validation patients' real lesions of that
class it calls right. No test-fold result is used (the classifier run
writes its test accuracy; nothing here reads it).

    python docs/results/demo_gan_budget.py OUT_DIR WIDTH EPOCHS   # e.g. /tmp/b 0.0625 120

Prints one JSON line per (class, checkpoint). Needs the fold's augmentation
groups and classifier: the script runs ``fold0/augment`` and
``fold0/classifier/D_aug2/seed0`` of the experiment first.
"""
import dataclasses
import json
import sys
import time
from pathlib import Path

import keras
import numpy as np

from keras_lesions.config import load_config
from keras_lesions.evaluate.quality import classifier_two_sample_test
from keras_lesions.experiments import classic_curve as classic
from keras_lesions.experiments.registry import open_for
from keras_lesions.experiments.run import run_experiment
from keras_lesions.inference import predict
from keras_lesions.pipeline import roi_inputs
from keras_lesions.synth.sample import tanh_to_unit
from keras_lesions.train.classifier import load_run_model
from keras_lesions.train.gan import build_gan_trainer

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "frid-adar-2018-gan-quick.yaml"
CHECKPOINTS = (3, 6, 12, 20, 30, 45, 60, 90, 120)


def main(out_dir: str, width: float, epochs: int) -> None:
    base = load_config(CONFIG, {"data.phantom_seed": 1, "output_dir": out_dir})
    for run in ("fold0/augment", "fold0/classifier/D_aug2/seed0"):
        run_experiment(base, only=run, log=lambda *a: None)
    exp = open_for(base, lambda *a: None, record=False)
    classifier = load_run_model(exp.layout.run_dir("fold0/classifier/D_aug2/seed0"))
    config = dataclasses.replace(base, gan=dataclasses.replace(base.gan, width=width))
    batch = config.gan.batch_size
    split = exp.split(0, 0)
    images, labels = classic.base_group(exp, 0, 0, 1)  # D_aug2, as synth.base_group: 2
    real_fit, fit_labels = roi_inputs(exp.dataset, split.fit, 64), exp.dataset.labels[split.fit]
    real_val = roi_inputs(exp.dataset, split.validation, 64)
    val_labels = exp.dataset.labels[split.validation]
    val_called = np.argmax(predict(classifier, real_val), axis=-1)
    checkpoints = sorted({e for e in CHECKPOINTS if e <= epochs} | {epochs})
    for c, name in enumerate(exp.class_names):
        x = images[labels == c] * 2.0 - 1.0
        keras.utils.set_random_seed(config.gan.seed)
        trainer = build_gan_trainer("dcgan", len(exp.class_names), config)
        seconds, done = 0.0, 0
        for epoch in checkpoints:
            # train_gan's len(x) // batch steps an epoch, all full batches
            # (its batches leave out a different tail each epoch; these
            # always the same few rows)
            start = time.time()
            trainer.fit(x[:len(x) // batch * batch], batch_size=batch, epochs=epoch,
                        initial_epoch=done, verbose=0, shuffle=True)
            done, seconds = epoch, seconds + time.time() - start  # training only
            # z as synth.sample_generator draws it (seed 1), in inference mode
            z = np.random.default_rng(1).uniform(-1, 1, (300, config.gan.latent_dim))
            fake = tanh_to_unit(predict(trainer.generator, z.astype(np.float32)))
            test = classifier_two_sample_test(real_fit[fit_labels == c], fake[:150],
                                              real_val[val_labels == c], fake[150:])
            called = np.argmax(predict(classifier, fake), axis=-1)
            print(json.dumps({"class": name, "width": width, "epochs": epoch,
                              "generator_steps": epoch * (len(x) // batch),
                              "train_s": round(seconds, 1), "auc": round(test["auc"], 3),
                              "ci95": [round(v, 3) for v in test["ci95"]],
                              "n_real_test": int(np.sum(val_labels == c)),
                              "called_its_class": round(float(np.mean(called == c)), 3),
                              "real_validation_called_right": round(
                                  float(np.mean(val_called[val_labels == c] == c)), 3)}),
                  flush=True)


if __name__ == "__main__":
    try:
        out, width, epochs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
        if not (0 < width <= 1 and epochs >= 1) or len(sys.argv) != 4:
            raise ValueError
    except (IndexError, ValueError):
        sys.exit("usage: demo_gan_budget.py OUT_DIR WIDTH EPOCHS (0 < WIDTH <= 1, EPOCHS >= 1)")
    main(out, width, epochs)
