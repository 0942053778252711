"""Table 6 baselines (Frid-Adar 2018 §4.5): feature extractors on images with
known answers, mutual-information word selection on a toy dictionary, and
the cross-validation end to end (issue 14, part 2)."""
from __future__ import annotations

import numpy as np
import pytest

from keras_lesions.baselines import bovw
from keras_lesions.baselines.features import (
    GABOR_FREQUENCIES, GABOR_ORIENTATIONS, GLCM_DISTANCES, GLCM_LEVELS, GLCM_PROPERTIES,
    gabor_features, gabor_responses, glcm_features)


def _glcm(image):
    values = glcm_features(image).reshape(len(GLCM_PROPERTIES), len(GLCM_DISTANCES))
    return {name: values[i] for i, name in enumerate(GLCM_PROPERTIES)}


def test_glcm_of_a_constant_image():
    props = _glcm(np.full((32, 32), 0.5))
    np.testing.assert_allclose(props["contrast"], 0.0)
    np.testing.assert_allclose(props["homogeneity"], 1.0)
    np.testing.assert_allclose(props["energy"], 1.0)  # one grey-level pair only
    np.testing.assert_allclose(props["entropy"], 0.0, atol=1e-12)


def test_glcm_contrast_of_a_checkerboard():
    # black and white squares of one pixel: every horizontal and vertical
    # neighbour differs by the full range, every diagonal one not at all
    checker = (np.indices((32, 32)).sum(axis=0) % 2).astype(float)
    top = GLCM_LEVELS - 1
    props = _glcm(checker)
    # distance 1: 0° and 90° pairs contrast top², 45° and 135° pairs 0
    assert props["contrast"][0] == pytest.approx(top ** 2 / 2)
    # distance 2: every pair the same colour
    assert props["contrast"][1] == pytest.approx(0.0)
    assert props["contrast"][0] > _glcm(np.full((32, 32), 0.5))["contrast"][0]


def test_gabor_answers_at_the_stripes_frequency_and_orientation():
    size = 64
    y, x = np.indices((size, size))
    frequency = 0.1  # cycles per pixel
    stripes = 0.5 + 0.5 * np.cos(2 * np.pi * frequency * x)  # vertical stripes: varies along x
    energy = np.array([np.mean(r[16:-16, 16:-16] ** 2) for r in gabor_responses(stripes)])
    energy = energy.reshape(len(GABOR_FREQUENCIES), len(GABOR_ORIENTATIONS))
    f, o = np.unravel_index(np.argmax(energy), energy.shape)
    assert GABOR_FREQUENCIES[f] == frequency
    assert GABOR_ORIENTATIONS[o] == 0.0  # theta 0: the wave along x
    # turned by 90°, the answer turns with it
    turned = np.array([np.mean(r[16:-16, 16:-16] ** 2) for r in gabor_responses(stripes.T)])
    f, o = np.unravel_index(np.argmax(turned.reshape(energy.shape)), energy.shape)
    assert GABOR_FREQUENCIES[f] == frequency and GABOR_ORIENTATIONS[o] == pytest.approx(np.pi / 2)


def test_gabor_features_of_a_constant_image():
    features = gabor_features(np.full((32, 32), 0.3)).reshape(-1, 4)  # mean, std, energy, entropy
    assert np.all(features[:, 1] < 1e-6)  # no texture: a flat response
    assert np.all(features[:, 3] < 1e-6)  # one histogram bin: no entropy


def test_mutual_information_keeps_the_informative_words():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 60)
    histograms = rng.random((180, 50))
    # words 7, 19 and 33 carry the class; the other 47 are noise
    for word, c in ((7, 0), (19, 1), (33, 2)):
        histograms[:, word] = np.where(labels == c, 3.0, 0.0) + 0.1 * rng.random(180)
    information = bovw.word_information(histograms, labels, seed=0)
    assert set(bovw.select_words(information, 0.06).tolist()) == {7, 19, 33}  # 3 of 50
    # one-vs-rest: each task's single best word is its own
    for word, c in ((7, 0), (19, 1), (33, 2)):
        task = bovw.word_information(histograms, (labels == c).astype(int), seed=0)
        assert bovw.select_words(task, 0.02).tolist() == [word]
    # the paper's shares of a 750-word dictionary (§4.5 kept 262 and 23 words)
    assert len(bovw.select_words(np.arange(750.0), bovw.SINGLE_KEEP)) == 262
    assert len(bovw.select_words(np.arange(750.0), bovw.MULTI_KEEP)) == 22


def test_a_dictionary_makes_normalised_word_histograms():
    rng = np.random.default_rng(1)
    images = rng.random((6, 24, 24, 1))
    dictionary = bovw.fit_dictionary(images, size=20, seed=0)
    histograms = dictionary.histograms(images)
    assert histograms.shape == (6, 20)
    np.testing.assert_allclose(histograms.sum(axis=1), 1.0)
    patches, owners = bovw.patches(images)
    assert patches.shape[1] == 121 and len(patches) == 6 * 7 * 7  # 11×11, stride 2 on 24²
    assert np.array_equal(np.bincount(owners), np.full(6, 49))


