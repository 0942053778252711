"""What an experiment kind is: a plan builder, the step functions that run its
runs, and its report."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from keras_lesions.experiments.context import Experiment, Log, Progress
from keras_lesions.experiments.plan import Plan, RunSpec


def _quiet(message: str) -> None:
    """A log that drops its lines."""


@dataclass
class StepContext:
    """How a step reports while it runs.

    Attributes:
        log: one line per step, for people.
        progress: ``progress(label, done, total)`` for bars, or None.
        verbose: Keras ``fit`` verbosity.
        resume: continue an interrupted training (experiments always do;
            ``kl train-gan`` without ``--resume`` refuses a started run).
    """

    log: Log = _quiet
    progress: Progress | None = None
    verbose: int | str = 0
    resume: bool = True

    def bar(self, label: str):
        """A ``(done, total)`` progress callback under ``label``, or None."""
        if self.progress is None:
            return None
        return lambda done, total: self.progress(label, done, total)


Step = Callable[[Experiment, RunSpec, StepContext], None]


@dataclass(frozen=True)
class ExperimentKind:
    """One kind of experiment (``kind:`` in a config).

    Attributes:
        name: the config's ``kind``.
        description: one sentence, heading ``kl experiment --list``.
        sections: the config sections it reads (its fingerprint); "section.key"
            adds one setting of a section it does not read whole.
        plan: ``plan(experiment) -> Plan``.
        steps: step name -> function running one run of that step.
        epoch_settings: what ``kl experiment --epochs N`` overrides.
        summary: ``summary(result) -> str``, the report for a terminal.
    """

    name: str
    description: str
    sections: tuple[str, ...]
    plan: Callable[[Experiment], Plan]
    steps: Mapping[str, Step] = field(default_factory=dict)
    epoch_settings: tuple[str, ...] = ()
    summary: Callable[[dict], str] = lambda result: ""
