"""Shared checks for every network and trainer of the package (after keras-hub's
``run_layer_test`` / ``run_model_saving_test``).

:func:`check_model` takes one built network and checks, on a tiny batch:

1. a forward pass in inference mode gives the expected output shape(s), finite
   values inside ``value_range``;
2. ``get_config()`` → ``from_config()`` rebuilds the same network: same config,
   same layer names and types, same parameter count, and with the original
   weights copied in, the same outputs;
3. optionally one ``compile`` + ``train_on_batch`` step: no layer frozen, a
   finite loss, and every trainable variable moved;
4. ``.keras`` save → ``keras.saving.load_model(safe_mode=True)`` gives the same
   weights and the same inference outputs (after the training step, so the
   moved weights and batch-norm statistics are what travels).

:func:`check_trainer` runs one ``fit`` step of a ``keras.Model`` trainer that
owns several networks and checks its metric keys, which networks moved and
which stayed put, and that each network saves and reloads on its own (Keras 3
saves the networks of a custom trainer separately, not the trainer).

Everything compares in inference mode (``training=False``): dropout and batch
norm's batch statistics would make two calls differ otherwise.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

# Reloaded and rebuilt networks run the very same ops on the same weights:
# anything beyond float rounding is a real difference.
RTOL = 1e-6
ATOL = 1e-6


# --------------------------------------------------------------------------- small helpers


def to_numpy(structure):
    """A model's output (tensor, list or dict of tensors) as numpy arrays."""
    return keras.tree.map_structure(lambda t: np.asarray(keras.ops.convert_to_numpy(t)),
                                    structure)


def named(structure) -> dict[str, Any]:
    """{name: leaf}: dict keys, list positions, or "output" for a single leaf."""
    if isinstance(structure, Mapping):
        return {str(k): v for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return {str(i): v for i, v in enumerate(structure)}
    return {"output": structure}


def _is_shape(spec) -> bool:
    return isinstance(spec, (tuple, list)) and all(
        isinstance(d, (int, np.integer)) or d is None for d in spec)


def _named_specs(spec, outputs: dict[str, Any], what: str) -> dict[str, Any]:
    """Broadcast one spec (a shape, a range) to every output, or name one per output."""
    if isinstance(spec, Mapping) or (isinstance(spec, (list, tuple)) and not _is_shape(spec)):
        specs = named(spec)
        assert set(specs) == set(outputs), \
            f"{what}: outputs are {sorted(outputs)}, the expectation names {sorted(specs)}"
        return specs
    return {k: spec for k in outputs}


def one_hot(labels, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[np.asarray(labels)]


def random_inputs(model: keras.Model, batch: int = 2, seed: int = 0):
    """Inputs fitting ``model.inputs``: floats U[0, 1); integer inputs cycle through
    the ids the model's smallest Embedding accepts (0 without an Embedding)."""
    rng = np.random.default_rng(seed)
    ids = min([layer.input_dim for layer in _all_layers(model)
               if isinstance(layer, keras.layers.Embedding)], default=1)
    arrays = []
    for tensor in model.inputs:
        shape = (batch,) + tuple(tensor.shape[1:])
        if "int" in str(tensor.dtype):
            arrays.append((np.arange(int(np.prod(shape))) % ids).reshape(shape)
                          .astype(str(tensor.dtype)))
        else:
            arrays.append(rng.uniform(0, 1, shape).astype(str(tensor.dtype)))
    return arrays[0] if len(arrays) == 1 else arrays


def _all_layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def structure_of(model: keras.Model) -> list[tuple[str, str]]:
    """(name, class) of every layer, nested models' layers included."""
    return [(layer.name, type(layer).__name__) for layer in _all_layers(model)]


def frozen_layers(model: keras.Model) -> list[str]:
    """Layers (nested ones included) set ``trainable = False``; their weights
    drop out of ``trainable_variables``, so a check over those alone misses them."""
    return [layer.name for layer in [model, *_all_layers(model)] if not layer.trainable]


def weight_values(variables) -> dict[str, np.ndarray]:
    """{variable path: a copy of its value}; paths are unique within a model."""
    values = {v.path: np.array(keras.ops.convert_to_numpy(v)) for v in variables}
    assert len(values) == len(variables), "variable paths are not unique"
    return values


def assert_same_outputs(actual, expected, what: str) -> None:
    actual, expected = named(to_numpy(actual)), named(to_numpy(expected))
    assert set(actual) == set(expected), f"{what}: outputs {sorted(actual)} ≠ {sorted(expected)}"
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=RTOL, atol=ATOL,
                                   err_msg=f"{what}: output {key!r}")


def assert_same_weights(actual: keras.Model, expected: keras.Model, what: str) -> None:
    a, b = actual.get_weights(), expected.get_weights()
    assert len(a) == len(b), f"{what}: {len(a)} weight arrays, expected {len(b)}"
    for i, (x, y) in enumerate(zip(a, b)):
        np.testing.assert_array_equal(x, y, err_msg=f"{what}: weight array {i}")


def assert_saves_and_reloads(model: keras.Model, inputs, tmp_path, what: str = "") -> keras.Model:
    """``.keras`` save, safe-mode reload: same class, structure, weights and
    inference outputs. Returns the reloaded model."""
    what = what or model.name
    path = Path(tmp_path) / f"{model.name}.keras"
    assert not path.exists(), f"{path} exists already: give each network its own name"
    model.save(path)
    # safe_mode=True: no lambdas or other code from the file; custom layers
    # must be registered (keras.saving.register_keras_serializable).
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model), f"{what}: reloaded as {type(loaded).__name__}"
    assert structure_of(loaded) == structure_of(model), f"{what}: reloaded layers differ"
    assert_same_weights(loaded, model, f"{what} reloaded")
    assert_same_outputs(loaded(inputs, training=False), model(inputs, training=False),
                        f"{what} reloaded")
    return loaded


