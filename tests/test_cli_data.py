"""The `kl` command line on the data layer, through click's CliRunner."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from keras_lesions.data.dataset import read_dataset, write_dataset
from keras_lesions_cli.main import cli

from conftest import make_toy_dataset


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) >= 1
    error = lines[-1]
    assert error.startswith("kl: error:") or error.startswith("Error:"), result.output
    for fragment in fragments:
        assert fragment in error, (fragment, result.output)


@pytest.mark.parametrize("command", [
    [], ["data"], ["data", "phantoms"], ["data", "import"], ["data", "check"],
    ["data", "preview"], ["data", "folds"], ["demo"], ["augment"], ["train-cnn"],
    ["evaluate"], ["experiment"], ["export"], ["models"], ["train-gan"], ["train-acgan"],
    ["evaluate-acgan"], ["synthesize"], ["train-disentangle"], ["swap"], ["mix"], ["predict"],
    ["train-final"],
])
def test_every_command_explains_itself(command):
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    # each command's help has a sentence of its own, not only the option list
    description = result.output.split("Options:")[0].split("\n", 2)[-1].strip()
    assert len(description) > 30, result.output


def test_check_preview_folds_on_a_dataset(tmp_path):
    path = write_dataset(make_toy_dataset(), tmp_path / "toy.h5")
    result = run("data", "folds", path, "--k", "3", "--seed", "4")
    assert result.exit_code == 0, result.output
    assert "fold 2" in result.output
    back = read_dataset(path)
    assert back.fold_k == 3 and back.fold_seed == 4
    for pid in set(back.patient_ids):
        assert len(set(back.folds[back.patient_ids == pid])) == 1

    result = run("data", "check", path)
    assert result.exit_code == 0, result.output
    assert "patients: 12" in result.output and "fold 0:" in result.output

    result = run("data", "preview", path, "-o", tmp_path / "grid.png", "--per-class", "2")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "grid.png").stat().st_size > 1000


def test_check_exits_non_zero_on_errors_and_strict_warnings(tmp_path):
    dataset = make_toy_dataset()
    dataset.lesions[2].roi = dataset.lesions[1].roi.copy()
    path = write_dataset(dataset, tmp_path / "dup.h5")
    result = run("data", "check", path)
    assert result.exit_code == 1 and "identical pixels" in result.output
    thin = write_dataset(make_toy_dataset(lesions_per_patient=(1, 1, 1, 1, 1)), tmp_path / "thin.h5")
    assert run("data", "check", thin).exit_code == 0
    assert run("data", "check", thin, "--strict").exit_code == 1


def test_missing_and_corrupt_datasets_give_one_line(tmp_path):
    assert_one_line_error(run("data", "check", tmp_path / "nope.h5"), "nope.h5", "no such dataset")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x00" * 100)
    assert_one_line_error(run("data", "preview", bad, "-o", tmp_path / "g.png"), "bad.h5",
                          "not a readable HDF5")
    assert not (tmp_path / "g.png").exists()
    assert_one_line_error(run("data", "folds", bad), "bad.h5")


def test_folds_that_cannot_be_made_leave_the_dataset_alone(tmp_path):
    path = write_dataset(make_toy_dataset(lesions_per_patient=(1, 1, 1, 1)), tmp_path / "t.h5")
    before = path.read_bytes()
    assert_one_line_error(run("data", "folds", path, "--k", "3"), "t.h5", "class 'cyst'", "only 2 patient")
    assert path.read_bytes() == before


def test_preview_needs_png(tmp_path):
    path = write_dataset(make_toy_dataset(), tmp_path / "toy.h5")
    assert_one_line_error(run("data", "preview", path, "-o", tmp_path / "g.jpg"), "g.jpg", ".png")


# --------------------------------------------------------------------------- phantoms --class-counts


def assert_exactly_one_error_line(result, *fragments):
    """The refusal is one `kl: error:` line, a non-zero exit and no traceback."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("kl: error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, result.output)


def assert_patient_level_folds_with_every_class(dataset, k):
    assert dataset.fold_k == k
    for pid in set(dataset.patient_ids):
        assert len(set(dataset.folds[dataset.patient_ids == pid])) == 1, pid
    for label, n in enumerate(dataset.class_counts().values()):
        if n:
            assert set(dataset.folds[dataset.labels == label]) == set(range(k)), label


