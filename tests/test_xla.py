"""compute.xla, the switch that compiles every train step with XLA: on the CPU,
each trainer's step under it gives the step without it.

Keras' default ``jit_compile="auto"`` is off on a CPU and on with a GPU, so
the project passes ``compute.xla`` (default off) to every compile, and a GPU
runs the steps a CPU tests unless asked otherwise. XLA computes the same
networks and losses; it fuses and reorders float32 sums, and its random ops
draw other numbers for the same seed (tested below, and the reason an XLA run
records the switch in its settings). So the steps are compared from the same
weights and data with the noise fixed: z and the class draws given, no
dropout.
"""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lesions.config import ConfigError, config_from_dict
from keras_lesions.train.classifier import build_compiled_classifier, classifier_config_settings
from keras_lesions.train.disentangle import build_disentangle_trainer
from keras_lesions.train.gan import build_gan_trainer
from keras_lesions.train.precision import compiled_as_configured
from keras_lesions.train.specified_classifier import build_compiled_specified_classifier

STEPS = 2
# XLA fuses and reorders float32 sums, and Adam turns a gradient that is
# rounding noise into a full step of either sign, so two steps agree in their
# losses to about 2e-4 relative and in each weight's update to within 4% of
# its size (measured); a wrong step (a lost term, BatchNorm in the wrong mode)
# differs by about the whole update, and one with a learning rate 1.2 times
# as large by a fifth (tested below).
LOSS_RTOL = 1e-3
UPDATE_RTOL = 0.1


def _config(xla: bool, diff_augment: str = ""):
    return config_from_dict(_config_dict(xla, diff_augment))


def _config_dict(xla: bool, diff_augment: str = ""):
    return {
        "classifier": {"filters": [4, 8, 8], "dense_units": 16, "dropout": 0.0},
        "gan": {"width": 0.0625, "batch_size": 8, "diff_augment": diff_augment},
        "disentangle": {"input_size": 32, "width": 0.03125, "code_size": 16,
                        "classifier_units": 16, "dropout": 0.0, "batch_size": 8},
        "compute": {"xla": xla}}


def _images(n, size, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, size, size, 1)).astype(np.float32)


def _targets(n, classes, seed=1):
    return np.eye(classes, dtype=np.float32)[np.random.default_rng(seed).integers(0, classes, n)]


def _batches(*arrays):
    return tf.data.Dataset.from_tensor_slices(arrays if len(arrays) > 1 else arrays[0]).batch(
        8, drop_remainder=True).repeat()


def _fit(model, data):
    history = model.fit(data, steps_per_epoch=STEPS, epochs=1, verbose=0)
    return {name: values[-1] for name, values in history.history.items()}


def _compare(build, data):
    """``build(xla)`` gives a fresh model compiled as the project compiles it;
    the XLA one starts from the plain one's weights."""
    plain, compiled = build(False), build(True)
    assert plain.jit_compile is False
    assert compiled.jit_compile is True     # Keras kept it: every layer can be compiled
    start = plain.get_weights()
    compiled.set_weights(start)
    logs, xla_logs = _fit(plain, data), _fit(compiled, data)
    assert set(xla_logs) == set(logs)
    for name, value in logs.items():
        assert np.isfinite(xla_logs[name]), name
        if "loss" in name:  # (an accuracy flips with a near-tie: not compared)
            assert xla_logs[name] == pytest.approx(value, rel=LOSS_RTOL, abs=1e-6), name
    _compare_updates(plain, compiled, start)
    return logs


