"""Where everything of an experiment lives: the one object that knows the paths.

``OUTPUT_DIR/NAME``::

    experiment.json                 layout version and the fingerprint of the
                                    settings and dataset the results belong to
    config.yaml                     the resolved config
    dataset.h5                      the dataset, when it is generated (phantoms)
    augment/fold<k>.h5              augmentation groups of test fold k, built
                                    from its training folds only
    runs/<run id>/                  every training run, at its plan id, e.g.
                                    runs/fold0/classifier/D_aug2/seed0/,
                                    runs/fold0/gan/dcgan-cyst/base-D_aug2/seed0/
    data/<run id>.h5|.json          what non-training runs make: synthetic sets,
                                    mixtures, the extra real pool, quality figures
    choices/<name>.json             choices that later runs depend on
                                    (D_aug optimal, the best synthetic size)
    report/                         tables, figures, result.json

Run ids name what a run is (fold, what it trains, the base group it starts
from, its seed); nothing reads meaning back out of a path: every run records
its facts in its run.json, and reports read the plan.
"""
from __future__ import annotations

from pathlib import Path

# Version 2: experiments as plans of runs (runs/<run id>/). Folders of the
# version-1 layout (runs/<group>/fold<k>/seed<s>/, gan/, synth/, mixtures/)
# are refused with a line saying why.
LAYOUT_VERSION = 2


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

    def augment_groups(self, fold: int) -> Path:
        return self.root / "augment" / f"fold{fold}.h5"

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def data_file(self, run_id: str, suffix: str = ".h5") -> Path:
        return self.root / "data" / f"{run_id}{suffix}"

    def choice(self, name: str) -> Path:
        return self.root / "choices" / f"{name}.json"

    def relative(self, path: Path) -> str:
        return Path(path).relative_to(self.root).as_posix()

    def run_output(self, run_id: str) -> str:
        """The done marker of a training run, relative to the root."""
        return self.relative(self.run_dir(run_id) / "done.json")
