"""Where everything of an experiment lives: the one object that knows the paths.

``OUTPUT_DIR/NAME``::

    experiment.json                 layout version and the fingerprint of the
                                    settings and dataset the results belong to
    config.yaml                     the resolved config
    dataset.h5                      the dataset, when it is generated (phantoms)
    augment/<cell>.h5               augmentation groups of a cell (fold<k>, or
                                    repeat<r>/fold<k>), built from its fit
                                    patients only
    runs/<run id>/                  every training run, at its plan id, e.g.
                                    runs/fold0/classifier/D_aug2/seed0/,
                                    runs/fold0/gan/dcgan-cyst/base-D_aug2/seed0/
    data/<run id>.h5|.json          what non-training runs make: synthetic sets,
                                    mixtures, the extra real pool, quality figures
    choices/<cell>/<name>.json      choices that later runs depend on, per cell
                                    (D_aug optimal, the best synthetic sizes)
    report/                         tables, figures, result.json
    final/classifier/               the final model: every patient, the
                                    settings chosen on validation, its model
                                    card (``kl train-final``), beside what it
                                    is made from: augment-<group>.h5,
                                    gan/base-<group>/dcgan-<class>/,
                                    synthetic-<group>-<n>.h5, and external/
                                    (its one external test)

Run ids name what a run is (fold, what it trains, the base group it starts
from, its seed); nothing reads meaning back out of a path: every run records
its facts in its run.json, and reports read the plan.
"""
from __future__ import annotations

from pathlib import Path

# Version 2: experiments as plans of runs (runs/<run id>/). Version 3: cells
# of repeated cross-validation (repeat<r>/fold<k>), augmentation groups from
# each cell's fit patients only, choices per cell. Folders of earlier layouts
# are refused with a line saying why.
LAYOUT_VERSION = 3


class ExperimentLayout:
    """Paths of one experiment folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def record(self) -> Path:
        return self.root / "experiment.json"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def generated_dataset(self) -> Path:
        return self.root / "dataset.h5"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def result(self) -> Path:
        """The report's machine-readable result, written last by the report run."""
        return self.report / "result.json"

    @property
    def executing(self) -> Path:
        """Markers of runs being executed right now (process id, host)."""
        return self.root / ".executing"

    def augment_groups(self, cell: str) -> Path:
        """The augmentation groups of a cell (``cell_tag``), from its fit lesions."""
        return self.root / "augment" / f"{cell}.h5"

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def data_file(self, run_id: str, suffix: str = ".h5") -> Path:
        return self.root / "data" / f"{run_id}{suffix}"

    @property
    def final(self) -> Path:
        """The final model trained on every patient (``kl train-final``)."""
        return self.root / "final"

    def choice(self, name: str) -> Path:
        return self.root / "choices" / f"{name}.json"

    def relative(self, path: Path) -> str:
        return Path(path).relative_to(self.root).as_posix()

    def run_output(self, run_id: str) -> str:
        """The done marker of a training run, relative to the root."""
        return self.relative(self.run_dir(run_id) / "done.json")


def cell_tag(repeat: int, fold: int) -> str:
    """A cell's part of run ids: ``fold<k>`` in repeat 0 (the dataset's own
    folds), ``repeat<r>/fold<k>`` in the repeats drawn beyond it."""
    return f"fold{fold}" if repeat == 0 else f"repeat{repeat}/fold{fold}"
