"""Table 4 of Frid-Adar et al. 2018 from a reader-study database.

Per reader, over the images they answered both questions of: the class
accuracy on the real ROIs, on the synthetic ones and in total, and the
accuracy of "is the ROI real?". Each with its count (the paper's
"235\\302 = 77.8") and a 95% Wilson interval over the images (the images
are the unit here; several lesions of one patient are not independent,
so the interval is if anything too narrow on real data). Between every pair
of readers, over the images both answered: how often they gave the same
class and the same real/synthetic answer (the paper: "agreed on the lesion
class on 222 out of 302 lesions") and Cohen's kappa, which discounts the
agreement two readers would reach by chance (scikit-learn's
``cohen_kappa_score``).
"""
from __future__ import annotations

import itertools
import os
import warnings
from pathlib import Path

import numpy as np

from keras_lesions.evaluate.stats import wilson_interval
from keras_lesions.io import write_json, write_text
from keras_lesions.reader_study.study import ORIGINS, Study


def rate(correct: int, n: int) -> dict:
    low, high = wilson_interval(correct, n)
    return {"correct": int(correct), "n": int(n),
            "rate": float(correct / n) if n else float("nan"), "ci95": [low, high]}


def reader_rows(responses: list[dict]) -> dict[str, dict]:
    """{reader: {real, synthetic, total, origin, synthetic_called_real}} rates."""
    rows = {}
    for reader in dict.fromkeys(r["reader"] for r in responses):
        mine = [r for r in responses if r["reader"] == reader]
        right = [r["said_class"] == r["truth_class"] for r in mine]
        real = [ok for ok, r in zip(right, mine) if r["is_real"]]
        synthetic = [ok for ok, r in zip(right, mine) if not r["is_real"]]
        origin = [r["said_real"] == r["is_real"] for r in mine]
        fooled = [r["said_real"] for r in mine if not r["is_real"]]
        rows[reader] = {"real": rate(sum(real), len(real)),
                        "synthetic": rate(sum(synthetic), len(synthetic)),
                        "total": rate(sum(right), len(right)),
                        "origin": rate(sum(origin), len(origin)),
                        "synthetic_called_real": rate(sum(fooled), len(fooled))}
    return rows


def kappa(a: list[str], b: list[str], labels) -> float:
    """Cohen's kappa; NaN where it is undefined (both readers always gave
    the same single answer: no chance agreement to discount)."""
    from sklearn.metrics import cohen_kappa_score

    if not a:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = cohen_kappa_score(a, b, labels=list(labels))
    return float(value) if np.isfinite(value) else float("nan")


def agreement(responses: list[dict], class_names) -> list[dict]:
    """Every pair of readers over the images both answered."""
    by_reader: dict[str, dict[int, dict]] = {}
    for r in responses:
        by_reader.setdefault(r["reader"], {})[r["item"]] = r
    pairs = []
    for first, second in itertools.combinations(by_reader, 2):
        shared = sorted(set(by_reader[first]) & set(by_reader[second]))
        a = [by_reader[first][i] for i in shared]
        b = [by_reader[second][i] for i in shared]
        same_class = [x["said_class"] == y["said_class"] for x, y in zip(a, b)]
        both_right = [x["said_class"] == y["said_class"] == x["truth_class"]
                      for x, y in zip(a, b)]
        origin_a = [ORIGINS[0] if x["said_real"] else ORIGINS[1] for x in a]
        origin_b = [ORIGINS[0] if y["said_real"] else ORIGINS[1] for y in b]
        pairs.append({
            "readers": [first, second], "n": len(shared),
            "class_agreement": rate(sum(same_class), len(shared)),
            "class_agreement_correct": int(sum(both_right)),
            "class_kappa": kappa([x["said_class"] for x in a], [y["said_class"] for y in b],
                                 class_names),
            "origin_agreement": rate(sum(p == q for p, q in zip(origin_a, origin_b)),
                                     len(shared)),
            "origin_kappa": kappa(origin_a, origin_b, ORIGINS)})
    return pairs


