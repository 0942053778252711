"""``kl predict`` and the end-to-end serving signature: new lesions are
classified exactly as the run's own test lesions were, and bad inputs are
refused with one line and nothing written."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from keras_lesions.runs.predictions import read_predictions
from keras_lesions_cli.main import cli

# A tiny classifier on 16×16 inputs (seconds to train), 3 patient-level folds.
TINY = {"name": "tiny", "kind": "classic-curve",
        "augment": {"n_rot": 2, "n_flip": 1, "n_trans": 1, "n_scale": 1, "group_sizes": [0, 12]},
        "classifier": {"input_size": 16, "filters": [2, 4, 4], "dense_units": 8},
        "train": {"epochs": 2, "batch_size": 8, "learning_rate": 0.05},
        "evaluate": {"folds": [0, 1, 2], "repeats": 1}}
CLASSES = ("cyst", "metastasis")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _roi(rng, label: int, side: int) -> np.ndarray:
    """A grey ROI: a disc darker for class 1, in noise."""
    yy, xx = np.mgrid[:side, :side]
    disc = (yy - side / 2) ** 2 + (xx - side / 2) ** 2 <= (side / 3) ** 2
    image = rng.normal(150, 20, (side, side))
    image[disc] -= 40 + 50 * label
    return np.clip(image, 0, 255).astype(np.uint8)


def _train(root: Path, dataset: Path) -> Path:
    assert run("data", "folds", dataset, "--k", "3").exit_code == 0
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "output_dir": str(root / "out"),
                                      "data": {"dataset": str(dataset)}}))
    run_dir = root / "run"
    result = run("train-cnn", "--config", config, "--fold", "0", "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture(scope="module")
def png_run(tmp_path_factory):
    """Class folders of PNG ROIs (sizes 18-30 px) with a patient CSV, imported,
    and a tiny classifier trained on fold 0's training patients."""
    root = tmp_path_factory.mktemp("png_run")
    _png_cohort(root, "pngs", "patients.csv", root / "ds.h5", n=24, seed=0, stem="roi",
                prefix="P", sides=(18, 13))
    return root, _train(root, root / "ds.h5")


