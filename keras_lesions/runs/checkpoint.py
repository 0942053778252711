"""Resumable training: one per-epoch checkpoint for every trainer.

:func:`fit_resumably` is the one block every training shares: restore the
last epoch checkpoint (networks, optimizers, seed state, epoch count), fit
the remaining epochs writing ``history.csv`` and the checkpoint after each,
and return the history. :func:`save_networks` then writes the trained
networks atomically, and ``runs.folder.finish_run`` marks the run done.

The checkpoint is a ``tf.train.Checkpoint`` managed by a
``CheckpointManager``: it writes an epoch's files under a new name, points
its index at them with an atomic rename, then removes the previous epoch's,
so a crash at any moment leaves the last complete checkpoint readable. A
resumed run continues with the very state an uninterrupted one had, and as
long as its data depend on (seed, epoch) only, it ends with the same weights.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import keras
import tensorflow as tf

from keras_lesions.io import atomic_path
from keras_lesions.runs.folder import (
    CHECKPOINT, RESTART_HINT, RunError, check_run_folder, is_done, is_started)
from keras_lesions.runs.history import HISTORY, read_history, write_history


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch: the history row (atomically), then the checkpoint.

    The history is written first and truncated to the checkpoint's epoch on
    resume, so a run stopped between the two writes repeats that epoch and
    still lists each epoch once. Put it after every callback that adds to the
    logs (validation).
    """

    def __init__(self, manager: tf.train.CheckpointManager, epochs_done: tf.Variable,
                 history_path: Path, rows: list[dict], columns: Sequence[str]):
        super().__init__()
        self.manager = manager
        self.epochs_done = epochs_done
        self.history_path = history_path
        self.rows = rows
        self.columns = list(columns)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        missing = [k for k in self.columns[1:] if k not in logs]
        if missing:
            raise KeyError(f"epoch logs lack {missing}; have {sorted(logs)}")
        self.rows.append({"epoch": epoch, **{k: float(logs[k]) for k in self.columns[1:]}})
        write_history(self.history_path, self.rows, self.columns)
        self.epochs_done.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)


# What TensorFlow raises for a damaged checkpoint (a truncated data file reads
# short; an emptied index is an invalid state; a wrong one does not fit).
_DAMAGED = (AssertionError, ValueError, IndexError, OSError, tf.errors.OpError)


def _manager(state: dict, epochs_done: tf.Variable, run_dir: Path) -> tf.train.CheckpointManager:
    directory = run_dir / CHECKPOINT
    try:
        return tf.train.CheckpointManager(
            tf.train.Checkpoint(**with_seed_states(state), epoch=epochs_done), str(directory),
            max_to_keep=1, checkpoint_name="epoch")
    except _DAMAGED as exc:  # its index ("checkpoint") is read here
        raise RunError(f"this checkpoint index cannot be read ({type(exc).__name__}); "
                       f"{RESTART_HINT}", directory / "checkpoint") from None


def check_resumable(run_dir: str | os.PathLike, *, resume: bool = False, restart: bool = False,
                    settings: dict | None = None) -> None:
    """Everything about a run folder that would stop its training, checked
    before a command writes anything (``runs.folder.check_run_folder``, then,
    for a run to resume, its history and its last checkpoint: every tensor of
    it read once).

    Raises:
        RunError: naming the damaged file and offering ``--restart``.
    """
    run_dir = Path(run_dir)
    check_run_folder(run_dir, resume=resume, restart=restart, settings=settings)
    if restart or not resume or is_done(run_dir) or not is_started(run_dir):
        return
    read_history(run_dir / HISTORY)
    directory = run_dir / CHECKPOINT
    if not directory.is_dir():
        return
    try:
        # The index's own word, not latest_checkpoint's: that one passes over an
        # index naming missing files, which the restore would then fail on.
        state = tf.train.get_checkpoint_state(str(directory))
    except _DAMAGED as exc:
        raise RunError(f"this checkpoint index cannot be read ({type(exc).__name__}); "
                       f"{RESTART_HINT}", directory / "checkpoint") from None
    if state is None or not state.model_checkpoint_path:
        return
    latest = state.model_checkpoint_path
    try:
        reader = tf.train.load_checkpoint(latest)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except _DAMAGED as exc:
        raise RunError(f"this checkpoint cannot be read ({type(exc).__name__}); {RESTART_HINT}",
                       latest) from None


def restore_latest(manager: tf.train.CheckpointManager, run_dir: Path) -> None:
    """Restore the last epoch checkpoint, if any, into freshly built state.

    Raises:
        RunError: the checkpoint does not fit that state (made with other
            settings) or cannot be read.
    """
    if not manager.latest_checkpoint:
        return
    try:
        manager.checkpoint.restore(manager.latest_checkpoint).assert_consumed()
    except _DAMAGED as exc:
        raise RunError(f"this checkpoint cannot be read or does not fit the networks of the "
                       f"config ({type(exc).__name__}); {RESTART_HINT}",
                       manager.latest_checkpoint) from None


