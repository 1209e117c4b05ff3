"""The layout's rules hold: the import contracts cover the whole core and pass, and the README's architecture
table names every folder of the core and of the Dagster layer."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import bodyscript_pipeline
from tests.support.repo import REPO

JOINS = {"definitions", "cli"}  # the only modules of bodyscript_pipeline that may import Dagster
LAYER = ("assets", "resources", "sensors")


def contracts() -> dict[str, dict]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def core_members() -> set[str]:
    return {m.name for m in pkgutil.iter_modules(bodyscript_pipeline.__path__) if m.name not in JOINS}


def test_the_core_contract_covers_every_module_but_the_joins() -> None:
    """A new core module or package is under the contract from its first commit: nothing escapes the list."""
    listed = {name.removeprefix("bodyscript_pipeline.") for name in contracts()["core"]["source_modules"]}
    assert listed == core_members()
    forbidden = set(contracts()["core"]["forbidden_modules"])
    assert {"dagster", *LAYER} <= forbidden


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_the_core_imports_without_dagster() -> None:
    """The contracts, at run time: importing every core module leaves Dagster and the layer unloaded."""
    modules = sorted(
        m.name
        for m in pkgutil.walk_packages(bodyscript_pipeline.__path__, "bodyscript_pipeline.")
        if m.name.split(".")[1] not in JOINS and not m.name.endswith("__main__")
    )
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'dagster_k8s', *{LAYER!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"


def readme_rows() -> dict[str, str]:
    """The README architecture table: first column's path -> last column."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Architecture") :]
    section = section[: section.index("\n## ", 3)]
    return {m[0]: m[1].strip() for m in re.findall(r"^\| `([^`]+)`[^\n]*\| ([^|\n]*) \|$", section, re.M)}


def test_the_readme_layers_are_the_contract_layers() -> None:
    """Every core package and module has a row, and its layer number is its place in the layers contract."""
    layers = contracts()["layers"]["layers"]
    expected = {}
    for number, layer in enumerate(layers, start=1):
        for name in (part.strip() for part in layer.split("|")):
            path = REPO / "bodyscript_pipeline" / name
            expected[f"bodyscript_pipeline/{name}/" if path.is_dir() else f"bodyscript_pipeline/{name}.py"] = str(
                number
            )
    rows = readme_rows()
    assert {path: rows.get(path) for path in expected} == expected
    assert set(contracts()["layers"]["exhaustive_ignores"]) == JOINS
    assert {f"{folder}/" for folder in LAYER} <= set(rows)