def test_phantoms_class_counts_override_some_classes_of_the_imbalanced_preset(tmp_path):
    # cyst and metastasis as asked; hemangioma, left out, keeps the preset's 40
    path = tmp_path / "imbalanced.h5"
    result = run("data", "phantoms", path, "--preset", "frid-adar-2018-imbalanced",
                 "--class-counts", " cyst = 4 ,metastasis=9")
    assert result.exit_code == 0, result.output
    assert "53 lesions (4 cyst, 9 metastasis, 40 hemangioma)" in result.output
    back = read_dataset(path)
    assert back.class_names == ["cyst", "metastasis", "hemangioma"]
    assert back.class_counts() == {"cyst": 4, "metastasis": 9, "hemangioma": 40}
    assert back.input_size == 64 and back.extra["preset"] == "frid-adar-2018-imbalanced"
    assert_patient_level_folds_with_every_class(back, 3)


def test_phantoms_class_counts_of_every_class_and_a_zero(tmp_path):
    path = tmp_path / "no-cysts.h5"
    result = run("data", "phantoms", path, "--class-counts", "cyst=0,metastasis=6,hemangioma=6",
                 "--seed", "1")
    assert result.exit_code == 0, result.output
    back = read_dataset(path)
    # a class listed as 0 stays one of the dataset's classes, with no lesions
    assert back.class_counts() == {"cyst": 0, "metastasis": 6, "hemangioma": 6}
    assert_patient_level_folds_with_every_class(back, 3)


@pytest.mark.parametrize("preset, counts, seed, fragments", [
    ("frid-adar-2018", "tumour=5", 0, ["--class-counts", "unknown class 'tumour'",
                                       "cyst, metastasis, hemangioma"]),
    ("frid-adar-2018", "healthy=5", 0, ["unknown class 'healthy'", "frid-adar-2018 preset"]),
    ("frid-adar-2018", "cysts=5", 0, ["unknown class 'cysts'", "did you mean 'cyst'"]),
    ("frid-adar-2018", "cyst=-3", 0, ["'cyst'", "non-negative integer", "'-3'"]),
    ("frid-adar-2018", "cyst=2.5", 0, ["'cyst'", "non-negative integer", "'2.5'"]),
    ("frid-adar-2018", "cyst=many", 0, ["'cyst'", "non-negative integer"]),
    ("frid-adar-2018", "cyst=4,cyst=5", 0, ["class 'cyst' is given twice"]),
    ("frid-adar-2018", "cyst=4,,metastasis=5", 0, ["NAME=COUNT"]),
    ("frid-adar-2018", "cyst:4", 0, ["NAME=COUNT", "'cyst:4'"]),
    ("frid-adar-2018", "cyst=0,metastasis=0,hemangioma=0", 0, ["no lesions at all"]),
    ("ben-cohen-2019", "cyst=0,metastasis=0,hemangioma=0,healthy=0", 0, ["no lesions at all"]),
    # fewer lesions than folds: refused before anything is generated
    ("frid-adar-2018", "cyst=2,metastasis=6,hemangioma=6", 0,
     ["class 'cyst'", "only 2 lesion(s)", "3 folds"]),
    # enough lesions, but they fall to two patients under this seed
    ("frid-adar-2018", "cyst=3,metastasis=6,hemangioma=6", 0,
     ["class 'cyst'", "only 2 patient(s)", "3 folds"]),
    # three patients, but the balanced split leaves a fold without a cyst
    ("frid-adar-2018", "cyst=3,metastasis=6,hemangioma=6", 2,
     ["class 'cyst'", "fold 2 would have none"]),
])
def test_phantoms_bad_class_counts_give_one_line_and_write_nothing(tmp_path, preset, counts,
                                                                    seed, fragments):
    path = tmp_path / "out.h5"
    result = run("data", "phantoms", path, "--preset", preset, "--class-counts", counts,
                 "--seed", seed)
    assert_exactly_one_error_line(result, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_phantoms_class_counts_without_folds_allow_small_classes(tmp_path):
    path = tmp_path / "tiny.h5"
    result = run("data", "phantoms", path, "--class-counts", "cyst=1,metastasis=2,hemangioma=0",
                 "--folds", "0")
    assert result.exit_code == 0, result.output
    back = read_dataset(path)
    assert back.class_counts() == {"cyst": 1, "metastasis": 2, "hemangioma": 0}
    assert back.folds is None


def test_phantoms_help_documents_class_counts_and_the_imbalanced_preset():
    result = run("data", "phantoms", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "--class-counts NAME=N,..." in text
    assert "A class left out keeps the preset's count" in text
    assert "frid-adar-2018-imbalanced" in text
