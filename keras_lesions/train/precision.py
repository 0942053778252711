"""Mixed precision (``compute.precision``): the Keras dtype policy the networks
are built under, and the loss scaling float16 needs.

On a GPU with tensor cores (or a TPU) ``mixed_float16`` / ``mixed_bfloat16``
compute the layers in 16 bits and keep the weights in float32; on a CPU both
run and are slower than float32 (``bench/run.py`` measures it). Every network's
output layer computes in float32 (the builders say ``dtype="float32"``), so
losses, probabilities and images leave the networks in float32.

Keras wraps only a model's own ``optimizer`` in a ``LossScaleOptimizer``
(``compile`` does it for the classifiers); the GAN and disentanglement trainers
take one optimizer per network, so :func:`scaled_optimizer` wraps each, and
their ``train_step``\\ s take gradients of ``optimizer.scale_loss(loss)``, which
is the loss itself for an unwrapped optimizer. ``LossScaleOptimizer.apply``
divides the gradients by the scale and skips a step whose gradients overflow.

Keras is imported where it is used: run settings are computed without TensorFlow.
"""
from __future__ import annotations

import contextlib
import warnings

from keras_lesions.config import ConfigError, ExperimentConfig


@contextlib.contextmanager
def precision_policy(precision: str):
    """Build networks under ``precision`` (a Keras dtype policy name); the
    global policy is restored afterwards, so nothing else is affected."""
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def scaled_optimizer(optimizer, precision: str):
    """``optimizer`` with dynamic loss scaling under ``mixed_float16`` (whose
    small gradients underflow in float16); unchanged otherwise (bfloat16 has
    float32's exponent range)."""
    import keras

    if precision == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def compute_settings(config: ExperimentConfig) -> dict:
    """The run-settings entries of the ``compute`` section that differ from
    the defaults (a mixed precision, XLA on): empty for float32 without XLA, so
    that runs made before the switches existed keep their settings (and still
    resume). Both change a run's figures, so a resume must match them."""
    return config.compute.changed()


def compiled_as_configured(model, config: ExperimentConfig):
    """``model`` once compiled, checked to run as ``compute.xla`` says.

    Keras turns ``jit_compile=True`` off by itself (with a warning) when a
    layer cannot be compiled, and whenever TensorFlow's op determinism is on;
    the run's settings would then record an XLA run that is not one. The
    trainers build before they claim a run folder, so a refusal leaves none.

    Raises:
        ConfigError: ``compute.xla`` is on and Keras compiled without XLA.
    """
    if config.compute.xla and not model.jit_compile:
        raise ConfigError(f"{config.name}: compute.xla is on, but Keras compiled {model.name} "
                          f"without XLA (a layer it cannot compile, or TensorFlow's op "
                          f"determinism on); turn compute.xla off")
    return model


def check_xla_available(config: ExperimentConfig) -> None:
    """Refuse ``compute.xla`` where Keras compiles no network with XLA at all
    (TensorFlow's op determinism on, a platform without XLA), found on a
    one-layer model before an experiment folder records settings that say
    XLA. A network with a layer XLA cannot compile is refused when it is
    built (:func:`compiled_as_configured`).

    Raises:
        ConfigError: ``compute.xla`` is on and Keras would compile without it.
    """
    if not config.compute.xla:
        return
    import keras

    inputs = keras.Input((1,))
    probe = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras' own warning: the error below says it
        probe.compile(optimizer="sgd", loss="mse", jit_compile=True)
    if not probe.jit_compile:
        raise ConfigError(f"{config.name}: compute.xla is on, but Keras compiles nothing with "
                          f"XLA here (TensorFlow's op determinism is on, or this platform has "
                          f"no XLA); turn compute.xla off")
