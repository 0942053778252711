"""Experiment configs: dataclasses per concern, validated once at the edge.

A YAML config maps section names to the fields of the dataclasses below.
``load_config`` refuses unknown sections and keys, wrong types and values out
of range with one line naming the file and the key, so nothing downstream has
to re-check. Every run saves the resolved config beside its outputs.
"""
from __future__ import annotations

import dataclasses
import math
import os
import reprlib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from keras_lesions.data.registry import PRESETS
from keras_lesions.errors import KerasLesionsError, MixtureError


EXPERIMENT_KINDS = ("classic-curve", "gan-curve", "mixture")
# evaluate.selection: where the experiments' choices are made.
SELECTIONS = ("validation", "paper")
DIFF_AUGMENT_POLICIES = ("translation", "cutout", "color")
# mixture.controls: arms that share the mixtures' soft targets but not their
# images, so a gain can be told apart from the effect of soft targets alone
# (synth.controls).
MIXTURE_CONTROLS = ("label-smoothing", "mixup")
# train.class_balance: how a classifier's training set's class prior is
# treated (keras_lesions.train.balance). "none": as it is (the papers);
# "weights": inverse-frequency class weights in the loss; "sampling":
# class-balanced batches.
CLASS_BALANCES = ("none", "weights", "sampling")
# evaluate.primary_metric: what verdicts and choices read.
PRIMARY_METRICS = ("accuracy", "balanced_accuracy", "auc")
# compute.precision: Keras dtype policies (keras_lesions.train.precision).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
DEFAULT_PRECISION = "float32"


class ConfigError(KerasLesionsError):
    """A config file is missing, not YAML, or has unknown keys or bad values."""


MAX_SEED = 2**31 - 1  # numpy's and TensorFlow's seeds both take it


def between(default, low, high, ends: str = "[]", why: str = ""):
    """A numeric setting (or list of them) whose values must lie between
    ``low`` and ``high``; ``ends`` says which ends are included ("[]", "[)",
    "(]", "()"); ``why`` is added to the error. ``default`` may be a list
    factory."""
    meta = {"range": (low, high, ends, why)}
    if callable(default):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def seed_field(default=0):
    """A random seed (or list of seeds): an integer in [0, 2³¹ − 1]."""
    return between(default, 0, MAX_SEED)


def _check_range(value, bounds, where: str, key: str) -> None:
    low, high, ends, why = bounds
    above = value > low if ends[0] == "(" else value >= low
    below = value < high if ends[1] == ")" else value <= high
    if not (above and below):
        raise ConfigError(f"{key} must lie in {ends[0]}{_number(low)}, {_number(high)}{ends[1]}"
                          f"{f' ({why})' if why else ''}, got {value!r}", where)


