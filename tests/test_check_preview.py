"""`kl data check` findings and the preview picture."""
from __future__ import annotations

import numpy as np
import pytest

from keras_lesions.data.check import check_dataset
from keras_lesions.pipeline import roi_inputs
from keras_lesions.data.preview import write_preview
from keras_lesions.errors import KerasLesionsError

from conftest import make_toy_dataset


def test_counts_sizes_and_clean_report(toy_dataset):
    report = check_dataset(toy_dataset)
    assert report.n_lesions == 18 and report.n_patients == 12
    assert report.class_counts == {"cyst": 6, "metastasis": 5, "hemangioma": 7}
    assert report.patients_per_class == {"cyst": 4, "metastasis": 4, "hemangioma": 4}
    assert report.lesions_per_patient == {1: 7, 2: 4, 3: 1}
    assert report.roi_side_px["cyst"] == (24, 24, 24)
    assert report.findings == []
    text = report.format(toy_dataset.class_names)
    assert "problems found: none" in text and "metastasis" in text


def test_duplicate_pixels_are_an_error():
    dataset = make_toy_dataset()
    dataset.lesions[5].roi = dataset.lesions[0].roi.copy()
    report = check_dataset(dataset)
    assert [f.level for f in report.findings] == ["error"]
    assert "'P00-L0'" in report.findings[0].message and "identical" in report.findings[0].message


def test_warnings_for_thin_classes_and_estimated_sizes():
    dataset = make_toy_dataset(lesions_per_patient=(1, 1, 1, 1, 1))  # 2/2/1 patients per class
    dataset.lesions[0].diameter_source = "roi-estimate"
    dataset.lesions[1].spacing_mm = (np.nan, np.nan)
    messages = " | ".join(f.message for f in check_dataset(dataset).findings)
    assert "only 2 patient" in messages and "only 1 patient" in messages
    assert "estimated from the ROI" in messages and "unknown pixel spacing" in messages


def _context_free(lesion, roi):
    """Make a lesion whose ROI is all there is (as class-folder imports are)."""
    lesion.roi = lesion.context = roi
    lesion.roi_box = lesion.lesion_box = (0, 0) + roi.shape
    lesion.has_context, lesion.mask = False, None


def test_roi_inputs_window_hu_and_resize(toy_dataset):
    _context_free(toy_dataset.lesions[0], np.array([[-1000.0, -150.0], [50.0, 3000.0]] * 2,
                                                   np.float32).reshape(4, 2).repeat(2, 1))
    _context_free(toy_dataset.lesions[1], np.full((8, 8), 50.0, np.float32))
    images = roi_inputs(toy_dataset, [0, 1])
    assert images.shape == (2, 64, 64, 1) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    np.testing.assert_allclose(images[1], 0.5, atol=1e-5)  # L50 maps to the middle grey
    # Rendered once: asked again, the same numbers; a caller's change to what
    # it was given does not reach the next caller; a replaced lesion, a new
    # window or size is rendered anew.
    images[1] = 0.0
    again = roi_inputs(toy_dataset, [1, 0])
    np.testing.assert_allclose(again[0], 0.5, atol=1e-5)
    np.testing.assert_array_equal(again[1], roi_inputs(toy_dataset, [0])[0])
    _context_free(toy_dataset.lesions[1], np.full((8, 8), 250.0, np.float32))
    np.testing.assert_allclose(roi_inputs(toy_dataset, [1])[0], 1.0, atol=1e-5)  # L50 W400: 250 HU is white
    toy_dataset.window_level = 250.0
    np.testing.assert_allclose(roi_inputs(toy_dataset, [1])[0], 0.5, atol=1e-5)
    assert roi_inputs(toy_dataset, [1], size=32).shape == (1, 32, 32, 1)


def test_test_inputs_are_resampled_exactly_like_training_originals(tmp_path, toy_dataset):
    """The held-out ROIs and the originals of the training groups take one path."""
    from keras_lesions.augment import build_augmentation_groups, read_augmentation_group

    toy_dataset.folds = np.array([int(p[1:]) % 3 for p in toy_dataset.patient_ids])
    toy_dataset.fold_k = 3
    path = tmp_path / "groups.h5"
    build_augmentation_groups(toy_dataset, 0, group_sizes=[0], n_rot=1, n_flip=0, n_trans=0,
                              n_scale=0, path=path, log=None)
    images, _, meta = read_augmentation_group(path, 0)
    direct = roi_inputs(toy_dataset, meta["lesion_index"])
    np.testing.assert_allclose(images, direct, atol=1e-4)  # uint16 storage step is 1.5e-5


def test_preview_png(tmp_path, toy_dataset):
    out = tmp_path / "grid.png"
    write_preview(toy_dataset, out, per_class=3)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image as mpimg
    assert mpimg.imread(out).shape[0] > 100
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]
    with pytest.raises(KerasLesionsError, match="ending in .png"):
        write_preview(toy_dataset, tmp_path / "grid.jpg")