@pytest.fixture
def baseline_dataset(tmp_path):
    """36 patients of one or two lesions (three classes that differ in
    intensity and so in texture statistics), 16×16 ROIs, 3 patient folds."""
    from conftest import make_toy_dataset

    from keras_lesions.data.dataset import write_dataset
    from keras_lesions.data.folds import make_patient_folds

    dataset = make_toy_dataset(lesions_per_patient=(1, 2) * 18, seed=3)
    dataset.input_size = 16
    dataset.folds = make_patient_folds(dataset.labels, dataset.patient_ids, k=3, seed=0)
    dataset.fold_k = 3
    return write_dataset(dataset, tmp_path / "baselines.h5")


def test_kl_baselines_writes_table6_from_training_patients_only(tmp_path, baseline_dataset):
    import json

    from click.testing import CliRunner

    from keras_lesions.baselines.crossval import METHODS, run_baselines
    from keras_lesions.data import read_dataset
    from keras_lesions.errors import KerasLesionsError
    from keras_lesions_cli.main import cli

    out = tmp_path / "table"
    result = CliRunner().invoke(cli, ["baselines", str(baseline_dataset), "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = (out / "table6.md").read_text()
    for method in METHODS:
        assert f"| {method} |" in table, method
    scores = json.loads((out / "table6.json").read_text())
    n = len(read_dataset(baseline_dataset, images=False))
    for method in METHODS:
        assert scores[method]["pooled"]["n"] == n  # every lesion tested once
    # the classes differ in intensity: the texture statistics find them
    assert scores["Gabor + SVM"]["balanced_accuracy"]["value"] > 0.6
    assert scores["GLCM + SVM"]["balanced_accuracy"]["value"] > 0.5
    # a cell whose test patients are among its training patients is refused
    dataset = read_dataset(baseline_dataset)
    everyone = np.arange(len(dataset))
    with pytest.raises(KerasLesionsError, match="test patient is among the training"):
        run_baselines(dataset, [(0, 0, everyone, everyone[:3])], methods=["GLCM + SVM"],
                      log=lambda line: None)


def test_kl_baselines_refuses_bad_input_with_one_line(tmp_path, baseline_dataset):
    from click.testing import CliRunner

    from keras_lesions_cli.main import cli

    for args, fragment in (([str(baseline_dataset), "--method", "LBP + SVM"], "unknown baseline"),
                           ([], "give DATASET or --config")):
        result = CliRunner().invoke(cli, ["baselines", *args, "-o", str(tmp_path / "t")])
        assert result.exit_code != 0 and "Traceback" not in result.output
        assert fragment in result.output
        assert not (tmp_path / "t").exists()


def test_an_experiment_runs_the_baselines_as_runs_of_its_plan(tmp_path, baseline_dataset):
    """evaluate.baselines: one plan run per cell, Table 6 in the report beside
    CNN-AUG, and a folder without it keeps its fingerprint."""
    from keras_lesions.config import load_config
    from keras_lesions.experiments.registry import open_for
    from keras_lesions.experiments.run import describe_plan, run_experiment

    overrides = {
        "name": "tiny", "output_dir": str(tmp_path / "out"), "data.dataset": str(baseline_dataset),
        "augment.n_rot": 2, "augment.n_trans": 1, "augment.n_scale": 1, "augment.n_flip": 1,
        "augment.group_sizes": [0, 24], "classifier.input_size": 16,
        "classifier.filters": [2, 2, 2], "classifier.dense_units": 4, "train.epochs": 1,
        "train.batch_size": 8, "evaluate.repeats": 1, "evaluate.baselines": True}
    config = load_config(None, overrides)
    listing = describe_plan(config)
    assert "fold0/baselines" in listing and "fold2/baselines" in listing
    run_experiment(config, log=lambda line: None)
    out = tmp_path / "out" / "tiny"
    table = (out / "report" / "table6.md").read_text()
    assert "| CNN-AUG |" in table and "| BoVW-MI multi representation |" in table
    assert (out / "data" / "fold2" / "baselines.json").is_file()
    # the baselines only add runs: the folder takes the config with them off
    # (and would take them on again), and its other runs stand
    exp = open_for(load_config(None, {**overrides, "evaluate.baselines": False}),
                   log=lambda line: None)
    assert "fold0/baselines" not in describe_plan(exp.config, log=lambda line: None)


def test_a_cell_without_training_lesions_of_a_class_is_refused(baseline_dataset):
    from keras_lesions.baselines.crossval import run_baselines
    from keras_lesions.data import read_dataset
    from keras_lesions.errors import KerasLesionsError

    dataset = read_dataset(baseline_dataset)
    labels = dataset.labels
    train = np.flatnonzero((np.asarray(dataset.folds) != 0) & (labels != 2))
    test = np.flatnonzero(np.asarray(dataset.folds) == 0)
    with pytest.raises(KerasLesionsError, match="no training lesion of hemangioma"):
        run_baselines(dataset, [(0, 0, train, test)], log=lambda line: None)
