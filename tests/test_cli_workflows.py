"""The data commands end to end on the built-in phantoms and on real DICOM files."""
from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from pydicom.data import get_testdata_file

from keras_lesions.data.dataset import read_dataset
from keras_lesions_cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def phantom_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("phantoms") / "frid.h5"
    result = run("data", "phantoms", path, "--preset", "frid-adar-2018", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "182 lesions (53 cyst, 64 metastasis, 65 hemangioma)" in result.output
    return path


def test_phantoms_check_preview_folds(phantom_file, tmp_path):
    dataset = read_dataset(phantom_file)
    # the command line that made it, for provenance (CliRunner names the group "cli")
    assert "data phantoms" in dataset.created_by and "--seed=3" in dataset.created_by
    assert dataset.intensity_unit == "HU" and dataset.fold_k == 3
    assert sorted(np.bincount(dataset.folds).tolist()) == [60, 61, 61]

    result = run("data", "check", phantom_file)
    assert result.exit_code == 0, result.output
    assert "lesions: 182" in result.output and "problems found: none" in result.output

    result = run("data", "preview", phantom_file, "-o", tmp_path / "grid.png")
    assert result.exit_code == 0 and (tmp_path / "grid.png").stat().st_size > 10_000

    result = run("data", "folds", phantom_file, "--k", "3", "--seed", "9")
    assert result.exit_code == 0, result.output
    assert "replacing the existing 3-fold assignment" in result.output
    refolded = read_dataset(phantom_file, images=False)
    assert refolded.fold_seed == 9
    for pid in set(refolded.patient_ids):
        assert len(set(refolded.folds[refolded.patient_ids == pid])) == 1


def test_extra_pool_has_new_patients(phantom_file, tmp_path):
    extra = tmp_path / "extra.h5"
    result = run("data", "phantoms", extra, "--seed", "3", "--extra-pool")
    assert result.exit_code == 0, result.output
    pool = read_dataset(extra, images=False)
    main = read_dataset(phantom_file, images=False)
    assert len(pool) == 78 and pool.folds is None
    assert not set(pool.patient_ids) & set(main.patient_ids)


def test_phantoms_bad_arguments_leave_nothing(tmp_path):
    result = run("data", "phantoms", tmp_path / "x.h5", "--difficulty", "1.5")
    assert result.exit_code == 2 and "difficulty" in result.output
    result = run("data", "phantoms", tmp_path / "x.h5", "--preset", "lidc")
    assert result.exit_code == 2
    result = run("data", "phantoms", tmp_path / "x.h5", "--folds", "1")
    assert result.exit_code == 2 and "one fold cannot separate" in result.output
    assert list(tmp_path.iterdir()) == []


def test_import_real_enhanced_ct_volume_then_check_and_preview(tmp_path):
    """The real Enhanced CT of pydicom-data, two labelled regions, through the CLI."""
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(get_testdata_file("eCT_Supplemental.dcm"), source / "ct.dcm")
    mask = np.zeros((2, 512, 512), np.uint8)
    rows, cols = np.mgrid[:512, :512]
    mask[1][(rows - 250) ** 2 + (cols - 200) ** 2 < 30 ** 2] = 1
    mask[0][(rows - 300) ** 2 + (cols - 330) ** 2 < 20 ** 2] = 2
    np.save(source / "mask.npy", mask)
    with open(source / "map.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["volume", "mask", "label", "class", "patient_id"])
        writer.writerow(["ct.dcm", "mask.npy", 1, "cyst", "patient-1"])
        writer.writerow(["ct.dcm", "mask.npy", 2, "metastasis", "patient-1"])
    out = tmp_path / "real.h5"
    result = run("data", "import", source, out, "--mapping", source / "map.csv")
    assert result.exit_code == 0, result.output
    assert "2 lesions" in result.output and "HU" in result.output
    dataset = read_dataset(out)
    assert dataset.class_names == ["cyst", "metastasis"]
    first = dataset.lesions[0]
    assert first.spacing_mm == pytest.approx((0.388672, 0.388672))
    # diameter of a 30-px-radius disc measured on the mask, in mm
    assert first.diameter_mm == pytest.approx(60 * 0.388672, rel=0.05)
    assert first.roi.min() >= -1024 and first.roi.dtype == np.float32
    assert run("data", "check", out).exit_code == 0
    assert run("data", "preview", out, "-o", tmp_path / "g.png").exit_code == 0
    # one patient cannot be split into 3 folds: a clear line, dataset untouched
    before = out.read_bytes()
    result = run("data", "folds", out)
    assert result.exit_code == 1 and "real.h5" in result.output and "Traceback" not in result.output
    assert out.read_bytes() == before


def test_import_real_ct_slices_as_class_folders(tmp_path):
    source = tmp_path / "rois"
    for name, index in (("cyst", 0), ("cyst", 1), ("hemangioma", 2)):
        (source / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(get_testdata_file("CT_small.dcm"), source / name / f"slice{index}.dcm")
    result = run("data", "import", source, tmp_path / "rois.h5")
    assert result.exit_code == 0, result.output
    assert "own patient" in result.output  # no mapping CSV: the importer says so
    dataset = read_dataset(tmp_path / "rois.h5")
    assert dataset.class_names == ["cyst", "hemangioma"] and len(dataset) == 3
    result = run("data", "check", tmp_path / "rois.h5")
    # the same real slice copied under two lesion ids is caught as a duplicate
    assert result.exit_code == 1 and "identical pixels" in result.output


def test_import_bad_source_gives_one_line_and_no_file(tmp_path):
    source = tmp_path / "rois"
    (source / "cyst").mkdir(parents=True)
    (source / "metastasis").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), source / "cyst" / "a.dcm")
    (source / "metastasis" / "b.dcm").write_bytes(b"DICM but not really" * 10)
    result = run("data", "import", source, tmp_path / "out.h5")
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("kl: error:") and "b.dcm" in line
    assert not (tmp_path / "out.h5").exists()