# --------------------------------------------------------------------------- networks


def check_model(model: keras.Model, inputs, *, output_shape, value_range=None, tmp_path,
                train_step: bool = True, loss="mse", targets=None,
                learning_rate: float = 1e-2, custom_objects: dict | None = None) -> dict:
    """Check one network end to end (see the module docstring).

    Args:
        model: a freshly built network (it gets compiled here if ``train_step``).
        inputs: one small batch, as the model is called (array, list or dict).
        output_shape: the full output shape, batch included, e.g. ``(2, 3)``;
            a dict or list of shapes for a model with several outputs.
        value_range: ``(low, high)``, inclusive, for every output (``None`` in
            either place for no bound), or a dict/list of ranges per output;
            ``None`` checks finiteness only.
        tmp_path: a folder for the ``.keras`` file.
        train_step: also compile and run one ``train_on_batch``.
        loss: the compile loss (a dict per output for a dict-output model).
        targets: targets of the training step; by default uniform random in
            ``value_range`` (or N(0, 1)) in the output shapes.
        learning_rate: Adam's, for the training step.
        custom_objects: passed to ``from_config`` (registered layers need none).

    Returns:
        ``{"outputs": numpy outputs before training, "logs": the step's logs,
        "reloaded": the model loaded back from .keras}``.
    """
    what = model.name

    # 1. Forward pass in inference mode: shapes, finiteness, range.
    outputs = to_numpy(model(inputs, training=False))
    by_name = named(outputs)
    shapes = _named_specs(output_shape, by_name, f"{what} output_shape")
    ranges = _named_specs(value_range, by_name, f"{what} value_range")
    for key, value in by_name.items():
        assert value.shape == tuple(shapes[key]), \
            f"{what} output {key!r}: shape {value.shape}, expected {tuple(shapes[key])}"
        assert np.isfinite(value).all(), f"{what} output {key!r} is not finite"
        if ranges[key] is not None:
            low, high = ranges[key]
            if low is not None:
                assert value.min() >= low, f"{what} output {key!r}: min {value.min()} < {low}"
            if high is not None:
                assert value.max() <= high, f"{what} output {key!r}: max {value.max()} > {high}"

    # 2. get_config → from_config: the same network, weights aside.
    config = model.get_config()
    # A copy: Functional.from_config pops keys off the dict it is given.
    rebuilt = model.__class__.from_config(copy.deepcopy(config), custom_objects=custom_objects)
    assert type(rebuilt) is type(model), f"{what}: from_config built a {type(rebuilt).__name__}"
    assert rebuilt.get_config() == config, f"{what}: from_config(get_config()) changed the config"
    assert structure_of(rebuilt) == structure_of(model), f"{what}: rebuilt layers differ"
    assert rebuilt.count_params() == model.count_params(), f"{what}: parameter count differs"
    rebuilt.set_weights(model.get_weights())  # same weight order and shapes, or this raises
    assert_same_outputs(rebuilt(inputs, training=False), outputs, f"{what} from_config")

    # 3. One training step moves every trainable variable, with a finite loss.
    logs = None
    if train_step:
        assert not frozen_layers(model), f"{what}: frozen layers {frozen_layers(model)}"
        variables = model.trainable_variables
        assert variables, f"{what} has no trainable variables"
        before = weight_values(variables)
        if targets is None:
            targets = _random_targets(outputs, ranges)
        # Eagerly: Keras' own train_step, minus seconds of tf.function tracing
        # per network (the trainers below do run in graph mode).
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss,
                      run_eagerly=True)
        logs = {k: float(v) for k, v in
                model.train_on_batch(inputs, targets, return_dict=True).items()}
        assert "loss" in logs and all(np.isfinite(v) for v in logs.values()), \
            f"{what} training step logs {logs}"
        after = weight_values(variables)
        unchanged = [p for p in before if np.array_equal(before[p], after[p])]
        assert not unchanged, f"{what}: a training step left {unchanged} unchanged"

    # 4. .keras save and safe-mode reload: same weights, same inference outputs.
    reloaded = assert_saves_and_reloads(model, inputs, tmp_path, what)
    return {"outputs": outputs, "logs": logs, "reloaded": reloaded}


