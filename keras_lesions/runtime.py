"""TensorFlow's process settings for one run: threads and GPU memory.

Called at the start of a process, before TensorFlow runs anything: both
settings are fixed once TensorFlow is initialised.
"""
from __future__ import annotations


def configure_tensorflow(threads: int | None = None, memory_growth: bool = True) -> list[str]:
    """Set TensorFlow's CPU threads and let every GPU's memory grow on demand.

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
    if memory_growth:
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
                done.append(f"memory growth on {gpu.name}")
            except RuntimeError:
                done.append(f"memory growth on {gpu.name} not set (already initialised)")
    return done
