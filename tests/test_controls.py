"""The soft-target controls of the mixture experiment (synth.controls) and how
the report credits a gain to the codes."""
from __future__ import annotations

import numpy as np
import pytest

from keras_lesions.config import ConfigError, load_config
from keras_lesions.errors import MixtureError
from keras_lesions.pipeline import roi_inputs
from keras_lesions.synth.controls import control_dataset, mixture_sources
from keras_lesions.synth.mixture import soft_image_dataset

from conftest import make_toy_dataset

SIZE = 16


def fake_mixtures(dataset, fit, seed=0):
    """Mixtures in the format of synth.mixture.mixture_dataset without networks:
    one per fit lesion, random proportions over the classes, noise images."""
    rng = np.random.default_rng(seed)
    k = len(dataset.class_names)
    soft = rng.dirichlet(np.ones(k), size=len(fit))
    images = rng.uniform(0, 1, (len(fit), SIZE, SIZE, 1)).astype(np.float32)
    attributes = [{"proportions": {n: float(p) for n, p in zip(dataset.class_names, row)}}
                  for row in soft]
    return soft_image_dataset(dataset, images, soft, fit, id_prefix="mix", what="mixture",
                              attributes=attributes, description="fake mixtures",
                              extra={"kind": "mixture", "fold": 0})


@pytest.fixture
def setup():
    dataset = make_toy_dataset(n_classes=3, lesions_per_patient=(2, 1, 2, 1, 1, 2, 1, 1, 2))
    dataset.input_size = SIZE
    fit = np.arange(0, len(dataset), 2)  # every other lesion "trains"
    return dataset, fit, fake_mixtures(dataset, fit)


def test_label_smoothing_keeps_the_soft_targets_on_the_real_source_images(setup):
    dataset, fit, mixed = setup
    control = control_dataset("label-smoothing", dataset, mixed, fit, seed=3)
    assert len(control) == len(mixed)
    np.testing.assert_array_equal(mixture_sources(dataset, control), fit)
    np.testing.assert_allclose(control.soft_labels, mixed.soft_labels, atol=1e-6)
    np.testing.assert_allclose(roi_inputs(control), roi_inputs(dataset, fit, SIZE), atol=1e-6)
    assert list(control.patient_ids) == list(dataset.patient_ids[fit])


def test_mixup_mixes_the_source_with_random_training_lesions_in_the_mixtures_proportions(setup):
    dataset, fit, mixed = setup
    control = control_dataset("mixup", dataset, mixed, fit, seed=3)
    np.testing.assert_allclose(control.soft_labels, mixed.soft_labels, atol=1e-6)
    ids = dataset.lesion_ids.tolist()
    fit_ids = set(dataset.lesion_ids[fit].tolist())
    images = roi_inputs(control)
    partners_seen = set()
    for row, lesion in enumerate(control.lesions):
        source = ids.index(lesion.attributes["r_from"])
        expected = np.zeros((SIZE, SIZE, 1), np.float32)
        for j, name in enumerate(dataset.class_names):
            share = float(mixed.soft_labels[row, j])
            if j == dataset.labels[source]:
                partner = source
            else:
                partner_id = lesion.attributes["mixed_with"][name]
                assert partner_id in fit_ids  # never a validation or test lesion
                partner = ids.index(partner_id)
                assert dataset.labels[partner] == j
                partners_seen.add(partner_id)
            expected += share * roi_inputs(dataset, [partner], SIZE)[0]
        np.testing.assert_allclose(images[row], np.clip(expected, 0, 1), atol=1e-5)
    # random partners, not one fixed lesion per class
    assert len(partners_seen) > len(dataset.class_names)
    again = control_dataset("mixup", dataset, mixed, fit, seed=3)
    np.testing.assert_array_equal(roi_inputs(again), images)
    other = control_dataset("mixup", dataset, mixed, fit, seed=4)
    assert not np.array_equal(roi_inputs(other), images)


def test_controls_refuse_sources_outside_the_training_lesions(setup):
    dataset, fit, mixed = setup
    with pytest.raises(MixtureError, match="not among the training lesions"):
        control_dataset("mixup", dataset, mixed, fit[1:])
    with pytest.raises(MixtureError, match="unknown control"):
        control_dataset("cutmix", dataset, mixed, fit)


def test_config_checks_the_controls():
    assert load_config(None, {"kind": "mixture"}).mixture.controls == ["label-smoothing", "mixup"]
    assert load_config(None, {"mixture.controls": []}).mixture.controls == []
    for bad in (["cutmix"], ["mixup", "mixup"]):
        with pytest.raises(ConfigError, match="mixture.controls must list"):
            load_config(None, {"mixture.controls": bad})


def _comparison(outcome):
    return {"outcome": outcome, "verdict": outcome}


def test_a_gain_is_credited_to_the_codes_only_if_it_holds_against_every_control():
    from keras_lesions.experiments.mixture import attribution_sentence

    controls = ["label-smoothing", "mixup"]
    found = {"mixtures": _comparison("helped"),
             "mixtures-vs-label-smoothing": _comparison("helped"),
             "mixtures-vs-mixup": _comparison("no evidence")}
    assert "cannot be credited" in attribution_sentence(found, controls)
    found["mixtures-vs-mixup"] = _comparison("helped")
    assert "can be credited to the disentangled codes" in attribution_sentence(found, controls)
    found["mixtures"] = _comparison("no evidence")
    assert "No gain to credit" in attribution_sentence(found, controls)
    assert "No soft-target control" in attribution_sentence(found, [])