def _random_targets(outputs, ranges: dict):
    rng = np.random.default_rng(1)

    def draw(value, value_range):
        low, high = value_range if value_range is not None else (None, None)
        if low is not None and high is not None and np.isfinite([low, high]).all():
            return rng.uniform(low, high, value.shape).astype(np.float32)
        return rng.normal(0, 1, value.shape).astype(np.float32)

    by_name = named(outputs)
    drawn = {k: draw(v, ranges[k]) for k, v in by_name.items()}
    if isinstance(outputs, Mapping):
        return drawn
    if isinstance(outputs, (list, tuple)):
        return [drawn[str(i)] for i in range(len(outputs))]
    return drawn["output"]


# --------------------------------------------------------------------------- trainers


def check_trainer(trainer: keras.Model, data, *, expected_metrics,
                  networks_that_change: Sequence[keras.Model],
                  networks_that_stay: Sequence[keras.Model] = (), tmp_path,
                  probe_inputs: Mapping[str, Any] | None = None) -> dict[str, float]:
    """One ``fit`` step of a compiled multi-network trainer.

    Args:
        trainer: a compiled ``keras.Model`` with its own ``train_step``.
        data: one batch as ``train_step`` receives it (an array or an (x, y)
            tuple), or a ``tf.data.Dataset`` of such batches.
        expected_metrics: the exact metric keys of the step (each key is its
            tracker's name).
        networks_that_change: no layer frozen, and every trainable variable of
            each must move.
        networks_that_stay: must not change at all (all variables, batch-norm
            statistics included).
        tmp_path: a folder for the networks' ``.keras`` files.
        probe_inputs: {network name: inputs} for the reload comparison;
            :func:`random_inputs` for networks not named.

    Returns:
        The step's metrics {name: float}.
    """
    expected_metrics = set(expected_metrics)
    networks = list(networks_that_change) + list(networks_that_stay)
    names = [n.name for n in networks]
    assert len(set(names)) == len(names), f"network names must differ: {names}"
    for network in networks_that_change:
        assert not frozen_layers(network), \
            f"{network.name} should train but has frozen layers {frozen_layers(network)}"
        assert network.trainable_variables, f"{network.name} has no trainable variables"
    before_change = {n.name: weight_values(n.trainable_variables) for n in networks_that_change}
    before_stay = {n.name: weight_values(n.variables) for n in networks_that_stay}

    if not isinstance(data, tf.data.Dataset):
        data = tf.data.Dataset.from_tensors(data)
    # Graph mode, as the training code runs it: train_step must trace.
    history = trainer.fit(data.repeat(), epochs=1, steps_per_epoch=1, shuffle=False,
                          verbose=0).history
    assert set(history) == expected_metrics, \
        f"metrics {sorted(history)}, expected {sorted(expected_metrics)}"
    assert {m.name for m in trainer.metrics} == expected_metrics, \
        f"trackers {[m.name for m in trainer.metrics]}"
    logs = {k: float(v[-1]) for k, v in history.items()}
    assert all(len(v) == 1 for v in history.values()), "fit ran more than one epoch"
    assert all(np.isfinite(v) for v in logs.values()), f"non-finite metrics {logs}"

    for network in networks_that_change:
        after = weight_values(network.trainable_variables)
        unchanged = [p for p, v in before_change[network.name].items()
                     if np.array_equal(v, after[p])]
        assert not unchanged, f"{network.name}: the step left {unchanged} unchanged"
    for network in networks_that_stay:
        after = weight_values(network.variables)
        moved = [p for p, v in before_stay[network.name].items() if not np.array_equal(v, after[p])]
        assert not moved, f"{network.name} must not change, but {moved} did"

    for network in networks:
        inputs = (probe_inputs or {}).get(network.name)
        if inputs is None:
            inputs = random_inputs(network)
        assert_saves_and_reloads(network, inputs, tmp_path)
    return logs
