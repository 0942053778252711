"""Procedurally generated CT phantoms of liver lesions: the built-in dataset.

The papers' clinical data (Sheba Medical Center; Frid-Adar et al. 2018 §2.1,
Ben-Cohen et al. 2019 §3.1) is private, so the project ships a generator that
follows ``shared/PHANTOMS.md`` (cited below as "spec §n"): 2-D portal-venous CT
ROIs of simple cysts, metastases, hemangiomas and healthy parenchyma, with the
papers' class counts, lesion sizes (10–102 mm) and size-relative crops, made by
an explicit image-formation chain (spec §3)::

    3-D anatomy on a fine grid  →  slab partial volume  →  Gaussian PSF
    →  pixel sampling  →  correlated noise (ramp + half-Gaussian NPS)
    →  scanner HU offset, rounding to integers  →  ROI and context crops

and nested random effects site → scanner → patient → lesion (spec §4) plus one
difficulty knob δ ∈ [0, 1] (spec §5) that moves metastases and hemangiomas
towards each other. Images are stored in HU at native pixel spacing; windowing
(W400/L50) and resizing to 64/128 px happen later, in the input pipeline.

Choices where the spec leaves room, or where this code departs from it (each is
repeated at the place it is implemented):

* Fine grid (spec §3 step 1): anatomy is drawn at half the pixel spacing
  (0.30–0.45 mm) rather than a fixed 0.25 mm: still finer than the PSF σ
  (0.34–0.55 mm), the PSF step is then followed by an exact 2×2 block average
  onto the pixel grid, and a 300 mm context stays at ~1000² cells (fast).
* Slab (spec §3 step 2): the slab is sampled by ``ceil(T / 1 mm) + 1``
  sub-slices (3–6) instead of 0.25 mm steps; every lesion is ≥ 10 mm, so
  1 mm steps already resolve its through-plane partial volume.
* Textures (parenchyma, lesion interiors) are 2-D fields, constant through the
  slab: their correlation lengths (≥ 1.5 mm inside lesions, 5–15 mm in liver)
  are of the order of the slab or longer, so slab averaging would barely change
  them, and the stated SDs are then the SDs as imaged.
* Scanners (spec §4 "four vendors, as in the papers"): the frid-adar-2018 preset
  uses the two vendors of its paper (GE, Siemens; Frid-Adar §2.1), ben-cohen-2019
  all four (GE, Siemens, Philips, Toshiba; Ben-Cohen §3.1). Two sites (contrast
  protocols) each run every vendor, so a scanner is a (site, vendor) pair. A
  variant preset (``DatasetPreset.based_on``, e.g. frid-adar-2018-imbalanced)
  uses its base preset's settings: only its counts differ.
* The HU offset N(0, 3) of spec §3 step 6 is drawn per scanner (spec §4 lists
  it as a scanner effect), not per image.
* Difficulty (spec §5): the mean metastasis contrast Δm runs 60 → 40 HU, not
  60 → 30 (see ``_Difficulty.at`` for the measurement behind it).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np
from scipy.special import erfc

from keras_lesions.data.dataset import Lesion, LesionDataset
from keras_lesions.data.imaging import centered_box, mask_diameter, roi_and_context_boxes
from keras_lesions.data.registry import (
    DEFAULT_WINDOW_LEVEL,
    DEFAULT_WINDOW_WIDTH,
    PRESETS,
)
from keras_lesions.errors import KerasLesionsError

POOLS = ("main", "extra")
# Frid-Adar §4.2.2: "78 new cases of Cysts, Metastases and Hemangiomas" added as
# more real data; we split them evenly over the preset's lesion classes.
EXTRA_POOL_SIZE = 78
LESION_CLASSES = ("cyst", "metastasis", "hemangioma")
_PATIENT_PREFIX = {"main": "P", "extra": "X"}
_POOL_STREAM = {"main": 1, "extra": 2}   # SeedSequence spawn keys; 0 is the shared world
SPEC_PATH = "shared/PHANTOMS.md"

VENDORS = ("GE", "Siemens", "Philips", "Toshiba")
# Frid-Adar §2.1: "two CT scanners: GE ... and Siemens"; Ben-Cohen §3.1: four.
# Keyed by the preset whose generation settings apply (see ``_settings_preset``).
_PRESET_VENDORS = {"frid-adar-2018": ("GE", "Siemens"), "ben-cohen-2019": VENDORS}
SITES = ("A", "B")

# Spec §3 step 2: slice thickness T and its probabilities.
SLICE_THICKNESSES_MM = (1.25, 2.5, 3.0, 5.0)
SLICE_THICKNESS_PROBS = (0.15, 0.25, 0.20, 0.40)
PIXEL_SPACING_RANGE_MM = (0.6, 0.9)          # spec §3 step 4
LESION_DIAMETER_RANGE_MM = (10.0, 102.0)     # Frid-Adar §2.1
# Size targets are drawn a little inside the paper's range because the
# diameter measured on the imaged mask differs from the drawn one by a few %.
_TARGET_DIAMETER_RANGE_MM = (10.6, 97.0)
# Spec §2 "Sizes": log-normal per class, medians 25–35 mm, log-SD 0.5 [E].
_SIZE_MEDIAN_MM = {"cyst": 25.0, "metastasis": 30.0, "hemangioma": 33.0}
_SIZE_LOG_SD = 0.5
CONTEXT_MARGIN = 1.0                          # spec §3 step 8
# Fine grid = pixel spacing / 2 = 0.30–0.45 mm instead of spec §3 step 1's
# 0.25 mm: still under the PSF σ (0.34–0.55 mm), so edges are resolved before
# the blur, and 2× keeps a 300 mm context at ~1000² cells (see module doc).
OVERSAMPLING = 2
ROI_MARGIN_RANGE = (0.25, 0.6)                # spec §3 step 8
# Spec §2/§4 [E]: 1–4 lesions per patient; this mix gives ~1.8 per patient.
_LESIONS_PER_PATIENT_PROBS = (0.5, 0.27, 0.15, 0.08)
# [E] probability that a further lesion of a patient is of the patient's main
# class; the rest mixes classes (a patient may carry a cyst and a metastasis).
_SAME_CLASS_PROB = 0.85
_FAT_HU = -100.0                              # perihepatic fat, fixed [E]


# --------------------------------------------------------------------------- public API


def generate_phantoms(
    preset: str = "frid-adar-2018",
    seed: int = 0,
    difficulty: float = 0.5,
    pool: str = "main",
    class_counts: dict[str, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LesionDataset:
    """Generate the built-in CT phantom dataset of ``shared/PHANTOMS.md``.

    Every random effect is drawn from generators seeded by
    ``np.random.SeedSequence(seed, spawn_key=...)`` in a fixed order: key (0,)
    draws the sites and scanners shared by both pools; (pool, 0) plans which
    patient carries which lesions; (pool, 1, p) draws patient p and
    (pool, 2, p, j) its lesion j. The same arguments therefore give a
    bit-identical dataset, the "main" and "extra" pools are independent, and
    their patients are disjoint (ids ``P0001`` vs ``X0001``).

    Args:
        preset: a key of ``registry.PRESETS`` ("frid-adar-2018": 53 cysts,
            64 metastases, 65 hemangiomas, 64-px input; "frid-adar-2018-imbalanced":
            the same classes and scanners, 20/80/40; "ben-cohen-2019": 66/81/65
            plus 27 healthy, 128-px input).
        seed: non-negative integer.
        difficulty: δ ∈ [0, 1] of spec §5; higher makes metastases and
            hemangiomas harder to tell apart (cysts do not change).
        pool: "main", the paper-sized dataset, or "extra", the "more real data"
            pool of Frid-Adar §4.2.2 (78 new cases from other patients).
        class_counts: lesions per class, overriding the pool's default (the
            preset's counts for "main"; 78 split evenly over the preset's lesion
            classes for "extra"). Classes left out get 0.
        progress: called as ``progress(done, total)`` after each lesion.

    Returns:
        A ``LesionDataset`` in HU (W400/L50 window recorded, not applied) whose
        lesions hold ``roi`` and ``context`` float32 images at native spacing
        (0.6–0.9 mm), a bool ``mask`` on the context grid (None for healthy),
        and the per-lesion truth (scanner, tissue values, subtype ...) in
        ``attributes``. ``created_by`` is left empty for the caller.

    Raises:
        KerasLesionsError: unknown preset or pool, δ outside [0, 1], a negative
            or non-integer seed, or bad ``class_counts``.
    """
    _check_preset_and_pool(preset, pool)
    seed = _check_seed(seed)
    if (isinstance(difficulty, bool) or not isinstance(difficulty, numbers.Real)
            or not 0.0 <= float(difficulty) <= 1.0):
        raise KerasLesionsError(f"phantom difficulty must lie in [0, 1], got {difficulty!r}")
    difficulty = float(difficulty)
    spec = PRESETS[preset]
    class_names = list(spec.class_names)
    counts = _resolve_class_counts(preset, pool, class_counts)

    scanners, sites = _draw_world(seed, _PRESET_VENDORS.get(_settings_preset(preset), VENDORS))
    knobs = _Difficulty.at(difficulty)
    stream = _POOL_STREAM[pool]
    plan = _plan_patients(counts, _rng(seed, stream, 0))
    # Healthy ROIs draw their size from the pooled lesion sizes (spec §3 step
    # 8), pooled in proportion to the preset's lesion counts.
    size_pool = {name: spec.class_counts.get(name, 0) for name in LESION_CLASSES}
    total = sum(counts.values())
    lesions: list[Lesion] = []
    for p_index, patient_classes in enumerate(plan):
        patient_id = _patient_id(pool, p_index)
        patient = _draw_patient(patient_id, _rng(seed, stream, 1, p_index), scanners, sites,
                                knobs)
        for j, class_name in enumerate(patient_classes):
            lesion_id = f"{patient_id}-L{j + 1}"
            lesions.append(_make_lesion(
                lesion_id=lesion_id,
                patient=patient,
                class_name=class_name,
                label=class_names.index(class_name),
                knobs=knobs,
                size_pool=size_pool,
                rng=_rng(seed, stream, 2, p_index, j),
                source=f"phantom:{preset}:seed={seed}:{lesion_id}",
            ))
            if progress is not None:
                progress(len(lesions), total)

    count_text = ", ".join(f"{counts[name]} {name}" for name in class_names)
    return LesionDataset(
        class_names=class_names,
        lesions=lesions,
        intensity_unit="HU",
        window_level=DEFAULT_WINDOW_LEVEL,
        window_width=DEFAULT_WINDOW_WIDTH,
        input_size=spec.input_size,
        description=(f"procedural portal-venous CT phantoms ({preset}, {pool} pool, seed {seed}, "
                     f"difficulty {difficulty:g}): {count_text}"),
        extra={"generator": "phantoms", "preset": preset, "seed": seed,
               "difficulty": difficulty, "pool": pool, "spec": SPEC_PATH},
    )


def default_class_counts(preset: str, pool: str = "main") -> dict[str, int]:
    """Lesions per class that ``generate_phantoms`` makes by default.

    Raises:
        KerasLesionsError: unknown preset or pool.
    """
    _check_preset_and_pool(preset, pool)
    return _resolve_class_counts(preset, pool, None)


def patient_plan(
    preset: str = "frid-adar-2018",
    seed: int = 0,
    pool: str = "main",
    class_counts: dict[str, int] | None = None,
) -> list[tuple[str, str]]:
    """Which patient carries which lesions, as ``generate_phantoms`` will make them.

    Cheap (no image is drawn): lets a caller assign and check folds before
    spending the time on the images. Takes the arguments of
    ``generate_phantoms`` that decide the plan (difficulty does not).

    Returns:
        ``(patient_id, class_name)`` per lesion, in the dataset's lesion order.

    Raises:
        KerasLesionsError: unknown preset or pool, a bad seed or bad ``class_counts``.
    """
    _check_preset_and_pool(preset, pool)
    seed = _check_seed(seed)
    counts = _resolve_class_counts(preset, pool, class_counts)
    plan = _plan_patients(counts, _rng(seed, _POOL_STREAM[pool], 0))
    return [(_patient_id(pool, p_index), class_name)
            for p_index, patient_classes in enumerate(plan) for class_name in patient_classes]


# --------------------------------------------------------------------------- arguments


def _check_preset_and_pool(preset: str, pool: str) -> None:
    if preset not in PRESETS:
        raise KerasLesionsError(
            f"unknown phantom preset {preset!r}; choose one of {sorted(PRESETS)}")
    if pool not in POOLS:
        raise KerasLesionsError(f"unknown phantom pool {pool!r}; choose one of {list(POOLS)}")


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise KerasLesionsError(f"the phantom seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _patient_id(pool: str, p_index: int) -> str:
    return f"{_PATIENT_PREFIX[pool]}{p_index + 1:04d}"


def _settings_preset(preset: str) -> str:
    """The preset whose generation settings (vendors) ``preset`` uses: its base, or itself."""
    return PRESETS[preset].based_on or preset


def _resolve_class_counts(preset: str, pool: str,
                          class_counts: dict[str, int] | None) -> dict[str, int]:
    class_names = list(PRESETS[preset].class_names)
    if class_counts is None:
        if pool == "main":
            return dict(PRESETS[preset].class_counts)
        lesion_classes = [name for name in class_names if name in LESION_CLASSES]
        share, rest = divmod(EXTRA_POOL_SIZE, len(lesion_classes))
        counts = {name: 0 for name in class_names}
        for i, name in enumerate(lesion_classes):
            counts[name] = share + (1 if i < rest else 0)
        return counts
    if not isinstance(class_counts, dict):
        raise KerasLesionsError(
            f"class_counts must map class names to counts, got {type(class_counts).__name__}")
    unknown = [name for name in class_counts if name not in class_names]
    if unknown:
        raise KerasLesionsError(
            f"class_counts names unknown classes {unknown}; this preset has {class_names}")
    counts = {name: 0 for name in class_names}
    for name, value in class_counts.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise KerasLesionsError(
                f"class_counts[{name!r}] must be a non-negative integer, got {value!r}")
        counts[name] = int(value)
    if sum(counts.values()) == 0:
        raise KerasLesionsError("class_counts asks for no lesions at all")
    return counts


def _rng(seed: int, *key: int) -> np.random.Generator:
    """A generator for one node of the random-effect tree (see ``generate_phantoms``)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


