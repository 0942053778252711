"""TensorFlow's process settings: threads, GPU memory, quiet start-up, SIGTERM.

Called at the start of a process, before TensorFlow runs anything: both
settings are fixed once TensorFlow is initialised.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import signal
import sys
import tempfile
import threading


def configure_tensorflow(threads: int | None = None, memory_growth: bool = True) -> list[str]:
    """CPU threads for TensorFlow and OpenCV; memory growth on every GPU.

    Memory growth is what lets several runs share one GPU (``kl experiment
    --jobs N``, or Ray tasks with a fraction of a GPU): without it the first
    process takes the whole device.

    Args:
        threads: intra-op threads (the run's CPU budget); None leaves
            TensorFlow's default (all cores).
        memory_growth: turn on memory growth on every visible GPU.

    Returns:
        What was set, one phrase each, for the log; settings that could not
        be applied because TensorFlow was already initialised in this process
        are named as such.
    """
    import tensorflow as tf

    done = []
    try:
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(min(2, int(threads)))
            done.append(f"{threads} CPU threads")
    except RuntimeError:  # TensorFlow refuses once its context exists
        done.append("CPU threads left as they were (TensorFlow already initialised)")
    if threads:
        # OpenCV draws the online augmentation inside tf.data's map, with a
        # thread pool of its own: the run's budget holds for it too
        import cv2

        cv2.setNumThreads(int(threads))
    if memory_growth:
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
                done.append(f"memory growth on {gpu.name}")
            except RuntimeError:
                done.append(f"memory growth on {gpu.name} not set (already initialised)")
    return done


def environment() -> dict:
    """What besides the settings decides a run's floating-point result: the
    package versions and TensorFlow's thread counts (a run on 1 thread and
    the same run on 2 differ in their sums' order, hence in every figure).
    Recorded in run.json, never compared on resume. TensorFlow is not
    imported for this: where it is not loaded yet, its threads are unknown."""
    import platform

    import numpy as np

    from keras_lesions._version import __version__

    found = {"keras_lesions": __version__, "python": platform.python_version(),
             "numpy": np.__version__, "cpu_count": os.cpu_count()}
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        found["tensorflow"] = tf.__version__
        found["intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
        found["inter_op_threads"] = tf.config.threading.get_inter_op_parallelism_threads()
    keras = sys.modules.get("keras")
    if keras is not None:
        found["keras"] = keras.__version__
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:  # its warp draws the online augmentation
        found["opencv"] = cv2.__version__
        found["opencv_threads"] = cv2.getNumThreads()
    return found


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Imports ``tensorflow`` with the process's stderr (fd 2) set aside.

    TensorFlow's C++ libraries write start-up notes (oneDNN, CUDA drivers,
    CPU features, "absl::InitializeLog") straight to fd 2 while they load,
    before ``TF_CPP_MIN_LOG_LEVEL`` is read, so no setting silences them.
    They are kept in a temporary file and shown only if the import fails.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                self.loader.exec_module(module)
            except Exception:  # a broken install: what TensorFlow said is the clue
                os.dup2(saved, 2)
                captured.seek(0)
                sys.stderr.write(captured.read().decode(errors="replace"))
                raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)

    def __getattr__(self, name):  # anything else a loader offers (get_resource_reader ...)
        return getattr(self.loader, name)


def quiet_tensorflow_startup() -> None:
    """Silence TensorFlow's start-up chatter for a command-line process, before
    TensorFlow is imported: a bad input then gives exactly one line.

    Sets ``TF_CPP_MIN_LOG_LEVEL=3`` (C++ log lines such as "failed call to
    cuInit" on a machine without a GPU) unless the user set it, sets aside
    what TensorFlow's libraries print while loading, and keeps TensorFlow's
    Python logger to critical messages. Errors still arrive
    as Python exceptions; set ``TF_CPP_MIN_LOG_LEVEL=0`` to see TensorFlow's
    own log. No effect once TensorFlow is imported.
    """
    user_level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if user_level is not None and user_level.strip() in ("0", "1"):
        return  # the user asked for TensorFlow's log
    # TensorFlow's Python logger too ("Couldn't match files for checkpoint"
    # precedes the exception that carries the same news).
    logging.getLogger("tensorflow").setLevel(logging.CRITICAL)
    if "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an interruption so every ``finally`` and every
    temporary-file cleanup runs as for Ctrl-C."""


def raise_on_sigterm() -> None:
    """Turn SIGTERM into :class:`Terminated` in this process's main thread.

    Python's default for SIGTERM is to die at once, leaving the temporary of a
    file being written; as an exception, the write is undone instead.
    """
    def handler(signum, frame):
        raise Terminated()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
