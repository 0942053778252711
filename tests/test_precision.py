"""compute.precision: one training step of every trainer under each mixed
policy gives finite losses close to the float32 step from the same weights.

These run on the CPU, which computes bfloat16 and float16 too (slowly): the
GPU path differs only in the kernels TensorFlow picks.
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from keras_lesions.config import ConfigError, ExperimentConfig, config_from_dict
from keras_lesions.train.classifier import build_compiled_classifier, classifier_config_settings
from keras_lesions.train.disentangle import build_disentangle_trainer
from keras_lesions.train.gan import build_gan_trainer
from keras_lesions.train.specified_classifier import build_compiled_specified_classifier

MIXED = ("mixed_bfloat16", "mixed_float16")
# bfloat16 keeps 8 significant bits: a loss over a batch comes out within a
# few per cent of float32's; float16 (11 bits) closer still.
RTOL = {"mixed_bfloat16": 0.05, "mixed_float16": 0.02}


def _config(precision: str) -> ExperimentConfig:
    config = config_from_dict({
        # no dropout: its masks are drawn in the compute dtype
        "classifier": {"filters": [4, 8, 8], "dense_units": 16, "dropout": 0.0},
        "gan": {"width": 0.0625, "batch_size": 8},
        "disentangle": {"input_size": 32, "width": 0.03125, "code_size": 16,
                        "classifier_units": 16, "dropout": 0.0, "batch_size": 8}})
    return dataclasses.replace(config, compute=dataclasses.replace(config.compute,
                                                                   precision=precision))


def _copy_weights(target: keras.Model, source: keras.Model) -> None:
    for t, s in zip(target.weights, source.weights, strict=True):
        t.assign(s)


def _same_start(initial: dict, name: str, model: keras.Model, copy) -> None:
    """The float32 run keeps a copy of ``model``'s initial weights under
    ``name``; the mixed run starts from them."""
    if copy:
        _copy_weights(model, initial[name])
    else:
        initial[name] = keras.models.clone_model(model)
        initial[name].set_weights(model.get_weights())


def _images(n, size, low=0.0, seed=0):
    return np.random.default_rng(seed).uniform(low, 1.0, (n, size, size, 1)).astype(np.float32)


def _targets(n, classes, seed=1):
    return np.eye(classes, dtype=np.float32)[np.random.default_rng(seed).integers(0, classes, n)]


# A scale at which these small steps' scaled gradients fit in float16. The
# default initial scale (2^15) overflows in the first steps, which
# LossScaleOptimizer then skips while it halves the scale (tested below): a
# skipped D step would change the G loss that follows it.
SETTLED_SCALE = 2.0 ** 7


def _settle(*optimizers) -> None:
    for optimizer in optimizers:
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            optimizer.dynamic_scale.assign(SETTLED_SCALE)


def _losses(logs) -> dict[str, float]:
    return {k: float(v) for k, v in logs.items()}


def _check_step(step, precision):
    """``step(config) -> (logs, model)``: float32 first, then ``precision``
    from the float32 model's initial weights."""
    reference_logs, _ = step(_config("float32"), None)
    logs, model = step(_config(precision), "copy")
    assert set(logs) == set(reference_logs)
    for name, value in _losses(logs).items():
        assert np.isfinite(value), f"{name} is {value} under {precision}"
        if "loss" in name:  # (an accuracy flips with a near-tie: not compared)
            assert value == pytest.approx(float(reference_logs[name]), rel=RTOL[precision],
                                          abs=1e-3), name
    return model


@pytest.fixture(autouse=True)
def _float32_afterwards():
    yield
    assert keras.config.dtype_policy().name == "float32"  # the scope restored it


@pytest.mark.parametrize("precision", MIXED)
def test_classifier_step(precision):
    images, targets = _images(16, 64), _targets(16, 3)
    initial = {}

    def step(config, copy):
        keras.utils.set_random_seed(0)
        model = build_compiled_classifier(config, 3, 64, mean=0.5)
        _same_start(initial, "model", model, copy)
        model.optimizer.build(model.trainable_variables)  # as the training does
        _settle(model.optimizer)
        return model.train_on_batch(images, targets, return_dict=True), model

    model = _check_step(step, precision)
    assert model.get_layer("conv1").compute_dtype == precision.removeprefix("mixed_")
    assert model.get_layer("conv1").kernel.dtype == "float32"  # weights stay float32
    assert model.output.dtype == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (
        precision == "mixed_float16")


