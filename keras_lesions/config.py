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
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from keras_lesions.data.registry import PRESETS
from keras_lesions.errors import KerasLesionsError, MixtureError


EXPERIMENT_KINDS = ("classic-curve", "gan-curve", "mixture")
DIFF_AUGMENT_POLICIES = ("translation", "cutout", "color")


class ConfigError(KerasLesionsError):
    """A config file is missing, not YAML, or has unknown keys or bad values."""


@dataclass
class DataConfig:
    """Which dataset an experiment runs on.

    ``dataset`` is a path to a lesion dataset (.h5, with folds), or
    ``phantoms:<preset>`` to generate the built-in phantoms on first use.
    """

    dataset: str = "phantoms:frid-adar-2018"
    phantom_seed: int = 0
    phantom_difficulty: float = 0.5
    fold_seed: int = 0


@dataclass
class AugmentConfig:
    """Classic augmentation of Frid-Adar et al. 2018 §3.1 and §4.2.1."""

    n_rot: int = 30  # §4.2.1: N_rot = 30
    n_flip: int = 3  # §4.2.1: up-down, left-right, both
    n_trans: int = 7  # §4.2.1
    n_scale: int = 5  # §4.2.1; N = 30 × (1 + 3 + 7 + 5) = 480 per lesion
    # §4.2.1: samples added per fold for D_aug^1 ... D_aug^9.
    group_sizes: list[int] = field(
        default_factory=lambda: [0, 500, 1000, 2000, 3000, 5000, 7500, 10000, 15000])
    seed: int = 0


@dataclass
class ClassifierConfig:
    """The classification CNN of Frid-Adar et al. 2018 §2.2."""

    input_size: int = 64  # §2.2: 64×64 ROIs
    filters: list[int] = field(default_factory=lambda: [32, 64, 128])  # our reading, 1.31 M params
    kernel_size: int = 5
    dense_units: int = 128
    dropout: float = 0.5  # §2.2


@dataclass
class TrainConfig:
    """Optimisation of the classifier (Frid-Adar et al. 2018 §4.1)."""

    learning_rate: float = 0.001  # §4.1
    momentum: float = 0.9  # our choice: the paper says "Nesterov momentum" without a value
    batch_size: int = 64  # §4.1
    epochs: int = 150  # §4.1
    seed: int = 0


@dataclass
class GANConfig:
    """DCGAN / ACGAN training (Frid-Adar et al. 2018 §3.2–3.3)."""

    latent_dim: int = 100  # §3.2: z ∈ U[−1, 1]^100
    width: float = 1.0  # filter multiplier; 1.0 = the paper's 1024/512/256/128 and 64..512
    learning_rate: float = 0.0002  # §3.2: Adam 2e-4
    beta_1: float = 0.5  # §3.2
    beta_2: float = 0.999  # §3.2
    batch_size: int = 64  # §3.2: mini-batches of m = 64
    epochs: int = 70  # §3.2
    # Beyond the paper: DiffAugment (Zhao et al. 2020) policies applied to both
    # discriminator inputs, comma-separated from "translation", "cutout",
    # "color"; empty = off (the paper).
    diff_augment: str = ""
    seed: int = 0


@dataclass
class SynthConfig:
    """Synthetic augmentation groups D_synth (Frid-Adar et al. 2018 §4.2.2)."""

    # §4.2.2: {100, 500, 1000, 2000, 3000, 4000} synthetic lesions per class.
    per_class_sizes: list[int] = field(
        default_factory=lambda: [100, 500, 1000, 2000, 3000, 4000])
    # D_aug group the GANs and the classifier start from (1-based, as D_aug^i);
    # 0 = read D_aug^optimal from the classic curve's report.
    base_group: int = 0
    # Also run the ACGAN rows of Table 5 (§4.3) and the "more real data" line
    # (§4.2.2, Fig. 8 green; phantom datasets only: the preset's extra pool).
    acgan: bool = True
    more_real_data: bool = True
    # Beyond the paper: also train the DCGANs with the other DiffAugment setting
    # (on with "translation,cutout,color" when gan.diff_augment is off, and off
    # when it is on) and report whether DiffAugment helps.
    compare_diff_augment: bool = False
    seed: int = 0