def _compare_updates(plain, compiled, start):
    """Each weight's update under ``compiled`` within UPDATE_RTOL of its
    update under ``plain``, both from the weights ``start``."""
    absorbed = _absorbed_by_batchnorm(plain)
    assert absorbed or not any(isinstance(layer, keras.layers.BatchNormalization)
                               for layer in plain._flatten_layers())
    updated = 0
    for a, b, w0 in zip(plain.weights, compiled.weights, start, strict=True):
        if a.path in absorbed:
            continue
        update, xla_update = np.asarray(a) - w0, np.asarray(b) - w0
        size = np.linalg.norm(update)
        if size == 0:  # frozen, or untouched by these losses: so under XLA too
            np.testing.assert_array_equal(xla_update, 0, err_msg=a.path)
            continue
        updated += 1
        assert np.linalg.norm(xla_update - update) <= UPDATE_RTOL * size, \
            f"update of {a.path}"
    assert updated > 0


def _absorbed_by_batchnorm(model):
    """Paths of the weights a BatchNorm makes meaningless: the bias of the
    layer feeding it (the norm subtracts it again, so its gradient is float
    rounding, which Adam scales up to a full step of either sign) and the
    norm's moving mean, which takes that bias in."""
    paths = set()
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            paths.add(layer.moving_mean.path)
            for node in layer._inbound_nodes:
                for parent in node.parent_nodes:
                    bias = getattr(parent.operation, "bias", None)
                    if bias is not None:
                        paths.add(bias.path)
    return paths


def test_classifier_step_under_xla():
    def build(xla):
        keras.utils.set_random_seed(0)
        return build_compiled_classifier(_config(xla), 3, 64, mean=0.5)

    data = _batches(_images(16, 64), _targets(16, 3))
    _compare(build, data)

    # The update check fails on a step that differs by a fifth: the same
    # model trained with a learning rate 1.2 times as large.
    plain, other = build(False), build(False)
    start = plain.get_weights()
    other.set_weights(start)
    other.optimizer.learning_rate.assign(1.2 * float(plain.optimizer.learning_rate))
    _fit(plain, data), _fit(other, data)
    with pytest.raises(AssertionError, match="update of"):
        _compare_updates(plain, other, start)


def _fixed_noise(trainer):
    """Replace the trainer's draws of z and classes by fixed tensors (what
    XLA would draw differently), so both steps see the same noise."""
    rng = np.random.default_rng(5)
    z = tf.constant(rng.uniform(-1, 1, (8, trainer.latent_dim)).astype(np.float32))
    trainer.sample_z = lambda batch: z[:batch]
    if hasattr(trainer, "sample_classes"):
        classes = tf.constant(np.arange(8, dtype=np.int32) % trainer.num_classes)
        trainer.sample_classes = lambda batch: classes[:batch]
    return trainer


@pytest.mark.parametrize("kind", ["dcgan", "acgan"])
def test_gan_step_under_xla(kind):
    real = _images(16, 64) * 2 - 1
    classes = np.arange(16, dtype=np.int32) % 3

    def build(xla):
        keras.utils.set_random_seed(0)
        return _fixed_noise(build_gan_trainer(kind, 3, _config(xla)))

    logs = _compare(build, _batches(real) if kind == "dcgan" else _batches(real, classes))
    assert logs["d_loss"] > 0 and logs["g_loss"] > 0


def test_diff_augment_compiles_under_xla():
    # its draws are random, so the step is checked to compile and run, not compared
    keras.utils.set_random_seed(0)
    trainer = build_gan_trainer("dcgan", 3, _config(True, "color,translation,cutout"))
    assert trainer.jit_compile is True
    logs = _fit(trainer, _batches(_images(16, 64) * 2 - 1))
    assert all(np.isfinite(v) for v in logs.values())


def test_disentanglement_steps_under_xla():
    images, targets = _images(16, 32), _targets(16, 4)

    def step1(xla):
        keras.utils.set_random_seed(0)
        return build_compiled_specified_classifier(4, _config(xla))

    _compare(step1, _batches(images, targets))

    def step2(xla):
        keras.utils.set_random_seed(0)
        trainer, _ = build_disentangle_trainer(step1(xla), 4, _config(xla))
        return trainer

    _compare(step2, _batches(images, targets))


