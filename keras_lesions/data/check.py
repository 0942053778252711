"""Summaries and sanity checks of a lesion dataset (``kl data check``)."""
from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from keras_lesions.data.dataset import LesionDataset
from keras_lesions.data.folds import fold_table


@dataclass
class Finding:
    """One problem found in a dataset.

    Attributes:
        level: "error" (the dataset should not be used as it is) or "warning"
            (usable, but results may mislead).
        message: one line saying what and where.
    """

    level: str
    message: str


@dataclass
class CheckReport:
    """What ``check_dataset`` found; ``format()`` renders it for people."""

    n_lesions: int
    n_patients: int
    class_counts: dict[str, int]
    patients_per_class: dict[str, int]
    lesions_per_patient: dict[int, int]
    roi_side_px: dict[str, tuple[int, int, int]]
    diameter_mm: dict[str, tuple[float, float, float]]
    spacing_mm: tuple[float, float]
    intensity_unit: str
    intensity_range: tuple[float, float]
    folds: np.ndarray | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    def format(self, class_names: list[str]) -> str:
        lines = [
            f"lesions: {self.n_lesions}   patients: {self.n_patients}   "
            f"intensity: {self.intensity_unit} "
            f"[{self.intensity_range[0]:.0f}, {self.intensity_range[1]:.0f}]",
            f"pixel spacing (mm): {_fmt_range(self.spacing_mm)}",
            "",
            f"{'class':<12} {'lesions':>7} {'patients':>8}   {'ROI side px (min/median/max)':<30} "
            f"diameter mm (min/median/max)",
        ]
        for name in class_names:
            lines.append(
                f"{name:<12} {self.class_counts[name]:>7} {self.patients_per_class[name]:>8}   "
                f"{'/'.join(str(v) for v in self.roi_side_px[name]):<30} "
                f"{'/'.join(_fmt(v) for v in self.diameter_mm[name])}")
        per_patient = ", ".join(f"{n} lesion{'s' * (n > 1)}: {c}"
                                for n, c in sorted(self.lesions_per_patient.items()))
        lines += ["", f"patients by lesion count: {per_patient}"]
        if self.folds is not None:
            lines += ["", "folds (lesions per class):"]
            for i, row in enumerate(self.folds):
                cells = "  ".join(f"{name} {n}" for name, n in zip(class_names, row))
                lines.append(f"  fold {i}: {int(row.sum()):>4}   {cells}")
        else:
            lines += ["", "folds: none yet (run `kl data folds`)"]
        lines.append("")
        if self.findings:
            lines.append(f"problems found: {len(self.findings)}")
            lines += [f"  {f.level}: {f.message}" for f in self.findings]
        else:
            lines.append("problems found: none")
        return "\n".join(lines)


def _fmt(value: float) -> str:
    return "nan" if not np.isfinite(value) else f"{value:.1f}"


def _fmt_range(pair: tuple[float, float]) -> str:
    return "unknown" if not np.isfinite(pair[0]) else f"{pair[0]:.3f} to {pair[1]:.3f}"


def check_dataset(dataset: LesionDataset, k_expected: int = 3) -> CheckReport:
    """Count, measure and look for problems that would bias an experiment.

    Looks for: identical images stored under two lesion ids (a leak waiting to
    happen across folds), classes with too few patients for k-fold patient
    splits, unknown pixel spacing, diameters that were only estimated, and
    context crops padded beyond the scan.

    Args:
        dataset: a dataset read with images.
        k_expected: folds the experiments will use, for the patient-count check.
    """
    names = dataset.class_names
    labels = dataset.labels
    pids = dataset.patient_ids
    findings: list[Finding] = []

    patients_per_class = {n: len(set(pids[labels == c].tolist())) for c, n in enumerate(names)}
    lesions_per_patient = Counter(Counter(pids.tolist()).values())

    roi_side, diameters = {}, {}
    for c, name in enumerate(names):
        members = [l for l in dataset.lesions if l.label == c]
        sides = [max(l.roi.shape) for l in members] or [0]
        roi_side[name] = (int(min(sides)), int(np.median(sides)), int(max(sides)))
        dmm = np.array([l.diameter_mm for l in members], dtype=float)
        dmm = dmm[np.isfinite(dmm)]
        diameters[name] = ((float(dmm.min()), float(np.median(dmm)), float(dmm.max()))
                           if dmm.size else (np.nan, np.nan, np.nan))
        if 0 < patients_per_class[name] < k_expected:
            findings.append(Finding("warning", (
                f"class {name!r} has only {patients_per_class[name]} patients: fewer than "
                f"{k_expected} folds, so some test folds will lack it")))
        if not members:
            findings.append(Finding("warning", f"class {name!r} has no lesions"))

    spacing = np.array([l.spacing_mm for l in dataset.lesions], dtype=float)
    known = np.isfinite(spacing).all(1)
    spacing_range = ((float(spacing[known].min()), float(spacing[known].max()))
                     if known.any() else (np.nan, np.nan))
    if not known.all():
        findings.append(Finding("warning", (
            f"{int((~known).sum())} lesions have unknown pixel spacing: sizes in mm and "
            "diameter-based augmentation use estimates")))
    estimated = [l.lesion_id for l in dataset.lesions if l.diameter_source in ("roi-estimate", "unknown")]
    if estimated:
        findings.append(Finding("warning", (
            f"{len(estimated)} lesions have a diameter estimated from the ROI size, not "
            f"measured (e.g. {estimated[0]!r})")))
    padded = [l.lesion_id for l in dataset.lesions if l.attributes.get("padded_with_air")]
    if padded:
        findings.append(Finding("warning", (
            f"{len(padded)} context crops run past the scan and were padded with air "
            f"(e.g. {padded[0]!r})")))

    by_digest: dict[str, list[str]] = defaultdict(list)
    for lesion in dataset.lesions:
        digest = hashlib.sha1(np.ascontiguousarray(lesion.roi, np.float32).tobytes()).hexdigest()
        by_digest[digest].append(lesion.lesion_id)
    for ids in by_digest.values():
        if len(ids) > 1:
            findings.append(Finding("error", (
                f"lesions {', '.join(repr(i) for i in ids)} have identical pixels: a duplicate "
                "would leak between folds")))

    low = min(float(l.roi.min()) for l in dataset.lesions)
    high = max(float(l.roi.max()) for l in dataset.lesions)
    folds = None
    if dataset.folds is not None:
        folds = fold_table(labels, dataset.folds, dataset.fold_k, len(names))
        empty = [(i, names[c]) for i in range(folds.shape[0]) for c in range(len(names))
                 if folds[i, c] == 0 and dataset.class_counts()[names[c]] > 0]
        for i, name in empty:
            findings.append(Finding("warning", f"fold {i} holds no {name!r} lesion"))

    return CheckReport(
        n_lesions=len(dataset),
        n_patients=len(set(pids.tolist())),
        class_counts=dataset.class_counts(),
        patients_per_class=patients_per_class,
        lesions_per_patient=dict(lesions_per_patient),
        roi_side_px=roi_side,
        diameter_mm=diameters,
        spacing_mm=spacing_range,
        intensity_unit=dataset.intensity_unit,
        intensity_range=(low, high),
        folds=folds,
        findings=findings,
    )
