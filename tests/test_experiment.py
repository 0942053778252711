"""The CNN-AUG cross-validation experiment end to end, tiny, and its CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from keras_lesions.config import load_config
from keras_lesions.data.dataset import read_dataset, write_dataset
from keras_lesions.experiments.run import describe_plan, run_experiment
from keras_lesions_cli.main import cli

from conftest import make_toy_dataset


def tiny_config(tmp_path, dataset_path, **extra):
    overrides = {
        "name": "tiny", "output_dir": str(tmp_path / "out"), "data.dataset": str(dataset_path),
        "augment.n_rot": 2, "augment.n_trans": 1, "augment.n_scale": 1, "augment.n_flip": 1,
        "augment.group_sizes": [0, 24], "classifier.input_size": 16,
        "classifier.filters": [2, 2, 2], "classifier.dense_units": 4, "train.epochs": 1,
        "train.batch_size": 8, "evaluate.repeats": 1, **extra}
    return load_config(None, overrides)


def test_curve_runs_every_fold_and_group_and_resumes(tmp_path, folded_dataset):
    config = tiny_config(tmp_path, folded_dataset)
    result = run_experiment(config, log=lambda line: None)
    out = tmp_path / "out" / "tiny"
    assert [p["added_samples"] for p in result["curve"]] == [0, 24]
    assert {c["group"] for c in result["choices"]} <= {"D_aug1", "D_aug2"}
    assert len(result["choices"]) == 3 and result["selected_on"] == "validation"
    for group in ("D_aug1", "D_aug2"):
        for fold in range(3):
            done = json.loads((run_dir(out, fold, group) / "done.json").read_text())
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
    again = run_experiment(config, log=lambda line: None)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("model.keras")} == stamps
    assert again["curve"] == result["curve"]
    # ... nor remakes the report, until a report-only setting changes or a
    # run it reads finished after it (evaluate.baselines turned on later)
    result_json = out / "report" / "result.json"
    made = result_json.stat().st_mtime_ns
    lines = []
    run_experiment(config, log=lines.append)
    assert result_json.stat().st_mtime_ns == made and not any("made again" in x for x in lines)
    margin = tiny_config(tmp_path, folded_dataset, **{"evaluate.class_sensitivity_margin": 0.1})
    run_experiment(margin, log=lines.append)
    assert "the report is made again: evaluate.class_sensitivity_margin changed" in lines
    assert result_json.stat().st_mtime_ns > made
    import os

    done = run_dir(out, 1, "D_aug2") / "done.json"
    later = result_json.stat().st_mtime + 10
    os.utime(done, (later, later))
    lines.clear()
    run_experiment(margin, log=lines.append)
    assert "the report is made again: run fold1/classifier/D_aug2/seed0 finished after it" \
        in lines
    assert result_json.stat().st_mtime_ns > made
    os.utime(done, (made / 1e9, made / 1e9))
    # a report written before results recorded their settings is made once more
    old = json.loads(result_json.read_text())
    old.pop("report_settings")
    result_json.write_text(json.dumps(old))
    lines.clear()
    run_experiment(margin, log=lines.append)
    assert "the report is made again: it was made before reports recorded their settings" \
        in lines
    lines.clear()
    run_experiment(margin, log=lines.append)
    assert not any("made again" in x for x in lines)


def run_dir(out, fold, group, seed=0):
    """Where the plan puts a classifier run."""
    return out / "runs" / f"fold{fold}" / "classifier" / group / f"seed{seed}"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def write_yaml(tmp_path, dataset_path, text=""):
    path = tmp_path / "c.yaml"
    path.write_text(
        f"name: tiny\noutput_dir: {tmp_path / 'out'}\n"
        f"data:\n  dataset: {dataset_path}\n"
        "augment:\n  n_rot: 2\n  n_flip: 1\n  n_trans: 1\n  n_scale: 1\n  group_sizes: [0, 24]\n"
        "classifier:\n  input_size: 16\n  filters: [2, 2, 2]\n  dense_units: 4\n"
        "train:\n  epochs: 1\n  batch_size: 8\n" + text
        + ("" if "evaluate:" in text else "evaluate:\n  repeats: 1\n"))
    return path


def test_train_cnn_evaluate_and_export_cli(tmp_path, folded_dataset):
    config = write_yaml(tmp_path, folded_dataset)
    result = run("train-cnn", "--config", config, "--fold", 1, "--group", 2)
    assert result.exit_code == 0, result.output
    folder = run_dir(tmp_path / "out" / "tiny", 1, "D_aug2")
    assert "test accuracy on fold 1" in result.output and (folder / "done.json").exists()
    stamp = (folder / "model.keras").stat().st_mtime_ns
    again = run("train-cnn", "--config", config, "--fold", 1, "--group", 2)
    assert again.exit_code == 0 and "already finished" in again.output
    assert (folder / "model.keras").stat().st_mtime_ns == stamp
    result = run("evaluate", tmp_path / "out" / "tiny" / "runs")
    assert result.exit_code == 0, result.output
    assert "weighted average" in result.output and "total accuracy" in result.output
    result = run("export", folder, "--out", tmp_path / "models" / "clf" / "1")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "models" / "clf" / "1" / "saved_model.pb").exists()


def test_extra_training_set_must_not_hold_test_patients(tmp_path, folded_dataset):
    config = write_yaml(tmp_path, folded_dataset)
    result = run("train-cnn", "--config", config, "--fold", 0, "--extra", folded_dataset)
    assert result.exit_code == 1
    assert "toy.h5" in result.output and "test-fold patient" in result.output


@pytest.mark.parametrize("args, fragments", [
    (["train-cnn", "--fold", "7"], ["toy.h5", "fold 7 is out of range"]),
    (["train-cnn", "--fold", "0", "--group", "9"], ["there is no D_aug9", "D_aug1..D_aug2"]),
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


def test_experiment_folder_refuses_other_settings(tmp_path, folded_dataset):
    config = write_yaml(tmp_path, folded_dataset)
    assert run("augment", "--config", config, "--fold", 0).exit_code == 0
    changed = tmp_path / "changed.yaml"
    changed.write_text(config.read_text().replace("group_sizes: [0, 24]", "group_sizes: [0, 12]"))
    result = run("train-cnn", "--config", changed, "--fold", 0, "--group", 2)
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert "holds results made with other settings" in line and "augment.group_sizes" in line
    # every setting that changes a result is fingerprinted, seeds and choices included
    more_seeds = tmp_path / "seeds.yaml"
    more_seeds.write_text(config.read_text().replace("  repeats: 1\n",
                                                     "  repeats: 1\n  seeds: [0, 1]\n"))
    result = run("augment", "--config", more_seeds, "--fold", 0)
    assert result.exit_code == 1 and "evaluate.seeds was [0], now [0, 1]" in result.output
    # the settings it was made with still open it
    assert run("augment", "--config", config, "--fold", 0).exit_code == 0


def test_runs_with_extra_data_are_kept_apart_from_cnn_aug(tmp_path, folded_dataset):
    extra = make_toy_dataset(lesions_per_patient=(1, 1, 1), seed=5)
    for lesion in extra.lesions:
        lesion.patient_id = "X-" + lesion.patient_id
        lesion.lesion_id = "X-" + lesion.lesion_id
    extra_path = write_dataset(extra, tmp_path / "synth.h5")
    config = write_yaml(tmp_path, folded_dataset)
    result = run("train-cnn", "--config", config, "--fold", 0, "--extra", extra_path)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / "tiny"
    assert (run_dir(out, 0, "D_aug1+synth") / "done.json").exists()
    assert not run_dir(out, 0, "D_aug1").exists()
    info = json.loads((run_dir(out, 0, "D_aug1+synth") / "run.json").read_text())
    assert info["n_train"] > len(read_dataset(folded_dataset, images=False)) * 2 / 3


def test_evaluate_refuses_to_pool_two_experiments(tmp_path, folded_dataset):
    for name in ("a", "b"):
        config = write_yaml(tmp_path, folded_dataset)
        config.write_text(config.read_text().replace("name: tiny", f"name: {name}"))
        assert run("train-cnn", "--config", config, "--fold", 0).exit_code == 0
    result = run("evaluate", tmp_path / "out")
    assert result.exit_code == 1 and "same repeat, fold and seed" in result.output
    assert run("evaluate", tmp_path / "out" / "a" / "runs").exit_code == 0


def test_run_killed_between_training_and_testing_finishes_without_training(
        tmp_path, folded_dataset):
    """Killed after the model was saved but before done.json: the checkpoint is
    still there (it goes only after done.json), so --resume tests and finishes."""
    from keras_lesions.experiments.manual import train_cnn
    from keras_lesions.train.classifier import train_classifier

    config = write_yaml(tmp_path, folded_dataset)
    assert run("train-cnn", "--config", config, "--fold", 0).exit_code == 0
    folder = run_dir(tmp_path / "out" / "tiny", 0, "D_aug1")
    finished = json.loads((folder / "done.json").read_text())
    # Train the same run again into a fresh folder, stopping where a kill would.
    loaded = load_config(config)
    again = tmp_path / "again"
    from keras_lesions.experiments.classic_curve import base_group
    from keras_lesions.experiments.registry import open_for
    from keras_lesions.pipeline import one_hot

    exp = open_for(loaded, log=lambda line: None)
    images, labels = base_group(exp, 0, 0, 0)
    train_classifier(images, one_hot(labels, 3), loaded, again,
                     run_info={"repeat": 0, "fold": 0, "group": "D_aug1"})
    assert (again / "model.keras").exists() and (again / "checkpoint").exists()
    history = (again / "history.csv").read_text()
    result = train_cnn(loaded, 0, 0, run_dir=again, resume=True, log=lambda line: None)
    assert not result["already_done"] and (again / "done.json").exists()
    assert not (again / "checkpoint").exists()
    assert (again / "history.csv").read_text() == history  # no epoch was trained again
    assert result["accuracy"] == finished["test_accuracy"]  # the same run, to the bit


def test_plan_lists_every_run_with_its_state(tmp_path, folded_dataset):
    config = tiny_config(tmp_path, folded_dataset)
    listing = describe_plan(config, log=lambda line: None)
    assert not (tmp_path / "out" / "tiny" / "experiment.json").exists()  # looking records nothing
    assert "pending  fold0/augment" in listing
    assert "blocked  fold2/classifier/D_aug2/seed0" in listing and "waits for fold2/augment" in listing
    assert "blocked  choose/fold1/D_aug-optimal" in listing and "blocked  report" in listing
    assert "13 runs: 0 done, 3 pending, 10 blocked" in listing
    result = run("experiment", write_yaml(tmp_path, folded_dataset), "--only", "fold1/augment")
    assert result.exit_code == 0, result.output
    listing = describe_plan(config, log=lambda line: None)
    assert "done     fold1/augment" in listing and "pending  fold1/classifier/D_aug1/seed0" in listing
    result = run("experiment", write_yaml(tmp_path, folded_dataset), "--only",
                 "fold0/classifier/D_aug1/seed0")
    assert result.exit_code == 1
    assert "needs 1 run(s) not done yet, such as 'fold0/augment'" in result.output
    result = run("experiment", write_yaml(tmp_path, folded_dataset), "--only", "fold9/nothing")
    assert result.exit_code == 1 and "the plan has no run 'fold9/nothing'" in result.output


def test_experiment_folder_of_the_earlier_layout_is_refused(tmp_path, folded_dataset):
    """Folders of keras-lesions before plans of runs cannot be resumed: one line says so."""
    out = tmp_path / "out" / "tiny"
    out.mkdir(parents=True)
    (out / "experiment.json").write_text(json.dumps({"config": {}, "dataset": {}}))
    (out / "runs" / "D_aug1" / "fold0" / "seed0").mkdir(parents=True)
    result = run("experiment", write_yaml(tmp_path, folded_dataset))
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"kl: error: {out}: was made by an earlier keras-lesions")
    assert "use another name or output_dir, or delete the folder" in line
    assert json.loads((out / "experiment.json").read_text()) == {"config": {}, "dataset": {}}


def test_phantoms_generated_meanwhile_by_another_command_are_kept(tmp_path, folded_dataset,
                                                                  monkeypatch):
    """A `kl experiment --list` started beside a run that is still generating
    its phantoms: whichever finishes second keeps the first's file, so the
    dataset stamp in the recorded fingerprint stays the one the runs read."""
    import keras_lesions.data.builtin as builtin
    from keras_lesions.experiments.context import prepare_dataset
    from keras_lesions.experiments.layout import ExperimentLayout

    config = tiny_config(tmp_path, "phantoms:frid-adar-2018")
    layout = ExperimentLayout(tmp_path / "out" / "tiny")
    first = read_dataset(folded_dataset)

    def generate_while_another_command_finishes(*args, **kwargs):
        write_dataset(read_dataset(folded_dataset), layout.generated_dataset)  # the other one
        second = read_dataset(folded_dataset)
        second.created_at = "2030-01-01T00:00:00+00:00"
        return second

    monkeypatch.setattr(builtin, "make_phantom_dataset", generate_while_another_command_finishes)
    lines = []
    path = prepare_dataset(config, layout, lines.append)
    assert read_dataset(path, images=False).created_at == first.created_at
    assert "generated meanwhile by another command" in lines[-1]
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
