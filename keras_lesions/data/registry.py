"""One registry of dataset facts, checked where datasets are made or loaded.

The numbers come from the two papers in ``shared/papers``:
Frid-Adar et al. 2018 §2.1 (182 lesions: 53 cysts, 64 metastases,
65 hemangiomas; 64×64 ROIs; 3 folds of 63, 63, 62) and Ben-Cohen et al. 2019
§3.1 (239 ROIs: 66 cysts, 81 metastases, 65 hemangiomas, 27 healthy; 128×128).
One preset is not a paper's dataset: "frid-adar-2018-imbalanced" keeps
Frid-Adar's classes, size and folds but imbalances the counts, as real cohorts
are, so that class balancing can be shown without real data.
"""
from __future__ import annotations

from dataclasses import dataclass

# Canonical spelling and order of the classes this project knows. A dataset
# stores its own ordered subset; label i means dataset.class_names[i].
CLASS_NAMES: tuple[str, ...] = ("cyst", "metastasis", "hemangioma", "healthy")

# The largest image side the project reads or writes, in pixels: an ROI, a
# context crop or a whole CT slice (512 to 1024; 16384 leaves room for micro-CT
# and scanned films), checked before anything is decoded.
MAX_IMAGE_SIDE = 16384

# Display window for portal-venous liver CT: W400/L50, i.e. [-150, 250] HU
# (PHANTOMS.md §3 step 7, Radiopaedia "Windowing"). A liver window W150/L30
# would saturate enhanced parenchyma near 110 HU.
DEFAULT_WINDOW_LEVEL: float = 50.0
DEFAULT_WINDOW_WIDTH: float = 400.0


@dataclass(frozen=True)
class DatasetPreset:
    """Facts of one paper's dataset, mirrored by the phantom generator.

    Attributes:
        name: preset name used on the command line.
        class_counts: lesions per class, in ``CLASS_NAMES`` order of the subset.
        input_size: side in pixels the paper's networks take.
        k_folds: cross-validation folds of the paper.
        paper: where the numbers come from.
        based_on: another preset whose phantom generation settings (its
            scanner vendors) this one reuses, for a variant that changes only
            the counts; None for a preset with settings of its own.
    """

    name: str
    class_counts: dict[str, int]
    input_size: int
    k_folds: int
    paper: str
    based_on: str | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.class_counts)

    @property
    def n_lesions(self) -> int:
        return sum(self.class_counts.values())


PRESETS: dict[str, DatasetPreset] = {
    "frid-adar-2018": DatasetPreset(
        name="frid-adar-2018",
        class_counts={"cyst": 53, "metastasis": 64, "hemangioma": 65},
        input_size=64,
        k_folds=3,
        paper="Frid-Adar et al. 2018, Neurocomputing 321:321-331, §2.1 and §4.1",
    ),
    # Real lesion cohorts are imbalanced (Ben-Cohen 2019 §3.1: 27 healthy of
    # 239 ROIs, 11%); the paper sets are nearly balanced, so balancing would
    # show no effect on them. Minority class: 20 of 140 lesions, 14%.
    "frid-adar-2018-imbalanced": DatasetPreset(
        name="frid-adar-2018-imbalanced",
        class_counts={"cyst": 20, "metastasis": 80, "hemangioma": 40},
        input_size=64,
        k_folds=3,
        paper="our imbalanced variant of the classes of Frid-Adar et al. 2018 §2.1 (not a "
              "paper's dataset), motivated by Ben-Cohen et al. 2019 §3.1's healthy class, "
              "27 of 239 ROIs",
        based_on="frid-adar-2018",
    ),
    "ben-cohen-2019": DatasetPreset(
        name="ben-cohen-2019",
        class_counts={"cyst": 66, "metastasis": 81, "hemangioma": 65, "healthy": 27},
        input_size=128,
        k_folds=3,
        paper="Ben-Cohen et al. 2019, ISBI, §3.1",
    ),
}


def canonical_class_name(name: str) -> str | None:
    """Map a user's spelling of a class to the canonical name, or None.

    Accepts case differences, plurals and the common synonyms found in folder
    names ("cysts", "mets", "haemangioma", "normal"). Unknown names return None;
    importers accept any other class name as given, so a user's own classes work.
    """
    key = name.strip().lower().replace("_", " ").replace("-", " ")
    synonyms = {
        "cyst": "cyst", "cysts": "cyst", "simple cyst": "cyst",
        "metastasis": "metastasis", "metastases": "metastasis", "met": "metastasis",
        "mets": "metastasis",
        "hemangioma": "hemangioma", "hemangiomas": "hemangioma",
        "haemangioma": "hemangioma", "haemangiomas": "hemangioma",
        "healthy": "healthy", "normal": "healthy", "parenchyma": "healthy",
        "healthy parenchyma": "healthy",
    }
    return synonyms.get(key)
