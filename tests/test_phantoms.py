"""The built-in CT phantom generator against its specification (shared/PHANTOMS.md).

The full default preset (frid-adar-2018, seed 0, δ = 0.5) is generated once per
module and shared; everything else uses small ``class_counts``.
"""
from __future__ import annotations

import json
import re
from collections import Counter, defaultdict

import numpy as np
import pytest
from scipy import ndimage
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from keras_lesions.config import load_config
from keras_lesions.data.builtin import make_phantom_dataset
from keras_lesions.data.dataset import read_dataset, write_dataset
from keras_lesions.data.folds import fold_table, make_patient_folds
from keras_lesions.data.imaging import mask_diameter, resize, window
from keras_lesions.data.phantoms import (
    EXTRA_POOL_SIZE,
    correlated_noise,
    default_class_counts,
    generate_phantoms,
    patient_plan,
)
from keras_lesions.data.registry import PRESETS
from keras_lesions.errors import FoldError, KerasLesionsError

SMALL = {"cyst": 3, "metastasis": 4, "hemangioma": 4}


@pytest.fixture(scope="module")
def default_run():
    """The full default preset and the progress calls it made."""
    calls = []
    dataset = generate_phantoms(progress=lambda done, total: calls.append((done, total)))
    return dataset, calls


@pytest.fixture(scope="module")
def default_dataset(default_run):
    return default_run[0]


@pytest.fixture(scope="module")
def small_dataset():
    return generate_phantoms(seed=7, class_counts=SMALL)


# --------------------------------------------------------------------------- helpers


def _distance_mm(mask: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """(distance inside the mask to its edge, distance outside the mask to it), in mm."""
    return (ndimage.distance_transform_edt(mask) * spacing,
            ndimage.distance_transform_edt(~mask) * spacing)


def _interior_and_ring(lesion, interior_mm: float = 2.5):
    """HU values deep inside the lesion, and in a ring of liver around it."""
    spacing = lesion.spacing_mm[0]
    inside, outside = _distance_mm(lesion.mask, spacing)
    # Metastasis edges are up to 4 mm wide, plus the PSF: start the ring 6 mm out.
    ring = (outside > 6.0) & (outside < 6.0 + max(5.0, 0.4 * lesion.diameter_mm))
    core = inside > interior_mm
    if core.sum() < 10:
        core = inside >= np.quantile(inside[lesion.mask], 0.5)
    return lesion.context[core], lesion.context[ring]


def _texture_features(roi: np.ndarray) -> np.ndarray:
    """A classic texture/histogram descriptor of a ROI as the CNN would see it.

    W400/L50 window, bicubic resize to 64×64 (Frid-Adar §2.1), then a 16-bin
    intensity histogram, mean and SD, GLCM contrast/homogeneity/energy/
    correlation at 1, 2 and 4 px, and a uniform LBP(8, 1) histogram.
    """
    image = np.clip(resize(window(roi, 50.0, 400.0), 64), 0.0, 1.0)
    parts = [np.histogram(image, bins=16, range=(0.0, 1.0))[0] / image.size,
             [image.mean(), image.std()]]
    glcm = graycomatrix((image * 31).astype(np.uint8), [1, 2, 4],
                        [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=32, symmetric=True,
                        normed=True)
    for prop in ("contrast", "homogeneity", "energy", "correlation"):
        parts.append(graycoprops(glcm, prop).mean(axis=1))
    lbp = local_binary_pattern((image * 255).astype(np.uint8), 8, 1, "uniform")
    parts.append(np.histogram(lbp, bins=10, range=(0, 10))[0] / lbp.size)
    return np.concatenate([np.ravel(p) for p in parts])


def _grouped_cv_predictions(dataset, folds: int = 3, seed: int = 0) -> np.ndarray:
    """Patient-grouped CV predictions of a logistic regression on texture features."""
    features = np.array([_texture_features(lesion.roi) for lesion in dataset.lesions])
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=5000))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(classifier, features, dataset.labels, groups=dataset.patient_ids,
                             cv=splitter)


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("kwargs, fragment", [
    ({"preset": "lits-2017"}, "unknown phantom preset"),
    ({"difficulty": -0.1}, "difficulty"),
    ({"difficulty": 1.5}, "difficulty"),
    ({"difficulty": "hard"}, "difficulty"),
    ({"pool": "test"}, "unknown phantom pool"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"class_counts": {"healthy": 2}}, "unknown classes"),
    ({"class_counts": {"cysts": 2}}, "unknown classes"),
    ({"class_counts": {"cyst": -1}}, "non-negative integer"),
    ({"class_counts": {"cyst": 2.5}}, "non-negative integer"),
    ({"class_counts": {"cyst": 0, "metastasis": 0}}, "no lesions"),
    ({"class_counts": [("cyst", 2)]}, "must map"),
])
def test_bad_arguments_raise_one_clear_error(kwargs, fragment):
    with pytest.raises(KerasLesionsError, match=fragment) as info:
        generate_phantoms(**kwargs)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- determinism, pools