@dataclass
class EvaluateConfig:
    """Cross-validation protocol (Frid-Adar et al. 2018 §4.1)."""

    folds: list[int] = field(default_factory=lambda: [0, 1, 2])
    seeds: list[int] = field(default_factory=lambda: [0])  # repeat for confidence intervals
    # D_aug^optimal: the smallest group whose mean accuracy is within this much
    # of the best group's ("saturation", §4.2.1). Our choice: one point.
    saturation_tolerance: float = 0.01


@dataclass
class DisentangleConfig:
    """Two-step disentanglement and its classifier (Ben-Cohen et al. 2019 §2, §3.2)."""

    input_size: int = 128  # §3.1: ROIs resized to 128×128
    width: float = 1.0  # conv filter multiplier; 1.0 = Table 1 (64/256/1024)
    code_size: int = 256  # Table 1: Dense 256 closes each encoder
    classifier_units: int = 256  # Table 1: Dense 256, BatchNorm, Dense 256, BatchNorm
    dropout: float = 0.5  # Table 1: the decoder's Dropout 0.5
    repeats: int = 10  # §3.2: every case shown 10 times per epoch, online augmented
    validation_fraction: float = 0.3  # §3.2: 30% of each training set for validation
    batch_size: int = 32  # our choice: the paper gives none
    # Step 1 (and the classifiers of the mixture experiment): E_C + classifier,
    # cross-entropy. Adam and the epoch counts are our choice (not in the paper).
    classifier_epochs: int = 40
    classifier_learning_rate: float = 0.001
    # Step 2: E_R and G_R against the adversary, E_C frozen.
    epochs: int = 60
    learning_rate: float = 0.0005
    rec_weight: float = 1.0  # weight of L_rec (mean squared error per pixel)
    adv_weight: float = -0.1  # λ of eq. (2); must be negative (§2.1)
    adversary_steps: int = 1  # adversary updates per E_R/G_R update
    seed: int = 0


