"""Sampling generators, synthetic lesion datasets, and the generator export.

The generators are tiny hand-built functional models with the contract of
``keras_lesions.train.gan`` run folders (z in U[-1, 1] → tanh 64×64×1), so
these tests do not depend on GAN training.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from keras_lesions.data.dataset import read_dataset, write_dataset
from keras_lesions.errors import KerasLesionsError
from keras_lesions.synth import sample_generator, synthesize_dataset
from keras_lesions.runs import RunError

CLASSES = ["cyst", "metastasis", "hemangioma"]
LATENT = 8


def tiny_generator(kind: str, size: int = 64, num_classes: int = 3, seed: int = 0):
    """z [B, 8] (ACGAN: + class_id int32 [B]) → tanh [B, size, size, 1]."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    z = keras.Input((LATENT,), name="z")
    inputs = [z]
    h = z
    if kind == "acgan":
        class_id = keras.Input((), dtype="int32", name="class_id")
        inputs.append(class_id)
        h = layers.Multiply()([z, layers.Embedding(num_classes, LATENT)(class_id)])
    h = layers.Dense(4 * 4 * 4)(h)
    h = layers.Reshape((4, 4, 4))(h)
    h = layers.BatchNormalization()(h)
    h = layers.ReLU()(h)
    side = 4
    while side * 2 < size:
        h = layers.Conv2DTranspose(4, 5, strides=2, padding="same", activation="relu")(h)
        side *= 2
    out = layers.Conv2DTranspose(1, 5, strides=2, padding="same", activation="tanh")(h)
    return keras.Model(inputs if kind == "acgan" else z, out, name=f"tiny_{kind}")


def write_generator_run(run_dir, model, kind, class_name=None, fold=0, done=True,
                        class_names=CLASSES):
    run_dir.mkdir(parents=True)
    model.save(run_dir / "generator.keras")
    info = {"kind": kind, "class_names": class_names, "latent_dim": LATENT,
            "image_size": int(model.output_shape[1]), "fold": fold, "seed": 7}
    if kind == "dcgan":
        info["class_name"] = class_name
    (run_dir / "run.json").write_text(json.dumps(info))
    if done:
        (run_dir / "done.json").write_text(json.dumps({"epochs": 1}))
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gan_runs")
    return {
        "cyst": write_generator_run(root / "dcgan" / "cyst" / "fold0",
                                    tiny_generator("dcgan", seed=1), "dcgan", "cyst"),
        "hemangioma": write_generator_run(root / "dcgan" / "hemangioma" / "fold0",
                                          tiny_generator("dcgan", seed=2), "dcgan",
                                          "hemangioma"),
        "acgan": write_generator_run(root / "acgan" / "fold0", tiny_generator("acgan", seed=3),
                                     "acgan"),
    }


def expected_images(model, z, class_ids=None):
    import keras

    inputs = z if class_ids is None else [z, class_ids]
    out = keras.ops.convert_to_numpy(model(inputs, training=False))
    return np.clip((out + 1) / 2, 0, 1)


def test_dcgan_sampling_shapes_range_and_seed(runs):
    from keras_lesions.synth import load_generator_run

    images, labels, provenance = sample_generator(runs["cyst"], 10, seed=5, batch_size=4)
    assert images.shape == (10, 64, 64, 1) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0
    assert labels.tolist() == [0] * 10
    # z is U[-1, 1] from numpy's default_rng(seed); batching changes nothing.
    model, _ = load_generator_run(runs["cyst"])
    z = np.random.default_rng(5).uniform(-1, 1, (10, LATENT)).astype(np.float32)
    np.testing.assert_allclose(images, expected_images(model, z), atol=1e-6)
    again, _, _ = sample_generator(runs["cyst"], 10, seed=5, batch_size=4)
    np.testing.assert_array_equal(again, images)
    other, _, _ = sample_generator(runs["cyst"], 10, seed=6)
    assert np.abs(other - images).max() > 1e-3
    assert provenance == {
        "generator": str(runs["cyst"]), "kind": "dcgan", "class_names": CLASSES,
        "classes": ["cyst"], "seed": 5, "n": 10, "latent_dim": LATENT, "image_size": 64,
        "fold": 0, "run_seed": 7, "z_distribution": "uniform[-1, 1]"}


def test_acgan_labels_balanced_or_requested(runs):
    from keras_lesions.synth import load_generator_run

    images, labels, provenance = sample_generator(runs["acgan"], 10, seed=0)
    assert np.bincount(labels).tolist() == [4, 3, 3]
    assert provenance["classes"] == CLASSES
    model, _ = load_generator_run(runs["acgan"])
    z = np.random.default_rng(0).uniform(-1, 1, (10, LATENT)).astype(np.float32)
    np.testing.assert_allclose(images, expected_images(model, z, labels), atol=1e-6)
    same_z, labels_met, provenance = sample_generator(runs["acgan"], 10, seed=0,
                                                      class_name="metastasis")
    assert labels_met.tolist() == [1] * 10 and provenance["classes"] == ["metastasis"]
    # The class input matters: same z, other classes, other images.
    changed = labels != 1
    assert np.abs(same_z[changed] - images[changed]).max() > 1e-4
    np.testing.assert_allclose(same_z[~changed], images[~changed], atol=1e-6)