def _number(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass
class DataConfig:
    """Which dataset an experiment runs on.

    ``dataset`` is a path to a lesion dataset (.h5, with folds), or
    ``phantoms:<preset>`` to generate the built-in phantoms on first use.
    """

    dataset: str = "phantoms:frid-adar-2018"
    phantom_seed: int = seed_field()
    phantom_difficulty: float = between(0.5, 0.0, 1.0)
    fold_seed: int = seed_field()
    # An external test set (.h5): `kl train-final` tests the final model,
    # trained on every patient of `dataset`, once on it (no patient shared).
    test_dataset: str | None = None


@dataclass
class AugmentConfig:
    """Classic augmentation of Frid-Adar et al. 2018 §3.1 and §4.2.1."""

    n_rot: int = between(30, 1, 360)  # §4.2.1: N_rot = 30
    n_flip: int = between(3, 0, 3)  # §4.2.1: up-down, left-right, both
    n_trans: int = between(7, 0, 1000)  # §4.2.1
    n_scale: int = between(5, 0, 1000)  # §4.2.1; N = 30 × (1 + 3 + 7 + 5) = 480 per lesion
    # §4.2.1: samples added per fold for D_aug^1 ... D_aug^9.
    group_sizes: list[int] = between(
        lambda: [0, 500, 1000, 2000, 3000, 5000, 7500, 10000, 15000], 0, 10_000_000)
    seed: int = seed_field()


@dataclass
class ClassifierConfig:
    """The classification CNN of Frid-Adar et al. 2018 §2.2."""

    input_size: int = between(64, 16, 1024)  # §2.2: 64×64 ROIs
    filters: list[int] = between(lambda: [32, 64, 128], 1, 4096)  # our reading, 1.31 M params
    kernel_size: int = between(5, 1, 15)
    dense_units: int = between(128, 1, 65536)
    dropout: float = between(0.5, 0.0, 1.0, ends="[)")  # §2.2


@dataclass
class TrainConfig:
    """Optimisation of the classifier (Frid-Adar et al. 2018 §4.1)."""

    learning_rate: float = between(0.001, 0.0, 10.0, ends="(]")  # §4.1
    # Our choice: the paper says "Nesterov momentum" without a value.
    momentum: float = between(0.9, 0.0, 1.0, ends="[)")
    batch_size: int = between(64, 1, 65536)  # §4.1
    epochs: int = between(150, 1, 100_000)  # §4.1
    # SGD steps of every classifier run, whatever the size of its training set,
    # split into ``epochs`` checkpointed parts of equal length: the arms of a
    # comparison get the same compute, so a gain cannot come from extra steps.
    # 0: ``epochs`` passes over each run's own set (§4.1), which gives a larger
    # set proportionally more steps; reports then say so.
    steps: int = between(0, 0, 100_000_000)
    # Beyond the papers (whose configs say "none", as the papers trained):
    # "weights" (the default of a new config) weighs each lesion's loss by
    # n / (classes × n_class) of its training set, "sampling" draws batches
    # with every class equally often. The same rule for every arm of a
    # comparison, each on its own training set (real, augmented and synthetic
    # lesions together).
    class_balance: str = "weights"
    seed: int = seed_field()


@dataclass
class GANConfig:
    """DCGAN / ACGAN training (Frid-Adar et al. 2018 §3.2–3.3)."""

    latent_dim: int = between(100, 1, 4096)  # §3.2: z ∈ U[−1, 1]^100
    # Filter multiplier; 1.0 = the paper's 1024/512/256/128 and 64..512.
    width: float = between(1.0, 0.0, 4.0, ends="(]")
    learning_rate: float = between(0.0002, 0.0, 1.0, ends="(]")  # §3.2: Adam 2e-4
    beta_1: float = between(0.5, 0.0, 1.0, ends="[)")  # §3.2
    beta_2: float = between(0.999, 0.0, 1.0, ends="[)")  # §3.2
    batch_size: int = between(64, 1, 65536)  # §3.2: mini-batches of m = 64
    epochs: int = between(70, 1, 100_000)  # §3.2
    # Beyond the paper: DiffAugment (Zhao et al. 2020) policies applied to both
    # discriminator inputs, comma-separated from "translation", "cutout",
    # "color"; empty = off (the paper).
    diff_augment: str = ""
    seed: int = seed_field()


@dataclass
class SynthConfig:
    """Synthetic augmentation groups D_synth (Frid-Adar et al. 2018 §4.2.2)."""

    # §4.2.2: {100, 500, 1000, 2000, 3000, 4000} synthetic lesions per class.
    per_class_sizes: list[int] = between(lambda: [100, 500, 1000, 2000, 3000, 4000],
                                         1, 10_000_000)
    # D_aug group the GANs and the classifier start from (1-based, as D_aug^i);
    # 0 = read D_aug^optimal from the classic curve's report.
    base_group: int = between(0, 0, 1000)
    # Also run the ACGAN rows of Table 5 (§4.3) and the "more real data" line
    # (§4.2.2, Fig. 8 green; phantom datasets only: the preset's extra pool).
    acgan: bool = True
    more_real_data: bool = True
    # Beyond the paper: also train the DCGANs with the other DiffAugment setting
    # (on with "translation,cutout,color" when gan.diff_augment is off, and off
    # when it is on) and report whether DiffAugment helps.
    compare_diff_augment: bool = False
    # Beyond the paper: a classic-augmentation control of the same total size
    # as D_aug optimal + D_synth (more classic augmentations in place of the
    # synthetic lesions), so a gain can be told from a gain of size alone.
    classic_control: bool = True
    seed: int = seed_field()


@dataclass
class EvaluateConfig:
    """Cross-validation protocol (Frid-Adar et al. 2018 §4.1)."""

    folds: list[int] = between(lambda: [0, 1, 2], 0, 99)
    seeds: list[int] = seed_field(lambda: [0])  # training seeds of every run
    # Independent patient-level partitions (repeated cross-validation), each
    # retraining everything fitted. Repeat 0 is the dataset's own fold
    # assignment; repeat r > 0 draws another with the dataset's fold seed + r.
    # Our choice: 5 (the papers use one partition, too few for an interval).
    repeats: int = between(5, 1, 100)
    # Where choices (D_aug optimal, synthetic sizes) are made. "validation":
    # on validation patients carved from each fold's training folds, the test
    # fold predicted once after every choice. "paper": on the pooled test
    # folds, as Frid-Adar et al. did (§4.2); every number is then labelled
    # test-selected.
    selection: str = "validation"
    # Share of each fold's training patients (per class) held out to make the
    # choices on; nothing fitted ever sees them. Our choice.
    validation_fraction: float = between(0.25, 0.0, 1.0, ends="()")
    # What the verdicts call a gain or a loss and the choices maximise, on
    # the test and the validation predictions: "accuracy" (total accuracy,
    # the papers' configs, as the papers report), "balanced_accuracy" (the
    # mean of the classes' sensitivities, the default of a new config) or
    # "auc" (macro one-vs-rest ROC AUC).
    primary_metric: str = "balanced_accuracy"
    # A gain on the primary metric is called "helped" only if no class's
    # sensitivity fell by more than this (the change of the point estimate,
    # proposed minus baseline); otherwise the verdict names the class that
    # paid for it. Our choice: five points.
    class_sensitivity_margin: float = between(0.05, 0.0, 1.0)
    # D_aug^optimal: the smallest group whose primary metric on the
    # validation patients is within a tolerance of the best group's
    # ("saturation", §4.2.1). The tolerance is `saturation_fraction` × the
    # half-width of the best group's 95% patient-bootstrap interval there, so
    # it means the same for every metric and validation size, unless
    # `saturation_tolerance` fixes it in the metric's units (the papers'
    # configs: 0.01, one point). Our choice: 0.1, which breaks near-ties
    # toward the smaller group (on a few dozen validation lesions about one
    # point). 0.5 would be about one standard error (the one-standard-error
    # rule, Hastie et al. 2009 §7.10), which on validation sets this small
    # picks the smallest group whenever the groups are within noise: "no
    # augmentation" in 7 of 9 cells of imbalanced-quick, where augmentation
    # was up to 6 points better on validation.
    saturation_tolerance: float | None = between(None, 0.0, 1.0, ends="[)")
    saturation_fraction: float = between(0.1, 0.0, 10.0)
    # Two-class tasks: the class whose sensitivity the reports' operating
    # points give (null: the second class, e.g. "malignant" after "benign"),
    # and the sensitivity a threshold chosen on each run's validation
    # patients aims at. Our choice: 0.9.
    positive_class: str | None = None
    target_sensitivity: float = between(0.9, 0.0, 1.0, ends="(]")
    # Table 6 (§4.5): also run the texture and bag-of-words baselines with
    # SVMs on every cell (keras_lesions.baselines), as runs of their own, and
    # put them in the report (report/table6.md; a gan-curve's report also
    # gets Fig. 9, the t-SNE of CNN-AUG and CNN-AUG-GAN of the first cell).
    # Turning it on for a finished experiment adds those runs only.
    baselines: bool = False
    # Table 4 (§4.4): a reader-study database (`kl reader-study serve`) whose
    # Table 4 and reader agreement go in a gan-curve's report (report/table4.md).
    reader_study: str | None = None


@dataclass
class DisentangleConfig:
    """Two-step disentanglement and its classifier (Ben-Cohen et al. 2019 §2, §3.2)."""

    input_size: int = between(128, 8, 1024)  # §3.1: ROIs resized to 128×128
    # Conv filter multiplier; 1.0 = Table 1 (64/256/1024).
    width: float = between(1.0, 0.0, 4.0, ends="(]")
    code_size: int = between(256, 1, 65536)  # Table 1: Dense 256 closes each encoder
    # Table 1: Dense 256, BatchNorm, Dense 256, BatchNorm.
    classifier_units: int = between(256, 1, 65536)
    dropout: float = between(0.5, 0.0, 1.0, ends="[)")  # Table 1: the decoder's Dropout 0.5
    # §3.2: every case shown 10 times per epoch, online augmented.
    repeats: int = between(10, 1, 1000)
    # §3.2: 30% of each training set for validation.
    validation_fraction: float = between(0.3, 0.0, 1.0, ends="()")
    # Our choice: the paper gives none; batch norm needs a batch.
    batch_size: int = between(32, 2, 65536)
    # Step 1 (and the classifiers of the mixture experiment): E_C + classifier,
    # cross-entropy. Adam and the epoch counts are our choice (not in the paper).
    classifier_epochs: int = between(40, 1, 100_000)
    classifier_learning_rate: float = between(0.001, 0.0, 10.0, ends="(]")
    # Step 2: E_R and G_R against the adversary, E_C frozen.
    epochs: int = between(60, 1, 100_000)
    learning_rate: float = between(0.0005, 0.0, 10.0, ends="(]")
    # Weight of L_rec (mean squared error per pixel).
    rec_weight: float = between(1.0, 0.0, 1e6, ends="(]")
    adv_weight: float = between(-0.1, -1e6, 0.0, ends="[)",
                                why="λ of eq. (2) must be negative, §2.1")
    adversary_steps: int = between(1, 1, 100)  # adversary updates per E_R/G_R update
    seed: int = seed_field()


@dataclass
class MixtureConfig:
    """Mixture of specified factors (Ben-Cohen et al. 2019 §2.2)."""

    # "random": proportions drawn uniformly on the simplex (Dirichlet(1, ..., 1));
    # a number a in (0, 1]: the image keeps share a of its own c, the nearest
    # c of each other class gets (1 − a)/(classes − 1).
    alpha: float | str = "random"
    per_image: int = between(1, 1, 1000)  # mixed images made per training image
    # Equal-compute controls trained beside the proposed classifier, each on
    # the real images plus as many soft-target cases as there are mixtures,
    # with the mixtures' own soft targets: "label-smoothing" puts them on the
    # mixture's real source image, "mixup" on a pixel mixture of the source
    # and random lesions of the other classes (synth.controls).
    controls: list[str] = field(default_factory=lambda: list(MIXTURE_CONTROLS))
    seed: int = seed_field()


@dataclass
class ComputeConfig:
    """How the networks compute; none of it is in the papers.

    ``precision``: "float32" (the default, what every result in this project
    was made with), or a mixed policy for GPUs: "mixed_float16" (with dynamic
    loss scaling) or "mixed_bfloat16". A mixed run's figures differ from a
    float32 run's, so it is part of every run's settings.

    ``xla``: compile every train step with XLA (``jit_compile``). Off by
    default, also on a GPU (where Keras' "auto" would turn it on): on this
    project's CPU it is slower (``bench/run.py --jit``), and under XLA
    TensorFlow's random ops draw other numbers for the same seed (z, the
    DiffAugment draws, dropout masks), so an XLA run does not give the
    figures of the same run without it. It is part of a run's settings when
    on; ``tests/test_xla.py`` checks every step under it on the CPU.
    """

    precision: str = DEFAULT_PRECISION
    xla: bool = False

    def changed(self) -> dict:
        """The settings that differ from the defaults (what run settings and
        fingerprints record, so that runs from before a switch existed keep
        theirs)."""
        def default(f):
            return f.default_factory() if f.default is MISSING else f.default
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != default(f)}


