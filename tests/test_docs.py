"""The documentation holds together: every relative link in README.md and docs/*.md reaches an existing file (and
heading, where it names one), and README.md stays a short front door that opens with the two set-up commands, links
every docs page and draws a workflow diagram naming every Snakemake rule. No snakemake run: the rules are read from
the workflow's text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
MAX_README_LINES = 170
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")
RULE = re.compile(r"^rule (\w+):", re.MULTILINE)
DERIVED_RULE = re.compile(r"^use rule \w+ as (\w+)", re.MULTILINE)  # `use rule train as train_lda with:`


def prose(text: str) -> str:
    """The text without fenced code blocks or inline code, where brackets and parentheses are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text()))


def anchors(page: Path) -> set[str]:
    """The heading anchors GitHub gives a page: lower case, punctuation but - and _ dropped, spaces as -."""
    found, seen = set(), {}
    for heading in re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)  # a repeated heading gets -1, -2, ...
        seen[slug] = seen.get(slug, 0) + 1
    return found


def broken_links(page: Path) -> list[str]:
    """The page's relative links whose file, or heading in a Markdown file, does not exist."""
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not a file of this repository
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no such heading in {resolved.relative_to(REPO)})")
    return broken


def rules() -> set[str]:
    """Every rule the workflow defines, from the Snakefile and workflow/rules/*.smk."""
    texts = [path.read_text() for path in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]]
    return {name for text in texts for pattern in (RULE, DERIVED_RULE) for name in pattern.findall(text)}


def section(text: str, heading: str) -> str:
    """The text of a '## ' section, up to the next one."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"README.md has no '## {heading}' section"
    return match.group(1)


def test_the_docs_folder_exists_and_readme_links_every_page():
    assert len(PAGES) > 1, "docs/*.md: no pages"
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links(README)}
    assert [page.name for page in PAGES[1:] if page.resolve() not in linked] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_reaches_an_existing_file(page):
    assert broken_links(page) == []


def test_readme_is_short_and_opens_with_the_two_set_up_commands():
    text = README.read_text()
    lines = len(text.splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines: move the detail into docs/"
    first_block = FENCE.search(text)
    assert first_block and first_block.start() < text.index("\n## "), "README.md must open with a code block"
    commands = [line.split("#")[0].strip() for line in first_block.group(0).splitlines()[1:-1]]
    assert [command for command in commands if command] == ["make run", "make test"]


def test_readme_diagram_names_every_rule():
    found = rules()
    assert {"all", "convert", "train", "train_lda", "evaluate", "figures"} <= found, found  # the parse sees rules
    diagram = FENCE.search(section(README.read_text(), "What runs"))
    assert diagram, "README.md's 'What runs' section has no diagram"
    named = set(re.findall(r"\w+", diagram.group(0)))
    assert sorted(found - named) == []


PACKAGE = REPO / "src" / "contrastive_prosthetics"
STAGES = {folder.name for folder in PACKAGE.iterdir() if (folder / "__init__.py").exists()}
MODULE_PATH = re.compile(r"\b([a-z_]+)/([a-z_]+)\.py\b")  # `learning/lda.py`
DOCSTRING_REFERENCE = re.compile(r":(?:mod|func|class|meth|attr|data):`~?(\.+)([\w.]+)`")  # :mod:`..learning.lda`


def referenced_module(path: Path, dots: str, name: str) -> tuple[Path | None, list[str]]:
    """The module file a relative reference in ``path`` names (the longest prefix that is one) and the names after
    it; None when no prefix is a module."""
    base = path.parent
    for _ in range(len(dots) - 1):
        base = base.parent
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        target = base.joinpath(*parts[:cut])
        for module in (target.with_suffix(".py"), target / "__init__.py"):
            if module.exists():
                return module, parts[cut:]
    return None, parts


def test_every_module_the_docs_name_exists():
    """`stage/module.py` in README.md and docs/*.md names a module of the package: a renamed module leaves no line
    naming the old one."""
    stale = [
        f"{page.relative_to(REPO)}: {stage}/{module}.py"
        for page in PAGES
        for stage, module in MODULE_PATH.findall(page.read_text())
        if stage in STAGES and not (PACKAGE / stage / f"{module}.py").exists()
    ]
    assert stale == []


def test_every_module_and_name_a_docstring_points_to_exists():
    """Relative references in the package's docstrings (:mod:`..learning.lda`, :func:`.subsets.draw_subsets`) name
    a module that exists and, after it, a name that module defines or imports."""
    stale = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for dots, name in DOCSTRING_REFERENCE.findall(path.read_text()):
            module, names = referenced_module(path, dots, name)
            text = module.read_text() if module else ""
            defined = all(
                re.search(rf"^\s*(def|class) {part}\b|^\s*{part}\s*[:=]|^from .* import .*\b{part}\b", text, re.M)
                for part in names
            )
            if module is None or not defined:
                stale.append(f"{path.relative_to(REPO)}: {dots}{name}")
    assert stale == []
