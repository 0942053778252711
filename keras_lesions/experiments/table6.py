"""Table 6 of an experiment: the baselines on its cells, beside its CNN rows
(``kl baselines --config C``); inside the plan the ``baselines`` runs do the
same per cell (``classic_curve.baselines_step``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from keras_lesions.baselines.crossval import METHODS, Log, write_table6
from keras_lesions.baselines.run import baselines_on_cells
from keras_lesions.config import ExperimentConfig


def baselines_on_experiment(config: ExperimentConfig, out_dir: str | os.PathLike | None = None,
                            *, methods=METHODS, log: Log = print,
                            progress: Callable[[int, int], None] | None = None) -> dict:
    """Table 6 on an experiment's cells (every repeat and fold; each fitted on
    the cell's training patients), beside the experiment's CNN-AUG (and, for
    a gan-curve, CNN-AUG-GAN) when its report exists. The SVMs weight classes
    when the experiment's classifiers do (``train.class_balance``), and their
    inner cross-validation maximises its primary metric.
    """
    from keras_lesions.experiments.registry import open_for
    from keras_lesions.runs.folder import read_json_record

    exp = open_for(config, log, create=False, record=False)
    cells = []
    for repeat, fold in exp.cells():
        split = exp.split(repeat, fold)
        cells.append((repeat, fold, split.training, split.test))
    class_weight = None if config.train.class_balance == "none" else "balanced"
    records = baselines_on_cells(exp, cells, methods=methods, log=log, progress=progress)
    summaries = {}
    cnn_from = None
    if exp.layout.result.is_file():
        result = read_json_record(exp.layout.result)
        for name, key in (("CNN-AUG", "optimal_summary"), ("CNN-AUG", "baseline_summary"),
                          ("CNN-AUG-GAN", "best_summary")):
            if isinstance(result.get(key), dict) and "intervals" in result[key]:
                summaries[name] = result[key]
        cnn_from = str(exp.layout.result) if summaries else None
        if not summaries:
            log(f"{exp.layout.result}: made before reports had balanced intervals; run `kl "
                "experiment --report` for the CNN rows")
    summaries.update({m: exp.summarize(r) for m, r in records.items()})
    out = Path(out_dir) if out_dir is not None else exp.layout.report / "baselines"
    table = write_table6(summaries, out, source=f"{exp.dataset_path} ({config.name})",
                         cells=len(cells), class_weight=class_weight, cnn_from=cnn_from)
    return {"summaries": summaries, "table": table}