@dataclass
class MixtureConfig:
    """Mixture of specified factors (Ben-Cohen et al. 2019 §2.2)."""

    # "random": proportions drawn uniformly on the simplex (Dirichlet(1, ..., 1));
    # a number a in (0, 1]: the image keeps share a of its own c, the nearest
    # c of each other class gets (1 − a)/(classes − 1).
    alpha: float | str = "random"
    per_image: int = 1  # mixed images made per training image
    seed: int = 0


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

    def validate(self, where: str = "<config>") -> None:
        """Range checks the types alone cannot express."""
        checks = [
            (self.augment.n_rot >= 1, "augment.n_rot must be at least 1"),
            (min(self.augment.n_flip, self.augment.n_trans, self.augment.n_scale) >= 0,
             "augment.n_flip, n_trans and n_scale must be ≥ 0"),
            (self.augment.n_flip <= 3, "augment.n_flip is at most 3 (up-down, left-right, both)"),
            (len(self.augment.group_sizes) >= 1, "augment.group_sizes must not be empty"),
            (all(b >= a >= 0 for a, b in zip(self.augment.group_sizes,
                                             self.augment.group_sizes[1:]))
             and min(self.augment.group_sizes) >= 0,
             "augment.group_sizes must be non-negative and increasing (nested groups)"),
            (self.classifier.input_size >= 16 and self.classifier.input_size % 8 == 0,
             "classifier.input_size must be a multiple of 8, at least 16 (three 2× poolings)"),
            (len(self.classifier.filters) == 3 and min(self.classifier.filters) >= 1,
             "classifier.filters must list 3 positive filter counts"),
            (self.classifier.kernel_size >= 1, "classifier.kernel_size must be ≥ 1"),
            (self.classifier.dense_units >= 1, "classifier.dense_units must be ≥ 1"),
            (0.0 <= self.classifier.dropout < 1.0, "classifier.dropout must lie in [0, 1)"),
            (self.train.learning_rate > 0, "train.learning_rate must be > 0"),
            (0.0 <= self.train.momentum < 1.0, "train.momentum must lie in [0, 1)"),
            (self.train.batch_size >= 1, "train.batch_size must be ≥ 1"),
            (self.train.epochs >= 1, "train.epochs must be ≥ 1"),
            (len(self.evaluate.folds) >= 1 and min(self.evaluate.folds) >= 0,
             "evaluate.folds must list fold indices ≥ 0"),
            (len(self.evaluate.seeds) >= 1, "evaluate.seeds must not be empty"),
            (0.0 <= self.evaluate.saturation_tolerance < 1.0,
             "evaluate.saturation_tolerance must lie in [0, 1)"),
            (0.0 <= self.data.phantom_difficulty <= 1.0,
             "data.phantom_difficulty must lie in [0, 1]"),
            (not self.data.dataset.startswith("phantoms:")
             or self.data.dataset[len("phantoms:"):] in PRESETS,
             f"data.dataset names an unknown phantom preset: {self.data.dataset!r} "
             f"(known: {', '.join('phantoms:' + p for p in PRESETS)})"),
            (bool(self.name.strip()) and "/" not in self.name,
             "name must be a non-empty folder name"),
            (self.disentangle.input_size >= 8 and self.disentangle.input_size % 8 == 0,
             "disentangle.input_size must be a positive multiple of 8 (three stride-2 convs)"),
            (0.0 < self.disentangle.width <= 4.0, "disentangle.width must lie in (0, 4]"),
            (min(self.disentangle.code_size, self.disentangle.classifier_units) >= 1,
             "disentangle.code_size and classifier_units must be ≥ 1"),
            (0.0 <= self.disentangle.dropout < 1.0, "disentangle.dropout must lie in [0, 1)"),
            (self.disentangle.repeats >= 1, "disentangle.repeats must be ≥ 1"),
            (0.0 < self.disentangle.validation_fraction < 1.0,
             "disentangle.validation_fraction must lie in (0, 1)"),
            (self.disentangle.batch_size >= 2,
             "disentangle.batch_size must be ≥ 2 (batch norm needs a batch)"),
            (min(self.disentangle.classifier_epochs, self.disentangle.epochs) >= 1,
             "disentangle.classifier_epochs and epochs must be ≥ 1"),
            (min(self.disentangle.classifier_learning_rate,
                 self.disentangle.learning_rate) > 0,
             "disentangle learning rates must be > 0"),
            (self.disentangle.rec_weight > 0, "disentangle.rec_weight must be > 0"),
            (self.disentangle.adv_weight < 0,
             "disentangle.adv_weight (λ of eq. 2) must be negative (§2.1)"),
            (self.disentangle.adversary_steps >= 1, "disentangle.adversary_steps must be ≥ 1"),
            (_alpha_ok(self.mixture.alpha),
             f"mixture.alpha must be 'random' or a number in (0, 1], got {self.mixture.alpha!r}"),
            (self.mixture.per_image >= 1, "mixture.per_image must be ≥ 1"),
            (_diff_augment_ok(self.gan.diff_augment),
             f"gan.diff_augment must list transforms from {', '.join(DIFF_AUGMENT_POLICIES)} "
             f"(comma-separated, each once; empty = off), got {self.gan.diff_augment!r}"),
            (self.gan.batch_size >= 1 and self.gan.epochs >= 1 and self.gan.latent_dim >= 1,
             "gan.batch_size, gan.epochs and gan.latent_dim must be ≥ 1"),
            (0.0 < self.gan.width <= 4.0, "gan.width must lie in (0, 4]"),
            (len(self.synth.per_class_sizes) >= 1 and min(self.synth.per_class_sizes) >= 1,
             "synth.per_class_sizes must list positive sizes"),
            (0 <= self.synth.base_group <= len(self.augment.group_sizes),
             "synth.base_group must be 0 (D_aug optimal) or a group "
             f"1..{len(self.augment.group_sizes)}"),
            (len(set(self.evaluate.folds)) == len(self.evaluate.folds)
             and len(set(self.evaluate.seeds)) == len(self.evaluate.seeds),
             "evaluate.folds and evaluate.seeds must not repeat a value"),
            (self.kind in EXPERIMENT_KINDS,
             f"kind must be one of {', '.join(EXPERIMENT_KINDS)}, got {self.kind!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message, where)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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
    from importlib import resources

    try:
        folder = Path(str(resources.files("keras_lesions.configs")))
        if folder.is_dir():
            return folder
    except (ModuleNotFoundError, TypeError):
        pass
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
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, where, f"{prefix}{name}")
    return cls(**values)


def _coerce(hint, value, where: str, key: str):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where, prefix=f"{key}.")
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {type(value).__name__}", where)
        return [_coerce(item_hint, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        # A number or a word (mixture.alpha: 0.6 or "random").
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a number or a string, got {value!r}", where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}", where)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}", where)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}", where)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}", where)
        return value
    raise ConfigError(f"{key}: unsupported setting type {hint}", where)  # pragma: no cover
