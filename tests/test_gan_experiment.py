"""CNN-AUG-GAN end to end (tiny), and the GAN commands of the CLI."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from keras_lesions.data.dataset import read_dataset, write_dataset
from keras_lesions.data.folds import make_patient_folds
from keras_lesions_cli.main import cli

from conftest import make_toy_dataset


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _toy(root):
    dataset = make_toy_dataset(lesions_per_patient=(1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 2, 1))
    dataset.folds = make_patient_folds(dataset.labels, dataset.patient_ids, k=3, seed=0)
    dataset.fold_k = 3
    return write_dataset(dataset, root / "toy.h5")


def _run_dir(out, run_id):
    return out / "runs" / run_id


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A tiny gan-curve experiment with every row of Table 5, run once for the module."""
    from keras_lesions.config import load_config
    from keras_lesions.experiments.run import run_experiment

    root = tmp_path_factory.mktemp("gan")
    dataset_path = _toy(root)
    config_path = root / "c.yaml"
    config_path.write_text(
        f"name: tiny\nkind: gan-curve\noutput_dir: {root / 'out'}\n"
        f"data:\n  dataset: {dataset_path}\n"
        "augment:\n  n_rot: 2\n  n_flip: 1\n  n_trans: 1\n  n_scale: 1\n  group_sizes: [0, 16]\n"
        "classifier:\n  filters: [2, 2, 2]\n  dense_units: 4\n"
        "train:\n  epochs: 1\n  steps: 4\n  batch_size: 8\n"
        "gan:\n  width: 0.03125\n  epochs: 1\n  batch_size: 8\n"
        "synth:\n  per_class_sizes: [2, 4]\n  base_group: 2\n  more_real_data: false\n"
        "  compare_diff_augment: true\nevaluate:\n  repeats: 1\n  baselines: true\n")
    config = load_config(config_path)
    result = run_experiment(config, log=lambda line: None)
    return {"root": root, "config": config_path, "result": result, "dataset": dataset_path,
            "out": root / "out" / "tiny"}


@pytest.fixture(scope="module")
def dcgan_experiment(tmp_path_factory):
    """The quick config's shape (DCGANs only, D_aug optimal chosen by the curve) on
    two folds, run once for the module."""
    from keras_lesions.config import load_config
    from keras_lesions.experiments.run import run_experiment

    root = tmp_path_factory.mktemp("dcgan")
    dataset_path = _toy(root)
    config_path = root / "c.yaml"
    config_path.write_text(
        f"name: dcgan-only\nkind: gan-curve\noutput_dir: {root / 'out'}\n"
        f"data:\n  dataset: {dataset_path}\n"
        "augment:\n  n_rot: 2\n  n_flip: 0\n  n_trans: 1\n  n_scale: 0\n  group_sizes: [0, 8]\n"
        "classifier:\n  filters: [2, 2, 2]\n  dense_units: 4\n"
        "train:\n  epochs: 1\n  batch_size: 8\n"
        "gan:\n  width: 0.03125\n  epochs: 1\n  batch_size: 8\n"
        "synth:\n  per_class_sizes: [6]\n  acgan: false\n  more_real_data: false\n"
        "evaluate:\n  folds: [0, 1]\n  repeats: 1\n")
    result = run_experiment(load_config(config_path), log=lambda line: None)
    return {"root": root, "config": config_path, "result": result, "dataset": dataset_path,
            "out": root / "out" / "dcgan-only"}


@pytest.mark.slow
def test_gan_report_has_table6_and_fig9(experiment):
    """evaluate.baselines: the baselines ran as runs of the plan, and the
    report has Table 6 beside CNN-AUG and CNN-AUG-GAN, and Fig. 9 with its
    separation scores."""
    report = experiment["out"] / "report"
    markdown = (report / "gan_report.md").read_text()
    assert "## Table 6" in markdown and "| CNN-AUG-GAN |" in markdown
    assert "| GLCM + SVM |" in markdown and "| BoVW-MI single representation |" in markdown
    assert "## Fig. 9" in markdown and "silhouette" in markdown
    assert (report / "fig9_tsne.png").stat().st_size > 0
    scores = json.loads((report / "fig9_tsne.json").read_text())
    assert len(scores["panels"]) == 2
    assert "D_synth" in scores["panels"][1]["title"]  # the CNN-AUG-GAN run
    assert (report / "table6.md").is_file()


