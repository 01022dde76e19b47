"""The layout keeps its promises (docs/architecture.md): every module says what it holds in its
first line, and the core imports without the command line's or LiteLLM's libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("indexer", "victor", "webhook")


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_every_module_says_what_it_holds_in_its_first_line():
    missing = []
    for folder in PACKAGES:
        for path in modules(folder):
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
            if not doc or not doc.splitlines()[0].strip():
                missing.append(path.relative_to(ROOT).as_posix())
    assert not missing, f"modules without a docstring: {missing}"


def test_the_core_imports_without_click_rich_or_litellm():
    names = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in modules("indexer")
    ]
    # As if they were not installed: importing them fails (httpx tries click and rich for its
    # own command line, and does without them).
    code = (
        "import importlib, importlib.abc, sys\n"
        "class Absent(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('click', 'rich', 'litellm'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Absent())\n"
        "for name in sys.argv[1:]: importlib.import_module(name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *names], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr


def test_the_core_never_imports_the_adapters():
    offenders = []
    for path in modules("indexer"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
                "victor",
                "webhook",
                "pipelines",
            ):
                offenders.append(f"{path.relative_to(ROOT)}: from {node.module}")
    assert not offenders, offenders


def test_the_store_never_imports_search():
    """Search builds on the store, never the other way round (a shared helper, such as the
    permalink, lives in a neutral module: indexer.links)."""
    offenders = []
    for path in modules("indexer/store"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom):  # `from indexer import search` too
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if _is_search(n)]
    assert not offenders, offenders


def _is_search(module: str) -> bool:
    return module == "indexer.search" or module.startswith("indexer.search.")