def with_seed_states(state: dict) -> dict:
    """``state`` plus the seed-generator states of its networks (dropout's, say).

    ``tf.train.Checkpoint`` of a Keras 3 model tracks its weights but not the
    states of the ``SeedGenerator``s inside its layers: without them a resumed
    run would draw other dropout masks than an uninterrupted one.
    """
    extra = {}
    for name, item in state.items():
        if isinstance(item, keras.Model):
            seeds = [v for v in item.variables if v.path.endswith("seed_generator_state")]
            extra.update({f"{name}_seed_state_{i}": v for i, v in enumerate(seeds)})
    return {**state, **extra}


def fit_resumably(
    model: keras.Model,
    run_dir: str | Path,
    state: dict,
    *,
    epochs: int,
    make_data: Callable[[int], tuple[tf.data.Dataset, int]],
    columns: Sequence[str],
    callbacks: Sequence[keras.callbacks.Callback] = (),
    tensorboard: bool = True,
    progress: Callable[[int, int], None] | None = None,
    verbose: int | str = 0,
) -> list[dict]:
    """Fit ``model`` for the epochs a run still lacks, checkpointing every epoch.

    Args:
        model: a compiled model or trainer; its optimizers must be built
            (their state must exist before a checkpoint is restored into it).
        run_dir: the run folder; the checkpoint goes to ``RUN/checkpoint/``.
        state: everything a resumed run needs, by name: networks, optimizers,
            seed-generator states (``tf.train.Checkpoint`` trackables).
        epochs: the run's total epochs.
        make_data: ``make_data(first_epoch) -> (dataset, steps_per_epoch)``,
            the batches of every epoch from ``first_epoch`` on; they must
            depend on (seed, epoch) only for a resumed run to see the batches
            an uninterrupted one would.
        columns: ``["epoch", metric names ...]`` of history.csv; every name
            must be in the epoch logs.
        callbacks: run before the checkpoint, in this order (validation that
            adds to the logs comes first).
        tensorboard: also log to ``RUN/tensorboard/``.
        progress: ``progress(epochs done, epochs)`` at the start and after
            each epoch's checkpoint.
        verbose: Keras ``fit`` verbosity.

    Returns:
        The history rows, one per epoch of the whole run.

    Raises:
        RunError: a checkpoint or history that does not fit or cannot be read.
    """
    run_dir = Path(run_dir)
    epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
    manager = _manager(state, epochs_done, run_dir)
    restore_latest(manager, run_dir)
    first_epoch = int(epochs_done.numpy())
    rows = read_history(run_dir / HISTORY, first_epoch)
    if progress is not None:
        progress(first_epoch, epochs)
    if first_epoch < epochs:
        data, steps = make_data(first_epoch)
        every = list(callbacks)
        if tensorboard:
            every.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard"),
                                                     write_graph=False, profile_batch=0))
        every.append(EpochCheckpoint(manager, epochs_done, run_dir / HISTORY, rows, columns))
        if progress is not None:
            every.append(keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: progress(epoch + 1, epochs)))
        model.fit(data, epochs=epochs, initial_epoch=first_epoch, steps_per_epoch=steps,
                  callbacks=every, verbose=verbose,
                  shuffle=False)  # make_data orders the batches, seeded per epoch
    return rows


def save_networks(run_dir: str | Path, networks: dict[str, keras.Model]) -> dict[str, Path]:
    """Write each network as ``RUN/<name>.keras``, atomically (safe-mode loadable)."""
    paths = {}
    for name, network in networks.items():
        paths[name] = Path(run_dir) / f"{name}.keras"
        with atomic_path(paths[name], suffix=".keras") as tmp:
            network.save(tmp)
    return paths


def load_network(run_dir: str | Path, name: str) -> keras.Model:
    """Load ``RUN/<name>.keras`` in safe mode (no code from the file).

    Raises:
        RunError: the file is missing or damaged.
    """
    path = Path(run_dir) / f"{name}.keras"
    if not path.is_file():
        raise RunError(f"holds no {path.name}; is the run finished?", run_dir)
    # Custom layers register themselves with Keras when their module is imported.
    import keras_lesions.models  # noqa: F401

    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a damaged archive
        text = str(exc)
        if "safe_mode" in text or "Lambda" in text:
            why = ("it holds Python code (a Lambda layer or function), which safe mode "
                   "refuses to run; keras-lesions never writes such networks")
        else:
            why = f"damaged or not a Keras archive ({type(exc).__name__})"
        raise RunError(f"cannot be loaded: {why}", path) from None