def _fingerprint(dataset) -> list:
    rows = []
    for lesion in dataset.lesions:
        rows.append((lesion.lesion_id, lesion.patient_id, lesion.label, lesion.roi_box,
                     lesion.lesion_box, lesion.spacing_mm, lesion.diameter_px, lesion.source,
                     json.dumps(lesion.attributes, sort_keys=True)))
    return rows


def test_same_arguments_give_a_bit_identical_dataset(small_dataset):
    again = generate_phantoms(seed=7, class_counts=SMALL)
    assert _fingerprint(again) == _fingerprint(small_dataset)
    assert again.extra == small_dataset.extra and again.description == small_dataset.description
    for first, second in zip(small_dataset.lesions, again.lesions):
        assert first.roi.tobytes() == second.roi.tobytes()
        assert first.context.tobytes() == second.context.tobytes()
        assert (first.mask is None) == (second.mask is None)
        if first.mask is not None:
            assert np.array_equal(first.mask, second.mask)


def test_another_seed_gives_another_dataset(small_dataset):
    other = generate_phantoms(seed=8, class_counts=SMALL)
    assert other.class_counts() == small_dataset.class_counts()
    differing = [not np.array_equal(a.context, b.context) if a.context.shape == b.context.shape
                 else True for a, b in zip(small_dataset.lesions, other.lesions)]
    assert all(differing)
    assert _fingerprint(other) != _fingerprint(small_dataset)


def test_extra_pool_is_independent_with_disjoint_patients(small_dataset):
    extra = generate_phantoms(seed=7, pool="extra", class_counts=SMALL)
    main_patients = set(small_dataset.patient_ids)
    extra_patients = set(extra.patient_ids)
    assert all(re.fullmatch(r"P\d{4}", p) for p in main_patients)
    assert all(re.fullmatch(r"X\d{4}", p) for p in extra_patients)
    assert not main_patients & extra_patients
    assert not set(small_dataset.lesion_ids) & set(extra.lesion_ids)
    assert extra.extra["pool"] == "extra"
    # Independent draws, not a relabelled copy of the main pool.
    main_hu = sorted(l.attributes["liver_hu"] for l in small_dataset.lesions)
    extra_hu = sorted(l.attributes["liver_hu"] for l in extra.lesions)
    assert main_hu != extra_hu
    # Same hospital (Frid-Adar §4.2.2): both pools share the scanners' settings.
    settings = {}
    for lesion in list(small_dataset.lesions) + list(extra.lesions):
        a = lesion.attributes
        key = (a["psf_fwhm_mm"], a["nps_peak_per_mm"], a["nps_width_per_mm"], a["hu_offset"])
        assert settings.setdefault(a["scanner_id"], key) == key


