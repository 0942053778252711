"""CNN-AUG-GAN end to end (tiny), and the GAN commands of the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from keras_lesions.data.dataset import read_dataset, write_dataset
from keras_lesions.data.folds import make_patient_folds
from keras_lesions_cli.main import cli

from conftest import make_toy_dataset


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A tiny gan-curve experiment, run once for the module."""
    from keras_lesions.config import load_config
    from keras_lesions.evaluate.gan_experiment import run_gan_curve

    root = tmp_path_factory.mktemp("gan")
    dataset = make_toy_dataset(lesions_per_patient=(1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 2, 1))
    dataset.folds = make_patient_folds(dataset.labels, dataset.patient_ids, k=3, seed=0)
    dataset.fold_k = 3
    dataset_path = write_dataset(dataset, root / "toy.h5")
    config_path = root / "c.yaml"
    config_path.write_text(
        f"name: tiny\nkind: gan-curve\noutput_dir: {root / 'out'}\n"
        f"data:\n  dataset: {dataset_path}\n"
        "augment:\n  n_rot: 2\n  n_flip: 1\n  n_trans: 1\n  n_scale: 1\n  group_sizes: [0, 16]\n"
        "classifier:\n  filters: [2, 2, 2]\n  dense_units: 4\n"
        "train:\n  epochs: 1\n  batch_size: 8\n"
        "gan:\n  width: 0.03125\n  epochs: 1\n  batch_size: 8\n"
        "synth:\n  per_class_sizes: [2, 4]\n  base_group: 2\n  more_real_data: false\n"
        "  compare_diff_augment: true\n")
    config = load_config(config_path)
    result = run_gan_curve(config, log=lambda line: None)
    return {"root": root, "config": config_path, "result": result, "dataset": dataset_path,
            "out": root / "out" / "tiny"}


def test_gan_curve_writes_every_table_and_an_honest_verdict(experiment):
    result, out = experiment["result"], experiment["out"]
    assert result["base_group"] == "D_aug2"
    assert [p["added_per_class"] for p in
            result["curves"]["synthetic (CNN-AUG-GAN, DCGAN)"]] == [0, 2, 4]
    assert result["best_synthetic_per_class"] in (2, 4)
    verdict = result["verdict"]
    assert verdict.startswith("Synthetic augmentation ") and "per fold" in verdict
    assert "DiffAugment (translation,cutout,color)" in verdict and "KID" in verdict
    for name in ("gan_report.md", "gan_curves.png", "gan_summary.json",
                 "gan_table3_best_synthetic.md", "gan_synthetic_vs_real.png"):
        assert (out / "report" / name).exists(), name
    report = (out / "report" / "gan_report.md").read_text()
    assert "Table 5" in report and "Table 7" in report and "ACGAN discriminator" in report
    assert "FID" in report and "Features:" in report
    # every classifier run of the experiment finished on every fold
    for group in ("D_aug2", "D_aug2+D_synth2x3", "D_aug2+D_synth4x3",
                  f"D_aug2+ACGAN_synth{result['best_synthetic_per_class']}x3",
                  f"D_aug2+DiffAugSwap_synth{result['best_synthetic_per_class']}x3",
                  "ACGAN_discriminator"):
        for fold in range(3):
            assert (out / "runs" / group / f"fold{fold}" / "seed0" / "done.json").exists(), group


def test_gans_learn_only_from_training_folds(experiment):
    out = experiment["out"]
    dataset = read_dataset(experiment["dataset"], images=False)
    for fold in range(3):
        swapped = json.loads((out / "gan" / "dcgan-cyst-diffaug-swap" / f"fold{fold}" /
                              "run.json").read_text())
        assert "translation" in json.dumps(swapped)  # trained with DiffAugment on
        info = json.loads((out / "gan" / "dcgan-cyst" / f"fold{fold}" / "run.json").read_text())
        assert info["fold"] == fold and info["class_name"] == "cyst"
        n_cyst_train = sum(1 for l, f in zip(dataset.labels, dataset.folds)
                           if l == 0 and f != fold)
        # D_aug2 = originals + 16 augmentations dealt over the training lesions
        assert n_cyst_train <= info["n_train"] <= n_cyst_train + 16
        synth = read_dataset(out / "synth" / f"fold{fold}-dcgan.h5", images=False)
        assert not set(synth.patient_ids) & set(dataset.patient_ids)