def _png_cohort(root: Path, folder: str, csv_name: str, out: Path, *, n: int, seed: int,
                stem: str, prefix: str, sides: tuple[int, int], classes=CLASSES) -> None:
    """``n`` PNG ROIs in class folders (two lesions per patient ``prefix``NN,
    sides from sides[0] up by i mod sides[1]), their patient CSV, imported to ``out``."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        name = f"{classes[label]}/{stem}{i:02d}.png"
        (root / folder / classes[label]).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / folder / name), _roi(rng, label, sides[0] + i % sides[1]))
        rows.append({"file": name, "patient_id": f"{prefix}{i // 2:02d}"})
    with open(root / csv_name, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "patient_id"])
        writer.writeheader()
        writer.writerows(rows)
    result = run("data", "import", root / folder, out, "--mapping", root / csv_name,
                 "--input-size", 16)
    assert result.exit_code == 0, result.output


def _read_csv(path: Path) -> dict[str, dict]:
    with open(path, newline="") as handle:
        return {row["lesion_id"]: row for row in csv.DictReader(handle)}


def _probabilities(rows: dict[str, dict], ids) -> np.ndarray:
    return np.array([[float(rows[i][f"p_{c}"]) for c in CLASSES] for i in ids])


def test_predict_class_folders_equals_the_runs_test_predictions(png_run, tmp_path):
    root, run_dir = png_run
    out = tmp_path / "p.csv"
    result = run("predict", run_dir, root / "pngs", "-o", out, "--mapping", root / "patients.csv")
    assert result.exit_code == 0, result.output
    assert "24 lesions predicted" in result.output
    rows = _read_csv(out)
    assert len(rows) == 24
    test = read_predictions(run_dir)
    ids = test["lesion_ids"].tolist()
    np.testing.assert_allclose(_probabilities(rows, ids), test["probabilities"], atol=1e-6)
    assert [rows[i]["true_class"] for i in ids] == [CLASSES[y] for y in test["y_true"]]
    assert [rows[i]["predicted"] for i in ids] == [CLASSES[y] for y in test["y_pred"]]


def test_predict_an_unlabelled_folder_and_the_dataset_file(png_run, tmp_path):
    root, run_dir = png_run
    flat = tmp_path / "new"
    flat.mkdir()
    test = read_predictions(run_dir)
    for lesion_id in test["lesion_ids"].tolist():  # "cyst/roi00" -> new/roi00.png
        (flat / (Path(lesion_id).name + ".png")).write_bytes(
            (root / "pngs" / (lesion_id + ".png")).read_bytes())
    result = run("predict", run_dir, flat, "-o", tmp_path / "flat.csv")
    assert result.exit_code == 0, result.output
    rows = _read_csv(tmp_path / "flat.csv")
    names = [Path(i).name for i in test["lesion_ids"].tolist()]
    np.testing.assert_allclose(_probabilities(rows, names), test["probabilities"], atol=1e-6)
    assert all(rows[n]["true_class"] == "" for n in names)

    # one class's folder alone (a dataset needs two classes, new cases need not)
    single = tmp_path / "single"
    shutil.copytree(root / "pngs" / "metastasis", single / "metastasis")
    result = run("predict", run_dir, single, "-o", tmp_path / "single.csv")
    assert result.exit_code == 0, result.output
    rows = _read_csv(tmp_path / "single.csv")
    assert len(rows) == 12 and {r["true_class"] for r in rows.values()} == {"metastasis"}
    both = _read_csv(tmp_path / "flat.csv")
    tested = [i for i in test["lesion_ids"].tolist() if i.startswith("metastasis/")]
    np.testing.assert_allclose(_probabilities(rows, tested),
                               _probabilities(both, [Path(i).name for i in tested]), atol=1e-6)

    result = run("predict", run_dir, root / "ds.h5", "-o", tmp_path / "ds.csv")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(_probabilities(_read_csv(tmp_path / "ds.csv"),
                                              test["lesion_ids"].tolist()),
                               test["probabilities"], atol=1e-6)


def _volumes(root: Path, rng) -> Path:
    """12 small NIfTI volumes (HU), one ball lesion each, and their mapping CSV."""
    (root / "ct").mkdir(parents=True)
    rows = []
    for i in range(12):
        label = i % 2
        shape = (40, 40, 6)
        hu = rng.normal(60, 15, shape).astype(np.float32)
        ii, jj, kk = np.indices(shape)
        r = 5 + i % 4
        ball = ((ii - 20) ** 2 + (jj - 19) ** 2) <= r ** 2
        ball &= (kk >= 2) & (kk <= 3)
        hu[ball] = 10 if label == 0 else 120
        nib.save(nib.Nifti1Image(hu.astype(np.int16), np.diag([0.8, 0.8, 2.5, 1.0])),
                 root / "ct" / f"case{i:02d}.nii.gz")
        nib.save(nib.Nifti1Image(ball.astype(np.uint8), np.diag([0.8, 0.8, 2.5, 1.0])),
                 root / "ct" / f"case{i:02d}_mask.nii.gz")
        rows.append({"volume": f"ct/case{i:02d}.nii.gz", "mask": f"ct/case{i:02d}_mask.nii.gz",
                     "label": "1", "class": CLASSES[label], "patient_id": f"P{i:02d}"})
    with open(root / "lesions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root / "lesions.csv"


def test_predict_ct_volumes_with_masks_equals_the_runs_test_predictions(tmp_path):
    mapping = _volumes(tmp_path, np.random.default_rng(1))
    result = run("data", "import", tmp_path, tmp_path / "ct.h5", "--mapping", mapping,
                 "--input-size", 16, "--classes", ",".join(CLASSES))
    assert result.exit_code == 0, result.output
    run_dir = _train(tmp_path, tmp_path / "ct.h5")
    assert json.loads((run_dir / "run.json").read_text())["preprocessing"]["intensity_unit"] == "HU"
    result = run("predict", run_dir, tmp_path, "--mapping", mapping, "-o", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    rows = _read_csv(tmp_path / "p.csv")
    test = read_predictions(run_dir)
    np.testing.assert_allclose(_probabilities(rows, test["lesion_ids"].tolist()),
                               test["probabilities"], atol=1e-6)

    # The HU branch of the raw signature: .npy ROIs in HU, windowed in the graph,
    # give what kl predict gives for the same files.
    rois = tmp_path / "hu_rois"
    rois.mkdir()
    rng = np.random.default_rng(4)
    arrays = {}
    for i in range(4):
        side = 14 + 5 * i
        roi = rng.normal(60, 30, (side, side)).astype(np.float32)
        roi[side // 4: 3 * side // 4, side // 4: 3 * side // 4] = 10 + 100 * (i % 2)
        np.save(rois / f"h{i}.npy", roi)
        arrays[f"h{i}"] = roi
    result = run("predict", run_dir, rois, "-o", tmp_path / "hu.csv")
    assert result.exit_code == 0, result.output
    export = tmp_path / "saved" / "ct" / "1"
    assert run("export", run_dir, "--out", export).exit_code == 0
    np.savez(tmp_path / "hu.npz", **arrays)
    served = subprocess.run([sys.executable, "-c", SERVE_SCRIPT.replace("[False]", "[HU]")
                             .replace("[True]", "[not HU]").replace("import json, sys",
                                                                  "import json, sys\nHU = True")
                             .replace("trained on normalized", "trained on Hounsfield"),
                             str(export), str(tmp_path / "hu.npz"), str(tmp_path / "hu.json")],
                            capture_output=True, text=True)
    assert served.returncode == 0, served.stderr[-2000:]
    raw = json.loads((tmp_path / "hu.json").read_text())
    assert raw.pop("refused") is True
    ids = sorted(arrays)
    np.testing.assert_allclose(np.array([raw[i] for i in ids]),
                               _probabilities(_read_csv(tmp_path / "hu.csv"), ids), atol=1e-4)

    # HU-trained: a folder of PNGs (normalized values) is refused, nothing written
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    cv2.imwrite(str(pngs / "a.png"), _roi(np.random.default_rng(2), 0, 20))
    result = run("predict", run_dir, pngs, "-o", tmp_path / "refused.csv")
    assert result.exit_code != 0 and not (tmp_path / "refused.csv").exists()
    assert "trained on Hounsfield units" in result.output and str(pngs) in result.output


SERVE_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
export, arrays, out = sys.argv[1:4]
loaded = tf.saved_model.load(export)
rois = np.load(arrays, allow_pickle=False)
result = {}
for name in rois.files:  # one ROI per call: each keeps its own size
    roi = rois[name].astype(np.float32)[None, :, :, None]
    raw = loaded.signatures["serve_raw"](roi=tf.constant(roi), hounsfield=tf.constant([False]))
    result[name] = raw["probabilities"].numpy()[0].tolist()
try:
    loaded.signatures["serve_raw"](roi=tf.constant(roi), hounsfield=tf.constant([True]))
    result["refused"] = False
except tf.errors.InvalidArgumentError as exc:
    result["refused"] = "trained on normalized" in str(exc)
json.dump(result, open(out, "w"))
"""