def test_default_class_counts_follow_the_papers():
    assert default_class_counts("frid-adar-2018") == {"cyst": 53, "metastasis": 64,
                                                      "hemangioma": 65}
    assert default_class_counts("ben-cohen-2019") == {"cyst": 66, "metastasis": 81,
                                                      "hemangioma": 65, "healthy": 27}
    # Frid-Adar §4.2.2: 78 new cases, here split evenly over the lesion classes.
    for preset in PRESETS:
        extra = default_class_counts(preset, "extra")
        assert sum(extra.values()) == EXTRA_POOL_SIZE == 78
        assert extra["cyst"] == extra["metastasis"] == extra["hemangioma"] == 26
        assert list(extra) == list(PRESETS[preset].class_names)
    with pytest.raises(KerasLesionsError):
        default_class_counts("frid-adar-2018", "test")


# --------------------------------------------------------------------------- the imbalanced preset


def test_imbalanced_preset_is_frid_adar_with_a_realistic_imbalance():
    preset = PRESETS["frid-adar-2018-imbalanced"]
    assert preset.name == "frid-adar-2018-imbalanced"
    assert preset.class_counts == {"cyst": 20, "metastasis": 80, "hemangioma": 40}
    assert preset.class_names == PRESETS["frid-adar-2018"].class_names
    assert preset.n_lesions == 140 and round(100 * 20 / 140) == 14   # minority: 14%
    assert (preset.input_size, preset.k_folds) == (64, 3)
    assert preset.based_on == "frid-adar-2018"
    assert "imbalanced variant" in preset.paper and "not a paper's dataset" in preset.paper
    assert "Ben-Cohen" in preset.paper and "27 of 239" in preset.paper
    assert default_class_counts("frid-adar-2018-imbalanced") == preset.class_counts
    # Every other preset is a paper's own, with settings of its own.
    assert [p.name for p in PRESETS.values() if p.based_on] == ["frid-adar-2018-imbalanced"]
    # An experiment config may name it.
    config = load_config(None, {"data.dataset": "phantoms:frid-adar-2018-imbalanced"})
    assert config.data.dataset == "phantoms:frid-adar-2018-imbalanced"


def test_imbalanced_preset_plan_has_its_counts_and_folds_with_every_class():
    # The plan is what make_phantom_dataset assigns folds on (and checks the
    # generated lesions against); the 140 images themselves are not drawn here.
    class_names = list(PRESETS["frid-adar-2018-imbalanced"].class_names)
    for seed in (0, 1):
        plan = patient_plan("frid-adar-2018-imbalanced", seed)
        assert Counter(name for _, name in plan) == {"cyst": 20, "metastasis": 80,
                                                    "hemangioma": 40}
        labels = np.array([class_names.index(name) for _, name in plan])
        patients = np.array([patient for patient, _ in plan], dtype=object)
        folds = make_patient_folds(labels, patients, k=3, seed=seed, class_names=class_names)
        assert (fold_table(labels, folds, 3, 3) > 0).all()
        for patient in set(patients):
            assert len(set(folds[patients == patient])) == 1


def test_imbalanced_preset_reuses_frid_adars_generation_settings(small_dataset):
    # Same seed and counts: the same lesions, two vendors (Frid-Adar §2.1);
    # only the preset's name (in sources and provenance) differs.
    variant = generate_phantoms("frid-adar-2018-imbalanced", seed=7, class_counts=SMALL)
    assert variant.extra["preset"] == "frid-adar-2018-imbalanced"
    assert {l.attributes["scanner"] for l in variant.lesions} <= {"GE", "Siemens"}
    for ours, base in zip(variant.lesions, small_dataset.lesions, strict=True):
        assert ours.source == base.source.replace("frid-adar-2018", "frid-adar-2018-imbalanced")
        assert ours.attributes == base.attributes
        assert ours.roi.tobytes() == base.roi.tobytes()


def test_patient_plan_is_the_generated_dataset(small_dataset):
    plan = patient_plan(seed=7, class_counts=SMALL)
    assert [p for p, _ in plan] == list(small_dataset.patient_ids)
    assert [name for _, name in plan] == [small_dataset.class_names[label]
                                          for label in small_dataset.labels]


def test_make_phantom_dataset_with_class_counts():
    calls = []
    counts = {"cyst": 4, "metastasis": 6, "hemangioma": 5}
    dataset = make_phantom_dataset(seed=1, class_counts=counts,
                                   progress=lambda done, total: calls.append((done, total)))
    assert dataset.class_counts() == counts
    assert calls[-1] == (15, 15) and {total for _, total in calls} == {15}
    table = fold_table(dataset.labels, dataset.folds, 3, 3)
    assert dataset.fold_k == 3 and (table > 0).all()