# --------------------------------------------------------------------------- random effects


@dataclass(frozen=True)
class _Difficulty:
    """The parameters spec §5 interpolates linearly between δ = 0 and δ = 1."""

    delta: float
    p_hemangioma_globular: float
    nodule_ratio_low: float
    fill_range: tuple[float, float]
    p_metastasis_globules: float
    rim_excess_max_hu: float
    edge_width_range_mm: tuple[float, float]
    metastasis_contrast_mean_hu: float
    hypervascular_share: float
    noise_multiplier: float

    @classmethod
    def at(cls, delta: float) -> "_Difficulty":
        def lerp(at_0: float, at_1: float) -> float:
            return at_0 + (at_1 - at_0) * delta

        return cls(
            delta=delta,
            p_hemangioma_globular=lerp(0.95, 0.55),       # 76% at δ≈.5 [14]
            nodule_ratio_low=lerp(0.9, 0.6),             # r ~ U(low, 1) [11]
            fill_range=(lerp(0.3, 0.0), lerp(1.0, 0.5)),  # atypical low fill at δ=1 [35]
            p_metastasis_globules=lerp(0.0, 0.2),        # 10% at δ≈.5 [14]
            rim_excess_max_hu=lerp(10.0, 40.0),          # [16]
            edge_width_range_mm=(lerp(2.0, 0.7), lerp(4.0, 2.0)),  # [10, 17]
            # Spec §5 says 60 → 30; we stop at 40. At 30 hypovascular bodies
            # (L − 30) turn clearly brighter than the unfilled hemangioma core
            # (B0 + U(0, 30) ≈ L − 53), a reverse cue that made metastasis vs
            # hemangioma *easier* at δ = 1 than at δ = 0.5 (texture-classifier
            # accuracy .59 → .68; with 40: .63 → .62). Default δ gives 50
            # instead of spec §2's 45.
            metastasis_contrast_mean_hu=lerp(60.0, 40.0),
            hypervascular_share=lerp(0.05, 0.30),        # [19, 20]
            noise_multiplier=lerp(0.8, 1.5),             # [31]
        )


@dataclass(frozen=True)
class _Site:
    name: str
    contrast_k_mean: float      # aortic / liver enhancement ratio of the protocol
    enhancement_shift_hu: float  # scan-delay shift of the liver enhancement [34]


@dataclass(frozen=True)
class _Scanner:
    scanner_id: str
    site: str
    vendor: str
    nps_peak_per_mm: float
    nps_width_per_mm: float
    psf_fwhm_mm: float
    noise_median_hu: float      # at 5 mm, before body size and δ
    hu_offset: float


def _draw_world(seed: int, vendors: tuple[str, ...]) -> tuple[list[_Scanner], dict[str, _Site]]:
    """Sites and scanners shared by every patient of both pools (spec §4)."""
    rng = _rng(seed, 0)
    vendor_params = {}
    # All four vendors are drawn, always in the same order, so that a vendor
    # looks the same in every preset made from one seed.
    for vendor in VENDORS:
        vendor_params[vendor] = dict(
            nps_peak_per_mm=rng.uniform(0.12, 0.30),   # FBP .27, ASIR .14–.18 [27]
            nps_width_per_mm=rng.uniform(0.10, 0.25),  # [E]
            psf_fwhm_mm=rng.uniform(0.8, 1.3),          # [E], Gaussian PSF [26]
            # 15–35% noise differences between scanner models [31]; the body
            # size factor (mean 1.1) brings the median to ~11 HU at 5 mm.
            noise_median_hu=10.0 * math.exp(rng.normal(0.0, 0.2)),
        )
    sites = {}
    for name in SITES:
        sites[name] = _Site(
            name=name,
            # A = B0 + k·ΔL, k ~ N(2.0, 0.25) overall [3]: site mean ± patient.
            contrast_k_mean=rng.normal(2.0, 0.12),
            enhancement_shift_hu=rng.uniform(-10.0, 10.0),   # scan delay ±10 [34]
        )
    scanners = []
    for name in SITES:
        for vendor in vendors:
            scanners.append(_Scanner(scanner_id=f"{name}-{vendor}", site=name, vendor=vendor,
                                     hu_offset=rng.normal(0.0, 3.0), **vendor_params[vendor]))
    return scanners, sites


