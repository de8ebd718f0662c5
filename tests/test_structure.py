"""The package's shape: a folder per pipeline stage, imports that only point down the stages, an acyclic import
graph, no oversized module or function, a public API at the package root, and a workflow that parses without
torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "src" / "contrastive_prosthetics"
# The stages, lowest first: a module may import only from its own stage or lower ones. "top" is the package root's
# cli.py, config.py and __main__.py; the root __init__.py (the version, and the public API loaded on first use) is a
# foundation every stage may import. README's code map draws the same layers.
STAGES = ["core", "data", "learning", "evaluation", "report", "realtime", "top"]
MAX_LINES = 450
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    """'data.convert' for src/contrastive_prosthetics/data/convert.py; 'cli' for the root's cli.py."""
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def stage_of(module: str) -> int:
    if module == "__init__":
        return 0
    folder = module.split(".")[0] if "." in module else "top"
    return STAGES.index(folder)


def modules() -> list[str]:
    return [*sorted(module_name(path) for path in PACKAGE.rglob("*.py") if path.name != "__init__.py"), "__init__"]


def path_of(module: str) -> Path:
    return PACKAGE / "__init__.py" if module == "__init__" else PACKAGE / (module.replace(".", "/") + ".py")


def type_checking_blocks(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks: imports for annotations only, never run."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            inside.update(id(child) for statement in node.body for child in ast.walk(statement))
    return inside


def resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """The package modules an ``from ... import ...`` names, as dotted paths inside the package."""
    if node.level:
        base = module.split(".")[:-1] if module != "__init__" else []
        base = base[: len(base) - (node.level - 1)]
    elif node.module and node.module.split(".")[0] == "contrastive_prosthetics":
        base = []
    else:
        return []
    dotted = [*base, *(node.module.split(".") if node.module else [])]
    if dotted[:1] == ["contrastive_prosthetics"]:
        dotted = dotted[1:]
    known = set(modules())
    found = []
    for alias in node.names:  # `from .learning import train` names a module; `from .x import name` a name in x
        candidate = ".".join([*dotted, alias.name])
        if candidate in known:
            found.append(candidate)
        elif dotted:
            found.append(".".join(dotted) if ".".join(dotted) in known else ".".join(dotted) + ".__init__")
        else:
            found.append("__init__")
    return found


def package_imports(module: str) -> set[str]:
    """Modules of the package that ``module`` imports at run time, at any depth of its code (lazy imports count;
    a subpackage's own __init__ counts as its stage's)."""
    tree = ast.parse(path_of(module).read_text())
    annotations_only = type_checking_blocks(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in annotations_only:
            continue
        if isinstance(node, ast.ImportFrom):
            found.update(resolve(module, node))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "contrastive_prosthetics" and len(parts) > 1:
                    found.add(".".join(parts[1:]))
    return {name.removesuffix(".__init__") for name in found} - {module}


def test_every_folder_is_a_stage_and_every_stage_a_folder():
    folders = {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert folders == set(STAGES) - {"top"}
    assert all((PACKAGE / folder / "__init__.py").exists() for folder in folders)
    root = {path.stem for path in PACKAGE.glob("*.py")}
    assert root == {"__init__", "__main__", "cli", "config"}, "a module at the root belongs in its stage's folder"


def test_imports_point_to_the_same_or_a_lower_stage():
    upward = [
        f"{module} ({STAGES[stage_of(module)]}) imports {imported} ({STAGES[stage_of(imported)]})"
        for module in modules()
        for imported in package_imports(module)
        if imported in modules() and stage_of(imported) > stage_of(module)
    ]
    assert not upward, upward


def test_the_real_time_stage_imports_nothing_of_the_report():
    """A controller on a device needs no plotting: realtime sits above report in the stage order, yet never imports
    it (the replay command draws its figure from cli.py)."""
    found = [
        f"{module} imports {imported}"
        for module in modules()
        if module.startswith("realtime.")
        for imported in package_imports(module)
        if imported.split(".")[0] == "report"
    ]
    assert not found, found


def test_import_graph_has_no_cycle():
    graph = {module: package_imports(module) & set(modules()) for module in modules()}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph[module]):
            assert state.get(imported) != "open", " -> ".join([*path, module, imported])
            if imported not in state:
                visit(imported, [*path, module])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [])


def test_the_checks_see_imports_across_stages():
    """The graph the two tests above walk is real: a known downward import is found, and an upward one would be."""
    assert "core.errors" in package_imports("data.convert") and "learning.dataset" in package_imports(
        "evaluation.stream"
    )
    assert stage_of("evaluation.stream") > stage_of("learning.dataset") > stage_of("data.convert")
    tree = ast.parse("from ..realtime.controller import Controller")
    assert resolve("data.convert", tree.body[0]) == ["realtime.controller"]


def test_no_module_is_oversized():
    sizes = {module: len(path_of(module).read_text().splitlines()) for module in modules()}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


def test_no_function_is_oversized():
    long = {}
    for module in modules():
        for node in ast.walk(ast.parse(path_of(module).read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{module}.{node.name}"] = length
    assert long == {}


@pytest.mark.parametrize("name", ["DB23", "ContrastiveSampler", "ContrastiveModel", "Controller", "FrameScorer"])
def test_the_public_api_is_importable_from_the_package_root(name):
    import contrastive_prosthetics

    value = getattr(contrastive_prosthetics, name)
    assert value.__name__ == name and name in dir(contrastive_prosthetics)
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        contrastive_prosthetics.Nothing  # noqa: B018


def test_parsing_the_workflow_does_not_import_torch():
    """common.smk imports these while Snakemake parses the workflow: a dry run must not pay for torch; nor does
    importing the package root."""
    probe = (
        "import sys\n"
        "import contrastive_prosthetics, contrastive_prosthetics.config\n"
        "import contrastive_prosthetics.evaluation.artefacts, contrastive_prosthetics.evaluation.summary\n"
        "import contrastive_prosthetics.data.download, contrastive_prosthetics.data.ninapro\n"
        "import contrastive_prosthetics.data.sources, contrastive_prosthetics.learning.folds\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=Path(REPO))
    assert result.returncode == 0, result.stderr
