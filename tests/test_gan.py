"""DCGAN / ACGAN networks, losses, trainers, DiffAugment and GAN run folders.

Fast tier: width 1/16 networks, a handful of 64×64 images, batch 4; the
paper-size networks are built and counted, never trained.
"""
from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lesions.config import ExperimentConfig, GANConfig
from keras_lesions.errors import KerasLesionsError
from keras_lesions.losses import (
    acgan_discriminator_loss, acgan_generator_loss, dcgan_discriminator_loss,
    dcgan_generator_loss)
from keras_lesions.models.gan import (
    build_acgan_discriminator, build_acgan_generator, build_dcgan_discriminator,
    build_dcgan_generator)
from keras_lesions.runs import RunError
from keras_lesions.augment.diff_augment import DiffAugment
from keras_lesions.train.gan import (
    ACGANTrainer, DCGANTrainer, build_gan_trainer, gan_state, load_generator, train_gan)

WIDTH = 1 / 16
LATENT = 100


def _adam():
    return keras.optimizers.Adam(2e-4, beta_1=0.5, beta_2=0.999)


def _images(n, seed=0):
    """float32 [n, 64, 64, 1] in [0, 1]: bright discs on noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    out = rng.uniform(0.2, 0.4, (n, 64, 64, 1)).astype(np.float32)
    for i in range(n):
        cy, cx, r = rng.uniform(20, 44), rng.uniform(20, 44), rng.uniform(6, 14)
        out[i, (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2, 0] = 0.8
    return out


def _layer_shapes(model, names):
    return {name: tuple(model.get_layer(name).output.shape[1:]) for name in names}


# --------------------------------------------------------------------------- builders

def test_dcgan_layer_shapes_and_ranges():
    g = build_dcgan_generator(LATENT, width=WIDTH)
    assert _layer_shapes(g, ["project_bn", "reshape", "deconv1", "deconv2", "deconv3",
                             "deconv4", "image"]) == {
        "project_bn": (4 * 4 * 64,), "reshape": (4, 4, 64), "deconv1": (8, 8, 32),
        "deconv2": (16, 16, 16), "deconv3": (32, 32, 8), "deconv4": (64, 64, 1),
        "image": (64, 64, 1)}
    d = build_dcgan_discriminator(width=WIDTH)
    assert _layer_shapes(d, ["conv1", "conv2", "conv3", "conv4", "flatten", "real"]) == {
        "conv1": (32, 32, 4), "conv2": (16, 16, 8), "conv3": (8, 8, 16), "conv4": (4, 4, 32),
        "flatten": (512,), "real": (1,)}
    # §3.2: batch norm everywhere but G's output and D's input and output layers.
    g_bn = [layer.name for layer in g.layers if isinstance(layer, keras.layers.BatchNormalization)]
    d_bn = [layer.name for layer in d.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert g_bn == ["project_bn", "deconv1_bn", "deconv2_bn", "deconv3_bn"]
    assert d_bn == ["conv2_bn", "conv3_bn", "conv4_bn"]

    z = np.random.default_rng(0).uniform(-1, 1, (3, LATENT)).astype(np.float32)
    images = keras.ops.convert_to_numpy(g(z, training=False))
    assert images.shape == (3, 64, 64, 1) and images.min() >= -1 and images.max() <= 1
    prob = keras.ops.convert_to_numpy(d(images, training=False))
    assert prob.shape == (3, 1) and ((prob > 0) & (prob < 1)).all()


def test_acgan_layer_shapes_and_outputs():
    g = build_acgan_generator(3, LATENT, width=WIDTH)
    assert [tuple(t.shape) for t in g.inputs] == [(None, LATENT), (None,)]
    assert g.inputs[1].dtype == "int32"
    assert _layer_shapes(g, ["class_embedding", "conditioned_z", "reshape", "image"]) == {
        "class_embedding": (LATENT,), "conditioned_z": (LATENT,), "reshape": (4, 4, 64),
        "image": (64, 64, 1)}
    z = np.random.default_rng(0).uniform(-1, 1, (2, LATENT)).astype(np.float32)
    same_z = np.repeat(z[:1], 2, axis=0)
    images = keras.ops.convert_to_numpy(g([same_z, np.array([0, 2], np.int32)], training=False))
    assert images.shape == (2, 64, 64, 1)
    assert not np.allclose(images[0], images[1])  # the class conditions G

    d = build_acgan_discriminator(3, width=WIDTH)
    out = d(images, training=False)
    assert set(out) == {"real", "class"}
    assert tuple(out["real"].shape) == (2, 1) and tuple(out["class"].shape) == (2, 3)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out["class"]).sum(1), 1, rtol=1e-5)


def test_paper_size_parameter_counts():
    # Derivations in keras_lesions/models/gan.py (biases on every layer;
    # Keras counts BN's moving mean and variance).
    assert build_dcgan_generator().count_params() == 18_931_201
    assert build_dcgan_discriminator().count_params() == 4_315_137
    assert build_acgan_generator(3).count_params() == 18_931_201 + 3 * 100
    assert build_acgan_discriminator(3).count_params() == 4_315_137 + 8192 * 3 + 3


# --------------------------------------------------------------------------- losses

def test_dcgan_losses_on_hand_values():
    half = np.full((4, 1), 0.5, np.float32)
    assert float(dcgan_discriminator_loss(half, half)) == pytest.approx(2 * math.log(2), 1e-5)
    assert float(dcgan_generator_loss(half)) == pytest.approx(math.log(2), 1e-5)
    # A perfect D costs nothing, and D fooled completely costs G nothing.
    assert float(dcgan_discriminator_loss(np.ones((2, 1)), np.zeros((2, 1)))) < 1e-5
    assert float(dcgan_generator_loss(np.ones((2, 1)))) < 1e-5
    # −log D(G(z)) with D(G(z)) = e^−1 is 1; the batch is averaged.
    mixed = np.array([[math.exp(-1)], [math.exp(-3)]], np.float32)
    assert float(dcgan_generator_loss(mixed)) == pytest.approx(2.0, 1e-5)
    assert float(dcgan_discriminator_loss(np.array([[math.exp(-2)]]), np.zeros((1, 1)))) \
        == pytest.approx(2.0, 1e-5)


def test_acgan_losses_on_hand_values():
    half = np.full((2, 1), 0.5, np.float32)
    uniform = np.full((2, 3), 1 / 3, np.float32)
    ids = np.array([0, 2])
    assert float(acgan_discriminator_loss(half, half, uniform, ids, uniform, ids)) == \
        pytest.approx(2 * math.log(2) + 2 * math.log(3), 1e-5)
    assert float(acgan_generator_loss(half, uniform, ids)) == \
        pytest.approx(math.log(2) + math.log(3), 1e-5)
    # The class term reads the probability of the named class.
    probs = np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]], np.float32)
    expected = math.log(2) - (math.log(0.5) + math.log(0.8)) / 2
    assert float(acgan_generator_loss(half, probs, ids)) == pytest.approx(expected, 1e-5)


# --------------------------------------------------------------------------- trainers

def _variables(model, trainable):
    variables = model.trainable_variables if trainable else \
        [v for v in model.non_trainable_variables if "moving" in v.path]
    return [v.numpy().copy() for v in variables]


def _changed(before, after):
    return all(not np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("diff_augment", ["", "translation,cutout,color"])
def test_dcgan_train_step_updates_both_networks(diff_augment):
    keras.utils.set_random_seed(0)
    trainer = DCGANTrainer(build_dcgan_generator(LATENT, WIDTH),
                           build_dcgan_discriminator(WIDTH), LATENT,
                           diff_augment=diff_augment, seed=1)
    trainer.compile(d_optimizer=_adam(), g_optimizer=_adam())
    nets = {"g": trainer.generator, "d": trainer.discriminator}
    weights = {k: _variables(m, True) for k, m in nets.items()}
    stats = {k: _variables(m, False) for k, m in nets.items()}
    assert len(stats["g"]) == 8 and len(stats["d"]) == 6  # 4 and 3 BN layers

    logs = trainer.train_step(tf.constant(_images(4) * 2 - 1))
    assert set(logs) == {"d_loss", "g_loss", "d_accuracy"}
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert 0.0 <= float(logs["d_accuracy"]) <= 1.0
    for k, model in nets.items():
        assert _changed(weights[k], _variables(model, True)), f"{k} weights did not move"
        # training=True honoured: every BN layer updated its moving statistics.
        assert _changed(stats[k], _variables(model, False)), f"{k} BN statistics did not move"
    assert int(trainer.d_optimizer.iterations) == 1 and int(trainer.g_optimizer.iterations) == 1


def test_acgan_train_step_updates_both_networks():
    keras.utils.set_random_seed(0)
    trainer = ACGANTrainer(build_acgan_generator(3, LATENT, WIDTH),
                           build_acgan_discriminator(3, WIDTH), num_classes=3,
                           latent_dim=LATENT, seed=1)
    trainer.compile(d_optimizer=_adam(), g_optimizer=_adam())
    nets = {"g": trainer.generator, "d": trainer.discriminator}
    weights = {k: _variables(m, True) for k, m in nets.items()}
    stats = {k: _variables(m, False) for k, m in nets.items()}

    data = (tf.constant(_images(6) * 2 - 1), tf.constant([0, 1, 2, 0, 1, 2], tf.int32))
    logs = trainer.train_step(data)
    assert set(logs) == {"d_loss", "g_loss", "d_accuracy", "d_class_accuracy"}
    assert all(np.isfinite(float(v)) for v in logs.values())
    for k, model in nets.items():
        assert _changed(weights[k], _variables(model, True)), f"{k} weights did not move"
        assert _changed(stats[k], _variables(model, False)), f"{k} BN statistics did not move"
    classes = keras.ops.convert_to_numpy(trainer.sample_classes(3000))
    assert set(np.unique(classes)) == {0, 1, 2}
    assert np.bincount(classes).min() > 900  # uniform over the classes


def test_dcgan_step_is_d_then_g_on_one_draw_of_z():
    """One G pass serves both steps: the step, eager and compiled, equals a D
    step on G(z) followed by a G step that runs G again on the same z against
    the updated D.

    Plain SGD, so each weight moves by its gradient (Adam's first step moves
    every weight by about its learning rate, whatever the gradient)."""
    def make():
        keras.utils.set_random_seed(0)
        trainer = DCGANTrainer(build_dcgan_generator(LATENT, WIDTH),
                               build_dcgan_discriminator(WIDTH), LATENT, seed=3)
        trainer.compile(d_optimizer=keras.optimizers.SGD(0.1),
                        g_optimizer=keras.optimizers.SGD(0.1))
        return trainer

    def weights(model):
        return [v.numpy().copy() for v in model.trainable_variables]

    real = tf.constant(_images(8) * 2 - 1)
    start = make()
    g0, d0 = weights(start.generator), weights(start.discriminator)
    eager, compiled = make(), make()
    eager.train_step(real)
    tf.function(compiled.train_step)(real)

    def by_hand(variant="same z"):
        reference = make()
        z = reference.sample_z(8)  # the same seed: the draw the trainer made
        g, d = reference.generator, reference.discriminator
        with tf.GradientTape() as tape:
            d_loss = dcgan_discriminator_loss(d(real, training=True),
                                              d(g(z, training=True), training=True))
        d_grads = tape.gradient(d_loss, d.trainable_variables)
        if variant == "fresh z":
            z = reference.sample_z(8)
        if variant != "stale D":
            reference.d_optimizer.apply(d_grads, d.trainable_variables)
        with tf.GradientTape() as tape:
            g_loss = dcgan_generator_loss(d(g(z, training=True), training=True))
        reference.g_optimizer.apply(tape.gradient(g_loss, g.trainable_variables),
                                    g.trainable_variables)
        if variant == "stale D":
            reference.d_optimizer.apply(d_grads, d.trainable_variables)
        return weights(g), weights(d), float(g_loss)

    def largest(a, b):
        return max(np.abs(x - y).max() for x, y in zip(a, b))

    g1, d1, g_loss = by_hand()
    g_step, d_step = largest(g0, g1), largest(d0, d1)
    assert g_step > 1e-3 and d_step > 1e-3  # the step moved both networks
    for trainer in (eager, compiled):
        assert largest(weights(trainer.discriminator), d1) <= 1e-4 * d_step
        assert largest(weights(trainer.generator), g1) <= 1e-4 * g_step
        assert float(trainer.g_loss_tracker.result()) == pytest.approx(g_loss, rel=1e-5)

    # What the comparison tells apart (checks of the by-hand references, not
    # of the trainer): a G step on a fresh z, or against D before its update,
    # moves G far beyond the tolerance above.
    for variant in ("fresh z", "stale D"):
        assert largest(by_hand(variant)[0], g1) > 0.01 * g_step, variant


# --------------------------------------------------------------------------- DiffAugment

def test_diff_augment_shapes_seeds_and_gradients():
    images = tf.constant(_images(4) * 2 - 1)
    augment = DiffAugment("translation,cutout,color")
    a = augment(images, keras.random.SeedGenerator(7))
    b = augment(images, keras.random.SeedGenerator(7))
    c = augment(images, keras.random.SeedGenerator(8))
    assert tuple(a.shape) == (4, 64, 64, 1)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.allclose(a.numpy(), c.numpy())
    assert not np.allclose(a.numpy(), images.numpy())
    # Each call draws fresh parameters from the generator it is given.
    seeds = keras.random.SeedGenerator(7)
    assert not np.allclose(augment(images, seeds).numpy(), augment(images, seeds).numpy())

    weights = tf.constant(np.random.default_rng(0).normal(size=(4, 64, 64, 1)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(images)
        out = tf.reduce_sum(augment(images, keras.random.SeedGenerator(3)) * weights)
    grad = tape.gradient(out, images)
    assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0
    assert DiffAugment("")(images, keras.random.SeedGenerator(0)) is images
    with pytest.raises(KerasLesionsError, match="unknown DiffAugment transform 'rotate'"):
        DiffAugment("translation,rotate")


def test_diff_augment_transforms_on_chosen_parameters():
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 1)), tf.float32)
    middle = tf.constant([[0.5, 0.5]])
    # u = 0.5: no shift, no brightness change, contrast factor 1.
    np.testing.assert_allclose(DiffAugment("translation").apply(x, {"translation": middle}), x)
    np.testing.assert_allclose(DiffAugment("color").apply(x, {"color": middle}), x, atol=1e-6)
    # u = 0: the largest shift, 8 px (1/8 of 64), content up and left, zero fill.
    shifted = DiffAugment("translation").apply(x, {"translation": tf.constant([[0.0, 0.0]])})
    np.testing.assert_allclose(shifted[0, :-8, :-8], x[0, 8:, 8:])
    assert float(tf.reduce_max(tf.abs(shifted[0, -8:]))) == 0.0
    assert float(tf.reduce_max(tf.abs(shifted[0, :, -8:]))) == 0.0
    # Cutout in the middle zeroes a 32×32 square (half the side).
    cut = DiffAugment("cutout").apply(x, {"cutout": middle}).numpy()
    zeroed = cut[0, :, :, 0] != x.numpy()[0, :, :, 0]
    assert zeroed.sum() == 32 * 32 and (cut[0, 16:48, 16:48] == 0).all()
    # Brightness +0.5 − 0.5 = 0, contrast 0.5 + 1.0 = 1.5 around the mean.
    colored = DiffAugment("color").apply(x, {"color": tf.constant([[0.5, 1.0]])}).numpy()
    mean = x.numpy().mean()
    np.testing.assert_allclose(colored, (x.numpy() - mean) * 1.5 + mean, atol=1e-5)


# --------------------------------------------------------------------------- run folders

def _config(epochs, seed=0, diff_augment="translation,cutout,color"):
    return ExperimentConfig(gan=GANConfig(width=WIDTH, batch_size=4, epochs=epochs, seed=seed,
                                          diff_augment=diff_augment))


class _Interrupt(KeyboardInterrupt):
    pass


@pytest.fixture(scope="module")
def dcgan_runs(tmp_path_factory):
    """A 3-epoch DCGAN run interrupted after epoch 1 and resumed, and the same
    run uninterrupted. 10 images, batch 4: 2 steps per epoch."""
    root = tmp_path_factory.mktemp("gan_runs")
    images = _images(10)
    resumed, straight = root / "resumed", root / "straight"

    def stop_after_first(done, total):
        if done == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_gan("dcgan", images, _config(3), resumed, class_names=["cyst"],
                  run_info={"fold": 2}, progress=stop_after_first)
    interrupted = {
        "files": sorted(p.name for p in resumed.iterdir()),
        "history": (resumed / "history.csv").read_text().splitlines(),
        "checkpoint": tf.train.latest_checkpoint(str(resumed / "checkpoint")),
    }
    # The state a resumed run restores, read back through the public helpers.
    trainer = build_gan_trainer("dcgan", 1, _config(3))
    epochs_done = tf.Variable(0, dtype=tf.int64)
    tf.train.Checkpoint(**gan_state(trainer), epoch=epochs_done).restore(
        interrupted["checkpoint"]).assert_consumed()
    interrupted["restored"] = {
        "epochs": int(epochs_done.numpy()),
        "d_iterations": int(trainer.d_optimizer.iterations.numpy()),
        "g_iterations": int(trainer.g_optimizer.iterations.numpy()),
        "adam_moments_nonzero": all(
            float(np.abs(v.numpy()).sum()) > 0
            for opt in (trainer.d_optimizer, trainer.g_optimizer)
            for v in opt.variables if "momentum" in v.path or "velocit" in v.path),
        "noise_state": trainer.seed_generator.state.numpy().tolist(),
    }
    interrupted["unfinished_without_resume"] = None
    try:
        train_gan("dcgan", images, _config(3), resumed, class_names=["cyst"])
    except RunError as exc:
        interrupted["unfinished_without_resume"] = str(exc)

    calls = []
    result = train_gan("dcgan", images, _config(3), resumed, class_names=["cyst"],
                       run_info={"fold": 2}, resume=True,
                       progress=lambda done, total: calls.append((done, total)))
    train_gan("dcgan", images, _config(3), straight, class_names=["cyst"])
    return {"images": images, "resumed": resumed, "straight": straight, "result": result,
            "calls": calls, "interrupted": interrupted}


@pytest.mark.slow
def test_interrupted_run_keeps_its_checkpoint_and_optimizer_state(dcgan_runs):
    interrupted = dcgan_runs["interrupted"]
    assert {"run.json", "config.yaml", "checkpoint", "history.csv", "samples",
            "tensorboard"} <= set(interrupted["files"])
    assert "done.json" not in interrupted["files"]
    assert "generator.keras" not in interrupted["files"]
    assert interrupted["history"][0] == "epoch,d_loss,g_loss,d_accuracy"
    assert [row.split(",")[0] for row in interrupted["history"][1:]] == ["0"]
    restored = interrupted["restored"]
    # One epoch of 10 images in batches of 4 = 2 Adam steps per network.
    assert restored["epochs"] == 1
    assert restored["d_iterations"] == restored["g_iterations"] == 2
    assert restored["adam_moments_nonzero"]
    assert restored["noise_state"] != keras.random.SeedGenerator(0).state.numpy().tolist()
    assert "unfinished run" in interrupted["unfinished_without_resume"]


@pytest.mark.slow
def test_resumed_run_equals_an_uninterrupted_one(dcgan_runs):
    resumed, straight = dcgan_runs["resumed"], dcgan_runs["straight"]
    # The resumed run started from the saved epoch, not from scratch.
    assert dcgan_runs["calls"] == [(1, 3), (2, 3), (3, 3)]
    history = (resumed / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["0", "1", "2"]
    assert history == (straight / "history.csv").read_text().splitlines()
    # Same seed, same batches, restored optimizers and noise: the same networks.
    for role in ("generator", "discriminator"):
        a = keras.saving.load_model(resumed / f"{role}.keras").get_weights()
        b = keras.saving.load_model(straight / f"{role}.keras").get_weights()
        assert len(a) == len(b)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_finished_run_folder(dcgan_runs):
    run = dcgan_runs["resumed"]
    names = {p.name for p in run.iterdir()}
    assert {"run.json", "config.yaml", "history.csv", "tensorboard", "samples",
            "generator.keras", "discriminator.keras", "done.json"} <= names
    assert "checkpoint" not in names  # removed once training ends
    assert sorted(p.name for p in (run / "samples").iterdir()) == \
        ["epoch_001.png", "epoch_002.png", "epoch_003.png"]
    assert any((run / "tensorboard").rglob("events.out.tfevents.*"))
    info = json.loads((run / "run.json").read_text())
    assert {k: info[k] for k in (
        "kind", "class_names", "class_name", "latent_dim", "width", "image_size", "n_train",
        "seed", "fold")} == {
        "kind": "dcgan", "class_names": ["cyst"], "class_name": "cyst", "latent_dim": LATENT,
        "width": WIDTH, "image_size": 64, "n_train": 10, "seed": 0, "fold": 2}
    result = dcgan_runs["result"]
    assert result["kind"] == "dcgan" and result["epochs"] == 3
    assert set(result["metrics"]) == {"d_loss", "g_loss", "d_accuracy"}

    generator, loaded_info = load_generator(run)
    assert loaded_info == info
    z = np.random.default_rng(0).uniform(-1, 1, (2, LATENT)).astype(np.float32)
    images = keras.ops.convert_to_numpy(generator(z, training=False))
    assert images.shape == (2, 64, 64, 1) and np.abs(images).max() <= 1
    discriminator = keras.saving.load_model(run / "discriminator.keras", safe_mode=True)
    assert discriminator.output_shape == (None, 1)

    with pytest.raises(RunError, match="finished run"):
        train_gan("dcgan", dcgan_runs["images"], _config(3), run, class_names=["cyst"],
                  resume=True)


@pytest.mark.slow
def test_load_generator_refuses_other_folders(tmp_path, dcgan_runs):
    with pytest.raises(RunError, match="no such run folder"):
        load_generator(tmp_path / "missing")
    classifier_run = tmp_path / "classifier"
    classifier_run.mkdir()
    # What train_classifier writes (kind "lesion_classifier"), plus its model.
    (classifier_run / "run.json").write_text(json.dumps({"kind": "lesion_classifier"}))
    (classifier_run / "done.json").write_text("{}")
    with pytest.raises(RunError, match="'lesion_classifier' run, not a dcgan or acgan run") as error:
        load_generator(classifier_run)
    assert "\n" not in str(error.value) and str(classifier_run) in str(error.value)
    # An unfinished GAN run: the finished one without its done.json.
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("run.json", "generator.keras"):
        (unfinished / name).write_bytes((dcgan_runs["resumed"] / name).read_bytes())
    with pytest.raises(RunError, match="unfinished dcgan run"):
        load_generator(unfinished)


def test_train_gan_acgan_run_and_input_checks(tmp_path):
    images = _images(9)
    classes = np.arange(9) % 3
    names = ["cyst", "metastasis", "hemangioma"]
    with pytest.raises(KerasLesionsError, match="needs class_ids"):
        train_gan("acgan", images, _config(1), tmp_path / "a", class_names=names)
    with pytest.raises(KerasLesionsError, match="one class"):
        train_gan("dcgan", images, _config(1), tmp_path / "d", class_ids=classes,
                  class_names=names)
    with pytest.raises(KerasLesionsError, match=r"\[0, 1\]"):
        train_gan("dcgan", images * 2 - 1, _config(1), tmp_path / "d", class_names=["cyst"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "d").exists()

    result = train_gan("acgan", images, _config(1, diff_augment=""), tmp_path / "a",
                       class_ids=classes, class_names=names, run_info={"fold": 0})
    assert set(result["metrics"]) == {"d_loss", "g_loss", "d_accuracy", "d_class_accuracy"}
    generator, info = load_generator(tmp_path / "a")
    assert info["kind"] == "acgan" and info["class_names"] == names
    z = np.zeros((3, LATENT), np.float32) + 0.5
    out = generator([z, np.array([0, 1, 2], np.int32)], training=False)
    assert tuple(out.shape) == (3, 64, 64, 1)
    assert (tmp_path / "a" / "samples" / "epoch_001.png").is_file()
    # Made unfinished again: resuming it as another kind or with other
    # settings is refused before anything is written.
    (tmp_path / "a" / "done.json").rename(tmp_path / "a" / "done.moved")
    with pytest.raises(RunError, match="cannot resume it as 'dcgan'"):
        train_gan("dcgan", images[classes == 0], _config(1), tmp_path / "a",
                  class_names=["cyst"], resume=True)
    wider = _config(1, diff_augment="")
    wider.gan.width = 2 * WIDTH
    with pytest.raises(RunError, match=r"other settings \(gan.width was 0.0625, now 0.125\)"):
        train_gan("acgan", images, wider, tmp_path / "a", class_ids=classes, class_names=names,
                  run_info={"fold": 0}, resume=True)
