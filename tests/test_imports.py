"""The library's import graph: no cycles, dependencies flowing one way.

Every ``import`` statement counts, the ones inside functions too: a
function-local import only hides a cycle from Python, not from a reader.
Imports under ``if TYPE_CHECKING:`` are left out (they never run).
"""
from __future__ import annotations

import ast
from pathlib import Path

import keras_lesions

PACKAGE_DIR = Path(keras_lesions.__file__).parent
PACKAGE = "keras_lesions"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    found: set[str] = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.orelse:
                    visit(stmt)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".")
                    base = base[:len(base) - child.level + (1 if is_package else 0)]
                    prefix = ".".join(base + ([child.module] if child.module else []))
                else:
                    prefix = child.module or ""
                found.add(prefix)
                # "from package import module" imports the module too
                found.update(f"{prefix}.{alias.name}" for alias in child.names)
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """{module: the keras_lesions modules it imports}, over every module of the package."""
    paths = sorted(PACKAGE_DIR.rglob("*.py"))
    modules = {_module_name(p): p for p in paths}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = _imports(tree, name, path.name == "__init__.py")
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of nodes, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _unit(module: str) -> str:
    """The package-level unit: keras_lesions.<subpackage or top-level module>."""
    parts = module.split(".")
    return ".".join(parts[:2])


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph between the top-level parts of the package (data, augment,
    train, ..., config, losses); a package's own __init__ re-exports don't count."""
    units: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = _unit(module)
        units.setdefault(source, set())
        for target in targets:
            if _unit(target) != source and target != PACKAGE:
                units[source].add(_unit(target))
    return units


def test_the_graph_is_read():
    graph = import_graph()
    # a module known to import another: the graph is not trivially empty
    assert "keras_lesions.io" in graph["keras_lesions.data.dataset"]
    # imports inside functions count too
    assert "keras_lesions.data.builtin" in graph["keras_lesions.experiments.context"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_import_cycle():
    cycle = _cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_cycle_between_the_parts_of_the_package():
    cycle = _cycle(package_graph(import_graph()))
    assert cycle is None, "the parts of the package import each other: " + " -> ".join(cycle)


def test_data_layer_imports_no_other_part():
    """data/ returns numpy and knows nothing of augmentation, models or GANs."""
    graph = package_graph(import_graph())
    assert graph["keras_lesions.data"] <= {"keras_lesions.errors", "keras_lesions.io"}


def test_nothing_imports_a_trainer_for_run_folder_rules():
    """Run-folder rules live in keras_lesions.runs; only code that trains or
    loads a trained network imports a trainer module."""
    graph = import_graph()
    trainers = {m for m in graph if m.startswith("keras_lesions.train.")}
    importers_of_trainers = {m for m, targets in graph.items() if targets & trainers
                             and not m.startswith("keras_lesions.train")}
    # the experiment steps train; synth, export, predict and tsne (Fig. 9's
    # features) load trained networks
    allowed_parts = ("keras_lesions.experiments", "keras_lesions.export", "keras_lesions.synth",
                     "keras_lesions.predict", "keras_lesions.tsne")
    assert importers_of_trainers, "the graph lost the experiments' imports of trainers"
    assert all(m.startswith(allowed_parts) for m in importers_of_trainers), \
        sorted(importers_of_trainers)
    runs = {m for m in graph if m.startswith("keras_lesions.runs")}
    assert runs and not any(graph[m] & trainers for m in runs)


def test_the_cli_and_planning_import_no_tensorflow():
    """Loading the command line, configs and plans costs no TensorFlow start-up
    (about 7 s and 0.7 GB): a bad config or option is refused at once, and an
    executor's driver leaves the GPU to its workers."""
    import subprocess
    import sys

    code = ("import sys\n"
            "import keras_lesions_cli.main, keras_lesions.experiments.manual\n"
            "import keras_lesions.experiments.run, keras_lesions.experiments.executors\n"
            "from keras_lesions.config import load_config\n"
            "load_config(None)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