@pytest.mark.slow
def test_gan_curve_writes_every_table_and_an_honest_verdict(experiment):
    result, out = experiment["result"], experiment["out"]
    assert [p["added_per_class"] for p in result["curves"]["DCGAN"]] == [2, 4]
    assert set(result["curves"]) == {"DCGAN", "ACGAN", "DCGAN, DiffAugment swapped",
                                     "classic control"}
    for point in result["curves"]["DCGAN"]:  # every size with its interval
        low, high = point["ci95"]
        assert low <= point["difference"] <= high
    sizes = result["sizes"]
    assert all(v in (2, 4) for by_cell in sizes.values() for v in by_cell.values())
    verdict = result["verdict"]
    assert verdict.startswith("Synthetic augmentation (DCGAN)") and "95% CI" in verdict
    assert "two-sample test" in verdict
    headline = result["comparisons"]["DCGAN"]
    assert headline["outcome"] in ("helped", "hurt", "no evidence")
    assert headline["n_cells"] == 3 and headline["steps"]["baseline"] == headline["steps"][
        "proposed"]  # equal compute: train.steps
    assert set(result["comparisons"]) >= {"ACGAN", "classic control", "DiffAugment",
                                          "DCGAN vs classic control"}
    for name in ("gan_report.md", "gan_curves.png", "gan_summary.json",
                 "gan_table3_best_synthetic.md", "gan_synthetic_vs_real.png"):
        assert (out / "report" / name).exists(), name
    report = (out / "report" / "gan_report.md").read_text()
    assert "Table 5" in report and "Table 7" in report and "ACGAN discriminator" in report
    assert "FID" in report and "Features:" in report and "real vs real" in report
    assert "⚠ FID from fewer samples" in report  # a handful of lesions: flagged
    # what test-fold choices would have printed: the best size on the test folds
    effect = result["selection_effect"]
    assert set(effect) >= {"CNN-AUG", "DCGAN", "ACGAN"}
    for method in ("DCGAN", "ACGAN"):
        best = max(p["accuracy"] for p in result["curves"][method])
        assert effect[method]["test"] == pytest.approx(best)
        assert effect[method]["optimism"] >= -1e-12
    assert "What choosing on the test folds would have reported" in report
    # every classifier run of the experiment finished on every fold, every size
    for group in ("D_aug2", "D_aug2+D_synth2x3", "D_aug2+D_synth4x3", "D_aug2+ACGAN_synth2x3",
                  "D_aug2+ACGAN_synth4x3", "D_aug2+DiffAugSwap_synth4x3",
                  "D_aug2+classic4x3", "ACGAN_discriminator"):
        for fold in range(3):
            run_id = (f"fold{fold}/acgan-discriminator/base-D_aug2"
                      if group == "ACGAN_discriminator" else
                      f"fold{fold}/classifier/{group}/seed0")
            done = json.loads((_run_dir(out, run_id) / "done.json").read_text())
            assert done["group"] == group and done["fold"] == fold


@pytest.mark.slow
def test_gans_learn_only_from_training_folds(experiment):
    out = experiment["out"]
    dataset = read_dataset(experiment["dataset"], images=False)
    for fold in range(3):
        swapped = json.loads((_run_dir(out, f"fold{fold}/gan/dcgan-cyst-diffaug-swap/base-D_aug2/"
                                        "seed0") / "run.json").read_text())
        assert swapped["diff_augment"] == "translation,cutout,color"  # the other setting
        info = json.loads((_run_dir(out, f"fold{fold}/gan/dcgan-cyst/base-D_aug2/seed0")
                           / "run.json").read_text())
        assert info["fold"] == fold and info["class_name"] == "cyst"
        assert info["base_group"] == "D_aug2" and info["diff_augment"] == ""
        from keras_lesions.config import load_config
        from keras_lesions.experiments.registry import open_for

        split = open_for(load_config(experiment["config"]), log=lambda line: None).split(0, fold)
        n_cyst_fit = int((dataset.labels[split.fit] == 0).sum())
        # D_aug2 = the fit originals + 16 augmentations dealt over the fit lesions
        assert n_cyst_fit <= info["n_train"] <= n_cyst_fit + 16
        synth = read_dataset(out / "data" / f"fold{fold}" / "synth" / "dcgan" / "base-D_aug2.h5",
                             images=False)
        assert not set(synth.patient_ids) & set(dataset.patient_ids)


