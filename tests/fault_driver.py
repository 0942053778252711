"""Run one tiny training in this process, optionally SIGKILLing it at a chosen
point: the subprocess half of ``test_faults.py``.

    python fault_driver.py TRAINER WORK RUN_DIR [--kill POINT]

TRAINER is ``classifier``, ``gan`` or ``disentangle``; WORK a folder for the
shared toy dataset; RUN_DIR the run folder. A run folder that holds a started
run is resumed. POINT is where the process kills itself with SIGKILL (no
cleanup of any kind can run):

    history:N     the N-th write of history.csv, once written (the epoch's
                  checkpoint not yet)
    record:N      inside the N-th checkpoint write: its files written, the
                  index not yet pointing at them
    sweep:N       inside the N-th checkpoint write: the index updated, the
                  previous epoch's files not yet removed
    network:N     the N-th trained network (.keras), written to its temporary
                  file, not yet renamed
    done          right after done.json is written, before the checkpoint is
                  removed
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _kill_on(count: int, call):
    """Wrap ``call`` to SIGKILL the process after its ``count``-th call."""
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        result = call(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == count:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return wrapper


def install(point: str) -> None:
    import tensorflow as tf

    import keras_lesions.io as io
    import keras_lesions.runs.checkpoint as checkpoint
    import keras_lesions.runs.folder as folder

    name, _, count = point.partition(":")
    count = int(count or 1)
    if name == "history":
        checkpoint.write_history = _kill_on(count, checkpoint.write_history)
    elif name == "record":
        manager = tf.train.CheckpointManager
        original = manager._record_state
        calls = {"n": 0}

        def record(self):  # the first of the two calls a save makes
            if not getattr(self, "_kl_swept", False):
                calls["n"] += 1
                if calls["n"] == count:
                    os.kill(os.getpid(), signal.SIGKILL)
            self._kl_swept = not getattr(self, "_kl_swept", False)
            return original(self)
        manager._record_state = record
    elif name == "sweep":
        sweep, calls = tf.train.CheckpointManager._sweep, {"n": 0}

        def killing_sweep(self):  # the index moved, the previous epoch's files still there
            calls["n"] += 1
            if calls["n"] == count:
                os.kill(os.getpid(), signal.SIGKILL)
            return sweep(self)
        tf.train.CheckpointManager._sweep = killing_sweep
    elif name == "network":
        replace = io.os.replace
        calls = {"n": 0}

        class _Os:  # io's view of os: replace() kills before a .keras rename
            def __getattr__(self, attr):
                return getattr(os, attr)

            @staticmethod
            def replace(src, dst):
                if str(dst).endswith(".keras"):
                    calls["n"] += 1
                    if calls["n"] == count:
                        os.kill(os.getpid(), signal.SIGKILL)
                return replace(src, dst)
        io.os = _Os()
    elif name == "done":
        write_json = folder.write_json

        def write(path, payload):
            result = write_json(path, payload)
            if Path(path).name == folder.DONE and Path(path).parent.name != "step1":
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        folder.write_json = write
    else:
        raise SystemExit(f"unknown kill point {point!r}")


def toy_dataset_file(work: Path) -> Path:
    """A 4-class toy dataset with 3 patient folds (built once, then reused)."""
    from conftest import make_toy_dataset

    from keras_lesions.data.dataset import write_dataset
    from keras_lesions.data.folds import make_patient_folds

    path = work / "toy.h5"
    if not path.exists():
        dataset = make_toy_dataset(n_classes=4, lesions_per_patient=(1, 2, 1, 2, 1, 1, 2, 1) * 2)
        dataset.input_size = 16
        dataset.folds = make_patient_folds(dataset.labels, dataset.patient_ids, k=3, seed=0)
        dataset.fold_k = 3
        write_dataset(dataset, path)
    return path


def train(trainer: str, work: Path, run_dir: Path) -> None:
    import numpy as np

    from keras_lesions.config import load_config
    from keras_lesions.runs.folder import finish_run, is_done, is_started, tidy_finished

    if is_done(run_dir):
        tidy_finished(run_dir)  # as a training command does on meeting a finished run
        return
    resume = is_started(run_dir)
    rng = np.random.default_rng(0)
    if trainer == "classifier":
        from keras_lesions.runs.predictions import predict_and_record
        from keras_lesions.train.classifier import train_classifier

        config = load_config(None, {"classifier.input_size": 16, "classifier.filters": [2, 4, 4],
                                    "classifier.dense_units": 8, "train.epochs": 4,
                                    "train.batch_size": 8, "train.learning_rate": 0.05})
        labels = rng.integers(0, 2, 40)
        images = rng.normal(0.5, 0.05, (40, 16, 16, 1)).astype(np.float32)
        images[labels == 1, 4:12, 4:12] += 0.4
        targets = np.eye(2, dtype=np.float32)[labels]
        model = train_classifier(images, targets, config, run_dir, resume=resume,
                                 run_info={"fold": 0}, tensorboard=False)
        accuracy = predict_and_record(model, run_dir, images[:8], labels[:8],
                                      np.array([f"L{i}" for i in range(8)]))
        finish_run(run_dir, {"test_accuracy": accuracy})
    elif trainer == "gan":
        from keras_lesions.train.gan import train_gan

        config = load_config(None, {"gan.width": 1 / 16, "gan.batch_size": 4, "gan.epochs": 3,
                                    "gan.diff_augment": "translation,cutout"})
        images = rng.uniform(0.2, 0.4, (10, 64, 64, 1)).astype(np.float32)
        images[:, 24:40, 24:40] += 0.5
        train_gan("dcgan", images, config, run_dir, class_names=["cyst"],
                  run_info={"fold": 0, "class": "cyst"}, resume=resume, sample_grid_every=0)
    elif trainer == "disentangle":
        from keras_lesions.data.dataset import read_dataset
        from keras_lesions.train.disentangle import train_disentangle

        path = toy_dataset_file(work)
        config = load_config(None, {
            "disentangle.input_size": 16, "disentangle.width": 1 / 16,
            "disentangle.code_size": 8, "disentangle.classifier_units": 8,
            "disentangle.repeats": 2, "disentangle.batch_size": 8,
            "disentangle.classifier_epochs": 2, "disentangle.epochs": 3})
        train_disentangle(read_dataset(path), path, 0, config, run_dir, resume=resume,
                          log=lambda message: None)
    else:
        raise SystemExit(f"unknown trainer {trainer!r}")


def main(argv: list[str]) -> None:
    from keras_lesions.runtime import quiet_tensorflow_startup

    quiet_tensorflow_startup()
    trainer, work, run_dir, *rest = argv
    if rest:
        assert rest[0] == "--kill", rest
        install(rest[1])
    train(trainer, Path(work), Path(run_dir))


if __name__ == "__main__":
    main(sys.argv[1:])
