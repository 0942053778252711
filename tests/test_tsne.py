"""Fig. 9 (Frid-Adar 2018 §4.3): the last hidden layer's t-SNE and the
separation scores beside it (issue 14, part 1)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from keras_lesions.tsne import separation_scores
from keras_lesions_cli.main import cli


def _clouds(distance, n=40, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.zeros((3, d))
    centres[1, 0], centres[2, 1] = distance, distance
    labels = np.repeat([0, 1, 2], n)
    return centres[labels] + rng.normal(size=(3 * n, d)), labels


def test_well_separated_clouds_score_high_and_overlapping_ones_low():
    separated = separation_scores(*_clouds(20.0))
    overlapping = separation_scores(*_clouds(0.0))
    assert separated["silhouette"] > 0.7 and separated["knn_accuracy"] == 1.0
    # the same distribution for every class: chance (1/3) for the vote, ~0 silhouette
    assert abs(overlapping["silhouette"]) < 0.05
    assert 0.15 < overlapping["knn_accuracy"] < 0.5
    middle = separation_scores(*_clouds(3.0))
    assert overlapping["silhouette"] < middle["silhouette"] < separated["silhouette"]


def test_the_vote_leaves_each_lesion_out():
    # two tight pairs and one outlier per class: with k = 1 each point's
    # nearest *other* point is its pair, so the vote is right; counting the
    # point itself would make any labelling score 100%
    x = np.array([[0.0], [0.1], [10.0], [10.1]])
    assert separation_scores(x, [0, 0, 1, 1], k=1)["knn_accuracy"] == 1.0
    assert separation_scores(x, [0, 1, 0, 1], k=1)["knn_accuracy"] == 0.0
    assert np.isnan(separation_scores(x[:1], [0], k=1)["silhouette"])


def kl(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_kl_tsne_on_two_runs_of_one_fold(tmp_path, folded_dataset):
    from keras_lesions.config import load_config
    from keras_lesions.experiments.run import run_experiment

    config = load_config(None, {
        "name": "tiny", "output_dir": str(tmp_path / "out"), "data.dataset": str(folded_dataset),
        "augment.n_rot": 2, "augment.n_trans": 1, "augment.n_scale": 1, "augment.n_flip": 1,
        "augment.group_sizes": [0, 24], "classifier.input_size": 16,
        "classifier.filters": [2, 2, 2], "classifier.dense_units": 4, "train.epochs": 1,
        "train.batch_size": 8, "evaluate.repeats": 1})
    run_experiment(config, log=lambda line: None)
    runs = tmp_path / "out" / "tiny" / "runs" / "fold0" / "classifier"
    out = tmp_path / "fig9.png"
    result = kl("tsne", runs / "D_aug1" / "seed0", runs / "D_aug2" / "seed0", "-o", out,
                "--augmentations", 3)
    assert result.exit_code == 0, result.output
    assert "D_aug1, fold0, seed 0: silhouette" in result.output
    scores = json.loads(out.with_suffix(".json").read_text())
    assert out.stat().st_size > 0 and len(scores["panels"]) == 2
    test_lesions = json.loads((runs / "D_aug1" / "seed0" / "done.json").read_text())["n_test"]
    for panel in scores["panels"]:
        assert panel["n_real"] == test_lesions and panel["n_augmented"] == 3 * test_lesions
        assert panel["scores"]["n"] == test_lesions  # the scores read the real lesions only
        assert -1.0 <= panel["scores"]["silhouette"] <= 1.0
        assert 0.0 <= panel["scores"]["knn_accuracy"] <= 1.0
    # the features are the model's last hidden layer (4 units here), deterministic
    from keras_lesions.tsne import run_features

    first = run_features(runs / "D_aug1" / "seed0")
    assert first["features"].shape == (test_lesions, 4)
    np.testing.assert_allclose(run_features(runs / "D_aug1" / "seed0")["features"],
                               first["features"])


@pytest.mark.parametrize("out, fragment", [
    ("x.png", "holds no run.json: not a run folder"),
    ("x.jpg", "must end in .png"),
])
def test_kl_tsne_refuses_bad_input_with_one_line(tmp_path, out, fragment):
    result = kl("tsne", tmp_path, "-o", tmp_path / out)
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and ("kl: error:" in lines[0] or "Error:" in lines[0])
    assert fragment in result.output
    assert not (tmp_path / out).exists()


def test_a_tie_goes_to_the_nearest_tied_class():
    from keras_lesions.tsne import _vote

    assert _vote(np.array([2, 0, 0, 2, 1])) == 2  # 2-2-1: class 2 is nearest
    assert _vote(np.array([1, 0, 0, 2, 1])) == 1
    assert _vote(np.array([0, 2, 2, 2, 1])) == 2  # no tie: the majority


def test_tsne_refuses_features_it_cannot_embed(tmp_path, monkeypatch):
    import keras_lesions.tsne as tsne
    from keras_lesions.errors import KerasLesionsError

    def fake(features, labels):
        return lambda run_dir, augmentations, seed: {
            "features": features, "labels": labels, "augmented": np.zeros(len(labels), bool),
            "lesion_ids": [str(i) for i in range(len(labels))], "class_names": ["a", "b"],
            "title": "run"}

    for features, labels, message in ((np.zeros((20, 4)), np.arange(20) % 2, "same features"),
                                      (np.eye(2), np.array([0, 1]), "at least 3")):
        monkeypatch.setattr(tsne, "run_features", fake(features, labels))
        with pytest.raises(KerasLesionsError, match=message):
            tsne.tsne_report(["run"], tmp_path / "x.png")
        assert not (tmp_path / "x.png").exists()