def _plan_patients(counts: dict[str, int], rng: np.random.Generator) -> list[list[str]]:
    """Group the requested lesions into patients of 1–4 lesions (spec §2, §4).

    Each patient gets a main class drawn in proportion to what is left; each
    further lesion keeps that class with probability 0.85, else any class
    still needed. The class counts come out exact.
    """
    remaining = dict(counts)
    names = list(counts)
    patients = []
    while sum(remaining.values()) > 0:
        left = sum(remaining.values())
        n_lesions = min(int(rng.choice(4, p=_LESIONS_PER_PATIENT_PROBS)) + 1, left)
        weights = np.array([remaining[name] for name in names], float)
        main = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        classes = []
        for slot in range(n_lesions):
            keep = rng.random() < _SAME_CLASS_PROB
            if remaining[main] > 0 and (slot == 0 or keep):
                name = main
            else:
                weights = np.array([remaining[n] for n in names], float)
                name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
            remaining[name] -= 1
            classes.append(name)
        patients.append(classes)
    return patients


@dataclass(frozen=True)
class _Patient:
    """Everything lesions of one patient share (spec §1, §4)."""

    patient_id: str
    scanner: _Scanner
    steatosis: bool
    cirrhosis: bool
    liver_unenhanced_hu: float
    liver_enhancement_hu: float
    liver_hu: float
    blood_unenhanced_hu: float
    contrast_k: float
    aorta_hu: float
    portal_vein_hu: float
    hepatic_vein_hu: float
    fat_hu: float
    texture_sd_hu: float
    texture_correlation_mm: float
    spacing_mm: float
    slice_thickness_mm: float
    body_size: float
    noise_sd_hu: float

    def attributes(self) -> dict:
        scanner = self.scanner
        return {
            "site": scanner.site, "scanner": scanner.vendor, "scanner_id": scanner.scanner_id,
            "slice_thickness_mm": self.slice_thickness_mm,
            "noise_sd_hu": round(self.noise_sd_hu, 3),
            "psf_fwhm_mm": round(scanner.psf_fwhm_mm, 3),
            "nps_peak_per_mm": round(scanner.nps_peak_per_mm, 4),
            "nps_width_per_mm": round(scanner.nps_width_per_mm, 4),
            "hu_offset": round(scanner.hu_offset, 3),
            "steatosis": self.steatosis, "cirrhosis": self.cirrhosis,
            "liver_hu": round(self.liver_hu, 2),
            "liver_unenhanced_hu": round(self.liver_unenhanced_hu, 2),
            "liver_enhancement_hu": round(self.liver_enhancement_hu, 2),
            "blood_unenhanced_hu": round(self.blood_unenhanced_hu, 2),
            "aorta_hu": round(self.aorta_hu, 2), "portal_vein_hu": round(self.portal_vein_hu, 2),
            "hepatic_vein_hu": round(self.hepatic_vein_hu, 2),
            "body_size": round(self.body_size, 3),
        }


def _draw_patient(patient_id: str, rng: np.random.Generator, scanners: list[_Scanner],
                  sites: dict[str, _Site], knobs: _Difficulty) -> _Patient:
    """Tissue values, scan protocol and noise of one patient (spec §1, §4)."""
    scanner = scanners[int(rng.integers(len(scanners)))]
    site = sites[scanner.site]
    steatosis = bool(rng.random() < 0.2)            # [E]
    cirrhosis = bool(rng.random() < 0.1)            # [E] prevalence in a lesion work-up
    unenhanced = rng.normal(35.0, 8.0) if steatosis else rng.normal(58.0, 6.0)   # [1], [6]
    # 56±14 without cirrhosis, 40±12 with [2]; ≥ 25 (spec §1).
    enhancement = rng.normal(40.0, 12.0) if cirrhosis else rng.normal(55.0, 13.0)
    enhancement = max(enhancement + site.enhancement_shift_hu, 25.0)
    # The aorta follows the injected bolus, so it uses the enhancement before
    # the steatotic liver's reduced uptake (×0.75, [5]) is applied [E].
    liver_enhancement = max(enhancement * 0.75, 25.0) if steatosis else enhancement
    liver = float(np.clip(unenhanced + liver_enhancement, 85.0, 145.0))
    blood = rng.normal(45.0, 4.0)                    # [7]
    contrast_k = rng.normal(site.contrast_k_mean, 0.2)
    aorta = blood + contrast_k * enhancement         # [3]
    portal = aorta * rng.uniform(0.95, 1.15)         # spec §1 [E]
    hepatic = aorta * rng.uniform(0.75, 1.0)
    spacing = rng.uniform(*PIXEL_SPACING_RANGE_MM)
    thickness = float(SLICE_THICKNESSES_MM[int(rng.choice(4, p=SLICE_THICKNESS_PROBS))])
    body = rng.uniform(0.8, 1.4)
    # σ log-normal around the scanner's median at 5 mm, × √(5/T) (spec §3 step 5).
    noise = (scanner.noise_median_hu * math.exp(rng.normal(0.0, 0.15)) * body
             * math.sqrt(5.0 / thickness) * knobs.noise_multiplier)
    return _Patient(
        patient_id=patient_id, scanner=scanner, steatosis=steatosis, cirrhosis=cirrhosis,
        liver_unenhanced_hu=float(unenhanced), liver_enhancement_hu=float(liver_enhancement),
        liver_hu=liver, blood_unenhanced_hu=float(blood), contrast_k=float(contrast_k),
        aorta_hu=float(aorta), portal_vein_hu=float(portal), hepatic_vein_hu=float(hepatic),
        fat_hu=float(rng.normal(_FAT_HU, 8.0)),
        texture_sd_hu=float(rng.uniform(2.0, 4.0)),           # spec §1 [E]
        texture_correlation_mm=float(rng.uniform(5.0, 15.0)),
        spacing_mm=float(spacing), slice_thickness_mm=thickness, body_size=float(body),
        noise_sd_hu=float(noise),
    )


# --------------------------------------------------------------------------- lesion geometry


@dataclass
class _DirectionField:
    """A smooth random function on the unit sphere: Σ aⱼ cos(ωⱼ vⱼ·u + φⱼ).

    Used for lobulated outlines and irregular internal fronts; its values stay
    within ±sum(|aⱼ|).
    """

    axes: np.ndarray        # (J, 3) unit vectors
    frequencies: np.ndarray
    phases: np.ndarray
    amplitudes: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, amplitude: float, frequency: tuple[float, float],
             terms: int = 4) -> "_DirectionField":
        axes = rng.normal(size=(terms, 3))
        axes /= np.linalg.norm(axes, axis=1, keepdims=True)
        return cls(axes=axes, frequencies=rng.uniform(*frequency, size=terms),
                   phases=rng.uniform(0.0, 2 * math.pi, size=terms),
                   amplitudes=amplitude * rng.dirichlet(np.ones(terms)))

    @property
    def bound(self) -> float:
        return float(np.abs(self.amplitudes).sum())

    def __call__(self, ux, uy, uz):
        total = 0.0
        for axis, freq, phase, amp in zip(self.axes, self.frequencies, self.phases,
                                          self.amplitudes):
            total = total + amp * np.cos(freq * (axis[0] * ux + axis[1] * uy + axis[2] * uz)
                                         + phase)
        return total


@dataclass
class _Shape:
    """A lobulated 3-D ellipsoid; the slice runs through it at ``slice_offset_mm``.

    Local coordinates: the lesion's principal axes, origin at its centre; the
    image slice is the plane z_local = slice_offset_mm (+ z within the slab).
    """

    semi_axes_mm: np.ndarray    # (a, b, c): in-plane long, in-plane short, through-plane
    angle: float                # in-plane rotation of the long axis (rad)
    outline: _DirectionField
    slice_offset_fraction: float

    @property
    def slice_offset_mm(self) -> float:
        return self.slice_offset_fraction * float(self.semi_axes_mm[2])

    @property
    def max_radius_mm(self) -> float:
        return float(self.semi_axes_mm.max()) * (1.0 + self.outline.bound)

    def local(self, x: np.ndarray, y: np.ndarray, z: float) -> dict:
        """Local coordinates of slice points (x, y in mm) at slab height z (mm).

        Returns:
            dict with ``xr, yr, zr`` (local mm), ``u`` (unit direction in the
            ellipsoid-normalised frame), ``rho`` (normalised radius, 1 on the
            outline) and ``sd`` (signed distance to the outline along the ray, mm,
            negative inside).
        """
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        xr = cos * x + sin * y
        yr = -sin * x + cos * y
        zr = z + self.slice_offset_mm
        a, b, c = self.semi_axes_mm
        px, py, pz = xr / a, yr / b, zr / c
        norm = np.maximum(np.sqrt(px * px + py * py + pz * pz), 1e-9)
        u = (px / norm, py / norm, pz / norm)
        radius = 1.0 + self.outline(*u)
        rho = norm / radius
        r_mm = np.sqrt(xr * xr + yr * yr + zr * zr)
        sd = r_mm - r_mm / np.maximum(rho, 1e-9)
        return {"xr": xr, "yr": yr, "zr": zr, "u": u, "rho": rho, "sd": sd}

    def boundary_point(self, u: np.ndarray) -> np.ndarray:
        """Local mm coordinates of the outline in normalised direction ``u`` (3,)."""
        u = np.asarray(u, float) / np.linalg.norm(u)
        return self.semi_axes_mm * u * (1.0 + float(self.outline(*u)))


def _slab_offsets(thickness_mm: float) -> np.ndarray:
    """Sub-slice heights sampling the slab (spec §3 step 2; ≤ 1 mm apart, see module doc)."""
    n_sub = int(math.ceil(thickness_mm / 1.0)) + 1
    return thickness_mm * ((np.arange(n_sub) + 0.5) / n_sub - 0.5)


