"""The package's shape: an acyclic import graph that only points down the pipeline's stages, no oversized module,
and a workflow that parses without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "src" / "contrastive_prosthetics"
# The pipeline's stages, lowest first; a module may import only from its own stage or lower ones. README's "Code
# map" draws the same graph.
STAGES = [
    {"__init__", "errors", "artefacts", "atomic", "ninapro", "bootstrap"},
    {
        "config",
        "folds",
        "matfile",
        "matmap",
        "sources",
        "archives",
        "download",
        "synthetic",
        "synthetic_signals",
        "preprocess",
        "channel_frames",
    },
    {"segments", "convert"},
    {"dataset", "sampling", "logits", "tables", "poses"},
    {"models", "adaptation", "train", "baseline"},
    {"realtime", "voting", "subsets", "exact", "evaluate", "summary", "stream_metrics", "stream", "zero_shot"},
    {"plotting", "training_figures", "comparison_figures", "stream_figures", "figures", "replay", "export"},
    {"cli", "__main__"},
]
STAGE_OF = {module: stage for stage, modules in enumerate(STAGES) for module in modules}
MAX_LINES = 450


def type_checking_blocks(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks: imports for annotations only, never run."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            inside.update(id(child) for statement in node.body for child in ast.walk(statement))
    return inside


def package_imports(module: str) -> set[str]:
    """Modules of the package that ``module`` imports at run time, at any depth of its code (lazy imports count)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    annotations_only = type_checking_blocks(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in annotations_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # "from . import __version__" imports the package's __init__
                found.update([node.module] if node.module else ["__init__"])
            elif node.module and node.module.startswith("contrastive_prosthetics"):
                rest = node.module.removeprefix("contrastive_prosthetics").lstrip(".")
                found.update([rest] if rest else [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("contrastive_prosthetics."):
                    found.add(alias.name.split(".")[1])
    return {name.split(".")[0] for name in found} - {module}


def modules() -> list[str]:
    return sorted(path.stem for path in PACKAGE.glob("*.py"))


def test_every_module_has_a_stage():
    assert set(modules()) == set(STAGE_OF)


def test_imports_point_to_the_same_or_a_lower_stage():
    upward = [
        f"{module} (stage {STAGE_OF[module]}) imports {imported} (stage {STAGE_OF[imported]})"
        for module in modules()
        for imported in package_imports(module)
        if STAGE_OF[imported] > STAGE_OF[module]
    ]
    assert not upward, upward


def test_import_graph_has_no_cycle():
    graph = {module: package_imports(module) for module in modules()}
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


def test_no_module_is_oversized():
    sizes = {module: len((PACKAGE / f"{module}.py").read_text().splitlines()) for module in modules()}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


def test_parsing_the_workflow_does_not_import_torch():
    """common.smk imports these while Snakemake parses the workflow: a dry run must not pay for torch."""
    probe = (
        "import sys\n"
        "import contrastive_prosthetics.artefacts, contrastive_prosthetics.config, contrastive_prosthetics.download\n"
        "import contrastive_prosthetics.folds, contrastive_prosthetics.ninapro, contrastive_prosthetics.sources\n"
        "import contrastive_prosthetics.summary\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=Path(REPO))
    assert result.returncode == 0, result.stderr
