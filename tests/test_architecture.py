"""The flow the code keeps: (runtime settings ->) data -> models -> train -> inference ->
evaluation -> main job -> launch. No module imports one of a later stage (lazy imports inside
functions included), nothing below the launchers defines an absl flag or registers the TFDS
builders, and there is no import cycle between modules."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STAGES = (
    ("runtime", ("psm_jax.xla_defaults", "psm_jax.disk", "psm_jax.cli")),
    ("data", ("psm_jax.data",)),
    (
        "models",
        (
            "psm_jax.models",
            "psm_jax.losses",
            "psm_jax.metrics",
            "psm_jax.metrics_reference",
            "psm_jax.figures",
            "psm_jax.registry",
        ),
    ),
    ("configs", ("psm_jax.configs",)),
    ("train", ("psm_jax.train",)),
    ("inference", ("psm_jax.inference",)),
    ("evaluation", ("psm_jax.evaluation", "psm_jax.personalise", "psm_jax.analysis")),
    ("main job", ("psm_jax.main_job",)),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of the file (functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _stage(module: str) -> int | None:
    for index, (_, prefixes) in enumerate(STAGES):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return None


def _library_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in (ROOT / "psm_jax").rglob("*.py")}


def test_every_library_module_has_a_stage():
    unplaced = [m for m in _library_modules() if m != "psm_jax" and _stage(m) is None]
    assert unplaced == []


def test_no_import_runs_back_up_the_flow():
    backwards = []
    for module, path in _library_modules().items():
        own = _stage(module)
        for imported in _imports(path):
            if imported.split(".")[0] in ("tfds_builders", "launch"):
                backwards.append(f"{module} imports {imported}")
            other = _stage(imported)
            if own is not None and other is not None and other > own:
                backwards.append(f"{module} ({STAGES[own][0]}) imports {imported}")
    assert backwards == []


def test_no_import_cycle_between_modules():
    modules = _library_modules()
    graph = {
        module: {
            name
            for imported in _imports(path)
            for name in (imported, imported.rsplit(".", 1)[0])
            if name in modules and name != module
        }
        for module, path in modules.items()
    }
    # A package's __init__ may import its own submodules; a cycle through it is one only if a
    # submodule imports the package back, which the graph then shows.
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for successor in graph[node]:
            if state.get(successor) == 1:
                cycles.append(trail[trail.index(successor) :] + [successor])
            elif successor not in state:
                visit(successor, trail + [successor])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
    package_inits = {m for m, p in modules.items() if p.name == "__init__.py"}
    real = [c for c in cycles if not (set(c[:-1]) & package_inits and len(set(c)) == 2)]
    assert real == []


def test_absl_flags_are_defined_in_the_launchers_only():
    defining = [
        str(path.relative_to(ROOT))
        for folder in ("psm_jax", "tfds_builders")
        for path in (ROOT / folder).rglob("*.py")
        if "DEFINE_" in path.read_text()
    ]
    assert defining == []