def test_end_to_end_signature_equals_kl_predict_in_a_fresh_process(png_run, tmp_path):
    root, run_dir = png_run
    export = tmp_path / "saved" / "lesions" / "1"
    result = run("export", run_dir, "--out", export)
    assert result.exit_code == 0, result.output
    shown = subprocess.run([str(Path(sys.executable).parent / "saved_model_cli"), "show",
                            "--dir", str(export), "--all"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "signature_def['serving_default']" in shown.stdout
    assert "signature_def['serve_raw']" in shown.stdout
    description = json.loads((export / "assets.extra" / "classifier.json").read_text())
    assert description["preprocessing"]["intensity_unit"] == "normalized"

    # the PNGs as read_roi_image reads them (8-bit / 255), handed to the graph raw
    from keras_lesions.data.importers import read_roi_image

    files = sorted((root / "pngs").rglob("*.png"))
    arrays = {f"{f.parent.name}/{f.stem}": read_roi_image(f)[0] for f in files}
    np.savez(tmp_path / "rois.npz", **arrays)
    served = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, str(export),
                             str(tmp_path / "rois.npz"), str(tmp_path / "served.json")],
                            capture_output=True, text=True)
    assert served.returncode == 0, served.stderr[-2000:]
    raw = json.loads((tmp_path / "served.json").read_text())
    assert raw.pop("refused") is True

    result = run("predict", export, root / "pngs", "-o", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    rows = _read_csv(tmp_path / "p.csv")
    ids = sorted(arrays)
    # One ROI per call there, 24 per batch here: oneDNN picks other kernels
    # for other batch sizes, so float32 sums differ in the last digits.
    np.testing.assert_allclose(np.array([raw[i] for i in ids]), _probabilities(rows, ids),
                               atol=1e-4)
    # ... and the export predicts as the run folder does
    assert run("predict", run_dir, root / "pngs", "-o", tmp_path / "run.csv").exit_code == 0
    np.testing.assert_allclose(_probabilities(_read_csv(tmp_path / "run.csv"), ids),
                               _probabilities(rows, ids), atol=1e-6)


def _colour_png(folder: Path) -> Path:
    folder.mkdir(parents=True)
    image = np.zeros((20, 20, 3), np.uint8)
    image[..., 0] = 200
    cv2.imwrite(str(folder / "red.png"), image)
    return folder


@pytest.mark.parametrize("case, fragment", [
    ("unknown-class", "class 'hemangioma', which the classifier does not know"),
    ("colour", "red.png"),
    ("not-a-classifier", "not a run folder"),
    ("out-is-folder", "is a directory"),
    ("text-file", "not a dataset (.h5)"),
])
def test_bad_predict_inputs_give_one_line_and_write_nothing(png_run, tmp_path, case, fragment):
    root, run_dir = png_run
    classifier, source, out = run_dir, root / "pngs", tmp_path / "p.csv"
    if case == "unknown-class":
        source = tmp_path / "tree"
        for name in ("cyst", "hemangioma"):
            (source / name).mkdir(parents=True)
            cv2.imwrite(str(source / name / "x.png"), _roi(np.random.default_rng(3), 0, 20))
    elif case == "colour":
        source = _colour_png(tmp_path / "colour")
    elif case == "not-a-classifier":
        classifier = tmp_path / "empty"
        classifier.mkdir()
    elif case == "out-is-folder":
        out = tmp_path / "folder"
        out.mkdir()
    elif case == "text-file":
        source = tmp_path / "notes.txt"
        source.write_text("hello")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run("predict", classifier, source, "-o", out)
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("kl: error:"), result.output
    assert fragment in lines[0]
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_own_data_end_to_end_experiment_final_model_predict_export(png_run, tmp_path):
    """import (the fixture) -> experiment -> final model -> predict -> export."""
    root, _ = png_run
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump({**TINY, "name": "mine", "output_dir": str(tmp_path / "out"),
                                      "data": {"dataset": str(root / "ds.h5")}}))
    result = run("experiment", config)
    assert result.exit_code == 0, result.output
    report = (tmp_path / "out" / "mine" / "report" / "optimal.json")
    assert report.is_file()
    summary = json.loads((tmp_path / "out" / "mine" / "report" / "D_aug1.json").read_text())
    assert 0.0 <= summary["discrimination"]["auc"]["value"] <= 1.0
    assert summary["discrimination"]["at_validation_threshold"]["available"] is True

    result = run("train-final", "--config", config)
    assert result.exit_code == 0, result.output
    final = tmp_path / "out" / "mine" / "final" / "classifier"
    info = json.loads((final / "run.json").read_text())
    assert info["final"] is True and info["n_train"] >= 24  # every patient's lesions
    card = (final / "MODEL_CARD.md").read_text()
    assert "cross-validation of this recipe" in card and "For research use only" in card
    assert "24 lesions of 12 patients" in card
    again = run("train-final", "--config", config)
    assert again.exit_code == 0 and "already trained" in again.output

    result = run("predict", final, root / "pngs", "-o", tmp_path / "final.csv")
    assert result.exit_code == 0, result.output
    assert len(_read_csv(tmp_path / "final.csv")) == 24
    export = tmp_path / "saved" / "mine" / "1"
    result = run("export", final, "--out", export)
    assert result.exit_code == 0, result.output
    assert "Model card" in (export / "assets.extra" / "MODEL_CARD.md").read_text()


