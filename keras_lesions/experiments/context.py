"""An open experiment: its config, layout and dataset, and the fingerprint that
keeps results of other settings out of its folder."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from keras_lesions.config import ConfigError, ExperimentConfig, save_config
from keras_lesions.data.dataset import LesionDataset, read_dataset, write_dataset
from keras_lesions.data.folds import Split, cell_split, repeat_folds
from keras_lesions.errors import DatasetError
from keras_lesions.experiments.layout import LAYOUT_VERSION, ExperimentLayout
from keras_lesions.io import write_json
from keras_lesions.runs.folder import first_difference

PHANTOM_PREFIX = "phantoms:"
# Settings only the reports (operating points, verdict margins) and the final
# model's external test read, or that only add runs of their own to the plan
# and change none of the others (evaluate.baselines): (section, key).
REPORT_ONLY_SETTINGS = (("evaluate", "positive_class"), ("evaluate", "target_sensitivity"),
                        ("evaluate", "class_sensitivity_margin"), ("evaluate", "baselines"),
                        ("evaluate", "reader_study"), ("data", "test_dataset"))
# Settings added after experiment folders existed, with the value that does
# what every folder made before them did: left out of the fingerprint while
# they hold it, so those folders keep working; any other value is in it.
LATER_SETTINGS = {("train", "class_balance"): "none", ("evaluate", "primary_metric"): "accuracy"}
EARLIER_SATURATION_TOLERANCE = 0.01  # evaluate.saturation_tolerance's default until 2026-12
Log = Callable[[str], None]
# (label, done, total), drawn as bars by the CLI
Progress = Callable[[str, int, int], None]


def report_settings(config: ExperimentConfig) -> dict:
    """The report-only settings' values, "section.key": value (a study's path resolved)."""
    settings = config.to_dict()
    values = {f"{section}.{key}": settings[section][key] for section, key in REPORT_ONLY_SETTINGS}
    if values["evaluate.reader_study"] is not None:
        values["evaluate.reader_study"] = str(Path(values["evaluate.reader_study"]).resolve())
    return values


@dataclass
class Experiment:
    """An experiment folder opened for its config.

    Attributes:
        config: the resolved config.
        layout: where every output goes.
        dataset_path: the dataset (the user's file, or the generated phantoms).
    """

    config: ExperimentConfig
    layout: ExperimentLayout
    dataset_path: Path
    _dataset: LesionDataset | None = field(default=None, repr=False)
    _header: LesionDataset | None = field(default=None, repr=False)
    _unrecorded: dict | None = field(default=None, repr=False)
    _splits: dict = field(default_factory=dict, repr=False)
    _views: dict = field(default_factory=dict, repr=False)

    def write_result(self, result: dict) -> None:
        """``report/result.json`` (the report run's done marker), with the
        report-only settings it was made with: a later ``kl experiment``
        remakes the report when they change (``stale_report``)."""
        write_json(self.layout.result, {**result, "report_settings": report_settings(self.config)})

    def record(self) -> None:
        """Write ``experiment.json`` and ``config.yaml`` if this folder has no
        record yet: called once everything a command was given is validated,
        so a refused command leaves no experiment folder behind.

        Raises:
            ConfigError: ``compute.xla`` is on where Keras compiles nothing
                with XLA (the record would say XLA of runs that cannot have it).
        """
        if self._unrecorded is not None:
            from keras_lesions.train.precision import check_xla_available

            check_xla_available(self.config)
            write_json(self.layout.record, self._unrecorded)
            save_config(self.config, self.layout.config)
            self._unrecorded = None

    @property
    def dataset(self) -> LesionDataset:
        """The dataset with images, read once."""
        if self._dataset is None:
            self._dataset = read_dataset(self.dataset_path)
        return self._dataset

    def cells(self) -> list[tuple[int, int]]:
        """(repeat, fold) of every cell of the repeated cross-validation."""
        return [(r, k) for r in range(self.config.evaluate.repeats)
                for k in self.config.evaluate.folds]

    def split(self, repeat: int, fold: int) -> Split:
        """Fit, validation and test lesions of a cell: validation patients are
        carved from the training folds unless choices are made on the test
        folds (``evaluate.selection: paper``)."""
        key = (repeat, fold)
        if key not in self._splits:
            evaluate = self.config.evaluate
            fraction = None if evaluate.selection == "paper" else evaluate.validation_fraction
            self._splits[key] = cell_split(self.dataset, repeat, fold, fraction,
                                           seed=self.config.data.fold_seed, where=self.dataset_path)
        return self._splits[key]

    def patient_of(self) -> dict[str, str]:
        """Lesion id -> patient id (the unit the statistics resample)."""
        return dict(zip(self.dataset.lesion_ids.tolist(), self.dataset.patient_ids.tolist()))

    def summarize(self, records: Sequence[dict]) -> dict:
        """``summarize_predictions`` of runs of this experiment: intervals over
        its patients, operating points as ``evaluate`` sets them."""
        from keras_lesions.evaluate.report import summarize_predictions

        evaluate = self.config.evaluate
        return summarize_predictions(records, self.class_names, self.patient_of(),
                                     positive_class=evaluate.positive_class,
                                     target_sensitivity=evaluate.target_sensitivity)

    def compare(self, what: str, baseline: Sequence[dict], proposed: Sequence[dict]) -> dict:
        """``verdict.compare_arms`` of two arms of this experiment: on its
        primary metric, watching every class's sensitivity with its margin."""
        from keras_lesions.evaluate.verdict import compare_arms

        evaluate = self.config.evaluate
        return compare_arms(what, baseline, proposed, self.patient_of(), self.class_names,
                            metric=evaluate.primary_metric,
                            sensitivity_margin=evaluate.class_sensitivity_margin)

    def repeat_dataset(self, repeat: int) -> LesionDataset:
        """The dataset with the folds of ``repeat`` (repeat 0: the dataset itself),
        for code that reads a dataset's folds."""
        if repeat == 0:
            return self.dataset
        if repeat not in self._views:
            self._views[repeat] = dataclasses.replace(
                self.dataset, folds=repeat_folds(self.dataset, repeat, self.dataset_path))
        return self._views[repeat]

    @property
    def class_names(self) -> list[str]:
        """The dataset's classes, from its header: planning reads no images."""
        if self._dataset is not None:
            return list(self._dataset.class_names)
        if self._header is None:
            self._header = read_dataset(self.dataset_path, images=False)
        return list(self._header.class_names)


def experiment_root(config: ExperimentConfig) -> Path:
    return Path(config.output_dir) / config.name


def fingerprint(config: ExperimentConfig, sections: Sequence[str],
                dataset: LesionDataset) -> dict:
    """What the experiment's results depend on: the config sections its kind
    reads (every setting in them, choices such as the saturation tolerance
    and the seeds included; ``section.key`` entries add one setting of a
    section it does not read whole) and the dataset's identity (creation
    stamp, classes, fold assignment). Where outputs go (``output_dir``) is
    not in it, nor are the report-only settings, nor the later settings while
    they hold their earlier behaviour (``LATER_SETTINGS``)."""
    settings = config.to_dict()
    if not settings["data"]["dataset"].startswith(PHANTOM_PREFIX):
        # the dataset file itself, wherever the command was started from
        settings["data"]["dataset"] = str(Path(settings["data"]["dataset"]).resolve())
    # What the reports and the final model read, not what any run of the
    # plan does: changing them remakes a report, never a run.
    for section, key in REPORT_ONLY_SETTINGS:
        if section in sections:
            settings[section].pop(key, None)
    for (section, key), earlier in LATER_SETTINGS.items():
        if settings[section].get(key) == earlier:
            settings[section].pop(key)
    if config.kind == "mixture" and settings["evaluate"]["saturation_tolerance"] is None:
        # it makes no saturation choice: its fingerprint keeps the fixed
        # tolerance every mixture folder recorded before the fraction existed
        settings["evaluate"]["saturation_tolerance"] = EARLIER_SATURATION_TOLERANCE
    if settings["evaluate"]["saturation_tolerance"] is not None:
        # a fixed tolerance (as every folder before the fraction had): the
        # fraction is not read
        settings["evaluate"].pop("saturation_fraction")
    selected = {}
    for name in sections:
        # a whole section, or one setting of a section the kind does not
        # otherwise read ("train.class_balance" for the mixture's classifiers)
        section, _, key = name.partition(".")
        if key:
            if key in settings[section]:
                selected.setdefault(section, {})[key] = settings[section][key]
        else:
            selected[section] = settings[section]
    folds = hashlib.sha1(np.asarray(dataset.folds, np.int16).tobytes()).hexdigest()
    # The compute settings only where they differ from the defaults: folders
    # made before the switches existed keep their fingerprint.
    changed = config.compute.changed()
    recorded = {"compute": changed} if changed else {}
    if config.kind == "mixture":
        # the online augmentation's warp decides every disentanglement and
        # mixture run: a folder begun on another warp is another experiment,
        # whose finished runs must not be reported beside this one's
        from keras_lesions.augment.online import ONLINE_WARP_VERSION
        recorded["online_warp"] = ONLINE_WARP_VERSION
    return {"layout": LAYOUT_VERSION,
            "config": {"name": settings["name"], "kind": settings["kind"],
                       **selected, **recorded},
            "dataset": {"created_at": dataset.created_at, "n_lesions": len(dataset),
                        "class_names": list(dataset.class_names), "folds_sha1": folds}}


def prepare_dataset(config: ExperimentConfig, layout: ExperimentLayout, log: Log) -> Path:
    """The experiment's dataset with folds: the user's file, or phantoms made once.

    Raises:
        DatasetError: the dataset has no fold assignment, or the config asks
            for folds it does not have.
    """
    spec = config.data.dataset
    if spec.startswith(PHANTOM_PREFIX):
        from keras_lesions.data.builtin import make_phantom_dataset

        path = layout.generated_dataset
        if not path.exists():
            preset = spec[len(PHANTOM_PREFIX):]
            log(f"generating the {preset} phantom dataset (seed {config.data.phantom_seed}) "
                f"into {path}")
            try:
                # exclusive: a second command generating at the same moment (a
                # `--list` beside the first run) must not replace the file the
                # first one's runs already read: its stamp is in the fingerprint
                write_dataset(make_phantom_dataset(
                    preset, config.data.phantom_seed, config.data.phantom_difficulty,
                    fold_seed=config.data.fold_seed,
                    created_by=f"keras_lesions experiment {config.name}"), path, exclusive=True)
            except FileExistsError:
                log(f"{path}: generated meanwhile by another command; using that one")
    else:
        path = Path(spec).resolve()
    header = read_dataset(path, images=False)
    if header.folds is None:
        raise DatasetError("has no fold assignment: run `kl data folds` on it first", path)
    positive = config.evaluate.positive_class
    if positive is not None and (len(header.class_names) != 2
                                 or positive not in header.class_names):
        raise ConfigError(
            f"evaluate.positive_class is {positive!r}, but the dataset's classes are "
            f"{', '.join(header.class_names)}: it must name one of two classes", path)
    bad = [f for f in config.evaluate.folds if f >= header.fold_k]
    if bad:
        raise DatasetError(f"config asks for fold {bad[0]} but the dataset has folds "
                           f"0..{header.fold_k - 1}", path)
    return path


def open_experiment(config: ExperimentConfig, sections: Sequence[str], log: Log = print,
                    *, create: bool = True, record: bool = True) -> Experiment:
    """Open an experiment folder, refusing to mix results of other settings.

    The first call records the fingerprint (:func:`fingerprint`) in
    ``experiment.json``; later calls on the same folder must match it, so
    augmentation groups and finished runs are only ever reused for the
    settings that made them.

    Args:
        config: the experiment.
        sections: the config sections its kind reads.
        log: receives one line per step.
        create: make the folder and its record if missing (the driver); False
            for a worker, which only attaches to an opened experiment.
        record: write ``experiment.json`` and ``config.yaml`` now (False:
            only look, as ``--list`` does, or wait for ``Experiment.record()``
            once the command's other inputs are validated; a recorded
            fingerprint is checked either way).

    Raises:
        ConfigError: the folder holds an experiment of other settings, of an
            earlier layout, or a damaged record; or (``create`` False) none.
    """
    write_record = record
    layout = ExperimentLayout(experiment_root(config))
    record_path = layout.record
    if not create and not record_path.is_file():
        raise ConfigError("holds no opened experiment (no experiment.json)", layout.root)
    previous = None
    if record_path.is_file():
        try:
            previous = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise ConfigError("is damaged: delete it to start the experiment afresh",
                              record_path) from None
        if not isinstance(previous, dict) or previous.get("layout") != LAYOUT_VERSION:
            raise ConfigError(
                "was made by an earlier keras-lesions (before choices moved to validation "
                "patients and cross-validation was repeated); its runs cannot be resumed: use "
                "another name or output_dir, or delete the folder", layout.root)
    dataset_path = prepare_dataset(config, layout, log)
    header = read_dataset(dataset_path, images=False)
    current = fingerprint(config, sections, header)
    if previous is not None:
        difference = first_difference(previous, current)
        if difference:
            hint = ""
            if any(key in difference for key in ("class_balance", "primary_metric",
                                                  "saturation_")):
                hint = (" (a config written before class balancing keeps its results with "
                        "train.class_balance: none, evaluate.primary_metric: accuracy and "
                        "evaluate.saturation_tolerance: 0.01)")
            if "online_warp" in difference:
                hint = (" (this version draws the online augmentation with another warp, "
                        "so its runs would not match the folder's finished ones)")
            raise ConfigError(f"holds results made with other settings ({difference}): use "
                              f"another name or output_dir, or delete the folder{hint}",
                              layout.root)
    exp = Experiment(config=config, layout=layout, dataset_path=dataset_path,
                     _unrecorded=current if create and previous is None else None)
    if create and write_record:
        exp.record()
    return exp
