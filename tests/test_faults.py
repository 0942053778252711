"""Fault injection: every trainer killed with SIGKILL at every kind of point,
then resumed, ends with exactly the networks of an uninterrupted run.

Each trainer runs in subprocesses (``fault_driver.py``) that kill themselves
with SIGKILL, which nothing can catch or clean up after, at a chain of points
(one per process): after an epoch's history row but before its checkpoint,
inside a checkpoint write (files written, index not updated; index updated,
old files not removed), before a trained network's rename, and after
done.json but before the checkpoint's removal. The next process resumes. The
finished run must equal the uninterrupted one bit for bit (weights, history,
predictions) and hold no temporary file and no checkpoint.
"""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

DRIVER = Path(__file__).with_name("fault_driver.py")

# The kill points of each chain, in order; the last process runs to the end.
CHAINS = {
    "classifier": ["history:2", "record:1", "sweep:1", "network:1", "done"],
    # GAN: 3 epochs; generator and discriminator are two networks.
    "gan": ["record:2", "history:1", "network:2", "done"],
    # Disentangle: step 1 (the E_C classifier, 2 epochs), then step 2 (3 epochs).
    "disentangle": ["record:1", "history:2", "sweep:2", "network:1", "done"],
}
NETWORKS = {"classifier": ["model.keras"],
            "gan": ["generator.keras", "discriminator.keras"],
            "disentangle": ["encoder_c.keras", "encoder_r.keras", "decoder.keras",
                            "step1/model.keras"]}


def drive(trainer: str, work: Path, run_dir: Path, kill: str | None = None) -> int:
    command = [sys.executable, str(DRIVER), trainer, str(work), str(run_dir)]
    if kill:
        command += ["--kill", kill]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"{trainer} {kill}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return done.returncode


def weights(path: Path) -> dict[str, np.ndarray]:
    """Every array in a .keras file's weights, by HDF5 path."""
    with zipfile.ZipFile(path) as archive:
        payload = archive.read("model.weights.h5")
    arrays = {}
    with h5py.File(io.BytesIO(payload), "r") as h5:
        h5.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                      if isinstance(item, h5py.Dataset) else None)
    return arrays


def leftovers(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
                  if ".tmp" in p.name or p.name in ("checkpoint", ".training.json"))


@pytest.mark.slow
@pytest.mark.parametrize("trainer", sorted(CHAINS))
def test_sigkill_anywhere_then_resume_gives_the_uninterrupted_run(tmp_path, trainer):
    straight, chained = tmp_path / "straight", tmp_path / "chained"
    assert drive(trainer, tmp_path, straight) == 0
    for point in CHAINS[trainer]:
        assert drive(trainer, tmp_path, chained, kill=point) == -signal.SIGKILL, \
            f"{trainer} was not killed at {point}: the kill point was never reached"
    assert drive(trainer, tmp_path, chained) == 0

    assert (chained / "done.json").is_file()
    assert leftovers(chained) == [], leftovers(chained)
    for name in NETWORKS[trainer]:
        want, got = weights(straight / name), weights(chained / name)
        assert want.keys() == got.keys() and want, name
        for key in want:
            assert np.array_equal(want[key], got[key]), f"{name}: {key} differs after resume"
    history = "history.csv"
    assert (straight / history).read_text() == (chained / history).read_text()
    if trainer == "classifier":
        a, b = np.load(straight / "predictions.npz"), np.load(chained / "predictions.npz")
        assert all(np.array_equal(a[k], b[k]) for k in a.files)