def table4(study: Study) -> dict:
    """Table 4 and the readers' agreement, as data."""
    responses = study.responses()
    truths = list(study.truths().values())
    classes = [t["truth_class"] for t in truths]
    majority = max(study.class_names, key=classes.count)
    # what answering without looking scores: "real" to every ROI, the
    # commonest class to every ROI (the paper's 182 of 302 are 60% real)
    chance = {"always_real": sum(t["is_real"] for t in truths) / len(truths),
              "majority_class": majority,
              "majority_share": classes.count(majority) / len(truths)}
    return {"study": str(study.path), "n_real": study.meta["n_real"], "chance": chance,
            "n_synthetic": study.meta["n_synthetic"], "class_names": study.class_names,
            "progress": study.progress(), "readers": reader_rows(responses),
            "agreement": agreement(responses, study.class_names)}


def _cell(r: dict, counts: bool = False) -> str:
    if not r["n"]:
        return "–"
    low, high = r["ci95"]
    head = f"{r['correct']}\\{r['n']} = " if counts else ""
    return f"{head}{100 * r['rate']:.1f} ({100 * low:.1f}–{100 * high:.1f})"


def _kappa(value: float) -> str:
    return "undefined" if not np.isfinite(value) else f"{value:.2f}"


def table4_lines(result: dict) -> list[str]:
    """Table 4 as Markdown lines (the paper's columns, then the agreement)."""
    lines = ["| reader | class accuracy, real (%) | class accuracy, synthetic (%) | "
             "class accuracy, total (%) | is the ROI real? total (%) | synthetic called "
             "real (%) |", "|---|---|---|---|---|---|"]
    for reader, row in result["readers"].items():
        lines.append(f"| {reader} | {_cell(row['real'])} | {_cell(row['synthetic'])} | "
                     f"{_cell(row['total'], True)} | {_cell(row['origin'], True)} | "
                     f"{_cell(row['synthetic_called_real'])} |")
    if not result["readers"]:
        lines.append("| (no reader has answered an image) | | | | | |")
    unfinished = [f"{name} ({p['done']} of {p['total']})"
                  for name, p in result["progress"].items() if not p["finished"]]
    chance = result["chance"]
    lines += ["", f"{result['n_real']} real and {result['n_synthetic']} synthetic ROIs; 95% "
              "Wilson intervals over the images. Without looking, answering \"real\" to "
              f"every ROI scores {100 * chance['always_real']:.1f}% on \"is the ROI real?\" "
              f"and {chance['majority_class']} to every ROI {100 * chance['majority_share']:.1f}%"
              " on the class: a reader near those figures did not tell the kinds or the "
              "classes apart."]
    if unfinished:
        lines.append("Not finished, counted over the images answered so far: "
                     + ", ".join(unfinished) + ".")
    if result["agreement"]:
        lines += ["", "| readers | images | same class | same class and right | "
                  "class kappa | same real/synthetic answer | real/synthetic kappa |",
                  "|---|---|---|---|---|---|---|"]
        for pair in result["agreement"]:
            lines.append(f"| {' and '.join(pair['readers'])} | {pair['n']} | "
                         f"{_cell(pair['class_agreement'], True)} | "
                         f"{pair['class_agreement_correct']} | {_kappa(pair['class_kappa'])} | "
                         f"{_cell(pair['origin_agreement'], True)} | "
                         f"{_kappa(pair['origin_kappa'])} |")
        lines += ["", "Cohen's kappa: 1 is full agreement, 0 the agreement of chance."]
    return lines


def write_table4(study: Study | str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """Write table4.md and table4.json to ``out_dir``; returns the data with
    the paths (``md``, ``json``)."""
    study = study if isinstance(study, Study) else Study(study)
    result = table4(study)
    out_dir = Path(out_dir)
    md = write_text(out_dir / "table4.md", "\n".join(
        ["# Table 4: the readers' assessment of the lesion ROIs (Frid-Adar §4.4)", "",
         f"Study: {study.path}", "", *table4_lines(result), ""]))
    js = write_json(out_dir / "table4.json", result)
    return {**result, "md": str(md), "json": str(js)}
