"""The HDF5 lesion dataset format: round trip, validation, atomic writes."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from keras_lesions.data.dataset import (
    FORMAT_VERSION, read_dataset, write_dataset, write_folds)
from keras_lesions.errors import DatasetError

from conftest import make_toy_dataset


def test_round_trip_keeps_every_field(tmp_path, toy_dataset):
    toy_dataset.lesions[0].has_context = False
    toy_dataset.lesions[0].context = toy_dataset.lesions[0].roi
    toy_dataset.lesions[0].roi_box = (0, 0) + toy_dataset.lesions[0].roi.shape
    toy_dataset.lesions[0].lesion_box = (2, 2, 10, 10)
    toy_dataset.lesions[0].mask = None
    path = write_dataset(toy_dataset, tmp_path / "toy.h5")
    back = read_dataset(path)
    assert back.class_names == toy_dataset.class_names
    assert back.intensity_unit == "HU"
    assert (back.window_level, back.window_width) == (50.0, 400.0)
    assert back.created_at  # stamped on write
    assert len(back) == len(toy_dataset)
    for a, b in zip(toy_dataset.lesions, back.lesions):
        assert (a.lesion_id, a.patient_id, a.label) == (b.lesion_id, b.patient_id, b.label)
        np.testing.assert_array_equal(a.roi, b.roi)
        np.testing.assert_array_equal(a.context, b.context)
        assert tuple(a.roi_box) == b.roi_box and tuple(a.lesion_box) == b.lesion_box
        assert (a.mask is None) == (b.mask is None)
        if a.mask is not None:
            np.testing.assert_array_equal(a.mask, b.mask)
        assert a.spacing_mm == b.spacing_mm
        assert a.diameter_mm == pytest.approx(b.diameter_mm)
        assert a.attributes == b.attributes and a.has_context == b.has_context
    with h5py.File(path) as h5:
        assert h5.attrs["format_version"] == FORMAT_VERSION
        assert h5["images/000000/roi"].dtype == np.float32


def test_header_only_read_skips_pixels(tmp_path, toy_dataset):
    path = write_dataset(toy_dataset, tmp_path / "toy.h5")
    header = read_dataset(path, images=False)
    assert list(header.patient_ids) == list(toy_dataset.patient_ids)
    assert header.lesions[0].roi.shape == (2, 2)


def test_failed_write_leaves_existing_file_untouched(tmp_path, toy_dataset):
    path = write_dataset(toy_dataset, tmp_path / "toy.h5")
    before = path.read_bytes()
    broken = make_toy_dataset()
    broken.lesions[1].roi = broken.lesions[1].roi.copy()
    broken.lesions[1].roi[0, 0] = np.nan
    with pytest.raises(DatasetError, match="NaN"):
        write_dataset(broken, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["toy.h5"]  # no temp file left


def test_interrupted_write_leaves_no_file(tmp_path, toy_dataset, monkeypatch):
    import keras_lesions.data.dataset as dataset_module

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset_module, "_write_h5", explode)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(toy_dataset, tmp_path / "new.h5")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("breakage, message", [
    (lambda d: setattr(d.lesions[1], "lesion_id", d.lesions[0].lesion_id), "duplicate lesion id"),
    (lambda d: setattr(d.lesions[0], "label", 7), "label 7"),
    (lambda d: setattr(d.lesions[0], "roi", np.zeros((4, 4, 4), np.float32)), "2-D"),
    (lambda d: setattr(d.lesions[0], "mask", np.zeros((3, 3), bool)), "mask shape"),
    (lambda d: setattr(d.lesions[0], "roi_box", (0, 0, 500, 500)), "outside the context"),
    (lambda d: setattr(d, "class_names", ["cyst"]), "at least 2 classes"),
    (lambda d: setattr(d, "intensity_unit", "kelvin"), "intensity_unit"),
    (lambda d: setattr(d.lesions[0], "patient_id", ""), "empty patient id"),
])
def test_invalid_datasets_are_refused_with_one_line(tmp_path, breakage, message):
    dataset = make_toy_dataset()
    breakage(dataset)
    with pytest.raises(DatasetError, match=message) as info:
        write_dataset(dataset, tmp_path / "bad.h5")
    assert "\n" not in str(info.value) and str(tmp_path / "bad.h5") in str(info.value)
    assert not (tmp_path / "bad.h5").exists()


def test_normalized_dataset_must_stay_in_unit_range(tmp_path, toy_dataset):
    toy_dataset.intensity_unit = "normalized"
    with pytest.raises(DatasetError, match=r"\[0, 1\]"):
        write_dataset(toy_dataset, tmp_path / "n.h5")


@pytest.mark.parametrize("content, message", [
    (None, "no such dataset file"),
    (b"this is not hdf5", "not a readable HDF5 file"),
])
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "x.h5"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DatasetError, match=message):
        read_dataset(path)


def test_truncated_file_is_reported_as_corrupt(tmp_path, toy_dataset):
    path = write_dataset(toy_dataset, tmp_path / "toy.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError) as info:
        read_dataset(path)
    assert str(path) in str(info.value)


def test_foreign_hdf5_and_future_versions_are_refused(tmp_path, toy_dataset):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h5:
        h5["x"] = np.arange(3)
    with pytest.raises(DatasetError, match="not a keras-lesions dataset"):
        read_dataset(foreign)
    path = write_dataset(toy_dataset, tmp_path / "toy.h5")
    with h5py.File(path, "a") as h5:
        h5.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(DatasetError, match="format version"):
        read_dataset(path)


def test_write_folds_refuses_leaks_and_keeps_file(tmp_path, toy_dataset):
    path = write_dataset(toy_dataset, tmp_path / "toy.h5")
    before = path.read_bytes()
    folds = np.arange(len(toy_dataset)) % 3  # splits multi-lesion patients
    with pytest.raises(DatasetError, match="has lesions in folds"):
        write_folds(path, folds, k=3, seed=0)
    assert path.read_bytes() == before
    good = np.array([int(pid[1:]) % 3 for pid in toy_dataset.patient_ids])
    write_folds(path, good, k=3, seed=5)
    back = read_dataset(path)
    np.testing.assert_array_equal(back.folds, good)
    assert (back.fold_k, back.fold_seed) == (3, 5)
    np.testing.assert_array_equal(back.lesions[3].roi, toy_dataset.lesions[3].roi)
