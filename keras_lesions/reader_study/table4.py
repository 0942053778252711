"""Table 4 of Frid-Adar et al. 2018 from a reader-study database.

Per reader, over the images they answered both questions of: the class
accuracy on the real ROIs, on the synthetic ones and in total, and the
accuracy of "is the ROI real?". Each with its count (the paper's
"235\\302 = 77.8") and a 95% Wilson interval over the images (the images
are the unit here; several lesions of one patient are not independent,
so the interval is if anything too narrow on real data).

Accuracy on "is the ROI real?" depends on the mix: with 182 real ROIs of
302, "real" to everything scores 60%. So each reader also gets what
answering the commoner kind (and the commoner class) to every ROI would
score, the balanced accuracy (the mean of the real ROIs called real and the
synthetic ones called synthetic; 50% is chance whatever the mix), and
Fisher's exact test of whether their real/synthetic answers depend on the
truth in the right direction (one-sided, scipy). Between every pair
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
    """A proportion with its Wilson interval; None where n is 0 (JSON has no NaN)."""
    if not n:
        return {"correct": int(correct), "n": 0, "rate": None, "ci95": [None, None]}
    low, high = wilson_interval(correct, n)
    return {"correct": int(correct), "n": int(n), "rate": float(correct / n),
            "ci95": [float(low), float(high)]}


def origin_test(mine: list[dict]) -> float | None:
    """Fisher's exact test of the reader's real/synthetic answers against the
    truth, one-sided: the p-value of "the reader calls real ROIs real no
    more often than synthetic ones". (Two-sided, a reader who is reliably
    wrong would count as telling them apart.) None when the ROIs answered
    are all of one kind."""
    from scipy.stats import fisher_exact

    table = [[sum(r["is_real"] == kind and r["said_real"] == said for r in mine)
              for said in (True, False)] for kind in (True, False)]
    if not all(sum(row) for row in table):
        return None
    # rows: truly real, truly synthetic; columns: said real, said synthetic
    return float(fisher_exact(table, alternative="greater").pvalue)


def reader_rows(responses: list[dict], class_names) -> dict[str, dict]:
    """{reader: {real, synthetic, total, origin, synthetic_called_real,
    origin_balanced, origin_p, chance}} over the ROIs each answered."""
    rows = {}
    for reader in dict.fromkeys(r["reader"] for r in responses):
        mine = [r for r in responses if r["reader"] == reader]
        right = [r["said_class"] == r["truth_class"] for r in mine]
        real = [ok for ok, r in zip(right, mine) if r["is_real"]]
        synthetic = [ok for ok, r in zip(right, mine) if not r["is_real"]]
        origin = [r["said_real"] == r["is_real"] for r in mine]
        kept = [r["said_real"] for r in mine if r["is_real"]]
        fooled = [r["said_real"] for r in mine if not r["is_real"]]
        caught = (rate(sum(kept), len(kept)), rate(len(fooled) - sum(fooled), len(fooled)))
        classes = [r["truth_class"] for r in mine]
        majority = max(class_names, key=classes.count)
        rows[reader] = {
            "real": rate(sum(real), len(real)),
            "synthetic": rate(sum(synthetic), len(synthetic)),
            "total": rate(sum(right), len(right)),
            "origin": rate(sum(origin), len(origin)),
            "synthetic_called_real": rate(sum(fooled), len(fooled)),
            "origin_balanced": (None if None in (caught[0]["rate"], caught[1]["rate"])
                                else (caught[0]["rate"] + caught[1]["rate"]) / 2),
            "origin_p": origin_test(mine),
            # what answering without looking scores on the same ROIs
            "chance": {"commoner_kind": "real" if 2 * len(kept) >= len(mine) else "synthetic",
                       "commoner_kind_share": max(len(kept), len(fooled)) / len(mine),
                       "majority_class": majority,
                       "majority_share": classes.count(majority) / len(mine)}}
    return rows


def kappa(a: list[str], b: list[str], labels) -> float | None:
    """Cohen's kappa; None where it is undefined (both readers always gave
    the same single answer: no chance agreement to discount)."""
    from sklearn.metrics import cohen_kappa_score

    if not a:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined kappa: scikit-learn warns, we say so
        value = cohen_kappa_score(a, b, labels=list(labels))
    return float(value) if np.isfinite(value) else None


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
    return {"study": str(study.path), "n_real": study.meta["n_real"],
            "n_synthetic": study.meta["n_synthetic"], "class_names": study.class_names,
            "progress": study.progress(),
            "readers": reader_rows(responses, study.class_names),
            "agreement": agreement(responses, study.class_names)}


def _cell(r: dict, counts: bool = False) -> str:
    if not r["n"]:
        return "–"
    low, high = r["ci95"]
    head = f"{r['correct']}\\{r['n']} = " if counts else ""
    return f"{head}{100 * r['rate']:.1f} ({100 * low:.1f}–{100 * high:.1f})"


def _kappa(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.2f}"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def table4_lines(result: dict) -> list[str]:
    """Table 4 as Markdown lines (the paper's columns, then the agreement)."""
    lines = ["| reader | class accuracy, real (%) | class accuracy, synthetic (%) | "
             "class accuracy, total (%) | is the ROI real? total (%) |", "|---|---|---|---|---|"]
    for reader, row in result["readers"].items():
        lines.append(f"| {reader} | {_cell(row['real'])} | {_cell(row['synthetic'])} | "
                     f"{_cell(row['total'], True)} | {_cell(row['origin'], True)} |")
    if not result["readers"]:
        lines.append("| (no reader has answered an image) | | | | |")
    unfinished = [f"{name} ({p['done']} of {p['total']})"
                  for name, p in result["progress"].items() if not p["finished"]]
    lines += ["", f"{result['n_real']} real and {result['n_synthetic']} synthetic ROIs; 95% "
              "Wilson intervals over the images."]
    if result["readers"]:
        lines += ["", "Read against what answering without looking scores on the same ROIs "
                  "(the commoner kind, the commonest class, to every ROI), and whether the "
                  "real/synthetic answers depend on the truth at all (balanced accuracy: 50% "
                  "is chance whatever the mix; Fisher's exact test, one-sided):", "",
                  "| reader | class: commonest class to all (%) | real?: commoner kind to all "
                  "(%) | real?: balanced accuracy (%) | synthetic called real (%) | "
                  "real?: Fisher p |", "|---|---|---|---|---|---|"]
        for reader, row in result["readers"].items():
            chance = row["chance"]
            balanced = row["origin_balanced"]
            lines.append(f"| {reader} | {100 * chance['majority_share']:.1f} "
                         f"({chance['majority_class']}) | "
                         f"{100 * chance['commoner_kind_share']:.1f} ({chance['commoner_kind']})"
                         f" | {'–' if balanced is None else f'{100 * balanced:.1f}'} | "
                         f"{_cell(row['synthetic_called_real'])} | {_p(row['origin_p'])} |")
        lines += ["", "A Fisher p of 0.05 or more: no evidence that the reader told real from "
                  "synthetic ROIs (which is not evidence that they could not)."]
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


def write_table4(study: Study | str | os.PathLike, out_dir: str | os.PathLike,
                 stem: str = "table4") -> dict:
    """Write ``<stem>.md`` and ``<stem>.json`` to ``out_dir`` (both made
    before either is written); returns the data with their paths (``md``,
    ``json``)."""
    study = study if isinstance(study, Study) else Study(study)
    result = table4(study)
    text = "\n".join(["# Table 4: the readers' assessment of the lesion ROIs (Frid-Adar §4.4)",
                      "", f"Study: {study.path}", "", *table4_lines(result), ""])
    out_dir = Path(out_dir)
    js = write_json(out_dir / f"{stem}.json", result)
    md = write_text(out_dir / f"{stem}.md", text)
    return {**result, "md": str(md), "json": str(js)}