@pytest.mark.parametrize("counts, seed, fragment", [
    ({"cyst": 2, "metastasis": 6, "hemangioma": 6}, 0, "class 'cyst' has only 2 lesion"),
    ({"cyst": 3, "metastasis": 6, "hemangioma": 6}, 0, "class 'cyst' has lesions from only 2"),
    ({"cyst": 3, "metastasis": 6, "hemangioma": 6}, 2, "fold 2 would have none"),
])
def test_make_phantom_dataset_refuses_folds_without_a_class_before_drawing(counts, seed,
                                                                          fragment):
    calls = []
    with pytest.raises(FoldError, match=fragment) as info:
        make_phantom_dataset(seed=seed, class_counts=counts,
                             progress=lambda done, total: calls.append(done))
    assert "\n" not in str(info.value)
    assert calls == []          # refused on the plan: no image was drawn
    # Without folds the same request is fine.
    assert make_phantom_dataset(seed=seed, class_counts=counts, k=0).class_counts() == counts


# --------------------------------------------------------------------------- the default preset


def test_default_preset_is_a_valid_paper_sized_dataset(default_run, tmp_path):
    dataset, calls = default_run
    preset = PRESETS["frid-adar-2018"]
    assert dataset.class_names == ["cyst", "metastasis", "hemangioma"]
    assert dataset.class_counts() == preset.class_counts
    assert dataset.intensity_unit == "HU"
    assert (dataset.window_level, dataset.window_width) == (50.0, 400.0)
    assert dataset.input_size == 64
    assert dataset.created_by == ""
    assert dataset.extra == {"generator": "phantoms", "preset": "frid-adar-2018", "seed": 0,
                             "difficulty": 0.5, "pool": "main", "spec": "shared/PHANTOMS.md"}
    assert calls == [(i, 182) for i in range(1, 183)]
    dataset.validate()
    # Everything (attributes included) survives the HDF5 format.
    path = write_dataset(dataset, tmp_path / "phantoms.h5")
    loaded = read_dataset(path)
    assert _fingerprint(loaded) == _fingerprint(dataset)
    assert all(np.array_equal(a.context, b.context) for a, b in
               zip(dataset.lesions, loaded.lesions))


def test_patients_carry_one_to_four_lesions_sharing_their_scan(default_dataset):
    by_patient = defaultdict(list)
    for lesion in default_dataset.lesions:
        by_patient[lesion.patient_id].append(lesion)
        assert re.fullmatch(rf"{lesion.patient_id}-L[1-4]", lesion.lesion_id)
        assert lesion.source == f"phantom:frid-adar-2018:seed=0:{lesion.lesion_id}"
    sizes = Counter(len(lesions) for lesions in by_patient.values())
    assert set(sizes) <= {1, 2, 3, 4} and sizes[1] > 0 and len(sizes) >= 3
    shared = ("scanner_id", "site", "slice_thickness_mm", "noise_sd_hu", "liver_hu",
              "aorta_hu", "steatosis", "cirrhosis")
    mixed = 0
    for lesions in by_patient.values():
        for key in shared:
            assert len({l.attributes[key] for l in lesions}) == 1, key
        assert len({l.spacing_mm for l in lesions}) == 1
        mixed += len({l.label for l in lesions}) > 1
    # Mostly one class per patient, some mixing (a cyst beside a metastasis).
    assert 0 < mixed < 0.3 * len(by_patient)
    # The paper's two scanners (Frid-Adar §2.1) at two sites.
    assert {l.attributes["scanner"] for l in default_dataset.lesions} == {"GE", "Siemens"}