@pytest.mark.parametrize("kind", ["dcgan", "acgan"])
@pytest.mark.parametrize("precision", MIXED)
def test_gan_step(kind, precision):
    real = _images(8, 64) * 2 - 1
    classes = np.arange(8, dtype=np.int32) % 3
    initial = {}

    def step(config, copy):
        trainer = build_gan_trainer(kind, 3, config)
        _same_start(initial, "g", trainer.generator, copy)
        _same_start(initial, "d", trainer.discriminator, copy)
        # the same noise in both runs: a fresh seed state
        trainer.seed_generator.state.assign(np.zeros_like(trainer.seed_generator.state))
        _settle(trainer.d_optimizer, trainer.g_optimizer)
        logs = trainer.train_step(real if kind == "dcgan" else (real, classes))
        return logs, trainer

    trainer = _check_step(step, precision)
    assert trainer.generator.get_layer("deconv1").compute_dtype == \
        precision.removeprefix("mixed_")
    assert trainer.generator.output.dtype == "float32"
    scaled = isinstance(trainer.d_optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (precision == "mixed_float16")
    if scaled:
        # the step was applied (not skipped as an overflow), and unscaled
        assert int(trainer.d_optimizer.iterations) == 1
        assert int(trainer.g_optimizer.iterations) == 1
        # The losses are scaled before the gradients: at a scale that
        # overflows float16 the step is skipped and the scale halved.
        trainer.d_optimizer.dynamic_scale.assign(2.0 ** 60)
        trainer.train_step(real if kind == "dcgan" else (real, classes))
        assert int(trainer.d_optimizer.iterations) == 1
        assert float(trainer.d_optimizer.dynamic_scale) == 2.0 ** 59


@pytest.mark.parametrize("precision", MIXED)
def test_disentanglement_steps(precision):
    images, targets = _images(8, 32), _targets(8, 4)
    initial = {}

    def step1(config, copy):
        keras.utils.set_random_seed(0)
        model = build_compiled_specified_classifier(4, config)
        _same_start(initial, "step1", model, copy)
        model.optimizer.build(model.trainable_variables)  # as the training does
        _settle(model.optimizer)
        return model.train_on_batch(images, targets, return_dict=True), model

    _check_step(step1, precision)

    def step2(config, copy):
        keras.utils.set_random_seed(0)
        step1_model = build_compiled_specified_classifier(4, config)
        _copy_weights(step1_model, initial["step1"])
        trainer, networks = build_disentangle_trainer(step1_model, 4, config)
        for name in ("encoder_r", "decoder", "adversary"):
            _same_start(initial, name, networks[name], copy)
        _settle(trainer.ae_optimizer, trainer.adversary_optimizer)
        return trainer.train_step((images, targets)), trainer

    trainer = _check_step(step2, precision)
    assert trainer.decoder.output.dtype == "float32"
    assert isinstance(trainer.ae_optimizer, keras.optimizers.LossScaleOptimizer) == (
        precision == "mixed_float16")


def test_precision_is_a_run_setting_only_when_mixed():
    assert "precision" not in classifier_config_settings(_config("float32"), 0)
    assert classifier_config_settings(_config("mixed_bfloat16"), 0)["precision"] == \
        "mixed_bfloat16"
    with pytest.raises(ConfigError, match="compute.precision must be one of"):
        config_from_dict({"compute": {"precision": "float16"}})


def test_a_model_card_names_the_precision_and_xla_its_run_was_trained_with(tmp_path):
    from keras_lesions.model_card import classifier_card
    from keras_lesions.runs.folder import start_run

    for name, config in (("plain", _config("float32")), ("mixed", _config("mixed_bfloat16"))):
        start_run(tmp_path / name, kind="lesion_classifier",
                  settings=classifier_config_settings(config, 0), info={"class_names": ["a"]})
    assert classifier_card(tmp_path / "plain")["training"]["precision"] == "float32"
    card = classifier_card(tmp_path / "mixed")["training"]
    assert card["precision"] == "mixed_bfloat16" and card["xla"] is False