def test_xla_draws_other_random_numbers_so_it_is_a_run_setting():
    seed = tf.constant([3, 7], tf.int32)

    def draw():
        return tf.random.stateless_uniform([64], seed=seed)

    plain = tf.function(draw)().numpy()
    compiled = tf.function(draw, jit_compile=True)().numpy()
    # If TensorFlow ever makes these agree, a run under XLA could share the
    # settings of one without it.
    assert not np.allclose(plain, compiled)
    assert "xla" not in classifier_config_settings(_config(False), 0)
    assert classifier_config_settings(_config(True), 0)["xla"] is True


def test_keras_turns_xla_off_for_a_layer_it_cannot_compile_and_the_build_refuses_that():
    class Uncompilable(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_jit = False

        def call(self, x):
            return x

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(Uncompilable()(inputs)))
    with pytest.warns(UserWarning, match="jit_compile"):
        model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    assert model.jit_compile is False
    # so the project's builders check it: a run recording xla: true is one
    with pytest.raises(ConfigError, match="compute.xla is on, but Keras compiled"):
        compiled_as_configured(model, _config(True))
    assert compiled_as_configured(model, _config(False)) is model


@pytest.fixture
def op_determinism():
    """TensorFlow's op determinism on: Keras then compiles every model without
    XLA (determinism is a switch a careful user may well turn on)."""
    from tensorflow.python.framework.config import (  # (not public)
        disable_op_determinism, is_op_determinism_enabled)

    before = is_op_determinism_enabled()  # (TF_DETERMINISTIC_OPS=1 turns it on)
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not before:
            disable_op_determinism()
        assert is_op_determinism_enabled() == before


@pytest.mark.parametrize("trainer", ["classifier", "gan", "disentangle"])
def test_a_refused_xla_build_leaves_no_started_run_behind(op_determinism, trainer, tmp_path):
    from keras_lesions.data.dataset import read_dataset
    from keras_lesions.runs.folder import is_started
    from keras_lesions.train.classifier import train_classifier
    from keras_lesions.train.disentangle import train_disentangle
    from keras_lesions.train.gan import train_gan

    from fault_driver import toy_dataset_file

    config = _config(True)
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match="compute.xla is on, but Keras compile"):
        if trainer == "classifier":
            train_classifier(_images(16, 16), _targets(16, 2), config, run_dir,
                             tensorboard=False)
        elif trainer == "gan":
            train_gan("dcgan", _images(8, 64), config, run_dir, class_names=["cyst"],
                      sample_grid_every=0)
        else:
            # step 2 is built after step 1 has trained: refused before the
            # folder is claimed (check_xla_available)
            path = toy_dataset_file(tmp_path)
            config = config_from_dict({**_config_dict(True), "disentangle": {
                "input_size": 16, "width": 0.0625, "code_size": 8, "classifier_units": 8,
                "batch_size": 8}})
            train_disentangle(read_dataset(path), path, 0, config, run_dir,
                              log=lambda message: None)
    # the retry without XLA needs no --restart: nothing was claimed
    assert not is_started(run_dir)
    assert not run_dir.exists() or not any(run_dir.iterdir())


def test_an_experiment_under_xla_where_keras_compiles_none_records_nothing(
        op_determinism, tmp_path, folded_dataset):
    from click.testing import CliRunner

    from keras_lesions_cli.main import cli

    config = tmp_path / "c.yaml"
    config.write_text(f"name: tiny\noutput_dir: {tmp_path / 'out'}\n"
                      f"data:\n  dataset: {folded_dataset}\ncompute:\n  xla: true\n")
    result = CliRunner().invoke(cli, ["experiment", str(config)])
    assert result.exit_code == 1
    assert "compute.xla is on, but Keras compiles nothing with XLA here" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    # no record whose settings say XLA: the retry without it is a new experiment
    assert not (tmp_path / "out" / "tiny" / "experiment.json").exists()
    config.write_text(config.read_text().replace("xla: true", "xla: false"))
    assert CliRunner().invoke(cli, ["experiment", str(config), "--list"]).exit_code == 0