def _section_diameter_mm(shape: _Shape, thickness_mm: float, spacing_mm: float) -> float:
    """Longest diameter of the shape's slab-averaged cross-section, on a coarse grid."""
    extent = 2.2 * shape.max_radius_mm
    n = int(np.clip(extent / spacing_mm, 48, 112)) // 2 * 2
    step = extent / n
    coords = ((np.arange(n) - (n - 1) / 2.0) * step).astype(np.float32)
    x, y = np.meshgrid(coords, coords)
    inside = np.zeros_like(x)
    offsets = _slab_offsets(thickness_mm)
    for z in offsets:
        inside += shape.local(x, y, float(z))["rho"] <= 1.0
    return mask_diameter(inside / len(offsets) >= 0.5, (step, step))


def _draw_shape(rng: np.random.Generator, class_name: str, diameter_mm: float,
                patient: _Patient) -> tuple[_Shape, str]:
    """An outline whose imaged cross-section measures ``diameter_mm`` across."""
    # Spec §2 morphology: cysts round/ovoid, 10% lobulated; hemangiomas ovoid
    # or lobulated; metastases round or lobulated. Shares and amplitudes [E].
    p_lobulated, lobe_amplitude, aspect = {
        "cyst": (0.10, (0.12, 0.22), (0.8, 1.0)),
        "hemangioma": (0.35, (0.08, 0.18), (0.65, 1.0)),
        "metastasis": (0.45, (0.10, 0.22), (0.75, 1.0)),
    }[class_name]
    lobulated = bool(rng.random() < p_lobulated)
    if lobulated:
        outline = _DirectionField.draw(rng, rng.uniform(*lobe_amplitude), (2.5, 6.0))
    else:
        outline = _DirectionField.draw(rng, rng.uniform(0.02, 0.05), (1.0, 3.0))
    axes = diameter_mm / 2.0 * np.array([1.0, rng.uniform(*aspect), rng.uniform(0.7, 1.1)])
    # The radiologist measures the slice through (nearly) the largest extent.
    shape = _Shape(semi_axes_mm=axes, angle=rng.uniform(0.0, math.pi), outline=outline,
                   slice_offset_fraction=rng.uniform(-0.2, 0.2))
    # Scale to the target diameter as imaged; twice, because the slab does not
    # scale with the lesion.
    for _ in range(2):
        measured = _section_diameter_mm(shape, patient.slice_thickness_mm, patient.spacing_mm)
        shape.semi_axes_mm = shape.semi_axes_mm * (diameter_mm / measured)
    if lobulated:
        kind = "lobulated"
    else:
        kind = "round" if axes[1] / axes[0] > 0.88 else "ovoid"
    return shape, kind


def _draw_diameter(rng: np.random.Generator, class_name: str) -> float:
    """Log-normal lesion size per class, redrawn until inside the paper's range (spec §2)."""
    low, high = _TARGET_DIAMETER_RANGE_MM
    while True:
        diameter = _SIZE_MEDIAN_MM[class_name] * math.exp(rng.normal(0.0, _SIZE_LOG_SD))
        if low <= diameter <= high:
            return diameter


# --------------------------------------------------------------------------- lesion models


@dataclass
class _RadialLayer:
    """A central core: ρ' < threshold·(1 + front(u)), with a soft, irregular front.

    Necrosis, a hemangioma's central cleft, central hyperattenuation. ρ' is the
    normalised radius after stretching the normalised frame by ``stretch``
    (rotated by ``stretch_angle`` in-plane), which makes clefts elongated.
    """

    threshold: float
    front: _DirectionField
    softness_mm: float
    value_hu: float
    texture_sd_hu: float
    stretch: tuple[float, float, float] = (1.0, 1.0, 1.0)
    stretch_angle: float = 0.0

    def weight(self, geo: dict, shape: _Shape) -> np.ndarray:
        ux, uy, uz = geo["u"]
        rho = geo["rho"]
        if self.stretch != (1.0, 1.0, 1.0):
            cos, sin = math.cos(self.stretch_angle), math.sin(self.stretch_angle)
            sx, sy, sz = self.stretch
            vx, vy, vz = sx * (cos * ux + sin * uy), sy * (-sin * ux + cos * uy), sz * uz
            rho = rho * np.sqrt(vx * vx + vy * vy + vz * vz)
        level = self.threshold * (1.0 + self.front(ux, uy, uz))
        mean_radius = float(np.mean(shape.semi_axes_mm))
        return np.clip(0.5 + (level - rho) * mean_radius / self.softness_mm, 0.0, 1.0)


@dataclass
class _RimLayer:
    """A band just inside the outline (enhancing metastasis rim)."""

    thickness_mm: float
    front: _DirectionField
    value_hu: float
    texture_sd_hu: float

    def weight(self, geo: dict, shape: _Shape) -> np.ndarray:
        local = self.thickness_mm * (1.0 + self.front(*geo["u"]))
        return np.clip(0.5 + (geo["sd"] + local) / 1.0, 0.0, 1.0)


@dataclass
class _SpheresLayer:
    """Small spheres (globules, nodules, calcifications) at local positions, each its own value."""

    centres_mm: np.ndarray      # (n, 3) local coordinates
    radii_mm: np.ndarray
    values_hu: np.ndarray

    def paint(self, geo: dict, value: np.ndarray, fine_mm: float, shape: _Shape,
              grid_mm: np.ndarray) -> np.ndarray:
        """Paint the spheres cut by this sub-slice, each only within its own window."""
        cos, sin = math.cos(shape.angle), math.sin(shape.angle)
        for centre, radius, hu in zip(self.centres_mm, self.radii_mm, self.values_hu):
            dz = float(geo["zr"]) - centre[2]
            if abs(dz) > radius + fine_mm:
                continue   # this sphere misses the sub-slice
            # Local → slice frame (inverse of the rotation in _Shape.local).
            x = cos * centre[0] - sin * centre[1]
            y = sin * centre[0] + cos * centre[1]
            reach = radius + 2 * fine_mm
            cols = np.searchsorted(grid_mm, [x - reach, x + reach])
            rows = np.searchsorted(grid_mm, [y - reach, y + reach])
            if cols[1] <= cols[0] or rows[1] <= rows[0]:
                continue
            window = (slice(int(rows[0]), int(rows[1])), slice(int(cols[0]), int(cols[1])))
            distance = np.sqrt((geo["xr"][window] - centre[0]) ** 2
                               + (geo["yr"][window] - centre[1]) ** 2 + dz * dz)
            weight = np.clip((radius - distance) / fine_mm + 0.5, 0.0, 1.0)
            value[window] += weight * (hu - value[window])
        return value


@dataclass
class _PlaneLayer:
    """A thin plane through the lesion (cyst septum), perpendicular to the slice."""

    angle: float
    offset_mm: float
    thickness_mm: float
    value_hu: float

    def weight(self, geo: dict, fine_mm: float) -> np.ndarray:
        distance = np.abs(math.cos(self.angle) * geo["xr"] + math.sin(self.angle) * geo["yr"]
                          - self.offset_mm)
        return np.clip((self.thickness_mm / 2.0 - distance) / fine_mm + 0.5, 0.0, 1.0)


