"""The classification CNN: paper size, training with checkpoints, resume, export."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_lesions.config import load_config
from keras_lesions.errors import KerasLesionsError
from keras_lesions.runs import RunError
from keras_lesions.train.classifier import load_run_model, train_classifier


def test_paper_size_parameter_count():
    from keras_lesions.models import build_lesion_classifier

    model = build_lesion_classifier(num_classes=3)
    # derivation in keras_lesions/models/classifier.py: 1,306,115 trainable + the stored mean
    assert model.count_params() == 1_306_116
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 1_306_115
    assert model.input_shape == (None, 64, 64, 1) and model.output_shape == (None, 3)
    assert [l.name for l in model.layers if "conv" in l.name] == ["conv1", "conv2", "conv3"]


def test_mean_is_subtracted_inside_and_survives_save(tmp_path):
    import keras

    from keras_lesions.models import build_lesion_classifier

    model = build_lesion_classifier(num_classes=2, input_size=16, filters=(2, 2, 2),
                                    dense_units=4, mean=0.25)
    x = np.full((1, 16, 16, 1), 0.25, np.float32)
    subtract = keras.Model(model.input, model.get_layer("subtract_mean").output)
    np.testing.assert_allclose(subtract.predict(x, verbose=0), 0.0, atol=1e-7)
    model.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def tiny_config(tmp_path, epochs=2):
    return load_config(None, {
        "classifier.input_size": 16, "classifier.filters": [2, 4, 4],
        "classifier.dense_units": 8, "train.epochs": epochs, "train.batch_size": 8,
        "train.learning_rate": 0.05, "output_dir": str(tmp_path)})


def toy_images(n=48, size=16, seed=0):
    """Bright squares vs dark squares: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = rng.normal(0.5, 0.05, (n, size, size, 1)).astype(np.float32)
    images[labels == 1, 4:12, 4:12] += 0.4
    return np.clip(images, 0, 1), np.eye(2, dtype=np.float32)[labels]


def test_training_learns_and_records_the_run(tmp_path):
    config = tiny_config(tmp_path, epochs=8)
    x, y = toy_images()
    model = train_classifier(x, y, config, tmp_path / "run", verbose=0, tensorboard=False,
                             run_info={"class_names": ["a", "b"]})
    accuracy = (model.predict(x, verbose=0).argmax(1) == y.argmax(1)).mean()
    assert accuracy > 0.9
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["train_mean"] == pytest.approx(float(x.mean()))
    assert info["settings"]["train"]["seed"] == 0 and info["settings"]["n_train"] == len(x)
    # what else decides the floating-point result: versions and threads
    import tensorflow as tf

    environment = info["environment"]
    assert environment["tensorflow"] == tf.__version__ and "keras" in environment
    assert environment["intra_op_threads"] == \
        tf.config.threading.get_intra_op_parallelism_threads()
    # the checkpoint stays until the run is marked done (tested, in an experiment)
    assert (tmp_path / "run" / "checkpoint").is_dir()
    from keras_lesions.runs import finish_run

    finish_run(tmp_path / "run", {"fold": 0})
    assert not (tmp_path / "run" / "checkpoint").exists()
    loaded = load_run_model(tmp_path / "run")
    np.testing.assert_allclose(loaded.predict(x[:4], verbose=0), model.predict(x[:4], verbose=0),
                               atol=1e-6)


def test_interrupted_training_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    config = tiny_config(tmp_path, epochs=4)
    x, y = toy_images()
    run = tmp_path / "run"
    straight = train_classifier(x, y, config, tmp_path / "straight", tensorboard=False)

    def stop_after_second_epoch(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_classifier(x, y, config, run, tensorboard=False, progress=stop_after_second_epoch)
    assert (run / "checkpoint").exists() and not (run / "model.keras").exists()
    with pytest.raises(RunError, match="--resume"):
        train_classifier(x, y, config, run, tensorboard=False)
    # other training data (another fold, say) would mix two trainings: refused
    with pytest.raises(RunError, match="other settings \\(train_data was"):
        train_classifier(x[::-1], y[::-1], config, run, tensorboard=False, resume=True)
    resumed = train_classifier(x, y, config, run, tensorboard=False, resume=True)
    with open(run / "history.csv") as handle:
        epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
    assert epochs == [0, 1, 2, 3]  # epochs 0-1 before the interruption, 2-3 after
    assert (run / "model.keras").exists()
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)  # the batches depend on (seed, epoch) only


