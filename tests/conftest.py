"""Shared fixtures: small hand-built datasets and the slow-test switch."""
from __future__ import annotations

import numpy as np
import pytest

from keras_lesions.data.dataset import Lesion, LesionDataset


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests marked slow (long model work)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: long model work; run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def make_lesion(lesion_id: str, patient_id: str, label: int, rng: np.random.Generator,
                side: int = 24, context_side: int = 40) -> Lesion:
    """A small lesion: a dark disc in noisy 'liver' in HU, with context and mask."""
    yy, xx = np.mgrid[:context_side, :context_side]
    centre = context_side / 2 - 0.5
    radius = side / 4
    mask = (yy - centre) ** 2 + (xx - centre) ** 2 <= radius ** 2
    context = rng.normal(110, 10, (context_side, context_side)).astype(np.float32)
    context[mask] -= 60 + 20 * label
    r0 = (context_side - side) // 2
    box = (r0, r0, r0 + side, r0 + side)
    rows, cols = np.nonzero(mask)
    return Lesion(
        lesion_id=lesion_id, patient_id=patient_id, label=label,
        roi=context[box[0]:box[2], box[1]:box[3]].copy(), context=context,
        roi_box=box, lesion_box=(rows.min(), cols.min(), rows.max() + 1, cols.max() + 1),
        mask=mask, spacing_mm=(0.7, 0.7), diameter_px=2 * radius, diameter_mm=1.4 * radius,
        diameter_source="mask", source=f"test:{lesion_id}", attributes={"scanner": "A"},
    )


def make_toy_dataset(lesions_per_patient=(1, 2, 1, 3, 1, 2, 1, 1, 2, 1, 1, 2), n_classes=3,
                     seed=0) -> LesionDataset:
    """Patients P00.. carrying the given lesion counts; class cycles by patient."""
    rng = np.random.default_rng(seed)
    lesions = []
    for p, count in enumerate(lesions_per_patient):
        for j in range(count):
            lesions.append(make_lesion(f"P{p:02d}-L{j}", f"P{p:02d}", p % n_classes, rng))
    names = ["cyst", "metastasis", "hemangioma", "healthy"][:n_classes]
    return LesionDataset(class_names=names, lesions=lesions, description="toy",
                         created_by="tests")


@pytest.fixture
def toy_dataset() -> LesionDataset:
    return make_toy_dataset()


@pytest.fixture
def folded_dataset(tmp_path):
    """A toy dataset of 12 patients with 3 patient-level folds, written to disk."""
    from keras_lesions.data.dataset import write_dataset
    from keras_lesions.data.folds import make_patient_folds

    dataset = make_toy_dataset(lesions_per_patient=(1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 2, 1))
    dataset.input_size = 16
    dataset.folds = make_patient_folds(dataset.labels, dataset.patient_ids, k=3, seed=0)
    dataset.fold_k = 3
    return write_dataset(dataset, tmp_path / "toy.h5")
