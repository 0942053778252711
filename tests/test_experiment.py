"""The CNN-AUG cross-validation experiment end to end, tiny, and its CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from keras_lesions.config import load_config
from keras_lesions.data.dataset import read_dataset, write_dataset
from keras_lesions.data.folds import make_patient_folds
from keras_lesions.evaluate.crossval import run_classic_curve
from keras_lesions_cli.main import cli

from conftest import make_toy_dataset


@pytest.fixture
def folded_dataset(tmp_path):
    dataset = make_toy_dataset(lesions_per_patient=(1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 2, 1))
    dataset.input_size = 16
    dataset.folds = make_patient_folds(dataset.labels, dataset.patient_ids, k=3, seed=0)
    dataset.fold_k = 3
    return write_dataset(dataset, tmp_path / "toy.h5")


def tiny_config(tmp_path, dataset_path, **extra):
    overrides = {
        "name": "tiny", "output_dir": str(tmp_path / "out"), "data.dataset": str(dataset_path),
        "augment.n_rot": 2, "augment.n_trans": 1, "augment.n_scale": 1, "augment.n_flip": 1,
        "augment.group_sizes": [0, 24], "classifier.input_size": 16,
        "classifier.filters": [2, 2, 2], "classifier.dense_units": 4, "train.epochs": 1,
        "train.batch_size": 8, **extra}
    return load_config(None, overrides)


def test_curve_runs_every_fold_and_group_and_resumes(tmp_path, folded_dataset):
    config = tiny_config(tmp_path, folded_dataset)
    result = run_classic_curve(config, log=lambda line: None)
    out = tmp_path / "out" / "tiny"
    assert [p["added_samples"] for p in result["curve"]] == [0, 24]
    assert result["optimal_group"] in ("D_aug1", "D_aug2")
    for group in ("D_aug1", "D_aug2"):
        for fold in range(3):
            done = json.loads((out / "runs" / group / f"fold{fold}" / "seed0" / "done.json").read_text())
            assert done["fold"] == fold and done["group"] == group
    # every lesion is tested exactly once per group: the folds partition the dataset
    summary = json.loads((out / "report" / "D_aug2.json").read_text())
    assert summary["pooled"]["n"] == len(read_dataset(folded_dataset, images=False))
    for name in ("classic_curve.csv", "classic_curve.png", "D_aug1.md", "D_aug2-confusion.png",
                 "optimal.json"):
        assert (out / "report" / name).exists(), name
    # the training groups never hold a test-fold patient
    from keras_lesions.augment import read_augmentation_group

    dataset = read_dataset(folded_dataset, images=False)
    for fold in range(3):
        _, _, meta = read_augmentation_group(out / "augment" / f"fold{fold}.h5", 1)
        test_patients = set(dataset.patient_ids[dataset.folds == fold])
        assert not test_patients & set(np.asarray(meta["patient_id"]).tolist())
    # a second call trains nothing: finished runs are read back
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("model.keras")}
    again = run_classic_curve(config, log=lambda line: None)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("model.keras")} == stamps
    assert again["curve"] == result["curve"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def write_yaml(tmp_path, dataset_path, text=""):
    path = tmp_path / "c.yaml"
    path.write_text(
        f"name: tiny\noutput_dir: {tmp_path / 'out'}\n"
        f"data:\n  dataset: {dataset_path}\n"
        "augment:\n  n_rot: 2\n  n_flip: 1\n  n_trans: 1\n  n_scale: 1\n  group_sizes: [0, 24]\n"
        "classifier:\n  input_size: 16\n  filters: [2, 2, 2]\n  dense_units: 4\n"
        "train:\n  epochs: 1\n  batch_size: 8\n" + text)
    return path


def test_train_cnn_evaluate_and_export_cli(tmp_path, folded_dataset):
    config = write_yaml(tmp_path, folded_dataset)
    result = run("train-cnn", "--config", config, "--fold", 1, "--group", 2)
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "out" / "tiny" / "runs" / "D_aug2" / "fold1" / "seed0"
    assert "test accuracy on fold 1" in result.output and (run_dir / "done.json").exists()
    stamp = (run_dir / "model.keras").stat().st_mtime_ns
    again = run("train-cnn", "--config", config, "--fold", 1, "--group", 2)
    assert again.exit_code == 0 and "already finished" in again.output
    assert (run_dir / "model.keras").stat().st_mtime_ns == stamp
    result = run("evaluate", tmp_path / "out" / "tiny" / "runs")
    assert result.exit_code == 0, result.output
    assert "weighted average" in result.output and "total accuracy" in result.output
    result = run("export", run_dir, "--out", tmp_path / "models" / "clf" / "1")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "models" / "clf" / "1" / "saved_model.pb").exists()


def test_extra_training_set_must_not_hold_test_patients(tmp_path, folded_dataset):
    config = write_yaml(tmp_path, folded_dataset)
    result = run("train-cnn", "--config", config, "--fold", 0, "--extra", folded_dataset)
    assert result.exit_code == 1
    assert "toy.h5" in result.output and "test-fold patient" in result.output


@pytest.mark.parametrize("args, fragments", [
    (["train-cnn", "--fold", "7"], ["toy.h5", "fold 7 is out of range"]),
    (["train-cnn", "--fold", "0", "--group", "9"], ["group index 8 is out of range"]),
])
def test_cli_bad_fold_and_group(tmp_path, folded_dataset, args, fragments):
    config = write_yaml(tmp_path, folded_dataset)
    result = run(*args, "--config", config)
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("kl: error:")
    for fragment in fragments:
        assert fragment in line, result.output


def test_cli_bad_config_and_missing_dataset(tmp_path, folded_dataset):
    bad = write_yaml(tmp_path, folded_dataset, "  epoch: 3\n")
    result = run("experiment", bad)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith(f"kl: error: {bad}: unknown key 'train.epoch'")
    missing = write_yaml(tmp_path, tmp_path / "nope.h5")
    result = run("experiment", missing)
    assert result.exit_code == 1 and "nope.h5: no such dataset file" in result.output
    result = run("experiment", tmp_path / "absent.yaml")
    assert result.exit_code == 1 and "absent.yaml: no such config file" in result.output


def test_augment_cli_builds_each_fold_once(tmp_path, folded_dataset):
    config = write_yaml(tmp_path, folded_dataset)
    result = run("augment", "--config", config, "--fold", 2)
    assert result.exit_code == 0, result.output
    path = tmp_path / "out" / "tiny" / "augment" / "fold2.h5"
    assert path.exists() and not (path.parent / "fold0.h5").exists()
    stamp = path.stat().st_mtime_ns
    assert run("augment", "--config", config, "--fold", 2).exit_code == 0
    assert path.stat().st_mtime_ns == stamp  # stored once, reused
