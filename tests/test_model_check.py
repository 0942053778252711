"""Every network builder and every trainer of the package through the shared
checks of ``model_check``: shapes and ranges, config round trip, a training
step, and a safe-mode ``.keras`` reload, on tiny networks and batches.

Imports of the package happen inside the tests, so a module being moved
breaks the tests that use it, not the collection of this file.
"""
from __future__ import annotations

import keras
import numpy as np
import pytest

from model_check import check_model, check_trainer, one_hot

BATCH = 2
SIZE = 16  # the classifiers' and Ben-Cohen networks' input side
GAN_WIDTH = 1 / 32  # G 32/16/8/4 filters, D 2/4/8/16; the images stay 64×64 (§3.2)
GAN_LATENT = 100
BC_WIDTH = 1 / 32  # Ben-Cohen filters, floored at MIN_FILTERS = 8
CODE = 8
CLASSES = 3


def _rng():
    return np.random.default_rng(0)


def _images(size, low=0.0, high=1.0, n=BATCH):
    return _rng().uniform(low, high, (n, size, size, 1)).astype(np.float32)


def _z(n=BATCH, dim=GAN_LATENT):
    return _rng().uniform(-1, 1, (n, dim)).astype(np.float32)


# --------------------------------------------------------------------------- builders
# Each case: () -> (model, inputs, keyword arguments of check_model).


def lesion_classifier():
    from keras_lesions.models import build_lesion_classifier

    # dense_units 8, not 4: with seed 0 all four ReLUs of a Dense(4) are dead on
    # these inputs at initialisation, and the training step moves nothing but
    # the output bias (check_model reports it).
    model = build_lesion_classifier(num_classes=CLASSES, input_size=SIZE, filters=(2, 2, 2),
                                    dense_units=8, mean=0.25)
    return model, _images(SIZE), dict(
        output_shape=(BATCH, CLASSES), value_range=(0, 1), loss="categorical_crossentropy",
        targets=one_hot([0, 2], CLASSES))


def dcgan_generator():
    from keras_lesions.models.gan import build_dcgan_generator

    return build_dcgan_generator(GAN_LATENT, width=GAN_WIDTH), _z(), dict(
        output_shape=(BATCH, 64, 64, 1), value_range=(-1, 1), loss="mse")


def dcgan_discriminator():
    from keras_lesions.models.gan import build_dcgan_discriminator

    return build_dcgan_discriminator(width=GAN_WIDTH), _images(64, -1, 1), dict(
        output_shape=(BATCH, 1), value_range=(0, 1), loss="binary_crossentropy",
        targets=np.array([[1.0], [0.0]], np.float32))


def acgan_generator():
    from keras_lesions.models.gan import build_acgan_generator

    inputs = [_z(), np.array([0, 2], np.int32)]
    return build_acgan_generator(CLASSES, GAN_LATENT, width=GAN_WIDTH), inputs, dict(
        output_shape=(BATCH, 64, 64, 1), value_range=(-1, 1), loss="mse")


def acgan_discriminator():
    from keras_lesions.models.gan import build_acgan_discriminator

    return build_acgan_discriminator(CLASSES, width=GAN_WIDTH), _images(64, -1, 1), dict(
        output_shape={"real": (BATCH, 1), "class": (BATCH, CLASSES)}, value_range=(0, 1),
        loss={"real": "binary_crossentropy", "class": "categorical_crossentropy"},
        targets={"real": np.array([[1.0], [0.0]], np.float32),
                 "class": one_hot([1, 2], CLASSES)})


def ben_cohen_encoder():
    from keras_lesions.models.disentangle import build_encoder

    # The code leaves a ReLU: non-negative, unbounded above.
    return build_encoder(SIZE, BC_WIDTH, CODE), _images(SIZE), dict(
        output_shape=(BATCH, CODE), value_range=(0, None), loss="mse")


def ben_cohen_code_classifier():
    from keras_lesions.models.disentangle import build_code_classifier

    codes = _rng().uniform(0, 1, (BATCH, CODE)).astype(np.float32)
    return build_code_classifier(4, CODE, units=8), codes, dict(
        output_shape=(BATCH, 4), value_range=(0, 1), loss="categorical_crossentropy",
        targets=one_hot([0, 3], 4))


def ben_cohen_decoder():
    from keras_lesions.models.disentangle import build_decoder

    z = _rng().uniform(0, 1, (BATCH, 2 * CODE)).astype(np.float32)
    return build_decoder(SIZE, BC_WIDTH, CODE, CODE), z, dict(
        output_shape=(BATCH, SIZE, SIZE, 1), value_range=(0, 1), loss="mse")


