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