def test_synthesize_dataset_round_trip(runs, tmp_path, toy_dataset):
    from keras_lesions.pipeline import roi_inputs

    dataset = synthesize_dataset([runs["cyst"], runs["hemangioma"], runs["acgan"]], n=4,
                                 seed=11, class_names=CLASSES)
    path = write_dataset(dataset, tmp_path / "synth.h5")
    back = read_dataset(path)
    assert back.class_counts() == {"cyst": 8, "metastasis": 4, "hemangioma": 8}
    assert back.intensity_unit == "normalized" and back.input_size == 64
    assert back.extra["synthetic"] is True and back.extra["seed"] == 11
    assert back.extra["n"] == 4 and back.extra["fold"] == 0
    assert back.extra["generators"] == [str(runs[k]) for k in ("cyst", "hemangioma", "acgan")]
    assert [s["seed"] for s in back.extra["samples"]] == [11, 12, 13]
    ids = back.lesion_ids.tolist()
    assert ids[:4] == [f"synth-cyst-{i:06d}" for i in range(1, 5)]
    assert "synth-cyst-000008" in ids and len(set(ids)) == len(ids) == 20
    # Run names grow until they differ: both DCGAN folders are called fold0.
    assert sorted(set(back.patient_ids)) == [
        "synthetic:acgan/fold0", "synthetic:cyst/fold0", "synthetic:hemangioma/fold0"]
    assert not set(back.patient_ids) & set(toy_dataset.patient_ids)
    for lesion in back.lesions:
        assert lesion.attributes["synthetic"] is True and lesion.mask is None
        assert not lesion.has_context and lesion.roi_box == (0, 0, 64, 64)
        assert np.isnan(lesion.diameter_px) and lesion.diameter_source == "unknown"
        assert lesion.source == lesion.attributes["generator"]
    # Pixels are exactly what sampling the second generator with seed + 1 gives.
    hemangioma, _, _ = sample_generator(runs["hemangioma"], 4, seed=12)
    rows = [i for i, l in enumerate(back.lesions) if l.source == str(runs["hemangioma"])]
    assert [back.lesions[i].attributes["index"] for i in rows] == [0, 1, 2, 3]
    np.testing.assert_allclose(np.stack([back.lesions[i].roi for i in rows]),
                               hemangioma[..., 0], atol=1e-6)
    # The training input pipeline passes 64x64 normalized ROIs through unchanged.
    np.testing.assert_allclose(roi_inputs(back, rows, 64), hemangioma, atol=1e-4)
    # The CLI's default class order: what the runs recorded, read from run.json.
    from keras_lesions.synth import generator_class_names

    assert generator_class_names([runs["cyst"], runs["acgan"]]) == CLASSES
    # A class order other than the generators' is honoured.
    reordered = synthesize_dataset([runs["acgan"]], n=2, seed=0,
                                   class_names=["hemangioma", "cyst", "metastasis", "healthy"])
    assert reordered.class_counts() == {"hemangioma": 2, "cyst": 2, "metastasis": 2,
                                        "healthy": 0}
    for lesion in reordered.lesions:
        assert lesion.lesion_id.split("-")[1] == reordered.class_names[lesion.label]


