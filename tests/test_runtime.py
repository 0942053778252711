"""runtime.configure_tensorflow on a machine without a GPU: memory growth, threads.

Memory growth is what lets ``--jobs N`` runs share one GPU. TensorFlow refuses
it on a CPU device, so the GPUs TensorFlow would list are stood in for here,
and its own ``set_memory_growth`` is spied on: every listed GPU gets growth,
and a GPU TensorFlow has already initialised is reported, not raised.
"""
from __future__ import annotations

import pytest
import tensorflow as tf

from keras_lesions.runtime import configure_tensorflow


class _Device:
    def __init__(self, name):
        self.name, self.device_type = name, "GPU"


@pytest.fixture
def two_gpus(monkeypatch):
    gpus = [_Device("/physical_device:GPU:0"), _Device("/physical_device:GPU:1")]
    grown = []

    def set_memory_growth(device, enable):
        if device.name.endswith(":1"):
            raise RuntimeError("Physical devices cannot be modified after being initialized")
        grown.append((device.name, enable))

    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", set_memory_growth)
    return grown


def test_memory_growth_is_turned_on_for_every_gpu_and_a_refusal_is_reported(two_gpus):
    done = configure_tensorflow(memory_growth=True)
    assert two_gpus == [("/physical_device:GPU:0", True)]
    assert done == ["memory growth on /physical_device:GPU:0",
                    "memory growth on /physical_device:GPU:1 not set (already initialised)"]


def test_memory_growth_can_be_left_off(two_gpus):
    assert configure_tensorflow(memory_growth=False) == []
    assert two_gpus == []


def test_tensorflow_refuses_memory_growth_on_a_cpu_so_the_gpus_are_stood_in_for():
    # if this ever passes silently, the test above could use a real device
    with pytest.raises(ValueError):
        tf.config.experimental.set_memory_growth(tf.config.list_physical_devices("CPU")[0], True)


def test_the_thread_budget_holds_for_opencv_too():
    import cv2

    from keras_lesions.runtime import environment

    before = cv2.getNumThreads()
    try:
        configure_tensorflow(threads=1, memory_growth=False)
        assert cv2.getNumThreads() == 1
        assert environment()["opencv_threads"] == 1 and environment()["opencv"] == cv2.__version__
    finally:
        cv2.setNumThreads(before)
