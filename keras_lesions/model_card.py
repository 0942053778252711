"""Model cards: what a trained classifier is, for the people who would use it.

After Mitchell et al. 2019, "Model cards for model reporting" (FAT*): the
data it learned from, how it was trained, how well it did with intervals,
what it is for and what it must not be used for. Written as Markdown for
people and JSON for programs, beside every export (``assets.extra/``) and
every final model. Everything is read from the run's own records
(run.json, done.json, its predictions) and its dataset's header; nothing is
re-estimated here.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from keras_lesions.config import DEFAULT_PRECISION
from keras_lesions.io import write_json, write_text

CARD_MARKDOWN = "MODEL_CARD.md"
CARD_JSON = "model_card.json"

NOT_CLINICAL = ("NOT FOR CLINICAL USE. This model was trained on synthetic CT phantoms "
                "(keras-lesions' built-in generator), not on patients: its figures say how "
                "the method behaves, never how it would do on real scans.")
RESEARCH_ONLY = ("For research use only: not a medical device, not cleared or approved for "
                 "diagnosis. A radiologist's reading is the reference; this model's output is "
                 "at most a second opinion to be studied.")


def dataset_summary(dataset_path: str | os.PathLike | None) -> dict:
    """Counts per class and patient, spacing, source and identity of a dataset
    file (its header only); {"available": False} when it cannot be read."""
    from keras_lesions.data import read_dataset
    from keras_lesions.errors import KerasLesionsError

    if not dataset_path or not Path(dataset_path).is_file():
        return {"available": False, "path": str(dataset_path) if dataset_path else None}
    try:
        dataset = read_dataset(dataset_path, images=False)
    except KerasLesionsError:
        return {"available": False, "path": str(dataset_path)}
    spacing = np.array([l.spacing_mm for l in dataset.lesions], np.float64).reshape(-1, 2)
    known = np.isfinite(spacing).all(1)
    extra = dataset.extra or {}
    patients_by_class = {name: len({l.patient_id for l in dataset.lesions if l.label == i})
                         for i, name in enumerate(dataset.class_names)}
    return {
        "available": True, "path": str(dataset_path),
        "lesions": len(dataset), "patients": len(set(dataset.patient_ids.tolist())),
        "lesions_per_class": dataset.class_counts(), "patients_per_class": patients_by_class,
        "intensity_unit": dataset.intensity_unit,
        "spacing_mm": ({"median": float(np.median(spacing[known].mean(1))),
                        "min": float(spacing[known].min()), "max": float(spacing[known].max()),
                        "known_for": int(known.sum())} if known.any() else None),
        "source": extra.get("importer") or extra.get("generator") or "unknown",
        "phantom": extra.get("generator") == "phantoms",
        "description": dataset.description, "created_at": dataset.created_at,
        "created_by": dataset.created_by,
    }


def classifier_card(run_dir: str | os.PathLike, *, performance: dict | None = None,
                    provenance: dict | None = None) -> dict:
    """The card of a finished classifier run.

    Args:
        run_dir: the run folder.
        performance: figures to report instead of the run's own test fold
            (a final model's cross-validated and external figures).
        provenance: facts to add (the experiment a final model came from).
    """
    from keras_lesions.errors import KerasLesionsError
    from keras_lesions.runs.folder import is_done, read_done, read_run_info

    run_dir = Path(run_dir)
    info = read_run_info(run_dir, kind="lesion_classifier")
    done = read_done(run_dir) if is_done(run_dir) else None
    if performance is None:
        if done is None:
            performance = _performance_unknown("the run has not finished (no done.json)")
        elif info.get("final"):
            performance = _performance_unknown(
                "a final model has no held-out patients, and its card with the experiment's "
                "figures is missing (run `kl train-final` again to write it)")
        else:
            try:
                performance = _own_test_fold(run_dir, done)
            except KerasLesionsError:
                performance = _performance_unknown("the run holds no test predictions")
    data = dataset_summary(info.get("dataset"))
    settings = info.get("settings", {})
    card = {
        "model": {"kind": "lesion_classifier", "classes": info.get("class_names"),
                  "run": str(run_dir), "input": info.get("preprocessing"),
                  "architecture": settings.get("classifier"),
                  "final_model": bool(info.get("final"))},
        "data": data,
        "training": {"train": settings.get("train"), "n_train": info.get("n_train"),
                     "sgd_steps": info.get("sgd_steps"), "seed": info.get("seed"),
                     "augmentation": {"group": info.get("group"),
                                      "added_samples": info.get("added_samples"),
                                      "additions": info.get("additions", [])},
                     # compute_settings records only what differs from the defaults
                     "precision": settings.get("precision", DEFAULT_PRECISION),
                     "xla": bool(settings.get("xla", False)),
                     "class_balance": info.get("class_balance", "none"),
                     "train_class_counts": info.get("train_class_counts"),
                     "train_data_fingerprint": settings.get("train_data")},
        "performance": performance,
        "provenance": {"fold": info.get("fold"), "repeat": info.get("repeat"),
                       **(provenance or {})},
        "intended_use": ("Classifying liver-lesion ROIs of the classes above, cropped and "
                         "windowed as the input section says, in research on augmentation "
                         "and lesion classification."),
        "limits": _limits(data, info),
    }
    return card


def card_of_run(run_dir: str | os.PathLike) -> dict:
    """The card written beside a run (a final model's, which carries the
    experiment's figures), else one made from the run's own test fold."""
    import json

    written = Path(run_dir) / CARD_JSON
    if written.is_file():
        try:
            card = json.loads(written.read_text(encoding="utf-8"))
            if isinstance(card, dict) and "performance" in card:
                return card
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            pass  # remade below from the run's records
    return classifier_card(run_dir)


def _performance_unknown(why: str) -> dict:
    return {"what": f"nothing: {why}"}


def _own_test_fold(run_dir: Path, done: dict) -> dict:
    """The run's test fold figures: accuracy with a Wilson interval, AUC and
    calibration (lesions, not patients, resampled: one fold's patients)."""
    from keras_lesions.evaluate.crossval import run_record
    from keras_lesions.evaluate.report import summarize_predictions
    from keras_lesions.evaluate.stats import wilson_interval

    record = run_record(run_dir)
    names = record["class_names"]
    summary = summarize_predictions([record], names)
    n = summary["pooled"]["n"]
    accuracy = summary["pooled"]["accuracy"]
    low, high = wilson_interval(round(accuracy * n), n) if n else (math.nan, math.nan)
    return {"what": f"its own test fold (fold {done.get('fold')}, {n} lesions, patients never "
                    "seen in training)",
            "accuracy": accuracy, "accuracy_ci95": [low, high],
            **balance_performance(summary),
            "per_class": summary["pooled"]["per_class"],
            "discrimination": summary.get("discrimination")}


def balance_performance(summary: dict) -> dict:
    """A summary's balanced accuracy (with its interval) and majority-class
    baseline, as a card's performance section holds them."""
    pooled = summary["pooled"]
    return {"balanced_accuracy": summary["intervals"]["balanced_accuracy"],
            "majority": {"class": pooled["majority_class"],
                         "accuracy": pooled["majority_accuracy"]}}


def _limits(data: dict, info: dict) -> list[str]:
    limits = []
    if data.get("phantom"):
        limits.append(NOT_CLINICAL)
    limits.append(RESEARCH_ONLY)
    if data.get("available"):
        limits.append(f"Learned from {data['lesions']} lesions of {data['patients']} patients "
                      f"({data['source']}); how it does on other scanners, protocols or "
                      "populations is unknown until tested on them (an external test set).")
    limits.append("Classes outside those listed are never predicted: every input is forced "
                  "into one of them.")
    if info.get("additions"):
        limits.append("Trained with extra (e.g. synthetic) lesions; see the augmentation "
                      "section.")
    return limits


def card_markdown(card: dict) -> str:
    """The card for people."""
    model, data, training, perf = card["model"], card["data"], card["training"], card["performance"]
    lines = ["# Model card: lesion classifier", ""]
    for limit in card["limits"][:1]:
        lines += [f"**{limit}**", ""]
    lines += ["## Model", "",
              f"- Classes: {', '.join(model['classes'] or [])}",
              f"- Trained run: `{model['run']}`" + (" (final model: all patients)"
                                                     if model["final_model"] else "")]
    if model.get("input"):
        pre = model["input"]
        window = (f"HU windowed W{pre['window_width']:g}/L{pre['window_level']:g}"
                  if pre["intensity_unit"] == "HU" else "normalized [0, 1] values, not windowed")
        lines.append(f"- Input: {pre['input_size']}×{pre['input_size']} ROIs, {window}, "
                     f"resized {pre['resampling']}")
    if model.get("architecture"):
        arch = model["architecture"]
        lines.append(f"- Network: filters {arch.get('filters')}, dense {arch.get('dense_units')}, "
                     f"dropout {arch.get('dropout')}")
    lines += ["", "## Data", ""]
    if data.get("available"):
        per_class = ", ".join(f"{name} {n} ({data['patients_per_class'][name]} patients)"
                              for name, n in data["lesions_per_class"].items())
        lines += [f"- {data['lesions']} lesions of {data['patients']} patients: {per_class}",
                  f"- Source: {data['source']}; units {data['intensity_unit']}; created "
                  f"{data['created_at']} by `{data['created_by']}`"]
        if data.get("spacing_mm"):
            s = data["spacing_mm"]
            lines.append(f"- Pixel spacing: median {s['median']:.2f} mm "
                         f"({s['min']:.2f}–{s['max']:.2f}; known for {s['known_for']} lesions)")
        else:
            lines.append("- Pixel spacing: unknown")
    else:
        lines.append(f"- The dataset file ({data.get('path')}) could not be read.")
    train = training.get("train") or {}
    lines += ["", "## Training", "",
              f"- {training.get('n_train')} training images, {training.get('sgd_steps')} SGD "
              f"steps, seed {training.get('seed')}; SGD lr {train.get('learning_rate')}, "
              f"momentum {train.get('momentum')}, batch {train.get('batch_size')}",
              f"- Augmentation: group {training['augmentation']['group']} "
              f"(+{training['augmentation']['added_samples']} classic augmentations)"
              + (f", extra data {training['augmentation']['additions']}"
                 if training["augmentation"]["additions"] else "")]
    if training.get("train_class_counts"):
        counts = ", ".join(f"{name} {count:g}"
                           for name, count in training["train_class_counts"].items())
        lines.append(f"- Training images per class: {counts}; class balance: "
                     f"{training.get('class_balance', 'none')}")
    lines += ["", "## Performance", "", f"Measured on {perf.get('what', 'held-out lesions')}:", ""]
    if perf.get("accuracy") is not None:
        low, high = perf.get("accuracy_ci95", [math.nan, math.nan])
        lines.append(f"- Accuracy {_pct(perf['accuracy'])} (95% CI {_pct(low)}–{_pct(high)})")
    if perf.get("balanced_accuracy") is not None:
        low, high = perf["balanced_accuracy"]["ci95"]
        lines.append(f"- Balanced accuracy (mean of the classes' sensitivities) "
                     f"{_pct(perf['balanced_accuracy']['value'])} (95% CI {_pct(low)}–"
                     f"{_pct(high)}); majority-class baseline {_pct(perf['majority']['accuracy'])} "
                     f"(every lesion called {perf['majority']['class']})")
    for name, c in (perf.get("per_class") or {}).items():
        lines.append(f"- {name}: sensitivity {_pct(c['sensitivity'])}, specificity "
                     f"{_pct(c['specificity'])} ({c['support']} lesions)")
    if perf.get("discrimination"):
        from keras_lesions.evaluate.report import discrimination_lines

        lines += [""] + discrimination_lines(perf["discrimination"])
    for extra in perf.get("sections", []):
        lines += ["", f"### {extra['title']}", "", *extra["lines"]]
    lines += ["", "## Intended use", "", card["intended_use"], "", "## Limits", ""]
    lines += [f"- {limit}" for limit in card["limits"]]
    provenance = {k: v for k, v in card["provenance"].items() if v is not None}
    if provenance:
        lines += ["", "## Provenance", ""] + [f"- {k}: {v}" for k, v in provenance.items()]
    return "\n".join(lines) + "\n"


def _pct(value) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}%"


def write_card(card: dict, folder: str | os.PathLike) -> list[Path]:
    """Write MODEL_CARD.md and model_card.json into ``folder`` (atomically)."""
    folder = Path(folder)
    return [write_text(folder / CARD_MARKDOWN, card_markdown(card)),
            write_json(folder / CARD_JSON, card)]
