"""Every test that docs/reliability.md names as `tests/<path>.py::<name>` exists: the file, and a test
function (or class) of that name in it."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


def cited_tests() -> list[tuple[str, str]]:
    return sorted(set(CITED.findall((ROOT / "docs/reliability.md").read_text(encoding="utf-8"))))


def defined_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {node.name for node in ast.walk(tree) if isinstance(node, kinds)}


def test_the_reliability_doc_names_tests():
    assert len(cited_tests()) > 40  # the issue 26 table at least


def test_every_test_the_reliability_doc_names_exists():
    missing = []
    for path, name in cited_tests():
        file = ROOT / path
        if not file.is_file() or name not in defined_names(file):
            missing.append(f"{path}::{name}")
    assert missing == []