@pytest.mark.slow  # the DCGAN experiment fixture takes ~45 s
def test_rerun_trains_nothing(dcgan_experiment):
    from keras_lesions.config import load_config
    from keras_lesions.experiments.run import describe_plan, run_experiment

    out = dcgan_experiment["out"]
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.keras")}
    assert len(stamps) > 10
    result = run_experiment(load_config(dcgan_experiment["config"]), log=lambda line: None)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.keras")} == stamps
    assert result["verdict"] == dcgan_experiment["result"]["verdict"]
    listing = describe_plan(load_config(dcgan_experiment["config"]), log=lambda line: None)
    assert "pending" not in listing.split("runs:")[0] and "blocked" not in listing.split("runs:")[0]


@pytest.mark.slow  # the DCGAN experiment fixture takes ~45 s
def test_dcgan_experiment_chooses_the_base_group_and_keys_gans_by_it(dcgan_experiment):
    out, result = dcgan_experiment["out"], dcgan_experiment["result"]
    for fold in (0, 1):
        choice = json.loads((out / "choices" / f"fold{fold}" / "D_aug-optimal.json").read_text())
        base = choice["group"]
        assert choice["selected_on"] == "validation"
        for name in ("cyst", "metastasis", "hemangioma"):
            run_dir = _run_dir(out, f"fold{fold}/gan/dcgan-{name}/base-{base}/seed0")
            assert json.loads((run_dir / "done.json").read_text())["base_group"] == base
    assert not (out / "runs" / "fold2").exists()  # evaluate.folds: [0, 1]
    assert not list(out.rglob("acgan*"))  # synth.acgan: false
    assert "ACGAN" not in result["comparisons"]
    assert result["verdict"].startswith("Synthetic augmentation (DCGAN)")
    # train.steps 0: epochs over each set, so the larger set got more steps, and it is said
    steps = result["comparisons"]["DCGAN"]["steps"]
    assert steps["proposed"] > steps["baseline"] and "differ in training budget" in \
        result["verdict"]


def _generator(experiment, name, fold):
    base = json.loads((experiment["out"] / "choices" / f"fold{fold}" / "D_aug-optimal.json"
                       ).read_text())["group"]
    return _run_dir(experiment["out"], f"fold{fold}/gan/dcgan-{name}/base-{base}/seed0")


@pytest.mark.slow  # the DCGAN experiment fixture takes ~45 s
def test_synthesize_then_train_cnn_with_it(dcgan_experiment, tmp_path):
    experiment = dcgan_experiment
    generator = _generator(experiment, "hemangioma", 1)
    synth = tmp_path / "synth.h5"
    result = run("synthesize", "--generator", generator, "--n", 5, "--out", synth, "--seed", 3)
    assert result.exit_code == 0, result.output
    dataset = read_dataset(synth)
    assert len(dataset) == 5 and set(dataset.class_counts().values()) >= {5}
    assert all(l.attributes.get("synthetic") for l in dataset.lesions)
    result = run("train-cnn", "--config", experiment["config"], "--fold", 1, "--extra", synth)
    assert result.exit_code == 0, result.output
    info = json.loads((_run_dir(experiment["out"], "fold1/classifier/D_aug1+synth/seed0") /
                       "run.json").read_text())
    assert info["additions"] == [{"source": "file", "path": str(synth.resolve())}]


@pytest.mark.parametrize("args, fragment", [
    (["train-gan", "--class", "lymphoma"], "unknown class 'lymphoma'"),
    (["synthesize", "--n", "0"], "--n must be a positive number"),
])
@pytest.mark.slow  # the DCGAN experiment fixture takes ~45 s
def test_bad_gan_input(dcgan_experiment, args, fragment, tmp_path):
    experiment = dcgan_experiment
    if args[0] == "synthesize":
        args = args + ["--generator", _generator(experiment, "cyst", 0),
                       "--out", tmp_path / "s.h5"]
    else:
        args = args + ["--config", experiment["config"]]
    result = run(*args)
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("kl: error:") and fragment in line