def ben_cohen_specified_classifier():
    from keras_lesions.models.disentangle import (
        build_code_classifier, build_encoder, build_specified_classifier)

    model = build_specified_classifier(build_encoder(SIZE, BC_WIDTH, CODE, name="encoder_c"),
                                       build_code_classifier(4, CODE, 8, name="classifier"))
    return model, _images(SIZE), dict(
        output_shape=(BATCH, 4), value_range=(0, 1), loss="categorical_crossentropy",
        targets=one_hot([1, 2], 4))


BUILDERS = [lesion_classifier, dcgan_generator, dcgan_discriminator, acgan_generator,
            acgan_discriminator, ben_cohen_encoder, ben_cohen_code_classifier,
            ben_cohen_decoder, ben_cohen_specified_classifier]


@pytest.mark.parametrize("case", BUILDERS, ids=[b.__name__ for b in BUILDERS])
def test_builder(case, tmp_path):
    keras.utils.set_random_seed(0)
    model, inputs, expected = case()
    check_model(model, inputs, tmp_path=tmp_path, **expected)


# --------------------------------------------------------------------------- trainers


def _gan_config(**extra):
    from keras_lesions.config import load_config

    return load_config(None, {"gan.width": GAN_WIDTH, "gan.latent_dim": GAN_LATENT,
                              "gan.batch_size": BATCH, **extra})


def test_dcgan_trainer(tmp_path):
    keras.utils.set_random_seed(0)
    from keras_lesions.train.gan import DCGANTrainer, build_gan_trainer

    trainer = build_gan_trainer("dcgan", 1, _gan_config())
    assert type(trainer) is DCGANTrainer
    check_trainer(trainer, _images(64, -1, 1), expected_metrics={"d_loss", "g_loss", "d_accuracy"},
                  networks_that_change=[trainer.generator, trainer.discriminator],
                  probe_inputs={"generator": _z(), "discriminator": _images(64, -1, 1)},
                  tmp_path=tmp_path)


def test_acgan_trainer(tmp_path):
    keras.utils.set_random_seed(0)
    from keras_lesions.train.gan import ACGANTrainer, build_gan_trainer

    trainer = build_gan_trainer("acgan", CLASSES, _gan_config())
    assert type(trainer) is ACGANTrainer
    data = (_images(64, -1, 1), np.array([0, 2], np.int32))
    check_trainer(trainer, data,
                  expected_metrics={"d_loss", "g_loss", "d_accuracy", "d_class_accuracy"},
                  networks_that_change=[trainer.generator, trainer.discriminator],
                  probe_inputs={"generator": [_z(), np.array([1, 2], np.int32)],
                                "discriminator": _images(64, -1, 1)},
                  tmp_path=tmp_path)


def test_disentangle_trainer(tmp_path):
    keras.utils.set_random_seed(0)
    from keras_lesions.config import load_config
    from keras_lesions.train.disentangle import DisentangleTrainer, build_networks

    config = load_config(None, {"disentangle.input_size": SIZE, "disentangle.width": BC_WIDTH,
                                "disentangle.code_size": CODE,
                                "disentangle.classifier_units": 8})
    d = config.disentangle
    networks = build_networks(4, config)  # as train_disentangle builds step 2
    trainer = DisentangleTrainer(networks["encoder_c"], networks["encoder_r"],
                                 networks["decoder"], networks["adversary"],
                                 rec_weight=d.rec_weight, adv_weight=d.adv_weight,
                                 adversary_steps=d.adversary_steps)
    trainer.compile(ae_optimizer=keras.optimizers.Adam(d.learning_rate),
                    adversary_optimizer=keras.optimizers.Adam(d.learning_rate))
    images = _images(SIZE, n=4)
    codes = _rng().uniform(0, 1, (BATCH, CODE)).astype(np.float32)
    check_trainer(trainer, (images, one_hot([0, 1, 2, 3], 4)),
                  expected_metrics={"loss", "rec_loss", "adv_loss", "adv_accuracy"},
                  networks_that_change=[trainer.encoder_r, trainer.decoder, trainer.adversary],
                  networks_that_stay=[trainer.encoder_c],
                  probe_inputs={"encoder_c": images, "encoder_r": images,
                                "decoder": np.concatenate([codes, codes], 1),
                                "adversary": codes},
                  tmp_path=tmp_path)