def test_train_final_before_the_experiment_is_refused(png_run, tmp_path):
    root, _ = png_run
    config = tmp_path / "new.yaml"
    config.write_text(yaml.safe_dump({**TINY, "name": "new", "output_dir": str(tmp_path / "out"),
                                      "data": {"dataset": str(root / "ds.h5")}}))
    result = run("train-final", "--config", config)
    assert result.exit_code != 0 and "kl: error:" in result.output
    assert not (tmp_path / "out" / "new" / "final").exists()


def test_a_phantom_trained_model_card_says_not_for_clinical_use(tmp_path):
    from conftest import make_toy_dataset
    from keras_lesions.data.dataset import write_dataset
    from keras_lesions.model_card import NOT_CLINICAL, _limits, dataset_summary

    dataset = make_toy_dataset()
    dataset.extra = {"generator": "phantoms"}
    summary = dataset_summary(write_dataset(dataset, tmp_path / "toy.h5"))
    assert summary["phantom"] and summary["lesions"] == 18 and summary["patients"] == 12
    assert summary["spacing_mm"]["median"] == pytest.approx(0.7)
    assert _limits(summary, {})[0] == NOT_CLINICAL
    dataset.extra = {"importer": "class-folders"}
    assert NOT_CLINICAL not in _limits(dataset_summary(write_dataset(dataset, tmp_path / "b.h5")),
                                       {})