def test_sizes_spacing_and_crops_follow_the_spec(default_dataset):
    for lesion in default_dataset.lesions:
        spacing = lesion.spacing_mm[0]
        assert lesion.spacing_mm[0] == lesion.spacing_mm[1]
        assert 0.6 <= spacing <= 0.9                                  # spec §3 step 4
        assert 10.0 <= lesion.diameter_mm <= 102.0                    # Frid-Adar §2.1
        assert lesion.diameter_source == "phantom" and lesion.has_context
        assert lesion.diameter_mm == pytest.approx(lesion.diameter_px * spacing)
        assert lesion.diameter_px == pytest.approx(mask_diameter(lesion.mask))
        assert lesion.roi.dtype == np.float32 and lesion.context.dtype == np.float32
        assert np.array_equal(lesion.context, np.rint(lesion.context))   # spec §3 step 6
        # The mask is the lesion, and lesion_box its bounding box.
        rows, cols = np.nonzero(lesion.mask)
        assert lesion.lesion_box == (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
        # ROI inside the context, cut from it, of side D(1 + 2m), m ∈ [0.25, 0.6].
        r0, c0, r1, c1 = lesion.roi_box
        height, width = lesion.context.shape
        assert 0 <= r0 < r1 <= height and 0 <= c0 < c1 <= width
        assert np.array_equal(lesion.roi, lesion.context[r0:r1, c0:c1])
        assert r1 - r0 == c1 - c0 and height == width > r1 - r0
        margin = ((r1 - r0) / lesion.diameter_px - 1.0) / 2.0
        assert 0.25 - 0.03 <= margin <= 0.6 + 0.03
        assert margin == pytest.approx(lesion.attributes["roi_margin"], abs=0.03)
        # Context of margin 1.0 (side 3·D), centred on the lesion.
        assert height == pytest.approx(3.0 * lesion.diameter_px, abs=1.0)
        lr0, lc0, lr1, lc1 = lesion.lesion_box
        centre_offset = np.subtract(((r0 + r1) / 2, (c0 + c1) / 2),
                                    ((lr0 + lr1) / 2, (lc0 + lc1) / 2))
        assert np.abs(centre_offset).max() <= min(4.0, 0.1 * lesion.diameter_px) + 1.0
    diameters = np.array([l.diameter_mm for l in default_dataset.lesions])
    assert 20.0 <= np.median(diameters) <= 40.0          # log-normal medians 25–35 mm
    thicknesses = Counter(l.attributes["slice_thickness_mm"] for l in default_dataset.lesions)
    assert set(thicknesses) <= {1.25, 2.5, 3.0, 5.0} and thicknesses[5.0] == max(
        thicknesses.values())


# --------------------------------------------------------------------------- tissue values


def test_parenchyma_cyst_metastasis_and_hemangioma_hu(default_dataset):
    liver_errors, cyst_means, met_contrast, hem_contrast = [], [], [], []
    hypo_darker, all_met_darker, hem_peak, met_peak = [], [], [], []
    for lesion in default_dataset.lesions:
        a = lesion.attributes
        interior, ring = _interior_and_ring(lesion)
        liver = np.median(ring)
        truth_liver = a["liver_hu"] + a["hu_offset"]
        liver_errors.append(liver - truth_liver)
        name = default_dataset.class_names[lesion.label]
        if name == "cyst":
            # N(5, 5) clipped to −10…20 before noise (spec §2); allow for the
            # noise left in a mean over a small, correlated-noise interior.
            mean = interior.mean() - a["hu_offset"]
            assert -16.0 <= mean <= 26.0
            assert mean == pytest.approx(a["lesion_hu"], abs=6.0)
            cyst_means.append(mean)
        elif name == "metastasis":
            met_contrast.append(interior.mean() - liver)
            met_peak.append(np.percentile(interior, 95) - liver)
            all_met_darker.append(np.median(interior) < liver)
            if a["subtype"] == "hypovascular":
                hypo_darker.append(np.median(interior) < liver - 5.0)
        else:
            hem_contrast.append(interior.mean() - liver)
            hem_peak.append(np.percentile(interior, 95) - liver)
    liver_errors = np.abs(liver_errors)
    # The ring around each lesion is that patient's parenchyma (spec §1).
    assert np.mean(liver_errors < 8.0) >= 0.9
    assert abs(np.mean(cyst_means) - 5.0) < 3.0
    # Metastases are darker than their own patient's liver [16]; hypervascular
    # ones may be isodense [19].
    assert np.mean(hypo_darker) >= 0.95
    assert np.mean(all_met_darker) >= 0.85
    # Hemangiomas: brighter than metastases on average, with blood-pool nodules.
    assert np.mean(hem_contrast) > np.mean(met_contrast) + 10.0
    assert np.mean(hem_peak) > np.mean(met_peak) + 15.0


def test_patient_tissue_values_follow_spec_section_1(default_dataset):
    patients = {l.patient_id: l.attributes for l in default_dataset.lesions}
    values = list(patients.values())
    normal = [a for a in values if not a["steatosis"] and not a["cirrhosis"]]
    fatty = [a for a in values if a["steatosis"]]
    assert 0.05 <= len(fatty) / len(values) <= 0.4                   # p = 0.2
    for a in values:
        assert 85.0 <= a["liver_hu"] <= 145.0
        assert a["liver_enhancement_hu"] >= 25.0
        assert a["liver_hu"] == pytest.approx(
            min(max(a["liver_unenhanced_hu"] + a["liver_enhancement_hu"], 85.0), 145.0), abs=0.02)
        assert a["aorta_hu"] > a["liver_hu"]                         # [3]
    # L ≈ 113 HU without steatosis (58 + 55), ± the sites' scan-delay shifts.
    assert 100.0 <= np.mean([a["liver_hu"] for a in normal]) <= 126.0
    assert np.mean([a["liver_hu"] for a in fatty]) < np.mean([a["liver_hu"] for a in normal]) - 15
    assert np.mean([a["liver_unenhanced_hu"] for a in fatty]) < 45.0  # unenhanced ≤ 40 [6]


def test_noise_has_the_requested_sd_and_a_peaked_power_spectrum():
    rng = np.random.default_rng(0)
    spacing, peak, width = 0.7, 0.2, 0.15
    noise = correlated_noise(rng, (256, 256), spacing, peak, width, 15.0)
    assert noise.dtype == np.float32
    assert noise.std() == pytest.approx(15.0, rel=0.05)
    power = np.abs(np.fft.fft2(noise)) ** 2
    frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(256, spacing), np.fft.fftfreq(256, spacing)))
    bins = np.linspace(0.0, 0.7, 29)
    radial = [power[(frequency >= lo) & (frequency < hi)].mean() for lo, hi in
              zip(bins[:-1], bins[1:])]
    measured_peak = bins[int(np.argmax(radial))] + (bins[1] - bins[0]) / 2
    assert measured_peak == pytest.approx(peak, abs=0.04)
    # Correlated, not white: neighbouring pixels agree.
    assert np.corrcoef(noise[:, :-1].ravel(), noise[:, 1:].ravel())[0, 1] > 0.3


