"""Every file, folder and Python name that README.md and docs/architecture.md point to exists.

Checked: relative Markdown links; paths that start at a folder of the repository (`experiments/...`,
`tests/...`); in code spans and diagrams also paths inside the two packages (`runs/engine.py`,
`api/`; a path ending in `...` names its folder) and bare module files (`lifecycle.py`, `manage.py`);
paths outside the repository (`../shared/...`) are not checked; dotted names (`experiments.outbox.send_run`,
`inference.images.DEFAULT_MAX_PIXELS`): the longest module prefix must exist and the rest must be
attributes of it.
"""

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/architecture.md")
TOP_FOLDERS = ("accounts", "bench", "deploy", "diffplatform", "docs", "experiments", "inference", "scripts", "static")
TOP_FOLDERS += ("templates", "tests", "weights", ".ci")
PACKAGES = ("experiments", "inference")
PYTHON_ROOTS = ("accounts", "diffplatform", "experiments", "inference")

LINK = re.compile(r"\]\(([^)\s]+)\)")
PATH = re.compile(r"(?<![\w./$~-])((?:[\w.-]+/)+[\w.-]*)")
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
MODULE_FILE = re.compile(r"(?<![\w./-])(\w+\.py)\b")
DOTTED = re.compile(rf"(?<![\w/.-])((?:{'|'.join(PYTHON_ROOTS)})(?:\.\w+)+)")


def _text(doc: str) -> str:
    return (ROOT / doc).read_text(encoding="utf-8")


def _code(text: str) -> str:
    return "\n".join(match.group(0) for match in CODE.finditer(text))


def _exists(relative: str, *bases: Path) -> bool:
    relative = relative.removesuffix("...")  # `checkpoints/...`: the folder
    return any((base / relative).exists() for base in bases)


def named_paths(doc: str) -> list[str]:
    """What `doc` names that does not exist (empty when all do)."""
    text, code, folder = _text(doc), _code(_text(doc)), (ROOT / doc).parent
    missing = []
    for target in LINK.findall(text):
        if not re.match(r"[a-z]+:|#", target) and not (folder / target.split("#")[0]).exists():
            missing.append(f"link {target}")
    for path in PATH.findall(text):
        if path.split("/")[0] in TOP_FOLDERS and not _exists(path, ROOT):
            missing.append(path)
    for path in PATH.findall(code):
        first = path.split("/")[0]
        in_package = first.isidentifier() and any((ROOT / package / first).exists() for package in PACKAGES)
        if first not in TOP_FOLDERS and in_package and not _exists(path, *(ROOT / p for p in PACKAGES)):
            missing.append(path)
    for name in MODULE_FILE.findall(code):
        if not (ROOT / name).exists() and not any(next(ROOT.joinpath(r).rglob(name), None) for r in PYTHON_ROOTS):
            missing.append(name)
    return missing


def _find_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def missing_python_name(dotted: str) -> str | None:
    """None when `dotted` is a module, or a module followed by attributes of it; else what is missing."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        if _find_module(module):
            break
    else:
        return dotted
    value = importlib.import_module(module) if cut < len(parts) else None
    for attribute in parts[cut:]:
        if not hasattr(value, attribute):
            return f"{dotted} ({module} has no {attribute})"
        value = getattr(value, attribute)
    return None


@pytest.mark.parametrize("doc", DOCS)
def test_every_path_the_doc_names_exists(doc):
    assert named_paths(doc) == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_python_name_the_doc_names_exists(doc):
    names = sorted(set(DOTTED.findall(_text(doc))))
    assert names, "the check found no dotted name: the pattern is broken"
    assert [problem for name in names if (problem := missing_python_name(name))] == []


def test_the_checks_catch_what_is_not_there(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    for folder in ("experiments/runs", "docs"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "experiments/runs/engine.py").touch()
    (tmp_path / "docs/x.md").write_text(
        "`experiments/runs/engine.py` `experiments/runs/gone.py` `runs/engine.py` `runs/gone.py` `gone.py`"
        " [a](missing.md) [b](https://example.org)"
    )
    assert named_paths("docs/x.md") == ["link missing.md", "experiments/runs/gone.py", "runs/gone.py", "gone.py"]
    assert missing_python_name("inference.metrics.confusion_at_threshold") is None
    assert missing_python_name("inference.metrics.object_scores") == (
        "inference.metrics.object_scores (inference.metrics has no object_scores)"
    )
    assert missing_python_name("experiments.no_such_module") is not None