@dataclass
class _LesionModel:
    """A lesion as drawn: outline, tissue values and internal layers (in paint order)."""

    shape: _Shape
    edge_width_mm: float          # 10–90% width of the outline; PSF comes on top
    base_hu: float
    base_texture_sd_hu: float
    base_texture_correlation_mm: float
    layers: list = field(default_factory=list)
    halo_hu: float | None = None  # faint ring just outside the outline
    halo_width_mm: float = 0.0
    subtype: str = ""
    attributes: dict = field(default_factory=dict)

    @property
    def extent_mm(self) -> float:
        """Half-side of a box around the centre holding everything the lesion paints."""
        return self.shape.max_radius_mm + 2.0 * self.edge_width_mm + self.halo_width_mm + 2.0

    def evaluate(self, geo: dict, base_texture: np.ndarray, layer_texture: np.ndarray,
                 fine_mm: float, grid_mm: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Lesion value, opacity and halo weight at one sub-slice.

        Args:
            geo: ``_Shape.local`` of the lesion window at this sub-slice.
            base_texture / layer_texture: unit-SD fields on the lesion window.
            fine_mm: fine-grid spacing.
            grid_mm: the window's 1-D coordinates (rows and columns alike).

        Returns:
            (value_hu, alpha, halo_weight): alpha is the lesion's share of each
            point (1 inside, a soft edge of ``edge_width_mm``); halo_weight is
            None when the lesion has no halo.
        """
        value = self.base_hu + self.base_texture_sd_hu * base_texture
        for layer in self.layers:
            if isinstance(layer, _SpheresLayer):
                value = layer.paint(geo, value, fine_mm, self.shape, grid_mm)
                continue
            if isinstance(layer, _PlaneLayer):
                weight = layer.weight(geo, fine_mm)
                layer_value = layer.value_hu
            else:
                weight = layer.weight(geo, self.shape)
                layer_value = layer.value_hu + layer.texture_sd_hu * layer_texture
            value = value + weight * (layer_value - value)
        # A Gaussian-profile edge with 10–90% width w: σ = w / 2.563.
        sigma = max(self.edge_width_mm / 2.563, 0.35 * fine_mm)
        alpha = 0.5 * erfc(geo["sd"] / (sigma * math.sqrt(2.0)))
        halo = None
        if self.halo_hu is not None:
            halo = np.clip(np.minimum(geo["sd"] + 0.5, self.halo_width_mm - geo["sd"]), 0.0, 1.0)
        return value, alpha, halo


def _nodules(rng: np.random.Generator, shape: _Shape, count: int, radius_mm: tuple[float, float],
             depth: float, value: Callable[[], float], thickness_mm: float) -> _SpheresLayer:
    """Nodules between the outline and ``depth`` of the radius inward, cutting the slab.

    Centres are spread evenly over the annulus 1 − depth ≤ ρ ≤ 1 and pulled in
    by 0.8 r, so depth 0 gives discontinuous globules hugging the outline and
    a larger depth a centripetal fill with a nodular inner front (spec §2
    hemangioma). Heights are drawn so every nodule touches the slab.
    """
    centres, radii, values = [], [], []
    mean_radius = float(np.mean(shape.semi_axes_mm[:2]))
    for _ in range(count):
        r = min(rng.uniform(*radius_mm), 0.3 * mean_radius)
        azimuth = rng.uniform(0.0, 2 * math.pi)
        height = shape.slice_offset_mm + rng.uniform(-1.0, 1.0) * (thickness_mm / 2 + 0.6 * r)
        uz = float(np.clip(height / float(shape.semi_axes_mm[2]), -0.9, 0.9))
        horizontal = math.sqrt(1.0 - uz * uz)
        boundary = shape.boundary_point(
            np.array([horizontal * math.cos(azimuth), horizontal * math.sin(azimuth), uz]))
        inner = max(1.0 - depth, 0.0)
        scale = math.sqrt(rng.uniform(inner * inner, 1.0))   # uniform over the annulus area
        planar = boundary[:2] * scale
        planar -= 0.8 * r * planar / max(float(np.linalg.norm(planar)), 1e-6)
        centres.append((planar[0], planar[1], height))
        radii.append(r)
        values.append(value())
    return _SpheresLayer(np.array(centres, float).reshape(-1, 3), np.array(radii, float),
                         np.array(values, float))


def _calcifications(rng: np.random.Generator, shape: _Shape, thickness_mm: float) -> _SpheresLayer:
    """1–4 dense dots inside the lesion, within the slab (spec §2, p = 0.05)."""
    count = int(rng.integers(1, 5))
    centres = []
    for _ in range(count):
        azimuth = rng.uniform(0.0, 2 * math.pi)
        u = np.array([math.cos(azimuth), math.sin(azimuth), 0.0])
        point = shape.boundary_point(u) * rng.uniform(0.0, 0.7)
        point[2] = shape.slice_offset_mm + rng.uniform(-0.5, 0.5) * thickness_mm
        centres.append(point)
    return _SpheresLayer(np.array(centres), rng.uniform(0.5, 1.5, count),
                         rng.uniform(250.0, 600.0, count))


def _draw_cyst(rng, patient: _Patient, shape: _Shape) -> _LesionModel:
    """Simple cyst (spec §2): water, no wall, no enhancement; δ does not touch it."""
    value = float(np.clip(rng.normal(5.0, 5.0), -10.0, 20.0))   # [8, 9, 10]
    model = _LesionModel(
        shape=shape,
        # "edge blurred only by the PSF": a sub-pixel edge before the PSF.
        edge_width_mm=0.2,
        base_hu=value,
        base_texture_sd_hu=rng.uniform(0.5, 1.5),   # fluid is homogeneous [E]
        base_texture_correlation_mm=3.0,
        subtype="simple",
    )
    features = []
    if rng.random() < 0.05:   # thin septum
        features.append("septum")
        model.layers.append(_PlaneLayer(
            angle=rng.uniform(0.0, math.pi),
            offset_mm=rng.uniform(-0.3, 0.3) * float(shape.semi_axes_mm[1]),
            thickness_mm=rng.uniform(0.6, 1.2),
            value_hu=patient.liver_hu * rng.uniform(0.6, 0.9)))
        model.subtype = "septated"
    model.attributes = {"lesion_hu": round(value, 2), "features": features}
    return model


def _draw_hemangioma(rng, patient: _Patient, shape: _Shape, knobs: _Difficulty,
                     diameter_mm: float) -> _LesionModel:
    """Cavernous hemangioma (spec §2, §5): peripheral globules filling centripetally."""
    ratio = rng.uniform(knobs.nodule_ratio_low, 1.0)
    # Nodules isodense to the blood pool [13]: r·(A + PV)/2.
    nodule = ratio * (patient.aorta_hu + patient.portal_vein_hu) / 2.0
    core = patient.blood_unenhanced_hu + rng.uniform(0.0, 30.0)   # unfilled lakes
    thickness = patient.slice_thickness_mm
    if diameter_mm < 15.0 and rng.random() < 0.5:
        subtype = "flash-fill"   # < 1.5–2 cm [12, 13]
    elif rng.random() < knobs.p_hemangioma_globular:
        subtype = "globular"
    else:
        subtype = "atypical"     # low-attenuation type [35]
    model = _LesionModel(
        shape=shape,
        edge_width_mm=rng.uniform(0.2, 0.6),   # "sharp" [13] [E]
        base_hu=nodule if subtype == "flash-fill" else core,
        base_texture_sd_hu=rng.uniform(2.0, 5.0),
        base_texture_correlation_mm=rng.uniform(2.0, 4.0),
        subtype=subtype,
    )
    features: list[str] = []
    fill = 1.0
    n_globules = 0
    if subtype == "globular":
        fill = rng.uniform(*knobs.fill_range)
        # Globules 3–9 mm [14] spread over the outer ``fill`` of the radius:
        # enough of them to cover that annulus ~1.3 times (so it coalesces,
        # with gaps), never fewer than a discontinuous ring of one per
        # 8–16 mm of circumference.
        mean_radius = float(np.mean(shape.semi_axes_mm[:2]))
        covering = 1.3 * mean_radius ** 2 * (1.0 - (1.0 - fill) ** 2) / 3.0 ** 2
        ring = math.pi * diameter_mm / rng.uniform(8.0, 16.0)
        n_globules = int(np.clip(round(max(covering, ring)), 3, 250))
        model.layers.append(_nodules(
            rng, shape, n_globules, (1.5, 4.5), depth=fill,
            value=lambda: nodule * rng.uniform(0.93, 1.0), thickness_mm=thickness))
        features.append("peripheral-globules")
    elif subtype == "atypical":
        # A few faint dots at most: the lesion reads as a hypodense mass.
        fill = 0.0
        n_globules = int(rng.integers(0, 4))
        if n_globules:
            model.layers.append(_nodules(
                rng, shape, n_globules, (1.0, 2.0), depth=0.0,
                value=lambda: core + (nodule - core) * rng.uniform(0.3, 0.7),
                thickness_mm=thickness))
    # Central cleft of large hemangiomas (> 4–5 cm [12, 13]); p rises from
    # 0.5 at 45 mm to 0.9 at 90 mm [E].
    if diameter_mm >= 45.0 and rng.random() < 0.5 + 0.4 * min((diameter_mm - 45.0) / 45.0, 1.0):
        features.append("central-cleft")
        model.layers.append(_RadialLayer(
            threshold=rng.uniform(0.2, 0.35), front=_DirectionField.draw(rng, 0.3, (3.0, 7.0)),
            softness_mm=1.0, value_hu=rng.normal(25.0, 8.0), texture_sd_hu=3.0,
            stretch=(1.0, 3.0, 1.0), stretch_angle=rng.uniform(0.0, math.pi)))
    if rng.random() < 0.05:
        features.append("calcification")
        model.layers.append(_calcifications(rng, shape, thickness))
    model.attributes = {
        "lesion_hu": round(model.base_hu, 2), "nodule_hu": round(nodule, 2),
        "nodule_ratio": round(ratio, 3), "core_hu": round(core, 2),
        "fill_fraction": round(fill, 3), "n_globules": n_globules, "features": features,
    }
    return model


def _draw_metastasis(rng, patient: _Patient, shape: _Shape, knobs: _Difficulty,
                     diameter_mm: float) -> _LesionModel:
    """Hypo- or hypervascular metastasis (spec §2, §5)."""
    liver = patient.liver_hu
    hypervascular = bool(rng.random() < knobs.hypervascular_share)
    if hypervascular:
        body = liver + rng.normal(-10.0, 10.0)       # 39% isodense after contrast [19]
    else:
        contrast = float(np.clip(rng.normal(knobs.metastasis_contrast_mean_hu, 15.0), 15.0, 85.0))
        body = liver - contrast
    model = _LesionModel(
        shape=shape,
        edge_width_mm=rng.uniform(*knobs.edge_width_range_mm),   # ill-defined [10, 17]
        base_hu=body,
        base_texture_sd_hu=rng.uniform(5.0, 12.0),               # spec §2
        base_texture_correlation_mm=rng.uniform(1.5, 4.0),       # [E]
        subtype="hypervascular" if hypervascular else "hypovascular",
    )
    mean_radius = float(np.mean(shape.semi_axes_mm[:2]))
    features: list[str] = []
    attributes: dict = {}
    # Necrosis grows likelier with size [18]; share [E].
    if rng.random() < float(np.clip((diameter_mm - 20.0) / 40.0, 0.0, 0.6)):
        features.append("necrosis")
        necrosis = rng.normal(20.0, 8.0)
        attributes["necrosis_hu"] = round(necrosis, 2)
        model.layers.append(_RadialLayer(
            threshold=rng.uniform(0.3, 0.6), front=_DirectionField.draw(rng, 0.25, (2.0, 6.0)),
            softness_mm=1.5, value_hu=necrosis, texture_sd_hu=4.0))
    elif rng.random() < 0.51:   # central hyperattenuation: target pattern [16, 17]
        features.append("central-hyperattenuation")
        model.layers.append(_RadialLayer(
            threshold=rng.uniform(0.2, 0.4), front=_DirectionField.draw(rng, 0.25, (2.0, 6.0)),
            softness_mm=2.0, value_hu=body + rng.uniform(10.0, 30.0),
            texture_sd_hu=model.base_texture_sd_hu))
    if hypervascular:
        # "faint halo" (spec §2): a slightly hypodense ring around the nodule [E].
        model.halo_hu = liver - rng.uniform(5.0, 15.0)
        model.halo_width_mm = rng.uniform(1.5, 3.0)
        features.append("halo")
    elif rng.random() < 0.84:   # enhancing rim 84%, thick in 49% [16]
        thick = rng.random() < 0.49
        thickness = rng.uniform(2.5, 5.0) if thick else rng.uniform(1.0, 2.0)
        thickness = min(thickness, 0.3 * mean_radius)
        rim = liver + rng.uniform(-10.0, knobs.rim_excess_max_hu)
        features.append("thick-rim" if thick else "thin-rim")
        attributes.update(rim_hu=round(rim, 2), rim_thickness_mm=round(thickness, 2))
        model.layers.append(_RimLayer(
            thickness_mm=thickness, front=_DirectionField.draw(rng, 0.3, (2.0, 6.0)),
            value_hu=rim, texture_sd_hu=4.0))
    if rng.random() < knobs.p_metastasis_globules:
        # Hemangioma mimic: peripheral nodular enhancement in a metastasis [14].
        features.append("peripheral-globules")
        ratio = rng.uniform(knobs.nodule_ratio_low, 1.0)
        nodule = ratio * (patient.aorta_hu + patient.portal_vein_hu) / 2.0
        count = int(rng.integers(2, 6))
        attributes.update(nodule_hu=round(nodule, 2), n_globules=count)
        model.layers.append(_nodules(
            rng, shape, count, (1.0, 3.0), depth=0.0,
            value=lambda: nodule * rng.uniform(0.85, 1.0), thickness_mm=patient.slice_thickness_mm))
    if rng.random() < 0.05:
        features.append("calcification")
        model.layers.append(_calcifications(rng, shape, patient.slice_thickness_mm))
    model.attributes = {"lesion_hu": round(body, 2), "features": features, **attributes}
    return model


# --------------------------------------------------------------------------- background


@dataclass
class _Vessel:
    """A curved, tapering vessel (a polyline of capsules, optionally with one branch).

    Coordinates are slice coordinates in mm, z relative to the slab centre.
    """

    starts: np.ndarray            # (n, 3) segment start points
    ends: np.ndarray              # (n, 3) segment end points
    radii: np.ndarray             # (n, 2) radius at start and end of each segment
    value_hu: float
    kind: str                     # "portal" or "hepatic"
    cuff_mm: float = 0.0          # periportal low-attenuation cuff [21]
    cuff_hu: float = 0.0

    @property
    def max_radius_mm(self) -> float:
        return float(self.radii.max())

    def distance_to(self, point: np.ndarray) -> float:
        """Distance from ``point`` to the vessel's axis (mm)."""
        axis = self.ends - self.starts
        t = np.clip(((point - self.starts) * axis).sum(1) / (axis * axis).sum(1), 0.0, 1.0)
        return float(np.linalg.norm(self.starts + t[:, None] * axis - point, axis=1).min())


def _vessel_walk(rng: np.random.Generator, start: np.ndarray, direction: np.ndarray,
                 radius: float, steps: int, taper: float) -> tuple[list, list, list]:
    """A random walk of ``steps`` segments, 6–15 mm each, turning ~17° per step."""
    starts, ends, radii = [], [], []
    point = start
    for step in range(steps):
        direction = direction + rng.normal(0.0, 0.3, size=3)
        direction /= np.linalg.norm(direction)
        end = point + rng.uniform(6.0, 15.0) * direction
        # Each step narrows by ``taper``; the last one fades to 30% so that the
        # vessel thins out instead of ending as a cut rod [E].
        next_radius = radius * (0.3 if step == steps - 1 else taper)
        starts.append(point)
        ends.append(end)
        radii.append((radius, next_radius))
        point, radius = end, next_radius
    return starts, ends, radii


def _draw_vessel(rng: np.random.Generator, patient: _Patient, centre_xy: tuple[float, float],
                 radius_mm: float) -> _Vessel:
    """A portal or hepatic vein branch crossing the slab at ``centre_xy``.

    From the crossing point the vessel runs both ways as a gently curving
    walk, widening towards the hilum and narrowing away from it, and with
    p = 0.5 gives off one thinner branch [E]. Directions lean towards the
    body axis (z × 1.5) so most vessels cut an axial slice as dots and ovals.
    """
    direction = rng.normal(size=3) * np.array([1.0, 1.0, 1.5])
    direction /= np.linalg.norm(direction)
    point = np.array([centre_xy[0], centre_xy[1],
                      rng.uniform(-0.5, 0.5) * patient.slice_thickness_mm])
    starts, ends, radii = _vessel_walk(rng, point, direction, radius_mm,
                                       int(rng.integers(2, 5)), taper=0.85)
    back = _vessel_walk(rng, point, -direction, radius_mm, int(rng.integers(1, 4)), taper=1.1)
    starts += back[0]
    ends += back[1]
    radii += back[2]
    if rng.random() < 0.5:
        node = int(rng.integers(len(ends)))
        side = rng.normal(size=3)
        branch_direction = ends[node] - starts[node] + 1.5 * np.linalg.norm(
            ends[node] - starts[node]) * side / np.linalg.norm(side)
        branch = _vessel_walk(rng, ends[node], branch_direction / np.linalg.norm(branch_direction),
                              radii[node][1] * rng.uniform(0.5, 0.7), int(rng.integers(1, 4)),
                              taper=0.85)
        starts += branch[0]
        ends += branch[1]
        radii += branch[2]
    portal = bool(rng.random() < 0.5)
    trunk_hu = patient.portal_vein_hu if portal else patient.hepatic_vein_hu
    value = trunk_hu * rng.uniform(0.95, 1.02)
    return _Vessel(starts=np.array(starts), ends=np.array(ends), radii=np.array(radii),
                   value_hu=float(value), kind="portal" if portal else "hepatic")


def _draw_vessels(rng: np.random.Generator, patient: _Patient, half_side_mm: float,
                  keep_out_mm: float, lesion_centre: np.ndarray) -> list[_Vessel]:
    """Background vessels over the canvas; they pass beside the lesion, never through it."""
    area = (2.0 * half_side_mm) ** 2
    count = int(rng.poisson(area / 32.0 ** 2))    # one branch per (32 mm)² [E]
    vessels = []
    for _ in range(count):
        # Log-uniform radius 0.6–5 mm where it crosses the slab: many small
        # branches, few trunks [E].
        radius = math.exp(rng.uniform(math.log(0.6), math.log(5.0)))
        for _attempt in range(8):
            xy = rng.uniform(-half_side_mm, half_side_mm, size=2)
            vessel = _draw_vessel(rng, patient, (xy[0], xy[1]), radius)
            if vessel.distance_to(lesion_centre) > keep_out_mm + vessel.max_radius_mm + 1.0:
                vessels.append(vessel)
                break
    return vessels


def _segment_window(start: np.ndarray, end: np.ndarray, reach: float, z_range: tuple[float, float],
                    coords: np.ndarray) -> tuple[int, int, int, int] | None:
    """Fine-grid (row0, col0, row1, col1) a capsule can touch within the slab, or None."""
    z_low, z_high = z_range[0] - reach, z_range[1] + reach
    axis = end - start
    low, high = 0.0, 1.0
    if abs(axis[2]) > 1e-9:
        t1, t2 = sorted(((z_low - start[2]) / axis[2], (z_high - start[2]) / axis[2]))
        low, high = max(low, t1), min(high, t2)
        if low > high:
            return None
    elif not z_low <= start[2] <= z_high:
        return None
    points = start[None, :2] + np.array([[low], [high]]) * axis[None, :2]
    x0, y0 = points.min(axis=0) - reach
    x1, y1 = points.max(axis=0) + reach
    cols = np.searchsorted(coords, [x0, x1])
    rows = np.searchsorted(coords, [y0, y1])
    if cols[1] <= cols[0] or rows[1] <= rows[0]:
        return None
    return int(rows[0]), int(cols[0]), int(rows[1]), int(cols[1])


@dataclass
class _VesselFootprint:
    """The capsules of one vessel that can touch the slab, with their fine-grid boxes."""

    vessel: _Vessel
    window: tuple[slice, slice]               # union of the boxes
    capsules: list                            # (box, start, axis, r0, r1)


def _vessel_footprint(vessel: _Vessel, coords: np.ndarray, offsets: np.ndarray,
                      fine_mm: float) -> _VesselFootprint | None:
    """Where on the fine grid the vessel (and its cuff) can appear; None if it misses the slab."""
    z_range = (float(offsets.min()), float(offsets.max()))
    capsules = []
    for start, end, (r0, r1) in zip(vessel.starts, vessel.ends, vessel.radii):
        reach = max(r0, r1) + vessel.cuff_mm + 2 * fine_mm
        box = _segment_window(start, end, reach, z_range, coords)
        if box is not None:
            capsules.append((box, start, end - start, r0, r1))
    if not capsules:
        return None
    row0 = min(c[0][0] for c in capsules)
    col0 = min(c[0][1] for c in capsules)
    row1 = max(c[0][2] for c in capsules)
    col1 = max(c[0][3] for c in capsules)
    return _VesselFootprint(vessel, (slice(row0, row1), slice(col0, col1)), capsules)


def _vessel_weights(footprint: _VesselFootprint, z: float, extra_radius: float,
                    coords: np.ndarray, fine_mm: float) -> np.ndarray:
    """Soft indicator (union over capsules) of the vessel, radius + extra_radius, at sub-slice z.

    Returns:
        float32 weights on ``footprint.window``.
    """
    window = footprint.window
    row0, col0 = window[0].start, window[1].start
    weight = np.zeros((window[0].stop - row0, window[1].stop - col0), np.float32)
    for (r_a, c_a, r_b, c_b), start, axis, r0, r1 in footprint.capsules:
        ox = (coords[c_a:c_b] - start[0])[None, :]
        oy = (coords[r_a:r_b] - start[1])[:, None]
        oz = z - start[2]
        t = np.clip((ox * axis[0] + oy * axis[1] + oz * axis[2]) / float(axis @ axis), 0.0, 1.0)
        dx, dy, dz = ox - t * axis[0], oy - t * axis[1], oz - t * axis[2]
        distance = np.sqrt(dx * dx + dy * dy + dz * dz)
        radius = r0 + (r1 - r0) * t + extra_radius
        part = np.clip((radius - distance) / fine_mm + 0.5, 0.0, 1.0)
        sub = weight[r_a - row0:r_b - row0, c_a - col0:c_b - col0]
        np.maximum(sub, part, out=sub)
    return weight


def _gaussian_field(rng: np.random.Generator, shape: tuple[int, int], spacing_mm: float,
                    correlation_mm: float) -> np.ndarray:
    """Unit-SD Gaussian random field with Gaussian autocorrelation (1/e at ``correlation_mm``).

    White noise filtered in the Fourier domain by a Gaussian of σ = ℓ/2 (its
    autocorrelation then falls to 1/e at ℓ); normalised by the filter's
    theoretical gain, so the SD does not depend on the sample.
    """
    sigma = correlation_mm / 2.0
    fy = np.fft.fftfreq(shape[0], d=spacing_mm)[:, None]
    fx = np.fft.rfftfreq(shape[1], d=spacing_mm)[None, :]
    gain = np.exp(-2.0 * (math.pi * sigma) ** 2 * (fy * fy + fx * fx))
    fx_full = np.fft.fftfreq(shape[1], d=spacing_mm)[None, :]
    variance = np.mean(np.exp(-4.0 * (math.pi * sigma) ** 2 * (fy * fy + fx_full * fx_full)))
    white = rng.standard_normal(shape)
    field_ = np.fft.irfft2(np.fft.rfft2(white) * gain, s=shape)
    return (field_ / math.sqrt(variance)).astype(np.float32)


def _noise_power(frequency: np.ndarray, peak: float, width: float) -> np.ndarray:
    """CT noise power spectrum of spec §3 step 5 (peak value 1).

    A ramp ∝ f up to ``peak`` with a 5% floor (filtered back-projection), then a
    half-Gaussian roll-off of SD ``width`` (the reconstruction kernel) [28, 29].
    """
    ramp = 0.05 + 0.95 * frequency / peak
    roll_off = np.exp(-0.5 * ((frequency - peak) / width) ** 2)
    return np.where(frequency <= peak, ramp, roll_off)


def correlated_noise(rng: np.random.Generator, shape: tuple[int, int], spacing_mm: float,
                     peak_per_mm: float, width_per_mm: float, sd_hu: float) -> np.ndarray:
    """CT-like correlated noise: white N(0, 1) → FFT → ×√NPS → inverse FFT → SD σ.

    Args:
        rng: generator the white noise is drawn from.
        shape: (rows, cols) in pixels.
        spacing_mm: pixel spacing.
        peak_per_mm: NPS peak frequency (0.12–0.30 mm⁻¹ in spec §3 step 5).
        width_per_mm: SD of the NPS roll-off above the peak.
        sd_hu: target noise SD in HU (the expected SD, not renormalised per image).

    Returns:
        float32 array of ``shape``, mean 0, SD ≈ ``sd_hu``.
    """
    fy = np.fft.fftfreq(shape[0], d=spacing_mm)[:, None]
    fx = np.fft.rfftfreq(shape[1], d=spacing_mm)[None, :]
    power = _noise_power(np.hypot(fy, fx), peak_per_mm, width_per_mm)
    fx_full = np.fft.fftfreq(shape[1], d=spacing_mm)[None, :]
    variance = float(np.mean(_noise_power(np.hypot(fy, fx_full), peak_per_mm, width_per_mm)))
    white = rng.standard_normal(shape)
    noise = np.fft.irfft2(np.fft.rfft2(white) * np.sqrt(power), s=shape)
    return (noise * (sd_hu / math.sqrt(variance))).astype(np.float32)


# --------------------------------------------------------------------------- one lesion


@dataclass
class _Scene:
    """What surrounds one lesion on its canvas: liver surface, vessels (drawn, not imaged)."""

    canvas_px: int
    spacing_mm: float
    edge_distance_mm: float       # lesion centre → nearest liver surface
    edge_angle: float
    liver_radius_mm: float        # curvature of the surface
    surface_waves: list           # (amplitude mm, angular frequency, phase)
    fat_thickness_mm: float
    wall_hu: float
    vessels: list
    periportal_cuff: bool = False

    @property
    def half_side_mm(self) -> float:
        return self.canvas_px * self.spacing_mm / 2.0


def _draw_scene(rng: np.random.Generator, patient: _Patient, model: _LesionModel | None,
                diameter_mm: float) -> _Scene:
    """Canvas size, liver surface and vessels around a lesion (or a healthy ROI)."""
    spacing = patient.spacing_mm
    if model is None:
        reach_mm, asymmetry_mm, keep_out_mm = diameter_mm / 2.0, 0.0, 0.0
        lesion_centre = np.zeros(3)
    else:
        shape = model.shape
        reach_mm, keep_out_mm = model.extent_mm, shape.max_radius_mm
        # A lobulated outline can move the mask's box centre off the ellipsoid centre.
        asymmetry_mm = shape.max_radius_mm - float(shape.semi_axes_mm.max())
        lesion_centre = np.array([0.0, 0.0, -shape.slice_offset_mm])
    # The context crop is 3·D wide (spec §3 step 8); 10% spare for the measured
    # diameter exceeding the drawn one, and never less than the lesion's reach.
    half_side_mm = max(1.5 * 1.1 * diameter_mm + asymmetry_mm, reach_mm + 1.0) + 3.0 * spacing
    canvas_px = 2 * int(math.ceil(half_side_mm / spacing))
    half_side_mm = canvas_px * spacing / 2.0
    # Lesions sit deep or near the capsule (Frid-Adar §2.1): distance to the
    # liver surface [E]. The surface undulates by a few mm; beyond it lie a
    # fat layer and then soft tissue (abdominal wall, neighbouring organs) [E].
    edge_distance = reach_mm + 2.0 + rng.exponential(60.0)
    edge_angle = rng.uniform(0.0, 2 * math.pi)
    liver_radius = edge_distance + rng.uniform(60.0, 180.0)
    surface_waves = [(rng.uniform(0.5, 2.5), liver_radius / rng.uniform(15.0, 40.0),
                      rng.uniform(0.0, 2 * math.pi)) for _ in range(2)]
    scene = _Scene(
        canvas_px=canvas_px, spacing_mm=spacing, edge_distance_mm=float(edge_distance),
        edge_angle=float(edge_angle), liver_radius_mm=float(liver_radius),
        surface_waves=surface_waves, fat_thickness_mm=float(rng.uniform(4.0, 25.0)),
        wall_hu=float(rng.uniform(35.0, 60.0)),
        vessels=_draw_vessels(rng, patient, half_side_mm, keep_out_mm, lesion_centre))
    if model is None:
        # Spec §2 healthy: 0–3 vessels 2–12 mm wide within the ROI, a
        # periportal hypodense cuff with p = 0.5 [21].
        scene.periportal_cuff = bool(rng.random() < 0.5)
        n_roi_vessels = max(int(rng.integers(0, 4)), 1 if scene.periportal_cuff else 0)
        for i in range(n_roi_vessels):
            xy = rng.uniform(-0.4, 0.4, size=2) * diameter_mm
            vessel = _draw_vessel(rng, patient, (xy[0], xy[1]), rng.uniform(1.0, 6.0))
            if scene.periportal_cuff and i == 0:
                vessel.kind = "portal"
                vessel.value_hu = patient.portal_vein_hu * rng.uniform(0.95, 1.02)
                vessel.cuff_mm = rng.uniform(1.5, 3.0)
                vessel.cuff_hu = patient.liver_hu - rng.uniform(25.0, 50.0)
            scene.vessels.append(vessel)
    return scene


def _background(scene: _Scene, patient: _Patient, rng: np.random.Generator,
                n_fine: int, fine_mm: float) -> np.ndarray:
    """Liver parenchyma, fat and wall on the fine grid (z-independent), float32 HU."""
    canvas_px, spacing = scene.canvas_px, scene.spacing_mm
    # Textures vary over ≥ 2 mm, so they are drawn on the pixel grid and
    # interpolated; likewise the signed distance to the liver surface, which
    # is smooth: only the soft step is taken per fine cell.
    liver_texture = _gaussian_field(rng, (canvas_px, canvas_px), spacing,
                                    patient.texture_correlation_mm)
    fat_texture = _gaussian_field(rng, (canvas_px, canvas_px), spacing, 2.0)
    wall_texture = _gaussian_field(rng, (canvas_px, canvas_px), spacing, 4.0)
    pixel_coords = (np.arange(canvas_px) - (canvas_px - 1) / 2.0) * spacing
    x, y = np.meshgrid(pixel_coords, pixel_coords)
    edge_centre = (scene.edge_distance_mm - scene.liver_radius_mm) * np.array(
        [math.cos(scene.edge_angle), math.sin(scene.edge_angle)])
    angle = np.arctan2(y - edge_centre[1], x - edge_centre[0]) - scene.edge_angle
    # Waves are zero at angle 0, so the nearest surface point stays put.
    surface = scene.liver_radius_mm + sum(amp * (np.cos(freq * angle + phase) - math.cos(phase))
                                          for amp, freq, phase in scene.surface_waves)
    outside = (np.hypot(x - edge_centre[0], y - edge_centre[1]) - surface).astype(np.float32)
    upsample = dict(dsize=(n_fine, n_fine), interpolation=cv2.INTER_LINEAR)
    outside = cv2.resize(outside, **upsample)     # mm beyond the liver surface
    liver = patient.liver_hu + patient.texture_sd_hu * cv2.resize(liver_texture, **upsample)
    fat = patient.fat_hu + 6.0 * cv2.resize(fat_texture, **upsample)
    wall = scene.wall_hu + 6.0 * cv2.resize(wall_texture, **upsample)
    inside_liver = np.clip(0.5 - outside / fine_mm, 0.0, 1.0)
    in_wall = np.clip(0.5 + (outside - scene.fat_thickness_mm) / fine_mm, 0.0, 1.0)
    background = fat + in_wall * (wall - fat)
    return (background + inside_liver * (liver - background)).astype(np.float32)


def _render(scene: _Scene, model: _LesionModel | None, patient: _Patient,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Image a scene through the chain of spec §3 steps 1–6.

    Returns:
        (image, alpha): float32 (canvas_px, canvas_px) in integer HU, and the
        lesion's slab-averaged share of each pixel before the PSF (None when
        there is no lesion), from which the mask is taken.
    """
    canvas_px, factor = scene.canvas_px, OVERSAMPLING
    fine_mm = scene.spacing_mm / factor
    n_fine = canvas_px * factor
    coords = (np.arange(n_fine) - (n_fine - 1) / 2.0) * fine_mm
    offsets = _slab_offsets(patient.slice_thickness_mm)
    background = _background(scene, patient, rng, n_fine, fine_mm)

    if model is not None:
        reach = int(math.ceil(model.extent_mm / fine_mm))
        lesion_window = (slice(n_fine // 2 - reach, n_fine // 2 + reach),) * 2
        local = coords[lesion_window[0]].astype(np.float32)
        lx, ly = np.meshgrid(local, local)
        base_texture = _gaussian_field(rng, lx.shape, fine_mm, model.base_texture_correlation_mm)
        layer_texture = _gaussian_field(rng, lx.shape, fine_mm, 2.5)
        alpha_sum = np.zeros(lx.shape, np.float32)
    footprints = [f for f in (_vessel_footprint(v, coords, offsets, fine_mm)
                              for v in scene.vessels) if f is not None]
    # Step 2: partial volume, the mean over sub-slices of the slab.
    image_sum = np.zeros((n_fine, n_fine), np.float32)
    for z in offsets:
        image = background.copy()
        for footprint in footprints:
            vessel, window = footprint.vessel, footprint.window
            if vessel.cuff_mm > 0:
                weight = _vessel_weights(footprint, float(z), vessel.cuff_mm, coords, fine_mm)
                image[window] += weight * (vessel.cuff_hu - image[window])
            weight = _vessel_weights(footprint, float(z), 0.0, coords, fine_mm)
            image[window] += weight * (vessel.value_hu - image[window])
        if model is not None:
            geo = model.shape.local(lx, ly, float(z))
            value, alpha, halo = model.evaluate(geo, base_texture, layer_texture, fine_mm, local)
            region = image[lesion_window]
            if halo is not None:
                region += halo * (model.halo_hu - region)
            region += alpha * (value - region)
            alpha_sum += alpha
        image_sum += image
    image = image_sum / np.float32(len(offsets))
    # Step 3: Gaussian PSF [26].
    sigma_fine = patient.scanner.psf_fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0))) / fine_mm
    image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma_fine, borderType=cv2.BORDER_REFLECT)
    # Step 4: block average onto the pixel grid (the reconstruction cell's
    # aperture), which also keeps sampled edges free of aliasing.
    image = image.reshape(canvas_px, factor, canvas_px, factor).mean(axis=(1, 3))
    # Steps 5–6: correlated noise, scanner HU offset, integer HU.
    scanner = patient.scanner
    image = image + correlated_noise(rng, image.shape, scene.spacing_mm, scanner.nps_peak_per_mm,
                                     scanner.nps_width_per_mm, patient.noise_sd_hu)
    image = np.rint(image + scanner.hu_offset).astype(np.float32)
    alpha_px = None
    if model is not None:
        alpha_full = np.zeros((n_fine, n_fine), np.float32)
        alpha_full[lesion_window] = alpha_sum / len(offsets)
        alpha_px = alpha_full.reshape(canvas_px, factor, canvas_px, factor).mean(axis=(1, 3))
    return image, alpha_px


def _make_lesion(lesion_id: str, patient: _Patient, class_name: str, label: int,
                 knobs: _Difficulty, size_pool: dict[str, int], rng: np.random.Generator,
                 source: str) -> Lesion:
    """Draw, image and crop one lesion (or healthy ROI) of ``patient``."""
    spacing = patient.spacing_mm
    # -- draw the lesion (spec §2, §5)
    model = None
    if class_name in LESION_CLASSES:
        target = _draw_diameter(rng, class_name)
        shape, shape_kind = _draw_shape(rng, class_name, target, patient)
        if class_name == "cyst":
            model = _draw_cyst(rng, patient, shape)
        elif class_name == "hemangioma":
            model = _draw_hemangioma(rng, patient, shape, knobs, target)
        else:
            model = _draw_metastasis(rng, patient, shape, knobs, target)
    else:
        # Healthy ROIs take their size from the pooled lesion sizes (spec §3 step 8).
        names = [name for name in LESION_CLASSES if size_pool.get(name, 0) > 0]
        weights = np.array([size_pool[name] for name in names], float)
        pooled_class = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        target = _draw_diameter(rng, pooled_class)
    roi_margin = rng.uniform(*ROI_MARGIN_RANGE)
    scene = _draw_scene(rng, patient, model, target)
    image, alpha = _render(scene, model, patient, rng)

    # -- mask, diameter and crops (spec §3 step 8)
    canvas_px = scene.canvas_px
    if alpha is not None:
        mask_canvas = alpha >= 0.5
        rows, cols = np.nonzero(mask_canvas)
        box = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
        diameter_px = mask_diameter(mask_canvas)
    else:
        mask_canvas = None
        diameter_px = target / spacing
        side = max(2, int(round(diameter_px)))
        box = centered_box((canvas_px / 2.0, canvas_px / 2.0), (side, side))
    roi_box, context_box = roi_and_context_boxes(box, diameter_px, roi_margin, CONTEXT_MARGIN)
    # ROI centre jitter up to min(4 px, 0.1·D) (spec §3 step 8, Frid-Adar §3.1).
    jitter = min(4.0, 0.1 * diameter_px)
    shift_r, shift_c = (int(round(v)) for v in rng.uniform(-jitter, jitter, size=2))
    c0r, c0c, c1r, c1c = context_box
    if c0r < 0 or c0c < 0 or c1r > canvas_px or c1c > canvas_px:
        raise RuntimeError(f"{lesion_id}: context box {context_box} leaves the canvas "
                           f"({canvas_px} px); the canvas margin is too small")
    context = image[c0r:c1r, c0c:c1c].copy()
    roi_box = (roi_box[0] + shift_r - c0r, roi_box[1] + shift_c - c0c,
               roi_box[2] + shift_r - c0r, roi_box[3] + shift_c - c0c)
    roi = context[roi_box[0]:roi_box[2], roi_box[1]:roi_box[3]].copy()
    if mask_canvas is not None:
        mask = mask_canvas[c0r:c1r, c0c:c1c].copy()
        lesion_box = (box[0] - c0r, box[1] - c0c, box[2] - c0r, box[3] - c0c)
    else:
        mask, lesion_box = None, roi_box

    # -- provenance: everything true about this lesion, JSON-able
    attributes = patient.attributes()
    attributes.update(
        lesion_class=class_name,
        roi_margin=round(float(roi_margin), 4),
        diameter_target_mm=round(float(target), 3),
        liver_edge_distance_mm=round(scene.edge_distance_mm, 2),
        n_vessels=len(scene.vessels),
    )
    if model is not None:
        attributes.update(model.attributes)
        attributes.update(
            subtype=model.subtype, shape=shape_kind,
            edge_width_mm=round(float(model.edge_width_mm), 3),
            slice_offset_mm=round(model.shape.slice_offset_mm, 3),
            semi_axes_mm=[round(float(v), 3) for v in model.shape.semi_axes_mm],
        )
    else:
        attributes.update(subtype="parenchyma", lesion_hu=None, size_drawn_as=pooled_class,
                          periportal_cuff=scene.periportal_cuff,
                          features=["periportal-cuff"] if scene.periportal_cuff else [])
    return Lesion(
        lesion_id=lesion_id,
        patient_id=patient.patient_id,
        label=label,
        roi=roi,
        context=context,
        roi_box=roi_box,
        lesion_box=lesion_box,
        mask=mask,
        spacing_mm=(spacing, spacing),
        diameter_px=float(diameter_px),
        diameter_mm=float(diameter_px * spacing),
        diameter_source="phantom",
        source=source,
        has_context=True,
        slice_index=-1,
        attributes=attributes,
    )
