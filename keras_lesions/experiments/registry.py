"""The one registry of experiment kinds, used by the CLI and the demo."""
from __future__ import annotations

from keras_lesions.config import EXPERIMENT_KINDS, ConfigError, ExperimentConfig
from keras_lesions.experiments import classic_curve, gan_curve, mixture
from keras_lesions.experiments.context import Experiment, Log, open_experiment
from keras_lesions.experiments.kind import ExperimentKind

KINDS: dict[str, ExperimentKind] = {k.name: k for k in (classic_curve.KIND, gan_curve.KIND,
                                                         mixture.KIND)}
assert tuple(KINDS) == EXPERIMENT_KINDS, "config.EXPERIMENT_KINDS and the registry disagree"


def kind_of(config: ExperimentConfig) -> ExperimentKind:
    """The kind a config asks for.

    Raises:
        ConfigError: an unknown kind (configs are validated on load, so only a
            config built by hand gets here).
    """
    try:
        return KINDS[config.kind]
    except KeyError:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {config.kind!r}") \
            from None


def open_for(config: ExperimentConfig, log: Log = print, *, create: bool = True,
             record: bool = True) -> Experiment:
    """Open the experiment folder of ``config`` for its kind (see ``context.open_experiment``)."""
    return open_experiment(config, kind_of(config).sections, log, create=create, record=record)


def epoch_overrides(config: ExperimentConfig, epochs: int) -> dict[str, int]:
    """The settings ``--epochs N`` sets for a config's kind (smoke runs)."""
    return {key: epochs for key in kind_of(config).epoch_settings}