def test_bad_inputs_are_one_line_errors(runs, tmp_path):
    from keras_lesions.models import build_lesion_classifier
    from keras_lesions.synth import generator_class_names

    classifier_run = tmp_path / "clf"
    classifier_run.mkdir()
    build_lesion_classifier(3, input_size=16, filters=(2, 2, 2), dense_units=4).save(
        classifier_run / "model.keras")
    (classifier_run / "run.json").write_text(json.dumps({"kind": "lesion_classifier"}))
    (classifier_run / "done.json").write_text("{}")
    (tmp_path / "random").mkdir()
    unfinished = write_generator_run(tmp_path / "unfinished", tiny_generator("dcgan"), "dcgan",
                                     "cyst", done=False)
    small = write_generator_run(tmp_path / "small", tiny_generator("dcgan", size=32), "dcgan",
                                "metastasis")
    fold1 = write_generator_run(tmp_path / "fold1", tiny_generator("dcgan"), "dcgan",
                                "metastasis", fold=1)
    lying = write_generator_run(tmp_path / "lying", tiny_generator("dcgan"), "dcgan", "cyst")
    info = json.loads((lying / "run.json").read_text())
    (lying / "run.json").write_text(json.dumps({**info, "latent_dim": 100}))

    cases = [
        (RunError, "lesion_classifier", lambda: sample_generator(classifier_run, 2, 0)),
        (RunError, "no run.json", lambda: sample_generator(tmp_path / "random", 2, 0)),
        (RunError, "no such run folder",
         lambda: sample_generator(tmp_path / "missing", 2, 0)),
        (RunError, "unfinished dcgan run", lambda: sample_generator(unfinished, 2, 0)),
        (RunError, "latent_dim 100", lambda: sample_generator(lying, 2, 0)),
        (KerasLesionsError, "positive integer", lambda: sample_generator(runs["cyst"], 0, 0)),
        (KerasLesionsError, "positive integer",
         lambda: synthesize_dataset([runs["cyst"]], -3, 0, CLASSES)),
        (KerasLesionsError, "unknown class 'tumour'",
         lambda: sample_generator(runs["acgan"], 2, 0, class_name="tumour")),
        (KerasLesionsError, "makes 'cyst' lesions only",
         lambda: sample_generator(runs["cyst"], 2, 0, class_name="hemangioma")),
        (KerasLesionsError, "makes 'cyst' lesions, a class outside",
         lambda: synthesize_dataset([runs["cyst"]], 2, 0, ["metastasis", "hemangioma"])),
        (KerasLesionsError, "makes 32x32 images",
         lambda: synthesize_dataset([runs["cyst"], small], 2, 0, CLASSES)),
        (KerasLesionsError, "different folds",
         lambda: synthesize_dataset([runs["cyst"], fold1], 2, 0, CLASSES)),
        (KerasLesionsError, "listed twice",
         lambda: synthesize_dataset([runs["cyst"], runs["cyst"]], 2, 0, CLASSES)),
        (RunError, "lesion_classifier",
         lambda: synthesize_dataset([runs["cyst"], classifier_run], 2, 0, CLASSES)),
        (RunError, "lesion_classifier", lambda: generator_class_names([classifier_run])),
        (RunError, "unfinished dcgan run", lambda: generator_class_names([unfinished])),
    ]
    for error, match, call in cases:
        with pytest.raises(error, match=match) as caught:
            call()
        assert "\n" not in str(caught.value), str(caught.value)
    assert not issubclass(KerasLesionsError, RunError)  # the RunError cases are specific


@pytest.mark.slow
def test_generator_export_round_trip_in_a_fresh_process(runs, tmp_path):
    from keras_lesions.export import ExportError, export_run
    from keras_lesions.synth import load_generator_run

    outs = {kind: export_run(runs[run], tmp_path / "saved_models" / kind / "1")
            for kind, run in (("dcgan", "cyst"), ("acgan", "acgan"))}
    for out in outs.values():
        assert (out / "saved_model.pb").exists()
        assert (out / "assets.extra" / "run.json").exists()
    description = json.loads((outs["acgan"] / "assets.extra" / "generator.json").read_text())
    assert description["kind"] == "acgan" and description["class_names"] == CLASSES
    z = np.random.default_rng(3).uniform(-1, 1, (5, LATENT)).astype(np.float32)
    class_ids = np.array([0, 1, 2, 1, 0], np.int32)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "c.npy", class_ids)
    script = (
        "import numpy as np, tensorflow as tf\n"
        f"z = tf.constant(np.load({str(tmp_path / 'z.npy')!r}))\n"
        f"c = tf.constant(np.load({str(tmp_path / 'c.npy')!r}))\n"
        f"d = tf.saved_model.load({str(outs['dcgan'])!r}).signatures['serving_default']\n"
        f"a = tf.saved_model.load({str(outs['acgan'])!r}).signatures['serving_default']\n"
        f"np.save({str(tmp_path / 'd.npy')!r}, d(z=z)['images'].numpy())\n"
        f"np.save({str(tmp_path / 'a.npy')!r}, a(z=z, class_id=c)['images'].numpy())\n"
        "try:\n"
        "    a(z=z, class_id=tf.constant([0, 1, 2, 3, 0], tf.int32))\n"
        "    print('no error')\n"
        "except tf.errors.InvalidArgumentError:\n"
        "    print('bad class_id refused')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "bad class_id refused"
    dcgan, _ = load_generator_run(runs["cyst"])
    acgan, _ = load_generator_run(runs["acgan"])
    served = np.load(tmp_path / "d.npy")
    assert served.shape == (5, 64, 64, 1) and served.dtype == np.float32
    np.testing.assert_allclose(served, expected_images(dcgan, z), atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), expected_images(acgan, z, class_ids),
                               atol=1e-5)
    with pytest.raises(ExportError, match="already exists"):
        export_run(runs["cyst"], outs["dcgan"])
    with pytest.raises(ExportError, match="integer version"):
        export_run(runs["cyst"], tmp_path / "saved_models" / "dcgan" / "latest")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "run.json").write_text(json.dumps({"kind": "disentanglement"}))
    with pytest.raises(ExportError, match="'disentanglement' run"):
        export_run(tmp_path / "odd", tmp_path / "saved_models" / "odd" / "1")
    with pytest.raises(RunError, match="no run.json"):
        export_run(tmp_path, tmp_path / "saved_models" / "odd" / "1")