def test_bad_training_input(tmp_path):
    config = tiny_config(tmp_path)
    x, y = toy_images()
    with pytest.raises(KerasLesionsError, match=r"\[n, size, size, 1\]"):
        train_classifier(x[..., 0], y, config, tmp_path / "r1", verbose=0)
    with pytest.raises(KerasLesionsError, match="48 images but 3 targets"):
        train_classifier(x, y[:3], config, tmp_path / "r2", verbose=0)


@pytest.mark.slow
def test_export_round_trip_in_a_fresh_process(tmp_path):
    from keras_lesions.export import ExportError, export_classifier

    config = tiny_config(tmp_path, epochs=1)
    x, y = toy_images()
    run = tmp_path / "run"
    model = train_classifier(x, y, config, run, verbose=0, tensorboard=False,
                             run_info={"class_names": ["bright", "dark"]})
    out = export_classifier(run, tmp_path / "saved_models" / "clf" / "1")
    assert (out / "saved_model.pb").exists() and (out / "assets.extra" / "config.yaml").exists()
    np.save(tmp_path / "x.npy", x[:5])
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        f"m = tf.saved_model.load({str(out)!r})\n"
        "f = m.signatures['serving_default']\n"
        f"out = f(roi=tf.constant(np.load({str(tmp_path / 'x.npy')!r})))\n"
        f"np.save({str(tmp_path / 'p.npy')!r}, out['probabilities'].numpy())\n"
        "print(','.join(v.decode() for v in out['class_name'].numpy()))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    expected = model.predict(x[:5], verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-5)
    names = result.stdout.strip().splitlines()[-1].split(",")
    assert names == [["bright", "dark"][i] for i in expected.argmax(1)]
    saved_model_cli = Path(sys.executable).parent / "saved_model_cli"  # installed with TF
    cli = subprocess.run([str(saved_model_cli), "show", "--dir", str(out), "--all"],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert "signature_def['serving_default']" in cli.stdout
    assert "inputs['roi']" in cli.stdout and "outputs['class_name']" in cli.stdout
    with pytest.raises(ExportError, match="already exists"):
        export_classifier(run, out)
    with pytest.raises(ExportError, match="integer version"):
        export_classifier(run, tmp_path / "saved_models" / "clf" / "latest")


def test_step_batches_give_every_set_the_same_steps_and_resume_exactly():
    """train.steps: the same number of full batches whatever the set's size,
    every row seen equally often (± 1), and part q's batches from (seed, q) only."""
    from keras_lesions.pipeline import step_batches

    for n in (10, 37):
        rows = np.arange(n)
        data, per_part = step_batches((rows,), 4, seed=3, first_part=0, parts=5, steps_per_part=3)
        batches = [b.numpy() for b in data]
        assert per_part == 3 and len(batches) == 15 and all(len(b) == 4 for b in batches)
        counts = np.bincount(np.concatenate(batches), minlength=n)
        assert counts.max() - counts.min() <= 1  # whole passes laid end to end
        resumed, _ = step_batches((rows,), 4, seed=3, first_part=2, parts=5, steps_per_part=3)
        assert [b.numpy().tolist() for b in resumed] == [b.tolist() for b in batches[6:]]


@pytest.mark.parametrize("trainer", ["classifier", "gan"])
@pytest.mark.parametrize("folder", ["finished", "other settings"])
def test_a_refused_folder_is_refused_before_any_network_is_built(tmp_path, monkeypatch,
                                                                 trainer, folder):
    from keras_lesions.runs.folder import finish_run, start_run
    from keras_lesions.train import classifier as classifier_module
    from keras_lesions.train import gan as gan_module
    from keras_lesions.train.gan import train_gan

    def build(*args, **kwargs):  # a paper-size build takes seconds: the refusal needs none
        raise AssertionError("built a network for a folder it then refused")

    monkeypatch.setattr(classifier_module, "build_compiled_classifier", build)
    monkeypatch.setattr(gan_module, "build_gan_trainer", build)
    run_dir = tmp_path / "run"
    kind = "lesion_classifier" if trainer == "classifier" else "dcgan"
    start_run(run_dir, kind=kind, settings={"made": "elsewhere"})
    if folder == "finished":
        finish_run(run_dir, {})
    config = load_config(None, {"gan.width": 1 / 16})
    images = np.random.default_rng(0).uniform(0, 1, (8, 64, 64, 1)).astype(np.float32)
    match = "finished run" if folder == "finished" else "other settings"
    with pytest.raises(RunError, match=match):
        if trainer == "classifier":
            train_classifier(images[:, :32, :32], np.eye(2, dtype=np.float32)[[0, 1] * 4],
                             config, run_dir, resume=True, tensorboard=False)
        else:
            train_gan("dcgan", images, config, run_dir, class_names=["cyst"], resume=True,
                      sample_grid_every=0)