@pytest.mark.slow  # the DCGAN experiment fixture takes ~45 s
def test_synthesize_refuses_a_classifier_run(dcgan_experiment, tmp_path):
    classifier_run = _run_dir(dcgan_experiment["out"], "fold0/classifier/D_aug1/seed0")
    result = run("synthesize", "--generator", classifier_run, "--n", 3, "--out", tmp_path / "s.h5")
    assert result.exit_code == 1 and str(classifier_run) in result.output
    assert not (tmp_path / "s.h5").exists()


@pytest.mark.slow  # the DCGAN experiment fixture takes ~45 s
def test_synthetic_set_of_another_fold_is_refused(dcgan_experiment, tmp_path):
    """A fold-1 generator learned from fold 0's lesions: it must not augment fold 0."""
    experiment = dcgan_experiment
    generator = _generator(experiment, "cyst", 1)
    synth = tmp_path / "other.h5"
    assert run("synthesize", "--generator", generator, "--n", 3, "--out", synth).exit_code == 0
    result = run("train-cnn", "--config", experiment["config"], "--fold", 0, "--extra", synth)
    assert result.exit_code == 1
    assert "other.h5" in result.output and "may only augment fold 1" in result.output


@pytest.mark.slow
def test_train_gan_trains_the_plans_run(tmp_path):
    """kl train-gan trains the very run the plan lists (base group from the
    config), and an unfinished one only with --resume."""
    dataset_path = _toy(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"name: by-hand\nkind: gan-curve\noutput_dir: {tmp_path / 'out'}\n"
        f"data:\n  dataset: {dataset_path}\n"
        "augment:\n  n_rot: 1\n  n_flip: 0\n  n_trans: 1\n  n_scale: 0\n  group_sizes: [0, 8]\n"
        "gan:\n  width: 0.03125\n  epochs: 1\n  batch_size: 8\n"
        "synth:\n  base_group: 2\n  acgan: false\n  more_real_data: false\n"
        "  classic_control: false\nevaluate:\n  repeats: 1\n")
    listing = run("experiment", config, "--list")
    assert listing.exit_code == 0, listing.output
    run_id = "fold1/gan/dcgan-cyst/base-D_aug2/seed0"
    assert f"blocked  {run_id}" in listing.output
    result = run("train-gan", "--config", config, "--class", "cyst", "--fold", 1)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "by-hand" / "runs" / run_id / "done.json").exists()
    listing = run("experiment", config, "--list")
    assert f"done     {run_id}" in listing.output
    assert "done     fold1/augment" in listing.output and "pending  fold0/augment" in listing.output
    # --only of one GAN run trains just it
    other = "fold1/gan/dcgan-metastasis/base-D_aug2/seed0"
    result = run("experiment", config, "--only", other)
    assert result.exit_code == 0, result.output
    runs = sorted(p.parent.relative_to(tmp_path / "out" / "by-hand" / "runs").as_posix()
                  for p in (tmp_path / "out" / "by-hand" / "runs").rglob("done.json"))
    assert runs == [run_id, other]