def test_rerun_trains_nothing(experiment):
    from keras_lesions.config import load_config
    from keras_lesions.evaluate.gan_experiment import run_gan_curve

    out = experiment["out"]
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.keras")}
    run_gan_curve(load_config(experiment["config"]), log=lambda line: None)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.keras")} == stamps


def test_synthesize_then_train_cnn_with_it(experiment, tmp_path):
    generator = experiment["out"] / "gan" / "dcgan-hemangioma" / "fold1"
    synth = tmp_path / "synth.h5"
    result = run("synthesize", "--generator", generator, "--n", 5, "--out", synth, "--seed", 3)
    assert result.exit_code == 0, result.output
    dataset = read_dataset(synth)
    assert len(dataset) == 5 and set(dataset.class_counts().values()) >= {5}
    assert all(l.attributes.get("synthetic") for l in dataset.lesions)
    result = run("train-cnn", "--config", experiment["config"], "--fold", 1, "--extra", synth)
    assert result.exit_code == 0, result.output
    info = json.loads((experiment["out"] / "runs" / "D_aug1+synth" / "fold1" / "seed0" /
                       "run.json").read_text())
    assert info["extra_datasets"] == [str(synth)]


@pytest.mark.parametrize("args, fragment", [
    (["train-gan", "--class", "lymphoma"], "unknown class 'lymphoma'"),
    (["synthesize", "--n", "0"], "--n must be a positive number"),
])
def test_bad_gan_input(experiment, args, fragment, tmp_path):
    if args[0] == "synthesize":
        args = args + ["--generator", experiment["out"] / "gan" / "acgan" / "fold0",
                       "--out", tmp_path / "s.h5"]
    else:
        args = args + ["--config", experiment["config"]]
    result = run(*args)
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("kl: error:") and fragment in line


def test_synthesize_refuses_a_classifier_run(experiment, tmp_path):
    classifier_run = experiment["out"] / "runs" / "D_aug1" / "fold0" / "seed0"
    result = run("synthesize", "--generator", classifier_run, "--n", 3, "--out", tmp_path / "s.h5")
    assert result.exit_code == 1 and str(classifier_run) in result.output
    assert not (tmp_path / "s.h5").exists()


def test_synthetic_set_of_another_fold_is_refused(experiment, tmp_path):
    """A fold-1 generator learned from fold 0's lesions: it must not augment fold 0."""
    generator = experiment["out"] / "gan" / "dcgan-cyst" / "fold1"
    synth = tmp_path / "other.h5"
    assert run("synthesize", "--generator", generator, "--n", 3, "--out", synth).exit_code == 0
    result = run("train-cnn", "--config", experiment["config"], "--fold", 0, "--extra", synth)
    assert result.exit_code == 1
    assert "other.h5" in result.output and "may only augment fold 1" in result.output


def test_dcgan_only_experiment_as_the_demo_runs_it(tmp_path):
    """No ACGAN, no extra pool, no DiffAugment comparison: the quick config's shape."""
    from keras_lesions.config import load_config
    from keras_lesions.evaluate.gan_experiment import run_gan_curve

    dataset = make_toy_dataset(lesions_per_patient=(1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 2, 1))
    dataset.folds = make_patient_folds(dataset.labels, dataset.patient_ids, k=3, seed=0)
    dataset.fold_k = 3
    dataset_path = write_dataset(dataset, tmp_path / "toy.h5")
    config = load_config(None, {
        "name": "dcgan-only", "kind": "gan-curve", "output_dir": str(tmp_path / "out"),
        "data.dataset": str(dataset_path), "augment.n_rot": 1, "augment.n_flip": 0,
        "augment.n_trans": 1, "augment.n_scale": 0, "augment.group_sizes": [0, 8],
        "classifier.filters": [2, 2, 2], "classifier.dense_units": 4, "train.epochs": 1,
        "train.batch_size": 8, "gan.width": 0.03125, "gan.epochs": 1, "gan.batch_size": 8,
        "synth.per_class_sizes": [2], "synth.acgan": False, "synth.more_real_data": False,
        "evaluate.folds": [0, 1]})
    result = run_gan_curve(config, log=lambda line: None)
    out = tmp_path / "out" / "dcgan-only"
    assert not (out / "gan" / "acgan").exists() and not (out / "runs" / "ACGAN_discriminator").exists()
    assert result["verdict"].startswith("Synthetic augmentation")
    assert "not run" in (out / "report" / "gan_report.md").read_text()  # ACGAN rows say so