@dataclass
class ExperimentConfig:
    """A whole experiment; each section is one concern."""

    name: str = "experiment"
    # What `kl experiment` runs. "classic-curve": the CNN-AUG curve over the
    # D_aug groups (Frid-Adar §4.2.1, Fig. 8 red line). "gan-curve": that, then
    # CNN-AUG-GAN (§4.2.2, Fig. 7, Fig. 8 blue and green lines, Tables 3, 5, 7).
    # "mixture": Ben-Cohen 2019 §3.2, the classifier with and without mixtures
    # of specified factors (Tables 2 and 3); uses the disentangle and mixture
    # sections (and data, evaluate).
    kind: str = "classic-curve"
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    gan: GANConfig = field(default_factory=GANConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    disentangle: DisentangleConfig = field(default_factory=DisentangleConfig)
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)

    def validate(self, where: str = "<config>") -> None:
        """The checks one field's type and range cannot express.

        Every numeric field's range is checked as the file is read (``between``
        in the dataclasses); these relate fields or check words."""
        name_problem = _file_name_problem(self.name)
        checks = [
            (name_problem is None, f"name {name_problem}"),
            (len(self.augment.group_sizes) >= 1, "augment.group_sizes must not be empty"),
            (all(b >= a for a, b in zip(self.augment.group_sizes, self.augment.group_sizes[1:])),
             "augment.group_sizes must be increasing (nested groups)"),
            (self.classifier.input_size % 8 == 0,
             "classifier.input_size must be a multiple of 8 (three 2× poolings)"),
            (len(self.classifier.filters) == 3, "classifier.filters must list 3 filter counts"),
            (len(self.evaluate.folds) >= 1, "evaluate.folds must not be empty"),
            (len(self.evaluate.seeds) >= 1, "evaluate.seeds must not be empty"),
            (len(set(self.evaluate.folds)) == len(self.evaluate.folds)
             and len(set(self.evaluate.seeds)) == len(self.evaluate.seeds),
             "evaluate.folds and evaluate.seeds must not repeat a value"),
            (not self.data.dataset.startswith("phantoms:")
             or self.data.dataset[len("phantoms:"):] in PRESETS,
             f"data.dataset names an unknown phantom preset: {_short(self.data.dataset)} "
             f"(known: {', '.join('phantoms:' + p for p in PRESETS)})"),
            (bool(self.data.dataset.strip()) and "\0" not in self.data.dataset,
             "data.dataset must name a dataset file or phantoms:<preset>"),
            (bool(self.output_dir.strip()) and "\0" not in self.output_dir,
             "output_dir must name a folder"),
            (self.disentangle.input_size % 8 == 0,
             "disentangle.input_size must be a multiple of 8 (three stride-2 convs)"),
            (_alpha_ok(self.mixture.alpha),
             f"mixture.alpha must be 'random' or a number in (0, 1], got "
             f"{_short(self.mixture.alpha)}"),
            (all(c in MIXTURE_CONTROLS for c in self.mixture.controls)
             and len(set(self.mixture.controls)) == len(self.mixture.controls),
             f"mixture.controls must list controls from {', '.join(MIXTURE_CONTROLS)}, each "
             f"once, got {_short(self.mixture.controls)}"),
            (_diff_augment_ok(self.gan.diff_augment),
             f"gan.diff_augment must list transforms from {', '.join(DIFF_AUGMENT_POLICIES)} "
             f"(comma-separated, each once; empty = off), got {_short(self.gan.diff_augment)}"),
            (len(self.synth.per_class_sizes) >= 1, "synth.per_class_sizes must not be empty"),
            (self.synth.base_group <= len(self.augment.group_sizes),
             "synth.base_group must be 0 (D_aug optimal) or a group "
             f"1..{len(self.augment.group_sizes)}"),
            (self.evaluate.selection in SELECTIONS,
             f"evaluate.selection must be one of {', '.join(SELECTIONS)}, got "
             f"{_short(self.evaluate.selection)}"),
            (self.train.steps == 0 or self.train.steps >= self.train.epochs,
             "train.steps must be 0 (epochs over each run's own set) or at least train.epochs "
             "(one step per checkpointed part)"),
            (self.train.class_balance in CLASS_BALANCES,
             f"train.class_balance must be one of {', '.join(CLASS_BALANCES)}, got "
             f"{_short(self.train.class_balance)}"),
            (self.evaluate.primary_metric in PRIMARY_METRICS,
             f"evaluate.primary_metric must be one of {', '.join(PRIMARY_METRICS)}, got "
             f"{_short(self.evaluate.primary_metric)}"),
            (self.kind != "mixture" or not self.evaluate.baselines,
             "evaluate.baselines (Table 6 of Frid-Adar 2018) is for classic-curve and gan-curve "
             "experiments, not mixture ones"),
            (self.kind == "gan-curve" or self.evaluate.reader_study is None,
             "evaluate.reader_study (Table 4 of Frid-Adar 2018) is for gan-curve experiments, "
             "whose synthetic lesions the readers judge"),
            (self.kind != "mixture" or self.train.class_balance != "sampling",
             "train.class_balance: sampling is not available for mixture experiments (their "
             "online pipeline shows every case `disentangle.repeats` times an epoch); use "
             "weights or none"),
            (self.compute.precision in PRECISIONS,
             f"compute.precision must be one of {', '.join(PRECISIONS)}, got "
             f"{_short(self.compute.precision)}"),
            (self.kind in EXPERIMENT_KINDS,
             f"kind must be one of {', '.join(EXPERIMENT_KINDS)}, got {_short(self.kind)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message, where)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _file_name_problem(name: str) -> str | None:
    """Why ``name`` is not a plain file name (the experiment's folder under
    output_dir), or None."""
    if not name.strip() or name in (".", ".."):
        return f"must be a plain folder name, got {_short(name)}"
    if any(c in name for c in "/\\") or any(ord(c) < 32 for c in name):
        return f"must be a plain folder name (no path separators or control characters), " \
               f"got {_short(name)}"
    if len(name) > 100:
        return "must be a folder name of at most 100 characters"
    return None


def _diff_augment_ok(policy: str) -> bool:
    names = [p.strip() for p in policy.split(",") if p.strip()]
    return set(names) <= set(DIFF_AUGMENT_POLICIES) and len(set(names)) == len(names)


def _alpha_ok(alpha: float | str) -> bool:
    try:
        parse_alpha(alpha)
    except MixtureError:
        return False
    return True


def parse_alpha(alpha) -> str | float:
    """Ben-Cohen §2.2's mixing share: ``"random"`` or a share in (0, 1] kept by
    the original image's c.

    Raises:
        MixtureError: anything else (a word other than "random", a number
            outside (0, 1]).
    """
    if isinstance(alpha, str):
        text = alpha.strip().lower()
        if text == "random":
            return "random"
        try:
            alpha = float(text)
        except ValueError:
            raise MixtureError(f"alpha must be 'random' or a number in (0, 1], got {alpha!r}") \
                from None
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) \
            or not math.isfinite(alpha) or not 0.0 < float(alpha) <= 1.0:
        raise MixtureError(f"alpha must be 'random' or a number in (0, 1], got {alpha!r}")
    return float(alpha)


def config_from_dict(raw: dict, where: str = "<config>") -> ExperimentConfig:
    """An ``ExperimentConfig`` from a dict such as ``to_dict()`` returns, validated
    as a file would be (how worker processes receive their config)."""
    config = _build(ExperimentConfig, raw, where, prefix="")
    config.validate(where)
    return config


def load_config(path: str | os.PathLike | None = None,
                overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read a YAML config, apply dotted overrides, validate, return it.

    Args:
        path: the YAML file; None for the defaults (the paper's settings).
        overrides: e.g. ``{"train.epochs": 2, "output_dir": "/tmp/x"}`` from
            the command line.

    Raises:
        ConfigError: naming the file and the offending key.
    """
    where = os.fspath(path) if path is not None else "<defaults>"
    raw: dict = {}
    if path is not None:
        path = resolve_config_path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"not valid YAML{at}", path) from None
        except UnicodeDecodeError:
            raise ConfigError("not a text file", path) from None
        if not isinstance(raw, dict):
            raise ConfigError("must be a mapping of sections to settings", path)
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"cannot override {dotted!r}: {key!r} is not a section", where)
        node[leaf] = value
    config = _build(ExperimentConfig, raw, where, prefix="")
    config.validate(where)
    return config


def _bundled_config_folder() -> Path | None:
    """Where the installed configs are: the package data of a regular install,
    or the checkout's configs/ beside the package for an editable one."""
    # keras_lesions.configs has no __init__.py: importlib.resources would give a
    # MultiplexedPath (whose str() is not a path), so the folder is found beside
    # this module, where setup.py installs it.
    installed = Path(__file__).resolve().parent / "configs"
    if installed.is_dir() and any(installed.glob("*.yaml")):
        return installed
    checkout = Path(__file__).resolve().parent.parent / "configs"
    return checkout if checkout.is_dir() else None


def bundled_configs() -> list[str]:
    """Names of the configs installed with the package (the repo's configs/)."""
    folder = _bundled_config_folder()
    return sorted(p.name for p in folder.glob("*.yaml")) if folder else []


def resolve_config_path(path: str | os.PathLike) -> Path:
    """The config file at ``path``; else, for ``configs/NAME.yaml`` or ``NAME.yaml``
    outside a checkout, the copy installed with the package.

    Raises:
        ConfigError: neither exists.
    """
    path = Path(path)
    if path.is_file():
        return path
    if path.exists():
        raise ConfigError("is a folder, expected a YAML config file" if path.is_dir() else
                          "is not a regular file (a device, pipe or socket), expected a YAML "
                          "config file", path)
    if path.name in bundled_configs() and path.parent in (Path("."), Path("configs")):
        return _bundled_config_folder() / path.name
    raise ConfigError("no such config file", path)


def save_config(config: ExperimentConfig, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically)."""
    from keras_lesions.io import atomic_path

    with atomic_path(path, suffix=".yaml") as tmp:
        tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")


def _build(cls, raw: Any, where: str, prefix: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping", where)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"unknown key '{prefix}{unknown[0]}' (known: {', '.join(sorted(names))})", where)
    bounds = {f.name: f.metadata.get("range") for f in dataclasses.fields(cls)}
    values = {}
    for name, value in raw.items():
        key = f"{prefix}{name}"
        values[name] = _coerce(hints[name], value, where, key)
        if bounds[name] is not None:
            for item in values[name] if isinstance(values[name], list) else [values[name]]:
                if item is None:
                    continue
                _check_range(item, bounds[name], where, key)
    return cls(**values)


def _short(value) -> str:
    """A value's repr for an error line, cut short (an aliased YAML structure
    can be huge)."""
    return _SHORT.repr(value)


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 2, 4, 4
_SHORT.maxstring = _SHORT.maxother = 60


def _coerce(hint, value, where: str, key: str):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where, prefix=f"{key}.")
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {type(value).__name__}", where)
        return [_coerce(item_hint, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint):
        # An optional setting: null, or a value of the one other type.
        if value is None:
            return None
        (other,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(other, value, where, key)
    if origin in (typing.Union, types.UnionType):
        # A number or a word (mixture.alpha: 0.6 or "random").
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a number or a string, got {_short(value)}", where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {_short(value)}", where)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {_short(value)}", where)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {_short(value)}", where)
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}", where)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {_short(value)}", where)
        return value
    raise ConfigError(f"{key}: unsupported setting type {hint}", where)  # pragma: no cover
