"""An experiment as a plan: run specifications with ids, inputs and dependencies.

Each experiment kind turns its config into a :class:`Plan`: a list of
:class:`RunSpec` (one training, one synthetic set, one choice, the report),
each with a stable, readable id (``fold1/gan/dcgan-cyst/base-D_aug6/seed0``),
the step that runs it, its inputs, the ids it depends on and what it needs
(CPU threads, a fraction of a GPU). Executors (``experiments.executors``)
run plans; a run is done when its output exists, so an interrupted
experiment resumes from its finished runs.

Some runs can only be planned once a choice is made (the GANs train on the
group the classic curve picks): until then the plan names them in ``later``,
and executors plan again after every run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from keras_lesions.errors import KerasLesionsError

DONE, PENDING, BLOCKED = "done", "pending", "blocked"


class PlanError(KerasLesionsError):
    """A plan that cannot be run as asked (unknown id, dependencies not done)."""


@dataclass(frozen=True)
class Resources:
    """What one run needs while it runs.

    Attributes:
        cpus: CPU threads (TensorFlow's intra-op threads in its process).
        gpus: a share of one GPU (0.25: four such runs share a GPU); ignored
            where there is no GPU.
    """

    cpus: int = 1
    gpus: float = 0.0


@dataclass(frozen=True)
class RunSpec:
    """One run of an experiment.

    Attributes:
        id: stable and readable; also where its outputs go (see ``output``).
        step: the name of the step function of its experiment kind.
        params: the run's inputs (JSON-able): fold, seed, group, class ...
        depends_on: ids of the runs whose outputs it reads.
        needs: resources while it runs.
        output: path, relative to the experiment folder, whose existence
            means the run is done (a run's ``done.json``, a dataset file).
        title: one line for people.
        light: seconds of numpy on finished runs' outputs (a choice, the
            report): executors run it in their own process rather than
            starting a worker (and a TensorFlow) for it.
    """

    id: str
    step: str
    params: dict = field(default_factory=dict, compare=False, hash=False)
    depends_on: tuple[str, ...] = ()
    needs: Resources = Resources()
    output: str = ""
    title: str = ""
    light: bool = False

    def is_done(self, root: Path) -> bool:
        return (Path(root) / self.output).exists()


@dataclass
class Plan:
    """The runs of an experiment in dependency order, and the stages that can
    only be planned once earlier runs are done.

    Attributes:
        specs: the runs known now; every dependency is among them.
        later: one sentence per stage not planned yet, naming what it waits for.
    """

    specs: list[RunSpec]
    later: list[str] = field(default_factory=list)

    def __post_init__(self):
        ids = [s.id for s in self.specs]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"plan lists run {duplicates[0]!r} twice")
        known = set(ids)
        for spec in self.specs:
            missing = [d for d in spec.depends_on if d not in known]
            if missing:
                raise ValueError(f"run {spec.id!r} depends on {missing[0]!r}, not in the plan")
        self.specs = _dependency_order(self.specs)

    def __iter__(self):
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def get(self, run_id: str) -> RunSpec:
        """The run with that id.

        Raises:
            PlanError: no such run, naming a few that exist.
        """
        for spec in self.specs:
            if spec.id == run_id:
                return spec
        close = [s.id for s in self.specs if s.id.split("/")[0] == run_id.split("/")[0]][:3]
        hint = f" (ids look like {', '.join(close or [s.id for s in self.specs[:3]])})"
        raise PlanError(f"the plan has no run {run_id!r}{hint}; `kl experiment CONFIG --list` "
                        "lists them")

    def states(self, root: Path) -> dict[str, str]:
        done = {s.id for s in self.specs if s.is_done(root)}
        return {s.id: DONE if s.id in done else
                PENDING if all(d in done for d in s.depends_on) else BLOCKED
                for s in self.specs}

    def with_dependencies(self, run_ids: Iterable[str]) -> list[RunSpec]:
        """The given runs and every run they need, transitively, in order."""
        wanted: set[str] = set()
        stack = [self.get(i).id for i in run_ids]
        while stack:
            run_id = stack.pop()
            if run_id not in wanted:
                wanted.add(run_id)
                stack.extend(self.get(run_id).depends_on)
        return [s for s in self.specs if s.id in wanted]

    def describe(self, root: Path, running: dict[str, str] | None = None) -> str:
        """The plan as a table: state, id, what it waits for.

        Args:
            root: the experiment folder.
            running: run id -> where it runs ("process 123 on host"), shown
                in place of its state.
        """
        states = self.states(root)
        running = running or {}
        width = max((len(s.id) for s in self.specs), default=10)
        lines = [f"{'state':<8} {'run':<{width}}  needs / waits for"]
        for spec in self.specs:
            state = states[spec.id]
            waiting = [d for d in spec.depends_on if states[d] != DONE]
            need = f"{spec.needs.cpus} cpu" + (f", {spec.needs.gpus:g} gpu"
                                                if spec.needs.gpus else "")
            tail = f"waits for {', '.join(waiting[:3])}" + (
                f" and {len(waiting) - 3} more" if len(waiting) > 3 else "") if waiting else need
            if spec.id in running and state != DONE:
                state, tail = "running", running[spec.id]
            lines.append(f"{state:<8} {spec.id:<{width}}  {tail}")
        counts = {k: list(states.values()).count(k) for k in (DONE, PENDING, BLOCKED)}
        lines.append(f"\n{len(self.specs)} runs: {counts[DONE]} done, {counts[PENDING]} pending, "
                     f"{counts[BLOCKED]} blocked")
        lines += [f"later: {sentence}" for sentence in self.later]
        return "\n".join(lines)


def _dependency_order(specs: list[RunSpec]) -> list[RunSpec]:
    """A stable topological order: each run after the runs it depends on.

    Raises:
        ValueError: a dependency cycle.
    """
    by_id = {s.id: s for s in specs}
    ordered: list[RunSpec] = []
    state: dict[str, int] = {}

    def visit(spec: RunSpec, path: tuple[str, ...]):
        if state.get(spec.id) == 2:
            return
        if state.get(spec.id) == 1:
            raise ValueError("plan has a dependency cycle: " + " -> ".join(path + (spec.id,)))
        state[spec.id] = 1
        for dep in spec.depends_on:
            visit(by_id[dep], path + (spec.id,))
        state[spec.id] = 2
        ordered.append(spec)

    for spec in specs:
        visit(spec, ())
    return ordered