def test_images_carry_each_patients_noise_level(default_dataset):
    measured, requested = [], []
    for lesion in default_dataset.lesions:
        _, ring = _interior_and_ring(lesion)
        median = np.median(ring)
        measured.append(1.4826 * np.median(np.abs(ring - median)))   # robust to vessels
        requested.append(lesion.attributes["noise_sd_hu"])
    measured, requested = np.array(measured), np.array(requested)
    # Parenchymal texture (SD 2–4 HU) adds a little on top of the noise.
    assert np.corrcoef(measured, requested)[0, 1] > 0.85
    assert np.median(measured / requested) == pytest.approx(1.0, abs=0.15)


@pytest.mark.slow
def test_ben_cohen_preset_counts_and_healthy_rois():
    dataset = generate_phantoms("ben-cohen-2019", seed=3)
    assert dataset.class_names == ["cyst", "metastasis", "hemangioma", "healthy"]
    assert dataset.class_counts() == PRESETS["ben-cohen-2019"].class_counts   # Ben-Cohen §3.1
    assert dataset.input_size == 128
    dataset.validate()
    healthy = [l for l in dataset.lesions if dataset.class_names[l.label] == "healthy"]
    for lesion in healthy:
        assert lesion.mask is None
        assert lesion.lesion_box == lesion.roi_box
        assert 10.0 <= lesion.diameter_mm <= 102.0
        assert lesion.attributes["size_drawn_as"] in ("cyst", "metastasis", "hemangioma")
        # Parenchyma all through: its median is this patient's liver.
        truth = lesion.attributes["liver_hu"] + lesion.attributes["hu_offset"]
        assert np.median(lesion.roi) == pytest.approx(truth, abs=10.0)
    # Spec §2: a periportal cuff in about half of them.
    assert 0.2 <= np.mean([l.attributes["periportal_cuff"] for l in healthy]) <= 0.8
    # The four vendors of Ben-Cohen §3.1.
    assert {l.attributes["scanner"] for l in dataset.lesions} == {"GE", "Siemens", "Philips",
                                                                  "Toshiba"}