def _second_cohort(root: Path, first: Path, *, seed: int, prefix: str, classes=CLASSES) -> Path:
    """Class folders like the fixture's, of other patients (ids ``prefix``..)."""
    out = root / f"ext-{prefix}.h5"
    _png_cohort(root, "ext", "ext.csv", out, n=12, seed=seed, stem="ext", prefix=prefix,
                sides=(20, 9), classes=classes)
    return out


def test_external_test_set_is_reported_beside_the_cross_validation(png_run, tmp_path):
    root, _ = png_run
    config = tmp_path / "ext.yaml"
    config.write_text(yaml.safe_dump({**TINY, "name": "ext", "output_dir": str(tmp_path / "out"),
                                      "data": {"dataset": str(root / "ds.h5")}}))
    assert run("experiment", config).exit_code == 0
    shared = _second_cohort(tmp_path / "a", root / "ds.h5", seed=7, prefix="P")  # P00.. again
    before = sorted(str(p) for p in (tmp_path / "out").rglob("*"))
    result = run("train-final", "--config", config, "--test-on", shared)
    assert result.exit_code != 0 and "shares" in result.output and "patient id" in result.output
    assert sorted(str(p) for p in (tmp_path / "out").rglob("*")) == before  # nothing written
    other_classes = _second_cohort(tmp_path / "c", root / "ds.h5", seed=9, prefix="Y",
                                   classes=("cyst", "hemangioma"))
    result = run("train-final", "--config", config, "--test-on", other_classes)
    assert result.exit_code != 0 and "the same classes" in result.output
    from conftest import make_toy_dataset
    from keras_lesions.data.dataset import write_dataset

    hu = make_toy_dataset(n_classes=2)  # Hounsfield units, the fixture is normalized
    hu_path = write_dataset(hu, tmp_path / "hu.h5")
    result = run("train-final", "--config", config, "--test-on", hu_path)
    assert result.exit_code != 0 and "cannot be compared" in result.output
    assert sorted(str(p) for p in (tmp_path / "out").rglob("*")) == before

    other = _second_cohort(tmp_path / "b", root / "ds.h5", seed=8, prefix="X")
    result = run("train-final", "--config", config, "--test-on", other)
    assert result.exit_code == 0, result.output
    assert "external test: accuracy" in result.output
    report = (tmp_path / "out" / "ext" / "final" / "external" / "external.md").read_text()
    assert "| | cross-validated (this recipe) | external |" in report
    assert "| AUC |" in report and "12 lesions of 6 other patients" in report
    card = json.loads((tmp_path / "out" / "ext" / "final" / "classifier" /
                       "model_card.json").read_text())
    assert card["performance"]["external"]["dataset"] == str(other)
    predictions = read_predictions(tmp_path / "out" / "ext" / "final" / "external")
    assert len(predictions["lesion_ids"]) == 12


@pytest.mark.slow
def test_external_test_on_two_phantom_datasets_of_different_seeds(tmp_path):
    """The README's stand-in: phantoms of seed 0, new patients of seed 1."""
    assert run("data", "phantoms", tmp_path / "mine.h5", "--seed", 0).exit_code == 0
    result = run("data", "phantoms", tmp_path / "other.h5", "--seed", 1, "--extra-pool",
                 "--folds", 0)
    assert result.exit_code == 0, result.output
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump({
        **TINY, "name": "mine", "output_dir": str(tmp_path / "out"),
        "augment": {**TINY["augment"], "group_sizes": [0, 100]},
        "classifier": {"input_size": 32, "filters": [4, 8, 8], "dense_units": 16},
        "data": {"dataset": str(tmp_path / "mine.h5")}}))
    assert run("experiment", config).exit_code == 0
    result = run("train-final", "--config", config, "--test-on", tmp_path / "other.h5")
    assert result.exit_code == 0, result.output
    report = (tmp_path / "out" / "mine" / "final" / "external" / "external.md").read_text()
    assert "78 lesions of" in report and "| accuracy |" in report
    card = json.loads((tmp_path / "out" / "mine" / "final" / "classifier" /
                       "model_card.json").read_text())
    cross, external = card["performance"], card["performance"]["external"]
    assert 0 < cross["accuracy"] <= 1 and 0 < external["accuracy"] <= 1
    assert card["data"]["phantom"] and "NOT FOR CLINICAL USE" in card["limits"][0]