@pytest.mark.slow  # the DCGAN experiment fixture takes ~45 s
def test_final_model_follows_the_verdict_or_adds_the_chosen_synthetic_size(dcgan_experiment):
    out, config = dcgan_experiment["out"], dcgan_experiment["config"]
    verdict = dcgan_experiment["result"]["comparisons"]["DCGAN"]["outcome"]
    result = run("train-final", "--config", config)
    assert result.exit_code == 0, result.output
    info = json.loads((out / "final" / "classifier" / "run.json").read_text())
    if verdict != "helped":  # a tiny experiment: no evidence, so no synthetic lesions
        assert "no evidence that DCGAN augmentation helps" in result.output
        assert info["additions"] == [] and not (out / "final" / "gan").exists()
    import shutil

    shutil.rmtree(out / "final" / "classifier")
    result = run("train-final", "--config", config, "--synthetic", "always")
    assert result.exit_code == 0, result.output
    info = json.loads((out / "final" / "classifier" / "run.json").read_text())
    (addition,) = info["additions"]
    assert addition["per_class"] == 6 and "+D_synth6x3" in info["group"]  # the one size offered
    names = read_dataset(dcgan_experiment["dataset"], images=False).class_names
    base = info["group"].split("+")[0]
    for name in names:  # a DCGAN per class, trained on every patient's lesions
        gan = json.loads((out / "final" / "gan" / f"base-{base}" / f"dcgan-{name}" /
                          "done.json").read_text())
        assert gan["final"] is True
    synthetic = read_dataset(out / "final" / f"synthetic-{base}-6.h5", images=False)
    assert synthetic.class_counts() == {n: 6 for n in names}
    n_real = len(read_dataset(dcgan_experiment["dataset"], images=False))
    # every patient's originals, the chosen group's classic augmentations, the synthetic
    assert info["n_train"] == n_real + info["added_samples"] + 6 * len(names)
    card = (out / "final" / "classifier" / "MODEL_CARD.md").read_text()
    assert "DCGAN arm at each cell's chosen synthetic size" in card


@pytest.mark.slow
def test_gan_report_has_table4_of_a_scripted_reader(experiment, tmp_path):
    """The phantom-style experiment's report with all three of §4.3–4.5: a
    reader study of the experiment's real lesions and one cell's DCGAN
    lesions, answered over HTTP by a scripted reader, and the report rebuilt
    with evaluate.reader_study has Fig. 9, Table 6 and that reader's Table 4."""
    import yaml

    from keras_lesions.config import load_config
    from keras_lesions.experiments.run import run_experiment
    from keras_lesions.reader_study.app import create_app
    from keras_lesions.reader_study.study import create_study

    synthetic = sorted((experiment["out"] / "data").glob("fold0/synth/dcgan/base-*.h5"))[0]
    study = create_study(tmp_path / "study.sqlite", experiment["dataset"], synthetic,
                         n_real=6, n_synthetic=6)
    truths = study.truths()
    client = create_app(study).test_client()
    assert client.post("/start", data={"name": "Scripted"}).status_code == 303
    state = client.get("/api/state/Scripted").json
    while not state["finished"]:  # the right class always; "real" always
        truth = truths[state["item"]]
        value = truth["truth_class"] if state["question"] == "class" else "real"
        state = client.post("/api/answer", json={"reader": "Scripted",
                                                 "position": state["position"],
                                                 "question": state["question"],
                                                 "value": value}).json
    settings = yaml.safe_load(experiment["config"].read_text())
    settings["evaluate"]["reader_study"] = str(study.path)
    with_study = tmp_path / "with-study.yaml"
    with_study.write_text(yaml.safe_dump(settings))
    lines = []
    run_experiment(load_config(with_study), log=lines.append)  # only the report is remade
    assert "the report is made again: evaluate.reader_study changed" in lines
    report = experiment["out"] / "report"
    markdown = (report / "gan_report.md").read_text()
    assert "## Fig. 9" in markdown and "## Table 6" in markdown
    assert "## Table 4" in markdown
    # every class right (6 real, 6 synthetic), real-vs-synthetic right on the 6 real only
    assert "| Scripted | 100.0 (" in markdown and "12\\12 = 100.0" in markdown
    assert "6\\12 = 50.0" in markdown
    assert (report / "table4.md").is_file()
    # a second reader's first answer: the next run remakes the report with it
    study.start_reader("Second")
    study.answer("Second", 0, "class", study.class_names[0])
    study.answer("Second", 0, "origin", "real")
    lines.clear()
    run_experiment(load_config(with_study), log=lines.append)
    assert "the report is made again: the reader study holds answers it has not read" in lines
    assert "| Second |" in (report / "gan_report.md").read_text()
    lines.clear()
    run_experiment(load_config(with_study), log=lines.append)
    assert not any("made again" in x for x in lines)

    settings["evaluate"]["reader_study"] = str(tmp_path / "absent.sqlite")
    with_study.write_text(yaml.safe_dump(settings))
    result = run("experiment", with_study, "--report")
    assert result.exit_code == 1 and "absent.sqlite: no such study database" in result.output