# --------------------------------------------------------------------------- difficulty, realism


def test_cysts_do_not_change_with_difficulty():
    """Spec §5: δ moves metastases and hemangiomas, never cysts."""
    easy = generate_phantoms(seed=5, difficulty=0.0, class_counts={"cyst": 4})
    hard = generate_phantoms(seed=5, difficulty=1.0, class_counts={"cyst": 4})
    for a, b in zip(easy.lesions, hard.lesions):
        assert a.attributes["lesion_hu"] == b.attributes["lesion_hu"]
        assert np.array_equal(a.mask, b.mask)
        assert a.attributes["noise_sd_hu"] < b.attributes["noise_sd_hu"]   # noise ×0.8 → ×1.5


@pytest.mark.slow
def test_higher_difficulty_makes_metastasis_and_hemangioma_harder_to_tell_apart():
    """Spec §5: at δ = 1 the texture classifier and the enhancing-nodule cue both weaken."""
    counts = {"metastasis": 30, "hemangioma": 30}
    accuracy, auc = {}, {}
    for delta in (0.0, 1.0):
        dataset = generate_phantoms(seed=0, difficulty=delta, class_counts=counts)
        labels = dataset.labels
        accuracy[delta] = np.mean(_grouped_cv_predictions(dataset) == labels)
        # Share of the lesion at least 30 HU above its liver: blood-pool nodules.
        bright = []
        for lesion in dataset.lesions:
            interior, ring = _interior_and_ring(lesion, interior_mm=1.0)
            bright.append(np.mean(interior > np.median(ring) + 30.0))
        auc[delta] = roc_auc_score(labels == dataset.class_names.index("hemangioma"), bright)
    assert accuracy[0.0] >= 0.65
    assert accuracy[1.0] <= accuracy[0.0] - 0.1
    assert auc[0.0] >= 0.85
    assert auc[1.0] <= auc[0.0] - 0.1


def test_realism_texture_classifier_is_imperfect_in_the_papers_way(default_dataset):
    """Claim (spec §6, default preset, δ = 0.5): a texture/histogram classifier
    with patient-grouped 3-fold CV lands clearly above chance (1/3) and clearly
    below perfect; cysts are the easiest class (recall > 90%); and the dominant
    confusion is metastasis ↔ hemangioma, as in Frid-Adar et al. 2018 Table 2.
    """
    predictions = _grouped_cv_predictions(default_dataset)
    labels = default_dataset.labels
    matrix = confusion_matrix(labels, predictions, labels=[0, 1, 2])
    accuracy = np.trace(matrix) / matrix.sum()
    recall = np.diag(matrix) / matrix.sum(axis=1)
    assert 0.55 <= accuracy <= 0.85
    assert recall[0] > 0.9 and recall[0] == recall.max()
    met_hem = matrix[1, 2] + matrix[2, 1]
    other_errors = matrix.sum() - np.trace(matrix) - met_hem
    assert met_hem > 3 * other_errors
    # Windowed W400/L50, the parenchyma sits mid-grey and little saturates.
    windowed = np.concatenate([window(l.roi, 50.0, 400.0).ravel()
                               for l in default_dataset.lesions])
    assert np.mean((windowed <= 0.0) | (windowed >= 1.0)) < 0.05
